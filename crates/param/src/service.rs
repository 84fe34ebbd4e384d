//! The parameter service: every parameter in memory (a `BTreeMap`), `persist.*` also in
//! SQLite, and waiters woken by per-parameter watch channels.
//!
//! Writes of `persist.*` go to one writer thread that owns the SQLite connection. It takes
//! every write queued at that moment, commits them in one transaction (group commit), then
//! applies them to memory in queue order and acknowledges them. So a set returns only after its
//! commit, memory never shows a value that is not on disk, and a failed commit changes nothing.
//! Other parameters are applied to memory directly.

use crate::error::ParamError;
use crate::rules::{self, ParamKind};
use crate::store::{DB_FILE, PersistDb};
use oxh_ipc::TokenType;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4096;

/// Counts shown by the dump, and by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamStats {
    /// Parameters with a value.
    pub total: usize,
    /// Of those, `persist.*`.
    pub persist: usize,
    /// Of those, `const.*`.
    pub constant: usize,
    /// Calls waiting in [`ParamService::wait`].
    pub waiters: usize,
    /// Distinct parameters being waited for.
    pub waited_params: usize,
    /// `persist.*` writes committed since open.
    pub persist_writes: u64,
    /// SQLite transactions that carried them (fewer than writes when group commit batched).
    pub commits: u64,
}

#[derive(Default)]
struct State {
    params: BTreeMap<String, String>,
    /// One channel per parameter someone waits for, holding its latest value.
    watchers: HashMap<String, watch::Sender<Option<String>>>,
}

impl State {
    fn apply(&mut self, name: &str, value: &str) {
        self.params.insert(name.to_owned(), value.to_owned());
        if let Some(tx) = self.watchers.get(name) {
            tx.send_replace(Some(value.to_owned()));
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    persist_writes: AtomicU64,
    commits: AtomicU64,
    /// Fault injection: make every commit fail.
    #[cfg(test)]
    fail_commits: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The state; a panic elsewhere cannot leave it half-updated (every update is one
    /// insert), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct WriteReq {
    name: String,
    value: String,
    ack: oneshot::Sender<Result<(), String>>,
}

/// The system-parameter service. The daemon opens it once, registers it as SA
/// [`crate::api::SA_ID`] and sets its own parameters with [`ParamService::set_as_system`].
pub struct ParamService {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<WriteReq>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    db_path: PathBuf,
}

impl std::fmt::Debug for ParamService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamService")
            .field("db_path", &self.db_path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ParamService {
    /// Opens the service with its store in `dir` (created if missing) and loads the stored
    /// `persist.*` parameters. Blocking (file I/O); call it at daemon start.
    pub fn open(dir: &Path) -> Result<Arc<Self>, ParamError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ParamError::Internal(format!("cannot create directory {}: {e}", dir.display()))
        })?;
        let db_path = dir.join(DB_FILE);
        let (db, rows) = PersistDb::open(&db_path)?;
        let shared = Arc::new(Shared::default());
        {
            let mut st = shared.lock();
            st.params.extend(rows);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let s = shared.clone();
        let writer_thread = std::thread::Builder::new()
            .name("param-writer".into())
            .spawn(move || writer_loop(db, rx, s))
            .map_err(|e| ParamError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Arc::new(Self {
            shared,
            writer: tx,
            writer_thread: Some(writer_thread),
            db_path,
        }))
    }

    /// Where `persist.*` parameters are stored.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The value of `key` for a caller with token type `caller`; 14700101 if it is not set.
    pub fn get(&self, caller: TokenType, key: &str) -> Result<String, ParamError> {
        rules::validate_name(key)?;
        rules::check_read(key, caller)?;
        self.value(key).ok_or_else(|| ParamError::NotFound {
            name: key.to_owned(),
        })
    }

    /// The value of `key`, for the daemon's own use: no caller check.
    pub fn value(&self, key: &str) -> Option<String> {
        self.shared.lock().params.get(key).cloned()
    }

    /// Sets `key` to `value` on behalf of a caller with token type `caller`: checks the name,
    /// the access table, the value and the write-once rule of `const.*`, in OpenHarmony's
    /// order. Returns once applied; for `persist.*`, once committed to disk. A failure
    /// changes nothing.
    pub async fn set(&self, caller: TokenType, key: &str, value: &str) -> Result<(), ParamError> {
        rules::validate_name(key)?;
        rules::check_write(key, caller)?;
        rules::validate_value(key, value)?;
        match rules::kind(key) {
            ParamKind::Const => {
                let mut st = self.shared.lock();
                if st.params.contains_key(key) {
                    return Err(ParamError::ReadOnly {
                        name: key.to_owned(),
                    });
                }
                st.apply(key, value);
                Ok(())
            }
            ParamKind::Plain => {
                self.shared.lock().apply(key, value);
                Ok(())
            }
            ParamKind::Persist => self.set_persist(key, value).await,
        }
    }

    async fn set_persist(&self, key: &str, value: &str) -> Result<(), ParamError> {
        let stopped =
            || ParamError::Internal(format!("Set parameter {key} failed: the writer stopped"));
        let (ack, done) = oneshot::channel();
        self.writer
            .send(WriteReq {
                name: key.to_owned(),
                value: value.to_owned(),
                ack,
            })
            .map_err(|_| stopped())?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ParamError::Internal(format!(
                "Set parameter {key} failed: cannot commit to {}: {e}",
                self.db_path.display()
            ))),
            Err(_) => Err(stopped()),
        }
    }

