//! OpenHarmony's hdc session wire (developtools_hdc; docs/HDC-WIRE.md §1-2), as a sans-IO
//! codec: packets `"HW"` + PayloadHead + PayloadProtect + payload, and the protobuf-style
//! serialization of the session's structs. Work in progress for issue 16: nothing speaks it
//! yet.
//!
//! ```text
//! packet = "HW" | reserve[2] = 0 | protocolVer = 1 | headSize:u16 BE | dataSize:u32 BE
//!          | PayloadProtect (headSize bytes, serialized) | payload (dataSize bytes)
//! ```
//!
//! Serialization: protobuf 3's wire format (key = varint(field << 3 | wire type); varints
//! LEB128, no zigzag; strings length-delimited). hdc writes every field, defaults included,
//! in field order; a reader accepts any order and skips unknown fields by their wire type
//! (hdc's own reader cannot skip them, so we never send one).

use bytes::{Buf, BufMut, BytesMut};

/// `PACKET_FLAG`.
pub const PACKET_FLAG: &[u8; 2] = b"HW";
/// `VER_PROTOCOL`.
pub const VER_PROTOCOL: u8 = 0x01;
/// The fixed head before PayloadProtect.
pub const HEAD_LEN: usize = 11;
/// PayloadProtect's `vCode`: a packet with another one is refused.
pub const PROTECT_VCODE: u8 = 0x09;
/// `HANDSHAKE_MESSAGE`, the banner of a session handshake.
pub const HANDSHAKE_BANNER: &str = "OHOS HDC";
/// Largest payload accepted (hdc's host reads into 2 × MAX_SIZE_IOBUF; senders keep each
/// payload ≤ 511 KiB).
pub const MAX_PAYLOAD: usize = 2 * 511 * 1024;
/// Largest serialized PayloadProtect accepted (four varints: 22 bytes at most).
pub const MAX_PROTECT: usize = 64;

/// Why bytes are not a packet or a struct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The packet does not start with "HW".
    #[error("hdc packet: bad flag {0:02x?}")]
    Flag([u8; 2]),
    /// A declared size is over the limit.
    #[error("hdc packet: {what} of {len} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its declared size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// PayloadProtect's vCode is not 0x09.
    #[error("hdc packet: verification code {0:#04x}, expected 0x09")]
    VCode(u8),
    /// A struct's bytes end early or hold an impossible value.
    #[error("hdc serialization: {0}")]
    Malformed(&'static str),
}

/// A field's value as it crossed the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(WireError::Malformed("a varint ends early"));
        };
        *buf = rest;
        if i == 9 && b > 1 {
            return Err(WireError::Malformed("a varint overflows 64 bits"));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError::Malformed("a varint is longer than 10 bytes"))
}

/// Writes fields in order.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, field: u32, v: u64) -> &mut Self {
        put_varint(&mut self.0, u64::from(field) << 3);
        put_varint(&mut self.0, v);
        self
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        put_varint(&mut self.0, (u64::from(field) << 3) | 2);
        put_varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads every field, calling `f(field, value)`; unknown wire types refuse the struct,
/// fixed-width fields are skipped.
fn read_fields<'a>(
    mut buf: &'a [u8],
    mut f: impl FnMut(u32, Value<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    while !buf.is_empty() {
        let key = get_varint(&mut buf)?;
        let field = u32::try_from(key >> 3).map_err(|_| WireError::Malformed("field number"))?;
        match key & 7 {
            0 => f(field, Value::Varint(get_varint(&mut buf)?))?,
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if buf.len() < n {
                    return Err(WireError::Malformed("a fixed field ends early"));
                }
                buf = &buf[n..];
            }
            2 => {
                let len = usize::try_from(get_varint(&mut buf)?)
                    .map_err(|_| WireError::Malformed("length"))?;
                if buf.len() < len {
                    return Err(WireError::Malformed("a string ends early"));
                }
                let (v, rest) = buf.split_at(len);
                buf = rest;
                f(field, Value::Bytes(v))?;
            }
            _ => return Err(WireError::Malformed("unknown wire type")),
        }
    }
    Ok(())
}

