//! The views mounted for real (root, /dev/fuse and fusermount3; skipped otherwise): a local
//! tree and a peer's served over a link of channels, used with std::fs and standard tools.

use super::*;
use crate::proto::VERSION;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

fn skip() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        return Some("not root".into());
    }
    unavailable()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_views_serve_files_over_fuse_and_a_peer_leaving_fails_fast() {
    if let Some(why) = skip() {
        println!("skipped: {why}");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (local, peer, mnt) = (d.path().join("l"), d.path().join("p"), d.path().join("mnt"));
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(peer.join("docs")).unwrap();
    std::fs::write(local.join("mine.txt"), b"local").unwrap();
    std::fs::write(peer.join("docs/a.txt"), b"aaaa").unwrap();
    std::fs::write(d.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink("../../secret", peer.join("docs/out")).unwrap();
    let views = Views::new(Arc::new(Server::local(&local).unwrap()));
    let (remote, cut) = crate::link::pair(&peer);
    let hello = remote
        .call_async(Request::Hello {
            version: VERSION,
            device_level: 3,
        })
        .await;
    assert_eq!(hello, Ok(Reply::Hello { version: VERSION }));
    views.add_peer("peer1", remote);
    let mounted = mount(views.clone(), &mnt).unwrap();
    let m = mnt.clone();
    let (p, v) = (peer.clone(), views.clone());
    let local_tree = local.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let dv = m.join(DEVICE_VIEW);
        let mut names: Vec<_> = std::fs::read_dir(&dv)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["local", "peer1"]);
        assert_eq!(std::fs::read(dv.join("local/mine.txt")).unwrap(), b"local");
        let pv = dv.join("peer1");
        // Create, write, read, rename, list, remove through the peer's view.
        std::fs::create_dir(pv.join("new")).unwrap();
        std::fs::write(pv.join("new/b.txt"), b"written on the viewer").unwrap();
        assert_eq!(
            std::fs::read(p.join("new/b.txt")).unwrap(),
            b"written on the viewer",
            "on the owner once closed"
        );
        std::fs::rename(pv.join("new/b.txt"), pv.join("docs/c.txt")).unwrap();
        let mut listed: Vec<_> = std::fs::read_dir(pv.join("docs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        listed.sort();
        assert_eq!(listed, ["a.txt", "c.txt", "out"]);
        std::fs::remove_file(pv.join("docs/c.txt")).unwrap();
        std::fs::remove_dir(pv.join("new")).unwrap();
        assert!(!p.join("new").exists());
        // Close-to-open: the owner rewrites a file (same size), the viewer's next open sees it.
        assert_eq!(std::fs::read(pv.join("docs/a.txt")).unwrap(), b"aaaa");
        std::fs::write(p.join("docs/a.txt"), b"bbbb").unwrap();
        assert_eq!(std::fs::read(pv.join("docs/a.txt")).unwrap(), b"bbbb");
        std::fs::write(p.join("docs/a.txt"), b"longer now").unwrap();
        assert_eq!(std::fs::read(pv.join("docs/a.txt")).unwrap(), b"longer now");
        // fsync is forwarded; appends append.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(pv.join("docs/a.txt"))
            .unwrap();
        f.write_all(b"!").unwrap();
        f.sync_all().unwrap();
        drop(f);
        assert_eq!(std::fs::read(p.join("docs/a.txt")).unwrap(), b"longer now!");
        // A link out of the owner's tree is refused.
        let e = std::fs::read(pv.join("docs/out")).unwrap_err();
        assert_eq!(errno_of(e), rustix::io::Errno::ACCESS.raw_os_error());
        // Standard tools.
        assert_eq!(
            run(Command::new("cat").arg(pv.join("docs/a.txt"))),
            "longer now!"
        );
        run(Command::new("cp")
            .arg(pv.join("docs/a.txt"))
            .arg(pv.join("copy.txt")));
        assert_eq!(std::fs::read(p.join("copy.txt")).unwrap(), b"longer now!");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(pv.join("big.bin"), &big).unwrap();
        assert_eq!(std::fs::read(pv.join("big.bin")).unwrap(), big);
        std::fs::set_permissions(pv.join("copy.txt"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert_eq!(
            std::fs::metadata(p.join("copy.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        if Command::new("sqlite3").arg("-version").output().is_ok() {
            let db = pv.join("notes.db");
            run(Command::new("sqlite3").arg(&db).arg(
                "create table t(x); insert into t values ('over hmdfs'); pragma integrity_check;",
            ));
            assert_eq!(
                run(Command::new("sqlite3")
                    .arg(p.join("notes.db"))
                    .arg("select x from t")),
                "over hmdfs\n"
            );
        } else {
            println!("sqlite3 not installed: its check skipped");
        }
        // The merge view: every device's files in one tree, with OpenHarmony's names.
        let (l, mv) = (&local_tree, m.join(MERGE_VIEW));
        std::fs::write(l.join("same.txt"), b"local same").unwrap();
        std::fs::write(p.join("same.txt"), b"peer same").unwrap();
        std::fs::create_dir_all(l.join("docs")).unwrap();
        std::fs::write(l.join("docs/l.txt"), b"l").unwrap();
        std::fs::write(l.join("x"), b"file x").unwrap();
        std::fs::create_dir_all(p.join("x")).unwrap();
        std::fs::write(p.join("x/in.txt"), b"in x").unwrap();
        let mut shown: Vec<_> = std::fs::read_dir(&mv)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        shown.sort();
        for want in [
            "same.txt",
            "same_conflict_dev1.txt",
            "mine.txt",
            "docs",
            "x",
            "x_remote_directory",
            "big.bin",
        ] {
            assert!(shown.iter().any(|s| s == want), "{want} in {shown:?}");
        }
        assert_eq!(std::fs::read(mv.join("same.txt")).unwrap(), b"local same");
        assert_eq!(
            std::fs::read(mv.join("same_conflict_dev1.txt")).unwrap(),
            b"peer same"
        );
        assert_eq!(std::fs::read(mv.join("x")).unwrap(), b"file x");
        assert_eq!(
            std::fs::read(mv.join("x_remote_directory/in.txt")).unwrap(),
            b"in x"
        );
        let mut docs: Vec<_> = std::fs::read_dir(mv.join("docs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        docs.sort();
        assert_eq!(
            docs,
            ["a.txt", "l.txt", "out"],
            "same-named directories merge"
        );
        assert_eq!(
            std::fs::read(mv.join("docs/a.txt")).unwrap(),
            b"longer now!"
        );
        let e = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(mv.join("big.bin"))
            .unwrap_err();
        assert_eq!(errno_of(e), rustix::io::Errno::EXIST.raw_os_error());
        std::fs::write(mv.join("made.txt"), b"in the merge view").unwrap();
        assert_eq!(
            std::fs::read(l.join("made.txt")).unwrap(),
            b"in the merge view",
            "a new file is this device's"
        );
        std::fs::create_dir(mv.join("docs/sub")).unwrap();
        assert!(l.join("docs/sub").is_dir());
        // The peer goes: its open file fails at once, writes ask to try again, its view
        // leaves device_view.
        let mut open = std::fs::File::open(pv.join("big.bin")).unwrap();
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(pv.join("copy.txt"))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        open.read_exact(&mut buf).unwrap();
        (open, w, buf, v)
    })
    .await;
    let result = match checks {
        Ok((mut open, mut w, mut buf, v)) => {
            cut.send(()).ok();
            v.remove_peer("peer1");
            tokio::task::spawn_blocking(move || {
                let t0 = Instant::now();
                // Past what read-ahead may have cached.
                use std::io::Seek;
                open.seek(std::io::SeekFrom::Start(2_900_000)).unwrap();
                let e = loop {
                    match open.read(&mut buf) {
                        Err(e) => break e,
                        Ok(_) if t0.elapsed() < Duration::from_secs(5) => continue,
                        Ok(_) => panic!("reads go on after the peer left"),
                    }
                };
                assert_eq!(errno_of(e), rustix::io::Errno::IO.raw_os_error());
                let e = w.write_all(b"x").and_then(|_| w.flush()).unwrap_err();
                assert_eq!(errno_of(e), rustix::io::Errno::AGAIN.raw_os_error());
                assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
                let names: Vec<_> = std::fs::read_dir(mnt.join(DEVICE_VIEW))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                assert_eq!(names, ["local"]);
                assert!(std::fs::metadata(mnt.join("device_view/peer1")).is_err());
            })
            .await
        }
        Err(e) => Err(e),
    };
    tokio::task::spawn_blocking(move || mounted.unmount())
        .await
        .unwrap()
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
