//! The hdc packet framing: a sans-IO codec, no sockets, no clocks. The packets are
//! OpenHarmony's session packets ([`crate::ohos`]):
//!
//! ```text
//! packet = "HW" | 0 0 | 1 | headSize:u16 BE | dataSize:u32 BE
//!          | PayloadProtect{channelId, commandFlag, checkSum 0, vCode 9} | payload
//! ```
//!
//! One session (one connection between a host server and a device) carries many channels; a
//! channel is one client command (a shell, a file transfer, one forwarded TCP connection).
//! Channel 0 is the session itself (handshake, heartbeat). The session's handshake is
//! OpenHarmony's CMD_KERNEL_HANDSHAKE; between two oxharmony peers (the `oxh` feature of the
//! handshake) a channel's life travels as commands of our own, in a range OpenHarmony leaves
//! unused, so that what OpenHarmony's commands cannot say (exit status, stderr, window size,
//! signals, credits, checksums) keeps its meaning: [`Kind`]'s command ids.

use crate::ohos::{self, PayloadProtect};
use bytes::{Buf, Bytes, BytesMut};

/// Length of the fixed part of a packet's header (flag, reserve, version, sizes).
pub const HEADER_LEN: usize = ohos::HEAD_LEN;
/// Longest header: the fixed part and the largest PayloadProtect we write.
pub const MAX_HEADER: usize = HEADER_LEN + 20;
/// Largest payload of one packet: a file chunk (511 KiB, as OpenHarmony's hdc) plus room for
/// a chunk that compression made larger.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// File transfer chunk size (OpenHarmony's hdc uses 511 KiB too).
pub const CHUNK: usize = 511 * 1024;

/// What a packet is, and the command id it travels as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// Opens a channel; payload is a postcard request.
    Open = 0x7A01,
    /// Stream bytes of a channel (shell output, file chunk, forwarded TCP bytes).
    Data = 0x7A02,
    /// A postcard control message on a channel (window size, signal, file header...).
    Ctrl = 0x7A03,
    /// Ends a channel; payload is a postcard exit (status code and message).
    Close = 0x7A04,
    /// Flow control: the receiver consumed this many bytes (payload u32 LE) of the channel.
    Credit = 0x7A05,
    /// Heartbeat request on channel 0 (payload: u64 LE nonce).
    Ping = 0x7A06,
    /// Heartbeat answer on channel 0 (payload: the nonce).
    Pong = 0x7A07,
    /// Session greeting on channel 0: OpenHarmony's CMD_KERNEL_HANDSHAKE (a serialized
    /// SessionHandShake), first packet each way.
    Hello = 1,
}

