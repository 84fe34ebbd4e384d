//! Per-process flow control: each process may write `quota` bytes per second; beyond that its
//! lines are dropped and counted, and the next line that gets through is preceded by one
//! `LOGS OVER PROC QUOTA` notice, as hilogd does. Time is an argument, so tests are exact.

use crate::{Level, LogEntry};
use std::collections::HashMap;
use std::time::Duration;

/// OpenHarmony's default per-process quota: 50 KiB of log per second.
pub const DEFAULT_QUOTA: u32 = 51_200;
/// The tag of the notice line, as OpenHarmony prints it (`W A00032/LOGLIMIT: ...`).
pub const QUOTA_TAG: &str = "LOGLIMIT";
/// Processes tracked at once; beyond this, idle ones are forgotten.
const MAX_TRACKED: usize = 4096;
const WINDOW: Duration = Duration::from_secs(1);

/// The decision for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Store it.
    Accept,
    /// Store it, after a notice that this many earlier lines were dropped.
    AcceptAfterDrops(u64),
    /// Drop it (counted).
    Drop,
}

#[derive(Debug, Default, Clone)]
struct Proc {
    window_start: Duration,
    used: u64,
    pending_drops: u64,
    total_drops: u64,
}

/// The flow-control state of all writing processes.
#[derive(Debug)]
pub struct FlowControl {
    quota: u32,
    enabled: bool,
    exempt_pid: i32,
    procs: HashMap<i32, Proc>,
}

impl FlowControl {
    /// Flow control with `quota` bytes per second per process; `exempt_pid` (the daemon) is
    /// never limited.
    pub fn new(quota: u32, exempt_pid: i32) -> Self {
        Self {
            quota,
            enabled: true,
            exempt_pid,
            procs: HashMap::new(),
        }
    }

    /// The quota in bytes per second.
    pub fn quota(&self) -> u32 {
        self.quota
    }
    /// Changes the quota.
    pub fn set_quota(&mut self, quota: u32) {
        self.quota = quota;
    }
    /// Whether limiting is on (`hilog -Q pidon|pidoff`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// Turns limiting on or off.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }
    /// The pid that is never limited.
    pub fn exempt_pid(&self) -> i32 {
        self.exempt_pid
    }

    /// Decides whether a line of `cost` bytes from `pid` at time `now` (any monotonic clock)
    /// is stored.
    pub fn admit(&mut self, pid: i32, cost: usize, now: Duration) -> Admit {
        if !self.enabled || pid == self.exempt_pid {
            return Admit::Accept;
        }
        if self.procs.len() >= MAX_TRACKED && !self.procs.contains_key(&pid) {
            self.prune(now);
        }
        let quota = u64::from(self.quota);
        let p = self.procs.entry(pid).or_default();
        if now.saturating_sub(p.window_start) >= WINDOW || now < p.window_start {
            p.window_start = now;
            p.used = 0;
        }
        let cost = cost as u64;
        if p.used + cost > quota {
            p.pending_drops += 1;
            p.total_drops += 1;
            return Admit::Drop;
        }
        p.used += cost;
        match std::mem::take(&mut p.pending_drops) {
            0 => Admit::Accept,
            n => Admit::AcceptAfterDrops(n),
        }
    }

    fn prune(&mut self, now: Duration) {
        self.procs.retain(|_, p| {
            p.pending_drops > 0
                || (p.total_drops > 0 && now.saturating_sub(p.window_start) < WINDOW * 60)
        });
        if self.procs.len() >= MAX_TRACKED {
            // Still full of droppers: forget the ones idle the longest.
            let mut v: Vec<(i32, Duration)> = self
                .procs
                .iter()
                .map(|(k, p)| (*k, p.window_start))
                .collect();
            v.sort_by_key(|(_, t)| *t);
            for (pid, _) in v.into_iter().take(MAX_TRACKED / 4) {
                self.procs.remove(&pid);
            }
        }
    }

