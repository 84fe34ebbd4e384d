//! hdc end to end: the real `hdc` tool (the oxh binary as `oxh hdc`), a real host server it
//! starts on demand, real `oxhd` devices with hdc listening on a free port.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A host: its own HOME (key pair, pinned devices) and its own server port.
struct Host {
    home: tempfile::TempDir,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Host {
    fn new() -> Host {
        Host {
            home: tempfile::tempdir().expect("home"),
            port: free_port(),
        }
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(oxh_bin());
        c.arg("hdc")
            .args(args)
            .env("HOME", self.home.path())
            .env("OHOS_HDC_SERVER_PORT", self.port.to_string())
            .stdin(Stdio::null());
        c
    }
    fn hdc(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run hdc")
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.hdc(args);
        assert!(
            o.status.success(),
            "hdc {args:?} failed ({:?}): {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn err(&self, args: &[&str]) -> String {
        let o = self.hdc(args);
        assert!(
            !o.status.success(),
            "hdc {args:?} should fail: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Stops the server this host started (it runs detached).
        let _ = self.hdc(&["kill"]);
    }
}

/// A device with hdc on a free port and authentication bypassed (as `oxh sim` does).
fn device(bypass: bool) -> (TestDevice, String) {
    device_with(bypass, &[])
}

fn device_with(bypass: bool, extra: &[&str]) -> (TestDevice, String) {
    let mut args = vec!["--hdc-port", "0"];
    args.extend_from_slice(extra);
    let d = TestDevice::start_with(&args);
    if bypass {
        d.oxh_ok(&["param", "set", "persist.hdc.auth_bypass", "1"]);
    }
    let addr = d.ready_field("hdc");
    (d, addr)
}

/// The device's shell user's own dir (OpenHarmony's /data/local/tmp): where a shell user may
/// write.
fn shell_tmp(d: &TestDevice) -> std::path::PathBuf {
    d.data_dir().join("local/tmp")
}

fn connected() -> (Host, TestDevice, String) {
    connected_with(&[])
}

fn connected_with(extra: &[&str]) -> (Host, TestDevice, String) {
    let (d, addr) = device_with(true, extra);
    let h = Host::new();
    let out = h.ok(&["tconn", &addr]);
    assert!(out.contains("Connect OK"), "{out}");
    (h, d, addr)
}

#[test]
fn tconn_list_targets_and_shell_exit_status() {
    let (h, d, addr) = connected();
    assert_eq!(h.ok(&["list", "targets"]).trim(), addr);
    let v = h.ok(&["list", "targets", "-v"]);
    assert!(
        v.contains(&addr)
            && v.contains("TCP")
            && v.contains("Connected")
            && v.contains("test-device"),
        "{v}"
    );

    let o = h.hdc(&["shell", "echo hi; echo oops >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    assert_eq!(h.hdc(&["shell", "true"]).status.code(), Some(0));
    // Killed by a signal: 128 + signal, as a shell reports it.
    assert_eq!(
        h.hdc(&["shell", "kill -TERM $$"]).status.code(),
        Some(128 + 15)
    );
    // The shell talks to its own device through oxh, with the shell token.
    assert_eq!(
        h.ok(&["shell", "oxh param get const.product.name"]).trim(),
        "test-device"
    );
    assert_eq!(
        h.ok(&["-t", &addr, "shell", "echo $OXH_DATA_DIR"]).trim(),
        d.data_dir().to_string_lossy()
    );
    // tconn -remove drops it.
    h.ok(&["tconn", &addr, "-remove"]);
    assert_eq!(h.ok(&["list", "targets"]).trim(), "[Empty]");
    let e = h.err(&["shell", "true"]);
    assert!(e.contains("[Fail]No any target"), "{e}");
}

#[test]
fn shell_passes_signals_through() {
    let (h, _d, _addr) = connected();
    let mut child = h
        .cmd(&[
            "shell",
            "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).expect("ready");
    assert_eq!(&buf, b"ready\n");
    unsafe_kill(child.id(), libc::SIGINT);
    let status = wait_exit(
        &mut child,
        Duration::from_secs(10),
        "shell did not end after SIGINT",
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).ok();
    assert_eq!(status.code(), Some(7), "{rest}");
    assert!(rest.contains("got-int"), "{rest}");
}

#[test]
fn unauthorised_host_is_refused_then_allowed() {
    let (d, addr) = device(false);
    let h = Host::new();
    let e = h.err(&["tconn", &addr]);
    assert!(e.contains("[Fail]Device unauthorized"), "{e}");
    let list = d.oxh_ok(&["hdc", "allow", "--list"]);
    let fp = list
        .split_whitespace()
        .next()
        .expect("a pending host")
        .to_string();
    assert_eq!(fp.len(), 16, "{list}");
    // Once: this connection only.
    d.oxh_ok(&["hdc", "allow", &fp]);
    h.ok(&["tconn", &addr]);
    assert_eq!(h.ok(&["shell", "echo in"]).trim(), "in");
    h.ok(&["tconn", &addr, "-remove"]);
    let e = h.err(&["tconn", &addr]);
    assert!(e.contains("unauthorized"), "allow-once is used up: {e}");
    // Always.
    let fp = d
        .oxh_ok(&["hdc", "allow", "--list"])
        .split_whitespace()
        .next()
        .expect("pending")
        .to_string();
    d.oxh_ok(&["hdc", "allow", "--always", &fp]);
    h.ok(&["tconn", &addr]);
    h.ok(&["tconn", &addr, "-remove"]);
    h.ok(&["tconn", &addr]);
    // Another host is still refused.
    let other = Host::new();
    assert!(other.err(&["tconn", &addr]).contains("unauthorized"));
}

#[test]
fn shell_and_files_run_as_the_shell_user_and_smode_switches_to_root() {
    if !oxh_testkit::require_root(
        "shell_and_files_run_as_the_shell_user_and_smode_switches_to_root",
        "for the daemon to run the shell as another user",
    ) {
        return;
    }
    let (h, d, _addr) = connected();
    let tmp = shell_tmp(&d);
    let tmp_meta = std::fs::metadata(&tmp).expect("shell tmp");
    assert_eq!(tmp_meta.permissions().mode() & 0o7777, 0o771);
    let shell_uid = tmp_meta.uid();
    assert_ne!(shell_uid, 0, "the shell's dir belongs to the shell user");

    // The shell runs as that user, starts in its dir, and its `oxh` runs get the shell token.
    let id = h.ok(&["shell", "id -u; id -g; pwd"]);
    let id: Vec<&str> = id.lines().collect();
    assert_eq!(id[0], shell_uid.to_string(), "{id:?}");
    assert_eq!(id[1], tmp_meta.gid().to_string(), "{id:?}");
    assert_eq!(id[2], tmp.to_string_lossy(), "{id:?}");
    let who = h.ok(&["shell", "oxh sa whoami"]);
    assert!(
        who.contains(&format!("uid {shell_uid} ")) && who.contains("(Shell)"),
        "{who}"
    );
    // What the shell token allows works; what it does not is refused by the token rules.
    h.ok(&["shell", "oxh atm tokens"]);
    let o = h.hdc(&["shell", "oxh param set const.product.name evil"]);
    assert_ne!(o.status.code(), Some(0));

    // Files: the kernel checks them as the shell user.
    let src = tempfile::tempdir().expect("tmp");
    let f = src.path().join("note.txt");
    std::fs::write(&f, b"hello").expect("write");
    let out = h.ok(&["file", "send", &f.to_string_lossy(), &tmp.to_string_lossy()]);
    assert!(out.contains("File count = 1,"), "{out}");
    let sent = std::fs::metadata(tmp.join("note.txt")).expect("sent");
    assert_eq!(sent.uid(), shell_uid, "new files belong to the shell user");
    // The data dir (root's, 0711) takes no new files from it, and nothing is left there.
    let e = h.err(&[
        "file",
        "send",
        &f.to_string_lossy(),
        &d.data_dir().to_string_lossy(),
    ]);
    assert!(
        e.contains("[Fail]Error opening file") && e.contains("Permission denied"),
        "{e}"
    );
    assert!(!d.data_dir().join("note.txt").exists());
    // Nor may it read the daemon's state: the device's identity key, the token database.
    for secret in ["device/identity.key", "atm/atm.db", "device"] {
        let stolen = src.path().join("stolen");
        let e = h.err(&[
            "file",
            "recv",
            &d.data_dir().join(secret).to_string_lossy(),
            &stolen.to_string_lossy(),
        ]);
        assert!(e.contains("Permission denied"), "{secret}: {e}");
        assert!(!stolen.exists(), "{secret}");
    }

    // hdc smode: root for the next commands; smode -r drops again.
    h.ok(&["smode"]);
    assert_eq!(h.ok(&["shell", "id -u"]).trim(), "0");
    h.ok(&[
        "file",
        "send",
        &f.to_string_lossy(),
        &d.data_dir().to_string_lossy(),
    ]);
    assert_eq!(
        std::fs::metadata(d.data_dir().join("note.txt"))
            .expect("sent as root")
            .uid(),
        0
    );
    assert_eq!(d.oxh_ok(&["param", "get", "persist.hdc.root"]).trim(), "1");
    h.ok(&["smode", "-r"]);
    assert_eq!(h.ok(&["shell", "id -u"]).trim(), shell_uid.to_string());

    // The shell may not choose who it runs as (nor may root's `oxh`, which is the shell too):
    // only the daemon's `--hdc-shell-user` sets it.
    let o = h.hdc(&["shell", "oxh param set persist.hdc.shell_user 0"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        !d.oxh(&["param", "set", "persist.hdc.shell_user", "0"])
            .status
            .success()
    );
}

#[test]
fn a_release_device_refuses_smode_and_root_as_the_shell_user() {
    if !oxh_testkit::require_root(
        "a_release_device_refuses_smode_and_root_as_the_shell_user",
        "for the daemon to run the shell as another user",
    ) {
        return;
    }
    let (h, d, _addr) = connected_with(&["--debuggable", "false"]);
    assert_eq!(d.oxh_ok(&["param", "get", "const.debuggable"]).trim(), "0");
    let e = h.err(&["smode"]);
    assert!(
        e.contains("Cannot set root run mode in undebuggable version"),
        "{e}"
    );
    // persist.hdc.root (which the shell may set, as on OpenHarmony) is ignored here.
    h.ok(&["shell", "oxh param set persist.hdc.root 1"]);
    assert_ne!(h.ok(&["shell", "id -u"]).trim(), "0");
    drop(h);
    drop(d);

    // Root named as the shell user: commands fail with a clear error rather than run as root.
    let (h, _d, _addr) = connected_with(&["--hdc-shell-user", "root"]);
    let e = h.err(&["shell", "id -u"]);
    assert!(
        e.contains("[Fail]no shell user") && e.contains("root"),
        "{e}"
    );
}

fn set_mtime(p: &Path, secs: u64) {
    let f = std::fs::File::open(p).expect("open");
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .expect("mtime");
}

#[test]
fn directory_tree_with_attrs_both_ways() {
    let (h, d, _addr) = connected();
    let src = tempfile::tempdir().expect("tmp");
    let root = src.path().join("tree");
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(root.join("sub/deeper/big.bin"), &big).expect("write");
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\n").expect("write");
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
    set_mtime(&root.join("run.sh"), 1_600_000_000);
    set_mtime(&root.join("sub/deeper/big.bin"), 1_500_000_000);
    let remote = shell_tmp(&d);

    let out = h.ok(&[
        "file",
        "send",
        "-a",
        "-z",
        &root.to_string_lossy(),
        &remote.to_string_lossy(),
    ]);
    let re = regex::Regex::new(
        r"FileTransfer finish, Size:(\d+), File count = 2, time:\d+ms rate:[\d.]+kB/s",
    )
    .expect("re");
    let caps = re.captures(&out).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(caps[1].parse::<usize>().expect("size"), big.len() + 10);
    let got = remote.join("tree");
    assert_eq!(
        std::fs::read(got.join("sub/deeper/big.bin")).expect("read"),
        big
    );
    let m = std::fs::metadata(got.join("run.sh")).expect("meta");
    assert_eq!(m.permissions().mode() & 0o7777, 0o750);
    assert_eq!(
        m.modified().expect("mtime"),
        std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );

    // And back, into a new name, through the host server this time (no direct session).
    let back = src.path().join("back");
    let o = h
        .cmd(&[
            "file",
            "recv",
            "-a",
            &got.to_string_lossy(),
            &back.to_string_lossy(),
        ])
        .env("OXH_HDC_DIRECT", "0")
        .output()
        .expect("recv");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // And the direct way (the client dials the device itself).
    let back2 = src.path().join("back2");
    h.ok(&[
        "file",
        "recv",
        "-a",
        &got.to_string_lossy(),
        &back2.to_string_lossy(),
    ]);
    assert_eq!(
        std::fs::read(back2.join("sub/deeper/big.bin")).expect("read"),
        big
    );
    assert_eq!(
        std::fs::read(back.join("sub/deeper/big.bin")).expect("read"),
        big
    );
    let m = std::fs::metadata(back.join("sub/deeper/big.bin")).expect("meta");
    assert_eq!(
        m.modified().expect("mtime"),
        std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000)
    );

    // -sync: only newer files go.
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\necho changed\n").expect("write");
    set_mtime(&root.join("run.sh"), 1_700_000_000);
    let out = h.ok(&[
        "file",
        "send",
        "-a",
        "-sync",
        &root.to_string_lossy(),
        &remote.to_string_lossy(),
    ]);
    assert!(out.contains("File count = 1,"), "{out}");

    // A path the device cannot write: a clear error, exit status 1.
    let e = h.err(&[
        "file",
        "send",
        &root.join("run.sh").to_string_lossy(),
        "/proc/no/such/place",
    ]);
    assert!(e.contains("[Fail]Error opening file"), "{e}");
    let e = h.err(&["file", "recv", "/no/such/file", &back.to_string_lossy()]);
    assert!(
        e.contains("[Fail]Error opening file") && e.contains("/no/such/file"),
        "{e}"
    );
}

#[test]
fn killed_transfer_leaves_no_final_file() {
    let (h, d, _addr) = connected();
    let src = tempfile::tempdir().expect("tmp");
    let f = src.path().join("big");
    {
        let mut w = std::fs::File::create(&f).expect("create");
        let block = vec![0x5au8; 1 << 20];
        for _ in 0..400 {
            w.write_all(&block).expect("write");
        }
    }
    let dest_dir = shell_tmp(&d);
    let dest = dest_dir.join("big");
    let mut child = h
        .cmd(&[
            "file",
            "send",
            &f.to_string_lossy(),
            &dest.to_string_lossy(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the temp file exists, then kill the client mid-way.
    let t0 = Instant::now();
    loop {
        let tmp = std::fs::read_dir(&dest_dir)
            .expect("ls")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".hdc-"));
        if tmp {
            break;
        }
        if let Some(st) = child.try_wait().expect("wait") {
            panic!("the transfer ended ({st}) before its temp file was seen");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no temp file appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    // The device notices the closed channel and removes its temp file.
    let t0 = Instant::now();
    loop {
        let names: Vec<String> = std::fs::read_dir(&dest_dir)
            .expect("ls")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("big"))
            .collect();
        if names.is_empty() {
            break;
        }
        assert!(
            !names.iter().any(|n| n == "big"),
            "final file exists after a killed transfer"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "temp file left: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!dest.exists());
}

fn echo_server() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, t)
}

fn echo_through(port: u16, tag: usize) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let msg = format!("hello {tag} {}", "x".repeat(tag * 100));
    s.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).map_err(|e| format!("{tag}: {e}"))?;
    if got != msg.as_bytes() {
        return Err(format!("{tag}: wrong bytes"));
    }
    Ok(())
}

/// `fport rm` of each (listening port, target port) rule, then a bounded wait until nothing
/// listens on the listening ports any more (the device closes its listener when the rule's
/// channel ends).
fn remove_forwards_and_wait(h: &Host, rules: &[(u16, u16)]) {
    for (listen, to) in rules {
        let out = h.ok(&[
            "fport",
            "rm",
            &format!("tcp:{listen}"),
            &format!("tcp:{to}"),
        ]);
        assert!(out.contains("Remove forward ruler success"), "{out}");
    }
    let t0 = Instant::now();
    while rules
        .iter()
        .any(|(listen, _)| TcpStream::connect(("127.0.0.1", *listen)).is_ok())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "forward still listening after fport rm"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fport_and_rport_with_100_parallel_connections() {
    let (h, _d, addr) = connected();
    // The "device" service and the "host" service are both on this machine's loopback.
    let (dev_port, _t1) = echo_server();
    let local = free_port();
    let out = h.ok(&["fport", &format!("tcp:{local}"), &format!("tcp:{dev_port}")]);
    assert!(out.contains("Forwardport result:OK"), "{out}");
    let threads: Vec<_> = (0..100)
        .map(|i| std::thread::spawn(move || echo_through(local, i)))
        .collect();
    for t in threads {
        t.join().expect("thread").expect("echo through fport");
    }
    let ls = h.ok(&["fport", "ls"]);
    assert!(
        ls.contains(&format!("tcp:{local} tcp:{dev_port}"))
            && ls.contains("[Forward]")
            && ls.contains(&addr),
        "{ls}"
    );

    let (host_port, _t2) = echo_server();
    let dport = free_port();
    h.ok(&[
        "rport",
        &format!("tcp:{dport}"),
        &format!("tcp:{host_port}"),
    ]);
    let threads: Vec<_> = (0..100)
        .map(|i| std::thread::spawn(move || echo_through(dport, i)))
        .collect();
    for t in threads {
        t.join().expect("thread").expect("echo through rport");
    }
    assert!(h.ok(&["fport", "ls"]).contains("[Reverse]"));

    remove_forwards_and_wait(&h, &[(local, dev_port), (dport, host_port)]);
    assert_eq!(h.ok(&["fport", "ls"]).trim(), "[Empty]");
}

#[test]
fn forwards_go_when_the_device_goes() {
    let (h, mut d, _addr) = connected();
    let (dev_port, _t) = echo_server();
    let local = free_port();
    h.ok(&["fport", &format!("tcp:{local}"), &format!("tcp:{dev_port}")]);
    d.kill9();
    let t0 = Instant::now();
    while !h.ok(&["fport", "ls"]).contains("[Empty]") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "forward kept after the device went away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn device_restart_mid_session_is_a_clear_error() {
    let (h, mut d, _addr) = connected();
    let mut child = h
        .cmd(&["shell", "echo started; sleep 60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 8];
    out.read_exact(&mut buf).expect("started");
    d.kill9();
    let status = wait_exit(
        &mut child,
        Duration::from_secs(15),
        "hdc shell hangs after the device died",
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .ok();
    assert!(!status.success());
    assert!(err.contains("[Fail]") && err.contains("device"), "{err}");
    d.restart();
    // The server reconnects on the next command (the port is kept in persist.hdc.port).
    assert_eq!(h.ok(&["shell", "echo back"]).trim(), "back");
}

#[test]
fn target_boot_restarts_the_daemon_in_place() {
    let (h, d, _addr) = connected();
    let pid = d.pid();
    d.oxh_ok(&["param", "set", "debug.hdc.marker", "1"]);
    h.ok(&["target", "boot"]);
    // A plain parameter does not survive a restart: once it is gone, the daemon restarted.
    let t0 = Instant::now();
    loop {
        let o = d.oxh(&["param", "get", "debug.hdc.marker"]);
        if !o.status.success()
            && !d
                .oxh(&["param", "get", "const.product.name"])
                .stdout
                .is_empty()
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "daemon did not restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pidfile = std::fs::read_to_string(d.data_dir().join("run/oxhd.pid")).expect("pid file");
    assert_eq!(pidfile.trim(), pid.to_string(), "same pid after boot");
    assert_eq!(h.ok(&["shell", "echo again"]).trim(), "again");
}

#[test]
fn hilog_streams_the_device_log() {
    let (h, _d, _addr) = connected();
    let out = h.ok(&["hilog", "-x"]);
    assert!(out.contains("device ready"), "{out}");
    let out = h.ok(&["hilog", "-x", "-T", "hdcd"]);
    assert!(
        out.contains("connected") && !out.contains("device ready"),
        "{out}"
    );
}

#[test]
fn server_kill_and_start() {
    let h = Host::new();
    h.ok(&["start"]);
    assert!(TcpStream::connect(("127.0.0.1", h.port)).is_ok());
    assert!(h.ok(&["kill"]).contains("Kill server finish"));
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", h.port)).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "server still up after kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Any command starts it again on demand.
    assert_eq!(h.ok(&["list", "targets"]).trim(), "[Empty]");
}

fn sha256_file(p: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
#[ignore = "1 GiB both ways: run in release (CI runs ignored tests with --release)"]
fn one_gib_both_ways_same_sha256() {
    let (h, d, _addr) = connected();
    let src = tempfile::tempdir().expect("tmp");
    let f = src.path().join("g1");
    {
        let mut w = std::fs::File::create(&f).expect("create");
        let mut block = vec![0u8; 1 << 20];
        for i in 0..1024u32 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(i)
                    .to_le_bytes()[1];
            }
            w.write_all(&block).expect("write");
        }
    }
    let want = sha256_file(&f);
    let remote = shell_tmp(&d).join("g1");
    h.ok(&[
        "file",
        "send",
        &f.to_string_lossy(),
        &remote.to_string_lossy(),
    ]);
    assert_eq!(sha256_file(&remote), want);
    let back = src.path().join("back");
    h.ok(&[
        "file",
        "recv",
        "-z",
        &remote.to_string_lossy(),
        &back.to_string_lossy(),
    ]);
    assert_eq!(sha256_file(&back), want);
}

/// A pty for the `hdc` client, as a terminal would give it.
fn open_pty(rows: u16, cols: u16) -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut m = -1;
    let mut s = -1;
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills two ints; null name and termios are allowed.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty");
    // SAFETY: fresh fds from openpty, owned here.
    unsafe {
        (
            std::fs::File::from_raw_fd(m),
            std::os::fd::OwnedFd::from_raw_fd(s),
        )
    }
}

#[test]
fn interactive_shell_on_a_pty_with_resize_and_ctrl_c() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};
    let (h, _d, _addr) = connected();
    let (master, slave) = open_pty(30, 100);
    let mut cmd = h.cmd(&["shell"]);
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave.try_clone().expect("dup"));
    // SAFETY: setsid and TIOCSCTTY between fork and exec, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn hdc shell");
    drop(slave);
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut reader = master.try_clone().expect("dup");
    let s2 = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            s2.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let wait_for = |what: &str| {
        let t0 = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
            if text.contains(what) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "no {what:?} in {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut w = master.try_clone().expect("dup");
    // The device's pty has the client's size.
    w.write_all(b"stty size; echo mark-$((6*7))\r")
        .expect("write");
    wait_for("mark-42");
    wait_for("30 100");
    // A resize of the client's terminal reaches the device's pty.
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a struct we own, on our pty master.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        w.write_all(format!("stty size; echo probe-{n}-done\r").as_bytes())
            .expect("write");
        wait_for(&format!("probe-{n}-done"));
        if String::from_utf8_lossy(&seen.lock().expect("lock")).contains("40 120") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "resize did not reach the device"
        );
    }
    // Ctrl-C goes to the device's foreground job, not to hdc.
    w.write_all(b"sleep 30; echo not-$((3+4))-int\r")
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    w.write_all(&[3]).expect("ctrl-c");
    w.write_all(b"echo after-$((1+1))\r").expect("write");
    wait_for("after-2");
    assert!(!String::from_utf8_lossy(&seen.lock().expect("lock")).contains("not-7-int"));
    w.write_all(b"exit 5\r").expect("write");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(10),
        "hdc shell did not exit",
    );
    assert_eq!(status.code(), Some(5));
}

/// A signed HAP of bundle `bundle`, made in `w` with keys the device `d` trusts.
fn demo_hap(d: &TestDevice, w: &Path, bundle: &str) -> std::path::PathBuf {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let keys = w.join("keys");
    d.oxh_ok(&["hap", "keygen", "--bundle", bundle, "--out", &s(&keys)]);
    d.oxh_ok(&["hap", "trust", "add", &s(&keys.join("root.pem"))]);
    let src = w.join("src");
    std::fs::create_dir_all(src.join("ets")).expect("mkdir");
    std::fs::write(
        src.join("module.json5"),
        format!(
            "{{ app: {{ bundleName: '{bundle}', versionCode: 1, versionName: '1.0.0', minAPIVersion: 12, targetAPIVersion: 12 }},\n  module: {{ name: 'entry', type: 'entry', deviceTypes: ['default'], mainElement: 'EntryAbility', abilities: [{{ name: 'EntryAbility', exported: true }}] }} }}\n"
        ),
    )
    .expect("module.json5");
    std::fs::write(src.join("ets/modules.abc"), b"code").expect("abc");
    let unsigned = w.join("u.hap");
    d.oxh_ok(&["hap", "pack", &s(&src), "-o", &s(&unsigned)]);
    let hap = w.join("demo.hap");
    d.oxh_ok(&[
        "hap",
        "sign",
        &s(&unsigned),
        "--key",
        &s(&keys.join("dev.key")),
        "--cert",
        &s(&keys.join("dev.pem")),
        "--profile",
        &s(&keys.join("dev.p7b")),
        "-o",
        &s(&hap),
    ]);
    hap
}

#[test]
fn install_and_uninstall_through_the_bundle_manager() {
    let (h, d, _addr) = connected();
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let bundle = "com.example.hdcdemo";
    let hap = demo_hap(&d, w, bundle);
    let out = h.ok(&["install", &s(&hap)]);
    assert!(out.contains("install bundle successfully."), "{out}");
    assert!(d.oxh_ok(&["bm", "dump", "-a"]).contains(bundle));
    // The staged copy on the device is gone.
    let staged: Vec<_> = std::fs::read_dir(d.data_dir().join("hdc/tmp"))
        .map(|r| r.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "{staged:?}");
    // A broken package: bm's error, non-zero exit.
    let junk = w.join("junk.hap");
    std::fs::write(&junk, b"not a zip").expect("junk");
    let o = h.hdc(&["install", &s(&junk)]);
    assert!(!o.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("failed to install bundle"), "{text}");
    let out = h.ok(&["uninstall", bundle]);
    assert!(out.contains("uninstall bundle successfully."), "{out}");
    assert!(!d.oxh_ok(&["bm", "dump", "-a"]).contains(bundle));
}

#[test]
fn discover_lists_devices_that_advertise_an_hdc_port_and_tconn_reaches_them() {
    // mDNS on loopback only: this test sends nothing beyond this machine.
    let d = TestDevice::start_with(&["--hdc-port", "0", "--discovery", "loopback"]);
    let name = d.ready_field("name");
    d.oxh_ok(&["param", "set", "persist.hdc.auth_bypass", "1"]);
    let port = d.ready_field("hdc").rsplit(':').next().unwrap().to_string();
    let h = Host::new();
    let want = format!("127.0.0.1:{port}\t{name} (");
    // Each round listens 1 s; the device answers the first query, so the first round
    // normally finds it (bounded: at most 5 rounds).
    let mut out = String::new();
    for _ in 0..5 {
        let o = h
            .cmd(&["discover"])
            .env("OXH_HDC_DISCOVER_IFACES", "loopback")
            .env("OXH_HDC_DISCOVER_MS", "1000")
            .output()
            .expect("run hdc discover");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out = String::from_utf8_lossy(&o.stdout).into_owned();
        if out.contains(&want) {
            break;
        }
    }
    assert!(out.lines().any(|l| l.starts_with(&want)), "{out}");
    let addr = format!("127.0.0.1:{port}");
    assert!(h.ok(&["tconn", &addr]).contains("Connect OK"));
    assert_eq!(h.ok(&["-t", &addr, "shell", "echo found"]).trim(), "found");
}

// ---- hardening: who may reach a host server and a device ----

const RAW_HELLO_ENV: &str = "OXH_HDC_RAW_HELLO";
const RAW_HELLO_RESULT: &str = "OXH-HDC-RAW-HELLO ";

/// Child entry (does nothing unless [`RAW_HELLO_ENV`] names a port): greets the host server on
/// that port as a client that skips the client's own check of who runs the server, as a
/// hostile client would, and prints whether the server let it in.
#[test]
fn child_raw_hello_entry() {
    let Ok(port) = std::env::var(RAW_HELLO_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let verdict = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port.parse().expect("port")))
            .await
            .expect("connect");
        // OpenHarmony's client protocol, without our client's check of the server.
        let mut c = match oxh_hdc::conn::ClientConn::handshake(tcp, "").await {
            Ok(c) => c,
            Err(e) => return serde_json::json!({"accepted": false, "why": e}),
        };
        let cmd = oxh_hdc::channel::ToServer::Command("list targets".into());
        if let Err(e) = c.writer.send(&cmd).await {
            return serde_json::json!({"accepted": false, "why": e.to_string()});
        }
        let mut text = String::new();
        while let Ok(Some(m)) = c.next().await {
            if let oxh_hdc::channel::ToClient::Out(d) | oxh_hdc::channel::ToClient::Err(d) = m {
                text.push_str(&String::from_utf8_lossy(&d));
            }
        }
        let refused = text.starts_with("[Fail]");
        serde_json::json!({"accepted": !refused, "why": text})
    });
    println!("{RAW_HELLO_RESULT}{verdict}");
}

/// `oxh hdc ARGS` as `nobody`, with a HOME of its own and the given server port.
fn as_nobody(home: &Path, port: u16, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(format!("OHOS_HDC_SERVER_PORT={port}"))
        .arg(oxh_bin())
        .arg("hdc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runuser")
}

/// A HOME that `nobody` may write.
fn nobody_home() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("home");
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    t
}

/// Finding: any local user got root through root's host server (`hdc smode`, then a shell as
/// root). Now the server refuses other users before any command, the client refuses another
/// user's server, and nothing changes on the device.
#[test]
fn another_local_user_cannot_use_roots_host_server() {
    if !can_run_as_nobody("another_local_user_cannot_use_roots_host_server") {
        return;
    }
    let (h, d, addr) = connected();
    // Root's own forward, which a stranger must not ride either.
    let (dev_port, _echo) = echo_server();
    let local = free_port();
    h.ok(&["fport", &format!("tcp:{local}"), &format!("tcp:{dev_port}")]);
    echo_through(local, 1).expect("root's forward works");

    let home = nobody_home();
    let marker = format!("/root/oxh-hdc-stranger-{}", std::process::id());
    for args in [
        vec!["smode"],
        vec!["shell", &format!("id; touch {marker}")],
        vec!["list", "targets"],
    ] {
        let o = as_nobody(home.path(), h.port, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} as nobody succeeded: {err}");
        assert!(
            err.contains("belongs to uid 0, not to you"),
            "{args:?}: {err}"
        );
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("uid="),
            "{args:?}"
        );
    }
    assert!(!Path::new(&marker).exists(), "the stranger's shell ran");
    let root_mode = d.oxh(&["param", "get", "persist.hdc.root"]);
    assert_ne!(
        String::from_utf8_lossy(&root_mode.stdout).trim(),
        "1",
        "smode went through"
    );
    // A client that skips its own check is refused by the server itself.
    let v = run_test_child(
        Some("nobody"),
        RAW_HELLO_ENV,
        &h.port.to_string(),
        "hdc::child_raw_hello_entry",
        RAW_HELLO_RESULT,
    );
    assert_eq!(v[0]["accepted"], false, "{v:?}");
    let why = v[0]["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("serves only its own user") && why.contains("not uid 65534"),
        "{why}"
    );
    // A forwarded port answers root and closes on the stranger without a byte.
    let o = Command::new("runuser")
        .args(["-u", "nobody", "--", "bash", "-c"])
        .arg(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{local} && echo hello >&3 && timeout 5 cat <&3"
        ))
        .output()
        .expect("runuser bash");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("hello"),
        "the stranger's bytes came back through root's forward"
    );
    echo_through(local, 2).expect("root's forward still works");
    // The device's bypass is for its own user: a stranger's own server is not let in.
    let port = free_port();
    // The stranger's server (started by its tconn) is stopped even if an assertion fails.
    let _stop = OnDrop(|| {
        let _ = as_nobody(home.path(), port, &["kill"]);
    });
    let o = as_nobody(home.path(), port, &["tconn", &addr]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("unauthorized"), "{err}");
    // Root's own use is untouched.
    assert_eq!(h.ok(&["shell", "echo still"]).trim(), "still");
}

