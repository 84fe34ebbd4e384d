//! Which local user is at the other end of a loopback TCP connection, from the kernel
//! ([`oxh_kal::sockdiag`]): the host server serves only its own user, a client talks only to
//! its own user's server, and `persist.hdc.auth_bypass` trusts only the device's own user on
//! this machine. The checks run on the TCP connection before any protocol byte, so they hold
//! whatever the host server's protocol becomes.

use std::net::SocketAddr;
use tokio::net::TcpStream;

/// The uid owning the socket at the other end of `tcp`, when that end is on this machine.
pub fn peer_uid(tcp: &TcpStream) -> std::io::Result<u32> {
    let (local, peer) = (tcp.local_addr()?, tcp.peer_addr()?);
    oxh_kal::sockdiag::tcp_peer_uid(local, peer)
}

/// Whether `addr` is a loopback address (an IPv4-mapped one too).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The host server's rule: the client must run as the server's own user. `Err` is the
/// message for the refused client.
pub fn check_client(tcp: &TcpStream) -> Result<(), String> {
    let me = oxh_kal::current_uid();
    match peer_uid(tcp) {
        Ok(uid) if uid == me => Ok(()),
        Ok(uid) => Err(format!(
            "[Fail]this hdc server serves only its own user (uid {me}), not uid {uid}: run \
             your own with another port, e.g. OHOS_HDC_SERVER_PORT=8720 hdc start"
        )),
        Err(e) => Err(format!(
            "[Fail]this hdc server serves only its own user (uid {me}), and cannot tell who \
             connected: {e}"
        )),
    }
}

/// The client's rule: the server on `port` must run as this user, or it would see (and
/// could answer) everything this user sends a device.
pub fn check_server(tcp: &TcpStream, port: u16) -> Result<(), String> {
    let me = oxh_kal::current_uid();
    match peer_uid(tcp) {
        Ok(uid) if uid == me => Ok(()),
        Ok(uid) => Err(format!(
            "[Fail]the hdc server on 127.0.0.1:{port} belongs to uid {uid}, not to you (uid \
             {me}); use a port of your own: OHOS_HDC_SERVER_PORT=PORT hdc ..."
        )),
        Err(e) => Err(format!(
            "[Fail]cannot tell who runs the hdc server on 127.0.0.1:{port}: {e}"
        )),
    }
}

/// Whether `persist.hdc.auth_bypass` may let this host in: it is on this machine (loopback)
/// and runs as the device daemon's user or as root, who could read the device's keys anyway.
/// A neighbour on the LAN, or another local user, goes through authorisation.
pub fn bypass_allowed(tcp: &TcpStream) -> bool {
    let Ok(peer) = tcp.peer_addr() else {
        return false;
    };
    if !is_loopback(&peer) {
        return false;
    }
    let me = oxh_kal::current_uid();
    matches!(peer_uid(tcp), Ok(uid) if uid == me || uid == 0)
}
