//! Soft bus benchmark: two devices on loopback, each a real `oxhd`, bound with a PIN.
//! Measures, beside iperf3 over TCP loopback in the same run: bytes throughput (app to app,
//! through both daemons), message round trip p50/p99 (app → daemon → QUIC → daemon → app and
//! back), time from a daemon's start to its trusted peer ONLINE, and PIN bind time.
//!
//! Also the ceiling of the QUIC layer itself: "raw quinn", two quinn endpoints in this process
//! with the bus's TLS and transport configuration, one connection, 1 GiB over one stream and
//! over several, so that the gap between app-to-app and iperf3 splits into quinn's share and
//! ours.
//!
//! And files: 1 GiB app to app (SDK send_file, the receiver saving, checking and syncing it),
//! beside its own limits in the same run: writing and syncing 1 GiB to the same directory
//! (the receiver's way, O_DIRECT, and through the page cache),
//! and XXH3-128 over 1 GiB (each side checksums the file).
//!
//! Run: `cargo bench --bench softbus` (needs iperf3 for the peer figure; it is skipped with a
//! note when missing). Knobs: `OXH_BENCH_ROUNDS` (round trips, default 20,000),
//! `OXH_BENCH_FILE_MB` (file size, default 1024; 0 skips it), `OXH_BENCH_FILE_DIR` (where the
//! files go, e.g. a tmpfs to take the disk out), `OXH_BENCH_FILE_TRACE=1` (when each step of
//! the file was sent), `OXH_BENCH_ONLY=raw,rtt,bytes,file,online,bind` (only those parts), and
//! `OXH_QUIC=gso=0,cc=bbr|cubic|reno,iw=BYTES,mtu=BYTES,mtumax=BYTES,fair=0,ack=PACKETS,
//! swin=BYTES,rwin=BYTES` (the raw quinn transport, for experiments).

mod common;
use common::Daemon;

use oxh_sdk::bus::{DataType, SocketEvent};
use oxh_softbus::transport::quinn;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Is part `name` of the bench to run (`OXH_BENCH_ONLY`)?
fn wanted(name: &str) -> bool {
    match std::env::var("OXH_BENCH_ONLY") {
        Ok(v) => v.split(',').any(|p| p.trim() == name),
        Err(_) => true,
    }
}

/// The bus's transport configuration, changed by `OXH_QUIC` for experiments.
fn raw_transport() -> (quinn::TransportConfig, String) {
    let mut t = oxh_softbus::transport::transport_config(&Default::default(), true);
    let knobs = std::env::var("OXH_QUIC").unwrap_or_default();
    for kv in knobs.split(',').filter(|k| !k.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let n: u64 = v.parse().unwrap_or(0);
        match k {
            "gso" => {
                t.enable_segmentation_offload(n != 0);
            }
            "cc" => {
                let f: Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> = match v {
                    "bbr" => Arc::new(quinn::congestion::BbrConfig::default()),
                    "reno" => Arc::new(quinn::congestion::NewRenoConfig::default()),
                    _ => Arc::new(quinn::congestion::CubicConfig::default()),
                };
                t.congestion_controller_factory(f);
            }
            "iw" => {
                let mut c = quinn::congestion::CubicConfig::default();
                c.initial_window(n);
                t.congestion_controller_factory(Arc::new(c));
            }
            "mtu" => {
                t.initial_mtu(n as u16);
            }
            "mtumax" => {
                let mut m = quinn::MtuDiscoveryConfig::default();
                m.upper_bound(n as u16);
                t.mtu_discovery_config(Some(m));
            }
            "fair" => {
                t.send_fairness(n != 0);
            }
            "ack" => {
                let mut a = quinn::AckFrequencyConfig::default();
                a.ack_eliciting_threshold(quinn::VarInt::from_u32(n as u32));
                t.ack_frequency_config(Some(a));
            }
            "swin" => {
                t.send_window(n);
            }
            "rwin" => {
                t.receive_window(quinn::VarInt::from_u32(n as u32));
                t.stream_receive_window(quinn::VarInt::from_u32(n as u32));
            }
            other => panic!("unknown OXH_QUIC knob {other:?}"),
        }
    }
    (t, knobs)
}

