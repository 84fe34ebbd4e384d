//! Reading packages safely: a HAP (zip with `module.json` or `config.json`) or an `.app` (zip
//! with `pack.info` and HAPs). Every entry name is checked before anything else looks at it
//! (no `..`, no absolute paths, no symlinks), sizes are bounded (entry count, per-entry and
//! total uncompressed size, compression ratio) from the headers before any byte is inflated,
//! and inflating never goes past the declared size. Nothing here writes files except
//! [`extract_libs`], which only writes below the directory it is given.

use crate::error::{BundleError, code};
use crate::model::{self, HapInfo};
use crate::signing::{self, SigningBlock, ZipLayout};
use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};

/// Limits on what a package may contain. One definition, enforced here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest package file.
    pub max_package_bytes: u64,
    /// Most zip entries.
    pub max_entries: u64,
    /// Largest uncompressed entry.
    pub max_entry_bytes: u64,
    /// Largest total uncompressed size.
    pub max_total_bytes: u64,
    /// Largest compression ratio (uncompressed / compressed) for entries over 1 MiB.
    pub max_ratio: u64,
    /// Largest configuration file (module.json, config.json, pack.info).
    pub max_config_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_package_bytes: 1 << 30,
            max_entries: 20_000,
            max_entry_bytes: 512 << 20,
            max_total_bytes: 2 << 30,
            max_ratio: 100,
            max_config_bytes: 4 << 20,
        }
    }
}

/// One zip entry as its headers declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Name (checked: relative, no `..`).
    pub name: String,
    /// Compressed size.
    pub compressed: u64,
    /// Declared uncompressed size.
    pub size: u64,
    /// A directory entry.
    pub is_dir: bool,
}

/// A HAP that passed the structural checks, with its parsed configuration.
#[derive(Debug, Clone)]
pub struct Hap<'a> {
    /// The file.
    pub data: &'a [u8],
    /// Where the zip's parts are.
    pub layout: ZipLayout,
    /// The signing block, if signed.
    pub block: Option<SigningBlock>,
    /// Entries in central-directory order.
    pub entries: Vec<EntryInfo>,
    /// module.json / config.json.
    pub info: HapInfo,
    /// ABIs with native libraries (`libs/<abi>/`).
    pub abis: Vec<String>,
    /// The limits it was opened with (later reads of its entries keep to them).
    pub limits: Limits,
}

/// Checks a zip entry name: relative, no `..`, no backslashes, NUL or drive letters.
pub fn check_entry_name(name: &str) -> Result<(), BundleError> {
    let bad = |why: &str| {
        Err(BundleError::invalid_file(format!(
            "zip entry \"{}\" {why}",
            name.escape_debug()
        )))
    };
    if name.is_empty() {
        return bad("has an empty name");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return bad("is an absolute path");
    }
    if name.contains('\\') || name.contains('\0') {
        return bad("contains a backslash or NUL");
    }
    if name.len() >= 2 && name.as_bytes()[1] == b':' {
        return bad("names a drive");
    }
    if name.split('/').any(|c| c == "..") {
        return bad("climbs out of the package (..)");
    }
    Ok(())
}

fn zip_err(e: zip::result::ZipError) -> BundleError {
    BundleError::parse(format!("not a readable zip: {e}"))
}

/// The structure of a zip: its layout, signing block and checked entries.
pub struct ZipView<'a> {
    /// The file.
    pub data: &'a [u8],
    /// Layout.
    pub layout: ZipLayout,
    /// Signing block.
    pub block: Option<SigningBlock>,
    /// Entries.
    pub entries: Vec<EntryInfo>,
    archive: zip::ZipArchive<Cursor<&'a [u8]>>,
    limits: Limits,
}

