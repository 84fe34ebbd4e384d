//! The merge over a simulated network of three replicas (real SQLite stores): messages lost,
//! duplicated, reordered and delayed, links partitioned, replicas restarted, clocks skewed.
//! Changesets go out from the sender's watermark for the receiver; the watermark moves only
//! on an acknowledgement, as the sync protocol will do. After healing, all replicas must hold
//! the same rows, and the sync must come to rest (nothing echoes for ever).

use super::tests::{rows, sync};
use crate::*;
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const N: usize = 3;
/// The table every simulation runs on (a composite key).
pub(crate) const DDL: &str =
    "CREATE TABLE note(id INTEGER, part TEXT, title TEXT, body TEXT, PRIMARY KEY (id, part))";

#[derive(Debug, Clone)]
enum Step {
    /// A local write on `node` to row `key`.
    Write {
        node: usize,
        key: u8,
        kind: u8,
        v: u8,
    },
    /// `from` sends `to` what `to` has not acknowledged.
    Send { from: usize, to: usize },
    /// The network hands over (or loses, or duplicates) one message in flight.
    Deliver { pick: usize, lose: bool, dup: bool },
    /// The link between two nodes goes down or up.
    Link { a: usize, b: usize, up: bool },
    /// A node restarts (its store is opened again from the file).
    Restart { node: usize },
    /// Time passes.
    Tick { ms: u16 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..N, 0u8..4, 0u8..5, any::<u8>()).prop_map(|(node, key, kind, v)| Step::Write { node, key, kind, v }),
        3 => (0..N, 0..N).prop_filter("two nodes", |(a, b)| a != b).prop_map(|(from, to)| Step::Send { from, to }),
        4 => (any::<usize>(), prop::bool::weighted(0.2), prop::bool::weighted(0.2)).prop_map(|(pick, lose, dup)| Step::Deliver { pick, lose, dup }),
        1 => (0..N, 0..N, any::<bool>()).prop_filter("two nodes", |(a, b, _)| a != b).prop_map(|(a, b, up)| Step::Link { a, b, up }),
        1 => (0..N).prop_map(|node| Step::Restart { node }),
        2 => (0u16..3000).prop_map(|ms| Step::Tick { ms }),
    ]
}

enum Msg {
    Data {
        from: usize,
        to: usize,
        cs: Changeset,
    },
    Ack {
        from: usize,
        to: usize,
        lo: u64,
        hi: u64,
    },
}

struct Sim {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    now: Arc<AtomicU64>,
    skew: Vec<i64>,
    nodes: Vec<Option<RdbStore>>,
    up: [[bool; N]; N],
    net: Vec<Msg>,
}

fn name(i: usize) -> String {
    format!("dev{i}")
}

impl Sim {
    fn new(skew: Vec<i64>) -> Self {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let now = Arc::new(AtomicU64::new(1_700_000_000_000));
        let mut s = Sim {
            _dir: d,
            dir,
            now,
            skew,
            nodes: (0..N).map(|_| None).collect(),
            up: [[true; N]; N],
            net: Vec::new(),
        };
        for i in 0..N {
            s.start(i);
            let st = s.node(i);
            st.execute(DDL, &[]).unwrap();
            st.set_distributed_tables(&["note"]).unwrap();
        }
        s
    }

    /// Opens node `i`'s store with its skewed clock.
    fn start(&mut self, i: usize) {
        let now = self.now.clone();
        let skew = Arc::new(AtomicI64::new(self.skew[i]));
        let clock = Arc::new(move || {
            now.load(Ordering::Relaxed)
                .saturating_add_signed(skew.load(Ordering::Relaxed))
        });
        let cfg = StoreConfig::new(format!("{}.db", name(i)), SecurityLevel::S1);
        self.nodes[i] = None;
        self.nodes[i] = Some(RdbStore::open_with_clock(&self.dir, &cfg, &name(i), clock).unwrap());
    }

    fn node(&self, i: usize) -> &RdbStore {
        self.nodes[i].as_ref().unwrap()
    }

    fn run(&mut self, s: &Step) {
        match *s {
            Step::Write { node, key, kind, v } => write(self.node(node), key, kind, v),
            Step::Send { from, to } => {
                if !self.up[from][to] {
                    return;
                }
                let st = self.node(from);
                let w = st.peer_watermark(&name(to)).unwrap();
                let cs = st.changes_since(w, 2).unwrap();
                if !cs.rows.is_empty() || cs.upto > w {
                    self.net.push(Msg::Data { from, to, cs });
                }
            }
            Step::Deliver { pick, lose, dup } => {
                if self.net.is_empty() {
                    return;
                }
                let i = pick % self.net.len();
                let m = if dup {
                    match &self.net[i] {
                        Msg::Data { from, to, cs } => Msg::Data {
                            from: *from,
                            to: *to,
                            cs: cs.clone(),
                        },
                        Msg::Ack { from, to, lo, hi } => Msg::Ack {
                            from: *from,
                            to: *to,
                            lo: *lo,
                            hi: *hi,
                        },
                    }
                } else {
                    self.net.swap_remove(i)
                };
                if lose {
                    return;
                }
                self.deliver(m);
            }
            Step::Link { a, b, up } => {
                self.up[a][b] = up;
                self.up[b][a] = up;
            }
            Step::Restart { node } => self.start(node),
            Step::Tick { ms } => {
                self.now.fetch_add(u64::from(ms), Ordering::Relaxed);
            }
        }
    }

