//! File transfer over a channel: `file send` and `file recv` run the same two halves, the
//! sender on one end and the receiver on the other.
//!
//! Sender: `FileBegin` (metadata), Data chunks of [`CHUNK`] bytes (each zstd-compressed alone
//! with `-z`), `FileEnd` (XXH3-128 of the bytes), ..., `Done`; then it waits for the receiver's
//! Close, which carries the result. Reading, hashing and compressing run on a blocking thread
//! so the network side and the disk side use different cores; credits keep several chunks in
//! flight. Receiver: each file goes to a temp name in the target directory and is renamed
//! only when all of it is in and its checksum matches, so a broken transfer never leaves a
//! partial file under the final name. No fsync per chunk.

use crate::frame::CHUNK;
use crate::proto::{Ctrl, Exit, FileMeta, FileOpts};
use crate::session::{Channel, Event};
use bytes::Bytes;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// XXH3-128 of a file's bytes, as the sender and receiver compare them. twox-hash picks the
/// AVX2 code at run time (xxhash-rust chose SSE2 at build time: twice the cost here).
pub(crate) struct Xxh3(twox_hash::XxHash3_128);

impl Xxh3 {
    pub(crate) fn new() -> Self {
        Xxh3(twox_hash::XxHash3_128::new())
    }
    pub(crate) fn update(&mut self, b: &[u8]) {
        self.0.write(b);
    }
    pub(crate) fn digest128(&self) -> u128 {
        self.0.finish_128()
    }
}

/// Who the device side acts as on files: the shell user, or `None` for the process's own
/// user (the host side, root mode, or a daemon that is not root).
pub type ActAs = Option<Arc<oxh_kal::user::Identity>>;

/// Runs `f` with this thread's file access checked as `act` (see
/// [`oxh_kal::user::Identity::as_fs`]); `f` must not await.
pub fn as_user<T>(act: &ActAs, f: impl FnOnce() -> T) -> Result<T, String> {
    match act {
        None => Ok(f()),
        Some(id) => id
            .as_fs(f)
            .map_err(|e| format!("[Fail]cannot act as the shell user: {e}")),
    }
}

/// [`as_user`] for work that fails with a message of its own.
fn as_user_r<T>(act: &ActAs, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    as_user(act, f).and_then(|r| r)
}

/// Depth limit of directory walks.
const MAX_DEPTH: usize = 64;

/// Bytes expected and done so far, for a progress bar (updated by the disk threads).
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of file content announced so far.
    pub total: AtomicU64,
    /// Bytes read (sender) or written (receiver).
    pub done: AtomicU64,
}

/// An optional progress handle.
pub type ProgressRef = Option<Arc<Progress>>;

/// What a finished transfer did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Files carried (directories not counted).
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Stats {
    /// OpenHarmony's closing line.
    pub fn finish_line(&self) -> String {
        let ms = self.elapsed.as_millis().max(1);
        let rate = self.bytes as f64 / 1024.0 / (ms as f64 / 1000.0);
        format!(
            "FileTransfer finish, Size:{}, File count = {}, time:{}ms rate:{:.2}kB/s",
            self.bytes, self.files, ms, rate
        )
    }
}

fn fail_path(what: &str, e: &std::io::Error, p: &Path) -> String {
    format!("[Fail]Error {what}: {e}, path:{}", p.display())
}

fn meta_of(rel: String, m: &std::fs::Metadata) -> FileMeta {
    FileMeta {
        rel,
        dir: m.is_dir(),
        size: if m.is_dir() { 0 } else { m.len() },
        mode: m.mode() & 0o7777,
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec() as u32,
    }
}

