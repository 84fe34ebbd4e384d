//! The bus transport: one QUIC endpoint per device, one mutually authenticated connection per
//! pair of trusted devices, shared by every session between them.
//!
//! A connection starts with a control stream opened by the dialer, on which both sides send a
//! `Hello` with their [`NodeInfo`]; that is when the peer goes ONLINE. Keep-alives run every
//! heartbeat and the idle timeout is a few heartbeats, so a peer that vanishes goes OFFLINE
//! within the idle timeout. If both sides dial at once, the connection dialed by the device with
//! the smaller key wins on both sides, so they converge on one.

pub mod session;
pub(crate) mod socket;
pub mod tls;
pub mod wire;

/// The QUIC implementation the bus runs on, for benchmarks that measure it under the bus's own
/// configuration ([`transport_config`], [`bind_endpoint`], [`probe_pair`]).
pub use quinn;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
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

/// Timing of the bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Keep-alive interval: the heartbeat.
    pub heartbeat: Duration,
    /// Missing heartbeats after this long mean the peer is gone (OFFLINE).
    pub idle_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            heartbeat: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(2000),
        }
    }
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

struct Peer {
    conn: quinn::Connection,
    info: NodeInfo,
    dialer_key: [u8; 32],
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
    peers: Mutex<HashMap<[u8; 32], Peer>>,
    events: broadcast::Sender<BusEvent>,
    transport: Arc<quinn::TransportConfig>,
    /// The transport for loopback peers, and the server configuration that uses it.
    transport_local: Arc<quinn::TransportConfig>,
    server_local: Arc<quinn::ServerConfig>,
    bind_tx: mpsc::Sender<BindIncoming>,
    streams_tx: mpsc::Sender<IncomingStream>,
    /// Woken whenever a connection is registered (see [`DUPLICATE_GRACE`]).
    registered: tokio::sync::Notify,
}

/// When both sides dial at once, each keeps the connection dialed by the smaller key. A side
/// that registered the losing connection first sees the peer close it as a duplicate, maybe
/// before the winner reaches it: it waits this long for the winner before calling the peer
/// OFFLINE, so the race does not show as an OFFLINE/ONLINE flap. The winner is a handshake
/// already under way, normally milliseconds behind; 5 s covers a loaded 2-core machine (2 s
/// did not: one run in a few flapped while builds ran beside it). A peer that vanishes in
/// exactly this race is called OFFLINE that much later.
const DUPLICATE_GRACE: Duration = Duration::from_secs(5);

/// What the bus hands to the layers above: binding connections and session streams.
pub struct BusChannels {
    /// Incoming PIN-binding connections.
    pub bind: mpsc::Receiver<BindIncoming>,
    /// Incoming session streams from trusted peers.
    pub streams: mpsc::Receiver<IncomingStream>,
}

/// How long an unbinding device waits for the peer to act on its Unbind.
pub const UNBIND_WAIT: Duration = Duration::from_secs(2);

/// UDP socket buffer size asked for: bulk transfer on loopback/LAN overruns the default
/// (about 200 KiB) and drops packets.
const UDP_SOCKET_BUFFER: usize = 8 << 20;
/// Largest UDP payload (IPv4 loopback's limit). MTU discovery climbs towards it, so loopback
/// and jumbo-frame LANs carry far fewer, larger packets; ordinary paths settle at their MTU.
const MAX_UDP_PAYLOAD: u16 = 65_507;

/// The bus's UDP socket, with large buffers, wrapped in a quinn endpoint.
pub fn bind_endpoint(
    addr: SocketAddr,
    server: quinn::ServerConfig,
) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(false);
    }
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = sock.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_SOCKET_BUFFER);
    sock.bind(&addr.into())?;
    let mut ep = quinn::EndpointConfig::default();
    let _ = ep.max_udp_payload_size(MAX_UDP_PAYLOAD);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the bus"))?;
    quinn::Endpoint::new(ep, Some(server), sock.into(), runtime)
}

/// The peer closed `conn` as the losing one of two simultaneous dials.
fn closed_as_duplicate(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(ref c))
            if c.error_code == quinn::VarInt::from_u32(CLOSE_DUPLICATE)
    )
}

