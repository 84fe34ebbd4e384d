//! Every real OpenHarmony package in ../shared/fixtures/ohos/packages gives the outcome its
//! README table states. Skips (loudly) where the fixtures are absent.

use oxh_bundle::code;
use oxh_bundle::model::{AppInfo, Model, ModuleType};
use oxh_bundle::package::{Limits, open_hap};
use oxh_bundle::pkcs7;
use oxh_bundle::signing::{self, BLOCK_SIGNATURE};
use oxh_bundle::verify::{VerifyOptions, pem_certs, verify};
use std::path::PathBuf;

fn dir() -> Option<PathBuf> {
    let d =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/ohos/packages");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!(
            "SKIP: fixtures not found at {} (the shared fixtures folder is absent)",
            d.display()
        );
        None
    }
}

fn read(name: &str) -> Option<Vec<u8>> {
    Some(std::fs::read(dir()?.join(name)).expect("fixture readable"))
}

fn oh_root() -> Vec<Vec<u8>> {
    pem_certs(include_bytes!("../testdata/openharmony-app-root-ca.pem"))
}

/// (file, model, block version, bundle, versionCode, module name, module type)
const GOOD: &[(&str, Model, u32, &str, u32, &str, ModuleType)] = &[
    (
        "system_module.hap",
        Model::Stage,
        2,
        "com.query.test",
        1,
        "module01",
        ModuleType::Entry,
    ),
    (
        "backup.hap",
        Model::Stage,
        2,
        "com.example.backuptest",
        1_000_000,
        "entry",
        ModuleType::Entry,
    ),
    (
        "stage_v3_appgallery.hap",
        Model::Stage,
        3,
        "com.example.myapplicationwithoutso",
        1_000_000,
        "entry",
        ModuleType::Entry,
    ),
    (
        "stage_v3_debug_signed.hap",
        Model::Stage,
        3,
        "com.example.myapplication",
        1_000_000,
        "entry",
        ModuleType::Entry,
    ),
    (
        "stage_v3_codesign_wrong_cert.hap",
        Model::Stage,
        3,
        "com.example.myapplication",
        1_000_000,
        "entry",
        ModuleType::Entry,
    ),
    (
        "dependencies_entry.hap",
        Model::Stage,
        3,
        "com.example.dependenciestest",
        1_000_000,
        "entry",
        ModuleType::Entry,
    ),
    (
        "version1.hap",
        Model::Fa,
        2,
        "com.example.l3jsdemo",
        1,
        "entry",
        ModuleType::Entry,
    ),
    (
        "version2.hap",
        Model::Fa,
        2,
        "com.example.l3jsdemo",
        2,
        "entry",
        ModuleType::Entry,
    ),
    (
        "version3.hap",
        Model::Fa,
        2,
        "com.example.l3jsdemo",
        3,
        "entry",
        ModuleType::Entry,
    ),
    (
        "update_lower_version_entry_service.hap",
        Model::Fa,
        2,
        "com.example.myapplication.hmservice",
        999_999,
        "entry",
        ModuleType::Entry,
    ),
    (
        "update_same_version_entry_service.hap",
        Model::Fa,
        2,
        "com.example.myapplication.hmservice",
        1_000_000,
        "entry",
        ModuleType::Entry,
    ),
    (
        "update_higher_version_entry_service.hap",
        Model::Fa,
        2,
        "com.example.myapplication.hmservice",
        1_000_001,
        "entry",
        ModuleType::Entry,
    ),
    (
        "perm_signed.hap",
        Model::Fa,
        2,
        "com.example.napi_test_suite",
        1,
        "entry",
        ModuleType::Entry,
    ),
    (
        "second_backup_right.hap",
        Model::Fa,
        2,
        "com.example.l3jsdemo",
        1_000_000,
        "",
        ModuleType::Feature,
    ),
    (
        "wrong_bundle_name_sign.hap",
        Model::Fa,
        2,
        "com.example.l3jsdemo",
        1,
        "entry",
        ModuleType::Entry,
    ),
];

