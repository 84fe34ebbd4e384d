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
            v.push(d.trusted().await.len());
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
        let t = d.trusted().await;
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
        let t = d.trusted().await;
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

// ---------------------------------------------------------------- adverts

/// The advert epoch the advert test's daemons use (debug builds' `OXH_ADVERT_EPOCH_SECS`).
const TEST_EPOCH_SECS: u64 = 3;

/// Collects every `_oxh._udp` instance python-zeroconf resolves during argv[1] seconds.
const ZEROCONF_WATCH: &str = r#"
import json, sys, time
from zeroconf import Zeroconf, ServiceBrowser, ServiceListener
TYPE = "_oxh._udp.local."
zc = Zeroconf()
todo = []
class L(ServiceListener):
    def add_service(self, zc, type_, name): todo.append(name)
    def update_service(self, zc, type_, name): todo.append(name)
    def remove_service(self, zc, type_, name): pass
ServiceBrowser(zc, TYPE, L())
seen = {}
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    # Bounded by the deadline too: resolving a name can itself bring an update of it.
    while todo and time.monotonic() < deadline:
        n = todo.pop(0)
        if n in seen:
            continue
        info = zc.get_service_info(TYPE, n, timeout=1500)
        if info is None:
            continue
        props = {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()}
        seen[n] = {"instance": n, "server": info.server, "props": props}
    time.sleep(0.05)
zc.close()
print("ZEROCONF " + json.dumps(list(seen.values())))
"#;

/// Runs [`ZEROCONF_WATCH`] in `ns` for `secs` on a thread; `None` (with the reason printed)
/// when python3 with zeroconf is not there.
fn zeroconf_watch(ns: &str, secs: u64) -> Option<std::thread::JoinHandle<Vec<serde_json::Value>>> {
    if let Err(e) = oxh_testkit::run("python3", &["-c", "import zeroconf"]) {
        eprintln!("SKIPPED the python-zeroconf part: no python3 with zeroconf: {e}");
        return None;
    }
    let ns = ns.to_string();
    Some(std::thread::spawn(move || {
        // `timeout` bounds the watcher whatever python does (it ends by itself after `secs`).
        let bound = (secs + 30).to_string();
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "timeout", "--signal=KILL", &bound])
            .args(["python3", "-c", ZEROCONF_WATCH])
            .arg(secs.to_string())
            .output()
            .expect("run python3");
        let out = String::from_utf8_lossy(&o.stdout);
        let json = out
            .lines()
            .find_map(|l| l.strip_prefix("ZEROCONF "))
            .unwrap_or_else(|| {
                panic!(
                    "python-zeroconf printed nothing: {out}\n{}",
                    String::from_utf8_lossy(&o.stderr)
                )
            });
        serde_json::from_str::<serde_json::Value>(json)
            .expect("JSON")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }))
}

