//! Test harness: a real device daemon in a temp dir, killed and reaped when dropped.

use oxh_kal::ready::ReadyLine;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a daemon may take to print its ready line before the test fails.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A field of a ready line; a test without it cannot go on.
fn field(ready: &ReadyLine, key: &str) -> String {
    ready
        .field(key)
        .unwrap_or_else(|| panic!("no {key} in {ready}"))
}

pub fn oxhd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_oxhd")
}

pub fn oxh_bin() -> &'static str {
    env!("CARGO_BIN_EXE_oxh")
}

/// A running device.
pub struct TestDevice {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra `oxhd` arguments, used on every (re)start.
    pub extra: Vec<String>,
    /// The last ready line.
    pub ready: ReadyLine,
    /// Extra environment of the daemon, on every (re)start.
    pub env: Vec<(String, String)>,
}

impl TestDevice {
    /// Starts a device in a fresh temp dir and waits for its ready line.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a device with extra `oxhd` arguments. Without `--discovery`, discovery is off, so
    /// that no test multicasts outside loopback.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// Starts a device with extra `oxhd` arguments and environment (e.g. its security level,
    /// `OXH_DEVICE_SECURITY_LEVEL`).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("oxh-test-")
            .tempdir()
            .expect("temp dir");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.iter().any(|a| a == "--discovery") {
            extra.extend(["--discovery".into(), "off".into()]);
        }
        if !extra.iter().any(|a| a == "--listen") {
            extra.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let mut d = Self {
            dir,
            child: None,
            extra,
            ready: ReadyLine::default(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.restart();
        d
    }

    /// A field of the ready line, e.g. `bus` or `network_id`.
    pub fn ready_field(&self, key: &str) -> String {
        field(&self.ready, key)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// (Re)starts the daemon on the same data dir; returns its ready line.
    pub fn restart(&mut self) -> ReadyLine {
        assert!(self.child.is_none(), "stop the daemon first");
        let mut child = Command::new(oxhd_bin())
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(
                (!self.extra.iter().any(|a| a == "--name"))
                    .then_some(["--name", "test-device"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn oxhd");
        let rx = ready_lines(child.stdout.take().expect("stdout"));
        self.child = Some(child);
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(r) => {
                self.ready = r.clone();
                r
            }
            Err(_) => panic!("oxhd did not become ready within {READY_TIMEOUT:?}"),
        }
    }

    /// SIGKILL, no chance to clean up: what a crash or power loss looks like to the daemon.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), libc::SIGTERM);
            let _ = c.wait();
        }
    }

    /// Runs `oxh --data-dir DIR ARGS...`.
    pub fn oxh(&self, args: &[&str]) -> Output {
        run_oxh(self.dir.path(), args)
    }

    /// Runs `oxh` and expects success; returns stdout.
    pub fn oxh_ok(&self, args: &[&str]) -> String {
        stdout_of_success(self.oxh(args), format_args!("oxh {args:?}"))
    }

    /// Runs `oxh` and expects failure; returns stderr.
    pub fn oxh_err(&self, args: &[&str]) -> String {
        let o = self.oxh(args);
        assert!(
            !o.status.success(),
            "oxh {args:?} should have failed, printed {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// An SDK connection to this device.
    pub async fn sdk(&self) -> oxh_sdk::Device {
        oxh_sdk::Device::connect(self.dir.path())
            .await
            .expect("connect")
    }

    /// Lets processes of other users (`nobody`, an app's uid) reach its socket: its data dir
    /// searchable by all (0711).
    pub fn let_others_in(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.data_dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }

    /// A fresh binding PIN this device shows.
    pub async fn issue_pin(&self) -> String {
        self.sdk()
            .await
            .device_manager()
            .issue_pin()
            .await
            .unwrap()
            .pin
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/oxhd.sock")
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        self.kill9();
        detach_file_views(self.dir.path());
    }
}

/// Detaches a dead daemon's device views (FUSE, as root) before its data dir is removed, so
/// that nothing is left mounted and the removal never walks into a view.
pub fn detach_file_views(data_dir: &Path) {
    oxh_dfs::views::detach_dead(data_dir, 100);
}

/// A device that `oxh` can drive through its data dir: a loopback [`TestDevice`] or an
/// [`NsDevice`] in a namespace. The app helpers (`aa`, hilog readers, installs) take this.
pub trait Oxh {
    /// Its data dir (where its socket is).
    fn dir(&self) -> &Path;

    /// `oxh --data-dir DIR ARGS...` that must succeed; its stdout.
    fn run_ok(&self, args: &[&str]) -> String {
        stdout_of_success(run_oxh(self.dir(), args), format_args!("oxh {args:?}"))
    }
}

impl Oxh for TestDevice {
    fn dir(&self) -> &Path {
        self.data_dir()
    }
}

impl Oxh for NsDevice {
    fn dir(&self) -> &Path {
        self.data_dir()
    }

    fn run_ok(&self, args: &[&str]) -> String {
        self.oxh_ok(args)
    }
}

/// The ready lines oxhd prints on `stdout`, as a thread reads them.
fn ready_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<ReadyLine> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(r) = ReadyLine::parse(&line) {
                let _ = tx.send(r);
            }
        }
    });
    rx
}

/// Runs `oxh --data-dir DATA_DIR ARGS...`.
pub fn run_oxh(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(oxh_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run oxh")
}

/// The stdout of `what`, which must have succeeded (else its stderr and stdout in the panic).
pub fn stdout_of_success(o: Output, what: std::fmt::Arguments<'_>) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Binds `a` to `b` through the real PIN flow (`a` enters the PIN `b` shows, and learns `b`'s
/// udid).
pub async fn bind_by_pin(a: &TestDevice, b: &TestDevice) {
    let pin = b.issue_pin().await;
    assert_eq!(pin.len(), 6);
    let t = a
        .sdk()
        .await
        .device_manager()
        .bind(&b.ready_field("bus"), &pin)
        .await
        .unwrap();
    assert_eq!(t.udid.len(), 64);
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Waits for an async condition with a bounded timeout, failing the test with `what`.
pub async fn within<T>(what: &str, d: Duration, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?} waiting for {what}"),
    }
}

/// Sets a running device's clocks `by` ahead (a debug build's `debug.clock.ahead_ms`) and
/// waits, bounded, until the daemon says they are: time moves without a sleep.
pub fn set_clock_ahead(data_dir: &Path, by: Duration) {
    let ms = by.as_millis().to_string();
    let run = |args: &[&str]| {
        let o = Command::new(oxh_bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .output()
            .expect("run oxh");
        assert!(
            o.status.success(),
            "oxh {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["param", "set", oxh_kal::clock::AHEAD_PARAM, &ms]);
    run(&["param", "wait", oxh_kal::clock::APPLIED_PARAM, &ms, "10"]);
}

/// Runs this test binary again as a client process: only test `test` (an entry point that acts
/// only when `env` is set), with `env=spec`, as `user` through runuser or as this user. Returns
/// the JSON values it printed, one per line, each after `marker` (libtest's "test NAME ... "
/// may share the line with the first one). Fails the test if the child fails or prints none.
pub fn run_test_child(
    user: Option<&str>,
    env: &str,
    spec: &str,
    test: &str,
    marker: &str,
) -> Vec<serde_json::Value> {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "env"])
                .arg(format!("{env}={spec}"))
                .arg(&exe);
            c
        }
        None => {
            let mut c = Command::new(&exe);
            c.env(env, spec);
            c
        }
    };
    let o = cmd
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .output()
        .expect("run the child");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "child {spec} failed: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| l.find(marker).map(|i| &l[i + marker.len()..]))
        .map(|l| serde_json::from_str(l).expect("child result is JSON"))
        .collect();
    assert!(!lines.is_empty(), "child {spec} printed no results: {out}");
    lines
}

/// Whether this run can start clients as `nobody` (root and runuser); prints why not.
pub fn can_run_as_nobody(test: &str) -> bool {
    oxh_testkit::require_nobody(test)
}

/// A real `oxhd` inside a namespace; killed and reaped on drop. Must be dropped before the
/// [`Netns`] (declare it after), or `ip netns del` leaves a namespace held by the process.
pub struct NsDevice {
    /// Its namespace.
    pub ns: String,
    /// Its device name (or, for a device started without one, its label in messages).
    pub name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    ready: ReadyLine,
    /// Whether `--name` is passed; arguments and environment, for restarts.
    named: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl NsDevice {
    /// Starts oxhd named `name` in namespace `ns` with `args` (after `--data-dir`, `--name`
    /// and `--listen 0.0.0.0:0`) and waits for its ready line.
    pub fn start(ns: &str, name: &str, args: &[&str]) -> Result<Self, String> {
        Self::start_with(ns, name, true, args, &[])
    }

    /// As [`NsDevice::start`]; without `--name` unless `named` (then `name` is only a label),
    /// and with extra environment.
    pub fn start_with(
        ns: &str,
        name: &str,
        named: bool,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("oxh-netns-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut d = NsDevice {
            ns: ns.into(),
            name: name.into(),
            dir,
            child: None,
            ready: ReadyLine::default(),
            named,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn()?;
        Ok(d)
    }

    /// Kills the daemon and starts it again on the same data dir; waits for its ready line.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("oxhd.stderr"))
            .map_err(|e| format!("log file: {e}"))?;
        // `ip netns exec` execs the command: the child's pid is oxhd's.
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, oxhd_bin(), "--data-dir"])
            .arg(self.dir.path());
        if self.named {
            cmd.args(["--name", &self.name]);
        }
        let mut child = cmd
            .args(["--listen", "0.0.0.0:0"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn oxhd in {}: {e}", self.ns))?;
        let rx = ready_lines(child.stdout.take().expect("piped stdout"));
        self.child = Some(child);
        self.ready = rx
            .recv_timeout(READY_TIMEOUT)
            .map_err(|_| format!("{} not ready; stderr:\n{}", self.name, self.log_tail()))?;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// A field of the ready line.
    pub fn ready_field(&self, key: &str) -> String {
        field(&self.ready, key)
    }

    /// Its udid.
    pub fn udid(&self) -> String {
        self.ready_field("udid")
    }

    /// The daemon's pid (the process `ip netns exec` became), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// An SDK connection from the host namespace.
    pub async fn sdk(&self) -> oxh_sdk::Device {
        oxh_sdk::Device::connect(self.data_dir())
            .await
            .expect("connect over IPC from the host namespace")
    }

    /// The devices it trusts, as it lists them now.
    pub async fn trusted(&self) -> Vec<oxh_softbus::api::TrustedView> {
        self.sdk()
            .await
            .device_manager()
            .trusted_devices()
            .await
            .unwrap()
    }

    /// `oxh --data-dir DIR ARGS...`, run in the host namespace.
    pub fn oxh(&self, args: &[&str]) -> Output {
        run_oxh(self.data_dir(), args)
    }

    /// `oxh` that must succeed; its stdout.
    pub fn oxh_ok(&self, args: &[&str]) -> String {
        stdout_of_success(
            self.oxh(args),
            format_args!("oxh {args:?} on {}", self.name),
        )
    }

    /// Sets its link up or down.
    pub fn link(&self, state: &str) {
        oxh_testkit::ns_run(&self.ns, &["ip", "link", "set", "eth0", state]).expect("ip link set");
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.data_dir().join("oxhd.stderr")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for NsDevice {
    fn drop(&mut self) {
        if self.child.is_some() {
            let tail = self.log_tail();
            if std::thread::panicking() && !tail.is_empty() {
                eprintln!("--- {} ({}) stderr:\n{tail}", self.name, self.ns);
            }
            self.kill();
        }
        detach_file_views(self.data_dir());
    }
}

/// Waits for `child` to exit, at most `bound` (polling, since std has no timed wait); fails
/// the test with `what` if it does not.
pub fn wait_exit(child: &mut Child, bound: Duration, what: &str) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(t0.elapsed() < bound, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
