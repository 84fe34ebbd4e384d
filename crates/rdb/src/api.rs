//! The relational store service's IPC contract: method codes on SA [`SA_ID`] and their
//! argument and result types (postcard through `oxh_ipc::encode`/`decode`). `oxh rdb` (and
//! later the SDK) build on this module, [`crate::value`] and [`crate::config`].
//!
//! **Why SA 1301.** OpenHarmony serves the relational store from its distributed data
//! service, SA 1301 (`DistributedKvDataService`): the RDB service is a *feature* of that SA
//! (its `IRdbService` is marked `SAID:1301`, `FeatureSystem: rdb_service`, and clients reach it
//! through the data service's `GetFeatureInterface("relational_store")`). It has no SA id of its
//! own, so neither does ours: the RDB methods are codes from [`CODE_BASE`] on SA 1301, and
//! [`crate::sa::DataService`] dispatches that range to the RDB service and every other code to
//! the KV service.
//!
//! A connection first opens a store with [`GET_RDB_STORE`] and gets a [`StoreHandle`]; every
//! other call names the handle. Handles belong to the connection that got them (another
//! connection's handle is unknown to it, 14800014), and go with it: its open transactions
//! roll back. Which app's stores a caller reaches comes from its token, never from the
//! request: an app gets its own bundle's stores; native and shell callers (the `oxh` tool)
//! name the app.
//!
//! | code | method (OpenHarmony) | args | result |
//! |------|----------------------|------|--------|
//! | [`GET_RDB_STORE`] | getRdbStore | [`GetStoreArgs`] | [`StoreInfo`] |
//! | [`EXECUTE`] | execute / executeSql | [`ExecuteArgs`] | [`Value`] |
//! | [`INSERT`] | insert | [`InsertArgs`] | `i64` (rowid, -1 when IGNOREd) |
//! | [`BATCH_INSERT`] | batchInsert | [`BatchInsertArgs`] | `i64` (rows) |
//! | [`UPDATE`] | update | [`UpdateArgs`] | `u64` (rows) |
//! | [`DELETE`] | delete | [`DeleteArgs`] | `u64` (rows) |
//! | [`QUERY`] | query | [`QueryArgs`] | [`Rows`] |
//! | [`QUERY_SQL`] | querySql | [`QuerySqlArgs`] | [`Rows`] |
//! | [`BEGIN_TRANSACTION`] | beginTransaction / createTransaction | [`BeginArgs`] | `()` |
//! | [`COMMIT`] / [`ROLL_BACK`] | commit, rollBack | [`HandleArgs`] | `()` |
//! | [`SET_DISTRIBUTED_TABLES`] | setDistributedTables | [`SetDistributedArgs`] | `()` |
//! | [`OBTAIN_DISTRIBUTED_TABLE_NAME`] | obtainDistributedTableName | [`ObtainNameArgs`] | `String` |
//! | [`CLOSE_RDB_STORE`] | close | [`HandleArgs`] | `()` |
//! | [`DELETE_RDB_STORE`] | deleteRdbStore | [`GetStoreArgs`] | `()` |

use crate::config::StoreConfig;
use crate::error::RdbError;
use crate::predicates::RdbPredicates;
use crate::value::{Value, ValuesBucket};
use serde::{Deserialize, Serialize};

pub use crate::error::code;

/// The distributed data service's SA id, which serves the relational store (see above).
pub const SA_ID: i32 = oxh_ipc::sa_id::DISTRIBUTED_KV;
/// The RDB methods' codes start here; the KV service's stay below.
pub const CODE_BASE: u32 = 1000;
/// One past the last code of the RDB range.
pub const CODE_END: u32 = CODE_BASE + 100;

