//! OpenHarmony's file-management error codes (`@ohos.file.fs`, errorcode-filemanagement):
//! `13900000 + n`, each with the message OpenHarmony gives it. The one table every `oxh fs`
//! command, the SDK and the copy service answer with.

/// One file error: its code and OpenHarmony's message for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileErr {
    /// The code (`13900002` ...).
    pub code: i32,
    /// OpenHarmony's message (`No such file or directory` ...).
    pub message: &'static str,
}

macro_rules! codes {
    ($($name:ident = $code:literal, $errno:expr, $msg:literal;)*) => {
        $(
            #[doc = concat!("`", stringify!($code), "` ", $msg, ".")]
            pub const $name: FileErr = FileErr { code: $code, message: $msg };
        )*
        /// The file error an errno maps to ([`E_UNKNOWN`] for one without a code).
        pub fn from_errno(errno: i32) -> FileErr {
            $( if $errno != 0 && errno == $errno { return $name; } )*
            E_UNKNOWN
        }
        /// The file error with code `code`, if it is one.
        pub fn from_code(code: i32) -> Option<FileErr> {
            [$($name),*].into_iter().find(|e| e.code == code)
        }
    };
}

codes! {
    E_PERM = 13900001, libc::EPERM, "Operation not permitted";
    E_NOENT = 13900002, libc::ENOENT, "No such file or directory";
    E_IO = 13900005, libc::EIO, "I/O error";
    E_BADF = 13900008, libc::EBADF, "Bad file descriptor";
    E_AGAIN = 13900010, libc::EAGAIN, "Try again";
    E_ACCES = 13900012, libc::EACCES, "Permission denied";
    E_BUSY = 13900014, libc::EBUSY, "Device or resource busy";
    E_EXIST = 13900015, libc::EEXIST, "File exists";
    E_XDEV = 13900016, libc::EXDEV, "Cross-device link";
    E_NOTDIR = 13900018, libc::ENOTDIR, "Not a directory";
    E_ISDIR = 13900019, libc::EISDIR, "Is a directory";
    E_INVAL = 13900020, libc::EINVAL, "Invalid argument";
    E_FBIG = 13900024, libc::EFBIG, "File too large";
    E_NOSPC = 13900025, libc::ENOSPC, "No space left on device";
    E_ROFS = 13900027, libc::EROFS, "Read-only file system";
    E_NAMETOOLONG = 13900030, libc::ENAMETOOLONG, "File name too long";
    E_NOTEMPTY = 13900032, libc::ENOTEMPTY, "Directory not empty";
    E_LOOP = 13900033, libc::ELOOP, "Too many symbolic links encountered";
    E_INTR = 13900040, libc::EINTR, "Interrupted system call";
    E_UNKNOWN = 13900042, 0, "Unknown error";
    E_NOTASK = 13900043, 0, "No task can be canceled";
    E_NETUNREACH = 13900044, libc::ENETUNREACH, "Network is unreachable";
}

impl FileErr {
    /// The file error of an I/O error (by its errno).
    pub fn of_io(e: &std::io::Error) -> FileErr {
        e.raw_os_error().map_or(E_IO, from_errno)
    }
}

impl std::fmt::Display for FileErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_openharmonys_codes_and_back() {
        assert_eq!(from_errno(libc::ENOENT).code, 13900002);
        assert_eq!(
            from_errno(libc::ENOENT).message,
            "No such file or directory"
        );
        assert_eq!(from_errno(libc::ENETUNREACH).code, 13900044);
        assert_eq!(from_errno(9999), E_UNKNOWN);
        assert_eq!(from_errno(0), E_UNKNOWN, "0 is no errno");
        assert_eq!(from_code(13900043), Some(E_NOTASK));
        assert_eq!(from_code(1), None);
        assert_eq!(E_NOENT.to_string(), "13900002 No such file or directory");
    }
}
