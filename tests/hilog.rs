//! hilog: format, filters, privacy, buffer control, quota, persistence, follow.

use crate::common::*;
use oxh_sdk::hilog::LogArg;
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// OpenHarmony's line: `MM-DD HH:MM:SS.mmm  PID  TID L TDDDDD/tag: msg`.
fn is_ohos_line(l: &str) -> bool {
    let re = regex::Regex::new(
        r"^\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} +\d+ +\d+ [DIWEF] [AC][0-9A-F]{5}/[^:]+: ",
    )
    .unwrap();
    re.is_match(l)
}

#[test]
fn daemon_logs_in_openharmony_format_filtered_by_tag() {
    let dev = TestDevice::start();
    let out = dev.oxh_ok(&["hilog", "-x", "-T", "samgr"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty(), "samgr logged its SA starts");
    for l in &lines {
        assert!(is_ohos_line(l), "format: {l:?}");
        assert!(
            l.contains(" C") && l.contains("/samgr: "),
            "only samgr lines: {l}"
        );
    }
    assert!(out.contains("system ability started"), "{out}");
    let pid = dev.pid().to_string();
    assert!(
        lines[0].split_whitespace().nth(2) == Some(pid.as_str()),
        "pid column: {}",
        lines[0]
    );
}

#[tokio::test]
async fn app_lines_mask_private_args_until_privacy_is_off() {
    let dev = TestDevice::start();
    let sdk = dev.sdk().await;
    let h = sdk.hilog();
    h.info(
        0x3200,
        "privtest",
        "user %{public}s has token %s",
        &[LogArg::from("alice"), LogArg::from("s3cret")],
    )
    .await
    .unwrap();
    let out = dev.oxh_ok(&["hilog", "-x", "-T", "privtest"]);
    assert!(out.contains("user alice has token <private>"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    assert!(
        out.contains(" I A03200/privtest: "),
        "app type and domain: {out}"
    );
    dev.oxh_ok(&["hilog", "-p", "off"]);
    h.info(0x3200, "privtest", "second %s", &[LogArg::from("visible")])
        .await
        .unwrap();
    let out = dev.oxh_ok(&["hilog", "-x", "-T", "privtest"]);
    assert!(out.contains("second visible"), "{out}");
    // Filters: level, regex, pid, head/tail, type.
    h.error(0x3200, "privtest", "boom %{public}d", &[LogArg::from(7)])
        .await
        .unwrap();
    let out = dev.oxh_ok(&["hilog", "-x", "-T", "privtest", "-L", "E"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("boom 7"));
    let out = dev.oxh_ok(&["hilog", "-x", "-e", "^second", "-t", "app"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let me = std::process::id().to_string();
    let out = dev.oxh_ok(&["hilog", "-x", "-P", &me, "-z", "1"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("boom 7"), "tail is the last line: {out}");
    let out = dev.oxh_ok(&["hilog", "-x", "-P", &me, "-a", "1"]);
    assert!(out.contains("<private>"), "head is the first line: {out}");
}

#[test]
fn buffer_size_show_set_and_clear() {
    let dev = TestDevice::start();
    let out = dev.oxh_ok(&["hilog", "-g"]);
    assert!(
        out.contains("256.0K") || out.contains("256K"),
        "default 256 KiB: {out}"
    );
    dev.oxh_ok(&["hilog", "-G", "16M"]);
    let out = dev.oxh_ok(&["hilog", "-g"]);
    assert!(out.contains("16.0M") || out.contains("16M"), "{out}");
    let e = dev.oxh_err(&["hilog", "-G", "1K"]);
    assert!(e.to_lowercase().contains("size"), "{e}");
    let out = dev.oxh_ok(&["hilog", "-g", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["size"], 16 << 20, "a refused -G changed nothing");
    dev.oxh_ok(&["hilog", "-r"]);
    let out = dev.oxh_ok(&["hilog", "-x", "-e", "system ability started"]);
    assert!(out.trim().is_empty(), "cleared: {out}");
}

#[tokio::test]
async fn a_process_over_its_quota_has_lines_dropped_and_told() {
    let dev = TestDevice::start();
    let sdk = dev.sdk().await;
    let h = sdk.hilog();
    let line = "x".repeat(1000);
    // 200 KB as fast as we can: well over 51,200 bytes in one second.
    for _ in 0..200 {
        h.info(0x10, "flood", "%{public}s", &[LogArg::from(line.as_str())])
            .await
            .unwrap();
    }
    // One more, in a later second, brings the notice out: the daemon's clock is moved into
    // the next quota window rather than slept into it.
    set_clock_ahead(dev.data_dir(), Duration::from_millis(1100));
    h.info(0x10, "flood", "after", &[]).await.unwrap();
    let me = std::process::id().to_string();
    let out = dev.oxh_ok(&["hilog", "-x", "-P", &me]);
    let kept = out.lines().filter(|l| l.contains("/flood: x")).count();
    assert!(kept < 200, "some lines dropped (kept {kept})");
    assert!(kept >= 40, "the quota's worth kept (kept {kept})");
    let re = regex::Regex::new(r"LOGS OVER PROC QUOTA, (\d+) DROPPED==").unwrap();
    let dropped: u64 = out
        .lines()
        .filter_map(|l| re.captures(l).and_then(|c| c[1].parse::<u64>().ok()))
        .sum();
    assert!(dropped > 0, "no quota notice in {out}");
    assert_eq!(
        dropped as usize,
        200 - kept,
        "every dropped line is counted"
    );
}

#[tokio::test]
async fn persisted_logs_are_standard_zstd() {
    let dev = TestDevice::start();
    let out = dev.oxh_ok(&["hilog", "-w", "start"]);
    assert!(out.contains("start"), "{out}");
    let sdk = dev.sdk().await;
    sdk.hilog()
        .info(0x20, "persisted", "%{public}s", &[LogArg::from("to disk")])
        .await
        .unwrap();
    let q = dev.oxh_ok(&["hilog", "-w", "query", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(st["running"], true, "{q}");
    dev.oxh_ok(&["hilog", "-w", "stop"]);
    let dir = dev.data_dir().join("log/hilog");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zst"))
        .collect();
    assert!(!files.is_empty(), "files in {}", dir.display());
    let mut text = String::new();
    for f in &files {
        match std::process::Command::new("zstd")
            .arg("-dc")
            .arg(f)
            .output()
        {
            Ok(o) => {
                assert!(
                    o.status.success(),
                    "zstd -d {}: {}",
                    f.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.push_str(&String::from_utf8_lossy(&o.stdout));
            }
            Err(_) => {
                eprintln!(
                    "zstd CLI not installed (scripts/test installs it); decoding with the zstd crate"
                );
                let raw = std::fs::read(f).unwrap();
                text.push_str(&String::from_utf8_lossy(
                    &zstd::decode_all(&raw[..]).unwrap(),
                ));
            }
        }
    }
    assert!(
        text.lines()
            .any(|l| l.contains("/persisted: to disk") && is_ohos_line(l)),
        "{text}"
    );
}

#[tokio::test]
async fn follow_mode_streams_new_lines() {
    let dev = TestDevice::start();
    let mut child = std::process::Command::new(oxh_bin())
        .arg("--data-dir")
        .arg(dev.data_dir())
        .args(["hilog", "-T", "live"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let sdk = dev.sdk().await;
    // The follower may not be subscribed yet when we write: write until it sees a line.
    let got = within("a followed line", Duration::from_secs(20), async {
        for i in 0..2000 {
            sdk.hilog()
                .info(0x30, "live", "tick %{public}d", &[LogArg::from(i)])
                .await
                .unwrap();
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(20)) {
                return l;
            }
        }
        panic!("follower printed nothing");
    })
    .await;
    assert!(got.contains("/live: tick"), "{got}");
    let _ = child.kill();
    let _ = child.wait();
}
