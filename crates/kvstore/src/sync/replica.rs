//! What a replica holds, the [`Replica`] trait of the KV store's replicas, and the
//! [`SyncReplica`] trait the sync engine reads and writes any replica through.

use super::codec::{batch_of, records_of};
use crate::limits::StoreType;
use crate::wire::{Batch, StoreDesc};

/// A write as a replica holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partition: `""` in a single-version store, the writing device in a device store.
    pub part: String,
    /// The key.
    pub key: Vec<u8>,
    /// The value, `None` for a delete (tombstone).
    pub value: Option<Vec<u8>>,
    /// HLC timestamp of the write.
    pub ts: u64,
    /// Device that made the write.
    pub origin: String,
}

/// What an applied write did to the visible data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    /// A key that had no value got one.
    Insert,
    /// A key's value was replaced.
    Update,
    /// A key's value was deleted.
    Delete,
}

/// One visible change, for dataChange events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The write.
    pub record: Record,
}

/// What a replica remembers of a peer: its store epoch and how far it has acknowledged our
/// writes (our local sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerState {
    /// The peer's store epoch when it last acknowledged.
    pub epoch: [u8; 16],
    /// Our local sequence number up to which the peer holds our writes.
    pub acked: u64,
}

/// What every replica keeps for the sync: its epoch and each peer's acknowledgement. Errors
/// are messages: they end the sync round with
/// [`SyncStatus::Failed`](crate::wire::SyncStatus::Failed).
pub trait ReplicaState {
    /// The store's epoch: random, chosen when the store was created.
    fn epoch(&self) -> [u8; 16];
    /// What we know of `peer`.
    fn peer(&self, peer: &str) -> Result<Option<PeerState>, String>;
    /// Records that `peer` acknowledged up to `acked` (durably, before returning).
    fn set_peer(&mut self, peer: &str, st: PeerState) -> Result<(), String>;
    /// `peer`'s store has a new epoch: forget what it acknowledged, so that everything is sent
    /// again, including writes that came from it.
    fn reset_peer(&mut self, peer: &str, epoch: [u8; 16]) -> Result<(), String>;
}

/// A KV store's replica: records, last writer wins per key.
pub trait Replica: ReplicaState {
    /// Writes with local sequence numbers in `(after, upto]`, oldest first, leaving out those
    /// received from `skip_src` (the peer has them), at most `max_entries` entries or about
    /// `max_bytes` key and value bytes (at least one entry). Returns them and `upto`, the last
    /// sequence number looked at; `upto == after` when there is nothing more.
    fn changes_since(
        &mut self,
        after: u64,
        skip_src: &str,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Record>, u64), String>;
    /// Applies writes received from `src` in one transaction; a write replaces the stored one
    /// only if it wins (LWW on (HLC, device)). Returns the visible changes.
    fn apply(&mut self, src: &str, recs: Vec<Record>) -> Result<Vec<Change>, String>;
}

/// What the [`SyncEngine`](super::SyncEngine) works on: a replica whose writes travel as
/// `Batch`es and whose applied writes are reported as `Change`s. The KV store's replicas are
/// [`Replica`]s (records, last writer wins per key); the relational store's tables implement
/// this directly (changesets, merged per column), so both run the one protocol.
pub trait SyncReplica: ReplicaState {
    /// What a data packet carries.
    type Batch;
    /// What applying a packet reports (dataChange).
    type Change;
    /// The writes with local sequence numbers in `(after, upto]` the peer `skip_src` may
    /// lack, at most `max_entries` entries or about `max_bytes` bytes (at least one), and
    /// `upto`: the last sequence number looked at (`after` when there is nothing more).
    fn batch_since(
        &mut self,
        after: u64,
        skip_src: &str,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Self::Batch, u64), String>;
    /// Checks a batch from `src` against the store `desc` and applies it in one transaction.
    fn apply_batch(
        &mut self,
        desc: &StoreDesc,
        src: &str,
        batch: Self::Batch,
    ) -> Result<Vec<Self::Change>, String>;
}

/// Received writes must fit the store: a single store has no partitions, a device store's
/// entry sits in the partition of the device that wrote it, and keys and values keep the
/// limits a local write has.
fn valid(desc: &StoreDesc, recs: &[Record]) -> bool {
    recs.iter().all(|r| {
        let part_ok = match desc.kind {
            StoreType::SingleVersion => r.part.is_empty(),
            StoreType::DeviceCollaboration => !r.part.is_empty() && r.part == r.origin,
        };
        part_ok
            && !r.origin.is_empty()
            && crate::limits::check_key(desc.kind, &r.key).is_ok()
            && r.value
                .as_ref()
                .is_none_or(|v| crate::limits::check_value(v).is_ok())
    })
}

impl<R: Replica> SyncReplica for R {
    type Batch = Batch;
    type Change = Change;
    fn batch_since(
        &mut self,
        after: u64,
        skip_src: &str,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Batch, u64), String> {
        let (recs, upto) = self.changes_since(after, skip_src, max_entries, max_bytes)?;
        Ok((batch_of(recs), upto))
    }
    fn apply_batch(
        &mut self,
        desc: &StoreDesc,
        src: &str,
        batch: Batch,
    ) -> Result<Vec<Change>, String> {
        let recs = records_of(batch)
            .filter(|r| valid(desc, r))
            .ok_or_else(|| "malformed data packet".to_string())?;
        self.apply(src, recs)
    }
}
