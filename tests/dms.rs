//! The distributed scheduler (SA 1401): `aa start -d` starts an ability on another trusted
//! device, judged there on the caller's synced token; `aa dump -l -d` lists another device's
//! missions.

use crate::ability::{NOTES, aa, install_notes, lifecycle, read_until};
use crate::common::{Oxh, TestDevice, bind_by_pin};
use crate::kv::pair;
use std::path::Path;

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

/// Two bound devices with notes installed on both from one HAP signed with a debug profile
/// that lists both (one appId, as continuation requires).
async fn notes_on_both() -> Option<(TestDevice, TestDevice, tempfile::TempDir)> {
    let (a, b, work) = bound_pair_for_notes().await?;
    let udids = [a.ready_field("udid"), b.ready_field("udid")];
    install_notes_one_signer(&[&a, &b], &udids, work.path());
    Some((a, b, work))
}

/// Two bound devices and a work dir; None (skip) without root.
pub(crate) async fn bound_pair_for_notes() -> Option<(TestDevice, TestDevice, tempfile::TempDir)> {
    if !oxh_testkit::require_root("dms", "to sandbox app processes") {
        return None;
    }
    let (a, b) = pair().await;
    Some((a, b, tempfile::tempdir().unwrap()))
}

/// Installs notes on each of `devs` from one HAP (packed in `work`) signed with a debug
/// profile that lists `udids`: one appId everywhere, as continuation requires.
pub(crate) fn install_notes_one_signer(devs: &[&dyn Oxh], udids: &[String], work: &Path) {
    let hap = sign_notes_one_signer(devs, udids, work);
    for d in devs {
        let out = d.run_ok(&["bm", "install", "-p", &hap]);
        assert_eq!(out.trim(), "install bundle successfully.");
    }
}

/// Packs notes in `work` and signs it with a debug profile that lists `udids`; each of `devs`
/// trusts its root. The signed HAP's path.
pub(crate) fn sign_notes_one_signer(devs: &[&dyn Oxh], udids: &[String], work: &Path) -> String {
    let w = |n: &str| work.join(n).to_string_lossy().into_owned();
    let lib = crate::ability::example_lib("oxh-example-notes", "notes");
    let abi = oxh_ability::abi::abi_dir();
    let src = work.join("src");
    std::fs::create_dir_all(src.join("libs").join(abi)).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/notes/hap/module.json5"),
        src.join("module.json5"),
    )
    .unwrap();
    std::fs::copy(lib, src.join("libs").join(abi).join("libnotes.so")).unwrap();
    let first = devs[0];
    let keys = w("keys");
    let mut keygen = vec!["hap", "keygen", "--bundle", NOTES, "--out", &keys];
    for u in udids {
        keygen.extend(["--device-id", u.as_str()]);
    }
    first.run_ok(&keygen);
    first.run_ok(&["hap", "pack", &w("src"), "-o", &w("unsigned.hap")]);
    first.run_ok(&[
        "hap",
        "sign",
        &w("unsigned.hap"),
        "--key",
        &w("keys/dev.key"),
        "--cert",
        &w("keys/dev.pem"),
        "--profile",
        &w("keys/dev.p7b"),
        "--sign-code",
        "1",
        "-o",
        &w("notes.hap"),
    ]);
    for d in devs {
        d.run_ok(&["hap", "trust", "add", &w("keys/root.pem")]);
    }
    w("notes.hap")
}

/// The mission id of `ability` in `aa dump -l` (None: no such mission).
pub(crate) fn mission_of(dev: &dyn Oxh, ability: &str) -> Option<i32> {
    let d = aa(dev, &["dump", "-l"]);
    let mut id = None;
    for l in d.lines() {
        if let Some(rest) = l.trim().strip_prefix("Mission ID #") {
            id = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok());
        }
        if l.contains(&format!("main name [{ability}]")) && id.is_some() {
            return id;
        }
    }
    None
}

/// How many EntryAbility missions `dev` runs.
pub(crate) fn entry_missions(dev: &dyn Oxh) -> usize {
    aa(dev, &["dump", "-l"])
        .matches("main name [EntryAbility]")
        .count()
}

