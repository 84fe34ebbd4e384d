//! Errors of the relational store, with `@ohos.data.relationalStore`'s error codes and
//! messages (errorcode-data-rdb.md), each defined once here.

/// OpenHarmony's relational store error codes. The SDK, the CLI and the NDK match on these.
pub mod code {
    /// 201: "Permission verification failed." (an app naming another app's store; a caller
    /// without a token).
    pub const PERMISSION_DENIED: i32 = oxh_ipc::code::PERMISSION_DENIED;
    /// 401: "Parameter error." (the universal code the older APIs use).
    pub const PARAMETER_ERROR: i32 = oxh_ipc::code::INVALID_PARAM;
    /// 801: "Capability not supported." (sync on a device without a soft bus).
    pub const NOT_SUPPORTED: i32 = oxh_ipc::code::NOT_SUPPORTED;
    /// 14800000: "Inner error." (an SQL statement failed, an abnormal internal state).
    pub const INNER_ERROR: i32 = 14_800_000;
    /// 14800001: "Invalid arguments." (a parameter out of its valid range).
    pub const INVALID_ARGS: i32 = 14_800_001;
    /// 14800010: "Invalid database path."
    pub const INVALID_PATH: i32 = 14_800_010;
    /// 14800011: "Database corrupted."
    pub const CORRUPTED: i32 = 14_800_011;
    /// 14800012: "Row out of bounds." (empty result set or a row outside it).
    pub const ROW_OUT_OF_BOUNDS: i32 = 14_800_012;
    /// 14800013: "Column out of bounds." (also a NULL value or a type the getter cannot give).
    pub const COLUMN_OUT_OF_BOUNDS: i32 = 14_800_013;
    /// 14800014: "Already closed." (the store or the result set).
    pub const ALREADY_CLOSED: i32 = 14_800_014;
    /// 14800015: "The database does not respond."
    pub const NOT_RESPONDING: i32 = 14_800_015;
    /// 14800016: "The database alias already exists."
    pub const ALIAS_EXISTS: i32 = 14_800_016;
    /// 14800017: "Config changed." (an existing store opened with another securityLevel).
    pub const CONFIG_CHANGED: i32 = 14_800_017;
    /// 14800018: "No data meets the condition."
    pub const NO_MATCH: i32 = 14_800_018;
    /// 14800019: "The SQL must be a query statement."
    pub const NOT_A_QUERY: i32 = 14_800_019;
    /// 14800020: "The secret key is corrupted or lost."
    pub const KEY_LOST: i32 = 14_800_020;
    /// 14800021: "SQLite: Generic error." (SQLITE_ERROR: no such table or column, bad SQL).
    pub const SQLITE_ERROR: i32 = 14_800_021;
    /// 14800022: "SQLite: Callback routine requested an abort." (SQLITE_ABORT).
    pub const SQLITE_ABORT: i32 = 14_800_022;
    /// 14800023: "SQLite: Access permission denied." (SQLITE_PERM).
    pub const SQLITE_PERM: i32 = 14_800_023;
    /// 14800024: "SQLite: The database file is locked." (SQLITE_BUSY: another write
    /// transaction is open).
    pub const SQLITE_BUSY: i32 = 14_800_024;
    /// 14800025: "SQLite: A table in the database is locked." (SQLITE_LOCKED).
    pub const SQLITE_LOCKED: i32 = 14_800_025;
    /// 14800026: "SQLite: The database is out of memory." (SQLITE_NOMEM).
    pub const SQLITE_NOMEM: i32 = 14_800_026;
    /// 14800027: "SQLite: Attempt to write a readonly database." (SQLITE_READONLY).
    pub const SQLITE_READONLY: i32 = 14_800_027;
    /// 14800028: "SQLite: Some kind of disk I/O error occurred." (SQLITE_IOERR).
    pub const SQLITE_IOERR: i32 = 14_800_028;
    /// 14800029: "SQLite: The database is full." (SQLITE_FULL).
    pub const SQLITE_FULL: i32 = 14_800_029;
    /// 14800030: "SQLite: Unable to open the database file." (SQLITE_CANTOPEN).
    pub const SQLITE_CANTOPEN: i32 = 14_800_030;
    /// 14800031: "SQLite: TEXT or BLOB exceeds size limit." (SQLITE_TOOBIG).
    pub const SQLITE_TOOBIG: i32 = 14_800_031;
    /// 14800032: "SQLite: Abort due to constraint violation." (SQLITE_CONSTRAINT).
    pub const SQLITE_CONSTRAINT: i32 = 14_800_032;
    /// 14800033: "SQLite: Data type mismatch." (SQLITE_MISMATCH).
    pub const SQLITE_MISMATCH: i32 = 14_800_033;
    /// 14800034: "SQLite: Library used incorrectly." (SQLITE_MISUSE).
    pub const SQLITE_MISUSE: i32 = 14_800_034;
    /// 14800047: "The WAL file size exceeds the default limit."
    pub const WAL_TOO_LARGE: i32 = 14_800_047;
    /// 14800050: "Failed to obtain the subscription service."
    pub const NO_SUBSCRIPTION_SERVICE: i32 = 14_800_050;
    /// 14800051: "The type of the distributed table does not match."
    pub const DISTRIBUTED_TYPE_MISMATCH: i32 = 14_800_051;
}

