//! Crash recovery: the code on disk brought back to the version the store has committed.

use super::{BundleManager, BundleRecord, chown_if_root, ierr, lock};
use crate::error::BundleError;
use rusqlite::params;
use std::path::Path;

impl BundleManager {
    /// Finishes or undoes an install that a crash (kill -9, power loss) cut short, so that
    /// the code on disk is the version the store says is installed: a new code dir whose
    /// record was committed is moved into place (roll forward), one whose record was not is
    /// removed, and a left-over old dir goes (or comes back, if the code dir is missing).
    /// Data dirs of every installed bundle are made if missing.
    pub(super) fn recover(&self) -> Result<(), BundleError> {
        let parent = self.code_dir("x").parent().map(Path::to_path_buf);
        if let Some(parent) = parent {
            let committed = |bundle: &str| -> Option<u64> {
                let db = lock(&self.db);
                let mut st = db
                    .prepare("SELECT record FROM bundles WHERE bundle_name=?1")
                    .ok()?;
                let rows = st
                    .query_map(params![bundle], |r| r.get::<_, String>(0))
                    .ok()?;
                rows.filter_map(Result::ok)
                    .filter_map(|t| serde_json::from_str::<BundleRecord>(&t).ok())
                    .map(|r| r.update_time)
                    .max()
            };
            for action in recover_code_dirs(&parent, committed).map_err(ierr)? {
                tracing::warn!(tag = "bms", "recovered an interrupted install: {action}");
            }
        }
        let records: Vec<BundleRecord> = {
            let db = lock(&self.db);
            let mut st = db.prepare("SELECT record FROM bundles").map_err(ierr)?;
            let texts: Vec<String> = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(ierr)?
                .filter_map(Result::ok)
                .collect();
            texts
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect()
        };
        for r in records {
            for d in self.data_dirs(&r.bundle_name, r.user_id) {
                if !d.is_dir() {
                    std::fs::create_dir_all(&d).map_err(ierr)?;
                    chown_if_root(&d, r.uid);
                }
            }
        }
        Ok(())
    }
}

/// The code-dir half of [`BundleManager`]'s crash recovery, on the parent of the code dirs.
/// `committed(bundle)` is the newest committed record's update time of that bundle, if it is
/// installed. An install writes `.{bundle}.new-{tag}`, commits its record (with an update time
/// at or after `tag`), then swaps through `.{bundle}.old-{tag}`; each state a crash can leave
/// is resolved to the committed one. Returns what was done, for the log.
pub fn recover_code_dirs(
    parent: &Path,
    committed: impl Fn(&str) -> Option<u64>,
) -> std::io::Result<Vec<String>> {
    let mut done = Vec::new();
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Ok(done);
    };
    let mut news = Vec::new();
    let mut olds = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('.') else {
            continue;
        };
        if let Some((bundle, tag)) = rest.rsplit_once(".new-")
            && let Ok(tag) = tag.parse::<u64>()
        {
            news.push((bundle.to_string(), tag, e.path()));
        } else if let Some((bundle, tag)) = rest.rsplit_once(".old-")
            && tag.parse::<u64>().is_ok()
        {
            olds.push((bundle.to_string(), e.path()));
        }
    }
    for (bundle, tag, new_dir) in news {
        let code = parent.join(&bundle);
        if committed(&bundle).is_some_and(|t| t >= tag) {
            if code.exists() {
                std::fs::remove_dir_all(&code)?;
            }
            std::fs::rename(&new_dir, &code)?;
            done.push(format!("{bundle}: the committed version moved into place"));
        } else {
            std::fs::remove_dir_all(&new_dir)?;
            done.push(format!("{bundle}: an uncommitted new version removed"));
        }
    }
    for (bundle, old_dir) in olds {
        let code = parent.join(&bundle);
        if code.exists() || committed(&bundle).is_none() {
            std::fs::remove_dir_all(&old_dir)?;
            done.push(format!("{bundle}: the replaced version removed"));
        } else {
            std::fs::rename(&old_dir, &code)?;
            done.push(format!("{bundle}: the installed version put back"));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::recover_code_dirs;
    use std::path::Path;

    fn dir_with(p: &Path, file: &str) {
        std::fs::create_dir_all(p).unwrap();
        std::fs::write(p.join(file), file).unwrap();
    }

    fn version(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn every_state_a_crash_leaves_resolves_to_the_committed_version() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        // a: crashed after the commit, before the swap: roll forward.
        dir_with(&p.join("a"), "v1");
        dir_with(&p.join(".a.new-100"), "v2");
        // b: crashed before the commit: the old version stays.
        dir_with(&p.join("b"), "v1");
        dir_with(&p.join(".b.new-200"), "v2");
        // c: crashed between the two renames: the new version lands, the old goes.
        dir_with(&p.join(".c.old-300"), "v1");
        dir_with(&p.join(".c.new-300"), "v2");
        // d: crashed after the swap, before the cleanup.
        dir_with(&p.join("d"), "v2");
        dir_with(&p.join(".d.old-400"), "v1");
        // e: a first install that crashed before its commit: nothing is left.
        dir_with(&p.join(".e.new-500"), "v1");
        // f: an uncommitted update cut between the renames: the old version comes back.
        dir_with(&p.join(".f.old-600"), "v1");
        let committed = |b: &str| match b {
            "a" => Some(101),
            "b" => Some(50),
            "c" => Some(300),
            "d" => Some(400),
            "f" => Some(10),
            _ => None,
        };
        let done = recover_code_dirs(p, committed).unwrap();
        assert_eq!(done.len(), 7, "{done:?}");
        for (b, v) in [
            ("a", "v2"),
            ("b", "v1"),
            ("c", "v2"),
            ("d", "v2"),
            ("f", "v1"),
        ] {
            assert_eq!(version(&p.join(b)), vec![v.to_string()], "{b}");
        }
        assert!(!p.join("e").exists());
        assert_eq!(
            version(p),
            vec!["a", "b", "c", "d", "f"],
            "no hidden dir left"
        );
        assert!(
            recover_code_dirs(p, committed).unwrap().is_empty(),
            "idempotent"
        );
    }
}
