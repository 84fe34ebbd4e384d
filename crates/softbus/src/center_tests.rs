//! The bus centre's core over a simulated network, in virtual time: devices whose cores are
//! wired by a network with per-direction delays, partitions, unreachable dials that retry
//! their handshake until they time out, silent peers whose connections end after the idle
//! timeout, and restarts. Each run advances time to the next deadline or delivery, with a
//! bounded number of steps.

use super::*;
use crate::transport::tests_support::node;
use std::collections::BTreeMap;

/// One-way delay unless a test sets another.
const HOP: Duration = Duration::from_millis(5);
/// Silence after which both ends call a connection closed (the bus's default).
const IDLE: Duration = Duration::from_millis(2000);
/// A dial that gets no answer retransmits its handshake this often until [`IDLE`].
const RETRY: Duration = Duration::from_millis(250);
/// Steps one run may take: far more than any test needs, so a livelock fails fast.
const MAX_STEPS: usize = 100_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Dev {
    name: &'static str,
    key: Key,
    addr: SocketAddr,
    /// Incarnation: a restart makes a new networkId and a new core.
    run: u32,
    core: Center,
    /// Whom it trusts (mirrors what its core was told).
    trusts: BTreeSet<Key>,
    events: Vec<(Duration, BusEvent)>,
    dials: Vec<(Duration, SocketAddr)>,
    dial_fails: Vec<(Duration, SocketAddr)>,
    /// Dials whose connection the peer closed as a duplicate before our Hello came back:
    /// they wait for the replacement (as `Bus::connect` does) until the grace ends.
    superseded: Vec<(SocketAddr, Key, Instant)>,
}

impl Dev {
    fn info(&self) -> NodeInfo {
        NodeInfo {
            network_id: format!("net-{}-{}", self.name, self.run),
            listen_port: self.addr.port(),
            ..node(self.name)
        }
    }

    /// ONLINE/OFFLINE as (kind, networkId).
    fn presence(&self) -> Vec<(&'static str, String)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                BusEvent::Online(i) => Some(("online", i.network_id.clone())),
                BusEvent::Offline(i) => Some(("offline", i.network_id.clone())),
                _ => None,
            })
            .collect()
    }
}

struct SimConn {
    dialer: usize,
    acceptor: usize,
    runs: (u32, u32),
    addr: SocketAddr,
    open: bool,
    /// Closed by the acceptor as a duplicate (what the dialer's Hello then meets).
    closed_as_dup_by_acceptor: bool,
}

enum Msg {
    /// A dial with no answer yet tries its handshake again.
    Retry { conn: ConnId, until: Instant },
    /// The acceptor has the dialer's Hello: it registers.
    Accept(ConnId),
    /// The dialer has the acceptor's Hello: it registers.
    Reply(ConnId),
    DialFailed {
        dev: usize,
        run: u32,
        addr: SocketAddr,
    },
    Closed {
        dev: usize,
        run: u32,
        conn: ConnId,
        dup: bool,
    },
}

struct Net {
    t0: Instant,
    now: Instant,
    devs: Vec<Dev>,
    conns: BTreeMap<ConnId, SimConn>,
    queue: BTreeMap<(Instant, u64), Msg>,
    seq: u64,
    next_conn: ConnId,
    delay: BTreeMap<(usize, usize), Duration>,
    cut: BTreeSet<(usize, usize)>,
    /// How long a dialer takes to read the acceptor's Hello, beyond the delay: the peer's
    /// duplicate close, sent at the same moment on the other connection, may come first.
    reply_lag: Duration,
    steps: usize,
}

