//! Errors of the parameter service, with OpenHarmony's system-parameter error codes.

use oxh_ipc::{RemoteError, TokenType};
use std::time::Duration;

/// OpenHarmony's system-parameter error codes (`@ohos.systemParameterEnhance`,
/// `sysparam_errno.h`), defined once here; the SDK and CLI match on these.
pub mod code {
    /// Input parameter is missing or invalid: a bad name, or a second set of a `const.*`
    /// parameter (OpenHarmony maps its READ_ONLY result to this code too).
    pub const INVALID_ARGUMENT: i32 = oxh_ipc::code::INVALID_PARAM;
    /// "System parameter can not be found."
    pub const NOT_FOUND: i32 = 14_700_101;
    /// "System parameter value is invalid." (too long, or contains NUL)
    pub const INVALID_VALUE: i32 = 14_700_102;
    /// "System permission operation permission denied."
    pub const PERMISSION_DENIED: i32 = 14_700_103;
    /// "System internal error including out of memory, deadlock etc." (here: storage failures)
    pub const SYSTEM_ERROR: i32 = 14_700_104;
    /// "System parameter wait timeout." (SYSPARAM_WAIT_TIMEOUT)
    pub const WAIT_TIMEOUT: i32 = 14_700_105;
}

/// Why a parameter operation failed. Every variant names the parameter; none of them left
/// anything changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The name breaks OpenHarmony's naming rules.
    #[error("Invalid parameter name \"{name}\": {reason}")]
    InvalidName {
        /// The name as given (possibly truncated for display).
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// Some other argument is malformed (e.g. a wait pattern that is too long).
    #[error("Invalid argument: {0}")]
    InvalidArgument(String),
    /// A `const.*` parameter that already has a value.
    #[error(
        "Set parameter {name} failed: const.* parameters can be set only once and it is already set"
    )]
    ReadOnly {
        /// The parameter.
        name: String,
    },
    /// The value is too long or contains a NUL byte.
    #[error("Set parameter {name} failed: {reason}")]
    InvalidValue {
        /// The parameter.
        name: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The caller's token type may not perform the operation on this parameter.
    #[error(
        "{op} parameter {name} failed: permission denied, a {} caller may not {} {scope} parameters (allowed: {allowed})",
        token.as_str(), op.to_lowercase()
    )]
    PermissionDenied {
        /// "Set" or "Get".
        op: &'static str,
        /// The parameter.
        name: String,
        /// The caller's token type.
        token: TokenType,
        /// The rule's scope, e.g. `const.*` or `other`.
        scope: String,
        /// Token types that are allowed, comma-separated.
        allowed: String,
    },
    /// The parameter has no value.
    #[error("Parameter {name} not found")]
    NotFound {
        /// The parameter.
        name: String,
    },
    /// A wait ended before the parameter existed (or matched the pattern).
    #[error("Wait parameter {name}{} timeout ({})", pattern_text(pattern), duration_text(*timeout))]
    WaitTimeout {
        /// The parameter.
        name: String,
        /// The value pattern waited for, if any.
        pattern: Option<String>,
        /// How long the wait lasted.
        timeout: Duration,
    },
    /// Storage failed (SQLite); the write was not applied.
    #[error("System internal error: {0}")]
    Internal(String),
}

fn pattern_text(p: &Option<String>) -> String {
    match p {
        Some(p) if p != "*" => format!(" = \"{p}\""),
        _ => String::new(),
    }
}

/// Formats a timeout as people write it: `5s`, `1500ms`.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl ParamError {
    /// The OpenHarmony error code for this error, from [`code`].
    pub fn code(&self) -> i32 {
        match self {
            ParamError::InvalidName { .. }
            | ParamError::InvalidArgument(_)
            | ParamError::ReadOnly { .. } => code::INVALID_ARGUMENT,
            ParamError::InvalidValue { .. } => code::INVALID_VALUE,
            ParamError::PermissionDenied { .. } => code::PERMISSION_DENIED,
            ParamError::NotFound { .. } => code::NOT_FOUND,
            ParamError::WaitTimeout { .. } => code::WAIT_TIMEOUT,
            ParamError::Internal(_) => code::SYSTEM_ERROR,
        }
    }
}

impl From<ParamError> for RemoteError {
    fn from(e: ParamError) -> Self {
        RemoteError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_parameter_and_the_problem() {
        let e = ParamError::InvalidValue {
            name: "persist.x".into(),
            reason: "value is 120 bytes, the limit is 95".into(),
        };
        assert_eq!(
            e.to_string(),
            "Set parameter persist.x failed: value is 120 bytes, the limit is 95"
        );
        assert_eq!(e.code(), 14_700_102);
        let t = ParamError::WaitTimeout {
            name: "persist.x".into(),
            pattern: None,
            timeout: Duration::from_secs(5),
        };
        assert_eq!(t.to_string(), "Wait parameter persist.x timeout (5s)");
        let t = ParamError::WaitTimeout {
            name: "a.b".into(),
            pattern: Some("on*".into()),
            timeout: Duration::from_millis(1500),
        };
        assert_eq!(
            t.to_string(),
            "Wait parameter a.b = \"on*\" timeout (1500ms)"
        );
        let d = ParamError::PermissionDenied {
            op: "Set",
            name: "const.a".into(),
            token: TokenType::Shell,
            scope: "const.*".into(),
            allowed: "native".into(),
        };
        assert_eq!(
            d.to_string(),
            "Set parameter const.a failed: permission denied, a shell caller may not set const.* parameters (allowed: native)"
        );
        let r: RemoteError = d.into();
        assert_eq!(r.code, code::PERMISSION_DENIED);
    }
}
