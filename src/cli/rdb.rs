//! `oxh rdb`: the relational store (@ohos.data.relationalStore) from the command line. The
//! shell names the app, as `oxh kv` does; each command opens the store on its connection,
//! runs, and closes it.

use super::Global;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use oxh_rdb::api::{self, GetStoreArgs, Rows, StoreHandle};
use oxh_rdb::{SecurityLevel, StoreConfig, Value};

/// How bind arguments given as text become values.
const BIND_HELP: &str = "Bind arguments (one per `?`), typed by how they look: `NULL` is NULL; \
an integer (`42`, `-7`) is INTEGER; a number with `.` or an exponent (`1.5`, `2e3`) is REAL; \
`x'0aff'` is a BLOB (hex); anything else is TEXT. Wrap a value in double quotes (`'\"42\"'` in \
the shell) to make it TEXT as it is, or give --text to make every argument TEXT. Put `--` before \
arguments that start with `-` and are not numbers.";

/// Which store.
#[derive(Debug, Clone, Args)]
pub struct StoreOpts {
    /// The app (bundle name) whose store it is.
    #[arg(long)]
    app: String,
    /// The store's name (StoreConfig.name), e.g. notes.db.
    #[arg(long)]
    store: String,
    /// securityLevel: S1..S4 (fixed when the store is made; another one is 14800017).
    #[arg(long, default_value = "S1")]
    level: String,
    /// customDir: a sub-directory of the app's database dir.
    #[arg(long)]
    custom_dir: Option<String>,
}

impl StoreOpts {
    fn config(&self) -> Result<StoreConfig> {
        let n = self
            .level
            .strip_prefix(['S', 's'])
            .and_then(|n| n.parse::<i32>().ok());
        let Some(n) = n else {
            bail!("--level {:?}: say S1, S2, S3 or S4", self.level)
        };
        Ok(StoreConfig {
            name: self.store.clone(),
            security_level: SecurityLevel::from_i32(n)?,
            custom_dir: self.custom_dir.clone(),
        })
    }
}

/// `oxh rdb` commands.
#[derive(Debug, Subcommand)]
pub enum RdbCmd {
    /// Run one SQL statement (execute); prints what it returns: the rowid of an INSERT, the
    /// rows an UPDATE or DELETE changed, nothing for the rest.
    #[command(after_help = BIND_HELP, allow_negative_numbers = true)]
    Exec {
        #[command(flatten)]
        s: StoreOpts,
        /// Every bind argument is TEXT.
        #[arg(long)]
        text: bool,
        /// The statement.
        sql: String,
        /// Bind arguments (see below).
        args: Vec<String>,
    },
    /// Run a query (querySql); prints `col|col` then a line per row (NULL empty, blobs as
    /// x'hex'), or with --json an array of objects, column names as keys, blobs as lowercase
    /// hex strings.
    #[command(after_help = BIND_HELP, allow_negative_numbers = true)]
    Query {
        #[command(flatten)]
        s: StoreOpts,
        /// Every bind argument is TEXT.
        #[arg(long)]
        text: bool,
        /// The query.
        sql: String,
        /// Bind arguments (see below).
        args: Vec<String>,
    },
    /// Mark tables distributed (setDistributedTables; each needs a primary key, at most 32).
    Distribute {
        #[command(flatten)]
        s: StoreOpts,
        /// The tables.
        #[arg(required = true)]
        tables: Vec<String>,
    },
    /// Sync the distributed tables with other devices (sync); prints the status per device
    /// and exits 1 unless every device succeeded.
    Sync {
        #[command(flatten)]
        s: StoreOpts,
        /// Push only (SYNC_MODE_PUSH).
        #[arg(long, conflicts_with = "pull")]
        push: bool,
        /// Pull only (SYNC_MODE_PULL). Neither: both ways.
        #[arg(long)]
        pull: bool,
        /// `all` or networkIds / device ids, comma separated (the predicates' inDevices).
        #[arg(long, default_value = "all")]
        devices: String,
        /// Only this distributed table (the predicates' table); else every one.
        #[arg(long)]
        table: Option<String>,
        /// How long to wait, in milliseconds.
        #[arg(long, default_value_t = api::DEFAULT_SYNC_TIMEOUT_MS)]
        timeout_ms: u64,
    },
    /// Run a query on another device's copy of the store (remoteQuery), read-only; prints
    /// as `query` does.
    #[command(after_help = BIND_HELP, allow_negative_numbers = true)]
    RemoteQuery {
        #[command(flatten)]
        s: StoreOpts,
        /// The device (networkId or device id).
        #[arg(long)]
        device: String,
        /// Every bind argument is TEXT.
        #[arg(long)]
        text: bool,
        /// The query.
        sql: String,
        /// Bind arguments (see below).
        args: Vec<String>,
    },
    /// Delete the store's files (deleteRdbStore).
    DeleteStore {
        #[command(flatten)]
        s: StoreOpts,
    },
}

