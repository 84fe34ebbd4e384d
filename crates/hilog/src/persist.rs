//! Persistence (`hilog -w`): the buffer's lines written to rotated, zstd-compressed files.
//!
//! Each file is a sequence of complete zstd frames, one per flush, so `zstd -d` decodes every
//! file, even the one being written, and a crash loses at most the last second of lines.
//! Files are named `hilog.NNN.YYYYmmdd-HHMMSS.zst`; the number only grows, and the oldest
//! files are deleted beyond the configured count.

use crate::api::PersistFileInfo;
use crate::{HilogError, ReadBatch};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Uncompressed bytes per file before rotating (OpenHarmony's default: 4 MiB).
pub const DEFAULT_FILE_SIZE: u64 = 4 << 20;
/// Smallest file size `-l` accepts (OpenHarmony: 64K).
pub const MIN_FILE_SIZE: u64 = 64 << 10;
/// Largest file size accepted, so one file stays manageable.
pub const MAX_FILE_SIZE: u64 = 1 << 30;
/// Files kept by default.
pub const DEFAULT_MAX_FILES: u32 = 10;
/// OpenHarmony's range for `-n`: 2..=1000 files.
pub const FILE_COUNT_RANGE: std::ops::RangeInclusive<u32> = 2..=1000;
/// File name prefix.
pub const FILE_PREFIX: &str = "hilog";
/// Buffered bytes that trigger a frame even before the flush interval.
const FRAME_TARGET: usize = 64 << 10;
/// Longest time a line waits in memory before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the task looks for new lines.
const POLL: Duration = Duration::from_millis(200);
const ZSTD_LEVEL: i32 = 3;

/// Where and how to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistConfig {
    /// Directory of the files (the daemon's `<data-dir>/log/hilog`).
    pub dir: PathBuf,
    /// Rotation size in uncompressed bytes.
    pub file_size: u64,
    /// Files kept.
    pub max_files: u32,
}

impl PersistConfig {
    /// Defaults (4 MiB files, 10 of them) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            file_size: DEFAULT_FILE_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }

    /// Checks the sizes against OpenHarmony's ranges.
    pub fn validate(&self) -> Result<(), HilogError> {
        if !(MIN_FILE_SIZE..=MAX_FILE_SIZE).contains(&self.file_size) {
            return Err(HilogError::InvalidPersist(format!(
                "file size {} must be between 64K and 1G",
                self.file_size
            )));
        }
        if !FILE_COUNT_RANGE.contains(&self.max_files) {
            return Err(HilogError::InvalidPersist(format!(
                "file count {} must be between 2 and 1000",
                self.max_files
            )));
        }
        Ok(())
    }
}

fn io_err(path: &Path, source: std::io::Error) -> HilogError {
    HilogError::PersistIo {
        path: path.display().to_string(),
        source,
    }
}

/// The index of a file of ours (`hilog.NNN.<time>.zst`), or `None` for anything else.
fn parse_index(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(FILE_PREFIX)?.strip_prefix('.')?;
    let rest = rest.strip_suffix(".zst")?;
    let (num, _time) = rest.split_once('.')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse().ok()
}

/// The persisted files in `dir`, oldest first, with their sizes on disk. A missing directory
/// has none.
pub fn list_files(dir: &Path) -> Vec<PersistFileInfo> {
    let mut v: Vec<(u64, PersistFileInfo)> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|d| {
                let name = d.file_name().into_string().ok()?;
                let idx = parse_index(&name)?;
                let size = d.metadata().ok().filter(|m| m.is_file())?.len();
                Some((idx, PersistFileInfo { name, size }))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, f)| f).collect()
}

struct Current {
    file: File,
    path: PathBuf,
}

