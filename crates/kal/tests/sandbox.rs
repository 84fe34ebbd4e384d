//! A real sandbox (as root): a shell inside probes what it is and what it can reach, and the
//! test reads the kernel's view of it from /proc outside.

use oxh_kal::sandbox::{Bind, Rlimit, Sandbox, SandboxError, Spec};
use std::path::{Path, PathBuf};
use std::process::Stdio;

const APP_UID: u32 = 20_010_042;

fn spec(staging: &Path, data: &Path) -> Spec {
    let mut binds: Vec<Bind> = ["/bin", "/lib", "/lib64", "/usr"]
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| Bind {
            src: PathBuf::from(p),
            dst: PathBuf::from(p),
            read_only: true,
        })
        .collect();
    binds.push(Bind {
        src: data.to_path_buf(),
        dst: PathBuf::from("/data/storage/el2/base"),
        read_only: false,
    });
    Spec {
        staging: staging.to_path_buf(),
        binds,
        uid: APP_UID,
        gid: APP_UID,
        groups: vec![APP_UID],
        cwd: PathBuf::from("/data/storage/el2/base"),
        rlimits: vec![(Rlimit::Core, 0), (Rlimit::NoFile, 256)],
    }
}

/// A temp dir with an empty staging dir and a data dir in it.
fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("root");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    (tmp, staging, data)
}

/// The probe: each line `name=value`.
const PROBE: &str = r#"
echo "uid=$(id -u) gid=$(id -g)"
grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='
echo "root=$(ls / | tr '\n' ' ')"
[ -e /root ] && echo root_dir=visible || echo root_dir=absent
cat /etc/shadow >/dev/null 2>&1 && echo shadow=readable || echo shadow=unreadable
echo hello > note.txt && echo write_own=ok || echo write_own=failed
touch /usr/x 2>/dev/null && echo write_system=ok || echo write_system=refused
echo "nofile=$(ulimit -n)"
echo "procs=$(ls /proc | grep -cE '^[0-9]+$')"
echo "mntns=$(readlink /proc/self/ns/mnt)"
"#;

#[test]
fn an_app_runs_as_its_uid_without_privileges_in_its_own_root() {
    if !oxh_testkit::require_root("sandbox", "to make mount namespaces and change uid") {
        return;
    }
    let (_tmp, staging, data) = dirs();
    std::os::unix::fs::chown(&data, Some(APP_UID), Some(APP_UID)).unwrap();
    let sb = Sandbox::prepare(&spec(&staging, &data)).expect("prepares");
    let (mut cmd, _) = sb.command(Path::new("/bin/sh"));
    cmd.arg("-c")
        .arg(PROBE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().expect("enters the sandbox");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in:\n{text}"))
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(get("uid"), APP_UID.to_string());
    assert_eq!(get("CapEff"), "0000000000000000");
    assert_eq!(get("CapPrm"), "0000000000000000");
    assert_eq!(get("CapBnd"), "0000000000000000");
    assert_eq!(get("CapAmb"), "0000000000000000");
    assert_eq!(get("NoNewPrivs"), "1");
    assert_eq!(get("Seccomp"), "2");
    assert_eq!(get("root_dir"), "absent");
    assert_eq!(get("shadow"), "unreadable");
    assert_eq!(get("write_own"), "ok");
    assert_eq!(get("write_system"), "refused");
    assert_eq!(get("nofile"), "256");
    // hidepid: it sees its own processes only (the shell and its pipeline).
    let procs: usize = get("procs").parse().unwrap();
    assert!(procs < 10, "sees {procs} processes");
    let root_line = text.lines().find(|l| l.starts_with("root=")).unwrap();
    for want in ["bin", "data", "dev", "proc", "usr"] {
        assert!(
            root_line
                .split_whitespace()
                .any(|w| w.trim_start_matches("root=") == want),
            "{root_line}"
        );
    }
    assert!(
        !root_line.contains("etc") && !root_line.contains("home"),
        "{root_line}"
    );
    // Its own mount namespace, not ours.
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(get("mntns"), ours.to_string_lossy());
    // What it wrote is on the host, owned by the app.
    let meta = std::fs::metadata(data.join("note.txt")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), APP_UID);
    // Nothing leaked into our namespace: the staging dir is still empty here.
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
}

#[test]
fn denied_system_calls_fail_inside() {
    if !oxh_testkit::require_root("sandbox", "to make mount namespaces and change uid") {
        return;
    }
    let (_tmp, staging, data) = dirs();
    let sb = Sandbox::prepare(&spec(&staging, &data)).expect("prepares");
    // unshare(1) needs unshare(2), which the filter denies (EPERM), as mount(2) is.
    let out = sb
        .command(Path::new("/bin/sh"))
        .0
        .arg("-c")
        .arg("unshare --user true 2>&1; echo rc=$?")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Operation not permitted") && !text.contains("rc=0"),
        "{text}"
    );
}

#[test]
fn a_spec_that_would_run_as_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(tmp.path(), tmp.path());
    s.uid = 0;
    match Sandbox::prepare(&s) {
        Err(SandboxError::Spec(m)) => assert!(m.contains("never runs as root")),
        Err(SandboxError::NotRoot(_)) => {} // not root: refused before looking at it
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_failed_step_is_named_and_nothing_runs() {
    if !oxh_testkit::require_root("sandbox", "to make mount namespaces and change uid") {
        return;
    }
    let (_tmp, staging, data) = dirs();
    let mut s = spec(&staging, &data);
    // A mount point inside a read-only bind cannot be made.
    s.binds.push(Bind {
        src: data.clone(),
        dst: PathBuf::from("/usr/oxh-test-nonexistent"),
        read_only: false,
    });
    let marker = data.join("ran");
    let (mut cmd, failure) = Sandbox::prepare(&s).unwrap().command(Path::new("/bin/sh"));
    let err = cmd
        .arg("-c")
        .arg(format!("touch {}", marker.display()))
        .spawn()
        .map(|_| ())
        .map_err(|e| failure.explain(e))
        .expect_err("the step fails");
    let text = err.to_string();
    assert!(
        text.contains("making the mount point of bind /usr/oxh-test-nonexistent"),
        "{text}"
    );
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(!marker.exists());
    assert!(!Path::new("/usr/oxh-test-nonexistent").exists());
}
