//! OpenHarmony's file transfer commands (developtools_hdc's `transfer.cpp`, `file.cpp`;
//! docs/HDC-WIRE.md §6) for OpenHarmony's hosts, on the device. The side that reads is the
//! master, the side that writes the slave; all packets of a transfer are on one channel:
//!
//! ```text
//! file send (host master):  WAKEUP_SLAVETASK → FILE_CHECK(TransferConfig) → FILE_BEGIN(flags)
//!                           FILE_DATA(64-byte TransferPayload prefix + bytes)... → FILE_FINISH[1]
//!                           (next file: FILE_CHECK ...) → FILE_FINISH[0] → ECHO summary, CLOSE[1]
//! file recv (device master): FILE_INIT("[-a] [-z] REMOTE LOCAL") → FILE_CHECK → FILE_BEGIN
//!                           → FILE_DATA... → FILE_FINISH[1] → ... → FILE_FINISH[0]
//! ```
//!
//! The bytes are read and written by our own transfer code ([`crate::transfer`]) on the
//! device's in-process session, so they get the same care as ours: the shell user's
//! permissions, a temporary file renamed only when complete, nothing left of a broken one.
//! LZ4 blocks (compressType 1, `-z`) both ways.

use crate::ohos::{
    self, COMPRESS_LZ4, COMPRESS_NONE, MAX_SIZE_IOBUF, PAYLOAD_PREFIX_RESERVE, TransferConfig,
    TransferPayload,
};
use crate::proto::{Ctrl, Exit, FileMeta, FileOpts, Request};
use crate::session::{Channel, Event, Session};
use crate::transfer::{Stats, Xxh3};
use bytes::Bytes;
use std::time::Instant;
use tokio::sync::mpsc;

/// CMD_FILE_INIT: the host asks the device to send files.
pub const CMD_FILE_INIT: u32 = 3000;
/// CMD_FILE_CHECK: one file's TransferConfig.
pub const CMD_FILE_CHECK: u32 = 3001;
/// CMD_FILE_BEGIN: the writer is ready.
pub const CMD_FILE_BEGIN: u32 = 3002;
/// CMD_FILE_DATA: a chunk.
pub const CMD_FILE_DATA: u32 = 3003;
/// CMD_FILE_FINISH: \[1\] a file is written, \[0\] all are sent.
pub const CMD_FILE_FINISH: u32 = 3004;
/// CMD_FILE_MODE: a file's mode (with `-m`), answered empty.
pub const CMD_FILE_MODE: u32 = 3006;
/// CMD_DIR_MODE: a directory's mode.
pub const CMD_DIR_MODE: u32 = 3007;
/// FILE_BEGIN's flags: byte 0 bit 0, the writer takes huge buffers.
pub(crate) const BEGIN_FLAGS: [u8; 8] = [1, 0, 0, 0, 0, 0, 0, 0];
/// Chunk size the device sends: hdc's huge-buffer chunk (80% of MAX_SIZE_IOBUF).
pub const SEND_CHUNK: usize = MAX_SIZE_IOBUF * 4 / 5;

/// Whether a command belongs to a file transfer.
pub fn is_file_command(c: u32) -> bool {
    (CMD_FILE_INIT..=CMD_DIR_MODE).contains(&c)
}

pub(crate) use crate::ohos::packet;

/// What a transfer task sends the host through.
pub type Out = mpsc::Sender<Vec<u8>>;

async fn fail(c: u32, out: &Out, why: &str) {
    let mut p = vec![0u8];
    p.extend_from_slice(why.as_bytes());
    let _ = out
        .send(packet(c, crate::ohos_auth::CMD_KERNEL_ECHO, &p))
        .await;
    let _ = out
        .send(packet(c, crate::ohos_auth::CMD_KERNEL_CHANNEL_CLOSE, &[1]))
        .await;
}

async fn finish_ok(c: u32, out: &Out, stats: Stats) {
    let mut p = vec![2u8];
    p.extend_from_slice(stats.finish_line().as_bytes());
    let _ = out
        .send(packet(c, crate::ohos_auth::CMD_KERNEL_ECHO, &p))
        .await;
    let _ = out
        .send(packet(c, crate::ohos_auth::CMD_KERNEL_CHANNEL_CLOSE, &[1]))
        .await;
}

