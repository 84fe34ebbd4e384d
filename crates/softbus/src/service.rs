//! The soft bus service of one device: the bus, sockets, discovery, binding and the bus center
//! (LNN), behind the device manager (4802) and soft bus (4700) system abilities.
//!
//! Bus center: every trusted device that is discovered (mDNS, its rotating advert id resolved
//! against the advert keys of trusted devices), named as a static peer, or that was online
//! before, is a connection candidate. A reconciler dials
//! candidates that are not online, with exponential backoff per address, so a device that
//! comes back goes ONLINE again without re-binding.

use crate::api::{SeenView, SocketEventView, StateEvent, TrustedView};
use crate::binding::{self, BindFailure};
use crate::discovery::{
    Advert, AdvertId, Capabilities, Discovery, DiscoveryConfig, Epochs, Interfaces, Resolver,
};
use crate::transport::session::{Owner, SessionError, Sessions, SocketEvent};
use crate::transport::{Bus, BusConfig, BusEvent, NodeInfo, TrustView};
use oxh_devauth::bind::LocalDevice;
use oxh_devauth::{
    AdvertKey, DeviceIdentity, DeviceInfo, Pin, PinManager, TrustSnapshot, TrustStore,
    TrustedDevice,
};
use oxh_ipc::{ConnHandle, RemoteError, encode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

// OpenHarmony's device-manager failure code (JS level), defined with the other DM codes.
use oxh_devauth::bind::code::DM_ERR_FAILED;

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

#[derive(Debug)]
struct Candidate {
    expected: Option<[u8; 32]>,
    next_try: Instant,
    backoff: Duration,
    in_flight: bool,
    /// The key that answered last time (static peers learn it).
    key: Option<[u8; 32]>,
}

/// A static peer and what its last probe said.
#[derive(Debug, Default)]
struct StaticPeer {
    info: Option<binding::ProbeInfo>,
    last_probe: Option<Instant>,
    in_flight: bool,
}

/// How often a static peer is probed again (its name may change).
const PROBE_EVERY: Duration = Duration::from_secs(10);

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
const RECONCILE_EVERY: Duration = Duration::from_millis(100);
/// Longest wait between checks of the advert epoch, so that a wall-clock jump is noticed.
const EPOCH_CHECK_MAX: Duration = Duration::from_secs(60);

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
    candidates: Mutex<HashMap<SocketAddr, Candidate>>,
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

/// A file being sent from a caller's descriptor: its size, how far it went, its hash so far.
struct FdSend {
    size: u64,
    sent: u64,
    hash: crate::proto::FileHasher,
}

/// A file being received into a caller's descriptor, between steps: its writer (which may
/// hold a gathered, not yet written tail) and the hash of what arrived.
struct FdRecv {
    writer: oxh_kal::direct::SeqWriter,
    hash: crate::proto::FileHasher,
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
            candidates: Mutex::new(HashMap::new()),
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

    /// Adds the device connector's port to this device's mDNS advert (`hdc discover`).
    pub fn advertise_hdc_port(&self, port: u16) {
        if let Some(d) = &self.discovery
            && let Err(e) = d.modify_advert(|a| a.hdc = Some(port))
        {
            tracing::warn!(tag = "softbus", "hdc port not advertised: {e}");
        }
    }

    /// Our advert id at `now`.
    fn advert_id_at(&self, now: SystemTime) -> AdvertId {
        AdvertId::derive(&self.advert_key, self.epochs.at(now))
    }

    /// Advertises the id of the epoch `now` falls in, if it is not already; returns how long
    /// until the next check (the next epoch, or sooner so that clock jumps are noticed).
    fn rotate_advert(&self, now: SystemTime) -> Duration {
        if let Some(d) = &self.discovery {
            let id = self.advert_id_at(now);
            if d.advert().id != id {
                match d.modify_advert(|a| a.id = id) {
                    Ok(()) => tracing::debug!(tag = "softbus", "advert id rotated"),
                    Err(e) => tracing::warn!(tag = "softbus", "advert id not rotated: {e}"),
                }
            }
        }
        self.epochs.until_next(now).min(EPOCH_CHECK_MAX)
    }

    /// What a probe is told: what the advert says now.
    fn probe_info(&self) -> binding::ProbeInfo {
        binding::ProbeInfo {
            name: self.own_name.clone(),
            device_type: self.info.device_type.as_str().to_string(),
            id: self.advert_id_at(SystemTime::now()).to_hex(),
        }
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

    /// Adds a static peer.
    pub fn add_peer(&self, addr: SocketAddr) {
        if let Some(d) = &self.discovery {
            let _ = d.add_static(addr);
        }
        if let Ok(mut s) = self.statics.lock() {
            s.entry(addr).or_default();
        }
        if let Ok(mut c) = self.candidates.lock() {
            c.entry(addr).or_insert(Candidate {
                expected: None,
                next_try: Instant::now(),
                backoff: BACKOFF_MIN,
                in_flight: false,
                key: None,
            });
        }
    }

    /// Recognises the current advert ids of trusted devices that told us their advert key.
    fn resolver(&self) -> Resolver<TrustedDevice> {
        let trusted = self.trust.list().unwrap_or_default();
        Resolver::new(
            self.epochs.at(SystemTime::now()),
            trusted
                .into_iter()
                .filter_map(|t| t.advert_key.map(|k| (t, k))),
        )
    }

    /// Dials every candidate that should be online and is not.
    fn reconcile(self: &Arc<Self>) {
        if let Some(d) = &self.discovery {
            let resolver = self.resolver();
            for seen in d.snapshot() {
                let Some(key) = seen
                    .id()
                    .and_then(|id| resolver.resolve(&id))
                    .map(|t| t.public_key)
                else {
                    continue;
                };
                if let Some(ip) = seen.addresses.first()
                    && let Ok(mut c) = self.candidates.lock()
                {
                    c.entry(SocketAddr::new(*ip, seen.port))
                        .or_insert(Candidate {
                            expected: Some(key),
                            next_try: Instant::now(),
                            backoff: BACKOFF_MIN,
                            in_flight: false,
                            key: Some(key),
                        });
                }
            }
        }
        self.probe_statics();
        let now = Instant::now();
        let mut due = Vec::new();
        if let Ok(mut cands) = self.candidates.lock() {
            for (addr, c) in cands.iter_mut() {
                let online = c.key.is_some_and(|k| self.bus.is_online(&k));
                let still_trusted = c.key.is_none_or(|k| self.snapshot.is_trusted(&k));
                if online || !still_trusted || c.in_flight || c.next_try > now {
                    continue;
                }
                if c.key.is_none() && self.snapshot.is_empty() {
                    continue;
                }
                c.in_flight = true;
                due.push((*addr, c.expected));
            }
        }
        for (addr, expected) in due {
            let sb = self.clone();
            tokio::spawn(async move {
                let r = sb.bus.connect(addr, expected).await;
                if let Ok(mut cands) = sb.candidates.lock()
                    && let Some(c) = cands.get_mut(&addr)
                {
                    c.in_flight = false;
                    match r {
                        Ok(info) => {
                            c.backoff = BACKOFF_MIN;
                            c.key = sb.key_of_udid(&info.udid);
                        }
                        Err(_) => {
                            c.next_try = Instant::now() + c.backoff;
                            c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            });
        }
    }

    /// Probes static peers whose advert is unknown or old, so `discover` can list them.
    fn probe_statics(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<SocketAddr> = match self.statics.lock() {
            Ok(mut s) => s
                .iter_mut()
                .filter(|(_, p)| {
                    !p.in_flight
                        && p.last_probe
                            .is_none_or(|t| now.duration_since(t) > PROBE_EVERY)
                })
                .map(|(a, p)| {
                    p.in_flight = true;
                    *a
                })
                .collect(),
            Err(_) => return,
        };
        for addr in due {
            let sb = self.clone();
            tokio::spawn(async move {
                let r = binding::probe(&sb.bus, addr).await;
                if let Ok(mut s) = sb.statics.lock()
                    && let Some(p) = s.get_mut(&addr)
                {
                    p.in_flight = false;
                    p.last_probe = Some(Instant::now());
                    if let Ok(info) = r {
                        p.info = Some(info);
                    }
                }
            });
        }
    }

    fn key_of_udid(&self, udid: &str) -> Option<[u8; 32]> {
        self.trust.get(udid).ok().flatten().map(|t| t.public_key)
    }

    fn view_of(&self, info: &NodeInfo, online: bool) -> TrustedView {
        TrustedView {
            udid: info.udid.clone(),
            name: info.name.clone(),
            device_type: info.device_type.clone(),
            online,
            network_id: online.then(|| info.network_id.clone()),
        }
    }

    /// Keeps the advert key a trusted peer told over its pinned connection, when the record
    /// lacks it (bound before advert keys) or holds an older one.
    /// The record is found by the key that authenticated the connection, not by the udid the
    /// info claims, so that one trusted device cannot set another's key.
    fn learn_advert_key(&self, i: &NodeInfo) {
        let Some(key) = self.bus.key_of(&i.network_id) else {
            return;
        };
        let Ok(Some(t)) = self.trust.find_by_key(&key) else {
            return;
        };
        if t.advert_key != Some(i.advert_key) {
            match self.trust.set_advert_key(&t.udid, i.advert_key) {
                Ok(_) => tracing::info!(
                    tag = "devicemanager",
                    public_name = i.name.as_str(),
                    "learnt a trusted device's advert key"
                ),
                Err(e) => tracing::warn!(tag = "devicemanager", "advert key not kept: {e}"),
            }
        }
    }

    fn on_bus_event(self: &Arc<Self>, ev: BusEvent) {
        if let BusEvent::Online(i) | BusEvent::InfoChanged(i) = &ev {
            self.learn_advert_key(i);
        }
        let out = match &ev {
            BusEvent::Online(i) => {
                // Remember where it listens, so that we can dial it back after a loss.
                if let (Some(key), Some((conn, _))) = (
                    self.key_of_udid(&i.udid),
                    self.bus.connection(&i.network_id),
                ) && i.listen_port != 0
                {
                    let addr = SocketAddr::new(conn.remote_address().ip(), i.listen_port);
                    if let Ok(mut c) = self.candidates.lock() {
                        let e = c.entry(addr).or_insert(Candidate {
                            expected: Some(key),
                            next_try: Instant::now(),
                            backoff: BACKOFF_MIN,
                            in_flight: false,
                            key: Some(key),
                        });
                        e.key = Some(key);
                    }
                }
                StateEvent::Online(self.view_of(i, true))
            }
            // OFFLINE names the networkId that went away, as OpenHarmony's callback does.
            BusEvent::Offline(i) => StateEvent::Offline(TrustedView {
                network_id: Some(i.network_id.clone()),
                ..self.view_of(i, false)
            }),
            BusEvent::InfoChanged(i) => StateEvent::InfoChanged(self.view_of(i, true)),
            BusEvent::Unbound { info, .. } => {
                let _ = self.trust.remove(&info.udid);
                self.dbinder.device_unbound(&info.udid);
                self.forget_candidates_of(&info.udid);
                tracing::info!(
                    tag = "devicemanager",
                    public_name = info.name.as_str(),
                    "unbound by the peer"
                );
                return;
            }
        };
        self.publish(&out);
    }

    fn publish(&self, ev: &StateEvent) {
        let bytes = encode(ev);
        if let Ok(mut subs) = self.state_subs.lock() {
            subs.retain(|(c, sub)| c.push_event(*sub, &bytes) || !c.is_closed());
        }
    }

    fn forget_candidates_of(&self, udid: &str) {
        if let Ok(mut c) = self.candidates.lock() {
            c.retain(|_, v| v.key.is_none_or(|k| oxh_devauth::udid_of(&k) != udid));
        }
    }

    async fn respond_bind(self: Arc<Self>, inc: crate::transport::BindIncoming) {
        let keep = |peer: &oxh_devauth::BoundPeer| {
            self.trust
                .add(&peer.to_trusted(now_secs()))
                .map_err(|e| e.to_string())
        };
        match binding::respond(
            inc,
            self.me.clone(),
            self.pins.clone(),
            self.epoch,
            &self.probe_info(),
            keep,
        )
        .await
        {
            Ok(None) => tracing::debug!(tag = "devicemanager", "answered a probe"),
            Ok(Some(peer)) => {
                tracing::info!(
                    tag = "devicemanager",
                    public_name = peer.record.name.as_str(),
                    "bound with a device (target side)"
                );
            }
            Err(e) => {
                tracing::warn!(tag = "devicemanager", "binding attempt failed: {e}");
            }
        }
    }

    // ---- device manager methods ----

    /// A fresh PIN for binding (target side).
    pub fn issue_pin(&self) -> Result<(Pin, u64), RemoteError> {
        let mut p = self
            .pins
            .lock()
            .map_err(|_| err(DM_ERR_FAILED, "pin state unavailable"))?;
        let now = oxh_kal::clock::elapsed(self.epoch);
        let pin = p
            .issue(now)
            .map_err(|e| err(e.code(), format!("cannot issue a PIN: {e}")))?;
        let left = p.current(now).map(|(_, left)| left.as_secs()).unwrap_or(60);
        Ok((pin, left))
    }

    /// Devices seen on the network (mDNS), and static peers that answered a probe. Each is
    /// listed under its advert id of the moment; a trusted one is recognised by its advert key
    /// and, when it sends no name, shows the name it bound with.
    pub fn discovered(&self) -> Vec<SeenView> {
        let resolver = self.resolver();
        let name_of = |name: Option<&str>, t: Option<&TrustedDevice>| {
            name.map(str::to_string)
                .or_else(|| t.map(|t| t.name.clone()))
                .unwrap_or_else(|| oxh_devauth::DEFAULT_NAME.to_string())
        };
        let mut out: Vec<SeenView> = Vec::new();
        if let Some(d) = &self.discovery {
            out.extend(d.snapshot().into_iter().filter_map(|s| {
                let a = s.advert.clone()?;
                let t = resolver.resolve(&a.id);
                let key = t.map(|t| t.public_key);
                Some(SeenView {
                    id: a.id.to_hex(),
                    name: name_of(a.name.as_deref(), t),
                    device_type: a.device_type_name.clone(),
                    addresses: s
                        .addresses
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, s.port).to_string())
                        .collect(),
                    trusted: key.is_some(),
                    online: key.is_some_and(|k| self.bus.is_online(&k)),
                })
            }));
        }
        let statics: Vec<(SocketAddr, binding::ProbeInfo)> = self
            .statics
            .lock()
            .map(|s| {
                s.iter()
                    .filter_map(|(a, p)| p.info.clone().map(|i| (*a, i)))
                    .collect()
            })
            .unwrap_or_default();
        for (addr, p) in statics {
            if out.iter().any(|v| v.id == p.id) {
                continue;
            }
            let t = AdvertId::from_hex(&p.id).and_then(|id| resolver.resolve(&id));
            let key = t.map(|t| t.public_key);
            out.push(SeenView {
                id: p.id.clone(),
                name: name_of(p.name.as_deref(), t),
                device_type: p.device_type,
                addresses: vec![addr.to_string()],
                trusted: key.is_some(),
                online: key.is_some_and(|k| self.bus.is_online(&k)),
            });
        }
        out
    }

    fn resolve_target(&self, id: &str) -> Result<SocketAddr, RemoteError> {
        if let Ok(a) = id.parse::<SocketAddr>() {
            return Ok(a);
        }
        let seen = self.discovered();
        let hits: Vec<_> = seen
            .iter()
            .filter(|s| s.id.starts_with(id) || s.name == id)
            .collect();
        match hits.as_slice() {
            [one] => one
                .addresses
                .first()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| err(DM_ERR_FAILED, format!("device {id} has no address"))),
            [] => Err(err(
                oxh_ipc::code::INVALID_PARAM,
                format!(
                    "no discovered device matches {id:?}; see `oxh device discover`, or give HOST:PORT"
                ),
            )),
            _ => Err(err(
                oxh_ipc::code::INVALID_PARAM,
                format!("{id:?} matches several devices; give more of the id"),
            )),
        }
    }

    /// Binds with a device using its PIN (initiator side).
    pub async fn bind(self: &Arc<Self>, id: &str, pin: &str) -> Result<TrustedView, RemoteError> {
        let pin: Pin = pin
            .parse()
            .map_err(|_| err(oxh_ipc::code::INVALID_PARAM, "the PIN must be 6 digits"))?;
        let addr = self.resolve_target(id)?;
        let t0 = Instant::now();
        let peer = binding::initiate(&self.bus, addr, self.me.clone(), pin, self.epoch)
            .await
            .map_err(|e: BindFailure| err(e.code(), format!("bind failed: {e}")))?;
        let t = peer.to_trusted(now_secs());
        self.trust
            .add(&t)
            .map_err(|e| err(e.code(), format!("cannot store the trusted device: {e}")))?;
        tracing::info!(
            tag = "devicemanager",
            public_name = t.name.as_str(),
            public_ms = t0.elapsed().as_millis() as u64,
            "bound with a device"
        );
        // Go online right away.
        if let Ok(mut c) = self.candidates.lock() {
            c.insert(
                addr,
                Candidate {
                    expected: Some(t.public_key),
                    next_try: Instant::now(),
                    backoff: BACKOFF_MIN,
                    in_flight: false,
                    key: Some(t.public_key),
                },
            );
        }
        let online = match self.bus.connect(addr, Some(t.public_key)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(tag = "devicemanager", "bound, but not connected yet: {e}");
                false
            }
        };
        Ok(TrustedView {
            udid: t.udid.clone(),
            name: t.name.clone(),
            device_type: t.device_type.clone(),
            online,
            network_id: self
                .bus
                .online()
                .into_iter()
                .find(|n| n.udid == t.udid)
                .map(|n| n.network_id),
        })
    }

    /// Trusted devices, with online state.
    pub fn trusted(&self) -> Vec<TrustedView> {
        let online: HashMap<String, NodeInfo> = self
            .bus
            .online()
            .into_iter()
            .map(|n| (n.udid.clone(), n))
            .collect();
        self.trust
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let n = online.get(&t.udid);
                TrustedView {
                    udid: t.udid.clone(),
                    name: n.map(|n| n.name.clone()).unwrap_or(t.name.clone()),
                    device_type: t.device_type.clone(),
                    online: n.is_some(),
                    network_id: n.map(|n| n.network_id.clone()),
                }
            })
            .collect()
    }

    /// Removes trust with a device, on the peer too when it is online.
    pub async fn unbind(&self, id: &str) -> Result<(), RemoteError> {
        let list = self.trust.list().unwrap_or_default();
        let online = self.bus.online();
        let hits: Vec<_> = list
            .iter()
            .filter(|t| {
                t.udid == id
                    || t.udid.starts_with(id) && id.len() >= 6
                    || t.name == id
                    || online
                        .iter()
                        .any(|n| n.udid == t.udid && n.network_id == id)
            })
            .collect();
        let t = match hits.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(err(
                    oxh_ipc::code::INVALID_PARAM,
                    format!("no trusted device matches {id:?}"),
                ));
            }
            _ => {
                return Err(err(
                    oxh_ipc::code::INVALID_PARAM,
                    format!("{id:?} matches several trusted devices"),
                ));
            }
        };
        self.trust
            .remove(&t.udid)
            .map_err(|e| err(e.code(), e.to_string()))?;
        self.bus.send_unbind(&t.public_key).await;
        self.dbinder.device_unbound(&t.udid);
        self.forget_candidates_of(&t.udid);
        Ok(())
    }

    /// Subscribes a client to state events.
    pub fn subscribe_state(&self, conn: ConnHandle, sub: u64) {
        if let Ok(mut s) = self.state_subs.lock() {
            s.push((conn, sub));
        }
    }

    // ---- sockets ----

    fn forward(conn: ConnHandle, sub: u64) -> crate::transport::session::EventTx {
        crate::transport::session::EventTx::Sink(Arc::new(IpcSink { conn, sub }))
    }

    /// Listen on a session name for a client.
    pub fn listen(&self, conn: &ConnHandle, name: &str, sub: u64) -> Result<(), RemoteError> {
        self.sessions
            .listen(name, conn.id(), Self::forward(conn.clone(), sub))
            .map_err(session_err)
    }

    /// Open a socket for a client.
    pub async fn bind_socket(
        &self,
        conn: &ConnHandle,
        a: crate::api::BindSocketArgs,
    ) -> Result<u64, RemoteError> {
        self.sessions
            .bind(
                &a.network_id,
                &a.name,
                &a.own_name,
                a.data_type,
                conn.id(),
                Self::forward(conn.clone(), a.sub),
            )
            .await
            .map_err(session_err)
    }

    /// Send on a client's socket; bytes may come in parts, which are kept as they arrived
    /// (not copied together) and handed to the socket with the last one.
    pub async fn send(
        &self,
        conn: &ConnHandle,
        socket: u64,
        kind: crate::proto::DataType,
        data: bytes::Bytes,
        more: bool,
    ) -> Result<(), RemoteError> {
        let key = (conn.id(), socket);
        let parts = {
            let mut p = self
                .pending_bytes
                .lock()
                .map_err(|_| err(DM_ERR_FAILED, "poisoned"))?;
            let parts = p.entry(key).or_default();
            let have: usize = parts.iter().map(|b| b.len()).sum();
            if have + data.len() > crate::transport::session::MAX_BYTES {
                p.remove(&key);
                return Err(err(
                    401,
                    format!(
                        "bytes exceed the {}-byte (4 MiB) limit",
                        crate::transport::session::MAX_BYTES
                    ),
                ));
            }
            parts.push(data);
            if more {
                return Ok(());
            }
            p.remove(&key).unwrap_or_default()
        };
        self.sessions
            .send_parts(socket, conn.id(), kind, parts)
            .await
            .map_err(session_err)
    }

    /// One step of sending a file from a client that reads the file itself.
    pub async fn send_file(
        &self,
        conn: &ConnHandle,
        a: crate::api::SendFileArgs,
    ) -> Result<(), RemoteError> {
        self.sessions
            .send_file(a.socket, conn.id(), a.op)
            .await
            .map_err(session_err)
    }

    /// One step of sending a file through the caller's descriptor: begins it (when `a.name`
    /// is set), then reads, hashes and sends it up to `a.upto`; at its end, sends the hash
    /// and waits for the receiver's verdict. Reading and hashing run on a blocking thread
    /// while the previous chunk goes out.
    pub async fn send_file_fd(
        &self,
        conn: &ConnHandle,
        a: crate::api::SendFileFdArgs,
        fd: std::os::fd::OwnedFd,
    ) -> Result<crate::api::FileFdSent, RemoteError> {
        use crate::proto::{FileHasher, FileOp, MAX_FILE_CHUNK};
        let file = std::fs::File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(err(
                oxh_ipc::code::INVALID_PARAM,
                "SendFile needs a regular file",
            ));
        }
        let (owner, socket) = (conn.id(), a.socket);
        let key = (owner, socket);
        let lock_err = || err(DM_ERR_FAILED, "poisoned");
        if let Some(name) = a.name {
            let size = file
                .metadata()
                .map_err(|e| {
                    err(
                        oxh_ipc::code::INVALID_PARAM,
                        format!("cannot read the file: {e}"),
                    )
                })?
                .len();
            self.sessions
                .send_file(socket, owner, FileOp::Begin { name, size })
                .await
                .map_err(session_err)?;
            let st = FdSend {
                size,
                sent: 0,
                hash: FileHasher::new(),
            };
            self.fd_sends
                .lock()
                .map_err(|_| lock_err())?
                .insert(key, st);
        }
        let FdSend { size, sent, hash } = self
            .fd_sends
            .lock()
            .map_err(|_| lock_err())?
            .remove(&key)
            .ok_or_else(|| err(oxh_ipc::code::INVALID_PARAM, "no file begun on this socket"))?;
        let upto = a.upto.clamp(sent, size);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut hash = hash;
            let mut at = sent;
            while at < upto {
                let n = (upto - at).min(MAX_FILE_CHUNK as u64) as usize;
                let buf = oxh_kal::read_exact_at(&file, n, at)?;
                hash.update(&buf);
                at += n as u64;
                if tx.blocking_send(buf).is_err() {
                    break;
                }
            }
            Ok::<_, std::io::Error>((hash, at))
        });
        let mut done = sent;
        let mut failed = None;
        while let Some(buf) = rx.recv().await {
            let n = buf.len() as u64;
            let op = FileOp::Data {
                offset: done,
                data: buf,
            };
            if let Err(e) = self.sessions.send_file(socket, owner, op).await {
                failed = Some(session_err(e));
                break;
            }
            done += n;
        }
        drop(rx);
        let read = reader.await;
        let hash = match (failed, read) {
            (None, Ok(Ok((hash, at)))) if at == done => hash,
            (failed, read) => {
                let e = failed.unwrap_or_else(|| match read {
                    Ok(Err(e)) => err(
                        oxh_ipc::code::INVALID_PARAM,
                        format!("cannot read the file: {e}"),
                    ),
                    _ => err(DM_ERR_FAILED, "file reader failed"),
                });
                let reason = e.message.clone();
                let _ = self
                    .sessions
                    .send_file(socket, owner, FileOp::Abort { reason })
                    .await;
                return Err(e);
            }
        };
        if done < size {
            let st = FdSend {
                size,
                sent: done,
                hash,
            };
            self.fd_sends
                .lock()
                .map_err(|_| lock_err())?
                .insert(key, st);
            return Ok(crate::api::FileFdSent {
                sent: done,
                size,
                checksum: None,
            });
        }
        let checksum = hash.finish();
        self.sessions
            .send_file(socket, owner, FileOp::End { checksum })
            .await
            .map_err(session_err)?;
        Ok(crate::api::FileFdSent {
            sent: done,
            size,
            checksum: Some(checksum),
        })
    }

    /// One step of receiving a file into the caller's descriptor (its temp file): writes and
    /// hashes the pieces on a blocking thread while the next ones arrive; at the end, syncs
    /// the file and reports both hashes. The caller checks them, renames, and answers with
    /// [`Softbus::file_result`].
    pub async fn recv_file_fd(
        &self,
        conn: &ConnHandle,
        a: crate::api::RecvFileFdArgs,
        fd: std::os::fd::OwnedFd,
    ) -> Result<crate::api::FileFdReceived, RemoteError> {
        use crate::api::FileFdReceived;
        use crate::proto::{FileHasher, FilePiece};
        let file = std::fs::File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(err(
                oxh_ipc::code::INVALID_PARAM,
                "RecvFile needs a regular file",
            ));
        }
        let (owner, socket) = (conn.id(), a.socket);
        let key = (owner, socket);
        let lock_err = || err(DM_ERR_FAILED, "poisoned");
        let state = self.fd_recvs.lock().map_err(|_| lock_err())?.remove(&key);
        // The first step's descriptor is the one written through; later steps pass the same
        // temp file again, and the writer keeps what it gathered between them. A state left
        // from a file whose steps stopped early belongs to another file: never write into it.
        let same_file = |w: &oxh_kal::direct::SeqWriter| {
            use std::os::unix::fs::MetadataExt;
            match (w.file().metadata(), file.metadata()) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => false,
            }
        };
        let (writer, hash) = match state {
            Some(FdRecv { writer, hash }) if same_file(&writer) => (writer, hash),
            _ => (oxh_kal::direct::SeqWriter::new(file, 0), FileHasher::new()),
        };
        let got = writer.position();
        let mut hash = hash;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        // The writing thread only copies and writes (direct writes block for the device);
        // the hash is taken here, as each piece arrives and is still in cache.
        let writer = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(d) = rx.blocking_recv() {
                writer.write(&d)?;
            }
            Ok::<_, std::io::Error>(writer)
        });
        let mut received = got;
        let mut write_failed = false;
        let outcome = loop {
            if received >= a.upto {
                break None;
            }
            match self.sessions.recv_file(socket, owner).await {
                Ok(FilePiece::Data(d)) => {
                    received += d.len() as u64;
                    hash.update(&d);
                    if !write_failed && tx.send(d).await.is_err() {
                        // The writer failed; keep draining the file, its error comes at the end.
                        write_failed = true;
                    }
                }
                Ok(end @ FilePiece::End { .. }) => break Some(Ok(end)),
                Ok(FilePiece::Broken { reason }) => break Some(Ok(FilePiece::Broken { reason })),
                Err(e) => break Some(Err(session_err(e))),
            }
        };
        drop(tx);
        let written = writer.await;
        match outcome {
            None => match written {
                Ok(Ok(writer)) => {
                    let st = FdRecv { writer, hash };
                    self.fd_recvs
                        .lock()
                        .map_err(|_| lock_err())?
                        .insert(key, st);
                    Ok(FileFdReceived::Progress { received })
                }
                // Keep draining on later steps, so that the end reports the error.
                Ok(Err(e)) => Err(err(DM_ERR_FAILED, format!("cannot write the file: {e}"))),
                Err(_) => Err(err(DM_ERR_FAILED, "file writer failed")),
            },
            Some(Err(e)) => Err(e),
            Some(Ok(FilePiece::Broken { reason })) => Ok(FileFdReceived::Broken { reason }),
            Some(Ok(FilePiece::End { checksum, seq })) => {
                let synced = match written {
                    Ok(Ok(writer)) => tokio::task::spawn_blocking(move || {
                        writer.finish()?.sync_all().map(|_| hash.finish())
                    })
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|r| r),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                };
                let (actual, error) = match synced {
                    Ok(h) => (Some(h), None),
                    Err(e) => (None, Some(format!("cannot write the file: {e}"))),
                };
                Ok(FileFdReceived::End {
                    seq,
                    checksum,
                    actual,
                    error,
                    received,
                })
            }
            Some(Ok(FilePiece::Data(_))) => Err(err(DM_ERR_FAILED, "unexpected file piece")),
        }
    }

    /// The next piece of a file arriving on a client's socket.
    pub async fn recv_file(
        &self,
        conn: &ConnHandle,
        socket: u64,
    ) -> Result<crate::api::FilePiece, RemoteError> {
        self.sessions
            .recv_file(socket, conn.id())
            .await
            .map_err(session_err)
    }

    /// A receiving client's verdict on a file.
    pub async fn file_result(
        &self,
        conn: &ConnHandle,
        a: crate::api::FileResultArgs,
    ) -> Result<(), RemoteError> {
        self.sessions
            .file_result(a.socket, conn.id(), a.seq, a.error)
            .await
            .map_err(session_err)
    }

    /// One unreliable stream frame on a client's socket.
    pub fn send_stream(
        &self,
        conn: &ConnHandle,
        a: &crate::api::SendStreamArgs,
    ) -> Result<(), RemoteError> {
        self.sessions
            .send_stream(a.socket, conn.id(), &a.data)
            .map_err(session_err)
    }

    /// The largest stream frame a client's socket takes now.
    pub fn max_stream(&self, conn: &ConnHandle, socket: u64) -> Result<usize, RemoteError> {
        self.sessions
            .max_stream(socket, conn.id())
            .map_err(session_err)
    }

    /// Close a client's socket.
    pub async fn shutdown_socket(&self, conn: &ConnHandle, socket: u64) -> Result<(), RemoteError> {
        self.sessions
            .shutdown(socket, conn.id())
            .await
            .map_err(session_err)
    }

    /// A client is gone: its listeners, sockets and subscriptions go too.
    pub fn client_died(&self, conn: &ConnHandle) {
        self.sessions.forget_owner(conn.id());
        if let Ok(mut p) = self.pending_bytes.lock() {
            p.retain(|(o, _), _| *o != conn.id());
        }
        if let Ok(mut f) = self.fd_sends.lock() {
            f.retain(|(o, _), _| *o != conn.id());
        }
        if let Ok(mut f) = self.fd_recvs.lock() {
            f.retain(|(o, _), _| *o != conn.id());
        }
        if let Ok(mut s) = self.state_subs.lock() {
            s.retain(|(c, _)| c.id() != conn.id());
        }
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
        let c = self.candidates.lock().map(|c| c.len()).unwrap_or(0);
        out.push_str(&format!("  connection candidates: {c}\n"));
        out.push_str(&self.sessions.dump());
        out
    }

    /// Closes the bus and stops discovery.
    pub fn shutdown(&self) {
        self.bus.shutdown();
    }
}