/// 1 GiB (`total`) from one quinn endpoint to another over one connection split across
/// `streams` streams, written and read as `Bytes` chunks (no copies of ours); MB/s.
async fn raw_quinn(streams: usize, total: u64) -> f64 {
    let (t, _) = raw_transport();
    let (se, ce, cc, addr) = oxh_softbus::transport::probe_pair(t).expect("endpoints");
    let server = tokio::spawn(async move {
        let conn = se.accept().await.expect("incoming").await.expect("accept");
        let mut readers = Vec::new();
        for _ in 0..streams {
            let mut r = conn.accept_uni().await.expect("stream");
            readers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(c) = r.read_chunk(usize::MAX, false).await.expect("read") {
                    n += c.bytes.len() as u64;
                }
                n
            }));
        }
        let mut n = 0;
        for r in readers {
            n += r.await.expect("reader");
        }
        (n, se, conn)
    });
    let conn = ce
        .connect_with(cc, addr, "oxh-device")
        .expect("connect")
        .await
        .expect("handshake");
    let chunk = bytes::Bytes::from(vec![0x5au8; 1 << 20]);
    let per = total / streams as u64 / chunk.len() as u64;
    let t = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..streams {
        let conn = conn.clone();
        let chunk = chunk.clone();
        writers.push(tokio::spawn(async move {
            let mut s = conn.open_uni().await.expect("open");
            for _ in 0..per {
                s.write_chunk(chunk.clone()).await.expect("write");
            }
            s.finish().expect("finish");
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let (n, _se, _sconn) = server.await.expect("server");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, per * streams as u64 * chunk.len() as u64);
    conn.close(0u32.into(), b"done");
    ce.wait_idle().await;
    n as f64 / secs / 1e6
}

/// The file figure's own limits, in the same run: writing `mb` MiB into `dir` and syncing it
/// the way the receiver does (`oxh_kal::direct::SeqWriter`: O_DIRECT where the file system
/// takes it) and, for comparison, through the page cache; and the file checksum (XXH3-128)
/// over `mb` MiB in memory (what each side computes). MB/s each.
fn file_limits(dir: &std::path::Path, mb: u64) -> (f64, f64, f64) {
    use oxh_softbus::proto::FileHasher;
    use std::io::Write;
    let buf = vec![0x5au8; 1 << 20];
    let path = dir.join("disk.bin");
    let t = Instant::now();
    {
        let f = std::fs::File::create(&path).expect("disk file");
        let mut w = oxh_kal::direct::SeqWriter::new(f, 0);
        for _ in 0..mb {
            w.write(&buf).expect("write");
        }
        w.finish().expect("finish").sync_all().expect("sync");
    }
    let direct = (mb << 20) as f64 / t.elapsed().as_secs_f64() / 1e6;
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(&path).expect("disk file");
        for _ in 0..mb {
            f.write_all(&buf).expect("write");
        }
        f.sync_all().expect("sync");
    }
    let cached = (mb << 20) as f64 / t.elapsed().as_secs_f64() / 1e6;
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    let mut h = FileHasher::new();
    for _ in 0..mb {
        h.update(&buf);
    }
    std::hint::black_box(h.finish());
    let sum = (mb << 20) as f64 / t.elapsed().as_secs_f64() / 1e6;
    (direct, cached, sum)
}

/// The floor of any design in which an app's message passes through its device's daemon
/// (OpenHarmony's, and ours): 64 B round trips over the same six hops (app → daemon over a
/// Unix socket, daemon → daemon over UDP loopback, daemon → app, and back), with blocking
/// reads and writes and nothing else: no crypto, no framing, no runtime. Threads stand in
/// for the four processes, which makes it a lower bound (a thread switch skips the
/// address-space switch). A 1-byte message ends it.
fn relay_floor(rounds: usize) -> Vec<Duration> {
    use std::io::{Read, Write};
    use std::net::UdpSocket;
    use std::os::unix::net::UnixStream;
    let (mut app_a, mut dev_a) = UnixStream::pair().expect("uds a");
    let (mut app_b, mut dev_b) = UnixStream::pair().expect("uds b");
    let ua = UdpSocket::bind("127.0.0.1:0").expect("udp a");
    let ub = UdpSocket::bind("127.0.0.1:0").expect("udp b");
    ua.connect(ub.local_addr().expect("addr b"))
        .expect("connect a");
    ub.connect(ua.local_addr().expect("addr a"))
        .expect("connect b");
    // Daemon A: app's message out over UDP, the answer back to the app.
    let da = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let n = dev_a.read(&mut buf).expect("a read app");
            ua.send(&buf[..n]).expect("a send");
            if n == 1 {
                return;
            }
            let n = ua.recv(&mut buf).expect("a recv");
            dev_a.write_all(&buf[..n]).expect("a write app");
        }
    });
    // Daemon B: a datagram to its app, the app's answer back over UDP.
    let db = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let n = ub.recv(&mut buf).expect("b recv");
            dev_b.write_all(&buf[..n]).expect("b write app");
            if n == 1 {
                return;
            }
            let n = dev_b.read(&mut buf).expect("b read app");
            ub.send(&buf[..n]).expect("b send");
        }
    });
    // App B echoes.
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let n = app_b.read(&mut buf).expect("echo read");
            if n <= 1 {
                return;
            }
            app_b.write_all(&buf[..n]).expect("echo write");
        }
    });
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let t = Instant::now();
        app_a.write_all(&msg).expect("app write");
        app_a.read_exact(&mut buf).expect("app read");
        if i >= rounds / 10 {
            lat.push(t.elapsed());
        }
    }
    app_a.write_all(&[0]).expect("stop");
    for t in [da, db, echo] {
        t.join().expect("relay thread");
    }
    lat
}

