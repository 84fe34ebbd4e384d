//! `RdbStore` and `Transaction`: the API after OpenHarmony's `@ohos.data.relationalStore`.
//!
//! A store is one SQLite file. Every write through the store is its own IMMEDIATE
//! transaction (or runs inside the store's `beginTransaction`); a [`Transaction`] object has
//! a connection of its own, so while it holds the write lock, writes through the store and
//! other write transactions fail at once with 14800024, as OpenHarmony's do; reads go on.

use crate::config::StoreConfig;
use crate::conn::{Conn, PhysClock, busy};
use crate::distributed::{self, merge::Changeset, replica};
use crate::error::{RdbError, Result, code};
use crate::ops::{self, ConflictResolution};
use crate::predicates::RdbPredicates;
use crate::result_set::ResultSet;
use crate::value::{Value, ValuesBucket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// `relationalStore.TransactionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionType {
    /// 0: takes locks when first reading, then writing (a write may then meet 14800024).
    #[default]
    Deferred = 0,
    /// 1: takes the write lock at once.
    Immediate = 1,
    /// 2: takes the write lock at once (in WAL mode the same as IMMEDIATE).
    Exclusive = 2,
}

impl TransactionType {
    /// From OpenHarmony's number.
    pub fn from_i32(v: i32) -> Result<Self> {
        Ok(match v {
            0 => Self::Deferred,
            1 => Self::Immediate,
            2 => Self::Exclusive,
            _ => return Err(RdbError::invalid(format!("transaction type {v}"))),
        })
    }

    fn begin(self) -> &'static str {
        match self {
            Self::Deferred => "BEGIN DEFERRED",
            Self::Immediate => "BEGIN IMMEDIATE",
            Self::Exclusive => "BEGIN EXCLUSIVE",
        }
    }
}

struct Shared {
    path: PathBuf,
    device: String,
    config: StoreConfig,
    clock: PhysClock,
}

struct Inner {
    conn: Conn,
    /// The clock state read at `beginTransaction`, while one is open on the store itself.
    open_tx: Option<(i64, u64)>,
}

/// A relational store: one SQLite file.
pub struct RdbStore {
    shared: Arc<Shared>,
    inner: Mutex<Option<Inner>>,
}

fn system_ms() -> u64 {
    oxh_kal::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One write statement, plus the trigger refresh a schema change to a distributed table
/// needs (inside the caller's write transaction).
fn exec_write(conn: &Conn, sql: &str, args: &[Value]) -> Result<Value> {
    let v0: i64 = conn
        .c
        .query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    let v = ops::execute(&conn.c, sql, args)?;
    let v1: i64 = conn
        .c
        .query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    if v0 != v1 {
        distributed::refresh(conn)?;
    }
    Ok(v)
}

/// How `execute` must run `sql`: as a read, outside any transaction (VACUUM, ATTACH,
/// DETACH: SQLite refuses them inside one), or as a write.
enum Kind {
    Read,
    Bare,
    Write,
}

fn kind_of(c: &rusqlite::Connection, sql: &str) -> Result<Kind> {
    let head = sql.trim_start().to_ascii_uppercase();
    for word in ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"] {
        if head.starts_with(word) {
            return Err(RdbError::invalid(
                "execute: use beginTransaction/commit or createTransaction for transactions",
            ));
        }
    }
    if ["VACUUM", "ATTACH", "DETACH"]
        .iter()
        .any(|w| head.starts_with(w))
    {
        return Ok(Kind::Bare);
    }
    let st = c.prepare(sql)?;
    Ok(if st.readonly() {
        Kind::Read
    } else {
        Kind::Write
    })
}

impl RdbStore {
    /// `getRdbStore`: opens (creating) the store `config` names under `db_dir` (the app's
    /// database dir) for this device `device` (its id in changes it makes).
    pub fn open(db_dir: &Path, config: &StoreConfig, device: &str) -> Result<Self> {
        Self::open_with_clock(db_dir, config, device, Arc::new(system_ms))
    }

