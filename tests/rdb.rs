//! The relational store with a real daemon: `oxh rdb` round trips, the store file read by the
//! `sqlite3` tool, apps kept apart, OpenHarmony's error codes, concurrent write transactions
//! over two IPC connections, and the reply cap.

use crate::common::*;
use oxh_rdb::api::{self, BeginArgs, ExecuteArgs, GetStoreArgs, QuerySqlArgs, Rows, StoreInfo};
use oxh_rdb::{SecurityLevel, StoreConfig, Value};
use std::process::Command;
use std::time::Duration;

const APP: &str = "com.example.notes";
const OTHER: &str = "com.example.other";

fn rdb<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["rdb"];
    v.extend_from_slice(args);
    v
}

/// `sqlite3 FILE SQL`'s output (the tool must be installed: scripts/test installs it). It
/// waits up to 10 s for a lock: the daemon checkpoints the WAL when it closes a store, as the
/// last CLI connection on it goes.
fn sqlite3(file: &std::path::Path, sql: &str) -> String {
    let o = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(file)
        .arg(sql)
        .output()
        .expect("the sqlite3 tool (apt-get install sqlite3; scripts/test installs it)");
    assert!(
        o.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cli_round_trip_the_file_in_sqlite3_apps_apart_and_openharmony_errors() {
    let d = TestDevice::start();
    let s = ["--app", APP, "--store", "notes.db"];
    let ex = |args: &[&str]| {
        let mut v = vec!["exec", s[0], s[1], s[2], s[3]];
        v.extend_from_slice(args);
        d.oxh_ok(&rdb(&v))
    };
    ex(&["CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)"]);
    // execute returns an INSERT's rowid.
    assert_eq!(
        ex(&["INSERT INTO note VALUES (?,?,?)", "1", "t", "b"]),
        "1\n"
    );
    // Quoted numbers are text, x'..' a blob.
    assert_eq!(
        ex(&["INSERT INTO note VALUES (?,?,?)", "2", "\"42\"", "x'00ff'"]),
        "2\n"
    );
    assert_eq!(
        ex(&["UPDATE note SET body = body WHERE id > ?", "0"]),
        "2\n"
    );
    let q = |extra: &[&str]| {
        let mut v = vec!["query", s[0], s[1], s[2], s[3], "SELECT * FROM note"];
        v.extend_from_slice(extra);
        d.oxh_ok(&rdb(&v))
    };
    assert_eq!(q(&[]), "id|title|body\n1|t|b\n2|42|x'00ff'\n");
    let json = q(&["--json"]);
    // Column names as keys, in column order; the blob in hex.
    assert!(
        json.contains("{\"id\": 1, \"title\": \"t\", \"body\": \"b\"}"),
        "{json}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"id": 1, "title": "t", "body": "b"},
            {"id": 2, "title": "42", "body": "00ff"},
        ])
    );
    let bound = d.oxh_ok(&rdb(&[
        "query",
        s[0],
        s[1],
        s[2],
        s[3],
        "SELECT title FROM note WHERE id = ?",
        "2",
        "--json",
    ]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&bound).unwrap(),
        serde_json::json!([{"title": "42"}])
    );

    // The store is one SQLite file in the app's database dir, and sqlite3 reads it.
    let file = d.data_dir().join("rdb").join(APP).join("notes.db");
    assert_eq!(
        sqlite3(
            &file,
            "SELECT id, title, typeof(body) FROM note ORDER BY id"
        ),
        "1|t|text\n2|42|blob\n"
    );
    assert_eq!(sqlite3(&file, "PRAGMA journal_mode"), "wal\n");
    // The daemon's own dir: apps and the shell reach it only through the service.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.data_dir().join("rdb"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");

    // Bad SQL: OpenHarmony's code and message; nothing lost. A constraint: its code.
    let e = d.oxh_err(&rdb(&[
        "exec",
        s[0],
        s[1],
        s[2],
        s[3],
        "INSRT INTO note VALUES (3, 'x', 'y')",
    ]));
    assert!(
        e.contains("14800021") && e.contains("SQLite: Generic error.") && e.contains("syntax"),
        "{e}"
    );
    let e = d.oxh_err(&rdb(&[
        "exec",
        s[0],
        s[1],
        s[2],
        s[3],
        "INSERT INTO note VALUES (1, 'dup', '')",
    ]));
    assert!(
        e.contains("14800032") && e.contains("constraint violation"),
        "{e}"
    );
    let e = d.oxh_err(&rdb(&["query", s[0], s[1], s[2], s[3], "DELETE FROM note"]));
    assert!(
        e.contains("14800019") && e.contains("must be a query"),
        "{e}"
    );
    assert_eq!(
        sqlite3(&file, "SELECT count(*) FROM note"),
        "2\n",
        "nothing lost"
    );
    // Another securityLevel for the same store: 14800017.
    let e = d.oxh_err(&rdb(&[
        "query", s[0], s[1], s[2], s[3], "--level", "S3", "SELECT 1",
    ]));
    assert!(
        e.contains("14800017") && e.contains("Config changed."),
        "{e}"
    );

    // Another app's notes.db is another file: A's table is not there.
    let e = d.oxh_err(&rdb(&[
        "query",
        "--app",
        OTHER,
        "--store",
        "notes.db",
        "SELECT * FROM note",
    ]));
    assert!(e.contains("14800021") && e.contains("no such table"), "{e}");
    assert!(
        d.data_dir()
            .join("rdb")
            .join(OTHER)
            .join("notes.db")
            .exists()
    );
    // A store name that is a path: 14800010.
    let e = d.oxh_err(&rdb(&[
        "query",
        "--app",
        APP,
        "--store",
        "../other/notes.db",
        "SELECT 1",
    ]));
    assert!(e.contains("14800010"), "{e}");

    // setDistributedTables: a table without a primary key is refused, saying why.
    ex(&["CREATE TABLE log(line TEXT)"]);
    let e = d.oxh_err(&rdb(&["distribute", s[0], s[1], s[2], s[3], "log"]));
    assert!(
        e.contains("14800001") && e.contains("no primary key") && e.contains("log"),
        "{e}"
    );
    d.oxh_ok(&rdb(&["distribute", s[0], s[1], s[2], s[3], "note"]));
    // Writes after it are tracked, and the rows are still plain rows for sqlite3.
    ex(&["INSERT INTO note VALUES (3, 'three', '')"]);
    assert_eq!(
        sqlite3(&file, "SELECT title FROM note WHERE id = 3"),
        "three\n"
    );

    d.oxh_ok(&rdb(&["delete-store", s[0], s[1], s[2], s[3]]));
    assert!(!file.exists());
}

