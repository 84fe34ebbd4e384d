//! The install plan: what installing verified HAPs does, decided with no I/O and no clock.
//!
//! [`NewBundle::from_haps`] checks that the HAPs of one install make one bundle; [`plan`]
//! weighs that bundle against what is installed now for the user and decides a fresh install,
//! an update or a refusal with OpenHarmony's result code. The service carries a [`Plan`] out
//! (staging, renames, the store, token calls); nothing here touches a file.

use crate::api::InstallResult;
use crate::error::{BundleError, code};
use crate::model::{AppInfo, HapInfo, ModuleType};
use crate::verify::{Profile, Report};
use oxh_atm::definitions::Apl;
use oxh_atm::rules::{DlpType, HapInfoParams, HapPolicy, UpdateHapInfoParams};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// First bundle id handed out (OpenHarmony's base app uid range starts at 10000).
pub const BUNDLE_ID_MIN: u32 = 10_000;
/// Last bundle id.
pub const BUNDLE_ID_MAX: u32 = 65_535;
/// uid = userId * UID_PER_USER + bundleId.
pub const UID_PER_USER: u32 = 200_000;

/// One installed bundle (one user), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleRecord {
    /// Bundle name.
    #[serde(alias = "bundle_name")]
    pub bundle_name: String,
    /// User.
    #[serde(alias = "user_id")]
    pub user_id: i32,
    /// Bundle id (10000..=65535).
    #[serde(alias = "bundle_id")]
    pub bundle_id: u32,
    /// uid of the app's processes.
    pub uid: u32,
    /// Version code.
    #[serde(alias = "version_code")]
    pub version_code: u32,
    /// Version name.
    #[serde(alias = "version_name")]
    pub version_name: String,
    /// appId (bundle name + signer public key); updates must keep it.
    #[serde(alias = "app_id")]
    pub app_id: String,
    /// Access token id.
    #[serde(rename = "accessTokenId", alias = "token_id")]
    pub token_id: u32,
    /// The profile's APL.
    pub apl: String,
    /// The profile's app-distribution-type.
    #[serde(rename = "appDistributionType", alias = "distribution_type")]
    pub distribution_type: String,
    /// Where the code is.
    #[serde(alias = "code_path")]
    pub code_path: String,
    /// Installed modules.
    pub modules: Vec<HapInfo>,
    /// First install, Unix ms.
    #[serde(alias = "install_time")]
    pub install_time: u64,
    /// Last update, Unix ms.
    #[serde(alias = "update_time")]
    pub update_time: u64,
}

/// One HAP of an install after verification (with `--skip-verify` its report may hold
/// failed checks; the caller decided to go on).
#[derive(Debug, Clone, Copy)]
pub struct VerifiedHap<'a> {
    /// Its module.json / config.json.
    pub info: &'a HapInfo,
    /// Its signature report: the appId and the profile.
    pub report: &'a Report,
}

/// The HAPs of one install, checked to make one bundle: one bundle name, one versionCode,
/// one signer, unique module names, at most one entry.
#[derive(Debug, Clone)]
pub struct NewBundle<'a> {
    /// The HAPs, in the order they were given.
    pub haps: Vec<&'a HapInfo>,
    /// Bundle name.
    pub bundle_name: String,
    /// Version code.
    pub version_code: u32,
    /// appId of the signer, or `<bundle>_unsigned` for unsigned HAPs.
    pub app_id: String,
    /// The first HAP's signing profile (empty when unsigned).
    pub profile: Profile,
}

impl<'a> NewBundle<'a> {
    /// Checks the HAPs of one install against each other (the first HAP names the bundle).
    pub fn from_haps(haps: &[VerifiedHap<'a>]) -> Result<Self, BundleError> {
        let Some(first) = haps.first() else {
            return Err(BundleError::parse("no HAP to install"));
        };
        let bundle = first.info.app.bundle_name.clone();
        let version = first.info.app.version_code;
        let mut names = HashSet::new();
        for h in haps {
            if h.info.app.bundle_name != bundle {
                return Err(BundleError::parse(format!(
                    "the HAPs name different bundles: {} and {bundle}",
                    h.info.app.bundle_name
                )));
            }
            if h.info.app.version_code != version {
                return Err(BundleError::parse(
                    "the HAPs of one install have different versionCodes",
                ));
            }
            if h.report.app_id != first.report.app_id {
                return Err(BundleError::new(
                    code::SIGN_INFO_INCONSISTENT,
                    "the HAPs are signed by different keys",
                ));
            }
            if !names.insert(h.info.module_name.as_str()) {
                return Err(BundleError::new(
                    code::MODULE_NAME_NOT_UNIQUE,
                    format!("module {} twice", h.info.module_name),
                ));
            }
        }
        if haps
            .iter()
            .filter(|h| h.info.module_type == ModuleType::Entry)
            .count()
            > 1
        {
            return Err(BundleError::new(
                code::ENTRY_ALREADY_EXIST,
                "more than one entry module",
            ));
        }
        let app_id = if first.report.app_id.is_empty() {
            format!("{bundle}_unsigned")
        } else {
            first.report.app_id.clone()
        };
        Ok(Self {
            haps: haps.iter().map(|h| h.info).collect(),
            bundle_name: bundle,
            version_code: version,
            app_id,
            profile: first.report.profile.clone().unwrap_or_default(),
        })
    }

    fn has_module(&self, name: &str) -> bool {
        self.haps.iter().any(|h| h.module_name == name)
    }
}

/// What is installed now, as far as one install of one bundle for one user cares.
#[derive(Debug, Clone, Copy)]
pub struct Existing<'a> {
    /// The user the install is for.
    pub user_id: i32,
    /// This bundle's record for this user, if it is installed.
    pub record: Option<&'a BundleRecord>,
    /// The bundle ids in use (every bundle, every user), ascending; only read for a fresh
    /// install.
    pub used_bundle_ids: &'a [u32],
}

