//! The distributed scheduler (SA 1401, dmsfwk's DistributedSchedService) over the ability
//! manager: remote start and mission listing (see [`crate::dms_api`]).
//!
//! Every call to another device goes out as a remote SA call on behalf of the original
//! caller ([`Peers::call`]: samgr's CALL_REMOTE path), so the device that runs the ability
//! judges the caller's synced token: DISTRIBUTED_DATASYNC there, and the method's own
//! permission. A remote caller reaches exported abilities only.
//!
//! A service connection to another device ([`DmsService::connect_remote`]) is such a call
//! that carries the client's socket end ([`Peers::connect`]): the target connects the service
//! for the remote client ([`dms_api::CONNECT_FROM_REMOTE`]) and the daemons relay the bytes.

use super::AbilityService;
use crate::api::{ConnectReply, Peer};
use crate::continuation::{ContinueError, MissionRef};
use crate::dms_api::{
    self, ConnectFromRemoteArgs, ContinueArgs, MissionInfo, StartArgs, StartReply,
};
use crate::error::{AbilityError, code};
use crate::manager::AbilityType;
use crate::want::Want;
use bytes::Bytes;
use oxh_ipc::{Caller, RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;

/// Resolves once a relayed connection is over, with why.
pub type RelayEnded = Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// Why a call to another device's scheduler got no answer from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The device is not online, or not trusted.
    #[error("device {0} is not online (or not trusted)")]
    Offline(String),
    /// The other device (or the path to it) answered this error.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// What the scheduler needs of the soft bus (wired in by the daemon, so this crate does not
/// depend on it).
#[async_trait::async_trait]
pub trait Peers: Send + Sync + 'static {
    /// This device's networkId.
    fn local_network_id(&self) -> String;
    /// The udid of the online, trusted device `network_id` (continuation's device ids).
    fn udid_of(&self, network_id: &str) -> Option<String>;
    /// The networkId of the online, trusted device `udid`.
    fn network_id_of(&self, udid: &str) -> Option<String>;
    /// The daemon itself as a caller (its native token), for the calls the scheduler makes
    /// on its own behalf, such as fetching a continuation's package.
    fn own_caller(&self) -> Caller;
    /// Calls method `code` of the scheduler on device `network_id` for `caller`, whose token
    /// the device checks (dbinder's remote SA call).
    async fn call(
        &self,
        caller: &Caller,
        network_id: &str,
        code: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, PeerError>;
    /// [`Peers::call`] of a method that takes a stream socket: `sock` (a local Unix stream
    /// socket) is relayed to the end the peer gives its method, once the method answers,
    /// until either end closes or the peer goes OFFLINE. The answer, and the relay's end.
    async fn connect(
        &self,
        caller: &Caller,
        network_id: &str,
        code: u32,
        data: Vec<u8>,
        sock: OwnedFd,
    ) -> Result<(Vec<u8>, RelayEnded), PeerError>;
}

const METHODS: &[Method] = &[
    Method::with_permission(
        dms_api::START_REMOTE_ABILITY,
        "StartRemoteAbility",
        dms_api::PERMISSION_DATASYNC,
    ),
    Method::with_permission(
        dms_api::START_FROM_REMOTE,
        "StartAbilityFromRemote",
        dms_api::PERMISSION_DATASYNC,
    ),
    Method::with_permission(
        dms_api::GET_REMOTE_MISSIONS,
        "GetMissionInfos",
        dms_api::PERMISSION_RUNNING_INFO,
    ),
    Method::with_permission(
        dms_api::GET_LOCAL_MISSIONS,
        "GetLocalMissionInfos",
        dms_api::PERMISSION_RUNNING_INFO,
    ),
    Method::with_permission(
        dms_api::CONTINUE_MISSION,
        "ContinueMission",
        dms_api::PERMISSION_DATASYNC,
    ),
    Method::with_permission(
        dms_api::CONNECT_FROM_REMOTE,
        "ConnectAbilityFromRemote",
        dms_api::PERMISSION_DATASYNC,
    ),
    Method::with_permission(
        dms_api::REGISTER_MISSION_LISTENER,
        "RegisterMissionListener",
        dms_api::PERMISSION_RUNNING_INFO,
    ),
    Method::with_permission(
        dms_api::FETCH_BUNDLE_FROM_REMOTE,
        "FetchBundleFromRemote",
        dms_api::PERMISSION_DATASYNC,
    ),
];

/// The distributed scheduler SA.
pub struct DmsService {
    pub(super) ams: Arc<AbilityService>,
    pub(super) peers: Arc<dyn Peers>,
    /// A continuation's package is being sent (one at a time).
    pub(super) serving: Arc<std::sync::atomic::AtomicBool>,
}

impl DmsService {
    /// The scheduler over `ams`; from now on the ability manager sends it the Wants that
    /// name another device.
    pub fn new(ams: Arc<AbilityService>, peers: Arc<dyn Peers>) -> Arc<Self> {
        let me = Arc::new(DmsService {
            ams,
            peers,
            serving: Default::default(),
        });
        let _ = me.ams.dms.set(Arc::downgrade(&me));
        me
    }

    /// The flag [`DmsService::serving`], for the task that sends a package.
    pub(super) fn serving_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.serving.clone()
    }

    /// An app must hold MANAGE_MISSIONS for distributedMissionManager's system APIs (to
    /// `what`); the shell and native callers need only the method's permission.
    fn system_api(&self, caller: &Caller, what: &str) -> Result<(), AbilityError> {
        if caller.token_type == oxh_ipc::TokenType::Hap
            && !self
                .ams
                .perms
                .verify(caller, dms_api::PERMISSION_MANAGE_MISSIONS)
        {
            return Err(AbilityError::PermissionDenied(format!(
                "an app needs {} to {what}",
                dms_api::PERMISSION_MANAGE_MISSIONS
            )));
        }
        Ok(())
    }

    /// Whether `network_id` is this device.
    pub fn is_local(&self, network_id: &str) -> bool {
        network_id == self.peers.local_network_id()
    }

    /// Starts `want` on the device `want.device_id` names, for `caller`.
    pub async fn start_remote(
        &self,
        caller: &Caller,
        want: Want,
        wait: bool,
    ) -> Result<StartReply, AbilityError> {
        if !self.ams.perms.verify(caller, dms_api::PERMISSION_DATASYNC) {
            return Err(AbilityError::PermissionDenied(format!(
                "{} is needed to start abilities on other devices",
                dms_api::PERMISSION_DATASYNC
            )));
        }
        let device = want.device_id.clone();
        let args = encode(&StartArgs { want, wait });
        let reply = self
            .peers
            .call(caller, &device, dms_api::START_FROM_REMOTE, args)
            .await
            .map_err(|e| match e {
                PeerError::Offline(d) => AbilityError::Internal(format!(
                    "cannot start on device {d}: it is not online (or not trusted)"
                )),
                PeerError::Remote(r) => r.into(),
            })?;
        decode(&reply).map_err(|e| {
            AbilityError::Internal(format!("device {device} answered a bad StartReply: {e}"))
        })
    }

    /// Connects `caller` to the service `want` names on the device `want.device_id` names
    /// (another one): the target connects it for the caller, judged there on the caller's
    /// synced token, and `sock` (the caller's end) is relayed to it. The connection's id
    /// here; its end is the client's ConnectionLost.
    pub async fn connect_remote(
        &self,
        caller: &Caller,
        want: Want,
        sock: OwnedFd,
    ) -> Result<ConnectReply, AbilityError> {
        if !self.ams.perms.verify(caller, dms_api::PERMISSION_DATASYNC) {
            return Err(AbilityError::PermissionDenied(format!(
                "{} is needed to connect to services on other devices",
                dms_api::PERMISSION_DATASYNC
            )));
        }
        let conn = self.ams.reserve_remote_conn(caller)?;
        let device = want.device_id.clone();
        let args = encode(&ConnectFromRemoteArgs {
            want,
            client_bundle: self
                .ams
                .bundles
                .bundle_of_uid(caller.uid)
                .unwrap_or_default(),
        });
        let r = self
            .peers
            .connect(caller, &device, dms_api::CONNECT_FROM_REMOTE, args, sock)
            .await;
        let (reply, ended) = match r {
            Ok(r) => r,
            Err(e) => {
                self.ams.remote_conn_ended(conn, "not connected");
                tracing::warn!(
                    tag = "DistributedSched",
                    public_caller = caller.process_name.as_str(),
                    "connect to a service on device {device} failed: {e}"
                );
                return Err(match e {
                    PeerError::Offline(d) => AbilityError::Internal(format!(
                        "cannot connect to a service on device {d}: it is not online (or not trusted)"
                    )),
                    PeerError::Remote(r) => r.into(),
                });
            }
        };
        let ams = self.ams.clone();
        tokio::spawn(async move {
            let why = ended.await;
            ams.remote_conn_ended(conn, &why);
        });
        // A bad answer: the relay runs until the client, told of the failure, drops its end.
        let rep: ConnectReply = decode(&reply).map_err(|e| {
            AbilityError::Internal(format!("device {device} answered a bad ConnectReply: {e}"))
        })?;
        tracing::info!(
            tag = "DistributedSched",
            public_caller = caller.process_name.as_str(),
            public_ability = %rep.element,
            "connected to a service on another device"
        );
        Ok(ConnectReply {
            element: rep.element,
            conn,
            service: Peer {
                device_id: device,
                ..rep.service
            },
        })
    }

    /// The missions of device `network_id` (this one's, if it names this device).
    pub async fn remote_missions(
        &self,
        caller: &Caller,
        network_id: &str,
    ) -> Result<Vec<MissionInfo>, RemoteError> {
        if self.is_local(network_id) {
            return Ok(self.local_missions());
        }
        let reply = self
            .peers
            .call(caller, network_id, dms_api::GET_LOCAL_MISSIONS, encode(&()))
            .await
            .map_err(|e| match e {
                PeerError::Offline(d) => RemoteError::new(
                    crate::continuation::code::CONTINUE_ABNORMAL,
                    format!(
                        "cannot list the missions of device {d}: it is not online (or not trusted)"
                    ),
                ),
                PeerError::Remote(r) => r,
            })?;
        decode(&reply)
    }

    /// Moves mission `a.mission_id` to device `a.dst_device_id` (`continueMission`, `aa
    /// continue`); answers once it runs there, or why not (it then runs here still).
    pub async fn continue_mission(&self, a: ContinueArgs) -> Result<(), ContinueError> {
        let dst = a.dst_device_id;
        if dst.is_empty() || self.is_local(&dst) {
            return Err(ContinueError::NotSourceOrTarget(format!(
                "device {dst:?} is this device: name another one"
            )));
        }
        let Some(driver) = self.ams.continuation() else {
            return Err(ContinueError::Abnormal(
                "this device's continuation service is not running".into(),
            ));
        };
        let Some(udid) = self.peers.udid_of(&dst) else {
            return Err(ContinueError::ConnectFailed(format!(
                "device {dst} is not online (or not trusted)"
            )));
        };
        if self.ams.continue_inactive(a.mission_id) {
            return Err(ContinueError::Abnormal(format!(
                "mission {} set its continue state INACTIVE (setMissionContinueState): it does not move now",
                a.mission_id
            )));
        }
        driver
            .continue_mission(&udid, MissionRef::Id(a.mission_id), a.free_install)
            .await
    }

    /// This device's missions (UIAbilities with a mission), with module.json's `continuable`.
    pub fn local_missions(&self) -> Vec<MissionInfo> {
        let installed = self.ams.bundles.abilities(self.ams.cfg.user);
        let records = self.ams.with(|i| i.core.records());
        records
            .into_iter()
            .filter(|r| r.kind == AbilityType::Page)
            .filter_map(|r| {
                let mission_id = r.mission?;
                let continuable = installed
                    .iter()
                    .any(|d| d.element == r.element && d.continuable);
                Some(MissionInfo {
                    mission_id,
                    element: r.element,
                    state: r.state.as_str().into(),
                    continuable,
                })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl SystemAbility for DmsService {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, c: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let caller = ctx.caller().clone();
        match c {
            dms_api::START_REMOTE_ABILITY => {
                let a: StartArgs = decode(&data)?;
                if a.want.device_id.is_empty() || self.is_local(&a.want.device_id) {
                    return Err(AbilityError::InvalidParam(
                        "StartRemoteAbility needs the deviceId of another device".into(),
                    )
                    .into());
                }
                Ok(encode(&self.start_remote(&caller, a.want, a.wait).await?))
            }
            dms_api::START_FROM_REMOTE => {
                let a: StartArgs = decode(&data)?;
                if !a.want.device_id.is_empty() && !self.is_local(&a.want.device_id) {
                    return Err(AbilityError::InvalidParam(format!(
                        "the Want names device {}, not this one",
                        a.want.device_id
                    ))
                    .into());
                }
                tracing::info!(
                    tag = "DistributedSched",
                    public_caller = caller.process_name.as_str(),
                    public_bundle = a.want.bundle_name.as_str(),
                    "start from a remote caller"
                );
                Ok(encode(
                    &self.ams.start_here(&caller, a.want, a.wait, true).await?,
                ))
            }
            dms_api::GET_REMOTE_MISSIONS => {
                let nid: String = decode(&data)?;
                if nid.is_empty() {
                    return Err(RemoteError::new(
                        code::INVALID_PARAM,
                        "GetMissionInfos needs a networkId",
                    ));
                }
                Ok(encode(&self.remote_missions(&caller, &nid).await?))
            }
            dms_api::GET_LOCAL_MISSIONS => Ok(encode(&self.local_missions())),
            dms_api::CONNECT_FROM_REMOTE => {
                // Only a peer's scheduler, through dbinder: the device is the bus
                // connection's, and the socket the relay's end, never a local process's.
                let Some(device) = ctx.conn.remote_device().map(str::to_string) else {
                    return Err(AbilityError::PermissionDenied(
                        "ConnectAbilityFromRemote is for other devices' schedulers (a remote SA call)"
                            .into(),
                    )
                    .into());
                };
                let a: ConnectFromRemoteArgs = decode(&data)?;
                if !a.want.device_id.is_empty() && !self.is_local(&a.want.device_id) {
                    return Err(AbilityError::InvalidParam(format!(
                        "the Want names device {}, not this one",
                        a.want.device_id
                    ))
                    .into());
                }
                let sock = ctx
                    .conn
                    .take_fd()
                    .filter(|fd| oxh_kal::is_unix_stream(fd.as_fd()))
                    .ok_or_else(|| {
                        RemoteError::from(AbilityError::InvalidParam(
                            "ConnectAbilityFromRemote needs the stream the bus relays".into(),
                        ))
                    })?;
                tracing::info!(
                    tag = "DistributedSched",
                    public_caller = caller.process_name.as_str(),
                    public_bundle = a.want.bundle_name.as_str(),
                    "connect from a remote caller"
                );
                Ok(encode(
                    &self
                        .ams
                        .connect_from_remote(&caller, &device, a.want, a.client_bundle, sock)
                        .await?,
                ))
            }
            dms_api::FETCH_BUNDLE_FROM_REMOTE => {
                // Only a peer's scheduler: the device is the bus connection's.
                let Some(device) = ctx.conn.remote_device().map(str::to_string) else {
                    return Err(AbilityError::PermissionDenied(
                        "FetchBundleFromRemote is for other devices' schedulers (a remote SA call)"
                            .into(),
                    )
                    .into());
                };
                let sock = ctx
                    .conn
                    .take_fd()
                    .filter(|fd| oxh_kal::is_unix_stream(fd.as_fd()))
                    .ok_or_else(|| {
                        RemoteError::from(AbilityError::InvalidParam(
                            "FetchBundleFromRemote needs the stream the bus relays".into(),
                        ))
                    })?;
                self.serve_bundle(&device, &data, sock)
            }
            dms_api::REGISTER_MISSION_LISTENER => {
                self.system_api(&caller, "follow another device's missions")?;
                let a: dms_api::MissionListenerArgs = decode(&data)?;
                let sync =
                    self.ams.mission_sync.get().cloned().ok_or_else(|| {
                        AbilityError::Internal("mission sync is not running".into())
                    })?;
                let udid = self.peers.udid_of(&a.network_id).ok_or_else(|| {
                    RemoteError::new(
                        crate::continuation::code::CONTINUE_ABNORMAL,
                        format!("device {} is not online (or not trusted)", a.network_id),
                    )
                })?;
                sync.register(ctx.conn.clone(), a.sub, udid, a.network_id)?;
                Ok(encode(&()))
            }
            dms_api::CONTINUE_MISSION => {
                let a: ContinueArgs = decode(&data)?;
                self.system_api(&caller, "move missions (continueMission is a system API)")?;
                tracing::info!(
                    tag = "DistributedSched",
                    public_caller = caller.process_name.as_str(),
                    public_mission = a.mission_id,
                    "continue mission"
                );
                self.continue_mission(a).await?;
                Ok(encode(&()))
            }
            _ => Err(RemoteError::invalid(format!(
                "DistributedSchedService has no method {c}"
            ))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        let mut out = format!(
            "DistributedSchedService (SA 1401)\n  local networkId: {}\n  missions:\n",
            self.peers.local_network_id()
        );
        let busy = self.ams.continuation().is_some_and(|c| c.busy());
        out.push_str(&format!(
            "  continuation from this device under way: {}\n",
            if busy { "yes" } else { "no" }
        ));
        for m in self.local_missions() {
            out.push_str(&format!(
                "    Mission ID #{}  {}  state #{}  continuable #{}\n",
                m.mission_id, m.element, m.state, m.continuable
            ));
        }
        out
    }
}
