//! The hdc packet framing: a sans-IO codec, no sockets, no clocks.
//!
//! ```text
//! packet = len:u32 LE | kind:u8 | channel:u32 LE | payload[len]      (header: 9 bytes)
//! ```
//!
//! One session (one TLS connection between a host server and a device, or one plain loopback
//! connection between a client and the host server) carries many channels; a channel is one
//! client command (a shell, a file transfer, one forwarded TCP connection). Channel 0 is the
//! session itself (hello, heartbeat). The byte layout is ours, not OpenHarmony's: OpenHarmony's
//! hdc payload protocol is not a documented contract, and ours is small enough to fuzz whole.

use bytes::{Buf, Bytes, BytesMut};

/// Length of the packet header.
pub const HEADER_LEN: usize = 9;
/// Largest payload of one packet: a file chunk (511 KiB, as OpenHarmony's hdc) plus room for
/// a chunk that compression made larger.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// File transfer chunk size (OpenHarmony's hdc uses 511 KiB too).
pub const CHUNK: usize = 511 * 1024;

/// What a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Opens a channel; payload is a postcard request.
    Open = 1,
    /// Stream bytes of a channel (shell output, file chunk, forwarded TCP bytes).
    Data = 2,
    /// A postcard control message on a channel (window size, signal, file header...).
    Ctrl = 3,
    /// Ends a channel; payload is a postcard exit (status code and message).
    Close = 4,
    /// Flow control: the receiver consumed this many bytes (payload u32 LE) of the channel.
    Credit = 5,
    /// Heartbeat request on channel 0 (payload: u64 LE nonce).
    Ping = 6,
    /// Heartbeat answer on channel 0 (payload: the nonce).
    Pong = 7,
    /// Session greeting on channel 0 (postcard hello), first packet each way.
    Hello = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Open,
            2 => Kind::Data,
            3 => Kind::Ctrl,
            4 => Kind::Close,
            5 => Kind::Credit,
            6 => Kind::Ping,
            7 => Kind::Pong,
            8 => Kind::Hello,
            _ => return None,
        })
    }
    /// Session-level kinds travel on channel 0 only; channel kinds never on channel 0.
    fn on_session(self) -> bool {
        matches!(self, Kind::Ping | Kind::Pong | Kind::Hello)
    }
}

/// One decoded packet. The payload shares the receive buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// What it is.
    pub kind: Kind,
    /// Which channel (0 = the session).
    pub channel: u32,
    /// The payload.
    pub payload: Bytes,
}

/// Malformed input: the session that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The kind byte is not one we know.
    #[error("malformed packet: unknown kind {0}")]
    UnknownKind(u8),
    /// The length is over [`MAX_PAYLOAD`].
    #[error("malformed packet: payload of {0} bytes, the limit is {MAX_PAYLOAD}")]
    TooLong(u32),
    /// A session kind on a channel or a channel kind on channel 0.
    #[error("malformed packet: kind {0:?} on channel {1}")]
    WrongChannel(Kind, u32),
    /// A fixed-size payload (credit, ping) has the wrong size.
    #[error("malformed packet: kind {0:?} with a {1}-byte payload")]
    BadSize(Kind, usize),
}

/// The header of a packet with a `len`-byte payload.
pub fn header(kind: Kind, channel: u32, len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_PAYLOAD);
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind as u8;
    h[5..9].copy_from_slice(&channel.to_le_bytes());
    h
}

/// A whole packet as one buffer (for small packets and tests; large ones are written as
/// header + payload without the copy).
pub fn encode(kind: Kind, channel: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&header(kind, channel, payload.len()));
    v.extend_from_slice(payload);
    v
}

/// Takes one whole packet off the front of `buf`, if one is there. `Ok(None)`: more bytes
/// needed (the caller reads and calls again). An error poisons the stream: close it.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = Kind::from_u8(buf[4]).ok_or(FrameError::UnknownKind(buf[4]))?;
    let channel = u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    if kind.on_session() != (channel == 0) {
        return Err(FrameError::WrongChannel(kind, channel));
    }
    let want = match kind {
        Kind::Credit => Some(4),
        Kind::Ping | Kind::Pong => Some(8),
        _ => None,
    };
    if let Some(w) = want
        && w != len as usize
    {
        return Err(FrameError::BadSize(kind, len as usize));
    }
    if buf.len() < HEADER_LEN + len as usize {
        // Make room for the rest at once, so big chunks arrive in few reads.
        buf.reserve(HEADER_LEN + len as usize - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let payload = buf.split_to(len as usize).freeze();
    Ok(Some(Packet {
        kind,
        channel,
        payload,
    }))
}

/// The u32 of a credit packet or the u64 of a ping (sizes were checked by [`decode`]).
pub fn credit_of(p: &Packet) -> u32 {
    let b = &p.payload;
    if b.len() == 4 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_partial_input() {
        let a = encode(Kind::Data, 7, b"hello");
        let b = encode(Kind::Ping, 0, &42u64.to_le_bytes());
        let all: Vec<u8> = [a.clone(), b.clone()].concat();
        // Byte by byte: nothing until a whole packet is in.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in &all {
            buf.extend_from_slice(&[*byte]);
            while let Some(p) = decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind, Kind::Data);
        assert_eq!(got[0].channel, 7);
        assert_eq!(&got[0].payload[..], b"hello");
        assert_eq!(got[1].kind, Kind::Ping);
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_garbage() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 0, 99, 1, 0, 0, 0][..]);
        assert_eq!(decode(&mut b), Err(FrameError::UnknownKind(99)));
        let mut b = BytesMut::from(&header(Kind::Data, 1, 0)[..]);
        b[0..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert!(matches!(decode(&mut b), Err(FrameError::TooLong(_))));
        let mut b = BytesMut::from(&encode(Kind::Data, 0, b"x")[..]);
        assert!(matches!(decode(&mut b), Err(FrameError::WrongChannel(..))));
        let mut b = BytesMut::from(&encode(Kind::Ping, 3, &[0; 8])[..]);
        assert!(matches!(decode(&mut b), Err(FrameError::WrongChannel(..))));
        let mut b = BytesMut::from(&encode(Kind::Credit, 3, &[0; 3])[..]);
        assert!(matches!(decode(&mut b), Err(FrameError::BadSize(..))));
    }

    #[test]
    fn largest_payload_passes() {
        let p = vec![7u8; MAX_PAYLOAD];
        let mut b = BytesMut::from(&encode(Kind::Data, 1, &p)[..]);
        let got = decode(&mut b).unwrap().unwrap();
        assert_eq!(got.payload.len(), MAX_PAYLOAD);
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_packets(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            cut in 0usize..4000,
        ) {
            let mut wire = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                wire.extend(encode(Kind::Data, i as u32 + 1, p));
            }
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(part);
                while let Some(p) = decode(&mut buf).unwrap() {
                    got.push(p.payload.to_vec());
                }
            }
            prop_assert_eq!(got, payloads);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..8 {
                match decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
