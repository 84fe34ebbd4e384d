//! The distributed scheduler (SA 1401): `aa start -d` starts an ability on another trusted
//! device, judged there on the caller's synced token; `aa dump -l -d` lists another device's
//! missions.

use crate::ability::{NOTES, aa, install_notes, lifecycle, read_until};
use crate::common::TestDevice;
use crate::kv::pair;

/// Two bound devices, the notes example installed on the second; None (skip) without root.
async fn notes_pair() -> Option<(TestDevice, TestDevice, tempfile::TempDir)> {
    if !oxh_testkit::require_root("dms", "to sandbox app processes") {
        return None;
    }
    let (a, b) = pair().await;
    let work = tempfile::tempdir().unwrap();
    install_notes(&b, work.path());
    Some((a, b, work))
}

#[tokio::test]
async fn aa_start_d_starts_the_ability_on_the_other_device_exported_only() {
    let Some((a, b, _work)) = notes_pair().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");

    // Started on B from A: its mission is on B, in the foreground, and A runs nothing.
    let out = aa(
        &a,
        &["start", "-d", &nid_b, "-b", NOTES, "-a", "EntryAbility"],
    );
    assert_eq!(out, "start ability successfully.\n");
    let d = read_until(
        || aa(&b, &["dump", "-l"]),
        |d| d.contains("main name [EntryAbility]") && d.contains("state #FOREGROUND"),
    );
    assert!(
        d.contains("Mission ID #") && d.contains("state #FOREGROUND"),
        "{d}"
    );
    assert!(!aa(&a, &["dump", "-l"]).contains("Mission ID #"));
    let l = read_until(|| lifecycle(&b), |l| l.len() >= 2);
    assert_eq!(
        l[..2],
        [
            "EntryAbility onCreate StartAbility",
            "EntryAbility onForeground"
        ]
    );

    // -W waits for the foreground on B, as a local start does.
    let out = aa(
        &a,
        &[
            "start",
            "-d",
            &nid_b,
            "-b",
            NOTES,
            "-a",
            "NoteAbility",
            "-W",
        ],
    );
    assert!(
        out.contains("StartMode: Cold") || out.contains("StartMode: Hot"),
        "{out}"
    );
    assert!(out.ends_with("start ability successfully.\n"), "{out}");

    // Not exported: refused on B (16000004): a remote caller reaches exported abilities only.
    let out = aa(
        &a,
        &["start", "-d", &nid_b, "-b", NOTES, "-a", "HiddenAbility"],
    );
    assert!(out.contains("Error Code:10103001"), "{out}");
    // Not installed on B.
    let out = aa(&a, &["start", "-d", &nid_b, "-b", "com.example.none"]);
    assert!(out.contains("Error Code:10104001"), "{out}");
    // An unknown device: the ability kit's internal error, and the message says why.
    let out = aa(&a, &["start", "-d", "no-such-device", "-b", NOTES]);
    assert!(out.contains("Error Code:10108101"), "{out}");
    assert!(
        out.contains("no-such-device") && out.contains("not online"),
        "{out}"
    );
    // Its own networkId is this device: a local start (notes is not installed on A).
    let nid_a = a.ready_field("network_id");
    let out = aa(&a, &["start", "-d", &nid_a, "-b", NOTES]);
    assert!(out.contains("Error Code:10104001"), "{out}");

    // The SDK's startAbility with want.deviceId set takes the same path.
    let sdk = a.sdk().await;
    let mut want = oxh_sdk::ability::Want::explicit(NOTES, "HiddenAbility");
    want.device_id = nid_b.clone();
    let e = sdk.ability().start_ability(want, false).await.unwrap_err();
    assert_eq!(e.code(), Some(oxh_ability::code::INVISIBLE), "{e}");
}

#[tokio::test]
async fn aa_dump_l_d_lists_the_other_devices_missions() {
    let Some((a, b, _work)) = notes_pair().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    let empty = aa(&a, &["dump", "-l", "-d", &nid_b]);
    assert!(!empty.contains("Mission ID #"), "{empty}");
    let out = aa(&b, &["start", "-b", NOTES, "-a", "EntryAbility", "-W"]);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    let d = aa(&a, &["dump", "-l", "-d", &nid_b]);
    assert!(d.starts_with(&format!("Device ID #{nid_b}\n")), "{d}");
    assert!(
        d.contains("mission name #[#com.example.notes:entry:EntryAbility]"),
        "{d}"
    );
    assert!(d.contains("state #FOREGROUND"), "{d}");
    assert!(
        d.contains("continuable #1"),
        "EntryAbility is continuable: {d}"
    );
    let out = aa(&b, &["start", "-b", NOTES, "-a", "NoteAbility", "-W"]);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");

    // Through the SDK, typed.
    let sdk = a.sdk().await;
    let ms = sdk.ability().remote_missions(&nid_b).await.unwrap();
    assert_eq!(ms.len(), 2, "{ms:?}");
    for m in &ms {
        let continuable = m.element.ability_name == "EntryAbility";
        assert_eq!(m.continuable, continuable, "{m:?}");
    }
    assert!(ms.iter().any(|m| m.state == "FOREGROUND"), "{ms:?}");

    // An unknown device: DistributedSchedule's 16300501, naming it.
    let e = sdk
        .ability()
        .remote_missions("no-such-device")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(16_300_501), "{e}");
    let out = aa(&a, &["dump", "-l", "-d", "no-such-device"]);
    assert!(
        out.contains("16300501") && out.contains("no-such-device"),
        "{out}"
    );
    // -d goes with -l only, and needs a value.
    assert!(aa(&a, &["dump", "-a", "-d", &nid_b]).contains("goes with -l only"));
    assert!(aa(&a, &["dump", "-l", "-d"]).contains("requires a value"));
}

#[tokio::test]
async fn an_apps_remote_start_is_judged_by_its_own_token() {
    let Some((a, b, work)) = notes_pair().await else {
        return;
    };
    install_notes(&a, work.path());
    let nid_b = b.ready_field("network_id");
    aa(&a, &["start", "-b", NOTES, "-W"]);
    // notes requests DISTRIBUTED_DATASYNC (user_grant) but nobody granted it: its
    // startAbility on B is refused with 201, though the shell that started it could.
    aa(
        &a,
        &["start", "-b", NOTES, "--ps", "start_on", &nid_b, "-W"],
    );
    let l = read_until(
        || lifecycle(&a),
        |l| l.iter().any(|x| x.contains("remoteStart=")),
    );
    assert!(
        l.iter().any(|x| x == "EntryAbility remoteStart=201"),
        "{l:?}"
    );
    assert!(!aa(&b, &["dump", "-l"]).contains("Mission ID #"));
    // Granted, the same call from the same process starts NoteAbility on B.
    a.oxh_ok(&[
        "atm",
        "grant",
        NOTES,
        "ohos.permission.DISTRIBUTED_DATASYNC",
    ]);
    aa(
        &a,
        &["start", "-b", NOTES, "--ps", "start_on", &nid_b, "-W"],
    );
    let l = read_until(
        || lifecycle(&a),
        |l| l.iter().filter(|x| x.contains("remoteStart=")).count() >= 2,
    );
    let second = l.iter().filter(|x| x.contains("remoteStart=")).nth(1);
    assert_eq!(
        second.map(String::as_str),
        Some("EntryAbility remoteStart=0"),
        "{l:?}"
    );
    let d = read_until(
        || aa(&b, &["dump", "-l"]),
        |d| d.contains("main name [NoteAbility]") && d.contains("state #FOREGROUND"),
    );
    assert!(d.contains("main name [NoteAbility]"), "{d}");
}
