//! dbinder: calls of system abilities on another device, and the token sync that lets that
//! device check the caller's permissions (OpenHarmony's dbinder + tokensync).
//!
//! A local caller asks samgr to call SA `sa` method `code` on device `networkId`. Its daemon
//! opens a stream on the (mutually authenticated) bus connection and sends the call with the
//! caller's token id and that token's revision. The remote daemon maps (our udid, token id) to
//! a local copy of the token; when it has no copy at that revision it answers `NeedToken` and
//! the call is sent again with the token's state. The remote samgr then gates and runs the
//! method with a caller whose token is that copy, so `verify` there answers what it answers
//! here. Because every call carries the caller's current revision, a call made after a
//! revocation is never judged on an older copy: the revocation takes effect on the next call.
//! Changes are also pushed to every device that holds a copy, so that its listings are fresh
//! and a deleted token disappears there. Unbinding a device drops every copy it gave us.
//!
//! Remote callers must hold `ohos.permission.DISTRIBUTED_DATASYNC` (a user_grant permission:
//! the user decides whether an app may act across devices), checked on the device that runs the
//! method. Calls do not hop on: a remote caller cannot make a further remote call.
//!
//! **Calls that carry a stream** ([`Dbinder::connect`], `DbFrame::Connect`): a remote
//! service connection. The call goes as any other (token, permission), and with it the
//! calling daemon hands over the local end of the client's socket. The remote daemon makes a
//! socketpair and dispatches the call with one end as the call's descriptor (the SA takes it
//! with `take_fd`, as a local CONNECT takes the client's end); once the method answers, the
//! same QUIC stream goes on as the socket's bytes both ways, relayed by both daemons. So the
//! connection's bytes travel on the bus connection authenticated at binding, attributed to
//! the device of that connection, and the connection lives as long as that connection:
//! OFFLINE (the connection closing), either socket end closing, or either side ending the
//! stream ends both relays, which close both local ends. A descriptor (SCM_RIGHTS) cannot
//! cross devices: a relay that reads one closes it and ends the connection
//! ([`DESCRIPTOR_REFUSED`]).

use crate::transport::Bus;
use crate::transport::NodeInfo;
use crate::transport::session::open_dbinder_stream;
use crate::transport::wire::{read_frame, write_frame};
use bytes::Bytes;
use oxh_ipc::{Caller, ConnHandle, Dispatcher, RemoteError, TokenType, code};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// The permission a caller needs for any call on another device.
pub const DISTRIBUTED_DATASYNC: &str = "ohos.permission.DISTRIBUTED_DATASYNC";

/// Largest dbinder frame: an IPC transaction (1 MiB) plus the call's header and token state.
pub const MAX_DBINDER_FRAME: usize = oxh_ipc::MAX_TRANSACTION + 64 * 1024;

/// How long a remote call may take before the caller gets an error instead of a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a token push waits for the peer's acknowledgement.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// OpenHarmony's "device not online" code of the device manager.
pub const ERR_DEVICE_OFFLINE: i32 = 11_600_102;

/// Bytes a relay moves per read (either way); QUIC's flow control and the socket buffers
/// pace it, so this is all a relay holds.
pub const RELAY_CHUNK: usize = 64 * 1024;

/// How long a relay keeps the local end once the peer closed its side: enough for the
/// local end to read the rest and close; a local end that does not is dropped.
pub const RELAY_LINGER: Duration = Duration::from_secs(5);

/// Why a relayed connection ended when the peer closed its side.
pub const PEER_CLOSED: &str = "the peer closed the connection";

/// Why a relay ended when the local side passed a descriptor.
pub const DESCRIPTOR_REFUSED: &str =
    "a file descriptor (SCM_RIGHTS) cannot cross devices: the connection is closed";

