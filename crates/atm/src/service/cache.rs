//! The in-memory tokens: [`Token`] with its permission bit set, and the [`State`] maps that find
//! tokens by id, app key, uid, process name and remote origin.

use crate::api::TokenInfo;
use crate::config::SHELL_PROCESS;
use crate::definitions::{self, Apl};
use crate::rules::{PermState, PermissionStatus};
use crate::store::HapRow;
use crate::token;
use oxh_ipc::TokenType;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What kind of token, with what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) struct RemoteKind {
    pub(super) udid: String,
    pub(super) remote_id: u32,
    pub(super) token_type: TokenType,
    pub(super) name: String,
    pub(super) user_id: Option<i32>,
    /// The origin device's revision of the states this copy holds.
    pub(super) remote_rev: u64,
}

/// Revisions of tokens: every new version of a token (creation, grant, revoke, update) takes
/// the next one, so "has this device seen the current state?" is one comparison.
static NEXT_REV: AtomicU64 = AtomicU64::new(1);

/// One token in memory.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) id: u32,
    pub(super) rev: u64,
    pub(super) attr: u32,
    pub(super) apl: Apl,
    pub(super) kind: Kind,
    /// Sorted by index.
    pub(super) states: Vec<PermState>,
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
    pub(super) fn new(
        id: u32,
        attr: u32,
        apl: Apl,
        kind: Kind,
        mut states: Vec<PermState>,
    ) -> Self {
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

    pub(super) fn holds(&self, index: u16) -> bool {
        let i = usize::from(index);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(super) fn state(&self, index: u16) -> Option<PermState> {
        self.states
            .binary_search_by_key(&index, |s| s.index)
            .ok()
            .and_then(|i| self.states.get(i).copied())
    }

    pub(super) fn name(&self) -> &str {
        match &self.kind {
            Kind::Hap(h) => &h.bundle_name,
            Kind::Native { process_name, .. } => process_name,
            Kind::Shell => SHELL_PROCESS,
            Kind::Remote(r) => &r.name,
        }
    }

    pub(super) fn label(&self) -> String {
        format!("{} ({:#010x})", self.name(), self.id)
    }

    pub(super) fn token_type(&self) -> TokenType {
        match self.kind {
            Kind::Hap(_) => TokenType::Hap,
            Kind::Native { .. } => TokenType::Native,
            Kind::Shell => TokenType::Shell,
            Kind::Remote(ref r) => r.token_type,
        }
    }

    pub(super) fn info(&self) -> TokenInfo {
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

    pub(super) fn statuses(&self) -> Vec<PermissionStatus> {
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

pub(super) type HapKey = (i32, String, i32);

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) tokens: HashMap<u32, Arc<Token>>,
    pub(super) haps: HashMap<HapKey, u32>,
    pub(super) by_uid: HashMap<u32, u32>,
    pub(super) natives: HashMap<String, u32>,
    /// (origin udid, token id there) -> local id.
    pub(super) remote: HashMap<(String, u32), u32>,
    pub(super) shell: u32,
    pub(super) unconfigured: u32,
}

impl State {
    pub(super) fn unique_taken(&self, unique: u32) -> bool {
        self.tokens.keys().any(|id| token::unique_of(*id) == unique)
    }

    pub(super) fn insert(&mut self, t: Token) {
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

    pub(super) fn remove(&mut self, id: u32) -> Option<Arc<Token>> {
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
