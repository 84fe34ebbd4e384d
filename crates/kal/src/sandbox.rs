//! App sandboxes, as OpenHarmony's appspawn makes them: a process in its own mount namespace
//! whose root is a fresh tmpfs holding only bind mounts of what the app may see, running as
//! the app's uid with no capabilities, `no_new_privs`, a seccomp filter and rlimits.
//!
//! [`Sandbox::prepare`] checks a [`Spec`] and turns it into C strings and a BPF program in the
//! parent, so the child between `fork` and `exec` only makes system calls (no allocation: the
//! parent may have threads). [`Sandbox::command`] returns a `std::process::Command` whose
//! `pre_exec` hook enters the sandbox; a step that fails makes `spawn` fail with that step's
//! error, and the program never runs outside the sandbox.
//!
//! The order of the steps (each needs the privileges the previous ones have not dropped):
//! 1. `unshare(CLONE_NEWNS)`, then the whole tree made private (nothing propagates back);
//! 2. a tmpfs on the staging dir, the bind mounts into it (read-only ones remounted
//!    `MS_RDONLY|MS_NOSUID|MS_NODEV`), `/proc` (hidepid=invisible) and a minimal `/dev`;
//! 3. `pivot_root` into it, the old root detached, the new root remounted read-only;
//! 4. rlimits; the capability bounding set and ambient set emptied;
//! 5. `setgroups`, `setresgid`, `setresuid` (all three ids: the kernel then clears the
//!    permitted and effective capabilities);
//! 6. `PR_SET_PDEATHSIG` (after the uid change, which clears it), `PR_SET_NO_NEW_PRIVS`,
//!    the seccomp filters last (they forbid some of the calls above; see [`app_filters`]).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// System calls an app may not make: they reach beyond its sandbox (another process's
/// memory, the mount table, the kernel's keyrings, modules, BPF) or are privileged anyway.
pub const DENIED_SYSCALLS: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("acct", libc::SYS_acct),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
];

/// Device nodes an app's `/dev` has (bind mounts of the host's).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// One bind mount into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// What to mount, on the host (a directory or a file).
    pub src: PathBuf,
    /// Where, inside the sandbox (absolute).
    pub dst: PathBuf,
    /// Mounted read-only (and nosuid, nodev).
    pub read_only: bool,
}

/// What a sandbox holds and who runs in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// An empty directory the sandbox's root is mounted on (only inside its namespace).
    pub staging: PathBuf,
    /// The bind mounts, in order (a mount may sit inside an earlier one).
    pub binds: Vec<Bind>,
    /// The uid the program runs as; never 0.
    pub uid: u32,
    /// Its gid; never 0.
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
    /// Its working directory inside the sandbox.
    pub cwd: PathBuf,
    /// rlimits to set (resource, soft = hard), each at most the current hard limit.
    pub rlimits: Vec<(Rlimit, u64)>,
}

/// The rlimits a spec may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    /// Open files.
    NoFile,
    /// Core dump size.
    Core,
    /// Processes of the uid.
    NProc,
    /// Address space, bytes.
    As,
}

impl Rlimit {
    fn resource(self) -> libc::__rlimit_resource_t {
        match self {
            Rlimit::NoFile => libc::RLIMIT_NOFILE,
            Rlimit::Core => libc::RLIMIT_CORE,
            Rlimit::NProc => libc::RLIMIT_NPROC,
            Rlimit::As => libc::RLIMIT_AS,
        }
    }
}

/// Why a sandbox cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Sandboxes need root (mount namespaces, uid changes); apps never run without one.
    #[error(
        "app sandboxes need root (this process runs as uid {0}); apps are not started unsandboxed"
    )]
    NotRoot(u32),
    /// The spec is unusable.
    #[error("bad sandbox spec: {0}")]
    Spec(String),
    /// The seccomp filter could not be built.
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    /// A step of entering the sandbox failed in the child; the program did not run.
    #[error("entering the sandbox failed at {step}: {source}")]
    Enter {
        /// Which step (and which mount).
        step: String,
        /// The system call's error.
        source: std::io::Error,
    },
    /// The program could not be started (fork or exec), outside any step.
    #[error("spawning the sandboxed program failed: {0}")]
    Spawn(std::io::Error),
}

/// The steps of [`Sandbox::enter_steps`], by the number it reports.
const STEPS: &[&str] = &[
    "unshare(CLONE_NEWNS)",
    "making the mount tree private",
    "mounting the root's tmpfs",
    "making the mount point of bind",
    "bind mount",
    "read-only remount of bind",
    "making /proc",
    "mounting /proc",
    "making /dev",
    "mounting /dev's tmpfs",
    "making the node of device",
    "bind mount of device",
    "making the old root's mount point",
    "pivot_root",
    "chdir to the new root",
    "detaching the old root",
    "removing the old root's mount point",
    "remounting the root read-only",
    "chdir to the working directory",
    "setrlimit",
    "clearing the ambient capabilities",
    "setgroups",
    "setresgid",
    "setresuid",
    "setting the parent-death signal",
    "setting no_new_privs",
    "installing the seccomp filter",
];

