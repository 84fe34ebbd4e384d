//! Apps run: the notes example (a native Rust HAP) installed on a real daemon, started with
//! `aa` into its sandbox, its lifecycle read back from hilog, and the sandbox checked from
//! outside through /proc.

use crate::common::{Oxh, TestDevice};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) const NOTES: &str = "com.example.notes";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Builds an example's library with the cargo that runs the tests, in the same profile.
pub(crate) fn example_lib(package: &str, lib: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-q", "-p", package]);
    if release {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("cargo runs");
    assert!(st.success(), "building {package} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let p = target
        .join(if release { "release" } else { "debug" })
        .join(format!("lib{lib}.so"));
    assert!(p.is_file(), "{} was not built", p.display());
    p
}

/// Packs, signs and installs the notes example on `dev`.
pub(crate) fn install_notes(dev: &dyn Oxh, work: &Path) {
    let lib = example_lib("oxh-example-notes", "notes");
    install(
        dev,
        work,
        NOTES,
        "examples/notes/hap/module.json5",
        &lib,
        "libnotes.so",
    );
}

pub(crate) const COUNTER: &str = "com.example.counter";

/// Packs, signs and installs the counter example on `dev`.
pub(crate) fn install_counter(dev: &dyn Oxh, work: &Path) {
    let lib = example_lib("oxh-example-counter", "counter");
    install(
        dev,
        work,
        COUNTER,
        "examples/counter/hap/module.json5",
        &lib,
        "libcounter.so",
    );
}

/// The counter service's lines in hilog, in order.
pub(crate) fn counter_log(dev: &dyn Oxh) -> Vec<String> {
    dev.run_ok(&["hilog", "-x", "-T", "Counter"])
        .lines()
        .filter_map(|l| l.split_once("Counter: ").map(|(_, m)| m.trim().to_string()))
        .collect()
}

/// Packs `module` (a module.json5 under the repo) with `lib` as `libs/<abi>/<name>`, signs
/// it with a fresh dev key and installs it on `dev`.
fn install(dev: &dyn Oxh, work: &Path, bundle: &str, module: &str, lib: &Path, name: &str) {
    install_signed(dev, work, bundle, module, lib, name, true);
}

/// [`install`], with or without code signatures (`oxh hap sign --sign-code`).
fn install_signed(
    dev: &dyn Oxh,
    work: &Path,
    bundle: &str,
    module: &str,
    lib: &Path,
    name: &str,
    sign_code: bool,
) {
    let src = work.join(bundle);
    let abi = oxh_ability::abi::abi_dir();
    std::fs::create_dir_all(src.join("libs").join(abi)).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(module),
        src.join("module.json5"),
    )
    .unwrap();
    std::fs::copy(lib, src.join("libs").join(abi).join(name)).unwrap();
    let keys = work.join(format!("{bundle}.keys"));
    dev.run_ok(&["hap", "keygen", "--bundle", bundle, "--out", s(&keys)]);
    let unsigned = work.join(format!("{bundle}.unsigned.hap"));
    let hap = work.join(format!("{bundle}.hap"));
    dev.run_ok(&["hap", "pack", s(&src), "-o", s(&unsigned)]);
    let k = |n: &str| keys.join(n).to_string_lossy().into_owned();
    dev.run_ok(&[
        "hap",
        "sign",
        s(&unsigned),
        "--key",
        &k("dev.key"),
        "--cert",
        &k("dev.pem"),
        "--profile",
        &k("dev.p7b"),
        "--sign-code",
        if sign_code { "1" } else { "0" },
        "-o",
        s(&hap),
    ]);
    dev.run_ok(&["hap", "trust", "add", &k("root.pem")]);
    let out = dev.run_ok(&["bm", "install", "-p", s(&hap)]);
    assert_eq!(out.trim(), "install bundle successfully.");
}

/// As root: a device with the notes example installed (and the dir its package was built
/// in); else the test skips.
fn notes_device() -> Option<(TestDevice, tempfile::TempDir)> {
    if !oxh_testkit::require_root("ability", "to sandbox app processes") {
        return None;
    }
    let dev = TestDevice::start();
    let work = tempfile::tempdir().unwrap();
    install_notes(&dev, work.path());
    Some((dev, work))
}

/// `aa ARGS` on the device (its output: aa always exits 0).
pub(crate) fn aa(dev: &dyn Oxh, args: &[&str]) -> String {
    let mut a = vec!["aa"];
    a.extend_from_slice(args);
    dev.run_ok(&a)
}

/// The app's lifecycle lines in hilog, in order ("EntryAbility onCreate StartAbility", ...).
pub(crate) fn lifecycle(dev: &dyn Oxh) -> Vec<String> {
    let out = dev.run_ok(&["hilog", "-x", "-T", "Notes"]);
    out.lines()
        .filter_map(|l| l.split_once("Notes: ").map(|(_, m)| m.trim().to_string()))
        .collect()
}

/// `read` until `done` holds of it, for at most 20 s (apps log asynchronously).
pub(crate) fn read_until<T>(read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    read_within(Duration::from_secs(20), read, done)
}

/// `read` until `done` holds of it, for at most `bound`; the last value read either way.
pub(crate) fn read_within<T>(
    bound: Duration,
    read: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let end = Instant::now() + bound;
    loop {
        let v = read();
        if done(&v) || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until the lifecycle log has `n` lines or more.
fn lifecycle_at_least(dev: &TestDevice, n: usize) -> Vec<String> {
    read_until(|| lifecycle(dev), |l| l.len() >= n)
}

/// Waits (at most 10 s) for process `pid` to end, on its pidfd; whether it did.
fn wait_gone(pid: u32) -> bool {
    // SAFETY: pidfd_open(2) returns a new descriptor or fails; poll(2) on one pollfd.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as libc::c_int;
        if fd < 0 {
            return true; // already gone (and reaped)
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let n = libc::poll(&mut p, 1, 10_000);
        libc::close(fd);
        n == 1
    }
}

/// The pid of the app process of `bundle` (from `aa dump -a`).
fn app_pid(dev: &TestDevice) -> Option<u32> {
    let d = aa(dev, &["dump", "-a"]);
    d.lines()
        .find_map(|l| l.trim().strip_prefix("pid #"))
        .and_then(|p| p.parse().ok())
}

#[test]
fn an_installed_native_app_starts_in_its_sandbox_and_runs_its_lifecycle() {
    let Some((dev, _work)) = notes_device() else {
        return;
    };

    // Without -a: the bundle's main ability (mainElement).
    let out = aa(&dev, &["start", "-b", NOTES, "-W"]);
    assert!(out.contains("StartMode: Cold"), "{out}");
    assert!(out.contains("BundleName: com.example.notes"), "{out}");
    assert!(out.contains("AbilityName: EntryAbility"), "{out}");
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    assert_eq!(
        lifecycle_at_least(&dev, 2),
        [
            "EntryAbility onCreate StartAbility",
            "EntryAbility onForeground"
        ]
    );

    // The process, seen from outside: its bundle's uid, no capabilities, no_new_privs,
    // seccomp filtering, its own mount namespace, named by its bundle.
    let pid = app_pid(&dev).expect("the app's pid in the dump");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let uid: u32 = field("Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (20_010_000..20_065_536).contains(&uid),
        "uid {uid}: userId 100 * 200000 + bundleId"
    );
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");
    assert_eq!(
        field("Name"),
        "m.example.notes",
        "the last 15 bytes of the bundle name"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"com.example.notes\0"),
        "argv[0] is the bundle name"
    );
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(ours, theirs, "its own mount namespace");
    let root: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(root.contains(&"data".to_string()), "{root:?}");
    assert!(
        !root.contains(&"root".to_string()) && !root.contains(&"home".to_string()),
        "{root:?}"
    );
    assert!(
        Path::new(&format!("/proc/{pid}/root/data/storage/el1/bundle/libs")).is_dir(),
        "its code is at /data/storage/el1/bundle"
    );
    assert!(!Path::new(&format!("/proc/{pid}/root/etc/shadow")).exists());

    // Started again: a singleton gets onNewWant, hot.
    let out = aa(
        &dev,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--ps",
            "note",
            "hello",
            "-W",
        ],
    );
    assert!(out.contains("StartMode: Hot"), "{out}");
    assert_eq!(
        lifecycle_at_least(&dev, 3)[2],
        "EntryAbility onNewWant hello"
    );

    // Missions.
    let d = aa(&dev, &["dump", "-l"]);
    assert!(
        d.contains("Mission ID #") && d.contains("main name [EntryAbility]"),
        "{d}"
    );
    assert!(d.contains("state #FOREGROUND"), "{d}");

    // Force-stop: the process is gone, no callbacks, missions empty.
    let out = aa(&dev, &["force-stop", NOTES]);
    assert_eq!(out, "force stop process successfully.\n");
    assert!(wait_gone(pid), "the app process is gone");
    let d = aa(&dev, &["dump", "-l"]);
    assert!(!d.contains("Mission ID #"), "{d}");
}

#[test]
fn aa_errors_are_openharmonys_blocks() {
    let dev = TestDevice::start();
    let out = aa(
        &dev,
        &["start", "-b", "com.example.none", "-a", "EntryAbility"],
    );
    assert!(out.starts_with("error: failed to start ability.\nError Code:10104001  Error Message:The specified ability does not exist\n"), "{out}");
    let out = aa(&dev, &["start", "-A", "ohos.want.action.nothing"]);
    assert!(out.contains("Error Code:10103101"), "{out}");
    let out = aa(&dev, &["start", "-a", "X"]);
    assert!(
        out.starts_with("error: -b <bundle-name> is expected\nusage: aa start <options>"),
        "{out}"
    );
    let out = aa(&dev, &["force-stop", "com.example.none"]);
    assert!(
        out.starts_with("error: failed to force stop process.\nError Code:10104002"),
        "{out}"
    );
    let out = aa(&dev, &["frobnicate"]);
    assert!(
        out.starts_with("aa: 'frobnicate' is not a valid aa command. See 'aa help'."),
        "{out}"
    );
}

#[test]
fn crashes_hangs_launch_types_and_visibility() {
    let Some((dev, _work)) = notes_device() else {
        return;
    };

    // multiton: a new instance (and mission) per start, in the one process.
    for _ in 0..2 {
        let out = aa(&dev, &["start", "-b", NOTES, "-a", "NoteAbility", "-W"]);
        assert!(out.ends_with("start ability successfully.\n"), "{out}");
    }
    let d = aa(&dev, &["dump", "-l"]);
    assert_eq!(d.matches("main name [NoteAbility]").count(), 2, "{d}");
    let l = lifecycle_at_least(&dev, 5);
    assert_eq!(
        l,
        [
            "NoteAbility onCreate StartAbility",
            "NoteAbility onForeground",
            "NoteAbility onCreate StartAbility",
            "NoteAbility onForeground",
            "NoteAbility onBackground",
        ]
    );

    // Implicit start through the skills: action + uri.
    let out = aa(
        &dev,
        &[
            "start",
            "-A",
            "ohos.want.action.viewData",
            "-U",
            "notes://example.com/note/7",
        ],
    );
    assert_eq!(out, "start ability successfully.\n");
    let out = aa(
        &dev,
        &[
            "start",
            "-A",
            "ohos.want.action.viewData",
            "-U",
            "other://example.com/x",
        ],
    );
    assert!(out.contains("Error Code:10103101"), "{out}");

    // Not exported: the shell may not start it.
    let out = aa(&dev, &["start", "-b", NOTES, "-a", "HiddenAbility"]);
    assert!(out.contains("Error Code:10103001"), "{out}");

    // A crash in onForeground: reaped, its missions end, a fault record in hilog.
    aa(&dev, &["force-stop", NOTES]);
    let out = aa(
        &dev,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--pb",
            "crash",
            "true",
            "-W",
        ],
    );
    assert!(out.contains("error: failed to start ability."), "{out}");
    let faults = dev.oxh_ok(&["hilog", "-x", "-T", "AppFault"]);
    assert!(
        faults.contains("com.example.notes") && faults.contains("signal 6"),
        "{faults}"
    );
    assert!(faults.contains("EntryAbility"), "{faults}");
    assert!(!aa(&dev, &["dump", "-l"]).contains("Mission ID #"));

    // A hang in onForeground: killed at the 5 s deadline, the caller told.
    let out = aa(
        &dev,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--pb",
            "hang",
            "true",
            "-W",
        ],
    );
    assert!(
        out.contains("error: failed to start ability.") && out.contains("10108101"),
        "{out}"
    );
    assert!(
        out.contains("Error detail: ")
            && out.contains("did not finish onForeground within 5000 ms"),
        "the cause is said: {out}"
    );
    assert!(!aa(&dev, &["dump", "-l"]).contains("Mission ID #"));
}

