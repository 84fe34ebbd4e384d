//! Loading an app's native library under code-signature enforcement, as a release device
//! (`const.debuggable=0`) does: OpenHarmony's kernel refuses to map executable pages of a
//! file without a valid code signature; here the app host checks the signature before it
//! loads, over the very bytes it loads.
//!
//! No window between check and load: the library is read once through one descriptor, its
//! fs-verity digest computed over those bytes and checked against the code signature in
//! the bundle's installed HAP, and the same bytes are copied into a sealed memfd (no write,
//! grow or shrink) that the loader maps through `/proc/self/fd`. A file swapped or changed
//! after the check is never what runs.

use oxh_bundle::codesign::{CodeSignError, cs};
use oxh_bundle::package::{self, Limits};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The parameter that makes a device a release device when it is `0`.
pub const DEBUGGABLE_PARAM: &str = "const.debuggable";

/// Whether a device with `const.debuggable` = `value` (`None`: unset) enforces code
/// signatures: only an explicit `0` does (a device that never set it is a developer's).
pub fn enforced(value: Option<&str>) -> bool {
    value == Some("0")
}

/// Why a library was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its code signature is missing or wrong.
    #[error("code signature verification failed: {0}")]
    CodeSign(#[from] CodeSignError),
    /// It could not be read or copied.
    #[error("{0}")]
    Io(String),
    /// The loader refused it.
    #[error("{0}")]
    Load(String),
}

/// Verifies `bytes`, the library `name` (its ZIP entry name, `libs/<abi>/<file>`), against
/// the HAPs (`*.hap`) in `code_dir`: one of them must sign it.
pub fn verify_in_bundle(code_dir: &Path, name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let limits = Limits::default();
    let mut haps: Vec<_> = std::fs::read_dir(code_dir)
        .map_err(|e| LoadError::Io(format!("{}: {e}", code_dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hap"))
        .collect();
    haps.sort();
    for p in haps {
        let data = read_bounded(&p, limits.max_package_bytes)?;
        let Ok(h) = package::open_hap(&data, &limits) else {
            continue;
        };
        if oxh_bundle::verify::verify_installed_lib(&h, name, bytes)? {
            return Ok(());
        }
    }
    Err(CodeSignError::new(
        cs::NO_SIGNATURE,
        format!("{name}: no HAP of the bundle carries a code signature for it"),
    )
    .into())
}

fn read_bounded(p: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let io = |e: std::io::Error| LoadError::Io(format!("{}: {e}", p.display()));
    let f = std::fs::File::open(p).map_err(io)?;
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out).map_err(io)?;
    if out.len() as u64 > max {
        return Err(LoadError::Io(format!(
            "{}: larger than the {max} bytes a package may be",
            p.display()
        )));
    }
    Ok(out)
}

/// Reads the library at `path` once, verifies it as `name` against the bundle in
/// `code_dir`, and returns a sealed memfd holding exactly the bytes verified.
pub fn verified_copy(code_dir: &Path, path: &Path, name: &str) -> Result<OwnedFd, LoadError> {
    let bytes = read_bounded(path, Limits::default().max_entry_bytes)?;
    verify_in_bundle(code_dir, name, &bytes)?;
    sealed_memfd(name, &bytes)
}

/// A memfd holding `bytes`, sealed against any change.
pub fn sealed_memfd(name: &str, bytes: &[u8]) -> Result<OwnedFd, LoadError> {
    let io = |what: &str| LoadError::Io(format!("{what}: {}", std::io::Error::last_os_error()));
    let cname = std::ffi::CString::new(name.rsplit('/').next().unwrap_or("lib"))
        .map_err(|_| LoadError::Io("library name holds a NUL".into()))?;
    // SAFETY: memfd_create(2) with a NUL-terminated name; returns a new descriptor or -1.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io("memfd_create"));
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(owned);
    f.write_all(bytes)
        .map_err(|e| LoadError::Io(format!("memfd: {e}")))?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(2) F_ADD_SEALS on a descriptor we own.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io("sealing the memfd"));
    }
    Ok(OwnedFd::from(f))
}

/// The path the loader opens for a descriptor of this process.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_zero_enforces() {
        assert!(enforced(Some("0")));
        assert!(!enforced(Some("1")));
        assert!(!enforced(None));
    }

    #[test]
    fn a_sealed_memfd_holds_the_bytes_and_refuses_writes() {
        let fd = sealed_memfd("libs/x86_64/libx.so", b"\x7fELF-bytes").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fd_path(&fd))
            .unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"\x7fELF-bytes");
        let e = f.write_all(b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    }

    #[test]
    fn a_library_no_hap_signs_is_refused_with_no_signature() {
        let d = tempfile::tempdir().unwrap();
        let e = verify_in_bundle(d.path(), "libs/x86_64/libx.so", b"x").unwrap_err();
        match e {
            LoadError::CodeSign(c) => assert_eq!(c.code, cs::NO_SIGNATURE),
            e => panic!("{e}"),
        }
    }

    const LIB: &str = "libs/x86_64/libx.so";

    /// A bundle dir as the bundle manager installs one: `entry.hap` (signed with code
    /// signatures or without) beside its extracted library.
    fn bundle(sign_code: bool, lib: &[u8]) -> tempfile::TempDir {
        use oxh_bundle::tools;
        let now = 1_800_000_000;
        let spec = tools::ProfileSpec {
            bundle_name: "com.example.cs".into(),
            kind: "release".into(),
            apl: "normal".into(),
            acls: vec![],
            device_ids: vec![],
            not_before: now - 10,
            not_after: now + 1000,
        };
        let ks = tools::keygen(&spec, now).unwrap();
        let m = r#"{app: {bundleName: 'com.example.cs', versionCode: 1}, module: {name: 'entry', type: 'entry'}}"#;
        let files = vec![
            ("module.json5".to_string(), m.as_bytes().to_vec()),
            (LIB.to_string(), lib.to_vec()),
        ];
        let hap = tools::pack(&files).unwrap();
        let signed = tools::sign_hap_with(
            &hap,
            &ks.dev_key_pem,
            ks.dev_cert_pem.as_bytes(),
            &ks.profile_p7b,
            now,
            sign_code,
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("entry.hap"), signed).unwrap();
        d
    }

    #[test]
    fn an_installed_library_verifies_against_its_hap_and_a_changed_one_does_not() {
        let lib: Vec<u8> = (0..9000u32).map(|i| (i * 31) as u8).collect();
        let d = bundle(true, &lib);
        verify_in_bundle(d.path(), LIB, &lib).unwrap();
        let path = d.path().join("libx.so");
        std::fs::write(&path, &lib).unwrap();
        let fd = verified_copy(d.path(), &path, LIB).unwrap();
        assert_eq!(
            std::fs::read(fd_path(&fd)).unwrap(),
            lib,
            "the copy is what verified"
        );
        let mut changed = lib.clone();
        changed[100] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        match verified_copy(d.path(), &path, LIB).unwrap_err() {
            LoadError::CodeSign(c) => {
                assert_eq!(c.code, cs::INVALID_SIGNATURE, "{c}");
                assert!(c.reason.starts_with(LIB), "{c}");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn a_library_of_a_hap_signed_without_code_signatures_is_refused() {
        let lib = b"\x7fELF".to_vec();
        let d = bundle(false, &lib);
        match verify_in_bundle(d.path(), LIB, &lib).unwrap_err() {
            LoadError::CodeSign(c) => assert_eq!(c.code, cs::NO_SIGNATURE, "{c}"),
            e => panic!("{e}"),
        }
    }
}
