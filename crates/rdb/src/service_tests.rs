//! The service's logic without IPC: connection ids and callers as the SA would pass them.

use super::*;
use crate::api::*;
use crate::config::SecurityLevel;
use crate::config::StoreConfig;
use oxh_ipc::TokenType;

fn caller(t: TokenType, token_id: u32) -> Caller {
    Caller {
        pid: 1,
        uid: 0,
        gid: 0,
        token_id,
        token_type: t,
        process_name: "t".into(),
    }
}

fn svc(dir: &std::path::Path) -> Arc<RdbService> {
    let s = RdbService::open(RdbConfig {
        dir: dir.to_path_buf(),
        device_id: "dev".into(),
    })
    .unwrap();
    s.set_app_resolver(Arc::new(|id| match id {
        7 => Some("com.a".to_string()),
        8 => Some("com.b".to_string()),
        _ => None,
    }));
    s
}

fn store_args(app: Option<&str>, name: &str) -> GetStoreArgs {
    GetStoreArgs {
        app: app.map(String::from),
        config: StoreConfig::new(name, SecurityLevel::S1),
    }
}

fn exec(
    s: &RdbService,
    conn: u64,
    handle: StoreHandle,
    sql: &str,
    args: Vec<Value>,
) -> Result<Value> {
    s.execute(
        conn,
        &ExecuteArgs {
            handle,
            sql: sql.into(),
            args,
        },
    )
}

fn query(s: &RdbService, conn: u64, handle: StoreHandle, sql: &str) -> Result<Rows> {
    s.query_sql(
        conn,
        &QuerySqlArgs {
            handle,
            sql: sql.into(),
            args: vec![],
        },
    )
}

const SHELL: TokenType = TokenType::Shell;

/// A shell connection with `notes.db` of com.a open and a `note` table: (service, handle).
fn notes(dir: &std::path::Path, conn: u64) -> (Arc<RdbService>, StoreHandle) {
    let s = svc(dir);
    let h = s
        .get_rdb_store(
            conn,
            &caller(SHELL, 0),
            &store_args(Some("com.a"), "notes.db"),
        )
        .unwrap()
        .handle;
    exec(
        &s,
        conn,
        h,
        "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)",
        vec![],
    )
    .unwrap();
    (s, h)
}

#[test]
fn apps_reach_only_their_own_stores_by_token() {
    let d = tempfile::tempdir().unwrap();
    let s = svc(d.path());
    let a = caller(TokenType::Hap, 7);
    let b = caller(TokenType::Hap, 8);
    let ha = s.get_rdb_store(1, &a, &store_args(None, "n.db")).unwrap();
    assert_eq!(ha.app, "com.a");
    exec(
        &s,
        1,
        ha.handle,
        "CREATE TABLE t(k INTEGER PRIMARY KEY)",
        vec![],
    )
    .unwrap();
    exec(&s, 1, ha.handle, "INSERT INTO t VALUES (1)", vec![]).unwrap();
    // App B may not name A (201); its own "n.db" is another file, without A's table.
    let e = s
        .get_rdb_store(2, &b, &store_args(Some("com.a"), "n.db"))
        .unwrap_err();
    assert_eq!(e.code(), 201, "{e}");
    let hb = s.get_rdb_store(2, &b, &store_args(None, "n.db")).unwrap();
    let e = query(&s, 2, hb.handle, "SELECT * FROM t").unwrap_err();
    assert_eq!(e.code(), code::SQLITE_ERROR, "{e}");
    // Nor use A's handle: handles are per connection.
    let e = query(&s, 2, ha.handle, "SELECT * FROM t").unwrap_err();
    assert_eq!(e.code(), code::ALREADY_CLOSED, "{e}");
    // The shell must name the app; no token, or a token of no app: nothing.
    assert_eq!(
        s.get_rdb_store(3, &caller(SHELL, 0), &store_args(None, "n.db"))
            .unwrap_err()
            .code(),
        401
    );
    for c in [caller(TokenType::Invalid, 0), caller(TokenType::Hap, 9)] {
        assert_eq!(
            s.get_rdb_store(3, &c, &store_args(None, "n.db"))
                .unwrap_err()
                .code(),
            201
        );
    }
    assert_eq!(
        s.get_rdb_store(3, &caller(SHELL, 0), &store_args(Some("../x"), "n.db"))
            .unwrap_err()
            .code(),
        401
    );
    assert!(d.path().join("com.a/n.db").exists() && d.path().join("com.b/n.db").exists());
}

