use super::*;
use crate::model::parse_module_json;
use crate::verify::Report;

const USER: i32 = 100;
const SIGNER: &str = "com.example.app_KEY1";

fn hap(bundle: &str, module: &str, kind: &str, version: u32, perms: &[&str]) -> HapInfo {
    let perms: Vec<String> = perms
        .iter()
        .map(|p| format!(r#"{{"name":"{p}"}}"#))
        .collect();
    let j = format!(
        r#"{{"app":{{"bundleName":"{bundle}","versionCode":{version},"versionName":"v{version}","minAPIVersion":9,"targetAPIVersion":40100012}},
            "module":{{"name":"{module}","type":"{kind}","deviceTypes":["default"],"requestPermissions":[{}]}}}}"#,
        perms.join(",")
    );
    parse_module_json(j.as_bytes()).unwrap()
}

fn signed(app_id: &str, apl: &str, dist: &str) -> Report {
    Report {
        signed: true,
        app_id: app_id.into(),
        profile: Some(Profile {
            apl: apl.into(),
            distribution_type: dist.into(),
            acls: vec!["ohos.permission.X".into()],
            ..Profile::default()
        }),
        ..Report::default()
    }
}

fn new_bundle<'a>(haps: &[(&'a HapInfo, &'a Report)]) -> Result<NewBundle<'a>, BundleError> {
    let v: Vec<VerifiedHap<'a>> = haps
        .iter()
        .map(|(info, report)| VerifiedHap { info, report })
        .collect();
    NewBundle::from_haps(&v)
}

fn installed(modules: Vec<HapInfo>, version: u32, app_id: &str) -> BundleRecord {
    BundleRecord {
        bundle_name: "com.example.app".into(),
        user_id: USER,
        bundle_id: 10_003,
        uid: 20_010_003,
        version_code: version,
        version_name: format!("v{version}"),
        app_id: app_id.into(),
        token_id: 0x2000_0042,
        apl: "normal".into(),
        distribution_type: "none".into(),
        code_path: "/data/app/el1/bundle/public/com.example.app".into(),
        modules,
        install_time: 1_000,
        update_time: 2_000,
    }
}

fn fresh(used: &[u32]) -> Existing<'_> {
    Existing {
        user_id: USER,
        record: None,
        used_bundle_ids: used,
    }
}

fn over(r: &BundleRecord) -> Existing<'_> {
    Existing {
        user_id: USER,
        record: Some(r),
        used_bundle_ids: &[],
    }
}

#[test]
fn fresh_install_takes_a_new_id_uid_token_and_data_dirs() {
    let entry = hap("com.example.app", "entry", "entry", 3, &["b.P", "a.P"]);
    let feature = hap("com.example.app", "feat", "feature", 3, &["a.P"]);
    let rep = signed(SIGNER, "system_basic", "app_gallery");
    let new = new_bundle(&[(&entry, &rep), (&feature, &rep)]).unwrap();
    let p = plan(&fresh(&[10_000, 10_001, 10_003]), &new).unwrap();
    assert_eq!(p.action, Action::Fresh);
    assert_eq!(p.bundle_id, 10_002, "the lowest free id");
    assert_eq!(p.uid, 100 * UID_PER_USER + 10_002);
    assert_eq!(p.files.write, vec!["entry.hap", "feat.hap"]);
    assert!(p.files.keep.is_empty() && !p.files.copy_libs && p.files.drop.is_empty());
    assert!(p.files.make_data_dirs);
    assert_eq!(p.apl, Apl::SystemBasic);
    assert_eq!(p.distribution_type, "app_gallery");
    assert_eq!(
        p.token.policy.permissions,
        vec!["a.P", "b.P"],
        "sorted, once each"
    );
    assert_eq!(p.token.policy.acls, vec!["ohos.permission.X"]);
    let TokenChange::Alloc(info) = &p.token.change else {
        panic!("{:?}", p.token.change);
    };
    assert_eq!(info.uid, Some(p.uid));
    assert_eq!(info.api_version, 12);
    assert!(info.is_system_app);
    assert_eq!(info.app_id_desc, SIGNER);
    let r = p.record(7, "/code".into(), 5_000);
    assert_eq!(
        (r.install_time, r.update_time, r.token_id),
        (5_000, 5_000, 7)
    );
    assert_eq!(r.apl, "system_basic");
    let res = p.result(7, vec![]);
    assert_eq!(res.previous_version, None);
    assert_eq!(res.modules, vec!["entry", "feat"]);
}

