//! The ring buffer of log entries: a byte budget, oldest out first, and a sequence number per
//! entry so that followers and the persister can read "everything after N".

use crate::{HilogError, LogEntry};
use std::collections::VecDeque;

/// hilogd's default buffer size per the daemon configuration: 256 KiB.
pub const DEFAULT_BUFFER_SIZE: u64 = 256 * 1024;
/// Smallest size `hilog -G` accepts (OpenHarmony: 64K).
pub const MIN_BUFFER_SIZE: u64 = 64 * 1024;
/// Largest size `hilog -G` accepts. OpenHarmony's hilog documentation gives the range
/// 64K-16M; older hilogd sources allowed up to 1 GiB, the documented contract is kept here.
pub const MAX_BUFFER_SIZE: u64 = 16 * 1024 * 1024;

/// Checks a requested buffer size against [`MIN_BUFFER_SIZE`]..=[`MAX_BUFFER_SIZE`].
pub fn check_buffer_size(size: u64) -> Result<u64, HilogError> {
    if (MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(HilogError::BufferSizeOutOfRange {
            size,
            min: MIN_BUFFER_SIZE,
            max: MAX_BUFFER_SIZE,
        })
    }
}

/// Reads a size as `hilog -G` and `-l` take it: `4096`, `4096B`, `256K`, `16M`, `1G` (suffixes
/// in any case, an optional trailing `B` as in `16MB`; units are powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, HilogError> {
    let bad = || HilogError::InvalidSize(s.to_string());
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// Prints a byte count the way `hilog -g` does: `256.0K`, `16.0M`, or plain bytes below 1K.
pub fn format_size(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.1}G", b / K / K / K)
    } else if bytes >= 1 << 20 {
        format!("{:.1}M", b / K / K)
    } else if bytes >= 1 << 10 {
        format!("{:.1}K", b / K)
    } else {
        format!("{bytes}B")
    }
}

/// What a reader gets from [`RingBuffer::read_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// Matching entries, oldest first.
    pub entries: Vec<LogEntry>,
    /// Lines the reader never saw because the buffer evicted them first ("slow reader").
    pub missed: u64,
    /// The seq to pass as `after` next time.
    pub cursor: u64,
    /// True when the batch stopped at its byte limit and more entries are waiting.
    pub more: bool,
}

/// The in-memory log: entries in seq order, at most `capacity` bytes of [`LogEntry::cost`].
#[derive(Debug)]
pub struct RingBuffer {
    entries: VecDeque<LogEntry>,
    used: u64,
    capacity: u64,
    next_seq: u64,
    /// The first seq stored after the last `clear()`: older gaps were cleared, not missed.
    cleared_before: u64,
    evicted: u64,
}

impl Default for RingBuffer {
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER_SIZE)
    }
}