/// A checked spec, ready to enter in a child.
pub struct Sandbox {
    staging: CString,
    old_root: CString,
    /// (src, dst inside staging, read_only, is_dir)
    binds: Vec<(CString, CString, bool, bool)>,
    proc_dir: CString,
    dev_dir: CString,
    devices: Vec<(CString, CString)>,
    cwd: CString,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    filters: [seccompiler::BpfProgram; 2],
    /// The write end of the pipe the child names a failed step on.
    report: OwnedFd,
    /// Its read end, until [`Sandbox::command`] hands it to the [`Failure`].
    report_read: Option<OwnedFd>,
    /// The binds' destinations, for [`Failure::explain`].
    bind_names: Vec<String>,
}

/// Explains a failed `spawn` of a [`Sandbox::command`]: which step failed.
pub struct Failure {
    read: Option<OwnedFd>,
    binds: Vec<String>,
}

impl Failure {
    /// The error of `spawn`, with the step the child reported (if it got that far).
    pub fn explain(self, e: std::io::Error) -> SandboxError {
        let mut msg = [0u8; 3];
        let Some(read) = self.read else {
            return SandboxError::Spawn(e);
        };
        // SAFETY: reads at most three bytes into a stack array; the pipe is non-blocking.
        let n = unsafe { libc::read(read.as_raw_fd(), msg.as_mut_ptr().cast(), 3) };
        if n != 3 {
            return SandboxError::Spawn(e);
        }
        let idx = u16::from_le_bytes([msg[1], msg[2]]) as usize;
        let name = STEPS
            .get(msg[0] as usize)
            .copied()
            .unwrap_or("an unknown step");
        let step = match msg[0] {
            3..=5 => format!(
                "{name} {}",
                self.binds.get(idx).map(String::as_str).unwrap_or("?")
            ),
            10 | 11 => format!("{name} {}", DEVICES.get(idx).copied().unwrap_or("?")),
            _ => name.to_string(),
        };
        SandboxError::Enter { step, source: e }
    }
}

fn cstring(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Spec(format!("{} contains NUL", p.display())))
}

