//! The command line: device identity, multi-call links, --json, --data-dir.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn device_identity_is_created_once_and_kept() {
    let mut dev = TestDevice::start();
    let key = dev.data_dir().join("device/identity.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "private key readable by its owner only"
    );
    let info: serde_json::Value =
        serde_json::from_str(&dev.oxh_ok(&["device", "info", "--json"])).unwrap();
    let udid = info["udid"].as_str().unwrap().to_string();
    assert_eq!(udid.len(), 64);
    assert_eq!(info["deviceName"], "test-device");
    assert_eq!(info["deviceTypeId"], 0x0E);
    dev.stop();
    dev.restart();
    let again: serde_json::Value =
        serde_json::from_str(&dev.oxh_ok(&["device", "info", "--json"])).unwrap();
    assert_eq!(
        again["udid"],
        udid.as_str(),
        "same identity after a restart"
    );
    let text = dev.oxh_ok(&["device", "info"]);
    assert!(
        text.contains(&udid) && text.contains("os version:"),
        "{text}"
    );
}

#[test]
fn multi_call_links_behave_as_the_tool() {
    let dev = TestDevice::start();
    let bin = tempfile::tempdir().unwrap();
    for tool in ["param", "hilog", "hidumper"] {
        std::os::unix::fs::symlink(oxh_bin(), bin.path().join(tool)).unwrap();
    }
    let run = |tool: &str, args: &[&str]| {
        let o = std::process::Command::new(bin.path().join(tool))
            .env("OXH_DATA_DIR", dev.data_dir())
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(
        run("param", &["get", "const.product.name"]).trim(),
        "test-device"
    );
    assert!(run("hidumper", &["-ls"]).contains("3901"));
    let logs = run("hilog", &["-x", "-T", "oxhd"]);
    assert!(logs.contains("device ready"), "{logs}");
}

#[test]
fn data_dir_picks_the_device() {
    let a = TestDevice::start();
    let b = TestDevice::start();
    a.oxh_ok(&["param", "set", "debug.which", "a"]);
    b.oxh_ok(&["param", "set", "debug.which", "b"]);
    assert_eq!(a.oxh_ok(&["param", "get", "debug.which"]).trim(), "a");
    let o = std::process::Command::new(oxh_bin())
        .env("OXH_DATA_DIR", b.data_dir())
        .args(["param", "get", "debug.which"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "b");
}
