//! Opening a path a peer named, beneath the tree this device serves it and nowhere else:
//! the name is checked (relative, no `..`, no NUL) and then opened with the kernel's
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so a symlink inside the tree that
//! points out of it, or a directory swapped for one mid-walk, is refused by the kernel
//! (EXDEV) rather than by a check that can race.

use crate::error::DfsError;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::path::{Component, Path};

/// The longest relative path a peer may name.
pub const MAX_PATH_LEN: usize = 4096;

/// Checks a peer-named relative path: plain components only.
pub fn check(rel: &str) -> Result<&Path, DfsError> {
    if rel.len() > MAX_PATH_LEN || rel.contains('\0') {
        return Err(DfsError::Invalid(format!("{rel:?} is not a path")));
    }
    let p = Path::new(rel);
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(DfsError::Escape(rel.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(DfsError::Invalid(format!("{rel:?} is not relative")));
            }
        }
    }
    Ok(p)
}

/// Opens `rel` beneath the directory `root` with `flags` (and `mode` when it creates).
pub fn open(root: &OwnedFd, rel: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, DfsError> {
    let p = check(rel)?;
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    rustix::fs::openat2(
        root,
        p,
        flags | OFlags::CLOEXEC,
        mode,
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::XDEV => DfsError::Escape(rel.to_string()),
        e => DfsError::os(rel, e),
    })
}

/// The served tree's root, opened once (a directory).
pub fn open_root(dir: &Path) -> Result<OwnedFd, DfsError> {
    rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DfsError::os(dir.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn paths_stay_beneath_the_root_even_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("account");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/a.txt"), b"inside").unwrap();
        std::fs::write(d.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("docs/out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("docs/in")).unwrap();
        let r = open_root(&root).unwrap();
        let read = |rel: &str| -> Result<String, DfsError> {
            let fd = open(&r, rel, OFlags::RDONLY, Mode::empty())?;
            let mut s = String::new();
            std::fs::File::from(fd).read_to_string(&mut s).unwrap();
            Ok(s)
        };
        assert_eq!(read("docs/a.txt").unwrap(), "inside");
        assert_eq!(
            read("./docs/in").unwrap(),
            "inside",
            "a symlink within the tree"
        );
        for escape in ["../secret", "docs/../../secret", "docs/out", "abs"] {
            let e = read(escape).unwrap_err();
            assert!(matches!(e, DfsError::Escape(_)), "{escape}: {e}");
            assert_eq!(e.errno(), rustix::io::Errno::XDEV.raw_os_error());
        }
        for bad in ["/etc/passwd", "a\0b"] {
            assert!(
                matches!(read(bad).unwrap_err(), DfsError::Invalid(_)),
                "{bad}"
            );
        }
        let e = read("docs/missing").unwrap_err();
        assert_eq!(e.errno(), rustix::io::Errno::NOENT.raw_os_error());
        // Creating beneath the root works; creating through an escaping link does not.
        open(
            &r,
            "docs/new.txt",
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert!(root.join("docs/new.txt").exists());
        assert!(
            open(
                &r,
                "docs/out",
                OFlags::WRONLY | OFlags::TRUNC,
                Mode::empty()
            )
            .is_err()
        );
        assert_eq!(std::fs::read(d.path().join("secret")).unwrap(), b"outside");
    }
}
