//! Implicit start: which abilities' `skills` a Want matches, by OpenHarmony's rules
//! (application-models/explicit-implicit-want-mappings.md and the bundle manager's matching):
//! a skill matches when its action, entities and uri/type all match.

use crate::want::Want;
use serde::{Deserialize, Serialize};

/// `action.system.home` and `ohos.want.action.home` are one action.
const HOME_ACTIONS: [&str; 2] = ["action.system.home", "ohos.want.action.home"];
/// The type a Want may carry to match only a skill of type `*/*`.
const WILDCARD_TYPE: &str = "reserved/wildcard";

/// One entry of a skill's `uris`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SkillUri {
    /// Scheme, e.g. `https`.
    pub scheme: String,
    /// Host.
    pub host: String,
    /// Port (a string in module.json).
    pub port: String,
    /// Exact path.
    pub path: String,
    /// Path prefix.
    pub path_start_with: String,
    /// Path regular expression (whole-string match).
    pub path_regex: String,
    /// MIME type, e.g. `text/*`.
    #[serde(rename = "type")]
    pub mime_type: String,
}

/// A skill (intent filter) of an ability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Skill {
    /// Actions.
    pub actions: Vec<String>,
    /// Entities.
    pub entities: Vec<String>,
    /// URIs and types.
    pub uris: Vec<SkillUri>,
}

impl Skill {
    /// Whether an implicit `want` matches this skill.
    pub fn matches(&self, want: &Want) -> bool {
        self.match_action(&want.action)
            && self.match_entities(&want.entities)
            && self.match_uri_and_type(&want.uri, &want.mime_type)
    }

    fn match_action(&self, action: &str) -> bool {
        if self.actions.is_empty() {
            return false;
        }
        if action.is_empty() {
            return true;
        }
        let home = HOME_ACTIONS.contains(&action);
        self.actions
            .iter()
            .any(|a| a == action || (home && HOME_ACTIONS.contains(&a.as_str())))
    }

    fn match_entities(&self, entities: &[String]) -> bool {
        entities.iter().all(|e| self.entities.contains(e))
    }

    fn match_uri_and_type(&self, uri: &str, mime: &str) -> bool {
        match (uri.is_empty(), mime.is_empty()) {
            (true, true) => {
                self.uris.is_empty()
                    || self
                        .uris
                        .iter()
                        .any(|u| u.scheme.is_empty() && u.mime_type.is_empty())
            }
            _ if self.uris.is_empty() => false,
            (false, true) => self
                .uris
                .iter()
                .any(|u| u.mime_type.is_empty() && match_uri(uri, u)),
            (true, false) => self
                .uris
                .iter()
                .any(|u| u.scheme.is_empty() && match_type(mime, &u.mime_type)),
            (false, false) => self
                .uris
                .iter()
                .any(|u| match_uri(uri, u) && match_type(mime, &u.mime_type)),
        }
    }
}

/// Whether a Want names anything to match implicitly (else an implicit start fails).
pub fn has_implicit_fields(want: &Want) -> bool {
    !(want.action.is_empty()
        && want.entities.is_empty()
        && want.uri.is_empty()
        && want.mime_type.is_empty())
}

fn match_uri(uri: &str, s: &SkillUri) -> bool {
    if s.scheme.is_empty() {
        return uri.is_empty();
    }
    if s.host.is_empty() {
        return uri == s.scheme
            || uri
                .strip_prefix(s.scheme.as_str())
                .is_some_and(|rest| rest.starts_with(':'));
    }
    // The query is not part of the match.
    let uri = match uri.rfind('?') {
        Some(i) => &uri[..i],
        None => uri,
    };
    let mut base = format!("{}://{}", s.scheme, s.host);
    if !s.port.is_empty() {
        base.push(':');
        base.push_str(&s.port);
    }
    if s.path.is_empty() && s.path_start_with.is_empty() && s.path_regex.is_empty() {
        let Some(rest) = uri.strip_prefix(base.as_str()) else {
            return false;
        };
        return rest.is_empty()
            || rest.starts_with('/')
            || (s.port.is_empty() && rest.starts_with(':'));
    }
    base.push('/');
    if !s.path.is_empty() && uri == format!("{base}{}", s.path) {
        return true;
    }
    if !s.path_start_with.is_empty() && uri.starts_with(&format!("{base}{}", s.path_start_with)) {
        return true;
    }
    if !s.path_regex.is_empty() {
        // A whole-string match of base + pathRegex, the base taken literally.
        let pattern = format!("^{}(?:{})$", regex_lite::escape(&base), s.path_regex);
        if let Ok(re) = regex_lite::Regex::new(&pattern)
            && re.is_match(uri)
        {
            return true;
        }
    }
    false
}

