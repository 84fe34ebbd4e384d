//! Cross-device copy (`@ohos.file.fs` `copy` with a progress listener), its pure core: the
//! limits, which copies are admitted, when progress is reported, and the messages the two
//! file daemons exchange on the copy session. No I/O and no clock: the service in the daemon
//! (`src/file_copy.rs`) feeds it and does what it says.
//!
//! A copy pulls: the destination's daemon asks the source's daemon for the files
//! ([`Wire::Open`], then [`Wire::Send`] per file), and the source's daemon sends each on the
//! soft bus file path of that session (the bus's checksummed file frames), not through FUSE.

use crate::errcode::{self, FileErr};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Cross-device copies one device runs at once; the next is refused with [`errcode::E_AGAIN`]
/// until one ends.
pub const MAX_CONCURRENT_COPIES: usize = 10;
/// Files one copy may carry (a directory of more is refused with [`errcode::E_INVAL`]).
pub const MAX_FILES_PER_COPY: usize = 500;
/// Bytes between two progress reports of a file (besides the first and the last).
pub const PROGRESS_STEP: u64 = 4 << 20;
/// The copy session's wire version.
pub const WIRE_VERSION: u32 = 1;

/// Why a copy failed: OpenHarmony's file error and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{err}: {detail}")]
pub struct CopyError {
    /// The file error (its code is what the caller sees).
    pub err: FileErr,
    /// What happened, for the message.
    pub detail: String,
}

impl CopyError {
    /// A copy error.
    pub fn new(err: FileErr, detail: impl Into<String>) -> Self {
        Self {
            err,
            detail: detail.into(),
        }
    }
}

/// The copies running on this device: admits at most [`MAX_CONCURRENT_COPIES`] of at most
/// [`MAX_FILES_PER_COPY`] files, and names each with a task id.
#[derive(Debug, Default)]
pub struct Admission {
    running: BTreeSet<u64>,
    next: u64,
}

impl Admission {
    /// Admits a copy of `files` files, or says why not (nothing changes then).
    pub fn admit(&mut self, files: usize) -> Result<u64, CopyError> {
        if files == 0 {
            return Err(CopyError::new(errcode::E_INVAL, "a copy of no files"));
        }
        if files > MAX_FILES_PER_COPY {
            return Err(CopyError::new(
                errcode::E_INVAL,
                format!("{files} files in one copy (at most {MAX_FILES_PER_COPY})"),
            ));
        }
        if self.running.len() >= MAX_CONCURRENT_COPIES {
            return Err(CopyError::new(
                errcode::E_AGAIN,
                format!("{MAX_CONCURRENT_COPIES} cross-device copies are already running"),
            ));
        }
        self.next += 1;
        self.running.insert(self.next);
        Ok(self.next)
    }

    /// A copy ended (done, failed or cancelled); false if it was not running.
    pub fn finish(&mut self, task: u64) -> bool {
        self.running.remove(&task)
    }

    /// Whether `task` is running.
    pub fn is_running(&self, task: u64) -> bool {
        self.running.contains(&task)
    }

    /// How many copies run.
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

/// A copy's progress over all its files: `processedSize` only grows and never passes
/// `totalSize`; [`Progress::advance`] says when a report is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    total: u64,
    processed: u64,
    reported: Option<u64>,
}

impl Progress {
    /// A copy of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            processed: 0,
            reported: None,
        }
    }

    /// `n` more bytes arrived; the `(processedSize, totalSize)` to report, if one is due
    /// (the first bytes, each [`PROGRESS_STEP`], and the end).
    pub fn advance(&mut self, n: u64) -> Option<(u64, u64)> {
        self.processed = self.processed.saturating_add(n).min(self.total);
        let due = match self.reported {
            None => true,
            Some(r) => {
                self.processed == self.total && r != self.total
                    || self.processed - r >= PROGRESS_STEP
            }
        };
        if due {
            self.reported = Some(self.processed);
            Some((self.processed, self.total))
        } else {
            None
        }
    }

    /// The final report when nothing is left to arrive (also for empty files), if not made.
    pub fn complete(&mut self) -> Option<(u64, u64)> {
        self.processed = self.total;
        if self.reported == Some(self.total) {
            return None;
        }
        self.reported = Some(self.total);
        Some((self.total, self.total))
    }

    /// Bytes so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }
}

/// What the destination's daemon and the source's daemon say on the copy session (postcard
/// in bytes payloads; the file contents go as the bus's file frames on the same socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// Destination → source: the files of one copy, as paths in the source's account tree,
    /// and the destination's device security level (files above it are refused).
    Open {
        /// [`WIRE_VERSION`].
        version: u32,
        /// The destination's device level (`SL1`..`SL5` as 1..5).
        device_level: u8,
        /// Paths relative to the account tree (at most [`MAX_FILES_PER_COPY`]).
        paths: Vec<String>,
    },
    /// Source → destination: each file's size, or the errno it could not be opened with.
    Opened(Vec<Result<u64, i32>>),
    /// Destination → source: send file `index` now.
    Send {
        /// Which of [`Wire::Open`]'s paths.
        index: u32,
    },
    /// Source → destination: file `index` cannot be sent (read error): an errno.
    Failed {
        /// Which file.
        index: u32,
        /// The errno.
        errno: i32,
    },
}

