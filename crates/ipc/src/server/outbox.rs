//! The write side of a connection: replies and events, written at once or queued for the
//! writer task.

use bytes::{Buf, BytesMut};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Notify, mpsc};

/// Most bytes of events that may wait unsent for one client; past this a slow reader's events
/// are refused (`push_event` returns false) while replies still queue.
pub const MAX_PENDING_EVENT_BYTES: usize = 8 << 20;

#[derive(Clone)]
pub(super) enum Sink {
    Socket(Arc<Outbox>),
    Channel(mpsc::UnboundedSender<Vec<u8>>),
}

/// The write side of a connection. A frame is written straight from the task that produced
/// it when nothing is queued (no hop through a writer task: a reply costs one syscall); what
/// the socket does not take at once is queued, in order, for the writer task to flush.
pub(super) struct Outbox {
    pub(super) wr: OwnedWriteHalf,
    pub(super) q: Mutex<OutQ>,
    pub(super) notify: Notify,
    /// Signalled when queued bytes were written, for senders waiting for room.
    pub(super) room: Notify,
}

#[derive(Default)]
pub(super) struct OutQ {
    pub(super) buf: BytesMut,
    pub(super) closed: bool,
    pub(super) close_after_flush: bool,
}

impl Outbox {
    /// Queues or writes a frame; false once the connection is closed.
    pub(super) fn send(&self, frame: &[u8], is_event: bool) -> bool {
        self.send_vectored(&[frame], is_event)
    }

    /// Queues or writes a frame given in pieces (header, then body parts): when nothing is
    /// queued they go out in one writev, so a bulk body is not copied into a frame first;
    /// only what the socket does not take is copied into the queue.
    pub(super) fn send_vectored(&self, pieces: &[&[u8]], is_event: bool) -> bool {
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
    pub(super) fn send_last(&self, frame: &[u8]) {
        self.send(frame, false);
        if let Ok(mut q) = self.q.lock() {
            q.close_after_flush = true;
        }
        self.notify.notify_one();
    }

    pub(super) fn close(&self) {
        if let Ok(mut q) = self.q.lock() {
            q.closed = true;
        }
        self.notify.notify_one();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.q.lock().map(|q| q.closed).unwrap_or(true)
    }

    /// Bytes queued and not yet written.
    pub(super) fn queued(&self) -> usize {
        self.q.lock().map(|q| q.buf.len()).unwrap_or(0)
    }

    /// The writer task: flushes whatever [`Outbox::send`] could not write at once.
    pub(super) async fn run_writer(self: Arc<Self>) {
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
