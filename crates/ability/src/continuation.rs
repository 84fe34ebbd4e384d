//! Continuation (dmsfwk, SA 1401): moving a running mission from this device (the source) to
//! another (the target), as a pure core: no I/O, no clocks, no tasks. [`Source`] and
//! [`Target`] take the time (milliseconds, from the caller) and an input, and return what to
//! send, what to ask the ability manager to do, and, on the source, the one answer for the
//! `continueMission` / `aa continue` caller.
//!
//! # What must hold
//!
//! A continuation that fails at any point (the target refuses, crashes, the link drops) leaves
//! the app running on the source with its state; one that succeeded never leaves it running on
//! both. So the ability is *owned* by exactly one side at every moment, and ownership moves at
//! one instant only: when the target durably records a `Commit`.
//!
//! # Flow (the source coordinates, two phases)
//!
//! ```text
//!  Source                                               Target
//!  checks (16300502/505/506/507), journal OnContinue
//!  Freeze, onContinue → Agree + wantParam (≤ 100 KiB)
//!  journal Preparing
//!  Prepare {txn, bundle, appId, ability, wantParam} ──▶ journal Starting, StartPending
//!                                                      (launchReason CONTINUATION, not foreground)
//!                                                      started → journal Pending
//!                                                ◀──── Prepared {txn}
//!  journal Committing
//!  Commit {txn}                                  ────▶ journal Committed  ← the commit point
//!                                                      MakeForeground
//!                                                ◀──── Committed {txn}
//!  journal Done, EndMission (or keep it: the app's
//!  supportContinueSourceExit false), answer Ok
//! ```
//!
//! Every journal write comes before the outputs it guards; a real implementation writes
//! [`SourceJournal`] / [`TargetJournal`] to disk before it sends, and a restarted service
//! [`Source::recover`]s / [`Target::recover`]s from it.
//!
//! # Why exactly one copy runs
//!
//! - The target shows the ability (MakeForeground) only after it journaled `Committed`, and it
//!   journals that only on a `Commit`; it never journals `Committed` for a txn it has answered
//!   with a refusal, because a refusal is always journaled first (`Aborted`) and `Aborted` is
//!   final. So "committed" and "refused" exclude each other, for ever, for one txn.
//! - The source resumes its ability in two cases only: it never sent `Commit` (its journal says
//!   so: it journals `Committing` before the first `Commit`), or the target refused the txn,
//!   which by the rule above means the target will never run it.
//! - Once the source may have sent `Commit`, it does not know who owns the ability, so the
//!   ability stays frozen on the source and the source repeats `Commit` (which doubles as the
//!   status query: its answer is the outcome) until it hears `Committed` (end the mission) or a
//!   refusal (resume). No timeout lets it resume: a target that got `Commit` just before the link
//!   dropped is running the app, and no clock on the source can tell that case from a target that
//!   timed out. The price is an app frozen on the source, shown as "continuing", while the two
//!   devices are apart after the commit was sent; it ends when they meet again.
//! - The target gives up a pending txn by itself (timeout, link loss, restart) only while it has
//!   not seen `Commit`; giving up is journaled, so a late `Commit` is refused and the source
//!   resumes.
//!
//! Before `Commit`, every failure is quick: the source resumes and answers the error at once,
//! and sends `Abort` so that the target discards its pending instance (if the `Abort` is lost,
//! the target's own timeout does it).
//!
//! # Transactions
//!
//! A txn is (source device, sequence number); the source persists the next number, so a
//! restart never reuses one. A source runs one continuation at a time (16300506 otherwise) and
//! starts the next only after it learned the previous one's outcome, so the target keeps one
//! record per source device: a `Prepare` with a higher number supersedes the last record, and
//! any message for a lower number is stale and refused.
//!
//! # Error codes
//!
//! OpenHarmony's (errorcode-DistributedSchedule). Our choices where it has none of its own:
//! the app's `REJECT` and `MISMATCH` answers from `onContinue`, an ability not declared
//! continuable, onContinue's timeout and a restart of the service before the commit all answer
//! 16300501 ([`code::CONTINUE_ABNORMAL`]) with a message that says which; a wantParam larger
//! than [`MAX_WANT_PARAM`] answers 401. A target that could not be reached or did not start the
//! ability answers 16300508.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::want::LaunchReason;

/// Continuation's error codes, defined once (errorcode-DistributedSchedule).
pub mod code {
    /// "The system ability work abnormally." Also, in our port: the app's onContinue answered
    /// REJECT or MISMATCH, did not answer in time, the ability is not continuable, or the
    /// continuation service restarted before the commit.
    pub const CONTINUE_ABNORMAL: i32 = 16_300_501;
    /// "Failed to get the missionInfo of the specified missionId."
    pub const CONTINUE_NO_MISSION: i32 = 16_300_502;
    /// "The application is not installed on the remote end and installation-free is not
    /// supported."
    pub const CONTINUE_NOT_INSTALLED: i32 = 16_300_503;
    /// "The application is not installed on the remote end but installation-free is supported.
    /// Try again with the freeInstall flag."
    pub const CONTINUE_FREE_INSTALL: i32 = 16_300_504;
    /// "The operation device must be the device where the application to be continued is
    /// currently located or the target device."
    pub const CONTINUE_NOT_SOURCE_OR_TARGET: i32 = 16_300_505;
    /// "The local continuation task is already in progress."
    pub const CONTINUE_IN_PROGRESS: i32 = 16_300_506;
    /// "Failed to get the missionInfo of the specified bundle name."
    pub const CONTINUE_NO_BUNDLE_MISSION: i32 = 16_300_507;
    /// "Connect to the remote ability failed" (here: the target could not be reached before
    /// the commit, gave up, or could not start the ability).
    pub const CONTINUE_CONNECT_FAILED: i32 = 16_300_508;
    /// "The continuation is currently being performed on the remote end."
    pub const CONTINUE_REMOTE_IN_PROGRESS: i32 = 16_300_509;
    /// Invalid input parameter (a wantParam over [`super::MAX_WANT_PARAM`]).
    pub const INVALID_PARAM: i32 = crate::code::INVALID_PARAM;
}

/// The largest wantParam onContinue may hand over (100 KiB); larger ones are refused (401).
pub const MAX_WANT_PARAM: usize = 100 * 1024;

/// The most package files a target takes for one install on demand: the bundle manager's own
/// limit for one install.
pub const MAX_PACKAGE_FILES: usize = oxh_bundle::api::MAX_FILES as usize;

/// Checks the sizes of the package files a source announced for install on demand against
/// the installer's limits (files per install, bytes per package), before a byte is taken;
/// their total.
pub fn check_package_sizes(sizes: &[u64]) -> Result<u64, String> {
    let max = oxh_bundle::package::Limits::default().max_package_bytes;
    if sizes.is_empty() || sizes.len() > MAX_PACKAGE_FILES {
        return Err(format!(
            "the source offered {} package files (1..={MAX_PACKAGE_FILES} allowed)",
            sizes.len()
        ));
    }
    sizes
        .iter()
        .try_fold(0u64, |a, s| a.checked_add(*s))
        .filter(|t| *t <= max)
        .ok_or_else(|| format!("the source offered more than the {max} bytes one install takes"))
}

/// The launch reason the target's ability is created with (`LaunchReason.CONTINUATION`).
pub const LAUNCH_REASON_CONTINUATION: i32 = LaunchReason::Continuation as i32;

/// The wantParam key by which an app asks to keep its source mission after success (false).
/// The ability manager reads it from the wantParam and passes it as `source_exit`.
pub const SUPPORT_CONTINUE_SOURCE_EXIT_KEY: &str = "ohos.extra.param.key.supportContinueSourceExit";

/// How long the source waits, from the request, for onContinue and a prepared target
/// (OpenHarmony's continuation timeout); after that it aborts and resumes.
pub const CONTINUE_TIMEOUT_MS: u64 = 10_000;

/// How long the target holds a pending instance, from the `Prepare`, waiting for `Commit`.
pub const PENDING_TIMEOUT_MS: u64 = 10_000;

/// The longest reason a [`Refusal::InstallFailed`] carries (longer ones are cut).
pub const MAX_REASON: usize = 1024;

/// The first retransmission interval of `Prepare` and `Commit` (messages may be lost).
pub const RETRY_MS: u64 = 500;

/// The longest retransmission interval of `Commit` (it backs off while the peer is silent).
pub const MAX_RETRY_MS: u64 = 8_000;

