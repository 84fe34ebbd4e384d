//! The owner's side of the remote file protocol: executes one peer's [`Request`]s against
//! the user's account tree and answers each with a [`Reply`].
//!
//! Every name a peer sends is opened with [`crate::beneath`] (openat2 with RESOLVE_BENEATH),
//! so neither `..`, an absolute path nor a symlink leads out of the tree, whatever races with
//! the walk. A file's security label is read from the file it opened (`user.security`), and a
//! file above what the peer's device level covers is listed but not opened: EACCES, as
//! OpenHarmony's hmdfs answers an open refused for its data level (and as there, only `open`
//! is checked: listing, `stat` and creating new files are not). Each peer holds at most
//! [`MAX_HANDLES`] open files here; the adapter ([`crate::link`]) bounds its calls in flight.
//!
//! The server does blocking file I/O and no networking: the adapter runs each call on a
//! blocking thread, and the local device view calls it directly.

use crate::DfsError;
use crate::beneath;
use crate::label;
use crate::proto::{
    Attr, DirEntry, Kind, MAX_DIR_ENTRIES, MAX_HANDLES, MAX_IO, Reply, Request, Time, VERSION,
    errno, flags, join, split,
};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, RenameFlags, Uid};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// The device level the local device view opens files with: its own files, all of them.
pub const LOCAL_LEVEL: u8 = 5;

/// Permission bits a peer may give a file or directory (no set-id or sticky bits).
const PERM_MASK: u32 = 0o777;

/// One peer's view of the account tree on this device.
pub struct Server {
    root: OwnedFd,
    /// The peer's device security level, from its `Hello`.
    level: OnceLock<u8>,
    handles: Mutex<Handles>,
}

#[derive(Default)]
struct Handles {
    next: u64,
    open: HashMap<u64, Arc<File>>,
}

/// Why a call failed: an errno for the reply.
type Res<T> = Result<T, i32>;

/// The errno a peer hears for an error of the cores: a path out of the tree is refused as
/// a permission, not reported as a cross-device link.
fn code(e: DfsError) -> i32 {
    match e {
        DfsError::Escape(_) | DfsError::Denied(_) => errno::EACCES,
        e => e.errno(),
    }
}

fn os(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}

impl Server {
    /// Serves the tree at `root` to one peer, which must say `Hello` first.
    pub fn new(root: &Path) -> Result<Self, DfsError> {
        Ok(Self {
            root: beneath::open_root(root)?,
            level: OnceLock::new(),
            handles: Mutex::new(Handles::default()),
        })
    }

    /// Serves the tree at `root` to this device itself (the local device view): no `Hello`,
    /// every label opens.
    pub fn local(root: &Path) -> Result<Self, DfsError> {
        let s = Self::new(root)?;
        let _ = s.level.set(LOCAL_LEVEL);
        Ok(s)
    }

    /// Opens an existing regular file to send it whole to a peer of device level `level`
    /// (a cross-device copy): the same checks as a peer's open, no handle kept.
    pub fn open_to_send(&self, path: &str, level: u8) -> Result<File, i32> {
        let fd = beneath::open(&self.root, path, open_flags(flags::READ), Mode::empty())
            .map_err(code)?;
        check_opened(&fd, path, level)?;
        Ok(File::from(fd))
    }

    /// How many files the peer holds open.
    pub fn open_files(&self) -> usize {
        self.handles.lock().map(|h| h.open.len()).unwrap_or(0)
    }

    /// Executes one request.
    pub fn call(&self, req: Request) -> Reply {
        if let Err(e) = crate::proto::check(&req) {
            return Reply::Error(e);
        }
        let r = match (req, self.level.get()) {
            (
                Request::Hello {
                    version,
                    device_level,
                },
                None,
            ) => self.hello(version, device_level),
            (Request::Hello { .. }, Some(_)) | (_, None) => Err(errno::EPROTO),
            (req, Some(&level)) => self.run(req, level),
        };
        r.unwrap_or_else(Reply::Error)
    }

