//! The distributed KV store with real daemons: the CLI and SDK on one device, two devices
//! bound through the real PIN flow syncing (explicitly and automatically), change events,
//! and `kill -9` mid-write and mid-sync.

use crate::common::*;
use oxh_sdk::kv::{DataChange, KVManager, Options, Query, SubscribeType, SyncMode, SyncStatus};
use oxh_softbus::api::StateEvent;
use std::collections::HashSet;
use std::time::Duration;

const APP: &str = "com.example.notes";

/// Waits until `d` sees device `udid` online (events first, then the list: nothing slips).
pub(crate) async fn wait_online(d: &TestDevice, udid: &str) {
    let sdk = d.sdk().await;
    let dm = sdk.device_manager();
    let mut watch = dm.on_state_change().await.unwrap();
    if dm
        .trusted_devices()
        .await
        .unwrap()
        .iter()
        .any(|t| t.udid == udid && t.online)
    {
        return;
    }
    within("device online", Duration::from_secs(15), async {
        loop {
            match watch.next().await.expect("state events") {
                StateEvent::Online(v) | StateEvent::InfoChanged(v) if v.udid == udid => return,
                _ => {}
            }
        }
    })
    .await;
}

/// `a`, and `b` which knows where `a` listens (so `b` can be restarted and come back).
pub(crate) async fn pair() -> (TestDevice, TestDevice) {
    let a = TestDevice::start();
    let b = TestDevice::start_with(&["--peer", &a.ready_field("bus")]);
    bind_by_pin(&a, &b).await;
    wait_online(&a, &b.ready_field("udid")).await;
    wait_online(&b, &a.ready_field("udid")).await;
    (a, b)
}

fn kv<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["kv"];
    v.extend_from_slice(args);
    v
}

#[test]
fn cli_put_get_list_delete_with_openharmony_errors() {
    let d = TestDevice::start();
    let s = ["--app", APP, "--store", "s1"];
    d.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "title", "hello"]));
    d.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "body", "world"]));
    assert_eq!(
        d.oxh_ok(&kv(&["get", s[0], s[1], s[2], s[3], "title"])),
        "hello\n"
    );
    let ls = d.oxh_ok(&kv(&["ls", s[0], s[1], s[2], s[3], "--prefix", "ti"]));
    assert_eq!(ls, "title = hello\n");
    d.oxh_ok(&kv(&["del", s[0], s[1], s[2], s[3], "title"]));
    let e = d.oxh_err(&kv(&["get", s[0], s[1], s[2], s[3], "title"]));
    assert!(e.contains("15100004") && e.contains("Not found"), "{e}");
    let long = "k".repeat(1025);
    let e = d.oxh_err(&kv(&["put", s[0], s[1], s[2], s[3], &long, "v"]));
    assert!(e.contains("401") && e.contains("1024"), "{e}");
    let e = d.oxh_err(&kv(&[
        "put", s[0], s[1], s[2], s[3], "--type", "device", "k", "v",
    ]));
    assert!(e.contains("15100002"), "{e}");
    let e = d.oxh_err(&kv(&["get", "--app", APP, "--store", "no_such", "k"]));
    assert!(e.contains("15100004"), "{e}");
    let e = d.oxh_err(&kv(&["put", "--app", "../etc", "--store", "s1", "k", "v"]));
    assert!(e.contains("401"), "{e}");
    assert_eq!(d.oxh_ok(&kv(&["stores", "--app", APP])), "s1\n");
    // Backup, change, restore.
    d.oxh_ok(&kv(&["backup", s[0], s[1], s[2], s[3], "b1"]));
    d.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "body", "changed"]));
    d.oxh_ok(&kv(&["restore", s[0], s[1], s[2], s[3], "b1"]));
    assert_eq!(
        d.oxh_ok(&kv(&["get", s[0], s[1], s[2], s[3], "body"])),
        "world\n"
    );
    // The store is a SQLite file where the issue says, readable by standard tools.
    assert!(
        d.data_dir()
            .join("kvstore")
            .join(APP)
            .join("s1.db")
            .exists()
    );
}