/// What the token sync needs from the access-token manager. The daemon implements it over
/// the manager, so that the soft bus does not depend on it. Token states travel as opaque
/// bytes that only the manager encodes and decodes.
pub trait TokenBridge: Send + Sync + 'static {
    /// A local token's revision and encoded state; `None` if there is no such token.
    fn export(&self, token_id: u32) -> Option<(u64, Vec<u8>)>;
    /// Stores the copy of device `udid`'s token; returns the copy's local id, type and name.
    fn import(
        &self,
        udid: &str,
        token_id: u32,
        rev: u64,
        state: &[u8],
    ) -> Result<(u32, TokenType, String), String>;
    /// The copy of device `udid`'s token at revision `rev`, if this device holds it.
    fn lookup(&self, udid: &str, token_id: u32, rev: u64) -> Option<(u32, TokenType, String)>;
    /// Drops the copy of one token (deleted on its device).
    fn forget(&self, udid: &str, token_id: u32);
    /// Drops every copy from device `udid` (unbound).
    fn forget_device(&self, udid: &str);
    /// Whether local token `token_id` holds `permission`.
    fn verify(&self, token_id: u32, permission: &str) -> bool;
}

/// Frames of a dbinder stream (after the stream's `Dbinder` marker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DbFrame {
    /// A call, with the caller's token revision and, when the peer may lack it, its state.
    Call {
        /// The caller's token id on the calling device.
        token: u32,
        /// That token's revision.
        rev: u64,
        /// The token's encoded state.
        state: Option<Vec<u8>>,
        /// SA id.
        sa: i32,
        /// Method code.
        code: u32,
        /// Arguments.
        data: Vec<u8>,
    },
    /// The method's reply.
    Reply(Vec<u8>),
    /// The method's error.
    Error {
        /// OpenHarmony error code.
        code: i32,
        /// Message.
        message: String,
    },
    /// The callee has no copy of the token at that revision: send the call again with it.
    NeedToken,
    /// A token changed (`state`) or was deleted (`None`) on the device that owns it.
    Push {
        /// Token id there.
        token: u32,
        /// New revision.
        rev: u64,
        /// New state.
        state: Option<Vec<u8>>,
    },
    /// A push was applied.
    Ack,
    /// A call that carries a stream socket (a service connection): the fields of
    /// [`DbFrame::Call`]. Once answered with `Reply`, the stream goes on as the socket's
    /// bytes, both ways; any other answer ends it.
    Connect {
        /// The caller's token id on the calling device.
        token: u32,
        /// That token's revision.
        rev: u64,
        /// The token's encoded state.
        state: Option<Vec<u8>>,
        /// SA id.
        sa: i32,
        /// Method code.
        code: u32,
        /// Arguments.
        data: Vec<u8>,
    },
}

/// The end of a relayed connection ([`Dbinder::connect`]): resolves once the connection is
/// over (the peer closed its side, both ends closed, or the bus connection went), with why.
#[derive(Debug)]
pub struct RelayEnd(oneshot::Receiver<String>);

impl RelayEnd {
    /// Waits for the relay to end; why it ended.
    pub async fn wait(self) -> String {
        self.0
            .await
            .unwrap_or_else(|_| "the relay stopped".to_string())
    }
}

/// Tokens sent to one peer over one connection, with the revision sent.
#[derive(Debug, Default)]
struct Sent {
    conn: usize,
    tokens: HashMap<u32, u64>,
}

/// The dbinder of one device: outgoing calls, incoming calls, token pushes.
pub struct Dbinder {
    bus: Arc<Bus>,
    bridge: OnceLock<Arc<dyn TokenBridge>>,
    dispatcher: OnceLock<Arc<dyn Dispatcher>>,
    /// By peer udid.
    sent: Mutex<HashMap<String, Sent>>,
}

impl std::fmt::Debug for Dbinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dbinder").finish_non_exhaustive()
    }
}

fn internal(m: impl Into<String>) -> RemoteError {
    RemoteError::new(code::SA_INTERNAL, m)
}

impl Dbinder {
    /// A dbinder on `bus`; it serves nothing until [`Self::set_bridge`] and
    /// [`Self::set_dispatcher`] are called.
    pub fn new(bus: Arc<Bus>) -> Arc<Self> {
        Arc::new(Self {
            bus,
            bridge: OnceLock::new(),
            dispatcher: OnceLock::new(),
            sent: Mutex::new(HashMap::new()),
        })
    }

