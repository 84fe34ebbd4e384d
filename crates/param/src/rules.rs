//! The pure core: naming rules, value limits, the access table and wait patterns. No I/O, so
//! clients (the CLI's `param ls -r`) can use it as well as the service.
//!
//! Limits follow OpenHarmony's init (`PARAM_NAME_LEN_MAX`, `PARAM_VALUE_LEN_MAX`,
//! `PARAM_CONST_VALUE_LEN_MAX`): those are C buffer sizes that include the terminating NUL, and
//! init checks `strlen(x) < LIMIT`, so the longest name or value is one byte less.

use crate::error::ParamError;
use oxh_ipc::TokenType;

/// OpenHarmony's `PARAM_NAME_LEN_MAX`: the name buffer, NUL included.
pub const PARAM_NAME_LEN_MAX: usize = 96;
/// OpenHarmony's `PARAM_VALUE_LEN_MAX`: the value buffer, NUL included.
pub const PARAM_VALUE_LEN_MAX: usize = 96;
/// OpenHarmony's `PARAM_CONST_VALUE_LEN_MAX`: the value buffer of `const.*`, NUL included.
pub const PARAM_CONST_VALUE_LEN_MAX: usize = 4096;

/// Longest name in bytes (95).
pub const MAX_NAME_BYTES: usize = PARAM_NAME_LEN_MAX - 1;
/// Longest value in bytes (95).
pub const MAX_VALUE_BYTES: usize = PARAM_VALUE_LEN_MAX - 1;
/// Longest `const.*` value in bytes (4095).
pub const MAX_CONST_VALUE_BYTES: usize = PARAM_CONST_VALUE_LEN_MAX - 1;

/// Prefix of write-once parameters.
pub const CONST_PREFIX: &str = "const.";
/// Prefix of parameters kept across restarts.
pub const PERSIST_PREFIX: &str = "persist.";

/// How a parameter is stored and whether it can change, decided by its name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `const.*`: set once, then read-only until the daemon restarts. Memory only: like
    /// OpenHarmony's const parameters, which init loads from config files at every boot, the
    /// daemon sets them again at each start.
    Const,
    /// `persist.*`: written to SQLite before the set returns; survives restarts and `kill -9`.
    Persist,
    /// Everything else: memory only, gone after a restart.
    Plain,
}

/// The kind of the parameter `name`.
pub fn kind(name: &str) -> ParamKind {
    if name.starts_with(CONST_PREFIX) {
        ParamKind::Const
    } else if name.starts_with(PERSIST_PREFIX) {
        ParamKind::Persist
    } else {
        ParamKind::Plain
    }
}

