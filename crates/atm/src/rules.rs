//! The grant rules, as pure functions: what a token gets at creation, and how grants and
//! revocations change a permission's state. No I/O; the service applies the results.
//!
//! At creation a requested permission is allowed when the token's APL is at least the
//! permission's `availableLevel`, or the permission is `provisionEnable` and the profile's
//! ACLs (allowed-acls) list it; MDM permissions only for enterprise MDM apps, enterprise
//! permissions only for enterprise or system apps (debug apps, distribution type `none`, may
//! use both, as in OpenHarmony). An allowed system_grant permission is granted at once with
//! flag SYSTEM_FIXED; a user_grant (or manual_settings) one starts DENIED with flag DEFAULT,
//! unless the system pre-authorizes it.

use crate::definitions::{self, Apl, AvailableType, GrantMode, PermissionDef};
use crate::error::{AtmError, RefusalRule};
use serde::{Deserialize, Serialize};

/// OpenHarmony's PermissionFlag bits.
pub mod flag {
    /// Not set by anyone yet.
    pub const DEFAULT: u32 = 0;
    /// Set by the user; a denial may be asked again.
    pub const USER_SET: u32 = 1 << 0;
    /// Set by the user; a denial is not asked again (only the settings app may change it).
    pub const USER_FIXED: u32 = 1 << 1;
    /// Set by the system; the user cannot change it.
    pub const SYSTEM_FIXED: u32 = 1 << 2;
    /// Granted by the system's pre-authorization, and cancellable by the user.
    pub const GRANTED_BY_POLICY: u32 = 1 << 3;
    /// Set through a security component.
    pub const COMPONENT_SET: u32 = 1 << 4;
    /// Fixed by a policy: neither grantable nor revocable by the user.
    pub const POLICY_FIXED: u32 = 1 << 5;
    /// Allowed only while the app stays in the foreground this time.
    pub const ALLOW_THIS_TIME: u32 = 1 << 6;

    /// Flags a user-level grant or revoke may carry (exactly one of them).
    pub const USER_FLAGS: [u32; 4] = [USER_SET, USER_FIXED, COMPONENT_SET, ALLOW_THIS_TIME];
    /// Flags that forbid user changes.
    pub const FIXED_BY_SYSTEM: u32 = SYSTEM_FIXED | POLICY_FIXED;

    /// The flag names set in `flags`, for dumps: `SYSTEM_FIXED|GRANTED_BY_POLICY`, `DEFAULT`.
    pub fn names(flags: u32) -> String {
        const NAMES: [(u32, &str); 7] = [
            (USER_SET, "USER_SET"),
            (USER_FIXED, "USER_FIXED"),
            (SYSTEM_FIXED, "SYSTEM_FIXED"),
            (GRANTED_BY_POLICY, "GRANTED_BY_POLICY"),
            (COMPONENT_SET, "COMPONENT_SET"),
            (POLICY_FIXED, "POLICY_FIXED"),
            (ALLOW_THIS_TIME, "ALLOW_THIS_TIME"),
        ];
        let v: Vec<&str> = NAMES
            .iter()
            .filter(|(b, _)| flags & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if v.is_empty() {
            "DEFAULT".into()
        } else {
            v.join("|")
        }
    }
}

/// OpenHarmony's app distribution type for debug builds: may use MDM and enterprise permissions.
pub const DISTRIBUTION_DEBUG: &str = "none";
/// Distribution type of enterprise device-management apps.
pub const DISTRIBUTION_ENTERPRISE_MDM: &str = "enterprise_mdm";
/// Distribution type of ordinary enterprise apps.
pub const DISTRIBUTION_ENTERPRISE_NORMAL: &str = "enterprise_normal";
/// Distribution type of enterprise apps in older profiles.
pub const DISTRIBUTION_ENTERPRISE: &str = "enterprise";
/// OpenHarmony's default user (the first foreground user).
pub const DEFAULT_USER_ID: i32 = 100;

/// OpenHarmony's DLP sandbox type of an app instance (HapDlpType: DLP_COMMON,
/// DLP_READ, DLP_FULL_CONTROL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DlpType {
    /// Not a DLP sandbox.
    #[default]
    #[serde(rename = "DLP_COMMON", alias = "Common")]
    Common,
    /// Read-only DLP sandbox.
    #[serde(rename = "DLP_READ", alias = "Read")]
    Read,
    /// Full-control DLP sandbox.
    #[serde(rename = "DLP_FULL_CONTROL", alias = "FullControl")]
    FullControl,
}

