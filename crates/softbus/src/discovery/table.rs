//! The table of seen devices and the events its changes produce. Pure: the mDNS adapter and
//! the transport feed it observations and the time; it returns the event to publish.
//!
//! Devices are keyed by their advert's rotating id: when a device moves to a new epoch it
//! shows up as a new device, and its old instance's goodbye (or expiry) removes the old one.
//! Which entries are bound devices is not the table's business (see `Resolver`).

use super::advert::{Advert, AdvertId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

/// Upper bound on devices kept, so that a flood of forged adverts cannot exhaust memory.
pub const MAX_DEVICES: usize = 1024;
/// Upper bound on static peers.
pub const MAX_STATIC_PEERS: usize = 256;

/// One device as we last saw it, or a static peer not yet probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDevice {
    /// What the device advertises; `None` only for a static peer whose advert is not known yet.
    pub advert: Option<Advert>,
    /// The full DNS-SD instance name, when seen over mDNS.
    pub instance: Option<String>,
    /// The address it was added under with [`DeviceTable::add_static`], if any.
    pub static_addr: Option<SocketAddr>,
    /// Where to reach it.
    pub addresses: Vec<IpAddr>,
    /// The QUIC port to connect to (the SRV port, or the static address's port).
    pub port: u16,
    /// When it was last heard of; `None` for a static peer not yet probed.
    pub last_seen: Option<SystemTime>,
}

impl SeenDevice {
    /// The device's advert id, once its advert is known.
    pub fn id(&self) -> Option<AdvertId> {
        self.advert.as_ref().map(|a| a.id)
    }
}

/// A change in the table, published to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A device not in the table before.
    Found(SeenDevice),
    /// A known device changed its advert, addresses, port or how we know it.
    Updated(SeenDevice),
    /// A device left (mDNS goodbye or expiry) and is not a static peer; its last state.
    Lost(SeenDevice),
}

/// Why the table refused an observation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// `update_static` for an address never given to `add_static`.
    #[error("{0} is not a static peer; add it first")]
    NotStatic(SocketAddr),
    /// The advert is our own (the address leads back to this device).
    #[error("{0} is this device itself")]
    OwnAdvert(SocketAddr),
    /// A bound is reached.
    #[error("too many {0}")]
    Full(&'static str),
}

#[derive(Debug, Clone)]
struct Entry {
    advert: Advert,
    instance: Option<String>,
    mdns_addrs: Vec<IpAddr>,
    mdns_port: u16,
    static_addr: Option<SocketAddr>,
    last_seen: SystemTime,
}

impl Entry {
    fn view(&self) -> SeenDevice {
        let mut addresses = self.mdns_addrs.clone();
        let mut port = self.mdns_port;
        if let Some(sa) = self.static_addr {
            if !addresses.contains(&sa.ip()) {
                addresses.push(sa.ip());
            }
            if self.instance.is_none() {
                port = sa.port();
            }
        }
        SeenDevice {
            advert: Some(self.advert.clone()),
            instance: self.instance.clone(),
            static_addr: self.static_addr,
            addresses,
            port,
            last_seen: Some(self.last_seen),
        }
    }
}

/// Whether an address can be dialled as `SocketAddr::new(ip, port)`. An IPv6 link-local
/// address (fe80::/10) cannot: it needs the scope (interface) it was seen on, which an
/// `IpAddr` does not carry, and connecting without one fails ("invalid remote address").
/// mDNS often resolves a device's AAAA record before its A record, so keeping it would make
/// such an address the first (and only) one a caller sees.
pub(super) fn dialable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// Devices by advert id, plus static peers whose advert is still unknown.
#[derive(Debug)]
pub struct DeviceTable {
    /// Our advert ids: this epoch's and the one before, whose announcements may still echo.
    own: [AdvertId; 2],
    devices: BTreeMap<AdvertId, Entry>,
    pending: BTreeSet<SocketAddr>,
}

