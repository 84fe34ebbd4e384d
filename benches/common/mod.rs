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

/// The two-worker runtime a bench drives its clients from when replies must be read while
/// other tasks run (the machine has 2 cores).
pub fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt")
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

/// The `p`th percentile of `v` (nearest rank below).
pub fn pct(mut v: Vec<std::time::Duration>, p: usize) -> std::time::Duration {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

/// Milliseconds, for printing.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `oxh --data-dir DIR ARGS...`, which must succeed; its stdout.
pub fn oxh(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_oxh"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("oxh runs");
    assert!(
        o.status.success(),
        "oxh {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds the notes and counter examples (release); their libraries.
pub fn build_examples() -> (PathBuf, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "--release", "-p", "oxh-example-notes"])
        .args(["-p", "oxh-example-counter"])
        .status()
        .expect("cargo");
    assert!(st.success());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    (
        target.join("release/libnotes.so"),
        target.join("release/libcounter.so"),
    )
}

/// Packs `lib` with the example `name`'s module.json5 and signs it with a fresh dev key
/// whose debug profile lists `device_ids` (none: any device), in `work`; installs it on each
/// of `devs` (one HAP, so one appId on all of them).
pub fn install_example(
    devs: &[&Daemon],
    work: &Path,
    name: &str,
    bundle: &str,
    lib: &Path,
    device_ids: &[String],
) {
    let hap = pack_example(devs, work, name, bundle, lib, device_ids, &[]);
    for d in devs {
        oxh(&d.dir, &["bm", "install", "-p", &hap.to_string_lossy()]);
    }
}

/// [`install_example`]'s HAP, with `extra` files (path in the HAP, bytes) beside the
/// library, not installed: each of `devs` trusts its root. Its path.
pub fn pack_example(
    devs: &[&Daemon],
    work: &Path,
    name: &str,
    bundle: &str,
    lib: &Path,
    device_ids: &[String],
    extra: &[(&str, &[u8])],
) -> PathBuf {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let work = &work.join(name);
    let src = work.join(name);
    let abi = oxh_ability::abi::abi_dir();
    std::fs::create_dir_all(src.join("libs").join(abi)).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}/hap/module.json5")),
        src.join("module.json5"),
    )
    .unwrap();
    std::fs::copy(
        lib,
        src.join("libs").join(abi).join(lib.file_name().unwrap()),
    )
    .unwrap();
    for (path, bytes) in extra {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let dir = &devs[0].dir;
    let keys = s(&work.join("keys"));
    let mut keygen = vec!["hap", "keygen", "--bundle", bundle, "--out", &keys];
    for id in device_ids {
        keygen.extend(["--device-id", id.as_str()]);
    }
    oxh(dir, &keygen);
    let unsigned = work.join("u.hap");
    let hap = work.join(format!("{name}.hap"));
    oxh(dir, &["hap", "pack", &s(&src), "-o", &s(&unsigned)]);
    let k = |n: &str| s(&work.join("keys").join(n));
    oxh(
        dir,
        &[
            "hap",
            "sign",
            &s(&unsigned),
            "--key",
            &k("dev.key"),
            "--cert",
            &k("dev.pem"),
            "--profile",
            &k("dev.p7b"),
            "-o",
            &s(&hap),
        ],
    );
    for d in devs {
        oxh(&d.dir, &["hap", "trust", "add", &k("root.pem")]);
    }
    hap
}

/// `size` bytes of xorshift64 output at `path` (nothing on the way can shrink them), fsync'd:
/// the file the transfer and read benchmarks move.
pub fn write_incompressible(path: &Path, size: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the bench file");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write the bench file");
        left -= n as u64;
    }
    f.sync_all().expect("sync the bench file");
}