/// Who the app is: OpenHarmony's HapInfoParams, the bundle manager's half of a HAP token
/// (with its field names: userID, bundleName, instIndex, dlpType, appIDDesc, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HapInfoParams {
    /// The user the app is installed for (100 is the first user).
    #[serde(rename = "userID")]
    pub user_id: i32,
    /// Bundle name.
    pub bundle_name: String,
    /// Instance: 0 for the app, > 0 for an app clone or DLP sandbox.
    pub inst_index: i32,
    /// DLP sandbox type.
    pub dlp_type: DlpType,
    /// The signing profile's app identifier (appIDDesc).
    #[serde(rename = "appIDDesc")]
    pub app_id_desc: String,
    /// Target API version.
    pub api_version: i32,
    /// A system app (sets the system-app bit of the 64-bit token id).
    pub is_system_app: bool,
    /// The profile's app-distribution-type (`app_gallery`, `enterprise_mdm`, `none`, ...).
    pub app_distribution_type: String,
    /// The uid the app's processes run as, once the bundle manager has assigned one: the
    /// token resolver gives processes of this uid this token.
    pub uid: Option<u32>,
}

/// What may change on an update: OpenHarmony's UpdateHapInfoParams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateHapInfoParams {
    /// The signing profile's app identifier.
    #[serde(rename = "appIDDesc")]
    pub app_id_desc: String,
    /// Target API version.
    pub api_version: i32,
    /// A system app.
    pub is_system_app: bool,
    /// The profile's app-distribution-type.
    pub app_distribution_type: String,
    /// The app's uid (`None` keeps it unassigned).
    pub uid: Option<u32>,
}

/// A user_grant permission the system grants at install (install_list_permissions.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreAuthorization {
    /// The permission.
    pub permission: String,
    /// Whether the user may revoke it afterwards (flag GRANTED_BY_POLICY) or not
    /// (SYSTEM_FIXED).
    pub user_cancelable: bool,
}

/// What the app asks for: OpenHarmony's HapPolicy, from the HAP's module.json and its
/// signing profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HapPolicy {
    /// The profile's APL.
    pub apl: Apl,
    /// The profile's domain (for logs).
    pub domain: String,
    /// The permissions module.json requests (requestPermissions).
    pub permissions: Vec<String>,
    /// The profile's allowed-acls: permissions the app may request above its APL.
    pub acls: Vec<String>,
    /// Pre-authorized user_grant permissions.
    pub pre_authorized: Vec<PreAuthorization>,
    /// Skip the ACL check (OpenHarmony's ACL_IGNORE_CHECK, for pre-installed apps).
    pub acl_ignore_check: bool,
}

impl HapPolicy {
    /// A normal-APL policy requesting `permissions`, with no ACLs.
    pub fn normal(permissions: &[&str]) -> Self {
        Self {
            apl: Apl::Normal,
            domain: "default".into(),
            permissions: permissions.iter().map(|s| s.to_string()).collect(),
            acls: Vec::new(),
            pre_authorized: Vec::new(),
            acl_ignore_check: false,
        }
    }
}

/// The state of one requested permission of a token; JSON names as an entry of OpenHarmony's
/// `permStateList` (permissionName, grantFlag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionStatus {
    /// The permission.
    #[serde(rename = "permissionName", alias = "permission")]
    pub permission: String,
    /// Granted (PERMISSION_GRANTED) or denied.
    pub granted: bool,
    /// [`flag`] bits.
    #[serde(rename = "grantFlag", alias = "flags")]
    pub flags: u32,
}

/// One permission state by dense index (see [`definitions::index_of`]): what the service
/// keeps per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermState {
    /// Dense index of the permission.
    pub index: u16,
    /// Granted or denied.
    pub granted: bool,
    /// [`flag`] bits.
    pub flags: u32,
}

impl PermState {
    /// The permission's definition.
    pub fn def(&self) -> Option<&'static PermissionDef> {
        definitions::by_index(self.index)
    }
}

/// The app facts the availability rules look at.
#[derive(Debug, Clone, Copy)]
pub struct AppKind<'a> {
    /// A system app.
    pub is_system_app: bool,
    /// The profile's distribution type.
    pub distribution_type: &'a str,
}

