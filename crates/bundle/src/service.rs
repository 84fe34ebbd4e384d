//! The bundle manager service: install sessions staged in a daemon-owned dir, verification
//! against the device's trust roots, the installed-bundle store (SQLite), code and data dirs,
//! and the app's access token in the access-token manager.
//!
//! Order of an install, so that a failure at any step leaves the old version working:
//! parse + verify every staged file (nothing written) → rules against the installed version
//! → build the new code dir beside the old one → token (alloc or update) → store commit →
//! swap the code dirs → data dirs for a new bundle. A failure before the commit removes the
//! new code dir and restores (or deletes) the token.

use crate::api::{self, InstallArgs, InstallResult, TrustRoot, UninstallArgs};
use crate::error::{BundleError, code};
use crate::model::{AppInfo, HapInfo, ModuleType};
use crate::package::{self, Kind, Limits};
use crate::verify::{self, Report, VerifyOptions};
use oxh_atm::AccessTokenManager;
use oxh_atm::rules::{DlpType, HapInfoParams, HapPolicy, UpdateHapInfoParams};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// First bundle id handed out (OpenHarmony's base app uid range starts at 10000).
pub const BUNDLE_ID_MIN: u32 = 10_000;
/// Last bundle id.
pub const BUNDLE_ID_MAX: u32 = 65_535;
/// uid = userId * UID_PER_USER + bundleId.
pub const UID_PER_USER: u32 = 200_000;

/// How the daemon runs the service.
pub struct BundleConfig {
    /// The service's own dir (store, trust roots, staging).
    pub dir: PathBuf,
    /// The device data dir: code goes to `app/el1/bundle/public/<bundle>`, data to
    /// `app/<el1|el2>/<user>/<base|database>/<bundle>`.
    pub data_root: PathBuf,
    /// This device's UDID, for debug profiles' device-ids.
    pub device_id: Option<String>,
    /// Whether `persist.bms.dev_mode` is "1" now (read at each install).
    pub dev_mode: Box<dyn Fn() -> bool + Send + Sync>,
    /// Package limits.
    pub limits: Limits,
}

/// One installed bundle (one user), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// Bundle name.
    pub bundle_name: String,
    /// User.
    pub user_id: i32,
    /// Bundle id (10000..=65535).
    pub bundle_id: u32,
    /// uid of the app's processes.
    pub uid: u32,
    /// Version code.
    pub version_code: u32,
    /// Version name.
    pub version_name: String,
    /// appId (bundle name + signer public key); updates must keep it.
    pub app_id: String,
    /// Access token id.
    pub token_id: u32,
    /// The profile's APL.
    pub apl: String,
    /// The profile's app-distribution-type.
    pub distribution_type: String,
    /// Where the code is.
    pub code_path: String,
    /// Installed modules.
    pub modules: Vec<HapInfo>,
    /// First install, Unix ms.
    pub install_time: u64,
    /// Last update, Unix ms.
    pub update_time: u64,
}

struct Session {
    conn: u64,
    dir: PathBuf,
    sizes: Vec<u64>,
    total: u64,
}

/// The bundle manager (SA 401).
pub struct BundleManager {
    cfg: BundleConfig,
    atm: Arc<AccessTokenManager>,
    db: Mutex<Connection>,
    sessions: Mutex<HashMap<u64, Session>>,
    next_session: Mutex<u64>,
    install: Mutex<()>,
}

