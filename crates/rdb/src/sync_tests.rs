//! Two services joined by an in-memory bus (a thread per device delivers what was sent to
//! it, in order, as the soft-bus session does): sync rounds, the checks on the receiving
//! device, and remoteQuery, without processes or sockets.

use super::*;
use crate::api::*;
use crate::service::RdbConfig;
use oxh_ipc::{Caller, TokenType};
use std::sync::atomic::AtomicBool;
use std::sync::{Weak, mpsc as std_mpsc};
use std::time::Duration;

/// Where a device's deliveries go: (sender udid, bytes).
type Inbox = std_mpsc::Sender<(String, Vec<u8>)>;

struct MemBus {
    me: String,
    level: u8,
    may_sync: AtomicBool,
    /// Per peer udid: the queue its delivery thread reads.
    peers: Mutex<HashMap<String, Inbox>>,
    online: Mutex<bool>,
}

impl RdbBus for MemBus {
    fn send(&self, udid: &str, bytes: Vec<u8>) {
        if !*lock(&self.online) {
            return;
        }
        if let Some(tx) = lock(&self.peers).get(udid) {
            let _ = tx.send((self.me.clone(), bytes));
        }
    }
    fn online(&self) -> Vec<(String, String)> {
        if !*lock(&self.online) {
            return Vec::new();
        }
        lock(&self.peers)
            .keys()
            .map(|u| (u.clone(), format!("net-{u}")))
            .collect()
    }
    fn trusted(&self) -> Vec<String> {
        lock(&self.peers).keys().cloned().collect()
    }
    fn resolve(&self, device: &str) -> String {
        device.strip_prefix("net-").unwrap_or(device).to_string()
    }
    fn device_level(&self) -> u8 {
        self.level
    }
    fn app_may_sync(&self, _bundle: &str) -> bool {
        self.may_sync.load(Ordering::Relaxed)
    }
    fn export_caller(&self, token_id: u32) -> Option<(u64, Vec<u8>)> {
        Some((1, token_id.to_le_bytes().to_vec()))
    }
    /// Token 1 is the shell's, token 3 another app's (both holding the permission); others
    /// lack it.
    fn caller_may_sync(
        &self,
        _udid: &str,
        token_id: u32,
        _rev: u64,
        state: &[u8],
    ) -> Option<(oxh_ipc::TokenType, String)> {
        if state != token_id.to_le_bytes() {
            return None;
        }
        match token_id {
            1 => Some((TokenType::Shell, "shell".into())),
            3 => Some((TokenType::Hap, "com.example.other".into())),
            _ => None,
        }
    }
}

struct Dev {
    svc: Arc<RdbService>,
    bus: Arc<MemBus>,
    _dir: tempfile::TempDir,
}

fn caller() -> Caller {
    Caller {
        pid: 1,
        uid: 0,
        gid: 0,
        token_id: 1,
        token_type: TokenType::Shell,
        process_name: "t".into(),
    }
}

/// A device `name` whose deliveries come from a thread of its own.
fn dev(name: &str, level: u8) -> (Dev, Inbox) {
    let dir = tempfile::tempdir().unwrap();
    let svc = RdbService::open(RdbConfig {
        dir: dir.path().to_path_buf(),
        device_id: name.into(),
    })
    .unwrap();
    let bus = Arc::new(MemBus {
        me: name.into(),
        level,
        may_sync: AtomicBool::new(true),
        peers: Mutex::new(HashMap::new()),
        online: Mutex::new(true),
    });
    svc.attach_bus(bus.clone());
    let (tx, rx) = std_mpsc::channel::<(String, Vec<u8>)>();
    let w: Weak<RdbService> = Arc::downgrade(&svc);
    std::thread::spawn(move || {
        while let Ok((from, b)) = rx.recv() {
            let Some(s) = w.upgrade() else { return };
            s.on_bus_message(&from, &b);
        }
    });
    (
        Dev {
            svc,
            bus,
            _dir: dir,
        },
        tx,
    )
}

fn pair() -> (Dev, Dev) {
    let (a, ta) = dev("dev-a", 3);
    let (b, tb) = dev("dev-b", 3);
    lock(&a.bus.peers).insert("dev-b".into(), tb);
    lock(&b.bus.peers).insert("dev-a".into(), ta);
    (a, b)
}

const DDL: &str = "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)";

