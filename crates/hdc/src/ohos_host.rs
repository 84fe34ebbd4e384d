//! Our host server's driver for OpenHarmony's own devices (hdcd): a device that does not
//! speak oxharmony's protocol gets OpenHarmony's session wire, with OpenHarmony's RSA host
//! key (`~/.harmony/hdckey`). The server keeps using one [`Session`] per device; this
//! module answers that session's channels by translating them into OpenHarmony's commands,
//! the mirror of [`crate::ohos_device`]:
//!
//! | our channel                      | OpenHarmony's commands on its channel              |
//! |----------------------------------|----------------------------------------------------|
//! | Shell one command                | CMD_UNITY_EXECUTE (1001), output as ECHO_RAW       |
//! | Shell interactive                | CMD_SHELL_INIT (2000), input as CMD_SHELL_DATA     |
//! | Hilog / Boot / Smode             | CMD_UNITY_HILOG / REBOOT / ROOTRUN                 |
//! | FileSend (host → device)         | WAKEUP, FILE_CHECK, FILE_DATA..., FILE_FINISH (we are master) |
//! | FileRecv (device → host)         | WAKEUP, FILE_INIT; the device is master            |
//! | Install                          | WAKEUP, APP_CHECK, APP_DATA... per package; APP_FINISH's words |
//! | Uninstall                        | WAKEUP, APP_UNINSTALL `[-k] BUNDLE\0`; APP_FINISH's words |
//!
//! What OpenHarmony's wire cannot carry is lost here, and said so: a shell's exit status
//! (0, or 1 after a `[Fail]` message), pty size changes, signals.

