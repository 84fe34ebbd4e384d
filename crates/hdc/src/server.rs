//! The host server (OpenHarmony's `hdc -m`): listens on 127.0.0.1:8710 (or
//! `OHOS_HDC_SERVER_PORT`) for hdc clients, keeps one TLS session per device, and runs each
//! client command as a channel on the device's session. It also owns the port forwards.
//!
//! It serves only its own user: every connection, from an `hdc` client or to a forwarded
//! port, is checked with the kernel ([`crate::local`]) and another user's is refused, since
//! whoever reaches the server acts as this user on every device it is connected to.

use crate::channel::{self, ToServer};
use crate::command::{self, Command};
use crate::conn::{self, HANDSHAKE_TIMEOUT, ServerConn, ServerWriter};
use crate::keys;
use crate::limits;
use crate::proto::{self, Ctrl, Exit, FileOpts, Hello, Request, WinSize};
use crate::relay;
use crate::session::{self, Channel, Event, Incoming, Session};
use crate::transfer;
use ed25519_dalek::SigningKey;
use rustls::pki_types::ServerName;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// OpenHarmony's CMD_CHECK_SERVER: the id in front of a `checkserver` answer.
const CMD_CHECK_SERVER: u16 = 13;

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
    /// Reached on OpenHarmony's wire (it compresses with LZ4, not our zstd).
    ohos: bool,
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
    /// OpenHarmony's RSA host key, loaded when an OpenHarmony device is first dialled.
    ohos_key: std::sync::OnceLock<Arc<crate::hostkey::HostKey>>,
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
            ohos_key: std::sync::OnceLock::new(),
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

    async fn client(self: Arc<Self>, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let admitted = crate::local::check_client(&tcp).and_then(|()| self.clients.admit(()));
        let slot = match admitted {
            Ok(slot) => slot,
            Err(refused) => {
                tracing::warn!(tag = "hdc", "client refused: {refused}");
                // A refused peer gets its answer quickly or nothing: it holds no slot.
                let _ = tokio::time::timeout(REFUSAL_WAIT, refuse(tcp, &refused)).await;
                return;
            }
        };
        let _slot = slot;
        let Ok(mut conn) = ServerConn::accept(tcp, true).await else {
            return;
        };
        // One command a connection, as OpenHarmony's server, unless the client said `alive`
        // first: then server commands may follow one another (hdctool's tracker asks `list
        // targets` again and again on one connection); a device command still ends it.
        let mut keep_alive = false;
        loop {
            let first = if keep_alive {
                Ok(conn.next(true).await)
            } else {
                tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.next(true)).await
            };
            let (pty, line) = match first {
                Ok(Ok(Some(ToServer::Pty { rows, cols, term }))) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.next(true)).await {
                        Ok(Ok(Some(ToServer::Command(c)))) => {
                            (Some((WinSize { rows, cols }, term)), c)
                        }
                        _ => return,
                    }
                }
                Ok(Ok(Some(ToServer::Command(c)))) => (None, c),
                Ok(Err(e)) => {
                    conn.writer.exit(1, &e.to_string()).await;
                    return;
                }
                _ => return,
            };
            if line.starts_with("alive") {
                keep_alive = true;
                continue;
            }
            let cmd = match command::parse(&line) {
                Ok(c) => c,
                Err(e) => {
                    conn.writer.exit(1, &e).await;
                    return;
                }
            };
            let kill = matches!(cmd, Command::Kill);
            let cmd = match self.server_command(&mut conn.hello, cmd).await {
                Ok((code, text)) => {
                    let w = &mut conn.writer;
                    let end = w.ext() || !keep_alive || kill;
                    if w.ext() && code != 0 {
                        w.exit(code, &text).await;
                    } else {
                        if !text.is_empty() {
                            let _ = w.line(&text).await;
                        }
                        if end {
                            w.exit(0, "").await;
                        }
                    }
                    if kill {
                        self.stop.notify_one();
                    }
                    if end {
                        return;
                    }
                    continue;
                }
                Err(cmd) => cmd,
            };
            match cmd {
                Command::Device(req) => {
                    let req = match (req, pty) {
                        (Request::Shell { command: None, .. }, Some((ws, term))) => {
                            Request::Shell {
                                command: None,
                                pty: Some(ws),
                                term,
                            }
                        }
                        // The extension without a pty: an interactive shell on pipes.
                        (Request::Shell { command: None, .. }, None) if conn.writer.ext() => {
                            Request::Shell {
                                command: None,
                                pty: None,
                                term: String::new(),
                            }
                        }
                        (r, _) => r,
                    };
                    self.device_command(conn, req).await;
                }
                Command::CheckServer => {
                    // OpenHarmony's one body behind a command id: CMD_CHECK_SERVER, then the
                    // version.
                    let mut b = CMD_CHECK_SERVER.to_le_bytes().to_vec();
                    b.extend_from_slice(channel::VERSION.as_bytes());
                    conn.writer.check_server(&b).await;
                }
                transfer => self.transfer(conn, transfer).await,
            }
            return;
        }
    }

    /// Runs a command the server answers itself: its status and text; hands back the others.
    async fn server_command(
        self: &Arc<Self>,
        hello: &mut channel::ClientHello,
        cmd: Command,
    ) -> Result<(i32, String), Command> {
        let target = target_key(hello);
        Ok(match cmd {
            Command::Version => (0, format!("{}\n", channel::VERSION)),
            Command::ListTargets { verbose } => (0, self.list(verbose)),
            Command::Tconn { addr, remove } => {
                if remove {
                    let e = self.disconnect(&addr);
                    (e.code, e.message)
                } else if self.is_connected(&addr) {
                    (0, "[Info]Target is connected, repeat operation".to_string())
                } else {
                    match self.connect(&addr).await {
                        Ok(_) => (0, "Connect OK".to_string()),
                        Err(e) => (1, e),
                    }
                }
            }
            Command::Kill => (0, "Kill server finish".to_string()),
            Command::FportAdd {
                local,
                remote,
                reverse,
            } => match self
                .forward(target.as_deref(), &local, &remote, reverse)
                .await
            {
                Ok(()) => (0, "Forwardport result:OK".to_string()),
                Err(e) => (1, e),
            },
            Command::FportList => (0, self.forward_list()),
            Command::FportRemove { local, remote } => {
                let e = self.forward_remove(&local, &remote);
                (e.code, e.message)
            }
            other => return Err(other),
        })
    }

    fn is_connected(&self, addr: &str) -> bool {
        self.targets.lock().is_ok_and(|t| {
            t.get(addr)
                .and_then(|t| t.session.as_ref())
                .is_some_and(|s| s.dead().is_none())
        })
    }

    /// A device command: a channel on the target's session, its output to the client and the
    /// client's input to it, until either ends.
    async fn device_command(self: &Arc<Self>, conn: ServerConn, req: Request) {
        let ServerConn {
            mut reader,
            mut writer,
            hello,
        } = conn;
        let ext = writer.ext();
        let plain_one_shot = !ext
            && matches!(
                req,
                Request::Shell {
                    command: Some(_),
                    ..
                }
            );
        let mut ch = match self.open(&hello, &req).await {
            Ok(ch) => ch,
            Err(e) => return writer.exit(1, &e).await,
        };
        let tx = ch.sender();
        if plain_one_shot || matches!(req, Request::Hilog { .. }) && !ext {
            // OpenHarmony's clients send no input to a command: it must not wait for any.
            let _ = tx.ctrl(&Ctrl::Eof);
        }
        let input = tokio::spawn(async move {
            loop {
                let m = match reader.body().await {
                    Ok(Some(b)) => match conn::decode_to_server(&b, ext, false) {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                    _ => break,
                };
                let r = match m {
                    ToServer::In(d) => tx.send(bytes::Bytes::from(d)).await,
                    ToServer::Eof => tx.ctrl(&Ctrl::Eof),
                    ToServer::WinSize { rows, cols } => {
                        tx.ctrl(&Ctrl::WindowSize(WinSize { rows, cols }))
                    }
                    ToServer::Signal(s) => tx.ctrl(&Ctrl::Signal(s)),
                    _ => Ok(()),
                };
                if r.is_err() {
                    return;
                }
            }
            // The client went away: so does its command.
            tx.close(&Exit::fail("[Fail]the client went away"));
        });
        let (code, message) = pump(&mut ch, &mut writer).await;
        input.abort();
        writer.exit(code, &message).await;
    }

    /// `file send|recv` and `install`: the server reads or writes the host's files (it runs as
    /// the client's user, checked from the kernel) and streams them on a device channel.
    async fn transfer(self: &Arc<Self>, conn: ServerConn, cmd: Command) {
        let ServerConn {
            mut reader,
            mut writer,
            hello,
        } = conn;
        let progress = Arc::new(transfer::Progress::default());
        let p = Some(progress.clone());
        let work = async {
            match cmd {
                Command::FileSend {
                    local,
                    remote,
                    opts,
                    cwd,
                } => {
                    let (mut ch, ohos) = self
                        .open_on(
                            &hello,
                            &Request::FileSend {
                                remote,
                                opts: opts.clone(),
                            },
                        )
                        .await?;
                    // An OpenHarmony device's `-z` is LZ4, done by its driver: our half
                    // moves the bytes as they are.
                    let opts = FileOpts {
                        compress: opts.compress && !ohos,
                        ..opts
                    };
                    let path = host_path(&local, cwd.as_deref());
                    transfer::send_files(&mut ch, &path, &opts, true, p, &None)
                        .await
                        .map(|s| (s.finish_line(), None))
                }
                Command::FileRecv {
                    remote,
                    local,
                    opts,
                    cwd,
                } => {
                    let (mut ch, ohos) = self
                        .open_on(
                            &hello,
                            &Request::FileRecv {
                                remote,
                                opts: opts.clone(),
                            },
                        )
                        .await?;
                    // An OpenHarmony device's `-z` is LZ4, done by its driver: our half
                    // moves the bytes as they are.
                    let opts = FileOpts {
                        compress: opts.compress && !ohos,
                        ..opts
                    };
                    let path = host_path(&local, cwd.as_deref());
                    transfer::recv_progress(&mut ch, &path, &opts, p, &None)
                        .await
                        .map(|s| (s.finish_line(), None))
                }
                Command::Install { path, replace, cwd } => {
                    let mut ch = self.open(&hello, &Request::Install { replace }).await?;
                    let path = host_path(&path, cwd.as_deref());
                    transfer::send_files(&mut ch, &path, &FileOpts::default(), false, p, &None)
                        .await?;
                    Ok((String::new(), Some(ch)))
                }
                _ => Err("[Fail]Unknown command".to_string()),
            }
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let r = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tick.tick() => {
                    use std::sync::atomic::Ordering::Relaxed;
                    let (d, t) = (progress.done.load(Relaxed), progress.total.load(Relaxed));
                    let _ = writer.progress(d, t).await;
                }
                // The client went away (or broke the protocol): stop.
                m = reader.body() => if !matches!(m, Ok(Some(_))) { return },
            }
        };
        match r {
            Ok((line, then)) => {
                if !line.is_empty() {
                    let _ = writer.line(&line).await;
                }
                // An install: the device's installer speaks next.
                let (code, message) = match then {
                    Some(mut ch) => pump(&mut ch, &mut writer).await,
                    None => (0, String::new()),
                };
                writer.exit(code, &message).await
            }
            Err(e) => writer.exit(1, &e).await,
        }
    }

    /// A channel for `req` on the client's target.
    async fn open(
        self: &Arc<Self>,
        hello: &channel::ClientHello,
        req: &Request,
    ) -> Result<Channel, String> {
        self.open_on(hello, req).await.map(|(ch, _)| ch)
    }

    /// As [`Server::open`], and whether the target is on OpenHarmony's wire.
    async fn open_on(
        self: &Arc<Self>,
        hello: &channel::ClientHello,
        req: &Request,
    ) -> Result<(Channel, bool), String> {
        let key = target_key(hello);
        let (k, sess) = self.target(key.as_deref()).await?;
        let ohos = self
            .targets
            .lock()
            .map(|t| t.get(&k).is_some_and(|t| t.ohos))
            .unwrap_or(false);
        let ch = sess
            .open(&proto::to_bytes(req))
            .map_err(|e| e.to_string())?;
        Ok((ch, ohos))
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
                out.push(format!("{k}\t\tTCP\t{state}\t{}\n", v.name));
            } else if alive {
                out.push(format!("{k}\n"));
            }
        }
        if out.is_empty() {
            "[Empty]".into()
        } else {
            out.concat()
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
        let (sess, incoming, name, ohos) = match dial(&self.key, &self.home, addr, true).await {
            Ok((tls, hello)) => {
                let (sess, incoming) = Session::start(tls, false, format!("device {addr}"));
                (sess, incoming, hello.name, false)
            }
            // Not oxharmony: OpenHarmony's own wire, as its hdc would.
            Err(DialError::NotOxharmony) => {
                let dev = self.dial_ohos(addr).await?;
                (dev.session, dev.incoming, dev.name, true)
            }
            Err(DialError::Failed(e)) => return Err(e),
        };
        if let Ok(mut t) = self.targets.lock() {
            t.insert(
                addr.to_string(),
                Target {
                    session: Some(sess.clone()),
                    name,
                    ohos,
                },
            );
        }
        tokio::spawn(
            self.clone()
                .device_incoming(addr.to_string(), sess.clone(), incoming),
        );
        Ok(sess)
    }

    /// A session with an OpenHarmony device at `addr`, authenticated with OpenHarmony's RSA
    /// host key (made on first use: `~/.harmony/hdckey`).
    async fn dial_ohos(&self, addr: &str) -> Result<crate::ohos_host::OhosDevice, String> {
        let key = match self.ohos_key.get() {
            Some(k) => k.clone(),
            None => {
                let home = self.home.clone();
                let k = tokio::task::spawn_blocking(move || {
                    crate::hostkey::HostKey::load_or_create(&home)
                })
                .await
                .map_err(|e| format!("[Fail]{e}"))?
                .map_err(|e| format!("[Fail]{e}"))?;
                self.ohos_key.get_or_init(|| Arc::new(k)).clone()
            }
        };
        let tcp = tcp_connect(addr).await?;
        crate::ohos_host::connect(tcp, &key, &host_name(), addr).await
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

/// Says why a client is refused, after the handshake (OpenHarmony's clients read the
/// handshake first), then lets it read that before the connection goes.
async fn refuse(tcp: TcpStream, why: &str) {
    let Ok(mut conn) = ServerConn::accept(tcp, false).await else {
        return;
    };
    conn.writer.exit(1, why).await;
    // Closing with unread input would reset the connection and lose the answer: drain.
    while let Ok(Some(_)) = conn.reader.body().await {}
}

/// The target a client named in its handshake (`-t KEY`); none or `any`: the only one.
fn target_key(hello: &channel::ClientHello) -> Option<String> {
    match hello.connect_key.as_str() {
        "" | "any" => None,
        k => Some(k.to_string()),
    }
}

/// A host path from a client: relative ones are the client's (`-cwd`).
fn host_path(p: &str, cwd: Option<&str>) -> PathBuf {
    let p = std::path::Path::new(p);
    match cwd {
        Some(c) if p.is_relative() => std::path::Path::new(c).join(p),
        _ => p.to_path_buf(),
    }
}

/// A device channel's output to the client until it closes; returns its exit.
async fn pump(ch: &mut Channel, w: &mut ServerWriter) -> (i32, String) {
    loop {
        let r = match ch.recv().await {
            Event::Data(d) => w.out(&d).await,
            Event::Ctrl(Ctrl::Stderr(b)) => w.err(&b).await,
            Event::Ctrl(Ctrl::Text(t)) => w.line(&t).await,
            Event::Ctrl(_) => Ok(()),
            Event::Close(e) => return (e.code, e.message),
        };
        if r.is_err() {
            // The client is gone; dropping the channel closes it.
            return (1, String::new());
        }
    }
}

/// A TLS stream to a device, after the hellos.
pub type DeviceStream = tokio_rustls::client::TlsStream<tokio::io::BufReader<TcpStream>>;

/// Why a dial gave no oxharmony session.
#[derive(Debug)]
pub enum DialError {
    /// The device closed the connection at our TLS hello without a word, as OpenHarmony's
    /// hdcd does with anything that is not its own packet (only for a device with no pinned
    /// key: a pinned one that does this is a failure).
    NotOxharmony,
    /// Anything else, in words for the user.
    Failed(String),
}

impl From<String> for DialError {
    fn from(s: String) -> Self {
        DialError::Failed(s)
    }
}

/// TCP to a device's `addr`, bounded in time.
async fn tcp_connect(addr: &str) -> Result<TcpStream, String> {
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
    Ok(tcp)
}

/// Dials a device: TCP, TLS 1.3 with the host `key`, the device key pinned in `home` (pinned
/// now on first use when `pin_new`, refused otherwise), hellos. Returns the stream and the
/// device's hello.
pub async fn dial(
    key: &SigningKey,
    home: &std::path::Path,
    addr: &str,
    pin_new: bool,
) -> Result<(DeviceStream, Hello), DialError> {
    let tcp = tcp_connect(addr).await?;
    let pinned = keys::known_device(home, addr);
    if pinned.is_none() && !pin_new {
        return Err(format!("[Fail]{addr} is not a known device").into());
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
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
        let dropped = matches!(
            e.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted
        );
        match (&pinned, dropped) {
            (None, true) => DialError::NotOxharmony,
            (Some(_), true) => DialError::Failed(format!(
                "[Fail]The device at {addr} dropped oxharmony's TLS hello ({e}), but its key \
                 was pinned on first connect; if it was replaced, remove its line from {}",
                home.join("hdc_known_devices").display()
            )),
            (Some(_), false) => DialError::Failed(format!(
                "[Fail]The device at {addr} presented another key than the one pinned \
                 on first connect ({e}); if it was reinstalled, remove its line from {}",
                home.join("hdc_known_devices").display()
            )),
            (None, false) => {
                DialError::Failed(format!("[Fail]TLS handshake with {addr} failed: {e}"))
            }
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
