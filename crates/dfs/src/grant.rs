//! URI grants, as OpenHarmony's `fileShare` and its sandbox manager keep them: which app may
//! open which file URI, with which operation modes.
//!
//! - A **temporary** grant (`grantUriPermission`, the sandbox manager's SetPolicy) lives as
//!   long as the receiving app's process: [`Grants::process_exited`] ends it.
//! - `persistPermission` turns a grant the app holds into a **persisted** one, which survives
//!   restarts but is usable only once `activatePermission` activated it in the running process
//!   (and again after each restart); `deactivatePermission` and the process's exit make it
//!   inactive, `revokePermission` removes it.
//! - Uninstalling an app removes every grant it holds and every grant on its files
//!   ([`Grants::uninstalled`]).
//!
//! A grant on a directory covers what is below it. Each call takes at most [`MAX_POLICIES`]
//! policies (OpenHarmony's limit; more is a parameter error) and answers per policy: the
//! ones that failed, with OpenHarmony's [`PolicyErrorCode`]s. The core is pure: the service
//! stores [`Grants::persisted`] and replays it with [`Grants::restore`].

use crate::uri::FileUri;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The most policies one call takes (the sandbox manager's vector limit).
pub const MAX_POLICIES: usize = 500;
/// The most grants one app may hold (temporary and persisted together): a bound on what a
/// caller can make the service keep.
pub const MAX_GRANTS_PER_APP: usize = 10_000;

/// `fileShare.OperationMode`.
pub mod mode {
    /// READ_MODE.
    pub const READ: u32 = 1;
    /// WRITE_MODE.
    pub const WRITE: u32 = 1 << 1;
    /// CREATE_MODE.
    pub const CREATE: u32 = 1 << 2;
    /// DELETE_MODE.
    pub const DELETE: u32 = 1 << 3;
    /// RENAME_MODE.
    pub const RENAME: u32 = 1 << 4;
    /// Every mode.
    pub const ALL: u32 = READ | WRITE | CREATE | DELETE | RENAME;
}

/// `fileShare.PolicyErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum PolicyErrorCode {
    /// PERSISTENCE_FORBIDDEN: the app holds no grant on the URI to persist.
    PersistenceForbidden = 1,
    /// INVALID_MODE: no mode, an unknown bit, or more than the grant gives.
    InvalidMode = 2,
    /// INVALID_PATH: not a file URI.
    InvalidPath = 3,
    /// PERMISSION_NOT_PERSISTED: nothing persisted to activate, deactivate or revoke.
    PermissionNotPersisted = 4,
}

/// `fileShare.PolicyInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The file URI.
    pub uri: String,
    /// [`mode`] bits.
    #[serde(rename = "operationMode")]
    pub operation_mode: u32,
}

/// `fileShare.PolicyErrorResult`: one policy that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyErrorResult {
    /// The policy's URI.
    pub uri: String,
    /// Why.
    pub code: PolicyErrorCode,
    /// Why, in words.
    pub message: String,
}

/// Why a whole call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// More than [`MAX_POLICIES`] policies, or none (401, a parameter error).
    #[error("Parameter error. {0}")]
    Param(String),
    /// The app would hold more than [`MAX_GRANTS_PER_APP`] grants.
    #[error("Operation not permitted. the app holds {MAX_GRANTS_PER_APP} grants already")]
    TooMany,
}

/// A grant held by an app (by its token), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The receiving app's token.
    pub token: u32,
    /// The URI's bundle (the owner of the file).
    pub owner: String,
    /// The URI's path in the owner's sandbox.
    pub path: String,
    /// The URI's device (None: this one).
    pub network_id: Option<String>,
    /// [`mode`] bits.
    pub mode: u32,
    /// Persisted (survives restarts).
    pub persisted: bool,
    /// Usable now: always for a temporary grant, after activation for a persisted one.
    #[serde(skip)]
    pub active: bool,
    /// The process a temporary grant lives with (None: until deactivated or the app's next
    /// exit is seen).
    #[serde(skip)]
    pub pid: Option<i32>,
}

impl Grant {
    fn covers(&self, u: &FileUri) -> bool {
        self.owner == u.authority()
            && self.network_id.as_deref() == u.network_id()
            && below(u.path(), &self.path)
    }
    fn same(&self, u: &FileUri) -> bool {
        self.owner == u.authority()
            && self.network_id.as_deref() == u.network_id()
            && self.path == u.path()
    }
}