use crate::hostkey::HostKey;
use crate::ohos::{self, TransferConfig};
use crate::ohos_auth::{CMD_KERNEL_CHANNEL_CLOSE, CMD_KERNEL_ECHO};
use crate::ohos_device::{
    CMD_KERNEL_ECHO_RAW, CMD_KERNEL_WAKEUP_SLAVETASK, CMD_SHELL_DATA, CMD_SHELL_INIT,
    CMD_UNITY_EXECUTE, CMD_UNITY_HILOG, CMD_UNITY_REBOOT, CMD_UNITY_ROOTRUN,
};
use crate::ohos_file::{
    self as f, BEGIN_FLAGS, CMD_APP_BEGIN, CMD_APP_CHECK, CMD_APP_DATA, CMD_APP_FINISH,
    CMD_APP_UNINSTALL, CMD_FILE_BEGIN, CMD_FILE_CHECK, CMD_FILE_DATA, CMD_FILE_FINISH,
    CMD_FILE_INIT, Out, SEND_CHUNK, packet,
};
use crate::ohos_forward::{
    CMD_FORWARD_ACTIVE_MASTER, CMD_FORWARD_ACTIVE_SLAVE, CMD_FORWARD_CHECK,
    CMD_FORWARD_CHECK_RESULT, CMD_FORWARD_DATA, CMD_FORWARD_FREE_CONTEXT, CMD_FORWARD_INIT,
    CMD_FORWARD_SUCCESS, point, split_id,
};
use crate::proto::{Ctrl, Exit, FileMeta, FileOpts, Request};
use crate::session::{Channel, Event, Incoming, Session};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Packets queued for one channel's task before the device's reader waits (the socket's
/// own back-pressure then holds the device).
const CHANNEL_QUEUE: usize = 8;
/// Echo level of a failure (`[Fail]` texts).
const MSG_FAIL: u8 = 0;

/// A connected OpenHarmony device.
pub struct OhosDevice {
    /// The session the host server opens channels on.
    pub session: Session,
    /// The channels the device side opens to the server (a reverse forward's connections).
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Its name (AUTH_OK's `devname`).
    pub name: String,
}

/// Authenticates to an OpenHarmony device on `tcp` with `key` (asking for its TLS-PSK
/// channel, which a device that has it then uses) and starts the session the host server
/// uses. An unknown key gets the device's own words (`[E000002]...`).
pub async fn connect(
    tcp: TcpStream,
    key: &HostKey,
    host_name: &str,
    connect_key: &str,
) -> Result<OhosDevice, String> {
    let (reader, mut tx, info) =
        crate::ohos_connect::host_handshake(tcp, key, host_name, connect_key, true)
            .await
            .map_err(|e| format!("[Fail]{e}"))?;
    if !info.encrypted {
        tracing::warn!(
            tag = "hdc",
            "OpenHarmony device {connect_key} took no encrypted channel: its session is plaintext"
        );
    }
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = async move {
        while let Some(b) = out_rx.recv().await {
            if tx.send(&b).await.is_err() {
                return;
            }
        }
        let _ = tx.shutdown().await;
    };
    Ok(start(reader, writer, out_tx, info.name, connect_key))
}

type Routes = Arc<Mutex<HashMap<u32, mpsc::Sender<ohos::Packet>>>>;

fn start(
    mut reader: crate::ohos_link::PacketRx,
    writer: impl std::future::Future<Output = ()> + Send + 'static,
    out: Out,
    name: String,
    connect_key: &str,
) -> OhosDevice {
    let label = format!("OpenHarmony device {connect_key}");
    let (a, b) = tokio::io::duplex(1 << 20);
    let (host, host_incoming) = Session::start(b, false, label.clone());
    let (dev, mut incoming) = Session::start(a, true, label);
    let routes: Routes = Arc::default();
    let writer = tokio::spawn(writer);
    // The device's packets, to their channels' tasks.
    let read = {
        let (routes, out) = (routes.clone(), out.clone());
        tokio::spawn(async move {
            loop {
                let p = match reader.next().await {
                    Ok(Some(p)) => p,
                    Ok(None) => break "the device closed the connection".to_string(),
                    Err(e) => break e.to_string(),
                };
                let (c, cmd) = (p.protect.channel_id, p.protect.command_flag);
                let route = routes.lock().ok().and_then(|r| r.get(&c).cloned());
                match route {
                    Some(tx) => {
                        if tx.send(p).await.is_err()
                            && let Ok(mut r) = routes.lock()
                        {
                            r.remove(&c);
                        }
                    }
                    // As OpenHarmony's server: a packet for no channel is answered with a
                    // final close, channel 0's close with its count down.
                    None if cmd == CMD_KERNEL_CHANNEL_CLOSE => {
                        if let Some(&n) = p.payload.first()
                            && n > 0
                        {
                            let _ = out
                                .send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[n - 1]))
                                .await;
                        }
                    }
                    None if c != 0 => {
                        let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[0])).await;
                    }
                    None => {}
                }
            }
        })
    };
    // The host server's channels.
    let serve = {
        let (routes, dev) = (routes.clone(), dev.clone());
        tokio::spawn(async move {
            let mut next = 0u32;
            while let Some(inc) = incoming.recv().await {
                next = next.wrapping_add(1).max(1);
                let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
                if let Ok(mut r) = routes.lock() {
                    r.retain(|_, t| !t.is_closed());
                    r.insert(next, tx);
                }
                tokio::spawn(serve_channel(next, inc, rx, out.clone(), dev.clone()));
            }
        })
    };
    let (h, d) = (host.clone(), dev.clone());
    tokio::spawn(async move {
        tokio::select! {
            why = read => {
                let why = why.unwrap_or_else(|e| e.to_string());
                h.shutdown(&format!("[Fail]{why}"));
            }
            // The server dropped the device (tconn -remove, kill).
            _ = h.closed() => {}
        }
        d.shutdown("the device went away");
        serve.abort();
        writer.abort();
    });
    OhosDevice {
        session: host,
        incoming: host_incoming,
        name,
    }
}

/// One of the server's channels, as OpenHarmony's commands on channel `c`.
async fn serve_channel(
    c: u32,
    inc: Incoming,
    rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
    dev: Session,
) {
    let Incoming { request, channel } = inc;
    let req = match crate::proto::from_bytes::<Request>(&request) {
        Ok(r) => r,
        Err(e) => return channel.close(&Exit::fail(format!("[Fail]bad request: {e}"))),
    };
    let text = |cmd: u32, t: String| (cmd, t.into_bytes());
    let run = match req {
        Request::Shell {
            command: Some(cmd), ..
        } => text(CMD_UNITY_EXECUTE, cmd),
        Request::Shell { command: None, .. } => text(CMD_SHELL_INIT, String::new()),
        Request::ShellIn { bundle, command } => (
            crate::ohos_device::CMD_UNITY_EXECUTE_EX,
            ohos::tlv_buf(&[
                (ohos::shell_tag::CMD, command.as_bytes()),
                (ohos::shell_tag::BUNDLE, bundle.as_bytes()),
            ]),
        ),
        Request::Hilog { args } => {
            let line = args
                .iter()
                .map(|a| crate::channel::quote_arg(a))
                .collect::<Vec<_>>()
                .join(" ");
            text(CMD_UNITY_HILOG, line)
        }
        Request::Boot => text(CMD_UNITY_REBOOT, String::new()),
        Request::Smode { root } => text(
            CMD_UNITY_ROOTRUN,
            if root { String::new() } else { "r".into() },
        ),
        Request::FileSend { remote, opts } => {
            return file_send(c, remote, opts, channel, rx, out).await;
        }
        Request::FileRecv { remote, opts } => {
            return file_recv(c, remote, opts, channel, rx, out).await;
        }
        Request::Install { replace } => return install(c, replace, channel, rx, out).await,
        Request::Uninstall { name, keep } => {
            return uninstall(c, name, keep, channel, rx, out).await;
        }
        Request::Connect { port } => return forward(c, port, channel, rx, out).await,
        Request::ReverseListen { port, host_port } => {
            return reverse(c, port, host_port, channel, rx, out, dev).await;
        }
    };
    command(c, run.0, run.1, channel, rx, out).await
}

