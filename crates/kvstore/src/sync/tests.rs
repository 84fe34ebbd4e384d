//! The sync core over a simulated network: loss, duplication, reordering, partitions,
//! restarts and clock skew, all deterministic.

use super::*;
use crate::limits::{SecurityLevel, StoreType};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn desc(kind: StoreType, level: SecurityLevel) -> StoreDesc {
    StoreDesc {
        bundle: "com.example".into(),
        store_id: "s1".into(),
        kind,
        level,
    }
}

fn small_cfg() -> SyncConfig {
    SyncConfig {
        rto_ms: 500,
        timeout_ms: 5_000,
        max_entries: 3,
        max_bytes: 64,
        window: 3,
    }
}

/// A replica in the simulation: the in-memory model, or the SQLite store the service runs
/// (so that the simulation holds the store to the same rules as the model).
enum Rep {
    Mem(MemReplica),
    #[cfg(feature = "service")]
    Sql(crate::store::Store),
}

impl Rep {
    fn device(&self) -> &str {
        match self {
            Rep::Mem(m) => &m.device,
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.device(),
        }
    }

    /// A local write at physical time `phys`; the record it left, `None` if it left none.
    fn put(&mut self, key: &[u8], value: Option<Vec<u8>>, phys: u64) -> Option<Record> {
        match self {
            Rep::Mem(m) => Some(m.put(key, value, phys)),
            #[cfg(feature = "service")]
            Rep::Sql(s) => {
                let k = (s.local_part().to_string(), key.to_vec());
                let before = s.snapshot().remove(&k);
                s.write_at(vec![(key.to_vec(), value)], phys).unwrap();
                let after = s.snapshot().remove(&k);
                match after {
                    // A new timestamp on the row is this write's record.
                    Some((value, ts, origin)) if before.is_none_or(|b| b.1 != ts) => Some(Record {
                        part: k.0,
                        key: k.1,
                        value,
                        ts,
                        origin,
                    }),
                    _ => None,
                }
            }
        }
    }

    fn get(&self, part: &str, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            Rep::Mem(m) => m.get(part, key).map(<[u8]>::to_vec),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.get(part, key).unwrap(),
        }
    }

    fn snapshot(&self) -> BTreeMap<(String, Vec<u8>), Snap> {
        match self {
            Rep::Mem(m) => m.snapshot(),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.snapshot(),
        }
    }

    fn live(&self) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
        self.snapshot()
            .into_iter()
            .filter_map(|(k, (v, _, _))| v.map(|v| (k, v)))
            .collect()
    }

    fn gc_tombstones(&mut self, peers: &[String]) -> usize {
        match self {
            Rep::Mem(m) => m.gc_tombstones(peers),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.gc_tombstones(peers).unwrap() as usize,
        }
    }

    /// A restart: the memory replica keeps what was durable, the store is opened again.
    fn restart(&mut self) {
        match self {
            Rep::Mem(m) => *m = m.clone().restarted(),
            #[cfg(feature = "service")]
            Rep::Sql(s) => {
                let again = crate::store::Store::open(s.path(), s.device(), s.meta(), false);
                *s = again.unwrap();
            }
        }
    }
}

impl ReplicaState for Rep {
    fn epoch(&self) -> [u8; 16] {
        match self {
            Rep::Mem(m) => m.epoch(),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.epoch(),
        }
    }
    fn peer(&self, peer: &str) -> Result<Option<PeerState>, String> {
        match self {
            Rep::Mem(m) => m.peer(peer),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.peer(peer),
        }
    }
    fn set_peer(&mut self, peer: &str, st: PeerState) -> Result<(), String> {
        match self {
            Rep::Mem(m) => m.set_peer(peer, st),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.set_peer(peer, st),
        }
    }
    fn reset_peer(&mut self, peer: &str, epoch: [u8; 16]) -> Result<(), String> {
        match self {
            Rep::Mem(m) => m.reset_peer(peer, epoch),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.reset_peer(peer, epoch),
        }
    }
}

