//! What a replica holds and the [`Replica`] trait the sync engine reads and writes it through.

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

/// The storage a [`SyncEngine`](super::SyncEngine) works on. Errors are messages: they end
/// the sync round with [`SyncStatus::Failed`](crate::wire::SyncStatus::Failed).
pub trait Replica {
    /// The store's epoch: random, chosen when the store was created.
    fn epoch(&self) -> [u8; 16];
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
    /// What we know of `peer`.
    fn peer(&self, peer: &str) -> Result<Option<PeerState>, String>;
    /// Records that `peer` acknowledged up to `acked` (durably, before returning).
    fn set_peer(&mut self, peer: &str, st: PeerState) -> Result<(), String>;
    /// `peer`'s store has a new epoch: forget what it acknowledged, so that everything is sent
    /// again, including writes that came from it.
    fn reset_peer(&mut self, peer: &str, epoch: [u8; 16]) -> Result<(), String>;
}
