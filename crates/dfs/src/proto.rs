//! The remote file protocol: how one device's file daemon asks another's for the files of the
//! user's account tree (what HMDFS does between devices). One bus stream per pair of daemons;
//! the asking side sends [`Call`]s, the owner answers each with a [`Answer`] of the same id,
//! in any order, so reads can be in flight together (read-ahead).
//!
//! Every frame is `len: u32 LE | postcard(body)`, `len` at most [`MAX_FRAME`]; the first call
//! must be [`Request::Hello`]. Paths are relative to the served account tree, `/`-separated,
//! and checked by [`crate::beneath::check`] before anything is opened; names of one component
//! by [`check_name`]. Errors travel as the errno the owner's kernel (or its checks) gave.
//!
//! The limits are defined here, once: what one read or write moves ([`MAX_IO`]), how many
//! entries one listing reply holds ([`MAX_DIR_ENTRIES`]), how many files one peer may hold open
//! ([`MAX_HANDLES`]) and how many calls it may have in flight ([`MAX_IN_FLIGHT`]).

use serde::{Deserialize, Serialize};

/// The protocol's version, sent in [`Request::Hello`].
pub const VERSION: u16 = 1;
/// The most bytes one read or write moves (the FUSE side asks for no more than this).
pub const MAX_IO: u32 = 1 << 20;
/// The most entries one [`Reply::Entries`] holds.
pub const MAX_DIR_ENTRIES: usize = 1024;
/// The longest name of one path component (as Linux's NAME_MAX).
pub const MAX_NAME: usize = 255;
/// The largest frame either way: a full read or write and its header, or a listing of
/// [`MAX_DIR_ENTRIES`] entries of [`MAX_NAME`]-byte names with their attributes.
pub const MAX_FRAME: usize = MAX_IO as usize + 64 * 1024;
/// Files one peer may hold open on the owner at once.
pub const MAX_HANDLES: usize = 1024;
/// Calls one peer may have in flight at once; the asking side waits for answers beyond it.
pub const MAX_IN_FLIGHT: usize = 64;

/// Open flags of [`Request::Open`] and [`Request::Create`] (not the kernel's bits: these are
/// the protocol's, so both sides agree whatever their libc).
pub mod flags {
    /// Open for reading.
    pub const READ: u32 = 1;
    /// Open for writing.
    pub const WRITE: u32 = 2;
    /// Writes go to the end.
    pub const APPEND: u32 = 4;
    /// Truncate on open.
    pub const TRUNC: u32 = 8;
    /// Create: fail if the name exists.
    pub const EXCL: u32 = 16;
    /// Every flag the protocol knows.
    pub const ALL: u32 = READ | WRITE | APPEND | TRUNC | EXCL;
}

/// A time, as the kernel keeps it (seconds and nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Time {
    /// Seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (listed as one; opening it follows it, beneath the tree only).
    Symlink,
    /// Anything else (fifo, socket, device): listed, never opened.
    Other,
}

/// A file's attributes on its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    /// The owner's inode number (with `ctime` and `size`, what says the file changed).
    pub ino: u64,
    /// What it is.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Permission bits (the low 12 bits of st_mode).
    pub perm: u16,
    /// Hard links.
    pub nlink: u32,
    /// Owner uid on the owner device.
    pub uid: u32,
    /// Group on the owner device.
    pub gid: u32,
    /// Last access.
    pub atime: Time,
    /// Last modification.
    pub mtime: Time,
    /// Last status change.
    pub ctime: Time,
}

impl Attr {
    /// Whether a page cache of the file as `self` still holds for the file as `now`: the
    /// same inode, size, mtime and ctime (OpenHarmony's rule: cached pages are dropped when
    /// the remote inode, size or ctime changed).
    pub fn same_content(&self, now: &Attr) -> bool {
        self.ino == now.ino
            && self.size == now.size
            && self.ctime == now.ctime
            && self.mtime == now.mtime
    }
}

/// One entry of a listing, with its attributes (so `ls -l` needs no call per file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// Its attributes (of the entry itself: a symlink is listed as one).
    pub attr: Attr,
}