/// What went wrong with a continuation. Each message starts with OpenHarmony's text for its
/// code; serializable because the source journals the answer it owes the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ContinueError {
    /// The app's onContinue answered REJECT (16300501 in our port).
    #[error(
        "The system ability work abnormally: the ability refused to continue (onContinue returned REJECT)"
    )]
    Rejected,
    /// The app's onContinue answered MISMATCH: versions differ (16300501 in our port).
    #[error(
        "The system ability work abnormally: the ability's versions do not match (onContinue returned MISMATCH)"
    )]
    Mismatch,
    /// Anything else that stops the source on its own side (16300501).
    #[error("The system ability work abnormally: {0}")]
    Abnormal(String),
    /// No mission has that id (16300502).
    #[error("Failed to get the missionInfo of the specified missionId: {0}")]
    MissionNotFound(i32),
    /// The target has no bundle that may take it, and cannot install one (16300503).
    #[error(
        "The application is not installed on the remote end and installation-free is not supported: {0}"
    )]
    NotInstalled(String),
    /// The target could install it on demand, but the caller did not ask (16300504).
    #[error(
        "The application is not installed on the remote end but installation-free is supported. Try again with the freeInstall flag: {0}"
    )]
    FreeInstallRequired(String),
    /// This device is not the source of the request (16300505).
    #[error(
        "The operation device must be the device where the application to be continued is currently located or the target device: {0}"
    )]
    NotSourceOrTarget(String),
    /// This device already runs a continuation (16300506).
    #[error("The local continuation task is already in progress.")]
    InProgress,
    /// No mission of that bundle (16300507).
    #[error("Failed to get the missionInfo of the specified bundle name: {0}")]
    BundleMissionNotFound(String),
    /// The target was not reached, gave up, or did not start the ability (16300508).
    #[error("Connect to the remote ability failed: {0}")]
    ConnectFailed(String),
    /// The target is taking another continuation of the same bundle (16300509).
    #[error("The continuation is currently being performed on the remote end.")]
    RemoteInProgress,
    /// A malformed request (401), e.g. a wantParam over [`MAX_WANT_PARAM`].
    #[error("Invalid input parameter: {0}")]
    InvalidParam(String),
    /// The target tried to install the app on demand and its bundle manager refused it, or
    /// the package could not be fetched (16300501 in our port: OpenHarmony's app store path
    /// has no code of its own here). The message says why, as the target's installer did.
    #[error(
        "The system ability work abnormally: installing {bundle} on the target failed: {reason}"
    )]
    InstallFailed {
        /// The bundle.
        bundle: String,
        /// The target's reason (its bundle manager's code and message).
        reason: String,
    },
}

impl ContinueError {
    /// OpenHarmony's code for this error.
    pub fn code(&self) -> i32 {
        match self {
            Self::Rejected | Self::Mismatch | Self::Abnormal(_) | Self::InstallFailed { .. } => {
                code::CONTINUE_ABNORMAL
            }
            Self::MissionNotFound(_) => code::CONTINUE_NO_MISSION,
            Self::NotInstalled(_) => code::CONTINUE_NOT_INSTALLED,
            Self::FreeInstallRequired(_) => code::CONTINUE_FREE_INSTALL,
            Self::NotSourceOrTarget(_) => code::CONTINUE_NOT_SOURCE_OR_TARGET,
            Self::InProgress => code::CONTINUE_IN_PROGRESS,
            Self::BundleMissionNotFound(_) => code::CONTINUE_NO_BUNDLE_MISSION,
            Self::ConnectFailed(_) => code::CONTINUE_CONNECT_FAILED,
            Self::RemoteInProgress => code::CONTINUE_REMOTE_IN_PROGRESS,
            Self::InvalidParam(_) => code::INVALID_PARAM,
        }
    }
}

impl From<ContinueError> for oxh_ipc::RemoteError {
    fn from(e: ContinueError) -> Self {
        oxh_ipc::RemoteError::new(e.code(), e.to_string())
    }
}

pub use crate::api::OnContinueResult;

/// One continuation: the source device's id and its sequence number there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Txn {
    /// The source device (its network id).
    pub source: String,
    /// The source's number for it; never reused (journaled).
    pub seq: u64,
}

/// Why the target will not take a txn. The target sends one only after it journaled the txn
/// as aborted, so a source that hears one may resume: the target will never run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// No local bundle may take it (none of that name and appId, nor a declared
    /// continueBundleName); `free_install_supported`: could it be installed on demand.
    NotInstalled {
        /// Whether installation-free (on demand) is possible for it.
        free_install_supported: bool,
    },
    /// The ability failed to start, or died while pending.
    StartFailed,
    /// The target tried to install the bundle on demand and could not (its reason, at most
    /// [`MAX_REASON`] bytes).
    InstallFailed(String),
    /// Another continuation of the same bundle is pending here.
    Busy,
    /// The target gave up (timeout, link loss, restart, the source's `Abort`), or the txn is
    /// stale or unknown here.
    Aborted,
}

/// The messages between the source's and the target's continuation services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Source → target: start a pending instance with this state.
    Prepare {
        /// The continuation.
        txn: Txn,
        /// The source's bundle name.
        bundle: String,
        /// Its appId (signer); the target's bundle must have the same.
        app_id: String,
        /// Other bundle names that may take it (`continueBundleName` in module.json).
        continue_bundle_names: Vec<String>,
        /// The ability's name.
        ability: String,
        /// What onContinue filled, opaque here (at most [`MAX_WANT_PARAM`] bytes).
        want_param: Vec<u8>,
        /// The caller allows installing the app on demand.
        free_install: bool,
    },
    /// Target → source: the pending instance exists; waiting for `Commit`.
    Prepared {
        /// The continuation.
        txn: Txn,
    },
    /// Target → source: the target will never run this txn.
    Refused {
        /// The continuation.
        txn: Txn,
        /// Why.
        why: Refusal,
    },
    /// Source → target: take the ability. Idempotent, and repeated until answered, so it is
    /// also the status query after a partition or a restart.
    Commit {
        /// The continuation.
        txn: Txn,
    },
    /// Target → source: the target owns and runs the ability.
    Committed {
        /// The continuation.
        txn: Txn,
    },
    /// Source → target: the source gave up before committing; discard the pending instance.
    Abort {
        /// The continuation.
        txn: Txn,
    },
}

impl Message {
    /// The txn the message is about.
    pub fn txn(&self) -> &Txn {
        match self {
            Self::Prepare { txn, .. }
            | Self::Prepared { txn }
            | Self::Refused { txn, .. }
            | Self::Commit { txn }
            | Self::Committed { txn }
            | Self::Abort { txn } => txn,
        }
    }
}

/// What this device has installed under one bundle name, as [`local_bundle`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledBundle {
    /// Its appId (`bundleName_` + the signer's public key).
    pub app_id: String,
    /// The `continueBundleName` its ability of the same name declares.
    pub continue_bundle_names: Vec<String>,
}

/// The signer part of an appId (`bundleName_publicKey`), if it has that form.
fn signer<'a>(app_id: &'a str, bundle: &str) -> Option<&'a str> {
    app_id.strip_prefix(bundle)?.strip_prefix('_')
}

/// Which local bundle may take a continuation of `bundle` signed as `app_id`:
/// - that bundle, installed here with the same appId;
/// - or one of its declared `continueBundleName`s, installed here by the same signer, whose
///   ability declares `bundle` back (both apps agree to trade missions, as OpenHarmony asks
///   both to configure it; the signer check keeps another developer's app out).
///
/// `installed` answers a local bundle's appId and its ability's declarations. The ability
/// manager runs this when it carries out [`TargetAction::StartPending`] (and reports
/// [`StartFailure::NotInstalled`] on `None`).
pub fn local_bundle<'a>(
    bundle: &'a str,
    continue_bundle_names: &'a [String],
    app_id: &str,
    installed: impl Fn(&str) -> Option<InstalledBundle>,
) -> Option<&'a str> {
    if installed(bundle).is_some_and(|i| i.app_id == app_id) {
        return Some(bundle);
    }
    let source_signer = signer(app_id, bundle)?;
    continue_bundle_names
        .iter()
        .map(String::as_str)
        .filter(|name| *name != bundle)
        .find(|name| {
            installed(name).is_some_and(|i| {
                signer(&i.app_id, name) == Some(source_signer)
                    && i.continue_bundle_names.iter().any(|b| b == bundle)
            })
        })
}

// ---------------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------------

/// Which mission the caller named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissionRef {
    /// `continueMission({missionId})`.
    Id(i32),
    /// `continueMission({bundleName})`.
    Bundle(String),
}

/// What the ability manager knows of the mission to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissionInfo {
    /// The mission.
    pub mission_id: i32,
    /// Its bundle.
    pub bundle: String,
    /// The bundle's appId (signer).
    pub app_id: String,
    /// The ability's name.
    pub ability: String,
    /// `continuable` in module.json.
    pub continuable: bool,
    /// `continueBundleName` in module.json.
    pub continue_bundle_names: Vec<String>,
}

/// A `continueMission` / `aa continue` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueRequest {
    /// The caller's id for it, echoed in [`SourceOutput::Done`].
    pub request: u64,
    /// The device the mission is on (must be this one here).
    pub src_device: String,
    /// Where it should go.
    pub dst_device: String,
    /// The mission named.
    pub mission: MissionRef,
    /// What the ability manager found for `mission` (`None`: no such mission).
    pub found: Option<MissionInfo>,
    /// The caller allows installing the app on the target on demand.
    pub free_install: bool,
}

/// What the source receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceInput {
    /// A caller asks to move a mission.
    Continue(ContinueRequest),
    /// The app's onContinue answered (for [`SourceAction::CallOnContinue`] with this `seq`).
    OnContinue {
        /// The txn's sequence number.
        seq: u64,
        /// Agree, Reject or Mismatch.
        result: OnContinueResult,
        /// The wantParam it filled, serialized.
        want_param: Vec<u8>,
        /// [`SUPPORT_CONTINUE_SOURCE_EXIT_KEY`]'s value (true unless the app set it false).
        source_exit: bool,
    },
    /// A message from a peer device.
    Message {
        /// The sending device.
        from: String,
        /// The message.
        msg: Message,
    },
    /// The time passed [`Source::deadline`].
    Tick,
    /// The link to a device dropped.
    LinkDown {
        /// The device.
        peer: String,
    },
    /// The link to a device is up (again).
    LinkUp {
        /// The device.
        peer: String,
    },
}

