//! Table and column names: checked, then quoted, so that no name reaches SQL as anything but
//! a name. Values never reach SQL text at all: they are bound parameters.

use crate::config::MAX_IDENT_LEN;
use crate::error::{RdbError, Result};

/// The prefix of every name this crate keeps for itself (log tables, triggers, log columns).
pub const RESERVED_PREFIX: &str = "oxh_rdb_";

/// True for a plain SQL name: a letter or `_`, then letters, digits, `_` or `$`.
pub fn is_plain(name: &str) -> bool {
    let mut ch = name.chars();
    matches!(ch.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && ch.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && name.len() <= MAX_IDENT_LEN
}

/// `name` checked and double-quoted. A field may name its table (`note.title`).
pub fn quote(name: &str) -> Result<String> {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, part) in name.split('.').enumerate() {
        if i > 1 || !is_plain(part) {
            return Err(RdbError::invalid(format!(
                "{name:?} is not a table or column name"
            )));
        }
        if i > 0 {
            out.push('.');
        }
        out.push('"');
        out.push_str(part);
        out.push('"');
    }
    Ok(out)
}

/// A table name: plain, not one of ours, not SQLite's own.
pub fn table(name: &str) -> Result<String> {
    let lower = name.to_ascii_lowercase();
    if !is_plain(name) || lower.starts_with(RESERVED_PREFIX) || lower.starts_with("sqlite_") {
        return Err(RdbError::invalid(format!(
            "{name:?} is not a user table name"
        )));
    }
    Ok(format!("\"{name}\""))
}

/// Double-quotes a name that is known to be plain (read from the schema and checked).
pub(crate) fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_then_quoted() {
        assert_eq!(quote("title").unwrap(), "\"title\"");
        assert_eq!(quote("note.title").unwrap(), "\"note\".\"title\"");
        for bad in [
            "",
            "1a",
            "a b",
            "a\"b",
            "x;DROP TABLE t",
            "a.b.c",
            "a--",
            "é",
        ] {
            assert_eq!(quote(bad).unwrap_err().code(), 14_800_001, "{bad:?}");
        }
        assert!(table("oxh_rdb_note_rows").is_err());
        assert!(table("sqlite_master").is_err());
        assert_eq!(table("note").unwrap(), "\"note\"");
    }
}
