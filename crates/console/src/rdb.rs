//! The relational-store panel: an app's store browsed with read-only queries (querySql), edited
//! with one statement at a time (executeSql), and synced with the result per device. Each
//! request opens the store on the console's connection, runs, and closes it, as `oxh rdb`
//! does; the rdb service decides what the console's shell token may do.

use crate::MAX_RDB_ROWS_SHOWN;
use crate::api::{Reply, daemon, err_json};
use crate::server::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use oxh_rdb::api::{self, StoreHandle};
use oxh_rdb::config::{SecurityLevel, StoreConfig};
use oxh_rdb::value::Value;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Which store, and what to run on it.
#[derive(Debug, Deserialize)]
pub(crate) struct RdbReq {
    app: String,
    store: String,
    /// S1..S4 (fixed when the store was made; another is 14800017).
    #[serde(default = "s1")]
    level: String,
    /// The statement or query (with `?` and `args`).
    #[serde(default)]
    sql: String,
    /// Bind arguments, as JSON scalars (null, numbers, strings).
    #[serde(default)]
    args: Vec<serde_json::Value>,
    /// Sync: one table, or every distributed one.
    #[serde(default)]
    table: Option<String>,
}

fn s1() -> String {
    "S1".into()
}

fn level(s: &str) -> Result<SecurityLevel, String> {
    s.strip_prefix(['S', 's'])
        .and_then(|n| n.parse::<i32>().ok())
        .and_then(|n| SecurityLevel::from_i32(n).ok())
        .ok_or_else(|| format!("security level {s:?}: S1, S2, S3 or S4"))
}

/// A JSON argument as a store value (a blob is not typed from the page).
fn bind(v: &serde_json::Value) -> Result<Value, String> {
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => return Err(format!("argument {other}: a number, a string or null")),
    })
}

/// A value as the page shows it: numbers and text as they are, a blob as `x'hex'`.
fn show(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => json!(i),
        Value::Real(f) => json!(f),
        Value::Text(s) => json!(s),
        Value::Blob(b) => json!(format!("x'{}'", hex::encode(b))),
    }
}

fn bad(e: impl Into<String>) -> axum::response::Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": e.into() }))).into_response()
}

/// Opens the store; runs `f` with its handle; closes it whatever `f` returned.
async fn with_store<T, F, Fut>(
    dev: &oxh_sdk::Device,
    r: &RdbReq,
    f: F,
) -> Result<Result<T, oxh_sdk::Error>, String>
where
    F: FnOnce(StoreHandle) -> Fut,
    Fut: std::future::Future<Output = Result<T, oxh_sdk::Error>>,
{
    let config = StoreConfig {
        name: r.store.clone(),
        security_level: level(&r.level)?,
        custom_dir: None,
    };
    let a = api::GetStoreArgs {
        app: Some(r.app.clone()),
        config,
    };
    let info: api::StoreInfo = match dev.client().call(api::SA_ID, api::GET_RDB_STORE, &a).await {
        Ok(i) => i,
        Err(e) => return Ok(Err(e)),
    };
    let out = f(info.handle).await;
    let _ = dev
        .client()
        .call::<_, ()>(api::SA_ID, api::CLOSE_RDB_STORE, &info.handle)
        .await;
    Ok(out)
}

async fn rows(
    dev: &oxh_sdk::Device,
    h: StoreHandle,
    sql: &str,
    args: Vec<Value>,
) -> Result<api::Rows, oxh_sdk::Error> {
    let a = api::QuerySqlArgs {
        handle: h,
        sql: sql.to_string(),
        args,
    };
    dev.client().call(api::SA_ID, api::QUERY_SQL, &a).await
}

