//! oxhd: wires the system abilities into samgr and serves local IPC until told to stop.

use anyhow::{Context, Result};
use oxh_atm::{AccessTokenManager, AtmConfig, AtmTokenResolver};
use oxh_devauth::{DeviceIdentity, DeviceType};
use oxh_ipc::Server;
use oxh_kal::DeviceDirs;
use oxh_samgr::{SaProfile, Samgr, SystemAbility, sa_id};
use oxh_softbus::discovery::Interfaces;
use oxh_softbus::{DeviceManagerSa, Softbus, SoftbusConfig, SoftbusSa};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Debug builds only: the advert epoch in seconds, so that tests can watch a real daemon's
/// advert id rotate without waiting [`oxh_softbus::discovery::ADVERT_EPOCH`]. Release builds
/// ignore it: devices recognise each other only if they agree on the epoch.
pub const ADVERT_EPOCH_ENV: &str = "OXH_ADVERT_EPOCH_SECS";

/// The advert epoch: [`ADVERT_EPOCH_ENV`] in debug builds when set, else the standard one.
fn advert_epoch() -> std::time::Duration {
    #[cfg(debug_assertions)]
    if let Some(s) = std::env::var(ADVERT_EPOCH_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
    {
        return std::time::Duration::from_secs(s);
    }
    oxh_softbus::discovery::ADVERT_EPOCH
}

/// How to run one device.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The device's data dir.
    pub data_dir: PathBuf,
    /// Device name to set (kept for later starts).
    pub name: Option<String>,
    /// Device type to set (kept for later starts).
    pub device_type: Option<DeviceType>,
    /// Where the soft bus listens (QUIC over UDP).
    pub listen: SocketAddr,
    /// Static peers.
    pub peers: Vec<SocketAddr>,
    /// mDNS interfaces, `None` for no discovery.
    pub discovery: Option<Interfaces>,
    /// Heartbeat of the bus; a peer silent for 4 heartbeats is OFFLINE.
    pub heartbeat: std::time::Duration,
    /// How long a binding PIN stays valid.
    pub pin_validity: std::time::Duration,
    /// hdc's TCP port: stored as `persist.hdc.port` when given (0: any free port).
    pub hdc_port: Option<u16>,
    /// The address hdc listens on.
    pub hdc_listen: std::net::IpAddr,
    /// hdc's shell user: stored as `persist.hdc.shell_user` when given.
    pub hdc_shell_user: Option<String>,
    /// `Some(false)`: a release device (`const.debuggable=0`).
    pub debuggable: Option<bool>,
}

/// The canonical paths of the `oxh` tool binary: this executable when it is `oxh`, and `oxh`
/// beside it. Processes running it get the shell token.
fn tool_exes() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) {
        if me.file_name().is_some_and(|n| n == "oxh") {
            v.push(me.clone());
        }
        if let Some(dir) = me.parent()
            && let Ok(oxh) = dir.join("oxh").canonicalize()
            && !v.contains(&oxh)
        {
            v.push(oxh);
        }
    }
    v
}

/// The token sync's view of the access-token manager (see `oxh_softbus::dbinder`): token
/// states travel encoded as `oxh_atm::api::RemoteTokenState`.
struct AtmBridge(Arc<AccessTokenManager>);

impl oxh_softbus::dbinder::TokenBridge for AtmBridge {
    fn export(&self, token_id: u32) -> Option<(u64, Vec<u8>)> {
        self.0
            .export_token(token_id)
            .map(|(rev, st)| (rev, oxh_ipc::encode(&st)))
    }
    fn import(
        &self,
        udid: &str,
        token_id: u32,
        rev: u64,
        state: &[u8],
    ) -> Result<(u32, oxh_ipc::TokenType, String), String> {
        let st: oxh_atm::api::RemoteTokenState =
            oxh_ipc::decode(state).map_err(|e| e.to_string())?;
        let id = self
            .0
            .import_remote_token(udid, token_id, rev, &st)
            .map_err(|e| e.to_string())?;
        Ok((id, st.token_type, st.name))
    }
    fn lookup(
        &self,
        udid: &str,
        token_id: u32,
        rev: u64,
    ) -> Option<(u32, oxh_ipc::TokenType, String)> {
        self.0.remote_token(udid, token_id, rev)
    }
    fn forget(&self, udid: &str, token_id: u32) {
        self.0.remove_remote_token(udid, token_id);
    }
    fn forget_device(&self, udid: &str) {
        self.0.drop_remote_device(udid);
    }
    fn verify(&self, token_id: u32, permission: &str) -> bool {
        self.0.verify_token(token_id, permission)
    }
}

/// The distributed scheduler's view of the soft bus: remote SA calls through dbinder, on
/// behalf of the original caller.
struct DmsPeers {
    bus: Arc<Softbus>,
    /// The daemon as a caller (its native token), for the scheduler's own calls.
    own: oxh_ipc::Caller,
}

