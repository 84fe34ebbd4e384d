//! Durable storage of tokens, permission states and usage records: one SQLite file,
//! `<dir>/atm.db`, in WAL mode with `synchronous=FULL`, so an acknowledged grant survives
//! `kill -9` and power loss.
//!
//! Schema (user_version 1), readable with the plain `sqlite3` tool:
//! - `hap_token(token_id PK, token_attr, user_id, bundle_name, inst_index, dlp_type,
//!   app_id_desc, api_version, distribution_type, apl, domain, uid)`, unique on
//!   (user_id, bundle_name, inst_index) and on uid;
//! - `native_token(token_id PK, process_name UNIQUE)`: the stable ids of the shell, the
//!   configured system processes and the shared unconfigured token (their permissions come
//!   from the configuration at each start, as OpenHarmony's nativetoken.json);
//! - `perm_state(token_id, permission, granted, flags)` for HAP tokens;
//! - `perm_usage(token_id, permission, success, fail, first_ms, last_ms)`.

use crate::definitions::{self, Apl};
use crate::error::AtmError;
use crate::rules::{DlpType, PermState};
use rusqlite::{Connection, params};
use std::path::Path;

/// File name of the store inside the service's directory.
pub const DB_FILE: &str = "atm.db";

const SCHEMA_VERSION: i64 = 1;

pub(crate) fn storage(what: &str, e: impl std::fmt::Display) -> AtmError {
    AtmError::Storage(format!("{what}: {e}"))
}

/// A stored HAP token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HapRow {
    pub token_id: u32,
    pub token_attr: u32,
    pub user_id: i32,
    pub bundle_name: String,
    pub inst_index: i32,
    pub dlp_type: DlpType,
    pub app_id_desc: String,
    pub api_version: i32,
    pub distribution_type: String,
    pub apl: Apl,
    pub domain: String,
    pub uid: Option<u32>,
}

/// A stored usage record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UsageRow {
    pub token_id: u32,
    pub index: u16,
    pub success: u64,
    pub fail: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// Everything read at start-up.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub haps: Vec<(HapRow, Vec<PermState>)>,
    pub natives: Vec<(u32, String)>,
    pub usage: Vec<UsageRow>,
}

pub(crate) struct AtmDb {
    conn: Connection,
}

fn dlp_code(d: DlpType) -> i64 {
    match d {
        DlpType::Common => 0,
        DlpType::Read => 1,
        DlpType::FullControl => 2,
    }
}

fn dlp_from(v: i64) -> DlpType {
    match v {
        1 => DlpType::Read,
        2 => DlpType::FullControl,
        _ => DlpType::Common,
    }
}

impl AtmDb {
    /// Opens (creating if needed) the store and reads it. Rows that do not make sense today
    /// (a permission OpenHarmony no longer defines, an unknown APL) are skipped with a warning.
    pub(crate) fn open(path: &Path) -> Result<(Self, Loaded), AtmError> {
        let at = |what: &str| format!("{what} {}", path.display());
        let conn = oxh_kal::sqlite::open(path).map_err(|e| storage(&at("cannot open"), e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| storage(&at("cannot read the schema version of"), e))?;
        if version > SCHEMA_VERSION {
            return Err(storage(
                &at(&format!(
                    "schema version {version} (newer than {SCHEMA_VERSION}) in"
                )),
                "refusing to touch it",
            ));
        }
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS hap_token (
                 token_id INTEGER PRIMARY KEY NOT NULL,
                 token_attr INTEGER NOT NULL,
                 user_id INTEGER NOT NULL,
                 bundle_name TEXT NOT NULL,
                 inst_index INTEGER NOT NULL,
                 dlp_type INTEGER NOT NULL,
                 app_id_desc TEXT NOT NULL,
                 api_version INTEGER NOT NULL,
                 distribution_type TEXT NOT NULL,
                 apl INTEGER NOT NULL,
                 domain TEXT NOT NULL,
                 uid INTEGER UNIQUE,
                 UNIQUE (user_id, bundle_name, inst_index)
             );
             CREATE TABLE IF NOT EXISTS native_token (
                 token_id INTEGER PRIMARY KEY NOT NULL,
                 process_name TEXT NOT NULL UNIQUE
             );
             CREATE TABLE IF NOT EXISTS perm_state (
                 token_id INTEGER NOT NULL,
                 permission TEXT NOT NULL,
                 granted INTEGER NOT NULL,
                 flags INTEGER NOT NULL,
                 PRIMARY KEY (token_id, permission)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS perm_usage (
                 token_id INTEGER NOT NULL,
                 permission TEXT NOT NULL,
                 success INTEGER NOT NULL,
                 fail INTEGER NOT NULL,
                 first_ms INTEGER NOT NULL,
                 last_ms INTEGER NOT NULL,
                 PRIMARY KEY (token_id, permission)
             ) WITHOUT ROWID;
             PRAGMA user_version={SCHEMA_VERSION};"
        ))
        .map_err(|e| storage(&at("cannot create the schema in"), e))?;
        let mut db = Self { conn };
        let loaded = db.load().map_err(|e| storage(&at("cannot read"), e))?;
        Ok((db, loaded))
    }

