//! `bm dump`: a bundle's info as OpenHarmony's JSON, and the SA's text dump.

use super::{BundleManager, ierr};
use crate::api;
use crate::error::{BundleError, code};

impl BundleManager {
    /// `bm dump -n`: the bundle's info as pretty JSON, with OpenHarmony's field names.
    pub fn dump_json(&self, bundle: &str, user: i32) -> Result<String, BundleError> {
        let r = self.get(bundle, user)?.ok_or_else(|| {
            BundleError::new(code::BUNDLE_NOT_FOUND, format!("{bundle} is not installed"))
        })?;
        let perms: Vec<&str> = {
            let mut v: Vec<&str> = r
                .modules
                .iter()
                .flat_map(|m| m.request_permissions.iter().map(|p| p.name.as_str()))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let v = serde_json::json!({
            "name": r.bundle_name,
            "versionCode": r.version_code,
            "versionName": r.version_name,
            "appId": r.app_id,
            "uid": r.uid,
            "gid": r.uid,
            "appIndex": 0,
            "userId": r.user_id,
            "bundleId": r.bundle_id,
            "accessTokenId": r.token_id,
            "applicationInfo": {
                "bundleName": r.bundle_name,
                "apl": r.apl,
                "appDistributionType": r.distribution_type,
                "codePath": r.code_path,
                "uid": r.uid,
                "accessTokenId": r.token_id,
            },
            "hapModuleNames": r.modules.iter().map(|m| m.module_name.clone()).collect::<Vec<_>>(),
            "hapModuleInfos": r.modules.iter().map(|m| serde_json::json!({
                "moduleName": m.module_name,
                "moduleType": m.module_type.as_str(),
                "deviceTypes": m.device_types,
                "mainElementName": m.main_element,
                "abilityInfos": m.abilities.iter().map(|x| serde_json::json!({"name": x.name, "type": x.kind, "visible": x.exported, "skills": x.skills})).collect::<Vec<_>>(),
                "extensionInfos": m.extension_abilities.iter().map(|x| serde_json::json!({"name": x.name, "type": x.kind, "visible": x.exported})).collect::<Vec<_>>(),
                "reqPermissions": m.request_permissions.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
                "metadata": m.metadata,
            })).collect::<Vec<_>>(),
            "reqPermissions": perms,
            "installTime": r.install_time,
            "updateTime": r.update_time,
        });
        serde_json::to_string_pretty(&v).map_err(ierr)
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
