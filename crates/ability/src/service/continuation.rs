//! The continuation driver of the distributed scheduler: the pure [`Source`] and [`Target`]
//! of [`crate::continuation`] run with a clock (tokio), journals on disk and a message bus,
//! their actions handed to a [`ContinuationHost`] (the ability manager's side: freeze,
//! onContinue, pending start, foreground, end).
//!
//! Each input goes to its core under one lock; the journals it changed are written (a JSON
//! file, mode 0600, by an fsync'd rename) before any output is carried out, as the core's
//! rules need; then messages are sent (each on a task of its own: a lost one is the core's
//! to repeat) and actions handed to the host. A driver opened on a dir with journals
//! recovers from them ([`Source::recover`], [`Target::recover`]).
//!
//! Device ids are the cores' opaque strings: the daemon uses a device's udid, which outlives
//! a restart (a networkId does not), and its bus maps it to the peer's networkId.

use crate::continuation::{
    ContinueError, ContinueRequest, Message, MissionInfo, MissionRef, OnContinueResult, Source,
    SourceAction, SourceInput, SourceJournal, SourceOutput, StartFailure, Target, TargetAction,
    TargetInput, TargetJournal, TargetOutput, Txn,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// The source's journal file, under the driver's dir.
pub const SOURCE_JOURNAL: &str = "continuation-source.json";
/// The target's journal file, under the driver's dir.
pub const TARGET_JOURNAL: &str = "continuation-target.json";
/// The journals' file mode: the daemon's alone.
const JOURNAL_MODE: u32 = 0o600;

/// The ability manager's side of continuation. Each call must return quickly; the host
/// reports back through [`Continuation::on_continue`], [`Continuation::started`],
/// [`Continuation::start_failed`] and [`Continuation::died`].
pub trait ContinuationHost: Send + Sync + 'static {
    /// What the ability manager knows of a mission here (`None`: no such mission).
    fn mission(&self, mission: &MissionRef) -> Option<MissionInfo>;
    /// Carries out a source action.
    fn source_action(&self, action: SourceAction);
    /// Carries out a target action.
    fn target_action(&self, action: TargetAction);
}

/// How continuation messages reach another device's scheduler.
#[async_trait::async_trait]
pub trait MessageBus: Send + Sync + 'static {
    /// Sends `msg` to device `to`; an error means it may not have arrived.
    async fn send(&self, to: &str, msg: Message) -> Result<(), String>;
}

/// Why a driver could not open.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A journal could not be read or written.
    #[error("continuation journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A journal is not what this version writes.
    #[error("continuation journal {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn load<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, JournalError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| JournalError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(JournalError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn save<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), JournalError> {
    let io = |e| JournalError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| io(std::io::Error::other(e)))?;
    oxh_kal::write_atomic(path, &bytes, JOURNAL_MODE).map_err(io)
}

struct State {
    source: Source,
    target: Target,
    /// The journals as last written, to write only what changed.
    source_written: SourceJournal,
    target_written: TargetJournal,
    answers: HashMap<u64, oneshot::Sender<Result<(), ContinueError>>>,
    next_request: u64,
}

/// What one input produced, to carry out after the lock is released.
#[derive(Default)]
struct Effects {
    source: Vec<SourceOutput>,
    target: Vec<TargetOutput>,
}

/// The continuation driver of one device.
pub struct Continuation {
    local: String,
    dir: PathBuf,
    host: Arc<dyn ContinuationHost>,
    bus: Arc<dyn MessageBus>,
    epoch: Instant,
    state: Mutex<State>,
    wake: Notify,
}

