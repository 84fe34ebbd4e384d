//! The access token manager as system ability [`crate::api::SA_ID`]. Each method declares
//! OpenHarmony's permission for it (samgr checks it before the method runs); the token API
//! of the bundle manager is also system-only.

use crate::api::{
    self, AllocHapArgs, CheckArgs, GrantArgs, PermsArgs, TokenTarget, UpdateHapArgs, UsageArgs,
};
use crate::service::AccessTokenManager;
use bytes::Bytes;
use oxh_ipc::{RemoteError, decode, encode};
use oxh_samgr::{CallContext, Method, SystemAbility};

/// OpenHarmony: read another token's permission states.
pub const GET_SENSITIVE_PERMISSIONS: &str = "ohos.permission.GET_SENSITIVE_PERMISSIONS";
/// OpenHarmony: grant user_grant permissions.
pub const GRANT_SENSITIVE_PERMISSIONS: &str = "ohos.permission.GRANT_SENSITIVE_PERMISSIONS";
/// OpenHarmony: revoke user_grant permissions.
pub const REVOKE_SENSITIVE_PERMISSIONS: &str = "ohos.permission.REVOKE_SENSITIVE_PERMISSIONS";
/// OpenHarmony: read and remove permission usage records.
pub const PERMISSION_USED_STATS: &str = "ohos.permission.PERMISSION_USED_STATS";
/// OpenHarmony: create, update and delete HAP tokens (the bundle manager).
pub const MANAGE_HAP_TOKENID: &str = "ohos.permission.MANAGE_HAP_TOKENID";

const fn system_with(code: u32, name: &'static str, permission: &'static str) -> Method {
    Method {
        code,
        name,
        permission: Some(permission),
        system_only: true,
    }
}

/// Every method with what it takes to call it.
pub const METHODS: &[Method] = &[
    // The permission table is public: OpenHarmony publishes it.
    Method::open(api::LIST_PERMISSIONS, "GetDefPermissions"),
    Method::with_permission(api::LIST_TOKENS, "GetTokenList", GET_SENSITIVE_PERMISSIONS),
    Method::with_permission(api::CHECK, "VerifyAccessToken", GET_SENSITIVE_PERMISSIONS),
    Method::with_permission(
        api::TOKEN_PERMISSIONS,
        "GetReqPermissions",
        GET_SENSITIVE_PERMISSIONS,
    ),
    Method::with_permission(api::GRANT, "GrantPermission", GRANT_SENSITIVE_PERMISSIONS),
    Method::with_permission(
        api::REVOKE,
        "RevokePermission",
        REVOKE_SENSITIVE_PERMISSIONS,
    ),
    Method::with_permission(
        api::USAGE,
        "GetPermissionUsedRecords",
        PERMISSION_USED_STATS,
    ),
    Method::with_permission(
        api::REMOVE_USAGE,
        "RemovePermissionUsedRecords",
        PERMISSION_USED_STATS,
    ),
    system_with(api::ALLOC_HAP, "InitHapToken", MANAGE_HAP_TOKENID),
    system_with(api::UPDATE_HAP, "UpdateHapToken", MANAGE_HAP_TOKENID),
    system_with(api::DELETE_TOKEN, "DeleteToken", MANAGE_HAP_TOKENID),
];

#[async_trait::async_trait]
impl SystemAbility for AccessTokenManager {
    fn methods(&self) -> &'static [Method] {
        METHODS
    }

    async fn call(&self, ctx: CallContext, code: u32, data: Bytes) -> Result<Vec<u8>, RemoteError> {
        let r = self.call_inner(code, &data);
        if let Err(e) = &r
            && e.code != oxh_ipc::code::INVALID_PARAM
        {
            tracing::info!(
                tag = "atm",
                public_pid = ctx.caller().pid,
                public_method = code,
                public_code = e.code,
                "{}",
                e.message
            );
        }
        r
    }

    fn dump(&self, args: &[String]) -> String {
        let verbose = args
            .iter()
            .any(|a| matches!(a.as_str(), "-v" | "--verbose" | "verbose" | "-a"));
        self.dump_text(verbose)
    }
}

