//! The host server (OpenHarmony's `hdc -m`): listens on 127.0.0.1:8710 (or
//! `OHOS_HDC_SERVER_PORT`) for hdc clients, keeps one TLS session per device, and runs each
//! client command as a channel on the device's session. It also owns the port forwards.
//!
//! It serves only its own user: every connection, from an `hdc` client or to a forwarded
//! port, is checked with the kernel ([`crate::local`]) and another user's is refused, since
//! whoever reaches the server acts as this user on every device it is connected to.

use crate::keys;
use crate::limits;
use crate::proto::{self, ClientRequest, Ctrl, Exit, Hello, Request};
use crate::relay;
use crate::session::{self, Channel, Incoming, Session};
use ed25519_dalek::SigningKey;
use rustls::pki_types::ServerName;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The default host server port (OpenHarmony's).
pub const DEFAULT_SERVER_PORT: u16 = 8710;

/// How long a refused connection may take to read its refusal.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// The server port: `OHOS_HDC_SERVER_PORT` or 8710.
pub fn server_port() -> u16 {
    std::env::var("OHOS_HDC_SERVER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_SERVER_PORT)
}

struct Target {
    session: Option<Session>,
    name: String,
}

struct Forward {
    key: String,
    local: String,
    remote: String,
    reverse: bool,
    task: tokio::task::JoinHandle<()>,
}

/// The host server's state.
pub struct Server {
    key: SigningKey,
    home: PathBuf,
    targets: Mutex<BTreeMap<String, Target>>,
    forwards: Mutex<Vec<Forward>>,
    /// Notified by `hdc kill`.
    pub stop: Notify,
    connect_lock: tokio::sync::Mutex<()>,
    clients: limits::Limiter<()>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

impl Server {
    /// A server with the host key from `home` (`~/.harmony`), made on first use.
    pub fn new(home: PathBuf) -> Result<Arc<Server>, keys::KeyError> {
        let key = keys::host_key(&home)?;
        Ok(Arc::new(Server {
            key,
            home,
            targets: Mutex::new(BTreeMap::new()),
            forwards: Mutex::new(Vec::new()),
            stop: Notify::new(),
            connect_lock: tokio::sync::Mutex::new(()),
            clients: limits::server_limiter(),
        }))
    }

    /// Serves clients on `listener` until `hdc kill`.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        loop {
            tokio::select! {
                a = listener.accept() => {
                    let Ok((tcp, _)) = a else { continue };
                    tokio::spawn(self.clone().client(tcp));
                }
                _ = self.stop.notified() => break,
            }
        }
        let all: Vec<Session> = match self.targets.lock() {
            Ok(t) => t.values().filter_map(|t| t.session.clone()).collect(),
            Err(_) => Vec::new(),
        };
        for s in all {
            s.shutdown("[Fail]hdc server stopped");
        }
    }

    async fn client(self: Arc<Self>, mut tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let admitted = crate::local::check_client(&tcp).and_then(|()| self.clients.admit(()));
        let slot = match admitted {
            Ok(slot) => slot,
            Err(refused) => {
                tracing::warn!(tag = "hdc", "client refused: {refused}");
                let no = Hello {
                    version: proto::VERSION,
                    name: "hdc server".into(),
                    refused,
                };
                // A refused peer gets its answer quickly or nothing: it holds no slot.
                let _ = tokio::time::timeout(REFUSAL_WAIT, session::accept_hello(&mut tcp, |_| no))
                    .await;
                return;
            }
        };
        let me = Hello {
            version: proto::VERSION,
            name: "hdc server".into(),
            refused: String::new(),
        };
        if session::accept_hello(&mut tcp, |_| me).await.is_err() {
            return;
        }
        let (sess, mut incoming) = Session::start(tcp, true, "hdc server".into());
        let _slot = slot;
        while let Some(inc) = incoming.recv().await {
            tokio::spawn(self.clone().request(inc));
        }
        sess.closed().await;
    }

    async fn request(self: Arc<Self>, inc: Incoming) {
        let Incoming { channel, request } = inc;
        let cr: ClientRequest = match proto::from_bytes(&request) {
            Ok(r) => r,
            Err(e) => {
                channel.close(&Exit::fail(format!("[Fail]Unknown command ({e})")));
                return;
            }
        };
        match cr.req {
            Request::ListTargets { verbose } => {
                let text = self.list(verbose);
                let _ = channel.ctrl(&Ctrl::Text(text));
                channel.close(&Exit::ok());
            }
            Request::Tconn { addr, remove } => {
                let exit = if remove {
                    self.disconnect(&addr)
                } else {
                    match self.connect(&addr).await {
                        Ok(_) => {
                            let _ = channel.ctrl(&Ctrl::Text("Connect OK".into()));
                            Exit::ok()
                        }
                        Err(e) => Exit::fail(e),
                    }
                };
                channel.close(&exit);
            }
            Request::Kill => {
                let _ = channel.ctrl(&Ctrl::Text("Kill server finish".into()));
                channel.close(&Exit::ok());
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.stop.notify_one();
            }
            Request::FportAdd {
                local,
                remote,
                reverse,
            } => {
                let exit = match self
                    .forward(cr.target.as_deref(), &local, &remote, reverse)
                    .await
                {
                    Ok(()) => {
                        let _ = channel.ctrl(&Ctrl::Text("Forwardport result:OK".into()));
                        Exit::ok()
                    }
                    Err(e) => Exit::fail(e),
                };
                channel.close(&exit);
            }
            Request::FportList => {
                let text = self.forward_list();
                let _ = channel.ctrl(&Ctrl::Text(text));
                channel.close(&Exit::ok());
            }
            Request::FportRemove { local, remote } => {
                let exit = self.forward_remove(&local, &remote);
                channel.close(&exit);
            }
            req => match self.target(cr.target.as_deref()).await {
                Ok((_, sess)) => match sess.open(&proto::to_bytes(&req)) {
                    Ok(dev) => relay::channels(channel, dev).await,
                    Err(e) => channel.close(&Exit::fail(e.to_string())),
                },
                Err(e) => channel.close(&Exit::fail(e)),
            },
        }
    }

    fn list(&self, verbose: bool) -> String {
        let Ok(t) = self.targets.lock() else {
            return "[Empty]".into();
        };
        if t.is_empty() {
            return "[Empty]".into();
        }
        let mut out = Vec::new();
        for (k, v) in t.iter() {
            let alive = v.session.as_ref().is_some_and(|s| s.dead().is_none());
            if verbose {
                let state = if alive { "Connected" } else { "Offline" };
                out.push(format!("{k}\t\tTCP\t{state}\t{}\thdc", v.name));
            } else if alive {
                out.push(k.clone());
            }
        }
        if out.is_empty() {
            "[Empty]".into()
        } else {
            out.join("\n")
        }
    }

    fn disconnect(&self, addr: &str) -> Exit {
        let removed = self.targets.lock().ok().and_then(|mut t| t.remove(addr));
        match removed {
            Some(t) => {
                if let Some(s) = t.session {
                    s.shutdown("[Fail]target removed");
                }
                self.drop_forwards(addr);
                Exit::ok()
            }
            None => Exit::fail(format!("[Fail]Target {addr} is not connected")),
        }
    }

    fn drop_forwards(&self, key: &str) {
        if let Ok(mut f) = self.forwards.lock() {
            f.retain(|fw| {
                if fw.key == key {
                    fw.task.abort();
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Connects (or reconnects) a device; returns its session.
    async fn connect(self: &Arc<Self>, addr: &str) -> Result<Session, String> {
        let _g = self.connect_lock.lock().await;
        if let Ok(t) = self.targets.lock()
            && let Some(s) = t.get(addr).and_then(|t| t.session.clone())
            && s.dead().is_none()
        {
            return Ok(s);
        }
        let (tls, hello) = dial(&self.key, &self.home, addr, true).await?;
        let (sess, incoming) = Session::start(tls, false, format!("device {addr}"));
        if let Ok(mut t) = self.targets.lock() {
            t.insert(
                addr.to_string(),
                Target {
                    session: Some(sess.clone()),
                    name: hello.name,
                },
            );
        }
        tokio::spawn(
            self.clone()
                .device_incoming(addr.to_string(), sess.clone(), incoming),
        );
        Ok(sess)
    }

    /// Channels a device opens (reverse forwards), and cleanup when it goes away.
    async fn device_incoming(
        self: Arc<Self>,
        key: String,
        sess: Session,
        mut incoming: tokio::sync::mpsc::UnboundedReceiver<Incoming>,
    ) {
        while let Some(inc) = incoming.recv().await {
            match proto::from_bytes::<Request>(&inc.request) {
                Ok(Request::Connect { port }) => {
                    tokio::spawn(async move {
                        match TcpStream::connect(("127.0.0.1", port)).await {
                            Ok(t) => relay::tcp(inc.channel, t).await,
                            Err(e) => inc.channel.close(&Exit::fail(format!(
                                "[Fail]cannot connect to tcp:{port} on the host: {e}"
                            ))),
                        }
                    });
                }
                _ => inc
                    .channel
                    .close(&Exit::fail("[Fail]the host server does not take that")),
            }
        }
        sess.closed().await;
        // The device went away: its forwards go too.
        self.drop_forwards(&key);
    }

    /// The session of `-t KEY`, or of the only target; reconnects a device that dropped.
    async fn target(self: &Arc<Self>, key: Option<&str>) -> Result<(String, Session), String> {
        let key = match key {
            Some(k) => k.to_string(),
            None => {
                let keys: Vec<String> = self
                    .targets
                    .lock()
                    .map(|t| t.keys().cloned().collect())
                    .unwrap_or_default();
                match keys.as_slice() {
                    [one] => one.clone(),
                    [] => {
                        return Err(
                            "[Fail]No any target: connect one with `hdc tconn IP:PORT`".into()
                        );
                    }
                    _ => {
                        return Err(
                            "[Fail]ExecuteCommand need connect-key? please confirm a device by \
                             `hdc -t KEY`"
                                .into(),
                        );
                    }
                }
            }
        };
        let s = self.connect(&key).await?;
        Ok((key, s))
    }

    async fn forward(
        self: &Arc<Self>,
        target: Option<&str>,
        local: &str,
        remote: &str,
        reverse: bool,
    ) -> Result<(), String> {
        let (lp, rp) = match (proto::parse_tcp(local), proto::parse_tcp(remote)) {
            (Some(l), Some(r)) => (l, r),
            _ => return Err("[Fail]Incorrect forward command: use tcp:PORT tcp:PORT".into()),
        };
        if self
            .forwards
            .lock()
            .map(|f| f.iter().any(|x| x.local == local && x.remote == remote))
            .unwrap_or(false)
        {
            return Err("[Fail]TCP Port listen failed: the rule exists".into());
        }
        let (key, sess) = self.target(target).await?;
        let task = if reverse {
            // rport DEVICE_SPEC HOST_SPEC: the device listens on the first.
            let req = proto::to_bytes(&Request::ReverseListen {
                port: lp,
                host_port: rp,
            });
            let mut ch = sess.open(&req).map_err(|e| e.to_string())?;
            match ch.recv().await {
                session::Event::Ctrl(Ctrl::Text(_)) => {}
                session::Event::Close(e) => return Err(e.message),
                _ => return Err("[Fail]unexpected answer".into()),
            }
            tokio::spawn(async move {
                // Hold the channel: closing it (abort) stops the device's listener.
                let _ch: Channel = ch;
                std::future::pending::<()>().await;
            })
        } else {
            let l = TcpListener::bind(("127.0.0.1", lp))
                .await
                .map_err(|e| format!("[Fail]TCP Port listen failed at {lp}: {e}"))?;
            let me = self.clone();
            let k = key.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((t, _)) = l.accept().await else {
                        // Out of descriptors or similar: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // A forwarded port reaches the device as this user: for this user alone.
                    if let Err(e) = crate::local::check_client(&t) {
                        tracing::warn!(tag = "hdc", "tcp:{lp} connection refused: {e}");
                        continue;
                    }
                    let Ok((_, s)) = me.target(Some(&k)).await else {
                        continue;
                    };
                    let req = proto::to_bytes(&Request::Connect { port: rp });
                    if let Ok(ch) = s.open(&req) {
                        tokio::spawn(relay::tcp(ch, t));
                    }
                }
            })
        };
        if let Ok(mut f) = self.forwards.lock() {
            f.push(Forward {
                key,
                local: local.into(),
                remote: remote.into(),
                reverse,
                task,
            });
        }
        Ok(())
    }

    fn forward_list(&self) -> String {
        let Ok(f) = self.forwards.lock() else {
            return "[Empty]".into();
        };
        if f.is_empty() {
            return "[Empty]".into();
        }
        f.iter()
            .map(|x| {
                format!(
                    "{}    {} {}    [{}]",
                    x.key,
                    x.local,
                    x.remote,
                    if x.reverse { "Reverse" } else { "Forward" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn forward_remove(&self, local: &str, remote: &str) -> Exit {
        let Ok(mut f) = self.forwards.lock() else {
            return Exit::fail("[Fail]internal error");
        };
        match f
            .iter()
            .position(|x| x.local == local && x.remote == remote)
        {
            Some(i) => {
                let x = f.remove(i);
                x.task.abort();
                // A success message travels in the exit; the client prints it on stdout.
                Exit {
                    code: 0,
                    message: format!("Remove forward ruler success, ruler:{local} {remote}"),
                }
            }
            None => Exit::fail(format!(
                "[Fail]Remove forward ruler failed, ruler is not exist {local} {remote}"
            )),
        }
    }
}

/// A TLS stream to a device, after the hellos.
pub type DeviceStream = tokio_rustls::client::TlsStream<tokio::io::BufReader<TcpStream>>;

/// Dials a device: TCP, TLS 1.3 with the host `key`, the device key pinned in `home` (pinned
/// now on first use when `pin_new`, refused otherwise), hellos. Returns the stream and the
/// device's hello.
pub async fn dial(
    key: &SigningKey,
    home: &std::path::Path,
    addr: &str,
    pin_new: bool,
) -> Result<(DeviceStream, Hello), String> {
    let sa: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("[Fail]Bad connect key {addr}: use IP:PORT"))?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(sa))
        .await
        .map_err(|_| format!("[Fail]Connect to {addr} timed out"))?
        .map_err(|e| format!("[Fail]Connect to {addr} failed: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let pinned = keys::known_device(home, addr);
    if pinned.is_none() && !pin_new {
        return Err(format!("[Fail]{addr} is not a known device"));
    }
    let cfg = keys::client_config(key, pinned).map_err(|e| format!("[Fail]{e}"))?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let name = ServerName::try_from("oxh-device").map_err(|e| e.to_string())?;
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(name, session::buffered(tcp)),
    )
    .await
    .map_err(|_| format!("[Fail]TLS handshake with {addr} timed out"))?
    .map_err(|e| {
        if pinned.is_some() {
            format!(
                "[Fail]The device at {addr} presented another key than the one pinned \
                         on first connect ({e}); if it was reinstalled, remove its line from {}",
                home.join("hdc_known_devices").display()
            )
        } else {
            format!("[Fail]TLS handshake with {addr} failed: {e}")
        }
    })?;
    tls.get_mut().1.set_buffer_limit(Some(session::WINDOW));
    let dev_key = keys::peer_key(tls.get_ref().1.peer_certificates())
        .ok_or_else(|| "[Fail]device sent no key".to_string())?;
    let me = Hello {
        version: proto::VERSION,
        name: host_name(),
        refused: String::new(),
    };
    let hello = session::hello(&mut tls, &me).await.map_err(|e| match e {
        session::SessionError::Refused(r) => r,
        e => format!("[Fail]{addr}: {e}"),
    })?;
    if pinned.is_none() {
        keys::pin_device(home, addr, &dev_key).map_err(|e| format!("[Fail]{e}"))?;
    }
    Ok((tls, hello))
}
