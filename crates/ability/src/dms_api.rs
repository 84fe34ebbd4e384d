//! The distributed scheduler's IPC contract (SA [`SA_ID`], OpenHarmony's dmsfwk
//! DistributedSchedService): starting abilities on other devices and listing their missions.
//! `aa`, the SDK and the peer's distributed scheduler build on it alone.
//!
//! | code | method | args | result | who |
//! |------|--------|------|--------|-----|
//! | [`START_REMOTE_ABILITY`] | StartRemoteAbility | [`StartArgs`] (`want.deviceId` the target) | [`StartReply`] | DISTRIBUTED_DATASYNC here; the target checks it again |
//! | [`START_FROM_REMOTE`] | StartAbilityFromRemote | [`StartArgs`] | [`StartReply`] | a peer's scheduler, for its caller (synced token): DISTRIBUTED_DATASYNC; the ability must be exported |
//! | [`GET_REMOTE_MISSIONS`] | GetMissionInfos | `String` networkId | `Vec<`[`MissionInfo`]`>` | GET_RUNNING_INFO here and on the peer (plus DISTRIBUTED_DATASYNC there) |
//! | [`GET_LOCAL_MISSIONS`] | GetLocalMissionInfos | `()` | `Vec<`[`MissionInfo`]`>` | GET_RUNNING_INFO (a peer's scheduler calls it for its caller) |
//! | [`CONTINUE_MISSION`] | ContinueMission | [`ContinueArgs`] | `()` once the mission runs on the target | DISTRIBUTED_DATASYNC; an app (HAP token) needs MANAGE_MISSIONS too (a system API), checked in the method |
//!
//! Continuation's own messages (prepare, commit ...) do not go through these methods: the
//! daemons exchange them on the session the distributed data service keeps with each bound
//! peer, so each one is attributed to the device the session authenticated (its udid),
//! never to what the message says.
//!
//! The ability manager (SA 180) sends a StartAbility whose `want.deviceId` names another
//! device here, so an app's `startAbility(want)` and `aa start -d` take this path too. The
//! local scheduler makes a remote SA call (samgr's CALL_REMOTE path, dbinder) to the target's
//! scheduler on behalf of the original caller, so the target judges the caller's own synced
//! token, never the daemon's.
//!
//! Errors: the target's own codes (201, 16000001, 16000004 ...) come back as they are. A
//! device that is not online or not trusted answers the ability kit's 16000050 (internal
//! error) for a start, since startAbility has no code of its own for it, and
//! DistributedSchedule's 16300501 ("the system ability work abnormally") for a mission
//! listing, as distributedMissionManager does; the message names the device.

use crate::want::Element;
use serde::{Deserialize, Serialize};

pub use crate::api::{StartArgs, StartReply};

/// The distributed scheduler's SA id (1401).
pub const SA_ID: i32 = oxh_ipc::sa_id::DISTRIBUTED_SCHED;

/// Starts an ability on the device `want.deviceId` names.
pub const START_REMOTE_ABILITY: u32 = 1;
/// A peer's scheduler starts an ability here for its caller.
pub const START_FROM_REMOTE: u32 = 2;
/// Another device's missions (`aa dump -l -d`).
pub const GET_REMOTE_MISSIONS: u32 = 3;
/// This device's missions, as a peer asks for them.
pub const GET_LOCAL_MISSIONS: u32 = 4;

/// Moves a mission of this device to another (`continueMission`, `aa continue`).
pub const CONTINUE_MISSION: u32 = 5;

/// The permission an app needs to move missions (continueMission is a system API); the
/// shell and native callers need DISTRIBUTED_DATASYNC only.
pub const PERMISSION_MANAGE_MISSIONS: &str = "ohos.permission.MANAGE_MISSIONS";

/// Arguments of [`CONTINUE_MISSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinueArgs {
    /// The mission, on this device.
    pub mission_id: i32,
    /// The target device's networkId.
    pub dst_device_id: String,
    /// Allow installing the app on the target on demand.
    pub free_install: bool,
}

/// The permission every cross-device call needs (a user_grant permission).
pub const PERMISSION_DATASYNC: &str = "ohos.permission.DISTRIBUTED_DATASYNC";
/// The permission to read what runs (as `aa dump -l` needs).
pub const PERMISSION_RUNNING_INFO: &str = crate::api::PERMISSION_RUNNING_INFO;

/// One mission of a device, as another device sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissionInfo {
    /// Mission id (on its device).
    pub mission_id: i32,
    /// Its ability.
    pub element: Element,
    /// `FOREGROUND`, `BACKGROUND`, ...
    pub state: String,
    /// module.json declares the ability `continuable`: it may move to another device.
    pub continuable: bool,
}
