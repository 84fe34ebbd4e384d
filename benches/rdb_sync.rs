//! Relational store sync between two devices: 100,000 rows of about 100 bytes (an integer
//! key, a 60-byte title, a 32-byte body) in a distributed table, pushed from one `oxhd` to
//! another on loopback (bound with a PIN), through the SDK's `sync`. Reports the time beside
//! the goal (< 1.5 s) and the bytes the sync handed to the soft bus against the values' bytes
//! (goal ≤ 1.3x), from the service's own counters.
//!
//! Run: `cargo bench --bench rdb_sync`. `OXH_BENCH_RDB_ROWS` changes the size.

mod common;

use oxh_sdk::rdb::{self, RdbPredicates, SecurityLevel, StoreConfig, SyncMode, SyncStatus, Value};
use std::time::{Duration, Instant};

const APP: &str = "com.example.bench";
const GOAL_S: f64 = 1.5;

async fn store(dev: &oxh_sdk::Device) -> rdb::RdbStore {
    let s = rdb::get_rdb_store(
        dev,
        Some(APP),
        StoreConfig::new("bench.db", SecurityLevel::S1),
    )
    .await
    .expect("store");
    s.execute_sql(
        "CREATE TABLE IF NOT EXISTS note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)",
        vec![],
    )
    .await
    .expect("table");
    s.set_distributed_tables(&["note"])
        .await
        .expect("distribute");
    s
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: i64 = common::env_num("OXH_BENCH_RDB_ROWS", 100_000);
    let base = tempfile::tempdir().expect("tmp");
    let rt = common::multi_thread_runtime();
    rt.block_on(async {
        let (_a, b, da, db) = common::bound_pair(base.path()).await;
        let (sa, sb) = (store(&da).await, store(&db).await);
        for c in 0..(rows + 499) / 500 {
            let batch: Vec<_> = (c * 500..((c + 1) * 500).min(rows))
                .map(|i| {
                    vec![
                        ("id".to_string(), Value::Integer(i)),
                        ("title".to_string(), Value::Text(format!("{i:060}"))),
                        ("body".to_string(), Value::Text("b".repeat(32))),
                    ]
                })
                .collect();
            sa.batch_insert("note", batch).await.expect("batch");
        }
        let sa_id = oxh_rdb::api::SA_ID;
        let before = common::sent_counters(
            &da.samgr().dump(sa_id, vec![]).await.expect("dump"),
            "rdb sync sent:",
        );
        let to_b = RdbPredicates::new("note").in_devices(vec![b.field("udid")]);
        let t = Instant::now();
        let r = sa
            .sync(SyncMode::Push, &to_b, Duration::from_secs(120))
            .await
            .expect("sync");
        let took = t.elapsed().as_secs_f64();
        assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
        let after = common::sent_counters(
            &da.samgr().dump(sa_id, vec![]).await.expect("dump"),
            "rdb sync sent:",
        );
        let mut rs = sb
            .query_sql("SELECT count(*) FROM note", vec![])
            .await
            .expect("count");
        assert!(rs.go_to_next_row().expect("row"));
        assert_eq!(rs.get_long(0).expect("n"), rows, "b has every row");
        let (wire, payload) = (after.0 - before.0, after.1 - before.1);
        println!(
            "rdb sync {rows} rows a → b (loopback): {took:.2} s ({:.0} rows/s); goal < {GOAL_S} s: {:.2}x of the goal",
            rows as f64 / took,
            took / GOAL_S
        );
        println!(
            "rdb sync bytes to the soft bus {wire} / values' bytes {payload} = {:.3}x (goal ≤ 1.3x)",
            wire as f64 / payload as f64
        );
    });
}
