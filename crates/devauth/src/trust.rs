//! The trusted-device store: every device this one has bound with, by udid and by key.
//!
//! SQLite (WAL, `synchronous = FULL`), so that a binding acknowledged to the user survives
//! `kill -9` and power loss. Beside it an in-memory snapshot, updated after each commit, that
//! the TLS verifier can ask on every handshake without touching the disk or blocking on a
//! writer for long.
//!
//! Every entry keeps the invariant `udid == hex SHA-256(public_key)`, checked on write and
//! again on load, so that a udid can never be pinned to a key it was not derived from.
//!
//! Schema history: the `advert_key` column came with the rotating mDNS ids; [`TrustStore::open`]
//! adds it to stores made before, where it stays NULL until the device binds again (or tells
//! its key over a pinned connection, see [`TrustStore::set_advert_key`]).

use crate::{ADVERT_KEY_LEN, AdvertKey, udid_of};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A device this one is bound with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    /// Hex SHA-256 of `public_key`.
    pub udid: String,
    /// Its long-term Ed25519 key, which its TLS certificate must carry.
    pub public_key: [u8; 32],
    /// Name it announced when binding.
    pub name: String,
    /// Device type name.
    pub device_type: String,
    /// OpenHarmony DmDeviceType id.
    pub device_type_id: u16,
    /// When it was bound, unix seconds.
    pub bound_at: u64,
    /// Its advert identity key, to recognise its rotating adverts; `None` for a device bound
    /// before advert keys existed.
    pub advert_key: Option<AdvertKey>,
}

impl TrustedDevice {
    /// Checks the udid-key invariant and that the key is an Ed25519 point.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.udid != udid_of(&self.public_key) {
            return Err(StoreError::Invalid(format!(
                "udid {} is not the hex SHA-256 of the device's public key",
                self.udid
            )));
        }
        if ed25519_dalek::VerifyingKey::from_bytes(&self.public_key).is_err() {
            return Err(StoreError::Invalid(
                "public key is not a valid Ed25519 key".into(),
            ));
        }
        if self.bound_at > i64::MAX as u64 {
            return Err(StoreError::Invalid("bound_at out of range".into()));
        }
        Ok(())
    }
}

/// Errors of the trust store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The entry breaks the store's invariants; nothing was written.
    #[error("invalid trusted device: {0}")]
    Invalid(String),
    /// SQLite failed.
    #[error("trust store {path}: {source}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// The database holds a row that breaks the invariants (edited or damaged by hand).
    #[error("trust store {path} is corrupt: {reason}")]
    Corrupt {
        /// Database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory or file could not be prepared.
    #[error("trust store {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl StoreError {
    /// OpenHarmony code: 401 for a bad entry, else DM's 11600101 (function failed).
    pub fn code(&self) -> i32 {
        match self {
            StoreError::Invalid(_) => oxh_ipc::code::INVALID_PARAM,
            _ => crate::bind::code::DM_ERR_FAILED,
        }
    }
}

/// The trusted keys as of the last commit, shared with the TLS verifier: cheap to clone, cheap
/// to ask, never blocks on SQLite.
#[derive(Debug, Clone, Default)]
pub struct TrustSnapshot(Arc<RwLock<HashMap<[u8; 32], TrustedDevice>>>);

impl TrustSnapshot {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], TrustedDevice>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], TrustedDevice>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a certificate with this key belongs to a bound device.
    pub fn is_trusted(&self, public_key: &[u8; 32]) -> bool {
        self.read().contains_key(public_key)
    }

    /// The bound device with this key.
    pub fn get(&self, public_key: &[u8; 32]) -> Option<TrustedDevice> {
        self.read().get(public_key).cloned()
    }

    /// The keys of the bound devices.
    pub fn keys(&self) -> Vec<[u8; 32]> {
        self.read().keys().copied().collect()
    }

    /// Number of bound devices.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no device is bound.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

/// The SQLite store of trusted devices (the daemon's `<data-dir>/device/trust.db`).
#[derive(Debug)]
pub struct TrustStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    snapshot: TrustSnapshot,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trusted_device (
    udid           TEXT PRIMARY KEY NOT NULL,
    public_key     BLOB NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    device_type    TEXT NOT NULL,
    device_type_id INTEGER NOT NULL,
    bound_at       INTEGER NOT NULL,
    advert_key     BLOB
) STRICT;
";

/// Brings a store made before the `advert_key` column up to date (idempotent).
const MIGRATE_ADVERT_KEY: &str = "ALTER TABLE trusted_device ADD COLUMN advert_key BLOB";

const COLUMNS: &str = "udid, public_key, name, device_type, device_type_id, bound_at, advert_key";

type Row = (String, Vec<u8>, String, String, i64, i64, Option<Vec<u8>>);

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