impl Replica for Rep {
    fn changes_since(
        &mut self,
        after: u64,
        skip_src: &str,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Record>, u64), String> {
        match self {
            Rep::Mem(m) => m.changes_since(after, skip_src, max_entries, max_bytes),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.changes_since(after, skip_src, max_entries, max_bytes),
        }
    }
    fn apply(&mut self, src: &str, recs: Vec<Record>) -> Result<Vec<Change>, String> {
        match self {
            Rep::Mem(m) => m.apply(src, recs),
            #[cfg(feature = "service")]
            Rep::Sql(s) => s.apply(src, recs),
        }
    }
}

struct Node {
    rep: Rep,
    eng: SyncEngine,
    skew: i64,
    level: u8,
    kind: StoreType,
}

impl Node {
    fn new(name: &str, kind: StoreType, skew: i64, level: u8) -> Self {
        let mut epoch = [0u8; 16];
        epoch[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
        Self::with(
            Rep::Mem(MemReplica::new(
                name,
                epoch,
                kind == StoreType::DeviceCollaboration,
            )),
            kind,
            skew,
            level,
        )
    }

    /// A node whose replica is a SQLite store in `dir`.
    #[cfg(feature = "service")]
    fn sql(name: &str, dir: &std::path::Path, kind: StoreType, skew: i64, level: u8) -> Self {
        let meta = crate::store::StoreMeta {
            kind,
            level: SecurityLevel::S1,
            auto_sync: false,
        };
        let path = dir.join(format!("{name}.db"));
        let store = crate::store::Store::open(&path, name, meta, true).unwrap();
        Self::with(Rep::Sql(store), kind, skew, level)
    }

    fn with(rep: Rep, kind: StoreType, skew: i64, level: u8) -> Self {
        Self {
            rep,
            eng: SyncEngine::new(desc(kind, SecurityLevel::S1), level, small_cfg()),
            skew,
            level,
            kind,
        }
    }

    fn restart(&mut self) {
        self.rep.restart();
        self.eng = SyncEngine::new(desc(self.kind, SecurityLevel::S1), self.level, small_cfg());
    }
}

struct Sim {
    nodes: Vec<Node>,
    names: Vec<String>,
    queue: VecDeque<(usize, usize, Msg)>,
    now: u64,
    cut: Vec<bool>,
    completes: Vec<(usize, String, u64, SyncStatus)>,
    /// Every write whose put returned: (part, key) -> versions.
    writes: BTreeMap<(String, Vec<u8>), Vec<Written>>,
    /// Writes that returned but left no record: (device, key, value).
    unrecorded: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
    /// Holds the SQLite nodes' files.
    _dir: Option<tempfile::TempDir>,
}

impl Sim {
    fn new(n: usize, kind: StoreType, skews: &[i64]) -> Self {
        Self::mixed(n, kind, skews, &[])
    }

