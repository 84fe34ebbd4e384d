//! The RDB service's methods on SA 1301, and [`DataService`]: the distributed data service
//! as OpenHarmony has it, one SA whose KV methods go to the KV service and whose RDB range
//! ([`api::CODE_BASE`]..) goes to [`RdbService`] (see [`crate::api`] for why one SA).
//!
//! Every RDB method but sync and remoteQuery is open, as in OpenHarmony (an app's own stores
//! need no permission): the service takes the app from the caller's token and refuses other
//! apps' stores. Sync and remoteQuery need DISTRIBUTED_DATASYNC.

use crate::api;
use crate::service::RdbService;
use bytes::Bytes;
use oxh_ipc::{ConnHandle, RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};
use std::sync::Arc;

/// The RDB methods, each with who may call it.
pub const METHODS: &[Method] = &[
    Method::open(api::GET_RDB_STORE, "GetRdbStore"),
    Method::open(api::EXECUTE, "RdbExecute"),
    Method::open(api::INSERT, "RdbInsert"),
    Method::open(api::BATCH_INSERT, "RdbBatchInsert"),
    Method::open(api::UPDATE, "RdbUpdate"),
    Method::open(api::DELETE, "RdbDelete"),
    Method::open(api::QUERY, "RdbQuery"),
    Method::open(api::QUERY_SQL, "RdbQuerySql"),
    Method::open(api::BEGIN_TRANSACTION, "RdbBeginTransaction"),
    Method::open(api::COMMIT, "RdbCommit"),
    Method::open(api::ROLL_BACK, "RdbRollBack"),
    Method::open(api::SET_DISTRIBUTED_TABLES, "SetDistributedTables"),
    Method::open(
        api::OBTAIN_DISTRIBUTED_TABLE_NAME,
        "ObtainDistributedTableName",
    ),
    Method::open(api::CLOSE_RDB_STORE, "CloseRdbStore"),
    Method::open(api::DELETE_RDB_STORE, "DeleteRdbStore"),
    Method::open(api::SUBSCRIBE, "RdbSubscribe"),
    Method::open(api::UNSUBSCRIBE, "RdbUnsubscribe"),
    Method::with_permission(api::SYNC, "RdbSync", api::DATASYNC_PERMISSION),
    Method::with_permission(api::REMOTE_QUERY, "RemoteQuery", api::DATASYNC_PERMISSION),
    Method::with_permission(
        api::REMOTE_QUERY_NEXT,
        "RemoteQueryNext",
        api::DATASYNC_PERMISSION,
    ),
];

impl RdbService {
    /// Runs one RDB method for connection `conn`.
    pub fn dispatch(
        &self,
        conn: &ConnHandle,
        code: u32,
        data: &[u8],
    ) -> Result<Vec<u8>, RemoteError> {
        let id = conn.id();
        let caller = conn.caller();
        let r: crate::error::Result<Vec<u8>> = match code {
            api::GET_RDB_STORE => self
                .get_rdb_store(id, caller, &decode(data)?)
                .map(|x| encode(&x)),
            api::EXECUTE => self.execute(id, &decode(data)?).map(|x| encode(&x)),
            api::INSERT => self.insert(id, &decode(data)?).map(|x| encode(&x)),
            api::BATCH_INSERT => self.batch_insert(id, &decode(data)?).map(|x| encode(&x)),
            api::UPDATE => self.update(id, &decode(data)?).map(|x| encode(&x)),
            api::DELETE => self.delete(id, &decode(data)?).map(|x| encode(&x)),
            api::QUERY => self.query(id, &decode(data)?).map(|x| encode(&x)),
            api::QUERY_SQL => self.query_sql(id, &decode(data)?).map(|x| encode(&x)),
            api::BEGIN_TRANSACTION => self
                .begin_transaction(id, &decode(data)?)
                .map(|x| encode(&x)),
            api::COMMIT => self
                .end_transaction(id, &decode(data)?, true)
                .map(|x| encode(&x)),
            api::ROLL_BACK => self
                .end_transaction(id, &decode(data)?, false)
                .map(|x| encode(&x)),
            api::SET_DISTRIBUTED_TABLES => self
                .set_distributed_tables(id, &decode(data)?)
                .map(|x| encode(&x)),
            api::OBTAIN_DISTRIBUTED_TABLE_NAME => self
                .obtain_distributed_table_name(id, &decode(data)?)
                .map(|x| encode(&x)),
            api::CLOSE_RDB_STORE => self.close(id, &decode(data)?).map(|x| encode(&x)),
            api::SUBSCRIBE => self.subscribe(conn, &decode(data)?).map(|x| encode(&x)),
            api::UNSUBSCRIBE => self.unsubscribe(conn, &decode(data)?).map(|x| encode(&x)),
            api::SYNC => self.sync(id, &decode(data)?).map(|x| encode(&x)),
            api::REMOTE_QUERY => self
                .remote_query(id, caller.token_id, &decode(data)?)
                .map(|x| encode(&x)),
            api::REMOTE_QUERY_NEXT => self
                .remote_query_next(id, &decode(data)?)
                .map(|x| encode(&x)),
            api::DELETE_RDB_STORE => self
                .delete_rdb_store(caller, &decode(data)?)
                .map(|x| encode(&x)),
            _ => {
                return Err(RemoteError::invalid(format!(
                    "the relational store has no method {code}"
                )));
            }
        };
        r.map_err(RemoteError::from)
    }
}

