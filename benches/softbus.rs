//! Soft bus benchmark: two devices on loopback, each a real `oxhd`, bound with a PIN.
//! Measures, beside iperf3 over TCP loopback in the same run: bytes throughput (app to app,
//! through both daemons), message round trip p50/p99 (app → daemon → QUIC → daemon → app and
//! back), time from a daemon's start to its trusted peer ONLINE, and PIN bind time.
//!
//! Run: `cargo bench --bench softbus` (needs iperf3 for the peer figure; it is skipped with a
//! note when missing). `OXH_BENCH_ROUNDS` changes the round-trip count.

mod common;
use common::Daemon;

use oxh_sdk::bus::{DataType, SocketEvent};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(dir: &std::path::Path, peers: &[String]) -> (Daemon, Instant) {
    let t = Instant::now();
    let mut args: Vec<&str> = common::LOOPBACK.to_vec();
    for p in peers {
        args.extend(["--peer", p.as_str()]);
    }
    (Daemon::start_in(dir, &args), t)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn iperf3() -> Option<f64> {
    let mut server = Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", "5299", "-1"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let out = loop {
        let o = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", "5299", "-t", "3", "-J"])
            .output()
            .ok()?;
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["end"]["sum_received"]["bits_per_second"].as_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("OXH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let base = tempfile::tempdir().expect("tmp");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");

    let (a, _) = start(&base.path().join("a"), &[]);
    let (mut b, _) = start(&base.path().join("b"), &[a.field("bus")]);

    // PIN bind time (median of 5 fresh pairs would need 5 pairs; one pair, bound once, plus
    // four more binds against fresh devices).
    let mut bind_times = Vec::new();
    rt.block_on(async {
        let da = oxh_sdk::Device::connect(&a.dir).await.expect("a");
        let db = oxh_sdk::Device::connect(&b.dir).await.expect("b");
        let pin = db.device_manager().issue_pin().await.expect("pin");
        let t = Instant::now();
        da.device_manager()
            .bind(&b.field("bus"), &pin.pin)
            .await
            .expect("bind");
        bind_times.push(t.elapsed());
    });
    for i in 0..4 {
        let (c, _) = start(&base.path().join(format!("c{i}")), &[]);
        rt.block_on(async {
            let da = oxh_sdk::Device::connect(&a.dir).await.expect("a");
            let dc = oxh_sdk::Device::connect(&c.dir).await.expect("c");
            let pin = dc.device_manager().issue_pin().await.expect("pin");
            let t = Instant::now();
            da.device_manager()
                .bind(&c.field("bus"), &pin.pin)
                .await
                .expect("bind");
            bind_times.push(t.elapsed());
            da.device_manager()
                .unbind(&c.field("udid"))
                .await
                .expect("unbind");
        });
    }

    eprintln!(
        "bound ({} binds); measuring start-to-online",
        bind_times.len()
    );
    // Start-to-ONLINE: restart b; it dials a from its static peer.
    let mut online_times = Vec::new();
    for _ in 0..5 {
        drop(b);
        let (watch, da) = rt.block_on(async {
            let da = oxh_sdk::Device::connect(&a.dir).await.expect("a");
            let w = da.device_manager().on_state_change().await.expect("watch");
            (w, da)
        });
        let mut watch = watch;
        let (nb, t) = start(&base.path().join("b"), &[a.field("bus")]);
        b = nb;
        let nid = b.field("network_id");
        rt.block_on(async {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
                    Ok(Some(oxh_softbus::api::StateEvent::Online(v)))
                        if v.network_id.as_deref() == Some(nid.as_str()) =>
                    {
                        online_times.push(t.elapsed());
                        break;
                    }
                    Ok(Some(_)) => {}
                    _ => panic!("b did not come online"),
                }
            }
        });
        drop(da);
    }

    eprintln!("online times measured; measuring round trips and throughput");
    // Message round trip and bytes throughput, app to app.
    let (rtt, mbps) = rt.block_on(async {
        let da = oxh_sdk::Device::connect(&a.dir).await.expect("a");
        let db = oxh_sdk::Device::connect(&b.dir).await.expect("b");
        let mut l = db.bus().listen("bench").await.expect("listen");
        let (sock, mut replies) = da
            .bus()
            .bind(&b.field("network_id"), "bench", "bench-a", DataType::Bytes)
            .await
            .expect("bind socket");
        let SocketEvent::Bind { socket: peer, .. } = l.next().await.expect("bind ev") else {
            panic!("expected bind")
        };
        // Echo on b.
        let db2 = db.clone();
        let echo = tokio::spawn(async move {
            while let Some(e) = l.next().await {
                // Echo messages; acknowledge each bytes payload with its size.
                let reply = match e {
                    SocketEvent::Message { data, .. } => data,
                    SocketEvent::Bytes { data, .. } => (data.len() as u64).to_le_bytes().to_vec(),
                    _ => continue,
                };
                if db2.bus().send_message(peer, &reply).await.is_err() {
                    break;
                }
            }
        });
        let msg = [7u8; 64];
        let mut lat = Vec::with_capacity(rounds);
        for i in 0..rounds + rounds / 10 {
            let t = Instant::now();
            da.bus().send_message(sock, &msg).await.expect("send");
            match replies.next().await {
                Some(SocketEvent::Message { .. }) => {}
                other => panic!("{other:?}"),
            }
            if i >= rounds / 10 {
                lat.push(t.elapsed());
            }
        }
        eprintln!("round trips done; bytes throughput");
        let payload = vec![1u8; 4 << 20];
        let total: usize = 512 << 20;
        let n = total / payload.len();
        let t = Instant::now();
        // Keep up to 4 payloads in flight.
        let mut in_flight = 0;
        let mut acked = 0;
        for _ in 0..n {
            da.bus().send_bytes(sock, &payload).await.expect("bytes");
            in_flight += 1;
            while in_flight >= 4 {
                if let Some(SocketEvent::Message { .. }) = replies.next().await {
                    in_flight -= 1;
                    acked += 1;
                }
            }
        }
        while acked < n {
            if let Some(SocketEvent::Message { .. }) = replies.next().await {
                acked += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        echo.abort();
        (lat, (n * payload.len()) as f64 / secs / 1e6)
    });
    let mut rtt = rtt;
    let (p50, p99) = (pct(&mut rtt, 0.5), pct(&mut rtt, 0.99));
    let iperf = iperf3();

    println!(
        "soft bus bench: 2 devices on loopback, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    match iperf {
        Some(bps) => println!(
            "iperf3 TCP loopback           {:8.0} MB/s ({:.1} Gbit/s)",
            bps / 8e6,
            bps / 1e9
        ),
        None => {
            println!("iperf3 TCP loopback           (iperf3 not installed: apt-get install iperf3)")
        }
    }
    println!(
        "bytes app->app (4 MiB x {})  {:8.0} MB/s{}",
        (512 << 20) / (4 << 20),
        mbps,
        iperf
            .map(|b| format!("  = {:.2}x iperf3", mbps / (b / 8e6)))
            .unwrap_or_default()
    );
    println!(
        "message RTT 64 B app->app    p50 {:7.1} us  p99 {:7.1} us  (Zenoh z_ping here: p50 55 us)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    let mut on = online_times.clone();
    let mut bt = bind_times.clone();
    println!(
        "start -> trusted peer ONLINE  median {:6.1} ms of {} (goal < 1 s)",
        pct(&mut on, 0.5).as_secs_f64() * 1e3,
        on.len()
    );
    println!(
        "PIN bind                      median {:6.1} ms of {} (goal < 1 s)",
        pct(&mut bt, 0.5).as_secs_f64() * 1e3,
        bt.len()
    );
}