    /// Forgets a process (it exited); its drop count goes with it.
    pub fn forget(&mut self, pid: i32) {
        self.procs.remove(&pid);
    }

    /// Lines dropped per pid since it was first limited, for the dump; largest first.
    pub fn drop_counts(&self) -> Vec<(i32, u64)> {
        let mut v: Vec<(i32, u64)> = self
            .procs
            .iter()
            .filter(|(_, p)| p.total_drops > 0)
            .map(|(k, p)| (*k, p.total_drops))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// The notice stored before the first accepted line after drops: level W, same pid, tid,
/// type and domain as that line, tag `LOGLIMIT`, text
/// `==NAME LOGS OVER PROC QUOTA, N DROPPED==` (without NAME when the process name is unknown).
pub fn quota_notice(accepted: &LogEntry, dropped: u64, process_name: &str) -> LogEntry {
    let msg = if process_name.is_empty() {
        format!("==LOGS OVER PROC QUOTA, {dropped} DROPPED==")
    } else {
        format!("=={process_name} LOGS OVER PROC QUOTA, {dropped} DROPPED==")
    };
    LogEntry {
        level: Level::Warn,
        tag: QUOTA_TAG.to_string(),
        msg,
        ..accepted.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::sample;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn quota_drops_then_notices_once() {
        let mut fc = FlowControl::new(1000, 1);
        let t0 = Duration::from_secs(100);
        assert_eq!(fc.admit(42, 600, t0), Admit::Accept);
        assert_eq!(
            fc.admit(42, 400, t0),
            Admit::Accept,
            "exactly the quota fits"
        );
        assert_eq!(fc.admit(42, 1, t0 + S / 2), Admit::Drop);
        assert_eq!(fc.admit(42, 100, t0 + S / 2), Admit::Drop);
        assert_eq!(
            fc.admit(7, 100, t0),
            Admit::Accept,
            "other pids are not affected"
        );
        assert_eq!(fc.admit(42, 100, t0 + S), Admit::AcceptAfterDrops(2));
        assert_eq!(fc.admit(42, 100, t0 + S), Admit::Accept, "notice only once");
        assert_eq!(fc.drop_counts(), vec![(42, 2)]);
    }

    #[test]
    fn exempt_pid_and_disabled_are_never_limited() {
        let mut fc = FlowControl::new(10, 1);
        for _ in 0..100 {
            assert_eq!(fc.admit(1, 100, Duration::ZERO), Admit::Accept);
        }
        fc.set_enabled(false);
        for _ in 0..100 {
            assert_eq!(fc.admit(2, 100, Duration::ZERO), Admit::Accept);
        }
        fc.set_enabled(true);
        assert_eq!(fc.admit(2, 100, Duration::ZERO), Admit::Drop);
    }

    #[test]
    fn tracking_is_bounded() {
        let mut fc = FlowControl::new(10, 0);
        for pid in 1..(MAX_TRACKED as i32 * 2) {
            fc.admit(pid, 100, Duration::from_millis(pid as u64));
        }
        assert!(fc.procs.len() <= MAX_TRACKED);
        fc.forget(MAX_TRACKED as i32 * 2 - 1);
    }

    #[test]
    fn notice_text_matches_openharmony() {
        let e = sample(9, Level::Info, "app", "hello");
        let n = quota_notice(&e, 3091, "com.example.myapplication");
        assert_eq!(n.level, Level::Warn);
        assert_eq!(n.tag, "LOGLIMIT");
        assert_eq!(n.pid, e.pid);
        assert_eq!(n.domain, e.domain);
        assert_eq!(
            n.msg,
            "==com.example.myapplication LOGS OVER PROC QUOTA, 3091 DROPPED=="
        );
        assert_eq!(
            quota_notice(&e, 5, "").msg,
            "==LOGS OVER PROC QUOTA, 5 DROPPED=="
        );
    }
}