impl Continuation {
    /// Opens the driver of device `local` over the journals in `dir` (recovering what they
    /// say), and starts its timer.
    pub fn open(
        local: &str,
        dir: &Path,
        host: Arc<dyn ContinuationHost>,
        bus: Arc<dyn MessageBus>,
    ) -> Result<Arc<Self>, JournalError> {
        let sj: SourceJournal = load(&dir.join(SOURCE_JOURNAL))?;
        let tj: TargetJournal = load(&dir.join(TARGET_JOURNAL))?;
        let (source, s_out) = Source::recover(local, sj.clone(), 0);
        let (target, t_out) = Target::recover(local, tj.clone());
        let me = Arc::new(Continuation {
            local: local.to_string(),
            dir: dir.to_path_buf(),
            host,
            bus,
            epoch: Instant::now(),
            state: Mutex::new(State {
                source,
                target,
                source_written: sj,
                target_written: tj,
                answers: HashMap::new(),
                next_request: 1,
            }),
            wake: Notify::new(),
        });
        let fx = me.with(|st| {
            me.persist(st)?;
            Ok(Effects {
                source: s_out,
                target: t_out,
            })
        })?;
        me.carry_out(fx);
        // The timer: the driver lives as long as the daemon, and so does this task.
        let timer = me.clone();
        tokio::spawn(async move {
            let me = timer;
            loop {
                let deadline = me.with(|st| {
                    [st.source.deadline(), st.target.deadline()]
                        .into_iter()
                        .flatten()
                        .min()
                });
                let notified = me.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let sleep = async {
                    match deadline {
                        Some(d) => {
                            let at = me.epoch + std::time::Duration::from_millis(d);
                            tokio::time::sleep_until(at).await
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = notified => {}
                    _ = sleep => me.tick(),
                }
            }
        });
        Ok(me)
    }

    /// This device's id.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The dir of its journals (the scheduler's own).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the source offers `bundle`'s package to `peer` for txn `seq` now
    /// ([`Source::offers`]).
    pub fn offers(&self, peer: &str, seq: u64, bundle: &str) -> bool {
        self.with(|st| st.source.offers(peer, seq, bundle))
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Writes the journals that changed (before any output they guard).
    fn persist(&self, st: &mut State) -> Result<(), JournalError> {
        if st.source.journal() != &st.source_written {
            save(&self.dir.join(SOURCE_JOURNAL), st.source.journal())?;
            st.source_written = st.source.journal().clone();
        }
        if st.target.journal() != &st.target_written {
            save(&self.dir.join(TARGET_JOURNAL), st.target.journal())?;
            st.target_written = st.target.journal().clone();
        }
        Ok(())
    }

    /// Runs `f` on the cores, writes the journals, then carries out the outputs. A journal
    /// that cannot be written stops the outputs: nothing is sent or done that the disk does
    /// not know of (the cores' rule), and the error is logged.
    fn drive(&self, f: impl FnOnce(&mut State, u64) -> Effects) {
        let now = self.now();
        let fx = self.with(|st| {
            let fx = f(st, now);
            match self.persist(st) {
                Ok(()) => Some(fx),
                Err(e) => {
                    tracing::error!(tag = "DistributedSched", "{e}; outputs withheld");
                    None
                }
            }
        });
        if let Some(fx) = fx {
            self.carry_out(fx);
        }
        self.wake.notify_one();
    }

    fn carry_out(&self, fx: Effects) {
        for o in fx.source {
            match o {
                SourceOutput::Send { to, msg } => self.send(to, msg),
                SourceOutput::Act(a) => self.host.source_action(a),
                SourceOutput::Done { request, result } => {
                    if let Some(tx) = self.with(|st| st.answers.remove(&request)) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        for o in fx.target {
            match o {
                TargetOutput::Send { to, msg } => self.send(to, msg),
                TargetOutput::Act(a) => self.host.target_action(a),
            }
        }
    }

    fn send(&self, to: String, msg: Message) {
        let bus = self.bus.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.send(&to, msg).await {
                tracing::warn!(tag = "DistributedSched", "continuation message lost: {e}");
            }
        });
    }

    fn tick(&self) {
        self.drive(|st, now| Effects {
            source: if st.source.deadline().is_some_and(|d| d <= now) {
                st.source.handle(now, SourceInput::Tick)
            } else {
                Vec::new()
            },
            target: if st.target.deadline().is_some_and(|d| d <= now) {
                st.target.handle(now, TargetInput::Tick)
            } else {
                Vec::new()
            },
        });
    }

    /// Moves `mission` from this device to device `dst` (`continueMission`, `aa continue`);
    /// answers once the mission runs there, or with why not (it then runs here).
    pub async fn continue_mission(
        &self,
        dst: &str,
        mission: MissionRef,
        free_install: bool,
    ) -> Result<(), ContinueError> {
        let found = self.host.mission(&mission);
        let (tx, rx) = oneshot::channel();
        self.drive(|st, now| {
            let request = st.next_request;
            st.next_request += 1;
            st.answers.insert(request, tx);
            let req = ContinueRequest {
                request,
                src_device: self.local.clone(),
                dst_device: dst.to_string(),
                mission,
                found,
                free_install,
            };
            Effects {
                source: st.source.handle(now, SourceInput::Continue(req)),
                ..Effects::default()
            }
        });
        rx.await.unwrap_or_else(|_| {
            Err(ContinueError::Abnormal(
                "the continuation service stopped".into(),
            ))
        })
    }

    /// The app's onContinue answered (for [`SourceAction::CallOnContinue`] `seq`).
    pub fn on_continue(
        &self,
        seq: u64,
        result: OnContinueResult,
        want_param: Vec<u8>,
        source_exit: bool,
    ) {
        self.drive(|st, now| Effects {
            source: st.source.handle(
                now,
                SourceInput::OnContinue {
                    seq,
                    result,
                    want_param,
                    source_exit,
                },
            ),
            ..Effects::default()
        });
    }

    /// A message from device `from`'s scheduler (the bus authenticated `from`).
    pub fn on_message(&self, from: &str, msg: Message) {
        let from = from.to_string();
        self.drive(|st, now| match msg {
            Message::Prepare { .. } | Message::Commit { .. } | Message::Abort { .. } => Effects {
                target: st.target.handle(now, TargetInput::Message { from, msg }),
                ..Effects::default()
            },
            Message::Prepared { .. } | Message::Refused { .. } | Message::Committed { .. } => {
                Effects {
                    source: st.source.handle(now, SourceInput::Message { from, msg }),
                    ..Effects::default()
                }
            }
        });
    }

    /// The pending instance of a [`TargetAction::StartPending`] exists.
    pub fn started(&self, txn: Txn) {
        self.drive(|st, now| Effects {
            target: st.target.handle(now, TargetInput::Started { txn }),
            ..Effects::default()
        });
    }

    /// A [`TargetAction::StartPending`] could not be carried out.
    pub fn start_failed(&self, txn: Txn, why: StartFailure) {
        self.drive(|st, now| Effects {
            target: st.target.handle(now, TargetInput::StartFailed { txn, why }),
            ..Effects::default()
        });
    }

    /// A continuation's instance died here.
    pub fn died(&self, txn: Txn) {
        self.drive(|st, now| Effects {
            target: st.target.handle(now, TargetInput::Died { txn }),
            ..Effects::default()
        });
    }

    /// The link to device `peer` dropped (or came back: `up`).
    pub fn link(&self, peer: &str, up: bool) {
        let peer = peer.to_string();
        self.drive(|st, now| {
            let (s, t) = if up {
                (
                    SourceInput::LinkUp { peer: peer.clone() },
                    TargetInput::LinkUp { peer },
                )
            } else {
                (
                    SourceInput::LinkDown { peer: peer.clone() },
                    TargetInput::LinkDown { peer },
                )
            };
            Effects {
                source: st.source.handle(now, s),
                target: st.target.handle(now, t),
            }
        });
    }

    /// Whether a continuation from this device is under way.
    pub fn busy(&self) -> bool {
        self.with(|st| st.source.busy())
    }
}

#[cfg(test)]
#[path = "continuation_tests.rs"]
mod tests;
