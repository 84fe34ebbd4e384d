//! OpenHarmony's encrypted hdc channel ("encrypt_tcp", AUTH_SSL_TLS_PSK; developtools_hdc's
//! `hdc_ssl.cpp`): TLS 1.3 with an external pre-shared key, sans-IO over memory buffers as
//! hdc runs it over two memory BIOs. The device is the TLS server, the host the client; the
//! 32-byte key travels RSA-OAEP-encrypted to the host's key ([`crate::hostkey`]).
//!
//! Configured as hdc's `HdcSSLBase::InitSSL`: the only suite TLS_AES_128_GCM_SHA256, the
//! legacy PSK callbacks with the identity `Client_identity` (the server refuses any other), no
//! certificates. We also pin the version to TLS 1.3 (hdc sets none; without certificates or
//! PSK suites for TLS 1.2 it gets 1.3 anyway).
//!
//! rustls has no external PSKs, so this is OpenSSL (the system's libssl) through the
//! `openssl` crate, over an in-memory stream.

use bytes::{Buf, BytesMut};
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslMethod, SslStream, SslVersion};
use std::io::{Read, Write};

/// STR_PSK_IDENTITY: the only identity the host sends and the device takes.
pub const PSK_IDENTITY: &str = "Client_identity";
/// The only cipher suite.
pub const CIPHERSUITE: &str = "TLS_AES_128_GCM_SHA256";
/// BUF_SIZE_PSK: bytes in the pre-shared key.
pub const PSK_LEN: usize = 32;
/// How much plaintext one TLS record holds (and one decrypt step takes).
const RECORD_PLAINTEXT: usize = 16384;
/// TLS 1.3 record overhead with AES-GCM: a 5-byte header, the content type, the 16-byte tag
/// (hdc's BUF_SIZE_SSL_HEAD reserves 22).
const RECORD_OVERHEAD: usize = 22;

/// The TLS side a party plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The device (hdcd's `HdcDaemonSSL`: `TLS_server_method`, accept state).
    Server,
    /// The host (`HdcHostSSL`: `TLS_client_method`, connect state).
    Client,
}

/// Errors of the TLS channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// OpenSSL refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(String),
    /// The peer's bytes are not the TLS we expect (a wrong key, identity or suite; garbage).
    #[error("TLS: {0}")]
    Protocol(String),
    /// Application data before the handshake finished.
    #[error("TLS: the handshake is not finished")]
    NotFinished,
    /// The peer sent close_notify.
    #[error("TLS: the peer closed the channel")]
    Closed,
}

fn setup(e: openssl::error::ErrorStack) -> TlsError {
    TlsError::Setup(e.to_string())
}

/// A TLS endpoint fed and drained by the caller: what the handshake state machines
/// ([`crate::ohos_auth`]) and the packet transport ([`crate::ohos_link`]) drive.
pub trait TlsEngine: Send {
    /// Ciphertext from the peer.
    fn feed(&mut self, ciphertext: &[u8]);
    /// Runs the handshake over what was fed; `true` once it is complete.
    fn handshake(&mut self) -> Result<bool, TlsError>;
    /// Whether the handshake is complete.
    fn is_finished(&self) -> bool;
    /// Moves the ciphertext waiting to be sent to the end of `out`.
    fn take_output(&mut self, out: &mut Vec<u8>);
    /// Encrypts `plaintext` into records waiting to be sent.
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<(), TlsError>;
    /// Decrypts what was fed to the end of `out`; a record still partial waits for more.
    fn decrypt(&mut self, out: &mut BytesMut) -> Result<(), TlsError>;
}

/// The in-memory stream under OpenSSL: it reads what was fed (would-block when empty) and
/// writes into the output.
#[derive(Default)]
struct MemIo {
    input: BytesMut,
    output: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.input.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.advance(n);
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// hdc's TLS-PSK endpoint on OpenSSL.
pub struct PskTls {
    s: SslStream<MemIo>,
    role: Role,
    finished: bool,
}

impl std::fmt::Debug for PskTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskTls")
            .field("role", &self.role)
            .field("finished", &self.finished)
            .finish()
    }
}

