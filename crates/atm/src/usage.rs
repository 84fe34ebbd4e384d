//! Permission usage records (OpenHarmony's privacy manager), in memory with write-behind.
//!
//! Each check of a user-controlled permission (user_grant, manual_settings) adds to one
//! record per (token, permission): success and failure counts, first and last time. The
//! check itself only touches memory; the service writes changed records to SQLite every
//! `usage_flush_interval`, before each query and when it stops, as OpenHarmony's privacy
//! service buffers records before writing them.
//!
//! Bounded as OpenHarmony's: at most `usage_max_records` records (its default, 500,000),
//! the least recently used going first (a tenth at a time, so eviction is rare and cheap),
//! and records not used for `usage_aging` (7 days) are dropped.

use crate::store::UsageRow;
use std::collections::{HashMap, HashSet};

type Key = (u32, u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    success: u64,
    fail: u64,
    first_ms: u64,
    last_ms: u64,
}

impl Entry {
    /// The stored row of the record under `key`.
    fn row(&self, (token_id, index): Key) -> UsageRow {
        UsageRow {
            token_id,
            index,
            success: self.success,
            fail: self.fail,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
        }
    }
}

/// The records, the ones changed since the last write, and the ones to delete.
#[derive(Debug)]
pub(crate) struct UsageBook {
    entries: HashMap<Key, Entry>,
    dirty: HashSet<Key>,
    deleted: HashSet<Key>,
    max: usize,
    aging_ms: u64,
}

impl UsageBook {
    pub(crate) fn new(max: usize, aging_ms: u64, rows: Vec<UsageRow>) -> Self {
        let mut b = Self {
            entries: HashMap::new(),
            dirty: HashSet::new(),
            deleted: HashSet::new(),
            max: max.max(1),
            aging_ms,
        };
        for r in rows {
            b.entries.insert(
                (r.token_id, r.index),
                Entry {
                    success: r.success,
                    fail: r.fail,
                    first_ms: r.first_ms,
                    last_ms: r.last_ms,
                },
            );
        }
        b.evict_over_limit();
        b
    }

    /// Counts one check.
    pub(crate) fn add(&mut self, token_id: u32, index: u16, ok: bool, now_ms: u64) {
        let key = (token_id, index);
        let e = self.entries.entry(key).or_insert(Entry {
            success: 0,
            fail: 0,
            first_ms: now_ms,
            last_ms: now_ms,
        });
        if ok {
            e.success = e.success.saturating_add(1);
        } else {
            e.fail = e.fail.saturating_add(1);
        }
        e.last_ms = e.last_ms.max(now_ms);
        self.dirty.insert(key);
        self.deleted.remove(&key);
        if self.entries.len() > self.max {
            self.evict_over_limit();
        }
    }

    fn evict_over_limit(&mut self) {
        if self.entries.len() <= self.max {
            return;
        }
        let keep = self.max - self.max / 10;
        let mut by_age: Vec<(u64, Key)> =
            self.entries.iter().map(|(k, e)| (e.last_ms, *k)).collect();
        by_age.sort_unstable();
        let drop = self.entries.len() - keep;
        for (_, k) in by_age.into_iter().take(drop) {
            self.remove_key(k);
        }
    }

    fn remove_key(&mut self, k: Key) {
        if self.entries.remove(&k).is_some() {
            self.dirty.remove(&k);
            self.deleted.insert(k);
        }
    }

    /// Drops records last used before `now_ms - aging`.
    pub(crate) fn age(&mut self, now_ms: u64) {
        let limit = now_ms.saturating_sub(self.aging_ms);
        let old: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.last_ms < limit)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove_key(k);
        }
    }

    /// Forgets every record of a token (already deleted from disk by the caller).
    pub(crate) fn remove_token(&mut self, token_id: u32) -> u64 {
        let keys: Vec<Key> = self
            .entries
            .keys()
            .filter(|(t, _)| *t == token_id)
            .copied()
            .collect();
        for k in &keys {
            self.entries.remove(k);
            self.dirty.remove(k);
        }
        self.deleted.retain(|(t, _)| *t != token_id);
        keys.len() as u64
    }

    /// The changes since the last call: records to write and keys to delete.
    pub(crate) fn take_changes(&mut self) -> (Vec<UsageRow>, Vec<Key>) {
        let ups = self
            .dirty
            .drain()
            .filter_map(|k| self.entries.get(&k).map(|e| e.row(k)))
            .collect();
        let dels = self.deleted.drain().collect();
        (ups, dels)
    }

    /// Puts changes back after a failed write, so the next write retries them.
    pub(crate) fn restore_changes(&mut self, ups: &[UsageRow], dels: &[Key]) {
        for u in ups {
            if self.entries.contains_key(&(u.token_id, u.index)) {
                self.dirty.insert((u.token_id, u.index));
            }
        }
        for d in dels {
            if !self.entries.contains_key(d) {
                self.deleted.insert(*d);
            }
        }
    }

    /// Every record, as rows.
    pub(crate) fn rows(&self) -> impl Iterator<Item = UsageRow> + '_ {
        self.entries.iter().map(|(k, e)| e.row(*k))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_timestamps_accumulate() {
        let mut b = UsageBook::new(10, 1000, vec![]);
        b.add(1, 5, true, 100);
        b.add(1, 5, false, 200);
        b.add(1, 5, true, 150);
        let r: Vec<UsageRow> = b.rows().collect();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].success, r[0].fail), (2, 1));
        assert_eq!((r[0].first_ms, r[0].last_ms), (100, 200));
        let (ups, dels) = b.take_changes();
        assert_eq!(ups.len(), 1);
        assert!(dels.is_empty());
        assert_eq!(b.take_changes().0.len(), 0);
    }

    #[test]
    fn bounded_least_recently_used_first() {
        let mut b = UsageBook::new(10, u64::MAX, vec![]);
        for i in 0..10u16 {
            b.add(1, i, true, u64::from(i));
        }
        assert_eq!(b.len(), 10);
        b.add(1, 100, true, 1000);
        assert_eq!(b.len(), 9, "a tenth goes at once");
        let kept: HashSet<u16> = b.rows().map(|r| r.index).collect();
        assert!(!kept.contains(&0) && !kept.contains(&1));
        assert!(kept.contains(&100) && kept.contains(&9));
        let (_, dels) = b.take_changes();
        assert_eq!(dels.len(), 2);
        for i in 0..10_000u16 {
            b.add(2, i % 2000, false, 2000 + u64::from(i));
            assert!(b.len() <= 10);
        }
    }

    #[test]
    fn old_records_age_out_and_tokens_are_removed() {
        let mut b = UsageBook::new(100, 1000, vec![]);
        b.add(1, 1, true, 0);
        b.add(1, 2, true, 5000);
        b.add(2, 1, true, 5000);
        b.age(5500);
        assert_eq!(b.len(), 2);
        let (ups, dels) = b.take_changes();
        assert_eq!(ups.len(), 2);
        assert_eq!(dels, vec![(1, 1)]);
        b.add(1, 3, false, 5600);
        assert_eq!(b.remove_token(1), 2);
        assert_eq!(b.len(), 1);
        let (ups, dels) = b.take_changes();
        assert!(
            ups.is_empty() && dels.is_empty(),
            "the caller deleted them on disk"
        );
    }
}
