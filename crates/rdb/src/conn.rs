//! One connection to a store file, set up as every connection of this crate is: WAL and
//! synchronous FULL (oxh_kal::sqlite), no waiting on another writer (a second write
//! transaction fails at once with 14800024, as OpenHarmony's does), recursive triggers (so a
//! REPLACE's implicit delete is logged), and the functions the change-tracking triggers call.
//! Every write transaction goes through [`Conn::write`], which hands the triggers one HLC
//! timestamp for the transaction and fresh change numbers, and stores both when it commits.

use crate::error::{RdbError, Result, code};
use oxh_kvstore::hlc::Hlc;
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Physical time in ms since the Unix epoch (a test passes a virtual clock).
pub type PhysClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the triggers read while a write transaction runs.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// The transaction's HLC timestamp.
    pub ts: AtomicU64,
    /// The next local change number.
    pub seq: AtomicI64,
    /// The largest timestamp seen from a peer in this transaction.
    pub observed: AtomicU64,
    /// True while a peer's changes are written: the triggers stand aside.
    pub applying: AtomicBool,
}

impl Ctx {
    /// Takes the next change number.
    pub fn next_seq(&self) -> i64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

/// The store's own tables, made when the file is.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oxh_rdb_meta(
    id INTEGER PRIMARY KEY CHECK (id = 0),
    level INTEGER NOT NULL, epoch BLOB NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS oxh_rdb_tables(name TEXT PRIMARY KEY, cols TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oxh_rdb_devices(idx INTEGER PRIMARY KEY, device TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS oxh_rdb_peers(
    device TEXT PRIMARY KEY, acked INTEGER NOT NULL, epoch BLOB NOT NULL DEFAULT x'');
";

/// A connection and its trigger context.
pub(crate) struct Conn {
    pub c: Connection,
    pub ctx: Arc<Ctx>,
    clock: PhysClock,
}

fn random_epoch() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| RdbError::inner(format!("no randomness: {e}")))?;
    Ok(b)
}

/// SQL for the udid of a log entry's `oxh_rdb_dev` index (inside a query on a log table).
pub(crate) const DEV_NAME: &str = "(SELECT device FROM oxh_rdb_devices WHERE idx = oxh_rdb_dev)";

/// The index of `device` in the store's device list, if it has one.
pub(crate) fn known_device(c: &Connection, device: &str) -> Result<Option<i64>> {
    Ok(rusqlite::OptionalExtension::optional(c.query_row(
        "SELECT idx FROM oxh_rdb_devices WHERE device = ?1",
        [device],
        |r| r.get(0),
    ))?)
}

/// The index of `device`, added to the list if new (inside a write transaction).
pub(crate) fn device_index(c: &Connection, device: &str) -> Result<i64> {
    if let Some(i) = known_device(c, device)? {
        return Ok(i);
    }
    c.execute("INSERT INTO oxh_rdb_devices(device) VALUES (?1)", [device])?;
    Ok(c.last_insert_rowid())
}

impl Conn {
    /// Opens `path` (creating it) for `device`; on first open records `level`, later opens
    /// must name the same (14800017).
    pub fn open(path: &Path, device: &str, level: i32, clock: PhysClock) -> Result<Self> {
        let c = oxh_kal::sqlite::open(path)?;
        c.busy_timeout(std::time::Duration::ZERO)?;
        c.execute_batch("PRAGMA recursive_triggers = ON;")?;
        let ctx = Arc::new(Ctx::default());
        let flags = FunctionFlags::SQLITE_UTF8;
        let x = ctx.clone();
        c.create_scalar_function("oxh_rdb_ts", 0, flags, move |_| {
            Ok(x.ts.load(Ordering::Relaxed) as i64)
        })?;
        let x = ctx.clone();
        c.create_scalar_function("oxh_rdb_seq", 0, flags, move |_| Ok(x.next_seq()))?;
        let x = ctx.clone();
        c.create_scalar_function("oxh_rdb_applying", 0, flags, move |_| {
            Ok(x.applying.load(Ordering::Relaxed))
        })?;
        let conn = Self { c, ctx, clock };
        let read_level = |c: &Connection| -> Result<Option<i32>> {
            let made: bool = c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'oxh_rdb_meta'",
                [],
                |r| r.get(0),
            )?;
            if !made {
                return Ok(None);
            }
            Ok(rusqlite::OptionalExtension::optional(c.query_row(
                "SELECT level FROM oxh_rdb_meta WHERE id = 0",
                [],
                |r| r.get(0),
            ))?)
        };
        // An existing store is only read here, so a second connection opens while another
        // holds the write lock (a transaction object beside the store).
        let have = match read_level(&conn.c)? {
            Some(l) => Some(l),
            None => {
                conn.c.execute_batch("BEGIN IMMEDIATE").map_err(busy)?;
                let made = (|| -> Result<Option<i32>> {
                    conn.c.execute_batch(SCHEMA)?;
                    let have = read_level(&conn.c)?;
                    if have.is_none() {
                        conn.c.execute(
                            "INSERT INTO oxh_rdb_meta(id, level, epoch, seq, hlc) VALUES (0, ?1, ?2, 0, 0)",
                            rusqlite::params![level, random_epoch()?.to_vec()],
                        )?;
                    }
                    Ok(have)
                })();
                conn.finish(made.is_ok())?;
                made?
            }
        };
        if let Some(l) = have.filter(|l| *l != level) {
            return Err(RdbError::new(
                code::CONFIG_CHANGED,
                format!("the store was made at securityLevel S{l}, opened with S{level}"),
            ));
        }
        // The logs name devices by a small index (a udid is 64 characters: every log entry
        // would carry it); this device's is looked up once, made on its first open here.
        let idx = match known_device(&conn.c, device)? {
            Some(i) => i,
            None => {
                conn.c.execute_batch("BEGIN IMMEDIATE").map_err(busy)?;
                let made = device_index(&conn.c, device);
                conn.finish(made.is_ok())?;
                made?
            }
        };
        conn.c.create_scalar_function(
            "oxh_rdb_dev",
            0,
            flags | FunctionFlags::SQLITE_DETERMINISTIC,
            move |_| Ok(idx),
        )?;
        Ok(conn)
    }

