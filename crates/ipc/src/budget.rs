//! Accounting of what callers make a server hold (connections, buffered bytes, pending calls),
//! as a pure core: a [`Ledger`] counts units per key (a uid, a peer device) and in total, and
//! every unit taken is a [`Grant`] that gives it back when dropped, so nothing can leak on an
//! early return, a cancelled task or a closed connection.
//!
//! The limits themselves are constants next to the code that enforces them (the IPC server,
//! the soft bus); this module only counts.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// The limits of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most one key may hold; privileged holders are not bound by it.
    pub per_key: u64,
    /// Most all keys together may hold.
    pub total: u64,
    /// Of `total`, what only privileged holders may take: root or the daemon's own uid keeps
    /// working while strangers hold everything they may.
    pub reserved: u64,
}

/// Which limit refused an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The key's own limit ([`Limits::per_key`]).
    Key,
    /// The shared limit ([`Limits::total`], less the reserve for the unprivileged).
    Total,
}

/// An acquire that would pass a limit; nothing was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{held} held, {want} more asked, limit {limit}")]
pub struct Refused {
    /// Which limit.
    pub scope: Scope,
    /// What the key (for [`Scope::Key`]) or everyone (for [`Scope::Total`]) held.
    pub held: u64,
    /// What was asked for.
    pub want: u64,
    /// The limit that applied.
    pub limit: u64,
}

#[derive(Debug)]
struct State<K> {
    total: u64,
    by_key: HashMap<K, u64>,
}

/// Counts of one resource per key and in total, shared by everyone who takes from it.
#[derive(Debug)]
pub struct Ledger<K> {
    limits: Limits,
    state: Mutex<State<K>>,
    /// Woken whenever something is given back, for takers that wait for room.
    freed: tokio::sync::Notify,
}

impl<K: Hash + Eq + Clone> Ledger<K> {
    /// An empty ledger with these limits.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State {
                total: 0,
                by_key: HashMap::new(),
            }),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts are plain integers updated under the lock in one step each, so a poisoned
    /// lock still holds consistent counts.
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `key` holds now.
    pub fn held(&self, key: &K) -> u64 {
        self.lock().by_key.get(key).copied().unwrap_or(0)
    }

    /// What everyone holds now.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// Keys holding anything (a key is forgotten when it holds nothing again).
    pub fn keys(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether `n` more for `key` would pass a limit, given the current counts.
    fn check(&self, st: &State<K>, key: &K, privileged: bool, n: u64) -> Result<(), Refused> {
        let l = self.limits;
        let total_limit = if privileged {
            l.total
        } else {
            l.total.saturating_sub(l.reserved)
        };
        if !privileged {
            let held = st.by_key.get(key).copied().unwrap_or(0);
            if held.saturating_add(n) > l.per_key {
                return Err(Refused {
                    scope: Scope::Key,
                    held,
                    want: n,
                    limit: l.per_key,
                });
            }
        }
        if st.total.saturating_add(n) > total_limit {
            return Err(Refused {
                scope: Scope::Total,
                held: st.total,
                want: n,
                limit: total_limit,
            });
        }
        Ok(())
    }

    fn add(st: &mut State<K>, key: &K, n: u64) {
        if n == 0 {
            return;
        }
        st.total += n;
        *st.by_key.entry(key.clone()).or_insert(0) += n;
    }

    fn release(&self, key: &K, n: u64) {
        if n == 0 {
            return;
        }
        {
            let mut st = self.lock();
            // Grants are the only way to add, and each gives back what it took, once: these
            // never go below zero; saturate anyway rather than panic in a destructor.
            st.total = st.total.saturating_sub(n);
            if let Some(h) = st.by_key.get_mut(key) {
                *h = h.saturating_sub(n);
                if *h == 0 {
                    st.by_key.remove(key);
                }
            }
        }
        self.freed.notify_waiters();
    }

    /// Takes `n` for `key` if that passes no limit.
    pub fn try_acquire(
        self: &Arc<Self>,
        key: K,
        privileged: bool,
        n: u64,
    ) -> Result<Grant<K>, Refused> {
        let mut st = self.lock();
        self.check(&st, &key, privileged, n)?;
        Self::add(&mut st, &key, n);
        drop(st);
        Ok(Grant {
            ledger: self.clone(),
            key,
            privileged,
            n,
        })
    }

    /// Takes `n` for `key`, waiting while that would pass a limit (back-pressure). Fails at
    /// once if `n` could never fit, even with nothing else held.
    pub async fn acquire(
        self: &Arc<Self>,
        key: K,
        privileged: bool,
        n: u64,
    ) -> Result<Grant<K>, Refused> {
        let l = self.limits;
        let cap = if privileged {
            l.total
        } else {
            l.per_key.min(l.total.saturating_sub(l.reserved))
        };
        if n > cap {
            return Err(Refused {
                scope: if privileged || l.per_key >= l.total.saturating_sub(l.reserved) {
                    Scope::Total
                } else {
                    Scope::Key
                },
                held: 0,
                want: n,
                limit: cap,
            });
        }
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_acquire(key.clone(), privileged, n) {
                Ok(g) => return Ok(g),
                Err(_) => freed.await,
            }
        }
    }
}