#[async_trait::async_trait]
impl oxh_ability::service::dms::Peers for DmsPeers {
    fn local_network_id(&self) -> String {
        self.bus.network_id().to_string()
    }
    fn udid_of(&self, network_id: &str) -> Option<String> {
        self.bus
            .trusted()
            .into_iter()
            .find(|t| t.network_id.as_deref() == Some(network_id))
            .map(|t| t.udid)
    }
    fn network_id_of(&self, udid: &str) -> Option<String> {
        self.bus
            .trusted()
            .into_iter()
            .find(|t| t.udid == udid)
            .and_then(|t| t.network_id)
    }
    fn own_caller(&self) -> oxh_ipc::Caller {
        self.own.clone()
    }
    async fn call(
        &self,
        caller: &oxh_ipc::Caller,
        network_id: &str,
        code: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, oxh_ability::service::dms::PeerError> {
        self.bus
            .dbinder()
            .call(caller, network_id, oxh_ability::dms_api::SA_ID, code, data)
            .await
            .map_err(|e| peer_error(e, network_id))
    }
    async fn connect(
        &self,
        caller: &oxh_ipc::Caller,
        network_id: &str,
        code: u32,
        data: Vec<u8>,
        sock: std::os::fd::OwnedFd,
    ) -> Result<
        (Vec<u8>, oxh_ability::service::dms::RelayEnded),
        oxh_ability::service::dms::PeerError,
    > {
        let (reply, end) = self
            .bus
            .dbinder()
            .connect(
                caller,
                network_id,
                oxh_ability::dms_api::SA_ID,
                code,
                data,
                sock,
            )
            .await
            .map_err(|e| peer_error(e, network_id))?;
        Ok((reply, Box::pin(end.wait())))
    }
}

/// A remote SA call's error, as the scheduler sees it.
fn peer_error(e: oxh_ipc::RemoteError, network_id: &str) -> oxh_ability::service::dms::PeerError {
    use oxh_ability::service::dms::PeerError;
    match e.code {
        oxh_softbus::dbinder::ERR_DEVICE_OFFLINE => PeerError::Offline(network_id.to_string()),
        _ => PeerError::Remote(e),
    }
}

/// Continuation's messages between schedulers: on the data service's session with each
/// bound peer (channel [`oxh_kvstore::wire::CHANNEL_DMS`]), by udid. The session is
/// authenticated by the binding, so a message is attributed to the device that sent it.
struct DmsBus(Arc<oxh_kvstore::KvService>);

#[async_trait::async_trait]
impl oxh_ability::service::continuation::MessageBus for DmsBus {
    async fn send(&self, to: &str, msg: oxh_ability::continuation::Message) -> Result<(), String> {
        let bytes = oxh_ipc::encode(&msg);
        self.0
            .send_feature(to, oxh_kvstore::wire::CHANNEL_DMS, &bytes);
        Ok(())
    }
}

/// The other end of [`DmsBus`]: messages and the peers' comings and goings, to the driver.
struct DmsFeature(Arc<oxh_ability::service::continuation::Continuation>);

impl oxh_kvstore::Feature for DmsFeature {
    fn on_message(&self, udid: &str, bytes: Vec<u8>) {
        if bytes.len() > oxh_ability::continuation::MAX_WANT_PARAM + 64 * 1024 {
            tracing::warn!(
                tag = "DistributedSched",
                "oversized continuation message dropped"
            );
            return;
        }
        match oxh_ipc::decode::<oxh_ability::continuation::Message>(&bytes) {
            Ok(m) => self.0.on_message(udid, m),
            Err(e) => tracing::warn!(
                tag = "DistributedSched",
                "bad continuation message from a peer: {e}"
            ),
        }
    }
    fn on_online(&self, udid: &str, _network_id: &str) {
        self.0.link(udid, true);
    }
    fn on_offline(&self, udid: &str) {
        self.0.link(udid, false);
    }
}

/// Mission sync's lists between schedulers: on the data service's session with each bound
/// peer (channel [`oxh_kvstore::wire::CHANNEL_DMS_MISSIONS`]), by udid.
struct MissionBusOfKv(Arc<oxh_kvstore::KvService>);

impl oxh_ability::service::mission_sync::MissionBus for MissionBusOfKv {
    fn send(&self, udid: &str, bytes: Vec<u8>) {
        self.0
            .send_feature(udid, oxh_kvstore::wire::CHANNEL_DMS_MISSIONS, &bytes);
    }
    fn online(&self) -> Vec<String> {
        self.0
            .online_devices()
            .into_iter()
            .map(|(u, _)| u)
            .collect()
    }
    fn network_id_of(&self, udid: &str) -> Option<String> {
        self.0
            .online_devices()
            .into_iter()
            .find(|(u, _)| u == udid)
            .map(|(_, n)| n)
    }
}

/// The other end of [`MissionBusOfKv`]: peers' lists and comings and goings, to mission sync.
struct MissionSyncFeature(Arc<oxh_ability::service::mission_sync::MissionSync>);

impl oxh_kvstore::Feature for MissionSyncFeature {
    fn on_message(&self, udid: &str, bytes: Vec<u8>) {
        self.0.on_message(udid, &bytes);
    }
    fn on_online(&self, udid: &str, _network_id: &str) {
        self.0.on_online(udid);
    }
    fn on_offline(&self, udid: &str) {
        self.0.on_offline(udid);
    }
}

/// The parameter an owner names the device with (as `--name` does); read at start.
pub const DEVICE_NAME_PARAM: &str = "persist.device.name";

/// The dir the app spawner mounts each app's root on (inside the app's own mount namespace,
/// so one empty dir serves every app).
fn sandbox_staging(data_dir: &std::path::Path) -> PathBuf {
    DeviceDirs::new(data_dir).run_dir().join("appspawn")
}

/// Forks the app spawner (see `oxh_ability::spawn`); call it while the process has one thread.
pub fn fork_spawner(data_dir: &std::path::Path) -> Result<std::os::unix::net::UnixStream> {
    let staging = sandbox_staging(data_dir);
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let (sock, _pid) =
        oxh_ability::spawn::fork_spawner(staging).context("cannot fork the app spawner")?;
    Ok(sock)
}

/// The ability manager's view of the bundle manager.
/// The relational store's sync on the KV service's session with peers.
struct RdbBusOfKv {
    kv: Arc<oxh_kvstore::KvService>,
    atm: Arc<AccessTokenManager>,
    level: u8,
}

impl oxh_rdb::sync::RdbBus for RdbBusOfKv {
    fn send(&self, udid: &str, bytes: Vec<u8>) {
        self.kv
            .send_feature(udid, oxh_kvstore::wire::CHANNEL_RDB, &bytes);
    }
    fn online(&self) -> Vec<(String, String)> {
        self.kv.online_devices()
    }
    fn trusted(&self) -> Vec<String> {
        self.kv.trusted_devices()
    }
    fn resolve(&self, device: &str) -> String {
        self.kv.resolve_device(device)
    }
    fn device_level(&self) -> u8 {
        self.level
    }
    /// An installed app must hold DISTRIBUTED_DATASYNC here; a bundle with no app on this
    /// device is data only the shell and native callers reach (`oxh rdb --app`), so the
    /// shell's token decides.
    fn app_may_sync(&self, bundle: &str) -> bool {
        let perm = oxh_kvstore::api::DATASYNC_PERMISSION;
        match self.atm.hap_token_id(0, bundle, 0) {
            Some(id) => self.atm.verify_token(id.token_id(), perm),
            None => self.atm.verify_token(self.atm.shell_token_id(), perm),
        }
    }
    fn export_caller(&self, token_id: u32) -> Option<(u64, Vec<u8>)> {
        self.atm
            .export_token(token_id)
            .map(|(rev, st)| (rev, oxh_ipc::encode(&st)))
    }
    /// The caller's token is copied here as dbinder copies a remote SA caller's (the bus
    /// connection it came on is authenticated against the key pinned at binding).
    fn caller_may_sync(
        &self,
        udid: &str,
        token_id: u32,
        rev: u64,
        state: &[u8],
    ) -> Option<(oxh_ipc::TokenType, String)> {
        let st = oxh_ipc::decode::<oxh_atm::api::RemoteTokenState>(state).ok()?;
        let id = self
            .atm
            .import_remote_token(udid, token_id, rev, &st)
            .ok()?;
        self.atm
            .verify_token(id, oxh_kvstore::api::DATASYNC_PERMISSION)
            .then_some((st.token_type, st.name))
    }
}

/// What peers send on the relational store's channel, to it.
struct RdbFeature(std::sync::Weak<oxh_rdb::RdbService>);

impl oxh_kvstore::Feature for RdbFeature {
    fn on_message(&self, udid: &str, bytes: Vec<u8>) {
        if let Some(r) = self.0.upgrade() {
            r.on_bus_message(udid, &bytes);
        }
    }
    fn on_online(&self, _udid: &str, _network_id: &str) {}
    fn on_offline(&self, udid: &str) {
        if let Some(r) = self.0.upgrade() {
            r.on_peer_offline(udid);
        }
    }
}

struct BundleCatalog {
    bms: Arc<oxh_bundle::BundleManager>,
    /// Whether the policy lets a continuing app be installed on demand (read when asked).
    free_install: Box<dyn Fn() -> bool + Send + Sync>,
}

/// The bundle manager's connection id for installs the daemon makes itself (install on
/// demand); IPC connections count up from 1 and never reach it.
const DAEMON_INSTALL_CONN: u64 = u64::MAX;

impl BundleCatalog {
    fn records(&self, user: i32) -> Vec<oxh_bundle::plan::BundleRecord> {
        self.bms
            .names(user)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| self.bms.get(n, user).ok().flatten())
            .collect()
    }
}

