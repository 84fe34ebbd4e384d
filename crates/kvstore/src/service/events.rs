//! dataChange subscriptions (on / off) and the events pushed to them.

use super::{KvService, OpenStore, Sub, lock};
use crate::api::{self, DataChange, DeviceSyncResult, Entry, SubscribeType};
use crate::error::KvError;
use crate::limits::MAX_SUBSCRIPTIONS;
use crate::sync::{Change, ChangeKind};
use oxh_ipc::ConnHandle;

/// An event's entry; values over [`api::INLINE_VALUE`] are left out (an event must fit one
/// IPC frame): read them with GET_PART.
fn entry_of(c: &Change) -> (ChangeKind, Entry) {
    let value = match &c.record.value {
        Some(v) if v.len() <= api::INLINE_VALUE => v.clone(),
        _ => Vec::new(),
    };
    (
        c.kind,
        Entry {
            device: c.record.part.clone(),
            key: c.record.key.clone(),
            value,
        },
    )
}

impl KvService {
    pub(super) fn notify(&self, o: &OpenStore, device: &str, remote: bool, changes: &[Change]) {
        let mut subs = lock(&o.subs);
        subs.retain(|s| !s.conn.is_closed());
        if subs.is_empty() {
            return;
        }
        let (inserted, updated, deleted) = api::change_lists(changes.iter().map(entry_of));
        let ev = oxh_ipc::encode(&DataChange::Change {
            store_id: o.desc.store_id.clone(),
            device_id: device.to_string(),
            remote,
            inserted,
            updated,
            deleted,
        });
        for s in subs.iter() {
            let wanted = match s.kind {
                SubscribeType::All => true,
                SubscribeType::Local => !remote,
                SubscribeType::Remote => remote,
            };
            if wanted {
                s.conn.push_event(s.sub, &ev);
            }
        }
    }

    /// on('dataChange').
    pub fn subscribe(&self, conn: &ConnHandle, a: &api::SubscribeArgs) -> Result<(), KvError> {
        let key = self.key(conn.caller(), &a.store)?;
        let o = self.existing(&key)?;
        let mut subs = lock(&o.subs);
        subs.retain(|s| !s.conn.is_closed());
        if subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(KvError::OverMaxLimits(format!(
                "a store takes at most {MAX_SUBSCRIPTIONS} subscriptions"
            )));
        }
        subs.push(Sub {
            conn: conn.clone(),
            sub: a.sub,
            kind: a.kind,
        });
        Ok(())
    }

    /// off('dataChange').
    pub fn unsubscribe(&self, conn: &ConnHandle, a: &api::SubscribeArgs) -> Result<(), KvError> {
        let key = self.key(conn.caller(), &a.store)?;
        let o = self.existing(&key)?;
        lock(&o.subs).retain(|s| !(s.conn.id() == conn.id() && s.sub == a.sub));
        Ok(())
    }
}

/// syncComplete, to every subscriber of the store (whatever it subscribed to).
pub(super) fn notify_sync_complete(o: &OpenStore, result: DeviceSyncResult) {
    let ev = oxh_ipc::encode(&DataChange::SyncComplete {
        store_id: o.desc.store_id.clone(),
        results: vec![result],
    });
    for s in lock(&o.subs).iter() {
        s.conn.push_event(s.sub, &ev);
    }
}
