//! The daemon side: accept connections, read frames, dispatch requests, write replies.

use crate::budget::{Grant, Ledger, Limits};
use crate::frame::{self, Kind};
use crate::{Caller, RemoteError, code};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

mod accept;
mod conn;
mod outbox;

/// Reads and drops what the peer still sends, up to `limit` bytes or its close (closing with
/// unread input would reset the connection and could destroy our last frame before the peer
/// reads it).
async fn discard_input(rd: &mut (impl tokio::io::AsyncRead + Unpin), limit: usize) {
    use tokio::io::AsyncReadExt;
    let mut sink = vec![0u8; 16 * 1024];
    let mut total = 0usize;
    while total < limit {
        match rd.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}
pub use accept::{
    Budgets, MAX_BYTES, MAX_CALLS, MAX_CONN_BYTES, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID,
    MAX_PENDING_CALLS, MAX_PENDING_WAITS, MAX_UID_BYTES, MAX_UID_CALLS, MAX_UNSENT_REPLY_BYTES,
    RESERVED_BYTES, RESERVED_CALLS, RESERVED_CONNECTIONS, Server,
};
pub use outbox::MAX_PENDING_EVENT_BYTES;
use outbox::Sink;

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
    sink: Sink,
    /// The descriptor that came with the call this handle was made for; closed when the call
    /// ends unless the SA took it.
    fd: Option<Arc<Mutex<Option<std::os::fd::OwnedFd>>>>,
    /// This connection's long-lived waits ([`MAX_PENDING_WAITS`]).
    waits: Arc<Ledger<()>>,
    /// A remote SA call's: the networkId of the device it came from (dbinder).
    device: Option<Arc<str>>,
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
    /// For a remote SA call (dbinder), the networkId of the device it came from, as the
    /// authenticated bus connection it arrived on says; `None` for a local caller. A method
    /// meant for peers' daemons only refuses a call without it.
    pub fn remote_device(&self) -> Option<&str> {
        self.device.as_deref()
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
                device: None,
            },
            rx,
        )
    }
    /// The handle of a remote SA call from device `network_id` (dbinder): no socket, and
    /// `fd`, if any, as the call's descriptor (a local end of a stream the bus relays).
    pub fn remote(
        caller: Caller,
        network_id: &str,
        fd: Option<std::os::fd::OwnedFd>,
    ) -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (mut h, rx) = Self::detached(caller);
        h.device = Some(Arc::from(network_id));
        h.fd = fd.map(|fd| Arc::new(Mutex::new(Some(fd))));
        (h, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Client, IpcError, ToolTokenResolver};
    use std::io::{Read, Seek};
    use std::path::Path;

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