/// [`GetStoreArgs`] → [`StoreInfo`].
pub const GET_RDB_STORE: u32 = CODE_BASE + 1;
/// [`ExecuteArgs`] → [`Value`].
pub const EXECUTE: u32 = CODE_BASE + 2;
/// [`InsertArgs`] → `i64`.
pub const INSERT: u32 = CODE_BASE + 3;
/// [`BatchInsertArgs`] → `i64`.
pub const BATCH_INSERT: u32 = CODE_BASE + 4;
/// [`UpdateArgs`] → `u64`.
pub const UPDATE: u32 = CODE_BASE + 5;
/// [`DeleteArgs`] → `u64`.
pub const DELETE: u32 = CODE_BASE + 6;
/// [`QueryArgs`] → [`Rows`].
pub const QUERY: u32 = CODE_BASE + 7;
/// [`QuerySqlArgs`] → [`Rows`].
pub const QUERY_SQL: u32 = CODE_BASE + 8;
/// [`BeginArgs`] → `()`.
pub const BEGIN_TRANSACTION: u32 = CODE_BASE + 9;
/// [`HandleArgs`] → `()`.
pub const COMMIT: u32 = CODE_BASE + 10;
/// [`HandleArgs`] → `()`.
pub const ROLL_BACK: u32 = CODE_BASE + 11;
/// [`SetDistributedArgs`] → `()`.
pub const SET_DISTRIBUTED_TABLES: u32 = CODE_BASE + 12;
/// [`ObtainNameArgs`] → `String`.
pub const OBTAIN_DISTRIBUTED_TABLE_NAME: u32 = CODE_BASE + 13;
/// [`HandleArgs`] → `()`.
pub const CLOSE_RDB_STORE: u32 = CODE_BASE + 14;
/// [`GetStoreArgs`] → `()`.
pub const DELETE_RDB_STORE: u32 = CODE_BASE + 15;
/// [`SyncArgs`] → `Vec<`[`DeviceSyncResult`]`>`; needs [`DATASYNC_PERMISSION`].
pub const SYNC: u32 = CODE_BASE + 20;
/// [`RemoteQueryArgs`] → [`RemotePage`]; needs [`DATASYNC_PERMISSION`].
pub const REMOTE_QUERY: u32 = CODE_BASE + 21;
/// [`NextPageArgs`] → [`RemotePage`]: the rest of a remoteQuery's result; needs
/// [`DATASYNC_PERMISSION`].
pub const REMOTE_QUERY_NEXT: u32 = CODE_BASE + 22;

pub use oxh_kvstore::api::{DATASYNC_PERMISSION, DeviceSyncResult};
pub use oxh_kvstore::sync::SyncMode;
pub use oxh_kvstore::wire::SyncStatus;

/// [`SubscribeArgs`] → `()`: on('dataChange'); events are [`RdbEvent`]s.
pub const SUBSCRIBE: u32 = CODE_BASE + 40;
/// [`SubscribeArgs`] → `()`: off('dataChange').
pub const UNSUBSCRIBE: u32 = CODE_BASE + 41;

/// `SubscribeType.SUBSCRIBE_TYPE_REMOTE`: changes a sync brought from other devices (the
/// observer gets the devices).
pub const SUBSCRIBE_TYPE_REMOTE: i32 = 0;
/// `SUBSCRIBE_TYPE_CLOUD`: there is no cloud here (801).
pub const SUBSCRIBE_TYPE_CLOUD: i32 = 1;
/// `SUBSCRIBE_TYPE_CLOUD_DETAILS`: there is no cloud here (801).
pub const SUBSCRIBE_TYPE_CLOUD_DETAILS: i32 = 2;
/// `SUBSCRIBE_TYPE_LOCAL_DETAILS`: this device's own committed changes, by primary key.
pub const SUBSCRIBE_TYPE_LOCAL_DETAILS: i32 = 3;
/// `ChangeType.DATA_CHANGE`.
pub const DATA_CHANGE: i32 = 0;

/// Arguments of [`SUBSCRIBE`] and [`UNSUBSCRIBE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeArgs {
    /// The store.
    pub handle: StoreHandle,
    /// The client's subscription id: events come on it.
    pub sub: u64,
    /// A `SUBSCRIBE_TYPE_*`.
    pub kind: i32,
}

