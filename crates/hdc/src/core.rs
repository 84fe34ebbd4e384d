//! The hdc session as a state machine: no sockets, no clocks, no tasks. It takes the bytes
//! that arrived and the time, and gives back frames to send, events for the channels' users
//! and the next deadline, as quinn-proto does for QUIC. [`crate::session`] runs it on a real
//! stream; the tests below run two of them over a simulated link in virtual time.
//!
//! What it decides:
//! - **Channels.** Either side opens them; the acceptor's ids carry [`ACCEPTOR_BIT`]. A peer
//!   may not open an id of ours nor reopen a live one (it would take over another channel's
//!   accounting), and may hold at most [`MAX_CHANNELS`]: one more is answered with a Close.
//! - **Credits.** A sender may have [`WINDOW`] bytes of Data that the receiving consumer has
//!   not taken; the receiver grants credit back as its consumer takes bytes. A peer that
//!   sends past twice its window, or makes the session hold more than
//!   [`MAX_SESSION_BUFFERED`] over all channels, is cut off.
//! - **Heartbeat.** A Ping every [`PING_EVERY`]; a session that hears nothing for
//!   [`DEAD_AFTER`] is dead, and so is every channel on it, with the reason.

use crate::frame::{self, Kind, Packet};
use crate::proto::{self, Ctrl, Exit};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Bytes of Data in flight per channel and direction.
pub const WINDOW: usize = 16 * frame::CHUNK;
/// Heartbeat period.
pub const PING_EVERY: Duration = Duration::from_secs(2);
/// Silence after which a session is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(8);
/// Channel ids opened by the accepting side of a connection have this bit set, so both sides
/// may open channels without colliding.
pub const ACCEPTOR_BIT: u32 = 0x8000_0000;
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

/// A frame to write: small ones whole, big ones as header and payload (no copy).
#[derive(Debug)]
pub enum Transmit {
    /// A whole small frame.
    Small(Vec<u8>),
    /// A Data frame's header and its payload.
    Big(frame::Header, Bytes),
}

impl Transmit {
    /// The frame's bytes in one buffer (tests and simulations).
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Transmit::Small(v) => v.clone(),
            Transmit::Big(h, p) => [&h[..], &p[..]].concat(),
        }
    }
}

/// What happened, for the channels' users.
#[derive(Debug)]
pub enum CoreEvent {
    /// The peer opened a channel with this request.
    Opened {
        /// Its id.
        ch: u32,
        /// The Open payload.
        request: Bytes,
    },
    /// Stream bytes arrived; give them back with [`SessionCore::consumed`] once taken.
    Data {
        /// The channel.
        ch: u32,
        /// The bytes.
        data: Bytes,
    },
    /// A control message arrived; it holds `held` bytes until [`SessionCore::consumed`].
    Ctrl {
        /// The channel.
        ch: u32,
        /// The message.
        ctrl: Ctrl,
        /// Bytes it counts against the budgets.
        held: usize,
    },
    /// The peer closed the channel.
    Closed {
        /// The channel.
        ch: u32,
        /// Its exit.
        exit: Exit,
    },
    /// The channel may send more ([`SessionCore::credit`] grew).
    Credit {
        /// The channel.
        ch: u32,
    },
    /// The session died; every channel that was open ended with it.
    Dead {
        /// Why.
        reason: String,
        /// Whether [`SessionCore::kill`] was called (the stream ended, or the owner shut it
        /// down), rather than the core finding a fault (bad bytes, silence, a limit).
        killed: bool,
        /// The channels that were open.
        chans: Vec<u32>,
    },
}

/// Why a send was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The channel lacks the credit for that many bytes now; wait for [`CoreEvent::Credit`].
    NoCredit,
    /// The channel or the session is closed (the reason).
    Closed(String),
}

#[derive(Debug, Default)]
struct Chan {
    /// Bytes we may still send.
    credit: usize,
    /// Bytes received and not yet taken by the consumer.
    held: usize,
    /// Bytes taken and not yet granted back.
    ungranted: usize,
}

/// One session's whole state.
#[derive(Debug)]
pub struct SessionCore {
    base: u32,
    next: u32,
    chans: HashMap<u32, Chan>,
    held_total: usize,
    out: VecDeque<Transmit>,
    events: VecDeque<CoreEvent>,
    last_heard: Instant,
    next_ping: Instant,
    pings: u64,
    dead: Option<String>,
    rx_bytes: u64,
}

