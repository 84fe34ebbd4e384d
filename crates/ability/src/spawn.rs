//! App spawn: a small single-threaded process (OpenHarmony's appspawn) that the daemon forks
//! before it starts its runtime, and asks over a socket to start each app process in its
//! sandbox, to kill one, and that reports each one's exit.
//!
//! Being the parent of every app process, it reaps them and watches them through pidfds, so
//! a kill never hits a recycled pid. Apps die with it (`PR_SET_PDEATHSIG`), and it dies with
//! the daemon, so no app outlives an `oxhd` restart.
//!
//! Frames both ways: `len:u32 LE | postcard`, at most [`MAX_FRAME`] bytes.

use oxh_kal::sandbox::{Bind, Rlimit, Sandbox, Spec};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Stdio};

/// Largest frame on the spawner's socket.
pub const MAX_FRAME: usize = 64 * 1024;
/// App processes one spawner keeps at once (OpenHarmony's appspawn has no fixed bound; 512
/// is far above what a device runs and bounds what a runaway caller can make it hold).
pub const MAX_APPS: usize = 512;

/// One bind mount of a [`SpawnRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindSpec {
    /// Host path.
    pub src: PathBuf,
    /// Path inside the sandbox.
    pub dst: PathBuf,
    /// Read-only.
    pub read_only: bool,
}

/// Start one app process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// The ability manager's process id for it.
    pub proc: u64,
    /// Its argv\[0\]: the bundle name, as `ps` shows apps.
    pub name: String,
    /// uid (userId * 200000 + bundleId).
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The sandbox's mounts, in order.
    pub binds: Vec<BindSpec>,
    /// The program, as a path inside the sandbox.
    pub program: PathBuf,
    /// Its arguments after argv\[0\].
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory inside the sandbox.
    pub cwd: PathBuf,
}

/// From the daemon to the spawner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToSpawner {
    /// Start an app process.
    Spawn(SpawnRequest),
    /// SIGKILL an app process.
    Kill {
        /// Which.
        proc: u64,
    },
}