fn ierr(e: impl std::fmt::Display) -> BundleError {
    BundleError::internal(e.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BundleManager {
    /// Opens the store under `cfg.dir` (creating it), drops stale staging dirs.
    pub fn open(cfg: BundleConfig, atm: Arc<AccessTokenManager>) -> Result<Arc<Self>, BundleError> {
        std::fs::create_dir_all(cfg.dir.join("trust")).map_err(ierr)?;
        let staging = cfg.dir.join("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(ierr)?;
        let db = oxh_kal::sqlite::open(&cfg.dir.join("bundles.db")).map_err(ierr)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS bundles (
               bundle_name TEXT NOT NULL, user_id INTEGER NOT NULL, bundle_id INTEGER NOT NULL,
               record TEXT NOT NULL, PRIMARY KEY (bundle_name, user_id));",
        )
        .map_err(ierr)?;
        let me = Arc::new(Self {
            cfg,
            atm,
            db: Mutex::new(db),
            sessions: Mutex::new(HashMap::new()),
            next_session: Mutex::new(1),
            install: Mutex::new(()),
        });
        me.recover()?;
        Ok(me)
    }

    /// Finishes or undoes an install that a crash (kill -9, power loss) cut short, so that
    /// the code on disk is the version the store says is installed: a new code dir whose
    /// record was committed is moved into place (roll forward), one whose record was not is
    /// removed, and a left-over old dir goes (or comes back, if the code dir is missing).
    /// Data dirs of every installed bundle are made if missing.
    fn recover(&self) -> Result<(), BundleError> {
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

    /// The code dir of a bundle.
    pub fn code_dir(&self, bundle: &str) -> PathBuf {
        self.cfg
            .data_root
            .join("app/el1/bundle/public")
            .join(bundle)
    }

    /// The data dirs of a bundle for a user.
    pub fn data_dirs(&self, bundle: &str, user: i32) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for el in ["el1", "el2"] {
            for kind in ["base", "database"] {
                v.push(
                    self.cfg
                        .data_root
                        .join("app")
                        .join(el)
                        .join(user.to_string())
                        .join(kind)
                        .join(bundle),
                );
            }
        }
        v
    }

    // ---- sessions ----

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

    // ---- trust roots ----

    fn trust_dir(&self) -> PathBuf {
        self.cfg.dir.join("trust")
    }

    /// The trust roots (DER).
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.trust_list()
            .into_iter()
            .flat_map(|t| verify::pem_certs(t.pem.as_bytes()))
            .collect()
    }

    /// Adds a root certificate; returns its file name (from its SHA-256).
    pub fn trust_add(&self, pem_text: &str) -> Result<String, BundleError> {
        let certs = verify::pem_certs(pem_text.as_bytes());
        let [der] = certs.as_slice() else {
            return Err(BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                format!("expected one PEM certificate, found {}", certs.len()),
            ));
        };
        if x509_parser::parse_x509_certificate(der).is_err() {
            return Err(BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                "not an X.509 certificate",
            ));
        }
        use sha2::Digest;
        let h = sha2::Sha256::digest(der);
        let name: String = h[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            + ".pem";
        let pem_out = ::pem::encode_config(
            &::pem::Pem::new("CERTIFICATE", der.clone()),
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        );
        std::fs::write(self.trust_dir().join(&name), pem_out).map_err(ierr)?;
        Ok(name)
    }

    /// Lists the trust roots.
    pub fn trust_list(&self) -> Vec<TrustRoot> {
        let mut v: Vec<TrustRoot> = std::fs::read_dir(self.trust_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pem"))
            .filter_map(|e| {
                let pem = std::fs::read_to_string(e.path()).ok()?;
                let der = verify::pem_certs(pem.as_bytes()).into_iter().next()?;
                Some(TrustRoot {
                    name: e.file_name().to_string_lossy().into_owned(),
                    subject: crate::pkcs7::subject_cn(&der),
                    pem,
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Removes a trust root by file name.
    pub fn trust_remove(&self, name: &str) -> Result<(), BundleError> {
        if name.contains('/') || !name.ends_with(".pem") {
            return Err(BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                "not a trust root name",
            ));
        }
        std::fs::remove_file(self.trust_dir().join(name)).map_err(|_| {
            BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                format!("no trust root {name}"),
            )
        })
    }

    // ---- store ----

    /// An installed bundle.
    pub fn get(&self, bundle: &str, user: i32) -> Result<Option<BundleRecord>, BundleError> {
        let db = lock(&self.db);
        let r: Option<String> = db
            .query_row(
                "SELECT record FROM bundles WHERE bundle_name=?1 AND user_id=?2",
                params![bundle, user],
                |r| r.get(0),
            )
            .optional()
            .map_err(ierr)?;
        r.map(|t| serde_json::from_str(&t).map_err(ierr))
            .transpose()
    }

    /// Installed bundle names for a user, sorted.
    pub fn names(&self, user: i32) -> Result<Vec<String>, BundleError> {
        let db = lock(&self.db);
        let mut st = db
            .prepare("SELECT bundle_name FROM bundles WHERE user_id=?1 ORDER BY bundle_name")
            .map_err(ierr)?;
        let v = st
            .query_map(params![user], |r| r.get(0))
            .map_err(ierr)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(ierr)?;
        Ok(v)
    }

    fn put(&self, r: &BundleRecord) -> Result<(), BundleError> {
        let db = lock(&self.db);
        db.execute(
            "INSERT OR REPLACE INTO bundles (bundle_name, user_id, bundle_id, record) VALUES (?1, ?2, ?3, ?4)",
            params![r.bundle_name, r.user_id, r.bundle_id, serde_json::to_string(r).map_err(ierr)?],
        )
        .map_err(ierr)?;
        Ok(())
    }

    fn free_bundle_id(&self) -> Result<u32, BundleError> {
        let db = lock(&self.db);
        let mut st = db
            .prepare("SELECT DISTINCT bundle_id FROM bundles ORDER BY bundle_id")
            .map_err(ierr)?;
        let used: Vec<u32> = st
            .query_map([], |r| r.get(0))
            .map_err(ierr)?
            .collect::<Result<_, _>>()
            .map_err(ierr)?;
        let mut id = BUNDLE_ID_MIN;
        for u in used {
            if u == id {
                id += 1;
            } else if u > id {
                break;
            }
        }
        if id > BUNDLE_ID_MAX {
            return Err(BundleError::internal("no free bundle id"));
        }
        Ok(id)
    }

    // ---- install ----

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
        // Every file into memory, .app files expanded.
        let mut haps: Vec<Vec<u8>> = Vec::new();
        for i in 0..sess.sizes.len() {
            let data = std::fs::read(sess.dir.join(format!("{i}.pkg"))).map_err(ierr)?;
            match package::kind(&data, &limits)? {
                Kind::Hap => haps.push(data),
                Kind::App => {
                    haps.extend(package::app_haps(&data, &limits)?.into_iter().map(|x| x.1))
                }
            }
        }
        // Parse + verify all before anything is written.
        let opts = VerifyOptions {
            roots: self.roots(),
            ignore_expiry: false,
            device_id: self.cfg.device_id.clone(),
            now: now_ms() / 1000,
        };
        let mut parsed = Vec::new();
        let mut skipped = Vec::new();
        for data in &haps {
            let h = package::open_hap(data, &limits)?;
            let report: Report = verify::verify(&h, &opts);
            if a.skip_verify {
                if let Err(e) = report.result() {
                    skipped.push(format!("{}: {}", h.info.module_name, e.reason));
                }
            } else {
                report.result()?;
            }
            parsed.push((h, report));
        }
        let (first, first_report) = &parsed[0];
        let bundle = first.info.app.bundle_name.clone();
        let version = first.info.app.version_code;
        let mut names = std::collections::HashSet::new();
        for (h, r) in &parsed {
            if h.info.app.bundle_name != bundle {
                return Err(BundleError::parse(format!(
                    "the HAPs name different bundles: {} and {bundle}",
                    h.info.app.bundle_name
                )));
            }
            if h.info.app.version_code != version {
                return Err(BundleError::parse(
                    "the HAPs of one install have different versionCodes",
                ));
            }
            if r.app_id != first_report.app_id {
                return Err(BundleError::new(
                    code::SIGN_INFO_INCONSISTENT,
                    "the HAPs are signed by different keys",
                ));
            }
            if !names.insert(h.info.module_name.clone()) {
                return Err(BundleError::new(
                    code::MODULE_NAME_NOT_UNIQUE,
                    format!("module {} twice", h.info.module_name),
                ));
            }
        }
        if parsed
            .iter()
            .filter(|(h, _)| h.info.module_type == ModuleType::Entry)
            .count()
            > 1
        {
            return Err(BundleError::new(
                code::ENTRY_ALREADY_EXIST,
                "more than one entry module",
            ));
        }
        let app_id = if first_report.app_id.is_empty() {
            format!("{bundle}_unsigned")
        } else {
            first_report.app_id.clone()
        };
        let profile = first_report.profile.clone().unwrap_or_default();
        let _g = lock(&self.install);
        let old = self.get(&bundle, a.user_id)?;
        // Update rules.
        let mut modules: Vec<HapInfo> = Vec::new();
        if let Some(o) = &old {
            if o.app_id != app_id {
                return Err(BundleError::new(
                    code::SIGN_INFO_INCONSISTENT,
                    format!("{bundle} is installed signed by another key (appId differs)"),
                ));
            }
            if version < o.version_code {
                return Err(BundleError::new(
                    code::VERSION_DOWNGRADE,
                    format!(
                        "versionCode {version} is lower than the installed {}",
                        o.version_code
                    ),
                ));
            }
            let new_entry = parsed
                .iter()
                .find(|(h, _)| h.info.module_type == ModuleType::Entry);
            if let (Some((ne, _)), Some(oe)) = (
                new_entry,
                o.modules
                    .iter()
                    .find(|m| m.module_type == ModuleType::Entry),
            ) && ne.info.module_name != oe.module_name
            {
                return Err(BundleError::new(
                    code::ENTRY_ALREADY_EXIST,
                    format!(
                        "entry module {} is installed; {} is another entry",
                        oe.module_name, ne.info.module_name
                    ),
                ));
            }
            if version == o.version_code {
                modules.extend(
                    o.modules
                        .iter()
                        .filter(|m| !names.contains(&m.module_name))
                        .cloned(),
                );
            }
        }
        modules.extend(parsed.iter().map(|(h, _)| h.info.clone()));
        modules.sort_by(|x, y| x.module_name.cmp(&y.module_name));

        // New code dir beside the old one.
        let code = self.code_dir(&bundle);
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
            if old.is_some() && code.is_dir() {
                for m in &modules {
                    if names.contains(&m.module_name) {
                        continue;
                    }
                    let f = format!("{}.hap", m.module_name);
                    std::fs::copy(code.join(&f), new_dir.join(&f)).map_err(ierr)?;
                }
                if code.join("libs").is_dir()
                    && modules.iter().any(|m| !names.contains(&m.module_name))
                {
                    copy_tree(&code.join("libs"), &new_dir.join("libs"))?;
                }
            }
            for (h, _) in &parsed {
                let f = package::safe_join(&new_dir, &format!("{}.hap", h.info.module_name))?;
                std::fs::write(&f, h.data).map_err(ierr)?;
                let libs = new_dir.join("libs");
                std::fs::create_dir_all(&libs).map_err(ierr)?;
                package::extract_libs(h.data, &limits, &libs)?;
            }
            Ok(())
        };
        if let Err(e) = build() {
            cleanup(&new_dir);
            return Err(e);
        }
        // Token.
        let api_version = AppInfo::api_level(first.info.app.target_api_version) as i32;
        let apl: oxh_atm::definitions::Apl = profile
            .apl
            .parse()
            .unwrap_or(oxh_atm::definitions::Apl::Normal);
        let mut perms: Vec<String> = modules
            .iter()
            .flat_map(|m| m.request_permissions.iter().map(|p| p.name.clone()))
            .collect();
        perms.sort();
        perms.dedup();
        let policy = HapPolicy {
            apl,
            domain: "default".into(),
            permissions: perms,
            acls: profile.acls.clone(),
            pre_authorized: Vec::new(),
            acl_ignore_check: false,
        };
        let is_system_app = apl != oxh_atm::definitions::Apl::Normal;
        let dist = if profile.distribution_type.is_empty() {
            "none".to_string()
        } else {
            profile.distribution_type.clone()
        };
        let (bundle_id, uid, token_id) = match &old {
            Some(o) => {
                let upd = UpdateHapInfoParams {
                    app_id_desc: app_id.clone(),
                    api_version,
                    is_system_app,
                    app_distribution_type: dist.clone(),
                    uid: Some(o.uid),
                };
                if let Err(e) = self.atm.update_hap_token(o.token_id, &upd, &policy) {
                    cleanup(&new_dir);
                    return Err(BundleError::new(
                        code::UPDATE_HAP_TOKEN_FAILED,
                        e.to_string(),
                    ));
                }
                (o.bundle_id, o.uid, o.token_id)
            }
            None => {
                let bundle_id = match self.free_bundle_id() {
                    Ok(b) => b,
                    Err(e) => {
                        cleanup(&new_dir);
                        return Err(e);
                    }
                };
                let uid = (a.user_id.max(0) as u32) * UID_PER_USER + bundle_id;
                let info = HapInfoParams {
                    user_id: a.user_id,
                    bundle_name: bundle.clone(),
                    inst_index: 0,
                    dlp_type: DlpType::Common,
                    app_id_desc: app_id.clone(),
                    api_version,
                    is_system_app,
                    app_distribution_type: dist.clone(),
                    uid: Some(uid),
                };
                // A token without a bundle record is what a crash between the token and
                // the record leaves; this install supersedes it.
                if let Some(orphan) = self.atm.hap_token_id(a.user_id, &bundle, 0) {
                    let _ = self.atm.delete_token(orphan.token_id());
                }
                match self.atm.alloc_hap_token(&info, &policy) {
                    Ok(t) => (bundle_id, uid, t.token_id()),
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
        let now = now_ms();
        let rec = BundleRecord {
            bundle_name: bundle.clone(),
            user_id: a.user_id,
            bundle_id,
            uid,
            version_code: version,
            version_name: first.info.app.version_name.clone(),
            app_id,
            token_id,
            apl: apl.as_str().into(),
            distribution_type: dist,
            code_path: code.to_string_lossy().into_owned(),
            modules: modules.clone(),
            install_time: old.as_ref().map(|o| o.install_time).unwrap_or(now),
            update_time: now,
        };
        if let Err(e) = self.put(&rec) {
            cleanup(&new_dir);
            if old.is_none() {
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
        if old.is_none() {
            for d in self.data_dirs(&bundle, a.user_id) {
                std::fs::create_dir_all(&d).map_err(ierr)?;
                chown_if_root(&d, uid);
            }
        }
        tracing::info!(
            tag = "bms",
            public_bundle = bundle.as_str(),
            public_version = version,
            public_uid = uid,
            "bundle installed"
        );
        Ok(InstallResult {
            bundle_name: bundle,
            version_code: version,
            previous_version: old.map(|o| o.version_code),
            uid,
            token_id,
            modules: modules.iter().map(|m| m.module_name.clone()).collect(),
            skipped,
        })
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

    /// `bm dump -n`: the bundle's info as pretty JSON, with OpenHarmony's field names.
    pub fn dump_json(&self, bundle: &str, user: i32) -> Result<String, BundleError> {
        let r = self.get(bundle, user)?.ok_or_else(|| {
            BundleError::new(code::BUNDLE_NOT_FOUND, format!("{bundle} is not installed"))
        })?;
        let perms: Vec<&str> = {
            let mut v: Vec<&str> = r
                .modules
                .iter()
                .flat_map(|m| m.request_permissions.iter().map(|p| p.name.as_str()))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let v = serde_json::json!({
            "name": r.bundle_name,
            "versionCode": r.version_code,
            "versionName": r.version_name,
            "appId": r.app_id,
            "uid": r.uid,
            "gid": r.uid,
            "appIndex": 0,
            "userId": r.user_id,
            "bundleId": r.bundle_id,
            "accessTokenId": r.token_id,
            "applicationInfo": {
                "bundleName": r.bundle_name,
                "apl": r.apl,
                "appDistributionType": r.distribution_type,
                "codePath": r.code_path,
                "uid": r.uid,
                "accessTokenId": r.token_id,
            },
            "hapModuleNames": r.modules.iter().map(|m| m.module_name.clone()).collect::<Vec<_>>(),
            "hapModuleInfos": r.modules.iter().map(|m| serde_json::json!({
                "moduleName": m.module_name,
                "moduleType": m.module_type.as_str(),
                "deviceTypes": m.device_types,
                "mainElementName": m.main_element,
                "abilityInfos": m.abilities.iter().map(|x| serde_json::json!({"name": x.name, "type": x.kind, "visible": x.exported, "skills": x.skills})).collect::<Vec<_>>(),
                "extensionInfos": m.extension_abilities.iter().map(|x| serde_json::json!({"name": x.name, "type": x.kind, "visible": x.exported})).collect::<Vec<_>>(),
                "reqPermissions": m.request_permissions.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
                "metadata": m.metadata,
            })).collect::<Vec<_>>(),
            "reqPermissions": perms,
            "installTime": r.install_time,
            "updateTime": r.update_time,
        });
        serde_json::to_string_pretty(&v).map_err(ierr)
    }

    /// The SA dump: counts and bundle names.
    pub fn dump_text(&self) -> String {
        let names = self.names(api::DEFAULT_USER).unwrap_or_default();
        format!(
            "bundles (user {}): {}\n{}\ntrust roots: {}\nstore: {}\n",
            api::DEFAULT_USER,
            names.len(),
            names
                .iter()
                .map(|n| format!("  {n}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.trust_list().len(),
            self.cfg.dir.join("bundles.db").display()
        )
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

fn chown_if_root(p: &Path, uid: u32) {
    if oxh_ipc_uid_is_root() {
        let _ = std::os::unix::fs::chown(p, Some(uid), Some(uid));
    }
}

fn oxh_ipc_uid_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
        .unwrap_or(false)
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
mod recovery_tests {
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