    fn finish(&self, ok: bool) -> Result<()> {
        if self.c.is_autocommit() {
            return Ok(());
        }
        self.c
            .execute_batch(if ok { "COMMIT" } else { "ROLLBACK" })?;
        Ok(())
    }

    /// Reads the stored clock and change number and readies the context: the start of a
    /// write transaction (after BEGIN). Returns what was stored, for [`Conn::end_clock`].
    pub fn begin_clock(&self) -> Result<(i64, u64)> {
        let (seq, hlc): (i64, i64) =
            self.c
                .query_row("SELECT seq, hlc FROM oxh_rdb_meta WHERE id = 0", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let ts = Hlc::new(hlc as u64).now((self.clock)());
        self.ctx.ts.store(ts, Ordering::Relaxed);
        self.ctx.seq.store(seq + 1, Ordering::Relaxed);
        self.ctx.observed.store(0, Ordering::Relaxed);
        Ok((seq, hlc as u64))
    }

    /// Stores the change number and clock the transaction reached (before COMMIT).
    pub fn end_clock(&self, (seq0, hlc0): (i64, u64)) -> Result<()> {
        let seq = self.ctx.seq.load(Ordering::Relaxed) - 1;
        let observed = self.ctx.observed.load(Ordering::Relaxed);
        let used = seq != seq0;
        let base = if used {
            self.ctx.ts.load(Ordering::Relaxed)
        } else {
            hlc0
        };
        let hlc = base.max(observed).max(hlc0);
        if used || hlc != hlc0 {
            self.c.execute(
                "UPDATE oxh_rdb_meta SET seq = ?1, hlc = ?2 WHERE id = 0",
                rusqlite::params![seq, hlc as i64],
            )?;
        }
        Ok(())
    }

    /// Runs `f` in a write transaction begun with `begin` (BEGIN IMMEDIATE...), committed if
    /// `f` succeeds and rolled back if not. Another open write transaction: 14800024.
    pub fn write<T>(&self, begin: &str, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.c.execute_batch(begin).map_err(busy)?;
        let r = (|| {
            let start = self.begin_clock()?;
            let v = f(self)?;
            self.end_clock(start)?;
            Ok(v)
        })();
        self.ctx.applying.store(false, Ordering::Relaxed);
        match r {
            Ok(v) => {
                self.c.execute_batch("COMMIT").map_err(busy)?;
                Ok(v)
            }
            Err(e) => {
                // ON_CONFLICT_ROLLBACK may have ended the transaction already.
                let _ = self.finish(false);
                Err(e)
            }
        }
    }

    /// The store's change number now.
    pub fn seq(&self) -> Result<i64> {
        Ok(self
            .c
            .query_row("SELECT seq FROM oxh_rdb_meta WHERE id = 0", [], |r| {
                r.get(0)
            })?)
    }

    /// The store's random epoch (a new one when the store is deleted and made again).
    pub fn epoch(&self) -> Result<[u8; 16]> {
        let e: Vec<u8> =
            self.c
                .query_row("SELECT epoch FROM oxh_rdb_meta WHERE id = 0", [], |r| {
                    r.get(0)
                })?;
        e.try_into()
            .map_err(|_| RdbError::new(code::CORRUPTED, "oxh_rdb_meta: bad epoch"))
    }
}

/// A lock held by another connection, on BEGIN or COMMIT, is OpenHarmony's 14800024 with
/// its reason spelled out.
pub(crate) fn busy(e: rusqlite::Error) -> RdbError {
    let e = RdbError::from(e);
    if e.code() == code::SQLITE_BUSY {
        RdbError::new(
            code::SQLITE_BUSY,
            "another write transaction is open on this store",
        )
    } else {
        e
    }
}