#[tokio::test]
async fn sdk_batches_queries_transactions_and_limits() {
    let d = TestDevice::start();
    let dev = d.sdk().await;
    let mgr = KVManager::new(&dev, Some(APP));
    let st = mgr
        .get_single_kv_store("sdk", Options::default())
        .await
        .unwrap();
    let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..128)
        .map(|i| (format!("k{i:03}").into_bytes(), vec![b'v'; 10]))
        .collect();
    st.put_batch(&batch).await.unwrap();
    let mut too_many = batch.clone();
    too_many.push((b"x".to_vec(), b"y".to_vec()));
    assert_eq!(remote_code(st.put_batch(&too_many).await), 401);
    let q = Query {
        prefix: Some(b"k1".to_vec()),
        desc: true,
        limit: Some(3),
        ..Default::default()
    };
    let got: Vec<Vec<u8>> = st
        .get_entries_query(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(got, [b"k127".to_vec(), b"k126".to_vec(), b"k125".to_vec()]);
    assert_eq!(st.get_entries(b"k0").await.unwrap().len(), 100);
    // A transaction's writes land together at commit, and a rollback drops them.
    st.start_transaction().await.unwrap();
    st.put(b"t1", b"1").await.unwrap();
    assert_eq!(remote_code(st.get(b"t1").await), 15_100_004);
    st.commit().await.unwrap();
    assert_eq!(st.get(b"t1").await.unwrap(), b"1");
    st.start_transaction().await.unwrap();
    st.delete(b"t1").await.unwrap();
    st.rollback().await.unwrap();
    assert_eq!(st.get(b"t1").await.unwrap(), b"1");
    // The largest value, 4 MiB − 1, goes up and comes back in parts (one IPC call carries at
    // most 1 MiB), by get and by getEntries; one byte more is refused.
    let big: Vec<u8> = (0..4 * 1024 * 1024 - 1).map(|i| (i % 251) as u8).collect();
    st.put(b"big", &big).await.unwrap();
    assert_eq!(st.get(b"big").await.unwrap(), big);
    let e = st.get_entries(b"big").await.unwrap();
    assert_eq!(e.len(), 1);
    assert!(e[0].value == big);
    let mut over = big.clone();
    over.push(0);
    assert_eq!(remote_code(st.put(b"big2", &over).await), 401);
    // Subscriptions: at most 8 per store (15100001).
    let mut ws = Vec::new();
    for _ in 0..8 {
        ws.push(st.on_data_change(SubscribeType::Local).await.unwrap());
    }
    assert_eq!(
        remote_code(st.on_data_change(SubscribeType::All).await.map(|_| ())),
        15_100_001
    );
    st.put(b"ev", b"1").await.unwrap();
    let ev = within("local change", Duration::from_secs(5), ws[0].next())
        .await
        .unwrap();
    assert!(
        matches!(&ev, DataChange::Change { remote: false, inserted, .. } if inserted[0].key == b"ev"),
        "{ev:?}"
    );
    mgr.delete_kv_store("sdk").await.unwrap();
    assert_eq!(remote_code(mgr.delete_kv_store("sdk").await), 15_100_004);
}

