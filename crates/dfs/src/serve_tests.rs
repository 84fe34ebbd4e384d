use super::*;
use crate::proto::{MAX_HANDLES, errno, flags};

struct Tree {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn tree() -> Tree {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("account");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/a.txt"), b"hello").unwrap();
    let outside = d.path().join("secret");
    std::fs::write(&outside, b"outside").unwrap();
    std::os::unix::fs::symlink("../../secret", root.join("docs/out")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("docs/in")).unwrap();
    Tree {
        _dir: d,
        root,
        outside,
    }
}

fn server(t: &Tree, level: u8) -> Server {
    let s = Server::new(&t.root).unwrap();
    assert_eq!(
        s.call(Request::Hello {
            version: VERSION,
            device_level: level
        }),
        Reply::Hello { version: VERSION }
    );
    s
}

fn open(s: &Server, path: &str, f: u32) -> Result<u64, i32> {
    match s.call(Request::Open {
        path: path.into(),
        flags: f,
    }) {
        Reply::Opened { handle, .. } => Ok(handle),
        Reply::Error(e) => Err(e),
        r => panic!("{r:?}"),
    }
}

fn read(s: &Server, h: u64) -> Vec<u8> {
    match s.call(Request::Read {
        handle: h,
        offset: 0,
        size: MAX_IO,
    }) {
        Reply::Data(d) => d,
        r => panic!("{r:?}"),
    }
}

fn user_xattrs(p: &std::path::Path) -> bool {
    rustix::fs::setxattr(p, "user.probe", b"1", rustix::fs::XattrFlags::empty()).is_ok()
}

#[test]
fn nothing_is_done_before_hello_and_hello_is_checked() {
    let t = tree();
    let s = Server::new(&t.root).unwrap();
    assert_eq!(
        s.call(Request::Lookup { path: "".into() }),
        Reply::Error(errno::EPROTO)
    );
    let hello = |version, device_level| {
        s.call(Request::Hello {
            version,
            device_level,
        })
    };
    assert_eq!(hello(VERSION + 1, 3), Reply::Error(errno::EPROTO));
    assert_eq!(hello(VERSION, 9), Reply::Error(errno::EINVAL));
    assert_eq!(hello(VERSION, 3), Reply::Hello { version: VERSION });
    assert_eq!(hello(VERSION, 5), Reply::Error(errno::EPROTO), "once only");
}

#[test]
fn files_are_created_read_written_renamed_listed_and_removed() {
    let t = tree();
    let s = server(&t, 3);
    let h = open(&s, "docs/a.txt", flags::READ).unwrap();
    assert_eq!(read(&s, h), b"hello");
    assert_eq!(s.call(Request::Release { handle: h }), Reply::Done);
    assert_eq!(
        s.call(Request::Release { handle: h }),
        Reply::Error(errno::EBADF)
    );
    let Reply::Attr(d) = s.call(Request::Mkdir {
        path: "new".into(),
        mode: 0o4777,
    }) else {
        panic!()
    };
    assert_eq!(d.kind, Kind::Dir);
    assert_eq!(d.perm & 0o7000, 0, "no set-id bits from a peer");
    let Reply::Opened { handle: w, .. } = s.call(Request::Create {
        path: "new/b.txt".into(),
        mode: 0o644,
        flags: flags::WRITE | flags::EXCL,
    }) else {
        panic!()
    };
    assert_eq!(
        s.call(Request::Write {
            handle: w,
            offset: 0,
            data: b"written".to_vec()
        }),
        Reply::Written(7)
    );
    assert_eq!(
        s.call(Request::Fsync {
            handle: w,
            datasync: false
        }),
        Reply::Done
    );
    assert_eq!(s.call(Request::Release { handle: w }), Reply::Done);
    assert_eq!(std::fs::read(t.root.join("new/b.txt")).unwrap(), b"written");
    assert_eq!(
        s.call(Request::Create {
            path: "new/b.txt".into(),
            mode: 0o644,
            flags: flags::WRITE | flags::EXCL,
        }),
        Reply::Error(errno::EEXIST)
    );
    assert_eq!(
        s.call(Request::Rename {
            from: "new/b.txt".into(),
            to: "docs/a.txt".into(),
            noreplace: true
        }),
        Reply::Error(errno::EEXIST)
    );
    assert_eq!(
        s.call(Request::Rename {
            from: "new/b.txt".into(),
            to: "docs/c.txt".into(),
            noreplace: false
        }),
        Reply::Done
    );
    let Reply::Entries { entries, done } = s.call(Request::Readdir {
        path: "docs".into(),
        offset: 0,
    }) else {
        panic!()
    };
    assert!(done);
    let names: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.attr.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("a.txt", Kind::File),
            ("c.txt", Kind::File),
            ("in", Kind::File),
            ("out", Kind::Other)
        ],
        "a link within the tree is listed as its target, a link out as nothing to open"
    );
    let Reply::Entries { entries, done } = s.call(Request::Readdir {
        path: "docs".into(),
        offset: 3,
    }) else {
        panic!()
    };
    assert!(done && entries.len() == 1 && entries[0].name == "out");
    // Truncating and changing times by name.
    let Reply::Attr(a) = s.call(Request::Setattr {
        path: "docs/c.txt".into(),
        handle: None,
        size: Some(3),
        mode: Some(0o600),
        atime: None,
        mtime: Some(Time {
            secs: 1000,
            nanos: 5,
        }),
    }) else {
        panic!()
    };
    assert_eq!((a.size, a.perm, a.mtime.secs), (3, 0o600, 1000));
    assert_eq!(
        s.call(Request::Unlink {
            path: "docs/c.txt".into()
        }),
        Reply::Done
    );
    assert_eq!(
        s.call(Request::Rmdir {
            path: "docs".into()
        }),
        Reply::Error(rustix::io::Errno::NOTEMPTY.raw_os_error())
    );
    assert_eq!(s.call(Request::Rmdir { path: "new".into() }), Reply::Done);
    assert_eq!(
        open(&s, "docs", flags::READ),
        Err(rustix::io::Errno::ISDIR.raw_os_error())
    );
}

