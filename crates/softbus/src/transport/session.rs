//! Sockets (OpenHarmony's Socket API): named endpoints on trusted devices, each socket one
//! QUIC stream on the pair's shared connection.
//!
//! A socket opens with `Open{name, from, data_type, socket}`; the peer answers
//! `Accept{socket}` if a listener owns that name, else `Reject`. Each side thereby learns the
//! other's socket id, which datagrams name (see below). Then `Message` (≤ 4 KiB) and `Bytes`
//! (≤ 4 MiB) frames flow either way until `Shutdown` or the stream ends. A session name
//! belongs to the local client that first listens on it; another client cannot take it over.
//!
//! **Files** (SendFile) travel on the socket's stream as `FileBegin{name, size}`, `FileData`
//! chunks of at most [`MAX_FILE_CHUNK`] and `FileEnd{checksum}`; QUIC's flow control paces the
//! sender, and no chunk waits for a round trip. The receiving daemon never opens a path: it
//! hands the pieces to its owner, which pulls them ([`Sessions::recv_file`]) and so paces the
//! stream too (the soft bus service pulls them on behalf of a client and writes them through
//! the descriptor of the client's temp file), checks the checksum (XXH3-128) and answers with
//! [`Sessions::file_result`], which travels back as `FileAck{seq, error}`: the sender's
//! `End` returns only once the receiver has the whole file. Files are numbered per socket and
//! direction (`seq`, from 0) in the order of their `FileBegin`. Names from the peer are checked
//! with [`sanitize_file_name`]; a refused file is skipped and acknowledged with an error.
//!
//! **Streams** (SendStream) are unreliable QUIC datagrams (`session/datagrams.rs`); a
//! datagram counts only on the connection its socket lives on.
//!
//! The protocol's decisions (what a stream's first frame opens, what each frame on a socket
//! means, whether a file step is allowed, which ack completes which `End`) are the pure core in
//! `transport::socket::core`; the frames and their zero-copy codec are in
//! `transport::socket::frame`. This module is the adapter: it reads and writes the QUIC
//! streams, feeds the core one frame at a time and carries out what it returns.

use super::socket::core::{
    Acks, Answer, CLOSED_BEFORE_ACK, Dialing, FileSender, First, Opening, Receiver, Step,
};
use super::socket::frame::{
    BYTES_TAG, FILE_DATA_TAG, Frame, MAX_OPEN_FRAME, MESSAGE_TAG, RxBudget, read_socket_frame_in,
    rx_budget, write_blob_frame,
};
use super::wire::{read_frame, write_frame};
use super::{Bus, IncomingStream, NodeInfo};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, oneshot};

pub use super::socket::core::{MAX_SOCKETS_PER_PEER, OPEN_TIMEOUT};
pub use super::socket::frame::{MAX_PEER_RX_BYTES, MAX_RX_BYTES, fuzz_read_socket_frames};
pub use crate::proto::*;
pub use events::{EVENT_QUEUE, EventSink, EventTx, Gone, event_channel};

mod datagrams;
mod events;

/// Streams from one peer that have not yet said what they are (their first frame, `Open`
/// or `Dbinder`). A stream past it is dropped unread; one that says nothing for
/// [`OPEN_TIMEOUT`] is dropped too.
pub const MAX_PENDING_OPENS_PER_PEER: u64 = 16;

/// File pieces a receiving daemon holds for its client before it stops reading the stream.
const FILE_QUEUE: usize = 8;

/// Who owns a listener or socket: a local IPC connection id.
pub type Owner = u64;

struct Listener {
    owner: Owner,
    tx: EventTx,
}

/// The sending half of a socket, with the state of the file being sent on it.
struct SendHalf {
    stream: quinn::SendStream,
    file: FileSender,
}

impl SendHalf {
    /// The sending half of a new socket, for its writers to share.
    fn shared(stream: quinn::SendStream) -> Arc<tokio::sync::Mutex<Self>> {
        let file = FileSender::default();
        Arc::new(tokio::sync::Mutex::new(Self { stream, file }))
    }
}

struct Socket {
    owner: Owner,
    data_type: DataType,
    send: Arc<tokio::sync::Mutex<SendHalf>>,
    peer: NodeInfo,
    conn: quinn::Connection,
    peer_socket: u64,
    tx: EventTx,
}

impl Socket {
    /// Says `Shutdown{reason}` and ends our half of the stream.
    async fn close(&self, reason: &str) {
        let mut w = self.send.lock().await;
        let reason = reason.into();
        let _ = write_frame(&mut w.stream, &Frame::Shutdown { reason }).await;
        let _ = w.stream.finish();
    }
}

