//! The bundle manager through the real CLI (`oxh hap`, `oxh bm`) on a real daemon: the round
//! trip keygen → pack → sign → verify → install → dump → update → refused downgrade →
//! uninstall, OpenHarmony's own packages, evil packages, and who may install.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUNDLE: &str = "com.example.roundtrip";

fn fixtures() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/ohos/packages");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!(
            "SKIP: no fixtures at {} (the shared fixtures folder is absent)",
            d.display()
        );
        None
    }
}

fn oh_root_pem() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/bundle/testdata/openharmony-app-root-ca.pem")
}

/// A package source dir for `hap pack`.
fn write_src(dir: &Path, version: u32, extra_perm: Option<&str>) {
    std::fs::create_dir_all(dir.join("libs/x86_64")).unwrap();
    std::fs::create_dir_all(dir.join("ets")).unwrap();
    let extra = extra_perm
        .map(|p| format!(", {{ name: '{p}' }}"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("module.json5"),
        format!(
            "// JSON5, as DevEco writes it\n{{\n  app: {{ bundleName: '{BUNDLE}', versionCode: {version}, versionName: '{version}.0.0', minAPIVersion: 12, targetAPIVersion: 12 }},\n  module: {{ name: 'entry', type: 'entry', deviceTypes: ['default'], mainElement: 'EntryAbility',\n    abilities: [{{ name: 'EntryAbility', exported: true, skills: [{{ actions: ['action.system.home'], entities: ['entity.system.home'] }}] }}],\n    requestPermissions: [{{ name: 'ohos.permission.INTERNET' }}, {{ name: 'ohos.permission.CAMERA', reason: '$string:cam', usedScene: {{ abilities: ['EntryAbility'], when: 'inuse' }} }}{extra}],\n  }},\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("ets/modules.abc"), format!("code v{version}")).unwrap();
    std::fs::write(
        dir.join("libs/x86_64/libentry.so"),
        format!("lib v{version}"),
    )
    .unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A fresh release key set for `bundle` (valid from a minute before `now` for an hour), its
/// root trusted by `dev`.
fn trusted_release_keys(
    dev: &TestDevice,
    work: &Path,
    bundle: &str,
    now: u64,
) -> oxh_bundle::tools::KeySet {
    let spec = oxh_bundle::tools::ProfileSpec {
        bundle_name: bundle.into(),
        kind: "release".into(),
        apl: "normal".into(),
        acls: vec![],
        device_ids: vec![],
        not_before: now - 60,
        not_after: now + 3600,
    };
    let ks = oxh_bundle::tools::keygen(&spec, now).unwrap();
    let root = work.join("root.pem");
    std::fs::write(&root, &ks.root_pem).unwrap();
    dev.oxh_ok(&["hap", "trust", "add", s(&root)]);
    ks
}

/// `oxh hap sign IN --key .. --cert .. --profile .. -o OUT` with the files `hap keygen` wrote
/// into `keys`.
fn sign_args(keys: &Path, input: &Path, out: &Path) -> Vec<String> {
    let f = |n: &str| keys.join(n).to_string_lossy().into_owned();
    vec![
        "hap".into(),
        "sign".into(),
        s(input).into(),
        "--key".into(),
        f("dev.key"),
        "--cert".into(),
        f("dev.pem"),
        "--profile".into(),
        f("dev.p7b"),
        "-o".into(),
        s(out).into(),
    ]
}

/// Runs oxh; returns (success, stdout + stderr).
fn run(dev: &TestDevice, args: &[&str]) -> (bool, String) {
    let o = dev.oxh(args);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn dump(dev: &TestDevice, bundle: &str) -> Value {
    let out = dev.oxh_ok(&["bm", "dump", "-n", bundle]);
    let json = out.split_once('\n').map(|x| x.1).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("dump is not JSON ({e}): {out}"))
}

fn token_line(dev: &TestDevice, bundle: &str) -> (bool, String) {
    run(dev, &["atm", "show", bundle])
}

fn code_dir(dev: &TestDevice, bundle: &str) -> PathBuf {
    dev.data_dir().join("app/el1/bundle/public").join(bundle)
}

fn data_dirs(dev: &TestDevice, bundle: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for el in ["el1", "el2"] {
        for k in ["base", "database"] {
            v.push(
                dev.data_dir()
                    .join("app")
                    .join(el)
                    .join("100")
                    .join(k)
                    .join(bundle),
            );
        }
    }
    v
}

#[test]
fn round_trip_keygen_pack_sign_verify_install_update_downgrade_uninstall() {
    let dev = TestDevice::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let keys = w.join("keys");
    // keygen: with a device running, the debug profile lists this device.
    let out = dev.oxh_ok(&["hap", "keygen", "--bundle", BUNDLE, "--out", s(&keys)]);
    assert!(out.contains("debug profile"), "{out}");
    for f in ["root.pem", "dev.key", "dev.pem", "dev.p7b"] {
        assert!(keys.join(f).is_file(), "{f}");
    }
    let sign = |src: &Path, out: &Path| {
        let unsigned = out.with_extension("unsigned.hap");
        dev.oxh_ok(&["hap", "pack", s(src), "-o", s(&unsigned)]);
        let a = sign_args(&keys, &unsigned, out);
        dev.oxh_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    };
    write_src(&w.join("src1"), 1, None);
    let v1 = w.join("v1.hap");
    sign(&w.join("src1"), &v1);

    // Verify: everything but the chain before the dev root is trusted here.
    let (ok, out) = run(&dev, &["hap", "verify", s(&v1)]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("ok   digest") && out.contains("ok   signature"),
        "{out}"
    );
    assert!(out.contains("FAIL chain"), "{out}");
    assert!(
        out.contains("ok   profile-device"),
        "the debug profile lists this device: {out}"
    );
    let (ok, out) = run(&dev, &["bm", "install", "-p", s(&v1)]);
    assert!(
        !ok && out.contains("error: failed to install bundle.") && out.contains("code:9568257"),
        "{out}"
    );
    assert!(!code_dir(&dev, BUNDLE).exists());
    dev.oxh_ok(&["hap", "trust", "add", s(&keys.join("root.pem"))]);
    assert!(
        dev.oxh_ok(&["hap", "trust", "ls"])
            .contains("oxharmony Dev Root CA")
    );
    let out = dev.oxh_ok(&["hap", "verify", s(&v1)]);
    assert!(
        out.contains("verified") && out.contains("ok   chain"),
        "{out}"
    );

    // Install v1.
    let out = dev.oxh_ok(&["bm", "install", "-p", s(&v1)]);
    assert_eq!(out.trim(), "install bundle successfully.");
    let code = code_dir(&dev, BUNDLE);
    assert_eq!(
        std::fs::read(code.join("entry.hap")).unwrap(),
        std::fs::read(&v1).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(code.join("libs/x86_64/libentry.so")).unwrap(),
        "lib v1"
    );
    for d in data_dirs(&dev, BUNDLE) {
        assert!(d.is_dir(), "{}", d.display());
    }
    let d1 = dump(&dev, BUNDLE);
    assert_eq!(d1["versionCode"], 1);
    assert_eq!(d1["uid"], 100 * 200_000 + 10_000, "{d1}");
    assert_eq!(d1["hapModuleNames"], serde_json::json!(["entry"]));
    assert_eq!(
        d1["hapModuleInfos"][0]["abilityInfos"][0]["name"],
        "EntryAbility"
    );
    let listed = dev.oxh_ok(&["bm", "dump", "-a"]);
    assert!(
        listed.starts_with("ID: 100:") && listed.contains(&format!("\t{BUNDLE}")),
        "{listed}"
    );
    // The token: INTERNET (system_grant) granted, CAMERA (user_grant) pending.
    let (ok, t) = token_line(&dev, BUNDLE);
    assert!(ok, "{t}");
    let line = |p: &str| {
        t.lines()
            .find(|l| l.contains(p))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("ohos.permission.INTERNET").contains("GRANTED"), "{t}");
    assert!(line("ohos.permission.CAMERA").contains("DENIED"), "{t}");
    let token1 = d1["accessTokenId"].as_u64().unwrap();

    // Update to v2 (asks for one more permission).
    write_src(&w.join("src2"), 2, Some("ohos.permission.VIBRATE"));
    let v2 = w.join("v2.hap");
    sign(&w.join("src2"), &v2);
    assert_eq!(
        dev.oxh_ok(&["bm", "install", "-p", s(&v2), "-r"]).trim(),
        "install bundle successfully."
    );
    let d2 = dump(&dev, BUNDLE);
    assert_eq!(d2["versionCode"], 2);
    assert_eq!(d2["uid"], d1["uid"], "an update keeps the uid");
    assert_eq!(
        d2["accessTokenId"].as_u64().unwrap(),
        token1,
        "an update keeps the token"
    );
    assert!(
        token_line(&dev, BUNDLE)
            .1
            .contains("ohos.permission.VIBRATE")
    );
    assert_eq!(
        std::fs::read_to_string(code.join("libs/x86_64/libentry.so")).unwrap(),
        "lib v2"
    );

    // Downgrade to v1: refused, v2 intact.
    let (ok, out) = run(&dev, &["bm", "install", "-p", s(&v1)]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("code:9568263") && out.contains("error: install version downgrade."),
        "{out}"
    );
    // Another signer: refused (9568332), v2 intact.
    let keys2 = w.join("keys2");
    dev.oxh_ok(&["hap", "keygen", "--bundle", BUNDLE, "--out", s(&keys2)]);
    dev.oxh_ok(&["hap", "trust", "add", s(&keys2.join("root.pem"))]);
    write_src(&w.join("src3"), 3, None);
    let v3u = w.join("v3.unsigned.hap");
    let v3 = w.join("v3.hap");
    dev.oxh_ok(&["hap", "pack", s(&w.join("src3")), "-o", s(&v3u)]);
    let a = sign_args(&keys2, &v3u, &v3);
    dev.oxh_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out) = run(&dev, &["bm", "install", "-p", s(&v3)]);
    assert!(!ok && out.contains("code:9568332"), "{out}");
    // A tampered v3 from the right signer: refused at verification, v2 intact.
    let v3ok = w.join("v3ok.hap");
    sign(&w.join("src3"), &v3ok);
    let mut bad = std::fs::read(&v3ok).unwrap();
    bad[50] ^= 0x20;
    let v3bad = w.join("v3bad.hap");
    std::fs::write(&v3bad, &bad).unwrap();
    let (ok, out) = run(&dev, &["bm", "install", "-p", s(&v3bad)]);
    assert!(
        !ok && out.contains("error: failed to install bundle."),
        "{out}"
    );
    let d = dump(&dev, BUNDLE);
    assert_eq!(d["versionCode"], 2, "failed updates leave version 2");
    assert_eq!(
        std::fs::read(code.join("entry.hap")).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(code.join("libs/x86_64/libentry.so")).unwrap(),
        "lib v2"
    );
    let leftovers: Vec<_> = std::fs::read_dir(code.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        vec![BUNDLE.to_string()],
        "no half-built code dirs left"
    );

    // Uninstall -k keeps data; reinstall; uninstall removes everything.
    std::fs::write(data_dirs(&dev, BUNDLE)[0].join("note.txt"), "user data").unwrap();
    assert_eq!(
        dev.oxh_ok(&["bm", "uninstall", "-n", BUNDLE, "-k"]).trim(),
        "uninstall bundle successfully."
    );
    assert!(!code.exists());
    assert!(
        data_dirs(&dev, BUNDLE)[0].join("note.txt").is_file(),
        "-k keeps data"
    );
    assert!(!token_line(&dev, BUNDLE).0, "the token is gone");
    dev.oxh_ok(&["bm", "install", "-p", s(&v3ok)]);
    assert_eq!(dump(&dev, BUNDLE)["versionCode"], 3);
    assert_eq!(
        dev.oxh_ok(&["bm", "uninstall", "-n", BUNDLE]).trim(),
        "uninstall bundle successfully."
    );
    assert!(!code.exists());
    for d in data_dirs(&dev, BUNDLE) {
        assert!(!d.exists(), "{} removed", d.display());
    }
    assert!(!token_line(&dev, BUNDLE).0, "the token is gone");
    let (ok, out) = run(&dev, &["bm", "uninstall", "-n", BUNDLE]);
    assert!(!ok && out.contains("code:9568386"), "{out}");
    let (ok, out) = run(&dev, &["bm", "dump", "-n", BUNDLE]);
    assert!(!ok && out.contains("17700001"), "{out}");
}

/// A process running with an installed app's uid gets the app's token.
#[test]
fn app_uid_resolves_to_the_app_token() {
    if !is_root("app_uid_resolves_to_the_app_token") {
        return;
    }
    let dev = TestDevice::start();
    dev.let_others_in();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let keys = w.join("keys");
    dev.oxh_ok(&["hap", "keygen", "--bundle", BUNDLE, "--out", s(&keys)]);
    dev.oxh_ok(&["hap", "trust", "add", s(&keys.join("root.pem"))]);
    write_src(&w.join("src"), 1, None);
    dev.oxh_ok(&["hap", "pack", s(&w.join("src")), "-o", s(&w.join("u.hap"))]);
    let a = sign_args(&keys, &w.join("u.hap"), &w.join("s.hap"));
    dev.oxh_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    dev.oxh_ok(&["bm", "install", "-p", s(&w.join("s.hap"))]);
    let d = dump(&dev, BUNDLE);
    let uid = d["uid"].as_u64().unwrap();
    let token = d["accessTokenId"].as_u64().unwrap();
    // The app's uid may not read the data dir as such, but its socket is reachable (0711/0755).
    let exe = std::env::current_exe().unwrap();
    let o = Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ])
        .arg("env")
        .arg(format!("{CHILD_ENV}={}", dev.data_dir().display()))
        .arg(&exe)
        .args([
            "--exact",
            "bundle::child_whoami",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("setpriv");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find_map(|l| l.find(RESULT).map(|i| &l[i + RESULT.len()..]))
        .unwrap_or_else(|| {
            panic!(
                "child printed no result: {out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    let me: Value = serde_json::from_str(line).unwrap();
    assert_eq!(me["uid"].as_u64(), Some(uid), "{me}");
    assert_eq!(
        me["tokenID"].as_u64(),
        Some(token),
        "the app's uid runs with the app's token: {me}"
    );
    assert_eq!(me["tokenType"], "hap", "{me}");
}

const CHILD_ENV: &str = "OXH_BUNDLE_TEST_CHILD";
const RESULT: &str = "OXH-BUNDLE-RESULT ";

/// Not a test of its own: when [`CHILD_ENV`] names a data dir, prints who this process is to
/// that device (run as an app's uid by [`app_uid_resolves_to_the_app_token`]).
#[tokio::test]
async fn child_whoami() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dev = oxh_sdk::Device::connect(dir)
        .await
        .expect("connect as the app");
    let me = dev.samgr().whoami().await.expect("whoami");
    println!("{RESULT}{}", serde_json::to_string(&me).unwrap());
}

fn is_root(test: &str) -> bool {
    oxh_testkit::require_root(test, "to run a process as another uid")
}

/// OpenHarmony's own packages on a device that trusts OpenHarmony's root: each refused as its
/// README says when signatures are enforced; with dev mode and --skip-verify the FA app
/// installs, updates 1 → 2 → 3 and refuses the downgrade.
#[test]
fn openharmony_packages_install_update_and_refuse() {
    let Some(fx) = fixtures() else { return };
    let dev = TestDevice::start();
    dev.oxh_ok(&["hap", "trust", "add", s(&oh_root_pem())]);
    let f = |n: &str| fx.join(n).to_str().unwrap().to_string();
    let expect_fail = |file: &str, args: &[&str], code: &str| {
        let p = f(file);
        let mut a = vec!["bm", "install", "-p", p.as_str()];
        a.extend_from_slice(args);
        let (ok, out) = run(&dev, &a);
        assert!(!ok, "{file}: {out}");
        assert!(
            out.contains("error: failed to install bundle."),
            "{file}: {out}"
        );
        assert!(
            out.contains(&format!("code:{code}")),
            "{file}: expected {code}: {out}"
        );
        out
    };
    // Enforced: the profiles of these test packages name other bundles.
    expect_fail("wrong_bundle_name_sign.hap", &[], "9568329");
    expect_fail("version1.hap", &[], "9568329");
    expect_fail("perm_unsigned.hap", &[], "9568320");
    expect_fail("bad_break_zip.hap", &[], "9568262");
    expect_fail("bad_empty_config.hap", &[], "9568262");
    expect_fail("bad_nothing_config.hap", &[], "9568262");
    expect_fail("bad_no_profile.hap", &[], "9568262");
    expect_fail("bad_format_error_profile.hap", &[], "9568259");
    // --skip-verify without dev mode: refused.
    let out = expect_fail("version1.hap", &["--skip-verify"], "9568264");
    assert!(out.contains("persist.bms.dev_mode"), "{out}");
    dev.oxh_ok(&["param", "set", "persist.bms.dev_mode", "1"]);
    for (file, v) in [
        ("version1.hap", 1),
        ("version2.hap", 2),
        ("version3.hap", 3),
    ] {
        let (ok, out) = run(&dev, &["bm", "install", "-p", &f(file), "--skip-verify"]);
        assert!(
            ok && out.contains("install bundle successfully."),
            "{file}: {out}"
        );
        assert!(
            out.contains("WARNING: signature verification was SKIPPED"),
            "{file}: {out}"
        );
        assert_eq!(dump(&dev, "com.example.l3jsdemo")["versionCode"], v);
    }
    expect_fail("version1.hap", &["--skip-verify"], "9568263");
    assert_eq!(dump(&dev, "com.example.l3jsdemo")["versionCode"], 3);
    // Bad packages stay refused whatever is skipped.
    expect_fail(
        "bad_format_error_profile.hap",
        &["--skip-verify"],
        "9568259",
    );
    // One bundle of four modules from a directory.
    let dir = tempfile::tempdir().unwrap();
    for n in [
        "dependencies_entry.hap",
        "dependencies_entry_A.hap",
        "dependencies_entry_B.hap",
        "dependencies_entry_C.hap",
    ] {
        std::fs::copy(fx.join(n), dir.path().join(n)).unwrap();
    }
    let out = dev.oxh_ok(&["bm", "install", "-p", s(dir.path()), "--skip-verify"]);
    assert!(out.contains("install bundle successfully."), "{out}");
    let d = dump(&dev, "com.example.dependenciestest");
    assert_eq!(d["hapModuleNames"].as_array().unwrap().len(), 4, "{d}");
    // Stage-model update rules: lower version refused, same and higher accepted.
    let svc = "com.example.myapplication.hmservice";
    dev.oxh_ok(&[
        "bm",
        "install",
        "-p",
        &f("update_same_version_entry_service.hap"),
        "--skip-verify",
    ]);
    expect_fail(
        "update_lower_version_entry_service.hap",
        &["--skip-verify"],
        "9568263",
    );
    dev.oxh_ok(&[
        "bm",
        "install",
        "-p",
        &f("update_higher_version_entry_service.hap"),
        "--skip-verify",
    ]);
    assert_eq!(dump(&dev, svc)["versionCode"], 1_000_001);
}

/// Writes a zip with the given entries (name, data, `Some(0o120777)` for a symlink to data).
fn zip_with(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        if *mode == Some(0o120777) {
            let target = std::str::from_utf8(data).unwrap();
            w.add_symlink(*name, target, o).unwrap();
            continue;
        }
        w.start_file(*name, o).unwrap();
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Evil packages are refused by the daemon and nothing is written outside its staging dir
/// (which is emptied): zip slip, absolute paths, symlinks, a declared 10 GB bomb, a real
/// high-ratio bomb, an entry that inflates past its header, 100,000 entries.
#[test]
fn evil_packages_are_refused_and_write_nothing() {
    let dev = TestDevice::start();
    dev.oxh_ok(&["param", "set", "persist.bms.dev_mode", "1"]);
    let work = tempfile::tempdir().unwrap();
    let module = br#"{"app":{"bundleName":"com.example.evil","versionCode":1},"module":{"name":"entry","type":"entry"}}"#;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "zip slip",
            zip_with(&[
                ("module.json", module, None),
                ("libs/../../../../evil.so", b"x", None),
            ]),
            "9568271",
        ),
        (
            "absolute",
            zip_with(&[
                ("module.json", module, None),
                ("/tmp/evil-abs.so", b"x", None),
            ]),
            "9568271",
        ),
        (
            "symlink",
            zip_with(&[
                ("module.json", module, None),
                ("libs/x86_64/link.so", b"/etc/passwd", Some(0o120777)),
            ]),
            "9568271",
        ),
    ];
    // Declared 10 GB: three entries whose headers claim ~3.4 GB each.
    let mut bomb = zip_with(&[
        ("module.json", module, None),
        ("a.bin", b"a", None),
        ("b.bin", b"b", None),
        ("c.bin", b"c", None),
    ]);
    oxh_testkit::zip::patch_declared_sizes(&mut bomb, &["a.bin", "b.bin", "c.bin"], 0xcccc_cccc);
    cases.push(("10 GB declared", bomb, "9568271"));
    // A real ratio bomb: 64 MiB of zeros deflated to ~64 KiB.
    let zeros = vec![0u8; 64 << 20];
    cases.push((
        "ratio bomb",
        zip_with(&[
            ("module.json", module, None),
            ("libs/x86_64/z.so", &zeros, None),
        ]),
        "9568271",
    ));
    // module.json whose header says 100 bytes but which inflates to 1 MiB.
    let big_json = {
        let mut v = module.to_vec();
        v.extend(std::iter::repeat_n(b' ', 1 << 20));
        v
    };
    let mut liar = zip_with(&[("module.json", &big_json, None)]);
    oxh_testkit::zip::patch_declared_sizes(&mut liar, &["module.json"], 100);
    cases.push(("inflates past its header", liar, "9568271"));
    // 100,000 entries.
    let many = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("module.json", o).unwrap();
        std::io::Write::write_all(&mut w, module).unwrap();
        for i in 0..100_000 {
            w.start_file(format!("f/{i}"), o).unwrap();
        }
        w.finish().unwrap().into_inner()
    };
    cases.push(("100,000 entries", many, "9568271"));
    // A well-formed package whose signed profile names another bundle.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ks = trusted_release_keys(&dev, work.path(), "com.example.someoneelse", now);
    let other = zip_with(&[("module.json", module, None)]);
    let wrong = ks.sign(&other, now).unwrap();
    cases.push(("wrong profile bundle name", wrong, "9568329"));
    let outside = ["/tmp/evil-abs.so", "/evil.so"];
    let before = tree(dev.data_dir());
    for (what, data, code) in &cases {
        let p = work
            .path()
            .join(format!("{}.hap", what.replace([' ', ','], "_")));
        std::fs::write(&p, data).unwrap();
        // Signature checks are skipped (dev mode) except for the signed case, so that each
        // package is refused for what it is, not for being unsigned.
        let mut args = vec!["bm", "install", "-p", s(&p)];
        if !what.contains("profile") {
            args.push("--skip-verify");
        }
        let (ok, out) = run(&dev, &args);
        assert!(!ok, "{what}: {out}");
        assert!(
            out.contains(&format!("code:{code}")),
            "{what}: expected {code}: {out}"
        );
        assert!(out.contains("reason: "), "{what}: a clear reason: {out}");
    }
    for o in outside {
        assert!(!Path::new(o).exists(), "{o} written");
    }
    let after = tree(dev.data_dir());
    let new: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(
        new.iter().all(|p| p.starts_with("bundle/")
            || p.starts_with("log/")
            || p.starts_with("atm/")
            || p.starts_with("param/")),
        "only service state may change: {new:?}"
    );
    assert!(
        !dev.data_dir().join("app").exists(),
        "no app dir was created"
    );
    let staging = dev.data_dir().join("bundle/staging");
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "staging emptied"
    );
}

/// Relative paths of every file and dir below `root`.
fn tree(root: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v
}

/// Installing needs ohos.permission.INSTALL_BUNDLE: `nobody` (no token) is refused.
#[test]
fn install_needs_the_install_permission() {
    if !is_root("install_needs_the_install_permission") {
        return;
    }
    let dev = TestDevice::start();
    use std::os::unix::fs::PermissionsExt;
    dev.let_others_in();
    let work = tempfile::Builder::new()
        .prefix("oxh-bm-perm")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let module = br#"{"app":{"bundleName":"com.example.perm","versionCode":1},"module":{"name":"entry","type":"entry"}}"#;
    let p = work.path().join("p.hap");
    std::fs::write(&p, zip_with(&[("module.json", module, None)])).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(oxh_bin())
        .arg("--data-dir")
        .arg(dev.data_dir())
        .args(["bm", "install", "-p", s(&p)])
        .output()
        .expect("runuser");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("code:9568266") && out.contains("INSTALL_BUNDLE"),
        "{out}"
    );
    let (ok, _) = run(&dev, &["bm", "dump", "-n", "com.example.perm"]);
    assert!(!ok, "nothing installed");
}

/// `oxh sim` devices trust the sim's dev root; apps signed under it verify against it.
#[test]
fn sim_devices_trust_the_sim_dev_root() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let o = Command::new(oxh_bin())
        .args([
            "sim",
            "--devices",
            "2",
            "--base-dir",
            s(b),
            "--exit-when-ready",
            "--no-apps",
        ])
        .output()
        .expect("run oxh sim");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let root = std::fs::read_to_string(b.join("devroot/root.pem")).unwrap();
    for d in ["dev1", "dev2"] {
        let trusted: Vec<String> = std::fs::read_dir(b.join(d).join("bundle/trust"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(
            trusted,
            vec![root.clone()],
            "{d} trusts exactly the sim's root"
        );
    }
    // Sign under the sim's root (offline: no device needed) and verify against it.
    let w = b.join("app");
    write_src(&w.join("src"), 1, None);
    let oxh = |args: &[&str]| {
        let o = Command::new(oxh_bin()).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{args:?}: {text}");
        text
    };
    let keys = w.join("keys");
    let none = b.join("no-device");
    oxh(&[
        "--data-dir",
        s(&none),
        "hap",
        "keygen",
        "--bundle",
        BUNDLE,
        "--out",
        s(&keys),
        "--root",
        s(&b.join("devroot")),
        "--device-id",
        "X",
    ]);
    oxh(&["hap", "pack", s(&w.join("src")), "-o", s(&w.join("u.hap"))]);
    let a = sign_args(&keys, &w.join("u.hap"), &w.join("s.hap"));
    oxh(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let v = oxh(&[
        "hap",
        "verify",
        "--offline",
        "--root",
        s(&b.join("devroot/root.pem")),
        s(&w.join("s.hap")),
    ]);
    assert!(v.contains("ok   chain") && v.contains("verified"), "{v}");
}

/// An `.app` (pack.info + HAPs) installs as one bundle with all its modules; `oxh hap info`
/// reads it.
#[test]
fn app_file_installs_its_haps_as_one_bundle() {
    let dev = TestDevice::start();
    let work = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let bundle = "com.example.multi";
    let ks = trusted_release_keys(&dev, work.path(), bundle, now);
    let hap = |name: &str, kind: &str| {
        let m = format!(
            "{{app: {{bundleName: '{bundle}', versionCode: 7, versionName: '7'}}, module: {{name: '{name}', type: '{kind}', deviceTypes: ['default'], abilities: [{{name: '{name}Ability'}}]}}}}"
        );
        let files: oxh_bundle::tools::Files = vec![("module.json5".into(), m.into_bytes())];
        let unsigned = oxh_bundle::tools::pack(&files).unwrap();
        ks.sign(&unsigned, now).unwrap()
    };
    let entry = hap("entry", "entry");
    let feature = hap("camera", "feature");
    let pack_info = format!(
        "{{\"summary\":{{\"app\":{{\"bundleName\":\"{bundle}\",\"version\":{{\"code\":7,\"name\":\"7\"}}}}}}}}"
    );
    let app = zip_with(&[
        ("pack.info", pack_info.as_bytes(), None),
        ("entry-default.hap", &entry, None),
        ("camera-default.hap", &feature, None),
    ]);
    let p = work.path().join("multi.app");
    std::fs::write(&p, &app).unwrap();
    let info = dev.oxh_ok(&["hap", "info", s(&p)]);
    assert!(
        info.contains("camera (feature)") && info.contains("entry (entry)"),
        "{info}"
    );
    assert_eq!(
        dev.oxh_ok(&["bm", "install", "-p", s(&p)]).trim(),
        "install bundle successfully."
    );
    let d = dump(&dev, bundle);
    assert_eq!(
        d["hapModuleNames"],
        serde_json::json!(["camera", "entry"]),
        "{d}"
    );
    assert!(code_dir(&dev, bundle).join("camera.hap").is_file());
    assert!(code_dir(&dev, bundle).join("entry.hap").is_file());
}

/// `oxh` run through a link named `bm` is OpenHarmony's `bm`.
#[test]
fn bm_is_a_multi_call_name() {
    let dev = TestDevice::start();
    let d = tempfile::tempdir().unwrap();
    let bm = d.path().join("bm");
    std::os::unix::fs::symlink(oxh_bin(), &bm).unwrap();
    let o = Command::new(&bm)
        .env("OXH_DATA_DIR", dev.data_dir())
        .args(["dump", "-a"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ID: 100:");
    let o = Command::new(&bm)
        .env("OXH_DATA_DIR", dev.data_dir())
        .args(["install", "-p", "/nonexistent/x.hap"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(
        out.starts_with(
            "error: failed to install bundle.\ncode:9568269\nerror: install file path invalid.\n"
        ),
        "{out}"
    );
}

#[test]
fn a_signed_app_pack_shows_its_signer_and_verifies_by_the_pack() {
    let Some(f) = fixtures() else { return };
    let app = f.join("nju_calendar_signed.app");
    let dev = TestDevice::start();
    let info = dev.oxh_ok(&["hap", "info", s(&app)]);
    assert!(
        info.contains("signer:      高仁杰(1900030796866019905)\\,Release"),
        "{info}"
    );
    let (ok, out) = run(&dev, &["--json", "hap", "verify", "--offline", s(&app)]);
    assert!(!ok, "Huawei's root is not trusted here: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let h = &v["haps"][0];
    assert_eq!(h["name"], "entry-default.hap", "{v}");
    assert_eq!(h["signedByPack"], true, "{v}");
    let checks = h["report"]["checks"].as_array().unwrap();
    let ok_of = |n: &str| {
        checks
            .iter()
            .find(|c| c["name"] == n)
            .map(|c| c["ok"].clone())
    };
    assert_eq!(ok_of("digest"), Some(serde_json::json!(true)), "{v}");
    assert_eq!(ok_of("signature"), Some(serde_json::json!(true)), "{v}");
    assert_eq!(v["code"], 9568257, "the untrusted chain decides: {v}");
}

/// An unsigned HAP as hapsigner aligns one: `lib` stored uncompressed and 4 KiB aligned as
/// `libs/x86_64/libentry.so`, then module.json.
fn aligned_hap(bundle: &str, lib: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(4096);
    w.start_file("libs/x86_64/libentry.so", stored).unwrap();
    w.write_all(lib).unwrap();
    w.start_file("module.json", stored).unwrap();
    let m = format!(
        r#"{{"app":{{"bundleName":"{bundle}","versionCode":1}},"module":{{"name":"entry","type":"entry"}}}}"#
    );
    w.write_all(m.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn hap_verify_reports_code_signatures_and_names_a_library_changed_after_signing() {
    let dev = TestDevice::start();
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let bundle = "com.example.codesign";
    let keys = w.join("keys");
    dev.oxh_ok(&["hap", "keygen", "--bundle", bundle, "--out", s(&keys)]);
    let lib: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
    let unsigned = w.join("u.hap");
    std::fs::write(&unsigned, aligned_hap(bundle, &lib)).unwrap();
    let signed = w.join("s.hap");
    let a = sign_args(&keys, &unsigned, &signed);
    dev.oxh_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let root = keys.join("root.pem");
    let verify = |hap: &Path, json: bool| {
        let mut a = vec!["hap", "verify", "--offline", "--root", s(&root), s(hap)];
        if json {
            a.insert(0, "--json");
        }
        run(&dev, &a)
    };

    let (ok, out) = verify(&signed, false);
    assert!(ok, "{out}");
    assert!(out.contains("ok   code-signature "), "{out}");
    assert!(
        out.contains("ok   code-signature-lib   libs/x86_64/libentry.so: fs-verity digest"),
        "{out}"
    );
    assert!(
        out.contains(
            "code signature: HAP code region 24576 bytes verified, 1 of 1 native libraries verified"
        ),
        "{out}"
    );
    let (_, out) = verify(&signed, true);
    let v: Value = serde_json::from_str(&out).unwrap();
    let c = &v["report"]["codeSignature"];
    assert_eq!(c["present"], true, "{v}");
    assert_eq!(c["hap"]["dataSize"], 24576, "{v}");
    assert_eq!(c["libs"][0]["name"], "libs/x86_64/libentry.so", "{v}");
    assert_eq!(c["libs"][0]["ok"], true, "{v}");
    assert_eq!(c["ownerId"], "DEBUG_LIB_ID", "{v}");

    // One byte of the library changed, the signing block kept: the same zip layout with the
    // changed entry, the signed file's block between its entries and central directory.
    let mut bad = lib.clone();
    bad[10_000] ^= 0x01;
    let other = aligned_hap(bundle, &bad);
    let sd = std::fs::read(&signed).unwrap();
    let cd = |z: &[u8]| {
        let e = z.len() - 22;
        u32::from_le_bytes(z[e + 16..e + 20].try_into().unwrap()) as usize
    };
    let (cd_o, cd_s) = (cd(&other), cd(&sd));
    let mut t = other[..cd_o].to_vec();
    t.extend_from_slice(&sd[cd_o..cd_s]);
    t.extend_from_slice(&other[cd_o..other.len() - 22]);
    t.extend_from_slice(&sd[sd.len() - 22..]);
    let tampered = w.join("t.hap");
    std::fs::write(&tampered, &t).unwrap();
    let (ok, out) = verify(&tampered, false);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL code-signature-lib"), "{out}");
    assert!(
        out.contains("not verified: error: Failed to install the HAP because the code signature verification failed. (code 9568393): code-signature-lib: libs/x86_64/libentry.so:"),
        "the library is named: {out}"
    );
    let (_, out) = verify(&tampered, true);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["code"], 9568393, "{v}");
    assert_eq!(v["report"]["codeSignature"]["libs"][0]["ok"], false, "{v}");
    assert_eq!(
        v["report"]["codeSignature"]["libs"][0]["errorCode"], -4,
        "CS_ERR_INVALID_SIGNATURE: {v}"
    );
    // bm install refuses it with the same code.
    dev.oxh_ok(&["hap", "trust", "add", s(&root)]);
    let (ok, out) = run(&dev, &["bm", "install", "-p", s(&tampered)]);
    assert!(!ok && out.contains("code:9568393"), "{out}");
    let (ok, out) = run(&dev, &["bm", "install", "-p", s(&signed)]);
    assert!(ok, "{out}");
}