/// Largest datagram on a path that is not loopback: quinn sends up to 10 datagrams in one
/// GSO batch, and the kernel takes at most 64 KiB per batch, so larger datagrams would make
/// batches fail. Jumbo-frame LANs still get 6.5 KB datagrams.
const MAX_GSO_PAYLOAD: u16 = 6_500;

/// The bus's QUIC transport settings: one set for loopback peers (`local`), one for the rest.
///
/// Loopback takes 64 KiB datagrams, and with datagrams that large GSO batching stops paying
/// and starts failing (batches over the kernel's 64 KiB limit); measured with the soft bus
/// bench's raw quinn figure, 1 GiB over one connection: 420 MB/s with GSO, 1.4-3.3 GB/s
/// without. Other paths keep GSO, with MTU discovery capped so a batch fits.
pub fn transport_config(cfg: &BusConfig, local: bool) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    if local {
        mtu.upper_bound(MAX_UDP_PAYLOAD);
        t.enable_segmentation_offload(false);
    } else {
        mtu.upper_bound(MAX_GSO_PAYLOAD);
    }
    t.mtu_discovery_config(Some(mtu));
    t.keep_alive_interval(Some(cfg.heartbeat));
    if let Ok(idle) = quinn::IdleTimeout::try_from(cfg.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    // Windows sized for LAN/loopback bulk transfer rather than the internet defaults; they
    // are also what QUIC buffers for one peer before the socket layer takes it.
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    t.receive_window(quinn::VarInt::from_u32(RECEIVE_WINDOW));
    t.send_window(SEND_WINDOW);
    t.datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS_PER_PEER));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_CONTROL_STREAMS_PER_PEER));
    t
}

/// Bytes QUIC buffers for one stream (socket) that its reader has not taken: 16 MiB keeps
/// a 4 MiB payload stream at full speed on loopback with a window of round trips to spare.
const STREAM_RECEIVE_WINDOW: u32 = 16 << 20;
/// Bytes QUIC buffers for one peer's connection, all streams together, unread: the most one
/// peer makes this daemon hold inside QUIC. 64 MiB, measured for 1.2 GB/s app to app.
const RECEIVE_WINDOW: u32 = 64 << 20;
/// Bytes sent and not yet acknowledged on one connection.
const SEND_WINDOW: u64 = 64 << 20;
/// Bytes of received datagrams (SendStream) not yet read; past it QUIC drops the oldest.
const DATAGRAM_RECEIVE_BUFFER: usize = 4 << 20;
/// Bidirectional streams one peer may have open at once: its sockets
/// ([`session::MAX_SOCKETS_PER_PEER`]), the streams that have not said what they are yet
/// ([`session::MAX_PENDING_OPENS_PER_PEER`]) and remote SA call streams. QUIC refuses to let
/// the peer open more until some close (it waits, no error); each costs a task and state.
const MAX_STREAMS_PER_PEER: u32 = 256;
/// Unidirectional streams one peer may have open at once: only info updates and unbind use
/// them, one message each.
const MAX_CONTROL_STREAMS_PER_PEER: u32 = 8;
/// QUIC handshakes in progress at once, from anyone who can reach the port (binding and
/// untrusted devices included): each holds TLS state until it completes or is refused.
const MAX_INCOMING_HANDSHAKES: usize = 64;
/// Bytes buffered for one handshake in progress, and for all of them.
const INCOMING_BUFFER: u64 = 1 << 20;
/// See [`INCOMING_BUFFER`].
const INCOMING_BUFFER_TOTAL: u64 = 16 << 20;

/// The server side's limits on connections being set up.
fn limit_incoming(server: &mut quinn::ServerConfig) {
    server
        .max_incoming(MAX_INCOMING_HANDSHAKES)
        .incoming_buffer_size(INCOMING_BUFFER)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
}

/// True for loopback addresses, IPv4-mapped ones included (a dual-stack socket sees those).
fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Two endpoints on loopback with the bus's TLS (device certificates, TLS 1.3, ALPN
/// [`tls::ALPN_BUS`]) and the transport `t`: (server, client, the client's config with the
/// server's key pinned, the server's address). Benchmarks use it to measure quinn itself under
/// the bus's configuration, without the session layer, IPC or other processes.
pub fn probe_pair(
    t: quinn::TransportConfig,
) -> Result<
    (
        quinn::Endpoint,
        quinn::Endpoint,
        quinn::ClientConfig,
        SocketAddr,
    ),
    BusError,
