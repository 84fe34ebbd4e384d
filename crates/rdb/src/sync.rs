//! Sync of distributed tables between devices, and remoteQuery.
//!
//! **One protocol with the KV store.** A store's distributed tables sync through the KV
//! store's sans-IO [`SyncEngine`]: Hello with the epoch and the device's security level, data
//! packets from the peer's watermark with a window, acknowledgements that move the watermark
//! (durably) only once the packet is committed, resends after silence, a new epoch meaning a
//! full resync. What the packets carry differs: a [`Changeset`] of whole rows with per-cell
//! versions, merged column by column ([`crate::distributed::merge`]), applied in one
//! transaction. [`Side`] is the store as the engine's [`SyncReplica`].
//!
//! **The bus.** Messages ride the data service's sync session on the relational store's own
//! channel ([`oxh_kvstore::wire::CHANNEL_RDB`]), through an [`RdbBus`] the daemon wires to the
//! KV service: one socket per peer for both features, as OpenHarmony's data service has one
//! communicator. Device ids are udids; networkIds only reach devices while they are online.
//!
//! **Who may sync.** The caller needs DISTRIBUTED_DATASYNC (the SA method says so); the
//! receiving device checks that its own copy of the app holds it too
//! ([`RdbBus::app_may_sync`]), and that its security level covers the store's. A peer only
//! reaches stores whose file exists here: it never makes one.

use crate::api::{self, DeviceSyncResult, SyncStatus};
use crate::distributed::merge::Changeset;
use crate::error::{RdbError, Result, code};
use crate::service::RdbService;
use crate::store::RdbStore;
use crate::value::Value;
use crate::{Applied, SecurityLevel, StoreConfig};
use oxh_kvstore::limits::StoreType;
use oxh_kvstore::sync::{
    Event, GC_EVERY_TICKS, PeerState, ReplicaState, SyncConfig, SyncEngine, SyncReplica,
    sync_targets,
};
use oxh_kvstore::wire::{Msg, StoreDesc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// How often the engines are ticked (resends, timeouts); tombstones are collected every
/// [`GC_EVERY_TICKS`] ticks, as the KV store's.
pub const TICK: Duration = Duration::from_millis(50);
/// Remote queries one device may have waiting for answers from us at once.
const MAX_PENDING_QUERIES: usize = 64;

/// What the relational store needs of the soft bus (the daemon wires it to the KV
/// service's session, channel [`oxh_kvstore::wire::CHANNEL_RDB`]).
pub trait RdbBus: Send + Sync {
    /// Sends one message to the online device `udid` (it may be lost: the sync resends).
    fn send(&self, udid: &str, bytes: Vec<u8>);
    /// The trusted devices online now: `(udid, networkId)`.
    fn online(&self) -> Vec<(String, String)>;
    /// Every device bound to this one (udids), online or not: tombstones wait for them all.
    fn trusted(&self) -> Vec<String>;
    /// The udid a caller's device name (networkId, udid or a prefix of one) means.
    fn resolve(&self, device: &str) -> String;
    /// This device's security level, 1..=5.
    fn device_level(&self) -> u8;
    /// Whether this device's copy of `bundle` holds DISTRIBUTED_DATASYNC.
    fn app_may_sync(&self, bundle: &str) -> bool;
    /// The local token `token_id` as another device checks it: its revision and state (as
    /// dbinder syncs a caller's token), `None` if there is no such token.
    fn export_caller(&self, token_id: u32) -> Option<(u64, Vec<u8>)>;
    /// The caller on device `udid` whose token `token_id` (revision `rev`) it exported as
    /// `state`, as this device's synced copy of that token has it (its type and name: a
    /// HAP token's bundle), if that copy holds DISTRIBUTED_DATASYNC.
    fn caller_may_sync(
        &self,
        udid: &str,
        token_id: u32,
        rev: u64,
        state: &[u8],
    ) -> Option<(oxh_ipc::TokenType, String)>;
}

/// A caller's token as it travels with a remote query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerToken {
    /// Its id on the calling device.
    pub token_id: u32,
    /// Its revision there.
    pub rev: u64,
    /// Its exported state (the access-token manager's encoding).
    pub state: Vec<u8>,
}

