//! Resource limits of the IPC socket, with a real daemon and a real stranger (`nobody`): what
//! one local user can make oxhd hold, and that the memory comes back when it leaves.

use crate::common::*;
use oxh_ipc::{Client, code, frame};
use oxh_param::api::{self as param_api, GetArgs, WaitArgs};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that turns [`limits_child`] on; its value is the socket path.
const CHILD_ENV: &str = "OXH_LIMITS_CHILD";
/// What the child prints before its JSON result.
const MARKER: &str = "LIMITS_RESULT ";
/// Connections the stranger tries to open: about three times its limit.
const TRIES: usize = 200;
/// Pipelined `param wait`s the stranger writes on each of its wait connections.
const WAITS_PER_CONN: usize = 1024;
/// oxhd's resident memory while the stranger holds all it may: the stated budget is 128 MiB of
/// request bytes plus the connections' and calls' own costs, far below this; without the
/// limits this load took oxhd past 1 GB.
const PEAK_BOUND: u64 = 200 << 20;
/// How far above its resident memory before the load oxhd may stay once the stranger closed
/// everything (freed memory is given back to the kernel after closes; what stays is code
/// paged in by the load). With glibc keeping 64 MiB of free heap, as before, 33 MiB stayed.
const AFTER_CLOSE_SLACK: u64 = 12 << 20;
/// How long the memory may take to come back.
const SETTLE: Duration = Duration::from_secs(30);

/// Entry point of the stranger (run as `nobody` through runuser): does nothing unless
/// [`CHILD_ENV`] is set.
#[tokio::test]
async fn limits_child() {
    let Ok(socket) = std::env::var(CHILD_ENV) else {
        return;
    };
    let socket = Path::new(&socket);
    let probe = oxh_ipc::encode(&GetArgs {
        key: "const.product.name".into(),
    });
    let mut accepted = Vec::new();
    let mut refused = 0usize;
    let mut refused_msg = String::new();
    // One at a time, so each refused connection is told why before the next is tried.
    for _ in 0..TRIES {
        let c = Client::connect(socket).await.expect("connect");
        match c.call_raw(param_api::SA_ID, param_api::GET, &probe).await {
            Ok(_) => accepted.push(c),
            Err(e) => {
                assert_eq!(e.code(), Some(code::TOO_BUSY), "{e}");
                refused += 1;
                refused_msg = e.to_string();
            }
        }
    }
    // Half the connections stall in the middle of a 1 MiB request; the other half pipeline
    // waits for a parameter nobody sets.
    let body = frame::MAX_TRANSACTION;
    let mut partial = Vec::with_capacity(frame::HEADER_LEN + body - 1);
    partial.extend_from_slice(&frame::header(frame::Kind::Request, 1 << 60, body));
    partial.extend_from_slice(&param_api::SA_ID.to_le_bytes());
    partial.extend_from_slice(&param_api::GET.to_le_bytes());
    partial.resize(frame::HEADER_LEN + body - 1, 0);
    let wait = oxh_ipc::encode(&WaitArgs {
        key: "debug.limits.never".into(),
        value: None,
        timeout_ms: 120_000,
    });
    let mut waits = Vec::new();
    for (i, c) in accepted.iter().enumerate() {
        if i % 2 == 0 {
            c.write_raw(&partial).await.expect("partial frame");
        } else {
            let mut replies = tokio::task::JoinSet::new();
            for _ in 0..WAITS_PER_CONN {
                let r = c
                    .send_parts(param_api::SA_ID, param_api::WAIT, &[&wait])
                    .await
                    .expect("pipelined wait");
                replies.spawn(r.reply());
            }
            waits.push(replies);
        }
    }
    // A connection holds at most its wait limit: every other wait is answered at once, with
    // the reason (which ones are held depends on the other connections' timing).
    let held = oxh_ipc::server::MAX_PENDING_WAITS as usize;
    let mut busy_waits = 0usize;
    let mut wait_msg = String::new();
    for replies in waits.iter_mut() {
        for _ in 0..WAITS_PER_CONN - held {
            let e = replies
                .join_next()
                .await
                .expect("a reply")
                .expect("reply task")
                .expect_err("a wait past the limit fails");
            assert_eq!(e.code(), Some(code::TOO_BUSY), "{e}");
            busy_waits += 1;
            wait_msg = e.to_string();
        }
    }
    let result = serde_json::json!({
        "accepted": accepted.len(),
        "refused": refused,
        "refused_msg": refused_msg,
        "busy_waits": busy_waits,
        "wait_msg": wait_msg,
        "uid": oxh_kal::current_uid(),
    });
    println!("{MARKER}{result}");
    std::io::stdout().flush().ok();
    // Hold everything until the parent has looked, then go (closing it all at once).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(waits);
    drop(accepted);
}

