//! The store registry: which app a caller acts for, and finding, opening, creating, listing
//! and deleting its stores on disk.

use super::{KvService, OpenStore, StoreKey, lock};
use crate::api::{self, Options, StoreInfo};
use crate::error::KvError;
use crate::limits::{check_bundle_name, check_store_id};
use crate::store::{Store, StoreMeta};
use crate::sync::SyncEngine;
use crate::wire::StoreDesc;
use oxh_ipc::Caller;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

impl KvService {
    /// Every store on disk, with its options.
    pub(super) fn scan(&self) -> Vec<(String, String, StoreMeta)> {
        let mut v = Vec::new();
        let Ok(apps) = std::fs::read_dir(&self.cfg.dir) else {
            return v;
        };
        for app in apps.flatten() {
            let bundle = app.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(app.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "db")
                    && let Some(id) = p.file_stem().map(|s| s.to_string_lossy().into_owned())
                    && let Some(m) = Store::peek_meta(&p)
                {
                    v.push((bundle.clone(), id, m));
                }
            }
        }
        v
    }

    pub(super) fn store_path(&self, key: &StoreKey) -> PathBuf {
        self.cfg.dir.join(&key.0).join(format!("{}.db", key.1))
    }

    /// The app a caller acts for: its own bundle (HAP), or the one it names (native, shell).
    pub fn app_of(&self, caller: &Caller, named: Option<&str>) -> Result<String, KvError> {
        let resolver = lock(&self.resolver).clone();
        let app = caller
            .app(named, |id| resolver.and_then(|r| r(id)))
            .map_err(|e| match e {
                oxh_ipc::AppRefused::Unnamed => KvError::invalid(e.to_string()),
                _ => KvError::PermissionDenied(e.to_string()),
            })?;
        check_bundle_name(&app)?;
        Ok(app)
    }

    pub(super) fn key(&self, caller: &Caller, r: &api::StoreRef) -> Result<StoreKey, KvError> {
        let app = self.app_of(caller, r.app.as_deref())?;
        check_store_id(&r.store_id)?;
        Ok((app, r.store_id.clone()))
    }

    pub(super) fn open_store(
        &self,
        key: &StoreKey,
        want: Option<StoreMeta>,
        create: bool,
    ) -> Result<Arc<OpenStore>, KvError> {
        if let Some(o) = lock(&self.stores).get(key) {
            if let Some(w) = want {
                let m = lock(&o.store).meta();
                if m.kind != w.kind || m.level != w.level {
                    return Err(KvError::OptionsChanged(format!(
                        "the store is a {} store of level {}",
                        m.kind.as_str(),
                        m.level.as_str()
                    )));
                }
            }
            return Ok(o.clone());
        }
        let path = self.store_path(key);
        let want = match want {
            Some(w) => w,
            None => Store::peek_meta(&path)
                .ok_or_else(|| KvError::NotFound(format!("store {} does not exist", key.1)))?,
        };
        let store = Store::open(&path, &self.cfg.device_id, want, create)?;
        let meta = store.meta();
        let desc = StoreDesc {
            bundle: key.0.clone(),
            store_id: key.1.clone(),
            kind: meta.kind,
            level: meta.level,
        };
        let o = Arc::new(OpenStore {
            store: Mutex::new(store),
            engine: Mutex::new(SyncEngine::new(
                desc.clone(),
                self.cfg.device_level,
                self.cfg.sync.clone(),
            )),
            desc,
            dirty: AtomicBool::new(false),
            subs: Mutex::new(Vec::new()),
        });
        Ok(lock(&self.stores).entry(key.clone()).or_insert(o).clone())
    }

    pub(super) fn existing(&self, key: &StoreKey) -> Result<Arc<OpenStore>, KvError> {
        self.open_store(key, None, false)
    }

    /// getKVStore.
    pub fn get_kv_store(&self, caller: &Caller, a: &api::OpenArgs) -> Result<StoreInfo, KvError> {
        let key = self.key(caller, &a.store)?;
        if a.options.encrypt {
            return Err(KvError::NotSupported(
                "encrypted stores are not offered yet".into(),
            ));
        }
        let want = StoreMeta {
            kind: a.options.kv_store_type,
            level: a.options.security_level,
            auto_sync: a.options.auto_sync,
        };
        let o = self.open_store(&key, Some(want), a.options.create_if_missing)?;
        let s = lock(&o.store);
        Ok(StoreInfo {
            app: key.0.clone(),
            kind: s.meta().kind,
            level: s.meta().level,
            local_device: self.cfg.device_id.clone(),
            auto_sync: s.meta().auto_sync,
        })
    }

    /// deleteKVStore: the file goes (15100004 when there is none).
    pub fn delete_store(&self, caller: &Caller, r: &api::StoreRef) -> Result<(), KvError> {
        let key = self.key(caller, r)?;
        let path = self.store_path(&key);
        lock(&self.stores).remove(&key);
        if !path.exists() {
            return Err(KvError::NotFound(format!("store {} does not exist", key.1)));
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        Ok(())
    }

    /// getAllKVStoreId.
    pub fn store_ids(&self, caller: &Caller, app: Option<&str>) -> Result<Vec<String>, KvError> {
        let app = self.app_of(caller, app)?;
        let mut v: Vec<String> = self
            .scan()
            .into_iter()
            .filter(|(b, _, _)| *b == app)
            .map(|(_, id, _)| id)
            .collect();
        v.sort();
        Ok(v)
    }
}

