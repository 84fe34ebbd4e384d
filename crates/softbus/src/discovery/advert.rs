//! What a device says about itself on the network, and its DNS-SD TXT form. Pure: no I/O.
//!
//! TXT keys (RFC 6763 §6; keys are case-insensitive, the first copy of a key wins):
//!
//! | key    | value                                   | example                 |
//! |--------|-----------------------------------------|-------------------------|
//! | `v`    | protocol version, first so it can be checked first | `2`          |
//! | `type` | DmDeviceType id in hex, `:`, type name  | `0x0E:phone`            |
//! | `name` | device name, UTF-8, at most 127 bytes; only if the owner set one | `Living room` |
//! | `caps` | DSoftBus capability names, `,`-separated; bits without a name as numbers | `dvKit,osdCapability` |
//! | `port` | the QUIC port (also the SRV port)       | `47000`                 |
//! | `id`   | the rotating [`AdvertId`] of this epoch, hex | 32 hex digits      |
//!
//! OpenHarmony's CoAP discovery sends the raw udid in clear. Version 1 of this advert sent a
//! stable hash of it instead, which still let anyone on a LAN follow a device across networks
//! and restarts. Version 2 sends an id that changes every [`ADVERT_EPOCH`], derived from a
//! secret only bound devices hold (the device's [`AdvertKey`]), in the manner of Bluetooth's
//! resolvable private addresses: a bound peer recognises it at once ([`Resolver`]); anyone else
//! sees a new, unlinkable value each epoch. The instance and host names derive from the id,
//! so they rotate with it. See docs/DESIGN.md, "Adverts".

use hmac::{Hmac, Mac};
use oxh_devauth::AdvertKey;
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

/// The DNS-SD service type every oxharmony device advertises and browses.
pub const SERVICE_TYPE: &str = "_oxh._udp.local.";
/// The TXT `v` value this code writes and accepts (2: rotating `id` in place of `uh`).
pub const PROTOCOL_VERSION: u32 = 2;
/// How long one advert id is used before the next replaces it.
pub const ADVERT_EPOCH: Duration = Duration::from_secs(15 * 60);
/// Epochs either side of a resolver's own whose ids it still accepts, for clock skew.
pub const EPOCH_SKEW: u64 = 1;
/// HMAC input label of advert ids, so that the key is never used for anything else.
const ID_LABEL: &[u8] = b"oxh-advert-id-v2\0";
/// Longest device name kept, in bytes: OpenHarmony's DEVICE_NAME_BUF_LEN (128) less its NUL.
pub const MAX_NAME_BYTES: usize = 127;
/// Longest device type name accepted from a peer.
pub const MAX_TYPE_NAME_BYTES: usize = 16;
/// A DNS label, and so a DNS-SD instance name, holds at most 63 bytes (RFC 6763 §4.1.1).
pub const MAX_INSTANCE_BYTES: usize = 63;

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

/// A device's advert id for one epoch: the first 16 bytes of
/// HMAC-SHA256(advert key, "oxh-advert-id-v2\0" ‖ epoch as u64 big-endian).
///
/// Without the key, ids of different epochs (or devices) are unrelated random values; with
/// it, a bound peer computes the ids it expects and looks them up ([`Resolver`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdvertId(pub [u8; 16]);

impl AdvertId {
    /// The id of the device holding `key` in epoch `epoch`.
    pub fn derive(key: &AdvertKey, epoch: u64) -> Self {
        // HMAC takes a key of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("any key length");
        m.update(ID_LABEL);
        m.update(&epoch.to_be_bytes());
        let d = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        AdvertId(out)
    }
    /// Lower-case hex, as sent in TXT `id`.
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
        Some(AdvertId(out))
    }
}

impl fmt::Display for AdvertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for AdvertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdvertId({})", self.to_hex())
    }
}

/// Numbers time in epochs of a fixed length since the Unix epoch. Pure: the time is passed
/// in, so tests run on virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    secs: u64,
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs::new(ADVERT_EPOCH)
    }
}

impl Epochs {
    /// Epochs of `len` (whole seconds, at least one). Devices must agree on it to recognise
    /// each other: everything but tests uses [`ADVERT_EPOCH`].
    pub fn new(len: Duration) -> Self {
        Epochs {
            secs: len.as_secs().max(1),
        }
    }
    /// The epoch length.
    pub fn len(&self) -> Duration {
        Duration::from_secs(self.secs)
    }
    /// The epoch `t` falls in (0 for times before 1970).
    pub fn at(&self, t: SystemTime) -> u64 {
        let s = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        s / self.secs
    }
    /// How long after `t` the next epoch begins.
    pub fn until_next(&self, t: SystemTime) -> Duration {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let next = Duration::from_secs((since.as_secs() / self.secs + 1) * self.secs);
        next.saturating_sub(since)
    }
}

