//! The remote file protocol on a link between two file daemons: one bus socket per
//! (viewer, owner) pair, each message one frame ([`crate::proto`]).
//!
//! - [`serve_link`]: the owner's side, running each peer call on a blocking thread with at
//!   most [`MAX_IN_FLIGHT`] at once (past that it stops reading, and the bus's flow control
//!   holds the peer back).
//! - [`Remote`]: the viewer's side, a blocking client for the FUSE threads; each call waits at
//!   most [`CALL_TIMEOUT`], and every call fails at once with EIO when the link closes (the
//!   peer went OFFLINE), so nothing hangs on a device that is gone.
//!
//! The links are plain channels of messages: the daemon carries them on the soft bus, the
//! tests on a pair of channels.

use crate::proto::{
    Answer, Call, FrameError, MAX_IN_FLIGHT, Reply, Request, decode_frame, encode, errno,
};
use crate::serve::Server;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// The longest one call waits for its answer before the link is taken as broken. A peer
/// that goes away is noticed sooner, by the bus (its OFFLINE time) closing the link.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one peer's calls from `rx` (one frame a message), answering on `tx`, until either
/// ends or the peer sends something that is not a call (a protocol error ends the link).
pub async fn serve_link(
    server: Arc<Server>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(msg) = rx.recv().await {
        let call: Call = match decode_frame(&msg) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(tag = "hmdfs", "a peer's link ends: {e}");
                return;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (s, tx) = (server.clone(), tx.clone());
        tokio::spawn(async move {
            let id = call.id;
            let reply = tokio::task::spawn_blocking(move || s.call(call.req))
                .await
                .unwrap_or(Reply::Error(errno::EIO));
            let answer = encode(&Answer { id, reply }).or_else(|_| {
                encode(&Answer {
                    id,
                    reply: Reply::Error(errno::EIO),
                })
            });
            if let Ok(bytes) = answer {
                let _ = tx.send(bytes).await;
            }
            drop(permit);
        });
    }
}

/// The viewer's end of a link to one peer's file daemon.
pub struct Remote {
    out: mpsc::Sender<Vec<u8>>,
    state: Mutex<State>,
    /// Wakes callers waiting for a slot among [`MAX_IN_FLIGHT`].
    room: Condvar,
    next: AtomicU64,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, std::sync::mpsc::SyncSender<Reply>>,
    closed: bool,
}

impl Remote {
    /// A client whose frames go out on the returned queue (the link's sending side).
    pub fn new() -> (Arc<Self>, mpsc::Receiver<Vec<u8>>) {
        let (out, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let r = Arc::new(Self {
            out,
            state: Mutex::new(State::default()),
            room: Condvar::new(),
            next: AtomicU64::new(1),
        });
        (r, rx)
    }

    /// One message from the peer: the answer to a pending call. An answer to no call is
    /// dropped; a message that is not an answer is an error (the caller ends the link).
    pub fn on_message(&self, msg: &[u8]) -> Result<(), FrameError> {
        let a: Answer = decode_frame(msg)?;
        if let Ok(mut s) = self.state.lock()
            && let Some(tx) = s.pending.remove(&a.id)
        {
            let _ = tx.try_send(a.reply);
            self.room.notify_one();
        }
        Ok(())
    }

    /// The link is gone: every pending and later call fails with EIO.
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
            s.pending.clear();
        }
        self.room.notify_all();
    }

    /// Whether the link is gone.
    pub fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.closed).unwrap_or(true) || self.out.is_closed()
    }

    /// Calls the peer and waits for its reply (or EIO: the link closed or the call timed
    /// out). Blocks: call it from a plain thread (FUSE's) or `spawn_blocking`.
    pub fn call(&self, req: Request) -> Result<Reply, i32> {
        self.start(req)?.wait(self)
    }

    /// Sends a call without waiting for its answer, so that several are in flight on the
    /// link at once (read-ahead); [`Pending::wait`] takes the answer. Blocks only while
    /// [`MAX_IN_FLIGHT`] calls are out already.
    pub fn start(&self, req: Request) -> Result<Pending, i32> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let frame = encode(&Call { id, req }).map_err(|_| errno::EINVAL)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let mut s = self.state.lock().map_err(|_| errno::EIO)?;
            while !s.closed && s.pending.len() >= MAX_IN_FLIGHT {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(errno::EIO);
                }
                s = self.room.wait_timeout(s, left).map_err(|_| errno::EIO)?.0;
            }
            if s.closed {
                return Err(errno::EIO);
            }
            s.pending.insert(id, tx);
        }
        if self.out.blocking_send(frame).is_err() {
            self.close();
            return Err(errno::EIO);
        }
        Ok(Pending { rx, deadline })
    }

    /// [`Remote::call`] from async code.
    pub fn call_async(
        self: &Arc<Self>,
        req: Request,
    ) -> impl std::future::Future<Output = Result<Reply, i32>> + Send + 'static {
        let me = self.clone();
        async move {
            tokio::task::spawn_blocking(move || me.call(req))
                .await
                .unwrap_or(Err(errno::EIO))
        }
    }
}

