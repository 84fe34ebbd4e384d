//! OpenHarmony's permission definitions: the generated table and lookups over it.
//!
//! The table ([`all`]) is generated from OpenHarmony's `permission_definitions.json` by
//! `gen/gen_permissions.py` and checked in, so the crate builds on machines without the
//! fixture. Each definition also has a dense index (its position in the table), which the
//! token cache uses as a bit position so that `verify` is a bit test.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Ability privilege level (OpenHarmony's `ATokenAplEnum`), ordered: a token's APL must be at
/// least a permission's `availableLevel` unless an ACL lets it request the permission anyway.
/// Serialized as OpenHarmony spells it ("normal", "system_basic", "system_core"); the Rust
/// names of older releases still load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apl {
    /// Ordinary applications (APL_NORMAL = 1).
    #[serde(alias = "Normal")]
    Normal,
    /// System applications and basic system services (APL_SYSTEM_BASIC = 2).
    #[serde(alias = "SystemBasic")]
    SystemBasic,
    /// Core system services (APL_SYSTEM_CORE = 3).
    #[serde(alias = "SystemCore")]
    SystemCore,
}

impl Apl {
    /// The name OpenHarmony's configs and tools use.
    pub fn as_str(self) -> &'static str {
        match self {
            Apl::Normal => "normal",
            Apl::SystemBasic => "system_basic",
            Apl::SystemCore => "system_core",
        }
    }
    /// OpenHarmony's numeric value (1..3), as stored in its database.
    pub fn code(self) -> i64 {
        match self {
            Apl::Normal => 1,
            Apl::SystemBasic => 2,
            Apl::SystemCore => 3,
        }
    }
    /// The APL for OpenHarmony's numeric value.
    pub fn from_code(v: i64) -> Option<Self> {
        match v {
            1 => Some(Apl::Normal),
            2 => Some(Apl::SystemBasic),
            3 => Some(Apl::SystemCore),
            _ => None,
        }
    }
}

impl fmt::Display for Apl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Apl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Apl::Normal),
            "system_basic" => Ok(Apl::SystemBasic),
            "system_core" => Ok(Apl::SystemCore),
            _ => Err(format!(
                "unknown APL \"{s}\" (expected normal, system_basic or system_core)"
            )),
        }
    }
}

/// How a permission is granted (OpenHarmony's `grantMode`), serialized as OpenHarmony spells
/// it ("system_grant", "user_grant", "manual_settings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantMode {
    /// Granted by the system at install when the request passes the rules.
    #[serde(alias = "SystemGrant")]
    SystemGrant,
    /// Granted by the user at run time; starts denied.
    #[serde(alias = "UserGrant")]
    UserGrant,
    /// Granted only in the settings app; starts denied like a user-grant permission.
    #[serde(alias = "ManualSettings")]
    ManualSettings,
}

impl GrantMode {
    /// The name used in the JSON table and by `oxh atm perms --grant-mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantMode::SystemGrant => "system_grant",
            GrantMode::UserGrant => "user_grant",
            GrantMode::ManualSettings => "manual_settings",
        }
    }
    /// True for the modes the user controls (user_grant, manual_settings): they start denied,
    /// can be granted and revoked, and their uses are recorded by the privacy manager.
    pub fn is_user_controlled(self) -> bool {
        !matches!(self, GrantMode::SystemGrant)
    }
}

impl fmt::Display for GrantMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "system_grant" => Ok(GrantMode::SystemGrant),
            "user_grant" => Ok(GrantMode::UserGrant),
            "manual_settings" => Ok(GrantMode::ManualSettings),
            _ => Err(format!(
                "unknown grant mode \"{s}\" (expected system_grant, user_grant or manual_settings)"
            )),
        }
    }
}

/// Which kinds of application may hold a permission (OpenHarmony's `ATokenAvailableTypeEnum`),
/// serialized as permission_definitions.json spells it ("NORMAL", "SYSTEM", "MDM", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AvailableType {
    /// Any application.
    #[serde(alias = "Normal")]
    Normal,
    /// System applications (the APL rule already keeps it from normal apps).
    #[serde(alias = "System")]
    System,
    /// Only enterprise device-management (MDM) applications, and debug builds.
    #[serde(alias = "Mdm")]
    Mdm,
    /// System or MDM applications.
    #[serde(alias = "SystemAndMdm")]
    SystemAndMdm,
    /// System services.
    #[serde(alias = "Service")]
    Service,
    /// Enterprise applications, system applications and debug builds.
    #[serde(alias = "EnterpriseNormal")]
    EnterpriseNormal,
}

impl AvailableType {
    /// The name used in the JSON table.
    pub fn as_str(self) -> &'static str {
        match self {
            AvailableType::Normal => "NORMAL",
            AvailableType::System => "SYSTEM",
            AvailableType::Mdm => "MDM",
            AvailableType::SystemAndMdm => "SYSTEM_AND_MDM",
            AvailableType::Service => "SERVICE",
            AvailableType::EnterpriseNormal => "ENTERPRISE_NORMAL",
        }
    }
}

