//! One typed model for both OpenHarmony package models: the stage model's `module.json` and
//! the FA model's `config.json` parse into the same [`HapInfo`]. Pure functions over JSON text.

use crate::error::{BundleError, code};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which configuration file the HAP carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// `module.json` (API 9+).
    Stage,
    /// `config.json` (API ≤ 8).
    Fa,
}

/// A module's type (`module.type`, FA `distro.moduleType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleType {
    /// The main module; one per bundle.
    Entry,
    /// A feature module joining its entry's bundle.
    Feature,
    /// A static library (HAR).
    Har,
    /// A shared library (HSP).
    Shared,
}

impl ModuleType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "entry" => Self::Entry,
            "feature" => Self::Feature,
            "har" => Self::Har,
            "shared" => Self::Shared,
            _ => return None,
        })
    }
    /// The name OpenHarmony uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entry => "entry",
            Self::Feature => "feature",
            Self::Har => "har",
            Self::Shared => "shared",
        }
    }
}

/// A skill (intent filter) of an ability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    /// Actions, e.g. `action.system.home`.
    pub actions: Vec<String>,
    /// Entities, e.g. `entity.system.home`.
    pub entities: Vec<String>,
    /// URIs and MIME types (records from before they were kept have none).
    #[serde(default)]
    pub uris: Vec<SkillUri>,
}

/// One entry of a skill's `uris`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SkillUri {
    /// `scheme`, e.g. `https`.
    pub scheme: String,
    /// `host`.
    pub host: String,
    /// `port` (a string in module.json).
    pub port: String,
    /// `path`: the exact path.
    pub path: String,
    /// `pathStartWith`: a path prefix.
    #[serde(alias = "path_start_with")]
    pub path_start_with: String,
    /// `pathRegex`: a regular expression the whole path matches.
    #[serde(alias = "path_regex")]
    pub path_regex: String,
    /// `type`: a MIME type, e.g. `text/*`.
    #[serde(alias = "mime_type")]
    pub mime_type: String,
}

/// An ability (UIAbility, or an FA page/service/data ability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbilityInfo {
    /// Ability name.
    pub name: String,
    /// FA ability type (page, service, data), or `extension type` for extension abilities.
    #[serde(rename = "type", alias = "kind")]
    pub kind: String,
    /// Label resource.
    pub label: String,
    /// Callable from other apps (`exported`, FA `visible`).
    pub exported: bool,
    /// Source entry (stage `srcEntry`).
    #[serde(alias = "src_entry")]
    pub src_entry: String,
    /// Skills.
    pub skills: Vec<Skill>,
    /// `launchType`: singleton (the default), multiton (`standard`), specified.
    #[serde(default, alias = "launch_type")]
    pub launch_type: String,
    /// `continuable`: the ability may move to another device.
    #[serde(default)]
    pub continuable: bool,
    /// `continueBundleName`: other bundles (same signer) this ability may move to or come
    /// from, for an app whose bundle name differs between devices.
    #[serde(default, rename = "continueBundleName", alias = "continue_bundle_name")]
    pub continue_bundle_name: Vec<String>,
}

/// `usedScene` of a requested permission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedScene {
    /// Abilities that use the permission.
    pub abilities: Vec<String>,
    /// `inuse` or `always`.
    pub when: String,
}

/// One requested permission (`requestPermissions`, FA `reqPermissions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestPermission {
    /// Permission name.
    pub name: String,
    /// Reason resource shown to the user.
    pub reason: String,
    /// Where it is used.
    #[serde(alias = "used_scene")]
    pub used_scene: Option<UsedScene>,
}

/// A metadata entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Resource reference.
    pub resource: String,
}

