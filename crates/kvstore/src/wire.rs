//! The sync protocol's wire format (our own; OpenHarmony's distributeddb packets are not
//! interoperable with a QUIC soft bus anyway). Every message is one [`Envelope`] encoded with
//! postcard, carried as soft-bus Bytes; an envelope larger than one Bytes frame is split into
//! [`fragment`]s that a [`Reassembler`] joins (the soft-bus socket is an ordered stream).
//!
//! Byte layout of one fragment: `flag: u8` (0 = last piece, 1 = more follow), then the piece.
//! The joined bytes are `Envelope` in postcard: varint integers, length-prefixed byte strings.
//! To keep the wire close to the payload (goal: ≤ 1.2x the key and value bytes), a [`Batch`]
//! names each device once in a table and each entry carries its timestamp as a signed varint
//! delta from the previous entry's.

use crate::limits::{SecurityLevel, StoreType};
use serde::{Deserialize, Serialize};

/// Protocol version carried in [`Msg::Hello`]; a peer with another version is refused with
/// [`SyncStatus::ProtocolMismatch`].
pub const PROTOCOL_VERSION: u16 = 1;
/// Most entries in one data packet.
pub const MAX_PACKET_ENTRIES: usize = 4000;
/// Most key + value bytes in one data packet (a single larger entry travels alone).
pub const MAX_PACKET_BYTES: usize = 1024 * 1024;
/// Data packets a sender keeps unacknowledged at once.
pub const WINDOW: usize = 3;
/// Largest joined envelope a [`Reassembler`] accepts: one maximal entry plus headroom.
pub const MAX_ENVELOPE: usize = 8 * 1024 * 1024;

/// Byte strings as postcard byte arrays (length + raw bytes), not sequences of u8.
mod blob {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::new();
            while let Some(b) = a.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(V)
    }

    pub(super) mod opt {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        #[derive(Serialize, Deserialize)]
        struct W(#[serde(with = "super")] Vec<u8>);

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&W(b.clone())),
                None => s.serialize_none(),
            }
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// How a sync ended for one device (OpenHarmony's per-device `Status`, plus our reasons).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncStatus {
    /// Everything was exchanged.
    Success,
    /// The peer stopped answering.
    Timeout,
    /// The peer device is not online (or went offline during the sync).
    DeviceOffline,
    /// The caller, or the peer's side, lacks DISTRIBUTED_DATASYNC.
    PermissionDenied,
    /// The receiving device's security level does not cover the store's level.
    SecurityLevelMismatch,
    /// The peer's store has another type or security level: such stores never sync.
    StoreMismatch,
    /// The peer speaks another protocol version.
    ProtocolMismatch,
    /// Anything else (storage failure on one side), with the reason.
    Failed(String),
}

impl SyncStatus {
    /// As printed by `oxh kv sync`.
    pub fn as_str(&self) -> &str {
        match self {
            SyncStatus::Success => "success",
            SyncStatus::Timeout => "timeout",
            SyncStatus::DeviceOffline => "device offline",
            SyncStatus::PermissionDenied => "permission denied",
            SyncStatus::SecurityLevelMismatch => "security level mismatch",
            SyncStatus::StoreMismatch => "store type or security level differs",
            SyncStatus::ProtocolMismatch => "protocol version mismatch",
            SyncStatus::Failed(s) => s,
        }
    }
}

/// Which store a message is about, and what it must be: stores of another type or level
/// never exchange data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoreDesc {
    /// The app.
    pub bundle: String,
    /// The store.
    pub store_id: String,
    /// Single or device-collaboration.
    pub kind: StoreType,
    /// S1..S4.
    pub level: SecurityLevel,
}

/// One write as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// The partition: 0 for a single-version store, else 1 + index into [`Batch::devices`].
    pub part: u32,
    /// Index into [`Batch::devices`] of the writing device.
    pub origin: u32,
    /// Timestamp minus the previous entry's (the first: minus [`Batch::base_ts`]).
    pub ts_delta: i64,
    /// The key.
    #[serde(with = "blob")]
    pub key: Vec<u8>,
    /// The value; `None` is a delete (tombstone).
    #[serde(with = "blob::opt")]
    pub value: Option<Vec<u8>>,
}

/// Writes in one data packet, with devices named once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Device ids referenced by the entries.
    pub devices: Vec<String>,
    /// The timestamp the first delta is taken from.
    pub base_ts: u64,
    /// The entries.
    pub entries: Vec<WireEntry>,
}

