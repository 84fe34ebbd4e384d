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

use crate::api::{
    CheckResult, PermissionInfo, PermsArgs, RemoteTokenState, TokenDetail, TokenInfo, TokenTarget,
    UsageArgs, UsageRecord,
};
use crate::config::{
    AtmConfig, NativePermissions, NativeProcess, SHELL_PROCESS, UNCONFIGURED_PROCESS,
};
use crate::definitions::{self, Apl};
use crate::error::AtmError;
use crate::rules::{
    self, AppKind, Change, DlpType, HapInfoParams, HapPolicy, PermState, PermissionOper,
    PermissionStatus, UpdateHapInfoParams, flag,
};
use crate::store::{AtmDb, DB_FILE, HapRow, storage};
use crate::token::{self, AccessTokenIdEx};
use crate::usage::UsageBook;
use oxh_ipc::{Caller, TokenType};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// What kind of token, with what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Hap(Box<HapRow>),
    Native {
        process_name: String,
        uid: Option<u32>,
    },
    Shell,
    /// A caller on another device, as that device described it.
    Remote(Box<RemoteKind>),
}

/// What identifies a remote token.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteKind {
    udid: String,
    remote_id: u32,
    token_type: TokenType,
    name: String,
    user_id: Option<i32>,
    /// The origin device's revision of the states this copy holds.
    remote_rev: u64,
}

/// Revisions of tokens: every new version of a token (creation, grant, revoke, update) takes
/// the next one, so "has this device seen the current state?" is one comparison.
static NEXT_REV: AtomicU64 = AtomicU64::new(1);

/// One token in memory.
#[derive(Debug, Clone)]
struct Token {
    id: u32,
    rev: u64,
    attr: u32,
    apl: Apl,
    kind: Kind,
    /// Sorted by index.
    states: Vec<PermState>,
    /// Granted permissions by dense index.
    bits: Box<[u64]>,
}

