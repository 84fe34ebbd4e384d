//! `StoreConfig` after OpenHarmony's, and the store's limits, each defined once.

use crate::error::{RdbError, Result};
use serde::{Deserialize, Serialize};

/// At most this many distributed tables per store (OpenHarmony's limit).
pub const MAX_DISTRIBUTED_TABLES: usize = 32;
/// At most this many observers per store (OpenHarmony's limit; enforced by the service).
pub const MAX_OBSERVERS: usize = 8;
/// The longest store name, in bytes (a file name, with room for `-wal`).
pub const MAX_NAME_LEN: usize = 128;
/// The longest table or column name we accept, in bytes.
pub const MAX_IDENT_LEN: usize = 128;

/// `relationalStore.SecurityLevel`: S1 (low) to S4 (critical). Fixed when the store is made;
/// opening it again with another level is 14800017, as in OpenHarmony.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SecurityLevel {
    /// 1: loss of the data has a minor impact.
    S1 = 1,
    /// 2: loss of the data has a major impact.
    S2 = 2,
    /// 3: loss of the data has a severe impact.
    S3 = 3,
    /// 4: loss of the data has a critical impact.
    S4 = 4,
}

impl SecurityLevel {
    /// From OpenHarmony's number (1..=4).
    pub fn from_i32(v: i32) -> Result<Self> {
        Ok(match v {
            1 => Self::S1,
            2 => Self::S2,
            3 => Self::S3,
            4 => Self::S4,
            _ => {
                return Err(RdbError::invalid(format!(
                    "securityLevel {v} is not S1..S4"
                )));
            }
        })
    }
}

/// `relationalStore.StoreConfig`: what names a store and how it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// The store's file name, e.g. `notes.db`.
    pub name: String,
    /// How sensitive the data is.
    pub security_level: SecurityLevel,
    /// A sub-directory of the app's database dir (`customDir`), relative, no `..`.
    pub custom_dir: Option<String>,
}

impl StoreConfig {
    /// A config for `name` at `level`.
    pub fn new(name: impl Into<String>, level: SecurityLevel) -> Self {
        Self {
            name: name.into(),
            security_level: level,
            custom_dir: None,
        }
    }

    /// The store file's path relative to the app's database dir, after checking `name` and
    /// `customDir` as path components (14800010 when they are not).
    pub fn relative_path(&self) -> Result<std::path::PathBuf> {
        let bad = |what: &str, v: &str| {
            RdbError::new(
                crate::error::code::INVALID_PATH,
                format!("{what} {v:?} is not a plain file name"),
            )
        };
        let n = &self.name;
        if n.is_empty()
            || n.len() > MAX_NAME_LEN
            || n.contains(['/', '\0'])
            || n == "."
            || n == ".."
        {
            return Err(bad("name", n));
        }
        let mut p = std::path::PathBuf::new();
        if let Some(d) = &self.custom_dir {
            for part in d.split('/') {
                if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
                    return Err(bad("customDir", d));
                }
                p.push(part);
            }
        }
        p.push(n);
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_custom_dirs_stay_inside_the_database_dir() {
        let mut c = StoreConfig::new("notes.db", SecurityLevel::S1);
        assert_eq!(c.relative_path().unwrap(), std::path::Path::new("notes.db"));
        c.custom_dir = Some("a/b".into());
        assert_eq!(
            c.relative_path().unwrap(),
            std::path::Path::new("a/b/notes.db")
        );
        for d in ["../x", "/abs", "a//b", "a/./b"] {
            c.custom_dir = Some(d.into());
            assert_eq!(c.relative_path().unwrap_err().code(), 14_800_010, "{d}");
        }
        for n in ["", "..", "a/b", "x\0"] {
            let c = StoreConfig::new(n, SecurityLevel::S1);
            assert_eq!(c.relative_path().unwrap_err().code(), 14_800_010, "{n:?}");
        }
        assert_eq!(SecurityLevel::from_i32(3).unwrap(), SecurityLevel::S3);
        assert_eq!(SecurityLevel::from_i32(5).unwrap_err().code(), 14_800_001);
    }
}
