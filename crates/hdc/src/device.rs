//! The device side of hdc, run inside oxhd: a TLS listener on the port in `persist.hdc.port`,
//! host authentication, and the commands (shell, files, port forwarding, hilog, boot).
//!
//! Shells, hilog, installs and file transfers run as the device's shell user, as hdcd drops
//! to OpenHarmony's `shell` user (uid 2000): the system's `shell` user when there is one,
//! else the bare uid 2000, or the user `persist.hdc.shell_user` names (read at start). The
//! shell user's `oxh` invocations get the shell token (the access-token manager gives it to
//! that user running the `oxh` binary), so the access-token rules apply to what the shell
//! does through oxh, and the kernel's file permissions apply to what it reads and writes.
//! `hdc smode` (`persist.hdc.root=1`) runs them as the daemon's user (root) instead;
//! `hdc smode -r` drops again. A daemon that is not root runs them as itself.

use crate::keys::{self, Verdict};
use crate::proto::{self, Exit, Hello, Request};
use crate::session::{self, Incoming, Session};
use crate::{relay, shell, transfer};
use ed25519_dalek::SigningKey;
use oxh_kal::user::{Identity, UserEntry};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Default device port when `persist.hdc.port` is not set. OpenHarmony's devices use 8710
/// too, but here the host server (127.0.0.1:8710) and devices often share one machine, so
/// devices default to the next port.
pub const DEFAULT_DEVICE_PORT: u16 = 8711;

