//! The wire format of local IPC (a sans-IO codec: bytes in, frames out).
//!
//! ```text
//! frame   = len:u32 LE | kind:u8 | id:u64 LE | body[len]
//! Request body = sa:i32 LE | code:u32 LE | data        (data: postcard; RequestFd alike)
//! Reply   body = status:u8 (0 ok, 1 error) | data      (error data: postcard RemoteError)
//! Event   body = data                                 (id = the subscription id)
//! Fatal   body = postcard RemoteError                  (id 0; the sender then closes)
//! ```
//!
//! `len` counts the body only. A body over [`MAX_TRANSACTION`] is not buffered: the decoder
//! reports it with its id (so the sender gets an error for that call) and skips its bytes,
//! up to [`MAX_SKIP`]; beyond that, or on an unknown kind, the stream is unusable and the
//! connection is closed. Nothing here allocates more than the limit for one frame.

use bytes::{Buf, Bytes, BytesMut};

/// Largest transaction body accepted: 1 MiB, OpenHarmony's IPC transaction limit.
pub const MAX_TRANSACTION: usize = 1 << 20;
/// Largest oversize body that is skipped rather than treated as a broken stream.
pub const MAX_SKIP: usize = 64 << 20;
/// Bytes before the body.
pub const HEADER_LEN: usize = 13;
/// Most bytes read at a time while no frame has shown itself to be large: a connection that
/// trickles bytes or stalls mid-frame makes the daemon hold at most this much more than it
/// sent, and small pipelined frames still arrive many to a read.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads are not made into less room than this (one page-sized read per syscall at least).
const MIN_READ: usize = 4096;

/// A frame's header, before its body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The frame's kind.
    pub kind: Kind,
    /// Its id.
    pub id: u64,
    /// Its declared body length.
    pub len: usize,
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client to daemon: call a method of a system ability.
    Request = 1,
    /// Daemon to client: the answer to the request with the same id.
    Reply = 2,
    /// Daemon to client: an event for the subscription with this id.
    Event = 3,
    /// Daemon to client: the connection is being closed, and why.
    Fatal = 4,
    /// Client to daemon: a request with one file descriptor attached (SCM_RIGHTS, sent with
    /// the frame's first byte), for calls on a file the caller opened itself.
    RequestFd = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Request),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Event),
            4 => Some(Kind::Fatal),
            5 => Some(Kind::RequestFd),
            _ => None,
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's kind.
    pub kind: Kind,
    /// Request/reply correlation id, or subscription id for events.
    pub id: u64,
    /// The body, without the header.
    pub body: Bytes,
}

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame.
    Frame(Frame),
    /// A frame whose body exceeds [`MAX_TRANSACTION`]; its bytes are being skipped.
    Oversize {
        /// Kind of the oversize frame.
        kind: Kind,
        /// Its id, so that the caller can be told.
        id: u64,
        /// Its declared body length.
        len: usize,
    },
}

/// Why a byte stream cannot be decoded any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The kind byte is not one of [`Kind`].
    #[error("malformed frame: unknown kind {0}")]
    UnknownKind(u8),
    /// The declared length is too large even to skip.
    #[error("malformed frame: declared length {0} exceeds {MAX_SKIP}")]
    Length(usize),
}