impl<'a> ZipView<'a> {
    /// Checks the container: size, end record, signing block, every entry's name, type and
    /// declared sizes. Inflates nothing.
    pub fn open(data: &'a [u8], limits: &Limits) -> Result<Self, BundleError> {
        if data.len() as u64 > limits.max_package_bytes {
            return Err(BundleError::invalid_file(format!(
                "package is {} bytes, more than the {} allowed",
                data.len(),
                limits.max_package_bytes
            )));
        }
        let layout = signing::zip_layout(data).map_err(|e| match e {
            signing::SigningError::Zip64 => BundleError::invalid_file(e.to_string()),
            e => BundleError::parse(format!("not a readable zip: {e}")),
        })?;
        if layout.entries > limits.max_entries {
            return Err(BundleError::invalid_file(format!(
                "package has {} entries, more than the {} allowed",
                layout.entries, limits.max_entries
            )));
        }
        if layout.entries == 0 {
            return Err(BundleError::parse("not a readable zip: it has no entries"));
        }
        let block = signing::find_block(data, &layout)
            .map_err(|e| BundleError::new(code::VERIFICATION_FAILED, e.to_string()))?;
        let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(zip_err)?;
        if archive.len() as u64 > limits.max_entries {
            return Err(BundleError::invalid_file(format!(
                "package has {} entries, more than the {} allowed",
                archive.len(),
                limits.max_entries
            )));
        }
        let mut entries = Vec::with_capacity(archive.len());
        let mut total = 0u64;
        let mut seen = std::collections::HashSet::new();
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).map_err(zip_err)?;
            let name = std::str::from_utf8(f.name_raw())
                .map_err(|_| BundleError::invalid_file("a zip entry name is not UTF-8"))?
                .to_string();
            check_entry_name(&name)?;
            if let Some(mode) = f.unix_mode()
                && mode & 0o170000 == 0o120000
            {
                return Err(BundleError::invalid_file(format!(
                    "zip entry \"{}\" is a symbolic link",
                    name.escape_debug()
                )));
            }
            let (size, compressed) = (f.size(), f.compressed_size());
            if size > limits.max_entry_bytes {
                return Err(BundleError::invalid_file(format!(
                    "zip entry \"{}\" declares {size} bytes uncompressed, more than the {} allowed per entry",
                    name.escape_debug(),
                    limits.max_entry_bytes
                )));
            }
            if size > (1 << 20) && size / compressed.max(1) > limits.max_ratio {
                return Err(BundleError::invalid_file(format!(
                    "zip entry \"{}\" expands {size} / {compressed} bytes, a compression ratio over {} (zip bomb)",
                    name.escape_debug(),
                    limits.max_ratio
                )));
            }
            total = total.saturating_add(size);
            if total > limits.max_total_bytes {
                return Err(BundleError::invalid_file(format!(
                    "package declares more than {} bytes uncompressed in total (zip bomb)",
                    limits.max_total_bytes
                )));
            }
            if !seen.insert(name.clone()) {
                return Err(BundleError::invalid_file(format!(
                    "zip entry \"{}\" appears twice",
                    name.escape_debug()
                )));
            }
            entries.push(EntryInfo {
                is_dir: f.is_dir(),
                name,
                compressed,
                size,
            });
        }
        drop(seen);
        Ok(Self {
            data,
            layout,
            block,
            entries,
            archive,
            limits: *limits,
        })
    }

    /// Whether an entry exists.
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }

    /// Reads one entry fully, refusing to inflate past `limit` or its declared size.
    pub fn read(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, BundleError> {
        let i = self
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| BundleError::parse(format!("no {name} in the package")))?;
        let declared = self.entries[i].size;
        if declared > limit {
            return Err(BundleError::invalid_file(format!(
                "{name} declares {declared} bytes, more than the {limit} allowed"
            )));
        }
        let f = self
            .archive
            .by_index(i)
            .map_err(|e| BundleError::parse(format!("cannot read {name}: {e}")))?;
        let mut out = Vec::with_capacity(declared as usize);
        f.take(declared + 1)
            .read_to_end(&mut out)
            .map_err(|e| BundleError::invalid_file(format!("cannot read {name}: {e}")))?;
        if out.len() as u64 != declared {
            return Err(BundleError::invalid_file(format!(
                "{name} expands to more or fewer bytes than its header declares"
            )));
        }
        Ok(out)
    }

    /// The limits this view enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Opens a HAP: container checks, then its configuration.