/// Socket events of one subscription, written to the owner's IPC connection by the socket's
/// reader itself (no forwarding task: one task wake-up less per message).
struct IpcSink {
    conn: ConnHandle,
    sub: u64,
}

/// postcard's variant indexes in [`SocketEventView`] of the events encoded by hand.
const VIEW_MESSAGE: u8 = 1;
const VIEW_BYTES_PART: u8 = 2;
const VIEW_STREAM: u8 = 5;

/// The head of a [`SocketEventView`] carrying `data` (variant, socket, data length); `data`
/// and, for bytes parts, the `last` flag follow. Encoded by hand so that payloads are copied
/// once, into the IPC frame, instead of into a view and then its encoding.
fn view_head(tag: u8, socket: u64, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.push(tag);
    crate::proto::put_varint(socket, &mut h);
    crate::proto::put_varint(len as u64, &mut h);
    h
}

impl IpcSink {
    async fn push_data(&self, tag: u8, socket: u64, data: &[u8]) -> bool {
        let head = view_head(tag, socket, data.len());
        self.conn
            .push_event_parts_wait(self.sub, &[&head, data])
            .await
    }

    async fn push_bytes(&self, socket: u64, data: &[u8]) -> bool {
        if data.is_empty() {
            let head = view_head(VIEW_BYTES_PART, socket, 0);
            return self
                .conn
                .push_event_parts_wait(self.sub, &[&head, &[1]])
                .await;
        }
        let n = data.len().div_ceil(crate::api::IPC_PART);
        for (i, part) in data.chunks(crate::api::IPC_PART).enumerate() {
            let head = view_head(VIEW_BYTES_PART, socket, part.len());
            let last = [u8::from(i + 1 == n)];
            if !self
                .conn
                .push_event_parts_wait(self.sub, &[&head, part, &last])
                .await
            {
                return false;
            }
        }
        true
    }

