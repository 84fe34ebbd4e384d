//! The KV service as system ability [`crate::api::SA_ID`]. Every method but `sync` is open:
//! the store a caller may reach depends on its app, which the service decides from the
//! caller's token ([`KvService::app_of`]); `sync` also needs DISTRIBUTED_DATASYNC, checked by
//! samgr before the method runs.

use crate::api::{self, DATASYNC_PERMISSION};
use crate::service::KvService;
use bytes::Bytes;
use oxh_ipc::{ConnHandle, RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};

const METHODS: &[Method] = &[
    Method::open(api::GET_KV_STORE, "GetKVStore"),
    Method::open(api::PUT, "Put"),
    Method::open(api::DELETE, "Delete"),
    Method::open(api::GET, "Get"),
    Method::open(api::GET_ENTRIES, "GetEntries"),
    Method::with_permission(api::SYNC, "Sync", DATASYNC_PERMISSION),
    Method::open(api::SUBSCRIBE, "SubscribeKvStore"),
    Method::open(api::UNSUBSCRIBE, "UnsubscribeKvStore"),
    Method::open(api::BACKUP, "Backup"),
    Method::open(api::RESTORE, "Restore"),
    Method::open(api::DELETE_BACKUP, "DeleteBackup"),
    Method::open(api::REMOVE_DEVICE_DATA, "RemoveDeviceData"),
    Method::open(api::START_TRANSACTION, "StartTransaction"),
    Method::open(api::COMMIT, "Commit"),
    Method::open(api::ROLLBACK, "Rollback"),
    Method::open(api::CLOSE, "CloseKVStore"),
    Method::open(api::DELETE_KV_STORE, "DeleteKVStore"),
    Method::open(api::GET_ALL_KV_STORE_ID, "GetAllKVStoreId"),
    Method::system(api::DUMP, "Dump"),
    Method::open(api::APPEND_VALUE, "AppendValue"),
    Method::open(api::PUT_STAGED, "PutStaged"),
    Method::open(api::GET_PART, "GetPart"),
];

#[async_trait::async_trait]
impl SystemAbility for KvService {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let caller = ctx.caller().clone();
        let conn = &ctx.conn;
        let r: Result<Vec<u8>, crate::KvError> = match code {
            api::GET_KV_STORE => {
                let a: api::OpenArgs = decode(&data)?;
                self.get_kv_store(&caller, &a).map(|x| encode(&x))
            }
            api::PUT => {
                let a: api::PutArgs = decode(&data)?;
                let ops = a.entries.into_iter().map(|(k, v)| (k, Some(v))).collect();
                self.write(&caller, conn.id(), &a.store, ops)
                    .map(|x| encode(&x))
            }
            api::DELETE => {
                let a: api::DeleteArgs = decode(&data)?;
                let ops = a.keys.into_iter().map(|k| (k, None)).collect();
                self.write(&caller, conn.id(), &a.store, ops)
                    .map(|x| encode(&x))
            }
            api::GET => {
                let a: api::GetArgs = decode(&data)?;
                self.get(&caller, &a).map(|x| encode(&x))
            }
            api::GET_ENTRIES => {
                let a: api::EntriesArgs = decode(&data)?;
                self.entries(&caller, &a).map(|x| encode(&x))
            }
            api::SYNC => {
                let a: api::SyncArgs = decode(&data)?;
                self.sync(&caller, &a).await.map(|x| encode(&x))
            }
            api::SUBSCRIBE => {
                let a: api::SubscribeArgs = decode(&data)?;
                self.subscribe(conn, &a).map(|x| encode(&x))
            }
            api::UNSUBSCRIBE => {
                let a: api::SubscribeArgs = decode(&data)?;
                self.unsubscribe(conn, &a).map(|x| encode(&x))
            }
            api::BACKUP | api::RESTORE | api::DELETE_BACKUP => {
                let a: api::BackupArgs = decode(&data)?;
                self.backup(&caller, &a, code).map(|x| encode(&x))
            }
            api::REMOVE_DEVICE_DATA => {
                let a: api::RemoveDeviceDataArgs = decode(&data)?;
                self.remove_device_data(&caller, &a).map(|x| encode(&x))
            }
            api::START_TRANSACTION | api::COMMIT | api::ROLLBACK => {
                let a: api::StoreRef = decode(&data)?;
                self.transaction(conn, &a, code).map(|x| encode(&x))
            }
            api::CLOSE => {
                let a: api::StoreRef = decode(&data)?;
                self.close(conn, &a).map(|x| encode(&x))
            }
            api::DELETE_KV_STORE => {
                let a: api::StoreRef = decode(&data)?;
                self.delete_store(&caller, &a).map(|x| encode(&x))
            }
            api::GET_ALL_KV_STORE_ID => {
                let a: api::AppArgs = decode(&data)?;
                self.store_ids(&caller, a.app.as_deref())
                    .map(|x| encode(&x))
            }
            api::APPEND_VALUE => {
                let a: api::AppendArgs = decode(&data)?;
                self.append_value(conn.id(), &a).map(|x| encode(&x))
            }
            api::PUT_STAGED => {
                let a: api::PutStagedArgs = decode(&data)?;
                self.put_staged(&caller, conn.id(), &a).map(|x| encode(&x))
            }
            api::GET_PART => {
                let a: api::GetPartArgs = decode(&data)?;
                self.get_part(&caller, &a).map(|x| encode(&x))
            }
            api::DUMP => {
                let a: api::DumpArgs = decode(&data)?;
                Ok(encode(&self.dump_text(a.verbose)))
            }
            _ => {
                return Err(RemoteError::invalid(format!(
                    "DistributedKvDataService has no method {code}"
                )));
            }
        };
        r.map_err(RemoteError::from)
    }

    fn dump(&self, args: &[String]) -> String {
        let verbose = args
            .iter()
            .any(|a| matches!(a.as_str(), "-v" | "--verbose" | "verbose"));
        self.dump_text(verbose)
    }

    fn on_client_died(&self, conn: &ConnHandle) {
        self.client_died(conn);
    }
}
