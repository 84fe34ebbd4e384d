//! The bundle manager's token API: allocating, updating and deleting app tokens, and their uids.

use super::cache::{Kind, State, Token};
use super::{AccessTokenManager, random_unique};
use crate::error::AtmError;
use crate::rules::{
    self, AppKind, DlpType, HapInfoParams, HapPolicy, PermState, UpdateHapInfoParams, flag,
};
use crate::store::HapRow;
use crate::token::{self, AccessTokenIdEx};
use oxh_ipc::TokenType;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TokenTarget, UsageArgs};
    use crate::service::tests::{CAMERA, INTERNET, app, hap_token, open};

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
    fn update_keeps_user_decisions_and_drops_what_is_no_longer_requested() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = hap_token(
            &atm,
            "com.example.u",
            Some(20_010_005),
            &[CAMERA, "ohos.permission.MICROPHONE", INTERNET],
        );
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
        let id = hap_token(&atm, "com.example.d", Some(20_010_002), &[CAMERA]);
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
}