/// Whether `path` is `dir` or below it (by components, so `/a/bc` is not below `/a/b`).
fn below(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

fn parse(p: &PolicyInfo) -> Result<FileUri, PolicyErrorResult> {
    let u: FileUri = p.uri.parse().map_err(|e| PolicyErrorResult {
        uri: p.uri.clone(),
        code: PolicyErrorCode::InvalidPath,
        message: format!("invalid path: {e}"),
    })?;
    if u.path().split('/').any(|c| c == "..") {
        return Err(PolicyErrorResult {
            uri: p.uri.clone(),
            code: PolicyErrorCode::InvalidPath,
            message: "invalid path: `..` in the URI".into(),
        });
    }
    if p.operation_mode == 0 || p.operation_mode & !mode::ALL != 0 {
        return Err(PolicyErrorResult {
            uri: p.uri.clone(),
            code: PolicyErrorCode::InvalidMode,
            message: format!("invalid mode {:#b}", p.operation_mode),
        });
    }
    Ok(u)
}

fn check_count(policies: &[PolicyInfo]) -> Result<(), GrantError> {
    match policies.len() {
        0 => Err(GrantError::Param("no policies".into())),
        n if n > MAX_POLICIES => Err(GrantError::Param(format!(
            "{n} policies: at most {MAX_POLICIES} a call"
        ))),
        _ => Ok(()),
    }
}

/// What a per-policy call answers: Ok, or the policies that failed (OpenHarmony's 13900001
/// with the results in `data`).
pub type PolicyResults = Result<(), Vec<PolicyErrorResult>>;

fn results(errs: Vec<PolicyErrorResult>) -> PolicyResults {
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Every app's grants on this device.
#[derive(Debug, Default)]
pub struct Grants {
    by_token: HashMap<u32, Vec<Grant>>,
}

impl Grants {
    /// No grants.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts back persisted grants read from the store (inactive until activated).
    pub fn restore(&mut self, grants: impl IntoIterator<Item = Grant>) {
        for mut g in grants {
            g.persisted = true;
            g.active = false;
            g.pid = None;
            self.by_token.entry(g.token).or_default().push(g);
        }
    }

    /// The persisted grants, for the store.
    pub fn persisted(&self) -> Vec<Grant> {
        let mut v: Vec<Grant> = self
            .by_token
            .values()
            .flatten()
            .filter(|g| g.persisted)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.token, &a.owner, &a.path).cmp(&(b.token, &b.owner, &b.path)));
        v
    }

    /// The grants `token` holds.
    pub fn of(&self, token: u32) -> &[Grant] {
        self.by_token.get(&token).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A temporary grant of `policies` to the app `token`, living with its process `pid`
    /// (grantUriPermission / SetPolicy). Modes add to what the app already holds on a URI.
    pub fn grant(
        &mut self,
        token: u32,
        pid: Option<i32>,
        policies: &[PolicyInfo],
    ) -> Result<PolicyResults, GrantError> {
        check_count(policies)?;
        let mut errs = Vec::new();
        let mut add: Vec<(FileUri, u32)> = Vec::new();
        for p in policies {
            match parse(p) {
                Ok(u) => add.push((u, p.operation_mode)),
                Err(e) => errs.push(e),
            }
        }
        let held = self.of(token);
        let mut new: Vec<&FileUri> = add
            .iter()
            .map(|(u, _)| u)
            .filter(|u| !held.iter().any(|g| g.same(u) && !g.persisted))
            .collect();
        new.dedup_by(|a, b| a == b);
        if held.len() + new.len() > MAX_GRANTS_PER_APP {
            return Err(GrantError::TooMany);
        }
        let list = self.by_token.entry(token).or_default();
        for (u, m) in add {
            match list.iter_mut().find(|g| g.same(&u) && !g.persisted) {
                Some(g) => {
                    g.mode |= m;
                    g.pid = pid;
                }
                None => list.push(Grant {
                    token,
                    owner: u.authority().to_string(),
                    path: u.path().to_string(),
                    network_id: u.network_id().map(str::to_string),
                    mode: m,
                    persisted: false,
                    active: true,
                    pid,
                }),
            }
        }
        Ok(results(errs))
    }

    /// persistPermission: each policy must be covered by a temporary grant the app holds
    /// with at least its modes (PERSISTENCE_FORBIDDEN otherwise).
    pub fn persist(
        &mut self,
        token: u32,
        policies: &[PolicyInfo],
    ) -> Result<PolicyResults, GrantError> {
        check_count(policies)?;
        let mut errs = Vec::new();
        let list = self.by_token.entry(token).or_default();
        for p in policies {
            let u = match parse(p) {
                Ok(u) => u,
                Err(e) => {
                    errs.push(e);
                    continue;
                }
            };
            let m = p.operation_mode;
            let granted = list
                .iter()
                .any(|g| !g.persisted && g.covers(&u) && g.mode & m == m);
            if !granted {
                errs.push(PolicyErrorResult {
                    uri: p.uri.clone(),
                    code: PolicyErrorCode::PersistenceForbidden,
                    message: "the app holds no grant on it with these modes".into(),
                });
                continue;
            }
            match list.iter_mut().find(|g| g.persisted && g.same(&u)) {
                Some(g) => g.mode |= m,
                None => list.push(Grant {
                    token,
                    owner: u.authority().to_string(),
                    path: u.path().to_string(),
                    network_id: u.network_id().map(str::to_string),
                    mode: m,
                    persisted: true,
                    // Persisting in the running process keeps it usable there.
                    active: true,
                    pid: None,
                }),
            }
        }
        Ok(results(errs))
    }

    /// The persisted grant of `token` named by `p`, or why there is none.
    fn persisted_mut<'a>(
        list: &'a mut [Grant],
        p: &PolicyInfo,
    ) -> Result<&'a mut Grant, PolicyErrorResult> {
        let u = parse(p)?;
        let m = p.operation_mode;
        list.iter_mut()
            .find(|g| g.persisted && g.same(&u) && g.mode & m == m)
            .ok_or_else(|| PolicyErrorResult {
                uri: p.uri.clone(),
                code: PolicyErrorCode::PermissionNotPersisted,
                message: "no persisted grant with these modes".into(),
            })
    }

    fn each_persisted(
        &mut self,
        token: u32,
        policies: &[PolicyInfo],
        mut f: impl FnMut(&mut Grant),
    ) -> Result<PolicyResults, GrantError> {
        check_count(policies)?;
        let list = self.by_token.entry(token).or_default();
        let mut errs = Vec::new();
        for p in policies {
            match Self::persisted_mut(list, p) {
                Ok(g) => f(g),
                Err(e) => errs.push(e),
            }
        }
        Ok(results(errs))
    }

    /// activatePermission: the persisted grants become usable in the running process.
    pub fn activate(
        &mut self,
        token: u32,
        policies: &[PolicyInfo],
    ) -> Result<PolicyResults, GrantError> {
        self.each_persisted(token, policies, |g| g.active = true)
    }

    /// deactivatePermission: they stay persisted but are not usable until activated again.
    pub fn deactivate(
        &mut self,
        token: u32,
        policies: &[PolicyInfo],
    ) -> Result<PolicyResults, GrantError> {
        self.each_persisted(token, policies, |g| g.active = false)
    }

    /// revokePermission: the persisted grants go (and the temporary ones on the same URIs,
    /// so the app cannot go on using what it gave back).
    pub fn revoke(
        &mut self,
        token: u32,
        policies: &[PolicyInfo],
    ) -> Result<PolicyResults, GrantError> {
        let mut gone = Vec::new();
        let r = self.each_persisted(token, policies, |g| {
            gone.push((g.owner.clone(), g.path.clone(), g.network_id.clone()));
            g.mode = 0;
        })?;
        if let Some(list) = self.by_token.get_mut(&token) {
            list.retain(|g| {
                g.mode != 0
                    && !gone
                        .iter()
                        .any(|(o, p, n)| (o, p, n) == (&g.owner, &g.path, &g.network_id))
            });
        }
        Ok(r)
    }

    /// checkPersistentPermission: whether each policy is persisted with its modes.
    pub fn check_persistent(
        &self,
        token: u32,
        policies: &[PolicyInfo],
    ) -> Result<Vec<bool>, GrantError> {
        check_count(policies)?;
        let list = self.of(token);
        Ok(policies
            .iter()
            .map(|p| {
                parse(p).is_ok_and(|u| {
                    let m = p.operation_mode;
                    list.iter()
                        .any(|g| g.persisted && g.same(&u) && g.mode & m == m)
                })
            })
            .collect())
    }

    /// Whether the app `token` may use `uri` with `modes` now (an active grant covering it).
    pub fn allows(&self, token: u32, uri: &FileUri, modes: u32) -> bool {
        modes != 0
            && self
                .of(token)
                .iter()
                .any(|g| g.active && g.covers(uri) && g.mode & modes == modes)
    }

    /// The app's process `pid` (of token `token`) ended: its temporary grants end and its
    /// persisted ones need activating again.
    pub fn process_exited(&mut self, token: u32, pid: i32) {
        if let Some(list) = self.by_token.get_mut(&token) {
            list.retain(|g| g.persisted || g.pid.is_some_and(|p| p != pid));
            for g in list.iter_mut().filter(|g| g.persisted) {
                g.active = false;
            }
        }
    }

    /// The app `bundle` (token `token`) was uninstalled: the grants it held and every grant
    /// on its files go. True when anything persisted went (the store must be rewritten).
    pub fn uninstalled(&mut self, token: u32, bundle: &str) -> bool {
        let before = self.persisted().len();
        self.by_token.remove(&token);
        for list in self.by_token.values_mut() {
            list.retain(|g| g.owner != bundle);
        }
        self.by_token.retain(|_, l| !l.is_empty());
        self.persisted().len() != before
    }
}

#[cfg(test)]
#[path = "grant_tests.rs"]
mod tests;