fn remote_code<T: std::fmt::Debug>(r: Result<T, oxh_sdk::Error>) -> i32 {
    match r {
        Err(oxh_sdk::Error::Remote(e)) => e.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test]
async fn two_devices_sync_through_the_cli_and_report_per_device() {
    let (a, b) = pair().await;
    let s = ["--app", APP, "--store", "s1"];
    a.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "k1", "from-a"]));
    let out = a.oxh_ok(&kv(&["sync", s[0], s[1], s[2], s[3]]));
    assert_eq!(out, format!("{} success\n", b.ready_field("network_id")));
    assert_eq!(
        b.oxh_ok(&kv(&["get", s[0], s[1], s[2], s[3], "k1"])),
        "from-a\n"
    );
    // Pull: b writes, a pulls.
    b.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "k2", "from-b"]));
    a.oxh_ok(&kv(&["sync", s[0], s[1], s[2], s[3], "--mode", "pull"]));
    assert_eq!(
        a.oxh_ok(&kv(&["get", s[0], s[1], s[2], s[3], "k2"])),
        "from-b\n"
    );
    // A delete travels as a tombstone.
    a.oxh_ok(&kv(&["del", s[0], s[1], s[2], s[3], "k1"]));
    a.oxh_ok(&kv(&["sync", s[0], s[1], s[2], s[3], "--mode", "push"]));
    b.oxh_err(&kv(&["get", s[0], s[1], s[2], s[3], "k1"]));
    // A device store: b reads a's entries under a's networkId, and keeps its own apart.
    let ds = ["--app", APP, "--store", "dev1", "--type", "device"];
    a.oxh_ok(&kv(&[
        "put", ds[0], ds[1], ds[2], ds[3], ds[4], ds[5], "k", "a-val",
    ]));
    b.oxh_ok(&kv(&[
        "put", ds[0], ds[1], ds[2], ds[3], ds[4], ds[5], "k", "b-val",
    ]));
    a.oxh_ok(&kv(&["sync", ds[0], ds[1], ds[2], ds[3]]));
    let a_net = a.ready_field("network_id");
    let got = b.oxh_ok(&kv(&[
        "get", ds[0], ds[1], ds[2], ds[3], "k", "--device", &a_net,
    ]));
    assert_eq!(got, "a-val\n");
    assert_eq!(
        b.oxh_ok(&kv(&["get", ds[0], ds[1], ds[2], ds[3], "k"])),
        "b-val\n"
    );
    // The largest value crosses in fragments (a soft-bus Bytes frame is at most 4 MiB).
    let (da, db) = (a.sdk().await, b.sdk().await);
    let big: Vec<u8> = (0..4 * 1024 * 1024 - 1).map(|i| (i % 253) as u8).collect();
    let sa = KVManager::new(&da, Some(APP))
        .get_single_kv_store("s1", Options::default())
        .await
        .unwrap();
    sa.put(b"big", &big).await.unwrap();
    let r = sa
        .sync(&[], SyncMode::Push, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(r[0].status, SyncStatus::Success);
    let sb = KVManager::new(&db, Some(APP))
        .get_single_kv_store("s1", Options::default())
        .await
        .unwrap();
    assert!(sb.get(b"big").await.unwrap() == big);
    // S3 stores do not go to SL1 devices (the default level; `oxh sim` makes SL3 devices).
    let hi = ["--app", APP, "--store", "secret", "--level", "S3"];
    a.oxh_ok(&kv(&[
        "put", hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], "k", "v",
    ]));
    let o = a.oxh(&kv(&["sync", hi[0], hi[1], hi[2], hi[3]]));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("security level mismatch"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Regression (hardening item 4, "a delete can be undone by sync"): `kv del` on a device that
/// had not yet received the keys exited 0 but recorded nothing, and the next sync brought the
/// keys back on both devices although the delete was the later write.
#[tokio::test]
async fn a_delete_of_keys_never_received_wins_after_sync_both_ways() {
    let (a, b) = pair().await;
    let s = ["--app", APP, "--store", "gone"];
    a.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "k1", "from-a"]));
    a.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "k2", "from-a"]));
    // b has the store but has never synced it: it holds neither key.
    b.oxh_ok(&kv(&["put", s[0], s[1], s[2], s[3], "mine", "from-b"]));
    b.oxh_err(&kv(&["get", s[0], s[1], s[2], s[3], "k1"]));
    // The deletes are later writes than a's puts by the HLC: both devices read this host's
    // clock, and b's put and get above (two processes of several ms each) ran in between.
    assert_eq!(b.oxh_ok(&kv(&["del", s[0], s[1], s[2], s[3], "k1"])), "");
    assert_eq!(b.oxh_ok(&kv(&["del", s[0], s[1], s[2], s[3], "k2"])), "");
    a.oxh_ok(&kv(&["sync", s[0], s[1], s[2], s[3]]));
    b.oxh_ok(&kv(&["sync", s[0], s[1], s[2], s[3]]));
    for d in [&a, &b] {
        for k in ["k1", "k2"] {
            let e = d.oxh_err(&kv(&["get", s[0], s[1], s[2], s[3], k]));
            assert!(e.contains("15100004"), "{k}: {e}");
        }
        assert_eq!(
            d.oxh_ok(&kv(&["get", s[0], s[1], s[2], s[3], "mine"])),
            "from-b\n"
        );
    }
}

