//! The access token manager's IPC contract: method codes of SA [`SA_ID`], their argument and
//! result types (postcard, through `oxh_ipc::encode`/`decode`), and [`AtmProxy`], a typed
//! client over an `oxh_ipc::Client`. Usable without the `service` feature (no SQLite).
//!
//! | code | method | permission | args | result | tool |
//! |------|--------|------------|------|--------|------|
//! | [`LIST_PERMISSIONS`] | GetDefPermissions | public | [`PermsArgs`] | `Vec<PermissionInfo>` | `oxh atm perms` |
//! | [`LIST_TOKENS`] | GetTokenList | GET_SENSITIVE_PERMISSIONS | `()` | `Vec<TokenInfo>` | `oxh atm tokens` |
//! | [`CHECK`] | VerifyAccessToken | GET_SENSITIVE_PERMISSIONS | [`CheckArgs`] | [`CheckResult`] | `oxh atm check` |
//! | [`TOKEN_PERMISSIONS`] | GetReqPermissions | GET_SENSITIVE_PERMISSIONS | [`TokenTarget`] | [`TokenDetail`] | `oxh atm show` |
//! | [`GRANT`] | GrantPermission | GRANT_SENSITIVE_PERMISSIONS | [`GrantArgs`] | `()` | `oxh atm grant` |
//! | [`REVOKE`] | RevokePermission | REVOKE_SENSITIVE_PERMISSIONS | [`GrantArgs`] | `()` | `oxh atm revoke` |
//! | [`USAGE`] | GetPermissionUsedRecords | PERMISSION_USED_STATS | [`UsageArgs`] | `Vec<UsageRecord>` | `oxh atm usage` |
//! | [`REMOVE_USAGE`] | RemovePermissionUsedRecords | PERMISSION_USED_STATS | [`TokenTarget`] | `u64` (removed) | `oxh atm usage --remove` |
//! | [`ALLOC_HAP`] | InitHapToken | system-only + MANAGE_HAP_TOKENID | [`AllocHapArgs`] | [`AccessTokenIdEx`] | |
//! | [`UPDATE_HAP`] | UpdateHapToken | system-only + MANAGE_HAP_TOKENID | [`UpdateHapArgs`] | [`AccessTokenIdEx`] | |
//! | [`DELETE_TOKEN`] | DeleteToken | system-only + MANAGE_HAP_TOKENID | `u32` (token id) | `()` | |
//!
//! The permission table is public (OpenHarmony publishes it); everything about a particular
//! token needs a permission. Errors carry the codes of [`crate::error::code`].

use crate::definitions::{Apl, AvailableType, GrantMode, PermissionDef};
use crate::rules::{HapInfoParams, HapPolicy, PermissionStatus, UpdateHapInfoParams};
use oxh_ipc::{Client, IpcError, TokenType};
use serde::{Deserialize, Serialize};

pub use crate::error::code;
pub use crate::token::AccessTokenIdEx;

/// The access token manager's SA id (samgr's `sa_id::ACCESS_TOKEN`; a test checks they agree).
pub const SA_ID: i32 = oxh_ipc::sa_id::ACCESS_TOKEN;
/// Its name in samgr, as OpenHarmony's.
pub const SA_NAME: &str = "AccessTokenManagerService";

/// [`PermsArgs`] → `Vec<PermissionInfo>`, sorted by name.
pub const LIST_PERMISSIONS: u32 = 1;
/// `()` → `Vec<TokenInfo>`: every token, sorted by id.
pub const LIST_TOKENS: u32 = 2;
/// [`CheckArgs`] → [`CheckResult`]: whether a token holds a permission.
pub const CHECK: u32 = 3;
/// [`TokenTarget`] → [`TokenDetail`]: a token and the state of each permission it requested.
pub const TOKEN_PERMISSIONS: u32 = 4;
/// [`GrantArgs`] → `()`: grant a user_grant permission to an app.
pub const GRANT: u32 = 5;
/// [`GrantArgs`] → `()`: revoke a user_grant permission from an app.
pub const REVOKE: u32 = 6;
/// [`UsageArgs`] → `Vec<UsageRecord>`: permission usage records, most recent first.
pub const USAGE: u32 = 7;
/// [`TokenTarget`] → `u64`: removes a token's usage records; returns how many.
pub const REMOVE_USAGE: u32 = 8;
/// [`AllocHapArgs`] → [`AccessTokenIdEx`]: creates an app's token (the bundle manager's call).
pub const ALLOC_HAP: u32 = 20;
/// [`UpdateHapArgs`] → [`AccessTokenIdEx`]: updates an app's token after an app update.
pub const UPDATE_HAP: u32 = 21;
/// `u32` → `()`: deletes an app's token (uninstall).
pub const DELETE_TOKEN: u32 = 22;

