//! IPC errors, and the error codes that cross the wire.

use serde::{Deserialize, Serialize};

/// Error codes carried by [`RemoteError`]. The common ones are OpenHarmony's own (201, 202,
/// 401, ...); the IPC-level ones are this transport's and are documented here once.
pub mod code {
    /// OpenHarmony: permission verification failed.
    pub const PERMISSION_DENIED: i32 = 201;
    /// OpenHarmony: the caller is not a system application / system process.
    pub const NOT_SYSTEM: i32 = 202;
    /// OpenHarmony: invalid input parameter.
    pub const INVALID_PARAM: i32 = 401;
    /// OpenHarmony: capability not supported.
    pub const NOT_SUPPORTED: i32 = 801;
    /// No system ability is registered under the requested id.
    pub const SA_NOT_FOUND: i32 = 1_900_001;
    /// The system ability has no method with the requested code.
    pub const UNKNOWN_METHOD: i32 = 1_900_002;
    /// The transaction is larger than [`crate::MAX_TRANSACTION`].
    pub const TRANSACTION_TOO_LARGE: i32 = 1_900_003;
    /// The peer sent bytes that are not a frame; the connection is closed.
    pub const MALFORMED_FRAME: i32 = 1_900_004;
    /// The system ability failed to start or failed internally.
    pub const SA_INTERNAL: i32 = 1_900_005;
    /// The caller holds as much as the daemon lets one caller hold (connections, buffered
    /// request bytes, pending calls or waits; the message says which, with the count and the
    /// limit). Nothing was done; retry once some of the caller's own calls or connections end.
    pub const TOO_BUSY: i32 = 1_900_006;
}

/// An error returned by the daemon for one call: an error code and a readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct RemoteError {
    /// OpenHarmony error code where one exists, else one of [`code`].
    pub code: i32,
    /// What went wrong, for a person.
    pub message: String,
}

impl RemoteError {
    /// Builds an error with a code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// 401 with a message, the answer to any bad argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAM, message)
    }
    /// 201 naming the permission that was missing, as OpenHarmony reports it.
    pub fn permission_denied(permission: &str) -> Self {
        Self::new(
            code::PERMISSION_DENIED,
            format!("permission denied: the caller lacks {permission}"),
        )
    }
}

/// Errors seen by an IPC client.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The daemon's socket could not be reached.
    #[error(
        "cannot connect to oxhd at {path}: {source} (is the device running? start it with `oxh up`)"
    )]
    Connect {
        /// Socket path tried.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The request is bigger than the transaction limit; nothing was sent.
    #[error("transaction too large: {size} bytes exceeds the {limit}-byte (1 MiB) limit")]
    TooLarge {
        /// Size of the request body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The daemon answered with an error.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The connection went away before the reply arrived.
    #[error("connection to oxhd closed: {0}")]
    Disconnected(String),
    /// The daemon closed the connection and said why (a protocol error, or too many
    /// connections: [`code::TOO_BUSY`]).
    #[error("oxhd closed the connection: {}", .0.message)]
    Closed(RemoteError),
    /// The reply could not be decoded.
    #[error("cannot decode reply: {0}")]
    Decode(String),
    /// Socket I/O failed.
    #[error("ipc i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl IpcError {
    /// The error code, where the daemon gave one.
    pub fn code(&self) -> Option<i32> {
        match self {
            IpcError::Remote(r) | IpcError::Closed(r) => Some(r.code),
            IpcError::TooLarge { .. } => Some(code::TRANSACTION_TOO_LARGE),
            _ => None,
        }
    }
}