/// Bytes of one FORWARD_DATA (hdc reads at most 512 KiB; its packets hold 511 KiB).
const FORWARD_CHUNK: usize = 256 * 1024;

/// A forward payload: the context id (big-endian, as hdc's htonl) and the rest.
fn fwd(id: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + rest.len());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(rest);
    p
}

fn id_of(p: &ohos::Packet) -> Option<u32> {
    split_id(&p.payload).map(|(id, _)| id)
}

fn random_id() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_ne_bytes(b).max(1)
}

/// One forwarded connection (`fport`: the server accepted it on the host): its own channel
/// with one context, as hdc's master does for each connection (WAKEUP, CHECK, ACTIVE_SLAVE;
/// the device connects to tcp:`port` and answers ACTIVE_MASTER), then the bytes both ways.
async fn forward(
    c: u32,
    port: u16,
    mut ch: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
) {
    let spec = format!("tcp:{port}");
    let id = random_id();
    let setup = async {
        out.send(packet(c, CMD_KERNEL_WAKEUP_SLAVETASK, &[]))
            .await
            .map_err(|_| f::GONE.to_string())?;
        out.send(packet(c, CMD_FORWARD_CHECK, &point(id, &spec)))
            .await
            .map_err(|_| f::GONE.to_string())?;
        f::wait_for(&mut rx, CMD_FORWARD_CHECK_RESULT).await?;
        out.send(packet(c, CMD_FORWARD_ACTIVE_SLAVE, &point(id, &spec)))
            .await
            .map_err(|_| f::GONE.to_string())?;
        loop {
            let Some(p) = rx.recv().await else {
                return Err(f::GONE.to_string());
            };
            match p.protect.command_flag {
                CMD_FORWARD_ACTIVE_MASTER if id_of(&p) == Some(id) => return Ok(()),
                CMD_FORWARD_FREE_CONTEXT if id_of(&p) == Some(id) => {
                    return Err(format!("[Fail]the device could not connect to {spec}"));
                }
                CMD_KERNEL_CHANNEL_CLOSE => {
                    return Err(format!("[Fail]the device refused forwarding to {spec}"));
                }
                _ => {}
            }
        }
    };
    if let Err(e) = setup.await {
        let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
        return ch.close(&Exit::fail(e));
    }
    let exit = pump_context(c, id, &mut ch, &mut rx, &out).await;
    let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[0])).await;
    ch.close(&exit);
}

/// A context's bytes both ways until either side ends it (FREE_CONTEXT; our EOF ends it
/// whole, as hdc has no half-close).
async fn pump_context(
    c: u32,
    id: u32,
    ch: &mut Channel,
    rx: &mut mpsc::Receiver<ohos::Packet>,
    out: &Out,
) -> Exit {
    let tx = ch.sender();
    loop {
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else { return Exit::fail(f::GONE) };
                if id_of(&p) != Some(id) {
                    continue;
                }
                match p.protect.command_flag {
                    CMD_FORWARD_DATA
                        if tx.send(p.payload.slice(4..)).await.is_err() =>
                    {
                        let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &fwd(id, &[]))).await;
                        return Exit::ok();
                    }
                    CMD_FORWARD_FREE_CONTEXT => {
                        let _ = tx.ctrl(&Ctrl::Eof);
                        return Exit::ok();
                    }
                    _ => {}
                }
            }
            ev = ch.recv() => match ev {
                Event::Data(d) => {
                    for part in d.chunks(FORWARD_CHUNK) {
                        if out.send(packet(c, CMD_FORWARD_DATA, &fwd(id, part))).await.is_err() {
                            return Exit::fail(f::GONE);
                        }
                    }
                }
                Event::Ctrl(Ctrl::Eof) | Event::Close(_) => {
                    let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &fwd(id, &[]))).await;
                    return Exit::ok();
                }
                Event::Ctrl(_) => {}
            },
        }
    }
}

