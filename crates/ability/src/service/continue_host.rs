//! The ability manager's side of continuation: [`ContinuationHost`] over SA 180's core.
//!
//! Source: a mission is frozen (no lifecycle step runs on it but `onContinue`), its app's
//! `onContinue` runs as a lifecycle step ([`crate::api::Step::Continue`]) whose report carries
//! the answer and the wantParam, and it is resumed or ended as the driver decides.
//! Target: a pending instance is created with launchReason CONTINUATION and the wantParam in
//! its Want's parameters (its `onCreate` sees them), not shown; the commit brings it to the
//! foreground; a discard ends it.

use super::AbilityService;
use super::continuation::{Continuation, ContinuationHost};
use crate::api::{self, ContinueReport};
use crate::continuation::{
    InstalledBundle, MissionInfo, MissionRef, OnContinueResult, SUPPORT_CONTINUE_SOURCE_EXIT_KEY,
    SourceAction, StartFailure, TargetAction, Txn, local_bundle,
};
use crate::manager::{AbilityType, RecordId, Target};
use crate::resolve::{Caller, resolve};
use crate::want::{LaunchReason, Want, WantParam};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::oneshot;

/// What the ability manager keeps of continuations under way.
#[derive(Debug, Default)]
pub(super) struct ContinueState {
    /// Source: the records whose `onContinue` runs, and their txn's number.
    pub(super) on_continue: BTreeMap<RecordId, u64>,
    /// Target: each continuation's instance here.
    pub(super) instances: BTreeMap<Txn, RecordId>,
    /// Missions whose ability set its continue state INACTIVE.
    pub(super) inactive: std::collections::BTreeSet<i32>,
}

/// [`ContinuationHost`] over the ability manager (held weakly: the driver lives in it).
pub(super) struct AmsHost(pub(super) Weak<AbilityService>);

impl AbilityService {
    /// The continuation driver, once the daemon opened it.
    pub fn continuation(&self) -> Option<Arc<Continuation>> {
        self.continuation.get().cloned()
    }

    /// Opens the continuation driver of device `local` (its udid) over the journals in
    /// `dir`, with this service as its host; messages go out on `bus`.
    pub fn open_continuation(
        self: &Arc<Self>,
        local: &str,
        dir: &std::path::Path,
        bus: Arc<dyn super::continuation::MessageBus>,
    ) -> Result<Arc<Continuation>, super::continuation::JournalError> {
        let host = Arc::new(AmsHost(Arc::downgrade(self)));
        let c = Continuation::open(local, dir, host, bus)?;
        let _ = self.continuation.set(c.clone());
        Ok(c)
    }

    /// Whether mission `mission` set its continue state INACTIVE.
    pub fn continue_inactive(&self, mission: i32) -> bool {
        self.with(|i| i.cont.inactive.contains(&mission))
    }

    /// `setMissionContinueState` of the ability `record` (the caller's own).
    pub(super) fn set_continue_state(&self, record: RecordId, active: bool) {
        self.with(|i| {
            let Some(m) = i
                .core
                .records()
                .into_iter()
                .find(|r| r.id == record)
                .and_then(|r| r.mission)
            else {
                return;
            };
            if active {
                i.cont.inactive.remove(&m);
            } else {
                i.cont.inactive.insert(m);
            }
        });
        self.missions_changed.notify_one();
    }

    /// The host reported `onContinue` of `record`: tell the driver.
    pub(super) fn continued(&self, record: RecordId, report: Option<ContinueReport>) {
        let Some(seq) = self.with(|i| i.cont.on_continue.remove(&record)) else {
            return;
        };
        let Some(c) = self.continuation() else { return };
        let report = report.unwrap_or(ContinueReport {
            result: api::ON_CONTINUE_REJECT,
            want_param: Vec::new(),
        });
        let result = match report.result {
            api::ON_CONTINUE_AGREE => OnContinueResult::Agree,
            api::ON_CONTINUE_MISMATCH => OnContinueResult::Mismatch,
            _ => OnContinueResult::Reject,
        };
        let params: BTreeMap<String, WantParam> =
            oxh_ipc::decode(&report.want_param).unwrap_or_default();
        let source_exit = !matches!(
            params.get(SUPPORT_CONTINUE_SOURCE_EXIT_KEY),
            Some(WantParam::Bool(false))
        );
        c.on_continue(seq, result, report.want_param, source_exit);
    }