/// `relationalStore.ChangeInfo`: one table's changed rows, by primary key (each key is its
/// primary key's values, in the key's column order: one value for a single-column key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeInfo {
    /// The table.
    pub table: String,
    /// `ChangeType`: [`DATA_CHANGE`].
    pub change_type: i32,
    /// Rows that came into being.
    pub inserted: Vec<Vec<Value>>,
    /// Rows whose cells changed.
    pub updated: Vec<Vec<Value>>,
    /// Rows that went.
    pub deleted: Vec<Vec<Value>>,
}

/// What an observer is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RdbEvent {
    /// on('dataChange'): `remote` changes came from `devices` by a sync; local ones are this
    /// device's own committed writes (`devices` empty).
    DataChange {
        /// The store's name.
        store: String,
        /// From a sync (SUBSCRIBE_TYPE_REMOTE) or local (SUBSCRIBE_TYPE_LOCAL_DETAILS).
        remote: bool,
        /// The devices the changes came from (udids).
        devices: Vec<String>,
        /// Per table, the rows.
        changes: Vec<ChangeInfo>,
    },
}

/// How long a sync waits for its devices when the caller gives no timeout.
pub const DEFAULT_SYNC_TIMEOUT_MS: u64 = 30_000;
/// How long a remoteQuery waits for the device's answer.
pub const REMOTE_QUERY_TIMEOUT_MS: u64 = 10_000;
/// The most a remoteQuery's result may hold, in encoded bytes (OpenHarmony's limit): the
/// peer refuses a larger one (14800001). It reaches the caller in pages of at most
/// [`MAX_RESULT_BYTES`], the rest waiting in the service for [`REMOTE_QUERY_NEXT`].
pub const MAX_REMOTE_RESULT_BYTES: usize = 4 * 1024 * 1024;
/// Remote results one connection may leave unread in the service at once (each at most
/// [`MAX_REMOTE_RESULT_BYTES`]); the oldest goes when another comes.
pub const MAX_REMOTE_CURSORS_PER_CONN: usize = 2;
/// Remote results the service holds unread at once, over every connection.
pub const MAX_REMOTE_CURSORS: usize = 16;

/// Arguments of [`SYNC`]: `sync(mode, predicates)` with the predicates' `inDevices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncArgs {
    /// The store.
    pub handle: StoreHandle,
    /// PUSH (`SYNC_MODE_PUSH`), PULL (`SYNC_MODE_PULL`) or both.
    pub mode: SyncMode,
    /// The devices (networkIds or udids); empty: every online trusted device.
    pub devices: Vec<String>,
    /// How long to wait for them, in ms (0: [`DEFAULT_SYNC_TIMEOUT_MS`]).
    pub timeout_ms: u64,
    /// The predicates' table: only its rows sync (with a watermark of its own); `None`:
    /// every distributed table of the store.
    pub table: Option<String>,
}

/// Arguments of [`REMOTE_QUERY`]: a read-only SQL query run on another device's copy of
/// the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteQueryArgs {
    /// The store.
    pub handle: StoreHandle,
    /// The device (networkId or udid).
    pub device: String,
    /// A query (`SELECT ...`), `?` for each argument.
    pub sql: String,
    /// The arguments.
    pub args: Vec<Value>,
}

/// Arguments of [`REMOTE_QUERY_NEXT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextPageArgs {
    /// From the previous page's `more`.
    pub cursor: u64,
}

/// One page of a remoteQuery's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemotePage {
    /// Column names (on every page).
    pub columns: Vec<String>,
    /// The page's rows, in order.
    pub rows: Vec<Vec<Value>>,
    /// The cursor of the rest, if any: ask [`REMOTE_QUERY_NEXT`].
    pub more: Option<u64>,
}

/// At most this many stores open at once on one connection (each may hold one transaction,
/// so this also bounds a connection's open transactions).
pub const MAX_STORES_PER_CONN: usize = 16;
/// The most a [`Rows`] reply may carry, in encoded bytes: one IPC reply holds at most
/// `oxh_ipc::MAX_TRANSACTION` (1 MiB), less room for the frame. A larger result is refused
/// (14800001, naming this limit) before it is all read, so a query cannot make the service hold
/// more than this; page it with LIMIT/OFFSET.
pub const MAX_RESULT_BYTES: usize = oxh_ipc::MAX_TRANSACTION - 64 * 1024;

