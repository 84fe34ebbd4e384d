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
}