fn as_u64(v: Value<'_>) -> Result<u64, WireError> {
    match v {
        Value::Varint(x) => Ok(x),
        Value::Bytes(_) => Err(WireError::Malformed("a number field holds bytes")),
    }
}

fn as_u32(v: Value<'_>) -> Result<u32, WireError> {
    u32::try_from(as_u64(v)?).map_err(|_| WireError::Malformed("a u32 field overflows"))
}

fn as_u8(v: Value<'_>) -> Result<u8, WireError> {
    u8::try_from(as_u64(v)?).map_err(|_| WireError::Malformed("a u8 field overflows"))
}

fn as_string(v: Value<'_>) -> Result<String, WireError> {
    match v {
        Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::Varint(_) => Err(WireError::Malformed("a string field holds a number")),
    }
}

fn as_bytes(v: Value<'_>) -> Result<Vec<u8>, WireError> {
    match v {
        Value::Bytes(b) => Ok(b.to_vec()),
        Value::Varint(_) => Err(WireError::Malformed("a string field holds a number")),
    }
}

/// PayloadProtect: which channel and command a packet is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadProtect {
    /// The client channel (0: the session itself).
    pub channel_id: u32,
    /// The command (HdcCommand).
    pub command_flag: u32,
    /// 0 (hdc does not enable its payload checksum).
    pub check_sum: u8,
    /// [`PROTECT_VCODE`].
    pub v_code: u8,
}

impl PayloadProtect {
    /// A protect for `command` on `channel`.
    pub fn new(channel_id: u32, command_flag: u32) -> Self {
        PayloadProtect {
            channel_id,
            command_flag,
            check_sum: 0,
            v_code: PROTECT_VCODE,
        }
    }

