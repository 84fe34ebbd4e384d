//! PIN binding over the bus: runs devauth's binding state machines on a QUIC stream of a
//! binding connection (ALPN `oxh-bind/1`), with the TLS exporter as channel binding.

use crate::transport::{BindIncoming, Bus};
use oxh_devauth::bind::{Channel, Initiator, LocalDevice, Progress, Step, Target};
use oxh_devauth::{BindError, BoundPeer, Pin, PinManager};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exporter label for binding (RFC 5705 / RFC 8446 exporters).
const EXPORTER_LABEL: &[u8] = b"EXPORTER-oxh-bind-v1";
/// Largest binding frame (devauth's limit).
const MAX_BIND_FRAME: usize = 4096;

/// First frame of a probe: a peer asking who we are (for static peers, which mDNS does not
/// describe). Not a valid binding message, so it cannot be confused with one.
const PROBE_MAGIC: &[u8] = b"\0oxh-probe-v1";

/// What a device tells anyone who probes it: what its mDNS advert says, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeInfo {
    /// Device name, only if the owner set one.
    pub name: Option<String>,
    /// Device type name.
    pub device_type: String,
    /// This epoch's advert id, hex (as in the mDNS advert's `id`).
    pub id: String,
}

/// Asks the device at `addr` for its [`ProbeInfo`] over a binding connection.
pub async fn probe(bus: &Arc<Bus>, addr: SocketAddr) -> Result<ProbeInfo, BindFailure> {
    let (conn, _key) = bus
        .connect_for_binding(addr)
        .await
        .map_err(|e| BindFailure::Transport(e.to_string()))?;
    let r = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| BindFailure::Transport(e.to_string()))?;
        write_msg(&mut send, PROBE_MAGIC).await?;
        let b = read_msg(&mut recv).await?;
        postcard::from_bytes(&b)
            .map_err(|e| BindFailure::Transport(format!("bad probe reply: {e}")))
    };
    let r = tokio::time::timeout(Duration::from_secs(5), r)
        .await
        .unwrap_or_else(|_| Err(BindFailure::Transport("probe timed out".into())));
    conn.close(quinn::VarInt::from_u32(0), b"probe done");
    r
}

/// Why binding failed.
#[derive(Debug, thiserror::Error)]
pub enum BindFailure {
    /// The protocol said no (wrong PIN, expired, locked out, ...).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The connection failed.
    #[error("binding connection failed: {0}")]
    Transport(String),
}

impl BindFailure {
    /// OpenHarmony's code: 11600101 for a failed bind, 401 for a malformed PIN.
    pub fn code(&self) -> i32 {
        match self {
            BindFailure::Bind(e) => e.code(),
            BindFailure::Transport(_) => oxh_devauth::bind::code::DM_ERR_FAILED,
        }
    }
}

fn exporter(conn: &quinn::Connection) -> Result<[u8; 32], BindFailure> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
        .map_err(|_| BindFailure::Transport("TLS exporter unavailable".into()))?;
    Ok(out)
}

async fn write_msg(s: &mut quinn::SendStream, bytes: &[u8]) -> Result<(), BindFailure> {
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
    s.write_all(&buf)
        .await
        .map_err(|e| BindFailure::Transport(e.to_string()))
}

async fn read_msg(r: &mut quinn::RecvStream) -> Result<Vec<u8>, BindFailure> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .await
        .map_err(|e| BindFailure::Transport(e.to_string()))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_BIND_FRAME {
        return Err(BindFailure::Transport(format!(
            "binding frame of {len} bytes"
        )));
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b)
        .await
        .map_err(|e| BindFailure::Transport(e.to_string()))?;
    Ok(b)
}

/// Sends what a step says to send; returns the outcome when it is final.
async fn apply(step: Step, send: &mut quinn::SendStream) -> Result<Option<BoundPeer>, BindFailure> {
    if let Some(b) = &step.send {
        // A final Abort may fail to send if the peer is gone; the outcome stands.
        let r = write_msg(send, b).await;
        if matches!(step.progress, Progress::Continue) {
            r?;
        }
    }
    match step.progress {
        Progress::Continue => Ok(None),
        Progress::Bound(p) => {
            let _ = send.finish();
            Ok(Some(p))
        }
        Progress::Failed(e) => {
            let _ = send.finish();
            Err(e.into())
        }
    }
}

