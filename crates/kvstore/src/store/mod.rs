//! One store on disk: a SQLite file (WAL, `synchronous=FULL`: a write is on disk before the
//! call returns), one row per (partition, key) holding the latest write with its HLC
//! timestamp, origin device and local sequence number; deletes are tombstones (value NULL)
//! until every known peer has acknowledged them.

use crate::api::{EntriesPage, Entry, Query};
use crate::error::KvError;
use crate::hlc::Hlc;
use crate::limits::{SecurityLevel, StoreType};
use crate::sync::{Change, ChangeKind, Record, ReplicaState};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kv(
    part TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB,
    ts INTEGER NOT NULL,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    src TEXT NOT NULL DEFAULT '',
    UNIQUE(part, key)
);
CREATE UNIQUE INDEX IF NOT EXISTS kv_seq ON kv(seq);
CREATE TABLE IF NOT EXISTS peers(device TEXT PRIMARY KEY, epoch BLOB NOT NULL, acked INTEGER NOT NULL);
";

/// Most bytes of entries in one [`EntriesPage`] (one IPC reply is at most 1 MiB).
pub const PAGE_BYTES: usize = 768 * 1024;

fn st(e: rusqlite::Error) -> KvError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            KvError::Corrupted(f.to_string())
        }
        e => KvError::Storage(e.to_string()),
    }
}

/// Physical time for the HLC.
pub fn now_ms() -> u64 {
    oxh_kal::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How a store is (or must be) made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMeta {
    /// Type.
    pub kind: StoreType,
    /// Security level.
    pub level: SecurityLevel,
    /// Auto sync.
    pub auto_sync: bool,
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    meta: StoreMeta,
    epoch: [u8; 16],
    hlc: Hlc,
    seq: u64,
    device: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn random_epoch() -> [u8; 16] {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&t.to_le_bytes());
    }
    b
}

