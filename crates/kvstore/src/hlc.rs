//! A hybrid logical clock (Kulkarni et al.), our own, with uhlc's guarantees: every
//! timestamp a clock hands out is greater than every one it handed out or observed before,
//! and stays close to physical time when clocks are sane.
//!
//! A timestamp is a `u64`: milliseconds since the Unix epoch in the high 48 bits, a logical
//! counter in the low 16. Comparing two timestamps as integers compares them as HLC values.
//! Unlike uhlc we never refuse a remote timestamp that is far ahead (a peer whose clock is
//! minutes fast): refusing would let replicas diverge; accepting it means local writes after
//! the sync carry that later time, so the causal order stays right and every replica picks the
//! same winner.

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// The physical part of a timestamp, in ms since the Unix epoch.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// A hybrid logical clock. Pure: the caller passes physical time in.
#[derive(Debug, Clone, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// A clock that will only hand out timestamps above `floor` (the largest timestamp the
    /// store holds, so a restart never goes back in time).
    pub fn new(floor: u64) -> Self {
        Self { last: floor }
    }

    /// The largest timestamp handed out or observed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// A new timestamp for a local event at physical time `now_ms`.
    pub fn now(&mut self, now_ms: u64) -> u64 {
        let pt = now_ms.min(u64::MAX >> LOGICAL_BITS) << LOGICAL_BITS;
        let next = if pt > self.last {
            pt
        } else {
            // Same millisecond (or our clock went back): count logically. If the counter
            // would overflow, borrow the next millisecond, which keeps the order.
            self.last.saturating_add(1)
        };
        self.last = next;
        next
    }

    /// Observes a timestamp from elsewhere, so later local timestamps exceed it.
    pub fn observe(&mut self, remote: u64) {
        if remote > self.last {
            self.last = remote;
        }
    }
}

/// The version of a write: its HLC timestamp and the device that made it. Last writer wins
/// on the timestamp; on equal timestamps the larger device id wins, so every replica picks
/// the same winner (OpenHarmony's tie can leave replicas different).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version<'a> {
    /// HLC timestamp.
    pub ts: u64,
    /// The writing device's id.
    pub device: &'a str,
}

/// True when a write of version `incoming` replaces the stored one of version `current`.
pub fn wins(incoming: Version<'_>, current: Version<'_>) -> bool {
    incoming > current
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn monotonic_within_a_millisecond_and_across_clock_steps_back() {
        let mut c = Hlc::new(0);
        let a = c.now(1000);
        let b = c.now(1000);
        let d = c.now(900);
        assert!(a < b && b < d);
        assert_eq!(physical_ms(a), 1000);
        assert_eq!(physical_ms(d), 1000);
        let e = c.now(2000);
        assert_eq!(e, 2000 << LOGICAL_BITS);
    }

    #[test]
    fn observing_a_fast_peer_moves_the_clock_forward() {
        let mut c = Hlc::new(0);
        let remote = (1000 + 5 * 60_000) << LOGICAL_BITS;
        c.observe(remote);
        assert!(c.now(1000) > remote);
    }

    #[test]
    fn ties_break_on_the_device_id() {
        let a = Version { ts: 5, device: "a" };
        let b = Version { ts: 5, device: "b" };
        assert!(wins(b, a));
        assert!(!wins(a, b));
        assert!(!wins(a, a));
        assert!(wins(Version { ts: 6, device: "a" }, b));
    }

    proptest! {
        #[test]
        fn every_timestamp_exceeds_all_earlier_ones(steps in proptest::collection::vec((0u64..10_000, any::<bool>(), 0u64..u64::MAX >> 20), 1..200)) {
            let mut c = Hlc::new(0);
            let mut max_seen = 0u64;
            for (now, observe, remote) in steps {
                if observe {
                    c.observe(remote);
                    max_seen = max_seen.max(remote);
                } else {
                    let t = c.now(now);
                    prop_assert!(t > max_seen);
                    max_seen = t;
                }
            }
        }
    }
}