/// Lists what a transfer of `root` carries, parents before children.
pub fn walk(root: &Path) -> Result<Vec<(PathBuf, FileMeta)>, String> {
    let m = std::fs::metadata(root).map_err(|e| fail_path("opening file", &e, root))?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let mut out = vec![(root.to_path_buf(), meta_of(name.clone(), &m))];
    if m.is_dir() {
        walk_dir(root, &name, 0, &mut out)?;
    }
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<(PathBuf, FileMeta)>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "[Fail]directory tree deeper than {MAX_DEPTH}: {}",
            dir.display()
        ));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| fail_path("opening directory", &e, dir))?;
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        // Symlinks are followed only if they point at files; loops are not walked.
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        let r = format!("{rel}/{}", e.file_name().to_string_lossy());
        if m.is_dir() {
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            out.push((p.clone(), meta_of(r.clone(), &m)));
            walk_dir(&p, &r, depth + 1, out)?;
        } else if m.is_file() {
            out.push((p, meta_of(r, &m)));
        }
    }
    Ok(())
}

/// Sends `root` (a file or a directory tree) over `ch` and waits for the receiver's result;
/// returns the stats or the failure message (already with `[Fail]`).
pub async fn send(
    ch: &mut Channel,
    root: &Path,
    opts: &FileOpts,
    act: &ActAs,
) -> Result<Stats, String> {
    send_files(ch, root, opts, true, None, act).await
}

/// Sends `root`; with `wait`, waits for the receiver's Close (its result) too. Without, the
/// caller reads what the receiver does next (e.g. an install's output).
pub async fn send_files(
    ch: &mut Channel,
    root: &Path,
    opts: &FileOpts,
    wait: bool,
    progress: ProgressRef,
    act: &ActAs,
) -> Result<Stats, String> {
    match send_inner(ch, root, opts, wait, progress, act).await {
        Ok(s) => Ok(s),
        Err(Failure::Msg(m)) => Err(m),
        // The channel was closed under us: the receiver's Close says why.
        Err(Failure::Closed(m)) => {
            match tokio::time::timeout(Duration::from_secs(2), ch.recv()).await {
                Ok(Event::Close(e)) if !e.message.is_empty() => Err(e.message),
                _ => Err(m),
            }
        }
    }
}

enum Failure {
    Msg(String),
    Closed(String),
}

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure::Msg(m)
    }
}

fn closed(e: crate::session::SessionError) -> Failure {
    Failure::Closed(e.to_string())
}

