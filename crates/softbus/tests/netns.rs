//! Discovery over real multicast, kept off the real network: every test makes its own network
//! namespaces (`ip netns`), runs this test binary again inside them as a child process (the
//! `child` test below, selected by environment), and deletes them afterwards, even on failure.
//!
//! Needs root and `ip`; the interop test also needs python3 with `zeroconf`. Without them the
//! tests print why and pass.

use oxh_devauth::{AdvertKey, DeviceType};
use oxh_softbus::discovery::{
    Advert, AdvertId, Capabilities, Discovery, DiscoveryConfig, DiscoveryEvent, Epochs, Interfaces,
};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "OXH_SOFTBUS_TEST_CHILD";
/// The discovery target: a device that starts advertising is seen within this.
const FOUND_WITHIN: Duration = Duration::from_secs(1);
/// How long a device must have been up before it counts as established. RFC 6762 §6 lets a
/// responder multicast a record at most once a second; mdns-sd announces at 0 s and about
/// 1.1 s, so until about 2.15 s after its start a device does not answer a newcomer's first
/// query (mdns-sd sends no QU questions) and the newcomer finds it only through the second
/// announcement or its own second query, about 1 s later. A device that has been up longer
/// answers at once; the tests measure that, the usual case.
const ESTABLISHED_AFTER: Duration = Duration::from_millis(2300);

// ---------------------------------------------------------------- parent side: fixtures

use oxh_testkit::{Netns, ns_run, run, skip_reason, wait_link_up};

