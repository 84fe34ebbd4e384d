//! The parameter service's IPC contract: method codes of SA [`SA_ID`] and their argument and
//! result types, encoded with `oxh_ipc::encode`/`decode` (postcard). The SDK and the `param`
//! tool build on this module alone (it does not need the `service` feature).
//!
//! | code | method | args | result | begetctl |
//! |------|--------|------|--------|----------|
//! | [`GET`]  | GetParameter  | [`GetArgs`]  | `String` | `param get NAME` |
//! | [`SET`]  | SetParameter  | [`SetArgs`]  | `()` | `param set NAME VALUE` |
//! | [`LIST`] | ListParameters | [`ListArgs`] | `Vec<(String, String)>` | `param ls [-r] [NAME]`, `param get` |
//! | [`WAIT`] | WaitParameter | [`WaitArgs`] | `String` (the value) | `param wait NAME [VALUE] [TIMEOUT]` |
//! | [`DUMP`] | DumpParameters | [`DumpArgs`] | `String` (text) | `param dump [verbose]` |
//!
//! Errors carry the codes of [`crate::error::code`].

use serde::{Deserialize, Serialize};

pub use crate::error::code;

/// The SA id of the parameter service (samgr's `sa_id::PARAM`, repeated here so clients need
/// not depend on samgr; a test checks they agree).
pub const SA_ID: i32 = oxh_ipc::sa_id::PARAM;

/// [`GetArgs`] → `String`: the value, or 14700101 when the parameter is not set.
pub const GET: u32 = 1;
/// [`SetArgs`] → `()`. Returns after the value is applied and, for `persist.*`, committed to
/// disk. Who may set what is decided by [`crate::rules::ACCESS_RULES`] from the caller's token.
pub const SET: u32 = 2;
/// [`ListArgs`] → `Vec<(name, value)>` sorted by name.
pub const LIST: u32 = 3;
/// [`WaitArgs`] → `String`: the value once the parameter exists and matches, or 14700105 at
/// the timeout.
pub const WAIT: u32 = 4;
/// [`DumpArgs`] → `String`: counts, storage path, waiters, and with `verbose` every parameter.
pub const DUMP: u32 = 5;

/// `param wait`'s timeout when none is given (OpenHarmony: 30 s).
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 30_000;

/// Arguments of [`GET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetArgs {
    /// Parameter name.
    pub key: String,
}

/// Arguments of [`SET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetArgs {
    /// Parameter name.
    pub key: String,
    /// New value (≤ 95 bytes; `const.*` ≤ 4095).
    pub value: String,
}

/// Arguments of [`LIST`], OpenHarmony's `param ls [-r] NAME`.
///
/// With `recursive` (`-r`) every parameter whose name starts with `prefix` (as text, as
/// OpenHarmony's traversal does) is returned; `""` or `#` means all (`param get` with no name).
/// Without it, only the parameter named exactly `prefix`: one entry, none if `prefix` is only
/// a node with parameters below it (`param ls persist`), or 14700101 if neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListArgs {
    /// Name or name prefix.
    pub prefix: String,
    /// Traverse everything below `prefix` (`-r`).
    pub recursive: bool,
}

/// Arguments of [`WAIT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitArgs {
    /// Parameter name.
    pub key: String,
    /// Value pattern; `*` matches any run of characters. `None` (or `"*"`) waits for the
    /// parameter to exist.
    pub value: Option<String>,
    /// How long to wait; 0 checks once. Clients default to [`DEFAULT_WAIT_TIMEOUT_MS`].
    pub timeout_ms: u64,
}

/// Arguments of [`DUMP`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpArgs {
    /// Also list every parameter with its kind and access rule (`param dump verbose`).
    pub verbose: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_through_postcard() {
        let w = WaitArgs {
            key: "persist.x".into(),
            value: Some("on*".into()),
            timeout_ms: 5000,
        };
        let back: WaitArgs = oxh_ipc::decode(&oxh_ipc::encode(&w)).unwrap();
        assert_eq!(back, w);
        let l: Vec<(String, String)> = vec![("a".into(), "1".into())];
        let back: Vec<(String, String)> = oxh_ipc::decode(&oxh_ipc::encode(&l)).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn garbage_is_an_invalid_argument() {
        let e = oxh_ipc::decode::<SetArgs>(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.code, 401);
    }

    #[cfg(feature = "service")]
    #[test]
    fn sa_id_matches_samgr() {
        assert_eq!(SA_ID, oxh_samgr::sa_id::PARAM);
    }
}
