//! Relational store benchmark (issue 17), each figure beside its peer in the same run, on the
//! same disk (one temp dir), every store WAL + `synchronous=FULL`:
//! - insert throughput into a distributed table against the same table in plain SQLite
//!   (rusqlite, no triggers) and in an `RdbStore` without `setDistributedTables` (so the
//!   API's own cost is seen apart from the change log): the same rows, the same batching
//!   (`batchInsert` of 128 rows, one transaction; and single durable inserts);
//! - applying 100,000 incoming changes from a peer: 100,000 new rows (3 cells each), then
//!   100,000 one-column updates of rows the receiver has, in changesets of
//!   [`CHUNK`] rows, each applied in one transaction (decode included);
//! - wire bytes of those changesets (postcard) against their payload: the bytes of the
//!   key and cell values, counted as SQLite's record format stores them (an integer in
//!   the fewest bytes of 1, 2, 3, 4, 6, 8 that hold it, 0 for 0 and 1; text and blobs
//!   their length; a real 8).
//!
//! Run: `cargo bench -p oxh-rdb --bench rdb`. `OXH_BENCH_ROWS` changes the row count.

use oxh_rdb::{
    Changeset, RdbPredicates, RdbStore, SecurityLevel, StoreConfig, Value, ValuesBucket,
};
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rows per batchInsert (one transaction), as the KV bench batches.
const BATCH: usize = 128;
/// Single durable inserts, each its own transaction.
const SINGLE: usize = 500;
/// Rows per changeset: what the sync would send in one packet (well under 4 MiB).
const CHUNK: usize = 10_000;
/// Device ids as long as OpenHarmony's udid (64 hex digits).
const DEV_A: &str = "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const DEV_B: &str = "0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff0";

const SCHEMA: &str =
    "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT, stars INTEGER)";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn title(i: usize) -> String {
    format!("note title {i:08}")
}
fn body(i: usize) -> String {
    format!("{i:08} the body of a note, some sixty-four bytes of text in it...")[..64].to_string()
}

fn bucket(i: usize) -> ValuesBucket {
    ValuesBucket::new()
        .with("id", i as i64)
        .with("title", title(i))
        .with("body", body(i))
        .with("stars", (i % 5) as i64)
}

