//! The ability manager's pure core: ability records, missions, app processes and their
//! lifecycles, in the shape of quinn-proto (and our PIN-binding core): no I/O, no clock.
//!
//! The adapter feeds it requests and what app processes report, each with `now`, and carries
//! out the [`Action`]s it returns: spawn a process, send a lifecycle command, kill, reply.
//! [`Manager::deadline`] says when to call [`Manager::on_timeout`].
//!
//! The rules it keeps (OpenHarmony's ability manager service):
//! - One process per bundle; it is spawned when the bundle's first ability starts and killed
//!   when its last ability ends.
//! - A UIAbility is created (`onCreate`), then brought to the foreground (`onForeground`). One
//!   mission is in the foreground on a device: when another reaches it, the previous one is
//!   sent to the background (`onBackground`).
//! - `singleton`: starting it again reuses the record (`onNewWant`, then foreground if it was
//!   not); `multiton`: every start makes a new record and mission; `specified`: each start
//!   first asks the app (`onAcceptWant`) for a key, then goes to the record with that key as
//!   a singleton's start would, or makes one.
//! - Each step has a deadline ([`Timeouts`]); an app that misses one is killed and the
//!   caller waiting on it is told.
//! - A service extension is created once; each start is an `onRequest`. Its first connection
//!   runs `onConnect`, whose remote object later connections share; when its last connection
//!   goes, `onDisconnect`, and it is destroyed unless it was started.
//! - A process that dies ends its records and missions; a death we did not cause (a crash) is
//!   reported as a [`Fault`].

use crate::error::AbilityError;
use crate::want::{Element, LaunchReason, Want};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// How long an app may take for each step before it is killed (OpenHarmony's ability
/// manager: load 10 s, foreground 5 s, background 3 s, terminate 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From spawning the process to the end of the ability's `onCreate`.
    pub load: Duration,
    /// For `onForeground` (and `onNewWant` with it).
    pub foreground: Duration,
    /// For `onBackground`.
    pub background: Duration,
    /// For `onDestroy` (and a service's `onDisconnect`).
    pub terminate: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            load: Duration::from_secs(10),
            foreground: Duration::from_secs(5),
            background: Duration::from_secs(3),
            terminate: Duration::from_secs(10),
        }
    }
}

/// Ability records a device keeps at once (OpenHarmony fails a start past its instance limit
/// with an internal error): bounds what starts of a multiton ability can make it hold.
pub const MAX_RECORDS: usize = 512;
/// Steps queued behind the one in flight on one record: a caller that keeps starting an
/// ability faster than its app runs the steps gets 16000007 instead of a growing queue.
pub const MAX_QUEUED_STEPS: usize = 32;
/// Live connections to one service extension: past it a connect fails with 16000007.
pub const MAX_CONNECTIONS_PER_SERVICE: usize = 256;
/// Live connections one client uid may hold (to all services): past it, 16000007.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;
/// Live connections the clients of one other device may hold here (to all services; each is
/// a relay on the bus): past it, 16000007. Twice a client's own limit: one device's apps
/// share it.
pub const MAX_REMOTE_CONNECTIONS_PER_DEVICE: usize = 2 * MAX_CONNECTIONS_PER_CLIENT;

/// What kind of ability a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbilityType {
    /// A UIAbility: has a mission and a foreground/background life.
    Page,
    /// A ServiceExtensionAbility: started and/or connected, never in the foreground.
    Service,
}

/// module.json's `launchType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchType {
    /// One instance; a new start reaches it with `onNewWant` (the default).
    Singleton,
    /// A new instance for every start (`multiton`, formerly `standard`).
    Multiton,
    /// The app decides: its `onAcceptWant(want)` names the instance (a key); a start whose
    /// key an instance has reaches that one with `onNewWant`, else makes a new one.
    Specified,
}

/// An ability to start, as resolved from the bundle manager's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its element name.
    pub element: Element,
    /// Its type.
    pub kind: AbilityType,
    /// Its launch type (ignored for services: they are always single).
    pub launch_type: LaunchType,
}

/// Identifies a request, so the adapter can route its [`Action::Reply`].
pub type RequestId = u64;
/// Identifies an ability record (OpenHarmony's AbilityRecord ID).
pub type RecordId = u64;
/// Identifies a mission (OpenHarmony's mission id; `aa dump -l` prints it).
pub type MissionId = i32;
/// Identifies an app process of this manager (not a pid: one is known before the spawn).
pub type ProcId = u64;
/// Identifies one service connection.
pub type ConnId = u64;

/// A lifecycle step, as the app's host is told to run it (the wire type, used as it is).
pub use crate::api::Step as Command;

