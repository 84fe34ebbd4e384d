//! The mDNS adapter: advertises our [`Advert`] and feeds what `mdns-sd` browses into a
//! [`DeviceTable`], publishing its events on a tokio broadcast channel.
//!
//! `mdns-sd` runs its own thread; a second thread here drains its browse channel, so nothing
//! needs a tokio runtime and nothing blocks one (only [`Discovery::shutdown`] waits, bounded).

use super::advert::{Advert, SERVICE_TYPE};
use super::table::{DeviceTable, DiscoveryEvent, SeenDevice, TableError};
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it sees `Lagged`.
pub const EVENT_CAPACITY: usize = 256;
/// How long shutdown waits for the goodbye and for mdns-sd's thread.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Which network interfaces discovery uses, both to advertise and to browse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface that is up, loopback included (mdns-sd's default).
    All,
    /// Only loopback (127.0.0.1 and ::1). Linux's `lo` has no MULTICAST flag by default, and
    /// then nothing is found; see the crate's tests for what works.
    Loopback,
    /// Only these interfaces, by name (e.g. a veth inside a test's network namespace).
    Named(Vec<String>),
}

impl Interfaces {
    fn if_kinds(&self) -> Vec<IfKind> {
        match self {
            Interfaces::All => vec![IfKind::All],
            Interfaces::Loopback => vec![IfKind::LoopbackV4, IfKind::LoopbackV6],
            Interfaces::Named(names) => names.iter().map(|n| IfKind::Name(n.clone())).collect(),
        }
    }
}

/// Everything [`Discovery::start`] needs.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// What we advertise.
    pub advert: Advert,
    /// Where we advertise and browse.
    pub interfaces: Interfaces,
    /// Addresses to publish; empty means those of the selected interfaces, kept current.
    pub addresses: Vec<IpAddr>,
    /// The mDNS UDP port: 5353 except in tests that want isolation from real responders.
    pub mdns_port: u16,
    /// Probe for name conflicts before announcing (RFC 6762 §8.1). Off by default: probing
    /// delays the first announcement by about 750 ms, which breaks the 1 s discovery target,
    /// and our instance names carry 32 bits of a 128-bit id that is random to anyone else,
    /// so a conflict is as rare as a 32-bit collision.
    pub probe: bool,
}

impl DiscoveryConfig {
    /// All interfaces, their addresses, port 5353, no probing.
    pub fn new(advert: Advert) -> Self {
        DiscoveryConfig {
            advert,
            interfaces: Interfaces::All,
            addresses: Vec::new(),
            mdns_port: mdns_sd::MDNS_PORT,
            probe: false,
        }
    }
}

/// Errors from discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The mDNS daemon refused a command or could not start (its message; the mdns-sd type
    /// stays out of our API).
    #[error("mDNS: {0}")]
    Mdns(String),
    /// An observation the device table refused.
    #[error(transparent)]
    Table(#[from] TableError),
    /// An interface list that selects nothing.
    #[error("no interface selected")]
    NoInterfaces,
    /// A thread could not be started.
    #[error("cannot start discovery thread: {0}")]
    Thread(std::io::Error),
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError::Mdns(e.to_string())
    }
}

struct Shared {
    table: Mutex<DeviceTable>,
    events: broadcast::Sender<DiscoveryEvent>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, DeviceTable> {
        // The table's invariants hold between calls, so a panic elsewhere leaves it usable.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn publish(&self, ev: Option<DiscoveryEvent>) {
        if let Some(ev) = ev {
            tracing::debug!(?ev, "discovery event");
            // No subscribers is not an error.
            let _ = self.events.send(ev);
        }
    }
}

struct Registered {
    advert: Advert,
    fullname: String,
}

/// A running discovery: advertising our advert and tracking other devices.
pub struct Discovery {
    daemon: ServiceDaemon,
    shared: Arc<Shared>,
    config: DiscoveryConfig,
    registered: Mutex<Registered>,
    worker: Option<JoinHandle<()>>,
    stopped: bool,
}