/// Reads a parameter (the daemon passes its in-process parameter service).
pub type ParamGet = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;
/// Sets a parameter as the system (for `hdc smode`).
pub type ParamSet = Arc<
    dyn Fn(
            String,
            String,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// OpenHarmony's shell user, which hdcd runs everything for a host as.
pub const SHELL_USER: &str = "shell";
/// OpenHarmony's shell uid (and gid): used when the system has no `shell` user.
pub const SHELL_UID: u32 = 2000;
/// Parameter naming another shell user (a name or a uid); read when the daemon starts.
pub const SHELL_USER_PARAM: &str = "persist.hdc.shell_user";
/// Parameter that lets hosts in without authorisation ("1"); honoured only for hosts on this
/// machine that run as the daemon's user or root ([`crate::local::bypass_allowed`]).
pub const AUTH_BYPASS_PARAM: &str = "persist.hdc.auth_bypass";
/// Parameter `hdc smode` sets: "1" runs host commands as the daemon's user.
pub const ROOT_PARAM: &str = "persist.hdc.root";
/// "0" marks a release device: no root mode (`hdc smode` refused, `persist.hdc.root`
/// ignored), as on OpenHarmony's user builds. Unset or "1": a developer's device.
pub const DEBUGGABLE_PARAM: &str = "const.debuggable";
/// `1`: serve only OpenHarmony's own wire, as an OpenHarmony device does (a TLS hello is
/// dropped unanswered); for a device that must look like one to every host.
pub const OHOS_ONLY_PARAM: &str = "persist.hdc.ohos_only";

/// Who host commands run as: `Ok(None)` when the daemon cannot switch users (it is not
/// root); an error when the configured user does not exist or is root (every command that
/// needs the user then fails with it, rather than running as root: root is `hdc smode`'s,
/// which a release device refuses).
pub fn resolve_shell_user(spec: Option<&str>) -> Result<Option<UserEntry>, String> {
    if !Identity::can_switch() {
        return Ok(None);
    }
    let spec = spec.filter(|s| !s.is_empty()).unwrap_or(SHELL_USER);
    let found = oxh_kal::user::lookup_user(spec)
        .map_err(|e| format!("[Fail]cannot look up the shell user {spec}: {e}"))?;
    let user = match found {
        Some(u) => u,
        None if spec == SHELL_USER => {
            match oxh_kal::user::user_by_uid(SHELL_UID)
                .map_err(|e| format!("[Fail]cannot look up uid {SHELL_UID}: {e}"))?
            {
                Some(other) => {
                    return Err(format!(
                        "[Fail]no shell user: there is no `{SHELL_USER}` user and uid \
                         {SHELL_UID} belongs to `{}`; create a `{SHELL_USER}` user or set \
                         {SHELL_USER_PARAM}",
                        other.name
                    ));
                }
                None => UserEntry {
                    name: SHELL_USER.into(),
                    home: None,
                    id: Identity {
                        uid: SHELL_UID,
                        gid: SHELL_UID,
                        groups: vec![SHELL_UID],
                    },
                },
            }
        }
        None => {
            return Err(format!(
                "[Fail]no shell user: {SHELL_USER_PARAM} names `{spec}`, which does not exist"
            ));
        }
    };
    if user.id.uid == 0 {
        return Err(format!(
            "[Fail]no shell user: {SHELL_USER_PARAM} names root; shells run as root only \
             through `hdc smode`, on a debuggable device"
        ));
    }
    Ok(Some(user))
}

/// What the device side needs from the daemon.
#[derive(Clone)]
pub struct DeviceConfig {
    /// The device's data dir (shells get it as `OXH_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `DeviceDirs::subsystem("hdc")`: authorised hosts, pending requests.
    pub hdc_dir: PathBuf,
    /// Device name, shown by `hdc list targets -v`.
    pub name: String,
    /// The device key (its identity key): the TLS certificate key hosts pin.
    pub key: SigningKey,
    /// The `oxh` tool binary, for `hdc hilog` and the shell's PATH.
    pub oxh_exe: Option<PathBuf>,
    /// Parameters ([`AUTH_BYPASS_PARAM`], [`ROOT_PARAM`], ...).
    pub params: ParamGet,
    /// Sets `persist.hdc.root` for `hdc smode`.
    pub set_param: ParamSet,
    /// The shell user (see [`resolve_shell_user`]).
    pub shell_user: Result<Option<UserEntry>, String>,
    /// The shell user's own writable dir (OpenHarmony's /data/local/tmp): installs are
    /// staged there, and a shell starts there when the user has no home.
    pub shell_tmp: PathBuf,
}

impl DeviceConfig {
    fn debuggable(&self) -> bool {
        (self.params)(DEBUGGABLE_PARAM).as_deref() != Some("0")
    }

    /// Who the next host command runs as: the shell user, or `None` (the daemon's user) in
    /// root mode or when the daemon cannot switch.
    fn acting_user(&self) -> Result<Option<Arc<UserEntry>>, String> {
        if self.debuggable() && (self.params)(ROOT_PARAM).as_deref() == Some("1") {
            return Ok(None);
        }
        self.shell_user.clone().map(|u| u.map(Arc::new))
    }
}

/// The running device side.
pub struct DeviceHdc {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Notified by `hdc target boot`: the daemon restarts itself.
    pub boot: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl DeviceHdc {
    /// Stops listening (sessions end with the process).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Starts listening on `listen` (port 0: any free port).
pub async fn start(cfg: DeviceConfig, listen: SocketAddr) -> std::io::Result<DeviceHdc> {
    let tls = keys::server_config(&cfg.key).map_err(std::io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let l = bind(&cfg.hdc_dir, listen).await?;
    let addr = l.local_addr()?;
    let boot = Arc::new(Notify::new());
    let cfg = Arc::new(cfg);
    let b = boot.clone();
    let limiter = crate::limits::device_limiter();
    // OpenHarmony's hosts find devices by a UDP probe.
    let udp = match (cfg.params)(crate::ohos_discovery::DISCOVERY_PORT_PARAM) {
        Some(p) => p
            .trim()
            .parse()
            .unwrap_or(crate::ohos_discovery::DISCOVERY_PORT),
        None => crate::ohos_discovery::DISCOVERY_PORT,
    };
    if udp != 0 {
        match crate::ohos_discovery::bind(SocketAddr::new(listen.ip(), udp)) {
            Ok(s) => {
                tokio::spawn(crate::ohos_discovery::serve(s, addr.port(), udp));
            }
            Err(e) => tracing::warn!(tag = "hdcd", "no UDP discovery on port {udp}: {e}"),
        }
    }
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // Bounded before the handshake: a stranger's connections cost buffers too.
            let slot = match limiter.admit(peer.ip()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(tag = "hdcd", "connection from {peer} dropped: {e}");
                    continue;
                }
            };
            let (cfg, acceptor, b) = (cfg.clone(), acceptor.clone(), b.clone());
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = serve_conn(cfg, acceptor, tcp, b).await {
                    tracing::info!(tag = "hdcd", "session from {peer} ended: {e}");
                }
            });
        }
    });
    Ok(DeviceHdc { addr, boot, task })
}