#[tokio::test]
async fn remote_changes_arrive_as_events_and_auto_sync_pushes_local_writes() {
    let (a, b) = pair().await;
    let opts = Options {
        auto_sync: true,
        ..Options::default()
    };
    let (da, db) = (a.sdk().await, b.sdk().await);
    let sa = KVManager::new(&da, Some(APP))
        .get_single_kv_store("auto", opts.clone())
        .await
        .unwrap();
    let sb = KVManager::new(&db, Some(APP))
        .get_single_kv_store("auto", opts)
        .await
        .unwrap();
    let mut wb = sb.on_data_change(SubscribeType::Remote).await.unwrap();
    // No sync call: auto sync pushes the write.
    sa.put(b"auto-key", b"1").await.unwrap();
    let ev = within("remote change on b", Duration::from_secs(10), async {
        loop {
            if let DataChange::Change { .. } = wb.next().await.expect("events") {
                break;
            }
        }
    });
    ev.await;
    assert_eq!(sb.get(b"auto-key").await.unwrap(), b"1");
    let ev_b = wb_last_change(&mut wb, &sa, b"auto-key2").await;
    assert_eq!(ev_b.0, a.ready_field("udid"));
    assert!(ev_b.1);
    // An explicit sync reports per device, and as a syncComplete event.
    let mut wa = sa.on_data_change(SubscribeType::All).await.unwrap();
    let r = sa
        .sync(&[], SyncMode::PushPull, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, SyncStatus::Success);
    assert_eq!(r[0].network_id, b.ready_field("network_id"));
    let done = within("syncComplete", Duration::from_secs(10), async {
        loop {
            if let Some(DataChange::SyncComplete { results, .. }) = wa.next().await {
                return results;
            }
        }
    })
    .await;
    assert_eq!(done[0].device_id, b.ready_field("udid"));
    assert_eq!(done[0].status, SyncStatus::Success);
}

/// Writes `key` on `from` and returns (device id, remote) of the event `w` sees for it.
async fn wb_last_change(
    w: &mut oxh_sdk::kv::DataChangeWatcher,
    from: &oxh_sdk::kv::SingleKVStore,
    key: &[u8],
) -> (String, bool) {
    from.put(key, b"x").await.unwrap();
    within("the change event", Duration::from_secs(10), async {
        loop {
            if let Some(DataChange::Change {
                device_id,
                remote,
                inserted,
                ..
            }) = w.next().await
                && inserted.iter().any(|e| e.key == key)
            {
                return (device_id, remote);
            }
        }
    })
    .await
}

#[tokio::test]
async fn kill9_mid_write_loses_no_acknowledged_write() {
    let mut d = TestDevice::start();
    let acked = {
        let dev = d.sdk().await;
        let st = KVManager::new(&dev, Some(APP))
            .get_single_kv_store("crash", Options::default())
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            for i in 0..100_000u32 {
                if st.put(format!("k{i}").as_bytes(), b"v").await.is_err() {
                    return;
                }
                let _ = tx.send(i);
            }
        });
        let mut acked = Vec::new();
        // Kill once 50 writes were acknowledged, while more are in flight.
        while acked.len() < 50 {
            acked.push(rx.recv().await.expect("writes"));
        }
        d.kill9();
        let _ = writer.await;
        while let Ok(i) = rx.try_recv() {
            acked.push(i);
        }
        acked
    };
    d.restart();
    let dev = d.sdk().await;
    let st = KVManager::new(&dev, Some(APP))
        .get_single_kv_store("crash", Options::default())
        .await
        .unwrap();
    let have: HashSet<Vec<u8>> = st
        .get_entries(b"k")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    for i in &acked {
        assert!(
            have.contains(format!("k{i}").as_bytes()),
            "k{i} was acknowledged, then lost"
        );
    }
}

