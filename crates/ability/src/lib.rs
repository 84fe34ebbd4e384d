//! The ability manager (SA 180): what apps are, how they start and how they end.
//!
//! - [`api`]: method codes and argument types of SA 180 (the contract).
//! - [`want`]: `Want` and `Element`, with OpenHarmony's field names (the contract).
//! - [`error`]: [`AbilityError`] with the codes apps see (16000001 ...).
//! - [`manager`] (feature `manager`): the pure core: ability records, missions, app processes and their
//!   lifecycle deadlines, driven by requests and by what app hosts report.
//! - [`resolve`] (feature `manager` too): which ability a Want names, and may the caller start it.
//! - [`skills`] (feature `manager` too): implicit start, by OpenHarmony's matching rules.
//! - `layout` (feature `spawn`): the mounts of an app's sandbox (appdata-sandbox.json's).
//! - `service` (feature `service`): the system ability over the core, the spawner and hosts.
//! - `spawn` (feature `spawn`): the app spawner, a small process that starts each app in its
//!   sandbox and reports its exit.

pub mod api;
pub mod error;
#[cfg(feature = "spawn")]
pub mod layout;
#[cfg(feature = "manager")]
pub mod manager;
#[cfg(feature = "manager")]
pub mod resolve;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "manager")]
pub mod skills;
#[cfg(feature = "spawn")]
pub mod spawn;
pub mod want;

pub use error::{AbilityError, code};
pub use want::{Element, LaunchReason, Want, WantParam};
