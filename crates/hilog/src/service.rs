//! The hilog system ability: the shared buffer, the write path with flow control and privacy,
//! readers and followers, control methods and persistence.

use crate::api::{self, *};
use crate::layer::{DEFAULT_CORE_DOMAIN, HilogLayer};
use crate::persist::{PersistConfig, PersistTask, Source, list_files};
use crate::quota::{Admit, FlowControl, quota_notice};
use crate::{
    DEFAULT_BUFFER_SIZE, DEFAULT_QUOTA, HilogError, Level, LogEntry, LogType, MAX_MSG_LEN,
    MAX_TAG_LEN, Matcher, RingBuffer, check_buffer_size, format_log, format_size, select,
    truncate_utf8,
};
use bytes::Bytes;
use oxh_ipc::{Caller, ConnHandle, RemoteError, TokenType, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Largest page of entries in one READ reply (cost bytes); the encoded reply stays well
/// under the 1 MiB transaction limit.
pub const MAX_READ_REPLY_BYTES: usize = 512 * 1024;
/// Largest batch of entries in one follow event.
pub const MAX_FOLLOW_EVENT_BYTES: usize = 256 * 1024;
/// Follows one connection may hold.
pub const MAX_FOLLOWS_PER_CONN: usize = 8;
/// Follows the daemon holds at once.
pub const MAX_FOLLOWS: usize = 256;
const PERSIST_BATCH_BYTES: usize = 256 * 1024;
const PERSIST_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How the daemon sets hilog up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HilogConfig {
    /// Buffer size in bytes (64K..=16M; out-of-range values are clamped).
    pub buffer_size: u64,
    /// Per-process quota in bytes per second.
    pub quota: u32,
    /// Privacy on (mask private arguments) at start; OpenHarmony's default is on.
    pub privacy: bool,
    /// Where `hilog -w start` writes (`<data-dir>/log/hilog`); `None` disables persistence.
    pub persist_dir: Option<PathBuf>,
    /// Default rotation size of persisted files.
    pub persist_file_size: u64,
    /// Default number of persisted files kept.
    pub persist_max_files: u32,
    /// The daemon's pid, exempt from flow control.
    pub daemon_pid: i32,
}

impl Default for HilogConfig {
    fn default() -> Self {
        Self {
            buffer_size: DEFAULT_BUFFER_SIZE,
            quota: DEFAULT_QUOTA,
            privacy: true,
            persist_dir: None,
            persist_file_size: crate::persist::DEFAULT_FILE_SIZE,
            persist_max_files: crate::persist::DEFAULT_MAX_FILES,
            daemon_pid: std::process::id() as i32,
        }
    }
}

struct State {
    buffer: RingBuffer,
    flow: FlowControl,
}

/// What the layer and the SA share.
pub(crate) struct Core {
    state: Mutex<State>,
    privacy: AtomicBool,
    seq_tx: watch::Sender<u64>,
    epoch: Instant,
    daemon_pid: i32,
    persist_dir: Option<PathBuf>,
    persist_defaults: (u64, u32),
    persist: Mutex<Option<PersistTask>>,
    follows: Mutex<HashMap<(u64, u64), tokio::task::AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep logging.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    pub(crate) fn privacy(&self) -> bool {
        self.privacy.load(Ordering::Relaxed)
    }

    /// Stores an entry as is (no quota) and wakes followers.
    pub(crate) fn append(&self, entry: LogEntry) -> u64 {
        let seq = lock(&self.state).buffer.push(entry);
        self.seq_tx.send_replace(seq);
        seq
    }

    fn hilog_entry(&self, level: Level, msg: String) -> LogEntry {
        let (sec, nsec) = crate::wall_clock_now();
        LogEntry {
            seq: 0,
            sec,
            nsec,
            pid: self.daemon_pid,
            tid: self.daemon_pid,
            level,
            log_type: LogType::Core,
            domain: DEFAULT_CORE_DOMAIN,
            tag: "HiLog".into(),
            msg,
        }
    }
}

/// hilog: owns the buffer; shared by the tracing layer and the system ability.
pub struct HilogService {
    core: Arc<Core>,
}

impl std::fmt::Debug for HilogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HilogService").finish_non_exhaustive()
    }
}

