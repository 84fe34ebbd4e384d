//! Files across devices (`@ohos.file.fs`'s `copy` with a `progressListener` and a
//! `TaskSignal`), over the distributed file daemon (SA 5201).
//!
//! [`Fs::copy`] copies a file named by a remote URI (`file://<bundle>/data/storage/el2/
//! distributedfiles/...?networkid=<id>`) to a local path. The peer's daemon sends it over the
//! soft bus; this side opens the destination (the daemon never opens a path its caller
//! names) under a temp name in the destination's directory, passes its descriptor, and
//! renames it once it arrived whole and checksummed. A failed or cancelled copy removes the
//! temp file: nothing partial is left. Errors carry OpenHarmony's file codes
//! ([`oxh_dfs::errcode`]: 13900044 when the peer is unreachable, 13900040 when cancelled).
//!
//! ```no_run
//! # async fn demo() -> Result<(), oxh_sdk::Error> {
//! let dev = oxh_sdk::Device::connect_default().await?;
//! let uri = "file://com.example/data/storage/el2/distributedfiles/a.bin?networkid=abc";
//! dev.fs()
//!     .copy(uri, "/tmp/a.bin".as_ref(), &Default::default(), |p| {
//!         println!("{}/{}", p.processed_size, p.total_size)
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

use crate::{Device, Error};
use oxh_dfs::api::{self, CopyProgress, CopySession, FileCopied, PrepareSessionArgs, RecvFileArgs};
use oxh_dfs::errcode::{self, FileErr};
use oxh_dfs::uri::FileUri;
use oxh_ipc::RemoteError;
use oxh_ipc::sa_id::DISTRIBUTED_FILE;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use oxh_dfs::api::CopyProgress as Progress;

/// OpenHarmony's `fs.TaskSignal`: cancels the copy it is passed to.
#[derive(Clone)]
pub struct TaskSignal(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for TaskSignal {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl TaskSignal {
    /// `cancel()`: the copy stops and leaves no partial file.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`TaskSignal::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }
}

/// A file error with OpenHarmony's code.
fn ferr(e: FileErr, detail: impl std::fmt::Display) -> Error {
    Error::Remote(RemoteError::new(e.code, format!("{}: {detail}", e.message)))
}

/// Proxy for the file daemon's copy methods.
pub struct Fs<'a> {
    pub(crate) dev: &'a Device,
}

/// A destination being written under a temp name: removed on drop unless kept.
struct Temp {
    tmp: Option<PathBuf>,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            let _ = std::fs::remove_file(t);
        }
    }
}

