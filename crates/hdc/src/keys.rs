//! Keys and trust: the host's key pair, device keys pinned by the host on first connect, the
//! device's list of authorised hosts, and the TLS 1.3 configurations built on them.
//!
//! Files (one entry per line, hex keys):
//! - host: `~/.harmony/hdckey.oxh` (Ed25519 PKCS#8 DER, mode 0600; OpenHarmony's RSA key is
//!   `hdckey`, [`crate::hostkey`]), `~/.harmony/hdc_known_devices`
//!   (`CONNECT_KEY DEVICE_KEY`).
//! - device, under `DeviceDirs::subsystem("hdc")`: `authorized_hosts` (`HOST_KEY NAME`),
//!   `allow_once` (`HOST_KEY`, used up by the next connection), `pending` (`HOST_KEY TIME NAME`,
//!   hosts refused lately, which `oxh hdc allow` lists and allows).

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use oxh_tls::{ClientKeyVerifier, ServerKeyVerifier, device_cert};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN of hdc sessions.
pub const ALPN: &[u8] = b"oxh-hdc/1";

/// Errors with keys and trust files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// File error.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The key file is not a key.
    #[error("{0} is not an Ed25519 PKCS#8 key; remove it to make a new one")]
    Corrupt(PathBuf),
    /// TLS setup.
    #[error("tls: {0}")]
    Tls(String),
    /// The file is another user's (the device's trust lists belong to the user running
    /// oxhd): OpenHarmony's 201.
    #[error(
        "error {}: permission denied: cannot access {} (it belongs to the user that runs oxhd)",
        oxh_ipc::code::PERMISSION_DENIED,
        .0.display()
    )]
    PermissionDenied(PathBuf),
    /// `oxh hdc allow` with a key that matches nothing (or several).
    #[error("{0}")]
    NoSuchHost(String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => KeyError::PermissionDenied(p.to_path_buf()),
        _ => KeyError::Io(p.to_path_buf(), e),
    }
}

/// Short printable id of a key: hex SHA-256.
pub fn fingerprint(key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(key))
}

/// The fingerprint of a hex key (empty if it is not one).
pub fn fingerprint_hex(hexkey: &str) -> String {
    parse_key(hexkey)
        .map(|k| fingerprint(&k))
        .unwrap_or_default()
}

/// `~/.harmony` (HOME from the environment).
pub fn harmony_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".harmony")
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    oxh_kal::write_secret(path, data).map_err(io(path))
}

/// The host's TLS key file: `hdckey` is OpenHarmony's RSA key ([`crate::hostkey`]).
pub const TLS_KEY_FILE: &str = "hdckey.oxh";

/// The host's TLS key pair in `dir/hdckey.oxh`, made on first use (an Ed25519 key that an
/// earlier version kept in `hdckey` moves there, so that file is OpenHarmony's RSA key).
pub fn host_key(dir: &Path) -> Result<SigningKey, KeyError> {
    let path = dir.join(TLS_KEY_FILE);
    let old = dir.join(crate::hostkey::KEY_FILE);
    if !path.exists()
        && let Ok(der) = std::fs::read(&old)
        && SigningKey::from_pkcs8_der(&der).is_ok()
    {
        std::fs::rename(&old, &path).map_err(io(&old))?;
        let _ = std::fs::remove_file(dir.join(crate::hostkey::PUB_FILE));
    }
    match std::fs::read(&path) {
        Ok(der) => SigningKey::from_pkcs8_der(&der).map_err(|_| KeyError::Corrupt(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| KeyError::Tls(e.to_string()))?;
            let key = SigningKey::from_bytes(&seed);
            let der = key
                .to_pkcs8_der()
                .map_err(|e| KeyError::Tls(e.to_string()))?;
            write_private(&path, der.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(KeyError::Io(path, e)),
    }
}

/// The lines of a list file; none when it does not exist yet.
fn try_read_lines(path: &Path) -> Result<Vec<String>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(path)(e)),
    }
}

/// The lines of a list file, or none for a file that cannot be read: where an unreadable list
/// means "not trusted" (a connecting host), which is the safe answer.
fn read_lines(path: &Path) -> Vec<String> {
    try_read_lines(path).unwrap_or_default()
}

