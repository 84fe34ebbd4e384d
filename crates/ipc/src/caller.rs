//! Who is calling: kernel credentials turned into an access token.

use oxh_kal::PeerCred;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// OpenHarmony's token types (ATokenTypeEnum); `Invalid` is a caller with no permissions.
/// Serialized as OpenHarmony's tools print them ("hap", "native", "shell", "invalid").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// An installed application.
    #[serde(alias = "Hap")]
    Hap,
    /// A system process (native service).
    #[serde(alias = "Native")]
    Native,
    /// The shell: command-line tools run by a developer.
    #[serde(alias = "Shell")]
    Shell,
    /// Anyone else: a local process that is neither; it holds no permissions.
    #[serde(alias = "Invalid")]
    Invalid,
}

impl TokenType {
    /// The name OpenHarmony's tools print for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Hap => "hap",
            TokenType::Native => "native",
            TokenType::Shell => "shell",
            TokenType::Invalid => "invalid",
        }
    }
}

/// The caller of an SA method, fixed when its connection was accepted. JSON names as
/// OpenHarmony's IPCSkeleton getters (callingPid, callingUid, callingTokenID) drop their
/// prefix: pid, uid, gid, tokenID, tokenType, processName.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// Process id (kernel).
    pub pid: i32,
    /// User id (kernel).
    pub uid: u32,
    /// Group id (kernel).
    pub gid: u32,
    /// OpenHarmony-layout AccessTokenID (0 for an invalid token).
    #[serde(rename = "tokenID")]
    pub token_id: u32,
    /// What kind of token it is.
    pub token_type: TokenType,
    /// The process's name as the kernel knows it, for logs and dumps.
    pub process_name: String,
}

impl Caller {
    /// True for callers that OpenHarmony treats as part of the system (native or shell at
    /// least for reads); system-only methods ask this.
    pub fn is_native(&self) -> bool {
        self.token_type == TokenType::Native
    }
}

/// Why a caller may not act for an app ([`Caller::app`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppRefused {
    /// A HAP token the access-token manager does not know (201).
    #[error("the caller's app is unknown")]
    UnknownApp,
    /// An app named another app (201).
    #[error("app {own} may not open the stores of {named}")]
    OtherApp {
        /// The caller's own bundle.
        own: String,
        /// The one it named.
        named: String,
    },
    /// A native or shell caller did not name the app (401).
    #[error("name the app (bundleName) whose store to use")]
    Unnamed,
    /// A caller without a token (201).
    #[error("a caller without a token has no stores")]
    NoToken,
}

impl AppRefused {
    /// OpenHarmony's code: 401 when the app must be named, else 201.
    pub fn code(&self) -> i32 {
        match self {
            AppRefused::Unnamed => crate::code::INVALID_PARAM,
            _ => crate::code::PERMISSION_DENIED,
        }
    }
}

impl Caller {
    /// The app whose data a caller reaches (the data services' rule): a HAP token's own bundle
    /// (`own_bundle` maps its token id, the access-token manager's answer), which it may name
    /// or leave out; the bundle a native or shell caller names. The caller's identity is the
    /// kernel's, never the request's. The name itself is for the service to check.
    pub fn app(
        &self,
        named: Option<&str>,
        own_bundle: impl FnOnce(u32) -> Option<String>,
    ) -> Result<String, AppRefused> {
        match self.token_type {
            TokenType::Hap => {
                let own = own_bundle(self.token_id).ok_or(AppRefused::UnknownApp)?;
                match named {
                    Some(n) if n != own => Err(AppRefused::OtherApp {
                        own,
                        named: n.to_string(),
                    }),
                    _ => Ok(own),
                }
            }
            TokenType::Native | TokenType::Shell => {
                named.map(String::from).ok_or(AppRefused::Unnamed)
            }
            TokenType::Invalid => Err(AppRefused::NoToken),
        }
    }
}

/// Turns kernel credentials into a caller. The daemon wires in the access-token manager's
/// resolver; [`ToolTokenResolver`] is the built-in one.
pub trait TokenResolver: Send + Sync + 'static {
    /// Resolves the caller of a just-accepted connection.
    fn resolve(&self, cred: PeerCred) -> Caller;
}

/// Version bits (29-31 = 1) of OpenHarmony's AccessTokenID.
const TOKEN_VERSION: u32 = 1 << 29;
/// Type bits 27-28.
const TOKEN_TYPE_SHIFT: u32 = 27;

