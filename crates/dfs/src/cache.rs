//! What the device views remember of the owners' answers for a short while, so that
//! `ls -l` of a directory is a few listing calls instead of a lookup call per file: the
//! listings (names with attributes) and the attributes they carried, each for [`TTL`].
//!
//! Only names and attributes are cached, never file data: an open always asks the owner
//! (close-to-open), a listing that starts at its beginning always asks again, and any change
//! made through the views forgets everything. A change made on the owner itself is seen
//! within [`TTL`] by `stat` (NFS's attribute cache, shorter).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a listing or attributes are answered from memory.
pub const TTL: Duration = Duration::from_secs(1);
/// The most entries one cache holds; past it, it starts again empty (a bound, not an LRU:
/// the listings it serves are read in one go).
pub const MAX_ENTRIES: usize = 200_000;

/// Values by key, each good for [`TTL`] from when it was put.
pub struct Cache<K, V> {
    map: HashMap<K, (Instant, V)>,
}

impl<K: Hash + Eq, V: Clone> Default for Cache<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    /// The value of `k` if it was put less than [`TTL`] before `now`.
    pub fn get(&self, k: &K, now: Instant) -> Option<V> {
        self.map
            .get(k)
            .filter(|(at, _)| now.saturating_duration_since(*at) < TTL)
            .map(|(_, v)| v.clone())
    }

    /// Remembers `v` for `k` as of `now`.
    pub fn put(&mut self, k: K, v: V, now: Instant) {
        if self.map.len() >= MAX_ENTRIES {
            self.map.clear();
        }
        self.map.insert(k, (now, v));
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_and_the_cache_stays_bounded() {
        let t0 = Instant::now();
        let mut c = Cache::default();
        c.put("a", 1, t0);
        assert_eq!(c.get(&"a", t0 + TTL / 2), Some(1));
        assert_eq!(c.get(&"a", t0 + TTL), None);
        assert_eq!(c.get(&"b", t0), None);
        for i in 0..MAX_ENTRIES + 1 {
            c.put(Box::leak(i.to_string().into_boxed_str()) as &str, i, t0);
        }
        assert!(c.map.len() <= MAX_ENTRIES);
        c.clear();
        assert_eq!(c.get(&"a", t0), None);
    }
}