    /// A simulation whose nodes in `sql` run the SQLite store, the others memory replicas.
    fn mixed(n: usize, kind: StoreType, skews: &[i64], sql: &[usize]) -> Self {
        let names: Vec<String> = (0..n).map(|i| format!("dev{i}")).collect();
        let dir = (!sql.is_empty()).then(|| tempfile::tempdir().unwrap());
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, nm)| {
                let skew = skews.get(i).copied().unwrap_or(0);
                match &dir {
                    #[cfg(feature = "service")]
                    Some(d) if sql.contains(&i) => Node::sql(nm, d.path(), kind, skew, 1),
                    _ => Node::new(nm, kind, skew, 1),
                }
            })
            .collect();
        Self {
            nodes,
            names,
            queue: VecDeque::new(),
            now: 10_000_000,
            cut: vec![false; n],
            completes: Vec::new(),
            writes: BTreeMap::new(),
            unrecorded: Vec::new(),
            _dir: dir,
        }
    }

    fn idx(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap()
    }

    fn route(&mut self, from: usize, evs: Vec<Event>) {
        for e in evs {
            match e {
                Event::Send { to, msg } => {
                    let to = self.idx(&to);
                    if !self.cut[from] && !self.cut[to] {
                        self.queue.push_back((from, to, msg));
                    }
                }
                Event::Complete { peer, req, status } => {
                    self.completes.push((from, peer, req, status));
                }
                Event::Changed { .. } | Event::Superseded { .. } => {}
            }
        }
    }

    fn put(&mut self, i: usize, key: u8, val: Option<u8>) {
        let phys = (self.now as i64 + self.nodes[i].skew) as u64;
        let value = val.map(|v| vec![v; 3]);
        let Some(rec) = self.nodes[i].rep.put(&[b'k', key], value.clone(), phys) else {
            let dev = self.names[i].clone();
            self.unrecorded.push((dev, vec![b'k', key], value));
            return;
        };
        self.writes
            .entry((rec.part.clone(), rec.key.clone()))
            .or_default()
            .push((rec.ts, rec.origin.clone(), rec.value.clone()));
    }

    fn sync(&mut self, i: usize, j: usize, mode: SyncMode) -> u64 {
        let mut out = Vec::new();
        let peer = self.names[j].clone();
        let n = &mut self.nodes[i];
        let req = n.eng.sync(&mut n.rep, &peer, mode, self.now, &mut out);
        self.route(i, out);
        req
    }

    fn deliver(&mut self, k: usize) {
        if self.queue.is_empty() {
            return;
        }
        let k = k % self.queue.len();
        let Some((from, to, msg)) = self.queue.remove(k) else {
            return;
        };
        if self.cut[from] || self.cut[to] {
            return;
        }
        let mut out = Vec::new();
        let fname = self.names[from].clone();
        let n = &mut self.nodes[to];
        n.eng.handle(&mut n.rep, &fname, msg, self.now, &mut out);
        self.route(to, out);
    }

    fn tick(&mut self, ms: u64) {
        self.now += ms;
        for i in 0..self.nodes.len() {
            let mut out = Vec::new();
            let n = &mut self.nodes[i];
            n.eng.tick(&mut n.rep, self.now, &mut out);
            self.route(i, out);
        }
    }

    fn active(&self) -> bool {
        self.nodes.iter().any(|n| n.eng.active())
    }

    /// Runs until quiet (FIFO delivery, time moves when the queue is empty).
    fn settle(&mut self) {
        for _ in 0..200_000 {
            if !self.queue.is_empty() {
                self.deliver(0);
            } else if self.active() {
                self.tick(250);
            } else {
                return;
            }
        }
        panic!("did not settle");
    }

    fn heal_and_sync_all(&mut self) {
        self.cut.iter_mut().for_each(|c| *c = false);
        for _ in 0..2 {
            for i in 0..self.nodes.len() {
                for j in 0..self.nodes.len() {
                    if i != j {
                        self.sync(i, j, SyncMode::PushPull);
                        self.settle();
                    }
                }
            }
        }
    }

    fn check_converged_and_nothing_lost(&self) -> Result<(), TestCaseError> {
        prop_assert!(
            self.unrecorded.is_empty(),
            "writes acknowledged without a record: {:?}",
            self.unrecorded
        );
        let first = self.nodes[0].rep.live();
        for n in &self.nodes[1..] {
            prop_assert_eq!(&n.rep.live(), &first, "replicas differ");
        }
        for (k, ws) in &self.writes {
            let best = ws
                .iter()
                .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
                .unwrap();
            for n in &self.nodes {
                let snap = n.rep.snapshot();
                let got = snap.get(k);
                prop_assert!(got.is_some(), "{} lost {:?}", n.rep.device(), k);
                let (v, ts, origin) = got.unwrap();
                prop_assert_eq!((*ts, origin), (best.0, &best.1), "wrong winner for {:?}", k);
                prop_assert_eq!(v, &best.2);
            }
        }
        Ok(())
    }
}