macro_rules! skip_unless_possible {
    () => {
        if let Some(why) = skip_reason() {
            oxh_testkit::skip(module_path!(), &why);
            return;
        }
    };
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Runs this test binary's `child` test in `ns` with `mode` and extra environment.
    fn child_in(ns: &str, mode: &str, env: &[(&str, &str)]) -> Proc {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(cmd)
    }

    /// Waits for a line starting with `prefix`; returns the rest of it.
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    // libtest may print "test child ... " on the same line first.
                    if let Some(i) = line.find(prefix) {
                        return Ok(line[i + prefix.len()..].trim().to_string());
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "no {prefix:?} within {timeout:?}; output so far: {:#?}",
                        self.seen
                    ));
                }
            }
        }
    }

    /// Closes stdin (the child's signal to stop) and waits a bounded time for it to exit.
    fn finish(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Splits "<id> <number>" as the children print it.
fn split2(s: &str) -> (String, u64) {
    let mut it = s.split_whitespace();
    let a = it.next().unwrap_or_default().to_string();
    let b = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (a, b)
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Two namespaces joined by a bridge (10.77.0.x on their `eth0`), their links up.
fn two_on_a_bridge() -> (Netns, String, String) {
    let mut netns = Netns::new("oxhsb");
    let a = netns.add().expect("netns a");
    let b = netns.add().expect("netns b");
    netns
        .bridge(&[a.clone(), b.clone()], "10.77.0")
        .expect("bridge");
    wait_link_up(&a).expect("a up");
    wait_link_up(&b).expect("b up");
    (netns, a, b)
}

// ---------------------------------------------------------------- tests

/// Two devices in two namespaces joined by a bridge (separate hosts, as far as the network
/// is concerned) each see the other within 1 s of the second one starting.
#[test]
fn devices_on_a_bridge_find_each_other_within_1s() {
    skip_unless_possible!();
    let (_netns, a, b) = two_on_a_bridge();

    peers_find_each_other(&a, &b, "eth0");
}

/// Loopback only, as the project's tests use: two device processes in one namespace whose
/// only interface is `lo`. A namespace's `lo` has the same flags as the host's
/// (LOOPBACK,UP,LOWER_UP, no MULTICAST), and mDNS over it works all the same: the kernel
/// loops multicast back to local sockets.
#[test]
fn loopback_only_devices_find_each_other_within_1s() {
    skip_unless_possible!();
    let mut netns = Netns::new("oxhsb");
    let ns = netns.add().expect("netns");
    let flags = ns_run(&ns, &["ip", "-br", "link", "show", "lo"]).unwrap_or_default();
    eprintln!("lo: {}", flags.trim());
    assert!(
        !flags.contains("MULTICAST"),
        "expected lo without MULTICAST: {flags}"
    );
    peers_find_each_other(&ns, &ns, "lo");
}

/// Starts device A in namespace `a`, lets it get established, starts B in `b`, and checks that
/// each sees the other within [`FOUND_WITHIN`] of B's start, and that A sees B leave.
fn peers_find_each_other(a: &str, b: &str, ifaces: &str) {
    let mut pa = Proc::child_in(
        a,
        "peer",
        &[("OXH_NAME", "Device A"), ("OXH_IFACES", ifaces)],
    );
    let ready_a = pa
        .wait_for("READY ", Duration::from_secs(10))
        .expect("a ready");
    std::thread::sleep(ESTABLISHED_AFTER);
    let mut pb = Proc::child_in(
        b,
        "peer",
        &[("OXH_NAME", "Device B"), ("OXH_IFACES", ifaces)],
    );
    let ready_b = pb
        .wait_for("READY ", Duration::from_secs(10))
        .expect("b ready");

    // Each child prints READY <id> <epoch ms at start> and FOUND <id> <epoch ms>.
    let (id_a, _) = split2(&ready_a);
    let (id_b, b_started) = split2(&ready_b);
    let found_by_b = pb
        .wait_for("FOUND ", Duration::from_secs(5))
        .expect("b finds a");
    let found_by_a = pa
        .wait_for("FOUND ", Duration::from_secs(5))
        .expect("a finds b");
    let (who_b, at_b) = split2(&found_by_b);
    let (who_a, at_a) = split2(&found_by_a);
    assert_eq!((&who_b, &who_a), (&id_a, &id_b));
    let (ms_b, ms_a) = (
        at_b.saturating_sub(b_started),
        at_a.saturating_sub(b_started),
    );
    eprintln!("after B started: B saw A in {ms_b} ms, A saw B in {ms_a} ms");
    let bound = FOUND_WITHIN.as_millis() as u64;
    assert!(ms_b <= bound && ms_a <= bound, "b: {ms_b} ms, a: {ms_a} ms");

    // B goes away: A sees it lost (goodbye packet), well before any TTL expiry.
    pb.finish();
    let lost = pa
        .wait_for("LOST ", Duration::from_secs(3))
        .expect("a sees b leave");
    assert!(lost.starts_with(&id_b), "{lost}");
    pa.finish();
}

/// Two Discovery instances in one process, one namespace, one interface: the case of two
/// simulated devices on one machine.
#[test]
fn two_instances_in_one_namespace_find_each_other_within_1s() {
    skip_unless_possible!();
    let mut netns = Netns::new("oxhsb");
    let a = netns.add().expect("netns");
    let b = netns.add().expect("netns");
    // A namespace of its own for the far end, so that eth0 is a plain multicast-capable link.
    netns.bridge(&[a.clone(), b], "10.77.0").expect("bridge");
    wait_link_up(&a).expect("up");
    let mut p = Proc::child_in(&a, "pair", &[("OXH_IFACES", "eth0")]);
    let r = p
        .wait_for("PAIR ", Duration::from_secs(10))
        .expect("pair result");
    eprintln!("pair: {r}");
    assert!(r.starts_with("found"), "{r}");
}

const ZEROCONF_BROWSE: &str = r#"
import json, sys, time
from zeroconf import Zeroconf, ServiceBrowser, ServiceListener
TYPE = "_oxh._udp.local."
zc = Zeroconf()
names = []
class L(ServiceListener):
    def add_service(self, zc, type_, name): names.append(name)
    def update_service(self, zc, type_, name): pass
    def remove_service(self, zc, type_, name): pass
ServiceBrowser(zc, TYPE, L())
deadline = time.monotonic() + 5
while not names and time.monotonic() < deadline:
    time.sleep(0.05)
out = []
for n in names:
    info = zc.get_service_info(TYPE, n, timeout=3000)
    if info is None:
        out.append({"name": n, "resolved": False}); continue
    props = {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()}
    out.append({"name": n, "resolved": True, "port": info.port, "server": info.server,
                "addresses": info.parsed_addresses(), "props": props})
zc.close()
print("ZEROCONF " + json.dumps(out))
"#;

/// An independent mDNS implementation (python-zeroconf) sees our advert and its TXT record.
#[test]
fn python_zeroconf_sees_our_advert() {
    skip_unless_possible!();
    if let Err(e) = run("python3", &["-c", "import zeroconf"]) {
        eprintln!("SKIPPED: python3 with zeroconf is not available (pip install zeroconf): {e}");
        return;
    }
    let (_netns, a, b) = two_on_a_bridge();

    let mut dev = Proc::child_in(
        &a,
        "peer",
        &[("OXH_NAME", "Zeroconf test.pc"), ("OXH_IFACES", "eth0")],
    );
    let ready = dev
        .wait_for("READY ", Duration::from_secs(10))
        .expect("ready");
    let (id, _) = split2(&ready);

    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &b, "python3", "-c", ZEROCONF_BROWSE]);
    let mut py = Proc::spawn(cmd);
    let json = py
        .wait_for("ZEROCONF ", Duration::from_secs(15))
        .expect("python output");
    eprintln!("python-zeroconf saw: {json}");
    assert!(!json.contains(CHILD_UDID), "raw udid leaked: {json}");
    assert!(json.contains(r#""resolved": true"#), "{json}");
    assert!(json.contains(r#""v": "2""#), "{json}");
    assert!(json.contains(&format!(r#""id": "{id}""#)), "{json}");
    assert!(!json.contains(r#""uh""#), "no stable udid hash: {json}");
    assert!(json.contains(r#""name": "Zeroconf test.pc""#), "{json}");
    assert!(json.contains(r#""type": "0x0C:pc""#), "{json}");
    assert!(
        json.contains(r#""caps": "ddmpCapability,osdCapability""#),
        "{json}"
    );
    assert!(json.contains(r#""port": 47000"#), "{json}");
    assert!(json.contains("10.77.0.1"), "{json}");
    // The instance and host names are the device type plus the start of the rotating id.
    assert!(
        json.contains(&format!("oxharmony pc [{}]._oxh._udp.local.", &id[..8])),
        "{json}"
    );
    assert!(
        json.contains(&format!(r#""server": "oxh-{}.local.""#, &id[..12])),
        "{json}"
    );
    dev.finish();
}

// ---------------------------------------------------------------- child side

/// The raw udid that children use; the interop test checks it never reaches the wire.
const CHILD_UDID: &str = "5be7d34a2ab1c0ffee5be7d34a2ab1c0ffee5be7d34a2ab1c0ffee5be7d34a2a";

/// The advert of the device `udid` (its advert key derived from it) in the current epoch.
fn advert_of(udid: &str, name: &str, ty: DeviceType, caps: Capabilities) -> Advert {
    let key = AdvertKey(Sha256::digest(udid.as_bytes()).into());
    let epoch = Epochs::default().at(std::time::SystemTime::now());
    Advert::new(AdvertId::derive(&key, epoch), Some(name), ty, caps, 47000)
}

fn child_config(name: &str, udid: &str) -> DiscoveryConfig {
    let ifaces = std::env::var("OXH_IFACES").unwrap_or_default();
    let advert = advert_of(
        udid,
        name,
        DeviceType::Pc,
        Capabilities::DDMP | Capabilities::OSD,
    );
    let mut config = DiscoveryConfig::new(advert);
    config.interfaces = match ifaces.as_str() {
        "" | "all" => Interfaces::All,
        "lo" => Interfaces::Loopback,
        names => Interfaces::Named(names.split(',').map(str::to_string).collect()),
    };
    config
}

async fn next_found(
    rx: &mut tokio::sync::broadcast::Receiver<DiscoveryEvent>,
    timeout: Duration,
) -> Option<oxh_softbus::discovery::SeenDevice> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(DiscoveryEvent::Found(d))) => return Some(d),
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Not a test: the process that the tests above start inside a namespace.
#[test]
#[ignore = "run by the namespace tests inside a namespace"]
fn child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match mode.as_str() {
            "peer" => child_peer().await,
            "pair" => child_pair().await,
            other => say(format!("ERROR unknown mode {other}")),
        }
    });
}

/// Advertises; prints READY <id> <epoch ms>, then FOUND <id> <epoch ms> for each device,
/// LOST <id> when one leaves; stops when stdin closes (or after 30 s).
async fn child_peer() {
    let name = std::env::var("OXH_NAME").unwrap_or_else(|_| "peer".into());
    // Each peer needs its own identity: derive one from the name.
    let udid = if name.starts_with("Zeroconf") {
        CHILD_UDID.to_string()
    } else {
        format!("udid-of-{name}")
    };
    let config = child_config(&name, &udid);
    let id = config.advert.id;
    let start = epoch_ms();
    let disc = Discovery::start(config).expect("start discovery");
    let mut rx = disc.subscribe();
    say(format!("READY {id} {start}"));

    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut buf = String::new();
        while std::io::stdin()
            .read_line(&mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
        let _ = stop_tx.send(());
    });
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut stop_rx => break,
            _ = &mut deadline => break,
            ev = rx.recv() => match ev {
                Ok(DiscoveryEvent::Found(d)) => {
                    let id = d.id().map(|u| u.to_hex()).unwrap_or_default();
                    say(format!("FOUND {id} {}", epoch_ms()));
                }
                Ok(DiscoveryEvent::Lost(d)) => {
                    let id = d.id().map(|u| u.to_hex()).unwrap_or_default();
                    say(format!("LOST {id}"));
                }
                Ok(DiscoveryEvent::Updated(_)) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    }
    disc.shutdown();
}

/// Two instances in this process: A starts and gets established, then B starts; both must find the other within 1 s of
/// B's start. Prints `PAIR found <ms>` or `PAIR timeout ...`.
async fn child_pair() {
    let a = Discovery::start(child_config("Pair A", "udid-pair-a")).expect("start a");
    let mut rx_a = a.subscribe();
    tokio::time::sleep(ESTABLISHED_AFTER).await;
    let t0 = Instant::now();
    let b = Discovery::start(child_config("Pair B", "udid-pair-b")).expect("start b");
    let mut rx_b = b.subscribe();
    let (fa, fb) = tokio::join!(
        next_found(&mut rx_a, FOUND_WITHIN),
        next_found(&mut rx_b, FOUND_WITHIN)
    );
    let ms = t0.elapsed().as_millis();
    let (a_id, b_id) = (a.advert().id, b.advert().id);
    match (fa, fb) {
        (Some(x), Some(y)) if x.id() == Some(b_id) && y.id() == Some(a_id) => {}
        (x, y) => {
            say(format!(
                "PAIR timeout after {ms} ms: a saw {:?}, b saw {:?}",
                x.map(|d| d.advert),
                y.map(|d| d.advert)
            ));
            return;
        }
    }
    if a.snapshot().iter().any(|d| d.id() == Some(a_id)) {
        say("PAIR error: a lists itself".into());
        return;
    }

    // A renames itself: B sees one Updated and no Lost.
    let mut renamed = a.advert();
    renamed.name = Some("Pair A renamed".into());
    a.update_advert(renamed).expect("update advert");
    let t1 = Instant::now();
    let mut updated_ms = None;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx_b.recv()).await {
        match ev {
            DiscoveryEvent::Updated(d)
                if d.advert
                    .as_ref()
                    .is_some_and(|v| v.name.as_deref() == Some("Pair A renamed")) =>
            {
                updated_ms.get_or_insert(t1.elapsed().as_millis());
            }
            DiscoveryEvent::Lost(d) => {
                say(format!("PAIR error: b lost {:?} on rename", d.advert));
                return;
            }
            _ => {}
        }
    }
    let Some(updated_ms) = updated_ms.filter(|ms| *ms <= FOUND_WITHIN.as_millis()) else {
        say(format!(
            "PAIR error: rename not seen within 1 s: {:?}",
            b.snapshot()
        ));
        return;
    };
    if b.snapshot().len() != 1 {
        say(format!(
            "PAIR error: b's table after rename: {:?}",
            b.snapshot()
        ));
        return;
    }

    // Static peers: pending without advert, then Found once the transport gives the advert.
    let addr: std::net::SocketAddr = "192.0.2.9:47000".parse().expect("addr");
    let stranger = advert_of(
        "udid-static",
        "Static",
        DeviceType::Tv,
        Capabilities::empty(),
    );
    let ok = a.add_static(addr).expect("add static")
        && a.snapshot()
            .iter()
            .any(|d| d.static_addr == Some(addr) && d.advert.is_none())
        && a.update_static(addr, stranger.clone()).is_ok()
        && std::iter::from_fn(|| rx_a.try_recv().ok())
            .take(1000)
            .any(|ev| matches!(ev, DiscoveryEvent::Found(d) if d.id() == Some(stranger.id)))
        && a.update_static(addr, a.advert()).is_err();
    if !ok {
        say(format!("PAIR error: static peers: {:?}", a.snapshot()));
        return;
    }
    say(format!(
        "PAIR found {ms} ms, rename seen in {updated_ms} ms"
    ));
    a.shutdown();
    b.shutdown();
}