#[tokio::test]
async fn aa_continue_moves_notes_with_its_note_to_the_other_device() {
    let Some((a, b, _work)) = notes_on_both().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    let out = aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--ps",
            "note",
            "buy milk",
            "-W",
        ],
    );
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    let m = mission_of(&a, "EntryAbility").expect("a mission on A");
    let t0 = std::time::Instant::now();
    let out = aa(&a, &["continue", "-m", &m.to_string(), "-d", &nid_b]);
    eprintln!(
        "aa continue (cold start on the target) took {:?}",
        t0.elapsed()
    );
    assert_eq!(out, "continue mission successfully.\n");
    // B created it for the continuation, with the note, and shows it.
    let l = read_until(
        || lifecycle(&b),
        |l| l.iter().any(|x| x.starts_with("EntryAbility continued")),
    );
    assert!(
        l.iter().any(|x| x == "EntryAbility onCreate Continuation"),
        "{l:?}"
    );
    assert!(
        l.iter()
            .any(|x| x == "EntryAbility continued note=buy milk"),
        "{l:?}"
    );
    let d = read_until(
        || aa(&b, &["dump", "-l"]),
        |d| d.contains("main name [EntryAbility]") && d.contains("state #FOREGROUND"),
    );
    assert!(d.contains("state #FOREGROUND"), "{d}");
    // A's onContinue agreed, and its mission ended.
    let la = read_until(
        || lifecycle(&a),
        |l| l.iter().any(|x| x == "EntryAbility onDestroy"),
    );
    assert!(
        la.iter().any(|x| x == "EntryAbility onContinue Agree"),
        "{la:?}"
    );
    let da = read_until(
        || aa(&a, &["dump", "-l"]),
        |d| !d.contains("main name [EntryAbility]"),
    );
    assert!(!da.contains("main name [EntryAbility]"), "{da}");

    // Through the SDK, from B back to A.
    let mb = mission_of(&b, "EntryAbility").expect("a mission on B");
    let sdk = b.sdk().await;
    let nid_a = a.ready_field("network_id");
    sdk.ability().continue_mission(mb, &nid_a).await.unwrap();
    let l = read_until(
        || lifecycle(&a),
        |l| {
            l.iter()
                .any(|x| x == "EntryAbility continued note=buy milk")
        },
    );
    assert!(
        l.iter()
            .any(|x| x == "EntryAbility continued note=buy milk"),
        "{l:?}"
    );
    read_until(|| entry_missions(&b), |n| *n == 0);
    assert_eq!((entry_missions(&a), entry_missions(&b)), (1, 0));
}

#[tokio::test]
async fn a_rejected_mismatched_or_inactive_continuation_leaves_the_mission_here() {
    let Some((a, b, _work)) = notes_on_both().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    let start = |extra: &[&str]| {
        let mut args = vec!["start", "-b", NOTES, "-a", "EntryAbility"];
        args.extend_from_slice(extra);
        args.push("-W");
        aa(&a, &args)
    };
    start(&["--ps", "note", "draft", "--ps", "continue", "reject"]);
    let m = mission_of(&a, "EntryAbility").expect("a mission on A");
    let ms = m.to_string();
    let out = aa(&a, &["continue", "-m", &ms, "-d", &nid_b]);
    assert!(
        out.contains("Error Code:16300501") && out.contains("REJECT"),
        "{out}"
    );
    start(&["--ps", "continue", "mismatch"]);
    let out = aa(&a, &["continue", "-m", &ms, "-d", &nid_b]);
    assert!(
        out.contains("Error Code:16300501") && out.contains("MISMATCH"),
        "{out}"
    );
    // The mission runs on A still, resumed: a start reaches it again.
    start(&[
        "--ps",
        "continue",
        "agree",
        "--ps",
        "continue_state",
        "inactive",
    ]);
    let l = read_until(
        || lifecycle(&a),
        |l| {
            l.iter()
                .any(|x| x.starts_with("EntryAbility continueState="))
        },
    );
    assert!(
        l.iter().any(|x| x == "EntryAbility continueState=0"),
        "{l:?}"
    );
    let out = aa(&a, &["continue", "-m", &ms, "-d", &nid_b]);
    assert!(
        out.contains("Error Code:16300501") && out.contains("INACTIVE"),
        "{out}"
    );
    assert_eq!(mission_of(&a, "EntryAbility"), Some(m));
    assert!(aa(&a, &["dump", "-l"]).contains("state #FOREGROUND"));
    assert_eq!(entry_missions(&b), 0);
    // Other refusals: no such mission (16300502), this device as the target (16300505),
    // an unknown device (16300508).
    let out = aa(&a, &["continue", "-m", "999", "-d", &nid_b]);
    assert!(out.contains("Error Code:16300502"), "{out}");
    let nid_a = a.ready_field("network_id");
    let out = aa(&a, &["continue", "-m", &ms, "-d", &nid_a]);
    assert!(out.contains("Error Code:16300505"), "{out}");
    let out = aa(&a, &["continue", "-m", &ms, "-d", "no-such-device"]);
    assert!(
        out.contains("Error Code:16300508") && out.contains("no-such-device"),
        "{out}"
    );
    // An ability module.json does not declare continuable stays too (16300501, named).
    aa(&a, &["start", "-b", NOTES, "-a", "NoteAbility", "-W"]);
    let note = mission_of(&a, "NoteAbility").expect("NoteAbility's mission");
    let out = aa(&a, &["continue", "-m", &note.to_string(), "-d", &nid_b]);
    assert!(
        out.contains("Error Code:16300501") && out.contains("NoteAbility is not continuable"),
        "{out}"
    );
    // Active again, it moves.
    start(&["--ps", "continue_state", "active"]);
    read_until(
        || lifecycle(&a),
        |l| {
            l.iter()
                .filter(|x| *x == "EntryAbility continueState=0")
                .count()
                >= 2
        },
    );
    let out = aa(&a, &["continue", "-m", &ms, "-d", &nid_b]);
    assert_eq!(out, "continue mission successfully.\n");
    read_until(|| entry_missions(&a), |n| *n == 0);
    assert_eq!((entry_missions(&a), entry_missions(&b)), (0, 1));
}

