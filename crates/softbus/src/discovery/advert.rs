//! What a device says about itself on the network, and its DNS-SD TXT form. Pure: no I/O.
//!
//! TXT keys (RFC 6763 §6; keys are case-insensitive, the first copy of a key wins):
//!
//! | key    | value                                   | example                 |
//! |--------|-----------------------------------------|-------------------------|
//! | `v`    | protocol version, first so it can be checked first | `1`          |
//! | `type` | DmDeviceType id in hex, `:`, type name  | `0x0E:phone`            |
//! | `name` | device name, UTF-8, at most 127 bytes   | `Living room`           |
//! | `caps` | DSoftBus capability names, `,`-separated; bits without a name as numbers | `dvKit,osdCapability` |
//! | `port` | the QUIC port (also the SRV port)       | `47000`                 |
//! | `uh`   | udid hash: 16 bytes of SHA-256 over a label and the udid, hex | 32 hex digits |
//!
//! OpenHarmony's CoAP discovery sends the raw udid in clear; we send only `uh`, which lets a
//! device that already knows a udid (a bound peer) recognise it, and tells others nothing they
//! could use to derive the udid or the public key behind it.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// The DNS-SD service type every oxharmony device advertises and browses.
pub const SERVICE_TYPE: &str = "_oxh._udp.local.";
/// The TXT `v` value this code writes and accepts.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest device name kept, in bytes: OpenHarmony's DEVICE_NAME_BUF_LEN (128) less its NUL.
pub const MAX_NAME_BYTES: usize = 127;
/// Longest device type name accepted from a peer.
pub const MAX_TYPE_NAME_BYTES: usize = 16;
/// A DNS label, and so a DNS-SD instance name, holds at most 63 bytes (RFC 6763 §4.1.1).
pub const MAX_INSTANCE_BYTES: usize = 63;
/// The name used when a device's name is empty after cleaning.
pub const DEFAULT_NAME: &str = "oxharmony device";

