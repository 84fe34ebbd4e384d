//! How many connections hdc's listeners hold, in total and per peer, defined once. A
//! connection holds a TLS state and a read buffer ([`crate::session::TLS_READ_BUFFER`]) from
//! its first byte, before the peer has proved anything, so strangers are bounded here; what a
//! session may hold once it runs is bounded in [`crate::core`] ([`MAX_CHANNELS`],
//! [`MAX_SESSION_BUFFERED`]). The counting is [`oxh_ipc::budget`]'s, as for every server.
//!
//! [`MAX_CHANNELS`]: crate::core::MAX_CHANNELS
//! [`MAX_SESSION_BUFFERED`]: crate::core::MAX_SESSION_BUFFERED

use oxh_ipc::budget::{Grant, Ledger, Limits, Refused, Scope};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

/// Connections the device side holds at once (handshaking or in session): each costs about
/// 0.5 MiB of buffers, so the device side stays under 32 MiB whatever the network sends.
pub const MAX_DEVICE_CONNECTIONS: u64 = 64;
/// Connections one address may hold on the device side: a host needs one session plus one
/// per parallel direct transfer, so one address cannot take every slot.
pub const MAX_DEVICE_CONNECTIONS_PER_PEER: u64 = 16;
/// Client connections the host server holds at once (each `hdc` command is one).
pub const MAX_SERVER_CLIENTS: u64 = 256;

/// Largest directory our host installs on an OpenHarmony device: OpenHarmony's wire takes a
/// directory as one tar whose size goes first, so the tar is built in memory.
pub const MAX_INSTALL_TAR: usize = 512 << 20;

/// Connections one reverse forward to an OpenHarmony device may hold at once (each a task
/// and a queue on the host).
pub const MAX_OHOS_FORWARD_CONTEXTS: usize = 256;

/// Forwarded connections (contexts of `fport`/`rport` rules) one OpenHarmony host session
/// may hold on the device at once: each holds a socket and a channel.
pub const MAX_FORWARD_CONTEXTS: usize = 256;
/// Bytes from an OpenHarmony host that one forwarded connection may have waiting for the
/// device's socket (its wire has no flow control: past this, the host's packets wait).
pub const MAX_FORWARD_CONTEXT_BUFFERED: usize = 1 << 20;
/// The same, for all forwarded connections of one session together.
pub const MAX_FORWARD_SESSION_BUFFERED: usize = 8 << 20;
/// How long a forwarded connection may keep its buffer full (holding the session's reader)
/// before it is freed.
pub const FORWARD_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Answers to OpenHarmony's UDP discovery probe ("OHOS HDC") the device sends per second,
/// at most: an answer goes to whatever address the probe claims, so it is bounded.
pub const MAX_DISCOVERY_ANSWERS_PER_SEC: u32 = 8;

/// One admitted connection; dropping it gives the slot back.
pub type Slot<K> = Grant<K>;

/// A listener's count of connections per peer key.
pub struct Limiter<K: Hash + Eq + Clone> {
    ledger: Arc<Ledger<K>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(total: u64, per_key: u64) -> Self {
        Limiter {
            ledger: Ledger::new(Limits {
                per_key,
                total,
                reserved: 0,
            }),
        }
    }

    /// Admits a connection from `key`, or says why not (in hdc's `[Fail]` style).
    pub fn admit(&self, key: K) -> Result<Slot<K>, String> {
        self.ledger.try_acquire(key, false, 1).map_err(refusal)
    }

    /// Connections held now.
    pub fn total(&self) -> u64 {
        self.ledger.total()
    }
}

fn refusal(r: Refused) -> String {
    match r.scope {
        Scope::Total => format!(
            "[Fail]too busy: {} connections are open (the limit); try again later",
            r.limit
        ),
        Scope::Key => format!(
            "[Fail]too busy: this address holds {} connections (the limit per peer)",
            r.limit
        ),
    }
}

/// The device side's limiter: per source address.
pub fn device_limiter() -> Limiter<IpAddr> {
    Limiter::new(MAX_DEVICE_CONNECTIONS, MAX_DEVICE_CONNECTIONS_PER_PEER)
}

/// The host server's limiter: one key (its clients are all its own user).
pub fn server_limiter() -> Limiter<()> {
    Limiter::new(MAX_SERVER_CLIENTS, MAX_SERVER_CLIENTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_each_limit_and_frees_on_drop() {
        let l = Limiter::new(3, 2);
        let a1 = l.admit('a').unwrap();
        let _a2 = l.admit('a').unwrap();
        assert!(l.admit('a').unwrap_err().contains("limit per peer"));
        let _b1 = l.admit('b').unwrap();
        assert!(
            l.admit('c')
                .unwrap_err()
                .starts_with("[Fail]too busy: 3 connections")
        );
        drop(a1);
        assert_eq!(l.total(), 2);
        let _c = l.admit('c').unwrap();
    }
}