impl DeviceTable {
    /// An empty table for the device whose advert id is `own` (never listed).
    pub fn new(own: AdvertId) -> Self {
        DeviceTable {
            own: [own, own],
            devices: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }

    /// Our advert moved to id `own`: that one and the one before are ours, never listed.
    pub fn set_own(&mut self, own: AdvertId) {
        if self.own[0] != own {
            self.own = [own, self.own[0]];
        }
        self.devices.remove(&own);
    }

    fn is_own(&self, id: &AdvertId) -> bool {
        self.own.contains(id)
    }

    /// Every device, then every pending static peer.
    pub fn snapshot(&self) -> Vec<SeenDevice> {
        let mut out: Vec<SeenDevice> = self.devices.values().map(Entry::view).collect();
        out.extend(self.pending.iter().map(|sa| SeenDevice {
            advert: None,
            instance: None,
            static_addr: Some(*sa),
            addresses: vec![sa.ip()],
            port: sa.port(),
            last_seen: None,
        }));
        out
    }

    /// An mDNS instance resolved (or re-resolved) to this advert and these addresses.
    pub fn on_resolved(
        &mut self,
        instance: &str,
        advert: Advert,
        mut addrs: Vec<IpAddr>,
        srv_port: u16,
        now: SystemTime,
    ) -> Option<DiscoveryEvent> {
        if self.is_own(&advert.id) {
            return None;
        }
        addrs.retain(dialable);
        addrs.sort();
        addrs.dedup();
        if let Some(e) = self.devices.get_mut(&advert.id) {
            let before = e.view();
            e.advert = advert;
            e.instance = Some(instance.to_string());
            e.mdns_addrs = addrs;
            e.mdns_port = srv_port;
            e.last_seen = now;
            let after = e.view();
            return changed(&before, after);
        }
        if self.devices.len() >= MAX_DEVICES {
            return None;
        }
        let e = Entry {
            instance: Some(instance.to_string()),
            mdns_addrs: addrs,
            mdns_port: srv_port,
            static_addr: None,
            last_seen: now,
            advert,
        };
        let view = e.view();
        self.devices.insert(e.advert.id, e);
        Some(DiscoveryEvent::Found(view))
    }

    /// An mDNS instance went away. A device that is also a static peer stays.
    pub fn on_removed(&mut self, instance: &str) -> Option<DiscoveryEvent> {
        let id = *self
            .devices
            .iter()
            .find(|(_, e)| e.instance.as_deref() == Some(instance))?
            .0;
        let e = self.devices.get_mut(&id)?;
        if e.static_addr.is_some() {
            e.instance = None;
            e.mdns_addrs.clear();
            return Some(DiscoveryEvent::Updated(e.view()));
        }
        let e = self.devices.remove(&id)?;
        Some(DiscoveryEvent::Lost(e.view()))
    }

    /// Records a static peer to be probed. Returns false if it was already known.
    pub fn add_static(&mut self, addr: SocketAddr) -> Result<bool, TableError> {
        if self.pending.contains(&addr)
            || self.devices.values().any(|e| e.static_addr == Some(addr))
        {
            return Ok(false);
        }
        if self.pending.len() >= MAX_STATIC_PEERS {
            return Err(TableError::Full("static peers"));
        }
        self.pending.insert(addr);
        Ok(true)
    }

    /// The transport probed static peer `addr` and got `advert`.
    pub fn update_static(
        &mut self,
        addr: SocketAddr,
        advert: Advert,
        now: SystemTime,
    ) -> Result<Option<DiscoveryEvent>, TableError> {
        let known = self.pending.contains(&addr)
            || self.devices.values().any(|e| e.static_addr == Some(addr));
        if !known {
            return Err(TableError::NotStatic(addr));
        }
        if self.is_own(&advert.id) {
            self.pending.remove(&addr);
            return Err(TableError::OwnAdvert(addr));
        }
        // The address may have moved to another device (a new machine on the old IP).
        let old = self
            .devices
            .iter()
            .find(|(id, e)| e.static_addr == Some(addr) && **id != advert.id)
            .map(|(id, _)| *id);
        if let Some(id) = old
            && let Some(e) = self.devices.get_mut(&id)
        {
            e.static_addr = None;
            if e.instance.is_none() {
                self.devices.remove(&id);
            }
        }
        if let Some(e) = self.devices.get_mut(&advert.id) {
            self.pending.remove(&addr);
            let before = e.view();
            e.advert = advert;
            e.static_addr = Some(addr);
            e.last_seen = now;
            return Ok(changed(&before, e.view()));
        }
        if self.devices.len() >= MAX_DEVICES {
            return Err(TableError::Full("devices"));
        }
        self.pending.remove(&addr);
        let e = Entry {
            instance: None,
            mdns_addrs: Vec::new(),
            mdns_port: advert.port,
            static_addr: Some(addr),
            last_seen: now,
            advert,
        };
        let view = e.view();
        self.devices.insert(e.advert.id, e);
        Ok(Some(DiscoveryEvent::Found(view)))
    }

    /// Forgets a static peer. A device also seen over mDNS stays, as an mDNS device.
    pub fn remove_static(&mut self, addr: SocketAddr) -> Option<DiscoveryEvent> {
        if self.pending.remove(&addr) {
            return None;
        }
        let id = *self
            .devices
            .iter()
            .find(|(_, e)| e.static_addr == Some(addr))?
            .0;
        let e = self.devices.get_mut(&id)?;
        e.static_addr = None;
        if e.instance.is_some() {
            return Some(DiscoveryEvent::Updated(e.view()));
        }
        let e = self.devices.remove(&id)?;
        Some(DiscoveryEvent::Lost(e.view()))
    }
}

/// `Updated` if anything but the time changed.
fn changed(before: &SeenDevice, after: SeenDevice) -> Option<DiscoveryEvent> {
    let same = before.advert == after.advert
        && before.instance == after.instance
        && before.static_addr == after.static_addr
        && before.addresses == after.addresses
        && before.port == after.port;
    (!same).then_some(DiscoveryEvent::Updated(after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::advert::Capabilities;
    use oxh_devauth::DeviceType;
    use std::time::Duration;

    /// A device's advert in epoch 1, its key derived from `who`.
    fn advert(who: &str, name: &str) -> Advert {
        advert_in(who, name, 1)
    }
    fn advert_in(who: &str, name: &str, epoch: u64) -> Advert {
        let mut k = [0u8; 32];
        for (i, b) in who.bytes().enumerate() {
            k[i % 32] ^= b.wrapping_add(i as u8);
        }
        let id = AdvertId::derive(&oxh_devauth::AdvertKey(k), epoch);
        Advert::new(id, Some(name), DeviceType::Pc, Capabilities::DDMP, 4700)
    }
    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn link_local_v6_is_never_offered_and_a_v4_that_arrives_later_is() {
        let mut tb = DeviceTable::new(advert("me", "me").id);
        let a = advert("a", "A");
        let inst = "A._oxh._udp.local.";
        let ev = tb.on_resolved(
            inst,
            a.clone(),
            vec![ip("fe80::84ae:53ff:fe95:f333")],
            4700,
            t(1),
        );
        assert!(matches!(ev, Some(DiscoveryEvent::Found(ref d)) if d.addresses.is_empty()));
        let ev = tb.on_resolved(
            inst,
            a,
            vec![ip("fe80::1"), ip("2001:db8::2"), ip("10.0.0.2")],
            4700,
            t(2),
        );
        assert!(
            matches!(ev, Some(DiscoveryEvent::Updated(ref d)) if d.addresses == vec![ip("10.0.0.2"), ip("2001:db8::2")]),
            "{ev:?}"
        );
    }

    #[test]
    fn found_updated_lost() {
        let mut tb = DeviceTable::new(advert("me", "me").id);
        let a = advert("a", "A");
        let ev = tb.on_resolved(
            "A._oxh._udp.local.",
            a.clone(),
            vec![ip("10.0.0.2")],
            4700,
            t(1),
        );
        assert!(matches!(ev, Some(DiscoveryEvent::Found(ref d)) if d.id() == Some(a.id)));
        // Same again: only the time moves, no event.
        assert_eq!(
            tb.on_resolved(
                "A._oxh._udp.local.",
                a.clone(),
                vec![ip("10.0.0.2")],
                4700,
                t(2)
            ),
            None
        );
        assert_eq!(tb.snapshot()[0].last_seen, Some(t(2)));
        let mut renamed = a.clone();
        renamed.name = Some("A2".into());
        let ev = tb.on_resolved(
            "A2._oxh._udp.local.",
            renamed,
            vec![ip("10.0.0.2")],
            4700,
            t(3),
        );
        assert!(
            matches!(ev, Some(DiscoveryEvent::Updated(ref d)) if d.advert.as_ref().and_then(|a| a.name.as_deref()) == Some("A2"))
        );
        // The goodbye for the old instance name does not remove the renamed device.
        assert_eq!(tb.on_removed("A._oxh._udp.local."), None);
        assert!(matches!(
            tb.on_removed("A2._oxh._udp.local."),
            Some(DiscoveryEvent::Lost(_))
        ));
        assert!(tb.snapshot().is_empty());
    }

    #[test]
    fn own_advert_is_ignored() {
        let me = advert("me", "me");
        let mut tb = DeviceTable::new(me.id);
        assert_eq!(tb.on_resolved("me", me.clone(), vec![], 1, t(1)), None);
        assert!(tb.snapshot().is_empty());
        let addr = sa("127.0.0.1:4700");
        assert_eq!(tb.add_static(addr), Ok(true));
        assert_eq!(
            tb.update_static(addr, me, t(1)),
            Err(TableError::OwnAdvert(addr))
        );
        assert!(tb.snapshot().is_empty());
    }

    #[test]
    fn own_adverts_of_this_and_the_last_epoch_are_ignored() {
        let (me1, me2) = (advert_in("me", "me", 1), advert_in("me", "me", 2));
        let mut tb = DeviceTable::new(me1.id);
        // Our next advert, heard before we switched to it, is just another device...
        assert!(
            tb.on_resolved("me2", me2.clone(), vec![], 1, t(1))
                .is_some()
        );
        // ...until we switch: then it goes, and neither ours is listed.
        tb.set_own(me2.id);
        assert!(tb.snapshot().is_empty());
        assert_eq!(tb.on_resolved("me1", me1.clone(), vec![], 1, t(2)), None);
        assert_eq!(tb.on_resolved("me2", me2.clone(), vec![], 1, t(2)), None);
        tb.set_own(me2.id);
        assert_eq!(
            tb.on_resolved("me1", me1, vec![], 1, t(3)),
            None,
            "still ours"
        );
        // A device in its next epoch is a new entry; the old one leaves with its goodbye.
        let (a1, a2) = (advert_in("a", "A", 1), advert_in("a", "A", 2));
        assert!(matches!(
            tb.on_resolved("a1", a1, vec![], 1, t(4)),
            Some(DiscoveryEvent::Found(_))
        ));
        assert!(matches!(
            tb.on_resolved("a2", a2.clone(), vec![], 1, t(5)),
            Some(DiscoveryEvent::Found(_))
        ));
        assert!(matches!(tb.on_removed("a1"), Some(DiscoveryEvent::Lost(_))));
        assert_eq!(tb.snapshot().len(), 1);
        assert_eq!(tb.snapshot()[0].id(), Some(a2.id));
    }

    #[test]
    fn static_peers() {
        let mut tb = DeviceTable::new(advert("me", "me").id);
        let addr = sa("192.0.2.7:47000");
        let a = advert("a", "A");
        assert_eq!(
            tb.update_static(addr, a.clone(), t(1)),
            Err(TableError::NotStatic(addr))
        );
        assert_eq!(tb.add_static(addr), Ok(true));
        assert_eq!(tb.add_static(addr), Ok(false));
        let snap = tb.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!((snap[0].advert.is_none(), snap[0].port), (true, 47000));

        let ev = tb.update_static(addr, a.clone(), t(2));
        assert!(
            matches!(ev, Ok(Some(DiscoveryEvent::Found(ref d))) if d.port == 47000 && d.addresses == vec![addr.ip()])
        );
        assert_eq!(tb.snapshot().len(), 1);
        assert_eq!(tb.update_static(addr, a.clone(), t(3)), Ok(None));

        // Seen over mDNS as well: one entry, mDNS port wins; its goodbye keeps the static peer.
        let ev = tb.on_resolved("A", a.clone(), vec![ip("10.1.1.1")], 4700, t(4));
        assert!(
            matches!(ev, Some(DiscoveryEvent::Updated(ref d)) if d.port == 4700 && d.addresses.len() == 2)
        );
        assert!(
            matches!(tb.on_removed("A"), Some(DiscoveryEvent::Updated(ref d)) if d.port == 47000)
        );
        assert_eq!(tb.snapshot().len(), 1);

        // Another device now answers on that address.
        let b = advert("b", "B");
        assert!(matches!(
            tb.update_static(addr, b.clone(), t(5)),
            Ok(Some(DiscoveryEvent::Found(_)))
        ));
        let snap = tb.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].id(), Some(b.id));

        assert!(matches!(
            tb.remove_static(addr),
            Some(DiscoveryEvent::Lost(_))
        ));
        assert!(tb.snapshot().is_empty());
    }

    #[test]
    fn bounded() {
        let mut tb = DeviceTable::new(advert("me", "me").id);
        for i in 0..MAX_STATIC_PEERS {
            let port = u16::try_from(i + 1).unwrap_or(1);
            assert_eq!(
                tb.add_static(SocketAddr::new(ip("10.0.0.1"), port)),
                Ok(true)
            );
        }
        assert_eq!(
            tb.add_static(sa("10.0.0.2:1")),
            Err(TableError::Full("static peers"))
        );
        for i in 0..MAX_DEVICES + 5 {
            tb.on_resolved(
                &format!("i{i}"),
                advert(&i.to_string(), "x"),
                vec![],
                1,
                t(1),
            );
        }
        assert_eq!(tb.snapshot().len(), MAX_DEVICES + MAX_STATIC_PEERS);
    }
}