/// A request to the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The first call: the protocol version and the asking device's security level (1..=5),
    /// which decides which labelled files it may open.
    Hello {
        /// [`VERSION`].
        version: u16,
        /// SL1..SL5 as 1..=5.
        device_level: u8,
    },
    /// The attributes of `path` (a symlink in it is followed, beneath the tree only).
    Lookup {
        /// Relative to the tree; `""` is its root.
        path: String,
    },
    /// The attributes of an open file.
    Getattr {
        /// From [`Reply::Opened`].
        handle: u64,
    },
    /// Up to [`MAX_DIR_ENTRIES`] entries of the directory `path`, in name order, from the
    /// `offset`-th.
    Readdir {
        /// The directory.
        path: String,
        /// How many entries were already read.
        offset: u64,
    },
    /// Opens the file `path` ([`flags`]: READ, WRITE, APPEND, TRUNC).
    Open {
        /// The file.
        path: String,
        /// [`flags`].
        flags: u32,
    },
    /// Reads from an open file.
    Read {
        /// From [`Reply::Opened`].
        handle: u64,
        /// Where.
        offset: u64,
        /// How many bytes, at most [`MAX_IO`].
        size: u32,
    },
    /// Writes to an open file.
    Write {
        /// From [`Reply::Opened`].
        handle: u64,
        /// Where (ignored for APPEND).
        offset: u64,
        /// At most [`MAX_IO`] bytes.
        #[serde(with = "blob")]
        data: Vec<u8>,
    },
    /// Creates and opens the file `path` ([`flags`], EXCL to fail if it exists).
    Create {
        /// The file.
        path: String,
        /// Permission bits.
        mode: u32,
        /// [`flags`].
        flags: u32,
    },
    /// Makes the directory `path`.
    Mkdir {
        /// The directory.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// Removes the file (not directory) `path`.
    Unlink {
        /// The file.
        path: String,
    },
    /// Removes the empty directory `path`.
    Rmdir {
        /// The directory.
        path: String,
    },
    /// Renames `from` to `to` (both within the tree).
    Rename {
        /// The old path.
        from: String,
        /// The new path.
        to: String,
        /// Fail with EEXIST if `to` exists.
        noreplace: bool,
    },
    /// Makes an open file's data durable on the owner's disk.
    Fsync {
        /// From [`Reply::Opened`].
        handle: u64,
        /// Data only (fdatasync).
        datasync: bool,
    },
    /// Closes an open file.
    Release {
        /// From [`Reply::Opened`].
        handle: u64,
    },
    /// Changes `path`'s (or the open file's) size, permissions or times.
    Setattr {
        /// The file, when no handle is given.
        path: String,
        /// An open file, used instead of `path`.
        handle: Option<u64>,
        /// New size.
        size: Option<u64>,
        /// New permission bits.
        mode: Option<u32>,
        /// New access time.
        atime: Option<Time>,
        /// New modification time.
        mtime: Option<Time>,
    },
}

/// The owner's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// To Hello: the owner's version.
    Hello {
        /// [`VERSION`].
        version: u16,
    },
    /// Attributes (Lookup, Getattr, Mkdir, Setattr).
    Attr(Attr),
    /// A part of a listing; `done` when it reached the end.
    Entries {
        /// The entries.
        entries: Vec<DirEntry>,
        /// No entries follow.
        done: bool,
    },
    /// An open file (Open, Create).
    Opened {
        /// Names the file in later calls.
        handle: u64,
        /// Its attributes after the open (for close-to-open).
        attr: Attr,
    },
    /// Bytes read (fewer than asked only at the end of the file).
    Data(#[serde(with = "blob")] Vec<u8>),
    /// Bytes written.
    Written(u32),
    /// Done (Unlink, Rmdir, Rename, Fsync, Release).
    Done,
    /// Failed, with this errno.
    Error(i32),
}

/// A numbered request, asking side to owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Chosen by the asking side; the answer carries it.
    pub id: u64,
    /// What is asked.
    pub req: Request,
}

/// The owner's answer to the call `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The call's id.
    pub id: u64,
    /// What it answered.
    pub reply: Reply,
}

/// Errnos the protocol's checks answer with (the kernel's numbers, which every Linux shares).
pub mod errno {
    /// The file's label is above the asking device's level, or a path out of the tree.
    pub const EACCES: i32 = 13;
    /// Bad input.
    pub const EINVAL: i32 = 22;
    /// No such file.
    pub const ENOENT: i32 = 2;
    /// An unknown handle.
    pub const EBADF: i32 = 9;
    /// Too many open files.
    pub const EMFILE: i32 = 24;
    /// The owner is gone (offline) or the stream broke.
    pub const EIO: i32 = 5;
    /// A write while the owner is unreachable (OpenHarmony answers writes so).
    pub const EAGAIN: i32 = 11;
    /// The name exists.
    pub const EEXIST: i32 = 17;
    /// A name too long.
    pub const ENAMETOOLONG: i32 = 36;
    /// A path that leads out of the tree (openat2's answer).
    pub const EXDEV: i32 = 18;
    /// A protocol the owner does not speak.
    pub const EPROTO: i32 = 71;
}