impl oxh_ability::service::Bundles for BundleCatalog {
    fn abilities(&self, user: i32) -> Vec<oxh_ability::resolve::AbilityDecl> {
        use oxh_ability::manager::{AbilityType, LaunchType};
        let mut v = Vec::new();
        for r in self.records(user) {
            for m in &r.modules {
                let entry = m.module_type == oxh_bundle::model::ModuleType::Entry;
                let pages = m.abilities.iter().map(|a| (a, AbilityType::Page));
                let services = m
                    .extension_abilities
                    .iter()
                    .filter(|a| a.kind == "service")
                    .map(|a| (a, AbilityType::Service));
                for (a, kind) in pages.chain(services) {
                    v.push(oxh_ability::resolve::AbilityDecl {
                        element: oxh_ability::Element {
                            bundle_name: r.bundle_name.clone(),
                            module_name: m.module_name.clone(),
                            ability_name: a.name.clone(),
                        },
                        kind,
                        launch_type: match a.launch_type.as_str() {
                            "multiton" | "standard" => LaunchType::Multiton,
                            "specified" => LaunchType::Specified,
                            _ => LaunchType::Singleton,
                        },
                        exported: a.exported,
                        skills: a.skills.clone(),
                        main: entry && m.main_element == a.name,
                        src_entry: a.src_entry.clone(),
                        continuable: a.continuable,
                        continue_bundle_names: a.continue_bundle_name.clone(),
                    });
                }
            }
        }
        v
    }

