//! The relational store, as `@ohos.data.relationalStore`: [`get_rdb_store`] opens an app's
//! SQLite store on the device (served by the distributed data SA, 1301), and an [`RdbStore`]
//! runs SQL, writes values buckets, reads [`ResultSet`]s by predicates, holds transactions
//! and marks tables distributed. Errors carry OpenHarmony's codes (14800000-14800051).
//!
//! ```no_run
//! # async fn demo() -> Result<(), oxh_sdk::Error> {
//! use oxh_sdk::rdb::{self, RdbPredicates, SecurityLevel, StoreConfig, Value};
//! let dev = oxh_sdk::Device::connect_default().await?;
//! // An app leaves the bundle name out (its token says who it is); tools name it.
//! let store = rdb::get_rdb_store(&dev, Some("com.example.notes"),
//!     StoreConfig::new("notes.db", SecurityLevel::S1)).await?;
//! store.execute_sql("CREATE TABLE IF NOT EXISTS note(id INTEGER PRIMARY KEY, title TEXT)", vec![]).await?;
//! store.insert("note", vec![("id".into(), Value::Integer(1)), ("title".into(), Value::Text("hi".into()))]).await?;
//! let mut rs = store.query(RdbPredicates::new("note").equal_to("id", Value::Integer(1)), &[]).await?;
//! while rs.go_to_next_row().unwrap_or(false) { println!("{:?}", rs.get_string(1)); }
//! # Ok(()) }
//! ```

use crate::{Device, Error};
use oxh_rdb::api::{self, Bucket, PredicateOp, Predicates};

pub use oxh_rdb::api::{
    ChangeInfo, DeviceSyncResult, RdbEvent, SUBSCRIBE_TYPE_LOCAL_DETAILS, SUBSCRIBE_TYPE_REMOTE,
    SyncMode, SyncStatus,
};

/// An observer from [`RdbStore::on_data_change`]: its events, in order.
pub struct DataChangeObserver {
    sub: oxh_ipc::Subscription,
    kind: i32,
}

impl DataChangeObserver {
    /// The next event; `None` once the connection closed. An event this SDK cannot decode
    /// (from a newer service) is skipped.
    pub async fn next(&mut self) -> Option<RdbEvent> {
        loop {
            let b = self.sub.recv().await?;
            if let Ok(ev) = oxh_ipc::decode(&b) {
                return Some(ev);
            }
        }
    }
}

pub use oxh_rdb::{
    ConflictResolution, ResultSet, SecurityLevel, StoreConfig, TransactionType, Value,
};

/// `relationalStore.RdbPredicates`: which rows, built step by step; the service replays the
/// steps and binds every value (no condition travels as SQL text).
#[derive(Debug, Clone, PartialEq)]
pub struct RdbPredicates(Predicates);