/// Names a token: by id, or by the app's (user, bundle, instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenTarget {
    /// A 32-bit AccessTokenID.
    Id(u32),
    /// An installed app.
    Bundle {
        /// User id (100 is the first user).
        user_id: i32,
        /// Bundle name.
        bundle_name: String,
        /// Instance (0 for the app itself).
        inst_index: i32,
    },
}

impl TokenTarget {
    /// Parses what a person types: a token id (decimal or `0x` hex) or a bundle name for
    /// `user_id`, instance 0.
    pub fn parse(s: &str, user_id: i32) -> Self {
        match crate::token::parse_id(s) {
            Some(id) => TokenTarget::Id(id),
            None => TokenTarget::Bundle {
                user_id,
                bundle_name: s.to_string(),
                inst_index: 0,
            },
        }
    }
}

impl std::fmt::Display for TokenTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenTarget::Id(id) => write!(f, "{id:#010x}"),
            TokenTarget::Bundle {
                user_id,
                bundle_name,
                inst_index: 0,
            } => write!(f, "{bundle_name} (user {user_id})"),
            TokenTarget::Bundle {
                user_id,
                bundle_name,
                inst_index,
            } => write!(f, "{bundle_name} (user {user_id}, instance {inst_index})"),
        }
    }
}

/// Arguments of [`LIST_PERMISSIONS`]: filters, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermsArgs {
    /// Only this grant mode.
    pub grant_mode: Option<GrantMode>,
    /// Only this availableLevel.
    pub level: Option<Apl>,
}

/// One permission definition as it crosses the wire; its JSON is OpenHarmony's PermissionDef
/// (permission_definitions.json, `atm dump -d`): name, grantMode, availableLevel, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionInfo {
    /// `ohos.permission.*` name.
    pub name: String,
    /// How it is granted.
    pub grant_mode: GrantMode,
    /// Its availableLevel.
    pub available_level: Apl,
    /// Its availableType.
    pub available_type: AvailableType,
    /// Whether an ACL may grant it below its level.
    pub provision_enable: bool,
    /// Whether it applies across devices.
    pub distributed_scene_enable: bool,
    /// API version that introduced it.
    pub since: String,
    /// Label resource, where it has one.
    pub label: Option<String>,
}

impl From<&PermissionDef> for PermissionInfo {
    fn from(d: &PermissionDef) -> Self {
        Self {
            name: d.name.into(),
            grant_mode: d.grant_mode,
            available_level: d.available_level,
            available_type: d.available_type,
            provision_enable: d.provision_enable,
            distributed_scene_enable: d.distributed_scene_enable,
            since: d.since.into(),
            label: d.label.map(String::from),
        }
    }
}

/// One token, as `oxh atm tokens` lists it; its JSON has the names of OpenHarmony's token
/// dump (`atm dump -t`): tokenID, tokenAttr, userId, instIndex, apl, deviceID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// 32-bit AccessTokenID.
    #[serde(rename = "tokenID", alias = "token_id")]
    pub token_id: u32,
    /// The attribute word of the 64-bit id (bit 0: system app).
    pub token_attr: u32,
    /// HAP, native or shell.
    pub token_type: TokenType,
    /// Bundle name (HAP) or process name (native, shell).
    pub name: String,
    /// Its APL.
    pub apl: Apl,
    /// User id (HAP only).
    pub user_id: Option<i32>,
    /// Instance index (HAP only).
    pub inst_index: Option<i32>,
    /// The uid whose processes get this token, where one is known.
    pub uid: Option<u32>,
    /// Permissions it requested (HAP) or was configured with (native, shell) and may hold.
    pub requested: u32,
    /// Of those, how many are granted now.
    pub granted: u32,
    /// For a copy of a caller's token on another device (tokensync): that device's udid
    /// (OpenHarmony's `deviceID` of a remote token).
    #[serde(default, rename = "deviceID", alias = "remote_udid")]
    pub remote_udid: Option<String>,
}