/// `rport`: the device listens on tcp:`port` (FORWARD_INIT, it is master); each connection it
/// accepts (ACTIVE_SLAVE) becomes a Connect channel to the server for tcp:`host_port`, as our
/// own devices open them. Closing the server's channel ends the rule.
async fn reverse(
    c: u32,
    port: u16,
    host_port: u16,
    mut ch: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
    dev: Session,
) {
    let init = format!("tcp:{port} tcp:{host_port}\0");
    if out
        .send(packet(c, CMD_FORWARD_INIT, init.as_bytes()))
        .await
        .is_err()
    {
        return ch.close(&Exit::fail(f::GONE));
    }
    let tx = ch.sender();
    let mut why: Option<String> = None;
    let mut up = false;
    // Each context's packets, to its connection's task.
    let mut ctxs: HashMap<u32, mpsc::Sender<ohos::Packet>> = HashMap::new();
    loop {
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else { return ch.close(&Exit::fail(f::GONE)) };
                match p.protect.command_flag {
                    CMD_FORWARD_CHECK => {
                        if let Some(id) = id_of(&p) {
                            let _ = out.send(packet(c, CMD_FORWARD_CHECK_RESULT, &fwd(id, &[1]))).await;
                        }
                    }
                    CMD_KERNEL_ECHO => {
                        let (level, t) = echo_of(&p.payload);
                        if level == MSG_FAIL {
                            why = Some(t);
                        }
                    }
                    CMD_FORWARD_SUCCESS if !up => {
                        up = true;
                        let _ = tx.ctrl(&Ctrl::Text("Forwardport result:OK".into()));
                    }
                    CMD_FORWARD_ACTIVE_SLAVE => {
                        let Some(id) = id_of(&p) else { continue };
                        ctxs.retain(|_, t| !t.is_closed());
                        if ctxs.len() >= crate::limits::MAX_OHOS_FORWARD_CONTEXTS {
                            let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &fwd(id, &[]))).await;
                            continue;
                        }
                        let req = crate::proto::to_bytes(&Request::Connect { port: host_port });
                        let Ok(conn) = dev.open(&req) else {
                            let _ = out.send(packet(c, CMD_FORWARD_FREE_CONTEXT, &fwd(id, &[]))).await;
                            continue;
                        };
                        let (ctx_tx, ctx_rx) = mpsc::channel(CHANNEL_QUEUE);
                        ctxs.insert(id, ctx_tx);
                        tokio::spawn(reverse_context(c, id, conn, ctx_rx, out.clone()));
                    }
                    CMD_FORWARD_DATA | CMD_FORWARD_FREE_CONTEXT => {
                        let Some(id) = id_of(&p) else { continue };
                        let free = p.protect.command_flag == CMD_FORWARD_FREE_CONTEXT;
                        if let Some(t) = ctxs.get(&id) {
                            let _ = t.send(p).await;
                        }
                        if free {
                            ctxs.remove(&id);
                        }
                    }
                    CMD_KERNEL_CHANNEL_CLOSE => {
                        answer_close(c, &p, &out).await;
                        let why = why.unwrap_or_else(|| format!("[Fail]the device ended tcp:{port}"));
                        return ch.close(&Exit::fail(why));
                    }
                    _ => {}
                }
            }
            ev = ch.recv() => if let Event::Close(_) = ev {
                // The rule is removed: so is the device's listener, and every connection.
                let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[0])).await;
                return;
            },
        }
    }
}

/// One connection the device accepted for a reverse forward: the server's Connect channel
/// `conn` answered, then ACTIVE_MASTER and the bytes both ways.
async fn reverse_context(
    c: u32,
    id: u32,
    mut conn: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
) {
    // The server connects to the host port before any byte flows; a failure closes the
    // channel at once, which is FREE_CONTEXT to the device.
    let _ = out
        .send(packet(c, CMD_FORWARD_ACTIVE_MASTER, &fwd(id, &[])))
        .await;
    let exit = pump_context(c, id, &mut conn, &mut rx, &out).await;
    conn.close(&exit);
}