async fn get_store(dev: &oxh_sdk::Device, name: &str) -> StoreInfo {
    dev.client()
        .call(
            api::SA_ID,
            api::GET_RDB_STORE,
            &GetStoreArgs {
                app: Some(APP.into()),
                config: StoreConfig::new(name, SecurityLevel::S1),
            },
        )
        .await
        .unwrap()
}

async fn exec(dev: &oxh_sdk::Device, handle: u64, sql: &str) -> Result<Value, oxh_sdk::Error> {
    dev.client()
        .call(
            api::SA_ID,
            api::EXECUTE,
            &ExecuteArgs {
                handle,
                sql: sql.into(),
                args: vec![],
            },
        )
        .await
}

async fn rows(dev: &oxh_sdk::Device, handle: u64, sql: &str) -> Result<Rows, oxh_sdk::Error> {
    dev.client()
        .call(
            api::SA_ID,
            api::QUERY_SQL,
            &QuerySqlArgs {
                handle,
                sql: sql.into(),
                args: vec![],
            },
        )
        .await
}

async fn begin(dev: &oxh_sdk::Device, handle: u64, kind: i32) -> Result<(), oxh_sdk::Error> {
    dev.client()
        .call(
            api::SA_ID,
            api::BEGIN_TRANSACTION,
            &BeginArgs { handle, kind },
        )
        .await
}

