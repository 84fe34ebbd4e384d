//! The async adapter around [`crate::frame`]: one session over any byte stream (TLS to a
//! device, plain TCP from a client to the host server), many channels over it.
//!
//! - Flow control per channel: a sender may have at most [`WINDOW`] bytes of Data that the
//!   receiver's consumer has not taken yet (credits come back as Credit packets), so one slow
//!   channel never stalls the others and no queue grows without bound.
//! - Heartbeat: a Ping every [`PING_EVERY`]; a session that hears nothing for [`DEAD_AFTER`]
//!   is dead. A dead session (EOF, error, silence) ends every channel with a Close carrying the
//!   reason, so no command hangs on a device that went away.

use crate::frame::{self, CHUNK, HEADER_LEN, Kind, Packet};
use crate::proto::{self, Ctrl, Exit, Hello};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, watch};

/// Bytes of Data in flight per channel and direction.
pub const WINDOW: usize = 16 * CHUNK;
/// Read buffer under a TLS stream. rustls asks its transport for at most 4 KiB at a time;
/// straight from the socket that is a system call (and often a wake-up) per 4 KiB, about
/// 260,000 per GiB. Served from this buffer instead, the socket is read in large gulps.
pub const TLS_READ_BUFFER: usize = 256 * 1024;

/// A TCP stream with [`TLS_READ_BUFFER`] of read buffer, for a TLS session on top.
pub fn buffered(tcp: tokio::net::TcpStream) -> tokio::io::BufReader<tokio::net::TcpStream> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp)
}

/// Heartbeat period.
pub const PING_EVERY: Duration = Duration::from_secs(2);
/// Silence after which a session is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(8);
/// Channels one session may have open at once: an `hdc fport` carries one per forwarded
/// connection (hundreds in parallel are normal), while each may hold up to [`WINDOW`] of
/// received data, so the count is bounded with [`MAX_SESSION_BUFFERED`]. An Open past it is
/// answered with a Close saying so.
pub const MAX_CHANNELS: usize = 1024;
/// Received bytes (Data and control messages) one session may hold for consumers that have
/// not taken them yet, over all its channels. Each channel's own window bounds an honest
/// peer; this bounds a peer that opens many channels and fills them all. Past it the session
/// is cut with a message saying why.
pub const MAX_SESSION_BUFFERED: usize = 256 << 20;
/// Channel ids opened by the accepting side of a connection have this bit set, so both sides
/// may open channels without colliding.
pub const ACCEPTOR_BIT: u32 = 0x8000_0000;

/// Errors of a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session or the channel is closed.
    #[error("{0}")]
    Closed(String),
    /// Socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Bad bytes from the peer.
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    /// A payload did not decode.
    #[error("malformed message: {0}")]
    Decode(#[from] postcard::Error),
    /// The peer refused the session.
    #[error("{0}")]
    Refused(String),
}

/// What a channel's receiver gets.
#[derive(Debug)]
pub enum Event {
    /// Stream bytes.
    Data(Bytes),
    /// A control message.
    Ctrl(Ctrl),
    /// The channel ended (also when the session died: the exit then says why).
    Close(Exit),
}

enum Out {
    Small(Vec<u8>),
    Big([u8; HEADER_LEN], Bytes),
}

struct Entry {
    /// Events with the bytes each holds against the budgets (data and control payloads).
    tx: mpsc::UnboundedSender<(Event, usize)>,
    credit: Arc<Semaphore>,
    /// Data bytes queued for the consumer: a peer that sends past its credit is cut off.
    queued: usize,
}

struct Inner {
    out: mpsc::UnboundedSender<Out>,
    chans: Mutex<HashMap<u32, Entry>>,
    next: AtomicU32,
    base: u32,
    dead: watch::Sender<Option<String>>,
    rx_bytes: AtomicU64,
    /// Bytes received and not yet taken by consumers, over every channel
    /// ([`MAX_SESSION_BUFFERED`]).
    queued_total: AtomicUsize,
}

