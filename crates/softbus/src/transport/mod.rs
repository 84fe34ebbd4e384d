//! The bus transport: one QUIC endpoint per device, one mutually authenticated connection per
//! pair of trusted devices, shared by every session between them.
//!
//! A connection starts with a control stream opened by the dialer, on which both sides send a
//! `Hello` with their [`NodeInfo`]; that is when the peer goes ONLINE. Keep-alives run every
//! heartbeat and the idle timeout is a few heartbeats, so a peer that vanishes goes OFFLINE
//! within the idle timeout. If both sides dial at once, the connection dialed by the device with
//! the smaller key wins on both sides, so they converge on one.
//!
//! Which connection to keep, restarts, what to dial and when: the bus centre's pure core
//! ([`crate::center`]), one per bus; `links.rs` is the adapter that feeds it and carries out
//! what it asks. `config.rs` holds the QUIC endpoint and transport settings and their limits.

mod config;
mod links;
pub mod session;
pub(crate) mod socket;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod wire;

pub use config::{BusConfig, bind_endpoint, probe_pair, transport_config};
#[cfg(test)]
pub(crate) use tests::support as tests_support;

/// The QUIC implementation the bus runs on, for benchmarks that measure it under the bus's own
/// configuration ([`transport_config`], [`bind_endpoint`], [`probe_pair`]).
pub use quinn;

use crate::center::{Center, ConnId};
use config::{is_loopback, limit_incoming};
use ed25519_dalek::SigningKey;
use links::closed_as_duplicate;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc};
use wire::{MAX_CONTROL_FRAME, read_frame, write_frame};

/// QUIC application close code: the peer is not a trusted device.
pub const CLOSE_UNTRUSTED: u32 = 0x101;
/// QUIC application close code: a second connection between the same pair; the other wins.
pub const CLOSE_DUPLICATE: u32 = 0x102;
/// QUIC application close code: the device is shutting down or unbinding.
pub const CLOSE_BYE: u32 = 0x103;
/// QUIC application close code: protocol violation.
pub const CLOSE_PROTOCOL: u32 = 0x104;

/// What a device tells its trusted peers about itself (OpenHarmony's NodeBasicInfo and more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Random per daemon start; what apps use to address the device.
    pub network_id: String,
    /// Stable device id (hex SHA-256 of the device key); shared with trusted peers only.
    pub udid: String,
    /// Device name.
    pub name: String,
    /// Device type name (phone, tv, ...).
    pub device_type: String,
    /// OpenHarmony DmDeviceType id.
    pub device_type_id: u16,
    /// OS name and version.
    pub os_version: String,
    /// Capability names (osdCapability, ddmpCapability, ...).
    pub capabilities: Vec<String>,
    /// System abilities the device runs.
    pub sa_list: Vec<i32>,
    /// The QUIC port it listens on, so a peer can dial back after a loss.
    pub listen_port: u16,
    /// Its advert key, so that a peer whose trust record predates advert keys learns it (only
    /// bound devices hear this: the connection is pinned to their device keys).
    pub advert_key: oxh_devauth::AdvertKey,
}

/// Control-stream messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Control {
    Hello { version: u16, info: NodeInfo },
    InfoUpdate(NodeInfo),
    Unbind,
}

const PROTOCOL_VERSION: u16 = 1;

/// Online/offline changes, as the bus center reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A trusted device is connected and has exchanged its info.
    Online(NodeInfo),
    /// Its connection is gone.
    Offline(NodeInfo),
    /// It sent new info.
    InfoChanged(NodeInfo),
    /// It unbound this device: drop its trust too.
    Unbound {
        /// Its info.
        info: NodeInfo,
        /// Its key.
        key: [u8; 32],
    },
}

