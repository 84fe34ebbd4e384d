//! hilog's errors, each mapped to the OpenHarmony error code that crosses IPC.

use oxh_ipc::{RemoteError, code};

/// Everything that can go wrong in hilog: bad arguments from a tool or app, and persistence
/// I/O. Bad arguments become 401 on the wire, so the CLI can print them as they are.
#[derive(Debug, thiserror::Error)]
pub enum HilogError {
    /// A level that is not one of D/I/W/E/F.
    #[error("invalid log level {0:?}: use D, I, W, E or F (or DEBUG, INFO, WARN, ERROR, FATAL)")]
    InvalidLevel(String),
    /// A log type that is not app or core.
    #[error("invalid log type {0:?}: use app or core")]
    InvalidType(String),
    /// A domain that is not a hex number, or out of the range of its log type.
    #[error("invalid domain {0:?}")]
    InvalidDomain(String),
    /// A pid that is not a positive number.
    #[error("invalid pid {0:?}")]
    InvalidPid(String),
    /// A tag that is empty or too long.
    #[error("invalid tag {0:?}: tags are 1..={max} bytes", max = crate::MAX_TAG_LEN)]
    InvalidTag(String),
    /// A size that `parse_size` cannot read.
    #[error("invalid size {0:?}: use a number of bytes with an optional B, K, M or G suffix")]
    InvalidSize(String),
    /// A buffer size outside OpenHarmony's documented range.
    #[error(
        "buffer size {size} is out of range: hilog -G accepts {min} (64K) to {max} (16M) bytes"
    )]
    BufferSizeOutOfRange {
        /// Requested size in bytes.
        size: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A `-e` expression the regex engine rejects.
    #[error("invalid regular expression: {0}")]
    InvalidRegex(String),
    /// More filter values than OpenHarmony allows for one option.
    #[error("too many {what}: at most {max} may be given")]
    TooManyFilters {
        /// Which option (domains, tags, pids).
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A persistence parameter outside its range.
    #[error("invalid persistence parameter: {0}")]
    InvalidPersist(String),
    /// Another invalid argument, explained.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Persistence was asked for, but the daemon was started without a log directory.
    #[error("log persistence is not configured on this device")]
    PersistNotConfigured,
    /// A persistence task is already running; OpenHarmony requires stopping it first.
    #[error("a persistence task is already running; stop it first (hilog -w stop)")]
    PersistRunning,
    /// Writing the persisted log files failed.
    #[error("log persistence i/o on {path}: {source}")]
    PersistIo {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl HilogError {
    /// The OpenHarmony error code for this error: 401 for bad arguments, 801 where the device
    /// cannot do it, an internal code for I/O.
    pub fn code(&self) -> i32 {
        match self {
            HilogError::PersistNotConfigured => code::NOT_SUPPORTED,
            HilogError::PersistIo { .. } => code::SA_INTERNAL,
            _ => code::INVALID_PARAM,
        }
    }
}

impl From<HilogError> for RemoteError {
    fn from(e: HilogError) -> Self {
        RemoteError::new(e.code(), e.to_string())
    }
}
