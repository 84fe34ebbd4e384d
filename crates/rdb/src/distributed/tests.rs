//! Distributed tables on real stores: what is refused, what the log records, changesets in
//! and out, and OpenHarmony's whole-row rule beside ours.

use crate::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A store of device `dev` at virtual time `clock` (ms).
pub(crate) fn open(dir: &Path, dev: &str, clock: Arc<AtomicU64>) -> RdbStore {
    let cfg = StoreConfig::new(format!("{dev}.db"), SecurityLevel::S1);
    RdbStore::open_with_clock(
        dir,
        &cfg,
        dev,
        Arc::new(move || clock.load(Ordering::Relaxed)),
    )
    .unwrap()
}

const NOTE: &str = "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)";

fn note(s: &RdbStore) {
    s.execute(NOTE, &[]).unwrap();
    s.set_distributed_tables(&["note"]).unwrap();
}

/// Every row of `table`, sorted.
pub(crate) fn rows(s: &RdbStore, table: &str) -> Vec<Vec<Value>> {
    let rs = s
        .query_sql(&format!("SELECT * FROM {table} ORDER BY 1, 2"), &[])
        .unwrap();
    rs.rows().to_vec()
}

/// Sends everything `from` has that `to` lacks, acknowledged; what `to` applied.
pub(crate) fn sync(from: &RdbStore, to: &RdbStore) -> Vec<Applied> {
    let mut out = Vec::new();
    loop {
        let w = from.peer_watermark(to.device()).unwrap();
        let cs = from.changes_since(w, 2).unwrap();
        if cs.upto == w && cs.rows.is_empty() {
            return out;
        }
        out.push(to.apply_changeset(&cs).unwrap());
        from.ack(to.device(), cs.from, cs.upto).unwrap();
    }
}

fn put(s: &RdbStore, id: i64, title: &str, body: &str) {
    s.insert_with(
        "note",
        &ValuesBucket::new()
            .with("id", id)
            .with("title", title)
            .with("body", body),
        ConflictResolution::Replace,
    )
    .unwrap();
}

fn set(s: &RdbStore, id: i64, col: &str, v: &str) {
    let mut p = RdbPredicates::new("note");
    p.equal_to("id", id);
    assert_eq!(s.update(&ValuesBucket::new().with(col, v), &p).unwrap(), 1);
}

fn t(v: &str) -> Value {
    Value::from(v)
}

#[test]
fn tables_that_cannot_be_distributed_are_refused_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), "a", Arc::new(AtomicU64::new(1)));
    s.execute("CREATE TABLE nokey(a TEXT, b TEXT)", &[])
        .unwrap();
    let e = s.set_distributed_tables(&["nokey"]).unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS);
    assert!(e.to_string().contains("has no primary key"), "{e}");
    s.execute("CREATE TABLE u(id INTEGER PRIMARY KEY, e TEXT UNIQUE)", &[])
        .unwrap();
    let e = s.set_distributed_tables(&["u"]).unwrap_err();
    assert!(e.to_string().contains("UNIQUE"), "{e}");
    assert_eq!(
        s.set_distributed_tables(&["missing"]).unwrap_err().code(),
        code::SQLITE_ERROR
    );
    for i in 0..33 {
        s.execute(&format!("CREATE TABLE t{i}(id INTEGER PRIMARY KEY)"), &[])
            .unwrap();
    }
    let names: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let e = s.set_distributed_tables(&names).unwrap_err();
    assert!(e.to_string().contains("at most 32"), "{e}");
    assert!(s.distributed_tables().unwrap().is_empty(), "all or nothing");
    s.set_distributed_tables(&names[..32]).unwrap();
    assert_eq!(s.distributed_tables().unwrap().len(), 32);
    assert!(s.set_distributed_tables(&names[32..]).is_err());
}