/// (HLC, origin, value) of a write whose put returned.
type Written = (u64, String, Option<Vec<u8>>);

#[derive(Debug, Clone)]
enum Act {
    Put(usize, u8, Option<u8>),
    /// Replica `.0` deletes a key it holds no row for (the `.1`-th such key; one some other
    /// replica holds a value for, where there is one).
    DelUnseen(usize, usize),
    Sync(usize, usize, u8),
    Deliver(usize),
    Drop(usize),
    Dup(usize),
    Tick(u64),
    Cut(usize),
    Heal,
    Restart(usize),
}

fn act(n: usize) -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (0..n, 0u8..6, proptest::option::weighted(0.8, any::<u8>())).prop_map(|(i, k, v)| Act::Put(i, k, v)),
        1 => (0..n, any::<usize>()).prop_map(|(i, k)| Act::DelUnseen(i, k)),
        2 => (0..n, 0..n, 0u8..3).prop_map(|(i, j, m)| Act::Sync(i, j, m)),
        8 => any::<usize>().prop_map(Act::Deliver),
        1 => any::<usize>().prop_map(Act::Drop),
        1 => any::<usize>().prop_map(Act::Dup),
        2 => (1u64..2_000).prop_map(Act::Tick),
        1 => (0..n).prop_map(Act::Cut),
        1 => Just(Act::Heal),
        1 => (0..n).prop_map(Act::Restart),
    ]
}

/// The keys (of the `0..6` the actions write) that replica `i` holds no row for, those
/// another replica holds a value for first.
fn unseen_keys(sim: &Sim, i: usize) -> Vec<u8> {
    let mine = sim.nodes[i].rep.snapshot();
    let held_elsewhere = |k: u8| {
        sim.nodes
            .iter()
            .any(|n| n.rep.live().keys().any(|(_, key)| key[..] == [b'k', k]))
    };
    let mut keys: Vec<u8> = (0u8..6)
        .filter(|&k| !mine.keys().any(|(_, key)| key[..] == [b'k', k]))
        .collect();
    keys.sort_by_key(|&k| !held_elsewhere(k));
    keys
}

fn run(kind: StoreType, skews: Vec<i64>, acts: Vec<Act>) -> Result<(), TestCaseError> {
    run_on(Sim::new(skews.len(), kind, &skews), acts)
}

fn run_on(mut sim: Sim, acts: Vec<Act>) -> Result<(), TestCaseError> {
    for a in acts {
        match a {
            Act::Put(i, k, v) => sim.put(i, k, v),
            Act::DelUnseen(i, k) => {
                let keys = unseen_keys(&sim, i);
                if !keys.is_empty() {
                    // Mostly the first (held elsewhere), sometimes another.
                    let k = if k % 4 == 0 {
                        keys[k % keys.len()]
                    } else {
                        keys[0]
                    };
                    sim.put(i, k, None);
                }
            }
            Act::Sync(i, j, m) => {
                if i != j {
                    let mode = [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull][m as usize];
                    sim.sync(i, j, mode);
                }
            }
            Act::Deliver(k) => sim.deliver(k),
            Act::Drop(k) => {
                if !sim.queue.is_empty() {
                    let k = k % sim.queue.len();
                    sim.queue.remove(k);
                }
            }
            Act::Dup(k) => {
                if !sim.queue.is_empty() {
                    let k = k % sim.queue.len();
                    let m = sim.queue[k].clone();
                    sim.queue.push_back(m);
                }
            }
            Act::Tick(ms) => sim.tick(ms),
            Act::Cut(i) => sim.cut[i] = true,
            Act::Heal => sim.cut.iter_mut().for_each(|c| *c = false),
            Act::Restart(i) => sim.nodes[i].restart(),
        }
    }
    sim.heal_and_sync_all();
    sim.check_converged_and_nothing_lost()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// After the network heals, every replica holds the same data, and for every key the
    /// write with the greatest (HLC, device) wins: no acknowledged write is lost unless a
    /// later write of the same key won. Clocks are skewed by up to ±5 minutes.
    #[test]
    fn converges_without_losing_acknowledged_writes(
        skews in proptest::collection::vec(-300_000i64..300_000, 3),
        acts in proptest::collection::vec(act(3), 1..120),
    ) {
        run(StoreType::SingleVersion, skews, acts)?;
    }

    /// The same for device-collaboration stores (entries partitioned by writer).
    #[test]
    fn device_stores_converge_too(
        skews in proptest::collection::vec(-300_000i64..300_000, 2..4),
        acts in proptest::collection::vec(act(2), 1..80),
    ) {
        run(StoreType::DeviceCollaboration, skews, acts)?;
    }
}

