//! The device side for OpenHarmony's own hosts (the SDK's `hdc`, DevEco Studio): a plain TCP
//! connection that starts with a `"HW"` packet. The handshake and RSA authentication are
//! [`crate::ohos_auth`]'s, the stream (plaintext, or TLS-PSK for a host that asks for
//! `encrypt_tcp`) [`crate::ohos_link`]'s; then OpenHarmony's commands run on the same
//! handlers as ours ([`crate::device`]), through an in-process session whose channels this
//! module translates:
//!
//! | OpenHarmony (host → device)      | here                                   |
//! |----------------------------------|----------------------------------------|
//! | CMD_UNITY_EXECUTE (1001) text    | a shell command on pipes, no input     |
//! | CMD_UNITY_EXECUTE_EX (1200) TLV  | the same in a bundle's dir (`shell -b`) |
//! | CMD_SHELL_INIT (2000)            | an interactive shell on a 24x80 pty     |
//! | CMD_SHELL_DATA (2001) bytes      | its input                              |
//! | CMD_UNITY_HILOG (1005) args      | `hilog` with those arguments           |
//! | CMD_UNITY_REBOOT (1003)          | `target boot`                          |
//! | CMD_UNITY_ROOTRUN (1007) ["r"]   | `smode` (`-r`)                         |
//! | CMD_KERNEL_CHANNEL_CLOSE (2) `[n]` | the channel ends; answered `[n-1]` if n>0 |
//! | CMD_FORWARD_CHECK (2501), _INIT (2500) | an fport / rport rule ([`crate::ohos_forward`]) |
//! | CMD_HEARTBEAT_MSG (5000)         | accepted; ours every 5 s if the host lists `heartbeat` |
//!
//! Output goes back as CMD_KERNEL_ECHO_RAW (10), messages as CMD_KERNEL_ECHO (9, a level byte
//! then text), the end as CMD_KERNEL_CHANNEL_CLOSE `[1]`, as hdcd does. File transfers
//! (CMD_FILE_*) and installs (CMD_APP_CHECK/DATA, CMD_APP_UNINSTALL) are
//! [`crate::ohos_file`]'s, port forwarding (CMD_FORWARD_*) [`crate::ohos_forward`]'s, each
//! a task fed its channel's packets. Other commands get OpenHarmony's "`[E002105]` Unsupport
//! command". A heartbeat before authentication closes channel 0 as hdcd does. The UDP
//! discovery answer is [`crate::ohos_discovery`]'s.

use crate::device::{AUTH_BYPASS_PARAM, DEBUGGABLE_PARAM, DeviceConfig};
use crate::ohos::{self, SessionHandShake, echo, packet};
use crate::ohos_auth::{
    Action, CMD_KERNEL_CHANNEL_CLOSE, CMD_KERNEL_HANDSHAKE, DeviceAuth, DeviceOutcome,
    DevicePolicy, KeyVerdict,
};
use crate::ohos_file;
use crate::ohos_forward;
use crate::ohos_link::{self, PacketRx, PacketTx};
use crate::ohos_tls::{PskTls, Role, TlsEngine};
use crate::proto::{Ctrl, Exit, Request, WinSize};
use crate::session::{Event, Sender, Session};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