/// Fresh install or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The bundle is not installed for this user: new bundle id, uid, token and data dirs.
    Fresh,
    /// The bundle is installed: it keeps its bundle id, uid, token and data.
    Update {
        /// The installed version code.
        previous_version: u32,
        /// The installed token, updated in place.
        token_id: u32,
        /// The first install's time, kept.
        install_time: u64,
    },
}

/// The files of the new code dir, built beside the installed one and swapped in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePlan {
    /// `<module>.hap` of each new HAP, in the order of the HAPs; each also gets its
    /// `libs/<abi>/` extracted.
    pub write: Vec<String>,
    /// `<module>.hap` files copied from the installed code dir (modules of the same version
    /// that this install does not replace).
    pub keep: Vec<String>,
    /// Whether the installed `libs/` is copied too (when any module is kept).
    pub copy_libs: bool,
    /// Modules of the installed version the new code dir leaves out; the swap removes them.
    pub drop: Vec<String>,
    /// Whether the user's data dirs are made (a fresh install).
    pub make_data_dirs: bool,
}

/// The access-token call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    /// Allocate a HAP token; a token of this bundle and user without a bundle record (what a
    /// crash between the token and the record leaves) is deleted first.
    Alloc(HapInfoParams),
    /// Update the installed token.
    Update {
        /// The token.
        token_id: u32,
        /// Its new app-side fields.
        params: UpdateHapInfoParams,
    },
}

/// The token and permission changes of an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPlan {
    /// Alloc or update.
    pub change: TokenChange,
    /// The requested permissions (every module's, sorted, deduplicated) and the profile's
    /// APL and ACLs.
    pub policy: HapPolicy,
}

/// What an install does, decided by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Fresh install or update.
    pub action: Action,
    /// Bundle name.
    pub bundle_name: String,
    /// User.
    pub user_id: i32,
    /// Bundle id to use.
    pub bundle_id: u32,
    /// uid to use.
    pub uid: u32,
    /// The new version code.
    pub version_code: u32,
    /// The new version name.
    pub version_name: String,
    /// appId.
    pub app_id: String,
    /// The profile's APL (normal when absent or unknown).
    pub apl: Apl,
    /// The profile's app-distribution-type (`none` when absent).
    pub distribution_type: String,
    /// The modules installed afterwards, sorted by name.
    pub modules: Vec<HapInfo>,
    /// The code dir's files.
    pub files: FilePlan,
    /// The token call.
    pub token: TokenPlan,
}

impl Plan {
    /// The record to commit once the token is `token_id` and the code is at `code_path`,
    /// at Unix ms `now`.
    pub fn record(&self, token_id: u32, code_path: String, now: u64) -> BundleRecord {
        BundleRecord {
            bundle_name: self.bundle_name.clone(),
            user_id: self.user_id,
            bundle_id: self.bundle_id,
            uid: self.uid,
            version_code: self.version_code,
            version_name: self.version_name.clone(),
            app_id: self.app_id.clone(),
            token_id,
            apl: self.apl.as_str().into(),
            distribution_type: self.distribution_type.clone(),
            code_path,
            modules: self.modules.clone(),
            install_time: match self.action {
                Action::Update { install_time, .. } => install_time,
                Action::Fresh => now,
            },
            update_time: now,
        }
    }

    /// What the install reports to its caller.
    pub fn result(&self, token_id: u32, skipped: Vec<String>) -> InstallResult {
        InstallResult {
            bundle_name: self.bundle_name.clone(),
            version_code: self.version_code,
            previous_version: match self.action {
                Action::Update {
                    previous_version, ..
                } => Some(previous_version),
                Action::Fresh => None,
            },
            uid: self.uid,
            token_id,
            modules: self.modules.iter().map(|m| m.module_name.clone()).collect(),
            skipped,
        }
    }
}

/// The lowest bundle id not in `used` (ascending).
pub fn free_bundle_id(used: &[u32]) -> Result<u32, BundleError> {
    let mut id = BUNDLE_ID_MIN;
    for &u in used {
        if u == id {
            id += 1;
        } else if u > id {
            break;
        }
    }
    if id > BUNDLE_ID_MAX {
        return Err(BundleError::internal("no free bundle id"));
    }
    Ok(id)
}

