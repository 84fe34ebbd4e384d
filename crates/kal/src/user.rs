//! Users: looking one up, starting a process as one, and touching files as one.
//!
//! hdc runs a shell and file transfers for a remote host as the device's shell user, not as
//! the daemon (root). Processes drop to that user before `exec`; file work done inside the
//! daemon switches only the calling thread's filesystem identity (fsuid, fsgid and the
//! supplementary groups, which Linux keeps per thread), so the kernel itself refuses what
//! the shell user may not read or write, and the rest of the daemon keeps its own identity.

use std::io;
use std::path::PathBuf;

/// A user as the system's user database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Login name (empty for a uid with no entry).
    pub name: String,
    /// Home directory, when the entry names one.
    pub home: Option<PathBuf>,
    /// Who to act as.
    pub id: Identity,
}

/// The credentials to act with: uid, primary gid and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (the primary one included, as `initgroups` sets them).
    pub groups: Vec<u32>,
}

/// Looks a user up by name, or by number when `spec` is all digits (a uid with no entry
/// gives a nameless user whose group is the same number).
pub fn lookup_user(spec: &str) -> io::Result<Option<UserEntry>> {
    use nix::unistd::{Uid, User};
    let user = if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        let uid: u32 = spec
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "uid out of range"))?;
        match User::from_uid(Uid::from_raw(uid)).map_err(io::Error::from)? {
            Some(u) => u,
            None => {
                return Ok(Some(UserEntry {
                    name: String::new(),
                    home: None,
                    id: Identity {
                        uid,
                        gid: uid,
                        groups: vec![uid],
                    },
                }));
            }
        }
    } else {
        match User::from_name(spec).map_err(io::Error::from)? {
            Some(u) => u,
            None => return Ok(None),
        }
    };
    Ok(Some(entry_of(user)))
}

/// The user database's entry for `uid`, if there is one.
pub fn user_by_uid(uid: u32) -> io::Result<Option<UserEntry>> {
    use nix::unistd::{Uid, User};
    Ok(User::from_uid(Uid::from_raw(uid))
        .map_err(io::Error::from)?
        .map(entry_of))
}

fn entry_of(u: nix::unistd::User) -> UserEntry {
    let gid = u.gid.as_raw();
    let mut groups: Vec<u32> = std::ffi::CString::new(u.name.clone())
        .ok()
        .and_then(|n| nix::unistd::getgrouplist(&n, u.gid).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    UserEntry {
        name: u.name,
        home: Some(u.dir).filter(|d| d.is_dir()),
        id: Identity {
            uid: u.uid.as_raw(),
            gid,
            groups,
        },
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets this thread's supplementary groups only. glibc's `setgroups` changes every thread
/// of the process; the raw system call changes the calling thread, as fsuid is.
fn set_thread_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: the kernel reads `groups.len()` gid_t values from a live slice.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            groups.len() as libc::size_t,
            groups.as_ptr() as *const libc::gid_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn thread_groups() -> io::Result<Vec<u32>> {
    // SAFETY: with size 0 getgroups only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut v = vec![0 as libc::gid_t; n as usize];
    // SAFETY: `v` has room for `n` gids.
    let m = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    v.truncate(m as usize);
    Ok(v)
}

impl Identity {
    /// Whether the current process may act as another user at all (it is root). When not,
    /// everything runs as the process's own user and the switching calls below do nothing.
    pub fn can_switch() -> bool {
        crate::current_uid() == 0
    }

    /// Becomes this user for good. Only for a child between fork and exec (a `pre_exec`
    /// hook), where the process has one thread; it only makes system calls on data allocated
    /// before the fork. Fails, and so does the spawn, if any step is refused or if the
    /// process could get root back.
    pub fn become_in_child(&self) -> io::Result<()> {
        // SAFETY: plain system calls on a slice that outlives them.
        unsafe {
            check(libc::setgroups(
                self.groups.len() as libc::size_t,
                self.groups.as_ptr(),
            ))?;
            check(libc::setgid(self.gid))?;
            check(libc::setuid(self.uid))?;
            if self.uid != 0 && libc::setuid(0) == 0 {
                return Err(io::Error::other("could regain root after dropping it"));
            }
        }
        Ok(())
    }

    /// Runs `f` with this thread's filesystem identity switched to this user, so opens,
    /// creates, renames and mode changes are checked (and new files owned) as this user.
    /// `f` must not yield the thread to other work (no `.await` inside).
    pub fn as_fs<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        let _g = self.enter_fs()?;
        Ok(f())
    }

    /// Switches this thread's filesystem identity until the guard drops: for a thread that
    /// does nothing else (a file writer), or inside [`Identity::as_fs`].
    pub fn enter_fs(&self) -> io::Result<FsGuard> {
        if !Self::can_switch() {
            return Ok(FsGuard { prev: None });
        }
        let groups = thread_groups()?;
        set_thread_groups(&self.groups)?;
        // setfsgid/setfsuid return the previous value and cannot report failure directly:
        // asking with an invalid id (-1) returns the current one, which must be ours.
        // SAFETY: plain system calls on this thread's credentials.
        let (prev_gid, prev_uid, gid_now, uid_now) = unsafe {
            let pg = libc::setfsgid(self.gid);
            let gn = libc::setfsgid(u32::MAX);
            let pu = libc::setfsuid(self.uid);
            let un = libc::setfsuid(u32::MAX);
            (pg as u32, pu as u32, gn as u32, un as u32)
        };
        let guard = FsGuard {
            prev: Some((prev_uid, prev_gid, groups)),
        };
        if gid_now != self.gid || uid_now != self.uid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("cannot act as uid {} gid {}", self.uid, self.gid),
            ));
        }
        Ok(guard)
    }
}

