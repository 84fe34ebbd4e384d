//! Who the system processes are: the native-token configuration (OpenHarmony's
//! nativetoken.json, built there from each service's init `.cfg`), the shell's permissions,
//! and the usage-record limits.
//!
//! How a local caller is classified (see `AtmTokenResolver`):
//! - root or the daemon's user running the `oxh` tool: the shell token;
//! - a uid the bundle manager gave an app: that app's HAP token;
//! - a configured system process (its name, and its uid where one is configured; root and
//!   the daemon's user match by name): its native token;
//! - any other process of root or of the daemon's user: the shared "unconfigured" native
//!   token, which holds [`AtmConfig::unconfigured`]'s permissions (by default the shell's:
//!   such a process could run the tool and be the shell anyway, so it gains nothing, and
//!   being native it may call system-only methods as system processes do today);
//! - anyone else: the invalid token 0, with no permissions. The IPC socket is open to every
//!   local user; the token decides what each may do.

use crate::definitions::Apl;
use std::time::Duration;

/// Process name of the device daemon.
pub const DAEMON_PROCESS: &str = "oxhd";
/// The name the shell token is listed under (OpenHarmony's shell token is hdcd's).
pub const SHELL_PROCESS: &str = "hdcd";
/// The name the shared token of unconfigured root/daemon-user processes is listed under.
pub const UNCONFIGURED_PROCESS: &str = "(unconfigured)";

/// The shell token's permissions: hdcd's list from OpenHarmony's `hdcd.cfg` (what `bm`,
/// `aa`, `hidumper` need), plus what this project's tools need on a developer's own device:
/// ACCESS_SERVICE_DM and DISTRIBUTED_DATASYNC (device manager, KV sync),
/// DISTRIBUTED_SOFTBUS_CENTER (soft bus), UNINSTALL_BUNDLE and GET_BUNDLE_INFO (`bm`), and
/// GET/GRANT/REVOKE_SENSITIVE_PERMISSIONS (`oxh atm`; OpenHarmony's `atm` tool gets these
/// through a root hdc shell). `param` needs none: its access rules go by token type.
pub const DEFAULT_SHELL_PERMISSIONS: &[&str] = &[
    // hdcd.cfg
    "ohos.permission.CHANGE_ABILITY_ENABLED_STATE",
    "ohos.permission.DUMP",
    "ohos.permission.GET_BUNDLE_INFO_PRIVILEGED",
    "ohos.permission.INSTALL_BUNDLE",
    "ohos.permission.LISTEN_BUNDLE_CHANGE",
    "ohos.permission.REMOVE_CACHE_FILES",
    "ohos.permission.ACCELEROMETER",
    "ohos.permission.CLEAN_BACKGROUND_PROCESSES",
    "ohos.permission.START_ABILITIES_FROM_BACKGROUND",
    "ohos.permission.PERMISSION_USED_STATS",
    "ohos.permission.NOTIFICATION_CONTROLLER",
    "ohos.permission.PUBLISH_SYSTEM_COMMON_EVENT",
    "ohos.permission.CLEAN_APPLICATION_DATA",
    "ohos.permission.START_SYSTEM_DIALOG",
    "ohos.permission.GET_RUNNING_INFO",
    "ohos.permission.MANAGE_USER_IDM",
    "ohos.permission.ACCESS_PIN_AUTH",
    "ohos.permission.ACCESS_USER_AUTH_INTERNAL",
    // oxharmony's tools
    "ohos.permission.ACCESS_SERVICE_DM",
    "ohos.permission.DISTRIBUTED_DATASYNC",
    "ohos.permission.DISTRIBUTED_SOFTBUS_CENTER",
    "ohos.permission.UNINSTALL_BUNDLE",
    "ohos.permission.GET_BUNDLE_INFO",
    "ohos.permission.GET_SENSITIVE_PERMISSIONS",
    "ohos.permission.GRANT_SENSITIVE_PERMISSIONS",
    "ohos.permission.REVOKE_SENSITIVE_PERMISSIONS",
];

/// OpenHarmony's privacy service keeps at most this many usage records
/// (DEFAULT_PERMISSION_USED_RECORD_SIZE_MAXIMUM).
pub const DEFAULT_USAGE_MAX_RECORDS: usize = 500_000;
/// ... and drops records older than this (DEFAULT_PERMISSION_USED_RECORD_AGING_TIME, 7 days).
pub const DEFAULT_USAGE_AGING: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which permissions a native policy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativePermissions {
    /// Every defined permission (the daemon, which hosts every SA).
    All,
    /// These, each subject to the APL rule unless listed in the ACLs.
    List {
        /// Permission names.
        permissions: Vec<String>,
        /// Permissions granted even above the APL (OpenHarmony's `permission_acls`).
        acls: Vec<String>,
    },
}

impl NativePermissions {
    /// A list granted regardless of APL (every entry is also an ACL), as hdcd's config does.
    pub fn fixed(perms: &[&str]) -> Self {
        let v: Vec<String> = perms.iter().map(|s| s.to_string()).collect();
        NativePermissions::List {
            permissions: v.clone(),
            acls: v,
        }
    }
}

/// One configured system process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeProcess {
    /// Its name as the kernel has it (`/proc/PID/comm`, at most 15 bytes).
    pub process_name: String,
    /// The uid it runs as. `None`: only root or the daemon's user running a process of this
    /// name get the token. `Some(uid)`: processes of that uid and name get it too.
    pub uid: Option<u32>,
    /// Its APL.
    pub apl: Apl,
    /// Its permissions.
    pub permissions: NativePermissions,
}

/// The access token manager's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtmConfig {
    /// Configured system processes.
    pub natives: Vec<NativeProcess>,
    /// The shell token's permissions (granted regardless of APL, as hdcd's ACLs do).
    pub shell_permissions: Vec<String>,
    /// APL and permissions of root/daemon-user processes that are not configured.
    pub unconfigured: (Apl, NativePermissions),
    /// Most usage records kept; the least recently used go first.
    pub usage_max_records: usize,
    /// Usage records not used for this long are dropped.
    pub usage_aging: Duration,
    /// How often buffered usage records are written to disk.
    pub usage_flush_interval: Duration,
}

impl Default for AtmConfig {
    fn default() -> Self {
        Self {
            natives: vec![NativeProcess {
                process_name: DAEMON_PROCESS.into(),
                uid: None,
                apl: Apl::SystemCore,
                permissions: NativePermissions::All,
            }],
            shell_permissions: DEFAULT_SHELL_PERMISSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            unconfigured: (
                Apl::SystemBasic,
                NativePermissions::fixed(DEFAULT_SHELL_PERMISSIONS),
            ),
            usage_max_records: DEFAULT_USAGE_MAX_RECORDS,
            usage_aging: DEFAULT_USAGE_AGING,
            usage_flush_interval: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_shell_permission_is_defined() {
        for p in DEFAULT_SHELL_PERMISSIONS {
            assert!(crate::definitions::find(p).is_some(), "{p}");
        }
    }
}
