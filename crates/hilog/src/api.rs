//! The hilog system ability's IPC contract: its SA id, method codes, and the argument and
//! result types (postcard via `oxh_ipc::encode`/`decode`) that the SDK and the CLI use.
//!
//! | code | method | argument | result | permission |
//! |---|---|---|---|---|
//! | [`WRITE`] | Write | [`WriteArgs`] | `()` | none |
//! | [`READ`] | Read | [`ReadArgs`] | [`ReadReply`]; events `Vec<LogEntry>` | DUMP |
//! | [`STOP_FOLLOW`] | StopFollow | `u64` subscription | `()` | DUMP |
//! | [`GET_BUFFER_SIZE`] | GetBufferSize | `()` | [`BufferInfo`] | DUMP |
//! | [`SET_BUFFER_SIZE`] | SetBufferSize | `u64` bytes | [`BufferInfo`] | DUMP |
//! | [`CLEAR`] | Clear | `()` | `()` | DUMP |
//! | [`SET_PRIVACY`] | SetPrivacy | `bool` (true = mask) | `()` | DUMP |
//! | [`PERSIST`] | Persist | [`PersistCmd`] | [`PersistStatus`] | DUMP |
//! | [`FLOW_CONTROL`] | FlowControl | [`FlowControlArgs`] | [`FlowControlInfo`] | DUMP |

use crate::{Filter, Level, LogArg, LogEntry, LogType};
use serde::{Deserialize, Serialize};

/// hilog's SA id (`oxh_samgr::sa_id::HILOG`), repeated here so clients need not link samgr;
/// a test pins the two together.
pub const SA_ID: i32 = oxh_ipc::sa_id::HILOG;
/// The permission every method but [`WRITE`] requires (the shell and system processes hold it).
pub const PERMISSION: &str = "ohos.permission.DUMP";

/// Write one line. Open to everyone; the pid is the caller's, from the kernel.
pub const WRITE: u32 = 1;
/// Read the buffer, optionally following new lines.
pub const READ: u32 = 2;
/// Stop a follow started by [`READ`].
pub const STOP_FOLLOW: u32 = 3;
/// `hilog -g`.
pub const GET_BUFFER_SIZE: u32 = 4;
/// `hilog -G SIZE`.
pub const SET_BUFFER_SIZE: u32 = 5;
/// `hilog -r`.
pub const CLEAR: u32 = 6;
/// `hilog -p on|off`.
pub const SET_PRIVACY: u32 = 7;
/// `hilog -w start|stop|query`.
pub const PERSIST: u32 = 8;
/// `hilog -Q pidon|pidoff` and the quota; `FlowControlArgs::default()` only queries.
pub const FLOW_CONTROL: u32 = 9;

/// Arguments of [`WRITE`]: OpenHarmony's `OH_LOG_Print(type, level, domain, tag, fmt, ...)`.
/// The daemon formats the message (applying privacy if on), cuts the tag to 31 bytes and the
/// message to 4095, and stamps the time itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteArgs {
    /// Severity.
    pub level: Level,
    /// App or core; only system processes (native/shell tokens) may write core lines.
    pub log_type: LogType,
    /// Domain: 0x0..=0xFFFF for app, 0xD000000..=0xD0FFFFF for core.
    pub domain: u32,
    /// Tag.
    pub tag: String,
    /// Format string with OpenHarmony's `%{public}`/`%{private}` marks.
    pub fmt: String,
    /// The arguments of `fmt`.
    pub args: Vec<LogArg>,
    /// The writing thread (the kernel only tells the daemon the process); 0 means the pid.
    pub tid: i32,
}

/// Arguments of [`READ`].
///
/// One reply holds at most about 512 KiB of entries. When [`ReadReply::more`] is set, call
/// again with [`ReadArgs::next_page`] until it is not. With `follow = Some(sub)` (on the first
/// call only), every line stored after that call is pushed to subscription `sub` as a
/// `Vec<LogEntry>` event until the client disconnects or calls [`STOP_FOLLOW`]; read the
/// remaining pages first, then the events, and lines come out in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadArgs {
    /// What to select.
    pub filter: Filter,
    /// `-a N`: only the first N matching lines.
    pub head: Option<u64>,
    /// `-z N`: only the last N matching lines.
    pub tail: Option<u64>,
    /// Only lines with seq greater than this (paging).
    pub after: Option<u64>,
    /// Only lines with seq up to this (paging: the first reply's [`ReadReply::last_seq`], so
    /// that later pages and follow events never repeat a line).
    pub until: Option<u64>,
    /// Follow new lines on this subscription id (`Client::subscribe().id()`).
    pub follow: Option<u64>,
}