/// Why a TXT record could not be read as an [`Advert`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    /// A required key is absent (or present without `=value`).
    #[error("TXT record lacks {0:?}")]
    Missing(&'static str),
    /// The peer speaks another version of this protocol.
    #[error("unsupported discovery protocol version {0:?} (we speak {PROTOCOL_VERSION})")]
    Version(String),
    /// A value does not parse.
    #[error("TXT {key:?} is invalid: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// DSoftBus capability bits (`DataBitMap` / `g_capabilityMap` in communication_dsoftbus), so
/// that an OpenHarmony developer finds the names and bit numbers they know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// HICALL_CAPABILITY_BITMAP: MeeTime calls.
    pub const HICALL: Capabilities = Capabilities(1 << 0);
    /// PROFILE_CAPABILITY_BITMAP: smart-domain reverse video connection.
    pub const PROFILE: Capabilities = Capabilities(1 << 1);
    /// HOMEVISIONPIC_CAPABILITY_BITMAP: Vision gallery.
    pub const HOMEVISIONPIC: Capabilities = Capabilities(1 << 2);
    /// CASTPLUS_CAPABILITY_BITMAP: Cast+ projection.
    pub const CASTPLUS: Capabilities = Capabilities(1 << 3);
    /// AA_CAPABILITY_BITMAP: input method in Vision.
    pub const AA: Capabilities = Capabilities(1 << 4);
    /// DVKIT_CAPABILITY_BITMAP: device virtualisation kit.
    pub const DVKIT: Capabilities = Capabilities(1 << 5);
    /// DDMP_CAPABILITY_BITMAP: distributed middleware (what device manager publishes).
    pub const DDMP: Capabilities = Capabilities(1 << 6);
    /// OSD_CAPABILITY_BITMAP: OSD.
    pub const OSD: Capabilities = Capabilities(1 << 7);
    /// SHARE_CAPABILITY_BITMAP: share.
    pub const SHARE: Capabilities = Capabilities(1 << 8);
    /// APPROACH_CAPABILITY_BITMAP: approach.
    pub const APPROACH: Capabilities = Capabilities(1 << 9);
    /// VLINK_CAPABILITY_BITMAP: virtual link.
    pub const VLINK: Capabilities = Capabilities(1 << 10);
    /// TOUCH_CAPABILITY_BITMAP: touch.
    pub const TOUCH: Capabilities = Capabilities(1 << 11);

    /// Bit number and name of every known capability, as in `g_capabilityMap`.
    pub const NAMES: [(u32, &'static str); 12] = [
        (0, "hicall"),
        (1, "profile"),
        (2, "homevisionPic"),
        (3, "castPlus"),
        (4, "aaCapability"),
        (5, "dvKit"),
        (6, "ddmpCapability"),
        (7, "osdCapability"),
        (8, "share"),
        (9, "approach"),
        (10, "virtualLink"),
        (11, "touch"),
    ];

    /// No capabilities.
    pub const fn empty() -> Self {
        Capabilities(0)
    }
    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
    /// The bit for an OpenHarmony capability name (case-sensitive, as DSoftBus compares).
    pub fn from_name(name: &str) -> Option<Capabilities> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(bit, _)| Capabilities(1 << bit))
    }
    fn encode(self) -> String {
        let mut parts = Vec::new();
        for bit in 0..32u32 {
            if self.0 & (1 << bit) == 0 {
                continue;
            }
            match Self::NAMES.iter().find(|(b, _)| *b == bit) {
                Some((_, name)) => parts.push((*name).to_string()),
                None => parts.push(bit.to_string()),
            }
        }
        parts.join(",")
    }
    /// Reads a `caps` value. Names we do not know (newer capabilities) are skipped, so that a
    /// newer peer stays visible; at most 64 items are looked at.
    fn decode(s: &str) -> Capabilities {
        let mut bits = 0u32;
        for item in s.split(',').take(64).map(str::trim) {
            if let Some(c) = Self::from_name(item) {
                bits |= c.0;
            } else if let Ok(bit) = item.parse::<u32>()
                && bit < 32
            {
                bits |= 1 << bit;
            }
        }
        Capabilities(bits)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Self) -> Self {
        Capabilities(self.0 | rhs.0)
    }
}

/// A udid's public stand-in: 16 bytes of SHA-256("oxh-softbus-udid-v1\0" ‖ udid).
///
/// It identifies a device across adverts (and lets a bound peer match it against the udid it
/// pinned) without revealing the udid.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdidHash(pub [u8; 16]);

impl UdidHash {
    /// The hash of `udid`.
    pub fn of(udid: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"oxh-softbus-udid-v1\0");
        h.update(udid.as_bytes());
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        UdidHash(out)
    }
    /// Lower-case hex, as sent in TXT `uh`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(UdidHash(out))
    }
}

impl fmt::Display for UdidHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for UdidHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UdidHash({})", self.to_hex())
    }
}

/// What one device advertises: everything in its TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Hash of the device's udid; the key a peer is known by.
    pub uh: UdidHash,
    /// Device name as the user set it (cleaned: no control characters, at most 127 bytes).
    pub name: String,
    /// DmDeviceType id, e.g. 0x0E for a phone.
    pub device_type_id: u16,
    /// Device type name, e.g. `phone`: lower-case ASCII letters, digits, `-` and `_`.
    pub device_type_name: String,
    /// DSoftBus capability bits.
    pub caps: Capabilities,
    /// The QUIC port that sessions connect to.
    pub port: u16,
    /// The device connector's TCP port, when hdc listens (`hdc discover` shows it).
    pub hdc: Option<u16>,
}

impl Advert {
    /// The advert for a device with this udid; the udid itself is hashed, not kept.
    pub fn new(
        udid: &str,
        name: &str,
        device_type: oxh_devauth::DeviceType,
        caps: Capabilities,
        port: u16,
    ) -> Self {
        Advert {
            uh: UdidHash::of(udid),
            name: clean_name(name),
            device_type_id: device_type.type_id(),
            device_type_name: device_type.as_str().to_string(),
            caps,
            port,
            hdc: None,
        }
    }