/// `POST /api/rdb/tables`: the store's tables (the service's own bookkeeping left out).
pub(crate) async fn tables(State(st): State<AppState>, Json(r): Json<RdbReq>) -> Reply {
    let dev = daemon(&st).await?;
    let sql = "SELECT name FROM sqlite_master WHERE type = 'table' \
               AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'oxh\\_%' ESCAPE '\\' \
               ORDER BY name";
    let got = match with_store(&dev, &r, |h| rows(&dev, h, sql, vec![])).await {
        Ok(g) => g,
        Err(e) => return Ok(bad(e)),
    };
    Ok(match got {
        Ok(t) => {
            let names: Vec<_> = t.rows.iter().filter_map(|r| r.first()).map(show).collect();
            Json(json!({ "tables": names })).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(err_json(&e))).into_response(),
    })
}

/// `POST /api/rdb/query`: a read-only query (querySql: anything else is 14800019), at most
/// [`MAX_RDB_ROWS_SHOWN`] rows shown.
pub(crate) async fn query(State(st): State<AppState>, Json(r): Json<RdbReq>) -> Reply {
    let dev = daemon(&st).await?;
    let args = match r.args.iter().map(bind).collect::<Result<Vec<_>, _>>() {
        Ok(a) => a,
        Err(e) => return Ok(bad(e)),
    };
    let got = match with_store(&dev, &r, |h| rows(&dev, h, &r.sql, args)).await {
        Ok(g) => g,
        Err(e) => return Ok(bad(e)),
    };
    Ok(match got {
        Ok(t) => {
            let total = t.rows.len();
            let shown: Vec<Vec<_>> = t
                .rows
                .iter()
                .take(MAX_RDB_ROWS_SHOWN)
                .map(|row| row.iter().map(show).collect())
                .collect();
            Json(json!({ "columns": t.columns, "rows": shown, "total": total })).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(err_json(&e))).into_response(),
    })
}

/// `POST /api/rdb/exec`: one statement (executeSql): an INSERT's rowid, the rows an UPDATE or
/// DELETE changed, nothing for the rest.
pub(crate) async fn exec(State(st): State<AppState>, Json(r): Json<RdbReq>) -> Reply {
    let dev = daemon(&st).await?;
    let args = match r.args.iter().map(bind).collect::<Result<Vec<_>, _>>() {
        Ok(a) => a,
        Err(e) => return Ok(bad(e)),
    };
    let got = with_store(&dev, &r, |h| {
        let a = api::ExecuteArgs {
            handle: h,
            sql: r.sql.clone(),
            args,
        };
        let dev = &dev;
        async move {
            dev.client()
                .call::<_, Value>(api::SA_ID, api::EXECUTE, &a)
                .await
        }
    })
    .await;
    Ok(match got {
        Err(e) => bad(e),
        Ok(Ok(v)) => Json(json!({ "result": show(&v) })).into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, Json(err_json(&e))).into_response(),
    })
}

/// `POST /api/rdb/sync`: push and pull one table, or every distributed table, with every
/// online trusted device; the status per device.
pub(crate) async fn sync(State(st): State<AppState>, Json(r): Json<RdbReq>) -> Reply {
    let dev = daemon(&st).await?;
    let t0 = std::time::Instant::now();
    let got = with_store(&dev, &r, |h| {
        let a = api::SyncArgs {
            handle: h,
            mode: api::SyncMode::PushPull,
            devices: Vec::new(),
            timeout_ms: Duration::from_secs(10).as_millis() as u64,
            table: r.table.clone().filter(|t| !t.is_empty()),
        };
        let dev = &dev;
        async move {
            dev.client()
                .call::<_, Vec<api::DeviceSyncResult>>(api::SA_ID, api::SYNC, &a)
                .await
        }
    })
    .await;
    Ok(match got {
        Err(e) => bad(e),
        Ok(Ok(res)) => {
            let v: Vec<_> = res
                .iter()
                .map(|x| json!({ "networkId": x.network_id, "deviceId": x.device_id, "status": x.status.as_str() }))
                .collect();
            Json(json!({ "results": v, "ms": t0.elapsed().as_millis() as u64 })).into_response()
        }
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, Json(err_json(&e))).into_response(),
    })
}