/// Item 5 of the hardening issue, "adverts are trackable", on real daemons: a device started
/// without a name advertises no name and nothing of the host name; its id, instance name and
/// host name change every epoch; a bound peer recognises it in each epoch (and finds it again
/// by its advert after it restarts on a new port), while a stranger on the same link sees
/// the very same ids and recognises none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adverts_rotate_carry_no_host_name_and_only_bound_peers_recognise_them() {
    let Some((_netns, hosts)) = bridged_hosts(
        "adverts_rotate_carry_no_host_name_and_only_bound_peers_recognise_them",
        "oxhad",
        3,
        "10.79.0",
    ) else {
        return;
    };
    let epoch = TEST_EPOCH_SECS.to_string();
    let env = [("OXH_ADVERT_EPOCH_SECS", epoch.as_str())];
    let args = ["--discovery", "eth0", "--heartbeat-ms", "500"];
    let pid = std::process::id();
    // Two and a half epochs of the wire, from the stranger's namespace.
    let watch = zeroconf_watch(&hosts[2], TEST_EPOCH_SECS * 5 / 2 + 2);
    // A: no name set. B: binds with A. C: a stranger.
    let mut a = NsDevice::start_with(&hosts[0], &format!("ad{pid}-a"), false, &args, &env)
        .expect("start A");
    let b =
        NsDevice::start_with(&hosts[1], &format!("ad{pid}-b"), true, &args, &env).expect("start B");
    let c =
        NsDevice::start_with(&hosts[2], &format!("ad{pid}-c"), true, &args, &env).expect("start C");
    let unnamed = oxh_devauth::DEFAULT_NAME;

    // B finds A (by the default name: A sends none) and binds by HOST:PORT.
    let (sb, sc) = (b.sdk().await, c.sdk().await);
    let addr_a = within("B discovers A", DISCOVER_WITHIN, async {
        loop {
            let seen = sb.device_manager().discover().await.unwrap();
            // Listed before its first dialable address is known: wait for one.
            if let Some(a) = seen
                .into_iter()
                .find(|s| s.name == unnamed)
                .and_then(|s| s.addresses.into_iter().next())
            {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    bind(&b, &a, &addr_a, false).await;
    wait_all_online(&b, 1, Duration::from_secs(10)).await;

    // Watch both views of A for two epoch changes: B marks A's ids trusted, C never does.
    let (mut ids_b, mut ids_c) = (Vec::<String>::new(), Vec::<String>::new());
    within(
        "B and C to see A under three ids",
        Duration::from_secs(TEST_EPOCH_SECS * 4 + 5),
        async {
            while ids_b.len() < 3 || ids_c.len() < 3 {
                for s in sb.device_manager().discover().await.unwrap() {
                    if s.trusted && !ids_b.contains(&s.id) {
                        ids_b.push(s.id);
                    }
                }
                for s in sc.device_manager().discover().await.unwrap() {
                    assert!(!s.trusted, "C trusts nobody: {s:?}");
                    if s.name == unnamed && !ids_c.contains(&s.id) {
                        ids_c.push(s.id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    eprintln!("A's ids as B resolved them: {ids_b:?}; as C saw them: {ids_c:?}");
    assert!(
        ids_b.iter().filter(|i| ids_c.contains(i)).count() >= 2,
        "C saw the ids that B recognised, and could not tell they were A's"
    );
    assert!(ids_b.iter().all(|i| i.len() == 32));
    let udid_a = a.udid();
    for id in ids_b.iter().chain(&ids_c) {
        assert!(!udid_a.contains(id.as_str()), "{id} is part of the udid");
    }

    // The wire, read by another mDNS implementation.
    if let Some(w) = watch {
        let seen = w.join().expect("zeroconf thread");
        eprintln!("python-zeroconf saw: {seen:?}");
        let host = oxh_kal::hostname();
        let of_a: Vec<&serde_json::Value> = seen
            .iter()
            .filter(|s| {
                s["props"]["id"]
                    .as_str()
                    .is_some_and(|id| ids_c.iter().any(|i| i == id))
            })
            .collect();
        assert!(of_a.len() >= 2, "A under two epochs' instances: {seen:?}");
        let mut instances = std::collections::HashSet::new();
        let mut servers = std::collections::HashSet::new();
        for s in &of_a {
            let props = s["props"].as_object().expect("props");
            assert!(!props.contains_key("name"), "no name was set: {s}");
            assert!(!props.contains_key("uh"), "no stable udid hash: {s}");
            assert_eq!(props["v"], "2", "{s}");
            let instance = s["instance"].as_str().unwrap_or_default();
            let server = s["server"].as_str().unwrap_or_default();
            let id = props["id"].as_str().unwrap_or_default();
            assert!(
                instance.contains(&id[..8]) && server.contains(&id[..12]),
                "{s}"
            );
            let texts = props
                .values()
                .filter_map(|v| v.as_str())
                .chain([instance, server]);
            for t in texts {
                let leaks = if host.len() >= 3 {
                    t.contains(&host)
                } else {
                    t == host
                };
                assert!(!leaks, "host name {host:?} in {t:?}");
                assert!(!t.contains(&udid_a[..16]), "udid in {t:?}");
            }
            instances.insert(instance.to_string());
            servers.insert(server.to_string());
        }
        assert_eq!(instances.len(), of_a.len(), "instance names rotate");
        assert_eq!(servers.len(), of_a.len(), "host names rotate");
        assert!(
            seen.iter()
                .any(|s| s["props"]["name"].as_str() == Some(b.name.as_str())),
            "a device with a name set advertises it: {seen:?}"
        );
    }

    // A restarts on a new port: neither remembers an address of the other that works, so they
    // meet again only through each other's adverts, resolved with the keys bound.
    let mut wb = sb.device_manager().on_state_change().await.unwrap();
    a.restart().expect("restart A");
    let back = wait_event(&mut wb, &udid_a, online, BACK_WITHIN).await;
    assert!(
        back.is_some(),
        "B saw no ONLINE for A within {BACK_WITHIN:?}"
    );
}