    fn deliver(&mut self, m: Msg) {
        match m {
            Msg::Data { from, to, cs } => {
                if !self.up[from][to] {
                    return;
                }
                self.node(to).apply_changeset(&cs).unwrap();
                self.net.push(Msg::Ack {
                    from: to,
                    to: from,
                    lo: cs.from,
                    hi: cs.upto,
                });
            }
            Msg::Ack { from, to, lo, hi } => {
                if self.up[from][to] {
                    self.node(to).ack(&name(from), lo, hi).unwrap();
                }
            }
        }
    }

    /// Heals every link, then syncs every pair reliably until a whole round changes
    /// nothing; how many rounds that took.
    fn heal(&mut self) -> usize {
        self.up = [[true; N]; N];
        self.net.clear();
        for round in 1..=6 {
            let mut changed = false;
            for a in 0..N {
                for b in 0..N {
                    if a != b {
                        let applied = sync(self.node(a), self.node(b));
                        changed |= applied.iter().any(|x| !x.is_empty());
                    }
                }
            }
            if !changed {
                return round;
            }
        }
        panic!("the sync did not come to rest in 6 rounds");
    }
}

/// A local write on `s`: to one of four rows (`key`), an insert-or-replace (0), a title
/// edit (1), a body edit (2), a delete (3) or an insert-or-ignore (else).
pub(crate) fn write(s: &RdbStore, key: u8, kind: u8, v: u8) {
    let id = i64::from(key % 2);
    let part = if key < 2 { "x" } else { "y" };
    let mut p = RdbPredicates::new("note");
    p.equal_to("id", id).equal_to("part", part);
    match kind {
        0 => {
            s.insert_with(
                "note",
                &ValuesBucket::new()
                    .with("id", id)
                    .with("part", part)
                    .with("title", format!("t{v}"))
                    .with("body", format!("b{v}")),
                ConflictResolution::Replace,
            )
            .unwrap();
        }
        1 => {
            s.update(&ValuesBucket::new().with("title", format!("t{v}")), &p)
                .unwrap();
        }
        2 => {
            s.update(&ValuesBucket::new().with("body", format!("b{v}")), &p)
                .unwrap();
        }
        3 => {
            s.delete(&p).unwrap();
        }
        _ => {
            s.insert_with(
                "note",
                &ValuesBucket::new()
                    .with("id", id)
                    .with("part", part)
                    .with("title", format!("t{v}")),
                ConflictResolution::Ignore,
            )
            .unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_under_loss_duplication_reorder_partitions_restarts_and_skew(
        skew in prop::collection::vec(-600_000i64..600_000, N),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut sim = Sim::new(skew);
        for s in &steps {
            sim.run(s);
        }
        let rounds = sim.heal();
        prop_assert!(rounds <= 4, "{rounds} rounds to rest");
        let want = rows(sim.node(0), "note");
        for i in 1..N {
            prop_assert_eq!(&rows(sim.node(i), "note"), &want, "replica {} differs", i);
        }
        // Restarted, they still agree (what they hold is what is on disk).
        for i in 0..N {
            sim.start(i);
            prop_assert_eq!(&rows(sim.node(i), "note"), &want);
        }
    }

    #[test]
    fn concurrent_edits_of_two_columns_of_a_row_both_survive(
        skew in prop::collection::vec(-600_000i64..600_000, N),
        noise in prop::collection::vec(step(), 0..40),
        gap in 0u16..5000,
    ) {
        let mut sim = Sim::new(skew);
        write(sim.node(0), 0, 0, 1);
        sim.heal();
        // Node 0 edits the title, node 1 the body of the same row, while other traffic
        // (on other rows only) is lost, duplicated and reordered.
        write(sim.node(0), 0, 1, 200);
        sim.run(&Step::Tick { ms: gap });
        write(sim.node(1), 0, 2, 201);
        for s in &noise {
            let s = match s {
                Step::Write { node, key, kind, v } => Step::Write { node: *node, key: 1 + key % 3, kind: *kind, v: *v },
                other => other.clone(),
            };
            sim.run(&s);
        }
        sim.heal();
        for i in 0..N {
            let r = rows(sim.node(i), "note");
            let row = r.iter().find(|r| r[0] == Value::from(0) && r[1] == Value::from("x")).unwrap();
            prop_assert_eq!(&row[2], &Value::from("t200"));
            prop_assert_eq!(&row[3], &Value::from("b201"));
        }
    }
}
