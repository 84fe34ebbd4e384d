//! The async adapter around [`crate::core`]: one session over any byte stream (TLS to a
//! device, plain TCP from a client to the host server), many channels over it. The core
//! decides everything (channels, credits, limits, heartbeat and dead-after); this file only
//! moves bytes between it and the stream, runs its timer, and hands its events to the
//! channels' users.
//!
//! Three tasks per session: a reader (stream → core), a writer (core → stream, woken when
//! the core has frames) and a timer (the core's deadline). The core sits behind one mutex,
//! never held across an await.

use crate::core::{CoreEvent, SendError, SessionCore, Transmit};
use crate::frame::{self, HEADER_LEN, Kind, Packet};
use crate::proto::{self, Ctrl, Exit, Hello};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};

pub use crate::core::{
    ACCEPTOR_BIT, DEAD_AFTER, MAX_CHANNELS, MAX_SESSION_BUFFERED, PING_EVERY, WINDOW,
};

/// Read buffer under a TLS stream. rustls asks its transport for at most 4 KiB at a time;
/// straight from the socket that is a system call (and often a wake-up) per 4 KiB, about
/// 260,000 per GiB. Served from this buffer instead, the socket is read in large gulps.
pub const TLS_READ_BUFFER: usize = 256 * 1024;

