//! The distributed KV data service: the stores of every app on this device, their
//! subscriptions and transactions, and the sync driver that carries [`crate::sync`] on a
//! soft-bus session ([`crate::api::SESSION_NAME`]) between trusted devices.
//!
//! Which app a caller is comes from its token: a HAP token's bundle name (resolved by the
//! access-token manager through [`AppResolver`], wired in by the daemon); native and shell
//! callers name the app. An app only reaches its own bundle's stores.
//!
//! The sync driver owns soft-bus sockets as owner [`KV_OWNER`] (an IPC connection id that no
//! client can have: connection ids count up from 1). Device ids in the sync are udids (stable
//! across restarts); networkIds are only used to reach a device while it is online.

use crate::api::{
    self, DataChange, DeviceSyncResult, EntriesPage, Entry, Options, Query, StoreInfo,
    SubscribeType,
};
use crate::error::KvError;
use crate::limits::{
    self, MAX_SUBSCRIPTIONS, StoreType, check_backup_name, check_bundle_name, check_store_id,
};
use crate::store::{Store, StoreMeta};
use crate::sync::{Change, ChangeKind, Event, SyncConfig, SyncEngine, SyncMode};
use crate::wire::{self, Envelope, Msg, Reassembler, StoreDesc, SyncStatus};
use oxh_ipc::{Caller, ConnHandle, TokenType};
use oxh_softbus::Softbus;
use oxh_softbus::transport::session::{DataType, MAX_BYTES, Owner, SocketEvent, event_channel};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The soft-bus socket owner of the KV service: `u64::MAX - 1301`, out of the range of IPC
/// connection ids (which count up from 1), so no client can take or close its sockets.
pub const KV_OWNER: Owner = u64::MAX - 1301;

/// How often the driver ticks the engines and starts auto syncs: local writes reach online
/// devices within this (the goal is 100 ms).
pub const TICK: Duration = Duration::from_millis(50);

/// Maps an app's token id to its bundle name (the access-token manager's answer).
pub type AppResolver = Arc<dyn Fn(u32) -> Option<String> + Send + Sync>;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// Where stores live: `<dir>/<bundle>/<storeId>.db` (the device's `kvstore` subsystem dir).
    pub dir: PathBuf,
    /// This device's id (udid).
    pub device_id: String,
    /// This device's security level, 1..=5 (SL1..SL5).
    pub device_level: u8,
    /// Sync timing.
    pub sync: SyncConfig,
}

type StoreKey = (String, String);
/// A put (`Some`) or delete (`None`) of a key.
type Op = (Vec<u8>, Option<Vec<u8>>);

struct Sub {
    conn: ConnHandle,
    sub: u64,
    kind: SubscribeType,
}

struct OpenStore {
    store: Mutex<Store>,
    engine: Mutex<SyncEngine>,
    desc: StoreDesc,
    dirty: AtomicBool,
    subs: Mutex<Vec<Sub>>,
}

type Waiter = oneshot::Sender<SyncStatus>;

struct Net {
    softbus: Arc<Softbus>,
    /// Outgoing queue per peer udid (a task binds a socket and sends in order).
    links: Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>,
    /// Incoming sockets: which peer, and its reassembler.
    sockets: Mutex<HashMap<u64, (String, Reassembler)>>,
    /// Online trusted devices: udid → networkId.
    online: Mutex<HashMap<String, String>>,
}

