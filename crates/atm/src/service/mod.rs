//! [`AccessTokenManager`]: the tokens in memory (a cache that makes `verify` a hash lookup and
//! a bit test), durable in SQLite, with the API the bundle manager calls, grants and
//! revocations, usage records, and the permission checker samgr calls before every method.
//!
//! Writers take the store lock, write SQLite, and only then update memory under a short write
//! lock, so a failed write changes nothing and readers (every `verify`) never wait on disk.
//!
//! Tokens across devices (OpenHarmony's tokensync) are a fourth kind of [`Token`]: a local id
//! mapped from (remote udid, remote token id), carrying the permission states synced from the
//! remote device, kept in memory only (the origin device resends them on the first call of
//! each connection), and dropped when that device is unbound; `verify` needs no change.
//! Every change of a token gives it a new revision and is announced on
//! [`AccessTokenManager::subscribe_changes`], which is how changes reach other devices.
//!
//! Each concern has its file: `cache` (the tokens in memory), `tokens` (the bundle manager's
//! API), `lookup` (finding tokens and callers), `grants` (checks, grants and revocations),
//! `usage` (usage records), `remote` (tokensync) and `dump` (listings and the dump).

mod cache;
mod dump;
mod grants;
mod lookup;
mod remote;
#[cfg(test)]
pub(crate) mod tests;
mod tokens;
mod usage;

use crate::config::{
    AtmConfig, NativePermissions, NativeProcess, SHELL_PROCESS, UNCONFIGURED_PROCESS,
};
use crate::definitions::{self, Apl};
use crate::error::AtmError;
use crate::rules::{self, PermState, flag};
use crate::store::{AtmDb, DB_FILE, storage};
use crate::token;
use crate::usage::UsageBook;
use cache::{Kind, State, Token};
use oxh_ipc::{Caller, TokenType};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Counters for the dump.
#[derive(Debug, Default)]
struct Stats {
    verified: AtomicU64,
    denied: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh random 20-bit unique id (OpenHarmony draws token ids at random too); 0 and 1 are
/// left out so no token looks like the invalid or the old fixed shell id.
fn random_unique(salt: u64) -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u64(now_ms());
    ((h.finish() as u32) & token::UNIQUE_MASK).max(2)
}

/// The access token manager. Share it as `Arc`: it is samgr's [`oxh_samgr::PermissionChecker`],
/// the IPC server's token resolver (through [`crate::AtmTokenResolver`]), the SA 3503 and the
/// bundle manager's token API at once.
pub struct AccessTokenManager {
    config: AtmConfig,
    db_path: PathBuf,
    db: Mutex<AtmDb>,
    state: RwLock<State>,
    usage: Mutex<UsageBook>,
    stats: Stats,
    changes: tokio::sync::broadcast::Sender<u32>,
}

impl std::fmt::Debug for AccessTokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenManager")
            .field("db_path", &self.db_path)
            .finish_non_exhaustive()
    }
}

fn native_states(apl: Apl, p: &NativePermissions) -> Vec<PermState> {
    match p {
        NativePermissions::All => (0..definitions::count() as u16)
            .map(|index| PermState {
                index,
                granted: true,
                flags: flag::SYSTEM_FIXED,
            })
            .collect(),
        NativePermissions::List { permissions, acls } => {
            rules::evaluate_native(apl, permissions, acls)
        }
    }
}

