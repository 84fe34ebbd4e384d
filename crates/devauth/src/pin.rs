//! The target's PIN: what `oxh device pin` shows, and the policy that keeps a 6-digit secret
//! safe against guessing.
//!
//! Numbers are OpenHarmony device manager's: a PIN is shown for 60 s (`INPUT_TIMEOUT`), and
//! 3 wrong PINs (`MAX_AUTH_TIMES`) end the chance. Beyond OpenHarmony, which only closes the
//! current PIN dialog, three failures here lock binding out for 60 s, so that an attacker gets
//! at most 3 guesses (each with odds 1 in 10^6) per minute, whatever number of connections it
//! opens: the lockout is checked again right before each confirmation is verified.
//!
//! Pure: no clock (time is a `Duration` since any fixed origin, the daemon's monotonic clock)
//! and randomness from getrandom or an injected source.

use crate::bind::BindError;
use std::fmt;
use std::time::Duration;

/// How long an issued PIN stays valid (OpenHarmony DM's `INPUT_TIMEOUT`, 60 s).
pub const PIN_VALIDITY: Duration = Duration::from_secs(60);
/// Wrong PINs allowed before binding is locked out (OpenHarmony DM's `MAX_AUTH_TIMES`).
pub const MAX_FAILURES: u32 = 3;
/// How long binding is refused after [`MAX_FAILURES`] wrong PINs.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Number of distinct PINs: 000000..=999999.
pub const PIN_SPACE: u32 = 1_000_000;

/// A 6-digit PIN. Leading zeros count, so all 10^6 values are possible. `Debug` hides it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pin(u32);

impl Pin {
    /// A PIN from its numeric value; `None` above 999999.
    pub fn from_number(n: u32) -> Option<Self> {
        (n < PIN_SPACE).then_some(Self(n))
    }

    /// The six ASCII digits, the SPAKE2 password.
    pub(crate) fn digits(&self) -> [u8; 6] {
        let mut out = [0u8; 6];
        let mut n = self.0;
        for d in out.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out
    }

    /// A uniformly random PIN drawn from `fill` (rejection sampling, no modulo bias).
    fn random(fill: &mut dyn FnMut(&mut [u8]) -> Result<(), String>) -> Result<Self, BindError> {
        // 4_294_000_000 is the largest multiple of 10^6 that fits in a u32.
        const LIMIT: u32 = (u32::MAX / PIN_SPACE) * PIN_SPACE;
        loop {
            let mut b = [0u8; 4];
            fill(&mut b).map_err(BindError::Random)?;
            let x = u32::from_le_bytes(b);
            if x < LIMIT {
                return Ok(Self(x % PIN_SPACE));
            }
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(******)")
    }
}

impl std::str::FromStr for Pin {
    type Err = BindError;
    /// Exactly six ASCII digits, as the user typed them (surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, BindError> {
        let s = s.trim();
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BindError::InvalidPin);
        }
        s.parse::<u32>()
            .ok()
            .and_then(Self::from_number)
            .ok_or(BindError::InvalidPin)
    }
}

/// Which issued PIN a bind attempt runs against, so that a PIN replaced or consumed meanwhile
/// is noticed at confirmation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinTicket {
    pub(crate) pin: Pin,
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
struct Issued {
    pin: Pin,
    generation: u64,
    expires: Duration,
}

type RandomFill = Box<dyn FnMut(&mut [u8]) -> Result<(), String> + Send>;

/// The target side's PIN state: the PIN on show, the failure count and the lockout.
///
/// One per device; the daemon keeps it behind a mutex and passes it to each
/// [`crate::Target`] it drives, so that every connection counts against the same limit.
pub struct PinManager {
    current: Option<Issued>,
    generation: u64,
    failures: u32,
    locked_until: Option<Duration>,
    random: RandomFill,
    validity: Duration,
}

impl fmt::Debug for PinManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinManager")
            .field("has_pin", &self.current.is_some())
            .field("failures", &self.failures)
            .field("locked_until", &self.locked_until)
            .finish()
    }
}