/// Checks one path component: not empty, `.` or `..`, no `/` or NUL, at most [`MAX_NAME`].
pub fn check_name(name: &str) -> Result<(), i32> {
    if name.len() > MAX_NAME {
        return Err(errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(errno::EINVAL);
    }
    Ok(())
}

/// Checks what a request names before anything is done: paths (relative, no `..`, no NUL,
/// at most [`crate::beneath::MAX_PATH_LEN`]), sizes (at most [`MAX_IO`]) and flags.
pub fn check(req: &Request) -> Result<(), i32> {
    let path = |p: &str| {
        crate::beneath::check(p).map(|_| ()).map_err(|e| match e {
            crate::DfsError::Escape(_) => errno::EACCES,
            _ => errno::EINVAL,
        })
    };
    let flags = |f: u32| {
        if f & !flags::ALL == 0 {
            Ok(())
        } else {
            Err(errno::EINVAL)
        }
    };
    match req {
        Request::Hello { .. } | Request::Getattr { .. } => Ok(()),
        Request::Release { .. } | Request::Fsync { .. } => Ok(()),
        Request::Lookup { path: p } | Request::Readdir { path: p, .. } => path(p),
        Request::Open { path: p, flags: f } => path(p).and(flags(*f)),
        Request::Read { size, .. } if *size > MAX_IO => Err(errno::EINVAL),
        Request::Read { .. } => Ok(()),
        Request::Write { data, .. } if data.len() > MAX_IO as usize => Err(errno::EINVAL),
        Request::Write { .. } => Ok(()),
        Request::Create {
            path: p, flags: f, ..
        } => path(p).and(flags(*f)).and(split(p).map(|_| ())),
        Request::Mkdir { path: p, .. }
        | Request::Unlink { path: p }
        | Request::Rmdir { path: p } => path(p).and(split(p).map(|_| ())),
        Request::Rename { from, to, .. } => path(from)
            .and(path(to))
            .and(split(from).map(|_| ()))
            .and(split(to).map(|_| ())),
        Request::Setattr { path: p, .. } => path(p),
    }
}

/// A relative path's parent and last component (which [`check_name`] accepts).
pub fn split(path: &str) -> Result<(&str, &str), i32> {
    let path = path.trim_end_matches('/');
    let (parent, name) = match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    };
    check_name(name)?;
    Ok((parent, name))
}

/// Joins a relative directory path and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Its declared length is over [`MAX_FRAME`] (or zero).
    #[error("a frame of {0} bytes (1..={MAX_FRAME})")]
    Length(usize),
    /// Its body is not a message of the protocol (or could not be made one).
    #[error("a frame that is not a message of the file protocol: {0}")]
    Decode(String),
}

/// A message as it goes on the stream: `len: u32 LE | postcard(msg)`; a message whose body
/// would be over [`MAX_FRAME`] is refused here, so no side ever sends what the other drops.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut v =
        postcard::to_extend(msg, vec![0u8; 4]).map_err(|e| FrameError::Decode(e.to_string()))?;
    let len = v.len() - 4;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Length(len));
    }
    // `len` is at most MAX_FRAME, which fits a u32.
    v[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(v)
}

/// Decodes one whole frame, as one bus message carries it: the header must declare exactly
/// the bytes that follow.
pub fn decode_frame<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, FrameError> {
    let (bodies, used) = split_frames(frame)?;
    match bodies.as_slice() {
        [body] if used == frame.len() => decode(body),
        _ => Err(FrameError::Length(frame.len())),
    }
}

/// The body length a frame's 4-byte header declares, checked against [`MAX_FRAME`].
pub fn frame_len(head: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(head) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Length(len));
    }
    Ok(len)
}

/// Decodes a frame's body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    postcard::from_bytes(body).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Splits whole frames off the front of `buf`: the bodies, and how many bytes they took (a
/// partial frame at the end stays). For the fuzz target and tests; the adapters read frames
/// straight off the stream.
pub fn split_frames(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 4 {
        let head = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        let len = frame_len(head)?;
        if buf.len() - at - 4 < len {
            break;
        }
        out.push(&buf[at + 4..at + 4 + len]);
        at += 4 + len;
    }
    Ok((out, at))
}

/// Blobs (file data) as postcard bytes: a length and the bytes, not a sequence of numbers.
mod blob {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr() -> Attr {
        Attr {
            ino: 7,
            kind: Kind::File,
            size: 3,
            blocks: 8,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            atime: Time::default(),
            mtime: Time { secs: 5, nanos: 1 },
            ctime: Time { secs: 5, nanos: 1 },
        }
    }