    /// Sets a parameter as the daemon itself (a native caller): the access table still
    /// applies as for any system process, and so does the write-once rule of `const.*`.
    pub async fn set_as_system(&self, key: &str, value: &str) -> Result<(), ParamError> {
        self.set(TokenType::Native, key, value).await
    }

    /// Sets a default as the daemon: only if `key` has no value yet (so a `persist.*` value a
    /// developer changed survives restarts). True when it was set.
    pub async fn set_default(&self, key: &str, value: &str) -> Result<bool, ParamError> {
        if self.value(key).is_some() {
            return Ok(false);
        }
        self.set_as_system(key, value).await.map(|()| true)
    }

    /// `param ls [-r] NAME`: see [`crate::api::ListArgs`] for the exact meaning.
    pub fn list(
        &self,
        caller: TokenType,
        prefix: &str,
        recursive: bool,
    ) -> Result<Vec<(String, String)>, ParamError> {
        rules::validate_prefix(prefix)?;
        let all = prefix.is_empty() || prefix == "#";
        let st = self.shared.lock();
        if !recursive && !all {
            if let Some(v) = st.params.get(prefix) {
                rules::check_read(prefix, caller)?;
                return Ok(vec![(prefix.to_owned(), v.clone())]);
            }
            let node = format!("{}.", prefix.trim_end_matches('.'));
            if under(&st.params, &node).next().is_some() {
                return Ok(Vec::new());
            }
            return Err(ParamError::NotFound {
                name: prefix.to_owned(),
            });
        }
        let start = if all { "" } else { prefix };
        Ok(under(&st.params, start)
            // Names the caller may not read are left out, as OpenHarmony's traversal does.
            .filter(|(k, _)| rules::check_read(k, caller).is_ok())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// Waits until `key` has a value matching `pattern` (`*` wildcards; `None` = any value)
    /// and returns it, or fails with 14700105 after `timeout`. Woken by the set itself; no
    /// polling. Waits for a value, not for a transition: if the value changes several times
    /// quickly, a waiter sees the latest one.
    pub async fn wait(
        &self,
        caller: TokenType,
        key: &str,
        pattern: Option<&str>,
        timeout: Duration,
    ) -> Result<String, ParamError> {
        rules::validate_name(key)?;
        rules::check_read(key, caller)?;
        if let Some(p) = pattern
            && p.len() > rules::MAX_CONST_VALUE_BYTES
        {
            return Err(ParamError::InvalidArgument(format!(
                "wait pattern for {key} is {} bytes, the limit is {}",
                p.len(),
                rules::MAX_CONST_VALUE_BYTES
            )));
        }
        let matches = |v: &str| pattern.is_none_or(|p| rules::value_matches(v, p));
        let rx = {
            let mut st = self.shared.lock();
            let current = st.params.get(key).cloned();
            if let Some(v) = &current
                && matches(v)
            {
                return Ok(v.clone());
            }
            st.watchers
                .entry(key.to_owned())
                .or_insert_with(|| watch::channel(current).0)
                .subscribe()
        };
        let mut guard = Waiter {
            shared: &self.shared,
            key,
            rx: Some(rx),
        };
        let Some(rx) = guard.rx.as_mut() else {
            return Err(ParamError::Internal("waiter lost its channel".into()));
        };
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(v) = rx.borrow_and_update().as_deref()
                    && matches(v)
                {
                    return v.to_owned();
                }
                if rx.changed().await.is_err() {
                    // The sender lives in the state as long as a receiver does; never here.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        drop(guard);
        found.map_err(|_| ParamError::WaitTimeout {
            name: key.to_owned(),
            pattern: pattern.map(str::to_owned),
            timeout,
        })
    }

    /// Every later value of `key`, for a task inside the daemon that follows a parameter
    /// (the receiver's first `changed` is the next set).
    pub fn subscribe(&self, key: &str) -> watch::Receiver<Option<String>> {
        let mut st = self.shared.lock();
        let current = st.params.get(key).cloned();
        st.watchers
            .entry(key.to_owned())
            .or_insert_with(|| watch::channel(current).0)
            .subscribe()
    }

    /// Counts for the dump.
    pub fn stats(&self) -> ParamStats {
        let st = self.shared.lock();
        ParamStats {
            total: st.params.len(),
            persist: count_prefix(&st.params, rules::PERSIST_PREFIX),
            constant: count_prefix(&st.params, rules::CONST_PREFIX),
            waiters: st.watchers.values().map(|w| w.receiver_count()).sum(),
            waited_params: st.watchers.len(),
            persist_writes: self.shared.persist_writes.load(Ordering::Relaxed),
            commits: self.shared.commits.load(Ordering::Relaxed),
        }
    }

    /// The text of `param dump [verbose]` and `hidumper -s 3901`.
    pub fn dump_text(&self, verbose: bool) -> String {
        let s = self.stats();
        let mut out = format!(
            "ParamService ({})\n  parameters: {} (persist {}, const {}, other {})\n  \
             persist store: {} (SQLite WAL, synchronous=FULL)\n  \
             persist writes: {} in {} commits\n  waiters: {} on {} parameters\n  \
             access rules (longest prefix wins):\n",
            crate::api::SA_ID,
            s.total,
            s.persist,
            s.constant,
            s.total - s.persist - s.constant,
            self.db_path.display(),
            s.persist_writes,
            s.commits,
            s.waiters,
            s.waited_params,
        );
        for r in rules::ACCESS_RULES {
            out.push_str(&format!(
                "    {:<12} set: {:<14} ({})\n",
                r.scope(),
                r.write
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                r.why
            ));
        }
        if verbose {
            out.push_str("  values:\n");
            let st = self.shared.lock();
            for (k, v) in &st.params {
                out.push_str(&format!("    {k} = {v}\n"));
            }
        }
        out
    }

    /// Fault injection for tests: make every later commit fail.
    #[cfg(test)]
    pub(crate) fn fail_commits(&self, on: bool) {
        self.shared.fail_commits.store(on, Ordering::SeqCst);
    }
}

/// The parameters whose names start with `prefix`, in name order.
fn under<'a>(
    params: &'a BTreeMap<String, String>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a String)> {
    params
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

fn count_prefix(params: &BTreeMap<String, String>, prefix: &str) -> usize {
    under(params, prefix).count()
}

/// Drops its receiver when the wait ends (set, timeout or cancellation) and removes the
/// parameter's channel when it was the last waiter, so waiters leave nothing behind.
struct Waiter<'a> {
    shared: &'a Shared,
    key: &'a str,
    rx: Option<watch::Receiver<Option<String>>>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut st = self.shared.lock();
        if st
            .watchers
            .get(self.key)
            .is_some_and(|w| w.receiver_count() == 0)
        {
            st.watchers.remove(self.key);
        }
    }
}

impl Drop for ParamService {
    fn drop(&mut self) {
        // Close the queue so the writer finishes what is queued and exits, closing SQLite.
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

fn writer_loop(mut db: PersistDb, mut rx: mpsc::UnboundedReceiver<WriteReq>, shared: Arc<Shared>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        #[cfg(test)]
        let injected = shared.fail_commits.load(Ordering::SeqCst);
        #[cfg(not(test))]
        let injected = false;
        let result = if injected {
            Err("injected commit failure".to_owned())
        } else {
            db.write_batch(batch.iter().map(|r| (r.name.as_str(), r.value.as_str())))
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(()) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared
                    .persist_writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                {
                    let mut st = shared.lock();
                    for r in &batch {
                        st.apply(&r.name, &r.value);
                    }
                }
                for r in batch.drain(..) {
                    let _ = r.ack.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(tag = "param", "persist commit failed: {e}");
                for r in batch.drain(..) {
                    let _ = r.ack.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use TokenType::*;

    fn open() -> (tempfile::TempDir, Arc<ParamService>) {
        let dir = tempfile::tempdir().unwrap();
        let svc = ParamService::open(dir.path()).unwrap();
        (dir, svc)
    }

    #[tokio::test]
    async fn persist_survives_reopen_and_the_rest_does_not() {
        let (dir, svc) = open();
        svc.set(Shell, "persist.hdc.port", "8710").await.unwrap();
        svc.set(Shell, "test.plain", "1").await.unwrap();
        svc.set_as_system("const.product.name", "oxh")
            .await
            .unwrap();
        assert_eq!(svc.get(Invalid, "persist.hdc.port").unwrap(), "8710");
        assert_eq!(svc.get(Hap, "const.product.name").unwrap(), "oxh");
        let s = svc.stats();
        assert_eq!((s.total, s.persist, s.constant), (3, 1, 1));
        drop(svc);

        let svc = ParamService::open(dir.path()).unwrap();
        assert_eq!(svc.get(Shell, "persist.hdc.port").unwrap(), "8710");
        let e = svc.get(Shell, "test.plain").unwrap_err();
        assert_eq!(e.code(), code::NOT_FOUND);
        assert_eq!(e.to_string(), "Parameter test.plain not found");
        assert!(svc.value("const.product.name").is_none());
        // A const param can be set again after a restart: it is not stored.
        svc.set_as_system("const.product.name", "oxh2")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_acknowledged_write_is_on_disk_without_a_clean_shutdown() {
        let (dir, svc) = open();
        svc.set(Shell, "persist.a", "1").await.unwrap();
        svc.set(Shell, "persist.a", "2").await.unwrap();
        // No drop: the writer thread and its connection stay as they are, as after kill -9
        // (the WAL is not checkpointed, nothing is flushed on the way out).
        std::mem::forget(svc);
        let svc = ParamService::open(dir.path()).unwrap();
        assert_eq!(svc.value("persist.a").as_deref(), Some("2"));
    }

    /// Child half of `acknowledged_writes_survive_kill_9`: sets persist params forever,
    /// printing each acknowledged one. Does nothing unless the parent set the variable.
    #[test]
    fn kill_9_child() {
        let Some(dir) = std::env::var_os("OXH_PARAM_KILL9_DIR") else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let svc = ParamService::open(Path::new(&dir)).unwrap();
            for i in 0.. {
                svc.set(Shell, &format!("persist.k9.n{i}"), &i.to_string())
                    .await
                    .unwrap();
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "acked {i}").unwrap();
                out.flush().unwrap();
            }
        });
    }

    #[test]
    fn acknowledged_writes_survive_kill_9() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "service::tests::kill_9_child", "--nocapture"])
            .env("OXH_PARAM_KILL9_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut last = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                last = Some(n.parse::<u64>().unwrap());
                if last == Some(200) {
                    break;
                }
            }
        }
        // SIGKILL while the child is in the middle of further writes.
        child.kill().unwrap();
        child.wait().unwrap();
        let last = last.expect("the child acknowledged nothing");
        let svc = ParamService::open(dir.path()).unwrap();
        for i in 0..=last {
            assert_eq!(
                svc.value(&format!("persist.k9.n{i}")),
                Some(i.to_string()),
                "acknowledged write {i} lost"
            );
        }
    }

