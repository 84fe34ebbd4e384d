//! The relational sync as it runs: three real stores, each with the KV store's sync engine
//! over [`Side`], their messages through the wire encoding on a simulated network that loses,
//! duplicates and reorders them, links that go down, devices that restart (the engine's
//! state lost, the store reopened from its file) and skewed clocks. After the links heal and
//! every pair runs a round both ways, every round ends in success and all three hold the
//! same rows.

use super::*;
use crate::distributed::sim_tests::{DDL, write};
use crate::*;
use oxh_kvstore::sync::SyncMode;
use proptest::prelude::*;
use std::sync::atomic::AtomicI64;

const N: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Write {
        node: usize,
        key: u8,
        kind: u8,
        v: u8,
    },
    Sync {
        from: usize,
        to: usize,
        mode: u8,
    },
    Deliver {
        pick: usize,
        lose: bool,
        dup: bool,
    },
    Link {
        a: usize,
        b: usize,
        up: bool,
    },
    Restart {
        node: usize,
    },
    Tick {
        ms: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let two = |(a, b): &(usize, usize)| a != b;
    prop_oneof![
        4 => (0..N, 0u8..4, 0u8..4, any::<u8>()).prop_map(|(node, key, kind, v)| Step::Write { node, key, kind, v }),
        2 => ((0..N, 0..N).prop_filter("two nodes", two), 0u8..3).prop_map(|((from, to), mode)| Step::Sync { from, to, mode }),
        6 => (any::<usize>(), prop::bool::weighted(0.15), prop::bool::weighted(0.15)).prop_map(|(pick, lose, dup)| Step::Deliver { pick, lose, dup }),
        1 => ((0..N, 0..N).prop_filter("two nodes", two), any::<bool>()).prop_map(|((a, b), up)| Step::Link { a, b, up }),
        1 => (0..N).prop_map(|node| Step::Restart { node }),
        2 => (0u16..3000).prop_map(|ms| Step::Tick { ms }),
    ]
}

fn name(i: usize) -> String {
    format!("dev{i}")
}

fn index(n: &str) -> usize {
    n.trim_start_matches("dev").parse().unwrap()
}

struct Node {
    store: RdbStore,
    engine: SyncEngine,
}

struct Sim {
    _dir: tempfile::TempDir,
    now: Arc<AtomicU64>,
    skew: Vec<i64>,
    nodes: Vec<Node>,
    up: [[bool; N]; N],
    /// In flight: (from, to, the message's bytes on the wire).
    net: Vec<(usize, usize, Vec<u8>)>,
    /// Rounds that ended: (initiator, peer, status).
    done: Vec<(usize, usize, SyncStatus)>,
}

fn desc() -> StoreDesc {
    desc_of(
        "com.example",
        std::path::Path::new("s.db"),
        SecurityLevel::S1,
    )
}

