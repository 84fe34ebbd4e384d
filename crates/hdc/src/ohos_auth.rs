//! OpenHarmony's hdc session handshake and host authentication (developtools_hdc's
//! `session.cpp`, `daemon.cpp` `HandDaemonAuth*`, `auth.cpp`; docs/HDC-WIRE.md §3-4), as two
//! pure state machines: [`DeviceAuth`] (the daemon's side) and [`HostAuth`] (the host
//! server's). They take [`SessionHandShake`]s and give back packets to send; keys, clocks and
//! sockets stay outside.
//!
//! The exchange, all CMD_KERNEL_HANDSHAKE on channel 0:
//! ```text
//! host   -> AUTH_NONE       sessionId, connectKey, buf TLV{authtype=1, supportfeatures}
//! device -> AUTH_PUBLICKEY  buf TLV{authtype=1}            (or AUTH_OK at once: bypass)
//! host   -> AUTH_PUBLICKEY  buf "<hostname>\f<PEM public key>"
//! device -> AUTH_SIGNATURE  buf <token>                    (unknown key: AUTH_OK, refused)
//! host   -> AUTH_SIGNATURE  buf base64(RSA-PSS-SHA512(token))
//! device -> AUTH_OK         buf TLV{emgmsg, devname, daemonauthstatus, supportfeatures}
//!           then CMD_KERNEL_CHANNEL_CLOSE [1]
//! ```
//! A refusal is an AUTH_OK whose `daemonauthstatus` is `DAEMON_UNAUTH` and whose `emgmsg`
//! says why, in OpenHarmony's words.
//!
//! With TLS-PSK (the host lists `encrypt_tcp`, the device offers it, authentication is not
//! bypassed), the known key gets a pre-shared key instead of a token, and the TLS
//! handshake ([`crate::ohos_tls`], device = server) travels raw in AUTH_SSL_TLS_PSK bufs:
//! ```text
//! device -> SSL_TLS_PSK  base64(RSA-OAEP-SHA1(32-byte PSK, host key))
//! host   -> SSL_TLS_PSK  ClientHello
//! device -> SSL_TLS_PSK  ServerHello .. Finished
//! host   -> SSL_TLS_PSK  Finished
//! device -> SSL_TLS_PSK  NewSessionTickets, then the device switches, waits 300 ms and
//!           sends AUTH_OK + CHANNEL_CLOSE [1] as TLS records
//! host   switches on reading that last plaintext packet (it had finished already)
//! ```
//! The steps return [`Action`]s: packets to send, the [switch](Action::Switch) to TLS at
//! an exact point of the stream, and the device's pause.

use crate::hostkey::{MAX_PSK_B64, MIN_PSK_B64};
use crate::ohos::{HANDSHAKE_BANNER, SessionHandShake};
use crate::ohos_tls::{TlsEngine, TlsError};
use std::collections::BTreeMap;
use std::time::Duration;

/// CMD_KERNEL_HANDSHAKE.
pub const CMD_KERNEL_HANDSHAKE: u32 = 1;
/// CMD_KERNEL_CHANNEL_CLOSE.
pub const CMD_KERNEL_CHANNEL_CLOSE: u32 = 2;
/// CMD_KERNEL_ECHO.
pub const CMD_KERNEL_ECHO: u32 = 9;

/// AuthType values.
pub mod auth_type {
    /// First message of the host.
    pub const NONE: u8 = 0;
    /// Legacy token.
    pub const TOKEN: u8 = 1;
    /// A token to sign, or its signature.
    pub const SIGNATURE: u8 = 2;
    /// The host's public key, or the device's request for it.
    pub const PUBLICKEY: u8 = 3;
    /// The end of the handshake (success or refusal, per `daemonauthstatus`).
    pub const OK: u8 = 4;
    /// Failure.
    pub const FAIL: u8 = 5;
    /// TLS with a pre-shared key.
    pub const SSL_TLS_PSK: u8 = 6;
}

/// Width of a TLV tag and of its length field.
pub const TLV_FIELD_LEN: usize = 16;
/// TLV tags.
pub mod tag {
    /// The device's name.
    pub const DEVNAME: &str = "devname";
    /// A message for the user (empty on success).
    pub const EMGMSG: &str = "emgmsg";
    /// `SUCCESS` or `DAEMON_UNAUTH`.
    pub const DAEMON_AUTH_STATUS: &str = "daemonauthstatus";
    /// The signature algorithm: `1` = RSA-3072 with PSS and SHA-512.
    pub const AUTHTYPE: &str = "authtype";
    /// Comma-separated features.
    pub const SUPPORT_FEATURES: &str = "supportfeatures";
    /// `enable`: the daemon takes CMD_UNITY_EXECUTE_EX (1200).
    pub const SHELL_OPT: &str = "1200";
}
/// `daemonauthstatus` on success.
pub const AUTH_SUCCESS: &str = "SUCCESS";
/// `daemonauthstatus` on refusal.
pub const AUTH_UNAUTHORIZED: &str = "DAEMON_UNAUTH";
/// The signature algorithm both sides use (AuthVerifyType RSA_3072_SHA512).
pub const AUTHTYPE_RSA_3072_SHA512: &str = "1";
/// Separator of hostname and public key in the host's AUTH_PUBLICKEY.
pub const HOST_PUBKEY_SEPARATOR: char = '\x0c';
/// The version we speak.
pub const VERSION: &str = "Ver: 3.2.0f";
/// Hosts older than this are refused (OpenHarmony compares the strings).
pub const MIN_HOST_VERSION: &str = "Ver: 3.0.0b";
/// Length of the token the host signs: SHA_DIGEST_LENGTH characters, each a lowercase hex
/// digit (hdcd's GetSecureRandomString).
pub const TOKEN_LEN: usize = 20;
/// FEATURE_ENCRYPT_TCP: a host lists it to ask for TLS-PSK; a device lists it as able to.
pub const FEATURE_ENCRYPT_TCP: &str = "encrypt_tcp";
/// ENV_ENCRYPT_CHANNEL: `1` in the environment of OpenHarmony's hdc server makes it ask.
pub const ENV_ENCRYPT_CHANNEL: &str = "OHOS_HDC_ENCRYPT_CHANNEL";
/// Whether a device refuses sessions without encryption (`1`/`0`; unset: refused on a
/// release device, `const.debuggable=0`, as OpenHarmony's debuggable devices take
/// plaintext).
pub const ENCRYPT_REQUIRED_PARAM: &str = "persist.hdc.encrypt_required";
/// SSL_HANDSHAKE_FINISHED_WAIT_TIME: the device's pause between its last plaintext packet
/// and its first encrypted one.
pub const SSL_HANDSHAKE_FINISHED_WAIT: Duration = Duration::from_millis(300);
/// At most this many TLV records are read from one buf.
pub const MAX_TLV_RECORDS: usize = 32;