/// A store opened on one connection (from [`GET_RDB_STORE`]).
pub type StoreHandle = u64;

/// Arguments of [`GET_RDB_STORE`] and [`DELETE_RDB_STORE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetStoreArgs {
    /// Bundle name: `None` means the calling app's own (a native or shell caller must name
    /// it; an app may name only itself).
    pub app: Option<String>,
    /// `StoreConfig`: name, securityLevel, customDir.
    pub config: StoreConfig,
}

/// Result of [`GET_RDB_STORE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// The handle later calls name.
    pub handle: StoreHandle,
    /// The bundle the store belongs to.
    pub app: String,
    /// This device's id (the origin of its writes in distributed tables).
    pub device: String,
}

/// Arguments that name only a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleArgs {
    /// The store.
    pub handle: StoreHandle,
}

/// Arguments of [`EXECUTE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteArgs {
    /// The store.
    pub handle: StoreHandle,
    /// One SQL statement, `?` for each argument.
    pub sql: String,
    /// Bind arguments.
    pub args: Vec<Value>,
}

/// A row to write, as `ValuesBucket`'s (column, value) pairs in order.
pub type Bucket = Vec<(String, Value)>;

/// The [`ValuesBucket`] a [`Bucket`] holds.
pub fn bucket(b: &Bucket) -> ValuesBucket {
    let mut v = ValuesBucket::new();
    for (c, x) in b {
        v.put(c.clone(), x.clone());
    }
    v
}

/// Arguments of [`INSERT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsertArgs {
    /// The store.
    pub handle: StoreHandle,
    /// The table.
    pub table: String,
    /// The row.
    pub values: Bucket,
    /// `ConflictResolution`, OpenHarmony's number (0 none .. 5 replace).
    pub conflict: i32,
}

/// Arguments of [`BATCH_INSERT`]: all rows or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInsertArgs {
    /// The store.
    pub handle: StoreHandle,
    /// The table.
    pub table: String,
    /// The rows.
    pub rows: Vec<Bucket>,
    /// `ConflictResolution`.
    pub conflict: i32,
}

/// One step of an `RdbPredicates` builder chain, as it travels: the service replays them
/// through [`RdbPredicates`], which checks every field name and binds every value, so no
/// request carries SQL text for a condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PredicateOp {
    /// equalTo(field, value).
    EqualTo(String, Value),
    /// notEqualTo.
    NotEqualTo(String, Value),
    /// greaterThan.
    GreaterThan(String, Value),
    /// greaterThanOrEqualTo.
    GreaterThanOrEqualTo(String, Value),
    /// lessThan.
    LessThan(String, Value),
    /// lessThanOrEqualTo.
    LessThanOrEqualTo(String, Value),
    /// between(field, low, high).
    Between(String, Value, Value),
    /// notBetween.
    NotBetween(String, Value, Value),
    /// like(field, pattern).
    Like(String, String),
    /// glob(field, pattern).
    Glob(String, String),
    /// contains(field, text).
    Contains(String, String),
    /// in(field, values).
    In(String, Vec<Value>),
    /// notIn.
    NotIn(String, Vec<Value>),
    /// isNull.
    IsNull(String),
    /// isNotNull.
    IsNotNull(String),
    /// and.
    And,
    /// or.
    Or,
    /// beginWrap.
    BeginWrap,
    /// endWrap.
    EndWrap,
    /// orderByAsc.
    OrderByAsc(String),
    /// orderByDesc.
    OrderByDesc(String),
    /// limitAs.
    LimitAs(i64),
    /// offsetAs.
    OffsetAs(i64),
    /// inDevices.
    InDevices(Vec<String>),
    /// inAllDevices.
    InAllDevices,
    /// distinct (last, so the steps before keep their numbers on the wire).
    Distinct,
    /// groupBy(fields).
    GroupBy(Vec<String>),
}

