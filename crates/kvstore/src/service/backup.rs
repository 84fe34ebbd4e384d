//! backup, restore and deleteBackup of a store, as files beside it.

use super::{KvService, StoreKey, lock};
use crate::api;
use crate::error::KvError;
use crate::limits::check_backup_name;
use oxh_ipc::Caller;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

impl KvService {
    fn backup_path(&self, key: &StoreKey, name: &str) -> PathBuf {
        self.cfg
            .dir
            .join(&key.0)
            .join("backup")
            .join(&key.1)
            .join(format!("{name}.bak"))
    }

    /// backup / restore / deleteBackup.
    pub fn backup(&self, caller: &Caller, a: &api::BackupArgs, code: u32) -> Result<(), KvError> {
        let key = self.key(caller, &a.store)?;
        check_backup_name(&a.name)?;
        let o = self.existing(&key)?;
        let path = self.backup_path(&key, &a.name);
        match code {
            api::BACKUP => lock(&o.store).backup(&path),
            api::RESTORE => {
                let changes = lock(&o.store).restore(&path)?;
                if !changes.is_empty() {
                    o.dirty.store(true, Ordering::Relaxed);
                    self.notify(&o, &self.cfg.device_id, false, &changes);
                }
                Ok(())
            }
            _ => std::fs::remove_file(&path)
                .map_err(|_| KvError::NotFound(format!("no backup named {}", a.name))),
        }
    }
}