fn plain(dir: &Path) -> Connection {
    let c = Connection::open(dir.join("plain.db")).expect("open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("full");
    c.execute_batch(SCHEMA).expect("schema");
    c
}

fn store(dir: &Path, name: &str, dev: &str, distributed: bool) -> RdbStore {
    let s = RdbStore::open(dir, &StoreConfig::new(name, SecurityLevel::S1), dev).expect("open");
    s.execute(SCHEMA, &[]).expect("schema");
    if distributed {
        s.set_distributed_tables(&["note"]).expect("distribute");
    }
    s
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The multi-row INSERT batchInsert makes, for plain SQLite.
fn plain_batch(c: &mut Connection, from: usize, n: usize) {
    let tx = c.transaction().expect("tx");
    {
        let marks = vec!["(?, ?, ?, ?)"; n].join(", ");
        let mut st = tx
            .prepare_cached(&format!(
                "INSERT INTO note (id, title, body, stars) VALUES {marks}"
            ))
            .expect("prep");
        let vals: Vec<Value> = (from..from + n)
            .flat_map(|i| {
                [
                    Value::from(i as i64),
                    Value::from(title(i)),
                    Value::from(body(i)),
                    Value::from((i % 5) as i64),
                ]
            })
            .collect();
        st.execute(rusqlite::params_from_iter(vals.iter()))
            .expect("insert");
    }
    tx.commit().expect("commit");
}

fn inserts(dir: &Path, rows: usize) {
    let mut p = plain(dir);
    let local = store(dir, "local.db", DEV_A, false);
    let dist = store(dir, "dist.db", DEV_A, true);
    // Batched, interleaved batch by batch so all three meet the same disk state.
    let (mut tp, mut tl, mut td) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for b in 0..rows / BATCH {
        let from = b * BATCH;
        let batch: Vec<ValuesBucket> = (from..from + BATCH).map(bucket).collect();
        let t = Instant::now();
        plain_batch(&mut p, from, BATCH);
        tp += t.elapsed();
        let t = Instant::now();
        local.batch_insert("note", &batch).expect("local");
        tl += t.elapsed();
        let t = Instant::now();
        dist.batch_insert("note", &batch).expect("dist");
        td += t.elapsed();
    }
    let n = rows / BATCH * BATCH;
    let (rp, rl, rd) = (rate(n, tp), rate(n, tl), rate(n, td));
    println!(
        "batchInsert ({BATCH}/tx, {n} rows): distributed {rd:>9.0}/s  plain SQLite {rp:>9.0}/s  ratio {:.2}x (goal ≥ 0.6x)",
        rd / rp
    );
    println!(
        "    same table in an RdbStore, not distributed {rl:>9.0}/s ({:.2}x plain); distributed / not distributed {:.2}x",
        rl / rp,
        rd / rl
    );
    // Single durable inserts, each its own transaction.
    let (mut tp, mut tl, mut td) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for i in n..n + SINGLE {
        let b = bucket(i);
        let t = Instant::now();
        p.prepare_cached("INSERT INTO note (id, title, body, stars) VALUES (?, ?, ?, ?)")
            .expect("prep")
            .execute(params![i as i64, title(i), body(i), (i % 5) as i64])
            .expect("insert");
        tp += t.elapsed();
        let t = Instant::now();
        local.insert("note", &b).expect("local");
        tl += t.elapsed();
        let t = Instant::now();
        dist.insert("note", &b).expect("dist");
        td += t.elapsed();
    }
    let (rp, rl, rd) = (rate(SINGLE, tp), rate(SINGLE, tl), rate(SINGLE, td));
    println!(
        "single insert (durable, {SINGLE}):  distributed {rd:>9.0}/s  plain SQLite {rp:>9.0}/s  ratio {:.2}x; not distributed {rl:>9.0}/s",
        rd / rp
    );
    // The same rows updated one column each, batched in transactions of BATCH.
    let (mut tp, mut td) = (Duration::ZERO, Duration::ZERO);
    for b in 0..rows / BATCH {
        let from = b * BATCH;
        let t = Instant::now();
        {
            let tx = p.transaction().expect("tx");
            for i in from..from + BATCH {
                tx.prepare_cached("UPDATE note SET stars = ?1 WHERE id = ?2")
                    .expect("prep")
                    .execute(params![((i + 1) % 5) as i64, i as i64])
                    .expect("update");
            }
            tx.commit().expect("commit");
        }
        tp += t.elapsed();
        let t = Instant::now();
        dist.begin_transaction().expect("begin");
        for i in from..from + BATCH {
            let mut pr = RdbPredicates::new("note");
            pr.equal_to("id", i as i64);
            dist.update(
                &ValuesBucket::new().with("stars", ((i + 1) % 5) as i64),
                &pr,
            )
            .expect("update");
        }
        dist.commit().expect("commit");
        td += t.elapsed();
    }
    let (rp, rd) = (rate(n, tp), rate(n, td));
    println!(
        "update one column ({BATCH}/tx):    distributed {rd:>9.0}/s  plain SQLite {rp:>9.0}/s  ratio {:.2}x",
        rd / rp
    );
}

/// A value's bytes as SQLite's record format stores them.
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Integer(0 | 1) => 0,
        Value::Integer(i) => {
            let i = *i;
            [(1, 7), (2, 15), (3, 23), (4, 31), (6, 47)]
                .iter()
                .find(|(_, bits)| (-(1i64 << bits)..(1i64 << bits)).contains(&i))
                .map_or(8, |(b, _)| *b)
        }
        Value::Real(_) => 8,
        Value::Text(s) => s.len(),
        Value::Blob(b) => b.len(),
    }
}

fn payload(cs: &Changeset) -> usize {
    cs.rows
        .iter()
        .map(|r| {
            r.pk.iter().map(value_bytes).sum::<usize>()
                + r.cells.iter().map(|c| value_bytes(&c.value)).sum::<usize>()
        })
        .sum()
}

