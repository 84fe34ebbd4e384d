//! Remote service connections (SA 1401's ConnectAbilityFromRemote): an app on device A
//! connects to a service extension of an app on device B by the Want's deviceId; its calls
//! run on B, judged there on the caller's synced token, and the connection lives as long as
//! the bus connection between the two daemons that relay it.

use crate::ability::{
    COUNTER, NOTES, aa, counter_log, install_counter, install_notes, lifecycle, pid_of, read_until,
};
use crate::common::{Oxh, TestDevice, unsafe_kill};
use crate::kv::{pair, wait_online};
use std::time::{Duration, Instant};

pub(crate) const DATASYNC: &str = "ohos.permission.DISTRIBUTED_DATASYNC";

/// The bus's OFFLINE time in the test devices (4 heartbeats of 500 ms), and a margin.
const OFFLINE_WITHIN: Duration = offline_within(500);

/// The bus's OFFLINE time with heartbeats of `heartbeat_ms` (4 of them), and a margin for the
/// relays, the app hosts and hilog to act on it.
pub(crate) const fn offline_within(heartbeat_ms: u64) -> Duration {
    Duration::from_millis(4 * heartbeat_ms + 2500)
}

/// Two bound devices, notes on A and counter on B; None (skip) without root.
async fn apps_on_two_devices() -> Option<(TestDevice, TestDevice, tempfile::TempDir)> {
    if !oxh_testkit::require_root("dms_connect", "to sandbox app processes") {
        return None;
    }
    let (a, b) = pair().await;
    let work = tempfile::tempdir().unwrap();
    install_notes(&a, work.path());
    install_counter(&b, work.path());
    Some((a, b, work))
}

/// The counter's answers `ability` logged on `dev` ("count=1 caller=...").
pub(crate) fn calls(dev: &dyn Oxh, ability: &str) -> Vec<String> {
    let p = format!("{ability} counter ");
    lifecycle(dev)
        .into_iter()
        .filter_map(|l| l.strip_prefix(&p).map(str::to_string))
        .collect()
}

/// The value of `key=` in a counter answer.
pub(crate) fn field<'a>(answer: &'a str, key: &str) -> Option<&'a str> {
    answer
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Starts notes' `ability` on `a` connected to the counter service on `nid_b`, and waits
/// (bounded) for its three calls' answers.
pub(crate) fn connect_remote(a: &dyn Oxh, nid_b: &str, ability: &str) {
    let before = calls(a, ability).len();
    aa(
        a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            ability,
            "--ps",
            "connect_on",
            nid_b,
            "-W",
        ],
    );
    let c = read_until(|| calls(a, ability), |c| c.len() >= before + 3);
    assert_eq!(
        c.len(),
        before + 3,
        "{ability}: {c:?}\n{:?}\n{}",
        lifecycle(a),
        a.run_ok(&["hilog", "-x", "-T", "DistributedSched"])
    );
}

/// Sends SIGCONT when dropped, so a failing test does not leave a daemon stopped.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        unsafe_kill(pid, libc::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        unsafe_kill(self.0, libc::SIGCONT);
    }
}