/// What the source asks the ability manager to do with the mission's ability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAction {
    /// Make it inactive, state kept (it must not run while another copy might).
    Freeze {
        /// The mission.
        mission_id: i32,
    },
    /// Call its onContinue(wantParam); answer with [`SourceInput::OnContinue`].
    CallOnContinue {
        /// The txn's sequence number, to echo.
        seq: u64,
        /// The mission.
        mission_id: i32,
    },
    /// Let it run again, with its state (idempotent).
    Resume {
        /// The mission.
        mission_id: i32,
    },
    /// End the mission: it runs on the target now (idempotent).
    EndMission {
        /// The mission.
        mission_id: i32,
    },
}

/// What the source does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutput {
    /// Send a message to a device.
    Send {
        /// The device.
        to: String,
        /// The message.
        msg: Message,
    },
    /// Ask the ability manager.
    Act(SourceAction),
    /// The caller's answer. One per request; a restarted source repeats the last one (same
    /// request id, same result), so a caller keys answers by `request`.
    Done {
        /// The caller's id.
        request: u64,
        /// Ok: the mission runs on the target now.
        result: Result<(), ContinueError>,
    },
}

/// Where the source's current continuation is, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceStage {
    /// Frozen, onContinue called. A restart aborts.
    OnContinue,
    /// `Prepare` may have been sent, `Commit` not. A restart aborts.
    Preparing {
        /// The app's [`SUPPORT_CONTINUE_SOURCE_EXIT_KEY`].
        source_exit: bool,
    },
    /// `Commit` may have been sent: the outcome is the target's; wait for it, frozen.
    Committing {
        /// The app's [`SUPPORT_CONTINUE_SOURCE_EXIT_KEY`].
        source_exit: bool,
    },
    /// Over; the answer is kept to repeat after a restart.
    Done {
        /// The answer.
        result: Result<(), ContinueError>,
        /// Whether success ended the mission (else it resumed).
        source_exit: bool,
    },
}

/// The source's journal record of its current (or last) continuation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The txn's number.
    pub seq: u64,
    /// The caller's id.
    pub request: u64,
    /// The mission.
    pub mission_id: i32,
    /// Its bundle (for error messages).
    pub bundle: String,
    /// The target device.
    pub target: String,
    /// The caller allowed install on demand.
    pub free_install: bool,
    /// Where it is.
    pub stage: SourceStage,
}

/// What the source keeps on disk: written before each output it guards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceJournal {
    /// The next txn number.
    pub next_seq: u64,
    /// The current or last continuation.
    pub current: Option<SourceRecord>,
}

/// What the source keeps only in memory: timers, and what `Prepare` carries.
#[derive(Debug, Default)]
struct SourceLive {
    /// Until when it may take before the commit (pre-commit stages only).
    deadline: Option<u64>,
    /// When to repeat `Prepare` or `Commit`.
    retry_at: Option<u64>,
    /// The current retransmission interval.
    backoff: u64,
    /// The `Prepare` to repeat.
    prepare: Option<Message>,
    /// The mission, for the `Prepare`.
    mission: Option<MissionInfo>,
    /// The link to the target is known down.
    link_down: bool,
}

/// The source side of continuation, one continuation at a time.
#[derive(Debug)]
pub struct Source {
    local: String,
    journal: SourceJournal,
    live: SourceLive,
}

impl Source {
    /// A source with an empty journal, on device `local`.
    pub fn new(local: impl Into<String>) -> Self {
        Self {
            local: local.into(),
            journal: SourceJournal::default(),
            live: SourceLive::default(),
        }
    }

    /// A restarted source: what it was doing is in its journal. Before the commit it aborts
    /// (resume, `Abort`, answer 16300501); while committing it asks the target again; when
    /// done it repeats the answer and the mission action (both idempotent).
    pub fn recover(
        local: impl Into<String>,
        journal: SourceJournal,
        now: u64,
    ) -> (Self, Vec<SourceOutput>) {
        let mut s = Self {
            local: local.into(),
            journal,
            live: SourceLive::default(),
        };
        let mut out = Vec::new();
        let Some(rec) = s.journal.current.clone() else {
            return (s, out);
        };
        match rec.stage {
            SourceStage::OnContinue => s.finish(
                Err(ContinueError::Abnormal(
                    "the continuation service restarted during onContinue".into(),
                )),
                false,
                &mut out,
            ),
            SourceStage::Preparing { .. } => {
                out.push(s.send(
                    &rec.target,
                    Message::Abort {
                        txn: s.txn(rec.seq),
                    },
                ));
                s.finish(
                    Err(ContinueError::Abnormal(
                        "the continuation service restarted before the commit".into(),
                    )),
                    false,
                    &mut out,
                );
            }
            SourceStage::Committing { .. } => {
                out.push(s.send(
                    &rec.target,
                    Message::Commit {
                        txn: s.txn(rec.seq),
                    },
                ));
                s.live.backoff = RETRY_MS;
                s.live.retry_at = Some(now + RETRY_MS);
            }
            SourceStage::Done {
                result,
                source_exit,
            } => {
                out.push(SourceOutput::Act(mission_action(
                    rec.mission_id,
                    &result,
                    source_exit,
                )));
                out.push(SourceOutput::Done {
                    request: rec.request,
                    result,
                });
            }
        }
        (s, out)
    }

    /// What to write to disk (after each [`Source::handle`], before carrying out its outputs).
    pub fn journal(&self) -> &SourceJournal {
        &self.journal
    }

