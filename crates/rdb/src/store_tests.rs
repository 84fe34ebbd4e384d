//! The store's API against a real SQLite file.

use super::*;
use crate::SecurityLevel;
use std::process::Command;

fn store(dir: &Path) -> RdbStore {
    let s = RdbStore::open(
        dir,
        &StoreConfig::new("notes.db", SecurityLevel::S1),
        "dev-a",
    )
    .unwrap();
    s.execute(
        "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT NOT NULL, n INTEGER UNIQUE, body TEXT)",
        &[],
    )
    .unwrap();
    s
}

fn row(id: i64, title: &str, n: i64) -> ValuesBucket {
    ValuesBucket::new()
        .with("id", id)
        .with("title", title)
        .with("n", n)
}

fn ids(s: &RdbStore) -> Vec<i64> {
    let mut rs = s.query_sql("SELECT id FROM note ORDER BY id", &[]).unwrap();
    let mut v = Vec::new();
    while rs.go_to_next_row().unwrap() {
        v.push(rs.get_long(0).unwrap());
    }
    v
}

fn sqlite3(path: &Path, sql: &str) -> std::process::Output {
    Command::new("sqlite3")
        .arg(path)
        .arg(sql)
        .output()
        .expect("sqlite3 runs")
}

#[test]
fn the_store_file_is_wal_with_full_sync_and_opens_in_sqlite3() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    s.insert("note", &row(1, "hello", 10)).unwrap();
    assert_eq!(
        s.execute("PRAGMA journal_mode", &[]).unwrap(),
        Value::from("wal")
    );
    // 2 = FULL.
    assert_eq!(
        s.execute("PRAGMA synchronous", &[]).unwrap(),
        Value::Integer(2)
    );
    assert_eq!(s.path(), d.path().join("notes.db"));
    if Command::new("sqlite3").arg("-version").output().is_err() {
        eprintln!("skipped the sqlite3 half: no sqlite3 on PATH");
        return;
    }
    let out = sqlite3(
        s.path(),
        "SELECT id, title FROM note; PRAGMA integrity_check;",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1|hello\nok\n");
}

#[test]
fn a_store_keeps_its_security_level_and_custom_dir() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new("x.db", SecurityLevel::S2);
    cfg.custom_dir = Some("sub/dir".into());
    let s = RdbStore::open(d.path(), &cfg, "dev").unwrap();
    assert_eq!(s.path(), d.path().join("sub/dir/x.db"));
    drop(s);
    cfg.security_level = SecurityLevel::S3;
    let e = RdbStore::open(d.path(), &cfg, "dev").err().unwrap();
    assert_eq!(e.code(), code::CONFIG_CHANGED, "{e}");
    cfg.security_level = SecurityLevel::S2;
    RdbStore::open(d.path(), &cfg, "dev").unwrap();
}

#[test]
fn insert_update_delete_and_query_with_predicates() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    for i in 1..=5 {
        assert_eq!(
            s.insert("note", &row(i, &format!("t{i}"), i * 10)).unwrap(),
            i
        );
    }
    let mut p = RdbPredicates::new("note");
    p.greater_than("n", 20).and().less_than_or_equal_to("n", 40);
    let n = s
        .update(&ValuesBucket::new().with("body", "changed"), &p)
        .unwrap();
    assert_eq!(n, 2);
    let mut p = RdbPredicates::new("note");
    p.equal_to("body", "changed").order_by_desc("id");
    let mut rs = s.query(&p, &["id", "title"]).unwrap();
    assert_eq!(rs.column_names(), ["id", "title"]);
    assert_eq!(rs.row_count(), 2);
    rs.go_to_first_row().unwrap();
    assert_eq!(
        (rs.get_long(0).unwrap(), rs.get_string(1).unwrap()),
        (4, "t4".into())
    );
    let mut p = RdbPredicates::new("note");
    p.in_("id", [Value::from(1), Value::from(5)])
        .or()
        .is_not_null("body");
    assert_eq!(s.delete(&p).unwrap(), 4);
    assert_eq!(ids(&s), vec![2]);
    let mut p = RdbPredicates::new("note");
    p.limit_as(1);
    assert_eq!(s.delete(&p).unwrap_err().code(), code::INVALID_ARGS);
}

