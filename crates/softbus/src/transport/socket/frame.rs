//! The frames of a socket stream and their codec: `len:u32 LE | postcard(Frame)`, with the
//! blobs of `Message`, `Bytes` and `FileData` written and read without a copy through postcard
//! (their header is built and parsed by hand, exactly as postcard encodes it).
//!
//! Also the ledger of incoming bytes ([`MAX_PEER_RX_BYTES`]): the reader takes a frame's bytes
//! from it before the frame's buffer is allocated.

use super::super::wire::{WireError, decode};
use crate::proto::{Checksum, DataType, MAX_BYTES, MAX_FILE_CHUNK, MAX_MESSAGE, blob};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// Largest frame on a socket stream: a bytes payload and its framing.
pub(crate) const MAX_SOCKET_FRAME: usize = MAX_BYTES + 64;
/// Largest Open/Accept/Reject frame (a session name, a peer name, a reason).
pub(crate) const MAX_OPEN_FRAME: usize = 4096;

/// Frames on a socket stream. `Message`, `Bytes` and `FileData` must stay at the indexes
/// [`MESSAGE_TAG`], [`BYTES_TAG`], [`FILE_DATA_TAG`]: they are written and read without
/// copying through postcard (see [`blob_head`]).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// Opens a socket to the listener `name`; `socket` is the opener's id for it.
    Open {
        name: String,
        from: String,
        data_type: DataType,
        socket: u64,
    },
    /// The listener took the socket; `socket` is its id for it.
    Accept { socket: u64 },
    /// No socket, and why.
    Reject { reason: String },
    /// A message (≤ 4 KiB).
    Message(#[serde(with = "blob")] Vec<u8>),
    /// A bytes payload (≤ 4 MiB).
    Bytes(#[serde(with = "blob")] Vec<u8>),
    /// The socket closes.
    Shutdown { reason: String },
    /// A file of `size` bytes follows.
    FileBegin { name: String, size: u64 },
    /// The next chunk of the file (≤ [`MAX_FILE_CHUNK`]).
    FileData(#[serde(with = "blob")] Vec<u8>),
    /// All of the file was sent.
    FileEnd { checksum: Checksum },
    /// The sender gave up on the file.
    FileAbort { reason: String },
    /// The receiver's verdict on file `seq`: `None` when saved.
    FileAck { seq: u64, error: Option<String> },
    /// Opens a stream of remote SA calls (dbinder) instead of a socket.
    Dbinder,
}

/// Postcard's variant index of `Frame::Message`.
pub(crate) const MESSAGE_TAG: u8 = 3;
/// Postcard's variant index of `Frame::Bytes`.
pub(crate) const BYTES_TAG: u8 = 4;
/// Postcard's variant index of `Frame::FileData`.
pub(crate) const FILE_DATA_TAG: u8 = 7;

/// Bytes of incoming frames (messages, bytes, file pieces) read from one peer's streams and
/// not yet delivered to the app. When it is reached, sockets of that peer stop reading until
/// some is delivered, and QUIC flow control slows the peer (back-pressure, not an error).
/// 64 MiB: sixteen 4 MiB payloads in flight, far above what one socket needs for full speed
/// (it reads one frame at a time).
pub const MAX_PEER_RX_BYTES: u64 = 64 << 20;
/// The same for all peers together.
pub const MAX_RX_BYTES: u64 = 256 << 20;

/// The per-peer ledger of incoming bytes.
pub(crate) type RxBudget = std::sync::Arc<oxh_ipc::budget::Ledger<String>>;
/// Incoming bytes held until their frame is delivered.
pub(crate) type RxGrant = oxh_ipc::budget::Grant<String>;

/// A fresh ledger of incoming bytes, with [`MAX_PEER_RX_BYTES`] and [`MAX_RX_BYTES`].
pub(crate) fn rx_budget() -> RxBudget {
    oxh_ipc::budget::Ledger::new(oxh_ipc::budget::Limits {
        per_key: MAX_PEER_RX_BYTES,
        total: MAX_RX_BYTES,
        reserved: 0,
    })
}

/// The header of a frame that carries one blob of `len` bytes: the frame length, the variant
/// `tag` and the blob's length, as postcard would write them; the blob's bytes follow as they are.
pub(crate) fn blob_head(tag: u8, len: usize) -> Vec<u8> {
    let mut len_varint = Vec::with_capacity(10);
    crate::proto::put_varint(len as u64, &mut len_varint);
    let body_len = 1 + len_varint.len() + len;
    let mut head = Vec::with_capacity(16);
    head.extend_from_slice(&(body_len as u32).to_le_bytes());
    head.push(tag);
    head.extend_from_slice(&len_varint);
    head
}

/// A whole frame as it goes on the stream (for the tests and their simulated link).
#[cfg(test)]
pub(crate) fn encode(f: &Frame) -> Vec<u8> {
    let body = postcard::to_allocvec(f).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks a frame's declared length.
fn check_len(len: usize) -> Result<(), WireError> {
    if len > MAX_SOCKET_FRAME {
        return Err(WireError::TooLarge {
            len,
            max: MAX_SOCKET_FRAME,
        });
    }
    if len == 0 {
        return Err(WireError::Decode("empty frame".into()));
    }
    Ok(())
}

/// The largest blob of a blob frame's tag; `None` for the other frames.
fn blob_max(tag: u8) -> Option<usize> {
    match tag {
        MESSAGE_TAG => Some(MAX_MESSAGE),
        BYTES_TAG => Some(MAX_BYTES),
        FILE_DATA_TAG => Some(MAX_FILE_CHUNK),
        _ => None,
    }
}

/// Adds one byte of a blob's length varint (`used` bytes so far, `n` their value); true once
/// it is complete.
fn varint_step(b: u8, n: &mut u64, used: &mut usize) -> Result<bool, WireError> {
    *n |= u64::from(b & 0x7f) << (7 * *used);
    *used += 1;
    if b & 0x80 == 0 {
        return Ok(true);
    }
    if *used >= 5 {
        return Err(WireError::Decode("bad chunk length".into()));
    }
    Ok(false)
}

/// Checks a blob's length `n` (its varint `used` bytes) against the frame's length and the
/// tag's limit.
fn check_blob(len: usize, used: usize, n: u64, max: usize) -> Result<usize, WireError> {
    let n = usize::try_from(n).map_err(|_| WireError::Decode("bad chunk length".into()))?;
    if 1 + used + n != len || n > max {
        return Err(WireError::Decode("bad blob length".into()));
    }
    Ok(n)
}

fn blob_frame(tag: u8, data: Vec<u8>) -> Frame {
    match tag {
        MESSAGE_TAG => Frame::Message(data),
        BYTES_TAG => Frame::Bytes(data),
        _ => Frame::FileData(data),
    }
}

/// Takes the first whole frame off `buf`: the frame and the bytes it took, `None` until it is
/// all there. The same checks as [`read_socket_frame_in`], for a caller that holds the bytes
/// (the simulated link of the tests).
#[cfg(test)]
pub(crate) fn split_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let mut l = [0u8; 4];
    l.copy_from_slice(head);
    let len = u32::from_le_bytes(l) as usize;
    check_len(len)?;
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let tag = body[0];
    let frame = match blob_max(tag) {
        Some(max) => {
            let (mut n, mut used) = (0u64, 0usize);
            loop {
                let b = *body
                    .get(1 + used)
                    .ok_or_else(|| WireError::Decode("bad blob length".into()))?;
                if varint_step(b, &mut n, &mut used)? {
                    break;
                }
            }
            let n = check_blob(len, used, n, max)?;
            blob_frame(tag, body[1 + used..1 + used + n].to_vec())
        }
        None => decode(body)?,
    };
    Ok(Some((frame, 4 + len)))
}

/// Reads one socket frame; the blobs of `Message`, `Bytes` and `FileData` are read straight
/// into their buffers (no decode copy).
pub(crate) async fn read_socket_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Frame>, WireError> {
    Ok(read_socket_frame_in(r, None).await?.map(|(f, _)| f))
}

/// [`read_socket_frame`], taking the frame's bytes from `budget` (the peer's ledger and key)
/// before its buffer is allocated, waiting while the peer holds its limit; the grant comes
/// back with the frame, to keep until it is delivered.
pub(crate) async fn read_socket_frame_in<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    budget: Option<(&RxBudget, &str)>,
) -> Result<Option<(Frame, Option<RxGrant>)>, WireError> {
    let take = |n: usize| async move {
        match budget {
            Some((b, peer)) => b
                .acquire(peer.to_owned(), false, n as u64)
                .await
                .map(Some)
                .map_err(|e| WireError::Decode(format!("frame over the peer's budget: {e}"))),
            None => Ok(None),
        }
    };
    let mut len = [0u8; 4];
    match AsyncReadExt::read_exact(r, &mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    check_len(len)?;
    let tag = r.read_u8().await?;
    if let Some(max) = blob_max(tag) {
        let (mut n, mut used) = (0u64, 0usize);
        while !varint_step(r.read_u8().await?, &mut n, &mut used)? {}
        let n = check_blob(len, used, n, max)?;
        let grant = take(n).await?;
        // Read into spare capacity: zeroing a 4 MiB buffer first cost as much as a copy.
        let mut data = Vec::with_capacity(n);
        let mut blob = AsyncReadExt::take(&mut *r, n as u64);
        while data.len() < n {
            if AsyncReadExt::read_buf(&mut blob, &mut data).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
        return Ok(Some((blob_frame(tag, data), grant)));
    }
    let grant = take(len).await?;
    let mut body = vec![0u8; len];
    body[0] = tag;
    AsyncReadExt::read_exact(r, &mut body[1..]).await?;
    let frame = decode(&body)?;
    drop(body);
    drop(grant);
    Ok(Some((frame, None)))
}

/// Writes a frame that carries one blob (`Message`, `Bytes`, `FileData`) whose bytes go to QUIC
/// without a copy: [`blob_head`], then `parts` as they are.
pub(crate) async fn write_blob_frame(
    w: &mut quinn::SendStream,
    tag: u8,
    parts: Vec<Bytes>,
) -> Result<(), quinn::WriteError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut chunks = Vec::with_capacity(1 + parts.len());
    chunks.push(Bytes::from(blob_head(tag, len)));
    chunks.extend(parts.into_iter().filter(|p| !p.is_empty()));
    w.write_all_chunks(&mut chunks).await
}

/// Fuzzing hook (fuzz/): reads socket frames from `stream` as a socket's reading loop does,
/// up to 64; returns each frame encoded again, and the error that stopped the reading if any.
#[doc(hidden)]
pub async fn fuzz_read_socket_frames(mut stream: &[u8]) -> (Vec<Vec<u8>>, Option<WireError>) {
    let mut out = Vec::new();
    for _ in 0..64 {
        match read_socket_frame(&mut stream).await {
            Ok(Some(f)) => out.push(postcard::to_allocvec(&f).unwrap_or_default()),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_encode_as_byte_sequences_do() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Seq(Vec<u8>);
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let a = postcard::to_allocvec(&Frame::Bytes(data.clone())).unwrap();
        let b = postcard::to_allocvec(&(4u8, Seq(data.clone()))).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            postcard::from_bytes::<Frame>(&b).unwrap(),
            Frame::Bytes(data)
        );
    }

    #[test]
    fn blob_tags_are_postcards() {
        let b = postcard::to_allocvec(&Frame::FileData(vec![1, 2, 3])).unwrap();
        assert_eq!(b, [FILE_DATA_TAG, 3, 1, 2, 3]);
        let b = postcard::to_allocvec(&Frame::Message(vec![1])).unwrap();
        assert_eq!(b, [MESSAGE_TAG, 1, 1]);
        let b = postcard::to_allocvec(&Frame::Bytes(vec![])).unwrap();
        assert_eq!(b, [BYTES_TAG, 0]);
    }

    #[test]
    fn blob_heads_are_postcards_and_both_readers_agree() {
        let data = vec![7u8; 300];
        let mut by_hand = blob_head(FILE_DATA_TAG, data.len());
        by_hand.extend_from_slice(&data);
        assert_eq!(by_hand, encode(&Frame::FileData(data.clone())));
        let mut stream = by_hand.clone();
        stream.extend(encode(&Frame::FileAck {
            seq: 3,
            error: None,
        }));
        let (f, used) = split_frame(&stream).unwrap().unwrap();
        assert_eq!((f, used), (Frame::FileData(data), by_hand.len()));
        assert!(split_frame(&stream[used..used + 3]).unwrap().is_none());
        assert!(split_frame(&stream[..used - 1]).unwrap().is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (frames, err) = rt.block_on(fuzz_read_socket_frames(&stream));
        assert!(err.is_none());
        assert_eq!(frames.len(), 2);
        // Oversize blobs are refused by both.
        let mut big = blob_head(MESSAGE_TAG, MAX_MESSAGE + 1);
        big.resize(big.len() + MAX_MESSAGE + 1, 0);
        assert!(split_frame(&big).is_err());
        assert!(rt.block_on(fuzz_read_socket_frames(&big)).1.is_some());
    }
}