impl AccessTokenManager {
    fn call_inner(&self, code: u32, data: &[u8]) -> Result<Vec<u8>, RemoteError> {
        match code {
            api::LIST_PERMISSIONS => {
                let a: PermsArgs = decode(data)?;
                Ok(encode(&Self::permissions(&a)))
            }
            api::LIST_TOKENS => {
                let () = decode(data)?;
                Ok(encode(&self.tokens()))
            }
            api::CHECK => {
                let a: CheckArgs = decode(data)?;
                Ok(encode(&self.check(&a.target, &a.permission)?))
            }
            api::TOKEN_PERMISSIONS => {
                let t: TokenTarget = decode(data)?;
                Ok(encode(&self.token_detail(&t)?))
            }
            api::GRANT | api::REVOKE => {
                let a: GrantArgs = decode(data)?;
                let id = self.resolve_target(&a.target)?;
                if code == api::GRANT {
                    self.grant_permission(id, &a.permission, a.flags)?;
                } else {
                    self.revoke_permission(id, &a.permission, a.flags)?;
                }
                Ok(encode(&()))
            }
            api::USAGE => {
                let a: UsageArgs = decode(data)?;
                Ok(encode(&self.usage(&a)?))
            }
            api::REMOVE_USAGE => {
                let t: TokenTarget = decode(data)?;
                Ok(encode(&self.remove_usage(&t)?))
            }
            api::ALLOC_HAP => {
                let a: AllocHapArgs = decode(data)?;
                Ok(encode(&self.alloc_hap_token(&a.info, &a.policy)?))
            }
            api::UPDATE_HAP => {
                let a: UpdateHapArgs = decode(data)?;
                Ok(encode(
                    &self.update_hap_token(a.token_id, &a.info, &a.policy)?,
                ))
            }
            api::DELETE_TOKEN => {
                let id: u32 = decode(data)?;
                self.delete_token(id)?;
                Ok(encode(&()))
            }
            _ => Err(RemoteError::invalid(format!(
                "AccessTokenManagerService has no method {code}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CheckResult, TokenInfo, UsageRecord};
    use crate::rules::flag;
    use crate::service::tests::{hap_token, open};
    use oxh_ipc::{Caller, ConnHandle, TokenType};
    use oxh_samgr::{PermissionChecker, SaProfile, Samgr};
    use std::sync::Arc;

    fn conn(token_id: u32, token_type: TokenType) -> ConnHandle {
        ConnHandle::detached(Caller {
            pid: 1,
            uid: 0,
            gid: 0,
            token_id,
            token_type,
            process_name: "test".into(),
        })
        .0
    }

    async fn samgr_with(atm: &Arc<AccessTokenManager>) -> Arc<Samgr> {
        let mut s = Samgr::new(atm.clone() as Arc<dyn PermissionChecker>);
        s.register(SaProfile::running(api::SA_ID, api::SA_NAME, atm.clone()))
            .unwrap();
        s.start().await.unwrap()
    }

    async fn call<A: serde::Serialize, R: serde::de::DeserializeOwned>(
        s: &Samgr,
        c: &ConnHandle,
        code: u32,
        a: &A,
    ) -> Result<R, RemoteError> {
        use oxh_ipc::Dispatcher;
        let out = s
            .dispatch(c.clone(), api::SA_ID, code, Bytes::from(encode(a)))
            .await?;
        decode::<R>(&out)
    }

    #[test]
    fn every_method_declares_a_permission_or_is_the_public_table() {
        for m in METHODS {
            if m.code == api::LIST_PERMISSIONS {
                assert!(m.permission.is_none() && !m.system_only);
                continue;
            }
            let p = m
                .permission
                .unwrap_or_else(|| panic!("{} has no permission", m.name));
            assert!(crate::definitions::find(p).is_some(), "{p}");
        }
    }

    #[tokio::test]
    async fn the_shell_uses_the_tool_methods_through_samgrs_gate() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = hap_token(&atm, "com.example.cam", None, &["ohos.permission.CAMERA"]);
        let s = samgr_with(&atm).await;
        let shell = conn(atm.shell_token_id(), TokenType::Shell);
        let target = TokenTarget::parse("com.example.cam", 100);

        let perms: Vec<api::PermissionInfo> = call(
            &s,
            &conn(0, TokenType::Invalid),
            api::LIST_PERMISSIONS,
            &PermsArgs::default(),
        )
        .await
        .unwrap();
        assert_eq!(perms.len(), 1134);
        let tokens: Vec<TokenInfo> = call(&s, &shell, api::LIST_TOKENS, &()).await.unwrap();
        assert!(
            tokens
                .iter()
                .any(|t| t.token_id == id && t.name == "com.example.cam")
        );
        let check = CheckArgs {
            target: target.clone(),
            permission: "ohos.permission.CAMERA".into(),
        };
        let r: CheckResult = call(&s, &shell, api::CHECK, &check).await.unwrap();
        assert!(!r.granted);
        let g = GrantArgs {
            target: target.clone(),
            permission: "ohos.permission.CAMERA".into(),
            flags: flag::USER_FIXED,
        };
        let () = call(&s, &shell, api::GRANT, &g).await.unwrap();
        let r: CheckResult = call(&s, &shell, api::CHECK, &check).await.unwrap();
        assert!(r.granted && r.flags == flag::USER_FIXED);
        let () = call(&s, &shell, api::REVOKE, &g).await.unwrap();
        assert!(!atm.verify_token(id, "ohos.permission.CAMERA"));

        atm.record_usage(id, "ohos.permission.CAMERA", false);
        let u: Vec<UsageRecord> = call(&s, &shell, api::USAGE, &UsageArgs::default())
            .await
            .unwrap();
        assert_eq!(u.len(), 1);
        let n: u64 = call(&s, &shell, api::REMOVE_USAGE, &target).await.unwrap();
        assert_eq!(n, 1);

        // The shell may not manage tokens: it is not a system process.
        let e = call::<_, ()>(&s, &shell, api::DELETE_TOKEN, &id)
            .await
            .unwrap_err();
        assert_eq!(e.code, 202);
        let native = conn(atm.unconfigured_token_id(), TokenType::Native);
        let e = call::<_, ()>(&s, &native, api::DELETE_TOKEN, &id)
            .await
            .unwrap_err();
        assert_eq!(e.code, 201, "unconfigured natives lack MANAGE_HAP_TOKENID");
        let oxhd = conn(atm.native_token_id("oxhd").unwrap(), TokenType::Native);
        let () = call(&s, &oxhd, api::DELETE_TOKEN, &id).await.unwrap();
        let e = call::<_, CheckResult>(&s, &shell, api::CHECK, &check)
            .await
            .unwrap_err();
        assert_eq!(e.code, crate::code::TOKEN_NOT_EXIST);
        assert!(atm.dump(&[]).contains("AccessTokenManagerService"));
    }

    /// A caller without the permission gets 201 naming it, and nothing changes.
    #[tokio::test]
    async fn a_caller_without_the_permission_gets_201_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let atm = open(dir.path());
        let id = hap_token(&atm, "com.example.cam", None, &["ohos.permission.CAMERA"]);
        atm.record_usage(id, "ohos.permission.CAMERA", true);
        let s = samgr_with(&atm).await;
        let target = TokenTarget::Id(id);
        let g = GrantArgs {
            target: target.clone(),
            permission: "ohos.permission.CAMERA".into(),
            flags: flag::USER_SET,
        };
        let app_conn = conn(id, TokenType::Hap);
        for who in [conn(0, TokenType::Invalid), app_conn] {
            for m in METHODS.iter().filter(|m| m.permission.is_some()) {
                let data: Vec<u8> = match m.code {
                    api::LIST_TOKENS => encode(&()),
                    api::CHECK => encode(&CheckArgs {
                        target: target.clone(),
                        permission: "ohos.permission.CAMERA".into(),
                    }),
                    api::TOKEN_PERMISSIONS | api::REMOVE_USAGE => encode(&target),
                    api::GRANT | api::REVOKE => encode(&g),
                    api::USAGE => encode(&UsageArgs::default()),
                    api::DELETE_TOKEN => encode(&id),
                    _ => Vec::new(),
                };
                use oxh_ipc::Dispatcher;
                let e = s
                    .dispatch(who.clone(), api::SA_ID, m.code, Bytes::from(data))
                    .await
                    .unwrap_err();
                let want = if m.system_only { 202 } else { 201 };
                assert_eq!(e.code, want, "{}", m.name);
                if want == 201 {
                    assert!(e.message.contains(m.permission.unwrap_or_default()));
                }
            }
        }
        assert!(!atm.verify_token(id, "ohos.permission.CAMERA"));
        assert!(atm.hap_token_id(100, "com.example.cam", 0).is_some());
        assert_eq!(atm.usage(&UsageArgs::default()).unwrap().len(), 1);
    }
}
