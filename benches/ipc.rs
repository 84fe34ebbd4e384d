//! IPC benchmark: a 64-byte request through oxhd's whole dispatch path (SDK → socket → samgr →
//! SA → reply) beside a raw Unix-socket ping-pong measured in the same run; plus the idle
//! daemon's resident memory and its start-to-ready time.
//!
//! Run: `cargo bench --bench ipc` (env OXH_BENCH_ITERS to change the round-trip count).

mod common;
use common::Daemon;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

const ECHO_ENV: &str = "OXH_BENCH_ECHO_SOCKET";
const MSG: usize = 64;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The raw peer: a separate process that echoes 64-byte messages on a Unix socket, blocking.
fn echo_server(path: &str) {
    let l = UnixListener::bind(path).expect("bind");
    let (mut s, _) = l.accept().expect("accept");
    let mut buf = [0u8; MSG];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

fn raw_ping_pong(iters: usize, warmup: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("echo.sock");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(ECHO_ENV, &path)
        .spawn()
        .expect("spawn echo");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("echo server: {e}"),
        }
    };
    let msg = [0x5au8; MSG];
    let mut buf = [0u8; MSG];
    let mut lat = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t = Instant::now();
        s.write_all(&msg).expect("write");
        s.read_exact(&mut buf).expect("read");
        if i >= warmup {
            lat.push(t.elapsed());
        }
    }
    drop(s);
    let _ = child.wait();
    lat.sort();
    lat
}

fn start_daemon() -> (Daemon, Duration) {
    let t = Instant::now();
    let d = Daemon::start_temp(&[]);
    // Ready means answering calls: time until the first round trip completes.
    let sock = d.dir.join("run/oxhd.sock");
    let rt = common::runtime();
    rt.block_on(async {
        let c = oxh_ipc::Client::connect(&sock).await.expect("connect");
        c.call_raw(0, oxh_samgr::samgr_method::ECHO, b"x")
            .await
            .expect("echo");
    });
    let elapsed = t.elapsed();
    (d, elapsed)
}

fn ipc_round_trips(d: &Daemon, iters: usize, warmup: usize) -> Vec<Duration> {
    let rt = common::runtime();
    rt.block_on(async {
        let dev = d.sdk().await;
        let samgr = dev.samgr();
        let msg = [0x5au8; MSG];
        let mut lat = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            let t = Instant::now();
            let r = samgr.echo(&msg).await.expect("echo");
            if i >= warmup {
                lat.push(t.elapsed());
            }
            assert_eq!(r.len(), MSG);
        }
        lat.sort();
        lat
    })
}

fn main() {
    if let Ok(p) = std::env::var(ECHO_ENV) {
        echo_server(&p);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let iters: usize = common::env_num("OXH_BENCH_ITERS", 100_000);
    let warmup = iters / 10;
    println!(
        "ipc bench: {iters} round trips of {MSG} bytes (after {warmup} warm-up), {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // Start-to-ready, median of 10 fresh starts.
    let mut starts = Vec::new();
    let mut ready_lines = Vec::new();
    for _ in 0..10 {
        let (d, t) = start_daemon();
        starts.push(t);
        ready_lines.push(d.ready.clone());
    }
    starts.sort();

    let (daemon, _) = start_daemon();
    let raw = raw_ping_pong(iters, warmup);
    let ipc = ipc_round_trips(&daemon, iters, warmup);
    let raw2 = raw_ping_pong(iters, warmup);
    // Idle memory: after the round trips, once the daemon has settled.
    std::thread::sleep(Duration::from_millis(500));
    let rss = oxh_kal::resident_memory(daemon.child.id() as i32).unwrap_or(0);

    let (r50, r99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    let (r50b, r99b) = (percentile(&raw2, 0.5), percentile(&raw2, 0.99));
    let (i50, i99) = (percentile(&ipc, 0.5), percentile(&ipc, 0.99));
    println!(
        "raw UDS ping-pong (before)   p50 {:7.2} us  p99 {:7.2} us",
        us(r50),
        us(r99)
    );
    println!(
        "raw UDS ping-pong (after)    p50 {:7.2} us  p99 {:7.2} us",
        us(r50b),
        us(r99b)
    );
    println!(
        "oxh IPC echo via samgr       p50 {:7.2} us  p99 {:7.2} us",
        us(i50),
        us(i99)
    );
    let raw_p50 = us(r50).min(us(r50b));
    println!(
        "ratio IPC/raw                p50 {:.2}x     p99 {:.2}x   (goal: p50 <= 3x and < 20 us)",
        us(i50) / raw_p50,
        us(i99) / us(r99).min(us(r99b))
    );
    println!(
        "idle daemon RSS              {:.1} MiB (goal < 15 MiB)",
        rss as f64 / (1 << 20) as f64
    );
    println!(
        "start-to-ready (spawn -> first reply), 10 starts: median {:.1} ms, min {:.1} ms, max {:.1} ms (goal < 100 ms)",
        starts[starts.len() / 2].as_secs_f64() * 1e3,
        starts[0].as_secs_f64() * 1e3,
        starts[starts.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "daemon's own ready line: {}",
        ready_lines[ready_lines.len() / 2]
    );
}
