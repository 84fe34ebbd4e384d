//! The access token manager: OpenHarmony's security_access_token as SA 3503.
//!
//! Every caller has an access token; every SA method names the permission it needs; nothing
//! is allowed by accident.
//!
//! - [`token`]: the 32-bit AccessTokenID and 64-bit AccessTokenIDEx layouts.
//! - [`definitions`]: OpenHarmony's 1,134 permission definitions, generated from its
//!   `permission_definitions.json` by `gen/gen_permissions.py`.
//! - [`rules`]: the pure grant rules (APL vs availableLevel, ACLs, MDM/enterprise types,
//!   initial states, flags, user grants and revocations).
//! - [`config`]: the system processes' native tokens and the shell's permissions.
//! - [`api`]: method codes, argument types and [`api::AtmProxy`] for the SDK and `oxh atm`.
//! - [`error`]: [`AtmError`] with OpenHarmony's codes (12100001..).
//! - `service` (feature `service`, on by default): [`AccessTokenManager`] (tokens in SQLite
//!   with an in-memory cache, the bundle manager's token API, grants, usage records; it
//!   implements `oxh_samgr::PermissionChecker` and `oxh_samgr::SystemAbility`) and
//!   [`AtmTokenResolver`] (`oxh_ipc::TokenResolver`).

pub mod api;
pub mod config;
pub mod definitions;
pub mod error;
pub mod rules;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod token;

#[cfg(feature = "service")]
mod resolver;
#[cfg(feature = "service")]
pub mod sa;
#[cfg(feature = "service")]
mod service;
#[cfg(feature = "service")]
mod store;
#[cfg(feature = "service")]
mod usage;

pub use config::AtmConfig;
pub use error::{AtmError, code};
pub use token::AccessTokenIdEx;

#[cfg(feature = "service")]
pub use resolver::AtmTokenResolver;
#[cfg(feature = "service")]
pub use service::AccessTokenManager;
#[cfg(feature = "service")]
pub use store::DB_FILE;
