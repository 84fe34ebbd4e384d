//! Tokens across devices (tokensync): change announcements, exporting local tokens, and the
//! copies of other devices' tokens.

use super::cache::{Kind, RemoteKind, Token};
use super::{AccessTokenManager, random_unique};
use crate::api::RemoteTokenState;
use crate::definitions;
use crate::error::AtmError;
use crate::rules::{PermState, flag};
use crate::token;
use oxh_ipc::TokenType;

impl AccessTokenManager {
    pub(super) fn notify(&self, token_id: u32) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{CAMERA, INTERNET, hap_token, open};

    #[test]
    fn a_remote_copy_answers_as_the_origin_and_follows_its_revisions() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (open(da.path()), open(db.path()));
        let mut changes = a.subscribe_changes();
        let id = hap_token(
            &a,
            "com.example.remote",
            Some(20_010_001),
            &[INTERNET, CAMERA],
        );
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
}