/// From the spawner to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromSpawner {
    /// It runs, in its sandbox.
    Spawned {
        /// Which.
        proc: u64,
        /// Its pid.
        pid: u32,
    },
    /// It could not be started; nothing ran.
    Failed {
        /// Which.
        proc: u64,
        /// Why.
        error: String,
    },
    /// It ended.
    Exited {
        /// Which.
        proc: u64,
        /// Its pid.
        pid: u32,
        /// The signal that ended it.
        signal: Option<i32>,
        /// Its exit status otherwise.
        status: Option<i32>,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed mid-frame.
    #[error("spawner socket: {0}")]
    Io(#[from] std::io::Error),
    /// Over [`MAX_FRAME`].
    #[error("spawner frame of {0} bytes exceeds {MAX_FRAME}")]
    TooLarge(usize),
    /// Not a message.
    #[error("spawner frame: {0}")]
    Decode(String),
}

/// Writes one frame.
pub fn write_msg<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let body = postcard::to_allocvec(msg).map_err(|e| FrameError::Decode(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_msg<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(|e| FrameError::Decode(e.to_string()))
}

struct App {
    child: Child,
    pidfd: OwnedFd,
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn spawn(req: &SpawnRequest, staging: &std::path::Path) -> Result<App, String> {
    let spec = Spec {
        staging: staging.to_path_buf(),
        binds: req
            .binds
            .iter()
            .map(|b| Bind {
                src: b.src.clone(),
                dst: b.dst.clone(),
                read_only: b.read_only,
            })
            .collect(),
        uid: req.uid,
        gid: req.gid,
        groups: req.groups.clone(),
        cwd: req.cwd.clone(),
        rlimits: vec![(Rlimit::Core, 0), (Rlimit::NoFile, 32_768)],
    };
    let sandbox = Sandbox::prepare(&spec).map_err(|e| e.to_string())?;
    let (mut cmd, failure) = sandbox.command(&req.program);
    cmd.arg0(&req.name)
        .args(&req.args)
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        // As appspawn does: an app writes nothing into the daemon's output (the ready line, a
        // pipe nobody may drain); it logs through hilog.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().map_err(|e| {
        format!(
            "{} did not start: {}",
            req.program.display(),
            failure.explain(e)
        )
    })?;
    let pidfd = pidfd_open(child.id()).map_err(|e| e.to_string())?;
    Ok(App { child, pidfd })
}

/// Serves the daemon on `sock` until it closes it (then every app is killed), starting apps
/// with `staging` as the mount point of their roots (an empty dir: each app mounts its root
/// there inside its own namespace, so one dir serves all).
pub fn serve(mut sock: UnixStream, staging: PathBuf) -> Result<(), FrameError> {
    let mut apps: HashMap<u64, App> = HashMap::new();
    let result = loop {
        let mut fds = vec![libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let order: Vec<u64> = apps.keys().copied().collect();
        for p in &order {
            fds.push(libc::pollfd {
                fd: apps[p].pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break Err(e.into());
        }
        let mut exits = Vec::new();
        for (i, p) in order.iter().enumerate() {
            if fds[i + 1].revents == 0 {
                continue;
            }
            if let Some(mut app) = apps.remove(p) {
                let pid = app.child.id();
                let status = app.child.wait().ok();
                exits.push(FromSpawner::Exited {
                    proc: *p,
                    pid,
                    signal: status.and_then(|s| s.signal()),
                    status: status.and_then(|s| s.code()),
                });
            }
        }
        if let Some(e) = exits.iter().find_map(|m| write_msg(&mut sock, m).err()) {
            break Err(e);
        }
        if fds[0].revents == 0 {
            continue;
        }
        let msg = match read_msg::<ToSpawner>(&mut sock) {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let reply = match msg {
            ToSpawner::Spawn(req) if apps.len() >= MAX_APPS => FromSpawner::Failed {
                proc: req.proc,
                error: format!("too busy: {MAX_APPS} app processes are running"),
            },
            ToSpawner::Spawn(req) if apps.contains_key(&req.proc) => FromSpawner::Failed {
                proc: req.proc,
                error: format!("process {} is already running", req.proc),
            },
            ToSpawner::Spawn(req) => match spawn(&req, &staging) {
                Ok(app) => {
                    let pid = app.child.id();
                    apps.insert(req.proc, app);
                    FromSpawner::Spawned {
                        proc: req.proc,
                        pid,
                    }
                }
                Err(error) => FromSpawner::Failed {
                    proc: req.proc,
                    error,
                },
            },
            ToSpawner::Kill { proc } => {
                if let Some(app) = apps.get(&proc) {
                    // SAFETY: the pidfd is ours and names a child not yet reaped.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            app.pidfd.as_raw_fd(),
                            libc::SIGKILL,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        );
                    }
                }
                continue;
            }
        };
        if let Err(e) = write_msg(&mut sock, &reply) {
            break Err(e);
        }
    };
    for (_, mut app) in apps {
        let _ = app.child.kill();
        let _ = app.child.wait();
    }
    result
}

/// Forks the spawner now, while this process has one thread (call it before any runtime
/// starts), and returns the daemon's end of its socket and its pid. The spawner dies with
/// this thread (`PR_SET_PDEATHSIG`); the socket's end here is close-on-exec, so a daemon
/// that re-executes itself leaves the old spawner at end of stream (it kills its apps and
/// exits) and forks a new one.
pub fn fork_spawner(staging: PathBuf) -> std::io::Result<(UnixStream, u32)> {
    let (ours, theirs) = UnixStream::pair()?;
    let parent = std::process::id();
    // SAFETY: fork(2) in a single-threaded process; the child runs only the spawner.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            drop(ours);
            // SAFETY: prctl(2) with plain integers; getppid(2) has no preconditions.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                libc::prctl(libc::PR_SET_NAME, c"appspawn".as_ptr(), 0, 0, 0);
                if libc::getppid() as u32 != parent {
                    libc::_exit(0);
                }
            }
            let code = match serve(theirs, staging) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("appspawn: {e}");
                    1
                }
            };
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        pid => {
            drop(theirs);
            Ok((ours, pid as u32))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const UID: u32 = 20_010_077;

    fn request(proc: u64, script: &str) -> SpawnRequest {
        let mut binds: Vec<BindSpec> = ["/bin", "/lib", "/lib64", "/usr"]
            .iter()
            .filter(|p| std::path::Path::new(p).exists())
            .map(|p| BindSpec {
                src: p.into(),
                dst: p.into(),
                read_only: true,
            })
            .collect();
        binds.sort_by(|a, b| a.dst.cmp(&b.dst));
        SpawnRequest {
            proc,
            name: "com.example.probe".into(),
            uid: UID,
            gid: UID,
            groups: vec![UID],
            binds,
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/bin:/usr/bin".into())],
            cwd: "/".into(),
        }
    }

    struct Daemon {
        sock: UnixStream,
        spawner: Option<std::thread::JoinHandle<Result<(), FrameError>>>,
        _staging: tempfile::TempDir,
    }

    impl Daemon {
        fn start() -> Self {
            let staging = tempfile::tempdir().unwrap();
            let (ours, theirs) = UnixStream::pair().unwrap();
            let dir = staging.path().to_path_buf();
            let spawner = std::thread::spawn(move || serve(theirs, dir));
            ours.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            Daemon {
                sock: ours,
                spawner: Some(spawner),
                _staging: staging,
            }
        }

        fn send(&mut self, m: &ToSpawner) {
            write_msg(&mut self.sock, m).unwrap();
        }

        fn next(&mut self) -> FromSpawner {
            read_msg(&mut self.sock)
                .unwrap()
                .expect("a message within 20 s")
        }
    }

    #[test]
    fn apps_start_exit_and_are_killed_through_the_spawner() {
        if !oxh_testkit::require_root("spawn", "to sandbox app processes") {
            return;
        }
        let mut d = Daemon::start();
        // One that exits by itself, with the status it chose.
        d.send(&ToSpawner::Spawn(request(1, "exit 3")));
        let m = d.next();
        let FromSpawner::Spawned { proc: 1, pid } = m else {
            panic!("not spawned: {m:?}")
        };
        assert_eq!(
            d.next(),
            FromSpawner::Exited {
                proc: 1,
                pid,
                signal: None,
                status: Some(3)
            }
        );
        // One that runs until killed; its argv[0] is the bundle name.
        d.send(&ToSpawner::Spawn(request(2, "exec sleep 600")));
        let FromSpawner::Spawned { proc: 2, pid } = d.next() else {
            panic!("not spawned: {:?}", d.next())
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l == format!("Uid:\t{UID}\t{UID}\t{UID}\t{UID}")),
            "{status}"
        );
        d.send(&ToSpawner::Kill { proc: 2 });
        assert_eq!(
            d.next(),
            FromSpawner::Exited {
                proc: 2,
                pid,
                signal: Some(libc::SIGKILL),
                status: None
            }
        );
        // A request it cannot honour fails and runs nothing.
        let mut bad = request(3, "exit 0");
        bad.binds.push(BindSpec {
            src: "/nonexistent/dir".into(),
            dst: "/data".into(),
            read_only: false,
        });
        d.send(&ToSpawner::Spawn(bad));
        let FromSpawner::Failed { proc: 3, error } = d.next() else {
            panic!("not refused")
        };
        assert!(error.contains("/nonexistent/dir"), "{error}");
    }

    #[test]
    fn closing_the_socket_kills_every_app() {
        if !oxh_testkit::require_root("spawn", "to sandbox app processes") {
            return;
        }
        let mut d = Daemon::start();
        d.send(&ToSpawner::Spawn(request(1, "exec sleep 600")));
        let FromSpawner::Spawned { pid, .. } = d.next() else {
            panic!("not spawned: {:?}", d.next())
        };
        let pidfd = pidfd_open(pid).unwrap();
        let spawner = d.spawner.take().unwrap();
        drop(d);
        spawner.join().unwrap().unwrap();
        // The app is gone (reaped by the spawner): its pidfd is readable.
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 5_000) };
        assert_eq!(n, 1, "the app outlived its spawner");
    }

    #[test]
    fn frames_over_the_limit_are_refused() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&((MAX_FRAME as u32) + 1).to_le_bytes());
        let r = read_msg::<ToSpawner>(&mut buf.as_slice());
        assert!(matches!(r, Err(FrameError::TooLarge(_))));
        let r = read_msg::<ToSpawner>(&mut [2u8, 0, 0, 0, 0xff, 0xff].as_slice());
        assert!(matches!(r, Err(FrameError::Decode(_))));
        assert!(read_msg::<ToSpawner>(&mut [].as_slice()).unwrap().is_none());
    }
}
