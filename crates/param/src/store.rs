//! Durable storage of `persist.*` parameters: one SQLite file, `<dir>/persist.db`, in WAL mode
//! with `synchronous=FULL`, so a committed write survives `kill -9` and power loss.
//!
//! Schema (user_version 1): `persist_param(name TEXT PRIMARY KEY, value TEXT NOT NULL)`,
//! WITHOUT ROWID. Readable with the plain `sqlite3` tool.

use crate::error::ParamError;
use crate::rules::{self, ParamKind};
use rusqlite::{Connection, params};
use std::path::Path;

/// File name of the store inside the service's directory.
pub const DB_FILE: &str = "persist.db";

const SCHEMA_VERSION: i64 = 1;

/// The SQLite connection; used only by the service's writer thread after [`PersistDb::open`].
pub(crate) struct PersistDb {
    conn: Connection,
}

fn internal(path: &Path, what: &str, e: impl std::fmt::Display) -> ParamError {
    ParamError::Internal(format!("{what} {}: {e}", path.display()))
}

impl PersistDb {
    /// Opens (creating if needed) the store and returns it with every valid stored parameter.
    /// Rows that break today's rules (edited by hand, or from a future version) are skipped
    /// with a warning rather than failing the start.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<(String, String)>), ParamError> {
        let conn = oxh_kal::sqlite::open(path).map_err(|e| internal(path, "cannot open", e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS persist_param (
                 name TEXT PRIMARY KEY NOT NULL,
                 value TEXT NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(|e| internal(path, "cannot create the schema in", e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| internal(path, "cannot read the schema version of", e))?;
        match version {
            0 => conn
                .execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))
                .map_err(|e| internal(path, "cannot set the schema version of", e))?,
            SCHEMA_VERSION => {}
            v => {
                return Err(internal(
                    path,
                    &format!("schema version {v} (newer than {SCHEMA_VERSION}) in"),
                    "refusing to touch it",
                ));
            }
        }
        let rows = Self::load(&conn).map_err(|e| internal(path, "cannot read", e))?;
        Ok((Self { conn }, rows))
    }

    fn load(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = conn.prepare("SELECT name, value FROM persist_param")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let (Ok(name), Ok(value)) = (
                row.get_ref(0).and_then(|v| Ok(v.as_str()?.to_owned())),
                row.get_ref(1).and_then(|v| Ok(v.as_str()?.to_owned())),
            ) else {
                tracing::warn!(
                    tag = "param",
                    "skipping a stored parameter that is not text"
                );
                continue;
            };
            let valid = rules::validate_name(&name)
                .and_then(|_| rules::validate_value(&name, &value))
                .map_err(|e| e.to_string())
                .and_then(|_| match rules::kind(&name) {
                    ParamKind::Persist => Ok(()),
                    _ => Err(format!("{name} is not a persist.* parameter")),
                });
            match valid {
                Ok(()) => out.push((name, value)),
                Err(e) => {
                    tracing::warn!(tag = "param", "skipping stored parameter: {e}");
                }
            }
        }
        Ok(out)
    }

    /// Writes `items` in one transaction (group commit): all or none.
    pub(crate) fn write_batch<'a>(
        &mut self,
        items: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO persist_param (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            )?;
            for (name, value) in items {
                stmt.execute(params![name, value])?;
            }
        }
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_survive_reopen_and_bad_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            let (mut db, rows) = PersistDb::open(&path).unwrap();
            assert!(rows.is_empty());
            db.write_batch(
                [("persist.a", "1"), ("persist.b", "2"), ("persist.a", "3")].into_iter(),
            )
            .unwrap();
            // Rows that today's rules reject, as if edited by hand.
            db.conn
                .execute_batch(
                    "INSERT INTO persist_param VALUES ('plain.x', '1');
                     INSERT INTO persist_param VALUES ('persist..bad', '1');",
                )
                .unwrap();
        }
        let (_db, mut rows) = PersistDb::open(&path).unwrap();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                ("persist.a".to_owned(), "3".to_owned()),
                ("persist.b".to_owned(), "2".to_owned())
            ]
        );
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version=7")
            .unwrap();
        let Err(e) = PersistDb::open(&path) else {
            panic!("opened a newer schema")
        };
        assert!(e.to_string().contains("schema version 7"), "{e}");
    }
}