fn open(d: &Dev, conn: u64, name: &str) -> StoreHandle {
    let a = GetStoreArgs {
        app: Some("com.example.notes".into()),
        config: StoreConfig::new(name, SecurityLevel::S1),
    };
    d.svc.get_rdb_store(conn, &caller(), &a).unwrap().handle
}

fn exec(d: &Dev, h: StoreHandle, sql: &str, args: Vec<Value>) {
    d.svc
        .execute(
            1,
            &ExecuteArgs {
                handle: h,
                sql: sql.into(),
                args,
            },
        )
        .unwrap();
}

fn rows(d: &Dev, h: StoreHandle) -> Vec<Vec<Value>> {
    d.svc
        .query_sql(
            1,
            &QuerySqlArgs {
                handle: h,
                sql: "SELECT id, title, body FROM note ORDER BY id".into(),
                args: vec![],
            },
        )
        .unwrap()
        .rows
}

fn distributed(d: &Dev) -> StoreHandle {
    distributed_at(d, "notes.db", SecurityLevel::S1)
}

/// The store `name` at `level` with `note` distributed, on connection 1.
fn distributed_at(d: &Dev, name: &str, level: SecurityLevel) -> StoreHandle {
    let a = GetStoreArgs {
        app: Some("com.example.notes".into()),
        config: StoreConfig::new(name, level),
    };
    let h = d.svc.get_rdb_store(1, &caller(), &a).unwrap().handle;
    exec(d, h, DDL, vec![]);
    d.svc
        .set_distributed_tables(
            1,
            &SetDistributedArgs {
                handle: h,
                tables: vec!["note".into()],
            },
        )
        .unwrap();
    h
}

/// `sync` on connection 1, off the runtime's threads as the SA runs it.
async fn sync_with(
    d: &Dev,
    h: StoreHandle,
    mode: SyncMode,
    devices: &[&str],
    timeout_ms: u64,
) -> Result<Vec<DeviceSyncResult>> {
    sync_table(d, h, mode, devices, timeout_ms, None).await
}

async fn sync_table(
    d: &Dev,
    h: StoreHandle,
    mode: SyncMode,
    devices: &[&str],
    timeout_ms: u64,
    table: Option<&str>,
) -> Result<Vec<DeviceSyncResult>> {
    let svc = d.svc.clone();
    let a = SyncArgs {
        handle: h,
        mode,
        devices: devices.iter().map(|d| d.to_string()).collect(),
        timeout_ms,
        table: table.map(String::from),
    };
    tokio::task::spawn_blocking(move || svc.sync(1, &a))
        .await
        .unwrap()
}

async fn sync(d: &Dev, h: StoreHandle, mode: SyncMode) -> Vec<DeviceSyncResult> {
    sync_with(d, h, mode, &[], 10_000).await.unwrap()
}

/// `remoteQuery` on connection 1 of `d`, to dev-b.
async fn remote(d: &Dev, h: StoreHandle, sql: &str, args: Vec<Value>) -> Result<RemotePage> {
    remote_to(d, h, "net-dev-b", sql, args).await
}

async fn remote_to(
    d: &Dev,
    h: StoreHandle,
    device: &str,
    sql: &str,
    args: Vec<Value>,
) -> Result<RemotePage> {
    remote_as(d, h, device, sql, args, 1).await
}