/// OpenHarmony's refusal texts.
pub mod msg {
    /// Host too old.
    pub const VERSION_TOO_LOW: &str =
        "[E000001]:The sdk hdc.exe version is too low, please upgrade to the latest version.";
    /// Unknown host key.
    pub const UNAUTHORIZED: &str = "[E000002]:The device unauthorized.\r\nThis server's public key is not set.\r\nPlease check for a confirmation dialog on your device.\r\nOtherwise try 'hdc kill' if that seems wrong.";
    /// The device's user refused the host.
    pub const DENIED: &str = "[E000003]:The device unauthorized.\r\nThe user denied the access for the device.\r\nPlease execute 'hdc kill' and redo your command,\r\nthen check for a confirmation dialog on your device.";
    /// A wrong signature (or, on the TLS-PSK path, a host that could not use our key).
    pub const AUTH_FAILED: &str = "[E000010]:Auth failed, cannt login the device.";

    /// A device that takes only encrypted sessions, to a host that did not ask for one
    /// (`bypass`: to a session with the authentication bypassed, which is never encrypted).
    pub fn encryption_required(bypass: bool) -> String {
        use super::{ENCRYPT_REQUIRED_PARAM, ENV_ENCRYPT_CHANNEL};
        let fix = if bypass {
            format!(
                "sessions with {} are not encrypted: set it to 0",
                crate::device::AUTH_BYPASS_PARAM
            )
        } else {
            format!(
                "set {ENV_ENCRYPT_CHANNEL}=1 for OpenHarmony's hdc server (then 'hdc kill' and \
                 connect again), or use oxharmony's hdc, whose sessions are TLS"
            )
        };
        format!(
            "[Fail]This device accepts only encrypted hdc sessions ({ENCRYPT_REQUIRED_PARAM}): {fix}"
        )
    }
}

/// Errors of the handshake.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// A malformed TLV.
    #[error("bad TLV: {0}")]
    Tlv(&'static str),
    /// Not OpenHarmony's banner: the peer is not hdc.
    #[error("not an hdc peer (banner {0:?})")]
    Banner(String),
    /// A message out of order.
    #[error("unexpected handshake step (authType {0})")]
    Unexpected(u8),
    /// The TLS-PSK steps failed (a key we cannot decrypt, a broken handshake).
    #[error("TLS-PSK: {0}")]
    Tls(String),
}

/// Appends one TLV record: the tag and the value's length in decimal, each left-justified
/// and space-padded to 16 bytes, then the value.
pub fn tlv_append(out: &mut String, tag: &str, value: &str) {
    out.push_str(&format!("{tag:<16}{:<16}{value}", value.len()));
}

/// Reads TLV records (at most [`MAX_TLV_RECORDS`]); a later duplicate tag wins.
pub fn tlv_parse(buf: impl AsRef<[u8]>) -> Result<BTreeMap<String, String>, AuthError> {
    let b = buf.as_ref();
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < b.len() {
        if out.len() >= MAX_TLV_RECORDS {
            return Err(AuthError::Tlv("too many records"));
        }
        let head = b
            .get(i..i + 2 * TLV_FIELD_LEN)
            .ok_or(AuthError::Tlv("short record"))?;
        let tag = std::str::from_utf8(&head[..TLV_FIELD_LEN])
            .map_err(|_| AuthError::Tlv("tag not text"))?
            .trim_end()
            .to_string();
        let len: usize = std::str::from_utf8(&head[TLV_FIELD_LEN..])
            .ok()
            .and_then(|l| l.trim_end().parse().ok())
            .ok_or(AuthError::Tlv("bad length"))?;
        if tag.is_empty() {
            return Err(AuthError::Tlv("empty tag"));
        }
        let start = i + 2 * TLV_FIELD_LEN;
        let v = b
            .get(start..start.saturating_add(len))
            .ok_or(AuthError::Tlv("value past the end"))?;
        out.insert(tag, String::from_utf8_lossy(v).into_owned());
        i = start + len;
    }
    Ok(out)
}

/// Feature names in a `supportfeatures` value.
pub fn features(tlv: &BTreeMap<String, String>) -> Vec<String> {
    tlv.get(tag::SUPPORT_FEATURES)
        .map(|f| {
            f.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A packet on channel 0 the handshake wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    /// The command (handshake, channel close or echo).
    pub command: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

fn handshake_out(h: &SessionHandShake) -> Out {
    Out {
        command: CMD_KERNEL_HANDSHAKE,
        payload: h.encode(),
    }
}

/// What a handshake step wants done, in order.
pub enum Action {
    /// Send this packet, in the stream's framing of the moment (plaintext, or TLS after a
    /// [`Action::Switch`]).
    Send(Out),
    /// From here on the byte stream is TLS records, both ways, through this engine: what
    /// follows in a buffer already read is ciphertext.
    Switch(Box<dyn TlsEngine>),
    /// Wait this long before the next action (hdcd's SSL_HANDSHAKE_FINISHED_WAIT_TIME, so an
    /// OpenHarmony host, which parses one read in one framing, gets the TLS bytes in a later
    /// read than the last plaintext packet).
    Wait(Duration),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Send(o) => f.debug_tuple("Send").field(o).finish(),
            Action::Switch(_) => f.write_str("Switch"),
            Action::Wait(d) => f.debug_tuple("Wait").field(d).finish(),
        }
    }
}

impl Action {
    /// The packet, if this is a send.
    pub fn packet(&self) -> Option<&Out> {
        match self {
            Action::Send(o) => Some(o),
            _ => None,
        }
    }
}

fn send(h: &SessionHandShake) -> Action {
    Action::Send(handshake_out(h))
}

/// What the device's side knows of a host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    /// In the known-keys list (or allowed once).
    Known,
    /// Not known: the device's owner may allow it (`oxh hdc allow`).
    Unknown,
    /// Refused by the device's owner.
    Denied,
}

/// What the device's side is told to decide.
pub trait DevicePolicy {
    /// Whether this device takes only encrypted sessions ([`ENCRYPT_REQUIRED_PARAM`]):
    /// a host that does not ask for `encrypt_tcp`, or a bypassed session, is then refused.
    fn encryption_required(&self) -> bool {
        false
    }
    /// Whether this device offers TLS-PSK to the hosts that ask (and lists `encrypt_tcp`).
    fn offers_psk(&self) -> bool {
        false
    }
    /// A TLS-PSK session for the known host key `pem`: the AUTH_SSL_TLS_PSK buf (base64 of
    /// the key encrypted to `pem`) and the TLS server keyed with it.
    fn psk_session(&mut self, _pem: &str) -> Result<(String, Box<dyn TlsEngine>), String> {
        Err("this device offers no TLS-PSK".into())
    }
    /// Whether this host may skip authentication (`persist.hdc.auth_bypass` on a host that is
    /// allowed to use it).
    fn bypass(&self) -> bool;
    /// Whether `pem` (from `hostname`) is a known host key.
    fn verdict(&mut self, pem: &str, hostname: &str) -> KeyVerdict;
    /// Whether `signature` (base64, as sent) is the key's signature of `token`.
    fn verify(&self, pem: &str, token: &[u8], signature: &str) -> bool;
    /// A fresh token of [`TOKEN_LEN`] characters.
    fn token(&mut self) -> String;
    /// The device's name, for AUTH_OK.
    fn device_name(&self) -> String;
    /// The features this device offers (`encrypt_tcp` is added when it [offers
    /// PSK](DevicePolicy::offers_psk)).
    fn features(&self) -> Vec<String>;
}