#[test]
fn distinct_and_group_by_shape_queries_and_are_refused_elsewhere() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    for i in 1..=6 {
        s.insert("note", &row(i, if i % 2 == 0 { "even" } else { "odd" }, i))
            .unwrap();
    }
    let mut p = RdbPredicates::new("note");
    p.distinct().order_by_asc("title");
    let rs = s.query(&p, &["title"]).unwrap();
    assert_eq!(
        rs.rows(),
        [vec![Value::from("even")], vec![Value::from("odd")]]
    );
    let mut p = RdbPredicates::new("note");
    p.group_by(&["title"]).order_by_asc("title");
    let rs = s.query(&p, &["title"]).unwrap();
    assert_eq!(
        rs.rows(),
        [vec![Value::from("even")], vec![Value::from("odd")]]
    );
    let mut p = RdbPredicates::new("note");
    p.less_than("n", 5)
        .group_by(&["title", "n"])
        .order_by_asc("n");
    assert_eq!(s.query(&p, &["title", "n"]).unwrap().row_count(), 4);
    let mut p = RdbPredicates::new("note");
    p.group_by(&["title; DROP TABLE note"]);
    assert_eq!(s.query(&p, &[]).unwrap_err().code(), code::INVALID_ARGS);
    let mut p = RdbPredicates::new("note");
    p.group_by::<&str>(&[]);
    assert_eq!(s.query(&p, &[]).unwrap_err().code(), code::INVALID_ARGS);
    for mut p in [RdbPredicates::new("note"), RdbPredicates::new("note")] {
        p.distinct();
        assert_eq!(s.delete(&p).unwrap_err().code(), code::INVALID_ARGS);
    }
    let mut p = RdbPredicates::new("note");
    p.group_by(&["title"]);
    let e = s
        .update(&ValuesBucket::new().with("body", "x"), &p)
        .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS, "{e}");
    assert_eq!(ids(&s), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn values_that_look_like_sql_stay_values() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let evil = "x'); DROP TABLE note; --";
    s.insert("note", &row(1, evil, 1)).unwrap();
    let mut p = RdbPredicates::new("note");
    p.equal_to("title", evil);
    let mut rs = s.query(&p, &[]).unwrap();
    assert!(rs.go_to_first_row().unwrap());
    assert_eq!(rs.get_string(1).unwrap(), evil);
    let mut p = RdbPredicates::new("note");
    p.like("title", "%' OR '1'='1");
    assert_eq!(s.query(&p, &[]).unwrap().row_count(), 0);
    assert_eq!(ids(&s), vec![1], "the table is still there");
    // A column name is checked, not spliced.
    let bad = ValuesBucket::new().with("title = 'x' --", 1);
    assert_eq!(
        s.insert("note", &bad).unwrap_err().code(),
        code::INVALID_ARGS
    );
}

#[test]
fn conflict_resolutions_do_what_sqlite_says() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    s.insert("note", &row(1, "a", 1)).unwrap();
    // NONE and ABORT: the statement fails, nothing changes.
    for how in [ConflictResolution::None, ConflictResolution::Abort] {
        let e = s.insert_with("note", &row(1, "b", 2), how).unwrap_err();
        assert_eq!(e.code(), code::SQLITE_CONSTRAINT, "{how:?}");
    }
    // IGNORE: skipped, -1.
    assert_eq!(
        s.insert_with("note", &row(1, "b", 2), ConflictResolution::Ignore)
            .unwrap(),
        -1
    );
    // REPLACE: the row in the way (same key, and the one with the same UNIQUE n) goes.
    s.insert("note", &row(2, "c", 3)).unwrap();
    s.insert_with("note", &row(1, "r", 3), ConflictResolution::Replace)
        .unwrap();
    assert_eq!(ids(&s), vec![1]);
    // FAIL inside a transaction keeps the rows the statement already wrote; ABORT does not.
    let rows = [row(10, "x", 10), row(11, "y", 11), row(12, "z", 3)];
    let mut tx = s.create_transaction(TransactionType::Immediate).unwrap();
    assert!(
        tx.batch_insert("note", &rows, ConflictResolution::Fail)
            .is_err()
    );
    tx.commit().unwrap();
    assert_eq!(ids(&s), vec![1, 10, 11]);
    let rows = [row(20, "x", 20), row(21, "z", 3)];
    let mut tx = s.create_transaction(TransactionType::Immediate).unwrap();
    assert!(
        tx.batch_insert("note", &rows, ConflictResolution::Abort)
            .is_err()
    );
    tx.commit().unwrap();
    assert_eq!(ids(&s), vec![1, 10, 11]);
    // ROLLBACK ends the whole transaction, earlier statements too.
    let mut tx = s.create_transaction(TransactionType::Immediate).unwrap();
    tx.insert("note", &row(30, "ok", 30), ConflictResolution::None)
        .unwrap();
    let e = tx
        .insert("note", &row(31, "dup", 3), ConflictResolution::Rollback)
        .unwrap_err();
    assert_eq!(e.code(), code::SQLITE_CONSTRAINT);
    assert!(!tx.is_open());
    assert_eq!(
        tx.insert("note", &row(32, "late", 32), ConflictResolution::None)
            .unwrap_err()
            .code(),
        code::ALREADY_CLOSED
    );
    drop(tx);
    assert_eq!(ids(&s), vec![1, 10, 11]);
    // Through the store, a failed batch changes nothing, whatever the resolution.
    let rows = [row(40, "x", 40), row(41, "y", 3)];
    assert!(
        s.batch_insert_with("note", &rows, ConflictResolution::Fail)
            .is_err()
    );
    assert_eq!(ids(&s), vec![1, 10, 11]);
}