#[test]
fn composite_keys_sync_and_rows_made_before_distribution_go_too() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock),
    );
    let ddl = "CREATE TABLE member(grp TEXT, uid INTEGER, role TEXT, PRIMARY KEY (uid, grp))";
    for s in [&a, &b] {
        s.execute(ddl, &[]).unwrap();
    }
    a.execute(
        "INSERT INTO member VALUES ('g1', 1, 'owner'), ('g1', 2, 'guest')",
        &[],
    )
    .unwrap();
    for s in [&a, &b] {
        s.set_distributed_tables(&["member"]).unwrap();
    }
    a.execute(
        "UPDATE member SET role = 'admin' WHERE grp = 'g1' AND uid = 2",
        &[],
    )
    .unwrap();
    b.execute("INSERT INTO member VALUES ('g2', 1, 'x')", &[])
        .unwrap();
    sync(&a, &b);
    sync(&b, &a);
    assert_eq!(rows(&a, "member"), rows(&b, "member"));
    assert_eq!(rows(&a, "member").len(), 3);
    assert!(rows(&b, "member").contains(&vec![t("g1"), Value::from(2), t("admin")]));
}

#[test]
fn an_update_logs_only_the_cells_it_changed() {
    let d = tempfile::tempdir().unwrap();
    let a = open(d.path(), "a", Arc::new(AtomicU64::new(5_000)));
    note(&a);
    put(&a, 1, "t", "b");
    let w = a.changes_since(0, 100).unwrap().upto;
    set(&a, 1, "body", "b2");
    let cs = a.changes_since(w, 100).unwrap();
    assert_eq!(cs.rows.len(), 1);
    let r = &cs.rows[0];
    assert_eq!((r.cl, r.cells.len()), (1, 1));
    assert_eq!(r.cells[0].col, "body");
    assert_eq!(r.cells[0].value, t("b2"));
    assert_eq!(r.cells[0].dev, "a");
    assert_eq!(oxh_kvstore::hlc::physical_ms(r.cells[0].ts), 5_000);
    // Setting a cell to the value it has is no change.
    let w = cs.upto;
    set(&a, 1, "body", "b2");
    assert!(a.changes_since(w, 100).unwrap().rows.is_empty());
}

#[test]
fn applying_twice_changes_nothing_and_nothing_echoes_back() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock),
    );
    note(&a);
    note(&b);
    put(&a, 1, "t", "x");
    put(&a, 2, "u", "y");
    let cs = a.changes_since(0, 100).unwrap();
    let first = b.apply_changeset(&cs).unwrap();
    assert_eq!(first.inserted.len(), 2);
    let seq = b.changes_since(0, 100).unwrap().upto;
    let again = b.apply_changeset(&cs).unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(
        b.changes_since(0, 100).unwrap().upto,
        seq,
        "no new change numbers"
    );
    // B forwards what it got (for a third device); back at A it finds nothing to win.
    let back = b.changes_since(0, 100).unwrap();
    assert_eq!(back.rows.len(), 2);
    let a_seq = a.changes_since(0, 100).unwrap().upto;
    assert!(a.apply_changeset(&back).unwrap().is_empty());
    assert_eq!(a.changes_since(0, 100).unwrap().upto, a_seq);
    assert_eq!(rows(&a, "note"), rows(&b, "note"));
}

#[test]
fn a_peers_change_is_not_a_local_change() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock),
    );
    note(&a);
    note(&b);
    put(&a, 1, "t", "x");
    sync(&a, &b);
    let cs = b.changes_since(0, 100).unwrap();
    // The versions on B are A's, not B's: B's triggers stood aside.
    assert!(cs.rows[0].cells.iter().all(|c| c.dev == "a"));
    assert_eq!(cs.rows[0].cl_dev, "a");
}