/// Puts a thread's filesystem identity back when dropped.
#[must_use = "the identity switches back when the guard drops"]
pub struct FsGuard {
    prev: Option<(u32, u32, Vec<u32>)>,
}

impl Drop for FsGuard {
    fn drop(&mut self) {
        if let Some((uid, gid, groups)) = self.prev.take() {
            // fsuid back to root first: that restores the filesystem capabilities the
            // switch cleared, which the other two calls do not need but the caller does.
            // SAFETY: plain system calls on this thread's credentials.
            unsafe {
                libc::setfsuid(uid);
                libc::setfsgid(gid);
            }
            let _ = set_thread_groups(&groups);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn looks_up_root_by_name_and_number_and_a_bare_uid() {
        let r = lookup_user("root").unwrap().unwrap();
        assert_eq!((r.id.uid, r.id.gid), (0, 0));
        assert_eq!(lookup_user("0").unwrap().unwrap().name, "root");
        assert!(lookup_user("no-such-user-oxh").unwrap().is_none());
        let bare = lookup_user("3999999").unwrap().unwrap();
        assert_eq!(
            (bare.id.uid, bare.id.gid, bare.name.as_str()),
            (3_999_999, 3_999_999, "")
        );
    }

    #[test]
    fn a_thread_acts_as_another_user_on_files_and_only_that_thread() {
        if !oxh_testkit::require_root(
            "a_thread_acts_as_another_user_on_files_and_only_that_thread",
            "to act as another user",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let who = Identity {
            uid: 3_999_998,
            gid: 3_999_998,
            groups: vec![3_999_998],
        };
        let (p, o) = (private.clone(), open.clone());
        let w = who.clone();
        let (refused, created) = std::thread::spawn(move || {
            w.as_fs(|| {
                let refused = std::fs::write(p.join("x"), b"x").unwrap_err().kind();
                std::fs::write(o.join("mine"), b"x").unwrap();
                (refused, std::fs::metadata(o.join("mine")).unwrap().uid())
            })
            .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(refused, io::ErrorKind::PermissionDenied);
        assert_eq!(created, who.uid);
        // Back to root after the guard, and this thread was never switched.
        std::fs::write(private.join("root"), b"x").unwrap();
        let g = who.enter_fs().unwrap();
        assert!(std::fs::write(private.join("y"), b"x").is_err());
        drop(g);
        std::fs::write(private.join("y"), b"x").unwrap();
        assert!(!thread_groups().unwrap().contains(&who.gid));
    }
}
