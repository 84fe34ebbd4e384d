//! The KV service's IPC contract: method codes of SA [`SA_ID`] and their argument and result
//! types (postcard through `oxh_ipc::encode`/`decode`). The SDK (`oxh_sdk::kv`) and `oxh kv`
//! build on this module alone.
//!
//! Every call names its store by `app` (bundle name) and `store_id`. For an app caller (HAP
//! token) `app` may be left out and must otherwise be its own bundle (201 if not); native and
//! shell callers (the `oxh` tool) must name it.
//!
//! | code | method | args | result |
//! |------|--------|------|--------|
//! | [`GET_KV_STORE`] | getKVStore | [`OpenArgs`] | [`StoreInfo`] |
//! | [`PUT`] | put / putBatch | [`PutArgs`] | `()` (committed) |
//! | [`DELETE`] | delete / deleteBatch | [`DeleteArgs`] | `()` |
//! | [`GET`] | get | [`GetArgs`] | `Vec<u8>` or 15100004 |
//! | [`GET_ENTRIES`] | getEntries | [`EntriesArgs`] | [`EntriesPage`] |
//! | [`SYNC`] | sync | [`SyncArgs`] | `Vec<`[`DeviceSyncResult`]`>` |
//! | [`SUBSCRIBE`] | on('dataChange') | [`SubscribeArgs`] | `()`; events: [`DataChange`] |
//! | [`UNSUBSCRIBE`] | off('dataChange') | [`SubscribeArgs`] | `()` |
//! | [`BACKUP`] / [`RESTORE`] / [`DELETE_BACKUP`] | backup, restore, deleteBackup | [`BackupArgs`] | `()` |
//! | [`REMOVE_DEVICE_DATA`] | removeDeviceData | [`RemoveDeviceDataArgs`] | `u64` (rows) |
//! | [`START_TRANSACTION`] / [`COMMIT`] / [`ROLLBACK`] | transactions | [`StoreRef`] | `()` |
//! | [`CLOSE`] / [`DELETE_KV_STORE`] | closeKVStore, deleteKVStore | [`StoreRef`] | `()` |
//! | [`GET_ALL_KV_STORE_ID`] | getAllKVStoreId | [`AppArgs`] | `Vec<String>` |
//! | [`APPEND_VALUE`] / [`PUT_STAGED`] | put of a value over 1 MiB | [`AppendArgs`], [`PutStagedArgs`] | `u64`, `()` |
//! | [`GET_PART`] | get of a value over 1 MiB | [`GetPartArgs`] | [`ValuePart`] |

use crate::limits::{SecurityLevel, StoreType};
use crate::sync::{ChangeKind, SyncMode};
use crate::wire::SyncStatus;
use serde::{Deserialize, Serialize};

pub use crate::error::code;

/// The SA id of the distributed KV data service (samgr's `sa_id::DISTRIBUTED_KV`).
pub const SA_ID: i32 = oxh_ipc::sa_id::DISTRIBUTED_KV;
/// Its name in `oxh sa list` and hidumper.
pub const SA_NAME: &str = "DistributedKvDataService";
/// The permission `sync` needs.
pub const DATASYNC_PERMISSION: &str = "ohos.permission.DISTRIBUTED_DATASYNC";
/// The soft-bus session name the daemons sync on.
pub const SESSION_NAME: &str = "ohos.distributeddata.kv";

/// [`OpenArgs`] → [`StoreInfo`].
pub const GET_KV_STORE: u32 = 1;
/// [`PutArgs`] → `()`.
pub const PUT: u32 = 2;
/// [`DeleteArgs`] → `()`.
pub const DELETE: u32 = 3;
/// [`GetArgs`] → `Vec<u8>`.
pub const GET: u32 = 4;
/// [`EntriesArgs`] → [`EntriesPage`].
pub const GET_ENTRIES: u32 = 5;
/// [`SyncArgs`] → `Vec<DeviceSyncResult>`; needs [`DATASYNC_PERMISSION`].
pub const SYNC: u32 = 6;
/// [`SubscribeArgs`] → `()`.
pub const SUBSCRIBE: u32 = 7;
/// [`SubscribeArgs`] → `()`.
pub const UNSUBSCRIBE: u32 = 8;
/// [`BackupArgs`] → `()`.
pub const BACKUP: u32 = 9;
/// [`BackupArgs`] → `()`.
pub const RESTORE: u32 = 10;
/// [`BackupArgs`] → `()`.
pub const DELETE_BACKUP: u32 = 11;
/// [`RemoveDeviceDataArgs`] → `u64`.
pub const REMOVE_DEVICE_DATA: u32 = 12;
/// [`StoreRef`] → `()`.
pub const START_TRANSACTION: u32 = 13;
/// [`StoreRef`] → `()`.
pub const COMMIT: u32 = 14;
/// [`StoreRef`] → `()`.
pub const ROLLBACK: u32 = 15;
/// [`StoreRef`] → `()`.
pub const CLOSE: u32 = 16;
/// [`StoreRef`] → `()`.
pub const DELETE_KV_STORE: u32 = 17;
/// [`AppArgs`] → `Vec<String>`.
pub const GET_ALL_KV_STORE_ID: u32 = 18;
/// [`DumpArgs`] → `String`.
pub const DUMP: u32 = 19;
/// [`AppendArgs`] → `u64` (bytes staged so far): a value larger than one IPC call (1 MiB)
/// goes up in parts, kept per connection, then [`PUT_STAGED`] stores it.
pub const APPEND_VALUE: u32 = 20;
/// [`PutStagedArgs`] → `()`.
pub const PUT_STAGED: u32 = 21;
/// [`GetPartArgs`] → [`ValuePart`]: a value read in parts (values up to 4 MiB − 1 do not fit
/// one IPC reply).
pub const GET_PART: u32 = 22;