impl Store {
    /// Opens the store at `path` for device `device`. With `create` the store is made if it
    /// is missing; an existing store must match `want`'s type and level (15100002).
    pub fn open(path: &Path, device: &str, want: StoreMeta, create: bool) -> Result<Self, KvError> {
        let exists = path.exists();
        if !exists && !create {
            return Err(KvError::NotFound(format!(
                "store {} does not exist",
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| KvError::Storage(e.to_string()))?;
        }
        let conn = oxh_kal::sqlite::open(path).map_err(|e| KvError::Storage(e.to_string()))?;
        conn.execute_batch(SCHEMA).map_err(st)?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, KvError> {
            conn.query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(st)
        };
        let (meta, epoch) = match (get("kind")?, get("level")?, get("epoch")?) {
            (Some(k), Some(l), Some(e)) => {
                let kind = match k.as_slice() {
                    b"single" => StoreType::SingleVersion,
                    b"device" => StoreType::DeviceCollaboration,
                    _ => return Err(KvError::Corrupted("unknown store type".into())),
                };
                let level = l
                    .first()
                    .and_then(|&n| SecurityLevel::from_u8(n))
                    .ok_or_else(|| KvError::Corrupted("bad security level".into()))?;
                let epoch: [u8; 16] = e
                    .try_into()
                    .map_err(|_| KvError::Corrupted("bad epoch".into()))?;
                let auto_sync = get("auto_sync")?.is_some_and(|v| v == [1]);
                if kind != want.kind || level != want.level {
                    return Err(KvError::OptionsChanged(format!(
                        "the store is a {} store of level {}, opened as {} {}",
                        kind.as_str(),
                        level.as_str(),
                        want.kind.as_str(),
                        want.level.as_str()
                    )));
                }
                (
                    StoreMeta {
                        kind,
                        level,
                        auto_sync,
                    },
                    epoch,
                )
            }
            _ => {
                let epoch = random_epoch();
                let tx = conn.unchecked_transaction().map_err(st)?;
                for (k, v) in [
                    ("kind", want.kind.as_str().as_bytes().to_vec()),
                    ("level", vec![want.level as u8]),
                    ("epoch", epoch.to_vec()),
                    ("auto_sync", vec![u8::from(want.auto_sync)]),
                ] {
                    tx.execute(
                        "INSERT OR REPLACE INTO meta(k, v) VALUES (?1, ?2)",
                        params![k, v],
                    )
                    .map_err(st)?;
                }
                tx.commit().map_err(st)?;
                (want, epoch)
            }
        };
        let (max_ts, max_seq): (i64, i64) = conn
            .query_row(
                "SELECT COALESCE(MAX(ts), 0), COALESCE(MAX(seq), 0) FROM kv",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(st)?;
        let mut s = Self {
            conn,
            path: path.to_path_buf(),
            meta,
            epoch,
            hlc: Hlc::new(max_ts as u64),
            seq: max_seq as u64,
            device: device.to_string(),
        };
        if want.auto_sync != s.meta.auto_sync {
            s.set_auto_sync(want.auto_sync)?;
        }
        Ok(s)
    }

    /// Reads a store's options without opening it for writes (for the service's start-up
    /// scan of auto-sync stores).
    pub fn peek_meta(path: &Path) -> Option<StoreMeta> {
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let get = |k: &str| -> Option<Vec<u8>> {
            conn.query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
                .ok()
        };
        let kind = match get("kind")?.as_slice() {
            b"single" => StoreType::SingleVersion,
            b"device" => StoreType::DeviceCollaboration,
            _ => return None,
        };
        let level = SecurityLevel::from_u8(*get("level")?.first()?)?;
        Some(StoreMeta {
            kind,
            level,
            auto_sync: get("auto_sync").is_some_and(|v| v == [1]),
        })
    }

    fn set_auto_sync(&mut self, on: bool) -> Result<(), KvError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta(k, v) VALUES ('auto_sync', ?1)",
                [vec![u8::from(on)]],
            )
            .map_err(st)?;
        self.meta.auto_sync = on;
        Ok(())
    }

    /// The store's options.
    pub fn meta(&self) -> StoreMeta {
        self.meta
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This device's id.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The partition of this device's writes.
    pub fn local_part(&self) -> &str {
        match self.meta.kind {
            StoreType::SingleVersion => "",
            StoreType::DeviceCollaboration => &self.device,
        }
    }

    /// Local puts (`Some`) and deletes (`None`), committed together. Every op records a row
    /// with a new HLC timestamp, a delete of a key this device holds no value for too: the
    /// key may have a value on a device we have not synced with yet, and only a tombstone
    /// lets the later delete win there by LWW. Such a delete is no visible change, so it
    /// returns no [`Change`] (and succeeds, as OpenHarmony's delete of an absent key does).
    /// Returns the visible changes.
    pub fn write(&mut self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<Vec<Change>, KvError> {
        self.write_at(ops, now_ms())
    }

    /// [`Store::write`] at physical time `now` (ms), so simulations can run on virtual time.
    pub fn write_at(
        &mut self,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        now: u64,
    ) -> Result<Vec<Change>, KvError> {
        let part = self.local_part().to_string();
        let tx = self.conn.transaction().map_err(st)?;
        let mut changes = Vec::with_capacity(ops.len());
        let mut seq = self.seq;
        let mut hlc = self.hlc.clone();
        {
            let mut sel = tx
                .prepare_cached("SELECT value IS NOT NULL FROM kv WHERE part = ?1 AND key = ?2")
                .map_err(st)?;
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO kv(part, key, value, ts, origin, seq, src) VALUES (?1, ?2, ?3, ?4, ?5, ?6, '')
                     ON CONFLICT(part, key) DO UPDATE SET value = excluded.value, ts = excluded.ts,
                     origin = excluded.origin, seq = excluded.seq, src = ''",
                )
                .map_err(st)?;
            for (key, value) in ops {
                let live: Option<bool> = sel
                    .query_row(params![part, key], |r| r.get(0))
                    .optional()
                    .map_err(st)?;
                let live = live.unwrap_or(false);
                let kind = match (live, value.is_some()) {
                    (false, true) => Some(ChangeKind::Insert),
                    (true, true) => Some(ChangeKind::Update),
                    (true, false) => Some(ChangeKind::Delete),
                    // Still recorded below: the tombstone must reach devices that hold a value.
                    (false, false) => None,
                };
                let ts = hlc.now(now);
                seq += 1;
                up.execute(params![
                    part,
                    key,
                    value,
                    ts as i64,
                    self.device,
                    seq as i64
                ])
                .map_err(st)?;
                if let Some(kind) = kind {
                    changes.push(Change {
                        kind,
                        record: Record {
                            part: part.clone(),
                            key,
                            value,
                            ts,
                            origin: self.device.clone(),
                        },
                    });
                }
            }
        }
        tx.commit().map_err(st)?;
        self.seq = seq;
        self.hlc = hlc;
        Ok(changes)
    }

    /// The value of `key` in partition `part`.
    pub fn get(&self, part: &str, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let v: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached("SELECT value FROM kv WHERE part = ?1 AND key = ?2")
            .map_err(st)?
            .query_row(params![part, key], |r| r.get(0))
            .optional()
            .map_err(st)?;
        Ok(v.flatten())
    }

    /// Entries matching `q` (in partition `part`, or all), after `after`, up to a page.
    pub fn entries(
        &self,
        q: &Query,
        part: Option<&str>,
        after: Option<&[u8]>,
    ) -> Result<EntriesPage, KvError> {
        let mut sql = String::from("SELECT part, key, value FROM kv WHERE value IS NOT NULL");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let arg = |v: rusqlite::types::Value, args: &mut Vec<rusqlite::types::Value>| {
            args.push(v);
            format!("?{}", args.len())
        };
        if let Some(p) = part {
            let a = arg(p.to_string().into(), &mut args);
            sql += &format!(" AND part = {a}");
        }
        if let Some(p) = &q.prefix
            && !p.is_empty()
        {
            // Keys are BLOBs: a prefix is a range [p, p+1).
            let a = arg(p.clone().into(), &mut args);
            sql += &format!(" AND key >= {a}");
            if let Some(end) = prefix_end(p) {
                let b = arg(end.into(), &mut args);
                sql += &format!(" AND key < {b}");
            }
        }
        if let Some(k) = &q.equal_to {
            let a = arg(k.clone().into(), &mut args);
            sql += &format!(" AND key = {a}");
        }
        if !q.in_keys.is_empty() {
            let list: Vec<String> = q
                .in_keys
                .iter()
                .map(|k| arg(k.clone().into(), &mut args))
                .collect();
            sql += &format!(" AND key IN ({})", list.join(","));
        }
        if let Some(l) = &q.like {
            let a = arg(l.clone().into(), &mut args);
            sql += &format!(" AND CAST(key AS TEXT) LIKE {a}");
        }
        if let Some(a) = after {
            let x = arg(a.to_vec().into(), &mut args);
            sql += &format!(" AND key {} {x}", if q.desc { "<" } else { ">" });
        }
        sql += if q.desc {
            " ORDER BY key DESC, part"
        } else {
            " ORDER BY key, part"
        };
        if after.is_none() {
            let lim = q.limit.map_or(-1, i64::from);
            sql += &format!(" LIMIT {lim} OFFSET {}", q.offset);
        } else if let Some(l) = q.limit {
            sql += &format!(" LIMIT {l}");
        }
        let mut stmt = self.conn.prepare(&sql).map_err(st)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(st)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut more = false;
        let mut partial = Vec::new();
        while let Some(r) = rows.next().map_err(st)? {
            let mut e = Entry {
                device: r.get(0).map_err(st)?,
                key: r.get(1).map_err(st)?,
                value: r.get(2).map_err(st)?,
            };
            if e.value.len() > crate::api::INLINE_VALUE {
                e.value = Vec::new();
                partial.push(out.len() as u32);
            }
            let n = e.key.len() + e.value.len() + e.device.len() + 16;
            if !out.is_empty() && bytes + n > PAGE_BYTES {
                more = true;
                break;
            }
            bytes += n;
            out.push(e);
        }
        Ok(EntriesPage {
            entries: out,
            more,
            partial,
        })
    }

    /// Drops (locally, without tombstones) what device `dev` wrote: its partition in a
    /// device store, its writes in a single store. Returns the rows removed.
    pub fn remove_device_data(&mut self, dev: &str) -> Result<u64, KvError> {
        let n = match self.meta.kind {
            StoreType::DeviceCollaboration => {
                self.conn.execute("DELETE FROM kv WHERE part = ?1", [dev])
            }
            StoreType::SingleVersion => {
                self.conn.execute("DELETE FROM kv WHERE origin = ?1", [dev])
            }
        }
        .map_err(st)?;
        Ok(n as u64)
    }

    /// Copies the store to `dest` (a consistent snapshot, `VACUUM INTO`).
    pub fn backup(&self, dest: &Path) -> Result<(), KvError> {
        if let Some(d) = dest.parent() {
            std::fs::create_dir_all(d).map_err(|e| KvError::Storage(e.to_string()))?;
        }
        let tmp = dest.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        self.conn
            .execute("VACUUM INTO ?1", [tmp.to_string_lossy().as_ref()])
            .map_err(st)?;
        std::fs::rename(&tmp, dest).map_err(|e| KvError::Storage(e.to_string()))?;
        if let Some(d) = dest.parent()
            && let Ok(f) = std::fs::File::open(d)
        {
            let _ = f.sync_all();
        }
        Ok(())
    }

    /// Makes this device's data what the backup at `src` holds, as new local writes (so that
    /// the restore reaches other devices by sync like any write). Returns the changes.
    pub fn restore(&mut self, src: &Path) -> Result<Vec<Change>, KvError> {
        if !src.exists() {
            return Err(KvError::NotFound("no such backup".into()));
        }
        let b = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(st)?;
        let part = self.local_part().to_string();
        let read =
            |c: &Connection| -> Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>, KvError> {
                let mut s = c
                    .prepare("SELECT key, value FROM kv WHERE part = ?1 AND value IS NOT NULL")
                    .map_err(st)?;
                let rows = s
                    .query_map([&part], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(st)?;
                rows.collect::<Result<_, _>>().map_err(st)
            };
        let want = read(&b)?;
        let have = read(&self.conn)?;
        let mut ops = Vec::new();
        for (k, v) in &want {
            if have.get(k) != Some(v) {
                ops.push((k.clone(), Some(v.clone())));
            }
        }
        for k in have.keys() {
            if !want.contains_key(k) {
                ops.push((k.clone(), None));
            }
        }
        self.write(ops)
    }

    /// Removes tombstones that all of `peers` acknowledged; returns how many.
    pub fn gc_tombstones(&mut self, peers: &[String]) -> Result<u64, KvError> {
        let mut min = u64::MAX;
        for p in peers {
            let acked = self
                .peer(p)
                .map_err(KvError::Storage)?
                .map_or(0, |s| s.acked);
            min = min.min(acked);
        }
        if peers.is_empty() || min == 0 {
            return Ok(0);
        }
        let n = self
            .conn
            .execute(
                "DELETE FROM kv WHERE value IS NULL AND seq <= ?1",
                [min as i64],
            )
            .map_err(st)?;
        Ok(n as u64)
    }

    /// Every row, tombstones included, as [`crate::sync::MemReplica::snapshot`] shows them
    /// (for simulations that hold a store beside memory replicas).
    #[cfg(test)]
    pub(crate) fn snapshot(
        &self,
    ) -> std::collections::BTreeMap<(String, Vec<u8>), crate::sync::Snap> {
        let mut stmt = self
            .conn
            .prepare("SELECT part, key, value, ts, origin FROM kv")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?),
                    (r.get(2)?, r.get::<_, i64>(3)? as u64, r.get(4)?),
                ))
            })
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    /// Row counts (live, tombstones) for dumps.
    pub fn counts(&self) -> (u64, u64) {
        self.conn
            .query_row(
                "SELECT COUNT(value), COUNT(*) - COUNT(value) FROM kv",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .unwrap_or((0, 0))
    }
}

