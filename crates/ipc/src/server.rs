//! The daemon side: accept connections, read frames, dispatch requests, write replies.

use crate::budget::{Grant, Ledger, Limits, Refused, Scope};
use crate::frame::{self, Decoded, FrameDecoder, Kind};
use crate::{Caller, RemoteError, TokenResolver, code};
use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

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
/// Request bytes all connections of one uid may hold. A frame that would pass it is
/// answered with [`code::TOO_BUSY`] and skipped unread. 32 MiB: four busy bulk senders.
pub const MAX_UID_BYTES: u64 = 32 << 20;
/// Request bytes all connections together may hold: the daemon's memory budget for request
/// data (see docs/DESIGN.md, "Limits").
pub const MAX_BYTES: u64 = 128 << 20;
/// Of [`MAX_BYTES`], kept for privileged callers.
pub const RESERVED_BYTES: u64 = 32 << 20;

/// Calls of one connection that may be running (read, not yet answered) at once. A request
/// past it is answered at once with [`code::TOO_BUSY`]. Calls that finish without waiting
/// (most) never count; 256 is far above what a client waits on at once.
pub const MAX_PENDING_CALLS: usize = 256;
/// Running calls of all connections of one uid; each costs its task and future (about
/// 1-3 KiB), so this bounds a stranger's pipelined calls across its connections.
pub const MAX_UID_CALLS: u64 = 1024;
/// Running calls of everyone together.
pub const MAX_CALLS: u64 = 8192;
/// Of [`MAX_CALLS`], kept for privileged callers.
pub const RESERVED_CALLS: u64 = 1024;
/// Long-lived waits one connection may hold at once (`param wait`, watches, listeners: an
/// SA takes one with [`ConnHandle::hold_wait`] for as long as it keeps the wait). 32 is more
/// than a tool or app waits on at once; past it the SA answers [`code::TOO_BUSY`].
pub const MAX_PENDING_WAITS: u64 = 32;
/// Replies waiting unsent for a client that does not read; past it the daemon takes no more
/// requests from that connection until the client reads (back-pressure). Replies are never
/// dropped, so this bounds them by not making more.
pub const MAX_UNSENT_REPLY_BYTES: usize = 4 << 20;
/// Request bodies smaller than this are copied out of the read buffer, so a long call (a
/// wait) holds its few bytes, not the 64 KiB buffer they arrived in. Larger ones are taken
/// without copying (bulk data).
const COPY_BELOW: usize = 64 * 1024;
/// After a connection closes, how long to wait before giving freed memory back to the
/// kernel: one `malloc_trim` after a burst of closes rather than one per close.
const TRIM_DELAY: Duration = Duration::from_millis(500);

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

/// Most bytes of events that may wait unsent for one client; past this a slow reader's events
/// are refused (`push_event` returns false) while replies still queue.
pub const MAX_PENDING_EVENT_BYTES: usize = 8 << 20;

/// One client connection as seen by system abilities: who it is, and a way to push events.
#[derive(Clone)]
pub struct ConnHandle {
    id: u64,
    caller: Arc<Caller>,
    sink: Sink,
    /// The descriptor that came with the call this handle was made for; closed when the call
    /// ends unless the SA took it.
    fd: Option<Arc<Mutex<Option<std::os::fd::OwnedFd>>>>,
    /// This connection's long-lived waits ([`MAX_PENDING_WAITS`]).
    waits: Arc<Ledger<()>>,
}