type FileRx = Arc<tokio::sync::Mutex<mpsc::Receiver<FilePiece>>>;
/// Wakes a sender's `End` with the receiver's verdict.
type AckTx = oneshot::Sender<Result<(), SessionError>>;

/// The socket table of one device.
pub struct Sessions {
    bus: Arc<Bus>,
    me: Weak<Sessions>,
    listeners: Mutex<HashMap<String, Listener>>,
    sockets: Mutex<HashMap<u64, Socket>>,
    /// Incoming file pieces per socket, for its owner to pull.
    incoming: Mutex<HashMap<u64, (Owner, FileRx)>>,
    /// Senders waiting for the receiver's verdict on a file, per socket.
    acks: Mutex<HashMap<u64, Acks<AckTx>>>,
    /// Connections (stable ids) with a datagram reader.
    dgram_readers: Mutex<HashSet<usize>>,
    next: AtomicU64,
    /// Serves streams of remote SA calls.
    dbinder: std::sync::OnceLock<Arc<crate::dbinder::Dbinder>>,
    /// Incoming bytes not yet delivered, per peer udid ([`MAX_PEER_RX_BYTES`]).
    rx_bytes: RxBudget,
    /// New streams that have not sent their first frame, per peer udid.
    pending_opens: Arc<oxh_ipc::budget::Ledger<String>>,
}