/// Every change of `from` after watermark 0, as encoded changesets of CHUNK rows.
fn changesets(from: &RdbStore, after: u64) -> (Vec<Vec<u8>>, usize, usize, Duration) {
    let mut out = Vec::new();
    let (mut rows, mut pay) = (0, 0);
    let mut w = after;
    let t = Instant::now();
    loop {
        let cs = from.changes_since(w, CHUNK).expect("changes");
        if cs.rows.is_empty() {
            break;
        }
        rows += cs.rows.len();
        pay += payload(&cs);
        w = cs.upto;
        out.push(cs.encode().expect("encode"));
    }
    (out, rows, pay, t.elapsed())
}

fn apply(to: &RdbStore, sets: &[Vec<u8>]) -> Duration {
    let t = Instant::now();
    for b in sets {
        let cs = Changeset::decode(b).expect("decode");
        to.apply_changeset(&cs).expect("apply");
    }
    t.elapsed()
}

fn changes(dir: &Path, rows: usize) {
    let a = store(dir, "peer-a.db", DEV_A, true);
    let b = store(dir, "peer-b.db", DEV_B, true);
    for c in 0..rows.div_ceil(BATCH) {
        let batch: Vec<ValuesBucket> = (c * BATCH..((c + 1) * BATCH).min(rows))
            .map(bucket)
            .collect();
        a.batch_insert("note", &batch).expect("a");
    }
    let w0 = 0;
    let (sets, n, pay, made) = changesets(&a, w0);
    assert_eq!(n, rows, "every row in the changesets");
    let wire: usize = sets.iter().map(Vec::len).sum();
    let took = apply(&b, &sets);
    let got: i64 = b
        .query_sql("SELECT count(*) FROM note", &[])
        .and_then(|mut r| {
            r.go_to_first_row()?;
            r.get_long(0)
        })
        .expect("count");
    assert_eq!(got as usize, rows, "b holds every row");
    println!(
        "apply {rows} new rows ({} cells) from a peer, {} changesets: {:.3} s ({:.0} rows/s; goal < 1 s); making them on the peer {:.3} s",
        rows * 3,
        sets.len(),
        took.as_secs_f64(),
        rate(rows, took),
        made.as_secs_f64()
    );
    println!(
        "    wire {wire} B / payload {pay} B = {:.3}x (goal ≤ 1.3x); {:.1} B per row",
        wire as f64 / pay as f64,
        wire as f64 / rows as f64
    );
    // 100,000 one-column updates on a, merged into b's rows.
    let w1 = a.changes_since(0, usize::MAX).expect("all").upto;
    for c in 0..rows.div_ceil(BATCH) {
        a.begin_transaction().expect("begin");
        for i in c * BATCH..((c + 1) * BATCH).min(rows) {
            let mut pr = RdbPredicates::new("note");
            pr.equal_to("id", i as i64);
            a.update(
                &ValuesBucket::new().with("title", format!("{} (edited)", title(i))),
                &pr,
            )
            .expect("update");
        }
        a.commit().expect("commit");
    }
    let (sets, n, pay, made) = changesets(&a, w1);
    assert_eq!(n, rows);
    let wire: usize = sets.iter().map(Vec::len).sum();
    let took = apply(&b, &sets);
    println!(
        "apply {rows} one-column updates from a peer: {:.3} s ({:.0} changes/s; goal < 1 s); making them {:.3} s",
        took.as_secs_f64(),
        rate(rows, took),
        made.as_secs_f64()
    );
    println!(
        "    wire {wire} B / payload {pay} B = {:.3}x; {:.1} B per row",
        wire as f64 / pay as f64,
        wire as f64 / rows as f64
    );
    // Applying the same again finds nothing that wins.
    let again = apply(&b, &sets);
    println!(
        "    the same changesets again (nothing wins): {:.3} s",
        again.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_num("OXH_BENCH_ROWS", 100_000);
    let d = tempfile::tempdir().expect("tmp");
    inserts(d.path(), rows);
    changes(d.path(), rows);
}