/// One of a connection's [`MAX_PENDING_WAITS`] wait slots, given back when dropped.
#[derive(Debug)]
pub struct WaitSlot(#[allow(dead_code)] Grant<()>);

fn conn_ledger(limit: u64) -> Arc<Ledger<()>> {
    Ledger::new(Limits {
        per_key: limit,
        total: limit,
        reserved: 0,
    })
}

/// The error a caller sees past a limit: [`code::TOO_BUSY`] with what, how many, the limit.
pub fn too_busy(message: impl Into<String>) -> RemoteError {
    RemoteError::new(code::TOO_BUSY, format!("too busy: {}", message.into()))
}

/// Descriptors a client may have sent ahead of their requests; more is a protocol error.
const MAX_QUEUED_FDS: usize = 8;

#[derive(Clone)]
enum Sink {
    Socket(Arc<Outbox>),
    Channel(mpsc::UnboundedSender<Vec<u8>>),
}

/// The write side of a connection. A frame is written straight from the task that produced
/// it when nothing is queued (no hop through a writer task: a reply costs one syscall); what
/// the socket does not take at once is queued, in order, for the writer task to flush.
struct Outbox {
    wr: OwnedWriteHalf,
    q: Mutex<OutQ>,
    notify: Notify,
    /// Signalled when queued bytes were written, for senders waiting for room.
    room: Notify,
}

#[derive(Default)]
struct OutQ {
    buf: BytesMut,
    closed: bool,
    close_after_flush: bool,
}

impl Outbox {
    /// Queues or writes a frame; false once the connection is closed.
    fn send(&self, frame: &[u8], is_event: bool) -> bool {
        self.send_vectored(&[frame], is_event)
    }

    /// Queues or writes a frame given in pieces (header, then body parts): when nothing is
    /// queued they go out in one writev, so a bulk body is not copied into a frame first;
    /// only what the socket does not take is copied into the queue.
    fn send_vectored(&self, pieces: &[&[u8]], is_event: bool) -> bool {
        let Ok(mut q) = self.q.lock() else {
            return false;
        };
        if q.closed || q.close_after_flush {
            return false;
        }
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        if is_event && q.buf.len() + len > MAX_PENDING_EVENT_BYTES {
            return false;
        }
        let mut written = 0;
        if q.buf.is_empty() {
            let slices: Vec<std::io::IoSlice<'_>> =
                pieces.iter().map(|p| std::io::IoSlice::new(p)).collect();
            match self.wr.try_write_vectored(&slices) {
                Ok(n) if n == len => return true,
                Ok(n) => written = n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    q.closed = true;
                    return false;
                }
            }
        }
        // Queue the rest, skipping what the socket took.
        for p in pieces {
            let skip = written.min(p.len());
            written -= skip;
            q.buf.extend_from_slice(&p[skip..]);
        }
        drop(q);
        self.notify.notify_one();
        true
    }

    /// Sends a last frame, then closes once everything queued is written.
    fn send_last(&self, frame: &[u8]) {
        self.send(frame, false);
        if let Ok(mut q) = self.q.lock() {
            q.close_after_flush = true;
        }
        self.notify.notify_one();
    }

    fn close(&self) {
        if let Ok(mut q) = self.q.lock() {
            q.closed = true;
        }
        self.notify.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.q.lock().map(|q| q.closed).unwrap_or(true)
    }

    /// Bytes queued and not yet written.
    fn queued(&self) -> usize {
        self.q.lock().map(|q| q.buf.len()).unwrap_or(0)
    }

    /// The writer task: flushes whatever [`Outbox::send`] could not write at once.
    async fn run_writer(self: Arc<Self>) {
        loop {
            self.notify.notified().await;
            loop {
                {
                    let Ok(mut q) = self.q.lock() else { return };
                    if q.closed {
                        return;
                    }
                    if q.buf.is_empty() {
                        if q.close_after_flush {
                            q.closed = true;
                            drop(q);
                            let _ = oxh_kal::shutdown_write(self.wr.as_ref().as_fd());
                            return;
                        }
                        break;
                    }
                }
                if self.wr.writable().await.is_err() {
                    self.close();
                    return;
                }
                let Ok(mut q) = self.q.lock() else { return };
                match self.wr.try_write(&q.buf) {
                    Ok(n) => {
                        q.buf.advance(n);
                        self.room.notify_waiters();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        q.closed = true;
                        return;
                    }
                }
            }
        }
    }
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
    /// Pushes an event to subscription `sub` of this client; false once the client is gone,
    /// or when it has not read [`MAX_PENDING_EVENT_BYTES`] of earlier events (a slow reader
    /// loses events rather than growing the daemon's memory).
    pub fn push_event(&self, sub: u64, data: &[u8]) -> bool {
        self.send(&frame::event(sub, data), true)
    }
    /// The file descriptor the client attached to this call (SCM_RIGHTS), once: a file it
    /// opened with its own rights, for the SA to read or write instead of a path.
    pub fn take_fd(&self) -> Option<std::os::fd::OwnedFd> {
        self.fd.as_ref()?.lock().ok()?.take()
    }
    /// Takes one of this connection's [`MAX_PENDING_WAITS`] slots for a long-lived wait or
    /// subscription (`what` names it in the error); keep it as long as the wait lasts. Past
    /// the limit: [`code::TOO_BUSY`], and the SA should start nothing.
    pub fn hold_wait(&self, what: &str) -> Result<WaitSlot, RemoteError> {
        self.waits
            .try_acquire((), false, 1)
            .map(WaitSlot)
            .map_err(|r| {
                too_busy(format!(
                    "{} {what} waits pending on this connection (limit {})",
                    r.held, r.limit
                ))
            })
    }
    /// True once the client's connection has closed.
    pub fn is_closed(&self) -> bool {
        match &self.sink {
            Sink::Socket(o) => o.is_closed(),
            Sink::Channel(tx) => tx.is_closed(),
        }
    }
    /// Pushes an event like [`ConnHandle::push_event`], but when the client is behind, waits
    /// for it to read instead of dropping the event: for data that must not be lost (socket
    /// bytes), where the sender is better slowed down. False once the client is gone.
    pub async fn push_event_wait(&self, sub: u64, data: &[u8]) -> bool {
        self.push_event_parts_wait(sub, &[data]).await
    }
    /// [`ConnHandle::push_event_wait`] of an event whose data is the concatenation of
    /// `parts`: header and parts go to the socket in one writev (bulk data is neither
    /// assembled nor copied into a frame, unless the socket is full and it must be queued).
    pub async fn push_event_parts_wait(&self, sub: u64, parts: &[&[u8]]) -> bool {
        match &self.sink {
            Sink::Channel(tx) => {
                let mut frame = Vec::new();
                frame::encode_into(&mut frame, Kind::Event, sub, parts);
                tx.send(frame).is_ok()
            }
            Sink::Socket(o) => loop {
                let len = parts.iter().map(|p| p.len()).sum();
                let head = frame::header(Kind::Event, sub, len);
                let mut pieces = Vec::with_capacity(1 + parts.len());
                pieces.push(&head[..]);
                pieces.extend_from_slice(parts);
                let room = o.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                if o.send_vectored(&pieces, true) {
                    return true;
                }
                if o.is_closed() {
                    return false;
                }
                // Bounded: re-check at least every 100 ms in case the writer is gone.
                let _ = tokio::time::timeout(std::time::Duration::from_millis(100), room).await;
            },
        }
    }
    fn send(&self, frame: &[u8], is_event: bool) -> bool {
        match &self.sink {
            Sink::Socket(o) => o.send(frame, is_event),
            Sink::Channel(tx) => tx.send(frame.to_vec()).is_ok(),
        }
    }
    /// A handle for tests of SA logic without a socket; events land in the returned receiver.
    pub fn detached(caller: Caller) -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        static NEXT: AtomicU64 = AtomicU64::new(1 << 40);
        (
            Self {
                id: NEXT.fetch_add(1, Ordering::Relaxed),
                caller: Arc::new(caller),
                sink: Sink::Channel(tx),
                fd: None,
                waits: conn_ledger(MAX_PENDING_WAITS),
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
            let mut sink = [0u8; 4096];
            let mut total = 0usize;
            while total < frame::READ_CHUNK {
                match rd.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        budgets.refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// What the frame at the front of a connection's buffer was given when it was admitted:
/// its bytes (the connection's, the uid's) and its call slot, held until its call ends.
struct Admitted {
    _conn_bytes: Grant<()>,
    _bytes: Grant<u32>,
    _call: Grant<u32>,
}

/// The decision on a request whose header is in.
enum Admission {
    Take(Admitted),
    /// Answer it with this error and skip it.
    Refuse(RemoteError),
    /// The connection holds as much as it may: take nothing until calls finish or the
    /// client reads its replies.
    Wait,
}

struct ConnBudget<'a> {
    budgets: &'a Budgets,
    uid: u32,
    privileged: bool,
    bytes: Arc<Ledger<()>>,
}

impl ConnBudget<'_> {
    fn admit(&self, len: usize, running: usize, unsent: usize) -> Admission {
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

async fn serve_conn(
    id: u64,
    stream: UnixStream,
    caller: Caller,
    dispatcher: Arc<dyn Dispatcher>,
    budgets: &Budgets,
    uid: u32,
    privileged: bool,
) {
    let (mut rd, wr) = stream.into_split();
    let outbox = Arc::new(Outbox {
        wr,
        q: Mutex::new(OutQ::default()),
        notify: Notify::new(),
        room: Notify::new(),
    });
    let conn = ConnHandle {
        id,
        caller: Arc::new(caller),
        sink: Sink::Socket(outbox.clone()),
        fd: None,
        waits: conn_ledger(MAX_PENDING_WAITS),
    };
    let mut fds: Vec<std::os::fd::OwnedFd> = Vec::new();
    dispatcher.on_connect(&conn);
    let writer = tokio::spawn(outbox.clone().run_writer());

    let budget = ConnBudget {
        budgets,
        uid,
        privileged,
        bytes: conn_ledger(MAX_CONN_BYTES),
    };
    let mut admitted: Option<Admitted> = None;
    let mut tasks = JoinSet::new();
    let mut dec = FrameDecoder::new();
    'read: loop {
        loop {
            // Decide on a request when its header is in, before its body is buffered.
            if admitted.is_none() {
                match dec.peek() {
                    Ok(None) => {}
                    Ok(Some(h)) if h.kind != Kind::Request && h.kind != Kind::RequestFd => {
                        fatal(
                            &conn,
                            &format!("malformed frame: kind {:?} is not sent by clients", h.kind),
                        );
                        break 'read;
                    }
                    Ok(Some(h)) if h.len > frame::MAX_TRANSACTION => {}
                    Ok(Some(h)) => {
                        while tasks.try_join_next().is_some() {}
                        match budget.admit(h.len, tasks.len(), outbox.queued()) {
                            Admission::Take(a) => admitted = Some(a),
                            Admission::Refuse(err) => {
                                if h.kind == Kind::RequestFd && !fds.is_empty() {
                                    fds.remove(0);
                                }
                                dec.skip_front();
                                conn.send(&frame::reply(h.id, &Err(err)), false);
                                continue;
                            }
                            Admission::Wait => {
                                if outbox.is_closed() {
                                    break 'read;
                                }
                                let room = outbox.room.notified();
                                tokio::select! {
                                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                                    _ = tokio::time::timeout(Duration::from_millis(100), room) => {}
                                }
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        fatal(&conn, &e.to_string());
                        break 'read;
                    }
                }
            }
            match dec.decode_next() {
                Ok(Some(Decoded::Frame(f)))
                    if f.kind == Kind::Request || f.kind == Kind::RequestFd =>
                {
                    let Some(held) = admitted.take() else {
                        fatal(
                            &conn,
                            "internal error: a request was read without admission",
                        );
                        break 'read;
                    };
                    let Some((sa, code, data)) = frame::parse_request(&f.body) else {
                        fatal(&conn, "malformed frame: request body shorter than 8 bytes");
                        break 'read;
                    };
                    let (kind, rid) = (f.kind, f.id);
                    drop(f);
                    let data = if data.len() < COPY_BELOW {
                        Bytes::copy_from_slice(&data)
                    } else {
                        data
                    };
                    let fd = if kind == Kind::RequestFd {
                        if fds.is_empty() {
                            fatal(&conn, "malformed frame: no file descriptor came with it");
                            break 'read;
                        }
                        Some(Arc::new(Mutex::new(Some(fds.remove(0)))))
                    } else {
                        None
                    };
                    let d = dispatcher.clone();
                    let mut c = conn.clone();
                    c.fd = fd.clone();
                    let mut call = Box::pin(async move { d.dispatch(c, sa, code, data).await });
                    // Most calls finish without waiting: run them here and answer at once.
                    // Polling with a no-op waker is sound because a call that is not done is
                    // spawned, and the spawned task polls it again with a real waker.
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    match call.as_mut().poll(&mut cx) {
                        std::task::Poll::Ready(result) => {
                            close_fd(&fd);
                            conn.send(&frame::reply(rid, &result), false);
                            drop(held);
                        }
                        std::task::Poll::Pending => {
                            let c = conn.clone();
                            tasks.spawn(async move {
                                let result = call.await;
                                close_fd(&fd);
                                c.send(&frame::reply(rid, &result), false);
                                drop(held);
                            });
                        }
                    }
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
                    conn.send(&frame::reply(rid, &Err(err)), false);
                }
                Ok(None) => break,
                Err(e) => {
                    fatal(&conn, &e.to_string());
                    break 'read;
                }
            }
        }
        if fds.len() > MAX_QUEUED_FDS {
            fatal(&conn, "too many file descriptors without their requests");
            break 'read;
        }
        dec.reserve_for_read();
        tokio::select! {
            r = read_with_fds(&rd, dec.buffer(), &mut fds) => match r {
                Ok(0) | Err(_) => break 'read,
                Ok(_) => {}
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(admitted);
    // The client is gone (or broke the protocol): cancel its calls, then the death notice.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let broke_protocol = outbox
        .q
        .lock()
        .map(|q| q.close_after_flush)
        .unwrap_or(false);
    if !broke_protocol {
        outbox.close();
    }
    dispatcher.on_disconnect(&conn);
    drop(conn);
    let _ = writer.await;
    if broke_protocol {
        // Closing with unread input would reset the connection (RST) and could destroy the
        // error frame before the client reads it: discard what it still sends, bounded.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut sink = vec![0u8; 16 * 1024];
            let mut total = 0usize;
            while total < frame::MAX_TRANSACTION {
                match rd.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
    }
}

/// Closes a call's descriptor if the SA did not take it.
fn close_fd(fd: &Option<Arc<Mutex<Option<std::os::fd::OwnedFd>>>>) {
    if let Some(f) = fd
        && let Ok(mut f) = f.lock()
    {
        f.take();
    }
}

/// Reads what the client sent, with any descriptors attached to it (requests of kind
/// [`Kind::RequestFd`] carry one); `Ok(0)` at end of stream.
async fn read_with_fds(
    rd: &tokio::net::unix::OwnedReadHalf,
    buf: &mut BytesMut,
    fds: &mut Vec<std::os::fd::OwnedFd>,
) -> std::io::Result<usize> {
    let sock = rd.as_ref();
    loop {
        sock.readable().await?;
        let spare = buf.spare_capacity_mut();
        match sock.try_io(tokio::io::Interest::READABLE, || {
            oxh_kal::recv_with_fds(sock.as_fd(), spare, fds)
        }) {
            Ok(n) => {
                // SAFETY: recvmsg initialized the first `n` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

fn fatal(conn: &ConnHandle, msg: &str) {
    tracing::warn!(
        tag = "ipc",
        public_pid = conn.caller.pid,
        "closing connection: {msg}"
    );
    let bytes = frame::fatal(&RemoteError::new(code::MALFORMED_FRAME, msg));
    match &conn.sink {
        Sink::Socket(o) => o.send_last(&bytes),
        Sink::Channel(tx) => {
            let _ = tx.send(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Client, IpcError, ToolTokenResolver};
    use std::io::{Read, Seek};

    /// Answers every call with the contents of the file that came with it, or "none".
    struct ReadsFd;

    #[async_trait::async_trait]
    impl Dispatcher for ReadsFd {
        async fn dispatch(
            &self,
            conn: ConnHandle,
            _sa: i32,
            _code: u32,
            _data: Bytes,
        ) -> Result<Vec<u8>, RemoteError> {
            let Some(fd) = conn.take_fd() else {
                return Ok(crate::encode(&"none".to_string()));
            };
            let mut f = std::fs::File::from(fd);
            let mut s = String::new();
            f.rewind().and_then(|_| f.read_to_string(&mut s)).ok();
            Ok(crate::encode(&s))
        }
        fn on_disconnect(&self, _conn: &ConnHandle) {}
    }

    #[tokio::test]
    async fn a_descriptor_travels_with_its_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ipc.sock");
        let server = Server::bind(
            &sock,
            Arc::new(ReadsFd),
            Arc::new(ToolTokenResolver::new(vec![], oxh_kal::current_uid())),
        )
        .unwrap();
        let task = tokio::spawn(server.run());
        let c = Client::connect(&sock).await.unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "contents").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsFd;
        let got: String = c.call_with_fd(1, 1, &(), f.as_fd()).await.unwrap();
        assert_eq!(got, "contents");
        let got: String = c.call(1, 1, &()).await.unwrap();
        assert_eq!(got, "none");
        // A request that says it carries a descriptor but does not is a protocol error.
        let mut bad = Vec::new();
        frame::encode_into(&mut bad, Kind::RequestFd, 99, &[&[0u8; 8]]);
        c.write_raw(&bad).await.unwrap();
        let e = c.call::<_, String>(1, 1, &()).await.unwrap_err();
        assert_eq!(e.code(), Some(code::MALFORMED_FRAME), "{e:?}");
        assert!(matches!(e, IpcError::Closed(_)), "{e:?}");
        task.abort();
    }

    /// Appends each call's data to one log and answers with the log's length and the
    /// data's first byte, so that order and integrity show in the answers.
    struct Appends(Mutex<Vec<u8>>);

    #[async_trait::async_trait]
    impl Dispatcher for Appends {
        async fn dispatch(
            &self,
            _conn: ConnHandle,
            _sa: i32,
            _code: u32,
            data: Bytes,
        ) -> Result<Vec<u8>, RemoteError> {
            let mut log = self.0.lock().map_err(|_| RemoteError::new(1, "poisoned"))?;
            log.extend_from_slice(&data);
            Ok(crate::encode(&(log.len() as u64, data.first().copied())))
        }
        fn on_disconnect(&self, _conn: &ConnHandle) {}
    }

    /// Requests written one after another before any reply is awaited (as the SDK sends a
    /// payload's parts), large enough to fill the socket buffer mid-writev, reach the SA
    /// whole and in the order they were written.
    #[tokio::test]
    async fn pipelined_requests_arrive_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ipc.sock");
        let log = Arc::new(Appends(Mutex::new(Vec::new())));
        let server = Server::bind(
            &sock,
            log.clone(),
            Arc::new(ToolTokenResolver::new(vec![], oxh_kal::current_uid())),
        )
        .unwrap();
        let task = tokio::spawn(server.run());
        let c = Client::connect(&sock).await.unwrap();
        let part = |i: u8| vec![i; frame::MAX_TRANSACTION - 64];
        let mut pending = Vec::new();
        for i in 0..8u8 {
            let p = part(i);
            pending.push(c.send_parts(1, 1, &[&p[..1], &p[1..]]).await.unwrap());
        }
        for (i, r) in pending.into_iter().enumerate() {
            let (len, first): (u64, Option<u8>) = crate::decode(&r.reply().await.unwrap()).unwrap();
            assert_eq!(len, ((i + 1) * (frame::MAX_TRANSACTION - 64)) as u64);
            assert_eq!(first, Some(i as u8));
        }
        let want: Vec<u8> = (0..8u8).flat_map(part).collect();
        assert!(
            *log.0.lock().unwrap() == want,
            "the log is not the parts in order"
        );
        // Over the limit is refused before anything is written.
        let big = vec![0u8; frame::MAX_TRANSACTION];
        assert!(matches!(
            c.send_parts(1, 1, &[&big]).await,
            Err(IpcError::TooLarge { .. })
        ));
        task.abort();
    }

    /// Code 1 holds a wait slot and never answers, 2 never answers, anything else echoes.
    struct Holds;

    #[async_trait::async_trait]
    impl Dispatcher for Holds {
        async fn dispatch(
            &self,
            conn: ConnHandle,
            _sa: i32,
            code: u32,
            data: Bytes,
        ) -> Result<Vec<u8>, RemoteError> {
            match code {
                1 => {
                    let _slot = conn.hold_wait("test")?;
                    std::future::pending().await
                }
                2 => std::future::pending().await,
                _ => Ok(data.to_vec()),
            }
        }
        fn on_disconnect(&self, _conn: &ConnHandle) {}
    }

    fn strangers_server(
        dir: &Path,
    ) -> (
        std::path::PathBuf,
        Arc<Budgets>,
        tokio::task::JoinHandle<()>,
    ) {
        let sock = dir.join("ipc.sock");
        let server = Server::bind(
            &sock,
            Arc::new(Holds),
            Arc::new(ToolTokenResolver::new(vec![], oxh_kal::current_uid())),
        )
        .unwrap()
        .without_privileged_uids();
        let budgets = server.budgets();
        (sock, budgets, tokio::spawn(server.run()))
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !f() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    #[tokio::test]
    async fn connections_past_the_uid_limit_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, budgets, task) = strangers_server(dir.path());
        let uid = oxh_kal::current_uid();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_UID {
            let c = Client::connect(&sock).await.unwrap();
            assert_eq!(c.call_raw(0, 3, b"hi").await.unwrap(), &b"hi"[..]);
            held.push(c);
        }
        let extra = Client::connect(&sock).await.unwrap();
        let e = extra.call_raw(0, 3, b"hi").await.unwrap_err();
        assert_eq!(e.code(), Some(code::TOO_BUSY), "{e}");
        assert!(
            e.to_string().contains(&format!(
                "too busy: {MAX_CONNECTIONS_PER_UID} connections for uid {uid} (limit {MAX_CONNECTIONS_PER_UID})"
            )),
            "{e}"
        );
        // A closed connection makes room; nothing stays counted once all are closed.
        held.pop();
        until("a slot to free", || {
            budgets.conns.held(&uid) < MAX_CONNECTIONS_PER_UID
        })
        .await;
        let c = Client::connect(&sock).await.unwrap();
        assert_eq!(c.call_raw(0, 3, b"ok").await.unwrap(), &b"ok"[..]);
        drop((c, held, extra));
        until("every connection to be given back", || {
            budgets.conns.total() == 0
        })
        .await;
        task.abort();
    }

    #[tokio::test]
    async fn waits_and_pending_calls_past_their_limits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, budgets, task) = strangers_server(dir.path());
        let c = Client::connect(&sock).await.unwrap();
        let mut waits = Vec::new();
        for _ in 0..MAX_PENDING_WAITS {
            waits.push(c.send_parts(0, 1, &[]).await.unwrap());
        }
        let e = c.call_raw(0, 1, b"").await.unwrap_err();
        assert_eq!(e.code(), Some(code::TOO_BUSY), "{e}");
        assert!(
            e.to_string()
                .contains("32 test waits pending on this connection (limit 32)"),
            "{e}"
        );
        let mut calls = Vec::new();
        for _ in 0..MAX_PENDING_CALLS - MAX_PENDING_WAITS as usize {
            calls.push(c.send_parts(0, 2, &[]).await.unwrap());
        }
        let e = c.call_raw(0, 2, b"").await.unwrap_err();
        assert_eq!(e.code(), Some(code::TOO_BUSY), "{e}");
        assert!(
            e.to_string()
                .contains("256 calls pending on this connection (limit 256)"),
            "{e}"
        );
        // Other connections are not affected.
        let other = Client::connect(&sock).await.unwrap();
        assert_eq!(other.call_raw(0, 3, b"x").await.unwrap(), &b"x"[..]);
        let uid = oxh_kal::current_uid();
        assert_eq!(budgets.calls.held(&uid), MAX_PENDING_CALLS as u64);
        drop((c, waits, calls));
        until("the calls to be given back", || {
            budgets.calls.total() == 0 && budgets.bytes.total() == 0
        })
        .await;
        task.abort();
    }

    #[tokio::test]
    async fn partial_frames_past_the_uid_byte_limit_are_refused_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, budgets, task) = strangers_server(dir.path());
        let uid = oxh_kal::current_uid();
        // Each connection starts a 1 MiB request and sends half of it.
        let body = frame::MAX_TRANSACTION;
        let head = frame::header(Kind::Request, 7, body);
        let half = vec![0u8; body / 2];
        let per = (frame::HEADER_LEN + body) as u64;
        let fit = MAX_UID_BYTES / per;
        let mut conns = Vec::new();
        for _ in 0..fit {
            let c = Client::connect(&sock).await.unwrap();
            c.write_raw(&head).await.unwrap();
            c.write_raw(&half).await.unwrap();
            conns.push(c);
        }
        until("the partial frames to be admitted", || {
            budgets.bytes.held(&uid) == fit * per
        })
        .await;
        let c = Client::connect(&sock).await.unwrap();
        let p = c.send_parts(0, 3, &[&vec![1u8; body - 8]]).await.unwrap();
        let e = p.reply().await.unwrap_err();
        assert_eq!(e.code(), Some(code::TOO_BUSY), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("request bytes buffered for uid {uid}")),
            "{e}"
        );
        // The refused frame was skipped, not buffered: the connection carries on.
        assert_eq!(c.call_raw(0, 3, b"after").await.unwrap(), &b"after"[..]);
        assert!(budgets.bytes.held(&uid) <= MAX_UID_BYTES);
        drop((conns, c));
        until("the bytes to be given back", || budgets.bytes.total() == 0).await;
        task.abort();
    }
}