impl ReadArgs {
    /// The arguments for the page after `reply`, or `None` when `reply` was the last page.
    pub fn next_page(&self, reply: &ReadReply) -> Option<ReadArgs> {
        if !reply.more {
            return None;
        }
        let last = reply.entries.last()?.seq;
        let got = reply.entries.len() as u64;
        Some(ReadArgs {
            filter: self.filter.clone(),
            head: self.head.map(|h| h.saturating_sub(got)),
            // The rest of a tail selection is exactly "every match after the last one seen".
            tail: None,
            after: Some(last),
            until: self.until.or(Some(reply.last_seq)),
            follow: None,
        })
    }
}

/// Result of [`READ`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReply {
    /// The selected entries, oldest first.
    pub entries: Vec<LogEntry>,
    /// More entries of this selection wait; see [`ReadArgs::next_page`].
    pub more: bool,
    /// The newest seq in the buffer when this page was taken; a follow started by this call
    /// sends only lines after it.
    pub last_seq: u64,
}

/// Result of [`GET_BUFFER_SIZE`] and [`SET_BUFFER_SIZE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BufferInfo {
    /// Capacity in bytes.
    pub size: u64,
    /// Bytes in use.
    pub used: u64,
    /// Entries stored.
    pub entries: u64,
}

/// Argument of [`PERSIST`] (`hilog -w`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistCmd {
    /// `-w start [-l SIZE] [-n NUM]`. The directory is the daemon's (never a caller's path).
    Start {
        /// Uncompressed bytes per file before rotating (`-l`, at least 64K); default 4 MiB.
        file_size: Option<u64>,
        /// Files kept (`-n`, 2..=1000); default 10.
        max_files: Option<u32>,
    },
    /// `-w stop`: finish the current file and stop.
    Stop,
    /// `-w query`: state, directory and files (flushes first, so sizes are current).
    Query,
}

/// One persisted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistFileInfo {
    /// File name inside [`PersistStatus::dir`].
    pub name: String,
    /// Size on disk (compressed) in bytes.
    pub size: u64,
}

/// Result of [`PERSIST`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistStatus {
    /// True while a persistence task runs.
    pub running: bool,
    /// The directory files are written to.
    pub dir: String,
    /// Rotation size in uncompressed bytes.
    pub file_size: u64,
    /// Files kept.
    pub max_files: u32,
    /// The persisted files, oldest first.
    pub files: Vec<PersistFileInfo>,
    /// Lines the persister lost because the buffer evicted them before they were written.
    pub missed: u64,
}

/// Argument of [`FLOW_CONTROL`]: fields left `None` are unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowControlArgs {
    /// Turn per-process limiting on or off (`-Q pidon|pidoff`).
    pub enabled: Option<bool>,
    /// Set the quota in bytes per second per process.
    pub quota: Option<u32>,
}

/// Result of [`FLOW_CONTROL`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowControlInfo {
    /// Whether limiting is on.
    pub enabled: bool,
    /// Bytes per second per process.
    pub quota: u32,
    /// Lines dropped per pid, largest first.
    pub drops: Vec<(i32, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::sample;

    #[test]
    fn sa_id_is_samgrs() {
        #[cfg(feature = "service")]
        assert_eq!(SA_ID, oxh_samgr::sa_id::HILOG);
    }

    #[test]
    fn paging_continues_after_the_last_entry() {
        let args = ReadArgs {
            head: Some(10),
            tail: Some(5),
            follow: Some(3),
            ..Default::default()
        };
        let reply = ReadReply {
            entries: vec![
                sample(7, Level::Info, "t", "a"),
                sample(9, Level::Info, "t", "b"),
            ],
            more: true,
            last_seq: 20,
        };
        let next = args.next_page(&reply).unwrap();
        assert_eq!(next.after, Some(9));
        assert_eq!(next.head, Some(8));
        assert_eq!(next.tail, None);
        assert_eq!(next.until, Some(20));
        let third = next
            .next_page(&ReadReply {
                last_seq: 30,
                ..reply.clone()
            })
            .unwrap();
        assert_eq!(
            third.until,
            Some(20),
            "the first snapshot bounds every page"
        );
        assert_eq!(next.follow, None);
        assert!(
            args.next_page(&ReadReply {
                more: false,
                ..reply
            })
            .is_none()
        );
    }

    #[test]
    fn args_round_trip_through_postcard() {
        let w = WriteArgs {
            level: Level::Info,
            log_type: LogType::App,
            domain: 0x3200,
            tag: "t".into(),
            fmt: "%{public}s %d".into(),
            args: vec!["a".into(), 1.into(), 2.5.into()],
            tid: 5,
        };
        let back: WriteArgs = oxh_ipc::decode(&oxh_ipc::encode(&w)).unwrap();
        assert_eq!(back, w);
        let c = PersistCmd::Start {
            file_size: Some(1 << 20),
            max_files: None,
        };
        let back: PersistCmd = oxh_ipc::decode(&oxh_ipc::encode(&c)).unwrap();
        assert_eq!(back, c);
    }
}