    #[tokio::test]
    async fn const_is_write_once_even_with_the_same_value() {
        let (_dir, svc) = open();
        svc.set(Native, "const.ohos.apiversion", "12")
            .await
            .unwrap();
        for v in ["12", "13"] {
            let e = svc
                .set(Native, "const.ohos.apiversion", v)
                .await
                .unwrap_err();
            assert_eq!(e.code(), code::INVALID_ARGUMENT);
            assert_eq!(
                e,
                ParamError::ReadOnly {
                    name: "const.ohos.apiversion".into()
                }
            );
        }
        assert_eq!(svc.value("const.ohos.apiversion").as_deref(), Some("12"));
        // The shell may not set const.* at all, set or not.
        let e = svc.set(Shell, "const.new", "1").await.unwrap_err();
        assert_eq!(e.code(), code::PERMISSION_DENIED);
        assert!(svc.value("const.new").is_none());
        // const values may be long.
        svc.set(Native, "const.long", &"x".repeat(4095))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn rejected_sets_change_nothing() {
        let (dir, svc) = open();
        svc.set(Shell, "persist.x", "old").await.unwrap();
        let cases: Vec<(TokenType, &str, String, i32)> = vec![
            (Shell, "persist.x", "v".repeat(120), code::INVALID_VALUE),
            (Shell, "persist..x", "v".into(), code::INVALID_ARGUMENT),
            (Invalid, "persist.x", "new".into(), code::PERMISSION_DENIED),
            (Hap, "persist.x", "new".into(), code::PERMISSION_DENIED),
            (Shell, "ohos.boot.sn", "1".into(), code::PERMISSION_DENIED),
            (Invalid, "test.x", "1".into(), code::PERMISSION_DENIED),
        ];
        for (token, key, value, want) in cases {
            let e = svc.set(token, key, &value).await.unwrap_err();
            assert_eq!(e.code(), want, "{key} by {token:?}: {e}");
        }
        let e = svc
            .set(Shell, "persist.x", &"v".repeat(120))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Set parameter persist.x failed: value is 120 bytes, the limit is 95"
        );
        assert_eq!(svc.value("persist.x").as_deref(), Some("old"));
        assert_eq!(svc.stats().total, 1);
        drop(svc);
        let svc = ParamService::open(dir.path()).unwrap();
        assert_eq!(svc.value("persist.x").as_deref(), Some("old"));
    }

