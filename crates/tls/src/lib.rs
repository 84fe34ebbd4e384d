//! TLS 1.3 bound to device identities, for the soft bus's QUIC and for hdc's TCP sessions.
//!
//! Each device presents a self-signed X.509 certificate whose key *is* its Ed25519 device key,
//! so completing the TLS handshake proves possession of that key. Nothing about the certificate
//! but its key matters (no names, no CA): the verifiers accept a peer only by its key.
//!
//! - The dialing side knows whom it calls: on a normal connection (ALPN [`ALPN_BUS`]) the
//!   server's key must be the expected trusted device's key; on a binding connection
//!   ([`ALPN_BIND`]) any key is accepted, because only the PIN binding protocol, which pins the
//!   key through the TLS exporter, runs there.
//! - The accepting side verifies the client's signature in the handshake; whether the key is
//!   trusted is checked right after the handshake, when the ALPN is known (the key comes
//!   from [`cert_key`] of the peer's certificate).
//!
//! Its own crate so that hdc uses it without linking the soft bus (QUIC, SQLite).

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

/// ALPN of a connection between trusted devices: the bus.
pub const ALPN_BUS: &[u8] = b"oxh/1";
/// ALPN of a binding connection: only the PIN binding protocol may run.
pub const ALPN_BIND: &[u8] = b"oxh-bind/1";

/// Errors building TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("cannot make the device certificate: {0}")]
    Cert(String),
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider: ring, TLS 1.3 only, with TLS_AES_128_GCM_SHA256 (TLS 1.3's
/// mandatory suite) first: every bus byte is sealed with it, and AES-128 costs less per byte
/// than ring's default first choice, AES-256, at a security level beyond any attack.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// A self-signed certificate for the device key, and the key in rustls's form.
pub fn device_cert(
    key: &SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let der = key
        .to_pkcs8_der()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["oxh-device".to_string()])
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The Ed25519 public key of a certificate, or `None` if it is not an Ed25519 certificate.
pub fn cert_key(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let spki = parsed.public_key();
    // id-Ed25519 (RFC 8410)
    if spki.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return None;
    }
    spki.subject_public_key.data.as_ref().try_into().ok()
}

fn algs() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn verify13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &algs())
}

fn only13() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// The handshake-signature half of both verifiers: TLS 1.3 only, Ed25519 only, checked by
/// ring (the same for the client's and the server's certificate).
macro_rules! ed25519_tls13_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _m: &[u8],
            _c: &CertificateDer<'_>,
            _d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            only13()
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify13(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
    };
}

/// Client side: accept the server only if its key is `expected` (or anyone, for binding).
#[derive(Debug)]
pub struct ServerKeyVerifier {
    expected: Option<[u8; 32]>,
}

impl ServerKeyVerifier {
    /// Pins the server's key; `None` only for binding connections.
    pub fn new(expected: Option<[u8; 32]>) -> Self {
        Self { expected }
    }
}

impl ServerCertVerifier for ServerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = cert_key(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        match self.expected {
            Some(e) if e != key => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    ed25519_tls13_signatures!();
}

/// Server side: require a client certificate with an Ed25519 key and a valid handshake
/// signature; trust is decided after the handshake, by ALPN and key.
#[derive(Debug)]
pub struct ClientKeyVerifier;

impl ClientCertVerifier for ClientKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        cert_key(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ))
    }
    ed25519_tls13_signatures!();
}

/// The rustls server configuration of a device.
pub fn server_config(key: &SigningKey) -> Result<rustls::ServerConfig, TlsError> {
    let (cert, pk) = device_cert(key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ClientKeyVerifier))
        .with_single_cert(vec![cert], pk)?;
    cfg.alpn_protocols = vec![ALPN_BUS.to_vec(), ALPN_BIND.to_vec()];
    Ok(cfg)
}

/// The rustls client configuration for dialing `expected` (or, for binding, anyone).
pub fn client_config(
    key: &SigningKey,
    expected: Option<[u8; 32]>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let (cert, pk) = device_cert(key)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerKeyVerifier::new(expected)))
        .with_client_auth_cert(vec![cert], pk)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_carries_the_device_key() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let (cert, _) = device_cert(&key).unwrap();
        assert_eq!(cert_key(&cert), Some(key.verifying_key().to_bytes()));
    }
}
