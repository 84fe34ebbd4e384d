//! Access-token benchmark.
//!
//! 1. `verify()` from the in-memory cache, as samgr's gate calls it (`PermissionChecker::verify`),
//!    beside a plain `HashMap<&str, u16>` lookup of the permission name (the floor: `verify`
//!    does that lookup, then a read lock, a token lookup and a bit test). Timed in batches of
//!    [`BATCH`] calls, so that the clock's own cost (~20 ns) does not swamp a ~50 ns call; the
//!    figures are percentiles of the per-call time over the batches (a batch that the
//!    scheduler preempts shows up in the p99, not the p50).
//! 2. The permission check's cost on an IPC round trip: the same 64-byte call through oxhd to
//!    samgr's `Echo` (no permission) and `EchoChecked` (ohos.permission.DUMP, which this
//!    process holds: it runs as the daemon's user), alternating call by call so that drift
//!    and the rest of the machine hit both alike; p50 ratio, and the median of the per-step
//!    differences.
//!
//! Run: `cargo bench --bench atm` (env OXH_BENCH_ITERS: round trips per method, default
//! 50,000). Pinned: `taskset -c 0 target/release/deps/atm-* --bench`.

use oxh_atm::rules::{DlpType, HapInfoParams, HapPolicy, flag};
use oxh_atm::{AccessTokenManager, AtmConfig};
use oxh_ipc::{Caller, TokenType};
use oxh_samgr::PermissionChecker;
use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BATCH: u32 = 100;
const BATCHES: usize = 20_000;
const MSG: usize = 64;

const INTERNET: &str = "ohos.permission.INTERNET";
const CAMERA: &str = "ohos.permission.CAMERA";
const LOCATION: &str = "ohos.permission.LOCATION";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Per-call times over [`BATCHES`] batches of [`BATCH`] calls of `f`, sorted.
fn per_call(mut f: impl FnMut() -> bool) -> Vec<Duration> {
    for _ in 0..BATCH * 10 {
        black_box(f());
    }
    let mut v = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(f());
        }
        v.push(t.elapsed() / BATCH);
    }
    v.sort();
    v
}

fn report(what: &str, v: &[Duration]) {
    println!(
        "{what:<52} p50 {:6.1} ns  p99 {:6.1} ns",
        ns(percentile(v, 0.5)),
        ns(percentile(v, 0.99))
    );
}

fn verify_bench() {
    let dir = tempfile::tempdir().expect("tmp");
    let atm = AccessTokenManager::open(dir.path(), AtmConfig::default()).expect("open");
    // A cache like a device's: some apps besides the one checked.
    for i in 0..50 {
        let info = HapInfoParams {
            user_id: 100,
            bundle_name: format!("com.example.app{i}"),
            inst_index: 0,
            dlp_type: DlpType::Common,
            app_id_desc: format!("app{i}"),
            api_version: 12,
            is_system_app: false,
            app_distribution_type: "app_gallery".into(),
            uid: None,
        };
        atm.alloc_hap_token(&info, &HapPolicy::normal(&[INTERNET, CAMERA, LOCATION]))
            .expect("alloc");
    }
    let id = atm
        .hap_token_id(100, "com.example.app25", 0)
        .expect("app")
        .token_id();
    atm.grant_permission(id, CAMERA, flag::USER_SET)
        .expect("grant");
    let caller = Caller {
        pid: 1234,
        uid: 20_010_025,
        gid: 20_010_025,
        token_id: id,
        token_type: TokenType::Hap,
        process_name: "com.example.app25".into(),
    };

    let names: HashMap<&'static str, u16> = oxh_atm::definitions::all()
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name, i as u16))
        .collect();
    println!(
        "verify() from the in-memory cache: {} tokens, {} permission definitions; per call, \
         {BATCHES} batches of {BATCH}",
        atm.tokens().len(),
        oxh_atm::definitions::count()
    );
    let floor = per_call(|| names.contains_key(black_box(INTERNET)));
    report("floor: HashMap<&str, u16> lookup of the name", &floor);
    let granted = per_call(|| atm.verify(black_box(&caller), black_box(INTERNET)));
    report("verify(), system_grant, granted", &granted);
    let denied = per_call(|| atm.verify(black_box(&caller), black_box(LOCATION)));
    report("verify(), user_grant, denied", &denied);
    let gate = per_call(|| {
        let ok = atm.verify(black_box(&caller), black_box(CAMERA));
        atm.record(&caller, CAMERA, ok);
        ok
    });
    report("verify() + usage record, user_grant (samgr's gate)", &gate);
    println!(
        "verify() p50 / floor p50: {:.2}x; verify() p50 {:.0} ns (goal < 1 us)",
        ns(percentile(&granted, 0.5)) / ns(percentile(&floor, 0.5)),
        ns(percentile(&granted, 0.5))
    );
}

