//! The socket core on both ends of a real QUIC connection, in virtual time over a simulated
//! link, as quinn-proto tests itself: two `quinn_proto` endpoints (sans-IO) with the bus's own
//! transport and TLS settings, a clock that jumps to the next timer or arrival, and a link that
//! drops, delays and reorders datagrams from a seeded generator. Every run is the same run;
//! nothing sleeps, and every loop is bounded by a step count.

use super::super::config::{MAX_UDP_PAYLOAD, limit_incoming};
use super::super::{BusConfig, tls, transport_config};
use super::core::{
    Acks, Answer, CLOSED_BEFORE_ACK, Dialing, FileSender, First, Opening, Receiver, Step,
};
use super::frame::{FILE_DATA_TAG, Frame, blob_head, encode, split_frame};
use crate::proto::{DataType, FileHasher, FilePiece, MAX_FILE_CHUNK, SessionError, SocketEvent};
use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use quinn_proto as qp;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Steps (clock jumps) a run may take before it counts as hung.
const MAX_STEPS: usize = 200_000;
/// The dialer's id for the socket, and the listener's.
const A_SOCKET: u64 = 1;
const B_SOCKET: u64 = 77;

/// xorshift64*: a deterministic source for the link's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the link does to each datagram.
#[derive(Clone, Copy)]
struct Link {
    /// Datagrams dropped, in percent.
    loss: u64,
    /// Datagrams held back by up to `jitter` (so later ones overtake them), in percent.
    reorder: u64,
    /// One-way delay.
    delay: Duration,
    /// Extra delay of a held-back datagram, at most.
    jitter: Duration,
}

const CLEAN: Link = Link {
    loss: 0,
    reorder: 0,
    delay: Duration::from_millis(2),
    jitter: Duration::ZERO,
};

/// What the application on one end saw.
#[derive(Default)]
struct Seen {
    /// Socket events (bind, file begins).
    events: Vec<SocketEvent>,
    /// File pieces, the bytes of data pieces hashed and counted rather than kept.
    ends: Vec<FilePiece>,
    hasher: Option<FileHasher>,
    bytes: u64,
    /// Acks written, with the time.
    acks_sent: Vec<(u64, Instant)>,
    /// Completed `End`s: (seq, result, time).
    completed: Vec<(u64, Result<(), SessionError>, Instant)>,
    /// Why the socket closed.
    closed: Option<String>,
    /// Why the connection was lost, and when.
    lost: Option<(String, Instant)>,
}

/// A file the dialer sends: its name and contents, fed in chunks as QUIC takes them.
struct Outgoing {
    name: String,
    data: Bytes,
    offset: usize,
    begun: bool,
}

/// One end: a quinn-proto endpoint, its connection, and the socket core on the stream.
struct End {
    endpoint: qp::Endpoint,
    addr: SocketAddr,
    conn: Option<(qp::ConnectionHandle, qp::Connection)>,
    dialer: bool,
    stream: Option<qp::StreamId>,
    /// Stream bytes received and not yet a whole frame.
    rx: Vec<u8>,
    /// Stream bytes QUIC has not taken yet.
    tx: VecDeque<Bytes>,
    /// The dialer: the peer's socket id once accepted.
    peer_socket: Option<u64>,
    receiver: Option<Receiver>,
    sender: FileSender,
    acks: Acks<u64>,
    files: VecDeque<Outgoing>,
    /// Datagrams on their way here: (arrival, bytes).
    inbound: Vec<(Instant, Vec<u8>)>,
    seen: Seen,
}

