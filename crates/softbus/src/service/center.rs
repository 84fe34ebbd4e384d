//! The bus center: trusted devices as connection candidates, dialing with backoff, and
//! online/offline state events.
//!
//! Bus center: every trusted device that is discovered (mDNS, its rotating advert id resolved
//! against the advert keys of trusted devices), named as a static peer, or that was online
//! before, is a connection candidate. A reconciler dials
//! candidates that are not online, with exponential backoff per address, so a device that
//! comes back goes ONLINE again without re-binding.

use crate::api::{StateEvent, TrustedView};
use crate::binding;
use crate::discovery::Resolver;
use crate::transport::{BusEvent, NodeInfo};
use oxh_devauth::TrustedDevice;
use oxh_ipc::{ConnHandle, encode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Softbus;

#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) expected: Option<[u8; 32]>,
    pub(super) next_try: Instant,
    pub(super) backoff: Duration,
    pub(super) in_flight: bool,
    /// The key that answered last time (static peers learn it).
    pub(super) key: Option<[u8; 32]>,
}

/// A static peer and what its last probe said.
#[derive(Debug, Default)]
pub(super) struct StaticPeer {
    pub(super) info: Option<binding::ProbeInfo>,
    pub(super) last_probe: Option<Instant>,
    pub(super) in_flight: bool,
}

/// How often a static peer is probed again (its name may change).
const PROBE_EVERY: Duration = Duration::from_secs(10);

pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
pub(super) const RECONCILE_EVERY: Duration = Duration::from_millis(100);

impl Softbus {
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
    pub(super) fn resolver(&self) -> Resolver<TrustedDevice> {
        let trusted = self.trust.list().unwrap_or_default();
        Resolver::new(
            self.epochs.at(SystemTime::now()),
            trusted
                .into_iter()
                .filter_map(|t| t.advert_key.map(|k| (t, k))),
        )
    }

    /// Dials every candidate that should be online and is not.
    pub(super) fn reconcile(self: &Arc<Self>) {
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

    pub(super) fn on_bus_event(self: &Arc<Self>, ev: BusEvent) {
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

    pub(super) fn forget_candidates_of(&self, udid: &str) {
        if let Ok(mut c) = self.candidates.lock() {
            c.retain(|_, v| v.key.is_none_or(|k| oxh_devauth::udid_of(&k) != udid));
        }
    }

    /// Subscribes a client to state events.
    pub fn subscribe_state(&self, conn: ConnHandle, sub: u64) {
        if let Ok(mut s) = self.state_subs.lock() {
            s.push((conn, sub));
        }
    }
}