#[test]
fn good_packages_parse_and_their_signatures_verify() {
    let Some(_) = dir() else { return };
    let l = Limits::default();
    let opts = VerifyOptions {
        roots: oh_root(),
        ..Default::default()
    };
    for &(f, model, ver, bundle, vc, module, mt) in GOOD {
        let data = read(f).unwrap();
        let h = open_hap(&data, &l).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(h.info.model, model, "{f}");
        assert_eq!(h.info.app.bundle_name, bundle, "{f}");
        assert_eq!(h.info.app.version_code, vc, "{f}");
        assert_eq!(h.info.module_type, mt, "{f}");
        if !module.is_empty() {
            assert_eq!(h.info.module_name, module, "{f}");
        }
        let b = h
            .block
            .as_ref()
            .unwrap_or_else(|| panic!("{f}: no signing block"));
        assert_eq!(b.version, ver, "{f}");
        let r = verify(&h, &opts);
        let get = |n: &str| {
            r.checks
                .iter()
                .find(|c| c.name == n)
                .unwrap_or_else(|| panic!("{f}: no {n} check"))
        };
        assert_eq!(get("digest").ok, Some(true), "{f}: {:?}", get("digest"));
        assert_eq!(
            get("signature").ok,
            Some(true),
            "{f}: {:?}",
            get("signature")
        );
        // The AppGallery package carries its profile as plain JSON (covered by the signature).
        let signed_profile = if f == "stage_v3_appgallery.hap" {
            None
        } else {
            Some(true)
        };
        assert_eq!(
            get("profile-signature").ok,
            signed_profile,
            "{f}: {:?}",
            get("profile-signature")
        );
        assert_eq!(
            get("profile-certificate").ok,
            signed_profile,
            "{f}: {:?}",
            get("profile-certificate")
        );
        // OpenHarmony-signed ones chain to OpenHarmony's root; the AppGallery one to Huawei's,
        // which it does not embed.
        let trusted = f != "stage_v3_appgallery.hap";
        assert_eq!(get("chain").ok, Some(trusted), "{f}: {:?}", get("chain"));
        if trusted {
            assert_eq!(
                r.chain.last().map(String::as_str),
                Some("OpenHarmony Application Root CA"),
                "{f}"
            );
        }
    }
}

#[test]
fn dependencies_is_one_bundle_of_four_modules() {
    let Some(_) = dir() else { return };
    let l = Limits::default();
    let mut names = Vec::new();
    for f in [
        "dependencies_entry.hap",
        "dependencies_entry_A.hap",
        "dependencies_entry_B.hap",
        "dependencies_entry_C.hap",
    ] {
        let data = read(f).unwrap();
        let h = open_hap(&data, &l).unwrap();
        assert_eq!(h.info.app.bundle_name, "com.example.dependenciestest");
        names.push((h.info.module_name.clone(), h.info.module_type));
        let r = verify(
            &h,
            &VerifyOptions {
                roots: oh_root(),
                ..Default::default()
            },
        );
        assert!(
            r.checks
                .iter()
                .filter(|c| c.name == "digest" || c.name == "signature")
                .all(|c| c.ok == Some(true)),
            "{f}"
        );
    }
    assert_eq!(
        names
            .iter()
            .filter(|(_, t)| *t == ModuleType::Entry)
            .count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|(_, t)| *t == ModuleType::Feature)
            .count(),
        3,
        "{names:?}"
    );
    let mut n: Vec<_> = names.iter().map(|(n, _)| n.clone()).collect();
    n.sort();
    n.dedup();
    assert_eq!(n.len(), 4, "four distinct modules: {names:?}");
}

#[test]
fn profiles_say_what_the_readme_says() {
    let Some(_) = dir() else { return };
    let l = Limits::default();
    let prof = |f: &str| {
        let d = read(f).unwrap();
        let h = open_hap(&d, &l).unwrap();
        verify(&h, &VerifyOptions::default()).profile.unwrap()
    };
    assert_eq!(prof("system_module.hap").apl, "system_basic");
    assert_eq!(prof("backup.hap").apl, "system_core");
    let dbg = prof("stage_v3_debug_signed.hap");
    assert_eq!(dbg.kind, "debug");
    assert!(!dbg.device_ids.is_empty());
    // The stage v3 debug package: API versions as HarmonyOS NEXT encodes them.
    let d = read("stage_v3_debug_signed.hap").unwrap();
    let h = open_hap(&d, &l).unwrap();
    assert_eq!(AppInfo::api_level(h.info.app.min_api_version), 11);
    assert_eq!(AppInfo::api_level(h.info.app.target_api_version), 13);
}

