//! OpenHarmony's names in every `--json` output (issue 16, item 4): each output family has
//! OpenHarmony's field names and value spellings, and none of our Rust names (no snake_case
//! key anywhere, no "UserGrant"-style enum value). docs/NAMES.md lists the mapping.

use crate::common::*;
use serde_json::Value;
use std::path::Path;

/// Every object key in `v`, at any depth, that is spelt in snake_case: OpenHarmony's JSON has
/// none, ours had them.
fn snake_keys(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k.contains('_') {
                        out.push(k.clone());
                    }
                    stack.push(x);
                }
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Asserts `v` has every key of `keys` and no snake_case key.
fn has_openharmony_keys(what: &str, v: &Value, keys: &[&str]) {
    for k in keys {
        assert!(v.get(k).is_some(), "{what}: no {k}: {v}");
    }
    assert_eq!(
        snake_keys(v),
        Vec::<String>::new(),
        "{what}: our names: {v}"
    );
}

#[tokio::test]
async fn device_json_has_device_managers_names() {
    let (a, b) = crate::softbus::online_pair().await;
    let info = json(&a.oxh_ok(&["device", "info", "--json"]));
    has_openharmony_keys(
        "device info",
        &info,
        &[
            "udid",
            "deviceName",
            "deviceType",
            "deviceTypeId",
            "osFullName",
            "networkId",
        ],
    );
    // The product type as const.product.devicetype has it; the id is DmDeviceType's.
    assert_eq!(info["deviceType"], "default", "{info}");
    assert_eq!(info["deviceTypeId"], 0x0E, "{info}");

    let list = json(&a.oxh_ok(&["device", "list", "--json"]));
    let t = &list[0];
    has_openharmony_keys(
        "device list",
        t,
        &[
            "udid",
            "deviceName",
            "deviceType",
            "deviceTypeId",
            "networkId",
        ],
    );
    assert_eq!(t["networkId"], b.ready_field("network_id"), "{t}");
    assert_eq!(t["udid"], b.ready_field("udid"), "{t}");
    // DeviceBasicInfo.deviceType as distributedDeviceManager gives it for id 0x0E.
    assert_eq!(t["deviceType"], "PHONE", "{t}");
    assert_eq!(t["deviceName"], "test-device", "{t}");
}

#[test]
fn atm_json_has_access_token_names_and_spellings() {
    let dev = TestDevice::start();
    let tokens = json(&dev.oxh_ok(&["atm", "tokens", "--json"]));
    let tokens = tokens.as_array().expect("a list");
    for t in tokens {
        has_openharmony_keys(
            "atm tokens",
            t,
            &["tokenID", "tokenAttr", "tokenType", "apl"],
        );
    }
    let core = tokens
        .iter()
        .find(|t| t["apl"] == "system_core")
        .unwrap_or_else(|| panic!("a system_core token: {tokens:?}"));
    assert_eq!(core["tokenType"], "native", "{core}");
    let id = core["tokenID"].as_u64().expect("tokenID is a number");

    let show = json(&dev.oxh_ok(&["atm", "show", &id.to_string(), "--json"]));
    has_openharmony_keys("atm show", &show, &["info", "permStateList"]);
    let first = &show["permStateList"][0];
    assert!(
        first["permissionName"].is_string() && first["grantFlag"].is_number(),
        "{show}"
    );

    let o = dev.oxh(&["atm", "check", &id.to_string(), "CAMERA", "--json"]);
    let check = json(&String::from_utf8_lossy(&o.stdout));
    has_openharmony_keys(
        "atm check",
        &check,
        &["tokenID", "permissionName", "granted", "grantFlag"],
    );
    assert_eq!(check["permissionName"], "ohos.permission.CAMERA");

    let perms = json(&dev.oxh_ok(&["atm", "perms", "--json"]));
    let camera = perms
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ohos.permission.CAMERA")
        .expect("CAMERA is defined");
    has_openharmony_keys(
        "atm perms",
        camera,
        &[
            "name",
            "grantMode",
            "availableLevel",
            "availableType",
            "provisionEnable",
            "distributedSceneEnable",
        ],
    );
    assert_eq!(camera["grantMode"], "user_grant", "{camera}");
    assert_eq!(camera["availableLevel"], "normal", "{camera}");
    assert_eq!(camera["availableType"], "NORMAL", "{camera}");
}

