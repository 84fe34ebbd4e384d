//! The per-connection reader and dispatcher: reads frames, admits requests, runs calls and
//! answers them.

use super::accept::{Admission, Admitted, Budgets, ConnBudget, MAX_CONN_BYTES, MAX_PENDING_WAITS};
use super::outbox::{OutQ, Outbox, Sink};
use super::{ConnHandle, Dispatcher, conn_ledger};
use crate::frame::{self, Decoded, FrameDecoder, Kind};
use crate::{Caller, RemoteError, code};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Request bodies smaller than this are copied out of the read buffer, so a long call (a
/// wait) holds its few bytes, not the 64 KiB buffer they arrived in. Larger ones are taken
/// without copying (bulk data).
const COPY_BELOW: usize = 64 * 1024;

/// Descriptors a client may have sent ahead of their requests; more is a protocol error.
const MAX_QUEUED_FDS: usize = 8;

pub(super) async fn serve_conn(
    id: u64,
    stream: UnixStream,
    caller: Caller,
    dispatcher: Arc<dyn Dispatcher>,
    budgets: &Budgets,
    uid: u32,
    privileged: bool,
) {
    let (mut rd, wr) = stream.into_split();
    let outbox = Arc::new(Outbox {
        wr,
        q: Mutex::new(OutQ::default()),
        notify: Notify::new(),
        room: Notify::new(),
    });
    let conn = ConnHandle {
        id,
        caller: Arc::new(caller),
        sink: Sink::Socket(outbox.clone()),
        fd: None,
        waits: conn_ledger(MAX_PENDING_WAITS),
        device: None,
    };
    let mut fds: Vec<std::os::fd::OwnedFd> = Vec::new();
    dispatcher.on_connect(&conn);
    let writer = tokio::spawn(outbox.clone().run_writer());

    let budget = ConnBudget {
        budgets,
        uid,
        privileged,
        bytes: conn_ledger(MAX_CONN_BYTES),
    };
    let mut admitted: Option<Admitted> = None;
    let mut tasks = JoinSet::new();
    let mut dec = FrameDecoder::new();
    'read: loop {
        loop {
            // Decide on a request when its header is in, before its body is buffered.
            if admitted.is_none() {
                match dec.peek() {
                    Ok(None) => {}
                    Ok(Some(h)) if h.kind != Kind::Request && h.kind != Kind::RequestFd => {
                        fatal(
                            &conn,
                            &format!("malformed frame: kind {:?} is not sent by clients", h.kind),
                        );
                        break 'read;
                    }
                    Ok(Some(h)) if h.len > frame::MAX_TRANSACTION => {}
                    Ok(Some(h)) => {
                        while tasks.try_join_next().is_some() {}
                        match budget.admit(h.len, tasks.len(), outbox.queued()) {
                            Admission::Take(a) => admitted = Some(a),
                            Admission::Refuse(err) => {
                                if h.kind == Kind::RequestFd && !fds.is_empty() {
                                    fds.remove(0);
                                }
                                dec.skip_front();
                                conn.send(&frame::reply(h.id, &Err(err)), false);
                                continue;
                            }
                            Admission::Wait => {
                                if outbox.is_closed() {
                                    break 'read;
                                }
                                let room = outbox.room.notified();
                                tokio::select! {
                                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                                    _ = tokio::time::timeout(Duration::from_millis(100), room) => {}
                                }
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        fatal(&conn, &e.to_string());
                        break 'read;
                    }
                }
            }
            match dec.decode_next() {
                Ok(Some(Decoded::Frame(f)))
                    if f.kind == Kind::Request || f.kind == Kind::RequestFd =>
                {
                    let Some(held) = admitted.take() else {
                        fatal(
                            &conn,
                            "internal error: a request was read without admission",
                        );
                        break 'read;
                    };
                    let Some((sa, code, data)) = frame::parse_request(&f.body) else {
                        fatal(&conn, "malformed frame: request body shorter than 8 bytes");
                        break 'read;
                    };
                    let (kind, rid) = (f.kind, f.id);
                    drop(f);
                    let data = if data.len() < COPY_BELOW {
                        Bytes::copy_from_slice(&data)
                    } else {
                        data
                    };
                    let fd = if kind == Kind::RequestFd {
                        if fds.is_empty() {
                            fatal(&conn, "malformed frame: no file descriptor came with it");
                            break 'read;
                        }
                        Some(Arc::new(Mutex::new(Some(fds.remove(0)))))
                    } else {
                        None
                    };
                    let d = dispatcher.clone();
                    let mut c = conn.clone();
                    c.fd = fd.clone();
                    let mut call = Box::pin(async move { d.dispatch(c, sa, code, data).await });
                    // Most calls finish without waiting: run them here and answer at once.
                    // Polling with a no-op waker is sound because a call that is not done is
                    // spawned, and the spawned task polls it again with a real waker.
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    match call.as_mut().poll(&mut cx) {
                        std::task::Poll::Ready(result) => {
                            close_fd(&fd);
                            conn.send(&frame::reply(rid, &result), false);
                            drop(held);
                        }
                        std::task::Poll::Pending => {
                            let c = conn.clone();
                            tasks.spawn(async move {
                                let result = call.await;
                                close_fd(&fd);
                                c.send(&frame::reply(rid, &result), false);
                                drop(held);
                            });
                        }
                    }
                }
                Ok(Some(Decoded::Frame(f))) => {
                    fatal(
                        &conn,
                        &format!("malformed frame: kind {:?} is not sent by clients", f.kind),
                    );
                    break 'read;
                }
                Ok(Some(Decoded::Oversize { id: rid, len, .. })) => {
                    let err = RemoteError::new(
                        code::TRANSACTION_TOO_LARGE,
                        format!(
                            "transaction too large: {len} bytes exceeds the {}-byte (1 MiB) limit",
                            frame::MAX_TRANSACTION
                        ),
                    );
                    conn.send(&frame::reply(rid, &Err(err)), false);
                }
                Ok(None) => break,
                Err(e) => {
                    fatal(&conn, &e.to_string());
                    break 'read;
                }
            }
        }
        if fds.len() > MAX_QUEUED_FDS {
            fatal(&conn, "too many file descriptors without their requests");
            break 'read;
        }
        dec.reserve_for_read();
        tokio::select! {
            r = read_with_fds(&rd, dec.buffer(), &mut fds) => match r {
                Ok(0) | Err(_) => break 'read,
                Ok(_) => {}
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(admitted);
    // The client is gone (or broke the protocol): cancel its calls, then the death notice.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let broke_protocol = outbox
        .q
        .lock()
        .map(|q| q.close_after_flush)
        .unwrap_or(false);
    if !broke_protocol {
        outbox.close();
    }
    dispatcher.on_disconnect(&conn);
    drop(conn);
    let _ = writer.await;
    if broke_protocol {
        // Closing with unread input would reset the connection (RST) and could destroy the
        // error frame before the client reads it: discard what it still sends, bounded.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            super::discard_input(&mut rd, frame::MAX_TRANSACTION),
        )
        .await;
    }
}

/// Closes a call's descriptor if the SA did not take it.
fn close_fd(fd: &Option<Arc<Mutex<Option<std::os::fd::OwnedFd>>>>) {
    if let Some(f) = fd
        && let Ok(mut f) = f.lock()
    {
        f.take();
    }
}

/// Reads what the client sent, with any descriptors attached to it (requests of kind
/// [`Kind::RequestFd`] carry one); `Ok(0)` at end of stream.
async fn read_with_fds(
    rd: &tokio::net::unix::OwnedReadHalf,
    buf: &mut BytesMut,
    fds: &mut Vec<std::os::fd::OwnedFd>,
) -> std::io::Result<usize> {
    let sock = rd.as_ref();
    loop {
        sock.readable().await?;
        let spare = buf.spare_capacity_mut();
        match sock.try_io(tokio::io::Interest::READABLE, || {
            oxh_kal::recv_with_fds(sock.as_fd(), spare, fds)
        }) {
            Ok(n) => {
                // SAFETY: recvmsg initialized the first `n` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn fatal(conn: &ConnHandle, msg: &str) {
    tracing::warn!(
        tag = "ipc",
        public_pid = conn.caller.pid,
        "closing connection: {msg}"
    );
    let bytes = frame::fatal(&RemoteError::new(code::MALFORMED_FRAME, msg));
    match &conn.sink {
        Sink::Socket(o) => o.send_last(&bytes),
        Sink::Channel(tx) => {
            let _ = tx.send(bytes);
        }
    }
}
