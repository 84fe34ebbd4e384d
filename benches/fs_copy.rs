//! Cross-device copy on loopback: `oxh fs cp` of a remote URI (the peer's file daemon sends
//! the file over the soft bus; this side writes it with O_DIRECT where the file system takes
//! it, checks its checksum, syncs and renames it), beside the bus's own file send of the same
//! file between the same two devices, app to app (the receiver saving the same way), in the
//! same run. Runs alternate, three of each; medians and their ratio are printed.
//!
//! `cargo bench --bench fs_copy`; `OXH_BENCH_FILE_MB` (default 1024) sets the size.

mod common;

use oxh_sdk::bus::{DataType, SocketEvent};
use std::time::Instant;

const RUNS: usize = 3;
const BUNDLE: &str = "com.example.bench";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mb: u64 = common::env_num("OXH_BENCH_FILE_MB", 1024);
    let base = tempfile::tempdir().expect("tmp");
    let rt = common::multi_thread_runtime();
    let (a, b, da, db) = rt.block_on(common::bound_pair(base.path()));
    // The source, in b's account tree (what a distributedfiles URI names).
    let shared = oxh_dfs::views::account_tree(&b.dir, 100)
        .join("data")
        .join(BUNDLE);
    std::fs::create_dir_all(&shared).expect("shared dir");
    let src = shared.join("big.bin");
    common::write_incompressible(&src, mb << 20);
    // The bench's devices run at the default level (SL1): a file they may send each other.
    oxh_dfs::label::set(&src, "s1".parse().expect("label")).expect("label the source");
    let out = base.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let uri = format!(
        "file://{BUNDLE}/data/storage/el2/distributedfiles/big.bin?networkid={}",
        b.field("network_id")
    );
    let bytes = (mb << 20) as f64;
    // The bus peer: b sends the same file to a listener on a.
    let (bus_out, mut listener, sock) = rt.block_on(async {
        let bus_out = base.path().join("bus-out");
        std::fs::create_dir_all(&bus_out).expect("bus out");
        let mut l = da.bus().listen("bench-copy").await.expect("listen");
        l.save_files_into(&bus_out);
        let (sock, _ev) = db
            .bus()
            .bind(
                &a.field("network_id"),
                "bench-copy",
                "bench-b",
                DataType::File,
            )
            .await
            .expect("bind");
        (bus_out, l, sock)
    });
    let (mut cp, mut bus) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let dst = out.join("big.bin");
        let t = Instant::now();
        common::oxh(&a.dir, &["fs", "cp", &uri, dst.to_str().expect("utf-8")]);
        cp.push(bytes / t.elapsed().as_secs_f64() / 1e6);
        std::fs::remove_file(&dst).expect("copied file");

        let t = Instant::now();
        rt.block_on(async {
            let bus_api = db.bus();
            let files = [&src];
            let send = bus_api.send_file(sock, &files, |_| {});
            let recv = async {
                loop {
                    match listener.next().await {
                        Some(SocketEvent::FileFinish { path, .. }) => return path,
                        Some(SocketEvent::FileError { reason, .. }) => panic!("file: {reason}"),
                        Some(_) => {}
                        None => panic!("listener closed"),
                    }
                }
            };
            let (sent, path) = tokio::join!(send, recv);
            sent.expect("bus send");
            bus.push(bytes / t.elapsed().as_secs_f64() / 1e6);
            std::fs::remove_file(path).expect("received file");
        });
    }
    let _ = std::fs::remove_dir_all(&bus_out);
    let (c, s) = (median(cp.clone()), median(bus.clone()));
    println!("cross-device copy of {mb} MiB on loopback, {RUNS} runs each, alternating");
    println!("  oxh fs cp (remote URI → local): {c:.0} MB/s median, runs {cp:.0?}");
    println!("  bus file send (SDK, same file): {s:.0} MB/s median, runs {bus:.0?}");
    println!("  ratio cp / bus send: {:.2}", c / s);
}