    fn uid(&self, bundle: &str, user: i32) -> Option<u32> {
        self.bms.get(bundle, user).ok().flatten().map(|r| r.uid)
    }

    fn app_id(&self, bundle: &str, user: i32) -> Option<String> {
        self.bms.get(bundle, user).ok().flatten().map(|r| r.app_id)
    }

    fn package_files(&self, bundle: &str, _user: i32) -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(self.bms.code_dir(bundle)) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "hap") && p.is_file())
            .collect();
        v.sort();
        v
    }

    fn may_install_on_demand(&self) -> bool {
        (self.free_install)()
    }

    fn install_on_demand(
        &self,
        bundle: &str,
        files: &[PathBuf],
        user: i32,
    ) -> Result<(), oxh_ipc::RemoteError> {
        use oxh_bundle::error::BundleError;
        let err = |e: BundleError| oxh_ipc::RemoteError::new(e.code, e.to_string());
        let limits = oxh_bundle::package::Limits::default();
        let mut datas = Vec::with_capacity(files.len());
        for f in files {
            let data = std::fs::read(f).map_err(|e| {
                oxh_ipc::RemoteError::new(
                    oxh_bundle::error::code::INTERNAL_ERROR,
                    format!("cannot read the fetched package: {e}"),
                )
            })?;
            // Only the bundle the continuation moves: a source cannot slip in another app.
            let name = oxh_bundle::package::open_hap(&data, &limits)
                .map_err(err)?
                .info
                .app
                .bundle_name;
            if name != bundle {
                return Err(err(BundleError::invalid_file(format!(
                    "the source sent a package of {name}, not of {bundle}"
                ))));
            }
            datas.push(data);
        }
        let total = datas.iter().map(|d| d.len() as u64).sum();
        let conn = DAEMON_INSTALL_CONN;
        let session = self
            .bms
            .begin(conn, datas.len() as u32, total)
            .map_err(err)?;
        let staged = datas.iter().enumerate().try_for_each(|(i, d)| {
            d.chunks(oxh_bundle::api::CHUNK)
                .try_for_each(|c| self.bms.write(conn, session, i as u32, c))
        });
        if let Err(e) = staged {
            self.bms.abort(conn, session);
            return Err(err(e));
        }
        // The same rules as `bm install -r`: an installed bundle of another signer stays.
        self.bms
            .install(
                conn,
                &oxh_bundle::api::InstallArgs {
                    session,
                    user_id: user,
                    replace: true,
                    skip_verify: false,
                },
            )
            .map(|_| ())
            .map_err(err)
    }

    fn bundle_of_uid(&self, uid: u32) -> Option<String> {
        let user = (uid / oxh_ability::layout::UID_PER_USER) as i32;
        self.records(user)
            .into_iter()
            .find(|r| r.uid == uid)
            .map(|r| r.bundle_name)
    }
}

/// The daemon as a caller: its own credentials, judged as any process's (its native token).
fn own_caller(atm: &AccessTokenManager) -> oxh_ipc::Caller {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    atm.caller_for(
        oxh_kal::PeerCred {
            pid: std::process::id() as i32,
            uid,
            gid,
        },
        oxh_atm::config::DAEMON_PROCESS.to_string(),
        false,
        uid,
        None,
    )
}

/// The user whose apps run: OpenHarmony's first user.
const APP_USER: i32 = 100;