#[test]
fn wrong_bundle_name_is_refused_when_signatures_are_enforced() {
    let Some(_) = dir() else { return };
    let d = read("wrong_bundle_name_sign.hap").unwrap();
    let h = open_hap(&d, &Limits::default()).unwrap();
    let r = verify(
        &h,
        &VerifyOptions {
            roots: oh_root(),
            ..Default::default()
        },
    );
    let c = r
        .checks
        .iter()
        .find(|c| c.name == "profile-bundle-name")
        .unwrap();
    assert_eq!(c.ok, Some(false));
    assert!(
        c.detail.contains("com.ohos.systemui") && c.detail.contains("com.example.l3jsdemo"),
        "{}",
        c.detail
    );
    // bundle name is checked after the signature-level checks; the first failure is it.
    let e = r.result().unwrap_err();
    assert_eq!(e.code, code::BUNDLE_NAME_MISMATCH, "{e}");
}

#[test]
fn unsigned_package_parses_and_is_refused_as_unsigned() {
    let Some(_) = dir() else { return };
    let d = read("perm_unsigned.hap").unwrap();
    let h = open_hap(&d, &Limits::default()).unwrap();
    assert_eq!(h.info.app.bundle_name, "com.example.napi_test_suite");
    assert!(h.block.is_none());
    assert_eq!(
        verify(&h, &VerifyOptions::default())
            .result()
            .unwrap_err()
            .code,
        code::NO_SIGNATURE
    );
}

#[test]
fn bad_packages_are_refused_with_code_and_reason() {
    let Some(_) = dir() else { return };
    let l = Limits::default();
    let cases: &[(&str, i32, &str)] = &[
        ("bad_break_zip.hap", code::PARSE_FAILED, "zip"),
        ("bad_empty_config.hap", code::PARSE_FAILED, "zip"),
        // Its zip headers are broken too (an extra field runs past its entry), so the zip
        // reader refuses it before config.json is read: still "parse failed".
        ("bad_nothing_config.hap", code::PARSE_FAILED, ""),
        (
            "bad_format_error_profile.hap",
            code::PARSE_MISSING_PROP,
            "app",
        ),
        ("bad_no_profile.hap", code::PARSE_FAILED, "no module.json"),
    ];
    for &(f, c, words) in cases {
        let d = read(f).unwrap();
        let e = open_hap(&d, &l).expect_err(f);
        assert_eq!(e.code, c, "{f}: {e}");
        assert!(e.reason.contains(words), "{f}: {e}");
    }
}

#[test]
fn one_changed_byte_in_any_signed_package_fails_verification() {
    let Some(d) = dir() else { return };
    let l = Limits::default();
    let opts = VerifyOptions {
        roots: oh_root(),
        ignore_expiry: true,
        ..Default::default()
    };
    let mut n = 0;
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let Ok(h) = open_hap(&data, &l) else { continue };
        let Some(b) = h.block.clone() else { continue };
        // Flip bytes in three places: the first entry, the central directory, the profile.
        let cd = h.layout.cd_offset;
        let prof = b
            .blocks
            .iter()
            .find(|s| s.kind == signing::BLOCK_PROFILE)
            .map(|s| s.offset + s.len / 2);
        for pos in [30usize, cd + 20].into_iter().chain(prof) {
            let mut bad = data.clone();
            bad[pos] ^= 0x01;
            match open_hap(&bad, &l) {
                Err(_) => {} // refused as a package already
                Ok(hb) => {
                    let r = verify(&hb, &opts);
                    assert!(
                        r.result().is_err(),
                        "{}: flipping byte {pos} still verifies",
                        p.display()
                    );
                    let digest = r.checks.iter().find(|c| c.name == "digest");
                    assert!(
                        digest.is_none_or(|c| c.ok != Some(true))
                            || r.checks.iter().any(|c| c.ok == Some(false)),
                        "{}",
                        p.display()
                    );
                }
            }
        }
        n += 1;
    }
    assert!(n >= 20, "only {n} signed packages checked");
}