impl Inner {
    fn send_small(&self, kind: Kind, ch: u32, payload: &[u8]) -> bool {
        self.out
            .send(Out::Small(frame::encode(kind, ch, payload)))
            .is_ok()
    }
    fn kill(&self, reason: &str) {
        let already = self.dead.borrow().is_some();
        if already {
            return;
        }
        self.dead.send_replace(Some(reason.to_string()));
        let chans: Vec<Entry> = match self.chans.lock() {
            Ok(mut m) => m.drain().map(|(_, e)| e).collect(),
            Err(_) => Vec::new(),
        };
        for e in chans {
            self.unqueue(e.queued);
            e.credit.close();
            let _ = e.tx.send((Event::Close(Exit::fail(reason)), 0));
        }
    }
    fn register(&self, id: u32) -> (mpsc::UnboundedReceiver<(Event, usize)>, Arc<Semaphore>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(WINDOW));
        if let Ok(mut m) = self.chans.lock() {
            m.insert(
                id,
                Entry {
                    tx,
                    credit: credit.clone(),
                    queued: 0,
                },
            );
        }
        if self.dead.borrow().is_some() {
            credit.close();
        }
        (rx, credit)
    }
    fn forget(&self, id: u32) -> bool {
        let gone = self.chans.lock().ok().and_then(|mut m| m.remove(&id));
        match gone {
            Some(e) => {
                self.unqueue(e.queued);
                e.credit.close();
                true
            }
            None => false,
        }
    }
    /// Counts `n` more received bytes against the session's budget; false when it is over.
    fn enqueue(&self, n: usize) -> bool {
        self.queued_total.fetch_add(n, Ordering::Relaxed) + n <= MAX_SESSION_BUFFERED
    }
    /// `n` received bytes were taken (or dropped with their channel).
    fn unqueue(&self, n: usize) {
        let _ = self
            .queued_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            });
    }
    /// A consumer took `n` bytes of channel `id`. A channel already gone had what it held
    /// taken off the session's count when it went.
    fn taken(&self, id: u32, n: usize) {
        if let Ok(mut m) = self.chans.lock()
            && let Some(e) = m.get_mut(&id)
        {
            e.queued = e.queued.saturating_sub(n);
            self.unqueue(n);
        }
    }
    /// Bytes held for consumers now.
    fn queued(&self) -> usize {
        self.queued_total.load(Ordering::Relaxed)
    }
    fn dead_reason(&self) -> String {
        self.dead
            .borrow()
            .clone()
            .unwrap_or_else(|| "channel closed".into())
    }
}

/// A channel opened by the peer, with its request.
pub struct Incoming {
    /// The channel.
    pub channel: Channel,
    /// The Open payload (postcard; the acceptor decides what type it is).
    pub request: Bytes,
}

/// One session; cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// Writes one packet directly (used for the hello, before the session tasks run).
async fn write_packet<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: Kind,
    ch: u32,
    p: &[u8],
) -> std::io::Result<()> {
    w.write_all(&frame::encode(kind, ch, p)).await?;
    w.flush().await
}

/// Reads one packet directly (the hello).
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<Packet, SessionError> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).await?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let mut buf = BytesMut::from(&h[..]);
    if len > 64 * 1024 {
        return Err(frame::FrameError::TooLong(len as u32).into());
    }
    buf.resize(HEADER_LEN + len, 0);
    r.read_exact(&mut buf[HEADER_LEN..]).await?;
    frame::decode(&mut buf)?.ok_or_else(|| SessionError::Closed("short hello".into()))
}

/// Exchanges hellos: sends ours, reads the peer's. A refusal from the peer is an error with
/// its reason; ours (non-empty `refused`) is sent and then the caller drops the stream.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    mine: &Hello,
) -> Result<Hello, SessionError> {
    write_packet(s, Kind::Hello, 0, &proto::to_bytes(mine)).await?;
    let p = tokio::time::timeout(DEAD_AFTER, read_packet(s))
        .await
        .map_err(|_| {
            SessionError::Closed("[Fail]no answer from the peer (hello timed out)".into())
        })??;
    if p.kind != Kind::Hello {
        return Err(SessionError::Closed("[Fail]peer did not greet".into()));
    }
    let h: Hello = proto::from_bytes(&p.payload)?;
    if !h.refused.is_empty() {
        return Err(SessionError::Refused(h.refused));
    }
    if h.version != proto::VERSION {
        return Err(SessionError::Refused(format!(
            "[Fail]protocol version {} is not {}",
            h.version,
            proto::VERSION
        )));
    }
    Ok(h)
}

