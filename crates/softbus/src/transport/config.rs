//! The bus's QUIC endpoint and transport configuration, and the limits it puts on what one
//! peer (or anyone who can reach the port) makes the daemon hold inside QUIC.

use super::BusError;
use super::tls;
use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// UDP socket buffer size asked for: bulk transfer on loopback/LAN overruns the default
/// (about 200 KiB) and drops packets.
const UDP_SOCKET_BUFFER: usize = 8 << 20;
/// Largest UDP payload (IPv4 loopback's limit). MTU discovery climbs towards it, so loopback
/// and jumbo-frame LANs carry far fewer, larger packets; ordinary paths settle at their MTU.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 65_507;

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
/// ([`super::session::MAX_SOCKETS_PER_PEER`]), the streams that have not said what they are yet
/// ([`super::session::MAX_PENDING_OPENS_PER_PEER`]) and remote SA call streams. QUIC refuses to let
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
pub(crate) fn limit_incoming(server: &mut quinn::ServerConfig) {
    server
        .max_incoming(MAX_INCOMING_HANDSHAKES)
        .incoming_buffer_size(INCOMING_BUFFER)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
}

/// True for loopback addresses, IPv4-mapped ones included (a dual-stack socket sees those).
pub(super) fn is_loopback(addr: SocketAddr) -> bool {
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