impl Default for PinManager {
    fn default() -> Self {
        Self::new()
    }
}

impl PinManager {
    /// A manager drawing PINs from the OS random source.
    pub fn new() -> Self {
        Self::with_random(|buf| getrandom::fill(buf).map_err(|e| e.to_string()))
    }

    /// A manager drawing PINs from `fill`, for deterministic simulations.
    pub fn with_random(fill: impl FnMut(&mut [u8]) -> Result<(), String> + Send + 'static) -> Self {
        Self {
            current: None,
            generation: 0,
            failures: 0,
            locked_until: None,
            random: Box::new(fill),
            validity: PIN_VALIDITY,
        }
    }

    /// Sets how long a PIN stays valid (default [`PIN_VALIDITY`], OpenHarmony's 60 s); a
    /// device maker may shorten it, and tests of expiry need not wait a minute.
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Seconds left in the lockout, if binding is locked out at `now`.
    pub fn lockout_remaining(&mut self, now: Duration) -> Option<u64> {
        match self.locked_until {
            Some(until) if now < until => {
                let left = until - now;
                Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
            }
            Some(_) => {
                // The lockout is over: a fresh start.
                self.locked_until = None;
                self.failures = 0;
                None
            }
            None => None,
        }
    }

    fn check_lockout(&mut self, now: Duration) -> Result<(), BindError> {
        match self.lockout_remaining(now) {
            Some(retry_after) => Err(BindError::LockedOut { retry_after }),
            None => Ok(()),
        }
    }

    /// `oxh device pin`: issues a fresh random PIN valid for [`PIN_VALIDITY`] (or the validity
    /// set with [`Self::with_validity`]), replacing any
    /// earlier one. Refused while locked out, so that locking out is not undone by asking for a
    /// new PIN.
    pub fn issue(&mut self, now: Duration) -> Result<Pin, BindError> {
        self.check_lockout(now)?;
        let pin = Pin::random(&mut self.random)?;
        self.generation += 1;
        self.current = Some(Issued {
            pin,
            generation: self.generation,
            expires: now + self.validity,
        });
        Ok(pin)
    }

    /// The PIN on show and its remaining validity, if one is valid at `now`.
    pub fn current(&self, now: Duration) -> Option<(Pin, Duration)> {
        let i = self.current?;
        (now < i.expires && self.locked_until.is_none_or(|u| now >= u))
            .then(|| (i.pin, i.expires - now))
    }

    /// Wrong PINs counted since the last success or lockout.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A bind attempt starts: `LockedOut` or `Expired` (no valid PIN), else the PIN to run
    /// the PAKE with.
    pub fn begin_attempt(&mut self, now: Duration) -> Result<PinTicket, BindError> {
        self.check_lockout(now)?;
        match self.current {
            Some(i) if now < i.expires => Ok(PinTicket {
                pin: i.pin,
                generation: i.generation,
            }),
            _ => Err(BindError::Expired),
        }
    }

    /// Right before a confirmation is verified: the attempt's PIN must still be the one on
    /// show (not replaced, consumed or dropped by a lockout) and binding not locked out.
    /// Expiry is judged at [`PinManager::begin_attempt`] only, so that an attempt begun in time
    /// is not lost to a round trip.
    pub fn check_ticket(&mut self, ticket: &PinTicket, now: Duration) -> Result<(), BindError> {
        self.check_lockout(now)?;
        match self.current {
            Some(i) if i.generation == ticket.generation => Ok(()),
            _ => Err(BindError::Expired),
        }
    }

    /// A confirmation failed (wrong PIN). The third failure locks binding out for [`LOCKOUT`]
    /// and drops the PIN on show.
    pub fn record_failure(&mut self, now: Duration) {
        self.failures += 1;
        if self.failures >= MAX_FAILURES {
            self.locked_until = Some(now + LOCKOUT);
            self.current = None;
        }
    }