/// A bind argument typed by the rule in [`BIND_HELP`].
pub fn bind_value(a: &str, all_text: bool) -> Result<Value> {
    if all_text {
        return Ok(Value::Text(a.to_string()));
    }
    if a == "NULL" {
        return Ok(Value::Null);
    }
    if let Some(t) = a.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Ok(Value::Text(t.to_string()));
    }
    if let Some(h) = a
        .strip_prefix(['x', 'X'])
        .and_then(|h| h.strip_prefix('\''))
        .and_then(|h| h.strip_suffix('\''))
    {
        return match hex::decode(h) {
            Ok(b) => Ok(Value::Blob(b)),
            Err(e) => bail!("{a}: not a hex blob ({e}); quote it to pass it as TEXT"),
        };
    }
    if let Ok(i) = a.parse::<i64>() {
        return Ok(Value::Integer(i));
    }
    let numeric = a
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && a.bytes().any(|b| b.is_ascii_digit());
    if numeric && let Ok(r) = a.parse::<f64>() {
        return Ok(Value::Real(r));
    }
    Ok(Value::Text(a.to_string()))
}

fn binds(args: &[String], text: bool) -> Result<Vec<Value>> {
    args.iter().map(|a| bind_value(a, text)).collect()
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

fn cell_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(r) => (*r).into(),
        Value::Text(t) => t.clone().into(),
        Value::Blob(b) => hex::encode(b).into(),
    }
}

/// The rows as JSON: an array of objects whose keys are the column names, in column order.
pub fn rows_json(r: &Rows) -> Result<String> {
    let mut out = String::from("[");
    for (i, row) in r.rows.iter().enumerate() {
        out += if i == 0 { "\n  {" } else { ",\n  {" };
        for (j, (c, v)) in r.columns.iter().zip(row).enumerate() {
            if j > 0 {
                out += ", ";
            }
            out += &serde_json::to_string(c)?;
            out += ": ";
            out += &serde_json::to_string(&cell_json(v))?;
        }
        out += "}";
    }
    out += if r.rows.is_empty() { "]" } else { "\n]" };
    Ok(out)
}

fn print_rows(g: &Global, r: &Rows) -> Result<()> {
    if g.json {
        println!("{}", rows_json(r)?);
    } else {
        println!("{}", r.columns.join("|"));
        for row in &r.rows {
            let cells: Vec<String> = row.iter().map(cell_text).collect();
            println!("{}", cells.join("|"));
        }
    }
    Ok(())
}

async fn open(dev: &oxh_sdk::Device, s: &StoreOpts) -> Result<StoreHandle> {
    let a = GetStoreArgs {
        app: Some(s.app.clone()),
        config: s.config()?,
    };
    let info: api::StoreInfo = dev
        .client()
        .call(api::SA_ID, api::GET_RDB_STORE, &a)
        .await?;
    Ok(info.handle)
}