/// How a device's handshake ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// Still going.
    Pending,
    /// The host is in: its key (None with the bypass) and name, and the features it offered.
    Accepted {
        /// The host's PEM public key.
        host_key: Option<String>,
        /// The host's name.
        host_name: String,
        /// The host's features.
        features: Vec<String>,
        /// Whether the session is TLS-PSK from here on.
        encrypted: bool,
    },
    /// Refused with this message (already sent).
    Refused(String),
}

enum DevState {
    Start,
    WaitKey,
    WaitSignature {
        pem: String,
        host: String,
        token: String,
    },
    /// The TLS handshake, in AUTH_SSL_TLS_PSK bufs.
    Tls {
        pem: String,
        host: String,
        tls: Box<dyn TlsEngine>,
    },
    Done,
}

impl std::fmt::Debug for DevState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DevState::Start => "Start",
            DevState::WaitKey => "WaitKey",
            DevState::WaitSignature { .. } => "WaitSignature",
            DevState::Tls { .. } => "Tls",
            DevState::Done => "Done",
        })
    }
}

/// The device's side of the handshake.
#[derive(Debug)]
pub struct DeviceAuth {
    state: DevState,
    /// The host's session id.
    pub session_id: u32,
    /// The connect key the host uses for this device.
    pub connect_key: String,
    host_version: String,
    host_features: Vec<String>,
    /// The host asked for encrypt_tcp and this device offers it.
    psk: bool,
    outcome: DeviceOutcome,
}

impl Default for DeviceAuth {
    fn default() -> Self {
        DeviceAuth {
            state: DevState::Start,
            session_id: 0,
            connect_key: String::new(),
            host_version: String::new(),
            host_features: Vec::new(),
            psk: false,
            outcome: DeviceOutcome::Pending,
        }
    }
}

impl DeviceAuth {
    /// How it ended (or Pending).
    pub fn outcome(&self) -> &DeviceOutcome {
        &self.outcome
    }

    /// The struct the daemon echoes: the host's, with sessionId and connectKey cleared.
    fn reply(&self, auth: u8, buf: impl Into<Vec<u8>>) -> SessionHandShake {
        SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth,
            session_id: 0,
            connect_key: String::new(),
            buf: buf.into(),
            version: self.host_version.clone(),
        }
    }

    fn ok_buf(&self, p: &dyn DevicePolicy, refusal: Option<&str>) -> String {
        let mut b = String::new();
        tlv_append(&mut b, tag::EMGMSG, refusal.unwrap_or(""));
        tlv_append(&mut b, tag::DEVNAME, &p.device_name());
        let status = if refusal.is_some() {
            AUTH_UNAUTHORIZED
        } else {
            AUTH_SUCCESS
        };
        tlv_append(&mut b, tag::DAEMON_AUTH_STATUS, status);
        if refusal.is_none() {
            // As hdcd's AddFeatureTagToEmgmsg: `hdc shell -b` is served here.
            tlv_append(&mut b, tag::SHELL_OPT, "enable");
            let mut f = p.features();
            if p.offers_psk() && !f.iter().any(|x| x == FEATURE_ENCRYPT_TCP) {
                f.push(FEATURE_ENCRYPT_TCP.into());
            }
            tlv_append(&mut b, tag::SUPPORT_FEATURES, &f.join(","));
        }
        b
    }

    /// AUTH_OK and the channel close that follows it (encrypted, when `tls` is the engine
    /// the stream switches to first).
    fn accept(
        &mut self,
        p: &dyn DevicePolicy,
        key: Option<String>,
        host: String,
        tls: Option<(Vec<u8>, Box<dyn TlsEngine>)>,
    ) -> Vec<Action> {
        self.state = DevState::Done;
        self.outcome = DeviceOutcome::Accepted {
            host_key: key,
            host_name: host,
            features: self.host_features.clone(),
            encrypted: tls.is_some(),
        };
        let mut v = Vec::new();
        if let Some((last_flight, engine)) = tls {
            // The server's last flight (its session tickets) still in plaintext framing:
            // OpenHarmony's host switches when it reads this packet.
            if !last_flight.is_empty() {
                v.push(send(&self.reply(auth_type::SSL_TLS_PSK, last_flight)));
            }
            v.push(Action::Switch(engine));
            v.push(Action::Wait(SSL_HANDSHAKE_FINISHED_WAIT));
        }
        v.push(send(&self.reply(auth_type::OK, self.ok_buf(p, None))));
        v.push(Action::Send(Out {
            command: CMD_KERNEL_CHANNEL_CLOSE,
            payload: vec![1],
        }));
        v
    }

    fn refuse(&mut self, p: &dyn DevicePolicy, why: &str) -> Vec<Action> {
        self.state = DevState::Done;
        self.outcome = DeviceOutcome::Refused(why.to_string());
        let mut echo = vec![0u8];
        echo.extend_from_slice(why.as_bytes());
        vec![
            send(&self.reply(auth_type::OK, self.ok_buf(p, Some(why)))),
            Action::Send(Out {
                command: CMD_KERNEL_CHANNEL_CLOSE,
                payload: vec![1],
            }),
            Action::Send(Out {
                command: CMD_KERNEL_ECHO,
                payload: echo,
            }),
        ]
    }

    /// Takes one handshake message from the host; returns what to do.
    pub fn on_handshake(
        &mut self,
        h: SessionHandShake,
        p: &mut dyn DevicePolicy,
    ) -> Result<Vec<Action>, AuthError> {
        if h.banner != HANDSHAKE_BANNER {
            return Err(AuthError::Banner(h.banner.chars().take(16).collect()));
        }
        match (&mut self.state, h.auth_type) {
            (DevState::Start, auth_type::NONE) => {
                self.session_id = h.session_id;
                self.connect_key = h.connect_key.clone();
                self.host_version = h.version.clone();
                let tlv = tlv_parse(&h.buf).unwrap_or_default();
                self.host_features = features(&tlv);
                // hdcd: the host's supportfeatures decide (ParsePeerSupportFeatures).
                self.psk =
                    p.offers_psk() && self.host_features.iter().any(|f| f == FEATURE_ENCRYPT_TCP);
                if p.bypass() {
                    // As hdcd: no authentication, so no TLS either.
                    if p.encryption_required() {
                        return Ok(self.refuse(&*p, &msg::encryption_required(true)));
                    }
                    return Ok(self.accept(&*p, None, String::new(), None));
                }
                if h.version.as_str() < MIN_HOST_VERSION {
                    return Ok(self.refuse(&*p, msg::VERSION_TOO_LOW));
                }
                if p.encryption_required() && !self.psk {
                    return Ok(self.refuse(&*p, &msg::encryption_required(false)));
                }
                self.state = DevState::WaitKey;
                let mut b = String::new();
                tlv_append(&mut b, tag::AUTHTYPE, AUTHTYPE_RSA_3072_SHA512);
                Ok(vec![send(&self.reply(auth_type::PUBLICKEY, b))])
            }
            (DevState::WaitKey, auth_type::PUBLICKEY) => {
                let text = h.buf_text();
                let (host, pem) = text
                    .split_once(HOST_PUBKEY_SEPARATOR)
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .unwrap_or_else(|| (String::new(), text.to_string()));
                match p.verdict(&pem, &host) {
                    KeyVerdict::Known if self.psk => match p.psk_session(&pem) {
                        Ok((buf, tls)) => {
                            let out = send(&self.reply(auth_type::SSL_TLS_PSK, buf));
                            self.state = DevState::Tls { pem, host, tls };
                            Ok(vec![out])
                        }
                        Err(_) => Ok(self.refuse(&*p, msg::AUTH_FAILED)),
                    },
                    KeyVerdict::Known => {
                        let token = p.token();
                        let out = send(&self.reply(auth_type::SIGNATURE, token.clone()));
                        self.state = DevState::WaitSignature { pem, host, token };
                        Ok(vec![out])
                    }
                    KeyVerdict::Unknown => Ok(self.refuse(&*p, msg::UNAUTHORIZED)),
                    KeyVerdict::Denied => Ok(self.refuse(&*p, msg::DENIED)),
                }
            }
            (DevState::WaitSignature { pem, host, token }, auth_type::SIGNATURE) => {
                if p.verify(pem, token.as_bytes(), &h.buf_text()) {
                    let (pem, host) = (pem.clone(), host.clone());
                    Ok(self.accept(&*p, Some(pem), host, None))
                } else {
                    Ok(self.refuse(&*p, msg::AUTH_FAILED))
                }
            }
            (DevState::Tls { tls, .. }, auth_type::SSL_TLS_PSK) => {
                tls.feed(&h.buf);
                let done = match tls.handshake() {
                    Ok(done) => done,
                    // A wrong key (the host could not decrypt ours) or not TLS at all.
                    Err(_) => return Ok(self.refuse(&*p, msg::AUTH_FAILED)),
                };
                let mut flight = Vec::new();
                tls.take_output(&mut flight);
                if !done {
                    if flight.is_empty() {
                        return Ok(Vec::new());
                    }
                    return Ok(vec![send(&self.reply(auth_type::SSL_TLS_PSK, flight))]);
                }
                let DevState::Tls { pem, host, tls } =
                    std::mem::replace(&mut self.state, DevState::Done)
                else {
                    return Err(AuthError::Unexpected(h.auth_type));
                };
                Ok(self.accept(&*p, Some(pem), host, Some((flight, tls))))
            }
            (_, t) => Err(AuthError::Unexpected(t)),
        }
    }
}