/// Runs a device in the foreground until SIGINT or SIGTERM; `spawner` is the app spawner's
/// socket ([`fork_spawner`]).
pub async fn run(cfg: DaemonConfig, spawner: std::os::unix::net::UnixStream) -> Result<()> {
    let t0 = Instant::now();
    let dirs = DeviceDirs::new(&cfg.data_dir);
    dirs.create()
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    // Every subsystem's state is the daemon's alone (other users reach it through IPC);
    // only the run dir (socket), the shell user's dir and the apps' dirs are shared.
    for s in [
        "log", "device", "param", "atm", "bundle", "kvstore", "rdb", "hdc", "dms",
    ] {
        dirs.make_private(s)
            .with_context(|| format!("cannot make {}", dirs.subsystem(s).display()))?;
    }

    let hilog = oxh_hilog::HilogService::new(oxh_hilog::HilogConfig {
        persist_dir: Some(dirs.subsystem("log").join("hilog")),
        ..Default::default()
    });
    hilog.install_global_subscriber();

    let param = oxh_param::ParamService::open(&dirs.subsystem("param"))
        .context("cannot open the parameter store")?;
    // Debug builds only: a test sets this daemon's clocks ahead through a parameter (PIN
    // expiry, the hilog quota, KV write order) instead of sleeping. Release builds ignore it.
    if cfg!(debug_assertions) {
        let mut ahead = param.subscribe(oxh_kal::clock::AHEAD_PARAM);
        let apply = |v: Option<&str>| {
            if let Some(ms) = v.and_then(|v| v.trim().parse::<u64>().ok()) {
                oxh_kal::clock::set_ahead(std::time::Duration::from_millis(ms));
            }
        };
        apply(ahead.borrow().as_deref());
        let p = param.clone();
        tokio::spawn(async move {
            while ahead.changed().await.is_ok() {
                let v = ahead.borrow().clone();
                apply(v.as_deref());
                // What a test waits on: the clocks are ahead from now on.
                if let Some(v) = v {
                    p.set_as_system(oxh_kal::clock::APPLIED_PARAM, &v)
                        .await
                        .ok();
                }
            }
        });
    }
    // The owner names the device with `--name` or `persist.device.name` (read at start;
    // `--name` wins and is kept there too). Unnamed, it advertises no name at all.
    let name = match cfg.name.as_deref() {
        Some(n) => {
            if !n.is_empty() {
                param.set_as_system(DEVICE_NAME_PARAM, n).await.ok();
            }
            Some(n.to_string())
        }
        None => param.value(DEVICE_NAME_PARAM).filter(|n| !n.is_empty()),
    };
    let identity = DeviceIdentity::load_or_create(
        &dirs.subsystem("device"),
        name.as_deref(),
        cfg.device_type,
    )?;
    let info = identity.info();
    for (k, v) in [
        ("const.product.name", info.name.as_str()),
        ("const.product.devicetype", info.device_type.as_str()),
        ("const.ohos.fullname", oxh_devauth::OS_FULL_NAME),
        ("const.ohos.apiversion", "12"),
    ] {
        param.set_as_system(k, v).await.ok();
    }
    if let Some(d) = cfg.debuggable {
        let v = if d { "1" } else { "0" };
        if let Err(e) = param
            .set_as_system(oxh_hdc::device::DEBUGGABLE_PARAM, v)
            .await
        {
            tracing::warn!(tag = "oxhd", "--debuggable {d} not applied: {e}");
        }
    }
    if let Some(u) = &cfg.hdc_shell_user {
        param
            .set_as_system(oxh_hdc::device::SHELL_USER_PARAM, u)
            .await
            .with_context(|| format!("cannot keep --hdc-shell-user {u}"))?;
    }

    let atm = AccessTokenManager::open(&dirs.subsystem("atm"), AtmConfig::default())
        .context("cannot open the access token store")?;
    atm.spawn_usage_flusher();
    let mut samgr = Samgr::new(atm.clone());
    samgr.register(SaProfile::running(
        sa_id::ACCESS_TOKEN,
        oxh_atm::api::SA_NAME,
        atm.clone(),
    ))?;
    samgr.register(SaProfile::running(
        sa_id::HILOG,
        "HiLogService",
        hilog.clone(),
    ))?;
    samgr.register(SaProfile::running(
        sa_id::PARAM,
        "ParamService",
        param.clone(),
    ))?;
    // The bundle manager: installs create app tokens in the access-token manager in-process.
    let p = param.clone();
    let bms = oxh_bundle::BundleManager::open(
        oxh_bundle::service::BundleConfig {
            dir: dirs.subsystem("bundle"),
            data_root: dirs.root().to_path_buf(),
            device_id: Some(info.udid.clone()),
            dev_mode: Box::new(move || {
                p.value(oxh_bundle::api::DEV_MODE_PARAM).as_deref() == Some("1")
            }),
            limits: Default::default(),
        },
        atm.clone(),
    )
    .context("cannot open the bundle store")?;
    let p = param.clone();
    let catalog = Arc::new(BundleCatalog {
        bms: bms.clone(),
        free_install: Box::new(move || {
            match p.value(oxh_ability::dms_api::FREE_INSTALL_PARAM).as_deref() {
                Some("1") => true,
                Some("0") => false,
                _ => p.value(oxh_hdc::device::DEBUGGABLE_PARAM).as_deref() != Some("0"),
            }
        }),
    });
    samgr.register(SaProfile::running(
        sa_id::BUNDLE_MGR,
        "BundleMgrService",
        bms,
    ))?;
    // The ability manager, over the spawner forked before the runtime started.
    // The app host and the NDK library are installed beside the daemon.
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let host_program = bin_dir.join("oxh-apphost");
    let ndk_dir = Some(bin_dir.clone());
    let views_mounted = oxh_ability::layout::ViewsMounted::default();
    let ams = oxh_ability::service::AbilityService::start(
        oxh_ability::service::Config {
            host: oxh_ability::layout::Host {
                data_root: dirs.root().to_path_buf(),
                host_program,
                ndk_dir,
                ipc_socket: dirs.socket_path(),
                distributed_files: Some(oxh_ability::layout::DistributedFiles {
                    mounted: views_mounted.clone(),
                    merged: oxh_dfs::views::apps_merge_view(dirs.root(), crate::file_daemon::USER),
                    local: oxh_dfs::views::apps_tree(dirs.root(), crate::file_daemon::USER),
                }),
            },
            user: APP_USER,
            timeouts: Default::default(),
        },
        catalog,
        atm.clone(),
        spawner,
    )
    .context("cannot start the ability manager")?;
    samgr.register(SaProfile::running(
        sa_id::ABILITY_MGR,
        "AbilityManagerService",
        ams.clone(),
    ))?;

    let sa_list = vec![
        sa_id::SAMGR,
        sa_id::HILOG,
        sa_id::ACCESS_TOKEN,
        sa_id::PARAM,
        sa_id::SOFTBUS,
        sa_id::DEVICE_MANAGER,
        sa_id::DISTRIBUTED_KV,
        sa_id::ABILITY_MGR,
        sa_id::DISTRIBUTED_SCHED,
        sa_id::DISTRIBUTED_FILE,
    ];
    let bus_cfg = SoftbusConfig {
        listen: cfg.listen,
        static_peers: cfg.peers.clone(),
        discovery: cfg.discovery.clone(),
        heartbeat: cfg.heartbeat,
        idle_timeout: cfg.heartbeat * 4,
        pin_validity: cfg.pin_validity,
        advert_epoch: advert_epoch(),
    };
    let softbus = Softbus::start(&identity, &dirs.subsystem("device"), bus_cfg, sa_list)
        .await
        .context("cannot start the soft bus")?;
    // The distributed scheduler: remote starts and missions, over the ability manager.
    let ams_of_dms = ams.clone();
    samgr.register(SaProfile::running(
        sa_id::DISTRIBUTED_SCHED,
        "DistributedSchedService",
        oxh_ability::service::dms::DmsService::new(
            ams,
            Arc::new(DmsPeers {
                bus: softbus.clone(),
                own: own_caller(&atm),
            }),
        ),
    ))?;
    samgr.register(SaProfile::running(
        sa_id::DEVICE_MANAGER,
        "DeviceManagerService",
        Arc::new(DeviceManagerSa(softbus.clone())),
    ))?;
    // On demand, as in OpenHarmony: the socket SA starts on its first call (the bus itself
    // runs from the start, for the bus center).
    let sb = softbus.clone();
    samgr.register(SaProfile::new(
        sa_id::SOFTBUS,
        "SoftBusServer",
        false,
        move || {
            let sb = sb.clone();
            async move { Ok(Arc::new(SoftbusSa(sb)) as Arc<dyn SystemAbility>) }
        },
    ))?;
    // Distributed KV (SA 1301). The device's security level is the const param
    // const.security.device_security_level: SL1 by default, as on OpenHarmony's development
    // boards; `oxh sim` starts its devices with OXH_DEVICE_SECURITY_LEVEL=SL3.
    let level = std::env::var("OXH_DEVICE_SECURITY_LEVEL")
        .ok()
        .and_then(|v| oxh_kvstore::limits::parse_device_level(&v))
        .unwrap_or(oxh_kvstore::limits::DEFAULT_DEVICE_LEVEL);
    param
        .set_as_system(
            oxh_kvstore::limits::DEVICE_SECURITY_LEVEL_PARAM,
            &format!("SL{level}"),
        )
        .await
        .ok();
    let kv = oxh_kvstore::KvService::open(oxh_kvstore::KvConfig {
        dir: dirs.subsystem("kvstore"),
        device_id: info.udid.clone(),
        device_level: level,
        sync: Default::default(),
    })
    .context("cannot open the KV stores")?;
    let a = atm.clone();
    kv.set_app_resolver(Arc::new(move |id| {
        a.token_detail(&oxh_atm::api::TokenTarget::Id(id))
            .ok()
            .filter(|d| d.info.token_type == oxh_ipc::TokenType::Hap)
            .map(|d| d.info.name)
    }));
    kv.attach_softbus(softbus.clone())
        .context("cannot start KV sync")?;
    // Continuation (SA 1401's driver): its messages on the data service's session, by udid.
    let continuation = ams_of_dms
        .open_continuation(
            &info.udid,
            &dirs.subsystem("dms"),
            Arc::new(DmsBus(kv.clone())),
        )
        .context("cannot open the continuation journals")?;
    kv.attach_feature(
        oxh_kvstore::wire::CHANNEL_DMS,
        Arc::new(DmsFeature(continuation)),
    );
    // Mission sync: each device's movable missions, to its peers, on a channel of its own.
    let sync = oxh_ability::service::mission_sync::MissionSync::start(
        &ams_of_dms,
        Arc::new(MissionBusOfKv(kv.clone())),
    );
    kv.attach_feature(
        oxh_kvstore::wire::CHANNEL_DMS_MISSIONS,
        Arc::new(MissionSyncFeature(sync)),
    );
    // The relational store is a feature of the same SA, as in OpenHarmony (its RDB service is
    // reached through the distributed data service): its codes are a range of SA 1301's.
    let rdb = oxh_rdb::RdbService::open(oxh_rdb::RdbConfig {
        dir: dirs.subsystem("rdb"),
        device_id: info.udid.clone(),
    })
    .context("cannot open the relational stores")?;
    let a = atm.clone();
    rdb.set_app_resolver(Arc::new(move |id| {
        a.token_detail(&oxh_atm::api::TokenTarget::Id(id))
            .ok()
            .filter(|d| d.info.token_type == oxh_ipc::TokenType::Hap)
            .map(|d| d.info.name)
    }));
    // Its sync shares the KV sync's session with peers, on a channel of its own.
    kv.attach_feature(
        oxh_kvstore::wire::CHANNEL_RDB,
        Arc::new(RdbFeature(Arc::downgrade(&rdb))),
    );
    rdb.attach_bus(Arc::new(RdbBusOfKv {
        kv: kv.clone(),
        atm: atm.clone(),
        level,
    }));
    let data = oxh_rdb::sa::DataService::new(kv, rdb).map_err(anyhow::Error::msg)?;
    samgr.register(SaProfile::running(
        sa_id::DISTRIBUTED_KV,
        oxh_kvstore::api::SA_NAME,
        Arc::new(data),
    ))?;
    // The distributed file daemon (SA 5201): serves the account tree to peers and mounts the
    // device views when FUSE is here.
    let atm_of_copy = atm.clone();
    let bundle_of: crate::file_copy::BundleOfToken = Box::new(move |token| {
        let t = atm_of_copy
            .token_detail(&oxh_atm::api::TokenTarget::Id(token))
            .ok()?
            .info;
        (t.token_type == oxh_ipc::TokenType::Hap && t.remote_udid.is_none()).then_some(t.name)
    });
    let files =
        crate::file_daemon::FileDaemon::start(softbus.clone(), &cfg.data_dir, level, bundle_of)
            .await
            .context("cannot start the distributed file daemon")?;
    // Apps spawned from now on see their distributed files merged across devices.
    views_mounted.set(files.is_mounted());
    samgr.register(SaProfile::running(
        sa_id::DISTRIBUTED_FILE,
        "DistributedFileDaemon",
        files.clone(),
    ))?;
    let samgr = samgr.start().await?;
    // dbinder: calls to and from SAs on other devices, with the callers' tokens synced.
    let dbinder = softbus.dbinder().clone();
    dbinder.set_bridge(Arc::new(AtmBridge(atm.clone())));
    dbinder.set_dispatcher(samgr.clone());
    samgr.set_remote(dbinder.clone());
    let mut changes = atm.subscribe_changes();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(id) => {
                    dbinder.token_changed(id).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    });

    let socket = dirs.socket_path();
    // hdc's shell user, whose `oxh` runs get the shell token.
    let shell_user = oxh_hdc::device::resolve_shell_user(
        param.value(oxh_hdc::device::SHELL_USER_PARAM).as_deref(),
    );
    if let Err(m) = &shell_user {
        tracing::error!(tag = "oxhd", "{m}");
    }
    let shell_uid = shell_user
        .as_ref()
        .ok()
        .and_then(|u| u.as_ref())
        .map(|u| u.id.uid);
    let resolver = AtmTokenResolver::new(atm.clone(), tool_exes(), oxh_kal::current_uid())
        .with_shell_uid(shell_uid);
    let server = Server::bind(&socket, samgr.clone(), Arc::new(resolver))
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::write(dirs.pid_path(), format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", dirs.pid_path().display()))?;
    let serve = tokio::spawn(server.run());
    let hdc = start_hdc(&cfg, &dirs, &identity, &param, shell_user).await;
    if let Some(h) = &hdc {
        softbus.advertise_hdc_port(h.addr.port());
    }

    let ready_ms = t0.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        tag = "oxhd",
        public_udid = info.udid.as_str(),
        public_ms = ready_ms,
        "device ready"
    );
    let ready = oxh_kal::ready::ReadyLine {
        name: info.name.clone(),
        device_type: info.device_type.as_str().to_string(),
        udid: info.udid.clone(),
        network_id: softbus.network_id().to_string(),
        bus: softbus.bus_addr(),
        hdc: hdc
            .as_ref()
            .map(|h| std::net::SocketAddr::from(([127, 0, 0, 1], h.addr.port()))),
        socket: socket.clone(),
        ready_ms,
    };
    println!("{ready}");

    // `hdc target boot` restarts the daemon in place (same pid, same arguments).
    let boot = hdc.as_ref().map(|h| h.boot.clone());
    let rebooting = tokio::select! {
        r = wait_for_signal() => { r?; false }
        _ = async {
            match &boot {
                Some(b) => b.notified().await,
                None => std::future::pending().await,
            }
        } => true,
    };
    if let Some(h) = &hdc {
        h.stop();
    }
    tracing::info!(tag = "oxhd", "shutting down");
    serve.abort();
    views_mounted.set(false);
    files.shutdown().await;
    softbus.shutdown();
    if let Err(e) = atm.flush_usage() {
        tracing::warn!(tag = "oxhd", "{e}");
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(dirs.pid_path());
    hilog.shutdown().await;
    if rebooting {
        reexec()?;
    }
    Ok(())
}