#[test]
fn no_path_leads_out_of_the_tree() {
    let t = tree();
    let s = server(&t, 5);
    for p in [
        "../secret",
        "docs/../../secret",
        "docs/out",
        "etc/passwd",
        "etc",
    ] {
        assert_eq!(open(&s, p, flags::READ), Err(errno::EACCES), "{p}");
        assert_eq!(
            s.call(Request::Lookup { path: p.into() }),
            Reply::Error(errno::EACCES),
            "{p}"
        );
    }
    assert_eq!(open(&s, "/etc/passwd", flags::READ), Err(errno::EINVAL));
    assert_eq!(
        s.call(Request::Readdir {
            path: "etc".into(),
            offset: 0
        }),
        Reply::Error(errno::EACCES)
    );
    // Writing, truncating, creating, renaming and removing through a link out: refused, and
    // the file outside is untouched.
    assert_eq!(
        open(&s, "docs/out", flags::WRITE | flags::TRUNC),
        Err(errno::EACCES)
    );
    assert_eq!(
        s.call(Request::Setattr {
            path: "docs/out".into(),
            handle: None,
            size: Some(0),
            mode: None,
            atime: None,
            mtime: None
        }),
        Reply::Error(errno::EACCES)
    );
    assert_eq!(
        s.call(Request::Create {
            path: "etc/evil".into(),
            mode: 0o644,
            flags: flags::WRITE
        }),
        Reply::Error(errno::EACCES)
    );
    assert_eq!(
        s.call(Request::Mkdir {
            path: "etc/evil".into(),
            mode: 0o755
        }),
        Reply::Error(errno::EACCES)
    );
    assert_eq!(
        s.call(Request::Rename {
            from: "docs/a.txt".into(),
            to: "etc/a.txt".into(),
            noreplace: false
        }),
        Reply::Error(errno::EACCES)
    );
    assert_eq!(
        s.call(Request::Unlink {
            path: "../secret".into()
        }),
        Reply::Error(errno::EACCES)
    );
    // Removing the link itself is fine: it is in the tree.
    assert_eq!(
        s.call(Request::Unlink {
            path: "docs/out".into()
        }),
        Reply::Done
    );
    assert_eq!(std::fs::read(&t.outside).unwrap(), b"outside");
    assert!(!std::path::Path::new("/etc/evil").exists());
}

