//! Which ability a Want names: explicit (bundle and ability), the bundle's main ability, or
//! implicit (skills), and whether the caller may start it.

use crate::error::AbilityError;
use crate::manager::{AbilityType, LaunchType, Target};
use crate::skills::{Skill, has_implicit_fields, matches};
use crate::want::{Element, Want};

/// An installed ability, as the bundle manager describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbilityDecl {
    /// Its element name.
    pub element: Element,
    /// UIAbility or service extension.
    pub kind: AbilityType,
    /// module.json's `launchType`.
    pub launch_type: LaunchType,
    /// module.json's `exported`: other apps may start it.
    pub exported: bool,
    /// Its skills.
    pub skills: Vec<Skill>,
    /// It is its module's `mainElement` and the module is the bundle's entry.
    pub main: bool,
    /// module.json's `srcEntry`: for native abilities, the library (see docs/DESIGN.md).
    pub src_entry: String,
    /// module.json's `continuable`: the ability may move to another device.
    pub continuable: bool,
    /// module.json's `continueBundleName`: other bundle names it may move to or come from.
    pub continue_bundle_names: Vec<String>,
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's bundle (None for the shell and native processes).
    pub bundle: Option<String>,
    /// It holds ohos.permission.START_INVISIBLE_ABILITY.
    pub may_start_invisible: bool,
}

impl Caller {
    fn may_start(&self, d: &AbilityDecl) -> bool {
        d.exported
            || self.may_start_invisible
            || self.bundle.as_deref() == Some(d.element.bundle_name.as_str())
    }
}

fn target(d: &AbilityDecl) -> Target {
    Target {
        element: d.element.clone(),
        kind: d.kind,
        launch_type: d.launch_type,
    }
}

/// The ability `want` names among `installed`, checked against `caller`'s rights.
///
/// - A bundle and an ability name: that ability (in `moduleName` if given, else the first
///   module that has it); 16000001 if there is none.
/// - A bundle alone with nothing to match: its main ability (`aa start -b B`).
/// - Otherwise the first ability (by bundle, module, name) one of whose skills matches,
///   within the bundle and module when given; abilities the caller may not start are not
///   candidates; 16000019 if none matches.
///
/// An ability that is not exported is started only by its own app or a caller that holds
/// START_INVISIBLE_ABILITY (16000004).
pub fn resolve(
    want: &Want,
    installed: &[AbilityDecl],
    caller: &Caller,
) -> Result<Target, AbilityError> {
    let in_scope = |d: &&AbilityDecl| {
        (want.bundle_name.is_empty() || d.element.bundle_name == want.bundle_name)
            && (want.module_name.is_empty() || d.element.module_name == want.module_name)
    };
    let explicit = if !want.ability_name.is_empty() {
        if want.bundle_name.is_empty() {
            return Err(AbilityError::InvalidParam(
                "an ability name needs a bundle name".into(),
            ));
        }
        Some(
            installed
                .iter()
                .filter(in_scope)
                .find(|d| d.element.ability_name == want.ability_name)
                .ok_or_else(|| {
                    AbilityError::NoSuchAbility(format!(
                        "{}/{}/{}",
                        want.bundle_name,
                        if want.module_name.is_empty() {
                            "*"
                        } else {
                            &want.module_name
                        },
                        want.ability_name
                    ))
                })?,
        )
    } else if !want.bundle_name.is_empty() && !has_implicit_fields(want) {
        Some(
            installed
                .iter()
                .filter(in_scope)
                .find(|d| d.main)
                .ok_or_else(|| {
                    AbilityError::NoSuchAbility(format!(
                        "{} has no main ability (mainElement)",
                        want.bundle_name
                    ))
                })?,
        )
    } else {
        None
    };
    if let Some(d) = explicit {
        if !caller.may_start(d) {
            return Err(AbilityError::Invisible(format!(
                "{} is not exported",
                d.element
            )));
        }
        return Ok(target(d));
    }
    if !has_implicit_fields(want) {
        return Err(AbilityError::NoMatch(
            "the Want names no ability and no action, entity, uri or type".into(),
        ));
    }
    let mut candidates: Vec<&AbilityDecl> = installed
        .iter()
        .filter(in_scope)
        .filter(|d| caller.may_start(d) && d.skills.iter().any(|s| matches(s, want)))
        .collect();
    candidates.sort_by(|a, b| a.element.cmp(&b.element));
    candidates
        .first()
        .map(|d| target(d))
        .ok_or_else(|| AbilityError::NoMatch(implicit_summary(want)))
}