async fn send_inner(
    ch: &mut Channel,
    root: &Path,
    opts: &FileOpts,
    wait: bool,
    progress: ProgressRef,
    act: &ActAs,
) -> Result<Stats, Failure> {
    let t0 = Instant::now();
    let list = as_user_r(act, || walk(root))?;
    if let Some(p) = &progress {
        let total: u64 = list.iter().map(|(_, m)| m.size).sum();
        p.total.fetch_add(total, Ordering::Relaxed);
    }
    let mut stats = Stats::default();
    let tx = ch.sender();
    for (path, meta) in list {
        tx.ctrl(&Ctrl::FileBegin(meta.clone())).map_err(closed)?;
        if meta.dir {
            continue;
        }
        if opts.sync {
            match next_ctrl(ch).await? {
                Ctrl::Want(true) => {}
                Ctrl::Want(false) => continue,
                other => return Err(format!("[Fail]unexpected {other:?}").into()),
            }
        }
        let (ctx, mut crx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(4);
        let compress = opts.compress;
        let p = path.clone();
        let prog = progress.clone();
        let a = act.clone();
        let reader = tokio::task::spawn_blocking(move || {
            as_user_r(&a, || read_file(&p, compress, ctx, prog))
        });
        while let Some(chunk) = crx.recv().await {
            let chunk = chunk?;
            let sent = tokio::select! {
                r = tx.send(chunk) => r.map_err(closed),
                ev = ch.recv() => Err(Failure::Msg(early_end(ev))),
            };
            sent?;
        }
        let hash = reader.await.map_err(|e| format!("[Fail]{e}"))??;
        tx.ctrl(&Ctrl::FileEnd { hash }).map_err(closed)?;
        stats.files += 1;
        stats.bytes += meta.size;
    }
    tx.ctrl(&Ctrl::Done).map_err(closed)?;
    if wait {
        loop {
            match ch.recv().await {
                Event::Close(e) if e.code == 0 => break,
                Event::Close(e) => return Err(Failure::Msg(e.message)),
                _ => {}
            }
        }
    }
    stats.elapsed = t0.elapsed();
    Ok(stats)
}

fn early_end(ev: Event) -> String {
    match ev {
        Event::Close(e) if !e.message.is_empty() => e.message,
        Event::Close(_) => "[Fail]receiver ended the transfer".into(),
        other => format!("[Fail]unexpected {other:?} during a transfer"),
    }
}

async fn next_ctrl(ch: &mut Channel) -> Result<Ctrl, String> {
    match ch.recv().await {
        Event::Ctrl(c) => Ok(c),
        ev => Err(early_end(ev)),
    }
}

fn read_file(
    path: &Path,
    compress: bool,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, String>>,
    progress: ProgressRef,
) -> Result<u128, String> {
    let mut f = std::fs::File::open(path).map_err(|e| fail_path("opening file", &e, path))?;
    let mut h = Xxh3::new();
    let mut sent = 0u64;
    loop {
        // Read into fresh, uninitialised capacity (File reads without zeroing it first), and
        // hand the buffer on without a copy.
        let mut buf = Vec::with_capacity(CHUNK);
        (&mut f)
            .take(CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(|e| fail_path("reading file", &e, path))?;
        let n = buf.len();
        if n == 0 {
            break;
        }
        h.update(&buf);
        if let Some(p) = &progress {
            p.done.fetch_add(n as u64, Ordering::Relaxed);
        }
        let out = if compress {
            let queued = tx.max_capacity() - tx.capacity();
            Bytes::from(if squeeze(sent, queued) {
                compress_chunk(&buf)?
            } else {
                stored_frame(&buf)
            })
        } else {
            Bytes::from(buf)
        };
        if tx.blocking_send(Ok(out)).is_err() {
            return Err("[Fail]transfer aborted".into());
        }
        sent += n as u64;
        if n < CHUNK {
            break;
        }
    }
    Ok(h.digest128())
}

/// Whether `-z` compresses the next chunk, `sent` bytes into a file, with `queued` chunks
/// (of 4) still waiting for the network side. Compressing pays only while the link is slower
/// than zstd: chunks then pile up in the queue. When they do not, the link keeps up with us
/// and zstd would only slow the transfer (on loopback zstd level 1 runs at a third of hdc's
/// plain speed), so the chunk goes stored, as `zstd --adapt` trades ratio for speed. Measured
/// on loopback with log text: compressing at 1, 2 and 3 queued chunks gave 704, 792 and 845
/// MB/s (always compressing: 306). The first flow-control window of a file is always
/// compressed: until it fills, the queue says nothing about the link, and a small file
/// compressed costs milliseconds.
fn squeeze(sent: u64, queued: usize) -> bool {
    sent < crate::session::WINDOW as u64 || queued >= 3
}

/// zstd level of `-z` chunks.
const ZSTD_LEVEL: i32 = 1;
/// Bytes of a chunk compressed first to judge the rest: already-compressed data (packages,
/// media, archives) is sent as stored blocks instead of paying zstd for no gain.
const PROBE: usize = 32 * 1024;
/// A probe that does not shrink below this share (in percent) marks the chunk incompressible.
const INCOMPRESSIBLE_PCT: usize = 97;

/// One `-z` chunk as one zstd frame: compressed, or, when a probe of its start shows it will
/// not shrink, stored (a frame of raw blocks, which any zstd decoder reads at memcpy speed).
fn compress_chunk(buf: &[u8]) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("[Fail]compress: {e}");
    if buf.len() >= 2 * PROBE {
        let probe = zstd::bulk::compress(&buf[..PROBE], ZSTD_LEVEL).map_err(fail)?;
        if probe.len() * 100 >= PROBE * INCOMPRESSIBLE_PCT {
            return Ok(stored_frame(buf));
        }
    }
    let z = zstd::bulk::compress(buf, ZSTD_LEVEL).map_err(fail)?;
    Ok(if z.len() >= buf.len() {
        stored_frame(buf)
    } else {
        z
    })
}

/// A zstd frame (RFC 8878) holding `data` in raw blocks: magic, a header with a 4-byte
/// content size and the single-segment flag (so no window descriptor), then blocks of at
/// most 128 KiB, each behind its 3-byte header (last flag, type 0 = raw, size).
fn stored_frame(data: &[u8]) -> Vec<u8> {
    const MAX_BLOCK: usize = 128 * 1024;
    let mut v = Vec::with_capacity(data.len() + 9 + 3 * (data.len() / MAX_BLOCK + 1));
    v.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    v.push(0b1010_0000);
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let mut blocks = data.chunks(MAX_BLOCK).peekable();
    if blocks.peek().is_none() {
        v.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(b) = blocks.next() {
        let last = u32::from(blocks.peek().is_none());
        let header = last | ((b.len() as u32) << 3);
        v.extend_from_slice(&header.to_le_bytes()[..3]);
        v.extend_from_slice(b);
    }
    v
}

/// Where a received entry goes: into `dest` if it is an existing directory, else `dest` is
/// the new name of the root.
fn target_of(dest: &Path, dest_is_dir: bool, rel: &str) -> PathBuf {
    if dest_is_dir {
        dest.join(rel)
    } else {
        match rel.split_once('/') {
            Some((_, rest)) => dest.join(rest),
            None => dest.to_path_buf(),
        }
    }
}

struct Incoming {
    tmp: PathBuf,
    target: PathBuf,
    meta: FileMeta,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    writer: std::thread::JoinHandle<Result<(u128, u64), String>>,
}

fn mtime_of(m: &FileMeta) -> SystemTime {
    if m.mtime >= 0 {
        UNIX_EPOCH + Duration::new(m.mtime as u64, m.mtime_ns)
    } else {
        UNIX_EPOCH
    }
}

fn apply_attrs(path: &Path, m: &FileMeta) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| fail_path("opening file", &e, path))?;
    f.set_times(
        std::fs::FileTimes::new()
            .set_modified(mtime_of(m))
            .set_accessed(mtime_of(m)),
    )
    .map_err(|e| fail_path("setting times", &e, path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode))
        .map_err(|e| fail_path("setting mode", &e, path))
}

