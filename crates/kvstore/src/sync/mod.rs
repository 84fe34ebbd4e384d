//! The sync core: a sans-IO state machine per store replica. It takes messages from peers,
//! sync requests and the time (ms, any monotonic origin) as input and returns messages to
//! send and results as [`Event`]s. It reads and writes the replica through the [`Replica`]
//! trait: the service passes its SQLite store, tests an in-memory [`MemReplica`], so a lost,
//! duplicated or reordered packet, a partition or a restart is a deterministic unit test.
//!
//! The protocol (see also `docs/DESIGN.md`, "KV sync"):
//! 1. The initiator sends `Hello` (version, its store epoch, device security level, push/pull);
//!    the responder checks type, security levels and version and answers `HelloAck`.
//! 2. A pusher sends the writes whose local sequence number is above the peer's watermark, in
//!    packets of at most [`crate::wire::MAX_PACKET_ENTRIES`] entries or
//!    [`crate::wire::MAX_PACKET_BYTES`] bytes, at most [`crate::wire::WINDOW`] in flight.
//! 3. The receiver applies each packet in one transaction (last writer wins on (HLC, device)),
//!    then acknowledges `(from, upto]`. The pusher moves the peer's watermark (durably) only
//!    on acknowledgements, so a broken sync resumes where it stopped, and a packet applied
//!    twice changes nothing.
//! 4. Without progress for the retransmission timeout the pusher goes back to the watermark;
//!    an initiator that hears nothing says `Hello` again. A changed store epoch (the peer's
//!    store was recreated) resets the watermark: a full resync, never a silent delete.

use crate::limits::device_covers;
use crate::wire::{
    Batch, MAX_PACKET_BYTES, MAX_PACKET_ENTRIES, Msg, PROTOCOL_VERSION, StoreDesc, SyncStatus,
    WINDOW,
};
use std::collections::{HashMap, VecDeque};

mod auto;
mod codec;
mod mem;
mod replica;
pub use auto::{GC_EVERY_TICKS, TickPlan, plan_tick};
pub use codec::records_of;
pub use mem::{MemReplica, Snap};
pub use replica::{Change, ChangeKind, PeerState, Record, Replica, ReplicaState, SyncReplica};

/// Which way data flows in a sync round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SyncMode {
    /// PUSH_ONLY: our writes to the peer.
    Push,
    /// PULL_ONLY: the peer's writes to us.
    Pull,
    /// PUSH_PULL: both.
    PushPull,
}

impl SyncMode {
    fn push(self) -> bool {
        matches!(self, SyncMode::Push | SyncMode::PushPull)
    }
    fn pull(self) -> bool {
        matches!(self, SyncMode::Pull | SyncMode::PushPull)
    }
    fn covers(self, other: SyncMode) -> bool {
        (self.push() || !other.push()) && (self.pull() || !other.pull())
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "push" | "push_only" => Ok(SyncMode::Push),
            "pull" | "pull_only" => Ok(SyncMode::Pull),
            "push-pull" | "push_pull" | "pushpull" => Ok(SyncMode::PushPull),
            _ => Err(format!("sync mode {s:?}: expected push, pull or push-pull")),
        }
    }
}

/// Whom a sync call goes to, as `(what the caller named, udid, networkId if online)`: every
/// online device (`online` maps udid → networkId) when `asked` is empty or says `all`, else
/// each named device as `resolve` makes it a udid.
pub fn sync_targets(
    online: &HashMap<String, String>,
    asked: &[String],
    resolve: impl Fn(&str) -> String,
) -> Vec<(String, String, Option<String>)> {
    if asked.is_empty() || asked.iter().any(|d| d == "all") {
        return online
            .iter()
            .map(|(u, n)| (n.clone(), u.clone(), Some(n.clone())))
            .collect();
    }
    asked
        .iter()
        .map(|d| {
            let u = resolve(d);
            (d.clone(), u.clone(), online.get(&u).cloned())
        })
        .collect()
}