#[tokio::test]
async fn a_target_stopped_mid_continuation_leaves_exactly_one_copy_after_heal() {
    let Some((a, b, _work)) = notes_on_both().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--ps",
            "note",
            "n",
            "-W",
        ],
    );
    let m = mission_of(&a, "EntryAbility").expect("a mission on A");
    // The target's daemon freezes while the continuation runs, then comes back.
    let pid_b = b.pid();
    let data_a = a.data_dir().to_path_buf();
    let cont = std::thread::spawn(move || {
        crate::common::run_oxh(
            &data_a,
            &["aa", "continue", "-m", &m.to_string(), "-d", &nid_b],
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(30));
    crate::common::unsafe_kill(pid_b, libc::SIGSTOP);
    std::thread::sleep(std::time::Duration::from_secs(3));
    crate::common::unsafe_kill(pid_b, libc::SIGCONT);
    let out = cont.join().expect("aa continue ran");
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    // Whichever way it went, one copy runs, on the side the answer names.
    let (on_a, on_b) = read_until(
        || (entry_missions(&a), entry_missions(&b)),
        |(x, y)| x + y == 1,
    );
    assert_eq!(on_a + on_b, 1, "{out}");
    if out == "continue mission successfully.\n" {
        assert_eq!((on_a, on_b), (0, 1), "{out}");
    } else {
        assert_eq!((on_a, on_b), (1, 0), "{out}");
    }
}

#[tokio::test]
async fn a_target_stopped_while_its_instance_is_pending_gives_the_mission_back_to_the_source() {
    let Some((a, b, _work)) = notes_on_both().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--ps",
            "note",
            "kept",
            "--pi",
            "continue_create_delay_ms",
            "2000",
            "-W",
        ],
    );
    let m = mission_of(&a, "EntryAbility").expect("a mission on A");
    let data_a = a.data_dir().to_path_buf();
    let cont = std::thread::spawn(move || {
        crate::common::run_oxh(
            &data_a,
            &["aa", "continue", "-m", &m.to_string(), "-d", &nid_b],
        )
    });
    // B's instance is in its (slow) onCreate: not started, so nothing is prepared, and no
    // commit can have been sent. B's daemon stops past both sides' timeouts.
    let l = read_until(
        || lifecycle(&b),
        |l| l.iter().any(|x| x == "EntryAbility continued note=kept"),
    );
    assert!(
        l.iter().any(|x| x == "EntryAbility continued note=kept"),
        "{l:?}"
    );
    let pid_b = b.pid();
    crate::common::unsafe_kill(pid_b, libc::SIGSTOP);
    let out = cont.join().expect("aa continue ran");
    crate::common::unsafe_kill(pid_b, libc::SIGCONT);
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("Error Code:16300"), "{out}");
    // After the heal: the mission runs on A, resumed, and B discarded its pending instance.
    let (on_a, on_b) = read_until(
        || (entry_missions(&a), entry_missions(&b)),
        |(x, y)| (*x, *y) == (1, 0),
    );
    assert_eq!((on_a, on_b), (1, 0), "{out}");
    assert!(aa(&a, &["dump", "-l"]).contains("state #FOREGROUND"));
    // And it can move again, now that B is back.
    let out = aa(
        &a,
        &[
            "continue",
            "-m",
            &m.to_string(),
            "-d",
            &b.ready_field("network_id"),
        ],
    );
    assert_eq!(out, "continue mission successfully.\n");
    read_until(|| entry_missions(&a), |n| *n == 0);
    assert_eq!((entry_missions(&a), entry_missions(&b)), (0, 1));
}

