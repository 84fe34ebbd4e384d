//! File URIs as OpenHarmony's `@ohos.file.fileuri` writes them:
//! `file://<bundleName>/<path>` for an app's file (the path as the app sees it in its
//! sandbox, e.g. `/data/storage/el2/base/files/a.txt`), with `?networkid=<networkId>` for a
//! file on another device. The path is percent-encoded as a URI path (its `/` kept);
//! [`FileUri::path`] gives it decoded.

use crate::error::DfsError;

/// The longest URI accepted (a path of PATH_MAX with room for the rest).
pub const MAX_URI_LEN: usize = 4096 + 512;

/// A parsed file URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUri {
    authority: String,
    path: String,
    network_id: Option<String>,
}

/// The bytes a URI path keeps as they are (RFC 3986's unreserved, sub-delims, `:`, `@`,
/// and `/`).
fn keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Result<String, DfsError> {
    let bad = || DfsError::Invalid(format!("{s:?}: a bad %-escape in the URI"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let h = std::str::from_utf8(h).map_err(|_| bad())?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DfsError::Invalid(format!("{s:?}: not UTF-8")))
}

impl FileUri {
    /// `fileUri.getUriFromPath` for `bundle`'s file at sandbox path `path` (absolute).
    pub fn from_path(bundle: &str, path: &str) -> Result<Self, DfsError> {
        if bundle.is_empty() || bundle.contains(['/', '?', '#', '%', '\0']) {
            return Err(DfsError::Invalid(format!(
                "{bundle:?} is not a bundle name"
            )));
        }
        if !path.starts_with('/') || path.contains('\0') {
            return Err(DfsError::Invalid(format!(
                "{path:?} is not an absolute path"
            )));
        }
        Ok(Self {
            authority: bundle.to_string(),
            path: path.to_string(),
            network_id: None,
        })
    }

    /// The same file on device `network_id` (`?networkid=`).
    pub fn on_device(mut self, network_id: &str) -> Self {
        self.network_id = Some(network_id.to_string());
        self
    }

    /// The authority: the bundle name (or `media`, `docs` for OpenHarmony's shared ones).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `FileUri.path`: the path, decoded.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `FileUri.name`: the last component of the path.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    /// `isRemoteUri`: the URI names another device.
    pub fn is_remote(&self) -> bool {
        self.network_id.is_some()
    }

    /// The device the URI names, if another.
    pub fn network_id(&self) -> Option<&str> {
        self.network_id.as_deref()
    }
}

/// The sandbox dir whose files an app shares with its other devices (OpenHarmony's
/// `distributedfiles`): what a peer's file daemon serves, as `data/<bundle>/` of its account
/// tree (hmdfs's `account/.../data/<bundleName>`).
pub const DISTRIBUTED_FILES: &str = "/data/storage/el2/distributedfiles";

/// The sandbox dirs of an app on its own device, and where each is below the data dir (as the
/// app spawner binds them: `crates/ability/src/layout.rs`). `{user}`/`{bundle}` are filled in.
const SANDBOX_DIRS: &[(&str, &str)] = &[
    ("/data/storage/el1/base", "app/el1/{user}/base/{bundle}"),
    (
        "/data/storage/el1/database",
        "app/el1/{user}/database/{bundle}",
    ),
    ("/data/storage/el2/base", "app/el2/{user}/base/{bundle}"),
    (
        "/data/storage/el2/database",
        "app/el2/{user}/database/{bundle}",
    ),
    (
        DISTRIBUTED_FILES,
        "service/el2/{user}/hmdfs/account/data/{bundle}",
    ),
];

/// `rest` (what follows a sandbox dir in a path) checked to stay beneath it.
fn beneath_rest(path: &str, rest: &str) -> Result<String, DfsError> {
    let rest = rest.trim_start_matches('/');
    if rest.split('/').any(|c| c == "..") {
        return Err(DfsError::Escape(path.to_string()));
    }
    Ok(rest.to_string())
}

impl FileUri {
    /// For a file in [`DISTRIBUTED_FILES`]: its path in a device's account tree
    /// (`data/<bundle>/<rest>`), which is what a peer serves. Other paths are not shared.
    pub fn account_path(&self) -> Result<String, DfsError> {
        let rest = self
            .path
            .strip_prefix(DISTRIBUTED_FILES)
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| {
                DfsError::Invalid(format!(
                    "{}: only files in {DISTRIBUTED_FILES} are shared across devices",
                    self.path
                ))
            })?;
        let rest = beneath_rest(&self.path, rest)?;
        Ok(if rest.is_empty() {
            format!("data/{}", self.authority)
        } else {
            format!("data/{}/{rest}", self.authority)
        })
    }

    /// For a local URI: the file's path below the device's data dir, for `user` (the app's
    /// sandbox dirs as the app spawner binds them).
    pub fn local_path(&self, user: u32) -> Result<std::path::PathBuf, DfsError> {
        for (dir, host) in SANDBOX_DIRS {
            if let Some(rest) = self
                .path
                .strip_prefix(dir)
                .filter(|r| r.is_empty() || r.starts_with('/'))
            {
                let rest = beneath_rest(&self.path, rest)?;
                let base = host
                    .replace("{user}", &user.to_string())
                    .replace("{bundle}", &self.authority);
                return Ok(std::path::Path::new(&base).join(rest));
            }
        }
        Err(DfsError::Invalid(format!(
            "{}: not in an app's sandbox dirs ({})",
            self.path,
            SANDBOX_DIRS
                .iter()
                .map(|(d, _)| *d)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

impl std::fmt::Display for FileUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file://{}{}", self.authority, encode(&self.path))?;
        if let Some(n) = &self.network_id {
            write!(f, "?networkid={}", encode(n))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FileUri {
    type Err = DfsError;
    fn from_str(s: &str) -> Result<Self, DfsError> {
        if s.len() > MAX_URI_LEN {
            return Err(DfsError::Invalid(format!(
                "a URI of {} bytes (at most {MAX_URI_LEN})",
                s.len()
            )));
        }
        let rest = s
            .strip_prefix("file://")
            .ok_or_else(|| DfsError::Invalid(format!("{s:?} is not a file:// URI")))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let slash = rest
            .find('/')
            .ok_or_else(|| DfsError::Invalid(format!("{s:?} has no path")))?;
        let authority = &rest[..slash];
        let path = decode(&rest[slash..])?;
        let mut uri = Self::from_path(authority, &path)?;
        if let Some(q) = query {
            for kv in q.split('&').filter(|x| !x.is_empty()) {
                match kv.split_once('=') {
                    Some(("networkid", v)) if !v.is_empty() => {
                        uri.network_id = Some(decode(v)?);
                    }
                    _ => {
                        return Err(DfsError::Invalid(format!(
                            "{s:?}: unknown query {kv:?} (only networkid=)"
                        )));
                    }
                }
            }
        }
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_the_bundle_path_and_device_and_round_trip() {
        let u = FileUri::from_path("com.example.demo", "/data/storage/el2/base/files/a b#1.txt")
            .unwrap();
        assert_eq!(
            u.to_string(),
            "file://com.example.demo/data/storage/el2/base/files/a%20b%231.txt"
        );
        assert_eq!(u.name(), "a b#1.txt");
        assert!(!u.is_remote());
        let r = u.clone().on_device("net123");
        assert_eq!(
            r.to_string(),
            "file://com.example.demo/data/storage/el2/base/files/a%20b%231.txt?networkid=net123"
        );
        let back: FileUri = r.to_string().parse().unwrap();
        assert_eq!(back, r);
        assert!(back.is_remote() && back.network_id() == Some("net123"));
        assert_eq!(back.path(), "/data/storage/el2/base/files/a b#1.txt");
        let cjk: FileUri = "file://com.a/data/%E6%96%87.txt".parse().unwrap();
        assert_eq!(cjk.name(), "文.txt");
    }

    #[test]
    fn bad_uris_are_refused_with_a_reason() {
        for bad in [
            "http://com.a/x",
            "file://com.a",
            "file:///x",
            "file://com.a/x%zz",
            "file://com.a/x%e6",
            "file://com.a/x?foo=1",
            "file://com.a/x?networkid=",
            "file://com.a/x%00y",
        ] {
            assert!(bad.parse::<FileUri>().is_err(), "{bad}");
        }
        let long = format!("file://com.a/{}", "x".repeat(MAX_URI_LEN));
        assert!(long.parse::<FileUri>().is_err());
    }

    #[test]
    fn uris_map_to_the_account_tree_and_the_apps_dirs() {
        let u: FileUri = "file://com.a/data/storage/el2/distributedfiles/d/x.txt?networkid=n"
            .parse()
            .unwrap();
        assert_eq!(u.account_path().unwrap(), "data/com.a/d/x.txt");
        assert_eq!(
            u.local_path(100).unwrap(),
            std::path::Path::new("service/el2/100/hmdfs/account/data/com.a/d/x.txt")
        );
        let b: FileUri = "file://com.a/data/storage/el2/base/files/a"
            .parse()
            .unwrap();
        assert_eq!(
            b.local_path(100).unwrap(),
            std::path::Path::new("app/el2/100/base/com.a/files/a")
        );
        assert!(b.account_path().is_err(), "base files are not shared");
        for bad in [
            "file://com.a/data/storage/el2/distributedfiles/../base/x",
            "file://com.a/data/storage/el2/distributedfilesX/x",
            "file://com.a/etc/passwd",
        ] {
            let u: FileUri = bad.parse().unwrap();
            assert!(
                u.account_path().is_err() && u.local_path(100).is_err(),
                "{bad}"
            );
        }
    }
}
