//! Usage records: counting checks of user-controlled permissions, queries, removal, and
//! writing them to disk (aging included) at flushes.

use super::{AccessTokenManager, now_ms};
use crate::api::{TokenTarget, UsageArgs, UsageRecord};
use crate::definitions;
use crate::error::AtmError;
use crate::token;
use std::sync::Arc;

impl AccessTokenManager {
    /// Counts one check of `permission` by `token_id`, if it is a user-controlled permission
    /// (the privacy manager's AddPermissionUsedRecord). Memory only; see [`Self::flush_usage`].
    pub fn record_usage(&self, token_id: u32, permission: &str, granted: bool) {
        self.record_usage_at(token_id, permission, granted, now_ms());
    }

    fn record_usage_at(&self, token_id: u32, permission: &str, granted: bool, at: u64) {
        if token_id == token::INVALID_TOKEN_ID {
            return;
        }
        let Some(index) = definitions::index_of(permission) else {
            return;
        };
        if !definitions::by_index(index).is_some_and(|d| d.grant_mode.is_user_controlled()) {
            return;
        }
        self.book().add(token_id, index, granted, at);
    }

    /// Writes changed usage records to disk and drops aged ones.
    pub fn flush_usage(&self) -> Result<(), AtmError> {
        let mut db = self.store();
        let (ups, dels) = {
            let mut b = self.book();
            b.age(now_ms());
            b.take_changes()
        };
        if let Err(e) = db.write_usage(&ups, &dels) {
            self.book().restore_changes(&ups, &dels);
            return Err(e);
        }
        Ok(())
    }

    /// Usage records, most recent first, filtered by token/app and permission.
    pub fn usage(&self, args: &UsageArgs) -> Result<Vec<UsageRecord>, AtmError> {
        let token = args
            .target
            .as_ref()
            .map(|t| self.resolve_target(t))
            .transpose()?;
        let perm = match &args.permission {
            Some(p) => Some(
                definitions::index_of(p)
                    .ok_or_else(|| AtmError::PermissionNotDefined(p.clone()))?,
            ),
            None => None,
        };
        let rows: Vec<_> = self
            .book()
            .rows()
            .filter(|r| token.is_none_or(|t| r.token_id == t))
            .filter(|r| perm.is_none_or(|p| r.index == p))
            .collect();
        let st = self.read();
        let mut out: Vec<UsageRecord> = rows
            .into_iter()
            .filter_map(|r| {
                let d = definitions::by_index(r.index)?;
                let name = st
                    .tokens
                    .get(&r.token_id)
                    .map(|t| t.name().to_string())
                    .unwrap_or_default();
                Some(UsageRecord {
                    token_id: r.token_id,
                    name,
                    permission: d.name.into(),
                    success_count: r.success,
                    fail_count: r.fail,
                    first_ms: r.first_ms,
                    last_ms: r.last_ms,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.last_ms
                .cmp(&a.last_ms)
                .then(a.token_id.cmp(&b.token_id))
                .then(a.permission.cmp(&b.permission))
        });
        Ok(out)
    }

    /// Removes a token's usage records (the privacy manager's RemovePermissionUsedRecords);
    /// returns how many there were.
    pub fn remove_usage(&self, target: &TokenTarget) -> Result<u64, AtmError> {
        let id = match target {
            // A deleted token may still have records on disk from before; allow its id.
            TokenTarget::Id(id) => *id,
            t => self.resolve_target(t)?,
        };
        let mut db = self.store();
        let on_disk = db.delete_usage_of(id)?;
        let in_memory = self.book().remove_token(id);
        Ok(on_disk.max(in_memory))
    }

    /// Starts a task that writes usage records every `usage_flush_interval` (call from inside
    /// a tokio runtime; without one, records are written at queries and when the manager is
    /// dropped). The task ends when the manager is dropped.
    pub fn spawn_usage_flusher(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let weak = Arc::downgrade(self);
        let every = self.config.usage_flush_interval;
        Some(handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { break };
                let r = tokio::task::spawn_blocking(move || me.flush_usage()).await;
                if let Ok(Err(e)) = r {
                    tracing::warn!(tag = "atm", "usage records not written: {e}");
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AtmConfig;
    use crate::rules::flag;
    use crate::service::tests::{CAMERA, INTERNET, caller, hap_token, open};
    use oxh_samgr::PermissionChecker;

    #[test]
    fn checker_verifies_and_records_user_grant_uses() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = hap_token(&atm, "com.example.v", None, &[INTERNET, CAMERA]);
        let c = caller(id);
        for _ in 0..3 {
            let ok = atm.verify(&c, CAMERA);
            atm.record(&c, CAMERA, ok);
        }
        atm.grant_permission(id, CAMERA, flag::USER_SET).unwrap();
        let ok = atm.verify(&c, CAMERA);
        assert!(ok);
        atm.record(&c, CAMERA, ok);
        atm.record(&c, INTERNET, true);
        atm.record(&caller(0), CAMERA, false);
        let u = atm.usage(&UsageArgs::default()).unwrap();
        assert_eq!(
            u.len(),
            1,
            "system_grant and token 0 are not recorded: {u:?}"
        );
        assert_eq!((u[0].success_count, u[0].fail_count), (1, 3));
        assert_eq!(u[0].name, "com.example.v");
        assert!(u[0].first_ms <= u[0].last_ms && u[0].first_ms > 0);
        let by_perm = atm
            .usage(&UsageArgs {
                target: None,
                permission: Some("ohos.permission.MICROPHONE".into()),
            })
            .unwrap();
        assert!(by_perm.is_empty());
        atm.flush_usage().unwrap();
        drop(atm);
        let atm = open(dir.path());
        let u = atm
            .usage(&UsageArgs {
                target: Some(TokenTarget::parse("com.example.v", 100)),
                permission: Some(CAMERA.into()),
            })
            .unwrap();
        assert_eq!((u[0].success_count, u[0].fail_count), (1, 3), "durable");
        assert_eq!(atm.remove_usage(&TokenTarget::Id(id)).unwrap(), 1);
        assert!(atm.usage(&UsageArgs::default()).unwrap().is_empty());
    }

    #[test]
    fn usage_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AtmConfig {
            usage_max_records: 20,
            ..AtmConfig::default()
        };
        let atm = AccessTokenManager::open(dir.path(), cfg).unwrap();
        let user_grant: Vec<&str> = definitions::all()
            .iter()
            .filter(|d| d.grant_mode == definitions::GrantMode::UserGrant)
            .map(|d| d.name)
            .take(50)
            .collect();
        for (i, p) in user_grant.iter().enumerate() {
            atm.record_usage_at(0x2000_1234, p, true, 1_000 + i as u64);
        }
        let u = atm.usage(&UsageArgs::default()).unwrap();
        assert!(u.len() <= 20, "{}", u.len());
        assert_eq!(u[0].permission, *user_grant.last().unwrap(), "newest kept");
        atm.flush_usage().unwrap();
        drop(atm);
        let atm = open(dir.path());
        assert!(
            atm.usage(&UsageArgs::default()).unwrap().is_empty(),
            "aged out after 7 days"
        );
    }
}