/// A record's state (OpenHarmony's AbilityState, without the ones only windows need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Waiting for its process, or in `onCreate`.
    Initial,
    /// Created, not yet foreground (or a service that is running).
    Inactive,
    /// In `onForeground`.
    Foregrounding,
    /// In the foreground.
    Foreground,
    /// In `onBackground`.
    Backgrounding,
    /// In the background.
    Background,
    /// In `onDestroy`.
    Terminating,
}

impl State {
    /// The upper-case name `aa dump` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initial => "INITIAL",
            State::Inactive => "INACTIVE",
            State::Foregrounding => "FOREGROUNDING",
            State::Foreground => "FOREGROUND",
            State::Backgrounding => "BACKGROUNDING",
            State::Background => "BACKGROUND",
            State::Terminating => "TERMINATING",
        }
    }
}

/// How a started ability reached the caller's goal (`aa start -W`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The record.
    pub record: RecordId,
    /// Its mission (UIAbilities only).
    pub mission: Option<MissionId>,
    /// Cold: its process had to be spawned for it; hot: the process was running.
    pub cold: bool,
    /// From the request to the foreground (services: to the end of `onRequest`).
    pub elapsed: Duration,
}

/// A crash: a process that died without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The bundle of the process.
    pub bundle: String,
    /// Its pid.
    pub pid: u32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Its exit status otherwise.
    pub status: Option<i32>,
    /// The abilities it was running.
    pub abilities: Vec<Element>,
}

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Spawn the process of `bundle`; report [`Manager::spawned`] or [`Manager::spawn_failed`].
    Spawn {
        /// The process.
        proc: ProcId,
        /// Its bundle.
        bundle: String,
    },
    /// Tell the process to run a step of a record; report [`Manager::step_done`].
    Schedule {
        /// The process.
        proc: ProcId,
        /// The record.
        record: RecordId,
        /// Which ability it is.
        element: Element,
        /// The step (boxed: a Want is large beside the other actions).
        cmd: Box<Command>,
    },
    /// Kill a process (SIGKILL); report [`Manager::exited`] when it is gone.
    Kill {
        /// The process.
        proc: ProcId,
        /// Its pid, if it was spawned.
        pid: Option<u32>,
        /// Why, for hilog.
        reason: String,
    },
    /// Answer a request.
    Reply {
        /// The request.
        request: RequestId,
        /// Its result.
        result: Result<Started, AbilityError>,
    },
    /// Answer a connection: the service's `onConnect` is done (the adapter hands the
    /// client its end of the remote object), or the connection failed.
    Connected {
        /// The request that asked for it.
        request: RequestId,
        /// The connection.
        conn: ConnId,
        /// Ok with the service's record, or why not.
        result: Result<RecordId, AbilityError>,
    },
    /// A connection ended without its client asking (the service died or was stopped).
    ConnectionLost {
        /// The connection.
        conn: ConnId,
    },
    /// Record a crash in hilog (tag AppFault).
    Fault(Fault),
}

#[derive(Debug)]
enum ProcState {
    Spawning,
    Running { pid: u32 },
}

#[derive(Debug)]
struct Process {
    bundle: String,
    state: ProcState,
    /// Its host has attached and can run steps.
    attached: bool,
    /// Set once we asked for its death: its exit is then not a fault.
    killing: bool,
    /// When it was asked for: its host must attach within [`Timeouts::load`].
    since: Instant,
}

/// Who waits for a record to reach a goal.
#[derive(Debug)]
struct Waiter {
    request: RequestId,
    since: Instant,
    cold: bool,
}

#[derive(Debug)]
struct Record {
    target: Target,
    proc: ProcId,
    state: State,
    mission: Option<MissionId>,
    /// The step in flight and its deadline.
    pending: Option<(Command, Instant)>,
    /// Steps to run after it.
    queue: VecDeque<Command>,
    /// Requests answered when the record reaches the foreground (pages) or has run the
    /// start's `onRequest` (services).
    waiters: Vec<Waiter>,
    /// Services: started (not only connected), and how many times.
    starts: u32,
    /// Services: live connections.
    conns: Vec<ConnId>,
    /// Services: connections waiting for `onConnect` (request, conn).
    connecting: Vec<(RequestId, ConnId)>,
    /// Services: `onConnect` is queued or running.
    binding: bool,
    /// Services: the Want `onConnect` ran with, until `onDisconnect` is queued.
    bound: Option<Want>,
    /// `specified` pages: the key `onAcceptWant` gave it.
    key: Option<String>,
    /// Destroy once the queue is done (terminate requested).
    ending: bool,
    /// Frozen for a continuation: no lifecycle step runs but `onContinue` (and the end).
    frozen: bool,
    /// A continuation's pending start: answered when `onCreate` is done (not the
    /// foreground), and not shown until [`Manager::show`].
    on_created: Option<Waiter>,
}

