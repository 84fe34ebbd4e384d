//! Security labels of files, as OpenHarmony's `@ohos.file.securityLabel`: `s0` (lowest) to
//! `s4`, kept in the file's `user.security` extended attribute; a file without one counts as
//! `s3`. A device may open a file only if its device security level covers the label:
//! SL1 → s0..s1, SL2 → s2, SL3 → s3, SL4 and SL5 → s4 (a listed file above that cannot be
//! opened).

use crate::error::DfsError;
use std::path::Path;

/// The extended attribute the label is kept in.
pub const XATTR: &str = "user.security";
/// The label of a file that has none.
pub const DEFAULT_LABEL: Label = Label(3);

/// A data label, `s0`..`s4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(u8);

impl Label {
    /// Its level, 0..=4.
    pub fn level(self) -> u8 {
        self.0
    }

    /// Whether a device of security level `device_level` (1..=5) may open a file with this
    /// label.
    pub fn opens_on(self, device_level: u8) -> bool {
        let reach = match device_level {
            0 => return false,
            1 => 1,
            2 => 2,
            3 => 3,
            _ => 4,
        };
        self.0 <= reach
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl std::str::FromStr for Label {
    type Err = DfsError;
    fn from_str(s: &str) -> Result<Self, DfsError> {
        match s.as_bytes() {
            [b's', d @ b'0'..=b'4'] => Ok(Label(d - b'0')),
            _ => Err(DfsError::Invalid(format!(
                "{s:?} is not a security label: s0, s1, s2, s3 or s4"
            ))),
        }
    }
}

/// `getSecurityLabel(path)`: the file's label ([`DEFAULT_LABEL`] when it has none).
pub fn get(path: &Path) -> Result<Label, DfsError> {
    let mut buf = [0u8; 8];
    let what = || path.display().to_string();
    parse_xattr(rustix::fs::getxattr(path, XATTR, &mut buf), &buf, what)
}

/// The label of an open file (what the file daemon checks, on the file it opened, so the
/// name cannot be swapped between the check and the open).
pub fn get_fd(fd: impl rustix::fd::AsFd, what: &str) -> Result<Label, DfsError> {
    let mut buf = [0u8; 8];
    parse_xattr(rustix::fs::fgetxattr(fd, XATTR, &mut buf), &buf, || {
        what.to_string()
    })
}

fn parse_xattr(
    got: rustix::io::Result<usize>,
    buf: &[u8],
    what: impl Fn() -> String,
) -> Result<Label, DfsError> {
    match got {
        Ok(n) => std::str::from_utf8(&buf[..n])
            .map_err(|_| DfsError::Invalid(format!("{}: a label that is not text", what())))?
            .trim_end_matches('\0')
            .parse(),
        Err(rustix::io::Errno::NODATA) => Ok(DEFAULT_LABEL),
        Err(e) => Err(DfsError::os(format!("{}: read the label", what()), e)),
    }
}

/// `setSecurityLabel(path, label)`: the label is written as its text, as OpenHarmony's
/// `SecurityLabel::SetSecurityLabel` does (any of s0..s4, raised or lowered).
pub fn set(path: &Path, label: Label) -> Result<(), DfsError> {
    rustix::fs::setxattr(
        path,
        XATTR,
        label.to_string().as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| DfsError::os(format!("{}: set the label", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_print_and_reach_the_devices_whose_level_covers_them() {
        for (s, l) in [("s0", 0), ("s4", 4)] {
            let x: Label = s.parse().unwrap();
            assert_eq!((x.level(), x.to_string().as_str()), (l, s));
        }
        for bad in ["s5", "S1", "s", "1", "s01", ""] {
            assert!(bad.parse::<Label>().is_err(), "{bad}");
        }
        let l = |s: &str| s.parse::<Label>().unwrap();
        assert!(l("s1").opens_on(1) && !l("s2").opens_on(1));
        assert!(l("s2").opens_on(2) && !l("s3").opens_on(2));
        assert!(DEFAULT_LABEL.opens_on(3) && !DEFAULT_LABEL.opens_on(2));
        assert!(l("s4").opens_on(4) && l("s4").opens_on(5) && !l("s4").opens_on(3));
        assert!(!l("s0").opens_on(0));
    }

    #[test]
    fn a_file_keeps_its_label_in_the_xattr() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.txt");
        std::fs::write(&f, b"x").unwrap();
        if rustix::fs::setxattr(&f, "user.probe", b"1", rustix::fs::XattrFlags::empty()).is_err() {
            println!("skipped: this file system keeps no user xattrs");
            return;
        }
        assert_eq!(get(&f).unwrap(), DEFAULT_LABEL);
        set(&f, "s1".parse().unwrap()).unwrap();
        assert_eq!(get(&f).unwrap().to_string(), "s1");
        set(&f, "s4".parse().unwrap()).unwrap();
        assert_eq!(get(&f).unwrap().to_string(), "s4");
        let mut buf = [0u8; 8];
        let n = rustix::fs::getxattr(&f, XATTR, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"s4", "the attribute holds the label's text");
        assert!(get(&d.path().join("missing")).is_err());
    }
}