/// Port 0 picks a free port, but the same one as last time when it is still free, so hosts
/// reconnect after a restart (or `hdc target boot`) without a new `tconn`.
async fn bind(hdc_dir: &Path, listen: SocketAddr) -> std::io::Result<TcpListener> {
    let last = hdc_dir.join("last_port");
    if listen.port() == 0
        && let Some(p) = std::fs::read_to_string(&last)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        && let Ok(l) = TcpListener::bind(SocketAddr::new(listen.ip(), p)).await
    {
        return Ok(l);
    }
    let l = TcpListener::bind(listen).await?;
    if listen.port() == 0 {
        let _ = std::fs::create_dir_all(hdc_dir);
        let _ = std::fs::write(&last, format!("{}\n", l.local_addr()?.port()));
    }
    Ok(l)
}

async fn serve_conn(
    cfg: Arc<DeviceConfig>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    boot: Arc<Notify>,
) -> Result<(), session::SessionError> {
    let _ = tcp.set_nodelay(true);
    // OpenHarmony's own hosts start in plaintext with a "HW" packet; ours with TLS.
    let mut first = [0u8; 2];
    let peek = async {
        loop {
            let n = tcp.peek(&mut first).await?;
            // One byte may come alone; a TLS record's first byte already says it is ours.
            if n != 1 || first[0] != crate::ohos::PACKET_FLAG[0] {
                return Ok::<usize, std::io::Error>(n);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let peeked = tokio::time::timeout(Duration::from_secs(10), peek)
        .await
        .map_err(|_| session::SessionError::Closed("nothing sent".into()))??;
    if peeked == 2 && &first == crate::ohos::PACKET_FLAG {
        return crate::ohos_device::serve(cfg, tcp, boot)
            .await
            .map_err(session::SessionError::Closed);
    }
    if (cfg.params)(OHOS_ONLY_PARAM).as_deref() == Some("1") {
        // As hdcd: what is not an hdc packet ends the connection, unanswered.
        return Err(session::SessionError::Closed(format!(
            "not OpenHarmony's hdc wire ({OHOS_ONLY_PARAM}=1)"
        )));
    }
    // The bypass is for development on this machine: a host on loopback running as this
    // daemon's user (or root). Anyone else, a LAN neighbour or another local user, is
    // authorised as usual.
    let bypass = (cfg.params)(AUTH_BYPASS_PARAM).as_deref() == Some("1")
        && crate::local::bypass_allowed(&tcp);
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        acceptor.accept(session::buffered(tcp)),
    )
    .await
    .map_err(|_| session::SessionError::Closed("tls handshake timed out".into()))??;
    // Big TLS send buffer: a whole file chunk is encrypted in one go, not 64 KiB at a time.
    tls.get_mut()
        .1
        .set_buffer_limit(Some(crate::session::WINDOW));
    let host_key = keys::peer_key(tls.get_ref().1.peer_certificates())
        .ok_or_else(|| session::SessionError::Closed("no host key".into()))?;
    let fp = keys::fingerprint(&host_key);
    let hdc_dir = cfg.hdc_dir.clone();
    let name = cfg.name.clone();
    let host = session::accept_hello(&mut tls, move |peer: &Hello| {
        let refused = if bypass {
            String::new()
        } else {
            match keys::authorize(&hdc_dir, &host_key, &peer.name) {
                Verdict::Always | Verdict::Once => String::new(),
                Verdict::Refused => format!(
                    "[Fail]Device unauthorized: this host's key (SHA256 {}) is not in the \
                     device's authorised list. On the device run `oxh hdc allow {}` \
                     (add --always to remember it), then connect again.",
                    &fp[..16],
                    &fp[..16]
                ),
            }
        };
        Hello {
            version: proto::VERSION,
            name,
            refused,
        }
    })
    .await?;
    tracing::info!(tag = "hdcd", "host {} connected", host.name);
    let (sess, mut incoming) = Session::start(tls, true, "host".into());
    while let Some(inc) = incoming.recv().await {
        let (cfg, sess, boot) = (cfg.clone(), sess.clone(), boot.clone());
        tokio::spawn(handle(cfg, sess, inc, boot));
    }
    Ok(())
}

fn shell_command(
    cfg: &DeviceConfig,
    who: Option<&UserEntry>,
    argv: &[&str],
) -> std::process::Command {
    let mut c = std::process::Command::new(argv[0]);
    c.args(&argv[1..]);
    c.env("OXH_DATA_DIR", &cfg.data_dir);
    if let Some(dir) = cfg.oxh_exe.as_deref().and_then(Path::parent) {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        c.env("PATH", format!("{}:{path}", dir.display()));
    }
    match who {
        Some(u) => {
            let home = u.home.clone().unwrap_or_else(|| cfg.shell_tmp.clone());
            let name = if u.name.is_empty() {
                SHELL_USER
            } else {
                &u.name
            };
            c.env("HOME", &home)
                .env("USER", name)
                .env("LOGNAME", name)
                .current_dir(&home);
            let id = u.id.clone();
            // SAFETY: between fork and exec the hook only makes system calls (isatty,
            // fchown, setgroups, setgid, setuid) on data allocated before the fork.
            unsafe {
                c.pre_exec(move || {
                    // A pty's slave belongs to whoever uses it, as login(1) does.
                    if libc::isatty(0) == 1 {
                        libc::fchown(0, id.uid, id.gid);
                    }
                    id.become_in_child()
                });
            }
        }
        None => {
            if let Ok(home) = std::env::var("HOME") {
                c.current_dir(home);
            }
        }
    }
    c
}

pub(crate) async fn handle(
    cfg: Arc<DeviceConfig>,
    sess: Session,
    inc: Incoming,
    boot: Arc<Notify>,
) {
    let Incoming {
        mut channel,
        request,
    } = inc;
    let req: Request = match proto::from_bytes(&request) {
        Ok(r) => r,
        Err(e) => {
            channel.close(&Exit::fail(format!("[Fail]Unknown command ({e})")));
            return;
        }
    };
    // `shell -b`: the same shell, in the bundle's directory.
    let req = match req {
        Request::ShellIn { bundle, command } => {
            match crate::ohos_device::bundle_shell_line(&cfg, &bundle, &command) {
                Ok(line) => Request::Shell {
                    command: Some(line),
                    pty: None,
                    term: String::new(),
                },
                Err(e) => {
                    channel.close(&Exit::fail(e));
                    return;
                }
            }
        }
        r => r,
    };
    // Host commands that run programs or touch files do it as the shell user.
    let as_shell = matches!(
        req,
        Request::Shell { .. }
            | Request::Hilog { .. }
            | Request::FileSend { .. }
            | Request::FileRecv { .. }
            | Request::Install { .. }
            | Request::Uninstall { .. }
    );
    let who = match cfg.acting_user() {
        Ok(w) => w,
        Err(m) if as_shell => {
            channel.close(&Exit::fail(m));
            return;
        }
        Err(_) => None,
    };
    let act: transfer::ActAs = who.as_ref().map(|u| Arc::new(u.id.clone()));
    let who = who.as_deref();
    match req {
        // Made a Shell above.
        Request::ShellIn { .. } => channel.close(&Exit::fail("[Fail]shell -b")),
        Request::Shell { command, pty, term } => {
            let mut c = match &command {
                Some(line) => shell_command(&cfg, who, &["/bin/sh", "-c", line]),
                None => shell_command(&cfg, who, &["/bin/sh", "-i"]),
            };
            c.env("TERM", if term.is_empty() { "xterm" } else { &term });
            match pty {
                Some(ws) => shell::run_pty(channel, c, ws).await,
                None => shell::run_piped(channel, c).await,
            }
        }
        Request::Hilog { args } => {
            let Some(exe) = cfg.oxh_exe.clone() else {
                channel.close(&Exit::fail("[Fail]hilog is not available on this device"));
                return;
            };
            let mut c = shell_command(&cfg, who, &[&exe.to_string_lossy()]);
            c.arg("--data-dir")
                .arg(&cfg.data_dir)
                .arg("hilog")
                .args(args);
            shell::run_piped(channel, c).await
        }
        Request::FileSend { remote, opts } => {
            let _ = transfer::recv(&mut channel, Path::new(&remote), &opts, &act).await;
            channel.close(&Exit::ok());
        }
        Request::FileRecv { remote, opts } => {
            let r = transfer::send(&mut channel, Path::new(&remote), &opts, &act).await;
            let exit = match r {
                Ok(_) => Exit::ok(),
                Err(m) => Exit::fail(m),
            };
            channel.close(&exit);
        }
        Request::Connect { port } => match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(t) => relay::tcp(channel, t).await,
            Err(e) => channel.close(&Exit::fail(format!(
                "[Fail]cannot connect to tcp:{port} on the device: {e}"
            ))),
        },
        Request::ReverseListen { port, host_port } => {
            // The listener is the daemon's (root), but the host acts as the shell user, who
            // may not take a privileged port: only in smode.
            if port < 1024 && who.is_some() {
                channel.close(&Exit::fail(format!(
                    "[Fail]TCP Port listen failed at {port}: a port below 1024 needs `hdc smode`"
                )));
                return;
            }
            let l = match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => l,
                Err(e) => {
                    channel.close(&Exit::fail(format!(
                        "[Fail]cannot listen on tcp:{port} on the device: {e}"
                    )));
                    return;
                }
            };
            let _ = channel.ctrl(&proto::Ctrl::Text("Forwardport result:OK".into()));
            loop {
                tokio::select! {
                    a = l.accept() => {
                        let Ok((t, _)) = a else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let req = proto::to_bytes(&Request::Connect { port: host_port });
                        match sess.open(&req) {
                            Ok(ch) => { tokio::spawn(relay::tcp(ch, t)); }
                            Err(_) => break,
                        }
                    }
                    ev = channel.recv() => {
                        if let session::Event::Close(_) = ev { break; }
                    }
                }
            }
            channel.close(&Exit::ok());
        }
        Request::Install { replace } => {
            let Some(exe) = cfg.oxh_exe.clone() else {
                channel.close(&Exit::fail("[Fail]bm is not available on this device"));
                return;
            };
            let mut rnd = [0u8; 6];
            let _ = getrandom::fill(&mut rnd);
            // Staged where the shell user may write, as hdcd stages in /data/local/tmp,
            // since `bm install` then reads it as that user.
            let tmp = cfg.shell_tmp.join(format!("install-{}", hex::encode(rnd)));
            let made = transfer::as_user(&act, || {
                std::fs::create_dir_all(&tmp)
                    .map_err(|e| format!("[Fail]cannot stage the package: {e}"))
            });
            if let Err(m) = made.and_then(|r| r) {
                channel.close(&Exit::fail(m));
                return;
            }
            let opts = proto::FileOpts::default();
            match transfer::recv_files(&mut channel, &tmp, &opts, None, &act).await {
                Ok(_) => {
                    let pkg = std::fs::read_dir(&tmp)
                        .ok()
                        .and_then(|mut d| d.next())
                        .and_then(Result::ok)
                        .map(|e| e.path())
                        .unwrap_or_else(|| tmp.clone());
                    let mut c = shell_command(&cfg, who, &[&exe.to_string_lossy()]);
                    c.arg("--data-dir")
                        .arg(&cfg.data_dir)
                        .args(["bm", "install", "-p"])
                        .arg(pkg);
                    if replace {
                        c.arg("-r");
                    }
                    shell::run_piped(channel, c).await;
                }
                Err(m) => channel.close(&Exit::fail(m)),
            }
            let _ = transfer::as_user(&act, || std::fs::remove_dir_all(&tmp));
        }
        Request::Uninstall { name, keep } => {
            let Some(exe) = cfg.oxh_exe.clone() else {
                channel.close(&Exit::fail("[Fail]bm is not available on this device"));
                return;
            };
            let mut c = shell_command(&cfg, who, &[&exe.to_string_lossy()]);
            c.arg("--data-dir")
                .arg(&cfg.data_dir)
                .args(["bm", "uninstall", "-n", &name]);
            if keep {
                c.arg("-k");
            }
            shell::run_piped(channel, c).await
        }
        Request::Smode { root } if root && !cfg.debuggable() => {
            channel.close(&Exit::fail(
                "[Fail]Cannot set root run mode in undebuggable version.",
            ));
        }
        Request::Smode { root } => {
            let v = if root { "1" } else { "0" };
            let exit = match (cfg.set_param)(ROOT_PARAM.into(), v.into()).await {
                Ok(()) => Exit::ok(),
                Err(e) => Exit::fail(format!("[Fail]cannot change the shell mode: {e}")),
            };
            channel.close(&exit);
        }
        Request::Boot => {
            channel.close(&Exit::ok());
            // Let the close reach the host before the process restarts.
            tokio::time::sleep(Duration::from_millis(100)).await;
            boot.notify_one();
        }
    }
}