#[test]
fn delete_beats_a_concurrent_update_and_a_reinsert_beats_the_delete() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock.clone()),
    );
    note(&a);
    note(&b);
    put(&a, 1, "t", "x");
    sync(&a, &b);
    // A deletes; B, not knowing, updates later by the clock.
    let mut p = RdbPredicates::new("note");
    p.equal_to("id", 1);
    a.delete(&p).unwrap();
    clock.store(9_000, Ordering::Relaxed);
    set(&b, 1, "title", "late edit");
    sync(&a, &b);
    sync(&b, &a);
    assert!(rows(&a, "note").is_empty());
    assert!(rows(&b, "note").is_empty());
    // A re-insert after seeing the delete wins over it, everywhere.
    put(&b, 1, "again", "z");
    sync(&b, &a);
    sync(&a, &b);
    assert_eq!(
        rows(&a, "note"),
        vec![vec![Value::from(1), t("again"), t("z")]]
    );
    assert_eq!(rows(&a, "note"), rows(&b, "note"));
}

#[test]
fn adding_a_nullable_column_is_allowed_and_syncs_other_changes_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock),
    );
    note(&a);
    note(&b);
    put(&a, 1, "t", "x");
    sync(&a, &b);
    a.execute("ALTER TABLE note ADD COLUMN tag TEXT", &[])
        .unwrap();
    set(&a, 1, "tag", "red");
    // B has no such column yet: the changeset is refused whole, nothing acknowledged.
    let w = a.peer_watermark("b").unwrap();
    let cs = a.changes_since(w, 100).unwrap();
    let e = b.apply_changeset(&cs).unwrap_err();
    assert!(e.to_string().contains("no column \"tag\""), "{e}");
    b.execute("ALTER TABLE note ADD COLUMN tag TEXT", &[])
        .unwrap();
    sync(&a, &b);
    assert_eq!(
        rows(&b, "note"),
        vec![vec![Value::from(1), t("t"), t("x"), t("red")]]
    );
    // Anything else that changes a distributed table's columns is rolled back (by our check,
    // or by SQLite itself when the change would break the log triggers).
    for bad in [
        "ALTER TABLE note ADD COLUMN n INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE note DROP COLUMN body",
        "ALTER TABLE note RENAME COLUMN title TO name",
    ] {
        let e = a.execute(bad, &[]).unwrap_err();
        assert!(
            [code::INVALID_ARGS, code::SQLITE_ERROR].contains(&e.code()),
            "{bad}: {e}"
        );
    }
    let e = a
        .execute(
            "ALTER TABLE note ADD COLUMN n INTEGER NOT NULL DEFAULT 0",
            &[],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("only adding a nullable column"),
        "{e}"
    );
    assert_eq!(rows(&a, "note")[0].len(), 4);
    // Dropping the table drops its log.
    a.execute("DROP TABLE note", &[]).unwrap();
    assert!(a.distributed_tables().unwrap().is_empty());
}

#[test]
fn sqlite3_by_hand_reads_a_distributed_table_but_cannot_write_it_unlogged() {
    let d = tempfile::tempdir().unwrap();
    let a = open(d.path(), "a", Arc::new(AtomicU64::new(1_000)));
    note(&a);
    put(&a, 1, "t", "x");
    let run = |sql: &str| {
        std::process::Command::new("sqlite3")
            .arg(a.path())
            .arg(sql)
            .output()
    };
    let Ok(out) = run("SELECT * FROM note") else {
        eprintln!("skipped: no sqlite3 on PATH");
        return;
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1|t|x\n");
    let out = run("UPDATE note SET title = 'sneaky'").unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such function"),
        "{out:?}"
    );
    assert_eq!(rows(&a, "note")[0][1], t("t"));
}

#[test]
fn obtain_distributed_table_name_is_openharmonys_and_names_a_view() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock),
    );
    note(&a);
    note(&b);
    put(&a, 1, "from a", "x");
    put(&b, 2, "from b", "y");
    sync(&a, &b);
    let name = b.obtain_distributed_table_name("a", "note").unwrap();
    // sha256("a"), in hex.
    assert_eq!(
        name,
        "naturalbase_rdb_aux_note_ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    );
    let rs = b
        .query_sql(&format!("SELECT id, title FROM {name}"), &[])
        .unwrap();
    assert_eq!(rs.rows(), [vec![Value::from(1), t("from a")]]);
    assert!(b.obtain_distributed_table_name("a", "x; DROP").is_err());
}