/// A TCP stream with [`TLS_READ_BUFFER`] of read buffer, for a TLS session on top.
pub fn buffered(tcp: tokio::net::TcpStream) -> tokio::io::BufReader<tokio::net::TcpStream> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp)
}

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
    /// The handshake did not decode.
    #[error("malformed handshake: {0}")]
    Handshake(#[from] crate::ohos::WireError),
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

/// A channel's user side: where its events go, and what wakes a sender waiting for credit.
struct Local {
    /// Events with the bytes each holds against the core's budgets.
    tx: mpsc::UnboundedSender<(Event, usize)>,
    credit: Arc<Notify>,
}

struct State {
    core: SessionCore,
    locals: HashMap<u32, Local>,
    /// Where channels the peer opens go; dropped when the session dies, so the owner's
    /// receiver ends.
    incoming: Option<mpsc::UnboundedSender<Incoming>>,
}

struct Inner {
    st: Mutex<State>,
    /// Wakes the writer: the core has frames.
    wake: Notify,
    dead: watch::Sender<Option<String>>,
    /// Names the peer in the reason every channel gets when the session dies.
    label: String,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the core as it was between two calls: go on.
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the core, then hands out what it produced. Channels the peer opened are
    /// passed on after the lock is released (dropping one takes the lock).
    fn with_core<T>(self: &Arc<Self>, f: impl FnOnce(&mut SessionCore) -> T) -> T {
        let (r, opened, to) = {
            let mut st = self.lock();
            let r = f(&mut st.core);
            let opened = self.drain(&mut st);
            let to = if opened.is_empty() {
                None
            } else {
                st.incoming.clone()
            };
            (r, opened, to)
        };
        if let Some(to) = to {
            for inc in opened {
                // A session whose owner stopped listening drops the channel (closing it).
                let _ = to.send(inc);
            }
        }
        r
    }

    fn drain(self: &Arc<Self>, st: &mut State) -> Vec<Incoming> {
        let mut opened = Vec::new();
        while let Some(ev) = st.core.poll_event() {
            match ev {
                CoreEvent::Opened { ch, request } => {
                    let (rx, credit) = register(&mut st.locals, ch);
                    opened.push(Incoming {
                        channel: Channel::new(ch, self.clone(), rx, credit),
                        request,
                    });
                }
                CoreEvent::Data { ch, data } => {
                    if let Some(l) = st.locals.get(&ch) {
                        let n = data.len();
                        let _ = l.tx.send((Event::Data(data), n));
                    }
                }
                CoreEvent::Ctrl { ch, ctrl, held } => {
                    if let Some(l) = st.locals.get(&ch) {
                        let _ = l.tx.send((Event::Ctrl(ctrl), held));
                    }
                }
                CoreEvent::Closed { ch, exit } => {
                    if let Some(l) = st.locals.remove(&ch) {
                        let _ = l.tx.send((Event::Close(exit), 0));
                        l.credit.notify_waiters();
                    }
                }
                CoreEvent::Credit { ch } => {
                    if let Some(l) = st.locals.get(&ch) {
                        l.credit.notify_waiters();
                    }
                }
                CoreEvent::Dead { reason, killed, .. } => {
                    let reason = if killed {
                        reason
                    } else {
                        format!("[Fail]{}: connection lost ({reason})", self.label)
                    };
                    self.dead.send_replace(Some(reason.clone()));
                    st.incoming = None;
                    for (_, l) in st.locals.drain() {
                        let _ = l.tx.send((Event::Close(Exit::fail(&reason)), 0));
                        l.credit.notify_waiters();
                    }
                }
            }
        }
        if st.core.has_transmit() {
            self.wake.notify_one();
        }
        opened
    }

    fn kill(self: &Arc<Self>, reason: &str) {
        self.with_core(|c| c.kill(reason));
    }

    fn dead_reason(&self) -> String {
        self.dead
            .borrow()
            .clone()
            .unwrap_or_else(|| "channel closed".into())
    }

    fn closed_error(&self, e: SendError) -> SessionError {
        match e {
            SendError::Closed(_) | SendError::NoCredit => SessionError::Closed(self.dead_reason()),
        }
    }
}

fn register(
    locals: &mut HashMap<u32, Local>,
    ch: u32,
) -> (mpsc::UnboundedReceiver<(Event, usize)>, Arc<Notify>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let credit = Arc::new(Notify::new());
    locals.insert(
        ch,
        Local {
            tx,
            credit: credit.clone(),
        },
    );
    (rx, credit)
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
    let head = usize::from(u16::from_be_bytes([h[5], h[6]]));
    let len = u32::from_be_bytes([h[7], h[8], h[9], h[10]]) as usize;
    let mut buf = BytesMut::from(&h[..]);
    if len > 64 * 1024 || head > crate::ohos::MAX_PROTECT {
        return Err(frame::FrameError::TooLong(len as u32).into());
    }
    buf.resize(HEADER_LEN + head + len, 0);
    r.read_exact(&mut buf[HEADER_LEN..]).await?;
    frame::decode(&mut buf)?.ok_or_else(|| SessionError::Closed("short hello".into()))
}

/// Exchanges hellos: sends ours, reads the peer's. A refusal from the peer is an error with
/// its reason; ours (non-empty `refused`) is sent and then the caller drops the stream.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    mine: &Hello,
) -> Result<Hello, SessionError> {
    write_packet(s, Kind::Hello, 0, &mine.to_handshake(false).encode()).await?;
    let p = tokio::time::timeout(DEAD_AFTER, read_packet(s))
        .await
        .map_err(|_| {
            SessionError::Closed("[Fail]no answer from the peer (hello timed out)".into())
        })??;
    if p.kind != Kind::Hello {
        return Err(SessionError::Closed("[Fail]peer did not greet".into()));
    }
    let h = Hello::from_handshake(&p.payload)?;
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
    let peer = Hello::from_handshake(&p.payload)?;
    let mut mine = decide(&peer);
    if peer.version != proto::VERSION && mine.refused.is_empty() {
        mine.refused = format!(
            "[Fail]protocol version {} is not {}",
            peer.version,
            proto::VERSION
        );
    }
    write_packet(s, Kind::Hello, 0, &mine.to_handshake(true).encode()).await?;
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
        let (dead, _) = watch::channel(None);
        let (inc_tx, inc_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            st: Mutex::new(State {
                core: SessionCore::new(acceptor, std::time::Instant::now()),
                locals: HashMap::new(),
                incoming: Some(inc_tx),
            }),
            wake: Notify::new(),
            dead,
            label,
        });
        let (r, w) = tokio::io::split(stream);
        tokio::spawn(writer(w, inner.clone()));
        tokio::spawn(reader(r, inner.clone()));
        tokio::spawn(timer(inner.clone()));
        (Session { inner }, inc_rx)
    }

    /// Opens a channel with a request (postcard bytes).
    pub fn open(&self, request: &[u8]) -> Result<Channel, SessionError> {
        let opened = {
            let mut st = self.inner.lock();
            match st.core.open(request) {
                Ok(id) => {
                    let (rx, credit) = register(&mut st.locals, id);
                    Ok((id, rx, credit))
                }
                Err(e) => Err(e),
            }
        };
        self.inner.wake.notify_one();
        match opened {
            Ok((id, rx, credit)) => Ok(Channel::new(id, self.inner.clone(), rx, credit)),
            Err(e) => Err(self.inner.closed_error(e)),
        }
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
        self.inner.lock().core.rx_bytes()
    }
}