    /// Wires in the access-token manager.
    pub fn set_bridge(&self, b: Arc<dyn TokenBridge>) {
        let _ = self.bridge.set(b);
    }

    /// Wires in samgr, which runs incoming calls.
    pub fn set_dispatcher(&self, d: Arc<dyn Dispatcher>) {
        let _ = self.dispatcher.set(d);
    }

    fn bridge(&self) -> Result<&Arc<dyn TokenBridge>, RemoteError> {
        self.bridge
            .get()
            .ok_or_else(|| internal("remote calls are not wired on this device"))
    }

    /// Whether `rev` of `token` was sent to `udid` on connection `conn`; records it as sent
    /// (from here on the peer is told of changes).
    fn mark_sent(&self, udid: &str, conn: usize, token: u32, rev: u64) -> bool {
        let Ok(mut s) = self.sent.lock() else {
            return false;
        };
        let e = s.entry(udid.to_string()).or_default();
        if e.conn != conn {
            *e = Sent {
                conn,
                tokens: HashMap::new(),
            };
        }
        e.tokens.insert(token, rev) == Some(rev)
    }

    /// Calls method `code` of SA `sa` on device `network_id` for `caller`, handing over
    /// `local` (the local end of a stream socket) with it: once the method answers, the
    /// socket's bytes cross to the end the peer gave its SA, both ways, until either end
    /// closes or the bus connection goes ([`RelayEnd`]). The reply, and the relay's end.
    pub async fn connect(
        &self,
        caller: &Caller,
        network_id: &str,
        sa: i32,
        code_: u32,
        data: Vec<u8>,
        local: OwnedFd,
    ) -> Result<(Vec<u8>, RelayEnd), RemoteError> {
        if !oxh_kal::is_unix_stream(local.as_fd()) {
            return Err(RemoteError::new(
                code::INVALID_PARAM,
                "only a Unix stream socket can be relayed to another device",
            ));
        }
        let (bridge, conn, peer) = self.route(caller, network_id)?;
        let mut with_state = false;
        for _ in 0..2 {
            let (token, rev, state) =
                self.token_for(&bridge, caller, &peer.udid, conn.stable_id(), with_state)?;
            let frame = DbFrame::Connect {
                token,
                rev,
                state,
                sa,
                code: code_,
                data: data.clone(),
            };
            let (reply, streams) = tokio::time::timeout(CALL_TIMEOUT, ask(&conn, &frame))
                .await
                .map_err(|_| {
                    internal(format!(
                        "device {network_id} did not answer within {} s",
                        CALL_TIMEOUT.as_secs()
                    ))
                })??;
            match reply {
                DbFrame::Reply(b) => {
                    let (send, recv) = streams;
                    let end = spawn_relay(local, send, recv)
                        .map_err(|e| internal(format!("cannot relay the connection: {e}")))?;
                    return Ok((b, end));
                }
                DbFrame::Error { code, message } => return Err(RemoteError::new(code, message)),
                DbFrame::NeedToken => with_state = true,
                other => return Err(internal(format!("unexpected answer {other:?}"))),
            }
        }
        Err(internal(format!(
            "device {network_id} did not accept the caller's token"
        )))
    }

    /// The bridge, and the connection to an online device, for a caller with a token.
    fn route(
        &self,
        caller: &Caller,
        network_id: &str,
    ) -> Result<(Arc<dyn TokenBridge>, quinn::Connection, NodeInfo), RemoteError> {
        if caller.token_type == TokenType::Invalid || caller.token_id == 0 {
            return Err(RemoteError::new(
                code::PERMISSION_DENIED,
                "a caller without an access token cannot call other devices",
            ));
        }
        let bridge = self.bridge()?.clone();
        let (conn, peer) = self.bus.connection(network_id).ok_or_else(|| {
            RemoteError::new(
                ERR_DEVICE_OFFLINE,
                format!("device {network_id} is not online (or not trusted)"),
            )
        })?;
        Ok((bridge, conn, peer))
    }

