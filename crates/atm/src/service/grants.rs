//! Permission checks (verify, check, the dialog's operation) and user grants and revocations.

use super::AccessTokenManager;
use super::cache::{Kind, Token};
use crate::api::{CheckResult, TokenTarget};
use crate::definitions;
use crate::error::AtmError;
use crate::rules::{self, Change, PermissionOper};
use crate::token;
use std::sync::Arc;

impl AccessTokenManager {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{HapPolicy, PreAuthorization, flag};
    use crate::service::tests::{CAMERA, INTERNET, app, caller, open};
    use oxh_samgr::PermissionChecker;

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
}