pub fn open_hap<'a>(data: &'a [u8], limits: &Limits) -> Result<Hap<'a>, BundleError> {
    let mut z = ZipView::open(data, limits)?;
    let max = limits.max_config_bytes;
    let info = if z.has("module.json") {
        model::parse_module_json(&z.read("module.json", max)?)?
    } else if z.has("config.json") {
        model::parse_config_json(&z.read("config.json", max)?)?
    } else {
        return Err(BundleError::parse(
            "no module.json (stage model) or config.json (FA model) in the package",
        ));
    };
    let mut abis: Vec<String> = z
        .entries
        .iter()
        .filter_map(|e| {
            let rest = e.name.strip_prefix("libs/")?;
            let (abi, file) = rest.split_once('/')?;
            (!file.is_empty()).then(|| abi.to_string())
        })
        .collect();
    abis.sort();
    abis.dedup();
    Ok(Hap {
        data,
        layout: z.layout,
        block: z.block.clone(),
        entries: z.entries.clone(),
        info,
        abis,
        limits: *limits,
    })
}

/// What a file holds: one HAP, or an `.app` with several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A HAP (or HSP).
    Hap,
    /// An `.app`: pack.info and HAPs.
    App,
}

/// Tells a HAP from an `.app` by content (an `.app` has `*.hap` entries and no module config).
pub fn kind(data: &[u8], limits: &Limits) -> Result<Kind, BundleError> {
    let z = ZipView::open(data, limits)?;
    if !z.has("module.json")
        && !z.has("config.json")
        && z.entries
            .iter()
            .any(|e| e.name.ends_with(".hap") || e.name.ends_with(".hsp"))
    {
        Ok(Kind::App)
    } else {
        Ok(Kind::Hap)
    }
}

/// The HAPs inside an `.app`, as (name, bytes); each is bounded by the entry limit.
pub fn app_haps(data: &[u8], limits: &Limits) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    let mut z = ZipView::open(data, limits)?;
    let names: Vec<String> = z
        .entries
        .iter()
        .filter(|e| !e.is_dir && (e.name.ends_with(".hap") || e.name.ends_with(".hsp")))
        .map(|e| e.name.clone())
        .collect();
    if names.is_empty() {
        return Err(BundleError::parse("the .app holds no HAP"));
    }
    let mut out = Vec::new();
    for n in names {
        let b = z.read(&n, limits.max_entry_bytes)?;
        out.push((n, b));
    }
    Ok(out)
}

/// Joins a checked entry name below `dir`, component by component.
pub fn safe_join(dir: &Path, name: &str) -> Result<PathBuf, BundleError> {
    check_entry_name(name)?;
    let mut p = dir.to_path_buf();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => {
                return Err(BundleError::invalid_file(format!(
                    "zip entry \"{}\" is not a plain relative path",
                    name.escape_debug()
                )));
            }
        }
    }
    Ok(p)
}

/// Writes the native libraries (`libs/<abi>/...`) of a verified HAP below `dest` (which the
/// caller created empty). Files are created new (never through an existing path).
pub fn extract_libs(data: &[u8], limits: &Limits, dest: &Path) -> Result<u64, BundleError> {
    let mut z = ZipView::open(data, limits)?;
    let names: Vec<(String, u64)> = z
        .entries
        .iter()
        .filter(|e| !e.is_dir && e.name.starts_with("libs/"))
        .map(|e| (e.name.clone(), e.size))
        .collect();
    let mut written = 0;
    for (name, size) in names {
        let rel = &name["libs/".len()..];
        let target = safe_join(dest, rel)?;
        let bytes = z.read(&name, size)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| BundleError::internal(format!("{}: {e}", parent.display())))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| BundleError::internal(format!("{}: {e}", target.display())))?;
        std::io::Write::write_all(&mut f, &bytes)
            .map_err(|e| BundleError::internal(format!("{}: {e}", target.display())))?;
        written += bytes.len() as u64;
    }
    Ok(written)
}