impl Record {
    /// With no connection left or waiting: `onDisconnect` if it was bound, and the end if it
    /// was not started.
    fn unbind_if_idle(&mut self) {
        if !self.conns.is_empty() || !self.connecting.is_empty() {
            return;
        }
        if let Some(want) = self.bound.take() {
            self.queue.push_back(Command::Disconnect { want });
        }
        if self.starts == 0 && self.target.kind == AbilityType::Service {
            self.ending = true;
        }
    }
}

/// Missions as `aa dump -l` and hidumper show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissionInfo {
    /// Mission id.
    pub id: MissionId,
    /// Its ability.
    pub element: Element,
    /// Its record.
    pub record: RecordId,
    /// Its record's state.
    pub state: State,
    /// Its process's pid, once spawned.
    pub pid: Option<u32>,
}

/// A running ability, for dumps (services included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    /// Record id.
    pub id: RecordId,
    /// Its ability.
    pub element: Element,
    /// Its type.
    pub kind: AbilityType,
    /// Its state.
    pub state: State,
    /// Its mission (UIAbilities).
    pub mission: Option<MissionId>,
    /// Its process's pid, once spawned.
    pub pid: Option<u32>,
    /// Services: live connections.
    pub connections: usize,
    /// Frozen for a continuation (it may be moving to another device).
    pub frozen: bool,
}

/// The ability manager's state. See the module documentation.
#[derive(Debug)]
pub struct Manager {
    timeouts: Timeouts,
    procs: BTreeMap<ProcId, Process>,
    records: BTreeMap<RecordId, Record>,
    /// Missions in order of last use (the last is the most recent).
    missions: Vec<(MissionId, RecordId)>,
    foreground: Option<RecordId>,
    actions: VecDeque<Action>,
    next_id: u64,
    next_mission: MissionId,
}