/// Shows at most 120 bytes of a rejected name, so one huge argument cannot flood a log.
fn shown(name: &str) -> String {
    if name.len() <= 120 {
        return name.to_owned();
    }
    let mut end = 120;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

fn name_error(name: &str, reason: impl Into<String>) -> ParamError {
    ParamError::InvalidName {
        name: shown(name),
        reason: reason.into(),
    }
}

/// Checks a name as OpenHarmony's `CheckParamName` does: 1..=95 bytes of ASCII letters,
/// digits and `. _ - @ :`, no leading or trailing `.`, no `..`.
pub fn validate_name(name: &str) -> Result<(), ParamError> {
    check_name(name, false)
}

/// Checks a prefix for listing: like a name, but a trailing `.` is allowed, and `""` or `#`
/// (OpenHarmony's root) mean every parameter.
pub fn validate_prefix(prefix: &str) -> Result<(), ParamError> {
    if prefix.is_empty() || prefix == "#" {
        return Ok(());
    }
    check_name(prefix, true)
}

fn check_name(name: &str, trailing_dot_ok: bool) -> Result<(), ParamError> {
    if name.is_empty() {
        return Err(name_error(name, "the name is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(name_error(
            name,
            format!(
                "the name is {} bytes, the limit is {MAX_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    if name.starts_with('.') {
        return Err(name_error(name, "it starts with '.'"));
    }
    if !trailing_dot_ok && name.ends_with('.') {
        return Err(name_error(name, "it ends with '.'"));
    }
    if name.contains("..") {
        return Err(name_error(name, "it contains \"..\""));
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':')))
    {
        return Err(name_error(
            name,
            format!(
                "character {c:?} at byte {i} is not allowed (only letters, digits, '.', '_', '-', '@', ':')"
            ),
        ));
    }
    Ok(())
}

/// The longest value `name` may hold.
pub fn value_limit(name: &str) -> usize {
    match kind(name) {
        ParamKind::Const => MAX_CONST_VALUE_BYTES,
        _ => MAX_VALUE_BYTES,
    }
}

/// Checks a value for `name`: within [`value_limit`] and free of NUL bytes (OpenHarmony stores
/// C strings). An empty value is allowed, as in OpenHarmony.
pub fn validate_value(name: &str, value: &str) -> Result<(), ParamError> {
    let limit = value_limit(name);
    if value.len() > limit {
        return Err(ParamError::InvalidValue {
            name: name.to_owned(),
            reason: format!("value is {} bytes, the limit is {limit}", value.len()),
        });
    }
    if let Some(i) = value.find('\0') {
        return Err(ParamError::InvalidValue {
            name: name.to_owned(),
            reason: format!("value contains a NUL byte at byte {i}"),
        });
    }
    Ok(())
}

/// Who may read and who may set the parameters under one prefix.
#[derive(Debug, Clone, Copy)]
pub struct AccessRule {
    /// Name prefix this rule covers; `""` is the default for every other name.
    pub prefix: &'static str,
    /// Token types that may read (get, list, wait).
    pub read: &'static [TokenType],
    /// Token types that may set. `const.*` is in addition write-once for everyone.
    pub write: &'static [TokenType],
    /// Why the rule is what it is, shown by `param ls -r` and the dump.
    pub why: &'static str,
}

impl AccessRule {
    /// `const.*`, or `other` for the default rule: how messages name the rule's scope.
    pub fn scope(&self) -> String {
        if self.prefix.is_empty() {
            "other".to_owned()
        } else {
            format!("{}*", self.prefix)
        }
    }
}

const EVERYONE: &[TokenType] = &[
    TokenType::Native,
    TokenType::Shell,
    TokenType::Hap,
    TokenType::Invalid,
];
const SYSTEM: &[TokenType] = &[TokenType::Native];
const SYSTEM_AND_SHELL: &[TokenType] = &[TokenType::Native, TokenType::Shell];

/// The access table, the one definition of who may do what; the longest matching prefix
/// wins. Everyone may read everything for now (a read column is kept so read rules can be
/// added). Applications (hap) and unknown local users (invalid) set nothing: in OpenHarmony
/// apps cannot set system parameters through the public API either.
pub const ACCESS_RULES: &[AccessRule] = &[
    AccessRule {
        prefix: "const.",
        read: EVERYONE,
        write: SYSTEM,
        why: "device constants, set once by the system at start",
    },
    AccessRule {
        prefix: "ohos.",
        read: EVERYONE,
        write: SYSTEM,
        why: "OS identity and boot information",
    },
    AccessRule {
        prefix: "startup.",
        read: EVERYONE,
        write: SYSTEM,
        why: "service states owned by the daemon (init's in OpenHarmony)",
    },
    AccessRule {
        prefix: "sys.",
        read: EVERYONE,
        write: SYSTEM,
        why: "system state owned by system services",
    },
    AccessRule {
        prefix: "security.",
        read: EVERYONE,
        write: SYSTEM,
        why: "security policy switches",
    },
    AccessRule {
        prefix: "persist.hdc.shell_user",
        read: EVERYONE,
        write: SYSTEM,
        why: "who hdc's shells run as: set by the device's owner (`oxhd --hdc-shell-user`), \
              never by the shell itself",
    },
    AccessRule {
        prefix: "persist.",
        read: EVERYONE,
        write: SYSTEM_AND_SHELL,
        why: "durable settings a developer may change",
    },
    AccessRule {
        prefix: "debug.",
        read: EVERYONE,
        write: SYSTEM_AND_SHELL,
        why: "debugging switches",
    },
    AccessRule {
        prefix: "",
        read: EVERYONE,
        write: SYSTEM_AND_SHELL,
        why: "runtime settings (test.*, hilog.* and the like)",
    },
];

/// The rule that governs `name`: the longest prefix of [`ACCESS_RULES`] that matches.
pub fn rule_for(name: &str) -> &'static AccessRule {
    let mut best = &ACCESS_RULES[ACCESS_RULES.len() - 1];
    for r in ACCESS_RULES {
        if name.starts_with(r.prefix) && r.prefix.len() > best.prefix.len() {
            best = r;
        }
    }
    best
}

fn token_list(types: &[TokenType]) -> String {
    if types.is_empty() {
        return "nobody".to_owned();
    }
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(
    op: &'static str,
    name: &str,
    token: TokenType,
    pick: fn(&AccessRule) -> &'static [TokenType],
) -> Result<(), ParamError> {
    let rule = rule_for(name);
    let allowed = pick(rule);
    if allowed.contains(&token) {
        Ok(())
    } else {
        Err(ParamError::PermissionDenied {
            op,
            name: name.to_owned(),
            token,
            scope: rule.scope(),
            allowed: token_list(allowed),
        })
    }
}

/// May a caller with `token` set `name`? (The write-once rule of `const.*` is the store's,
/// since it depends on state.)
pub fn check_write(name: &str, token: TokenType) -> Result<(), ParamError> {
    check("Set", name, token, |r| r.write)
}

/// May a caller with `token` read `name`?
pub fn check_read(name: &str, token: TokenType) -> Result<(), ParamError> {
    check("Get", name, token, |r| r.read)
}

/// Does `value` match a wait pattern? `*` matches any run of characters (so `*` alone
/// matches any value and `val*` any value starting with `val`, as OpenHarmony's
/// `param wait`); everything else matches itself. OpenHarmony only honours the part before
/// the first `*`; a full glob is a superset for the patterns it documents.
pub fn value_matches(value: &str, pattern: &str) -> bool {
    let (v, p) = (value.as_bytes(), pattern.as_bytes());
    let (mut vi, mut pi) = (0, 0);
    // Position after the last '*' seen, and where in the value it started matching.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, vi));
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    #[test]
    fn names_follow_openharmony_rules() {
        for ok in [
            "a",
            "persist.hdc.port",
            "const.product.name",
            "x-y_z@1:2",
            "A.B9",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok} should be valid");
        }
        let cases = [
            ("", "empty"),
            (".a", "starts with '.'"),
            ("a.", "ends with '.'"),
            ("a..b", "\"..\""),
            ("a b", "' '"),
            ("a/b", "'/'"),
            ("ä.b", "'ä'"),
            ("a*", "'*'"),
        ];
        for (bad, why) in cases {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.code(), code::INVALID_ARGUMENT);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn name_length_limit_is_95_bytes() {
        let max = "a".repeat(MAX_NAME_BYTES);
        assert!(validate_name(&max).is_ok());
        let over = "a".repeat(MAX_NAME_BYTES + 1);
        let e = validate_name(&over).unwrap_err();
        assert!(
            e.to_string()
                .contains("the name is 96 bytes, the limit is 95"),
            "{e}"
        );
    }

    #[test]
    fn prefixes_may_end_with_a_dot_or_be_the_root() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("#").is_ok());
        assert!(validate_prefix("persist.").is_ok());
        assert!(validate_prefix("persist..x").is_err());
        assert!(validate_prefix(".persist").is_err());
    }

    #[test]
    fn value_limits_depend_on_const() {
        assert!(validate_value("persist.x", &"v".repeat(95)).is_ok());
        let e = validate_value("persist.x", &"v".repeat(120)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Set parameter persist.x failed: value is 120 bytes, the limit is 95"
        );
        assert_eq!(e.code(), code::INVALID_VALUE);
        assert!(validate_value("const.x", &"v".repeat(4095)).is_ok());
        assert!(validate_value("const.x", &"v".repeat(4096)).is_err());
        assert!(validate_value("a.b", "").is_ok());
        assert!(validate_value("a.b", "x\0y").is_err());
    }

    #[test]
    fn kinds_come_from_the_prefix() {
        assert_eq!(kind("const.a"), ParamKind::Const);
        assert_eq!(kind("persist.a"), ParamKind::Persist);
        assert_eq!(kind("persistx.a"), ParamKind::Plain);
        assert_eq!(kind("constant.a"), ParamKind::Plain);
    }

    #[test]
    fn access_table_has_one_default_and_no_duplicates() {
        let defaults = ACCESS_RULES.iter().filter(|r| r.prefix.is_empty()).count();
        assert_eq!(defaults, 1);
        for (i, a) in ACCESS_RULES.iter().enumerate() {
            for b in &ACCESS_RULES[i + 1..] {
                assert_ne!(a.prefix, b.prefix);
            }
        }
    }

    #[test]
    fn who_may_set_what() {
        use TokenType::*;
        let table: &[(&str, TokenType, bool)] = &[
            ("const.product.name", Native, true),
            ("const.product.name", Shell, false),
            ("ohos.boot.sn", Native, true),
            ("ohos.boot.sn", Shell, false),
            ("startup.service.ctl.x", Shell, false),
            ("sys.usb.config", Shell, false),
            ("persist.hdc.port", Shell, true),
            ("persist.hdc.shell_user", Shell, false),
            ("persist.hdc.shell_user", Native, true),
            ("persist.hdc.port", Native, true),
            ("debug.x", Shell, true),
            ("test.x", Shell, true),
            ("persist.hdc.port", Invalid, false),
            ("persist.hdc.port", Hap, false),
            ("test.x", Invalid, false),
            ("test.x", Hap, false),
            // A prefix is matched as text, so "ohosx." is not "ohos.".
            ("ohosx.a", Shell, true),
        ];
        for &(name, token, allowed) in table {
            let r = check_write(name, token);
            assert_eq!(r.is_ok(), allowed, "{name} by {token:?}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.code(), code::PERMISSION_DENIED);
                assert!(e.to_string().contains(name));
            }
        }
        for t in [Native, Shell, Hap, Invalid] {
            assert!(check_read("const.product.name", t).is_ok());
        }
        assert_eq!(rule_for("persist.x").prefix, "persist.");
        assert_eq!(rule_for("zzz").scope(), "other");
    }

    #[test]
    fn wait_patterns() {
        assert!(value_matches("anything", "*"));
        assert!(value_matches("", "*"));
        assert!(value_matches("value", "val*"));
        assert!(!value_matches("vax", "val*"));
        assert!(value_matches("on", "on"));
        assert!(!value_matches("on1", "on"));
        assert!(value_matches("a-mid-z", "a*z"));
        assert!(!value_matches("a-mid-y", "a*z"));
        assert!(value_matches("abcbc", "*bc"));
        assert!(value_matches("*****", "*****"));
        assert!(!value_matches("x", ""));
        assert!(value_matches("", ""));
    }
}
