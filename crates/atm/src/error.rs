//! Errors of the access token manager, with OpenHarmony's abilityAccessCtrl error codes.

use oxh_ipc::RemoteError;

/// OpenHarmony's access-control error codes (`@ohos.abilityAccessCtrl`,
/// `@ohos.privacyManager`), defined once here; the SDK and CLI match on these.
pub mod code {
    /// The caller lacks the permission the method needs.
    pub const PERMISSION_DENIED: i32 = oxh_ipc::code::PERMISSION_DENIED;
    /// The caller is not a system process.
    pub const NOT_SYSTEM: i32 = oxh_ipc::code::NOT_SYSTEM;
    /// "Invalid parameter": token id 0, a name over 256 characters, bad flags, a request the
    /// grant rules refuse, a token that already exists.
    pub const INVALID_PARAMETER: i32 = 12_100_001;
    /// "The specified tokenID does not exist."
    pub const TOKEN_NOT_EXIST: i32 = 12_100_002;
    /// "The specified permission does not exist or is not a user_grant permission."
    pub const PERMISSION_NOT_EXIST: i32 = 12_100_003;
    /// "The application specified by the tokenID is not allowed to be granted with the
    /// specified permission" (fixed by the system or policy, or not an application token).
    pub const NOT_ALLOWED: i32 = 12_100_006;
    /// "The service is abnormal." (here: storage failures)
    pub const SERVICE_ABNORMAL: i32 = 12_100_007;
}

/// Which grant rule refused a requested permission (OpenHarmony's PermissionRulesEnum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RefusalRule {
    /// The app's APL is below the permission's level and no ACL lets it request it (or the
    /// permission is not provisionEnable).
    Acl,
    /// An MDM permission requested by an app that is not an enterprise MDM app.
    Mdm,
    /// An enterprise permission requested by an app that is neither enterprise nor system.
    EnterpriseNormal,
}

impl RefusalRule {
    /// Why, for a person.
    pub fn explain(self) -> &'static str {
        match self {
            RefusalRule::Acl => {
                "the app's APL is below the permission's level and its profile's allowed-acls do not list it"
            }
            RefusalRule::Mdm => "it is an MDM permission and the app is not an enterprise MDM app",
            RefusalRule::EnterpriseNormal => {
                "it is an enterprise permission and the app is neither an enterprise nor a system app"
            }
        }
    }
}

/// Why an access-token operation failed. None of them left anything changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtmError {
    /// A malformed argument.
    #[error("Invalid parameter: {0}")]
    InvalidArgument(String),
    /// No such token (or bundle).
    #[error("The specified token does not exist: {0}")]
    TokenNotFound(String),
    /// OpenHarmony defines no such permission.
    #[error("The specified permission does not exist: {0}")]
    PermissionNotDefined(String),
    /// Grant or revoke of a permission the user does not control.
    #[error("{0} is not a user_grant permission: only the system grants it")]
    NotUserGrant(String),
    /// Grant or revoke of a permission the app did not request (or was not allowed).
    #[error("{permission} is not requested by {token}")]
    NotRequested {
        /// The permission.
        permission: String,
        /// The token, as `name (0x...)`.
        token: String,
    },
    /// The permission's state is fixed by the system or a policy; the user cannot change it.
    #[error(
        "{permission} of {token} is fixed by the system (flags {flags:#x}); it cannot be changed by the user"
    )]
    Fixed {
        /// The permission.
        permission: String,
        /// The token, as `name (0x...)`.
        token: String,
        /// Its current flags.
        flags: u32,
    },
    /// The operation applies to application (HAP) tokens only.
    #[error("{0} is not an application token; only an application's permissions can be changed")]
    NotAHap(String),
    /// A requested permission that the grant rules refuse; the token was not created.
    #[error("{bundle} may not request {permission}: {}", rule.explain())]
    RequestRefused {
        /// The bundle.
        bundle: String,
        /// The permission.
        permission: String,
        /// The rule that refused it.
        rule: RefusalRule,
    },
    /// A token for this (user, bundle, instance) exists already; update it instead.
    #[error("a token for {0} exists already (update or delete it first)")]
    TokenExists(String),
    /// The uid is the uid of another app's token.
    #[error("uid {uid} belongs to another token ({owner:#x})")]
    UidInUse {
        /// The uid.
        uid: u32,
        /// The token that has it.
        owner: u32,
    },
    /// Storage failed (SQLite); nothing was applied.
    #[error("The service is abnormal: {0}")]
    Storage(String),
}

impl AtmError {
    /// The OpenHarmony error code for this error, from [`code`].
    pub fn code(&self) -> i32 {
        match self {
            AtmError::InvalidArgument(_)
            | AtmError::RequestRefused { .. }
            | AtmError::TokenExists(_)
            | AtmError::UidInUse { .. } => code::INVALID_PARAMETER,
            AtmError::TokenNotFound(_) => code::TOKEN_NOT_EXIST,
            AtmError::PermissionNotDefined(_)
            | AtmError::NotUserGrant(_)
            | AtmError::NotRequested { .. } => code::PERMISSION_NOT_EXIST,
            AtmError::Fixed { .. } | AtmError::NotAHap(_) => code::NOT_ALLOWED,
            AtmError::Storage(_) => code::SERVICE_ABNORMAL,
        }
    }
}

impl From<AtmError> for RemoteError {
    fn from(e: AtmError) -> Self {
        RemoteError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_openharmony_codes_and_name_the_permission() {
        let e = AtmError::RequestRefused {
            bundle: "com.example.a".into(),
            permission: "ohos.permission.INSTALL_BUNDLE".into(),
            rule: RefusalRule::Acl,
        };
        assert_eq!(e.code(), 12_100_001);
        assert!(e.to_string().contains("INSTALL_BUNDLE"), "{e}");
        let r: RemoteError = AtmError::Fixed {
            permission: "ohos.permission.CAMERA".into(),
            token: "com.example.a (0x1)".into(),
            flags: 4,
        }
        .into();
        assert_eq!(r.code, 12_100_006);
        assert!(r.message.contains("CAMERA"));
        assert_eq!(AtmError::TokenNotFound("x".into()).code(), 12_100_002);
    }
}