/// `RdbPredicates` on the wire: the table and the builder steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicates {
    /// The table.
    pub table: String,
    /// The steps, in order.
    pub ops: Vec<PredicateOp>,
}

impl Predicates {
    /// Predicates on `table` with no condition (every row).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            ops: Vec::new(),
        }
    }

    /// Adds a step (builder form).
    pub fn then(mut self, op: PredicateOp) -> Self {
        self.ops.push(op);
        self
    }

    /// The [`RdbPredicates`] these steps build (a bad field shows when they are compiled).
    pub fn to_rdb(&self) -> RdbPredicates {
        use PredicateOp as P;
        let mut p = RdbPredicates::new(self.table.clone());
        for op in &self.ops {
            match op {
                P::EqualTo(f, v) => p.equal_to(f, v.clone()),
                P::NotEqualTo(f, v) => p.not_equal_to(f, v.clone()),
                P::GreaterThan(f, v) => p.greater_than(f, v.clone()),
                P::GreaterThanOrEqualTo(f, v) => p.greater_than_or_equal_to(f, v.clone()),
                P::LessThan(f, v) => p.less_than(f, v.clone()),
                P::LessThanOrEqualTo(f, v) => p.less_than_or_equal_to(f, v.clone()),
                P::Between(f, a, b) => p.between(f, a.clone(), b.clone()),
                P::NotBetween(f, a, b) => p.not_between(f, a.clone(), b.clone()),
                P::Like(f, s) => p.like(f, s),
                P::Glob(f, s) => p.glob(f, s),
                P::Contains(f, s) => p.contains(f, s),
                P::In(f, v) => p.in_(f, v.iter().cloned()),
                P::NotIn(f, v) => p.not_in(f, v.iter().cloned()),
                P::IsNull(f) => p.is_null(f),
                P::IsNotNull(f) => p.is_not_null(f),
                P::And => p.and(),
                P::Or => p.or(),
                P::BeginWrap => p.begin_wrap(),
                P::EndWrap => p.end_wrap(),
                P::Distinct => p.distinct(),
                P::GroupBy(f) => p.group_by(f),
                P::OrderByAsc(f) => p.order_by_asc(f),
                P::OrderByDesc(f) => p.order_by_desc(f),
                P::LimitAs(n) => p.limit_as(*n),
                P::OffsetAs(n) => p.offset_as(*n),
                P::InDevices(d) => p.in_devices(d.iter().cloned()),
                P::InAllDevices => p.in_all_devices(),
            };
        }
        p
    }
}

/// Arguments of [`UPDATE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateArgs {
    /// The store.
    pub handle: StoreHandle,
    /// The new values.
    pub values: Bucket,
    /// Which rows.
    pub predicates: Predicates,
    /// `ConflictResolution`.
    pub conflict: i32,
}

/// Arguments of [`DELETE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteArgs {
    /// The store.
    pub handle: StoreHandle,
    /// Which rows.
    pub predicates: Predicates,
}

/// Arguments of [`QUERY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryArgs {
    /// The store.
    pub handle: StoreHandle,
    /// Which rows.
    pub predicates: Predicates,
    /// Which columns (all when empty).
    pub columns: Vec<String>,
}

/// Arguments of [`QUERY_SQL`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuerySqlArgs {
    /// The store.
    pub handle: StoreHandle,
    /// A query, `?` for each argument (14800019 when it is not one).
    pub sql: String,
    /// Bind arguments.
    pub args: Vec<Value>,
}

/// A `ResultSet`'s content: its column names and rows (at most [`MAX_RESULT_BYTES`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each a value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The client's `ResultSet` over these rows.
    pub fn into_result_set(self) -> crate::ResultSet {
        crate::ResultSet::new(self.columns, self.rows)
    }
}

