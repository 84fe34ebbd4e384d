//! samgr: the SA list, on-demand start, dumps, system-only methods.

use crate::common::*;

#[tokio::test]
async fn on_demand_sa_starts_on_its_first_call() {
    let dev = TestDevice::start();
    let out = dev.oxh_ok(&["sa", "list"]);
    let bus_line = out
        .lines()
        .find(|l| l.contains("4700"))
        .expect("4700 listed");
    assert!(bus_line.contains("SoftBusServer"), "{out}");
    assert!(bus_line.contains("not started"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("3901") && l.contains("running")),
        "{out}"
    );
    // The first call starts it.
    let sdk = dev.sdk().await;
    let _listening = sdk.bus().listen("on-demand").await.unwrap();
    let out = dev.oxh_ok(&["sa", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let dm = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["saId"] == 4700)
        .unwrap();
    assert_eq!(dm["state"], "LOADED", "started by the call: {out}");
}

#[tokio::test]
async fn hidumper_lists_and_dumps() {
    let dev = TestDevice::start();
    let ls = dev.oxh_ok(&["hidumper", "-ls"]);
    for id in ["0", "1290", "3503", "3901", "4700", "4802"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().next() == Some(id)),
            "{id} in {ls}"
        );
    }
    let d = dev.oxh_ok(&["hidumper", "-s", "0"]);
    assert!(d.contains("SystemAbilityManager"), "{d}");
    assert!(d.contains("clients:"), "{d}");
    let d = dev.oxh_ok(&["hidumper", "-s", "4700"]);
    assert!(d.contains("not started"), "not started by a dump: {d}");
    let d = dev.oxh_ok(&["hidumper", "-s", "4802"]);
    assert!(d.contains("networkId"), "{d}");
    let e = dev.oxh_err(&["hidumper", "-s", "777"]);
    assert!(e.contains("777") && e.contains("not registered"), "{e}");
}

#[tokio::test]
async fn unknown_sa_and_method_get_clear_errors() {
    let dev = TestDevice::start();
    let sdk = dev.sdk().await;
    let e = sdk.client().call_raw(12345, 1, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(oxh_ipc::code::SA_NOT_FOUND), "{e}");
    let e = sdk.client().call_raw(0, 999, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(oxh_ipc::code::UNKNOWN_METHOD), "{e}");
    // A bad argument is 401, and the connection stays usable.
    let e = sdk
        .client()
        .call_raw(0, oxh_samgr::samgr_method::DUMP, &[0xff; 3])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    assert_eq!(sdk.samgr().echo(b"ok").await.unwrap(), b"ok");
}