impl PskTls {
    /// An endpoint in `role` keyed with `psk`.
    pub fn new(role: Role, psk: &[u8; PSK_LEN]) -> Result<PskTls, TlsError> {
        let method = match role {
            Role::Server => SslMethod::tls_server(),
            Role::Client => SslMethod::tls_client(),
        };
        let mut b = SslContext::builder(method).map_err(setup)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_3))
            .map_err(setup)?;
        b.set_max_proto_version(Some(SslVersion::TLS1_3))
            .map_err(setup)?;
        b.set_ciphersuites(CIPHERSUITE).map_err(setup)?;
        let key = *psk;
        match role {
            Role::Server => b.set_psk_server_callback(move |_, identity, out| {
                // 0: no key for this identity, and the handshake fails.
                if identity != Some(PSK_IDENTITY.as_bytes()) {
                    return Ok(0);
                }
                match out.get_mut(..PSK_LEN) {
                    Some(o) => {
                        o.copy_from_slice(&key);
                        Ok(PSK_LEN)
                    }
                    None => Ok(0),
                }
            }),
            Role::Client => b.set_psk_client_callback(move |_, _hint, identity, out| {
                let id = PSK_IDENTITY.as_bytes();
                // The identity is a C string: its bytes, then a NUL.
                match (identity.get_mut(..=id.len()), out.get_mut(..PSK_LEN)) {
                    (Some(i), Some(o)) => {
                        i[..id.len()].copy_from_slice(id);
                        i[id.len()] = 0;
                        o.copy_from_slice(&key);
                        Ok(PSK_LEN)
                    }
                    _ => Ok(0),
                }
            }),
        }
        let ctx = b.build();
        let mut ssl = Ssl::new(&ctx).map_err(setup)?;
        match role {
            Role::Server => ssl.set_accept_state(),
            Role::Client => ssl.set_connect_state(),
        }
        let s = SslStream::new(ssl, MemIo::default()).map_err(setup)?;
        Ok(PskTls {
            s,
            role,
            finished: false,
        })
    }

    /// Queues a close_notify alert, the TLS end of the stream (hdc's own peers never send
    /// one; they close the socket).
    pub fn close_notify(&mut self) -> Result<(), TlsError> {
        match self.s.shutdown() {
            Ok(_) => Ok(()),
            Err(e) if e.code() == ErrorCode::WANT_READ => Ok(()),
            Err(e) => Err(protocol(e)),
        }
    }

    /// The negotiated version and suite (hdc's `ShowSSLInfo`), e.g. `TLSv1.3
    /// TLS_AES_128_GCM_SHA256`.
    pub fn describe(&self) -> String {
        let suite = self
            .s
            .ssl()
            .current_cipher()
            .map(|c| c.standard_name().unwrap_or(c.name()).to_string())
            .unwrap_or_default();
        format!("{} {suite}", self.s.ssl().version_str())
    }
}

fn protocol(e: openssl::ssl::Error) -> TlsError {
    TlsError::Protocol(e.to_string())
}

impl TlsEngine for PskTls {
    fn feed(&mut self, ciphertext: &[u8]) {
        self.s.get_mut().input.extend_from_slice(ciphertext);
    }

    fn handshake(&mut self) -> Result<bool, TlsError> {
        if self.finished {
            return Ok(true);
        }
        match self.s.do_handshake() {
            Ok(()) => {
                self.finished = true;
                Ok(true)
            }
            Err(e) if e.code() == ErrorCode::WANT_READ => Ok(false),
            Err(e) => Err(protocol(e)),
        }
    }

    fn is_finished(&self) -> bool {
        self.finished
    }

    fn take_output(&mut self, out: &mut Vec<u8>) {
        let io = self.s.get_mut();
        if out.is_empty() {
            std::mem::swap(out, &mut io.output);
        } else {
            out.extend_from_slice(&io.output);
            io.output.clear();
        }
    }

    fn encrypt(&mut self, plaintext: &[u8]) -> Result<(), TlsError> {
        if !self.finished {
            return Err(TlsError::NotFinished);
        }
        let records = plaintext.len().div_ceil(RECORD_PLAINTEXT).max(1);
        self.s
            .get_mut()
            .output
            .reserve(plaintext.len() + records * RECORD_OVERHEAD);
        let mut rest = plaintext;
        while !rest.is_empty() {
            let n = self.s.ssl_write(rest).map_err(protocol)?;
            rest = &rest[n..];
        }
        Ok(())
    }

