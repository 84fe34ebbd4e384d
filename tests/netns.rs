//! Three hosts on a bridge, each a network namespace running a real `oxhd`: discovery by
//! multicast only (no static peers), PIN binding with the ids that `discover` shows, all
//! ONLINE; one host's link goes down and the others see it OFFLINE within 3 s; the link comes
//! back and the host is ONLINE again without re-binding.
//!
//! The namespaces, the bridge and the veths live in namespaces of their own (the host's
//! interfaces and routes are not touched); the daemons' IPC sockets are Unix sockets in their
//! data dirs, which the test reaches from the host namespace (the file system is shared).
//! Needs root and `ip`; without them the test prints why and passes. Namespaces, links and
//! processes are removed by drop guards, also when the test fails.

use crate::common::{NsDevice, within};
use oxh_softbus::api::StateEvent;
use std::time::{Duration, Instant};

/// The Done-when bound: a host whose link goes down is OFFLINE for the others within this.
const OFFLINE_WITHIN: Duration = Duration::from_secs(3);
/// Bound for the host to be ONLINE again after its link comes back.
const BACK_WITHIN: Duration = Duration::from_secs(10);
/// Bound for every device to see the others by multicast.
const DISCOVER_WITHIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- fixtures

use oxh_testkit::bridged_hosts;

/// The discover ids of the devices `d` sees, by name.
async fn seen_ids(d: &NsDevice) -> Vec<(String, String)> {
    d.sdk()
        .await
        .device_manager()
        .discover()
        .await
        .map(|v| v.into_iter().map(|s| (s.name, s.id)).collect())
        .unwrap_or_default()
}

/// Binds `a` to `b` with a PIN that `b` shows and the id under which `a` discovered `b`;
/// through the CLI when `cli`, else through the SDK.
async fn bind(a: &NsDevice, b: &NsDevice, id_of_b: &str, cli: bool) {
    if cli {
        let pin_out = b.oxh_ok(&["device", "pin"]);
        let pin = pin_out.split_whitespace().nth(1).expect("PIN line");
        let out = a.oxh_ok(&["device", "bind", id_of_b, "--pin", pin]);
        assert!(out.contains("bound with"), "{out}");
    } else {
        let pin = b.sdk().await.device_manager().issue_pin().await.unwrap();
        let t = a
            .sdk()
            .await
            .device_manager()
            .bind(id_of_b, &pin.pin)
            .await
            .unwrap_or_else(|e| panic!("bind {} -> {}: {e}", a.name, b.name));
        assert_eq!(t.udid, b.udid());
    }
}

