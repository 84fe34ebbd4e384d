//! The ability manager (SA 180): what apps are, how they start and how they end.
//!
//! - [`want`]: `Want` and `Element`, with OpenHarmony's field names (the contract).
//! - [`error`]: [`AbilityError`] with the codes apps see (16000001 ...).
//! - [`manager`]: the pure core: ability records, missions, app processes and their
//!   lifecycle deadlines, driven by requests and by what app hosts report.

pub mod error;
pub mod manager;
pub mod want;

pub use error::{AbilityError, code};
pub use want::{Element, LaunchReason, Want, WantParam};
