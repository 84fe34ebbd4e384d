//! Install sessions: files staged in a daemon-owned dir, bounded per session and in number.

use super::{BundleManager, ierr, lock};
use crate::api;
use crate::error::{BundleError, code};
use std::path::PathBuf;

pub(super) struct Session {
    pub(super) conn: u64,
    pub(super) dir: PathBuf,
    pub(super) sizes: Vec<u64>,
    pub(super) total: u64,
}

impl BundleManager {
    /// Starts a session owned by connection `conn`.
    pub fn begin(&self, conn: u64, files: u32, total: u64) -> Result<u64, BundleError> {
        if files == 0 || files > api::MAX_FILES {
            return Err(BundleError::new(
                code::FILE_PATH_INVALID,
                format!(
                    "{files} files in one install (1..={} allowed)",
                    api::MAX_FILES
                ),
            ));
        }
        // One install (all its files together) is bounded like one package, so staging can
        // never hold more than that per session.
        if total > self.cfg.limits.max_package_bytes {
            return Err(BundleError::invalid_file(format!(
                "{total} bytes announced, more than the {} allowed for one install",
                self.cfg.limits.max_package_bytes
            )));
        }
        let mut s = lock(&self.sessions);
        if s.len() >= api::MAX_SESSIONS {
            return Err(BundleError::new(
                code::INTERNAL_ERROR,
                "too many install sessions at once",
            ));
        }
        let id = {
            let mut n = lock(&self.next_session);
            *n += 1;
            *n
        };
        let dir = self.cfg.dir.join("staging").join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(ierr)?;
        for i in 0..files {
            std::fs::write(dir.join(format!("{i}.pkg")), b"").map_err(ierr)?;
        }
        s.insert(
            id,
            Session {
                conn,
                dir,
                sizes: vec![0; files as usize],
                total,
            },
        );
        Ok(id)
    }

    /// Appends bytes to file `file` of a session.
    pub fn write(
        &self,
        conn: u64,
        session: u64,
        file: u32,
        data: &[u8],
    ) -> Result<(), BundleError> {
        if data.len() > api::CHUNK {
            return Err(BundleError::invalid_file("chunk larger than allowed"));
        }
        let mut s = lock(&self.sessions);
        let sess = s
            .get_mut(&session)
            .filter(|x| x.conn == conn)
            .ok_or_else(|| BundleError::new(code::FILE_PATH_INVALID, "no such install session"))?;
        let i = file as usize;
        let Some(size) = sess.sizes.get(i).copied() else {
            return Err(BundleError::new(
                code::FILE_PATH_INVALID,
                "no such file in the session",
            ));
        };
        let new = size + data.len() as u64;
        let sum: u64 = sess.sizes.iter().sum::<u64>() + data.len() as u64;
        if new > self.cfg.limits.max_package_bytes || sum > sess.total {
            return Err(BundleError::invalid_file(format!(
                "more bytes than announced or than the {} allowed per package",
                self.cfg.limits.max_package_bytes
            )));
        }
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(sess.dir.join(format!("{i}.pkg")))
            .map_err(ierr)?;
        f.write_all(data).map_err(ierr)?;
        sess.sizes[i] = new;
        Ok(())
    }

    /// Drops a session.
    pub fn abort(&self, conn: u64, session: u64) {
        let mut s = lock(&self.sessions);
        if s.get(&session).is_some_and(|x| x.conn == conn)
            && let Some(x) = s.remove(&session)
        {
            let _ = std::fs::remove_dir_all(x.dir);
        }
    }

    /// Drops every session of a connection that went away.
    pub fn drop_sessions_of(&self, conn: u64) {
        let mut s = lock(&self.sessions);
        let ids: Vec<u64> = s
            .iter()
            .filter(|(_, x)| x.conn == conn)
            .map(|(k, _)| *k)
            .collect();
        for id in ids {
            if let Some(x) = s.remove(&id) {
                let _ = std::fs::remove_dir_all(x.dir);
            }
        }
    }
}