    fn load(&mut self) -> rusqlite::Result<Loaded> {
        let mut out = Loaded::default();
        let mut states: std::collections::HashMap<u32, Vec<PermState>> = Default::default();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT token_id, permission, granted, flags FROM perm_state")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let name: String = r.get(1)?;
                let Some(index) = definitions::index_of(&name) else {
                    tracing::warn!(tag = "atm", "skipping stored state of undefined {name}");
                    continue;
                };
                states.entry(id as u32).or_default().push(PermState {
                    index,
                    granted: r.get::<_, i64>(2)? != 0,
                    flags: r.get::<_, i64>(3)? as u32,
                });
            }
        }
        {
            let mut stmt = self.conn.prepare(
                "SELECT token_id, token_attr, user_id, bundle_name, inst_index, dlp_type,
                        app_id_desc, api_version, distribution_type, apl, domain, uid
                 FROM hap_token",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let token_id = r.get::<_, i64>(0)? as u32;
                let Some(apl) = Apl::from_code(r.get(9)?) else {
                    tracing::warn!(tag = "atm", "skipping token {token_id:#x}: unknown APL");
                    continue;
                };
                let row = HapRow {
                    token_id,
                    token_attr: r.get::<_, i64>(1)? as u32,
                    user_id: r.get(2)?,
                    bundle_name: r.get(3)?,
                    inst_index: r.get(4)?,
                    dlp_type: dlp_from(r.get(5)?),
                    app_id_desc: r.get(6)?,
                    api_version: r.get(7)?,
                    distribution_type: r.get(8)?,
                    apl,
                    domain: r.get(10)?,
                    uid: r.get::<_, Option<i64>>(11)?.map(|u| u as u32),
                };
                let st = states.remove(&token_id).unwrap_or_default();
                out.haps.push((row, st));
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare("SELECT token_id, process_name FROM native_token")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                out.natives.push((r.get::<_, i64>(0)? as u32, r.get(1)?));
            }
        }
        {
            let mut stmt = self.conn.prepare(
                "SELECT token_id, permission, success, fail, first_ms, last_ms FROM perm_usage",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(1)?;
                let Some(index) = definitions::index_of(&name) else {
                    continue;
                };
                out.usage.push(UsageRow {
                    token_id: r.get::<_, i64>(0)? as u32,
                    index,
                    success: r.get::<_, i64>(2)?.max(0) as u64,
                    fail: r.get::<_, i64>(3)?.max(0) as u64,
                    first_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    last_ms: r.get::<_, i64>(5)?.max(0) as u64,
                });
            }
        }
        Ok(out)
    }

    /// Stores a native (or shell) token's id for its process name.
    pub(crate) fn insert_native(&mut self, token_id: u32, name: &str) -> Result<(), AtmError> {
        self.conn
            .execute(
                "INSERT INTO native_token (token_id, process_name) VALUES (?1, ?2)",
                params![i64::from(token_id), name],
            )
            .map(|_| ())
            .map_err(|e| storage("cannot store a native token", e))
    }

    /// Writes a HAP token and its states in one transaction, replacing what was stored.
    pub(crate) fn put_hap(&mut self, row: &HapRow, states: &[PermState]) -> Result<(), AtmError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO hap_token (token_id, token_attr, user_id, bundle_name, inst_index,
                     dlp_type, app_id_desc, api_version, distribution_type, apl, domain, uid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT(token_id) DO UPDATE SET token_attr = excluded.token_attr,
                     app_id_desc = excluded.app_id_desc, api_version = excluded.api_version,
                     distribution_type = excluded.distribution_type, apl = excluded.apl,
                     domain = excluded.domain, uid = excluded.uid",
                params![
                    i64::from(row.token_id),
                    i64::from(row.token_attr),
                    row.user_id,
                    row.bundle_name,
                    row.inst_index,
                    dlp_code(row.dlp_type),
                    row.app_id_desc,
                    row.api_version,
                    row.distribution_type,
                    row.apl.code(),
                    row.domain,
                    row.uid.map(i64::from),
                ],
            )?;
            tx.execute(
                "DELETE FROM perm_state WHERE token_id = ?1",
                params![i64::from(row.token_id)],
            )?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO perm_state (token_id, permission, granted, flags)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for s in states {
                    let Some(d) = s.def() else { continue };
                    stmt.execute(params![
                        i64::from(row.token_id),
                        d.name,
                        i64::from(s.granted),
                        i64::from(s.flags)
                    ])?;
                }
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| storage("cannot store the token", e))
    }

    /// Writes one permission state of a HAP token.
    pub(crate) fn put_state(&mut self, token_id: u32, s: PermState) -> Result<(), AtmError> {
        let Some(d) = s.def() else {
            return Err(AtmError::PermissionNotDefined(format!("index {}", s.index)));
        };
        self.conn
            .execute(
                "INSERT INTO perm_state (token_id, permission, granted, flags)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(token_id, permission) DO UPDATE SET
                     granted = excluded.granted, flags = excluded.flags",
                params![
                    i64::from(token_id),
                    d.name,
                    i64::from(s.granted),
                    i64::from(s.flags)
                ],
            )
            .map(|_| ())
            .map_err(|e| storage("cannot store the permission state", e))
    }

    /// Sets a HAP token's uid.
    pub(crate) fn set_uid(&mut self, token_id: u32, uid: Option<u32>) -> Result<(), AtmError> {
        self.conn
            .execute(
                "UPDATE hap_token SET uid = ?2 WHERE token_id = ?1",
                params![i64::from(token_id), uid.map(i64::from)],
            )
            .map(|_| ())
            .map_err(|e| storage("cannot store the uid", e))
    }

    /// Deletes a HAP token with its states and usage records.
    pub(crate) fn delete_hap(&mut self, token_id: u32) -> Result<(), AtmError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for table in ["hap_token", "perm_state", "perm_usage"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE token_id = ?1"),
                    params![i64::from(token_id)],
                )?;
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| storage("cannot delete the token", e))
    }

    /// Writes usage records and deletes evicted ones, in one transaction.
    pub(crate) fn write_usage(
        &mut self,
        upserts: &[UsageRow],
        deletes: &[(u32, u16)],
    ) -> Result<(), AtmError> {
        if upserts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut up = tx.prepare_cached(
                    "INSERT INTO perm_usage (token_id, permission, success, fail, first_ms, last_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(token_id, permission) DO UPDATE SET success = excluded.success,
                         fail = excluded.fail, first_ms = excluded.first_ms,
                         last_ms = excluded.last_ms",
                )?;
                for u in upserts {
                    let Some(d) = definitions::by_index(u.index) else {
                        continue;
                    };
                    up.execute(params![
                        i64::from(u.token_id),
                        d.name,
                        u.success.min(i64::MAX as u64) as i64,
                        u.fail.min(i64::MAX as u64) as i64,
                        u.first_ms.min(i64::MAX as u64) as i64,
                        u.last_ms.min(i64::MAX as u64) as i64,
                    ])?;
                }
                let mut del = tx.prepare_cached(
                    "DELETE FROM perm_usage WHERE token_id = ?1 AND permission = ?2",
                )?;
                for (t, i) in deletes {
                    let Some(d) = definitions::by_index(*i) else {
                        continue;
                    };
                    del.execute(params![i64::from(*t), d.name])?;
                }
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| storage("cannot store usage records", e))
    }

    /// Deletes every usage record of a token; returns how many rows went.
    pub(crate) fn delete_usage_of(&mut self, token_id: u32) -> Result<u64, AtmError> {
        self.conn
            .execute(
                "DELETE FROM perm_usage WHERE token_id = ?1",
                params![i64::from(token_id)],
            )
            .map(|n| n as u64)
            .map_err(|e| storage("cannot delete usage records", e))
    }

    /// The token id stored for a native process name.
    #[cfg(test)]
    pub(crate) fn native_id(&self, name: &str) -> Option<u32> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT token_id FROM native_token WHERE process_name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .ok()
            .flatten()
            .map(|v| v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version=7")
            .unwrap();
        let Err(e) = AtmDb::open(&path) else {
            panic!("opened a newer schema")
        };
        assert!(e.to_string().contains("schema version 7"), "{e}");
        assert_eq!(e.code(), crate::code::SERVICE_ABNORMAL);
    }

    #[test]
    fn natives_are_stored_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let (mut db, loaded) = AtmDb::open(&path).unwrap();
        assert!(loaded.natives.is_empty());
        db.insert_native(0x2800_0005, "oxhd").unwrap();
        assert_eq!(db.native_id("oxhd"), Some(0x2800_0005));
        assert!(db.insert_native(0x2800_0006, "oxhd").is_err());
    }
}