/// Largest part of a value in one call ([`APPEND_VALUE`], [`GET_PART`]).
pub const VALUE_PART: usize = 512 * 1024;
/// Values above this are left out of [`EntriesPage`]s and events (fetch them with
/// [`GET_PART`]), so that a reply or an event stays under the 1 MiB IPC limit.
pub const INLINE_VALUE: usize = 512 * 1024;

/// Which store a call is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    /// Bundle name; `None` means the calling app's own.
    pub app: Option<String>,
    /// The store.
    pub store_id: String,
}

/// Arguments of [`GET_ALL_KV_STORE_ID`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppArgs {
    /// Bundle name; `None` means the calling app's own.
    pub app: Option<String>,
}

/// `Options` of getKVStore, with its JSON names (createIfMissing, kvStoreType, securityLevel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    /// Create the store if it does not exist (default true).
    pub create_if_missing: bool,
    /// Encrypt the store file (not offered yet: 15100006 when true).
    pub encrypt: bool,
    /// Allow backups (default true).
    pub backup: bool,
    /// Push local writes to online trusted devices by themselves (default false).
    pub auto_sync: bool,
    /// Single or device-collaboration.
    pub kv_store_type: StoreType,
    /// S1..S4 (mandatory in OpenHarmony; our default S1).
    pub security_level: SecurityLevel,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            create_if_missing: true,
            encrypt: false,
            backup: true,
            auto_sync: false,
            kv_store_type: StoreType::SingleVersion,
            security_level: SecurityLevel::S1,
        }
    }
}

/// Arguments of [`GET_KV_STORE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenArgs {
    /// The store.
    pub store: StoreRef,
    /// Its options; an existing store opened with another type or level fails with
    /// 15100002.
    pub options: Options,
}

/// Result of [`GET_KV_STORE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    /// The bundle the store belongs to.
    pub app: String,
    /// Its type.
    pub kind: StoreType,
    /// Its security level.
    pub level: SecurityLevel,
    /// This device's id (the partition of its writes in a device store).
    pub local_device: String,
    /// Whether auto sync is on.
    pub auto_sync: bool,
}

/// Arguments of [`PUT`]: one entry (put) or up to 128 (putBatch), committed together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutArgs {
    /// The store.
    pub store: StoreRef,
    /// `(key, value)` pairs.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Arguments of [`DELETE`]: one key (delete) or up to 128 (deleteBatch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteArgs {
    /// The store.
    pub store: StoreRef,
    /// Keys.
    pub keys: Vec<Vec<u8>>,
}

/// Arguments of [`GET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetArgs {
    /// The store.
    pub store: StoreRef,
    /// Key.
    pub key: Vec<u8>,
    /// Device store: whose entry (device id or networkId); `None` for this device's.
    pub device: Option<String>,
}

/// A `Query` on keys, as the subset of OpenHarmony's Query that applies to a KV store
/// without schema: prefixKey, equalTo / inKeys / like on the key, orderBy key, limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// prefixKey.
    pub prefix: Option<Vec<u8>>,
    /// The key equals this.
    pub equal_to: Option<Vec<u8>>,
    /// The key is one of these.
    pub in_keys: Vec<Vec<u8>>,
    /// SQL LIKE pattern on the key (`%` and `_`).
    pub like: Option<String>,
    /// Order by key descending (ascending by default).
    pub desc: bool,
    /// At most this many entries (all when `None`).
    pub limit: Option<u32>,
    /// Skip this many first.
    pub offset: u32,
}

/// Arguments of [`GET_ENTRIES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesArgs {
    /// The store.
    pub store: StoreRef,
    /// Which entries.
    pub query: Query,
    /// Device store: whose entries; `None` for every device's.
    pub device: Option<String>,
    /// Continue after this key (paging; the reply of one call stays under 1 MiB).
    pub after: Option<Vec<u8>>,
}

/// An entry: OpenHarmony's Entry (key, value) and, in JSON, the `deviceId` that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Device store: the device that wrote it; `""` in a single-version store.
    #[serde(rename = "deviceId")]
    pub device: String,
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
}

/// Result of [`GET_ENTRIES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesPage {
    /// Entries in key order.
    pub entries: Vec<Entry>,
    /// More follow: ask again with `after` = the last key.
    pub more: bool,
    /// Indexes of entries whose value (over [`INLINE_VALUE`]) was left out: read it with
    /// [`GET_PART`].
    pub partial: Vec<u32>,
}