#[tokio::test]
async fn kill9_mid_sync_then_restart_resumes_and_loses_nothing() {
    let (a, mut b) = pair().await;
    let (da, db) = (a.sdk().await, b.sdk().await);
    let sa = KVManager::new(&da, Some(APP))
        .get_single_kv_store("big", Options::default())
        .await
        .unwrap();
    let sb = KVManager::new(&db, Some(APP))
        .get_single_kv_store("big", Options::default())
        .await
        .unwrap();
    const N: usize = 40_000;
    for c in 0..N / 125 {
        let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..125)
            .map(|i| (format!("k{:05}", c * 125 + i).into_bytes(), vec![b'x'; 100]))
            .collect();
        sa.put_batch(&batch).await.unwrap();
    }
    let mut wb = sb.on_data_change(SubscribeType::Remote).await.unwrap();
    let sync = {
        let sa = sa.clone();
        tokio::spawn(async move { sa.sync(&[], SyncMode::Push, Duration::from_secs(20)).await })
    };
    // The first packet is applied on b: kill b in the middle of the sync.
    within("the first packet on b", Duration::from_secs(20), wb.next()).await;
    drop(wb);
    drop(sb);
    drop(db);
    b.kill9();
    let r = sync.await.unwrap().unwrap();
    assert_ne!(r[0].status, SyncStatus::Success, "b died mid-sync: {r:?}");
    b.restart();
    wait_online(&a, &b.ready_field("udid")).await;
    let r = sa
        .sync(&[], SyncMode::Push, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    let db = b.sdk().await;
    let sb = KVManager::new(&db, Some(APP))
        .get_single_kv_store("big", Options::default())
        .await
        .unwrap();
    let n = sb.get_entries(b"k").await.unwrap().len();
    assert_eq!(n, N);
}

#[tokio::test]
async fn a_device_coming_online_catches_up_on_auto_sync_stores() {
    let (a, mut b) = pair().await;
    let opts = Options {
        auto_sync: true,
        ..Options::default()
    };
    let da = a.sdk().await;
    let sa = KVManager::new(&da, Some(APP))
        .get_single_kv_store("catchup", opts.clone())
        .await
        .unwrap();
    {
        let db = b.sdk().await;
        KVManager::new(&db, Some(APP))
            .get_single_kv_store("catchup", opts.clone())
            .await
            .unwrap();
    }
    b.kill9();
    // Written while b is away; nobody calls sync.
    sa.put(b"while-away", b"1").await.unwrap();
    b.restart();
    let db = b.sdk().await;
    let sb = KVManager::new(&db, Some(APP))
        .get_single_kv_store("catchup", opts)
        .await
        .unwrap();
    let mut w = sb.on_data_change(SubscribeType::Remote).await.unwrap();
    if sb.get(b"while-away").await.is_err() {
        within("the catch-up on ONLINE", Duration::from_secs(15), async {
            loop {
                if let Some(DataChange::Change { inserted, .. }) = w.next().await
                    && inserted.iter().any(|e| e.key == b"while-away")
                {
                    return;
                }
            }
        })
        .await;
    }
    assert_eq!(sb.get(b"while-away").await.unwrap(), b"1");
}

// ------------------------------------------------------------ three hosts in namespaces

pub(crate) mod netns {
    //! Three hosts on a bridge (network namespaces), each a real `oxhd`: concurrent writers
    //! on all three, one host cut off, writes on both sides, the link back: all converge on
    //! the winners that last-writer-wins on (HLC, device) predicts. Needs root and `ip`;
    //! prints why and passes without them. Guards remove processes and namespaces.

    use super::APP;
    use crate::common::{NsDevice, within};
    use oxh_sdk::kv::{Entry, KVManager, Options, SingleKVStore, SyncMode, SyncStatus};
    use std::time::Duration;

    /// Where `d`'s bus listens, as the other hosts reach it (`ip` is its address).
    pub(crate) fn bus(d: &NsDevice, ip: &str) -> String {
        let port = d.ready_field("bus").rsplit(':').next().unwrap().to_string();
        format!("{ip}:{port}")
    }