/// The options an SA call gives, checked (for `oxh kv put --type/--level`).
pub fn meta_of(o: &Options) -> StoreMeta {
    StoreMeta {
        kind: o.kv_store_type,
        level: o.security_level,
        auto_sync: o.auto_sync,
    }
}

#[cfg(test)]
mod tests {
    use crate::service::test_util::{caller, sref, svc};

    use crate::api::{GetArgs, OpenArgs, Options};
    use oxh_ipc::TokenType;

    #[test]
    fn apps_reach_only_their_own_stores() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path());
        let app_a = caller(TokenType::Hap, 7);
        let app_b = caller(TokenType::Hap, 8);
        let open = |store| OpenArgs {
            store,
            options: Options::default(),
        };
        // An app opens its own store without naming itself, or naming itself.
        s.get_kv_store(&app_a, &open(sref(None))).unwrap();
        s.write(
            &app_a,
            1,
            &sref(Some("com.a")),
            vec![(b"k".to_vec(), Some(b"a".to_vec()))],
        )
        .unwrap();
        // Another app may not name it (201), and its own "s" is another store.
        let e = s
            .get_kv_store(&app_b, &open(sref(Some("com.a"))))
            .unwrap_err();
        assert_eq!(e.code(), 201);
        s.get_kv_store(&app_b, &open(sref(None))).unwrap();
        let get = GetArgs {
            store: sref(None),
            key: b"k".to_vec(),
            device: None,
        };
        assert_eq!(s.get(&app_b, &get).unwrap_err().code(), 15_100_004);
        assert_eq!(s.get(&app_a, &get).unwrap(), b"a");
        // The shell names the app; it must.
        let sh = caller(TokenType::Shell, 0);
        assert_eq!(
            s.get(
                &sh,
                &GetArgs {
                    store: sref(Some("com.a")),
                    ..get.clone()
                }
            )
            .unwrap(),
            b"a"
        );
        assert_eq!(s.get(&sh, &get).unwrap_err().code(), 401);
        // No token, or an app the token manager does not know: nothing.
        assert_eq!(
            s.get(&caller(TokenType::Invalid, 0), &get)
                .unwrap_err()
                .code(),
            201
        );
        assert_eq!(
            s.get(&caller(TokenType::Hap, 9), &get).unwrap_err().code(),
            201
        );
        assert!(d.path().join("com.a/s.db").exists() && d.path().join("com.b/s.db").exists());
    }

    #[test]
    fn auto_sync_stores_are_opened_at_start() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = svc(d.path());
            let o = Options {
                auto_sync: true,
                ..Options::default()
            };
            s.get_kv_store(
                &caller(TokenType::Shell, 0),
                &OpenArgs {
                    store: sref(Some("com.a")),
                    options: o,
                },
            )
            .unwrap();
        }
        let s = svc(d.path());
        assert!(
            s.dump_text(true)
                .contains("com.a/s: single S1 auto_sync=true"),
            "{}",
            s.dump_text(true)
        );
    }
}
