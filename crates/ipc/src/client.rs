//! The client side: what tools, apps and the SDK use to call system abilities.

use crate::frame::{self, Decoded, FrameDecoder, Kind};
use crate::{IpcError, RemoteError};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

type Pending = HashMap<u64, oneshot::Sender<Result<Bytes, IpcError>>>;

struct Shared {
    pending: Mutex<Pending>,
    subs: Mutex<HashMap<u64, mpsc::UnboundedSender<Bytes>>>,
    closed: Mutex<Option<String>>,
    /// What the daemon said when it closed the connection (its Fatal frame), if it did.
    fatal: Mutex<Option<RemoteError>>,
}

impl Shared {
    /// The error for a call on a closed connection: the daemon's own reason if it gave one.
    fn closed_error(&self, reason: &str) -> IpcError {
        match self.fatal.lock().ok().and_then(|f| f.clone()) {
            Some(e) => IpcError::Closed(e),
            None => IpcError::Disconnected(reason.to_string()),
        }
    }
}

/// A connection to the device daemon. Cheap to clone; calls may run concurrently.
#[derive(Clone)]
pub struct Client {
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    _reader: Arc<ReaderGuard>,
    /// The daemon's credentials, as the kernel reported them when we connected.
    server: Option<oxh_kal::PeerCred>,
}

struct ReaderGuard(tokio::task::JoinHandle<()>);
impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Events of one subscription, in the order the daemon sent them. Dropping it stops delivery
/// on this side; the SA learns of it when the client unsubscribes or disconnects.
pub struct Subscription {
    id: u64,
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
    /// Keeps the connection open as long as someone listens on it.
    _client: Client,
}

impl Subscription {
    /// The id to pass to the SA's subscribe method.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The next event; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.shared.subs.lock() {
            subs.remove(&self.id);
        }
    }
}

/// The reply to a request already written (see [`Client::send_parts`]).
pub struct PendingReply(oneshot::Receiver<Result<Bytes, IpcError>>);

impl PendingReply {
    /// Waits for the daemon's answer or error.
    pub async fn reply(self) -> Result<Bytes, IpcError> {
        match self.0.await {
            Ok(r) => r,
            Err(_) => Err(IpcError::Disconnected("reader stopped".into())),
        }
    }
}

