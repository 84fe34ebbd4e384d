//! The relational store service: every app's stores on this device, opened for the
//! connections that asked, and the transactions those connections hold.
//!
//! **Where stores live.** `<dir>/<bundle>/[<customDir>/]<name>`: `dir` is the daemon's own
//! `rdb` subsystem dir, so `<dir>/<bundle>` is the app's database dir, as the KV service keeps
//! `kvstore/<bundle>/`. OpenHarmony's apps open their SQLite file in their own sandbox; here the
//! daemon (which may be root) opens it, and so it must never open a path that a caller could
//! have planted (a symlink in an app-writable dir): the dir is the daemon's, the app only
//! names a file in it ([`crate::StoreConfig::relative_path`] refuses anything but plain names).
//!
//! **Who sees what.** The app comes from the caller's token (the kernel's identity, never the
//! request's): a HAP token's own bundle, or the bundle a native or shell caller names.
//!
//! **Bounds.** A connection holds at most [`api::MAX_STORES_PER_CONN`] handles, each with at
//! most one transaction; a result is refused past [`api::MAX_RESULT_BYTES`] while it is read.
//! A transaction has a SQLite connection of its own (`createTransaction`), so it belongs to
//! the IPC connection that began it: other connections' writes meet its lock (14800024), and
//! it rolls back when its connection goes ([`RdbService::client_died`]).

use crate::StoreConfig;
use crate::api::{self, StoreHandle};
use crate::error::{RdbError, Result, code};
use crate::ops::ConflictResolution;
use crate::store::{RdbStore, Transaction, TransactionType};
use crate::value::Value;
use oxh_ipc::Caller;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Maps an app's token id to its bundle name (the access-token manager's answer).
pub type AppResolver = Arc<dyn Fn(u32) -> Option<String> + Send + Sync>;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct RdbConfig {
    /// The apps' database dirs are `<dir>/<bundle>` (the device's `rdb` subsystem dir).
    pub dir: PathBuf,
    /// This device's id (udid): the origin of its writes in distributed tables.
    pub device_id: String,
}

/// A store: the bundle and its file relative to the bundle's database dir.
type StoreKey = (String, PathBuf);

struct OpenStore {
    store: Arc<RdbStore>,
    /// Handles on it, over every connection; at 0 it closes.
    users: usize,
}

/// A handle's store and its transaction, if one is open.
#[derive(Clone)]
struct Handle {
    key: StoreKey,
    store: Arc<RdbStore>,
    tx: Arc<Mutex<Option<Transaction>>>,
}

#[derive(Default)]
struct ConnState {
    handles: HashMap<StoreHandle, Handle>,
}