/// A call in flight on a [`Remote`]: its answer, once the peer gives it.
pub struct Pending {
    rx: std::sync::mpsc::Receiver<Reply>,
    deadline: Instant,
}

impl Pending {
    /// The answer if it is here (EIO if the link closed), without waiting.
    pub fn try_take(&self) -> Option<Result<Reply, i32>> {
        match self.rx.try_recv() {
            Ok(reply) => Some(Ok(reply)),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Err(errno::EIO)),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
        }
    }

    /// Waits for the answer (or EIO: the link closed or the call timed out, which closes
    /// `remote`, the link it was sent on).
    pub fn wait(self, remote: &Remote) -> Result<Reply, i32> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(reply) => Ok(reply),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(errno::EIO),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    tag = "hmdfs",
                    "a peer did not answer in {CALL_TIMEOUT:?}: its link is closed"
                );
                remote.close();
                Err(errno::EIO)
            }
        }
    }
}

/// A client and a server joined by channels, as the bus joins them; `cut` ends the link.
#[cfg(test)]
pub(crate) fn pair(root: &std::path::Path) -> (Arc<Remote>, tokio::sync::oneshot::Sender<()>) {
    let server = Arc::new(Server::new(root).unwrap());
    let (remote, mut out) = Remote::new();
    let (to_server, from_client) = mpsc::channel(8);
    let (to_client, mut from_server) = mpsc::channel::<Vec<u8>>(8);
    let (cut, mut cut_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_link(server, from_client, to_client));
    let r = remote.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = out.recv() => match m {
                    Some(m) => { let _ = to_server.send(m).await; }
                    None => break,
                },
                m = from_server.recv() => match m {
                    Some(m) => { let _ = r.on_message(&m); }
                    None => break,
                },
                _ = &mut cut_rx => break,
            }
        }
        r.close();
    });
    (remote, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{VERSION, flags};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_cross_the_link_in_parallel_and_fail_at_once_when_it_closes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), vec![7u8; 300_000]).unwrap();
        let (r, cut) = pair(d.path());
        let hello = Request::Hello {
            version: VERSION,
            device_level: 3,
        };
        assert_eq!(
            r.call_async(hello).await,
            Ok(Reply::Hello { version: VERSION })
        );
        let Ok(Reply::Opened { handle, attr }) = r
            .call_async(Request::Open {
                path: "f".into(),
                flags: flags::READ,
            })
            .await
        else {
            panic!()
        };
        assert_eq!(attr.size, 300_000);
        let reads = (0..3u64).map(|i| {
            r.call_async(Request::Read {
                handle,
                offset: i * 100_000,
                size: 100_000,
            })
        });
        for got in futures_join(reads).await {
            assert_eq!(got, Ok(Reply::Data(vec![7u8; 100_000])));
        }
        cut.send(()).unwrap();
        // The close is the link task's; wait for it on its own event, bounded.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !r.is_closed() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let t0 = Instant::now();
        assert_eq!(
            r.call_async(Request::Getattr { handle }).await,
            Err(errno::EIO)
        );
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let hs: Vec<_> = fs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.unwrap());
        }
        out
    }
}