/// Round trips of 64 B messages between two quinn endpoints in this process (one connection,
/// one stream, echoed by the server): QUIC's own share of a message round trip.
async fn raw_quinn_rtt(rounds: usize) -> Vec<Duration> {
    let (t, _) = raw_transport();
    let (se, ce, cc, addr) = oxh_softbus::transport::probe_pair(t).expect("endpoints");
    let server = tokio::spawn(async move {
        let conn = se.accept().await.expect("incoming").await.expect("accept");
        let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
        let mut buf = [0u8; 64];
        while recv.read_exact(&mut buf).await.is_ok() {
            if send.write_all(&buf).await.is_err() {
                break;
            }
        }
        drop(se);
    });
    let conn = ce
        .connect_with(cc, addr, "oxh-device")
        .expect("connect")
        .await
        .expect("handshake");
    let lat = tokio::spawn(async move {
        let (mut send, mut recv) = conn.open_bi().await.expect("open");
        let mut buf = [7u8; 64];
        let mut lat = Vec::with_capacity(rounds);
        for i in 0..rounds + rounds / 10 {
            let t = Instant::now();
            send.write_all(&buf).await.expect("write");
            recv.read_exact(&mut buf).await.expect("read");
            if i >= rounds / 10 {
                lat.push(t.elapsed());
            }
        }
        let _ = send.finish();
        conn.close(0u32.into(), b"done");
        lat
    })
    .await
    .expect("client");
    let _ = server.await;
    ce.wait_idle().await;
    lat
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

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

/// Zenoh's own round trip (its `z_pong` and `z_ping 64` examples, on this machine), the peer
/// of the message round trip: p50 in microseconds, or why it was not measured (the binaries
/// are not on PATH: build them from zenoh's examples and put them there).
fn zenoh_rtt() -> Result<f64, String> {
    let mut pong = Command::new("z_pong")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("z_pong: {e}"))?;
    let out = Command::new("z_ping")
        .args(["-n", "2000", "64"])
        .stderr(Stdio::null())
        .output();
    let _ = pong.kill();
    let _ = pong.wait();
    let out = out.map_err(|e| format!("z_ping: {e}"))?;
    // Lines like "64 bytes: seq=7 rtt=61µs lat=30µs".
    let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let v = l.split("rtt=").nth(1)?;
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .collect();
    if rtts.is_empty() {
        return Err("z_ping printed no rtt= lines".into());
    }
    rtts.sort_by(f64::total_cmp);
    Ok(rtts[rtts.len() / 2])
}

