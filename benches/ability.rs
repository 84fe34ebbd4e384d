//! App start benchmark (issue 15): cold and hot start of the notes example through the
//! ability manager (the `aa start -W` TotalTime: request to the end of `onForeground`),
//! beside the limits measured in the same run: a bare fork+exec of `/bin/true`, and
//! `unshare --mount /bin/true`. Also the RSS of the idle app process and the stripped size of
//! the notes library. Then a service connection: notes calls the counter example's remote
//! object app to app, beside a round trip to the daemon (a parameter read) from the same
//! thread (both timed inside the app, which logs them). Needs root (app sandboxes).
//!
//! Run: `cargo bench --bench ability` (env OXH_BENCH_ITERS, default 30; OXH_BENCH_CALLS,
//! default 2000).

mod common;
use common::{Daemon, build_examples, ms, oxh, pct};

use std::process::Command;
use std::time::{Duration, Instant};

const NOTES: &str = "com.example.notes";

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        println!("ability bench: needs root (app sandboxes); not measured");
        return;
    }
    let iters: usize = std::env::var("OXH_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let calls: i64 = common::env_num("OXH_BENCH_CALLS", 2000);
    let (lib, counter_lib) = build_examples();
    let d = Daemon::start_temp(common::LOOPBACK);
    let work = tempfile::tempdir().unwrap();
    common::install_example(&[&d], work.path(), "notes", NOTES, &lib, &[]);
    common::install_example(
        &[&d],
        work.path(),
        "counter",
        "com.example.counter",
        &counter_lib,
        &[],
    );
    let rt = common::runtime();
    let dev = rt.block_on(oxh_sdk::Device::connect(&d.dir)).unwrap();
    let am = dev.ability();
    let want = oxh_sdk::ability::Want::explicit(NOTES, "EntryAbility");
    // Warm-up: the first start pages the binaries in.
    rt.block_on(am.start_ability(want.clone(), true)).unwrap();
    rt.block_on(am.force_stop(NOTES)).unwrap();

    let (mut cold, mut cold_wall, mut hot) = (Vec::new(), Vec::new(), Vec::new());
    let mut rss_kib = 0u64;
    for i in 0..iters {
        // Wait until the previous process is gone, so every cold start really spawns.
        let end = Instant::now() + Duration::from_secs(5);
        while rt
            .block_on(am.dump())
            .unwrap()
            .iter()
            .any(|r| r.pid.is_some())
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = Instant::now();
        let r = rt.block_on(am.start_ability(want.clone(), true)).unwrap();
        cold_wall.push(t.elapsed());
        let s = r.started.expect("waited");
        assert!(s.cold, "run {i} was not cold");
        cold.push(Duration::from_micros(s.elapsed_us));
        let r = rt.block_on(am.start_ability(want.clone(), true)).unwrap();
        let s = r.started.expect("waited");
        assert!(!s.cold);
        hot.push(Duration::from_micros(s.elapsed_us));
        if i == 0 {
            let pid = rt
                .block_on(am.dump())
                .unwrap()
                .iter()
                .find_map(|r| r.pid)
                .unwrap();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            rss_kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
        }
        rt.block_on(am.force_stop(NOTES)).unwrap();
    }
    let fork_exec = common::time_runs(iters, "/bin/true", &[]).unwrap();
    let unshare = common::time_runs(iters, "unshare", &["--mount", "/bin/true"]);
    let stripped = work.path().join("libnotes.stripped.so");
    let size = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&lib)
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&stripped).ok())
        .map(|m| m.len());

    let f = pct(fork_exec.clone(), 50);
    println!("app start (notes, {iters} runs; TotalTime = request to the end of onForeground)");
    println!(
        "  cold start   p50 {:>7.2} ms  p90 {:>7.2} ms   (aa -W wall p50 {:.2} ms)  = {:.1}x fork+exec",
        ms(pct(cold.clone(), 50)),
        ms(pct(cold.clone(), 90)),
        ms(pct(cold_wall, 50)),
        ms(pct(cold.clone(), 50)) / ms(f)
    );
    println!(
        "  hot start    p50 {:>7.2} ms  p90 {:>7.2} ms",
        ms(pct(hot.clone(), 50)),
        ms(pct(hot, 90))
    );
    println!("  fork+exec /bin/true          p50 {:>7.2} ms", ms(f));
    match unshare {
        Some(u) => println!(
            "  unshare --mount /bin/true    p50 {:>7.2} ms",
            ms(pct(u, 50))
        ),
        None => println!("  unshare --mount /bin/true    not measured (unshare failed)"),
    }
    println!("  idle app RSS {:.1} MiB", rss_kib as f64 / 1024.0);
    match size {
        Some(b) => println!(
            "  libnotes.so stripped {:.2} MiB",
            b as f64 / (1 << 20) as f64
        ),
        None => println!("  libnotes.so stripped: not measured (no strip)"),
    }

    // A service connection, timed inside the client app.
    let mut w = want.clone();
    w.parameters
        .insert("connect".into(), oxh_sdk::ability::WantParam::Bool(true));
    w.parameters.insert(
        "bench_calls".into(),
        oxh_sdk::ability::WantParam::Int(calls),
    );
    rt.block_on(am.start_ability(w, true)).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let line = loop {
        let log = oxh(&d.dir, &["hilog", "-x", "-T", "Notes"]);
        if let Some(l) = log
            .lines()
            .find_map(|l| l.split_once("EntryAbility bench "))
        {
            break Some(l.1.trim().to_string());
        }
        if Instant::now() > end {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some(line) = line else {
        println!("service connection: not measured (the app logged no result in 60 s)");
        return;
    };
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (r50, r99) = (field("remote_p50_us"), field("remote_p99_us"));
    let (i50, i99) = (field("ipc_p50_us"), field("ipc_p99_us"));
    println!("service connection (notes -> counter, {calls} calls each, timed in the app)");
    println!(
        "  sendRequest app to app   p50 {r50:>6.1} us  p99 {r99:>6.1} us  = {:.2}x the daemon round trip",
        r50 / i50
    );
    println!("  daemon round trip (param get)  p50 {i50:>6.1} us  p99 {i99:>6.1} us");
}
