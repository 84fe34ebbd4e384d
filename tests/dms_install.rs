//! Install on demand: a continuation's target that lacks the app installs it from the
//! source's signed HAPs through its own bundle manager, when its policy
//! (`persist.dms.free_install`) allows and the caller asked (`aa continue -f`); otherwise
//! OpenHarmony's 16300503 / 16300504, with nothing installed and the mission still on the
//! source. A target that has the bundle from another signer keeps it: the install is refused
//! by the update rules and the mission stays on the source.

use crate::ability::{NOTES, aa, install_notes, lifecycle, read_until};
use crate::common::TestDevice;
use crate::dms::{bound_pair_for_notes, entry_missions, mission_of, sign_notes_one_signer};

/// Whether `dev` has the notes bundle installed.
fn has_notes(dev: &TestDevice) -> bool {
    dev.oxh_ok(&["bm", "dump", "-a"])
        .lines()
        .any(|l| l.trim() == NOTES)
}

/// Starts notes on `dev` with a note being edited; its mission id.
fn start_notes(dev: &TestDevice, note: &str) -> i32 {
    let out = aa(
        dev,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "EntryAbility",
            "--ps",
            "note",
            note,
            "-W",
        ],
    );
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    mission_of(dev, "EntryAbility").expect("a mission")
}

/// `aa continue` of mission `m` to `to`, with `extra` options: its output.
fn continue_to(from: &TestDevice, m: i32, to: &TestDevice, extra: &[&str]) -> String {
    let nid = to.ready_field("network_id");
    let ms = m.to_string();
    let mut args = vec!["continue", "-m", ms.as_str(), "-d", nid.as_str()];
    args.extend_from_slice(extra);
    aa(from, &args)
}

/// The notes' appId on `dev` (from `bm dump -n`).
fn notes_app_id(dev: &TestDevice) -> String {
    let out = dev.oxh_ok(&["bm", "dump", "-n", NOTES]);
    // `bm dump -n` prints the bundle name on its first line, then the JSON.
    let json = out.split_once('\n').map(|x| x.1).unwrap_or("");
    let d: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    d["appId"].as_str().expect("an appId").to_string()
}

#[tokio::test]
async fn a_target_without_the_app_installs_it_on_demand_only_when_allowed_and_asked() {
    let Some((a, b, work)) = bound_pair_for_notes().await else {
        return;
    };
    let hap = sign_notes_one_signer(
        &[&a, &b],
        &[a.ready_field("udid"), b.ready_field("udid")],
        work.path(),
    );
    assert_eq!(
        a.oxh_ok(&["bm", "install", "-p", &hap]).trim(),
        "install bundle successfully."
    );
    assert!(!has_notes(&b));
    let m = start_notes(&a, "buy milk");

    // B's policy forbids it: 16300503 even with -f, nothing installed, the mission stays.
    b.oxh_ok(&[
        "param",
        "set",
        oxh_ability::dms_api::FREE_INSTALL_PARAM,
        "0",
    ]);
    let out = continue_to(&a, m, &b, &["-f"]);
    assert!(out.contains("Error Code:16300503"), "{out}");
    assert!(out.contains("installation-free is not supported"), "{out}");
    assert!(!has_notes(&b), "nothing installed on B");
    assert_eq!(mission_of(&a, "EntryAbility"), Some(m));

    // Allowed, but the caller did not ask: 16300504, still nothing installed.
    b.oxh_ok(&[
        "param",
        "set",
        oxh_ability::dms_api::FREE_INSTALL_PARAM,
        "1",
    ]);
    let out = continue_to(&a, m, &b, &[]);
    assert!(out.contains("Error Code:16300504"), "{out}");
    assert!(out.contains("Try again with the freeInstall flag"), "{out}");
    assert!(!has_notes(&b));
    let la = read_until(
        || lifecycle(&a),
        |l| {
            l.iter()
                .filter(|x| x.starts_with("EntryAbility onContinue"))
                .count()
                >= 2
        },
    );
    assert!(
        !la.iter().any(|x| x == "EntryAbility onDestroy"),
        "A's copy still runs: {la:?}"
    );

    // Allowed and asked: B fetches the signed HAP from A, installs it, and takes the
    // mission with its note; A's copy ends.
    let t0 = std::time::Instant::now();
    let out = continue_to(&a, m, &b, &["-f"]);
    eprintln!("aa continue with install on demand took {:?}", t0.elapsed());
    assert_eq!(out, "continue mission successfully.\n");
    assert!(has_notes(&b), "installed on B");
    assert_eq!(notes_app_id(&b), notes_app_id(&a), "the same signed app");
    let l = read_until(
        || lifecycle(&b),
        |l| l.iter().any(|x| x.starts_with("EntryAbility continued")),
    );
    assert!(
        l.iter()
            .any(|x| x == "EntryAbility continued note=buy milk"),
        "{l:?}"
    );
    read_until(|| entry_missions(&a), |n| *n == 0);
    assert_eq!((entry_missions(&a), entry_missions(&b)), (0, 1));
}

#[tokio::test]
async fn a_target_with_the_app_of_another_signer_keeps_it_and_the_mission_stays() {
    let Some((a, b, work)) = bound_pair_for_notes().await else {
        return;
    };
    let hap = sign_notes_one_signer(
        &[&a, &b],
        &[a.ready_field("udid"), b.ready_field("udid")],
        work.path(),
    );
    assert_eq!(
        a.oxh_ok(&["bm", "install", "-p", &hap]).trim(),
        "install bundle successfully."
    );
    // B has notes too, signed by another developer's key (another appId).
    let theirs = work.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    install_notes(&b, &theirs);
    let b_app_id = notes_app_id(&b);
    assert_ne!(b_app_id, notes_app_id(&a));
    let m = start_notes(&a, "call mum");

    // Without -f: B could install it (its policy allows by default), so 16300504.
    let out = continue_to(&a, m, &b, &[]);
    assert!(out.contains("Error Code:16300504"), "{out}");
    // With -f: B's bundle manager refuses to replace its app with another signer's; the
    // caller hears why, B keeps its own notes, and A's copy runs on.
    let out = continue_to(&a, m, &b, &["-f"]);
    eprintln!("{out}");
    assert!(out.contains("Error Code:16300501"), "{out}");
    assert!(
        out.contains("installing com.example.notes on the target failed"),
        "{out}"
    );
    assert_eq!(notes_app_id(&b), b_app_id, "B's own app is untouched");
    assert_eq!(entry_missions(&b), 0);
    assert_eq!(mission_of(&a, "EntryAbility"), Some(m));
    let la = lifecycle(&a);
    assert!(
        !la.iter().any(|x| x == "EntryAbility onDestroy"),
        "A's copy still runs: {la:?}"
    );
}