impl Net {
    /// Devices with these names and key seeds, each trusting all the others and knowing
    /// where they listen (discovered) only when a test says so.
    fn new(devs: &[(&'static str, u8)]) -> Self {
        let t0 = Instant::now();
        let keys: Vec<Key> = devs.iter().map(|(_, s)| [*s; 32]).collect();
        let devs = devs
            .iter()
            .enumerate()
            .map(|(i, (name, seed))| {
                let trusts: BTreeSet<Key> =
                    keys.iter().copied().filter(|k| *k != keys[i]).collect();
                let mut core = Center::new();
                core.set_trusted(trusts.iter().copied(), t0);
                Dev {
                    name,
                    key: [*seed; 32],
                    addr: SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000)),
                    run: 1,
                    core,
                    trusts,
                    events: Vec::new(),
                    dials: Vec::new(),
                    dial_fails: Vec::new(),
                    superseded: Vec::new(),
                }
            })
            .collect();
        Net {
            t0,
            now: t0,
            devs,
            conns: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            next_conn: 1,
            delay: BTreeMap::new(),
            cut: BTreeSet::new(),
            reply_lag: Duration::ZERO,
            steps: 0,
        }
    }

    fn at(&self) -> Duration {
        self.now - self.t0
    }

    fn d(&self, from: usize, to: usize) -> Duration {
        self.delay.get(&(from, to)).copied().unwrap_or(HOP)
    }

    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn send(&mut self, after: Duration, m: Msg) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), m);
    }

    /// `i` learns where `j` listens (mDNS).
    fn discover(&mut self, i: usize, j: usize) {
        let (addr, key, now) = (self.devs[j].addr, self.devs[j].key, self.now);
        self.devs[i].core.discovered(addr, key, now);
    }

    /// Both ends of every open connection between `a` and `b` time out; nothing crosses.
    fn partition(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
        for id in self.open_between(a, b) {
            self.close(id, None, IDLE, false);
        }
    }

    fn heal(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a.min(b), a.max(b)));
    }

    /// `j` restarts: a new networkId and a fresh core that trusts as before; its old
    /// connections go silent, so their peers see them end after the idle timeout.
    fn restart(&mut self, j: usize) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open && (c.dialer == j || c.acceptor == j))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.close(id, None, IDLE, false);
        }
        let now = self.now;
        let d = &mut self.devs[j];
        d.run += 1;
        d.core = Center::new();
        d.core.set_trusted(d.trusts.iter().copied(), now);
        d.superseded.clear();
    }

    /// Ends trust between `i` and `j` on `i`'s side, as an unbind does, and closes their
    /// connection (goodbye: both ends hear it after one hop).
    fn unbind(&mut self, i: usize, j: usize) {
        let (kj, now) = (self.devs[j].key, self.now);
        let d = &mut self.devs[i];
        d.trusts.remove(&kj);
        d.core.forget(&kj);
        d.core.set_trusted(d.trusts.iter().copied(), now);
        if let Some(id) = d.core.link(&kj).map(|l| l.conn) {
            let hop = self.d(i, j);
            self.close(id, Some(i), hop, false);
        }
    }

    /// Closes `id`. By one end (`by`): that end hears it at once, as a local close, and the
    /// other after `delay`, with `dup` (CLOSE_DUPLICATE). By neither (silence): both ends hear
    /// it after `delay`.
    fn close(&mut self, id: ConnId, by: Option<usize>, delay: Duration, dup: bool) {
        let Some(c) = self.conns.get_mut(&id).filter(|c| c.open) else {
            return;
        };
        c.open = false;
        if by == Some(c.acceptor) && dup {
            c.closed_as_dup_by_acceptor = true;
        }
        let ends = [(c.dialer, c.runs.0), (c.acceptor, c.runs.1)];
        for (dev, run) in ends {
            let local = by == Some(dev);
            let after = if local { Duration::ZERO } else { delay };
            let dup = dup && by.is_some() && !local;
            self.send(
                after,
                Msg::Closed {
                    dev,
                    run,
                    conn: id,
                    dup,
                },
            );
        }
    }

    fn dial(&mut self, i: usize, addr: SocketAddr, expected: Option<Key>) {
        let at = self.at();
        self.devs[i].dials.push((at, addr));
        let run = self.devs[i].run;
        let Some(j) = self.devs.iter().position(|d| d.addr == addr) else {
            self.send(IDLE, Msg::DialFailed { dev: i, run, addr });
            return;
        };
        // The TLS handshake: a pinned key that does not match, or a side that does not
        // trust the other, fails it.
        let refused = expected.is_some_and(|k| k != self.devs[j].key)
            || !self.devs[i].trusts.contains(&self.devs[j].key)
            || !self.devs[j].trusts.contains(&self.devs[i].key);
        if refused {
            let rtt = self.d(i, j) + self.d(j, i);
            self.send(rtt, Msg::DialFailed { dev: i, run, addr });
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            SimConn {
                dialer: i,
                acceptor: j,
                runs: (run, self.devs[j].run),
                addr,
                open: true,
                closed_as_dup_by_acceptor: false,
            },
        );
        let until = self.now + IDLE;
        self.handshake(id, until);
    }

    fn handshake(&mut self, id: ConnId, until: Instant) {
        let Some(c) = self.conns.get(&id) else { return };
        let (i, j) = (c.dialer, c.acceptor);
        if self.is_cut(i, j) {
            if self.now + RETRY < until {
                self.send(RETRY, Msg::Retry { conn: id, until });
            } else {
                let run = c.runs.0;
                let addr = c.addr;
                self.conns.remove(&id);
                self.send(until - self.now, Msg::DialFailed { dev: i, run, addr });
            }
            return;
        }
        // The QUIC handshake (i→j→i), then the dialer's Hello (→j), then the acceptor's
        // (→i), which the dialer may take a while to read.
        let (dij, dji) = (self.d(i, j), self.d(j, i));
        let accept = 2 * dij + dji;
        self.send(accept, Msg::Accept(id));
        self.send(accept + dji + self.reply_lag, Msg::Reply(id));
    }

    fn registration(&self, id: ConnId, at: usize) -> Registration {
        let c = &self.conns[&id];
        let peer = if at == c.dialer { c.acceptor } else { c.dialer };
        Registration {
            key: self.devs[peer].key,
            conn: id,
            info: self.devs[peer].info(),
            dialer: self.devs[c.dialer].key,
            remote: self.devs[peer].addr,
        }
    }

    fn deliver(&mut self, m: Msg) {
        let now = self.now;
        match m {
            Msg::Retry { conn, until } => self.handshake(conn, until),
            Msg::Accept(id) => {
                let Some(c) = self.conns.get(&id) else { return };
                let (j, run) = (c.acceptor, c.runs.1);
                if !c.open || self.devs[j].run != run {
                    return;
                }
                let r = self.registration(id, j);
                self.devs[j].core.registered(r, now);
            }
            Msg::Reply(id) => {
                let Some(c) = self.conns.get(&id) else { return };
                let (i, j, run, addr) = (c.dialer, c.acceptor, c.runs.0, c.addr);
                if self.devs[i].run != run {
                    return;
                }
                let key = self.devs[j].key;
                if c.open {
                    let r = self.registration(id, i);
                    let d = &mut self.devs[i];
                    d.core.registered(r, now);
                    d.core.dial_succeeded(addr, key, now);
                } else if c.closed_as_dup_by_acceptor {
                    self.devs[i]
                        .superseded
                        .push((addr, key, now + DUPLICATE_GRACE));
                } else {
                    self.devs[i].core.dial_failed(addr, now);
                    self.devs[i].dial_fails.push((now - self.t0, addr));
                }
            }
            Msg::DialFailed { dev, run, addr } => {
                if self.devs[dev].run == run {
                    self.devs[dev].core.dial_failed(addr, now);
                    self.devs[dev].dial_fails.push((now - self.t0, addr));
                }
            }
            Msg::Closed {
                dev,
                run,
                conn,
                dup,
            } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let peer = if dev == c.dialer {
                    c.acceptor
                } else {
                    c.dialer
                };
                if self.devs[dev].run == run {
                    let key = self.devs[peer].key;
                    self.devs[dev].core.closed(&key, conn, dup, now);
                }
            }
        }
    }

    /// Carries out every device's actions and settles superseded dials, until none is left.
    fn flush(&mut self) {
        loop {
            let mut acted = false;
            for i in 0..self.devs.len() {
                let now = self.now;
                let d = &mut self.devs[i];
                let mut settled = Vec::new();
                d.superseded.retain(|&(addr, key, until)| {
                    let live = d.core.link(&key).is_some_and(Link::is_live);
                    if live || until <= now {
                        settled.push((addr, key, live));
                        false
                    } else {
                        true
                    }
                });
                for (addr, key, live) in settled {
                    acted = true;
                    if live {
                        d.core.dial_succeeded(addr, key, now);
                    } else {
                        d.core.dial_failed(addr, now);
                        d.dial_fails.push((now - self.t0, addr));
                    }
                }
                while let Some(a) = self.devs[i].core.poll() {
                    acted = true;
                    match a {
                        Action::Dial { addr, expected } => self.dial(i, addr, expected),
                        Action::CloseDuplicate(id) => {
                            let Some(c) = self.conns.get(&id) else {
                                continue;
                            };
                            let peer = if c.dialer == i { c.acceptor } else { c.dialer };
                            let hop = self.d(i, peer);
                            self.close(id, Some(i), hop, true);
                        }
                        Action::Emit(ev) => {
                            let at = self.at();
                            self.devs[i].events.push((at, ev));
                        }
                    }
                }
            }
            if !acted {
                return;
            }
        }
    }

    /// Advances virtual time by `d`, from event to event.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.flush();
            self.steps += 1;
            assert!(
                self.steps < MAX_STEPS,
                "no quiescence after {MAX_STEPS} steps"
            );
            let next = self
                .queue
                .keys()
                .next()
                .map(|k| k.0)
                .into_iter()
                .chain(self.devs.iter().filter_map(|d| d.core.deadline()))
                .chain(
                    self.devs
                        .iter()
                        .flat_map(|d| d.superseded.iter().map(|s| s.2)),
                )
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    while let Some(e) = self.queue.first_entry() {
                        if e.key().0 > self.now {
                            break;
                        }
                        let m = e.remove();
                        self.deliver(m);
                    }
                    let now = self.now;
                    for d in &mut self.devs {
                        if d.core.deadline().is_some_and(|t| t <= now) {
                            d.core.on_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    /// The open connections between `a` and `b`.
    fn open_between(&self, a: usize, b: usize) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.open && ((c.dialer, c.acceptor) == (a, b) || (c.dialer, c.acceptor) == (b, a))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Both hold one live link to each other, through the same open connection.
    fn assert_converged(&self, a: usize, b: usize, ctx: &str) {
        let la = self.devs[a].core.link(&self.devs[b].key);
        let lb = self.devs[b].core.link(&self.devs[a].key);
        let (Some(la), Some(lb)) = (la, lb) else {
            panic!(
                "{ctx}: not both online: {:?} {:?}",
                la.is_some(),
                lb.is_some()
            );
        };
        assert!(la.is_live() && lb.is_live(), "{ctx}: a link in its grace");
        assert_eq!(la.conn, lb.conn, "{ctx}: different connections");
        assert_eq!(
            self.open_between(a, b),
            vec![la.conn],
            "{ctx}: open connections"
        );
    }
}

#[test]
fn simultaneous_dials_converge_on_one_connection() {
    // Both key orders, and delays that make either side register either connection first.
    let delays = [(1, 1), (1, 7), (7, 1), (3, 20), (20, 3), (50, 50), (2, 90)];
    for seeds in [(1u8, 2u8), (2, 1)] {
        for (dab, dba) in delays {
            for (lag, reply_lag) in [0, 1, 5, 12, 30].into_iter().flat_map(|l| [(l, 0), (l, 3)]) {
                let ctx = format!(
                    "seeds {seeds:?}, delays {dab}/{dba} ms, lag {lag} ms, reply lag {reply_lag} ms"
                );
                let mut n = Net::new(&[("a", seeds.0), ("b", seeds.1)]);
                n.reply_lag = ms(reply_lag);
                n.delay.insert((0, 1), ms(dab));
                n.delay.insert((1, 0), ms(dba));
                n.discover(0, 1);
                n.run_for(ms(lag));
                n.discover(1, 0);
                n.run_for(Duration::from_secs(20));
                n.assert_converged(0, 1, &ctx);
                for d in &n.devs {
                    assert_eq!(
                        d.presence().len(),
                        1,
                        "{ctx}: {}: {:?}",
                        d.name,
                        d.presence()
                    );
                    assert_eq!(d.presence()[0].0, "online", "{ctx}");
                    assert!(
                        d.core.deadline().is_none(),
                        "{ctx}: {} still has work",
                        d.name
                    );
                }
                // None was repeated.
                assert!(n.devs.iter().all(|d| d.dials.len() <= 1), "{ctx}");
            }
        }
    }
}

#[test]
fn a_restart_is_offline_then_online_exactly_once() {
    for seeds in [(1u8, 2u8), (2, 1)] {
        // Back before the old connection's idle timeout, and after it.
        for down in [ms(0), ms(300), Duration::from_secs(5)] {
            let ctx = format!("seeds {seeds:?}, down {down:?}");
            let mut n = Net::new(&[("a", seeds.0), ("b", seeds.1)]);
            n.discover(0, 1);
            n.discover(1, 0);
            n.run_for(Duration::from_secs(2));
            n.assert_converged(0, 1, &ctx);
            let restart_at = n.at();
            n.restart(1);
            // The restarted device dials again after `down` (it may be dialed before).
            n.run_for(down);
            n.discover(1, 0);
            n.run_for(Duration::from_secs(20));
            n.assert_converged(0, 1, &ctx);
            let want = [
                ("online", "net-b-1".to_string()),
                ("offline", "net-b-1".to_string()),
                ("online", "net-b-2".to_string()),
            ];
            assert_eq!(n.devs[0].presence(), want, "{ctx}");
            // Back before the old connection timed out: the new networkId ended it at once,
            // OFFLINE and ONLINE at the same moment.
            if down < IDLE {
                let t: Vec<Duration> = n.devs[0].events.iter().skip(1).map(|e| e.0).collect();
                assert_eq!(t[0], t[1], "{ctx}");
                assert!(t[0] < restart_at + IDLE, "{ctx}: {t:?}");
            }
            // The restarted run saw its peer once; the old run's events are not its own.
            let b = &n.devs[1];
            let since = b
                .events
                .iter()
                .filter(|(t, _)| *t >= Duration::from_secs(2))
                .count();
            assert_eq!(since, 1, "{ctx}: {:?}", b.presence());
        }
    }
}

#[test]
fn backoff_doubles_to_the_cap_and_the_peer_is_back_within_one_backoff() {
    let mut n = Net::new(&[("a", 1), ("b", 2)]);
    n.discover(0, 1);
    n.discover(1, 0);
    n.run_for(Duration::from_secs(1));
    n.assert_converged(0, 1, "before");
    let cut_at = n.at();
    n.partition(0, 1);
    n.run_for(Duration::from_secs(60));
    // Both call the other OFFLINE when the idle timeout ends, not before.
    for d in &n.devs {
        let off: Vec<_> = d
            .events
            .iter()
            .filter(|(_, e)| matches!(e, BusEvent::Offline(_)))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(off, vec![cut_at + IDLE], "{}", d.name);
    }
    // Each failed dial is followed by the next after the backoff, doubling to the cap.
    let a = &n.devs[0];
    let tries: Vec<Duration> = a
        .dials
        .iter()
        .map(|d| d.0)
        .filter(|t| *t >= cut_at)
        .collect();
    let fails: Vec<Duration> = a.dial_fails.iter().map(|d| d.0).collect();
    assert!(tries.len() > 8, "{tries:?}");
    let mut want = BACKOFF_MIN;
    for (k, next) in tries.iter().skip(1).enumerate() {
        assert_eq!(*next - fails[k], want, "gap after failure {k}");
        want = (want * 2).min(BACKOFF_MAX);
    }
    assert_eq!(want, BACKOFF_MAX, "the cap was reached");
    // The network heals: both are back ONLINE within one backoff (and one handshake retry).
    let healed = n.at();
    n.heal(0, 1);
    n.run_for(Duration::from_secs(30));
    n.assert_converged(0, 1, "after");
    for d in &n.devs {
        let p = d.presence();
        assert_eq!(
            p.iter().map(|e| e.0).collect::<Vec<_>>(),
            ["online", "offline", "online"]
        );
        let back = d.events.last().map(|e| e.0).unwrap_or_default();
        assert!(
            back - healed <= BACKOFF_MAX + RETRY + 4 * HOP,
            "{}: {:?}",
            d.name,
            back - healed
        );
    }
    assert!(n.steps < 5_000, "{} steps", n.steps);
}

#[test]
fn no_dial_for_an_untrusted_or_online_device() {
    // a trusts nobody: neither b's advert nor a static peer is dialed.
    let mut n = Net::new(&[("a", 1), ("b", 2)]);
    let now = n.now;
    n.devs[0].trusts.clear();
    n.devs[0].core.set_trusted([], now);
    n.discover(0, 1);
    let nobody = SocketAddr::from(([10, 0, 0, 99], 7000));
    n.devs[0].core.static_peer(nobody, now);
    n.run_for(Duration::from_secs(30));
    assert!(n.devs[0].dials.is_empty(), "{:?}", n.devs[0].dials);
    assert!(n.devs[0].core.deadline().is_none());
    // b trusted now: dialed at once (and the static peer too: someone could answer there).
    let (kb, b_addr, now) = (n.devs[1].key, n.devs[1].addr, n.now);
    n.devs[0].trusts.insert(kb);
    n.devs[0].core.set_trusted([kb], now);
    n.run_for(Duration::from_secs(1));
    let to_b = |n: &Net| n.devs[0].dials.iter().filter(|d| d.1 == b_addr).count();
    assert_eq!(to_b(&n), 1, "{:?}", n.devs[0].dials);
    assert!(n.devs[0].dials.iter().any(|d| d.1 == nobody));
    n.assert_converged(0, 1, "trusted");
    // Online: seen again and again, named as a static peer too, it is not dialed.
    for _ in 0..30 {
        n.discover(0, 1);
        let now = n.now;
        n.devs[0].core.static_peer(b_addr, now);
        n.run_for(Duration::from_secs(1));
    }
    assert_eq!(to_b(&n), 1);
    assert_eq!(n.devs[0].presence().len(), 1);
}

#[test]
fn an_unbound_device_is_not_redialed() {
    let mut n = Net::new(&[("a", 1), ("b", 2), ("c", 3)]);
    for (i, j) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
        n.discover(i, j);
    }
    n.run_for(Duration::from_secs(1));
    n.assert_converged(0, 1, "ab");
    n.assert_converged(0, 2, "ac");
    let unbound_at = n.at();
    n.unbind(0, 1);
    // b still trusts a and keeps trying, backing off; a refuses, and never dials b, though
    // b is still heard (an advert resolves only for trusted devices, but even if fed).
    for _ in 0..60 {
        n.discover(0, 1);
        n.run_for(Duration::from_secs(1));
    }
    let b_addr = n.devs[1].addr;
    let a = &n.devs[0];
    assert!(
        a.dials
            .iter()
            .all(|(t, addr)| *t < unbound_at || *addr != b_addr),
        "{:?}",
        a.dials
    );
    assert!(!a.core.is_online(&n.devs[1].key));
    assert_eq!(a.presence().last().map(|p| p.0), Some("offline"));
    // c is untouched: still online through its one connection.
    n.assert_converged(0, 2, "ac after");
    assert_eq!(n.devs[2].presence().len(), 1);
    // b's attempts back off to the cap instead of hammering a.
    let b = &n.devs[1];
    let late: Vec<Duration> = b
        .dials
        .iter()
        .map(|d| d.0)
        .filter(|t| *t > unbound_at + Duration::from_secs(30))
        .collect();
    assert!(
        late.windows(2).all(|w| w[1] - w[0] >= BACKOFF_MAX),
        "{late:?}"
    );
}