/// OpenHarmony's message for `code` (what its users search for), `None` for a code that is
/// not the relational store's.
pub fn message(c: i32) -> Option<&'static str> {
    Some(match c {
        code::PERMISSION_DENIED => "Permission verification failed.",
        code::PARAMETER_ERROR => "Parameter error.",
        code::NOT_SUPPORTED => "Capability not supported.",
        code::INNER_ERROR => "Inner error.",
        code::INVALID_ARGS => "Invalid arguments.",
        code::INVALID_PATH => "Invalid database path.",
        code::CORRUPTED => "Database corrupted.",
        code::ROW_OUT_OF_BOUNDS => "Row out of bounds.",
        code::COLUMN_OUT_OF_BOUNDS => "Column out of bounds.",
        code::ALREADY_CLOSED => "Already closed.",
        code::NOT_RESPONDING => "The database does not respond.",
        code::ALIAS_EXISTS => "The database alias already exists.",
        code::CONFIG_CHANGED => "Config changed.",
        code::NO_MATCH => "No data meets the condition.",
        code::NOT_A_QUERY => "The SQL must be a query statement.",
        code::KEY_LOST => "The secret key is corrupted or lost.",
        code::SQLITE_ERROR => "SQLite: Generic error.",
        code::SQLITE_ABORT => "SQLite: Callback routine requested an abort.",
        code::SQLITE_PERM => "SQLite: Access permission denied.",
        code::SQLITE_BUSY => "SQLite: The database file is locked.",
        code::SQLITE_LOCKED => "SQLite: A table in the database is locked.",
        code::SQLITE_NOMEM => "SQLite: The database is out of memory.",
        code::SQLITE_READONLY => "SQLite: Attempt to write a readonly database.",
        code::SQLITE_IOERR => "SQLite: Some kind of disk I/O error occurred.",
        code::SQLITE_FULL => "SQLite: The database is full.",
        code::SQLITE_CANTOPEN => "SQLite: Unable to open the database file.",
        code::SQLITE_TOOBIG => "SQLite: TEXT or BLOB exceeds size limit.",
        code::SQLITE_CONSTRAINT => "SQLite: Abort due to constraint violation.",
        code::SQLITE_MISMATCH => "SQLite: Data type mismatch.",
        code::SQLITE_MISUSE => "SQLite: Library used incorrectly.",
        code::WAL_TOO_LARGE => "The WAL file size exceeds the default limit.",
        code::NO_SUBSCRIPTION_SERVICE => "Failed to obtain the subscription service.",
        code::DISTRIBUTED_TYPE_MISMATCH => "The type of the distributed table does not match.",
        _ => return None,
    })
}

/// Why a relational store operation failed: an OpenHarmony code and what went wrong. A failed
/// operation left nothing changed, except where SQLite's own conflict rules say otherwise
/// (`ON_CONFLICT_FAIL` inside an explicit transaction keeps the rows already written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}", message(*code).unwrap_or("Error."), if detail.is_empty() { "" } else { " " }, detail)]
pub struct RdbError {
    code: i32,
    detail: String,
}