fn rss(pid: u32) -> u64 {
    oxh_kal::resident_memory(pid as i32).expect("oxhd's VmRSS")
}

/// A stranger opens three times its connection limit: the extra ones are refused with a
/// message naming the count, the uid and the limit, while root's `oxh param get` still works;
/// its stalled 1 MiB requests and 1,024 pipelined waits per connection keep oxhd under
/// [`PEAK_BOUND`], and when it leaves oxhd's memory comes back down.
#[test]
fn a_stranger_is_bounded_and_its_memory_comes_back() {
    if !can_run_as_nobody("a_stranger_is_bounded_and_its_memory_comes_back") {
        return;
    }
    let dev = TestDevice::start();
    dev.let_others_in();
    // Let the daemon finish starting its services before the baseline is taken.
    dev.oxh_ok(&["param", "get", "const.product.name"]);
    let before = rss(dev.pid());

    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new("runuser")
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("{CHILD_ENV}={}", dev.socket().display()))
        .arg(&exe)
        .args([
            "--exact",
            "limits::limits_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the stranger");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let result: serde_json::Value = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the stranger exited without a result: {:?}", child.wait()))
            .expect("read the stranger's output");
        if let Some(i) = line.find(MARKER) {
            break serde_json::from_str(&line[i + MARKER.len()..]).expect("JSON result");
        }
    };
    let limit = oxh_ipc::server::MAX_CONNECTIONS_PER_UID;
    let uid = result["uid"].as_u64().expect("uid");
    assert_eq!(result["accepted"].as_u64(), Some(limit), "{result}");
    assert_eq!(
        result["refused"].as_u64(),
        Some(TRIES as u64 - limit),
        "{result}"
    );
    let msg = result["refused_msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "too busy: {limit} connections for uid {uid} (limit {limit})"
        )),
        "{msg}"
    );
    assert!(
        result["busy_waits"].as_u64().unwrap_or(0) > 0,
        "waits past the limit are refused: {result}"
    );
    let wait_msg = result["wait_msg"].as_str().unwrap_or_default();
    assert!(wait_msg.contains("too busy"), "{wait_msg}");

    // While the stranger holds all it may, root is served.
    assert_eq!(
        dev.oxh_ok(&["param", "get", "const.product.name"]).trim(),
        "test-device"
    );
    let peak = rss(dev.pid());
    eprintln!(
        "oxhd RSS: {} MiB before, {} MiB with the stranger holding its limits",
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < PEAK_BOUND,
        "oxhd holds {} MiB, over the {} MiB bound",
        peak >> 20,
        PEAK_BOUND >> 20
    );

    // The stranger leaves; the memory comes back.
    drop(child.stdin.take());
    let status = wait_exit(&mut child, SETTLE, "the stranger to exit");
    assert!(status.success(), "the stranger failed: {status}");
    let t0 = Instant::now();
    let bound = before + AFTER_CLOSE_SLACK;
    let after = loop {
        let now = rss(dev.pid());
        if now < bound {
            break now;
        }
        assert!(
            t0.elapsed() < SETTLE,
            "oxhd still holds {} MiB {SETTLE:?} after the stranger left (bound {} MiB)",
            now >> 20,
            bound >> 20
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("oxhd RSS: {} MiB after the stranger left", after >> 20);
    assert_eq!(
        dev.oxh_ok(&["param", "get", "const.product.name"]).trim(),
        "test-device"
    );
}