#[tokio::test]
async fn a_target_killed_and_restarted_while_pending_leaves_the_mission_on_the_source_only() {
    let Some((a, mut b, _work)) = notes_on_both().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--ps",
            "note",
            "survives",
            "--pi",
            "continue_create_delay_ms",
            "3000",
            "-W",
        ],
    );
    let m = mission_of(&a, "EntryAbility").expect("a mission on A");
    let data_a = a.data_dir().to_path_buf();
    let cont = std::thread::spawn(move || {
        crate::common::run_oxh(
            &data_a,
            &["aa", "continue", "-m", &m.to_string(), "-d", &nid_b],
        )
    });
    read_until(
        || lifecycle(&b),
        |l| {
            l.iter()
                .any(|x| x == "EntryAbility continued note=survives")
        },
    );
    // B crashes with the instance pending (its apps die with it), and comes back.
    b.kill9();
    let out = cont.join().expect("aa continue ran");
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("Error Code:16300"), "{out}");
    b.restart();
    crate::kv::wait_online(&a, &b.ready_field("udid")).await;
    assert_eq!((entry_missions(&a), entry_missions(&b)), (1, 0), "{out}");
    assert!(aa(&a, &["dump", "-l"]).contains("state #FOREGROUND"));
    // B's journal recovered without taking anything on; the mission moves now.
    let nid_b = b.ready_field("network_id");
    let out = aa(&a, &["continue", "-m", &m.to_string(), "-d", &nid_b]);
    assert_eq!(out, "continue mission successfully.\n");
    read_until(|| entry_missions(&a), |n| *n == 0);
    assert_eq!((entry_missions(&a), entry_missions(&b)), (0, 1));
}

#[tokio::test]
async fn an_app_cannot_move_missions_continue_mission_is_a_system_api() {
    let Some((a, b, _work)) = notes_on_both().await else {
        return;
    };
    a.oxh_ok(&[
        "atm",
        "grant",
        NOTES,
        "ohos.permission.DISTRIBUTED_DATASYNC",
    ]);
    aa(&a, &["start", "-b", NOTES, "-a", "EntryAbility", "-W"]);
    let m = mission_of(&a, "EntryAbility").expect("a mission on A");
    let nid_b = b.ready_field("network_id");
    aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--pi",
            "continue_mission",
            &m.to_string(),
            "--ps",
            "continue_to",
            &nid_b,
            "-W",
        ],
    );
    let l = read_until(
        || lifecycle(&a),
        |l| {
            l.iter()
                .any(|x| x.starts_with("EntryAbility continueMission="))
        },
    );
    assert!(
        l.iter().any(|x| x == "EntryAbility continueMission=201"),
        "{l:?}"
    );
    assert_eq!((entry_missions(&a), entry_missions(&b)), (1, 0));
}

#[tokio::test]
async fn an_unbind_while_the_target_is_pending_aborts_at_once_and_a_rebind_heals() {
    let Some((a, b, _work)) = notes_on_both().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    let udid_b = b.ready_field("udid");
    aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--ps",
            "note",
            "unbound",
            "--pi",
            "continue_create_delay_ms",
            "3000",
            "-W",
        ],
    );
    let m = mission_of(&a, "EntryAbility").expect("a mission on A");
    let data_a = a.data_dir().to_path_buf();
    let cont = std::thread::spawn(move || {
        crate::common::run_oxh(
            &data_a,
            &["aa", "continue", "-m", &m.to_string(), "-d", &nid_b],
        )
    });
    read_until(
        || lifecycle(&b),
        |l| l.iter().any(|x| x == "EntryAbility continued note=unbound"),
    );
    // A forgets B: the link goes down, and the source gives up before its own timeout.
    let t0 = std::time::Instant::now();
    a.oxh_ok(&["device", "unbind", &udid_b]);
    let out = cont.join().expect("aa continue ran");
    let answered = t0.elapsed();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("Error Code:16300"), "{out}");
    assert!(
        answered < std::time::Duration::from_millis(oxh_ability::continuation::CONTINUE_TIMEOUT_MS),
        "answered {answered:?} after the unbind: {out}"
    );
    eprintln!("continuation answered {answered:?} after the unbind: {out}");
    assert_eq!(entry_missions(&a), 1);
    // B gives its pending instance up too (the link dropped there as well).
    let on_b = read_until(|| entry_missions(&b), |n| *n == 0);
    assert_eq!(on_b, 0);
    // Bound again, the mission moves.
    bind_by_pin(&a, &b).await;
    crate::kv::wait_online(&a, &udid_b).await;
    crate::kv::wait_online(&b, &a.ready_field("udid")).await;
    let out = aa(
        &a,
        &[
            "continue",
            "-m",
            &m.to_string(),
            "-d",
            &b.ready_field("network_id"),
        ],
    );
    assert_eq!(out, "continue mission successfully.\n");
    read_until(|| entry_missions(&a), |n| *n == 0);
    assert_eq!((entry_missions(&a), entry_missions(&b)), (0, 1));
}