impl Manager {
    /// A manager with no apps running.
    pub fn new(timeouts: Timeouts) -> Self {
        Manager {
            timeouts,
            procs: BTreeMap::new(),
            records: BTreeMap::new(),
            missions: Vec::new(),
            foreground: None,
            actions: VecDeque::new(),
            next_id: 1,
            next_mission: 1,
        }
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest lifecycle deadline; call [`Manager::on_timeout`] then.
    pub fn deadline(&self) -> Option<Instant> {
        let steps = self
            .records
            .values()
            .filter_map(|r| r.pending.as_ref().map(|(_, d)| *d));
        let attaches = self
            .procs
            .values()
            .filter(|p| !p.attached && !p.killing)
            .map(|p| p.since + self.timeouts.load);
        steps.chain(attaches).min()
    }

    /// Starts `target` (`startAbility`, `aa start`, a service's `startServiceExtensionAbility`)
    /// and answers `request` once it is in the foreground (services: once `onRequest` ran).
    pub fn start(&mut self, request: RequestId, target: Target, want: Want, now: Instant) {
        let existing = match (target.kind, target.launch_type) {
            (AbilityType::Page, LaunchType::Multiton | LaunchType::Specified) => None,
            _ => self.find(&target.element),
        };
        if let Err(e) = self.admit(existing) {
            self.actions.push_back(Action::Reply {
                request,
                result: Err(e),
            });
            return;
        }
        let Some(id) = existing else {
            let (id, cold) = self.create(target.clone(), want.clone(), now);
            let r = self.rec(id);
            if target.kind == AbilityType::Page && target.launch_type == LaunchType::Specified {
                // A provisional record until the app names the instance.
                r.queue
                    .push_front(Command::AcceptWant { want: want.clone() });
            }
            r.waiters.push(Waiter {
                request,
                since: now,
                cold,
            });
            if target.kind == AbilityType::Page {
                r.queue.push_back(Command::Foreground);
            } else {
                r.starts = 1;
                r.queue.push_back(Command::Request { want, start_id: 1 });
            }
            self.advance(id, now);
            return;
        };
        let r = self.rec(id);
        r.waiters.push(Waiter {
            request,
            since: now,
            cold: false,
        });
        match target.kind {
            AbilityType::Page => {
                r.queue.push_back(Command::NewWant { want });
                r.queue.push_back(Command::Foreground);
                self.touch_mission(id);
            }
            AbilityType::Service => {
                r.starts += 1;
                let start_id = r.starts;
                r.queue.push_back(Command::Request { want, start_id });
            }
        }
        self.advance(id, now);
    }

    /// Connects to a service extension (`connectServiceExtensionAbility`): creates it if it
    /// is not running, then runs `onConnect`; [`Action::Connected`] answers.
    pub fn connect(
        &mut self,
        request: RequestId,
        conn: ConnId,
        target: Target,
        want: Want,
        now: Instant,
    ) {
        if target.kind != AbilityType::Service {
            self.actions.push_back(Action::Connected {
                request,
                conn,
                result: Err(AbilityError::IncorrectType(format!(
                    "{} is not a service extension",
                    target.element
                ))),
            });
            return;
        }
        let existing = self.find(&target.element);
        if let Err(e) = self.admit(existing) {
            self.actions.push_back(Action::Connected {
                request,
                conn,
                result: Err(e),
            });
            return;
        }
        let id = match existing {
            Some(id) => id,
            None => self.create(target, want.clone(), now).0,
        };
        let r = self.rec(id);
        if r.conns.len() + r.connecting.len() >= MAX_CONNECTIONS_PER_SERVICE {
            let e = AbilityError::Busy(format!(
                "{} has {MAX_CONNECTIONS_PER_SERVICE} connections (the limit)",
                r.target.element
            ));
            self.actions.push_back(Action::Connected {
                request,
                conn,
                result: Err(e),
            });
            return;
        }
        if r.bound.is_some() {
            // Bound already: the connection shares the remote object, no callback runs.
            r.conns.push(conn);
            self.actions.push_back(Action::Connected {
                request,
                conn,
                result: Ok(id),
            });
            return;
        }
        r.connecting.push((request, conn));
        if !r.binding {
            r.binding = true;
            r.queue.push_back(Command::Connect { want });
        }
        self.advance(id, now);
    }

    /// A client closed its connection (`disconnectServiceExtensionAbility`, or it died).
    pub fn disconnect(&mut self, conn: ConnId, now: Instant) {
        let Some(id) = self.records.iter().find_map(|(id, r)| {
            (r.conns.contains(&conn) || r.connecting.iter().any(|(_, c)| *c == conn)).then_some(*id)
        }) else {
            return;
        };
        let r = self.rec(id);
        r.connecting.retain(|(_, c)| *c != conn);
        r.conns.retain(|c| *c != conn);
        r.unbind_if_idle();
        self.advance(id, now);
    }

    /// Stops a started service (`aa stop-service`, `stopServiceExtensionAbility`): it ends
    /// now if nothing is connected, else when its last connection goes.
    pub fn stop_service(&mut self, element: &Element, now: Instant) -> Result<(), AbilityError> {
        let Some(id) = self.find(element) else {
            return Err(AbilityError::NoSuchAbility(format!(
                "{element} is not running"
            )));
        };
        let r = self.rec(id);
        if r.target.kind != AbilityType::Service {
            return Err(AbilityError::IncorrectType(format!(
                "{element} is not a service extension"
            )));
        }
        r.starts = 0;
        if r.conns.is_empty() && r.connecting.is_empty() {
            r.ending = true;
        }
        self.advance(id, now);
        Ok(())
    }

    /// An ability ends itself (`terminateSelf`): `onBackground` if it is in the foreground,
    /// then `onDestroy`; its mission goes.
    pub fn terminate(&mut self, record: RecordId, now: Instant) -> Result<(), AbilityError> {
        let Some(r) = self.records.get_mut(&record) else {
            return Err(AbilityError::ContextNotExist(format!("record {record}")));
        };
        r.ending = true;
        r.starts = 0;
        self.advance(record, now);
        Ok(())
    }

    /// Kills every process of `bundle` (`aa force-stop`); its abilities end without
    /// callbacks. False if it had none.
    pub fn force_stop(&mut self, bundle: &str) -> bool {
        let procs: Vec<ProcId> = self
            .procs
            .iter()
            .filter(|(_, p)| p.bundle == bundle)
            .map(|(id, _)| *id)
            .collect();
        for p in &procs {
            self.kill(*p, format!("force-stop of {bundle}"));
        }
        !procs.is_empty()
    }

    /// The process of `proc` runs as `pid` (its host has not attached yet).
    pub fn spawned(&mut self, proc: ProcId, pid: u32) {
        if let Some(p) = self.procs.get_mut(&proc) {
            p.state = ProcState::Running { pid };
        }
    }

    /// The process of `proc` could not be spawned: its abilities fail with `reason`.
    pub fn spawn_failed(&mut self, proc: ProcId, reason: &str) {
        if self.procs.remove(&proc).is_some() {
            self.end_records_of(proc, &format!("the app process could not start: {reason}"));
        }
    }

    /// The process's host attached: it can run steps now.
    pub fn attached(&mut self, proc: ProcId, now: Instant) {
        match self.procs.get_mut(&proc) {
            Some(p) if matches!(p.state, ProcState::Running { .. }) => p.attached = true,
            _ => return,
        }
        let ids: Vec<RecordId> = self
            .records
            .iter()
            .filter(|(_, r)| r.proc == proc && r.pending.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.advance(id, now);
        }
    }

    /// The host finished `step` of `record` (the name of the command, as [`Command::name`]).
    /// A report that does not match the step in flight is ignored: it is late or forged.
    pub fn step_done(&mut self, proc: ProcId, record: RecordId, step: &str, now: Instant) {
        self.step_done_with(proc, record, step, None, now);
    }

    /// The host ran `onAcceptWant` for the provisional record of a `specified` start, which
    /// named the instance `key`: the record with that key gets the start (`onNewWant`), or
    /// this one becomes it.
    pub fn accepted(&mut self, proc: ProcId, record: RecordId, key: String, now: Instant) {
        self.step_done_with(proc, record, "onAcceptWant", Some(key), now);
    }

    fn step_done_with(
        &mut self,
        proc: ProcId,
        record: RecordId,
        step: &str,
        key: Option<String>,
        now: Instant,
    ) {
        let Some(r) = self.records.get_mut(&record) else {
            return;
        };
        if r.proc != proc || r.pending.as_ref().map(|(c, _)| c.name()) != Some(step) {
            return;
        }
        if step == "onAcceptWant" {
            let Some(key) = key else { return };
            r.pending = None;
            let element = r.target.element.clone();
            let want = match r.queue.front() {
                Some(Command::Create { want, .. }) => want.clone(),
                _ => Want::default(),
            };
            let same = self
                .records
                .iter()
                .find(|(id, o)| {
                    **id != record
                        && o.target.element == element
                        && o.key.as_deref() == Some(key.as_str())
                        && !o.ending
                })
                .map(|(id, _)| *id);
            match same {
                Some(existing) => {
                    // That instance gets the start; the provisional record goes quietly.
                    let waiters = std::mem::take(&mut self.rec(record).waiters);
                    let e = self.rec(existing);
                    e.waiters
                        .extend(waiters.into_iter().map(|w| Waiter { cold: false, ..w }));
                    e.queue.push_back(Command::NewWant { want });
                    e.queue.push_back(Command::Foreground);
                    self.missions.retain(|(_, rec)| *rec != record);
                    self.records.remove(&record);
                    self.touch_mission(existing);
                    self.advance(existing, now);
                }
                None => {
                    self.rec(record).key = Some(key);
                    self.advance(record, now);
                }
            }
            return;
        }
        let Some((cmd, _)) = r.pending.take() else {
            return;
        };
        match cmd {
            Command::Create { .. } => {
                r.state = State::Inactive;
                if let Some(w) = r.on_created.take() {
                    let mission = r.mission;
                    self.reply_started(record, mission, vec![w], now);
                }
            }
            Command::Foreground => {
                r.state = State::Foreground;
                let done = std::mem::take(&mut r.waiters);
                let mission = r.mission;
                let previous = self.foreground.replace(record);
                self.reply_started(record, mission, done, now);
                if let Some(prev) = previous.filter(|p| *p != record)
                    && let Some(p) = self.records.get_mut(&prev)
                    && !p.ending
                {
                    p.queue.push_back(Command::Background);
                    self.advance(prev, now);
                }
            }
            Command::Background => r.state = State::Background,
            Command::Request { .. } => {
                if !r.waiters.is_empty() {
                    let w = r.waiters.remove(0);
                    self.reply_started(record, None, vec![w], now);
                }
            }
            Command::Connect { want } => {
                r.binding = false;
                r.bound = Some(want);
                for (request, conn) in std::mem::take(&mut r.connecting) {
                    r.conns.push(conn);
                    self.actions.push_back(Action::Connected {
                        request,
                        conn,
                        result: Ok(record),
                    });
                }
                // Its clients may all have left while onConnect ran.
                r.unbind_if_idle();
            }
            Command::NewWant { .. }
            | Command::Disconnect { .. }
            | Command::AcceptWant { .. }
            | Command::Continue => {}
            Command::Destroy => {
                self.remove_record(record);
                return;
            }
        }
        self.advance(record, now);
    }

    /// A process is gone. `signal` is what killed it (None: it exited with `status`).
    pub fn exited(&mut self, proc: ProcId, signal: Option<i32>, status: Option<i32>) {
        let Some(p) = self.procs.remove(&proc) else {
            return;
        };
        let abilities: Vec<Element> = self
            .records
            .values()
            .filter(|r| r.proc == proc)
            .map(|r| r.target.element.clone())
            .collect();
        if !p.killing {
            let pid = match p.state {
                ProcState::Running { pid } => pid,
                ProcState::Spawning => 0,
            };
            self.actions.push_back(Action::Fault(Fault {
                bundle: p.bundle.clone(),
                pid,
                signal,
                status,
                abilities,
            }));
        }
        self.end_records_of(proc, "the app process died");
    }

    /// Kills the processes whose step is past its deadline; their callers are told.
    pub fn on_timeout(&mut self, now: Instant) {
        let late: Vec<(ProcId, String)> = self
            .records
            .values()
            .filter_map(|r| {
                let (cmd, deadline) = r.pending.as_ref()?;
                (*deadline <= now).then(|| {
                    (
                        r.proc,
                        format!(
                            "{} did not finish {} within {} ms",
                            r.target.element,
                            cmd.name(),
                            self.limit(cmd).as_millis()
                        ),
                    )
                })
            })
            .collect();
        let unattached: Vec<(ProcId, String)> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.attached && !p.killing && p.since + self.timeouts.load <= now)
            .map(|(id, p)| {
                (
                    *id,
                    format!(
                        "the process of {} did not attach within {} ms",
                        p.bundle,
                        self.timeouts.load.as_millis()
                    ),
                )
            })
            .collect();
        for (proc, why) in late.into_iter().chain(unattached) {
            if self.procs.contains_key(&proc) {
                self.kill(proc, why.clone());
                self.end_records_of(proc, &why);
            }
        }
    }