    /// The device type, if it is one this build knows.
    pub fn device_type(&self) -> Option<oxh_devauth::DeviceType> {
        self.device_type_name.parse().ok()
    }

    /// The TXT record, `v` first. Every entry fits the 255-byte TXT string limit.
    pub fn to_txt(&self) -> Vec<(String, String)> {
        let mut type_name = self.device_type_name.clone();
        if !valid_type_name(&type_name) {
            type_name = "unknown".to_string();
        }
        vec![
            ("v".into(), PROTOCOL_VERSION.to_string()),
            (
                "type".into(),
                format!("0x{:02X}:{type_name}", self.device_type_id),
            ),
            ("name".into(), clean_name(&self.name)),
            ("caps".into(), self.caps.encode()),
            ("port".into(), self.port.to_string()),
            ("uh".into(), self.uh.to_hex()),
        ]
        .into_iter()
        .chain(self.hdc.map(|p| ("hdc".to_string(), p.to_string())))
        .collect()
    }

    /// Reads a TXT record: `(key, value)` pairs as received, `None` for a key without `=`.
    /// Unknown keys are ignored so that later versions can add some.
    pub fn from_txt<'a, I>(entries: I) -> Result<Advert, TxtError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let mut map: BTreeMap<String, Option<&[u8]>> = BTreeMap::new();
        for (k, v) in entries.into_iter().take(256) {
            map.entry(k.to_ascii_lowercase()).or_insert(v);
        }
        let get = |key: &'static str| -> Result<&[u8], TxtError> {
            map.get(key)
                .copied()
                .flatten()
                .ok_or(TxtError::Missing(key))
        };
        let get_str = |key: &'static str| -> Result<&str, TxtError> {
            std::str::from_utf8(get(key)?).map_err(|_| TxtError::Invalid {
                key,
                reason: "not UTF-8",
            })
        };

        let v = String::from_utf8_lossy(get("v")?);
        if v.trim().parse::<u32>().ok() != Some(PROTOCOL_VERSION) {
            return Err(TxtError::Version(v.chars().take(16).collect()));
        }

        let ty = get_str("type")?;
        let (id, type_name) = ty.split_once(':').ok_or(TxtError::Invalid {
            key: "type",
            reason: "expected ID:NAME",
        })?;
        let device_type_id = parse_type_id(id).ok_or(TxtError::Invalid {
            key: "type",
            reason: "id is not a 16-bit number",
        })?;
        if !valid_type_name(type_name) {
            return Err(TxtError::Invalid {
                key: "type",
                reason: "name must be 1-16 of a-z, 0-9, '-', '_'",
            });
        }

        let name = clean_name(&String::from_utf8_lossy(get("name")?));
        // A device without capabilities may leave `caps` empty or out.
        let caps = match map.get("caps").copied().flatten() {
            Some(raw) => Capabilities::decode(&String::from_utf8_lossy(raw)),
            None => Capabilities::empty(),
        };
        let port = get_str("port")?
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(TxtError::Invalid {
                key: "port",
                reason: "not a port number 1-65535",
            })?;
        let uh = UdidHash::from_hex(get_str("uh")?).ok_or(TxtError::Invalid {
            key: "uh",
            reason: "expected 32 hex digits",
        })?;
        // Optional: a bad value only means no hdc port is known.
        let hdc = map
            .get("hdc")
            .copied()
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|p| *p != 0);
        Ok(Advert {
            uh,
            name,
            device_type_id,
            device_type_name: type_name.to_string(),
            caps,
            port,
            hdc,
        })
    }

    /// The DNS-SD instance name, e.g. `oxharmony pc [3fa2c1d0]`: the device type (so people
    /// browsing with avahi-browse see what it is) and a short hash suffix (so that devices
    /// differ). It leaves out the device name on purpose: a rename then keeps the instance, so
    /// peers see one update rather than a goodbye racing a new announcement. The name is in TXT.
    pub fn instance_name(&self) -> String {
        let type_name = if valid_type_name(&self.device_type_name) {
            self.device_type_name.as_str()
        } else {
            "device"
        };
        format!("oxharmony {type_name} [{}]", &self.uh.to_hex()[..8])
    }

    /// The mDNS host name for our address records: no personal data, a valid DNS label.
    pub fn host_name(&self) -> String {
        format!("oxh-{}.local.", &self.uh.to_hex()[..12])
    }
}