    /// A binding succeeded: its PIN is used up (one-time) and the failure count starts over.
    pub fn record_success(&mut self, ticket: &PinTicket) {
        if self
            .current
            .is_some_and(|i| i.generation == ticket.generation)
        {
            self.current = None;
        }
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn pin_parse_and_format() {
        assert_eq!("012345".parse::<Pin>().unwrap().to_string(), "012345");
        assert_eq!(Pin::from_number(7).unwrap().digits(), *b"000007");
        for bad in ["12345", "1234567", "12a456", "", "-12345", "+12345"] {
            assert!(
                matches!(bad.parse::<Pin>(), Err(BindError::InvalidPin)),
                "{bad}"
            );
        }
        assert_eq!(format!("{:?}", Pin(123456)), "Pin(******)");
    }

    #[test]
    fn random_pins_are_six_digits_and_vary() {
        let mut m = PinManager::new();
        let a = m.issue(secs(0)).unwrap();
        let b = m.issue(secs(0)).unwrap();
        let c = m.issue(secs(0)).unwrap();
        assert!(a.0 < PIN_SPACE && b.0 < PIN_SPACE && c.0 < PIN_SPACE);
        assert!(a != b || b != c, "three equal random PINs");
    }

    #[test]
    fn rejection_sampling_skips_biased_values() {
        let mut vals = vec![u32::MAX, 4_294_000_000, 42].into_iter();
        let mut m = PinManager::with_random(move |b| {
            b.copy_from_slice(&vals.next().ok_or("exhausted")?.to_le_bytes());
            Ok(())
        });
        assert_eq!(m.issue(secs(0)).unwrap().to_string(), "000042");
    }

    #[test]
    fn expiry_replacement_and_one_time_use() {
        let mut m = PinManager::new();
        assert!(matches!(m.begin_attempt(secs(0)), Err(BindError::Expired)));
        let p1 = m.issue(secs(0)).unwrap();
        let t1 = m.begin_attempt(secs(59)).unwrap();
        assert_eq!(t1.pin, p1);
        assert!(matches!(m.begin_attempt(secs(60)), Err(BindError::Expired)));
        assert!(m.current(secs(60)).is_none());
        // A new PIN replaces the old: an attempt begun on the old one cannot confirm.
        m.issue(secs(10)).unwrap();
        assert!(matches!(
            m.check_ticket(&t1, secs(11)),
            Err(BindError::Expired)
        ));
        let t2 = m.begin_attempt(secs(11)).unwrap();
        m.check_ticket(&t2, secs(11)).unwrap();
        m.record_success(&t2);
        assert!(matches!(m.begin_attempt(secs(12)), Err(BindError::Expired)));
        assert!(matches!(
            m.check_ticket(&t2, secs(12)),
            Err(BindError::Expired)
        ));
    }

    #[test]
    fn three_failures_lock_out_for_sixty_seconds() {
        let mut m = PinManager::new();
        m.issue(secs(100)).unwrap();
        let t = m.begin_attempt(secs(100)).unwrap();
        m.record_failure(secs(100));
        m.record_failure(secs(101));
        assert_eq!(m.failures(), 2);
        m.check_ticket(&t, secs(101)).unwrap();
        m.record_failure(secs(102));
        assert!(matches!(
            m.begin_attempt(secs(102)),
            Err(BindError::LockedOut { retry_after: 60 })
        ));
        assert!(matches!(
            m.check_ticket(&t, secs(130)),
            Err(BindError::LockedOut { retry_after: 32 })
        ));
        assert!(matches!(
            m.issue(secs(161)),
            Err(BindError::LockedOut { retry_after: 1 })
        ));
        assert_eq!(
            m.lockout_remaining(Duration::from_millis(161_500)),
            Some(1),
            "rounds up"
        );
        // Over at 162 s; the old PIN was dropped by the lockout.
        assert!(matches!(
            m.begin_attempt(secs(162)),
            Err(BindError::Expired)
        ));
        assert_eq!(m.failures(), 0);
        m.issue(secs(162)).unwrap();
        m.begin_attempt(secs(162)).unwrap();
    }
}
