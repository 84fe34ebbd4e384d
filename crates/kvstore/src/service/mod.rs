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
//!
//! The service is split by concern; every part is an `impl KvService` block over the state
//! defined here:
//! - `stores`: the store registry (which app a caller acts for, opening, listing, deleting);
//! - `data`: reads, writes, transactions and large-value uploads;
//! - `events`: dataChange subscriptions and the events pushed to them;
//! - `backup`: backup, restore and deleteBackup;
//! - `driver`: the sync driver (SYNC calls, auto sync, the engines' events);
//! - `link`: the sessions with remote devices on the soft bus.

mod backup;
mod data;
mod driver;
mod events;
mod link;
mod stores;

use crate::api::{self, SubscribeType};
use crate::error::KvError;
use crate::store::Store;
use crate::sync::{SyncConfig, SyncEngine};
use crate::wire::{Reassembler, StoreDesc, SyncStatus};
use oxh_ipc::ConnHandle;
use oxh_softbus::Softbus;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub use driver::TICK;
pub use link::KV_OWNER;
pub use stores::meta_of;

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

/// Another feature of the data service sharing the KV sync's session with peers (the
/// relational store): one socket per peer carries both, on channels of their own.
pub trait Feature: Send + Sync {
    /// A whole message `udid` sent on the feature's channel.
    fn on_message(&self, udid: &str, bytes: Vec<u8>);
    /// The trusted device `udid` came online as `network_id`.
    fn on_online(&self, udid: &str, network_id: &str);
    /// `udid` went offline.
    fn on_offline(&self, udid: &str);
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
    /// The features sharing the sync session, by channel.
    features: Mutex<HashMap<u8, Arc<dyn Feature>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            features: Mutex::new(HashMap::new()),
        });
        for (bundle, id, meta) in me.scan() {
            if meta.auto_sync {
                let _ = me.open_store(&(bundle, id), Some(meta), false);
            }
        }
        Ok(me)
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
}

#[cfg(test)]
mod test_util {
    use super::*;
    use crate::api::StoreRef;
    use oxh_ipc::{Caller, TokenType};

    pub(super) fn caller(t: TokenType, token_id: u32) -> Caller {
        Caller {
            pid: 1,
            uid: 0,
            gid: 0,
            token_id,
            token_type: t,
            process_name: "t".into(),
        }
    }

    pub(super) fn svc(dir: &std::path::Path) -> Arc<KvService> {
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

    pub(super) fn sref(app: Option<&str>) -> StoreRef {
        StoreRef {
            app: app.map(String::from),
            store_id: "s".into(),
        }
    }
}
