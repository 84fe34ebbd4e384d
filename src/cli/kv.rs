//! `oxh kv`: the distributed KV store from the command line (the shell names the app).

use super::{Global, print_json};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use oxh_sdk::Device;
use oxh_sdk::kv::{
    DataChange, Entry, KVManager, Options, Query, SecurityLevel, SingleKVStore, StoreType,
    SubscribeType, SyncMode, SyncStatus, code,
};
use std::time::Duration;

/// Which store.
#[derive(Debug, Clone, Args)]
pub struct StoreOpts {
    /// The app (bundle name) whose store it is.
    #[arg(long)]
    app: String,
    /// The storeId.
    #[arg(long)]
    store: String,
    /// Store type when the store is created: single or device.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Security level when the store is created: S1..S4.
    #[arg(long)]
    level: Option<String>,
    /// Create the store with auto sync on.
    #[arg(long)]
    auto_sync: bool,
}

/// `oxh kv` commands.
#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Put a value (creates the store if it is missing).
    Put {
        #[command(flatten)]
        s: StoreOpts,
        key: String,
        value: String,
    },
    /// Print a value.
    Get {
        #[command(flatten)]
        s: StoreOpts,
        key: String,
        /// Device store: the entry this device (networkId or device id) wrote.
        #[arg(long)]
        device: Option<String>,
    },
    /// Delete a key.
    Del {
        #[command(flatten)]
        s: StoreOpts,
        key: String,
    },
    /// List entries.
    Ls {
        #[command(flatten)]
        s: StoreOpts,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Device store: only what this device wrote.
        #[arg(long)]
        device: Option<String>,
    },
    /// Sync with other devices; prints the result per device.
    Sync {
        #[command(flatten)]
        s: StoreOpts,
        /// `all` or networkIds / device ids, comma separated.
        #[arg(long, default_value = "all")]
        devices: String,
        /// push, pull or push-pull.
        #[arg(long, default_value = "push-pull")]
        mode: String,
        /// How long to wait, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Print change events as they happen.
    Watch {
        #[command(flatten)]
        s: StoreOpts,
        /// Only this device's own changes.
        #[arg(long)]
        local: bool,
        /// Only changes from other devices.
        #[arg(long)]
        remote: bool,
        /// Both (the default).
        #[arg(long)]
        all: bool,
        /// Exit after this many dataChange events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Back the store up under NAME.
    Backup {
        #[command(flatten)]
        s: StoreOpts,
        name: String,
    },
    /// Restore the backup NAME.
    Restore {
        #[command(flatten)]
        s: StoreOpts,
        name: String,
    },
    /// List the app's stores.
    Stores {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Delete a store.
    DeleteStore {
        #[command(flatten)]
        s: StoreOpts,
    },
}

fn manager(dev: &Device, s: &StoreOpts) -> KVManager {
    KVManager::new(dev, Some(&s.app))
}

/// The options the user gave, if any: then the store is opened with them, so that a
/// mismatch is reported; else the store is used as it is.
fn given_options(s: &StoreOpts, create: bool) -> Result<Option<Options>> {
    if s.kind.is_none() && s.level.is_none() && !s.auto_sync && !create {
        return Ok(None);
    }
    Ok(Some(Options {
        create_if_missing: create,
        auto_sync: s.auto_sync,
        kv_store_type: match &s.kind {
            Some(k) => k.parse::<StoreType>()?,
            None => StoreType::SingleVersion,
        },
        security_level: match &s.level {
            Some(l) => l.parse::<SecurityLevel>()?,
            None => SecurityLevel::S1,
        },
        ..Options::default()
    }))
}

/// The store: opened (created if `create`) when the user gave options, else as it is.
async fn open(dev: &Device, s: &StoreOpts, create: bool) -> Result<SingleKVStore> {
    let mgr = manager(dev, s);
    Ok(match given_options(s, create)? {
        Some(o) => mgr.get_kv_store(&s.store, o).await?,
        None => mgr.existing_kv_store(&s.store),
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An entry as `--json` prints it: OpenHarmony's Entry (key, value) and the deviceId of the
/// device it came from (empty for this device's own).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    device_id: String,
    key: String,
    value: String,
}

fn entry_json(e: &Entry) -> EntryView {
    EntryView {
        device_id: e.device.clone(),
        key: text(&e.key),
        value: text(&e.value),
    }
}

/// One device's sync result (OpenHarmony's sync callback: networkId/deviceId and status).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncView<'a> {
    network_id: &'a str,
    device_id: &'a str,
    status: &'a str,
}

/// `all` or a comma-separated list of devices, as the sync takes them (empty: all).
pub(super) fn device_list(devices: &str) -> Vec<String> {
    if devices == "all" {
        return Vec::new();
    }
    devices
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// Prints a sync's result per device (`networkId status`, or JSON); exit status 0 only when
/// every device succeeded.
pub(super) fn print_sync_results(
    g: &Global,
    res: &[oxh_kvstore::api::DeviceSyncResult],
) -> Result<i32> {
    let ok = res.iter().all(|r| r.status == SyncStatus::Success);
    if g.json {
        let v: Vec<_> = res
            .iter()
            .map(|r| SyncView {
                network_id: &r.network_id,
                device_id: &r.device_id,
                status: r.status.as_str(),
            })
            .collect();
        print_json(&v)?;
    } else {
        for r in res {
            println!("{} {}", r.network_id, r.status.as_str());
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// A data change as `kv watch --json` prints it: OpenHarmony's ChangeNotification
/// (insertEntries, updateEntries, deleteEntries, deviceId) and whether it was local or remote.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangeView<'a> {
    origin: &'a str,
    device_id: &'a str,
    insert_entries: Vec<EntryView>,
    update_entries: Vec<EntryView>,
    delete_entries: Vec<EntryView>,
}

fn short(d: &str) -> &str {
    &d[..d.len().min(8)]
}

/// Runs `oxh kv ...`.
pub async fn run(g: &Global, c: &KvCmd) -> Result<i32> {
    let dev = g.connect().await?;
    match c {
        KvCmd::Put { s, key, value } => {
            let explicit = s.kind.is_some() || s.level.is_some() || s.auto_sync;
            let store = open(&dev, s, explicit).await?;
            match store.put(key.as_bytes(), value.as_bytes()).await {
                Err(oxh_sdk::Error::Remote(e)) if !explicit && e.code == code::NOT_FOUND => {
                    let store = open(&dev, s, true).await?;
                    store.put(key.as_bytes(), value.as_bytes()).await?;
                }
                r => r?,
            }
            Ok(0)
        }
        KvCmd::Get { s, key, device } => {
            let store = open(&dev, s, false).await?;
            let v = store.get_from(device.as_deref(), key.as_bytes()).await?;
            if g.json {
                print_json(&serde_json::json!({ key.as_str(): text(&v) }))?;
            } else {
                println!("{}", text(&v));
            }
            Ok(0)
        }
        KvCmd::Del { s, key } => {
            open(&dev, s, false).await?.delete(key.as_bytes()).await?;
            Ok(0)
        }
        KvCmd::Ls { s, prefix, device } => {
            let store = open(&dev, s, false).await?;
            let query = Query {
                prefix: prefix.as_ref().map(|p| p.as_bytes().to_vec()),
                ..Default::default()
            };
            let mut l = store.list_entries(device.as_deref(), &query).await?;
            // Values over 512 KiB are not in the listing; say so rather than print nothing.
            for &i in &l.large {
                if let Some(e) = l.entries.get_mut(i) {
                    e.value = b"<large value: use get>".to_vec();
                }
            }
            let all = l.entries;
            if g.json {
                print_json(&all.iter().map(entry_json).collect::<Vec<_>>())?;
            } else {
                for e in &all {
                    if e.device.is_empty() {
                        println!("{} = {}", text(&e.key), text(&e.value));
                    } else {
                        println!(
                            "[{}] {} = {}",
                            short(&e.device),
                            text(&e.key),
                            text(&e.value)
                        );
                    }
                }
            }
            Ok(0)
        }
        KvCmd::Sync {
            s,
            devices,
            mode,
            timeout_ms,
        } => {
            let store = open(&dev, s, false).await?;
            let mode: SyncMode = mode.parse().map_err(anyhow::Error::msg)?;
            let res = store
                .sync(
                    &device_list(devices),
                    mode,
                    Duration::from_millis(*timeout_ms),
                )
                .await?;
            print_sync_results(g, &res)
        }
        KvCmd::Watch {
            s,
            local,
            remote,
            all,
            count,
        } => {
            let store = open(&dev, s, false).await?;
            let kind = match (local, remote, all) {
                (true, false, false) => SubscribeType::Local,
                (false, true, false) => SubscribeType::Remote,
                (false, false, _) | (_, _, true) => SubscribeType::All,
                _ => bail!("choose one of --local, --remote, --all"),
            };
            let mut events = store.on_data_change(kind).await?;
            // Tests and scripts wait for this line before they write.
            println!("watching {}/{}", s.app, s.store);
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                let Some(ev) = events.next().await else { break };
                match ev {
                    DataChange::Change {
                        device_id,
                        remote,
                        inserted,
                        updated,
                        deleted,
                        ..
                    } => {
                        seen += 1;
                        let from = if remote { "remote" } else { "local" };
                        if g.json {
                            let v = ChangeView {
                                origin: from,
                                device_id: &device_id,
                                insert_entries: inserted.iter().map(entry_json).collect(),
                                update_entries: updated.iter().map(entry_json).collect(),
                                delete_entries: deleted.iter().map(entry_json).collect(),
                            };
                            println!("{}", serde_json::to_string(&v)?);
                        } else {
                            for (what, l) in [
                                ("insert", &inserted),
                                ("update", &updated),
                                ("delete", &deleted),
                            ] {
                                for e in l {
                                    println!(
                                        "{what} {} = {} ({from} {})",
                                        text(&e.key),
                                        text(&e.value),
                                        short(&device_id)
                                    );
                                }
                            }
                        }
                    }
                    DataChange::SyncComplete { results, .. } => {
                        for r in results {
                            println!("syncComplete {} {}", short(&r.device_id), r.status.as_str());
                        }
                    }
                }
            }
            Ok(0)
        }
        KvCmd::Backup { s, name } => {
            open(&dev, s, false).await?.backup(name).await?;
            Ok(0)
        }
        KvCmd::Restore { s, name } => {
            open(&dev, s, false).await?.restore(name).await?;
            Ok(0)
        }
        KvCmd::Stores { app } => {
            let ids = KVManager::new(&dev, Some(app))
                .get_all_kv_store_id()
                .await?;
            if g.json {
                print_json(&ids)?;
            } else {
                for i in ids {
                    println!("{i}");
                }
            }
            Ok(0)
        }
        KvCmd::DeleteStore { s } => {
            manager(&dev, s).delete_kv_store(&s.store).await?;
            Ok(0)
        }
    }
}