    /// The caller's token id, revision, and its state when the peer may lack it.
    fn token_for(
        &self,
        bridge: &Arc<dyn TokenBridge>,
        caller: &Caller,
        udid: &str,
        conn: usize,
        with_state: bool,
    ) -> Result<(u32, u64, Option<Vec<u8>>), RemoteError> {
        let (rev, state) = bridge.export(caller.token_id).ok_or_else(|| {
            RemoteError::new(
                code::PERMISSION_DENIED,
                "the caller's token no longer exists",
            )
        })?;
        let known = self.mark_sent(udid, conn, caller.token_id, rev);
        Ok((
            caller.token_id,
            rev,
            (with_state || !known).then_some(state),
        ))
    }

    /// Calls method `code` of SA `sa` on device `network_id` for `caller` (the local caller,
    /// whose token the peer checks).
    pub async fn call(
        &self,
        caller: &Caller,
        network_id: &str,
        sa: i32,
        code_: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError> {
        let (bridge, conn, peer) = self.route(caller, network_id)?;
        let mut with_state = false;
        for _ in 0..2 {
            let (token, rev, state) =
                self.token_for(&bridge, caller, &peer.udid, conn.stable_id(), with_state)?;
            let frame = DbFrame::Call {
                token,
                rev,
                state,
                sa,
                code: code_,
                data: data.clone(),
            };
            let reply = tokio::time::timeout(CALL_TIMEOUT, exchange(&conn, &frame))
                .await
                .map_err(|_| {
                    internal(format!(
                        "device {network_id} did not answer within {} s",
                        CALL_TIMEOUT.as_secs()
                    ))
                })??;
            match reply {
                DbFrame::Reply(b) => return Ok(b),
                DbFrame::Error { code, message } => return Err(RemoteError::new(code, message)),
                DbFrame::NeedToken => with_state = true,
                other => return Err(internal(format!("unexpected answer {other:?}"))),
            }
        }
        Err(internal(format!(
            "device {network_id} did not accept the caller's token"
        )))
    }

    /// Serves one incoming dbinder stream from `from`.
    pub(crate) async fn serve(
        self: Arc<Self>,
        from: NodeInfo,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let frame = match read_frame::<_, DbFrame>(&mut recv, MAX_DBINDER_FRAME).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(tag = "dbinder", "bad frame from a peer: {e}");
                return;
            }
        };
        if let DbFrame::Connect {
            token,
            rev,
            state,
            sa,
            code: c,
            data,
        } = frame
        {
            let answer = match self.map_token(&from, token, rev, state) {
                Ok(mapped) => self.run_connect(&from, mapped, sa, c, data).await,
                Err(f) => Err(f),
            };
            match answer {
                Ok((reply, mine)) => {
                    if write_frame(&mut send, &DbFrame::Reply(reply))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Ends when either side does; dropping `mine` closes the SA's end.
                    if let Ok(end) = spawn_relay(mine, send, recv) {
                        let why = end.wait().await;
                        tracing::debug!(tag = "dbinder", "a relayed connection ended: {why}");
                    }
                }
                Err(f) => {
                    if write_frame(&mut send, &f).await.is_ok() {
                        let _ = send.finish();
                    }
                }
            }
            return;
        }
        let answer = self.answer(&from, frame).await;
        if write_frame(&mut send, &answer).await.is_ok() {
            let _ = send.finish();
        }
    }

    /// The local copy of a caller's token (importing `state` when it comes), or the frame
    /// to answer instead (`NeedToken`, or why the token was refused).
    fn map_token(
        &self,
        from: &NodeInfo,
        token: u32,
        rev: u64,
        state: Option<Vec<u8>>,
    ) -> Result<(u32, TokenType, String), DbFrame> {
        let Some(bridge) = self.bridge.get() else {
            return Err(DbFrame::Error {
                code: code::SA_INTERNAL,
                message: "remote calls are not wired on this device".into(),
            });
        };
        match state {
            Some(st) => bridge
                .import(&from.udid, token, rev, &st)
                .map_err(|e| DbFrame::Error {
                    code: code::INVALID_PARAM,
                    message: format!("caller's token refused: {e}"),
                }),
            None => bridge
                .lookup(&from.udid, token, rev)
                .ok_or(DbFrame::NeedToken),
        }
    }

    /// Runs a call that carries a stream: the SA gets one end of a new socketpair as the
    /// call's descriptor; the other end is returned with the reply, for the relay.
    async fn run_connect(
        &self,
        from: &NodeInfo,
        mapped: (u32, TokenType, String),
        sa: i32,
        code_: u32,
        data: Vec<u8>,
    ) -> Result<(Vec<u8>, OwnedFd), DbFrame> {
        let (mine, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| DbFrame::Error {
                code: code::SA_INTERNAL,
                message: format!("no socket for the connection: {e}"),
            })?;
        match self
            .run(from, mapped, sa, code_, data, Some(OwnedFd::from(theirs)))
            .await
        {
            Ok(b) => Ok((b, OwnedFd::from(mine))),
            Err(e) => Err(DbFrame::Error {
                code: e.code,
                message: e.message,
            }),
        }
    }

    async fn answer(&self, from: &NodeInfo, frame: DbFrame) -> DbFrame {
        let Some(bridge) = self.bridge.get() else {
            return DbFrame::Error {
                code: code::SA_INTERNAL,
                message: "remote calls are not wired on this device".into(),
            };
        };
        match frame {
            DbFrame::Call {
                token,
                rev,
                state,
                sa,
                code: c,
                data,
            } => {
                let mapped = match self.map_token(from, token, rev, state) {
                    Ok(m) => m,
                    Err(f) => return f,
                };
                match self.run(from, mapped, sa, c, data, None).await {
                    Ok(b) => DbFrame::Reply(b),
                    Err(e) => DbFrame::Error {
                        code: e.code,
                        message: e.message,
                    },
                }
            }
            DbFrame::Push { token, rev, state } => {
                match state {
                    Some(st) => {
                        if let Err(e) = bridge.import(&from.udid, token, rev, &st) {
                            tracing::warn!(tag = "dbinder", "token push refused: {e}");
                        }
                    }
                    None => bridge.forget(&from.udid, token),
                }
                DbFrame::Ack
            }
            other => DbFrame::Error {
                code: code::INVALID_PARAM,
                message: format!("unexpected frame {other:?}"),
            },
        }
    }

    async fn run(
        &self,
        from: &NodeInfo,
        (token_id, token_type, name): (u32, TokenType, String),
        sa: i32,
        code_: u32,
        data: Vec<u8>,
        fd: Option<OwnedFd>,
    ) -> Result<Vec<u8>, RemoteError> {
        let bridge = self.bridge()?;
        let dispatcher = self
            .dispatcher
            .get()
            .ok_or_else(|| internal("remote calls are not wired on this device"))?;
        if sa == oxh_samgr::sa_id::SAMGR && code_ == oxh_samgr::samgr_method::CALL_REMOTE {
            return Err(RemoteError::new(
                code::PERMISSION_DENIED,
                "a remote caller cannot call on to a further device",
            ));
        }
        let short: String = from.network_id.chars().take(8).collect();
        if !bridge.verify(token_id, DISTRIBUTED_DATASYNC) {
            return Err(RemoteError::new(
                code::PERMISSION_DENIED,
                format!(
                    "permission denied: {DISTRIBUTED_DATASYNC} (remote caller {name} on device {short}..., checked on device {})",
                    self.bus
                        .local_info()
                        .network_id
                        .chars()
                        .take(8)
                        .collect::<String>()
                ),
            ));
        }
        // A remote caller has no local process: pid 0, and the overflow uid, never root's.
        let caller = Caller {
            pid: 0,
            uid: REMOTE_UID,
            gid: REMOTE_UID,
            token_id,
            token_type,
            process_name: format!("{name}@{short}"),
        };
        let (conn, _events) = ConnHandle::remote(caller, &from.network_id, fd);
        let r = dispatcher
            .dispatch(conn.clone(), sa, code_, Bytes::from(data))
            .await;
        // Releases whatever the SA kept for this caller (subscriptions, listeners).
        dispatcher.on_disconnect(&conn);
        r
    }

    /// Tells every device holding a copy of `token_id` its new state (or that it is gone).
    /// Returns how many devices acknowledged.
    pub async fn token_changed(&self, token_id: u32) -> usize {
        let Some(bridge) = self.bridge.get() else {
            return 0;
        };
        let holders: Vec<(String, usize)> = self
            .sent
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(_, v)| v.tokens.contains_key(&token_id))
                    .map(|(k, v)| (k.clone(), v.conn))
                    .collect()
            })
            .unwrap_or_default();
        let mut acked = 0;
        for (udid, conn_id) in holders {
            let Some(conn) = self
                .bus
                .online()
                .into_iter()
                .find(|n| n.udid == udid)
                .and_then(|n| self.bus.connection(&n.network_id))
                .map(|c| c.0)
                .filter(|c| c.stable_id() == conn_id)
            else {
                // That connection is gone: the next call on a new one sends the state anyway.
                if let Ok(mut s) = self.sent.lock() {
                    s.remove(&udid);
                }
                continue;
            };
            let (rev, state) = match bridge.export(token_id) {
                Some((r, s)) => (r, Some(s)),
                None => (0, None),
            };
            let frame = DbFrame::Push {
                token: token_id,
                rev,
                state,
            };
            if let Ok(Ok(DbFrame::Ack)) =
                tokio::time::timeout(PUSH_TIMEOUT, exchange(&conn, &frame)).await
            {
                acked += 1;
                if let Ok(mut s) = self.sent.lock()
                    && let Some(e) = s.get_mut(&udid)
                {
                    if frame_is_delete(&frame) {
                        e.tokens.remove(&token_id);
                    } else {
                        e.tokens.insert(token_id, rev);
                    }
                }
            }
        }
        acked
    }

    /// Forgets what was sent to and received from device `udid` (it was unbound).
    pub fn device_unbound(&self, udid: &str) {
        if let Ok(mut s) = self.sent.lock() {
            s.remove(udid);
        }
        if let Some(b) = self.bridge.get() {
            b.forget_device(udid);
        }
    }
}