/// Decides the install of `new` given what is installed now. An update must keep the appId
/// (9568332), must not lower the versionCode (9568263) and must not bring an entry under
/// another name (9568267); at the same versionCode the installed modules this install does
/// not name are kept, at a higher one they go.
pub fn plan(existing: &Existing<'_>, new: &NewBundle<'_>) -> Result<Plan, BundleError> {
    let bundle = &new.bundle_name;
    let version = new.version_code;
    let mut modules: Vec<HapInfo> = Vec::new();
    if let Some(o) = existing.record {
        if o.app_id != new.app_id {
            return Err(BundleError::new(
                code::SIGN_INFO_INCONSISTENT,
                format!("{bundle} is installed signed by another key (appId differs)"),
            ));
        }
        if version < o.version_code {
            return Err(BundleError::new(
                code::VERSION_DOWNGRADE,
                format!(
                    "versionCode {version} is lower than the installed {}",
                    o.version_code
                ),
            ));
        }
        let new_entry = new.haps.iter().find(|h| h.module_type == ModuleType::Entry);
        if let (Some(ne), Some(oe)) = (
            new_entry,
            o.modules
                .iter()
                .find(|m| m.module_type == ModuleType::Entry),
        ) && ne.module_name != oe.module_name
        {
            return Err(BundleError::new(
                code::ENTRY_ALREADY_EXIST,
                format!(
                    "entry module {} is installed; {} is another entry",
                    oe.module_name, ne.module_name
                ),
            ));
        }
        if version == o.version_code {
            modules.extend(
                o.modules
                    .iter()
                    .filter(|m| !new.has_module(&m.module_name))
                    .cloned(),
            );
        }
    }
    let keep: Vec<String> = modules
        .iter()
        .map(|m| format!("{}.hap", m.module_name))
        .collect();
    modules.extend(new.haps.iter().map(|h| (*h).clone()));
    modules.sort_by(|x, y| x.module_name.cmp(&y.module_name));
    let drop: Vec<String> = existing
        .record
        .map(|o| {
            o.modules
                .iter()
                .filter(|m| !modules.iter().any(|n| n.module_name == m.module_name))
                .map(|m| m.module_name.clone())
                .collect()
        })
        .unwrap_or_default();

    let first = new.haps[0];
    let api_version = AppInfo::api_level(first.app.target_api_version) as i32;
    let apl: Apl = new.profile.apl.parse().unwrap_or(Apl::Normal);
    let mut perms: Vec<String> = modules
        .iter()
        .flat_map(|m| m.request_permissions.iter().map(|p| p.name.clone()))
        .collect();
    perms.sort();
    perms.dedup();
    let policy = HapPolicy {
        apl,
        domain: "default".into(),
        permissions: perms,
        acls: new.profile.acls.clone(),
        pre_authorized: Vec::new(),
        acl_ignore_check: false,
    };
    let is_system_app = apl != Apl::Normal;
    let dist = if new.profile.distribution_type.is_empty() {
        "none".to_string()
    } else {
        new.profile.distribution_type.clone()
    };
    let (action, bundle_id, uid, change) = match existing.record {
        Some(o) => (
            Action::Update {
                previous_version: o.version_code,
                token_id: o.token_id,
                install_time: o.install_time,
            },
            o.bundle_id,
            o.uid,
            TokenChange::Update {
                token_id: o.token_id,
                params: UpdateHapInfoParams {
                    app_id_desc: new.app_id.clone(),
                    api_version,
                    is_system_app,
                    app_distribution_type: dist.clone(),
                    uid: Some(o.uid),
                },
            },
        ),
        None => {
            let bundle_id = free_bundle_id(existing.used_bundle_ids)?;
            let uid = (existing.user_id.max(0) as u32) * UID_PER_USER + bundle_id;
            let info = HapInfoParams {
                user_id: existing.user_id,
                bundle_name: bundle.clone(),
                inst_index: 0,
                dlp_type: DlpType::Common,
                app_id_desc: new.app_id.clone(),
                api_version,
                is_system_app,
                app_distribution_type: dist.clone(),
                uid: Some(uid),
            };
            (Action::Fresh, bundle_id, uid, TokenChange::Alloc(info))
        }
    };
    Ok(Plan {
        files: FilePlan {
            write: new
                .haps
                .iter()
                .map(|h| format!("{}.hap", h.module_name))
                .collect(),
            copy_libs: !keep.is_empty(),
            keep,
            drop,
            make_data_dirs: action == Action::Fresh,
        },
        action,
        bundle_name: bundle.clone(),
        user_id: existing.user_id,
        bundle_id,
        uid,
        version_code: version,
        version_name: first.app.version_name.clone(),
        app_id: new.app_id.clone(),
        apl,
        distribution_type: dist,
        modules,
        token: TokenPlan { change, policy },
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
