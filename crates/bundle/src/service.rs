//! The bundle manager service: install sessions staged in a daemon-owned dir, verification
//! against the device's trust roots, the installed-bundle store (SQLite), code and data dirs,
//! and the app's access token in the access-token manager.
//!
//! Order of an install, so that a failure at any step leaves the old version working:
//! parse + verify every staged file (nothing written) → the plan ([`crate::plan`]: the rules
//! against the installed version, the ids, files and token to use) → build the new code dir
//! beside the old one → token (alloc or update) → store commit → swap the code dirs → data
//! dirs for a new bundle. A failure before the commit removes the new code dir and restores
//! (or deletes) the token.
//!
//! One concern a file: `session` (staging), `trust` (trust roots), `store` (SQLite),
//! `install` (the plan's executor, and uninstall), `recover` (crash recovery), `dump`.

mod dump;
mod install;
mod recover;
mod session;
mod store;
mod trust;

use crate::error::BundleError;
use crate::package::Limits;
use oxh_atm::AccessTokenManager;
use rusqlite::Connection;
use session::Session;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::plan::{BUNDLE_ID_MAX, BUNDLE_ID_MIN, BundleRecord, UID_PER_USER};
pub use recover::recover_code_dirs;

/// How the daemon runs the service.
pub struct BundleConfig {
    /// The service's own dir (store, trust roots, staging).
    pub dir: PathBuf,
    /// The device data dir: code goes to `app/el1/bundle/public/<bundle>`, data to
    /// `app/<el1|el2>/<user>/<base|database>/<bundle>`.
    pub data_root: PathBuf,
    /// This device's UDID, for debug profiles' device-ids.
    pub device_id: Option<String>,
    /// Whether `persist.bms.dev_mode` is "1" now (read at each install).
    pub dev_mode: Box<dyn Fn() -> bool + Send + Sync>,
    /// Package limits.
    pub limits: Limits,
}

/// The bundle manager (SA 401).
pub struct BundleManager {
    cfg: BundleConfig,
    atm: Arc<AccessTokenManager>,
    db: Mutex<Connection>,
    sessions: Mutex<HashMap<u64, Session>>,
    next_session: Mutex<u64>,
    install: Mutex<()>,
}

fn ierr(e: impl std::fmt::Display) -> BundleError {
    BundleError::internal(e.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BundleManager {
    /// Opens the store under `cfg.dir` (creating it), drops stale staging dirs.
    pub fn open(cfg: BundleConfig, atm: Arc<AccessTokenManager>) -> Result<Arc<Self>, BundleError> {
        std::fs::create_dir_all(cfg.dir.join("trust")).map_err(ierr)?;
        let staging = cfg.dir.join("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(ierr)?;
        let db = oxh_kal::sqlite::open(&cfg.dir.join("bundles.db")).map_err(ierr)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS bundles (
               bundle_name TEXT NOT NULL, user_id INTEGER NOT NULL, bundle_id INTEGER NOT NULL,
               record TEXT NOT NULL, PRIMARY KEY (bundle_name, user_id));",
        )
        .map_err(ierr)?;
        let me = Arc::new(Self {
            cfg,
            atm,
            db: Mutex::new(db),
            sessions: Mutex::new(HashMap::new()),
            next_session: Mutex::new(1),
            install: Mutex::new(()),
        });
        me.recover()?;
        Ok(me)
    }

    /// The code dir of a bundle.
    pub fn code_dir(&self, bundle: &str) -> PathBuf {
        self.cfg
            .data_root
            .join("app/el1/bundle/public")
            .join(bundle)
    }

    /// The data dirs of a bundle for a user: its el1/el2 base and database dirs and its
    /// distributed files in the HMDFS account tree.
    pub fn data_dirs(&self, bundle: &str, user: i32) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for el in ["el1", "el2"] {
            for kind in ["base", "database"] {
                v.push(
                    self.cfg
                        .data_root
                        .join("app")
                        .join(el)
                        .join(user.to_string())
                        .join(kind)
                        .join(bundle),
                );
            }
        }
        // Its distributed files (`/data/storage/el2/distributedfiles` in its sandbox).
        if let Ok(u) = u32::try_from(user) {
            v.push(oxh_dfs::views::apps_tree(&self.cfg.data_root, u).join(bundle));
        }
        v
    }
}

fn chown_if_root(p: &Path, uid: u32) {
    if oxh_ipc_uid_is_root() {
        let _ = std::os::unix::fs::chown(p, Some(uid), Some(uid));
    }
}

fn oxh_ipc_uid_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
        .unwrap_or(false)
}