/// Units taken from a [`Ledger`]; given back when dropped.
#[derive(Debug)]
pub struct Grant<K: Hash + Eq + Clone> {
    ledger: Arc<Ledger<K>>,
    key: K,
    privileged: bool,
    n: u64,
}

impl<K: Hash + Eq + Clone> Grant<K> {
    /// How many units it holds.
    pub fn amount(&self) -> u64 {
        self.n
    }

    /// Takes `n` more into this grant if that passes no limit.
    pub fn try_grow(&mut self, n: u64) -> Result<(), Refused> {
        let mut st = self.ledger.lock();
        self.ledger.check(&st, &self.key, self.privileged, n)?;
        Ledger::add(&mut st, &self.key, n);
        self.n += n;
        Ok(())
    }

    /// Gives back `n` of its units now (all of them if it holds fewer).
    pub fn shrink(&mut self, n: u64) {
        let n = n.min(self.n);
        self.n -= n;
        self.ledger.release(&self.key, n);
    }

    /// Moves `n` of its units (all if it holds fewer) into a new grant, e.g. the bytes of one
    /// frame out of a connection's read buffer into the call that frame starts.
    pub fn split(&mut self, n: u64) -> Grant<K> {
        let n = n.min(self.n);
        self.n -= n;
        Grant {
            ledger: self.ledger.clone(),
            key: self.key.clone(),
            privileged: self.privileged,
            n,
        }
    }