#[test]
fn embedded_root_equals_the_checked_in_pem() {
    let Some(_) = dir() else { return };
    let d = read("version1.hap").unwrap();
    let z = signing::zip_layout(&d).unwrap();
    let b = signing::find_block(&d, &z).unwrap().unwrap();
    let sd = pkcs7::parse(b.value(&d, BLOCK_SIGNATURE).unwrap()).unwrap();
    let root = sd
        .certs
        .iter()
        .find(|c| pkcs7::subject_cn(c) == "OpenHarmony Application Root CA")
        .expect("root embedded");
    assert_eq!(root.to_vec(), oh_root()[0]);
}

/// The signed .app pack (DevEco for HarmonyOS NEXT: the block on the pack, its HAP unsigned).
#[test]
fn a_signed_app_pack_verifies_by_its_pack_signature_and_any_change_fails() {
    use oxh_bundle::verify::verify_package;
    let Some(data) = read("nju_calendar_signed.app") else {
        return;
    };
    let l = Limits::default();
    let opts = VerifyOptions {
        roots: oh_root(),
        ignore_expiry: true,
        ..Default::default()
    };
    let haps = verify_package(&data, &l, &opts).unwrap();
    assert_eq!(haps.len(), 1);
    let h = &haps[0];
    assert_eq!(h.name, "entry-default.hap");
    let inner = open_hap(&h.data, &l).unwrap();
    assert!(inner.block.is_none(), "the HAP inside is unsigned");
    assert_eq!(inner.info.app.bundle_name, "com.mc121.njucalendarimporter");
    let pack = h.pack.as_ref().expect("the pack is signed");
    assert_eq!(
        &h.report, pack,
        "the unsigned HAP is judged by the pack's signature"
    );
    assert_eq!(pack.block_version, 3);
    let get = |r: &oxh_bundle::verify::Report, n: &str| {
        r.checks.iter().find(|c| c.name == n).map(|c| c.ok)
    };
    assert_eq!(get(pack, "digest"), Some(Some(true)), "{:?}", pack.checks);
    assert_eq!(
        get(pack, "signature"),
        Some(Some(true)),
        "{:?}",
        pack.checks
    );
    assert!(!pack.signer.is_empty());
    assert!(
        pack.app_id.starts_with("com.mc121.njucalendarimporter_"),
        "{}",
        pack.app_id
    );
    // Its release profile chains to Huawei's root, which is not embedded: untrusted here,
    // as the AppGallery HAP is.
    assert_eq!(get(pack, "chain"), Some(Some(false)));

    // One byte of the pack changed (pack.info, stored): the digest fails.
    let z = oxh_bundle::package::ZipView::open(&data, &l).unwrap();
    let at = data
        .windows(12)
        .position(|w| w == b"\"bundleName\"")
        .expect("pack.info is stored: its JSON is in the pack's bytes");
    let mut bad = data.clone();
    bad[at + 3] ^= 0x01;
    match verify_package(&bad, &l, &opts) {
        Err(_) => {}
        Ok(v) => {
            let r = &v[0].report;
            assert!(r.result().is_err());
            assert_eq!(get(r, "digest"), Some(Some(false)), "{:?}", r.checks);
        }
    }

    // The HAP inside changed, in a well-formed pack that keeps the original signing block.
    let mut changed = h.data.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 0x01;
    let mut rebuilt = std::io::Cursor::new(Vec::new());
    {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(&mut rebuilt);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for name in ["pac.json", "pack.info"] {
            let mut src = zip::ZipArchive::new(std::io::Cursor::new(&data[..])).unwrap();
            let mut f = src.by_name(name).unwrap();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).unwrap();
            w.start_file(name, stored).unwrap();
            w.write_all(&b).unwrap();
        }
        w.start_file(
            "entry-default.hap",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        w.write_all(&changed).unwrap();
        w.finish().unwrap();
    }
    let unsigned = rebuilt.into_inner();
    let block = z.block.clone().unwrap();
    let subs: Vec<(u32, &[u8])> = block
        .blocks
        .iter()
        .map(|s| (s.kind, block.value(&data, s.kind).unwrap()))
        .collect();
    let ul = signing::zip_layout(&unsigned).unwrap();
    let resigned = signing::insert_block(&unsigned, &ul, &subs);
    match verify_package(&resigned, &l, &opts) {
        Err(e) => panic!("a well-formed pack: {e}"),
        Ok(v) => {
            let r = &v[0].report;
            assert!(r.result().is_err(), "a changed inner HAP still verifies");
            assert_eq!(get(r, "digest"), Some(Some(false)), "{:?}", r.checks);
        }
    }
}