/// CMD_KERNEL_ECHO_RAW: raw output.
pub const CMD_KERNEL_ECHO_RAW: u32 = 10;
/// CMD_KERNEL_WAKEUP_SLAVETASK: a new task's first packet (nothing to do here).
pub const CMD_KERNEL_WAKEUP_SLAVETASK: u32 = 12;
/// CMD_UNITY_EXECUTE: one shell command.
pub const CMD_UNITY_EXECUTE: u32 = 1001;
/// CMD_UNITY_REBOOT.
pub const CMD_UNITY_REBOOT: u32 = 1003;
/// CMD_UNITY_HILOG.
pub const CMD_UNITY_HILOG: u32 = 1005;
/// CMD_UNITY_ROOTRUN: smode.
pub const CMD_UNITY_ROOTRUN: u32 = 1007;
/// CMD_SHELL_INIT: an interactive shell.
pub const CMD_SHELL_INIT: u32 = 2000;
/// CMD_SHELL_DATA: its input.
pub const CMD_SHELL_DATA: u32 = 2001;
/// CMD_HEARTBEAT_MSG: channel 0, a [`ohos::HeartbeatMsg`].
pub const CMD_HEARTBEAT_MSG: u32 = 5000;
pub use crate::ohos_auth::ENCRYPT_REQUIRED_PARAM;
/// CMD_UNITY_EXECUTE_EX: `hdc shell -b BUNDLE CMD`, a binary TLV ([`ohos::parse_tlv_buf`]).
pub const CMD_UNITY_EXECUTE_EX: u32 = 1200;
/// The feature a host lists when it takes heartbeats, and this device lists for its own.
pub const FEATURE_HEARTBEAT: &str = "heartbeat";
/// How often the device sends a heartbeat (hdc's `HEARTBEAT_INTERVAL`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a host may take over the whole handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused host gets to read the refusal.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);
/// Channels one OpenHarmony session may have open.
const MAX_OHOS_CHANNELS: usize = 256;
/// Echo levels.
const MSG_FAIL: u8 = 0;
const MSG_OK: u8 = 2;

/// The device's answers to the handshake.
struct Policy {
    cfg: Arc<DeviceConfig>,
    bypass: bool,
    plaintext_refused: bool,
}

impl DevicePolicy for Policy {
    fn encryption_required(&self) -> bool {
        self.plaintext_refused
    }
    fn offers_psk(&self) -> bool {
        true
    }
    fn psk_session(&mut self, pem: &str) -> Result<(String, Box<dyn TlsEngine>), String> {
        let psk = crate::hostkey::new_psk().map_err(|e| e.to_string())?;
        let buf = crate::hostkey::encrypt_psk(pem, &psk).map_err(|e| e.to_string())?;
        let tls = PskTls::new(Role::Server, &psk).map_err(|e| e.to_string())?;
        Ok((buf, Box::new(tls)))
    }
    fn bypass(&self) -> bool {
        self.bypass
    }
    fn verdict(&mut self, pem: &str, hostname: &str) -> KeyVerdict {
        let id = crate::hostkey::key_id(pem);
        let Some(bytes) = hex::decode(&id)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            return KeyVerdict::Unknown;
        };
        match crate::keys::authorize(&self.cfg.hdc_dir, &bytes, hostname) {
            crate::keys::Verdict::Always | crate::keys::Verdict::Once => KeyVerdict::Known,
            crate::keys::Verdict::Refused => KeyVerdict::Unknown,
        }
    }
    fn verify(&self, pem: &str, token: &[u8], signature: &str) -> bool {
        crate::hostkey::verify(pem, token, signature)
    }
    fn token(&mut self) -> String {
        let mut b = [0u8; crate::ohos_auth::TOKEN_LEN];
        let _ = getrandom::fill(&mut b);
        b.iter()
            .map(|x| char::from(b"0123456789abcdef"[usize::from(x % 16)]))
            .collect()
    }
    fn device_name(&self) -> String {
        self.cfg.name.clone()
    }
    fn features(&self) -> Vec<String> {
        vec![FEATURE_HEARTBEAT.into()]
    }
}

/// Whether plaintext sessions are refused here.
fn encrypt_required(cfg: &DeviceConfig) -> bool {
    match (cfg.params)(ENCRYPT_REQUIRED_PARAM).as_deref() {
        Some("1") => true,
        Some("0") => false,
        _ => (cfg.params)(DEBUGGABLE_PARAM).as_deref() == Some("0"),
    }
}

