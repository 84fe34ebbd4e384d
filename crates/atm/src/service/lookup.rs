//! Finding tokens: by app key, process name or [`TokenTarget`], and the caller for a peer's
//! kernel credentials.

use super::AccessTokenManager;
use super::cache::Kind;
use crate::api::TokenTarget;
use crate::error::AtmError;
use crate::token::{self, AccessTokenIdEx};
use oxh_ipc::{Caller, TokenType};

impl AccessTokenManager {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AtmConfig, NativePermissions, NativeProcess};
    use crate::definitions::Apl;
    use crate::rules::HapPolicy;
    use crate::service::tests::{app, hap_token};

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
        let app_id = hap_token(&atm, "com.example.r", Some(20_010_003), &[]);
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
}