/// A command whose output comes back as ECHO_RAW and ECHO until the device closes the
/// channel; an interactive shell's input goes as CMD_SHELL_DATA.
async fn command(
    c: u32,
    cmd: u32,
    payload: Vec<u8>,
    mut ch: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
) {
    if out.send(packet(c, cmd, &payload)).await.is_err() {
        return ch.close(&Exit::fail(f::GONE));
    }
    let tx = ch.sender();
    let mut failed = false;
    loop {
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else { return ch.close(&Exit::fail(f::GONE)) };
                if p.protect.command_flag == CMD_KERNEL_ECHO_RAW {
                    if tx.send(p.payload).await.is_err() {
                        let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                        return;
                    }
                    continue;
                }
                match p.protect.command_flag {
                    CMD_KERNEL_ECHO => {
                        let (level, t) = echo_of(&p.payload);
                        let _ = if level == MSG_FAIL {
                            failed = true;
                            tx.ctrl(&Ctrl::Stderr(format!("{t}\n").into_bytes()))
                        } else {
                            tx.ctrl(&Ctrl::Text(t))
                        };
                    }
                    CMD_KERNEL_CHANNEL_CLOSE => {
                        answer_close(c, &p, &out).await;
                        let code = i32::from(failed);
                        return ch.close(&Exit { code, message: String::new() });
                    }
                    _ => {}
                }
            }
            ev = ch.recv() => match ev {
                Event::Data(d) if cmd == CMD_SHELL_INIT
                    && out.send(packet(c, CMD_SHELL_DATA, &d)).await.is_err() => return,
                Event::Close(_) => {
                    // The client went away: so does the command.
                    let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                    return;
                }
                _ => {}
            },
        }
    }
}

/// An echo's level and text.
fn echo_of(payload: &[u8]) -> (u8, String) {
    match payload.split_first() {
        Some((&l, t)) => (l, String::from_utf8_lossy(t).into_owned()),
        None => (MSG_FAIL, String::new()),
    }
}

/// Answers the device's close `[n]` with `[n-1]` when n > 0, as OpenHarmony's server does.
async fn answer_close(c: u32, p: &ohos::Packet, out: &Out) {
    if let Some(&n) = p.payload.first()
        && n > 0
    {
        let _ = out
            .send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[n - 1]))
            .await;
    }
}

/// The device's last word on a transfer after the data: its ECHO (a summary, or a
/// failure) and its close.
async fn last_word(c: u32, rx: &mut mpsc::Receiver<ohos::Packet>, out: &Out) -> Exit {
    let mut said: Option<(u8, String)> = None;
    while let Some(p) = rx.recv().await {
        match p.protect.command_flag {
            CMD_KERNEL_ECHO => said = Some(echo_of(&p.payload)),
            CMD_KERNEL_CHANNEL_CLOSE => {
                answer_close(c, &p, out).await;
                return match said {
                    Some((MSG_FAIL, t)) => Exit::fail(t),
                    _ => Exit::ok(),
                };
            }
            _ => {}
        }
    }
    Exit::fail(f::GONE)
}

/// `file send`: the server's files on `ch` go to the device's `remote`, we are master.
async fn file_send(
    c: u32,
    remote: String,
    opts: FileOpts,
    mut ch: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
) {
    let _ = out.send(packet(c, CMD_KERNEL_WAKEUP_SLAVETASK, &[])).await;
    let r = f::send_all(
        c,
        &mut ch,
        &mut rx,
        &out,
        &remote,
        "file",
        opts.keep_attrs,
        opts.compress,
    )
    .await;
    match r {
        Ok(()) => {
            let exit = last_word(c, &mut rx, &out).await;
            ch.close(&exit);
        }
        Err(e) => {
            let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
            ch.close(&Exit::fail(e));
        }
    }
}

/// The path a received file goes to under the transfer's root `root`: what the device
/// names in TransferConfig.path (`root` or `root/sub/...`, as we asked), never outside it.
fn rel_of(cfg: &TransferConfig, root: &str) -> String {
    let p = cfg.path.trim_start_matches("./");
    let clean = |r: &str| {
        r.split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
    };
    match p.strip_prefix(root) {
        Some("") => root.to_string(),
        Some(rest) if rest.starts_with('/') && clean(rest) => format!("{root}{rest}"),
        // Another shape (another hdcd's choice): the file under the root by its name.
        _ => format!("{root}/{}", f::file_name(cfg)),
    }
}

