//! The install executor: reads and verifies the staged files, asks [`crate::plan`] what to
//! do and carries the plan out (code dir, token, store, swap, data dirs); and uninstall.

use super::session::Session;
use super::{BundleManager, chown_if_root, ierr, lock, now_ms};
use crate::api::{self, InstallArgs, InstallResult, UninstallArgs};
use crate::error::{BundleError, code};
use crate::package;
use crate::plan::{self, Existing, NewBundle, Plan, TokenChange, VerifiedHap};
use crate::verify::{self, Report, VerifyOptions};
use rusqlite::params;
use std::path::Path;

impl BundleManager {
    /// Installs the files of a session as one bundle (see the module doc for the order).
    pub fn install(&self, conn: u64, a: &InstallArgs) -> Result<InstallResult, BundleError> {
        let sess = {
            let mut s = lock(&self.sessions);
            match s.get(&a.session) {
                Some(x) if x.conn == conn => s.remove(&a.session),
                _ => None,
            }
        }
        .ok_or_else(|| BundleError::new(code::FILE_PATH_INVALID, "no such install session"))?;
        let r = self.install_staged(&sess, a);
        let _ = std::fs::remove_dir_all(&sess.dir);
        r
    }

    fn install_staged(
        &self,
        sess: &Session,
        a: &InstallArgs,
    ) -> Result<InstallResult, BundleError> {
        let limits = self.cfg.limits;
        let dev_mode = (self.cfg.dev_mode)();
        if a.skip_verify && !dev_mode {
            return Err(BundleError::new(
                code::VERIFICATION_FAILED,
                format!("--skip-verify needs the param {} = 1", api::DEV_MODE_PARAM),
            ));
        }
        // Parse + verify all before anything is written: every file into memory, .app files
        // expanded (each HAP judged by its own signature or, unsigned, by the pack's).
        let opts = VerifyOptions {
            roots: self.roots(),
            ignore_expiry: false,
            device_id: self.cfg.device_id.clone(),
            now: now_ms() / 1000,
        };
        let mut haps = Vec::new();
        for i in 0..sess.sizes.len() {
            let data = std::fs::read(sess.dir.join(format!("{i}.pkg"))).map_err(ierr)?;
            haps.extend(verify::verify_package(&data, &limits, &opts)?);
        }
        let mut parsed = Vec::new();
        let mut skipped = Vec::new();
        for p in &haps {
            let h = package::open_hap(&p.data, &limits)?;
            let report: Report = p.report.clone();
            if a.skip_verify {
                if let Err(e) = report.result() {
                    skipped.push(format!("{}: {}", h.info.module_name, e.reason));
                }
            } else {
                report.result()?;
            }
            parsed.push((h, report));
        }
        let verified: Vec<VerifiedHap<'_>> = parsed
            .iter()
            .map(|(h, report)| VerifiedHap {
                info: &h.info,
                report,
            })
            .collect();
        let new = NewBundle::from_haps(&verified)?;
        let _g = lock(&self.install);
        let old = self.get(&new.bundle_name, a.user_id)?;
        let used = if old.is_none() {
            self.used_bundle_ids()?
        } else {
            Vec::new()
        };
        let plan = plan::plan(
            &Existing {
                user_id: a.user_id,
                record: old.as_ref(),
                used_bundle_ids: &used,
            },
            &new,
        )?;
        let datas: Vec<&[u8]> = parsed.iter().map(|(h, _)| h.data).collect();
        self.execute(&plan, &datas, skipped)
    }