/// Timing and sizes of the sync.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Without progress for this long, resend (go back to the watermark, or Hello again).
    pub rto_ms: u64,
    /// Without hearing from the peer for this long, the round ends with `Timeout`.
    pub timeout_ms: u64,
    /// Entries per packet.
    pub max_entries: usize,
    /// Key + value bytes per packet.
    pub max_bytes: usize,
    /// Packets in flight.
    pub window: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            rto_ms: 2000,
            timeout_ms: 15_000,
            max_entries: MAX_PACKET_ENTRIES,
            max_bytes: MAX_PACKET_BYTES,
            window: WINDOW,
        }
    }
}

/// What the engine asks its driver to do, or tells it: `B` is what data packets carry,
/// `C` what an applied packet changed (the KV store's by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<B = Batch, C = Change> {
    /// Send `msg` to device `to`.
    Send {
        /// Peer device.
        to: String,
        /// The message.
        msg: Msg<B>,
    },
    /// Sync round `req` with `peer` ended.
    Complete {
        /// Peer device.
        peer: String,
        /// Round id (from [`SyncEngine::sync`]).
        req: u64,
        /// How it ended.
        status: SyncStatus,
    },
    /// Round `old` with `peer` was replaced by the wider round `new` (its result is `new`'s).
    Superseded {
        /// Peer device.
        peer: String,
        /// The replaced round.
        old: u64,
        /// The round that replaces it.
        new: u64,
    },
    /// Writes from `from` changed the visible data.
    Changed {
        /// Peer device that sent them.
        from: String,
        /// The changes.
        changes: Vec<C>,
    },
}

/// Pushing our writes to one peer in one round.
#[derive(Debug)]
struct Push {
    /// Read position: the next packet starts after this sequence number.
    next: u64,
    /// The peer's watermark: everything up to here is acknowledged.
    acked: u64,
    /// Sent, not yet acknowledged.
    inflight: Vec<(u64, u64)>,
    /// Acknowledged ranges above the watermark (acks that arrived out of order).
    ahead: Vec<(u64, u64)>,
    last_progress: u64,
    /// Send `Done` when finished (we push because the peer pulls).
    send_done: bool,
    finished: bool,
}

#[derive(Debug)]
struct Round {
    req: u64,
    mode: SyncMode,
    hello_ok: bool,
    push_done: bool,
    pull_done: bool,
    last_heard: u64,
    last_hello: u64,
}

/// The sync state machine of one store replica (all its peers).
#[derive(Debug)]
pub struct SyncEngine {
    desc: StoreDesc,
    device_level: u8,
    cfg: SyncConfig,
    /// Our outgoing round per peer.
    rounds: HashMap<String, Round>,
    /// Pushes per (peer, round).
    pushes: HashMap<(String, u64), Push>,
    /// Rounds peers opened with us (recent ones), per peer.
    accepted: HashMap<String, VecDeque<u64>>,
    next_req: u64,
}

const ACCEPTED_KEPT: usize = 8;

impl SyncEngine {
    /// An engine for the store `desc` on a device of security level `device_level`.
    pub fn new(desc: StoreDesc, device_level: u8, cfg: SyncConfig) -> Self {
        Self {
            desc,
            device_level,
            cfg,
            rounds: HashMap::new(),
            pushes: HashMap::new(),
            accepted: HashMap::new(),
            next_req: 1,
        }
    }

    /// The store this engine syncs.
    pub fn desc(&self) -> &StoreDesc {
        &self.desc
    }

    /// True while a round of ours with `peer` is running.
    pub fn busy_with(&self, peer: &str) -> bool {
        self.rounds.contains_key(peer)
    }

    /// True while anything is in progress (rounds or pushes).
    pub fn active(&self) -> bool {
        !self.rounds.is_empty() || self.pushes.values().any(|p| !p.finished)
    }

    /// Starts a sync round with `peer`; returns its id. A round already running with that
    /// peer that covers `mode` is joined (its id is returned).
    pub fn sync<R: SyncReplica>(
        &mut self,
        r: &mut R,
        peer: &str,
        mode: SyncMode,
        now: u64,
        out: &mut Vec<Event<R::Batch, R::Change>>,
    ) -> u64 {
        let mut superseded = None;
        if let Some(rd) = self.rounds.get(peer) {
            if rd.mode.covers(mode) {
                return rd.req;
            }
            // A wider round replaces it; whoever waits on the old one waits on the new one.
            let old = rd.req;
            self.rounds.remove(peer);
            self.pushes.remove(&(peer.to_string(), old));
            superseded = Some(old);
        }
        let req = (now << 16) ^ self.next_req;
        self.next_req += 1;
        if let Some(old) = superseded {
            out.push(Event::Superseded {
                peer: peer.to_string(),
                old,
                new: req,
            });
        }
        self.rounds.insert(
            peer.to_string(),
            Round {
                req,
                mode,
                hello_ok: false,
                push_done: !mode.push(),
                pull_done: !mode.pull(),
                last_heard: now,
                last_hello: now,
            },
        );
        self.send_hello(r, peer, req, mode, out);
        req
    }