/// The uid remote callers run with in SAs' eyes: the kernel's overflow uid.
pub const REMOTE_UID: u32 = 65_534;

fn frame_is_delete(f: &DbFrame) -> bool {
    matches!(f, DbFrame::Push { state: None, .. })
}

/// A call that carries a stream, and its answer: the stream stays open for the relay.
async fn ask(
    conn: &quinn::Connection,
    frame: &DbFrame,
) -> Result<(DbFrame, (quinn::SendStream, quinn::RecvStream)), RemoteError> {
    let (mut send, mut recv) = open_dbinder_stream(conn)
        .await
        .map_err(|e| internal(format!("cannot reach the device: {e}")))?;
    write_frame(&mut send, frame)
        .await
        .map_err(|e| internal(format!("cannot send the call: {e}")))?;
    let answer = read_frame::<_, DbFrame>(&mut recv, MAX_DBINDER_FRAME)
        .await
        .map_err(|e| internal(format!("bad answer: {e}")))?
        .ok_or_else(|| internal("the device closed the call without answering"))?;
    Ok((answer, (send, recv)))
}

/// Relays `local` (a Unix stream socket) and a QUIC stream both ways, on a task of its own;
/// see [`relay`] for when it ends.
fn spawn_relay(
    local: OwnedFd,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> std::io::Result<RelayEnd> {
    let std_sock = std::os::unix::net::UnixStream::from(local);
    std_sock.set_nonblocking(true)?;
    let sock = tokio::net::UnixStream::from_std(std_sock)?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(relay(sock, send, recv, tx));
    Ok(RelayEnd(rx))
}

/// The relay itself. Each direction ends as a stream socket's does: the local end's EOF
/// finishes the QUIC stream (the peer's socket reads EOF, and its answers still come back);
/// the peer finishing shuts the local end's writing side. The connection is over for `done`
/// when the peer finished (its side is closed), on any error (the bus connection gone, a
/// reset, a descriptor), or when both directions are done; the local end then has
/// [`RELAY_LINGER`] to close before the relay drops it.
async fn relay(
    sock: tokio::net::UnixStream,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    done: oneshot::Sender<String>,
) {
    let mut done = Some(done);
    let up = async {
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); RELAY_CHUNK];
        loop {
            let mut fds = Vec::new();
            let n = loop {
                if let Err(e) = sock.readable().await {
                    return Err(format!("the local end failed: {e}"));
                }
                match sock.try_io(tokio::io::Interest::READABLE, || {
                    oxh_kal::recv_with_fds(sock.as_fd(), &mut buf, &mut fds)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(format!("the local end failed: {e}")),
                }
            };
            if !fds.is_empty() {
                drop(fds);
                tracing::warn!(tag = "dbinder", "{DESCRIPTOR_REFUSED}");
                let _ = send.reset(quinn::VarInt::from_u32(0));
                return Err(DESCRIPTOR_REFUSED.to_string());
            }
            if n == 0 {
                let _ = send.finish();
                return Ok(());
            }
            // SAFETY: recvmsg initialised the first `n` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            if let Err(e) = send.write_all(bytes).await {
                return Err(format!("the peer's end is gone: {e}"));
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; RELAY_CHUNK];
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(n)) => {
                    let mut at = 0;
                    while at < n {
                        if let Err(e) = sock.writable().await {
                            return Err(format!("the local end failed: {e}"));
                        }
                        match sock.try_write(&buf[at..n]) {
                            Ok(w) => at += w,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(format!("the local end is gone: {e}")),
                        }
                    }
                }
                Ok(None) => {
                    let _ = oxh_kal::shutdown_write(sock.as_fd());
                    return Ok(());
                }
                Err(e) => return Err(format!("the connection to the peer is gone: {e}")),
            }
        }
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let why = loop {
        tokio::select! {
            r = &mut up, if !up_done => match r {
                Ok(()) => up_done = true,
                Err(e) => break e,
            },
            r = &mut down, if !down_done => match r {
                Ok(()) => {
                    down_done = true;
                    if let Some(d) = done.take() {
                        let _ = d.send(PEER_CLOSED.to_string());
                    }
                }
                Err(e) => break e,
            },
            _ = tokio::time::sleep(RELAY_LINGER), if down_done => {
                break "the local end did not close after the peer".to_string();
            }
        }
        if up_done && down_done {
            break "both ends closed".to_string();
        }
    };
    if let Some(d) = done.take() {
        let _ = d.send(why);
    }
}