#[test]
fn unsigned_haps_get_an_unsigned_app_id_and_normal_defaults() {
    let entry = hap("com.example.app", "entry", "entry", 1, &[]);
    let rep = Report::default();
    let new = new_bundle(&[(&entry, &rep)]).unwrap();
    assert_eq!(new.app_id, "com.example.app_unsigned");
    let p = plan(&fresh(&[]), &new).unwrap();
    assert_eq!(p.bundle_id, BUNDLE_ID_MIN);
    assert_eq!((p.apl, p.distribution_type.as_str()), (Apl::Normal, "none"));
    let TokenChange::Alloc(info) = &p.token.change else {
        panic!();
    };
    assert!(!info.is_system_app);
}

#[test]
fn no_free_bundle_id_is_an_internal_error() {
    let all: Vec<u32> = (BUNDLE_ID_MIN..=BUNDLE_ID_MAX).collect();
    let entry = hap("com.example.app", "entry", "entry", 1, &[]);
    let rep = signed(SIGNER, "normal", "");
    let new = new_bundle(&[(&entry, &rep)]).unwrap();
    let e = plan(&fresh(&all), &new).unwrap_err();
    assert_eq!(e, BundleError::internal("no free bundle id"));
    assert_eq!(free_bundle_id(&[10_001]), Ok(10_000));
}

#[test]
fn update_to_a_higher_version_keeps_ids_and_drops_unnamed_modules() {
    let old = installed(
        vec![
            hap("com.example.app", "entry", "entry", 1, &["a.P"]),
            hap("com.example.app", "old", "feature", 1, &[]),
        ],
        1,
        SIGNER,
    );
    let entry = hap("com.example.app", "entry", "entry", 2, &["c.P"]);
    let rep = signed(SIGNER, "normal", "");
    let new = new_bundle(&[(&entry, &rep)]).unwrap();
    let p = plan(&over(&old), &new).unwrap();
    assert_eq!(
        p.action,
        Action::Update {
            previous_version: 1,
            token_id: old.token_id,
            install_time: 1_000
        }
    );
    assert_eq!((p.bundle_id, p.uid), (old.bundle_id, old.uid));
    assert_eq!(p.files.write, vec!["entry.hap"]);
    assert!(p.files.keep.is_empty() && !p.files.copy_libs);
    assert_eq!(p.files.drop, vec!["old"]);
    assert!(!p.files.make_data_dirs);
    assert_eq!(p.token.policy.permissions, vec!["c.P"]);
    let TokenChange::Update { token_id, params } = &p.token.change else {
        panic!("{:?}", p.token.change);
    };
    assert_eq!(*token_id, old.token_id);
    assert_eq!(params.uid, Some(old.uid));
    let r = p.record(old.token_id, old.code_path.clone(), 9_000);
    assert_eq!((r.install_time, r.update_time), (1_000, 9_000));
    assert_eq!(p.result(old.token_id, vec![]).previous_version, Some(1));
}

#[test]
fn update_at_the_same_version_adds_modules_and_keeps_the_others() {
    let old = installed(
        vec![
            hap("com.example.app", "entry", "entry", 4, &["a.P"]),
            hap("com.example.app", "feat", "feature", 4, &[]),
        ],
        4,
        SIGNER,
    );
    let feat = hap("com.example.app", "feat", "feature", 4, &["b.P"]);
    let extra = hap("com.example.app", "extra", "feature", 4, &[]);
    let rep = signed(SIGNER, "normal", "");
    let new = new_bundle(&[(&feat, &rep), (&extra, &rep)]).unwrap();
    let p = plan(&over(&old), &new).unwrap();
    assert_eq!(p.files.write, vec!["feat.hap", "extra.hap"]);
    assert_eq!(p.files.keep, vec!["entry.hap"]);
    assert!(p.files.copy_libs);
    assert!(p.files.drop.is_empty());
    let names: Vec<&str> = p.modules.iter().map(|m| m.module_name.as_str()).collect();
    assert_eq!(names, vec!["entry", "extra", "feat"]);
    assert_eq!(
        p.token.policy.permissions,
        vec!["a.P", "b.P"],
        "the kept modules' permissions stay requested"
    );
}

