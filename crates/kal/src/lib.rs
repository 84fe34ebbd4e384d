//! Kernel abstraction layer: everything above this crate asks here, not the OS, for paths,
//! caller credentials and durable files, so that the rest of oxharmony stays kernel-agnostic
//! in the way OpenHarmony's KAL keeps its services portable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub mod clock;
pub mod direct;
pub mod ready;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod sockdiag;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod user;

/// Environment variable that selects a device's data dir, as `--data-dir` does.
pub const DATA_DIR_ENV: &str = "OXH_DATA_DIR";

/// Where root keeps a device by default: a system service's place, which other users (apps,
/// hdc's shell user) can reach the socket under, unlike root's home (0700).
pub const SYSTEM_DATA_DIR: &str = "/var/lib/oxharmony";

/// The data dir used when neither `--data-dir` nor `OXH_DATA_DIR` names one:
/// `$XDG_DATA_HOME/oxharmony`; else for root [`SYSTEM_DATA_DIR`], for anyone else
/// `~/.local/share/oxharmony`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("oxharmony");
    }
    if current_uid() == 0 {
        return PathBuf::from(SYSTEM_DATA_DIR);
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/share/oxharmony")
}

/// Where one device keeps its state; one value per device so several devices share a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDirs {
    root: PathBuf,
}

impl DeviceDirs {
    /// Wraps a data dir; nothing is created until [`DeviceDirs::create`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Runtime files (socket, pid file): removed state, not kept state.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The local IPC socket that every tool and app connects to.
    pub fn socket_path(&self) -> PathBuf {
        self.run_dir().join("oxhd.sock")
    }
    /// The daemon's pid file, written once it is ready.
    pub fn pid_path(&self) -> PathBuf {
        self.run_dir().join("oxhd.pid")
    }
    /// The shell user's writable dir, OpenHarmony's /data/local/tmp: where hdc stages
    /// installs and a shell without a home starts.
    pub fn shell_tmp(&self) -> PathBuf {
        self.root.join("local").join("tmp")
    }
    /// Creates a subsystem's dir readable by the daemon's user only (0700, also when it
    /// exists from an older start): other local users (apps, hdc's shell user) reach its
    /// state only through the subsystem's IPC methods, never by file.
    pub fn make_private(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.subsystem(name);
        fs::create_dir_all(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700))?;
        Ok(p)
    }
    /// Per-subsystem state dir, e.g. `param`, `log`, `device`.
    pub fn subsystem(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    /// Creates the data dir (0700: device keys live below it) and the run dir (0755, so that
    /// other local users can reach the socket, whose token then decides what they may do).
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o711))?;
        let run = self.run_dir();
        fs::create_dir_all(&run)?;
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }
}