#[test]
fn a_round_trip_and_bad_sql_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (s, h) = notes(d.path(), 1);
    let id = s
        .insert(
            1,
            &InsertArgs {
                handle: h,
                table: "note".into(),
                values: vec![
                    ("id".into(), Value::Integer(1)),
                    ("title".into(), Value::Text("t".into())),
                ],
                conflict: 0,
            },
        )
        .unwrap();
    assert_eq!(id, 1);
    let n = s
        .batch_insert(
            1,
            &BatchInsertArgs {
                handle: h,
                table: "note".into(),
                rows: (2..5)
                    .map(|i| vec![("id".into(), Value::Integer(i))])
                    .collect(),
                conflict: 0,
            },
        )
        .unwrap();
    assert_eq!(n, 3);
    let e = exec(&s, 1, h, "INSRT INTO note VALUES (9, 'x', 'y')", vec![]).unwrap_err();
    assert_eq!(e.code(), code::SQLITE_ERROR, "{e}");
    // A constraint violation in a batch leaves none of it.
    let e = s
        .batch_insert(
            1,
            &BatchInsertArgs {
                handle: h,
                table: "note".into(),
                rows: vec![
                    vec![("id".into(), Value::Integer(5))],
                    vec![("id".into(), Value::Integer(1))],
                ],
                conflict: 0,
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), code::SQLITE_CONSTRAINT, "{e}");
    let up = s
        .update(
            1,
            &UpdateArgs {
                handle: h,
                values: vec![("body".into(), Value::Text("b".into()))],
                predicates: Predicates::new("note")
                    .then(PredicateOp::GreaterThan("id".into(), Value::Integer(2))),
                conflict: 0,
            },
        )
        .unwrap();
    assert_eq!(up, 2);
    let del = s
        .delete(
            1,
            &DeleteArgs {
                handle: h,
                predicates: Predicates::new("note")
                    .then(PredicateOp::EqualTo("id".into(), Value::Integer(4))),
            },
        )
        .unwrap();
    assert_eq!(del, 1);
    let r = s
        .query(
            1,
            &QueryArgs {
                handle: h,
                predicates: Predicates::new("note").then(PredicateOp::OrderByDesc("id".into())),
                columns: vec!["id".into(), "body".into()],
            },
        )
        .unwrap();
    assert_eq!(r.columns, ["id", "body"]);
    assert_eq!(
        r.rows,
        [
            vec![Value::Integer(3), Value::Text("b".into())],
            vec![Value::Integer(2), Value::Null],
            vec![Value::Integer(1), Value::Null],
        ]
    );
    let e = query(&s, 1, h, "DELETE FROM note").unwrap_err();
    assert_eq!(e.code(), code::NOT_A_QUERY);
}

#[test]
fn a_transaction_is_its_connections_and_rolls_back_when_it_goes() {
    let d = tempfile::tempdir().unwrap();
    let (s, h1) = notes(d.path(), 1);
    let sh = caller(SHELL, 0);
    let h2 = s
        .get_rdb_store(2, &sh, &store_args(Some("com.a"), "notes.db"))
        .unwrap()
        .handle;
    s.begin_transaction(
        1,
        &BeginArgs {
            handle: h1,
            kind: 1,
        },
    )
    .unwrap();
    exec(&s, 1, h1, "INSERT INTO note(id) VALUES (1)", vec![]).unwrap();
    // Connection 1 sees its write; connection 2 neither sees it nor may write or begin.
    assert_eq!(
        query(&s, 1, h1, "SELECT id FROM note").unwrap().rows.len(),
        1
    );
    assert!(
        query(&s, 2, h2, "SELECT id FROM note")
            .unwrap()
            .rows
            .is_empty()
    );
    let e = s
        .begin_transaction(
            2,
            &BeginArgs {
                handle: h2,
                kind: 1,
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), 14_800_024, "{e}");
    let e = exec(&s, 2, h2, "INSERT INTO note(id) VALUES (2)", vec![]).unwrap_err();
    assert_eq!(e.code(), 14_800_024, "{e}");
    // A second transaction on the same handle is refused too.
    let e = s
        .begin_transaction(
            1,
            &BeginArgs {
                handle: h1,
                kind: 0,
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), 14_800_024, "{e}");
    // Connection 1 goes: its transaction rolls back and the lock is free.
    s.client_died(1);
    assert!(
        query(&s, 2, h2, "SELECT id FROM note")
            .unwrap()
            .rows
            .is_empty()
    );
    s.begin_transaction(
        2,
        &BeginArgs {
            handle: h2,
            kind: 0,
        },
    )
    .unwrap();
    exec(&s, 2, h2, "INSERT INTO note(id) VALUES (2)", vec![]).unwrap();
    s.end_transaction(2, &HandleArgs { handle: h2 }, true)
        .unwrap();
    assert_eq!(
        s.end_transaction(2, &HandleArgs { handle: h2 }, true)
            .unwrap_err()
            .code(),
        code::INVALID_ARGS
    );
    s.begin_transaction(
        2,
        &BeginArgs {
            handle: h2,
            kind: 2,
        },
    )
    .unwrap();
    exec(&s, 2, h2, "DELETE FROM note", vec![]).unwrap();
    s.end_transaction(2, &HandleArgs { handle: h2 }, false)
        .unwrap();
    assert_eq!(
        query(&s, 2, h2, "SELECT id FROM note").unwrap().rows,
        [vec![Value::Integer(2)]]
    );
    assert_eq!(
        s.begin_transaction(
            2,
            &BeginArgs {
                handle: h2,
                kind: 3
            }
        )
        .unwrap_err()
        .code(),
        code::INVALID_ARGS
    );
}