#[test]
fn apps_die_with_the_daemon() {
    let Some((mut dev, _work)) = notes_device() else {
        return;
    };
    aa(&dev, &["start", "-b", NOTES, "-W"]);
    let pid = app_pid(&dev).expect("running");
    dev.kill9();
    assert!(wait_gone(pid), "the app outlived oxhd");
    // A new daemon starts clean: no missions, and the app starts cold again.
    dev.restart();
    assert!(!aa(&dev, &["dump", "-l"]).contains("Mission ID #"));
    let out = aa(&dev, &["start", "-b", NOTES, "-W"]);
    assert!(out.contains("StartMode: Cold"), "{out}");
}

/// Builds the NDK library beside the daemon (where it looks for it) and returns its headers.
fn ndk_include() -> PathBuf {
    example_lib("oxh-ndk", "oxh_ndk");
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ndk/include")
}

#[test]
fn a_c_app_built_against_the_ndk_headers_runs_and_logs_through_oh_log_print() {
    if !oxh_testkit::require_root("ability", "to sandbox app processes") {
        return;
    }
    let include = ndk_include();
    let work = tempfile::tempdir().unwrap();
    let lib = work.path().join("libhello.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = std::process::Command::new(&cc)
        .args(["-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&lib)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-c/hello.c"))
        .status()
        .expect("a C compiler");
    assert!(
        st.success(),
        "hello.c does not compile against the NDK headers"
    );
    let dev = TestDevice::start();
    install(
        &dev,
        work.path(),
        "com.example.helloc",
        "examples/hello-c/hap/module.json5",
        &lib,
        "libhello.so",
    );
    let out = aa(
        &dev,
        &[
            "start",
            "-b",
            "com.example.helloc",
            "-a",
            "MainAbility",
            "-W",
        ],
    );
    assert!(
        out.contains("StartMode: Cold") && out.ends_with("start ability successfully.\n"),
        "{out}"
    );
    let log = read_until(
        || dev.oxh_ok(&["hilog", "-x", "-T", "HelloC"]),
        |l| l.contains("onForeground"),
    );
    assert!(
        log.contains("A00002/HelloC: MainAbility onCreate reason=1 want=ours"),
        "{log}"
    );
    // %{public}d printed, %{private}s masked (privacy is on by default).
    assert!(
        log.contains("MainAbility onForeground 1 secret=<private>"),
        "{log}"
    );
}

#[test]
fn inside_the_sandbox_an_app_cannot_reach_others_or_regain_root() {
    let Some((dev, _work)) = notes_device() else {
        return;
    };
    let out = aa(&dev, &["start", "-b", NOTES, "--pb", "probe", "true", "-W"]);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    let log = lifecycle_at_least(&dev, 12);
    let probe = |name: &str| {
        log.iter()
            .find_map(|l| l.strip_prefix(&format!("EntryAbility probe {name}=")))
            .unwrap_or_else(|| panic!("no probe {name} in {log:?}"))
            .to_string()
    };
    assert_eq!(probe("shadow"), "ENOENT");
    assert_eq!(
        probe("other_app"),
        "ENOENT",
        "another app's data is not in the sandbox"
    );
    assert_ne!(probe("init_root"), "ok", "other processes are hidden");
    assert_eq!(probe("ptrace"), "EPERM");
    assert_eq!(probe("setuid0"), "EPERM");
    assert_eq!(
        probe("clone_newuser"),
        "EPERM",
        "no namespaces through clone(2) either"
    );
    assert_eq!(
        probe("thread"),
        "ok",
        "threads still start (clone3 falls back to clone)"
    );
    assert_eq!(probe("mount"), "EPERM");
    assert_eq!(probe("write_code"), "EROFS", "the code dir is read-only");
    assert_eq!(probe("write_own"), "ok", "its own data dir is writable");
    // What it wrote landed in its own el2 dir on the host, owned by its uid.
    let f = dev
        .data_dir()
        .join("app/el2/100/base")
        .join(NOTES)
        .join("probe.txt");
    assert!(f.is_file(), "{}", f.display());
}

#[test]
fn a_service_extension_is_started_counted_and_stopped_with_aa() {
    if !oxh_testkit::require_root("ability", "to sandbox app processes") {
        return;
    }
    let dev = TestDevice::start();
    let work = tempfile::tempdir().unwrap();
    install_counter(&dev, work.path());
    let bundle = COUNTER;
    let log = || counter_log(&dev);
    for _ in 0..2 {
        let out = aa(&dev, &["start", "-b", bundle, "-a", "CounterService"]);
        assert_eq!(out, "start ability successfully.\n");
    }
    let l = read_until(log, |l| l.len() >= 3);
    assert_eq!(
        l,
        [
            "CounterService onCreate",
            "CounterService onRequest 1 count=1",
            "CounterService onRequest 2 count=2",
        ]
    );
    let d = aa(&dev, &["dump", "-a"]);
    assert!(
        d.contains("main name [CounterService]") && d.contains("ability type [SERVICE]"),
        "{d}"
    );
    assert!(
        !aa(&dev, &["dump", "-l"]).contains("CounterService"),
        "a service has no mission"
    );
    // The ability manager's dump through hidumper (SA 180).
    let h = dev.oxh_ok(&["hidumper", "-s", "180"]);
    assert!(
        h.contains("CounterService") && h.contains("ServiceExtension"),
        "{h}"
    );

    let out = aa(
        &dev,
        &["stop-service", "-b", bundle, "-a", "CounterService"],
    );
    assert_eq!(out, "stop service ability successfully.\n");
    let l = read_until(log, |l| l.len() >= 4);
    assert_eq!(l[3], "CounterService onDestroy");
    // Stopping what is not running, or a UIAbility, fails as aa says.
    let out = aa(
        &dev,
        &["stop-service", "-b", bundle, "-a", "CounterService"],
    );
    assert!(
        out.starts_with("error: failed to stop service ability.\n"),
        "{out}"
    );
}

#[test]
fn an_apps_calls_are_judged_by_its_own_token() {
    let Some((dev, _work)) = notes_device() else {
        return;
    };
    aa(&dev, &["start", "-b", NOTES, "-W"]);
    // notes requests DISTRIBUTED_DATASYNC, a user_grant permission nobody granted yet: its
    // own sync is refused with 201, though the shell that started it could sync.
    aa(&dev, &["start", "-b", NOTES, "--pb", "sync", "true", "-W"]);
    let l = read_until(
        || lifecycle(&dev),
        |l| l.iter().any(|x| x.contains("sync=")),
    );
    assert!(l.iter().any(|x| x == "EntryAbility sync=201"), "{l:?}");
    // Granted, the same call from the same process passes the check.
    dev.oxh_ok(&[
        "atm",
        "grant",
        NOTES,
        "ohos.permission.DISTRIBUTED_DATASYNC",
    ]);
    aa(&dev, &["start", "-b", NOTES, "--pb", "sync", "true", "-W"]);
    let l = read_until(
        || lifecycle(&dev),
        |l| l.iter().filter(|x| x.contains("sync=")).count() >= 2,
    );
    let second = l.iter().filter(|x| x.contains("sync=")).nth(1).unwrap();
    assert_ne!(second, "EntryAbility sync=201", "{l:?}");
}

/// Slow in a debug run (it builds the examples in release): run optimised with the 1 GiB tests.
#[test]
#[ignore = "builds the example apps in release; scripts/test runs it with --release --ignored"]
fn sim_installs_the_example_apps_on_every_device() {
    let base = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::oxh_bin())
        .args(["sim", "--devices", "2", "--exit-when-ready", "--base-dir"])
        .arg(base.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("apps installed on every device: com.example.counter, com.example.helloc, com.example.notes"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Installed on each device: its code dir holds the package and the native library.
    for dev in ["dev1", "dev2"] {
        let code = base
            .path()
            .join(dev)
            .join("app/el1/bundle/public/com.example.notes");
        let lib = code
            .join("libs")
            .join(oxh_ability::abi::abi_dir())
            .join("libnotes.so");
        assert!(lib.is_file(), "{}", lib.display());
    }
}

/// The pid of `bundle`'s app process on `dev` (from `aa dump -a`'s records).
pub(crate) fn pid_of(dev: &dyn Oxh, bundle: &str) -> Option<u32> {
    let d = aa(dev, &["dump", "-a"]);
    d.split("AbilityRecord ID #")
        .filter(|rec| rec.contains(&format!("bundle name [{bundle}]")))
        .find_map(|rec| {
            rec.lines()
                .find_map(|l| l.trim().strip_prefix("pid #"))
                .and_then(|p| p.parse().ok())
        })
}

/// The real uid of process `pid` (/proc).
fn uid_of(pid: u32) -> u32 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap()
}

#[test]
fn an_app_calls_another_apps_service_directly_and_the_service_ends_with_its_last_client() {
    let Some((dev, work)) = notes_device() else {
        return;
    };
    install_counter(&dev, work.path());
    let counter = COUNTER;
    let counter_log = || counter_log(&dev);
    let calls = |who: &str| {
        let p = format!("{who} counter ");
        lifecycle(&dev)
            .into_iter()
            .filter_map(|l| l.strip_prefix(&p).map(str::to_string))
            .collect::<Vec<_>>()
    };

    // notes connects from onForeground; its onConnect calls the remote object three times.
    aa(
        &dev,
        &["start", "-b", NOTES, "--pb", "connect", "true", "-W"],
    );
    let c = read_until(|| calls("EntryAbility"), |c| c.len() >= 3);
    let notes_uid = uid_of(pid_of(&dev, NOTES).expect("notes runs"));
    let counter_pid = pid_of(&dev, counter).expect("the service runs");
    assert_ne!(uid_of(counter_pid), notes_uid, "two apps, two uids");
    assert_eq!(c.len(), 3, "{c:?}");
    let who = format!("caller={notes_uid} token=");
    assert!(
        c[0].starts_with(&format!("count=1 {who}")) && c[0].ends_with(" bundle=com.example.notes"),
        "the service sees the client's kernel uid and its bundle: {c:?}"
    );
    let token: u32 = c[0]
        .split("token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap();
    assert_ne!(token, 0, "an app's token, not an invalid one");
    assert!(c[1].starts_with("count=2 "), "{c:?}");
    assert_eq!(c[2], "code 9 error=401", "the service's own error code");
    assert!(
        lifecycle(&dev).contains(&"EntryAbility onConnect CounterService".to_string()),
        "{:?}",
        lifecycle(&dev)
    );
    assert_eq!(
        counter_log(),
        ["CounterService onCreate", "CounterService onConnect"]
    );

    // A second client shares the bound remote object: no second onConnect.
    aa(
        &dev,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "NoteAbility",
            "--pb",
            "connect",
            "true",
            "-W",
        ],
    );
    let c2 = read_until(|| calls("NoteAbility"), |c| c.len() >= 3);
    assert!(c2[0].starts_with("count=3 "), "{c2:?}");
    let dump = || dev.oxh_ok(&["hidumper", "-s", "180"]);
    let d = read_until(dump, |d| {
        d.contains("CounterService") && d.contains("connections #2")
    });
    assert!(d.contains("connections #2"), "{d}");
    assert_eq!(counter_log().len(), 2, "{:?}", counter_log());

    // One client disconnects: the service keeps serving the other, without a callback.
    aa(
        &dev,
        &["start", "-b", NOTES, "--pb", "disconnect", "true", "-W"],
    );
    let d = read_until(dump, |d| d.contains("connections #1"));
    assert!(
        d.contains("connections #1"),
        "{d}{:?}\n{}",
        lifecycle(&dev),
        dev.oxh_ok(&["hilog", "-x", "-T", "AppHost"])
    );
    assert!(lifecycle(&dev).contains(&"EntryAbility disconnect=0".to_string()));
    assert_eq!(counter_log().len(), 2, "{:?}", counter_log());

    // The last client dies: onDisconnect, then (never started) onDestroy and its process ends.
    aa(&dev, &["force-stop", NOTES]);
    let l = read_until(counter_log, |l| l.len() >= 4);
    assert_eq!(
        &l[2..],
        ["CounterService onDisconnect", "CounterService onDestroy"]
    );
    assert!(wait_gone(counter_pid), "the service's process ended");

    // The service dies under a client: the client's onDisconnect.
    aa(
        &dev,
        &["start", "-b", NOTES, "--pb", "connect", "true", "-W"],
    );
    let c = read_until(|| calls("EntryAbility"), |c| c.len() >= 6);
    assert!(c[3].starts_with("count=1 "), "a new service process: {c:?}");
    aa(&dev, &["force-stop", counter]);
    let l = read_until(
        || lifecycle(&dev),
        |l| {
            l.iter()
                .any(|x| x == "EntryAbility onDisconnect CounterService")
        },
    );
    assert!(
        l.iter()
            .any(|x| x == "EntryAbility onDisconnect CounterService"),
        "{l:?}"
    );

    // Connecting to a UIAbility fails with OpenHarmony's code, in onFailed.
    aa(&dev, &["force-stop", NOTES]);
    aa(
        &dev,
        &[
            "start",
            "-b",
            NOTES,
            "--ps",
            "connect_to",
            "com.example.notes/NoteAbility",
            "-W",
        ],
    );
    let l = read_until(
        || lifecycle(&dev),
        |l| l.iter().any(|x| x.contains("onFailed")),
    );
    assert!(
        l.iter().any(|x| x == "EntryAbility onFailed 16000002"),
        "{l:?}"
    );
}

#[test]
fn a_specified_ability_runs_one_instance_per_key_its_on_accept_want_names() {
    let Some((dev, _work)) = notes_device() else {
        return;
    };
    for doc in ["a", "b", "a"] {
        let out = aa(
            &dev,
            &[
                "start",
                "-b",
                NOTES,
                "-a",
                "DocAbility",
                "--ps",
                "doc",
                doc,
                "-W",
            ],
        );
        assert!(out.contains("start ability successfully."), "{out}");
    }
    let l = read_until(
        || lifecycle(&dev),
        |l| {
            l.iter()
                .filter(|x| x.starts_with("DocAbility onForeground"))
                .count()
                >= 3
        },
    );
    let doc: Vec<&str> = l
        .iter()
        .filter(|x| x.starts_with("DocAbility on") && !x.contains("onBackground"))
        .map(|x| x.as_str())
        .collect();
    assert_eq!(
        doc,
        [
            "DocAbility onCreate StartAbility",
            "DocAbility onForeground",
            "DocAbility onCreate StartAbility",
            "DocAbility onForeground",
            "DocAbility onNewWant",
            "DocAbility onForeground",
        ],
        "key a, key b (a new instance), key a again (onNewWant on the first)"
    );
    let missions = aa(&dev, &["dump", "-l"]);
    assert_eq!(
        missions
            .matches("mission name #[#com.example.notes:entry:DocAbility]")
            .count(),
        2,
        "two keys, two missions: {missions}"
    );
}

/// The app host's own lines in hilog.
fn app_host_log(dev: &TestDevice) -> String {
    dev.oxh_ok(&["hilog", "-x", "-T", "AppHost"])
}

/// `aa start` of the notes app fails, and the host says in hilog which library it refused
/// and why.
fn refused(dev: &TestDevice, why: &str) {
    let out = aa(dev, &["start", "-b", NOTES, "-W"]);
    // The app process ended at the refusal: an internal error to the caller, at once.
    assert!(
        out.contains("error: failed to start ability.") && out.contains("Error Code:10108101"),
        "{out}"
    );
    let log = read_until(|| app_host_log(dev), |l| l.contains(why));
    let lib = format!("libs/{}/libnotes.so", oxh_ability::abi::abi_dir());
    assert!(
        log.contains("refused to load") && log.contains(&lib) && log.contains(why),
        "{log}"
    );
    assert!(log.contains("code signature verification failed"), "{log}");
    assert!(lifecycle(dev).is_empty(), "the library never ran");
}

#[test]
fn a_release_device_loads_only_libraries_whose_code_signature_verifies() {
    if !oxh_testkit::require_root("ability", "to sandbox app processes") {
        return;
    }
    let lib = example_lib("oxh-example-notes", "notes");
    let module = "examples/notes/hap/module.json5";

    // A release device: a library without a code signature is refused before it loads.
    let dev = TestDevice::start_with(&["--debuggable", "false"]);
    assert_eq!(
        dev.oxh_ok(&["param", "get", "const.debuggable"]).trim(),
        "0"
    );
    let work = tempfile::tempdir().unwrap();
    install_signed(&dev, work.path(), NOTES, module, &lib, "libnotes.so", false);
    refused(&dev, "CS_ERR_NO_SIGNATURE");

    // Signed with its code signature, it starts.
    dev.oxh_ok(&["bm", "uninstall", "-n", NOTES]);
    let work = tempfile::tempdir().unwrap();
    install_signed(&dev, work.path(), NOTES, module, &lib, "libnotes.so", true);
    let out = aa(&dev, &["start", "-b", NOTES, "-W"]);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    assert_eq!(
        lifecycle_at_least(&dev, 1)[0],
        "EntryAbility onCreate StartAbility"
    );
    aa(&dev, &["force-stop", NOTES]);

    // Its installed copy changed afterwards (one byte, as root): refused again, because the
    // host checks the bytes it maps, not what was installed.
    let installed = dev
        .data_dir()
        .join("app/el1/bundle/public")
        .join(NOTES)
        .join("libs")
        .join(oxh_ability::abi::abi_dir())
        .join("libnotes.so");
    let mut b = std::fs::read(&installed).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x01;
    std::fs::write(&installed, &b).unwrap();
    dev.oxh_ok(&["hilog", "-r"]);
    refused(&dev, "CS_ERR_INVALID_SIGNATURE");
    drop(dev);

    // A debuggable device loads a library without a code signature, as before.
    let dev = TestDevice::start_with(&["--debuggable", "true"]);
    let work = tempfile::tempdir().unwrap();
    install_signed(&dev, work.path(), NOTES, module, &lib, "libnotes.so", false);
    let out = aa(&dev, &["start", "-b", NOTES, "-W"]);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    assert!(!app_host_log(&dev).contains("refused to load"));
}
