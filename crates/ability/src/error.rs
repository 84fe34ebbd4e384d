//! The ability manager's errors, with the codes OpenHarmony's apps see
//! (docs: reference/apis-ability-kit/errorcode-ability.md).

use oxh_ipc::RemoteError;

/// Error codes, defined once.
pub mod code {
    /// "The specified ability does not exist."
    pub const NO_SUCH_ABILITY: i32 = 16_000_001;
    /// "Incorrect ability type." (e.g. connecting to a UIAbility)
    pub const INCORRECT_ABILITY_TYPE: i32 = 16_000_002;
    /// "Cannot start an invisible component." (`exported` false, no START_INVISIBLE_ABILITY)
    pub const INVISIBLE: i32 = 16_000_004;
    /// "Service busy. There are concurrent tasks. Try again later." (a record's queue is full)
    pub const BUSY: i32 = 16_000_007;
    /// "The context does not exist." (a call from an ability that has ended)
    pub const CONTEXT_NOT_EXIST: i32 = 16_000_011;
    /// "No matching ability is found." (implicit start with no skill matching)
    pub const NO_MATCH: i32 = 16_000_019;
    /// "Internal error." (here also: an app that missed a lifecycle deadline, a failed spawn)
    pub const INTERNAL: i32 = 16_000_050;
    /// "The specified mission does not exist."
    pub const MISSION_NOT_FOUND: i32 = 16_300_001;
    /// Permission verification failed.
    pub const PERMISSION_DENIED: i32 = oxh_ipc::code::PERMISSION_DENIED;
    /// Invalid input parameter.
    pub const INVALID_PARAM: i32 = oxh_ipc::code::INVALID_PARAM;
}

/// What went wrong with an ability request. The message starts with OpenHarmony's text for
/// the code and adds what we know (the element, the deadline missed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbilityError {
    /// No installed ability matches the explicit Want.
    #[error("The specified ability does not exist: {0}")]
    NoSuchAbility(String),
    /// The ability is of another type than the call needs.
    #[error("Incorrect ability type: {0}")]
    IncorrectType(String),
    /// The target is not exported and the caller may not start invisible abilities.
    #[error("Cannot start an invisible component: {0}")]
    Invisible(String),
    /// Too many requests wait on one ability.
    #[error("Service busy. There are concurrent tasks. Try again later: {0}")]
    Busy(String),
    /// The calling ability (or connection) no longer exists.
    #[error("The context does not exist: {0}")]
    ContextNotExist(String),
    /// No ability's skills match an implicit Want.
    #[error("No matching ability is found: {0}")]
    NoMatch(String),
    /// No mission has that id.
    #[error("The specified mission does not exist: {0}")]
    MissionNotFound(i32),
    /// A malformed request.
    #[error("Invalid input parameter: {0}")]
    InvalidParam(String),
    /// The caller lacks a permission.
    #[error("The application does not have permission to call the interface: {0}")]
    PermissionDenied(String),
    /// An app missed a lifecycle deadline, its process could not be spawned, or it died.
    #[error("Internal error: {0}")]
    Internal(String),
    /// The device that ran the request (another device, for a Want with a `deviceId`)
    /// answered this error; its code is kept.
    #[error("{message}")]
    Remote {
        /// The code the other device answered.
        code: i32,
        /// Its message.
        message: String,
    },
}

impl AbilityError {
    /// OpenHarmony's code for this error.
    pub fn code(&self) -> i32 {
        match self {
            Self::NoSuchAbility(_) => code::NO_SUCH_ABILITY,
            Self::IncorrectType(_) => code::INCORRECT_ABILITY_TYPE,
            Self::Invisible(_) => code::INVISIBLE,
            Self::Busy(_) => code::BUSY,
            Self::ContextNotExist(_) => code::CONTEXT_NOT_EXIST,
            Self::NoMatch(_) => code::NO_MATCH,
            Self::MissionNotFound(_) => code::MISSION_NOT_FOUND,
            Self::InvalidParam(_) => code::INVALID_PARAM,
            Self::PermissionDenied(_) => code::PERMISSION_DENIED,
            Self::Internal(_) => code::INTERNAL,
            Self::Remote { code, .. } => *code,
        }
    }
}

impl From<AbilityError> for RemoteError {
    fn from(e: AbilityError) -> Self {
        RemoteError::new(e.code(), e.to_string())
    }
}

impl From<RemoteError> for AbilityError {
    /// An error another device (or a service) answered, its code kept.
    fn from(e: RemoteError) -> Self {
        AbilityError::Remote {
            code: e.code,
            message: e.message,
        }
    }
}
