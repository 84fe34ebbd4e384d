//! The soft bus with real daemons on loopback: PIN binding, trusted devices, online/offline,
//! sockets, unbinding, and `oxh sim`.

use crate::common::*;
use oxh_sdk::bus::{DataType, SocketEvent};
use oxh_softbus::api::StateEvent;
use std::time::{Duration, Instant};

/// Binds `a` to `b` through the real PIN flow.
async fn bind(a: &TestDevice, b: &TestDevice) {
    let pin = b.sdk().await.device_manager().issue_pin().await.unwrap();
    assert_eq!(pin.pin.len(), 6);
    let t = a
        .sdk()
        .await
        .device_manager()
        .bind(&b.ready_field("bus"), &pin.pin)
        .await
        .unwrap();
    assert_eq!(t.udid.len(), 64);
}

async fn wait_online(d: &TestDevice, n: usize) {
    let sdk = d.sdk().await;
    within("devices online", Duration::from_secs(10), async {
        loop {
            let t = sdk.device_manager().trusted_devices().await.unwrap();
            if t.iter().filter(|t| t.online).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn pin_binding_makes_both_sides_trusted_and_online() {
    let a = TestDevice::start();
    let b = TestDevice::start();
    // Before binding: nobody is trusted.
    assert!(a.oxh_ok(&["device", "list", "--json"]).trim() == "[]");
    let pin_out = b.oxh_ok(&["device", "pin"]);
    let pin = pin_out.split_whitespace().nth(1).unwrap().to_string();
    let out = a.oxh_ok(&["device", "bind", &b.ready_field("bus"), "--pin", &pin]);
    assert!(out.contains("bound with"), "{out}");
    wait_online(&a, 1).await;
    wait_online(&b, 1).await;
    let la: serde_json::Value =
        serde_json::from_str(&a.oxh_ok(&["device", "list", "--json"])).unwrap();
    assert_eq!(la[0]["network_id"], b.ready_field("network_id"));
    let info = a.oxh_ok(&["device", "info"]);
    assert!(
        info.contains(&a.ready_field("network_id")),
        "info shows the networkId: {info}"
    );
    // The PIN was one-time.
    let e = a.oxh_err(&["device", "bind", &b.ready_field("bus"), "--pin", &pin]);
    assert!(e.contains("11600101"), "{e}");
}

#[tokio::test]
async fn wrong_pin_fails_clearly_and_three_failures_lock_binding_out() {
    let a = TestDevice::start();
    let b = TestDevice::start();
    let pin = b
        .sdk()
        .await
        .device_manager()
        .issue_pin()
        .await
        .unwrap()
        .pin;
    let wrong = if pin == "000000" { "111111" } else { "000000" };
    let bus = b.ready_field("bus");
    for _ in 0..3 {
        let e = a.oxh_err(&["device", "bind", &bus, "--pin", wrong]);
        assert!(e.contains("wrong PIN") && e.contains("11600101"), "{e}");
    }
    // Locked out now: even the right PIN is refused, with the time left.
    let e = a.oxh_err(&["device", "bind", &bus, "--pin", &pin]);
    assert!(
        e.to_lowercase().contains("locked") || e.contains("refus"),
        "{e}"
    );
    assert!(
        b.oxh_ok(&["device", "list", "--json"]).trim() == "[]",
        "nothing trusted"
    );
    // A malformed PIN is an invalid argument.
    let e = a.oxh_err(&["device", "bind", &bus, "--pin", "12ab"]);
    assert!(e.contains("401"), "{e}");
}

#[tokio::test]
async fn messages_and_bytes_between_devices_with_limits() {
    let a = TestDevice::start();
    let b = TestDevice::start();
    bind(&a, &b).await;
    wait_online(&a, 1).await;
    let sb = b.sdk().await;
    let mut listener = sb.bus().listen("chat").await.unwrap();
    let sa = a.sdk().await;
    let (sock, mut replies) = sa
        .bus()
        .bind(&b.ready_field("network_id"), "chat", "me", DataType::Bytes)
        .await
        .unwrap();
    let SocketEvent::Bind {
        socket: peer,
        peer_network_id,
        ..
    } = listener.next().await.unwrap()
    else {
        panic!("expected bind")
    };
    assert_eq!(peer_network_id, a.ready_field("network_id"));
    sa.bus().send_message(sock, b"hello").await.unwrap();
    assert_eq!(
        listener.next().await.unwrap(),
        SocketEvent::Message {
            socket: peer,
            data: b"hello".to_vec()
        }
    );
    // 4 MiB of bytes crosses the 1 MiB IPC limit in parts, both ways.
    let big: Vec<u8> = (0..oxh_sdk::bus::MAX_BYTES)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    sa.bus().send_bytes(sock, &big).await.unwrap();
    assert_eq!(
        listener.next().await.unwrap(),
        SocketEvent::Bytes {
            socket: peer,
            data: big.clone()
        }
    );
    sb.bus().send_bytes(peer, &big[..1_500_000]).await.unwrap();
    assert_eq!(
        replies.next().await.unwrap(),
        SocketEvent::Bytes {
            socket: sock,
            data: big[..1_500_000].to_vec()
        }
    );
    // Over the limits: clear errors, and the socket still works.
    let e = sa.bus().send_message(sock, &[0u8; 4097]).await.unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    let e = sa
        .bus()
        .send_bytes(sock, &vec![0u8; oxh_sdk::bus::MAX_BYTES + 1])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    sa.bus().send_message(sock, b"still").await.unwrap();
    assert_eq!(
        listener.next().await.unwrap(),
        SocketEvent::Message {
            socket: peer,
            data: b"still".to_vec()
        }
    );
    // Another client cannot take the session name.
    let other = b.sdk().await;
    let e = other.bus().listen("chat").await.err().expect("name taken");
    assert!(e.to_string().contains("already taken"), "{e}");
    // The CLI, end to end.
    let out = a.oxh_ok(&[
        "bus",
        "send",
        &b.ready_field("network_id"),
        "chat",
        "--message",
        "from cli",
    ]);
    assert!(out.contains("sent 8 bytes"), "{out}");
    let got = within("the CLI message", Duration::from_secs(10), async {
        loop {
            if let SocketEvent::Message { data, .. } = listener.next().await.unwrap() {
                return data;
            }
        }
    })
    .await;
    assert_eq!(got, b"from cli");
}

#[tokio::test]
async fn a_vanished_device_goes_offline_within_3s_and_comes_back_without_rebinding() {
    let a = TestDevice::start();
    // b knows where a listens (a static peer), so it can dial a back after a restart.
    let mut b = TestDevice::start_with(&["--peer", &a.ready_field("bus")]);
    bind(&a, &b).await;
    wait_online(&a, 1).await;
    let mut watch = a
        .sdk()
        .await
        .device_manager()
        .on_state_change()
        .await
        .unwrap();
    let t = Instant::now();
    b.kill9();
    let ev = within("OFFLINE", Duration::from_secs(10), watch.next())
        .await
        .unwrap();
    assert!(matches!(ev, StateEvent::Offline(_)), "{ev:?}");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "OFFLINE after {took:?}");
    // b comes back (new networkId, new port): it dials a from its static peer, no re-binding.
    b.restart();
    let ev = within("ONLINE again", Duration::from_secs(10), watch.next())
        .await
        .unwrap();
    let StateEvent::Online(v) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(
        v.network_id.as_deref(),
        Some(b.ready_field("network_id").as_str())
    );
}

#[tokio::test]
async fn unbind_removes_trust_on_both_sides() {
    let a = TestDevice::start();
    let b = TestDevice::start();
    bind(&a, &b).await;
    wait_online(&b, 1).await;
    let udid_b: serde_json::Value =
        serde_json::from_str(&b.oxh_ok(&["device", "info", "--json"])).unwrap();
    a.oxh_ok(&["device", "unbind", udid_b["udid"].as_str().unwrap()]);
    assert_eq!(a.oxh_ok(&["device", "list", "--json"]).trim(), "[]");
    let sb = b.sdk().await;
    within("b to drop a's trust", Duration::from_secs(10), async {
        loop {
            if sb
                .device_manager()
                .trusted_devices()
                .await
                .unwrap()
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Untrusted now: no session can be opened.
    let e = a
        .sdk()
        .await
        .bus()
        .bind(
            &b.ready_field("network_id"),
            "chat",
            "me",
            DataType::Message,
        )
        .await
        .err()
        .expect("not online any more");
    assert!(e.to_string().contains("not online"), "{e}");
}

#[test]
fn sim_starts_a_bound_super_device() {
    let base = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(oxh_bin())
        .args(["sim", "--devices", "3", "--exit-when-ready", "--base-dir"])
        .arg(base.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 devices bound and online"), "{text}");
    for d in ["dev1", "dev2", "dev3"] {
        assert!(
            text.contains(&base.path().join(d).display().to_string()),
            "{text}"
        );
        assert!(base.path().join(d).join("device/trust.db").exists());
    }
    // The devices were stopped on exit.
    let sock = base.path().join("dev1/run/oxhd.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        assert!(
            Instant::now() < deadline,
            "dev1 still running after sim exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