fn write_lines(path: &Path, lines: &[String]) -> Result<(), KeyError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    write_private(path, s.as_bytes())
}

fn parse_key(hexkey: &str) -> Option<[u8; 32]> {
    hex::decode(hexkey).ok()?.try_into().ok()
}

/// Device keys pinned by the host, per connect key.
pub fn known_device(dir: &Path, connect_key: &str) -> Option<[u8; 32]> {
    read_lines(&dir.join("hdc_known_devices"))
        .iter()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == connect_key).then(|| parse_key(v.trim())).flatten()
        })
}

/// Pins a device key for a connect key (first connect).
pub fn pin_device(dir: &Path, connect_key: &str, key: &[u8; 32]) -> Result<(), KeyError> {
    let path = dir.join("hdc_known_devices");
    let mut lines: Vec<String> = read_lines(&path)
        .into_iter()
        .filter(|l| l.split(' ').next() != Some(connect_key))
        .collect();
    lines.push(format!("{connect_key} {}", hex::encode(key)));
    write_lines(&path, &lines)
}

/// How a device decided about a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In `authorized_hosts`.
    Always,
    /// Allowed once (the entry is used up now).
    Once,
    /// Unknown: refused and recorded as pending.
    Refused,
}

/// The device's decision about a connecting host key (`dir` = the device's hdc dir).
pub fn authorize(dir: &Path, key: &[u8; 32], name: &str) -> Verdict {
    let hk = hex::encode(key);
    if read_lines(&dir.join("authorized_hosts"))
        .iter()
        .any(|l| l.split(' ').next() == Some(hk.as_str()))
    {
        return Verdict::Always;
    }
    let once_path = dir.join("allow_once");
    let once = read_lines(&once_path);
    if once.iter().any(|l| l.trim() == hk) {
        let rest: Vec<String> = once.into_iter().filter(|l| l.trim() != hk).collect();
        let _ = write_lines(&once_path, &rest);
        return Verdict::Once;
    }
    let pend_path = dir.join("pending");
    let mut pend: Vec<String> = read_lines(&pend_path)
        .into_iter()
        .filter(|l| l.split(' ').next() != Some(hk.as_str()))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let clean: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .take(64)
        .collect();
    pend.push(format!("{hk} {now} {clean}"));
    if pend.len() > 32 {
        pend.remove(0);
    }
    let _ = write_lines(&pend_path, &pend);
    Verdict::Refused
}

/// A host that asked and was refused: (key hex, unix time, name).
pub fn pending(dir: &Path) -> Result<Vec<(String, u64, String)>, KeyError> {
    Ok(try_read_lines(&dir.join("pending"))?
        .iter()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let k = it.next()?.to_string();
            let t = it.next()?.parse().ok()?;
            Some((k, t, it.next().unwrap_or("").to_string()))
        })
        .collect())
}

/// Allows a host (by a unique prefix of its key or its fingerprint, among the pending ones,
/// or a full key), once or always. Returns the key allowed.
pub fn allow(dir: &Path, who: &str, always: bool) -> Result<String, KeyError> {
    let who = who.trim().to_ascii_lowercase();
    let pend = pending(dir)?;
    let key = if parse_key(&who).is_some() {
        who.clone()
    } else {
        let hits: Vec<&String> = pend
            .iter()
            .map(|(k, _, _)| k)
            .filter(|k| {
                k.starts_with(&who)
                    || parse_key(k).is_some_and(|b| fingerprint(&b).starts_with(&who))
            })
            .collect();
        match hits.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(KeyError::NoSuchHost(format!(
                    "no pending host matches {who}; `oxh hdc allow --list` shows them"
                )));
            }
            _ => {
                return Err(KeyError::NoSuchHost(format!(
                    "{who} matches several pending hosts; give more of the key"
                )));
            }
        }
    };
    let name = pend
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, n)| n.clone())
        .unwrap_or_else(|| "-".into());
    let file = if always {
        "authorized_hosts"
    } else {
        "allow_once"
    };
    let path = dir.join(file);
    let mut lines = try_read_lines(&path)?;
    if !lines
        .iter()
        .any(|l| l.split(' ').next() == Some(key.as_str()))
    {
        lines.push(if always {
            format!("{key} {name}")
        } else {
            key.clone()
        });
        write_lines(&path, &lines)?;
    }
    let rest: Vec<String> = try_read_lines(&dir.join("pending"))?
        .into_iter()
        .filter(|l| l.split(' ').next() != Some(key.as_str()))
        .collect();
    write_lines(&dir.join("pending"), &rest)?;
    Ok(key)
}