/// Binds with the device at `addr` using the PIN it shows.
pub async fn initiate(
    bus: &Arc<Bus>,
    addr: SocketAddr,
    me: LocalDevice,
    pin: Pin,
    epoch: Instant,
) -> Result<BoundPeer, BindFailure> {
    let (conn, peer_key) = bus
        .connect_for_binding(addr)
        .await
        .map_err(|e| BindFailure::Transport(e.to_string()))?;
    let result = async {
        let chan = Channel {
            exporter: exporter(&conn)?,
            peer_key,
        };
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| BindFailure::Transport(e.to_string()))?;
        let (mut init, first) = Initiator::start(me, chan, pin, oxh_kal::clock::elapsed(epoch))?;
        write_msg(&mut send, &first).await?;
        loop {
            let wait = init
                .deadline()
                .map(|d| d.saturating_sub(oxh_kal::clock::elapsed(epoch)))
                .unwrap_or(Duration::from_secs(30));
            let step = match tokio::time::timeout(wait, read_msg(&mut recv)).await {
                Ok(Ok(bytes)) => init.handle(&bytes, oxh_kal::clock::elapsed(epoch)),
                Ok(Err(e)) => return Err(e),
                Err(_) => match init.on_timeout(oxh_kal::clock::elapsed(epoch)) {
                    Some(s) => s,
                    None => continue,
                },
            };
            if let Some(p) = apply(step, &mut send).await? {
                return Ok(p);
            }
        }
    }
    .await;
    // On success the target's Accept was the last frame: close at once. On failure our Abort
    // may still be in flight: give it a moment to reach the peer.
    if result.is_err() {
        let _ = tokio::time::timeout(Duration::from_millis(200), conn.closed()).await;
    }
    conn.close(quinn::VarInt::from_u32(0), b"binding done");
    result
}

/// Serves one incoming binding connection against this device's PIN.
/// Returns `Ok(None)` when the peer only probed.
///
/// `keep` stores the new trusted device. It runs before `Accept` is sent: the initiator
/// reports success as soon as `Accept` arrives, and its user may restart or power off this
/// device right then, so the trust must already be on disk here. When it fails, no `Accept`
/// goes out and binding fails on both sides.
pub async fn respond(
    incoming: BindIncoming,
    me: LocalDevice,
    pins: Arc<Mutex<PinManager>>,
    epoch: Instant,
    probe_info: &ProbeInfo,
    keep: impl FnOnce(&BoundPeer) -> Result<(), String>,
) -> Result<Option<BoundPeer>, BindFailure> {
    let mut keep = Some(keep);
    let conn = incoming.conn;
    let result = async {
        let chan = Channel {
            exporter: exporter(&conn)?,
            peer_key: incoming.peer_key,
        };
        let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi())
            .await
            .map_err(|_| BindFailure::Transport("no binding stream".into()))?
            .map_err(|e| BindFailure::Transport(e.to_string()))?;
        let mut target = Target::new(me, chan, oxh_kal::clock::elapsed(epoch))?;
        let first = tokio::time::timeout(Duration::from_secs(30), read_msg(&mut recv))
            .await
            .map_err(|_| BindFailure::Transport("no first binding message".into()))??;
        if first == PROBE_MAGIC {
            let reply = postcard::to_allocvec(probe_info)
                .map_err(|e| BindFailure::Transport(e.to_string()))?;
            write_msg(&mut send, &reply).await?;
            let _ = send.finish();
            return Ok(None);
        }
        let mut pending = Some(first);
        loop {
            let wait = target
                .deadline()
                .map(|d| d.saturating_sub(oxh_kal::clock::elapsed(epoch)))
                .unwrap_or(Duration::from_secs(30));
            let next = match pending.take() {
                Some(b) => Ok(Ok(b)),
                None => tokio::time::timeout(wait, read_msg(&mut recv)).await,
            };
            let step = match next {
                Ok(Ok(bytes)) => {
                    let mut p = pins
                        .lock()
                        .map_err(|_| BindFailure::Transport("pin state poisoned".into()))?;
                    target.handle(&bytes, oxh_kal::clock::elapsed(epoch), &mut p)
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => match target.on_timeout(oxh_kal::clock::elapsed(epoch)) {
                    Some(s) => s,
                    None => continue,
                },
            };
            if let Progress::Bound(p) = &step.progress
                && let Some(keep) = keep.take()
            {
                keep(p).map_err(|e| {
                    BindFailure::Transport(format!("cannot store the trusted device: {e}"))
                })?;
            }
            if let Some(p) = apply(step, &mut send).await? {
                return Ok(Some(p));
            }
        }
    }
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
    result
}