/// App-level fields (`app` of module.json / config.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    /// Bundle name.
    #[serde(alias = "bundle_name")]
    pub bundle_name: String,
    /// Version code.
    #[serde(alias = "version_code")]
    pub version_code: u32,
    /// Version name.
    #[serde(alias = "version_name")]
    pub version_name: String,
    /// Oldest version this one is compatible with.
    #[serde(alias = "min_compatible_version_code")]
    pub min_compatible_version_code: u32,
    /// minAPIVersion as written (HarmonyOS NEXT encodes e.g. 40100011: % 1000 is the level).
    #[serde(rename = "minAPIVersion", alias = "min_api_version")]
    pub min_api_version: u32,
    /// targetAPIVersion as written.
    #[serde(rename = "targetAPIVersion", alias = "target_api_version")]
    pub target_api_version: u32,
    /// apiReleaseType.
    #[serde(alias = "api_release_type")]
    pub api_release_type: String,
    /// Vendor.
    pub vendor: String,
    /// Debug build.
    pub debug: bool,
}

impl AppInfo {
    /// The API level of an encoded API version (40100011 -> 11; 9 -> 9).
    pub fn api_level(v: u32) -> u32 {
        v % 1000
    }
}

/// One HAP's parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HapInfo {
    /// Stage or FA.
    pub model: Model,
    /// App-level fields.
    pub app: AppInfo,
    /// Module name.
    #[serde(alias = "module_name")]
    pub module_name: String,
    /// Module type.
    #[serde(alias = "module_type")]
    pub module_type: ModuleType,
    /// Device types it supports.
    #[serde(alias = "device_types")]
    pub device_types: Vec<String>,
    /// Main ability.
    #[serde(alias = "main_element")]
    pub main_element: String,
    /// Abilities.
    pub abilities: Vec<AbilityInfo>,
    /// Extension abilities (stage).
    #[serde(alias = "extension_abilities")]
    pub extension_abilities: Vec<AbilityInfo>,
    /// Requested permissions.
    #[serde(alias = "request_permissions")]
    pub request_permissions: Vec<RequestPermission>,
    /// Metadata.
    pub metadata: Vec<Metadata>,
}