fn match_type(want: &str, skill: &str) -> bool {
    if skill.is_empty() {
        return false;
    }
    if want == WILDCARD_TYPE {
        return skill == "*/*";
    }
    if want == "*/*" || skill == "*/*" {
        return true;
    }
    if let Some(prefix) = want.strip_suffix('*') {
        return skill.starts_with(prefix);
    }
    if let Some(prefix) = skill.strip_suffix('*') {
        return want.starts_with(prefix);
    }
    want == skill
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(action: &str, entities: &[&str], uri: &str, mime: &str) -> Want {
        Want {
            action: action.into(),
            entities: entities.iter().map(|e| e.to_string()).collect(),
            uri: uri.into(),
            mime_type: mime.into(),
            ..Want::default()
        }
    }

    fn view_skill(uris: Vec<SkillUri>) -> Skill {
        Skill {
            actions: vec!["ohos.want.action.viewData".into()],
            entities: vec!["entity.system.browsable".into()],
            uris,
        }
    }

    fn uri(scheme: &str, host: &str, port: &str) -> SkillUri {
        SkillUri {
            scheme: scheme.into(),
            host: host.into(),
            port: port.into(),
            ..SkillUri::default()
        }
    }

    #[test]
    fn actions_a_skill_without_actions_matches_nothing() {
        let none = Skill::default();
        assert!(!none.matches(&want("", &[], "", "")));
        let s = view_skill(vec![]);
        assert!(
            s.matches(&want("", &[], "", "")),
            "an empty action matches any skill with actions"
        );
        assert!(s.matches(&want("ohos.want.action.viewData", &[], "", "")));
        assert!(!s.matches(&want("ohos.want.action.sendData", &[], "", "")));
        let home = Skill {
            actions: vec!["action.system.home".into()],
            ..Skill::default()
        };
        assert!(
            home.matches(&want("ohos.want.action.home", &[], "", "")),
            "the two home actions are one"
        );
    }

    #[test]
    fn entities_must_all_be_in_the_skill() {
        let s = view_skill(vec![]);
        assert!(s.matches(&want("", &["entity.system.browsable"], "", "")));
        assert!(!s.matches(&want(
            "",
            &["entity.system.browsable", "entity.other"],
            "",
            ""
        )));
        let bare = Skill {
            actions: vec!["a".into()],
            ..Skill::default()
        };
        assert!(!bare.matches(&want("a", &["entity.system.browsable"], "", "")));
    }

    #[test]
    fn uris_scheme_host_port_and_paths() {
        let mut u = uri("myscheme", "www.test.com", "8080");
        u.path = "path".into();
        let s = view_skill(vec![u]);
        assert!(s.matches(&want("", &[], "myscheme://www.test.com:8080/path", "")));
        assert!(
            s.matches(&want("", &[], "myscheme://www.test.com:8080/path?x=1", "")),
            "query ignored"
        );
        assert!(!s.matches(&want("", &[], "myscheme://www.test.com:8080/path/more", "")));
        assert!(!s.matches(&want("", &[], "myscheme://www.test.com:9090/path", "")));
        assert!(
            !s.matches(&want("", &[], "", "")),
            "a skill with uris needs a uri or type"
        );

        // Host only, no port: any port and any path.
        let s = view_skill(vec![uri("https", "www.example.com", "")]);
        assert!(s.matches(&want("", &[], "https://www.example.com", "")));
        assert!(s.matches(&want("", &[], "https://www.example.com/a/b", "")));
        assert!(s.matches(&want("", &[], "https://www.example.com:8443/a", "")));
        assert!(!s.matches(&want("", &[], "https://www.example.com.evil/a", "")));

        // Scheme only.
        let s = view_skill(vec![uri("tel", "", "")]);
        assert!(s.matches(&want("", &[], "tel:12345", "")));
        assert!(!s.matches(&want("", &[], "telx:1", "")));

        let mut p = uri("https", "h", "");
        p.path_start_with = "docs".into();
        let mut r = uri("https", "h", "");
        r.path_regex = "user/[0-9]+".into();
        let s = view_skill(vec![p, r]);
        assert!(s.matches(&want("", &[], "https://h/docs/guide", "")));
        assert!(s.matches(&want("", &[], "https://h/user/42", "")));
        assert!(
            !s.matches(&want("", &[], "https://h/user/42x", "")),
            "whole-string match"
        );
        assert!(!s.matches(&want("", &[], "https://h/other", "")));
    }

    #[test]
    fn types_with_wildcards() {
        let typed = |t: &str| SkillUri {
            mime_type: t.into(),
            ..SkillUri::default()
        };
        let s = view_skill(vec![typed("text/*")]);
        assert!(s.matches(&want("", &[], "", "text/plain")));
        assert!(!s.matches(&want("", &[], "", "image/png")));
        assert!(!s.matches(&want("", &[], "", WILDCARD_TYPE)));
        let any = view_skill(vec![typed("*/*")]);
        assert!(any.matches(&want("", &[], "", "image/png")));
        assert!(any.matches(&want("", &[], "", WILDCARD_TYPE)));
        let png = view_skill(vec![typed("image/png")]);
        assert!(png.matches(&want("", &[], "", "image/*")));
        // A uri entry with a type needs the Want's type too.
        let mut both = uri("https", "h", "");
        both.mime_type = "text/html".into();
        let s = view_skill(vec![both]);
        assert!(!s.matches(&want("", &[], "https://h/x", "")));
        assert!(s.matches(&want("", &[], "https://h/x", "text/html")));
        assert!(!s.matches(&want("", &[], "https://h/x", "text/plain")));
    }

    #[test]
    fn a_bad_regex_matches_nothing_and_does_not_panic() {
        let mut r = uri("https", "h", "");
        r.path_regex = "([".into();
        assert!(!view_skill(vec![r]).matches(&want("", &[], "https://h/x", "")));
    }

    #[test]
    fn an_implicit_want_names_something() {
        assert!(!has_implicit_fields(&Want::default()));
        assert!(has_implicit_fields(&want("a", &[], "", "")));
        assert!(has_implicit_fields(&want("", &[], "", "text/plain")));
    }
}
