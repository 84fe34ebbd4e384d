//! The web console under load, in Debian's headless Chromium: 32 devices (this one and 31
//! bound to it, each a real `oxhd` on loopback) and hilog lines written at 1,000 a second
//! through the SDK.
//!
//! Reports, beside their limits measured in the same run:
//! - the topology: from opening the page to the graph drawn with all 32 devices online, beside
//!   the console's own `/api/devices` answer time (what the page waits for); and the page's
//!   render time of one update;
//! - the logs: lines the page showed per second, beside the 1,000 a second written (the
//!   ratio), the lines it had to drop, and the longest the page was busy (how late a 100 ms
//!   timer fired) while drawing them.
//!
//! Run: `cargo bench --bench console` (needs chromium and chromium-driver: scripts/deps).
//! `OXH_BENCH_CONSOLE_DEVICES` and `OXH_BENCH_LOG_RATE` change the size.

mod common;

use common::{Daemon, LOOPBACK};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the log load runs.
const LOG_SECONDS: u64 = 10;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's stdout lines until one starts with `prefix`.
fn line_starting(child: &mut Child, prefix: &str) -> String {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line starting {prefix:?}"));
        if l.starts_with(prefix) || l.contains(prefix) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return l;
        }
    }
}

async fn eval(c: &Client, js: &str) -> Value {
    c.execute(js, vec![]).await.expect("script")
}