    /// [`RdbStore::open`] with a physical clock of the caller's (ms since the Unix epoch):
    /// tests give each replica a virtual clock, skewed as they like.
    pub fn open_with_clock(
        db_dir: &Path,
        config: &StoreConfig,
        device: &str,
        clock: PhysClock,
    ) -> Result<Self> {
        if device.is_empty() {
            return Err(RdbError::invalid("the device id is empty"));
        }
        let path = db_dir.join(config.relative_path()?);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                RdbError::new(code::INVALID_PATH, format!("{}: {e}", dir.display()))
            })?;
        }
        let conn = Conn::open(&path, device, config.security_level as i32, clock.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                device: device.to_string(),
                config: config.clone(),
                clock,
            }),
            inner: Mutex::new(Some(Inner {
                conn,
                open_tx: None,
            })),
        })
    }

    /// `deleteRdbStore`: removes the store file `config` names under `db_dir`, with its WAL
    /// and shared-memory files. The store must be closed (or dropped) first. A store that
    /// does not exist is no error, as in OpenHarmony.
    pub fn delete_store(db_dir: &Path, config: &StoreConfig) -> Result<()> {
        let path = db_dir.join(config.relative_path()?);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RdbError::new(
                        code::INVALID_PATH,
                        format!("{}: {e}", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
    /// This device's id.
    pub fn device(&self) -> &str {
        &self.shared.device
    }
    /// The config it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    fn lock(&self) -> Result<MutexGuard<'_, Option<Inner>>> {
        self.inner
            .lock()
            .map_err(|_| RdbError::inner("a thread panicked while using the store"))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        let mut g = self.lock()?;
        let inner = g
            .as_mut()
            .ok_or_else(|| RdbError::new(code::ALREADY_CLOSED, "the store is closed"))?;
        f(inner)
    }

    /// Runs one API call's writes atomically: its own IMMEDIATE transaction, or inside an
    /// open `beginTransaction` a savepoint (so a failed call leaves none of its writes).
    fn write<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        self.with(|i| {
            if i.open_tx.is_none() {
                return i.conn.write("BEGIN IMMEDIATE", f);
            }
            i.conn.c.execute_batch("SAVEPOINT oxh_rdb_call")?;
            let r = f(&i.conn);
            i.conn
                .ctx
                .applying
                .store(false, std::sync::atomic::Ordering::Relaxed);
            // ON_CONFLICT_ROLLBACK may have ended the whole transaction.
            if !i.conn.c.is_autocommit() {
                if r.is_err() {
                    i.conn.c.execute_batch("ROLLBACK TO oxh_rdb_call")?;
                }
                i.conn.c.execute_batch("RELEASE oxh_rdb_call")?;
            }
            r
        })
    }

    /// Writes that must be durable when this returns (what the sync applies and
    /// acknowledges): never inside the app's open `beginTransaction`, which could still roll
    /// them back; then the store is busy (14800024) and the sync tries again later.
    fn write_durable<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        self.with(|i| {
            if i.open_tx.is_some() {
                return Err(RdbError::new(
                    code::SQLITE_BUSY,
                    "the store has an open transaction: the sync waits for it",
                ));
            }
            i.conn.write("BEGIN IMMEDIATE", f)
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        self.with(|i| f(&i.conn))
    }

    /// `insert`: one row; its rowid.
    pub fn insert(&self, table: &str, values: &ValuesBucket) -> Result<i64> {
        self.insert_with(table, values, ConflictResolution::None)
    }
    /// `insert` with a conflict resolution; -1 when IGNORE skipped the row.
    pub fn insert_with(
        &self,
        table: &str,
        values: &ValuesBucket,
        how: ConflictResolution,
    ) -> Result<i64> {
        self.write(|c| ops::insert(&c.c, table, values, how))
    }
    /// `batchInsert`: all rows or none; how many were inserted.
    pub fn batch_insert(&self, table: &str, rows: &[ValuesBucket]) -> Result<i64> {
        self.batch_insert_with(table, rows, ConflictResolution::None)
    }
    /// `batchInsertWithConflictResolution`.
    pub fn batch_insert_with(
        &self,
        table: &str,
        rows: &[ValuesBucket],
        how: ConflictResolution,
    ) -> Result<i64> {
        self.write(|c| ops::batch_insert(&c.c, table, rows, how))
    }
    /// `update`: the matching rows; how many.
    pub fn update(&self, values: &ValuesBucket, p: &RdbPredicates) -> Result<usize> {
        self.update_with(values, p, ConflictResolution::None)
    }
    /// `update` with a conflict resolution.
    pub fn update_with(
        &self,
        values: &ValuesBucket,
        p: &RdbPredicates,
        how: ConflictResolution,
    ) -> Result<usize> {
        self.write(|c| ops::update(&c.c, values, p, how))
    }
    /// `delete`: the matching rows; how many.
    pub fn delete(&self, p: &RdbPredicates) -> Result<usize> {
        self.write(|c| ops::delete(&c.c, p))
    }
    /// `query`: `columns` (all when empty) of the matching rows.
    pub fn query(&self, p: &RdbPredicates, columns: &[&str]) -> Result<ResultSet> {
        self.read(|c| ops::query(&c.c, p, columns))
    }
    /// `querySql`.
    pub fn query_sql(&self, sql: &str, args: &[Value]) -> Result<ResultSet> {
        self.read(|c| ops::query_sql(&c.c, sql, args))
    }
    /// [`RdbStore::query`] refused once the rows take over `cap` encoded bytes.
    pub fn query_capped(
        &self,
        p: &RdbPredicates,
        columns: &[&str],
        cap: usize,
    ) -> Result<ResultSet> {
        self.read(|c| ops::query_capped(&c.c, p, columns, cap))
    }
    /// [`RdbStore::query_sql`] refused once the rows take over `cap` encoded bytes.
    pub fn query_sql_capped(&self, sql: &str, args: &[Value], cap: usize) -> Result<ResultSet> {
        self.read(|c| ops::query_sql_capped(&c.c, sql, args, cap))
    }
    /// `execute`: one statement of any kind (see [`ops::execute`] for what it returns).
    pub fn execute(&self, sql: &str, args: &[Value]) -> Result<Value> {
        self.with(|i| {
            let k = kind_of(&i.conn.c, sql)?;
            match (k, i.open_tx.is_some()) {
                (Kind::Read, _) => ops::execute(&i.conn.c, sql, args),
                (_, true) => exec_write(&i.conn, sql, args),
                (Kind::Bare, false) => ops::execute(&i.conn.c, sql, args),
                (Kind::Write, false) => i
                    .conn
                    .write("BEGIN IMMEDIATE", |c| exec_write(c, sql, args)),
            }
        })
    }

    /// `beginTransaction`: the store's own writes go into one transaction until
    /// [`RdbStore::commit`] or [`RdbStore::roll_back`].
    pub fn begin_transaction(&self) -> Result<()> {
        self.with(|i| {
            if i.open_tx.is_some() {
                return Err(RdbError::new(
                    code::SQLITE_BUSY,
                    "a transaction is already open on this store",
                ));
            }
            i.conn.c.execute_batch("BEGIN IMMEDIATE").map_err(busy)?;
            match i.conn.begin_clock() {
                Ok(s) => {
                    i.open_tx = Some(s);
                    Ok(())
                }
                Err(e) => {
                    let _ = i.conn.c.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }
    /// `commit`.
    pub fn commit(&self) -> Result<()> {
        self.with(|i| {
            let s = i
                .open_tx
                .take()
                .ok_or_else(|| RdbError::invalid("commit: no transaction is open"))?;
            if i.conn.c.is_autocommit() {
                return Err(RdbError::new(
                    code::SQLITE_ABORT,
                    "the transaction was rolled back by ON_CONFLICT_ROLLBACK",
                ));
            }
            let r = i.conn.end_clock(s);
            if r.is_err() {
                let _ = i.conn.c.execute_batch("ROLLBACK");
                return r;
            }
            i.conn.c.execute_batch("COMMIT").map_err(busy)
        })
    }
    /// `rollBack`.
    pub fn roll_back(&self) -> Result<()> {
        self.with(|i| {
            i.open_tx
                .take()
                .ok_or_else(|| RdbError::invalid("rollBack: no transaction is open"))?;
            if !i.conn.c.is_autocommit() {
                i.conn.c.execute_batch("ROLLBACK")?;
            }
            Ok(())
        })
    }

    /// `createTransaction`: a transaction on a connection of its own. IMMEDIATE and
    /// EXCLUSIVE take the write lock now (14800024 if another write transaction holds it).
    pub fn create_transaction(&self, kind: TransactionType) -> Result<Transaction> {
        let s = &self.shared;
        let conn = Conn::open(
            &s.path,
            &s.device,
            s.config.security_level as i32,
            s.clock.clone(),
        )?;
        conn.c.execute_batch(kind.begin()).map_err(busy)?;
        let start = match conn.begin_clock() {
            Ok(v) => v,
            Err(e) => {
                let _ = conn.c.execute_batch("ROLLBACK");
                return Err(busy_err(e));
            }
        };
        Ok(Transaction {
            conn: Some(conn),
            start,
        })
    }

    /// `setDistributedTables`: marks tables for sync (each needs a primary key; at most 32
    /// per store). Their rows are logged from now on, those already there included.
    pub fn set_distributed_tables(&self, tables: &[&str]) -> Result<()> {
        self.write(|c| distributed::set_tables(c, tables))
    }
    /// The distributed tables.
    pub fn distributed_tables(&self) -> Result<Vec<String>> {
        self.read(|c| {
            Ok(distributed::recorded(&c.c)?
                .into_iter()
                .map(|t| t.0)
                .collect())
        })
    }
    /// `obtainDistributedTableName`: OpenHarmony's name for `table`'s rows from `device`.
    /// Here every device's rows merge into `table` itself; the name is a view (of this
    /// store's connection) of the rows `device` wrote a cell or the key of.
    pub fn obtain_distributed_table_name(&self, device: &str, table: &str) -> Result<String> {
        let name = distributed::distributed_table_name(device, table)?;
        self.read(|c| {
            let t = distributed::schema::table_info(&c.c, table)?;
            if !distributed::recorded(&c.c)?
                .iter()
                .any(|(n, _)| *n == t.name)
            {
                return Err(RdbError::invalid(format!(
                    "{table:?} is not a distributed table"
                )));
            }
            let tq = crate::ident::q(&t.name);
            let join =
                t.pk.iter()
                    .map(|(p, _)| format!("l.{0} IS {tq}.{0}", crate::ident::q(p)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
            let dev = device.replace('\'', "''");
            c.c.execute_batch(&format!(
                "CREATE TEMP VIEW IF NOT EXISTS {} AS SELECT * FROM {tq} WHERE
                   EXISTS (SELECT 1 FROM {} l WHERE {join} AND l.oxh_rdb_dev =
                     (SELECT idx FROM oxh_rdb_devices WHERE device = '{dev}'))
                   OR EXISTS (SELECT 1 FROM {} l WHERE {join} AND l.oxh_rdb_dev =
                     (SELECT idx FROM oxh_rdb_devices WHERE device = '{dev}'))",
                crate::ident::q(&name),
                crate::ident::q(&distributed::schema::cells_table(&t.name)),
                crate::ident::q(&distributed::schema::rows_table(&t.name)),
            ))?;
            Ok(name)
        })
    }

    /// The changeset a peer at watermark `after` needs next (at most `max_rows` rows).
    pub fn changes_since(&self, after: u64, max_rows: usize) -> Result<Changeset> {
        self.changes_since_bounded(after, max_rows, usize::MAX)
    }
    /// The changeset a peer at watermark `after` needs next: at most `max_rows` rows and
    /// about `max_bytes` bytes of values (at least one row).
    pub fn changes_since_bounded(
        &self,
        after: u64,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Changeset> {
        self.changes_since_in(after, max_rows, max_bytes, None)
    }
    /// [`RdbStore::changes_since_bounded`] of one distributed table only (`None`: all).
    pub fn changes_since_in(
        &self,
        after: u64,
        max_rows: usize,
        max_bytes: usize,
        table: Option<&str>,
    ) -> Result<Changeset> {
        self.with(|i| {
            if i.open_tx.is_some() {
                replica::changes_since(&i.conn, after, max_rows, max_bytes, table)
            } else {
                // One snapshot, so the rows and `upto` agree.
                i.conn.c.execute_batch("BEGIN DEFERRED")?;
                let r = replica::changes_since(&i.conn, after, max_rows, max_bytes, table);
                let _ = i.conn.c.execute_batch("COMMIT");
                r
            }
        })
    }
    /// Applies a peer's changeset in one transaction (all of it or, on error, none).
    pub fn apply_changeset(&self, cs: &Changeset) -> Result<replica::Applied> {
        self.write_durable(|c| replica::apply(c, cs))
    }
    /// How far `peer` acknowledged our changes.
    pub fn peer_watermark(&self, peer: &str) -> Result<u64> {
        self.read(|c| replica::watermark(&c.c, peer))
    }
    /// `peer` applied our changeset `(from, upto]`; the watermark now.
    pub fn ack(&self, peer: &str, from: u64, upto: u64) -> Result<u64> {
        self.write(|c| replica::ack(&c.c, peer, from, upto))
    }
    /// The rows this device changed after change number `after` (committed), by table and
    /// primary key, and the change number reached (see [`crate::events`]).
    pub fn local_changes(&self, after: u64) -> Result<(Vec<crate::api::ChangeInfo>, u64)> {
        self.read(|c| replica::local_changes(c, after))
    }
    /// The store's last change number.
    pub fn change_seq(&self) -> Result<u64> {
        self.read(|c| Ok(c.seq()?.max(0) as u64))
    }
    /// What we know of `peer`: its acknowledgement and its store's epoch (empty: unknown).
    pub fn peer_state(&self, peer: &str) -> Result<Option<(u64, Vec<u8>)>> {
        self.read(|c| replica::peer_state(&c.c, peer))
    }
    /// Records `peer`'s acknowledgement and epoch (durably: the write commits first).
    pub fn set_peer_state(&self, peer: &str, acked: u64, epoch: &[u8]) -> Result<()> {
        self.write_durable(|c| replica::set_peer_state(&c.c, peer, acked, epoch))
    }
    /// Collects the row tombstones every one of `peers` (the devices bound to this one) has
    /// acknowledged; how many went.
    pub fn gc_tombstones(&self, peers: &[String]) -> Result<usize> {
        self.write_durable(|c| replica::gc_tombstones(&c.c, peers))
    }
    /// The store's epoch (new when the store is deleted and made again).
    pub fn epoch(&self) -> Result<[u8; 16]> {
        self.read(|c| c.epoch())
    }

    /// `close`: later calls are 14800014. An open `beginTransaction` is rolled back.
    pub fn close(&self) -> Result<()> {
        let mut g = self.lock()?;
        if let Some(i) = g.take()
            && !i.conn.c.is_autocommit()
        {
            let _ = i.conn.c.execute_batch("ROLLBACK");
        }
        Ok(())
    }
}

fn busy_err(e: RdbError) -> RdbError {
    if e.code() == code::SQLITE_BUSY {
        RdbError::new(
            code::SQLITE_BUSY,
            "another write transaction is open on this store",
        )
    } else {
        e
    }
}

/// A transaction object (`createTransaction`): its own connection; commit or roll back ends
/// it, later calls are 14800014; dropped unfinished, it rolls back.
pub struct Transaction {
    conn: Option<Conn>,
    start: (i64, u64),
}

impl Transaction {
    fn run<T>(&mut self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| RdbError::new(code::ALREADY_CLOSED, "the transaction has ended"))?;
        let r = f(conn).map_err(busy_err);
        // ON_CONFLICT_ROLLBACK ends the transaction in SQLite; so it ends here.
        if conn.c.is_autocommit() {
            self.conn = None;
        }
        r
    }

    /// `insert`.
    pub fn insert(
        &mut self,
        table: &str,
        values: &ValuesBucket,
        how: ConflictResolution,
    ) -> Result<i64> {
        self.run(|c| ops::insert(&c.c, table, values, how))
    }
    /// `batchInsert`.
    pub fn batch_insert(
        &mut self,
        table: &str,
        rows: &[ValuesBucket],
        how: ConflictResolution,
    ) -> Result<i64> {
        self.run(|c| ops::batch_insert(&c.c, table, rows, how))
    }
    /// `update`.
    pub fn update(
        &mut self,
        values: &ValuesBucket,
        p: &RdbPredicates,
        how: ConflictResolution,
    ) -> Result<usize> {
        self.run(|c| ops::update(&c.c, values, p, how))
    }
    /// `delete`.
    pub fn delete(&mut self, p: &RdbPredicates) -> Result<usize> {
        self.run(|c| ops::delete(&c.c, p))
    }
    /// `query`.
    pub fn query(&mut self, p: &RdbPredicates, columns: &[&str]) -> Result<ResultSet> {
        self.run(|c| ops::query(&c.c, p, columns))
    }
    /// `querySql`.
    pub fn query_sql(&mut self, sql: &str, args: &[Value]) -> Result<ResultSet> {
        self.run(|c| ops::query_sql(&c.c, sql, args))
    }
    /// [`Transaction::query`] refused once the rows take over `cap` encoded bytes.
    pub fn query_capped(
        &mut self,
        p: &RdbPredicates,
        columns: &[&str],
        cap: usize,
    ) -> Result<ResultSet> {
        self.run(|c| ops::query_capped(&c.c, p, columns, cap))
    }
    /// [`Transaction::query_sql`] refused once the rows take over `cap` encoded bytes.
    pub fn query_sql_capped(&mut self, sql: &str, args: &[Value], cap: usize) -> Result<ResultSet> {
        self.run(|c| ops::query_sql_capped(&c.c, sql, args, cap))
    }
    /// `execute`.
    pub fn execute(&mut self, sql: &str, args: &[Value]) -> Result<Value> {
        self.run(|c| match kind_of(&c.c, sql)? {
            Kind::Read => ops::execute(&c.c, sql, args),
            Kind::Bare => Err(RdbError::invalid(
                "VACUUM, ATTACH and DETACH cannot run inside a transaction",
            )),
            Kind::Write => exec_write(c, sql, args),
        })
    }

    /// `commit`.
    pub fn commit(mut self) -> Result<()> {
        let start = self.start;
        let conn = self
            .conn
            .take()
            .ok_or_else(|| RdbError::new(code::ALREADY_CLOSED, "the transaction has ended"))?;
        if let Err(e) = conn.end_clock(start) {
            let _ = conn.c.execute_batch("ROLLBACK");
            return Err(busy_err(e));
        }
        conn.c.execute_batch("COMMIT").map_err(busy)
    }
    /// `rollback`.
    pub fn rollback(mut self) -> Result<()> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| RdbError::new(code::ALREADY_CLOSED, "the transaction has ended"))?;
        conn.c.execute_batch("ROLLBACK")?;
        Ok(())
    }
    /// True while the transaction can still be used.
    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && !c.c.is_autocommit()
        {
            let _ = c.c.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