/// `file recv`: the device is master (FILE_INIT with our arguments); its files come to the
/// server's receiver on `ch`.
async fn file_recv(
    c: u32,
    remote: String,
    opts: FileOpts,
    mut ch: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
) {
    let root = remote
        .rsplit('/')
        .find(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("file")
        .to_string();
    let mut args = String::new();
    if opts.keep_attrs {
        args.push_str("-a ");
    }
    if opts.compress {
        args.push_str("-z ");
    }
    args.push_str(&crate::channel::quote_arg(&remote));
    args.push(' ');
    args.push_str(&crate::channel::quote_arg(&root));
    let _ = out.send(packet(c, CMD_KERNEL_WAKEUP_SLAVETASK, &[])).await;
    let _ = out.send(packet(c, CMD_FILE_INIT, args.as_bytes())).await;
    let tx = ch.sender();
    let mut dirs: Vec<String> = Vec::new();
    let mut why = None;
    let fail = |ch: Channel, e: String| ch.close(&Exit::fail(e));
    while let Some(p) = rx.recv().await {
        match p.protect.command_flag {
            CMD_FILE_CHECK => {
                let cfg = match TransferConfig::decode(&p.payload) {
                    Ok(cfg) => cfg,
                    Err(e) => {
                        let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                        return fail(ch, format!("[Fail]{e}"));
                    }
                };
                let rel = rel_of(&cfg, &root);
                // Parents first, as our receiver expects of a tree.
                let mut parent = String::new();
                let parts: Vec<&str> = rel.split('/').collect();
                for part in &parts[..parts.len().saturating_sub(1)] {
                    if !parent.is_empty() {
                        parent.push('/');
                    }
                    parent.push_str(part);
                    if !dirs.contains(&parent) {
                        dirs.push(parent.clone());
                        let _ = tx.ctrl(&Ctrl::FileBegin(FileMeta {
                            rel: parent.clone(),
                            dir: true,
                            size: 0,
                            mode: 0o755,
                            mtime: 0,
                            mtime_ns: 0,
                        }));
                    }
                }
                let meta = FileMeta {
                    rel,
                    dir: false,
                    size: cfg.file_size,
                    mode: 0o644,
                    mtime: (cfg.mtime / 1_000_000_000) as i64,
                    mtime_ns: (cfg.mtime % 1_000_000_000) as u32,
                };
                if tx.ctrl(&Ctrl::FileBegin(meta)).is_err() {
                    let m = f::close_reason(&mut ch).await;
                    let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                    return fail(ch, m);
                }
                let _ = out.send(packet(c, CMD_FILE_BEGIN, &BEGIN_FLAGS)).await;
                if let Err(e) = f::stream_in(&mut ch, &mut rx, cfg.file_size, CMD_FILE_DATA).await {
                    let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                    return fail(ch, e);
                }
                let _ = out.send(packet(c, CMD_FILE_FINISH, &[1])).await;
            }
            CMD_FILE_FINISH => {
                // All sent: our receiver's close says whether all is written.
                let _ = tx.ctrl(&Ctrl::Done);
                let m = f::close_reason(&mut ch).await;
                let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                if !m.is_empty() {
                    tracing::debug!("file recv from an OpenHarmony device: {m}");
                }
                return;
            }
            f::CMD_FILE_MODE | f::CMD_DIR_MODE => {
                let _ = out.send(packet(c, p.protect.command_flag, &[])).await;
            }
            CMD_KERNEL_ECHO => {
                let (level, t) = echo_of(&p.payload);
                if level == MSG_FAIL {
                    why = Some(t);
                }
            }
            CMD_KERNEL_CHANNEL_CLOSE => {
                answer_close(c, &p, &out).await;
                return fail(
                    ch,
                    why.unwrap_or_else(|| "[Fail]the device ended the transfer".into()),
                );
            }
            _ => {}
        }
    }
    fail(ch, f::GONE.into())
}

/// A random name of `n` letters and digits, as hdc names staged packages.
fn random_name(n: usize) -> String {
    const ABC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| char::from(ABC[usize::from(*x) % ABC.len()]))
        .collect()
}

/// What a bundle manager's words say: success.
fn succeeded(words: &str) -> bool {
    words.contains("successfully") && !words.contains("error:")
}

/// One package's APP_CHECK (options `-r` with `replace`), waiting for the device's
/// APP_BEGIN.
async fn app_check(
    c: u32,
    size: u64,
    ext: &str,
    replace: bool,
    rx: &mut mpsc::Receiver<ohos::Packet>,
    out: &Out,
) -> Result<(), String> {
    let cfg = TransferConfig {
        file_size: size,
        options: if replace { "-r".into() } else { String::new() },
        optional_name: format!("{}{ext}", random_name(9)),
        function_name: "install".into(),
        client_cwd: "/".into(),
        ..Default::default()
    };
    out.send(packet(c, CMD_APP_CHECK, &cfg.encode()))
        .await
        .map_err(|_| f::GONE.to_string())?;
    f::wait_for(rx, CMD_APP_BEGIN).await.map(|_| ())
}

