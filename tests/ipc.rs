//! Local IPC: caller identity from the kernel, concurrency, limits, malformed input, deaths.

use crate::common::*;
use oxh_ipc::frame;
use std::io::{Read, Write};
use std::time::Duration;

#[tokio::test]
async fn caller_identity_comes_from_the_kernel() {
    let dev = TestDevice::start();
    let sdk = dev.sdk().await;
    let me = sdk.samgr().whoami().await.unwrap();
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(me.uid, uid, "uid seen by the SA is the test process's");
    assert_eq!(me.pid as u32, std::process::id());
    if uid == 0 {
        assert_eq!(me.token_type, oxh_sdk::TokenType::Native);
        assert_eq!((me.token_id >> 27) & 3, 1, "native token layout");
    }
}

#[tokio::test]
async fn many_calls_in_flight_on_one_connection() {
    let dev = TestDevice::start();
    let sdk = dev.sdk().await;
    let mut calls = Vec::new();
    for i in 0..200u32 {
        let s = sdk.clone();
        calls.push(tokio::spawn(async move {
            let payload = i.to_le_bytes().repeat(16);
            let back = s.samgr().echo(&payload).await.unwrap();
            assert_eq!(back, payload, "reply {i} matched to its request");
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
}

#[tokio::test]
async fn oversize_transaction_is_refused_and_others_carry_on() {
    let dev = TestDevice::start();
    let a = dev.sdk().await;
    let b = dev.sdk().await;
    let big = vec![7u8; oxh_ipc::MAX_TRANSACTION + 1];
    // The SDK refuses before sending.
    let e = a.samgr().echo(&big).await.unwrap_err();
    assert!(matches!(e, oxh_sdk::Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("1 MiB"), "{e}");
    // A client that sends it anyway gets the daemon's error for that call...
    let e = a
        .client()
        .send_raw_request(0, oxh_samgr::samgr_method::ECHO, &big)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(oxh_ipc::code::TRANSACTION_TOO_LARGE), "{e}");
    // ...and its connection, and everyone else's, keep working.
    assert_eq!(a.samgr().echo(b"after").await.unwrap(), b"after");
    assert_eq!(b.samgr().echo(b"other").await.unwrap(), b"other");
    // Exactly the limit is accepted.
    let max = vec![1u8; oxh_ipc::MAX_TRANSACTION - 8];
    assert_eq!(a.samgr().echo(&max).await.unwrap().len(), max.len());
}

#[tokio::test]
async fn garbage_frame_closes_only_that_connection() {
    let dev = TestDevice::start();
    let other = dev.sdk().await;
    let mut raw = std::os::unix::net::UnixStream::connect(dev.socket()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    raw.read_to_end(&mut got).unwrap();
    let mut dec = frame::FrameDecoder::new();
    dec.extend(&got);
    let Some(frame::Decoded::Frame(f)) = dec.decode_next().unwrap() else {
        panic!("expected an error frame, got {got:?}")
    };
    assert_eq!(f.kind, frame::Kind::Fatal);
    let err: oxh_ipc::RemoteError = oxh_ipc::decode(&f.body).unwrap();
    assert_eq!(err.code, oxh_ipc::code::MALFORMED_FRAME);
    assert!(err.message.contains("malformed frame"), "{err}");
    // The daemon and the other client carry on.
    assert_eq!(
        other.samgr().echo(b"still here").await.unwrap(),
        b"still here"
    );
    assert_eq!(dev.sdk().await.samgr().echo(b"new").await.unwrap(), b"new");
}

#[tokio::test]
async fn a_crashed_client_produces_a_death_notice() {
    let dev = TestDevice::start();
    let watcher = dev.sdk().await;
    let mut deaths = watcher.samgr().watch_deaths().await.unwrap();
    // A second client: the CLI waiting on a parameter that never comes.
    let mut child = std::process::Command::new(oxh_bin())
        .arg("--data-dir")
        .arg(dev.data_dir())
        .args(["param", "wait", "never.set.key", "", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Wait until the daemon sees it connected (it shows in samgr's dump), then crash it.
    within(
        "the second client to connect",
        Duration::from_secs(10),
        async {
            loop {
                let d = watcher.samgr().dump(0, vec![]).await.unwrap();
                if d.contains(&format!("pid {pid} ")) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let died = within("the death notice", Duration::from_secs(10), async {
        loop {
            let d = deaths.next().await.expect("watch stream open");
            if d.pid == pid {
                return d;
            }
        }
    })
    .await;
    assert_eq!(died.pid, pid);
}

#[tokio::test]
async fn connecting_without_a_daemon_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = match oxh_sdk::Device::connect(dir.path()).await {
        Err(e) => e,
        Ok(_) => panic!("connected to nothing"),
    };
    assert!(e.to_string().contains("oxh up"), "{e}");
}

/// Another local user reaches the socket but gets a token without permissions, even through
/// the shell tool: identity is the kernel's, not what the caller runs or says.
#[test]
fn another_user_gets_no_permissions() {
    if !oxh_testkit::require_nobody("another_user_gets_no_permissions") {
        return;
    }
    let dev = TestDevice::start();
    // Let other users traverse to the socket (the data dir itself is 0711).
    dev.let_others_in();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", oxh_bin(), "--data-dir"])
            .arg(dev.data_dir())
            .args(args)
            .output()
            .unwrap()
    };
    let o = as_nobody(&["param", "get", "const.product.name"]);
    assert!(
        o.status.success(),
        "reading is open: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = as_nobody(&["param", "set", "debug.nobody", "1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("14700103"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = as_nobody(&["hilog", "-x"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("201") && e.contains("ohos.permission.DUMP"),
        "{e}"
    );
    dev.oxh_err(&["param", "get", "debug.nobody"]);
}