    /// A process exited: continuations whose instance went with it died.
    pub(super) fn continuation_instances_died(&self) {
        let dead: Vec<Txn> = self.with(|i| {
            let live: std::collections::BTreeSet<RecordId> =
                i.core.records().into_iter().map(|r| r.id).collect();
            let dead: Vec<Txn> = i
                .cont
                .instances
                .iter()
                .filter(|(_, r)| !live.contains(r))
                .map(|(t, _)| t.clone())
                .collect();
            for t in &dead {
                i.cont.instances.remove(t);
            }
            // Continue states of missions that are gone.
            let missions: std::collections::BTreeSet<i32> = i
                .core
                .records()
                .into_iter()
                .filter_map(|r| r.mission)
                .collect();
            i.cont.inactive.retain(|m| missions.contains(m));
            dead
        });
        if let Some(c) = self.continuation() {
            for t in dead {
                c.died(t);
            }
        }
    }

    /// The local bundle that may take continuation `a` ([`local_bundle`]).
    fn continuation_bundle(&self, a: &PendingStart) -> Option<String> {
        let user = self.cfg.user;
        let decls = self.bundles.abilities(user);
        local_bundle(&a.bundle, &a.continue_bundle_names, &a.app_id, |b| {
            Some(InstalledBundle {
                app_id: self.bundles.app_id(b, user)?,
                continue_bundle_names: decls
                    .iter()
                    .find(|d| d.element.bundle_name == b && d.element.ability_name == a.ability)
                    .map(|d| d.continue_bundle_names.clone())
                    .unwrap_or_default(),
            })
        })
        .map(str::to_string)
    }

    fn start_pending(self: &Arc<Self>, a: PendingStart) {
        let Some(c) = self.continuation() else { return };
        if let Some(local) = self.continuation_bundle(&a) {
            return self.start_pending_as(c, a, local);
        }
        let allowed = self.bundles.may_install_on_demand();
        let dms = self.dms.get().and_then(Weak::upgrade);
        let (true, true, Some(dms)) = (allowed, a.free_install, dms) else {
            c.start_failed(
                a.txn,
                StartFailure::NotInstalled {
                    free_install_supported: allowed,
                },
            );
            return;
        };
        // Install on demand: fetch the signed HAPs from the source, install them here with
        // every check, then start as if the app had been here.
        let me = self.clone();
        tokio::spawn(async move {
            let dir = c
                .dir()
                .join("on-demand")
                .join(format!("{}-{}", a.txn.source, a.txn.seq));
            let r = me.install_from_source(&dms, &a, &dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(why) = r {
                tracing::warn!(
                    tag = "DistributedSched",
                    public_bundle = a.bundle.as_str(),
                    "install on demand failed: {why}"
                );
                return c.start_failed(a.txn, StartFailure::InstallFailed(why));
            }
            match me.continuation_bundle(&a) {
                Some(local) => me.start_pending_as(c, a, local),
                None => c.start_failed(
                    a.txn,
                    StartFailure::InstallFailed(format!(
                        "the installed {} is not signed as the source's (appId {})",
                        a.bundle, a.app_id
                    )),
                ),
            }
        });
    }

    /// Fetches `a`'s bundle from its source into `dir` and installs it.
    async fn install_from_source(
        &self,
        dms: &super::dms::DmsService,
        a: &PendingStart,
        dir: &std::path::Path,
    ) -> Result<(), String> {
        let files = dms.fetch_bundle(&a.txn, &a.bundle, dir).await?;
        let bundles = self.bundles.clone();
        let (bundle, user) = (a.bundle.clone(), self.cfg.user);
        tokio::task::spawn_blocking(move || bundles.install_on_demand(&bundle, &files, user))
            .await
            .map_err(|e| format!("the install task failed: {e}"))?
            .map_err(|e| e.message)?;
        tracing::info!(
            tag = "DistributedSched",
            public_bundle = a.bundle.as_str(),
            "installed on demand for a continuation"
        );
        Ok(())
    }

    fn start_pending_as(self: &Arc<Self>, c: Arc<Continuation>, a: PendingStart, local: String) {
        let user = self.cfg.user;
        let Ok(params) = oxh_ipc::decode::<BTreeMap<String, WantParam>>(&a.want_param) else {
            c.start_failed(a.txn, StartFailure::Failed);
            return;
        };
        let mut want = Want::explicit(&local, &a.ability);
        want.parameters = params;
        let installed = self.bundles.abilities(user);
        let who = Caller {
            bundle: Some(local.clone()),
            may_start_invisible: true,
        };
        let target: Target = match resolve(&want, &installed, &who) {
            Ok(t) if t.kind == AbilityType::Page => t,
            _ => {
                c.start_failed(a.txn, StartFailure::Failed);
                return;
            }
        };
        if let Some(d) = installed.iter().find(|d| d.element == target.element) {
            self.with(|i| {
                i.entries
                    .insert(target.element.clone(), d.src_entry.clone())
            });
        }
        let (tx, rx) = oneshot::channel();
        self.with(|i| {
            let r = i.next_request;
            i.next_request += 1;
            i.waiting.insert(r, tx);
            i.core
                .start_pending(r, target, want, LaunchReason::Continuation, Instant::now());
            self.perform(i);
        });
        self.wake.notify_one();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let r = rx.await;
            let Some(me) = me.upgrade() else { return };
            match r {
                Ok(Ok(s)) => {
                    me.with(|i| i.cont.instances.insert(a.txn.clone(), s.record));
                    c.started(a.txn);
                }
                Ok(Err(e)) => {
                    tracing::warn!(tag = "DistributedSched", "continuation start failed: {e}");
                    c.start_failed(a.txn, StartFailure::Failed);
                }
                Err(_) => c.start_failed(a.txn, StartFailure::Failed),
            }
        });
    }
}

