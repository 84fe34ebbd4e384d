//! The in-memory [`Replica`] the simulation tests and the benchmark's peer run on.

use super::{Change, ChangeKind, PeerState, Record, Replica, ReplicaState};
use crate::hlc::{Hlc, Version, wins};
use std::collections::{BTreeMap, HashMap};

/// A row as [`MemReplica::snapshot`] shows it: value (`None`: tombstone), HLC timestamp,
/// origin device.
pub type Snap = (Option<Vec<u8>>, u64, String);

/// An in-memory replica: what the simulation tests and the benchmark's peer run on. It keeps
/// the same rules as the SQLite store (sequence numbers, LWW, tombstones, peer watermarks).
#[derive(Debug, Clone)]
pub struct MemReplica {
    /// This device.
    pub device: String,
    /// The store's type decides the partition of local writes.
    pub device_store: bool,
    epoch: [u8; 16],
    hlc: Hlc,
    rows: BTreeMap<(String, Vec<u8>), MemRow>,
    by_seq: BTreeMap<u64, (String, Vec<u8>)>,
    seq: u64,
    peers: HashMap<String, PeerState>,
}

#[derive(Debug, Clone)]
struct MemRow {
    value: Option<Vec<u8>>,
    ts: u64,
    origin: String,
    seq: u64,
    src: String,
}

impl MemReplica {
    /// An empty replica for `device` with store epoch `epoch`.
    pub fn new(device: &str, epoch: [u8; 16], device_store: bool) -> Self {
        Self {
            device: device.into(),
            device_store,
            epoch,
            hlc: Hlc::new(0),
            rows: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            seq: 0,
            peers: HashMap::new(),
        }
    }

    fn write(&mut self, src: &str, rec: Record) {
        let k = (rec.part.clone(), rec.key.clone());
        if let Some(old) = self.rows.get(&k) {
            self.by_seq.remove(&old.seq);
        }
        self.seq += 1;
        self.by_seq.insert(self.seq, k.clone());
        self.rows.insert(
            k,
            MemRow {
                value: rec.value,
                ts: rec.ts,
                origin: rec.origin,
                seq: self.seq,
                src: src.into(),
            },
        );
    }

    /// A local put (or delete with `None`) at physical time `now_ms`; returns its record.
    pub fn put(&mut self, key: &[u8], value: Option<Vec<u8>>, now_ms: u64) -> Record {
        let ts = self.hlc.now(now_ms);
        let part = if self.device_store {
            self.device.clone()
        } else {
            String::new()
        };
        let rec = Record {
            part,
            key: key.to_vec(),
            value,
            ts,
            origin: self.device.clone(),
        };
        self.write("", rec.clone());
        rec
    }

    /// The visible value of `(part, key)`.
    pub fn get(&self, part: &str, key: &[u8]) -> Option<&[u8]> {
        self.rows
            .get(&(part.to_string(), key.to_vec()))
            .and_then(|r| r.value.as_deref())
    }

    /// Every row, tombstones included, as `(part, key) -> (value, ts, origin)`.
    pub fn snapshot(&self) -> BTreeMap<(String, Vec<u8>), Snap> {
        self.rows
            .iter()
            .map(|(k, r)| (k.clone(), (r.value.clone(), r.ts, r.origin.clone())))
            .collect()
    }

    /// The visible data only.
    pub fn live(&self) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
        self.rows
            .iter()
            .filter_map(|(k, r)| r.value.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    /// Removes tombstones that every one of `peers` has acknowledged.
    pub fn gc_tombstones(&mut self, peers: &[String]) -> usize {
        let Some(min) = peers
            .iter()
            .map(|p| self.peers.get(p).map_or(0, |s| s.acked))
            .min()
        else {
            return 0;
        };
        let gone: Vec<(String, Vec<u8>)> = self
            .rows
            .iter()
            .filter(|(_, r)| r.value.is_none() && r.seq <= min)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            if let Some(r) = self.rows.remove(k) {
                self.by_seq.remove(&r.seq);
            }
        }
        gone.len()
    }

    /// A restart: what survives is what was durable (everything; the clock is re-seeded
    /// from the largest stored timestamp, as the SQLite store does).
    pub fn restarted(mut self) -> Self {
        let floor = self.rows.values().map(|r| r.ts).max().unwrap_or(0);
        self.hlc = Hlc::new(floor);
        self
    }
}

impl ReplicaState for MemReplica {
    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    fn peer(&self, peer: &str) -> Result<Option<PeerState>, String> {
        Ok(self.peers.get(peer).copied())
    }

    fn set_peer(&mut self, peer: &str, st: PeerState) -> Result<(), String> {
        self.peers.insert(peer.into(), st);
        Ok(())
    }

    fn reset_peer(&mut self, peer: &str, epoch: [u8; 16]) -> Result<(), String> {
        self.peers
            .insert(peer.into(), PeerState { epoch, acked: 0 });
        for r in self.rows.values_mut() {
            if r.src == peer {
                r.src.clear();
            }
        }
        Ok(())
    }
}

impl Replica for MemReplica {
    fn changes_since(
        &mut self,
        after: u64,
        skip_src: &str,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Record>, u64), String> {
        let mut out = Vec::new();
        let mut upto = after;
        let mut bytes = 0usize;
        for (&seq, k) in self.by_seq.range(after + 1..) {
            if out.len() >= max_entries || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            upto = seq;
            let Some(r) = self.rows.get(k) else { continue };
            if r.src == skip_src {
                continue;
            }
            bytes += k.1.len() + r.value.as_ref().map_or(0, Vec::len);
            out.push(Record {
                part: k.0.clone(),
                key: k.1.clone(),
                value: r.value.clone(),
                ts: r.ts,
                origin: r.origin.clone(),
            });
        }
        Ok((out, upto))
    }

    fn apply(&mut self, src: &str, recs: Vec<Record>) -> Result<Vec<Change>, String> {
        let mut changes = Vec::new();
        for rec in recs {
            self.hlc.observe(rec.ts);
            let k = (rec.part.clone(), rec.key.clone());
            let old_live = match self.rows.get(&k) {
                Some(old) => {
                    let cur = Version {
                        ts: old.ts,
                        device: &old.origin,
                    };
                    if !wins(
                        Version {
                            ts: rec.ts,
                            device: &rec.origin,
                        },
                        cur,
                    ) {
                        continue;
                    }
                    old.value.is_some()
                }
                None => false,
            };
            let kind = match (old_live, rec.value.is_some()) {
                (false, true) => Some(ChangeKind::Insert),
                (true, true) => Some(ChangeKind::Update),
                (true, false) => Some(ChangeKind::Delete),
                (false, false) => None,
            };
            if let Some(kind) = kind {
                changes.push(Change {
                    kind,
                    record: rec.clone(),
                });
            }
            self.write(src, rec);
        }
        Ok(changes)
    }
}