/// The file's name in a transfer: its own name, or the last part of its path; never a path.
pub(crate) fn file_name(cfg: &TransferConfig) -> String {
    let n = if cfg.optional_name.is_empty() {
        &cfg.path
    } else {
        &cfg.optional_name
    };
    n.rsplit('/')
        .find(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("file")
        .to_string()
}

/// The device writes: the host's `file send`. `rx` has this channel's packets, the first a
/// FILE_CHECK.
pub async fn slave(c: u32, mut rx: mpsc::Receiver<ohos::Packet>, local: Session, out: Out) {
    let t0 = Instant::now();
    let mut stats = Stats::default();
    while let Some(p) = rx.recv().await {
        match p.protect.command_flag {
            CMD_FILE_CHECK => match receive_one(c, &p.payload, &mut rx, &local, &out).await {
                Ok(n) => {
                    stats.files += 1;
                    stats.bytes += n;
                    let _ = out.send(packet(c, CMD_FILE_FINISH, &[1])).await;
                }
                Err(e) => return fail(c, &out, &e).await,
            },
            CMD_FILE_FINISH => {
                stats.elapsed = t0.elapsed();
                return finish_ok(c, &out, stats).await;
            }
            CMD_FILE_MODE | CMD_DIR_MODE => {
                let _ = out.send(packet(c, p.protect.command_flag, &[])).await;
            }
            crate::ohos_auth::CMD_KERNEL_CHANNEL_CLOSE => return,
            _ => {}
        }
    }
}

/// One file: its TransferConfig in `check`, then chunks until its size is in; written by
/// our receiver and renamed into place before this returns its size.
async fn receive_one(
    c: u32,
    check: &[u8],
    rx: &mut mpsc::Receiver<ohos::Packet>,
    local: &Session,
    out: &Out,
) -> Result<u64, String> {
    let cfg = TransferConfig::decode(check).map_err(|e| format!("[Fail]{e}"))?;
    if cfg.path.is_empty() {
        return Err("[Fail]There is no remote path".into());
    }
    if !cfg.path.starts_with('/') {
        return Err(format!(
            "[Fail]the device path must be absolute: {}",
            cfg.path
        ));
    }
    let opts = FileOpts {
        keep_attrs: cfg.hold_timestamp,
        compress: false,
        sync: false,
    };
    let mut ch = local
        .open(&crate::proto::to_bytes(&Request::FileSend {
            remote: cfg.path.clone(),
            opts,
        }))
        .map_err(|e| e.to_string())?;
    let meta = FileMeta {
        rel: file_name(&cfg),
        dir: false,
        size: cfg.file_size,
        mode: 0o644,
        mtime: (cfg.mtime / 1_000_000_000) as i64,
        mtime_ns: (cfg.mtime % 1_000_000_000) as u32,
    };
    let tx = ch.sender();
    if tx.ctrl(&Ctrl::FileBegin(meta)).is_err() {
        return Err(failed(close_reason(&mut ch).await));
    }
    out.send(packet(c, CMD_FILE_BEGIN, &BEGIN_FLAGS))
        .await
        .map_err(|_| "[Fail]the host went away".to_string())?;
    let got = stream_in(&mut ch, rx, cfg.file_size, CMD_FILE_DATA).await?;
    done(&mut ch).await?;
    match close_reason(&mut ch).await {
        m if m.is_empty() => Ok(got),
        m => Err(m),
    }
}

/// The next chunk of a file of `size` bytes of which `got` are in (`data_cmd`: FILE_DATA or
/// APP_DATA, each a TransferPayload prefix then the bytes), LZ4 undone, checked to be the
/// next in order and to fit.
async fn next_chunk(
    rx: &mut mpsc::Receiver<ohos::Packet>,
    got: u64,
    size: u64,
    data_cmd: u32,
) -> Result<Bytes, String> {
    let p = loop {
        let Some(p) = rx.recv().await else {
            return Err(GONE.into());
        };
        match p.protect.command_flag {
            x if x == data_cmd => break p,
            crate::ohos_auth::CMD_KERNEL_CHANNEL_CLOSE => {
                return Err("[Fail]Transfer Stop: the channel was closed".into());
            }
            _ => {}
        }
    };
    let head = TransferPayload::decode_prefix(&p.payload).map_err(|e| format!("[Fail]{e}"))?;
    let range = PAYLOAD_PREFIX_RESERVE..PAYLOAD_PREFIX_RESERVE + head.compress_size as usize;
    let body = p
        .payload
        .get(range.clone())
        .ok_or("[Fail]a file chunk is shorter than its compressSize")?;
    if head.index != got {
        return Err(format!(
            "[Fail]a file chunk at {} where {got} was expected",
            head.index
        ));
    }
    let n = head.uncompress_size as usize;
    if n > MAX_SIZE_IOBUF {
        return Err(format!(
            "[Fail]a file chunk of {n} bytes (the limit is {MAX_SIZE_IOBUF})"
        ));
    }
    let data = match head.compress_type {
        // A view of the packet, not a copy.
        COMPRESS_NONE if body.len() == n => p.payload.slice(range),
        COMPRESS_LZ4 => Bytes::from(
            lz4_flex::block::decompress(body, n)
                .map_err(|e| format!("[Fail]a bad LZ4 chunk: {e}"))?,
        ),
        t => return Err(format!("[Fail]compress type {t} is not supported")),
    };
    if data.len() != n || n == 0 || got + n as u64 > size {
        return Err("[Fail]a file chunk does not fit the file's size".into());
    }
    Ok(data)
}

/// Takes `size` bytes of chunks off `rx` into our channel `ch`, in order, then ends the
/// file (FileEnd with its checksum). Returns the bytes taken.
pub(crate) async fn stream_in(
    ch: &mut Channel,
    rx: &mut mpsc::Receiver<ohos::Packet>,
    size: u64,
    data_cmd: u32,
) -> Result<u64, String> {
    let tx = ch.sender();
    let mut hash = Xxh3::new();
    let mut got = 0u64;
    while got < size {
        let data = next_chunk(rx, got, size, data_cmd).await?;
        hash.update(&data);
        got += data.len() as u64;
        if tx.send(data).await.is_err() {
            // Our receiver stopped (it could not write): its close says why.
            return Err(failed(close_reason(ch).await));
        }
    }
    let end = Ctrl::FileEnd {
        hash: hash.digest128(),
    };
    if tx.ctrl(&end).is_err() {
        return Err(failed(close_reason(ch).await));
    }
    Ok(got)
}

/// As [`stream_in`] for a tar of packages (`hdc install DIR`, which OpenHarmony's host sends
/// as a tar): its entries go to our channel as a tree under `root`.
async fn stream_tar_in(
    ch: &mut Channel,
    rx: &mut mpsc::Receiver<ohos::Packet>,
    size: u64,
    root: &str,
) -> Result<(), String> {
    use crate::ohos_tar::{TarEvent, TarReader};
    let tx = ch.sender();
    let mut tar = TarReader::default();
    let (mut got, mut hash) = (0u64, Xxh3::new());
    let ctrl = |c: Ctrl| tx.ctrl(&c).map_err(|_| ());
    let mut sent = true;
    while got < size && sent {
        let data = next_chunk(rx, got, size, CMD_APP_DATA).await?;
        got += data.len() as u64;
        let events = tar.feed(&data).map_err(|e| format!("[Fail]{e}"))?;
        for ev in events {
            let r = match ev {
                TarEvent::Dir(p) => ctrl(Ctrl::FileBegin(tree_meta(root, &p, 0, true))),
                TarEvent::File { path, size } => {
                    hash = Xxh3::new();
                    ctrl(Ctrl::FileBegin(tree_meta(root, &path, size, false)))
                }
                TarEvent::Data(d) => {
                    hash.update(&d);
                    tx.send(Bytes::from(d)).await.map_err(|_| ())
                }
                TarEvent::FileEnd => ctrl(Ctrl::FileEnd {
                    hash: hash.digest128(),
                }),
            };
            if r.is_err() {
                sent = false;
                break;
            }
        }
    }
    if !sent {
        return Err(failed(close_reason(ch).await));
    }
    tar.finish().map_err(|e| format!("[Fail]{e}"))
}

/// A tar entry's place in the tree our installer receives.
fn tree_meta(root: &str, path: &str, size: u64, dir: bool) -> FileMeta {
    FileMeta {
        rel: format!("{root}/{path}"),
        dir,
        size,
        mode: if dir { 0o755 } else { 0o644 },
        mtime: 0,
        mtime_ns: 0,
    }
}

/// Ends a transfer on our channel: all files are sent.
async fn done(ch: &mut Channel) -> Result<(), String> {
    match ch.sender().ctrl(&Ctrl::Done) {
        Ok(()) => Ok(()),
        Err(_) => Err(failed(close_reason(ch).await)),
    }
}

/// CMD_APP_CHECK: a package's TransferConfig (`options` the install flags).
pub const CMD_APP_CHECK: u32 = 3501;
/// CMD_APP_BEGIN: the device is ready for the package.
pub const CMD_APP_BEGIN: u32 = 3502;
/// CMD_APP_DATA: a chunk of it (as CMD_FILE_DATA).
pub const CMD_APP_DATA: u32 = 3503;
/// CMD_APP_FINISH: \[mode, 0, the installer's words so far\].
pub const CMD_APP_FINISH: u32 = 3504;
/// CMD_APP_UNINSTALL: `[-k] [-n] BUNDLE`.
pub const CMD_APP_UNINSTALL: u32 = 3505;
/// AppModType: install.
const APP_MODE_INSTALL: u8 = 1;
/// AppModType: uninstall.
const APP_MODE_UNINSTALL: u8 = 2;

/// APP_FINISH's payload: OpenHarmony's host prints the text past what it printed before, so
/// the text is everything said on the channel so far, newlines as blanks.
fn app_finish(c: u32, mode: u8, said: &str) -> Vec<u8> {
    let mut p = vec![mode, 0];
    p.extend_from_slice(said.as_bytes());
    packet(c, CMD_APP_FINISH, &p)
}

/// What our installer says on `ch` until it ends (its output and its closing message).
async fn words_of(ch: &mut Channel) -> String {
    let mut t = String::new();
    loop {
        match ch.recv().await {
            Event::Data(d) => t.push_str(&String::from_utf8_lossy(&d)),
            Event::Ctrl(Ctrl::Stderr(d)) => t.push_str(&String::from_utf8_lossy(&d)),
            Event::Ctrl(Ctrl::Text(s)) => {
                t.push_str(&s);
                t.push('\n');
            }
            Event::Ctrl(_) => {}
            Event::Close(e) => {
                if !e.message.is_empty() {
                    t.push_str(&e.message);
                }
                return t;
            }
        }
    }
}

/// The host's `hdc install` (the host is master): each APP_CHECK is one package, staged and
/// installed by our installer (`bm install`), answered with APP_FINISH; the host closes.
pub async fn app_install(c: u32, mut rx: mpsc::Receiver<ohos::Packet>, local: Session, out: Out) {
    let mut said = String::new();
    while let Some(p) = rx.recv().await {
        match p.protect.command_flag {
            CMD_APP_CHECK => {
                let words = match install_one(c, &p.payload, &mut rx, &local, &out).await {
                    Ok(w) | Err(w) => w,
                };
                said.push_str(&words.trim_end().replace('\n', " "));
                said.push(' ');
                if out
                    .send(app_finish(c, APP_MODE_INSTALL, &said))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            crate::ohos_auth::CMD_KERNEL_CHANNEL_CLOSE => return,
            _ => {}
        }
    }
}

async fn install_one(
    c: u32,
    check: &[u8],
    rx: &mut mpsc::Receiver<ohos::Packet>,
    local: &Session,
    out: &Out,
) -> Result<String, String> {
    let cfg = TransferConfig::decode(check).map_err(|e| format!("[Fail]{e}"))?;
    let name = file_name(&cfg);
    let tar = name.ends_with(".tar");
    if !tar && ![".hap", ".hsp", ".app"].iter().any(|x| name.ends_with(x)) {
        return Err(format!(
            "[Fail]{name}: only .hap, .hsp and .app packages, or a directory of them sent as \
             a .tar, install this way"
        ));
    }
    let replace = cfg.options.split_whitespace().any(|o| o == "-r");
    let mut ch = local
        .open(&crate::proto::to_bytes(&Request::Install { replace }))
        .map_err(|e| e.to_string())?;
    // A tar is a directory: its packages go to our installer as a tree under its stem.
    let root = name.trim_end_matches(".tar").to_string();
    let meta = FileMeta {
        rel: if tar { root.clone() } else { name },
        dir: tar,
        size: if tar { 0 } else { cfg.file_size },
        mode: if tar { 0o755 } else { 0o644 },
        mtime: 0,
        mtime_ns: 0,
    };
    if ch.sender().ctrl(&Ctrl::FileBegin(meta)).is_err() {
        return Err(failed(close_reason(&mut ch).await));
    }
    out.send(packet(c, CMD_APP_BEGIN, &BEGIN_FLAGS))
        .await
        .map_err(|_| "[Fail]the host went away".to_string())?;
    if tar {
        stream_tar_in(&mut ch, rx, cfg.file_size, &root).await?;
    } else {
        stream_in(&mut ch, rx, cfg.file_size, CMD_APP_DATA).await?;
    }
    done(&mut ch).await?;
    Ok(words_of(&mut ch).await)
}

/// The host's `hdc uninstall`: `args` is `[-k] [-s] [-n] BUNDLE`; our installer's words come
/// back in APP_FINISH, and the host closes the channel.
pub async fn app_uninstall(c: u32, args: String, local: Session, out: Out) {
    // As hdcd, which starts its own task for it.
    let _ = out
        .send(packet(
            c,
            super::ohos_device::CMD_KERNEL_WAKEUP_SLAVETASK,
            &[],
        ))
        .await;
    let (mut keep, mut name) = (false, None);
    for a in args.split_whitespace() {
        match a {
            "-k" => keep = true,
            o if o.starts_with('-') => {}
            n => name = Some(n.to_string()),
        }
    }
    let words = match name {
        None => "[Fail]uninstall needs a bundle name".to_string(),
        Some(name) => match local.open(&crate::proto::to_bytes(&Request::Uninstall { name, keep }))
        {
            Ok(mut ch) => words_of(&mut ch).await,
            Err(e) => e.to_string(),
        },
    };
    let said = words.trim_end().replace('\n', " ");
    let _ = out.send(app_finish(c, APP_MODE_UNINSTALL, &said)).await;
}

/// A failure's message, never empty.
fn failed(m: String) -> String {
    if m.is_empty() {
        "[Fail]the transfer failed".into()
    } else {
        m
    }
}

/// The message a channel closes with (empty for success).
pub(crate) async fn close_reason(ch: &mut Channel) -> String {
    loop {
        if let Event::Close(e) = ch.recv().await {
            return match (e.code, e.message) {
                (0, _) => String::new(),
                (_, m) if m.is_empty() => "[Fail]the transfer failed".into(),
                (_, m) => m,
            };
        }
    }
}

/// The device reads: the host's `file recv`; `args` is FILE_INIT's text
/// (`[-a] [-z] [-cwd DIR] REMOTE LOCAL`: REMOTE on this device, LOCAL on the host).
pub async fn master(
    c: u32,
    args: String,
    mut rx: mpsc::Receiver<ohos::Packet>,
    local: Session,
    out: Out,
) {
    let a = crate::channel::split_args(&args);
    let (mut hold, mut lz4, mut paths) = (false, false, Vec::new());
    let mut it = a.iter();
    while let Some(x) = it.next() {
        match x.as_str() {
            "-a" => hold = true,
            "-z" => lz4 = true,
            "-cwd" | "-b" => {
                it.next();
            }
            o if o.starts_with('-') || o == "remote" => {}
            p => paths.push(p.to_string()),
        }
    }
    let [.., remote, host_path] = paths.as_slice() else {
        return fail(c, &out, "[Fail]There is no local and remote path").await;
    };
    if !remote.starts_with('/') {
        let why = format!("[Fail]the device path must be absolute: {remote}");
        return fail(c, &out, &why).await;
    }
    let opts = FileOpts {
        keep_attrs: hold,
        compress: false,
        sync: false,
    };
    let req = Request::FileRecv {
        remote: remote.clone(),
        opts,
    };
    let mut ch = match local.open(&crate::proto::to_bytes(&req)) {
        Ok(ch) => ch,
        Err(e) => return fail(c, &out, &e.to_string()).await,
    };
    let name = remote
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("file")
        .to_string();
    match send_all(c, &mut ch, &mut rx, &out, host_path, &name, hold, lz4).await {
        Ok(()) => ch.close(&Exit::ok()),
        Err(e) => {
            ch.close(&Exit::fail(e.clone()));
            fail(c, &out, &e).await;
        }
    }
}

/// Waits for the peer's `want` on this channel and returns it; a close (after the peer's
/// failure message, when it sent one) is an error with that message.
pub(crate) async fn wait_for(
    rx: &mut mpsc::Receiver<ohos::Packet>,
    want: u32,
) -> Result<ohos::Packet, String> {
    let mut why = None;
    loop {
        let Some(p) = rx.recv().await else {
            return Err(GONE.into());
        };
        match p.protect.command_flag {
            x if x == want => return Ok(p),
            crate::ohos_auth::CMD_KERNEL_ECHO if p.payload.first() == Some(&0) => {
                why = Some(String::from_utf8_lossy(&p.payload[1..]).into_owned());
            }
            crate::ohos_auth::CMD_KERNEL_CHANNEL_CLOSE => {
                return Err(
                    why.unwrap_or_else(|| "[Fail]Transfer Stop: the channel was closed".into())
                );
            }
            _ => {}
        }
    }
}

/// The other side of the session went away.
pub(crate) const GONE: &str = "[Fail]the other side went away";

/// One chunk of a file as FILE_DATA or APP_DATA (`data_cmd`): the TransferPayload prefix at
/// file offset `index`, then the bytes, LZ4 when asked and smaller.
pub(crate) fn data_packet(c: u32, data_cmd: u32, index: u64, part: &[u8], lz4: bool) -> Vec<u8> {
    let packed = lz4
        .then(|| lz4_flex::block::compress(part))
        .filter(|z| z.len() < part.len());
    let (ctype, body) = match &packed {
        Some(z) => (COMPRESS_LZ4, &z[..]),
        None => (COMPRESS_NONE, part),
    };
    let head = TransferPayload {
        index,
        compress_type: ctype,
        compress_size: body.len() as u32,
        uncompress_size: part.len() as u32,
    };
    let mut payload = Vec::with_capacity(PAYLOAD_PREFIX_RESERVE + body.len());
    payload.extend_from_slice(&head.encode_prefix());
    payload.extend_from_slice(body);
    packet(c, data_cmd, &payload)
}

/// The master's half: the files our sender streams on `ch` go out as FILE_CHECK, FILE_DATA
/// ... to the slave at `peer_path` (each waiting for the slave's FILE_BEGIN and
/// FILE_FINISH), then FILE_FINISH\[0\]. `ch` is left open for the caller to close.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_all(
    c: u32,
    ch: &mut Channel,
    rx: &mut mpsc::Receiver<ohos::Packet>,
    out: &Out,
    peer_path: &str,
    name: &str,
    hold: bool,
    lz4: bool,
) -> Result<(), String> {
    let gone = || GONE.to_string();
    let (mut index, mut size) = (0u64, 0u64);
    loop {
        match ch.recv().await {
            Event::Ctrl(Ctrl::FileBegin(meta)) if meta.dir => {}
            Event::Ctrl(Ctrl::FileBegin(meta)) => {
                // A tree's paths start with its root's name, which becomes `peer_path`
                // (the slave appends optionalName itself when that is a directory).
                let path = match meta.rel.split_once('/') {
                    Some((_, rest)) => format!("{}/{rest}", peer_path.trim_end_matches('/')),
                    None => peer_path.to_string(),
                };
                let ns = (meta.mtime.max(0) as u64) * 1_000_000_000 + u64::from(meta.mtime_ns);
                let cfg = TransferConfig {
                    file_size: meta.size,
                    atime: if hold { ns } else { 0 },
                    mtime: if hold { ns } else { 0 },
                    path,
                    optional_name: meta
                        .rel
                        .rsplit('/')
                        .next()
                        .filter(|s| !s.is_empty())
                        .unwrap_or(name)
                        .to_string(),
                    compress_type: if lz4 { COMPRESS_LZ4 } else { COMPRESS_NONE },
                    hold_timestamp: hold,
                    ..Default::default()
                };
                out.send(packet(c, CMD_FILE_CHECK, &cfg.encode()))
                    .await
                    .map_err(|_| gone())?;
                wait_for(rx, CMD_FILE_BEGIN).await?;
                (index, size) = (0, meta.size);
            }
            Event::Data(d) => {
                for part in d.chunks(SEND_CHUNK) {
                    out.send(data_packet(c, CMD_FILE_DATA, index, part, lz4))
                        .await
                        .map_err(|_| gone())?;
                    index += part.len() as u64;
                }
            }
            Event::Ctrl(Ctrl::FileEnd { .. }) => {
                // The slave waits for the size it was told: anything else would hang it.
                if index != size {
                    return Err(format!(
                        "[Fail]the file changed size while it was sent ({index} of {size} bytes)"
                    ));
                }
                wait_for(rx, CMD_FILE_FINISH).await?;
            }
            Event::Ctrl(Ctrl::Done) => {
                out.send(packet(c, CMD_FILE_FINISH, &[0]))
                    .await
                    .map_err(|_| gone())?;
                return Ok(());
            }
            Event::Ctrl(_) => {}
            Event::Close(e) => {
                return Err(if e.message.is_empty() {
                    "[Fail]the transfer ended".into()
                } else {
                    e.message
                });
            }
        }
    }
}
