//! [`AbilityService`] as system ability 180.

use super::AbilityService;
use crate::api::{self, AttachArgs, ConnectArgs, RecordDump, StartArgs, StepDone};
use crate::error::AbilityError;
use crate::manager::AbilityType;
use crate::want::Element;
use bytes::Bytes;
use oxh_ipc::{ConnHandle, RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};
use std::time::Instant;

const METHODS: &[Method] = &[
    Method::open(api::START_ABILITY, "StartAbility"),
    Method::open(api::STOP_SERVICE, "StopServiceAbility"),
    Method::with_permission(api::FORCE_STOP, "KillProcess", api::PERMISSION_KILL),
    Method::open(api::TERMINATE_SELF, "TerminateAbility"),
    Method::with_permission(
        api::DUMP_MISSIONS,
        "DumpMissions",
        api::PERMISSION_RUNNING_INFO,
    ),
    Method::open(api::CONNECT, "ConnectAbility"),
    Method::open(api::ATTACH, "AttachApplication"),
    Method::open(api::STEP_DONE, "AbilityTransitionDone"),
    Method::open(api::CONNECTION_CLOSED, "ConnectionClosed"),
    Method::open(api::SET_CONTINUE_STATE, "SetMissionContinueState"),
];

impl AbilityService {
    fn dumps(&self) -> Vec<RecordDump> {
        self.with(|i| {
            i.core
                .records()
                .into_iter()
                .map(|r| RecordDump {
                    record: r.id,
                    mission: r.mission,
                    element: r.element,
                    state: r.state.as_str().into(),
                    kind: match r.kind {
                        AbilityType::Page => "UIAbility".into(),
                        AbilityType::Service => "ServiceExtension".into(),
                    },
                    pid: r.pid,
                    connections: r.connections as u32,
                    continuing: r.frozen,
                })
                .collect()
        })
    }