#[cfg(feature = "service")]
proptest! {
    // Fewer cases: every store write is an fsync'd SQLite transaction.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The same with one replica on the SQLite store the service runs, beside two memory
    /// replicas: the store keeps the model's rules (a delete of a key it never held is a
    /// tombstone, LWW, watermarks) through partitions and restarts.
    #[test]
    fn a_sqlite_store_converges_with_memory_replicas(
        skews in proptest::collection::vec(-300_000i64..300_000, 3),
        acts in proptest::collection::vec(act(3), 1..80),
    ) {
        run_on(Sim::mixed(3, StoreType::SingleVersion, &skews, &[1]), acts)?;
    }
}

#[test]
fn push_then_get_on_the_peer_with_many_packets() {
    let mut sim = Sim::new(2, StoreType::SingleVersion, &[0, 0]);
    for k in 0..50u8 {
        sim.put(0, k, Some(k));
    }
    let req = sim.sync(0, 1, SyncMode::Push);
    sim.settle();
    assert!(
        sim.completes
            .iter()
            .any(|c| c.0 == 0 && c.2 == req && c.3 == SyncStatus::Success),
        "{:?}",
        sim.completes
    );
    assert_eq!(sim.nodes[1].rep.live(), sim.nodes[0].rep.live());
    assert_eq!(sim.nodes[1].rep.live().len(), 50);
    // The watermark moved to the end: a second push sends no data.
    sim.sync(0, 1, SyncMode::Push);
    let mut data = 0;
    while let Some((f, t, m)) = sim.queue.pop_front() {
        if matches!(m, Msg::Data { .. }) {
            data += 1;
        }
        sim.queue.push_front((f, t, m));
        sim.deliver(0);
    }
    assert_eq!(data, 0);
}

#[test]
fn a_resent_packet_changes_nothing() {
    let mut sim = Sim::new(2, StoreType::SingleVersion, &[0, 0]);
    sim.put(0, 1, Some(1));
    sim.sync(0, 1, SyncMode::Push);
    // Hello, HelloAck, then the one Data packet: keep a copy and deliver it twice.
    sim.deliver(0);
    sim.deliver(0);
    let data = sim.queue[0].clone();
    assert!(matches!(data.2, Msg::Data { .. }));
    sim.deliver(0);
    sim.put(1, 1, Some(9)); // a later write on the receiver
    sim.queue.push_back(data);
    sim.settle();
    assert_eq!(sim.nodes[1].rep.get("", b"k\x01"), Some(vec![9u8; 3]));
}

#[test]
fn a_recreated_peer_store_gets_a_full_resync() {
    let mut sim = Sim::new(2, StoreType::SingleVersion, &[0, 0]);
    for k in 0..5 {
        sim.put(0, k, Some(k));
    }
    sim.sync(0, 1, SyncMode::Push);
    sim.settle();
    // Device 1's store is deleted and created again: new epoch, no data.
    let fresh = MemReplica::new("dev1", [9; 16], false);
    sim.nodes[1] = Node::with(Rep::Mem(fresh), StoreType::SingleVersion, 0, 1);
    sim.sync(0, 1, SyncMode::Push);
    sim.settle();
    assert_eq!(sim.nodes[1].rep.live().len(), 5);
    // And nothing was deleted on device 0.
    assert_eq!(sim.nodes[0].rep.live().len(), 5);
}