fn iperf3() -> Option<f64> {
    let mut server = Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", "5299"])
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

/// Sends a `mb` MiB file from a to b app to app (SDK send_file, b saving with
/// save_files_into: temp name, checksum checked, fsync'd, renamed); MB/s of each transfer.
async fn file_throughput(a: &Daemon, b: &Daemon, dir: &std::path::Path, mb: u64) -> Vec<f64> {
    let src = dir.join("src.bin");
    common::write_incompressible(&src, mb << 20);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("out");
    let da = oxh_sdk::Device::connect(&a.dir).await.expect("a");
    let db = oxh_sdk::Device::connect(&b.dir).await.expect("b");
    let mut l = db.bus().listen("bench-file").await.expect("listen");
    l.save_files_into(&out);
    let (sock, _ev) = da
        .bus()
        .bind(
            &b.field("network_id"),
            "bench-file",
            "bench-a",
            DataType::File,
        )
        .await
        .expect("bind socket");
    // Three transfers, median of the three. Each received file is removed, off the runtime
    // (unlinking 1 GiB takes a while, and this runtime also carries the sender's
    // confirmation), and the next transfer starts only once it is gone, so that no transfer
    // shares the disk with the previous one's unlink.
    let (removed_tx, mut removed_rx) = tokio::sync::mpsc::channel::<()>(FILE_RUNS);
    let recv = tokio::spawn(async move {
        let mut sizes = Vec::new();
        while sizes.len() < FILE_RUNS {
            match l.next().await {
                Some(SocketEvent::FileFinish { size, path, .. }) => {
                    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
                    let _ = removed_tx.send(()).await;
                    sizes.push(size);
                }
                Some(SocketEvent::FileError { reason, .. }) => panic!("file: {reason}"),
                Some(_) => {}
                None => panic!("listener closed"),
            }
        }
        sizes
    });
    let mut rates = Vec::new();
    for _ in 0..FILE_RUNS {
        let t = Instant::now();
        let mut marks = Vec::new();
        let sent = da
            .bus()
            .send_file(sock, &[&src], |p| {
                marks.push((p.sent >> 20, t.elapsed().as_millis()))
            })
            .await
            .expect("send file");
        let took = t.elapsed();
        if std::env::var_os("OXH_BENCH_FILE_TRACE").is_some() {
            eprintln!(
                "file steps (MiB sent, ms): {marks:?}; confirmed at {} ms",
                took.as_millis()
            );
        }
        rates.push(sent[0].size as f64 / took.as_secs_f64() / 1e6);
        removed_rx.recv().await.expect("receiver");
    }
    let sizes = recv.await.expect("receiver");
    assert!(sizes.iter().all(|s| *s == mb << 20));
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_dir_all(&out);
    rates
}

/// Bytes runs measured, each [`BYTES_PER_RUN`] in 4 MiB payloads, after one warm-up run of
/// the same size; the median is reported.
const BYTES_RUNS: usize = 3;
/// Bytes moved in one bytes run.
const BYTES_PER_RUN: usize = 1 << 30;

/// File transfers measured (see [`file_throughput`]).
const FILE_RUNS: usize = 3;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = common::env_num("OXH_BENCH_ROUNDS", 20_000);
    let file_mb: u64 = common::env_num("OXH_BENCH_FILE_MB", 1024);
    let base = tempfile::tempdir().expect("tmp");
    let rt = common::multi_thread_runtime();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);

    let iperf = if ["raw", "bytes", "file"].iter().any(|p| wanted(p)) {
        iperf3()
    } else {
        None
    };
    let ratio = |mbps: f64| {
        iperf
            .map(|b| format!("  = {:.2}x iperf3", mbps / (b / 8e6)))
            .unwrap_or_default()
    };
    // The QUIC ceiling: 1 GiB over one connection, 1 stream and 4 streams, 3 runs each.
    let mut raw1 = Vec::new();
    let mut raw4 = Vec::new();
    let mut raw_rtt = Vec::new();
    let mut floor_rtt = Vec::new();
    if wanted("rtt") {
        raw_rtt = rt.block_on(raw_quinn_rtt(rounds));
        floor_rtt = relay_floor(rounds);
    }
    if wanted("raw") {
        for _ in 0..3 {
            raw1.push(rt.block_on(raw_quinn(1, 1 << 30)));
            raw4.push(rt.block_on(raw_quinn(4, 1 << 30)));
        }
    }

    let need_daemons = ["rtt", "bytes", "file", "online", "bind"]
        .iter()
        .any(|p| wanted(p));
    let mut bind_times = Vec::new();
    let mut online_times = Vec::new();
    let mut rtt: Vec<Duration> = Vec::new();
    let mut mbps = None;
    let mut file_mbps: Option<f64> = None;
    let mut file_runs = Vec::new();
    let mut limits = None;
    if need_daemons {
        let (a, _) = start(&base.path().join("a"), &[]);
        let (mut b, _) = start(&base.path().join("b"), &[a.field("bus")]);

        // PIN bind time: the pair a-b, plus four more binds of a against fresh devices.
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
        if wanted("bind") {
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
        }

        // Start-to-ONLINE: restart b; it dials a from its static peer. The first start is
        // measured too when this part is skipped, since the later parts need b online.
        let restarts = if wanted("online") { 5 } else { 1 };
        for _ in 0..restarts {
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

        // Message round trip and bytes throughput, app to app.
        let (lat, m) = rt.block_on(async {
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
                        SocketEvent::Bytes { data, .. } => {
                            (data.len() as u64).to_le_bytes().to_vec()
                        }
                        _ => continue,
                    };
                    if db2.bus().send_message(peer, &reply).await.is_err() {
                        break;
                    }
                }
            });
            // On a runtime worker, as an app's task would be (not on the thread blocked in
            // block_on, which every reply would have to wake from another thread).
            let mut lat = Vec::with_capacity(rounds);
            if wanted("rtt") {
                let da2 = da.clone();
                let (l, r) = tokio::spawn(async move {
                    let msg = [7u8; 64];
                    for i in 0..rounds + rounds / 10 {
                        let t = Instant::now();
                        da2.bus().send_message(sock, &msg).await.expect("send");
                        match replies.next().await {
                            Some(SocketEvent::Message { .. }) => {}
                            other => panic!("{other:?}"),
                        }
                        if i >= rounds / 10 {
                            lat.push(t.elapsed());
                        }
                    }
                    (lat, replies)
                })
                .await
                .expect("round trips");
                lat = l;
                replies = r;
            }
            let mut mbps = None;
            if wanted("bytes") {
                let payload = vec![1u8; 4 << 20];
                let n = BYTES_PER_RUN / payload.len();
                // One warm-up run first (reported, not counted): the processes' heaps and
                // quinn's congestion window grow during the first gigabyte.
                let mut runs = Vec::with_capacity(BYTES_RUNS + 1);
                for _ in 0..=BYTES_RUNS {
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
                    runs.push((n * payload.len()) as f64 / secs / 1e6);
                }
                mbps = Some(runs);
            }
            echo.abort();
            (lat, mbps)
        });
        rtt = lat;
        mbps = m;
        if wanted("file") && file_mb > 0 {
            // OXH_BENCH_FILE_DIR puts the files elsewhere (e.g. a tmpfs, to take the disk out).
            let dir = match std::env::var_os("OXH_BENCH_FILE_DIR") {
                Some(d) => {
                    std::path::PathBuf::from(d).join(format!("oxh-bench-{}", std::process::id()))
                }
                None => base.path().join("files"),
            };
            std::fs::create_dir_all(&dir).expect("files dir");
            // The limits first: each writes as much new data as the transfer does.
            limits = Some(file_limits(&dir, file_mb));
            file_runs = rt.block_on(file_throughput(&a, &b, &dir, file_mb));
            let mut sorted = file_runs.clone();
            file_mbps = Some(median(&mut sorted));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    println!("soft bus bench: 2 devices on loopback, {cores} cores");
    match iperf {
        Some(bps) => println!(
            "iperf3 TCP loopback            {:8.0} MB/s ({:.1} Gbit/s)",
            bps / 8e6,
            bps / 1e9
        ),
        None if ["raw", "bytes", "file"].iter().any(|p| wanted(p)) => {
            println!(
                "iperf3 TCP loopback            (iperf3 missing or failed: apt-get install iperf3)"
            )
        }
        None => {}
    }
    if !raw1.is_empty() {
        let knobs = raw_transport().1;
        let knobs = if knobs.is_empty() {
            String::new()
        } else {
            format!(" [OXH_QUIC={knobs}]")
        };
        let (m1, m4) = (median(&mut raw1), median(&mut raw4));
        println!(
            "raw quinn 1 GiB, 1 stream      {m1:8.0} MB/s (runs {:.0}-{:.0}){}{knobs}",
            raw1[0],
            raw1[raw1.len() - 1],
            ratio(m1)
        );
        println!(
            "raw quinn 1 GiB, 4 streams     {m4:8.0} MB/s (runs {:.0}-{:.0}){}",
            raw4[0],
            raw4[raw4.len() - 1],
            ratio(m4)
        );
    }
    let raw_ratio = |v: f64| {
        if raw1.is_empty() {
            String::new()
        } else {
            format!(", {:.2}x raw quinn", v / raw1[raw1.len() / 2])
        }
    };
    if let Some(runs) = mbps
        && let Some((warm, measured)) = runs.split_first()
    {
        let mut sorted = measured.to_vec();
        let listed: Vec<String> = sorted.iter().map(|r| format!("{r:.0}")).collect();
        let mbps = median(&mut sorted);
        println!(
            "bytes app->app (4 MiB x {})   {mbps:8.0} MB/s (runs {}; warm-up {warm:.0}){}{}",
            BYTES_PER_RUN >> 22,
            listed.join(", "),
            ratio(mbps),
            raw_ratio(mbps)
        );
    }
    if let Some(f) = file_mbps {
        let runs: Vec<String> = file_runs.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "file app->app ({file_mb} MiB)       {f:8.0} MB/s (runs {}){}{}",
            runs.join(", "),
            ratio(f),
            raw_ratio(f)
        );
    }
    if let Some((disk, cached, sum)) = limits {
        let vs = |l: f64| {
            file_mbps
                .map(|f| format!("  (file = {:.2}x)", f / l))
                .unwrap_or_default()
        };
        println!(
            "disk write+fsync {file_mb} MiB      {disk:8.0} MB/s{}  (as the receiver writes: O_DIRECT)",
            vs(disk)
        );
        println!(
            "  through the page cache        {cached:8.0} MB/s{}",
            vs(cached)
        );
        println!(
            "XXH3-128 {file_mb} MiB in memory    {sum:8.0} MB/s{}",
            vs(sum)
        );
    }
    if !raw_rtt.is_empty() {
        let (p50, p99) = (pct(&mut raw_rtt, 0.5), pct(&mut raw_rtt, 0.99));
        println!(
            "raw quinn RTT 64 B (1 process) p50 {:7.1} us  p99 {:7.1} us",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    if !floor_rtt.is_empty() {
        let (p50, p99) = (pct(&mut floor_rtt, 0.5), pct(&mut floor_rtt, 0.99));
        println!(
            "6 bare hops app-daemon-daemon-app p50 {:7.1} us  p99 {:7.1} us  (floor: blocking UDS/UDP relay, no crypto)",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    if !rtt.is_empty() {
        let (p50, p99) = (pct(&mut rtt, 0.5), pct(&mut rtt, 0.99));
        let peer = match zenoh_rtt() {
            Ok(z) => format!(
                "Zenoh z_ping in this run: p50 {z:.1} us, ratio {:.2}x",
                p50.as_secs_f64() * 1e6 / z
            ),
            Err(why) => format!("Zenoh z_ping not measured in this run: {why}"),
        };
        println!(
            "message RTT 64 B app->app    p50 {:7.1} us  p99 {:7.1} us  ({peer})",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    if wanted("online") && !online_times.is_empty() {
        let mut on = online_times.clone();
        println!(
            "start -> trusted peer ONLINE  median {:6.1} ms of {} (goal < 1 s)",
            pct(&mut on, 0.5).as_secs_f64() * 1e3,
            on.len()
        );
    }
    if wanted("bind") && !bind_times.is_empty() {
        let mut bt = bind_times.clone();
        println!(
            "PIN bind                      median {:6.1} ms of {} (goal < 1 s)",
            pct(&mut bt, 0.5).as_secs_f64() * 1e3,
            bt.len()
        );
    }
}