#[test]
fn sa_list_and_whoami_json_have_samgr_names() {
    let dev = TestDevice::start();
    let list = json(&dev.oxh_ok(&["sa", "list", "--json"]));
    let bms = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["saId"] == 401)
        .unwrap_or_else(|| panic!("the bundle manager: {list}"));
    has_openharmony_keys("sa list", bms, &["saId", "name", "state", "runOnCreate"]);
    let state = bms["state"].as_str().unwrap_or_default();
    assert!(state == "LOADED" || state == "NOT_LOADED", "{bms}");
    let dump = json(&dev.oxh_ok(&["hidumper", "-s", "401", "--json"]));
    has_openharmony_keys("hidumper -s", &dump, &["saId", "dump"]);

    let me = json(&dev.oxh_ok(&["sa", "whoami", "--json"]));
    has_openharmony_keys(
        "sa whoami",
        &me,
        &["pid", "uid", "tokenID", "tokenType", "processName"],
    );
    assert_eq!(me["tokenType"], "shell", "{me}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn bundle_json_has_bundle_managers_names() {
    const BUNDLE: &str = "com.example.names";
    let dev = TestDevice::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("ets")).unwrap();
    std::fs::write(
        src.join("module.json5"),
        format!(
            "{{ app: {{ bundleName: '{BUNDLE}', versionCode: 3, versionName: '3.0', minAPIVersion: 12, targetAPIVersion: 12 }},\n  module: {{ name: 'entry', type: 'entry', deviceTypes: ['default'], mainElement: 'EntryAbility',\n    abilities: [{{ name: 'EntryAbility', exported: true, launchType: 'singleton', skills: [{{ actions: ['action.system.home'], entities: ['entity.system.home'] }}] }}],\n    requestPermissions: [{{ name: 'ohos.permission.CAMERA', usedScene: {{ abilities: ['EntryAbility'], when: 'inuse' }} }}] }} }}\n"
        ),
    )
    .unwrap();
    std::fs::write(src.join("ets/modules.abc"), "code").unwrap();
    let unsigned = w.join("entry.unsigned.hap");
    dev.oxh_ok(&["hap", "pack", s(&src), "-o", s(&unsigned)]);

    // `oxh hap info --json`: module.json's names.
    let info = json(&dev.oxh_ok(&["--json", "hap", "info", s(&unsigned)]));
    let h = &info[0];
    has_openharmony_keys(
        "hap info",
        h,
        &[
            "app",
            "moduleName",
            "moduleType",
            "deviceTypes",
            "mainElement",
            "abilities",
            "requestPermissions",
        ],
    );
    assert_eq!(h["app"]["bundleName"], BUNDLE, "{h}");
    assert_eq!(h["app"]["versionCode"], 3, "{h}");
    assert_eq!(h["app"]["minAPIVersion"], 12, "{h}");
    assert_eq!(h["abilities"][0]["name"], "EntryAbility", "{h}");
    assert_eq!(h["abilities"][0]["launchType"], "singleton", "{h}");
    assert_eq!(h["requestPermissions"][0]["usedScene"]["when"], "inuse");

    // Installed: `bm dump -n` prints OpenHarmony's BundleInfo.
    let keys = w.join("keys");
    dev.oxh_ok(&["hap", "keygen", "--bundle", BUNDLE, "--out", s(&keys)]);
    dev.oxh_ok(&["hap", "trust", "add", s(&keys.join("root.pem"))]);
    let hap = w.join("entry.hap");
    let k = |n: &str| keys.join(n).to_string_lossy().into_owned();
    dev.oxh_ok(&[
        "hap",
        "sign",
        s(&unsigned),
        "--key",
        &k("dev.key"),
        "--cert",
        &k("dev.pem"),
        "--profile",
        &k("dev.p7b"),
        "-o",
        s(&hap),
    ]);
    // Signed: the profile by its own keys, the verify report without our names.
    let signed = json(&dev.oxh_ok(&["--json", "hap", "info", s(&hap)]));
    let p = &signed[0]["profile"];
    has_openharmony_keys(
        "hap info profile",
        p,
        &["type", "bundle-name", "device-ids"],
    );
    assert_eq!(p["bundle-name"], BUNDLE, "{p}");
    let v = json(&dev.oxh_ok(&["--json", "hap", "verify", s(&hap)]));
    has_openharmony_keys("hap verify", &v, &["ok", "report"]);
    assert!(v["report"]["appId"].is_string(), "{v}");
    dev.oxh_ok(&["bm", "install", "-p", s(&hap)]);
    let out = dev.oxh_ok(&["bm", "dump", "-n", BUNDLE]);
    let d = json(out.split_once('\n').map(|x| x.1).unwrap_or(""));
    has_openharmony_keys(
        "bm dump",
        &d,
        &[
            "name",
            "versionCode",
            "versionName",
            "applicationInfo",
            "hapModuleInfos",
        ],
    );
    assert_eq!(d["versionCode"], 3, "{d}");
    assert_eq!(d["applicationInfo"]["bundleName"], BUNDLE, "{d}");
    assert_eq!(d["applicationInfo"]["apl"], "normal", "{d}");
    let m = &d["hapModuleInfos"][0];
    assert_eq!(m["moduleName"], "entry", "{d}");
    assert_eq!(m["abilityInfos"][0]["name"], "EntryAbility", "{d}");
    // The token the bundle got, by OpenHarmony's names too.
    let token = d["accessTokenId"].as_u64().expect("accessTokenId");
    let show = json(&dev.oxh_ok(&["atm", "show", BUNDLE, "--json"]));
    assert_eq!(show["info"]["tokenID"], token, "{show}");
    assert_eq!(show["info"]["tokenType"], "hap", "{show}");
    assert_eq!(show["info"]["userId"], 100, "{show}");
}