fn code<T: std::fmt::Debug>(r: Result<T, oxh_sdk::Error>) -> i32 {
    match r {
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("not a remote error: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[tokio::test]
async fn a_second_write_transaction_meets_14800024_and_a_closed_connection_rolls_back() {
    let d = TestDevice::start();
    let one = d.sdk().await;
    let two = d.sdk().await;
    let h1 = get_store(&one, "tx.db").await.handle;
    let h2 = get_store(&two, "tx.db").await.handle;
    exec(&one, h1, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    begin(&one, h1, 1).await.unwrap();
    exec(&one, h1, "INSERT INTO t VALUES (1)").await.unwrap();
    // The other connection: IMMEDIATE fails at once; DEFERRED begins but cannot write.
    assert_eq!(code(begin(&two, h2, 1).await), 14_800_024);
    assert_eq!(
        code(exec(&two, h2, "INSERT INTO t VALUES (2)").await),
        14_800_024
    );
    // So does another process (the CLI).
    let e = d.oxh_err(&rdb(&[
        "exec",
        "--app",
        APP,
        "--store",
        "tx.db",
        "INSERT INTO t VALUES (3)",
    ]));
    assert!(
        e.contains("14800024") && e.contains("SQLite: The database file is locked."),
        "{e}"
    );
    // Reads go on, without the open transaction's write.
    assert!(
        rows(&two, h2, "SELECT * FROM t")
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    // A handle of another connection is not the caller's.
    assert_eq!(code(rows(&two, h1, "SELECT * FROM t").await), 14_800_014);

    // The connection goes: its transaction rolls back, the lock is free.
    drop(one);
    within(
        "the closed connection's store released",
        Duration::from_secs(10),
        async {
            loop {
                let dump = two.samgr().dump(api::SA_ID, vec![]).await.unwrap();
                if dump.contains("tx.db: handles=1") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    begin(&two, h2, 0).await.unwrap();
    exec(&two, h2, "INSERT INTO t VALUES (2)").await.unwrap();
    two.client()
        .call::<_, ()>(api::SA_ID, api::COMMIT, &api::HandleArgs { handle: h2 })
        .await
        .unwrap();
    let r = rows(&two, h2, "SELECT id FROM t").await.unwrap();
    assert_eq!(r.rows, [vec![Value::Integer(2)]], "1 was rolled back");
}

#[tokio::test]
async fn insert_update_delete_and_query_with_predicates_over_ipc() {
    use oxh_rdb::api::{
        BatchInsertArgs, DeleteArgs, InsertArgs, PredicateOp as P, Predicates, QueryArgs,
        UpdateArgs,
    };
    let d = TestDevice::start();
    let dev = d.sdk().await;
    let h = get_store(&dev, "api.db").await.handle;
    exec(
        &dev,
        h,
        "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, n REAL)",
    )
    .await
    .unwrap();
    let cl = dev.client();
    let row = |id: i64, t: &str| {
        vec![
            ("id".to_string(), Value::Integer(id)),
            ("title".to_string(), Value::Text(t.into())),
        ]
    };
    let id: i64 = cl
        .call(
            api::SA_ID,
            api::INSERT,
            &InsertArgs {
                handle: h,
                table: "note".into(),
                values: row(1, "one"),
                conflict: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(id, 1);
    // ON_CONFLICT_IGNORE (4) skips the duplicate: -1.
    let id: i64 = cl
        .call(
            api::SA_ID,
            api::INSERT,
            &InsertArgs {
                handle: h,
                table: "note".into(),
                values: row(1, "dup"),
                conflict: 4,
            },
        )
        .await
        .unwrap();
    assert_eq!(id, -1);
    let n: i64 = cl
        .call(
            api::SA_ID,
            api::BATCH_INSERT,
            &BatchInsertArgs {
                handle: h,
                table: "note".into(),
                rows: (2..=5).map(|i| row(i, &format!("n{i}"))).collect(),
                conflict: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 4);
    let up: u64 = cl
        .call(
            api::SA_ID,
            api::UPDATE,
            &UpdateArgs {
                handle: h,
                values: vec![("n".into(), Value::Real(0.5))],
                predicates: Predicates::new("note").then(P::Between(
                    "id".into(),
                    Value::Integer(2),
                    Value::Integer(3),
                )),
                conflict: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(up, 2);
    let del: u64 = cl
        .call(
            api::SA_ID,
            api::DELETE,
            &DeleteArgs {
                handle: h,
                predicates: Predicates::new("note").then(P::Like("title".into(), "n5".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(del, 1);
    let r: Rows = cl
        .call(
            api::SA_ID,
            api::QUERY,
            &QueryArgs {
                handle: h,
                predicates: Predicates::new("note")
                    .then(P::IsNotNull("n".into()))
                    .then(P::Or)
                    .then(P::EqualTo("id".into(), Value::Integer(1)))
                    .then(P::OrderByDesc("id".into())),
                columns: vec!["id".into(), "n".into()],
            },
        )
        .await
        .unwrap();
    let mut rs = r.into_result_set();
    assert_eq!(rs.row_count(), 3);
    assert!(rs.go_to_first_row().unwrap());
    assert_eq!(rs.get_long(0).unwrap(), 3);
    assert_eq!(rs.get_double(1).unwrap(), 0.5);
    // A field that is not a name is refused (14800001), as the builder does.
    let e = cl
        .call::<_, Rows>(
            api::SA_ID,
            api::QUERY,
            &QueryArgs {
                handle: h,
                predicates: Predicates::new("note").then(P::IsNull("id) OR (1".into())),
                columns: vec![],
            },
        )
        .await;
    assert_eq!(code(e), 14_800_001);
    // obtainDistributedTableName of a table that is not distributed: 14800001.
    let e = cl
        .call::<_, String>(
            api::SA_ID,
            api::OBTAIN_DISTRIBUTED_TABLE_NAME,
            &api::ObtainNameArgs {
                handle: h,
                device: "peer".into(),
                table: "note".into(),
            },
        )
        .await;
    assert_eq!(code(e), 14_800_001);
    cl.call::<_, ()>(
        api::SA_ID,
        api::CLOSE_RDB_STORE,
        &api::HandleArgs { handle: h },
    )
    .await
    .unwrap();
    assert_eq!(code(rows(&dev, h, "SELECT 1").await), 14_800_014);
}

#[test]
fn a_result_over_the_reply_cap_is_refused_naming_the_limit() {
    let d = TestDevice::start();
    let s = ["--app", APP, "--store", "big.db"];
    let ex = |sql: &str| d.oxh_ok(&rdb(&["exec", s[0], s[1], s[2], s[3], sql]));
    ex("CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT)");
    // Two rows of 600,000 characters: each fits one reply, both do not.
    ex("INSERT INTO big VALUES (1, hex(randomblob(300000)))");
    ex("INSERT INTO big VALUES (2, hex(randomblob(300000)))");
    let one = d.oxh_ok(&rdb(&[
        "query",
        s[0],
        s[1],
        s[2],
        s[3],
        "SELECT v FROM big LIMIT 1",
    ]));
    assert_eq!(one.len(), "v\n".len() + 600_000 + 1);
    let e = d.oxh_err(&rdb(&[
        "query",
        s[0],
        s[1],
        s[2],
        s[3],
        "SELECT * FROM big",
    ]));
    assert!(
        e.contains("14800001") && e.contains(&api::MAX_RESULT_BYTES.to_string()),
        "{e}"
    );
    assert!(e.contains("LIMIT/OFFSET"), "{e}");
    // The daemon is still there and the rows are too.
    assert_eq!(
        d.oxh_ok(&rdb(&[
            "query",
            s[0],
            s[1],
            s[2],
            s[3],
            "SELECT id, length(v) FROM big",
        ])),
        "id|length(v)\n1|600000\n2|600000\n"
    );
}

// ------------------------------------------------------------ app isolation, for real

mod app {
    //! An installed app (a HAP token for the uid `nobody`) running as `nobody`: it opens its
    //! own store without naming itself, and cannot open another app's. The client is this
    //! test binary run again through `runuser` with [`CHILD_ENV`] set; it prints its findings
    //! as JSON lines.

    use super::{APP, rdb};
    use crate::common::{TestDevice, can_run_as_nobody, run_test_child};
    use oxh_atm::rules::HapPolicy;
    use oxh_rdb::api::{self, ExecuteArgs, GetStoreArgs, QuerySqlArgs, Rows, StoreInfo};
    use oxh_rdb::{SecurityLevel, StoreConfig};
    use serde_json::{Value, json};

    const CHILD_ENV: &str = "OXH_RDB_TEST_CHILD";
    const RESULT: &str = "OXH-RDB-RESULT ";
    const RDBAPP: &str = "com.example.rdbapp";

    fn code<T>(r: Result<T, oxh_sdk::Error>) -> Value {
        match r {
            Ok(_) => json!(0),
            Err(e) => json!(e.code()),
        }
    }

    async fn open(dev: &oxh_sdk::Device, app: Option<&str>) -> Result<StoreInfo, oxh_sdk::Error> {
        let a = GetStoreArgs {
            app: app.map(String::from),
            config: StoreConfig::new("mine.db", SecurityLevel::S1),
        };
        dev.client().call(api::SA_ID, api::GET_RDB_STORE, &a).await
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
                        oxh_atm::test_util::app(RDBAPP, Some(65_534)),
                        HapPolicy::normal(&["ohos.permission.INTERNET"]),
                    )
                    .await
                    .unwrap()
                    .token_id();
                json!({ "app": id })
            }
            "app" => {
                let own = open(&dev, None).await.unwrap();
                let cl = dev.client();
                for sql in [
                    "CREATE TABLE t(k TEXT PRIMARY KEY)",
                    "INSERT INTO t VALUES ('mine')",
                ] {
                    let a = ExecuteArgs {
                        handle: own.handle,
                        sql: sql.into(),
                        args: vec![],
                    };
                    cl.call::<_, oxh_rdb::Value>(api::SA_ID, api::EXECUTE, &a)
                        .await
                        .unwrap();
                }
                let q = QuerySqlArgs {
                    handle: own.handle,
                    sql: "SELECT k FROM t".into(),
                    args: vec![],
                };
                let rows: Rows = cl.call(api::SA_ID, api::QUERY_SQL, &q).await.unwrap();
                json!({
                    "app": own.app,
                    "rows": rows.rows.len(),
                    "named_self": code(open(&dev, Some(RDBAPP)).await),
                    "other": code(open(&dev, Some(APP)).await),
                })
            }
            m => panic!("unknown mode {m}"),
        };
        println!("{RESULT}{out}");
    }

    fn run_child(user: Option<&str>, mode: &str, dev: &TestDevice) -> Value {
        let spec = format!("{mode} {}", dev.data_dir().display());
        run_test_child(user, CHILD_ENV, &spec, "rdb::app::child_entry", RESULT).remove(0)
    }

    #[test]
    fn an_app_reaches_only_its_own_relational_stores() {
        if !can_run_as_nobody("an_app_reaches_only_its_own_relational_stores") {
            return;
        }
        let d = TestDevice::start();
        d.let_others_in();
        d.oxh_ok(&rdb(&[
            "exec",
            "--app",
            APP,
            "--store",
            "mine.db",
            "CREATE TABLE secret(x)",
        ]));
        let setup = run_child(None, "setup", &d);
        assert!(setup["app"].as_u64().is_some(), "{setup}");
        let r = run_child(Some("nobody"), "app", &d);
        assert_eq!(r["app"], RDBAPP, "the app comes from the token: {r}");
        assert_eq!(r["rows"], 1, "{r}");
        assert_eq!(r["named_self"], 0, "{r}");
        assert_eq!(r["other"], 201, "another app's store: {r}");
        // The app's store is under its own bundle, where the shell finds it.
        let got = d.oxh_ok(&rdb(&[
            "query",
            "--app",
            RDBAPP,
            "--store",
            "mine.db",
            "SELECT k FROM t",
        ]));
        assert_eq!(got, "k\nmine\n");
    }
}

/// `examples/rdb-c/rdb.c`, C written as OpenHarmony's NDK guide shows the relational store,
/// compiled with `-Wall -Wextra -Werror` against the NDK headers and linked with
/// liboxh_ndk.so, runs against a real daemon as a native process (uid 0, not the oxh tool:
/// the resolver gives it a native token, which names its app in `bundleName`, as `oxh` does
/// with --app); what it wrote is then read back by `oxh rdb query` and by sqlite3 on the file.
#[test]
fn a_c_program_on_the_oh_rdb_ndk_writes_rows_the_store_really_holds() {
    let ndk = crate::ability::example_lib("oxh-ndk", "oxh_ndk");
    let lib_dir = ndk.parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    let exe = work.path().join("rdb-c");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let o = Command::new(&cc)
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("crates/ndk/include"))
        .arg("-o")
        .arg(&exe)
        .arg(root.join("examples/rdb-c/rdb.c"))
        .arg("-L")
        .arg(lib_dir)
        .arg("-loxh_ndk")
        .arg("-lpthread")
        .output()
        .expect("a C compiler");
    assert!(
        o.status.success(),
        "rdb.c does not compile against the NDK headers: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let d = TestDevice::start();
    let o = Command::new(&exe)
        .arg(APP)
        .env("OXH_DATA_DIR", d.data_dir())
        .env_remove(oxh_ability::api::IPC_SOCKET_ENV)
        .env("LD_LIBRARY_PATH", lib_dir)
        .output()
        .expect("run the C program");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out,
        "opened\n\
         inserted 2\n\
         constraint 14800065\n\
         columns=5 second=NAME\n\
         rows=2\n\
         row id=2 name=Rose age=22 salary=200.5 codes=null\n\
         row id=1 name=Lisa age=18 salary=100.5 codes=set\n\
         rows=1\n\
         row id=2 name=Rose age=22 salary=200.5 codes=null\n\
         busy 14800054\n\
         updated 1\n\
         rolled back delete of 1\n\
         rows=2\n\
         row id=1 name=Lisa age=18 salary=300.0 codes=set\n\
         row id=2 name=Rose age=22 salary=200.5 codes=null\n\
         distributed\n\
         observed table=EMPLOYEE inserted=1 key=3\n\
         unsubscribed\n\
         closed\n"
    );
    // The committed update and the rolled-back delete, as the service and the file hold them.
    let got = d.oxh_ok(&rdb(&[
        "query",
        "--app",
        APP,
        "--store",
        "RdbTest.db",
        "SELECT ID, NAME, AGE, SALARY, hex(CODES) FROM EMPLOYEE ORDER BY ID",
    ]));
    assert_eq!(
        got,
        "ID|NAME|AGE|SALARY|hex(CODES)\n1|Lisa|18|300|0102030405\n2|Rose|22|200.5|\n"
    );
    let file = d.data_dir().join("rdb").join(APP).join("RdbTest.db");
    assert_eq!(
        sqlite3(&file, "SELECT ID, NAME, SALARY FROM EMPLOYEE ORDER BY ID"),
        "1|Lisa|300.0\n2|Rose|200.5\n"
    );
}

/// The SDK's `@ohos.data.relationalStore`: getRdbStore, insert / batchInsert, query by
/// predicates into a ResultSet, update and delete by predicates, querySql, a transaction
/// rolled back and one committed, setDistributedTables refusing a table without a primary
/// key, and the rows really in the store (read back by the CLI).
#[tokio::test]
async fn the_sdk_store_writes_and_reads_by_predicates_and_transactions() {
    use oxh_sdk::rdb::{self, RdbPredicates, TransactionType};
    let d = TestDevice::start();
    let dev = d.sdk().await;
    let cfg = StoreConfig::new("sdk.db", SecurityLevel::S1);
    let store = rdb::get_rdb_store(&dev, Some(APP), cfg.clone())
        .await
        .expect("getRdbStore");
    assert_eq!(store.bundle_name(), APP);
    store
        .execute_sql(
            "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, stars INTEGER)",
            vec![],
        )
        .await
        .expect("create");
    let row = |id: i64, t: &str, s: i64| {
        vec![
            ("id".to_string(), Value::Integer(id)),
            ("title".to_string(), Value::Text(t.into())),
            ("stars".to_string(), Value::Integer(s)),
        ]
    };
    assert_eq!(
        store
            .insert("note", row(1, "one", 1))
            .await
            .expect("insert"),
        1
    );
    let n = store
        .batch_insert(
            "note",
            vec![row(2, "two", 2), row(3, "three", 3), row(4, "four", 4)],
        )
        .await
        .expect("batchInsert");
    assert_eq!(n, 3);
    let mut rs = store
        .query(
            RdbPredicates::new("note")
                .greater_than("stars", Value::Integer(1))
                .and()
                .like("title", "t%")
                .order_by_desc("stars"),
            &["id", "title"],
        )
        .await
        .expect("query");
    let mut got = Vec::new();
    while rs.go_to_next_row().expect("row") {
        got.push((
            rs.get_long(0).expect("id"),
            rs.get_string(1).expect("title"),
        ));
    }
    assert_eq!(got, vec![(3, "three".to_string()), (2, "two".to_string())]);
    let changed = store
        .update(
            vec![("stars".to_string(), Value::Integer(10))],
            RdbPredicates::new("note").in_("id", vec![Value::Integer(1), Value::Integer(2)]),
        )
        .await
        .expect("update");
    assert_eq!(changed, 2);
    // A transaction rolled back leaves nothing; one committed stays.
    store
        .begin_transaction(TransactionType::Immediate)
        .await
        .expect("begin");
    let gone = store
        .delete(RdbPredicates::new("note").between("id", Value::Integer(1), Value::Integer(4)))
        .await
        .expect("delete");
    assert_eq!(gone, 4);
    store.roll_back().await.expect("rollBack");
    store
        .begin_transaction(TransactionType::Deferred)
        .await
        .expect("begin");
    store
        .delete(RdbPredicates::new("note").equal_to("id", Value::Integer(4)))
        .await
        .expect("delete");
    store.commit().await.expect("commit");
    let mut rs = store
        .query_sql(
            "SELECT sum(stars) FROM note WHERE id < ?",
            vec![Value::Integer(10)],
        )
        .await
        .expect("querySql");
    assert!(rs.go_to_next_row().expect("row"));
    assert_eq!(rs.get_long(0).expect("sum"), 10 + 10 + 3);
    // Distribution needs a primary key.
    store
        .execute_sql("CREATE TABLE log(msg TEXT)", vec![])
        .await
        .expect("create log");
    match store.set_distributed_tables(&["log"]).await {
        Err(oxh_sdk::Error::Remote(e)) => assert_eq!(e.code, 14_800_001, "{e:?}"),
        other => panic!("a table without a primary key was distributed: {other:?}"),
    }
    store
        .set_distributed_tables(&["note"])
        .await
        .expect("distribute note");
    store.close().await.expect("close");
    let out = d.oxh_ok(&rdb(&[
        "query",
        "--app",
        APP,
        "--store",
        "sdk.db",
        "--json",
        "SELECT id, stars FROM note ORDER BY id",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        v,
        serde_json::json!([{"id": 1, "stars": 10}, {"id": 2, "stars": 10}, {"id": 3, "stars": 3}]),
        "{out}"
    );
}

/// The store with `note` distributed, through the CLI.
fn cli_note_store(d: &TestDevice) {
    cli_ok(
        d,
        &[
            "exec",
            "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)",
        ],
    );
    cli_ok(d, &["distribute", "note"]);
}

/// `oxh rdb CMD --app APP --store notes.db ARGS...`, which must succeed; its output.
fn cli_ok(d: &TestDevice, args: &[&str]) -> String {
    let s = ["--app", APP, "--store", "notes.db"];
    let mut v = vec![args[0]];
    v.extend_from_slice(&s);
    v.extend_from_slice(&args[1..]);
    let o = d.oxh(&rdb(&v));
    assert!(
        o.status.success(),
        "oxh rdb {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn two_devices_sync_by_the_cli_keep_both_column_edits_and_answer_remote_queries() {
    let (a, b) = crate::kv::pair().await;
    cli_note_store(&a);
    cli_note_store(&b);
    for i in 1..=3 {
        let id = i.to_string();
        cli_ok(
            &a,
            &[
                "exec",
                "INSERT INTO note VALUES (?, ?, ?)",
                &id,
                "title",
                "body",
            ],
        );
    }
    let b_udid = b.ready_field("udid");
    let out = cli_ok(&a, &["sync", "--push", "--devices", &b_udid]);
    assert!(out.trim_end().ends_with("success"), "{out}");
    let q = "SELECT id, title, body FROM note ORDER BY id";
    assert_eq!(cli_ok(&b, &["query", q]), cli_ok(&a, &["query", q]));
    // Concurrent edits of two columns of one row, then one sync both ways.
    cli_ok(
        &a,
        &["exec", "UPDATE note SET title = 'from a' WHERE id = 2"],
    );
    cli_ok(
        &b,
        &["exec", "UPDATE note SET body = 'from b' WHERE id = 2"],
    );
    let out = cli_ok(&b, &["sync"]);
    assert!(out.trim_end().ends_with("success"), "{out}");
    let want = "1|title|body\n2|from a|from b\n3|title|body\n";
    for d in [&a, &b] {
        let file = d.data_dir().join("rdb").join(APP).join("notes.db");
        assert_eq!(sqlite3(&file, q), want, "{}", file.display());
    }
    // remoteQuery: b's rows, read on b, nothing written anywhere.
    cli_ok(
        &b,
        &["exec", "INSERT INTO note VALUES (9, 'only on b', '')"],
    );
    let out = cli_ok(
        &a,
        &[
            "remote-query",
            "--device",
            &b_udid,
            "SELECT id, title FROM note WHERE id = ?",
            "9",
        ],
    );
    assert_eq!(out, "id|title\n9|only on b\n");
    assert_eq!(
        cli_ok(&a, &["query", "SELECT count(*) AS n FROM note"]),
        "n\n3\n"
    );
    let o = a.oxh(&rdb(&[
        "remote-query",
        "--app",
        APP,
        "--store",
        "notes.db",
        "--device",
        &b_udid,
        "DELETE FROM note",
    ]));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("14800019"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A device that is not there is reported per device, with exit status 1.
    let o = a.oxh(&rdb(&[
        "sync",
        "--app",
        APP,
        "--store",
        "notes.db",
        "--devices",
        "nosuchdevice",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "nosuchdevice device offline\n"
    );
}

async fn sdk_note_store(dev: &oxh_sdk::Device, name: &str) -> oxh_sdk::rdb::RdbStore {
    let s = oxh_sdk::rdb::get_rdb_store(dev, Some(APP), StoreConfig::new(name, SecurityLevel::S1))
        .await
        .expect("getRdbStore");
    s.execute_sql(
        "CREATE TABLE IF NOT EXISTS note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)",
        vec![],
    )
    .await
    .expect("create");
    s.set_distributed_tables(&["note"])
        .await
        .expect("distribute");
    s
}

async fn count(s: &oxh_sdk::rdb::RdbStore) -> i64 {
    let mut rs = s
        .query_sql("SELECT count(*) FROM note", vec![])
        .await
        .expect("count");
    assert!(rs.go_to_next_row().expect("a row"));
    rs.get_long(0).expect("n")
}

#[tokio::test]
async fn kill9_mid_write_loses_no_acknowledged_row() {
    let mut d = TestDevice::start();
    let acked = {
        let dev = d.sdk().await;
        let st = sdk_note_store(&dev, "crash.db").await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            for i in 0..100_000i64 {
                let row = vec![
                    ("id".to_string(), Value::Integer(i)),
                    ("title".to_string(), Value::Text("t".into())),
                ];
                if st.insert("note", row).await.is_err() {
                    return;
                }
                let _ = tx.send(i);
            }
        });
        let mut acked = Vec::new();
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
    let st = sdk_note_store(&dev, "crash.db").await;
    let mut rs = st.query_sql("SELECT id FROM note", vec![]).await.unwrap();
    let mut have = std::collections::HashSet::new();
    while rs.go_to_next_row().unwrap() {
        have.insert(rs.get_long(0).unwrap());
    }
    for i in &acked {
        assert!(have.contains(i), "row {i} was acknowledged, then lost");
    }
    // The change log kept up: every row is still there to sync.
    assert_eq!(have.len() as i64, count(&st).await);
}

#[tokio::test]
async fn kill9_mid_sync_then_restart_resumes_and_loses_nothing() {
    use oxh_sdk::rdb::{RdbPredicates, SyncMode, SyncStatus};
    let (a, mut b) = crate::kv::pair().await;
    let (da, db) = (a.sdk().await, b.sdk().await);
    let sa = sdk_note_store(&da, "big.db").await;
    let sb = sdk_note_store(&db, "big.db").await;
    const N: i64 = 60_000;
    for c in 0..N / 500 {
        let rows: Vec<_> = (0..500)
            .map(|i| {
                vec![
                    ("id".to_string(), Value::Integer(c * 500 + i)),
                    ("title".to_string(), Value::Text("x".repeat(100))),
                ]
            })
            .collect();
        sa.batch_insert("note", rows).await.unwrap();
    }
    let b_udid = b.ready_field("udid");
    let to_b = RdbPredicates::new("note").in_devices(vec![b_udid.clone()]);
    let mut w = sb
        .on_data_change(oxh_sdk::rdb::SUBSCRIBE_TYPE_REMOTE)
        .await
        .unwrap();
    let sync = {
        let (sa, p) = (sa.clone(), to_b.clone());
        tokio::spawn(async move { sa.sync(SyncMode::Push, &p, Duration::from_secs(30)).await })
    };
    // Once the first packet is committed on b, kill it in the middle of the sync.
    within("the first rows on b", Duration::from_secs(30), w.next()).await;
    drop(w);
    drop(sb);
    drop(db);
    b.kill9();
    let r = sync.await.unwrap().unwrap();
    assert_ne!(r[0].status, SyncStatus::Success, "b died mid-sync: {r:?}");
    b.restart();
    crate::kv::wait_online(&a, &b_udid).await;
    let r = sa
        .sync(SyncMode::Push, &to_b, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    let db = b.sdk().await;
    let sb = sdk_note_store(&db, "big.db").await;
    assert_eq!(count(&sb).await, N);
}

// ------------------------------------------------------------ three hosts in namespaces

mod netns {
    //! Three hosts on a bridge (network namespaces), each a real `oxhd` with the same store:
    //! concurrent writers to different columns of the same rows, one host cut off and
    //! writing, the link back; the converged tables, read by `sqlite3` from each device's
    //! file, are the same and keep every column's latest write. Needs root and `ip`; prints
    //! why and passes without them. Guards remove processes and namespaces.

    use super::{APP, sqlite3};
    use crate::common::NsDevice;
    use crate::kv::netns::{futures_join_all, three_bound_hosts, wait_online_count};
    use oxh_sdk::rdb::Value;
    use oxh_sdk::rdb::{self, RdbPredicates, SecurityLevel, StoreConfig, SyncMode, SyncStatus};
    use std::time::Duration;

    async fn store(d: &NsDevice) -> rdb::RdbStore {
        let dev = d.sdk().await;
        let s = rdb::get_rdb_store(
            &dev,
            Some(APP),
            StoreConfig::new("ns.db", SecurityLevel::S1),
        )
        .await
        .unwrap();
        s.execute_sql(
            "CREATE TABLE IF NOT EXISTS note(id INTEGER PRIMARY KEY, title TEXT, body TEXT)",
            vec![],
        )
        .await
        .unwrap();
        s.set_distributed_tables(&["note"]).await.unwrap();
        s
    }

    async fn sync_all(stores: &[rdb::RdbStore]) {
        for s in stores {
            let r = s
                .sync(
                    SyncMode::PushPull,
                    &RdbPredicates::new("note"),
                    Duration::from_secs(20),
                )
                .await
                .unwrap();
            assert!(r.iter().all(|r| r.status == SyncStatus::Success), "{r:?}");
        }
    }

    async fn exec(s: &rdb::RdbStore, sql: &str, args: Vec<Value>) {
        s.execute_sql(sql, args).await.unwrap();
    }

    fn table(d: &NsDevice) -> String {
        let file = d.data_dir().join("rdb").join(APP).join("ns.db");
        sqlite3(&file, "SELECT id, title, body FROM note ORDER BY id")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_hosts_converge_column_by_column_after_a_partition_heals() {
        let Some((_netns, devs)) = three_bound_hosts(
            "three_hosts_converge_column_by_column_after_a_partition_heals",
            "oxhrdb",
            "10.78.0",
            "rdb",
        )
        .await
        else {
            return;
        };
        let [a, b, c] = &devs[..] else { unreachable!() };
        let stores = vec![store(a).await, store(b).await, store(c).await];
        for id in 0..10 {
            exec(
                &stores[0],
                "INSERT INTO note VALUES (?, 'title', 'body')",
                vec![Value::Integer(id)],
            )
            .await;
        }
        sync_all(&stores).await;

        // Concurrent writers: a retitles every shared row, b rewrites every body, c adds rows.
        let writers = stores.iter().enumerate().map(|(i, s)| async move {
            for id in 0..10i64 {
                let (sql, args) = match i {
                    0 => (
                        "UPDATE note SET title = ? WHERE id = ?",
                        vec![Value::Text(format!("a{id}")), Value::Integer(id)],
                    ),
                    1 => (
                        "UPDATE note SET body = ? WHERE id = ?",
                        vec![Value::Text(format!("b{id}")), Value::Integer(id)],
                    ),
                    _ => (
                        "INSERT INTO note VALUES (?, 'c', 'c')",
                        vec![Value::Integer(100 + id)],
                    ),
                };
                s.execute_sql(sql, args).await.unwrap();
            }
        });
        futures_join_all(writers).await;
        sync_all(&stores).await;
        let first = table(a);
        assert_eq!(first.lines().count(), 20, "{first}");
        assert!(
            first.contains("\n3|a3|b3\n"),
            "both columns' edits kept: {first}"
        );
        assert_eq!(table(b), first);
        assert_eq!(table(c), first);

        // Cut c off; both sides write: a and c edit different columns of row 1, c deletes
        // row 2 and edits row 3's body while b retitles row 3.
        c.link("down");
        wait_online_count(a, 1).await;
        wait_online_count(c, 0).await;
        exec(
            &stores[0],
            "UPDATE note SET title = 'a-cut' WHERE id = 1",
            vec![],
        )
        .await;
        exec(
            &stores[2],
            "UPDATE note SET body = 'c-cut' WHERE id = 1",
            vec![],
        )
        .await;
        exec(&stores[2], "DELETE FROM note WHERE id = 2", vec![]).await;
        exec(
            &stores[2],
            "UPDATE note SET body = 'c3' WHERE id = 3",
            vec![],
        )
        .await;
        exec(
            &stores[1],
            "UPDATE note SET title = 'b3' WHERE id = 3",
            vec![],
        )
        .await;
        sync_all(&stores[..2]).await;
        assert_eq!(table(a), table(b));
        assert_ne!(table(a), table(c));

        // Heal: the same table everywhere, every column's latest write in it.
        c.link("up");
        for d in &devs {
            wait_online_count(d, 2).await;
        }
        sync_all(&stores).await;
        sync_all(&stores).await;
        let want = table(a);
        assert_eq!(table(b), want, "b differs after the heal");
        assert_eq!(table(c), want, "c differs after the heal");
        assert!(want.contains("\n1|a-cut|c-cut\n"), "{want}");
        assert!(want.contains("\n3|b3|c3\n"), "{want}");
        assert!(
            !want.contains("\n2|"),
            "the delete reached everyone: {want}"
        );
        assert_eq!(want.lines().count(), 19);
    }
}

#[tokio::test]
async fn sdk_observers_hear_local_commits_and_a_peers_sync() {
    use oxh_sdk::rdb::{
        RdbEvent, RdbPredicates, SUBSCRIBE_TYPE_LOCAL_DETAILS, SUBSCRIBE_TYPE_REMOTE, SyncMode,
        SyncStatus,
    };
    let (a, b) = crate::kv::pair().await;
    let (da, db) = (a.sdk().await, b.sdk().await);
    let sa = sdk_note_store(&da, "watch.db").await;
    let sb = sdk_note_store(&db, "watch.db").await;
    let mut la = sa
        .on_data_change(SUBSCRIBE_TYPE_LOCAL_DETAILS)
        .await
        .unwrap();
    let mut rb = sb.on_data_change(SUBSCRIBE_TYPE_REMOTE).await.unwrap();
    let row = vec![
        ("id".to_string(), Value::Integer(42)),
        ("title".to_string(), Value::Text("t".into())),
    ];
    sa.insert("note", row).await.unwrap();
    let Some(RdbEvent::DataChange {
        remote: false,
        changes,
        ..
    }) = within("a's local event", Duration::from_secs(10), la.next()).await
    else {
        panic!("not a local change");
    };
    assert_eq!(changes[0].table, "note");
    assert_eq!(changes[0].inserted, vec![vec![Value::Integer(42)]]);
    let to_b = RdbPredicates::new("note").in_devices(vec![b.ready_field("udid")]);
    let r = sa
        .sync(SyncMode::Push, &to_b, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(r[0].status, SyncStatus::Success, "{r:?}");
    let Some(RdbEvent::DataChange {
        remote: true,
        devices,
        changes,
        ..
    }) = within("b's remote event", Duration::from_secs(10), rb.next()).await
    else {
        panic!("not a remote change");
    };
    assert_eq!(devices, vec![a.ready_field("udid")]);
    assert_eq!(changes[0].inserted, vec![vec![Value::Integer(42)]]);
    sb.off_data_change(rb).await.unwrap();
}
