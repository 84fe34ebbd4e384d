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

use crate::transport::Bus;
use crate::transport::NodeInfo;
use crate::transport::session::open_dbinder_stream;
use crate::transport::wire::{read_frame, write_frame};
use bytes::Bytes;
use oxh_ipc::{Caller, ConnHandle, Dispatcher, RemoteError, TokenType, code};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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
        let mut with_state = false;
        for _ in 0..2 {
            let (rev, state) = bridge.export(caller.token_id).ok_or_else(|| {
                RemoteError::new(
                    code::PERMISSION_DENIED,
                    "the caller's token no longer exists",
                )
            })?;
            let known = self.mark_sent(&peer.udid, conn.stable_id(), caller.token_id, rev);
            let frame = DbFrame::Call {
                token: caller.token_id,
                rev,
                state: (with_state || !known).then_some(state),
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
        let answer = self.answer(&from, frame).await;
        if write_frame(&mut send, &answer).await.is_ok() {
            let _ = send.finish();
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
                let mapped = match state {
                    Some(st) => match bridge.import(&from.udid, token, rev, &st) {
                        Ok(m) => m,
                        Err(e) => {
                            return DbFrame::Error {
                                code: code::INVALID_PARAM,
                                message: format!("caller's token refused: {e}"),
                            };
                        }
                    },
                    None => match bridge.lookup(&from.udid, token, rev) {
                        Some(m) => m,
                        None => return DbFrame::NeedToken,
                    },
                };
                match self.run(from, mapped, sa, c, data).await {
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
        let (conn, _events) = ConnHandle::detached(caller);
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