    fn send_hello<R: SyncReplica>(
        &self,
        r: &R,
        peer: &str,
        req: u64,
        mode: SyncMode,
        out: &mut Vec<Event<R::Batch, R::Change>>,
    ) {
        out.push(Event::Send {
            to: peer.to_string(),
            msg: Msg::Hello {
                req,
                version: PROTOCOL_VERSION,
                epoch: r.epoch(),
                device_level: self.device_level,
                push: mode.push(),
                pull: mode.pull(),
            },
        });
    }

    fn end_round<B, C>(&mut self, peer: &str, status: SyncStatus, out: &mut Vec<Event<B, C>>) {
        if let Some(rd) = self.rounds.remove(peer) {
            self.pushes.remove(&(peer.to_string(), rd.req));
            out.push(Event::Complete {
                peer: peer.to_string(),
                req: rd.req,
                status,
            });
        }
    }

    /// The peer went offline: its round ends with `DeviceOffline`, pushes to it stop.
    pub fn peer_offline<B, C>(&mut self, peer: &str, out: &mut Vec<Event<B, C>>) {
        self.end_round(peer, SyncStatus::DeviceOffline, out);
        self.pushes.retain(|(p, _), _| p != peer);
        self.accepted.remove(peer);
    }

    fn note_epoch<R: SyncReplica>(r: &mut R, peer: &str, epoch: [u8; 16]) -> Result<(), String> {
        match r.peer(peer)? {
            Some(st) if st.epoch == epoch => Ok(()),
            _ => r.reset_peer(peer, epoch),
        }
    }

    fn start_push<R: SyncReplica>(
        &mut self,
        r: &mut R,
        peer: &str,
        req: u64,
        send_done: bool,
        now: u64,
        out: &mut Vec<Event<R::Batch, R::Change>>,
    ) -> Result<(), String> {
        let acked = r.peer(peer)?.map_or(0, |s| s.acked);
        self.pushes.insert(
            (peer.to_string(), req),
            Push {
                next: acked,
                acked,
                inflight: Vec::new(),
                ahead: Vec::new(),
                last_progress: now,
                send_done,
                finished: false,
            },
        );
        self.pump(r, peer, req, now, out)
    }

    /// Fills the window of push `(peer, req)`; marks it finished when all is acknowledged.
    fn pump<R: SyncReplica>(
        &mut self,
        r: &mut R,
        peer: &str,
        req: u64,
        _now: u64,
        out: &mut Vec<Event<R::Batch, R::Change>>,
    ) -> Result<(), String> {
        let key = (peer.to_string(), req);
        let Some(p) = self.pushes.get_mut(&key) else {
            return Ok(());
        };
        if p.finished {
            return Ok(());
        }
        let mut exhausted = false;
        while p.inflight.len() < self.cfg.window {
            let (batch, upto) =
                r.batch_since(p.next, peer, self.cfg.max_entries, self.cfg.max_bytes)?;
            if upto <= p.next {
                exhausted = true;
                break;
            }
            let from = p.next;
            p.inflight.push((from, upto));
            p.next = upto;
            out.push(Event::Send {
                to: peer.to_string(),
                msg: Msg::Data {
                    req,
                    from,
                    upto,
                    batch,
                },
            });
        }
        if exhausted && p.inflight.is_empty() && p.acked >= p.next {
            p.finished = true;
            let send_done = p.send_done;
            if send_done {
                out.push(Event::Send {
                    to: peer.to_string(),
                    msg: Msg::Done { req },
                });
            }
            if let Some(rd) = self.rounds.get_mut(peer)
                && rd.req == req
            {
                rd.push_done = true;
                if rd.pull_done {
                    self.end_round(peer, SyncStatus::Success, out);
                }
            }
        }
        Ok(())
    }

