//! param through the real CLI (shell token) and the SDK (native token).

use crate::common::*;
use std::time::Duration;

#[test]
fn set_get_and_persist_across_restart() {
    let mut dev = TestDevice::start();
    let out = dev.oxh_ok(&["param", "set", "persist.demo.x", "1"]);
    assert!(out.contains("success"), "{out}");
    assert_eq!(dev.oxh_ok(&["param", "get", "persist.demo.x"]).trim(), "1");
    dev.oxh_ok(&["param", "set", "debug.demo.plain", "2"]);
    assert_eq!(
        dev.oxh_ok(&["param", "get", "debug.demo.plain"]).trim(),
        "2"
    );
    dev.stop();
    dev.restart();
    assert_eq!(
        dev.oxh_ok(&["param", "get", "persist.demo.x"]).trim(),
        "1",
        "persist.* survives a restart"
    );
    let e = dev.oxh_err(&["param", "get", "debug.demo.plain"]);
    assert!(
        e.contains("14700101"),
        "a plain param does not survive: {e}"
    );
}

#[tokio::test]
async fn const_cannot_be_set_twice() {
    let dev = TestDevice::start();
    let sdk = dev.sdk().await;
    sdk.param().set("const.test.once", "a").await.unwrap();
    let e = sdk.param().set("const.test.once", "b").await.unwrap_err();
    assert!(e.to_string().contains("const.test.once"), "{e}");
    assert_eq!(sdk.param().get("const.test.once").await.unwrap(), "a");
    // Already-set const params from the daemon are read-only for everyone.
    let e = dev.oxh_err(&["param", "set", "const.product.name", "x"]);
    assert!(e.contains("fail"), "{e}");
    assert_eq!(
        dev.oxh_ok(&["param", "get", "const.product.name"]).trim(),
        "test-device"
    );
}

#[tokio::test]
async fn shell_access_rules() {
    let dev = TestDevice::start();
    // The CLI runs with the shell token: persist.* and debug.* yes, ohos.* and const.* no.
    dev.oxh_ok(&["param", "set", "persist.shell.ok", "1"]);
    dev.oxh_ok(&["param", "set", "debug.shell.ok", "1"]);
    let e = dev.oxh_err(&["param", "set", "ohos.shell.no", "1"]);
    assert!(e.contains("14700103"), "{e}");
    let e = dev.oxh_err(&["param", "set", "const.shell.no", "1"]);
    assert!(e.contains("fail"), "{e}");
    // Nothing changed by the denied writes.
    dev.oxh_err(&["param", "get", "ohos.shell.no"]);
    dev.oxh_err(&["param", "get", "const.shell.no"]);
    // A system process (this test, root or the daemon's user) may set ohos.*.
    let sdk = dev.sdk().await;
    sdk.param().set("ohos.native.ok", "1").await.unwrap();
}

#[test]
fn bad_names_and_oversize_values_are_refused_and_change_nothing() {
    let dev = TestDevice::start();
    dev.oxh_ok(&["param", "set", "persist.size.v", "keep"]);
    let long_value = "v".repeat(200);
    let e = dev.oxh_err(&["param", "set", "persist.size.v", &long_value]);
    assert!(e.contains("limit"), "{e}");
    assert_eq!(
        dev.oxh_ok(&["param", "get", "persist.size.v"]).trim(),
        "keep"
    );
    for bad in [
        "..x",
        "a..b",
        "x.",
        "sp ace",
        "semi;colon",
        &"n".repeat(120),
    ] {
        let e = dev.oxh_err(&["param", "set", bad, "1"]);
        assert!(e.contains("401") || e.contains("14700"), "{bad}: {e}");
    }
    let all = dev.oxh_ok(&["param", "ls", "-r", "persist"]);
    assert!(all.contains("persist.size.v = keep"), "{all}");
}

#[tokio::test]
async fn wait_returns_on_match_and_times_out_clearly() {
    let dev = TestDevice::start();
    let waiter = dev.sdk().await;
    let setter = dev.sdk().await;
    let w = tokio::spawn(async move {
        waiter
            .param()
            .wait("debug.wait.k", Some("go*"), Duration::from_secs(20))
            .await
    });
    // A value that does not match does not end the wait; a matching one does.
    setter.param().set("debug.wait.k", "stop").await.unwrap();
    setter.param().set("debug.wait.k", "gone").await.unwrap();
    let v = within("wait to return", Duration::from_secs(20), w)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "gone");

    let o = dev.oxh(&["param", "wait", "debug.never", "", "1"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("timeout") && e.contains("debug.never"), "{e}");
    let out = dev.oxh_ok(&["param", "wait", "debug.wait.k", "gone", "1"]);
    assert!(out.contains("success"), "{out}");
}

#[test]
fn persist_store_is_plain_sqlite() {
    let dev = TestDevice::start();
    dev.oxh_ok(&["param", "set", "persist.sqlite.check", "yes"]);
    let db = dev.data_dir().join("param/persist.db");
    let Ok(o) = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(".tables")
        .output()
    else {
        eprintln!(
            "SKIP persist_store_is_plain_sqlite: sqlite3 not installed (scripts/test installs it)"
        );
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
}