impl Kind {
    /// The kind of a command id, if it is one of ours.
    pub fn from_command(c: u32) -> Option<Kind> {
        Some(match c {
            0x7A01 => Kind::Open,
            0x7A02 => Kind::Data,
            0x7A03 => Kind::Ctrl,
            0x7A04 => Kind::Close,
            0x7A05 => Kind::Credit,
            0x7A06 => Kind::Ping,
            0x7A07 => Kind::Pong,
            1 => Kind::Hello,
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
    /// Not a packet: the flag is not "HW", or the PayloadProtect does not parse or check.
    #[error("malformed packet: {0}")]
    NotAPacket(String),
    /// The command is not one a session between oxharmony peers uses.
    #[error("malformed packet: unknown command {0}")]
    UnknownKind(u32),
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

/// A packet's header (fixed part and PayloadProtect), written before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; MAX_HEADER],
    len: u8,
}

impl std::ops::Deref for Header {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The header of a packet with a `len`-byte payload.
pub fn header(kind: Kind, channel: u32, len: usize) -> Header {
    debug_assert!(len <= MAX_PAYLOAD);
    let p = PayloadProtect::new(channel, kind as u32).encode();
    let mut h = Header {
        bytes: [0u8; MAX_HEADER],
        len: (HEADER_LEN + p.len()) as u8,
    };
    h.bytes[..2].copy_from_slice(ohos::PACKET_FLAG);
    h.bytes[4] = ohos::VER_PROTOCOL;
    h.bytes[5..7].copy_from_slice(&(p.len() as u16).to_be_bytes());
    h.bytes[7..11].copy_from_slice(&(len as u32).to_be_bytes());
    h.bytes[HEADER_LEN..HEADER_LEN + p.len()].copy_from_slice(&p);
    h
}

/// A whole packet as one buffer (for small packets and tests; large ones are written as
/// header + payload without the copy).
pub fn encode(kind: Kind, channel: u32, payload: &[u8]) -> Vec<u8> {
    let h = header(kind, channel, payload.len());
    let mut v = Vec::with_capacity(h.len() + payload.len());
    v.extend_from_slice(&h);
    v.extend_from_slice(payload);
    v
}

/// Takes one whole packet off the front of `buf`, if one is there. `Ok(None)`: more bytes
/// needed (the caller reads and calls again). An error poisons the stream: close it.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if &buf[..2] != ohos::PACKET_FLAG {
        return Err(FrameError::NotAPacket(format!(
            "flag {:02x}{:02x} is not \"HW\"",
            buf[0], buf[1]
        )));
    }
    let head = usize::from(u16::from_be_bytes([buf[5], buf[6]]));
    let len = u32::from_be_bytes([buf[7], buf[8], buf[9], buf[10]]);
    if head > ohos::MAX_PROTECT {
        return Err(FrameError::NotAPacket(format!(
            "a PayloadProtect of {head} bytes"
        )));
    }
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    if buf.len() < HEADER_LEN + head {
        return Ok(None);
    }
    let protect = PayloadProtect::decode(&buf[HEADER_LEN..HEADER_LEN + head])
        .map_err(|e| FrameError::NotAPacket(e.to_string()))?;
    if protect.v_code != ohos::PROTECT_VCODE {
        return Err(FrameError::NotAPacket(format!("vCode {}", protect.v_code)));
    }
    let kind = Kind::from_command(protect.command_flag)
        .ok_or(FrameError::UnknownKind(protect.command_flag))?;
    let channel = protect.channel_id;
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
    let total = HEADER_LEN + head + len as usize;
    if buf.len() < total {
        // Make room for the rest at once, so big chunks arrive in few reads.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN + head);
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

    /// A Data packet as OpenHarmony lays a session packet out: "HW", reserve, version 1,
    /// headSize and dataSize big-endian, the PayloadProtect's fields 1-4 as varints.
    #[test]
    fn packets_are_openharmonys() {
        let b = encode(Kind::Data, 3, b"hi");
        let protect = [0x08, 3, 0x10, 0x82, 0xf4, 0x01, 0x18, 0, 0x20, 9];
        let mut want = b"HW\0\0\x01".to_vec();
        want.extend_from_slice(&(protect.len() as u16).to_be_bytes());
        want.extend_from_slice(&2u32.to_be_bytes());
        want.extend_from_slice(&protect);
        want.extend_from_slice(b"hi");
        assert_eq!(b, want);
        // And an OpenHarmony decoder reads it.
        let mut buf = BytesMut::from(&b[..]);
        let p = ohos::decode_packet(&mut buf).unwrap().unwrap();
        assert_eq!(
            (p.protect.channel_id, p.protect.command_flag),
            (3, Kind::Data as u32)
        );
    }

    #[test]
    fn refuses_garbage() {
        let mut b = BytesMut::from(&encode(Kind::Data, 1, b"")[..]);
        b[0] = b'X';
        assert!(matches!(decode(&mut b), Err(FrameError::NotAPacket(_))));
        let mut o = Vec::new();
        ohos::encode_packet(&mut o, &PayloadProtect::new(1, 1001), b"ls");
        let mut b = BytesMut::from(&o[..]);
        assert_eq!(decode(&mut b), Err(FrameError::UnknownKind(1001)));
        let mut b = BytesMut::from(&header(Kind::Data, 1, 0)[..]);
        b[7..11].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
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