/// Recognises bound devices' advert ids: holds each trusted device's ids for one epoch and
/// the [`EPOCH_SKEW`] epochs either side, so that a lookup is one hash probe however many
/// adverts arrive (a flood of forged ones costs no HMACs).
#[derive(Debug, Clone)]
pub struct Resolver<T> {
    epoch: u64,
    ids: HashMap<AdvertId, T>,
}

impl<T: Clone> Resolver<T> {
    /// The ids of `devices` (each with its advert key) around `epoch`.
    pub fn new(epoch: u64, devices: impl IntoIterator<Item = (T, AdvertKey)>) -> Self {
        let mut ids = HashMap::new();
        for (dev, key) in devices {
            let first = epoch.saturating_sub(EPOCH_SKEW);
            for e in first..=epoch.saturating_add(EPOCH_SKEW) {
                ids.insert(AdvertId::derive(&key, e), dev.clone());
            }
        }
        Resolver { epoch, ids }
    }
    /// The epoch it was built for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The bound device that advertises `id`, if any.
    pub fn resolve(&self, id: &AdvertId) -> Option<&T> {
        self.ids.get(id)
    }
}

/// What one device advertises: everything in its TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// This epoch's rotating id; what a device is known by until the next epoch.
    pub id: AdvertId,
    /// Device name as the owner set it (cleaned: no control characters, at most 127 bytes);
    /// `None` when no name was set, and then it is left out of the TXT record.
    pub name: Option<String>,
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
    /// The advert with id `id` (see [`AdvertId::derive`]) and the name the owner set, if any.
    pub fn new(
        id: AdvertId,
        name: Option<&str>,
        device_type: oxh_devauth::DeviceType,
        caps: Capabilities,
        port: u16,
    ) -> Self {
        Advert {
            id,
            name: name.and_then(clean_name),
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
        let name = self.name.as_deref().and_then(clean_name);
        vec![
            ("v".into(), PROTOCOL_VERSION.to_string()),
            (
                "type".into(),
                format!("0x{:02X}:{type_name}", self.device_type_id),
            ),
        ]
        .into_iter()
        .chain(name.map(|n| ("name".to_string(), n)))
        .chain([
            ("caps".into(), self.caps.encode()),
            ("port".into(), self.port.to_string()),
            ("id".into(), self.id.to_hex()),
        ])
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

        // Optional: a device whose owner set no name sends none (an empty one reads the same).
        let name = map
            .get("name")
            .copied()
            .flatten()
            .and_then(|raw| clean_name(&String::from_utf8_lossy(raw)));
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
        let id = AdvertId::from_hex(get_str("id")?).ok_or(TxtError::Invalid {
            key: "id",
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
            id,
            name,
            device_type_id,
            device_type_name: type_name.to_string(),
            caps,
            port,
            hdc,
        })
    }

    /// The DNS-SD instance name, e.g. `oxharmony pc [3fa2c1d0]`: the device type (so people
    /// browsing with avahi-browse see what it is) and the start of the rotating id (so that
    /// devices differ, and the name rotates with the id). It leaves out the device name on
    /// purpose: a rename then keeps the instance, so peers see one update rather than a
    /// goodbye racing a new announcement. The name is in TXT.
    pub fn instance_name(&self) -> String {
        let type_name = if valid_type_name(&self.device_type_name) {
            self.device_type_name.as_str()
        } else {
            "device"
        };
        format!("oxharmony {type_name} [{}]", &self.id.to_hex()[..8])
    }

    /// The mDNS host name for our address records: from the rotating id, so neither the
    /// machine's host name nor anything stable; a valid DNS label.
    pub fn host_name(&self) -> String {
        format!("oxh-{}.local.", &self.id.to_hex()[..12])
    }
}