impl End {
    fn new(endpoint: qp::Endpoint, port: u16, dialer: bool) -> Self {
        Self {
            endpoint,
            addr: SocketAddr::from(([10, 0, 0, port as u8], port)),
            conn: None,
            dialer,
            stream: None,
            rx: Vec::new(),
            tx: VecDeque::new(),
            peer_socket: None,
            receiver: None,
            sender: FileSender::default(),
            acks: Acks::default(),
            files: VecDeque::new(),
            inbound: Vec::new(),
            seen: Seen::default(),
        }
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: Vec<u8>) {
        let mut buf = Vec::new();
        let ev = self
            .endpoint
            .handle(now, from, None, None, BytesMut::from(&data[..]), &mut buf);
        match ev {
            Some(qp::DatagramEvent::NewConnection(inc)) => {
                let (ch, conn) = self
                    .endpoint
                    .accept(inc, now, &mut buf, None)
                    .expect("accept");
                self.conn = Some((ch, conn));
            }
            Some(qp::DatagramEvent::ConnectionEvent(ch, ev)) => {
                if let Some((h, c)) = self.conn.as_mut()
                    && *h == ch
                {
                    c.handle_event(ev);
                }
            }
            // Stateless answers (version negotiation, resets): not part of these runs.
            Some(qp::DatagramEvent::Response(_)) | None => {}
        }
    }

    /// Runs the connection and the socket at `now`; the datagrams to send.
    fn drive(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let Some((ch, mut conn)) = self.conn.take() else {
            return out;
        };
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        while let Some(ev) = conn.poll() {
            match ev {
                qp::Event::Connected if self.dialer => {
                    let id = conn.streams().open(qp::Dir::Bi).expect("a stream");
                    self.stream = Some(id);
                    let open = Dialing::open("files", "me", DataType::File, A_SOCKET);
                    self.tx.push_back(encode(&open).into());
                }
                qp::Event::Stream(qp::StreamEvent::Opened { dir: qp::Dir::Bi }) => {
                    self.stream = conn.streams().accept(qp::Dir::Bi);
                }
                qp::Event::ConnectionLost { reason } => self.lost(reason.to_string(), now),
                _ => {}
            }
        }
        self.socket(&mut conn, now);
        while let Some(ev) = conn.poll_endpoint_events() {
            if let Some(ev) = self.endpoint.handle_event(ch, ev) {
                conn.handle_event(ev);
            }
        }
        let mut buf = Vec::new();
        while let Some(t) = conn.poll_transmit(now, 10, &mut buf) {
            let seg = t.segment_size.unwrap_or(t.size);
            out.extend(buf[..t.size].chunks(seg).map(<[u8]>::to_vec));
            buf.clear();
        }
        self.conn = Some((ch, conn));
        out
    }

    /// The connection is gone: the socket ends as the adapter's would, its read failing.
    fn lost(&mut self, reason: String, now: Instant) {
        if self.seen.lost.is_some() {
            return;
        }
        let reason = format!("stream: connection lost: {reason}");
        if let Some(r) = self.receiver.as_mut()
            && let Some(p) = r.cut_off(&reason)
        {
            self.seen.ends.push(p);
        }
        for seq in self.acks.close() {
            let closed = Err(SessionError::Io(CLOSED_BEFORE_ACK.into()));
            self.seen.completed.push((seq, closed, now));
        }
        self.seen.lost = Some((reason, now));
    }

    /// Reads what arrived on the stream, feeds the core, and writes what it and the app send.
    fn socket(&mut self, conn: &mut qp::Connection, now: Instant) {
        let Some(id) = self.stream else { return };
        if let Ok(mut chunks) = conn.recv_stream(id).read(true) {
            while let Ok(Some(c)) = chunks.next(usize::MAX) {
                self.rx.extend_from_slice(&c.bytes);
            }
            let _ = chunks.finalize();
        }
        while let Some((frame, used)) = split_frame(&self.rx).expect("well-formed frames") {
            self.rx.drain(..used);
            self.frame(frame, now);
        }
        self.send_files();
        let mut s = conn.send_stream(id);
        while let Some(front) = self.tx.front_mut() {
            match s.write(front) {
                Ok(n) if n == front.len() => {
                    self.tx.pop_front();
                }
                Ok(n) => {
                    let _ = front.split_to(n);
                }
                Err(_) => break,
            }
        }
    }

