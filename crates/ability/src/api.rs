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
//! | [`ATTACH`] | AttachApplication | [`AttachArgs`] | `()`, then [`HostEvent`]s on the subscription | the spawned process itself (pid and uid checked) |
//! | [`STEP_DONE`] | AbilityTransitionDone | [`StepDone`] | `()` | the record's own app process |

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
/// An app host introduces itself and subscribes to its lifecycle commands.
pub const ATTACH: u32 = 10;
/// An app host finished a lifecycle step.
pub const STEP_DONE: u32 = 11;

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

/// A running ability, for dumps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `onConnect(want)`.
    Connect {
        /// The connection.
        conn: u64,
        /// Its Want.
        want: Want,
    },
    /// `onDisconnect(want)`.
    Disconnect {
        /// The connection.
        conn: u64,
    },
    /// `onDestroy()`.
    Destroy,
}

impl Step {
    /// The callback's name, as hosts report it in [`StepDone`] and hilog prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Create { .. } => "onCreate",
            Step::NewWant { .. } => "onNewWant",
            Step::Foreground => "onForeground",
            Step::Background => "onBackground",
            Step::Request { .. } => "onRequest",
            Step::Connect { .. } => "onConnect",
            Step::Disconnect { .. } => "onDisconnect",
            Step::Destroy => "onDestroy",
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
        /// The step.
        step: Step,
    },
}

/// Arguments of [`STEP_DONE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDone {
    /// The record.
    pub record: u64,
    /// The step's callback name (`onCreate`, `onForeground`, ...).
    pub step: String,
}
