//! The ability manager (SA 180): what apps are, how they start and how they end.
//!
//! - [`abi`]: the C ABI between the app host and a native ability library.
//! - [`api`]: method codes and argument types of SA 180 (the contract).
//! - [`dms_api`]: method codes and types of the distributed scheduler, SA 1401 (the contract).
//! - [`want`]: `Want` and `Element`, with OpenHarmony's field names (the contract).
//! - [`error`]: [`AbilityError`] with the codes apps see (16000001 ...).
//! - [`manager`] (feature `manager`): the pure core: ability records, missions, app processes and their
//!   lifecycle deadlines, driven by requests and by what app hosts report.
//! - [`resolve`] (feature `manager` too): which ability a Want names, and may the caller start it.
//! - [`skills`] (feature `manager` too): implicit start, by OpenHarmony's matching rules.
//! - [`continuation`] (feature `manager` too): moving a mission to another device (dmsfwk's
//!   handshake) as a pure source and target, so that exactly one copy runs.
//! - `host` (feature `host`): the app host, the program each app process runs.
//! - `codesign` (feature `host`): a release device's check of a native library's code
//!   signature, over the bytes the host then loads.
//! - `remote` (feature `host`): a service connection's calls, app to app.
//! - `layout` (feature `spawn`): the mounts of an app's sandbox (appdata-sandbox.json's).
//! - `service` (feature `service`): the system ability over the core, the spawner and hosts.
//! - `spawn` (feature `spawn`): the app spawner, a small process that starts each app in its
//!   sandbox and reports its exit.

pub mod abi;
pub mod api;
#[cfg(feature = "host")]
pub mod codesign;
#[cfg(feature = "manager")]
pub mod continuation;
pub mod dms_api;
pub mod error;
#[cfg(feature = "host")]
pub mod host;
#[cfg(any(feature = "spawn", feature = "host"))]
pub mod layout;
#[cfg(feature = "manager")]
pub mod manager;
#[cfg(feature = "host")]
pub mod remote;
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
