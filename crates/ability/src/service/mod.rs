//! The ability manager service: the pure [`Manager`] driven by IPC calls, the app spawner's
//! reports and a timer, its actions carried out on the spawner's socket and the app hosts'
//! subscriptions.

pub mod continuation;
mod continue_host;
pub mod dms;
pub mod mission_sync;
mod on_demand;
mod sa;

use crate::api::{self, ConnectReply, HostControl, HostEvent, Peer, StartReply, StartedInfo};
use crate::error::AbilityError;
use crate::layout::{self, Host};
use crate::manager::{
    Action, ConnId, MAX_CONNECTIONS_PER_CLIENT, MAX_REMOTE_CONNECTIONS_PER_DEVICE, Manager, ProcId,
    RecordId, RequestId, Started, Target, Timeouts,
};
use crate::resolve::{AbilityDecl, Caller, resolve};
use crate::spawn::{FromSpawner, MAX_FRAME, SpawnRequest, ToSpawner};
use crate::want::{Element, Want};
use oxh_ipc::ConnHandle;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};

/// What the ability manager asks of the bundle manager (wired in by the daemon, so this crate
/// does not depend on the bundle service).
pub trait Bundles: Send + Sync + 'static {
    /// Every installed ability of `user`'s bundles.
    fn abilities(&self, user: i32) -> Vec<AbilityDecl>;
    /// The uid of `bundle` for `user`, if it is installed.
    fn uid(&self, bundle: &str, user: i32) -> Option<u32>;
    /// The bundle a uid belongs to (to know when a caller starts its own abilities).
    fn bundle_of_uid(&self, uid: u32) -> Option<String>;
    /// The appId (signer) of `bundle` for `user`, if it is installed (continuation's check
    /// that the target runs the same app). None: unknown, so no continuation lands here.
    fn app_id(&self, _bundle: &str, _user: i32) -> Option<String> {
        None
    }
    /// The signed package files `bundle` is installed from here, in install order (what a
    /// continuation offers a target that lacks the app). Empty: none to offer.
    fn package_files(&self, _bundle: &str, _user: i32) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
    /// Whether this device's policy lets a continuing app be installed on demand.
    fn may_install_on_demand(&self) -> bool {
        false
    }
    /// Installs `bundle` for `user` from the package files `files` (fetched from the source),
    /// through the bundle manager with all its checks; refuses packages of another bundle.
    /// The error is the installer's code and message.
    fn install_on_demand(
        &self,
        bundle: &str,
        _files: &[std::path::PathBuf],
        _user: i32,
    ) -> Result<(), oxh_ipc::RemoteError> {
        Err(oxh_ipc::RemoteError::new(
            crate::error::code::INTERNAL,
            format!("no bundle manager here to install {bundle}"),
        ))
    }
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the device keeps things (for sandboxes).
    pub host: Host,
    /// The user whose apps run (OpenHarmony's first user is 100).
    pub user: i32,
    /// Lifecycle deadlines.
    pub timeouts: Timeouts,
}

/// An app process the service asked for.
#[derive(Debug)]
struct Proc {
    bundle: String,
    uid: u32,
    pid: Option<u32>,
    /// Its host's connection and subscription, once attached.
    host: Option<(ConnHandle, u64)>,
    /// Its host's control socket (SOCK_SEQPACKET), for handing it connections.
    control: Option<OwnedFd>,
    /// Its host's access token.
    token_id: u32,
    /// The manager killed it (a stop, a missed deadline): its signal is not a fault.
    killed: bool,
}

/// A connection a local client made to a service on another device: the daemons relay it
/// (see [`crate::dms_api`]); the client hears when the relay ends.
#[derive(Debug)]
struct RemoteConn {
    /// The client's uid (its connections count against [`MAX_CONNECTIONS_PER_CLIENT`]).
    client_uid: u32,
    /// The client's process, when it is an app.
    client_proc: Option<ProcId>,
}

/// Who holds connections, for their limits.
#[derive(Debug, Clone, Copy)]
enum Holder<'a> {
    /// A local client uid: [`MAX_CONNECTIONS_PER_CLIENT`], here and to other devices.
    Uid(u32),
    /// The clients of another device, by networkId: [`MAX_REMOTE_CONNECTIONS_PER_DEVICE`].
    Device(&'a str),
}

