//! Shared by the benchmarks: a real `oxhd`, started on a data dir and waited for until its
//! ready line, killed and reaped when dropped (each bench is its own binary, so this module is
//! compiled into each; not every bench uses every item).
#![allow(dead_code)]

use oxh_kal::ready::ReadyLine;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running device.
pub struct Daemon {
    /// The oxhd process.
    pub child: Child,
    /// Its data dir.
    pub dir: PathBuf,
    /// Its ready line (`oxhd ready: name=... bus=... hdc=...`).
    pub ready: ReadyLine,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts oxhd on `dir` with `args` and waits for its ready line.
    pub fn start_in(dir: &Path, args: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oxhd"))
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn oxhd");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let ready = loop {
            line.clear();
            if out.read_line(&mut line).expect("read") == 0 {
                panic!("oxhd exited before ready");
            }
            if let Ok(r) = ReadyLine::parse(&line) {
                break r;
            }
        };
        Daemon {
            child,
            dir: dir.to_path_buf(),
            ready,
            _tmp: None,
        }
    }

    /// Starts oxhd on a fresh temp dir (removed with the daemon) with `args`.
    pub fn start_temp(args: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut d = Self::start_in(tmp.path(), args);
        d._tmp = Some(tmp);
        d
    }

    /// An SDK connection to it.
    pub async fn sdk(&self) -> oxh_sdk::Device {
        oxh_sdk::Device::connect(self.dir.as_path())
            .await
            .expect("connect")
    }

    /// A field of the ready line, e.g. `bus` or `network_id`.
    pub fn field(&self, key: &str) -> String {
        self.ready.field(key).unwrap_or_default()
    }
}

/// The number in the environment variable `name` (a bench's size knob), else `default`.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The single-threaded runtime a bench drives its client from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// oxhd arguments that keep a bench device on loopback without mDNS.
pub const LOOPBACK: &[&str] = &["--listen", "127.0.0.1:0", "--discovery", "off"];

/// The times of `iters` runs of `prog args` (stdout and stderr discarded); `None` if it
/// cannot run or fails.
pub fn time_runs(iters: usize, prog: &str, args: &[&str]) -> Option<Vec<std::time::Duration>> {
    let mut v = Vec::new();
    for _ in 0..iters {
        let t = std::time::Instant::now();
        let s = Command::new(prog)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !s.success() {
            return None;
        }
        v.push(t.elapsed());
    }
    Some(v)
}

/// Two devices on loopback, `b` dialling `a`, bound with a PIN and online for each other,
/// with an SDK connection to each: what a bench of sync between devices runs on.
pub async fn bound_pair(base: &Path) -> (Daemon, Daemon, oxh_sdk::Device, oxh_sdk::Device) {
    let mut args: Vec<&str> = LOOPBACK.to_vec();
    let a = Daemon::start_in(&base.join("a"), &args);
    let bus = a.field("bus");
    args.extend(["--peer", bus.as_str()]);
    let b = Daemon::start_in(&base.join("b"), &args);
    let da = oxh_sdk::Device::connect(&a.dir).await.expect("a");
    let db = oxh_sdk::Device::connect(&b.dir).await.expect("b");
    let pin = db.device_manager().issue_pin().await.expect("pin");
    da.device_manager()
        .bind(&b.field("bus"), &pin.pin)
        .await
        .expect("bind");
    let t = std::time::Instant::now();
    loop {
        let tr = da
            .device_manager()
            .trusted_devices()
            .await
            .expect("trusted");
        if tr.iter().any(|t| t.online) {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "b never came online"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (a, b, da, db)
}

/// The second and third numbers on the dump line that starts with `prefix` (a service's
/// "... sent: N messages, B bytes, P payload bytes" counters): (bytes, payload bytes).
pub fn sent_counters(dump: &str, prefix: &str) -> (u64, u64) {
    let line = dump
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in the dump"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[1], nums[2])
}
