//! The bus centre's pure core: which trusted devices to dial and when, which of two connections
//! to one device to keep, and what ONLINE/OFFLINE to report. No sockets, no clocks, no tasks:
//! inputs are events with the time they happened (`now`), outputs are [`Action`]s taken with
//! [`Center::poll`], and [`Center::deadline`] says when to call [`Center::on_timeout`].
//!
//! Two adapters drive it: [`crate::transport::Bus`] owns one per device, reports connections
//! registered and closed, runs the dials and closes, and broadcasts the events; the soft bus
//! service (`service/center.rs`) feeds it trusted devices found by mDNS, static peers and the
//! trusted set. `center_tests.rs` drives several of them over a simulated network with
//! virtual time.
//!
//! Rules it owns:
//! - **Candidates.** Every address a trusted device was discovered at, named as a static peer,
//!   bound at or heard listening on (its Hello) is dialed while that device is not online, one
//!   dial at a time per address, with exponential backoff from [`BACKOFF_MIN`] to
//!   [`BACKOFF_MAX`], reset when a dial succeeds. Untrusted devices are not dialed, nor static
//!   peers of unknown key while no device is trusted.
//! - **Duplicate dials.** Two live connections to one run of a device (same networkId): the one
//!   dialed by the smaller key wins on both sides, the other is closed as a duplicate.
//! - **Restarts.** A connection from a known key with a new networkId: the peer restarted, the
//!   old connection is dead (OFFLINE for its info, then ONLINE for the new).
//! - **Grace.** A connection the peer closed as a duplicate stays online for at most
//!   [`DUPLICATE_GRACE`] while its replacement is on its way.

use crate::transport::{BusEvent, NodeInfo};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A device key (Ed25519 public key), what authenticates its connections.
pub type Key = [u8; 32];
/// A connection's id, unique among one device's connections (quinn's `stable_id`).
pub type ConnId = u64;

/// First wait before redialing an address that failed, and the wait after a success.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two dials of one address: a device that comes back is ONLINE again
/// within about this long.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// When both sides dial at once, each keeps the connection dialed by the smaller key. A side
/// that registered the losing connection first sees the peer close it as a duplicate, maybe
/// before the winner reaches it: it waits this long for the winner before calling the peer
/// OFFLINE, so the race does not show as an OFFLINE/ONLINE flap. The winner is a handshake
/// already under way, normally milliseconds behind; 5 s covers a loaded 2-core machine (2 s
/// did not: one run in a few flapped while builds ran beside it). A peer that vanishes in
/// exactly this race is called OFFLINE that much later.
pub const DUPLICATE_GRACE: Duration = Duration::from_secs(5);

/// What the core asks its adapter to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Dial `addr`, pinning `expected` when known; report [`Center::dial_succeeded`] or
    /// [`Center::dial_failed`].
    Dial {
        /// Where.
        addr: SocketAddr,
        /// The key it must answer with, if known.
        expected: Option<Key>,
    },
    /// Close this connection with `CLOSE_DUPLICATE`: another one to the same device won.
    CloseDuplicate(ConnId),
    /// Report this to the layers above (ONLINE, OFFLINE or INFO_CHANGED only).
    Emit(BusEvent),
}

/// A connection that finished its Hello exchange, for [`Center::registered`].
#[derive(Debug, Clone)]
pub struct Registration {
    /// The key that authenticated it.
    pub key: Key,
    /// Its id.
    pub conn: ConnId,
    /// The info the peer sent in its Hello.
    pub info: NodeInfo,
    /// The key of the device that dialed it (ours or the peer's).
    pub dialer: Key,
    /// The peer's address, so that its listening port can be dialed back after a loss.
    pub remote: SocketAddr,
}

/// The connection a device is online through.
#[derive(Debug, Clone)]
pub struct Link {
    /// Its id.
    pub conn: ConnId,
    /// The peer's current info.
    pub info: NodeInfo,
    /// Who dialed it (the tie-break compares these).
    pub dialer: Key,
    /// Set once the peer closed it as a duplicate: when the replacement's grace ends.
    grace_until: Option<Instant>,
}

