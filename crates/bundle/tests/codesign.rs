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

fn report(name: &str) -> Option<(Vec<u8>, oxh_bundle::verify::Report)> {
    let data = read(name)?;
    let r = {
        let h = open_hap(&data, &Limits::default()).expect("fixture opens");
        verify(&h, &opts())
    };
    Some((data, r))
}

#[test]
fn the_debug_signed_fixture_s_code_region_and_page_info_verify() {
    let Some((_, r)) = report("stage_v3_debug_signed.hap") else {
        return;
    };
    r.result().unwrap();
    let c = r.code_signature.expect("checked");
    assert!(c.present);
    let hap = c.hap.expect("the HAP's own signature");
    assert!(hap.ok, "{hap:?}");
    // modules.abc (stored, data at 4096), .pages.info (at 16384), then sourceMaps.map's
    // data at 20480 ends the code region.
    assert_eq!(hap.data_size, 20480);
    assert!(
        hap.detail
            .contains("page info (16 bits at 16384) signed too"),
        "{}",
        hap.detail
    );
    assert!(c.libs.is_empty());
    assert_eq!(c.owner_id.as_deref(), Some(codesign::DEBUG_OWNER_ID));
    assert_eq!(c.signer, "OpenHarmony Application Release");
}

#[test]
fn the_wrong_cert_fixture_s_nine_libraries_verify_against_their_deflated_entries() {
    let Some((_, r)) = report("stage_v3_codesign_wrong_cert.hap") else {
        return;
    };
    // Its code signatures are self-consistent and made by the package's signer: what makes
    // OpenHarmony refuse this HAP is the trust decision on the profile handed with it
    // (EnforceCodeSignForAppWithOwnerId -> VerifyProfileByP7bBlock -> CS_ERR_PROFILE,
    // CodeSignUtilsTest_0073), which a device makes from its trusted profile-signing
    // sources, not from the package's bytes. See docs/CODESIGN.md.
    r.result().unwrap();
    let c = r.code_signature.expect("checked");
    let names: Vec<&str> = c.libs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 9, "{names:?}");
    for abi in ["arm64-v8a", "armeabi-v7a", "x86_64"] {
        for lib in ["libc++_shared.so", "libentry.so", "libentry2.so"] {
            assert!(
                names.contains(&format!("libs/{abi}/{lib}").as_str()),
                "{names:?}"
            );
        }
    }
    assert!(c.libs.iter().all(|l| l.ok), "{:?}", c.libs);
    assert_eq!(c.hap.map(|h| (h.ok, h.data_size)), Some((true, 24576)));
    let libs = r
        .checks
        .iter()
        .filter(|c| c.name == CHECK_CODE_SIGNATURE_LIB)
        .count();
    assert_eq!(libs, 9, "one check per library");
}