    /// Freezes a mission for a continuation: no lifecycle step runs on it until
    /// [`Manager::resume`] or its end, but `onContinue` ([`Manager::call_on_continue`]).
    /// False if it has no such mission.
    pub fn freeze(&mut self, mission: MissionId) -> bool {
        let Some(id) = self.record_of_mission(mission) else {
            return false;
        };
        self.rec(id).frozen = true;
        true
    }

    /// Lets a frozen mission run again, its queued steps with it (idempotent).
    pub fn resume(&mut self, mission: MissionId, now: Instant) {
        if let Some(id) = self.record_of_mission(mission) {
            self.rec(id).frozen = false;
            self.advance(id, now);
        }
    }

    /// Runs the mission's `onContinue` (the step [`Command::Continue`]); the host's report
    /// is [`Manager::step_done`] with `onContinue`. The record of the mission, or None.
    pub fn call_on_continue(&mut self, mission: MissionId, now: Instant) -> Option<RecordId> {
        let id = self.record_of_mission(mission)?;
        self.rec(id).queue.push_back(Command::Continue);
        self.advance(id, now);
        Some(id)
    }

    /// Ends a mission (it moved to another device): `onBackground`, `onDestroy`, even if
    /// it was frozen (idempotent).
    pub fn end_mission(&mut self, mission: MissionId, now: Instant) {
        if let Some(id) = self.record_of_mission(mission) {
            let r = self.rec(id);
            r.frozen = false;
            // Steps queued while it was frozen (a start's foreground) are moot now.
            r.queue.clear();
            r.waiters.clear();
            r.ending = true;
            r.starts = 0;
            self.advance(id, now);
        }
    }

