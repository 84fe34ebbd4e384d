//! The soft bus service of one device: the bus, sockets, discovery, binding and the bus center
//! (LNN), behind the device manager (4802) and soft bus (4700) system abilities.
//!
//! Split by concern: the bus center (`center`), the device manager's operations (`devmgr`),
//! advert rotation (`adverts`), the socket API (`sockets`), files through a caller's
//! descriptor (`files`) and the encoding of socket events (`events`).

mod adverts;
mod center;
mod devmgr;
mod events;
mod files;
mod sockets;

use crate::discovery::{
    Advert, AdvertId, Capabilities, Discovery, DiscoveryConfig, Epochs, Interfaces,
};
use crate::transport::session::{Owner, Sessions};
use crate::transport::{Bus, BusConfig, NodeInfo, TrustView};
use oxh_devauth::bind::LocalDevice;
use oxh_devauth::{AdvertKey, DeviceIdentity, DeviceInfo, PinManager, TrustSnapshot, TrustStore};
use oxh_ipc::{ConnHandle, RemoteError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use center::{RECONCILE_EVERY, StaticPeer};
use files::{FdRecv, FdSend};

/// How a device's soft bus runs.
#[derive(Debug, Clone)]
pub struct SoftbusConfig {
    /// Where the QUIC endpoint listens.
    pub listen: SocketAddr,
    /// Static peers (HOST:PORT), for networks without multicast.
    pub static_peers: Vec<SocketAddr>,
    /// mDNS interfaces; `None` turns discovery off.
    pub discovery: Option<Interfaces>,
    /// Heartbeat (keep-alive) interval.
    pub heartbeat: Duration,
    /// Silence after which a peer is OFFLINE.
    pub idle_timeout: Duration,
    /// How long a PIN shown for binding stays valid (OpenHarmony: 60 s).
    pub pin_validity: Duration,
    /// How long one advert id lasts: [`crate::discovery::ADVERT_EPOCH`]; shorter only in
    /// tests, since bound devices must agree on it to recognise each other.
    pub advert_epoch: Duration,
}

impl Default for SoftbusConfig {
    fn default() -> Self {
        let b = BusConfig::default();
        Self {
            listen: b.listen,
            static_peers: Vec::new(),
            discovery: Some(Interfaces::All),
            heartbeat: b.heartbeat,
            idle_timeout: b.idle_timeout,
            pin_validity: oxh_devauth::pin::PIN_VALIDITY,
            advert_epoch: crate::discovery::ADVERT_EPOCH,
        }
    }
}

/// Errors starting the soft bus.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The trusted-device store.
    #[error(transparent)]
    Trust(#[from] oxh_devauth::StoreError),
    /// The QUIC endpoint.
    #[error(transparent)]
    Bus(#[from] crate::transport::BusError),
    /// mDNS.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
}

struct Snap(TrustSnapshot);
impl TrustView for Snap {
    fn is_trusted(&self, key: &[u8; 32]) -> bool {
        self.0.is_trusted(key)
    }
}

/// One device's soft bus.
pub struct Softbus {
    me: LocalDevice,
    info: DeviceInfo,
    network_id: String,
    bus: Arc<Bus>,
    sessions: Arc<Sessions>,
    dbinder: Arc<crate::dbinder::Dbinder>,
    discovery: Option<Discovery>,
    trust: TrustStore,
    snapshot: TrustSnapshot,
    pins: Arc<Mutex<PinManager>>,
    epoch: Instant,
    state_subs: Mutex<Vec<(ConnHandle, u64)>>,
    /// The secret behind our rotating advert ids.
    advert_key: AdvertKey,
    epochs: Epochs,
    /// The name the owner set, the only one adverts and probe replies carry.
    own_name: Option<String>,
    statics: Mutex<HashMap<SocketAddr, StaticPeer>>,
    pending_bytes: Mutex<HashMap<(Owner, u64), Vec<bytes::Bytes>>>,
    /// Files being sent from a caller's descriptor, per (client, socket).
    fd_sends: Mutex<HashMap<(Owner, u64), FdSend>>,
    /// Files being received into a caller's descriptor, per (client, socket).
    fd_recvs: Mutex<HashMap<(Owner, u64), FdRecv>>,
}

fn random_network_id() -> String {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // Fall back on the clock: unique per start, which is all networkId promises.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b[..16].copy_from_slice(&t.to_le_bytes());
    }
    hex::encode(b)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn err(code: i32, m: impl Into<String>) -> RemoteError {
    RemoteError::new(code, m)
}

impl Softbus {
    /// Starts the bus, discovery and the bus center for `identity`, keeping trust in `dir`.
    pub async fn start(
        identity: &DeviceIdentity,
        dir: &Path,
        cfg: SoftbusConfig,
        sa_list: Vec<i32>,
    ) -> Result<Arc<Self>, StartError> {
        let trust = TrustStore::open(&dir.join("trust.db"))?;
        let snapshot = trust.snapshot();
        let info = identity.info();
        let network_id = random_network_id();
        let me = LocalDevice::from_identity(identity);
        let node = NodeInfo {
            network_id: network_id.clone(),
            udid: info.udid.clone(),
            name: info.name.clone(),
            device_type: info.device_type.as_str().into(),
            device_type_id: info.device_type_id,
            os_version: info.os_version.clone(),
            capabilities: vec!["osdCapability".into(), "ddmpCapability".into()],
            sa_list,
            listen_port: 0,
            advert_key: identity.advert_key(),
        };
        let bus_cfg = BusConfig {
            listen: cfg.listen,
            heartbeat: cfg.heartbeat,
            idle_timeout: cfg.idle_timeout,
        };
        let (bus, channels) = Bus::start(
            &bus_cfg,
            identity.signing_key().clone(),
            node,
            Arc::new(Snap(snapshot.clone())),
        )?;
        let port = bus.local_addr().map(|a| a.port()).unwrap_or(0);
        let advert_key = identity.advert_key();
        let epochs = Epochs::new(cfg.advert_epoch);
        let own_name = identity.config().name.clone();
        let discovery = match cfg.discovery.clone() {
            Some(ifs) => {
                let caps = ["osdCapability", "ddmpCapability"]
                    .iter()
                    .filter_map(|n| Capabilities::from_name(n))
                    .fold(Capabilities(0), |a, b| Capabilities(a.0 | b.0));
                let id = AdvertId::derive(&advert_key, epochs.at(SystemTime::now()));
                let advert = Advert::new(id, own_name.as_deref(), info.device_type, caps, port);
                let mut dc = DiscoveryConfig::new(advert);
                dc.interfaces = ifs;
                Some(Discovery::start(dc)?)
            }
            None => None,
        };
        let sessions = Sessions::start(bus.clone(), channels.streams);
        let dbinder = crate::dbinder::Dbinder::new(bus.clone());
        sessions.set_dbinder(dbinder.clone());
        let sb = Arc::new(Softbus {
            me,
            info,
            network_id,
            bus,
            sessions,
            dbinder,
            discovery,
            trust,
            snapshot,
            pins: Arc::new(Mutex::new(
                PinManager::new().with_validity(cfg.pin_validity),
            )),
            epoch: Instant::now(),
            state_subs: Mutex::new(Vec::new()),
            advert_key,
            epochs,
            own_name,
            statics: Mutex::new(HashMap::new()),
            pending_bytes: Mutex::new(HashMap::new()),
            fd_sends: Mutex::new(HashMap::new()),
            fd_recvs: Mutex::new(HashMap::new()),
        });
        for p in &cfg.static_peers {
            sb.add_peer(*p);
        }
        // Incoming binding connections.
        let mut bind_rx = channels.bind;
        let s = Arc::downgrade(&sb);
        tokio::spawn(async move {
            while let Some(inc) = bind_rx.recv().await {
                let Some(sb) = s.upgrade() else { break };
                tokio::spawn(async move { sb.respond_bind(inc).await });
            }
        });
        // Bus events → trust updates, candidates and subscribers.
        let mut events = sb.bus.subscribe();
        let s = Arc::downgrade(&sb);
        tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                };
                let Some(sb) = s.upgrade() else { break };
                sb.on_bus_event(ev);
            }
        });
        // A new advert id at each epoch; the epoch comes from the wall clock, as peers' do.
        let s = Arc::downgrade(&sb);
        tokio::spawn(async move {
            loop {
                let wait = match s.upgrade() {
                    Some(sb) => sb.rotate_advert(SystemTime::now()),
                    None => break,
                };
                tokio::time::sleep(wait).await;
            }
        });
        let s = Arc::downgrade(&sb);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECONCILE_EVERY);
            loop {
                tick.tick().await;
                let Some(sb) = s.upgrade() else { break };
                sb.reconcile();
            }
        });
        Ok(sb)
    }

    /// The bus address.
    pub fn bus_addr(&self) -> Option<SocketAddr> {
        self.bus.local_addr()
    }

    /// Remote SA calls and the token sync (wired by the daemon).
    pub fn dbinder(&self) -> &Arc<crate::dbinder::Dbinder> {
        &self.dbinder
    }

    /// This run's networkId.
    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    /// This device's info.
    pub fn local_info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The socket table.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// State for hidumper.
    pub fn dump(&self) -> String {
        let mut out = format!(
            "  networkId: {}\n  bus: {}\n  discovery: {}\n",
            self.network_id,
            self.bus_addr().map(|a| a.to_string()).unwrap_or_default(),
            if self.discovery.is_some() {
                "on"
            } else {
                "off"
            }
        );
        for t in self.trusted() {
            out.push_str(&format!(
                "  trusted {} ({}) {}\n",
                t.name,
                &t.udid[..12.min(t.udid.len())],
                if t.online { "online" } else { "offline" }
            ));
        }
        let c = self.bus.center(|c, _| c.candidate_count()).unwrap_or(0);
        out.push_str(&format!("  connection candidates: {c}\n"));
        out.push_str(&self.sessions.dump());
        out
    }

    /// Closes the bus and stops discovery.
    pub fn shutdown(&self) {
        self.bus.shutdown();
    }
}