impl Link {
    /// False once the peer closed it as a duplicate (it waits for its replacement).
    pub fn is_live(&self) -> bool {
        self.grace_until.is_none()
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    expected: Option<Key>,
    /// The key that answered last time (static peers learn it).
    key: Option<Key>,
    next_try: Instant,
    backoff: Duration,
    in_flight: bool,
}

impl Candidate {
    fn new(key: Option<Key>, now: Instant) -> Self {
        Self {
            expected: key,
            key,
            next_try: now,
            backoff: BACKOFF_MIN,
            in_flight: false,
        }
    }
}

/// One device's bus centre state.
#[derive(Debug, Default)]
pub struct Center {
    links: BTreeMap<Key, Link>,
    candidates: BTreeMap<SocketAddr, Candidate>,
    trusted: BTreeSet<Key>,
    actions: VecDeque<Action>,
}

impl Center {
    /// No candidates, no connections, nobody trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next action to take, if any.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Center::on_timeout`]: the next candidate due, or the next grace to end.
    pub fn deadline(&self) -> Option<Instant> {
        let graces = self.links.values().filter_map(|l| l.grace_until);
        let dials = self
            .candidates
            .values()
            .filter(|c| self.may_dial(c))
            .map(|c| c.next_try);
        graces.chain(dials).min()
    }

    /// Ends graces that ran out (OFFLINE) and dials the candidates due.
    pub fn on_timeout(&mut self, now: Instant) {
        let expired: Vec<Key> = self
            .links
            .iter()
            .filter(|(_, l)| l.grace_until.is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(l) = self.links.remove(&k) {
                self.actions
                    .push_back(Action::Emit(BusEvent::Offline(l.info)));
            }
        }
        self.plan(now);
    }

    /// The devices this one trusts now (the trust store changed, or at start).
    pub fn set_trusted(&mut self, keys: impl IntoIterator<Item = Key>, now: Instant) {
        self.trusted = keys.into_iter().collect();
        self.plan(now);
    }

    /// A trusted device was seen at `addr` (mDNS). A known address keeps its backoff.
    pub fn discovered(&mut self, addr: SocketAddr, key: Key, now: Instant) {
        self.candidates
            .entry(addr)
            .or_insert_with(|| Candidate::new(Some(key), now));
        self.plan(now);
    }

    /// A static peer: dialed with no pinned key, any trusted device may answer.
    pub fn static_peer(&mut self, addr: SocketAddr, now: Instant) {
        self.candidates
            .entry(addr)
            .or_insert_with(|| Candidate::new(None, now));
        self.plan(now);
    }

    /// This device just bound with `key` at `addr` and dials it itself: the address becomes
    /// a fresh candidate, already in flight (report the dial's outcome as for any other).
    pub fn bound(&mut self, addr: SocketAddr, key: Key, now: Instant) {
        self.trusted.insert(key);
        let mut c = Candidate::new(Some(key), now);
        c.in_flight = true;
        self.candidates.insert(addr, c);
    }

    /// Trust with `key` ended (unbound, here or by the peer): its addresses are not dialed
    /// again until it is discovered or bound anew.
    pub fn forget(&mut self, key: &Key) {
        self.trusted.remove(key);
        self.candidates
            .retain(|_, c| c.key != Some(*key) && c.expected != Some(*key));
    }

    /// A dial of `addr` reached the device with `key` (possibly through the connection it
    /// dialed at the same time): the backoff starts over.
    pub fn dial_succeeded(&mut self, addr: SocketAddr, key: Key, now: Instant) {
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.in_flight = false;
            c.backoff = BACKOFF_MIN;
            c.key = Some(key);
        }
        self.plan(now);
    }

