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
//! 3. Tokens across devices (two real daemons on loopback, bound with a PIN): a remote call
//!    (dbinder: app → A → QUIC → B's samgr gate with the synced token → back) beside a local
//!    call, alternating; and, with an app running as `nobody` calling B in a loop through A,
//!    the time from the start of a revocation on A to the app's first refused call on B
//!    (goal: < 1 s), and to B's copy of the token being updated by the push.
//!
//! Run: `cargo bench --bench atm` (env OXH_BENCH_ITERS: round trips per method, default
//! 50,000). Pinned: `taskset -c 0 target/release/deps/atm-* --bench`. Part 3's revocation
//! figure needs root (the app runs as `nobody` through runuser) and says so otherwise.

mod common;
use common::Daemon;

use oxh_atm::rules::{HapPolicy, flag};
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
        let info = oxh_atm::test_util::app(&format!("com.example.app{i}"), None);
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

fn start_daemon() -> Daemon {
    Daemon::start_temp(common::LOOPBACK)
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
    let rt = common::runtime();
    rt.block_on(async {
        let dev = d.sdk().await;
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
    let iters: usize = common::env_num("OXH_BENCH_ITERS", 50_000);
    println!(
        "atm bench, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return remote_app_child(&spec);
    }
    verify_bench();
    ipc_bench(iters);
    tokensync_bench(iters / 10);
}

const CHILD_ENV: &str = "OXH_ATM_BENCH_CHILD";
const DATASYNC: &str = "ohos.permission.DISTRIBUTED_DATASYNC";
const REMOTE_APP: &str = "com.example.benchremote";
const FLIPS: usize = 20;

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The app (as nobody): calls B through A in a loop and prints each change of outcome with
/// the wall-clock time it saw it ("ok NS" / "denied NS"), until stdin closes or 120 s pass.
fn remote_app_child(spec: &str) {
    use std::io::Write;
    let mut it = spec.split(' ');
    let (dir, peer) = (
        it.next().expect("dir").to_string(),
        it.next().expect("peer").to_string(),
    );
    let rt = common::runtime();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
        let _ = tx.send(());
    });
    rt.block_on(async {
        let dev = oxh_sdk::Device::connect(&dir).await.expect("connect");
        let s = dev.samgr();
        let mut last: Option<bool> = None;
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end && rx.try_recv().is_err() {
            let ok = s
                .call_remote_raw(&peer, 0, oxh_samgr::samgr_method::ECHO, vec![1])
                .await
                .is_ok();
            if last != Some(ok) {
                println!("{} {}", if ok { "ok" } else { "denied" }, now_ns());
                let _ = std::io::stdout().flush();
                last = Some(ok);
            }
        }
    });
}

