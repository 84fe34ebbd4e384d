//! The device side of hdc, run inside oxhd: a TLS listener on the port in `persist.hdc.port`,
//! host authentication, and the commands (shell, files, port forwarding, hilog, boot).
//!
//! Commands run as the daemon's user; a shell's `oxh` invocations get the shell token (the
//! access-token manager gives it to that user running the `oxh` binary), so the access-token
//! rules apply to what the shell does through oxh.

use crate::keys::{self, Verdict};
use crate::proto::{self, Exit, Hello, Request};
use crate::session::{self, Incoming, Session};
use crate::{relay, shell, transfer};
use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
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
    /// Parameters (`persist.hdc.auth_bypass`).
    pub params: ParamGet,
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
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (cfg, acceptor, b) = (cfg.clone(), acceptor.clone(), b.clone());
            tokio::spawn(async move {
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
    let mut tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .map_err(|_| session::SessionError::Closed("tls handshake timed out".into()))??;
    // Big TLS send buffer: a whole file chunk is encrypted in one go, not 64 KiB at a time.
    tls.get_mut()
        .1
        .set_buffer_limit(Some(crate::session::WINDOW));
    let host_key = keys::peer_key(tls.get_ref().1.peer_certificates())
        .ok_or_else(|| session::SessionError::Closed("no host key".into()))?;
    let bypass = (cfg.params)("persist.hdc.auth_bypass").as_deref() == Some("1");
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

fn shell_command(cfg: &DeviceConfig, argv: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(argv[0]);
    c.args(&argv[1..]);
    c.env("OXH_DATA_DIR", &cfg.data_dir);
    if let Some(dir) = cfg.oxh_exe.as_deref().and_then(Path::parent) {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        c.env("PATH", format!("{}:{path}", dir.display()));
    }
    if let Ok(home) = std::env::var("HOME") {
        c.current_dir(home);
    }
    c
}

async fn handle(cfg: Arc<DeviceConfig>, sess: Session, inc: Incoming, boot: Arc<Notify>) {
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
    match req {
        Request::Shell { command, pty, term } => {
            let mut c = match &command {
                Some(line) => shell_command(&cfg, &["/bin/sh", "-c", line]),
                None => shell_command(&cfg, &["/bin/sh", "-i"]),
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
            let mut c = shell_command(&cfg, &[&exe.to_string_lossy()]);
            c.arg("--data-dir")
                .arg(&cfg.data_dir)
                .arg("hilog")
                .args(args);
            shell::run_piped(channel, c).await
        }
        Request::FileSend { remote, opts } => {
            let _ = transfer::recv(&mut channel, Path::new(&remote), &opts).await;
            channel.close(&Exit::ok());
        }
        Request::FileRecv { remote, opts } => {
            let r = transfer::send(&mut channel, Path::new(&remote), &opts).await;
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
            let tmp = cfg
                .hdc_dir
                .join("tmp")
                .join(format!("install-{}", hex::encode(rnd)));
            if let Err(e) = std::fs::create_dir_all(&tmp) {
                channel.close(&Exit::fail(format!("[Fail]cannot stage the package: {e}")));
                return;
            }
            match transfer::recv_files(&mut channel, &tmp, &proto::FileOpts::default(), None).await
            {
                Ok(_) => {
                    let pkg = std::fs::read_dir(&tmp)
                        .ok()
                        .and_then(|mut d| d.next())
                        .and_then(Result::ok)
                        .map(|e| e.path())
                        .unwrap_or_else(|| tmp.clone());
                    let mut c = shell_command(&cfg, &[&exe.to_string_lossy()]);
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
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Request::Uninstall { name, keep } => {
            let Some(exe) = cfg.oxh_exe.clone() else {
                channel.close(&Exit::fail("[Fail]bm is not available on this device"));
                return;
            };
            let mut c = shell_command(&cfg, &[&exe.to_string_lossy()]);
            c.arg("--data-dir")
                .arg(&cfg.data_dir)
                .args(["bm", "uninstall", "-n", &name]);
            if keep {
                c.arg("-k");
            }
            shell::run_piped(channel, c).await
        }
        Request::Boot => {
            channel.close(&Exit::ok());
            // Let the close reach the host before the process restarts.
            tokio::time::sleep(Duration::from_millis(100)).await;
            boot.notify_one();
        }
        other => channel.close(&Exit::fail(format!(
            "[Fail]Unknown command: {other:?} is for the host server"
        ))),
    }
}
