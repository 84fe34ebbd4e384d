//! The device's answer to OpenHarmony's LAN discovery (developtools_hdc's `daemon_tcp.cpp`,
//! `host_tcp.cpp`). A host looking for devices (`hdc discover`) broadcasts the 8 bytes
//! `"OHOS HDC"` to UDP port 8710. hdcd listens there and answers `"OHOS HDC-<its TCP
//! port>"` to the probe's address, at port 8710 (not the probe's source port: the host
//! listens on 8710 for answers). The host then lists `<address>:<port>`.
//!
//! hdcd answers any datagram that starts with those 8 bytes. Here only the probe itself is
//! answered (optionally NUL-terminated). That way another device's answer, which also
//! starts with them, is not answered in turn, and two devices on one machine do not answer
//! each other forever. Answers are also capped per second
//! ([`MAX_DISCOVERY_ANSWERS_PER_SEC`]): a UDP source address can be forged, so this port
//! must not become a way to send traffic at someone else.

use crate::limits::MAX_DISCOVERY_ANSWERS_PER_SEC;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// hdc's `DEFAULT_PORT`: where probes go and answers come back.
pub const DISCOVERY_PORT: u16 = 8710;
/// Parameter naming another UDP port for discovery (read when the daemon starts; "0" turns
/// discovery off). OpenHarmony's hosts probe only 8710.
pub const DISCOVERY_PORT_PARAM: &str = "persist.hdc.discovery_port";
/// hdc's `HANDSHAKE_MESSAGE`, the probe.
pub const PROBE: &[u8] = b"OHOS HDC";

/// Whether a datagram is the probe.
pub fn is_probe(d: &[u8]) -> bool {
    d.strip_prefix(PROBE)
        .is_some_and(|rest| rest.iter().all(|&b| b == 0))
}

/// The answer for a device whose hdc listens on TCP `port`.
pub fn answer(port: u16) -> Vec<u8> {
    format!("OHOS HDC-{port}").into_bytes()
}

/// At most [`MAX_DISCOVERY_ANSWERS_PER_SEC`] answers in any one-second window.
#[derive(Debug, Default)]
pub struct RateLimit {
    window: Option<Instant>,
    sent: u32,
}

impl RateLimit {
    /// Whether one more answer may go out at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.window {
            Some(w) if now.duration_since(w) < Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.sent = 0;
            }
        }
        if self.sent >= MAX_DISCOVERY_ANSWERS_PER_SEC {
            return false;
        }
        self.sent += 1;
        true
    }
}

/// Binds the discovery socket as hdcd does (address reuse, so several daemons and a host
/// can share the port on one machine).
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Answers probes on `sock` for a device whose hdc listens on TCP `tcp_port`; the answers go
/// to each probe's address at `reply_port`.
pub async fn serve(sock: tokio::net::UdpSocket, tcp_port: u16, reply_port: u16) {
    let mut limit = RateLimit::default();
    let reply = answer(tcp_port);
    // Longer than any probe: a longer datagram is cut, and then is not a probe.
    let mut buf = [0u8; 64];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !is_probe(&buf[..n]) || n == buf.len() || !limit.allow(Instant::now()) {
            continue;
        }
        let to = SocketAddr::new(from.ip(), reply_port);
        if let Err(e) = sock.send_to(&reply, to).await {
            tracing::debug!(tag = "hdcd", "discovery answer to {to}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_probe_is_answered() {
        assert!(is_probe(b"OHOS HDC"));
        assert!(is_probe(b"OHOS HDC\0"));
        assert!(!is_probe(b"OHOS HDC-8710"), "another device's answer");
        assert!(!is_probe(b"OHOS HD"));
        assert!(!is_probe(b""));
        assert_eq!(answer(8711), b"OHOS HDC-8711");
    }

    #[test]
    fn answers_are_capped_per_second() {
        let mut l = RateLimit::default();
        let t0 = Instant::now();
        for _ in 0..MAX_DISCOVERY_ANSWERS_PER_SEC {
            assert!(l.allow(t0));
        }
        assert!(!l.allow(t0 + Duration::from_millis(999)));
        assert!(l.allow(t0 + Duration::from_secs(1)));
    }
}
