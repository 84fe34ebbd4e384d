//! Errors of the KV store, with `@ohos.data.distributedKVStore`'s error codes.

use oxh_ipc::RemoteError;

/// OpenHarmony's distributed KV store error codes, defined once here; the SDK and the CLI
/// match on these.
pub mod code {
    /// 201: the caller lacks a permission (sync needs `ohos.permission.DISTRIBUTED_DATASYNC`).
    pub const PERMISSION_DENIED: i32 = oxh_ipc::code::PERMISSION_DENIED;
    /// 401: "Parameter error." (a bad key, value, storeId, batch, query...).
    pub const INVALID_ARGUMENT: i32 = oxh_ipc::code::INVALID_PARAM;
    /// 15100000: "Invalid parameter" as the newer API levels report it for some checks.
    pub const INVALID_PARAMETER: i32 = 15_100_000;
    /// 15100001: "Over max limits." (more than 8 subscriptions on one store).
    pub const OVER_MAX_LIMITS: i32 = 15_100_001;
    /// 15100002: "Open existed database with changed options."
    pub const OPTIONS_CHANGED: i32 = 15_100_002;
    /// 15100003: "Database corrupted."
    pub const DB_CORRUPTED: i32 = 15_100_003;
    /// 15100004: "Not found." (key, store, backup).
    pub const NOT_FOUND: i32 = 15_100_004;
    /// 15100005: "Database or result set already closed."
    pub const ALREADY_CLOSED: i32 = 15_100_005;
    /// 15100006: the operation is not supported for this store (e.g. an option that this
    /// implementation does not offer yet: encryption, schema).
    pub const NOT_SUPPORTED: i32 = 15_100_006;
}

/// Why a KV operation failed. None of them left anything changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// An argument breaks a limit or a format rule (401).
    #[error("Parameter error. {0}")]
    InvalidArgument(String),
    /// Too many subscriptions (15100001).
    #[error("Over max limits. {0}")]
    OverMaxLimits(String),
    /// The store exists with other options (15100002).
    #[error("Open existed database with changed options. {0}")]
    OptionsChanged(String),
    /// The store file cannot be read as a store (15100003).
    #[error("Database corrupted. {0}")]
    Corrupted(String),
    /// No such key, store or backup (15100004).
    #[error("Not found. {0}")]
    NotFound(String),
    /// The store was closed (15100005).
    #[error("Database or result set already closed.")]
    Closed,
    /// Not offered (15100006).
    #[error("Not supported. {0}")]
    NotSupported(String),
    /// The caller may not do this (201).
    #[error("Permission denied. {0}")]
    PermissionDenied(String),
    /// Storage failed (I/O, disk full): reported as corrupted, OpenHarmony's closest code.
    #[error("Database error. {0}")]
    Storage(String),
}

impl KvError {
    /// The OpenHarmony error code.
    pub fn code(&self) -> i32 {
        match self {
            KvError::InvalidArgument(_) => code::INVALID_ARGUMENT,
            KvError::OverMaxLimits(_) => code::OVER_MAX_LIMITS,
            KvError::OptionsChanged(_) => code::OPTIONS_CHANGED,
            KvError::Corrupted(_) | KvError::Storage(_) => code::DB_CORRUPTED,
            KvError::NotFound(_) => code::NOT_FOUND,
            KvError::Closed => code::ALREADY_CLOSED,
            KvError::NotSupported(_) => code::NOT_SUPPORTED,
            KvError::PermissionDenied(_) => code::PERMISSION_DENIED,
        }
    }

    /// Shorthand for [`KvError::InvalidArgument`].
    pub fn invalid(m: impl Into<String>) -> Self {
        KvError::InvalidArgument(m.into())
    }
}

impl From<KvError> for RemoteError {
    fn from(e: KvError) -> Self {
        RemoteError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_openharmonys() {
        assert_eq!(KvError::invalid("x").code(), 401);
        assert_eq!(KvError::NotFound("k".into()).code(), 15_100_004);
        assert_eq!(KvError::Closed.code(), 15_100_005);
        let r: RemoteError = KvError::OptionsChanged("kind".into()).into();
        assert_eq!(r.code, 15_100_002);
        assert!(
            r.message
                .starts_with("Open existed database with changed options.")
        );
    }
}