/// Starts hdc's device side on the port in `persist.hdc.port` (default 8711) of
/// `cfg.hdc_listen` (default: all interfaces);
/// a port in use is logged and hdc stays off, the rest of the device runs.
async fn start_hdc(
    cfg: &DaemonConfig,
    dirs: &DeviceDirs,
    identity: &DeviceIdentity,
    param: &Arc<oxh_param::ParamService>,
    shell_user: Result<Option<oxh_kal::user::UserEntry>, String>,
) -> Option<oxh_hdc::device::DeviceHdc> {
    if let Some(p) = cfg.hdc_port {
        param
            .set_as_system("persist.hdc.port", &p.to_string())
            .await
            .ok();
    }
    let port = param
        .value("persist.hdc.port")
        .and_then(|v| v.parse().ok())
        .unwrap_or(oxh_hdc::device::DEFAULT_DEVICE_PORT);
    let shell_tmp = dirs.shell_tmp();
    if let Err(e) = make_shell_tmp(&shell_tmp, &shell_user) {
        tracing::warn!(tag = "oxhd", "cannot make {}: {e}", shell_tmp.display());
    }
    // The shell user must reach the socket for `oxh` in an hdc shell to work: say so at
    // once when a parent of the data dir keeps it out (root's home is 0700).
    if let Ok(Some(u)) = &shell_user {
        let sock = dirs.socket_path();
        if let Ok(Err(e)) = u.id.as_fs(|| std::fs::metadata(&sock)) {
            tracing::warn!(
                tag = "oxhd",
                "hdc's shell user (uid {}) cannot reach {}: {e}; `oxh` in hdc shells will not \
                 connect. Make the data dir's parents searchable (chmod o+x) or use a data dir \
                 such as {}",
                u.id.uid,
                sock.display(),
                oxh_kal::SYSTEM_DATA_DIR
            );
        }
    }
    let (p, ps) = (param.clone(), param.clone());
    let dc = oxh_hdc::device::DeviceConfig {
        data_dir: cfg.data_dir.clone(),
        hdc_dir: dirs.subsystem("hdc"),
        name: identity.info().name,
        key: identity.signing_key().clone(),
        oxh_exe: tool_exes().into_iter().next(),
        params: Arc::new(move |k: &str| p.value(k)),
        set_param: Arc::new(move |k, v| {
            let ps = ps.clone();
            Box::pin(async move { ps.set_as_system(&k, &v).await.map_err(|e| e.to_string()) })
        }),
        shell_user,
        shell_tmp,
    };
    match oxh_hdc::device::start(dc, SocketAddr::new(cfg.hdc_listen, port)).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(tag = "oxhd", "hdc off: cannot listen on port {port}: {e}");
            None
        }
    }
}

/// The shell user's dir (OpenHarmony's /data/local/tmp: `shell:shell`, 0771), below a
/// `local` dir others may only pass through.
fn make_shell_tmp(
    dir: &std::path::Path,
    shell_user: &Result<Option<oxh_kal::user::UserEntry>, String>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
    }
    if let Ok(Some(u)) = shell_user {
        std::os::unix::fs::chown(dir, Some(u.id.uid), Some(u.id.gid))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o771))
}

/// Replaces this process with a fresh start of the same binary and arguments (same pid).
fn reexec() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let exe = std::env::current_exe()?;
    let mut c = std::process::Command::new(exe);
    if let Some(a0) = args.first() {
        c.arg0(a0);
    }
    let err = c.args(args.iter().skip(1)).exec();
    Err(anyhow::anyhow!("cannot restart: {err}"))
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

/// Builds the daemon's runtime: two worker threads (the machines we target have few cores).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("oxhd")
        .enable_all()
        .build()?)
}
