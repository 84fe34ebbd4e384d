//! HMDFS benchmark (issue 18): two bound devices on loopback, each a real `oxhd` with its
//! device views mounted; a 1 GiB file and a directory of 10,000 files in the owner's account
//! tree. Measured in the same run, in rotating order:
//!
//! - a cold sequential read (128 KiB reads, as `cat` makes) of the file through the viewer's
//!   `merge_view`, beside the same file through Debian's sshfs (a private sshd on a loopback
//!   port, a throwaway key) and a local read of it on the owner. Cold: the owner's pages are
//!   dropped (posix_fadvise DONTNEED) and so are the viewer's FUSE pages of it, each read on
//!   a fresh open;
//! - `ls -l` of the 10,000-file directory through `merge_view` beside through sshfs (each
//!   sshfs run on a fresh mount, so its caches are cold; ours after its caches expired).
//!
//! Goals: read ≥ 2x sshfs and ≥ 0.5x the local cold read; `ls -l` ≤ 2x sshfs's time.
//! Needs root, /dev/fuse, fusermount3, sshfs and sshd (scripts/deps installs them); skipped
//! with the reason otherwise. Mounts and sshd are cleaned up on every exit, panics included.
//!
//! Run: `cargo bench --bench hmdfs` (env OXH_BENCH_ITERS, runs of each, default 3;
//! OXH_BENCH_FILE_MB, default 1024; OXH_BENCH_FILES, default 10000; OXH_BENCH_DIR, where
//! the devices' data dirs go, default /var/tmp: a disk, so that cold reads come from it).

mod common;
use common::{Daemon, env_num};

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: u32 = 100;
/// What `cat` reads at a time (coreutils' buffer for a 128 KiB st_blksize).
const READ_BUF: usize = 128 * 1024;
/// Past the views' attribute and listing cache lifetime: a listing after it is cold.
const CACHE_EXPIRY: Duration = Duration::from_millis(1500);

/// Why the bench cannot run here, if it cannot.
fn unrunnable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (FUSE mounts, a private sshd)".into());
    }
    if let Some(why) = oxh_dfs::views::unavailable() {
        return Some(why);
    }
    for (p, pkg) in [
        ("/usr/bin/sshfs", "sshfs"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("/usr/bin/ssh-keygen", "openssh-client"),
    ] {
        if !Path::new(p).exists() {
            return Some(format!(
                "{p} is missing (Debian's {pkg}; scripts/deps installs it)"
            ));
        }
    }
    None
}

/// A private sshd on a loopback port; killed when dropped.
struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        let keygen = |name: &str| {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(name))
                .status()
                .expect("ssh-keygen");
            assert!(st.success(), "ssh-keygen");
        };
        keygen("host");
        keygen("client");
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
        // A free port: the kernel's pick, released for sshd to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = dir.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\n"
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd {
            child,
            port,
            key: dir.join("client"),
        }
    }
}

/// An sshfs mount; unmounted when dropped.
struct Sshfs {
    at: PathBuf,
}

impl Drop for Sshfs {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.at)
            .stderr(Stdio::null())
            .status();
    }
}

impl Sshfs {
    /// `root@127.0.0.1:remote` at `at`, sshfs's default options (its default cipher,
    /// chacha20-poly1305, as ../shared/BASELINES.md measured).
    fn mount(sshd: &Sshd, remote: &Path, at: &Path) -> Sshfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("sshfs")
            .arg("-p")
            .arg(sshd.port.to_string())
            .arg("-o")
            .arg(format!(
                "IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,\
                 BatchMode=yes,LogLevel=ERROR",
                sshd.key.display()
            ))
            .arg(format!("root@127.0.0.1:{}", remote.display()))
            .arg(at)
            .status()
            .expect("sshfs");
        assert!(st.success(), "sshfs mount");
        Sshfs {
            at: at.to_path_buf(),
        }
    }
}

/// The daemons' view mounts, detached when dropped (after the daemons were killed: a kill
/// leaves fusermount3's auto-unmount racing the temp dir's removal).
struct Detach([PathBuf; 2]);