fn bitset(states: &[PermState]) -> Box<[u64]> {
    let mut b = vec![0u64; definitions::count().div_ceil(64)];
    for s in states.iter().filter(|s| s.granted) {
        let i = usize::from(s.index);
        if let Some(w) = b.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    b.into_boxed_slice()
}

impl Token {
    fn new(id: u32, attr: u32, apl: Apl, kind: Kind, mut states: Vec<PermState>) -> Self {
        states.sort_by_key(|s| s.index);
        states.dedup_by_key(|s| s.index);
        let bits = bitset(&states);
        Self {
            id,
            rev: NEXT_REV.fetch_add(1, Ordering::Relaxed),
            attr,
            apl,
            kind,
            states,
            bits,
        }
    }

    fn holds(&self, index: u16) -> bool {
        let i = usize::from(index);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn state(&self, index: u16) -> Option<PermState> {
        self.states
            .binary_search_by_key(&index, |s| s.index)
            .ok()
            .and_then(|i| self.states.get(i).copied())
    }

    fn name(&self) -> &str {
        match &self.kind {
            Kind::Hap(h) => &h.bundle_name,
            Kind::Native { process_name, .. } => process_name,
            Kind::Shell => SHELL_PROCESS,
            Kind::Remote(r) => &r.name,
        }
    }

    fn label(&self) -> String {
        format!("{} ({:#010x})", self.name(), self.id)
    }

    fn token_type(&self) -> TokenType {
        match self.kind {
            Kind::Hap(_) => TokenType::Hap,
            Kind::Native { .. } => TokenType::Native,
            Kind::Shell => TokenType::Shell,
            Kind::Remote(ref r) => r.token_type,
        }
    }

    fn info(&self) -> TokenInfo {
        let (user_id, inst_index, uid) = match &self.kind {
            Kind::Hap(h) => (Some(h.user_id), Some(h.inst_index), h.uid),
            Kind::Native { uid, .. } => (None, None, *uid),
            Kind::Shell => (None, None, None),
            Kind::Remote(r) => (r.user_id, None, None),
        };
        TokenInfo {
            token_id: self.id,
            token_attr: self.attr,
            token_type: self.token_type(),
            name: self.name().to_string(),
            apl: self.apl,
            user_id,
            inst_index,
            uid,
            requested: self.states.len() as u32,
            granted: self.states.iter().filter(|s| s.granted).count() as u32,
            remote_udid: match &self.kind {
                Kind::Remote(r) => Some(r.udid.clone()),
                _ => None,
            },
        }
    }

    fn statuses(&self) -> Vec<PermissionStatus> {
        let mut v: Vec<PermissionStatus> = self
            .states
            .iter()
            .filter_map(|s| {
                s.def().map(|d| PermissionStatus {
                    permission: d.name.into(),
                    granted: s.granted,
                    flags: s.flags,
                })
            })
            .collect();
        v.sort_by(|a, b| a.permission.cmp(&b.permission));
        v
    }
}

type HapKey = (i32, String, i32);

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<u32, Arc<Token>>,
    haps: HashMap<HapKey, u32>,
    by_uid: HashMap<u32, u32>,
    natives: HashMap<String, u32>,
    /// (origin udid, token id there) -> local id.
    remote: HashMap<(String, u32), u32>,
    shell: u32,
    unconfigured: u32,
}

impl State {
    fn unique_taken(&self, unique: u32) -> bool {
        self.tokens.keys().any(|id| token::unique_of(*id) == unique)
    }

    fn insert(&mut self, t: Token) {
        if let Kind::Hap(h) = &t.kind {
            self.haps
                .insert((h.user_id, h.bundle_name.clone(), h.inst_index), t.id);
            if let Some(uid) = h.uid {
                self.by_uid.insert(uid, t.id);
            }
        }
        if let Kind::Remote(r) = &t.kind {
            self.remote.insert((r.udid.clone(), r.remote_id), t.id);
        }
        self.tokens.insert(t.id, Arc::new(t));
    }

    fn remove(&mut self, id: u32) -> Option<Arc<Token>> {
        let t = self.tokens.remove(&id)?;
        if let Kind::Hap(h) = &t.kind {
            self.haps
                .remove(&(h.user_id, h.bundle_name.clone(), h.inst_index));
            if let Some(uid) = h.uid
                && self.by_uid.get(&uid) == Some(&id)
            {
                self.by_uid.remove(&uid);
            }
        }
        if let Kind::Remote(r) = &t.kind {
            self.remote.remove(&(r.udid.clone(), r.remote_id));
        }
        Some(t)
    }
}

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

fn validate_hap_key(user_id: i32, bundle: &str, inst_index: i32) -> Result<(), AtmError> {
    if bundle.is_empty() || bundle.len() > 256 || bundle.contains('\0') {
        return Err(AtmError::InvalidArgument(format!(
            "bundle name \"{}\": 1 to 256 bytes, no NUL",
            bundle.escape_debug()
        )));
    }
    if user_id < 0 || inst_index < 0 {
        return Err(AtmError::InvalidArgument(format!(
            "user id {user_id} and instance index {inst_index} must not be negative"
        )));
    }
    Ok(())
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

    // ---- the bundle manager's API ----

    /// Creates an app's token (OpenHarmony's InitHapToken / AllocHapToken): applies the grant
    /// rules to every requested permission; the first refused one fails the call and nothing
    /// is stored. Requested names OpenHarmony does not define are skipped.
    pub fn alloc_hap_token(
        &self,
        info: &HapInfoParams,
        policy: &HapPolicy,
    ) -> Result<AccessTokenIdEx, AtmError> {
        validate_hap_key(info.user_id, &info.bundle_name, info.inst_index)?;
        let app = AppKind {
            is_system_app: info.is_system_app,
            distribution_type: &info.app_distribution_type,
        };
        let outcome = rules::evaluate_hap(&info.bundle_name, app, policy)?;
        let mut db = self.store();
        let key = (info.user_id, info.bundle_name.clone(), info.inst_index);
        let id = {
            let st = self.read();
            if st.haps.contains_key(&key) {
                return Err(AtmError::TokenExists(format!(
                    "{} (user {}, instance {})",
                    info.bundle_name, info.user_id, info.inst_index
                )));
            }
            self.check_uid(&st, info.uid, None)?;
            let dlp = info.dlp_type != DlpType::Common;
            let clone = !dlp && info.inst_index > 0;
            let mut n = 0u64;
            loop {
                let u = random_unique(n);
                if u >= 0x100 && !st.unique_taken(u) {
                    break token::make(TokenType::Hap, u, dlp, clone);
                }
                n += 1;
            }
        };
        let ex = AccessTokenIdEx::new(id, info.is_system_app);
        let row = HapRow {
            token_id: id,
            token_attr: ex.token_attr(),
            user_id: info.user_id,
            bundle_name: info.bundle_name.clone(),
            inst_index: info.inst_index,
            dlp_type: info.dlp_type,
            app_id_desc: info.app_id_desc.clone(),
            api_version: info.api_version,
            distribution_type: info.app_distribution_type.clone(),
            apl: policy.apl,
            domain: policy.domain.clone(),
            uid: info.uid,
        };
        db.put_hap(&row, &outcome.states)?;
        let t = Token::new(
            id,
            row.token_attr,
            policy.apl,
            Kind::Hap(Box::new(row)),
            outcome.states,
        );
        self.write().insert(t);
        tracing::info!(
            tag = "atm",
            public_token = id,
            public_bundle = info.bundle_name.as_str(),
            public_apl = policy.apl.as_str(),
            "hap token allocated"
        );
        Ok(ex)
    }

    fn check_uid(&self, st: &State, uid: Option<u32>, me: Option<u32>) -> Result<(), AtmError> {
        let Some(uid) = uid else { return Ok(()) };
        if uid == 0 {
            return Err(AtmError::InvalidArgument(
                "uid 0 is root's; an app cannot run as root".into(),
            ));
        }
        match st.by_uid.get(&uid) {
            Some(owner) if Some(*owner) != me => Err(AtmError::UidInUse { uid, owner: *owner }),
            _ => Ok(()),
        }
    }

    /// Updates an app's token after an update of the app (OpenHarmony's UpdateHapToken): the
    /// grant rules run again on the new request; user decisions on user-controlled
    /// permissions that are still requested survive; permissions no longer requested go.
    pub fn update_hap_token(
        &self,
        token_id: u32,
        info: &UpdateHapInfoParams,
        policy: &HapPolicy,
    ) -> Result<AccessTokenIdEx, AtmError> {
        let mut db = self.store();
        let old = self.token(token_id)?;
        let Kind::Hap(old_row) = &old.kind else {
            return Err(AtmError::NotAHap(old.label()));
        };
        let app = AppKind {
            is_system_app: info.is_system_app,
            distribution_type: &info.app_distribution_type,
        };
        let outcome = rules::evaluate_hap(&old_row.bundle_name, app, policy)?;
        self.check_uid(&self.read(), info.uid, Some(token_id))?;
        let user_decided = flag::USER_SET | flag::USER_FIXED | flag::COMPONENT_SET;
        let states: Vec<PermState> = outcome
            .states
            .into_iter()
            .map(|new| match old.state(new.index) {
                Some(o)
                    if new.def().is_some_and(|d| d.grant_mode.is_user_controlled())
                        && o.flags & user_decided != 0 =>
                {
                    o
                }
                _ => new,
            })
            .collect();
        let ex = AccessTokenIdEx::new(token_id, info.is_system_app);
        let row = HapRow {
            token_attr: ex.token_attr(),
            app_id_desc: info.app_id_desc.clone(),
            api_version: info.api_version,
            distribution_type: info.app_distribution_type.clone(),
            apl: policy.apl,
            domain: policy.domain.clone(),
            uid: info.uid,
            ..(**old_row).clone()
        };
        db.put_hap(&row, &states)?;
        let t = Token::new(
            token_id,
            row.token_attr,
            policy.apl,
            Kind::Hap(Box::new(row)),
            states,
        );
        let mut st = self.write();
        st.remove(token_id);
        st.insert(t);
        drop(st);
        self.notify(token_id);
        Ok(ex)
    }

    /// Deletes an app's token with its permission states and usage records (uninstall).
    pub fn delete_token(&self, token_id: u32) -> Result<(), AtmError> {
        let mut db = self.store();
        let t = self.token(token_id)?;
        if !matches!(t.kind, Kind::Hap(_)) {
            return Err(AtmError::NotAHap(t.label()));
        }
        db.delete_hap(token_id)?;
        self.write().remove(token_id);
        self.notify(token_id);
        self.book().remove_token(token_id);
        tracing::info!(tag = "atm", public_token = token_id, "hap token deleted");
        Ok(())
    }

    /// Sets (or clears) the uid whose processes get an app's token.
    pub fn set_hap_uid(&self, token_id: u32, uid: Option<u32>) -> Result<(), AtmError> {
        let mut db = self.store();
        let t = self.token(token_id)?;
        let Kind::Hap(row) = &t.kind else {
            return Err(AtmError::NotAHap(t.label()));
        };
        self.check_uid(&self.read(), uid, Some(token_id))?;
        db.set_uid(token_id, uid)?;
        let row = HapRow {
            uid,
            ..(**row).clone()
        };
        let nt = Token::new(
            t.id,
            t.attr,
            t.apl,
            Kind::Hap(Box::new(row)),
            t.states.clone(),
        );
        let mut st = self.write();
        st.remove(token_id);
        st.insert(nt);
        Ok(())
    }

    /// An app's token by (user, bundle, instance) (OpenHarmony's GetHapTokenIDEx).
    pub fn hap_token_id(
        &self,
        user_id: i32,
        bundle_name: &str,
        inst_index: i32,
    ) -> Option<AccessTokenIdEx> {
        let st = self.read();
        let id = *st
            .haps
            .get(&(user_id, bundle_name.to_string(), inst_index))?;
        let t = st.tokens.get(&id)?;
        Some(AccessTokenIdEx(u64::from(t.id) | (u64::from(t.attr) << 32)))
    }

    /// The native token of a configured system process.
    pub fn native_token_id(&self, process_name: &str) -> Option<u32> {
        self.read().natives.get(process_name).copied()
    }

    /// The shell token.
    pub fn shell_token_id(&self) -> u32 {
        self.read().shell
    }

    /// The token shared by root/daemon-user processes that are not configured.
    pub fn unconfigured_token_id(&self) -> u32 {
        self.read().unconfigured
    }

    /// The token a target names.
    pub fn resolve_target(&self, target: &TokenTarget) -> Result<u32, AtmError> {
        let st = self.read();
        match target {
            TokenTarget::Id(id) => {
                if st.tokens.contains_key(id) {
                    Ok(*id)
                } else {
                    Err(AtmError::TokenNotFound(format!("{id:#010x}")))
                }
            }
            TokenTarget::Bundle {
                user_id,
                bundle_name,
                inst_index,
            } => st
                .haps
                .get(&(*user_id, bundle_name.clone(), *inst_index))
                .copied()
                .ok_or_else(|| AtmError::TokenNotFound(target.to_string())),
        }
    }

    // ---- checks ----

    /// Whether token `token_id` holds `permission` now (OpenHarmony's VerifyAccessToken): one
    /// read lock, two hash lookups and a bit test.
    pub fn verify_token(&self, token_id: u32, permission: &str) -> bool {
        let Some(index) = definitions::index_of(permission) else {
            return false;
        };
        self.read()
            .tokens
            .get(&token_id)
            .is_some_and(|t| t.holds(index))
    }

    /// A token's state for one permission, for `oxh atm check`.
    pub fn check(&self, target: &TokenTarget, permission: &str) -> Result<CheckResult, AtmError> {
        let id = self.resolve_target(target)?;
        let index = definitions::index_of(permission)
            .ok_or_else(|| AtmError::PermissionNotDefined(permission.into()))?;
        let t = self.token(id)?;
        let s = t.state(index);
        Ok(CheckResult {
            token_id: id,
            permission: permission.into(),
            granted: t.holds(index),
            flags: s.map(|s| s.flags).unwrap_or(0),
            requested: s.is_some(),
        })
    }

    /// What asking the user for `permission` would do for this token (OpenHarmony's
    /// GetSelfPermissionsState): a USER_FIXED denial is not asked again.
    pub fn permission_oper(&self, token_id: u32, permission: &str) -> PermissionOper {
        let (Some(index), Some(def)) = (
            definitions::index_of(permission),
            definitions::find(permission),
        ) else {
            return PermissionOper::InvalidOper;
        };
        match self.read().tokens.get(&token_id) {
            Some(t) => rules::permission_oper(def, t.state(index)),
            None => PermissionOper::InvalidOper,
        }
    }

    // ---- grants ----

    /// Grants a user-controlled permission an app requested, with one user flag (USER_SET,
    /// USER_FIXED, COMPONENT_SET, ALLOW_THIS_TIME). Refused when the system or a policy
    /// fixed it.
    pub fn grant_permission(
        &self,
        token_id: u32,
        permission: &str,
        flags: u32,
    ) -> Result<(), AtmError> {
        self.change(token_id, permission, Change::Grant, flags)
    }

    /// Revokes a user-controlled permission; with USER_FIXED the app is not asked again.
    /// A SYSTEM_FIXED grant cannot be revoked this way.
    pub fn revoke_permission(
        &self,
        token_id: u32,
        permission: &str,
        flags: u32,
    ) -> Result<(), AtmError> {
        self.change(token_id, permission, Change::Revoke, flags)
    }

    fn change(
        &self,
        token_id: u32,
        permission: &str,
        change: Change,
        flags: u32,
    ) -> Result<(), AtmError> {
        if permission.len() > definitions::MAX_PERMISSION_NAME_LEN {
            return Err(AtmError::InvalidArgument(format!(
                "permission name of {} bytes (the limit is {})",
                permission.len(),
                definitions::MAX_PERMISSION_NAME_LEN
            )));
        }
        if token_id == token::INVALID_TOKEN_ID {
            return Err(AtmError::InvalidArgument("token id 0".into()));
        }
        rules::validate_user_flag(flags)?;
        let def = definitions::find(permission)
            .ok_or_else(|| AtmError::PermissionNotDefined(permission.into()))?;
        let index = definitions::index_of(permission)
            .ok_or_else(|| AtmError::PermissionNotDefined(permission.into()))?;
        let mut db = self.store();
        let t = self.token(token_id)?;
        if !matches!(t.kind, Kind::Hap(_)) {
            return Err(AtmError::NotAHap(t.label()));
        }
        let current = t.state(index).ok_or_else(|| AtmError::NotRequested {
            permission: permission.into(),
            token: t.label(),
        })?;
        let new = rules::apply_change(def, current, change, flags, &t.label())?;
        if new == current {
            return Ok(());
        }
        db.put_state(token_id, new)?;
        let mut states = t.states.clone();
        if let Ok(i) = states.binary_search_by_key(&index, |s| s.index)
            && let Some(s) = states.get_mut(i)
        {
            *s = new;
        }
        let nt = Token::new(t.id, t.attr, t.apl, t.kind.clone(), states);
        self.write().tokens.insert(token_id, Arc::new(nt));
        self.notify(token_id);
        tracing::info!(
            tag = "atm",
            public_token = token_id,
            public_permission = permission,
            public_granted = new.granted,
            public_flags = new.flags,
            "permission state changed"
        );
        Ok(())
    }

    // ---- listings ----

    /// The permission table, filtered.
    pub fn permissions(args: &PermsArgs) -> Vec<PermissionInfo> {
        definitions::all()
            .iter()
            .filter(|d| args.grant_mode.is_none_or(|m| d.grant_mode == m))
            .filter(|d| args.level.is_none_or(|l| d.available_level == l))
            .map(PermissionInfo::from)
            .collect()
    }

    /// Every token, sorted by id.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let mut v: Vec<TokenInfo> = self.read().tokens.values().map(|t| t.info()).collect();
        v.sort_by_key(|t| t.token_id);
        v
    }

    /// A token with the state of each of its permissions.
    pub fn token_detail(&self, target: &TokenTarget) -> Result<TokenDetail, AtmError> {
        let t = self.token(self.resolve_target(target)?)?;
        Ok(TokenDetail {
            info: t.info(),
            permissions: t.statuses(),
        })
    }

    // ---- usage records ----

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

    // ---- identities ----

    /// The caller for kernel credentials (see [`crate::config`] for the order of the rules).
    /// `is_tool` says the process runs the `oxh` tool; it counts only for trusted uids and
    /// hdc's shell user (`shell_uid`), whose runs of the tool are the shell.
    pub fn caller_for(
        &self,
        cred: oxh_kal::PeerCred,
        process_name: String,
        is_tool: bool,
        daemon_uid: u32,
        shell_uid: Option<u32>,
    ) -> Caller {
        let trusted = cred.uid == 0 || cred.uid == daemon_uid;
        let shell = is_tool && (trusted || shell_uid == Some(cred.uid));
        let st = self.read();
        let native = st
            .natives
            .get(&process_name)
            .and_then(|id| st.tokens.get(id))
            .filter(|t| {
                trusted || matches!(t.kind, Kind::Native { uid: Some(u), .. } if u == cred.uid)
            })
            .map(|t| t.id);
        let (token_type, token_id) = if shell {
            (TokenType::Shell, st.shell)
        } else if let Some(id) = st.by_uid.get(&cred.uid) {
            (TokenType::Hap, *id)
        } else if let Some(id) = native {
            (TokenType::Native, id)
        } else if trusted {
            (TokenType::Native, st.unconfigured)
        } else {
            (TokenType::Invalid, token::INVALID_TOKEN_ID)
        };
        Caller {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
            token_id,
            token_type,
            process_name,
        }
    }

    // ---- tokens across devices (tokensync) ----

    fn notify(&self, token_id: u32) {
        // No receiver is fine: no other device has been told about any token yet.
        let _ = self.changes.send(token_id);
    }

    /// Token ids whose permission states changed (grant, revoke, update) or that were
    /// deleted, from now on: the token sync pushes them to the devices that hold copies.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<u32> {
        self.changes.subscribe()
    }

    /// A local token's current revision and what another device needs to check permissions
    /// for it (OpenHarmony's GetHapTokenInfoFromRemote); `None` if it does not exist.
    /// Remote tokens are not exported again: a call never hops on to a third device.
    pub fn export_token(&self, token_id: u32) -> Option<(u64, RemoteTokenState)> {
        let t = self.read().tokens.get(&token_id).cloned()?;
        if matches!(t.kind, Kind::Remote(_)) {
            return None;
        }
        let granted = t
            .states
            .iter()
            .filter(|s| s.granted)
            .filter_map(|s| s.def().map(|d| d.name.to_string()))
            .collect();
        let user_id = match &t.kind {
            Kind::Hap(h) => Some(h.user_id),
            _ => None,
        };
        Some((
            t.rev,
            RemoteTokenState {
                token_type: t.token_type(),
                apl: t.apl,
                name: t.name().to_string(),
                user_id,
                granted,
            },
        ))
    }

    /// The local id of the copy of token `remote_id` of device `udid`, if this device holds
    /// that token at revision `remote_rev`.
    /// Returns the copy's local id, type and name.
    pub fn remote_token(
        &self,
        udid: &str,
        remote_id: u32,
        remote_rev: u64,
    ) -> Option<(u32, TokenType, String)> {
        let st = self.read();
        let id = *st.remote.get(&(udid.to_string(), remote_id))?;
        match &st.tokens.get(&id)?.kind {
            Kind::Remote(r) if r.remote_rev == remote_rev => {
                Some((id, r.token_type, r.name.clone()))
            }
            _ => None,
        }
    }

    /// Stores (or refreshes) the copy of token `remote_id` of device `udid` at revision
    /// `remote_rev` (OpenHarmony's SetRemoteHapTokenInfo) and returns its local id, which stays
    /// the same across refreshes. Permissions this device does not define are left out;
    /// invalid tokens are refused.
    pub fn import_remote_token(
        &self,
        udid: &str,
        remote_id: u32,
        remote_rev: u64,
        state: &RemoteTokenState,
    ) -> Result<u32, AtmError> {
        if udid.is_empty() || udid.len() > 128 {
            return Err(AtmError::InvalidArgument(format!(
                "remote device id of {} bytes",
                udid.len()
            )));
        }
        if state.token_type == TokenType::Invalid || remote_id == token::INVALID_TOKEN_ID {
            return Err(AtmError::InvalidArgument(
                "a caller without a token cannot be mapped".into(),
            ));
        }
        if state.name.len() > 256 {
            return Err(AtmError::InvalidArgument(format!(
                "remote token name of {} bytes (the limit is 256)",
                state.name.len()
            )));
        }
        let states: Vec<PermState> = state
            .granted
            .iter()
            .filter_map(|p| definitions::index_of(p))
            .map(|index| PermState {
                index,
                granted: true,
                flags: flag::SYSTEM_FIXED,
            })
            .collect();
        let kind = Kind::Remote(Box::new(RemoteKind {
            udid: udid.to_string(),
            remote_id,
            token_type: state.token_type,
            name: state.name.clone(),
            user_id: state.user_id,
            remote_rev,
        }));
        let mut st = self.write();
        let id = match st.remote.get(&(udid.to_string(), remote_id)) {
            Some(id) => *id,
            None => {
                let mut n = 0u64;
                loop {
                    let u = random_unique(n ^ u64::from(remote_id) << 20);
                    if u >= 0x100 && !st.unique_taken(u) {
                        break token::make(state.token_type, u, false, false);
                    }
                    n += 1;
                }
            }
        };
        st.remove(id);
        st.insert(Token::new(id, 0, state.apl, kind, states));
        drop(st);
        tracing::debug!(
            tag = "atm",
            public_token = id,
            public_remote_token = remote_id,
            "remote token synced"
        );
        Ok(id)
    }

    /// Drops the copy of one token of device `udid` (it was deleted there).
    pub fn remove_remote_token(&self, udid: &str, remote_id: u32) -> bool {
        let mut st = self.write();
        match st.remote.get(&(udid.to_string(), remote_id)).copied() {
            Some(id) => st.remove(id).is_some(),
            None => false,
        }
    }

    /// Drops every token copied from device `udid` (it was unbound); returns how many.
    pub fn drop_remote_device(&self, udid: &str) -> usize {
        let mut st = self.write();
        let ids: Vec<u32> = st
            .remote
            .iter()
            .filter(|((u, _), _)| u == udid)
            .map(|(_, id)| *id)
            .collect();
        for id in &ids {
            st.remove(*id);
        }
        if !ids.is_empty() {
            tracing::info!(
                tag = "atm",
                public_count = ids.len(),
                "remote tokens of an unbound device dropped"
            );
        }
        ids.len()
    }

    // ---- dump ----

    /// The service's state for `hidumper -s 3503`; `verbose` lists every token's permissions.
    pub fn dump_text(&self, verbose: bool) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let tokens = self.tokens();
        let _ = writeln!(s, "AccessTokenManagerService");
        let _ = writeln!(s, "  store: {}", self.db_path.display());
        let _ = writeln!(s, "  permission definitions: {}", definitions::count());
        let count = |t: TokenType| tokens.iter().filter(|i| i.token_type == t).count();
        let _ = writeln!(
            s,
            "  tokens: {} (hap {}, native {}, shell {})",
            tokens.len(),
            count(TokenType::Hap),
            count(TokenType::Native),
            count(TokenType::Shell)
        );
        let _ = writeln!(
            s,
            "  checks: {} verified, {} denied",
            self.stats.verified.load(Ordering::Relaxed),
            self.stats.denied.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "  usage records: {} (max {})",
            self.book().len(),
            self.config.usage_max_records
        );
        for t in &tokens {
            let _ = writeln!(
                s,
                "  {:#010x} {:<6} {:<12} {} ({}/{} granted)",
                t.token_id,
                t.token_type.as_str(),
                t.apl.as_str(),
                t.name,
                t.granted,
                t.requested
            );
            if verbose && let Ok(d) = self.token_detail(&TokenTarget::Id(t.token_id)) {
                for p in d.permissions {
                    let _ = writeln!(
                        s,
                        "      {} {} {}",
                        p.permission,
                        if p.granted { "GRANTED" } else { "DENIED" },
                        flag::names(p.flags)
                    );
                }
            }
        }
        s
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::PreAuthorization;
    use oxh_samgr::PermissionChecker;

    pub(crate) fn app(bundle: &str, uid: Option<u32>) -> HapInfoParams {
        HapInfoParams {
            user_id: 100,
            bundle_name: bundle.into(),
            inst_index: 0,
            dlp_type: DlpType::Common,
            app_id_desc: format!("{bundle}_appid"),
            api_version: 12,
            is_system_app: false,
            app_distribution_type: "app_gallery".into(),
            uid,
        }
    }

    pub(crate) fn open(dir: &Path) -> Arc<AccessTokenManager> {
        AccessTokenManager::open(dir, AtmConfig::default()).unwrap()
    }

    fn caller(token_id: u32) -> Caller {
        Caller {
            pid: 1,
            uid: 20_010_000,
            gid: 0,
            token_id,
            token_type: token::type_of(token_id),
            process_name: "app".into(),
        }
    }

    const CAMERA: &str = "ohos.permission.CAMERA";
    const INTERNET: &str = "ohos.permission.INTERNET";

    #[test]
    fn tokens_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (ex, shell, oxhd) = {
            let atm = open(dir.path());
            let mut info = app("com.example.a", Some(20_010_001));
            info.is_system_app = true;
            let ex = atm
                .alloc_hap_token(&info, &HapPolicy::normal(&[INTERNET, CAMERA]))
                .unwrap();
            assert!(ex.is_system_app());
            assert_eq!(token::type_of(ex.token_id()), TokenType::Hap);
            atm.grant_permission(ex.token_id(), CAMERA, flag::USER_FIXED)
                .unwrap();
            (
                ex,
                atm.shell_token_id(),
                atm.native_token_id("oxhd").unwrap(),
            )
        };
        let atm = open(dir.path());
        assert_eq!(atm.hap_token_id(100, "com.example.a", 0), Some(ex));
        assert!(atm.verify_token(ex.token_id(), CAMERA));
        assert!(atm.verify_token(ex.token_id(), INTERNET));
        assert_eq!(atm.shell_token_id(), shell, "native ids are stable");
        assert_eq!(atm.native_token_id("oxhd"), Some(oxhd));
        assert_eq!(token::type_of(shell), TokenType::Shell);
        assert_eq!(token::type_of(oxhd), TokenType::Native);
        let c = atm
            .check(&TokenTarget::parse("com.example.a", 100), CAMERA)
            .unwrap();
        assert!(c.granted && c.requested);
        assert_eq!(c.flags, flag::USER_FIXED);
        let d = atm.token_detail(&TokenTarget::Id(ex.token_id())).unwrap();
        assert_eq!(d.info.uid, Some(20_010_001));
        assert_eq!(d.permissions.len(), 2);
    }

    #[test]
    fn alloc_refuses_what_the_rules_refuse_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let e = atm
            .alloc_hap_token(
                &app("com.example.a", None),
                &HapPolicy::normal(&[INTERNET, "ohos.permission.INSTALL_BUNDLE"]),
            )
            .unwrap_err();
        assert_eq!(e.code(), crate::code::INVALID_PARAMETER);
        assert!(atm.hap_token_id(100, "com.example.a", 0).is_none());
        let mut p = HapPolicy::normal(&[INTERNET, "ohos.permission.INSTALL_BUNDLE"]);
        p.acls = vec!["ohos.permission.INSTALL_BUNDLE".into()];
        let ex = atm
            .alloc_hap_token(&app("com.example.a", None), &p)
            .unwrap();
        assert!(atm.verify_token(ex.token_id(), "ohos.permission.INSTALL_BUNDLE"));
        let e = atm
            .alloc_hap_token(&app("com.example.a", None), &p)
            .unwrap_err();
        assert!(matches!(e, AtmError::TokenExists(_)));
        let mut clone = app("com.example.a", None);
        clone.inst_index = 1;
        let c = atm.alloc_hap_token(&clone, &p).unwrap();
        assert!(token::is_clone(c.token_id()));
        let mut dlp = app("com.example.a", None);
        dlp.inst_index = 2;
        dlp.dlp_type = DlpType::Read;
        let d = atm.alloc_hap_token(&dlp, &p).unwrap();
        assert!(token::is_dlp(d.token_id()) && !token::is_clone(d.token_id()));
        let mut bad = app("", None);
        bad.bundle_name.clear();
        assert!(atm.alloc_hap_token(&bad, &p).is_err());
    }

    #[test]
    fn a_remote_copy_answers_as_the_origin_and_follows_its_revisions() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (open(da.path()), open(db.path()));
        let mut changes = a.subscribe_changes();
        let id = a
            .alloc_hap_token(
                &app("com.example.remote", Some(20_010_001)),
                &HapPolicy::normal(&[INTERNET, CAMERA]),
            )
            .unwrap()
            .token_id();
        let (rev1, st) = a.export_token(id).unwrap();
        assert_eq!(st.granted, vec![INTERNET.to_string()]);
        let copy = b.import_remote_token("udid-a", id, rev1, &st).unwrap();
        assert_ne!(copy, id, "local id of its own");
        assert_eq!(token::type_of(copy), TokenType::Hap);
        for p in [INTERNET, CAMERA, "ohos.permission.DUMP"] {
            assert_eq!(b.verify_token(copy, p), a.verify_token(id, p), "{p}");
        }
        assert_eq!(
            b.remote_token("udid-a", id, rev1),
            Some((copy, TokenType::Hap, "com.example.remote".into()))
        );
        assert!(
            b.caller_for(
                oxh_kal::PeerCred {
                    pid: 1,
                    uid: 20_010_001,
                    gid: 0
                },
                "x".into(),
                false,
                0,
                None
            )
            .token_id
                != copy,
            "a local uid never resolves to a remote copy"
        );

        a.grant_permission(id, CAMERA, flag::USER_SET).unwrap();
        assert_eq!(changes.try_recv().unwrap(), id, "grant announced");
        let (rev2, st2) = a.export_token(id).unwrap();
        assert!(rev2 > rev1);
        assert_eq!(
            b.remote_token("udid-a", id, rev2),
            None,
            "stale copy not used"
        );
        assert_eq!(
            b.import_remote_token("udid-a", id, rev2, &st2).unwrap(),
            copy
        );
        assert!(b.verify_token(copy, CAMERA));
        let e = b
            .revoke_permission(copy, CAMERA, flag::USER_SET)
            .unwrap_err();
        assert!(
            matches!(e, AtmError::NotAHap(_)),
            "copies change only at the origin: {e}"
        );
        assert!(b.export_token(copy).is_none(), "copies are not passed on");

        assert_eq!(b.drop_remote_device("udid-other"), 0);
        assert_eq!(b.drop_remote_device("udid-a"), 1);
        assert!(!b.verify_token(copy, INTERNET));
        assert!(b.tokens().iter().all(|t| t.remote_udid.is_none()));
        let bad = RemoteTokenState {
            token_type: TokenType::Invalid,
            ..st2
        };
        assert!(b.import_remote_token("udid-a", id, rev2, &bad).is_err());
    }

    #[test]
    fn user_grant_flow_and_fixed_flags() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let mut p = HapPolicy::normal(&[INTERNET, CAMERA, "ohos.permission.MICROPHONE"]);
        p.pre_authorized = vec![PreAuthorization {
            permission: "ohos.permission.MICROPHONE".into(),
            user_cancelable: false,
        }];
        let id = atm
            .alloc_hap_token(&app("com.example.cam", None), &p)
            .unwrap()
            .token_id();
        assert!(!atm.verify_token(id, CAMERA), "user_grant starts denied");
        assert_eq!(atm.permission_oper(id, CAMERA), PermissionOper::DynamicOper);
        atm.grant_permission(id, CAMERA, flag::USER_SET).unwrap();
        assert!(atm.verify_token(id, CAMERA));
        atm.revoke_permission(id, CAMERA, flag::USER_FIXED).unwrap();
        assert!(!atm.verify_token(id, CAMERA));
        assert_eq!(atm.permission_oper(id, CAMERA), PermissionOper::SettingOper);

        let e = atm
            .revoke_permission(id, INTERNET, flag::USER_SET)
            .unwrap_err();
        assert!(matches!(e, AtmError::NotUserGrant(_)), "{e}");
        let e = atm
            .revoke_permission(id, "ohos.permission.MICROPHONE", flag::USER_SET)
            .unwrap_err();
        assert_eq!(e.code(), crate::code::NOT_ALLOWED, "SYSTEM_FIXED stays");
        assert!(atm.verify_token(id, "ohos.permission.MICROPHONE"));
        let e = atm
            .grant_permission(id, "ohos.permission.READ_CALENDAR", flag::USER_SET)
            .unwrap_err();
        assert!(matches!(e, AtmError::NotRequested { .. }));
        let e = atm
            .grant_permission(id, "ohos.permission.NOPE", 1)
            .unwrap_err();
        assert_eq!(e.code(), crate::code::PERMISSION_NOT_EXIST);
        let e = atm.grant_permission(id, CAMERA, 0).unwrap_err();
        assert_eq!(e.code(), crate::code::INVALID_PARAMETER);
        let shell = atm.shell_token_id();
        let e = atm.grant_permission(shell, CAMERA, 1).unwrap_err();
        assert!(matches!(e, AtmError::NotAHap(_)));
        let e = atm.grant_permission(0x2000_0999, CAMERA, 1).unwrap_err();
        assert_eq!(e.code(), crate::code::TOKEN_NOT_EXIST);
    }

    #[test]
    fn update_keeps_user_decisions_and_drops_what_is_no_longer_requested() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = atm
            .alloc_hap_token(
                &app("com.example.u", Some(20_010_005)),
                &HapPolicy::normal(&[CAMERA, "ohos.permission.MICROPHONE", INTERNET]),
            )
            .unwrap()
            .token_id();
        atm.grant_permission(id, CAMERA, flag::USER_SET).unwrap();
        let info = UpdateHapInfoParams {
            app_id_desc: "x".into(),
            api_version: 13,
            is_system_app: true,
            app_distribution_type: "app_gallery".into(),
            uid: Some(20_010_005),
        };
        let ex = atm
            .update_hap_token(
                id,
                &info,
                &HapPolicy::normal(&[CAMERA, "ohos.permission.LOCATION"]),
            )
            .unwrap();
        assert_eq!(ex.token_id(), id);
        assert!(ex.is_system_app());
        assert!(atm.verify_token(id, CAMERA), "user's grant kept");
        assert!(!atm.verify_token(id, INTERNET), "no longer requested");
        let c = atm
            .check(&TokenTarget::Id(id), "ohos.permission.LOCATION")
            .unwrap();
        assert!(c.requested && !c.granted);
        assert!(
            atm.update_hap_token(
                id,
                &info,
                &HapPolicy::normal(&["ohos.permission.INSTALL_BUNDLE"])
            )
            .is_err()
        );
        assert!(
            atm.verify_token(id, CAMERA),
            "a refused update changes nothing"
        );
    }

    #[test]
    fn delete_removes_token_uid_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = atm
            .alloc_hap_token(
                &app("com.example.d", Some(20_010_002)),
                &HapPolicy::normal(&[CAMERA]),
            )
            .unwrap()
            .token_id();
        atm.record_usage(id, CAMERA, false);
        atm.delete_token(id).unwrap();
        assert!(atm.hap_token_id(100, "com.example.d", 0).is_none());
        assert!(atm.usage(&UsageArgs::default()).unwrap().is_empty());
        let c = atm.caller_for(
            oxh_kal::PeerCred {
                pid: 1,
                uid: 20_010_002,
                gid: 0,
            },
            "app".into(),
            false,
            4242,
            None,
        );
        assert_eq!(c.token_type, TokenType::Invalid);
        assert!(matches!(
            atm.delete_token(atm.shell_token_id()),
            Err(AtmError::NotAHap(_))
        ));
        drop(atm);
        let atm = open(dir.path());
        assert!(atm.hap_token_id(100, "com.example.d", 0).is_none());
        assert!(atm.usage(&UsageArgs::default()).unwrap().is_empty());
    }

    #[test]
    fn resolver_rules_by_uid_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AtmConfig::default();
        cfg.natives.push(NativeProcess {
            process_name: "kvstored".into(),
            uid: Some(3012),
            apl: Apl::SystemBasic,
            permissions: NativePermissions::fixed(&["ohos.permission.DISTRIBUTED_DATASYNC"]),
        });
        let atm = AccessTokenManager::open(dir.path(), cfg).unwrap();
        let app_id = atm
            .alloc_hap_token(
                &app("com.example.r", Some(20_010_003)),
                &HapPolicy::normal(&[]),
            )
            .unwrap()
            .token_id();
        let daemon_uid = 1000;
        let who = |uid: u32, name: &str, tool: bool| {
            atm.caller_for(
                oxh_kal::PeerCred {
                    pid: 7,
                    uid,
                    gid: 0,
                },
                name.into(),
                tool,
                daemon_uid,
                Some(2000),
            )
        };
        let c = who(0, "oxh", true);
        assert_eq!(
            (c.token_type, c.token_id),
            (TokenType::Shell, atm.shell_token_id())
        );
        let c = who(daemon_uid, "oxhd", false);
        assert_eq!(c.token_id, atm.native_token_id("oxhd").unwrap());
        let c = who(20_010_003, "app", true);
        assert_eq!((c.token_type, c.token_id), (TokenType::Hap, app_id));
        let c = who(3012, "kvstored", false);
        assert_eq!(c.token_id, atm.native_token_id("kvstored").unwrap());
        let c = who(3013, "kvstored", false);
        assert_eq!(c.token_type, TokenType::Invalid, "name alone is not enough");
        let c = who(3013, "oxhd", true);
        assert_eq!((c.token_type, c.token_id), (TokenType::Invalid, 0));
        // hdc's shell user: the tool is the shell, anything else it runs gets nothing.
        let c = who(2000, "oxh", true);
        assert_eq!(
            (c.token_type, c.token_id),
            (TokenType::Shell, atm.shell_token_id())
        );
        let c = who(2000, "sh", false);
        assert_eq!((c.token_type, c.token_id), (TokenType::Invalid, 0));
        let c = who(0, "python3", false);
        assert_eq!(c.token_type, TokenType::Native);
        assert_eq!(c.token_id, atm.unconfigured_token_id());
        assert!(atm.verify_token(c.token_id, "ohos.permission.DUMP"));
        assert!(!atm.verify_token(c.token_id, "ohos.permission.MANAGE_HAP_TOKENID"));
        assert!(atm.verify_token(
            atm.native_token_id("oxhd").unwrap(),
            "ohos.permission.MANAGE_HAP_TOKENID"
        ));
        assert!(atm.verify_token(
            atm.native_token_id("kvstored").unwrap(),
            "ohos.permission.DISTRIBUTED_DATASYNC"
        ));
        for p in crate::config::DEFAULT_SHELL_PERMISSIONS {
            assert!(atm.verify_token(atm.shell_token_id(), p), "{p}");
        }
        assert!(!atm.verify_token(atm.shell_token_id(), "ohos.permission.MANAGE_HAP_TOKENID"));
        assert!(!atm.verify_token(0, "ohos.permission.DUMP"));
        let e = atm
            .alloc_hap_token(
                &app("com.example.s", Some(20_010_003)),
                &HapPolicy::normal(&[]),
            )
            .unwrap_err();
        assert!(matches!(e, AtmError::UidInUse { .. }));
        atm.set_hap_uid(app_id, Some(20_010_009)).unwrap();
        assert_eq!(who(20_010_009, "app", false).token_id, app_id);
        assert_eq!(who(20_010_003, "app", false).token_type, TokenType::Invalid);
    }

    #[test]
    fn checker_verifies_and_records_user_grant_uses() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = atm
            .alloc_hap_token(
                &app("com.example.v", None),
                &HapPolicy::normal(&[INTERNET, CAMERA]),
            )
            .unwrap()
            .token_id();
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

    /// `verify` answers from the cache the same way every time (its speed is measured by
    /// `cargo bench --bench atm`, beside a plain map lookup, not asserted here).
    #[test]
    fn verify_answers_every_call_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = atm
            .alloc_hap_token(&app("com.example.p", None), &HapPolicy::normal(&[INTERNET]))
            .unwrap()
            .token_id();
        let c = caller(id);
        let n = 10_000;
        let hits = (0..n)
            .filter(|_| atm.verify(std::hint::black_box(&c), std::hint::black_box(INTERNET)))
            .count();
        assert_eq!(hits, n);
        assert!(!atm.verify(&c, CAMERA), "not granted");
    }

    #[test]
    fn permissions_filter() {
        let all = AccessTokenManager::permissions(&PermsArgs::default());
        assert_eq!(all.len(), 1134);
        let ug = AccessTokenManager::permissions(&PermsArgs {
            grant_mode: Some(definitions::GrantMode::UserGrant),
            level: Some(Apl::Normal),
        });
        assert!(ug.iter().any(|p| p.name == CAMERA));
        assert!(
            ug.iter()
                .all(|p| p.grant_mode == definitions::GrantMode::UserGrant
                    && p.available_level == Apl::Normal)
        );
    }
}