    /// When to call [`Source::handle`] with [`SourceInput::Tick`] next.
    pub fn deadline(&self) -> Option<u64> {
        match (self.live.deadline, self.live.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a continuation is under way (not yet answered).
    pub fn busy(&self) -> bool {
        self.journal
            .current
            .as_ref()
            .is_some_and(|r| !matches!(r.stage, SourceStage::Done { .. }))
    }

    /// Whether this source offers the package of `bundle` to `peer` for txn `seq`: only
    /// while that txn prepares there, and only if its caller allowed install on demand. The
    /// one rule by which the scheduler serves an app's signed HAPs to another device.
    pub fn offers(&self, peer: &str, seq: u64, bundle: &str) -> bool {
        self.journal.current.as_ref().is_some_and(|r| {
            r.target == peer
                && r.seq == seq
                && r.bundle == bundle
                && r.free_install
                && matches!(r.stage, SourceStage::Preparing { .. })
        })
    }

    /// Take one input at time `now` (milliseconds).
    pub fn handle(&mut self, now: u64, input: SourceInput) -> Vec<SourceOutput> {
        let mut out = Vec::new();
        match input {
            SourceInput::Continue(req) => self.on_request(now, req, &mut out),
            SourceInput::OnContinue {
                seq,
                result,
                want_param,
                source_exit,
            } => self.on_continue_answer(now, seq, result, want_param, source_exit, &mut out),
            SourceInput::Message { from, msg } => self.on_message(now, &from, msg, &mut out),
            SourceInput::Tick => self.on_tick(now, &mut out),
            SourceInput::LinkDown { peer } => self.on_link(now, &peer, false, &mut out),
            SourceInput::LinkUp { peer } => self.on_link(now, &peer, true, &mut out),
        }
        out
    }

    fn txn(&self, seq: u64) -> Txn {
        Txn {
            source: self.local.clone(),
            seq,
        }
    }

    fn send(&self, to: &str, msg: Message) -> SourceOutput {
        SourceOutput::Send {
            to: to.to_owned(),
            msg,
        }
    }

    fn on_request(&mut self, now: u64, req: ContinueRequest, out: &mut Vec<SourceOutput>) {
        let reply = |out: &mut Vec<SourceOutput>, e| {
            out.push(SourceOutput::Done {
                request: req.request,
                result: Err(e),
            })
        };
        if self.busy() {
            return reply(out, ContinueError::InProgress);
        }
        if req.src_device == req.dst_device {
            return reply(
                out,
                ContinueError::InvalidParam("the source and the target are the same device".into()),
            );
        }
        if req.src_device != self.local {
            let e = if req.dst_device == self.local {
                // OpenHarmony lets the target start it too (it asks the source); not in this core.
                ContinueError::Abnormal(
                    "a continuation must be started on its source device here".into(),
                )
            } else {
                ContinueError::NotSourceOrTarget(format!(
                    "this device is {}, not {}",
                    self.local, req.src_device
                ))
            };
            return reply(out, e);
        }
        let Some(mission) = req.found.clone() else {
            let e = match &req.mission {
                MissionRef::Id(id) => ContinueError::MissionNotFound(*id),
                MissionRef::Bundle(b) => ContinueError::BundleMissionNotFound(b.clone()),
            };
            return reply(out, e);
        };
        if !mission.continuable {
            return reply(
                out,
                ContinueError::Abnormal(format!("{} is not continuable", mission.ability)),
            );
        }
        let seq = self.journal.next_seq;
        self.journal.next_seq += 1;
        self.journal.current = Some(SourceRecord {
            seq,
            request: req.request,
            mission_id: mission.mission_id,
            bundle: mission.bundle.clone(),
            target: req.dst_device.clone(),
            free_install: req.free_install,
            stage: SourceStage::OnContinue,
        });
        self.live = SourceLive {
            deadline: Some(now + CONTINUE_TIMEOUT_MS),
            mission: Some(mission.clone()),
            ..SourceLive::default()
        };
        out.push(SourceOutput::Act(SourceAction::Freeze {
            mission_id: mission.mission_id,
        }));
        out.push(SourceOutput::Act(SourceAction::CallOnContinue {
            seq,
            mission_id: mission.mission_id,
        }));
    }

    fn on_continue_answer(
        &mut self,
        now: u64,
        seq: u64,
        result: OnContinueResult,
        want_param: Vec<u8>,
        source_exit: bool,
        out: &mut Vec<SourceOutput>,
    ) {
        let Some(rec) = self.journal.current.as_mut() else {
            return;
        };
        if rec.seq != seq || rec.stage != SourceStage::OnContinue {
            return; // a late answer for a continuation already given up
        }
        let err = match result {
            OnContinueResult::Reject => Some(ContinueError::Rejected),
            OnContinueResult::Mismatch => Some(ContinueError::Mismatch),
            OnContinueResult::Agree if want_param.len() > MAX_WANT_PARAM => {
                Some(ContinueError::InvalidParam(format!(
                    "the wantParam is {} bytes, more than {MAX_WANT_PARAM}",
                    want_param.len()
                )))
            }
            OnContinueResult::Agree if self.live.link_down => Some(ContinueError::ConnectFailed(
                "the link to the target is down".into(),
            )),
            OnContinueResult::Agree => None,
        };
        if let Some(e) = err {
            return self.finish(Err(e), false, out);
        }
        rec.stage = SourceStage::Preparing { source_exit };
        let target = rec.target.clone();
        let Some(m) = self.live.mission.as_ref() else {
            // Only after a restart, which never leaves OnContinue standing.
            return self.finish(
                Err(ContinueError::Abnormal("the mission was forgotten".into())),
                false,
                out,
            );
        };
        let prepare = Message::Prepare {
            txn: self.txn(seq),
            bundle: m.bundle.clone(),
            app_id: m.app_id.clone(),
            continue_bundle_names: m.continue_bundle_names.clone(),
            ability: m.ability.clone(),
            want_param,
            free_install: self
                .journal
                .current
                .as_ref()
                .is_some_and(|r| r.free_install),
        };
        out.push(self.send(&target, prepare.clone()));
        self.live.prepare = Some(prepare);
        self.live.backoff = RETRY_MS;
        self.live.retry_at = Some(now + RETRY_MS);
    }

    fn on_message(&mut self, now: u64, from: &str, msg: Message, out: &mut Vec<SourceOutput>) {
        if msg.txn().source != self.local {
            return;
        }
        let seq = msg.txn().seq;
        let current = self
            .journal
            .current
            .as_ref()
            .filter(|r| r.seq == seq && r.target == from)
            .map(|r| r.stage.clone());
        match (msg, current) {
            (Message::Prepared { txn }, Some(SourceStage::Preparing { source_exit })) => {
                if let Some(rec) = self.journal.current.as_mut() {
                    rec.stage = SourceStage::Committing { source_exit };
                }
                self.live.deadline = None;
                self.live.prepare = None;
                self.live.backoff = RETRY_MS;
                self.live.retry_at = Some(now + RETRY_MS);
                out.push(self.send(from, Message::Commit { txn }));
            }
            (Message::Prepared { txn }, Some(SourceStage::Committing { .. })) => {
                out.push(self.send(from, Message::Commit { txn }));
            }
            // A target holding a pending instance we gave up (or never had): let it go.
            (
                Message::Prepared { txn },
                None | Some(SourceStage::Done { result: Err(_), .. } | SourceStage::OnContinue),
            ) => {
                out.push(self.send(from, Message::Abort { txn }));
            }
            (Message::Committed { .. }, Some(SourceStage::Committing { source_exit })) => {
                self.finish(Ok(()), source_exit, out);
            }
            (
                Message::Refused { why, .. },
                Some(SourceStage::Preparing { .. } | SourceStage::Committing { .. }),
            ) => {
                let e = self.refusal_error(why);
                self.finish(Err(e), false, out);
            }
            _ => {}
        }
    }

    fn refusal_error(&self, why: Refusal) -> ContinueError {
        let (bundle, free_install) = self
            .journal
            .current
            .as_ref()
            .map(|r| (r.bundle.clone(), r.free_install))
            .unwrap_or_default();
        match why {
            Refusal::NotInstalled {
                free_install_supported: true,
            } if !free_install => ContinueError::FreeInstallRequired(bundle),
            Refusal::NotInstalled { .. } => ContinueError::NotInstalled(bundle),
            Refusal::StartFailed => {
                ContinueError::ConnectFailed("the target could not start the ability".into())
            }
            Refusal::InstallFailed(reason) => ContinueError::InstallFailed {
                bundle,
                reason: cut(reason),
            },
            Refusal::Busy => ContinueError::RemoteInProgress,
            Refusal::Aborted => {
                ContinueError::ConnectFailed("the target gave up the continuation".into())
            }
        }
    }

    fn on_tick(&mut self, now: u64, out: &mut Vec<SourceOutput>) {
        let Some(rec) = self.journal.current.clone() else {
            return;
        };
        if self.live.deadline.is_some_and(|d| now >= d) {
            match rec.stage {
                SourceStage::OnContinue => {
                    let e = ContinueError::Abnormal(format!(
                        "onContinue did not answer within {CONTINUE_TIMEOUT_MS} ms"
                    ));
                    return self.finish(Err(e), false, out);
                }
                SourceStage::Preparing { .. } => {
                    out.push(self.send(
                        &rec.target,
                        Message::Abort {
                            txn: self.txn(rec.seq),
                        },
                    ));
                    let e = ContinueError::ConnectFailed(format!(
                        "the target did not prepare within {CONTINUE_TIMEOUT_MS} ms"
                    ));
                    return self.finish(Err(e), false, out);
                }
                _ => self.live.deadline = None,
            }
        }
        if self.live.retry_at.is_some_and(|r| now >= r) {
            let msg = match rec.stage {
                SourceStage::Preparing { .. } => self.live.prepare.clone(),
                SourceStage::Committing { .. } => {
                    self.live.backoff = (self.live.backoff * 2).min(MAX_RETRY_MS);
                    Some(Message::Commit {
                        txn: self.txn(rec.seq),
                    })
                }
                _ => None,
            };
            match msg {
                Some(msg) => {
                    out.push(self.send(&rec.target, msg));
                    self.live.retry_at = Some(now + self.live.backoff);
                }
                None => self.live.retry_at = None,
            }
        }
    }

    fn on_link(&mut self, now: u64, peer: &str, up: bool, out: &mut Vec<SourceOutput>) {
        let Some(rec) = self.journal.current.clone().filter(|r| r.target == peer) else {
            return;
        };
        self.live.link_down = !up;
        match (up, rec.stage) {
            (false, SourceStage::OnContinue) => {
                self.finish(
                    Err(ContinueError::ConnectFailed(
                        "the link to the target dropped".into(),
                    )),
                    false,
                    out,
                );
            }
            (false, SourceStage::Preparing { .. }) => {
                out.push(self.send(
                    peer,
                    Message::Abort {
                        txn: self.txn(rec.seq),
                    },
                ));
                self.finish(
                    Err(ContinueError::ConnectFailed(
                        "the link to the target dropped".into(),
                    )),
                    false,
                    out,
                );
            }
            (true, SourceStage::Committing { .. }) => {
                out.push(self.send(
                    peer,
                    Message::Commit {
                        txn: self.txn(rec.seq),
                    },
                ));
                self.live.backoff = RETRY_MS;
                self.live.retry_at = Some(now + RETRY_MS);
            }
            _ => {}
        }
    }

    /// Journal the outcome, then act on the mission and answer the caller.
    fn finish(
        &mut self,
        result: Result<(), ContinueError>,
        source_exit: bool,
        out: &mut Vec<SourceOutput>,
    ) {
        let Some(rec) = self.journal.current.as_mut() else {
            return;
        };
        rec.stage = SourceStage::Done {
            result: result.clone(),
            source_exit,
        };
        let (mission_id, request) = (rec.mission_id, rec.request);
        let link_down = self.live.link_down;
        self.live = SourceLive {
            link_down,
            ..SourceLive::default()
        };
        out.push(SourceOutput::Act(mission_action(
            mission_id,
            &result,
            source_exit,
        )));
        out.push(SourceOutput::Done { request, result });
    }
}

/// After the outcome: the mission ends only on success with source exit; otherwise it resumes.
fn mission_action(
    mission_id: i32,
    result: &Result<(), ContinueError>,
    source_exit: bool,
) -> SourceAction {
    if result.is_ok() && source_exit {
        SourceAction::EndMission { mission_id }
    } else {
        SourceAction::Resume { mission_id }
    }
}

// ---------------------------------------------------------------------------------------------
// Target
// ---------------------------------------------------------------------------------------------

/// Why the ability manager could not give a pending instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFailure {
    /// No local bundle may take it ([`local_bundle`] found none, and none installed on demand).
    NotInstalled {
        /// Could it be installed on demand.
        free_install_supported: bool,
    },
    /// The app failed (crashed) while starting.
    Failed,
    /// Installing it on demand failed (the installer's reason).
    InstallFailed(String),
}

/// `reason` cut to at most [`MAX_REASON`] bytes, on a character boundary.
fn cut(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// What the target receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetInput {
    /// A message from a peer device.
    Message {
        /// The sending device.
        from: String,
        /// The message.
        msg: Message,
    },
    /// The pending instance of [`TargetAction::StartPending`] exists (onCreate ran).
    Started {
        /// The continuation.
        txn: Txn,
    },
    /// It could not be started.
    StartFailed {
        /// The continuation.
        txn: Txn,
        /// Why.
        why: StartFailure,
    },
    /// The pending instance died (before or after it was made foreground).
    Died {
        /// The continuation.
        txn: Txn,
    },
    /// The time passed [`Target::deadline`].
    Tick,
    /// The link to a device dropped.
    LinkDown {
        /// The device.
        peer: String,
    },
    /// The link to a device is up (again).
    LinkUp {
        /// The device.
        peer: String,
    },
}

/// What the target asks the ability manager to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAction {
    /// Create the ability (onCreate with the wantParam and `launch_reason`) but do not show
    /// it; answer [`TargetInput::Started`] or [`TargetInput::StartFailed`].
    StartPending {
        /// The continuation.
        txn: Txn,
        /// The source's bundle name.
        bundle: String,
        /// Other bundle names that may take it.
        continue_bundle_names: Vec<String>,
        /// The appId the local bundle must have.
        app_id: String,
        /// The ability.
        ability: String,
        /// The state, as onContinue filled it.
        want_param: Vec<u8>,
        /// [`LAUNCH_REASON_CONTINUATION`].
        launch_reason: i32,
        /// Install on demand if not installed.
        free_install: bool,
    },
    /// Show it and let it run: the target owns it now (idempotent).
    MakeForeground {
        /// The continuation.
        txn: Txn,
    },
    /// Destroy the pending instance, if any (idempotent; never for a committed txn).
    Discard {
        /// The continuation.
        txn: Txn,
    },
    /// After a restart: destroy every continuation instance not yet shown, except `keep`
    /// (the committed ones, whose MakeForeground may not have been carried out). A restart
    /// may have lost a `Discard` whose txn the journal no longer names (superseded), so the
    /// journal alone cannot list what to destroy.
    DiscardPendingExcept {
        /// The committed txns.
        keep: Vec<Txn>,
    },
}