#[test]
fn batch_insert_splits_by_the_variable_limit_and_is_atomic() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    s.with(|i| {
        i.conn
            .c
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 10)?;
        Ok(())
    })
    .unwrap();
    let rows: Vec<ValuesBucket> = (1..=100).map(|i| row(i, "t", i)).collect();
    // 3 variables a row, 10 a statement: 34 statements, one transaction.
    assert_eq!(s.batch_insert("note", &rows).unwrap(), 100);
    assert_eq!(ids(&s).len(), 100);
    // Rows of different columns in one batch.
    let mixed = vec![
        row(200, "a", 200),
        ValuesBucket::new().with("id", 201).with("title", "b"),
        row(202, "c", 202),
    ];
    assert_eq!(s.batch_insert("note", &mixed).unwrap(), 3);
    // A conflict in the last statement undoes the first ones.
    let mut bad: Vec<ValuesBucket> = (300..340).map(|i| row(i, "t", i)).collect();
    bad.push(row(1, "dup", 9999));
    assert_eq!(
        s.batch_insert("note", &bad).unwrap_err().code(),
        code::SQLITE_CONSTRAINT
    );
    assert_eq!(ids(&s).len(), 103);
}

#[test]
fn a_second_write_transaction_is_14800024_and_reads_go_on() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    s.insert("note", &row(1, "a", 1)).unwrap();
    for kind in [TransactionType::Immediate, TransactionType::Exclusive] {
        let mut tx = s.create_transaction(kind).unwrap();
        tx.insert("note", &row(2, "b", 2), ConflictResolution::None)
            .unwrap();
        let e = s.insert("note", &row(3, "c", 3)).unwrap_err();
        assert_eq!(e.code(), 14_800_024, "{e}");
        assert_eq!(
            s.create_transaction(TransactionType::Immediate)
                .err()
                .unwrap()
                .code(),
            14_800_024
        );
        assert_eq!(s.begin_transaction().unwrap_err().code(), 14_800_024);
        // Readers see the last commit, not the open transaction.
        assert_eq!(ids(&s), vec![1]);
        tx.rollback().unwrap();
    }
    // A DEFERRED transaction reads, someone else commits, its first write is 14800024.
    let mut tx = s.create_transaction(TransactionType::Deferred).unwrap();
    assert_eq!(
        tx.query_sql("SELECT * FROM note", &[]).unwrap().row_count(),
        1
    );
    s.insert("note", &row(4, "d", 4)).unwrap();
    let e = tx
        .insert("note", &row(5, "e", 5), ConflictResolution::None)
        .unwrap_err();
    assert_eq!(e.code(), 14_800_024, "{e}");
    drop(tx);
    // Committed work stays; an abandoned transaction rolls back.
    let mut tx = s.create_transaction(TransactionType::Immediate).unwrap();
    tx.insert("note", &row(6, "f", 6), ConflictResolution::None)
        .unwrap();
    tx.commit().unwrap();
    let mut tx = s.create_transaction(TransactionType::Deferred).unwrap();
    tx.insert("note", &row(7, "g", 7), ConflictResolution::None)
        .unwrap();
    drop(tx);
    assert_eq!(ids(&s), vec![1, 4, 6]);
}