/// A data packet: one [`Changeset`] in its compact encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// The encoded changeset.
    pub bytes: Vec<u8>,
    /// The values' bytes inside (keys and cells), for the wire-to-payload ratio; not sent.
    #[serde(skip)]
    pub payload: u64,
}

/// The bytes of a changeset's values: text and blobs by length, numbers as 8.
fn payload_of(cs: &Changeset) -> u64 {
    let v = |x: &Value| match x {
        Value::Text(s) => s.len(),
        Value::Blob(b) => b.len(),
        Value::Null => 0,
        _ => 8,
    } as u64;
    cs.rows
        .iter()
        .map(|r| r.pk.iter().map(v).sum::<u64>() + r.cells.iter().map(|c| v(&c.value)).sum::<u64>())
        .sum()
}

/// A message on the relational store's channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RdbMsg {
    /// A sync message about `store`.
    Sync {
        /// The store: bundle, file (relative), security level.
        store: StoreDesc,
        /// The one table the round is about (`sync` with predicates on it), or every
        /// distributed table.
        table: Option<String>,
        /// The engine's message.
        msg: Msg<Packet>,
    },
    /// remoteQuery: run `sql` read-only on `store` and answer `id`.
    Query {
        /// Chosen by the asking device.
        id: u64,
        /// The store.
        store: StoreDesc,
        /// The query.
        sql: String,
        /// Its arguments.
        args: Vec<Value>,
        /// The caller's token, which the peer checks on its synced copy.
        caller: Option<CallerToken>,
    },
    /// The answer to query `id`: the rows, or OpenHarmony's error code and message.
    QueryReply {
        /// The query.
        id: u64,
        /// Columns and rows, or (code, message).
        result: std::result::Result<api::Rows, (i32, String)>,
    },
}

impl RdbMsg {
    fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// Decodes a message from a peer (bounded by the session's reassembly limit).
pub fn decode(b: &[u8]) -> Result<RdbMsg> {
    postcard::from_bytes(b).map_err(|e| RdbError::invalid(format!("bad sync message: {e}")))
}

fn kv_level(l: SecurityLevel) -> oxh_kvstore::limits::SecurityLevel {
    use oxh_kvstore::limits::SecurityLevel as K;
    match l {
        SecurityLevel::S1 => K::S1,
        SecurityLevel::S2 => K::S2,
        SecurityLevel::S3 => K::S3,
        SecurityLevel::S4 => K::S4,
    }
}

fn rdb_level(l: oxh_kvstore::limits::SecurityLevel) -> SecurityLevel {
    use oxh_kvstore::limits::SecurityLevel as K;
    match l {
        K::S1 => SecurityLevel::S1,
        K::S2 => SecurityLevel::S2,
        K::S3 => SecurityLevel::S3,
        K::S4 => SecurityLevel::S4,
    }
}

/// The store a message names: `store_id` is the file's path relative to the app's database
/// dir, `/`-separated (customDir, then name).
fn config_of(d: &StoreDesc) -> Result<StoreConfig> {
    let (dir, name) = match d.store_id.rsplit_once('/') {
        Some((dir, name)) => (Some(dir.to_string()), name),
        None => (None, d.store_id.as_str()),
    };
    let c = StoreConfig {
        name: name.to_string(),
        security_level: rdb_level(d.level),
        custom_dir: dir,
    };
    c.relative_path()?;
    Ok(c)
}

fn desc_of(app: &str, rel: &Path, level: SecurityLevel) -> StoreDesc {
    StoreDesc {
        bundle: app.to_string(),
        store_id: rel.to_string_lossy().into_owned(),
        // A relational store is one dataset every device shares.
        kind: StoreType::SingleVersion,
        level: kv_level(level),
    }
}

/// The store as the sync engine's replica.
pub struct Side<'a> {
    store: &'a RdbStore,
    epoch: [u8; 16],
    table: Option<String>,
}

impl<'a> Side<'a> {
    /// The replica over `store`'s distributed tables, or over its one `table`: each has
    /// its own watermark per peer.
    pub fn new(store: &'a RdbStore, table: Option<&str>) -> Result<Self> {
        Ok(Self {
            epoch: store.epoch()?,
            store,
            table: table.map(String::from),
        })
    }