/// A sync message; `B` is what a data packet carries (the KV store's [`Batch`] by default,
/// the relational store's changesets for its tables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg<B = Batch> {
    /// Opens sync round `req`: capabilities, the sender's store epoch, and what it wants.
    Hello {
        /// Round id, chosen by the initiator.
        req: u64,
        /// [`PROTOCOL_VERSION`].
        version: u16,
        /// The initiator's store epoch (random, new when the store file is created).
        epoch: [u8; 16],
        /// The initiator's device security level (1..=5).
        device_level: u8,
        /// The initiator will push its writes.
        push: bool,
        /// The initiator asks for the responder's writes.
        pull: bool,
    },
    /// The responder's answer.
    HelloAck {
        /// Round id.
        req: u64,
        /// The responder's store epoch.
        epoch: [u8; 16],
        /// The responder's device security level.
        device_level: u8,
        /// `Success` to go on, else why not.
        status: SyncStatus,
    },
    /// Writes with local sequence numbers in `(from, upto]` of the sender.
    Data {
        /// Round id.
        req: u64,
        /// Range start (exclusive).
        from: u64,
        /// Range end (inclusive).
        upto: u64,
        /// The writes.
        batch: B,
    },
    /// The receiver applied (committed) the packet `(from, upto]`.
    Ack {
        /// Round id.
        req: u64,
        /// Range start.
        from: u64,
        /// Range end.
        upto: u64,
    },
    /// The sender of a pull has sent and seen acknowledged everything it had.
    Done {
        /// Round id.
        req: u64,
    },
    /// The receiver does not know round `req` (it restarted): say Hello again.
    Nack {
        /// Round id.
        req: u64,
    },
}

/// A message for one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The store.
    pub store: StoreDesc,
    /// The message.
    pub msg: Msg,
}

/// Malformed bytes from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a valid envelope.
    #[error("malformed sync message: {0}")]
    Decode(String),
    /// Bigger than [`MAX_ENVELOPE`].
    #[error("sync message of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// Encodes an envelope.
pub fn encode(e: &Envelope) -> Vec<u8> {
    postcard::to_allocvec(e).unwrap_or_default()
}

/// Decodes an envelope from a peer.
pub fn decode(b: &[u8]) -> Result<Envelope, WireError> {
    if b.len() > MAX_ENVELOPE {
        return Err(WireError::TooLarge(b.len()));
    }
    postcard::from_bytes(b).map_err(|e| WireError::Decode(e.to_string()))
}

/// The channel of the KV store's own messages on the data service's sync session.
pub const CHANNEL_KV: u8 = 0;
/// The channel of the relational store's (the data service's other feature, which shares
/// the session: one socket per peer, as OpenHarmony's data service shares its communicator).
pub const CHANNEL_RDB: u8 = 1;
/// The channel of the distributed scheduler's continuation messages (the session is the
/// one authenticated link between two bound daemons, so each message is the peer's).
pub const CHANNEL_DMS: u8 = 2;
/// The channel of the distributed scheduler's mission sync (each device's movable missions).
pub const CHANNEL_DMS_MISSIONS: u8 = 3;
/// Channels a fragment's flag byte may name.
const CHANNELS: u8 = 4;

/// Splits encoded bytes into fragments of at most `max` bytes each (flag byte included),
/// on the KV channel.
pub fn fragment(bytes: &[u8], max: usize) -> Vec<Vec<u8>> {
    fragment_on(CHANNEL_KV, bytes, max)
}

/// Splits one message of `channel` into fragments: the flag byte is `channel << 1 | more`,
/// so the KV channel's bytes are what they were before channels existed.
pub fn fragment_on(channel: u8, bytes: &[u8], max: usize) -> Vec<Vec<u8>> {
    let piece = max.saturating_sub(1).max(1);
    let tag = channel << 1;
    if bytes.is_empty() {
        return vec![vec![tag]];
    }
    let n = bytes.len().div_ceil(piece);
    bytes
        .chunks(piece)
        .enumerate()
        .map(|(i, c)| {
            let mut v = Vec::with_capacity(c.len() + 1);
            v.push(tag | u8::from(i + 1 < n));
            v.extend_from_slice(c);
            v
        })
        .collect()
}

/// A whole message from a peer: the KV store's, decoded, or another channel's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A KV sync message.
    Kv(Envelope),
    /// The bytes of a message on another channel (undecoded: its feature decodes them).
    Other(u8, Vec<u8>),
}

/// Joins fragments from one ordered stream (a sender's fragments of one message are never
/// interleaved with another message's).
#[derive(Debug, Default)]
pub struct Reassembler {
    buf: Vec<u8>,
    channel: Option<u8>,
}