/// What the target does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOutput {
    /// Send a message to a device.
    Send {
        /// The device.
        to: String,
        /// The message.
        msg: Message,
    },
    /// Ask the ability manager.
    Act(TargetAction),
}

/// Where a txn is on the target, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetState {
    /// StartPending asked, not yet started.
    Starting,
    /// Started, `Prepared` sent, waiting for `Commit`.
    Pending,
    /// `Commit` received: this side owns the ability. Final.
    Committed,
    /// Given up or refused: this side will never run it. Final.
    Aborted {
        /// What to answer.
        why: Refusal,
    },
}

/// The target's record of one source's latest txn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// The txn's number.
    pub seq: u64,
    /// The bundle (for 16300509).
    pub bundle: String,
    /// Where it is.
    pub state: TargetState,
}

/// What the target keeps on disk: one record per source device, its latest txn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetJournal {
    /// By source device.
    pub records: BTreeMap<String, TargetRecord>,
}

/// The target side of continuation, for any number of sources.
#[derive(Debug)]
pub struct Target {
    local: String,
    journal: TargetJournal,
    /// Pending timeouts, by source device (volatile: a restart aborts pending txns anyway).
    deadlines: BTreeMap<String, u64>,
}

impl Target {
    /// A target with an empty journal, on device `local`.
    pub fn new(local: impl Into<String>) -> Self {
        Self {
            local: local.into(),
            journal: TargetJournal::default(),
            deadlines: BTreeMap::new(),
        }
    }

    /// A restarted target: pending txns were never committed, so they are aborted (journaled,
    /// the source told); committed ones are shown again (idempotent); then every other
    /// instance not yet shown is destroyed, so that a restarted target holds no pending one.
    pub fn recover(local: impl Into<String>, journal: TargetJournal) -> (Self, Vec<TargetOutput>) {
        let mut t = Self {
            local: local.into(),
            journal,
            deadlines: BTreeMap::new(),
        };
        let mut out = Vec::new();
        let mut keep = Vec::new();
        let sources: Vec<String> = t.journal.records.keys().cloned().collect();
        for source in sources {
            let Some(rec) = t.journal.records.get(&source).cloned() else {
                continue;
            };
            let txn = Txn {
                source: source.clone(),
                seq: rec.seq,
            };
            match rec.state {
                TargetState::Starting | TargetState::Pending => {
                    t.abort(&txn, Refusal::Aborted, &mut out)
                }
                TargetState::Committed => {
                    keep.push(txn.clone());
                    out.push(TargetOutput::Act(TargetAction::MakeForeground { txn }))
                }
                TargetState::Aborted { .. } => {}
            }
        }
        out.retain(|o| !matches!(o, TargetOutput::Act(TargetAction::Discard { .. })));
        out.push(TargetOutput::Act(TargetAction::DiscardPendingExcept {
            keep,
        }));
        (t, out)
    }

    /// This device's id.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// What to write to disk (after each [`Target::handle`], before carrying out its outputs).
    pub fn journal(&self) -> &TargetJournal {
        &self.journal
    }

    /// When to call [`Target::handle`] with [`TargetInput::Tick`] next.
    pub fn deadline(&self) -> Option<u64> {
        self.deadlines.values().min().copied()
    }

    /// Take one input at time `now` (milliseconds).
    pub fn handle(&mut self, now: u64, input: TargetInput) -> Vec<TargetOutput> {
        let mut out = Vec::new();
        match input {
            TargetInput::Message { from, msg } => {
                // A device speaks only for its own txns.
                if msg.txn().source == from {
                    self.on_message(now, msg, &mut out);
                }
            }
            TargetInput::Started { txn } => match self.state(&txn) {
                Some(TargetState::Starting) => {
                    self.set_state(&txn, TargetState::Pending);
                    out.push(TargetOutput::Send {
                        to: txn.source.clone(),
                        msg: Message::Prepared { txn },
                    });
                }
                // Started after we gave it up (or superseded it): it must not stay.
                Some(TargetState::Aborted { .. }) | None => {
                    out.push(TargetOutput::Act(TargetAction::Discard { txn }))
                }
                _ => {}
            },
            TargetInput::StartFailed { txn, why } => {
                if self.state(&txn) == Some(TargetState::Starting) {
                    let why = match why {
                        StartFailure::NotInstalled {
                            free_install_supported,
                        } => Refusal::NotInstalled {
                            free_install_supported,
                        },
                        StartFailure::Failed => Refusal::StartFailed,
                        StartFailure::InstallFailed(r) => Refusal::InstallFailed(cut(r)),
                    };
                    self.abort(&txn, why, &mut out);
                }
            }
            TargetInput::Died { txn } => {
                // After the commit the app's death is the app's, not the continuation's.
                if matches!(
                    self.state(&txn),
                    Some(TargetState::Starting | TargetState::Pending)
                ) {
                    self.abort(&txn, Refusal::StartFailed, &mut out);
                }
            }
            TargetInput::Tick => {
                let due: Vec<String> = self
                    .deadlines
                    .iter()
                    .filter(|(_, d)| **d <= now)
                    .map(|(s, _)| s.clone())
                    .collect();
                for source in due {
                    if let Some(seq) = self.journal.records.get(&source).map(|r| r.seq) {
                        self.abort(&Txn { source, seq }, Refusal::Aborted, &mut out);
                    }
                }
            }
            TargetInput::LinkDown { peer } => {
                // Not yet committed: give it up now rather than at the timeout (safe: journaled,
                // so a Commit still in flight is refused).
                if let Some(rec) = self.journal.records.get(&peer)
                    && matches!(rec.state, TargetState::Starting | TargetState::Pending)
                {
                    let txn = Txn {
                        source: peer,
                        seq: rec.seq,
                    };
                    self.abort(&txn, Refusal::Aborted, &mut out);
                }
            }
            TargetInput::LinkUp { .. } => {}
        }
        out
    }

    /// The state of exactly this txn (`None`: another txn, or no record, for its source).
    fn state(&self, txn: &Txn) -> Option<TargetState> {
        self.journal
            .records
            .get(&txn.source)
            .filter(|r| r.seq == txn.seq)
            .map(|r| r.state.clone())
    }

    fn set_state(&mut self, txn: &Txn, state: TargetState) {
        if let Some(r) = self
            .journal
            .records
            .get_mut(&txn.source)
            .filter(|r| r.seq == txn.seq)
        {
            if !matches!(state, TargetState::Starting | TargetState::Pending) {
                self.deadlines.remove(&txn.source);
            }
            r.state = state;
        }
    }

    /// Journal `txn` as aborted (final), discard its instance, tell the source.
    fn abort(&mut self, txn: &Txn, why: Refusal, out: &mut Vec<TargetOutput>) {
        let was_live = matches!(
            self.state(txn),
            Some(TargetState::Starting | TargetState::Pending)
        );
        self.set_state(txn, TargetState::Aborted { why: why.clone() });
        if was_live {
            out.push(TargetOutput::Act(TargetAction::Discard {
                txn: txn.clone(),
            }));
        }
        out.push(TargetOutput::Send {
            to: txn.source.clone(),
            msg: Message::Refused {
                txn: txn.clone(),
                why,
            },
        });
    }

