//! What an app's sandbox holds: the mounts of OpenHarmony's appdata-sandbox.json for a normal
//! app, mapped onto a device's data root, plus the system files a Linux process needs.
//!
//! | inside the sandbox | on the host | |
//! |---|---|---|
//! | `/data/storage/el1/bundle` | `<root>/app/el1/bundle/public/<bundle>` | read-only (the code) |
//! | `/data/storage/el1/base` | `<root>/app/el1/<user>/base/<bundle>` | |
//! | `/data/storage/el1/database` | `<root>/app/el1/<user>/database/<bundle>` | |
//! | `/data/storage/el2/base` | `<root>/app/el2/<user>/base/<bundle>` | |
//! | `/data/storage/el2/database` | `<root>/app/el2/<user>/database/<bundle>` | |
//! | `/data/storage/el2/distributedfiles` | HMDFS's `merge_view/data/<bundle>` (its account-tree dir when the views are not mounted) | |
//! | `/system/bin/oxh-apphost` | the app host binary | read-only |
//! | `/system/lib/ndk/{liboxh_ndk.so, libhilog_ndk.z.so}` | the NDK's libraries | read-only |
//! | `/run/oxhd.sock` | the daemon's IPC socket | |
//! | `/lib`, `/lib64`, `/usr/lib`, `/usr/lib64`, `/etc/ld.so.cache` | the same | read-only (the C library and loader) |
//!
//! OpenHarmony mounts its `/system/lib*` for the same reason as the last row. Nothing else of
//! the host is there: not `/etc`, `/home`, `/root` or another app's data.

use crate::spawn::BindSpec;
use std::path::{Path, PathBuf};

/// The code dir inside the sandbox.
pub const CODE_DIR: &str = "/data/storage/el1/bundle";
/// The app host inside the sandbox.
pub const HOST_PROGRAM: &str = "/system/bin/oxh-apphost";
/// Where the NDK's libraries are inside the sandbox.
pub const NDK_DIR: &str = "/system/lib/ndk";
/// The NDK's libraries, in the order the host loads them (each may use the ones before):
/// ours, then OpenHarmony's hilog library under its own name.
pub const NDK_LIBS: [&str; 2] = ["liboxh_ndk.so", "libhilog_ndk.z.so"];
pub use crate::api::{IPC_SOCKET, IPC_SOCKET_ENV, PROC_ENV};
/// Where an app sees its distributed files (OpenHarmony's appdata-sandbox.json).
pub const DISTRIBUTED_FILES: &str = "/data/storage/el2/distributedfiles";
/// The user's uid range (OpenHarmony's BASE_USER_RANGE): uid = userId * 200000 + bundleId.
pub const UID_PER_USER: u32 = 200_000;

/// System paths bound read-only when the host has them.
const SYSTEM_RO: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/ld.so.cache",
];

/// Where a device keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The device's data root (`<data-dir>`): apps' code and data are below it.
    pub data_root: PathBuf,
    /// The app host binary.
    pub host_program: PathBuf,
    /// The dir holding the NDK's libraries ([`NDK_LIBS`]); those present are bound.
    pub ndk_dir: Option<PathBuf>,
    /// The daemon's IPC socket.
    pub ipc_socket: PathBuf,
    /// Where apps' distributed files are, when the device has them.
    pub distributed_files: Option<DistributedFiles>,
}

/// The roots of apps' distributed files (`<bundle>` below each is one app's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedFiles {
    /// Every trusted device's files merged (HMDFS's `merge_view/data`): what an app is shown
    /// while [`DistributedFiles::mounted`] says the views are up.
    pub merged: PathBuf,
    /// Whether the views are mounted, as the file daemon says. Never found out by looking
    /// through the mount: a daemon thread blocked on its own FUSE file system while the
    /// daemon is killed never returns (the request is already with the dead server), and the
    /// daemon could not die.
    pub mounted: ViewsMounted,
    /// This device's own (the account tree's `data`): shown instead when the merged view is
    /// not mounted (no FUSE), so the app still has its directory.
    pub local: PathBuf,
}