/// The relational store service.
pub struct RdbService {
    cfg: RdbConfig,
    resolver: Mutex<Option<AppResolver>>,
    stores: Mutex<HashMap<StoreKey, OpenStore>>,
    conns: Mutex<HashMap<u64, ConnState>>,
    /// The last handle given out: handles are unique in the service, so a handle of another
    /// connection never names one of the caller's own by chance.
    last_handle: AtomicU64,
    /// Sync and remoteQuery ([`crate::sync`]).
    sync: crate::sync::SyncState,
    /// on('dataChange') ([`crate::events`]).
    observers: crate::events::Observers,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn conflict(v: i32) -> Result<ConflictResolution> {
    ConflictResolution::from_i32(v)
}

fn rows(rs: crate::ResultSet) -> api::Rows {
    let (columns, rows) = rs.into_parts();
    api::Rows { columns, rows }
}

impl RdbService {
    /// The service over `cfg.dir` (made if missing).
    pub fn open(cfg: RdbConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            RdbError::new(code::INVALID_PATH, format!("{}: {e}", cfg.dir.display()))
        })?;
        Ok(Arc::new(Self {
            cfg,
            resolver: Mutex::new(None),
            stores: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            last_handle: AtomicU64::new(0),
            sync: Default::default(),
            observers: Default::default(),
        }))
    }

    /// Wires in the access-token manager's answer to "which bundle is this token".
    pub fn set_app_resolver(&self, r: AppResolver) {
        *lock(&self.resolver) = Some(r);
    }

    /// The app a caller acts for: its own bundle (HAP), or the one it names (native, shell).
    pub fn app_of(&self, caller: &Caller, named: Option<&str>) -> Result<String> {
        let resolver = lock(&self.resolver).clone();
        let app = caller
            .app(named, |id| resolver.and_then(|r| r(id)))
            .map_err(|e| RdbError::new(e.code(), e.to_string()))?;
        oxh_kvstore::limits::check_bundle_name(&app)
            .map_err(|e| RdbError::new(code::PARAMETER_ERROR, e.to_string()))?;
        Ok(app)
    }

    fn key(&self, caller: &Caller, a: &api::GetStoreArgs) -> Result<StoreKey> {
        let app = self.app_of(caller, a.app.as_deref())?;
        Ok((app, a.config.relative_path()?))
    }

    fn app_dir(&self, app: &str) -> PathBuf {
        self.cfg.dir.join(app)
    }

    /// getRdbStore: a handle on the store for connection `conn` (the store made if missing).
    pub fn get_rdb_store(
        &self,
        conn: u64,
        caller: &Caller,
        a: &api::GetStoreArgs,
    ) -> Result<api::StoreInfo> {
        let key = self.key(caller, a)?;
        let mut conns = lock(&self.conns);
        let st = conns.entry(conn).or_default();
        if st.handles.len() >= api::MAX_STORES_PER_CONN {
            return Err(RdbError::invalid(format!(
                "at most {} stores open on one connection: close one first",
                api::MAX_STORES_PER_CONN
            )));
        }
        let store = {
            let mut stores = lock(&self.stores);
            match stores.get_mut(&key) {
                Some(o) => {
                    let have = o.store.config().security_level;
                    if have != a.config.security_level {
                        return Err(RdbError::new(
                            code::CONFIG_CHANGED,
                            format!("the store was made with securityLevel {have:?}"),
                        ));
                    }
                    o.users += 1;
                    o.store.clone()
                }
                None => {
                    let s = Arc::new(RdbStore::open(
                        &self.app_dir(&key.0),
                        &a.config,
                        &self.cfg.device_id,
                    )?);
                    stores.insert(
                        key.clone(),
                        OpenStore {
                            store: s.clone(),
                            users: 1,
                        },
                    );
                    s
                }
            }
        };
        let handle = self.last_handle.fetch_add(1, Ordering::Relaxed) + 1;
        st.handles.insert(
            handle,
            Handle {
                key: key.clone(),
                store,
                tx: Arc::new(Mutex::new(None)),
            },
        );
        Ok(api::StoreInfo {
            handle,
            app: key.0,
            device: self.cfg.device_id.clone(),
        })
    }

    fn handle(&self, conn: u64, h: StoreHandle) -> Result<Handle> {
        lock(&self.conns)
            .get(&conn)
            .and_then(|c| c.handles.get(&h))
            .cloned()
            .ok_or_else(|| {
                RdbError::new(
                    code::ALREADY_CLOSED,
                    format!("store handle {h} is not open on this connection"),
                )
            })
    }

    /// Runs `f` on the handle's open transaction if it has one, else `g` on the store; a
    /// transaction that SQLite ended (ON_CONFLICT_ROLLBACK) is dropped.
    fn run<T>(
        &self,
        conn: u64,
        h: StoreHandle,
        f: impl FnOnce(&mut Transaction) -> Result<T>,
        g: impl FnOnce(&RdbStore) -> Result<T>,
    ) -> Result<T> {
        let hd = self.handle(conn, h)?;
        let mut tx = lock(&hd.tx);
        match tx.as_mut() {
            Some(t) => {
                let r = f(t);
                if !t.is_open() {
                    *tx = None;
                }
                r
            }
            None => g(&hd.store),
        }
    }

    /// execute.
    pub fn execute(&self, conn: u64, a: &api::ExecuteArgs) -> Result<Value> {
        let r = self.run(
            conn,
            a.handle,
            |t| t.execute(&a.sql, &a.args),
            |s| s.execute(&a.sql, &a.args),
        );
        self.told(conn, a.handle, r)
    }

    /// insert.
    pub fn insert(&self, conn: u64, a: &api::InsertArgs) -> Result<i64> {
        let how = conflict(a.conflict)?;
        let v = api::bucket(&a.values);
        let r = self.run(
            conn,
            a.handle,
            |t| t.insert(&a.table, &v, how),
            |s| s.insert_with(&a.table, &v, how),
        );
        self.told(conn, a.handle, r)
    }

    /// batchInsert.
    pub fn batch_insert(&self, conn: u64, a: &api::BatchInsertArgs) -> Result<i64> {
        let how = conflict(a.conflict)?;
        let rows: Vec<_> = a.rows.iter().map(api::bucket).collect();
        let r = self.run(
            conn,
            a.handle,
            |t| t.batch_insert(&a.table, &rows, how),
            |s| s.batch_insert_with(&a.table, &rows, how),
        );
        self.told(conn, a.handle, r)
    }

    /// update.
    pub fn update(&self, conn: u64, a: &api::UpdateArgs) -> Result<u64> {
        let how = conflict(a.conflict)?;
        let v = api::bucket(&a.values);
        let p = a.predicates.to_rdb();
        let r = self.run(
            conn,
            a.handle,
            |t| t.update(&v, &p, how),
            |s| s.update_with(&v, &p, how),
        );
        self.told(conn, a.handle, r).map(|n| n as u64)
    }

    /// delete.
    pub fn delete(&self, conn: u64, a: &api::DeleteArgs) -> Result<u64> {
        let p = a.predicates.to_rdb();
        let r = self.run(conn, a.handle, |t| t.delete(&p), |s| s.delete(&p));
        self.told(conn, a.handle, r).map(|n| n as u64)
    }

    /// query: at most [`api::MAX_RESULT_BYTES`].
    pub fn query(&self, conn: u64, a: &api::QueryArgs) -> Result<api::Rows> {
        let p = a.predicates.to_rdb();
        let cols: Vec<&str> = a.columns.iter().map(String::as_str).collect();
        let cap = api::MAX_RESULT_BYTES;
        self.run(
            conn,
            a.handle,
            |t| t.query_capped(&p, &cols, cap),
            |s| s.query_capped(&p, &cols, cap),
        )
        .map(rows)
    }

    /// querySql: at most [`api::MAX_RESULT_BYTES`].
    pub fn query_sql(&self, conn: u64, a: &api::QuerySqlArgs) -> Result<api::Rows> {
        let cap = api::MAX_RESULT_BYTES;
        self.run(
            conn,
            a.handle,
            |t| t.query_sql_capped(&a.sql, &a.args, cap),
            |s| s.query_sql_capped(&a.sql, &a.args, cap),
        )
        .map(rows)
    }

    /// beginTransaction: one per handle; DEFERRED, IMMEDIATE or EXCLUSIVE (14800024 when
    /// another write transaction holds the store).
    pub fn begin_transaction(&self, conn: u64, a: &api::BeginArgs) -> Result<()> {
        let kind = TransactionType::from_i32(a.kind)?;
        let hd = self.handle(conn, a.handle)?;
        let mut tx = lock(&hd.tx);
        if tx.as_ref().is_some_and(Transaction::is_open) {
            return Err(RdbError::new(
                code::SQLITE_BUSY,
                "a transaction is already open on this store handle",
            ));
        }
        *tx = Some(hd.store.create_transaction(kind)?);
        Ok(())
    }

    /// commit (`commit == true`) or rollBack.
    pub fn end_transaction(&self, conn: u64, a: &api::HandleArgs, commit: bool) -> Result<()> {
        let hd = self.handle(conn, a.handle)?;
        let t = lock(&hd.tx).take().ok_or_else(|| {
            RdbError::invalid(if commit {
                "commit: no transaction is open"
            } else {
                "rollBack: no transaction is open"
            })
        })?;
        if commit {
            self.told(conn, a.handle, t.commit())
        } else {
            t.rollback()
        }
    }

    /// setDistributedTables.
    pub fn set_distributed_tables(&self, conn: u64, a: &api::SetDistributedArgs) -> Result<()> {
        let tables: Vec<&str> = a.tables.iter().map(String::as_str).collect();
        self.run(
            conn,
            a.handle,
            |_| {
                Err(RdbError::invalid(
                    "setDistributedTables: commit or roll back the open transaction first",
                ))
            },
            |s| s.set_distributed_tables(&tables),
        )
    }

    /// obtainDistributedTableName.
    pub fn obtain_distributed_table_name(
        &self,
        conn: u64,
        a: &api::ObtainNameArgs,
    ) -> Result<String> {
        self.handle(conn, a.handle)?
            .store
            .obtain_distributed_table_name(&a.device, &a.table)
    }

    /// Drops a handle: its transaction rolls back; the store closes with its last handle.
    fn release(&self, hd: Handle) {
        drop(lock(&hd.tx).take());
        let mut stores = lock(&self.stores);
        if let Some(o) = stores.get_mut(&hd.key) {
            o.users = o.users.saturating_sub(1);
            if o.users == 0 {
                let _ = o.store.close();
                stores.remove(&hd.key);
            }
        }
    }

    /// close.
    pub fn close(&self, conn: u64, a: &api::HandleArgs) -> Result<()> {
        let hd = lock(&self.conns)
            .get_mut(&conn)
            .and_then(|c| c.handles.remove(&a.handle))
            .ok_or_else(|| {
                RdbError::new(
                    code::ALREADY_CLOSED,
                    format!("store handle {} is not open on this connection", a.handle),
                )
            })?;
        self.release(hd);
        Ok(())
    }

    /// deleteRdbStore: the store closes for every handle on it (their later calls are
    /// 14800014) and its files go. A store that does not exist is no error, as in OpenHarmony.
    pub fn delete_rdb_store(&self, caller: &Caller, a: &api::GetStoreArgs) -> Result<()> {
        let key = self.key(caller, a)?;
        self.forget_synced(&key);
        if let Some(o) = lock(&self.stores).remove(&key) {
            o.store.close()?;
        }
        for c in lock(&self.conns).values_mut() {
            c.handles.retain(|_, h| h.key != key);
        }
        RdbStore::delete_store(&self.app_dir(&key.0), &a.config)
    }

    pub(crate) fn sync_state(&self) -> &crate::sync::SyncState {
        &self.sync
    }

    pub(crate) fn observers(&self) -> &crate::events::Observers {
        &self.observers
    }

    /// `r`, and on success the local observers told of what the write committed.
    fn told<T>(&self, conn: u64, h: StoreHandle, r: Result<T>) -> Result<T> {
        if r.is_ok() {
            self.after_write(conn, h);
        }
        r
    }

    /// A handle's store and its key.
    pub(crate) fn handle_store(
        &self,
        conn: u64,
        h: StoreHandle,
    ) -> Result<(StoreKey, Arc<RdbStore>)> {
        let hd = self.handle(conn, h)?;
        Ok((hd.key, hd.store))
    }

    /// The sync keeps `store` open: one more user that never goes (until the store is
    /// deleted).
    pub(crate) fn pin_store(&self, key: &StoreKey, store: &Arc<RdbStore>) {
        lock(&self.stores)
            .entry(key.clone())
            .or_insert_with(|| OpenStore {
                store: store.clone(),
                users: 0,
            })
            .users += 1;
    }

    /// The store `key` for a peer: the open one, or the file opened if it exists (a peer
    /// never makes a store).
    pub(crate) fn open_existing(
        &self,
        key: &StoreKey,
        config: &StoreConfig,
    ) -> Result<Arc<RdbStore>> {
        let mut stores = lock(&self.stores);
        if let Some(o) = stores.get(key) {
            if o.store.config().security_level != config.security_level {
                return Err(RdbError::new(
                    code::CONFIG_CHANGED,
                    "the store has another securityLevel here",
                ));
            }
            return Ok(o.store.clone());
        }
        let dir = self.app_dir(&key.0);
        if !dir.join(&key.1).is_file() {
            return Err(RdbError::new(
                code::INVALID_PATH,
                format!("no store {} of {} here", key.1.display(), key.0),
            ));
        }
        let s = Arc::new(RdbStore::open(&dir, config, &self.cfg.device_id)?);
        stores.insert(
            key.clone(),
            OpenStore {
                store: s.clone(),
                users: 0,
            },
        );
        Ok(s)
    }

    /// A client connection went away: its transactions roll back, its handles close.
    pub fn client_died(&self, conn: u64) {
        self.drop_cursors(conn);
        self.drop_observers(conn);
        let gone = lock(&self.conns).remove(&conn);
        for (_, hd) in gone.into_iter().flat_map(|c| c.handles) {
            self.release(hd);
        }
    }

    /// Text for hidumper.
    pub fn dump_text(&self) -> String {
        let stores = lock(&self.stores);
        let conns = lock(&self.conns);
        let mut s = format!(
            "RdbService (SA {} codes {}..{}): {} open stores, {} connections, dir {}\n",
            api::SA_ID,
            api::CODE_BASE,
            api::CODE_END,
            stores.len(),
            conns.len(),
            self.cfg.dir.display()
        );
        s += &self.sync_dump();
        let mut keys: Vec<_> = stores.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for ((app, path), o) in keys {
            s += &format!("  {app}/{}: handles={}\n", path.display(), o.users);
        }
        s
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
