//! The ability manager's IPC contract (SA [`SA_ID`], OpenHarmony's AbilityManagerService):
//! method codes, argument and reply types. `aa`, the SDK and the app host build on it alone.
//!
//! | code | method | args | result | who |
//! |------|--------|------|--------|-----|
//! | [`START_ABILITY`] | StartAbility | [`StartArgs`] | [`StartReply`] | anyone; exported / START_INVISIBLE_ABILITY decide |
//! | [`STOP_SERVICE`] | StopServiceAbility | [`Element`] | `()` | the service's own app, the shell, natives |
//! | [`FORCE_STOP`] | KillProcess | `String` bundle | `()` | CLEAN_BACKGROUND_PROCESSES (the shell holds it) |
//! | [`TERMINATE_SELF`] | TerminateAbility | `u64` record | `()` | the record's own app process |
//! | [`DUMP_MISSIONS`] | DumpMissions | `()` | `Vec<`[`RecordDump`]`>` | GET_RUNNING_INFO (shell, natives) |
//! | [`CONNECT`] | ConnectAbility | [`ConnectArgs`] + the client's end of a socketpair | [`ConnectReply`] | anyone with a token; exported / START_INVISIBLE_ABILITY decide |
//! | [`ATTACH`] | AttachApplication | [`AttachArgs`] + the host's end of its control socket | `()`, then [`HostEvent`]s on the subscription, [`HostControl`]s on the control socket | the spawned process itself (pid and uid checked) |
//! | [`STEP_DONE`] | AbilityTransitionDone | [`StepDone`] | `()` | the record's own app process |
//! | [`CONNECTION_CLOSED`] | ConnectionClosed | `u64` connection | `()` | the service's own app process |
//! | [`SET_CONTINUE_STATE`] | SetMissionContinueState | [`ContinueStateArgs`] | `()` | the record's own app process |
//!
//! A connection is a Unix socketpair the client makes: it keeps one end and passes the
//! other with [`CONNECT`]; once the service's `onConnect` ran, the ability manager hands
//! that end to the service's host ([`HostControl::Serve`], with the client's identity), so
//! calls go from app to app without oxhd. The service's host reports the end of each
//! connection ([`CONNECTION_CLOSED`]). On the socket, each call is an IPC request frame
//! (`oxh_ipc::frame`, SA [`REMOTE_OBJECT_SA`]) and its answer a reply frame, as local IPC's
//! (the answer's bytes, or a `RemoteError` with the service's code): see `remote`.
//!
//! A [`CONNECT`] whose `want.deviceId` names another device goes to the distributed
//! scheduler (see [`crate::dms_api`]): the client's end is relayed to a connection the
//! target device makes for it, and the reply's [`ConnectReply::service`] names that device.

use crate::want::{Element, LaunchReason, Want};
use serde::{Deserialize, Serialize};

/// The ability manager's SA id (180).
pub const SA_ID: i32 = oxh_ipc::sa_id::ABILITY_MGR;

/// Starts an ability; answers once it is in the foreground (a service: once `onRequest` ran).
pub const START_ABILITY: u32 = 1;
/// Stops a started service extension.
pub const STOP_SERVICE: u32 = 2;
/// Kills a bundle's processes (`aa force-stop`).
pub const FORCE_STOP: u32 = 3;
/// Ends the calling ability (`terminateSelf`).
pub const TERMINATE_SELF: u32 = 4;
/// Missions and records (`aa dump -l`, hidumper).
pub const DUMP_MISSIONS: u32 = 5;
/// Connects to a service extension (`connectServiceExtensionAbility`).
pub const CONNECT: u32 = 6;
/// An app host introduces itself and subscribes to its lifecycle commands.
pub const ATTACH: u32 = 10;
/// An app host finished a lifecycle step.
pub const STEP_DONE: u32 = 11;
/// A service's host saw one of its connections end.
pub const CONNECTION_CLOSED: u32 = 12;
/// An ability says whether its mission may move to another device
/// (`context.setMissionContinueState`).
pub const SET_CONTINUE_STATE: u32 = 13;

