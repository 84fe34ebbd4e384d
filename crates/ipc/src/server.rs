//! The daemon side: accept connections, read frames, dispatch requests, write replies.

use crate::frame::{self, Decoded, FrameDecoder, Kind};
use crate::{Caller, RemoteError, TokenResolver, code};
use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, mpsc};
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
                    oxh_kal::set_socket_buffers(stream.as_fd(), crate::SOCKET_BUFFER);
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
    };
    let mut fds: Vec<std::os::fd::OwnedFd> = Vec::new();
    dispatcher.on_connect(&conn);
    let writer = tokio::spawn(outbox.clone().run_writer());

    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut dec = FrameDecoder::new();
    'read: loop {
        loop {
            match dec.decode_next() {
                Ok(Some(Decoded::Frame(f)))
                    if f.kind == Kind::Request || f.kind == Kind::RequestFd =>
                {
                    let Some((sa, code, data)) = frame::parse_request(&f.body) else {
                        fatal(&conn, "malformed frame: request body shorter than 8 bytes");
                        break 'read;
                    };
                    let fd = if f.kind == Kind::RequestFd {
                        if fds.is_empty() {
                            fatal(&conn, "malformed frame: no file descriptor came with it");
                            break 'read;
                        }
                        Some(Arc::new(Mutex::new(Some(fds.remove(0)))))
                    } else {
                        None
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
                            conn.send(&frame::reply(f.id, &result), false);
                            drop(permit);
                        }
                        std::task::Poll::Pending => {
                            let c = conn.clone();
                            tasks.spawn(async move {
                                let result = call.await;
                                close_fd(&fd);
                                c.send(&frame::reply(f.id, &result), false);
                                drop(permit);
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
        tokio::select! {
            r = read_with_fds(&rd, dec.buffer(), &mut fds) => match r {
                Ok(0) | Err(_) => break 'read,
                Ok(_) => {}
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
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
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
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
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
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
        assert!(matches!(e, IpcError::Disconnected(_)), "{e:?}");
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
}
