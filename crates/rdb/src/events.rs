//! on('dataChange') / off('dataChange'): observers of a store and what they are told.
//!
//! - `SUBSCRIBE_TYPE_LOCAL_DETAILS`: after every committed write (an autocommit call, or a
//!   transaction's commit; a rollback tells nothing), the rows this device changed in the
//!   store's distributed tables since the last notice, by primary key, as
//!   `ChangeInfo{table, inserted, updated, deleted}`. The details come from the change log,
//!   which only distributed tables have (OpenHarmony's details likewise come from the tables it
//!   tracks). The notice goes to every observer of the store, whichever connection wrote.
//! - `SUBSCRIBE_TYPE_REMOTE`: after a sync applied a peer's changes, the devices they came
//!   from (with the same details).
//! - The cloud types are 801: there is no cloud here.
//!
//! At most [`MAX_OBSERVERS`] per store (OpenHarmony's limit); observers go with their IPC
//! connection; an app observes only stores it has a handle on.

use crate::Applied;
use crate::api::{self, ChangeInfo, RdbEvent, StoreHandle};
use crate::config::MAX_OBSERVERS;
use crate::error::{RdbError, Result, code};
use crate::service::RdbService;
use oxh_ipc::ConnHandle;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

type Key = (String, PathBuf);

struct Observer {
    conn: ConnHandle,
    sub: u64,
    kind: i32,
}

#[derive(Default)]
struct StoreObservers {
    list: Vec<Observer>,
    /// The change number up to which local changes were told.
    told: u64,
}

/// Every store's observers.
#[derive(Default)]
pub(crate) struct Observers {
    by_store: Mutex<HashMap<Key, StoreObservers>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn store_name(key: &Key) -> String {
    key.1
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The ChangeInfo of `t` in `by`, added if missing.
fn info_of<'a>(by: &'a mut Vec<ChangeInfo>, t: &str) -> &'a mut ChangeInfo {
    let i = match by.iter().position(|c| c.table == t) {
        Some(i) => i,
        None => {
            by.push(ChangeInfo {
                table: t.to_string(),
                change_type: api::DATA_CHANGE,
                ..Default::default()
            });
            by.len() - 1
        }
    };
    &mut by[i]
}

/// Groups applied rows by table, as ChangeInfos.
fn infos(a: &Applied) -> Vec<ChangeInfo> {
    let mut by: Vec<ChangeInfo> = Vec::new();
    for (t, k) in &a.inserted {
        info_of(&mut by, t).inserted.push(k.clone());
    }
    for (t, k) in &a.updated {
        info_of(&mut by, t).updated.push(k.clone());
    }
    for (t, k) in &a.deleted {
        info_of(&mut by, t).deleted.push(k.clone());
    }
    by
}

impl RdbService {
    /// on('dataChange', type).
    pub fn subscribe(&self, conn: &ConnHandle, a: &api::SubscribeArgs) -> Result<()> {
        match a.kind {
            api::SUBSCRIBE_TYPE_REMOTE | api::SUBSCRIBE_TYPE_LOCAL_DETAILS => {}
            api::SUBSCRIBE_TYPE_CLOUD | api::SUBSCRIBE_TYPE_CLOUD_DETAILS => {
                return Err(RdbError::new(
                    code::NOT_SUPPORTED,
                    "there is no cloud sync on this device",
                ));
            }
            k => return Err(RdbError::invalid(format!("SubscribeType {k} is not 0..3"))),
        }
        let (key, store) = self.handle_store(conn.id(), a.handle)?;
        let told = store.change_seq()?;
        let obs = &self.observers().by_store;
        let mut m = lock(obs);
        let so = m.entry(key).or_insert_with(|| StoreObservers {
            list: Vec::new(),
            told,
        });
        so.list.retain(|o| !o.conn.is_closed());
        if so
            .list
            .iter()
            .any(|o| o.conn.id() == conn.id() && o.sub == a.sub)
        {
            return Ok(());
        }
        if so.list.len() >= MAX_OBSERVERS {
            return Err(RdbError::invalid(format!(
                "a store takes at most {MAX_OBSERVERS} observers"
            )));
        }
        so.list.push(Observer {
            conn: conn.clone(),
            sub: a.sub,
            kind: a.kind,
        });
        Ok(())
    }

    /// off('dataChange', type).
    pub fn unsubscribe(&self, conn: &ConnHandle, a: &api::SubscribeArgs) -> Result<()> {
        let (key, _) = self.handle_store(conn.id(), a.handle)?;
        if let Some(so) = lock(&self.observers().by_store).get_mut(&key) {
            so.list
                .retain(|o| !(o.conn.id() == conn.id() && o.sub == a.sub));
        }
        Ok(())
    }

    /// A connection went: its observers go.
    pub(crate) fn drop_observers(&self, conn: u64) {
        let mut m = lock(&self.observers().by_store);
        for so in m.values_mut() {
            so.list
                .retain(|o| o.conn.id() != conn && !o.conn.is_closed());
        }
        m.retain(|_, so| !so.list.is_empty());
    }

    /// After a write on `handle` committed: local observers hear what changed since the
    /// last notice.
    pub(crate) fn after_write(&self, conn: u64, handle: StoreHandle) {
        let Ok((key, store)) = self.handle_store(conn, handle) else {
            return;
        };
        let mut m = lock(&self.observers().by_store);
        let Some(so) = m.get_mut(&key) else { return };
        if !so
            .list
            .iter()
            .any(|o| o.kind == api::SUBSCRIBE_TYPE_LOCAL_DETAILS)
        {
            return;
        }
        let Ok((changes, upto)) = store.local_changes(so.told) else {
            return;
        };
        so.told = upto;
        if changes.is_empty() {
            return;
        }
        let ev = oxh_ipc::encode(&RdbEvent::DataChange {
            store: store_name(&key),
            remote: false,
            devices: Vec::new(),
            changes,
        });
        for o in &so.list {
            if o.kind == api::SUBSCRIBE_TYPE_LOCAL_DETAILS {
                o.conn.push_event(o.sub, &ev);
            }
        }
    }

    /// A sync applied `applied` from `from` to the store `key`: remote observers hear of it.
    pub fn notify_remote(&self, key: &Key, from: &str, applied: &Applied) {
        if applied.is_empty() {
            return;
        }
        let m = lock(&self.observers().by_store);
        let Some(so) = m.get(key) else { return };
        let ev = oxh_ipc::encode(&RdbEvent::DataChange {
            store: store_name(key),
            remote: true,
            devices: vec![from.to_string()],
            changes: infos(applied),
        });
        for o in &so.list {
            if o.kind == api::SUBSCRIBE_TYPE_REMOTE {
                o.conn.push_event(o.sub, &ev);
            }
        }
    }
}
