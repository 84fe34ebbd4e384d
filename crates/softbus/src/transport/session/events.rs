//! Where a socket's events go: a queue the owner pulls, or a sink the reader delivers to.

use crate::proto::SocketEvent;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where a socket's events go. Either way a client that does not keep up stops the socket's
/// reader, and QUIC flow control then slows the sender (no unbounded queue).
#[derive(Clone)]
pub enum EventTx {
    /// A bounded queue, for an owner that pulls events itself (tests, in-process users).
    Queue(mpsc::Sender<SocketEvent>),
    /// Delivered by the socket's reader itself, with no hand-off to another task: each
    /// hand-off is a task wake-up, which costs more than the rest of a message's trip.
    Sink(Arc<dyn EventSink>),
}

/// The receiving end of [`EventTx::Sink`]: the daemon's IPC connection to the owner.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Delivers an event, waiting while the owner is behind; false once the owner is gone.
    async fn deliver(&self, ev: SocketEvent) -> bool;
    /// Delivers an event if that needs no waiting; false if dropped or the owner is gone.
    fn try_deliver(&self, ev: SocketEvent) -> bool;
    /// True once the owner is gone.
    fn is_closed(&self) -> bool;
}

/// The owner of an [`EventTx`] is gone.
#[derive(Debug)]
pub struct Gone;

impl EventTx {
    /// Delivers an event, waiting while the owner is behind.
    pub async fn send(&self, ev: SocketEvent) -> Result<(), Gone> {
        match self {
            EventTx::Queue(q) => q.send(ev).await.map_err(|_| Gone),
            EventTx::Sink(s) => s.deliver(ev).await.then_some(()).ok_or(Gone),
        }
    }

    /// Delivers an event if that needs no waiting.
    pub fn try_send(&self, ev: SocketEvent) -> Result<(), Gone> {
        match self {
            EventTx::Queue(q) => q.try_send(ev).map_err(|_| Gone),
            EventTx::Sink(s) => s.try_deliver(ev).then_some(()).ok_or(Gone),
        }
    }

    /// True once the owner is gone.
    pub fn is_closed(&self) -> bool {
        match self {
            EventTx::Queue(q) => q.is_closed(),
            EventTx::Sink(s) => s.is_closed(),
        }
    }
}

/// Events queued per listener or socket before its reader waits.
pub const EVENT_QUEUE: usize = 16;

/// A new event queue for a listener or socket.
pub fn event_channel() -> (EventTx, mpsc::Receiver<SocketEvent>) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    (EventTx::Queue(tx), rx)
}
