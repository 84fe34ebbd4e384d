//! Errors of the distributed file cores: what a caller sees, with the errno a file system
//! answers.

/// A distributed-file error.
#[derive(Debug, thiserror::Error)]
pub enum DfsError {
    /// Bad input: a label, a URI or a path that is not one (EINVAL).
    #[error("{0}")]
    Invalid(String),
    /// The path leads out of the served tree (EXDEV, as openat2 answers), or names `..`.
    #[error("{0}: the path leads out of the served tree")]
    Escape(String),
    /// The file's label is above what the device may open (EACCES).
    #[error("{0}")]
    Denied(String),
    /// The kernel refused (its errno).
    #[error("{what}: {err}")]
    Os {
        /// What was being done.
        what: String,
        /// The kernel's answer.
        err: std::io::Error,
    },
}

impl DfsError {
    /// The errno a file system reply carries for this error.
    pub fn errno(&self) -> i32 {
        match self {
            DfsError::Invalid(_) => rustix::io::Errno::INVAL.raw_os_error(),
            DfsError::Escape(_) => rustix::io::Errno::XDEV.raw_os_error(),
            DfsError::Denied(_) => rustix::io::Errno::ACCESS.raw_os_error(),
            DfsError::Os { err, .. } => err.raw_os_error().unwrap_or(5),
        }
    }

    pub(crate) fn os(what: impl Into<String>, e: rustix::io::Errno) -> Self {
        DfsError::Os {
            what: what.into(),
            err: e.into(),
        }
    }
}
