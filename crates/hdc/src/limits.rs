//! How many connections hdc's listeners hold, in total and per peer, defined once. A
//! connection holds a TLS state and a read buffer ([`crate::session::TLS_READ_BUFFER`]) from
//! its first byte, before the peer has proved anything, so strangers are bounded here; what a
//! session may hold once it runs is bounded in [`crate::session`] ([`MAX_CHANNELS`],
//! [`MAX_SESSION_BUFFERED`]).
//!
//! [`MAX_CHANNELS`]: crate::session::MAX_CHANNELS
//! [`MAX_SESSION_BUFFERED`]: crate::session::MAX_SESSION_BUFFERED

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections the device side holds at once (handshaking or in session): each costs about
/// 0.5 MiB of buffers, so the device side stays under 32 MiB whatever the network sends.
pub const MAX_DEVICE_CONNECTIONS: usize = 64;
/// Connections one address may hold on the device side: a host needs one session plus one
/// per parallel direct transfer, so one address cannot take every slot.
pub const MAX_DEVICE_CONNECTIONS_PER_PEER: usize = 16;
/// Client connections the host server holds at once (each `hdc` command is one).
pub const MAX_SERVER_CLIENTS: usize = 256;

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every slot is taken.
    #[error("[Fail]too busy: {limit} connections are open (the limit); try again later")]
    Total {
        /// The limit.
        limit: usize,
    },
    /// This peer holds its share.
    #[error("[Fail]too busy: this address holds {limit} connections (the limit per peer)")]
    PerPeer {
        /// The limit.
        limit: usize,
    },
}

/// The counts alone, with no locking or I/O: what [`Limiter`] guards, and what the property
/// test drives.
#[derive(Debug, Clone)]
pub struct Counts<K> {
    total: usize,
    per: HashMap<K, usize>,
    max_total: usize,
    max_per: usize,
}

impl<K: Eq + Hash + Clone> Counts<K> {
    /// No connections, with these limits.
    pub fn new(max_total: usize, max_per: usize) -> Self {
        Counts {
            total: 0,
            per: HashMap::new(),
            max_total,
            max_per,
        }
    }

    /// Takes a slot for `key`, or says which limit is full (and changes nothing).
    pub fn acquire(&mut self, key: &K) -> Result<(), Refusal> {
        if self.total >= self.max_total {
            return Err(Refusal::Total {
                limit: self.max_total,
            });
        }
        let n = self.per.get(key).copied().unwrap_or(0);
        if n >= self.max_per {
            return Err(Refusal::PerPeer {
                limit: self.max_per,
            });
        }
        self.per.insert(key.clone(), n + 1);
        self.total += 1;
        Ok(())
    }

    /// Gives back a slot `key` holds (a key holding none is left alone).
    pub fn release(&mut self, key: &K) {
        if let Some(n) = self.per.get_mut(key) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per.remove(key);
            }
        }
    }

    /// Slots taken.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Slots `key` holds.
    pub fn of(&self, key: &K) -> usize {
        self.per.get(key).copied().unwrap_or(0)
    }

    /// Keys with a slot (none is kept at zero, so the map is bounded by the total).
    pub fn keys(&self) -> usize {
        self.per.len()
    }
}

/// Shared [`Counts`] for a listener; a slot is held by the [`Slot`] guard it returns.
pub struct Limiter<K> {
    counts: Mutex<Counts<K>>,
}

/// One admitted connection; dropping it gives the slot back.
pub struct Slot<K: Eq + Hash + Clone> {
    limiter: Arc<Limiter<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Limiter<K> {
    /// A limiter with these limits.
    pub fn new(max_total: usize, max_per: usize) -> Arc<Self> {
        Arc::new(Limiter {
            counts: Mutex::new(Counts::new(max_total, max_per)),
        })
    }

    /// Admits a connection from `key`, or refuses it.
    pub fn admit(self: &Arc<Self>, key: K) -> Result<Slot<K>, Refusal> {
        let mut c = self
            .counts
            .lock()
            .map_err(|_| Refusal::Total { limit: 0 })?;
        c.acquire(&key)?;
        Ok(Slot {
            limiter: self.clone(),
            key,
        })
    }

    /// Connections held now.
    pub fn total(&self) -> usize {
        self.counts.lock().map(|c| c.total()).unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        if let Ok(mut c) = self.limiter.counts.lock() {
            c.release(&self.key);
        }
    }
}

/// The device side's limiter: per source address.
pub fn device_limiter() -> Arc<Limiter<IpAddr>> {
    Limiter::new(MAX_DEVICE_CONNECTIONS, MAX_DEVICE_CONNECTIONS_PER_PEER)
}

/// The host server's limiter: one key (its clients are all its own user).
pub fn server_limiter() -> Arc<Limiter<()>> {
    Limiter::new(MAX_SERVER_CLIENTS, MAX_SERVER_CLIENTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_past_each_limit_and_frees_on_drop() {
        let l = Limiter::new(3, 2);
        let a1 = l.admit('a').unwrap();
        let _a2 = l.admit('a').unwrap();
        assert_eq!(l.admit('a').err(), Some(Refusal::PerPeer { limit: 2 }));
        let _b1 = l.admit('b').unwrap();
        assert_eq!(l.admit('c').err(), Some(Refusal::Total { limit: 3 }));
        drop(a1);
        assert_eq!(l.total(), 2);
        let _c = l.admit('c').unwrap();
        assert!(
            Refusal::Total { limit: 3 }
                .to_string()
                .starts_with("[Fail]too busy")
        );
    }

    proptest! {
        /// Whatever the order of connects and disconnects: no count exceeds its limit, the
        /// total is the sum of the per-peer counts, a refusal changes nothing, and a slot
        /// comes back exactly when a held one is released.
        #[test]
        fn counts_stay_within_limits_and_balance(
            ops in proptest::collection::vec((any::<bool>(), 0u8..6), 0..400),
            max_total in 1usize..12,
            max_per in 1usize..6,
        ) {
            let mut c = Counts::new(max_total, max_per);
            let mut model: HashMap<u8, usize> = HashMap::new();
            for (connect, k) in ops {
                if connect {
                    let before = c.clone();
                    match c.acquire(&k) {
                        Ok(()) => *model.entry(k).or_default() += 1,
                        Err(_) => {
                            prop_assert_eq!(before.total(), c.total());
                            prop_assert_eq!(before.of(&k), c.of(&k));
                            let full = before.total() >= max_total || before.of(&k) >= max_per;
                            prop_assert!(full);
                        }
                    }
                } else {
                    c.release(&k);
                    if let Some(n) = model.get_mut(&k) {
                        *n -= 1;
                        if *n == 0 {
                            model.remove(&k);
                        }
                    }
                }
                prop_assert!(c.total() <= max_total);
                prop_assert_eq!(c.total(), model.values().sum::<usize>());
                prop_assert_eq!(c.keys(), model.len());
                for (k, n) in &model {
                    prop_assert!(*n <= max_per);
                    prop_assert_eq!(c.of(k), *n);
                }
            }
        }
    }
}