/// Arguments of [`APPEND_VALUE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendArgs {
    /// Upload id, chosen by the client (per connection).
    pub upload: u64,
    /// The next part (≤ [`VALUE_PART`]).
    pub data: Vec<u8>,
}

/// Arguments of [`PUT_STAGED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutStagedArgs {
    /// The store.
    pub store: StoreRef,
    /// Key.
    pub key: Vec<u8>,
    /// The upload holding the value.
    pub upload: u64,
}

/// Arguments of [`GET_PART`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPartArgs {
    /// What to read.
    pub get: GetArgs,
    /// From this byte of the value.
    pub offset: u64,
}

/// Result of [`GET_PART`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuePart {
    /// The value's whole length.
    pub total: u64,
    /// Bytes from the offset (at most [`VALUE_PART`]).
    pub data: Vec<u8>,
}

/// Arguments of [`SYNC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncArgs {
    /// The store.
    pub store: StoreRef,
    /// networkIds or device ids; empty for every online trusted device.
    pub devices: Vec<String>,
    /// push, pull or push-pull.
    pub mode: SyncMode,
    /// Give up waiting after this long (the sync may still finish).
    pub timeout_ms: u64,
}

/// One device's result of a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSyncResult {
    /// The device's networkId (or what the caller named, when it is not online).
    pub network_id: String,
    /// Its stable device id (udid), when known.
    pub device_id: String,
    /// How it went.
    pub status: SyncStatus,
}

/// Which changes a subscription hears (SubscribeType), serialized by OpenHarmony's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscribeType {
    /// SUBSCRIBE_TYPE_LOCAL.
    #[serde(rename = "SUBSCRIBE_TYPE_LOCAL")]
    Local,
    /// SUBSCRIBE_TYPE_REMOTE.
    #[serde(rename = "SUBSCRIBE_TYPE_REMOTE")]
    Remote,
    /// SUBSCRIBE_TYPE_ALL.
    #[serde(rename = "SUBSCRIBE_TYPE_ALL")]
    All,
}

/// Arguments of [`SUBSCRIBE`] and [`UNSUBSCRIBE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeArgs {
    /// The store.
    pub store: StoreRef,
    /// The IPC subscription id events go to.
    pub sub: u64,
    /// Which changes.
    pub kind: SubscribeType,
}

/// An event on a subscription: OpenHarmony's `ChangeNotification`, or a sync's completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataChange {
    /// dataChange.
    #[serde(rename_all = "camelCase")]
    Change {
        /// The store.
        store_id: String,
        /// Device whose write it was (this device's id for local changes).
        device_id: String,
        /// True for changes that came from another device.
        remote: bool,
        /// insertEntries.
        #[serde(rename = "insertEntries")]
        inserted: Vec<Entry>,
        /// updateEntries.
        #[serde(rename = "updateEntries")]
        updated: Vec<Entry>,
        /// deleteEntries (value empty).
        #[serde(rename = "deleteEntries")]
        deleted: Vec<Entry>,
    },
    /// syncComplete, one per device.
    #[serde(rename_all = "camelCase")]
    SyncComplete {
        /// The store.
        store_id: String,
        /// Per device.
        results: Vec<DeviceSyncResult>,
    },
}

/// Builds a [`DataChange::Change`] from change lists (kept here so SA and tests agree).
pub fn change_lists(
    changes: impl IntoIterator<Item = (ChangeKind, Entry)>,
) -> (Vec<Entry>, Vec<Entry>, Vec<Entry>) {
    let (mut i, mut u, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for (k, e) in changes {
        match k {
            ChangeKind::Insert => i.push(e),
            ChangeKind::Update => u.push(e),
            ChangeKind::Delete => d.push(e),
        }
    }
    (i, u, d)
}

/// Arguments of [`BACKUP`], [`RESTORE`], [`DELETE_BACKUP`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupArgs {
    /// The store.
    pub store: StoreRef,
    /// The backup's name (kept by the service beside the store).
    pub name: String,
}

/// Arguments of [`REMOVE_DEVICE_DATA`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveDeviceDataArgs {
    /// The store.
    pub store: StoreRef,
    /// Device id or networkId whose entries to drop locally.
    pub device: String,
}

/// Arguments of [`DUMP`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpArgs {
    /// Also list every open store.
    pub verbose: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = PutArgs {
            store: StoreRef {
                app: Some("com.x".into()),
                store_id: "s".into(),
            },
            entries: vec![(b"k".to_vec(), b"v".to_vec())],
        };
        let b: PutArgs = oxh_ipc::decode(&oxh_ipc::encode(&a)).unwrap();
        assert_eq!(a, b);
        let o: OpenArgs = oxh_ipc::decode(&oxh_ipc::encode(&OpenArgs {
            store: a.store.clone(),
            options: Options::default(),
        }))
        .unwrap();
        assert!(o.options.create_if_missing);
    }

    #[cfg(feature = "service")]
    #[test]
    fn sa_id_matches_samgr() {
        assert_eq!(SA_ID, oxh_samgr::sa_id::DISTRIBUTED_KV);
    }
}