#[test]
fn labels_above_the_device_level_are_listed_but_not_opened() {
    let t = tree();
    let f = t.root.join("docs/a.txt");
    if !user_xattrs(&f) {
        println!("skipped: this file system keeps no user xattrs");
        return;
    }
    let s1 = server(&t, 1);
    let s3 = server(&t, 3);
    // Unlabelled: s3.
    assert_eq!(open(&s1, "docs/a.txt", flags::READ), Err(errno::EACCES));
    assert!(open(&s3, "docs/a.txt", flags::READ).is_ok());
    crate::label::set(&f, "s4".parse().unwrap()).unwrap();
    assert_eq!(open(&s3, "docs/a.txt", flags::READ), Err(errno::EACCES));
    assert_eq!(
        open(&s3, "docs/a.txt", flags::WRITE | flags::TRUNC),
        Err(errno::EACCES)
    );
    assert_eq!(
        std::fs::read(&f).unwrap(),
        b"hello",
        "a refused open truncates nothing"
    );
    assert!(matches!(
        s3.call(Request::Lookup {
            path: "docs/a.txt".into()
        }),
        Reply::Attr(_)
    ));
    let Reply::Entries { entries, .. } = s3.call(Request::Readdir {
        path: "docs".into(),
        offset: 0,
    }) else {
        panic!()
    };
    assert!(entries.iter().any(|e| e.name == "a.txt"), "still listed");
    crate::label::set(&f, "s1".parse().unwrap()).unwrap();
    assert!(open(&s1, "docs/a.txt", flags::READ).is_ok());
    // The local view opens everything.
    crate::label::set(&f, "s4".parse().unwrap()).unwrap();
    let local = Server::local(&t.root).unwrap();
    assert!(open(&local, "docs/a.txt", flags::READ).is_ok());
}

#[test]
fn a_peer_holds_at_most_max_handles() {
    let t = tree();
    let s = server(&t, 3);
    let mut hs = Vec::new();
    for _ in 0..MAX_HANDLES {
        hs.push(open(&s, "docs/a.txt", flags::READ).unwrap());
    }
    assert_eq!(open(&s, "docs/a.txt", flags::READ), Err(errno::EMFILE));
    assert_eq!(
        s.call(Request::Create {
            path: "x".into(),
            mode: 0o644,
            flags: flags::WRITE
        }),
        Reply::Error(errno::EMFILE)
    );
    assert_eq!(s.open_files(), MAX_HANDLES);
    assert_eq!(s.call(Request::Release { handle: hs[0] }), Reply::Done);
    assert!(open(&s, "docs/a.txt", flags::READ).is_ok());
}

#[test]
fn bad_requests_change_nothing() {
    let t = tree();
    let s = server(&t, 3);
    assert_eq!(
        s.call(Request::Read {
            handle: 99,
            offset: 0,
            size: 1
        }),
        Reply::Error(errno::EBADF)
    );
    assert_eq!(
        s.call(Request::Read {
            handle: 1,
            offset: 0,
            size: MAX_IO + 1
        }),
        Reply::Error(errno::EINVAL)
    );
    assert_eq!(
        s.call(Request::Open {
            path: "docs/a.txt".into(),
            flags: 1 << 30
        }),
        Reply::Error(errno::EINVAL)
    );
    assert_eq!(
        s.call(Request::Unlink { path: "".into() }),
        Reply::Error(errno::EINVAL)
    );
    let h = open(&s, "docs/a.txt", flags::READ).unwrap();
    let Reply::Data(d) = s.call(Request::Read {
        handle: h,
        offset: 1 << 40,
        size: 10,
    }) else {
        panic!()
    };
    assert!(d.is_empty(), "past the end reads nothing");
}

#[test]
fn what_a_peer_makes_in_an_apps_dir_belongs_to_the_app() {
    use std::os::unix::fs::MetadataExt;
    if !oxh_root() {
        eprintln!("skipped: only root can give files away (the daemon runs as root)");
        return;
    }
    let t = tree();
    let app = t.root.join("data/com.example.notes");
    std::fs::create_dir_all(&app).unwrap();
    std::os::unix::fs::chown(&app, Some(20_010_042), Some(20_010_042)).unwrap();
    let s = server(&t, 3);
    let made = s.call(Request::Create {
        path: "data/com.example.notes/n.txt".into(),
        mode: 0o660,
        flags: flags::WRITE,
    });
    assert!(matches!(made, Reply::Opened { .. }), "{made:?}");
    let made = s.call(Request::Mkdir {
        path: "data/com.example.notes/sub".into(),
        mode: 0o770,
    });
    assert!(matches!(made, Reply::Attr(_)), "{made:?}");
    for p in ["n.txt", "sub"] {
        let m = std::fs::metadata(app.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (20_010_042, 20_010_042), "{p}");
    }
    // Outside an app's dir (root's), things stay root's.
    let made = s.call(Request::Create {
        path: "docs/r.txt".into(),
        mode: 0o644,
        flags: flags::WRITE,
    });
    assert!(matches!(made, Reply::Opened { .. }), "{made:?}");
    assert_eq!(
        std::fs::metadata(t.root.join("docs/r.txt")).unwrap().uid(),
        0
    );
}

fn oxh_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