fn temp_name(dst: &Path) -> Result<PathBuf, Error> {
    let name = dst
        .file_name()
        .ok_or_else(|| ferr(errcode::E_INVAL, format!("{}: no file name", dst.display())))?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(dst.with_file_name(format!(
        ".{}.oxhcp-{}-{k}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

impl Fs<'_> {
    /// `fs.copy(srcUri, dstPath, { progressListener, copySignal })` of one remote file.
    /// Returns the bytes copied.
    pub async fn copy(
        &self,
        src: &str,
        dst: &Path,
        signal: &TaskSignal,
        progress: impl FnMut(Progress),
    ) -> Result<u64, Error> {
        let src = [src.to_string()];
        let dst = [dst.to_path_buf()];
        self.copy_files(&src, &dst, signal, progress).await
    }

    /// Copies several files of one remote device (each URI to the path beside it) as one
    /// copy: one progress over all of them, at most
    /// [`oxh_dfs::copy::MAX_FILES_PER_COPY`]. Files already complete stay when a later one
    /// fails; the one in flight leaves nothing.
    pub async fn copy_files(
        &self,
        srcs: &[String],
        dsts: &[PathBuf],
        signal: &TaskSignal,
        mut progress: impl FnMut(Progress),
    ) -> Result<u64, Error> {
        if srcs.len() != dsts.len() {
            return Err(ferr(errcode::E_INVAL, "as many destinations as sources"));
        }
        let mut network = None;
        let mut paths = Vec::with_capacity(srcs.len());
        for s in srcs {
            let u: FileUri = s.parse().map_err(|e| ferr(errcode::E_INVAL, e))?;
            let n = u
                .network_id()
                .ok_or_else(|| ferr(errcode::E_INVAL, format!("{s}: not a remote URI")))?;
            if network.get_or_insert_with(|| n.to_string()) != n {
                return Err(ferr(
                    errcode::E_INVAL,
                    "all files of one copy come from one device",
                ));
            }
            paths.push(u.account_path().map_err(|e| ferr(errcode::E_INVAL, e))?);
        }
        let network_id = network.ok_or_else(|| ferr(errcode::E_INVAL, "no files to copy"))?;
        if signal.is_cancelled() {
            return Err(ferr(errcode::E_INTR, "the copy was cancelled"));
        }
        let client = self.dev.client.clone();
        let mut sub = client.subscribe();
        let args = PrepareSessionArgs {
            network_id,
            paths,
            sub: sub.id(),
        };
        let s: CopySession = client
            .call(DISTRIBUTED_FILE, api::PREPARE_SESSION, &args)
            .await?;
        let mut cancelled = signal.0.subscribe();
        let mut total = 0;
        for (i, dst) in dsts.iter().enumerate() {
            let tmp = temp_name(dst)?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| {
                    ferr(
                        FileErr::of_io(&e),
                        format!("cannot create {}: {e}", tmp.display()),
                    )
                });
            let file = match file {
                Ok(f) => f,
                Err(e) => {
                    let _ = self.cancel_task(s.task).await;
                    return Err(e);
                }
            };
            let mut guard = Temp { tmp: Some(tmp) };
            let a = RecvFileArgs {
                task: s.task,
                index: i as u32,
            };
            use std::os::fd::AsFd;
            let recv = client.call_with_fd::<_, FileCopied>(
                DISTRIBUTED_FILE,
                api::RECV_FILE,
                &a,
                file.as_fd(),
            );
            tokio::pin!(recv);
            let mut asked = false;
            let got = loop {
                tokio::select! {
                    r = &mut recv => break r,
                    Some(ev) = sub.recv() => {
                        if let Ok(p) = oxh_ipc::decode::<CopyProgress>(&ev) {
                            progress(p);
                        }
                    }
                    c = async { cancelled.wait_for(|c| *c).await.is_ok() }, if !asked => {
                        asked = true;
                        // The file in flight then fails; its temp goes with the guard.
                        if c {
                            let _ = self.cancel_task(s.task).await;
                        }
                    }
                }
            };
            let got = got?;
            let tmp = guard.tmp.take().unwrap_or_default();
            if let Err(e) = std::fs::rename(&tmp, dst) {
                let _ = std::fs::remove_file(&tmp);
                let _ = self.cancel_task(s.task).await;
                return Err(ferr(
                    FileErr::of_io(&e),
                    format!("cannot rename to {}: {e}", dst.display()),
                ));
            }
            if let Some(dir) = dst.parent().and_then(|d| std::fs::File::open(d).ok()) {
                let _ = dir.sync_all();
            }
            total += got.size;
        }
        // Progress events pushed before the last reply are already queued: hand them on.
        while let Ok(Some(ev)) = tokio::time::timeout(std::time::Duration::ZERO, sub.recv()).await {
            if let Ok(p) = oxh_ipc::decode::<CopyProgress>(&ev) {
                progress(p);
            }
        }
        Ok(total)
    }

    /// CancelCopyTask of a session this connection prepared (13900043 when none runs).
    async fn cancel_task(&self, task: u64) -> Result<(), Error> {
        self.dev
            .client
            .call::<_, ()>(DISTRIBUTED_FILE, api::CANCEL_COPY_TASK, &task)
            .await
    }
}