    fn decrypt(&mut self, out: &mut BytesMut) -> Result<(), TlsError> {
        if !self.finished {
            return Err(TlsError::NotFinished);
        }
        loop {
            let at = out.len();
            out.resize(at + RECORD_PLAINTEXT, 0);
            let r = self.s.ssl_read(&mut out[at..]);
            match r {
                Ok(n) => out.truncate(at + n),
                Err(e) => {
                    out.truncate(at);
                    return match e.code() {
                        ErrorCode::WANT_READ => Ok(()),
                        ErrorCode::ZERO_RETURN => Err(TlsError::Closed),
                        _ => Err(protocol(e)),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a client and a server back to back until neither has bytes to send; returns
    /// the flights each way, client first.
    fn handshake(c: &mut PskTls, s: &mut PskTls) -> Result<Vec<Vec<u8>>, TlsError> {
        let mut flights = Vec::new();
        c.handshake()?;
        let mut to_server = Vec::new();
        c.take_output(&mut to_server);
        for _ in 0..6 {
            if to_server.is_empty() {
                break;
            }
            flights.push(to_server.clone());
            s.feed(&to_server);
            to_server.clear();
            s.handshake()?;
            let mut to_client = Vec::new();
            s.take_output(&mut to_client);
            if to_client.is_empty() {
                break;
            }
            flights.push(to_client.clone());
            c.feed(&to_client);
            c.handshake()?;
            c.take_output(&mut to_server);
        }
        Ok(flights)
    }

    #[test]
    fn a_client_and_a_server_with_one_key_talk_tls13_aes128gcm_in_hdcs_four_flights() {
        let psk = [7u8; PSK_LEN];
        let mut c = PskTls::new(Role::Client, &psk).unwrap();
        let mut s = PskTls::new(Role::Server, &psk).unwrap();
        let flights = handshake(&mut c, &mut s).unwrap();
        // ClientHello; ServerHello..Finished; client Finished; NewSessionTickets (step 8,
        // which OpenHarmony's host needs to switch).
        assert_eq!(
            flights.len(),
            4,
            "{:?}",
            flights.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(flights[0][0], 0x16, "a handshake record");
        assert!(!flights[3].is_empty());
        assert!(c.is_finished() && s.is_finished());
        assert_eq!(s.describe(), "TLSv1.3 TLS_AES_128_GCM_SHA256");
        assert_eq!(c.describe(), "TLSv1.3 TLS_AES_128_GCM_SHA256");

        // Application data both ways, across record boundaries and fed a piece at a time.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        c.encrypt(&big).unwrap();
        let mut ct = Vec::new();
        c.take_output(&mut ct);
        assert!(ct.len() > big.len() && !ct.windows(64).any(|w| w == &big[1000..1064]));
        let mut pt = BytesMut::new();
        for part in ct.chunks(7000) {
            s.feed(part);
            s.decrypt(&mut pt).unwrap();
        }
        assert!(pt[..] == big[..]);
        s.encrypt(b"back").unwrap();
        let mut ct = Vec::new();
        s.take_output(&mut ct);
        c.feed(&ct);
        let mut pt = BytesMut::new();
        c.decrypt(&mut pt).unwrap();
        assert_eq!(&pt[..], b"back");
    }

    #[test]
    fn another_key_fails_the_handshake_and_tampering_fails_decryption() {
        let mut c = PskTls::new(Role::Client, &[1; PSK_LEN]).unwrap();
        let mut s = PskTls::new(Role::Server, &[2; PSK_LEN]).unwrap();
        assert!(handshake(&mut c, &mut s).is_err());

        let mut c = PskTls::new(Role::Client, &[1; PSK_LEN]).unwrap();
        let mut s = PskTls::new(Role::Server, &[1; PSK_LEN]).unwrap();
        handshake(&mut c, &mut s).unwrap();
        c.encrypt(b"hello").unwrap();
        let mut ct = Vec::new();
        c.take_output(&mut ct);
        let last = ct.len() - 1;
        ct[last] ^= 1;
        s.feed(&ct);
        assert!(matches!(
            s.decrypt(&mut BytesMut::new()),
            Err(TlsError::Protocol(_))
        ));
    }

    #[test]
    fn data_before_the_handshake_is_refused_and_garbage_is_a_protocol_error() {
        let mut c = PskTls::new(Role::Client, &[1; PSK_LEN]).unwrap();
        assert_eq!(c.encrypt(b"x"), Err(TlsError::NotFinished));
        let mut s = PskTls::new(Role::Server, &[1; PSK_LEN]).unwrap();
        s.feed(b"HW\0\0\x01 not a ClientHello at all");
        assert!(matches!(s.handshake(), Err(TlsError::Protocol(_))));
    }

    /// The server takes only the identity hdc's host sends: a client of the same key under
    /// another name is refused.
    #[test]
    fn the_server_refuses_another_identity() {
        let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
        b.set_ciphersuites(CIPHERSUITE).unwrap();
        b.set_psk_client_callback(|_, _, identity, psk| {
            identity[..6].copy_from_slice(b"other\0");
            psk[..PSK_LEN].copy_from_slice(&[1; PSK_LEN]);
            Ok(PSK_LEN)
        });
        let ctx = b.build();
        let mut ssl = Ssl::new(&ctx).unwrap();
        ssl.set_connect_state();
        let mut c = PskTls {
            s: SslStream::new(ssl, MemIo::default()).unwrap(),
            role: Role::Client,
            finished: false,
        };
        let mut s = PskTls::new(Role::Server, &[1; PSK_LEN]).unwrap();
        assert!(handshake(&mut c, &mut s).is_err());
        assert!(!s.is_finished());
    }
}