/// Incremental decoder: feed it bytes with [`FrameDecoder::buffer`], take frames with
/// [`FrameDecoder::decode_next`].
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    skip: usize,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer to read more bytes into.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends bytes (for callers that do not read into [`FrameDecoder::buffer`]).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next frame, `Ok(None)` when more bytes are needed, or an error after which the
    /// stream must be closed.
    pub fn decode_next(&mut self) -> Result<Option<Decoded>, FrameError> {
        let Some(Header { kind, id, len }) = self.peek()? else {
            return Ok(None);
        };
        if len > MAX_TRANSACTION {
            self.buf.advance(HEADER_LEN);
            self.skip = len;
            return Ok(Some(Decoded::Oversize { kind, id, len }));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let body = self.buf.split_to(len).freeze();
        if self.buf.is_empty() {
            // Let go of the allocation the frames came from: an idle connection then holds
            // no buffer, and one is freed as soon as the calls holding its frames end.
            self.buf = BytesMut::new();
        }
        Ok(Some(Decoded::Frame(Frame { kind, id, body })))
    }

    /// The header of the frame at the front of the buffer, once its [`HEADER_LEN`] bytes are
    /// in: for a receiver that decides whether to take a frame before its body arrives
    /// (see [`FrameDecoder::skip_front`]). Discards bytes still being skipped first.
    pub fn peek(&mut self) -> Result<Option<Header>, FrameError> {
        if self.skip > 0 {
            let n = self.skip.min(self.buf.len());
            self.buf.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        let kind = Kind::from_u8(self.buf[4]).ok_or(FrameError::UnknownKind(self.buf[4]))?;
        if len > MAX_SKIP {
            return Err(FrameError::Length(len));
        }
        let mut idb = [0u8; 8];
        idb.copy_from_slice(&self.buf[5..13]);
        Ok(Some(Header {
            kind,
            id: u64::from_le_bytes(idb),
            len,
        }))
    }

    /// Drops the frame at the front (its header must be in, see [`FrameDecoder::peek`]):
    /// what is buffered now and the rest of its body as it arrives, without buffering it.
    pub fn skip_front(&mut self) {
        let Ok(Some(h)) = self.peek() else { return };
        let n = (HEADER_LEN + h.len).min(self.buf.len());
        self.buf.advance(n);
        self.skip = HEADER_LEN + h.len - n;
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Bytes buffered and not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Makes room for the next read: the buffer grows as bytes arrive, not when a header
    /// announces them. Up to [`READ_CHUNK`] is read at a time; only once that much of one
    /// frame is in is room made for the rest of it (a bulk frame is then read in one or two
    /// reads instead of sixteen, and copied at most once, when the first chunk moves).
    pub fn reserve_for_read(&mut self) {
        let spare = self.buf.capacity() - self.buf.len();
        let mut want = READ_CHUNK;
        let mut floor = MIN_READ;
        if self.skip == 0
            && self.buf.len() >= READ_CHUNK
            && let Some(len) = self.front_len()
            && len <= MAX_TRANSACTION
        {
            want = (HEADER_LEN + len)
                .saturating_sub(self.buf.len())
                .max(MIN_READ);
            floor = want;
        }
        if spare < floor {
            self.buf.reserve(want);
        }
    }

    /// The declared body length of the frame at the front, once its header is in.
    fn front_len(&self) -> Option<usize> {
        let b = self.buf.get(..4)?;
        (self.buf.len() >= HEADER_LEN)
            .then(|| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// Appends one frame's header and body parts to `out`.
pub fn encode_into(out: &mut Vec<u8>, kind: Kind, id: u64, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(HEADER_LEN + len);
    out.extend_from_slice(&header(kind, id, len));
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The header of a frame whose body is `len` bytes, for writers that send the body from
/// where it already is (writev) rather than copying it behind the header.
pub fn header(kind: Kind, id: u64, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind as u8;
    h[5..].copy_from_slice(&id.to_le_bytes());
    h
}

/// One request frame.
pub fn request(id: u64, sa: i32, code: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(
        &mut out,
        Kind::Request,
        id,
        &[&sa.to_le_bytes(), &code.to_le_bytes(), data],
    );
    out
}

/// Size of a request body, to check against [`MAX_TRANSACTION`] before sending.
pub fn request_body_len(data: &[u8]) -> usize {
    8 + data.len()
}

/// Splits a request body into (sa, code, data).
pub fn parse_request(body: &Bytes) -> Option<(i32, u32, Bytes)> {
    if body.len() < 8 {
        return None;
    }
    let sa = i32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let code = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    Some((sa, code, body.slice(8..)))
}

/// One reply frame: `Ok(data)` or an encoded error.
pub fn reply(id: u64, result: &Result<Vec<u8>, crate::RemoteError>) -> Vec<u8> {
    let mut out = Vec::new();
    match result {
        Ok(data) => encode_into(&mut out, Kind::Reply, id, &[&[0u8], data]),
        Err(e) => encode_into(&mut out, Kind::Reply, id, &[&[1u8], &crate::encode(e)]),
    }
    out
}

/// Splits a reply body into its result.
pub fn parse_reply(body: &Bytes) -> Result<Bytes, crate::IpcError> {
    match body.first() {
        Some(0) => Ok(body.slice(1..)),
        Some(1) => {
            let e: crate::RemoteError =
                crate::decode(&body[1..]).map_err(|e| crate::IpcError::Decode(e.message))?;
            Err(crate::IpcError::Remote(e))
        }
        _ => Err(crate::IpcError::Decode("reply without status".into())),
    }
}

/// One event frame for subscription `sub`.
pub fn event(sub: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, Kind::Event, sub, &[data]);
    out
}

/// The frame sent before closing a connection that broke the protocol.
pub fn fatal(err: &crate::RemoteError) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, Kind::Fatal, 0, &[&crate::encode(err)]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_roundtrip_split_anywhere() {
        let f = request(7, 3901, 2, b"hello");
        for cut in 0..f.len() {
            let mut d = FrameDecoder::new();
            d.extend(&f[..cut]);
            assert_eq!(d.decode_next().unwrap(), None, "cut at {cut}");
            d.extend(&f[cut..]);
            match d.decode_next().unwrap() {
                Some(Decoded::Frame(fr)) => {
                    assert_eq!(fr.kind, Kind::Request);
                    assert_eq!(fr.id, 7);
                    let (sa, code, data) = parse_request(&fr.body).unwrap();
                    assert_eq!((sa, code, &data[..]), (3901, 2, &b"hello"[..]));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn oversize_is_reported_with_id_and_skipped() {
        let big = vec![0u8; MAX_TRANSACTION + 1];
        let mut d = FrameDecoder::new();
        d.extend(&request(9, 1, 1, &big));
        d.extend(&request(10, 1, 1, b"x"));
        assert_eq!(
            d.decode_next().unwrap(),
            Some(Decoded::Oversize {
                kind: Kind::Request,
                id: 9,
                len: MAX_TRANSACTION + 9
            })
        );
        match d.decode_next().unwrap() {
            Some(Decoded::Frame(f)) => assert_eq!(f.id, 10),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_kind_and_huge_length_are_fatal() {
        let mut d = FrameDecoder::new();
        d.extend(&[1, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.decode_next(), Err(FrameError::UnknownKind(99)));
        let mut d = FrameDecoder::new();
        d.extend(&[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(d.decode_next(), Err(FrameError::Length(_))));
    }

    #[test]
    fn reply_error_roundtrip() {
        let e = crate::RemoteError::new(201, "denied");
        let f = reply(3, &Err(e.clone()));
        let mut d = FrameDecoder::new();
        d.extend(&f);
        let Some(Decoded::Frame(fr)) = d.decode_next().unwrap() else {
            panic!()
        };
        match parse_reply(&fr.body) {
            Err(crate::IpcError::Remote(r)) => assert_eq!(r, e),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics_and_stays_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = FrameDecoder::new();
            'outer: for c in chunks {
                d.extend(&c);
                loop {
                    match d.decode_next() {
                        Ok(Some(Decoded::Frame(f))) => prop_assert!(f.body.len() <= MAX_TRANSACTION),
                        Ok(Some(Decoded::Oversize { len, .. })) => prop_assert!(len <= MAX_SKIP),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }

        #[test]
        fn frames_roundtrip(id in any::<u64>(), sa in any::<i32>(), code in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut d = FrameDecoder::new();
            d.extend(&request(id, sa, code, &data));
            let Some(Decoded::Frame(f)) = d.decode_next().unwrap() else { panic!() };
            prop_assert_eq!(f.id, id);
            let (s, c, bytes) = parse_request(&f.body).unwrap();
            prop_assert_eq!((s, c, bytes.to_vec()), (sa, code, data));
        }
    }
}