#[test]
fn security_levels_are_enforced_both_ways() {
    let mut sim = Sim::new(2, StoreType::SingleVersion, &[0, 0]);
    let d = desc(StoreType::SingleVersion, SecurityLevel::S3);
    sim.nodes[0].eng = SyncEngine::new(d.clone(), 3, small_cfg());
    sim.nodes[1].eng = SyncEngine::new(d, 1, small_cfg());
    sim.put(0, 1, Some(1));
    let req = sim.sync(0, 1, SyncMode::Push);
    sim.settle();
    assert!(
        sim.completes
            .iter()
            .any(|c| c.2 == req && c.3 == SyncStatus::SecurityLevelMismatch),
        "{:?}",
        sim.completes
    );
    assert!(sim.nodes[1].rep.live().is_empty());
    // The low device pulling an S3 store from the high one is refused too.
    let req = sim.sync(1, 0, SyncMode::Pull);
    sim.settle();
    assert!(
        sim.completes
            .iter()
            .any(|c| c.2 == req && c.3 == SyncStatus::SecurityLevelMismatch)
    );
    assert!(sim.nodes[1].rep.live().is_empty());
}

#[test]
fn a_silent_peer_times_out() {
    let mut sim = Sim::new(2, StoreType::SingleVersion, &[0, 0]);
    sim.cut[1] = true;
    let req = sim.sync(0, 1, SyncMode::PushPull);
    sim.settle();
    assert!(
        sim.completes
            .iter()
            .any(|c| c.2 == req && c.3 == SyncStatus::Timeout)
    );
}

#[test]
fn a_broken_sync_resumes_from_the_watermark() {
    let mut sim = Sim::new(2, StoreType::SingleVersion, &[0, 0]);
    for k in 0..30u8 {
        sim.put(0, k, Some(k));
    }
    sim.sync(0, 1, SyncMode::Push);
    // Hello, HelloAck, three Data packets and their Acks, then the receiver dies.
    for _ in 0..8 {
        sim.deliver(0);
    }
    let acked = sim.nodes[0].rep.peer("dev1").unwrap().unwrap().acked;
    assert!(acked > 0);
    sim.nodes[1].restart();
    sim.queue.clear();
    let mut sent_from = Vec::new();
    sim.sync(0, 1, SyncMode::Push); // joins the running round
    sim.tick(600); // RTO: Hello again? no: go back to the watermark
    for (_, _, m) in &sim.queue {
        if let Msg::Data { from, .. } = m {
            sent_from.push(*from);
        }
    }
    sim.settle();
    assert!(
        sent_from.iter().all(|&f| f >= acked),
        "{sent_from:?} < {acked}"
    );
    assert_eq!(sim.nodes[1].rep.live().len(), 30);
}

#[test]
fn tombstones_go_once_every_peer_acknowledged_them() {
    let mut sim = Sim::new(3, StoreType::SingleVersion, &[0, 0, 0]);
    sim.put(0, 1, Some(1));
    sim.put(0, 1, None);
    let peers = vec!["dev1".to_string(), "dev2".to_string()];
    assert_eq!(sim.nodes[0].rep.gc_tombstones(&peers), 0);
    sim.sync(0, 1, SyncMode::Push);
    sim.settle();
    assert_eq!(
        sim.nodes[0].rep.gc_tombstones(&peers),
        0,
        "dev2 has not seen it"
    );
    sim.sync(0, 2, SyncMode::Push);
    sim.settle();
    assert_eq!(sim.nodes[0].rep.gc_tombstones(&peers), 1);
    assert!(sim.nodes[0].rep.snapshot().is_empty());
}