/// Finding: devices with `persist.hdc.auth_bypass=1` (as `oxh sim` makes them) gave a root
/// shell to the LAN. Now the bypass holds only on loopback: a host in another network
/// namespace is sent through authorisation and refused.
#[test]
fn auth_bypass_does_not_reach_the_lan() {
    let Some((_netns, hosts)) =
        oxh_testkit::bridged_hosts("auth_bypass_does_not_reach_the_lan", "oxhhd", 2, "10.80.0")
    else {
        return;
    };
    // Declared after `netns`: stopped before the namespaces go.
    let dev = NsDevice::start(
        &hosts[0],
        "lan-dev",
        &["--hdc-port", "0", "--discovery", "off"],
    )
    .expect("device in its namespace");
    dev.oxh_ok(&["param", "set", "persist.hdc.auth_bypass", "1"]);
    let port = dev
        .ready_field("hdc")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let target = format!("10.80.0.1:{port}");
    let home = tempfile::tempdir().expect("home");
    let server_port = free_port().to_string();
    let neighbour = |args: &[&str]| -> Output {
        Command::new("ip")
            .args(["netns", "exec", &hosts[1], oxh_bin(), "hdc"])
            .args(args)
            .env("HOME", home.path())
            .env("OHOS_HDC_SERVER_PORT", &server_port)
            .stdin(Stdio::null())
            .output()
            .expect("hdc in the neighbour's namespace")
    };
    // The neighbour's server (started by its tconn) is stopped even if an assertion fails:
    // deleting the namespace would not stop it.
    let _stop = OnDrop(|| {
        let _ = neighbour(&["kill"]);
    });
    let o = neighbour(&["tconn", &target]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the LAN got in: {err}");
    assert!(err.contains("unauthorized"), "{err}");
    let o = neighbour(&["-t", &target, "shell", "id"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("uid="),
        "a shell ran for the LAN"
    );
}

/// Runs a closure when dropped (cleanup that must happen when a test fails too).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Finding: as another user, `oxh hdc allow --always` failed with a raw "Permission denied
/// (os error 13)" on a temp file, `--list` said "no host is waiting" when it could not read
/// the list, and `bm install -p` of an unreadable file said "does not exist". Each now says
/// what it is: OpenHarmony's 201 for the device owner's lists, "permission denied" for a file.
#[test]
fn a_stranger_is_told_permission_denied() {
    if !can_run_as_nobody("a_stranger_is_told_permission_denied") {
        return;
    }
    let d = TestDevice::start_with(&["--hdc-port", "0"]);
    // Other users may reach the socket (as on a real device), not the state.
    d.let_others_in();
    let h = Host::new();
    assert!(
        h.err(&["tconn", &d.ready_field("hdc")])
            .contains("unauthorized")
    );
    let pending = d.oxh_ok(&["hdc", "allow", "--list"]);
    let fp = pending
        .split_whitespace()
        .next()
        .expect("a pending host")
        .to_string();
    let nobody = |args: &[&str]| -> Output {
        Command::new("runuser")
            .args(["-u", "nobody", "--", oxh_bin(), "--data-dir"])
            .arg(d.data_dir())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runuser")
    };
    for args in [
        vec!["hdc", "allow", "--always", fp.as_str()],
        vec!["hdc", "allow", fp.as_str()],
        vec!["hdc", "allow", "--list"],
    ] {
        let o = nobody(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("error 201: permission denied"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(".tmp"), "{args:?}: {err}");
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("no host is waiting"),
            "{args:?}"
        );
    }
    // Nothing changed: the host is still waiting and still refused.
    assert!(d.oxh_ok(&["hdc", "allow", "--list"]).contains(&fp));
    assert!(
        h.err(&["tconn", &d.ready_field("hdc")])
            .contains("unauthorized")
    );

    let private = tempfile::tempdir().unwrap(); // 0700, root's
    let hap = private.path().join("secret.hap");
    std::fs::write(&hap, b"PK").unwrap();
    let o = nobody(&["bm", "install", "-p", &hap.to_string_lossy()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("permission denied"), "{out}");
    assert!(!out.contains("does not exist"), "{out}");
    // A path that really is missing still says so.
    let o = nobody(&["bm", "install", "-p", "/nonexistent/x.hap"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not exist"));
}

/// Hardening: the device side holds at most `MAX_DEVICE_CONNECTIONS_PER_PEER` connections
/// from one address (a stranger's half-open handshakes included); one more is dropped at
/// once, and a slot given back is usable again.
#[test]
fn one_address_holds_at_most_its_share_of_device_connections() {
    use oxh_hdc::limits::MAX_DEVICE_CONNECTIONS_PER_PEER;
    let (d, addr) = device(false);
    let _ = &d;
    let open = || TcpStream::connect(&addr).expect("connect");
    // Is this connection still held by the device (no EOF within a moment)?
    let held = |s: &mut TcpStream| -> bool {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        !matches!(s.read(&mut b), Ok(0))
    };
    let mut conns: Vec<TcpStream> = (0..MAX_DEVICE_CONNECTIONS_PER_PEER)
        .map(|_| open())
        .collect();
    let mut extra = open();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(
        matches!(extra.read(&mut b), Ok(0) | Err(_)),
        "the connection past the limit was kept"
    );
    for c in conns.iter_mut() {
        assert!(held(c), "an admitted connection was dropped");
    }
    drop(conns.pop());
    // The slot comes back once the device sees the close (bounded: 50 tries).
    let mut again = None;
    for _ in 0..50 {
        let mut c = open();
        if held(&mut c) {
            again = Some(c);
            break;
        }
    }
    assert!(again.is_some(), "no slot after one connection closed");
}

/// Runs tests/py/hdc_clients.py with `client` against host `h`'s server and the device at
/// `addr`; returns its report, or `None` (said why) when the client is not installed.
fn pypi_client(
    client: &str,
    module: &str,
    h: &Host,
    d: &TestDevice,
    addr: &str,
    w: &Path,
) -> Option<serde_json::Value> {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!(
            "skipped: python3 cannot import {module} (scripts/test installs it with pip; pip \
             could not here)"
        );
        return None;
    }
    let bundle = "com.example.pypiclient";
    let hap = demo_hap(d, w, bundle);
    let (echo_port, _echo) = echo_server();
    let fwd = free_port();
    // hdctool runs `hdc` for files and installs: ours, by that name.
    let bin = w.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let hdc = bin.join("hdc");
    let _ = std::fs::remove_file(&hdc);
    std::os::unix::fs::symlink(oxh_bin(), &hdc).expect("hdc link");
    let remote = shell_tmp(d);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/hdc_clients.py");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let o = Command::new("python3")
        .arg(&script)
        .args([
            client,
            &h.port.to_string(),
            addr,
            &s(w),
            &s(&remote),
            &s(&hap),
            bundle,
            &echo_port.to_string(),
            &fwd.to_string(),
            &s(&hdc),
        ])
        .env("HOME", h.home.path())
        .env("OHOS_HDC_SERVER_PORT", h.port.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{client} printed no result: {text}{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    Some(serde_json::from_str(line).expect("result json"))
}

/// A test blob for transfers: compressible and not, 3 MiB and a bit (several chunks).
fn blob(w: &Path) -> Vec<u8> {
    let mut b: Vec<u8> = (0..3 * 1024 * 1024 + 12345u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    b[..1024 * 1024].fill(b'a');
    std::fs::write(w.join("blob"), &b).expect("blob");
    b
}

/// hdc-rs-py from PyPI against our host server and device: targets, shell, files both ways
/// with and without compression, fport, install and uninstall, checkserver.
#[test]
fn pypi_hdc_rs_py_drives_our_server() {
    let (h, d, addr) = connected();
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let data = blob(w);
    let Some(r) = pypi_client("hdc_rs_py", "hdc_rs_py", &h, &d, &addr, w) else {
        return;
    };
    assert_eq!(r["targets"], serde_json::json!([addr]), "{r}");
    assert_eq!(r["shell"].as_str().map(str::trim), Some("hello-42"), "{r}");
    for k in ["send", "send_z", "recv", "recv_z"] {
        let t = r[k].as_str().unwrap_or_default();
        assert!(t.contains("FileTransfer finish"), "{k}: {r}");
    }
    let remote = shell_tmp(&d);
    for f in [
        remote.join("blob"),
        remote.join("blob_z"),
        w.join("back"),
        w.join("back_z"),
    ] {
        assert!(
            std::fs::read(&f).expect("transferred") == data,
            "{} differs",
            f.display()
        );
    }
    assert!(
        r["fport"].as_str().unwrap_or_default().contains("OK"),
        "{r}"
    );
    assert_eq!(r["echo"], "ping through the forward\n", "{r}");
    let list = r["fport_list"].to_string();
    assert!(list.contains("[Forward]") && list.contains(&addr), "{r}");
    assert!(
        r["fport_rm"]
            .as_str()
            .unwrap_or_default()
            .contains("success"),
        "{r}"
    );
    assert!(
        r["install"]
            .as_str()
            .unwrap_or_default()
            .contains("install bundle successfully"),
        "{r}"
    );
    assert!(
        r["installed"]
            .as_str()
            .unwrap_or_default()
            .contains("com.example.pypiclient"),
        "{r}"
    );
    assert!(
        r["uninstall"]
            .as_str()
            .unwrap_or_default()
            .contains("uninstall bundle successfully"),
        "{r}"
    );
    assert!(
        !d.oxh_ok(&["bm", "dump", "-a"])
            .contains("com.example.pypiclient")
    );
    assert!(
        r["checkserver"]
            .as_str()
            .unwrap_or_default()
            .contains("Ver: "),
        "{r}"
    );
}

/// hdctool from PyPI: its protocol half (targets, the tracker on one kept-alive connection,
/// shell, fport) and its CLI half (our `hdc` for files and installs).
#[test]
fn pypi_hdctool_drives_our_server() {
    let (h, d, addr) = connected();
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let data = blob(w);
    let Some(r) = pypi_client("hdctool", "hdctool", &h, &d, &addr, w) else {
        return;
    };
    assert_eq!(r["targets"], serde_json::json!([addr]), "{r}");
    // Two answers on one connection: the server kept it alive after `alive`.
    assert_eq!(
        r["track"],
        serde_json::json!({"polls": [[addr], [addr]], "errors": []}),
        "{r}"
    );
    assert_eq!(r["shell"].as_str().map(str::trim), Some("hello-42"), "{r}");
    for k in ["send", "recv", "fport", "fport_rm", "install", "uninstall"] {
        assert!(r[k].is_null(), "{k} failed: {r}");
    }
    assert!(std::fs::read(shell_tmp(&d).join("blob")).expect("sent") == data);
    assert!(std::fs::read(w.join("back")).expect("received") == data);
    assert_eq!(r["echo"], "ping through the forward\n", "{r}");
    assert_eq!(r["forwards"][0]["target"], addr.as_str(), "{r}");
    assert_eq!(r["forwards_after"], serde_json::json!([]), "{r}");
    assert!(
        r["installed"]
            .as_str()
            .unwrap_or_default()
            .contains("com.example.pypiclient"),
        "{r}"
    );
    assert!(
        !d.oxh_ok(&["bm", "dump", "-a"])
            .contains("com.example.pypiclient")
    );
}

/// OpenHarmony's own test framework, xdevice (xdevice-ohos from PyPI), against our host
/// server: its monitor's handshake (it reads exactly OpenHarmony's 48-byte server handshake),
/// `alive` and `list targets -v` parsed as it parses them (tab-separated, at least 5 fields),
/// shell output, and file send/recv byte-identical.
#[test]
fn pypi_xdevice_drives_our_server() {
    let (h, d, addr) = connected();
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let data = blob(w);
    let Some(r) = pypi_client("xdevice", "ohos.environment.dmlib", &h, &d, &addr, w) else {
        return;
    };
    let targets = r["targets"].as_str().unwrap_or_default();
    let line = targets
        .lines()
        .find(|l| l.starts_with(&addr))
        .unwrap_or_else(|| panic!("{addr} not listed: {r}"));
    let items: Vec<&str> = line.trim().split('\t').collect();
    assert!(items.len() >= 5 && items.contains(&"Connected"), "{line:?}");
    assert_eq!(r["shell"].as_str().map(str::trim), Some("hello-42"), "{r}");
    for k in ["send", "recv"] {
        assert!(r[k].is_null(), "{k} failed: {r}");
    }
    assert!(std::fs::read(shell_tmp(&d).join("blob")).expect("sent") == data);
    assert!(std::fs::read(w.join("back")).expect("received") == data);
    assert_eq!(
        r["after"].as_str().map(str::trim),
        Some("after-transfers"),
        "{r}"
    );
}

/// OpenHarmony's host side of a session, written here from developtools_hdc's definitions
/// (docs/HDC-WIRE.md), as OpenHarmony's `hdc` server speaks to a device: plaintext packets,
/// the handshake, the RSA key in `home`; with `OHOS_HDC_ENCRYPT_CHANNEL=1`'s
/// `encrypt_tcp`, the TLS-PSK steps on OpenSSL directly (hdc's `HdcHostSSL`, not our
/// engine), then TLS records for the whole stream.
struct OhosHost {
    tcp: TcpStream,
    /// Plaintext not yet parsed.
    buf: oxh_hdc::bytes::BytesMut,
    /// The TLS client, from the device's encrypted key on.
    tls: Option<openssl::ssl::SslStream<MemStream>>,
    /// The stream is TLS (hdc's `sslHandshake` label).
    encrypted: bool,
    /// The first ciphertext read after the switch (up to [`WIRE_KEPT`]), to check that it
    /// holds no plaintext.
    wire: Vec<u8>,
    /// The device's supportfeatures, once connected.
    features: Vec<String>,
}

/// How much of the ciphertext [`OhosHost`] keeps.
const WIRE_KEPT: usize = 1 << 20;

/// hdc's memory BIOs: what was fed comes out of reads, writes pile up.
#[derive(Default)]
struct MemStream {
    input: std::collections::VecDeque<u8>,
    output: Vec<u8>,
}

impl Read for MemStream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        if self.input.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        self.input.read(b)
    }
}

impl Write for MemStream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How an OpenHarmony host's handshake ended.
#[derive(Debug, PartialEq)]
enum OhosAuth {
    Connected(String),
    Unauthorized(String),
}

struct HostKeyPolicy(oxh_hdc::hostkey::HostKey);

impl oxh_hdc::ohos_auth::HostPolicy for HostKeyPolicy {
    fn public_key_message(&self) -> String {
        format!("ohos-test-host\x0c{}", self.0.public_pem())
    }
    fn sign(&self, token: &[u8]) -> String {
        self.0.sign(token)
    }
}

/// hdc's host `ServerSessionSSLInit`: EVP_DecodeBlock, RSA_private_decrypt with OAEP,
/// a TLS client with TLS_AES_128_GCM_SHA256 and the PSK callback naming
/// `Client_identity`; no other setting.
fn ohos_tls_client(home: &Path, buf: &[u8]) -> openssl::ssl::SslStream<MemStream> {
    use openssl::ssl::{Ssl, SslContext, SslMethod, SslStream};
    assert!((32..=512).contains(&buf.len()), "{} bytes", buf.len());
    let pem = std::fs::read(home.join("hdckey")).expect("the host key");
    let rsa = openssl::pkey::PKey::private_key_from_pem(&pem)
        .and_then(|k| k.rsa())
        .expect("RSA key");
    let ct =
        openssl::base64::decode_block(std::str::from_utf8(buf).expect("base64")).expect("base64");
    let mut psk = vec![0u8; rsa.size() as usize];
    let n = rsa
        .private_decrypt(&ct, &mut psk, openssl::rsa::Padding::PKCS1_OAEP)
        .expect("RSA-OAEP");
    assert_eq!(n, 32, "the pre-shared key's length");
    psk.truncate(n);
    let mut b = SslContext::builder(SslMethod::tls_client()).expect("ctx");
    b.set_ciphersuites("TLS_AES_128_GCM_SHA256").expect("suite");
    b.set_psk_client_callback(move |_, _hint, identity, out| {
        let id = b"Client_identity\0";
        identity[..id.len()].copy_from_slice(id);
        out[..psk.len()].copy_from_slice(&psk);
        Ok(psk.len())
    });
    let ctx = b.build();
    let mut ssl = Ssl::new(&ctx).expect("ssl");
    ssl.set_connect_state();
    SslStream::new(ssl, MemStream::default()).expect("stream")
}

/// hdc's `PerformHandshake`: SSL_do_handshake, then whatever it wrote.
fn ohos_tls_step(tls: &mut openssl::ssl::SslStream<MemStream>) -> Vec<u8> {
    match tls.do_handshake() {
        Ok(()) => {}
        Err(e) if e.code() == openssl::ssl::ErrorCode::WANT_READ => {}
        Err(e) => panic!("TLS handshake: {e}"),
    }
    std::mem::take(&mut tls.get_mut().output)
}

impl OhosHost {
    /// A plaintext session, as OpenHarmony's hdc server by default.
    fn connect(addr: &str, home: &Path) -> (OhosHost, OhosAuth) {
        OhosHost::connect_with(addr, home, false)
    }

    /// A session asking for `encrypt_tcp`, as with `OHOS_HDC_ENCRYPT_CHANNEL=1`.
    fn connect_encrypted(addr: &str, home: &Path) -> (OhosHost, OhosAuth) {
        OhosHost::connect_with(addr, home, true)
    }

    fn connect_with(addr: &str, home: &Path, encrypt: bool) -> (OhosHost, OhosAuth) {
        use oxh_hdc::ohos_auth::{HostAuth, HostOutcome, auth_type};
        let key = oxh_hdc::hostkey::HostKey::load_or_create(home).expect("host key");
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut h = OhosHost {
            tcp,
            buf: Default::default(),
            tls: None,
            encrypted: false,
            wire: Vec::new(),
            features: Vec::new(),
        };
        let features: &[&str] = if encrypt {
            &["heartbeat", "encrypt_tcp"]
        } else {
            &["heartbeat"]
        };
        let (mut auth, first) = HostAuth::start(0x5eed, addr, features);
        h.send(0, first.command, &first.payload);
        let policy = HostKeyPolicy(key);
        loop {
            let p = h.next().expect("the device closed during the handshake");
            if p.protect.command_flag != oxh_hdc::ohos_auth::CMD_KERNEL_HANDSHAKE {
                continue;
            }
            let mut hs = oxh_hdc::ohos::SessionHandShake::decode(&p.payload).expect("handshake");
            if hs.auth_type == auth_type::SSL_TLS_PSK {
                assert!(encrypt, "TLS-PSK offered to a host that did not ask");
                let finished = h.tls.as_ref().map(|t| t.ssl().is_init_finished());
                let flight = match finished {
                    None => {
                        let mut tls = ohos_tls_client(home, &hs.buf);
                        let f = ohos_tls_step(&mut tls);
                        h.tls = Some(tls);
                        Some(f)
                    }
                    // Finished on entry: this packet is the switch; what follows it in
                    // the buffer is ciphertext.
                    Some(true) => {
                        let rest = h.buf.split();
                        h.wire.extend_from_slice(&rest);
                        let tls = h.tls.as_mut().expect("tls");
                        tls.get_mut().input.extend(&hs.buf);
                        tls.get_mut().input.extend(&rest[..]);
                        h.encrypted = true;
                        h.decrypt();
                        None
                    }
                    Some(false) => {
                        let tls = h.tls.as_mut().expect("tls");
                        tls.get_mut().input.extend(&hs.buf);
                        Some(ohos_tls_step(tls))
                    }
                };
                if let Some(f) = flight.filter(|f| !f.is_empty()) {
                    hs.buf = f;
                    h.send(0, 1, &hs.encode());
                }
                continue;
            }
            for a in auth.on_handshake(hs, &policy).expect("handshake step") {
                if let Some(o) = a.packet() {
                    h.send(0, o.command, &o.payload);
                }
            }
            match auth.outcome() {
                HostOutcome::Pending => {}
                HostOutcome::Connected {
                    device_name,
                    features,
                    ..
                } => {
                    let n = device_name.clone();
                    h.features = features.clone();
                    return (h, OhosAuth::Connected(n));
                }
                HostOutcome::Unauthorized(m) => {
                    let m = m.clone();
                    return (h, OhosAuth::Unauthorized(m));
                }
            }
        }
    }

    fn send(&mut self, channel: u32, command: u32, payload: &[u8]) {
        let mut out = Vec::new();
        let protect = oxh_hdc::ohos::PayloadProtect::new(channel, command);
        oxh_hdc::ohos::encode_packet(&mut out, &protect, payload);
        if self.encrypted {
            let tls = self.tls.as_mut().expect("tls");
            // One SSL_write of the whole packet, as hdc's WriteUvSslFd.
            let mut rest = &out[..];
            while !rest.is_empty() {
                let n = tls.ssl_write(rest).expect("SSL_write");
                rest = &rest[n..];
            }
            out = std::mem::take(&mut tls.get_mut().output);
        }
        self.tcp.write_all(&out).expect("send");
    }

    /// Everything the TLS client can decrypt, into the plaintext buffer.
    fn decrypt(&mut self) {
        let tls = self.tls.as_mut().expect("tls");
        let mut b = vec![0u8; 16384];
        loop {
            match tls.ssl_read(&mut b) {
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.code() == openssl::ssl::ErrorCode::WANT_READ => return,
                Err(e) => panic!("SSL_read: {e}"),
            }
        }
    }

    fn next(&mut self) -> Option<oxh_hdc::ohos::Packet> {
        loop {
            if let Some(p) = oxh_hdc::ohos::decode_packet(&mut self.buf).expect("packet") {
                return Some(p);
            }
            let mut b = [0u8; 65536];
            let n = match self.tcp.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            if self.encrypted {
                if self.wire.len() < WIRE_KEPT {
                    self.wire.extend_from_slice(&b[..n]);
                }
                let tls = self.tls.as_mut().expect("tls");
                tls.get_mut().input.extend(&b[..n]);
                self.decrypt();
            } else {
                self.buf.extend_from_slice(&b[..n]);
            }
        }
    }

    /// Sends one command on `channel` (and `input` as shell data), reads its output until the
    /// device closes the channel, and answers the close as hdc's server does. Returns the raw
    /// output and the echoed messages.
    fn command(
        &mut self,
        channel: u32,
        command: u32,
        payload: &[u8],
        input: &[u8],
    ) -> (String, Vec<String>) {
        self.send(channel, command, payload);
        if !input.is_empty() {
            self.send(channel, 2001, input);
        }
        let (mut out, mut echoes) = (Vec::new(), Vec::new());
        while let Some(p) = self.next() {
            if p.protect.channel_id != channel {
                continue;
            }
            match p.protect.command_flag {
                10 => out.extend_from_slice(&p.payload),
                9 => echoes.push(String::from_utf8_lossy(&p.payload[1..]).into_owned()),
                2 => {
                    if p.payload.first().is_some_and(|&n| n > 0) {
                        self.send(channel, 2, &[0]);
                    }
                    break;
                }
                _ => {}
            }
        }
        (String::from_utf8_lossy(&out).into_owned(), echoes)
    }
}

/// OpenHarmony's own host protocol against our device: an unknown RSA key is refused with
/// OpenHarmony's E000002 and recorded; once the device's owner allows it, the host signs the
/// token and gets in, and one-shot and interactive shells run as the shell user.
#[test]
fn an_openharmony_host_authenticates_with_its_rsa_key_and_runs_shells() {
    let (d, addr) = device(false);
    let home = tempfile::tempdir().expect("home");
    let (_, first) = OhosHost::connect(&addr, home.path());
    match first {
        OhosAuth::Unauthorized(m) => assert!(m.starts_with("[E000002]"), "{m}"),
        other => panic!("an unknown key got in: {other:?}"),
    }
    let pending = d.oxh_ok(&["hdc", "allow", "--list"]);
    assert!(pending.contains("ohos-test-host"), "{pending}");
    let who = pending.split_whitespace().next().expect("a pending host");
    d.oxh_ok(&["hdc", "allow", who]);
    let (mut h, auth) = OhosHost::connect(&addr, home.path());
    assert_eq!(auth, OhosAuth::Connected(d.ready_field("name")));
    let (out, echoes) = h.command(5, 1001, b"echo hello-$((6*7)); id -u", b"");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hello-42"), "{out} {echoes:?}");
    assert_ne!(lines.next(), Some("0"), "the shell ran as root: {out}");
    // Allowed once: the next connection is refused again.
    let (_, again) = OhosHost::connect(&addr, home.path());
    assert!(matches!(again, OhosAuth::Unauthorized(_)), "{again:?}");
    // Interactive, on a pty: input echoes, the shell's output comes back, exit ends it.
    let (out, _) = h.command(6, 2000, b"", b"echo pty-$((7*6)); exit\n");
    assert!(out.contains("pty-42"), "{out}");
    // A command we do not take yet is refused in OpenHarmony's words, and the session lives.
    // (CMD_JDWP_LIST, `hdc jpid`.)
    let (_, echoes) = h.command(7, 1008, b"", b"");
    assert!(echoes.iter().any(|e| e.contains("E002105")), "{echoes:?}");
    let (out, _) = h.command(8, 1001, b"echo still", b"");
    assert_eq!(out.trim(), "still");
}

/// A heartbeat before authentication, as hdcd answers it: channel 0 closed (`[1]`), the
/// connection kept, and the handshake still goes on.
#[test]
fn an_openharmony_heartbeat_before_authentication_closes_channel_zero() {
    let (_d, addr) = device(true);
    let mut h = OhosHost {
        tcp: TcpStream::connect(&addr).expect("connect"),
        buf: Default::default(),
        tls: None,
        encrypted: false,
        wire: Vec::new(),
        features: Vec::new(),
    };
    h.tcp
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    h.send(0, 5000, &oxh_hdc::ohos::HeartbeatMsg::default().encode());
    let p = h.next().expect("an answer");
    assert_eq!(
        (
            p.protect.channel_id,
            p.protect.command_flag,
            p.payload.to_vec()
        ),
        (0, 2, vec![1])
    );
    let (_, first) = oxh_hdc::ohos_auth::HostAuth::start(1, &addr, &["heartbeat"]);
    h.send(0, first.command, &first.payload);
    let p = h.next().expect("the handshake goes on");
    assert_eq!(
        p.protect.command_flag,
        oxh_hdc::ohos_auth::CMD_KERNEL_HANDSHAKE
    );
}

/// A release device (`const.debuggable=0`) takes no plaintext session, not even a bypassed
/// one (the bypass skips authentication, so it never gets TLS): OpenHarmony's hosts are
/// told why.
#[test]
fn a_release_device_refuses_openharmonys_plaintext_sessions() {
    let (_d, addr) = device_with(true, &["--debuggable", "false"]);
    let home = tempfile::tempdir().expect("home");
    for encrypt in [false, true] {
        match OhosHost::connect_with(&addr, home.path(), encrypt).1 {
            OhosAuth::Unauthorized(m) => {
                assert!(m.contains("only encrypted"), "{m}");
                assert!(m.contains("persist.hdc.auth_bypass"), "{m}");
            }
            other => panic!("a plaintext session got in: {other:?}"),
        }
    }
}

/// A release device (`const.debuggable=0`: `persist.hdc.encrypt_required`) and OpenHarmony's
/// host with `OHOS_HDC_ENCRYPT_CHANNEL=1`: the plaintext session is refused with how to ask
/// for encryption; the encrypted one is refused while the key is unknown (E000002), then
/// gets in over TLS-PSK, and shells and a file send run inside TLS.
#[test]
fn an_openharmony_host_with_encrypt_tcp_runs_shells_on_a_release_device() {
    let (d, addr) = device_with(false, &["--debuggable", "false"]);
    let home = tempfile::tempdir().expect("home");
    match OhosHost::connect(&addr, home.path()).1 {
        OhosAuth::Unauthorized(m) => assert!(m.contains("OHOS_HDC_ENCRYPT_CHANNEL=1"), "{m}"),
        other => panic!("a plaintext session got in: {other:?}"),
    }
    match OhosHost::connect_encrypted(&addr, home.path()).1 {
        OhosAuth::Unauthorized(m) => assert!(m.starts_with("[E000002]"), "{m}"),
        other => panic!("an unknown key got in: {other:?}"),
    }
    let pending = d.oxh_ok(&["hdc", "allow", "--list"]);
    let who = pending.split_whitespace().next().expect("a pending host");
    d.oxh_ok(&["hdc", "allow", "--always", who]);
    let (mut h, auth) = OhosHost::connect_encrypted(&addr, home.path());
    assert_eq!(auth, OhosAuth::Connected(d.ready_field("name")));
    assert!(h.encrypted, "connected without the switch to TLS");
    let (out, echoes) = h.command(5, 1001, b"echo hello-$((6*7)); id -u", b"");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hello-42"), "{out} {echoes:?}");
    assert_ne!(lines.next(), Some("0"), "the shell ran as root: {out}");

    let work = tempfile::tempdir().expect("tmp");
    let data = blob(work.path());
    let dir = shell_tmp(&d).join("tls");
    std::fs::create_dir_all(&dir).expect("dir");
    std::os::unix::fs::chown(&dir, Some(2000), Some(2000)).expect("chown");
    let echoes = h.file_send(11, &data, &dir.to_string_lossy(), false, 408 * 1024);
    assert!(
        echoes
            .iter()
            .any(|e| e.starts_with("FileTransfer finish, Size:")),
        "{echoes:?}"
    );
    assert!(std::fs::read(dir.join("blob")).expect("written") == data);
    let (out, _) = h.command(12, 1001, b"echo still", b"");
    assert_eq!(out.trim(), "still");
    assert!(
        !h.wire.windows(8).any(|w| w == b"hello-42"),
        "the shell's output crossed the wire in plaintext"
    );
}

/// Our host's entry point for OpenHarmony's devices (`host_handshake`), against our
/// release device: OpenHarmony's E000002 for a key not yet allowed, the refusal of a
/// plaintext session, then TLS-PSK and a shell command through the returned stream.
#[test]
fn our_host_handshake_gets_an_encrypted_session_and_runs_a_shell() {
    use oxh_hdc::ohos_connect::host_handshake;
    let (d, addr) = device_with(false, &["--debuggable", "false"]);
    let home = tempfile::tempdir().expect("home");
    let key = oxh_hdc::hostkey::HostKey::load_or_create(home.path()).expect("host key");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let connect = |encrypt| {
        rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            host_handshake(tcp, &key, "oxh-test-host", &addr, encrypt).await
        })
    };
    match connect(true) {
        Err(m) => assert!(m.starts_with("[E000002]"), "{m}"),
        Ok((.., info)) => panic!("an unknown key got in: {info:?}"),
    }
    match connect(false) {
        Err(m) => assert!(m.contains("OHOS_HDC_ENCRYPT_CHANNEL=1"), "{m}"),
        Ok((.., info)) => panic!("a plaintext session got in: {info:?}"),
    }
    let pending = d.oxh_ok(&["hdc", "allow", "--list"]);
    assert!(pending.contains("oxh-test-host"), "{pending}");
    let who = pending.split_whitespace().next().expect("a pending host");
    d.oxh_ok(&["hdc", "allow", "--always", who]);
    let (mut rx, mut tx, info) = connect(true).expect("the handshake");
    assert!(info.encrypted, "{info:?}");
    assert_eq!(info.name, d.ready_field("name"));
    assert!(info.features.iter().any(|f| f == "encrypt_tcp"), "{info:?}");
    assert!(rx.is_encrypted() && tx.is_encrypted());
    let pkt = |c: u32, cmd: u32, payload: &[u8]| {
        let mut v = Vec::new();
        oxh_hdc::ohos::encode_packet(&mut v, &oxh_hdc::ohos::PayloadProtect::new(c, cmd), payload);
        v
    };
    let out = rt.block_on(async {
        tx.send(&pkt(5, 1001, b"echo via-$((6*7))"))
            .await
            .expect("send");
        let mut out = Vec::new();
        loop {
            let p = tokio::time::timeout(Duration::from_secs(20), rx.next())
                .await
                .expect("the device answers in time")
                .expect("a packet")
                .expect("the session is open");
            match (p.protect.channel_id, p.protect.command_flag) {
                (5, 10) => out.extend_from_slice(&p.payload),
                (c, 2) if p.payload.first().is_some_and(|&n| n > 0) => {
                    tx.send(&pkt(c, 2, &[0])).await.expect("send");
                    if c == 5 {
                        break out;
                    }
                }
                _ => {}
            }
        }
    });
    assert_eq!(String::from_utf8_lossy(&out), "via-42\n");
}

impl OhosHost {
    /// Waits for `command` on `channel`; panics on the channel's close (with what it said).
    fn expect(&mut self, channel: u32, command: u32) -> Vec<u8> {
        let mut said = Vec::new();
        while let Some(p) = self.next() {
            if p.protect.channel_id != channel {
                continue;
            }
            match p.protect.command_flag {
                x if x == command => return p.payload.to_vec(),
                9 => said.push(String::from_utf8_lossy(&p.payload[1..]).into_owned()),
                2 => panic!("channel {channel} closed waiting for {command}: {said:?}"),
                _ => {}
            }
        }
        panic!("the device went away waiting for {command}: {said:?}");
    }

    /// `hdc file send` as OpenHarmony's host (the master) does it, in chunks of `chunk`
    /// bytes, LZ4 blocks with `lz4`; returns the device's closing messages.
    fn file_send(
        &mut self,
        c: u32,
        data: &[u8],
        remote: &str,
        lz4: bool,
        chunk: usize,
    ) -> Vec<String> {
        use oxh_hdc::ohos::{TransferConfig, TransferPayload};
        self.send(c, 12, &[]);
        let cfg = TransferConfig {
            file_size: data.len() as u64,
            path: remote.into(),
            optional_name: "blob".into(),
            compress_type: u8::from(lz4),
            ..Default::default()
        };
        self.send(c, 3001, &cfg.encode());
        self.expect(c, 3002);
        for (i, part) in data.chunks(chunk).enumerate() {
            let body = if lz4 {
                lz4_flex::block::compress(part)
            } else {
                part.to_vec()
            };
            let head = TransferPayload {
                index: (i * chunk) as u64,
                compress_type: u8::from(lz4),
                compress_size: body.len() as u32,
                uncompress_size: part.len() as u32,
            };
            let mut payload = head.encode_prefix().to_vec();
            payload.extend_from_slice(&body);
            self.send(c, 3003, &payload);
        }
        assert_eq!(self.expect(c, 3004), vec![1]);
        let (_, echoes) = self.command(c, 3004, &[0], b"");
        echoes
    }

    /// `hdc file recv` as OpenHarmony's host (the slave): returns the bytes and the name the
    /// device gave.
    fn file_recv(&mut self, c: u32, remote: &str, lz4: bool) -> (Vec<u8>, String) {
        use oxh_hdc::ohos::{TransferConfig, TransferPayload};
        let z = if lz4 { "-z " } else { "" };
        self.send(c, 3000, format!("{z}{remote} /host/dir").as_bytes());
        let cfg = TransferConfig::decode(&self.expect(c, 3001)).expect("config");
        assert_eq!(cfg.path, "/host/dir");
        self.send(c, 3002, &[1, 0, 0, 0, 0, 0, 0, 0]);
        let mut got = Vec::new();
        while (got.len() as u64) < cfg.file_size {
            let p = self.expect(c, 3003);
            let head = TransferPayload::decode_prefix(&p).expect("prefix");
            assert_eq!(head.index, got.len() as u64);
            let body = &p[64..64 + head.compress_size as usize];
            match head.compress_type {
                0 => got.extend_from_slice(body),
                1 => got.extend(
                    lz4_flex::block::decompress(body, head.uncompress_size as usize).expect("lz4"),
                ),
                t => panic!("compress type {t}"),
            }
        }
        self.send(c, 3004, &[1]);
        assert_eq!(self.expect(c, 3004), vec![0]);
        self.send(c, 2, &[1]);
        assert_eq!(self.expect(c, 2), vec![0]);
        (got, cfg.optional_name)
    }
}

/// OpenHarmony's file commands against our device, both ways, plain and LZ4, several chunks:
/// byte-identical, written as the shell user, the summary in OpenHarmony's words.
#[test]
fn an_openharmony_host_sends_and_receives_files() {
    let (d, addr) = device(true);
    let home = tempfile::tempdir().expect("home");
    let (mut h, auth) = OhosHost::connect(&addr, home.path());
    assert!(matches!(auth, OhosAuth::Connected(_)), "{auth:?}");
    let work = tempfile::tempdir().expect("tmp");
    let data = blob(work.path());
    let tmp = shell_tmp(&d);
    for (c, lz4, name) in [(11, false, "plain"), (12, true, "lz4")] {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        std::os::unix::fs::chown(&dir, Some(2000), Some(2000)).expect("chown");
        let echoes = h.file_send(c, &data, &dir.to_string_lossy(), lz4, 408 * 1024);
        assert!(
            echoes
                .iter()
                .any(|e| e.starts_with("FileTransfer finish, Size:")),
            "{echoes:?}"
        );
        let written = dir.join("blob");
        assert!(std::fs::read(&written).expect("written") == data, "{name}");
        let meta = std::fs::metadata(&written).expect("meta");
        assert_eq!(meta.uid(), 2000, "not written as the shell user");
        let (back, fname) = h.file_recv(c + 10, &written.to_string_lossy(), lz4);
        assert_eq!(fname, "blob");
        assert!(back == data, "{name}: received bytes differ");
    }
    // A path the shell user may not write is refused, in words, and the session lives on.
    let cfg = oxh_hdc::ohos::TransferConfig {
        file_size: 1,
        path: "/root".into(),
        optional_name: "x".into(),
        ..Default::default()
    };
    h.send(21, 12, &[]);
    h.send(21, 3001, &cfg.encode());
    h.expect(21, 3002);
    let head = oxh_hdc::ohos::TransferPayload {
        index: 0,
        compress_type: 0,
        compress_size: 1,
        uncompress_size: 1,
    };
    let mut payload = head.encode_prefix().to_vec();
    payload.push(b'x');
    let (_, echoes) = h.command(21, 3003, &payload, b"");
    assert!(echoes.iter().any(|e| e.starts_with("[Fail]")), "{echoes:?}");
    assert!(!Path::new("/root/x").exists());
    let (out, _) = h.command(22, 1001, b"echo alive", b"");
    assert_eq!(out.trim(), "alive");
}

/// `hdc install` and `hdc uninstall` as OpenHarmony's host sends them (APP_CHECK with the
/// package's TransferConfig, APP_DATA chunks; APP_UNINSTALL with its arguments): the bundle
/// manager's words come back in APP_FINISH, cumulative, as OpenHarmony's host prints them.
#[test]
fn an_openharmony_host_installs_and_uninstalls() {
    use oxh_hdc::ohos::{TransferConfig, TransferPayload};
    let (d, addr) = device(true);
    let work = tempfile::tempdir().expect("tmp");
    let bundle = "com.example.ohosinstall";
    let hap = std::fs::read(demo_hap(&d, work.path(), bundle)).expect("hap");
    let home = tempfile::tempdir().expect("home");
    let (mut h, auth) = OhosHost::connect(&addr, home.path());
    assert!(matches!(auth, OhosAuth::Connected(_)), "{auth:?}");
    let c = 31;
    h.send(c, 12, &[]);
    let cfg = TransferConfig {
        file_size: hap.len() as u64,
        options: "-r".into(),
        optional_name: "Ab3xYz9Qw.hap".into(),
        function_name: "install".into(),
        client_cwd: "/home/u/".into(),
        ..Default::default()
    };
    h.send(c, 3501, &cfg.encode());
    assert_eq!(h.expect(c, 3502).len(), 8);
    for (i, part) in hap.chunks(4096).enumerate() {
        let head = TransferPayload {
            index: (i * 4096) as u64,
            compress_type: 0,
            compress_size: part.len() as u32,
            uncompress_size: part.len() as u32,
        };
        let mut payload = head.encode_prefix().to_vec();
        payload.extend_from_slice(part);
        h.send(c, 3503, &payload);
    }
    let fin = h.expect(c, 3504);
    assert_eq!(fin[0], 1, "mode install");
    let said = String::from_utf8_lossy(&fin[2..]).into_owned();
    assert!(said.contains("install bundle successfully"), "{said}");
    assert!(!said.contains('\n'), "{said:?}");
    h.send(c, 2, &[1]);
    assert_eq!(h.expect(c, 2), vec![0]);
    assert!(d.oxh_ok(&["bm", "dump", "-a"]).contains(bundle));
    // A broken package: the bundle manager's refusal, in APP_FINISH.
    h.send(32, 12, &[]);
    let junk = TransferConfig {
        file_size: 9,
        optional_name: "junk0junk.hap".into(),
        function_name: "install".into(),
        ..Default::default()
    };
    h.send(32, 3501, &junk.encode());
    h.expect(32, 3502);
    let head = TransferPayload {
        index: 0,
        compress_type: 0,
        compress_size: 9,
        uncompress_size: 9,
    };
    let mut payload = head.encode_prefix().to_vec();
    payload.extend_from_slice(b"not a zip");
    h.send(32, 3503, &payload);
    let fin = h.expect(32, 3504);
    let said = String::from_utf8_lossy(&fin[2..]).into_owned();
    assert!(said.contains("failed to install bundle"), "{said}");
    h.send(32, 2, &[1]);
    h.expect(32, 2);
    // Uninstall, as hdc-rs and OpenHarmony's host write it.
    h.send(33, 12, &[]);
    h.send(33, 3505, format!("-n {bundle}\0").as_bytes());
    let fin = h.expect(33, 3504);
    assert_eq!(fin[0], 2, "mode uninstall");
    let said = String::from_utf8_lossy(&fin[2..]).into_owned();
    assert!(said.contains("uninstall bundle successfully"), "{said}");
    h.send(33, 2, &[1]);
    h.expect(33, 2);
    assert!(!d.oxh_ok(&["bm", "dump", "-a"]).contains(bundle));
}

/// Our host server and `hdc` against a device that speaks only OpenHarmony's wire (as
/// OpenHarmony's hdcd: our TLS hello is dropped unanswered): the server falls back to
/// OpenHarmony's session protocol with its RSA host key, is refused with OpenHarmony's
/// E000002 until the device's owner allows the key, then runs shells, sends and receives
/// files (with and without compression, byte-identical), installs and uninstalls.
#[test]
fn our_host_drives_a_device_that_speaks_only_openharmonys_wire() {
    let (d, addr) = device(false);
    d.oxh_ok(&["param", "set", "persist.hdc.ohos_only", "1"]);
    let h = Host::new();
    let e = h.err(&["tconn", &addr]);
    assert!(e.contains("[E000002]"), "{e}");
    let pending = d.oxh_ok(&["hdc", "allow", "--list"]);
    let who = pending.split_whitespace().next().expect("a pending host");
    d.oxh_ok(&["hdc", "allow", "--always", who]);
    let out = h.ok(&["tconn", &addr]);
    assert!(out.contains("Connect OK"), "{out}");
    assert!(h.ok(&["list", "targets"]).contains(&addr));
    assert_eq!(h.ok(&["shell", "echo hi-$((6*7))"]).trim(), "hi-42");
    // Nothing was pinned as an oxharmony device: the device showed no oxharmony key.
    let known = std::fs::read_to_string(h.home.path().join(".harmony/hdc_known_devices"))
        .unwrap_or_default();
    assert!(!known.contains(&addr), "{known}");

    let work = tempfile::tempdir().expect("tmp");
    let data = blob(work.path());
    let local = work.path().join("blob");
    let tmp = shell_tmp(&d);
    let s = |p: &Path| p.to_string_lossy().into_owned();
    for (z, name) in [(false, "plain"), (true, "lz4")] {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        std::os::unix::fs::chown(&dir, Some(2000), Some(2000)).expect("chown");
        let mut send = vec!["file", "send"];
        if z {
            send.push("-z");
        }
        let (l, r) = (s(&local), s(&dir));
        send.extend([l.as_str(), r.as_str()]);
        h.ok(&send);
        let written = dir.join("blob");
        assert!(
            std::fs::read(&written).expect("written") == data,
            "{name}: sent bytes differ"
        );
        let back = work.path().join(format!("back-{name}"));
        let mut recv = vec!["file", "recv"];
        if z {
            recv.push("-z");
        }
        let (w, b) = (s(&written), s(&back));
        recv.extend([w.as_str(), b.as_str()]);
        h.ok(&recv);
        assert!(
            std::fs::read(&back).expect("received") == data,
            "{name}: received bytes differ"
        );
    }
    // A path the shell user may not write: the device's refusal, and a failure.
    let e = h.err(&["file", "send", &s(&local), "/root/"]);
    assert!(e.contains("[Fail]"), "{e}");
    assert!(!Path::new("/root/blob").exists());

    let bundle = "com.example.ohoswire";
    let hap = demo_hap(&d, work.path(), bundle);
    let out = h.ok(&["install", &s(&hap)]);
    assert!(out.contains("install bundle successfully"), "{out}");
    assert!(d.oxh_ok(&["bm", "dump", "-a"]).contains(bundle));
    let out = h.ok(&["uninstall", bundle]);
    assert!(out.contains("uninstall bundle successfully"), "{out}");
    assert!(!d.oxh_ok(&["bm", "dump", "-a"]).contains(bundle));
    // A directory goes as OpenHarmony's host sends it, one tar; the device unpacks and
    // installs what is in it (a dotfile is left out, as hdc does).
    let pkgs = work.path().join("pkgs");
    std::fs::create_dir_all(&pkgs).expect("pkgs");
    std::fs::copy(&hap, pkgs.join("app.hap")).expect("copy");
    std::fs::write(pkgs.join(".notes"), b"not a package").expect("dotfile");
    let out = h.ok(&["install", &s(&pkgs)]);
    assert!(out.contains("install bundle successfully"), "{out}");
    assert!(d.oxh_ok(&["bm", "dump", "-a"]).contains(bundle));
    h.ok(&["uninstall", bundle]);
    assert_eq!(h.ok(&["shell", "echo still"]).trim(), "still");
}

/// `fport` and `rport` from our host server to a device on OpenHarmony's wire only: each
/// forwarded connection is a forward context (CHECK, ACTIVE_SLAVE / ACTIVE_MASTER, DATA,
/// FREE_CONTEXT), 20 at once each way, and removing the rules stops the listeners.
#[test]
fn fport_and_rport_to_a_device_on_openharmonys_wire() {
    let (d, addr) = device(true);
    d.oxh_ok(&["param", "set", "persist.hdc.ohos_only", "1"]);
    let h = Host::new();
    assert!(h.ok(&["tconn", &addr]).contains("Connect OK"));
    let (dev_port, _t1) = echo_server();
    let local = free_port();
    let out = h.ok(&["fport", &format!("tcp:{local}"), &format!("tcp:{dev_port}")]);
    assert!(out.contains("Forwardport result:OK"), "{out}");
    let threads: Vec<_> = (0..20)
        .map(|i| std::thread::spawn(move || echo_through(local, i)))
        .collect();
    for t in threads {
        t.join().expect("thread").expect("echo through fport");
    }
    let (host_port, _t2) = echo_server();
    let dport = free_port();
    let out = h.ok(&[
        "rport",
        &format!("tcp:{dport}"),
        &format!("tcp:{host_port}"),
    ]);
    assert!(out.contains("Forwardport result:OK"), "{out}");
    let threads: Vec<_> = (0..20)
        .map(|i| std::thread::spawn(move || echo_through(dport, i)))
        .collect();
    for t in threads {
        t.join().expect("thread").expect("echo through rport");
    }
    remove_forwards_and_wait(&h, &[(local, dev_port), (dport, host_port)]);
    assert_eq!(h.ok(&["shell", "echo still"]).trim(), "still");
}

/// Throughput of OpenHarmony's `file send` into our device, plaintext and TLS-PSK, 256 MiB
/// each (`OXH_OHOS_SEND_MB`), printed as MiB/s; the bytes must arrive whole. A measurement,
/// not a timed assertion: run it optimised, alone
/// (`cargo test --release --test integration openharmony_file_send_figures -- --ignored --nocapture`).
#[test]
#[ignore]
fn openharmony_file_send_figures() {
    let mb: usize = std::env::var("OXH_OHOS_SEND_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (d, addr) = device(false);
    let home = tempfile::tempdir().expect("home");
    let _ = OhosHost::connect(&addr, home.path());
    let pending = d.oxh_ok(&["hdc", "allow", "--list"]);
    let who = pending.split_whitespace().next().expect("a pending host");
    d.oxh_ok(&["hdc", "allow", "--always", who]);
    let data: Vec<u8> = (0..mb * 1024 * 1024)
        .map(|i| ((i as u32).wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for encrypt in [false, true] {
        let (mut h, auth) = OhosHost::connect_with(&addr, home.path(), encrypt);
        assert!(matches!(auth, OhosAuth::Connected(_)), "{auth:?}");
        assert_eq!(h.encrypted, encrypt);
        let dir = shell_tmp(&d).join(if encrypt { "tls" } else { "plain" });
        std::fs::create_dir_all(&dir).expect("dir");
        std::os::unix::fs::chown(&dir, Some(2000), Some(2000)).expect("chown");
        let t = Instant::now();
        let echoes = h.file_send(11, &data, &dir.to_string_lossy(), false, 511 * 1024 - 64);
        let secs = t.elapsed().as_secs_f64();
        assert!(
            echoes.iter().any(|e| e.starts_with("FileTransfer finish")),
            "{echoes:?}"
        );
        let len = std::fs::metadata(dir.join("blob")).expect("written").len();
        assert_eq!(len, data.len() as u64);
        println!(
            "OpenHarmony file send of {mb} MiB, {}: {secs:.2} s, {:.0} MiB/s",
            if encrypt { "TLS-PSK" } else { "plaintext" },
            mb as f64 / secs
        );
    }
}

/// A release device on OpenHarmony's wire only takes encrypted sessions: our host server
/// gets in (it always asks for OpenHarmony's TLS-PSK channel) and runs a shell.
#[test]
fn our_host_reaches_a_release_device_on_openharmonys_wire_encrypted() {
    let (d, addr) = device_with(false, &["--debuggable", "false"]);
    d.oxh_ok(&["param", "set", "persist.hdc.ohos_only", "1"]);
    let h = Host::new();
    let e = h.err(&["tconn", &addr]);
    assert!(e.contains("[E000002]"), "{e}");
    let pending = d.oxh_ok(&["hdc", "allow", "--list"]);
    let who = pending.split_whitespace().next().expect("a pending host");
    d.oxh_ok(&["hdc", "allow", who]);
    assert!(h.ok(&["tconn", &addr]).contains("Connect OK"));
    assert_eq!(h.ok(&["shell", "echo sealed-$((6*7))"]).trim(), "sealed-42");
}

/// A context's payload: its id (big-endian), then `rest`.
fn fwd_payload(id: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(rest);
    p
}

/// CHECK's and ACTIVE_SLAVE's payload, from the definitions: id, 8 zero bytes, node, NUL.
fn fwd_point(id: u32, node: &str) -> Vec<u8> {
    let mut p = fwd_payload(id, &[0; 8]);
    p.extend_from_slice(node.as_bytes());
    p.push(0);
    p
}

/// `hdc fport tcp:L tcp:R` as OpenHarmony's host drives it (the host listens, so the test
/// is the host and its connections are contexts): CHECK answered, each ACTIVE_SLAVE a
/// connection to tcp:R on the device, bytes both ways; a port nobody listens on frees the
/// context; a node type the device does not serve gets hdcd's words.
#[test]
fn an_openharmony_host_forwards_a_port_to_the_device() {
    let (_d, addr) = device(true);
    let home = tempfile::tempdir().expect("home");
    let (mut h, auth) = OhosHost::connect(&addr, home.path());
    assert!(matches!(auth, OhosAuth::Connected(_)), "{auth:?}");
    // This host listed heartbeats, and so does the device: its first comes at once.
    assert!(
        h.features.iter().any(|f| f == "heartbeat"),
        "{:?}",
        h.features
    );
    // (Channel 0 also has AUTH_OK's CHANNEL_CLOSE.)
    let beat = loop {
        let p = h.next().expect("the device went away before its heartbeat");
        if (p.protect.channel_id, p.protect.command_flag) == (0, 5000) {
            break p.payload;
        }
    };
    let beat = oxh_hdc::ohos::HeartbeatMsg::decode(&beat).expect("HeartbeatMsg");
    assert_eq!((beat.heartbeat_count, beat.reserved.as_str()), (0, ""));
    // Heartbeats from the host are taken, and change nothing.
    let ours = oxh_hdc::ohos::HeartbeatMsg::default().encode();
    h.send(0, 5000, &ours);
    let (echo, _server) = echo_server();
    let (c, id0) = (41, 0x1122_3344);
    let node = format!("tcp:{echo}");
    h.send(c, 12, &[]);
    h.send(c, 2501, &fwd_point(id0, &node));
    assert_eq!(h.expect(c, 2502), fwd_payload(id0, &[0]));
    // Two connections at once, each its own context.
    let (a, b) = (0xa0a0_0001u32, 0xb0b0_0002u32);
    for id in [a, b] {
        h.send(c, 2503, &fwd_point(id, &node));
        assert_eq!(h.expect(c, 2504), id.to_be_bytes());
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for part in big.chunks(100_000) {
        h.send(c, 2505, &fwd_payload(a, part));
    }
    h.send(c, 2505, &fwd_payload(b, b"hello b"));
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() < big.len() || got_b.len() < 7 {
        let p = h.expect(c, 2505);
        let (id, data) = p.split_at(4);
        match u32::from_be_bytes(id.try_into().expect("id")) {
            x if x == a => got_a.extend_from_slice(data),
            x if x == b => got_b.extend_from_slice(data),
            other => panic!("data for an unknown context {other:x}"),
        }
    }
    assert!(got_a == big, "context a's bytes differ");
    assert_eq!(got_b, b"hello b");
    // The host frees one; the other still works.
    h.send(c, 2506, &a.to_be_bytes());
    h.send(c, 2505, &fwd_payload(b, b"again"));
    assert_eq!(h.expect(c, 2505), fwd_payload(b, b"again"));
    // Nobody listens there: the context is freed.
    let closed = free_port();
    h.send(c, 2503, &fwd_point(7, &format!("tcp:{closed}")));
    loop {
        let p = h.expect(c, 2506);
        if p == 7u32.to_be_bytes() {
            break;
        }
    }
    // Removing the rule (hdc's `fport rm`): CHANNEL_CLOSE [0], not answered.
    h.send(c, 2, &[0]);
    // A node type this device does not serve.
    h.send(42, 12, &[]);
    let (_, echoes) = h.command(42, 2501, &fwd_point(9, "localabstract:x"), b"");
    assert_eq!(echoes, ["[Fail]Forward parament failed"]);
    // The session lives on.
    let (out, _) = h.command(43, 1001, b"echo alive", b"");
    assert_eq!(out.trim(), "alive");
}

/// `hdc rport tcp:R tcp:L` as OpenHarmony's host drives it: INIT, the device's WAKEUP and
/// CHECK, its "Forwardport result:OK" and SUCCESS; then a connection to tcp:R on the device
/// is a context the host activates, bytes both ways, its end a FREE_CONTEXT; the rule's
/// removal stops the listener; a port in use gets hdcd's words.
#[test]
fn an_openharmony_host_forwards_a_device_port_back() {
    let (_d, addr) = device(true);
    let home = tempfile::tempdir().expect("home");
    let (mut h, auth) = OhosHost::connect(&addr, home.path());
    assert!(matches!(auth, OhosAuth::Connected(_)), "{auth:?}");
    let r = free_port();
    let rule = format!("tcp:{r} tcp:9999");
    let c = 51;
    h.send(c, 2500, format!("{rule}\0").as_bytes());
    h.expect(c, 12);
    let check = h.expect(c, 2501);
    assert_eq!(&check[4..], fwd_point(0, "tcp:9999")[4..].to_vec());
    let id0 = u32::from_be_bytes(check[..4].try_into().expect("id"));
    h.send(c, 2502, &fwd_payload(id0, &[0]));
    let ok = h.expect(c, 9);
    assert_eq!(ok, b"\x02Forwardport result:OK");
    assert_eq!(h.expect(c, 2509), format!("0|{rule}\0").into_bytes());
    // A program on the device connects to tcp:R.
    let mut app = TcpStream::connect(("127.0.0.1", r)).expect("connect to the rport");
    app.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    app.write_all(b"ping").expect("write");
    let slave = h.expect(c, 2503);
    assert_eq!(&slave[4..], fwd_point(0, "tcp:9999")[4..].to_vec());
    let id = u32::from_be_bytes(slave[..4].try_into().expect("id"));
    assert_ne!(id, id0);
    h.send(c, 2504, &id.to_be_bytes());
    let mut got = Vec::new();
    while got.len() < 4 {
        let p = h.expect(c, 2505);
        assert_eq!(p[..4], id.to_be_bytes());
        got.extend_from_slice(&p[4..]);
    }
    assert_eq!(got, b"ping");
    h.send(c, 2505, &fwd_payload(id, b"pong"));
    let mut back = [0u8; 4];
    app.read_exact(&mut back).expect("read");
    assert_eq!(&back, b"pong");
    drop(app);
    assert_eq!(h.expect(c, 2506), id.to_be_bytes());
    // `rport rm`: the device stops listening.
    h.send(c, 2, &[0]);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", r)).is_ok() {
        assert!(t0.elapsed() < Duration::from_secs(10), "still listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A port in use.
    let held = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let busy = held.local_addr().expect("addr").port();
    let (_, echoes) = h.command(52, 2500, format!("tcp:{busy} tcp:1\0").as_bytes(), b"");
    assert_eq!(echoes, [format!("[Fail]TCP Port listen failed at {busy}")]);
}

/// `hdc shell -b BUNDLE CMD` (CMD_UNITY_EXECUTE_EX, a binary TLV): the command runs in the
/// bundle's directory; a bundle that is not there gets hdcd's E003001.
#[test]
fn an_openharmony_host_runs_a_shell_in_a_bundle() {
    use oxh_hdc::ohos::{shell_tag, tlv_buf};
    let (d, addr) = device(true);
    let bundle = "com.example.shellb";
    let dir = d.data_dir().join("app/el1/bundle/public").join(bundle);
    std::fs::create_dir_all(&dir).expect("bundle dir");
    for p in [d.data_dir().to_path_buf(), dir.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let home = tempfile::tempdir().expect("home");
    let (mut h, auth) = OhosHost::connect(&addr, home.path());
    assert!(matches!(auth, OhosAuth::Connected(_)), "{auth:?}");
    let tlv = tlv_buf(&[
        (shell_tag::CMD, b"pwd".as_slice()),
        (shell_tag::BUNDLE, bundle.as_bytes()),
    ]);
    let (out, echoes) = h.command(61, 1200, &tlv, b"");
    assert_eq!(out.trim(), dir.to_string_lossy(), "{echoes:?}");
    let missing = tlv_buf(&[
        (shell_tag::CMD, b"pwd".as_slice()),
        (shell_tag::BUNDLE, b"com.example.missing".as_slice()),
    ]);
    let (out, echoes) = h.command(62, 1200, &missing, b"");
    assert_eq!(out, "");
    assert_eq!(
        echoes,
        ["[Fail][E003001] Invalid bundle name: com.example.missing"]
    );
}

/// OpenHarmony's LAN discovery: the probe "OHOS HDC" to the device's UDP port is answered
/// "OHOS HDC-<its hdc port>" at the prober's address on that same port, as hdcd does;
/// another device's answer is not answered.
#[test]
fn an_openharmony_host_discovers_the_device_by_udp() {
    // The prober on 127.0.0.2, the device on 127.0.0.1: both on one port, as on a LAN.
    let probe = std::net::UdpSocket::bind("127.0.0.2:0").expect("udp");
    let port = probe.local_addr().expect("addr").port();
    probe
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let (mut d, _) = device_with(true, &["--hdc-listen", "127.0.0.1"]);
    d.oxh_ok(&[
        "param",
        "set",
        "persist.hdc.discovery_port",
        &port.to_string(),
    ]);
    d.stop();
    d.restart();
    let hdc = d.ready_field("hdc");
    let tcp_port = hdc.rsplit(':').next().expect("port");
    probe
        .send_to(b"OHOS HDC-1234", ("127.0.0.1", port))
        .expect("send");
    probe
        .send_to(b"OHOS HDC", ("127.0.0.1", port))
        .expect("send");
    let mut b = [0u8; 64];
    let (n, from) = probe.recv_from(&mut b).expect("an answer");
    assert_eq!(&b[..n], format!("OHOS HDC-{tcp_port}").as_bytes());
    assert_eq!(from.port(), port);
}

/// Our `hdc shell -b BUNDLE CMD`, to our own device and to one on OpenHarmony's wire only
/// (CMD_UNITY_EXECUTE_EX): the command runs in the bundle's directory; a missing bundle and a
/// name OpenHarmony's host refuses get OpenHarmony's E003001.
#[test]
fn our_shell_b_runs_in_the_bundles_directory_on_both_wires() {
    for ohos_only in [false, true] {
        let (d, addr) = device(true);
        if ohos_only {
            d.oxh_ok(&["param", "set", "persist.hdc.ohos_only", "1"]);
        }
        let bundle = "com.example.shellb";
        let dir = d.data_dir().join("app/el1/bundle/public").join(bundle);
        std::fs::create_dir_all(&dir).expect("bundle dir");
        for p in [d.data_dir().to_path_buf(), dir.clone()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let h = Host::new();
        assert!(h.ok(&["tconn", &addr]).contains("Connect OK"));
        let out = h.ok(&["shell", "-b", bundle, "pwd"]);
        assert_eq!(out.trim(), dir.to_string_lossy(), "ohos_only={ohos_only}");
        let e = h.err(&["shell", "-b", "com.example.missing", "pwd"]);
        assert!(
            e.contains("[E003001] Invalid bundle name: com.example.missing"),
            "ohos_only={ohos_only}: {e}"
        );
        let e = h.err(&["shell", "-b", "../etc", "pwd"]);
        assert!(e.contains("E003001"), "{e}");
    }
}

/// A reverse forward's listener is the daemon's, but the host acts as the shell user: a
/// privileged device port is refused, as it would be for hdcd's shell user.
#[test]
fn rport_refuses_a_privileged_device_port_to_the_shell_user() {
    let (h, _d, _addr) = connected();
    let e = h.err(&["rport", "tcp:80", &format!("tcp:{}", free_port())]);
    assert!(e.contains("TCP Port listen failed at 80"), "{e}");
}
