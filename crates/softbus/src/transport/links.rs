//! The bus's adapter over the bus centre's core ([`crate::center`]): it reports connections
//! registered and closed, carries out the dials, duplicate closes and events the core asks
//! for, and runs the core's timers. The decisions are the core's.

use super::wire::{MAX_CONTROL_FRAME, read_frame};
use super::{
    Bus, BusError, BusEvent, CLOSE_BYE, CLOSE_DUPLICATE, Control, IncomingStream, NodeInfo, State,
    conn_id,
};
use crate::center::{Action, Center, DUPLICATE_GRACE, Registration};
use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::Notify;

/// The timer task holds the bus weakly; a dropped bus wakes it so that it ends.
impl Drop for Bus {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// The peer closed `conn` as the losing one of two simultaneous dials.
pub(super) fn closed_as_duplicate(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(ref c))
            if c.error_code == quinn::VarInt::from_u32(CLOSE_DUPLICATE)
    )
}

impl Bus {
    /// Gives the bus centre an input (the soft bus service's discoveries, static peers and
    /// trust) and carries out what it asks; `None` if its lock is poisoned.
    pub(crate) fn center<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Center, Instant) -> T,
    ) -> Option<T> {
        self.apply(|s, now| f(&mut s.core, now))
    }

    /// Runs `f` on the state, then the core's actions, under one lock so that events keep
    /// the core's order; wakes the timer task, since the deadline may have moved.
    pub(super) fn apply<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State, Instant) -> T,
    ) -> Option<T> {
        let out = self.apply_quiet(f);
        self.wake.notify_one();
        out
    }

    fn apply_quiet<T>(self: &Arc<Self>, f: impl FnOnce(&mut State, Instant) -> T) -> Option<T> {
        let mut s = self.state.lock().ok()?;
        let out = f(&mut s, Instant::now());
        while let Some(a) = s.core.poll() {
            match a {
                Action::Dial { addr, expected } => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.connect(addr, expected).await {
                            tracing::debug!(tag = "softbus", public_addr = %addr, "dial failed: {e}");
                        }
                    });
                }
                Action::CloseDuplicate(id) => {
                    if let Some(c) = s.conns.get(&id) {
                        c.close(quinn::VarInt::from_u32(CLOSE_DUPLICATE), b"duplicate");
                    }
                }
                Action::Emit(ev) => self.emit(ev),
            }
        }
        // Keep exactly the connections the core's links name.
        let linked: HashSet<_> = s.core.links().map(|(_, l)| l.conn).collect();
        s.conns.retain(|id, _| linked.contains(id));
        Some(out)
    }

    fn emit(&self, ev: BusEvent) {
        let (i, what) = match &ev {
            BusEvent::Online(i) => (i, "device online"),
            BusEvent::Offline(i) => (i, "device offline"),
            _ => {
                let _ = self.events.send(ev);
                return;
            }
        };
        tracing::info!(
            tag = "softbus",
            public_name = i.name.as_str(),
            public_network_id = i.network_id.as_str(),
            "{what}"
        );
        let _ = self.events.send(ev);
    }

    /// The core's timers: graces that end, candidates due. Ends with the bus.
    pub(super) async fn drive(bus: Weak<Bus>, wake: Arc<Notify>) {
        loop {
            let deadline = match bus.upgrade() {
                Some(b) => b.state.lock().ok().and_then(|s| s.core.deadline()),
                None => return,
            };
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep_until(d.into()) => {}
                    }
                }
                None => wake.notified().await,
            }
            let Some(b) = bus.upgrade() else { return };
            // Quiet: waking itself would spin.
            b.apply_quiet(|s, now| s.core.on_timeout(now));
        }
    }

    /// A connection finished its Hello exchange: the core keeps it or closes it as a
    /// duplicate; a kept one is served until it ends.
    pub(super) fn register(
        self: &Arc<Self>,
        key: [u8; 32],
        conn: quinn::Connection,
        info: NodeInfo,
        dialer: [u8; 32],
    ) {
        let id = conn_id(&conn);
        let kept = self.apply(|s, now| {
            // A connection that ended before its watcher said so is not compared with the new
            // one: the core hears of its end first.
            if let Some(old) = s.core.link(&key).map(|l| l.conn)
                && old != id
                && let Some(c) = s.conns.get(&old)
                && c.close_reason().is_some()
            {
                let dup = closed_as_duplicate(c);
                s.core.closed(&key, old, dup, now);
            }
            s.conns.insert(id, conn.clone());
            let r = Registration {
                key,
                conn: id,
                info,
                dialer,
                remote: conn.remote_address(),
            };
            s.core.registered(r, now)
        });
        self.registered.notify_waiters();
        if kept == Some(true) {
            tokio::spawn(self.clone().watch(key, conn));
        }
    }

    /// Serves one connection until it ends: info updates, incoming sessions, then the core
    /// hears that it closed (OFFLINE, or a grace if the peer closed it as a duplicate).
    async fn watch(self: Arc<Self>, key: [u8; 32], conn: quinn::Connection) {
        let id = conn_id(&conn);
        loop {
            tokio::select! {
                _ = conn.closed() => break,
                s = conn.accept_uni() => match s {
                    Ok(mut s) => {
                        match read_frame::<_, Control>(&mut s, MAX_CONTROL_FRAME).await {
                            Ok(Some(Control::InfoUpdate(new))) => {
                                self.apply(|s, _| s.core.info_update(&key, id, new));
                            }
                            Ok(Some(Control::Unbind)) => {
                                if let Some(info) = self.peer_info(&key) {
                                    let _ = self.events.send(BusEvent::Unbound { info, key });
                                }
                                conn.close(quinn::VarInt::from_u32(CLOSE_BYE), b"unbound");
                            }
                            _ => {}
                        }
                    }
                    Err(_) => break,
                },
                s = conn.accept_bi() => match s {
                    Ok((send, recv)) => {
                        let from = self.peer_info(&key);
                        if let Some(from) = from {
                            let _ = self.streams_tx.send(IncomingStream { from, send, recv }).await;
                        }
                    }
                    Err(_) => break,
                },
            }
        }
        let dup = closed_as_duplicate(&conn);
        self.apply(|s, now| s.core.closed(&key, id, dup, now));
    }

    /// The info of the live connection the peer `key` won the duplicate-dial tie-break with,
    /// once it is registered (at most [`DUPLICATE_GRACE`]); else `err`.
    pub(super) async fn replacement(
        &self,
        key: &[u8; 32],
        err: BusError,
    ) -> Result<NodeInfo, BusError> {
        self.within_grace(|| {
            let s = self.state.lock().ok()?;
            let l = s.core.link(key).filter(|l| l.is_live())?;
            let live = s.conns.get(&l.conn)?.close_reason().is_none();
            live.then(|| l.info.clone())
        })
        .await
        .ok_or(err)
    }

    /// What `found` gives, checked now and after every registration, for at most
    /// [`DUPLICATE_GRACE`].
    async fn within_grace<T>(&self, mut found: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = tokio::time::sleep(DUPLICATE_GRACE);
        tokio::pin!(deadline);
        loop {
            let woken = self.registered.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(v) = found() {
                return Some(v);
            }
            tokio::select! {
                _ = woken => {}
                _ = &mut deadline => return None,
            }
        }
    }

    pub(super) fn peer_info(&self, key: &[u8; 32]) -> Option<NodeInfo> {
        let s = self.state.lock().ok()?;
        s.core.link(key).map(|l| l.info.clone())
    }
}