/// Serves one OpenHarmony host on `tcp` (its first bytes are a `"HW"` packet).
pub(crate) async fn serve(
    cfg: Arc<DeviceConfig>,
    tcp: TcpStream,
    boot: Arc<Notify>,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let bypass = (cfg.params)(AUTH_BYPASS_PARAM).as_deref() == Some("1")
        && crate::local::bypass_allowed(&tcp);
    let mut policy = Policy {
        plaintext_refused: encrypt_required(&cfg),
        cfg: cfg.clone(),
        bypass,
    };
    let (rd, wr) = tcp.into_split();
    let (mut reader, mut wr) = (PacketRx::new(rd), PacketTx::new(wr));
    // The handshake, bounded in time.
    let mut auth = DeviceAuth::default();
    let handshake = async {
        loop {
            let Some(p) = reader.next().await.map_err(|e| e.to_string())? else {
                return Err("closed during the handshake".to_string());
            };
            if p.protect.command_flag == CMD_HEARTBEAT_MSG {
                // As hdcd before AUTH_OK: the channel closed, the session kept.
                wr.send(&packet(
                    p.protect.channel_id,
                    CMD_KERNEL_CHANNEL_CLOSE,
                    &[1],
                ))
                .await
                .map_err(|e| e.to_string())?;
                continue;
            }
            if p.protect.command_flag != CMD_KERNEL_HANDSHAKE {
                // hdcd answers anything else before authentication with a failure.
                wr.send(&echo(
                    p.protect.channel_id,
                    MSG_FAIL,
                    "[Fail]not authenticated",
                ))
                .await
                .map_err(|e| e.to_string())?;
                continue;
            }
            let hs = SessionHandShake::decode(&p.payload).map_err(|e| e.to_string())?;
            let actions = auth
                .on_handshake(hs, &mut policy)
                .map_err(|e| e.to_string())?;
            for a in actions {
                match a {
                    Action::Send(o) => wr
                        .send(&packet(0, o.command, &o.payload))
                        .await
                        .map_err(|e| e.to_string())?,
                    Action::Switch(tls) => {
                        ohos_link::switch(&mut reader, &mut wr, tls).map_err(|e| e.to_string())?
                    }
                    Action::Wait(d) => tokio::time::sleep(d).await,
                }
            }
            match auth.outcome() {
                DeviceOutcome::Pending => continue,
                DeviceOutcome::Accepted {
                    host_name,
                    encrypted,
                    ..
                } => return Ok((host_name.clone(), *encrypted)),
                DeviceOutcome::Refused(why) => return Err(why.clone()),
            }
        }
    };
    let (host, encrypted) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(h)) => h,
        Ok(Err(why)) => {
            // Let the refusal reach the host before the connection goes.
            let _ = wr.shutdown().await;
            let _ = tokio::time::timeout(REFUSAL_WAIT, async {
                while let Ok(Some(_)) = reader.next().await {}
            })
            .await;
            return Err(why);
        }
        Err(_) => return Err("handshake timed out".into()),
    };
    let how = if encrypted { "TLS-PSK" } else { "plaintext" };
    tracing::info!(tag = "hdcd", "OpenHarmony host {host} connected ({how})");
    let beats = match auth.outcome() {
        DeviceOutcome::Accepted { features, .. } => features.iter().any(|f| f == FEATURE_HEARTBEAT),
        _ => false,
    };

    // Commands: an in-process session, whose device end runs our handlers.
    let (a, b) = tokio::io::duplex(1 << 20);
    let (dev, mut incoming) = Session::start(a, true, "OpenHarmony host".into());
    let (local, local_incoming) = Session::start(b, false, "device".into());
    let forwards = ohos_forward::Forwards::start(local_incoming);
    let handlers = {
        let (cfg, dev) = (cfg.clone(), dev.clone());
        tokio::spawn(async move {
            while let Some(inc) = incoming.recv().await {
                tokio::spawn(crate::device::handle(
                    cfg.clone(),
                    dev.clone(),
                    inc,
                    boot.clone(),
                ));
            }
        })
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.send(&b).await.is_err() {
                return;
            }
        }
    });
    let heartbeat = beats.then(|| tokio::spawn(heartbeats(out_tx.clone(), HEARTBEAT_INTERVAL)));
    let mut chans: HashMap<u32, Sender> = HashMap::new();
    // File transfers: each channel's packets go to its task, in order; a full queue holds
    // the reader (the socket's own back-pressure).
    let mut files: HashMap<u32, mpsc::Sender<ohos::Packet>> = HashMap::new();
    let r = loop {
        let p = match reader.next().await {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        };
        let (c, cmd) = (p.protect.channel_id, p.protect.command_flag);
        files.retain(|_, t| !t.is_closed());
        if let Some(t) = files.get(&c) {
            let close = cmd == CMD_KERNEL_CHANNEL_CLOSE;
            let n = p.payload.first().copied().unwrap_or(0);
            let _ = t.send(p).await;
            if close {
                files.remove(&c);
                if n > 0 {
                    let _ = out_tx
                        .send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[n - 1]))
                        .await;
                }
            }
            continue;
        }
        if cmd == ohos_file::CMD_APP_UNINSTALL && c != 0 {
            let args = String::from_utf8_lossy(&p.payload)
                .trim_end_matches('\0')
                .to_string();
            tokio::spawn(ohos_file::app_uninstall(
                c,
                args,
                local.clone(),
                out_tx.clone(),
            ));
            continue;
        }
        if matches!(
            cmd,
            ohos_file::CMD_FILE_CHECK
                | ohos_file::CMD_FILE_INIT
                | ohos_file::CMD_APP_CHECK
                | ohos_forward::CMD_FORWARD_CHECK
                | ohos_forward::CMD_FORWARD_INIT
        ) && c != 0
        {
            if files.len() + chans.len() >= MAX_OHOS_CHANNELS {
                let _ = out_tx
                    .send(echo(
                        c,
                        MSG_FAIL,
                        "[Fail]too many commands at once on this session",
                    ))
                    .await;
                let _ = out_tx.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                continue;
            }
            let (tx, rx) = mpsc::channel(8);
            let (local, out) = (local.clone(), out_tx.clone());
            if cmd == ohos_file::CMD_FILE_INIT {
                let args = String::from_utf8_lossy(&p.payload)
                    .trim_end_matches('\0')
                    .to_string();
                tokio::spawn(ohos_file::master(c, args, rx, local, out));
            } else if ohos_forward::is_forward_command(cmd) {
                tokio::spawn(ohos_forward::run(c, rx, local, out, forwards.clone()));
                let _ = tx.send(p).await;
            } else if cmd == ohos_file::CMD_APP_CHECK {
                tokio::spawn(ohos_file::app_install(c, rx, local, out));
                let _ = tx.send(p).await;
            } else {
                tokio::spawn(ohos_file::slave(c, rx, local, out));
                let _ = tx.send(p).await;
            }
            files.insert(c, tx);
            continue;
        }
        let text = || {
            String::from_utf8_lossy(&p.payload)
                .trim_end_matches('\0')
                .to_string()
        };
        let req = match cmd {
            CMD_UNITY_EXECUTE => Some(Request::Shell {
                command: Some(text()),
                pty: None,
                term: String::new(),
            }),
            CMD_SHELL_INIT => Some(Request::Shell {
                command: None,
                pty: Some(WinSize { rows: 24, cols: 80 }),
                term: "xterm".into(),
            }),
            CMD_UNITY_HILOG => Some(Request::Hilog {
                args: crate::channel::split_args(&text()),
            }),
            CMD_UNITY_EXECUTE_EX => match shell_in_bundle(&cfg, &p.payload) {
                Ok(command) => Some(Request::Shell {
                    command: Some(command),
                    pty: None,
                    term: String::new(),
                }),
                Err(why) => {
                    let _ = out_tx.send(echo(c, MSG_FAIL, &why)).await;
                    let _ = out_tx.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                    None
                }
            },
            CMD_UNITY_REBOOT => Some(Request::Boot),
            CMD_UNITY_ROOTRUN => Some(Request::Smode {
                root: text() != "r",
            }),
            CMD_SHELL_DATA => {
                if let Some(tx) = chans.get(&c) {
                    let _ = tx.send(p.payload).await;
                }
                None
            }
            CMD_KERNEL_CHANNEL_CLOSE => {
                if let Some(tx) = chans.remove(&c) {
                    tx.close(&Exit::fail("[Fail]closed by the host"));
                }
                if let Some(&n) = p.payload.first()
                    && n > 0
                {
                    let _ = out_tx
                        .send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[n - 1]))
                        .await;
                }
                None
            }
            CMD_HEARTBEAT_MSG | CMD_KERNEL_WAKEUP_SLAVETASK | CMD_KERNEL_HANDSHAKE => None,
            // A forward packet for a rule that has ended: hdcd finds no task and drops it.
            x if ohos_forward::is_forward_command(x) => None,
            _ => {
                let _ = out_tx
                    .send(echo(c, MSG_FAIL, "[Fail][E002105] Unsupport command"))
                    .await;
                let _ = out_tx.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                None
            }
        };
        let Some(req) = req else { continue };
        if chans.len() >= MAX_OHOS_CHANNELS || c == 0 || chans.contains_key(&c) {
            let _ = out_tx
                .send(echo(
                    c,
                    MSG_FAIL,
                    "[Fail]too many commands at once on this session",
                ))
                .await;
            let _ = out_tx.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
            continue;
        }
        let one_shot = matches!(
            req,
            Request::Shell {
                command: Some(_),
                ..
            } | Request::Hilog { .. }
        );
        let ch = match local.open(&crate::proto::to_bytes(&req)) {
            Ok(ch) => ch,
            Err(e) => {
                let _ = out_tx.send(echo(c, MSG_FAIL, &e.to_string())).await;
                let _ = out_tx.send(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1])).await;
                continue;
            }
        };
        let tx = ch.sender();
        if one_shot {
            // OpenHarmony's commands take no input.
            let _ = tx.ctrl(&Ctrl::Eof);
        }
        chans.insert(c, tx);
        tokio::spawn(pump(c, ch, out_tx.clone()));
    };
    for (_, tx) in chans.drain() {
        tx.close(&Exit::fail("[Fail]the host went away"));
    }
    handlers.abort();
    if let Some(h) = heartbeat {
        h.abort();
    }
    dev.shutdown("the host went away");
    local.shutdown("the host went away");
    drop(out_tx);
    let _ = writer.await;
    r
}