fn tokensync_bench(iters: usize) {
    use oxh_samgr::samgr_method::ECHO;
    let a = start_daemon();
    let b = start_daemon();
    let rt = common::runtime();
    let b_net = b.field("network_id");
    rt.block_on(async {
        let da = oxh_sdk::Device::connect(a.dir.as_path()).await.expect("a");
        let db = oxh_sdk::Device::connect(b.dir.as_path()).await.expect("b");
        let pin = db.device_manager().issue_pin().await.expect("pin");
        da.device_manager()
            .bind(&b.field("bus"), &pin.pin)
            .await
            .expect("bind");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !da
            .device_manager()
            .trusted_devices()
            .await
            .expect("trusted")
            .iter()
            .any(|t| t.online)
        {
            assert!(Instant::now() < deadline, "B never came online");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = da.samgr();
        let msg = vec![0x5au8; MSG];
        for _ in 0..iters / 10 {
            s.call_remote_raw(&b_net, 0, ECHO, msg.clone())
                .await
                .expect("warm");
        }
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for _ in 0..iters {
            let t = Instant::now();
            s.echo(&msg).await.expect("local");
            local.push(t.elapsed());
            let t = Instant::now();
            let r = s
                .call_remote_raw(&b_net, 0, ECHO, msg.clone())
                .await
                .expect("remote");
            remote.push(t.elapsed());
            assert_eq!(r, msg);
        }
        println!("tokens across devices: {iters} steps of a local and a remote Echo ({MSG} bytes)");
        compare(
            "local Echo (app -> A)",
            "remote Echo (app -> A -> B)",
            local,
            remote,
        );
    });
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("  revocation latency: skipped (needs root to run the app as nobody)");
        return;
    }
    // The app: a HAP token for nobody's uid, created with the daemon's own token (only the
    // bundle manager may create tokens; this process takes oxhd's name for the connection).
    let comm = format!("/proc/self/task/{}/comm", std::process::id());
    let old = std::fs::read_to_string(&comm).unwrap_or_default();
    std::fs::write(&comm, "oxhd").expect("set comm");
    let da = rt
        .block_on(oxh_sdk::Device::connect(a.dir.as_path()))
        .expect("a");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(a.dir.as_path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    rt.block_on(async {
        let info = oxh_atm::test_util::app(REMOTE_APP, Some(65_534));
        da.atm()
            .alloc_hap_token(info, HapPolicy::normal(&[DATASYNC]))
            .await
            .expect("alloc");
    });
    // The daemon resolved the connection's caller before it answered; the name can go back.
    let _ = std::fs::write(&comm, old.trim());
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new("runuser")
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("{CHILD_ENV}={} {b_net}", a.dir.as_path().display()))
        .arg(&exe)
        .arg("--bench")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runuser");
    let (tx, lines) = std::sync::mpsc::channel::<(bool, u128)>();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let mut w = l.split(' ');
            if let (Some(k), Some(t)) = (w.next(), w.next().and_then(|t| t.parse().ok())) {
                let _ = tx.send((k == "ok", t));
            }
        }
    });
    let target = oxh_atm::api::TokenTarget::Bundle {
        user_id: 100,
        bundle_name: REMOTE_APP.into(),
        inst_index: 0,
    };
    let wait = |want: bool| -> u128 {
        loop {
            match lines.recv_timeout(Duration::from_secs(10)) {
                Ok((ok, t)) if ok == want => return t,
                Ok(_) => continue,
                Err(_) => panic!("the app never saw {}", if want { "ok" } else { "denied" }),
            }
        }
    };
    wait(false);
    let (mut refused, mut pushed) = (Vec::new(), Vec::new());
    let db = rt
        .block_on(oxh_sdk::Device::connect(b.dir.as_path()))
        .expect("b");
    for _ in 0..FLIPS {
        rt.block_on(da.atm().grant(target.clone(), DATASYNC, flag::USER_SET))
            .expect("grant");
        wait(true);
        let t0 = now_ns();
        let t = Instant::now();
        rt.block_on(da.atm().revoke(target.clone(), DATASYNC, flag::USER_SET))
            .expect("revoke");
        // B's copy: polled until the push lands.
        rt.block_on(async {
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                let copy = db.atm().tokens().await.expect("tokens");
                if copy
                    .iter()
                    .any(|c| c.name == REMOTE_APP && c.remote_udid.is_some() && c.granted == 0)
                {
                    pushed.push(t.elapsed());
                    return;
                }
            }
        });
        let t1 = wait(false);
        refused.push(Duration::from_nanos(t1.saturating_sub(t0) as u64));
    }
    drop(child.stdin.take());
    let _ = child.wait();
    refused.sort();
    pushed.sort();
    println!(
        "  revocation on A -> the app's first refused call on B ({FLIPS} revocations): p50 {:.2} ms, max {:.2} ms (goal: < 1000 ms)",
        us(percentile(&refused, 0.5)) / 1000.0,
        us(*refused.last().expect("runs")) / 1000.0
    );
    if !pushed.is_empty() {
        println!(
            "  revocation on A -> B's copy of the token updated (push, {} of {FLIPS}): p50 {:.2} ms, max {:.2} ms",
            pushed.len(),
            us(percentile(&pushed, 0.5)) / 1000.0,
            us(*pushed.last().expect("runs")) / 1000.0
        );
    }
}
