//! The distributed KV store, as `@ohos.data.distributedKVStore`: a [`KVManager`] for an app
//! opens [`SingleKVStore`]s (one value per key across devices) and [`DeviceKVStore`]s
//! (entries kept per writing device; other devices' entries are read-only).
//!
//! ```no_run
//! # async fn demo() -> Result<(), oxh_sdk::Error> {
//! use oxh_sdk::kv::{KVManager, Options};
//! let dev = oxh_sdk::Device::connect_default().await?;
//! // An app leaves the bundle name out (its token says who it is); tools name it.
//! let mgr = KVManager::new(&dev, Some("com.example.notes"));
//! let store = mgr.get_single_kv_store("notes", Options::default()).await?;
//! store.put(b"title", b"hello").await?;
//! assert_eq!(store.get(b"title").await?, b"hello");
//! # Ok(()) }
//! ```

use crate::{Device, Error};
use oxh_ipc::Subscription;
use oxh_kvstore::api::{
    self, AppArgs, BackupArgs, DeleteArgs, EntriesArgs, EntriesPage, GetArgs, OpenArgs, PutArgs,
    RemoveDeviceDataArgs, StoreRef, SubscribeArgs, SyncArgs,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values above this go up in parts (one IPC call carries at most 1 MiB).
const PUT_INLINE: usize = 768 * 1024;
static NEXT_UPLOAD: AtomicU64 = AtomicU64::new(1);

pub use oxh_kvstore::api::{
    DataChange, DeviceSyncResult, Entry, Options, Query, StoreInfo, SubscribeType, code,
};
pub use oxh_kvstore::limits::{SecurityLevel, StoreType};
pub use oxh_kvstore::sync::SyncMode;
pub use oxh_kvstore::wire::SyncStatus;

/// `distributedKVStore.createKVManager`: the stores of one app on one device.
#[derive(Clone)]
pub struct KVManager {
    dev: Device,
    bundle: Option<String>,
}

impl KVManager {
    /// A manager for `bundle_name`; `None` means the calling app's own bundle (apps), which
    /// native and shell callers must name.
    pub fn new(dev: &Device, bundle_name: Option<&str>) -> Self {
        Self {
            dev: dev.clone(),
            bundle: bundle_name.map(String::from),
        }
    }

    fn store_ref(&self, store_id: &str) -> StoreRef {
        StoreRef {
            app: self.bundle.clone(),
            store_id: store_id.into(),
        }
    }

    async fn open(&self, store_id: &str, options: Options) -> Result<SingleKVStore, Error> {
        let store = self.store_ref(store_id);
        let info: StoreInfo = self
            .dev
            .client
            .call(
                api::SA_ID,
                api::GET_KV_STORE,
                &OpenArgs {
                    store: store.clone(),
                    options,
                },
            )
            .await?;
        Ok(SingleKVStore {
            dev: self.dev.clone(),
            store,
            info: Some(info),
        })
    }

    /// A handle on the store as it is, without getKVStore: nothing is created and no type or
    /// level is checked (calls fail with 15100004 when there is no such store). For tools
    /// that work on a store whose options they do not know; reads that name a device are
    /// answered from that device's partition in a device store, and a single store ignores it.
    pub fn existing_kv_store(&self, store_id: &str) -> SingleKVStore {
        SingleKVStore {
            dev: self.dev.clone(),
            store: self.store_ref(store_id),
            info: None,
        }
    }

    /// getKVStore with `kvStoreType` SINGLE_VERSION (the option's type is overridden).
    pub async fn get_single_kv_store(
        &self,
        store_id: &str,
        mut options: Options,
    ) -> Result<SingleKVStore, Error> {
        options.kv_store_type = StoreType::SingleVersion;
        self.open(store_id, options).await
    }

    /// getKVStore with `kvStoreType` DEVICE_COLLABORATION.
    pub async fn get_device_kv_store(
        &self,
        store_id: &str,
        mut options: Options,
    ) -> Result<DeviceKVStore, Error> {
        options.kv_store_type = StoreType::DeviceCollaboration;
        Ok(DeviceKVStore(self.open(store_id, options).await?))
    }

    /// getKVStore as the options say; a device store is returned as its single-store view
    /// (reads default to this device's entries).
    pub async fn get_kv_store(
        &self,
        store_id: &str,
        options: Options,
    ) -> Result<SingleKVStore, Error> {
        self.open(store_id, options).await
    }

    /// closeKVStore: this connection's subscriptions and transaction on it end.
    pub async fn close_kv_store(&self, store_id: &str) -> Result<(), Error> {
        self.dev
            .client
            .call(api::SA_ID, api::CLOSE, &self.store_ref(store_id))
            .await
    }

    /// deleteKVStore: removes the store file (15100004 when there is none).
    pub async fn delete_kv_store(&self, store_id: &str) -> Result<(), Error> {
        self.dev
            .client
            .call(api::SA_ID, api::DELETE_KV_STORE, &self.store_ref(store_id))
            .await
    }

    /// getAllKVStoreId.
    pub async fn get_all_kv_store_id(&self) -> Result<Vec<String>, Error> {
        self.dev
            .client
            .call(
                api::SA_ID,
                api::GET_ALL_KV_STORE_ID,
                &AppArgs {
                    app: self.bundle.clone(),
                },
            )
            .await
    }
}

/// dataChange and syncComplete events of one subscription (`on('dataChange')`); dropping it
/// stops delivery (`off`).
pub struct DataChangeWatcher {
    sub: Subscription,
}

impl DataChangeWatcher {
    /// The next event; `None` once the connection closed. An event this SDK cannot decode
    /// (from a newer service) is skipped rather than taken for the end.
    pub async fn next(&mut self) -> Option<DataChange> {
        loop {
            let b = self.sub.recv().await?;
            if let Ok(ev) = oxh_ipc::decode(&b) {
                return Some(ev);
            }
        }
    }
}

/// What a listing holds: the entries, with the values too large for a page left out.
#[derive(Debug, Clone, Default)]
pub struct EntryListing {
    /// Entries in key order.
    pub entries: Vec<Entry>,
    /// Indexes into `entries` whose value (over 512 KiB) was left out: read it with
    /// [`SingleKVStore::get_from`].
    pub large: Vec<usize>,
}

/// A single-version store: one value per key, synced across devices (last writer wins on a
/// hybrid logical clock, ties broken by device id).
#[derive(Clone)]
pub struct SingleKVStore {
    dev: Device,
    store: StoreRef,
    /// `None` for a handle from [`KVManager::existing_kv_store`], which did not open it.
    info: Option<StoreInfo>,
}

impl SingleKVStore {
    /// The store's type, level and this device's id, as getKVStore returned them; `None`
    /// when the handle came from [`KVManager::existing_kv_store`].
    pub fn info(&self) -> Option<&StoreInfo> {
        self.info.as_ref()
    }

    async fn call<A: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        code: u32,
        a: &A,
    ) -> Result<R, Error> {
        self.dev.client.call(api::SA_ID, code, a).await
    }

    /// put: returns once the write is committed to disk. Values up to 4 MiB − 1; those over
    /// 768 KiB go up in parts.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        if value.len() <= PUT_INLINE {
            return self.put_batch(&[(key.to_vec(), value.to_vec())]).await;
        }
        let upload = NEXT_UPLOAD.fetch_add(1, Ordering::Relaxed);
        for part in value.chunks(api::VALUE_PART) {
            let _: u64 = self
                .call(
                    api::APPEND_VALUE,
                    &api::AppendArgs {
                        upload,
                        data: part.to_vec(),
                    },
                )
                .await?;
        }
        self.call(
            api::PUT_STAGED,
            &api::PutStagedArgs {
                store: self.store.clone(),
                key: key.to_vec(),
                upload,
            },
        )
        .await
    }

    /// putBatch: up to 128 entries, committed together (together under 1 MiB: one IPC
    /// call; put larger values one by one).
    pub async fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Error> {
        self.call(
            api::PUT,
            &PutArgs {
                store: self.store.clone(),
                entries: entries.to_vec(),
            },
        )
        .await
    }

    /// delete.
    pub async fn delete(&self, key: &[u8]) -> Result<(), Error> {
        self.delete_batch(&[key.to_vec()]).await
    }

    /// deleteBatch: up to 128 keys.
    pub async fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<(), Error> {
        self.call(
            api::DELETE,
            &DeleteArgs {
                store: self.store.clone(),
                keys: keys.to_vec(),
            },
        )
        .await
    }

    /// get: the value, or 15100004.
    pub async fn get(&self, key: &[u8]) -> Result<Vec<u8>, Error> {
        self.get_from(None, key).await
    }

    /// get from `device`'s partition of a device store (`None`: this device's); a single
    /// store ignores `device`. For callers that do not know the store's type.
    pub async fn get_from(&self, device: Option<&str>, key: &[u8]) -> Result<Vec<u8>, Error> {
        let get = GetArgs {
            store: self.store.clone(),
            key: key.to_vec(),
            device: device.map(String::from),
        };
        // In parts: a value may be larger than one IPC reply. Bounded by the value's size.
        let mut out = Vec::new();
        loop {
            let part: api::ValuePart = self
                .call(
                    api::GET_PART,
                    &api::GetPartArgs {
                        get: get.clone(),
                        offset: out.len() as u64,
                    },
                )
                .await?;
            let empty = part.data.is_empty();
            out.extend(part.data);
            if out.len() as u64 >= part.total || empty {
                return Ok(out);
            }
        }
    }

    /// getEntries(keyPrefix).
    pub async fn get_entries(&self, prefix: &[u8]) -> Result<Vec<Entry>, Error> {
        self.get_entries_query(&Query {
            prefix: Some(prefix.to_vec()),
            ..Default::default()
        })
        .await
    }

    /// getEntries(query), fetched page by page.
    pub async fn get_entries_query(&self, q: &Query) -> Result<Vec<Entry>, Error> {
        self.entries_of(None, q).await
    }

    async fn entries_of(&self, device: Option<&str>, q: &Query) -> Result<Vec<Entry>, Error> {
        let mut l = self.list_entries(device, q).await?;
        for &i in &l.large {
            if let Some(e) = l.entries.get_mut(i) {
                let dev = (!e.device.is_empty()).then(|| e.device.clone());
                e.value = self.get_from(dev.as_deref(), &e.key).await?;
            }
        }
        Ok(l.entries)
    }

    /// getEntries(query) from `device`'s partition (as [`Self::get_from`]), page by page, with
    /// large values left out: for listings that show many entries and need not hold them all.
    pub async fn list_entries(
        &self,
        device: Option<&str>,
        q: &Query,
    ) -> Result<EntryListing, Error> {
        let mut out = EntryListing::default();
        let mut after = None;
        // Bounded: each page holds at least one entry, and a query has a finite answer.
        loop {
            let mut q = q.clone();
            if after.is_some()
                && let Some(l) = q.limit
            {
                q.limit = Some(l.saturating_sub(out.entries.len() as u32));
            }
            let page: EntriesPage = self
                .call(
                    api::GET_ENTRIES,
                    &EntriesArgs {
                        store: self.store.clone(),
                        query: q,
                        device: device.map(String::from),
                        after: after.clone(),
                    },
                )
                .await?;
            let more = page.more && !page.entries.is_empty();
            after = page.entries.last().map(|e| e.key.clone());
            let base = out.entries.len();
            out.large.extend(
                page.partial
                    .iter()
                    .map(|&i| base + i as usize)
                    .filter(|&i| i < base + page.entries.len()),
            );
            out.entries.extend(page.entries);
            if !more {
                return Ok(out);
            }
        }
    }

    /// sync with `devices` (networkIds; empty for every online trusted device), waiting up to
    /// `timeout`; the result per device. Needs ohos.permission.DISTRIBUTED_DATASYNC.
    pub async fn sync(
        &self,
        devices: &[String],
        mode: SyncMode,
        timeout: Duration,
    ) -> Result<Vec<DeviceSyncResult>, Error> {
        self.call(
            api::SYNC,
            &SyncArgs {
                store: self.store.clone(),
                devices: devices.to_vec(),
                mode,
                timeout_ms: timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            },
        )
        .await
    }

    /// on('dataChange', type): events from now on (and syncComplete).
    pub async fn on_data_change(&self, kind: SubscribeType) -> Result<DataChangeWatcher, Error> {
        let sub = self.dev.client.subscribe();
        let () = self
            .call(
                api::SUBSCRIBE,
                &SubscribeArgs {
                    store: self.store.clone(),
                    sub: sub.id(),
                    kind,
                },
            )
            .await?;
        Ok(DataChangeWatcher { sub })
    }

    /// startTransaction: later puts and deletes on this connection wait for commit.
    pub async fn start_transaction(&self) -> Result<(), Error> {
        self.call(api::START_TRANSACTION, &self.store).await
    }

    /// commit: the transaction's writes, all together.
    pub async fn commit(&self) -> Result<(), Error> {
        self.call(api::COMMIT, &self.store).await
    }

    /// rollback: the transaction's writes are dropped.
    pub async fn rollback(&self) -> Result<(), Error> {
        self.call(api::ROLLBACK, &self.store).await
    }

    /// backup(name): a snapshot kept by the service beside the store.
    pub async fn backup(&self, name: &str) -> Result<(), Error> {
        self.backup_op(api::BACKUP, name).await
    }

    /// restore(name): this device's data becomes the backup's (as new writes, which sync).
    pub async fn restore(&self, name: &str) -> Result<(), Error> {
        self.backup_op(api::RESTORE, name).await
    }

    /// deleteBackup(name).
    pub async fn delete_backup(&self, name: &str) -> Result<(), Error> {
        self.backup_op(api::DELETE_BACKUP, name).await
    }

    async fn backup_op(&self, code: u32, name: &str) -> Result<(), Error> {
        self.call(
            code,
            &BackupArgs {
                store: self.store.clone(),
                name: name.into(),
            },
        )
        .await
    }

    /// removeDeviceData(deviceId): drops, on this device, what that device wrote.
    pub async fn remove_device_data(&self, device: &str) -> Result<u64, Error> {
        self.call(
            api::REMOVE_DEVICE_DATA,
            &RemoveDeviceDataArgs {
                store: self.store.clone(),
                device: device.into(),
            },
        )
        .await
    }
}

/// A device-collaboration store: each device's writes live in its own partition.
#[derive(Clone)]
pub struct DeviceKVStore(SingleKVStore);

impl std::ops::Deref for DeviceKVStore {
    type Target = SingleKVStore;
    fn deref(&self) -> &SingleKVStore {
        &self.0
    }
}

impl DeviceKVStore {
    /// get(deviceId, key): the entry `device` (networkId or device id) wrote.
    pub async fn get_from_device(&self, device: &str, key: &[u8]) -> Result<Vec<u8>, Error> {
        self.0.get_from(Some(device), key).await
    }

    /// getEntries(deviceId, query): the entries `device` wrote.
    pub async fn get_device_entries(&self, device: &str, q: &Query) -> Result<Vec<Entry>, Error> {
        self.0.entries_of(Some(device), q).await
    }
}