/// The most a [`Wire`] message may take (500 paths of PATH_MAX, with room).
pub const MAX_WIRE: usize = MAX_FILES_PER_COPY * (crate::beneath::MAX_PATH_LEN + 16) + 64;

impl Wire {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A message from a peer, checked against the limits.
    pub fn decode(b: &[u8]) -> Result<Self, CopyError> {
        if b.len() > MAX_WIRE {
            return Err(CopyError::new(errcode::E_INVAL, "copy message too large"));
        }
        let w: Wire = postcard::from_bytes(b)
            .map_err(|e| CopyError::new(errcode::E_INVAL, format!("bad copy message: {e}")))?;
        let files = match &w {
            Wire::Open { paths, .. } => paths.len(),
            Wire::Opened(v) => v.len(),
            _ => 0,
        };
        if files > MAX_FILES_PER_COPY {
            return Err(CopyError::new(
                errcode::E_INVAL,
                "too many files in a copy message",
            ));
        }
        Ok(w)
    }
}

/// Whether an app `bundle` may copy `path` (an account-tree path, checked by
/// [`crate::beneath::check`]) from a peer: only what is in its own distributed files,
/// `data/<bundle>/...`, as its sandbox's `distributedfiles` is all an app can name. Other
/// apps' `data/<bundleName>` and the rest of the tree are system processes' only.
pub fn app_may_copy(bundle: &str, path: &str) -> bool {
    use std::path::Component;
    let mut parts = std::path::Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    let own = matches!(parts.next(), Some(Component::Normal(d)) if d == "data")
        && matches!(parts.next(), Some(Component::Normal(b)) if b == bundle);
    own && parts.all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_copies_only_its_own_distributed_files() {
        let b = "com.example.notes";
        for ok in [
            "data/com.example.notes",
            "data/com.example.notes/a.txt",
            "./data/com.example.notes/d/a.txt",
        ] {
            assert!(app_may_copy(b, ok), "{ok}");
        }
        for no in [
            "data/com.example.other/a.txt",
            "data/com.example.notesX/a.txt",
            "data/com.example.notes/../com.example.other/a",
            "data",
            "data/",
            "com.example.notes/a",
            "/data/com.example.notes/a",
            "base/com.example.notes/a",
            "",
        ] {
            assert!(!app_may_copy(b, no), "{no}");
        }
        assert!(!app_may_copy("", "data//a"), "an empty bundle owns nothing");
    }

    #[test]
    fn at_most_ten_copies_at_once_and_500_files_each() {
        let mut a = Admission::default();
        let tasks: Vec<u64> = (0..MAX_CONCURRENT_COPIES)
            .map(|_| a.admit(1).unwrap())
            .collect();
        let e = a.admit(1).unwrap_err();
        assert_eq!(e.err, errcode::E_AGAIN);
        assert_eq!(
            a.running(),
            MAX_CONCURRENT_COPIES,
            "a refusal changes nothing"
        );
        assert!(a.finish(tasks[3]));
        assert!(!a.finish(tasks[3]), "once");
        let t = a.admit(MAX_FILES_PER_COPY).unwrap();
        assert!(!tasks.contains(&t), "ids are not reused");
        assert!(a.is_running(t));
        a.finish(t);
        assert_eq!(
            a.admit(MAX_FILES_PER_COPY + 1).unwrap_err().err,
            errcode::E_INVAL
        );
        assert_eq!(a.admit(0).unwrap_err().err, errcode::E_INVAL);
        assert_eq!(a.running(), MAX_CONCURRENT_COPIES - 1);
    }

    #[test]
    fn progress_is_monotonic_throttled_and_ends_at_the_total() {
        let total = 10 * PROGRESS_STEP + 5;
        let mut p = Progress::new(total);
        let mut seen = Vec::new();
        for _ in 0..(total / 4096 + 10) {
            if let Some(r) = p.advance(4096) {
                seen.push(r);
            }
        }
        assert_eq!(p.complete(), None, "the end was reported already");
        assert_eq!(seen.first(), Some(&(4096, total)));
        assert_eq!(seen.last(), Some(&(total, total)));
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(seen.len() <= 12, "{} reports", seen.len());
        let mut empty = Progress::new(0);
        assert_eq!(empty.complete(), Some((0, 0)));
        assert_eq!(empty.complete(), None);
    }

    #[test]
    fn wire_messages_round_trip_and_oversize_ones_are_refused() {
        let m = Wire::Open {
            version: WIRE_VERSION,
            device_level: 3,
            paths: vec!["data/b/x".into()],
        };
        assert_eq!(Wire::decode(&m.encode()).unwrap(), m);
        let many = Wire::Open {
            version: WIRE_VERSION,
            device_level: 3,
            paths: vec!["x".into(); MAX_FILES_PER_COPY + 1],
        };
        assert!(Wire::decode(&many.encode()).is_err());
        assert!(Wire::decode(&[0xff; 9]).is_err());
        assert!(Wire::decode(&vec![0; MAX_WIRE + 1]).is_err());
    }
}