/// Credentials of the process at the other end of a Unix socket, as the kernel reports them
/// (SO_PEERCRED). Never taken from anything the peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id of the peer when it connected.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// Asks for `bytes` of send and receive buffer on a socket (best effort: the kernel caps it
/// at net.core.wmem_max and rmem_max). A Unix stream socket's send buffer bounds the bytes not yet read
/// by the peer, so with the default 208 KiB a 1 MiB IPC part crosses in five writes and wakes
/// the reader five times.
pub fn set_socket_buffers(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads one c_int we own, on a descriptor the caller owns.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Reads SO_PEERCRED from a connected Unix socket.
pub fn peer_cred(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<PeerCred> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and sized for SO_PEERCRED's ucred.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// A socket's address family and type (SO_DOMAIN, SO_TYPE): what a descriptor a caller
/// passed really is, before it is used as one.
pub fn socket_kind(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    use std::os::fd::AsRawFd;
    let get = |opt: libc::c_int| -> io::Result<i32> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one c_int into `v`, whose size `len` says.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    };
    Ok((get(libc::SO_DOMAIN)?, get(libc::SO_TYPE)?))
}

/// Whether `fd` is a Unix stream socket (what a service connection's end must be).
pub fn is_unix_stream(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    socket_kind(fd).ok() == Some((libc::AF_UNIX, libc::SOCK_STREAM))
}

/// Shuts down the sending side of a socket, so the peer reads end-of-file even while other
/// handles to the socket stay open.
pub fn shutdown_write(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown(2) on a valid, borrowed descriptor; no memory is passed.
    if unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Most descriptors taken from one `recvmsg` (the ancillary buffer is sized for this many).
pub const MAX_FDS_PER_RECV: usize = 4;

/// Sends `data` on a connected Unix stream socket with descriptor `pass` attached (SCM_RIGHTS),
/// without blocking; returns how many bytes went (at least one when it succeeds: the kernel
/// delivers the descriptor with the first of them).
pub fn send_with_fd(
    sock: std::os::fd::BorrowedFd<'_>,
    data: &[u8],
    pass: std::os::fd::BorrowedFd<'_>,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = pass.as_raw_fd();
    // SAFETY: CMSG_SPACE is a pure computation on a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields used are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` writable, aligned bytes, enough for one header
    // with one int; CMSG_FIRSTHDR is therefore non-null and CMSG_DATA is inside the buffer.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
    }
    // SAFETY: msg and everything it points at (iov, data, cbuf) outlive the call.
    let n = unsafe {
        libc::sendmsg(
            sock.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Reads from a Unix stream socket into `buf` without blocking, collecting the descriptors
/// that came with the bytes (SCM_RIGHTS, close-on-exec) into `fds`. Descriptors beyond
/// [`MAX_FDS_PER_RECV`] in one message are closed by the kernel (MSG_CTRUNC); the caller
/// decides what a descriptor without its request means.
pub fn recv_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    buf: &mut [std::mem::MaybeUninit<u8>],
    fds: &mut Vec<std::os::fd::OwnedFd>,
) -> io::Result<usize> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let int = std::mem::size_of::<libc::c_int>();
    // SAFETY: CMSG_SPACE is a pure computation on a size.
    let space = unsafe { libc::CMSG_SPACE((int * MAX_FDS_PER_RECV) as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields used are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: iov points at `buf` (writable for its length; recvmsg only writes), the control
    // buffer at `cbuf`; both outlive the call.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages the kernel wrote, within msg_controllen; each
    // SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / sizeof(int) descriptors that are now
    // ours to own.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / int {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(std::os::fd::OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(n as usize)
}

/// Starts writing a file's dirty pages in `[offset, offset + len)` to disk without waiting
/// (sync_file_range WRITE), so that a final fsync after a long sequential write has little
/// left to do. Durability still needs that fsync; this only moves the work earlier.
pub fn start_writeback(fd: std::os::fd::BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range(2) on a valid, borrowed descriptor; no memory is passed.
    let rc =
        unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads exactly `n` bytes at `offset` of `file` into a new buffer, without zeroing it first
/// (for bulk reads, where zeroing a 1 MiB buffer cost about as much as the read's own copy).
/// A file that ends before `offset + n` is an `UnexpectedEof` error.
pub fn read_exact_at(file: &File, n: usize, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(n);
    while buf.len() < n {
        let at = offset + buf.len() as u64;
        let Ok(at) = libc::off_t::try_from(at) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let want = n - buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: pread(2) writes at most `want` bytes into the spare capacity, which has at
        // least `want` bytes (capacity n, len < n); the buffer outlives the call.
        let got = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast::<libc::c_void>(),
                want,
                at,
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if got == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        // SAFETY: the kernel initialised `got` (≤ want) more bytes after the current length.
        unsafe { buf.set_len(buf.len() + got as usize) };
    }
    Ok(buf)
}

/// The executable of a process, from the kernel (`/proc/PID/exe`); `None` when it is gone or
/// not readable by us (another user's process while we are not root).
pub fn process_exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The short name the kernel keeps for a process (`/proc/PID/comm`), for logs and dumps.
pub fn process_name(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The calling thread's kernel thread id, for hilog lines (pid and tid columns).
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Makes the C allocator keep freed memory for reuse. Bulk paths (hdc file chunks, soft-bus
/// bytes, IPC parts) allocate and free buffers of 0.5-4 MiB at a high rate; by default glibc
/// serves each from a fresh mmap (or trims freed heap straight back to the kernel), so every
/// buffer is faulted in and zeroed page by page again: measured, 115,000 page faults and
/// about twice the CPU per GiB received by hdc. With buffers up to 16 MiB taken from the
/// heap and free heap kept until [`KEPT_FREE_HEAP`] of it is at the top of a heap, the same
/// GiB costs 9,000 faults. Call first thing in `main`, before other threads exist. Does
/// nothing on other C libraries.
pub fn keep_freed_memory(role: MemoryRole) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEPT_FREE_HEAP as libc::c_int);
        if role == MemoryRole::Server {
            libc::mallopt(libc::M_ARENA_MAX, SERVER_ARENAS);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = role;
}

/// What a process is, for [`keep_freed_memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRole {
    /// A tool that runs one command and exits (`oxh`, `hdc`): what it keeps goes with it.
    Tool,
    /// A long-running server that strangers make allocate (`oxhd`): what they made it hold
    /// must go back once they leave ([`SERVER_ARENAS`], [`release_freed_memory`]).
    Server,
}

/// Allocator arenas of a server (M_ARENA_MAX). One: `malloc_trim` gives back the free top of
/// the main arena's heap but never a thread arena's (a thread arena's heap is 64 MiB, the size
/// of [`KEPT_FREE_HEAP`], so its top is never trimmed either), so with one arena every freed
/// page can go back once a burst is over ([`release_freed_memory`]). Measured: a stranger's
/// 35 MiB of held requests all came back (26 MiB after, 25 before), where with glibc's default
/// arenas 33 MiB stayed. The cost is one lock shared by the threads that allocate: small
/// blocks come from each thread's cache (tcache), and bulk paths allocate about a thousand
/// buffers per GiB (hdc into oxhd: about 5% more CPU per GiB).
pub const SERVER_ARENAS: libc::c_int = 1;

/// Free memory at the top of a heap that glibc keeps before giving it back (M_TRIM_THRESHOLD):
/// enough that the bulk paths' 0.5-4 MiB buffers, up to a window of them, are reused warm.
/// 16 MiB was tried: hdc then trimmed and refaulted its buffers, receiving 1 GiB cost the tool
/// 1.77 CPU-s instead of 0.96 and a received file came at 650 MB/s instead of 1,100. A server
/// gives what it keeps back after a burst instead ([`SERVER_ARENAS`]).
pub const KEPT_FREE_HEAP: usize = 64 << 20;

/// Gives the memory the allocator holds free back to the kernel (glibc's `malloc_trim(0)`:
/// free pages of every arena, not only the top of the heap). [`keep_freed_memory`] keeps up to
/// 64 MiB of freed heap per arena for speed; a server calls this once a burst of work is
/// over (connections closed) so what they used does not stay resident. Takes a few
/// milliseconds on a large heap; call it off the async threads. Does nothing elsewhere.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The current process's effective uid.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Resident set size of a process in bytes, from `/proc/PID/status` (VmRSS).
pub fn resident_memory(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Writes `data` to `path` so that after a crash or power loss the file holds either the old
/// content or the new, never a mix: write a temp file, fsync it, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Mode of every secret file (private keys, the sim's dev root key): the owner alone reads it.
pub const SECRET_MODE: u32 = 0o600;

/// Writes a secret (a private key) as [`write_atomic`] does, mode [`SECRET_MODE`] from the
/// moment it exists: the temp file is created 0600, so no other user can open it even while
/// it is being written. An existing file of wider mode is replaced, not reused.
pub fn write_secret(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(path, data, SECRET_MODE)
}

/// The machine's host name (not the default device name: it stays off the network).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_exact_at_reads_the_range_and_refuses_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(
            super::read_exact_at(&f, 5000, 1234).unwrap(),
            &data[1234..6234]
        );
        assert_eq!(
            super::read_exact_at(&f, 0, 10_000).unwrap(),
            Vec::<u8>::new()
        );
        let e = super::read_exact_at(&f, 100, 9_950).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    use super::*;

    #[test]
    fn write_atomic_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn peer_cred_reports_our_own_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsFd;
        let c = peer_cred(a.as_fd()).unwrap();
        assert_eq!(c.pid as u32, std::process::id());
        assert_eq!(c.uid, current_uid());
    }

    #[test]
    fn dirs_layout() {
        let d = DeviceDirs::new("/x");
        assert_eq!(d.socket_path(), PathBuf::from("/x/run/oxhd.sock"));
        assert_eq!(d.subsystem("param"), PathBuf::from("/x/param"));
    }
}
