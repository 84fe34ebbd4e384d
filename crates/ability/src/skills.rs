//! Implicit start: which abilities' `skills` a Want matches, by OpenHarmony's rules
//! (application-models/explicit-implicit-want-mappings.md and the bundle manager's matching):
//! a skill matches when its action, entities and uri/type all match.

use crate::want::Want;

/// `action.system.home` and `ohos.want.action.home` are one action.
const HOME_ACTIONS: [&str; 2] = ["action.system.home", "ohos.want.action.home"];
/// The type a Want may carry to match only a skill of type `*/*`.
const WILDCARD_TYPE: &str = "reserved/wildcard";

pub use oxh_bundle::model::{Skill, SkillUri};

/// Whether an implicit `want` matches `skill`.
pub fn matches(skill: &Skill, want: &Want) -> bool {
    match_action(skill, &want.action)
        && match_entities(skill, &want.entities)
        && match_uri_and_type(skill, &want.uri, &want.mime_type)
}

fn match_action(skill: &Skill, action: &str) -> bool {
    if skill.actions.is_empty() {
        return false;
    }
    if action.is_empty() {
        return true;
    }
    let home = HOME_ACTIONS.contains(&action);
    skill
        .actions
        .iter()
        .any(|a| a == action || (home && HOME_ACTIONS.contains(&a.as_str())))
}

fn match_entities(skill: &Skill, entities: &[String]) -> bool {
    entities.iter().all(|e| skill.entities.contains(e))
}

fn match_uri_and_type(skill: &Skill, uri: &str, mime: &str) -> bool {
    match (uri.is_empty(), mime.is_empty()) {
        (true, true) => {
            skill.uris.is_empty()
                || skill
                    .uris
                    .iter()
                    .any(|u| u.scheme.is_empty() && u.mime_type.is_empty())
        }
        _ if skill.uris.is_empty() => false,
        (false, true) => skill
            .uris
            .iter()
            .any(|u| u.mime_type.is_empty() && match_uri(uri, u)),
        (true, false) => skill
            .uris
            .iter()
            .any(|u| u.scheme.is_empty() && match_type(mime, &u.mime_type)),
        (false, false) => skill
            .uris
            .iter()
            .any(|u| match_uri(uri, u) && match_type(mime, &u.mime_type)),
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
        assert!(!matches(&none, &want("", &[], "", "")));
        let s = view_skill(vec![]);
        assert!(
            matches(&s, &want("", &[], "", "")),
            "an empty action matches any skill with actions"
        );
        assert!(matches(&s, &want("ohos.want.action.viewData", &[], "", "")));
        assert!(!matches(
            &s,
            &want("ohos.want.action.sendData", &[], "", "")
        ));
        let home = Skill {
            actions: vec!["action.system.home".into()],
            ..Skill::default()
        };
        assert!(
            matches(&home, &want("ohos.want.action.home", &[], "", "")),
            "the two home actions are one"
        );
    }

    #[test]
    fn entities_must_all_be_in_the_skill() {
        let s = view_skill(vec![]);
        assert!(matches(&s, &want("", &["entity.system.browsable"], "", "")));
        assert!(!matches(
            &s,
            &want("", &["entity.system.browsable", "entity.other"], "", "")
        ));
        let bare = Skill {
            actions: vec!["a".into()],
            ..Skill::default()
        };
        assert!(!matches(
            &bare,
            &want("a", &["entity.system.browsable"], "", "")
        ));
    }

    #[test]
    fn uris_scheme_host_port_and_paths() {
        let mut u = uri("myscheme", "www.test.com", "8080");
        u.path = "path".into();
        let s = view_skill(vec![u]);
        assert!(matches(
            &s,
            &want("", &[], "myscheme://www.test.com:8080/path", "")
        ));
        assert!(
            matches(
                &s,
                &want("", &[], "myscheme://www.test.com:8080/path?x=1", "")
            ),
            "query ignored"
        );
        assert!(!matches(
            &s,
            &want("", &[], "myscheme://www.test.com:8080/path/more", "")
        ));
        assert!(!matches(
            &s,
            &want("", &[], "myscheme://www.test.com:9090/path", "")
        ));
        assert!(
            !matches(&s, &want("", &[], "", "")),
            "a skill with uris needs a uri or type"
        );

        // Host only, no port: any port and any path.
        let s = view_skill(vec![uri("https", "www.example.com", "")]);
        assert!(matches(&s, &want("", &[], "https://www.example.com", "")));
        assert!(matches(
            &s,
            &want("", &[], "https://www.example.com/a/b", "")
        ));
        assert!(matches(
            &s,
            &want("", &[], "https://www.example.com:8443/a", "")
        ));
        assert!(!matches(
            &s,
            &want("", &[], "https://www.example.com.evil/a", "")
        ));

        // Scheme only.
        let s = view_skill(vec![uri("tel", "", "")]);
        assert!(matches(&s, &want("", &[], "tel:12345", "")));
        assert!(!matches(&s, &want("", &[], "telx:1", "")));

        let mut p = uri("https", "h", "");
        p.path_start_with = "docs".into();
        let mut r = uri("https", "h", "");
        r.path_regex = "user/[0-9]+".into();
        let s = view_skill(vec![p, r]);
        assert!(matches(&s, &want("", &[], "https://h/docs/guide", "")));
        assert!(matches(&s, &want("", &[], "https://h/user/42", "")));
        assert!(
            !matches(&s, &want("", &[], "https://h/user/42x", "")),
            "whole-string match"
        );
        assert!(!matches(&s, &want("", &[], "https://h/other", "")));
    }

    #[test]
    fn types_with_wildcards() {
        let typed = |t: &str| SkillUri {
            mime_type: t.into(),
            ..SkillUri::default()
        };
        let s = view_skill(vec![typed("text/*")]);
        assert!(matches(&s, &want("", &[], "", "text/plain")));
        assert!(!matches(&s, &want("", &[], "", "image/png")));
        assert!(!matches(&s, &want("", &[], "", WILDCARD_TYPE)));
        let any = view_skill(vec![typed("*/*")]);
        assert!(matches(&any, &want("", &[], "", "image/png")));
        assert!(matches(&any, &want("", &[], "", WILDCARD_TYPE)));
        let png = view_skill(vec![typed("image/png")]);
        assert!(matches(&png, &want("", &[], "", "image/*")));
        // A uri entry with a type needs the Want's type too.
        let mut both = uri("https", "h", "");
        both.mime_type = "text/html".into();
        let s = view_skill(vec![both]);
        assert!(!matches(&s, &want("", &[], "https://h/x", "")));
        assert!(matches(&s, &want("", &[], "https://h/x", "text/html")));
        assert!(!matches(&s, &want("", &[], "https://h/x", "text/plain")));
    }

    #[test]
    fn a_bad_regex_matches_nothing_and_does_not_panic() {
        let mut r = uri("https", "h", "");
        r.path_regex = "([".into();
        assert!(!matches(
            &view_skill(vec![r]),
            &want("", &[], "https://h/x", "")
        ));
    }

    #[test]
    fn an_implicit_want_names_something() {
        assert!(!has_implicit_fields(&Want::default()));
        assert!(has_implicit_fields(&want("a", &[], "", "")));
        assert!(has_implicit_fields(&want("", &[], "", "text/plain")));
    }
}