impl AccessTokenManager {
    /// Opens (creating if needed) `<dir>/atm.db`, loads every token, and gives the shell, the
    /// configured system processes and the unconfigured ones their tokens (stable across
    /// starts; their permissions come from `config` each time).
    pub fn open(dir: &Path, config: AtmConfig) -> Result<Arc<Self>, AtmError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| storage(&format!("cannot create {}", dir.display()), e))?;
        let db_path = dir.join(DB_FILE);
        let (mut db, loaded) = AtmDb::open(&db_path)?;
        let mut st = State::default();
        for (row, states) in loaded.haps {
            let t = Token::new(
                row.token_id,
                row.token_attr,
                row.apl,
                Kind::Hap(Box::new(row)),
                states,
            );
            st.insert(t);
        }
        let stored: HashMap<String, u32> =
            loaded.natives.into_iter().map(|(id, n)| (n, id)).collect();
        let mut wanted: Vec<(String, TokenType, Apl, NativePermissions, Option<u32>)> = vec![
            (
                SHELL_PROCESS.into(),
                TokenType::Shell,
                Apl::Normal,
                NativePermissions::List {
                    permissions: config.shell_permissions.clone(),
                    acls: config.shell_permissions.clone(),
                },
                None,
            ),
            (
                UNCONFIGURED_PROCESS.into(),
                TokenType::Native,
                config.unconfigured.0,
                config.unconfigured.1.clone(),
                None,
            ),
        ];
        for NativeProcess {
            process_name,
            uid,
            apl,
            permissions,
        } in &config.natives
        {
            if wanted.iter().any(|w| &w.0 == process_name) {
                return Err(AtmError::InvalidArgument(format!(
                    "native process {process_name} is configured twice"
                )));
            }
            wanted.push((
                process_name.clone(),
                TokenType::Native,
                *apl,
                permissions.clone(),
                *uid,
            ));
        }
        for (salt, (name, ty, apl, perms, uid)) in wanted.into_iter().enumerate() {
            let id = match stored.get(&name) {
                Some(id) if token::type_of(*id) == ty && !st.tokens.contains_key(id) => *id,
                _ => {
                    let mut id;
                    let mut n = 0u64;
                    loop {
                        let u = random_unique(salt as u64 ^ (n << 32));
                        id = token::make(ty, u, false, false);
                        if !st.unique_taken(u) && !stored.values().any(|v| *v == id) {
                            break;
                        }
                        n += 1;
                    }
                    if stored.contains_key(&name) {
                        return Err(AtmError::Storage(format!(
                            "{} has a stored token of the wrong type for {name}",
                            db_path.display()
                        )));
                    }
                    db.insert_native(id, &name)?;
                    id
                }
            };
            let kind = if ty == TokenType::Shell {
                st.shell = id;
                Kind::Shell
            } else {
                if name == UNCONFIGURED_PROCESS {
                    st.unconfigured = id;
                } else {
                    st.natives.insert(name.clone(), id);
                }
                Kind::Native {
                    process_name: name,
                    uid,
                }
            };
            st.insert(Token::new(id, 0, apl, kind, native_states(apl, &perms)));
        }
        let usage = UsageBook::new(
            config.usage_max_records,
            config.usage_aging.as_millis().min(u128::from(u64::MAX)) as u64,
            loaded.usage,
        );
        Ok(Arc::new(Self {
            config,
            db_path,
            db: Mutex::new(db),
            state: RwLock::new(st),
            usage: Mutex::new(usage),
            stats: Stats::default(),
            changes: tokio::sync::broadcast::channel(1024).0,
        }))
    }

    /// The SQLite file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &AtmConfig {
        &self.config
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> MutexGuard<'_, AtmDb> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn book(&self) -> MutexGuard<'_, UsageBook> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn token(&self, id: u32) -> Result<Arc<Token>, AtmError> {
        self.read()
            .tokens
            .get(&id)
            .cloned()
            .ok_or_else(|| AtmError::TokenNotFound(format!("{id:#010x}")))
    }
}

impl Drop for AccessTokenManager {
    fn drop(&mut self) {
        if let Err(e) = self.flush_usage() {
            tracing::warn!(tag = "atm", "usage records not written at stop: {e}");
        }
    }
}

impl oxh_samgr::PermissionChecker for AccessTokenManager {
    fn verify(&self, caller: &Caller, permission: &str) -> bool {
        let ok = self.verify_token(caller.token_id, permission);
        self.stats.verified.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn record(&self, caller: &Caller, permission: &str, granted: bool) {
        self.record_usage(caller.token_id, permission, granted);
    }
}