/// `remoteQuery` by a caller with token `token`.
async fn remote_as(
    d: &Dev,
    h: StoreHandle,
    device: &str,
    sql: &str,
    args: Vec<Value>,
    token: u32,
) -> Result<RemotePage> {
    let svc = d.svc.clone();
    let a = RemoteQueryArgs {
        handle: h,
        device: device.into(),
        sql: sql.into(),
        args,
    };
    tokio::task::spawn_blocking(move || svc.remote_query(1, token, &a))
        .await
        .unwrap()
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_then_a_pull_carry_rows_and_both_column_edits_survive() {
    let (a, b) = pair();
    let (ha, hb) = (distributed(&a), distributed(&b));
    for i in 0..50 {
        exec(
            &a,
            ha,
            "INSERT INTO note VALUES (?, ?, ?)",
            vec![Value::Integer(i), t("t"), t("b")],
        );
    }
    let r = sync(&a, ha, SyncMode::Push).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    assert_eq!(r[0].network_id, "net-dev-b");
    assert_eq!(rows(&b, hb), rows(&a, ha));
    assert_eq!(rows(&b, hb).len(), 50);
    // Concurrent edits of two columns of one row: both survive, both ways.
    exec(&a, ha, "UPDATE note SET title = 'A' WHERE id = 7", vec![]);
    exec(&b, hb, "UPDATE note SET body = 'B' WHERE id = 7", vec![]);
    let r = sync(&b, hb, SyncMode::PushPull).await;
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    assert_eq!(rows(&a, ha), rows(&b, hb));
    assert_eq!(rows(&a, ha)[7], vec![Value::Integer(7), t("A"), t("B")]);
    // A pull of nothing new succeeds and changes nothing.
    let before = rows(&a, ha);
    let r = sync(&a, ha, SyncMode::Pull).await;
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    assert_eq!(rows(&a, ha), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiving_device_checks_the_permission_the_store_and_its_level() {
    let (a, b) = pair();
    let ha = distributed(&a);
    exec(&a, ha, "INSERT INTO note VALUES (1, 't', 'b')", vec![]);
    // The peer has no such store: refused there, never made.
    let r = sync(&a, ha, SyncMode::Push).await;
    assert!(
        matches!(&r[0].status, SyncStatus::Failed(m) if m.contains("no such store")),
        "{r:?}"
    );
    assert!(!b._dir.path().join("com.example.notes/notes.db").exists());
    // The peer's copy of the app lacks DISTRIBUTED_DATASYNC.
    let hb = distributed(&b);
    b.bus.may_sync.store(false, Ordering::Relaxed);
    let r = sync(&a, ha, SyncMode::Push).await;
    assert_eq!(r[0].status, SyncStatus::PermissionDenied, "{r:?}");
    assert!(rows(&b, hb).is_empty());
    b.bus.may_sync.store(true, Ordering::Relaxed);
    let r = sync(&a, ha, SyncMode::Push).await;
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    assert_eq!(rows(&b, hb).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_does_not_go_to_an_sl1_device() {
    let (a, tx_a) = dev("dev-a", 3);
    let (b, tx_b) = dev("dev-b", 1);
    lock(&a.bus.peers).insert("dev-b".into(), tx_b);
    lock(&b.bus.peers).insert("dev-a".into(), tx_a);
    let (ha, hb) = (
        distributed_at(&a, "s3.db", SecurityLevel::S3),
        distributed_at(&b, "s3.db", SecurityLevel::S3),
    );
    exec(&a, ha, "INSERT INTO note VALUES (1, 't', 'b')", vec![]);
    let r = sync(&a, ha, SyncMode::Push).await;
    assert_eq!(r[0].status, SyncStatus::SecurityLevelMismatch, "{r:?}");
    assert!(rows(&b, hb).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_devices_are_reported_and_nothing_online_is_an_error() {
    let (a, _b) = pair();
    let ha = distributed(&a);
    let r = sync_with(&a, ha, SyncMode::Push, &["net-dev-z"], 1000)
        .await
        .unwrap();
    assert_eq!(r[0].status, SyncStatus::DeviceOffline);
    assert_eq!(r[0].network_id, "net-dev-z");
    *lock(&a.bus.online) = false;
    let e = sync_with(&a, ha, SyncMode::Push, &[], 1000)
        .await
        .unwrap_err();
    assert_eq!(e.code(), code::INNER_ERROR);
    // A store without distributed tables has nothing to sync.
    let h = open(&a, 1, "plain.db");
    let e = sync_with(&a, h, SyncMode::Push, &[], 10).await.unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_query_reads_the_peers_copy_and_never_writes() {
    let (a, b) = pair();
    let (ha, hb) = (distributed(&a), distributed(&b));
    exec(&b, hb, "INSERT INTO note VALUES (5, 'peer', 'x')", vec![]);
    let r = remote(
        &a,
        ha,
        "SELECT id, title FROM note WHERE id = ?",
        vec![Value::Integer(5)],
    )
    .await
    .unwrap();
    assert_eq!(r.columns, vec!["id", "title"]);
    assert_eq!(r.rows, vec![vec![Value::Integer(5), t("peer")]]);
    assert_eq!(r.more, None);
    // Nothing local came of it.
    assert!(rows(&a, ha).is_empty());
    let e = remote(&a, ha, "DELETE FROM note", vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), code::NOT_A_QUERY, "{e}");
    assert_eq!(rows(&b, hb).len(), 1);
    // A caller whose synced token lacks DISTRIBUTED_DATASYNC there, and another app's
    // token (which holds it) naming this app's store.
    for token in [2, 3] {
        let e = remote_as(&a, ha, "net-dev-b", "SELECT 1", vec![], token)
            .await
            .unwrap_err();
        assert_eq!(e.code(), code::PERMISSION_DENIED, "{token}: {e}");
    }
    // A device that is not online.
    let e = remote_to(&a, ha, "net-dev-q", "SELECT 1", vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), code::INNER_ERROR);
}

#[test]
fn a_peers_garbage_is_refused_and_store_ids_stay_inside_the_app() {
    assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    let d = |id: &str| StoreDesc {
        bundle: "com.example".into(),
        store_id: id.into(),
        kind: StoreType::SingleVersion,
        level: oxh_kvstore::limits::SecurityLevel::S1,
    };
    assert_eq!(
        config_of(&d("x/notes.db"))
            .unwrap()
            .relative_path()
            .unwrap(),
        std::path::Path::new("x/notes.db")
    );
    for bad in ["../notes.db", "/etc/passwd", "a//b", ""] {
        assert!(config_of(&d(bad)).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_result_up_to_4_mib_comes_in_pages_and_a_larger_one_is_refused() {
    let (a, b) = pair();
    let (ha, hb) = (distributed(&a), distributed(&b));
    // 30 rows of 100 KiB: 3 MiB, more than one reply, less than OpenHarmony's 4 MiB.
    for i in 0..30 {
        exec(
            &b,
            hb,
            "INSERT INTO note VALUES (?, ?, '')",
            vec![Value::Integer(i), Value::Text("x".repeat(100 * 1024))],
        );
    }
    let mut page = remote(&a, ha, "SELECT id, title FROM note ORDER BY id", vec![])
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut pages = 1;
    loop {
        assert!(oxh_ipc::encode(&page).len() <= MAX_RESULT_BYTES);
        assert_eq!(page.columns, vec!["id", "title"]);
        ids.extend(page.rows.iter().map(|r| r[0].clone()));
        let Some(cursor) = page.more else { break };
        page = a
            .svc
            .remote_query_next(1, &NextPageArgs { cursor })
            .unwrap();
        pages += 1;
    }
    assert!(pages >= 4, "{pages} pages");
    assert_eq!(ids, (0..30).map(Value::Integer).collect::<Vec<_>>());
    // A read cursor is gone; another connection never sees one.
    let p = remote(&a, ha, "SELECT id, title FROM note", vec![])
        .await
        .unwrap();
    let cursor = p.more.unwrap();
    assert_eq!(
        a.svc
            .remote_query_next(2, &NextPageArgs { cursor })
            .unwrap_err()
            .code(),
        code::ALREADY_CLOSED
    );
    a.svc.client_died(1);
    assert_eq!(
        a.svc
            .remote_query_next(1, &NextPageArgs { cursor })
            .unwrap_err()
            .code(),
        code::ALREADY_CLOSED
    );
    // Over 4 MiB: the peer refuses it.
    for i in 30..45 {
        exec(
            &b,
            hb,
            "INSERT INTO note VALUES (?, ?, '')",
            vec![Value::Integer(i), Value::Text("x".repeat(100 * 1024))],
        );
    }
    let ha2 = open(&a, 1, "notes.db");
    let e = remote(&a, ha2, "SELECT * FROM note", vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_by_the_predicates_table_carries_that_table_only() {
    let (a, b) = pair();
    let (ha, hb) = (distributed(&a), distributed(&b));
    for d in [(&a, ha), (&b, hb)] {
        exec(
            d.0,
            d.1,
            "CREATE TABLE tag(id INTEGER PRIMARY KEY, name TEXT)",
            vec![],
        );
    }
    for d in [(&a, ha), (&b, hb)] {
        d.0.svc
            .set_distributed_tables(
                1,
                &SetDistributedArgs {
                    handle: d.1,
                    tables: vec!["tag".into()],
                },
            )
            .unwrap();
    }
    exec(&a, ha, "INSERT INTO note VALUES (1, 'n', 'b')", vec![]);
    exec(&a, ha, "INSERT INTO tag VALUES (1, 't')", vec![]);
    let tags = |d: &Dev, h| {
        d.svc
            .query_sql(
                1,
                &QuerySqlArgs {
                    handle: h,
                    sql: "SELECT * FROM tag".into(),
                    args: vec![],
                },
            )
            .unwrap()
            .rows
            .len()
    };
    let r = sync_table(&a, ha, SyncMode::Push, &[], 10_000, Some("note"))
        .await
        .unwrap();
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    assert_eq!(rows(&b, hb).len(), 1);
    assert_eq!(tags(&b, hb), 0, "only the predicates' table went");
    // Its own watermark: a sync of every table still carries the rest.
    let r = sync(&a, ha, SyncMode::Push).await;
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    assert_eq!(tags(&b, hb), 1);
    // A table that is not distributed here, or not on the peer.
    let e = sync_table(&a, ha, SyncMode::Push, &[], 1000, Some("nope"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS);
    exec(
        &a,
        ha,
        "CREATE TABLE only_a(id INTEGER PRIMARY KEY)",
        vec![],
    );
    a.svc
        .set_distributed_tables(
            1,
            &SetDistributedArgs {
                handle: ha,
                tables: vec!["only_a".into()],
            },
        )
        .unwrap();
    let r = sync_table(&a, ha, SyncMode::Push, &[], 10_000, Some("only_a"))
        .await
        .unwrap();
    assert!(
        matches!(&r[0].status, SyncStatus::Failed(m) if m.contains("not a distributed table here")),
        "{r:?}"
    );
}

// ------------------------------------------------------------ on('dataChange')

/// A connection of an app to `d`'s service, with the events pushed to it.
struct Watch {
    conn: oxh_ipc::ConnHandle,
    rx: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    h: StoreHandle,
}

fn watch(d: &Dev, kind: i32) -> Watch {
    let (conn, rx) = oxh_ipc::ConnHandle::detached(caller());
    let a = GetStoreArgs {
        app: Some("com.example.notes".into()),
        config: StoreConfig::new("notes.db", SecurityLevel::S1),
    };
    let h = d
        .svc
        .get_rdb_store(conn.id(), &caller(), &a)
        .unwrap()
        .handle;
    d.svc
        .subscribe(
            &conn,
            &SubscribeArgs {
                handle: h,
                sub: 7,
                kind,
            },
        )
        .unwrap();
    Watch { conn, rx, h }
}

impl Watch {
    /// The next event (bounded wait).
    async fn next(&mut self) -> RdbEvent {
        let f = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("the connection is open");
        let mut dec = oxh_ipc::frame::FrameDecoder::new();
        dec.extend(&f);
        let Ok(Some(oxh_ipc::frame::Decoded::Frame(fr))) = dec.decode_next() else {
            panic!("not a frame");
        };
        assert_eq!(fr.id, 7, "on the subscription's id");
        oxh_ipc::decode(&fr.body).unwrap()
    }
    fn nothing(&mut self) -> bool {
        self.rx.try_recv().is_err()
    }
}

fn local(ev: RdbEvent) -> Vec<ChangeInfo> {
    let RdbEvent::DataChange {
        remote,
        changes,
        devices,
        store,
    } = ev;
    assert!(!remote && devices.is_empty());
    assert_eq!(store, "notes.db");
    changes
}

fn key(i: i64) -> Vec<Value> {
    vec![Value::Integer(i)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_observers_hear_committed_rows_by_primary_key_and_nothing_of_a_rollback() {
    let (a, _b) = pair();
    let h = distributed(&a);
    let mut w = watch(&a, SUBSCRIBE_TYPE_LOCAL_DETAILS);
    exec(&a, h, "INSERT INTO note VALUES (1, 't', 'b')", vec![]);
    let c = local(w.next().await);
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].table.as_str(), c[0].change_type),
        ("note", DATA_CHANGE)
    );
    assert_eq!(c[0].inserted, vec![key(1)]);
    exec(&a, h, "UPDATE note SET title = 'x' WHERE id = 1", vec![]);
    assert_eq!(local(w.next().await)[0].updated, vec![key(1)]);
    exec(&a, h, "DELETE FROM note WHERE id = 1", vec![]);
    assert_eq!(local(w.next().await)[0].deleted, vec![key(1)]);
    // A transaction: nothing until it commits; a rolled-back one never.
    a.svc
        .begin_transaction(1, &BeginArgs { handle: h, kind: 1 })
        .unwrap();
    exec(&a, h, "INSERT INTO note VALUES (2, 't', 'b')", vec![]);
    assert!(w.nothing());
    a.svc
        .end_transaction(1, &HandleArgs { handle: h }, false)
        .unwrap();
    assert!(w.nothing());
    a.svc
        .begin_transaction(1, &BeginArgs { handle: h, kind: 1 })
        .unwrap();
    exec(&a, h, "INSERT INTO note VALUES (3, 't', 'b')", vec![]);
    exec(&a, h, "INSERT INTO note VALUES (4, 't', 'b')", vec![]);
    a.svc
        .end_transaction(1, &HandleArgs { handle: h }, true)
        .unwrap();
    assert_eq!(local(w.next().await)[0].inserted, vec![key(3), key(4)]);
    assert!(w.nothing());
    // off: no more.
    a.svc
        .unsubscribe(
            &w.conn,
            &SubscribeArgs {
                handle: w.h,
                sub: 7,
                kind: SUBSCRIBE_TYPE_LOCAL_DETAILS,
            },
        )
        .unwrap();
    exec(&a, h, "INSERT INTO note VALUES (5, 't', 'b')", vec![]);
    assert!(w.nothing());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_8_observers_a_store_they_go_with_their_connection_and_no_cloud() {
    let (a, _b) = pair();
    distributed(&a);
    let ws: Vec<Watch> = (0..8).map(|_| watch(&a, SUBSCRIBE_TYPE_REMOTE)).collect();
    let (conn, _rx) = oxh_ipc::ConnHandle::detached(caller());
    let ga = GetStoreArgs {
        app: Some("com.example.notes".into()),
        config: StoreConfig::new("notes.db", SecurityLevel::S1),
    };
    let h = a
        .svc
        .get_rdb_store(conn.id(), &caller(), &ga)
        .unwrap()
        .handle;
    let sa = |kind| SubscribeArgs {
        handle: h,
        sub: 1,
        kind,
    };
    let e = a
        .svc
        .subscribe(&conn, &sa(SUBSCRIBE_TYPE_REMOTE))
        .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS, "{e}");
    assert_eq!(
        a.svc
            .subscribe(&conn, &sa(SUBSCRIBE_TYPE_CLOUD))
            .unwrap_err()
            .code(),
        code::NOT_SUPPORTED
    );
    assert_eq!(
        a.svc.subscribe(&conn, &sa(9)).unwrap_err().code(),
        code::INVALID_ARGS
    );
    a.svc.client_died(ws[0].conn.id());
    a.svc.subscribe(&conn, &sa(SUBSCRIBE_TYPE_REMOTE)).unwrap();
    // Another connection's handle is not ours to observe.
    let (other, _orx) = oxh_ipc::ConnHandle::detached(caller());
    let e = a
        .svc
        .subscribe(
            &other,
            &SubscribeArgs {
                handle: h,
                sub: 1,
                kind: SUBSCRIBE_TYPE_REMOTE,
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), code::ALREADY_CLOSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_observers_hear_a_syncs_rows_and_their_device() {
    let (a, b) = pair();
    let (ha, _hb) = (distributed(&a), distributed(&b));
    let mut wb = watch(&b, SUBSCRIBE_TYPE_REMOTE);
    let mut lb = watch(&b, SUBSCRIBE_TYPE_LOCAL_DETAILS);
    exec(&a, ha, "INSERT INTO note VALUES (1, 't', 'b')", vec![]);
    exec(&a, ha, "INSERT INTO note VALUES (2, 't', 'b')", vec![]);
    let r = sync(&a, ha, SyncMode::Push).await;
    assert_eq!(r[0].status, SyncStatus::Success);
    let RdbEvent::DataChange {
        remote,
        devices,
        changes,
        ..
    } = wb.next().await;
    assert!(remote);
    assert_eq!(devices, vec!["dev-a".to_string()]);
    assert_eq!(changes[0].inserted, vec![key(1), key(2)]);
    // Not a local change on b, not even after b's next own write.
    exec(&b, _hb, "INSERT INTO note VALUES (3, 't', 'b')", vec![]);
    assert_eq!(local(lb.next().await)[0].inserted, vec![key(3)]);
    assert!(lb.nothing());
}