    fn view(ev: SocketEvent) -> Option<SocketEventView> {
        Some(match ev {
            SocketEvent::Bind {
                socket,
                peer_name,
                peer_network_id,
                peer_device,
                ..
            } => SocketEventView::Bind {
                socket,
                peer_name,
                peer_network_id,
                peer_device,
            },
            SocketEvent::FileBegin { socket, name, size } => {
                SocketEventView::FileBegin { socket, name, size }
            }
            SocketEvent::FileRefused {
                socket,
                name,
                reason,
            } => SocketEventView::FileRefused {
                socket,
                name,
                reason,
            },
            SocketEvent::Shutdown { socket, reason } => {
                SocketEventView::Shutdown { socket, reason }
            }
            SocketEvent::Message { .. }
            | SocketEvent::Bytes { .. }
            | SocketEvent::Stream { .. } => {
                return None;
            }
        })
    }
}

#[async_trait::async_trait]
impl crate::transport::session::EventSink for IpcSink {
    async fn deliver(&self, ev: SocketEvent) -> bool {
        match ev {
            SocketEvent::Message { socket, data } => {
                self.push_data(VIEW_MESSAGE, socket, &data).await
            }
            SocketEvent::Stream { socket, data } => {
                self.push_data(VIEW_STREAM, socket, &data).await
            }
            SocketEvent::Bytes { socket, data } => self.push_bytes(socket, &data).await,
            other => match Self::view(other) {
                Some(v) => self.conn.push_event_wait(self.sub, &encode(&v)).await,
                None => true,
            },
        }
    }