    /// Carries `plan` out; `datas` are the new HAPs' bytes, in the order of
    /// [`plan::FilePlan::write`].
    fn execute(
        &self,
        plan: &Plan,
        datas: &[&[u8]],
        skipped: Vec<String>,
    ) -> Result<InstallResult, BundleError> {
        let limits = self.cfg.limits;
        let bundle = &plan.bundle_name;
        let fresh = plan.action == plan::Action::Fresh;
        // New code dir beside the old one.
        let code = self.code_dir(bundle);
        let parent = code.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&parent).map_err(ierr)?;
        let tag = now_ms();
        let new_dir = parent.join(format!(".{bundle}.new-{tag}"));
        let cleanup = |p: &Path| {
            let _ = std::fs::remove_dir_all(p);
        };
        let build = || -> Result<(), BundleError> {
            std::fs::create_dir(&new_dir).map_err(ierr)?;
            // Modules kept from the installed version.
            if !fresh && code.is_dir() {
                for f in &plan.files.keep {
                    std::fs::copy(code.join(f), new_dir.join(f)).map_err(ierr)?;
                }
                if code.join("libs").is_dir() && plan.files.copy_libs {
                    copy_tree(&code.join("libs"), &new_dir.join("libs"))?;
                }
            }
            for (f, data) in plan.files.write.iter().zip(datas) {
                let f = package::safe_join(&new_dir, f)?;
                std::fs::write(&f, data).map_err(ierr)?;
                let libs = new_dir.join("libs");
                std::fs::create_dir_all(&libs).map_err(ierr)?;
                package::extract_libs(data, &limits, &libs)?;
            }
            Ok(())
        };
        if let Err(e) = build() {
            cleanup(&new_dir);
            return Err(e);
        }
        // Token.
        let policy = &plan.token.policy;
        let token_id = match &plan.token.change {
            TokenChange::Update { token_id, params } => {
                if let Err(e) = self.atm.update_hap_token(*token_id, params, policy) {
                    cleanup(&new_dir);
                    return Err(BundleError::new(
                        code::UPDATE_HAP_TOKEN_FAILED,
                        e.to_string(),
                    ));
                }
                *token_id
            }
            TokenChange::Alloc(info) => {
                // A token without a bundle record is what a crash between the token and
                // the record leaves; this install supersedes it.
                if let Some(orphan) = self.atm.hap_token_id(info.user_id, bundle, 0) {
                    let _ = self.atm.delete_token(orphan.token_id());
                }
                match self.atm.alloc_hap_token(info, policy) {
                    Ok(t) => t.token_id(),
                    Err(e) => {
                        cleanup(&new_dir);
                        return Err(BundleError::new(
                            code::GRANT_PERMISSIONS_FAILED,
                            e.to_string(),
                        ));
                    }
                }
            }
        };
        let rec = plan.record(token_id, code.to_string_lossy().into_owned(), now_ms());
        if let Err(e) = self.put(&rec) {
            cleanup(&new_dir);
            if fresh {
                let _ = self.atm.delete_token(token_id);
            }
            return Err(e);
        }
        // Swap code dirs.
        let old_dir = parent.join(format!(".{bundle}.old-{tag}"));
        if code.exists() {
            std::fs::rename(&code, &old_dir).map_err(ierr)?;
        }
        std::fs::rename(&new_dir, &code).map_err(ierr)?;
        cleanup(&old_dir);
        if plan.files.make_data_dirs {
            for d in self.data_dirs(bundle, plan.user_id) {
                std::fs::create_dir_all(&d).map_err(ierr)?;
                chown_if_root(&d, plan.uid);
            }
        }
        tracing::info!(
            tag = "bms",
            public_bundle = bundle.as_str(),
            public_version = plan.version_code,
            public_uid = plan.uid,
            "bundle installed"
        );
        Ok(plan.result(token_id, skipped))
    }

    /// Uninstalls a bundle: token, code, and (unless `keep_data`) data.
    pub fn uninstall(&self, a: &UninstallArgs) -> Result<(), BundleError> {
        let _g = lock(&self.install);
        let Some(r) = self.get(&a.bundle_name, a.user_id)? else {
            return Err(BundleError::new(
                code::UNINSTALL_MISSING_BUNDLE,
                format!("{} is not installed for user {}", a.bundle_name, a.user_id),
            ));
        };
        if let Err(e) = self.atm.delete_token(r.token_id) {
            tracing::warn!(tag = "bms", "token of {} not deleted: {e}", r.bundle_name);
        }
        {
            let db = lock(&self.db);
            db.execute(
                "DELETE FROM bundles WHERE bundle_name=?1 AND user_id=?2",
                params![a.bundle_name, a.user_id],
            )
            .map_err(ierr)?;
        }
        let _ = std::fs::remove_dir_all(self.code_dir(&a.bundle_name));
        if !a.keep_data {
            for d in self.data_dirs(&a.bundle_name, a.user_id) {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        Ok(())
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BundleError> {
    std::fs::create_dir_all(to).map_err(ierr)?;
    for e in std::fs::read_dir(from).map_err(ierr)? {
        let e = e.map_err(ierr)?;
        let ft = e.file_type().map_err(ierr)?;
        let dst = to.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else if ft.is_file() {
            std::fs::copy(e.path(), dst).map_err(ierr)?;
        }
    }
    Ok(())
}
