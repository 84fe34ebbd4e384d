//! An app's distributed files: inside its sandbox `/data/storage/el2/distributedfiles` is its
//! `merge_view/data/<bundleName>`, so what the notes app writes there on one device it reads
//! on the other (through that device's view), each file lands in the writer's own account
//! tree owned by the app, and uninstalling the app takes its directory with it. Root and real
//! FUSE (skipped with the reason otherwise).

use crate::ability::{NOTES, aa, lifecycle, read_until};
use crate::common::TestDevice;
use crate::dms::install_notes_one_signer;
use crate::hmdfs::{pair_at, runnable, view_of};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

const USER: u32 = 100;

/// The notes app's directory in `d`'s account tree.
fn app_tree(d: &TestDevice) -> PathBuf {
    oxh_dfs::views::apps_tree(d.data_dir(), USER).join(NOTES)
}

/// Starts notes on `d` with the given string parameters and waits for its log line `want`
/// (bounded); the lifecycle log either way.
fn start_and_wait(d: &TestDevice, params: &[(&str, &str)], want: &str) -> Vec<String> {
    let mut args = vec!["start", "-b", NOTES];
    for (k, v) in params {
        args.extend(["--ps", k, v]);
    }
    args.push("-W");
    let out = aa(d, &args);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    read_until(|| lifecycle(d), |log| log.iter().any(|l| l.ends_with(want)))
}

/// Starts notes on `d` to copy `uri`, waits (bounded) for this start's answer, ok or not,
/// and stops it; the log from that answer on.
fn copy_on(d: &TestDevice, uri: &str) -> Vec<String> {
    let answered = format!("dfs copy {uri}=");
    let answers = |log: &Vec<String>| log.iter().filter(|l| l.contains(&answered)).count();
    let before = answers(&lifecycle(d));
    let out = aa(d, &["start", "-b", NOTES, "--ps", "dfs_copy", uri, "-W"]);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    let mut log = read_until(|| lifecycle(d), |log| answers(log) > before);
    // Only this start's answer.
    let mine = log.iter().rposition(|l| l.contains(&answered));
    log.drain(..mine.unwrap_or(log.len()));
    aa(d, &["force-stop", NOTES]);
    log
}

fn logged_with(log: &[String], part: &str) -> bool {
    log.iter().any(|l| l.contains(part))
}

fn logged(log: &[String], want: &str) -> bool {
    log.iter().any(|l| l.ends_with(want))
}

#[tokio::test]
async fn an_app_reads_on_one_device_what_it_wrote_to_its_distributed_files_on_another() {
    if !runnable("hmdfs_app") {
        return;
    }
    // SL3 devices: an unlabelled file counts as S3, which an SL1 device may not open.
    let (a, b) = pair_at("SL3", "SL3").await;
    let work = tempfile::tempdir().unwrap();
    let udids = [a.ready_field("udid"), b.ready_field("udid")];
    install_notes_one_signer(&[&a, &b], &udids, work.path());
    view_of(&a, &b).await;
    view_of(&b, &a).await;

    // Written on A: in A's account tree, the app's (not root's, not the daemon's).
    let log = start_and_wait(
        &a,
        &[("dfs_write", "a.txt=from A")],
        "dfs write a.txt=from A",
    );
    assert!(logged(&log, "dfs write a.txt=from A"), "{log:?}");
    let on_a = app_tree(&a).join("a.txt");
    assert_eq!(std::fs::read_to_string(&on_a).unwrap(), "from A");
    let app_uid = std::fs::metadata(app_tree(&a)).unwrap().uid();
    assert_ne!(app_uid, 0, "the app's dir is the app's");
    assert_eq!(std::fs::metadata(&on_a).unwrap().uid(), app_uid);

    // On B the app writes its own file and reads A's, which B holds no copy of.
    let log = start_and_wait(
        &b,
        &[("dfs_write", "b.txt=from B"), ("dfs_read", "a.txt")],
        "dfs read a.txt=from A",
    );
    assert!(logged(&log, "dfs write b.txt=from B"), "{log:?}");
    assert!(logged(&log, "dfs read a.txt=from A"), "{log:?}");
    assert!(
        !app_tree(&b).join("a.txt").exists(),
        "read through the view"
    );
    assert_eq!(
        std::fs::read_to_string(app_tree(&b).join("b.txt")).unwrap(),
        "from B"
    );

    // fs.copy on B of A's file lands in the app's own base dir; another app's file on A is
    // refused by the app's token (its bundle), though the daemon could read it.
    let nid_a = a.ready_field("network_id");
    let own = format!("file://{NOTES}/data/storage/el2/distributedfiles/a.txt?networkid={nid_a}");
    let other = oxh_dfs::views::apps_tree(a.data_dir(), USER).join("com.example.other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret.txt"), "not yours").unwrap();
    let theirs = format!(
        "file://com.example.other/data/storage/el2/distributedfiles/secret.txt?networkid={nid_a}"
    );
    aa(&b, &["force-stop", NOTES]);
    // DISTRIBUTED_DATASYNC is user_grant: refused (201) until granted.
    let log = copy_on(&b, &own);
    assert!(
        logged_with(&log, &format!("dfs copy {own}=error 201")),
        "{log:?}"
    );
    b.oxh_ok(&[
        "atm",
        "grant",
        NOTES,
        "ohos.permission.DISTRIBUTED_DATASYNC",
    ]);
    let log = copy_on(&b, &own);
    assert!(
        logged_with(&log, &format!("dfs copy {own}=ok from A")),
        "{log:?}"
    );
    let base_b = b.data_dir().join(format!("app/el2/{USER}/base/{NOTES}"));
    assert_eq!(
        std::fs::read_to_string(base_b.join("copied_a.txt")).unwrap(),
        "from A"
    );
    let log = copy_on(&b, &theirs);
    assert!(
        logged_with(&log, &format!("dfs copy {theirs}=error 13900012")),
        "another app's file is not copied: {log:?}"
    );
    assert!(!base_b.join("copied_secret.txt").exists());

    // And A reads B's.
    aa(&a, &["force-stop", NOTES]);
    let log = start_and_wait(&a, &[("dfs_read", "b.txt")], "dfs read b.txt=from B");
    assert!(logged(&log, "dfs read b.txt=from B"), "{log:?}");

    // Uninstalling takes the app's distributed files on that device (only there).
    aa(&a, &["force-stop", NOTES]);
    a.oxh_ok(&["bm", "uninstall", "-n", NOTES]);
    assert!(!app_tree(&a).exists(), "gone with the app");
    assert!(app_tree(&b).join("b.txt").exists(), "B's copy is B's");
}