impl Discovery {
    /// Starts browsing, then advertises (browse first, so that nothing announced in between is
    /// missed). Safe to call inside or outside a tokio runtime; it does not block.
    pub fn start(config: DiscoveryConfig) -> Result<Discovery, DiscoveryError> {
        if matches!(&config.interfaces, Interfaces::Named(n) if n.is_empty()) {
            return Err(DiscoveryError::NoInterfaces);
        }
        let daemon = ServiceDaemon::new_with_port(config.mdns_port)?;
        let started = Self::start_with(daemon.clone(), config);
        if started.is_err() {
            // Best effort: the error we return is the interesting one.
            let _ = daemon.shutdown();
        }
        started
    }

    fn start_with(
        daemon: ServiceDaemon,
        config: DiscoveryConfig,
    ) -> Result<Discovery, DiscoveryError> {
        if config.interfaces != Interfaces::All {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(config.interfaces.if_kinds())?;
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            table: Mutex::new(DeviceTable::new(config.advert.id)),
            events,
        });

        let browse = daemon.browse(SERVICE_TYPE)?;
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("oxh-discovery".into())
            .spawn(move || {
                // Ends when mdns-sd drops the sender: on shutdown, or if the daemon dies.
                while let Ok(ev) = browse.recv() {
                    handle(&worker_shared, ev);
                }
            })
            .map_err(DiscoveryError::Thread)?;

        let info = service_info(&config, &config.advert)?;
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        tracing::info!(instance = %fullname, "discovery started");
        Ok(Discovery {
            daemon,
            shared,
            registered: Mutex::new(Registered {
                advert: config.advert.clone(),
                fullname,
            }),
            config,
            worker: Some(worker),
            stopped: false,
        })
    }

    /// Events from now on. Found/Updated/Lost for mDNS and static peers alike.
    pub fn subscribe(&self) -> broadcast::Receiver<DiscoveryEvent> {
        self.shared.events.subscribe()
    }

    /// The devices seen so far (never ourselves), then pending static peers.
    pub fn snapshot(&self) -> Vec<SeenDevice> {
        self.shared.table().snapshot()
    }

    /// What we advertise now.
    pub fn advert(&self) -> Advert {
        self.registered().advert.clone()
    }

    /// Re-announces with a changed advert (a new name, capabilities or port); peers see one
    /// `Updated`. A new id (the next epoch) or device type changes the instance name: then the
    /// new instance is announced before the old one says goodbye, and peers see the old device
    /// Lost and a new one Found.
    pub fn update_advert(&self, advert: Advert) -> Result<(), DiscoveryError> {
        self.modify_advert(|a| *a = advert)
    }

    /// Changes what we advertise with `f` and re-announces, under one lock, so that two
    /// changes at once (a new epoch's id and an hdc port) do not undo each other.
    pub fn modify_advert(&self, f: impl FnOnce(&mut Advert)) -> Result<(), DiscoveryError> {
        let mut reg = self.registered();
        let mut advert = reg.advert.clone();
        f(&mut advert);
        if advert == reg.advert {
            return Ok(());
        }
        // Ours from now on, before anyone can hear it announced.
        self.shared.table().set_own(advert.id);
        let info = service_info(&self.config, &advert)?;
        let fullname = info.get_fullname().to_string();
        self.daemon.register(info)?;
        if !fullname.eq_ignore_ascii_case(&reg.fullname) {
            // The receiver tells when the goodbye went out; nobody needs to wait for it.
            let _ = self.daemon.unregister(&reg.fullname)?;
        }
        *reg = Registered { advert, fullname };
        Ok(())
    }

    /// Records a peer reachable at `addr` (HOST:PORT of its QUIC endpoint) on a network
    /// without multicast. It shows in [`Discovery::snapshot`] without an advert until
    /// [`Discovery::update_static`]. Returns false if it was already recorded.
    pub fn add_static(&self, addr: SocketAddr) -> Result<bool, DiscoveryError> {
        Ok(self.shared.table().add_static(addr)?)
    }

    /// The advert that static peer `addr` gave when probed; publishes Found or Updated.
    pub fn update_static(&self, addr: SocketAddr, advert: Advert) -> Result<(), DiscoveryError> {
        let ev = self
            .shared
            .table()
            .update_static(addr, advert, SystemTime::now())?;
        self.shared.publish(ev);
        Ok(())
    }

    /// Forgets static peer `addr`; publishes Lost unless mDNS still sees the device.
    pub fn remove_static(&self, addr: SocketAddr) {
        let ev = self.shared.table().remove_static(addr);
        self.shared.publish(ev);
    }

    /// Says goodbye (so that peers drop us at once rather than at TTL expiry) and stops the
    /// mDNS daemon. Waits at most a few seconds. Dropping a `Discovery` does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let fullname = self.registered().fullname.clone();
        if let Ok(rx) = self.daemon.unregister(&fullname) {
            let _ = rx.recv_timeout(SHUTDOWN_WAIT);
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(SHUTDOWN_WAIT);
        }
        if let Some(w) = self.worker.take() {
            // mdns-sd has exited, so its browse channel is closed and the worker ends.
            let _ = w.join();
        }
        tracing::info!(instance = %fullname, "discovery stopped");
    }

    fn registered(&self) -> MutexGuard<'_, Registered> {
        self.registered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop();
    }
}