#[test]
fn update_signed_by_another_key_is_refused() {
    let old = installed(
        vec![hap("com.example.app", "entry", "entry", 1, &[])],
        1,
        SIGNER,
    );
    let entry = hap("com.example.app", "entry", "entry", 2, &[]);
    let rep = signed("com.example.app_KEY2", "normal", "");
    let new = new_bundle(&[(&entry, &rep)]).unwrap();
    let e = plan(&over(&old), &new).unwrap_err();
    assert_eq!(e.code, code::SIGN_INFO_INCONSISTENT);
    assert_eq!(
        e.reason,
        "com.example.app is installed signed by another key (appId differs)"
    );
}

#[test]
fn version_downgrade_is_refused() {
    let old = installed(
        vec![hap("com.example.app", "entry", "entry", 5, &[])],
        5,
        SIGNER,
    );
    let entry = hap("com.example.app", "entry", "entry", 4, &[]);
    let rep = signed(SIGNER, "normal", "");
    let new = new_bundle(&[(&entry, &rep)]).unwrap();
    let e = plan(&over(&old), &new).unwrap_err();
    assert_eq!(e.code, code::VERSION_DOWNGRADE);
    assert_eq!(e.reason, "versionCode 4 is lower than the installed 5");
}

#[test]
fn another_entry_over_an_installed_one_is_refused() {
    let old = installed(
        vec![hap("com.example.app", "entry", "entry", 1, &[])],
        1,
        SIGNER,
    );
    let entry = hap("com.example.app", "main", "entry", 1, &[]);
    let rep = signed(SIGNER, "normal", "");
    let new = new_bundle(&[(&entry, &rep)]).unwrap();
    let e = plan(&over(&old), &new).unwrap_err();
    assert_eq!(e.code, code::ENTRY_ALREADY_EXIST);
    assert_eq!(
        e.reason,
        "entry module entry is installed; main is another entry"
    );
}

#[test]
fn haps_of_different_bundles_are_refused() {
    let a = hap("com.example.app", "entry", "entry", 1, &[]);
    let b = hap("com.example.other", "feat", "feature", 1, &[]);
    let rep = signed(SIGNER, "normal", "");
    let e = new_bundle(&[(&a, &rep), (&b, &rep)]).unwrap_err();
    assert_eq!(e.code, code::PARSE_FAILED);
    assert_eq!(
        e.reason,
        "the HAPs name different bundles: com.example.other and com.example.app"
    );
}

#[test]
fn haps_of_different_versions_are_refused() {
    let a = hap("com.example.app", "entry", "entry", 1, &[]);
    let b = hap("com.example.app", "feat", "feature", 2, &[]);
    let rep = signed(SIGNER, "normal", "");
    let e = new_bundle(&[(&a, &rep), (&b, &rep)]).unwrap_err();
    assert_eq!(e.code, code::PARSE_FAILED);
    assert_eq!(
        e.reason,
        "the HAPs of one install have different versionCodes"
    );
}

#[test]
fn haps_signed_by_different_keys_are_refused() {
    let a = hap("com.example.app", "entry", "entry", 1, &[]);
    let b = hap("com.example.app", "feat", "feature", 1, &[]);
    let (ra, rb) = (
        signed(SIGNER, "normal", ""),
        signed("com.example.app_KEY2", "normal", ""),
    );
    let e = new_bundle(&[(&a, &ra), (&b, &rb)]).unwrap_err();
    assert_eq!(e.code, code::SIGN_INFO_INCONSISTENT);
    assert_eq!(e.reason, "the HAPs are signed by different keys");
}

#[test]
fn a_module_twice_is_refused() {
    let a = hap("com.example.app", "feat", "feature", 1, &[]);
    let rep = signed(SIGNER, "normal", "");
    let e = new_bundle(&[(&a, &rep), (&a, &rep)]).unwrap_err();
    assert_eq!(e.code, code::MODULE_NAME_NOT_UNIQUE);
    assert_eq!(e.reason, "module feat twice");
}

