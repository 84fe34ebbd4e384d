//! The distributed KV store: OpenHarmony's `@ohos.data.distributedKVStore` and its
//! distributed data service, as system ability 1301.
//!
//! - [`limits`]: keys, values, storeIds, batches, security levels: each limit once.
//! - [`hlc`]: the hybrid logical clock and the last-writer-wins rule on (HLC, device id).
//! - [`wire`]: the sync protocol's messages and framing.
//! - [`sync`]: the sans-IO sync state machine ([`sync::SyncEngine`]) and an in-memory replica.
//! - [`api`]: method codes and argument types for the SDK and `oxh kv`.
//! - [`error`]: [`KvError`] with OpenHarmony's codes (401, 15100000..15100006).
//! - `service` (feature `service`): the SQLite stores (`store`), the system ability and the
//!   sync driver on the soft bus.

pub mod api;
pub mod error;
pub mod hlc;
pub mod limits;
pub mod sync;
pub mod wire;

#[cfg(feature = "service")]
mod sa;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod store;

pub use error::{KvError, code};
#[cfg(feature = "service")]
pub use service::{Feature, KvConfig, KvService};