/// Who is trusted: the daemon answers from the trusted-device store.
pub trait TrustView: Send + Sync + 'static {
    /// True when `key` belongs to a bound device.
    fn is_trusted(&self, key: &[u8; 32]) -> bool;
}

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// TLS setup.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The UDP socket.
    #[error("bus socket: {0}")]
    Io(#[from] std::io::Error),
    /// Dialing failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The peer is not (or no longer) trusted.
    #[error("device at {0} is not trusted")]
    Untrusted(SocketAddr),
    /// The peer refused us: it does not trust this device.
    #[error("device at {0} refused the connection: it does not trust this device (bind first)")]
    Refused(SocketAddr),
    /// The control handshake failed.
    #[error("handshake with {addr} failed: {reason}")]
    Handshake {
        /// Where.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// The bus centre's core and the connections its links name (exactly those).
struct State {
    core: Center,
    conns: HashMap<ConnId, quinn::Connection>,
}

fn conn_id(conn: &quinn::Connection) -> ConnId {
    conn.stable_id() as ConnId
}

/// An incoming binding connection, for the device-auth layer to run PIN binding on.
pub struct BindIncoming {
    /// The connection (ALPN `oxh-bind/1`).
    pub conn: quinn::Connection,
    /// The key the peer authenticated with.
    pub peer_key: [u8; 32],
}

/// One device's bus endpoint.
pub struct Bus {
    endpoint: quinn::Endpoint,
    key: SigningKey,
    own_key: [u8; 32],
    local: RwLock<NodeInfo>,
    trust: Arc<dyn TrustView>,
    state: Mutex<State>,
    events: broadcast::Sender<BusEvent>,
    transport: Arc<quinn::TransportConfig>,
    /// The transport for loopback peers, and the server configuration that uses it.
    transport_local: Arc<quinn::TransportConfig>,
    server_local: Arc<quinn::ServerConfig>,
    bind_tx: mpsc::Sender<BindIncoming>,
    streams_tx: mpsc::Sender<IncomingStream>,
    /// Woken whenever a connection is registered (see [`crate::center::DUPLICATE_GRACE`]).
    registered: Notify,
    /// Wakes the timer task ([`Bus::drive`]) when an input may have moved the core's deadline.
    wake: Arc<Notify>,
}

/// What the bus hands to the layers above: binding connections and session streams.
pub struct BusChannels {
    /// Incoming PIN-binding connections.
    pub bind: mpsc::Receiver<BindIncoming>,
    /// Incoming session streams from trusted peers.
    pub streams: mpsc::Receiver<IncomingStream>,
}

/// How long an unbinding device waits for the peer to act on its Unbind.
pub const UNBIND_WAIT: Duration = Duration::from_secs(2);

impl Bus {
    /// Opens the endpoint and starts accepting. Incoming binding connections go to the
    /// returned receiver.
    pub fn start(
        cfg: &BusConfig,
        key: SigningKey,
        local: NodeInfo,
        trust: Arc<dyn TrustView>,
    ) -> Result<(Arc<Bus>, BusChannels), BusError> {
        let transport = Arc::new(transport_config(cfg, false));
        let transport_local = Arc::new(transport_config(cfg, true));
        let server_tls = tls::server_config(&key)?;
        let qsc = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|e| BusError::Tls(tls::TlsError::Cert(format!("quic server config: {e}"))))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(qsc));
        server.transport_config(transport.clone());
        limit_incoming(&mut server);
        let mut server_local = server.clone();
        server_local.transport_config(transport_local.clone());
        let endpoint = bind_endpoint(cfg.listen, server)?;
        let own_key = key.verifying_key().to_bytes();
        let mut local = local;
        local.listen_port = endpoint.local_addr()?.port();
        let (events, _) = broadcast::channel(256);
        let (bind_tx, bind_rx) = mpsc::channel(16);
        let (streams_tx, streams_rx) = mpsc::channel(256);
        let bus = Arc::new(Bus {
            endpoint,
            key,
            own_key,
            local: RwLock::new(local),
            trust,
            state: Mutex::new(State {
                core: Center::new(),
                conns: HashMap::new(),
            }),
            events,
            transport,
            transport_local,
            server_local: Arc::new(server_local),
            bind_tx,
            streams_tx,
            registered: Notify::new(),
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(bus.clone().accept_loop());
        tokio::spawn(Bus::drive(Arc::downgrade(&bus), bus.wake.clone()));
        Ok((
            bus,
            BusChannels {
                bind: bind_rx,
                streams: streams_rx,
            },
        ))
    }

    /// The UDP address the bus listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// This device's info as peers see it.
    pub fn local_info(&self) -> NodeInfo {
        self.local
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Online/offline events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.events.subscribe()
    }

    /// The devices online now.
    pub fn online(&self) -> Vec<NodeInfo> {
        self.state
            .lock()
            .map(|s| s.core.links().map(|(_, l)| l.info.clone()).collect())
            .unwrap_or_default()
    }

    /// The connection to an online device, by networkId.
    pub fn connection(&self, network_id: &str) -> Option<(quinn::Connection, NodeInfo)> {
        let s = self.state.lock().ok()?;
        let (_, l) = s
            .core
            .links()
            .find(|(_, l)| l.info.network_id == network_id)?;
        Some((s.conns.get(&l.conn)?.clone(), l.info.clone()))
    }

    /// The device key that authenticated the connection of an online device, by networkId:
    /// what it is, as opposed to the udid its info claims.
    pub fn key_of(&self, network_id: &str) -> Option<[u8; 32]> {
        let s = self.state.lock().ok()?;
        s.core
            .links()
            .find(|(_, l)| l.info.network_id == network_id)
            .map(|(k, _)| *k)
    }

    /// True when the device with this key is online.
    pub fn is_online(&self, key: &[u8; 32]) -> bool {
        self.state
            .lock()
            .map(|s| s.core.is_online(key))
            .unwrap_or(false)
    }

    /// The connection the device with this key is online through.
    fn conn_of(&self, key: &[u8; 32]) -> Option<quinn::Connection> {
        let s = self.state.lock().ok()?;
        s.conns.get(&s.core.link(key)?.conn).cloned()
    }

    /// Closes the connection to a device (after unbinding it, or at shutdown).
    pub fn disconnect(&self, key: &[u8; 32], reason: &str) {
        if let Some(c) = self.conn_of(key) {
            c.close(quinn::VarInt::from_u32(CLOSE_BYE), reason.as_bytes());
        }
    }

    /// Tells an online peer that this device unbound it, waits (at most [`UNBIND_WAIT`]) until
    /// the peer has closed the connection in answer, then closes it.
    pub async fn send_unbind(&self, key: &[u8; 32]) -> bool {
        let Some(c) = self.conn_of(key) else {
            return false;
        };
        let sent = match c.open_uni().await {
            Ok(mut s) => {
                let ok = write_frame(&mut s, &Control::Unbind).await.is_ok();
                let _ = s.finish();
                ok
            }
            Err(_) => false,
        };
        // The peer closes the connection once it has acted on the Unbind. Closing first could
        // win the race against its reading of the stream (the stream's data arrives, but the
        // close is seen first and the Unbind is never read), so wait for its close, bounded.
        if sent {
            let _ = tokio::time::timeout(UNBIND_WAIT, c.closed()).await;
        }
        c.close(quinn::VarInt::from_u32(CLOSE_BYE), b"unbound");
        sent
    }

    /// Sends changed local info to every online peer (INFO_CHANGED on their side).
    pub async fn update_local_info(&self, f: impl FnOnce(&mut NodeInfo)) {
        let info = {
            let Ok(mut l) = self.local.write() else {
                return;
            };
            f(&mut l);
            l.clone()
        };
        let conns: Vec<_> = self
            .state
            .lock()
            .map(|s| s.conns.values().cloned().collect())
            .unwrap_or_default();
        for c in conns {
            if let Ok(mut s) = c.open_uni().await {
                let _ = write_frame(&mut s, &Control::InfoUpdate(info.clone())).await;
                let _ = s.finish();
            }
        }
    }

    fn client_config(
        &self,
        addr: SocketAddr,
        expected: Option<[u8; 32]>,
        alpn: &[u8],
    ) -> Result<quinn::ClientConfig, BusError> {
        let tls = tls::client_config(&self.key, expected, alpn)?;
        let qcc = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| BusError::Tls(tls::TlsError::Cert(format!("quic client config: {e}"))))?;
        let mut c = quinn::ClientConfig::new(Arc::new(qcc));
        c.transport_config(if is_loopback(addr) {
            self.transport_local.clone()
        } else {
            self.transport.clone()
        });
        Ok(c)
    }

    /// Dials a trusted device at `addr`. `expected` pins its key when known; otherwise any
    /// trusted device may answer (static peers). Returns its info once it is online. The bus
    /// centre hears the outcome (its backoff for `addr`).
    pub async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: Option<[u8; 32]>,
    ) -> Result<NodeInfo, BusError> {
        let r = self.dial(addr, expected).await;
        self.apply(|s, now| match &r {
            Ok((key, _)) => s.core.dial_succeeded(addr, *key, now),
            Err(_) => s.core.dial_failed(addr, now),
        });
        r.map(|(_, info)| info)
    }

    /// [`Bus::connect`]'s dial: the key that answered and its info.
    async fn dial(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: Option<[u8; 32]>,
    ) -> Result<([u8; 32], NodeInfo), BusError> {
        let cfg = self.client_config(addr, expected, tls::ALPN_BUS)?;
        let connecting = self
            .endpoint
            .connect_with(cfg, addr, "oxh-device")
            .map_err(|e| BusError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let conn = connecting.await.map_err(|e| BusError::Connect {
            addr,
            reason: e.to_string(),
        })?;
        let key = tls::peer_key(&conn).ok_or(BusError::Untrusted(addr))?;
        if !self.trust.is_trusted(&key) {
            conn.close(
                quinn::VarInt::from_u32(CLOSE_UNTRUSTED),
                b"untrusted device",
            );
            return Err(BusError::Untrusted(addr));
        }
        let hs = |reason: String| match conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c))
                if c.error_code == quinn::VarInt::from_u32(CLOSE_UNTRUSTED) =>
            {
                BusError::Refused(addr)
            }
            _ => BusError::Handshake { addr, reason },
        };
        let hellos = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| hs(e.to_string()))?;
            let hello = Control::Hello {
                version: PROTOCOL_VERSION,
                info: self.local_info(),
            };
            write_frame(&mut send, &hello)
                .await
                .map_err(|e| hs(e.to_string()))?;
            match read_frame::<_, Control>(&mut recv, MAX_CONTROL_FRAME).await {
                Ok(Some(Control::Hello { info, .. })) => Ok(info),
                Ok(_) => Err(hs("peer sent no hello".into())),
                Err(e) => Err(hs(e.to_string())),
            }
        };
        let info = match hellos.await {
            Ok(info) => info,
            // Both sides dialed at once and the peer kept the connection it dialed: that one
            // is the connection to this device now, and the dial succeeded through it.
            Err(e) if closed_as_duplicate(&conn) => {
                return self.replacement(&key, e).await.map(|i| (key, i));
            }
            Err(e) => return Err(e),
        };
        let dialer = self.own_key;
        self.register(key, conn, info.clone(), dialer);
        Ok((key, info))
    }

    /// Dials a device for PIN binding: any key is accepted, and only the binding protocol
    /// may run on the connection.
    pub async fn connect_for_binding(
        &self,
        addr: SocketAddr,
    ) -> Result<(quinn::Connection, [u8; 32]), BusError> {
        let cfg = self.client_config(addr, None, tls::ALPN_BIND)?;
        let conn = self
            .endpoint
            .connect_with(cfg, addr, "oxh-device")
            .map_err(|e| BusError::Connect {
                addr,
                reason: e.to_string(),
            })?
            .await
            .map_err(|e| BusError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let key = tls::peer_key(&conn).ok_or(BusError::Untrusted(addr))?;
        Ok((conn, key))
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.handle_incoming(incoming).await {
                    tracing::debug!(tag = "softbus", "incoming connection refused: {e}");
                }
            });
        }
    }

    async fn handle_incoming(self: Arc<Self>, incoming: quinn::Incoming) -> Result<(), String> {
        let conn = if is_loopback(incoming.remote_address()) {
            incoming.accept_with(self.server_local.clone())
        } else {
            incoming.accept()
        }
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
        let addr = conn.remote_address();
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol)
            .unwrap_or_default();
        let key = tls::peer_key(&conn).ok_or("no device key")?;
        if alpn == tls::ALPN_BIND {
            let _ = self
                .bind_tx
                .send(BindIncoming {
                    conn,
                    peer_key: key,
                })
                .await;
            return Ok(());
        }
        if alpn != tls::ALPN_BUS || !self.trust.is_trusted(&key) {
            tracing::warn!(tag = "softbus", public_addr = %addr, "refused an untrusted device");
            conn.close(
                quinn::VarInt::from_u32(CLOSE_UNTRUSTED),
                b"untrusted device",
            );
            return Err(format!("untrusted device at {addr}"));
        }
        let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(5), conn.accept_bi())
            .await
            .map_err(|_| "no control stream".to_string())?
            .map_err(|e| e.to_string())?;
        let info = match read_frame::<_, Control>(&mut recv, MAX_CONTROL_FRAME).await {
            Ok(Some(Control::Hello { info, .. })) => info,
            _ => {
                conn.close(quinn::VarInt::from_u32(CLOSE_PROTOCOL), b"expected hello");
                return Err("no hello".into());
            }
        };
        let hello = Control::Hello {
            version: PROTOCOL_VERSION,
            info: self.local_info(),
        };
        write_frame(&mut send, &hello)
            .await
            .map_err(|e| e.to_string())?;
        self.register(key, conn, info, key);
        Ok(())
    }

    /// Closes every connection and the endpoint.
    pub fn shutdown(&self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(CLOSE_BYE), b"device shutting down");
    }
}

/// A session stream opened by a trusted peer.
pub struct IncomingStream {
    /// Who opened it.
    pub from: NodeInfo,
    /// Our sending half.
    pub send: quinn::SendStream,
    /// Our receiving half.
    pub recv: quinn::RecvStream,
}

/// Fuzzing hook (fuzz/): decodes a control-stream frame body as the bus does; `Some` (the message
/// encoded again) if it is one.
#[doc(hidden)]
pub fn fuzz_decode_control(body: &[u8]) -> Option<Vec<u8>> {
    let m: Control = wire::decode(body).ok()?;
    postcard::to_allocvec(&m).ok()
}
