//! Helpers the unit tests of the service (and of `sa` and `resolver`) share, and the tests of
//! opening the store.

use super::AccessTokenManager;
use crate::api::TokenTarget;
use crate::config::AtmConfig;
use crate::rules::{HapPolicy, flag};
use crate::token;
use oxh_ipc::{Caller, TokenType};
use std::path::Path;
use std::sync::Arc;

pub(crate) use crate::test_util::app;

/// Installs `bundle` (see [`app`]) requesting `perms`; its token id.
pub(crate) fn hap_token(
    atm: &AccessTokenManager,
    bundle: &str,
    uid: Option<u32>,
    perms: &[&str],
) -> u32 {
    atm.alloc_hap_token(&app(bundle, uid), &HapPolicy::normal(perms))
        .unwrap()
        .token_id()
}

pub(crate) fn open(dir: &Path) -> Arc<AccessTokenManager> {
    AccessTokenManager::open(dir, AtmConfig::default()).unwrap()
}

pub(crate) fn caller(token_id: u32) -> Caller {
    Caller {
        pid: 1,
        uid: 20_010_000,
        gid: 0,
        token_id,
        token_type: token::type_of(token_id),
        process_name: "app".into(),
    }
}

pub(crate) const CAMERA: &str = "ohos.permission.CAMERA";
pub(crate) const INTERNET: &str = "ohos.permission.INTERNET";

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
