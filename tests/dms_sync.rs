//! Mission sync: a device follows another trusted device's missions that may move now
//! (a launcher's "continue on" list): the list at registration, each change (a continuable
//! mission started, its continue state set INACTIVE and back, its end), and the device's
//! disconnect.

use crate::ability::{NOTES, aa, install_notes, lifecycle, read_until};
use crate::dms::bound_pair_for_notes;
use oxh_sdk::ability::{MissionEvent, MissionWatch};
use std::time::Duration;

/// Waits (bounded) for the next event.
async fn next(w: &mut MissionWatch) -> MissionEvent {
    tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("a mission event within 20 s")
        .expect("the watch is open")
}

/// Waits for a MissionsChanged whose list satisfies `ok`, skipping others; the list.
async fn until(
    w: &mut MissionWatch,
    ok: impl Fn(&[oxh_sdk::ability::MissionInfo]) -> bool,
) -> Vec<oxh_sdk::ability::MissionInfo> {
    for _ in 0..20 {
        match next(w).await {
            MissionEvent::MissionsChanged { missions, .. } if ok(&missions) => return missions,
            MissionEvent::MissionsChanged { .. } => continue,
            e => panic!("unexpected {e:?}"),
        }
    }
    panic!("no matching mission list in 20 events");
}

#[tokio::test]
async fn a_device_follows_another_devices_movable_missions_as_they_change() {
    let Some((a, mut b, work)) = bound_pair_for_notes().await else {
        return;
    };
    install_notes(&b, work.path());
    let nid_b = b.ready_field("network_id");
    let sdk = a.sdk().await;
    let mut w = sdk.ability().watch_missions(&nid_b).await.unwrap();

    // Nothing runs on B yet.
    let first = until(&mut w, |_| true).await;
    assert!(first.is_empty(), "{first:?}");

    // B starts notes (continuable): A hears it.
    let start = |extra: &[&str]| {
        let mut args = vec!["start", "-b", NOTES, "-a", "EntryAbility"];
        args.extend_from_slice(extra);
        args.push("-W");
        let out = aa(&b, &args);
        assert!(out.ends_with("start ability successfully.\n"), "{out}");
    };
    start(&[]);
    let l = until(&mut w, |l| !l.is_empty()).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].element.bundle_name, NOTES);
    assert!(l[0].continuable);
    let mission = l[0].mission_id;

    // Its continue state goes INACTIVE: it leaves the list; ACTIVE again: it is back.
    start(&["--ps", "continue_state", "inactive"]);
    read_until(
        || lifecycle(&b),
        |l| l.iter().any(|x| x == "EntryAbility continueState=0"),
    );
    until(&mut w, |l| l.is_empty()).await;
    start(&["--ps", "continue_state", "active"]);
    let l = until(&mut w, |l| !l.is_empty()).await;
    assert_eq!(l[0].mission_id, mission);

    // A second listener hears the latest list at once.
    let mut w2 = sdk.ability().watch_missions(&nid_b).await.unwrap();
    let l2 = until(&mut w2, |_| true).await;
    assert_eq!(l2.len(), 1, "{l2:?}");

    // The mission ends: the list empties.
    let out = aa(&b, &["force-stop", NOTES]);
    assert!(out.contains("successfully"), "{out}");
    until(&mut w, |l| l.is_empty()).await;

    // B goes away: both listeners hear the disconnect.
    b.stop();
    for w in [&mut w, &mut w2] {
        loop {
            match next(w).await {
                MissionEvent::NetDisconnect { network_id } => {
                    assert_eq!(network_id, nid_b);
                    break;
                }
                MissionEvent::MissionsChanged { .. } => continue,
            }
        }
    }
    // An offline device cannot be followed.
    let e = sdk.ability().watch_missions(&nid_b).await.err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.to_string().contains("not online")),
        "{e:?}"
    );
}
