//! Soft bus sockets (OpenHarmony's Socket API): listen on a name, bind to a peer's name, send
//! messages (≤ 4 KiB), bytes (≤ 4 MiB), files of any size and unreliable stream frames.
//!
//! Files: the daemon never opens a path its caller names, so [`Bus::send_file`] opens the
//! files here and passes their descriptors (SCM_RIGHTS) to the daemon, which reads and hashes
//! them itself (the contents do not cross IPC). On the receiving side
//! [`SocketEvents::save_files_into`] creates each incoming file here under a temp name and
//! passes its descriptor to the daemon, which writes, hashes and syncs it; this side renames
//! it to its final name only once it is complete and its checksum (XXH3-128) matches the
//! sender's, and removes the temp file otherwise.

use crate::{Device, Error};
use oxh_ipc::{Client, RemoteError, Subscription};
use oxh_softbus::api::{
    self, BindSocketArgs, FILE_FD_STEP, FileFdReceived, FileFdSent, FilePiece, FileResultArgs,
    IPC_PART, ListenArgs, RecvFileFdArgs, SOFTBUS_SA_ID, SendFileFdArgs, SendStreamArgs,
    SocketEventView,
};
use oxh_softbus::proto::{Checksum, FileHasher, put_varint, take_varint};
pub use oxh_softbus::proto::{DataType, MAX_BYTES, MAX_MESSAGE, sanitize_file_name};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Proxy for the soft bus SA.
pub struct Bus<'a> {
    pub(crate) dev: &'a Device,
}

/// A socket event, with bytes reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    /// OnBind: a peer bound to our listener.
    Bind {
        /// New socket.
        socket: u64,
        /// Peer's socket name.
        peer_name: String,
        /// Peer networkId.
        peer_network_id: String,
        /// Peer device name.
        peer_device: String,
    },
    /// OnMessage.
    Message {
        /// Socket.
        socket: u64,
        /// Payload.
        data: Vec<u8>,
    },
    /// OnBytes.
    Bytes {
        /// Socket.
        socket: u64,
        /// Payload.
        data: Vec<u8>,
    },
    /// OnFile, start: a file is arriving (saved under a temp name until complete).
    FileStart {
        /// Socket.
        socket: u64,
        /// The name it will have.
        name: String,
        /// Its size.
        size: u64,
    },
    /// OnFile, progress: after each chunk of a file being saved.
    FileProgress {
        /// Socket.
        socket: u64,
        /// File name.
        name: String,
        /// Bytes received so far.
        received: u64,
        /// Total size.
        size: u64,
    },
    /// OnFile, finish: the file is complete, its checksum matched, it has its final name.
    FileFinish {
        /// Socket.
        socket: u64,
        /// File name.
        name: String,
        /// Size in bytes.
        size: u64,
        /// Its checksum (XXH3-128), lower-case hex.
        checksum: String,
        /// Where it was saved.
        path: PathBuf,
    },
    /// OnFile, error: the file was not saved (refused name, broken transfer, checksum
    /// mismatch, no receive directory); no temp file is left behind.
    FileError {
        /// Socket.
        socket: u64,
        /// File name.
        name: String,
        /// Why.
        reason: String,
    },
    /// OnStream: one stream frame (unreliable: frames may be lost).
    Stream {
        /// Socket.
        socket: u64,
        /// The frame.
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

/// Progress of [`Bus::send_file`], after each chunk handed to the soft bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendProgress {
    /// Which file (0-based) of `count`.
    pub index: usize,
    /// How many files.
    pub count: usize,
    /// Destination name.
    pub name: String,
    /// Bytes of this file sent so far.
    pub sent: u64,
    /// Its size.
    pub size: u64,
}

/// A file the receiver confirmed: saved with a matching checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// Destination name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Its checksum (XXH3-128), lower-case hex.
    pub checksum: String,
}

/// A [`SocketEventView::BytesPart`] read in place: (socket, data, last), or `None` if the
/// event is another one. The data is appended to the payload being reassembled straight from
/// the IPC frame, without decoding it into a buffer of its own first.
fn parse_bytes_part(b: &[u8]) -> Option<(u64, &[u8], bool)> {
    // postcard's variant index of SocketEventView::BytesPart.
    if b.first() != Some(&2) {
        return None;
    }
    let mut at = 1;
    let socket = take_varint(b, &mut at)?;
    let len = usize::try_from(take_varint(b, &mut at)?).ok()?;
    let end = at.checked_add(len)?;
    let last = match b.get(end..)? {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    Some((socket, b.get(at..end)?, last))
}

/// Lower-case hex of a digest.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A file's checksum (XXH3-128), lower-case hex, as the file transfer computes it (for
/// callers that want to compare a source with what arrived).
pub fn checksum_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = FileHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finish()))
}

