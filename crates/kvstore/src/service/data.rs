//! Reads, writes, transactions and large-value uploads: the data methods and their argument
//! checks.

use super::{KvService, OpenStore, lock};
use crate::api::{self, EntriesPage, Query};
use crate::error::KvError;
use crate::limits::{self, StoreType};
use oxh_ipc::{Caller, ConnHandle};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl KvService {
    fn check_ops(kind: StoreType, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), KvError> {
        limits::check_batch(ops.len())?;
        for (k, v) in ops {
            limits::check_key(kind, k)?;
            if let Some(v) = v {
                limits::check_value(v)?;
            }
        }
        Ok(())
    }

    /// put / putBatch / delete / deleteBatch: validated, then committed (or added to the
    /// caller's open transaction).
    pub fn write(
        &self,
        caller: &Caller,
        conn: u64,
        r: &api::StoreRef,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), KvError> {
        let key = self.key(caller, r)?;
        let o = self.existing(&key)?;
        Self::check_ops(o.desc.kind, &ops)?;
        if let Some(t) = lock(&self.txns).get_mut(&(conn, key.clone())) {
            t.extend(ops);
            return Ok(());
        }
        self.commit_ops(&o, ops)
    }

    fn commit_ops(
        &self,
        o: &Arc<OpenStore>,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), KvError> {
        let recorded = !ops.is_empty();
        let changes = lock(&o.store).write(ops)?;
        // Every op is recorded, a delete of a key without a value too (its tombstone must
        // reach the devices that hold one), so auto sync pushes even with no visible change.
        if recorded {
            o.dirty.store(true, Ordering::Relaxed);
        }
        if !changes.is_empty() {
            self.notify(o, &self.cfg.device_id, false, &changes);
        }
        Ok(())
    }

    /// Appends a part of a large value to upload `upload` of connection `conn`.
    pub fn append_value(&self, conn: u64, a: &api::AppendArgs) -> Result<u64, KvError> {
        if a.data.len() > api::VALUE_PART {
            return Err(KvError::invalid(format!(
                "a value part holds at most {} bytes",
                api::VALUE_PART
            )));
        }
        let mut st = lock(&self.staged);
        if !st.contains_key(&(conn, a.upload)) && st.keys().filter(|k| k.0 == conn).count() >= 4 {
            return Err(KvError::OverMaxLimits(
                "at most 4 uploads per connection".into(),
            ));
        }
        let buf = st.entry((conn, a.upload)).or_default();
        if buf.len() + a.data.len() > limits::MAX_VALUE_LENGTH {
            st.remove(&(conn, a.upload));
            return Err(KvError::invalid(format!(
                "value exceeds the {}-byte limit",
                limits::MAX_VALUE_LENGTH
            )));
        }
        buf.extend_from_slice(&a.data);
        Ok(buf.len() as u64)
    }

    /// Puts the value staged in upload `a.upload`.
    pub fn put_staged(
        &self,
        caller: &Caller,
        conn: u64,
        a: &api::PutStagedArgs,
    ) -> Result<(), KvError> {
        let v = lock(&self.staged)
            .remove(&(conn, a.upload))
            .ok_or_else(|| KvError::invalid("no such upload"))?;
        self.write(caller, conn, &a.store, vec![(a.key.clone(), Some(v))])
    }

    /// A part of a value, from `offset`.
    pub fn get_part(
        &self,
        caller: &Caller,
        a: &api::GetPartArgs,
    ) -> Result<api::ValuePart, KvError> {
        let v = self.get(caller, &a.get)?;
        let from = (a.offset as usize).min(v.len());
        let to = (from + api::VALUE_PART).min(v.len());
        Ok(api::ValuePart {
            total: v.len() as u64,
            data: v[from..to].to_vec(),
        })
    }

    /// get.
    pub fn get(&self, caller: &Caller, a: &api::GetArgs) -> Result<Vec<u8>, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        limits::check_key(o.desc.kind, &a.key)?;
        let s = lock(&o.store);
        let part = match (o.desc.kind, &a.device) {
            (StoreType::SingleVersion, _) => String::new(),
            (StoreType::DeviceCollaboration, Some(d)) => self.resolve_device(d),
            (StoreType::DeviceCollaboration, None) => s.local_part().to_string(),
        };
        s.get(&part, &a.key)?.ok_or_else(|| {
            KvError::NotFound(format!(
                "no value for key {:?}",
                String::from_utf8_lossy(&a.key)
            ))
        })
    }

    /// getEntries.
    pub fn entries(&self, caller: &Caller, a: &api::EntriesArgs) -> Result<EntriesPage, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        check_query(&a.query)?;
        let part = match (o.desc.kind, &a.device) {
            (StoreType::DeviceCollaboration, Some(d)) => Some(self.resolve_device(d)),
            _ => None,
        };
        lock(&o.store).entries(&a.query, part.as_deref(), a.after.as_deref())
    }

    /// startTransaction / commit / rollback.
    pub fn transaction(
        &self,
        conn: &ConnHandle,
        r: &api::StoreRef,
        code: u32,
    ) -> Result<(), KvError> {
        let key = self.key(conn.caller(), r)?;
        let o = self.existing(&key)?;
        let tk = (conn.id(), key);
        match code {
            api::START_TRANSACTION => {
                let mut t = lock(&self.txns);
                if t.contains_key(&tk) {
                    return Err(KvError::invalid(
                        "a transaction is already open on this store",
                    ));
                }
                t.insert(tk, Vec::new());
                Ok(())
            }
            api::COMMIT => {
                let ops = lock(&self.txns)
                    .remove(&tk)
                    .ok_or_else(|| KvError::invalid("no transaction is open on this store"))?;
                if ops.is_empty() {
                    return Ok(());
                }
                self.commit_ops(&o, ops)
            }
            _ => {
                lock(&self.txns)
                    .remove(&tk)
                    .ok_or_else(|| KvError::invalid("no transaction is open on this store"))?;
                Ok(())
            }
        }
    }

    /// removeDeviceData.
    pub fn remove_device_data(
        &self,
        caller: &Caller,
        a: &api::RemoveDeviceDataArgs,
    ) -> Result<u64, KvError> {
        let key = self.key(caller, &a.store)?;
        let o = self.existing(&key)?;
        let dev = self.resolve_device(&a.device);
        if dev == self.cfg.device_id {
            return Err(KvError::invalid(
                "removeDeviceData takes another device, not this one",
            ));
        }
        lock(&o.store).remove_device_data(&dev)
    }

    /// closeKVStore: the caller's subscriptions and transaction on it end.
    pub fn close(&self, conn: &ConnHandle, r: &api::StoreRef) -> Result<(), KvError> {
        let key = self.key(conn.caller(), r)?;
        let o = self.existing(&key)?;
        lock(&o.subs).retain(|s| s.conn.id() != conn.id());
        lock(&self.txns).remove(&(conn.id(), key));
        Ok(())
    }
}