/// The KV service.
pub struct KvService {
    cfg: KvConfig,
    stores: Mutex<HashMap<StoreKey, Arc<OpenStore>>>,
    resolver: Mutex<Option<AppResolver>>,
    net: OnceLock<Net>,
    waiters: Mutex<HashMap<(StoreKey, String, u64), Vec<Waiter>>>,
    txns: Mutex<HashMap<(u64, StoreKey), Vec<Op>>>,
    t0: Instant,
    /// Sync messages sent, their bytes (as handed to the soft bus, fragment flags included),
    /// and the key + value bytes inside them: the wire-to-payload ratio.
    sent: [AtomicU64; 3],
    /// Large values being uploaded in parts, per (connection, upload id).
    staged: Mutex<HashMap<(u64, u64), Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An event's entry; values over [`api::INLINE_VALUE`] are left out (an event must fit one
/// IPC frame): read them with GET_PART.
fn entry_of(c: &Change) -> (ChangeKind, Entry) {
    let value = match &c.record.value {
        Some(v) if v.len() <= api::INLINE_VALUE => v.clone(),
        _ => Vec::new(),
    };
    (
        c.kind,
        Entry {
            device: c.record.part.clone(),
            key: c.record.key.clone(),
            value,
        },
    )
}

impl KvService {
    /// Opens the service; stores with auto sync are opened at once so that they catch up
    /// with devices that come online.
    pub fn open(cfg: KvConfig) -> Result<Arc<Self>, KvError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| KvError::Storage(e.to_string()))?;
        let me = Arc::new(Self {
            cfg,
            stores: Mutex::new(HashMap::new()),
            resolver: Mutex::new(None),
            net: OnceLock::new(),
            waiters: Mutex::new(HashMap::new()),
            txns: Mutex::new(HashMap::new()),
            t0: Instant::now(),
            sent: Default::default(),
            staged: Mutex::new(HashMap::new()),
        });
        for (bundle, id, meta) in me.scan() {
            if meta.auto_sync {
                let _ = me.open_store(&(bundle, id), Some(meta), false);
            }
        }
        Ok(me)
    }

    /// Every store on disk, with its options.
    fn scan(&self) -> Vec<(String, String, StoreMeta)> {
        let mut v = Vec::new();
        let Ok(apps) = std::fs::read_dir(&self.cfg.dir) else {
            return v;
        };
        for app in apps.flatten() {
            let bundle = app.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(app.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "db")
                    && let Some(id) = p.file_stem().map(|s| s.to_string_lossy().into_owned())
                    && let Some(m) = Store::peek_meta(&p)
                {
                    v.push((bundle.clone(), id, m));
                }
            }
        }
        v
    }

    /// Wires in the access-token manager's answer to "which bundle is this token".
    pub fn set_app_resolver(&self, r: AppResolver) {
        *lock(&self.resolver) = Some(r);
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.cfg.device_id
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn store_path(&self, key: &StoreKey) -> PathBuf {
        self.cfg.dir.join(&key.0).join(format!("{}.db", key.1))
    }

    fn backup_path(&self, key: &StoreKey, name: &str) -> PathBuf {
        self.cfg
            .dir
            .join(&key.0)
            .join("backup")
            .join(&key.1)
            .join(format!("{name}.bak"))
    }

    /// The app a caller acts for: its own bundle (HAP), or the one it names (native, shell).
    pub fn app_of(&self, caller: &Caller, named: Option<&str>) -> Result<String, KvError> {
        let app = match caller.token_type {
            TokenType::Hap => {
                let resolver = lock(&self.resolver).clone();
                let own = resolver.and_then(|r| r(caller.token_id)).ok_or_else(|| {
                    KvError::PermissionDenied("the caller's app is unknown".into())
                })?;
                if let Some(n) = named
                    && n != own
                {
                    return Err(KvError::PermissionDenied(format!(
                        "app {own} may not open the stores of {n}"
                    )));
                }
                own
            }
            TokenType::Native | TokenType::Shell => named
                .ok_or_else(|| KvError::invalid("name the app (bundleName) whose store to use"))?
                .to_string(),
            TokenType::Invalid => {
                return Err(KvError::PermissionDenied(
                    "a caller without a token has no KV stores".into(),
                ));
            }
        };
        check_bundle_name(&app)?;
        Ok(app)
    }

    fn key(&self, caller: &Caller, r: &api::StoreRef) -> Result<StoreKey, KvError> {
        let app = self.app_of(caller, r.app.as_deref())?;
        check_store_id(&r.store_id)?;
        Ok((app, r.store_id.clone()))
    }

    fn open_store(
        &self,
        key: &StoreKey,
        want: Option<StoreMeta>,
        create: bool,
    ) -> Result<Arc<OpenStore>, KvError> {
        if let Some(o) = lock(&self.stores).get(key) {
            if let Some(w) = want {
                let m = lock(&o.store).meta();
                if m.kind != w.kind || m.level != w.level {
                    return Err(KvError::OptionsChanged(format!(
                        "the store is a {} store of level {}",
                        m.kind.as_str(),
                        m.level.as_str()
                    )));
                }
            }
            return Ok(o.clone());
        }
        let path = self.store_path(key);
        let want = match want {
            Some(w) => w,
            None => Store::peek_meta(&path)
                .ok_or_else(|| KvError::NotFound(format!("store {} does not exist", key.1)))?,
        };
        let store = Store::open(&path, &self.cfg.device_id, want, create)?;
        let meta = store.meta();
        let desc = StoreDesc {
            bundle: key.0.clone(),
            store_id: key.1.clone(),
            kind: meta.kind,
            level: meta.level,
        };
        let o = Arc::new(OpenStore {
            store: Mutex::new(store),
            engine: Mutex::new(SyncEngine::new(
                desc.clone(),
                self.cfg.device_level,
                self.cfg.sync.clone(),
            )),
            desc,
            dirty: AtomicBool::new(false),
            subs: Mutex::new(Vec::new()),
        });
        Ok(lock(&self.stores).entry(key.clone()).or_insert(o).clone())
    }

    fn existing(&self, key: &StoreKey) -> Result<Arc<OpenStore>, KvError> {
        self.open_store(key, None, false)
    }

    // ---- the API ----

    /// getKVStore.
    pub fn get_kv_store(&self, caller: &Caller, a: &api::OpenArgs) -> Result<StoreInfo, KvError> {
        let key = self.key(caller, &a.store)?;
        if a.options.encrypt {
            return Err(KvError::NotSupported(
                "encrypted stores are not offered yet".into(),
            ));
        }
        let want = StoreMeta {
            kind: a.options.kv_store_type,
            level: a.options.security_level,
            auto_sync: a.options.auto_sync,
        };
        let o = self.open_store(&key, Some(want), a.options.create_if_missing)?;
        let s = lock(&o.store);
        Ok(StoreInfo {
            app: key.0.clone(),
            kind: s.meta().kind,
            level: s.meta().level,
            local_device: self.cfg.device_id.clone(),
            auto_sync: s.meta().auto_sync,
        })
    }

    fn check_ops(kind: StoreType, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), KvError> {
        limits::check_batch(ops.len())?;
        for (k, v) in ops {
            limits::check_key(kind, k)?;
            if let Some(v) = v {
                limits::check_value(v)?;
            }
        }
        Ok(())
    }

    /// put / putBatch / delete / deleteBatch: validated, then committed (or added to the
    /// caller's open transaction).
    pub fn write(
        &self,
        caller: &Caller,
        conn: u64,
        r: &api::StoreRef,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), KvError> {
        let key = self.key(caller, r)?;
        let o = self.existing(&key)?;
        Self::check_ops(o.desc.kind, &ops)?;
        if let Some(t) = lock(&self.txns).get_mut(&(conn, key.clone())) {
            t.extend(ops);
            return Ok(());
        }
        self.commit_ops(&o, ops)
    }

    fn commit_ops(
        &self,
        o: &Arc<OpenStore>,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), KvError> {
        let recorded = !ops.is_empty();
        let changes = lock(&o.store).write(ops)?;
        // Every op is recorded, a delete of a key without a value too (its tombstone must
        // reach the devices that hold one), so auto sync pushes even with no visible change.
        if recorded {
            o.dirty.store(true, Ordering::Relaxed);
        }
        if !changes.is_empty() {
            self.notify(o, &self.cfg.device_id, false, &changes);
        }
        Ok(())
    }

    fn notify(&self, o: &OpenStore, device: &str, remote: bool, changes: &[Change]) {
        let mut subs = lock(&o.subs);
        subs.retain(|s| !s.conn.is_closed());
        if subs.is_empty() {
            return;
        }
        let (inserted, updated, deleted) = api::change_lists(changes.iter().map(entry_of));
        let ev = oxh_ipc::encode(&DataChange::Change {
            store_id: o.desc.store_id.clone(),
            device_id: device.to_string(),
            remote,
            inserted,
            updated,
            deleted,
        });
        for s in subs.iter() {
            let wanted = match s.kind {
                SubscribeType::All => true,
                SubscribeType::Local => !remote,
                SubscribeType::Remote => remote,
            };
            if wanted {
                s.conn.push_event(s.sub, &ev);
            }
        }
    }

    /// The device id a caller's device name means: a networkId of an online device, a
    /// trusted udid, `local`, or as given.
    fn resolve_device(&self, d: &str) -> String {
        if d == "local" {
            return self.cfg.device_id.clone();
        }
        if let Some(net) = self.net.get() {
            if let Some((u, _)) = lock(&net.online).iter().find(|(_, n)| n.as_str() == d) {
                return u.clone();
            }
            if let Some(t) = net.softbus.trusted().into_iter().find(|t| {
                t.network_id.as_deref() == Some(d) || t.udid.starts_with(d) && d.len() >= 6
            }) {
                return t.udid;
            }
        }
        d.to_string()
    }

    /// Appends a part of a large value to upload `upload` of connection `conn`.
    pub fn append_value(&self, conn: u64, a: &api::AppendArgs) -> Result<u64, KvError> {
        if a.data.len() > api::VALUE_PART {
            return Err(KvError::invalid(format!(
                "a value part holds at most {} bytes",
                api::VALUE_PART
            )));
        }
        let mut st = lock(&self.staged);
        if !st.contains_key(&(conn, a.upload)) && st.keys().filter(|k| k.0 == conn).count() >= 4 {
            return Err(KvError::OverMaxLimits(
                "at most 4 uploads per connection".into(),
            ));
        }
        let buf = st.entry((conn, a.upload)).or_default();
        if buf.len() + a.data.len() > limits::MAX_VALUE_LENGTH {
            st.remove(&(conn, a.upload));
            return Err(KvError::invalid(format!(
                "value exceeds the {}-byte limit",
                limits::MAX_VALUE_LENGTH
            )));
        }
        buf.extend_from_slice(&a.data);
        Ok(buf.len() as u64)
    }

    /// Puts the value staged in upload `a.upload`.
    pub fn put_staged(
        &self,
        caller: &Caller,
        conn: u64,
        a: &api::PutStagedArgs,
    ) -> Result<(), KvError> {
        let v = lock(&self.staged)
            .remove(&(conn, a.upload))
            .ok_or_else(|| KvError::invalid("no such upload"))?;
        self.write(caller, conn, &a.store, vec![(a.key.clone(), Some(v))])
    }

    /// A part of a value, from `offset`.
    pub fn get_part(
        &self,
        caller: &Caller,
        a: &api::GetPartArgs,
    ) -> Result<api::ValuePart, KvError> {
        let v = self.get(caller, &a.get)?;
        let from = (a.offset as usize).min(v.len());
        let to = (from + api::VALUE_PART).min(v.len());
        Ok(api::ValuePart {
            total: v.len() as u64,
            data: v[from..to].to_vec(),
        })
    }

    /// get.
    pub fn get(&self, caller: &Caller, a: &api::GetArgs) -> Result<Vec<u8>, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        limits::check_key(o.desc.kind, &a.key)?;
        let s = lock(&o.store);
        let part = match (o.desc.kind, &a.device) {
            (StoreType::SingleVersion, _) => String::new(),
            (StoreType::DeviceCollaboration, Some(d)) => self.resolve_device(d),
            (StoreType::DeviceCollaboration, None) => s.local_part().to_string(),
        };
        s.get(&part, &a.key)?.ok_or_else(|| {
            KvError::NotFound(format!(
                "no value for key {:?}",
                String::from_utf8_lossy(&a.key)
            ))
        })
    }

    /// getEntries.
    pub fn entries(&self, caller: &Caller, a: &api::EntriesArgs) -> Result<EntriesPage, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        check_query(&a.query)?;
        let part = match (o.desc.kind, &a.device) {
            (StoreType::DeviceCollaboration, Some(d)) => Some(self.resolve_device(d)),
            _ => None,
        };
        lock(&o.store).entries(&a.query, part.as_deref(), a.after.as_deref())
    }

    /// on('dataChange').
    pub fn subscribe(&self, conn: &ConnHandle, a: &api::SubscribeArgs) -> Result<(), KvError> {
        let key = self.key(conn.caller(), &a.store)?;
        let o = self.existing(&key)?;
        let mut subs = lock(&o.subs);
        subs.retain(|s| !s.conn.is_closed());
        if subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(KvError::OverMaxLimits(format!(
                "a store takes at most {MAX_SUBSCRIPTIONS} subscriptions"
            )));
        }
        subs.push(Sub {
            conn: conn.clone(),
            sub: a.sub,
            kind: a.kind,
        });
        Ok(())
    }

    /// off('dataChange').
    pub fn unsubscribe(&self, conn: &ConnHandle, a: &api::SubscribeArgs) -> Result<(), KvError> {
        let key = self.key(conn.caller(), &a.store)?;
        let o = self.existing(&key)?;
        lock(&o.subs).retain(|s| !(s.conn.id() == conn.id() && s.sub == a.sub));
        Ok(())
    }

    /// startTransaction / commit / rollback.
    pub fn transaction(
        &self,
        conn: &ConnHandle,
        r: &api::StoreRef,
        code: u32,
    ) -> Result<(), KvError> {
        let key = self.key(conn.caller(), r)?;
        let o = self.existing(&key)?;
        let tk = (conn.id(), key);
        match code {
            api::START_TRANSACTION => {
                let mut t = lock(&self.txns);
                if t.contains_key(&tk) {
                    return Err(KvError::invalid(
                        "a transaction is already open on this store",
                    ));
                }
                t.insert(tk, Vec::new());
                Ok(())
            }
            api::COMMIT => {
                let ops = lock(&self.txns)
                    .remove(&tk)
                    .ok_or_else(|| KvError::invalid("no transaction is open on this store"))?;
                if ops.is_empty() {
                    return Ok(());
                }
                self.commit_ops(&o, ops)
            }
            _ => {
                lock(&self.txns)
                    .remove(&tk)
                    .ok_or_else(|| KvError::invalid("no transaction is open on this store"))?;
                Ok(())
            }
        }
    }

    /// backup / restore / deleteBackup.
    pub fn backup(&self, caller: &Caller, a: &api::BackupArgs, code: u32) -> Result<(), KvError> {
        let key = self.key(caller, &a.store)?;
        check_backup_name(&a.name)?;
        let o = self.existing(&key)?;
        let path = self.backup_path(&key, &a.name);
        match code {
            api::BACKUP => lock(&o.store).backup(&path),
            api::RESTORE => {
                let changes = lock(&o.store).restore(&path)?;
                if !changes.is_empty() {
                    o.dirty.store(true, Ordering::Relaxed);
                    self.notify(&o, &self.cfg.device_id, false, &changes);
                }
                Ok(())
            }
            _ => std::fs::remove_file(&path)
                .map_err(|_| KvError::NotFound(format!("no backup named {}", a.name))),
        }
    }

    /// removeDeviceData.
    pub fn remove_device_data(
        &self,
        caller: &Caller,
        a: &api::RemoveDeviceDataArgs,
    ) -> Result<u64, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        let dev = self.resolve_device(&a.device);
        if dev == self.cfg.device_id {
            return Err(KvError::invalid(
                "removeDeviceData takes another device, not this one",
            ));
        }
        lock(&o.store).remove_device_data(&dev)
    }

    /// closeKVStore: the caller's subscriptions and transaction on it end.
    pub fn close(&self, conn: &ConnHandle, r: &api::StoreRef) -> Result<(), KvError> {
        let key = self.key(conn.caller(), r)?;
        let o = self.existing(&key)?;
        lock(&o.subs).retain(|s| s.conn.id() != conn.id());
        lock(&self.txns).remove(&(conn.id(), key));
        Ok(())
    }

    /// deleteKVStore: the file goes (15100004 when there is none).
    pub fn delete_store(&self, caller: &Caller, r: &api::StoreRef) -> Result<(), KvError> {
        let key = self.key(caller, r)?;
        let path = self.store_path(&key);
        lock(&self.stores).remove(&key);
        if !path.exists() {
            return Err(KvError::NotFound(format!("store {} does not exist", key.1)));
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        Ok(())
    }

    /// getAllKVStoreId.
    pub fn store_ids(&self, caller: &Caller, app: Option<&str>) -> Result<Vec<String>, KvError> {
        let app = self.app_of(caller, app)?;
        let mut v: Vec<String> = self
            .scan()
            .into_iter()
            .filter(|(b, _, _)| *b == app)
            .map(|(_, id, _)| id)
            .collect();
        v.sort();
        Ok(v)
    }

    /// sync: runs a round with each target device and waits for them (or `timeout`).
    pub async fn sync(
        &self,
        caller: &Caller,
        a: &api::SyncArgs,
    ) -> Result<Vec<DeviceSyncResult>, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        // The bus's view, not the one fed by state events: right after a device comes back,
        // its ONLINE event may not have reached this service yet; it is applied here first.
        let online: HashMap<String, String> = match self.net.get() {
            Some(n) => {
                let now: HashMap<String, String> = n
                    .softbus
                    .trusted()
                    .into_iter()
                    .filter_map(|t| t.network_id.map(|nid| (t.udid, nid)))
                    .collect();
                for (u, nid) in &now {
                    self.peer_online(u, nid);
                }
                now
            }
            None => HashMap::new(),
        };
        let mut targets: Vec<(String, String, Option<String>)> = Vec::new(); // (asked, udid, networkId)
        if a.devices.is_empty() || a.devices.iter().any(|d| d == "all") {
            for (u, n) in &online {
                targets.push((n.clone(), u.clone(), Some(n.clone())));
            }
        } else {
            for d in &a.devices {
                let u = self.resolve_device(d);
                targets.push((d.clone(), u.clone(), online.get(&u).cloned()));
            }
        }
        if targets.is_empty() {
            return Err(KvError::NotFound(
                "no online trusted device to sync with".into(),
            ));
        }
        let mut results = Vec::new();
        let mut pending = Vec::new();
        for (asked, udid, net) in targets {
            let Some(net) = net else {
                results.push(DeviceSyncResult {
                    network_id: asked,
                    device_id: udid,
                    status: SyncStatus::DeviceOffline,
                });
                continue;
            };
            let mut out = Vec::new();
            let req = {
                let mut e = lock(&o.engine);
                let mut s = lock(&o.store);
                e.sync(&mut *s, &udid, a.mode, self.now(), &mut out)
            };
            let (tx, rx) = oneshot::channel();
            lock(&self.waiters)
                .entry((key.clone(), udid.clone(), req))
                .or_default()
                .push(tx);
            self.dispatch(&key, &o, out);
            pending.push((net, udid, rx));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(a.timeout_ms.max(1));
        for (net, udid, rx) in pending {
            let status = match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(s)) => s,
                _ => SyncStatus::Timeout,
            };
            results.push(DeviceSyncResult {
                network_id: net,
                device_id: udid,
                status,
            });
        }
        Ok(results)
    }

    /// Text for hidumper / DUMP.
    pub fn dump_text(&self, verbose: bool) -> String {
        let stores = lock(&self.stores);
        let mut s = format!(
            "DistributedKvDataService (SA {}): device {} level SL{}, {} open stores, dir {}\n",
            api::SA_ID,
            self.cfg.device_id,
            self.cfg.device_level,
            stores.len(),
            self.cfg.dir.display()
        );
        if let Some(n) = self.net.get() {
            s += &format!("online peers: {}\n", lock(&n.online).len());
        }
        s += &format!(
            "sync sent: {} messages, {} bytes, {} payload bytes\n",
            self.sent[0].load(Ordering::Relaxed),
            self.sent[1].load(Ordering::Relaxed),
            self.sent[2].load(Ordering::Relaxed)
        );
        if verbose {
            let mut keys: Vec<_> = stores.keys().cloned().collect();
            keys.sort();
            for k in keys {
                if let Some(o) = stores.get(&k) {
                    let st = lock(&o.store);
                    let (live, tomb) = st.counts();
                    s += &format!(
                        "  {}/{}: {} {} auto_sync={} entries={} tombstones={} subscriptions={}\n",
                        k.0,
                        k.1,
                        st.meta().kind.as_str(),
                        st.meta().level.as_str(),
                        st.meta().auto_sync,
                        live,
                        tomb,
                        lock(&o.subs).len()
                    );
                }
            }
        }
        s
    }

    /// A client went away: its subscriptions and open transactions end.
    pub fn client_died(&self, conn: &ConnHandle) {
        lock(&self.txns).retain(|(c, _), _| *c != conn.id());
        lock(&self.staged).retain(|(c, _), _| *c != conn.id());
        for o in lock(&self.stores).values() {
            lock(&o.subs).retain(|s| s.conn.id() != conn.id());
        }
    }

    // ---- the sync driver ----

    fn dispatch(&self, key: &StoreKey, o: &OpenStore, evs: Vec<Event>) {
        for e in evs {
            match e {
                Event::Send { to, msg } => self.send_to(
                    &to,
                    &Envelope {
                        store: o.desc.clone(),
                        msg,
                    },
                ),
                Event::Complete { peer, req, status } => {
                    if let Some(ws) = lock(&self.waiters).remove(&(key.clone(), peer.clone(), req))
                    {
                        for w in ws {
                            let _ = w.send(status.clone());
                        }
                    }
                    let net_id = self
                        .net
                        .get()
                        .and_then(|n| lock(&n.online).get(&peer).cloned())
                        .unwrap_or_default();
                    let ev = oxh_ipc::encode(&DataChange::SyncComplete {
                        store_id: o.desc.store_id.clone(),
                        results: vec![DeviceSyncResult {
                            network_id: net_id,
                            device_id: peer,
                            status,
                        }],
                    });
                    for s in lock(&o.subs).iter() {
                        s.conn.push_event(s.sub, &ev);
                    }
                }
                Event::Changed { from, changes } => self.notify(o, &from, true, &changes),
                Event::Superseded { peer, old, new } => {
                    let mut w = lock(&self.waiters);
                    if let Some(ws) = w.remove(&(key.clone(), peer.clone(), old)) {
                        w.entry((key.clone(), peer, new)).or_default().extend(ws);
                    }
                }
            }
        }
    }

    fn send_to(&self, udid: &str, env: &Envelope) {
        let Some(net) = self.net.get() else { return };
        let bytes = wire::encode(env);
        let payload: usize = match &env.msg {
            Msg::Data { batch, .. } => batch
                .entries
                .iter()
                .map(|e| e.key.len() + e.value.as_ref().map_or(0, Vec::len))
                .sum(),
            _ => 0,
        };
        let frags = bytes.len().div_ceil(MAX_BYTES - 1).max(1);
        self.sent[0].fetch_add(1, Ordering::Relaxed);
        self.sent[1].fetch_add((bytes.len() + frags) as u64, Ordering::Relaxed);
        self.sent[2].fetch_add(payload as u64, Ordering::Relaxed);
        let mut links = lock(&net.links);
        let tx = match links.get(udid).filter(|t| !t.is_closed()) {
            Some(t) => t.clone(),
            None => {
                let Some(network_id) = lock(&net.online).get(udid).cloned() else {
                    return;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                links.insert(udid.to_string(), tx.clone());
                let sb = net.softbus.clone();
                tokio::spawn(link_task(sb, network_id, rx));
                tx
            }
        };
        for f in wire::fragment(&bytes, MAX_BYTES) {
            let _ = tx.send(f);
        }
    }

    fn on_envelope(&self, from: &str, env: Envelope) {
        let key = (env.store.bundle.clone(), env.store.store_id.clone());
        if check_bundle_name(&key.0).is_err() || check_store_id(&key.1).is_err() {
            return;
        }
        let want = StoreMeta {
            kind: env.store.kind,
            level: env.store.level,
            auto_sync: false,
        };
        // A store a peer syncs with us is made here with the peer's options if it is missing.
        let existing = lock(&self.stores).get(&key).cloned();
        let o = match existing {
            Some(o) => Some(o),
            None => {
                let path = self.store_path(&key);
                let meta = Store::peek_meta(&path).unwrap_or(want);
                self.open_store(&key, Some(meta), true).ok()
            }
        };
        let o = match o {
            Some(o) if o.desc.kind == env.store.kind && o.desc.level == env.store.level => o,
            _ => {
                if let Msg::Hello { req, .. } = env.msg {
                    self.send_to(
                        from,
                        &Envelope {
                            store: env.store,
                            msg: Msg::HelloAck {
                                req,
                                epoch: [0; 16],
                                device_level: self.cfg.device_level,
                                status: SyncStatus::StoreMismatch,
                            },
                        },
                    );
                }
                return;
            }
        };
        let mut out = Vec::new();
        {
            let mut e = lock(&o.engine);
            let mut s = lock(&o.store);
            e.handle(&mut *s, from, env.msg, self.now(), &mut out);
        }
        self.dispatch(&key, &o, out);
    }

    fn on_socket_event(&self, ev: SocketEvent) {
        let Some(net) = self.net.get() else { return };
        match ev {
            SocketEvent::Bind {
                socket,
                peer_network_id,
                ..
            } => {
                let udid = lock(&net.online)
                    .iter()
                    .find(|(_, n)| **n == peer_network_id)
                    .map(|(u, _)| u.clone())
                    .or_else(|| {
                        net.softbus
                            .trusted()
                            .into_iter()
                            .find(|t| t.network_id.as_deref() == Some(&peer_network_id))
                            .map(|t| t.udid)
                    });
                if let Some(u) = udid {
                    lock(&net.sockets).insert(socket, (u, Reassembler::default()));
                }
            }
            SocketEvent::Bytes { socket, data } => {
                let got = {
                    let mut socks = lock(&net.sockets);
                    let Some((udid, r)) = socks.get_mut(&socket) else {
                        return;
                    };
                    match r.push(&data) {
                        Ok(Some(env)) => Some((udid.clone(), env)),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(tag = "kvstore", "dropping a bad sync message: {e}");
                            None
                        }
                    }
                };
                if let Some((udid, env)) = got {
                    self.on_envelope(&udid, env);
                }
            }
            SocketEvent::Shutdown { socket, .. } => {
                lock(&net.sockets).remove(&socket);
            }
            _ => {}
        }
    }

    fn peer_online(&self, udid: &str, network_id: &str) {
        let Some(net) = self.net.get() else { return };
        // Known online under this networkId already (applied by `sync` ahead of its event).
        if lock(&net.online)
            .insert(udid.to_string(), network_id.to_string())
            .is_some_and(|n| n == network_id)
        {
            return;
        }
        lock(&net.links).remove(udid);
        // Catch up: every auto-sync store syncs both ways with the device that came online.
        let stores: Vec<(StoreKey, Arc<OpenStore>)> = lock(&self.stores)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, o) in stores {
            let mut out = Vec::new();
            {
                let mut e = lock(&o.engine);
                let mut s = lock(&o.store);
                if !s.meta().auto_sync {
                    continue;
                }
                e.sync(&mut *s, udid, SyncMode::PushPull, self.now(), &mut out);
            }
            self.dispatch(&k, &o, out);
        }
    }

    fn peer_offline(&self, udid: &str) {
        let Some(net) = self.net.get() else { return };
        lock(&net.online).remove(udid);
        lock(&net.links).remove(udid);
        lock(&net.sockets).retain(|_, (u, _)| u != udid);
        let stores: Vec<(StoreKey, Arc<OpenStore>)> = lock(&self.stores)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, o) in stores {
            let mut out = Vec::new();
            lock(&o.engine).peer_offline(udid, &mut out);
            self.dispatch(&k, &o, out);
        }
    }

    fn tick(&self, n: u64) {
        let now = self.now();
        let stores: Vec<(StoreKey, Arc<OpenStore>)> = lock(&self.stores)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let online: Vec<String> = self
            .net
            .get()
            .map(|n| lock(&n.online).keys().cloned().collect())
            .unwrap_or_default();
        for (k, o) in stores {
            let mut out = Vec::new();
            {
                let mut e = lock(&o.engine);
                let mut s = lock(&o.store);
                e.tick(&mut *s, now, &mut out);
                if s.meta().auto_sync && o.dirty.load(Ordering::Relaxed) {
                    // Batched: writes since the last tick go in one round per device; a device
                    // still busy gets the rest in its next round.
                    let mut all = true;
                    for p in &online {
                        if e.busy_with(p) {
                            all = false;
                        } else {
                            e.sync(&mut *s, p, SyncMode::Push, now, &mut out);
                        }
                    }
                    if all {
                        o.dirty.store(false, Ordering::Relaxed);
                    }
                }
                if n.is_multiple_of(200)
                    && let Some(net) = self.net.get()
                {
                    let peers: Vec<String> =
                        net.softbus.trusted().into_iter().map(|t| t.udid).collect();
                    let _ = s.gc_tombstones(&peers);
                }
            }
            self.dispatch(&k, &o, out);
        }
    }

    /// Starts the sync driver on the soft bus: listens on [`api::SESSION_NAME`], follows
    /// devices going online and offline, ticks the engines.
    pub fn attach_softbus(self: &Arc<Self>, softbus: Arc<Softbus>) -> Result<(), KvError> {
        let (tx, mut rx) = event_channel();
        softbus
            .sessions()
            .listen(api::SESSION_NAME, KV_OWNER, tx)
            .map_err(|e| KvError::Storage(format!("cannot listen for sync: {e}")))?;
        let online: HashMap<String, String> = softbus
            .trusted()
            .into_iter()
            .filter_map(|t| t.network_id.map(|n| (t.udid, n)))
            .collect();
        let _ = self.net.set(Net {
            softbus: softbus.clone(),
            links: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            online: Mutex::new(online),
        });
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let Some(me) = me.upgrade() else { return };
                me.on_socket_event(ev);
            }
        });
        // Online / offline: the bus center's state events, through an in-process connection.
        let (conn, mut states) = ConnHandle::detached(Caller {
            pid: std::process::id() as i32,
            uid: 0,
            gid: 0,
            token_id: 0,
            token_type: TokenType::Native,
            process_name: "distributeddata".into(),
        });
        softbus.subscribe_state(conn, 1);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut dec = oxh_ipc::frame::FrameDecoder::new();
            while let Some(bytes) = states.recv().await {
                let Some(me) = me.upgrade() else { return };
                dec.extend(&bytes);
                while let Ok(Some(oxh_ipc::frame::Decoded::Frame(f))) = dec.decode_next() {
                    match oxh_ipc::decode::<oxh_softbus::api::StateEvent>(&f.body) {
                        Ok(oxh_softbus::api::StateEvent::Online(v)) => {
                            if let Some(n) = v.network_id {
                                me.peer_online(&v.udid, &n);
                            }
                        }
                        Ok(oxh_softbus::api::StateEvent::Offline(v)) => me.peer_offline(&v.udid),
                        _ => {}
                    }
                }
            }
        });
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(TICK);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                iv.tick().await;
                let Some(me) = me.upgrade() else { return };
                n += 1;
                me.tick(n);
            }
        });
        Ok(())
    }
}