async fn writer<W: AsyncWrite>(w: W, inner: Arc<Inner>) {
    let mut w = std::pin::pin!(w);
    let mut dead = inner.dead.subscribe();
    let mut staging: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut batch: Vec<Transmit> = Vec::new();
    loop {
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = dead.wait_for(|d| d.is_some()) => break,
        }
        let r: std::io::Result<()> = async {
            loop {
                {
                    let mut st = inner.lock();
                    while let Some(t) = st.core.poll_transmit() {
                        batch.push(t);
                    }
                }
                if batch.is_empty() {
                    break;
                }
                for t in batch.drain(..) {
                    match t {
                        Transmit::Small(v) => staging.extend_from_slice(&v),
                        Transmit::Big(h, p) => {
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

async fn reader<R: AsyncRead>(r: R, inner: Arc<Inner>) {
    let mut r = std::pin::pin!(r);
    let mut buf = BytesMut::with_capacity(2 * frame::MAX_PAYLOAD);
    let mut dead = inner.dead.subscribe();
    loop {
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(frame::MAX_PAYLOAD);
        }
        let n = tokio::select! {
            n = r.read_buf(&mut buf) => n,
            _ = dead.wait_for(|d| d.is_some()) => return,
        };
        match n {
            Ok(0) => {
                let why = format!("[Fail]{} closed the connection", inner.label);
                inner.kill(&why);
                return;
            }
            Ok(_) => {
                let now = std::time::Instant::now();
                inner.with_core(|c| c.receive(&mut buf, now));
            }
            Err(e) => {
                let why = format!("[Fail]{}: connection lost ({e})", inner.label);
                inner.kill(&why);
                return;
            }
        }
    }
}

/// Runs the core's deadline: heartbeats, and the end of a silent peer.
async fn timer(inner: Arc<Inner>) {
    let mut dead = inner.dead.subscribe();
    loop {
        let Some(at) = inner.lock().core.deadline() else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            _ = dead.wait_for(|d| d.is_some()) => return,
        }
        let now = std::time::Instant::now();
        inner.with_core(|c| c.on_timeout(now));
    }
}

/// One channel: receive with [`Channel::recv`], send with [`Channel::send`] or through a
/// [`Sender`] from another task. Dropping it without [`Channel::close`] closes it with an
/// error exit.
pub struct Channel {
    id: u32,
    inner: Arc<Inner>,
    rx: mpsc::UnboundedReceiver<(Event, usize)>,
    credit: Arc<Notify>,
    done: bool,
}

/// The sending half of a channel, for a task that pumps one direction.
#[derive(Clone)]
pub struct Sender {
    id: u32,
    inner: Arc<Inner>,
    credit: Arc<Notify>,
}

impl Sender {
    /// Sends stream bytes (waits for credit: back-pressure). One call of up to
    /// [`frame::MAX_PAYLOAD`] bytes arrives as one Data event (file chunks rely on it).
    pub async fn send(&self, mut data: Bytes) -> Result<(), SessionError> {
        while !data.is_empty() {
            let part = data.split_to(data.len().min(frame::MAX_PAYLOAD));
            loop {
                // Registered before the core is asked, so a credit that arrives between the
                // answer and the wait still wakes it.
                let credit = self.credit.notified();
                tokio::pin!(credit);
                credit.as_mut().enable();
                let r = self.inner.lock().core.send_data(self.id, part.clone());
                match r {
                    Ok(()) => {
                        self.inner.wake.notify_one();
                        break;
                    }
                    Err(SendError::NoCredit) => credit.await,
                    Err(e) => return Err(self.inner.closed_error(e)),
                }
            }
        }
        Ok(())
    }

    /// Sends a control message.
    pub fn ctrl(&self, c: &Ctrl) -> Result<(), SessionError> {
        let r = self.inner.lock().core.send_ctrl(self.id, c);
        self.inner.wake.notify_one();
        r.map_err(|e| self.inner.closed_error(e))
    }

    /// Ends the channel with this exit (once; later calls do nothing).
    pub fn close(&self, exit: &Exit) {
        {
            let mut st = self.inner.lock();
            if st.core.close(self.id, exit) {
                st.locals.remove(&self.id);
            }
        }
        self.inner.wake.notify_one();
    }
}

impl Channel {
    fn new(
        id: u32,
        inner: Arc<Inner>,
        rx: mpsc::UnboundedReceiver<(Event, usize)>,
        credit: Arc<Notify>,
    ) -> Self {
        Channel {
            id,
            inner,
            rx,
            credit,
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
        let data = matches!(ev, Event::Data(_));
        if held > 0 {
            // Credit goes back at once when nothing more is queued, so a sender that is
            // waiting on the last bytes of its window is not left waiting.
            let flush = self.rx.is_empty();
            let id = self.id;
            let more = {
                let mut st = self.inner.lock();
                st.core.consumed(id, held, data, flush);
                st.core.has_transmit()
            };
            if more {
                self.inner.wake.notify_one();
            }
        }
        if let Event::Close(_) = ev {
            self.done = true;
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
    use std::time::Duration;

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
        let (sb, mut ib, mut raw) = raw_peer().await;
        raw.write_all(&frame::encode(
            Kind::Open,
            1,
            &proto::to_bytes(&Request::Boot),
        ))
        .await
        .unwrap();
        // Held, never read from.
        let _inc = ib.recv().await.unwrap();
        // Raw Data packets past twice the window, as a peer ignoring its credit would send.
        let chunk = vec![0u8; frame::MAX_PAYLOAD];
        for _ in 0..(2 * WINDOW / frame::MAX_PAYLOAD + 2) {
            if raw
                .write_all(&frame::encode(Kind::Data, 1, &chunk))
                .await
                .is_err()
            {
                break;
            }
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
                    assert!(sb.inner.lock().core.held() <= MAX_SESSION_BUFFERED);
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
                    while sb.inner.lock().core.open_channels() > 0 {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .expect("every channel gone");
                assert_eq!(sb.inner.lock().core.held(), 0);
            });
        }
    }
}