/// The SA id the frames of a service connection carry (they go to the remote object).
pub const REMOTE_OBJECT_SA: i32 = 0;
/// Largest [`HostControl`] message (one SOCK_SEQPACKET packet).
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;

/// The daemon's IPC socket inside an app's sandbox.
pub const IPC_SOCKET: &str = "/run/oxhd.sock";
/// The environment variable that tells an app process where the daemon's socket is.
pub const IPC_SOCKET_ENV: &str = "OXH_SOCKET";
/// The environment variable that tells the app host which process it is ([`AttachArgs::proc`]).
pub const PROC_ENV: &str = "OXH_APP_PROC";

/// Permission to kill other apps' processes.
pub const PERMISSION_KILL: &str = "ohos.permission.CLEAN_BACKGROUND_PROCESSES";
/// Permission to read what runs.
pub const PERMISSION_RUNNING_INFO: &str = "ohos.permission.GET_RUNNING_INFO";
/// Permission to start abilities that are not exported.
pub const PERMISSION_START_INVISIBLE: &str = "ohos.permission.START_INVISIBLE_ABILITY";

/// Arguments of [`START_ABILITY`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartArgs {
    /// What to start.
    pub want: Want,
    /// Answer once the ability is in the foreground (`aa start -W`); else once the request
    /// is accepted, as OpenHarmony's startAbility does (an app may start one of its own
    /// abilities from a callback without waiting for itself).
    pub wait: bool,
}

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReply {
    /// The ability resolved from the Want.
    pub element: Element,
    /// With [`StartArgs::wait`]: how it reached the foreground.
    pub started: Option<StartedInfo>,
}

/// How a started ability reached the foreground (`aa start -W`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedInfo {
    /// Its record.
    pub record: u64,
    /// Its mission (UIAbilities).
    pub mission: Option<i32>,
    /// Cold (its process was spawned for it) or hot.
    pub cold: bool,
    /// From the request to the foreground, in microseconds.
    pub elapsed_us: u64,
}

/// Arguments of [`ATTACH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachArgs {
    /// The process id the spawner gave the host (its environment's `OXH_APP_PROC`).
    pub proc: u64,
    /// The subscription the host's commands arrive on.
    pub sub: u64,
}

/// Arguments of [`CONNECT`] (the client's socket end rides with them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectArgs {
    /// The service.
    pub want: Want,
}

/// One end of a connection, as the other end is told it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// AccessTokenID.
    pub token_id: u32,
    /// Its bundle (empty: not an app).
    pub bundle: String,
    /// The networkId of its device; empty: this device. A remote client (a connection from
    /// another device, relayed by the daemons) has pid 0, the overflow uid and the local copy
    /// of its synced token; its socket end was made by the daemon.
    pub device_id: String,
}

/// A made connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectReply {
    /// The service.
    pub element: Element,
    /// The connection's id.
    pub conn: u64,
    /// The service's process.
    pub service: Peer,
}

/// What the ability manager sends on a host's control socket (SOCK_SEQPACKET, one postcard
/// message per packet, at most [`MAX_CONTROL_MESSAGE`] bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostControl {
    /// Serve connection `conn` of service `record` with its remote object: the packet
    /// carries the connection's socket (SCM_RIGHTS).
    Serve {
        /// The service's record.
        record: u64,
        /// The connection.
        conn: u64,
        /// Who connected.
        client: Peer,
    },
}

/// A running ability, for dumps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordDump {
    /// Record id.
    pub record: u64,
    /// Mission id (UIAbilities).
    pub mission: Option<i32>,
    /// Its ability.
    pub element: Element,
    /// `FOREGROUND`, `BACKGROUND`, ...
    pub state: String,
    /// `UIAbility` or `ServiceExtension`.
    pub kind: String,
    /// Its process's pid.
    pub pid: Option<u32>,
    /// Services: live connections.
    pub connections: u32,
    /// Frozen while a continuation may move it to another device ("continuing").
    #[serde(default)]
    pub continuing: bool,
}