> {
    let t = Arc::new(t);
    let skey = SigningKey::from_bytes(&[0x51; 32]);
    let ckey = SigningKey::from_bytes(&[0x52; 32]);
    let tls_err = |e: String| BusError::Tls(tls::TlsError::Cert(e));
    let qsc = quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(&skey)?)
        .map_err(|e| tls_err(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(qsc));
    server.transport_config(t.clone());
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let se = bind_endpoint(loopback, server.clone())?;
    let ce = bind_endpoint(loopback, server)?;
    let expected = skey.verifying_key().to_bytes();
    let qcc = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(
        &ckey,
        Some(expected),
        tls::ALPN_BUS,
    )?)
    .map_err(|e| tls_err(e.to_string()))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(qcc));
    cc.transport_config(t);
    let addr = se.local_addr()?;
    Ok((se, ce, cc, addr))
}

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
            peers: Mutex::new(HashMap::new()),
            events,
            transport,
            transport_local,
            server_local: Arc::new(server_local),
            bind_tx,
            streams_tx,
            registered: tokio::sync::Notify::new(),
        });
        tokio::spawn(bus.clone().accept_loop());
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
        self.peers
            .lock()
            .map(|p| p.values().map(|p| p.info.clone()).collect())
            .unwrap_or_default()
    }

    /// The connection to an online device, by networkId.
    pub fn connection(&self, network_id: &str) -> Option<(quinn::Connection, NodeInfo)> {
        let peers = self.peers.lock().ok()?;
        peers
            .values()
            .find(|p| p.info.network_id == network_id)
            .map(|p| (p.conn.clone(), p.info.clone()))
    }

    /// The device key that authenticated the connection of an online device, by networkId:
    /// what it is, as opposed to the udid its info claims.
    pub fn key_of(&self, network_id: &str) -> Option<[u8; 32]> {
        let peers = self.peers.lock().ok()?;
        peers
            .iter()
            .find(|(_, p)| p.info.network_id == network_id)
            .map(|(k, _)| *k)
    }

    /// True when the device with this key is online.
    pub fn is_online(&self, key: &[u8; 32]) -> bool {
        self.peers
            .lock()
            .map(|p| p.contains_key(key))
            .unwrap_or(false)
    }

    /// Closes the connection to a device (after unbinding it, or at shutdown).
    pub fn disconnect(&self, key: &[u8; 32], reason: &str) {
        let conn = self
            .peers
            .lock()
            .ok()
            .and_then(|p| p.get(key).map(|p| p.conn.clone()));
        if let Some(c) = conn {
            c.close(quinn::VarInt::from_u32(CLOSE_BYE), reason.as_bytes());
        }
    }

    /// Tells an online peer that this device unbound it, waits (at most [`UNBIND_WAIT`]) until
    /// the peer has closed the connection in answer, then closes it.
    pub async fn send_unbind(&self, key: &[u8; 32]) -> bool {
        let conn = self
            .peers
            .lock()
            .ok()
            .and_then(|p| p.get(key).map(|p| p.conn.clone()));
        let Some(c) = conn else { return false };
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
            .peers
            .lock()
            .map(|p| p.values().map(|p| p.conn.clone()).collect())
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
    /// trusted device may answer (static peers). Returns its info once it is online.
    pub async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: Option<[u8; 32]>,
    ) -> Result<NodeInfo, BusError> {
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
            Err(e) if closed_as_duplicate(&conn) => return self.replacement(&key, e).await,
            Err(e) => return Err(e),
        };
        let dialer = self.own_key;
        self.register(key, conn, info.clone(), dialer);
        Ok(info)
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

    fn register(
        self: &Arc<Self>,
        key: [u8; 32],
        conn: quinn::Connection,
        info: NodeInfo,
        dialer_key: [u8; 32],
    ) {
        let mut was_online = false;
        let mut restarted: Option<NodeInfo> = None;
        {
            let Ok(mut peers) = self.peers.lock() else {
                return;
            };
            if let Some(existing) = peers.get(&key)
                && existing.conn.close_reason().is_none()
            {
                if existing.info.network_id == info.network_id {
                    // Same run of the peer: both sides dialed at once, and the connection
                    // dialed by the smaller key wins on both sides.
                    was_online = true;
                    if existing.dialer_key <= dialer_key
                        && existing.conn.stable_id() != conn.stable_id()
                    {
                        conn.close(quinn::VarInt::from_u32(CLOSE_DUPLICATE), b"duplicate");
                        return;
                    }
                } else {
                    // A new networkId: the peer restarted and the old connection is dead,
                    // even if its idle timeout has not fired yet.
                    restarted = Some(existing.info.clone());
                }
                existing
                    .conn
                    .close(quinn::VarInt::from_u32(CLOSE_DUPLICATE), b"duplicate");
            }
            peers.insert(
                key,
                Peer {
                    conn: conn.clone(),
                    info: info.clone(),
                    dialer_key,
                },
            );
        }
        self.registered.notify_waiters();
        if let Some(old) = restarted {
            let _ = self.events.send(BusEvent::Offline(old));
        }
        if !was_online {
            tracing::info!(
                tag = "softbus",
                public_name = info.name.as_str(),
                public_network_id = info.network_id.as_str(),
                "device online"
            );
            let _ = self.events.send(BusEvent::Online(info.clone()));
        }
        let me = self.clone();
        tokio::spawn(me.watch(key, conn));
    }

    /// Serves one connection until it ends: info updates, incoming sessions, then OFFLINE.
    async fn watch(self: Arc<Self>, key: [u8; 32], conn: quinn::Connection) {
        loop {
            tokio::select! {
                _ = conn.closed() => break,
                s = conn.accept_uni() => match s {
                    Ok(mut s) => {
                        match read_frame::<_, Control>(&mut s, MAX_CONTROL_FRAME).await {
                            Ok(Some(Control::InfoUpdate(new))) => self.info_changed(&key, &conn, new),
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
        if closed_as_duplicate(&conn) {
            self.await_replacement(&key, &conn).await;
        }
        let removed = self.peers.lock().ok().and_then(|mut p| {
            if p.get(&key).map(|e| e.conn.stable_id()) == Some(conn.stable_id()) {
                p.remove(&key)
            } else {
                None
            }
        });
        if let Some(p) = removed {
            tracing::info!(
                tag = "softbus",
                public_name = p.info.name.as_str(),
                public_network_id = p.info.network_id.as_str(),
                "device offline"
            );
            let _ = self.events.send(BusEvent::Offline(p.info));
        }
    }

    fn is_current(&self, key: &[u8; 32], conn: &quinn::Connection) -> bool {
        self.peers
            .lock()
            .ok()
            .and_then(|p| p.get(key).map(|e| e.conn.stable_id()))
            == Some(conn.stable_id())
    }

    /// Waits (at most [`DUPLICATE_GRACE`]) until `conn` is no longer the peer's connection.
    async fn await_replacement(&self, key: &[u8; 32], conn: &quinn::Connection) {
        self.within_grace(|| (!self.is_current(key, conn)).then_some(()))
            .await;
    }

    /// The info of the live connection the peer `key` won the duplicate-dial tie-break with,
    /// once it is registered (at most [`DUPLICATE_GRACE`]); else `err`.
    async fn replacement(&self, key: &[u8; 32], err: BusError) -> Result<NodeInfo, BusError> {
        self.within_grace(|| {
            self.peers.lock().ok().and_then(|p| {
                p.get(key)
                    .filter(|p| p.conn.close_reason().is_none())
                    .map(|p| p.info.clone())
            })
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

    fn peer_info(&self, key: &[u8; 32]) -> Option<NodeInfo> {
        self.peers.lock().ok()?.get(key).map(|p| p.info.clone())
    }

    fn info_changed(&self, key: &[u8; 32], conn: &quinn::Connection, new: NodeInfo) {
        let changed = self.peers.lock().ok().and_then(|mut p| {
            let e = p.get_mut(key)?;
            if e.conn.stable_id() != conn.stable_id() || e.info == new {
                return None;
            }
            e.info = new.clone();
            Some(new)
        });
        if let Some(i) = changed {
            let _ = self.events.send(BusEvent::InfoChanged(i));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    struct Keys(Mutex<HashSet<[u8; 32]>>);
    impl TrustView for Keys {
        fn is_trusted(&self, key: &[u8; 32]) -> bool {
            self.0.lock().unwrap().contains(key)
        }
    }

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            network_id: format!("net-{name}"),
            udid: format!("udid-{name}"),
            name: name.into(),
            device_type: "pc".into(),
            device_type_id: 0x0C,
            os_version: "test".into(),
            capabilities: vec![],
            sa_list: vec![],
            listen_port: 0,
            advert_key: oxh_devauth::AdvertKey([7; 32]),
        }
    }

    struct Dev {
        bus: Arc<Bus>,
        trust: Arc<Keys>,
        key: [u8; 32],
        _ch: BusChannels,
    }

    fn dev(name: &str, seed: u8) -> Dev {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let key = sk.verifying_key().to_bytes();
        let trust = Arc::new(Keys(Mutex::new(HashSet::new())));
        let cfg = BusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(500),
        };
        let (bus, ch) = Bus::start(&cfg, sk, node(name), trust.clone()).unwrap();
        Dev {
            bus,
            trust,
            key,
            _ch: ch,
        }
    }

    async fn next_event(rx: &mut broadcast::Receiver<BusEvent>) -> BusEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event within 5 s")
            .expect("channel open")
    }

    #[tokio::test]
    async fn trusted_pair_goes_online_then_offline() {
        let a = dev("a", 1);
        // b lives on its own runtime, so that dropping the runtime makes it vanish without a
        // goodbye, as a crashed or unplugged device does.
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let a_key = a.key;
        let th = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let b = rt.block_on(async { dev("b", 2) });
            b.trust.0.lock().unwrap().insert(a_key);
            tx.send((b.key, b.bus.local_addr().unwrap(), b.bus.clone()))
                .unwrap();
            let _ = stop_rx.recv();
            drop(rt);
        });
        let (b_key, b_addr, b_bus) = rx.recv().unwrap();
        a.trust.0.lock().unwrap().insert(b_key);
        let mut ea = a.bus.subscribe();
        let mut eb = b_bus.subscribe();
        let info = a.bus.connect(b_addr, Some(b_key)).await.unwrap();
        assert_eq!(info.name, "b");
        assert!(matches!(next_event(&mut ea).await, BusEvent::Online(i) if i.name == "b"));
        assert!(matches!(next_event(&mut eb).await, BusEvent::Online(i) if i.name == "a"));
        assert_eq!(b_bus.local_info().listen_port, b_addr.port());
        // Info changes reach the peer.
        let b2 = b_bus.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(b2.update_local_info(|i| i.name = "b2".into()));
            let _ = done_tx.send(());
        });
        let ev = next_event(&mut ea).await;
        assert!(
            matches!(ev, BusEvent::InfoChanged(ref i) if i.name == "b2"),
            "{ev:?}"
        );
        let _ = done_rx.await;
        // b vanishes: a sees OFFLINE after the idle timeout (500 ms here).
        let t = std::time::Instant::now();
        stop_tx.send(()).unwrap();
        th.join().unwrap();
        let ev = next_event(&mut ea).await;
        assert!(
            matches!(ev, BusEvent::Offline(ref i) if i.name == "b2"),
            "{ev:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(a.bus.online().is_empty());
    }

    #[tokio::test]
    async fn untrusted_devices_are_refused_both_ways() {
        let a = dev("a", 3);
        let b = dev("b", 4);
        // a trusts b, b does not trust a: b refuses the connection after the handshake.
        a.trust.0.lock().unwrap().insert(b.key);
        let e = a
            .bus
            .connect(b.bus.local_addr().unwrap(), Some(b.key))
            .await;
        assert!(matches!(e, Err(BusError::Refused(_))), "{:?}", e.err());
        assert!(b.bus.online().is_empty());
        assert!(a.bus.online().is_empty());
        // c trusts nobody; a trusts c: c refuses a's certificate itself.
        let c = dev("c", 5);
        a.trust.0.lock().unwrap().insert(c.key);
        let e = c.bus.connect(a.bus.local_addr().unwrap(), None).await;
        assert!(matches!(e, Err(BusError::Untrusted(_))), "{:?}", e.err());
        // Pinning another key than the server's fails in the TLS handshake.
        c.trust.0.lock().unwrap().insert(a.key);
        let e = c
            .bus
            .connect(a.bus.local_addr().unwrap(), Some(b.key))
            .await;
        assert!(matches!(e, Err(BusError::Connect { .. })), "{:?}", e.err());
        // And with the right pin it works.
        c.bus
            .connect(a.bus.local_addr().unwrap(), Some(a.key))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn simultaneous_dials_converge_on_one_connection() {
        // Several rounds: which connection each side registers first varies run to run.
        for round in 0..8u8 {
            let a = dev("a", 6 + 2 * round);
            let b = dev("b", 7 + 2 * round);
            a.trust.0.lock().unwrap().insert(b.key);
            b.trust.0.lock().unwrap().insert(a.key);
            let (mut ea, mut eb) = (a.bus.subscribe(), b.bus.subscribe());
            let (ra, rb) = tokio::join!(
                a.bus.connect(b.bus.local_addr().unwrap(), Some(b.key)),
                b.bus.connect(a.bus.local_addr().unwrap(), Some(a.key))
            );
            assert!(ra.is_ok() && rb.is_ok(), "round {round}: {ra:?} {rb:?}");
            // Converged: both sides hold a live connection, the same one (same dialer).
            let dialer = |d: &Dev| {
                let p = d.bus.peers.lock().unwrap();
                p.values()
                    .next()
                    .filter(|p| p.conn.close_reason().is_none())
                    .map(|p| p.dialer_key)
            };
            let wait = async {
                loop {
                    if let (Some(x), Some(y)) = (dialer(&a), dialer(&b))
                        && x == y
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .unwrap();
            assert_eq!(a.bus.online().len(), 1);
            assert_eq!(b.bus.online().len(), 1);
            // Each side said ONLINE once and never OFFLINE: the race is invisible above.
            for (name, rx) in [("a", &mut ea), ("b", &mut eb)] {
                let mut seen = Vec::new();
                // Only presence counts here: an info update (e.g. a learned advert key) may
                // come too.
                while let Ok(ev) = rx.try_recv() {
                    match ev {
                        BusEvent::Online(_) => seen.push("online"),
                        BusEvent::Offline(_) => seen.push("offline"),
                        _ => {}
                    }
                }
                assert_eq!(seen, ["online"], "round {round}, side {name}");
            }
        }
    }
}

/// Two trusted buses on loopback, connected, with their socket tables (for tests).
#[cfg(test)]
pub(crate) mod tests_support {
    use super::session::Sessions;
    use super::*;

    struct All;
    impl TrustView for All {
        fn is_trusted(&self, _key: &[u8; 32]) -> bool {
            true
        }
    }

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            network_id: format!("net-{name}"),
            udid: format!("udid-{name}"),
            name: name.into(),
            device_type: "pc".into(),
            device_type_id: 0x0C,
            os_version: "test".into(),
            capabilities: vec![],
            sa_list: vec![],
            listen_port: 0,
            advert_key: oxh_devauth::AdvertKey([7; 32]),
        }
    }

    /// a and b, online to each other.
    pub(crate) async fn pair() -> (Arc<Bus>, Arc<Bus>, Arc<Sessions>, Arc<Sessions>) {
        let cfg = BusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Default::default()
        };
        let (a, ca) = Bus::start(
            &cfg,
            SigningKey::from_bytes(&[11; 32]),
            node("a"),
            Arc::new(All),
        )
        .unwrap();
        let (b, cb) = Bus::start(
            &cfg,
            SigningKey::from_bytes(&[12; 32]),
            node("b"),
            Arc::new(All),
        )
        .unwrap();
        let sa = Sessions::start(a.clone(), ca.streams);
        let sb = Sessions::start(b.clone(), cb.streams);
        a.connect(b.local_addr().unwrap(), None).await.unwrap();
        // b registers a when its side of the hello completes.
        let mut rx = b.subscribe();
        if !b.is_online(&a.own_key) {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        }
        (a, b, sa, sb)
    }
}