/// Writes lines into rotated zstd files. Synchronous; the persistence task owns one.
pub struct Persister {
    cfg: PersistConfig,
    current: Option<Current>,
    /// Uncompressed bytes of the current file, including `pending`.
    cur_raw: u64,
    pending: Vec<u8>,
    next_index: u64,
    compressor: zstd::bulk::Compressor<'static>,
    last_sync: Instant,
}

impl Persister {
    /// Prepares `cfg.dir` (created 0750 if missing) and continues numbering after the files
    /// already there. The first file is created when the first line is flushed.
    pub fn open(cfg: PersistConfig) -> Result<Self, HilogError> {
        cfg.validate()?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&cfg.dir)
            .map_err(|e| io_err(&cfg.dir, e))?;
        let next_index = list_files(&cfg.dir)
            .last()
            .and_then(|f| parse_index(&f.name))
            .map_or(1, |i| i + 1);
        let compressor =
            zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| io_err(&cfg.dir, e))?;
        Ok(Self {
            cfg,
            current: None,
            cur_raw: 0,
            pending: Vec::new(),
            next_index,
            compressor,
            last_sync: Instant::now(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PersistConfig {
        &self.cfg
    }

    /// The file being written, if one is open.
    pub fn current_file(&self) -> Option<&Path> {
        self.current.as_ref().map(|c| c.path.as_path())
    }

    /// Appends one line (a newline is added), rotating first if the current file would grow
    /// past the size limit.
    pub fn write_line(&mut self, line: &str) -> Result<(), HilogError> {
        let len = line.len() as u64 + 1;
        if self.cur_raw > 0 && self.cur_raw + len > self.cfg.file_size {
            self.rotate()?;
        }
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.cur_raw += len;
        if self.pending.len() >= FRAME_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered lines as one complete zstd frame; fsyncs at most once a second.
    pub fn flush(&mut self) -> Result<(), HilogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            self.create_file()?;
        }
        let frame = self
            .compressor
            .compress(&self.pending)
            .map_err(|e| io_err(&self.cfg.dir, e))?;
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        cur.file
            .write_all(&frame)
            .map_err(|e| io_err(&cur.path, e))?;
        self.pending.clear();
        if self.last_sync.elapsed() >= FLUSH_INTERVAL {
            cur.file.sync_data().map_err(|e| io_err(&cur.path, e))?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Flushes and fsyncs the current file.
    pub fn sync(&mut self) -> Result<(), HilogError> {
        self.flush()?;
        if let Some(cur) = &self.current {
            cur.file.sync_all().map_err(|e| io_err(&cur.path, e))?;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Finishes the current file and starts the next on the next flush.
    pub fn rotate(&mut self) -> Result<(), HilogError> {
        self.sync()?;
        self.current = None;
        self.cur_raw = 0;
        Ok(())
    }

    /// Flushes, fsyncs and closes (stop).
    pub fn finish(mut self) -> Result<(), HilogError> {
        self.sync()
    }

    fn create_file(&mut self) -> Result<(), HilogError> {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let name = format!("{FILE_PREFIX}.{:03}.{stamp}.zst", self.next_index);
        self.next_index += 1;
        let path = self.cfg.dir.join(&name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        self.current = Some(Current { file, path });
        // Keep at most max_files, the new one included.
        let files = list_files(&self.cfg.dir);
        let excess = files.len().saturating_sub(self.cfg.max_files as usize);
        for f in files.iter().take(excess) {
            let p = self.cfg.dir.join(&f.name);
            fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
        }
        if let Ok(d) = File::open(&self.cfg.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Reads lines for the persistence task: given the last seq written, the next batch, or
/// `None` once the log service is gone.
pub(crate) type Source = Box<dyn FnMut(u64) -> Option<ReadBatch> + Send>;

type Ack = tokio::sync::oneshot::Sender<Result<(), String>>;

enum Ctl {
    Flush(Ack),
    Stop(Ack),
}

/// What the running task reports to the service.
#[derive(Debug, Default)]
pub(crate) struct TaskStatus {
    pub(crate) missed: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) current: Option<PathBuf>,
}

/// A running persistence task: a thread that follows the buffer and feeds a [`Persister`].
pub(crate) struct PersistTask {
    tx: mpsc::Sender<Ctl>,
    pub(crate) cfg: PersistConfig,
    pub(crate) status: Arc<Mutex<TaskStatus>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PersistTask {
    /// Starts writing from the oldest line in the buffer.
    pub(crate) fn start(cfg: PersistConfig, source: Source) -> Result<Self, HilogError> {
        let persister = Persister::open(cfg.clone())?;
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(TaskStatus::default()));
        let st = status.clone();
        let handle = std::thread::Builder::new()
            .name("hilog-persist".into())
            .spawn(move || run(persister, source, rx, st))
            .map_err(|e| io_err(&cfg.dir, e))?;
        Ok(Self {
            tx,
            cfg,
            status,
            handle: Some(handle),
        })
    }

    /// Asks the task to write what it has; resolves once it did.
    pub(crate) fn flush(&self) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (ack, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Ctl::Flush(ack));
        rx
    }

    /// Asks the task to finish its file and exit; resolves once it did.
    pub(crate) fn stop(mut self) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (ack, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Ctl::Stop(ack));
        // The thread exits on its own; do not block the caller joining it.
        self.handle.take();
        rx
    }
}

fn run(
    mut p: Persister,
    mut source: Source,
    rx: mpsc::Receiver<Ctl>,
    status: Arc<Mutex<TaskStatus>>,
) {
    let mut cursor = 0u64;
    let mut last_flush = Instant::now();
    let report = |r: Result<(), HilogError>, current: Option<&Path>| -> Result<(), String> {
        let r = r.map_err(|e| e.to_string());
        if let Ok(mut s) = status.lock() {
            if let Err(e) = &r {
                s.last_error = Some(e.clone());
            }
            s.current = current.map(Path::to_path_buf);
        }
        r
    };
    loop {
        let ctl = rx.recv_timeout(POLL);
        let mut gone = false;
        loop {
            let Some(batch) = source(cursor) else {
                gone = true;
                break;
            };
            let mut r = Ok(());
            if batch.missed > 0 {
                if let Ok(mut s) = status.lock() {
                    s.missed += batch.missed;
                }
                r = p.write_line(&format!(
                    "========Slow persister missed log lines: {}",
                    batch.missed
                ));
            }
            for e in &batch.entries {
                if r.is_err() {
                    break;
                }
                r = p.write_line(&e.format_line());
            }
            let _ = report(r, p.current_file());
            cursor = batch.cursor;
            if !batch.more {
                break;
            }
        }
        if last_flush.elapsed() >= FLUSH_INTERVAL {
            let r = p.flush();
            let _ = report(r, p.current_file());
            last_flush = Instant::now();
        }
        match ctl {
            Ok(Ctl::Flush(ack)) => {
                let r = p.sync();
                let _ = ack.send(report(r, p.current_file()));
            }
            Ok(Ctl::Stop(ack)) => {
                let _ = ack.send(report(p.finish(), None));
                return;
            }
            Err(RecvTimeoutError::Timeout) if !gone => {}
            Err(_) => {
                let _ = report(p.finish(), None);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::sample;
    use crate::{Level, LogEntry};

    fn decode_all(dir: &Path) -> String {
        let mut out = String::new();
        for f in list_files(dir) {
            let bytes = fs::read(dir.join(&f.name)).unwrap();
            let raw = zstd::stream::decode_all(&bytes[..]).unwrap();
            out.push_str(std::str::from_utf8(&raw).unwrap());
        }
        out
    }

    #[test]
    fn file_names_parse() {
        assert_eq!(parse_index("hilog.001.20261126-105102.zst"), Some(1));
        assert_eq!(parse_index("hilog.1234.20261126-105102.zst"), Some(1234));
        assert_eq!(parse_index("hilog.x.20261126-105102.zst"), None);
        assert_eq!(parse_index("other.001.20261126-105102.zst"), None);
        assert_eq!(parse_index("hilog.001.20261126-105102"), None);
    }

    #[test]
    fn config_ranges() {
        let mut c = PersistConfig::new("/x");
        assert!(c.validate().is_ok());
        c.max_files = 1;
        assert!(c.validate().is_err());
        c.max_files = 1000;
        c.file_size = 1000;
        assert!(c.validate().is_err());
    }

    #[test]
    fn writes_frames_that_decode_even_before_finish() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("log/hilog");
        let mut p = Persister::open(PersistConfig::new(&d)).unwrap();
        p.write_line("first").unwrap();
        p.flush().unwrap();
        p.write_line("second").unwrap();
        p.flush().unwrap();
        // Not finished: every flush wrote a complete frame.
        assert_eq!(decode_all(&d), "first\nsecond\n");
        let name = list_files(&d)[0].name.clone();
        assert!(name.starts_with("hilog.001."), "{name}");
        assert_eq!(name.len(), "hilog.001.20261126-105102.zst".len());
        p.finish().unwrap();
    }

    #[test]
    fn rotates_by_uncompressed_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PersistConfig {
            dir: dir.path().to_path_buf(),
            file_size: MIN_FILE_SIZE,
            max_files: 3,
        };
        let mut p = Persister::open(cfg.clone()).unwrap();
        let line = "x".repeat(1023); // 1 KiB with the newline
        for i in 0..(64 * 5 + 10) {
            p.write_line(&format!("{i:05}{}", &line[5..])).unwrap();
        }
        p.finish().unwrap();
        let files = list_files(dir.path());
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files[0].name.starts_with("hilog.004."), "{files:?}");
        assert!(files[2].name.starts_with("hilog.006."), "{files:?}");
        for f in &files {
            let raw =
                zstd::stream::decode_all(&fs::read(dir.path().join(&f.name)).unwrap()[..]).unwrap();
            assert!(raw.len() as u64 <= MIN_FILE_SIZE);
        }
        // The newest file ends with the last line.
        assert!(decode_all(dir.path()).ends_with(&format!("{:05}{}\n", 64 * 5 + 9, &line[5..])));

        // A new persister continues the numbering.
        let mut p = Persister::open(cfg).unwrap();
        p.write_line("again").unwrap();
        p.finish().unwrap();
        assert!(
            list_files(dir.path())
                .last()
                .unwrap()
                .name
                .starts_with("hilog.007.")
        );
    }

    #[test]
    fn no_file_without_lines_and_foreign_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        let p = Persister::open(PersistConfig::new(dir.path())).unwrap();
        p.finish().unwrap();
        assert!(list_files(dir.path()).is_empty());
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn task_follows_a_source_and_reports_missed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<LogEntry> = (1..=3)
            .map(|i| sample(i, Level::Info, "t", &format!("line {i}")))
            .collect();
        let source: Source = Box::new(move |after| {
            let es: Vec<LogEntry> = entries.iter().filter(|e| e.seq > after).cloned().collect();
            Some(ReadBatch {
                missed: if after == 0 { 4 } else { 0 },
                cursor: es.last().map_or(after, |e| e.seq),
                entries: es,
                more: false,
            })
        });
        let task = PersistTask::start(PersistConfig::new(dir.path()), source).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            task.flush().await.unwrap().unwrap();
            let text = decode_all(dir.path());
            assert!(
                text.starts_with("========Slow persister missed log lines: 4\n"),
                "{text}"
            );
            assert!(text.contains("I C01510/t: line 3\n"), "{text}");
            assert_eq!(task.status.lock().unwrap().missed, 4);
            task.stop().await.unwrap().unwrap();
        });
        assert_eq!(
            decode_all(dir.path()).lines().count(),
            4,
            "nothing written twice"
        );
    }
}