#[test]
fn two_entries_in_one_install_are_refused() {
    let a = hap("com.example.app", "entry", "entry", 1, &[]);
    let b = hap("com.example.app", "main", "entry", 1, &[]);
    let rep = signed(SIGNER, "normal", "");
    let e = new_bundle(&[(&a, &rep), (&b, &rep)]).unwrap_err();
    assert_eq!(e.code, code::ENTRY_ALREADY_EXIST);
    assert_eq!(e.reason, "more than one entry module");
}

#[test]
fn an_empty_install_is_refused() {
    let e = new_bundle(&[]).unwrap_err();
    assert_eq!(e.code, code::PARSE_FAILED);
}

/// A record as the store kept it before the JSON took OpenHarmony's names (snake_case fields,
/// `kind` for an ability's type): every installed bundle must still load after an upgrade.
const OLD_RECORD: &str = r#"{"bundle_name":"com.example.old","user_id":100,"bundle_id":10003,
 "uid":20010003,"version_code":7,"version_name":"7.0","app_id":"com.example.old_KEY",
 "token_id":537919491,"apl":"system_basic","distribution_type":"app_gallery",
 "code_path":"/data/app/el1/bundle/public/com.example.old",
 "modules":[{"model":"stage","app":{"bundle_name":"com.example.old","version_code":7,
   "version_name":"7.0","min_compatible_version_code":5,"min_api_version":9,
   "target_api_version":12,"api_release_type":"Release","vendor":"ex","debug":false},
  "module_name":"entry","module_type":"entry","device_types":["default","tablet"],
  "main_element":"EntryAbility",
  "abilities":[{"name":"EntryAbility","kind":"page","label":"$string:l","exported":true,
   "src_entry":"./ets/Entry.ets","skills":[{"actions":["action.system.home"],
   "entities":["entity.system.home"],"uris":[{"scheme":"https","host":"h","port":"8080",
   "path":"","path_start_with":"/a","path_regex":"","mime_type":"text/*"}]}],
   "launch_type":"multiton","continuable":true}],
  "extension_abilities":[],
  "request_permissions":[{"name":"ohos.permission.CAMERA","reason":"$string:r",
   "used_scene":{"abilities":["EntryAbility"],"when":"inuse"}}],
  "metadata":[{"name":"m","value":"v","resource":""}]}],
 "install_time":1700000000000,"update_time":1700000000001}"#;

#[test]
fn a_record_stored_with_the_old_names_still_loads() {
    let r: BundleRecord = serde_json::from_str(OLD_RECORD).unwrap();
    assert_eq!(
        (r.bundle_name.as_str(), r.user_id, r.bundle_id, r.token_id),
        ("com.example.old", 100, 10003, 537_919_491)
    );
    assert_eq!(
        (r.distribution_type.as_str(), r.update_time),
        ("app_gallery", 1_700_000_000_001)
    );
    let m = &r.modules[0];
    assert_eq!(m.app.min_compatible_version_code, 5);
    assert_eq!((m.app.min_api_version, m.app.target_api_version), (9, 12));
    assert_eq!(m.device_types, vec!["default", "tablet"]);
    let a = &m.abilities[0];
    assert_eq!(
        (a.kind.as_str(), a.launch_type.as_str()),
        ("page", "multiton")
    );
    assert_eq!(a.src_entry, "./ets/Entry.ets");
    let u = &a.skills[0].uris[0];
    assert_eq!(
        (u.path_start_with.as_str(), u.mime_type.as_str()),
        ("/a", "text/*")
    );
    assert_eq!(
        m.request_permissions[0]
            .used_scene
            .as_ref()
            .map(|s| s.when.as_str()),
        Some("inuse")
    );
    // Written again, it takes OpenHarmony's names, and reads back the same.
    let new = serde_json::to_string(&r).unwrap();
    for k in [
        "\"bundleName\"",
        "\"accessTokenId\"",
        "\"appDistributionType\"",
        "\"minAPIVersion\"",
        "\"srcEntry\"",
        "\"pathStartWith\"",
        "\"usedScene\"",
        "\"type\":\"page\"",
    ] {
        assert!(new.contains(k), "{k} in {new}");
    }
    assert!(
        !new.contains("bundle_name") && !new.contains("\"kind\""),
        "{new}"
    );
    assert_eq!(serde_json::from_str::<BundleRecord>(&new).unwrap(), r);
}
