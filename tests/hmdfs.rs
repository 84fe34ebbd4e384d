//! HMDFS's device views with real FUSE between two bound devices on loopback (root, /dev/fuse
//! and fusermount3; skipped with the reason otherwise): files made, read, renamed and removed
//! through `device_view/<networkId>` land in the owner's account tree, close-to-open holds
//! across devices, `cat`/`cp`/`sqlite3` work unchanged, paths out of the tree and files above
//! the viewer's security level are refused, and a peer that stops mid-read gives EIO within
//! the bus's OFFLINE time instead of a hang.

use crate::common::{TestDevice, bind_by_pin, within};
use crate::kv::wait_online;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The bus's OFFLINE time in the test devices (4 heartbeats of 500 ms), and a margin.
const OFFLINE_BOUND: Duration = Duration::from_secs(10);
/// How long a peer's view may take to appear once both devices are online.
pub(crate) const VIEW_BOUND: Duration = Duration::from_secs(45);
const USER: u32 = 100;

/// Whether the FUSE views can run here (root, /dev/fuse, fusermount3); prints why not.
pub(crate) fn runnable(test: &str) -> bool {
    if !oxh_testkit::require_root(test, "to mount FUSE") {
        return false;
    }
    if let Some(why) = oxh_dfs::views::unavailable() {
        oxh_testkit::skip(test, &why);
        return false;
    }
    true
}

/// Two bound devices, both of security level SL3 unless given.
pub(crate) async fn pair_at(level_a: &str, level_b: &str) -> (TestDevice, TestDevice) {
    let env_a = [("OXH_DEVICE_SECURITY_LEVEL", level_a)];
    let env_b = [("OXH_DEVICE_SECURITY_LEVEL", level_b)];
    let a = TestDevice::start_with_env(&[], &env_a);
    let b = TestDevice::start_with_env(&["--peer", &a.ready_field("bus")], &env_b);
    bind_by_pin(&a, &b).await;
    wait_online(&a, &b.ready_field("udid")).await;
    wait_online(&b, &a.ready_field("udid")).await;
    (a, b)
}

fn device_view(d: &TestDevice) -> PathBuf {
    device_view_in(d.data_dir())
}

/// The `device_view` directory of the device whose data dir is `data`.
fn device_view_in(data: &Path) -> PathBuf {
    oxh_dfs::views::mount_point(data, USER).join("device_view")
}

pub(crate) fn tree(d: &TestDevice) -> PathBuf {
    tree_in(d.data_dir())
}

/// The account tree the device whose data dir is `data` serves.
pub(crate) fn tree_in(data: &Path) -> PathBuf {
    oxh_dfs::views::account_tree(data, USER)
}

/// `viewer`'s view of `owner`, once it is there (bounded).
pub(crate) async fn view_of(viewer: &TestDevice, owner: &TestDevice) -> PathBuf {
    view_in(&device_view(viewer), &owner.ready_field("network_id")).await
}