    fn frame(&mut self, frame: Frame, now: Instant) {
        if self.dialer && self.peer_socket.is_none() {
            self.peer_socket = Some(Dialing::answer(Some(frame)).expect("accepted"));
            self.receiver = Some(Receiver::new(A_SOCKET));
            return;
        }
        let Some(r) = self.receiver.as_mut() else {
            self.accept(frame, now);
            return;
        };
        match r.handle(Some(frame)) {
            Step::FileBegin(ev) => {
                self.seen.hasher = Some(FileHasher::new());
                self.seen.events.push(ev);
            }
            Step::Event(ev) => self.seen.events.push(ev),
            Step::Piece(FilePiece::Data(d)) => {
                self.seen.bytes += d.len() as u64;
                self.seen.hasher.as_mut().expect("begun").update(&d);
            }
            Step::Piece(end) => {
                // The receiving app checks the checksum and answers (`file_result`).
                if let FilePiece::End { checksum, seq } = &end {
                    let ok = self.seen.hasher.as_ref().map(FileHasher::finish) == Some(*checksum);
                    let error = (!ok).then(|| "checksum".to_string());
                    self.tx
                        .push_back(encode(&Frame::FileAck { seq: *seq, error }).into());
                    self.seen.acks_sent.push((*seq, now));
                }
                self.seen.ends.push(end);
            }
            Step::Write(f) => self.tx.push_back(encode(&f).into()),
            Step::Acked { seq, error } => {
                if let Some((seq, result)) = self.acks.on_ack(seq, error) {
                    self.seen.completed.push((seq, result, now));
                }
            }
            Step::Close(reason) => self.seen.closed = Some(reason),
            Step::None => {}
        }
    }

    /// The listener's side of the first frame.
    fn accept(&mut self, frame: Frame, now: Instant) {
        let First::Open(req) = Opening::new(now).handle(Some(frame)) else {
            panic!("not an open");
        };
        let Answer::Accept { id, frame, .. } = req.answer(Some(()), 0, || B_SOCKET) else {
            panic!("refused");
        };
        self.tx.push_back(encode(&frame).into());
        self.seen
            .events
            .push(req.bind_event(id, "net-a".into(), "a".into()));
        self.receiver = Some(Receiver::new(id));
    }

    /// The sending app: the next step of its files, one chunk once QUIC took the last one
    /// (the adapter's back-pressure: `send_file` returns when the chunk is written).
    fn send_files(&mut self) {
        if self.peer_socket.is_none() || !self.tx.is_empty() {
            return;
        }
        let Some(f) = self.files.front_mut() else {
            return;
        };
        if !f.begun {
            f.begun = true;
            let begin = self
                .sender
                .begin(f.name.clone(), f.data.len() as u64)
                .expect("begin");
            self.tx.push_back(encode(&begin).into());
            return;
        }
        if f.offset < f.data.len() {
            let n = (f.data.len() - f.offset).min(MAX_FILE_CHUNK);
            if self.sender.data(f.offset as u64, n).expect("data") {
                self.tx.push_back(blob_head(FILE_DATA_TAG, n).into());
                self.tx.push_back(f.data.slice(f.offset..f.offset + n));
            }
            f.offset += n;
            return;
        }
        let checksum = FileHasher::of(&f.data);
        let (seq, end) = self.sender.end(checksum).expect("end");
        self.acks.expect(seq, seq);
        self.tx.push_back(encode(&end).into());
        self.files.pop_front();
    }

    fn next_wakeup(&mut self) -> Option<Instant> {
        let timer = self.conn.as_mut().and_then(|(_, c)| c.poll_timeout());
        let arrival = self.inbound.iter().map(|(t, _)| *t).min();
        [timer, arrival].into_iter().flatten().min()
    }
}