#[test]
fn begin_transaction_commit_and_roll_back_on_the_store() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    s.begin_transaction().unwrap();
    s.insert("note", &row(1, "a", 1)).unwrap();
    assert_eq!(
        s.create_transaction(TransactionType::Immediate)
            .err()
            .unwrap()
            .code(),
        14_800_024
    );
    s.roll_back().unwrap();
    assert!(ids(&s).is_empty());
    s.begin_transaction().unwrap();
    s.insert("note", &row(2, "b", 2)).unwrap();
    s.execute("UPDATE note SET body = 'x'", &[]).unwrap();
    s.commit().unwrap();
    assert_eq!(ids(&s), vec![2]);
    assert_eq!(s.commit().unwrap_err().code(), code::INVALID_ARGS);
}

#[test]
fn execute_and_query_sql_follow_openharmony() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    assert_eq!(
        s.execute(
            "INSERT INTO note(id, title) VALUES (?, ?)",
            &[7.into(), "a".into()]
        )
        .unwrap(),
        Value::Integer(7)
    );
    assert_eq!(
        s.execute("UPDATE note SET body = ?", &["b".into()])
            .unwrap(),
        Value::Integer(1)
    );
    assert_eq!(
        s.execute("PRAGMA user_version = 3", &[]).unwrap(),
        Value::Null
    );
    assert_eq!(
        s.execute("PRAGMA user_version", &[]).unwrap(),
        Value::Integer(3)
    );
    assert_eq!(
        s.query_sql("DELETE FROM note", &[]).unwrap_err().code(),
        code::NOT_A_QUERY
    );
    assert_eq!(ids(&s), vec![7]);
    assert_eq!(
        s.execute("SELECT * FROM nope", &[]).unwrap_err().code(),
        code::SQLITE_ERROR
    );
    assert_eq!(
        s.execute("DELETE FROM note; DROP TABLE note", &[])
            .unwrap_err()
            .code(),
        code::SQLITE_ERROR
    );
    assert!(s.execute("BEGIN", &[]).is_err());
    s.execute("VACUUM", &[]).unwrap();
    assert_eq!(ids(&s), vec![7]);
}

#[test]
fn a_closed_store_is_14800014() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    s.close().unwrap();
    assert_eq!(
        s.insert("note", &row(1, "a", 1)).unwrap_err().code(),
        code::ALREADY_CLOSED
    );
    assert_eq!(
        s.query_sql("SELECT 1", &[]).unwrap_err().code(),
        code::ALREADY_CLOSED
    );
}

#[test]
fn a_failed_call_inside_begin_transaction_leaves_none_of_its_rows() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    s.begin_transaction().unwrap();
    s.insert("note", &row(1, "a", 1)).unwrap();
    let rows = [row(2, "b", 2), row(3, "dup", 1)];
    assert!(
        s.batch_insert_with("note", &rows, ConflictResolution::Fail)
            .is_err()
    );
    s.insert("note", &row(4, "d", 4)).unwrap();
    s.commit().unwrap();
    assert_eq!(ids(&s), vec![1, 4]);
    // ON_CONFLICT_ROLLBACK still ends the whole transaction.
    s.begin_transaction().unwrap();
    s.insert("note", &row(5, "e", 5)).unwrap();
    assert!(
        s.insert_with("note", &row(6, "f", 1), ConflictResolution::Rollback)
            .is_err()
    );
    assert_eq!(s.commit().unwrap_err().code(), code::SQLITE_ABORT);
    assert_eq!(ids(&s), vec![1, 4]);
    s.insert("note", &row(7, "g", 7)).unwrap();
    assert_eq!(ids(&s), vec![1, 4, 7]);
}

#[test]
fn delete_store_removes_the_file_and_a_new_one_gets_a_new_epoch() {
    let d = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::new("gone.db", SecurityLevel::S1);
    let s = RdbStore::open(d.path(), &cfg, "dev").unwrap();
    s.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)", &[])
        .unwrap();
    let epoch = s.epoch().unwrap();
    drop(s);
    RdbStore::delete_store(d.path(), &cfg).unwrap();
    assert!(!d.path().join("gone.db").exists());
    assert!(!d.path().join("gone.db-wal").exists());
    RdbStore::delete_store(d.path(), &cfg).unwrap();
    let s = RdbStore::open(d.path(), &cfg, "dev").unwrap();
    assert_ne!(s.epoch().unwrap(), epoch);
    assert_eq!(
        s.query_sql("SELECT * FROM t", &[]).unwrap_err().code(),
        code::SQLITE_ERROR
    );
}