impl Client {
    /// Connects to the daemon listening at `socket`.
    pub async fn connect(socket: &Path) -> Result<Self, IpcError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| IpcError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        oxh_kal::set_socket_buffers(std::os::fd::AsFd::as_fd(&stream), crate::SOCKET_BUFFER);
        let server = oxh_kal::peer_cred(std::os::fd::AsFd::as_fd(&stream)).ok();
        let (mut rd, wr) = stream.into_split();
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            subs: Mutex::new(HashMap::new()),
            closed: Mutex::new(None),
            fatal: Mutex::new(None),
        });
        let s2 = shared.clone();
        let reader = tokio::spawn(async move {
            let mut dec = FrameDecoder::new();
            let reason = 'read: loop {
                dec.reserve_for_read();
                match rd.read_buf(dec.buffer()).await {
                    Ok(0) => break "the daemon closed the connection".to_string(),
                    Err(e) => break e.to_string(),
                    Ok(_) => {}
                }
                loop {
                    match dec.decode_next() {
                        Ok(Some(Decoded::Frame(f))) => match f.kind {
                            Kind::Reply => {
                                let tx = s2.pending.lock().ok().and_then(|mut p| p.remove(&f.id));
                                if let Some(tx) = tx {
                                    let _ = tx.send(frame::parse_reply(&f.body));
                                }
                            }
                            Kind::Event => {
                                if let Ok(subs) = s2.subs.lock()
                                    && let Some(tx) = subs.get(&f.id)
                                {
                                    let _ = tx.send(f.body);
                                }
                            }
                            Kind::Fatal => {
                                let msg = match crate::decode::<RemoteError>(&f.body) {
                                    Ok(e) => {
                                        let msg = e.to_string();
                                        if let Ok(mut f) = s2.fatal.lock() {
                                            *f = Some(e);
                                        }
                                        msg
                                    }
                                    Err(e) => e.message,
                                };
                                break 'read msg;
                            }
                            Kind::Request | Kind::RequestFd => {
                                break 'read "daemon sent a request".to_string();
                            }
                        },
                        Ok(Some(Decoded::Oversize { .. })) => {
                            break 'read "daemon sent an oversize frame".to_string();
                        }
                        Ok(None) => break,
                        Err(e) => break 'read e.to_string(),
                    }
                }
            };
            if let Ok(mut c) = s2.closed.lock() {
                *c = Some(reason.clone());
            }
            let pending: Vec<_> = s2
                .pending
                .lock()
                .map(|mut p| p.drain().collect())
                .unwrap_or_default();
            for (_, tx) in pending {
                let _ = tx.send(Err(s2.closed_error(&reason)));
            }
            if let Ok(mut subs) = s2.subs.lock() {
                subs.clear();
            }
        });
        Ok(Self {
            writer: Arc::new(tokio::sync::Mutex::new(wr)),
            shared,
            next_id: Arc::new(AtomicU64::new(1)),
            _reader: Arc::new(ReaderGuard(reader)),
            server,
        })
    }

    /// The daemon's credentials (SO_PEERCRED when this client connected): an app host tells
    /// by them that a socket was made by the daemon itself (a remote connection's relay).
    pub fn server_cred(&self) -> Option<oxh_kal::PeerCred> {
        self.server
    }

    /// Calls method `code` of system ability `sa` with raw bytes; the daemon's answer or error.
    pub async fn call_raw(&self, sa: i32, code: u32, data: &[u8]) -> Result<Bytes, IpcError> {
        let size = frame::request_body_len(data);
        if size > frame::MAX_TRANSACTION {
            return Err(IpcError::TooLarge {
                size,
                limit: frame::MAX_TRANSACTION,
            });
        }
        self.send_raw_request(sa, code, data).await
    }

    /// [`Client::call_raw`] with data given as the concatenation of `parts`, so that a bulk
    /// payload is copied once, into the request frame, rather than into an argument buffer
    /// first.
    pub async fn call_parts(&self, sa: i32, code: u32, parts: &[&[u8]]) -> Result<Bytes, IpcError> {
        self.send_parts(sa, code, parts).await?.reply().await
    }

    /// Sends a request without the client-side size check, so that tests can see the daemon
    /// enforce the limit on its own.
    #[doc(hidden)]
    pub async fn send_raw_request(
        &self,
        sa: i32,
        code: u32,
        data: &[u8],
    ) -> Result<Bytes, IpcError> {
        self.send_request(&[data], sa, code, None)
            .await?
            .reply()
            .await
    }

    /// Calls a method with serde arguments and a file descriptor for the daemon to use (a
    /// file this process opened: the daemon never opens paths its callers name), and decodes
    /// its serde result.
    pub async fn call_with_fd<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        sa: i32,
        code: u32,
        req: &Req,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Resp, IpcError> {
        let data = crate::encode(req);
        let size = frame::request_body_len(&data);
        if size > frame::MAX_TRANSACTION {
            return Err(IpcError::TooLarge {
                size,
                limit: frame::MAX_TRANSACTION,
            });
        }
        let bytes = self
            .send_request(&[&data], sa, code, Some(fd))
            .await?
            .reply()
            .await?;
        postcard::from_bytes(&bytes).map_err(|e| IpcError::Decode(e.to_string()))
    }

    /// [`Client::call_parts`] in two halves: this one returns once the request is written,
    /// and the reply is awaited later ([`PendingReply::reply`]). A caller that sends several
    /// requests before awaiting any keeps the daemon busy instead of waiting for a round
    /// trip per request; the daemon takes one connection's requests in the order they were
    /// written.
    pub async fn send_parts(
        &self,
        sa: i32,
        code: u32,
        parts: &[&[u8]],
    ) -> Result<PendingReply, IpcError> {
        let size = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
        if size > frame::MAX_TRANSACTION {
            return Err(IpcError::TooLarge {
                size,
                limit: frame::MAX_TRANSACTION,
            });
        }
        self.send_request(parts, sa, code, None).await
    }

    async fn send_request(
        &self,
        parts: &[&[u8]],
        sa: i32,
        code: u32,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<PendingReply, IpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            if let Some(reason) = self.shared.closed.lock().ok().and_then(|c| c.clone()) {
                return Err(self.shared.closed_error(&reason));
            }
            self.shared
                .pending
                .lock()
                .map_err(|_| IpcError::Disconnected("poisoned".into()))?
                .insert(id, tx);
        }
        let (sa, code) = (sa.to_le_bytes(), code.to_le_bytes());
        let mut all: Vec<&[u8]> = Vec::with_capacity(2 + parts.len());
        all.extend([&sa[..], &code[..]]);
        all.extend_from_slice(parts);
        let kind = if fd.is_some() {
            Kind::RequestFd
        } else {
            Kind::Request
        };
        let write = async {
            let mut w = self.writer.lock().await;
            let Some(fd) = fd else {
                // The header and the parts go out in one writev: a bulk part is not copied
                // into a frame buffer first.
                let len: usize = all.iter().map(|p| p.len()).sum();
                let head = frame::header(kind, id, len);
                let mut slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&head[..])
                    .chain(all.iter().copied())
                    .filter(|p| !p.is_empty())
                    .map(std::io::IoSlice::new)
                    .collect();
                let mut rest = &mut slices[..];
                while !rest.is_empty() {
                    let n = w.write_vectored(rest).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    std::io::IoSlice::advance_slices(&mut rest, n);
                }
                return Ok(());
            };
            let mut bytes = Vec::new();
            frame::encode_into(&mut bytes, kind, id, &all);
            let mut rest = &bytes[..];
            {
                use std::os::fd::AsFd;
                let sock = w.as_ref();
                loop {
                    sock.writable().await?;
                    match sock.try_io(tokio::io::Interest::WRITABLE, || {
                        oxh_kal::send_with_fd(sock.as_fd(), rest, fd)
                    }) {
                        Ok(n) => {
                            rest = &rest[n..];
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            w.write_all(rest).await
        };
        if let Err(e) = write.await {
            if let Ok(mut p) = self.shared.pending.lock() {
                p.remove(&id);
            }
            return Err(IpcError::Disconnected(e.to_string()));
        }
        Ok(PendingReply(rx))
    }

    /// Calls a method with serde arguments and decodes its serde result.
    pub async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        sa: i32,
        code: u32,
        req: &Req,
    ) -> Result<Resp, IpcError> {
        let bytes = self.call_raw(sa, code, &crate::encode(req)).await?;
        postcard::from_bytes(&bytes).map_err(|e| IpcError::Decode(e.to_string()))
    }

    /// A new subscription: pass its id to the SA's subscribe method, then read events.
    pub fn subscribe(&self) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut subs) = self.shared.subs.lock() {
            subs.insert(id, tx);
        }
        Subscription {
            id,
            rx,
            shared: self.shared.clone(),
            _client: self.clone(),
        }
    }

    /// Writes raw bytes on the connection (tests use it to send garbage).
    #[doc(hidden)]
    pub async fn write_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.lock().await.write_all(bytes).await
    }

    /// Why the connection closed, once it has.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.closed.lock().ok().and_then(|c| c.clone())
    }
}