/// Two ends over one link, in virtual time.
struct World {
    a: End,
    b: End,
    link: Link,
    rng: Rng,
    /// From this moment on the link drops everything.
    dead: bool,
    /// Datagrams carried, dropped and held back so far.
    carried: usize,
    dropped: usize,
    held_back: usize,
    start: Instant,
    now: Instant,
    cfg: BusConfig,
}

impl World {
    /// A dialer `a` connecting to a listener `b` with the bus's transport and TLS settings.
    fn new(link: Link, seed: u64) -> Self {
        let cfg = BusConfig::default();
        let transport = Arc::new(transport_config(&cfg, false));
        let (ka, kb) = (
            SigningKey::from_bytes(&[21; 32]),
            SigningKey::from_bytes(&[22; 32]),
        );
        let qsc = qp::crypto::rustls::QuicServerConfig::try_from(
            tls::server_config(&kb).expect("server tls"),
        )
        .expect("quic server tls");
        let mut server = qp::ServerConfig::with_crypto(Arc::new(qsc));
        server.transport_config(transport.clone());
        limit_incoming(&mut server);
        let mut ep = qp::EndpointConfig::default();
        ep.max_udp_payload_size(MAX_UDP_PAYLOAD).expect("payload");
        let ep = Arc::new(ep);
        let rng_seed = |b: u8| Some([b; 32]);
        let a = qp::Endpoint::new(ep.clone(), None, true, rng_seed(1));
        let b = qp::Endpoint::new(ep, Some(Arc::new(server)), true, rng_seed(2));
        let start = Instant::now();
        let mut w = Self {
            a: End::new(a, 1, true),
            b: End::new(b, 2, false),
            link,
            rng: Rng(seed | 1),
            dead: false,
            carried: 0,
            dropped: 0,
            held_back: 0,
            start,
            now: start,
            cfg,
        };
        let qcc = qp::crypto::rustls::QuicClientConfig::try_from(
            tls::client_config(&ka, Some(kb.verifying_key().to_bytes()), tls::ALPN_BUS)
                .expect("client tls"),
        )
        .expect("quic client tls");
        let mut client = qp::ClientConfig::new(Arc::new(qcc));
        client.transport_config(transport);
        let b_addr = w.b.addr;
        let conn =
            w.a.endpoint
                .connect(start, client, b_addr, "oxh-device")
                .expect("connect");
        w.a.conn = Some(conn);
        w
    }

    /// Puts `datagrams` from one end on the link towards the other.
    fn carry(&mut self, to_b: bool, datagrams: Vec<Vec<u8>>) {
        for d in datagrams {
            if self.dead || self.rng.chance(self.link.loss) {
                self.dropped += 1;
                continue;
            }
            self.carried += 1;
            let mut at = self.now + self.link.delay;
            if self.rng.chance(self.link.reorder) {
                self.held_back += 1;
                let jitter = self.link.jitter.as_micros() as u64;
                at += Duration::from_micros(self.rng.next() % jitter.max(1));
            }
            let to = if to_b { &mut self.b } else { &mut self.a };
            to.inbound.push((at, d));
        }
    }

    /// One instant: every arrival due, every timer due, both sockets, until nothing moves;
    /// then the clock jumps to the next event. False when nothing is left to happen.
    fn step(&mut self) -> bool {
        let now = self.now;
        for _ in 0..64 {
            let (from_a, from_b) = (self.a.addr, self.b.addr);
            let due = |e: &mut End| {
                let (now_due, later): (Vec<_>, Vec<_>) =
                    e.inbound.drain(..).partition(|(t, _)| *t <= now);
                e.inbound = later;
                now_due
            };
            let mut moved = false;
            for (_, d) in due(&mut self.b) {
                self.b.receive(now, from_a, d);
                moved = true;
            }
            for (_, d) in due(&mut self.a) {
                self.a.receive(now, from_b, d);
                moved = true;
            }
            let out = self.a.drive(now);
            moved |= !out.is_empty();
            self.carry(true, out);
            let out = self.b.drive(now);
            moved |= !out.is_empty();
            self.carry(false, out);
            if !moved {
                break;
            }
        }
        match [self.a.next_wakeup(), self.b.next_wakeup()]
            .into_iter()
            .flatten()
            .min()
        {
            Some(t) => {
                self.now = t.max(now);
                true
            }
            None => false,
        }
    }

