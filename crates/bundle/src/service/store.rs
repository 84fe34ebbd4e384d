//! The installed-bundle store: one JSON record per bundle and user in SQLite.

use super::{BundleManager, BundleRecord, ierr, lock};
use crate::error::BundleError;
use rusqlite::{OptionalExtension, params};

impl BundleManager {
    /// An installed bundle.
    pub fn get(&self, bundle: &str, user: i32) -> Result<Option<BundleRecord>, BundleError> {
        let db = lock(&self.db);
        let r: Option<String> = db
            .query_row(
                "SELECT record FROM bundles WHERE bundle_name=?1 AND user_id=?2",
                params![bundle, user],
                |r| r.get(0),
            )
            .optional()
            .map_err(ierr)?;
        r.map(|t| serde_json::from_str(&t).map_err(ierr))
            .transpose()
    }

    /// Installed bundle names for a user, sorted.
    pub fn names(&self, user: i32) -> Result<Vec<String>, BundleError> {
        let db = lock(&self.db);
        let mut st = db
            .prepare("SELECT bundle_name FROM bundles WHERE user_id=?1 ORDER BY bundle_name")
            .map_err(ierr)?;
        let v = st
            .query_map(params![user], |r| r.get(0))
            .map_err(ierr)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(ierr)?;
        Ok(v)
    }

    pub(super) fn put(&self, r: &BundleRecord) -> Result<(), BundleError> {
        let db = lock(&self.db);
        db.execute(
            "INSERT OR REPLACE INTO bundles (bundle_name, user_id, bundle_id, record) VALUES (?1, ?2, ?3, ?4)",
            params![r.bundle_name, r.user_id, r.bundle_id, serde_json::to_string(r).map_err(ierr)?],
        )
        .map_err(ierr)?;
        Ok(())
    }

    /// The bundle ids in use (every bundle, every user), ascending.
    pub(super) fn used_bundle_ids(&self) -> Result<Vec<u32>, BundleError> {
        let db = lock(&self.db);
        let mut st = db
            .prepare("SELECT DISTINCT bundle_id FROM bundles ORDER BY bundle_id")
            .map_err(ierr)?;
        let used: Vec<u32> = st
            .query_map([], |r| r.get(0))
            .map_err(ierr)?
            .collect::<Result<_, _>>()
            .map_err(ierr)?;
        Ok(used)
    }
}