/// A lifecycle step the app host must run (the [`HostEvent::Schedule`] command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// `onCreate(want, launchParam)`.
    Create {
        /// Its Want.
        want: Want,
        /// Why.
        reason: LaunchReason,
    },
    /// `onAcceptWant(want)` of a `specified` ability (before any instance): the host reports
    /// the key it returns ([`StepDone::key`]).
    AcceptWant {
        /// The start's Want.
        want: Want,
    },
    /// `onNewWant(want)`.
    NewWant {
        /// The new Want.
        want: Want,
    },
    /// `onForeground()`.
    Foreground,
    /// `onBackground()`.
    Background,
    /// `onRequest(want, startId)`.
    Request {
        /// The start's Want.
        want: Want,
        /// The start's number.
        start_id: u32,
    },
    /// `onConnect(want)`: the first connection (later ones share its remote object).
    Connect {
        /// The connecting Want.
        want: Want,
    },
    /// `onDisconnect(want)`: the last connection went.
    Disconnect {
        /// The Want `onConnect` had.
        want: Want,
    },
    /// `onDestroy()`.
    Destroy,
    /// `onContinue(wantParam)`: the mission is about to move to another device; the host
    /// reports the app's answer and the wantParam it filled ([`StepDone::continued`]).
    Continue,
}

impl Step {
    /// The callback's name, as hosts report it in [`StepDone`] and hilog prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Create { .. } => "onCreate",
            Step::AcceptWant { .. } => "onAcceptWant",
            Step::NewWant { .. } => "onNewWant",
            Step::Foreground => "onForeground",
            Step::Background => "onBackground",
            Step::Request { .. } => "onRequest",
            Step::Connect { .. } => "onConnect",
            Step::Disconnect { .. } => "onDisconnect",
            Step::Destroy => "onDestroy",
            Step::Continue => "onContinue",
        }
    }
}

/// Events of an [`ATTACH`] subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostEvent {
    /// Run a step of an ability of this process, then report [`STEP_DONE`].
    Schedule {
        /// The record.
        record: u64,
        /// The ability.
        element: Element,
        /// Its module.json `srcEntry` (a native library's name: see docs/DESIGN.md).
        entry: String,
        /// The step (boxed: it is large beside the other events; the wire is the same).
        step: Box<Step>,
    },
    /// A connection this process made as a client was lost: the service died or was
    /// stopped (its `onDisconnect`).
    ConnectionLost {
        /// The connection.
        conn: u64,
    },
}

/// Arguments of [`STEP_DONE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDone {
    /// The record.
    pub record: u64,
    /// The step's callback name (`onCreate`, `onForeground`, ...).
    pub step: String,
    /// `onAcceptWant`: the instance key the ability gave.
    pub key: Option<String>,
    /// `onContinue`: what the app answered.
    pub continued: Option<ContinueReport>,
}

/// What an app's `onContinue` answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueReport {
    /// `AbilityConstant.OnContinueResult`: AGREE 0, REJECT 1, MISMATCH 2.
    pub result: i32,
    /// The wantParam it filled: postcard bytes of its parameters (a `Want`'s
    /// `parameters`), which the target's `onCreate` finds in its Want.
    pub want_param: Vec<u8>,
}

/// The app's answer from `onContinue` (`AbilityConstant.OnContinueResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnContinueResult {
    /// AGREE (0): go on, with the wantParam it filled.
    Agree,
    /// REJECT (1): the app will not move now.
    Reject,
    /// MISMATCH (2): the peer's version of the app cannot take this state.
    Mismatch,
}

/// `OnContinueResult.AGREE`.
pub const ON_CONTINUE_AGREE: i32 = 0;
/// `OnContinueResult.REJECT`.
pub const ON_CONTINUE_REJECT: i32 = 1;
/// `OnContinueResult.MISMATCH`.
pub const ON_CONTINUE_MISMATCH: i32 = 2;

/// Arguments of [`SET_CONTINUE_STATE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueStateArgs {
    /// The calling ability's record.
    pub record: u64,
    /// `ContinueState.ACTIVE` (true) or `INACTIVE` (false).
    pub active: bool,
}