/// OpenHarmony's rule: a row carries one timestamp, the later row wins whole.
#[derive(Default, Clone)]
struct WholeRow {
    row: Option<(String, String)>,
    ts: u64,
}

impl WholeRow {
    fn write(&mut self, title: &str, body: &str, ts: u64) {
        self.row = Some((title.into(), body.into()));
        self.ts = ts;
    }
    fn merge(&mut self, other: &WholeRow) {
        if other.ts > self.ts {
            *self = other.clone();
        }
    }
}

#[test]
fn a_concurrent_edit_of_two_columns_keeps_both_where_whole_row_lww_loses_one() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock.clone()),
    );
    note(&a);
    note(&b);
    put(&a, 1, "draft", "text");
    sync(&a, &b);
    let (mut oa, mut ob) = (WholeRow::default(), WholeRow::default());
    oa.write("draft", "text", 1_000);
    ob.merge(&oa);
    // Partitioned: A edits the title at t=2000, B the body at t=3000.
    clock.store(2_000, Ordering::Relaxed);
    set(&a, 1, "title", "final title");
    oa.write("final title", "text", 2_000);
    clock.store(3_000, Ordering::Relaxed);
    set(&b, 1, "body", "final body");
    ob.write("draft", "final body", 3_000);
    // Heal.
    sync(&a, &b);
    sync(&b, &a);
    let (a2, b2) = (oa.clone(), ob.clone());
    oa.merge(&b2);
    ob.merge(&a2);
    let ours = vec![vec![Value::from(1), t("final title"), t("final body")]];
    assert_eq!(rows(&a, "note"), ours);
    assert_eq!(rows(&b, "note"), ours);
    let theirs = Some(("draft".to_string(), "final body".to_string()));
    assert_eq!(oa.row, theirs, "whole-row LWW: A's title edit is lost");
    assert_eq!(ob.row, theirs);
}

#[test]
fn equal_timestamps_pick_the_same_winner_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock),
    );
    note(&a);
    note(&b);
    put(&a, 1, "t", "x");
    sync(&a, &b);
    // Same millisecond, same logical count: the HLC timestamps are equal.
    set(&a, 1, "title", "by a");
    set(&b, 1, "title", "by b");
    let title_ts = |s: &RdbStore| {
        let cs = s.changes_since(0, 10).unwrap();
        let c = cs.rows[0].cells.iter().find(|c| c.col == "title").unwrap();
        (c.ts, c.dev.clone())
    };
    let ((ta, da), (tb, db)) = (title_ts(&a), title_ts(&b));
    assert_eq!((ta, da.as_str(), db.as_str()), (tb, "a", "b"));
    sync(&a, &b);
    sync(&b, &a);
    assert_eq!(
        rows(&a, "note")[0][1],
        t("by b"),
        "the larger device id wins the tie"
    );
    assert_eq!(rows(&a, "note"), rows(&b, "note"));
}

#[test]
fn a_changeset_is_refused_inside_begin_transaction_and_a_bad_one_leaves_local_writes_logged() {
    let d = tempfile::tempdir().unwrap();
    let a = open(d.path(), "a", Arc::new(AtomicU64::new(1_000)));
    note(&a);
    let bad = Changeset {
        from: 0,
        upto: 1,
        rows: vec![RowChange {
            table: "note".into(),
            pk: vec![Value::from(1)],
            cl: 1,
            cl_ts: 1,
            cl_dev: "b".into(),
            cells: vec![CellChange {
                col: "nope".into(),
                value: Value::Null,
                ts: 1,
                dev: "b".into(),
            }],
        }],
    };
    // Inside the app's open transaction a changeset is not applied at all: the app could
    // still roll it back after the sync acknowledged it.
    a.begin_transaction().unwrap();
    assert_eq!(
        a.apply_changeset(&bad).unwrap_err().code(),
        code::SQLITE_BUSY
    );
    a.commit().unwrap();
    assert_eq!(
        a.apply_changeset(&bad).unwrap_err().code(),
        code::INVALID_ARGS
    );
    a.begin_transaction().unwrap();
    put(&a, 7, "local", "write");
    a.commit().unwrap();
    let cs = a.changes_since(0, 10).unwrap();
    assert_eq!(
        cs.rows.len(),
        1,
        "the local write after the refusal is logged"
    );
    assert_eq!(cs.rows[0].cells.len(), 2);
}