#[test]
fn results_stores_and_handles_are_bounded() {
    let d = tempfile::tempdir().unwrap();
    let (s, h) = notes(d.path(), 1);
    let half = "x".repeat(MAX_RESULT_BYTES / 2);
    for i in 0..2 {
        exec(
            &s,
            1,
            h,
            "INSERT INTO note VALUES (?, ?, NULL)",
            vec![Value::Integer(i), Value::Text(half.clone())],
        )
        .unwrap();
    }
    let one = query(&s, 1, h, "SELECT * FROM note LIMIT 1").unwrap();
    assert_eq!(one.rows.len(), 1);
    assert!(oxh_ipc::encode(&one).len() <= MAX_RESULT_BYTES);
    let e = query(&s, 1, h, "SELECT * FROM note").unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS);
    assert!(e.to_string().contains(&MAX_RESULT_BYTES.to_string()), "{e}");
    // At most MAX_STORES_PER_CONN handles on one connection; closing one makes room.
    let sh = caller(SHELL, 0);
    for i in 1..MAX_STORES_PER_CONN {
        s.get_rdb_store(1, &sh, &store_args(Some("com.a"), &format!("s{i}.db")))
            .unwrap();
    }
    let e = s
        .get_rdb_store(1, &sh, &store_args(Some("com.a"), "one_more.db"))
        .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS);
    assert!(e.to_string().contains("at most 16"), "{e}");
    s.close(1, &HandleArgs { handle: h }).unwrap();
    s.get_rdb_store(1, &sh, &store_args(Some("com.a"), "one_more.db"))
        .unwrap();
    assert_eq!(
        query(&s, 1, h, "SELECT 1").unwrap_err().code(),
        code::ALREADY_CLOSED
    );
}

#[test]
fn stores_close_with_their_last_handle_and_delete_closes_them() {
    let d = tempfile::tempdir().unwrap();
    let (s, h1) = notes(d.path(), 1);
    let sh = caller(SHELL, 0);
    let a = store_args(Some("com.a"), "notes.db");
    let h2 = s.get_rdb_store(2, &sh, &a).unwrap().handle;
    assert!(
        s.dump_text().contains("com.a/notes.db: handles=2"),
        "{}",
        s.dump_text()
    );
    // Another security level for an open store: 14800017.
    let mut s3 = a.clone();
    s3.config.security_level = SecurityLevel::S3;
    assert_eq!(
        s.get_rdb_store(3, &sh, &s3).unwrap_err().code(),
        code::CONFIG_CHANGED
    );
    s.close(1, &HandleArgs { handle: h1 }).unwrap();
    s.client_died(2);
    assert!(s.dump_text().contains("0 open stores"), "{}", s.dump_text());
    let h = s.get_rdb_store(4, &sh, &a).unwrap().handle;
    s.delete_rdb_store(&sh, &a).unwrap();
    assert_eq!(
        query(&s, 4, h, "SELECT 1").unwrap_err().code(),
        code::ALREADY_CLOSED
    );
    assert_eq!(
        query(&s, 4, h2, "SELECT 1").unwrap_err().code(),
        code::ALREADY_CLOSED
    );
    assert!(!d.path().join("com.a/notes.db").exists());
    // Deleting a store that is not there is no error.
    s.delete_rdb_store(&sh, &a).unwrap();
}

#[test]
fn distribution_needs_a_primary_key_and_names_the_table() {
    let d = tempfile::tempdir().unwrap();
    let (s, h) = notes(d.path(), 1);
    exec(&s, 1, h, "CREATE TABLE log(line TEXT)", vec![]).unwrap();
    let e = s
        .set_distributed_tables(
            1,
            &SetDistributedArgs {
                handle: h,
                tables: vec!["log".into()],
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS);
    assert!(e.to_string().contains("no primary key"), "{e}");
    s.set_distributed_tables(
        1,
        &SetDistributedArgs {
            handle: h,
            tables: vec!["note".into()],
        },
    )
    .unwrap();
    let name = s
        .obtain_distributed_table_name(
            1,
            &ObtainNameArgs {
                handle: h,
                device: "peer".into(),
                table: "note".into(),
            },
        )
        .unwrap();
    assert!(!name.is_empty());
    // Not inside a transaction.
    s.begin_transaction(1, &BeginArgs { handle: h, kind: 0 })
        .unwrap();
    let e = s
        .set_distributed_tables(
            1,
            &SetDistributedArgs {
                handle: h,
                tables: vec!["note".into()],
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), code::INVALID_ARGS);
}