fn service_info(config: &DiscoveryConfig, advert: &Advert) -> Result<ServiceInfo, DiscoveryError> {
    let txt = advert.to_txt();
    let mut info = ServiceInfo::new(
        SERVICE_TYPE,
        &advert.instance_name(),
        &advert.host_name(),
        config.addresses.as_slice(),
        advert.port,
        txt.as_slice(),
    )?;
    if config.addresses.is_empty() {
        info = info.enable_addr_auto();
    }
    info.set_interfaces(config.interfaces.if_kinds());
    info.set_requires_probe(config.probe);
    Ok(info)
}

fn handle(shared: &Shared, ev: ServiceEvent) {
    match ev {
        ServiceEvent::ServiceResolved(svc) => {
            let txt = svc.get_properties().iter().map(|p| (p.key(), p.val()));
            let advert = match Advert::from_txt(txt) {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(instance = svc.get_fullname(), error = %e, "ignoring advert");
                    return;
                }
            };
            if advert.port != svc.get_port() {
                tracing::debug!(
                    instance = svc.get_fullname(),
                    txt = advert.port,
                    srv = svc.get_port(),
                    "TXT port differs from SRV port; using SRV"
                );
            }
            let addrs = svc.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
            let ev = shared.table().on_resolved(
                svc.get_fullname(),
                advert,
                addrs,
                svc.get_port(),
                SystemTime::now(),
            );
            shared.publish(ev);
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            let ev = shared.table().on_removed(&fullname);
            shared.publish(ev);
        }
        _ => {}
    }
}

/// One device found by [`browse`]: its advert and the addresses it answered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// What it advertises.
    pub advert: Advert,
    /// Its addresses, sorted.
    pub addrs: Vec<IpAddr>,
}

/// Lists the devices that answer on `interfaces` within `wait`, without advertising anything:
/// for tools on a machine that is not itself a device (`hdc discover` on a developer's PC).
/// Devices whose adverts do not parse are left out; results are sorted by name.
pub fn browse(interfaces: &Interfaces, wait: Duration) -> Result<Vec<Found>, DiscoveryError> {
    if matches!(interfaces, Interfaces::Named(n) if n.is_empty()) {
        return Err(DiscoveryError::NoInterfaces);
    }
    let daemon = ServiceDaemon::new()?;
    let run = || -> Result<Vec<Found>, DiscoveryError> {
        if *interfaces != Interfaces::All {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(interfaces.if_kinds())?;
        }
        let rx = daemon.browse(SERVICE_TYPE)?;
        let deadline = std::time::Instant::now() + wait;
        let mut found: std::collections::BTreeMap<String, Found> = Default::default();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Ok(ev) = rx.recv_timeout(left) else {
                break;
            };
            if let ServiceEvent::ServiceResolved(svc) = ev {
                let txt = svc.get_properties().iter().map(|p| (p.key(), p.val()));
                if let Ok(advert) = Advert::from_txt(txt) {
                    let mut addrs: Vec<IpAddr> =
                        svc.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
                    addrs.retain(super::table::dialable);
                    addrs.sort();
                    addrs.dedup();
                    found.insert(svc.get_fullname().to_string(), Found { advert, addrs });
                }
            }
        }
        let mut v: Vec<Found> = found.into_values().collect();
        v.sort_by(|a, b| a.advert.name.cmp(&b.advert.name));
        Ok(v)
    };
    let r = run();
    let _ = daemon.shutdown();
    r
}