    /// Steps until `done` holds; panics when the run takes more than [`MAX_STEPS`].
    fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..MAX_STEPS {
            if done(self) {
                return;
            }
            if !self.step() {
                break;
            }
        }
        assert!(done(self), "not done after {:?}", self.now - self.start);
    }
}

/// A file of `len` bytes of a known pattern.
fn pattern(len: usize, salt: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 13) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Sends two files, 3 MiB and a bit, then a small one, from a to b over `link`, and checks
/// what b got, the seq numbers and that each `End` completed only after b's ack; the world,
/// for the link's figures.
fn two_files_cross(link: Link, seed: u64) -> World {
    let mut w = World::new(link, seed);
    let big = pattern(3 * MAX_FILE_CHUNK + 12_345, 1);
    let small = pattern(1000, 2);
    for (name, data) in [("dir/big", big.clone()), ("small", small.clone())] {
        w.a.files.push_back(Outgoing {
            name: name.into(),
            data,
            offset: 0,
            begun: false,
        });
    }
    w.run_until(|w| w.a.seen.completed.len() == 2);
    let b = &w.b.seen;
    assert_eq!(
        b.events[0],
        SocketEvent::Bind {
            socket: B_SOCKET,
            name: "files".into(),
            peer_name: "me".into(),
            peer_network_id: "net-a".into(),
            peer_device: "a".into()
        }
    );
    assert_eq!(
        b.events[1..],
        [
            SocketEvent::FileBegin {
                socket: B_SOCKET,
                name: "big".into(),
                size: big.len() as u64
            },
            SocketEvent::FileBegin {
                socket: B_SOCKET,
                name: "small".into(),
                size: small.len() as u64
            }
        ]
    );
    assert_eq!(b.bytes, (big.len() + small.len()) as u64);
    assert_eq!(
        b.ends,
        [
            FilePiece::End {
                checksum: FileHasher::of(&big),
                seq: 0
            },
            FilePiece::End {
                checksum: FileHasher::of(&small),
                seq: 1
            }
        ]
    );
    // Each End completed, with success, after (and because) b wrote its ack.
    assert_eq!(b.acks_sent.iter().map(|a| a.0).collect::<Vec<_>>(), [0, 1]);
    for (seq, result, at) in &w.a.seen.completed {
        let acked = b.acks_sent[*seq as usize].1;
        assert_eq!(result, &Ok(()), "file {seq}");
        assert!(
            *at > acked,
            "file {seq} completed at {at:?}, acked at {acked:?}"
        );
    }
    assert!(w.a.acks.is_empty());
    assert_eq!(
        (w.a.seen.closed.as_ref(), w.b.seen.closed.as_ref()),
        (None, None)
    );
    assert!(w.a.seen.lost.is_none() && w.b.seen.lost.is_none());
    eprintln!(
        "{} datagrams carried, {} dropped, {} held back; done after {:?} of virtual time",
        w.carried,
        w.dropped,
        w.held_back,
        w.now - w.start
    );
    w
}

#[test]
fn a_file_crosses_a_clean_link() {
    let w = two_files_cross(CLEAN, 1);
    assert_eq!((w.dropped, w.held_back), (0, 0));
}

#[test]
fn a_file_crosses_a_lossy_reordering_link() {
    let link = Link {
        loss: 10,
        reorder: 10,
        jitter: Duration::from_millis(15),
        ..CLEAN
    };
    for seed in [7, 8] {
        let w = two_files_cross(link, seed);
        assert!(w.dropped > w.carried / 20 && w.held_back > w.carried / 20);
    }
}