fn implicit_summary(want: &Want) -> String {
    let mut parts = Vec::new();
    if !want.action.is_empty() {
        parts.push(format!("action {}", want.action));
    }
    if !want.entities.is_empty() {
        parts.push(format!("entities {}", want.entities.join(",")));
    }
    if !want.uri.is_empty() {
        parts.push(format!("uri {}", want.uri));
    }
    if !want.mime_type.is_empty() {
        parts.push(format!("type {}", want.mime_type));
    }
    format!("nothing installed matches {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    fn decl(bundle: &str, module: &str, name: &str, exported: bool, main: bool) -> AbilityDecl {
        AbilityDecl {
            element: Element {
                bundle_name: bundle.into(),
                module_name: module.into(),
                ability_name: name.into(),
            },
            kind: AbilityType::Page,
            launch_type: LaunchType::Singleton,
            exported,
            skills: vec![],
            main,
            src_entry: "libentry.so".into(),
            continuable: false,
            continue_bundle_names: vec![],
        }
    }

    fn viewer(bundle: &str, exported: bool) -> AbilityDecl {
        AbilityDecl {
            skills: vec![Skill {
                actions: vec!["ohos.want.action.viewData".into()],
                entities: vec![],
                uris: vec![crate::skills::SkillUri {
                    scheme: "https".into(),
                    ..Default::default()
                }],
            }],
            ..decl(bundle, "entry", "Viewer", exported, false)
        }
    }

    fn shell() -> Caller {
        Caller {
            bundle: None,
            may_start_invisible: false,
        }
    }

    fn installed() -> Vec<AbilityDecl> {
        vec![
            decl("com.a", "entry", "EntryAbility", true, true),
            decl("com.a", "entry", "Hidden", false, false),
            decl("com.a", "feature", "EntryAbility", true, false),
            viewer("com.b", true),
            viewer("com.c", false),
        ]
    }

    #[test]
    fn explicit_names_with_and_without_module() {
        let all = installed();
        let t = resolve(&Want::explicit("com.a", "EntryAbility"), &all, &shell()).unwrap();
        assert_eq!(
            t.element.module_name, "entry",
            "the first module that has it"
        );
        let mut w = Want::explicit("com.a", "EntryAbility");
        w.module_name = "feature".into();
        assert_eq!(
            resolve(&w, &all, &shell()).unwrap().element.module_name,
            "feature"
        );
        let e = resolve(&Want::explicit("com.a", "Nope"), &all, &shell()).unwrap_err();
        assert_eq!(e.code(), code::NO_SUCH_ABILITY);
        let e = resolve(&Want::explicit("com.none", "EntryAbility"), &all, &shell()).unwrap_err();
        assert_eq!(e.code(), code::NO_SUCH_ABILITY);
        let w = Want {
            ability_name: "EntryAbility".into(),
            ..Want::default()
        };
        assert_eq!(
            resolve(&w, &all, &shell()).unwrap_err().code(),
            code::INVALID_PARAM
        );
    }

    #[test]
    fn a_bundle_alone_starts_its_main_ability() {
        let all = installed();
        let t = resolve(&Want::explicit("com.a", ""), &all, &shell()).unwrap();
        assert_eq!(t.element.ability_name, "EntryAbility");
        assert_eq!(t.element.module_name, "entry");
        let e = resolve(&Want::explicit("com.b", ""), &all, &shell()).unwrap_err();
        assert_eq!(e.code(), code::NO_SUCH_ABILITY);
    }

    #[test]
    fn unexported_abilities_need_the_same_app_or_the_permission() {
        let all = installed();
        let w = Want::explicit("com.a", "Hidden");
        assert_eq!(
            resolve(&w, &all, &shell()).unwrap_err().code(),
            code::INVISIBLE
        );
        let same_app = Caller {
            bundle: Some("com.a".into()),
            may_start_invisible: false,
        };
        assert!(resolve(&w, &all, &same_app).is_ok());
        let privileged = Caller {
            bundle: Some("com.x".into()),
            may_start_invisible: true,
        };
        assert!(resolve(&w, &all, &privileged).is_ok());
    }

    #[test]
    fn implicit_start_picks_a_startable_match_or_fails_with_16000019() {
        let all = installed();
        let w = Want {
            action: "ohos.want.action.viewData".into(),
            uri: "https://example.com/x".into(),
            ..Want::default()
        };
        // com.c's viewer matches too but is not exported.
        assert_eq!(
            resolve(&w, &all, &shell()).unwrap().element.bundle_name,
            "com.b"
        );
        let own = Caller {
            bundle: Some("com.c".into()),
            may_start_invisible: false,
        };
        let mut scoped = w.clone();
        scoped.bundle_name = "com.c".into();
        assert_eq!(
            resolve(&scoped, &all, &own).unwrap().element.bundle_name,
            "com.c"
        );
        let none = Want {
            action: "ohos.want.action.sendData".into(),
            ..Want::default()
        };
        let e = resolve(&none, &all, &shell()).unwrap_err();
        assert_eq!(e.code(), code::NO_MATCH);
        assert!(
            e.to_string().contains("action ohos.want.action.sendData"),
            "{e}"
        );
        assert_eq!(
            resolve(&Want::default(), &all, &shell())
                .unwrap_err()
                .code(),
            code::NO_MATCH
        );
    }
}