/// What the host's side is told to do.
pub trait HostPolicy {
    /// `"<hostname>\f<PEM>"`: the host's name and public key.
    fn public_key_message(&self) -> String;
    /// base64 of the host key's signature of `token`.
    fn sign(&self, token: &[u8]) -> String;
    /// The TLS client for the pre-shared key in the device's AUTH_SSL_TLS_PSK buf (base64 of
    /// the key encrypted to ours).
    fn psk_client(&self, _encrypted_psk: &[u8]) -> Result<Box<dyn TlsEngine>, String> {
        Err("this host has no TLS-PSK".into())
    }
}

/// How a host's handshake ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOutcome {
    /// Still going.
    Pending,
    /// Connected: the device's name and features.
    Connected {
        /// devname.
        device_name: String,
        /// supportfeatures.
        features: Vec<String>,
        /// Whether the session is TLS-PSK.
        encrypted: bool,
    },
    /// The device refused (its message), e.g. an unknown key.
    Unauthorized(String),
}

/// The host's side of the handshake.
pub struct HostAuth {
    hello: SessionHandShake,
    outcome: HostOutcome,
    /// We listed encrypt_tcp.
    asked_tls: bool,
    /// The TLS client, from the device's first AUTH_SSL_TLS_PSK until the switch.
    tls: Option<Box<dyn TlsEngine>>,
    tls_started: bool,
    switched: bool,
}

impl std::fmt::Debug for HostAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostAuth")
            .field("outcome", &self.outcome)
            .field("tls_started", &self.tls_started)
            .field("switched", &self.switched)
            .finish()
    }
}

