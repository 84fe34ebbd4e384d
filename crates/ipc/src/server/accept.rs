//! The accept loop and admission: the limits, the `budget` ledgers they are kept in, and
//! refusing connections and requests past them.

use super::{Dispatcher, conn::serve_conn, too_busy};
use crate::budget::{Grant, Ledger, Limits, Refused, Scope};
use crate::{RemoteError, TokenResolver, frame};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

// What one caller can make the daemon hold. Each limit is enforced here and listed in
// docs/DESIGN.md ("Limits"). Root and the daemon's own uid are "privileged": they are not
// bound by the per-uid limits (they can stop the daemon anyway) and may use the reserve that
// keeps them working while strangers hold all they may.

/// Connections one uid may have open at once. A tool holds one and an app a few (its SDK
/// device, remote objects); 64 leaves a busy app room while one stranger's connections, each
/// two tasks and its buffers, stay a small part of the daemon.
pub const MAX_CONNECTIONS_PER_UID: u64 = 64;
/// Connections of all uids together: half the usual 1,024-descriptor limit, so that the
/// daemon's own files, databases and QUIC sockets always have descriptors.
pub const MAX_CONNECTIONS: u64 = 512;
/// Of [`MAX_CONNECTIONS`], kept for privileged callers (root's `oxh`, the daemon's tools).
pub const RESERVED_CONNECTIONS: u64 = 64;
/// Connections being refused (told why, then closed) at once; past it a refused connection
/// is closed without the message, so a connect flood cannot pin descriptors.
const MAX_REFUSING: usize = 64;

/// Request bytes one connection may hold (frames being received, and the bodies of its
/// calls still running). Past it the daemon stops reading from the connection until calls
/// finish: back-pressure on the caller's own pipelining, not an error. 8 MiB is two 4 MiB
/// soft-bus payloads in 1 MiB parts, the most the SDK pipelines per task, times two.
pub const MAX_CONN_BYTES: u64 = 8 << 20;
/// Request bytes all connections of one uid may hold. A frame that would pass it is answered with
/// [`code::TOO_BUSY`](crate::code::TOO_BUSY) and skipped unread. 32 MiB: four busy bulk senders.
pub const MAX_UID_BYTES: u64 = 32 << 20;
/// Request bytes all connections together may hold: the daemon's memory budget for request
/// data (see docs/DESIGN.md, "Limits").
pub const MAX_BYTES: u64 = 128 << 20;
/// Of [`MAX_BYTES`], kept for privileged callers.
pub const RESERVED_BYTES: u64 = 32 << 20;

/// Calls of one connection that may be running (read, not yet answered) at once. A request past it
/// is answered at once with [`code::TOO_BUSY`](crate::code::TOO_BUSY). Calls that finish without
/// waiting (most) never count; 256 is far above what a client waits on at once.
pub const MAX_PENDING_CALLS: usize = 256;
/// Running calls of all connections of one uid; each costs its task and future (about
/// 1-3 KiB), so this bounds a stranger's pipelined calls across its connections.
pub const MAX_UID_CALLS: u64 = 1024;
/// Running calls of everyone together.
pub const MAX_CALLS: u64 = 8192;
/// Of [`MAX_CALLS`], kept for privileged callers.
pub const RESERVED_CALLS: u64 = 1024;
/// Long-lived waits one connection may hold at once (`param wait`, watches, listeners: an SA takes
/// one with [`ConnHandle::hold_wait`](super::ConnHandle::hold_wait) for as long as it keeps the
/// wait). 32 is more than a tool or app waits on at once; past it the SA answers
/// [`code::TOO_BUSY`](crate::code::TOO_BUSY).
pub const MAX_PENDING_WAITS: u64 = 32;
/// Replies waiting unsent for a client that does not read; past it the daemon takes no more
/// requests from that connection until the client reads (back-pressure). Replies are never
/// dropped, so this bounds them by not making more.
pub const MAX_UNSENT_REPLY_BYTES: usize = 4 << 20;
/// After a connection closes, how long to wait before giving freed memory back to the
/// kernel: one `malloc_trim` after a burst of closes rather than one per close.
const TRIM_DELAY: Duration = Duration::from_millis(500);