/// Receives a transfer into `dest`, then closes `ch` with the result. Returns the stats or the
/// failure message.
pub async fn recv(
    ch: &mut Channel,
    dest: &Path,
    opts: &FileOpts,
    act: &ActAs,
) -> Result<Stats, String> {
    recv_progress(ch, dest, opts, None, act).await
}

/// [`recv`] with a progress handle.
pub async fn recv_progress(
    ch: &mut Channel,
    dest: &Path,
    opts: &FileOpts,
    progress: ProgressRef,
    act: &ActAs,
) -> Result<Stats, String> {
    let r = recv_files(ch, dest, opts, progress, act).await;
    let exit = match &r {
        Ok(_) => Exit::ok(),
        Err(m) => Exit::fail(m.clone()),
    };
    ch.sender().close(&exit);
    r
}

/// Receives a transfer into `dest` without closing `ch` (the caller sends the result).
pub async fn recv_files(
    ch: &mut Channel,
    dest: &Path,
    opts: &FileOpts,
    progress: ProgressRef,
    act: &ActAs,
) -> Result<Stats, String> {
    let t0 = Instant::now();
    let dest_is_dir = as_user(act, || dest.is_dir())?;
    let mut stats = Stats::default();
    let mut cur: Option<Incoming> = None;
    let mut dirs: Vec<(PathBuf, FileMeta)> = Vec::new();
    let result = loop {
        let ev = ch.recv().await;
        match ev {
            Event::Ctrl(Ctrl::FileBegin(meta)) => {
                if meta
                    .rel
                    .split('/')
                    .any(|c| c == ".." || c.is_empty() || c == ".")
                {
                    break Err(format!("[Fail]bad path in transfer: {}", meta.rel));
                }
                let target = target_of(dest, dest_is_dir, &meta.rel);
                if meta.dir {
                    let made = as_user_r(act, || {
                        std::fs::create_dir_all(&target)
                            .map_err(|e| fail_path("creating directory", &e, &target))
                    });
                    if let Err(e) = made {
                        break Err(e);
                    }
                    dirs.push((target, meta));
                    continue;
                }
                if opts.sync {
                    let newer = as_user(act, || std::fs::metadata(&target))
                        .ok()
                        .and_then(Result::ok)
                        .is_some_and(|m| {
                            (m.mtime(), m.mtime_nsec() as u32) >= (meta.mtime, meta.mtime_ns)
                        });
                    let _ = ch.ctrl(&Ctrl::Want(!newer));
                    if newer {
                        continue;
                    }
                }
                if let Some(p) = &progress {
                    p.total.fetch_add(meta.size, Ordering::Relaxed);
                }
                match as_user_r(act, || {
                    start_file(target, meta, opts.compress, progress.clone())
                }) {
                    Ok(inc) => cur = Some(inc),
                    Err(e) => break Err(e),
                }
            }
            Event::Data(d) => {
                let Some(inc) = &cur else {
                    break Err("[Fail]data outside a file".into());
                };
                // Waits (without blocking the runtime) while the disk thread is behind.
                if inc.tx.send(d).await.is_err() {
                    // The writer failed: its error comes out of join below.
                    let inc = cur.take().map(|i| finish_abort(i, act));
                    break Err(inc.unwrap_or_else(|| "[Fail]write failed".into()));
                }
            }
            Event::Ctrl(Ctrl::FileEnd { hash }) => {
                let Some(inc) = cur.take() else {
                    break Err("[Fail]file end outside a file".into());
                };
                let keep = opts.keep_attrs;
                let a = act.clone();
                // Joins the disk thread: off the runtime's threads.
                let done = tokio::task::spawn_blocking(move || {
                    as_user_r(&a, || finish_file(inc, hash, keep))
                })
                .await
                .unwrap_or_else(|_| Err("[Fail]writer crashed".into()));
                match done {
                    Ok(n) => {
                        stats.files += 1;
                        stats.bytes += n;
                    }
                    Err(e) => break Err(e),
                }
            }
            Event::Ctrl(Ctrl::Done) => break Ok(()),
            Event::Ctrl(_) => {}
            Event::Close(e) => {
                break Err(if e.message.is_empty() {
                    "[Fail]sender ended the transfer".into()
                } else {
                    e.message
                });
            }
        }
    };
    if let Some(inc) = cur.take() {
        finish_abort(inc, act);
    }
    result?;
    if opts.keep_attrs {
        as_user_r(act, || {
            dirs.iter().rev().try_for_each(|(p, m)| apply_attrs(p, m))
        })?;
    }
    stats.elapsed = t0.elapsed();
    Ok(stats)
}