impl HostAuth {
    /// The first message: AUTH_NONE with the session id, the device's connect key and our
    /// features (list [`FEATURE_ENCRYPT_TCP`] to ask for TLS-PSK).
    pub fn start(session_id: u32, connect_key: &str, features: &[&str]) -> (HostAuth, Out) {
        let mut buf = String::new();
        tlv_append(&mut buf, tag::AUTHTYPE, AUTHTYPE_RSA_3072_SHA512);
        tlv_append(&mut buf, tag::SUPPORT_FEATURES, &features.join(","));
        let hello = SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth_type::NONE,
            session_id,
            connect_key: connect_key.into(),
            buf: buf.into_bytes(),
            version: VERSION.into(),
        };
        let out = handshake_out(&hello);
        (
            HostAuth {
                hello,
                outcome: HostOutcome::Pending,
                asked_tls: features.contains(&FEATURE_ENCRYPT_TCP),
                tls: None,
                tls_started: false,
                switched: false,
            },
            out,
        )
    }

    /// How it ended (or Pending).
    pub fn outcome(&self) -> &HostOutcome {
        &self.outcome
    }

    /// Takes one handshake message from the device; returns what to do.
    pub fn on_handshake(
        &mut self,
        h: SessionHandShake,
        p: &dyn HostPolicy,
    ) -> Result<Vec<Action>, AuthError> {
        if h.banner != HANDSHAKE_BANNER {
            return Err(AuthError::Banner(h.banner.chars().take(16).collect()));
        }
        if self.outcome != HostOutcome::Pending {
            return Err(AuthError::Unexpected(h.auth_type));
        }
        // The host echoes the device's struct with only authType and buf changed.
        let mut reply = h.clone();
        match h.auth_type {
            auth_type::PUBLICKEY if !self.tls_started => {
                reply.buf = p.public_key_message().into_bytes();
                Ok(vec![send(&reply)])
            }
            auth_type::SIGNATURE if !self.tls_started => {
                reply.buf = p.sign(&h.buf).into_bytes();
                Ok(vec![send(&reply)])
            }
            auth_type::SSL_TLS_PSK => self.on_psk(h, reply, p),
            auth_type::OK => {
                let tlv = tlv_parse(&h.buf)?;
                let status = tlv.get(tag::DAEMON_AUTH_STATUS).map(String::as_str);
                if status == Some(AUTH_SUCCESS) && self.tls_started && !self.switched {
                    return Err(AuthError::Tls(
                        "a plaintext AUTH_OK in the middle of the TLS handshake".into(),
                    ));
                }
                self.outcome = if status == Some(AUTH_SUCCESS) {
                    HostOutcome::Connected {
                        device_name: tlv.get(tag::DEVNAME).cloned().unwrap_or_default(),
                        features: features(&tlv),
                        encrypted: self.switched,
                    }
                } else {
                    HostOutcome::Unauthorized(
                        tlv.get(tag::EMGMSG)
                            .cloned()
                            .filter(|m| !m.is_empty())
                            .unwrap_or_else(|| msg::UNAUTHORIZED.to_string()),
                    )
                };
                Ok(Vec::new())
            }
            t => Err(AuthError::Unexpected(t)),
        }
    }

    /// An AUTH_SSL_TLS_PSK from the device: the encrypted key (first), a server flight, or
    /// its last flight after ours finished the handshake, which is the switch (hdc's host
    /// `ServerSSLHandshake`: finished on entry).
    fn on_psk(
        &mut self,
        h: SessionHandShake,
        mut reply: SessionHandShake,
        p: &dyn HostPolicy,
    ) -> Result<Vec<Action>, AuthError> {
        let tls_err = |e: TlsError| AuthError::Tls(e.to_string());
        if self.switched {
            return Err(AuthError::Unexpected(h.auth_type));
        }
        let Some(tls) = self.tls.as_mut() else {
            if !self.asked_tls || self.tls_started {
                return Err(AuthError::Unexpected(h.auth_type));
            }
            if !(MIN_PSK_B64..=MAX_PSK_B64).contains(&h.buf.len()) {
                return Err(AuthError::Tls(format!(
                    "an encrypted pre-shared key of {} bytes",
                    h.buf.len()
                )));
            }
            let mut tls = p.psk_client(&h.buf).map_err(AuthError::Tls)?;
            self.tls_started = true;
            tls.handshake().map_err(tls_err)?;
            reply.buf.clear();
            tls.take_output(&mut reply.buf);
            self.tls = Some(tls);
            return Ok(vec![send(&reply)]);
        };
        tls.feed(&h.buf);
        if tls.is_finished() {
            self.switched = true;
            return Ok(self.tls.take().map(Action::Switch).into_iter().collect());
        }
        tls.handshake().map_err(tls_err)?;
        reply.buf.clear();
        tls.take_output(&mut reply.buf);
        if reply.buf.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![send(&reply)])
    }

    /// The first message, as sent.
    pub fn hello(&self) -> &SessionHandShake {
        &self.hello
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenHarmony's own unit test of TlvAppend: tag "12345", value "123".
    #[test]
    fn tlv_as_openharmony_writes_it() {
        let mut b = String::new();
        tlv_append(&mut b, "12345", "123");
        assert_eq!(b, format!("12345{}3{}123", " ".repeat(11), " ".repeat(15)));
        tlv_append(&mut b, tag::DEVNAME, "");
        let m = tlv_parse(&b).unwrap();
        assert_eq!(m["12345"], "123");
        assert_eq!(m[tag::DEVNAME], "");
        assert!(tlv_parse(&b[..40]).is_err());
        assert!(tlv_parse(format!("{:<16}{:<16}ab", "t", "x")).is_err());
        assert!(tlv_parse(format!("{:<16}{:<16}ab", "t", "99")).is_err());
        let many: String = (0..=MAX_TLV_RECORDS)
            .map(|i| {
                let mut s = String::new();
                tlv_append(&mut s, &format!("t{i}"), "");
                s
            })
            .collect();
        assert!(tlv_parse(&many).is_err());
    }

    /// A stand-in for TLS: three flights and the server's tickets, then "records" of a
    /// length and the bytes XORed with the key; anything unexpected is an error.
    struct FakeTls {
        server: bool,
        key: u8,
        step: u8,
        input: Vec<u8>,
        output: Vec<u8>,
    }
    impl FakeTls {
        fn boxed(server: bool, key: u8) -> Box<dyn TlsEngine> {
            Box::new(FakeTls {
                server,
                key,
                step: 0,
                input: Vec::new(),
                output: Vec::new(),
            })
        }
        fn expect(&mut self, what: &[u8]) -> Result<(), TlsError> {
            let mut want = what.to_vec();
            want.push(self.key);
            if self.input.starts_with(&want) {
                self.input.drain(..want.len());
                Ok(())
            } else {
                Err(TlsError::Protocol(format!("wanted {what:?}")))
            }
        }
        fn put(&mut self, what: &[u8]) {
            self.output.extend_from_slice(what);
            self.output.push(self.key);
        }
    }
    impl TlsEngine for FakeTls {
        fn feed(&mut self, c: &[u8]) {
            self.input.extend_from_slice(c);
        }
        fn handshake(&mut self) -> Result<bool, TlsError> {
            match (self.server, self.step) {
                (false, 0) => self.put(b"CH"),
                (true, 0) => {
                    self.expect(b"CH")?;
                    self.put(b"SF");
                }
                (false, 1) => {
                    self.expect(b"SF")?;
                    self.put(b"CF");
                }
                (true, 1) => {
                    self.expect(b"CF")?;
                    self.put(b"TK");
                }
                _ => return Ok(true),
            }
            self.step += 1;
            Ok(self.step == 2)
        }
        fn is_finished(&self) -> bool {
            self.step == 2
        }
        fn take_output(&mut self, out: &mut Vec<u8>) {
            out.append(&mut self.output);
        }
        fn encrypt(&mut self, p: &[u8]) -> Result<(), TlsError> {
            if self.step != 2 {
                return Err(TlsError::NotFinished);
            }
            self.output
                .extend_from_slice(&(p.len() as u32).to_be_bytes());
            self.output.extend(p.iter().map(|b| b ^ self.key));
            Ok(())
        }
        fn decrypt(&mut self, out: &mut bytes::BytesMut) -> Result<(), TlsError> {
            if !self.server && self.input.first() == Some(&b'T') {
                self.expect(b"TK")?;
            }
            while self.input.len() >= 4 {
                let n = u32::from_be_bytes([
                    self.input[0],
                    self.input[1],
                    self.input[2],
                    self.input[3],
                ]) as usize;
                if self.input.len() < 4 + n {
                    break;
                }
                out.extend(self.input[4..4 + n].iter().map(|b| b ^ self.key));
                self.input.drain(..4 + n);
            }
            Ok(())
        }
    }

    /// Which engine a test's sides use: the fake, or OpenSSL's.
    #[derive(Clone, Copy, PartialEq)]
    enum Engine {
        Fake,
        Real,
    }
    fn engine(e: Engine, server: bool, key: u8) -> Box<dyn TlsEngine> {
        use crate::ohos_tls::{PSK_LEN, PskTls, Role};
        match e {
            Engine::Fake => FakeTls::boxed(server, key),
            Engine::Real => {
                let role = if server { Role::Server } else { Role::Client };
                Box::new(PskTls::new(role, &[key; PSK_LEN]).unwrap())
            }
        }
    }

    struct Dev {
        bypass: bool,
        verdict: KeyVerdict,
        good_sig: String,
        /// Offers TLS-PSK with this engine.
        psk: Option<Engine>,
        required: bool,
    }
    impl Dev {
        fn plain(bypass: bool, verdict: KeyVerdict, good_sig: &str) -> Dev {
            Dev {
                bypass,
                verdict,
                good_sig: good_sig.into(),
                psk: None,
                required: false,
            }
        }
        fn tls(e: Engine, required: bool) -> Dev {
            Dev {
                psk: Some(e),
                required,
                ..Dev::plain(false, KeyVerdict::Known, "")
            }
        }
    }
    /// The device's key byte; the "encrypted" key in the buf is it, hex, 32 times.
    const DEV_KEY: u8 = 0x42;
    impl DevicePolicy for Dev {
        fn encryption_required(&self) -> bool {
            self.required
        }
        fn offers_psk(&self) -> bool {
            self.psk.is_some()
        }
        fn psk_session(&mut self, pem: &str) -> Result<(String, Box<dyn TlsEngine>), String> {
            assert_eq!(pem, "PEM");
            let e = self.psk.ok_or("no psk")?;
            Ok((hex::encode([DEV_KEY; 32]), engine(e, true, DEV_KEY)))
        }
        fn bypass(&self) -> bool {
            self.bypass
        }
        fn verdict(&mut self, pem: &str, hostname: &str) -> KeyVerdict {
            assert_eq!((pem, hostname), ("PEM", "myhost"));
            self.verdict
        }
        fn verify(&self, pem: &str, token: &[u8], sig: &str) -> bool {
            pem == "PEM" && token == b"abcdefghijklmnopqrst" && sig == self.good_sig
        }
        fn token(&mut self) -> String {
            "abcdefghijklmnopqrst".into()
        }
        fn device_name(&self) -> String {
            "dev1".into()
        }
        fn features(&self) -> Vec<String> {
            vec!["heartbeat".into()]
        }
    }
    struct Host {
        engine: Engine,
        /// XORed into the key the host "decrypts" (non-zero: the wrong key).
        spoil: u8,
    }
    const HOST: Host = Host {
        engine: Engine::Fake,
        spoil: 0,
    };
    impl HostPolicy for Host {
        fn public_key_message(&self) -> String {
            "myhost\x0cPEM".into()
        }
        fn sign(&self, token: &[u8]) -> String {
            format!("sig:{}", String::from_utf8_lossy(token))
        }
        fn psk_client(&self, enc: &[u8]) -> Result<Box<dyn TlsEngine>, String> {
            let k = hex::decode(enc).map_err(|e| e.to_string())?;
            Ok(engine(self.engine, false, k[0] ^ self.spoil))
        }
    }

    /// One end of a simulated connection: what it read and not yet parsed, and its TLS
    /// after the switch (one engine both ways, as [`crate::ohos_link`] shares it).
    #[derive(Default)]
    struct End {
        buf: bytes::BytesMut,
        tls: Option<Box<dyn TlsEngine>>,
        waits: Vec<Duration>,
        /// What it sent: (command, authType for handshakes, encrypted).
        sent: Vec<(u32, Option<u8>, bool)>,
    }
    impl End {
        fn receive(&mut self, bytes: &[u8]) {
            match &mut self.tls {
                Some(t) => {
                    t.feed(bytes);
                    t.decrypt(&mut self.buf).unwrap();
                }
                None => self.buf.extend_from_slice(bytes),
            }
        }
        fn next(&mut self) -> Option<SessionHandShake> {
            loop {
                let p = crate::ohos::decode_packet(&mut self.buf).unwrap()?;
                if p.protect.command_flag == CMD_KERNEL_HANDSHAKE {
                    return Some(SessionHandShake::decode(&p.payload).unwrap());
                }
            }
        }
        fn act(&mut self, actions: Vec<Action>, wire: &mut Vec<u8>) {
            for a in actions {
                match a {
                    Action::Send(o) => {
                        let auth = (o.command == CMD_KERNEL_HANDSHAKE)
                            .then(|| SessionHandShake::decode(&o.payload).unwrap().auth_type);
                        self.sent.push((o.command, auth, self.tls.is_some()));
                        let mut pkt = Vec::new();
                        crate::ohos::encode_packet(
                            &mut pkt,
                            &crate::ohos::PayloadProtect::new(0, o.command),
                            &o.payload,
                        );
                        match &mut self.tls {
                            Some(t) => {
                                t.encrypt(&pkt).unwrap();
                                t.take_output(wire);
                            }
                            None => wire.extend_from_slice(&pkt),
                        }
                    }
                    Action::Switch(mut t) => {
                        // What was read past the switch packet is ciphertext.
                        let rest = self.buf.split();
                        t.feed(&rest);
                        t.decrypt(&mut self.buf).unwrap();
                        self.tls = Some(t);
                    }
                    Action::Wait(d) => self.waits.push(d),
                }
            }
        }
    }

    struct Run {
        host: HostOutcome,
        device: DeviceOutcome,
        /// The device's packets: (command, authType, encrypted).
        dev: Vec<(u32, Option<u8>, bool)>,
        dev_waits: Vec<Duration>,
        host_sent: Vec<(u32, Option<u8>, bool)>,
    }

    /// Runs both sides over a simulated connection that delivers everything sent at once
    /// (so the device's last plaintext packet and its first records arrive in one read).
    fn run_with(dev: &mut Dev, host: &Host, features: &[&str]) -> Result<Run, AuthError> {
        let (mut h, first) = HostAuth::start(0x1234, "127.0.0.1:8711", features);
        let mut d = DeviceAuth::default();
        let (mut he, mut de) = (End::default(), End::default());
        let mut to_dev = Vec::new();
        he.act(vec![Action::Send(first)], &mut to_dev);
        for _ in 0..16 {
            de.receive(&std::mem::take(&mut to_dev));
            let mut to_host = Vec::new();
            while let Some(hs) = de.next() {
                let a = d.on_handshake(hs, dev)?;
                de.act(a, &mut to_host);
            }
            he.receive(&to_host);
            while let Some(hs) = he.next() {
                assert_eq!((hs.session_id, hs.connect_key.as_str()), (0, ""));
                let a = h.on_handshake(hs, host)?;
                he.act(a, &mut to_dev);
            }
            if to_dev.is_empty() {
                break;
            }
        }
        assert_eq!(d.session_id, 0x1234);
        assert_eq!(d.connect_key, "127.0.0.1:8711");
        Ok(Run {
            host: h.outcome().clone(),
            device: d.outcome().clone(),
            dev: de.sent,
            dev_waits: de.waits,
            host_sent: he.sent,
        })
    }

    fn run(dev: &mut Dev) -> (HostOutcome, DeviceOutcome, Vec<u32>) {
        let r = run_with(dev, &HOST, &["heartbeat"]).unwrap();
        (r.host, r.device, r.dev.iter().map(|s| s.0).collect())
    }

    #[test]
    fn a_known_key_that_signs_the_token_is_in() {
        let mut dev = Dev::plain(false, KeyVerdict::Known, "sig:abcdefghijklmnopqrst");
        let (h, d, cmds) = run(&mut dev);
        assert_eq!(
            h,
            HostOutcome::Connected {
                device_name: "dev1".into(),
                features: vec!["heartbeat".into()],
                encrypted: false,
            }
        );
        assert_eq!(
            d,
            DeviceOutcome::Accepted {
                host_key: Some("PEM".into()),
                host_name: "myhost".into(),
                features: vec!["heartbeat".into()],
                encrypted: false,
            }
        );
        // PUBLICKEY, SIGNATURE, OK, then the channel close.
        assert_eq!(cmds, vec![1, 1, 1, 2]);
    }

    /// As hdcd's AddFeatureTagToEmgmsg: `"1200"` = `"enable"` before supportfeatures, so
    /// OpenHarmony's hosts send `hdc shell -b`.
    #[test]
    fn auth_ok_offers_shell_options() {
        let mut dev = Dev::plain(true, KeyVerdict::Unknown, "");
        let (_, first) = HostAuth::start(1, "127.0.0.1:8711", &["heartbeat"]);
        let mut d = DeviceAuth::default();
        let hs = SessionHandShake::decode(&first.payload).unwrap();
        let acts = d.on_handshake(hs, &mut dev).unwrap();
        let Some(Action::Send(first_out)) = acts.first() else {
            panic!("no AUTH_OK: {}", acts.len());
        };
        let ok = SessionHandShake::decode(&first_out.payload).unwrap();
        let tlv = tlv_parse(&ok.buf).unwrap();
        assert_eq!(tlv.get(tag::SHELL_OPT).map(String::as_str), Some("enable"));
        let text = ok.buf_text();
        let (a, b) = (
            text.find("1200 ").unwrap(),
            text.find("supportfeatures").unwrap(),
        );
        assert!(a < b, "{text}");
    }

    #[test]
    fn bypass_answers_ok_at_once() {
        let mut dev = Dev::plain(true, KeyVerdict::Unknown, "");
        let (h, d, cmds) = run(&mut dev);
        assert!(matches!(h, HostOutcome::Connected { .. }));
        assert!(matches!(d, DeviceOutcome::Accepted { host_key: None, .. }));
        assert_eq!(cmds, vec![1, 2]);
    }

    #[test]
    fn refusals_carry_openharmonys_messages() {
        for (verdict, sig, want) in [
            (KeyVerdict::Unknown, "x", msg::UNAUTHORIZED),
            (KeyVerdict::Denied, "x", msg::DENIED),
            (KeyVerdict::Known, "forged", msg::AUTH_FAILED),
        ] {
            let mut dev = Dev::plain(false, verdict, sig);
            let (h, d, cmds) = run(&mut dev);
            assert_eq!(h, HostOutcome::Unauthorized(want.into()));
            assert_eq!(d, DeviceOutcome::Refused(want.into()));
            assert_eq!(cmds.last(), Some(&CMD_KERNEL_ECHO));
        }
    }

    const ASK: &[&str] = &["heartbeat", FEATURE_ENCRYPT_TCP];

    /// The TLS-PSK path, step by step, with the fake engine and with OpenSSL's: the device
    /// sends the key and its flights in plaintext, switches after its tickets, pauses, and
    /// sends AUTH_OK and the close as records; the host switches on the tickets' packet,
    /// though the records came in the same read; no token is signed.
    #[test]
    fn encrypt_tcp_runs_the_tls_handshake_in_the_bufs_and_switches_both_ends() {
        for e in [Engine::Fake, Engine::Real] {
            let mut dev = Dev::tls(e, true);
            let host = Host {
                engine: e,
                spoil: 0,
            };
            let r = run_with(&mut dev, &host, ASK).unwrap();
            let (hs, ps, ok) = (
                Some(auth_type::PUBLICKEY),
                Some(auth_type::SSL_TLS_PSK),
                Some(auth_type::OK),
            );
            assert_eq!(
                r.dev,
                vec![
                    (1, hs, false),
                    (1, ps, false), // the encrypted key
                    (1, ps, false), // ServerHello .. Finished
                    (1, ps, false), // the tickets
                    (1, ok, true),
                    (2, None, true),
                ]
            );
            assert_eq!(r.dev_waits, vec![SSL_HANDSHAKE_FINISHED_WAIT]);
            // AUTH_NONE, the key, ClientHello, Finished: all plaintext.
            assert_eq!(
                r.host_sent,
                vec![
                    (1, Some(0), false),
                    (1, hs, false),
                    (1, ps, false),
                    (1, ps, false)
                ]
            );
            assert_eq!(
                r.host,
                HostOutcome::Connected {
                    device_name: "dev1".into(),
                    features: vec!["heartbeat".into(), FEATURE_ENCRYPT_TCP.into()],
                    encrypted: true,
                }
            );
            assert!(matches!(
                r.device,
                DeviceOutcome::Accepted { encrypted: true, host_key: Some(ref k), .. } if k == "PEM"
            ));
        }
    }

    /// A host that cannot use the device's key fails the TLS handshake: the device refuses
    /// in plaintext with OpenHarmony's E000010.
    #[test]
    fn a_host_with_the_wrong_key_is_refused() {
        for e in [Engine::Fake, Engine::Real] {
            let mut dev = Dev::tls(e, true);
            let r = run_with(
                &mut dev,
                &Host {
                    engine: e,
                    spoil: 1,
                },
                ASK,
            )
            .unwrap();
            assert_eq!(r.device, DeviceOutcome::Refused(msg::AUTH_FAILED.into()));
            assert_eq!(r.host, HostOutcome::Unauthorized(msg::AUTH_FAILED.into()));
            assert!(r.dev.iter().all(|s| !s.2), "nothing was encrypted");
        }
    }

    /// A device that requires encryption refuses a host that does not ask (telling it how
    /// to ask) and a bypassed session (never encrypted); one that does not require it
    /// serves both in plaintext, and offers TLS only to a host that asks.
    #[test]
    fn plaintext_sessions_are_refused_only_where_encryption_is_required() {
        let mut dev = Dev::tls(Engine::Fake, true);
        let r = run_with(&mut dev, &HOST, &["heartbeat"]).unwrap();
        let HostOutcome::Unauthorized(m) = r.host else {
            panic!("{:?}", r.host)
        };
        assert!(
            m.contains("OHOS_HDC_ENCRYPT_CHANNEL=1") && m.contains(ENCRYPT_REQUIRED_PARAM),
            "{m}"
        );
        assert_eq!(r.dev.len(), 3, "refused at AUTH_NONE: {:?}", r.dev);

        let mut dev = Dev {
            bypass: true,
            ..Dev::tls(Engine::Fake, true)
        };
        let r = run_with(&mut dev, &HOST, ASK).unwrap();
        let HostOutcome::Unauthorized(m) = r.host else {
            panic!("{:?}", r.host)
        };
        assert!(m.contains(crate::device::AUTH_BYPASS_PARAM), "{m}");

        // Not required: bypass is AUTH_OK at once even for a host that asks (as hdcd).
        let mut dev = Dev {
            bypass: true,
            ..Dev::tls(Engine::Fake, false)
        };
        let r = run_with(&mut dev, &HOST, ASK).unwrap();
        assert!(matches!(
            r.host,
            HostOutcome::Connected {
                encrypted: false,
                ..
            }
        ));
        assert_eq!(r.dev.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
        // Not required, not asked: the signature path.
        let mut dev = Dev {
            good_sig: "sig:abcdefghijklmnopqrst".into(),
            ..Dev::tls(Engine::Fake, false)
        };
        let r = run_with(&mut dev, &HOST, &[]).unwrap();
        assert!(matches!(
            r.host,
            HostOutcome::Connected {
                encrypted: false,
                ..
            }
        ));
        assert!(r.dev.iter().any(|s| s.1 == Some(auth_type::SIGNATURE)));
        // Asked, but this device has no TLS: the signature path too.
        let mut dev = Dev::plain(false, KeyVerdict::Known, "sig:abcdefghijklmnopqrst");
        let r = run_with(&mut dev, &HOST, ASK).unwrap();
        assert!(matches!(
            r.host,
            HostOutcome::Connected {
                encrypted: false,
                ..
            }
        ));
    }

    fn psk_msg(buf: &[u8]) -> SessionHandShake {
        SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth_type::SSL_TLS_PSK,
            buf: buf.to_vec(),
            ..Default::default()
        }
    }

    /// The host takes TLS-PSK only when it asked, an encrypted key only of hdc's sizes,
    /// and no plaintext success once TLS began.
    #[test]
    fn the_host_refuses_tls_it_did_not_ask_for_and_odd_keys() {
        let (mut h, _) = HostAuth::start(1, "k", &[]);
        assert_eq!(
            h.on_handshake(psk_msg(&[b'a'; 64]), &HOST).map(|_| ()),
            Err(AuthError::Unexpected(auth_type::SSL_TLS_PSK))
        );
        for len in [MIN_PSK_B64 - 1, MAX_PSK_B64 + 1] {
            let (mut h, _) = HostAuth::start(1, "k", ASK);
            assert!(matches!(
                h.on_handshake(psk_msg(&vec![b'a'; len]), &HOST),
                Err(AuthError::Tls(_))
            ));
        }
        let (mut h, _) = HostAuth::start(1, "k", ASK);
        let a = h
            .on_handshake(psk_msg(hex::encode([7u8; 32]).as_bytes()), &HOST)
            .unwrap();
        let hello = SessionHandShake::decode(&a[0].packet().unwrap().payload).unwrap();
        assert_eq!(hello.auth_type, auth_type::SSL_TLS_PSK);
        assert_eq!(hello.buf, b"CH\x07", "the ClientHello, raw");
        let mut ok = String::new();
        tlv_append(&mut ok, tag::DAEMON_AUTH_STATUS, AUTH_SUCCESS);
        let ok = SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth_type::OK,
            buf: ok.into_bytes(),
            ..Default::default()
        };
        assert!(matches!(h.on_handshake(ok, &HOST), Err(AuthError::Tls(_))));
    }

    /// The device's AUTH_SSL_TLS_PSK messages as the definitions lay them out: field 5
    /// carries the 512 base64 characters as text, and a TLS flight as raw bytes that need
    /// not be UTF-8 (a ClientHello starts 0x16 0x03 0x01, then handshake type 1).
    #[test]
    fn psk_bufs_are_the_bytes_the_definitions_give() {
        let b64 = "QUJD".repeat(128);
        let mut d = DeviceAuth::default();
        let mut dev = Dev::tls(Engine::Fake, false);
        let (_, hello) = HostAuth::start(5, "k", ASK);
        d.on_handshake(SessionHandShake::decode(&hello.payload).unwrap(), &mut dev)
            .unwrap();
        let key = SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth_type::PUBLICKEY,
            buf: b"myhost\x0cPEM".to_vec(),
            ..Default::default()
        };
        let a = d.on_handshake(key, &mut dev).unwrap();
        let sent = SessionHandShake::decode(&a[0].packet().unwrap().payload).unwrap();
        assert_eq!(sent.auth_type, 6);
        assert_eq!(sent.buf, hex::encode([DEV_KEY; 32]).as_bytes());

        let m = SessionHandShake {
            buf: b64.clone().into_bytes(),
            version: VERSION.into(),
            ..psk_msg(&[])
        };
        let mut want = vec![0x0a, 8];
        want.extend_from_slice(b"OHOS HDC");
        want.extend_from_slice(&[0x10, 6, 0x18, 0, 0x22, 0, 0x2a, 0x80, 0x04]);
        want.extend_from_slice(b64.as_bytes());
        want.extend_from_slice(&[0x32, 11]);
        want.extend_from_slice(b"Ver: 3.2.0f");
        assert_eq!(m.encode(), want);

        let flight = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xfe, 0x80];
        let m = psk_msg(&flight);
        let e = m.encode();
        assert_eq!(
            &e[e.len() - 13..e.len() - 2],
            &[
                0x2a, 9, 0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xfe, 0x80
            ]
        );
        assert_eq!(SessionHandShake::decode(&e).unwrap().buf, flight);
    }

    #[test]
    fn out_of_order_and_foreign_messages_are_errors() {
        let mut d = DeviceAuth::default();
        let mut dev = Dev::plain(false, KeyVerdict::Known, "");
        let sig = SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth_type::SIGNATURE,
            ..Default::default()
        };
        assert_eq!(
            d.on_handshake(sig, &mut dev).map(|_| ()),
            Err(AuthError::Unexpected(auth_type::SIGNATURE))
        );
        // A TLS flight before the device offered TLS.
        assert_eq!(
            d.on_handshake(psk_msg(b"CH"), &mut dev).map(|_| ()),
            Err(AuthError::Unexpected(auth_type::SSL_TLS_PSK))
        );
        let other = SessionHandShake {
            banner: "SSH-2.0".into(),
            ..Default::default()
        };
        assert!(matches!(
            d.on_handshake(other, &mut dev),
            Err(AuthError::Banner(_))
        ));
    }

    /// The host's first packet, byte for byte as OpenHarmony's serializer lays out a
    /// SessionHandShake (field keys 0x0a, 0x10, 0x18, 0x22, 0x2a, 0x32).
    #[test]
    fn the_hosts_first_message_bytes() {
        let (_, o) = HostAuth::start(0x1234, "k", &[]);
        let mut want = vec![0x0a, 8];
        want.extend_from_slice(b"OHOS HDC");
        want.extend_from_slice(&[0x10, 0, 0x18, 0xb4, 0x24, 0x22, 1, b'k', 0x2a, 65]);
        want.extend_from_slice(b"authtype        1               1");
        want.extend_from_slice(b"supportfeatures 0               ");
        want.extend_from_slice(&[0x32, 11]);
        want.extend_from_slice(b"Ver: 3.2.0f");
        assert_eq!(o.payload, want);
    }
}
