//! The distributed scheduler (SA 1401) between separate hosts: network namespaces on a
//! bridge, each a real `oxhd`, bound by PIN. Remote start, a remote service call that a cut
//! link (`ip link set eth0 down`) ends on both sides, continuation of the notes example with
//! its note, refusals (Reject, Mismatch, another signer) that leave the mission on the source,
//! notes installed on demand on a host that lacks it, and a link cut mid-continuation that leaves exactly one copy once the link is back.
//!
//! Needs root and `ip netns`; prints why and passes without them. [`Hosts`] drops the daemons
//! (and so their apps) before the namespaces, even when a test fails.

use crate::ability::{
    COUNTER, NOTES, aa, counter_log, install_counter, install_notes, lifecycle, pid_of, read_until,
    read_within,
};
use crate::common::{NsDevice, Oxh};
use crate::dms::{entry_missions, install_notes_one_signer, mission_of, sign_notes_one_signer};
use crate::dms_connect::{DATASYNC, calls, connect_remote, field, offline_within};
use crate::kv::netns::{HEARTBEAT_MS, bound_hosts, wait_online_count};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long `aa continue` may take to answer before the test gives up on it (the source's
/// own timeout is well inside this).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Bound hosts and a work dir. Fields drop in order: the daemons before their namespaces.
struct Hosts {
    devs: Vec<NsDevice>,
    _netns: oxh_testkit::Netns,
    work: tempfile::TempDir,
}

impl Hosts {
    /// `n` hosts on `<subnet>.0/24`, every two bound by PIN and online; `None` (after saying
    /// why) without root or namespaces.
    async fn start(test: &str, subnet: &str, n: usize) -> Option<Hosts> {
        if !oxh_testkit::require_root(test, "to sandbox app processes") {
            return None;
        }
        let (netns, devs) = bound_hosts(test, "oxhdms", subnet, "dms", n).await?;
        Some(Hosts {
            devs,
            _netns: netns,
            work: tempfile::tempdir().unwrap(),
        })
    }

    /// A fresh directory under the work dir.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.work.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Two hosts with notes installed on both from one HAP (one appId).
    async fn notes_on_both(test: &str, subnet: &str) -> Option<Hosts> {
        let h = Self::start(test, subnet, 2).await?;
        let udids: Vec<String> = h.devs.iter().map(NsDevice::udid).collect();
        let devs: Vec<&dyn Oxh> = h.devs.iter().map(|d| d as &dyn Oxh).collect();
        install_notes_one_signer(&devs, &udids, &h.dir("notes"));
        Some(h)
    }
}

/// Starts notes' EntryAbility on `dev` with `extra` arguments and waits for its foreground.
fn start_entry(dev: &NsDevice, extra: &[&str]) -> String {
    let mut args = vec!["start", "-b", NOTES, "-a", "EntryAbility"];
    args.extend_from_slice(extra);
    args.push("-W");
    let out = aa(dev, &args);
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    out
}

/// Runs `aa continue -m MISSION -d NID` on `dev` in a thread; the receiver gets its stdout.
fn continue_in_background(
    dev: &NsDevice,
    mission: i32,
    nid: &str,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let data = dev.data_dir().to_path_buf();
    let nid = nid.to_string();
    std::thread::spawn(move || {
        let o = crate::common::run_oxh(
            &data,
            &["aa", "continue", "-m", &mission.to_string(), "-d", &nid],
        );
        let _ = tx.send(String::from_utf8_lossy(&o.stdout).into_owned());
    });
    rx
}

/// Waits (bounded) until `dev`'s lifecycle has `line`.
fn logged(dev: &NsDevice, line: &str) -> Vec<String> {
    let l = read_until(|| lifecycle(dev), |l| l.iter().any(|x| x == line));
    assert!(
        l.iter().any(|x| x == line),
        "no {line:?} on {}: {l:?}",
        dev.name
    );
    l
}

#[tokio::test]
async fn aa_start_d_across_hosts_starts_the_ability_on_the_host_named_only() {
    let Some(h) = Hosts::start(
        "aa_start_d_across_hosts_starts_the_ability_on_the_host_named_only",
        "10.81.1",
        3,
    )
    .await
    else {
        return;
    };
    let [a, b, c] = &h.devs[..] else {
        unreachable!()
    };
    install_notes(b, &h.dir("b"));
    install_notes(c, &h.dir("c"));
    let nid_b = b.ready_field("network_id");
    let out = aa(
        a,
        &["start", "-d", &nid_b, "-b", NOTES, "-a", "EntryAbility"],
    );
    assert_eq!(out, "start ability successfully.\n");
    let d = read_until(
        || aa(b, &["dump", "-l"]),
        |d| d.contains("main name [EntryAbility]") && d.contains("state #FOREGROUND"),
    );
    assert!(d.contains("state #FOREGROUND"), "{d}");
    let l = read_until(|| lifecycle(b), |l| l.len() >= 2);
    assert_eq!(
        l[..2],
        [
            "EntryAbility onCreate StartAbility",
            "EntryAbility onForeground"
        ]
    );
    // Only B runs it: neither the caller nor the third host.
    assert_eq!((entry_missions(a), entry_missions(c)), (0, 0));
    assert!(lifecycle(c).is_empty(), "{:?}", lifecycle(c));

    // -W waits for the foreground on the other host, here C.
    let nid_c = c.ready_field("network_id");
    let out = aa(
        a,
        &[
            "start",
            "-d",
            &nid_c,
            "-b",
            NOTES,
            "-a",
            "NoteAbility",
            "-W",
        ],
    );
    assert!(out.contains("StartMode: Cold"), "{out}");
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    assert!(mission_of(c, "NoteAbility").is_some());
    assert_eq!(mission_of(b, "NoteAbility"), None);
}

#[tokio::test]
async fn a_remote_service_call_crosses_hosts_and_a_cut_link_disconnects_both_sides() {
    let Some(h) = Hosts::start(
        "a_remote_service_call_crosses_hosts_and_a_cut_link_disconnects_both_sides",
        "10.81.2",
        2,
    )
    .await
    else {
        return;
    };
    let [a, b] = &h.devs[..] else { unreachable!() };
    install_notes(a, &h.dir("a"));
    install_counter(b, &h.dir("b"));
    a.oxh_ok(&["atm", "grant", NOTES, DATASYNC]);
    let nid_b = b.ready_field("network_id");
    connect_remote(a, &nid_b, "NoteAbility");
    // The calls ran in the counter's process on B, for a remote client.
    let c = calls(a, "NoteAbility");
    let service_pid = pid_of(b, COUNTER).expect("the service runs on B");
    assert_eq!(pid_of(a, COUNTER), None);
    assert_eq!(
        field(&c[0], "service_pid"),
        Some(service_pid.to_string().as_str()),
        "{c:?}"
    );
    assert!(c[0].starts_with("count=1 caller=65534 "), "{c:?}");
    assert!(c[0].ends_with(" bundle=com.example.notes"), "{c:?}");

    // B's link goes down: both daemons see the other OFFLINE, end their relays, and each
    // side hears onDisconnect, within the OFFLINE time.
    let bound = offline_within(HEARTBEAT_MS);
    b.link("down");
    let t0 = Instant::now();
    let client = "NoteAbility onDisconnect CounterService";
    let l = read_within(bound, || lifecycle(a), |l| l.iter().any(|x| x == client));
    assert!(l.iter().any(|x| x == client), "not within {bound:?}: {l:?}");
    eprintln!("client onDisconnect {:?} after the link cut", t0.elapsed());
    let service = "CounterService onDisconnect";
    let l = read_within(
        bound.saturating_sub(t0.elapsed()),
        || counter_log(b),
        |l| l.iter().any(|x| x == service),
    );
    assert!(
        l.iter().any(|x| x == service),
        "not within {bound:?}: {l:?}"
    );
    eprintln!("service onDisconnect {:?} after the link cut", t0.elapsed());

    // The link back: the two meet again and a new connection works.
    b.link("up");
    wait_online_count(a, 1).await;
    wait_online_count(b, 1).await;
    connect_remote(a, &nid_b, "NoteAbility");
}

#[tokio::test]
async fn aa_continue_across_hosts_moves_notes_with_the_note_being_edited() {
    let Some(h) = Hosts::notes_on_both(
        "aa_continue_across_hosts_moves_notes_with_the_note_being_edited",
        "10.81.3",
    )
    .await
    else {
        return;
    };
    let [a, b] = &h.devs[..] else { unreachable!() };
    start_entry(a, &["--ps", "note", "buy milk, then eggs"]);
    let m = mission_of(a, "EntryAbility").expect("a mission on A");
    let out = aa(
        a,
        &[
            "continue",
            "-m",
            &m.to_string(),
            "-d",
            &b.ready_field("network_id"),
        ],
    );
    assert_eq!(out, "continue mission successfully.\n");
    // B created it for the continuation, with the note, and shows it.
    logged(b, "EntryAbility onCreate Continuation");
    logged(b, "EntryAbility continued note=buy milk, then eggs");
    let d = read_until(
        || aa(b, &["dump", "-l"]),
        |d| d.contains("main name [EntryAbility]") && d.contains("state #FOREGROUND"),
    );
    assert!(d.contains("state #FOREGROUND"), "{d}");
    // A agreed and its mission ended: one copy, on B.
    logged(a, "EntryAbility onContinue Agree");
    logged(a, "EntryAbility onDestroy");
    read_until(|| entry_missions(a), |n| *n == 0);
    assert_eq!((entry_missions(a), entry_missions(b)), (0, 1));
}

#[tokio::test]
async fn a_rejected_or_mismatched_continuation_across_hosts_leaves_the_mission_on_the_source() {
    let Some(h) = Hosts::notes_on_both(
        "a_rejected_or_mismatched_continuation_across_hosts_leaves_the_mission_on_the_source",
        "10.81.4",
    )
    .await
    else {
        return;
    };
    let [a, b] = &h.devs[..] else { unreachable!() };
    let nid_b = b.ready_field("network_id");
    start_entry(a, &["--ps", "note", "draft", "--ps", "continue", "reject"]);
    let m = mission_of(a, "EntryAbility").expect("a mission on A");
    let ms = m.to_string();
    let out = aa(a, &["continue", "-m", &ms, "-d", &nid_b]);
    assert!(
        out.contains("Error Code:16300501") && out.contains("REJECT"),
        "{out}"
    );
    start_entry(a, &["--ps", "continue", "mismatch"]);
    let out = aa(a, &["continue", "-m", &ms, "-d", &nid_b]);
    assert!(
        out.contains("Error Code:16300501") && out.contains("MISMATCH"),
        "{out}"
    );
    // The same mission runs on A, in the foreground; B took nothing on.
    assert_eq!(mission_of(a, "EntryAbility"), Some(m));
    assert!(aa(a, &["dump", "-l"]).contains("state #FOREGROUND"));
    assert_eq!(entry_missions(b), 0);
    assert!(
        !lifecycle(b).iter().any(|x| x.contains("Continuation")),
        "{:?}",
        lifecycle(b)
    );
}

#[tokio::test]
async fn a_continuation_to_a_host_whose_notes_has_another_signer_is_refused() {
    let Some(h) = Hosts::start(
        "a_continuation_to_a_host_whose_notes_has_another_signer_is_refused",
        "10.81.5",
        2,
    )
    .await
    else {
        return;
    };
    let [a, b] = &h.devs[..] else { unreachable!() };
    // Each host's notes signed with a key of its own: the same bundle name, two appIds.
    install_notes(a, &h.dir("a"));
    install_notes(b, &h.dir("b"));
    start_entry(a, &["--ps", "note", "mine"]);
    let m = mission_of(a, "EntryAbility").expect("a mission on A");
    let out = aa(
        a,
        &[
            "continue",
            "-m",
            &m.to_string(),
            "-d",
            &b.ready_field("network_id"),
        ],
    );
    // B could install notes on demand (its policy allows by default), so 16300504 ...
    assert!(out.contains("Error Code:16300504"), "{out}");
    // ... and asked to, its bundle manager refuses A's package (a root it does not trust,
    // and another signer than its own app's): the installer's reason comes back.
    let out = aa(
        a,
        &[
            "continue",
            "-m",
            &m.to_string(),
            "-d",
            &b.ready_field("network_id"),
            "-f",
        ],
    );
    assert!(
        out.contains("Error Code:16300501")
            && out.contains("installing com.example.notes on the target failed"),
        "{out}"
    );
    assert_eq!(mission_of(a, "EntryAbility"), Some(m));
    assert!(aa(a, &["dump", "-l"]).contains("state #FOREGROUND"));
    assert_eq!(entry_missions(b), 0);
    assert!(
        !lifecycle(b).iter().any(|x| x.contains("note=mine")),
        "the note stays with its signer's app: {:?}",
        lifecycle(b)
    );
}

#[tokio::test]
async fn a_host_without_notes_installs_it_on_demand_and_takes_the_note() {
    let Some(h) = Hosts::start(
        "a_host_without_notes_installs_it_on_demand_and_takes_the_note",
        "10.81.7",
        2,
    )
    .await
    else {
        return;
    };
    let [a, b] = &h.devs[..] else { unreachable!() };
    let udids: Vec<String> = h.devs.iter().map(NsDevice::udid).collect();
    let hap = sign_notes_one_signer(&[a, b], &udids, &h.dir("notes"));
    a.run_ok(&["bm", "install", "-p", &hap]);
    start_entry(a, &["--ps", "note", "from afar"]);
    let m = mission_of(a, "EntryAbility").expect("a mission on A");
    let out = aa(
        a,
        &[
            "continue",
            "-m",
            &m.to_string(),
            "-d",
            &b.ready_field("network_id"),
            "-f",
        ],
    );
    assert_eq!(out, "continue mission successfully.\n");
    assert!(
        b.run_ok(&["bm", "dump", "-a"])
            .lines()
            .any(|l| l.trim() == NOTES),
        "installed on B"
    );
    let l = read_until(
        || lifecycle(b),
        |l| l.iter().any(|x| x.starts_with("EntryAbility continued")),
    );
    assert!(
        l.iter()
            .any(|x| x == "EntryAbility continued note=from afar"),
        "{l:?}"
    );
    read_until(|| entry_missions(a), |n| *n == 0);
    assert_eq!((entry_missions(a), entry_missions(b)), (0, 1));
}

#[tokio::test]
async fn a_link_cut_mid_continuation_leaves_exactly_one_copy_after_heal() {
    let Some(h) = Hosts::notes_on_both(
        "a_link_cut_mid_continuation_leaves_exactly_one_copy_after_heal",
        "10.81.6",
    )
    .await
    else {
        return;
    };
    let [a, b] = &h.devs[..] else { unreachable!() };
    let nid_b = b.ready_field("network_id");
    start_entry(
        a,
        &[
            "--ps",
            "note",
            "in flight",
            "--pi",
            "continue_create_delay_ms",
            "3000",
        ],
    );
    let m = mission_of(a, "EntryAbility").expect("a mission on A");
    let answer = continue_in_background(a, m, &nid_b);
    // B's instance is in its (slow) onCreate with the note: the link goes down now.
    logged(b, "EntryAbility continued note=in flight");
    b.link("down");
    let out = answer
        .recv_timeout(ANSWER_WITHIN)
        .unwrap_or_else(|_| panic!("aa continue did not answer within {ANSWER_WITHIN:?}"));
    eprintln!("aa continue with the link cut: {out:?}");
    b.link("up");
    wait_online_count(a, 1).await;
    wait_online_count(b, 1).await;
    // After the heal, one copy runs, on the side the answer names, in the foreground.
    let moved = out == "continue mission successfully.\n";
    if !moved {
        assert!(out.contains("Error Code:16300"), "{out}");
    }
    let want = if moved { (0, 1) } else { (1, 0) };
    let got = read_until(|| (entry_missions(a), entry_missions(b)), |n| *n == want);
    assert_eq!(got, want, "{out}");
    let (holder, other) = if moved { (b, a) } else { (a, b) };
    assert!(aa(holder, &["dump", "-l"]).contains("state #FOREGROUND"));
    // And the one copy moves again, across the healed link.
    let m = mission_of(holder, "EntryAbility").expect("the copy's mission");
    let out = aa(
        holder,
        &[
            "continue",
            "-m",
            &m.to_string(),
            "-d",
            &other.ready_field("network_id"),
        ],
    );
    assert_eq!(out, "continue mission successfully.\n");
    read_until(|| entry_missions(holder), |n| *n == 0);
    assert_eq!((entry_missions(holder), entry_missions(other)), (0, 1));
}