impl RingBuffer {
    /// An empty buffer of `capacity` bytes. The capacity is not range-checked here (tests use
    /// tiny ones); [`RingBuffer::set_capacity`] checks what users ask for.
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            used: 0,
            capacity,
            next_seq: 1,
            cleared_before: 1,
            evicted: 0,
        }
    }

    /// Stores an entry, giving it the next seq and evicting the oldest entries until it fits.
    /// Returns the seq.
    pub fn push(&mut self, mut entry: LogEntry) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        entry.seq = seq;
        self.used += entry.cost() as u64;
        self.entries.push_back(entry);
        self.evict_to(self.capacity);
        seq
    }

    fn evict_to(&mut self, cap: u64) {
        // Keep at least the newest entry even if it alone exceeds a tiny capacity.
        while self.used > cap && self.entries.len() > 1 {
            if let Some(old) = self.entries.pop_front() {
                self.used -= old.cost() as u64;
                self.evicted += 1;
            }
        }
    }

    /// Changes the byte capacity (`hilog -G`), evicting the oldest entries if it shrank.
    /// Sizes outside OpenHarmony's range are refused and change nothing.
    pub fn set_capacity(&mut self, capacity: u64) -> Result<(), HilogError> {
        self.capacity = check_buffer_size(capacity)?;
        self.evict_to(self.capacity);
        Ok(())
    }

    /// Drops every entry (`hilog -r`); seqs keep growing so followers are not confused.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.used = 0;
        self.cleared_before = self.next_seq;
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    /// Bytes used by the stored entries.
    pub fn used(&self) -> u64 {
        self.used
    }
    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Entries evicted for room since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
    /// The seq of the newest entry ever stored (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
    /// The stored entries, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &LogEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// The stored entries with seq greater than `after`, oldest first.
    pub fn iter_after(&self, after: u64) -> impl DoubleEndedIterator<Item = &LogEntry> {
        let first = self.entries.front().map_or(self.next_seq, |e| e.seq);
        // Seqs are contiguous within the buffer, so the start index is arithmetic.
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(first))
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        self.entries.range(skip..)
    }

    /// Up to `max_bytes` of entries after `after` that satisfy `keep`, for followers and the
    /// persister; counts lines evicted before the reader got to them.
    pub fn read_after(
        &self,
        after: u64,
        max_bytes: usize,
        mut keep: impl FnMut(&LogEntry) -> bool,
    ) -> ReadBatch {
        let first = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let gone_from = after.saturating_add(1).max(self.cleared_before);
        let missed = first.saturating_sub(gone_from);
        let mut batch = ReadBatch {
            entries: Vec::new(),
            missed,
            cursor: after.max(first.saturating_sub(1)),
            more: false,
        };
        let mut bytes = 0usize;
        for e in self.iter_after(after) {
            if keep(e) {
                if bytes > 0 && bytes + e.cost() > max_bytes {
                    batch.more = true;
                    break;
                }
                bytes += e.cost();
                batch.entries.push(e.clone());
            }
            batch.cursor = e.seq;
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;
    use crate::entry::sample;

    fn entry(msg: &str) -> LogEntry {
        sample(0, Level::Info, "t", msg)
    }

    #[test]
    fn sizes_parse_like_hilog() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("256K").unwrap(), 256 * 1024);
        assert_eq!(parse_size("256k").unwrap(), 256 * 1024);
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("16MB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("100B").unwrap(), 100);
        for bad in [
            "",
            "K",
            "-1",
            "1.5M",
            "12Q",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(256 * 1024), "256.0K");
        assert_eq!(format_size(16 << 20), "16.0M");
        assert_eq!(format_size(10), "10B");
    }

    #[test]
    fn capacity_limits_are_openharmonys() {
        let mut b = RingBuffer::default();
        assert_eq!(b.capacity(), 256 * 1024);
        assert!(b.set_capacity(64 * 1024).is_ok());
        assert!(b.set_capacity(16 << 20).is_ok());
        let err = b.set_capacity(64 * 1024 - 1).unwrap_err();
        assert!(err.to_string().contains("64K"), "{err}");
        assert!(b.set_capacity((16 << 20) + 1).is_err());
        assert_eq!(b.capacity(), 16 << 20, "a refused size changes nothing");
    }

    #[test]
    fn push_assigns_seqs_and_evicts_oldest_by_bytes() {
        let one = entry("0123456789").cost() as u64;
        let mut b = RingBuffer::new(one * 3);
        for i in 0..5 {
            assert_eq!(b.push(entry(&format!("message-{i:02}")[..10])), i + 1);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.used(), one * 3);
        assert_eq!(b.evicted(), 2);
        let seqs: Vec<u64> = b.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(b.last_seq(), 5);
    }

    #[test]
    fn shrinking_evicts_and_clear_keeps_seqs_growing() {
        let mut b = RingBuffer::new(1 << 20);
        for _ in 0..100 {
            b.push(entry(&"x".repeat(1000)));
        }
        b.set_capacity(64 * 1024).unwrap();
        assert!(b.used() <= 64 * 1024);
        assert_eq!(b.iter().last().map(|e| e.seq), Some(100));
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.used(), 0);
        assert_eq!(b.push(entry("after")), 101);
    }

    #[test]
    fn iter_after_and_read_after() {
        let mut b = RingBuffer::new(1 << 20);
        for i in 0..10 {
            b.push(entry(&i.to_string()));
        }
        let after: Vec<u64> = b.iter_after(7).map(|e| e.seq).collect();
        assert_eq!(after, vec![8, 9, 10]);
        assert_eq!(b.iter_after(10).count(), 0);
        assert_eq!(b.iter_after(0).count(), 10);

        let r = b.read_after(2, usize::MAX, |e| e.msg != "5");
        assert_eq!(r.missed, 0);
        assert_eq!(r.cursor, 10);
        assert!(!r.more);
        assert_eq!(r.entries.len(), 7, "seqs 3..=10 except msg 5");

        let small = b.read_after(0, 2 * entry("0").cost(), |_| true);
        assert_eq!(small.entries.len(), 2);
        assert!(small.more);
        assert_eq!(
            small.cursor, 2,
            "the next read starts after the last one returned"
        );
    }

    #[test]
    fn slow_reader_sees_missed_count_but_not_for_clears() {
        let one = entry("m").cost() as u64;
        let mut b = RingBuffer::new(one * 2);
        for _ in 0..5 {
            b.push(entry("m"));
        }
        let r = b.read_after(1, usize::MAX, |_| true);
        assert_eq!(r.missed, 2, "seqs 2 and 3 were evicted before we read them");
        assert_eq!(r.entries.len(), 2);

        b.clear();
        b.push(entry("m"));
        let r = b.read_after(5, usize::MAX, |_| true);
        assert_eq!(r.missed, 0);
        assert_eq!(r.entries.len(), 1);
        let r = b.read_after(3, usize::MAX, |_| true);
        assert_eq!(r.missed, 0, "4 and 5 were cleared, not missed");
    }
}