    /// Record a txn this side never prepared as aborted, so that it can never start later;
    /// answers `Refused { Aborted }`.
    fn refuse_unknown(&mut self, txn: Txn, bundle: String, out: &mut Vec<TargetOutput>) {
        let newer = self
            .journal
            .records
            .get(&txn.source)
            .is_none_or(|r| txn.seq > r.seq);
        if newer {
            self.supersede(&txn.source, out);
            let rec = TargetRecord {
                seq: txn.seq,
                bundle,
                state: TargetState::Aborted {
                    why: Refusal::Aborted,
                },
            };
            self.journal.records.insert(txn.source.clone(), rec);
        }
        out.push(TargetOutput::Send {
            to: txn.source.clone(),
            msg: Message::Refused {
                txn,
                why: Refusal::Aborted,
            },
        });
    }

    /// A newer txn from `source` means it has settled the last one; drop a still pending instance.
    fn supersede(&mut self, source: &str, out: &mut Vec<TargetOutput>) {
        if let Some(r) = self.journal.records.get(source)
            && matches!(r.state, TargetState::Starting | TargetState::Pending)
        {
            out.push(TargetOutput::Act(TargetAction::Discard {
                txn: Txn {
                    source: source.to_owned(),
                    seq: r.seq,
                },
            }));
        }
        self.deadlines.remove(source);
    }