/// Whether an app with this APL and ACL list may request `def` (OpenHarmony's IsAclSatisfied
/// and IsPermAvailableRangeSatisfied).
pub fn check_request(
    def: &PermissionDef,
    apl: Apl,
    acls: &[String],
    acl_ignore_check: bool,
    app: AppKind<'_>,
) -> Result<(), RefusalRule> {
    if !acl_ignore_check
        && apl < def.available_level
        && (!def.provision_enable || !acls.iter().any(|a| a == def.name))
    {
        return Err(RefusalRule::Acl);
    }
    let debug = app.distribution_type == DISTRIBUTION_DEBUG;
    match def.available_type {
        AvailableType::Mdm if !debug && app.distribution_type != DISTRIBUTION_ENTERPRISE_MDM => {
            Err(RefusalRule::Mdm)
        }
        AvailableType::EnterpriseNormal
            if !debug
                && !app.is_system_app
                && ![
                    DISTRIBUTION_ENTERPRISE_MDM,
                    DISTRIBUTION_ENTERPRISE_NORMAL,
                    DISTRIBUTION_ENTERPRISE,
                ]
                .contains(&app.distribution_type) =>
        {
            Err(RefusalRule::EnterpriseNormal)
        }
        _ => Ok(()),
    }
}

/// The state a permission that passed [`check_request`] starts in.
pub fn initial_state(def: &PermissionDef, pre: Option<&PreAuthorization>) -> (bool, u32) {
    match (def.grant_mode, pre) {
        (GrantMode::SystemGrant, _) => (true, flag::SYSTEM_FIXED),
        (_, Some(p)) if p.user_cancelable => (true, flag::GRANTED_BY_POLICY),
        (_, Some(_)) => (true, flag::SYSTEM_FIXED),
        (_, None) => (false, flag::DEFAULT),
    }
}

/// The result of applying a HAP policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyOutcome {
    /// One state per requested, defined permission, in request order.
    pub states: Vec<PermState>,
    /// Requested names OpenHarmony does not define; skipped, as OpenHarmony does.
    pub undefined: Vec<String>,
}

/// Applies the grant rules to every permission a HAP requests. The first refused permission
/// fails the whole request (as OpenHarmony's InitHapToken fails the install).
pub fn evaluate_hap(
    info_bundle: &str,
    app: AppKind<'_>,
    policy: &HapPolicy,
) -> Result<PolicyOutcome, AtmError> {
    let mut out = PolicyOutcome::default();
    for name in &policy.permissions {
        if name.len() > definitions::MAX_PERMISSION_NAME_LEN {
            return Err(AtmError::InvalidArgument(format!(
                "permission name of {} bytes (the limit is {})",
                name.len(),
                definitions::MAX_PERMISSION_NAME_LEN
            )));
        }
        let Some(index) = definitions::index_of(name) else {
            if !out.undefined.contains(name) {
                out.undefined.push(name.clone());
            }
            continue;
        };
        if out.states.iter().any(|s| s.index == index) {
            continue;
        }
        let Some(def) = definitions::by_index(index) else {
            continue;
        };
        check_request(def, policy.apl, &policy.acls, policy.acl_ignore_check, app).map_err(
            |rule| AtmError::RequestRefused {
                bundle: info_bundle.to_string(),
                permission: name.clone(),
                rule,
            },
        )?;
        let pre = policy.pre_authorized.iter().find(|p| &p.permission == name);
        let (granted, flags) = initial_state(def, pre);
        out.states.push(PermState {
            index,
            granted,
            flags,
        });
    }
    Ok(out)
}

/// The permissions a native process (or the shell) holds: each listed, defined permission
/// whose level its APL reaches or that its ACLs list. Native tokens have no user: every
/// permission they hold is granted and SYSTEM_FIXED.
pub fn evaluate_native(apl: Apl, permissions: &[String], acls: &[String]) -> Vec<PermState> {
    let mut out: Vec<PermState> = Vec::new();
    for name in permissions {
        let Some(index) = definitions::index_of(name) else {
            continue;
        };
        let Some(def) = definitions::by_index(index) else {
            continue;
        };
        if (apl >= def.available_level || acls.iter().any(|a| a == name))
            && !out.iter().any(|s| s.index == index)
        {
            out.push(PermState {
                index,
                granted: true,
                flags: flag::SYSTEM_FIXED,
            });
        }
    }
    out
}

