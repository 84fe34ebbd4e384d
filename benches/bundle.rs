//! Bundle manager benchmark: verify + install time of a 10 MB HAP (goal < 200 ms) and of each
//! real OpenHarmony package in ../shared/fixtures/ohos/packages, beside peers over the same
//! file in the same run.
//!
//! - verify: `open_hap` (zip checks, module config) + `verify` (digest over 1 MiB chunks,
//!   PKCS#7, chain, profile, code signatures: each library inflated and its fs-verity
//!   digest's signature checked) in this process; beside it the same package signed without
//!   code signatures.
//! - install: the whole `bm install` path through a real daemon (SDK): stream the file in
//!   ≤ 1 MiB chunks, stage, parse + verify, build the code dir (the HAP + its native libs),
//!   token update, SQLite commit, swap. Repeated installs of the same version (an update).
//! - peers, each run as a process on the same file: `sha256sum` (reads and hashes it once),
//!   `unzip -tq` (inflates and CRC-checks every entry), `python3 -c zipfile ... read all`.
//!
//! Run: `cargo bench --bench bundle` (env OXH_BENCH_ITERS, default 15).

mod common;
use common::Daemon;

use oxh_bundle::package::{Limits, open_hap};
use oxh_bundle::tools::{self, ProfileSpec};
use oxh_bundle::verify::{VerifyOptions, pem_certs, verify};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time_cmd(iters: usize, prog: &str, args: &[&str]) -> Option<Duration> {
    common::time_runs(iters, prog, args).map(median)
}

/// Pseudo-random bytes (xorshift): incompressible, so a 10 MB payload makes a 10 MB HAP.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn start_daemon() -> Daemon {
    Daemon::start_temp(common::LOOPBACK)
}