/// SA 1301: the distributed data service, the KV service's methods and the RDB feature's.
pub struct DataService {
    kv: Arc<dyn SystemAbility>,
    rdb: Arc<RdbService>,
    methods: &'static [Method],
}

impl DataService {
    /// Serves `kv`'s methods and the RDB range of `rdb` as one SA. Fails if a KV code falls
    /// in the RDB range.
    pub fn new(kv: Arc<dyn SystemAbility>, rdb: Arc<RdbService>) -> Result<Self, String> {
        if let Some(m) = kv.methods().iter().find(|m| api::is_rdb_code(m.code)) {
            return Err(format!(
                "KV method {} (code {}) is in the RDB code range {}..{}",
                m.name,
                m.code,
                api::CODE_BASE,
                api::CODE_END
            ));
        }
        // samgr asks for a `'static` table: the joined one lives as long as the daemon (one
        // per data service, made once at start).
        let methods: &'static [Method] = Box::leak([kv.methods(), METHODS].concat().into());
        Ok(Self { kv, rdb, methods })
    }
}

#[async_trait::async_trait]
impl SystemAbility for DataService {
    fn methods(&self) -> &'static [Method] {
        self.methods
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        if api::is_rdb_code(code) {
            // SQLite blocks: off the runtime's workers, so a long query stalls no other SA.
            let (rdb, conn) = (self.rdb.clone(), ctx.conn.clone());
            tokio::task::spawn_blocking(move || rdb.dispatch(&conn, code, &data))
                .await
                .map_err(|e| {
                    RemoteError::new(
                        oxh_ipc::code::SA_INTERNAL,
                        format!("the relational store's call failed: {e}"),
                    )
                })?
        } else {
            self.kv.call(ctx, code, data).await
        }
    }

    fn dump(&self, args: &[String]) -> String {
        self.kv.dump(args) + &self.rdb.dump_text()
    }

    fn on_client_died(&self, conn: &ConnHandle) {
        self.kv.on_client_died(conn);
        self.rdb.client_died(conn.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeKv(&'static [Method]);

    #[async_trait::async_trait]
    impl SystemAbility for FakeKv {
        fn methods(&self) -> &'static [Method] {
            self.0
        }
        async fn call(&self, _: CallContext, _: u32, _: Bytes) -> Result<Vec<u8>, RemoteError> {
            Ok(Vec::new())
        }
        fn dump(&self, _: &[String]) -> String {
            "kv\n".into()
        }
    }

    #[test]
    fn one_sa_serves_both_tables_and_refuses_overlapping_codes() {
        let d = tempfile::tempdir().unwrap();
        let rdb = RdbService::open(crate::RdbConfig {
            dir: d.path().into(),
            device_id: "dev".into(),
        })
        .unwrap();
        static KV: &[Method] = &[Method::open(1, "Put")];
        let ds = DataService::new(Arc::new(FakeKv(KV)), rdb.clone()).unwrap();
        let codes: Vec<u32> = ds.methods().iter().map(|m| m.code).collect();
        assert_eq!(codes.len(), 1 + METHODS.len());
        assert!(codes.contains(&1) && codes.contains(&api::GET_RDB_STORE));
        assert!(ds.dump(&[]).starts_with("kv\nRdbService (SA 1301"));
        static CLASH: &[Method] = &[Method::open(api::CODE_BASE + 5, "Oops")];
        let e = DataService::new(Arc::new(FakeKv(CLASH)), rdb)
            .err()
            .unwrap();
        assert!(e.contains("Oops"), "{e}");
    }
}