impl Reassembler {
    /// Takes one fragment; returns the message once its last fragment arrived.
    pub fn push_frame(&mut self, frag: &[u8]) -> Result<Option<Frame>, WireError> {
        let (&flag, body) = frag
            .split_first()
            .ok_or_else(|| WireError::Decode("empty fragment".into()))?;
        let (channel, more) = (flag >> 1, flag & 1 == 1);
        if channel >= CHANNELS || self.channel.is_some_and(|c| c != channel) {
            self.buf.clear();
            self.channel = None;
            return Err(WireError::Decode(format!("bad fragment flag {flag}")));
        }
        if self.buf.len() + body.len() > MAX_ENVELOPE {
            let n = self.buf.len() + body.len();
            self.buf.clear();
            self.channel = None;
            return Err(WireError::TooLarge(n));
        }
        if more {
            self.buf.extend_from_slice(body);
            self.channel = Some(channel);
            return Ok(None);
        }
        self.channel = None;
        let whole = if self.buf.is_empty() {
            body.to_vec()
        } else {
            self.buf.extend_from_slice(body);
            std::mem::take(&mut self.buf)
        };
        if channel == CHANNEL_KV {
            decode(&whole).map(|e| Some(Frame::Kv(e)))
        } else {
            Ok(Some(Frame::Other(channel, whole)))
        }
    }

    /// Takes one fragment of the KV channel; returns the envelope once its last fragment
    /// arrived (another channel's message is an error here).
    pub fn push(&mut self, frag: &[u8]) -> Result<Option<Envelope>, WireError> {
        match self.push_frame(frag)? {
            None => Ok(None),
            Some(Frame::Kv(e)) => Ok(Some(e)),
            Some(Frame::Other(c, _)) => Err(WireError::Decode(format!(
                "a message of channel {c} where the KV channel's was expected"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(msg: Msg) -> Envelope {
        Envelope {
            store: StoreDesc {
                bundle: "com.example".into(),
                store_id: "s1".into(),
                kind: StoreType::SingleVersion,
                level: SecurityLevel::S1,
            },
            msg,
        }
    }

    #[test]
    fn data_round_trips_and_stays_close_to_the_payload() {
        let entries: Vec<WireEntry> = (0..1000)
            .map(|i| WireEntry {
                part: 0,
                origin: 0,
                ts_delta: 1,
                key: format!("key{i:06}").into_bytes(),
                value: Some(vec![7u8; 100]),
            })
            .collect();
        let payload: usize = entries
            .iter()
            .map(|e| e.key.len() + e.value.as_ref().map_or(0, Vec::len))
            .sum();
        let e = env(Msg::Data {
            req: 1,
            from: 0,
            upto: 1000,
            batch: Batch {
                devices: vec!["d".repeat(64)],
                base_ts: 1 << 40,
                entries,
            },
        });
        let b = encode(&e);
        assert_eq!(decode(&b).unwrap(), e);
        let ratio = b.len() as f64 / payload as f64;
        assert!(ratio < 1.1, "{ratio}");
    }

    #[test]
    fn fragments_join_in_order_and_garbage_is_refused() {
        let e = env(Msg::Data {
            req: 9,
            from: 3,
            upto: 4,
            batch: Batch {
                devices: vec!["a".into()],
                base_ts: 5,
                entries: vec![WireEntry {
                    part: 1,
                    origin: 0,
                    ts_delta: 0,
                    key: b"k".to_vec(),
                    value: Some(vec![1; 10_000]),
                }],
            },
        });
        let bytes = encode(&e);
        let frags = fragment(&bytes, 1000);
        assert!(frags.len() > 10);
        let mut r = Reassembler::default();
        let mut got = None;
        for f in &frags {
            if let Some(x) = r.push(f).unwrap() {
                got = Some(x);
            }
        }
        assert_eq!(got, Some(e));
        assert!(r.push(&[]).is_err());
        assert!(r.push(&[CHANNELS << 1 | 1, 1, 2]).is_err());
        assert!(r.push(&[0, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0xff; 40]).is_err());
    }

    #[test]
    fn channels_keep_their_messages_apart() {
        let mut r = Reassembler::default();
        let big = vec![5u8; 3000];
        let frags = fragment_on(CHANNEL_RDB, &big, 1000);
        assert!(frags.iter().all(|f| f[0] >> 1 == CHANNEL_RDB));
        let mut got = None;
        for f in &frags {
            if let Some(x) = r.push_frame(f).unwrap() {
                got = Some(x);
            }
        }
        assert_eq!(got, Some(Frame::Other(CHANNEL_RDB, big)));
        // A KV fragment in the middle of an RDB message is refused, not joined.
        assert!(r.push_frame(&frags[0]).unwrap().is_none());
        assert!(r.push_frame(&[0, 1, 2]).is_err());
        // An unknown channel is refused.
        assert!(r.push_frame(&[CHANNELS << 1, 1]).is_err());
        // The KV-only reader refuses another channel's message.
        assert!(r.push(&fragment_on(CHANNEL_RDB, b"x", 100)[0]).is_err());
        // The scheduler's channel is its own too.
        let mut r = Reassembler::default();
        let f = fragment_on(CHANNEL_DMS, b"prepare", 100);
        assert_eq!(
            r.push_frame(&f[0]).unwrap(),
            Some(Frame::Other(CHANNEL_DMS, b"prepare".to_vec()))
        );
    }
}