#[test]
fn a_duplicate_with_no_replacement_goes_offline_when_the_grace_ends() {
    // The peer closed our connection as a duplicate and then vanished: ONLINE stays for the
    // grace, then OFFLINE; the redial waits for that.
    let t0 = Instant::now();
    let (me, peer) = ([1; 32], [2; 32]);
    let mut c = Center::new();
    c.set_trusted([peer], t0);
    let info = NodeInfo {
        listen_port: 7000,
        ..node("b")
    };
    let remote = SocketAddr::from(([10, 0, 0, 2], 7000));
    let r = Registration {
        key: peer,
        conn: 1,
        info: info.clone(),
        dialer: me,
        remote,
    };
    assert!(c.registered(r, t0));
    assert_eq!(c.poll(), Some(Action::Emit(BusEvent::Online(info.clone()))));
    assert_eq!(c.poll(), None);
    let t1 = t0 + ms(10);
    c.closed(&peer, 1, true, t1);
    assert!(c.is_online(&peer));
    assert_eq!(c.deadline(), Some(t1 + DUPLICATE_GRACE));
    c.on_timeout(t1 + DUPLICATE_GRACE - ms(1));
    assert_eq!(c.poll(), None);
    c.on_timeout(t1 + DUPLICATE_GRACE);
    assert_eq!(c.poll(), Some(Action::Emit(BusEvent::Offline(info))));
    // Its listening address (learnt from the Hello) is dialed back.
    assert_eq!(
        c.poll(),
        Some(Action::Dial {
            addr: remote,
            expected: Some(peer)
        })
    );
    assert_eq!(c.poll(), None);
}