/// Whether HMDFS's views are mounted: set by the file daemon, read at each spawn.
#[derive(Debug, Clone, Default)]
pub struct ViewsMounted(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ViewsMounted {
    /// Says whether they are.
    pub fn set(&self, mounted: bool) {
        self.0.store(mounted, std::sync::atomic::Ordering::Release);
    }
    /// Whether they are.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl PartialEq for ViewsMounted {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ViewsMounted {}

/// The mounts of `bundle`'s sandbox for `user`. `exists` says which host paths exist (so
/// a test can plan without a file system); a system path the host lacks is left out, an app
/// dir never is (a missing one fails the spawn, as OpenHarmony's check-action-status).
pub fn binds(
    host: &Host,
    bundle: &str,
    user: i32,
    exists: impl Fn(&Path) -> bool,
) -> Vec<BindSpec> {
    let app = |el: &str, kind: &str| {
        host.data_root
            .join("app")
            .join(el)
            .join(user.to_string())
            .join(kind)
            .join(bundle)
    };
    let bind = |src: PathBuf, dst: &str, read_only: bool| BindSpec {
        src,
        dst: PathBuf::from(dst),
        read_only,
    };
    let mut v: Vec<BindSpec> = SYSTEM_RO
        .iter()
        .filter(|p| exists(Path::new(p)))
        .map(|p| bind(PathBuf::from(p), p, true))
        .collect();
    v.push(bind(host.host_program.clone(), HOST_PROGRAM, true));
    if let Some(dir) = &host.ndk_dir {
        for lib in NDK_LIBS {
            let src = dir.join(lib);
            if exists(&src) {
                v.push(bind(src, &format!("{NDK_DIR}/{lib}"), true));
            }
        }
    }
    v.push(bind(host.ipc_socket.clone(), IPC_SOCKET, false));
    v.push(bind(
        host.data_root.join("app/el1/bundle/public").join(bundle),
        CODE_DIR,
        true,
    ));
    v.push(bind(app("el1", "base"), "/data/storage/el1/base", false));
    v.push(bind(
        app("el1", "database"),
        "/data/storage/el1/database",
        false,
    ));
    v.push(bind(app("el2", "base"), "/data/storage/el2/base", false));
    v.push(bind(
        app("el2", "database"),
        "/data/storage/el2/database",
        false,
    ));
    if let Some(d) = &host.distributed_files {
        let src = if d.mounted.get() {
            d.merged.join(bundle)
        } else {
            d.local.join(bundle)
        };
        v.push(bind(src, DISTRIBUTED_FILES, false));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_sees_its_code_read_only_and_its_own_data() {
        let host = Host {
            data_root: "/var/lib/oxh".into(),
            host_program: "/opt/oxh/bin/oxh-apphost".into(),
            ndk_dir: None,
            ipc_socket: "/var/lib/oxh/run/oxhd.sock".into(),
            distributed_files: None,
        };
        let b = binds(&host, "com.example.notes", 100, |p| {
            p != Path::new("/usr/lib64")
        });
        let find = |dst: &str| b.iter().find(|x| x.dst == Path::new(dst)).cloned();
        let code = find(CODE_DIR).unwrap();
        assert_eq!(
            code.src,
            Path::new("/var/lib/oxh/app/el1/bundle/public/com.example.notes")
        );
        assert!(code.read_only);
        let el2 = find("/data/storage/el2/base").unwrap();
        assert_eq!(
            el2.src,
            Path::new("/var/lib/oxh/app/el2/100/base/com.example.notes")
        );
        assert!(!el2.read_only);
        assert!(find(HOST_PROGRAM).unwrap().read_only);
        assert!(
            find("/usr/lib64").is_none(),
            "a system path the host lacks is left out"
        );
        assert!(find("/lib").unwrap().read_only);
        assert!(b.iter().all(|x| !x.dst.starts_with(NDK_DIR)));
        // Nothing from another bundle, nothing of /etc but the loader's cache.
        assert!(
            b.iter()
                .all(|x| !x.src.starts_with("/etc") || x.src == Path::new("/etc/ld.so.cache"))
        );
        assert!(
            b.iter()
                .filter(|x| x.src.starts_with("/var/lib/oxh/app"))
                .all(|x| x.src.ends_with("com.example.notes"))
        );
        assert!(find(DISTRIBUTED_FILES).is_none(), "no HMDFS, no such dir");
    }

    #[test]
    fn distributed_files_are_the_merged_view_or_this_devices_own_without_it() {
        let host = Host {
            data_root: "/d".into(),
            host_program: "/d/oxh-apphost".into(),
            ndk_dir: None,
            ipc_socket: "/d/run/oxhd.sock".into(),
            distributed_files: Some(DistributedFiles {
                merged: "/d/mnt/hmdfs/100/account/merge_view/data".into(),
                local: "/d/service/el2/100/hmdfs/account/data".into(),
                mounted: ViewsMounted::default(),
            }),
        };
        let src = |mounted: bool| {
            if let Some(d) = &host.distributed_files {
                d.mounted.set(mounted);
            }
            // Never looked for through the mount (see `DistributedFiles::mounted`).
            binds(&host, "com.example.notes", 100, |p| {
                !p.starts_with("/d/mnt")
            })
            .into_iter()
            .find(|x| x.dst == Path::new(DISTRIBUTED_FILES))
            .map(|x| (x.src, x.read_only))
        };
        assert_eq!(
            src(true),
            Some((
                "/d/mnt/hmdfs/100/account/merge_view/data/com.example.notes".into(),
                false
            ))
        );
        assert_eq!(
            src(false),
            Some((
                "/d/service/el2/100/hmdfs/account/data/com.example.notes".into(),
                false
            ))
        );
    }
}