fn check_name(name: &str) -> Result<(), SessionError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(|c| c.is_control()) {
        return Err(SessionError::Invalid(format!(
            "session name must be 1..={MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

fn io(e: impl ToString) -> SessionError {
    SessionError::Io(e.to_string())
}

/// Opens a stream of remote SA calls on `conn` (the first frame says what the stream is).
pub(crate) async fn open_dbinder_stream(
    conn: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), SessionError> {
    let (mut send, recv) = conn.open_bi().await.map_err(io)?;
    write_frame(&mut send, &Frame::Dbinder).await.map_err(io)?;
    Ok((send, recv))
}

impl Sessions {
    /// The socket table, serving incoming streams from `streams`.
    pub fn start(bus: Arc<Bus>, mut streams: mpsc::Receiver<IncomingStream>) -> Arc<Self> {
        let me = Arc::new_cyclic(|me| Self {
            bus,
            me: me.clone(),
            listeners: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            incoming: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            dgram_readers: Mutex::new(HashSet::new()),
            next: AtomicU64::new(1),
            dbinder: std::sync::OnceLock::new(),
            rx_bytes: rx_budget(),
            pending_opens: oxh_ipc::budget::Ledger::new(oxh_ipc::budget::Limits {
                per_key: MAX_PENDING_OPENS_PER_PEER,
                total: u64::MAX,
                reserved: 0,
            }),
        });
        let m = me.clone();
        tokio::spawn(async move {
            while let Some(s) = streams.recv().await {
                let m = m.clone();
                tokio::spawn(async move { m.incoming(s).await });
            }
        });
        me
    }

    /// Hands incoming streams of remote SA calls to `d`.
    pub(crate) fn set_dbinder(&self, d: Arc<crate::dbinder::Dbinder>) {
        let _ = self.dbinder.set(d);
    }

    /// Listens on `name` for `owner`; events go to `tx`.
    pub fn listen(&self, name: &str, owner: Owner, tx: EventTx) -> Result<(), SessionError> {
        check_name(name)?;
        let mut l = self
            .listeners
            .lock()
            .map_err(|_| SessionError::Io("poisoned".into()))?;
        if let Some(existing) = l.get(name)
            && existing.owner != owner
            && !existing.tx.is_closed()
        {
            return Err(SessionError::NameTaken(name.into()));
        }
        l.insert(name.into(), Listener { owner, tx });
        Ok(())
    }

    /// Drops everything a client owned (its IPC connection is gone).
    pub fn forget_owner(&self, owner: Owner) {
        if let Ok(mut l) = self.listeners.lock() {
            l.retain(|_, v| v.owner != owner);
        }
        if let Ok(mut f) = self.incoming.lock() {
            f.retain(|_, (o, _)| *o != owner);
        }
        let gone: Vec<_> = self
            .sockets
            .lock()
            .map(|mut s| {
                let ids: Vec<u64> = s
                    .iter()
                    .filter(|(_, v)| v.owner == owner)
                    .map(|(k, _)| *k)
                    .collect();
                ids.into_iter().filter_map(|k| s.remove(&k)).collect()
            })
            .unwrap_or_default();
        for s in gone {
            tokio::spawn(async move { s.close("peer closed").await });
        }
    }

    /// Opens a socket to `name` on device `network_id` (Bind).
    pub async fn bind(
        self: &Arc<Self>,
        network_id: &str,
        name: &str,
        own_name: &str,
        data_type: DataType,
        owner: Owner,
        tx: EventTx,
    ) -> Result<u64, SessionError> {
        check_name(name)?;
        check_name(own_name)?;
        let (conn, peer) = self
            .bus
            .connection(network_id)
            .ok_or_else(|| SessionError::Offline(network_id.into()))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(io)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        write_frame(&mut send, &Dialing::open(name, own_name, data_type, id))
            .await
            .map_err(io)?;
        let answer = read_frame::<_, Frame>(&mut recv, MAX_OPEN_FRAME)
            .await
            .map_err(io)?;
        let peer_socket = Dialing::answer(answer)?;
        self.add_socket(
            id,
            Socket {
                owner,
                data_type,
                send: SendHalf::shared(send),
                peer,
                conn,
                peer_socket,
                tx,
            },
            recv,
        );
        Ok(id)
    }

    fn add_socket(self: &Arc<Self>, id: u64, s: Socket, recv: quinn::RecvStream) {
        let tx = s.tx.clone();
        let peer = s.peer.udid.clone();
        self.ensure_datagram_reader(&s.conn);
        if let Ok(mut m) = self.sockets.lock() {
            m.insert(id, s);
        }
        let me = self.clone();
        tokio::spawn(async move { me.read_socket(id, peer, recv, tx).await });
    }

    /// The queue of incoming file pieces of a socket, made on the first file.
    fn file_sink(&self, id: u64) -> Option<mpsc::Sender<FilePiece>> {
        let owner = self.sockets.lock().ok()?.get(&id)?.owner;
        let (tx, rx) = mpsc::channel(FILE_QUEUE);
        self.incoming
            .lock()
            .ok()?
            .insert(id, (owner, Arc::new(tokio::sync::Mutex::new(rx))));
        Some(tx)
    }

    /// Writes a frame on a socket's stream, if the socket still exists.
    async fn write_on(&self, id: u64, f: &Frame) {
        let send = self
            .sockets
            .lock()
            .ok()
            .and_then(|s| s.get(&id).map(|s| s.send.clone()));
        if let Some(send) = send {
            let _ = write_frame(&mut send.lock().await.stream, f).await;
        }
    }

    /// The reading loop of a socket: one frame at a time, each through the core; the frame's
    /// bytes stay granted until what it carries is delivered.
    async fn read_socket(
        self: Arc<Self>,
        id: u64,
        peer: String,
        mut recv: quinn::RecvStream,
        tx: EventTx,
    ) {
        let mut sink: Option<mpsc::Sender<FilePiece>> = None;
        let mut core = Receiver::new(id);
        let budget = self.rx_bytes.clone();
        let reason = loop {
            // The grant lives to the end of this iteration: until the frame is delivered
            // (to the app, or to the file queue of at most FILE_QUEUE pieces).
            let (frame, _grant) =
                match read_socket_frame_in(&mut recv, Some((&budget, &peer))).await {
                    Ok(Some((f, grant))) => (Some(f), grant),
                    Ok(None) => (None, None),
                    Err(e) => break e.to_string(),
                };
            match core.handle(frame) {
                Step::None => {}
                Step::Event(ev) => {
                    let _ = tx.send(ev).await;
                }
                Step::FileBegin(ev) => {
                    if sink.as_ref().is_none_or(|s| s.is_closed()) {
                        sink = self.file_sink(id);
                    }
                    if sink.is_none() {
                        core.client_gone();
                    }
                    let _ = tx.send(ev).await;
                }
                Step::Piece(piece) => {
                    let sent = match &sink {
                        Some(s) => s.send(piece).await.map_err(|e| e.0),
                        None => Err(piece),
                    };
                    if let Err(piece) = sent
                        && let Some(f) = core.undelivered(&piece)
                    {
                        self.write_on(id, &f).await;
                    }
                }
                Step::Write(f) => self.write_on(id, &f).await,
                Step::Acked { seq, error } => {
                    let done = self
                        .acks
                        .lock()
                        .ok()
                        .and_then(|mut a| a.get_mut(&id)?.on_ack(seq, error));
                    if let Some((waiter, result)) = done {
                        let _ = waiter.send(result);
                    }
                }
                Step::Close(reason) => break reason,
            }
        };
        // A file cut off: its receiver must discard what arrived.
        if let Some(piece) = core.cut_off(&reason)
            && let Some(s) = &sink
        {
            let _ = s.try_send(piece);
        }
        // Nothing left to pull: forget the queue now (otherwise the client drains it).
        if let Some(s) = sink
            && s.capacity() == s.max_capacity()
            && let Ok(mut inc) = self.incoming.lock()
        {
            inc.remove(&id);
        }
        let existed = self
            .sockets
            .lock()
            .map(|mut s| s.remove(&id).is_some())
            .unwrap_or(false);
        // Senders still waiting for a verdict on this socket hear that none will come.
        let waiting = self
            .acks
            .lock()
            .ok()
            .and_then(|mut a| a.remove(&id))
            .map(|mut w| w.close())
            .unwrap_or_default();
        for w in waiting {
            let _ = w.send(Err(SessionError::Io(CLOSED_BEFORE_ACK.into())));
        }
        if existed {
            let _ = tx.send(SocketEvent::Shutdown { socket: id, reason }).await;
        }
    }

    async fn incoming(self: Arc<Self>, s: IncomingStream) {
        let IncomingStream {
            from,
            mut send,
            mut recv,
        } = s;
        let Ok(pending) = self.pending_opens.try_acquire(from.udid.clone(), false, 1) else {
            tracing::warn!(
                tag = "softbus",
                public_name = from.name.as_str(),
                "dropping a stream: {MAX_PENDING_OPENS_PER_PEER} streams of this peer have not said what they are"
            );
            return;
        };
        let now = || tokio::time::Instant::now().into_std();
        let opening = Opening::new(now());
        let first = {
            let read = read_frame::<_, Frame>(&mut recv, MAX_OPEN_FRAME);
            tokio::pin!(read);
            loop {
                let deadline = tokio::time::Instant::from_std(opening.deadline());
                match tokio::time::timeout_at(deadline, &mut read).await {
                    Ok(first) => break first.ok().flatten(),
                    Err(_) if opening.on_timeout(now()) => return,
                    Err(_) => {}
                }
            }
        };
        drop(pending);
        let req = match opening.handle(first) {
            First::Open(req) => req,
            First::Dbinder => {
                if let Some(d) = self.dbinder.get() {
                    d.clone().serve(from, send, recv).await;
                }
                return;
            }
            First::Drop => return,
        };
        let listener = self
            .listeners
            .lock()
            .ok()
            .and_then(|l| l.get(&req.name).map(|l| (l.owner, l.tx.clone())))
            .filter(|(_, tx)| !tx.is_closed());
        let conn = self.bus.connection(&from.network_id).map(|c| c.0);
        let open = self
            .sockets
            .lock()
            .map(|s| s.values().filter(|v| v.peer.udid == from.udid).count())
            .unwrap_or(0);
        let next = || self.next.fetch_add(1, Ordering::Relaxed);
        let (((owner, tx), conn), id, accept) = match req.answer(listener.zip(conn), open, next) {
            Answer::Accept {
                listener,
                id,
                frame,
            } => (listener, id, frame),
            Answer::Reject(reject) => {
                let _ = write_frame(&mut send, &reject).await;
                let _ = send.finish();
                return;
            }
        };
        if write_frame(&mut send, &accept).await.is_err() {
            return;
        }
        let (data_type, peer_socket) = (req.data_type, req.peer_socket);
        let bind = req.bind_event(id, from.network_id.clone(), from.name.clone());
        let _ = tx.send(bind).await;
        self.add_socket(
            id,
            Socket {
                owner,
                data_type,
                send: SendHalf::shared(send),
                peer: from,
                conn,
                peer_socket,
                tx,
            },
            recv,
        );
    }

    /// What `f` takes from a socket the caller owns.
    fn owned<T>(
        &self,
        socket: u64,
        owner: Owner,
        f: impl FnOnce(&Socket) -> T,
    ) -> Result<T, SessionError> {
        let s = self
            .sockets
            .lock()
            .map_err(|_| SessionError::Io("poisoned".into()))?;
        s.get(&socket)
            .filter(|e| e.owner == owner)
            .map(f)
            .ok_or(SessionError::NoSocket(socket))
    }

    fn send_half(
        &self,
        socket: u64,
        owner: Owner,
    ) -> Result<Arc<tokio::sync::Mutex<SendHalf>>, SessionError> {
        self.owned(socket, owner, |s| s.send.clone())
    }

    /// Sends a message (≤ 4 KiB) or bytes (≤ 4 MiB) on a socket the caller owns.
    pub async fn send(
        &self,
        socket: u64,
        owner: Owner,
        kind: DataType,
        data: Vec<u8>,
    ) -> Result<(), SessionError> {
        self.send_parts(socket, owner, kind, vec![Bytes::from(data)])
            .await
    }

    /// [`Sessions::send`] of the concatenation of `parts`, as they arrived over IPC: they go
    /// to QUIC as they are, without being copied into one buffer first.
    pub async fn send_parts(
        &self,
        socket: u64,
        owner: Owner,
        kind: DataType,
        parts: Vec<Bytes>,
    ) -> Result<(), SessionError> {
        let send = self.send_half(socket, owner)?;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let tag = match kind {
            DataType::Message if len > MAX_MESSAGE => {
                return Err(SessionError::Invalid(format!(
                    "message of {len} bytes exceeds the {MAX_MESSAGE}-byte (4 KiB) limit"
                )));
            }
            DataType::Bytes if len > MAX_BYTES => {
                return Err(SessionError::Invalid(format!(
                    "bytes of {len} exceed the {MAX_BYTES}-byte (4 MiB) limit"
                )));
            }
            DataType::Message => MESSAGE_TAG,
            DataType::Bytes => BYTES_TAG,
            DataType::File => {
                return Err(SessionError::Invalid("use send_file for files".into()));
            }
        };
        let mut w = send.lock().await;
        write_blob_frame(&mut w.stream, tag, parts)
            .await
            .map_err(io)
    }

    /// One step of sending a file on a socket the caller owns (SendFile). `End` returns once
    /// the receiver has checked and saved the file, or with its reason for not doing so.
    pub async fn send_file(
        &self,
        socket: u64,
        owner: Owner,
        op: FileOp,
    ) -> Result<(), SessionError> {
        let send = self.send_half(socket, owner)?;
        let mut w = send.lock().await;
        match op {
            FileOp::Begin { name, size } => {
                let begin = w.file.begin(name, size)?;
                if let Err(e) = write_frame(&mut w.stream, &begin).await {
                    w.file.abandon();
                    return Err(io(e));
                }
                Ok(())
            }
            FileOp::Data { offset, data } => {
                if !w.file.data(offset, data.len())? {
                    return Ok(());
                }
                write_blob_frame(&mut w.stream, FILE_DATA_TAG, vec![Bytes::from(data)])
                    .await
                    .map_err(io)
            }
            FileOp::End { checksum } => {
                let (seq, end) = w.file.end(checksum)?;
                let (ack_tx, ack_rx) = oneshot::channel();
                if let Ok(mut a) = self.acks.lock() {
                    a.entry(socket).or_default().expect(seq, ack_tx);
                }
                let r = write_frame(&mut w.stream, &end).await;
                drop(w);
                // The reading loop drops waiters when the socket ends; if it already has,
                // nobody will answer.
                let alive = self
                    .sockets
                    .lock()
                    .map(|s| s.contains_key(&socket))
                    .unwrap_or(false);
                if r.is_err() || !alive {
                    if let Ok(mut a) = self.acks.lock()
                        && let Some(w) = a.get_mut(&socket)
                    {
                        w.cancel(seq);
                        if w.is_empty() {
                            a.remove(&socket);
                        }
                    }
                    return Err(SessionError::Io(
                        "the socket closed before the file was confirmed".into(),
                    ));
                }
                ack_rx
                    .await
                    .unwrap_or_else(|_| Err(SessionError::Io(CLOSED_BEFORE_ACK.into())))
            }
            FileOp::Abort { reason } => {
                if let Some(abort) = w.file.abort(reason) {
                    write_frame(&mut w.stream, &abort).await.map_err(io)?;
                }
                Ok(())
            }
        }
    }

    /// The next piece of the file arriving on a socket the caller owns; waits for it.
    pub async fn recv_file(&self, socket: u64, owner: Owner) -> Result<FilePiece, SessionError> {
        let rx = self
            .incoming
            .lock()
            .map_err(|_| SessionError::Io("poisoned".into()))?
            .get(&socket)
            .filter(|(o, _)| *o == owner)
            .map(|(_, rx)| rx.clone())
            .ok_or(SessionError::NoSocket(socket))?;
        let piece = rx.lock().await.recv().await;
        match piece {
            Some(p) => Ok(p),
            None => {
                if let Ok(mut inc) = self.incoming.lock()
                    && inc.get(&socket).is_some_and(|(_, r)| Arc::ptr_eq(r, &rx))
                {
                    inc.remove(&socket);
                }
                Ok(FilePiece::Broken {
                    reason: "the socket closed during the transfer".into(),
                })
            }
        }
    }

    /// The receiving client's verdict on file `seq` (None: saved), sent back to the sender.
    pub async fn file_result(
        &self,
        socket: u64,
        owner: Owner,
        seq: u64,
        error: Option<String>,
    ) -> Result<(), SessionError> {
        let send = self.send_half(socket, owner)?;
        let mut w = send.lock().await;
        write_frame(&mut w.stream, &Frame::FileAck { seq, error })
            .await
            .map_err(io)
    }

    /// Closes a socket the caller owns (Shutdown).
    pub async fn shutdown(&self, socket: u64, owner: Owner) -> Result<(), SessionError> {
        let s = self
            .sockets
            .lock()
            .map_err(|_| SessionError::Io("poisoned".into()))?
            .remove(&socket);
        let s = s
            .filter(|s| s.owner == owner)
            .ok_or(SessionError::NoSocket(socket))?;
        if let Ok(mut inc) = self.incoming.lock() {
            inc.remove(&socket);
        }
        s.close("closed by peer").await;
        Ok(())
    }

    /// Sockets and listeners, for dumps.
    pub fn dump(&self) -> String {
        let l: Vec<String> = self
            .listeners
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default();
        let s: Vec<String> = self
            .sockets
            .lock()
            .map(|s| {
                s.iter()
                    .map(|(k, v)| format!("{k}->{}({:?})", v.peer.name, v.data_type))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "  listeners: {}\n  sockets: {}\n",
            l.join(", "),
            s.join(", ")
        )
    }
}
#[cfg(test)]
mod tests {
    use super::super::tests_support::pair;
    use super::*;
    use std::time::Duration;

    /// The client that binds (on device a) and the one that listens (on device b).
    const A: Owner = 1;
    const B: Owner = 7;

    async fn ev(rx: &mut mpsc::Receiver<SocketEvent>) -> SocketEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event in 5 s")
            .expect("open")
    }

    /// A socket from a to b's listener `name`: both socket tables, both ids, both event queues.
    struct Pair {
        a: Arc<Bus>,
        b: Arc<Bus>,
        sa: Arc<Sessions>,
        sb: Arc<Sessions>,
        /// a's socket id, and b's.
        s: u64,
        peer: u64,
        /// b's listener events, a's socket events.
        lrx: mpsc::Receiver<SocketEvent>,
        brx: mpsc::Receiver<SocketEvent>,
    }

    impl Pair {
        /// What a file transfer from a to b uses: both tables, both ids, b's listener events.
        fn file_ends(
            &mut self,
        ) -> (
            &Sessions,
            &Sessions,
            u64,
            u64,
            &mut mpsc::Receiver<SocketEvent>,
        ) {
            (&self.sa, &self.sb, self.s, self.peer, &mut self.lrx)
        }
    }

    async fn socket(name: &str, data_type: DataType) -> Pair {
        let (a, b, sa, sb) = pair().await;
        let (ltx, mut lrx) = event_channel();
        sb.listen(name, B, ltx).unwrap();
        let (btx, brx) = event_channel();
        let s = sa
            .bind(&b.local_info().network_id, name, "me", data_type, A, btx)
            .await
            .unwrap();
        let SocketEvent::Bind {
            socket: peer,
            peer_network_id,
            ..
        } = ev(&mut lrx).await
        else {
            panic!()
        };
        assert_eq!(peer_network_id, a.local_info().network_id);
        Pair {
            a,
            b,
            sa,
            sb,
            s,
            peer,
            lrx,
            brx,
        }
    }

    /// Sends `data` as `kind` on `socket` (with its owner) and checks that it arrives as one
    /// event on `rx`, for the peer's socket `at`.
    async fn cross(
        from: &Sessions,
        (socket, owner): (u64, Owner),
        kind: DataType,
        data: &[u8],
        rx: &mut mpsc::Receiver<SocketEvent>,
        at: u64,
    ) {
        from.send(socket, owner, kind, data.to_vec()).await.unwrap();
        let data = data.to_vec();
        let want = match kind {
            DataType::Message => SocketEvent::Message { socket: at, data },
            _ => SocketEvent::Bytes { socket: at, data },
        };
        assert_eq!(ev(rx).await, want);
    }

    #[tokio::test]
    async fn message_and_bytes_both_ways_with_limits() {
        let Pair {
            a: _a,
            b,
            sa,
            sb,
            s,
            peer: peer_sock,
            mut lrx,
            mut brx,
        } = socket("chat", DataType::Bytes).await;
        // Another client cannot take the name.
        let (otx, _orx) = event_channel();
        assert_eq!(
            sb.listen("chat", 8, otx),
            Err(SessionError::NameTaken("chat".into()))
        );
        cross(&sa, (s, A), DataType::Message, b"hi", &mut lrx, peer_sock).await;
        let big = vec![9u8; MAX_BYTES];
        cross(&sa, (s, A), DataType::Bytes, &big, &mut lrx, peer_sock).await;
        for (kind, len) in [
            (DataType::Bytes, MAX_BYTES + 1),
            (DataType::Message, MAX_MESSAGE + 1),
        ] {
            let r = sa.send(s, A, kind, vec![0; len]).await;
            assert!(matches!(r, Err(SessionError::Invalid(_))), "{r:?}");
        }
        // Only the owner may use a socket.
        assert_eq!(
            sa.send(s, 2, DataType::Message, b"x".to_vec()).await,
            Err(SessionError::NoSocket(s))
        );
        // The listener answers on the same socket.
        cross(&sb, (peer_sock, B), DataType::Message, b"yo", &mut brx, s).await;
        sa.shutdown(s, A).await.unwrap();
        assert!(
            matches!(ev(&mut lrx).await, SocketEvent::Shutdown { socket, .. } if socket == peer_sock)
        );
        // No listener: refused with a reason.
        let (ntx, _nrx) = event_channel();
        let e = sa
            .bind(
                &b.local_info().network_id,
                "nobody-here",
                "me",
                DataType::Message,
                A,
                ntx,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, SessionError::Refused(ref r) if r.contains("nobody-here")),
            "{e}"
        );
    }

    async fn pull(s: &Sessions, sock: u64, owner: Owner) -> FilePiece {
        tokio::time::timeout(Duration::from_secs(10), s.recv_file(sock, owner))
            .await
            .expect("piece in 10 s")
            .expect("pull")
    }

    /// Receives one whole file on `sock`, checking the sender's checksum like the SDK does.
    async fn receive_all(s: &Sessions, sock: u64, owner: Owner) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        loop {
            match pull(s, sock, owner).await {
                FilePiece::Data(d) => got.extend_from_slice(&d),
                FilePiece::End { checksum, seq } => {
                    let ok = FileHasher::of(&got) == checksum;
                    s.file_result(sock, owner, seq, (!ok).then(|| "checksum".into()))
                        .await
                        .unwrap();
                    return (got, ok);
                }
                FilePiece::Broken { reason } => panic!("broken: {reason}"),
            }
        }
    }

    /// `FileOp::Begin` on a's socket.
    async fn begin(s: &Sessions, sock: u64, name: &str, size: u64) -> Result<(), SessionError> {
        let name = name.into();
        s.send_file(sock, A, FileOp::Begin { name, size }).await
    }

    /// `FileOp::Data` on a's socket.
    async fn chunk(s: &Sessions, sock: u64, offset: u64, data: &[u8]) -> Result<(), SessionError> {
        let data = data.to_vec();
        s.send_file(sock, A, FileOp::Data { offset, data }).await
    }

    async fn send_whole(
        s: &Sessions,
        sock: u64,
        name: &str,
        data: &[u8],
    ) -> Result<(), SessionError> {
        begin(s, sock, name, data.len() as u64).await?;
        for (i, c) in data.chunks(MAX_FILE_CHUNK).enumerate() {
            chunk(s, sock, (i * MAX_FILE_CHUNK) as u64, c).await?;
        }
        let checksum = FileHasher::of(data);
        s.send_file(sock, A, FileOp::End { checksum }).await
    }

    #[test]
    fn file_names_from_peers_are_checked() {
        assert_eq!(sanitize_file_name("a.txt").unwrap(), "a.txt");
        assert_eq!(sanitize_file_name("dir/sub/a.txt").unwrap(), "a.txt");
        assert_eq!(sanitize_file_name("..a").unwrap(), "..a");
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../x",
            "/etc/passwd",
            "dir/",
            "a\nb",
            "x/..",
        ] {
            assert!(sanitize_file_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(sanitize_file_name(&"n".repeat(MAX_FILE_NAME + 1)).is_err());
    }

    #[tokio::test]
    async fn files_cross_with_checksums_acks_and_refusals() {
        let mut p = socket("files", DataType::File).await;
        let (sa, sb, s, peer, lrx) = p.file_ends();
        // Sizes around the chunk size, and an empty file.
        for (i, len) in [
            0usize,
            1,
            MAX_FILE_CHUNK,
            MAX_FILE_CHUNK + 1,
            3 * MAX_FILE_CHUNK + 7,
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let name = format!("dir/f{i}");
            let send = send_whole(sa, s, &name, &data);
            let recv = async {
                let e = ev(lrx).await;
                assert_eq!(
                    e,
                    SocketEvent::FileBegin {
                        socket: peer,
                        name: format!("f{i}"),
                        size: len as u64
                    }
                );
                receive_all(sb, peer, B).await
            };
            let (sent, (got, ok)) = tokio::join!(send, recv);
            sent.unwrap();
            assert!(ok);
            assert_eq!(got, data);
        }
        // A hostile name is refused and the sender hears why; the socket still works.
        let e = send_whole(sa, s, "../x", b"evil").await.unwrap_err();
        assert!(
            matches!(e, SessionError::FileRejected(ref r) if r.contains("..")),
            "{e}"
        );
        assert!(matches!(ev(lrx).await, SocketEvent::FileRefused { .. }));
        // A wrong checksum is rejected by the receiving client.
        let send = async {
            begin(sa, s, "c", 2).await.unwrap();
            chunk(sa, s, 0, b"ab").await.unwrap();
            sa.send_file(s, A, FileOp::End { checksum: [0; 16] }).await
        };
        let recv = async {
            assert!(matches!(ev(lrx).await, SocketEvent::FileBegin { .. }));
            receive_all(sb, peer, B).await
        };
        let (sent, (_, ok)) = tokio::join!(send, recv);
        assert!(!ok);
        assert_eq!(sent, Err(SessionError::FileRejected("checksum".into())));
        // The sender cannot send more than it announced, nor end early.
        begin(sa, s, "d", 1).await.unwrap();
        assert!(matches!(
            chunk(sa, s, 0, &[0; 2]).await,
            Err(SessionError::Invalid(_))
        ));
        // Chunks must follow on from each other.
        assert!(matches!(
            chunk(sa, s, 1, &[0; 1]).await,
            Err(SessionError::Invalid(ref m)) if m.contains("offset")
        ));
        assert!(matches!(
            sa.send_file(s, A, FileOp::End { checksum: [0; 16] }).await,
            Err(SessionError::Invalid(_))
        ));
        // Aborting: the receiver hears that the transfer broke.
        let abort = FileOp::Abort {
            reason: "gone".into(),
        };
        sa.send_file(s, A, abort).await.unwrap();
        assert!(matches!(ev(lrx).await, SocketEvent::FileBegin { .. }));
        assert!(matches!(pull(sb, peer, B).await, FilePiece::Broken { .. }));
        // The socket closing mid-file breaks the transfer too.
        begin(sa, s, "e", 10).await.unwrap();
        chunk(sa, s, 0, &[1; 4]).await.unwrap();
        sa.shutdown(s, A).await.unwrap();
        assert!(matches!(ev(lrx).await, SocketEvent::FileBegin { .. }));
        assert_eq!(pull(sb, peer, B).await, FilePiece::Data(vec![1; 4]));
        assert!(matches!(pull(sb, peer, B).await, FilePiece::Broken { .. }));
        assert!(matches!(ev(lrx).await, SocketEvent::Shutdown { .. }));
    }

    #[tokio::test]
    async fn stream_frames_are_datagrams_with_a_size_limit() {
        let Pair {
            sa,
            sb,
            s,
            peer,
            mut lrx,
            mut brx,
            ..
        } = socket("media", DataType::Bytes).await;
        let max = sa.max_stream(s, A).unwrap();
        assert!(max >= 1000, "{max}");
        sa.send_stream(s, A, &[5u8; 1000]).unwrap();
        assert_eq!(
            ev(&mut lrx).await,
            SocketEvent::Stream {
                socket: peer,
                data: vec![5u8; 1000]
            }
        );
        sb.send_stream(peer, B, b"back").unwrap();
        assert_eq!(
            ev(&mut brx).await,
            SocketEvent::Stream {
                socket: s,
                data: b"back".to_vec()
            }
        );
        assert!(matches!(
            sa.send_stream(s, A, &vec![0u8; 64 * 1024]),
            Err(SessionError::Invalid(ref m)) if m.contains("datagram")
        ));
        assert_eq!(sa.send_stream(s, 2, b"x"), Err(SessionError::NoSocket(s)));
    }

    /// The session layer alone (no IPC), for throughput work:
    /// `cargo test -p oxh-softbus --release --lib session_file_throughput -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "throughput measurement"]
    async fn session_file_throughput() {
        let mut p = socket("files", DataType::File).await;
        let (sa, sb, s, peer, lrx) = p.file_ends();
        let total: u64 = 1 << 30;
        let part = vec![0x5au8; crate::api::FILE_PART];
        let t = std::time::Instant::now();
        let send = async {
            begin(sa, s, "x", total).await.unwrap();
            let mut left = total;
            while left > 0 {
                let n = left.min(part.len() as u64) as usize;
                chunk(sa, s, total - left, &part[..n]).await.unwrap();
                left -= n as u64;
            }
            sa.send_file(s, A, FileOp::End { checksum: [0; 16] }).await
        };
        let recv = async {
            assert!(matches!(ev(lrx).await, SocketEvent::FileBegin { .. }));
            let mut got = 0u64;
            loop {
                match pull(sb, peer, B).await {
                    FilePiece::Data(d) => got += d.len() as u64,
                    FilePiece::End { seq, .. } => {
                        sb.file_result(peer, B, seq, None).await.unwrap();
                        return got;
                    }
                    FilePiece::Broken { reason } => panic!("{reason}"),
                }
            }
        };
        let (r, got) = tokio::join!(send, recv);
        r.unwrap();
        assert_eq!(got, total);
        let el = t.elapsed();
        eprintln!(
            "1 GiB through the session layer in {el:?}: {:.0} MB/s",
            total as f64 / 1e6 / el.as_secs_f64()
        );
    }
}
