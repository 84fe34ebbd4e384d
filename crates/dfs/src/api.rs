//! The distributed file daemon's IPC contract (SA 5201, OpenHarmony's
//! `DistributedFileDaemon`), apart from its service in the daemon.
//!
//! | code | method | args | result | who |
//! |------|--------|------|--------|-----|
//! | [`GET_DEVICE_VIEWS`] | GetDeviceViews | `()` | [`DeviceViews`] | DISTRIBUTED_DATASYNC |
//! | [`PREPARE_SESSION`] | PrepareSession | [`PrepareSessionArgs`] | [`CopySession`] | DISTRIBUTED_DATASYNC |
//! | [`RECV_FILE`] | RequestSendFile | [`RecvFileArgs`] + fd | [`FileCopied`] | DISTRIBUTED_DATASYNC |
//! | [`CANCEL_COPY_TASK`] | CancelCopyTask | `u64` (task) | `()` | DISTRIBUTED_DATASYNC |
//!
//! A cross-device copy (`fs.copy` of a URI with `?networkid=`) is one session: PrepareSession
//! reaches the peer's daemon and learns the files' sizes; then, per file, the caller opens
//! its destination (a temp file, renamed once complete) and passes its descriptor with
//! RequestSendFile, which returns once the peer's daemon sent the file over the soft bus and
//! it was written, checksummed and synced. Progress goes to the caller's subscription as
//! [`CopyProgress`] events. CancelCopyTask (OpenHarmony's `TaskSignal.cancel`) ends the
//! session: the file in flight fails with [`crate::errcode::E_INTR`], and the caller removes
//! its temp file. Errors carry OpenHarmony's file codes ([`crate::errcode`]): 13900044 when
//! the peer is unreachable, 13900010 past [`crate::copy::MAX_CONCURRENT_COPIES`], 13900020
//! past [`crate::copy::MAX_FILES_PER_COPY`], 13900043 when no such task runs.

use serde::{Deserialize, Serialize};

/// The permission the daemon's methods need (cross-device file access is data sync).
pub const PERMISSION_DATASYNC: &str = "ohos.permission.DISTRIBUTED_DATASYNC";

/// Where the device views are mounted and which peers they show.
pub const GET_DEVICE_VIEWS: u32 = 1;

/// What [`GET_DEVICE_VIEWS`] answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceViews {
    /// The account tree this device serves to its peers.
    pub account_tree: String,
    /// Where `device_view` and `merge_view` are mounted (`None`: not mounted).
    pub mount: Option<String>,
    /// Why nothing is mounted, when nothing is (no /dev/fuse, no fusermount3 ...).
    pub unmounted_reason: Option<String>,
    /// The networkIds with a `device_view/<networkId>` now.
    pub peers: Vec<String>,
}

/// Starts a copy session from a peer's files (PrepareSession).
pub const PREPARE_SESSION: u32 = 2;
/// Receives one file of a session into the descriptor passed with the call (RequestSendFile).
pub const RECV_FILE: u32 = 3;
/// Cancels a copy session (CancelCopyTask).
pub const CANCEL_COPY_TASK: u32 = 4;

/// What [`PREPARE_SESSION`] takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareSessionArgs {
    /// The source device (the URI's `networkid`).
    pub network_id: String,
    /// The files, as paths in the source's account tree (see [`crate::uri::FileUri::account_path`]).
    pub paths: Vec<String>,
    /// The caller's subscription for [`CopyProgress`] events (0: none).
    pub sub: u64,
}

/// What [`PREPARE_SESSION`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySession {
    /// The task, for [`RECV_FILE`] and [`CANCEL_COPY_TASK`].
    pub task: u64,
    /// Each file's size, in the order asked.
    pub sizes: Vec<u64>,
}

/// What [`RECV_FILE`] takes (with the destination's descriptor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvFileArgs {
    /// The session.
    pub task: u64,
    /// Which of its files.
    pub index: u32,
}

/// What [`RECV_FILE`] answers: the file arrived whole and matches the sender's checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCopied {
    /// Its size.
    pub size: u64,
    /// Its XXH3-128 checksum.
    pub checksum: [u8; 16],
}

/// A progress event (`ProgressListener`'s `Progress`): bytes of the whole copy so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyProgress {
    /// The session.
    pub task: u64,
    /// Bytes copied so far (never decreasing).
    pub processed_size: u64,
    /// Bytes the copy moves in all.
    pub total_size: u64,
}