const METHODS: &[Method] = &[
    Method::open(WRITE, "Write"),
    Method::with_permission(READ, "Read", PERMISSION),
    Method::with_permission(STOP_FOLLOW, "StopFollow", PERMISSION),
    Method::with_permission(GET_BUFFER_SIZE, "GetBufferSize", PERMISSION),
    Method::with_permission(SET_BUFFER_SIZE, "SetBufferSize", PERMISSION),
    Method::with_permission(CLEAR, "Clear", PERMISSION),
    Method::with_permission(SET_PRIVACY, "SetPrivacy", PERMISSION),
    Method::with_permission(PERSIST, "Persist", PERMISSION),
    Method::with_permission(FLOW_CONTROL, "FlowControl", PERMISSION),
];

impl HilogService {
    /// Creates the service. Call [`HilogService::layer`] and install it before the SA starts;
    /// register the returned `Arc` as SA [`api::SA_ID`].
    pub fn new(config: HilogConfig) -> Arc<Self> {
        let size = config
            .buffer_size
            .clamp(crate::MIN_BUFFER_SIZE, crate::MAX_BUFFER_SIZE);
        let (seq_tx, _) = watch::channel(0);
        Arc::new(Self {
            core: Arc::new(Core {
                state: Mutex::new(State {
                    buffer: RingBuffer::new(size),
                    flow: FlowControl::new(config.quota, config.daemon_pid),
                }),
                privacy: AtomicBool::new(config.privacy),
                seq_tx,
                epoch: Instant::now(),
                daemon_pid: config.daemon_pid,
                persist_dir: config.persist_dir,
                persist_defaults: (config.persist_file_size, config.persist_max_files),
                persist: Mutex::new(None),
                follows: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A tracing layer feeding this service's buffer.
    pub fn layer(&self) -> HilogLayer {
        HilogLayer::new(self.core.clone())
    }

    /// Installs a global tracing subscriber whose only layer is [`HilogService::layer`], so
    /// that every `tracing` event of the process lands in the buffer. Returns false (and
    /// changes nothing) if a global subscriber was already set; a daemon that also wants
    /// stderr output builds its own registry with [`HilogService::layer`] instead.
    pub fn install_global_subscriber(&self) -> bool {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(self.layer());
        tracing::subscriber::set_global_default(subscriber).is_ok()
    }

    /// Whether private arguments are masked.
    pub fn privacy(&self) -> bool {
        self.core.privacy()
    }

    /// Turns masking on or off (`hilog -p on|off`); applies to lines written from now on.
    pub fn set_privacy(&self, on: bool) {
        self.core.privacy.store(on, Ordering::Relaxed);
    }

    /// Stores a ready entry without flow control (for in-process writers); returns its seq.
    pub fn append(&self, entry: LogEntry) -> u64 {
        self.core.append(entry)
    }

    /// Every entry in the buffer, oldest first (tests and diagnostics).
    pub fn snapshot(&self) -> Vec<LogEntry> {
        lock(&self.core.state).buffer.iter().cloned().collect()
    }

    /// The write path of [`api::WRITE`]: checks the request, formats the message with
    /// privacy, applies the caller's quota and stores it. The pid is the caller's (kernel);
    /// only system processes and the shell may write core lines. Returns the seq, or `None`
    /// when flow control dropped the line.
    pub fn write(&self, caller: &Caller, args: WriteArgs) -> Result<Option<u64>, HilogError> {
        self.write_at(caller, args, oxh_kal::clock::elapsed(self.core.epoch))
    }

    fn write_at(
        &self,
        caller: &Caller,
        args: WriteArgs,
        now: Duration,
    ) -> Result<Option<u64>, HilogError> {
        if args.log_type == LogType::Core
            && !matches!(caller.token_type, TokenType::Native | TokenType::Shell)
        {
            return Err(HilogError::Invalid(
                "only system processes may write core logs; use LogType::App".into(),
            ));
        }
        args.log_type.check_domain(args.domain)?;
        let mut tag = args.tag;
        if tag.is_empty() {
            return Err(HilogError::InvalidTag(tag));
        }
        truncate_utf8(&mut tag, MAX_TAG_LEN);
        let mut msg = format_log(&args.fmt, &args.args, self.core.privacy());
        truncate_utf8(&mut msg, MAX_MSG_LEN);
        let (sec, nsec) = crate::wall_clock_now();
        let entry = LogEntry {
            seq: 0,
            sec,
            nsec,
            pid: caller.pid,
            tid: if args.tid > 0 { args.tid } else { caller.pid },
            level: args.level,
            log_type: args.log_type,
            domain: args.domain,
            tag,
            msg,
        };
        let seq = {
            let mut st = lock(&self.core.state);
            match st.flow.admit(caller.pid, entry.cost(), now) {
                Admit::Drop => return Ok(None),
                Admit::Accept => st.buffer.push(entry),
                Admit::AcceptAfterDrops(n) => {
                    st.buffer
                        .push(quota_notice(&entry, n, &caller.process_name));
                    st.buffer.push(entry)
                }
            }
        };
        self.core.seq_tx.send_replace(seq);
        Ok(Some(seq))
    }

    /// One page of [`api::READ`] (without following).
    pub fn read(&self, args: &ReadArgs) -> Result<ReadReply, HilogError> {
        Ok(self.read_snapshot(args)?.0)
    }

    fn read_snapshot(&self, args: &ReadArgs) -> Result<(ReadReply, u64, Matcher), HilogError> {
        let matcher = args.filter.compile()?;
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let st = lock(&self.core.state);
        let until = args.until.unwrap_or(u64::MAX);
        let sel = select(
            st.buffer
                .iter_after(args.after.unwrap_or(0))
                .take_while(|e| e.seq <= until),
            &matcher,
            args.head.map(to_usize),
            args.tail.map(to_usize),
            MAX_READ_REPLY_BYTES,
        );
        let last = st.buffer.last_seq();
        drop(st);
        Ok((
            ReadReply {
                entries: sel.entries,
                more: sel.more,
                last_seq: last,
            },
            last,
            matcher,
        ))
    }

    fn start_follow(
        &self,
        conn: &ConnHandle,
        sub: u64,
        matcher: Matcher,
        after: u64,
    ) -> Result<(), HilogError> {
        let mut follows = lock(&self.core.follows);
        follows.retain(|_, h| !h.is_finished());
        let mine = follows.keys().filter(|(c, _)| *c == conn.id()).count();
        if mine >= MAX_FOLLOWS_PER_CONN || follows.len() >= MAX_FOLLOWS {
            return Err(HilogError::Invalid(format!(
                "too many log readers following (at most {MAX_FOLLOWS_PER_CONN} per client, \
                 {MAX_FOLLOWS} in all)"
            )));
        }
        let task = tokio::spawn(follow(self.core.clone(), conn.clone(), sub, matcher, after));
        if let Some(old) = follows.insert((conn.id(), sub), task.abort_handle()) {
            old.abort();
        }
        Ok(())
    }

    /// Stops a follow of `conn` (also done when the client dies).
    pub fn stop_follow(&self, conn_id: u64, sub: u64) {
        if let Some(h) = lock(&self.core.follows).remove(&(conn_id, sub)) {
            h.abort();
        }
    }

    /// Buffer size, use and entry count (`hilog -g`).
    pub fn buffer_info(&self) -> BufferInfo {
        let st = lock(&self.core.state);
        BufferInfo {
            size: st.buffer.capacity(),
            used: st.buffer.used(),
            entries: st.buffer.len() as u64,
        }
    }

    /// `hilog -G`: sizes outside 64K..=16M are refused.
    pub fn set_buffer_size(&self, size: u64) -> Result<BufferInfo, HilogError> {
        lock(&self.core.state).buffer.set_capacity(size)?;
        Ok(self.buffer_info())
    }

    /// `hilog -r`.
    pub fn clear(&self) {
        lock(&self.core.state).buffer.clear();
    }

    /// `hilog -Q` and the quota.
    pub fn flow_control(&self, args: FlowControlArgs) -> FlowControlInfo {
        let mut st = lock(&self.core.state);
        if let Some(on) = args.enabled {
            st.flow.set_enabled(on);
        }
        if let Some(q) = args.quota {
            st.flow.set_quota(q);
        }
        FlowControlInfo {
            enabled: st.flow.enabled(),
            quota: st.flow.quota(),
            drops: st.flow.drop_counts(),
        }
    }

    /// `hilog -w start`: persists from the oldest line in the buffer on.
    pub fn start_persist(
        &self,
        file_size: Option<u64>,
        max_files: Option<u32>,
    ) -> Result<PersistStatus, HilogError> {
        let dir = self
            .core
            .persist_dir
            .clone()
            .ok_or(HilogError::PersistNotConfigured)?;
        let mut slot = lock(&self.core.persist);
        if slot.is_some() {
            return Err(HilogError::PersistRunning);
        }
        let cfg = PersistConfig {
            dir,
            file_size: file_size.unwrap_or(self.core.persist_defaults.0),
            max_files: max_files.unwrap_or(self.core.persist_defaults.1),
        };
        let weak = Arc::downgrade(&self.core);
        let source: Source = Box::new(move |after| {
            let core = weak.upgrade()?;
            let st = lock(&core.state);
            Some(st.buffer.read_after(after, PERSIST_BATCH_BYTES, |_| true))
        });
        let task = PersistTask::start(cfg, source)?;
        let status = status_of(Some(&task), &task.cfg);
        *slot = Some(task);
        Ok(status)
    }

    /// `hilog -w stop`: finishes the current file.
    pub async fn stop_persist(&self) -> Result<PersistStatus, HilogError> {
        let task = lock(&self.core.persist).take();
        let Some(task) = task else {
            return Err(HilogError::Invalid("no persistence task is running".into()));
        };
        let cfg = task.cfg.clone();
        let ack = task.stop();
        wait_ack(ack).await?;
        Ok(status_of(None, &cfg))
    }

    /// `hilog -w query`: flushes a running task so sizes are current, then reports.
    pub async fn query_persist(&self) -> Result<PersistStatus, HilogError> {
        let ack = lock(&self.core.persist).as_ref().map(PersistTask::flush);
        if let Some(ack) = ack {
            wait_ack(ack).await?;
        }
        let slot = lock(&self.core.persist);
        match slot.as_ref() {
            Some(t) => Ok(status_of(Some(t), &t.cfg)),
            None => {
                let dir = self
                    .core
                    .persist_dir
                    .clone()
                    .ok_or(HilogError::PersistNotConfigured)?;
                let (file_size, max_files) = self.core.persist_defaults;
                Ok(status_of(
                    None,
                    &PersistConfig {
                        dir,
                        file_size,
                        max_files,
                    },
                ))
            }
        }
    }

    /// Stops persistence (finishing its file) and every follow; call before the daemon exits.
    pub async fn shutdown(&self) {
        let _ = self.stop_persist().await;
        for (_, h) in lock(&self.core.follows).drain() {
            h.abort();
        }
    }

    /// The text of `hidumper -s 1290`.
    pub fn dump_text(&self) -> String {
        let mut out = format!("hilog ({})\n", api::SA_ID);
        {
            let st = lock(&self.core.state);
            let b = &st.buffer;
            let _ = writeln!(
                out,
                "  buffer: size {} ({}), used {} bytes, {} entries, last seq {}, evicted {}",
                b.capacity(),
                format_size(b.capacity()),
                b.used(),
                b.len(),
                b.last_seq(),
                b.evicted()
            );
            let _ = writeln!(
                out,
                "  privacy: {}",
                if self.privacy() { "on" } else { "off" }
            );
            let _ = writeln!(
                out,
                "  flow control: {}, quota {} bytes/s per process (pid {} exempt)",
                if st.flow.enabled() { "on" } else { "off" },
                st.flow.quota(),
                st.flow.exempt_pid()
            );
            let drops = st.flow.drop_counts();
            if drops.is_empty() {
                out.push_str("  dropped by quota: none\n");
            } else {
                out.push_str("  dropped by quota:\n");
                for (pid, n) in drops.iter().take(32) {
                    let _ = writeln!(out, "    pid {pid}: {n} lines");
                }
            }
        }
        let follows = lock(&self.core.follows).len();
        let _ = writeln!(out, "  followers: {follows}");
        let slot = lock(&self.core.persist);
        match (slot.as_ref(), &self.core.persist_dir) {
            (Some(t), _) => {
                let s = status_of(Some(t), &t.cfg);
                let _ = writeln!(
                    out,
                    "  persistence: running in {} ({} per file, {} files kept, {} missed)",
                    s.dir,
                    format_size(s.file_size),
                    s.max_files,
                    s.missed
                );
                if let Some(e) = lock(&t.status).last_error.as_ref() {
                    let _ = writeln!(out, "    last error: {e}");
                }
                for f in &s.files {
                    let _ = writeln!(out, "    {} {}", f.name, f.size);
                }
            }
            (None, Some(dir)) => {
                let _ = writeln!(out, "  persistence: stopped ({})", dir.display());
            }
            (None, None) => out.push_str("  persistence: not configured\n"),
        }
        out
    }
}

fn status_of(task: Option<&PersistTask>, cfg: &PersistConfig) -> PersistStatus {
    PersistStatus {
        running: task.is_some(),
        dir: cfg.dir.display().to_string(),
        file_size: cfg.file_size,
        max_files: cfg.max_files,
        files: list_files(&cfg.dir),
        missed: task.map_or(0, |t| lock(&t.status).missed),
    }
}

async fn wait_ack(
    rx: tokio::sync::oneshot::Receiver<Result<(), String>>,
) -> Result<(), HilogError> {
    let io = |msg: String| HilogError::PersistIo {
        path: "persistence task".into(),
        source: std::io::Error::other(msg),
    };
    match tokio::time::timeout(PERSIST_ACK_TIMEOUT, rx).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(io(e)),
        Ok(Err(_)) => Err(io("the persistence task exited".into())),
        Err(_) => Err(io("the persistence task did not answer in time".into())),
    }
}

/// Pushes every new matching line after `cursor` to `sub` until the client goes away.
async fn follow(core: Arc<Core>, conn: ConnHandle, sub: u64, matcher: Matcher, mut cursor: u64) {
    let mut rx = core.seq_tx.subscribe();
    loop {
        loop {
            let batch = lock(&core.state)
                .buffer
                .read_after(cursor, MAX_FOLLOW_EVENT_BYTES, |e| matcher.matches(e));
            cursor = batch.cursor;
            let mut entries = batch.entries;
            if batch.missed > 0 {
                let mut note = core.hilog_entry(
                    Level::Warn,
                    format!("========Slow reader missed log lines: {}", batch.missed),
                );
                note.seq = entries.first().map_or(cursor, |e| e.seq.saturating_sub(1));
                entries.insert(0, note);
            }
            if !entries.is_empty() && !conn.push_event(sub, &encode(&entries)) {
                return;
            }
            if !batch.more {
                break;
            }
        }
        if conn.is_closed() || rx.changed().await.is_err() {
            return;
        }
    }
}

#[async_trait::async_trait]
impl SystemAbility for HilogService {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        match code {
            WRITE => {
                let args: WriteArgs = decode(&data)?;
                self.write(ctx.caller(), args)?;
                Ok(encode(&()))
            }
            READ => {
                let args: ReadArgs = decode(&data)?;
                let (reply, last, matcher) = self.read_snapshot(&args)?;
                if let Some(sub) = args.follow {
                    self.start_follow(&ctx.conn, sub, matcher, last)?;
                }
                Ok(encode(&reply))
            }
            STOP_FOLLOW => {
                let sub: u64 = decode(&data)?;
                self.stop_follow(ctx.conn.id(), sub);
                Ok(encode(&()))
            }
            GET_BUFFER_SIZE => Ok(encode(&self.buffer_info())),
            SET_BUFFER_SIZE => {
                let size: u64 = decode(&data)?;
                Ok(encode(&self.set_buffer_size(check_buffer_size(size)?)?))
            }
            CLEAR => {
                self.clear();
                Ok(encode(&()))
            }
            SET_PRIVACY => {
                let on: bool = decode(&data)?;
                self.set_privacy(on);
                Ok(encode(&()))
            }
            PERSIST => {
                let cmd: PersistCmd = decode(&data)?;
                let status = match cmd {
                    PersistCmd::Start {
                        file_size,
                        max_files,
                    } => self.start_persist(file_size, max_files)?,
                    PersistCmd::Stop => self.stop_persist().await?,
                    PersistCmd::Query => self.query_persist().await?,
                };
                Ok(encode(&status))
            }
            FLOW_CONTROL => {
                let args: FlowControlArgs = decode(&data)?;
                Ok(encode(&self.flow_control(args)))
            }
            _ => Err(RemoteError::invalid(format!("unknown code {code}"))),
        }
    }

    fn dump(&self, _args: &[String]) -> String {
        self.dump_text()
    }

    fn on_client_died(&self, conn: &ConnHandle) {
        lock(&self.core.follows).retain(|(c, _), h| {
            if *c == conn.id() {
                h.abort();
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Filter, LogArg};
    use oxh_ipc::code;
    use tokio::sync::mpsc::UnboundedReceiver;

    fn caller(pid: i32, token_type: TokenType) -> Caller {
        Caller {
            pid,
            uid: 1000,
            gid: 1000,
            token_id: 0,
            token_type,
            process_name: "com.example.app".into(),
        }
    }

    fn conn(pid: i32, t: TokenType) -> (ConnHandle, UnboundedReceiver<Vec<u8>>) {
        ConnHandle::detached(caller(pid, t))
    }

    fn app_write(fmt: &str, args: Vec<LogArg>) -> WriteArgs {
        WriteArgs {
            level: Level::Info,
            log_type: LogType::App,
            domain: 0x3200,
            tag: "testTag".into(),
            fmt: fmt.into(),
            args,
            tid: 0,
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        svc: &HilogService,
        c: &ConnHandle,
        code: u32,
        arg: &impl serde::Serialize,
    ) -> Result<T, RemoteError> {
        let ctx = CallContext { conn: c.clone() };
        let out = svc.call(ctx, code, Bytes::from(encode(arg))).await?;
        decode::<T>(&out)
    }

    fn event_entries(frame: &[u8]) -> (u64, Vec<LogEntry>) {
        let id = u64::from_le_bytes(frame[5..13].try_into().unwrap());
        (id, decode(&frame[13..]).unwrap())
    }

    #[test]
    fn only_write_is_open() {
        let svc = HilogService::new(HilogConfig::default());
        for m in svc.methods() {
            if m.code == WRITE {
                assert!(m.permission.is_none() && !m.system_only);
            } else {
                assert_eq!(m.permission, Some("ohos.permission.DUMP"), "{}", m.name);
            }
        }
    }

    #[tokio::test]
    async fn write_takes_pid_from_kernel_and_masks_private_args() {
        let svc = HilogService::new(HilogConfig::default());
        let (c, _rx) = conn(4242, TokenType::Hap);
        let mut args = app_write(
            "user %{public}s token %s",
            vec!["alice".into(), "s3cret".into()],
        );
        args.tid = 4243;
        call::<()>(&svc, &c, WRITE, &args).await.unwrap();
        let e = svc.snapshot().pop().unwrap();
        assert_eq!(e.pid, 4242);
        assert_eq!(e.tid, 4243);
        assert_eq!(e.msg, "user alice token <private>");
        assert_eq!(e.log_type, LogType::App);
        assert!(e.format_line().contains(" I A03200/testTag: user alice"));

        svc.set_privacy(false);
        call::<()>(&svc, &c, WRITE, &args).await.unwrap();
        assert_eq!(svc.snapshot().pop().unwrap().msg, "user alice token s3cret");
    }

    #[tokio::test]
    async fn write_checks_type_domain_and_limits() {
        let svc = HilogService::new(HilogConfig::default());
        let (app, _rx) = conn(10, TokenType::Hap);
        let mut core = app_write("x", vec![]);
        core.log_type = LogType::Core;
        core.domain = 0xD00_1510;
        let err = call::<()>(&svc, &app, WRITE, &core).await.unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAM);
        let (sys, _rx2) = conn(11, TokenType::Native);
        call::<()>(&svc, &sys, WRITE, &core).await.unwrap();

        let mut bad = app_write("x", vec![]);
        bad.domain = 0xD00_1510;
        assert_eq!(
            call::<()>(&svc, &app, WRITE, &bad).await.unwrap_err().code,
            code::INVALID_PARAM
        );
        let mut empty = app_write("x", vec![]);
        empty.tag.clear();
        assert!(call::<()>(&svc, &app, WRITE, &empty).await.is_err());

        let mut long = app_write(&"m".repeat(10_000), vec![]);
        long.tag = "t".repeat(100);
        call::<()>(&svc, &app, WRITE, &long).await.unwrap();
        let e = svc.snapshot().pop().unwrap();
        assert_eq!(e.msg.len(), MAX_MSG_LEN);
        assert_eq!(e.tag.len(), MAX_TAG_LEN);
        assert!(call::<()>(&svc, &app, WRITE, &"garbage").await.is_err());
    }

    #[test]
    fn quota_drops_and_notices_but_not_for_the_daemon() {
        let svc = HilogService::new(HilogConfig {
            quota: 1000,
            daemon_pid: 1,
            ..Default::default()
        });
        let app = caller(50, TokenType::Hap);
        let big = || app_write(&"x".repeat(400), vec![]);
        let t = Duration::from_secs(10);
        assert!(svc.write_at(&app, big(), t).unwrap().is_some());
        assert!(svc.write_at(&app, big(), t).unwrap().is_some());
        assert!(
            svc.write_at(&app, big(), t).unwrap().is_none(),
            "over 1000 B/s"
        );
        assert!(svc.write_at(&app, big(), t).unwrap().is_none());
        assert!(
            svc.write_at(&app, big(), t + Duration::from_secs(1))
                .unwrap()
                .is_some()
        );
        let es = svc.snapshot();
        assert_eq!(es.len(), 4);
        assert_eq!(es[2].tag, "LOGLIMIT");
        assert_eq!(es[2].level, Level::Warn);
        assert_eq!(es[2].pid, 50);
        assert_eq!(
            es[2].msg,
            "==com.example.app LOGS OVER PROC QUOTA, 2 DROPPED=="
        );
        assert_eq!(es[3].msg.len(), 400);
        assert_eq!(
            svc.flow_control(FlowControlArgs::default()).drops,
            vec![(50, 2)]
        );

        let daemon = caller(1, TokenType::Native);
        for _ in 0..10 {
            assert!(svc.write_at(&daemon, big(), t).unwrap().is_some());
        }
        let off = svc.flow_control(FlowControlArgs {
            enabled: Some(false),
            quota: Some(5),
        });
        assert!(!off.enabled);
        assert_eq!(off.quota, 5);
        assert!(svc.write_at(&app, big(), t).unwrap().is_some());
        assert!(svc.dump_text().contains("pid 50: 2 lines"));
    }

    #[tokio::test]
    async fn read_filters_and_pages_under_the_transaction_limit() {
        let svc = HilogService::new(HilogConfig {
            buffer_size: 4 << 20,
            quota: u32::MAX,
            ..Default::default()
        });
        let (c, _rx) = conn(77, TokenType::Shell);
        for i in 0..600 {
            let mut w = app_write(
                "%{public}d %{public}s",
                vec![i.into(), "y".repeat(4000).into()],
            );
            if i % 2 == 1 {
                w.level = Level::Error;
            }
            call::<()>(&svc, &c, WRITE, &w).await.unwrap();
        }
        let args = ReadArgs {
            filter: Filter {
                levels: vec![Level::Error],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut page: ReadReply = call(&svc, &c, READ, &args).await.unwrap();
        assert!(page.more, "300 x 4 KiB does not fit one reply");
        assert!(oxh_ipc::encode(&page).len() < oxh_ipc::MAX_TRANSACTION);
        let mut all = page.entries.clone();
        let mut next = args.next_page(&page);
        let mut late = app_write("late", vec![]);
        late.level = Level::Error;
        call::<()>(&svc, &c, WRITE, &late).await.unwrap();
        while let Some(a) = next {
            page = call(&svc, &c, READ, &a).await.unwrap();
            all.extend(page.entries.iter().cloned());
            next = a.next_page(&page);
        }
        // A line written while paging is not part of the selection.
        assert_eq!(all.len(), 300);
        assert!(all.iter().all(|e| e.level == Level::Error));
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

        let tail: ReadReply = call(
            &svc,
            &c,
            READ,
            &ReadArgs {
                tail: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(tail.entries.len(), 2);
        assert!(tail.entries[0].msg.starts_with("599 "));
        assert_eq!(tail.entries[1].msg, "late");
        let head: ReadReply = call(
            &svc,
            &c,
            READ,
            &ReadArgs {
                head: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(head.entries[0].msg.starts_with("0 "));

        let bad = ReadArgs {
            filter: Filter {
                regex: Some("(".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            call::<ReadReply>(&svc, &c, READ, &bad)
                .await
                .unwrap_err()
                .code,
            code::INVALID_PARAM
        );
    }

    #[tokio::test]
    async fn follow_pushes_new_matching_lines_until_the_client_dies() {
        let svc = HilogService::new(HilogConfig::default());
        let (writer, _w) = conn(5, TokenType::Hap);
        let (reader, mut events) = conn(6, TokenType::Shell);
        call::<()>(&svc, &writer, WRITE, &app_write("old", vec![]))
            .await
            .unwrap();
        let args = ReadArgs {
            filter: Filter {
                regex: Some("^keep".into()),
                ..Default::default()
            },
            follow: Some(9),
            ..Default::default()
        };
        let first: ReadReply = call(&svc, &reader, READ, &args).await.unwrap();
        assert!(first.entries.is_empty());
        for m in ["keep 1", "skip", "keep 2"] {
            call::<()>(&svc, &writer, WRITE, &app_write(m, vec![]))
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 2 {
            let frame = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap()
                .unwrap();
            let (sub, es) = event_entries(&frame);
            assert_eq!(sub, 9);
            got.extend(es.into_iter().map(|e| e.msg));
        }
        assert_eq!(got, vec!["keep 1", "keep 2"]);
        assert!(svc.dump_text().contains("followers: 1"));

        svc.on_client_died(&reader);
        assert!(svc.dump_text().contains("followers: 0"));
        call::<()>(&svc, &writer, WRITE, &app_write("keep 3", vec![]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(events.try_recv().is_err(), "no events after death");
    }

    #[tokio::test]
    async fn slow_follower_is_told_what_it_missed() {
        let svc = HilogService::new(HilogConfig {
            buffer_size: crate::MIN_BUFFER_SIZE,
            quota: u32::MAX,
            ..Default::default()
        });
        let (c, mut events) = conn(6, TokenType::Shell);
        let (w, _rx) = conn(7, TokenType::Hap);
        let cursor = 0;
        // Fill past the buffer before the follower runs: it starts at seq 0.
        for _ in 0..40 {
            svc.write(w.caller(), app_write(&"z".repeat(4000), vec![]))
                .unwrap();
        }
        svc.start_follow(&c, 1, Matcher::all(), cursor).unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        let (_, es) = event_entries(&frame);
        assert_eq!(es[0].tag, "HiLog");
        assert!(
            es[0]
                .msg
                .starts_with("========Slow reader missed log lines: ")
        );
        svc.stop_follow(c.id(), 1);
    }

    #[tokio::test]
    async fn control_methods() {
        let svc = HilogService::new(HilogConfig::default());
        let (c, _rx) = conn(3, TokenType::Shell);
        let info: BufferInfo = call(&svc, &c, GET_BUFFER_SIZE, &()).await.unwrap();
        assert_eq!(info.size, 256 * 1024);
        let info: BufferInfo = call(&svc, &c, SET_BUFFER_SIZE, &(16u64 << 20))
            .await
            .unwrap();
        assert_eq!(info.size, 16 << 20);
        let err = call::<BufferInfo>(&svc, &c, SET_BUFFER_SIZE, &(1u64 << 30))
            .await
            .unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAM);
        assert!(err.message.contains("16M"), "{}", err.message);

        call::<()>(&svc, &c, WRITE, &app_write("a", vec![]))
            .await
            .unwrap();
        call::<()>(&svc, &c, CLEAR, &()).await.unwrap();
        assert!(svc.snapshot().is_empty());

        call::<()>(&svc, &c, SET_PRIVACY, &false).await.unwrap();
        assert!(!svc.privacy());
        assert!(svc.dump_text().contains("privacy: off"));
        let fc: FlowControlInfo = call(&svc, &c, FLOW_CONTROL, &FlowControlArgs::default())
            .await
            .unwrap();
        assert_eq!(fc.quota, DEFAULT_QUOTA);
        assert!(fc.enabled);

        let err = call::<PersistStatus>(&svc, &c, PERSIST, &PersistCmd::Query)
            .await
            .unwrap_err();
        assert_eq!(err.code, code::NOT_SUPPORTED, "no persist dir configured");
    }

    #[tokio::test]
    async fn persistence_start_query_stop() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("log/hilog");
        let svc = HilogService::new(HilogConfig {
            persist_dir: Some(pdir.clone()),
            ..Default::default()
        });
        let (c, _rx) = conn(3, TokenType::Shell);
        call::<()>(&svc, &c, WRITE, &app_write("before start", vec![]))
            .await
            .unwrap();
        let st: PersistStatus = call(
            &svc,
            &c,
            PERSIST,
            &PersistCmd::Start {
                file_size: None,
                max_files: Some(5),
            },
        )
        .await
        .unwrap();
        assert!(st.running);
        assert_eq!(st.max_files, 5);
        assert_eq!(st.file_size, crate::persist::DEFAULT_FILE_SIZE);
        let again = call::<PersistStatus>(
            &svc,
            &c,
            PERSIST,
            &PersistCmd::Start {
                file_size: None,
                max_files: None,
            },
        )
        .await
        .unwrap_err();
        assert!(again.message.contains("already running"));
        let bad = HilogService::new(HilogConfig {
            persist_dir: Some(pdir.clone()),
            ..Default::default()
        })
        .start_persist(Some(10), None)
        .unwrap_err();
        assert_eq!(bad.code(), code::INVALID_PARAM);

        call::<()>(&svc, &c, WRITE, &app_write("after start", vec![]))
            .await
            .unwrap();
        let q: PersistStatus = call(&svc, &c, PERSIST, &PersistCmd::Query).await.unwrap();
        assert!(q.running);
        assert_eq!(q.files.len(), 1);
        assert!(q.files[0].size > 0);
        let path = pdir.join(&q.files[0].name);
        let text = String::from_utf8(
            zstd::stream::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap(),
        )
        .unwrap();
        assert!(text.contains("A03200/testTag: before start\n"), "{text}");
        assert!(text.contains("A03200/testTag: after start\n"), "{text}");
        assert!(svc.dump_text().contains("persistence: running"));

        let st: PersistStatus = call(&svc, &c, PERSIST, &PersistCmd::Stop).await.unwrap();
        assert!(!st.running);
        assert!(
            call::<PersistStatus>(&svc, &c, PERSIST, &PersistCmd::Stop)
                .await
                .is_err()
        );

        // The standard tool decodes what we wrote.
        match std::process::Command::new("zstd")
            .arg("-dc")
            .arg(&path)
            .output()
        {
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
            }
            Err(e) => eprintln!("skipping the zstd(1) check: {e}"),
        }
        let q: PersistStatus = call(&svc, &c, PERSIST, &PersistCmd::Query).await.unwrap();
        assert!(!q.running);
        assert_eq!(q.files.len(), 1);
        svc.shutdown().await;
    }
}