impl fmt::Display for AvailableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One permission definition, as OpenHarmony's table has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionDef {
    /// `ohos.permission.*` name.
    pub name: &'static str,
    /// How it is granted.
    pub grant_mode: GrantMode,
    /// The lowest APL that may request it without an ACL.
    pub available_level: Apl,
    /// Which kinds of application may hold it.
    pub available_type: AvailableType,
    /// Whether a profile ACL (allowed-acls) may grant it to a token below its level.
    pub provision_enable: bool,
    /// Whether it applies across devices (distributed scenarios).
    pub distributed_scene_enable: bool,
    /// Whether its ACL carries a value (OpenHarmony's aclExtendedMap).
    pub has_value: bool,
    /// The API version that introduced it, as the table writes it ("9", "26.0.0").
    pub since: &'static str,
    /// Deprecation note, when deprecated.
    pub deprecated: Option<&'static str>,
    /// Resource name of its label, for the user-grant ones that have one.
    pub label: Option<&'static str>,
    /// Resource name of its description.
    pub description: Option<&'static str>,
}

#[rustfmt::skip]
#[path = "permission_table.rs"]
mod table;

/// Every defined permission, sorted by name.
pub fn all() -> &'static [PermissionDef] {
    &table::PERMISSIONS
}

fn index_map() -> &'static HashMap<&'static str, u16> {
    static MAP: OnceLock<HashMap<&'static str, u16>> = OnceLock::new();
    MAP.get_or_init(|| {
        table::PERMISSIONS
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name, i as u16))
            .collect()
    })
}

/// The dense index of a permission (its position in [`all`]), or `None` if it is not defined.
pub fn index_of(name: &str) -> Option<u16> {
    index_map().get(name).copied()
}

/// The definition of `name`, or `None` if OpenHarmony defines no such permission.
pub fn find(name: &str) -> Option<&'static PermissionDef> {
    index_of(name).and_then(|i| table::PERMISSIONS.get(usize::from(i)))
}

/// The definition at a dense index.
pub fn by_index(i: u16) -> Option<&'static PermissionDef> {
    table::PERMISSIONS.get(usize::from(i))
}

/// Number of defined permissions (the width of a token's permission bitset).
pub fn count() -> usize {
    table::PERMISSIONS.len()
}

/// OpenHarmony's limit on a permission name's length (abilityAccessCtrl: 256 characters).
pub const MAX_PERMISSION_NAME_LEN: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_every_openharmony_permission_sorted() {
        assert_eq!(count(), 1134);
        assert!(all().windows(2).all(|w| w[0].name < w[1].name));
        let internet = find("ohos.permission.INTERNET").unwrap();
        assert_eq!(internet.grant_mode, GrantMode::SystemGrant);
        assert_eq!(internet.available_level, Apl::Normal);
        let camera = find("ohos.permission.CAMERA").unwrap();
        assert_eq!(camera.grant_mode, GrantMode::UserGrant);
        assert_eq!(camera.label, Some("$string:ohos_lab_camera"));
        let install = find("ohos.permission.INSTALL_BUNDLE").unwrap();
        assert_eq!(install.available_level, Apl::SystemCore);
        assert!(find("ohos.permission.NOPE").is_none());
        let i = index_of("ohos.permission.CAMERA").unwrap();
        assert_eq!(by_index(i).unwrap().name, "ohos.permission.CAMERA");
    }

    #[test]
    fn apl_orders_and_parses() {
        assert!(Apl::Normal < Apl::SystemBasic && Apl::SystemBasic < Apl::SystemCore);
        for a in [Apl::Normal, Apl::SystemBasic, Apl::SystemCore] {
            assert_eq!(a.as_str().parse::<Apl>().unwrap(), a);
            assert_eq!(Apl::from_code(a.code()), Some(a));
        }
        assert!("root".parse::<Apl>().is_err());
        assert!(
            "user_grant"
                .parse::<GrantMode>()
                .unwrap()
                .is_user_controlled()
        );
    }

    /// The checked-in table must match OpenHarmony's JSON whenever the fixture is present.
    #[test]
    fn generated_table_matches_the_fixture() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/ohos/permission_definitions.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!(
                "SKIPPED generated_table_matches_the_fixture: {} is absent",
                path.display()
            );
            return;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let defs = v["definePermissions"].as_array().unwrap();
        assert_eq!(defs.len(), count(), "rerun gen/gen_permissions.py");
        for d in defs {
            let name = d["name"].as_str().unwrap();
            let ours = find(name).unwrap_or_else(|| panic!("{name} missing: rerun the generator"));
            assert_eq!(ours.grant_mode.as_str(), d["grantMode"].as_str().unwrap());
            assert_eq!(
                ours.available_level.as_str(),
                d["availableLevel"].as_str().unwrap()
            );
            assert_eq!(
                ours.available_type.as_str(),
                d["availableType"].as_str().unwrap()
            );
            assert_eq!(
                ours.provision_enable,
                d["provisionEnable"].as_bool().unwrap()
            );
            assert_eq!(
                ours.distributed_scene_enable,
                d["distributedSceneEnable"].as_bool().unwrap()
            );
        }
    }
}