    fn hello(&self, version: u16, device_level: u8) -> Res<Reply> {
        if version != VERSION {
            return Err(errno::EPROTO);
        }
        if !(1..=5).contains(&device_level) {
            return Err(errno::EINVAL);
        }
        let _ = self.level.set(device_level);
        Ok(Reply::Hello { version: VERSION })
    }

    fn run(&self, req: Request, level: u8) -> Res<Reply> {
        match req {
            Request::Hello { .. } => Err(errno::EPROTO),
            Request::Lookup { path } => self.lookup(&path).map(Reply::Attr),
            Request::Getattr { handle } => attr_of(self.file(handle)?.as_fd()).map(Reply::Attr),
            Request::Readdir { path, offset } => self.readdir(&path, offset),
            Request::Open { path, flags: f } => {
                let file = self.open(&path, f, level)?;
                self.opened(file)
            }
            Request::Create {
                path,
                mode,
                flags: f,
            } => {
                let file = self.create(&path, mode, f, level)?;
                self.opened(file)
            }
            Request::Read {
                handle,
                offset,
                size,
            } => Ok(Reply::Data(read_at(&*self.file(handle)?, offset, size)?)),
            Request::Write {
                handle,
                offset,
                data,
            } => {
                let f = self.file(handle)?;
                f.write_all_at(&data, offset).map_err(io)?;
                // `check` bounds the data to MAX_IO, which fits a u32.
                Ok(Reply::Written(data.len() as u32))
            }
            Request::Fsync { handle, datasync } => {
                let f = self.file(handle)?;
                if datasync {
                    rustix::fs::fdatasync(&*f).map_err(os)?;
                } else {
                    rustix::fs::fsync(&*f).map_err(os)?;
                }
                Ok(Reply::Done)
            }
            Request::Release { handle } => {
                self.handles
                    .lock()
                    .map_err(|_| errno::EIO)?
                    .open
                    .remove(&handle)
                    .ok_or(errno::EBADF)?;
                Ok(Reply::Done)
            }
            Request::Mkdir { path, mode } => {
                let (dir, name) = self.parent(&path)?;
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode & PERM_MASK))
                    .map_err(os)?;
                inherit_owner(&dir, |uid, gid| {
                    rustix::fs::chownat(&dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                });
                let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(os)?;
                Ok(Reply::Attr(to_attr(&st)))
            }
            Request::Unlink { path } => {
                let (dir, name) = self.parent(&path)?;
                rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(os)?;
                Ok(Reply::Done)
            }
            Request::Rmdir { path } => {
                let (dir, name) = self.parent(&path)?;
                rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR).map_err(os)?;
                Ok(Reply::Done)
            }
            Request::Rename {
                from,
                to,
                noreplace,
            } => {
                let (fdir, fname) = self.parent(&from)?;
                let (tdir, tname) = self.parent(&to)?;
                let fl = if noreplace {
                    RenameFlags::NOREPLACE
                } else {
                    RenameFlags::empty()
                };
                rustix::fs::renameat_with(&fdir, fname, &tdir, tname, fl).map_err(os)?;
                Ok(Reply::Done)
            }
            Request::Setattr {
                path,
                handle,
                size,
                mode,
                atime,
                mtime,
            } => {
                let fd: Arc<File> = match (handle, size) {
                    (Some(h), _) => self.file(h)?,
                    // Truncating by name writes the file: the label decides, as for open.
                    (None, Some(_)) => Arc::new(self.open(&path, flags::WRITE, level)?),
                    (None, None) => Arc::new(File::from(
                        beneath::open(
                            &self.root,
                            &path,
                            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
                            Mode::empty(),
                        )
                        .map_err(code)?,
                    )),
                };
                if let Some(size) = size {
                    rustix::fs::ftruncate(&*fd, size).map_err(os)?;
                }
                if let Some(mode) = mode {
                    rustix::fs::fchmod(&*fd, Mode::from_raw_mode(mode & PERM_MASK)).map_err(os)?;
                }
                if atime.is_some() || mtime.is_some() {
                    let t = |t: Option<Time>| match t {
                        Some(t) => rustix::fs::Timespec {
                            tv_sec: t.secs,
                            tv_nsec: t.nanos.min(999_999_999).into(),
                        },
                        None => rustix::fs::Timespec {
                            tv_sec: 0,
                            tv_nsec: rustix::fs::UTIME_OMIT,
                        },
                    };
                    let ts = rustix::fs::Timestamps {
                        last_access: t(atime),
                        last_modification: t(mtime),
                    };
                    rustix::fs::futimens(&*fd, &ts).map_err(os)?;
                }
                attr_of(fd.as_fd()).map(Reply::Attr)
            }
        }
    }

    fn file(&self, handle: u64) -> Res<Arc<File>> {
        self.handles
            .lock()
            .map_err(|_| errno::EIO)?
            .open
            .get(&handle)
            .cloned()
            .ok_or(errno::EBADF)
    }

    /// The attributes of `path`, a symlink in it followed beneath the tree.
    fn lookup(&self, path: &str) -> Res<Attr> {
        let fd = beneath::open(&self.root, path, OFlags::PATH, Mode::empty()).map_err(code)?;
        attr_of(fd.as_fd())
    }

    /// The directory holding `path` (opened beneath the tree) and its last component.
    fn parent<'a>(&self, path: &'a str) -> Res<(OwnedFd, &'a str)> {
        let (dir, name) = split(path)?;
        let fd = beneath::open(
            &self.root,
            dir,
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(code)?;
        Ok((fd, name))
    }

    fn readdir(&self, path: &str, offset: u64) -> Res<Reply> {
        let dir = beneath::open(
            &self.root,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(code)?;
        let mut names = Vec::new();
        for e in rustix::fs::Dir::read_from(&dir).map_err(os)? {
            let e = e.map_err(os)?;
            // A name that is not UTF-8 cannot be named in the protocol: it is not listed.
            if let Ok(n) = e.file_name().to_str()
                && n != "."
                && n != ".."
            {
                names.push(n.to_string());
            }
        }
        names.sort_unstable();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(names.len());
        let end = start.saturating_add(MAX_DIR_ENTRIES).min(names.len());
        let mut entries = Vec::with_capacity(end - start);
        for name in &names[start..end] {
            let Ok(st) = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue; // gone since it was listed
            };
            let mut attr = to_attr(&st);
            if attr.kind == Kind::Symlink {
                // Listed as what it leads to beneath the tree; a link out of it (or to
                // nothing) is listed as something that cannot be opened.
                attr = match self.lookup(&join(path, name)) {
                    Ok(a) => a,
                    Err(_) => Attr {
                        kind: Kind::Other,
                        ..attr
                    },
                };
            }
            entries.push(DirEntry {
                name: name.clone(),
                attr,
            });
        }
        Ok(Reply::Entries {
            entries,
            done: end == names.len(),
        })
    }

    /// Opens an existing regular file, if the peer's level covers its label.
    fn open(&self, path: &str, f: u32, level: u8) -> Res<File> {
        self.room()?;
        let fd = beneath::open(&self.root, path, open_flags(f), Mode::empty()).map_err(code)?;
        check_opened(&fd, path, level)?;
        if f & flags::TRUNC != 0 && f & flags::WRITE != 0 {
            rustix::fs::ftruncate(&fd, 0).map_err(os)?;
        }
        Ok(File::from(fd))
    }

    /// Creates `path` and opens it; without EXCL an existing file is opened as by `open`.
    fn create(&self, path: &str, mode: u32, f: u32, level: u8) -> Res<File> {
        self.room()?;
        let fl = open_flags(f | flags::WRITE) | OFlags::CREATE | OFlags::EXCL;
        match beneath::open(&self.root, path, fl, Mode::from_raw_mode(mode & PERM_MASK)) {
            Ok(fd) => {
                if let Ok((dir, _)) = self.parent(path) {
                    inherit_owner(&dir, |uid, gid| rustix::fs::fchown(&fd, uid, gid));
                }
                Ok(File::from(fd))
            }
            Err(e) => {
                let e = code(e);
                if e == errno::EEXIST && f & flags::EXCL == 0 {
                    self.open(path, f, level)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Refuses a new open file once the peer holds [`MAX_HANDLES`].
    fn room(&self) -> Res<()> {
        let h = self.handles.lock().map_err(|_| errno::EIO)?;
        if h.open.len() >= MAX_HANDLES {
            return Err(errno::EMFILE);
        }
        Ok(())
    }

    fn opened(&self, file: File) -> Res<Reply> {
        let attr = attr_of(file.as_fd())?;
        let mut h = self.handles.lock().map_err(|_| errno::EIO)?;
        if h.open.len() >= MAX_HANDLES {
            return Err(errno::EMFILE);
        }
        h.next += 1;
        let handle = h.next;
        h.open.insert(handle, Arc::new(file));
        Ok(Reply::Opened { handle, attr })
    }
}

/// The kernel's open flags for the protocol's; never truncating (that waits for the label
/// check), never blocking on a fifo, never taking a terminal.
/// What a peer (or an app through a view) makes belongs to whoever owns the directory it is
/// made in: a peer's uids mean nothing on this device, and everything below an app's
/// `data/<bundleName>` must stay that app's (HMDFS fixes ownership up the same way). Only root
/// can give a file away: otherwise the chown fails and the file stays the daemon's.
fn inherit_owner(
    dir: &OwnedFd,
    chown: impl FnOnce(Option<Uid>, Option<Gid>) -> rustix::io::Result<()>,
) {
    let Ok(st) = rustix::fs::fstat(dir) else {
        return;
    };
    if st.st_uid != 0 || st.st_gid != 0 {
        let _ = chown(
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        );
    }
}

fn open_flags(f: u32) -> OFlags {
    let acc = match (f & flags::READ != 0, f & flags::WRITE != 0) {
        (true, true) => OFlags::RDWR,
        (false, true) => OFlags::WRONLY,
        _ => OFlags::RDONLY,
    };
    let mut o = acc | OFlags::NONBLOCK | OFlags::NOCTTY;
    if f & flags::APPEND != 0 {
        o |= OFlags::APPEND;
    }
    o
}

/// A file a peer opened must be a regular file whose label the peer's level covers.
fn check_opened(fd: &OwnedFd, path: &str, level: u8) -> Res<()> {
    let st = rustix::fs::fstat(fd).map_err(os)?;
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => {}
        rustix::fs::FileType::Directory => return Err(rustix::io::Errno::ISDIR.raw_os_error()),
        _ => return Err(errno::EACCES),
    }
    // A label that cannot be read is not taken to be low.
    let l = label::get_fd(fd, path).map_err(|_| errno::EACCES)?;
    if !l.opens_on(level) {
        tracing::info!(
            tag = "hmdfs",
            "open refused: a file labelled {l} to a device of level SL{level}"
        );
        return Err(errno::EACCES);
    }
    Ok(())
}

fn io(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(errno::EIO)
}

/// Reads up to `size` bytes at `offset`, fewer only at the end of the file.
fn read_at(f: &File, offset: u64, size: u32) -> Res<Vec<u8>> {
    let size = size.min(MAX_IO) as usize;
    let mut buf = vec![0u8; size];
    let mut got = 0;
    while got < size {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

fn attr_of(fd: rustix::fd::BorrowedFd<'_>) -> Res<Attr> {
    Ok(to_attr(&rustix::fs::fstat(fd).map_err(os)?))
}

fn to_attr(st: &rustix::fs::Stat) -> Attr {
    use rustix::fs::FileType as T;
    let kind = match T::from_raw_mode(st.st_mode) {
        T::RegularFile => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    let t = |secs: i64, nanos: u64| Time {
        secs,
        nanos: nanos.min(999_999_999) as u32,
    };
    #[allow(clippy::unnecessary_cast)] // the stat fields' types differ between targets
    Attr {
        ino: st.st_ino as u64,
        kind,
        size: st.st_size.max(0) as u64,
        blocks: st.st_blocks as u64,
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        atime: t(st.st_atime as i64, st.st_atime_nsec as u64),
        mtime: t(st.st_mtime as i64, st.st_mtime_nsec as u64),
        ctime: t(st.st_ctime as i64, st.st_ctime_nsec as u64),
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