#[test]
fn the_wrong_cert_fixture_s_signatures_are_refused_without_its_root() {
    let Some(data) = read("stage_v3_codesign_wrong_cert.hap") else {
        return;
    };
    let h = open_hap(&data, &Limits::default()).unwrap();
    let csb = codesign::find(&data, h.block.as_ref().unwrap())
        .unwrap()
        .unwrap();
    let (name, bytes) = first_lib(&data);
    let info = csb.lib(&name).unwrap();
    // Signed by another certificate than the package's and no root to chain it to.
    let e = codesign::verify_lib(&name, &bytes, info, &codesign::Expect::default()).unwrap_err();
    assert_eq!(e.code, cs::INVALID_SIGNATURE, "{e}");
    assert!(e.reason.contains("not the package's signer"), "{e}");
    // A release app's ownerID is its app-identifier: a debug signature is not one.
    let roots = opts().roots;
    let e = codesign::verify_lib(
        &name,
        &bytes,
        info,
        &codesign::Expect {
            roots: &roots,
            owner_id: Some("com.example.myapplication_ABC".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code, cs::INVALID_OWNER_ID, "{e}");
}

fn first_lib(data: &[u8]) -> (String, Vec<u8>) {
    let mut z = ZipView::open(data, &Limits::default()).unwrap();
    let e = z
        .entries
        .iter()
        .find(|e| e.name == "libs/x86_64/libentry.so")
        .unwrap()
        .clone();
    let b = z.read(&e.name, e.size).unwrap();
    (e.name, b)
}

#[test]
fn a_changed_byte_of_a_fixture_library_fails_naming_it() {
    let Some(data) = read("stage_v3_codesign_wrong_cert.hap") else {
        return;
    };
    let h = open_hap(&data, &Limits::default()).unwrap();
    let block = h.block.as_ref().unwrap();
    let csb = codesign::find(&data, block).unwrap().unwrap();
    let (name, mut bytes) = first_lib(&data);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let roots = opts().roots;
    let r = codesign::verify(
        &data,
        block.start,
        &csb,
        &[(name.clone(), bytes)],
        &codesign::Expect {
            roots: &roots,
            ..Default::default()
        },
    );
    assert!(r.hap.as_ref().unwrap().ok);
    let l = &r.libs[0];
    assert!(!l.ok);
    assert_eq!(l.error_code, cs::INVALID_SIGNATURE);
    assert!(l.detail.starts_with(&name), "{}", l.detail);
    assert!(l.detail.contains("changed after signing"), "{}", l.detail);
    // A library the block does not sign is missing its signature.
    let r = codesign::verify(
        &data,
        block.start,
        &csb,
        &[("libs/x86_64/libother.so".into(), vec![1, 2, 3])],
        &codesign::Expect::default(),
    );
    assert_eq!(r.libs[0].error_code, cs::NO_SIGNATURE);
}

#[test]
fn a_changed_byte_in_the_code_region_fails_the_hap() {
    let Some(mut data) = read("stage_v3_debug_signed.hap") else {
        return;
    };
    // Inside ets/modules.abc (stored, data from 4096): the package digest and the code
    // region's Merkle root both break; the report names the code signature.
    data[5000] ^= 0x01;
    let h = open_hap(&data, &Limits::default()).unwrap();
    let r = verify(&h, &opts());
    let e = r.result().unwrap_err();
    assert_eq!(e.code, code::CODE_SIGNATURE_FAILED, "{e}");
    assert!(e.reason.contains("Merkle root"), "{e}");
    assert!(
        e.reason
            .contains("first changed 4 KiB block at 4096, in ets/modules.abc"),
        "{e}"
    );
}

#[test]
fn the_appgallery_fixture_has_no_code_signature() {
    let Some((_, r)) = report("stage_v3_appgallery.hap") else {
        return;
    };
    let c = r.code_signature.expect("checked");
    assert!(!c.present);
    let check = r
        .checks
        .iter()
        .find(|c| c.name == "code-signature")
        .unwrap();
    assert_eq!(check.ok, None, "absent is reported, not failed: {check:?}");
}

#[test]
fn every_truncation_and_corruption_of_a_real_block_is_an_error_not_a_panic() {
    let Some(data) = read("stage_v3_codesign_wrong_cert.hap") else {
        return;
    };
    let h = open_hap(&data, &Limits::default()).unwrap();
    let prop = h
        .block
        .as_ref()
        .unwrap()
        .value(&data, oxh_bundle::signing::BLOCK_PROPERTY)
        .unwrap();
    let csb = &prop[codesign::RECORD_HEADER_LEN..];
    codesign::parse(csb, 0).unwrap();
    for n in (0..csb.len()).step_by(97) {
        assert!(codesign::parse(&csb[..n], 0).is_err(), "{n} bytes");
    }
    let mut bad = csb.to_vec();
    bad[0] ^= 1;
    assert_eq!(codesign::parse(&bad, 0).unwrap_err().code, cs::BLOCK_MAGIC);
    let mut bad = csb.to_vec();
    bad[8] = 2;
    assert_eq!(
        codesign::parse(&bad, 0).unwrap_err().code,
        cs::BLOCK_VERSION
    );
    let mut bad = csb.to_vec();
    bad[16] = 2;
    assert_eq!(
        codesign::parse(&bad, 0).unwrap_err().code,
        cs::BLOCK_SEG_NUM
    );
    let mut bad = csb.to_vec();
    bad[32] = 2; // segment 1's type
    assert_eq!(
        codesign::parse(&bad, 0).unwrap_err().code,
        cs::SEGMENT_FSVERITY_TYPE
    );
    // Every byte flipped in turn, sparsely: never a panic.
    for i in (0..csb.len()).step_by(13) {
        let mut b = csb.to_vec();
        b[i] = !b[i];
        codesign::fuzz_one(&b);
    }
}

/// `fsverity digest --hash-alg=sha256 --block-size=4096` (Debian's fsverity 1.5) of the
/// inputs below, and the tree computed here by the kernel's documented algorithm.
#[test]
fn the_fs_verity_digest_is_linux_s() {
    let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 251) as u8).collect() };
    let big: Vec<u8> = (0..4096 * 130 + 17)
        .map(|i| ((i * 7) % 256) as u8)
        .collect();
    let cases: [(Vec<u8>, &str); 5] = [
        (
            vec![],
            "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95",
        ),
        (
            b"abc".to_vec(),
            "700b6bd8510f0b4f9bac8b9cf0459151a1c4a99f467892bb4bd289a67df8e19c",
        ),
        (
            pattern(4096),
            "13e9b8848ae484a36acb3f3cac0ceb2f7601e96633d15c92f9bd3dd44e492157",
        ),
        (
            pattern(5000),
            "219c2df1dc52c12b7f666570d48b3f57c2e1ef58aa4734111f36773c8e731829",
        ),
        (
            big.clone(),
            "c2931af61cf93022f636e4fd31fd6dbd025cdf0ab37d0ebd5e3eef7f99bbf773",
        ),
    ];
    for (input, want) in &cases {
        assert_eq!(
            codesign::hex(&codesign::file_digest(input)),
            *want,
            "{} bytes",
            input.len()
        );
    }
    // 131 data blocks: 131 hashes fill two blocks of level 0, whose two hashes make the
    // root level's one block; stored root level first.
    use sha2::{Digest, Sha256};
    let h = |b: &[u8]| -> Vec<u8> {
        let mut v = b.to_vec();
        v.resize(4096, 0);
        Sha256::digest(&v).to_vec()
    };
    let mut level0: Vec<u8> = big.chunks(4096).flat_map(h).collect();
    level0.resize(8192, 0);
    let mut level1: Vec<u8> = level0.chunks(4096).flat_map(h).collect();
    level1.resize(4096, 0);
    let (tree, root) = codesign::merkle_tree(&big);
    assert_eq!(tree, [level1.clone(), level0].concat());
    assert_eq!(root.to_vec(), h(&level1));
}
