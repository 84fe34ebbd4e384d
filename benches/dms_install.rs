//! Install-on-demand benchmark (issue 19): `continueMission` with freeInstall of the notes
//! example packed into a 10 MB HAP (its library plus an incompressible raw file) to a device
//! that lacks it: from the call to its answer (the mission runs on the target, installed
//! there through its bundle manager), beside what it is made of, measured in the same run on
//! the same pair: a local `bm install` of the same HAP on the target, and a continuation to a
//! target that has the app installed. Needs root (app sandboxes).
//!
//! Run: `cargo bench --bench dms_install` (env OXH_BENCH_ITERS, default 5; OXH_BENCH_HAP_MB,
//! default 10).

mod common;
use common::{Daemon, ms, oxh};

use oxh_sdk::ability::{ContinueArgs, Want, WantParam};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NOTES: &str = "com.example.notes";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Notes with an incompressible raw file, `size` bytes packed in all, signed with a debug
/// profile listing both devices (one appId on both); both trust its root. The HAP's path.
fn notes_hap(a: &Daemon, b: &Daemon, work: &Path, size: usize) -> PathBuf {
    let lib = common::build_examples().0;
    let ids = [a.field("udid"), b.field("udid")];
    // What the HAP is without the raw file is taken off (the library compresses well).
    let bare = common::pack_example(&[a], &work.join("bare"), "notes", NOTES, &lib, &ids, &[]);
    let pad = size.saturating_sub(std::fs::metadata(&bare).map_or(0, |m| m.len() as usize));
    // xorshift64: bytes deflate cannot shrink, so the HAP really is this big on the wire.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let blob: Vec<u8> = (0..pad.div_ceil(8))
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .take(pad)
        .collect();
    common::pack_example(
        &[a, b],
        work,
        "notes",
        NOTES,
        &lib,
        &ids,
        &[("resources/rawfile/payload.bin", &blob)],
    )
}

/// Waits (bounded) until `dev` runs no notes process.
fn wait_no_notes(rt: &tokio::runtime::Runtime, dev: &oxh_sdk::Device) {
    let end = Instant::now() + Duration::from_secs(10);
    while rt
        .block_on(dev.ability().dump())
        .unwrap()
        .iter()
        .any(|r| r.element.bundle_name == NOTES)
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        println!("dms_install bench: needs root (app sandboxes); not measured");
        return;
    }
    let iters: usize = common::env_num("OXH_BENCH_ITERS", 5);
    let mb: usize = common::env_num("OXH_BENCH_HAP_MB", 10);
    let rt = common::runtime();
    let base = tempfile::tempdir().unwrap();
    let (a, b, da, db) = rt.block_on(common::bound_pair(base.path()));
    let work = base.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let hap = notes_hap(&a, &b, &work, mb << 20);
    let hap_s = hap.to_string_lossy().into_owned();
    let hap_bytes = std::fs::metadata(&hap).unwrap().len();
    oxh(&a.dir, &["bm", "install", "-p", &hap_s]);
    let nid_b = b.field("network_id");

    // One continuation A -> B; the call's time. The mission ends on A and runs on B.
    let continue_once = |free_install: bool| -> Duration {
        let mut want = Want::explicit(NOTES, "EntryAbility");
        want.parameters
            .insert("note".into(), WantParam::String("buy milk".into()));
        rt.block_on(da.ability().start_ability(want, true)).unwrap();
        let mission = rt
            .block_on(da.ability().dump())
            .unwrap()
            .iter()
            .find(|r| r.element.bundle_name == NOTES)
            .and_then(|r| r.mission)
            .expect("a notes mission on A");
        let t = Instant::now();
        rt.block_on(da.ability().continue_mission_with(&ContinueArgs {
            mission_id: mission,
            dst_device_id: nid_b.clone(),
            free_install,
        }))
        .unwrap();
        let took = t.elapsed();
        rt.block_on(db.ability().force_stop(NOTES)).unwrap();
        wait_no_notes(&rt, &da);
        wait_no_notes(&rt, &db);
        took
    };

    let (mut on_demand, mut install, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    // Warm-up: page the binaries in on both sides.
    oxh(&b.dir, &["bm", "install", "-p", &hap_s]);
    continue_once(false);
    oxh(&b.dir, &["bm", "uninstall", "-n", NOTES]);
    for _ in 0..iters {
        on_demand.push(continue_once(true));
        oxh(&b.dir, &["bm", "uninstall", "-n", NOTES]);
        let t = Instant::now();
        oxh(&b.dir, &["bm", "install", "-p", &hap_s]);
        install.push(t.elapsed());
        plain.push(continue_once(false));
        oxh(&b.dir, &["bm", "uninstall", "-n", NOTES]);
    }
    let (o, i, p) = (median(on_demand), median(install), median(plain));
    println!(
        "install on demand ({:.1} MB HAP, {iters} runs, medians, loopback)",
        hap_bytes as f64 / 1e6
    );
    println!(
        "  continueMission with freeInstall to a target without the app   {:>8.1} ms",
        ms(o)
    );
    println!(
        "  bm install of the same HAP on the target (local)                {:>8.1} ms",
        ms(i)
    );
    println!(
        "  continueMission to a target with the app installed             {:>8.1} ms",
        ms(p)
    );
    println!(
        "  on demand / (local install + continuation) = {:.2}x ({:+.1} ms against the two done one after the other)",
        ms(o) / (ms(i) + ms(p)),
        ms(o) - ms(i) - ms(p)
    );
}