#[test]
fn remote_changes_are_reported_with_their_kind() {
    let mut a = MemReplica::new("a", [1; 16], false);
    let mut b = MemReplica::new("b", [2; 16], false);
    let r1 = a.put(b"x", Some(b"1".to_vec()), 100);
    let r2 = a.put(b"x", Some(b"2".to_vec()), 101);
    let r3 = a.put(b"x", None, 102);
    let kinds = |c: Vec<Change>| c.into_iter().map(|c| c.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(b.apply("a", vec![r1.clone()]).unwrap()),
        [ChangeKind::Insert]
    );
    assert_eq!(kinds(b.apply("a", vec![r2]).unwrap()), [ChangeKind::Update]);
    assert_eq!(kinds(b.apply("a", vec![r1]).unwrap()), []);
    assert_eq!(kinds(b.apply("a", vec![r3]).unwrap()), [ChangeKind::Delete]);
}

#[test]
fn data_that_does_not_fit_the_store_is_refused() {
    let mut sim = Sim::new(2, StoreType::SingleVersion, &[0, 0]);
    sim.put(0, 1, Some(1));
    sim.sync(0, 1, SyncMode::Push);
    sim.deliver(0); // Hello
    sim.deliver(0); // HelloAck
    let Some((
        f,
        t,
        Msg::Data {
            req,
            from,
            upto,
            mut batch,
        },
    )) = sim.queue.pop_front()
    else {
        panic!("expected data")
    };
    // A partition in a single store, and a key over the limit: neither is applied.
    batch.devices.push("dev0".into());
    batch.entries[0].part = 1;
    sim.queue.push_back((
        f,
        t,
        Msg::Data {
            req,
            from,
            upto,
            batch: batch.clone(),
        },
    ));
    sim.deliver(0);
    assert!(sim.nodes[1].rep.live().is_empty());
    batch.entries[0].part = 0;
    batch.entries[0].key = vec![b'k'; 1025];
    let mut out = Vec::new();
    let n = &mut sim.nodes[1];
    n.eng.handle(
        &mut n.rep,
        "dev0",
        Msg::Hello {
            req: 77,
            version: crate::wire::PROTOCOL_VERSION,
            epoch: [0; 16],
            device_level: 1,
            push: true,
            pull: false,
        },
        0,
        &mut out,
    );
    n.eng.handle(
        &mut n.rep,
        "dev0",
        Msg::Data {
            req: 77,
            from,
            upto,
            batch,
        },
        0,
        &mut out,
    );
    assert!(n.rep.live().is_empty());
    assert!(!out.iter().any(|e| matches!(
        e,
        Event::Send {
            msg: Msg::Ack { .. },
            ..
        }
    )));
}

#[test]
fn a_wider_round_supersedes_a_running_one_without_failing_it() {
    let mut rep = MemReplica::new("a", [1; 16], false);
    let mut eng = SyncEngine::new(
        desc(StoreType::SingleVersion, SecurityLevel::S1),
        1,
        small_cfg(),
    );
    let mut out = Vec::new();
    let push = eng.sync(&mut rep, "b", SyncMode::Push, 0, &mut out);
    // A push joins the push; a push-pull replaces it.
    assert_eq!(eng.sync(&mut rep, "b", SyncMode::Push, 1, &mut out), push);
    out.clear();
    let both = eng.sync(&mut rep, "b", SyncMode::PushPull, 2, &mut out);
    assert_ne!(both, push);
    assert!(out.contains(&Event::Superseded {
        peer: "b".into(),
        old: push,
        new: both
    }));
    assert!(!out.iter().any(|e| matches!(e, Event::Complete { .. })));
    assert_eq!(eng.sync(&mut rep, "b", SyncMode::Pull, 3, &mut out), both);
}