#[test]
fn kv_json_has_distributed_kv_names() {
    let dev = TestDevice::start();
    let st = ["--app", "com.example.names", "--store", "s1"];
    let mut put = vec!["kv", "put"];
    put.extend(st);
    put.extend(["k1", "v1"]);
    dev.oxh_ok(&put);
    let mut ls = vec!["--json", "kv", "ls"];
    ls.extend(st);
    let l = json(&dev.oxh_ok(&ls));
    has_openharmony_keys("kv ls", &l[0], &["deviceId", "key", "value"]);
    assert_eq!((&l[0]["key"], &l[0]["value"]), (&"k1".into(), &"v1".into()));
}

#[test]
fn keygen_without_a_device_says_so_and_writes_no_profile() {
    // A data dir with no daemon behind it.
    let nowhere = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let keys = out.path().join("keys");
    let o = run_oxh(
        nowhere.path(),
        &[
            "hap",
            "keygen",
            "--bundle",
            "com.example.x",
            "--out",
            s(&keys),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "keygen succeeded without a device: {err}"
    );
    assert!(
        err.contains("no device is reachable") && err.contains("--device-id"),
        "{err}"
    );
    assert!(!keys.join("dev.p7b").exists(), "a profile was written");
    // Naming the device works without one.
    let o = run_oxh(
        nowhere.path(),
        &[
            "hap",
            "keygen",
            "--bundle",
            "com.example.x",
            "--out",
            s(&keys),
            "--device-id",
            &"ab".repeat(32),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(keys.join("dev.p7b").is_file());
}

#[test]
fn hilog_json_has_no_rust_names() {
    let dev = TestDevice::start();
    let g = json(&dev.oxh_ok(&["hilog", "-g", "--json"]));
    has_openharmony_keys("hilog -g", &g, &["size"]);
    let q = json(&dev.oxh_ok(&["hilog", "-w", "query", "--json"]));
    has_openharmony_keys("hilog -w query", &q, &["running", "fileSize", "maxFiles"]);
    // The daemon's own start-up lines, one JSON object a line.
    let out = dev.oxh_ok(&["hilog", "-x", "--json"]);
    let first = json(out.lines().next().unwrap_or("null"));
    has_openharmony_keys("hilog -x", &first, &["logType", "level", "domain", "tag"]);
    assert_eq!(first["logType"], "LOG_CORE", "{first}");
    let level = first["level"].as_str().unwrap_or_default();
    assert!(
        ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"].contains(&level),
        "{first}"
    );
}
