//! `bm dump`: a bundle's info as OpenHarmony's JSON, and the SA's text dump.

use super::{BundleManager, ierr};
use crate::api;
use crate::error::{BundleError, code};
use crate::model::{AbilityInfo, Metadata, Skill};
use crate::plan::BundleRecord;
use serde::Serialize;

/// OpenHarmony's BundleInfo as `bm dump -n` prints it (bundle_info.cpp's to_json names: the
/// bundle's name is `name`, its abilities are `abilityInfos` with `visible`), built from the
/// stored record: the one place this shape is written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleInfoDump<'a> {
    name: &'a str,
    version_code: u32,
    version_name: &'a str,
    app_id: &'a str,
    uid: u32,
    gid: u32,
    app_index: u32,
    user_id: i32,
    bundle_id: u32,
    access_token_id: u32,
    application_info: ApplicationInfoDump<'a>,
    hap_module_names: Vec<&'a str>,
    hap_module_infos: Vec<HapModuleInfoDump<'a>>,
    /// Every module's requested permissions, sorted, once each.
    req_permissions: Vec<&'a str>,
    install_time: u64,
    update_time: u64,
}

/// OpenHarmony's ApplicationInfo, the fields we keep.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationInfoDump<'a> {
    bundle_name: &'a str,
    apl: &'a str,
    app_distribution_type: &'a str,
    code_path: &'a str,
    uid: u32,
    access_token_id: u32,
}

/// OpenHarmony's HapModuleInfo, the fields we keep.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HapModuleInfoDump<'a> {
    module_name: &'a str,
    module_type: &'a str,
    device_types: &'a [String],
    main_element_name: &'a str,
    ability_infos: Vec<AbilityDump<'a>>,
    extension_infos: Vec<AbilityDump<'a>>,
    req_permissions: Vec<&'a str>,
    metadata: &'a [Metadata],
}

/// OpenHarmony's AbilityInfo / ExtensionAbilityInfo in a dump.
#[derive(Serialize)]
struct AbilityDump<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    visible: bool,
    /// Abilities' skills (extensions are dumped without).
    #[serde(skip_serializing_if = "Option::is_none")]
    skills: Option<&'a [Skill]>,
}

impl<'a> AbilityDump<'a> {
    fn of(x: &'a AbilityInfo, skills: bool) -> Self {
        Self {
            name: &x.name,
            kind: &x.kind,
            visible: x.exported,
            skills: skills.then_some(x.skills.as_slice()),
        }
    }
}

impl<'a> BundleInfoDump<'a> {
    fn of(r: &'a BundleRecord) -> Self {
        let mut perms: Vec<&str> = r
            .modules
            .iter()
            .flat_map(|m| m.request_permissions.iter().map(|p| p.name.as_str()))
            .collect();
        perms.sort();
        perms.dedup();
        Self {
            name: &r.bundle_name,
            version_code: r.version_code,
            version_name: &r.version_name,
            app_id: &r.app_id,
            uid: r.uid,
            gid: r.uid,
            app_index: 0,
            user_id: r.user_id,
            bundle_id: r.bundle_id,
            access_token_id: r.token_id,
            application_info: ApplicationInfoDump {
                bundle_name: &r.bundle_name,
                apl: &r.apl,
                app_distribution_type: &r.distribution_type,
                code_path: &r.code_path,
                uid: r.uid,
                access_token_id: r.token_id,
            },
            hap_module_names: r.modules.iter().map(|m| m.module_name.as_str()).collect(),
            hap_module_infos: r
                .modules
                .iter()
                .map(|m| HapModuleInfoDump {
                    module_name: &m.module_name,
                    module_type: m.module_type.as_str(),
                    device_types: &m.device_types,
                    main_element_name: &m.main_element,
                    ability_infos: m
                        .abilities
                        .iter()
                        .map(|x| AbilityDump::of(x, true))
                        .collect(),
                    extension_infos: m
                        .extension_abilities
                        .iter()
                        .map(|x| AbilityDump::of(x, false))
                        .collect(),
                    req_permissions: m
                        .request_permissions
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect(),
                    metadata: &m.metadata,
                })
                .collect(),
            req_permissions: perms,
            install_time: r.install_time,
            update_time: r.update_time,
        }
    }
}

impl BundleManager {
    /// `bm dump -n`: the bundle's info as pretty JSON, with OpenHarmony's field names.
    pub fn dump_json(&self, bundle: &str, user: i32) -> Result<String, BundleError> {
        let r = self.get(bundle, user)?.ok_or_else(|| {
            BundleError::new(code::BUNDLE_NOT_FOUND, format!("{bundle} is not installed"))
        })?;
        serde_json::to_string_pretty(&BundleInfoDump::of(&r)).map_err(ierr)
    }

    /// The SA dump: counts and bundle names.
    pub fn dump_text(&self) -> String {
        let names = self.names(api::DEFAULT_USER).unwrap_or_default();
        format!(
            "bundles (user {}): {}\n{}\ntrust roots: {}\nstore: {}\n",
            api::DEFAULT_USER,
            names.len(),
            names
                .iter()
                .map(|n| format!("  {n}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.trust_list().len(),
            self.cfg.dir.join("bundles.db").display()
        )
    }
}
