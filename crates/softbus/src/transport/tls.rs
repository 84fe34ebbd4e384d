//! TLS 1.3 for QUIC, bound to device identities: [`oxh_tls`], plus the key of a QUIC peer.

pub use oxh_tls::*;
use rustls::pki_types::CertificateDer;

/// The key a connected peer authenticated with.
pub fn peer_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    cert_key(certs.first()?)
}