/// The listening side of local IPC.
pub struct Server {
    listener: UnixListener,
    dispatcher: Arc<dyn Dispatcher>,
    resolver: Arc<dyn TokenResolver>,
    budgets: Arc<Budgets>,
    /// Uids treated as privileged: root and the daemon's own.
    privileged: Vec<u32>,
}

/// What all connections together hold, per uid and in total.
#[derive(Debug)]
pub struct Budgets {
    /// Open connections ([`MAX_CONNECTIONS_PER_UID`], [`MAX_CONNECTIONS`]).
    pub conns: Arc<Ledger<u32>>,
    /// Request bytes ([`MAX_UID_BYTES`], [`MAX_BYTES`]).
    pub bytes: Arc<Ledger<u32>>,
    /// Running calls ([`MAX_UID_CALLS`], [`MAX_CALLS`]).
    pub calls: Arc<Ledger<u32>>,
    /// Connections being refused now ([`MAX_REFUSING`]).
    refusing: AtomicUsize,
    /// Signalled when a connection closes, for the memory trimmer.
    closed: Notify,
}

impl Budgets {
    fn new() -> Self {
        Self {
            conns: Ledger::new(Limits {
                per_key: MAX_CONNECTIONS_PER_UID,
                total: MAX_CONNECTIONS,
                reserved: RESERVED_CONNECTIONS,
            }),
            bytes: Ledger::new(Limits {
                per_key: MAX_UID_BYTES,
                total: MAX_BYTES,
                reserved: RESERVED_BYTES,
            }),
            calls: Ledger::new(Limits {
                per_key: MAX_UID_CALLS,
                total: MAX_CALLS,
                reserved: RESERVED_CALLS,
            }),
            refusing: AtomicUsize::new(0),
            closed: Notify::new(),
        }
    }
}