/// ring, TLS 1.3, AES-128-GCM first: bulk file data is the load, and AES-128 takes 10 rounds
/// where AES-256 takes 14 (both with AES-NI), for a security margin that is plenty here.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// The device's TLS server configuration: its key as certificate, client certificate required.
pub fn server_config(key: &SigningKey) -> Result<Arc<rustls::ServerConfig>, KeyError> {
    let (cert, pk) = device_cert(key).map_err(|e| KeyError::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| KeyError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(ClientKeyVerifier))
        .with_single_cert(vec![cert], pk)
        .map_err(|e| KeyError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The host's TLS client configuration; `expected`: the pinned device key (None on first use).
pub fn client_config(
    key: &SigningKey,
    expected: Option<[u8; 32]>,
) -> Result<Arc<rustls::ClientConfig>, KeyError> {
    let (cert, pk) = device_cert(key).map_err(|e| KeyError::Tls(e.to_string()))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| KeyError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerKeyVerifier::new(expected)))
        .with_client_auth_cert(vec![cert], pk)
        .map_err(|e| KeyError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The key a TLS peer authenticated with.
pub fn peer_key(certs: Option<&[rustls::pki_types::CertificateDer<'static>]>) -> Option<[u8; 32]> {
    oxh_tls::cert_key(certs?.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_is_made_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = host_key(d.path()).unwrap();
        let b = host_key(d.path()).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join(TLS_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(d.path().join(TLS_KEY_FILE), b"junk").unwrap();
        assert!(matches!(host_key(d.path()), Err(KeyError::Corrupt(_))));
    }

    /// An Ed25519 key an earlier version kept in `hdckey` moves aside, so that file can be
    /// OpenHarmony's RSA key, and the host keeps its identity.
    #[test]
    fn an_old_host_key_moves_out_of_openharmonys_file() {
        let d = tempfile::tempdir().unwrap();
        let a = host_key(d.path()).unwrap();
        std::fs::rename(d.path().join(TLS_KEY_FILE), d.path().join("hdckey")).unwrap();
        let b = host_key(d.path()).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert!(!d.path().join("hdckey").exists());
    }

    #[test]
    fn refuse_then_allow_once_then_always() {
        let d = tempfile::tempdir().unwrap();
        let k = [7u8; 32];
        assert_eq!(authorize(d.path(), &k, "my pc"), Verdict::Refused);
        let p = pending(d.path()).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].2, "my_pc");
        let hk = allow(d.path(), &p[0].0[..10], false).unwrap();
        assert_eq!(hk, hex::encode(k));
        assert_eq!(authorize(d.path(), &k, "my pc"), Verdict::Once);
        assert_eq!(authorize(d.path(), &k, "my pc"), Verdict::Refused);
        let fp = fingerprint(&k);
        allow(d.path(), &fp[..12], true).unwrap();
        assert_eq!(authorize(d.path(), &k, "my pc"), Verdict::Always);
        assert_eq!(authorize(d.path(), &k, "my pc"), Verdict::Always);
        assert!(allow(d.path(), "ffff", true).is_err());
    }

    #[test]
    fn device_pins_per_connect_key() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(known_device(d.path(), "127.0.0.1:1"), None);
        pin_device(d.path(), "127.0.0.1:1", &[1; 32]).unwrap();
        pin_device(d.path(), "127.0.0.1:2", &[2; 32]).unwrap();
        pin_device(d.path(), "127.0.0.1:1", &[3; 32]).unwrap();
        assert_eq!(known_device(d.path(), "127.0.0.1:1"), Some([3; 32]));
        assert_eq!(known_device(d.path(), "127.0.0.1:2"), Some([2; 32]));
    }
}