/// Parser entry for fuzzing: never panics, whatever the bytes.
pub fn fuzz_one(data: &[u8]) {
    let limits = Limits {
        max_package_bytes: 1 << 20,
        max_entries: 64,
        max_entry_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_ratio: 100,
        max_config_bytes: 64 << 10,
    };
    if let Ok(h) = open_hap(data, &limits) {
        let _ = crate::verify::verify(&h, &crate::verify::VerifyOptions::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "\\x",
            "C:/x",
            "a\\..\\b",
            "",
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad}");
        }
        for good in ["module.json", "libs/arm64-v8a/libx.so", "a/b/c.txt", "a..b"] {
            assert!(check_entry_name(good).is_ok(), "{good}");
        }
        assert!(safe_join(Path::new("/tmp/x"), "a/./b").is_ok());
    }

    const MODULE: &[u8] = br#"{"app":{"bundleName":"com.example.t","versionCode":1},"module":{"name":"entry","type":"entry"}}"#;

    fn zip_of(entries: &[(&str, &[u8])], symlink: Option<&str>) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (n, d) in entries {
            w.start_file(*n, o).unwrap();
            std::io::Write::write_all(&mut w, d).unwrap();
        }
        if let Some(l) = symlink {
            w.add_symlink(l, "/etc/passwd", o).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn limits_refuse_before_inflating() {
        let l = Limits::default();
        let ok = zip_of(&[("module.json", MODULE)], None);
        assert_eq!(
            open_hap(&ok, &l).unwrap().info.app.bundle_name,
            "com.example.t"
        );
        let e = open_hap(&zip_of(&[("module.json", MODULE)], Some("libs/a.so")), &l).unwrap_err();
        assert!(e.reason.contains("symbolic link"), "{e}");
        let e = open_hap(
            &zip_of(&[("module.json", MODULE), ("../x", b"x")], None),
            &l,
        )
        .unwrap_err();
        assert!(e.reason.contains(".."), "{e}");
        // 8 MiB of zeros: ratio ~1000.
        let z = vec![0u8; 8 << 20];
        let e = open_hap(&zip_of(&[("module.json", MODULE), ("z", &z)], None), &l).unwrap_err();
        assert!(e.reason.contains("zip bomb"), "{e}");
        let tight = Limits {
            max_entries: 3,
            ..l
        };
        let many: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("f{i}"), vec![])).collect();
        let refs: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let e = open_hap(&zip_of(&refs, None), &tight).unwrap_err();
        assert_eq!(e.code, code::INVALID_BUNDLE_FILE);
        assert!(e.reason.contains("entries"), "{e}");
        let small = Limits {
            max_entry_bytes: 10,
            ..l
        };
        let e = open_hap(&zip_of(&[("module.json", MODULE)], None), &small).unwrap_err();
        assert!(e.reason.contains("declares"), "{e}");
    }

    #[test]
    fn an_entry_that_inflates_past_its_header_is_refused() {
        let mut json = MODULE.to_vec();
        json.extend(std::iter::repeat_n(b' ', 1 << 20));
        let mut z = zip_of(&[("module.json", &json)], None);
        oxh_testkit::zip::patch_declared_sizes(&mut z, &["module.json"], 100);
        let e = open_hap(&z, &Limits::default()).unwrap_err();
        assert_eq!(e.code, code::INVALID_BUNDLE_FILE, "{e}");
        assert!(e.reason.contains("declared"), "{e}");
    }

    #[test]
    fn libs_extract_only_below_dest() {
        let d = tempfile::tempdir().unwrap();
        let z = zip_of(
            &[("module.json", MODULE), ("libs/x86_64/liba.so", b"A")],
            None,
        );
        assert_eq!(extract_libs(&z, &Limits::default(), d.path()).unwrap(), 1);
        assert_eq!(
            std::fs::read(d.path().join("x86_64/liba.so")).unwrap(),
            b"A"
        );
        // Second extraction over existing files: refused, never overwritten through.
        assert!(extract_libs(&z, &Limits::default(), d.path()).is_err());
    }
}
