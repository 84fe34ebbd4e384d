//! Receiving: a listener's or socket's events, with bytes reassembled and incoming files
//! saved through descriptors this process passes the daemon.

use super::hex;
use crate::Error;
use oxh_ipc::{Client, Subscription};
use oxh_softbus::api::{
    self, FILE_FD_STEP, FileFdReceived, FilePiece, FileResultArgs, IPC_PART, RecvFileFdArgs,
    SOFTBUS_SA_ID, SocketEventView,
};
use oxh_softbus::proto::{Checksum, sanitize_file_name, take_varint};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A [`SocketEventView::BytesPart`] read in place: (socket, data, last), or `None` if the
/// event is another one. The data is appended to the payload being reassembled straight from
/// the IPC frame, without decoding it into a buffer of its own first.
pub(super) fn parse_bytes_part(b: &[u8]) -> Option<(u64, &[u8], bool)> {
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
    pub(super) fn new(sub: Subscription, client: Client) -> Self {
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
