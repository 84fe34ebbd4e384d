//! System parameters: OpenHarmony's init param service, begetctl's `param` tool and
//! `@ohos.systemParameterEnhance`, as one system ability (SA 3901).
//!
//! - [`rules`]: the pure core (names, value limits, the access table, wait patterns).
//! - [`api`]: method codes and argument types for the SDK and the `param` tool.
//! - [`error`]: [`ParamError`] with OpenHarmony's codes (401, 14700101..14700105).
//! - `service` (feature `service`, on by default): [`ParamService`], the in-memory map, the
//!   SQLite store of `persist.*` and waits; it implements `oxh_samgr::SystemAbility`.
//!
//! Kinds of parameters, by name: `const.*` can be set once and lives in memory (the daemon
//! sets it at each start, as init loads OpenHarmony's const parameters from config files at
//! each boot); `persist.*` is committed to `<dir>/persist.db` before its set returns; anything
//! else lives in memory until the daemon stops.

pub mod api;
pub mod error;
pub mod rules;

#[cfg(feature = "service")]
mod sa;
#[cfg(feature = "service")]
mod service;
#[cfg(feature = "service")]
pub mod store;

pub use error::{ParamError, code};
#[cfg(feature = "service")]
pub use service::{ParamService, ParamStats};
