//! Cross-device copy in the file daemon (SA 5201's PrepareSession, RequestSendFile and
//! CancelCopyTask; the contract is `oxh_dfs::api`, the limits and wire `oxh_dfs::copy`).
//!
//! The destination's daemon binds a soft-bus socket to the source's daemon on
//! [`COPY_SESSION`], names the files ([`Wire::Open`]) and asks for each in turn
//! ([`Wire::Send`]); the source's daemon opens it beneath its account tree (with the label
//! checks of a peer's open) and sends it as the bus's checksummed file frames. The
//! destination writes it into the caller's descriptor (O_DIRECT where the file system takes
//! it, as the bus's bulk receiver does), checks the checksum and syncs; the caller renames it.
//! A cancelled copy closes the socket, so the source stops at once.

use oxh_dfs::api::{CopyProgress, CopySession, FileCopied, PrepareSessionArgs, RecvFileArgs};
use oxh_dfs::copy::{Admission, CopyError, MAX_FILES_PER_COPY, Progress, WIRE_VERSION, Wire};
use oxh_dfs::errcode::{self, FileErr};
use oxh_dfs::serve::Server;
use oxh_ipc::{ConnHandle, RemoteError};
use oxh_samgr::CallContext;
use oxh_softbus::Softbus;
use oxh_softbus::proto::{FileHasher, FileOp, FilePiece, MAX_FILE_CHUNK};
use oxh_softbus::transport::session::{DataType, Owner, SocketEvent, event_channel};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The soft-bus session copies travel on (apart from the device views' link, so that a
/// gigabyte in flight does not hold up a peer's `ls`).
pub const COPY_SESSION: &str = "ohos.storage.distributedfile.copy";
/// The owner of the copy sockets: like the daemon's own, out of the range of IPC ids.
pub const COPY_OWNER: Owner = u64::MAX - 5202;
/// How long the source's daemon has to answer [`Wire::Open`] or start a file.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// How long binding to the source's daemon may take before it counts as unreachable.
const BIND_WITHIN: Duration = Duration::from_secs(10);
/// Messages a source-side socket queues before the peer counts as misbehaving.
const SERVED_QUEUE: usize = 8;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The caller sees `error <code>: <OpenHarmony's message>: <what happened>`.
fn remote(e: CopyError) -> RemoteError {
    RemoteError::new(e.err.code, format!("{}: {}", e.err.message, e.detail))
}

fn fail(err: FileErr, detail: impl Into<String>) -> RemoteError {
    remote(CopyError::new(err, detail))
}

/// One copy session on the destination's side.
struct Task {
    id: u64,
    /// The IPC connection that prepared it: only it may use or cancel it.
    conn: ConnHandle,
    sub: u64,
    socket: u64,
    sizes: Vec<u64>,
    received: Mutex<Vec<bool>>,
    events: tokio::sync::Mutex<mpsc::Receiver<SocketEvent>>,
    progress: Mutex<Progress>,
    /// True once cancelled (or ended).
    cancel: watch::Sender<bool>,
}

/// An app token's bundle name (OpenHarmony's HapTokenInfo bundleName), `None` when the
/// token is not an installed app's.
pub type BundleOfToken = Box<dyn Fn(u32) -> Option<String> + Send + Sync>;

/// The copy service of one file daemon (both sides).
pub struct FileCopy {
    softbus: Arc<Softbus>,
    bundle_of: BundleOfToken,
    tree: PathBuf,
    level: u8,
    admission: Mutex<Admission>,
    tasks: Mutex<HashMap<u64, Arc<Task>>>,
    /// The source side: each peer socket's queue of messages.
    served: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
}

impl FileCopy {
    /// Starts serving copies of `tree` (this device's account tree, at device level `level`)
    /// to peers, and taking copies from them; an app caller's bundle comes from `bundle_of`.
    pub fn start(
        softbus: Arc<Softbus>,
        tree: PathBuf,
        level: u8,
        bundle_of: BundleOfToken,
    ) -> anyhow::Result<Arc<Self>> {
        let me = Arc::new(Self {
            softbus,
            bundle_of,
            tree,
            level,
            admission: Mutex::new(Admission::default()),
            tasks: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
        });
        let (tx, mut rx) = event_channel();
        me.softbus
            .sessions()
            .listen(COPY_SESSION, COPY_OWNER, tx)
            .map_err(|e| anyhow::anyhow!("cannot listen on {COPY_SESSION}: {e}"))?;
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let Some(me) = weak.upgrade() else { return };
                me.on_served_event(ev);
            }
        });
        Ok(me)
    }

    /// Runs one of the copy methods.
    pub async fn call(
        &self,
        ctx: CallContext,
        code: u32,
        data: &[u8],
    ) -> Result<Vec<u8>, RemoteError> {
        match code {
            oxh_dfs::api::PREPARE_SESSION => {
                let a: PrepareSessionArgs = oxh_ipc::decode(data)?;
                self.check_app_paths(ctx.caller(), &a.paths)?;
                Ok(oxh_ipc::encode(&self.prepare(ctx.conn, a).await?))
            }
            oxh_dfs::api::RECV_FILE => {
                let a: RecvFileArgs = oxh_ipc::decode(data)?;
                let fd = ctx.conn.take_fd().ok_or_else(|| {
                    fail(
                        errcode::E_BADF,
                        "RequestSendFile needs the destination's descriptor",
                    )
                })?;
                Ok(oxh_ipc::encode(&self.recv_file(&ctx.conn, a, fd).await?))
            }
            oxh_dfs::api::CANCEL_COPY_TASK => {
                let task: u64 = oxh_ipc::decode(data)?;
                self.cancel(&ctx.conn, task)?;
                Ok(oxh_ipc::encode(&()))
            }
            _ => Err(RemoteError::new(
                oxh_ipc::code::INVALID_PARAM,
                format!("no method {code} in the copy service"),
            )),
        }
    }

    /// The paths name any file of the user's account tree on the peer: an app (its bundle
    /// from its token, never from the request) copies only its own `data/<bundleName>/`.
    fn check_app_paths(
        &self,
        caller: &oxh_ipc::Caller,
        paths: &[String],
    ) -> Result<(), RemoteError> {
        if caller.token_type != oxh_ipc::TokenType::Hap {
            return Ok(());
        }
        let bundle = (self.bundle_of)(caller.token_id).ok_or_else(|| {
            fail(
                errcode::E_ACCES,
                format!("token {:#x} is no installed app's", caller.token_id),
            )
        })?;
        match paths
            .iter()
            .find(|p| !oxh_dfs::copy::app_may_copy(&bundle, p))
        {
            Some(p) => Err(fail(
                errcode::E_ACCES,
                format!("{p}: {bundle} copies only its own distributed files (data/{bundle}/)"),
            )),
            None => Ok(()),
        }
    }

    /// Running copies, for the dump.
    pub fn running(&self) -> usize {
        lock(&self.admission).running()
    }

    /// A client went away: its copies end (their sockets close, so the peers stop sending).
    pub fn client_died(&self, conn: &ConnHandle) {
        let dead: Vec<u64> = lock(&self.tasks)
            .iter()
            .filter(|(_, t)| t.conn.id() == conn.id())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.end(id);
        }
    }

    /// PrepareSession: admits the copy, reaches the source's daemon and learns the sizes.
    async fn prepare(
        &self,
        conn: ConnHandle,
        a: PrepareSessionArgs,
    ) -> Result<CopySession, RemoteError> {
        for p in &a.paths {
            oxh_dfs::beneath::check(p).map_err(|e| fail(errcode::E_INVAL, e.to_string()))?;
        }
        let task = lock(&self.admission).admit(a.paths.len()).map_err(remote)?;
        match self.open_session(&a).await {
            Ok((socket, events, sizes)) => {
                let total = sizes.iter().sum();
                let (cancel, _) = watch::channel(false);
                let t = Arc::new(Task {
                    id: task,
                    conn,
                    sub: a.sub,
                    socket,
                    received: Mutex::new(vec![false; sizes.len()]),
                    sizes: sizes.clone(),
                    events: tokio::sync::Mutex::new(events),
                    progress: Mutex::new(Progress::new(total)),
                    cancel,
                });
                lock(&self.tasks).insert(task, t);
                Ok(CopySession { task, sizes })
            }
            Err((e, socket)) => {
                lock(&self.admission).finish(task);
                if let Some(s) = socket {
                    let _ = self.softbus.sessions().shutdown(s, COPY_OWNER).await;
                }
                Err(remote(e))
            }
        }
    }

    /// Binds to the source's daemon and asks it to open the files.
    async fn open_session(
        &self,
        a: &PrepareSessionArgs,
    ) -> Result<(u64, mpsc::Receiver<SocketEvent>, Vec<u64>), (CopyError, Option<u64>)> {
        let sessions = self.softbus.sessions();
        let (tx, mut events) = event_channel();
        let unreachable = |why: String| {
            CopyError::new(
                errcode::E_NETUNREACH,
                format!("device {}: {why}", a.network_id),
            )
        };
        let bound = tokio::time::timeout(
            BIND_WITHIN,
            sessions.bind(
                &a.network_id,
                COPY_SESSION,
                COPY_SESSION,
                DataType::File,
                COPY_OWNER,
                tx,
            ),
        )
        .await;
        let socket = match bound {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err((unreachable(e.to_string()), None)),
            Err(_) => return Err((unreachable("no answer".into()), None)),
        };
        let open = Wire::Open {
            version: WIRE_VERSION,
            device_level: self.level,
            paths: a.paths.clone(),
        };
        if let Err(e) = sessions
            .send(socket, COPY_OWNER, DataType::Bytes, open.encode())
            .await
        {
            return Err((unreachable(e.to_string()), Some(socket)));
        }
        let answer = tokio::time::timeout(ANSWER_WITHIN, async {
            while let Some(ev) = events.recv().await {
                match ev {
                    SocketEvent::Bytes { data, .. } => return Some(Wire::decode(&data)),
                    SocketEvent::Shutdown { .. } => return None,
                    _ => {}
                }
            }
            None
        })
        .await;
        let opened = match answer {
            Ok(Some(Ok(Wire::Opened(v)))) if v.len() == a.paths.len() => v,
            Ok(Some(Err(e))) => return Err((e, Some(socket))),
            Ok(Some(Ok(other))) => {
                let e = CopyError::new(errcode::E_IO, format!("unexpected answer {other:?}"));
                return Err((e, Some(socket)));
            }
            Ok(None) => return Err((unreachable("it closed the session".into()), Some(socket))),
            Err(_) => return Err((unreachable("no answer in time".into()), Some(socket))),
        };
        let mut sizes = Vec::with_capacity(opened.len());
        for (p, r) in a.paths.iter().zip(opened) {
            match r {
                Ok(n) => sizes.push(n),
                Err(errno) => {
                    let e =
                        CopyError::new(errcode::from_errno(errno), format!("{p} on the source"));
                    return Err((e, Some(socket)));
                }
            }
        }
        Ok((socket, events, sizes))
    }

    fn task(&self, conn: &ConnHandle, task: u64) -> Result<Arc<Task>, RemoteError> {
        lock(&self.tasks)
            .get(&task)
            .filter(|t| t.conn.id() == conn.id())
            .cloned()
            .ok_or_else(|| fail(errcode::E_NOTASK, format!("no copy task {task}")))
    }

    /// CancelCopyTask: the file in flight fails, the socket closes.
    fn cancel(&self, conn: &ConnHandle, task: u64) -> Result<(), RemoteError> {
        self.task(conn, task)?;
        self.end(task);
        Ok(())
    }

    /// Ends a task (done, failed or cancelled): its slot frees, its socket closes.
    fn end(&self, task: u64) {
        let Some(t) = lock(&self.tasks).remove(&task) else {
            return;
        };
        lock(&self.admission).finish(task);
        t.cancel.send_replace(true);
        let sessions = self.softbus.sessions().clone();
        tokio::spawn(async move {
            let _ = sessions.shutdown(t.socket, COPY_OWNER).await;
        });
    }

    /// RequestSendFile: asks the source for file `index` and writes it into `fd`.
    async fn recv_file(
        &self,
        conn: &ConnHandle,
        a: RecvFileArgs,
        fd: std::os::fd::OwnedFd,
    ) -> Result<FileCopied, RemoteError> {
        let t = self.task(conn, a.task)?;
        let i = a.index as usize;
        let size = *t
            .sizes
            .get(i)
            .ok_or_else(|| fail(errcode::E_INVAL, format!("no file {i} in the copy")))?;
        {
            let mut r = lock(&t.received);
            if r[i] {
                return Err(fail(
                    errcode::E_INVAL,
                    format!("file {i} was copied already"),
                ));
            }
            r[i] = true;
        }
        let file = std::fs::File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(fail(
                errcode::E_INVAL,
                "the destination is not a regular file",
            ));
        }
        let mut cancel = t.cancel.subscribe();
        let result = tokio::select! {
            r = self.receive(&t, a.index, size, file) => r,
            _ = cancel.wait_for(|c| *c) => Err(fail(errcode::E_INTR, "the copy was cancelled")),
        };
        let done = lock(&t.received).iter().all(|r| *r);
        if result.is_err() || done {
            self.end(a.task);
        }
        result
    }

    async fn receive(
        &self,
        t: &Task,
        index: u32,
        size: u64,
        file: std::fs::File,
    ) -> Result<FileCopied, RemoteError> {
        let sessions = self.softbus.sessions();
        let gone = |why: String| fail(errcode::E_NETUNREACH, format!("the source: {why}"));
        sessions
            .send(
                t.socket,
                COPY_OWNER,
                DataType::Bytes,
                Wire::Send { index }.encode(),
            )
            .await
            .map_err(|e| gone(e.to_string()))?;
        let mut events = t.events.lock().await;
        let begun = tokio::time::timeout(ANSWER_WITHIN, async {
            while let Some(ev) = events.recv().await {
                match ev {
                    SocketEvent::FileBegin { size: n, .. } => return Ok(n),
                    SocketEvent::Bytes { data, .. } => match Wire::decode(&data) {
                        Ok(Wire::Failed { errno, .. }) => {
                            return Err(fail(errcode::from_errno(errno), "reading on the source"));
                        }
                        _ => return Err(fail(errcode::E_IO, "unexpected message from the source")),
                    },
                    SocketEvent::Shutdown { reason, .. } => return Err(gone(reason)),
                    _ => {}
                }
            }
            Err(gone("the session ended".into()))
        })
        .await
        .map_err(|_| gone("the file did not start in time".into()))??;
        drop(events);
        if begun != size {
            return Err(fail(errcode::E_IO, "the file changed size on the source"));
        }
        // The writing thread writes (direct writes block for the device); the hash is taken
        // here as each piece arrives.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = oxh_kal::direct::SeqWriter::new(file, 0);
            while let Some(d) = rx.blocking_recv() {
                w.write(&d)?;
            }
            w.finish()?.sync_all()
        });
        let mut hash = FileHasher::new();
        let mut got = 0u64;
        let end = loop {
            match sessions.recv_file(t.socket, COPY_OWNER).await {
                Ok(FilePiece::Data(d)) => {
                    got += d.len() as u64;
                    hash.update(&d);
                    let report = lock(&t.progress).advance(d.len() as u64);
                    if tx.send(d).await.is_err() {
                        break Err(fail(errcode::E_IO, "the writer stopped"));
                    }
                    if let Some((p, total)) = report {
                        self.report(t, p, total);
                    }
                }
                Ok(FilePiece::End { checksum, seq }) => break Ok((checksum, seq)),
                Ok(FilePiece::Broken { reason }) => break Err(gone(reason)),
                Err(e) => break Err(gone(e.to_string())),
            }
        };
        drop(tx);
        let written = writer.await;
        let (checksum, seq) = end?;
        let verdict = match written {
            Ok(Ok(())) if got == size && hash.finish() == checksum => None,
            Ok(Ok(())) => Some(fail(errcode::E_IO, "the file arrived damaged (checksum)")),
            Ok(Err(e)) => Some(fail(FileErr::of_io(&e), format!("writing the file: {e}"))),
            Err(_) => Some(fail(errcode::E_IO, "the writer failed")),
        };
        let _ = sessions
            .file_result(
                t.socket,
                COPY_OWNER,
                seq,
                verdict.as_ref().map(|e| e.message.clone()),
            )
            .await;
        if let Some(e) = verdict {
            return Err(e);
        }
        let last = lock(&t.received).iter().all(|r| *r);
        let report = if last {
            lock(&t.progress).complete()
        } else {
            None
        };
        if let Some((p, total)) = report {
            self.report(t, p, total);
        }
        Ok(FileCopied { size, checksum })
    }

    fn report(&self, t: &Task, processed: u64, total: u64) {
        if t.sub == 0 {
            return;
        }
        let ev = CopyProgress {
            task: t.id,
            processed_size: processed,
            total_size: total,
        };
        t.conn.push_event(t.sub, &oxh_ipc::encode(&ev));
    }

    /// The source side: a peer's copy socket.
    fn on_served_event(self: &Arc<Self>, ev: SocketEvent) {
        match ev {
            SocketEvent::Bind { socket, .. } => {
                let (tx, rx) = mpsc::channel(SERVED_QUEUE);
                lock(&self.served).insert(socket, tx);
                let me = self.clone();
                tokio::spawn(async move {
                    me.serve(socket, rx).await;
                    lock(&me.served).remove(&socket);
                    let _ = me.softbus.sessions().shutdown(socket, COPY_OWNER).await;
                });
            }
            SocketEvent::Bytes { socket, data } => {
                let tx = lock(&self.served).get(&socket).cloned();
                if let Some(tx) = tx
                    && tx.try_send(data).is_err()
                {
                    tracing::warn!(tag = "hmdfs", "a copy peer sent more than it may");
                    lock(&self.served).remove(&socket);
                }
            }
            SocketEvent::Shutdown { socket, .. } => {
                lock(&self.served).remove(&socket);
            }
            _ => {}
        }
    }

    /// Answers one peer's copy: opens the files it names, sends each it asks for.
    async fn serve(&self, socket: u64, mut rx: mpsc::Receiver<Vec<u8>>) {
        let sessions = self.softbus.sessions();
        let mut files: Vec<Option<std::fs::File>> = Vec::new();
        while let Some(b) = rx.recv().await {
            let msg = match Wire::decode(&b) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(tag = "hmdfs", "a copy peer broke the protocol: {e}");
                    return;
                }
            };
            match msg {
                Wire::Open {
                    version,
                    device_level,
                    paths,
                } if version == WIRE_VERSION
                    && files.is_empty()
                    && paths.len() <= MAX_FILES_PER_COPY =>
                {
                    let tree = self.tree.clone();
                    let opened = tokio::task::spawn_blocking(move || {
                        let server = Server::new(&tree).map_err(|e| e.errno());
                        paths
                            .iter()
                            .map(|p| {
                                let s = server.as_ref().map_err(|e| *e)?;
                                s.open_to_send(p, device_level)
                            })
                            .collect::<Vec<_>>()
                    })
                    .await
                    .unwrap_or_default();
                    let answer: Vec<Result<u64, i32>> = opened
                        .iter()
                        .map(|r| match r {
                            Ok(f) => f
                                .metadata()
                                .map(|m| m.len())
                                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)),
                            Err(e) => Err(*e),
                        })
                        .collect();
                    files = opened.into_iter().map(Result::ok).collect();
                    if sessions
                        .send(
                            socket,
                            COPY_OWNER,
                            DataType::Bytes,
                            Wire::Opened(answer).encode(),
                        )
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Wire::Send { index } => {
                    let Some(f) = files.get_mut(index as usize).and_then(Option::take) else {
                        tracing::warn!(tag = "hmdfs", "a copy peer asked for file {index} twice");
                        return;
                    };
                    if let Err(errno) = self.send_one(socket, index, f).await {
                        let m = Wire::Failed { index, errno };
                        let _ = sessions
                            .send(socket, COPY_OWNER, DataType::Bytes, m.encode())
                            .await;
                        return;
                    }
                }
                other => {
                    tracing::warn!(tag = "hmdfs", "a copy peer sent {other:?} out of turn");
                    return;
                }
            }
        }
    }

    /// Sends one opened file on the socket: read and hashed on a blocking thread while the
    /// previous chunk goes out. Err: an errno for the peer (the socket's own failures end
    /// the session instead).
    async fn send_one(&self, socket: u64, index: u32, file: std::fs::File) -> Result<(), i32> {
        let sessions = self.softbus.sessions();
        let size = file
            .metadata()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?
            .len();
        let name = format!("copy-{index}");
        sessions
            .send_file(socket, COPY_OWNER, FileOp::Begin { name, size })
            .await
            .map_err(|_| libc::ENETUNREACH)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut hash = FileHasher::new();
            let mut at = 0;
            while at < size {
                let n = (size - at).min(MAX_FILE_CHUNK as u64) as usize;
                let buf = oxh_kal::read_exact_at(&file, n, at)?;
                hash.update(&buf);
                at += n as u64;
                if tx.blocking_send(buf).is_err() {
                    break;
                }
            }
            Ok::<_, std::io::Error>((hash, at))
        });
        let mut sent = 0u64;
        let mut broken = false;
        while let Some(data) = rx.recv().await {
            let n = data.len() as u64;
            let op = FileOp::Data { offset: sent, data };
            if sessions.send_file(socket, COPY_OWNER, op).await.is_err() {
                broken = true;
                break;
            }
            sent += n;
        }
        drop(rx);
        let read = reader.await;
        let hash = match read {
            Ok(Ok((hash, at))) if !broken && at == sent && sent == size => hash,
            _ => {
                let reason = "the source could not read the file".to_string();
                let _ = sessions
                    .send_file(socket, COPY_OWNER, FileOp::Abort { reason })
                    .await;
                return Err(if broken { libc::ENETUNREACH } else { libc::EIO });
            }
        };
        let checksum = hash.finish();
        sessions
            .send_file(socket, COPY_OWNER, FileOp::End { checksum })
            .await
            .map_err(|_| libc::EIO)
    }
}