impl Sim {
    fn new(skew: Vec<i64>) -> Self {
        let d = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(1_700_000_000_000));
        let mut s = Sim {
            now,
            skew,
            nodes: Vec::new(),
            up: [[true; N]; N],
            net: Vec::new(),
            done: Vec::new(),
            _dir: d,
        };
        for i in 0..N {
            let n = s.open(i);
            n.store.execute(DDL, &[]).unwrap();
            n.store.set_distributed_tables(&["note"]).unwrap();
            s.nodes.push(n);
        }
        s
    }

    fn open(&self, i: usize) -> Node {
        let now = self.now.clone();
        let skew = Arc::new(AtomicI64::new(self.skew[i]));
        let clock = Arc::new(move || {
            now.load(Ordering::Relaxed)
                .saturating_add_signed(skew.load(Ordering::Relaxed))
        });
        let cfg = StoreConfig::new(format!("{}.db", name(i)), SecurityLevel::S1);
        Node {
            store: RdbStore::open_with_clock(self._dir.path(), &cfg, &name(i), clock).unwrap(),
            engine: SyncEngine::new(desc(), 3, SyncConfig::default()),
        }
    }

    fn ms(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    fn route(&mut self, from: usize, evs: Vec<Event<Packet, Applied>>) {
        for e in evs {
            match e {
                Event::Send { to, msg } => {
                    let m = RdbMsg::Sync {
                        store: desc(),
                        table: None,
                        msg,
                    };
                    self.net.push((from, index(&to), m.encode()));
                }
                Event::Complete { peer, status, .. } => {
                    self.done.push((from, index(&peer), status))
                }
                Event::Changed { .. } | Event::Superseded { .. } => {}
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if !self.up[from][to] {
            return;
        }
        let Ok(RdbMsg::Sync { msg, .. }) = decode(bytes) else {
            panic!("our own message does not decode");
        };
        let now = self.ms();
        let mut out = Vec::new();
        {
            let n = &mut self.nodes[to];
            let mut side = Side::new(&n.store, None).unwrap();
            n.engine.handle(&mut side, &name(from), msg, now, &mut out);
        }
        self.route(to, out);
    }

    fn run(&mut self, s: &Step) {
        match *s {
            Step::Write { node, key, kind, v } => write(&self.nodes[node].store, key, kind, v),
            Step::Sync { from, to, mode } => {
                let mode = [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull][usize::from(mode)];
                let now = self.ms();
                let mut out = Vec::new();
                {
                    let n = &mut self.nodes[from];
                    let mut side = Side::new(&n.store, None).unwrap();
                    n.engine.sync(&mut side, &name(to), mode, now, &mut out);
                }
                self.route(from, out);
            }
            Step::Deliver { pick, lose, dup } => {
                if self.net.is_empty() {
                    return;
                }
                let i = pick % self.net.len();
                let (f, t, b) = if dup {
                    self.net[i].clone()
                } else {
                    self.net.swap_remove(i)
                };
                if !lose {
                    self.deliver(f, t, &b);
                }
            }
            Step::Link { a, b, up } => {
                self.up[a][b] = up;
                self.up[b][a] = up;
            }
            Step::Restart { node } => {
                // The process dies: the engine's state goes, the store is what is on disk.
                let fresh = self.open(node);
                self.nodes[node] = fresh;
            }
            Step::Tick { ms } => {
                self.now.fetch_add(u64::from(ms), Ordering::Relaxed);
                let now = self.ms();
                for i in 0..N {
                    let mut out = Vec::new();
                    {
                        let n = &mut self.nodes[i];
                        let mut side = Side::new(&n.store, None).unwrap();
                        n.engine.tick(&mut side, now, &mut out);
                    }
                    self.route(i, out);
                }
            }
        }
    }

    /// Links up, then a round both ways between every pair with every message delivered in
    /// order (time moving on when nothing is in flight): each must end in success.
    fn heal(&mut self) {
        self.up = [[true; N]; N];
        self.net.clear();
        for a in 0..N {
            for b in 0..N {
                if a == b {
                    continue;
                }
                // A round already running is joined (its lost Hello said again after the
                // retransmission timeout); one that ends otherwise (it timed out while the
                // link was down) is followed by a new one, as a caller would retry.
                self.done.clear();
                let mut budget = 10_000;
                let mut attempts = 0;
                while !self.done.contains(&(a, b, SyncStatus::Success)) {
                    if !self.done.iter().any(|d| d.0 == a && d.1 == b) && attempts > 0 {
                        if self.net.is_empty() {
                            self.run(&Step::Tick { ms: 2_500 });
                        } else {
                            let (f, t, m) = self.net.remove(0);
                            self.deliver(f, t, &m);
                        }
                    } else {
                        attempts += 1;
                        assert!(attempts <= 3, "round {a} → {b}: {:?}", self.done);
                        self.done.clear();
                        self.run(&Step::Sync {
                            from: a,
                            to: b,
                            mode: 2,
                        });
                    }
                    budget -= 1;
                    assert!(
                        budget > 0,
                        "the sync between {a} and {b} never came to rest"
                    );
                }
                // What is still in flight is delivered before the next pair.
                while !self.net.is_empty() {
                    let (f, t, m) = self.net.remove(0);
                    self.deliver(f, t, &m);
                    budget -= 1;
                    assert!(
                        budget > 0,
                        "the sync between {a} and {b} never came to rest"
                    );
                }
            }
        }
    }

    fn rows(&self, i: usize) -> Vec<Vec<Value>> {
        self.nodes[i]
            .store
            .query_sql("SELECT * FROM note ORDER BY 1, 2", &[])
            .unwrap()
            .rows()
            .to_vec()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_over_real_stores_converges_under_loss_duplication_reorder_partitions_restarts_and_skew(
        skew in prop::collection::vec(-600_000i64..600_000, N),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut sim = Sim::new(skew);
        for s in &steps {
            sim.run(s);
        }
        sim.heal();
        let want = sim.rows(0);
        for i in 1..N {
            prop_assert_eq!(&sim.rows(i), &want, "replica {} differs", i);
        }
    }
}