/// `dst` as a relative path with no `..`, `.` or root beyond its leading `/`.
fn inside(dst: &Path) -> Result<PathBuf, SandboxError> {
    if !dst.is_absolute() {
        return Err(SandboxError::Spec(format!(
            "{} is not absolute",
            dst.display()
        )));
    }
    let mut out = PathBuf::new();
    for c in dst.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(SandboxError::Spec(format!(
                    "{} must not contain . or ..",
                    dst.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Namespace flags `clone(2)` may not carry: with them an app would make a namespace
/// (`unshare` is denied outright; this closes the same door through clone).
pub const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The seccomp filters of every app, installed in order:
/// 1. [`DENIED_SYSCALLS`], and `clone` with any of [`CLONE_NAMESPACE_FLAGS`], fail with EPERM;
/// 2. `clone3` fails with ENOSYS: its flags are in memory, where a filter cannot read them,
///    and ENOSYS makes the C library fall back to `clone`, which filter 1 checks.
pub fn app_filters() -> Result<[seccompiler::BpfProgram; 2], SandboxError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let err = |e: &dyn std::fmt::Display| SandboxError::Seccomp(e.to_string());
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| err(&e))?;
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = DENIED_SYSCALLS
        .iter()
        .map(|(_, nr)| (*nr, Vec::new()))
        .collect();
    let clone_rules = CLONE_NAMESPACE_FLAGS
        .iter()
        .map(|f| {
            let c =
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*f), *f)
                    .map_err(|e| err(&e))?;
            SeccompRule::new(vec![c]).map_err(|e| err(&e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    let compile = |f: SeccompFilter| -> Result<seccompiler::BpfProgram, SandboxError> {
        f.try_into().map_err(|e: seccompiler::BackendError| err(&e))
    };
    Ok([compile(deny)?, compile(clone3)?])
}

impl Sandbox {
    /// Checks `spec` and prepares everything the child needs. Fails with
    /// [`SandboxError::NotRoot`] unless this process is root.
    pub fn prepare(spec: &Spec) -> Result<Sandbox, SandboxError> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid != 0 {
            return Err(SandboxError::NotRoot(euid));
        }
        if spec.uid == 0 || spec.gid == 0 {
            return Err(SandboxError::Spec("an app never runs as root".into()));
        }
        if !spec.staging.is_dir() {
            return Err(SandboxError::Spec(format!(
                "staging dir {} does not exist",
                spec.staging.display()
            )));
        }
        let staged = |dst: &Path| -> Result<CString, SandboxError> {
            cstring(&spec.staging.join(inside(dst)?))
        };
        let mut binds = Vec::new();
        for b in &spec.binds {
            let meta = std::fs::metadata(&b.src)
                .map_err(|e| SandboxError::Spec(format!("bind source {}: {e}", b.src.display())))?;
            binds.push((
                cstring(&b.src)?,
                staged(&b.dst)?,
                b.read_only,
                meta.is_dir(),
            ));
        }
        let mut devices = Vec::new();
        for d in DEVICES {
            let host = Path::new("/dev").join(d);
            if host.exists() {
                devices.push((cstring(&host)?, staged(&Path::new("/dev").join(d))?));
            }
        }
        let mut ends = [0; 2];
        // SAFETY: pipe2(2) fills two descriptors.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(SandboxError::Spawn(std::io::Error::last_os_error()));
        }
        // SAFETY: both descriptors are new and ours.
        let (read, write) =
            unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        Ok(Sandbox {
            report: write,
            report_read: Some(read),
            bind_names: spec
                .binds
                .iter()
                .map(|b| b.dst.display().to_string())
                .collect(),
            staging: cstring(&spec.staging)?,
            old_root: staged(Path::new("/.old-root"))?,
            binds,
            proc_dir: staged(Path::new("/proc"))?,
            dev_dir: staged(Path::new("/dev"))?,
            devices,
            cwd: cstring(&Path::new("/").join(inside(&spec.cwd)?))?,
            uid: spec.uid,
            gid: spec.gid,
            groups: spec.groups.clone(),
            // Limits only lower: a value above the current hard limit is clamped to it
            // (raising one needs CAP_SYS_RESOURCE, which containers often lack).
            rlimits: spec
                .rlimits
                .iter()
                .map(|(r, v)| (r.resource(), (*v).min(hard_limit(r.resource()))))
                .collect(),
            filters: app_filters()?,
        })
    }

    /// A command that runs `program` (a path inside the sandbox) in it. The caller adds
    /// arguments, environment and stdio; `spawn` fails if any step of entering fails, and
    /// [`Failure::explain`] then says which.
    pub fn command(mut self, program: &Path) -> (Command, Failure) {
        let mut cmd = Command::new(program);
        cmd.env_clear();
        let failure = Failure {
            read: self.report_read.take(),
            binds: std::mem::take(&mut self.bind_names),
        };
        // SAFETY: the hook only makes system calls on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || self.enter());
        }
        (cmd, failure)
    }

    /// The steps of the module documentation, in the child.
    fn enter(&self) -> std::io::Result<()> {
        let mut at = (0u8, 0u16);
        let r = self.enter_steps(&mut at);
        if r.is_err() {
            let msg = [at.0, at.1 as u8, (at.1 >> 8) as u8];
            // SAFETY: writes three bytes from a stack array to our pipe.
            unsafe { libc::write(self.report.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
        }
        r
    }

    /// [`Sandbox::enter`]'s steps; `at` says which one runs (step, index of its item).
    fn enter_steps(&self, at: &mut (u8, u16)) -> std::io::Result<()> {
        use std::ptr::null;
        let none = c"none".as_ptr();
        // 1. A mount namespace of its own, private all the way down.
        *at = (0, 0);
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        *at = (1, 0);
        check(unsafe {
            libc::mount(
                null(),
                c"/".as_ptr(),
                null(),
                libc::MS_REC | libc::MS_PRIVATE,
                null(),
            )
        })?;
        // 2. The new root: a tmpfs with the binds, /proc and /dev.
        *at = (2, 0);
        check(unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                self.staging.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755,size=1m".as_ptr().cast(),
            )
        })?;
        for (i, (src, dst, ro, is_dir)) in self.binds.iter().enumerate() {
            *at = (3, i as u16);
            make_point(dst, *is_dir)?;
            *at = (4, i as u16);
            check(unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    null(),
                    libc::MS_BIND | libc::MS_REC,
                    null(),
                )
            })?;
            let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
            if *ro {
                flags |= libc::MS_RDONLY;
            }
            *at = (5, i as u16);
            check(unsafe { libc::mount(null(), dst.as_ptr(), null(), flags, null()) })?;
        }
        *at = (6, 0);
        make_point(&self.proc_dir, true)?;
        *at = (7, 0);
        check(unsafe {
            libc::mount(
                c"proc".as_ptr(),
                self.proc_dir.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"hidepid=invisible".as_ptr().cast(),
            )
        })?;
        *at = (8, 0);
        make_point(&self.dev_dir, true)?;
        *at = (9, 0);
        check(unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                self.dev_dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c"mode=0755,size=64k".as_ptr().cast(),
            )
        })?;
        for (i, (src, dst)) in self.devices.iter().enumerate() {
            *at = (10, i as u16);
            make_point(dst, false)?;
            *at = (11, i as u16);
            check(unsafe {
                libc::mount(src.as_ptr(), dst.as_ptr(), null(), libc::MS_BIND, null())
            })?;
        }
        // 3. Into it; the host's tree is detached and the root made read-only.
        *at = (12, 0);
        make_point(&self.old_root, true)?;
        *at = (13, 0);
        check(unsafe {
            libc::syscall(
                libc::SYS_pivot_root,
                self.staging.as_ptr(),
                self.old_root.as_ptr(),
            ) as libc::c_int
        })?;
        *at = (14, 0);
        check(unsafe { libc::chdir(c"/".as_ptr()) })?;
        *at = (15, 0);
        check(unsafe { libc::umount2(c"/.old-root".as_ptr(), libc::MNT_DETACH) })?;
        *at = (16, 0);
        check(unsafe { libc::rmdir(c"/.old-root".as_ptr()) })?;
        *at = (17, 0);
        check(unsafe {
            libc::mount(
                null(),
                c"/".as_ptr(),
                none,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                null(),
            )
        })?;
        *at = (18, 0);
        check(unsafe { libc::chdir(self.cwd.as_ptr()) })?;
        // 4. Limits; no capability can come back through the bounding or ambient sets.
        for (i, (resource, v)) in self.rlimits.iter().enumerate() {
            let lim = libc::rlimit {
                rlim_cur: *v,
                rlim_max: *v,
            };
            *at = (19, i as u16);
            check(unsafe { libc::setrlimit(*resource, &lim) })?;
        }
        *at = (20, 0);
        check(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        })?;
        for cap in 0..=63 {
            // Past the kernel's last capability this fails with EINVAL: the set is empty.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
                break;
            }
        }
        // 5. The app's identity.
        *at = (21, 0);
        check(unsafe { libc::setgroups(self.groups.len(), self.groups.as_ptr()) })?;
        *at = (22, 0);
        check(unsafe { libc::setresgid(self.gid, self.gid, self.gid) })?;
        *at = (23, 0);
        check(unsafe { libc::setresuid(self.uid, self.uid, self.uid) })?;
        // 6. Dies with its spawner; can never gain privileges; the filter last.
        *at = (24, 0);
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
        *at = (25, 0);
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        *at = (26, 0);
        for f in &self.filters {
            check(unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &libc::sock_fprog {
                        len: f.len() as u16,
                        filter: f.as_ptr() as *mut libc::sock_filter,
                    } as *const libc::sock_fprog,
                    0,
                    0,
                )
            })?;
        }
        Ok(())
    }
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit.
    if unsafe { libc::getrlimit(resource, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        0
    }
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates the mount point `path` (a directory, or an empty file for a file bind) and its
/// parents, inside the staging tmpfs, with system calls only.
fn make_point(path: &CString, dir: bool) -> std::io::Result<()> {
    let bytes = path.as_bytes_with_nul();
    // Walk the prefixes in a stack buffer: no allocation in the child.
    let mut buf = [0u8; 4096];
    if bytes.len() > buf.len() {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    let end = bytes.len() - 1;
    for i in 1..end {
        if buf[i] == b'/' {
            buf[i] = 0;
            let rc = unsafe { libc::mkdir(buf.as_ptr().cast(), 0o755) };
            buf[i] = b'/';
            if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    let rc = if dir {
        unsafe { libc::mkdir(path.as_ptr(), 0o755) }
    } else {
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd >= 0 {
            unsafe { libc::close(fd) };
            0
        } else {
            fd
        }
    };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_must_be_absolute_and_plain() {
        assert_eq!(
            inside(Path::new("/data/storage/el1/bundle")).unwrap(),
            PathBuf::from("data/storage/el1/bundle")
        );
        assert!(inside(Path::new("data")).is_err());
        assert!(inside(Path::new("/data/../etc")).is_err());
        assert!(
            inside(Path::new("/data/./x")).is_ok(),
            "Path drops interior `.`"
        );
    }

    #[test]
    fn the_filter_builds_for_this_machine() {
        let [deny, clone3] = app_filters().expect("builds");
        assert!(
            deny.len() > DENIED_SYSCALLS.len(),
            "one check per denied call at least"
        );
        assert!(!clone3.is_empty());
    }
}
