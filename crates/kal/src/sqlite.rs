//! The one way every store opens its SQLite database (feature `sqlite`): write-ahead log,
//! `synchronous=FULL` (a commit acknowledged to a caller survives power loss), and a busy
//! timeout, so a second connection (a backup, `sqlite3` run by hand) waits instead of failing.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a statement waits for another connection's lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused to open or configure it.
    #[error("cannot open {}: {source}", path.display())]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file system or the file would not take a write-ahead log (durability needs it).
    #[error("{}: WAL mode refused (journal mode {mode})", path.display())]
    NotWal {
        /// The database.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
}

/// Opens (creating) the database at `path`: WAL (checked), `synchronous=FULL`,
/// [`BUSY_TIMEOUT`]. The caller creates its schema.
pub fn open(path: &Path) -> Result<Connection, OpenError> {
    let sq = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(sq)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sq)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sq)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.execute_batch("PRAGMA synchronous=FULL;").map_err(sq)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_full_sync() {
        let d = tempfile::tempdir().unwrap();
        let c = open(&d.path().join("x.db")).unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL");
        assert!(open(&d.path().join("no/such/dir/x.db")).is_err());
    }
}