/// Builds an AccessTokenID in OpenHarmony's 32-bit layout.
pub fn make_token_id(token_type: TokenType, unique: u32) -> u32 {
    let t = match token_type {
        TokenType::Hap => 0,
        TokenType::Native => 1,
        TokenType::Shell => 2,
        TokenType::Invalid => return 0,
    };
    TOKEN_VERSION | (t << TOKEN_TYPE_SHIFT) | (unique & 0xF_FFFF)
}

/// The built-in resolver, for processes of root or of the daemon's own user: one running
/// oxharmony's tool binary gets the shell token, any other is a system process (native
/// token). Every other local user gets a token without permissions, whatever it runs.
#[derive(Debug, Clone)]
pub struct ToolTokenResolver {
    tool_exes: Vec<PathBuf>,
    daemon_uid: u32,
}

impl ToolTokenResolver {
    /// `tool_exes` are the canonical paths of the `oxh` binary (every tool link resolves to it).
    pub fn new(tool_exes: Vec<PathBuf>, daemon_uid: u32) -> Self {
        Self {
            tool_exes,
            daemon_uid,
        }
    }
}

fn fnv20(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0xF_FFFF).max(2)
}

impl TokenResolver for ToolTokenResolver {
    fn resolve(&self, cred: PeerCred) -> Caller {
        let process_name = oxh_kal::process_name(cred.pid).unwrap_or_default();
        let exe = oxh_kal::process_exe(cred.pid);
        let is_tool = exe
            .as_ref()
            .is_some_and(|e| self.tool_exes.iter().any(|t| t == e));
        let trusted_uid = cred.uid == 0 || cred.uid == self.daemon_uid;
        let (token_type, unique) = if !trusted_uid {
            // Running the tool does not make another user the shell: OpenHarmony gives the
            // shell token to the shell user only.
            (TokenType::Invalid, 0)
        } else if is_tool {
            (TokenType::Shell, 1)
        } else {
            (TokenType::Native, fnv20(&process_name))
        };
        Caller {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
            token_id: make_token_id(token_type, unique),
            token_type,
            process_name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_is_its_token_and_the_system_names_one() {
        let c = |t, token_id| Caller {
            pid: 1,
            uid: 0,
            gid: 0,
            token_id,
            token_type: t,
            process_name: "t".into(),
        };
        let own = |id| (id == 7).then(|| "com.a".to_string());
        let app = c(TokenType::Hap, 7);
        assert_eq!(app.app(None, own).unwrap(), "com.a");
        assert_eq!(app.app(Some("com.a"), own).unwrap(), "com.a");
        let e = app.app(Some("com.b"), own).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (201, "app com.a may not open the stores of com.b")
        );
        assert_eq!(
            c(TokenType::Hap, 8).app(None, own),
            Err(AppRefused::UnknownApp)
        );
        let sh = c(TokenType::Shell, 0);
        assert_eq!(sh.app(Some("com.b"), own).unwrap(), "com.b");
        assert_eq!(sh.app(None, own).unwrap_err().code(), 401);
        assert_eq!(
            c(TokenType::Invalid, 0)
                .app(Some("com.a"), own)
                .unwrap_err()
                .code(),
            201
        );
    }

    #[test]
    fn token_layout_matches_openharmony() {
        let n = make_token_id(TokenType::Native, 5);
        assert_eq!(n >> 29, 1, "version 1");
        assert_eq!((n >> 27) & 3, 1, "native type");
        assert_eq!(n & 0xF_FFFF, 5);
        assert_eq!((make_token_id(TokenType::Shell, 1) >> 27) & 3, 2);
        assert_eq!(make_token_id(TokenType::Invalid, 9), 0);
    }

    #[test]
    fn resolver_tells_tool_system_and_stranger_apart() {
        let me = std::process::id() as i32;
        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        let uid = oxh_kal::current_uid();
        let as_tool = ToolTokenResolver::new(vec![exe], uid);
        let c = as_tool.resolve(PeerCred {
            pid: me,
            uid,
            gid: 0,
        });
        assert_eq!(c.token_type, TokenType::Shell);
        let not_tool = ToolTokenResolver::new(vec![], uid);
        assert_eq!(
            not_tool
                .resolve(PeerCred {
                    pid: me,
                    uid,
                    gid: 0
                })
                .token_type,
            TokenType::Native
        );
        let stranger = not_tool.resolve(PeerCred {
            pid: me,
            uid: uid.wrapping_add(4242),
            gid: 0,
        });
        if uid.wrapping_add(4242) != 0 {
            assert_eq!(stranger.token_type, TokenType::Invalid);
            assert_eq!(stranger.token_id, 0);
        }
    }
}