/// Sends one peer's queued fragments in order on a socket of ours; ends (and is replaced on
/// the next send) when the socket breaks. Lost messages are the engine's to resend.
async fn link_task(
    softbus: Arc<Softbus>,
    network_id: String,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let sessions = softbus.sessions().clone();
    // Replies come on the peer's own socket; what arrives on ours is dropped.
    let (tx, mut drain) = event_channel();
    tokio::spawn(async move { while drain.recv().await.is_some() {} });
    let socket = match sessions
        .bind(
            &network_id,
            api::SESSION_NAME,
            api::SESSION_NAME,
            DataType::Bytes,
            KV_OWNER,
            tx,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(tag = "kvstore", "cannot reach {network_id} for sync: {e}");
            return;
        }
    };
    while let Some(frag) = rx.recv().await {
        if let Err(e) = sessions.send(socket, KV_OWNER, DataType::Bytes, frag).await {
            tracing::info!(tag = "kvstore", "sync send to {network_id} failed: {e}");
            break;
        }
    }
    let _ = sessions.shutdown(socket, KV_OWNER).await;
}

/// Checks a query's keys and sizes.
fn check_query(q: &Query) -> Result<(), KvError> {
    for k in q
        .prefix
        .iter()
        .chain(q.equal_to.iter())
        .chain(q.in_keys.iter())
    {
        if k.len() > limits::MAX_KEY_LENGTH {
            return Err(KvError::invalid("a key in the query exceeds 1024 bytes"));
        }
    }
    if q.in_keys.len() > limits::MAX_BATCH_SIZE {
        return Err(KvError::invalid("inKeys takes at most 128 keys"));
    }
    if q.like
        .as_ref()
        .is_some_and(|l| l.len() > limits::MAX_KEY_LENGTH)
    {
        return Err(KvError::invalid("like pattern exceeds 1024 bytes"));
    }
    Ok(())
}