/// An upper bound of the bytes one value takes in an encoded [`Rows`] (its enum tag, a
/// length or a varint, and the payload).
pub fn encoded_size(v: &Value) -> usize {
    const OVERHEAD: usize = 11;
    OVERHEAD
        + match v {
            Value::Null | Value::Integer(_) | Value::Real(_) => 0,
            Value::Text(t) => t.len(),
            Value::Blob(b) => b.len(),
        }
}

/// Arguments of [`BEGIN_TRANSACTION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginArgs {
    /// The store.
    pub handle: StoreHandle,
    /// `TransactionType`, OpenHarmony's number: 0 DEFERRED, 1 IMMEDIATE, 2 EXCLUSIVE.
    pub kind: i32,
}

/// Arguments of [`SET_DISTRIBUTED_TABLES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDistributedArgs {
    /// The store.
    pub handle: StoreHandle,
    /// The tables (each needs a primary key; at most 32).
    pub tables: Vec<String>,
}

/// Arguments of [`OBTAIN_DISTRIBUTED_TABLE_NAME`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObtainNameArgs {
    /// The store.
    pub handle: StoreHandle,
    /// The device (its id).
    pub device: String,
    /// The local table.
    pub table: String,
}

/// The error a result over its cap gets: [`MAX_RESULT_BYTES`] (one reply) for a local
/// query, [`MAX_REMOTE_RESULT_BYTES`] for a remote one.
pub fn too_big(bytes: usize, cap: usize) -> RdbError {
    let why = if cap == MAX_REMOTE_RESULT_BYTES {
        "a remote query's result is at most 4 MiB, as in OpenHarmony"
    } else {
        "one reply carries at most that (the IPC limit of 1 MiB less the frame)"
    };
    RdbError::invalid(format!(
        "the result is over {bytes} bytes, past the cap of {cap} bytes: {why}; page it with \
         LIMIT/OFFSET"
    ))
}

/// Checks that a method code is one of this contract's.
pub fn is_rdb_code(code: u32) -> bool {
    (CODE_BASE..CODE_END).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_and_predicates_replay_through_the_builder() {
        let a = UpdateArgs {
            handle: 3,
            values: vec![("title".into(), Value::Text("t".into()))],
            predicates: Predicates::new("note")
                .then(PredicateOp::EqualTo("id".into(), Value::Integer(1)))
                .then(PredicateOp::Or)
                .then(PredicateOp::In(
                    "id".into(),
                    vec![Value::Integer(2), Value::Integer(3)],
                )),
            conflict: 0,
        };
        let b: UpdateArgs = oxh_ipc::decode(&oxh_ipc::encode(&a)).unwrap();
        assert_eq!(a, b);
        let c = b.predicates.to_rdb().compile().unwrap();
        assert_eq!(c.args.len(), 3);
        assert!(c.where_sql.contains("OR"), "{}", c.where_sql);
        // A field that is not a name is refused when used, as the builder does.
        let bad = Predicates::new("note").then(PredicateOp::IsNull("id; DROP TABLE note".into()));
        assert_eq!(bad.to_rdb().compile().unwrap_err().code(), 14_800_001);
    }

    #[test]
    fn the_size_bound_holds_for_postcard() {
        let rows = Rows {
            columns: vec!["a".into(), "b".into(), "c".into()],
            rows: vec![vec![
                Value::Integer(i64::MIN),
                Value::Text("x".repeat(300)),
                Value::Blob(vec![1; 200]),
            ]],
        };
        // As the service counts a reply: the column names, then a length and the values of
        // each row.
        let names: usize = rows
            .columns
            .iter()
            .map(|c| encoded_size(&Value::Null) + c.len())
            .sum();
        let bound = encoded_size(&Value::Null)
            + names
            + rows.rows[0].iter().map(encoded_size).sum::<usize>()
            + 10;
        let enc = oxh_ipc::encode(&rows);
        assert!(enc.len() <= bound, "{} > {bound}", enc.len());
        assert!(is_rdb_code(GET_RDB_STORE) && is_rdb_code(DELETE_RDB_STORE));
        assert!(!is_rdb_code(22));
    }
}