    /// The record of a mission.
    pub fn record_of_mission(&self, mission: MissionId) -> Option<RecordId> {
        self.missions
            .iter()
            .find(|(m, _)| *m == mission)
            .map(|(_, r)| *r)
    }

    /// A frozen record (for dumps).
    pub fn is_frozen(&self, record: RecordId) -> bool {
        self.records.get(&record).is_some_and(|r| r.frozen)
    }

    /// A continuation's pending instance (a UIAbility): a new record and mission, created
    /// with `onCreate(want, reason)` but not shown; `request` is answered once `onCreate`
    /// is done. [`Manager::show`] brings it to the foreground, [`Manager::terminate`]
    /// discards it. A singleton that already runs here is refused (16000050), so that the
    /// continuation never lands on an instance with a state of its own.
    pub fn start_pending(
        &mut self,
        request: RequestId,
        target: Target,
        want: Want,
        reason: LaunchReason,
        now: Instant,
    ) {
        let existing = match target.launch_type {
            LaunchType::Singleton => self.find(&target.element),
            _ => None,
        };
        let refused = if existing.is_some() {
            Err(AbilityError::Internal(format!(
                "{} already runs on this device",
                target.element
            )))
        } else if target.kind != AbilityType::Page {
            Err(AbilityError::IncorrectType(format!(
                "{} is not a UIAbility",
                target.element
            )))
        } else {
            self.admit(None)
        };
        if let Err(e) = refused {
            self.actions.push_back(Action::Reply {
                request,
                result: Err(e),
            });
            return;
        }
        let (id, cold) = self.create(target, want, now);
        let r = self.rec(id);
        if let Some(Command::Create { reason: r0, .. }) = r.queue.front_mut() {
            *r0 = reason;
        }
        r.on_created = Some(Waiter {
            request,
            since: now,
            cold,
        });
        self.advance(id, now);
    }

    /// Brings a record to the foreground (a continuation's commit), answering no one.
    pub fn show(&mut self, record: RecordId, now: Instant) {
        if let Some(r) = self.records.get_mut(&record)
            && !r.ending
        {
            r.queue.push_back(Command::Foreground);
            self.touch_mission(record);
            self.advance(record, now);
        }
    }

    /// Missions, most recently used last.
    pub fn missions(&self) -> Vec<MissionInfo> {
        self.missions
            .iter()
            .filter_map(|(id, rec)| {
                let r = self.records.get(rec)?;
                Some(MissionInfo {
                    id: *id,
                    element: r.target.element.clone(),
                    record: *rec,
                    state: r.state,
                    pid: self.pid_of(r.proc),
                })
            })
            .collect()
    }