fn peers(iters: usize, file: &Path) -> [(&'static str, Option<Duration>); 3] {
    let f = file.to_str().unwrap();
    let py = "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1])\nfor i in z.infolist(): z.read(i)";
    [
        ("sha256sum", time_cmd(iters, "sha256sum", &[f])),
        ("unzip -tq", time_cmd(iters, "unzip", &["-tq", f])),
        (
            "python zipfile",
            time_cmd(iters, "/usr/bin/python3", &["-c", py, f]),
        ),
    ]
}

fn main() {
    let iters: usize = common::env_num("OXH_BENCH_ITERS", 15);
    let rt = common::runtime();
    let daemon = start_daemon();
    let dev = rt
        .block_on(oxh_sdk::Device::connect(daemon.dir.as_path()))
        .expect("connect");
    let udid = rt
        .block_on(dev.device_manager().local_device_info())
        .unwrap()
        .udid;
    let work = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // ---- 10 MB HAP, signed under a trusted dev root ----
    let bundle = "com.example.bench";
    let spec = ProfileSpec {
        bundle_name: bundle.into(),
        kind: "debug".into(),
        apl: "normal".into(),
        acls: vec![],
        device_ids: vec![udid.clone()],
        not_before: now - 60,
        not_after: now + 86_400,
    };
    let ks = tools::keygen(&spec, now).unwrap();
    rt.block_on(dev.bundle().trust_add(&ks.root_pem)).unwrap();
    let module = format!(
        "{{app: {{bundleName: '{bundle}', versionCode: 1, versionName: '1.0'}}, module: {{name: 'entry', type: 'entry', deviceTypes: ['default'], abilities: [{{name: 'EntryAbility'}}], requestPermissions: [{{name: 'ohos.permission.INTERNET'}}]}}}}"
    );
    let mut files: tools::Files = vec![("module.json5".into(), module.into_bytes())];
    for i in 0..6 {
        files.push((
            format!("resources/rawfile/blob{i}.bin"),
            noise(1 << 20, i + 1),
        ));
    }
    for i in 0..4 {
        files.push((format!("libs/x86_64/lib{i}.so"), noise(1 << 20, i + 100)));
    }
    let hap = tools::pack(&files).unwrap();
    let signed = ks.sign(&hap, now).unwrap();
    let big = work.path().join("bench10m.hap");
    std::fs::write(&big, &signed).unwrap();
    let opts = VerifyOptions {
        roots: pem_certs(ks.root_pem.as_bytes()),
        ignore_expiry: false,
        device_id: Some(udid.clone()),
        now,
    };
    let l = Limits::default();
    let time_verify = |hap: &[u8]| {
        median(
            (0..iters)
                .map(|_| {
                    let t = Instant::now();
                    let h = open_hap(hap, &l).unwrap();
                    verify(&h, &opts).result().unwrap();
                    t.elapsed()
                })
                .collect(),
        )
    };
    let verify_t = time_verify(&signed);
    // The same package signed without code signatures (`--sign-code 0`): what checking the
    // four 1 MiB libraries' fs-verity signatures adds.
    let plain = tools::sign_hap_with(
        &hap,
        &ks.dev_key_pem,
        ks.dev_cert_pem.as_bytes(),
        &ks.profile_p7b,
        now,
        false,
    )
    .unwrap();
    let verify_plain_t = time_verify(&plain);
    let install_t = median(
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                rt.block_on(dev.bundle().install(&[&signed], 100, false))
                    .unwrap();
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "# bundle benchmark ({iters} runs each, medians; peers run as processes on the same file)"
    );
    println!();
    println!(
        "10 MB HAP ({} bytes, 11 entries, incompressible): verify {:.1} ms, install (stream + verify + install) {:.1} ms  [goal < 200 ms]",
        signed.len(),
        ms(verify_t),
        ms(install_t)
    );
    println!(
        "  of which code signatures (4 libraries, 4 MiB): verify without them {:.1} ms, with them {:.1} ms",
        ms(verify_plain_t),
        ms(verify_t)
    );
    for (name, t) in peers(iters, &big) {
        match t {
            Some(t) => println!(
                "  peer {name:<15} {:.1} ms   install/peer = {:.2}",
                ms(t),
                install_t.as_secs_f64() / t.as_secs_f64()
            ),
            None => println!("  peer {name:<15} unavailable"),
        }
    }

    // ---- each real fixture ----
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/ohos/packages");
    if !fx.is_dir() {
        println!("\nfixtures: SKIPPED (no {})", fx.display());
        return;
    }
    let oh_root = pem_certs(include_bytes!(
        "../crates/bundle/testdata/openharmony-app-root-ca.pem"
    ));
    rt.block_on(dev.param().set("persist.bms.dev_mode", "1"))
        .unwrap();
    println!();
    println!(
        "{:<42} {:>9} {:>10} {:>11} {:>10} {:>10}",
        "fixture", "bytes", "verify ms", "install ms", "sha256 ms", "unzip ms"
    );
    let mut names: Vec<_> = std::fs::read_dir(&fx)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let data = std::fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let opts = VerifyOptions {
            roots: oh_root.clone(),
            ignore_expiry: true,
            device_id: None,
            now,
        };
        let Ok(h) = open_hap(&data, &l) else {
            println!(
                "{name:<42} {:>9}   refused at parse (bad_* fixture)",
                data.len()
            );
            continue;
        };
        let v = median(
            (0..iters)
                .map(|_| {
                    let t = Instant::now();
                    let h = open_hap(&data, &l).unwrap();
                    let _ = verify(&h, &opts);
                    t.elapsed()
                })
                .collect(),
        );
        let bn = h.info.app.bundle_name.clone();
        // Install with --skip-verify (the profiles of these test packages name other bundles);
        // the daemon still runs every check, it only does not refuse on them.
        let mut it = Vec::new();
        let mut ok = true;
        for _ in 0..iters {
            let t = Instant::now();
            if rt
                .block_on(dev.bundle().install(&[&data], 100, true))
                .is_err()
            {
                ok = false;
                break;
            }
            it.push(t.elapsed());
            rt.block_on(dev.bundle().uninstall(&bn, 100, false))
                .unwrap();
        }
        let pk = peers(iters, &p);
        let f = |t: Option<Duration>| t.map(|t| format!("{:.1}", ms(t))).unwrap_or("-".into());
        println!(
            "{name:<42} {:>9} {:>10.2} {:>11} {:>10} {:>10}",
            data.len(),
            ms(v),
            if ok {
                format!("{:.1}", ms(median(it)))
            } else {
                "refused".into()
            },
            f(pk[0].1),
            f(pk[1].1)
        );
    }
}