impl SessionCore {
    /// A session that starts at `now`; `acceptor`: this side accepted the connection.
    pub fn new(acceptor: bool, now: Instant) -> Self {
        SessionCore {
            base: if acceptor { ACCEPTOR_BIT } else { 0 },
            next: 1,
            chans: HashMap::new(),
            held_total: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            last_heard: now,
            next_ping: now + PING_EVERY,
            pings: 0,
            dead: None,
            rx_bytes: 0,
        }
    }

    /// Why the session died, once it has.
    pub fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    /// Payload bytes received so far.
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes
    }

    /// Bytes held for consumers now, over every channel.
    pub fn held(&self) -> usize {
        self.held_total
    }

    /// Channels open now.
    pub fn open_channels(&self) -> usize {
        self.chans.len()
    }

    /// Bytes channel `ch` may send now.
    pub fn credit(&self, ch: u32) -> usize {
        self.chans.get(&ch).map(|c| c.credit).unwrap_or(0)
    }

    /// The next frame to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Whether frames wait to be written.
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next event for the channels' users.
    pub fn poll_event(&mut self) -> Option<CoreEvent> {
        self.events.pop_front()
    }

    /// When [`SessionCore::on_timeout`] is due next (never, once dead).
    pub fn deadline(&self) -> Option<Instant> {
        if self.dead.is_some() {
            return None;
        }
        Some(self.next_ping.min(self.last_heard + DEAD_AFTER))
    }

    /// Time passed: sends the heartbeat, or finds the peer silent too long.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.dead.is_some() {
            return;
        }
        if now >= self.last_heard + DEAD_AFTER {
            self.die(format!("no heartbeat for {DEAD_AFTER:?}"), false);
            return;
        }
        if now >= self.next_ping {
            self.pings += 1;
            self.small(Kind::Ping, 0, &self.pings.to_le_bytes());
            // The next beat is a period after this one, or after now when time jumped.
            self.next_ping = (self.next_ping + PING_EVERY).max(now + PING_EVERY / 2);
        }
    }

    /// Bytes arrived at `now`: takes every whole frame off the front of `buf` (what remains
    /// is the start of the next). Bad bytes kill the session.
    pub fn receive(&mut self, buf: &mut BytesMut, now: Instant) {
        if self.dead.is_some() {
            buf.clear();
            return;
        }
        self.last_heard = now;
        loop {
            match frame::decode(buf) {
                Ok(Some(p)) => {
                    if let Err(reason) = self.dispatch(p) {
                        self.die(reason, false);
                        buf.clear();
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.die(e.to_string(), false);
                    buf.clear();
                    return;
                }
            }
        }
    }

    /// The stream ended or failed, or the owner ends the session: dead with `reason`.
    pub fn kill(&mut self, reason: impl Into<String>) {
        self.die(reason.into(), true);
    }

    fn die(&mut self, reason: String, killed: bool) {
        if self.dead.is_some() {
            return;
        }
        let chans: Vec<u32> = self.chans.drain().map(|(id, _)| id).collect();
        self.held_total = 0;
        self.dead = Some(reason.clone());
        self.events.push_back(CoreEvent::Dead {
            reason,
            killed,
            chans,
        });
    }

    /// Opens a channel with `request`; its id.
    pub fn open(&mut self, request: &[u8]) -> Result<u32, SendError> {
        self.alive()?;
        let mut id = 0;
        while id & !ACCEPTOR_BIT == 0 || self.chans.contains_key(&id) {
            id = (self.next & !ACCEPTOR_BIT) | self.base;
            self.next = self.next.wrapping_add(1);
        }
        self.chans.insert(id, Chan::fresh());
        self.small(Kind::Open, id, request);
        Ok(id)
    }

    /// Sends `data` (at most [`frame::MAX_PAYLOAD`]) on `ch`, if its credit covers it.
    pub fn send_data(&mut self, ch: u32, data: Bytes) -> Result<(), SendError> {
        self.alive()?;
        let c = self.chans.get_mut(&ch).ok_or_else(closed)?;
        if c.credit < data.len() {
            return Err(SendError::NoCredit);
        }
        c.credit -= data.len();
        let h = frame::header(Kind::Data, ch, data.len());
        self.out.push_back(Transmit::Big(h, data));
        Ok(())
    }

    /// Sends a control message on `ch`.
    pub fn send_ctrl(&mut self, ch: u32, c: &Ctrl) -> Result<(), SendError> {
        self.alive()?;
        if !self.chans.contains_key(&ch) {
            return Err(closed());
        }
        self.small(Kind::Ctrl, ch, &proto::to_bytes(c));
        Ok(())
    }

    /// Ends `ch` with `exit` (once; a channel already gone is left alone). Returns whether it
    /// was open.
    pub fn close(&mut self, ch: u32, exit: &Exit) -> bool {
        match self.chans.remove(&ch) {
            Some(c) => {
                self.held_total -= c.held;
                if self.dead.is_none() {
                    self.small(Kind::Close, ch, &proto::to_bytes(exit));
                }
                true
            }
            None => false,
        }
    }

    /// The consumer of `ch` took `n` held bytes. Credit goes back to the peer once a quarter
    /// window has been taken, or at once with `flush` (the consumer has nothing more queued,
    /// so the peer should not wait for the rest of the quarter).
    pub fn consumed(&mut self, ch: u32, n: usize, data: bool, flush: bool) {
        let Some(c) = self.chans.get_mut(&ch) else {
            // A channel already gone gave its bytes back when it went.
            return;
        };
        let n = n.min(c.held);
        c.held -= n;
        self.held_total -= n;
        if !data {
            return;
        }
        c.ungranted += n;
        if c.ungranted > 0 && (c.ungranted >= WINDOW / 4 || flush) && self.dead.is_none() {
            let g = std::mem::take(&mut c.ungranted) as u32;
            self.small(Kind::Credit, ch, &g.to_le_bytes());
        }
    }

    fn alive(&self) -> Result<(), SendError> {
        match &self.dead {
            Some(r) => Err(SendError::Closed(r.clone())),
            None => Ok(()),
        }
    }

    fn small(&mut self, kind: Kind, ch: u32, payload: &[u8]) {
        self.out
            .push_back(Transmit::Small(frame::encode(kind, ch, payload)));
    }

    /// Counts `n` more bytes held on `ch`; an error when the peer went past its window or the
    /// session's budget.
    fn hold(&mut self, ch: u32, n: usize) -> Result<bool, String> {
        let Some(c) = self.chans.get_mut(&ch) else {
            // Bytes for a channel that closed meanwhile: dropped.
            return Ok(false);
        };
        c.held += n;
        self.held_total += n;
        if c.held > 2 * WINDOW {
            return Err("peer sent past its flow-control window".into());
        }
        if self.held_total > MAX_SESSION_BUFFERED {
            return Err(format!(
                "peer made this session hold {} bytes for consumers (limit \
                 {MAX_SESSION_BUFFERED})",
                self.held_total
            ));
        }
        Ok(true)
    }

    fn dispatch(&mut self, p: Packet) -> Result<(), String> {
        let ch = p.channel;
        match p.kind {
            Kind::Open => {
                if ch & ACCEPTOR_BIT == self.base || ch & !ACCEPTOR_BIT == 0 {
                    return Err(format!("peer opened channel {ch:#x} of ours"));
                }
                if self.chans.contains_key(&ch) {
                    return Err(format!("peer reopened channel {ch:#x}"));
                }
                let open = self.chans.len();
                if open >= MAX_CHANNELS {
                    let exit = Exit::fail(format!(
                        "[Fail]too many channels: {open} are open on this session (limit \
                         {MAX_CHANNELS}); close some and retry"
                    ));
                    self.small(Kind::Close, ch, &proto::to_bytes(&exit));
                    return Ok(());
                }
                self.chans.insert(ch, Chan::fresh());
                self.events.push_back(CoreEvent::Opened {
                    ch,
                    request: p.payload,
                });
            }
            Kind::Data => {
                self.rx_bytes += p.payload.len() as u64;
                if self.hold(ch, p.payload.len())? {
                    self.events.push_back(CoreEvent::Data {
                        ch,
                        data: p.payload,
                    });
                }
            }
            Kind::Ctrl => {
                let ctrl: Ctrl =
                    proto::from_bytes(&p.payload).map_err(|e| format!("malformed message: {e}"))?;
                // Control messages take no credit, but they are held until read: they count
                // against the channel's window and the session's budget like data.
                let held = p.payload.len();
                if self.hold(ch, held)? {
                    self.events.push_back(CoreEvent::Ctrl { ch, ctrl, held });
                }
            }
            Kind::Close => {
                let exit: Exit =
                    proto::from_bytes(&p.payload).unwrap_or_else(|_| Exit::fail("closed"));
                if let Some(c) = self.chans.remove(&ch) {
                    self.held_total -= c.held;
                    self.events.push_back(CoreEvent::Closed { ch, exit });
                }
            }
            Kind::Credit => {
                let n = frame::credit_of(&p) as usize;
                if let Some(c) = self.chans.get_mut(&ch)
                    && c.credit + n <= 2 * WINDOW
                {
                    c.credit += n;
                    self.events.push_back(CoreEvent::Credit { ch });
                }
            }
            Kind::Ping => self.small(Kind::Pong, 0, &p.payload),
            Kind::Pong => {}
            Kind::Hello => return Err("second hello".into()),
        }
        Ok(())
    }
}

