//! The service's adapter over the bus centre ([`crate::center`]): what it needs from the
//! service, and online/offline state events for its clients.
//!
//! Every trusted device that is discovered (mDNS, its rotating advert id resolved against the
//! advert keys of trusted devices), named as a static peer, or that was online before, is a
//! connection candidate. This file hands the core the first two and the trusted set; the core
//! (driven by the bus) dials candidates that are not online, with exponential backoff per
//! address, so a device that comes back goes ONLINE again without re-binding. It also probes
//! static peers for `discover`, learns advert keys, and publishes state events.

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

/// A static peer and what its last probe said.
#[derive(Debug, Default)]
pub(super) struct StaticPeer {
    pub(super) info: Option<binding::ProbeInfo>,
    pub(super) last_probe: Option<Instant>,
    pub(super) in_flight: bool,
}

/// How often a static peer is probed again (its name may change).
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// How often mDNS sightings and the trusted set are handed to the bus centre's core, and
/// static peers considered for a probe.
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
        self.bus.center(|c, now| c.static_peer(addr, now));
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

    /// Hands the bus centre's core the trusted set and the trusted devices mDNS sees; the core
    /// decides what to dial.
    pub(super) fn reconcile(self: &Arc<Self>) {
        self.trust_changed();
        if let Some(d) = &self.discovery {
            let resolver = self.resolver();
            let seen: Vec<(SocketAddr, [u8; 32])> = d
                .snapshot()
                .into_iter()
                .filter_map(|seen| {
                    let key = seen.id().and_then(|id| resolver.resolve(&id))?.public_key;
                    let ip = seen.addresses.first()?;
                    Some((SocketAddr::new(*ip, seen.port), key))
                })
                .collect();
            self.bus.center(|c, now| {
                for (addr, key) in seen {
                    c.discovered(addr, key, now);
                }
            });
        }
        self.probe_statics();
    }

    /// Tells the bus centre who is trusted now.
    pub(super) fn trust_changed(&self) {
        let trusted = self.snapshot.keys();
        self.bus.center(|c, now| c.set_trusted(trusted, now));
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

    fn view_of(&self, info: &NodeInfo, online: bool) -> TrustedView {
        TrustedView::new(
            info.udid.clone(),
            info.name.clone(),
            info.device_type_id,
            online,
            online.then(|| info.network_id.clone()),
        )
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
            BusEvent::Online(i) => StateEvent::Online(self.view_of(i, true)),
            // OFFLINE names the networkId that went away, as OpenHarmony's callback does.
            BusEvent::Offline(i) => StateEvent::Offline(TrustedView {
                network_id: Some(i.network_id.clone()),
                ..self.view_of(i, false)
            }),
            BusEvent::InfoChanged(i) => StateEvent::InfoChanged(self.view_of(i, true)),
            BusEvent::Unbound { info, key } => {
                let _ = self.trust.remove(&info.udid);
                self.dbinder.device_unbound(&info.udid);
                self.forget(key);
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

    /// Stops dialing a device whose trust ended.
    pub(super) fn forget(&self, key: &[u8; 32]) {
        self.bus.center(|c, _| c.forget(key));
    }

    /// Subscribes a client to state events.
    pub fn subscribe_state(&self, conn: ConnHandle, sub: u64) {
        if let Ok(mut s) = self.state_subs.lock() {
            s.push((conn, sub));
        }
    }
}