/// One command's output to the host, as hdcd sends it, until it ends.
async fn pump(c: u32, mut ch: crate::session::Channel, out: mpsc::Sender<Vec<u8>>) {
    loop {
        let pkts = match ch.recv().await {
            Event::Data(d) => vec![packet(c, CMD_KERNEL_ECHO_RAW, &d)],
            Event::Ctrl(Ctrl::Stderr(d)) => vec![packet(c, CMD_KERNEL_ECHO_RAW, &d)],
            Event::Ctrl(Ctrl::Text(t)) => vec![echo(c, MSG_OK, &t)],
            Event::Ctrl(_) => Vec::new(),
            Event::Close(e) => {
                let mut v = Vec::new();
                if !e.message.is_empty() {
                    let level = if e.code == 0 { MSG_OK } else { MSG_FAIL };
                    v.push(echo(c, level, &e.message));
                }
                v.push(packet(c, CMD_KERNEL_CHANNEL_CLOSE, &[1]));
                for p in v {
                    let _ = out.send(p).await;
                }
                return;
            }
        };
        for p in pkts {
            if out.send(p).await.is_err() {
                return;
            }
        }
    }
}

/// Sends the host a heartbeat every `every`, the first at once, as hdcd's timer does, until
/// the session's writer is gone.
pub(crate) async fn heartbeats(out: mpsc::Sender<Vec<u8>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        let msg = ohos::HeartbeatMsg {
            heartbeat_count: n,
            reserved: String::new(),
        };
        if out
            .send(packet(0, CMD_HEARTBEAT_MSG, &msg.encode()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// hdcd's words for `hdc shell -b` with a bundle it cannot run in.
fn invalid_bundle(name: &str) -> String {
    format!("[Fail][E003001] Invalid bundle name: {name}")
}

/// CMD_UNITY_EXECUTE_EX's command line for our shell: hdcd runs the command with the
/// bundle's debug directory as its working directory (no other identity), and says
/// "[E003006]" when it cannot change there. The closest here is the bundle's code
/// directory (`app/el1/bundle/public/<bundle>`, what `/data/storage/el1/bundle` is inside
/// the app's sandbox), as the shell user.
fn shell_in_bundle(cfg: &DeviceConfig, payload: &[u8]) -> Result<String, String> {
    let tlv = ohos::parse_tlv_buf(payload)
        .map_err(|_| "[Fail][E003004] Device does not support this shell option".to_string())?;
    if tlv
        .keys()
        .any(|&t| t != ohos::shell_tag::CMD && t != ohos::shell_tag::BUNDLE)
    {
        return Err("[Fail][E003004] Device does not support this shell option".into());
    }
    let cmd = tlv
        .get(&ohos::shell_tag::CMD)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .ok_or("[Fail][E003002] Unsupport interactive shell command option")?;
    let bundle = tlv
        .get(&ohos::shell_tag::BUNDLE)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    bundle_shell_line(cfg, &bundle, &cmd)
}

/// Whether `bundle` is a name OpenHarmony's host lets `shell -b` take (7 to 128 of
/// `[0-9a-zA-Z_.]`), which also keeps it a plain name.
pub fn plain_bundle_name(bundle: &str) -> bool {
    (7..=128).contains(&bundle.len())
        && bundle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !bundle.starts_with('.')
}

/// The shell line that runs `cmd` in `bundle`'s directory, or hdcd's refusal.
pub(crate) fn bundle_shell_line(
    cfg: &DeviceConfig,
    bundle: &str,
    cmd: &str,
) -> Result<String, String> {
    if !plain_bundle_name(bundle) {
        return Err(invalid_bundle(bundle));
    }
    let dir = cfg.data_dir.join("app/el1/bundle/public").join(bundle);
    if !dir.is_dir() {
        return Err(invalid_bundle(bundle));
    }
    let d = dir.to_string_lossy().replace('\'', "'\\''");
    Ok(format!(
        "cd -- '{d}' 2>/dev/null || {{ echo '[E003006] Internal error: AsyncCmd chdir failed:{d}'; exit 1; }}\n{cmd}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    /// hdcd's timer: the first heartbeat at once, then one each interval, counting from 0.
    #[tokio::test(start_paused = true)]
    async fn heartbeats_come_at_once_then_each_interval() {
        let (tx, mut rx) = mpsc::channel(8);
        let t0 = tokio::time::Instant::now();
        let task = tokio::spawn(heartbeats(tx, HEARTBEAT_INTERVAL));
        for n in 0..3u64 {
            let b = rx.recv().await.unwrap();
            assert_eq!(t0.elapsed(), HEARTBEAT_INTERVAL * n as u32);
            let mut buf = BytesMut::from(&b[..]);
            let p = ohos::decode_packet(&mut buf).unwrap().unwrap();
            assert_eq!(
                (p.protect.channel_id, p.protect.command_flag),
                (0, CMD_HEARTBEAT_MSG)
            );
            assert_eq!(
                ohos::HeartbeatMsg::decode(&p.payload)
                    .unwrap()
                    .heartbeat_count,
                n
            );
        }
        drop(rx);
        tokio::time::advance(HEARTBEAT_INTERVAL).await;
        task.await.unwrap();
    }
}