impl Chan {
    fn fresh() -> Chan {
        Chan {
            credit: WINDOW,
            ..Chan::default()
        }
    }
}

fn closed() -> SendError {
    SendError::Closed("channel closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;

    /// Two cores joined by a simulated, in-order link (TCP's), in virtual time.
    struct Link {
        now: Instant,
        a: SessionCore,
        b: SessionCore,
        /// Bytes in flight towards a and b.
        to_a: BytesMut,
        to_b: BytesMut,
        /// What each side has read and not yet decoded (a frame's start).
        rx_a: BytesMut,
        rx_b: BytesMut,
        /// A side that went silent sends nothing more.
        a_silent: bool,
        /// Deliver this many bytes per step at most (frames split across reads).
        mtu: usize,
    }

    impl Link {
        fn new() -> Link {
            let now = Instant::now();
            Link {
                now,
                a: SessionCore::new(false, now),
                b: SessionCore::new(true, now),
                to_a: BytesMut::new(),
                to_b: BytesMut::new(),
                rx_a: BytesMut::new(),
                rx_b: BytesMut::new(),
                a_silent: false,
                mtu: usize::MAX,
            }
        }

        /// Moves every frame each side has written to the other, `mtu` bytes a read.
        fn pump(&mut self) {
            for _ in 0..1_000_000 {
                while let Some(t) = self.a.poll_transmit() {
                    if !self.a_silent {
                        self.to_b.extend_from_slice(&t.to_vec());
                    }
                }
                while let Some(t) = self.b.poll_transmit() {
                    self.to_a.extend_from_slice(&t.to_vec());
                }
                if self.to_a.is_empty() && self.to_b.is_empty() {
                    return;
                }
                let n = self.to_b.len().min(self.mtu);
                if n > 0 {
                    let piece = self.to_b.split_to(n);
                    self.rx_b.extend_from_slice(&piece);
                    self.b.receive(&mut self.rx_b, self.now);
                }
                let n = self.to_a.len().min(self.mtu);
                if n > 0 {
                    let piece = self.to_a.split_to(n);
                    self.rx_a.extend_from_slice(&piece);
                    self.a.receive(&mut self.rx_a, self.now);
                }
            }
            panic!("the link never went quiet");
        }

        /// Advances virtual time by `d` in steps, firing each side's deadlines.
        fn advance(&mut self, d: Duration) {
            let end = self.now + d;
            loop {
                let next = [self.a.deadline(), self.b.deadline(), Some(end)]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(end);
                self.now = next.max(self.now);
                self.a.on_timeout(self.now);
                self.b.on_timeout(self.now);
                self.pump();
                if self.now >= end {
                    return;
                }
            }
        }
    }

    fn events(c: &mut SessionCore) -> Vec<CoreEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn req() -> Vec<u8> {
        proto::to_bytes(&Request::Boot)
    }

    #[test]
    fn a_quiet_session_lives_on_heartbeats_for_a_day() {
        let mut l = Link::new();
        l.advance(Duration::from_secs(24 * 3600));
        assert!(l.a.dead().is_none() && l.b.dead().is_none());
    }

    #[test]
    fn a_peer_gone_silent_is_dead_after_exactly_the_bound() {
        let mut l = Link::new();
        let ch = l.a.open(&req()).unwrap();
        l.pump();
        assert!(matches!(&events(&mut l.b)[..], [CoreEvent::Opened { .. }]));
        l.advance(Duration::from_secs(5));
        // The last thing b hears from a, now; then a says nothing more.
        l.a.send_ctrl(ch, &Ctrl::Text("last".into())).unwrap();
        l.pump();
        let silent_from = l.now;
        l.a_silent = true;
        // Just before the bound, b still waits; at it, b gives up and ends the channel.
        l.advance(DEAD_AFTER - Duration::from_millis(1));
        assert!(
            l.b.dead().is_none(),
            "dead before {DEAD_AFTER:?} of silence"
        );
        l.advance(Duration::from_millis(1));
        let why = l.b.dead().expect("dead at the bound").to_string();
        assert!(why.contains("no heartbeat"), "{why}");
        assert!(l.now - silent_from <= DEAD_AFTER);
        let ev = events(&mut l.b);
        assert!(
            matches!(ev.last(), Some(CoreEvent::Dead { chans, .. }) if chans == &[ch]),
            "{ev:?}"
        );
        assert_eq!(l.b.held(), 0);
        // A dead session takes nothing more.
        assert!(matches!(l.b.open(&req()), Err(SendError::Closed(_))));
    }

    #[test]
    fn credits_hold_a_sender_to_its_window_until_the_consumer_takes_bytes() {
        let mut l = Link::new();
        let ch = l.a.open(&req()).unwrap();
        l.pump();
        events(&mut l.b);
        let piece = Bytes::from(vec![3u8; frame::CHUNK]);
        let mut sent = 0;
        while l.a.send_data(ch, piece.clone()).is_ok() {
            sent += piece.len();
        }
        assert_eq!(sent, WINDOW / frame::CHUNK * frame::CHUNK);
        assert_eq!(l.a.send_data(ch, piece.clone()), Err(SendError::NoCredit));
        l.pump();
        let got: usize = events(&mut l.b)
            .iter()
            .map(|e| match e {
                CoreEvent::Data { data, .. } => data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(got, sent);
        assert_eq!(l.b.held(), sent);
        // Nothing comes back until the consumer takes bytes: time alone grants nothing.
        l.advance(Duration::from_secs(3));
        assert_eq!(l.a.credit(ch), WINDOW - sent);
        // Taking a quarter window grants it back.
        l.b.consumed(ch, WINDOW / 4, true, false);
        l.pump();
        assert_eq!(l.a.credit(ch), WINDOW - sent + WINDOW / 4);
        assert!(
            events(&mut l.a)
                .iter()
                .any(|e| matches!(e, CoreEvent::Credit { ch: c } if *c == ch))
        );
        assert!(l.a.send_data(ch, piece).is_ok());
    }

    #[test]
    fn frames_split_into_small_reads_arrive_whole_and_in_order() {
        let mut l = Link::new();
        l.mtu = 7;
        let ch = l.a.open(&req()).unwrap();
        for i in 0..50u8 {
            l.a.send_data(ch, Bytes::from(vec![i; 100 + i as usize]))
                .unwrap();
        }
        l.a.send_ctrl(ch, &Ctrl::Text("done".into())).unwrap();
        l.a.close(ch, &Exit::ok());
        l.pump();
        let ev = events(&mut l.b);
        assert!(matches!(ev[0], CoreEvent::Opened { .. }));
        for (i, e) in ev[1..51].iter().enumerate() {
            match e {
                CoreEvent::Data { data, .. } => {
                    assert_eq!(data.len(), 100 + i);
                    assert!(data.iter().all(|b| *b == i as u8));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(&ev[51], CoreEvent::Ctrl { ctrl: Ctrl::Text(t), .. } if t == "done"));
        assert!(matches!(&ev[52], CoreEvent::Closed { exit, .. } if exit.code == 0));
        assert_eq!(l.b.held(), 0, "a closed channel holds nothing");
    }

    #[test]
    fn garbage_kills_the_session_and_ends_every_channel() {
        let mut c = SessionCore::new(true, Instant::now());
        let mut buf = BytesMut::from(&frame::encode(Kind::Open, 3, &req())[..]);
        c.receive(&mut buf, Instant::now());
        assert!(matches!(
            c.poll_event(),
            Some(CoreEvent::Opened { ch: 3, .. })
        ));
        let mut junk = BytesMut::from(&[0xffu8; 32][..]);
        c.receive(&mut junk, Instant::now());
        assert!(c.dead().unwrap().contains("malformed"));
        assert!(matches!(c.poll_event(), Some(CoreEvent::Dead { chans, .. }) if chans == [3]));
    }

    #[test]
    fn a_second_hello_or_a_peer_overrunning_its_window_is_cut() {
        let mut c = SessionCore::new(false, Instant::now());
        let mut buf = BytesMut::from(&frame::encode(Kind::Hello, 0, b"")[..]);
        c.receive(&mut buf, Instant::now());
        assert!(c.dead().unwrap().contains("second hello"));

        let mut c = SessionCore::new(true, Instant::now());
        let mut buf = BytesMut::from(&frame::encode(Kind::Open, 1, &req())[..]);
        let chunk = vec![0u8; frame::MAX_PAYLOAD];
        for _ in 0..=(2 * WINDOW / frame::MAX_PAYLOAD) {
            buf.extend_from_slice(&frame::encode(Kind::Data, 1, &chunk));
        }
        c.receive(&mut buf, Instant::now());
        assert!(c.dead().unwrap().contains("flow-control window"));
    }
}
