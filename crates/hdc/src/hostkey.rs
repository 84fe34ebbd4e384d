//! The host's RSA-3072 key, as OpenHarmony's hdc keeps it: `~/.harmony/hdckey` (PKCS#8 PEM,
//! 0600) and `~/.harmony/hdckey.pub` (SubjectPublicKeyInfo PEM, 64-column, 625 bytes), made on
//! first use; the token signature (RSA-PSS, SHA-512, salt = digest length, base64) and its
//! check on the device.

use crate::keys::KeyError;
use base64::Engine;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey, pss};
use sha2::Sha512;
use std::path::Path;

/// OpenHarmony's RSA_KEY_BITS.
pub const RSA_KEY_BITS: usize = 3072;
/// The private key's file in `~/.harmony`.
pub const KEY_FILE: &str = "hdckey";
/// The public key's file.
pub const PUB_FILE: &str = "hdckey.pub";
/// Longest base64 signature a device reads (twice the key size, as hdcd checks).
pub const MAX_SIGNATURE_B64: usize = 2 * RSA_KEY_BITS / 8 * 4 / 3 + 4;

/// The host key and its public PEM.
pub struct HostKey {
    key: RsaPrivateKey,
    pem: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey").field("pem", &self.pem).finish()
    }
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |e| KeyError::Io(p.to_path_buf(), e)
}

impl HostKey {
    /// The key in `dir`, made on first use.
    pub fn load_or_create(dir: &Path) -> Result<HostKey, KeyError> {
        let path = dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(pem) => {
                RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Corrupt(path.clone()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                let key = RsaPrivateKey::new(&mut rand_core::OsRng, RSA_KEY_BITS)
                    .map_err(|e| KeyError::Tls(e.to_string()))?;
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| KeyError::Tls(e.to_string()))?;
                oxh_kal::write_secret(&path, pem.as_bytes()).map_err(io(&path))?;
                key
            }
            Err(e) => return Err(KeyError::Io(path, e)),
        };
        let pem = public_pem(&RsaPublicKey::from(&key))?;
        let pub_path = dir.join(PUB_FILE);
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(pem.as_str()) {
            std::fs::write(&pub_path, &pem).map_err(io(&pub_path))?;
        }
        Ok(HostKey { key, pem })
    }

    /// The public key as OpenHarmony's host sends it.
    pub fn public_pem(&self) -> &str {
        &self.pem
    }

    /// base64 of RSA-PSS-SHA512(token), salt of 64 bytes, as hdc's host signs the token.
    pub fn sign(&self, token: &[u8]) -> String {
        let signer = pss::BlindedSigningKey::<Sha512>::new(self.key.clone());
        let sig = signer.sign_with_rng(&mut rand_core::OsRng, token);
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
    }
}

fn public_pem(k: &RsaPublicKey) -> Result<String, KeyError> {
    k.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Tls(e.to_string()))
}

/// Whether `sig_b64` is the signature of `token` by the key in `pem` (the device's check).
pub fn verify(pem: &str, token: &[u8], sig_b64: &str) -> bool {
    if sig_b64.len() > MAX_SIGNATURE_B64 || !sig_b64.len().is_multiple_of(4) {
        return false;
    }
    let Ok(k) = RsaPublicKey::from_public_key_pem(pem) else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(sig_b64) else {
        return false;
    };
    let Ok(sig) = pss::Signature::try_from(raw.as_slice()) else {
        return false;
    };
    pss::VerifyingKey::<Sha512>::new(k)
        .verify(token, &sig)
        .is_ok()
}

/// The id a device knows a host key by: hex SHA-256 of its PEM (what OpenHarmony's device
/// shows as `persist.hdc.client.pubkey_sha256`).
pub fn key_id(pem: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(pem.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_kept_private_and_signs_what_the_device_checks() {
        let d = tempfile::tempdir().unwrap();
        let k = HostKey::load_or_create(d.path()).unwrap();
        let pem = k.public_pem().to_string();
        assert_eq!(pem.len(), 625, "OpenHarmony looks for a 625-byte PEM");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(
            std::fs::read_to_string(d.path().join(PUB_FILE)).unwrap(),
            pem
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = HostKey::load_or_create(d.path()).unwrap();
        assert_eq!(again.public_pem(), pem);
        let sig = k.sign(b"abcdefghijklmnopqrst");
        assert_eq!(sig.len(), 512);
        assert!(verify(&pem, b"abcdefghijklmnopqrst", &sig));
        assert!(!verify(&pem, b"abcdefghijklmnopqrsX", &sig));
        assert!(!verify(&pem, b"abcdefghijklmnopqrst", &sig[..508]));
        assert!(!verify("not a key", b"x", &sig));
        std::fs::write(d.path().join(KEY_FILE), "junk").unwrap();
        assert!(HostKey::load_or_create(d.path()).is_err());
    }
}
