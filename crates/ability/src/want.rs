//! `Want`: what a caller asks the ability manager for, with OpenHarmony's field names
//! (`@ohos.app.ability.Want`), and the element name that identifies one ability.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One value of [`Want::parameters`]: the kinds `aa start` can pass (`--ps`, `--pi`, `--pb`,
/// `--psn`) and an app can put in a Want.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WantParam {
    /// `--pb KEY true|false`.
    Bool(bool),
    /// `--pi KEY N`.
    Int(i64),
    /// A number with a fraction (apps only).
    Float(f64),
    /// `--ps KEY VALUE`, and `--psn KEY` (the empty string).
    String(String),
}

/// A request to start or connect to an ability. Empty strings mean "not given", as in
/// OpenHarmony.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Want {
    /// The device to start on; empty for this device.
    pub device_id: String,
    /// The bundle of the target ability (explicit start).
    pub bundle_name: String,
    /// The target ability; empty with a bundle name means the bundle's main ability.
    pub ability_name: String,
    /// The module of the target ability; empty for any module of the bundle.
    pub module_name: String,
    /// A URI for implicit start and for the target to read (`-U`).
    pub uri: String,
    /// A MIME type for implicit start (`-t`).
    #[serde(rename = "type")]
    pub mime_type: String,
    /// An action for implicit start (`-A`), e.g. `ohos.want.action.viewData`.
    pub action: String,
    /// Entities for implicit start (`-e`), e.g. `entity.system.browsable`.
    pub entities: Vec<String>,
    /// Parameters for the target.
    pub parameters: BTreeMap<String, WantParam>,
    /// `wantConstant.Flags` bits (URI permission grants and the like).
    pub flags: u32,
}

impl Want {
    /// An explicit Want for `bundle` and `ability` (the main ability when `ability` is empty).
    pub fn explicit(bundle: &str, ability: &str) -> Self {
        Want {
            bundle_name: bundle.to_string(),
            ability_name: ability.to_string(),
            ..Want::default()
        }
    }

    /// True when the Want names its target (a bundle); else it is implicit and is matched
    /// against abilities' skills.
    pub fn is_explicit(&self) -> bool {
        !self.bundle_name.is_empty()
    }
}

/// The name of one ability: OpenHarmony's ElementName without the device.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Element {
    /// Bundle name.
    pub bundle_name: String,
    /// Module name.
    pub module_name: String,
    /// Ability name.
    pub ability_name: String,
}

impl std::fmt::Display for Element {
    /// `bundle/module/ability`, the form hilog and dumps print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.bundle_name, self.module_name, self.ability_name
        )
    }
}

/// Why an ability is being created (`AbilityConstant.LaunchReason`), passed to `onCreate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LaunchReason {
    /// UNKNOWN (0).
    Unknown = 0,
    /// START_ABILITY (1): started by startAbility or `aa start`.
    StartAbility = 1,
    /// CALL (2).
    Call = 2,
    /// CONTINUATION (3): moved here from another device.
    Continuation = 3,
    /// APP_RECOVERY (4).
    AppRecovery = 4,
    /// SHARE (5).
    Share = 5,
    /// AUTO_STARTUP (8).
    AutoStartup = 8,
    /// INSIGHT_INTENT (9).
    InsightIntent = 9,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn want_crosses_ipc_with_every_param_kind() {
        let mut w = Want::explicit("com.example.notes", "EntryAbility");
        w.mime_type = "text/plain".into();
        w.entities = vec!["entity.system.browsable".into()];
        w.parameters.insert("n".into(), WantParam::Int(-1));
        w.parameters.insert("b".into(), WantParam::Bool(true));
        w.parameters.insert("f".into(), WantParam::Float(2.5));
        w.parameters
            .insert("s".into(), WantParam::String(String::new()));
        let bytes = oxh_ipc::encode(&w);
        let back: Want = oxh_ipc::decode(&bytes).expect("decodes");
        assert_eq!(back, w);
        assert!(back.is_explicit());
        assert!(!Want::default().is_explicit());
    }

    #[test]
    fn element_prints_as_bundle_module_ability() {
        let e = Element {
            bundle_name: "a.b".into(),
            module_name: "entry".into(),
            ability_name: "Main".into(),
        };
        assert_eq!(e.to_string(), "a.b/entry/Main");
    }
}