/// Removes control characters, trims, limits to [`MAX_NAME_BYTES`] and substitutes
/// [`DEFAULT_NAME`] for an empty result.
pub fn clean_name(name: &str) -> String {
    let mut s: String = name.chars().filter(|c| !c.is_control()).collect();
    truncate_utf8(&mut s, MAX_NAME_BYTES);
    let s = s.trim();
    if s.is_empty() {
        DEFAULT_NAME.to_string()
    } else {
        s.to_string()
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

fn valid_type_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TYPE_NAME_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn parse_type_id(s: &str) -> Option<u16> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if !h.is_empty() && h.len() <= 4 => u16::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None if !s.is_empty() && s.len() <= 5 => s.parse().ok(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxh_devauth::DeviceType;
    use proptest::prelude::*;

    const UDID: &str = "9f2c4e0b7a1d3c5e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";

    fn sample() -> Advert {
        Advert::new(
            UDID,
            "Living room",
            DeviceType::Tv,
            Capabilities::DVKIT | Capabilities::OSD,
            47000,
        )
    }

    fn decode(txt: &[(String, String)]) -> Result<Advert, TxtError> {
        Advert::from_txt(txt.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))))
    }

    #[test]
    fn round_trip() {
        let a = sample();
        let txt = a.to_txt();
        assert_eq!(txt[0], ("v".to_string(), "1".to_string()));
        assert_eq!(decode(&txt), Ok(a.clone()));
        assert_eq!(a.device_type(), Some(DeviceType::Tv));
    }

    #[test]
    fn txt_values_are_as_documented() {
        let txt: BTreeMap<_, _> = sample().to_txt().into_iter().collect();
        assert_eq!(txt["type"], "0x9C:tv");
        assert_eq!(txt["name"], "Living room");
        assert_eq!(txt["caps"], "dvKit,osdCapability");
        assert_eq!(txt["port"], "47000");
        assert_eq!(txt["uh"].len(), 32);
    }

    #[test]
    fn udid_never_appears() {
        let a = sample();
        let all: String = a
            .to_txt()
            .iter()
            .map(|(k, v)| format!("{k}={v};"))
            .collect::<String>()
            + &a.instance_name()
            + &a.host_name();
        assert!(!all.contains(UDID));
        assert!(!all.contains(&UDID[..16]));
    }

    #[test]
    fn capability_bits_match_dsoftbus() {
        assert_eq!(Capabilities::from_name("hicall"), Some(Capabilities(1)));
        assert_eq!(
            Capabilities::from_name("ddmpCapability"),
            Some(Capabilities::DDMP)
        );
        assert_eq!(Capabilities::DDMP.0, 1 << 6);
        assert_eq!(
            Capabilities::from_name("approach").map(|c| c.0),
            Some(1 << 9)
        );
        assert_eq!(Capabilities::from_name("DVKIT"), None);
        let all = Capabilities(0b1111_1111_1111 | 1 << 20);
        assert_eq!(Capabilities::decode(&all.encode()), all);
        assert!(all.encode().ends_with(",touch,20"));
        assert_eq!(
            Capabilities::decode("dvKit, futureThing,99,,31"),
            Capabilities(Capabilities::DVKIT.0 | 1 << 31)
        );
    }

    #[test]
    fn names_are_cleaned_and_limited() {
        assert_eq!(clean_name("  a\u{0}b\nc\t "), "abc");
        assert_eq!(clean_name("\n\r"), DEFAULT_NAME);
        let long = "é".repeat(100);
        let c = clean_name(&long);
        assert!(c.len() <= MAX_NAME_BYTES && c.chars().all(|ch| ch == 'é'));
        let mut a = sample();
        a.name = "x".repeat(400);
        for (k, v) in a.to_txt() {
            assert!(k.len() + 1 + v.len() <= 255);
        }
    }

    #[test]
    fn instance_and_host_names_are_valid() {
        let mut a = sample();
        let inst = a.instance_name();
        assert_eq!(inst, format!("oxharmony tv [{}]", &a.uh.to_hex()[..8]));
        a.name = "renamed".into();
        assert_eq!(a.instance_name(), inst);
        a.device_type_name = "Not.Valid".into();
        assert!(a.instance_name().starts_with("oxharmony device ["));
        assert!(a.instance_name().len() <= MAX_INSTANCE_BYTES);
        let host = a.host_name();
        let label = host.strip_suffix(".local.").unwrap_or("");
        assert!(
            label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        );
    }

    #[test]
    fn decode_errors() {
        let base = sample().to_txt();
        let with = |key: &str, val: &str| {
            base.iter()
                .map(|(k, v)| {
                    if k == key {
                        (k.clone(), val.to_string())
                    } else {
                        (k.clone(), v.clone())
                    }
                })
                .collect::<Vec<_>>()
        };
        assert!(matches!(decode(&with("v", "2")), Err(TxtError::Version(_))));
        assert!(matches!(
            decode(&with("type", "phone")),
            Err(TxtError::Invalid { key: "type", .. })
        ));
        assert!(matches!(
            decode(&with("type", "0x10000:tv")),
            Err(TxtError::Invalid { key: "type", .. })
        ));
        assert!(matches!(
            decode(&with("type", "0x0E:Bad Name")),
            Err(TxtError::Invalid { key: "type", .. })
        ));
        assert_eq!(
            decode(&with("type", "14:phone")).map(|a| a.device_type_id),
            Ok(14)
        );
        assert!(matches!(
            decode(&with("port", "0")),
            Err(TxtError::Invalid { key: "port", .. })
        ));
        assert!(matches!(
            decode(&with("uh", "abc")),
            Err(TxtError::Invalid { key: "uh", .. })
        ));
        let no_uh: Vec<_> = base.iter().filter(|(k, _)| k != "uh").cloned().collect();
        assert_eq!(decode(&no_uh), Err(TxtError::Missing("uh")));
        // A key without a value counts as missing.
        let bare = Advert::from_txt(
            base.iter()
                .map(|(k, v)| (k.as_str(), (k != "port").then_some(v.as_bytes()))),
        );
        assert_eq!(bare, Err(TxtError::Missing("port")));
    }

    #[test]
    fn first_key_wins_and_keys_are_case_insensitive() {
        let mut txt = sample().to_txt();
        txt.push(("NAME".into(), "other".into()));
        txt.iter_mut()
            .for_each(|(k, _)| *k = k.to_ascii_uppercase());
        assert_eq!(decode(&txt).map(|a| a.name), Ok("Living room".to_string()));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_txt_never_panics(
            entries in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("v".to_string()), Just("type".to_string()), Just("name".to_string()),
                        Just("caps".to_string()), Just("port".to_string()), Just("uh".to_string()),
                        "[ -~]{0,8}",
                    ],
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                ),
                0..12,
            )
        ) {
            let _ = Advert::from_txt(entries.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
        }

        #[test]
        fn valid_fields_round_trip(
            name in "\\PC{0,60}",
            id in any::<u16>(),
            caps in any::<u32>(),
            port in 1u16..,
            uh in any::<[u8; 16]>(),
            hdc in proptest::option::of(1u16..),
        ) {
            let a = Advert {
                uh: UdidHash(uh),
                name: clean_name(&name),
                device_type_id: id,
                device_type_name: "pc".into(),
                caps: Capabilities(caps),
                port,
                hdc,
            };
            prop_assert_eq!(decode(&a.to_txt()), Ok(a));
        }
    }
}