    /// Its serialized bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.varint(1, self.channel_id.into())
            .varint(2, self.command_flag.into())
            .varint(3, self.check_sum.into())
            .varint(4, self.v_code.into());
        w.0
    }

    /// Parses serialized bytes (missing fields are zero, as hdc's reader leaves them).
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut p = PayloadProtect {
            channel_id: 0,
            command_flag: 0,
            check_sum: 0,
            v_code: 0,
        };
        read_fields(b, |f, v| {
            match f {
                1 => p.channel_id = as_u32(v)?,
                2 => p.command_flag = as_u32(v)?,
                3 => p.check_sum = as_u8(v)?,
                4 => p.v_code = as_u8(v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(p)
    }
}

/// SessionHandShake: the first message each way on a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionHandShake {
    /// [`HANDSHAKE_BANNER`].
    pub banner: String,
    /// AuthType (0 none, 1 token, 2 signature, 3 public key, 4 ok, 5 fail, 6 TLS-PSK).
    pub auth_type: u8,
    /// The session's id.
    pub session_id: u32,
    /// The device's connect key.
    pub connect_key: String,
    /// Token, signature, public key or TLV, by `auth_type` (text), or a TLS flight
    /// (AUTH_SSL_TLS_PSK, binary): hdc's `std::string` holds any bytes.
    pub buf: Vec<u8>,
    /// `"Ver: 3.1.0e"` and the like.
    pub version: String,
}

impl SessionHandShake {
    /// `buf` as text (the text steps: TLV, token, signature, public key).
    pub fn buf_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.buf)
    }

    /// Its serialized bytes (the whole payload of a CMD_KERNEL_HANDSHAKE packet).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(1, self.banner.as_bytes())
            .varint(2, self.auth_type.into())
            .varint(3, self.session_id.into())
            .bytes(4, self.connect_key.as_bytes())
            .bytes(5, &self.buf)
            .bytes(6, self.version.as_bytes());
        w.0
    }

    /// Parses serialized bytes.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut h = SessionHandShake::default();
        read_fields(b, |f, v| {
            match f {
                1 => h.banner = as_string(v)?,
                2 => h.auth_type = as_u8(v)?,
                3 => h.session_id = as_u32(v)?,
                4 => h.connect_key = as_string(v)?,
                5 => h.buf = as_bytes(v)?,
                6 => h.version = as_string(v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(h)
    }
}

/// TransferPayload: the head of each file data chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferPayload {
    /// The chunk's offset in the file.
    pub index: u64,
    /// 0 none, 1 LZ4 ...
    pub compress_type: u8,
    /// Its size on the wire.
    pub compress_size: u32,
    /// Its size in the file.
    pub uncompress_size: u32,
}

impl TransferPayload {
    /// Its serialized bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.varint(1, self.index)
            .varint(2, self.compress_type.into())
            .varint(3, self.compress_size.into())
            .varint(4, self.uncompress_size.into());
        w.0
    }

    /// Parses serialized bytes.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut t = TransferPayload::default();
        read_fields(b, |f, v| {
            match f {
                1 => t.index = as_u64(v)?,
                2 => t.compress_type = as_u8(v)?,
                3 => t.compress_size = as_u32(v)?,
                4 => t.uncompress_size = as_u32(v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(t)
    }
}

/// The head room before a file chunk's bytes: a serialized [`TransferPayload`], a NUL, zeros.
pub const PAYLOAD_PREFIX_RESERVE: usize = 64;
/// The largest chunk hdc moves (MAX_SIZE_IOBUF, 511 KiB).
pub const MAX_SIZE_IOBUF: usize = 511 * 1024;
/// TransferPayload.compressType: none.
pub const COMPRESS_NONE: u8 = 0;
/// TransferPayload.compressType: an LZ4 block.
pub const COMPRESS_LZ4: u8 = 1;

impl TransferPayload {
    /// The 64-byte prefix of a CMD_FILE_DATA payload.
    pub fn encode_prefix(&self) -> [u8; PAYLOAD_PREFIX_RESERVE] {
        let e = self.encode();
        let mut p = [0u8; PAYLOAD_PREFIX_RESERVE];
        p[..e.len()].copy_from_slice(&e);
        p
    }

    /// Reads the prefix of a CMD_FILE_DATA payload: the struct ends where a field key would be
    /// 0 (the NUL after it; no field has number 0).
    pub fn decode_prefix(p: &[u8]) -> Result<Self, WireError> {
        let p = p
            .get(..PAYLOAD_PREFIX_RESERVE)
            .ok_or(WireError::Malformed("a file chunk shorter than its prefix"))?;
        let mut end = 0;
        let mut rest = p;
        while let Some(&k) = rest.first() {
            if k == 0 {
                break;
            }
            let before = rest.len();
            let key = get_varint(&mut rest)?;
            match key & 7 {
                0 => {
                    get_varint(&mut rest)?;
                }
                _ => return Err(WireError::Malformed("a chunk prefix field is not a number")),
            }
            end += before - rest.len();
        }
        TransferPayload::decode(&p[..end])
    }
}

/// TransferConfig: a file transfer's (or an install's) description, sent by the side that
/// reads the file in CMD_FILE_CHECK / CMD_APP_CHECK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferConfig {
    /// Bytes in the file.
    pub file_size: u64,
    /// Access time, nanoseconds (with `-a`).
    pub atime: u64,
    /// Modification time, nanoseconds (with `-a`).
    pub mtime: u64,
    /// The command line's options.
    pub options: String,
    /// Where the file goes (the receiver's path).
    pub path: String,
    /// The file's own name (appended when `path` is a directory).
    pub optional_name: String,
    /// `-sync`: only if newer.
    pub update_if_new: bool,
    /// [`COMPRESS_NONE`] or [`COMPRESS_LZ4`].
    pub compress_type: u8,
    /// `-a`: keep the times.
    pub hold_timestamp: bool,
    /// `install`, `sideload`, or empty.
    pub function_name: String,
    /// The client's working directory.
    pub client_cwd: String,
    /// Reserved (the bundle of `-b`).
    pub reserve1: String,
    /// Reserved.
    pub reserve2: String,
}

impl TransferConfig {
    /// Its serialized bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.varint(1, self.file_size)
            .varint(2, self.atime)
            .varint(3, self.mtime)
            .bytes(4, self.options.as_bytes())
            .bytes(5, self.path.as_bytes())
            .bytes(6, self.optional_name.as_bytes())
            .varint(7, self.update_if_new.into())
            .varint(8, self.compress_type.into())
            .varint(9, self.hold_timestamp.into())
            .bytes(10, self.function_name.as_bytes())
            .bytes(11, self.client_cwd.as_bytes())
            .bytes(12, self.reserve1.as_bytes())
            .bytes(13, self.reserve2.as_bytes());
        w.0
    }

    /// Parses serialized bytes.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut t = TransferConfig::default();
        read_fields(b, |f, v| {
            match f {
                1 => t.file_size = as_u64(v)?,
                2 => t.atime = as_u64(v)?,
                3 => t.mtime = as_u64(v)?,
                4 => t.options = as_string(v)?,
                5 => t.path = as_string(v)?,
                6 => t.optional_name = as_string(v)?,
                7 => t.update_if_new = as_u64(v)? != 0,
                8 => t.compress_type = as_u8(v)?,
                9 => t.hold_timestamp = as_u64(v)? != 0,
                10 => t.function_name = as_string(v)?,
                11 => t.client_cwd = as_string(v)?,
                12 => t.reserve1 = as_string(v)?,
                13 => t.reserve2 = as_string(v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(t)
    }
}

/// One session packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Its protect (channel, command).
    pub protect: PayloadProtect,
    /// Its payload (a view of the read buffer: file chunks are not copied).
    pub payload: bytes::Bytes,
}

/// One packet, encoded: `payload` for `command` on `channel`.
pub fn packet(channel: u32, command: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + payload.len());
    encode_packet(&mut out, &PayloadProtect::new(channel, command), payload);
    out
}

/// CMD_KERNEL_ECHO (9): a message level (0 fail, 1 info, 2 ok) then the text.
pub fn echo(channel: u32, level: u8, text: &str) -> Vec<u8> {
    let mut p = vec![level];
    p.extend_from_slice(text.as_bytes());
    packet(channel, crate::ohos_auth::CMD_KERNEL_ECHO, &p)
}

/// Appends one packet to `out`.
pub fn encode_packet(out: &mut Vec<u8>, protect: &PayloadProtect, payload: &[u8]) {
    let p = protect.encode();
    out.extend_from_slice(PACKET_FLAG);
    out.extend_from_slice(&[0, 0, VER_PROTOCOL]);
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&p);
    out.extend_from_slice(payload);
}

/// Takes one packet off the front of `buf`: `Ok(None)` when more bytes are needed. An
/// error leaves the stream unusable (hdc tears the session down).
pub fn decode_packet(buf: &mut BytesMut) -> Result<Option<Packet>, WireError> {
    if buf.len() < HEAD_LEN {
        return Ok(None);
    }
    if &buf[..2] != PACKET_FLAG {
        return Err(WireError::Flag([buf[0], buf[1]]));
    }
    let head = usize::from(u16::from_be_bytes([buf[5], buf[6]]));
    let data = u32::from_be_bytes([buf[7], buf[8], buf[9], buf[10]]) as usize;
    if head > MAX_PROTECT {
        return Err(WireError::TooLarge {
            what: "PayloadProtect",
            len: head,
            limit: MAX_PROTECT,
        });
    }
    if data > MAX_PAYLOAD {
        return Err(WireError::TooLarge {
            what: "payload",
            len: data,
            limit: MAX_PAYLOAD,
        });
    }
    if buf.len() < HEAD_LEN + head + data {
        return Ok(None);
    }
    buf.advance(HEAD_LEN);
    let protect = PayloadProtect::decode(&buf.split_to(head))?;
    if protect.v_code != PROTECT_VCODE {
        return Err(WireError::VCode(protect.v_code));
    }
    let payload = buf.split_to(data).freeze();
    Ok(Some(Packet { protect, payload }))
}

/// HeartbeatMsg (CMD_HEARTBEAT_MSG's payload): a count from 0, and an empty reserved field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatMsg {
    /// How many heartbeats the sender sent before this one.
    pub heartbeat_count: u64,
    /// Unused (always written, empty).
    pub reserved: String,
}