    pub(crate) async fn wait_online_count(d: &NsDevice, n: usize) {
        let sdk = d.sdk().await;
        within("trusted devices online", Duration::from_secs(20), async {
            loop {
                let t = sdk.device_manager().trusted_devices().await.unwrap();
                if t.iter().filter(|t| t.online).count() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    async fn store(d: &NsDevice) -> SingleKVStore {
        let dev = d.sdk().await;
        KVManager::new(&dev, Some(APP))
            .get_single_kv_store("ns", Options::default())
            .await
            .unwrap()
    }

    async fn sync_all(stores: &[SingleKVStore]) {
        for s in stores {
            let r = s
                .sync(&[], SyncMode::PushPull, Duration::from_secs(20))
                .await
                .unwrap();
            assert!(r.iter().all(|r| r.status == SyncStatus::Success), "{r:?}");
        }
    }

    async fn contents(s: &SingleKVStore) -> Vec<Entry> {
        s.get_entries(b"").await.unwrap()
    }

    /// The bus heartbeat of the hosts [`bound_hosts`] starts (OFFLINE after 4 of them).
    pub(crate) const HEARTBEAT_MS: u64 = 300;

    /// Three hosts on the bridge `<subnet>.0/24`, as [`bound_hosts`] makes them.
    pub(crate) async fn three_bound_hosts(
        test: &str,
        prefix: &str,
        subnet: &str,
        tag: &str,
    ) -> Option<(oxh_testkit::Netns, Vec<NsDevice>)> {
        bound_hosts(test, prefix, subnet, tag, 3).await
    }

    /// `n` hosts on the bridge `<subnet>.0/24` (host i at `<subnet>.(i+1)`), each an `oxhd`,
    /// every two bound by PIN and online for each other; `None` (after saying why) where
    /// namespaces cannot be made.
    pub(crate) async fn bound_hosts(
        test: &str,
        prefix: &str,
        subnet: &str,
        tag: &str,
        n: usize,
    ) -> Option<(oxh_testkit::Netns, Vec<NsDevice>)> {
        bound_hosts_with(test, prefix, subnet, tag, &vec![&[][..]; n]).await
    }

    /// As [`bound_hosts`], one host for each of `envs`, started with that environment.
    pub(crate) async fn bound_hosts_with(
        test: &str,
        prefix: &str,
        subnet: &str,
        tag: &str,
        envs: &[&[(&str, &str)]],
    ) -> Option<(oxh_testkit::Netns, Vec<NsDevice>)> {
        let n = envs.len();
        let (netns, hosts) = oxh_testkit::bridged_hosts(test, prefix, n, subnet)?;
        let pid = std::process::id();
        let heartbeat = HEARTBEAT_MS.to_string();
        let devs: Vec<NsDevice> = hosts
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                NsDevice::start_with(
                    ns,
                    &format!("{tag}{pid}-{i}"),
                    true,
                    &["--discovery", "off", "--heartbeat-ms", &heartbeat],
                    envs[i],
                )
                .expect("start oxhd in a namespace")
            })
            .collect();
        for x in 0..n {
            for y in x + 1..n {
                let pin = devs[y]
                    .sdk()
                    .await
                    .device_manager()
                    .issue_pin()
                    .await
                    .unwrap();
                devs[x]
                    .sdk()
                    .await
                    .device_manager()
                    .bind(&bus(&devs[y], &format!("{subnet}.{}", y + 1)), &pin.pin)
                    .await
                    .unwrap();
            }
        }
        for d in &devs {
            wait_online_count(d, n - 1).await;
        }
        Some((netns, devs))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_hosts_converge_after_a_partition_heals() {
        let Some((_netns, devs)) = three_bound_hosts(
            "three_hosts_converge_after_a_partition_heals",
            "oxhkv",
            "10.79.0",
            "kv",
        )
        .await
        else {
            return;
        };
        let [a, b, c] = &devs[..] else { unreachable!() };
        let stores = vec![store(a).await, store(b).await, store(c).await];

        // Concurrent writers on all three: the same keys, and keys of their own.
        let writers = stores.iter().enumerate().map(|(i, s)| async move {
            for k in 0..20 {
                s.put(
                    format!("shared{k}").as_bytes(),
                    format!("dev{i}-{k}").as_bytes(),
                )
                .await
                .unwrap();
                s.put(format!("own{i}-{k}").as_bytes(), b"x").await.unwrap();
            }
        });
        futures_join_all(writers).await;
        sync_all(&stores).await;
        let first = contents(&stores[0]).await;
        assert_eq!(first.len(), 20 + 3 * 20);
        for s in &stores[1..] {
            assert_eq!(contents(s).await, first);
        }

        // Cut c off; both sides write, in an order the clock (and so LWW) follows.
        c.link("down");
        wait_online_count(a, 1).await;
        wait_online_count(c, 0).await;
        let r = stores[0]
            .sync(
                &[c.ready_field("network_id")],
                SyncMode::Push,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_ne!(r[0].status, SyncStatus::Success, "{r:?}");
        stores[0].put(b"p1", b"a-side").await.unwrap();
        stores[0].put(b"shared0", b"a-updated").await.unwrap();
        // The order by the clock: c's clock set a second ahead, then b's two (moved, not
        // slept through), so c's writes are later than a's and b's later than c's.
        crate::common::set_clock_ahead(c.data_dir(), Duration::from_secs(1));
        stores[2].put(b"p1", b"c-side").await.unwrap();
        stores[2].put(b"p2", b"c-side").await.unwrap();
        stores[2].delete(b"shared0").await.unwrap();
        crate::common::set_clock_ahead(b.data_dir(), Duration::from_secs(2));
        stores[1].put(b"p2", b"b-side").await.unwrap();
        sync_all(&stores[..2]).await;

        // Heal: everyone ends with the later writes.
        c.link("up");
        for d in &devs {
            wait_online_count(d, 2).await;
        }
        sync_all(&stores).await;
        sync_all(&stores).await;
        let want = contents(&stores[0]).await;
        for s in &stores[1..] {
            assert_eq!(contents(s).await, want, "replicas differ after the heal");
        }
        for s in &stores {
            assert_eq!(s.get(b"p1").await.unwrap(), b"c-side");
            assert_eq!(s.get(b"p2").await.unwrap(), b"b-side");
            assert!(s.get(b"shared0").await.is_err(), "the later delete wins");
        }
    }

    /// Runs futures concurrently (no extra dependency for join_all).
    pub(crate) async fn futures_join_all<F: std::future::Future<Output = ()>>(
        fs: impl Iterator<Item = F>,
    ) {
        let fs: Vec<_> = fs.map(Box::pin).collect();
        let mut fs: Vec<_> = fs.into_iter().map(Some).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for f in fs.iter_mut() {
                if let Some(fut) = f {
                    if fut.as_mut().poll(cx).is_ready() {
                        *f = None;
                    } else {
                        pending = true;
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await
    }
}

#[test]
fn sim_devices_are_sl3_and_sync_s3_stores() {
    use std::io::BufRead;
    let base = tempfile::tempdir().unwrap();
    let mut sim = std::process::Command::new(oxh_bin())
        .args(["sim", "--devices", "2", "--no-apps", "--base-dir"])
        .arg(base.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = sim.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // Stops the sim (and through it its devices) also when an assertion fails.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            unsafe_kill(self.0.id(), libc::SIGTERM);
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(sim);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let l = rx
            .recv_timeout(left)
            .expect("the sim's devices bound and online");
        if l.contains("devices bound and online") {
            break;
        }
    }
    let oxh = |dev: &str, args: &[&str]| {
        let o = run_oxh(&base.path().join(dev), args);
        stdout_of_success(o, format_args!("oxh {args:?} on {dev}"))
    };
    assert_eq!(
        oxh(
            "dev1",
            &["param", "get", "const.security.device_security_level"]
        ),
        "SL3\n"
    );
    let s = ["--app", APP, "--store", "secret"];
    oxh(
        "dev1",
        &kv(&["put", s[0], s[1], s[2], s[3], "--level", "S3", "k", "v"]),
    );
    let r = oxh("dev1", &kv(&["sync", s[0], s[1], s[2], s[3]]));
    assert!(r.ends_with("success\n"), "{r}");
    assert_eq!(
        oxh("dev2", &kv(&["get", s[0], s[1], s[2], s[3], "k"])),
        "v\n"
    );
}

// ------------------------------------------------------------ app isolation, for real

mod app {
    //! An installed app (a HAP token for the uid `nobody`) running as `nobody`: it reaches its
    //! own stores without naming itself, not another app's, and cannot sync without
    //! DISTRIBUTED_DATASYNC. The client is this test binary run again through `runuser` with
    //! [`CHILD_ENV`] set; it prints its findings as JSON lines.

    use super::{APP, kv};
    use crate::common::{TestDevice, can_run_as_nobody, run_test_child};
    use oxh_atm::rules::HapPolicy;
    use oxh_sdk::kv::{KVManager, Options, SyncMode};
    use serde_json::{Value, json};
    use std::time::Duration;

    const CHILD_ENV: &str = "OXH_KV_TEST_CHILD";
    const RESULT: &str = "OXH-KV-RESULT ";
    const KVAPP: &str = "com.example.kvapp";

    fn code<T>(r: Result<T, oxh_sdk::Error>) -> Value {
        match r {
            Ok(_) => json!(0),
            Err(e) => json!(e.code()),
        }
    }

    /// Not a test of its own: the client processes' entry point (nothing without CHILD_ENV).
    #[tokio::test]
    async fn child_entry() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return;
        };
        let (mode, dir) = spec.split_once(' ').expect("MODE DIR");
        if mode == "setup" {
            // As root named oxhd (a native process) that may create app tokens.
            let path = format!("/proc/self/task/{}/comm", std::process::id());
            std::fs::write(&path, "oxhd").unwrap();
        }
        let dev = oxh_sdk::Device::connect(dir).await.unwrap();
        let out = match mode {
            "setup" => {
                let id = dev
                    .atm()
                    .alloc_hap_token(
                        oxh_atm::test_util::app(KVAPP, Some(65_534)),
                        HapPolicy::normal(&["ohos.permission.INTERNET"]),
                    )
                    .await
                    .unwrap()
                    .token_id();
                json!({ "app": id })
            }
            "app" => {
                let who = dev.samgr().whoami().await.unwrap();
                let own = KVManager::new(&dev, None)
                    .get_single_kv_store("mine", Options::default())
                    .await
                    .unwrap();
                let put = code(own.put(b"k", b"mine").await);
                let get = own
                    .get(b"k")
                    .await
                    .map(|v| String::from_utf8(v).unwrap())
                    .ok();
                let named_self = code(
                    KVManager::new(&dev, Some(KVAPP))
                        .get_single_kv_store("mine", Options::default())
                        .await,
                );
                let other = code(
                    KVManager::new(&dev, Some(APP))
                        .get_single_kv_store("s1", Options::default())
                        .await,
                );
                let sync = code(own.sync(&[], SyncMode::Push, Duration::from_secs(1)).await);
                json!({
                    "token_type": who.token_type.as_str(),
                    "put": put,
                    "get": get,
                    "named_self": named_self,
                    "other": other,
                    "sync": sync,
                })
            }
            m => panic!("unknown mode {m}"),
        };
        println!("{RESULT}{out}");
    }

    fn run_child(user: Option<&str>, mode: &str, dev: &TestDevice) -> Value {
        let spec = format!("{mode} {}", dev.data_dir().display());
        run_test_child(user, CHILD_ENV, &spec, "kv::app::child_entry", RESULT).remove(0)
    }

    #[test]
    fn an_app_reaches_only_its_own_stores_and_cannot_sync_without_datasync() {
        if !can_run_as_nobody("an_app_reaches_only_its_own_stores_and_cannot_sync_without_datasync")
        {
            return;
        }
        let d = TestDevice::start();
        d.let_others_in();
        d.oxh_ok(&kv(&["put", "--app", APP, "--store", "s1", "secret", "x"]));
        let setup = run_child(None, "setup", &d);
        assert!(setup["app"].as_u64().is_some(), "{setup}");
        let r = run_child(Some("nobody"), "app", &d);
        assert_eq!(r["token_type"], "hap", "{r}");
        assert_eq!(r["put"], 0, "{r}");
        assert_eq!(r["get"], "mine", "{r}");
        assert_eq!(r["named_self"], 0, "{r}");
        assert_eq!(r["other"], 201, "another app's store: {r}");
        assert_eq!(r["sync"], 201, "sync without DISTRIBUTED_DATASYNC: {r}");
        // The app's data is under its own bundle, where the shell finds it.
        let got = d.oxh_ok(&kv(&["get", "--app", KVAPP, "--store", "mine", "k"]));
        assert_eq!(got, "mine\n");
    }
}
