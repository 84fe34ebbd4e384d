//! [`AtmTokenResolver`]: kernel credentials to tokens, for the IPC server.

use crate::service::AccessTokenManager;
use oxh_ipc::{Caller, TokenResolver};
use oxh_kal::PeerCred;
use std::path::PathBuf;
use std::sync::Arc;

/// Gives each connecting process its token (see [`crate::config`] for the rules): the shell
/// token to root or the daemon's user running the `oxh` tool (detected by executable, as
/// `oxh_ipc::ToolTokenResolver` does), an app's HAP token to its uid, a configured system
/// process its native token, other root/daemon-user processes the unconfigured native token,
/// and everyone else the invalid token 0.
#[derive(Debug, Clone)]
pub struct AtmTokenResolver {
    atm: Arc<AccessTokenManager>,
    tool_exes: Vec<PathBuf>,
    daemon_uid: u32,
    shell_uid: Option<u32>,
}

impl AtmTokenResolver {
    /// `tool_exes` are the canonical paths of the `oxh` binary; `daemon_uid` is the user the
    /// daemon runs as (trusted like root).
    pub fn new(atm: Arc<AccessTokenManager>, tool_exes: Vec<PathBuf>, daemon_uid: u32) -> Self {
        Self {
            atm,
            tool_exes,
            daemon_uid,
            shell_uid: None,
        }
    }

    /// hdc's shell user: its runs of the `oxh` tool get the shell token too (its other
    /// processes get nothing, as any other user's).
    pub fn with_shell_uid(mut self, uid: Option<u32>) -> Self {
        self.shell_uid = uid;
        self
    }
}

impl TokenResolver for AtmTokenResolver {
    fn resolve(&self, cred: PeerCred) -> Caller {
        let process_name = oxh_kal::process_name(cred.pid).unwrap_or_default();
        let trusted = cred.uid == 0 || cred.uid == self.daemon_uid;
        let shell = self.shell_uid == Some(cred.uid);
        let is_tool = (trusted || shell)
            && oxh_kal::process_exe(cred.pid).is_some_and(|e| self.tool_exes.contains(&e));
        self.atm
            .caller_for(cred, process_name, is_tool, self.daemon_uid, self.shell_uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxh_ipc::TokenType;

    #[test]
    fn this_process_resolves_from_its_real_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let atm = crate::service::tests::open(dir.path());
        let me = std::process::id() as i32;
        let uid = oxh_kal::current_uid();
        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        let cred = PeerCred {
            pid: me,
            uid,
            gid: 0,
        };
        let as_tool = AtmTokenResolver::new(atm.clone(), vec![exe], uid);
        let c = as_tool.resolve(cred);
        assert_eq!(c.token_type, TokenType::Shell);
        assert_eq!(c.token_id, atm.shell_token_id());
        let not_tool = AtmTokenResolver::new(atm.clone(), vec![], uid);
        let c = not_tool.resolve(cred);
        assert_eq!(c.token_type, TokenType::Native);
        assert_eq!(c.token_id, atm.unconfigured_token_id());
        let stranger = PeerCred {
            uid: uid.wrapping_add(4242),
            ..cred
        };
        if stranger.uid != 0 {
            let c = not_tool.resolve(stranger);
            assert_eq!((c.token_type, c.token_id), (TokenType::Invalid, 0));
        }
    }
}
