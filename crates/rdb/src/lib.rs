//! The relational store: OpenHarmony's `@ohos.data.relationalStore` on SQLite, with
//! distributed tables that converge column by column.
//!
//! - [`error`]: [`RdbError`] with OpenHarmony's codes 14800000..14800051, each defined once.
//! - [`config`]: `StoreConfig`, `SecurityLevel`, the limits.
//! - [`value`], [`predicates`], [`result_set`]: `ValueType`, `ValuesBucket`,
//!   `RdbPredicates` (parameterised SQL only), `ResultSet`.
//! - [`store`]: `RdbStore` and `Transaction`; [`ops`] the statements behind them.
//! - [`distributed`]: `setDistributedTables`, the change log by triggers, the pure merge
//!   rule and changesets in and out.
//! - [`api`]: the service's IPC contract on SA 1301 (method codes, args, limits).
//! - [`sync`]: sync of distributed tables over the soft bus (the KV store's engine) and
//!   remoteQuery.
//! - [`events`]: on('dataChange') observers, local and remote.
//! - [`service`]: [`RdbService`], the stores of every app, served by [`sa::DataService`].

pub mod api;
pub mod config;
mod conn;
pub mod distributed;
pub mod error;
pub mod events;
pub mod ident;
pub mod ops;
pub mod predicates;
pub mod result_set;
pub mod sa;
pub mod service;
pub mod store;
pub mod sync;
pub mod value;

pub use config::{SecurityLevel, StoreConfig};
pub use conn::PhysClock;
pub use distributed::merge::{CellChange, Changeset, RowChange};
pub use distributed::replica::Applied;
pub use error::{RdbError, code};
pub use ops::ConflictResolution;
pub use predicates::RdbPredicates;
pub use result_set::ResultSet;
pub use service::{RdbConfig, RdbService};
pub use store::{RdbStore, Transaction, TransactionType};
pub use value::{Value, ValuesBucket};