#[tokio::test]
async fn an_app_calls_a_service_on_another_device_and_its_disconnect_ends_it_there() {
    let Some((a, b, _work)) = apps_on_two_devices().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    a.oxh_ok(&["atm", "grant", NOTES, DATASYNC]);
    let out = aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "--ps",
            "connect_on",
            &nid_b,
            "--pi",
            "bench_calls",
            "500",
            "-W",
        ],
    );
    assert!(out.ends_with("start ability successfully.\n"), "{out}");
    let c = read_until(|| calls(&a, "EntryAbility"), |c| c.len() >= 3);
    assert_eq!(c.len(), 3, "{c:?}\n{:?}", lifecycle(&a));
    // The calls ran in the counter's process on B; A runs no counter at all.
    let service_pid = pid_of(&b, COUNTER).expect("the service runs on B");
    assert_eq!(pid_of(&a, COUNTER), None);
    assert_eq!(
        field(&c[0], "service_pid"),
        Some(service_pid.to_string().as_str()),
        "{c:?}"
    );
    // The service sees a remote client: pid 0, the overflow uid, the synced token's copy
    // and the client's bundle.
    assert!(c[0].starts_with("count=1 caller=65534 token="), "{c:?}");
    assert_eq!(field(&c[0], "pid"), Some("0"), "{c:?}");
    assert_ne!(field(&c[0], "token"), Some("0"), "{c:?}");
    assert!(c[0].ends_with(" bundle=com.example.notes"), "{c:?}");
    assert!(c[1].starts_with("count=2 "), "{c:?}");
    assert_eq!(c[2], "code 9 error=401", "the service's own error code");
    assert!(lifecycle(&a).contains(&"EntryAbility onConnect CounterService".to_string()));
    assert_eq!(
        counter_log(&b),
        ["CounterService onCreate", "CounterService onConnect"]
    );
    // The remote call's round trip beside a local IPC call from the same thread.
    let bench = read_until(
        || lifecycle(&a).into_iter().find(|l| l.contains(" bench ")),
        Option::is_some,
    )
    .expect("the bench line");
    eprintln!("remote service call over loopback (500 calls): {bench}");
    let dump = || b.oxh_ok(&["hidumper", "-s", "180"]);
    let d = read_until(dump, |d| d.contains("connections #1"));
    assert!(d.contains("connections #1"), "{d}");

    // The client disconnects: B's service sees its last connection end (onDisconnect),
    // and, never started, ends; the client hears no onDisconnect (it asked).
    aa(
        &a,
        &["start", "-b", NOTES, "--pb", "disconnect", "true", "-W"],
    );
    let l = read_until(|| counter_log(&b), |l| l.len() >= 4);
    assert_eq!(
        &l[2..],
        ["CounterService onDisconnect", "CounterService onDestroy"],
        "{l:?}"
    );
    assert!(lifecycle(&a).contains(&"EntryAbility disconnect=0".to_string()));
    assert!(
        !lifecycle(&a)
            .iter()
            .any(|x| x == "EntryAbility onDisconnect CounterService"),
        "{:?}",
        lifecycle(&a)
    );

    // The service dies under a remote client: the client's onDisconnect on A.
    aa(
        &a,
        &[
            "start",
            "-b",
            NOTES,
            "-a",
            "NoteAbility",
            "--ps",
            "connect_on",
            &nid_b,
            "-W",
        ],
    );
    let c = read_until(|| calls(&a, "NoteAbility"), |c| c.len() >= 3);
    assert!(c[0].starts_with("count=1 "), "a new service process: {c:?}");
    aa(&b, &["force-stop", COUNTER]);
    let l = read_until(
        || lifecycle(&a),
        |l| {
            l.iter()
                .any(|x| x == "NoteAbility onDisconnect CounterService")
        },
    );
    assert!(
        l.iter()
            .any(|x| x == "NoteAbility onDisconnect CounterService"),
        "{l:?}"
    );
}