    fn fail<B, C>(&mut self, peer: &str, req: u64, e: String, out: &mut Vec<Event<B, C>>) {
        self.pushes.remove(&(peer.to_string(), req));
        if self.rounds.get(peer).is_some_and(|rd| rd.req == req) {
            self.end_round(peer, SyncStatus::Failed(e), out);
        }
    }

    /// Handles a message from `from`.
    pub fn handle<R: SyncReplica>(
        &mut self,
        r: &mut R,
        from: &str,
        msg: Msg<R::Batch>,
        now: u64,
        out: &mut Vec<Event<R::Batch, R::Change>>,
    ) {
        match msg {
            Msg::Hello {
                req,
                version,
                epoch,
                device_level,
                push,
                pull,
            } => {
                let status = if version != PROTOCOL_VERSION {
                    SyncStatus::ProtocolMismatch
                } else if (pull && !device_covers(device_level, self.desc.level))
                    || (push && !device_covers(self.device_level, self.desc.level))
                {
                    SyncStatus::SecurityLevelMismatch
                } else {
                    SyncStatus::Success
                };
                let status = match (&status, Self::note_epoch(r, from, epoch)) {
                    (SyncStatus::Success, Err(e)) => SyncStatus::Failed(e),
                    _ => status,
                };
                out.push(Event::Send {
                    to: from.to_string(),
                    msg: Msg::HelloAck {
                        req,
                        epoch: r.epoch(),
                        device_level: self.device_level,
                        status: status.clone(),
                    },
                });
                if status != SyncStatus::Success {
                    return;
                }
                let acc = self.accepted.entry(from.to_string()).or_default();
                if !acc.contains(&req) {
                    acc.push_back(req);
                    if acc.len() > ACCEPTED_KEPT {
                        acc.pop_front();
                    }
                }
                if pull {
                    // A repeated Hello restarts our push from the watermark.
                    if let Err(e) = self.start_push(r, from, req, true, now, out) {
                        self.fail(from, req, e, out);
                    }
                }
            }
            Msg::HelloAck {
                req,
                epoch,
                device_level,
                status,
            } => {
                let Some(rd) = self.rounds.get_mut(from).filter(|rd| rd.req == req) else {
                    return;
                };
                rd.last_heard = now;
                if rd.hello_ok {
                    return;
                }
                if status != SyncStatus::Success {
                    self.end_round(from, status, out);
                    return;
                }
                if rd.mode.push() && !device_covers(device_level, self.desc.level) {
                    self.end_round(from, SyncStatus::SecurityLevelMismatch, out);
                    return;
                }
                rd.hello_ok = true;
                let push = rd.mode.push();
                if let Err(e) = Self::note_epoch(r, from, epoch) {
                    self.end_round(from, SyncStatus::Failed(e), out);
                    return;
                }
                if push && let Err(e) = self.start_push(r, from, req, false, now, out) {
                    self.fail(from, req, e, out);
                }
            }
            Msg::Data {
                req,
                from: lo,
                upto,
                batch,
            } => {
                let ours = self
                    .rounds
                    .get(from)
                    .is_some_and(|rd| rd.req == req && rd.hello_ok && rd.mode.pull());
                let theirs = self.accepted.get(from).is_some_and(|a| a.contains(&req));
                if !ours && !theirs {
                    out.push(Event::Send {
                        to: from.to_string(),
                        msg: Msg::Nack { req },
                    });
                    return;
                }
                if ours && let Some(rd) = self.rounds.get_mut(from) {
                    rd.last_heard = now;
                }
                match r.apply_batch(&self.desc, from, batch) {
                    Ok(changes) => {
                        if !changes.is_empty() {
                            out.push(Event::Changed {
                                from: from.to_string(),
                                changes,
                            });
                        }
                        out.push(Event::Send {
                            to: from.to_string(),
                            msg: Msg::Ack {
                                req,
                                from: lo,
                                upto,
                            },
                        });
                    }
                    Err(e) => self.fail(from, req, e, out),
                }
            }
            Msg::Ack {
                req,
                from: lo,
                upto,
            } => {
                if let Some(rd) = self.rounds.get_mut(from).filter(|rd| rd.req == req) {
                    rd.last_heard = now;
                }
                let key = (from.to_string(), req);
                let Some(p) = self.pushes.get_mut(&key) else {
                    return;
                };
                if let Some(i) = p.inflight.iter().position(|&x| x == (lo, upto)) {
                    p.inflight.remove(i);
                    p.last_progress = now;
                }
                p.ahead.push((lo, upto));
                let before = p.acked;
                loop {
                    let mut moved = false;
                    p.ahead.retain(|&(a, b)| {
                        if a <= p.acked {
                            if b > p.acked {
                                p.acked = b;
                                moved = true;
                            }
                            false
                        } else {
                            true
                        }
                    });
                    if !moved {
                        break;
                    }
                }
                if p.acked > before {
                    let acked = p.acked;
                    let res = r.peer(from).and_then(|st| {
                        let epoch = st.map(|s| s.epoch).unwrap_or_default();
                        r.set_peer(from, PeerState { epoch, acked })
                    });
                    if let Err(e) = res {
                        self.fail(from, req, e, out);
                        return;
                    }
                }
                if let Err(e) = self.pump(r, from, req, now, out) {
                    self.fail(from, req, e, out);
                }
            }
            Msg::Done { req } => {
                if let Some(rd) = self.rounds.get_mut(from).filter(|rd| rd.req == req) {
                    rd.last_heard = now;
                    rd.pull_done = true;
                    if rd.push_done {
                        self.end_round(from, SyncStatus::Success, out);
                    }
                }
            }
            Msg::Nack { req } => {
                self.pushes.remove(&(from.to_string(), req));
                if let Some(rd) = self.rounds.get_mut(from).filter(|rd| rd.req == req) {
                    rd.hello_ok = false;
                    rd.push_done = !rd.mode.push();
                    rd.pull_done = !rd.mode.pull();
                    rd.last_hello = now;
                    let mode = rd.mode;
                    self.send_hello(r, from, req, mode, out);
                }
            }
        }
    }