/// Partitions dev1, writes keys on dev0 (and gives them to dev2), then has dev1 delete
/// those keys, which it never saw, `delete_after_ms` later (negative: earlier, by running
/// dev1's clock behind). Heals, syncs everything; returns the simulation.
fn delete_unseen_keys_across_a_partition(sql: &[usize], delete_after_ms: i64) -> Sim {
    let skews = [0, delete_after_ms.min(0), 0];
    let mut sim = Sim::mixed(3, StoreType::SingleVersion, &skews, sql);
    sim.cut[1] = true;
    for k in 0..4 {
        sim.put(0, k, Some(k));
    }
    sim.sync(0, 2, SyncMode::Push);
    sim.settle();
    assert_eq!(sim.nodes[2].rep.live().len(), 4);
    assert!(sim.nodes[1].rep.snapshot().is_empty(), "dev1 saw nothing");
    sim.tick(delete_after_ms.max(1) as u64);
    for k in 0..4 {
        sim.put(1, k, None);
    }
    sim.heal_and_sync_all();
    sim
}

/// Regression (hardening item 4, "a delete can be undone by sync"): a device that had not
/// received keys written elsewhere deleted them; the delete recorded nothing and the keys
/// came back everywhere after sync, although the delete was the later write.
#[test]
fn a_later_delete_of_keys_never_seen_wins_on_every_replica() {
    // dev1 on the memory replica, then on the SQLite store.
    for sql in [&[][..], &[1], &[0, 1, 2]] {
        let sim = delete_unseen_keys_across_a_partition(sql, 1_000);
        for n in &sim.nodes {
            assert!(
                n.rep.live().is_empty(),
                "{} (sql {sql:?}) still holds {:?}",
                n.rep.device(),
                n.rep.live()
            );
        }
        sim.check_converged_and_nothing_lost()
            .unwrap_or_else(|e| panic!("sql {sql:?}: {e}"));
        for n in &sim.nodes {
            let snap = n.rep.snapshot();
            assert!(
                snap.values().all(|(v, _, o)| v.is_none() && o == "dev1"),
                "{}: {snap:?}",
                n.rep.device()
            );
        }
    }
}

/// The rule is last writer wins, not "a delete wins": a delete made earlier (by the HLC)
/// than the put elsewhere loses to it.
#[test]
fn an_earlier_delete_of_keys_never_seen_loses_to_the_later_put() {
    for sql in [&[][..], &[1], &[0, 1, 2]] {
        // dev1's clock runs a minute behind, so its deletes are older than dev0's puts.
        let sim = delete_unseen_keys_across_a_partition(sql, -60_000);
        for n in &sim.nodes {
            assert_eq!(n.rep.live().len(), 4, "{} (sql {sql:?})", n.rep.device());
            assert_eq!(n.rep.get("", b"k\x02"), Some(vec![2; 3]));
        }
        sim.check_converged_and_nothing_lost()
            .unwrap_or_else(|e| panic!("sql {sql:?}: {e}"));
    }
}

/// A tombstone of a key the deleting device never held is collected like any other: only
/// once every peer acknowledged it.
#[test]
fn tombstones_of_unseen_keys_go_once_every_peer_acknowledged_them() {
    for sql in [&[][..], &[0]] {
        let mut sim = Sim::mixed(3, StoreType::SingleVersion, &[0, 0, 0], sql);
        sim.put(1, 1, Some(1));
        sim.tick(10);
        sim.put(0, 1, None);
        let peers = vec!["dev1".to_string(), "dev2".to_string()];
        assert_eq!(sim.nodes[0].rep.gc_tombstones(&peers), 0);
        sim.sync(0, 1, SyncMode::Push);
        sim.settle();
        assert_eq!(sim.nodes[1].rep.get("", b"k\x01"), None, "the delete won");
        assert_eq!(
            sim.nodes[0].rep.gc_tombstones(&peers),
            0,
            "dev2 has not seen it (sql {sql:?})"
        );
        sim.sync(0, 2, SyncMode::Push);
        sim.settle();
        assert_eq!(sim.nodes[0].rep.gc_tombstones(&peers), 1, "sql {sql:?}");
        assert!(sim.nodes[0].rep.snapshot().is_empty());
    }
}