/// The accepting side's hello: reads the peer's, answers with `decide(peer)` (a non-empty
/// `refused` refuses), and returns the peer's, or the refusal as an error.
pub async fn accept_hello<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    decide: impl FnOnce(&Hello) -> Hello,
) -> Result<Hello, SessionError> {
    let p = tokio::time::timeout(DEAD_AFTER, read_packet(s))
        .await
        .map_err(|_| SessionError::Closed("hello timed out".into()))??;
    if p.kind != Kind::Hello {
        return Err(SessionError::Closed("peer did not greet".into()));
    }
    let peer: Hello = proto::from_bytes(&p.payload)?;
    let mut mine = decide(&peer);
    if peer.version != proto::VERSION && mine.refused.is_empty() {
        mine.refused = format!(
            "[Fail]protocol version {} is not {}",
            peer.version,
            proto::VERSION
        );
    }
    write_packet(s, Kind::Hello, 0, &proto::to_bytes(&mine)).await?;
    if !mine.refused.is_empty() {
        // Let the refusal reach the peer before the caller drops the stream.
        let _ = s.shutdown().await;
        return Err(SessionError::Refused(mine.refused));
    }
    Ok(peer)
}

impl Session {
    /// Runs a session over `stream` (after [`hello`]). `acceptor`: this side accepted the
    /// connection (its channel ids get [`ACCEPTOR_BIT`]). `label` names the peer in the
    /// message every channel gets when the session dies. Returns the session and the
    /// channels the peer opens.
    pub fn start<S>(
        stream: S,
        acceptor: bool,
        label: String,
    ) -> (Session, mpsc::UnboundedReceiver<Incoming>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (dead, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            out: out_tx,
            chans: Mutex::new(HashMap::new()),
            next: AtomicU32::new(1),
            base: if acceptor { ACCEPTOR_BIT } else { 0 },
            dead,
            rx_bytes: AtomicU64::new(0),
            queued_total: AtomicUsize::new(0),
        });
        let (inc_tx, inc_rx) = mpsc::unbounded_channel();
        let (r, w) = tokio::io::split(stream);
        tokio::spawn(writer(w, out_rx, inner.clone()));
        let i = inner.clone();
        tokio::spawn(async move {
            let reason = match reader(r, &i, inc_tx).await {
                Ok(()) => format!("[Fail]{label} closed the connection"),
                Err(e) => format!("[Fail]{label}: connection lost ({e})"),
            };
            i.kill(&reason);
        });
        let i = inner.clone();
        tokio::spawn(async move {
            let mut dead = i.dead.subscribe();
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(PING_EVERY) => {}
                    _ = dead.wait_for(|d| d.is_some()) => return,
                }
                n += 1;
                if !i.send_small(Kind::Ping, 0, &n.to_le_bytes()) {
                    return;
                }
            }
        });
        (Session { inner }, inc_rx)
    }

    /// Opens a channel with a request (postcard bytes).
    pub fn open(&self, request: &[u8]) -> Result<Channel, SessionError> {
        if let Some(r) = self.inner.dead.borrow().clone() {
            return Err(SessionError::Closed(r));
        }
        let mut id = 0;
        while id & !ACCEPTOR_BIT == 0 {
            id =
                (self.inner.next.fetch_add(1, Ordering::Relaxed) & !ACCEPTOR_BIT) | self.inner.base;
        }
        let (rx, credit) = self.inner.register(id);
        self.inner.send_small(Kind::Open, id, request);
        Ok(Channel::new(id, self.inner.clone(), rx, credit))
    }

    /// Why the session died, once it has.
    pub fn dead(&self) -> Option<String> {
        self.inner.dead.borrow().clone()
    }

    /// Waits until the session is dead.
    pub async fn closed(&self) {
        let mut d = self.inner.dead.subscribe();
        let _ = d.wait_for(|d| d.is_some()).await;
    }

    /// Ends the session and every channel on it.
    pub fn shutdown(&self, reason: &str) {
        self.inner.kill(reason);
    }

    /// Bytes received so far (payloads), for statistics.
    pub fn rx_bytes(&self) -> u64 {
        self.inner.rx_bytes.load(Ordering::Relaxed)
    }
}