/// Waits until `d` has `n` trusted devices, all online.
async fn wait_all_online(d: &NsDevice, n: usize, bound: Duration) {
    let sdk = d.sdk().await;
    within(
        &format!("{} sees {n} trusted online", d.name),
        bound,
        async {
            loop {
                let t = sdk.device_manager().trusted_devices().await.unwrap();
                if t.len() == n && t.iter().all(|t| t.online) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
}

/// Waits (bounded) for an event about `udid` matching `want` on `w`; returns when it came.
async fn wait_event(
    w: &mut oxh_sdk::device_manager::StateWatch,
    udid: &str,
    want: fn(&StateEvent) -> Option<&oxh_softbus::api::TrustedView>,
    bound: Duration,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, w.next()).await {
            Ok(Some(ev)) => {
                if want(&ev).is_some_and(|t| t.udid == udid) {
                    return Some(Instant::now());
                }
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

fn offline(ev: &StateEvent) -> Option<&oxh_softbus::api::TrustedView> {
    match ev {
        StateEvent::Offline(t) => Some(t),
        _ => None,
    }
}

fn online(ev: &StateEvent) -> Option<&oxh_softbus::api::TrustedView> {
    match ev {
        StateEvent::Online(t) => Some(t),
        _ => None,
    }
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_on_a_bridge_discover_bind_go_offline_and_come_back() {
    let Some((_netns, hosts)) = bridged_hosts(
        "three_hosts_on_a_bridge_discover_bind_go_offline_and_come_back",
        "oxhnt",
        3,
        "10.78.0",
    ) else {
        return;
    };

    // Declared after `netns`: dropped (killed) before the namespaces are deleted.
    let pid = std::process::id();
    let devs: Vec<NsDevice> = ["a", "b", "c"]
        .iter()
        .zip(&hosts)
        .map(|(n, ns)| {
            NsDevice::start(
                ns,
                &format!("nt{pid}-{n}"),
                &["--discovery", "eth0", "--heartbeat-ms", "500"],
            )
            .expect("start oxhd")
        })
        .collect();
    let [a, b, c] = &devs[..] else { unreachable!() };

    // Discovery by multicast only: each device sees the other two, by name, with an id.
    let t0 = Instant::now();
    let mut ids: Vec<Vec<(String, String)>> = vec![Vec::new(); 3];
    within(
        "every device discovers the others",
        DISCOVER_WITHIN,
        async {
            loop {
                for (i, d) in devs.iter().enumerate() {
                    ids[i] = seen_ids(d).await;
                }
                let complete = devs.iter().enumerate().all(|(i, _)| {
                    devs.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .all(|(_, o)| ids[i].iter().any(|(n, _)| *n == o.name))
                });
                if complete {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    eprintln!(
        "all three discovered each other {} ms after the last start",
        t0.elapsed().as_millis()
    );
    let id = |i: usize, of: &NsDevice| -> String {
        ids[i]
            .iter()
            .find(|(n, _)| *n == of.name)
            .map(|(_, id)| id.clone())
            .expect("discovered")
    };
    // The CLI in the host namespace shows the same ids.
    let listing = a.oxh_ok(&["device", "discover"]);
    assert!(
        listing.contains(&id(0, b)) && listing.contains(&id(0, c)),
        "{listing}"
    );
    // Nobody is trusted yet.
    assert!(!listing.contains("online"), "{listing}");

    // PIN binding with the discover ids: A-B by the CLI, A-C and B-C by the SDK.
    bind(a, b, &id(0, b), true).await;
    bind(a, c, &id(0, c), false).await;
    bind(b, c, &id(1, c), false).await;
    for d in &devs {
        wait_all_online(d, 2, Duration::from_secs(10)).await;
    }
    let trusted_before: Vec<usize> = {
        let mut v = Vec::new();
        for d in &devs {
            v.push(
                d.sdk()
                    .await
                    .device_manager()
                    .trusted_devices()
                    .await
                    .unwrap()
                    .len(),
            );
        }
        v
    };
    eprintln!("bound A-B, A-C, B-C; all online");

    // C's link goes down: A and B see C OFFLINE within 3 s.
    let (sa, sb) = (a.sdk().await, b.sdk().await);
    let mut wa = sa.device_manager().on_state_change().await.unwrap();
    let mut wb = sb.device_manager().on_state_change().await.unwrap();
    let udid_c = c.udid();
    let down_at = Instant::now();
    c.link("down");
    let (ta, tb) = tokio::join!(
        wait_event(&mut wa, &udid_c, offline, Duration::from_secs(10)),
        wait_event(&mut wb, &udid_c, offline, Duration::from_secs(10)),
    );
    let (ta, tb) = (
        ta.expect("A saw no OFFLINE for C within 10 s"),
        tb.expect("B saw no OFFLINE for C within 10 s"),
    );
    let (da, db) = (ta - down_at, tb - down_at);
    eprintln!(
        "link down -> OFFLINE: A after {} ms, B after {} ms",
        da.as_millis(),
        db.as_millis()
    );
    assert!(
        da < OFFLINE_WITHIN && db < OFFLINE_WITHIN,
        "OFFLINE took A {da:?}, B {db:?} (bound {OFFLINE_WITHIN:?})"
    );
    // A and B still see each other.
    for d in [a, b] {
        let t = d
            .sdk()
            .await
            .device_manager()
            .trusted_devices()
            .await
            .unwrap();
        assert_eq!(
            t.iter().filter(|t| t.online).count(),
            1,
            "{}: {t:?}",
            d.name
        );
    }

    // Let C notice too (its side of the connections times out), then bring the link back.
    wait_offline_count(c, 2, Duration::from_secs(10)).await;
    let up_at = Instant::now();
    c.link("up");
    let (ta, tb) = tokio::join!(
        wait_event(&mut wa, &udid_c, online, BACK_WITHIN),
        wait_event(&mut wb, &udid_c, online, BACK_WITHIN),
    );
    let (ta, tb) = (
        ta.unwrap_or_else(|| panic!("A saw no ONLINE for C within {BACK_WITHIN:?}")),
        tb.unwrap_or_else(|| panic!("B saw no ONLINE for C within {BACK_WITHIN:?}")),
    );
    eprintln!(
        "link up -> ONLINE again: A after {} ms, B after {} ms",
        (ta - up_at).as_millis(),
        (tb - up_at).as_millis()
    );
    for d in &devs {
        wait_all_online(d, 2, BACK_WITHIN).await;
    }
    // Without re-binding: the same trusted devices as before.
    for (d, n) in devs.iter().zip(trusted_before) {
        let t = d
            .sdk()
            .await
            .device_manager()
            .trusted_devices()
            .await
            .unwrap();
        assert_eq!(t.len(), n, "{}: {t:?}", d.name);
    }
}

/// Waits until `d` sees `n` trusted devices offline.
async fn wait_offline_count(d: &NsDevice, n: usize, bound: Duration) {
    let sdk = d.sdk().await;
    within(&format!("{} sees {n} offline", d.name), bound, async {
        loop {
            let t = sdk.device_manager().trusted_devices().await.unwrap();
            if t.iter().filter(|t| !t.online).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
