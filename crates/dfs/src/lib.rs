//! Distributed files (OpenHarmony's HMDFS), the pure and kernel-facing cores the file daemon
//! (SA 5201) and `oxh fs` build on:
//! - [`label`]: a file's security label `s0`..`s4` (the `user.security` xattr, as
//!   OpenHarmony's `securityLabel` keeps it) and which devices may open it.
//! - [`merge`]: the merge view's names when devices' files collide.
//! - [`grant`]: which app may open which file URI with which modes (`fileShare`'s grants).
//! - [`uri`]: `file://<bundleName>/<path>[?networkid=<id>]` URIs.
//! - [`beneath`]: opening a peer-named path only beneath the served root (no `..`, no
//!   symlink out), with the kernel's `openat2(RESOLVE_BENEATH)`.
//! - [`proto`]: the remote file protocol between two devices' file daemons.
//! - [`serve`]: the owner's side of it, executing a peer's requests on the account tree.
//! - [`link`]: the protocol on a link between two daemons (the owner's adapter, the viewer's
//!   client).
//! - [`ahead`]: read-ahead of a remote file, the window growing with the round trip.
//! - [`cache`]: the views' short-lived memory of listings and attributes.
//! - [`views`]: the device views over FUSE (feature `service`).
//! - [`copy`]: cross-device copy's limits, admission, progress and wire (pure).
//! - [`errcode`]: OpenHarmony's file error codes (`139000xx`).

pub mod ahead;
pub mod api;
pub mod beneath;
pub mod cache;
pub mod copy;
pub mod errcode;
pub mod error;
pub mod grant;
pub mod label;
pub mod link;
pub mod merge;
pub mod proto;
pub mod serve;
pub mod uri;
#[cfg(feature = "service")]
pub mod views;

pub use error::DfsError;