    fn try_deliver(&self, ev: SocketEvent) -> bool {
        match ev {
            SocketEvent::Stream { socket, data } => {
                let mut d = view_head(VIEW_STREAM, socket, data.len());
                d.extend_from_slice(&data);
                self.conn.push_event(self.sub, &d)
            }
            other => match Self::view(other) {
                Some(v) => self.conn.push_event(self.sub, &encode(&v)),
                None => false,
            },
        }
    }

    fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }
}

fn session_err(e: SessionError) -> RemoteError {
    let code = match &e {
        SessionError::Invalid(_) => 401,
        // SOFTBUS_* failures surface as OpenHarmony's generic soft bus error.
        _ => 32_390_000,
    };
    RemoteError::new(code, e.to_string())
}

#[cfg(test)]
mod view_tests {
    use super::*;

    #[test]
    fn hand_encoded_views_are_postcards() {
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let socket = 1u64 << 40;
        let mut m = view_head(VIEW_MESSAGE, socket, data.len());
        m.extend_from_slice(&data);
        assert_eq!(
            m,
            encode(&SocketEventView::Message {
                socket,
                data: data.clone()
            })
        );
        let mut s = view_head(VIEW_STREAM, socket, data.len());
        s.extend_from_slice(&data);
        assert_eq!(
            s,
            encode(&SocketEventView::Stream {
                socket,
                data: data.clone()
            })
        );
        for last in [false, true] {
            let mut b = view_head(VIEW_BYTES_PART, socket, data.len());
            b.extend_from_slice(&data);
            b.push(u8::from(last));
            assert_eq!(
                b,
                encode(&SocketEventView::BytesPart {
                    socket,
                    data: data.clone(),
                    last
                })
            );
        }
    }
}