impl Drop for Detach {
    fn drop(&mut self) {
        for at in &self.0 {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(at)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Drops the page cache of `path` (on whatever file system holds it).
fn drop_pages(path: &Path) {
    let f = std::fs::File::open(path).expect("open to drop its pages");
    // SAFETY: posix_fadvise(2) on our own open file; it touches no memory.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Reads `path` to its end on a fresh open, 128 KiB at a time: the bytes and the time.
fn read_all(path: &Path) -> (u64, Duration) {
    let mut buf = vec![0u8; READ_BUF];
    let t = Instant::now();
    let mut f = std::fs::File::open(path).expect("open to read");
    let mut n = 0u64;
    loop {
        match f.read(&mut buf).expect("read") {
            0 => break,
            k => n += k as u64,
        }
    }
    (n, t.elapsed())
}

/// `ls -l dir` (its output discarded): the time.
fn ls_l(dir: &Path) -> Duration {
    let t = Instant::now();
    let st = Command::new("ls")
        .arg("-l")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("ls");
    assert!(st.success(), "ls -l {}", dir.display());
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    if let Some(why) = unrunnable() {
        println!("hmdfs bench skipped: {why}");
        return;
    }
    // Both devices SL3, as the integration tests make them: an unlabelled file is s3, which
    // the default device level (SL1) may not open.
    // SAFETY: no other thread runs yet; the daemons inherit it.
    unsafe { std::env::set_var("OXH_DEVICE_SECURITY_LEVEL", "SL3") };
    let iters: usize = env_num("OXH_BENCH_ITERS", 3).max(1);
    let size: u64 = env_num::<u64>("OXH_BENCH_FILE_MB", 1024) << 20;
    let files: usize = env_num("OXH_BENCH_FILES", 10_000);

    // On the disk, not tmpfs, so that cold reads come from it (OXH_BENCH_DIR to change).
    let dir = std::env::var("OXH_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let base = tempfile::Builder::new()
        .prefix("oxh-hmdfs-bench")
        .tempdir_in(&dir)
        .expect("tmp");
    let _views =
        Detach(["a", "b"].map(|d| oxh_dfs::views::mount_point(&base.path().join(d), USER)));
    let rt = common::multi_thread_runtime();
    let (a, b, _da, _db) = rt.block_on(common::bound_pair(base.path()));
    let tree = oxh_dfs::views::account_tree(&a.dir, USER);
    std::fs::create_dir_all(tree.join("many")).unwrap();
    let file = tree.join("file1g");
    println!(
        "writing {} MiB and {files} small files on the owner...",
        size >> 20
    );
    common::write_incompressible(&file, size);
    for i in 0..files {
        std::fs::write(tree.join(format!("many/f{i:05}")), b"0123456789").unwrap();
    }
    let merged = oxh_dfs::views::mount_point(&b.dir, USER).join("merge_view");
    wait_for(&merged.join("file1g"), &b);

    let sshd = Sshd::start(&base.path().join("ssh"));
    let ssh_at = base.path().join("sshfs");
    let mut sshfs = Some(Sshfs::mount(&sshd, &tree, &ssh_at));

    let paths: [(&str, PathBuf); 3] = [
        ("hmdfs merge_view", merged.join("file1g")),
        ("sshfs", ssh_at.join("file1g")),
        ("local", file.clone()),
    ];
    let mut rates: [Vec<f64>; 3] = Default::default();
    for i in 0..iters {
        for k in 0..3 {
            let j = (i + k) % 3;
            drop_pages(&file);
            drop_pages(&paths[j].1);
            let (n, d) = read_all(&paths[j].1);
            assert_eq!(n, size, "{} read the whole file", paths[j].0);
            rates[j].push(mbps(n, d));
        }
        println!(
            "read run {}: hmdfs {:.0} MB/s, sshfs {:.0} MB/s, local cold {:.0} MB/s; \
             hmdfs/sshfs {:.2}x, hmdfs/local {:.2}x",
            i + 1,
            rates[0][i],
            rates[1][i],
            rates[2][i],
            rates[0][i] / rates[1][i],
            rates[0][i] / rates[2][i]
        );
    }

    let mut ls: [Vec<f64>; 2] = Default::default();
    for i in 0..iters {
        // sshfs on a fresh mount (cold caches); ours once its caches expired.
        drop(sshfs.take());
        sshfs = Some(Sshfs::mount(&sshd, &tree, &ssh_at));
        std::thread::sleep(CACHE_EXPIRY);
        let mut run = |j: usize| {
            let dir = if j == 0 {
                merged.join("many")
            } else {
                ssh_at.join("many")
            };
            ls[j].push(ls_l(&dir).as_secs_f64() * 1e3);
        };
        if i % 2 == 0 {
            run(0);
            run(1);
        } else {
            run(1);
            run(0);
        }
        println!(
            "ls -l run {}: hmdfs {:.0} ms, sshfs {:.0} ms; hmdfs/sshfs {:.2}x",
            i + 1,
            ls[0][i],
            ls[1][i],
            ls[0][i] / ls[1][i]
        );
    }

    let [h, s, l] = rates.map(median);
    let [lh, ls_] = ls.map(median);
    println!(
        "\nhmdfs 1 GiB cold read, median of {iters}: merge_view {h:.0} MB/s, sshfs {s:.0} MB/s, \
         local {l:.0} MB/s"
    );
    println!(
        "  hmdfs/sshfs {:.2}x (goal >= 2x), hmdfs/local {:.2}x (goal >= 0.5x)",
        h / s,
        h / l
    );
    println!(
        "ls -l of {files} remote files, median of {iters}: merge_view {lh:.0} ms, sshfs \
         {ls_:.0} ms; hmdfs/sshfs {:.2}x (goal <= 2x)",
        lh / ls_
    );
    drop(sshfs);
    drop(sshd);
    drop((a, b));
}

/// Waits (bounded) until the viewer shows `p`, i.e. its link to the owner is up.
fn wait_for(p: &Path, viewer: &Daemon) {
    let end = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(p).is_err() {
        assert!(
            Instant::now() < end,
            "{} never appeared on {}",
            p.display(),
            viewer.dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
