//! The daemon's clocks, with one hook for tests: in debug builds a test may set a running
//! daemon's clocks ahead (the daemon wires `debug.clock.ahead_ms` to [`set_ahead`]), so a
//! test of PIN expiry, the hilog quota or KV write order moves time instead of sleeping.
//! Release builds never move them (the daemon does not wire the parameter there).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How far this process's clocks are set ahead, in milliseconds (0 but in tests).
static AHEAD_MS: AtomicU64 = AtomicU64::new(0);

/// The parameter a debug build's daemon reads [`set_ahead`] from (milliseconds).
pub const AHEAD_PARAM: &str = "debug.clock.ahead_ms";
/// The parameter the daemon sets to the same value once its clocks are ahead: what a test
/// waits on (`param wait debug.clock.applied_ms N`) before it relies on the new time.
pub const APPLIED_PARAM: &str = "debug.clock.applied_ms";

/// The most the clocks may be set ahead: a parameter value past it is cut to it, so no value
/// can overflow a time computation.
pub const MAX_AHEAD: Duration = Duration::from_secs(30 * 24 * 3600);

/// Sets the clocks ahead by `by` in all (not adding to what was set before), at most
/// [`MAX_AHEAD`]. Monotonic time never goes back: a smaller value than before is ignored.
pub fn set_ahead(by: Duration) {
    let ms = u64::try_from(by.min(MAX_AHEAD).as_millis()).unwrap_or(0);
    AHEAD_MS.fetch_max(ms, Ordering::Relaxed);
}

/// How far the clocks are ahead now.
pub fn ahead() -> Duration {
    Duration::from_millis(AHEAD_MS.load(Ordering::Relaxed))
}

/// Monotonic time since `start` (an `Instant` taken at start-up), on this process's clock.
pub fn elapsed(start: Instant) -> Duration {
    start.elapsed() + ahead()
}

/// Wall-clock time, on this process's clock.
pub fn wall() -> SystemTime {
    SystemTime::now() + ahead()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_moves_both_clocks_and_never_back() {
        let t0 = Instant::now();
        let w0 = SystemTime::now();
        set_ahead(Duration::from_secs(100));
        assert!(elapsed(t0) >= Duration::from_secs(100));
        assert!(wall().duration_since(w0).unwrap() >= Duration::from_secs(100));
        set_ahead(Duration::from_secs(5));
        assert!(ahead() >= Duration::from_secs(100), "never back");
        // Any parameter value is safe: it is cut to the maximum.
        set_ahead(Duration::MAX);
        assert_eq!(ahead(), MAX_AHEAD);
        let _ = (elapsed(t0), wall());
    }
}