    #[test]
    fn frames_round_trip_and_blobs_are_bytes_not_numbers() {
        let calls = [
            Call {
                id: 1,
                req: Request::Hello {
                    version: VERSION,
                    device_level: 3,
                },
            },
            Call {
                id: 2,
                req: Request::Write {
                    handle: 4,
                    offset: 9,
                    data: vec![0xff; 1000],
                },
            },
            Call {
                id: 3,
                req: Request::Rename {
                    from: "a".into(),
                    to: "d/b".into(),
                    noreplace: true,
                },
            },
        ];
        let mut wire = Vec::new();
        for c in &calls {
            wire.extend(encode(c).unwrap());
        }
        // 1000 bytes of 0xff as numbers would be 2000 bytes of varints.
        assert!(wire.len() < 1100, "{}", wire.len());
        let (bodies, used) = split_frames(&wire[..wire.len() - 1]).unwrap();
        assert_eq!(bodies.len(), 2, "a partial frame stays");
        assert!(used < wire.len());
        let (bodies, used) = split_frames(&wire).unwrap();
        assert_eq!(used, wire.len());
        let back: Vec<Call> = bodies.iter().map(|b| decode(b).unwrap()).collect();
        assert_eq!(back, calls);
        let a = Answer {
            id: 2,
            reply: Reply::Entries {
                entries: vec![DirEntry {
                    name: "x".into(),
                    attr: attr(),
                }],
                done: true,
            },
        };
        let w = encode(&a).unwrap();
        assert_eq!(decode::<Answer>(&w[4..]).unwrap(), a);
        assert_eq!(decode_frame::<Answer>(&w).unwrap(), a);
        assert!(
            decode_frame::<Answer>(&w[..w.len() - 1]).is_err(),
            "a partial frame"
        );
        let mut two = w.clone();
        two.extend(&w);
        assert!(
            decode_frame::<Answer>(&two).is_err(),
            "two frames in one message"
        );
    }

    #[test]
    fn oversized_or_empty_frames_and_garbage_are_refused() {
        assert_eq!(
            frame_len(((MAX_FRAME + 1) as u32).to_le_bytes()),
            Err(FrameError::Length(MAX_FRAME + 1))
        );
        assert!(frame_len(0u32.to_le_bytes()).is_err());
        assert!(split_frames(&[0, 0, 0, 0]).is_err());
        assert!(decode::<Call>(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn requests_are_checked_before_anything_is_done() {
        let ok = |r: Request| check(&r);
        assert_eq!(ok(Request::Lookup { path: "a/b".into() }), Ok(()));
        assert_eq!(ok(Request::Lookup { path: "".into() }), Ok(()));
        for p in ["../x", "a/../../x"] {
            assert_eq!(ok(Request::Lookup { path: p.into() }), Err(errno::EACCES));
        }
        for p in ["/etc/passwd", "a\0b"] {
            assert_eq!(ok(Request::Lookup { path: p.into() }), Err(errno::EINVAL));
        }
        assert_eq!(
            ok(Request::Read {
                handle: 1,
                offset: 0,
                size: MAX_IO + 1
            }),
            Err(errno::EINVAL)
        );
        assert_eq!(
            ok(Request::Open {
                path: "a".into(),
                flags: 1 << 20
            }),
            Err(errno::EINVAL)
        );
        assert_eq!(
            ok(Request::Mkdir {
                path: "".into(),
                mode: 0o755
            }),
            Err(errno::EINVAL),
            "the root cannot be made"
        );
        assert_eq!(
            ok(Request::Unlink {
                path: format!("d/{}", "n".repeat(MAX_NAME + 1))
            }),
            Err(errno::ENAMETOOLONG)
        );
        assert_eq!(split("a/b/c"), Ok(("a/b", "c")));
        assert_eq!(split("c"), Ok(("", "c")));
        assert_eq!(split("a/.."), Err(errno::EINVAL));
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("a", "x"), "a/x");
    }

    #[test]
    fn content_is_the_same_only_with_the_same_inode_size_and_times() {
        let a = attr();
        assert!(a.same_content(&a));
        assert!(!a.same_content(&Attr { size: 4, ..a }));
        assert!(!a.same_content(&Attr { ino: 8, ..a }));
        assert!(!a.same_content(&Attr {
            ctime: Time { secs: 6, nanos: 0 },
            ..a
        }));
        assert!(a.same_content(&Attr {
            atime: Time { secs: 9, nanos: 0 },
            ..a
        }));
    }
}