/// The options an SA call gives, checked (for `oxh kv put --type/--level`).
pub fn meta_of(o: &Options) -> StoreMeta {
    StoreMeta {
        kind: o.kv_store_type,
        level: o.security_level,
        auto_sync: o.auto_sync,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GetArgs, OpenArgs, StoreRef};

    fn caller(t: TokenType, token_id: u32) -> Caller {
        Caller {
            pid: 1,
            uid: 0,
            gid: 0,
            token_id,
            token_type: t,
            process_name: "t".into(),
        }
    }

    fn svc(dir: &std::path::Path) -> Arc<KvService> {
        let s = KvService::open(KvConfig {
            dir: dir.to_path_buf(),
            device_id: "dev".into(),
            device_level: 1,
            sync: SyncConfig::default(),
        })
        .unwrap();
        s.set_app_resolver(Arc::new(|id| match id {
            7 => Some("com.a".to_string()),
            8 => Some("com.b".to_string()),
            _ => None,
        }));
        s
    }

    fn sref(app: Option<&str>) -> StoreRef {
        StoreRef {
            app: app.map(String::from),
            store_id: "s".into(),
        }
    }

    #[test]
    fn apps_reach_only_their_own_stores() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path());
        let app_a = caller(TokenType::Hap, 7);
        let app_b = caller(TokenType::Hap, 8);
        let open = |store| OpenArgs {
            store,
            options: Options::default(),
        };
        // An app opens its own store without naming itself, or naming itself.
        s.get_kv_store(&app_a, &open(sref(None))).unwrap();
        s.write(
            &app_a,
            1,
            &sref(Some("com.a")),
            vec![(b"k".to_vec(), Some(b"a".to_vec()))],
        )
        .unwrap();
        // Another app may not name it (201), and its own "s" is another store.
        let e = s
            .get_kv_store(&app_b, &open(sref(Some("com.a"))))
            .unwrap_err();
        assert_eq!(e.code(), 201);
        s.get_kv_store(&app_b, &open(sref(None))).unwrap();
        let get = GetArgs {
            store: sref(None),
            key: b"k".to_vec(),
            device: None,
        };
        assert_eq!(s.get(&app_b, &get).unwrap_err().code(), 15_100_004);
        assert_eq!(s.get(&app_a, &get).unwrap(), b"a");
        // The shell names the app; it must.
        let sh = caller(TokenType::Shell, 0);
        assert_eq!(
            s.get(
                &sh,
                &GetArgs {
                    store: sref(Some("com.a")),
                    ..get.clone()
                }
            )
            .unwrap(),
            b"a"
        );
        assert_eq!(s.get(&sh, &get).unwrap_err().code(), 401);
        // No token, or an app the token manager does not know: nothing.
        assert_eq!(
            s.get(&caller(TokenType::Invalid, 0), &get)
                .unwrap_err()
                .code(),
            201
        );
        assert_eq!(
            s.get(&caller(TokenType::Hap, 9), &get).unwrap_err().code(),
            201
        );
        assert!(d.path().join("com.a/s.db").exists() && d.path().join("com.b/s.db").exists());
    }

    /// Regression (hardening item 4): delete and deleteBatch of keys this device holds no
    /// value for succeed, leave tombstones, and mark the store for auto sync, so that the
    /// deletes reach the devices that hold those keys.
    #[test]
    fn deletes_of_absent_keys_succeed_and_are_recorded_for_sync() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path());
        let sh = caller(TokenType::Shell, 0);
        let r = sref(Some("com.a"));
        s.get_kv_store(
            &sh,
            &OpenArgs {
                store: r.clone(),
                options: Options {
                    auto_sync: true,
                    ..Options::default()
                },
            },
        )
        .unwrap();
        let o = s.existing(&("com.a".into(), "s".into())).unwrap();
        s.write(&sh, 1, &r, vec![(b"gone".to_vec(), None)]).unwrap();
        assert!(o.dirty.swap(false, Ordering::Relaxed), "delete");
        assert_eq!(lock(&o.store).counts(), (0, 1));
        s.write(&sh, 1, &r, vec![(b"here".to_vec(), Some(b"v".to_vec()))])
            .unwrap();
        o.dirty.store(false, Ordering::Relaxed);
        let batch = vec![(b"here".to_vec(), None), (b"never".to_vec(), None)];
        s.write(&sh, 1, &r, batch).unwrap();
        assert!(o.dirty.load(Ordering::Relaxed), "deleteBatch");
        assert_eq!(lock(&o.store).counts(), (0, 3));
    }

    #[test]
    fn auto_sync_stores_are_opened_at_start() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = svc(d.path());
            let o = Options {
                auto_sync: true,
                ..Options::default()
            };
            s.get_kv_store(
                &caller(TokenType::Shell, 0),
                &OpenArgs {
                    store: sref(Some("com.a")),
                    options: o,
                },
            )
            .unwrap();
        }
        let s = svc(d.path());
        assert!(
            s.dump_text(true)
                .contains("com.a/s: single S1 auto_sync=true"),
            "{}",
            s.dump_text(true)
        );
    }
}