struct PendingStart {
    txn: Txn,
    free_install: bool,
    bundle: String,
    continue_bundle_names: Vec<String>,
    app_id: String,
    ability: String,
    want_param: Vec<u8>,
}

impl ContinuationHost for AmsHost {
    fn mission(&self, mission: &MissionRef) -> Option<MissionInfo> {
        let ams = self.0.upgrade()?;
        let records = ams.with(|i| i.core.records());
        let r = records.into_iter().find(|r| {
            r.kind == AbilityType::Page
                && r.mission.is_some()
                && match mission {
                    MissionRef::Id(m) => r.mission == Some(*m),
                    MissionRef::Bundle(b) => r.element.bundle_name == *b,
                }
        })?;
        let decl = ams
            .bundles
            .abilities(ams.cfg.user)
            .into_iter()
            .find(|d| d.element == r.element);
        let continuable = decl.as_ref().is_some_and(|d| d.continuable);
        Some(MissionInfo {
            mission_id: r.mission?,
            app_id: ams
                .bundles
                .app_id(&r.element.bundle_name, ams.cfg.user)
                .unwrap_or_default(),
            bundle: r.element.bundle_name,
            ability: r.element.ability_name,
            continuable,
            continue_bundle_names: decl.map(|d| d.continue_bundle_names).unwrap_or_default(),
        })
    }

    fn source_action(&self, action: SourceAction) {
        let Some(ams) = self.0.upgrade() else { return };
        let now = Instant::now();
        match action {
            SourceAction::Freeze { mission_id } => {
                ams.drive(|core| core.freeze(mission_id));
            }
            SourceAction::CallOnContinue { seq, mission_id } => {
                let record = ams.with(|i| {
                    let r = i.core.call_on_continue(mission_id, now);
                    if let Some(r) = r {
                        i.cont.on_continue.insert(r, seq);
                    }
                    ams.perform(i);
                    r
                });
                ams.wake.notify_one();
                if record.is_none()
                    && let Some(c) = ams.continuation()
                {
                    // The mission went meanwhile: nothing to move.
                    c.on_continue(seq, OnContinueResult::Reject, Vec::new(), true);
                }
            }
            SourceAction::Resume { mission_id } => ams.drive(|core| core.resume(mission_id, now)),
            SourceAction::EndMission { mission_id } => {
                ams.with(|i| i.cont.inactive.remove(&mission_id));
                ams.drive(|core| core.end_mission(mission_id, now))
            }
        }
    }

    fn target_action(&self, action: TargetAction) {
        let Some(ams) = self.0.upgrade() else { return };
        let now = Instant::now();
        match action {
            TargetAction::StartPending {
                txn,
                bundle,
                continue_bundle_names,
                app_id,
                ability,
                want_param,
                free_install,
                ..
            } => ams.start_pending(PendingStart {
                txn,
                free_install,
                bundle,
                continue_bundle_names,
                app_id,
                ability,
                want_param,
            }),
            TargetAction::MakeForeground { txn } => {
                if let Some(r) = ams.with(|i| i.cont.instances.get(&txn).copied()) {
                    ams.drive(|core| core.show(r, now));
                }
            }
            TargetAction::Discard { txn } => {
                if let Some(r) = ams.with(|i| i.cont.instances.remove(&txn)) {
                    ams.drive(|core| {
                        let _ = core.terminate(r, now);
                    });
                }
            }
            TargetAction::DiscardPendingExcept { keep } => {
                let gone: Vec<RecordId> = ams.with(|i| {
                    let gone: Vec<Txn> = i
                        .cont
                        .instances
                        .keys()
                        .filter(|t| !keep.contains(t))
                        .cloned()
                        .collect();
                    gone.iter()
                        .filter_map(|t| i.cont.instances.remove(t))
                        .collect()
                });
                ams.drive(|core| {
                    for r in gone {
                        let _ = core.terminate(r, now);
                    }
                });
            }
        }
    }
}
