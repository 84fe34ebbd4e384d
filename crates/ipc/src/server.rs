//! The daemon side: accept connections, read frames, dispatch requests, write replies.

use crate::frame::{self, Decoded, FrameDecoder, Kind};
use crate::{Caller, RemoteError, TokenResolver, code};
use bytes::Bytes;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// Requests one connection may have running at once; beyond this the daemon stops reading
/// from that connection until some finish (back-pressure, not an error).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Receives every request the server reads. samgr implements it.
#[async_trait::async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Runs one call of method `code` of system ability `sa`.
    async fn dispatch(
        &self,
        conn: ConnHandle,
        sa: i32,
        code: u32,
        data: Bytes,
    ) -> Result<Vec<u8>, RemoteError>;
    /// A client connected.
    fn on_connect(&self, _conn: &ConnHandle) {}
    /// A client's connection went away (exit, crash, or closed by us): the death notice.
    fn on_disconnect(&self, conn: &ConnHandle);
}

/// One client connection as seen by system abilities: who it is, and a way to push events.
#[derive(Clone)]
pub struct ConnHandle {
    id: u64,
    caller: Arc<Caller>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle")
            .field("id", &self.id)
            .field("caller", &self.caller)
            .finish()
    }
}

impl ConnHandle {
    /// Unique id of this connection within the daemon's lifetime.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The caller, as the kernel identified it.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
    /// Pushes an event to subscription `sub` of this client; false once the client is gone.
    pub fn push_event(&self, sub: u64, data: &[u8]) -> bool {
        self.tx.send(frame::event(sub, data)).is_ok()
    }
    /// True once the client's connection has closed.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
    /// A handle for tests of SA logic without a socket; events land in the returned receiver.
    pub fn detached(caller: Caller) -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        static NEXT: AtomicU64 = AtomicU64::new(1 << 40);
        (
            Self {
                id: NEXT.fetch_add(1, Ordering::Relaxed),
                caller: Arc::new(caller),
                tx,
            },
            rx,
        )
    }
}

/// The listening side of local IPC.
pub struct Server {
    listener: UnixListener,
    dispatcher: Arc<dyn Dispatcher>,
    resolver: Arc<dyn TokenResolver>,
}

impl Server {
    /// Binds the socket at `path` (replacing a stale one) with mode 0666: every local user may
    /// connect, and the token derived from its credentials decides what it may do.
    pub fn bind(
        path: &Path,
        dispatcher: Arc<dyn Dispatcher>,
        resolver: Arc<dyn TokenResolver>,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        if path.exists() {
            // A live daemon answers a connect; only then is the socket in use.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("another oxhd is already running on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Self {
            listener,
            dispatcher,
            resolver,
        })
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        let next_id = AtomicU64::new(1);
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let cred = match oxh_kal::peer_cred(stream.as_fd()) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(tag = "ipc", "SO_PEERCRED failed: {e}");
                            continue;
                        }
                    };
                    let caller = self.resolver.resolve(cred);
                    let dispatcher = self.dispatcher.clone();
                    tokio::spawn(serve_conn(id, stream, caller, dispatcher));
                }
                Err(e) => {
                    tracing::warn!(tag = "ipc", "accept failed: {e}");
                    // Out of fds and the like: back off briefly instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn serve_conn(id: u64, stream: UnixStream, caller: Caller, dispatcher: Arc<dyn Dispatcher>) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let conn = ConnHandle {
        id,
        caller: Arc::new(caller),
        tx,
    };
    dispatcher.on_connect(&conn);

    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&first);
            let mut closing = first.get(4) == Some(&(Kind::Fatal as u8));
            while !closing && batch.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(more) => {
                        closing = more.get(4) == Some(&(Kind::Fatal as u8));
                        batch.extend_from_slice(&more);
                    }
                    Err(_) => break,
                }
            }
            if wr.write_all(&batch).await.is_err() || closing {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });

    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut dec = FrameDecoder::new();
    'read: loop {
        loop {
            match dec.decode_next() {
                Ok(Some(Decoded::Frame(f))) if f.kind == Kind::Request => {
                    let Some((sa, code, data)) = frame::parse_request(&f.body) else {
                        fatal(&conn, "malformed frame: request body shorter than 8 bytes");
                        break 'read;
                    };
                    let permit = loop {
                        if let Ok(p) = limit.clone().try_acquire_owned() {
                            break p;
                        }
                        // Full: keep reaping finished calls while waiting for room.
                        tokio::select! {
                            p = limit.clone().acquire_owned() => match p {
                                Ok(p) => break p,
                                Err(_) => break 'read,
                            },
                            Some(_) = tasks.join_next() => {}
                        }
                    };
                    let d = dispatcher.clone();
                    let c = conn.clone();
                    tasks.spawn(async move {
                        let result = d.dispatch(c.clone(), sa, code, data).await;
                        let _ = c.tx.send(frame::reply(f.id, &result));
                        drop(permit);
                    });
                }
                Ok(Some(Decoded::Frame(f))) => {
                    fatal(
                        &conn,
                        &format!("malformed frame: kind {:?} is not sent by clients", f.kind),
                    );
                    break 'read;
                }
                Ok(Some(Decoded::Oversize { id: rid, len, .. })) => {
                    let err = RemoteError::new(
                        code::TRANSACTION_TOO_LARGE,
                        format!(
                            "transaction too large: {len} bytes exceeds the {}-byte (1 MiB) limit",
                            frame::MAX_TRANSACTION
                        ),
                    );
                    let _ = conn.tx.send(frame::reply(rid, &Err(err)));
                }
                Ok(None) => break,
                Err(e) => {
                    fatal(&conn, &e.to_string());
                    break 'read;
                }
            }
        }
        tokio::select! {
            r = rd.read_buf(dec.buffer()) => match r {
                Ok(0) | Err(_) => break 'read,
                Ok(_) => {}
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // The client is gone (or broke the protocol): cancel its calls, then the death notice.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    dispatcher.on_disconnect(&conn);
    drop(conn);
    let _ = writer.await;
}

fn fatal(conn: &ConnHandle, msg: &str) {
    tracing::warn!(
        tag = "ipc",
        public_pid = conn.caller.pid,
        "closing connection: {msg}"
    );
    let _ = conn
        .tx
        .send(frame::fatal(&RemoteError::new(code::MALFORMED_FRAME, msg)));
}