impl RdbError {
    /// An error with `code` and a detail for the log and the user.
    pub fn new(code: i32, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// 14800001: an argument out of its valid range (a bad table or column name...).
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(code::INVALID_ARGS, detail)
    }

    /// 14800000: a state that should not happen.
    pub fn inner(detail: impl Into<String>) -> Self {
        Self::new(code::INNER_ERROR, detail)
    }

    /// The OpenHarmony error code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// What went wrong, beyond OpenHarmony's message.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// SQLite's primary result code to OpenHarmony's (its table of SQLITE_* to 148000xx).
fn sqlite_code(e: &rusqlite::ffi::Error) -> i32 {
    use rusqlite::ErrorCode as E;
    match e.code {
        E::PermissionDenied => code::SQLITE_PERM,
        E::OperationAborted => code::SQLITE_ABORT,
        E::DatabaseBusy => code::SQLITE_BUSY,
        E::DatabaseLocked => code::SQLITE_LOCKED,
        E::OutOfMemory => code::SQLITE_NOMEM,
        E::ReadOnly => code::SQLITE_READONLY,
        E::SystemIoFailure => code::SQLITE_IOERR,
        E::DatabaseCorrupt | E::NotADatabase => code::CORRUPTED,
        E::DiskFull => code::SQLITE_FULL,
        E::CannotOpen => code::SQLITE_CANTOPEN,
        E::TooBig => code::SQLITE_TOOBIG,
        E::ConstraintViolation => code::SQLITE_CONSTRAINT,
        E::TypeMismatch => code::SQLITE_MISMATCH,
        E::ApiMisuse => code::SQLITE_MISUSE,
        _ => code::SQLITE_ERROR,
    }
}

impl From<rusqlite::Error> for RdbError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, msg) => {
                RdbError::new(sqlite_code(f), msg.clone().unwrap_or_else(|| f.to_string()))
            }
            // A statement SQLite cannot prepare (a syntax error): SQLITE_ERROR's code.
            rusqlite::Error::SqlInputError {
                error, msg, sql, ..
            } => RdbError::new(sqlite_code(error), format!("{msg} in {sql:?}")),
            rusqlite::Error::MultipleStatement => {
                RdbError::new(code::SQLITE_ERROR, "one SQL statement at a time")
            }
            rusqlite::Error::InvalidParameterCount(..) => {
                RdbError::new(code::SQLITE_ERROR, e.to_string())
            }
            _ => RdbError::inner(e.to_string()),
        }
    }
}

impl From<oxh_kal::sqlite::OpenError> for RdbError {
    fn from(e: oxh_kal::sqlite::OpenError) -> Self {
        match e {
            oxh_kal::sqlite::OpenError::Sqlite { source, .. } => source.into(),
            other => RdbError::new(code::SQLITE_CANTOPEN, other.to_string()),
        }
    }
}

impl From<RdbError> for oxh_ipc::RemoteError {
    fn from(e: RdbError) -> Self {
        oxh_ipc::RemoteError::new(e.code(), e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = RdbError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_openharmonys_message() {
        for c in (14_800_000..=14_800_051).chain([201, 401]) {
            if let Some(m) = message(c) {
                assert!(!m.is_empty());
            }
        }
        let e = RdbError::new(code::SQLITE_BUSY, "a write transaction is open");
        assert_eq!(e.code(), 14_800_024);
        assert_eq!(
            e.to_string(),
            "SQLite: The database file is locked. a write transaction is open"
        );
    }

    #[test]
    fn sqlite_failures_map_to_openharmonys_codes() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY)")
            .unwrap();
        c.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let e: RdbError = c
            .execute("INSERT INTO t VALUES (1)", [])
            .unwrap_err()
            .into();
        assert_eq!(e.code(), code::SQLITE_CONSTRAINT);
        let e: RdbError = c
            .execute("INSERT INTO nope VALUES (1)", [])
            .unwrap_err()
            .into();
        assert_eq!(e.code(), code::SQLITE_ERROR);
        assert!(e.detail().contains("no such table"), "{e}");
        let e: RdbError = c.prepare("INSRT INTO t VALUES (2)").unwrap_err().into();
        assert_eq!(e.code(), code::SQLITE_ERROR);
        assert!(e.detail().contains("syntax error"), "{e}");
    }
}