impl Inner {
    /// Refuses one more connection for `who` past its limit (16000007).
    fn admit(&self, who: Holder<'_>) -> Result<(), AbilityError> {
        match who {
            Holder::Uid(uid) => {
                let held = self
                    .conns
                    .values()
                    .filter(|c| c.client.device_id.is_empty() && c.client.uid == uid)
                    .count()
                    + self
                        .remote_conns
                        .values()
                        .filter(|c| c.client_uid == uid)
                        .count();
                if held >= MAX_CONNECTIONS_PER_CLIENT {
                    return Err(AbilityError::Busy(format!(
                        "uid {uid} holds {MAX_CONNECTIONS_PER_CLIENT} connections (the limit)"
                    )));
                }
            }
            Holder::Device(device) => {
                let held = self
                    .conns
                    .values()
                    .filter(|c| c.client.device_id == device)
                    .count();
                if held >= MAX_REMOTE_CONNECTIONS_PER_DEVICE {
                    return Err(AbilityError::Busy(format!(
                        "device {device} holds {MAX_REMOTE_CONNECTIONS_PER_DEVICE} connections here (the limit)"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A service connection the manager knows of.
#[derive(Debug)]
struct Conn {
    /// Who connected.
    client: Peer,
    /// The client's process, when it is an app (it hears of a lost connection).
    client_proc: Option<ProcId>,
    /// The socket end for the service, until it is handed over.
    fd: Option<OwnedFd>,
    /// The service's process, once connected.
    service_proc: Option<ProcId>,
}

struct Inner {
    core: Manager,
    next_request: RequestId,
    waiting: HashMap<RequestId, oneshot::Sender<Result<Started, AbilityError>>>,
    connecting: HashMap<RequestId, oneshot::Sender<Result<ConnectReply, AbilityError>>>,
    conns: HashMap<ConnId, Conn>,
    /// Connections of local clients to services on other devices.
    remote_conns: HashMap<ConnId, RemoteConn>,
    next_conn: ConnId,
    procs: HashMap<ProcId, Proc>,
    /// srcEntry of the abilities that have run, for the hosts' Create steps.
    entries: HashMap<Element, String>,
    /// Continuations under way.
    cont: continue_host::ContinueState,
}

/// The ability manager SA.
pub struct AbilityService {
    cfg: Config,
    bundles: Arc<dyn Bundles>,
    perms: Arc<dyn oxh_samgr::PermissionChecker>,
    inner: Mutex<Inner>,
    /// Wakes the timer when a deadline may have moved.
    wake: Notify,
    /// Wakes hosts waiting in ATTACH for their pid to be known.
    spawned: Notify,
    spawner: mpsc::UnboundedSender<ToSpawner>,
    /// The distributed scheduler (SA 1401), for Wants that name another device.
    dms: OnceLock<Weak<dms::DmsService>>,
    /// The continuation driver (SA 1401's), once the daemon opened it.
    continuation: OnceLock<Arc<continuation::Continuation>>,
    /// Notified after every change the core made (mission sync compares its list then).
    missions_changed: Notify,
    /// Mission sync (SA 1401's), once the daemon started it.
    mission_sync: OnceLock<Arc<mission_sync::MissionSync>>,
}

impl AbilityService {
    /// Starts the service over a connected spawner socket (see [`crate::spawn::serve`]).
    pub fn start(
        cfg: Config,
        bundles: Arc<dyn Bundles>,
        perms: Arc<dyn oxh_samgr::PermissionChecker>,
        spawner: std::os::unix::net::UnixStream,
    ) -> std::io::Result<Arc<Self>> {
        spawner.set_nonblocking(true)?;
        let sock = tokio::net::UnixStream::from_std(spawner)?;
        let (mut rd, mut wr) = sock.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<ToSpawner>();
        let me = Arc::new(AbilityService {
            inner: Mutex::new(Inner {
                core: Manager::new(cfg.timeouts),
                next_request: 1,
                waiting: HashMap::new(),
                connecting: HashMap::new(),
                conns: HashMap::new(),
                remote_conns: HashMap::new(),
                next_conn: 1,
                procs: HashMap::new(),
                entries: HashMap::new(),
                cont: Default::default(),
            }),
            cfg,
            bundles,
            perms,
            wake: Notify::new(),
            spawned: Notify::new(),
            spawner: tx,
            dms: OnceLock::new(),
            continuation: OnceLock::new(),
            missions_changed: Notify::new(),
            mission_sync: OnceLock::new(),
        });
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let Ok(body) = postcard::to_allocvec(&m) else {
                    continue;
                };
                let mut frame = (body.len() as u32).to_le_bytes().to_vec();
                frame.extend_from_slice(&body);
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 4];
                if rd.read_exact(&mut len).await.is_err() {
                    break;
                }
                let len = u32::from_le_bytes(len) as usize;
                if len > MAX_FRAME {
                    break;
                }
                let mut body = vec![0u8; len];
                if rd.read_exact(&mut body).await.is_err() {
                    break;
                }
                let Ok(msg) = postcard::from_bytes::<FromSpawner>(&body) else {
                    break;
                };
                let Some(me) = weak.upgrade() else { break };
                me.on_spawner(msg);
            }
            tracing::error!(
                tag = "AbilityManager",
                "the app spawner is gone; apps cannot start"
            );
        });
        // The timer: the service lives as long as the daemon, and so does this task.
        let timer = me.clone();
        tokio::spawn(async move {
            loop {
                let deadline = timer.with(|i| i.core.deadline());
                let notified = timer.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let sleep = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = notified => {}
                    _ = sleep => timer.drive(|core| core.on_timeout(Instant::now())),
                }
            }
        });
        Ok(me)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Runs `f` on the core, then carries out what it asks and re-arms the timer.
    fn drive<T>(&self, f: impl FnOnce(&mut Manager) -> T) -> T {
        let r = self.with(|i| {
            let r = f(&mut i.core);
            self.perform(i);
            r
        });
        self.wake.notify_one();
        r
    }

    fn perform(&self, i: &mut Inner) {
        self.missions_changed.notify_one();
        while let Some(a) = i.core.poll_action() {
            match a {
                Action::Spawn { proc, bundle } => self.spawn(i, proc, bundle),
                Action::Schedule {
                    proc,
                    record,
                    element,
                    cmd,
                } => {
                    let entry = i.entries.get(&element).cloned().unwrap_or_default();
                    tracing::info!(
                        tag = "AbilityManager",
                        public_ability = %element,
                        "schedule {}",
                        cmd.name()
                    );
                    let ev = HostEvent::Schedule {
                        record,
                        element,
                        entry,
                        step: cmd,
                    };
                    if let Some((conn, sub)) = i.procs.get(&proc).and_then(|p| p.host.as_ref()) {
                        // A host that does not take it misses its deadline and is killed.
                        let _ = conn.push_event(*sub, &oxh_ipc::encode(&ev));
                    }
                }
                Action::Kill { proc, reason, .. } => {
                    tracing::info!(
                        tag = "AbilityManager",
                        "killing app process {proc}: {reason}"
                    );
                    if let Some(p) = i.procs.get_mut(&proc) {
                        p.killed = true;
                    }
                    let _ = self.spawner.send(ToSpawner::Kill { proc });
                }
                Action::Reply { request, result } => {
                    if let Some(tx) = i.waiting.remove(&request) {
                        let _ = tx.send(result);
                    }
                }
                Action::Fault(f) => {
                    let abilities: Vec<String> =
                        f.abilities.iter().map(|e| e.to_string()).collect();
                    tracing::error!(
                        tag = "AppFault",
                        public_bundle = f.bundle.as_str(),
                        public_pid = f.pid,
                        public_signal = f.signal.unwrap_or(0),
                        public_status = f.status.unwrap_or(0),
                        "app process died: {} (abilities: {})",
                        match f.signal {
                            Some(s) => format!("signal {s}"),
                            None => format!("exit status {}", f.status.unwrap_or(0)),
                        },
                        abilities.join(", ")
                    );
                }
                Action::Connected {
                    request,
                    conn,
                    result,
                } => {
                    let result = result.and_then(|record| self.hand_over(i, conn, record));
                    if result.is_err() {
                        i.conns.remove(&conn);
                    }
                    if let Some(tx) = i.connecting.remove(&request) {
                        let _ = tx.send(result);
                    }
                }
                Action::ConnectionLost { conn } => {
                    let Some(c) = i.conns.remove(&conn) else {
                        continue;
                    };
                    let host = c
                        .client_proc
                        .and_then(|p| i.procs.get(&p))
                        .and_then(|p| p.host.as_ref());
                    if let Some((h, sub)) = host {
                        let _ = h.push_event(
                            *sub,
                            &oxh_ipc::encode(&HostEvent::ConnectionLost { conn }),
                        );
                    }
                }
            }
        }
    }

    /// Gives the service's host its end of connection `conn` (its `onConnect` is done), and
    /// says who the service is.
    fn hand_over(
        &self,
        i: &mut Inner,
        conn: ConnId,
        record: RecordId,
    ) -> Result<ConnectReply, AbilityError> {
        let lost = || AbilityError::Internal("the service's process is gone".into());
        let proc = i.core.proc_of_record(record).ok_or_else(lost)?;
        let element = i
            .core
            .records()
            .into_iter()
            .find(|r| r.id == record)
            .map(|r| r.element)
            .ok_or_else(lost)?;
        let p = i.procs.get(&proc).ok_or_else(lost)?;
        let c = i.conns.get_mut(&conn).ok_or_else(lost)?;
        let fd = c.fd.take().ok_or_else(lost)?;
        let msg = oxh_ipc::encode(&HostControl::Serve {
            record,
            conn,
            client: c.client.clone(),
        });
        let control = p.control.as_ref().ok_or_else(lost)?;
        // One packet, or none: a host that does not read its control socket loses the
        // connection rather than making the daemon queue for it.
        match oxh_kal::send_with_fd(control.as_fd(), &msg, fd.as_fd()) {
            Ok(n) if n == msg.len() => {}
            _ => {
                i.core.disconnect(conn, Instant::now());
                return Err(AbilityError::Internal(format!(
                    "{element} does not take connections"
                )));
            }
        }
        c.service_proc = Some(proc);
        Ok(ConnectReply {
            element,
            conn,
            service: Peer {
                pid: p.pid.map(|p| p as i32).unwrap_or(0),
                uid: p.uid,
                token_id: p.token_id,
                bundle: p.bundle.clone(),
                device_id: String::new(),
            },
        })
    }

    fn spawn(&self, i: &mut Inner, proc: ProcId, bundle: String) {
        let Some(uid) = self.bundles.uid(&bundle, self.cfg.user) else {
            i.core
                .spawn_failed(proc, &format!("{bundle} is not installed"));
            return;
        };
        let binds = layout::binds(&self.cfg.host, &bundle, self.cfg.user, |p| p.exists());
        let req = SpawnRequest {
            proc,
            name: bundle.clone(),
            uid,
            gid: uid,
            groups: vec![uid],
            binds,
            program: layout::HOST_PROGRAM.into(),
            args: Vec::new(),
            env: vec![
                (layout::IPC_SOCKET_ENV.into(), layout::IPC_SOCKET.into()),
                (layout::PROC_ENV.into(), proc.to_string()),
                ("HOME".into(), "/data/storage/el2/base".into()),
            ],
            cwd: "/data/storage/el2/base".into(),
        };
        i.procs.insert(
            proc,
            Proc {
                bundle,
                uid,
                pid: None,
                host: None,
                control: None,
                token_id: 0,
                killed: false,
            },
        );
        if self.spawner.send(ToSpawner::Spawn(req)).is_err() {
            i.procs.remove(&proc);
            i.core.spawn_failed(proc, "the app spawner is gone");
        }
    }

    fn on_spawner(&self, msg: FromSpawner) {
        match msg {
            FromSpawner::Spawned { proc, pid } => {
                self.with(|i| {
                    if let Some(p) = i.procs.get_mut(&proc) {
                        p.pid = Some(pid);
                    }
                });
                self.drive(|core| core.spawned(proc, pid));
                self.spawned.notify_waiters();
            }
            FromSpawner::Failed { proc, error } => {
                tracing::error!(
                    tag = "AbilityManager",
                    "app process {proc} did not start: {error}"
                );
                self.with(|i| i.procs.remove(&proc));
                self.drive(|core| core.spawn_failed(proc, &error));
                self.spawned.notify_waiters();
            }
            FromSpawner::Exited {
                proc,
                pid,
                signal,
                status,
            } => {
                let gone = self.with(|i| i.procs.remove(&proc));
                // A signal the manager did not send is a fault (a crash, the OOM killer, a
                // kill from outside): say so at ERROR with the pid, so that the app's own
                // lines can be found (`hilog -P`).
                if let (Some(sig), Some(p)) = (signal, gone.as_ref().filter(|p| !p.killed)) {
                    tracing::error!(
                        tag = "AbilityManager",
                        "app fault: {} pid={pid} died of signal {sig}",
                        p.bundle
                    );
                }
                self.drive(|core| core.exited(proc, signal, status));
                self.continuation_instances_died();
            }
        }
    }

    /// Starts what `want` names for `caller` (START_ABILITY). A Want whose `deviceId` names
    /// another device goes to the distributed scheduler, which starts it there.
    pub async fn start_ability(
        &self,
        caller: &oxh_ipc::Caller,
        want: Want,
        wait: bool,
    ) -> Result<StartReply, AbilityError> {
        if !want.device_id.is_empty() {
            let dms = self.dms()?;
            if !dms.is_local(&want.device_id) {
                return dms.start_remote(caller, want, wait).await;
            }
        }
        self.start_here(caller, want, wait, false).await
    }

    /// Starts what `want` names on this device. `from_remote`: for a caller on another
    /// device (its synced token), who reaches exported abilities only.
    async fn start_here(
        &self,
        caller: &oxh_ipc::Caller,
        want: Want,
        wait: bool,
        from_remote: bool,
    ) -> Result<StartReply, AbilityError> {
        let target = self.target(caller, &want, from_remote)?;
        let element = target.element.clone();
        let (tx, rx) = oneshot::channel();
        self.with(|i| {
            let r = i.next_request;
            i.next_request += 1;
            i.waiting.insert(r, tx);
            i.core.start(r, target, want, Instant::now());
            self.perform(i);
        });
        self.wake.notify_one();
        if !wait {
            return Ok(StartReply {
                element,
                started: None,
            });
        }
        let s = rx
            .await
            .map_err(|_| AbilityError::Internal("the ability manager stopped".into()))??;
        Ok(StartReply {
            element,
            started: Some(StartedInfo {
                record: s.record,
                mission: s.mission,
                cold: s.cold,
                elapsed_us: s.elapsed.as_micros() as u64,
            }),
        })
    }

    /// What `want` names, if `caller` may reach it (exported, or START_INVISIBLE_ABILITY).
    /// A caller on another device (`from_remote`) reaches exported abilities only, whatever
    /// its token holds, as dmsfwk's target-side check of the ability's visibility.
    fn target(
        &self,
        caller: &oxh_ipc::Caller,
        want: &Want,
        from_remote: bool,
    ) -> Result<Target, AbilityError> {
        // A process with no token (a user that is neither an app, the shell nor a system
        // process) starts nothing, as on OpenHarmony.
        if caller.token_type == oxh_ipc::TokenType::Invalid {
            return Err(AbilityError::PermissionDenied(format!(
                "uid {} has no access token",
                caller.uid
            )));
        }
        let installed = self.bundles.abilities(self.cfg.user);
        let who = if from_remote {
            Caller {
                bundle: None,
                may_start_invisible: false,
            }
        } else {
            Caller {
                bundle: self.bundles.bundle_of_uid(caller.uid),
                may_start_invisible: self.perms.verify(caller, api::PERMISSION_START_INVISIBLE),
            }
        };
        let target = resolve(want, &installed, &who)?;
        if let Some(d) = installed.iter().find(|d| d.element == target.element) {
            self.with(|i| {
                i.entries
                    .insert(target.element.clone(), d.src_entry.clone())
            });
        }
        Ok(target)
    }

    /// The distributed scheduler, for Wants that name another device.
    fn dms(&self) -> Result<Arc<dms::DmsService>, AbilityError> {
        self.dms.get().and_then(Weak::upgrade).ok_or_else(|| {
            AbilityError::Internal(
                "this device has no distributed scheduler: it cannot reach other devices".into(),
            )
        })
    }

    /// Connects `caller` to the service `want` names (CONNECT); `sock` is the caller's end
    /// of the socketpair it made, for the service. A Want whose `deviceId` names another
    /// device goes to the distributed scheduler, which relays `sock` to a connection there.
    pub async fn connect(
        &self,
        caller: &oxh_ipc::Caller,
        want: Want,
        sock: OwnedFd,
    ) -> Result<ConnectReply, AbilityError> {
        // The service will trust the socket's credentials: it must be a stream socket the
        // caller itself made, not some other descriptor it holds.
        let cred = oxh_kal::peer_cred(sock.as_fd()).ok();
        if !oxh_kal::is_unix_stream(sock.as_fd())
            || cred.map(|c| (c.pid, c.uid)) != Some((caller.pid, caller.uid))
        {
            return Err(AbilityError::InvalidParam(
                "a connection's descriptor must be an end of a Unix stream socketpair the caller made".into(),
            ));
        }
        if !want.device_id.is_empty() {
            let dms = self.dms()?;
            if !dms.is_local(&want.device_id) {
                return dms.connect_remote(caller, want, sock).await;
            }
        }
        let target = self.target(caller, &want, false)?;
        let client = Peer {
            pid: caller.pid,
            uid: caller.uid,
            token_id: caller.token_id,
            bundle: self.bundles.bundle_of_uid(caller.uid).unwrap_or_default(),
            device_id: String::new(),
        };
        let client_proc = self.host_proc(caller);
        self.connect_here(
            target,
            want,
            client,
            client_proc,
            sock,
            Holder::Uid(caller.uid),
        )
        .await
    }

    /// Connects a client on device `device` (a peer's scheduler's ConnectAbilityFromRemote,
    /// for `caller`, the synced token's local copy) to the exported service `want` names;
    /// `sock` is the end of the relay dbinder made.
    async fn connect_from_remote(
        &self,
        caller: &oxh_ipc::Caller,
        device: &str,
        want: Want,
        client_bundle: String,
        sock: OwnedFd,
    ) -> Result<ConnectReply, AbilityError> {
        let target = self.target(caller, &want, true)?;
        let client = Peer {
            pid: 0,
            uid: caller.uid,
            token_id: caller.token_id,
            bundle: client_bundle,
            device_id: device.to_string(),
        };
        self.connect_here(target, want, client, None, sock, Holder::Device(device))
            .await
    }

    /// Connects `client` to `target` on this device, within `holder`'s limit.
    async fn connect_here(
        &self,
        target: Target,
        want: Want,
        client: Peer,
        client_proc: Option<ProcId>,
        sock: OwnedFd,
        holder: Holder<'_>,
    ) -> Result<ConnectReply, AbilityError> {
        let (tx, rx) = oneshot::channel();
        self.with(|i| {
            i.admit(holder)?;
            let request = i.next_request;
            i.next_request += 1;
            let conn = i.next_conn;
            i.next_conn += 1;
            i.connecting.insert(request, tx);
            i.conns.insert(
                conn,
                Conn {
                    client,
                    client_proc,
                    fd: Some(sock),
                    service_proc: None,
                },
            );
            i.core.connect(request, conn, target, want, Instant::now());
            self.perform(i);
            Ok::<(), AbilityError>(())
        })?;
        self.wake.notify_one();
        rx.await
            .map_err(|_| AbilityError::Internal("the ability manager stopped".into()))?
    }

    /// A connection id for `caller`'s connection to another device, within its limit.
    fn reserve_remote_conn(&self, caller: &oxh_ipc::Caller) -> Result<ConnId, AbilityError> {
        let client_proc = self.host_proc(caller);
        self.with(|i| {
            i.admit(Holder::Uid(caller.uid))?;
            let conn = i.next_conn;
            i.next_conn += 1;
            i.remote_conns.insert(
                conn,
                RemoteConn {
                    client_uid: caller.uid,
                    client_proc,
                },
            );
            Ok(conn)
        })
    }

    /// A connection to another device ended (`why`), or never was made: its client's host
    /// hears of it (the client's `onDisconnect`, unless it disconnected itself).
    fn remote_conn_ended(&self, conn: ConnId, why: &str) {
        self.with(|i| {
            let Some(c) = i.remote_conns.remove(&conn) else {
                return;
            };
            tracing::info!(
                tag = "AbilityManager",
                "remote connection {conn} ended: {why}"
            );
            let host = c
                .client_proc
                .and_then(|p| i.procs.get(&p))
                .and_then(|p| p.host.as_ref());
            if let Some((h, sub)) = host {
                let _ = h.push_event(*sub, &oxh_ipc::encode(&HostEvent::ConnectionLost { conn }));
            }
        });
    }

    /// The service's host saw connection `conn` end (CONNECTION_CLOSED).
    fn connection_closed(
        &self,
        caller: &oxh_ipc::Caller,
        conn: ConnId,
    ) -> Result<(), AbilityError> {
        let proc = self.host_proc(caller);
        let ours = self.with(|i| match i.conns.get(&conn) {
            Some(c) if c.service_proc.is_some() && c.service_proc == proc => {
                i.conns.remove(&conn);
                true
            }
            _ => false,
        });
        if !ours {
            return Err(AbilityError::ContextNotExist(format!(
                "connection {conn} is not one of the caller's services'"
            )));
        }
        self.drive(|core| core.disconnect(conn, Instant::now()));
        Ok(())
    }

    /// The process a caller's pid is the host of.
    fn host_proc(&self, caller: &oxh_ipc::Caller) -> Option<ProcId> {
        self.with(|i| {
            i.procs
                .iter()
                .find(|(_, p)| p.pid == Some(caller.pid as u32) && p.uid == caller.uid)
                .map(|(id, _)| *id)
        })
    }
}