impl TrustStore {
    /// Opens (creating if needed) the store at `path`, and loads the snapshot. A row that
    /// breaks the udid-key invariant fails the open rather than being trusted.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sq = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = oxh_kal::sqlite::open(path).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            )?;
        }
        conn.execute_batch(SCHEMA).map_err(sq)?;
        let has_advert_key: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('trusted_device') WHERE name = 'advert_key'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sq)?
            > 0;
        if !has_advert_key {
            conn.execute_batch(MIGRATE_ADVERT_KEY).map_err(sq)?;
        }
        let store = Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            snapshot: TrustSnapshot::default(),
        };
        let all = store.list()?;
        *store.snapshot.write() = all.into_iter().map(|d| (d.public_key, d)).collect();
        Ok(store)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn to_device(&self, row: Row) -> Result<TrustedDevice, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let (udid, key, name, device_type, type_id, bound_at, advert_key) = row;
        let public_key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| corrupt(format!("{udid}: public key is {} bytes", key.len())))?;
        let device_type_id = u16::try_from(type_id)
            .map_err(|_| corrupt(format!("{udid}: device type id {type_id}")))?;
        let bound_at =
            u64::try_from(bound_at).map_err(|_| corrupt(format!("{udid}: bound_at {bound_at}")))?;
        let advert_key = advert_key
            .map(|k| {
                <[u8; ADVERT_KEY_LEN]>::try_from(k.as_slice())
                    .map(AdvertKey)
                    .map_err(|_| corrupt(format!("{udid}: advert key is {} bytes", k.len())))
            })
            .transpose()?;
        let d = TrustedDevice {
            udid,
            public_key,
            name,
            device_type,
            device_type_id,
            bound_at,
            advert_key,
        };
        d.validate()
            .map_err(|e| corrupt(format!("{}: {e}", d.udid)))?;
        Ok(d)
    }

    /// Adds a bound device, replacing an earlier entry for the same device. Durable when it
    /// returns.
    pub fn add(&self, dev: &TrustedDevice) -> Result<(), StoreError> {
        dev.validate()?;
        let conn = self.conn();
        conn.execute(
            &format!(
                "INSERT OR REPLACE INTO trusted_device ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            params![
                dev.udid,
                &dev.public_key[..],
                dev.name,
                dev.device_type,
                i64::from(dev.device_type_id),
                dev.bound_at as i64,
                dev.advert_key.as_ref().map(|k| &k.0[..]),
            ],
        )
        .map_err(self.sq())?;
        // Updated while the connection is held, so snapshot updates follow commit order.
        self.snapshot.write().insert(dev.public_key, dev.clone());
        Ok(())
    }

    /// Records the advert key that a bound device told over a connection pinned to its key
    /// (how records from before advert keys learn one). Returns whether the device is bound.
    pub fn set_advert_key(&self, udid: &str, key: AdvertKey) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE trusted_device SET advert_key = ?2 WHERE udid = ?1",
                params![udid, &key.0[..]],
            )
            .map_err(self.sq())?;
        let mut snap = self.snapshot.write();
        for d in snap.values_mut().filter(|d| d.udid == udid) {
            d.advert_key = Some(key);
        }
        Ok(n > 0)
    }

    /// Removes (unbinds) a device; returns whether it was there.
    pub fn remove(&self, udid: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        let key: Option<Vec<u8>> = conn
            .query_row(
                "DELETE FROM trusted_device WHERE udid = ?1 RETURNING public_key",
                [udid],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?;
        let mut snap = self.snapshot.write();
        match key {
            Some(k) => {
                if let Ok(k) = <[u8; 32]>::try_from(k.as_slice()) {
                    snap.remove(&k);
                }
                // Belt and braces: drop anything else filed under this udid.
                snap.retain(|_, d| d.udid != udid);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The bound device with this udid.
    pub fn get(&self, udid: &str) -> Result<Option<TrustedDevice>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM trusted_device WHERE udid = ?1"),
                [udid],
                read_row,
            )
            .optional()
            .map_err(self.sq())?;
        row.map(|r| self.to_device(r)).transpose()
    }

    /// The bound device with this public key.
    pub fn find_by_key(&self, public_key: &[u8; 32]) -> Result<Option<TrustedDevice>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM trusted_device WHERE public_key = ?1"),
                [&public_key[..]],
                read_row,
            )
            .optional()
            .map_err(self.sq())?;
        row.map(|r| self.to_device(r)).transpose()
    }

    /// All bound devices, oldest binding first.
    pub fn list(&self) -> Result<Vec<TrustedDevice>, StoreError> {
        let rows: Vec<Row> = {
            let conn = self.conn();
            let mut st = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM trusted_device ORDER BY bound_at, udid"
                ))
                .map_err(self.sq())?;
            st.query_map([], read_row)
                .map_err(self.sq())?
                .collect::<rusqlite::Result<_>>()
                .map_err(self.sq())?
        };
        rows.into_iter().map(|r| self.to_device(r)).collect()
    }

    /// The shared in-memory view for the TLS verifier; stays current with later writes.
    pub fn snapshot(&self) -> TrustSnapshot {
        self.snapshot.clone()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn device(seed: u8, name: &str, bound_at: u64) -> TrustedDevice {
        let pk = SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes();
        TrustedDevice {
            udid: udid_of(&pk),
            public_key: pk,
            name: name.into(),
            device_type: "tv".into(),
            device_type_id: 0x9C,
            bound_at,
            advert_key: Some(AdvertKey([seed; 32])),
        }
    }

    #[test]
    fn add_get_find_list_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device/trust.db");
        let s = TrustStore::open(&path).unwrap();
        let snap = s.snapshot();
        let a = device(1, "kitchen", 200);
        let b = device(2, "office", 100);
        s.add(&a).unwrap();
        s.add(&b).unwrap();
        assert!(snap.is_trusted(&a.public_key) && snap.is_trusted(&b.public_key));
        assert_eq!(s.get(&a.udid).unwrap().as_ref(), Some(&a));
        assert_eq!(s.find_by_key(&b.public_key).unwrap().as_ref(), Some(&b));
        assert_eq!(s.list().unwrap(), vec![b.clone(), a.clone()]);
        // Replace: same device, new name.
        let a2 = TrustedDevice {
            name: "living room".into(),
            bound_at: 300,
            ..a.clone()
        };
        s.add(&a2).unwrap();
        assert_eq!(s.list().unwrap().len(), 2);
        assert_eq!(snap.get(&a.public_key).unwrap().name, "living room");
        assert!(s.remove(&b.udid).unwrap());
        assert!(!s.remove(&b.udid).unwrap());
        assert!(!snap.is_trusted(&b.public_key));
        assert_eq!(s.get(&b.udid).unwrap(), None);
        drop(s);

        let s = TrustStore::open(&path).unwrap();
        assert_eq!(s.list().unwrap(), vec![a2.clone()]);
        assert!(s.snapshot().is_trusted(&a.public_key));
        assert_eq!(s.snapshot().len(), 1);
        let mode: String = s
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = s
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn udid_must_be_hash_of_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = TrustStore::open(&dir.path().join("trust.db")).unwrap();
        let mut d = device(3, "x", 1);
        d.udid = device(4, "y", 1).udid;
        let e = s.add(&d).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
        assert_eq!(e.code(), 401);
        assert!(s.list().unwrap().is_empty());
        assert!(s.snapshot().is_empty());
    }

    #[test]
    fn a_tampered_row_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.db");
        let s = TrustStore::open(&path).unwrap();
        let d = device(5, "x", 1);
        s.add(&d).unwrap();
        let other = device(6, "y", 1);
        s.conn()
            .execute(
                "UPDATE trusted_device SET public_key = ?1",
                [&other.public_key[..]],
            )
            .unwrap();
        assert!(matches!(s.get(&d.udid), Err(StoreError::Corrupt { .. })));
        drop(s);
        assert!(matches!(
            TrustStore::open(&path),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_store_from_before_advert_keys_is_migrated_and_keeps_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.db");
        let d = device(7, "old", 1);
        {
            // The schema as it was, with one device bound then.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE trusted_device (
                    udid TEXT PRIMARY KEY NOT NULL, public_key BLOB NOT NULL UNIQUE,
                    name TEXT NOT NULL, device_type TEXT NOT NULL,
                    device_type_id INTEGER NOT NULL, bound_at INTEGER NOT NULL) STRICT;",
            )
            .unwrap();
            c.execute(
                "INSERT INTO trusted_device VALUES (?1, ?2, 'old', 'tv', 156, 1)",
                params![d.udid, &d.public_key[..]],
            )
            .unwrap();
        }
        let s = TrustStore::open(&path).unwrap();
        let got = s.get(&d.udid).unwrap().unwrap();
        assert_eq!(got.advert_key, None);
        assert_eq!(
            got,
            TrustedDevice {
                advert_key: None,
                ..d.clone()
            }
        );
        // It learns the key later, durably, and the snapshot follows.
        assert!(s.set_advert_key(&d.udid, AdvertKey([9; 32])).unwrap());
        assert!(
            !s.set_advert_key(&device(8, "x", 1).udid, AdvertKey([9; 32]))
                .unwrap()
        );
        assert_eq!(
            s.snapshot().get(&d.public_key).unwrap().advert_key,
            Some(AdvertKey([9; 32]))
        );
        drop(s);
        let s = TrustStore::open(&path).unwrap();
        assert_eq!(s.list().unwrap()[0].advert_key, Some(AdvertKey([9; 32])));
        // A new binding stores its key.
        s.add(&device(8, "new", 2)).unwrap();
        assert_eq!(
            s.get(&device(8, "new", 2).udid)
                .unwrap()
                .unwrap()
                .advert_key,
            Some(AdvertKey([8; 32]))
        );
        // A key of the wrong length is reported, not used.
        s.conn()
            .execute("UPDATE trusted_device SET advert_key = x'0102'", [])
            .unwrap();
        assert!(matches!(s.list(), Err(StoreError::Corrupt { .. })));
    }
}