/// A user-level change: grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Grant the permission.
    Grant,
    /// Revoke it.
    Revoke,
}

/// Checks that `f` is one user flag (USER_SET, USER_FIXED, COMPONENT_SET, ALLOW_THIS_TIME).
pub fn validate_user_flag(f: u32) -> Result<(), AtmError> {
    if flag::USER_FLAGS.contains(&f) {
        Ok(())
    } else {
        Err(AtmError::InvalidArgument(format!(
            "flags {f:#x}: a grant or revoke carries exactly one of USER_SET (1), USER_FIXED (2), COMPONENT_SET (16), ALLOW_THIS_TIME (64)"
        )))
    }
}

/// The new state of a permission after a user-level grant or revoke with flag `f`, or why it
/// is refused: only user-controlled permissions, never one fixed by the system or a policy.
pub fn apply_change(
    def: &PermissionDef,
    current: PermState,
    change: Change,
    f: u32,
    token_name: &str,
) -> Result<PermState, AtmError> {
    validate_user_flag(f)?;
    if !def.grant_mode.is_user_controlled() {
        return Err(AtmError::NotUserGrant(def.name.into()));
    }
    if current.flags & flag::FIXED_BY_SYSTEM != 0 {
        return Err(AtmError::Fixed {
            permission: def.name.into(),
            token: token_name.into(),
            flags: current.flags,
        });
    }
    Ok(PermState {
        index: current.index,
        granted: change == Change::Grant,
        flags: f,
    })
}

/// OpenHarmony's PermissionOper: what asking for a permission would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermissionOper {
    /// Denied and fixed (USER_FIXED, SYSTEM_FIXED, POLICY_FIXED, or a manual_settings
    /// permission): only the settings app can change it; do not ask again.
    SettingOper,
    /// Already granted.
    PassOper,
    /// Denied but may be asked for with a dialog.
    DynamicOper,
    /// Not requested, not defined.
    InvalidOper,
}

