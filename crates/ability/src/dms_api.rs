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
//! | [`CONNECT_FROM_REMOTE`] | ConnectAbilityFromRemote | [`ConnectFromRemoteArgs`] + the stream the bus relays | [`ConnectReply`] | a peer's scheduler only (a remote SA call, checked in the method), for its caller (synced token): DISTRIBUTED_DATASYNC; the service must be exported |
//! | [`FETCH_BUNDLE_FROM_REMOTE`] | FetchBundleFromRemote | [`FetchBundleArgs`] + a stream the bus relays | [`FetchBundleReply`], then the files' bytes on the stream | a peer's scheduler only, and only for the bundle of the continuation this device is preparing to that device with install on demand allowed |
//!
//! **Install on demand.** A target that lacks the bundle of a continuation (none of that name
//! and appId, nor a declared continueBundleName) installs it when its policy allows
//! ([`FREE_INSTALL_PARAM`]) and the caller asked ([`ContinueArgs::free_install`]): its
//! scheduler fetches the signed HAPs from the source's ([`FETCH_BUNDLE_FROM_REMOTE`], over a
//! QUIC stream of the bus connection authenticated at binding) and hands them to its own
//! bundle manager, which checks signatures, profile and update rules as for any install. A
//! policy that forbids it answers 16300503 and installs nothing; a caller who did not ask
//! hears 16300504 when the target would have allowed it.
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
//! **Remote service connections.** The ability manager sends a CONNECT whose
//! `want.deviceId` names another device here: the local scheduler checks
//! DISTRIBUTED_DATASYNC, then makes a remote SA call of [`CONNECT_FROM_REMOTE`] that carries
//! the client's socket end (dbinder's stream-carrying call). The target's scheduler connects
//! the service on behalf of the remote client (exported services only; a [`crate::api::Peer`]
//! with the client's device, pid 0 and the synced token's local copy), with one end of a
//! socketpair its dbinder made; from then on both daemons relay the connection's bytes on a
//! QUIC stream of the bus connection authenticated at binding. The connection lives as long
//! as that stream: the client's disconnect (its end closing) ends the service's end too
//! (`onDisconnect` when it was the last), the service going away is the client's
//! `onDisconnect`, and OFFLINE ends both within the bus's OFFLINE time. One device holds at
//! most [`crate::manager::MAX_REMOTE_CONNECTIONS_PER_DEVICE`] connections here (16000007
//! past it), and a client uid at most `MAX_CONNECTIONS_PER_CLIENT`, local and remote
//! together, on its own device.
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

/// A peer's scheduler connects a service here for its caller (the call carries the stream
/// the bus relays).
pub const CONNECT_FROM_REMOTE: u32 = 6;

/// Arguments of [`CONNECT_FROM_REMOTE`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectFromRemoteArgs {
    /// The service (`deviceId` this device, or empty).
    pub want: crate::want::Want,
    /// The client's bundle on its device (empty: not an app), as its daemon knows it: what
    /// the service is told beside the client's synced token.
    pub client_bundle: String,
}

pub use crate::api::ConnectReply;

/// A target's scheduler fetches the signed HAPs of the bundle a continuation brings (the
/// call carries the stream the files come on).
pub const FETCH_BUNDLE_FROM_REMOTE: u32 = 7;

/// Arguments of [`FETCH_BUNDLE_FROM_REMOTE`]: which continuation, and its bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchBundleArgs {
    /// The continuation's number on the source (its txn).
    pub seq: u64,
    /// The bundle it moves.
    pub bundle_name: String,
}

/// What [`FETCH_BUNDLE_FROM_REMOTE`] answers: the sizes of the HAP files that follow on the
/// stream, one after the other, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchBundleReply {
    /// Each file's size in bytes.
    pub sizes: Vec<u64>,
}

/// Registers a listener of another device's movable missions (`registerMissionListener`):
/// its subscription hears [`MissionEvent`]s.
pub const REGISTER_MISSION_LISTENER: u32 = 8;

/// Arguments of [`REGISTER_MISSION_LISTENER`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissionListenerArgs {
    /// The device whose missions to follow.
    pub network_id: String,
    /// The caller's subscription id, where the events go.
    pub sub: u64,
}

/// What a mission listener hears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissionEvent {
    /// The device's missions that may move now (continuable, continue state ACTIVE), at
    /// registration if known and after each change (`notifyMissionsChanged`).
    MissionsChanged {
        /// The device.
        network_id: String,
        /// Its movable missions, at most [`MAX_SYNCED_MISSIONS`].
        missions: Vec<MissionInfo>,
    },
    /// The device went offline; the listener ends (`notifyNetDisconnect`).
    NetDisconnect {
        /// The device.
        network_id: String,
    },
}

/// The most missions one device's synced list holds (a launcher's list, not a dump).
pub const MAX_SYNCED_MISSIONS: usize = 64;

/// What schedulers send each other for mission sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissionSyncMsg {
    /// The sender's movable missions, at most [`MAX_SYNCED_MISSIONS`].
    Missions(Vec<MissionInfo>),
    /// Send me your list (a listener here has none yet, or a link just came up).
    Request,
}

/// Decodes a peer's mission sync message, its list cut to [`MAX_SYNCED_MISSIONS`]; `None`
/// if malformed.
pub fn decode_mission_sync(bytes: &[u8]) -> Option<MissionSyncMsg> {
    match oxh_ipc::decode(bytes).ok()? {
        MissionSyncMsg::Missions(mut v) => {
            v.truncate(MAX_SYNCED_MISSIONS);
            Some(MissionSyncMsg::Missions(v))
        }
        m => Some(m),
    }
}

/// The policy parameter for installing a continuing app on demand: `1` allows it, `0`
/// forbids it; unset, it is allowed unless the device is a release build
/// (`const.debuggable` is `0`), as OpenHarmony's release devices take apps from the store only.
pub const FREE_INSTALL_PARAM: &str = "persist.dms.free_install";

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
