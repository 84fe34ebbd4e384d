//! The soft bus's socket protocol types and limits, without I/O: what clients (the SDK) need
//! to call the socket API and read its events, so that they do not pull in the transport
//! (quinn, rustls, mDNS). The transport re-exports all of it from `transport::session`.

use serde::{Deserialize, Serialize};

/// A file's end-to-end checksum: XXH3-128 of its contents.
///
/// Not a cryptographic hash on purpose: every byte already travels under the connection's
/// AEAD (AES-GCM, authenticated per packet), so nobody can alter a file in flight; what this
/// catches is a file changed, cut or misplaced between the two daemons' reads and writes. For
/// that, 128 bits of XXH3 are as good (rsync's default checksum since 3.2) and run at memory
/// speed, where SHA-256 took 0.7 s of CPU per GiB on each side (no SHA extensions here) and
/// capped a file transfer at half the link.
pub type Checksum = [u8; 16];

/// Computes a [`Checksum`] over data that arrives in pieces.
pub struct FileHasher(twox_hash::XxHash3_128);

impl Default for FileHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl FileHasher {
    /// An empty hash.
    pub fn new() -> Self {
        Self(twox_hash::XxHash3_128::new())
    }

    /// Adds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.write(data);
    }

    /// The checksum of everything added (big-endian bytes, as printed in hex).
    pub fn finish(&self) -> Checksum {
        self.0.finish_128().to_be_bytes()
    }

    /// The checksum of one buffer.
    pub fn of(data: &[u8]) -> Checksum {
        let mut h = Self::new();
        h.update(data);
        h.finish()
    }
}

/// OpenHarmony's limit for one message (SendMessage): 4 KiB.
pub const MAX_MESSAGE: usize = 4 * 1024;
/// OpenHarmony's limit for one bytes payload (SendBytes): 4 MiB.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest file chunk on the wire: big enough that per-chunk costs vanish, small enough that
/// it also fits one IPC transaction (1 MiB) on either side.
pub const MAX_FILE_CHUNK: usize = 1024 * 1024;
/// Longest file name accepted from a peer (Linux's NAME_MAX).
pub const MAX_FILE_NAME: usize = 255;
/// Longest session name (OpenHarmony's SESSION_NAME_SIZE_MAX is 256 with the NUL).
pub const MAX_NAME: usize = 255;
/// Datagram header: kind and the receiver's socket id.
pub const STREAM_HEADER: usize = 9;
/// Serde for byte buffers as one blob: postcard encodes a `Vec<u8>` exactly as it encodes
/// bytes (length, then the bytes), but as a sequence it would visit them one at a time, which
/// costs more than the network on a bulk transfer. Use with `#[serde(with = "blob")]`.
pub mod blob {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    /// Serializes as bytes.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Deserializes bytes (or, from formats that wrote a sequence, a sequence of u8).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Blob)
    }

    struct Blob;

    impl<'de> Visitor<'de> for Blob {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = a.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }
}
/// OpenHarmony's socket data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    /// DATA_TYPE_MESSAGE.
    Message,
    /// DATA_TYPE_BYTES.
    Bytes,
    /// DATA_TYPE_FILE.
    File,
}
/// What a socket's owner hears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketEvent {
    /// A peer bound to our listener (OnBind).
    Bind {
        /// The new socket.
        socket: u64,
        /// The listener's name.
        name: String,
        /// The peer's socket name.
        peer_name: String,
        /// The peer device's networkId.
        peer_network_id: String,
        /// The peer device's name.
        peer_device: String,
    },
    /// OnMessage.
    Message {
        /// Socket.
        socket: u64,
        /// Payload.
        #[serde(with = "blob")]
        data: Vec<u8>,
    },
    /// OnBytes.
    Bytes {
        /// Socket.
        socket: u64,
        /// Payload.
        #[serde(with = "blob")]
        data: Vec<u8>,
    },
    /// OnFile, start: pull the contents with `Sessions::recv_file` until its end.
    FileBegin {
        /// Socket.
        socket: u64,
        /// The file's name, already checked with [`sanitize_file_name`].
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// OnFile, error: the peer offered a file under a name we refuse; it is skipped.
    FileRefused {
        /// Socket.
        socket: u64,
        /// The name as the peer sent it.
        name: String,
        /// Why.
        reason: String,
    },
    /// OnStream: one datagram frame.
    Stream {
        /// Socket.
        socket: u64,
        /// The frame.
        #[serde(with = "blob")]
        data: Vec<u8>,
    },
    /// OnShutdown.
    Shutdown {
        /// Socket.
        socket: u64,
        /// Why.
        reason: String,
    },
}
/// One step of sending a file, as the sending client drives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    /// Starts a file of `size` bytes named `name` on the receiver.
    Begin {
        /// Destination name (OpenHarmony's dFileList entry); the receiver checks it.
        name: String,
        /// Exact size that will follow.
        size: u64,
    },
    /// The next chunk, at most [`MAX_FILE_CHUNK`], at `offset` (which must follow on from
    /// the previous chunk: calls may be pipelined, and a chunk out of order is an error rather
    /// than a corrupt file).
    Data {
        /// Where in the file the chunk starts.
        offset: u64,
        /// The bytes.
        #[serde(with = "blob")]
        data: Vec<u8>,
    },
    /// All bytes sent; waits until the receiver confirms (or refuses) the file.
    End {
        /// The contents' checksum.
        checksum: Checksum,
    },
    /// Gives up on the current file (the sender could not read it).
    Abort {
        /// Why, for the receiver.
        reason: String,
    },
}