    fn on_message(&mut self, now: u64, msg: Message, out: &mut Vec<TargetOutput>) {
        let txn = msg.txn().clone();
        let last = self.journal.records.get(&txn.source).map(|r| r.seq);
        if last.is_some_and(|last| txn.seq < last) {
            // Stale: its source has settled it and moved on.
            if !matches!(msg, Message::Abort { .. }) {
                out.push(TargetOutput::Send {
                    to: txn.source.clone(),
                    msg: Message::Refused {
                        txn,
                        why: Refusal::Aborted,
                    },
                });
            }
            return;
        }
        let state = self.state(&txn);
        match msg {
            Message::Prepare {
                txn,
                bundle,
                app_id,
                continue_bundle_names,
                ability,
                want_param,
                free_install,
            } => {
                match state {
                    Some(TargetState::Starting) => {} // Prepared follows when it has started
                    Some(TargetState::Pending) => out.push(TargetOutput::Send {
                        to: txn.source.clone(),
                        msg: Message::Prepared { txn },
                    }),
                    Some(TargetState::Committed) => out.push(TargetOutput::Send {
                        to: txn.source.clone(),
                        msg: Message::Committed { txn },
                    }),
                    Some(TargetState::Aborted { why }) => out.push(TargetOutput::Send {
                        to: txn.source.clone(),
                        msg: Message::Refused { txn, why },
                    }),
                    None => {
                        self.supersede(&txn.source, out);
                        let busy = self.journal.records.iter().any(|(s, r)| {
                            *s != txn.source
                                && r.bundle == bundle
                                && matches!(r.state, TargetState::Starting | TargetState::Pending)
                        });
                        let state = if busy {
                            TargetState::Aborted { why: Refusal::Busy }
                        } else {
                            TargetState::Starting
                        };
                        let rec = TargetRecord {
                            seq: txn.seq,
                            bundle: bundle.clone(),
                            state,
                        };
                        self.journal.records.insert(txn.source.clone(), rec);
                        if busy {
                            let msg = Message::Refused {
                                txn: txn.clone(),
                                why: Refusal::Busy,
                            };
                            out.push(TargetOutput::Send {
                                to: txn.source,
                                msg,
                            });
                            return;
                        }
                        self.deadlines
                            .insert(txn.source.clone(), now + PENDING_TIMEOUT_MS);
                        out.push(TargetOutput::Act(TargetAction::StartPending {
                            txn,
                            bundle,
                            continue_bundle_names,
                            app_id,
                            ability,
                            want_param,
                            launch_reason: LAUNCH_REASON_CONTINUATION,
                            free_install,
                        }));
                    }
                }
            }
            Message::Commit { txn } => match state {
                Some(TargetState::Pending) => {
                    self.set_state(&txn, TargetState::Committed);
                    out.push(TargetOutput::Act(TargetAction::MakeForeground {
                        txn: txn.clone(),
                    }));
                    out.push(TargetOutput::Send {
                        to: txn.source.clone(),
                        msg: Message::Committed { txn },
                    });
                }
                Some(TargetState::Committed) => out.push(TargetOutput::Send {
                    to: txn.source.clone(),
                    msg: Message::Committed { txn },
                }),
                Some(TargetState::Aborted { why }) => out.push(TargetOutput::Send {
                    to: txn.source.clone(),
                    msg: Message::Refused { txn, why },
                }),
                // Commit before Prepared: a confused peer; wait for the txn to settle here.
                Some(TargetState::Starting) => {}
                None => self.refuse_unknown(txn, String::new(), out),
            },
            Message::Abort { txn } => match state {
                Some(TargetState::Starting | TargetState::Pending) => {
                    let mut sink = Vec::new();
                    self.abort(&txn, Refusal::Aborted, &mut sink);
                    // The source gave up already: only the discard matters.
                    out.extend(
                        sink.into_iter()
                            .filter(|o| matches!(o, TargetOutput::Act(_))),
                    );
                }
                None => {
                    let mut sink = Vec::new();
                    self.refuse_unknown(txn, String::new(), &mut sink);
                    out.extend(
                        sink.into_iter()
                            .filter(|o| matches!(o, TargetOutput::Act(_))),
                    );
                }
                // Committed stays committed; the source never aborts after Commit.
                _ => {}
            },
            // Target-to-source messages sent to a target: ignore.
            Message::Prepared { .. } | Message::Refused { .. } | Message::Committed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "src";
    const DST: &str = "dst";

    fn mission() -> MissionInfo {
        MissionInfo {
            mission_id: 7,
            bundle: "com.example.notes".into(),
            app_id: "notes_sig".into(),
            ability: "EntryAbility".into(),
            continuable: true,
            continue_bundle_names: vec![],
        }
    }

    fn request(found: Option<MissionInfo>) -> ContinueRequest {
        ContinueRequest {
            request: 1,
            src_device: SRC.into(),
            dst_device: DST.into(),
            mission: MissionRef::Id(7),
            found,
            free_install: false,
        }
    }

    fn done(out: &[SourceOutput]) -> Option<Result<(), ContinueError>> {
        out.iter().find_map(|o| match o {
            SourceOutput::Done { result, .. } => Some(result.clone()),
            _ => None,
        })
    }

    fn err_code(out: &[SourceOutput]) -> i32 {
        match done(out) {
            Some(Err(e)) => e.code(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn sent(out: &[SourceOutput]) -> Vec<Message> {
        out.iter()
            .filter_map(|o| match o {
                SourceOutput::Send { msg, .. } => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    fn tsent(out: &[TargetOutput]) -> Vec<Message> {
        out.iter()
            .filter_map(|o| match o {
                TargetOutput::Send { msg, .. } => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    fn agree(src: &mut Source, now: u64, bytes: usize) -> Vec<SourceOutput> {
        src.handle(
            now,
            SourceInput::OnContinue {
                seq: 0,
                result: OnContinueResult::Agree,
                want_param: vec![1; bytes],
                source_exit: true,
            },
        )
    }

    /// A source that sent Prepare for txn 0.
    fn preparing() -> (Source, Message) {
        let mut s = Source::new(SRC);
        s.handle(0, SourceInput::Continue(request(Some(mission()))));
        let out = agree(&mut s, 1, 10);
        let prep = sent(&out).pop().expect("a Prepare");
        (s, prep)
    }

    fn from_target(msg: Message) -> SourceInput {
        SourceInput::Message {
            from: DST.into(),
            msg,
        }
    }

    fn txn0() -> Txn {
        Txn {
            source: SRC.into(),
            seq: 0,
        }
    }

    #[test]
    fn happy_path_ends_the_source_mission_after_committed() {
        let (mut s, prep) = preparing();
        let mut t = Target::new(DST);
        let out = t.handle(
            2,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep,
            },
        );
        assert!(matches!(
            &out[..],
            [TargetOutput::Act(TargetAction::StartPending {
                launch_reason: 3,
                ..
            })]
        ));
        let out = t.handle(3, TargetInput::Started { txn: txn0() });
        let out = s.handle(4, from_target(tsent(&out).remove(0)));
        assert_eq!(sent(&out), vec![Message::Commit { txn: txn0() }]);
        assert_eq!(done(&out), None, "no answer before the target committed");
        let out = t.handle(
            5,
            TargetInput::Message {
                from: SRC.into(),
                msg: Message::Commit { txn: txn0() },
            },
        );
        assert!(
            out.contains(&TargetOutput::Act(TargetAction::MakeForeground {
                txn: txn0()
            }))
        );
        let out = s.handle(6, from_target(tsent(&out).remove(0)));
        assert!(out.contains(&SourceOutput::Act(SourceAction::EndMission {
            mission_id: 7
        })));
        assert_eq!(done(&out), Some(Ok(())));
        assert!(!s.busy());
    }

    #[test]
    fn keep_source_resumes_instead_of_ending() {
        let mut s = Source::new(SRC);
        s.handle(0, SourceInput::Continue(request(Some(mission()))));
        s.handle(
            1,
            SourceInput::OnContinue {
                seq: 0,
                result: OnContinueResult::Agree,
                want_param: vec![],
                source_exit: false,
            },
        );
        s.handle(2, from_target(Message::Prepared { txn: txn0() }));
        let out = s.handle(3, from_target(Message::Committed { txn: txn0() }));
        assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
        assert_eq!(done(&out), Some(Ok(())));
    }

    #[test]
    fn missing_mission_by_id_is_16300502() {
        let out = Source::new(SRC).handle(0, SourceInput::Continue(request(None)));
        assert_eq!(err_code(&out), code::CONTINUE_NO_MISSION);
    }

    #[test]
    fn missing_mission_by_bundle_is_16300507() {
        let mut req = request(None);
        req.mission = MissionRef::Bundle("com.example.notes".into());
        let out = Source::new(SRC).handle(0, SourceInput::Continue(req));
        assert_eq!(err_code(&out), code::CONTINUE_NO_BUNDLE_MISSION);
    }

    #[test]
    fn third_device_is_16300505() {
        let mut req = request(Some(mission()));
        req.src_device = "other".into();
        let out = Source::new(SRC).handle(0, SourceInput::Continue(req));
        assert_eq!(err_code(&out), code::CONTINUE_NOT_SOURCE_OR_TARGET);
    }

    #[test]
    fn same_device_is_401() {
        let mut req = request(Some(mission()));
        req.dst_device = SRC.into();
        let out = Source::new(SRC).handle(0, SourceInput::Continue(req));
        assert_eq!(err_code(&out), code::INVALID_PARAM);
    }

    #[test]
    fn second_request_is_16300506() {
        let (mut s, _) = preparing();
        let mut req = request(Some(mission()));
        req.request = 2;
        let out = s.handle(2, SourceInput::Continue(req));
        assert_eq!(
            out,
            vec![SourceOutput::Done {
                request: 2,
                result: Err(ContinueError::InProgress)
            }]
        );
    }

    #[test]
    fn not_continuable_is_16300501() {
        let mut m = mission();
        m.continuable = false;
        let out = Source::new(SRC).handle(0, SourceInput::Continue(request(Some(m))));
        assert_eq!(err_code(&out), code::CONTINUE_ABNORMAL);
    }

    #[test]
    fn reject_and_mismatch_resume_with_16300501() {
        for (result, want) in [
            (OnContinueResult::Reject, ContinueError::Rejected),
            (OnContinueResult::Mismatch, ContinueError::Mismatch),
        ] {
            let mut s = Source::new(SRC);
            let out = s.handle(0, SourceInput::Continue(request(Some(mission()))));
            assert!(out.contains(&SourceOutput::Act(SourceAction::Freeze { mission_id: 7 })));
            let out = s.handle(
                1,
                SourceInput::OnContinue {
                    seq: 0,
                    result,
                    want_param: vec![],
                    source_exit: true,
                },
            );
            assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
            assert_eq!(done(&out), Some(Err(want)));
            assert_eq!(err_code(&out), code::CONTINUE_ABNORMAL);
            assert!(sent(&out).is_empty());
        }
    }

    #[test]
    fn oversized_want_param_is_401_and_resumes() {
        let mut s = Source::new(SRC);
        s.handle(0, SourceInput::Continue(request(Some(mission()))));
        let out = agree(&mut s, 1, MAX_WANT_PARAM + 1);
        assert_eq!(err_code(&out), code::INVALID_PARAM);
        assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
        let (mut s, _) = (Source::new(SRC), ());
        s.handle(0, SourceInput::Continue(request(Some(mission()))));
        assert_eq!(
            done(&agree(&mut s, 1, MAX_WANT_PARAM)),
            None,
            "exactly 100 KiB is allowed"
        );
    }

    #[test]
    fn on_continue_timeout_is_16300501() {
        let mut s = Source::new(SRC);
        s.handle(0, SourceInput::Continue(request(Some(mission()))));
        assert_eq!(s.deadline(), Some(CONTINUE_TIMEOUT_MS));
        let out = s.handle(CONTINUE_TIMEOUT_MS, SourceInput::Tick);
        assert_eq!(err_code(&out), code::CONTINUE_ABNORMAL);
        // The app's late answer changes nothing.
        assert!(agree(&mut s, CONTINUE_TIMEOUT_MS + 1, 1).is_empty());
    }

    #[test]
    fn not_installed_is_16300503_or_16300504() {
        for (supported, free_install, want) in [
            (false, false, code::CONTINUE_NOT_INSTALLED),
            (true, false, code::CONTINUE_FREE_INSTALL),
            (true, true, code::CONTINUE_NOT_INSTALLED),
        ] {
            let mut s = Source::new(SRC);
            let mut req = request(Some(mission()));
            req.free_install = free_install;
            s.handle(0, SourceInput::Continue(req));
            agree(&mut s, 1, 1);
            let why = Refusal::NotInstalled {
                free_install_supported: supported,
            };
            let out = s.handle(2, from_target(Message::Refused { txn: txn0(), why }));
            assert_eq!(err_code(&out), want);
            assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
        }
    }

    #[test]
    fn package_sizes_are_bounded_by_the_installers_limits() {
        let max = oxh_bundle::package::Limits::default().max_package_bytes;
        assert_eq!(check_package_sizes(&[10, 20]), Ok(30));
        assert!(check_package_sizes(&[]).is_err(), "nothing to install");
        assert!(check_package_sizes(&vec![1; MAX_PACKAGE_FILES + 1]).is_err());
        assert!(check_package_sizes(&[max, 1]).is_err());
        assert!(
            check_package_sizes(&[u64::MAX, u64::MAX]).is_err(),
            "no overflow"
        );
    }

    #[test]
    fn the_package_is_offered_to_the_target_only_while_a_free_install_txn_prepares() {
        let mut s = Source::new(SRC);
        let mut req = request(Some(mission()));
        req.free_install = true;
        s.handle(0, SourceInput::Continue(req));
        let bundle = mission().bundle;
        assert!(!s.offers(DST, 0, &bundle), "not during onContinue");
        agree(&mut s, 1, 1);
        assert!(s.offers(DST, 0, &bundle));
        assert!(!s.offers("elsewhere", 0, &bundle), "another device");
        assert!(!s.offers(DST, 1, &bundle), "another txn");
        assert!(!s.offers(DST, 0, "com.example.other"), "another bundle");
        // Refused by a target whose installer failed: over, nothing offered any more, and the
        // caller hears the installer's reason.
        let why = Refusal::InstallFailed("9568304 the signature is not the installed one's".into());
        let out = s.handle(2, from_target(Message::Refused { txn: txn0(), why }));
        assert_eq!(err_code(&out), code::CONTINUE_ABNORMAL);
        assert!(matches!(
            done(&out),
            Some(Err(ContinueError::InstallFailed { reason, .. })) if reason.starts_with("9568304")
        ));
        assert!(!s.offers(DST, 0, &bundle));
        // Without the caller's leave, nothing is offered at all.
        let mut s = Source::new(SRC);
        s.handle(0, SourceInput::Continue(request(Some(mission()))));
        agree(&mut s, 1, 1);
        assert!(!s.offers(DST, 0, &bundle));
    }

    #[test]
    fn an_install_failure_on_the_target_is_refused_with_a_reason_cut_to_its_limit() {
        let (mut s, prep) = preparing();
        let mut t = Target::new(DST);
        t.handle(
            1,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep,
            },
        );
        let out = t.handle(
            2,
            TargetInput::StartFailed {
                txn: txn0(),
                why: StartFailure::InstallFailed("é".repeat(MAX_REASON)),
            },
        );
        let refused = out
            .iter()
            .find_map(|o| match o {
                TargetOutput::Send {
                    msg:
                        Message::Refused {
                            why: Refusal::InstallFailed(r),
                            ..
                        },
                    ..
                } => Some(r.clone()),
                _ => None,
            })
            .expect("refused with the installer's reason");
        assert!(refused.len() <= MAX_REASON && refused.starts_with('é'));
        let out = s.handle(
            3,
            from_target(Message::Refused {
                txn: txn0(),
                why: Refusal::InstallFailed(refused),
            }),
        );
        assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
    }

    #[test]
    fn target_start_failure_is_16300508() {
        let (mut s, prep) = preparing();
        let mut t = Target::new(DST);
        t.handle(
            2,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep,
            },
        );
        let out = t.handle(
            3,
            TargetInput::StartFailed {
                txn: txn0(),
                why: StartFailure::Failed,
            },
        );
        let out = s.handle(4, from_target(tsent(&out).remove(0)));
        assert_eq!(err_code(&out), code::CONTINUE_CONNECT_FAILED);
    }

    #[test]
    fn prepare_timeout_and_link_drop_abort_with_16300508() {
        let (mut s, _) = preparing();
        let out = s.handle(CONTINUE_TIMEOUT_MS, SourceInput::Tick);
        assert_eq!(err_code(&out), code::CONTINUE_CONNECT_FAILED);
        assert!(sent(&out).contains(&Message::Abort { txn: txn0() }));
        let (mut s, _) = preparing();
        let out = s.handle(2, SourceInput::LinkDown { peer: DST.into() });
        assert_eq!(err_code(&out), code::CONTINUE_CONNECT_FAILED);
        assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
    }

    #[test]
    fn busy_target_is_16300509() {
        let (_, prep) = preparing();
        let mut t = Target::new(DST);
        t.handle(
            0,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep.clone(),
            },
        );
        // Another source continues the same bundle.
        let Message::Prepare {
            bundle,
            app_id,
            ability,
            ..
        } = prep
        else {
            unreachable!()
        };
        let other = Txn {
            source: "other".into(),
            seq: 0,
        };
        let msg = Message::Prepare {
            txn: other.clone(),
            bundle,
            app_id,
            continue_bundle_names: vec![],
            ability,
            want_param: vec![],
            free_install: false,
        };
        let out = t.handle(
            1,
            TargetInput::Message {
                from: "other".into(),
                msg,
            },
        );
        assert_eq!(
            tsent(&out),
            vec![Message::Refused {
                txn: other,
                why: Refusal::Busy
            }]
        );
        let (mut s, _) = preparing();
        let out = s.handle(
            2,
            from_target(Message::Refused {
                txn: txn0(),
                why: Refusal::Busy,
            }),
        );
        assert_eq!(err_code(&out), code::CONTINUE_REMOTE_IN_PROGRESS);
    }

    #[test]
    fn committing_source_never_resumes_on_its_own() {
        let (mut s, _) = preparing();
        s.handle(2, from_target(Message::Prepared { txn: txn0() }));
        let out = s.handle(3, SourceInput::LinkDown { peer: DST.into() });
        assert!(out.is_empty());
        let mut now = 3;
        for _ in 0..100 {
            now = s.deadline().expect("it keeps asking");
            let out = s.handle(now, SourceInput::Tick);
            assert_eq!(sent(&out), vec![Message::Commit { txn: txn0() }]);
        }
        assert!(now > 10 * CONTINUE_TIMEOUT_MS);
        let out = s.handle(
            now,
            from_target(Message::Refused {
                txn: txn0(),
                why: Refusal::Aborted,
            }),
        );
        assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
        assert_eq!(err_code(&out), code::CONTINUE_CONNECT_FAILED);
    }

    #[test]
    fn target_refuses_a_commit_after_its_timeout() {
        let (_, prep) = preparing();
        let mut t = Target::new(DST);
        t.handle(
            0,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep,
            },
        );
        t.handle(1, TargetInput::Started { txn: txn0() });
        let out = t.handle(PENDING_TIMEOUT_MS, TargetInput::Tick);
        assert!(out.contains(&TargetOutput::Act(TargetAction::Discard { txn: txn0() })));
        let out = t.handle(
            PENDING_TIMEOUT_MS + 1,
            TargetInput::Message {
                from: SRC.into(),
                msg: Message::Commit { txn: txn0() },
            },
        );
        assert_eq!(
            tsent(&out),
            vec![Message::Refused {
                txn: txn0(),
                why: Refusal::Aborted
            }]
        );
    }

    #[test]
    fn target_restart_aborts_pending_and_keeps_committed() {
        let (_, prep) = preparing();
        let mut t = Target::new(DST);
        t.handle(
            0,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep,
            },
        );
        t.handle(1, TargetInput::Started { txn: txn0() });
        let (mut t2, out) = Target::recover(DST, t.journal().clone());
        assert!(
            out.contains(&TargetOutput::Act(TargetAction::DiscardPendingExcept {
                keep: vec![]
            }))
        );
        let out = t2.handle(
            2,
            TargetInput::Message {
                from: SRC.into(),
                msg: Message::Commit { txn: txn0() },
            },
        );
        assert!(matches!(tsent(&out)[..], [Message::Refused { .. }]));

        let (_, prep) = preparing();
        let mut t = Target::new(DST);
        t.handle(
            0,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep,
            },
        );
        t.handle(1, TargetInput::Started { txn: txn0() });
        t.handle(
            2,
            TargetInput::Message {
                from: SRC.into(),
                msg: Message::Commit { txn: txn0() },
            },
        );
        let (mut t2, out) = Target::recover(DST, t.journal().clone());
        assert_eq!(
            out,
            vec![
                TargetOutput::Act(TargetAction::MakeForeground { txn: txn0() }),
                TargetOutput::Act(TargetAction::DiscardPendingExcept { keep: vec![txn0()] }),
            ]
        );
        let out = t2.handle(
            3,
            TargetInput::Message {
                from: SRC.into(),
                msg: Message::Commit { txn: txn0() },
            },
        );
        assert_eq!(tsent(&out), vec![Message::Committed { txn: txn0() }]);
    }

    #[test]
    fn source_restart_before_commit_aborts_and_answers_once() {
        let (s, _) = preparing();
        let (s2, out) = Source::recover(SRC, s.journal().clone(), 5);
        assert!(sent(&out).contains(&Message::Abort { txn: txn0() }));
        assert!(out.contains(&SourceOutput::Act(SourceAction::Resume { mission_id: 7 })));
        assert_eq!(err_code(&out), code::CONTINUE_ABNORMAL);
        // A second restart repeats the same answer, never another.
        let (_, again) = Source::recover(SRC, s2.journal().clone(), 6);
        assert_eq!(done(&again), done(&out));
    }

    #[test]
    fn source_restart_while_committing_asks_again() {
        let (mut s, _) = preparing();
        s.handle(2, from_target(Message::Prepared { txn: txn0() }));
        let (mut s2, out) = Source::recover(SRC, s.journal().clone(), 5);
        assert_eq!(sent(&out), vec![Message::Commit { txn: txn0() }]);
        assert_eq!(done(&out), None);
        let out = s2.handle(6, from_target(Message::Committed { txn: txn0() }));
        assert_eq!(done(&out), Some(Ok(())));
        // Txn numbers are never reused after a restart.
        assert_eq!(s2.journal().next_seq, 1);
    }

    #[test]
    fn late_prepared_after_abort_is_answered_with_abort() {
        let (mut s, _) = preparing();
        s.handle(2, SourceInput::LinkDown { peer: DST.into() });
        let out = s.handle(3, from_target(Message::Prepared { txn: txn0() }));
        assert_eq!(sent(&out), vec![Message::Abort { txn: txn0() }]);
        assert_eq!(done(&out), None);
    }

    #[test]
    fn stale_and_spoofed_messages_are_refused_or_ignored() {
        let mut t = Target::new(DST);
        // Another device cannot commit src's txn.
        let out = t.handle(
            0,
            TargetInput::Message {
                from: "evil".into(),
                msg: Message::Commit { txn: txn0() },
            },
        );
        assert!(out.is_empty());
        // Commit for a txn never prepared: refused, and that refusal sticks.
        let out = t.handle(
            0,
            TargetInput::Message {
                from: SRC.into(),
                msg: Message::Commit { txn: txn0() },
            },
        );
        assert_eq!(
            tsent(&out),
            vec![Message::Refused {
                txn: txn0(),
                why: Refusal::Aborted
            }]
        );
        let (_, prep) = preparing();
        let out = t.handle(
            1,
            TargetInput::Message {
                from: SRC.into(),
                msg: prep,
            },
        );
        assert_eq!(
            tsent(&out),
            vec![Message::Refused {
                txn: txn0(),
                why: Refusal::Aborted
            }]
        );
    }

    #[test]
    fn local_bundle_needs_the_same_app_id_or_a_mutual_declaration_by_the_same_signer() {
        let names = vec!["com.example.notes.pad".to_string()];
        let back = vec!["com.example.notes".to_string()];
        let with = |app_id: &str, names: &[String]| InstalledBundle {
            app_id: app_id.into(),
            continue_bundle_names: names.to_vec(),
        };
        // The same bundle with the same appId.
        let same = |b: &str| (b == "com.example.notes").then(|| with("com.example.notes_KEY", &[]));
        assert_eq!(
            local_bundle("com.example.notes", &[], "com.example.notes_KEY", same),
            Some("com.example.notes")
        );
        // The same name by another signer is not it.
        assert_eq!(
            local_bundle("com.example.notes", &[], "com.example.notes_OTHER", same),
            None
        );
        // A declared other name, same signer, declaring this one back.
        let pad = |b: &str| match b {
            "com.example.notes" => Some(with("com.example.notes_OTHER", &[])),
            "com.example.notes.pad" => Some(with("com.example.notes.pad_KEY", &back)),
            _ => None,
        };
        assert_eq!(
            local_bundle("com.example.notes", &names, "com.example.notes_KEY", pad),
            Some("com.example.notes.pad")
        );
        // Not declared by the source: refused.
        assert_eq!(
            local_bundle("com.example.notes", &[], "com.example.notes_KEY", pad),
            None
        );
        // Not declared back by the target's app: refused.
        let one_sided = |b: &str| {
            (b == "com.example.notes.pad").then(|| with("com.example.notes.pad_KEY", &[]))
        };
        assert_eq!(
            local_bundle(
                "com.example.notes",
                &names,
                "com.example.notes_KEY",
                one_sided
            ),
            None
        );
        // Another signer's app of the declared name: refused.
        let stranger = |b: &str| {
            (b == "com.example.notes.pad").then(|| with("com.example.notes.pad_EVIL", &back))
        };
        assert_eq!(
            local_bundle(
                "com.example.notes",
                &names,
                "com.example.notes_KEY",
                stranger
            ),
            None
        );
    }

    #[cfg(feature = "spawn")]
    #[test]
    fn messages_and_journals_round_trip_through_serde() {
        let (mut s, prep) = preparing();
        let bytes = postcard::to_allocvec(&prep).expect("encode");
        assert_eq!(
            postcard::from_bytes::<Message>(&bytes).expect("decode"),
            prep
        );
        s.handle(
            2,
            from_target(Message::Refused {
                txn: txn0(),
                why: Refusal::Busy,
            }),
        );
        let bytes = postcard::to_allocvec(s.journal()).expect("encode");
        assert_eq!(
            &postcard::from_bytes::<SourceJournal>(&bytes).expect("decode"),
            s.journal()
        );
    }
}