fn missing(file: &str, prop: &str) -> BundleError {
    BundleError::new(
        code::PARSE_MISSING_PROP,
        format!("{file}: profile prop {prop} is missing"),
    )
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn u(v: &Value, k: &str) -> Option<u32> {
    v.get(k)
        .and_then(Value::as_u64)
        .and_then(|x| u32::try_from(x).ok())
}

fn b(v: &Value, k: &str) -> Option<bool> {
    v.get(k).and_then(Value::as_bool)
}

/// The strings of the array `k` of `v` (what is not a string skipped); empty when absent.
pub(crate) fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn skills(v: &Value) -> Vec<Skill> {
    v.get("skills")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| Skill {
                    actions: strings(s, "actions"),
                    entities: strings(s, "entities"),
                    uris: s
                        .get("uris")
                        .and_then(Value::as_array)
                        .map(|u| {
                            u.iter()
                                .map(|u| SkillUri {
                                    scheme: self::s(u, "scheme"),
                                    host: self::s(u, "host"),
                                    port: match u.get("port") {
                                        Some(Value::Number(n)) => n.to_string(),
                                        _ => self::s(u, "port"),
                                    },
                                    path: self::s(u, "path"),
                                    path_start_with: self::s(u, "pathStartWith"),
                                    path_regex: self::s(u, "pathRegex"),
                                    mime_type: self::s(u, "type"),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn perms(v: Option<&Value>) -> Vec<RequestPermission> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|p| p.get("name").is_some())
                .map(|p| RequestPermission {
                    name: s(p, "name"),
                    reason: s(p, "reason"),
                    used_scene: p.get("usedScene").map(|u| UsedScene {
                        abilities: strings(u, "abilities")
                            .into_iter()
                            .chain(strings(u, "ability"))
                            .collect(),
                        when: s(u, "when"),
                    }),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn metadata(v: Option<&Value>) -> Vec<Metadata> {
    let Some(v) = v else { return Vec::new() };
    // Stage: an array of {name, value, resource}; FA: {customizeData: [...]}.
    let arr = v
        .as_array()
        .or_else(|| v.get("customizeData").and_then(Value::as_array));
    arr.map(|a| {
        a.iter()
            .map(|m| Metadata {
                name: s(m, "name"),
                value: s(m, "value"),
                resource: s(m, "resource"),
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The `app` and `module` objects of the module file `file` (either model) and its checked
/// bundle name.
fn app_and_module<'v>(
    file: &str,
    v: &'v Value,
) -> Result<(&'v Value, &'v Value, String), BundleError> {
    let app = v.get("app").ok_or_else(|| missing(file, "app"))?;
    let m = v.get("module").ok_or_else(|| missing(file, "module"))?;
    let bundle_name = s(app, "bundleName");
    if bundle_name.is_empty() {
        return Err(missing(file, "bundleName"));
    }
    check_bundle_name(&bundle_name)?;
    Ok((app, m, bundle_name))
}

fn parse_json(file: &str, text: &[u8]) -> Result<Value, BundleError> {
    if text.iter().all(|c| c.is_ascii_whitespace()) {
        return Err(BundleError::parse(format!("{file} is empty")));
    }
    serde_json::from_slice(text)
        .map_err(|e| BundleError::parse(format!("{file} is not valid JSON: {e}")))
}

/// Checks a bundle name as OpenHarmony does: 7..=128 characters, starts with a letter,
/// letters, digits, `_` and `.` only, at least two dot-separated parts.
pub fn check_bundle_name(name: &str) -> Result<(), BundleError> {
    let ok = (7..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && name.split('.').count() >= 2
        && name.split('.').all(|p| !p.is_empty());
    if ok {
        Ok(())
    } else {
        Err(BundleError::parse(format!(
            "bundleName \"{}\" breaks the naming rules (7-128 characters, starts with a letter, letters/digits/_/. with at least one dot)",
            name.chars().take(140).collect::<String>()
        )))
    }
}

/// Parses a stage-model `module.json`.
pub fn parse_module_json(text: &[u8]) -> Result<HapInfo, BundleError> {
    const F: &str = "module.json";
    let v = parse_json(F, text)?;
    let (app, m, bundle_name) = app_and_module(F, &v)?;
    let version_code = u(app, "versionCode").ok_or_else(|| missing(F, "versionCode"))?;
    let module_name = s(m, "name");
    if module_name.is_empty() {
        return Err(missing(F, "module.name"));
    }
    let t = s(m, "type");
    let module_type = ModuleType::parse(&t).ok_or_else(|| {
        if t.is_empty() {
            missing(F, "module.type")
        } else {
            BundleError::parse(format!("{F}: unknown module type \"{t}\""))
        }
    })?;
    let ability = |a: &Value, ext: bool| AbilityInfo {
        name: s(a, "name"),
        kind: if ext { s(a, "type") } else { "page".into() },
        label: s(a, "label"),
        exported: b(a, "exported").or(b(a, "visible")).unwrap_or(false),
        src_entry: {
            let e = s(a, "srcEntry");
            if e.is_empty() { s(a, "srcEntrance") } else { e }
        },
        skills: skills(a),
        launch_type: {
            let t = s(a, "launchType");
            if t.is_empty() { "singleton".into() } else { t }
        },
        continuable: b(a, "continuable").unwrap_or(false),
        continue_bundle_name: strings(a, "continueBundleName"),
    };
    let list = |k: &str, ext: bool| -> Vec<AbilityInfo> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| ability(x, ext)).collect())
            .unwrap_or_default()
    };
    Ok(HapInfo {
        model: Model::Stage,
        app: AppInfo {
            bundle_name,
            version_code,
            version_name: s(app, "versionName"),
            min_compatible_version_code: u(app, "minCompatibleVersionCode").unwrap_or(version_code),
            min_api_version: u(app, "minAPIVersion").unwrap_or(0),
            target_api_version: u(app, "targetAPIVersion").unwrap_or(0),
            api_release_type: s(app, "apiReleaseType"),
            vendor: s(app, "vendor"),
            debug: b(app, "debug").unwrap_or(false),
        },
        module_name,
        module_type,
        device_types: strings(m, "deviceTypes"),
        main_element: s(m, "mainElement"),
        abilities: list("abilities", false),
        extension_abilities: list("extensionAbilities", true),
        request_permissions: perms(m.get("requestPermissions")),
        metadata: metadata(m.get("metadata")),
    })
}

/// Parses an FA-model `config.json`.
pub fn parse_config_json(text: &[u8]) -> Result<HapInfo, BundleError> {
    const F: &str = "config.json";
    let v = parse_json(F, text)?;
    let (app, m, bundle_name) = app_and_module(F, &v)?;
    let ver = app.get("version").ok_or_else(|| missing(F, "version"))?;
    let version_code = u(ver, "code").ok_or_else(|| missing(F, "version.code"))?;
    let distro = m.get("distro").ok_or_else(|| missing(F, "distro"))?;
    let module_name = s(distro, "moduleName");
    if module_name.is_empty() {
        return Err(missing(F, "distro.moduleName"));
    }
    let t = s(distro, "moduleType");
    let module_type = ModuleType::parse(&t)
        .ok_or_else(|| BundleError::parse(format!("{F}: unknown module type \"{t}\"")))?;
    let api = app.get("apiVersion").cloned().unwrap_or(Value::Null);
    let debug = v
        .get("deviceConfig")
        .and_then(|d| d.get("default"))
        .and_then(|d| b(d, "debug"))
        .unwrap_or(false);
    let abilities = m
        .get("abilities")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| AbilityInfo {
                    name: s(x, "name"),
                    kind: s(x, "type"),
                    label: s(x, "label"),
                    exported: b(x, "visible").unwrap_or(false),
                    src_entry: s(x, "srcPath"),
                    skills: skills(x),
                    launch_type: {
                        let t = s(x, "launchType");
                        if t.is_empty() { "singleton".into() } else { t }
                    },
                    continuable: b(x, "continuable").unwrap_or(false),
                    continue_bundle_name: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(HapInfo {
        model: Model::Fa,
        app: AppInfo {
            bundle_name,
            version_code,
            version_name: s(ver, "name"),
            min_compatible_version_code: u(ver, "minCompatibleVersionCode").unwrap_or(version_code),
            min_api_version: u(&api, "compatible").unwrap_or(0),
            target_api_version: u(&api, "target").unwrap_or(0),
            api_release_type: s(&api, "releaseType"),
            vendor: s(app, "vendor"),
            debug,
        },
        module_name,
        module_type,
        device_types: strings(m, "deviceType"),
        main_element: s(m, "mainAbility"),
        abilities,
        extension_abilities: Vec::new(),
        request_permissions: perms(m.get("reqPermissions")),
        metadata: metadata(m.get("metaData")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_minimal_and_api_levels() {
        let j = br#"{"app":{"bundleName":"com.example.x","versionCode":3,"versionName":"1.2","minAPIVersion":40100011,"targetAPIVersion":50001013},
                    "module":{"name":"entry","type":"entry","deviceTypes":["phone"],"abilities":[{"name":"A","exported":true,"skills":[{"actions":["a"],"entities":["e"]}]}],
                    "requestPermissions":[{"name":"ohos.permission.INTERNET","reason":"$string:r","usedScene":{"abilities":["A"],"when":"inuse"}}]}}"#;
        let h = parse_module_json(j).unwrap();
        assert_eq!(h.app.version_code, 3);
        assert_eq!(AppInfo::api_level(h.app.min_api_version), 11);
        assert_eq!(AppInfo::api_level(h.app.target_api_version), 13);
        assert_eq!(h.abilities[0].skills[0].actions, vec!["a"]);
        assert_eq!(
            h.request_permissions[0].used_scene.as_ref().unwrap().when,
            "inuse"
        );
    }

    #[test]
    fn missing_and_bad_fields() {
        let e = parse_module_json(
            br#"{"app":{"bundleName":"com.example.x"},"module":{"name":"e","type":"entry"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, code::PARSE_MISSING_PROP);
        assert!(e.reason.contains("versionCode"), "{e}");
        let e = parse_config_json(b"").unwrap_err();
        assert_eq!(e.code, code::PARSE_FAILED);
        let e = parse_config_json(br#"{"ap":{}}"#).unwrap_err();
        assert_eq!(e.code, code::PARSE_MISSING_PROP);
        assert!(check_bundle_name("com.x").is_err());
        assert!(check_bundle_name("com.example.app").is_ok());
        assert!(check_bundle_name("../../etc.passwd").is_err());
    }
}