/// A piece of an incoming file, as the receiving client pulls it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilePiece {
    /// The next bytes.
    Data(#[serde(with = "blob")] Vec<u8>),
    /// All bytes arrived; the sender's checksum to check them against. Answer with
    /// `Sessions::file_result` and this `seq`.
    End {
        /// The sender's checksum.
        checksum: Checksum,
        /// The file's number on this socket.
        seq: u64,
    },
    /// The transfer broke (peer gone, aborted, socket closed): discard what arrived.
    Broken {
        /// Why.
        reason: String,
    },
}

/// Socket errors, with OpenHarmony-style meanings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Bad name, oversize payload, wrong data type.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Another client owns the name.
    #[error("session name {0:?} is already taken by another client")]
    NameTaken(String),
    /// No such socket, or not the caller's.
    #[error("no socket {0} owned by this client")]
    NoSocket(u64),
    /// The device is not online.
    #[error("device {0} is not online")]
    Offline(String),
    /// The peer refused.
    #[error("peer refused the socket: {0}")]
    Refused(String),
    /// The receiver did not take the file.
    #[error("the receiver did not take the file: {0}")]
    FileRejected(String),
    /// The stream broke.
    #[error("socket failed: {0}")]
    Io(String),
}

/// Checks a file name that came from a peer and returns the name to save under: directory
/// components are stripped (`a/b.txt` → `b.txt`); absolute paths, `..` anywhere, empty
/// names, `.`, control characters and names over [`MAX_FILE_NAME`] bytes are refused, so that
/// a peer can only ever name a plain file inside the receiver's directory.
pub fn sanitize_file_name(name: &str) -> Result<String, SessionError> {
    let bad = |why: &str| Err(SessionError::Invalid(format!("file name {name:?} {why}")));
    if name.starts_with('/') {
        return bad("is an absolute path");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("contains control characters");
    }
    if name.split('/').any(|c| c == "..") {
        return bad("contains '..'");
    }
    let last = name.rsplit('/').next().unwrap_or_default();
    if last.is_empty() || last == "." {
        return bad("names no file");
    }
    if last.len() > MAX_FILE_NAME {
        return bad("is too long");
    }
    Ok(last.to_string())
}

/// Appends `n` as postcard's varint (LEB128), for the hand-encoded frames on the bytes path
/// (the SDK's `SendArgs`, the daemon's `BytesPart` events), which skip a copy through serde.
pub fn put_varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Reads a postcard varint at `*at` and moves past it; `None` if it runs off the end or is
/// longer than a u64's ten bytes.
pub fn take_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for i in 0..10 {
        let x = *b.get(*at)?;
        *at += 1;
        n |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}