    #[tokio::test]
    async fn a_failed_commit_changes_nothing() {
        let (dir, svc) = open();
        svc.set(Shell, "persist.x", "old").await.unwrap();
        svc.fail_commits(true);
        let e = svc.set(Shell, "persist.x", "new").await.unwrap_err();
        assert_eq!(e.code(), code::SYSTEM_ERROR);
        assert!(e.to_string().contains("persist.x"), "{e}");
        assert_eq!(svc.value("persist.x").as_deref(), Some("old"));
        svc.fail_commits(false);
        drop(svc);
        let svc = ParamService::open(dir.path()).unwrap();
        assert_eq!(svc.value("persist.x").as_deref(), Some("old"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_thousand_concurrent_persist_sets() {
        let (dir, svc) = open();
        let t = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let svc = svc.clone();
            tasks.spawn(async move {
                svc.set(Shell, &format!("persist.load.k{i}"), &format!("v{i}"))
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let elapsed = t.elapsed();
        let s = svc.stats();
        assert_eq!(s.persist, 1000);
        assert_eq!(s.persist_writes, 1000);
        assert!(s.commits >= 1 && s.commits <= 1000);
        eprintln!(
            "1000 concurrent persist sets: {elapsed:?} in {} commits",
            s.commits
        );
        drop(svc);
        let svc = ParamService::open(dir.path()).unwrap();
        let all = svc.list(Shell, "persist.load.", true).unwrap();
        assert_eq!(all.len(), 1000);
        assert_eq!(svc.value("persist.load.k999").as_deref(), Some("v999"));
    }

    #[tokio::test]
    async fn list_follows_param_ls() {
        let (_dir, svc) = open();
        for (k, v) in [
            ("persist.hdc.port", "1"),
            ("persist.hdc.mode", "2"),
            ("persist.hdcx", "3"),
            ("test.a", "4"),
        ] {
            svc.set(Native, k, v).await.unwrap();
        }
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(svc.list(Shell, "persist.hdc", true).unwrap()),
            ["persist.hdc.mode", "persist.hdc.port", "persist.hdcx"]
        );
        assert_eq!(
            names(svc.list(Shell, "persist.hdc.", true).unwrap()),
            ["persist.hdc.mode", "persist.hdc.port"]
        );
        assert_eq!(svc.list(Shell, "", true).unwrap().len(), 4);
        assert_eq!(svc.list(Shell, "#", false).unwrap().len(), 4);
        assert_eq!(
            svc.list(Shell, "persist.hdc.port", false).unwrap(),
            vec![("persist.hdc.port".to_owned(), "1".to_owned())]
        );
        // A node with parameters below it, but no value of its own.
        assert!(svc.list(Shell, "persist.hdc", false).unwrap().is_empty());
        assert_eq!(
            svc.list(Shell, "nothing", false).unwrap_err().code(),
            code::NOT_FOUND
        );
        assert!(svc.list(Shell, "nothing", true).unwrap().is_empty());
        assert_eq!(
            svc.list(Shell, "a..b", true).unwrap_err().code(),
            code::INVALID_ARGUMENT
        );
    }

    #[tokio::test]
    async fn set_default_keeps_an_existing_value() {
        let (_dir, svc) = open();
        assert!(svc.set_default("persist.hdc.port", "8710").await.unwrap());
        svc.set(Shell, "persist.hdc.port", "9000").await.unwrap();
        assert!(!svc.set_default("persist.hdc.port", "8710").await.unwrap());
        assert_eq!(svc.value("persist.hdc.port").as_deref(), Some("9000"));
    }

    /// Lets spawned tasks run until they park (current-thread runtime: deterministic).
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn wait_returns_when_the_parameter_is_set() {
        let (_dir, svc) = open();
        let s = svc.clone();
        let waiter = tokio::spawn(async move {
            s.wait(Shell, "test.ready", None, Duration::from_secs(30))
                .await
        });
        settle().await;
        assert_eq!(svc.stats().waiters, 1);
        assert!(!waiter.is_finished());
        svc.set(Native, "test.ready", "yes").await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), "yes");
        let s = svc.stats();
        assert_eq!((s.waiters, s.waited_params), (0, 0));
        // Already set: returns at once.
        assert_eq!(
            svc.wait(Shell, "test.ready", Some("y*"), Duration::ZERO)
                .await
                .unwrap(),
            "yes"
        );
    }

    #[tokio::test]
    async fn wait_with_a_pattern_ignores_other_values() {
        let (_dir, svc) = open();
        let s = svc.clone();
        let waiter = tokio::spawn(async move {
            s.wait(
                Shell,
                "persist.state",
                Some("run*"),
                Duration::from_secs(30),
            )
            .await
        });
        settle().await;
        svc.set(Native, "persist.state", "starting").await.unwrap();
        settle().await;
        assert!(!waiter.is_finished());
        svc.set(Native, "persist.state", "running").await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), "running");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_times_out_with_a_clear_message() {
        let (_dir, svc) = open();
        let t = tokio::time::Instant::now();
        let e = svc
            .wait(Shell, "persist.x", None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(t.elapsed(), Duration::from_secs(5));
        assert_eq!(e.code(), code::WAIT_TIMEOUT);
        assert_eq!(e.to_string(), "Wait parameter persist.x timeout (5s)");
        let s = svc.stats();
        assert_eq!((s.waiters, s.waited_params), (0, 0));
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_nothing_behind() {
        let (_dir, svc) = open();
        let s = svc.clone();
        let waiter = tokio::spawn(async move {
            s.wait(Shell, "test.never", None, Duration::from_secs(3600))
                .await
        });
        settle().await;
        assert_eq!(svc.stats().waiters, 1);
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(svc.stats().waited_params, 0);
        assert_eq!(
            svc.wait(Shell, "bad..name", None, Duration::ZERO)
                .await
                .unwrap_err()
                .code(),
            code::INVALID_ARGUMENT
        );
    }
}
