//! The merge view's names: every device's entries of one directory shown as one listing.
//! Where names collide, the rules the issue gives from OpenHarmony's hmdfs: the local entry
//! keeps its name; a remote file whose name is taken is shown as
//! `<stem>_conflict_dev<N><.ext>`, N counted from 1 over the colliding devices in device-id
//! order; a remote directory whose name a file holds is shown as `<name>_remote_directory`
//! (directories of the same name on several devices merge into one). Creating a name that a
//! remote entry shows is EEXIST ([`taken`]).

use std::collections::BTreeMap;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (or anything that is not a directory).
    File,
    /// A directory.
    Dir,
}

/// One entry of one device's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The device (its id; `None` is this device).
    pub device: Option<String>,
    /// Its name there.
    pub name: String,
    /// File or directory.
    pub kind: Kind,
}

/// An entry as the merge view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The name shown.
    pub name: String,
    /// The name on its device(s).
    pub real: String,
    /// File or directory.
    pub kind: Kind,
    /// Where it is: the devices whose entries it shows (a merged directory has several),
    /// `None` for this device.
    pub from: Vec<Option<String>>,
}

/// `name` with `_conflict_dev<n>` before its extension (the last `.`, not a leading one).
pub fn conflict_name(name: &str, n: usize) -> String {
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{}_conflict_dev{n}{}", &name[..i], &name[i..]),
        _ => format!("{name}_conflict_dev{n}"),
    }
}

/// The suffix of a remote directory whose name a file holds.
pub const REMOTE_DIRECTORY_SUFFIX: &str = "_remote_directory";

/// The merged listing of one directory from every device's entries, sorted by shown name.
pub fn merge(entries: &[Entry]) -> Vec<Shown> {
    // Per name: this device's entry first, then the others in device-id order.
    let mut by_name: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        by_name.entry(e.name.as_str()).or_default().push(e);
    }
    let mut out: Vec<Shown> = Vec::new();
    for (name, mut es) in by_name {
        es.sort_by(|a, b| a.device.cmp(&b.device));
        let has_file = es.iter().any(|e| e.kind == Kind::File);
        let dirs: Vec<Option<String>> = es
            .iter()
            .filter(|e| e.kind == Kind::Dir)
            .map(|e| e.device.clone())
            .collect();
        let local = es.iter().find(|e| e.device.is_none());
        // Who keeps the plain name: this device's entry, else the first device's.
        let owner = local.copied().or_else(|| es.first().copied());
        let mut conflicts = 0;
        match owner.map(|o| o.kind) {
            Some(Kind::Dir) => {
                out.push(Shown {
                    name: name.to_string(),
                    real: name.to_string(),
                    kind: Kind::Dir,
                    from: dirs,
                });
                for e in es.iter().filter(|e| e.kind == Kind::File) {
                    conflicts += 1;
                    out.push(Shown {
                        name: conflict_name(name, conflicts),
                        real: name.to_string(),
                        kind: Kind::File,
                        from: vec![e.device.clone()],
                    });
                }
            }
            Some(Kind::File) => {
                let owner = owner.map(|o| o.device.clone());
                out.push(Shown {
                    name: name.to_string(),
                    real: name.to_string(),
                    kind: Kind::File,
                    from: vec![owner.clone().flatten()],
                });
                for e in es.iter().filter(|e| e.kind == Kind::File) {
                    if Some(e.device.clone()) == owner {
                        continue;
                    }
                    conflicts += 1;
                    out.push(Shown {
                        name: conflict_name(name, conflicts),
                        real: name.to_string(),
                        kind: Kind::File,
                        from: vec![e.device.clone()],
                    });
                }
                if has_file && !dirs.is_empty() {
                    out.push(Shown {
                        name: format!("{name}{REMOTE_DIRECTORY_SUFFIX}"),
                        real: name.to_string(),
                        kind: Kind::Dir,
                        from: dirs,
                    });
                }
            }
            None => {}
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether creating `name` in the merge view must fail with EEXIST: some device's entry
/// shows under it.
pub fn taken(shown: &[Shown], name: &str) -> bool {
    shown.iter().any(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(dev: Option<&str>, name: &str, kind: Kind) -> Entry {
        Entry {
            device: dev.map(String::from),
            name: name.into(),
            kind,
        }
    }

    fn names(s: &[Shown]) -> Vec<(&str, Kind)> {
        s.iter().map(|s| (s.name.as_str(), s.kind)).collect()
    }

    #[test]
    fn colliding_files_are_renamed_by_device_order_and_the_local_keeps_its_name() {
        let got = merge(&[
            e(Some("dev-b"), "a.txt", Kind::File),
            e(None, "a.txt", Kind::File),
            e(Some("dev-a"), "a.txt", Kind::File),
            e(Some("dev-a"), "only.txt", Kind::File),
            e(Some("dev-b"), "archive.tar.gz", Kind::File),
            e(Some("dev-a"), "archive.tar.gz", Kind::File),
            e(Some("dev-a"), ".hidden", Kind::File),
            e(None, ".hidden", Kind::File),
        ]);
        assert_eq!(
            names(&got),
            vec![
                (".hidden", Kind::File),
                (".hidden_conflict_dev1", Kind::File),
                ("a.txt", Kind::File),
                ("a_conflict_dev1.txt", Kind::File),
                ("a_conflict_dev2.txt", Kind::File),
                ("archive.tar.gz", Kind::File),
                ("archive.tar_conflict_dev1.gz", Kind::File),
                ("only.txt", Kind::File),
            ]
        );
        let dev = |n: &str| got.iter().find(|s| s.name == n).unwrap().from.clone();
        assert_eq!(dev("a.txt"), vec![None]);
        assert_eq!(dev("a_conflict_dev1.txt"), vec![Some("dev-a".into())]);
        assert_eq!(dev("a_conflict_dev2.txt"), vec![Some("dev-b".into())]);
        assert_eq!(dev("archive.tar.gz"), vec![Some("dev-a".into())]);
    }

    #[test]
    fn directories_merge_and_a_remote_directory_under_a_files_name_is_suffixed() {
        let got = merge(&[
            e(None, "docs", Kind::Dir),
            e(Some("dev-a"), "docs", Kind::Dir),
            e(None, "x", Kind::File),
            e(Some("dev-a"), "x", Kind::Dir),
            e(Some("dev-b"), "docs", Kind::File),
        ]);
        assert_eq!(
            names(&got),
            vec![
                ("docs", Kind::Dir),
                ("docs_conflict_dev1", Kind::File),
                ("x", Kind::File),
                ("x_remote_directory", Kind::Dir),
            ]
        );
        assert_eq!(got[0].from, vec![None, Some("dev-a".into())]);
        assert!(taken(&got, "x_remote_directory") && !taken(&got, "y"));
    }
}