/// Bytes of a package as APP_DATA from file offset `*index`.
async fn app_data(c: u32, index: &mut u64, d: &[u8], out: &Out) -> Result<(), String> {
    for part in d.chunks(SEND_CHUNK) {
        out.send(f::data_packet(c, CMD_APP_DATA, *index, part, false))
            .await
            .map_err(|_| f::GONE.to_string())?;
        *index += part.len() as u64;
    }
    Ok(())
}

/// What an install has said so far: APP_FINISH's text is cumulative, hdc prints the new part.
#[derive(Default)]
struct Words {
    printed: usize,
    all_ok: bool,
    any: bool,
}

impl Words {
    /// The device's APP_FINISH for the package just sent: its new words.
    async fn finish(&mut self, rx: &mut mpsc::Receiver<ohos::Packet>) -> Result<String, String> {
        let fin = f::wait_for(rx, CMD_APP_FINISH).await?;
        let all = String::from_utf8_lossy(fin.payload.get(2..).unwrap_or_default()).into_owned();
        let new = all.get(self.printed..).unwrap_or(&all).trim().to_string();
        self.printed = all.len();
        self.all_ok &= succeeded(&new);
        Ok(format!("{new}\n"))
    }
}

/// A directory being installed: OpenHarmony's host sends it as one tar of its entries
/// (dotfiles skipped), built here in memory up to [`crate::limits::MAX_INSTALL_TAR`].
struct TarDir {
    root: String,
    tar: Vec<u8>,
    /// The entry whose bytes are coming (its tar name), when it is kept.
    file: Option<(String, Vec<u8>)>,
}

impl TarDir {
    /// Whether `more` bytes (with a header and padding) still fit [`MAX_INSTALL_TAR`].
    ///
    /// [`MAX_INSTALL_TAR`]: crate::limits::MAX_INSTALL_TAR
    fn fits(&self, more: u64) -> Result<(), String> {
        let total = (self.tar.len() as u64)
            .saturating_add(more)
            .saturating_add(2 * crate::ohos_tar::BLOCK as u64);
        if total > crate::limits::MAX_INSTALL_TAR as u64 {
            return Err(format!(
                "[Fail]{}: a directory to install on an OpenHarmony device is sent as one tar, \
                 at most {} MiB",
                self.root,
                crate::limits::MAX_INSTALL_TAR >> 20
            ));
        }
        Ok(())
    }

    fn add(&mut self, name: &str, data: &[u8], dir: bool) -> Result<(), String> {
        self.fits(data.len() as u64)?;
        crate::ohos_tar::write_entry(&mut self.tar, name, data, dir)
            .map_err(|e| format!("[Fail]{e}"))
    }
}