/// One request and its answer on a new stream.
async fn exchange(conn: &quinn::Connection, frame: &DbFrame) -> Result<DbFrame, RemoteError> {
    let (mut send, mut recv) = open_dbinder_stream(conn)
        .await
        .map_err(|e| internal(format!("cannot reach the device: {e}")))?;
    write_frame(&mut send, frame)
        .await
        .map_err(|e| internal(format!("cannot send the call: {e}")))?;
    let _ = send.finish();
    read_frame::<_, DbFrame>(&mut recv, MAX_DBINDER_FRAME)
        .await
        .map_err(|e| internal(format!("bad answer: {e}")))?
        .ok_or_else(|| internal("the device closed the call without answering"))
}

#[async_trait::async_trait]
impl oxh_samgr::RemoteSaCaller for Dbinder {
    async fn call_remote(
        &self,
        caller: &Caller,
        network_id: &str,
        sa: i32,
        code_: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError> {
        self.call(caller, network_id, sa, code_, data).await
    }
}

/// Fuzzing hook (fuzz/): decodes a dbinder frame body as [`Dbinder`] does.
pub fn fuzz_decode_frame(body: &[u8]) -> Option<DbFrame> {
    crate::transport::wire::decode(body).ok()
}

#[cfg(test)]
#[path = "dbinder_tests.rs"]
mod tests;