macro_rules! step {
    ($(#[$m:meta] $name:ident($($a:ident: $t:ty),*) => $op:expr;)*) => {
        $(#[$m] pub fn $name(self, $($a: $t),*) -> Self { self.then($op) })*
    };
}

impl RdbPredicates {
    /// Predicates on `table`, every row.
    pub fn new(table: impl Into<String>) -> Self {
        Self(Predicates::new(table))
    }

    fn then(self, op: PredicateOp) -> Self {
        Self(self.0.then(op))
    }

    step! {
        /// equalTo.
        equal_to(f: &str, v: Value) => PredicateOp::EqualTo(f.into(), v);
        /// notEqualTo.
        not_equal_to(f: &str, v: Value) => PredicateOp::NotEqualTo(f.into(), v);
        /// greaterThan.
        greater_than(f: &str, v: Value) => PredicateOp::GreaterThan(f.into(), v);
        /// greaterThanOrEqualTo.
        greater_than_or_equal_to(f: &str, v: Value) => PredicateOp::GreaterThanOrEqualTo(f.into(), v);
        /// lessThan.
        less_than(f: &str, v: Value) => PredicateOp::LessThan(f.into(), v);
        /// lessThanOrEqualTo.
        less_than_or_equal_to(f: &str, v: Value) => PredicateOp::LessThanOrEqualTo(f.into(), v);
        /// between (inclusive).
        between(f: &str, a: Value, b: Value) => PredicateOp::Between(f.into(), a, b);
        /// notBetween.
        not_between(f: &str, a: Value, b: Value) => PredicateOp::NotBetween(f.into(), a, b);
        /// like (`%` and `_`).
        like(f: &str, p: &str) => PredicateOp::Like(f.into(), p.into());
        /// glob (`*` and `?`).
        glob(f: &str, p: &str) => PredicateOp::Glob(f.into(), p.into());
        /// contains.
        contains(f: &str, s: &str) => PredicateOp::Contains(f.into(), s.into());
        /// in.
        in_(f: &str, v: Vec<Value>) => PredicateOp::In(f.into(), v);
        /// notIn.
        not_in(f: &str, v: Vec<Value>) => PredicateOp::NotIn(f.into(), v);
        /// isNull.
        is_null(f: &str) => PredicateOp::IsNull(f.into());
        /// isNotNull.
        is_not_null(f: &str) => PredicateOp::IsNotNull(f.into());
        /// and.
        and() => PredicateOp::And;
        /// or.
        or() => PredicateOp::Or;
        /// beginWrap.
        begin_wrap() => PredicateOp::BeginWrap;
        /// endWrap.
        end_wrap() => PredicateOp::EndWrap;
        /// orderByAsc.
        order_by_asc(f: &str) => PredicateOp::OrderByAsc(f.into());
        /// orderByDesc.
        order_by_desc(f: &str) => PredicateOp::OrderByDesc(f.into());
        /// distinct.
        distinct() => PredicateOp::Distinct;
        /// groupBy(fields).
        group_by(fields: &[&str]) => PredicateOp::GroupBy(fields.iter().map(|f| f.to_string()).collect());
        /// limitAs.
        limit_as(n: i64) => PredicateOp::LimitAs(n);
        /// offsetAs.
        offset_as(n: i64) => PredicateOp::OffsetAs(n);
        /// inDevices (for sync).
        in_devices(d: Vec<String>) => PredicateOp::InDevices(d);
        /// inAllDevices (for sync).
        in_all_devices() => PredicateOp::InAllDevices;
    }
}

/// `relationalStore.getRdbStore`: opens (creating when missing) the store `config` names for
/// `bundle_name` (`None`: the calling app's own; native and shell callers must name one).
pub async fn get_rdb_store(
    dev: &Device,
    bundle_name: Option<&str>,
    config: StoreConfig,
) -> Result<RdbStore, Error> {
    let info: api::StoreInfo = dev
        .client
        .call(
            api::SA_ID,
            api::GET_RDB_STORE,
            &api::GetStoreArgs {
                app: bundle_name.map(String::from),
                config,
            },
        )
        .await?;
    Ok(RdbStore {
        dev: dev.clone(),
        info,
    })
}

/// `relationalStore.deleteRdbStore`: removes the store's files (it must not be open).
pub async fn delete_rdb_store(
    dev: &Device,
    bundle_name: Option<&str>,
    config: StoreConfig,
) -> Result<(), Error> {
    dev.client
        .call(
            api::SA_ID,
            api::DELETE_RDB_STORE,
            &api::GetStoreArgs {
                app: bundle_name.map(String::from),
                config,
            },
        )
        .await
}

/// An open store (`RdbStore`). It lives on this device connection: its transactions end
/// (rolled back) when the connection does.
#[derive(Clone)]
pub struct RdbStore {
    dev: Device,
    info: api::StoreInfo,
}

impl RdbStore {
    async fn call<A: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        code: u32,
        args: &A,
    ) -> Result<R, Error> {
        self.dev.client.call(api::SA_ID, code, args).await
    }

    fn handle(&self) -> api::HandleArgs {
        api::HandleArgs {
            handle: self.info.handle,
        }
    }

    /// The bundle the store belongs to.
    pub fn bundle_name(&self) -> &str {
        &self.info.app
    }

    /// `executeSql` / `execute`: one statement with `?` arguments; a statement that returns
    /// a value (a PRAGMA, `SELECT count(*)`) gives it, others Null.
    pub async fn execute_sql(&self, sql: &str, args: Vec<Value>) -> Result<Value, Error> {
        let a = api::ExecuteArgs {
            handle: self.info.handle,
            sql: sql.into(),
            args,
        };
        self.call(api::EXECUTE, &a).await
    }

    /// `insert`: the new row's id.
    pub async fn insert(&self, table: &str, values: Bucket) -> Result<i64, Error> {
        self.insert_with(table, values, ConflictResolution::None)
            .await
    }

    /// `insert` with a ConflictResolution.
    pub async fn insert_with(
        &self,
        table: &str,
        values: Bucket,
        conflict: ConflictResolution,
    ) -> Result<i64, Error> {
        let a = api::InsertArgs {
            handle: self.info.handle,
            table: table.into(),
            values,
            conflict: conflict as i32,
        };
        self.call(api::INSERT, &a).await
    }

    /// `batchInsert`: all rows or none; the number inserted.
    pub async fn batch_insert(&self, table: &str, rows: Vec<Bucket>) -> Result<i64, Error> {
        let a = api::BatchInsertArgs {
            handle: self.info.handle,
            table: table.into(),
            rows,
            conflict: ConflictResolution::None as i32,
        };
        self.call(api::BATCH_INSERT, &a).await
    }

    /// `update`: the rows changed.
    pub async fn update(&self, values: Bucket, predicates: RdbPredicates) -> Result<u64, Error> {
        let a = api::UpdateArgs {
            handle: self.info.handle,
            values,
            predicates: predicates.0,
            conflict: ConflictResolution::None as i32,
        };
        self.call(api::UPDATE, &a).await
    }

    /// `delete`: the rows deleted.
    pub async fn delete(&self, predicates: RdbPredicates) -> Result<u64, Error> {
        let a = api::DeleteArgs {
            handle: self.info.handle,
            predicates: predicates.0,
        };
        self.call(api::DELETE, &a).await
    }

    /// `query`: the `columns` (all when empty) of the rows the predicates pick.
    pub async fn query(
        &self,
        predicates: RdbPredicates,
        columns: &[&str],
    ) -> Result<ResultSet, Error> {
        let a = api::QueryArgs {
            handle: self.info.handle,
            predicates: predicates.0,
            columns: columns.iter().map(|c| c.to_string()).collect(),
        };
        let rows: api::Rows = self.call(api::QUERY, &a).await?;
        Ok(rows.into_result_set())
    }

    /// `querySql`: a query with `?` arguments (14800019 when it is not one).
    pub async fn query_sql(&self, sql: &str, args: Vec<Value>) -> Result<ResultSet, Error> {
        let a = api::QuerySqlArgs {
            handle: self.info.handle,
            sql: sql.into(),
            args,
        };
        let rows: api::Rows = self.call(api::QUERY_SQL, &a).await?;
        Ok(rows.into_result_set())
    }

    /// `beginTransaction` (14800024 while another write transaction is open on the store).
    pub async fn begin_transaction(&self, kind: TransactionType) -> Result<(), Error> {
        let a = api::BeginArgs {
            handle: self.info.handle,
            kind: kind as i32,
        };
        self.call(api::BEGIN_TRANSACTION, &a).await
    }

    /// `commit`.
    pub async fn commit(&self) -> Result<(), Error> {
        self.call(api::COMMIT, &self.handle()).await
    }

    /// `rollBack`.
    pub async fn roll_back(&self) -> Result<(), Error> {
        self.call(api::ROLL_BACK, &self.handle()).await
    }

    /// `setDistributedTables`: each needs a primary key; at most 32.
    pub async fn set_distributed_tables(&self, tables: &[&str]) -> Result<(), Error> {
        let a = api::SetDistributedArgs {
            handle: self.info.handle,
            tables: tables.iter().map(|t| t.to_string()).collect(),
        };
        self.call(api::SET_DISTRIBUTED_TABLES, &a).await
    }

    /// `on('dataChange', type)`: [`SUBSCRIBE_TYPE_LOCAL_DETAILS`] (this device's committed
    /// changes to distributed tables, by primary key) or [`SUBSCRIBE_TYPE_REMOTE`] (changes
    /// a sync brought, with their devices); at most 8 observers per store.
    pub async fn on_data_change(&self, kind: i32) -> Result<DataChangeObserver, Error> {
        let sub = self.dev.client.subscribe();
        let () = self
            .call(
                api::SUBSCRIBE,
                &api::SubscribeArgs {
                    handle: self.info.handle,
                    sub: sub.id(),
                    kind,
                },
            )
            .await?;
        Ok(DataChangeObserver { sub, kind })
    }

    /// `off('dataChange', type, observer)`: no more events to it.
    pub async fn off_data_change(&self, o: DataChangeObserver) -> Result<(), Error> {
        self.call(
            api::UNSUBSCRIBE,
            &api::SubscribeArgs {
                handle: self.info.handle,
                sub: o.sub.id(),
                kind: o.kind,
            },
        )
        .await
    }

    /// `sync(mode, predicates)`: a round with each device of the predicates' `inDevices`
    /// (none: every online trusted device), waiting for them at most `timeout`; the status
    /// per device, as OpenHarmony's `Array<[string, number]>`. Needs DISTRIBUTED_DATASYNC.
    /// Only the predicates' table syncs (its conditions are not applied: every row of it
    /// goes); it must be distributed.
    pub async fn sync(
        &self,
        mode: SyncMode,
        predicates: &RdbPredicates,
        timeout: std::time::Duration,
    ) -> Result<Vec<DeviceSyncResult>, Error> {
        let p = predicates.0.to_rdb();
        let a = api::SyncArgs {
            handle: self.info.handle,
            mode,
            devices: p.devices().to_vec(),
            timeout_ms: timeout.as_millis().clamp(1, u64::MAX as u128) as u64,
            table: Some(p.table().to_string()),
        };
        self.call(api::SYNC, &a).await
    }

    /// `remoteQuery`: a read-only query on `device`'s copy of the store (its result at most
    /// 4 MiB, OpenHarmony's limit, read here page by page). Needs DISTRIBUTED_DATASYNC.
    pub async fn remote_query(
        &self,
        device: &str,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<ResultSet, Error> {
        let a = api::RemoteQueryArgs {
            handle: self.info.handle,
            device: device.into(),
            sql: sql.into(),
            args,
        };
        let mut page: api::RemotePage = self.call(api::REMOTE_QUERY, &a).await?;
        let mut rows = std::mem::take(&mut page.rows);
        while let Some(cursor) = page.more {
            page = self
                .call(api::REMOTE_QUERY_NEXT, &api::NextPageArgs { cursor })
                .await?;
            rows.append(&mut page.rows);
        }
        Ok(api::Rows {
            columns: page.columns,
            rows,
        }
        .into_result_set())
    }

    /// `obtainDistributedTableName`: the local name of `table`'s copy from `device`.
    pub async fn obtain_distributed_table_name(
        &self,
        device: &str,
        table: &str,
    ) -> Result<String, Error> {
        let a = api::ObtainNameArgs {
            handle: self.info.handle,
            device: device.into(),
            table: table.into(),
        };
        self.call(api::OBTAIN_DISTRIBUTED_TABLE_NAME, &a).await
    }

    /// `close`.
    pub async fn close(self) -> Result<(), Error> {
        self.call(api::CLOSE_RDB_STORE, &self.handle()).await
    }
}