/// What requesting a permission in state `s` would do.
pub fn permission_oper(def: &PermissionDef, s: Option<PermState>) -> PermissionOper {
    let Some(s) = s else {
        return PermissionOper::InvalidOper;
    };
    if s.granted {
        PermissionOper::PassOper
    } else if s.flags & (flag::USER_FIXED | flag::FIXED_BY_SYSTEM) != 0
        || def.grant_mode == GrantMode::ManualSettings
    {
        PermissionOper::SettingOper
    } else {
        PermissionOper::DynamicOper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORMAL_APP: AppKind<'static> = AppKind {
        is_system_app: false,
        distribution_type: "app_gallery",
    };

    fn def(name: &str) -> &'static PermissionDef {
        definitions::find(name).unwrap()
    }

    fn state(bundle: &str, policy: &HapPolicy, name: &str) -> Option<PermState> {
        let out = evaluate_hap(bundle, NORMAL_APP, policy).unwrap();
        let i = definitions::index_of(name).unwrap();
        out.states.into_iter().find(|s| s.index == i)
    }

    #[test]
    fn internet_is_granted_to_a_normal_app_at_once() {
        let p = HapPolicy::normal(&["ohos.permission.INTERNET"]);
        let s = state("com.example.a", &p, "ohos.permission.INTERNET").unwrap();
        assert!(s.granted);
        assert_eq!(s.flags, flag::SYSTEM_FIXED);
    }

    #[test]
    fn install_bundle_needs_an_acl_below_system_core() {
        let mut p = HapPolicy::normal(&["ohos.permission.INSTALL_BUNDLE"]);
        let e = evaluate_hap("com.example.a", NORMAL_APP, &p).unwrap_err();
        assert!(matches!(
            e,
            AtmError::RequestRefused {
                rule: RefusalRule::Acl,
                ..
            }
        ));
        assert!(e.to_string().contains("ohos.permission.INSTALL_BUNDLE"));
        p.acls.push("ohos.permission.INSTALL_BUNDLE".into());
        let s = state("com.example.a", &p, "ohos.permission.INSTALL_BUNDLE").unwrap();
        assert!(s.granted);
        p.acls.clear();
        p.apl = Apl::SystemCore;
        assert!(state("com.example.a", &p, "ohos.permission.INSTALL_BUNDLE").is_some());
        p.apl = Apl::SystemBasic;
        assert!(evaluate_hap("com.example.a", NORMAL_APP, &p).is_err());
        p.apl = Apl::Normal;
        p.acl_ignore_check = true;
        assert!(state("com.example.a", &p, "ohos.permission.INSTALL_BUNDLE").is_some());
    }

    #[test]
    fn an_acl_does_not_help_a_permission_that_is_not_provision_enabled() {
        let d = def("ohos.permission.GET_ALL_APP_ACCOUNTS");
        assert!(!d.provision_enable && d.available_level == Apl::SystemCore);
        let acls = vec![d.name.to_string()];
        assert_eq!(
            check_request(d, Apl::Normal, &acls, false, NORMAL_APP),
            Err(RefusalRule::Acl)
        );
        assert_eq!(
            check_request(d, Apl::SystemCore, &[], false, NORMAL_APP),
            Ok(())
        );
    }

    #[test]
    fn camera_starts_denied_with_the_default_flag() {
        let p = HapPolicy::normal(&["ohos.permission.CAMERA"]);
        let s = state("com.example.a", &p, "ohos.permission.CAMERA").unwrap();
        assert!(!s.granted);
        assert_eq!(s.flags, flag::DEFAULT);
        assert_eq!(
            permission_oper(def("ohos.permission.CAMERA"), Some(s)),
            PermissionOper::DynamicOper
        );
    }

    #[test]
    fn pre_authorization_grants_a_user_grant_permission() {
        let mut p = HapPolicy::normal(&["ohos.permission.CAMERA", "ohos.permission.MICROPHONE"]);
        p.pre_authorized = vec![
            PreAuthorization {
                permission: "ohos.permission.CAMERA".into(),
                user_cancelable: true,
            },
            PreAuthorization {
                permission: "ohos.permission.MICROPHONE".into(),
                user_cancelable: false,
            },
        ];
        let cam = state("a", &p, "ohos.permission.CAMERA").unwrap();
        assert_eq!((cam.granted, cam.flags), (true, flag::GRANTED_BY_POLICY));
        let mic = state("a", &p, "ohos.permission.MICROPHONE").unwrap();
        assert_eq!((mic.granted, mic.flags), (true, flag::SYSTEM_FIXED));
    }

    #[test]
    fn mdm_and_enterprise_permissions_only_for_those_apps() {
        let mdm = definitions::all()
            .iter()
            .find(|d| d.available_type == AvailableType::Mdm && d.available_level == Apl::Normal)
            .or_else(|| {
                definitions::all()
                    .iter()
                    .find(|d| d.available_type == AvailableType::Mdm)
            })
            .unwrap();
        let apl = Apl::SystemCore;
        assert_eq!(
            check_request(mdm, apl, &[], false, NORMAL_APP),
            Err(RefusalRule::Mdm)
        );
        let sys = AppKind {
            is_system_app: true,
            distribution_type: "os_integration",
        };
        assert_eq!(
            check_request(mdm, apl, &[], false, sys),
            Err(RefusalRule::Mdm)
        );
        for t in [DISTRIBUTION_ENTERPRISE_MDM, DISTRIBUTION_DEBUG] {
            let k = AppKind {
                is_system_app: false,
                distribution_type: t,
            };
            assert_eq!(check_request(mdm, apl, &[], false, k), Ok(()), "{t}");
        }
        let ent = def("ohos.permission.GET_BUNDLE_INFO_PRIVILEGED");
        assert_eq!(ent.available_type, AvailableType::EnterpriseNormal);
        assert_eq!(
            check_request(ent, apl, &[], false, NORMAL_APP),
            Err(RefusalRule::EnterpriseNormal)
        );
        assert_eq!(check_request(ent, apl, &[], false, sys), Ok(()));
        let k = AppKind {
            is_system_app: false,
            distribution_type: DISTRIBUTION_ENTERPRISE_NORMAL,
        };
        assert_eq!(check_request(ent, apl, &[], false, k), Ok(()));
    }

    /// APL x availableLevel x grantMode x ACL over the whole real table.
    #[test]
    fn grant_matrix_over_the_real_table() {
        let mut checked = 0;
        for d in definitions::all() {
            if !matches!(
                d.available_type,
                AvailableType::Normal | AvailableType::System | AvailableType::Service
            ) {
                continue;
            }
            for apl in [Apl::Normal, Apl::SystemBasic, Apl::SystemCore] {
                for with_acl in [false, true] {
                    let acls = if with_acl {
                        vec![d.name.to_string()]
                    } else {
                        vec![]
                    };
                    let allowed = check_request(d, apl, &acls, false, NORMAL_APP).is_ok();
                    let expect = apl >= d.available_level || (with_acl && d.provision_enable);
                    assert_eq!(allowed, expect, "{} apl={apl} acl={with_acl}", d.name);
                    if allowed {
                        let (granted, flags) = initial_state(d, None);
                        if d.grant_mode == GrantMode::SystemGrant {
                            assert_eq!((granted, flags), (true, flag::SYSTEM_FIXED), "{}", d.name);
                        } else {
                            assert_eq!((granted, flags), (false, flag::DEFAULT), "{}", d.name);
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 6000, "{checked}");
    }

    #[test]
    fn undefined_permissions_are_skipped_and_duplicates_merged() {
        let p = HapPolicy::normal(&[
            "ohos.permission.INTERNET",
            "ohos.permission.INTERNET",
            "com.example.CUSTOM",
        ]);
        let out = evaluate_hap("a", NORMAL_APP, &p).unwrap();
        assert_eq!(out.states.len(), 1);
        assert_eq!(out.undefined, vec!["com.example.CUSTOM".to_string()]);
        let long = "x".repeat(300);
        let p = HapPolicy::normal(&[long.as_str()]);
        assert!(matches!(
            evaluate_hap("a", NORMAL_APP, &p),
            Err(AtmError::InvalidArgument(_))
        ));
    }

    #[test]
    fn user_changes_respect_fixed_flags() {
        let cam = def("ohos.permission.CAMERA");
        let i = definitions::index_of(cam.name).unwrap();
        let denied = PermState {
            index: i,
            granted: false,
            flags: flag::DEFAULT,
        };
        let g = apply_change(cam, denied, Change::Grant, flag::USER_SET, "a").unwrap();
        assert!(g.granted && g.flags == flag::USER_SET);
        let r = apply_change(cam, g, Change::Revoke, flag::USER_FIXED, "a").unwrap();
        assert!(!r.granted);
        assert_eq!(permission_oper(cam, Some(r)), PermissionOper::SettingOper);
        let r2 = apply_change(cam, g, Change::Revoke, flag::USER_SET, "a").unwrap();
        assert_eq!(permission_oper(cam, Some(r2)), PermissionOper::DynamicOper);

        let fixed = PermState {
            index: i,
            granted: true,
            flags: flag::SYSTEM_FIXED,
        };
        let e = apply_change(cam, fixed, Change::Revoke, flag::USER_SET, "a").unwrap_err();
        assert!(matches!(e, AtmError::Fixed { .. }), "{e}");
        let policy = PermState {
            flags: flag::POLICY_FIXED,
            ..fixed
        };
        assert!(apply_change(cam, policy, Change::Grant, flag::USER_SET, "a").is_err());
        let cancelable = PermState {
            flags: flag::GRANTED_BY_POLICY,
            ..fixed
        };
        assert!(
            !apply_change(cam, cancelable, Change::Revoke, flag::USER_SET, "a")
                .unwrap()
                .granted
        );

        let internet = def("ohos.permission.INTERNET");
        let e = apply_change(internet, fixed, Change::Revoke, flag::USER_SET, "a").unwrap_err();
        assert!(matches!(e, AtmError::NotUserGrant(_)));
        for bad in [0, 3, flag::SYSTEM_FIXED, 1 << 20] {
            assert!(apply_change(cam, denied, Change::Grant, bad, "a").is_err());
        }
        assert_eq!(permission_oper(cam, None), PermissionOper::InvalidOper);
        assert_eq!(flag::names(5), "USER_SET|SYSTEM_FIXED");
        assert_eq!(flag::names(0), "DEFAULT");
    }

    #[test]
    fn natives_get_what_their_apl_or_acls_allow() {
        let perms: Vec<String> = [
            "ohos.permission.DUMP",
            "ohos.permission.INTERNET",
            "ohos.permission.NOT_DEFINED",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = evaluate_native(Apl::Normal, &perms, &[]);
        assert_eq!(s.len(), 1, "DUMP is system_core");
        let s = evaluate_native(Apl::Normal, &perms, &perms);
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|s| s.granted && s.flags == flag::SYSTEM_FIXED));
        assert_eq!(evaluate_native(Apl::SystemCore, &perms, &[]).len(), 2);
    }
}