impl HeartbeatMsg {
    /// Its serialized bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.varint(1, self.heartbeat_count)
            .bytes(2, self.reserved.as_bytes());
        w.0
    }

    /// Parses serialized bytes.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut h = HeartbeatMsg::default();
        read_fields(b, |f, v| {
            match f {
                1 => h.heartbeat_count = as_u64(v)?,
                2 => h.reserved = as_string(v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(h)
    }
}

/// CMD_UNITY_EXECUTE_EX's (`hdc shell -b`) record tags (`TAG_SHELL_CMD`, `TAG_SHELL_BUNDLE`).
pub mod shell_tag {
    /// The command line.
    pub const CMD: u32 = 0;
    /// The bundle whose directory the command runs in.
    pub const BUNDLE: u32 = 1;
}

/// The records of a binary TLV buffer (hdc's `TlvBuf`, as `hdc shell -b` sends it): each a u32
/// tag, a u32 length (both in the host's byte order, little-endian), then that many bytes.
/// A length of 0, a short record or a repeated tag refuses the buffer.
pub fn parse_tlv_buf(mut b: &[u8]) -> Result<std::collections::BTreeMap<u32, Vec<u8>>, WireError> {
    let mut out = std::collections::BTreeMap::new();
    while !b.is_empty() {
        let short = WireError::Malformed("a TLV record ends early");
        let (t, rest) = b.split_first_chunk::<4>().ok_or(short.clone())?;
        let (l, rest) = rest.split_first_chunk::<4>().ok_or(short)?;
        let len = u32::from_le_bytes(*l) as usize;
        if len == 0 || rest.len() < len {
            return Err(WireError::Malformed("a TLV record's length"));
        }
        let (v, rest) = rest.split_at(len);
        if out.insert(u32::from_le_bytes(*t), v.to_vec()).is_some() {
            return Err(WireError::Malformed("a TLV tag twice"));
        }
        b = rest;
    }
    Ok(out)
}

/// A binary TLV buffer of `records`, in the given order.
pub fn tlv_buf(records: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, v) in records {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// For the fuzz target: decode packets and structs from arbitrary bytes.
pub fn fuzz_one(data: &[u8]) {
    let mut b = BytesMut::new();
    b.put_slice(data);
    while let Ok(Some(p)) = decode_packet(&mut b) {
        let _ = SessionHandShake::decode(&p.payload);
        let _ = TransferPayload::decode(&p.payload);
        let _ = TransferPayload::decode_prefix(&p.payload);
        let _ = TransferConfig::decode(&p.payload);
        let _ = HeartbeatMsg::decode(&p.payload);
        let _ = parse_tlv_buf(&p.payload);
        crate::ohos_forward::fuzz_one(&p.payload);
    }
    let _ = parse_tlv_buf(data);
    let _ = SessionHandShake::decode(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From the definitions: field 1 varint (key 0x08), field 2 an empty string (0x12 0x00).
    #[test]
    fn heartbeats_are_the_bytes_the_definitions_give() {
        let h = |n| HeartbeatMsg {
            heartbeat_count: n,
            reserved: String::new(),
        };
        assert_eq!(h(0).encode(), [0x08, 0x00, 0x12, 0x00]);
        assert_eq!(h(300).encode(), [0x08, 0xac, 0x02, 0x12, 0x00]);
        assert_eq!(
            HeartbeatMsg::decode(&[0x08, 0x05, 0x12, 0x00]).unwrap(),
            h(5)
        );
        assert!(HeartbeatMsg::decode(&[0x08]).is_err());
    }

    /// `hdc shell -b com.example.app ls`, as the host's TlvBuf writes it: tag, length, value,
    /// u32 little-endian, CMD (0) first.
    #[test]
    fn shell_option_records_are_the_bytes_the_definitions_give() {
        let mut want = vec![0, 0, 0, 0, 2, 0, 0, 0];
        want.extend_from_slice(b"ls");
        want.extend_from_slice(&[1, 0, 0, 0, 15, 0, 0, 0]);
        want.extend_from_slice(b"com.example.app");
        let built = tlv_buf(&[
            (shell_tag::CMD, b"ls"),
            (shell_tag::BUNDLE, b"com.example.app"),
        ]);
        assert_eq!(built, want);
        let m = parse_tlv_buf(&want).unwrap();
        assert_eq!(m[&shell_tag::CMD], b"ls");
        assert_eq!(m[&shell_tag::BUNDLE], b"com.example.app");
        assert!(parse_tlv_buf(&want[..want.len() - 1]).is_err());
        assert!(
            parse_tlv_buf(&[0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "a length of 0"
        );
        assert!(parse_tlv_buf(&[0, 0, 0]).is_err());
    }

    /// Bytes written by hand from the definitions (docs/HDC-WIRE.md §1-2), not by our
    /// encoder: channel 0, CMD_KERNEL_HANDSHAKE (1), checksum 0, vCode 9.
    const PROTECT_HANDSHAKE: [u8; 8] = [0x08, 0x00, 0x10, 0x01, 0x18, 0x00, 0x20, 0x09];

    #[test]
    fn a_handshake_packet_is_the_bytes_the_definitions_give() {
        let hs = SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: 0,
            session_id: 300,
            connect_key: "k".into(),
            buf: Vec::new(),
            version: "Ver: 3.1.0e".into(),
        };
        let body = hs.encode();
        let mut want = vec![0x0a, 8];
        want.extend_from_slice(b"OHOS HDC");
        want.extend_from_slice(&[0x10, 0x00]); // authType 0, still written
        want.extend_from_slice(&[0x18, 0xac, 0x02]); // sessionId 300 as a varint
        want.extend_from_slice(&[0x22, 1, b'k']);
        want.extend_from_slice(&[0x2a, 0]); // empty buf, still written
        want.extend_from_slice(&[0x32, 11]);
        want.extend_from_slice(b"Ver: 3.1.0e");
        assert_eq!(body, want);
        assert_eq!(PayloadProtect::new(0, 1).encode(), PROTECT_HANDSHAKE);

        let mut pkt = Vec::new();
        encode_packet(&mut pkt, &PayloadProtect::new(0, 1), &body);
        let mut head = vec![b'H', b'W', 0, 0, 1, 0, 8];
        head.extend_from_slice(&(body.len() as u32).to_be_bytes());
        assert_eq!(&pkt[..HEAD_LEN], &head[..]);
        assert_eq!(&pkt[HEAD_LEN..HEAD_LEN + 8], &PROTECT_HANDSHAKE);

        // Back, fed a byte at a time.
        let mut b = BytesMut::new();
        let mut got = None;
        for &x in &pkt {
            b.put_u8(x);
            if let Some(p) = decode_packet(&mut b).unwrap() {
                got = Some(p);
            }
        }
        let p = got.expect("one packet");
        assert_eq!(p.protect, PayloadProtect::new(0, 1));
        assert_eq!(SessionHandShake::decode(&p.payload).unwrap(), hs);
        assert!(b.is_empty());
    }

    #[test]
    fn readers_skip_unknown_fields_take_any_order_and_refuse_truncation() {
        // Field 9 (unknown, LEN), then sessionId before banner, a fixed32 field 7.
        let mut b = vec![
            0x4a, 2, b'x', b'y', 0x18, 0x05, 0x3d, 1, 2, 3, 4, 0x0a, 1, b'B',
        ];
        let h = SessionHandShake::decode(&b).unwrap();
        assert_eq!((h.session_id, h.banner.as_str()), (5, "B"));
        b.pop();
        assert!(SessionHandShake::decode(&b).is_err(), "a string cut short");
        assert!(
            SessionHandShake::decode(&[0x18]).is_err(),
            "a varint cut short"
        );
        assert!(
            SessionHandShake::decode(&[0x10, 0x80, 0x02]).is_err(),
            "256 in a u8 field"
        );
        assert!(get_varint(&mut &[0xff; 11][..]).is_err());
    }

    #[test]
    fn bad_packets_are_refused_before_their_bodies_are_buffered() {
        let mut b = BytesMut::from(&b"HX\0\0\x01\0\x08\0\0\0\0"[..]);
        assert_eq!(decode_packet(&mut b), Err(WireError::Flag(*b"HX")));
        let mut big = BytesMut::from(&b"HW\0\0\x01\0\x08"[..]);
        big.put_u32((MAX_PAYLOAD + 1) as u32);
        assert!(matches!(
            decode_packet(&mut big),
            Err(WireError::TooLarge {
                what: "payload",
                ..
            })
        ));
        let mut pkt = Vec::new();
        let mut p = PayloadProtect::new(3, 1001);
        p.v_code = 7;
        encode_packet(&mut pkt, &p, b"ls");
        assert_eq!(
            decode_packet(&mut BytesMut::from(&pkt[..])),
            Err(WireError::VCode(7))
        );
    }

    #[test]
    fn transfer_payload_heads_round_trip() {
        let t = TransferPayload {
            index: 1 << 33,
            compress_type: 1,
            compress_size: 1000,
            uncompress_size: 4096,
        };
        assert_eq!(TransferPayload::decode(&t.encode()).unwrap(), t);
        assert_eq!(t.encode()[..2], [0x08, 0x80]);
    }

    /// A CMD_FILE_DATA prefix as the definitions give it: TransferPayload{index 0,
    /// compressType 1, compressSize 300, uncompressSize 511 KiB}, a NUL, zeros to 64 bytes;
    /// index 0 has a zero byte inside, which must not end the struct.
    #[test]
    fn a_file_chunk_prefix_is_the_bytes_the_definitions_give() {
        let t = TransferPayload {
            index: 0,
            compress_type: COMPRESS_LZ4,
            compress_size: 300,
            uncompress_size: 511 * 1024,
        };
        let p = t.encode_prefix();
        let mut want = vec![
            0x08, 0x00, 0x10, 0x01, 0x18, 0xac, 0x02, 0x20, 0x80, 0xf8, 0x1f,
        ];
        want.resize(64, 0);
        assert_eq!(&p[..], &want[..]);
        assert_eq!(TransferPayload::decode_prefix(&p), Ok(t));
        assert!(TransferPayload::decode_prefix(&p[..63]).is_err());
    }

    /// TransferConfig's fields in order, defaults written (hdc's serializer skips none).
    #[test]
    fn a_transfer_config_is_the_bytes_the_definitions_give() {
        let c = TransferConfig {
            file_size: 5,
            path: "/d".into(),
            optional_name: "x".into(),
            ..Default::default()
        };
        let want: Vec<u8> = vec![
            0x08, 5, 0x10, 0, 0x18, 0, 0x22, 0, 0x2a, 2, b'/', b'd', 0x32, 1, b'x', 0x38, 0, 0x40,
            0, 0x48, 0, 0x52, 0, 0x5a, 0, 0x62, 0, 0x6a, 0,
        ];
        assert_eq!(c.encode(), want);
        assert_eq!(TransferConfig::decode(&want), Ok(c));
    }
}