/// What another device needs to check permissions for one of our callers: the token's kind,
/// APL, name and granted permissions (OpenHarmony's HapTokenInfoForSync, reduced to what
/// `verify` reads). Sent on the soft bus with every first call of a connection and on every
/// change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteTokenState {
    /// HAP, native or shell.
    pub token_type: TokenType,
    /// Its APL.
    pub apl: Apl,
    /// Bundle or process name.
    pub name: String,
    /// User id (HAP only).
    pub user_id: Option<i32>,
    /// Names of the permissions it holds now.
    pub granted: Vec<String>,
}

/// A token and the state of each of its permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDetail {
    /// The token.
    pub info: TokenInfo,
    /// Each permission's state, sorted by name (OpenHarmony's `permStateList`).
    #[serde(rename = "permStateList", alias = "permissions")]
    pub permissions: Vec<PermissionStatus>,
}

/// Arguments of [`CHECK`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckArgs {
    /// The token.
    pub target: TokenTarget,
    /// The permission.
    pub permission: String,
}

/// Result of [`CHECK`]; JSON names as checkAccessToken's arguments (tokenID, permissionName)
/// and the token dump's grantFlag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The token checked.
    #[serde(rename = "tokenID")]
    pub token_id: u32,
    /// The permission.
    #[serde(rename = "permissionName")]
    pub permission: String,
    /// GRANTED (true) or DENIED.
    pub granted: bool,
    /// Its flags ([`crate::rules::flag`]); 0 when not requested.
    #[serde(rename = "grantFlag")]
    pub flags: u32,
    /// Whether the token requested it at all.
    pub requested: bool,
}

/// Arguments of [`GRANT`] and [`REVOKE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantArgs {
    /// The app.
    pub target: TokenTarget,
    /// A user_grant permission it requested.
    pub permission: String,
    /// One user flag: USER_SET (1), USER_FIXED (2), COMPONENT_SET (16), ALLOW_THIS_TIME (64).
    pub flags: u32,
}

/// Arguments of [`USAGE`]: filters, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageArgs {
    /// Only this token or app.
    pub target: Option<TokenTarget>,
    /// Only this permission.
    pub permission: Option<String>,
}

/// Who used which permission, how often, when (the privacy manager's record). JSON names as
/// privacyManager's BundleUsedRecord and PermissionUsedRecord (tokenId, bundleName,
/// permissionName, accessCount, rejectCount, lastAccessTime), one row per token and
/// permission; `firstAccessTime` is ours (OpenHarmony keeps no first time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The caller's token (privacyManager spells it `tokenId`).
    #[serde(rename = "tokenId")]
    pub token_id: u32,
    /// Its bundle or process name.
    #[serde(rename = "bundleName")]
    pub name: String,
    /// The permission checked.
    #[serde(rename = "permissionName")]
    pub permission: String,
    /// Checks that passed.
    #[serde(rename = "accessCount")]
    pub success_count: u64,
    /// Checks that failed.
    #[serde(rename = "rejectCount")]
    pub fail_count: u64,
    /// First check, ms since the Unix epoch.
    #[serde(rename = "firstAccessTime")]
    pub first_ms: u64,
    /// Last check, ms since the Unix epoch.
    #[serde(rename = "lastAccessTime")]
    pub last_ms: u64,
}

/// Arguments of [`ALLOC_HAP`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocHapArgs {
    /// Who the app is.
    pub info: HapInfoParams,
    /// What it asks for.
    pub policy: HapPolicy,
}

/// Arguments of [`UPDATE_HAP`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateHapArgs {
    /// The app's token.
    #[serde(rename = "tokenID")]
    pub token_id: u32,
    /// What changed about it.
    pub info: UpdateHapInfoParams,
    /// What it asks for now.
    pub policy: HapPolicy,
}

/// Typed client of the access token manager over an IPC connection (what the SDK's proxy and
/// the `oxh atm` tool use).
pub struct AtmProxy<'a> {
    client: &'a Client,
}

