//! The bundle manager: OpenHarmony's own package format (HAP and `.app`), its signing
//! scheme, and installing, updating and uninstalling bundles (bundlemanager_bundle_framework,
//! appverify, hapsigner), as system ability 401.
//!
//! - [`package`]: reading packages safely (names, sizes, ratios) into [`model::HapInfo`].
//! - [`signing`]: the signing block (`HAP Sig Block 42` / `<hap sign block>`), the digest.
//! - [`pkcs7`], [`der`]: the PKCS#7 SignedData of the signature and the profile.
//! - [`codesign`]: OpenHarmony's code signatures (fs-verity digests of the HAP's code and
//!   of each native library, signed), parsed, verified and written.
//! - [`verify`]: every check of a package's signature, apart, against trust roots.
//! - [`plan`]: the install decision (fresh, update or refusal; ids, files, token), no I/O.
//! - [`tools`]: `oxh hap keygen`, `sign`, `pack`.
//! - [`api`]: method codes and argument types for the SDK and `bm`.
//! - [`error`]: [`BundleError`] with OpenHarmony's codes and `bm` messages.
//! - `service` (feature `service`): [`BundleManager`], the SA with its SQLite store.

pub mod api;
#[cfg(feature = "package")]
pub mod codesign;
#[cfg(feature = "package")]
pub mod der;
pub mod error;
#[cfg(feature = "package")]
pub mod model;
#[cfg(feature = "package")]
pub mod package;
#[cfg(feature = "package")]
pub mod pkcs7;
#[cfg(feature = "package")]
pub mod plan;
#[cfg(feature = "package")]
pub mod signing;
#[cfg(feature = "package")]
pub mod tools;
#[cfg(feature = "package")]
pub mod verify;

#[cfg(feature = "service")]
mod sa;
#[cfg(feature = "service")]
pub mod service;

pub use error::{BundleError, code};
#[cfg(feature = "service")]
pub use service::BundleManager;