    /// Every ability record, services included, by id.
    pub fn records(&self) -> Vec<RecordInfo> {
        self.records
            .iter()
            .map(|(id, r)| RecordInfo {
                id: *id,
                element: r.target.element.clone(),
                kind: r.target.kind,
                state: r.state,
                mission: r.mission,
                pid: self.pid_of(r.proc),
                connections: r.conns.len(),
                frozen: r.frozen,
            })
            .collect()
    }

    /// The record in the foreground.
    pub fn foreground(&self) -> Option<RecordId> {
        self.foreground
    }

    /// The process a pid belongs to (for reaping and for resolving an IPC caller).
    pub fn proc_of_pid(&self, pid: u32) -> Option<ProcId> {
        self.procs.iter().find_map(|(id, p)| match p.state {
            ProcState::Running { pid: q } if q == pid => Some(*id),
            _ => None,
        })
    }

    /// The bundle a process runs.
    pub fn bundle_of(&self, proc: ProcId) -> Option<&str> {
        self.procs.get(&proc).map(|p| p.bundle.as_str())
    }

    /// Who owns record `record`: its process (so a host can only report on its own).
    pub fn proc_of_record(&self, record: RecordId) -> Option<ProcId> {
        self.records.get(&record).map(|r| r.proc)
    }

    fn pid_of(&self, proc: ProcId) -> Option<u32> {
        match self.procs.get(&proc)?.state {
            ProcState::Running { pid } => Some(pid),
            ProcState::Spawning => None,
        }
    }

    fn limit(&self, cmd: &Command) -> Duration {
        match cmd {
            Command::Create { .. } => self.timeouts.load,
            Command::AcceptWant { .. } => self.timeouts.foreground,
            Command::Foreground | Command::NewWant { .. } => self.timeouts.foreground,
            Command::Background => self.timeouts.background,
            Command::Request { .. } | Command::Connect { .. } => self.timeouts.foreground,
            Command::Disconnect { .. } | Command::Destroy => self.timeouts.terminate,
            Command::Continue => self.timeouts.foreground,
        }
    }

    /// Whether a request may queue on `existing` (or make a new record): the limits.
    fn admit(&self, existing: Option<RecordId>) -> Result<(), AbilityError> {
        match existing.and_then(|id| self.records.get(&id)) {
            Some(r) if r.queue.len() >= MAX_QUEUED_STEPS => Err(AbilityError::Busy(format!(
                "{} has {MAX_QUEUED_STEPS} steps waiting (the limit)",
                r.target.element
            ))),
            Some(_) => Ok(()),
            None if self.records.len() >= MAX_RECORDS => Err(AbilityError::Internal(format!(
                "too many ability instances: {MAX_RECORDS} are running (the limit)"
            ))),
            None => Ok(()),
        }
    }

    fn rec(&mut self, id: RecordId) -> &mut Record {
        self.records
            .get_mut(&id)
            .expect("the record was found or made by the caller")
    }

    fn find(&self, element: &Element) -> Option<RecordId> {
        self.records
            .iter()
            .find(|(_, r)| r.target.element == *element && !r.ending)
            .map(|(id, _)| *id)
    }

    /// Makes a record, and the bundle's process if it has none; true when that spawn is new.
    fn create(&mut self, target: Target, want: Want, now: Instant) -> (RecordId, bool) {
        let bundle = target.element.bundle_name.clone();
        let existing = self
            .procs
            .iter()
            .find(|(_, p)| p.bundle == bundle && !p.killing)
            .map(|(id, _)| *id);
        let (proc, cold) = match existing {
            Some(p) => (p, false),
            None => {
                let p = self.id();
                self.procs.insert(
                    p,
                    Process {
                        bundle: bundle.clone(),
                        state: ProcState::Spawning,
                        attached: false,
                        killing: false,
                        since: now,
                    },
                );
                self.actions.push_back(Action::Spawn { proc: p, bundle });
                (p, true)
            }
        };
        let id = self.id();
        let mission = (target.kind == AbilityType::Page).then(|| {
            let m = self.next_mission;
            self.next_mission += 1;
            self.missions.push((m, id));
            m
        });
        let mut queue = VecDeque::new();
        queue.push_back(Command::Create {
            want,
            reason: LaunchReason::StartAbility,
        });
        self.records.insert(
            id,
            Record {
                target,
                proc,
                state: State::Initial,
                mission,
                pending: None,
                queue,
                waiters: Vec::new(),
                starts: 0,
                conns: Vec::new(),
                connecting: Vec::new(),
                binding: false,
                bound: None,
                key: None,
                ending: false,
                frozen: false,
                on_created: None,
            },
        );
        (id, cold)
    }