    /// The host process of `record`, which must be the caller's.
    fn own_record(&self, caller: &oxh_ipc::Caller, record: u64) -> Result<u64, AbilityError> {
        let proc = self.host_proc(caller).ok_or_else(|| {
            AbilityError::ContextNotExist("the caller is not an app process".into())
        })?;
        match self.with(|i| i.core.proc_of_record(record)) {
            Some(p) if p == proc => Ok(proc),
            _ => Err(AbilityError::ContextNotExist(format!(
                "record {record} is not an ability of the caller"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl SystemAbility for AbilityService {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let caller = ctx.caller().clone();
        match code {
            api::START_ABILITY => {
                let a: StartArgs = decode(&data)?;
                Ok(encode(&self.start_ability(&caller, a.want, a.wait).await?))
            }
            api::STOP_SERVICE => {
                let e: Element = decode(&data)?;
                let own = self.bundles.bundle_of_uid(caller.uid).as_deref()
                    == Some(e.bundle_name.as_str());
                if !own
                    && !matches!(
                        caller.token_type,
                        oxh_ipc::TokenType::Shell | oxh_ipc::TokenType::Native
                    )
                {
                    return Err(AbilityError::PermissionDenied(format!(
                        "only {} itself or the shell may stop its services",
                        e.bundle_name
                    ))
                    .into());
                }
                self.drive(|core| core.stop_service(&e, Instant::now()))?;
                Ok(encode(&()))
            }
            api::FORCE_STOP => {
                let bundle: String = decode(&data)?;
                if self.bundles.uid(&bundle, self.cfg.user).is_none() {
                    return Err(
                        AbilityError::NoSuchAbility(format!("{bundle} is not installed")).into(),
                    );
                }
                self.drive(|core| core.force_stop(&bundle));
                Ok(encode(&()))
            }
            api::TERMINATE_SELF => {
                let record: u64 = decode(&data)?;
                self.own_record(&caller, record)?;
                self.drive(|core| core.terminate(record, Instant::now()))?;
                Ok(encode(&()))
            }
            api::DUMP_MISSIONS => Ok(encode(&self.dumps())),
            api::CONNECT => {
                let a: ConnectArgs = decode(&data)?;
                let sock = ctx.conn.take_fd().ok_or_else(|| {
                    RemoteError::from(AbilityError::InvalidParam(
                        "ConnectAbility needs the client's end of a socketpair".into(),
                    ))
                })?;
                Ok(encode(&self.connect(&caller, a.want, sock).await?))
            }
            api::CONNECTION_CLOSED => {
                let conn: u64 = decode(&data)?;
                self.connection_closed(&caller, conn)?;
                Ok(encode(&()))
            }
            api::ATTACH => {
                let a: AttachArgs = decode(&data)?;
                let control = ctx
                    .conn
                    .take_fd()
                    .filter(|fd| {
                        oxh_kal::socket_kind(std::os::fd::AsFd::as_fd(fd)).ok()
                            == Some((libc::AF_UNIX, libc::SOCK_SEQPACKET))
                    })
                    .ok_or_else(|| {
                        RemoteError::from(AbilityError::InvalidParam(
                            "AttachApplication needs the host's control socket (SOCK_SEQPACKET)"
                                .into(),
                        ))
                    })?;
                // The host can call before the spawner's report of its pid has arrived: wait
                // for it (bounded by the load deadline, which kills a host that never attaches).
                let deadline = tokio::time::Instant::now() + self.cfg.timeouts.load;
                loop {
                    let known = self.with(|i| i.procs.get(&a.proc).map(|p| p.pid.is_some()));
                    if known != Some(false) {
                        break;
                    }
                    let spawned = self.spawned.notified();
                    tokio::pin!(spawned);
                    spawned.as_mut().enable();
                    if self.with(|i| i.procs.get(&a.proc).map(|p| p.pid.is_some())) != Some(false) {
                        break;
                    }
                    if tokio::time::timeout_at(deadline, spawned).await.is_err() {
                        break;
                    }
                }
                let ok = self.with(|i| match i.procs.get_mut(&a.proc) {
                    Some(p)
                        if p.pid == Some(caller.pid as u32)
                            && p.uid == caller.uid
                            && p.host.is_none() =>
                    {
                        p.host = Some((ctx.conn.clone(), a.sub));
                        p.control = Some(control);
                        p.token_id = caller.token_id;
                        true
                    }
                    _ => false,
                });
                if !ok {
                    return Err(AbilityError::PermissionDenied(format!(
                        "pid {} is not the app process {}",
                        caller.pid, a.proc
                    ))
                    .into());
                }
                self.drive(|core| core.attached(a.proc, Instant::now()));
                Ok(encode(&()))
            }
            api::STEP_DONE => {
                let d: StepDone = decode(&data)?;
                let proc = self.own_record(&caller, d.record)?;
                let now = Instant::now();
                match d.key {
                    Some(key) if d.step == "onAcceptWant" => {
                        self.drive(|core| core.accepted(proc, d.record, key, now))
                    }
                    _ => self.drive(|core| core.step_done(proc, d.record, &d.step, now)),
                }
                if d.step == "onContinue" {
                    self.continued(d.record, d.continued);
                }
                Ok(encode(&()))
            }
            api::SET_CONTINUE_STATE => {
                let a: api::ContinueStateArgs = decode(&data)?;
                self.own_record(&caller, a.record)?;
                self.set_continue_state(a.record, a.active);
                Ok(encode(&()))
            }
            _ => Err(RemoteError::invalid(format!(
                "AbilityManagerService has no method {code}"
            ))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        let mut out = String::from("AbilityManagerService (SA 180)\n");
        for r in self.dumps() {
            out.push_str(&format!(
                "  Mission ID #{}  AbilityRecord ID #{}  {}  state #{}  pid #{}  {}  connections #{}\n",
                r.mission
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.record,
                r.element,
                r.state,
                r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                r.kind,
                r.connections
            ));
        }
        let procs: Vec<String> = self.with(|i| {
            i.procs
                .iter()
                .map(|(id, p)| {
                    format!(
                        "  AppProcess #{id}  {}  uid #{}  pid #{}  {}\n",
                        p.bundle,
                        p.uid,
                        p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        if p.host.is_some() {
                            "attached"
                        } else {
                            "starting"
                        }
                    )
                })
                .collect()
        });
        out.extend(procs);
        out
    }

    /// A host that goes away is noticed when its process exits (the spawner reports it).
    fn on_client_died(&self, conn: &ConnHandle) {
        self.with(|i| {
            for p in i.procs.values_mut() {
                if p.host.as_ref().is_some_and(|(c, _)| c.id() == conn.id()) {
                    p.host = None;
                }
            }
        });
    }
}
