//! The store as a sync replica: what changed since a sequence number, applying a peer's
//! writes (the later HLC timestamp wins), and each peer's acknowledgement.

use super::Store;
use crate::hlc::{Version, wins};
use crate::sync::{Change, ChangeKind, PeerState, Record, Replica, ReplicaState};
use rusqlite::{OptionalExtension, params};

fn s(e: rusqlite::Error) -> String {
    e.to_string()
}

impl ReplicaState for Store {
    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    fn peer(&self, peer: &str) -> Result<Option<PeerState>, String> {
        self.conn
            .prepare_cached("SELECT epoch, acked FROM peers WHERE device = ?1")
            .map_err(s)?
            .query_row([peer], |r| {
                let e: Vec<u8> = r.get(0)?;
                let a: i64 = r.get(1)?;
                Ok((e, a))
            })
            .optional()
            .map_err(s)
            .map(|o| {
                o.map(|(e, a)| PeerState {
                    epoch: e.try_into().unwrap_or_default(),
                    acked: a as u64,
                })
            })
    }

    fn set_peer(&mut self, peer: &str, st: PeerState) -> Result<(), String> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO peers(device, epoch, acked) VALUES (?1, ?2, ?3)",
            )
            .map_err(s)?
            .execute(params![peer, st.epoch.to_vec(), st.acked as i64])
            .map_err(s)?;
        Ok(())
    }

    fn reset_peer(&mut self, peer: &str, epoch: [u8; 16]) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(s)?;
        tx.execute(
            "INSERT OR REPLACE INTO peers(device, epoch, acked) VALUES (?1, ?2, 0)",
            params![peer, epoch.to_vec()],
        )
        .map_err(s)?;
        tx.execute("UPDATE kv SET src = '' WHERE src = ?1", [peer])
            .map_err(s)?;
        tx.commit().map_err(s)
    }
}