    /// Advances time: retransmits and timeouts.
    pub fn tick<R: SyncReplica>(
        &mut self,
        r: &mut R,
        now: u64,
        out: &mut Vec<Event<R::Batch, R::Change>>,
    ) {
        let timed_out: Vec<String> = self
            .rounds
            .iter()
            .filter(|(_, rd)| now.saturating_sub(rd.last_heard) >= self.cfg.timeout_ms)
            .map(|(p, _)| p.clone())
            .collect();
        for p in timed_out {
            self.end_round(&p, SyncStatus::Timeout, out);
        }
        let rto = self.cfg.rto_ms;
        let timeout = self.cfg.timeout_ms;
        self.pushes
            .retain(|_, p| p.finished || now.saturating_sub(p.last_progress) < timeout);
        // Say Hello again where nothing was heard for an RTO (lost Hello, lost Done, or the
        // responder restarted).
        let mut hellos = Vec::new();
        for (peer, rd) in self.rounds.iter_mut() {
            let quiet = now.saturating_sub(rd.last_heard.max(rd.last_hello)) >= rto;
            let waiting = !rd.hello_ok || (!rd.pull_done && rd.push_done);
            if quiet && waiting {
                rd.last_hello = now;
                hellos.push((peer.clone(), rd.req, rd.mode));
            }
        }
        for (peer, req, mode) in hellos {
            self.send_hello(r, &peer, req, mode, out);
        }
        // Go back to the watermark where packets went unacknowledged for an RTO.
        let stalled: Vec<(String, u64)> = self
            .pushes
            .iter_mut()
            .filter(|(_, p)| {
                !p.finished && !p.inflight.is_empty() && now.saturating_sub(p.last_progress) >= rto
            })
            .map(|(k, p)| {
                p.inflight.clear();
                p.next = p.acked;
                p.last_progress = now;
                k.clone()
            })
            .collect();
        for (peer, req) in stalled {
            if let Err(e) = self.pump(r, &peer, req, now, out) {
                self.fail(&peer, req, e, out);
            }
        }
        // Drop finished pushes of rounds the peer opened once they are old.
        self.pushes
            .retain(|_, p| !p.finished || now.saturating_sub(p.last_progress) < timeout);
    }
}

#[cfg(test)]
mod tests;