/// Checks a query's keys and sizes.
fn check_query(q: &Query) -> Result<(), KvError> {
    for k in q
        .prefix
        .iter()
        .chain(q.equal_to.iter())
        .chain(q.in_keys.iter())
    {
        if k.len() > limits::MAX_KEY_LENGTH {
            return Err(KvError::invalid("a key in the query exceeds 1024 bytes"));
        }
    }
    if q.in_keys.len() > limits::MAX_BATCH_SIZE {
        return Err(KvError::invalid("inKeys takes at most 128 keys"));
    }
    if q.like
        .as_ref()
        .is_some_and(|l| l.len() > limits::MAX_KEY_LENGTH)
    {
        return Err(KvError::invalid("like pattern exceeds 1024 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OpenArgs, Options};
    use crate::service::test_util::{caller, sref, svc};
    use oxh_ipc::TokenType;

    /// Regression (hardening item 4): delete and deleteBatch of keys this device holds no
    /// value for succeed, leave tombstones, and mark the store for auto sync, so that the
    /// deletes reach the devices that hold those keys.
    #[test]
    fn deletes_of_absent_keys_succeed_and_are_recorded_for_sync() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path());
        let sh = caller(TokenType::Shell, 0);
        let r = sref(Some("com.a"));
        s.get_kv_store(
            &sh,
            &OpenArgs {
                store: r.clone(),
                options: Options {
                    auto_sync: true,
                    ..Options::default()
                },
            },
        )
        .unwrap();
        let o = s.existing(&("com.a".into(), "s".into())).unwrap();
        s.write(&sh, 1, &r, vec![(b"gone".to_vec(), None)]).unwrap();
        assert!(o.dirty.swap(false, Ordering::Relaxed), "delete");
        assert_eq!(lock(&o.store).counts(), (0, 1));
        s.write(&sh, 1, &r, vec![(b"here".to_vec(), Some(b"v".to_vec()))])
            .unwrap();
        o.dirty.store(false, Ordering::Relaxed);
        let batch = vec![(b"here".to_vec(), None), (b"never".to_vec(), None)];
        s.write(&sh, 1, &r, batch).unwrap();
        assert!(o.dirty.load(Ordering::Relaxed), "deleteBatch");
        assert_eq!(lock(&o.store).counts(), (0, 3));
    }
}
