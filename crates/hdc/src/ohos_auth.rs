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

use crate::ohos::{HANDSHAKE_BANNER, SessionHandShake};
use std::collections::BTreeMap;

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
    /// A wrong signature.
    pub const AUTH_FAILED: &str = "[E000010]:Auth failed, cannt login the device.";
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
}

/// Appends one TLV record: the tag and the value's length in decimal, each left-justified
/// and space-padded to 16 bytes, then the value.
pub fn tlv_append(out: &mut String, tag: &str, value: &str) {
    out.push_str(&format!("{tag:<16}{:<16}{value}", value.len()));
}

/// Reads TLV records (at most [`MAX_TLV_RECORDS`]); a later duplicate tag wins.
pub fn tlv_parse(buf: &str) -> Result<BTreeMap<String, String>, AuthError> {
    let b = buf.as_bytes();
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
    /// Why this session may not go on at all (a device that requires encryption, which this
    /// session lacks), checked before anything else.
    fn refuse_session(&self) -> Option<String> {
        None
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
    /// The features this device offers.
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
    },
    /// Refused with this message (already sent).
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DevState {
    Start,
    WaitKey,
    WaitSignature {
        pem: String,
        host: String,
        token: String,
    },
    Done,
}

/// The device's side of the handshake.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    state: DevState,
    /// The host's session id.
    pub session_id: u32,
    /// The connect key the host uses for this device.
    pub connect_key: String,
    host_version: String,
    host_features: Vec<String>,
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
    fn reply(&self, auth: u8, buf: String) -> SessionHandShake {
        SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth,
            session_id: 0,
            connect_key: String::new(),
            buf,
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
            tlv_append(&mut b, tag::SUPPORT_FEATURES, &p.features().join(","));
        }
        b
    }

    fn accept(&mut self, p: &dyn DevicePolicy, key: Option<String>, host: String) -> Vec<Out> {
        self.state = DevState::Done;
        self.outcome = DeviceOutcome::Accepted {
            host_key: key,
            host_name: host,
            features: self.host_features.clone(),
        };
        vec![
            handshake_out(&self.reply(auth_type::OK, self.ok_buf(p, None))),
            Out {
                command: CMD_KERNEL_CHANNEL_CLOSE,
                payload: vec![1],
            },
        ]
    }

    fn refuse(&mut self, p: &dyn DevicePolicy, why: &str) -> Vec<Out> {
        self.state = DevState::Done;
        self.outcome = DeviceOutcome::Refused(why.to_string());
        let mut echo = vec![0u8];
        echo.extend_from_slice(why.as_bytes());
        vec![
            handshake_out(&self.reply(auth_type::OK, self.ok_buf(p, Some(why)))),
            Out {
                command: CMD_KERNEL_CHANNEL_CLOSE,
                payload: vec![1],
            },
            Out {
                command: CMD_KERNEL_ECHO,
                payload: echo,
            },
        ]
    }

    /// Takes one handshake message from the host; returns what to send.
    pub fn on_handshake(
        &mut self,
        h: SessionHandShake,
        p: &mut dyn DevicePolicy,
    ) -> Result<Vec<Out>, AuthError> {
        if h.banner != HANDSHAKE_BANNER {
            return Err(AuthError::Banner(h.banner.chars().take(16).collect()));
        }
        match (&self.state, h.auth_type) {
            (DevState::Start, auth_type::NONE) => {
                self.session_id = h.session_id;
                self.connect_key = h.connect_key.clone();
                self.host_version = h.version.clone();
                let tlv = tlv_parse(&h.buf).unwrap_or_default();
                self.host_features = features(&tlv);
                if let Some(why) = p.refuse_session() {
                    return Ok(self.refuse(&*p, &why));
                }
                if p.bypass() {
                    return Ok(self.accept(&*p, None, String::new()));
                }
                if h.version.as_str() < MIN_HOST_VERSION {
                    return Ok(self.refuse(&*p, msg::VERSION_TOO_LOW));
                }
                self.state = DevState::WaitKey;
                let mut b = String::new();
                tlv_append(&mut b, tag::AUTHTYPE, AUTHTYPE_RSA_3072_SHA512);
                Ok(vec![handshake_out(&self.reply(auth_type::PUBLICKEY, b))])
            }
            (DevState::WaitKey, auth_type::PUBLICKEY) => {
                let (host, pem) = h
                    .buf
                    .split_once(HOST_PUBKEY_SEPARATOR)
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .unwrap_or_else(|| (String::new(), h.buf.clone()));
                match p.verdict(&pem, &host) {
                    KeyVerdict::Known => {
                        let token = p.token();
                        let out = handshake_out(&self.reply(auth_type::SIGNATURE, token.clone()));
                        self.state = DevState::WaitSignature { pem, host, token };
                        Ok(vec![out])
                    }
                    KeyVerdict::Unknown => Ok(self.refuse(&*p, msg::UNAUTHORIZED)),
                    KeyVerdict::Denied => Ok(self.refuse(&*p, msg::DENIED)),
                }
            }
            (DevState::WaitSignature { pem, host, token }, auth_type::SIGNATURE) => {
                if p.verify(pem, token.as_bytes(), &h.buf) {
                    let (pem, host) = (pem.clone(), host.clone());
                    Ok(self.accept(&*p, Some(pem), host))
                } else {
                    Ok(self.refuse(&*p, msg::AUTH_FAILED))
                }
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
    },
    /// The device refused (its message), e.g. an unknown key.
    Unauthorized(String),
}

/// The host's side of the handshake.
#[derive(Debug, Clone)]
pub struct HostAuth {
    hello: SessionHandShake,
    outcome: HostOutcome,
}

impl HostAuth {
    /// The first message: AUTH_NONE with the session id, the device's connect key and our
    /// features.
    pub fn start(session_id: u32, connect_key: &str, features: &[&str]) -> (HostAuth, Out) {
        let mut buf = String::new();
        tlv_append(&mut buf, tag::AUTHTYPE, AUTHTYPE_RSA_3072_SHA512);
        tlv_append(&mut buf, tag::SUPPORT_FEATURES, &features.join(","));
        let hello = SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth_type::NONE,
            session_id,
            connect_key: connect_key.into(),
            buf,
            version: VERSION.into(),
        };
        let out = handshake_out(&hello);
        (
            HostAuth {
                hello,
                outcome: HostOutcome::Pending,
            },
            out,
        )
    }

    /// How it ended (or Pending).
    pub fn outcome(&self) -> &HostOutcome {
        &self.outcome
    }

    /// Takes one handshake message from the device; returns what to send.
    pub fn on_handshake(
        &mut self,
        h: SessionHandShake,
        p: &dyn HostPolicy,
    ) -> Result<Vec<Out>, AuthError> {
        if h.banner != HANDSHAKE_BANNER {
            return Err(AuthError::Banner(h.banner.chars().take(16).collect()));
        }
        if self.outcome != HostOutcome::Pending {
            return Err(AuthError::Unexpected(h.auth_type));
        }
        // The host echoes the device's struct with only authType and buf changed.
        let mut reply = h.clone();
        match h.auth_type {
            auth_type::PUBLICKEY => {
                reply.buf = p.public_key_message();
                Ok(vec![handshake_out(&reply)])
            }
            auth_type::SIGNATURE => {
                reply.buf = p.sign(h.buf.as_bytes());
                Ok(vec![handshake_out(&reply)])
            }
            auth_type::OK => {
                let tlv = tlv_parse(&h.buf)?;
                let status = tlv.get(tag::DAEMON_AUTH_STATUS).map(String::as_str);
                self.outcome = if status == Some(AUTH_SUCCESS) {
                    HostOutcome::Connected {
                        device_name: tlv.get(tag::DEVNAME).cloned().unwrap_or_default(),
                        features: features(&tlv),
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
        assert!(tlv_parse(&format!("{:<16}{:<16}ab", "t", "x")).is_err());
        assert!(tlv_parse(&format!("{:<16}{:<16}ab", "t", "99")).is_err());
        let many: String = (0..=MAX_TLV_RECORDS)
            .map(|i| {
                let mut s = String::new();
                tlv_append(&mut s, &format!("t{i}"), "");
                s
            })
            .collect();
        assert!(tlv_parse(&many).is_err());
    }

    struct Dev {
        bypass: bool,
        verdict: KeyVerdict,
        good_sig: String,
    }
    impl DevicePolicy for Dev {
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
    struct Host;
    impl HostPolicy for Host {
        fn public_key_message(&self) -> String {
            "myhost\x0cPEM".into()
        }
        fn sign(&self, token: &[u8]) -> String {
            format!("sig:{}", String::from_utf8_lossy(token))
        }
    }

    /// Runs both sides until neither has a handshake to send.
    fn run(dev: &mut Dev) -> (HostOutcome, DeviceOutcome, Vec<u32>) {
        let (mut h, first) = HostAuth::start(0x1234, "127.0.0.1:8711", &["heartbeat"]);
        let mut d = DeviceAuth::default();
        let mut to_dev = vec![first];
        let mut device_cmds = Vec::new();
        for _ in 0..8 {
            let mut to_host = Vec::new();
            for o in to_dev.drain(..) {
                let hs = SessionHandShake::decode(&o.payload).unwrap();
                to_host.extend(d.on_handshake(hs, dev).unwrap());
            }
            for o in to_host {
                device_cmds.push(o.command);
                if o.command == CMD_KERNEL_HANDSHAKE {
                    let hs = SessionHandShake::decode(&o.payload).unwrap();
                    assert_eq!((hs.session_id, hs.connect_key.as_str()), (0, ""));
                    to_dev.extend(h.on_handshake(hs, &Host).unwrap());
                }
            }
            if to_dev.is_empty() {
                break;
            }
        }
        assert_eq!(d.session_id, 0x1234);
        assert_eq!(d.connect_key, "127.0.0.1:8711");
        (h.outcome().clone(), d.outcome().clone(), device_cmds)
    }

    #[test]
    fn a_known_key_that_signs_the_token_is_in() {
        let mut dev = Dev {
            bypass: false,
            verdict: KeyVerdict::Known,
            good_sig: "sig:abcdefghijklmnopqrst".into(),
        };
        let (h, d, cmds) = run(&mut dev);
        assert_eq!(
            h,
            HostOutcome::Connected {
                device_name: "dev1".into(),
                features: vec!["heartbeat".into()]
            }
        );
        assert_eq!(
            d,
            DeviceOutcome::Accepted {
                host_key: Some("PEM".into()),
                host_name: "myhost".into(),
                features: vec!["heartbeat".into()]
            }
        );
        // PUBLICKEY, SIGNATURE, OK, then the channel close.
        assert_eq!(cmds, vec![1, 1, 1, 2]);
    }

    /// As hdcd's AddFeatureTagToEmgmsg: `"1200"` = `"enable"` before supportfeatures, so
    /// OpenHarmony's hosts send `hdc shell -b`.
    #[test]
    fn auth_ok_offers_shell_options() {
        let mut dev = Dev {
            bypass: true,
            verdict: KeyVerdict::Unknown,
            good_sig: String::new(),
        };
        let (_, first) = HostAuth::start(1, "127.0.0.1:8711", &["heartbeat"]);
        let mut d = DeviceAuth::default();
        let hs = SessionHandShake::decode(&first.payload).unwrap();
        let outs = d.on_handshake(hs, &mut dev).unwrap();
        let ok = SessionHandShake::decode(&outs[0].payload).unwrap();
        let tlv = tlv_parse(&ok.buf).unwrap();
        assert_eq!(tlv.get(tag::SHELL_OPT).map(String::as_str), Some("enable"));
        let (a, b) = (
            ok.buf.find("1200 ").unwrap(),
            ok.buf.find("supportfeatures").unwrap(),
        );
        assert!(a < b, "{}", ok.buf);
    }

    #[test]
    fn bypass_answers_ok_at_once() {
        let mut dev = Dev {
            bypass: true,
            verdict: KeyVerdict::Unknown,
            good_sig: String::new(),
        };
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
            let mut dev = Dev {
                bypass: false,
                verdict,
                good_sig: sig.into(),
            };
            let (h, d, cmds) = run(&mut dev);
            assert_eq!(h, HostOutcome::Unauthorized(want.into()));
            assert_eq!(d, DeviceOutcome::Refused(want.into()));
            assert_eq!(cmds.last(), Some(&CMD_KERNEL_ECHO));
        }
    }

    #[test]
    fn out_of_order_and_foreign_messages_are_errors() {
        let mut d = DeviceAuth::default();
        let mut dev = Dev {
            bypass: false,
            verdict: KeyVerdict::Known,
            good_sig: String::new(),
        };
        let sig = SessionHandShake {
            banner: HANDSHAKE_BANNER.into(),
            auth_type: auth_type::SIGNATURE,
            ..Default::default()
        };
        assert_eq!(
            d.on_handshake(sig, &mut dev),
            Err(AuthError::Unexpected(auth_type::SIGNATURE))
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