fn cell_entries(s: &RdbStore) -> i64 {
    let mut r = s
        .query_sql("SELECT count(*) FROM oxh_rdb_note_cells", &[])
        .unwrap();
    r.go_to_first_row().unwrap();
    r.get_long(0).unwrap()
}

#[test]
fn an_insert_logs_its_row_alone_and_its_cells_still_travel_with_the_rows_version() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(d.path(), "a", clock.clone()),
        open(d.path(), "b", clock.clone()),
    );
    note(&a);
    note(&b);
    put(&a, 1, "t", "x");
    assert_eq!(
        cell_entries(&a),
        0,
        "an insert's cells have the row's version"
    );
    let cs = a.changes_since(0, 100).unwrap();
    let r = &cs.rows[0];
    assert_eq!(r.cells.len(), 2);
    assert!(
        r.cells
            .iter()
            .all(|c| (c.ts, c.dev.as_str()) == (r.cl_ts, "a"))
    );
    sync(&a, &b);
    assert_eq!(cell_entries(&b), 0, "applied, they need no entries either");
    assert_eq!(rows(&a, "note"), rows(&b, "note"));
    // A later edit of one cell on b gets an entry, travels, and wins over the row's version.
    clock.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
    set(&b, 1, "body", "y");
    assert_eq!(cell_entries(&b), 1);
    sync(&b, &a);
    assert_eq!(cell_entries(&a), 1);
    assert_eq!(rows(&a, "note"), rows(&b, "note"));
    assert_eq!(rows(&a, "note")[0][2], t("y"));
}

#[test]
fn tombstones_go_once_every_bound_peer_acknowledged_them_and_the_row_stays_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (
        open(dir.path(), "a", clock.clone()),
        open(dir.path(), "b", clock.clone()),
    );
    note(&a);
    note(&b);
    put(&a, 1, "one", "x");
    put(&a, 2, "two", "y");
    sync(&a, &b);
    let mut p = RdbPredicates::new("note");
    p.equal_to("id", 1);
    assert_eq!(a.delete(&p).unwrap(), 1);
    let tombstones = |s: &RdbStore| -> i64 {
        match s
            .execute(
                &format!(
                    "SELECT count(*) FROM {} WHERE oxh_rdb_cl % 2 = 0",
                    crate::ident::q(&super::schema::rows_table("note"))
                ),
                &[],
            )
            .unwrap()
        {
            Value::Integer(n) => n,
            v => panic!("{v:?}"),
        }
    };
    assert_eq!(tombstones(&a), 1);
    // Not yet sent: nobody acknowledged it.
    assert_eq!(a.gc_tombstones(&["b".into()]).unwrap(), 0);
    sync(&a, &b);
    // c is bound but never synced: it could still send the row's older life.
    assert_eq!(a.gc_tombstones(&["b".into(), "c".into()]).unwrap(), 0);
    assert_eq!(a.gc_tombstones(&[]).unwrap(), 0);
    assert_eq!(a.gc_tombstones(&["b".into()]).unwrap(), 1);
    assert_eq!(tombstones(&a), 0);
    // b, which acknowledged the delete, sends all it has again: the row stays deleted.
    b.set_peer_state("a", 0, &[]).unwrap();
    sync(&b, &a);
    assert_eq!(
        rows(&a, "note"),
        vec![vec![Value::from(2), t("two"), t("y")]]
    );
    assert_eq!(rows(&b, "note"), rows(&a, "note"));
}