struct Daemon {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxhd"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--discovery", "off", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn oxhd");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read") == 0 {
            panic!("oxhd exited before ready");
        }
        if line.starts_with("oxhd ready") {
            break;
        }
    }
    Daemon { child, dir }
}

/// `iters` steps of one call to `a` and one to `b` (samgr method codes, 64 bytes each), in a
/// random order per step, so that drift, periodic effects and the rest of the machine hit
/// both alike. Returns both latency lists, in step order.
async fn pairs(
    c: &oxh_ipc::Client,
    a: u32,
    b: u32,
    iters: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let msg = [0x5au8; MSG];
    let (mut la, mut lb) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..iters {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let a_first = rng & 1 == 0;
        for a_turn in [a_first, !a_first] {
            let code = if a_turn { a } else { b };
            let t = Instant::now();
            let r = c.call_raw(0, code, &msg).await.expect("call");
            let e = t.elapsed();
            assert_eq!(r.len(), MSG);
            if a_turn { la.push(e) } else { lb.push(e) }
        }
    }
    (la, lb)
}

/// Prints p50/p99 of both and the two estimates of b's extra cost.
fn compare(label_a: &str, label_b: &str, a: Vec<Duration>, b: Vec<Duration>) {
    // The median of the per-step differences: less sensitive to slow phases of the machine
    // than the difference of the medians.
    let mut diffs: Vec<f64> = a.iter().zip(&b).map(|(x, y)| us(*y) - us(*x)).collect();
    diffs.sort_by(f64::total_cmp);
    let paired = diffs[diffs.len() / 2];
    let (mut a, mut b) = (a, b);
    a.sort();
    b.sort();
    let (a50, a99) = (percentile(&a, 0.5), percentile(&a, 0.99));
    let (b50, b99) = (percentile(&b, 0.5), percentile(&b, 0.99));
    println!(
        "  {label_a:<38} p50 {:7.2} us  p99 {:7.2} us",
        us(a50),
        us(a99)
    );
    println!(
        "  {label_b:<38} p50 {:7.2} us  p99 {:7.2} us",
        us(b50),
        us(b99)
    );
    println!(
        "  difference: p50 {:+.1}% ({:+.2} us); median per-step {:+.3} us ({:+.1}%)",
        (us(b50) / us(a50) - 1.0) * 100.0,
        us(b50) - us(a50),
        paired,
        paired / us(a50) * 100.0
    );
}

fn ipc_bench(iters: usize) {
    use oxh_samgr::samgr_method::{ECHO, ECHO_CHECKED};
    let d = start_daemon();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let dev = oxh_sdk::Device::connect(d.dir.path())
            .await
            .expect("connect");
        let samgr = dev.samgr();
        let me = samgr.whoami().await.expect("whoami");
        let msg = [0x5au8; MSG];
        assert_eq!(
            samgr
                .echo_checked(&msg)
                .await
                .expect("this process holds DUMP"),
            msg
        );
        let checks = |dump: String| -> String {
            dump.lines()
                .find(|l| l.trim_start().starts_with("checks:"))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let before = checks(samgr.dump(3503, vec![]).await.expect("dump"));
        println!(
            "IPC: caller pid {} uid {} token {:#010x} ({}); {iters} steps of one call of each \
             ({MSG} bytes), random order per step",
            me.pid,
            me.uid,
            me.token_id,
            me.token_type.as_str()
        );
        let c = dev.client();
        pairs(c, ECHO, ECHO_CHECKED, iters / 10).await;
        // A/A first: Echo against itself shows what "no difference" measures as here.
        let (a, b) = pairs(c, ECHO, ECHO, iters).await;
        println!("A/A control:");
        compare("Echo", "Echo", a, b);
        let (a, b) = pairs(c, ECHO, ECHO_CHECKED, iters).await;
        println!("A/B (goal: < 5%):");
        compare(
            "Echo (no permission)",
            "EchoChecked (ohos.permission.DUMP)",
            a,
            b,
        );
        let after = checks(samgr.dump(3503, vec![]).await.expect("dump"));
        println!("atm counters before: {before}; after: {after}");
    });
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let iters: usize = std::env::var("OXH_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    println!(
        "atm bench, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    verify_bench();
    ipc_bench(iters);
}