/// The view of the peer `network_id` in the `device_view` directory `dv`, once it is there
/// (bounded by [`VIEW_BOUND`]).
pub(crate) async fn view_in(dv: &Path, network_id: &str) -> PathBuf {
    let p = dv.join(network_id);
    let q = p.clone();
    within("the peer's device view", VIEW_BOUND, async move {
        loop {
            if std::fs::read_dir(&q).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    p
}

pub(crate) fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Runs a standard tool that must succeed; its stdout.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sorted names in `dir`.
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_through_a_peers_device_view_land_in_its_account_tree() {
    if !runnable("hmdfs files") {
        return;
    }
    let (a, b) = pair_at("SL3", "SL3").await;
    let (ta, tb) = (tree(&a), tree(&b));
    std::fs::create_dir_all(tb.join("docs")).unwrap();
    std::fs::write(tb.join("docs/b.txt"), b"from b").unwrap();
    std::fs::write(ta.join("a.txt"), b"from a").unwrap();
    let vb = view_of(&a, &b).await;
    let va = view_of(&b, &a).await;
    let nid_b = b.ready_field("network_id");
    tokio::task::spawn_blocking(move || {
        assert_eq!(names(vb.parent().unwrap()), {
            let mut v = vec!["local".to_string(), nid_b.clone()];
            v.sort();
            v
        });
        assert_eq!(std::fs::read(vb.join("docs/b.txt")).unwrap(), b"from b");
        assert_eq!(
            std::fs::read(vb.parent().unwrap().join("local/a.txt")).unwrap(),
            b"from a"
        );
        file_ops_land_in(&vb, &tb);
        // Close-to-open across devices: written on A through B's view, closed, read on A.
        std::fs::write(va.join("a.txt"), b"rewritten by b").unwrap();
        assert_eq!(std::fs::read(ta.join("a.txt")).unwrap(), b"rewritten by b");
        // The owner changes a file the viewer read (same size): the next open sees it.
        assert_eq!(std::fs::read(vb.join("docs/b.txt")).unwrap(), b"from b");
        std::fs::write(tb.join("docs/b.txt"), b"FROM B").unwrap();
        assert_eq!(std::fs::read(vb.join("docs/b.txt")).unwrap(), b"FROM B");
        // Standard tools, unchanged.
        assert_eq!(
            run(Command::new("cat").arg(vb.join("docs/b.txt"))),
            "FROM B"
        );
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(ta.join("big.bin"), &big).unwrap();
        run(Command::new("cp")
            .arg(va.join("big.bin"))
            .arg(vb.join("big.bin")));
        assert_eq!(
            std::fs::read(tb.join("big.bin")).unwrap(),
            big,
            "A→B by cp on A"
        );
        sqlite_through(
            || Command::new("sqlite3"),
            &vb.join("notes.db"),
            &tb.join("notes.db"),
        );
        // A's merge view: both devices' files, B's colliding one renamed.
        let mv = vb.parent().unwrap().parent().unwrap().join("merge_view");
        let shown = names(&mv);
        for want in [
            "a.txt",
            "big.bin",
            "big_conflict_dev1.bin",
            "docs",
            "notes.db",
        ] {
            assert!(shown.iter().any(|s| s == want), "{want} in {shown:?}");
        }
        assert_eq!(std::fs::read(mv.join("docs/b.txt")).unwrap(), b"FROM B");
        assert_eq!(
            std::fs::read(mv.join("big_conflict_dev1.bin")).unwrap(),
            big
        );
        let e = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(mv.join("notes.db"))
            .unwrap_err();
        assert_eq!(errno_of(e), libc::EEXIST, "a name a remote file has");
    })
    .await
    .unwrap();
    // A clean stop unmounts the views (SIGTERM; `stop` waits for the exit).
    let mut b = b;
    let at = oxh_dfs::views::mount_point(b.data_dir(), USER);
    assert!(mounted(&at), "{} mounted while running", at.display());
    b.stop();
    assert!(
        !mounted(&at),
        "{} still mounted after a clean stop",
        at.display()
    );
}

fn mounted(at: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let at = at.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_out_of_the_tree_and_files_above_the_viewers_level_are_refused() {
    if !runnable("hmdfs refusals") {
        return;
    }
    // A is SL3, B SL1: A opens B's unlabelled (s3) files, B does not open A's.
    let (a, b) = pair_at("SL3", "SL1").await;
    let (ta, tb) = (tree(&a), tree(&b));
    std::fs::write(tb.join("plain.txt"), b"s3").unwrap();
    std::fs::write(tb.join("top.txt"), b"s4").unwrap();
    std::fs::write(ta.join("plain.txt"), b"s3 on a").unwrap();
    std::fs::write(ta.join("low.txt"), b"s1 on a").unwrap();
    std::fs::write(a.data_dir().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink("/etc", tb.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../../../../secret", ta.join("out")).unwrap();
    let label = |p: &Path, l: &str| {
        oxh_dfs::label::set(p, l.parse().unwrap())
            .map(|_| true)
            .unwrap_or(false)
    };
    if !label(&tb.join("top.txt"), "s4") || !label(&ta.join("low.txt"), "s1") {
        oxh_testkit::skip("hmdfs refusals", "the temp dir keeps no user xattrs");
        return;
    }
    let vb = view_of(&a, &b).await;
    let va = view_of(&b, &a).await;
    let views: oxh_dfs::api::DeviceViews = a
        .sdk()
        .await
        .client()
        .call(
            oxh_ipc::sa_id::DISTRIBUTED_FILE,
            oxh_dfs::api::GET_DEVICE_VIEWS,
            &(),
        )
        .await
        .unwrap();
    assert!(
        views.mount.is_some() && views.peers.contains(&b.ready_field("network_id")),
        "{views:?}"
    );
    let dump = a.oxh_ok(&["hidumper", "-s", "5201"]);
    assert!(
        dump.contains("device views: mounted at") && dump.contains(&b.ready_field("network_id")),
        "{dump}"
    );
    tokio::task::spawn_blocking(move || {
        let eacces = libc::EACCES;
        assert_eq!(std::fs::read(vb.join("plain.txt")).unwrap(), b"s3");
        assert_eq!(
            errno_of(std::fs::read(vb.join("top.txt")).unwrap_err()),
            eacces
        );
        assert!(
            names(&vb).contains(&"top.txt".to_string()),
            "listed all the same"
        );
        assert!(
            std::fs::metadata(vb.join("top.txt")).is_ok(),
            "and stat works"
        );
        assert_eq!(
            errno_of(std::fs::read(va.join("plain.txt")).unwrap_err()),
            eacces
        );
        assert_eq!(std::fs::read(va.join("low.txt")).unwrap(), b"s1 on a");
        // Links out of the owner's tree: refused, whatever they point at.
        assert_eq!(
            errno_of(std::fs::read(vb.join("etc/passwd")).unwrap_err()),
            eacces
        );
        assert_eq!(errno_of(std::fs::read(va.join("out")).unwrap_err()), eacces);
        assert_eq!(
            errno_of(std::fs::write(va.join("out"), b"x").unwrap_err()),
            eacces
        );
        assert!(std::fs::read_dir(vb.join("etc")).is_err());
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(a.data_dir().join("secret")).unwrap(),
        b"outside"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stopped_mid_read_gives_eio_within_the_offline_time() {
    if !runnable("hmdfs peer stopped") {
        return;
    }
    let (a, mut b) = pair_at("SL3", "SL3").await;
    let tb = tree(&b);
    let big: Vec<u8> = vec![0x5a; 64 << 20];
    std::fs::write(tb.join("big.bin"), &big).unwrap();
    let vb = view_of(&a, &b).await;
    let (rx, reader) = read_until_error(vb.join("big.bin"));
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the first read");
    let stopped = Instant::now();
    b.kill9();
    crate::common::detach_file_views(b.data_dir());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(reader.join());
    });
    let (errno, _) = done_rx
        .recv_timeout(OFFLINE_BOUND)
        .expect("the read ended within the OFFLINE time (no hang)")
        .expect("the reader did not panic");
    assert_eq!(errno, libc::EIO);
    assert!(stopped.elapsed() < OFFLINE_BOUND, "{:?}", stopped.elapsed());
    // And its view left device_view.
    let dv = device_view(&a);
    let nid_b = b.ready_field("network_id");
    within("the view to leave", OFFLINE_BOUND, async move {
        loop {
            if !names(&dv).contains(&nid_b) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Reads the 64 MiB file at `path` in a thread, past anything cached, until a read fails.
/// The receiver hears when the first MiB is read; the thread gives the errno and how long
/// it read after that.
pub(crate) fn read_until_error(
    path: PathBuf,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<(i32, Duration)>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        let mut f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        f.read_exact(&mut buf).unwrap();
        tx.send(()).unwrap();
        // Keep reading past anything read ahead until the owner is gone.
        let mut at = 2u64 << 20;
        let t0 = Instant::now();
        let e = loop {
            if at + (1 << 20) > 64 << 20 {
                at = 2 << 20;
            }
            // Drop what is cached, so each read asks the owner.
            // SAFETY: posix_fadvise(2) on our own open file; it touches no memory.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
            f.seek(std::io::SeekFrom::Start(at)).unwrap();
            match f.read(&mut buf) {
                Ok(n) => at += (4 << 20).max(n as u64),
                Err(e) => break e,
            }
        };
        (errno_of(e), t0.elapsed())
    });
    (rx, reader)
}

/// sqlite3 (run by `sqlite3`, where the view is mounted) makes a database through a view at
/// `db`; sqlite3 on the owner's copy `owned` finds it whole, and reads back through the view
/// find its rows.
pub(crate) fn sqlite_through(sqlite3: impl Fn() -> Command, db: &Path, owned: &Path) {
    run(sqlite3()
        .arg(db)
        .arg("create table notes(t); insert into notes values ('one'), ('two');"));
    assert_eq!(
        run(Command::new("sqlite3")
            .arg(owned)
            .arg("select count(*) from notes; pragma integrity_check;")),
        "2\nok\n"
    );
    assert_eq!(
        run(sqlite3().arg(db).arg("select t from notes order by t")),
        "one\ntwo\n"
    );
}

/// Through the view `vb` of a tree `tb` holding only `docs/b.txt`: mkdir, create, write,
/// rename, readdir, unlink and rmdir, each seen in `tb`, which is left as it was.
pub(crate) fn file_ops_land_in(vb: &Path, tb: &Path) {
    std::fs::create_dir(vb.join("new")).unwrap();
    assert!(tb.join("new").is_dir());
    std::fs::write(vb.join("new/n.txt"), b"made on a").unwrap();
    assert_eq!(std::fs::read(tb.join("new/n.txt")).unwrap(), b"made on a");
    std::fs::rename(vb.join("new/n.txt"), vb.join("docs/n.txt")).unwrap();
    assert_eq!(names(&vb.join("docs")), ["b.txt", "n.txt"]);
    assert_eq!(names(&tb.join("docs")), ["b.txt", "n.txt"]);
    std::fs::remove_file(vb.join("docs/n.txt")).unwrap();
    std::fs::remove_dir(vb.join("new")).unwrap();
    assert_eq!(names(tb), ["docs"]);
}
