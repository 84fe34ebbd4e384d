//! `oxh fs` without a daemon: a file's security label in its `user.security` attribute (read
//! back by Python's `os.getxattr`, a reader nobody here wrote), file URIs made and parsed.

use crate::common::oxh_bin;
use std::process::Command;

fn oxh(args: &[&str]) -> std::process::Output {
    Command::new(oxh_bin())
        .args(args)
        .output()
        .expect("run oxh")
}

fn ok(args: &[&str]) -> String {
    let o = oxh(args);
    assert!(
        o.status.success(),
        "oxh {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn labels_live_in_the_user_security_xattr_and_bad_ones_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("a.txt");
    std::fs::write(&f, b"x").unwrap();
    let p = f.to_str().unwrap();
    assert_eq!(
        ok(&["fs", "label", "get", p]),
        "s3\n",
        "no label counts as s3"
    );
    let set = oxh(&["fs", "label", "set", p, "s1"]);
    if !set.status.success() && String::from_utf8_lossy(&set.stderr).contains("not supported") {
        println!("skipped: the temp dir's file system keeps no user xattrs");
        return;
    }
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert_eq!(ok(&["fs", "label", "get", p]), "s1\n");
    let py = Command::new("python3")
        .args([
            "-c",
            "import os,sys; print(os.getxattr(sys.argv[1], 'user.security').decode())",
            p,
        ])
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&py.stdout), "s1\n");
    let o = oxh(&["fs", "label", "set", p, "s5"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("s0, s1, s2, s3 or s4"));
    assert_eq!(
        ok(&["fs", "label", "get", p]),
        "s1\n",
        "a refused label changes nothing"
    );
    assert!(
        !oxh(&["fs", "label", "get", "/nonexistent/x"])
            .status
            .success()
    );
}

#[test]
fn uris_name_an_apps_file_on_this_or_another_device() {
    let u = ok(&[
        "fs",
        "uri",
        "--bundle",
        "com.example.notes",
        "--device",
        "net1",
        "/data/storage/el2/base/files/my note.txt",
    ]);
    assert_eq!(
        u,
        "file://com.example.notes/data/storage/el2/base/files/my%20note.txt?networkid=net1\n"
    );
    assert_eq!(
        ok(&["fs", "path", u.trim()]),
        "bundle=com.example.notes\npath=/data/storage/el2/base/files/my note.txt\n\
         name=my note.txt\nnetworkid=net1\n"
    );
    assert!(!oxh(&["fs", "path", "http://x/y"]).status.success());
    assert!(
        !oxh(&["fs", "uri", "--bundle", "a/b", "/x"])
            .status
            .success()
    );
}