/// Runs `oxh rdb ...`.
pub async fn run(g: &Global, c: &RdbCmd) -> Result<i32> {
    let dev = g.connect().await?;
    let cl = dev.client();
    match c {
        RdbCmd::Exec { s, text, sql, args } => {
            let a = api::ExecuteArgs {
                handle: open(&dev, s).await?,
                sql: sql.clone(),
                args: binds(args, *text)?,
            };
            let v: Value = cl.call(api::SA_ID, api::EXECUTE, &a).await?;
            if !v.is_null() {
                println!("{}", cell_text(&v));
            }
        }
        RdbCmd::Query { s, text, sql, args } => {
            let a = api::QuerySqlArgs {
                handle: open(&dev, s).await?,
                sql: sql.clone(),
                args: binds(args, *text)?,
            };
            let r: Rows = cl.call(api::SA_ID, api::QUERY_SQL, &a).await?;
            print_rows(g, &r)?;
        }
        RdbCmd::Sync {
            s,
            push,
            pull,
            devices,
            table,
            timeout_ms,
        } => {
            let mode = match (push, pull) {
                (true, _) => api::SyncMode::Push,
                (_, true) => api::SyncMode::Pull,
                _ => api::SyncMode::PushPull,
            };
            let a = api::SyncArgs {
                handle: open(&dev, s).await?,
                mode,
                devices: super::kv::device_list(devices),
                timeout_ms: *timeout_ms,
                table: table.clone(),
            };
            let res: Vec<api::DeviceSyncResult> = cl.call(api::SA_ID, api::SYNC, &a).await?;
            return super::kv::print_sync_results(g, &res);
        }
        RdbCmd::RemoteQuery {
            s,
            device,
            text,
            sql,
            args,
        } => {
            let a = api::RemoteQueryArgs {
                handle: open(&dev, s).await?,
                device: device.clone(),
                sql: sql.clone(),
                args: binds(args, *text)?,
            };
            let mut page: api::RemotePage = cl.call(api::SA_ID, api::REMOTE_QUERY, &a).await?;
            let mut rows = std::mem::take(&mut page.rows);
            while let Some(cursor) = page.more {
                page = cl
                    .call(
                        api::SA_ID,
                        api::REMOTE_QUERY_NEXT,
                        &api::NextPageArgs { cursor },
                    )
                    .await?;
                rows.append(&mut page.rows);
            }
            let r = Rows {
                columns: page.columns,
                rows,
            };
            print_rows(g, &r)?;
        }
        RdbCmd::Distribute { s, tables } => {
            let a = api::SetDistributedArgs {
                handle: open(&dev, s).await?,
                tables: tables.clone(),
            };
            cl.call::<_, ()>(api::SA_ID, api::SET_DISTRIBUTED_TABLES, &a)
                .await?;
        }
        RdbCmd::DeleteStore { s } => {
            let a = GetStoreArgs {
                app: Some(s.app.clone()),
                config: s.config()?,
            };
            cl.call::<_, ()>(api::SA_ID, api::DELETE_RDB_STORE, &a)
                .await?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_arguments_are_typed_by_how_they_look() {
        let v = |a| bind_value(a, false).unwrap();
        assert_eq!(v("42"), Value::Integer(42));
        assert_eq!(v("-7"), Value::Integer(-7));
        assert_eq!(v("1.5"), Value::Real(1.5));
        assert_eq!(v("2e3"), Value::Real(2000.0));
        assert_eq!(v("NULL"), Value::Null);
        assert_eq!(v("x'0aff'"), Value::Blob(vec![0x0a, 0xff]));
        assert_eq!(v("\"42\""), Value::Text("42".into()));
        assert_eq!(v("hello"), Value::Text("hello".into()));
        // Words a float parser would take are text.
        for t in ["inf", "NaN", "infinity", "e", "1.2.3"] {
            assert_eq!(v(t), Value::Text(t.into()), "{t}");
        }
        assert_eq!(bind_value("42", true).unwrap(), Value::Text("42".into()));
        assert!(bind_value("x'zz'", false).is_err());
        let r = Rows {
            columns: vec!["id".into(), "b".into(), "n".into()],
            rows: vec![vec![
                Value::Integer(1),
                Value::Blob(vec![1, 2]),
                Value::Null,
            ]],
        };
        assert_eq!(
            rows_json(&r).unwrap(),
            "[\n  {\"id\": 1, \"b\": \"0102\", \"n\": null}\n]"
        );
        assert_eq!(rows_json(&Rows::default()).unwrap(), "[]");
    }
}