#[test]
fn a_device_bound_just_now_is_dialed_back_once_the_trusted_set_catches_up() {
    // The target of a binding registers the initiator before it is told the new trusted set:
    // its listening address is kept, and dialed after a loss only once it is trusted.
    let t0 = Instant::now();
    let peer = [2; 32];
    let mut c = Center::new();
    let remote = SocketAddr::from(([10, 0, 0, 2], 40_000));
    let info = NodeInfo {
        listen_port: 7000,
        ..node("b")
    };
    let r = Registration {
        key: peer,
        conn: 1,
        info,
        dialer: peer,
        remote,
    };
    assert!(c.registered(r, t0));
    c.closed(&peer, 1, false, t0 + ms(5));
    let acts: Vec<Action> = std::iter::from_fn(|| c.poll()).collect();
    assert!(
        matches!(
            acts.as_slice(),
            [
                Action::Emit(BusEvent::Online(_)),
                Action::Emit(BusEvent::Offline(_))
            ]
        ),
        "{acts:?}"
    );
    assert_eq!(c.deadline(), None, "nothing to dial while untrusted");
    c.set_trusted([peer], t0 + ms(100));
    let listen = SocketAddr::new(remote.ip(), 7000);
    assert_eq!(
        c.poll(),
        Some(Action::Dial {
            addr: listen,
            expected: Some(peer)
        })
    );
    assert_eq!(c.poll(), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Three devices that find each other at random moments over links of random delays
    /// converge on one connection per pair, each side saying ONLINE once per peer.
    #[test]
    fn three_devices_converge_whatever_the_delays(
        delays in proptest::collection::vec(1u64..80, 6),
        lags in proptest::collection::vec(0u64..40, 6),
        reply_lag in 0u64..5,
        seeds in proptest::sample::subsequence(vec![1u8, 2, 3, 4, 5, 6], 3),
    ) {
        let mut n = Net::new(&[("a", seeds[0]), ("b", seeds[1]), ("c", seeds[2])]);
        n.reply_lag = ms(reply_lag);
        let pairs = [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)];
        for (k, p) in pairs.iter().enumerate() {
            n.delay.insert(*p, ms(delays[k]));
        }
        let mut order: Vec<(u64, (usize, usize))> = lags.iter().copied().zip(pairs).collect();
        order.sort();
        let mut t = 0;
        for (lag, (i, j)) in order {
            n.run_for(ms(lag - t));
            t = lag;
            n.discover(i, j);
        }
        n.run_for(Duration::from_secs(30));
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            n.assert_converged(i, j, &format!("{i}-{j}"));
        }
        for d in &n.devs {
            let p = d.presence();
            proptest::prop_assert_eq!(p.len(), 2, "{}: {:?}", d.name, p);
            proptest::prop_assert!(p.iter().all(|e| e.0 == "online"));
        }
    }
}