    /// The name a peer's watermark is kept under: the peer, with the table when the round
    /// is about one.
    fn key(&self, peer: &str) -> String {
        match &self.table {
            Some(t) => format!("{peer}{}{t}", crate::distributed::replica::TABLE_SEP),
            None => peer.to_string(),
        }
    }
}

fn s(e: RdbError) -> String {
    e.to_string()
}

impl ReplicaState for Side<'_> {
    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }
    fn peer(&self, peer: &str) -> std::result::Result<Option<PeerState>, String> {
        Ok(self
            .store
            .peer_state(&self.key(peer))
            .map_err(s)?
            .map(|(acked, e)| {
                let mut epoch = [0u8; 16];
                if e.len() == 16 {
                    epoch.copy_from_slice(&e);
                }
                PeerState { epoch, acked }
            }))
    }
    fn set_peer(&mut self, peer: &str, st: PeerState) -> std::result::Result<(), String> {
        self.store
            .set_peer_state(&self.key(peer), st.acked, &st.epoch)
            .map_err(s)
    }
    fn reset_peer(&mut self, peer: &str, epoch: [u8; 16]) -> std::result::Result<(), String> {
        self.store
            .set_peer_state(&self.key(peer), 0, &epoch)
            .map_err(s)
    }
}

impl SyncReplica for Side<'_> {
    type Batch = Packet;
    type Change = Applied;
    fn batch_since(
        &mut self,
        after: u64,
        _skip_src: &str,
        max_entries: usize,
        max_bytes: usize,
    ) -> std::result::Result<(Packet, u64), String> {
        let cs = self
            .store
            .changes_since_in(after, max_entries, max_bytes, self.table.as_deref())
            .map_err(s)?;
        let upto = if cs.rows.is_empty() { after } else { cs.upto };
        Ok((
            Packet {
                payload: payload_of(&cs),
                bytes: cs.encode().map_err(s)?,
            },
            upto,
        ))
    }
    fn apply_batch(
        &mut self,
        _desc: &StoreDesc,
        _src: &str,
        batch: Packet,
    ) -> std::result::Result<Vec<Applied>, String> {
        let cs = Changeset::decode(&batch.bytes).map_err(s)?;
        let applied = self.store.apply_changeset(&cs).map_err(s)?;
        Ok(if applied.is_empty() {
            Vec::new()
        } else {
            vec![applied]
        })
    }
}

/// A store taking part in sync: its engine, and the store kept open for it.
pub(crate) struct Synced {
    store: Arc<RdbStore>,
    engine: Mutex<SyncEngine>,
    desc: StoreDesc,
    table: Option<String>,
}

type Key = (String, PathBuf);
/// A store, and the one table its rounds are about (or every distributed table).
type SyncKey = (Key, Option<String>);
type Waiter = mpsc::Sender<SyncStatus>;

/// The sync's state in the service.
#[derive(Default)]
pub(crate) struct SyncState {
    bus: OnceLock<Arc<dyn RdbBus>>,
    synced: Mutex<HashMap<SyncKey, Arc<Synced>>>,
    waiters: Mutex<HashMap<(SyncKey, String, u64), Vec<Waiter>>>,
    /// Our remote queries waiting for answers: (device, id).
    queries: Mutex<HashMap<(String, u64), Waiter2>>,
    next_query: AtomicU64,
    t0: OnceLock<Instant>,
    /// Remote results being read page by page.
    cursors: Mutex<Vec<Cursor>>,
    /// Sync messages sent, their bytes as handed to the bus, and the values' bytes in them.
    sent: [AtomicU64; 3],
    ticks: AtomicU64,
}

/// A remote result read page by page: (connection, cursor, columns, rows left).
type Cursor = (
    u64,
    u64,
    Vec<String>,
    std::collections::VecDeque<Vec<Value>>,
);

