//! KV store benchmark. Storage: our store (`oxh_kvstore::store::Store`: LWW rows with HLC,
//! sequence numbers and change lists) beside plain SQLite (rusqlite, one key/value table)
//! doing the same work in the same run, with the same durability (WAL, synchronous=FULL):
//! single-put throughput and durable latency p50, batched puts (128 per transaction), gets.
//! Through the daemon: SDK put p50 (app → IPC → SA → SQLite commit → reply). Sync: 100,000
//! entries of 100 bytes from one `oxhd` to another on loopback (bound with a PIN): time, and
//! the bytes the sync handed to the soft bus against the key + value bytes.
//!
//! Run: `cargo bench --bench kv`. `OXH_BENCH_SYNC_ENTRIES` changes the sync size.

mod common;

use oxh_kvstore::limits::{SecurityLevel, StoreType};
use oxh_kvstore::store::{Store, StoreMeta};
use oxh_sdk::kv::{KVManager, Options, SyncMode, SyncStatus};
use rusqlite::{Connection, params};
use std::time::{Duration, Instant};

const SINGLE: usize = 500;
const BATCHED: usize = 100_000;
const GETS: usize = 100_000;

fn p50(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

fn plain(dir: &std::path::Path) -> Connection {
    let c = Connection::open(dir.join("plain.db")).expect("open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("full");
    c.execute_batch("CREATE TABLE IF NOT EXISTS kv(key BLOB PRIMARY KEY, value BLOB NOT NULL)")
        .expect("schema");
    c
}

fn ours(dir: &std::path::Path) -> Store {
    Store::open(
        &dir.join("ours.db"),
        "bench-device",
        StoreMeta {
            kind: StoreType::SingleVersion,
            level: SecurityLevel::S1,
            auto_sync: false,
        },
        true,
    )
    .expect("open")
}

fn storage() {
    let d = tempfile::tempdir().expect("tmp");
    let value = vec![b'v'; 100];
    let mut s = ours(d.path());
    let c = plain(d.path());

    // Single durable puts, interleaved so both see the same disk state.
    let (mut lo, mut lp) = (Vec::new(), Vec::new());
    for i in 0..SINGLE {
        let t = Instant::now();
        s.write(vec![(key(i), Some(value.clone()))]).expect("put");
        lo.push(t.elapsed());
        let t = Instant::now();
        c.prepare_cached("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)")
            .expect("prep")
            .execute(params![key(i), value])
            .expect("put");
        lp.push(t.elapsed());
    }
    let (so, sp): (Duration, Duration) = (lo.iter().sum(), lp.iter().sum());
    let (to, tp) = (
        SINGLE as f64 / so.as_secs_f64(),
        SINGLE as f64 / sp.as_secs_f64(),
    );
    println!(
        "single put (durable):  ours {to:>9.0}/s  plain SQLite {tp:>9.0}/s  ratio {:.2}x",
        to / tp
    );
    let (po, pp) = (p50(&mut lo), p50(&mut lp));
    println!(
        "single put p50:        ours {:>8.3} ms  plain SQLite {:>8.3} ms  ratio {:.2}x",
        po.as_secs_f64() * 1e3,
        pp.as_secs_f64() * 1e3,
        po.as_secs_f64() / pp.as_secs_f64()
    );

    // Batched puts: 128 per transaction.
    let t = Instant::now();
    for b in 0..BATCHED / 128 {
        let ops = (0..128)
            .map(|i| (key(SINGLE + b * 128 + i), Some(value.clone())))
            .collect();
        s.write(ops).expect("batch");
    }
    let bo = (BATCHED / 128 * 128) as f64 / t.elapsed().as_secs_f64();
    let mut c = c;
    let t = Instant::now();
    for b in 0..BATCHED / 128 {
        let tx = c.transaction().expect("tx");
        {
            let mut st = tx
                .prepare_cached("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)")
                .expect("prep");
            for i in 0..128 {
                st.execute(params![key(SINGLE + b * 128 + i), value])
                    .expect("put");
            }
        }
        tx.commit().expect("commit");
    }
    let bp = (BATCHED / 128 * 128) as f64 / t.elapsed().as_secs_f64();
    println!(
        "batched put (128/tx):  ours {bo:>9.0}/s  plain SQLite {bp:>9.0}/s  ratio {:.2}x",
        bo / bp
    );

    // Gets of present keys, in a scattered order.
    let n = SINGLE + BATCHED / 128 * 128;
    let order: Vec<usize> = (0..GETS).map(|i| (i * 7919) % n).collect();
    let t = Instant::now();
    for &i in &order {
        assert!(s.get("", &key(i)).expect("get").is_some());
    }
    let go = GETS as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for &i in &order {
        let v: Vec<u8> = c
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .expect("prep")
            .query_row([key(i)], |r| r.get(0))
            .expect("get");
        assert_eq!(v.len(), 100);
    }
    let gp = GETS as f64 / t.elapsed().as_secs_f64();
    println!(
        "get:                   ours {go:>9.0}/s  plain SQLite {gp:>9.0}/s  ratio {:.2}x",
        go / gp
    );
}

fn sync() {
    let entries: usize = common::env_num("OXH_BENCH_SYNC_ENTRIES", 100_000);
    let base = tempfile::tempdir().expect("tmp");
    let rt = common::multi_thread_runtime();
    rt.block_on(async {
        let (_a, _b, da, db) = common::bound_pair(base.path()).await;
        let sa = KVManager::new(&da, Some("com.example.bench"))
            .get_single_kv_store("bench", Options::default())
            .await
            .expect("store a");
        // Through the daemon: one durable put per call.
        let mut lat = Vec::new();
        for i in 0..SINGLE {
            let t = Instant::now();
            sa.put(format!("ipc{i}").as_bytes(), &[b'v'; 100])
                .await
                .expect("put");
            lat.push(t.elapsed());
        }
        println!(
            "SDK put p50 (app → daemon → durable commit): {:.3} ms",
            p50(&mut lat).as_secs_f64() * 1e3
        );
        sa.delete_batch(&(0..128).map(|i| format!("ipc{i}").into_bytes()).collect::<Vec<_>>())
            .await
            .expect("del");
        for c in 0..entries.div_ceil(128) {
            let batch: Vec<(Vec<u8>, Vec<u8>)> = (c * 128..((c + 1) * 128).min(entries))
                .map(|i| (key(i), vec![b'x'; 100 - key(i).len()]))
                .collect();
            sa.put_batch(&batch).await.expect("batch");
        }
        let before = common::sent_counters(
            &da.samgr().dump(oxh_kvstore::api::SA_ID, vec![]).await.expect("dump"),
            "sync sent:",
        );
        let t = Instant::now();
        let r = sa
            .sync(&[], SyncMode::Push, Duration::from_secs(120))
            .await
            .expect("sync");
        let took = t.elapsed();
        assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
        let after = common::sent_counters(
            &da.samgr().dump(oxh_kvstore::api::SA_ID, vec![]).await.expect("dump"),
            "sync sent:",
        );
        let sb = KVManager::new(&db, Some("com.example.bench"))
            .get_single_kv_store("bench", Options::default())
            .await
            .expect("store b");
        let got = sb.get_entries(b"key").await.expect("entries").len();
        assert_eq!(got, entries, "b has every entry");
        let (wire, payload) = (after.0 - before.0, after.1 - before.1);
        println!(
            "sync {entries} × 100 B entries a → b (loopback): {:.2} s ({:.0} entries/s; goal < 2 s)",
            took.as_secs_f64(),
            entries as f64 / took.as_secs_f64()
        );
        println!(
            "sync bytes to the soft bus {wire} / key+value bytes {payload} = {:.3}x (goal ≤ 1.2x)",
            wire as f64 / payload as f64
        );

        // Auto sync: a put on a reaches b by itself; time from put() returning to b's event.
        let opts = Options {
            auto_sync: true,
            ..Options::default()
        };
        let aa = KVManager::new(&da, Some("com.example.bench"))
            .get_single_kv_store("auto", opts.clone())
            .await
            .expect("auto a");
        let ab = KVManager::new(&db, Some("com.example.bench"))
            .get_single_kv_store("auto", opts)
            .await
            .expect("auto b");
        let mut w = ab
            .on_data_change(oxh_sdk::kv::SubscribeType::Remote)
            .await
            .expect("watch");
        let mut lat = Vec::new();
        for i in 0..30u64 {
            // Idle first (the previous round is over), at a varying phase of the 50 ms tick.
            tokio::time::sleep(Duration::from_millis(100 + (i * 17) % 50)).await;
            let k = format!("auto{i}");
            aa.put(k.as_bytes(), b"v").await.expect("put");
            let t = Instant::now();
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Some(oxh_sdk::kv::DataChange::Change { inserted, .. }) = w.next().await
                        && inserted.iter().any(|e| e.key == k.as_bytes())
                    {
                        return;
                    }
                }
            })
            .await
            .expect("auto sync delivered");
            lat.push(t.elapsed());
        }
        let mut l2 = lat.clone();
        l2.sort();
        println!(
            "auto sync, put on a → change event on b: p50 {:.1} ms, max {:.1} ms (goal ≤ 100 ms)",
            p50(&mut lat).as_secs_f64() * 1e3,
            l2[l2.len() - 1].as_secs_f64() * 1e3
        );
    });
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    storage();
    sync();
}