impl Replica for Store {
    fn changes_since(
        &mut self,
        after: u64,
        skip_src: &str,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Record>, u64), String> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT part, key, value, ts, origin, seq, src FROM kv WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(s)?;
        let mut rows = stmt
            .query(params![after as i64, max_entries as i64])
            .map_err(s)?;
        let mut out = Vec::new();
        let mut upto = after;
        let mut bytes = 0usize;
        while let Some(r) = rows.next().map_err(s)? {
            if bytes >= max_bytes && !out.is_empty() {
                break;
            }
            let seq: i64 = r.get(5).map_err(s)?;
            upto = seq as u64;
            let src: String = r.get(6).map_err(s)?;
            if src == skip_src {
                continue;
            }
            let rec = Record {
                part: r.get(0).map_err(s)?,
                key: r.get(1).map_err(s)?,
                value: r.get(2).map_err(s)?,
                ts: r.get::<_, i64>(3).map_err(s)? as u64,
                origin: r.get(4).map_err(s)?,
            };
            bytes += rec.key.len() + rec.value.as_ref().map_or(0, Vec::len);
            out.push(rec);
        }
        Ok((out, upto))
    }

    fn apply(&mut self, src: &str, recs: Vec<Record>) -> Result<Vec<Change>, String> {
        let tx = self.conn.transaction().map_err(s)?;
        let mut changes = Vec::new();
        let mut seq = self.seq;
        let mut hlc = self.hlc.clone();
        {
            let mut sel = tx
                .prepare_cached(
                    "SELECT ts, origin, value IS NOT NULL FROM kv WHERE part = ?1 AND key = ?2",
                )
                .map_err(s)?;
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO kv(part, key, value, ts, origin, seq, src) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(part, key) DO UPDATE SET value = excluded.value, ts = excluded.ts,
                     origin = excluded.origin, seq = excluded.seq, src = excluded.src",
                )
                .map_err(s)?;
            for rec in recs {
                hlc.observe(rec.ts);
                let cur: Option<(i64, String, bool)> = sel
                    .query_row(params![rec.part, rec.key], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(s)?;
                let live = match &cur {
                    Some((ts, origin, live)) => {
                        if !wins(
                            Version {
                                ts: rec.ts,
                                device: &rec.origin,
                            },
                            Version {
                                ts: *ts as u64,
                                device: origin,
                            },
                        ) {
                            continue;
                        }
                        *live
                    }
                    None => false,
                };
                seq += 1;
                up.execute(params![
                    rec.part,
                    rec.key,
                    rec.value,
                    rec.ts as i64,
                    rec.origin,
                    seq as i64,
                    src
                ])
                .map_err(s)?;
                let kind = match (live, rec.value.is_some()) {
                    (false, true) => Some(ChangeKind::Insert),
                    (true, true) => Some(ChangeKind::Update),
                    (true, false) => Some(ChangeKind::Delete),
                    (false, false) => None,
                };
                if let Some(kind) = kind {
                    changes.push(Change { kind, record: rec });
                }
            }
        }
        tx.commit().map_err(s)?;
        self.seq = seq;
        self.hlc = hlc;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::now_ms;
    use super::super::tests::meta;
    use super::*;
    use crate::limits::{SecurityLevel, StoreType};
    use crate::sync::{Event, MemReplica, SyncConfig, SyncEngine, SyncMode};
    use crate::wire::{StoreDesc, SyncStatus};

    /// Runs a sync round from `a` with `b` (device "B") to its end.
    fn sync_with(a: &mut Store, b: &mut MemReplica, mode: SyncMode) -> Option<SyncStatus> {
        let desc = StoreDesc {
            bundle: "x".into(),
            store_id: "s".into(),
            kind: StoreType::SingleVersion,
            level: SecurityLevel::S1,
        };
        let mut ea = SyncEngine::new(desc.clone(), 1, SyncConfig::default());
        let mut eb = SyncEngine::new(desc, 1, SyncConfig::default());
        let mut out = Vec::new();
        let req = ea.sync(a, "B", mode, 0, &mut out);
        let mut done = None;
        for _ in 0..100 {
            let evs = std::mem::take(&mut out);
            if evs.is_empty() {
                break;
            }
            for e in evs {
                match e {
                    Event::Send { to, msg } if to == "B" => eb.handle(b, "A", msg, 0, &mut out),
                    Event::Send { msg, .. } => ea.handle(a, "B", msg, 0, &mut out),
                    Event::Complete { req: r, status, .. } if r == req => done = Some(status),
                    _ => {}
                }
            }
        }
        done
    }

    /// Regression (hardening item 4, "a delete can be undone by sync"): deleting a key this
    /// device never held recorded nothing, so the value written elsewhere came back by sync
    /// although the delete was the later write.
    #[test]
    fn a_delete_of_an_absent_key_records_a_tombstone_that_syncs() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Store::open(&d.path().join("a.db"), "A", meta(), true).unwrap();
        let mut b = MemReplica::new("B", [7; 16], false);
        // B wrote the key first (physical time 1000); A has never seen it.
        b.put(b"k", Some(b"v".to_vec()), 1000);
        let c = a.write_at(vec![(b"k".to_vec(), None)], 2000).unwrap();
        assert!(c.is_empty(), "no visible change");
        assert_eq!(a.counts(), (0, 1), "but a tombstone row");
        let (recs, upto) = a.changes_since(0, "B", 100, 1 << 20).unwrap();
        assert_eq!(upto, 1);
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].key.as_slice(), recs[0].value.as_ref()),
            (&b"k"[..], None)
        );
        assert!(recs[0].ts > 1000 << 16, "{}", recs[0].ts);
        // GC keeps it until B has acknowledged it.
        assert_eq!(a.gc_tombstones(&["B".into()]).unwrap(), 0);
        assert_eq!(
            sync_with(&mut a, &mut b, SyncMode::PushPull),
            Some(SyncStatus::Success)
        );
        assert_eq!(b.get("", b"k"), None, "the later delete wins on B");
        assert_eq!(a.get("", b"k").unwrap(), None, "and stays on A");
        assert_eq!(a.gc_tombstones(&["B".into(), "C".into()]).unwrap(), 0);
        assert_eq!(a.gc_tombstones(&["B".into()]).unwrap(), 1);
        assert_eq!(a.counts(), (0, 0));
    }

    #[test]
    fn sqlite_store_syncs_with_a_memory_replica_and_collects_tombstones() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Store::open(&d.path().join("a.db"), "A", meta(), true).unwrap();
        let mut b = MemReplica::new("B", [7; 16], false);
        a.write(vec![(b"k".to_vec(), Some(b"v".to_vec()))]).unwrap();
        a.write(vec![(b"k2".to_vec(), Some(b"v".to_vec()))])
            .unwrap();
        a.write(vec![(b"k2".to_vec(), None)]).unwrap();
        b.put(b"m", Some(b"w".to_vec()), now_ms());
        let done = sync_with(&mut a, &mut b, SyncMode::PushPull);
        assert_eq!(done, Some(SyncStatus::Success));
        assert_eq!(a.get("", b"m").unwrap(), Some(b"w".to_vec()));
        assert_eq!(b.get("", b"k"), Some(&b"v"[..]));
        assert_eq!(a.gc_tombstones(&["B".into()]).unwrap(), 1);
        assert_eq!(a.gc_tombstones(&["B".into(), "C".into()]).unwrap(), 0);
    }
}