async fn writer<W: AsyncWrite>(w: W, mut rx: mpsc::UnboundedReceiver<Out>, inner: Arc<Inner>) {
    let mut w = std::pin::pin!(w);
    let mut dead = inner.dead.subscribe();
    let mut staging: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            o = rx.recv() => o,
            _ = dead.wait_for(|d| d.is_some()) => None,
        };
        let Some(mut o) = first else { break };
        let r: std::io::Result<()> = async {
            loop {
                match o {
                    Out::Small(v) => staging.extend_from_slice(&v),
                    Out::Big(h, p) => {
                        staging.extend_from_slice(&h);
                        w.write_all(&staging).await?;
                        staging.clear();
                        w.write_all(&p).await?;
                    }
                }
                if staging.len() > 64 * 1024 {
                    w.write_all(&staging).await?;
                    staging.clear();
                }
                match rx.try_recv() {
                    Ok(n) => o = n,
                    Err(_) => break,
                }
            }
            if !staging.is_empty() {
                w.write_all(&staging).await?;
                staging.clear();
            }
            w.flush().await
        }
        .await;
        if let Err(e) = r {
            inner.kill(&format!("[Fail]connection lost ({e})"));
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn reader<R: AsyncRead>(
    r: R,
    inner: &Arc<Inner>,
    incoming: mpsc::UnboundedSender<Incoming>,
) -> Result<(), SessionError> {
    let mut r = std::pin::pin!(r);
    let mut buf = BytesMut::with_capacity(2 * frame::MAX_PAYLOAD);
    let mut dead = inner.dead.subscribe();
    loop {
        while let Some(p) = frame::decode(&mut buf)? {
            dispatch(inner, p, &incoming)?;
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(frame::MAX_PAYLOAD);
        }
        let n = tokio::select! {
            n = tokio::time::timeout(DEAD_AFTER, r.read_buf(&mut buf)) => match n {
                Ok(n) => n?,
                Err(_) => return Err(SessionError::Closed(format!("no heartbeat for {DEAD_AFTER:?}"))),
            },
            _ = dead.wait_for(|d| d.is_some()) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
    }
}

fn session_over_budget(inner: &Inner) -> SessionError {
    SessionError::Closed(format!(
        "peer made this session hold {} bytes for consumers (limit {MAX_SESSION_BUFFERED})",
        inner.queued()
    ))
}

fn dispatch(
    inner: &Arc<Inner>,
    p: Packet,
    incoming: &mpsc::UnboundedSender<Incoming>,
) -> Result<(), SessionError> {
    let ch = p.channel;
    match p.kind {
        Kind::Open => {
            // The peer's ids carry its side's bit, and a live id is never opened twice: a
            // peer that breaks either would take over another channel's accounting.
            if ch & ACCEPTOR_BIT == inner.base || ch & !ACCEPTOR_BIT == 0 {
                return Err(SessionError::Closed(format!(
                    "peer opened channel {ch:#x} of ours"
                )));
            }
            let open = match inner.chans.lock() {
                Ok(m) => m.len(),
                Err(_) => MAX_CHANNELS,
            };
            if inner.chans.lock().is_ok_and(|m| m.contains_key(&ch)) {
                return Err(SessionError::Closed(format!(
                    "peer reopened channel {ch:#x}"
                )));
            }
            if open >= MAX_CHANNELS {
                let exit = Exit::fail(format!(
                    "[Fail]too many channels: {open} are open on this session (limit \
                     {MAX_CHANNELS}); close some and retry"
                ));
                inner.send_small(Kind::Close, ch, &proto::to_bytes(&exit));
                return Ok(());
            }
            let (rx, credit) = inner.register(ch);
            let channel = Channel::new(ch, inner.clone(), rx, credit);
            let _ = incoming.send(Incoming {
                channel,
                request: p.payload,
            });
        }
        Kind::Data => {
            inner
                .rx_bytes
                .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
            if let Ok(mut m) = inner.chans.lock()
                && let Some(e) = m.get_mut(&ch)
            {
                e.queued += p.payload.len();
                if e.queued > 2 * WINDOW {
                    return Err(SessionError::Closed(
                        "peer sent past its flow-control window".into(),
                    ));
                }
                if !inner.enqueue(p.payload.len()) {
                    return Err(session_over_budget(inner));
                }
                let n = p.payload.len();
                let _ = e.tx.send((Event::Data(p.payload), n));
            }
        }
        Kind::Ctrl => {
            let c: Ctrl = proto::from_bytes(&p.payload)?;
            // Control messages take no credit, but they are held until read: they count
            // against the channel's window and the session's budget like data.
            if let Ok(mut m) = inner.chans.lock()
                && let Some(e) = m.get_mut(&ch)
            {
                e.queued += p.payload.len();
                if e.queued > 2 * WINDOW {
                    return Err(SessionError::Closed(
                        "peer sent control messages past its window".into(),
                    ));
                }
                if !inner.enqueue(p.payload.len()) {
                    return Err(session_over_budget(inner));
                }
                let _ = e.tx.send((Event::Ctrl(c), p.payload.len()));
            }
        }
        Kind::Close => {
            let exit: Exit = proto::from_bytes(&p.payload).unwrap_or_else(|_| Exit::fail("closed"));
            let e = inner.chans.lock().ok().and_then(|mut m| m.remove(&ch));
            if let Some(e) = e {
                inner.unqueue(e.queued);
                e.credit.close();
                let _ = e.tx.send((Event::Close(exit), 0));
            }
        }
        Kind::Credit => {
            let n = frame::credit_of(&p) as usize;
            if let Ok(m) = inner.chans.lock()
                && let Some(e) = m.get(&ch)
                && e.credit.available_permits() + n <= 2 * WINDOW
            {
                e.credit.add_permits(n);
            }
        }
        Kind::Ping => {
            inner.send_small(Kind::Pong, 0, &p.payload);
        }
        Kind::Pong => {}
        Kind::Hello => {
            return Err(SessionError::Closed("second hello".into()));
        }
    }
    Ok(())
}

/// One channel: receive with [`Channel::recv`], send with [`Channel::send`] or through a
/// [`Sender`] from another task. Dropping it without [`Channel::close`] closes it with an
/// error exit.
pub struct Channel {
    id: u32,
    inner: Arc<Inner>,
    rx: mpsc::UnboundedReceiver<(Event, usize)>,
    credit: Arc<Semaphore>,
    pending_credit: usize,
    done: bool,
}

/// The sending half of a channel, for a task that pumps one direction.
#[derive(Clone)]
pub struct Sender {
    id: u32,
    inner: Arc<Inner>,
    credit: Arc<Semaphore>,
}

impl Sender {
    /// Sends stream bytes (waits for credit: back-pressure). One call of up to
    /// [`frame::MAX_PAYLOAD`] bytes arrives as one Data event (file chunks rely on it).
    pub async fn send(&self, mut data: Bytes) -> Result<(), SessionError> {
        while !data.is_empty() {
            let part = data.split_to(data.len().min(frame::MAX_PAYLOAD));
            let n = part.len() as u32;
            match self.credit.acquire_many(n).await {
                Ok(p) => p.forget(),
                Err(_) => return Err(SessionError::Closed(self.inner.dead_reason())),
            }
            let h = frame::header(Kind::Data, self.id, part.len());
            if self.inner.out.send(Out::Big(h, part)).is_err() {
                return Err(SessionError::Closed(self.inner.dead_reason()));
            }
        }
        Ok(())
    }

    /// Sends a control message.
    pub fn ctrl(&self, c: &Ctrl) -> Result<(), SessionError> {
        if self.credit.is_closed() {
            return Err(SessionError::Closed(self.inner.dead_reason()));
        }
        self.inner
            .send_small(Kind::Ctrl, self.id, &proto::to_bytes(c));
        Ok(())
    }

    /// Ends the channel with this exit (once; later calls do nothing).
    pub fn close(&self, exit: &Exit) {
        if self.inner.forget(self.id) {
            self.inner
                .send_small(Kind::Close, self.id, &proto::to_bytes(exit));
        }
    }
}

impl Channel {
    fn new(
        id: u32,
        inner: Arc<Inner>,
        rx: mpsc::UnboundedReceiver<(Event, usize)>,
        credit: Arc<Semaphore>,
    ) -> Self {
        Channel {
            id,
            inner,
            rx,
            credit,
            pending_credit: 0,
            done: false,
        }
    }

    /// The channel id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// A sending half.
    pub fn sender(&self) -> Sender {
        Sender {
            id: self.id,
            inner: self.inner.clone(),
            credit: self.credit.clone(),
        }
    }

    /// The next event; after a Close (or when the session died) always a Close.
    pub async fn recv(&mut self) -> Event {
        if self.done {
            return Event::Close(Exit::fail(self.inner.dead_reason()));
        }
        let (ev, held) = match self.rx.recv().await {
            Some(ev) => ev,
            None => (Event::Close(Exit::fail(self.inner.dead_reason())), 0),
        };
        if held > 0 {
            self.inner.taken(self.id, held);
        }
        match &ev {
            Event::Data(b) => {
                self.pending_credit += b.len();
                if self.pending_credit >= WINDOW / 4 || self.rx.is_empty() {
                    let n = std::mem::take(&mut self.pending_credit) as u32;
                    self.inner
                        .send_small(Kind::Credit, self.id, &n.to_le_bytes());
                }
            }
            Event::Close(_) => self.done = true,
            Event::Ctrl(_) => {}
        }
        ev
    }

    /// Sends stream bytes.
    pub async fn send(&self, data: Bytes) -> Result<(), SessionError> {
        self.sender().send(data).await
    }

    /// Sends a control message.
    pub fn ctrl(&self, c: &Ctrl) -> Result<(), SessionError> {
        self.sender().ctrl(c)
    }

    /// Ends the channel with this exit.
    pub fn close(mut self, exit: &Exit) {
        self.done = true;
        self.sender().close(exit);
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if !self.done {
            self.sender().close(&Exit::fail("[Fail]channel abandoned"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;

    fn hello_of(name: &str) -> Hello {
        Hello {
            version: proto::VERSION,
            name: name.into(),
            refused: String::new(),
        }
    }

    async fn pair() -> (
        Session,
        mpsc::UnboundedReceiver<Incoming>,
        Session,
        mpsc::UnboundedReceiver<Incoming>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(256 * 1024);
        let (x, y) = (hello_of("a"), hello_of("b"));
        let (ha, hb) = tokio::join!(hello(&mut a, &x), hello(&mut b, &y));
        assert_eq!(ha.unwrap().name, "b");
        assert_eq!(hb.unwrap().name, "a");
        let (sa, ia) = Session::start(a, false, "b".into());
        let (sb, ib) = Session::start(b, true, "a".into());
        (sa, ia, sb, ib)
    }

    #[tokio::test]
    async fn channel_carries_data_ctrl_and_close() {
        let (sa, _ia, _sb, mut ib) = pair().await;
        let req = proto::to_bytes(&Request::Boot);
        let mut ch = sa.open(&req).unwrap();
        let mut inc = ib.recv().await.unwrap();
        assert_eq!(
            proto::from_bytes::<Request>(&inc.request).unwrap(),
            Request::Boot
        );
        assert!(inc.channel.id() & ACCEPTOR_BIT == 0);
        // More than a window, so credits must flow back for it to finish.
        let big = Bytes::from(vec![5u8; WINDOW * 3 + 17]);
        let s = ch.sender();
        let b2 = big.clone();
        let send = tokio::spawn(async move { s.send(b2).await });
        let mut got = 0;
        while got < big.len() {
            match inc.channel.recv().await {
                Event::Data(d) => got += d.len(),
                other => panic!("unexpected {other:?}"),
            }
        }
        send.await.unwrap().unwrap();
        inc.channel.ctrl(&Ctrl::Text("hi".into())).unwrap();
        inc.channel.close(&Exit {
            code: 3,
            message: String::new(),
        });
        assert!(matches!(ch.recv().await, Event::Ctrl(Ctrl::Text(t)) if t == "hi"));
        assert!(matches!(
            ch.recv().await,
            Event::Close(Exit { code: 3, .. })
        ));
    }

    #[tokio::test]
    async fn a_dead_peer_ends_every_channel_with_a_reason() {
        let (sa, _ia, sb, mut ib) = pair().await;
        let mut ch = sa.open(&proto::to_bytes(&Request::Boot)).unwrap();
        let _inc = ib.recv().await.unwrap();
        sb.shutdown("gone");
        match tokio::time::timeout(Duration::from_secs(5), ch.recv())
            .await
            .unwrap()
        {
            Event::Close(e) => {
                assert_ne!(e.code, 0);
                assert!(e.message.contains("[Fail]b"), "{}", e.message);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(sa.open(b"x").is_err());
    }

    #[tokio::test]
    async fn a_peer_that_ignores_credits_is_cut_off() {
        let (sa, _ia, sb, mut ib) = pair().await;
        let ch = sa.open(&proto::to_bytes(&Request::Boot)).unwrap();
        // Held, never read from.
        let _inc = ib.recv().await.unwrap();
        // Bypass the sender's credit check: raw Data packets past twice the window.
        let chunk = Bytes::from(vec![0u8; frame::MAX_PAYLOAD]);
        for _ in 0..(2 * WINDOW / frame::MAX_PAYLOAD + 2) {
            let h = frame::header(Kind::Data, ch.id(), chunk.len());
            let _ = sa.inner.out.send(Out::Big(h, chunk.clone()));
        }
        // The receiver never reads Data here, so its queue only grows: the session must die.
        tokio::time::timeout(Duration::from_secs(5), sb.closed())
            .await
            .expect("session cut off");
        assert!(
            sb.dead().unwrap().contains("flow-control"),
            "{:?}",
            sb.dead()
        );
    }

    #[tokio::test]
    async fn refused_hello_is_an_error_with_the_reason() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let mut no = hello_of("dev");
        no.refused = "[Fail]unauthorized".into();
        let host = hello_of("host");
        let (ra, _) = tokio::join!(hello(&mut a, &host), hello(&mut b, &no));
        assert!(matches!(ra, Err(SessionError::Refused(r)) if r == "[Fail]unauthorized"));
    }

    /// A session on one end of a duplex and the raw bytes of the other, after the hellos: the
    /// raw side plays a hostile peer that writes whatever frames it likes.
    async fn raw_peer() -> (
        Session,
        mpsc::UnboundedReceiver<Incoming>,
        tokio::io::DuplexStream,
    ) {
        let (mut raw, mut b) = tokio::io::duplex(4 << 20);
        let (x, y) = (hello_of("raw"), hello_of("b"));
        let (hr, hb) = tokio::join!(hello(&mut raw, &x), hello(&mut b, &y));
        hr.unwrap();
        hb.unwrap();
        let (sb, ib) = Session::start(b, true, "raw".into());
        (sb, ib, raw)
    }

    /// Reads frames from the raw side until one is a Close for `ch`; returns its exit.
    async fn close_of(raw: &mut tokio::io::DuplexStream, ch: u32) -> Exit {
        let mut buf = BytesMut::new();
        loop {
            while let Some(p) = frame::decode(&mut buf).unwrap() {
                if p.kind == Kind::Close && p.channel == ch {
                    return proto::from_bytes(&p.payload).unwrap();
                }
            }
            let n = raw.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "session ended before closing channel {ch}");
        }
    }

    #[tokio::test]
    async fn an_open_past_the_channel_limit_is_refused_and_the_rest_live() {
        let (sb, mut ib, mut raw) = raw_peer().await;
        let req = proto::to_bytes(&Request::Boot);
        let mut held = Vec::new();
        for id in 1..=MAX_CHANNELS as u32 + 1 {
            raw.write_all(&frame::encode(Kind::Open, id, &req))
                .await
                .unwrap();
        }
        for _ in 0..MAX_CHANNELS {
            held.push(ib.recv().await.unwrap());
        }
        let exit = close_of(&mut raw, MAX_CHANNELS as u32 + 1).await;
        assert_ne!(exit.code, 0);
        assert!(
            exit.message.contains("too many channels"),
            "{}",
            exit.message
        );
        assert!(sb.dead().is_none());
        // A slot frees when a channel closes.
        let gone = held.pop().unwrap();
        gone.channel.close(&Exit::ok());
        let id = MAX_CHANNELS as u32 + 2;
        raw.write_all(&frame::encode(Kind::Open, id, &req))
            .await
            .unwrap();
        let again = tokio::time::timeout(Duration::from_secs(10), ib.recv())
            .await
            .expect("the freed slot is used")
            .unwrap();
        assert_eq!(again.channel.id(), id);
    }

    #[tokio::test]
    async fn a_peer_that_fills_many_channels_past_the_session_budget_is_cut() {
        let (sb, mut ib, mut raw) = raw_peer().await;
        let req = proto::to_bytes(&Request::Boot);
        // Each channel gets what its own window allows (2 x WINDOW before it is cut alone);
        // together they pass the session's budget. Nobody reads them.
        let per = 2 * WINDOW;
        let chans = MAX_SESSION_BUFFERED / per + 1;
        let chunk = vec![7u8; frame::MAX_PAYLOAD];
        let mut held = Vec::new();
        let writer = async {
            for id in 1..=chans as u32 {
                raw.write_all(&frame::encode(Kind::Open, id, &req)).await?;
                let mut left = per;
                while left > 0 {
                    let n = left.min(chunk.len());
                    raw.write_all(&frame::encode(Kind::Data, id, &chunk[..n]))
                        .await?;
                    left -= n;
                }
            }
            std::io::Result::Ok(())
        };
        let reader = async {
            while let Some(inc) = ib.recv().await {
                held.push(inc);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(writer, reader)
        })
        .await;
        let why = sb.dead().expect("the session was cut");
        assert!(
            why.contains("hold") && why.contains(&MAX_SESSION_BUFFERED.to_string()),
            "{why}"
        );
        assert!(held.len() <= chans);
    }

    #[tokio::test]
    async fn a_peer_that_opens_an_id_of_ours_or_reuses_one_is_cut() {
        for ids in [vec![ACCEPTOR_BIT | 5], vec![9, 9]] {
            let (sb, _ib, mut raw) = raw_peer().await;
            let req = proto::to_bytes(&Request::Boot);
            for id in &ids {
                raw.write_all(&frame::encode(Kind::Open, *id, &req))
                    .await
                    .unwrap();
            }
            tokio::time::timeout(Duration::from_secs(10), sb.closed())
                .await
                .expect("cut");
            assert!(sb.dead().unwrap().contains("channel"), "{ids:?}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Open(u8),
        Data(u8, u16),
        Ctrl(u8),
        Consume(u8),
        PeerClose(u8),
        LocalClose(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..6).prop_map(Op::Open),
            (0u8..6, 1u16..4096).prop_map(|(c, n)| Op::Data(c, n)),
            (0u8..6).prop_map(Op::Ctrl),
            (0u8..6).prop_map(Op::Consume),
            (0u8..6).prop_map(Op::PeerClose),
            (0u8..6).prop_map(Op::LocalClose),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever a peer opens, sends and closes, and whatever the consumers take or drop:
        /// the session's held-bytes count is exactly what its open channels hold, and once
        /// every channel is gone it is zero (nothing leaks into the budget).
        #[test]
        fn held_bytes_balance_whatever_the_peer_and_consumers_do(
            ops in proptest::collection::vec(op(), 0..120)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (sb, mut ib, mut raw) = raw_peer().await;
                let req = proto::to_bytes(&Request::Boot);
                let ctrl = proto::to_bytes(&Ctrl::Text("x".repeat(40)));
                let mut open: HashMap<u8, Channel> = HashMap::new();
                let mut next_id = 1u32;
                let mut ids: HashMap<u8, u32> = HashMap::new();
                // Lets the session's reader take in what was written.
                async fn settle(sb: &Session) {
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                    let _ = sb.dead();
                }
                for o in ops {
                    match o {
                        Op::Open(c) if !ids.contains_key(&c) => {
                            let id = next_id;
                            next_id += 1;
                            raw.write_all(&frame::encode(Kind::Open, id, &req)).await.unwrap();
                            let inc = ib.recv().await.unwrap();
                            ids.insert(c, id);
                            open.insert(c, inc.channel);
                        }
                        Op::Data(c, n) => {
                            if let Some(id) = ids.get(&c) {
                                let d = vec![1u8; n as usize];
                                raw.write_all(&frame::encode(Kind::Data, *id, &d)).await.unwrap();
                            }
                        }
                        Op::Ctrl(c) => {
                            if let Some(id) = ids.get(&c) {
                                raw.write_all(&frame::encode(Kind::Ctrl, *id, &ctrl)).await.unwrap();
                            }
                        }
                        Op::Consume(c) => {
                            settle(&sb).await;
                            if let Some(ch) = open.get_mut(&c)
                                && !ch.rx.is_empty()
                            {
                                let _ = ch.recv().await;
                            }
                        }
                        Op::PeerClose(c) => {
                            if let Some(id) = ids.remove(&c) {
                                let e = proto::to_bytes(&Exit::ok());
                                raw.write_all(&frame::encode(Kind::Close, id, &e)).await.unwrap();
                            }
                        }
                        Op::LocalClose(c) => {
                            if let Some(ch) = open.remove(&c) {
                                ids.remove(&c);
                                ch.sender().close(&Exit::ok());
                            }
                        }
                        Op::Open(_) => {}
                    }
                    settle(&sb).await;
                    let held: usize = sb
                        .inner
                        .chans
                        .lock()
                        .unwrap()
                        .values()
                        .map(|e| e.queued)
                        .sum();
                    assert_eq!(sb.inner.queued(), held);
                    assert!(sb.dead().is_none(), "{:?}", sb.dead());
                }
                for (_, ch) in open.drain() {
                    ch.sender().close(&Exit::ok());
                }
                for (_, id) in ids.drain() {
                    let e = proto::to_bytes(&Exit::ok());
                    raw.write_all(&frame::encode(Kind::Close, id, &e)).await.unwrap();
                }
                // Bounded: the reader takes the Closes in within a few turns.
                tokio::time::timeout(Duration::from_secs(10), async {
                    while !sb.inner.chans.lock().unwrap().is_empty() {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .expect("every channel gone");
                assert_eq!(sb.inner.queued(), 0);
            });
        }
    }
}