    /// Moves everything `other` holds into this grant (same ledger and key).
    pub fn merge(&mut self, mut other: Grant<K>) {
        if Arc::ptr_eq(&self.ledger, &other.ledger) && self.key == other.key {
            self.n += other.n;
            other.n = 0;
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for Grant<K> {
    fn drop(&mut self) {
        self.ledger.release(&self.key, self.n);
    }
}

/// One step of a random workload on a ledger, for [`check_ops`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Acquire `n` for key `key`.
    Acquire { key: u8, privileged: bool, n: u16 },
    /// Drop the live grant at this index (modulo the number of live grants).
    Release(u16),
    /// Grow the live grant at this index by `n`.
    Grow(u16, u16),
    /// Split `n` out of the live grant at this index into a new live grant.
    Split(u16, u16),
    /// Shrink the live grant at this index by `n`.
    Shrink(u16, u16),
}

/// Runs `ops` on a ledger with `limits` beside a model of what it should hold, and panics if
/// they ever disagree, if a limit is passed, if an acquire is refused that fitted, or if
/// anything is held once every grant is dropped. Shared by the proptest and the fuzz target.
#[doc(hidden)]
pub fn check_ops(limits: Limits, ops: &[Op]) {
    let ledger = Ledger::<u8>::new(limits);
    let mut live: Vec<(Grant<u8>, u8)> = Vec::new();
    let model = |live: &Vec<(Grant<u8>, u8)>| {
        let mut by_key: HashMap<u8, u64> = HashMap::new();
        for (g, k) in live {
            *by_key.entry(*k).or_insert(0) += g.amount();
        }
        by_key
    };
    // What non-privileged grants of one key hold can pass per_key only through privileged
    // takes of the same key, so the per-key bound is checked on keys never taken privileged.
    let mut privileged_keys = std::collections::HashSet::new();
    for op in ops {
        match *op {
            Op::Acquire { key, privileged, n } => {
                let n = u64::from(n);
                let before_key = ledger.held(&key);
                let before_total = ledger.total();
                let total_limit = if privileged {
                    limits.total
                } else {
                    limits.total.saturating_sub(limits.reserved)
                };
                let fits = before_total + n <= total_limit
                    && (privileged || before_key + n <= limits.per_key);
                match ledger.try_acquire(key, privileged, n) {
                    Ok(g) => {
                        assert!(fits, "granted past a limit: {op:?}");
                        if privileged {
                            privileged_keys.insert(key);
                        }
                        live.push((g, key));
                    }
                    Err(_) => assert!(!fits, "refused what fitted: {op:?}"),
                }
            }
            Op::Release(i) if !live.is_empty() => {
                let i = usize::from(i) % live.len();
                live.swap_remove(i);
            }
            Op::Grow(i, n) if !live.is_empty() => {
                let i = usize::from(i) % live.len();
                let before = live[i].0.amount();
                if live[i].0.try_grow(u64::from(n)).is_ok() {
                    assert_eq!(live[i].0.amount(), before + u64::from(n));
                } else {
                    assert_eq!(live[i].0.amount(), before);
                }
            }
            Op::Split(i, n) if !live.is_empty() => {
                let i = usize::from(i) % live.len();
                let k = live[i].1;
                let g = live[i].0.split(u64::from(n));
                live.push((g, k));
            }
            Op::Shrink(i, n) if !live.is_empty() => {
                let i = usize::from(i) % live.len();
                live[i].0.shrink(u64::from(n));
            }
            _ => {}
        }
        let by_key = model(&live);
        let sum: u64 = by_key.values().sum();
        assert_eq!(ledger.total(), sum, "total drifted from the live grants");
        assert!(ledger.total() <= limits.total, "total past its limit");
        for (k, v) in &by_key {
            assert_eq!(ledger.held(k), *v, "key {k} drifted");
            if !privileged_keys.contains(k) {
                assert!(*v <= limits.per_key, "key {k} past its limit");
            }
        }
        assert_eq!(
            ledger.keys(),
            by_key.values().filter(|v| **v > 0).count(),
            "a key holding nothing is still listed"
        );
    }
    live.clear();
    assert_eq!(ledger.total(), 0, "something leaked");
    assert_eq!(ledger.keys(), 0, "a key leaked");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits {
        per_key: 10,
        total: 25,
        reserved: 5,
    };

    #[test]
    fn per_key_total_and_reserve() {
        let l = Ledger::new(L);
        let a = l.try_acquire(1u32, false, 10).unwrap();
        let e = l.try_acquire(1, false, 1).unwrap_err();
        assert_eq!((e.scope, e.held, e.limit), (Scope::Key, 10, 10));
        let _b = l.try_acquire(2, false, 10).unwrap();
        // 20 of 25 held; the last 5 are kept for the privileged.
        let e = l.try_acquire(3, false, 1).unwrap_err();
        assert_eq!((e.scope, e.held, e.limit), (Scope::Total, 20, 20));
        let p = l.try_acquire(0, true, 5).unwrap();
        assert!(l.try_acquire(0, true, 1).is_err());
        drop(a);
        assert_eq!(l.held(&1), 0);
        assert_eq!(l.total(), 15);
        drop(p);
        assert_eq!(l.total(), 10);
        assert_eq!(l.keys(), 1);
    }

    #[test]
    fn grow_split_shrink_keep_the_counts() {
        let l = Ledger::new(L);
        let mut g = l.try_acquire(7u32, false, 4).unwrap();
        g.try_grow(6).unwrap();
        assert!(g.try_grow(1).is_err());
        let part = g.split(3);
        assert_eq!((g.amount(), part.amount(), l.held(&7)), (7, 3, 10));
        g.shrink(100);
        assert_eq!((g.amount(), l.held(&7)), (0, 3));
        g.merge(part);
        assert_eq!((g.amount(), l.held(&7)), (3, 3));
        drop(g);
        assert_eq!((l.total(), l.keys()), (0, 0));
    }

    #[tokio::test]
    async fn acquire_waits_for_room_and_refuses_the_impossible() {
        let l = Ledger::new(L);
        let held = l.try_acquire(1u32, false, 10).unwrap();
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire(1, false, 5).await.map(|g| g.amount()) });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(5));
        assert!(l.acquire(1, false, 11).await.is_err());
        assert_eq!(l.total(), 0);
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4, any::<bool>(), 0u16..12).prop_map(|(key, privileged, n)| Op::Acquire {
                key,
                privileged,
                n
            }),
            any::<u16>().prop_map(Op::Release),
            (any::<u16>(), 0u16..8).prop_map(|(i, n)| Op::Grow(i, n)),
            (any::<u16>(), 0u16..8).prop_map(|(i, n)| Op::Split(i, n)),
            (any::<u16>(), 0u16..8).prop_map(|(i, n)| Op::Shrink(i, n)),
        ]
    }

    proptest! {
        /// Random acquire/release/grow/split/shrink sequences never pass a limit, never
        /// refuse what fitted, never drift from the live grants, and leave nothing behind.
        #[test]
        fn counts_never_leak_or_pass_limits(
            per_key in 1u64..30,
            total in 1u64..60,
            reserved in 0u64..10,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            check_ops(Limits { per_key, total, reserved }, &ops);
        }
    }
}