/// "N <what> for uid U (limit L)" or "N <what> in total (limit L)".
fn refusal_text(r: &Refused, what: &str, uid: u32) -> String {
    match r.scope {
        Scope::Key => format!("{} {what} for uid {uid} (limit {})", r.held, r.limit),
        Scope::Total => format!("{} {what} in total (limit {})", r.held, r.limit),
    }
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
            budgets: Arc::new(Budgets::new()),
            // Root and the daemon's own uid: not bound by per-uid limits, may use reserves.
            privileged: vec![0, oxh_kal::current_uid()],
        })
    }

    /// Treats every uid, the daemon's own too, as a stranger: for tests of the per-uid
    /// limits, whose callers are all the test's own uid.
    #[doc(hidden)]
    pub fn without_privileged_uids(mut self) -> Self {
        self.privileged.clear();
        self
    }

    /// What the connections hold now (for dumps and tests).
    pub fn budgets(&self) -> Arc<Budgets> {
        self.budgets.clone()
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        let next_id = AtomicU64::new(1);
        let trimmer = tokio::spawn(trim_after_closes(self.budgets.clone()));
        let _stop_trimmer = AbortOnDrop(trimmer);
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
                    let privileged = self.privileged.contains(&cred.uid);
                    let slot = match self.budgets.conns.try_acquire(cred.uid, privileged, 1) {
                        Ok(g) => g,
                        Err(r) => {
                            let err = too_busy(refusal_text(&r, "connections", cred.uid));
                            tracing::warn!(
                                tag = "ipc",
                                public_pid = cred.pid,
                                public_uid = cred.uid,
                                "refusing connection: {}",
                                err.message
                            );
                            refuse(stream, err, self.budgets.clone());
                            continue;
                        }
                    };
                    oxh_kal::set_socket_buffers(stream.as_fd(), crate::SOCKET_BUFFER);
                    let uid = cred.uid;
                    let caller = self.resolver.resolve(cred);
                    let dispatcher = self.dispatcher.clone();
                    let budgets = self.budgets.clone();
                    tokio::spawn(async move {
                        serve_conn(id, stream, caller, dispatcher, &budgets, uid, privileged).await;
                        drop(slot);
                        budgets.closed.notify_one();
                    });
                }
                Err(e) => {
                    tracing::warn!(tag = "ipc", "accept failed: {e}");
                    // Out of fds and the like: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gives memory freed by closed connections back to the kernel. The allocator is told to
/// keep freed memory (`oxh_kal::keep_freed_memory`, for bulk throughput), so without this
/// the buffers of a burst of connections would stay resident after they close.
async fn trim_after_closes(budgets: Arc<Budgets>) {
    loop {
        budgets.closed.notified().await;
        tokio::time::sleep(TRIM_DELAY).await;
        let _ = tokio::task::spawn_blocking(oxh_kal::release_freed_memory).await;
    }
}

/// Tells a refused client why (a Fatal frame it shows as its error), then closes. At most
/// [`MAX_REFUSING`] at once, each at most a second.
fn refuse(stream: UnixStream, err: RemoteError, budgets: Arc<Budgets>) {
    if budgets.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        budgets.refusing.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        let bytes = frame::fatal(&err);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let (mut rd, mut wr) = stream.into_split();
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
            let _ = oxh_kal::shutdown_write(wr.as_ref().as_fd());
            // Closing with unread input would reset the connection and could destroy the
            // message before the client reads it: discard what it sends until it closes.
            super::discard_input(&mut rd, frame::READ_CHUNK).await;
        })
        .await;
        budgets.refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// What the frame at the front of a connection's buffer was given when it was admitted:
/// its bytes (the connection's, the uid's) and its call slot, held until its call ends.
pub(super) struct Admitted {
    _conn_bytes: Grant<()>,
    _bytes: Grant<u32>,
    _call: Grant<u32>,
}

/// The decision on a request whose header is in.
pub(super) enum Admission {
    Take(Admitted),
    /// Answer it with this error and skip it.
    Refuse(RemoteError),
    /// The connection holds as much as it may: take nothing until calls finish or the
    /// client reads its replies.
    Wait,
}

pub(super) struct ConnBudget<'a> {
    pub(super) budgets: &'a Budgets,
    pub(super) uid: u32,
    pub(super) privileged: bool,
    pub(super) bytes: Arc<Ledger<()>>,
}

impl ConnBudget<'_> {
    pub(super) fn admit(&self, len: usize, running: usize, unsent: usize) -> Admission {
        let n = (frame::HEADER_LEN + len) as u64;
        if unsent > MAX_UNSENT_REPLY_BYTES {
            return Admission::Wait;
        }
        if running >= MAX_PENDING_CALLS {
            return Admission::Refuse(too_busy(format!(
                "{running} calls pending on this connection (limit {MAX_PENDING_CALLS})"
            )));
        }
        let Ok(conn_bytes) = self.bytes.try_acquire((), false, n) else {
            return Admission::Wait;
        };
        let bytes = match self.budgets.bytes.try_acquire(self.uid, self.privileged, n) {
            Ok(g) => g,
            Err(r) => {
                return Admission::Refuse(too_busy(refusal_text(
                    &r,
                    "request bytes buffered",
                    self.uid,
                )));
            }
        };
        let call = match self.budgets.calls.try_acquire(self.uid, self.privileged, 1) {
            Ok(g) => g,
            Err(r) => {
                return Admission::Refuse(too_busy(refusal_text(&r, "calls pending", self.uid)));
            }
        };
        Admission::Take(Admitted {
            _conn_bytes: conn_bytes,
            _bytes: bytes,
            _call: call,
        })
    }
}
