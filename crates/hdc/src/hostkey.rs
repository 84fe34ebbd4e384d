//! The host's RSA-3072 key, as OpenHarmony's hdc keeps it: `~/.harmony/hdckey` (PKCS#8 PEM,
//! 0600) and `~/.harmony/hdckey.pub` (SubjectPublicKeyInfo PEM, 64-column, 625 bytes), made on
//! first use; the token signature (RSA-PSS, SHA-512, salt = digest length, base64) and its
//! check on the device; the TLS-PSK channel's key exchange (the device encrypts a fresh
//! pre-shared key to the host's key with RSA-OAEP, SHA-1, as hdcd's `RsaPubkeyEncryptPsk`).

use crate::keys::KeyError;
use crate::ohos_tls::PSK_LEN;
use base64::Engine;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey, pss};
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

/// Shortest AUTH_SSL_TLS_PSK buf a host takes as an encrypted key (hdc's host checks
/// BUF_SIZE_PSK).
pub const MIN_PSK_B64: usize = PSK_LEN;
/// Longest (BUF_SIZE_PSK_ENCRYPTED: base64 of one RSA-3072 block).
pub const MAX_PSK_B64: usize = 512;

/// Why an encrypted pre-shared key could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskError {
    /// The host's public key is not an RSA PEM.
    #[error("the host's public key is not an RSA public key PEM")]
    PublicKey,
    /// No randomness.
    #[error("no randomness for the pre-shared key: {0}")]
    Random(String),
    /// RSA refused (the key too small for OAEP, a ciphertext that is not ours).
    #[error("RSA-OAEP: {0}")]
    Rsa(String),
    /// The buf is not base64 of an encrypted key.
    #[error(
        "the encrypted pre-shared key is not base64 of {MIN_PSK_B64}..={MAX_PSK_B64} chars ({0})"
    )]
    Encoding(usize),
    /// The decrypted key is not [`PSK_LEN`] bytes.
    #[error("the pre-shared key is {0} bytes, not {PSK_LEN}")]
    Length(usize),
}

/// A fresh pre-shared key (hdcd's `GenPsk`).
pub fn new_psk() -> Result<[u8; PSK_LEN], PskError> {
    let mut k = [0u8; PSK_LEN];
    getrandom::fill(&mut k).map_err(|e| PskError::Random(e.to_string()))?;
    Ok(k)
}

/// The device's AUTH_SSL_TLS_PSK buf: base64 (standard, padded, one line, as
/// EVP_EncodeBlock) of RSA-OAEP(SHA-1, MGF1-SHA-1, no label) of `psk` to the key in `pem`.
pub fn encrypt_psk(pem: &str, psk: &[u8; PSK_LEN]) -> Result<String, PskError> {
    let k = RsaPublicKey::from_public_key_pem(pem).map_err(|_| PskError::PublicKey)?;
    let ct = k
        .encrypt(&mut rand_core::OsRng, Oaep::new::<sha1::Sha1>(), psk)
        .map_err(|e| PskError::Rsa(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(ct))
}

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

    /// The pre-shared key in the device's AUTH_SSL_TLS_PSK buf (hdc's host:
    /// `RsaPrikeyDecryptPsk`).
    pub fn decrypt_psk(&self, buf: &[u8]) -> Result<[u8; PSK_LEN], PskError> {
        if !(MIN_PSK_B64..=MAX_PSK_B64).contains(&buf.len()) {
            return Err(PskError::Encoding(buf.len()));
        }
        let ct = base64::engine::general_purpose::STANDARD
            .decode(buf)
            .map_err(|_| PskError::Encoding(buf.len()))?;
        let pt = self
            .key
            .decrypt(Oaep::new::<sha1::Sha1>(), &ct)
            .map_err(|e| PskError::Rsa(e.to_string()))?;
        <[u8; PSK_LEN]>::try_from(pt.as_slice()).map_err(|_| PskError::Length(pt.len()))
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

    /// The device's encrypted key as hdcd makes it and hdc's host reads it: OpenSSL's
    /// RSA-OAEP (SHA-1) and EVP base64 on one side, ours on the other, both ways; 512
    /// characters on one line; hdc's bounds.
    #[test]
    fn the_psk_exchange_matches_openssls_oaep_both_ways() {
        use openssl::rsa::{Padding, Rsa};
        let d = tempfile::tempdir().unwrap();
        let k = HostKey::load_or_create(d.path()).unwrap();
        let psk = new_psk().unwrap();
        assert_ne!(psk, new_psk().unwrap());
        let b64 = encrypt_psk(k.public_pem(), &psk).unwrap();
        assert_eq!(b64.len(), MAX_PSK_B64);
        assert!(!b64.contains('\n'));
        assert_ne!(
            b64,
            encrypt_psk(k.public_pem(), &psk).unwrap(),
            "OAEP is randomised"
        );

        // hdc's host: EVP_DecodeBlock, RSA_private_decrypt with OAEP.
        let pem = std::fs::read(d.path().join(KEY_FILE)).unwrap();
        let private = openssl::pkey::PKey::private_key_from_pem(&pem)
            .unwrap()
            .rsa()
            .unwrap();
        let ct = openssl::base64::decode_block(&b64).unwrap();
        let mut out = vec![0; private.size() as usize];
        let n = private
            .private_decrypt(&ct, &mut out, Padding::PKCS1_OAEP)
            .unwrap();
        assert_eq!(out[..n], psk);

        // hdcd: PEM_read_bio_RSA_PUBKEY, RSA_public_encrypt with OAEP, EVP_EncodeBlock.
        let public = Rsa::public_key_from_pem(k.public_pem().as_bytes()).unwrap();
        let encrypt = |m: &[u8]| {
            let mut ct = vec![0; public.size() as usize];
            public
                .public_encrypt(m, &mut ct, Padding::PKCS1_OAEP)
                .unwrap();
            openssl::base64::encode_block(&ct)
        };
        assert_eq!(k.decrypt_psk(encrypt(&psk).as_bytes()), Ok(psk));
        assert_eq!(
            k.decrypt_psk(encrypt(&psk[..31]).as_bytes()),
            Err(PskError::Length(31))
        );

        for len in [MIN_PSK_B64 - 1, MAX_PSK_B64 + 1] {
            assert_eq!(
                k.decrypt_psk(&vec![b'A'; len]),
                Err(PskError::Encoding(len))
            );
        }
        assert!(matches!(
            k.decrypt_psk(&[b'A'; MAX_PSK_B64]),
            Err(PskError::Rsa(_))
        ));
        assert_eq!(k.decrypt_psk(&[b'!'; 64]), Err(PskError::Encoding(64)));
        assert_eq!(encrypt_psk("not a key", &psk), Err(PskError::PublicKey));
    }
}
