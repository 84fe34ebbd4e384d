//! The bundle manager's IPC contract: method codes of SA [`SA_ID`] and their argument and
//! result types (postcard through `oxh_ipc::encode`/`decode`). The SDK and `bm` build on
//! this module alone.
//!
//! The daemon never opens a path a caller names: `bm install -p FILE` reads the file in the
//! tool and streams it here, [`BEGIN`] → [`WRITE`]... (chunks of at most [`CHUNK`]) →
//! [`INSTALL`]. The bytes are staged in a daemon-owned dir, verified fully, and only then
//! does anything reach the bundle's code and data dirs.
//!
//! | code | method | args | result | permission |
//! |------|--------|------|--------|------------|
//! | [`BEGIN`] | BeginInstall | [`BeginArgs`] | `u64` session | INSTALL_BUNDLE |
//! | [`WRITE`] | WriteFile | [`WriteArgs`] | `()` | INSTALL_BUNDLE |
//! | [`INSTALL`] | Install | [`InstallArgs`] | [`InstallResult`] | INSTALL_BUNDLE |
//! | [`ABORT`] | AbortInstall | `u64` session | `()` | INSTALL_BUNDLE |
//! | [`UNINSTALL`] | Uninstall | [`UninstallArgs`] | `()` | INSTALL_BUNDLE |
//! | [`LIST`] | GetBundleNames | `i32` user | `Vec<String>` | GET_BUNDLE_INFO_PRIVILEGED |
//! | [`DUMP`] | GetBundleInfo | `(String, i32)` bundle, user | `String` JSON | GET_BUNDLE_INFO_PRIVILEGED |
//! | [`TRUST_ADD`] | AddTrustRoot | `String` PEM | `String` name | INSTALL_BUNDLE |
//! | [`TRUST_LIST`] | ListTrustRoots | `()` | `Vec<`[`TrustRoot`]`>` | GET_BUNDLE_INFO_PRIVILEGED |
//! | [`TRUST_REMOVE`] | RemoveTrustRoot | `String` name | `()` | INSTALL_BUNDLE |

use serde::{Deserialize, Serialize};

pub use crate::error::code;

/// The bundle manager's SA id (samgr's `sa_id::BUNDLE_MGR`).
pub const SA_ID: i32 = oxh_ipc::sa_id::BUNDLE_MGR;
/// Starts an install session.
pub const BEGIN: u32 = 1;
/// Appends bytes to one file of a session.
pub const WRITE: u32 = 2;
/// Verifies the session's files and installs them as one bundle.
pub const INSTALL: u32 = 3;
/// Drops a session and its staged files.
pub const ABORT: u32 = 4;
/// Uninstalls a bundle.
pub const UNINSTALL: u32 = 5;
/// Installed bundle names (`bm dump -a`).
pub const LIST: u32 = 6;
/// One bundle's info as JSON (`bm dump -n`).
pub const DUMP: u32 = 7;
/// Adds a trust root (PEM).
pub const TRUST_ADD: u32 = 8;
/// Lists trust roots.
pub const TRUST_LIST: u32 = 9;
/// Removes a trust root by name.
pub const TRUST_REMOVE: u32 = 10;

/// Largest data of one [`WRITE`] (one IPC call carries at most 1 MiB with its header).
pub const CHUNK: usize = 1024 * 1024 - 4096;
/// Most files in one install session.
pub const MAX_FILES: u32 = 128;
/// Install sessions a daemon keeps at once.
pub const MAX_SESSIONS: usize = 8;
/// The param that allows `--skip-verify` when "1".
pub const DEV_MODE_PARAM: &str = "persist.bms.dev_mode";

/// Arguments of [`BEGIN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginArgs {
    /// How many files will follow (HAPs of one bundle, or one `.app`).
    pub files: u32,
    /// Total bytes announced (checked against the package size limit up front).
    pub total_bytes: u64,
}

/// Arguments of [`WRITE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteArgs {
    /// Session.
    pub session: u64,
    /// Which file (0-based, < `BeginArgs::files`).
    pub file: u32,
    /// Bytes, appended; at most [`CHUNK`].
    pub data: Vec<u8>,
}

/// Arguments of [`INSTALL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallArgs {
    /// Session.
    pub session: u64,
    /// The user to install for (100 is the first user).
    pub user_id: i32,
    /// Replace an installed bundle (`-r`); without it an installed bundle is 9568276.
    pub replace: bool,
    /// Skip signature checks: only when [`DEV_MODE_PARAM`] is "1" (the daemon reads it).
    pub skip_verify: bool,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallResult {
    /// Bundle name.
    pub bundle_name: String,
    /// Installed version.
    pub version_code: u32,
    /// The version replaced, if an update.
    pub previous_version: Option<u32>,
    /// The app's uid.
    pub uid: u32,
    /// The app's access token id.
    #[serde(rename = "accessTokenId")]
    pub token_id: u32,
    /// Modules now installed.
    pub modules: Vec<String>,
    /// Checks skipped (with `--skip-verify`), to be said loudly.
    pub skipped: Vec<String>,
}

/// Arguments of [`UNINSTALL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UninstallArgs {
    /// Bundle.
    pub bundle_name: String,
    /// User.
    pub user_id: i32,
    /// Keep the data dirs (`-k`).
    pub keep_data: bool,
}

/// One trust root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRoot {
    /// File name under the trust dir.
    pub name: String,
    /// Subject CN.
    pub subject: String,
    /// The certificate, PEM.
    pub pem: String,
}

/// The default user.
pub const DEFAULT_USER: i32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_chunk_fits_one_ipc_call() {
        let w = WriteArgs {
            session: u64::MAX,
            file: 0,
            data: vec![0xff; CHUNK],
        };
        assert!(oxh_ipc::encode(&w).len() + 64 <= 1024 * 1024);
    }

    #[cfg(feature = "service")]
    #[test]
    fn sa_id_matches_samgr() {
        assert_eq!(SA_ID, oxh_samgr::sa_id::BUNDLE_MGR);
    }
}