#[test]
fn a_file_crosses_a_lossy_link() {
    let w = two_files_cross(Link { loss: 10, ..CLEAN }, 3);
    assert!(w.dropped > w.carried / 20 && w.held_back == 0);
}

#[test]
fn a_file_crosses_a_reordering_link() {
    let w = two_files_cross(
        Link {
            reorder: 30,
            jitter: Duration::from_millis(20),
            ..CLEAN
        },
        4,
    );
    assert!(w.dropped == 0 && w.held_back > w.carried / 5);
}

#[test]
fn a_peer_gone_silent_mid_file_breaks_the_transfer_on_both_ends() {
    let mut w = World::new(CLEAN, 5);
    let data = pattern(3 * MAX_FILE_CHUNK, 3);
    w.a.files.push_back(Outgoing {
        name: "f".into(),
        data: data.clone(),
        offset: 0,
        begun: false,
    });
    // Once b holds a megabyte, the link goes dead both ways.
    w.run_until(|w| w.b.seen.bytes >= MAX_FILE_CHUNK as u64);
    w.dead = true;
    let silent_from = w.now;
    let got = w.b.seen.bytes;
    assert!(got < data.len() as u64, "b already had everything");
    w.run_until(|w| w.a.seen.lost.is_some() && w.b.seen.lost.is_some());
    eprintln!(
        "silent from {:?}; a lost at {:?}, b at {:?}",
        silent_from - w.start,
        w.a.seen.lost.as_ref().map(|l| l.1 - w.start),
        w.b.seen.lost.as_ref().map(|l| l.1 - w.start)
    );
    // Both ends give up after QUIC's idle timeout, in virtual time.
    for (end, seen) in [("a", &w.a.seen), ("b", &w.b.seen)] {
        let (reason, at) = seen.lost.as_ref().expect("lost");
        assert!(reason.contains("timed out"), "{end}: {reason}");
        let after = *at - silent_from;
        assert!(
            after >= w.cfg.idle_timeout - w.cfg.heartbeat
                && after <= w.cfg.idle_timeout + w.cfg.heartbeat,
            "{end} gave up {after:?} after the link died"
        );
    }
    // b's owner hears the file broke (and discards the part it got); a's End fails.
    assert_eq!(w.b.seen.bytes, got);
    match w.b.seen.ends.as_slice() {
        [FilePiece::Broken { reason }] => {
            assert!(reason.starts_with("transfer broken: "), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(w.b.seen.acks_sent.is_empty());
    match w.a.seen.completed.as_slice() {
        [(0, Err(SessionError::Io(m)), _)] => assert_eq!(m, CLOSED_BEFORE_ACK),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_file_is_skipped_and_its_end_fails_with_the_reason() {
    let link = Link {
        loss: 10,
        reorder: 10,
        jitter: Duration::from_millis(15),
        ..CLEAN
    };
    let mut w = World::new(link, 9);
    for (name, len) in [("../evil", MAX_FILE_CHUNK + 1), ("fine", 10)] {
        w.a.files.push_back(Outgoing {
            name: name.into(),
            data: pattern(len, 4),
            offset: 0,
            begun: false,
        });
    }
    w.run_until(|w| w.a.seen.completed.len() == 2);
    let SocketEvent::FileRefused { reason, .. } = &w.b.seen.events[1] else {
        panic!("{:?}", w.b.seen.events);
    };
    match w.a.seen.completed.as_slice() {
        [(0, Err(SessionError::FileRejected(r)), _), (1, Ok(()), _)] => assert_eq!(r, reason),
        other => panic!("{other:?}"),
    }
    // Only the second file's bytes reached b's owner, under seq 1.
    assert_eq!(w.b.seen.bytes, 10);
    assert!(matches!(w.b.seen.ends[..], [FilePiece::End { seq: 1, .. }]));
}