impl<'a> AtmProxy<'a> {
    /// A proxy over a connection to the device daemon.
    pub fn new(client: &'a Client) -> Self {
        Self { client }
    }
    /// The permission table, filtered.
    pub async fn permissions(&self, args: &PermsArgs) -> Result<Vec<PermissionInfo>, IpcError> {
        self.client.call(SA_ID, LIST_PERMISSIONS, args).await
    }
    /// Every token.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, IpcError> {
        self.client.call(SA_ID, LIST_TOKENS, &()).await
    }
    /// Whether `target` holds `permission`.
    pub async fn check(
        &self,
        target: TokenTarget,
        permission: &str,
    ) -> Result<CheckResult, IpcError> {
        let a = CheckArgs {
            target,
            permission: permission.into(),
        };
        self.client.call(SA_ID, CHECK, &a).await
    }
    /// A token with its permission states.
    pub async fn token(&self, target: TokenTarget) -> Result<TokenDetail, IpcError> {
        self.client.call(SA_ID, TOKEN_PERMISSIONS, &target).await
    }
    /// Grants a user_grant permission with one user flag.
    pub async fn grant(
        &self,
        target: TokenTarget,
        permission: &str,
        flags: u32,
    ) -> Result<(), IpcError> {
        let a = GrantArgs {
            target,
            permission: permission.into(),
            flags,
        };
        self.client.call(SA_ID, GRANT, &a).await
    }
    /// Revokes a user_grant permission with one user flag.
    pub async fn revoke(
        &self,
        target: TokenTarget,
        permission: &str,
        flags: u32,
    ) -> Result<(), IpcError> {
        let a = GrantArgs {
            target,
            permission: permission.into(),
            flags,
        };
        self.client.call(SA_ID, REVOKE, &a).await
    }
    /// Usage records, filtered.
    pub async fn usage(&self, args: &UsageArgs) -> Result<Vec<UsageRecord>, IpcError> {
        self.client.call(SA_ID, USAGE, args).await
    }
    /// Removes a token's usage records.
    pub async fn remove_usage(&self, target: TokenTarget) -> Result<u64, IpcError> {
        self.client.call(SA_ID, REMOVE_USAGE, &target).await
    }
    /// Creates an app's token (system processes with MANAGE_HAP_TOKENID only).
    pub async fn alloc_hap_token(
        &self,
        info: HapInfoParams,
        policy: HapPolicy,
    ) -> Result<AccessTokenIdEx, IpcError> {
        let a = AllocHapArgs { info, policy };
        self.client.call(SA_ID, ALLOC_HAP, &a).await
    }
    /// Updates an app's token (system processes with MANAGE_HAP_TOKENID only).
    pub async fn update_hap_token(
        &self,
        token_id: u32,
        info: UpdateHapInfoParams,
        policy: HapPolicy,
    ) -> Result<AccessTokenIdEx, IpcError> {
        let a = UpdateHapArgs {
            token_id,
            info,
            policy,
        };
        self.client.call(SA_ID, UPDATE_HAP, &a).await
    }
    /// Deletes an app's token (system processes with MANAGE_HAP_TOKENID only).
    pub async fn delete_token(&self, token_id: u32) -> Result<(), IpcError> {
        self.client.call(SA_ID, DELETE_TOKEN, &token_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_through_postcard() {
        let a = GrantArgs {
            target: TokenTarget::parse("com.example.a", 100),
            permission: "ohos.permission.CAMERA".into(),
            flags: 2,
        };
        let back: GrantArgs = oxh_ipc::decode(&oxh_ipc::encode(&a)).unwrap();
        assert_eq!(back, a);
        assert_eq!(
            TokenTarget::parse("0x20000001", 100),
            TokenTarget::Id(0x2000_0001)
        );
        let p = PermsArgs {
            grant_mode: Some(GrantMode::UserGrant),
            level: Some(Apl::Normal),
        };
        let back: PermsArgs = oxh_ipc::decode(&oxh_ipc::encode(&p)).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn garbage_is_an_invalid_argument() {
        let e = oxh_ipc::decode::<GrantArgs>(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.code, 401);
    }

    #[cfg(feature = "service")]
    #[test]
    fn sa_id_matches_samgr() {
        assert_eq!(SA_ID, oxh_samgr::sa_id::ACCESS_TOKEN);
    }
}