type Waiter2 = mpsc::Sender<std::result::Result<api::Rows, (i32, String)>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RdbService {
    fn now(&self) -> u64 {
        self.sync_state()
            .t0
            .get_or_init(Instant::now)
            .elapsed()
            .as_millis() as u64
    }

    fn bus(&self) -> Result<&Arc<dyn RdbBus>> {
        self.sync_state()
            .bus
            .get()
            .ok_or_else(|| RdbError::new(code::NOT_SUPPORTED, "this device has no soft bus"))
    }

    /// Wires the soft bus in and ticks the engines while the service lives (call inside a
    /// tokio runtime).
    pub fn attach_bus(self: &Arc<Self>, bus: Arc<dyn RdbBus>) {
        if self.sync_state().bus.set(bus).is_err() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(TICK);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                let Some(me) = me.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || me.tick()).await;
            }
        });
    }

    fn all_synced(&self) -> Vec<(SyncKey, Arc<Synced>)> {
        lock(&self.sync_state().synced)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn tick(&self) {
        let now = self.now();
        let n = self.sync_state().ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(GC_EVERY_TICKS)
            && let Ok(bus) = self.bus()
        {
            let peers = bus.trusted();
            for (k, sy) in self.all_synced() {
                if let Err(e) = sy.store.gc_tombstones(&peers) {
                    tracing::info!(tag = "rdb", "tombstones of {}: {e}", k.0.0);
                }
            }
        }
        for (k, sy) in self.all_synced() {
            let mut out = Vec::new();
            {
                let mut e = lock(&sy.engine);
                if !e.active() {
                    continue;
                }
                let Ok(mut side) = Side::new(&sy.store, sy.table.as_deref()) else {
                    continue;
                };
                e.tick(&mut side, now, &mut out);
            }
            self.route(&k, &sy, out);
        }
    }

    /// The sync's entry for `key`, made on first use with `store` (the sync then keeps the
    /// store open).
    fn synced(&self, key: &SyncKey, store: Arc<RdbStore>) -> Result<Arc<Synced>> {
        let st = self.sync_state();
        let mut m = lock(&st.synced);
        if let Some(s) = m.get(key) {
            return Ok(s.clone());
        }
        let level = self.bus()?.device_level();
        let desc = desc_of(&key.0.0, &key.0.1, store.config().security_level);
        if !m.keys().any(|(k, _)| *k == key.0) {
            self.pin_store(&key.0, &store);
        }
        let sy = Arc::new(Synced {
            engine: Mutex::new(SyncEngine::new(desc.clone(), level, SyncConfig::default())),
            store,
            desc,
            table: key.1.clone(),
        });
        m.insert(key.clone(), sy.clone());
        Ok(sy)
    }

    /// For hidumper: what the sync sent (the wire-to-payload ratio).
    pub(crate) fn sync_dump(&self) -> String {
        let [m, b, p] = &self.sync_state().sent;
        format!(
            "rdb sync sent: {} messages, {} bytes, {} payload bytes; {} stores syncing\n",
            m.load(Ordering::Relaxed),
            b.load(Ordering::Relaxed),
            p.load(Ordering::Relaxed),
            lock(&self.sync_state().synced).len()
        )
    }

    /// A store deleted: its sync goes with it.
    pub(crate) fn forget_synced(&self, key: &Key) {
        lock(&self.sync_state().synced).retain(|(k, _), _| k != key);
    }

    /// sync: a round with each device, waiting for them (or the timeout). Per-device status,
    /// as OpenHarmony's `Array<[string, number]>`.
    pub fn sync(&self, conn: u64, a: &api::SyncArgs) -> Result<Vec<DeviceSyncResult>> {
        let (key, store) = self.handle_store(conn, a.handle)?;
        let bus = self.bus()?.clone();
        let tables = store.distributed_tables()?;
        if tables.is_empty() {
            return Err(RdbError::invalid(
                "the store has no distributed tables: setDistributedTables first",
            ));
        }
        if let Some(t) = &a.table
            && !tables.iter().any(|x| x == t)
        {
            return Err(RdbError::invalid(format!(
                "{t:?} is not a distributed table: setDistributedTables first"
            )));
        }
        let key = (key, a.table.clone());
        let sy = self.synced(&key, store)?;
        let online: HashMap<String, String> = bus.online().into_iter().collect();
        let targets = sync_targets(&online, &a.devices, |d| bus.resolve(d));
        if targets.is_empty() {
            return Err(RdbError::new(
                code::INNER_ERROR,
                "no online trusted device to sync with",
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
            let (tx, rx) = mpsc::channel();
            let mut out = Vec::new();
            {
                let mut e = lock(&sy.engine);
                let mut side = Side::new(&sy.store, sy.table.as_deref())?;
                let req = e.sync(&mut side, &udid, a.mode, self.now(), &mut out);
                lock(&self.sync_state().waiters)
                    .entry((key.clone(), udid.clone(), req))
                    .or_default()
                    .push(tx);
            }
            self.route(&key, &sy, out);
            pending.push((net, udid, rx));
        }
        let ms = if a.timeout_ms == 0 {
            api::DEFAULT_SYNC_TIMEOUT_MS
        } else {
            a.timeout_ms
        };
        let deadline = Instant::now() + Duration::from_millis(ms);
        for (net, udid, rx) in pending {
            let left = deadline.saturating_duration_since(Instant::now());
            let status = rx.recv_timeout(left).unwrap_or(SyncStatus::Timeout);
            results.push(DeviceSyncResult {
                network_id: net,
                device_id: udid,
                status,
            });
        }
        Ok(results)
    }

    /// Carries out what an engine asked for.
    fn route(&self, key: &SyncKey, sy: &Synced, evs: Vec<Event<Packet, Applied>>) {
        let st = self.sync_state();
        for e in evs {
            match e {
                Event::Send { to, msg } => {
                    if let Ok(bus) = self.bus() {
                        if let Msg::Data { batch, .. } = &msg {
                            st.sent[2].fetch_add(batch.payload, Ordering::Relaxed);
                        }
                        let m = RdbMsg::Sync {
                            store: sy.desc.clone(),
                            table: sy.table.clone(),
                            msg,
                        }
                        .encode();
                        st.sent[0].fetch_add(1, Ordering::Relaxed);
                        st.sent[1].fetch_add(m.len() as u64, Ordering::Relaxed);
                        bus.send(&to, m);
                    }
                }
                Event::Complete { peer, req, status } => {
                    if let Some(ws) = lock(&st.waiters).remove(&(key.clone(), peer, req)) {
                        for w in ws {
                            let _ = w.send(status.clone());
                        }
                    }
                }
                Event::Changed { from, changes } => {
                    for applied in &changes {
                        self.notify_remote(&key.0, &from, applied);
                    }
                }
                Event::Superseded { peer, old, new } => {
                    let mut w = lock(&st.waiters);
                    if let Some(ws) = w.remove(&(key.clone(), peer.clone(), old)) {
                        w.entry((key.clone(), peer, new)).or_default().extend(ws);
                    }
                }
            }
        }
    }

    /// The store a peer's message names, if it exists here (a peer never makes one).
    fn store_for_peer(&self, d: &StoreDesc, table: Option<&str>) -> Result<(SyncKey, Arc<Synced>)> {
        oxh_kvstore::limits::check_bundle_name(&d.bundle)
            .map_err(|e| RdbError::invalid(e.to_string()))?;
        let config = config_of(d)?;
        let key: SyncKey = (
            (d.bundle.clone(), config.relative_path()?),
            table.map(String::from),
        );
        if let Some(sy) = lock(&self.sync_state().synced).get(&key) {
            if sy.desc != *d {
                return Err(RdbError::new(
                    code::CONFIG_CHANGED,
                    "the store has another security level here",
                ));
            }
            return Ok((key, sy.clone()));
        }
        let store = self.open_existing(&key.0, &config)?;
        if let Some(t) = table
            && !store.distributed_tables()?.iter().any(|x| x == t)
        {
            return Err(RdbError::invalid(format!(
                "{t:?} is not a distributed table here"
            )));
        }
        let sy = self.synced(&key, store)?;
        Ok((key, sy))
    }

    /// A message a peer sent on the relational store's channel.
    pub fn on_bus_message(&self, from: &str, bytes: &[u8]) {
        let msg = match decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(tag = "rdb", "dropping a bad message from {from}: {e}");
                return;
            }
        };
        match msg {
            RdbMsg::Sync { store, table, msg } => self.on_sync_message(from, store, table, msg),
            RdbMsg::Query {
                id,
                store,
                sql,
                args,
                caller,
            } => {
                let result = self
                    .answer_query(from, &store, &sql, &args, caller.as_ref())
                    .map_err(|e| (e.code(), e.to_string()));
                if let Ok(bus) = self.bus() {
                    bus.send(from, RdbMsg::QueryReply { id, result }.encode());
                }
            }
            RdbMsg::QueryReply { id, result } => {
                if let Some(w) = lock(&self.sync_state().queries).remove(&(from.to_string(), id)) {
                    let _ = w.send(result);
                }
            }
        }
    }

    fn on_sync_message(
        &self,
        from: &str,
        store: StoreDesc,
        table: Option<String>,
        msg: Msg<Packet>,
    ) {
        let Ok(bus) = self.bus().cloned() else { return };
        let refuse = |status: SyncStatus| {
            if let Msg::Hello { req, .. } = &msg {
                let m = RdbMsg::Sync {
                    store: store.clone(),
                    table: table.clone(),
                    msg: Msg::HelloAck {
                        req: *req,
                        epoch: [0; 16],
                        device_level: bus.device_level(),
                        status,
                    },
                };
                bus.send(from, m.encode());
            }
        };
        if !bus.app_may_sync(&store.bundle) {
            refuse(SyncStatus::PermissionDenied);
            return;
        }
        let (key, sy) = match self.store_for_peer(&store, table.as_deref()) {
            Ok(x) => x,
            Err(e) if e.code() == code::CONFIG_CHANGED => {
                refuse(SyncStatus::StoreMismatch);
                return;
            }
            Err(e) if e.code() == code::INVALID_PATH => {
                refuse(SyncStatus::Failed(format!("no such store here: {e}")));
                return;
            }
            Err(e) => {
                refuse(SyncStatus::Failed(e.to_string()));
                return;
            }
        };
        let mut out = Vec::new();
        {
            let mut e = lock(&sy.engine);
            match Side::new(&sy.store, sy.table.as_deref()) {
                Ok(mut side) => e.handle(&mut side, from, msg, self.now(), &mut out),
                Err(err) => {
                    drop(e);
                    refuse(SyncStatus::Failed(err.to_string()));
                    return;
                }
            }
        }
        self.route(&key, &sy, out);
    }

    /// A device went offline: its rounds end.
    pub fn on_peer_offline(&self, udid: &str) {
        for (k, sy) in self.all_synced() {
            let mut out = Vec::new();
            lock(&sy.engine).peer_offline(udid, &mut out);
            self.route(&k, &sy, out);
        }
        lock(&self.sync_state().queries).retain(|(d, _), _| d != udid);
    }

    /// A peer's remote query, run read-only under the caller's synced token.
    fn answer_query(
        &self,
        from: &str,
        d: &StoreDesc,
        sql: &str,
        args: &[Value],
        caller: Option<&CallerToken>,
    ) -> Result<api::Rows> {
        let bus = self.bus()?;
        // An app reaches only its own stores, on the peer as here; the shell and native
        // callers name the app.
        let caller_ok = caller
            .and_then(|c| bus.caller_may_sync(from, c.token_id, c.rev, &c.state))
            .is_some_and(|(t, name)| t != oxh_ipc::TokenType::Hap || name == d.bundle);
        if !caller_ok {
            return Err(RdbError::new(
                code::PERMISSION_DENIED,
                "the caller's token does not hold ohos.permission.DISTRIBUTED_DATASYNC for this app's store on that device",
            ));
        }
        let (_, sy) = self.store_for_peer(d, None)?;
        let rs = sy
            .store
            .query_sql_capped(sql, args, api::MAX_REMOTE_RESULT_BYTES)?;
        let (columns, rows) = rs.into_parts();
        Ok(api::Rows { columns, rows })
    }

    /// remoteQuery: the query runs read-only on `device`'s copy of the store; its result
    /// (at most [`api::MAX_REMOTE_RESULT_BYTES`]) comes back in pages.
    pub fn remote_query(
        &self,
        conn: u64,
        token_id: u32,
        a: &api::RemoteQueryArgs,
    ) -> Result<api::RemotePage> {
        let rows = self.remote_rows(conn, token_id, a)?;
        let st = self.sync_state();
        let cursor = st.next_query.fetch_add(1, Ordering::Relaxed) + 1;
        let mut rest = rows.rows.into();
        let page = Self::page_of(rows.columns, &mut rest, cursor);
        if page.more.is_some() {
            let mut cs = lock(&st.cursors);
            let mine: Vec<usize> = (0..cs.len()).filter(|&i| cs[i].0 == conn).collect();
            if mine.len() >= api::MAX_REMOTE_CURSORS_PER_CONN {
                cs.remove(mine[0]);
            }
            if cs.len() >= api::MAX_REMOTE_CURSORS {
                cs.remove(0);
            }
            cs.push((conn, cursor, page.columns.clone(), rest));
        }
        Ok(page)
    }

    /// The next page of remote result `cursor` of connection `conn`.
    pub fn remote_query_next(&self, conn: u64, a: &api::NextPageArgs) -> Result<api::RemotePage> {
        let mut cs = lock(&self.sync_state().cursors);
        let i = cs
            .iter()
            .position(|c| c.0 == conn && c.1 == a.cursor)
            .ok_or_else(|| {
                RdbError::new(
                    code::ALREADY_CLOSED,
                    format!("remote result {} is not open on this connection", a.cursor),
                )
            })?;
        let (_, c, columns, mut rest) = cs.remove(i);
        let page = Self::page_of(columns.clone(), &mut rest, c);
        if page.more.is_some() {
            cs.push((conn, c, columns, rest));
        }
        Ok(page)
    }

    /// The first rows of `rest` that fit one reply (taken out of it); the page names
    /// `cursor` when some are left.
    fn page_of(
        columns: Vec<String>,
        rest: &mut std::collections::VecDeque<Vec<Value>>,
        cursor: u64,
    ) -> api::RemotePage {
        let mut size = 64 + columns.iter().map(|c| c.len() + 11).sum::<usize>();
        let mut rows = Vec::new();
        while let Some(r) = rest.front() {
            let n = 10 + r.iter().map(api::encoded_size).sum::<usize>();
            if size + n > api::MAX_RESULT_BYTES && !rows.is_empty() {
                break;
            }
            size += n;
            rows.extend(rest.pop_front());
        }
        api::RemotePage {
            columns,
            rows,
            more: (!rest.is_empty()).then_some(cursor),
        }
    }

    /// A client connection went: its unread remote results go.
    pub(crate) fn drop_cursors(&self, conn: u64) {
        lock(&self.sync_state().cursors).retain(|c| c.0 != conn);
    }

    fn remote_rows(&self, conn: u64, token_id: u32, a: &api::RemoteQueryArgs) -> Result<api::Rows> {
        let (key, store) = self.handle_store(conn, a.handle)?;
        let bus = self.bus()?.clone();
        let udid = bus.resolve(&a.device);
        if !bus.online().iter().any(|(u, _)| *u == udid) {
            return Err(RdbError::new(
                code::INNER_ERROR,
                format!("device {} is not online", a.device),
            ));
        }
        let st = self.sync_state();
        let id = st.next_query.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel();
        {
            let mut q = lock(&st.queries);
            if q.len() >= MAX_PENDING_QUERIES {
                return Err(RdbError::new(
                    code::SQLITE_BUSY,
                    "too many remote queries waiting: try again",
                ));
            }
            q.insert((udid.clone(), id), tx);
        }
        let m = RdbMsg::Query {
            id,
            store: desc_of(&key.0, &key.1, store.config().security_level),
            sql: a.sql.clone(),
            args: a.args.clone(),
            caller: bus.export_caller(token_id).map(|(rev, state)| CallerToken {
                token_id,
                rev,
                state,
            }),
        };
        bus.send(&udid, m.encode());
        let r = rx.recv_timeout(Duration::from_millis(api::REMOTE_QUERY_TIMEOUT_MS));
        lock(&st.queries).remove(&(udid, id));
        match r {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err((c, m))) => Err(RdbError::new(c, m)),
            Err(_) => Err(RdbError::new(
                code::INNER_ERROR,
                format!("device {} did not answer the remote query", a.device),
            )),
        }
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sync_sim_tests.rs"]
mod sim_tests;