/// The smallest byte string greater than every string starting with `p`.
fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return Some(e);
        }
    }
    None
}

mod replica;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Replica;

    pub(super) fn meta() -> StoreMeta {
        StoreMeta {
            kind: StoreType::SingleVersion,
            level: SecurityLevel::S1,
            auto_sync: false,
        }
    }

    #[test]
    fn writes_survive_reopen_and_options_must_match() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app/s1.db");
        assert_eq!(
            Store::open(&p, "dev", meta(), false).unwrap_err().code(),
            15_100_004
        );
        let mut s = Store::open(&p, "dev", meta(), true).unwrap();
        let c = s
            .write(vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"b".to_vec(), Some(b"2".to_vec())),
            ])
            .unwrap();
        assert_eq!(c.len(), 2);
        let c = s
            .write(vec![(b"a".to_vec(), None), (b"zz".to_vec(), None)])
            .unwrap();
        assert_eq!(c.len(), 1, "deleting a missing key is no visible change");
        let ts_before = s.hlc.last();
        drop(s);
        let s = Store::open(&p, "dev", meta(), false).unwrap();
        assert_eq!(s.get("", b"a").unwrap(), None);
        assert_eq!(s.get("", b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.counts(), (1, 2), "both deletes left a tombstone");
        assert!(s.hlc.last() >= ts_before);
        drop(s);
        let mut other = meta();
        other.kind = StoreType::DeviceCollaboration;
        assert_eq!(
            Store::open(&p, "dev", other, true).unwrap_err().code(),
            15_100_002
        );
        let mut sl = meta();
        sl.level = SecurityLevel::S2;
        assert_eq!(
            Store::open(&p, "dev", sl, true).unwrap_err().code(),
            15_100_002
        );
    }

    #[test]
    fn queries_prefix_like_in_order_limit_and_paging() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(&d.path().join("s.db"), "dev", meta(), true).unwrap();
        let ops = ["a1", "a2", "a3", "b1", "b\u{ff}"]
            .iter()
            .map(|k| (k.as_bytes().to_vec(), Some(k.as_bytes().to_vec())))
            .collect();
        s.write(ops).unwrap();
        let keys = |p: EntriesPage| {
            p.entries
                .into_iter()
                .map(|e| String::from_utf8(e.key).unwrap())
                .collect::<Vec<_>>()
        };
        let q = Query {
            prefix: Some(b"a".to_vec()),
            ..Default::default()
        };
        assert_eq!(keys(s.entries(&q, None, None).unwrap()), ["a1", "a2", "a3"]);
        let q = Query {
            like: Some("%1".into()),
            desc: true,
            ..Default::default()
        };
        assert_eq!(keys(s.entries(&q, None, None).unwrap()), ["b1", "a1"]);
        let q = Query {
            in_keys: vec![b"a2".to_vec(), b"b1".to_vec(), b"x".to_vec()],
            ..Default::default()
        };
        assert_eq!(keys(s.entries(&q, None, None).unwrap()), ["a2", "b1"]);
        let q = Query {
            limit: Some(2),
            offset: 1,
            ..Default::default()
        };
        assert_eq!(keys(s.entries(&q, None, None).unwrap()), ["a2", "a3"]);
        let q = Query::default();
        assert_eq!(
            keys(s.entries(&q, None, Some(b"a3")).unwrap()),
            ["b1", "b\u{ff}"]
        );
    }

    #[test]
    fn remove_device_data_drops_only_that_devices_writes() {
        let d = tempfile::tempdir().unwrap();
        let mut m = meta();
        m.kind = StoreType::DeviceCollaboration;
        let mut s = Store::open(&d.path().join("s.db"), "me", m, true).unwrap();
        s.write(vec![(b"k".to_vec(), Some(b"mine".to_vec()))])
            .unwrap();
        let theirs = Record {
            part: "peer".into(),
            key: b"k".to_vec(),
            value: Some(b"theirs".to_vec()),
            ts: 1,
            origin: "peer".into(),
        };
        assert_eq!(s.apply("peer", vec![theirs]).unwrap().len(), 1);
        assert_eq!(s.get("peer", b"k").unwrap(), Some(b"theirs".to_vec()));
        assert_eq!(s.remove_device_data("peer").unwrap(), 1);
        assert_eq!(s.get("peer", b"k").unwrap(), None);
        assert_eq!(s.get("me", b"k").unwrap(), Some(b"mine".to_vec()));
    }

    #[test]
    fn pages_stay_under_the_ipc_limit() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(&d.path().join("s.db"), "dev", meta(), true).unwrap();
        for i in 0..4u8 {
            s.write(vec![(vec![b'k', i], Some(vec![0; 300 * 1024]))])
                .unwrap();
        }
        let p = s.entries(&Query::default(), None, None).unwrap();
        assert!(p.more && p.entries.len() == 2, "{}", p.entries.len());
        let p2 = s
            .entries(&Query::default(), None, Some(&p.entries[1].key))
            .unwrap();
        assert_eq!(p2.entries.len(), 2);
        assert!(!p2.more);
    }

    #[test]
    fn backup_and_restore_are_local_writes() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(&d.path().join("s.db"), "dev", meta(), true).unwrap();
        s.write(vec![(b"a".to_vec(), Some(b"1".to_vec()))]).unwrap();
        let bk = d.path().join("backup/b1.bak");
        s.backup(&bk).unwrap();
        s.write(vec![
            (b"a".to_vec(), Some(b"2".to_vec())),
            (b"n".to_vec(), Some(b"x".to_vec())),
        ])
        .unwrap();
        let c = s.restore(&bk).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(s.get("", b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get("", b"n").unwrap(), None);
        assert_eq!(
            s.restore(&d.path().join("nope")).unwrap_err().code(),
            15_100_004
        );
    }
}