#[tokio::test]
async fn a_remote_connection_needs_datasync_an_exported_service_and_an_online_device() {
    let Some((a, b, _work)) = apps_on_two_devices().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    let failed = |ability: &str, n: usize| {
        let p = format!("{ability} onFailed ");
        read_until(
            || {
                lifecycle(&a)
                    .into_iter()
                    .filter_map(|l| l.strip_prefix(&p).map(str::to_string))
                    .collect::<Vec<_>>()
            },
            |f| f.len() >= n,
        )
    };
    let connect = |extra: &[&str]| {
        let mut args = vec!["start", "-b", NOTES, "-a", "NoteAbility"];
        args.extend_from_slice(extra);
        args.push("-W");
        aa(&a, &args)
    };
    // notes requests DISTRIBUTED_DATASYNC (user_grant) but nobody granted it: 201.
    connect(&["--ps", "connect_on", &nid_b]);
    assert_eq!(failed("NoteAbility", 1), ["201"]);
    assert!(counter_log(&b).is_empty(), "{:?}", counter_log(&b));
    // Granted: a service that is not exported is refused on B (16000004), whatever A says.
    a.oxh_ok(&["atm", "grant", NOTES, DATASYNC]);
    connect(&[
        "--ps",
        "connect_on",
        &nid_b,
        "--ps",
        "connect_to",
        "com.example.counter/HiddenCounter",
    ]);
    assert_eq!(failed("NoteAbility", 2)[1], "16000004");
    // Not installed on B (16000001); an unknown device: the ability kit's internal error.
    connect(&[
        "--ps",
        "connect_on",
        &nid_b,
        "--ps",
        "connect_to",
        "com.example.none/Service",
    ]);
    assert_eq!(failed("NoteAbility", 3)[2], "16000001");
    connect(&["--ps", "connect_on", "no-such-device"]);
    assert_eq!(failed("NoteAbility", 4)[3], "16000050");
    assert!(counter_log(&b).is_empty(), "{:?}", counter_log(&b));
    assert_eq!(pid_of(&b, COUNTER), None);

    // ConnectAbilityFromRemote is for peers' schedulers only: a local caller (the shell,
    // which holds DISTRIBUTED_DATASYNC) is refused, with or without a socket.
    let sdk = b.sdk().await;
    let args = oxh_ipc::encode(&oxh_ability::dms_api::ConnectFromRemoteArgs {
        want: oxh_ability::Want::explicit(COUNTER, "CounterService"),
        client_bundle: NOTES.into(),
    });
    let e = sdk
        .client()
        .call_raw(
            oxh_ability::dms_api::SA_ID,
            oxh_ability::dms_api::CONNECT_FROM_REMOTE,
            &args,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(201), "{e}");
    let (mine, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let e = sdk
        .client()
        .call_with_fd::<_, oxh_ability::api::ConnectReply>(
            oxh_ability::dms_api::SA_ID,
            oxh_ability::dms_api::CONNECT_FROM_REMOTE,
            &oxh_ability::dms_api::ConnectFromRemoteArgs {
                want: oxh_ability::Want::explicit(COUNTER, "CounterService"),
                client_bundle: NOTES.into(),
            },
            std::os::fd::AsFd::as_fd(&mine),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(201), "{e}");
    assert!(counter_log(&b).is_empty(), "{:?}", counter_log(&b));
}

#[tokio::test]
async fn a_lost_link_disconnects_both_sides_within_the_offline_time() {
    let Some((a, b, _work)) = apps_on_two_devices().await else {
        return;
    };
    let nid_b = b.ready_field("network_id");
    let (udid_a, udid_b) = (a.ready_field("udid"), b.ready_field("udid"));
    a.oxh_ok(&["atm", "grant", NOTES, DATASYNC]);
    let client_lost = || {
        lifecycle(&a)
            .iter()
            .filter(|l| *l == "NoteAbility onDisconnect CounterService")
            .count()
    };
    let service_disconnects = || {
        counter_log(&b)
            .iter()
            .filter(|l| *l == "CounterService onDisconnect")
            .count()
    };

    // B's daemon freezes (a device that vanishes): A's relay ends when the bus connection
    // does, and the client hears onDisconnect within the OFFLINE time.
    connect_remote(&a, &nid_b, "NoteAbility");
    let stopped = Stopped::new(b.pid());
    let t0 = Instant::now();
    assert_eq!(
        read_until(client_lost, |n| *n >= 1),
        1,
        "{:?}",
        lifecycle(&a)
    );
    let client_side = t0.elapsed();
    eprintln!("client onDisconnect {client_side:?} after the service's daemon stopped");
    assert!(client_side < OFFLINE_WITHIN, "{client_side:?}");
    // B comes back: its relay ends too, and the service's last connection with it.
    drop(stopped);
    let n = read_until(service_disconnects, |n| *n >= 1);
    assert_eq!(n, 1, "{:?}", counter_log(&b));
    wait_online(&a, &udid_b).await;
    wait_online(&b, &udid_a).await;

    // A's daemon freezes: B's relay ends, and the service's onDisconnect runs within the
    // OFFLINE time; A, back, tells its client.
    connect_remote(&a, &nid_b, "NoteAbility");
    let stopped = Stopped::new(a.pid());
    let t0 = Instant::now();
    let n = read_until(service_disconnects, |n| *n >= 2);
    let service_side = t0.elapsed();
    assert_eq!(n, 2, "{:?}", counter_log(&b));
    eprintln!("service onDisconnect {service_side:?} after the client's daemon stopped");
    assert!(service_side < OFFLINE_WITHIN, "{service_side:?}");
    drop(stopped);
    assert_eq!(
        read_until(client_lost, |n| *n >= 2),
        2,
        "{:?}",
        lifecycle(&a)
    );
}