    fn touch_mission(&mut self, id: RecordId) {
        if let Some(i) = self.missions.iter().position(|(_, r)| *r == id) {
            let m = self.missions.remove(i);
            self.missions.push(m);
        }
    }

    /// Sends the record's next step if none is in flight and its host can take it.
    fn advance(&mut self, id: RecordId, now: Instant) {
        // Bounded: each turn takes a step off the queue or returns.
        loop {
            let Some(r) = self.records.get(&id) else {
                return;
            };
            if r.pending.is_some() {
                return;
            }
            let proc = r.proc;
            if !self.procs.get(&proc).is_some_and(|p| p.attached) {
                // Its host has not attached yet: the process's load deadline runs.
                return;
            }
            let r = self.rec(id);
            if r.frozen {
                // Only onContinue runs on a frozen record; the rest waits for the resume.
                if let Some(i) = r.queue.iter().position(|c| *c == Command::Continue) {
                    r.queue.remove(i);
                    let deadline = now + self.limit(&Command::Continue);
                    let r = self.rec(id);
                    r.pending = Some((Command::Continue, deadline));
                    let element = r.target.element.clone();
                    self.actions.push_back(Action::Schedule {
                        proc,
                        record: id,
                        element,
                        cmd: Box::new(Command::Continue),
                    });
                }
                return;
            }
            let cmd = match r.queue.pop_front() {
                Some(cmd) => cmd,
                None if r.ending && r.state == State::Foreground => Command::Background,
                None if r.ending => {
                    r.ending = false;
                    Command::Destroy
                }
                None => return,
            };
            // Steps the state makes pointless are skipped, but still answer their callers.
            if cmd == Command::Foreground && r.state == State::Foreground {
                let mission = r.mission;
                let done = std::mem::take(&mut r.waiters);
                self.reply_started(id, mission, done, now);
                continue;
            }
            if cmd == Command::Background && r.state != State::Foreground {
                continue;
            }
            r.state = match &cmd {
                Command::Foreground => State::Foregrounding,
                Command::Background => State::Backgrounding,
                Command::Destroy => State::Terminating,
                _ => r.state,
            };
            let deadline = now + self.limit(&cmd);
            let r = self.rec(id);
            r.pending = Some((cmd.clone(), deadline));
            let element = r.target.element.clone();
            self.actions.push_back(Action::Schedule {
                proc,
                record: id,
                element,
                cmd: Box::new(cmd),
            });
            return;
        }
    }

    fn reply_started(
        &mut self,
        record: RecordId,
        mission: Option<MissionId>,
        waiters: Vec<Waiter>,
        now: Instant,
    ) {
        for w in waiters {
            self.actions.push_back(Action::Reply {
                request: w.request,
                result: Ok(Started {
                    record,
                    mission,
                    cold: w.cold,
                    elapsed: now.saturating_duration_since(w.since),
                }),
            });
        }
    }

    fn kill(&mut self, proc: ProcId, reason: String) {
        if let Some(p) = self.procs.get_mut(&proc)
            && !p.killing
        {
            p.killing = true;
            let pid = match p.state {
                ProcState::Running { pid } => Some(pid),
                ProcState::Spawning => None,
            };
            self.actions.push_back(Action::Kill { proc, pid, reason });
        }
    }

    /// Ends every record of a process that is gone or being killed, failing their waiters.
    fn end_records_of(&mut self, proc: ProcId, why: &str) {
        let ids: Vec<RecordId> = self
            .records
            .iter()
            .filter(|(_, r)| r.proc == proc)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(r) = self.records.get_mut(&id) {
                let err = AbilityError::Internal(format!("{}: {why}", r.target.element));
                let created = r.on_created.take();
                for w in std::mem::take(&mut r.waiters).into_iter().chain(created) {
                    self.actions.push_back(Action::Reply {
                        request: w.request,
                        result: Err(err.clone()),
                    });
                }
                for (request, conn) in std::mem::take(&mut r.connecting) {
                    self.actions.push_back(Action::Connected {
                        request,
                        conn,
                        result: Err(err.clone()),
                    });
                }
                for conn in std::mem::take(&mut r.conns) {
                    self.actions.push_back(Action::ConnectionLost { conn });
                }
            }
            self.remove_record(id);
        }
    }

    fn remove_record(&mut self, id: RecordId) {
        let Some(r) = self.records.remove(&id) else {
            return;
        };
        self.missions.retain(|(_, rec)| *rec != id);
        if self.foreground == Some(id) {
            self.foreground = None;
        }
        for conn in r.conns {
            self.actions.push_back(Action::ConnectionLost { conn });
        }
        // A process with nothing left to run is ended.
        if !self.records.values().any(|o| o.proc == r.proc) {
            self.kill(r.proc, "its last ability ended".into());
        }
    }
}