fn start_file(
    target: PathBuf,
    meta: FileMeta,
    compress: bool,
    progress: ProgressRef,
) -> Result<Incoming, String> {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rnd = [0u8; 6];
    let _ = getrandom::fill(&mut rnd);
    let tmp = dir.join(format!(".{name}.hdc-{}", hex::encode(rnd)));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| fail_path("opening file", &e, &target))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let t = tmp.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::io::BufWriter::with_capacity(0, f);
        let mut h = Xxh3::new();
        let mut n = 0u64;
        while let Some(d) = rx.blocking_recv() {
            let plain: Bytes = if compress {
                Bytes::from(
                    zstd::bulk::decompress(&d, CHUNK)
                        .map_err(|e| format!("[Fail]decompress: {e}"))?,
                )
            } else {
                d
            };
            h.update(&plain);
            if let Some(p) = &progress {
                p.done.fetch_add(plain.len() as u64, Ordering::Relaxed);
            }
            n += plain.len() as u64;
            f.write_all(&plain)
                .map_err(|e| fail_path("writing file", &e, &t))?;
        }
        f.flush().map_err(|e| fail_path("writing file", &e, &t))?;
        Ok((h.digest128(), n))
    });
    Ok(Incoming {
        tmp,
        target,
        meta,
        tx,
        writer,
    })
}