/// `install`: each package our sender streams on `ch` is one APP_CHECK cycle (a directory
/// one cycle with its tar, as OpenHarmony's host does); the device's installer's words
/// (APP_FINISH) come back as output.
async fn install(
    c: u32,
    replace: bool,
    mut ch: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
) {
    let _ = out.send(packet(c, CMD_KERNEL_WAKEUP_SLAVETASK, &[])).await;
    let tx = ch.sender();
    let mut words = Words {
        all_ok: true,
        ..Default::default()
    };
    let mut index: Option<u64> = None;
    let mut dir: Option<TarDir> = None;
    let r: Result<(), String> = async {
        loop {
            match ch.recv().await {
                Event::Ctrl(Ctrl::FileBegin(meta)) => {
                    if let Some(d) = dir.as_mut() {
                        let name = meta.rel.split_once('/').map(|(_, n)| n).unwrap_or("");
                        let skip = name.is_empty() || name.split('/').any(|p| p.starts_with('.'));
                        d.file = None;
                        if skip {
                            continue;
                        }
                        if meta.dir {
                            d.add(name, &[], true)?;
                        } else {
                            d.fits(meta.size)?;
                            d.file = Some((name.to_string(), Vec::new()));
                        }
                        continue;
                    }
                    if meta.dir {
                        dir = Some(TarDir {
                            root: meta.rel.clone(),
                            tar: Vec::new(),
                            file: None,
                        });
                        continue;
                    }
                    let ext = [".hap", ".hsp", ".app"]
                        .into_iter()
                        .find(|x| meta.rel.ends_with(x));
                    let Some(ext) = ext else {
                        index = None;
                        continue;
                    };
                    app_check(c, meta.size, ext, replace, &mut rx, &out).await?;
                    words.any = true;
                    index = Some(0);
                }
                Event::Data(d) => {
                    if let Some((_, buf)) = dir.as_mut().and_then(|t| t.file.as_mut()) {
                        buf.extend_from_slice(&d);
                    } else if let Some(i) = index.as_mut() {
                        app_data(c, i, &d, &out).await?;
                    }
                }
                Event::Ctrl(Ctrl::FileEnd { .. }) => {
                    if let Some(t) = dir.as_mut() {
                        if let Some((name, data)) = t.file.take() {
                            t.add(&name, &data, false)?;
                        }
                        continue;
                    }
                    if index.take().is_none() {
                        continue;
                    }
                    let said = words.finish(&mut rx).await?;
                    tx.send(Bytes::from(said))
                        .await
                        .map_err(|_| f::GONE.to_string())?;
                }
                Event::Ctrl(Ctrl::Done) => break,
                Event::Ctrl(_) => {}
                Event::Close(_) => return Err(f::GONE.to_string()),
            }
        }
        if let Some(t) = dir.take() {
            app_check(c, t.tar.len() as u64, ".tar", replace, &mut rx, &out).await?;
            words.any = true;
            app_data(c, &mut 0, &t.tar, &out).await?;
            let said = words.finish(&mut rx).await?;
            tx.send(Bytes::from(said))
                .await
                .map_err(|_| f::GONE.to_string())?;
        }
        Ok(())
    }
    .await;
    let exit = match r {
        Err(e) => Exit::fail(e),
        Ok(()) if !words.any => {
            Exit::fail("[Fail][E006001] Not any installation package was found")
        }
        Ok(()) => Exit {
            code: i32::from(!words.all_ok),
            message: String::new(),
        },
    };
    let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
    ch.close(&exit);
}

/// `uninstall`: APP_UNINSTALL with hdc's arguments; the installer's words come back.
async fn uninstall(
    c: u32,
    name: String,
    keep: bool,
    ch: Channel,
    mut rx: mpsc::Receiver<ohos::Packet>,
    out: Out,
) {
    let _ = out.send(packet(c, CMD_KERNEL_WAKEUP_SLAVETASK, &[])).await;
    let args = format!("{}{name}\0", if keep { "-k " } else { "" });
    let _ = out
        .send(packet(c, CMD_APP_UNINSTALL, args.as_bytes()))
        .await;
    let exit = match f::wait_for(&mut rx, CMD_APP_FINISH).await {
        Ok(fin) => {
            let words = String::from_utf8_lossy(fin.payload.get(2..).unwrap_or_default())
                .trim()
                .to_string();
            let ok = succeeded(&words);
            let _ = ch.send(Bytes::from(format!("{words}\n"))).await;
            Exit {
                code: i32::from(!ok),
                message: String::new(),
            }
        }
        Err(e) => Exit::fail(e),
    };
    let _ = out.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
    ch.close(&exit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_paths_stay_under_the_root() {
        let cfg = |path: &str, name: &str| TransferConfig {
            path: path.into(),
            optional_name: name.into(),
            ..Default::default()
        };
        assert_eq!(rel_of(&cfg("logs", "logs"), "logs"), "logs");
        assert_eq!(
            rel_of(&cfg("logs/a/b.txt", "b.txt"), "logs"),
            "logs/a/b.txt"
        );
        assert_eq!(rel_of(&cfg("./logs/x", "x"), "logs"), "logs/x");
        // Anything else lands under the root by its last name, never elsewhere.
        assert_eq!(rel_of(&cfg("/etc/passwd", "passwd"), "logs"), "logs/passwd");
        assert_eq!(rel_of(&cfg("logsx/y", "y"), "logs"), "logs/y");
        assert_eq!(rel_of(&cfg("../../x", "x"), "logs"), "logs/x");
        assert_eq!(rel_of(&cfg("logs/../../x", "x"), "logs"), "logs/x");
        assert_eq!(rel_of(&cfg("logs//x", "x"), "logs"), "logs/x");
    }

    #[test]
    fn staged_names_are_nine_letters_or_digits() {
        let n = random_name(9);
        assert_eq!(n.len(), 9);
        assert!(n.chars().all(|c| c.is_ascii_alphanumeric()), "{n}");
    }

    #[test]
    fn bundle_manager_words() {
        assert!(succeeded("install bundle successfully."));
        assert!(!succeeded(
            "error: failed to install bundle. code:9568320 error: no signature file."
        ));
    }
}