    /// A dial of `addr` failed: the next one waits the backoff, which doubles up to the cap.
    pub fn dial_failed(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.in_flight = false;
            c.next_try = now + c.backoff;
            c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
        }
        self.plan(now);
    }

    /// A connection finished its Hello exchange. False when it lost the duplicate-dial
    /// tie-break (it is being closed; serve nothing on it).
    pub fn registered(&mut self, r: Registration, now: Instant) -> bool {
        let mut was_online = false;
        let mut restarted = None;
        if let Some(existing) = self.links.get(&r.key) {
            if !existing.is_live() {
                // Its replacement: the grace ends here, silently if it is the same run.
                if existing.info.network_id == r.info.network_id {
                    was_online = true;
                } else {
                    restarted = Some(existing.info.clone());
                }
            } else if existing.info.network_id == r.info.network_id {
                // Same run of the peer: both sides dialed at once, and the connection dialed
                // by the smaller key wins on both sides.
                was_online = true;
                if existing.conn != r.conn {
                    if existing.dialer <= r.dialer {
                        self.actions.push_back(Action::CloseDuplicate(r.conn));
                        return false;
                    }
                    self.actions
                        .push_back(Action::CloseDuplicate(existing.conn));
                }
            } else {
                // A new networkId: the peer restarted and the old connection is dead, even if
                // its idle timeout has not fired yet.
                restarted = Some(existing.info.clone());
                self.actions
                    .push_back(Action::CloseDuplicate(existing.conn));
            }
        }
        self.links.insert(
            r.key,
            Link {
                conn: r.conn,
                info: r.info.clone(),
                dialer: r.dialer,
                grace_until: None,
            },
        );
        if let Some(old) = restarted {
            self.actions.push_back(Action::Emit(BusEvent::Offline(old)));
        }
        if !was_online {
            // Remember where it listens, so that it can be dialed back after a loss (if it is
            // trusted then: only trusted devices get this far, but the trusted set this core
            // was told may lag a fresh binding).
            if r.info.listen_port != 0 {
                let addr = SocketAddr::new(r.remote.ip(), r.info.listen_port);
                self.candidates
                    .entry(addr)
                    .or_insert_with(|| Candidate::new(Some(r.key), now))
                    .key = Some(r.key);
            }
            self.actions
                .push_back(Action::Emit(BusEvent::Online(r.info)));
        }
        self.plan(now);
        true
    }

    /// A connection ended. `by_peer_as_duplicate`: the peer closed it with `CLOSE_DUPLICATE`,
    /// so its replacement is expected within [`DUPLICATE_GRACE`]. Connections that are not
    /// the device's current one (already replaced) are ignored.
    pub fn closed(&mut self, key: &Key, conn: ConnId, by_peer_as_duplicate: bool, now: Instant) {
        let Some(l) = self.links.get_mut(key).filter(|l| l.conn == conn) else {
            return;
        };
        if by_peer_as_duplicate {
            l.grace_until.get_or_insert(now + DUPLICATE_GRACE);
        } else if let Some(l) = self.links.remove(key) {
            self.actions
                .push_back(Action::Emit(BusEvent::Offline(l.info)));
        }
        self.plan(now);
    }

    /// The peer sent new info on its current connection: INFO_CHANGED if it differs.
    pub fn info_update(&mut self, key: &Key, conn: ConnId, info: NodeInfo) {
        let Some(l) = self.links.get_mut(key).filter(|l| l.conn == conn) else {
            return;
        };
        if l.info != info {
            l.info = info.clone();
            self.actions
                .push_back(Action::Emit(BusEvent::InfoChanged(info)));
        }
    }

    /// The device's connection, live or in its grace.
    pub fn link(&self, key: &Key) -> Option<&Link> {
        self.links.get(key)
    }

    /// The devices online, by key.
    pub fn links(&self) -> impl Iterator<Item = (&Key, &Link)> {
        self.links.iter()
    }

    /// True while the device is online (its grace included).
    pub fn is_online(&self, key: &Key) -> bool {
        self.links.contains_key(key)
    }

    /// How many addresses are dial candidates.
    pub fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    fn may_dial(&self, c: &Candidate) -> bool {
        let online = c.key.is_some_and(|k| self.is_online(&k));
        let trusted = match c.key {
            Some(k) => self.trusted.contains(&k),
            // A static peer of unknown key is worth dialing only if someone could answer.
            None => !self.trusted.is_empty(),
        };
        !online && trusted && !c.in_flight
    }

    /// Dials every candidate that should be online, is not, and is due.
    fn plan(&mut self, now: Instant) {
        let due: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.next_try <= now && self.may_dial(c))
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            if let Some(c) = self.candidates.get_mut(&addr) {
                c.in_flight = true;
                self.actions.push_back(Action::Dial {
                    addr,
                    expected: c.expected,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "center_tests.rs"]
mod tests;
