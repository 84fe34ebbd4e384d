//! Who is on the other end of a loopback TCP connection, asked of the kernel.
//!
//! A Unix socket has SO_PEERCRED; a TCP socket has nothing of the kind, so a server on
//! 127.0.0.1 (hdc's host server) cannot tell its own user from any other local user by the
//! connection alone. The kernel knows: every socket records the uid of the process that made
//! it, and sock_diag (the netlink interface `ss` uses) looks one socket up by its four-tuple
//! and reports that uid. An accepted socket inherits its listener's uid, so the same lookup
//! tells a client who runs the server it reached.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_NOCOOKIE`: match the socket whatever its cookie.
const NO_COOKIE: u32 = u32::MAX;
/// Size of `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// Size of `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// Offset of `idiag_uid` in `struct inet_diag_msg`.
const MSG_UID_AT: usize = 64;

/// The uid of the process that owns the TCP socket at the far end of the connection from
/// `local` to `peer`, both on this machine (a loopback connection, or one to this host's own
/// address). Fails with `NotFound` when no such socket exists here (the peer is on another
/// host, or it has gone).
pub fn tcp_peer_uid(local: SocketAddr, peer: SocketAddr) -> io::Result<u32> {
    // The peer's socket has `peer` as its source and `local` as its destination.
    let (src, dst) = (unmap(peer), unmap(local));
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6,
        _ => return Err(io::Error::new(io::ErrorKind::NotFound, "mixed families")),
    };
    let reply = exchange(&request(family as u8, src, dst))?;
    parse_reply(&reply)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a dual-stack socket connected to
/// 127.0.0.1 is found under AF_INET).
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// One netlink message: a `nlmsghdr` and an exact-match `inet_diag_req_v2` for TCP.
fn request(family: u8, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + REQ_LEN);
    m.extend_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m.push(family);
    m.push(libc::IPPROTO_TCP as u8);
    m.push(0); // no extensions
    m.push(0); // pad
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every TCP state
    m.extend_from_slice(&src.port().to_be_bytes());
    m.extend_from_slice(&dst.port().to_be_bytes());
    m.extend_from_slice(&addr_bytes(src.ip()));
    m.extend_from_slice(&addr_bytes(dst.ip()));
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m
}

/// Sends one request on a fresh NETLINK_SOCK_DIAG socket and returns the first reply.
fn exchange(req: &[u8]) -> io::Result<Vec<u8>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own alone.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // A kernel that does not answer must not hang the caller.
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads one timeval we own.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0, no groups).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `kernel` are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
}

/// The uid in a reply: an `inet_diag_msg`, or an error (ENOENT when no socket matched).
fn parse_reply(b: &[u8]) -> io::Result<u32> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag reply");
    let ty = b
        .get(4..6)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or_else(bad)?;
    if ty == libc::NLMSG_ERROR as u16 {
        let errno = u32_at(b, NLMSG_HDR).ok_or_else(bad)? as i32;
        return Err(io::Error::from_raw_os_error(errno.saturating_neg()));
    }
    if ty != SOCK_DIAG_BY_FAMILY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected sock_diag reply type {ty}"),
        ));
    }
    u32_at(b, NLMSG_HDR + MSG_UID_AT).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_uid_of_both_ends_of_a_loopback_connection() {
        let me = crate::current_uid();
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = std::net::TcpListener::bind(host) else {
                eprintln!("SKIP {host}: cannot listen there");
                continue;
            };
            let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, peer) = l.accept().unwrap();
            // The server asks about the client, and the client about the server.
            assert_eq!(tcp_peer_uid(s.local_addr().unwrap(), peer).unwrap(), me);
            assert_eq!(
                tcp_peer_uid(c.local_addr().unwrap(), c.peer_addr().unwrap()).unwrap(),
                me
            );
            drop(c);
            drop(s);
        }
    }

    #[test]
    fn a_connection_that_is_not_there_is_not_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = l.local_addr().unwrap();
        // A port pair with no connection behind it.
        let e = tcp_peer_uid(local, "127.0.0.1:1".parse().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn another_users_socket_reports_that_user() {
        if !oxh_testkit::require_nobody("another_users_socket_reports_that_user") {
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // The socket belongs to whoever made it: a client process running as nobody.
        let child = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/127.0.0.1/{} && read -t 10 <&3",
                addr.port()
            ))
            .spawn();
        let mut child = child.expect("runuser");
        let (s, peer) = l.accept().unwrap();
        let uid = tcp_peer_uid(s.local_addr().unwrap(), peer);
        drop(s);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(uid.unwrap(), 65534);
    }

    #[test]
    fn garbage_replies_are_errors() {
        assert!(parse_reply(&[]).is_err());
        assert!(parse_reply(&[0; 10]).is_err());
        let mut err = vec![0u8; 20];
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(
            parse_reply(&err).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
