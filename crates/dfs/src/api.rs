//! The distributed file daemon's IPC contract (SA 5201, OpenHarmony's
//! `DistributedFileDaemon`), apart from its service in the daemon.
//!
//! | code | method | args | result | who |
//! |------|--------|------|--------|-----|
//! | [`GET_DEVICE_VIEWS`] | GetDeviceViews | `()` | [`DeviceViews`] | DISTRIBUTED_DATASYNC |

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