fn local(code: i32, msg: String) -> Error {
    Error::Remote(RemoteError::new(code, msg))
}

/// A file being received: its temp file (removed on drop unless renamed), which the daemon
/// writes through the descriptor this process passes it.
struct Incoming {
    socket: u64,
    name: String,
    size: u64,
    got: u64,
    /// Temp file; `None` when the file is only drained (not saved).
    tmp: Option<PathBuf>,
    dest: PathBuf,
    /// Why it will not be saved, when that is known early.
    error: Option<String>,
    /// The open temp file, while the daemon writes it.
    file: Option<std::fs::File>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            let _ = std::fs::remove_file(t);
        }
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Events of a listener or a bound socket.
///
/// `next` is not cancel-safe while a file is arriving (a piece pulled by a dropped call is
/// lost, and the file fails its checksum); call it in a loop rather than racing it.
pub struct SocketEvents {
    sub: Subscription,
    client: Client,
    partial: std::collections::HashMap<u64, Vec<u8>>,
    save_dir: Option<PathBuf>,
    active: Option<Incoming>,
}

impl SocketEvents {
    fn new(sub: Subscription, client: Client) -> Self {
        Self {
            sub,
            client,
            partial: Default::default(),
            save_dir: None,
            active: None,
        }
    }

    /// Saves incoming files into `dir` (OpenHarmony's file receive root): under a temp name
    /// first, renamed when complete and checksummed. Without it, files are drained and
    /// refused with a [`SocketEvent::FileError`].
    pub fn save_files_into(&mut self, dir: impl Into<PathBuf>) {
        self.save_dir = Some(dir.into());
    }

    fn start_file(&mut self, socket: u64, name: String, size: u64) -> SocketEvent {
        let mut inc = Incoming {
            socket,
            name: name.clone(),
            size,
            got: 0,
            tmp: None,
            dest: PathBuf::new(),
            error: None,
            file: None,
        };
        match (&self.save_dir, sanitize_file_name(&name)) {
            (None, _) => inc.error = Some("this receiver saves no files".into()),
            (Some(_), Err(e)) => inc.error = Some(e.to_string()),
            (Some(dir), Ok(clean)) => {
                let tmp = dir.join(format!(
                    ".oxh-recv-{}-{}.part",
                    std::process::id(),
                    TMP_SEQ.fetch_add(1, Ordering::Relaxed)
                ));
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                {
                    Ok(f) => {
                        inc.tmp = Some(tmp);
                        inc.dest = dir.join(clean);
                        inc.file = Some(f);
                    }
                    Err(e) => {
                        inc.error = Some(format!("cannot create a file in {}: {e}", dir.display()))
                    }
                }
            }
        }
        self.active = Some(inc);
        SocketEvent::FileStart { socket, name, size }
    }