/// Removes control characters, trims and limits to [`MAX_NAME_BYTES`]; `None` if nothing is
/// left.
pub fn clean_name(name: &str) -> Option<String> {
    let mut s: String = name.chars().filter(|c| !c.is_control()).collect();
    truncate_utf8(&mut s, MAX_NAME_BYTES);
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
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

    const KEY: AdvertKey = AdvertKey([0x42; 32]);
    const OTHER: AdvertKey = AdvertKey([0x17; 32]);
    /// An epoch of 15 minutes somewhere in 2026.
    const E: u64 = 1_978_000;

    fn advert_at(key: &AdvertKey, epoch: u64, name: Option<&str>) -> Advert {
        Advert::new(
            AdvertId::derive(key, epoch),
            name,
            DeviceType::Tv,
            Capabilities::DVKIT | Capabilities::OSD,
            47000,
        )
    }

    fn sample() -> Advert {
        advert_at(&KEY, E, Some("Living room"))
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn decode(txt: &[(String, String)]) -> Result<Advert, TxtError> {
        Advert::from_txt(txt.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))))
    }

    #[test]
    fn round_trip() {
        let a = sample();
        let txt = a.to_txt();
        assert_eq!(txt[0], ("v".to_string(), "2".to_string()));
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
        assert_eq!(txt["v"], "2");
        assert_eq!(txt["id"], AdvertId::derive(&KEY, E).to_hex());
        assert!(!txt.contains_key("uh"), "no stable udid hash any more");
    }

    #[test]
    fn the_id_is_the_documented_hmac() {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&KEY.0).unwrap();
        m.update(b"oxh-advert-id-v2\0");
        m.update(&E.to_be_bytes());
        let d = m.finalize().into_bytes();
        assert_eq!(AdvertId::derive(&KEY, E).0, d[..16]);
    }

    /// Two epochs of one device: everything that identifies it differs, and what stays (version,
    /// type, capabilities, port) is what any device of that type and port would send.
    #[test]
    fn two_epochs_of_one_device_share_nothing_identifying() {
        let (a, b) = (advert_at(&KEY, E, None), advert_at(&KEY, E + 1, None));
        assert_ne!(a.id, b.id);
        assert_ne!(a.instance_name(), b.instance_name());
        assert_ne!(a.host_name(), b.host_name());
        let (ta, tb) = (a.to_txt(), b.to_txt());
        let differ: Vec<&str> = ta
            .iter()
            .zip(&tb)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| x.0.as_str())
            .collect();
        assert_eq!(differ, ["id"]);
        let hex_a = a.id.to_hex();
        let hex_b = b.id.to_hex();
        assert!(
            (0..=hex_a.len() - 6).all(|i| !hex_b.contains(&hex_a[i..i + 6])),
            "ids {hex_a} and {hex_b} share a run of 6 hex digits"
        );
        let stranger = advert_at(&OTHER, E, None);
        let rest = |txt: &[(String, String)]| -> Vec<(String, String)> {
            txt.iter().filter(|(k, _)| k != "id").cloned().collect()
        };
        assert_eq!(rest(&ta), rest(&stranger.to_txt()));
        // Nothing of the key appears either.
        let all: String = ta.iter().map(|(k, v)| format!("{k}={v};")).collect();
        assert!(!all.contains(&hex::encode(KEY.0)[..8]));
    }

    #[test]
    fn a_bound_peer_resolves_every_epoch_and_a_skew_of_one() {
        for now in [E, E + 1] {
            let r = Resolver::new(now, [("tv", KEY), ("pc", OTHER)]);
            assert_eq!(r.epoch(), now);
            for e in [now - 1, now, now + 1] {
                assert_eq!(r.resolve(&AdvertId::derive(&KEY, e)), Some(&"tv"), "{e}");
                assert_eq!(r.resolve(&AdvertId::derive(&OTHER, e)), Some(&"pc"), "{e}");
            }
            // Two epochs off is more than clock skew: an old (replayed) advert.
            assert_eq!(r.resolve(&AdvertId::derive(&KEY, now + 2)), None);
            assert_eq!(r.resolve(&AdvertId::derive(&KEY, now - 2)), None);
        }
        // Both epochs' adverts, through their TXT form, resolve to the device.
        let r = Resolver::new(E, [("tv", KEY)]);
        for a in [advert_at(&KEY, E, None), advert_at(&KEY, E + 1, None)] {
            let back = decode(&a.to_txt()).unwrap();
            assert_eq!(r.resolve(&back.id), Some(&"tv"));
        }
        // Epoch 0 has no earlier neighbour, and that is fine.
        let r = Resolver::new(0, [("tv", KEY)]);
        assert_eq!(r.resolve(&AdvertId::derive(&KEY, 0)), Some(&"tv"));
    }

    #[test]
    fn a_stranger_or_another_devices_key_resolves_nothing() {
        let stranger: Resolver<&str> = Resolver::new(E, []);
        let other = Resolver::new(E, [("pc", OTHER)]);
        for e in [E - 1, E, E + 1] {
            let id = AdvertId::derive(&KEY, e);
            assert_eq!(stranger.resolve(&id), None);
            assert_eq!(other.resolve(&id), None);
        }
    }

    #[test]
    fn epochs_on_virtual_time() {
        let ep = Epochs::default();
        assert_eq!(ep.len(), ADVERT_EPOCH);
        assert_eq!(ep.at(t(0)), 0);
        assert_eq!(ep.at(t(899)), 0);
        assert_eq!(ep.at(t(900)), 1);
        assert_eq!(ep.until_next(t(0)), Duration::from_secs(900));
        assert_eq!(ep.until_next(t(899)), Duration::from_secs(1));
        assert_eq!(
            ep.until_next(t(900) + Duration::from_millis(250)),
            Duration::from_millis(899_750)
        );
        let short = Epochs::new(Duration::from_millis(10));
        assert_eq!(short.len(), Duration::from_secs(1), "at least a second");
        assert_eq!(short.at(t(5)), 5);
        assert_eq!(
            Epochs::default().at(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            0
        );
    }

    #[test]
    fn without_a_name_set_none_is_sent() {
        let a = advert_at(&KEY, E, None);
        let txt = a.to_txt();
        assert!(txt.iter().all(|(k, _)| k != "name"), "{txt:?}");
        assert_eq!(decode(&txt).map(|a| a.name), Ok(None));
        // An empty or blank name is no name.
        assert_eq!(advert_at(&KEY, E, Some(" \n")).name, None);
        let mut blank = txt.clone();
        blank.push(("name".into(), "  ".into()));
        assert_eq!(decode(&blank).map(|a| a.name), Ok(None));
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
        assert_eq!(clean_name("  a\u{0}b\nc\t ").as_deref(), Some("abc"));
        assert_eq!(clean_name("\n\r"), None);
        let long = "é".repeat(100);
        let c = clean_name(&long).unwrap();
        assert!(c.len() <= MAX_NAME_BYTES && c.chars().all(|ch| ch == 'é'));
        let mut a = sample();
        a.name = Some("x".repeat(400));
        for (k, v) in a.to_txt() {
            assert!(k.len() + 1 + v.len() <= 255);
        }
    }

    #[test]
    fn instance_and_host_names_are_valid() {
        let mut a = sample();
        let inst = a.instance_name();
        assert_eq!(inst, format!("oxharmony tv [{}]", &a.id.to_hex()[..8]));
        a.name = Some("renamed".into());
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
        assert!(matches!(decode(&with("v", "3")), Err(TxtError::Version(_))));
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
            decode(&with("id", "abc")),
            Err(TxtError::Invalid { key: "id", .. })
        ));
        assert!(matches!(
            decode(&with("id", &"g".repeat(32))),
            Err(TxtError::Invalid { key: "id", .. })
        ));
        let no_id: Vec<_> = base.iter().filter(|(k, _)| k != "id").cloned().collect();
        assert_eq!(decode(&no_id), Err(TxtError::Missing("id")));
        // A version 1 advert (stable `uh`) is not read.
        let v1: Vec<_> = with("v", "1")
            .into_iter()
            .map(|(k, v)| if k == "id" { ("uh".into(), v) } else { (k, v) })
            .collect();
        assert!(matches!(decode(&v1), Err(TxtError::Version(_))));
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
        assert_eq!(
            decode(&txt).map(|a| a.name),
            Ok(Some("Living room".to_string()))
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_txt_never_panics(
            entries in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("v".to_string()), Just("type".to_string()), Just("name".to_string()),
                        Just("caps".to_string()), Just("port".to_string()), Just("id".to_string()),
                        "[ -~]{0,8}",
                    ],
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                ),
                0..12,
            )
        ) {
            let _ = Advert::from_txt(entries.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
        }

        /// What a resolver is fed comes from outside: random ids (forged adverts) never
        /// resolve, and real ones resolve only to their own device.
        #[test]
        fn forged_ids_never_resolve(
            forged in any::<[u8; 16]>(),
            seeds in proptest::collection::vec(any::<u8>(), 1..8),
            epoch in any::<u64>(),
        ) {
            let keys: Vec<(u8, AdvertKey)> = seeds.iter().map(|s| (*s, AdvertKey([*s; 32]))).collect();
            let r = Resolver::new(epoch, keys.clone());
            prop_assert_eq!(r.resolve(&AdvertId(forged)), None);
            for (s, k) in &keys {
                prop_assert_eq!(r.resolve(&AdvertId::derive(k, epoch)), Some(s));
            }
        }

        #[test]
        fn valid_fields_round_trip(
            name in "\\PC{0,60}",
            id in any::<u16>(),
            caps in any::<u32>(),
            port in 1u16..,
            rid in any::<[u8; 16]>(),
            hdc in proptest::option::of(1u16..),
        ) {
            let a = Advert {
                id: AdvertId(rid),
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