fn finish_abort(inc: Incoming, act: &ActAs) -> String {
    drop(inc.tx);
    let r = inc.writer.join();
    let _ = as_user(act, || std::fs::remove_file(&inc.tmp));
    match r {
        Ok(Err(e)) => e,
        _ => "[Fail]transfer aborted".into(),
    }
}

fn finish_file(inc: Incoming, hash: u128, keep: bool) -> Result<u64, String> {
    drop(inc.tx);
    let r = inc
        .writer
        .join()
        .unwrap_or_else(|_| Err("[Fail]writer crashed".into()));
    let done = (|| {
        let (h, n) = r?;
        if h != hash || n != inc.meta.size {
            return Err(format!(
                "[Fail]checksum mismatch for {} ({n} of {} bytes)",
                inc.target.display(),
                inc.meta.size
            ));
        }
        if keep {
            apply_attrs(&inc.tmp, &inc.meta)?;
        }
        std::fs::rename(&inc.tmp, &inc.target)
            .map_err(|e| fail_path("renaming file", &e, &inc.target))?;
        Ok(n)
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&inc.tmp);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{self, Hello, Request};
    use crate::session::{Session, hello};

    async fn pair() -> (
        Session,
        Session,
        tokio::sync::mpsc::UnboundedReceiver<crate::session::Incoming>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let h = Hello {
            version: proto::VERSION,
            name: "x".into(),
            refused: String::new(),
        };
        let (x, y) = tokio::join!(hello(&mut a, &h), hello(&mut b, &h));
        x.unwrap();
        y.unwrap();
        let (sa, _) = Session::start(a, false, "a".into());
        let (sb, ib) = Session::start(b, true, "b".into());
        (sa, sb, ib)
    }

    async fn run(
        src: &Path,
        dest: &Path,
        opts: FileOpts,
    ) -> (Result<Stats, String>, Result<Stats, String>) {
        let (sa, _sb, mut ib) = pair().await;
        let mut ch = sa.open(&proto::to_bytes(&Request::Boot)).unwrap();
        let mut inc = ib.recv().await.unwrap();
        let o2 = opts.clone();
        let d = dest.to_path_buf();
        let r = tokio::spawn(async move { recv(&mut inc.channel, &d, &o2, &None).await });
        let s = send(&mut ch, src, &opts, &None).await;
        (s, r.await.unwrap())
    }

    #[tokio::test]
    async fn tree_with_attrs_and_compression() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let root = src.path().join("tree");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let big: Vec<u8> = (0..CHUNK * 2 + 77).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("a/b/big"), &big).unwrap();
        std::fs::write(root.join("small"), b"hi").unwrap();
        std::fs::set_permissions(root.join("small"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        std::fs::File::open(root.join("small"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let opts = FileOpts {
            keep_attrs: true,
            compress: true,
            sync: false,
        };
        let (s, r) = run(&root, dst.path(), opts).await;
        let s = s.unwrap();
        assert_eq!(s.files, 2);
        assert_eq!(r.unwrap().bytes, big.len() as u64 + 2);
        assert_eq!(std::fs::read(dst.path().join("tree/a/b/big")).unwrap(), big);
        let m = std::fs::metadata(dst.path().join("tree/small")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o751);
        assert_eq!(m.modified().unwrap(), old);
        assert!(s.finish_line().starts_with("FileTransfer finish, Size:"));
    }

    #[test]
    fn z_chunks_are_zstd_frames_stored_when_they_would_not_shrink() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let random: Vec<u8> = (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text: Vec<u8> = b"hilog line 42: everything is fine\n"
            .iter()
            .copied()
            .cycle()
            .take(CHUNK)
            .collect();
        let small = b"tiny".to_vec();
        for (name, data) in [("random", &random), ("text", &text), ("small", &small)] {
            let z = compress_chunk(data).unwrap();
            assert_eq!(&zstd::bulk::decompress(&z, CHUNK).unwrap(), data, "{name}");
        }
        // Incompressible: stored, a few bytes of framing over the data.
        let z = compress_chunk(&random).unwrap();
        assert!(z.len() <= random.len() + 9 + 3 * 4, "{}", z.len());
        assert!(compress_chunk(&text).unwrap().len() < text.len() / 20);
        for n in [0, 1, 128 * 1024, 128 * 1024 + 1, CHUNK] {
            let d = &random[..n];
            assert_eq!(
                zstd::bulk::decompress(&stored_frame(d), CHUNK).unwrap(),
                d,
                "{n}"
            );
        }
    }

    #[test]
    fn z_compresses_the_first_window_then_only_while_chunks_wait_for_the_link() {
        let w = crate::session::WINDOW as u64;
        assert!(squeeze(0, 0) && squeeze(w - 1, 0));
        assert!(!squeeze(w, 0), "the link waits for us: store");
        assert!(
            !squeeze(w, 1),
            "one chunk waiting is normal hand-over: store"
        );
        assert!(!squeeze(w, 2));
        assert!(
            squeeze(w, 3) && squeeze(10 * w, 4),
            "chunks pile up: compress"
        );
    }

    #[test]
    fn z_on_a_slow_link_compresses_every_chunk() {
        // A consumer that takes a chunk only when the queue is full: a link slower than zstd.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("log.txt");
        let line = b"11-26 17:23:58.522  4973  4973 I C01500/oxhd: session 7 sent 1200 bytes\n";
        let text: Vec<u8> = line.iter().copied().cycle().take(40 * CHUNK).collect();
        std::fs::write(&f, &text).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let p = f.clone();
        let reader = std::thread::spawn(move || read_file(&p, true, tx, None));
        let (mut wire, mut back) = (0usize, Vec::new());
        let t0 = std::time::Instant::now();
        loop {
            while rx.len() < rx.max_capacity() && !reader.is_finished() {
                assert!(t0.elapsed() < Duration::from_secs(60), "reader stalled");
                std::thread::yield_now();
            }
            match rx.blocking_recv() {
                Some(c) => {
                    let c = c.unwrap();
                    wire += c.len();
                    back.extend(zstd::bulk::decompress(&c, CHUNK).unwrap());
                }
                None => break,
            }
        }
        reader.join().unwrap().unwrap();
        assert_eq!(back, text);
        assert!(
            wire < text.len() / 20,
            "{wire} of {} bytes on the wire",
            text.len()
        );
    }

    #[tokio::test]
    async fn sync_skips_files_that_are_not_newer() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let f = src.path().join("f");
        std::fs::write(&f, b"new").unwrap();
        std::fs::File::open(&f)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(10))
            .unwrap();
        let out = dst.path().join("f");
        std::fs::write(&out, b"mine").unwrap();
        let opts = FileOpts {
            keep_attrs: false,
            compress: false,
            sync: true,
        };
        let (s, _) = run(&f, &out, opts).await;
        assert_eq!(s.unwrap().files, 0);
        assert_eq!(std::fs::read(&out).unwrap(), b"mine");
    }

    #[tokio::test]
    async fn unwritable_target_is_a_clear_error_and_no_file() {
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let (s, r) = run(&f, Path::new("/nonexistent-dir/x"), FileOpts::default()).await;
        let e = s.unwrap_err();
        assert!(e.starts_with("[Fail]Error opening file"), "{e}");
        assert!(r.is_err());
    }
}