async fn until(c: &Client, bound: Duration, js: &str) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < bound {
        let v = eval(c, js).await;
        if !(v.is_null() || v == Value::Bool(false)) {
            return t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within {bound:?}: {js}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for p in [CHROMIUM, CHROMEDRIVER] {
        if !std::path::Path::new(p).exists() {
            eprintln!("console bench skipped: {p} missing (scripts/deps installs it)");
            return;
        }
    }
    let n: usize = common::env_num("OXH_BENCH_CONSOLE_DEVICES", 32);
    let rate: u64 = common::env_num("OXH_BENCH_LOG_RATE", 1000);
    let base = tempfile::tempdir().expect("tmp");
    let rt = common::multi_thread_runtime();

    // The devices: dev1 and n-1 others bound to it (the console shows what dev1 trusts).
    let t_up = Instant::now();
    let first = Daemon::start_in(
        &base.path().join("dev1"),
        &[LOOPBACK, &["--name", "dev1"]].concat(),
    );
    let bus1 = first.field("bus");
    let mut others = Vec::new();
    for i in 2..=n {
        let name = format!("dev{i}");
        others.push(Daemon::start_in(
            &base.path().join(&name),
            &[LOOPBACK, &["--name", &name, "--peer", &bus1]].concat(),
        ));
    }
    rt.block_on(async {
        let d1 = first.sdk().await;
        for o in &others {
            let d = o.sdk().await;
            let pin = d.device_manager().issue_pin().await.expect("pin");
            d1.device_manager()
                .bind(&o.field("bus"), &pin.pin)
                .await
                .expect("bind");
        }
        let t = Instant::now();
        while d1
            .device_manager()
            .trusted_devices()
            .await
            .expect("trusted")
            .iter()
            .filter(|t| t.online)
            .count()
            < n - 1
        {
            assert!(t.elapsed() < Duration::from_secs(60), "devices not online");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    eprintln!(
        "{n} devices up and bound in {:.1} s",
        t_up.elapsed().as_secs_f64()
    );

    let mut console = Command::new(env!("CARGO_BIN_EXE_oxh"))
        .arg("--data-dir")
        .arg(&first.dir)
        .args(["console", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("oxh console");
    let url = line_starting(&mut console, "oxh console: ")
        .trim_start_matches("oxh console: ")
        .to_string();
    let _console = Proc(console);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver");
    line_starting(&mut driver, "ChromeDriver was started successfully");
    let _driver = Proc(driver);

    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--window-size=1280,1000"] }),
        );
        let c = ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("session");

        // The console's own answer, measured the way the page's first event is made.
        let cookie_url = url.clone();
        let api_ms = {
            let origin = cookie_url.split("/?token=").next().unwrap_or_default().to_string();
            let token = cookie_url.split("token=").nth(1).unwrap_or_default().to_string();
            let mut v = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let (code, _) = get(&origin, "/api/devices", &token);
                assert_eq!(code, 200);
                v.push(t.elapsed().as_secs_f64() * 1e3);
            }
            median(v)
        };
        let t0 = Instant::now();
        c.goto(&url).await.expect("open");
        let shown = until(
            &c,
            Duration::from_secs(30),
            &format!(
                "return document.querySelectorAll('#topology g[data-state=online]').length === {}",
                n - 1
            ),
        )
        .await;
        let to_graph = t0.elapsed().max(shown);
        // Let a few refreshes come, then read the page's own render times.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let renders = eval(&c, "return window.__oxh.topologyRenders.map(r => r.ms)").await;
        let render_ms = median(
            renders
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default(),
        );

        // The log load: `rate` lines a second for LOG_SECONDS, in batches every 10 ms.
        c.find(fantoccini::Locator::Css("#tabs button[data-panel='logs']"))
            .await
            .expect("tab")
            .click()
            .await
            .expect("click");
        until(
            &c,
            Duration::from_secs(10),
            "return /lines shown/.test(document.getElementById('log-stats').textContent)",
        )
        .await;
        eval(&c, "window.__oxh.maxLagMs = 0; return 0").await;
        let before = eval(&c, "return window.__oxh.linesShown").await.as_u64().unwrap_or(0);
        let d1 = first.sdk().await;
        let per_tick = (rate / 100).max(1);
        let total = per_tick * 100 * LOG_SECONDS;
        let t_log = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut written = 0u64;
        while written < total {
            tick.tick().await;
            for _ in 0..per_tick {
                d1.hilog()
                    .info(0x2000, "bench", "line %{public}d", &[oxh_sdk::hilog::LogArg::Int(written as i64)])
                    .await
                    .expect("write");
                written += 1;
            }
        }
        let wrote_s = t_log.elapsed().as_secs_f64();
        // Wait (bounded) until the page caught up or stopped gaining.
        let mut last = 0;
        let t_drain = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = eval(&c, "return window.__oxh.linesShown").await.as_u64().unwrap_or(0);
            if now - before >= written || now == last || t_drain.elapsed() > Duration::from_secs(20) {
                last = now;
                break;
            }
            last = now;
        }
        let shown_s = t_log.elapsed().as_secs_f64();
        let shown_lines = last - before;
        let dropped = eval(&c, "return document.getElementById('log-stats').textContent").await;
        let lag = eval(&c, "return window.__oxh.maxLagMs").await.as_f64().unwrap_or(f64::NAN);
        let _ = c.close().await;

        println!("console, {n} devices (dev1 and {} bound to it), Chromium {}", n - 1, chromium_version());
        println!(
            "  topology: page open to all {n} drawn {:.0} ms; /api/devices answers in {:.1} ms (ratio {:.1}x); one render {:.2} ms",
            to_graph.as_secs_f64() * 1e3,
            api_ms,
            to_graph.as_secs_f64() * 1e3 / api_ms,
            render_ms
        );
        println!(
            "  logs: {written} lines written at {:.0}/s; the page showed {shown_lines} at {:.0}/s ({:.2}x the written rate), stats: {}",
            written as f64 / wrote_s,
            shown_lines as f64 / shown_s,
            (shown_lines as f64 / shown_s) / (written as f64 / wrote_s),
            dropped.as_str().unwrap_or("")
        );
        println!("  the page's longest busy spell while drawing them: {lag:.0} ms (a 100 ms timer's lateness)");
    });
}

fn chromium_version() -> String {
    Command::new(CHROMIUM)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// One GET with the console's cookie; (status, body).
fn get(origin: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = origin.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nCookie: oxh_console={token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}