    /// Moves the active file on; `Some` when there is an event to report. A file being saved
    /// is written by the daemon through our temp file's descriptor, a step at a time; one not
    /// saved is drained piece by piece and refused at its end.
    async fn pump_file(&mut self) -> Option<SocketEvent> {
        let socket = self.active.as_ref()?.socket;
        let step = match self
            .active
            .as_ref()
            .and_then(|a| a.file.as_ref().map(|f| (a, f)))
        {
            Some((a, f)) => {
                use std::os::fd::AsFd;
                let args = RecvFileFdArgs {
                    socket,
                    upto: a.got + FILE_FD_STEP,
                };
                Some(
                    self.client
                        .call_with_fd::<_, FileFdReceived>(
                            SOFTBUS_SA_ID,
                            api::bus::RECV_FILE_FD,
                            &args,
                            f.as_fd(),
                        )
                        .await,
                )
            }
            None => None,
        };
        if let Some(step) = step {
            let a = self.active.as_mut()?;
            match step {
                Ok(FileFdReceived::Progress { received }) => {
                    a.got = received;
                    return Some(SocketEvent::FileProgress {
                        socket,
                        name: a.name.clone(),
                        received,
                        size: a.size,
                    });
                }
                Ok(FileFdReceived::End {
                    seq,
                    checksum,
                    actual,
                    error,
                    received,
                }) => {
                    a.got = received;
                    let mut a = self.active.take()?;
                    let result = a.finish(checksum, actual, error);
                    return Some(self.answer(a, socket, seq, checksum, result).await);
                }
                Ok(FileFdReceived::Broken { reason }) => {
                    let a = self.active.take()?;
                    return Some(SocketEvent::FileError {
                        socket,
                        name: a.name.clone(),
                        reason,
                    });
                }
                Err(e) => {
                    // The daemon could not write it: drain the rest and refuse it at the end.
                    a.file = None;
                    a.error.get_or_insert_with(|| e.to_string());
                    return None;
                }
            }
        }
        let piece: Result<FilePiece, Error> = self
            .client
            .call(SOFTBUS_SA_ID, api::bus::RECV_FILE, &socket)
            .await;
        match piece {
            Ok(FilePiece::Data(d)) => {
                let a = self.active.as_mut()?;
                a.got += d.len() as u64;
                None
            }
            Ok(FilePiece::End { checksum, seq }) => {
                let mut a = self.active.take()?;
                let result = a.finish(checksum, None, None);
                Some(self.answer(a, socket, seq, checksum, result).await)
            }
            Ok(FilePiece::Broken { reason }) => {
                let a = self.active.take()?;
                Some(SocketEvent::FileError {
                    socket,
                    name: a.name.clone(),
                    reason,
                })
            }
            Err(e) => {
                let a = self.active.take()?;
                Some(SocketEvent::FileError {
                    socket,
                    name: a.name.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Tells the sender what became of a file, and reports it.
    async fn answer(
        &self,
        a: Incoming,
        socket: u64,
        seq: u64,
        checksum: Checksum,
        result: Result<PathBuf, String>,
    ) -> SocketEvent {
        let error = result.as_ref().err().cloned();
        let _ = self
            .client
            .call::<_, ()>(
                SOFTBUS_SA_ID,
                api::bus::FILE_RESULT,
                &FileResultArgs { socket, seq, error },
            )
            .await;
        match result {
            Ok(path) => SocketEvent::FileFinish {
                socket,
                name: a.name.clone(),
                size: a.size,
                checksum: hex(&checksum),
                path,
            },
            Err(reason) => SocketEvent::FileError {
                socket,
                name: a.name.clone(),
                reason,
            },
        }
    }

    /// The next event; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<SocketEvent> {
        loop {
            if self.active.is_some() {
                if let Some(ev) = self.pump_file().await {
                    return Some(ev);
                }
                continue;
            }
            let b = self.sub.recv().await?;
            if let Some((socket, data, last)) = parse_bytes_part(&b) {
                let buf = self.partial.entry(socket).or_default();
                if buf.is_empty() && last {
                    return Some(SocketEvent::Bytes {
                        socket,
                        data: data.to_vec(),
                    });
                }
                buf.reserve(if last { data.len() } else { IPC_PART });
                buf.extend_from_slice(data);
                if !last {
                    continue;
                }
                let data = self.partial.remove(&socket).unwrap_or_default();
                return Some(SocketEvent::Bytes { socket, data });
            }
            let v: SocketEventView = oxh_ipc::decode(&b).ok()?;
            return Some(match v {
                SocketEventView::Bind {
                    socket,
                    peer_name,
                    peer_network_id,
                    peer_device,
                } => SocketEvent::Bind {
                    socket,
                    peer_name,
                    peer_network_id,
                    peer_device,
                },
                SocketEventView::Message { socket, data } => SocketEvent::Message { socket, data },
                SocketEventView::BytesPart { socket, data, last } => {
                    let buf = self.partial.entry(socket).or_default();
                    buf.extend_from_slice(&data);
                    if !last {
                        continue;
                    }
                    let data = self.partial.remove(&socket).unwrap_or_default();
                    SocketEvent::Bytes { socket, data }
                }
                SocketEventView::FileBegin { socket, name, size } => {
                    self.start_file(socket, name, size)
                }
                SocketEventView::FileRefused {
                    socket,
                    name,
                    reason,
                } => SocketEvent::FileError {
                    socket,
                    name,
                    reason,
                },
                SocketEventView::Stream { socket, data } => SocketEvent::Stream { socket, data },
                SocketEventView::Shutdown { socket, reason } => {
                    self.partial.remove(&socket);
                    SocketEvent::Shutdown { socket, reason }
                }
            });
        }
    }
}

impl Incoming {
    /// Completes a file the daemon wrote and synced: checks size and checksum, renames the
    /// temp file, syncs the directory. `actual` is the hash of what was written (`None`: not
    /// saved), `error` why writing failed.
    fn finish(
        &mut self,
        checksum: Checksum,
        actual: Option<Checksum>,
        error: Option<String>,
    ) -> Result<PathBuf, String> {
        self.file = None;
        if let Some(e) = self.error.take().or(error) {
            return Err(e);
        }
        let Some(actual) = actual else {
            return Err("not saved".into());
        };
        if self.got != self.size {
            return Err(format!("got {} of {} bytes", self.got, self.size));
        }
        if actual != checksum {
            return Err(format!(
                "checksum mismatch: sender {}, received {}",
                hex(&checksum),
                hex(&actual)
            ));
        }
        let tmp = self.tmp.clone().ok_or("no temp file")?;
        std::fs::rename(&tmp, &self.dest)
            .map_err(|e| format!("cannot rename to {}: {e}", self.dest.display()))?;
        self.tmp = None;
        if let Some(dir) = self.dest.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(self.dest.clone())
    }
}

impl Bus<'_> {
    /// Listens on session `name`; peers bind to it by this name.
    pub async fn listen(&self, name: &str) -> Result<SocketEvents, Error> {
        let sub = self.dev.client.subscribe();
        let a = ListenArgs {
            name: name.into(),
            sub: sub.id(),
        };
        self.dev
            .client
            .call::<_, ()>(SOFTBUS_SA_ID, api::bus::LISTEN, &a)
            .await?;
        Ok(SocketEvents::new(sub, self.dev.client.clone()))
    }

    /// Opens a socket to session `name` on the device `network_id`.
    pub async fn bind(
        &self,
        network_id: &str,
        name: &str,
        own_name: &str,
        data_type: DataType,
    ) -> Result<(u64, SocketEvents), Error> {
        let sub = self.dev.client.subscribe();
        let a = BindSocketArgs {
            network_id: network_id.into(),
            name: name.into(),
            own_name: own_name.into(),
            data_type,
            sub: sub.id(),
        };
        let socket: u64 = self
            .dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::BIND, &a)
            .await?;
        Ok((socket, SocketEvents::new(sub, self.dev.client.clone())))
    }

    /// Sends a message (≤ 4 KiB).
    pub async fn send_message(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        let r = self
            .send_part(socket, DataType::Message, data, false)
            .await?
            .reply()
            .await?;
        oxh_ipc::decode::<()>(&r).map_err(|e| Error::Decode(e.message))
    }

    /// Writes one [`api::bus::SEND`] request, its [`api::SendArgs`] encoded by hand around
    /// `data` so that the payload is copied once, into the request frame, and returns without
    /// waiting for its reply.
    async fn send_part(
        &self,
        socket: u64,
        kind: DataType,
        data: &[u8],
        more: bool,
    ) -> Result<oxh_ipc::PendingReply, Error> {
        let mut head = Vec::with_capacity(24);
        put_varint(socket, &mut head);
        // postcard's variant index of the DataType.
        head.push(match kind {
            DataType::Message => 0,
            DataType::Bytes => 1,
            DataType::File => 2,
        });
        put_varint(data.len() as u64, &mut head);
        let more = [u8::from(more)];
        self.dev
            .client
            .send_parts(SOFTBUS_SA_ID, api::bus::SEND, &[&head, data, &more])
            .await
    }

    /// Sends bytes (≤ 4 MiB), in parts under the IPC transaction limit. Each part is copied
    /// once, into its request frame: the [`api::SendArgs`] around it are encoded by hand.
    /// All parts are written before any reply is awaited (the daemon takes them in order and
    /// answers a part that is not the last at once), so a payload costs one round trip to
    /// the daemon, not one per part.
    pub async fn send_bytes(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_BYTES {
            return Err(local(
                401,
                format!("bytes exceed the {MAX_BYTES}-byte (4 MiB) limit"),
            ));
        }
        let n = data.len().div_ceil(IPC_PART).max(1);
        let mut replies = Vec::with_capacity(n);
        let writing = self.dev.bytes_send.lock().await;
        for i in 0..n {
            let part = data
                .get(i * IPC_PART..((i + 1) * IPC_PART).min(data.len()))
                .unwrap_or(&[]);
            replies.push(
                self.send_part(socket, DataType::Bytes, part, i + 1 < n)
                    .await?,
            );
        }
        drop(writing);
        for r in replies {
            let r = r.reply().await?;
            oxh_ipc::decode::<()>(&r).map_err(|e| Error::Decode(e.message))?;
        }
        Ok(())
    }

    /// Sends files (SendFile), each under its own file name; see [`Bus::send_files_as`].
    pub async fn send_file<P: AsRef<Path>>(
        &self,
        socket: u64,
        paths: &[P],
        progress: impl FnMut(&SendProgress),
    ) -> Result<Vec<SentFile>, Error> {
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let p = p.as_ref();
            let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                local(
                    oxh_ipc::code::INVALID_PARAM,
                    format!("{} names no UTF-8 file name", p.display()),
                )
            })?;
            files.push((p.to_path_buf(), name.to_string()));
        }
        self.send_files_as(socket, &files, progress).await
    }

    /// Sends files (SendFile with OpenHarmony's sFileList/dFileList): each `(source,
    /// destination name)` in turn. This process reads the sources; each returns once the
    /// receiver has saved it with a matching checksum, and the first failure stops the rest.
    /// `progress` is called after each chunk.
    pub async fn send_files_as(
        &self,
        socket: u64,
        files: &[(PathBuf, String)],
        mut progress: impl FnMut(&SendProgress),
    ) -> Result<Vec<SentFile>, Error> {
        let mut done = Vec::with_capacity(files.len());
        for (index, (path, name)) in files.iter().enumerate() {
            let mut report = |sent, size| {
                progress(&SendProgress {
                    index,
                    count: files.len(),
                    name: name.clone(),
                    sent,
                    size,
                })
            };
            done.push(self.send_one(socket, path, name, &mut report).await?);
        }
        Ok(done)
    }

    /// Sends one file: the daemon reads it through this process's descriptor (the contents
    /// never cross IPC), a step at a time so that `progress` hears how far it got.
    async fn send_one(
        &self,
        socket: u64,
        path: &Path,
        name: &str,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<SentFile, Error> {
        use std::os::fd::AsFd;
        let cant = |e: std::io::Error| {
            local(
                oxh_ipc::code::INVALID_PARAM,
                format!("cannot read {}: {e}", path.display()),
            )
        };
        let file = std::fs::File::open(path).map_err(cant)?;
        let meta = file.metadata().map_err(cant)?;
        if !meta.is_file() {
            return Err(local(
                oxh_ipc::code::INVALID_PARAM,
                format!("{} is not a file", path.display()),
            ));
        }
        let size = meta.len();
        progress(0, size);
        let mut sent = 0u64;
        let mut first = true;
        loop {
            let args = SendFileFdArgs {
                socket,
                name: first.then(|| name.to_string()),
                upto: sent.saturating_add(FILE_FD_STEP),
            };
            let r: FileFdSent = self
                .dev
                .client
                .call_with_fd(SOFTBUS_SA_ID, api::bus::SEND_FILE_FD, &args, file.as_fd())
                .await?;
            first = false;
            progress(r.sent, r.size);
            if let Some(checksum) = r.checksum {
                return Ok(SentFile {
                    name: name.into(),
                    size: r.size,
                    checksum: hex(&checksum),
                });
            }
            if r.sent <= sent {
                return Err(local(
                    32_390_000,
                    format!("sending {} made no progress", path.display()),
                ));
            }
            sent = r.sent;
        }
    }

    /// Sends one stream frame (SendStream) as an unreliable datagram: it may be lost, and a
    /// frame over [`Bus::max_stream`] fails with 401.
    pub async fn send_stream(&self, socket: u64, data: &[u8]) -> Result<(), Error> {
        let a = SendStreamArgs {
            socket,
            data: data.to_vec(),
        };
        self.dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::SEND_STREAM, &a)
            .await
    }

    /// The largest stream frame the socket's path takes now (it can grow as the path MTU is
    /// discovered).
    pub async fn max_stream(&self, socket: u64) -> Result<usize, Error> {
        let n: u64 = self
            .dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::MAX_STREAM, &socket)
            .await?;
        Ok(n as usize)
    }

    /// Closes a socket.
    pub async fn shutdown(&self, socket: u64) -> Result<(), Error> {
        self.dev
            .client
            .call(SOFTBUS_SA_ID, api::bus::SHUTDOWN, &socket)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_encoded_send_args_and_parsed_parts_match_postcard() {
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let socket = 1u64 << 33;
        let mut head = Vec::new();
        put_varint(socket, &mut head);
        head.push(1);
        put_varint(data.len() as u64, &mut head);
        let mut mine = head.clone();
        mine.extend_from_slice(&data);
        mine.push(1);
        let a = api::SendArgs {
            socket,
            kind: DataType::Bytes,
            data: data.clone(),
            more: true,
        };
        assert_eq!(mine, oxh_ipc::encode(&a));
        for last in [false, true] {
            let v = oxh_ipc::encode(&SocketEventView::BytesPart {
                socket,
                data: data.clone(),
                last,
            });
            assert_eq!(parse_bytes_part(&v), Some((socket, &data[..], last)));
            assert_eq!(parse_bytes_part(&v[..v.len() - 1]), None);
        }
        let m = oxh_ipc::encode(&SocketEventView::Message { socket, data });
        assert_eq!(parse_bytes_part(&m), None);
    }
}
