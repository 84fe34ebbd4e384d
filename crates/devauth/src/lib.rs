//! Device identity, PIN binding and the trusted-device store.
//!
//! A device is its Ed25519 key pair: created on first start, kept in the data dir (0600), and
//! never sent anywhere. Its `udid` is the hex SHA-256 of the public key, so that it is stable,
//! unique and verifiable against the key that pairing pins.
//!
//! - [`bind`]: the sans-IO PIN binding protocol (SPAKE2 + key confirmation, bound to the TLS
//!   session), run by an initiator and a target.
//! - [`pin`]: the target's PIN lifecycle: issue, expiry, failure counting and lockout.
//! - [`trust`]: the SQLite store of bound devices and the in-memory key set the TLS verifier
//!   consults on every handshake.

#[cfg(feature = "service")]
use ed25519_dalek::SigningKey;
#[cfg(feature = "service")]
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};
#[cfg(feature = "identity")]
use sha2::{Digest, Sha256};
#[cfg(feature = "service")]
use std::path::Path;
use std::path::PathBuf;

#[cfg(feature = "bind")]
pub mod bind;
#[cfg(feature = "bind")]
pub mod pin;
#[cfg(feature = "service")]
pub mod trust;
#[cfg(feature = "bind")]
pub use bind::{
    BindError, BindMsg, BoundPeer, Channel, DeviceRecord, Initiator, LocalDevice, Progress,
    ProtocolError, Step, Target, decode_bind_msg,
};
#[cfg(feature = "bind")]
pub use pin::{Pin, PinManager};
#[cfg(feature = "service")]
pub use trust::{StoreError, TrustSnapshot, TrustStore, TrustedDevice};

/// The udid of a public key: hex SHA-256, so any device can check a claimed udid against the
/// key that authenticated it.
#[cfg(feature = "identity")]
pub fn udid_of(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// The name a device shows when its owner has set none. Deliberately not the host name: the
/// name goes into the mDNS advert, and a host name often names the owner and is stable
/// across networks (see docs/DESIGN.md, "Adverts").
pub const DEFAULT_NAME: &str = "oxharmony device";

/// Length of an [`AdvertKey`].
pub const ADVERT_KEY_LEN: usize = 32;

/// A device's advert identity key: a random secret, kept beside the identity key (0600) and
/// given only to devices it binds with (sealed under the PAKE key), from which its rotating
/// mDNS id is derived. Whoever holds it recognises the device's adverts; nobody else can link
/// them. Debug output never shows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdvertKey(pub [u8; ADVERT_KEY_LEN]);

impl std::fmt::Debug for AdvertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdvertKey(..)")
    }
}

/// Errors loading or creating a device's identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key or config file could not be read or written.
    #[error("device identity at {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The key file exists but is not a PKCS#8 Ed25519 key; it is left untouched.
    #[error("device key {0} is corrupt (not a PKCS#8 Ed25519 key); refusing to replace it")]
    CorruptKey(PathBuf),
    /// The advert key file exists but does not hold exactly 32 bytes; it is left untouched.
    #[error("advert key {0} is corrupt (not {ADVERT_KEY_LEN} bytes); refusing to replace it")]
    CorruptAdvertKey(PathBuf),
    /// The device config file is not valid JSON.
    #[error("device config {path} is invalid: {reason}")]
    BadConfig {
        /// File.
        path: PathBuf,
        /// Parse error.
        reason: String,
    },
    /// The OS random source failed.
    #[error("no randomness for the device key: {0}")]
    Random(String),
    /// An unknown device type name.
    #[error(
        "unknown device type {0:?}; use one of: phone, tablet, tv, wearable, pc, 2in1, car, default"
    )]
    DeviceType(String),
}

/// OpenHarmony's device types. Serialized as the product type that OpenHarmony keeps in
/// `const.product.devicetype` and `@ohos.deviceInfo.deviceType` ("phone", "tablet", "tv",
/// "wearable", "2in1", "car", "default"; "pc" is ours); [`Self::type_id`] is its DmDeviceType id
/// and [`dm_type_name`] the name device manager's JS API gives that id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    /// DEVICE_TYPE_PHONE 0x0E.
    Phone,
    /// DEVICE_TYPE_PAD 0x11.
    Tablet,
    /// DEVICE_TYPE_TV 0x9C.
    Tv,
    /// DEVICE_TYPE_WATCH 0x6D ("wearable" in OpenHarmony's product types).
    #[serde(rename = "wearable", alias = "watch")]
    Watch,
    /// DEVICE_TYPE_PC 0x0C.
    Pc,
    /// DEVICE_TYPE_CAR 0x83.
    Car,
    /// OpenHarmony's "default" product type, which device manager reports as a phone.
    Default,
    /// DEVICE_TYPE_2IN1 0xA2F: OpenHarmony's laptop/tablet PCs (last, so that the variants
    /// before it keep their postcard index).
    #[serde(rename = "2in1")]
    TwoInOne,
}

/// DmDeviceType ids (OpenHarmony's dm_device_info.h), the one table of them.
pub mod dm_type {
    /// DEVICE_TYPE_UNKNOWN.
    pub const UNKNOWN: u16 = 0x00;
    /// DEVICE_TYPE_WIFI_CAMERA.
    pub const WIFI_CAMERA: u16 = 0x08;
    /// DEVICE_TYPE_AUDIO.
    pub const AUDIO: u16 = 0x0A;
    /// DEVICE_TYPE_PC.
    pub const PC: u16 = 0x0C;
    /// DEVICE_TYPE_PHONE.
    pub const PHONE: u16 = 0x0E;
    /// DEVICE_TYPE_PAD.
    pub const PAD: u16 = 0x11;
    /// DEVICE_TYPE_WATCH.
    pub const WATCH: u16 = 0x6D;
    /// DEVICE_TYPE_CAR.
    pub const CAR: u16 = 0x83;
    /// DEVICE_TYPE_TV.
    pub const TV: u16 = 0x9C;
    /// DEVICE_TYPE_SMART_DISPLAY.
    pub const SMART_DISPLAY: u16 = 0xA02;
    /// DEVICE_TYPE_2IN1.
    pub const TWO_IN_ONE: u16 = 0xA2F;
}

/// The `deviceType` string that OpenHarmony's distributedDeviceManager gives a DmDeviceType id
/// in DeviceBasicInfo (its napi GetDeviceTypeById): "PHONE", "PAD", "2IN1", ...; "UNKNOWN" for
/// an id it has no name for.
pub fn dm_type_name(id: u16) -> &'static str {
    match id {
        dm_type::PHONE => "PHONE",
        dm_type::PAD => "PAD",
        dm_type::TV => "TV",
        dm_type::CAR => "CAR",
        dm_type::WATCH => "WATCH",
        dm_type::WIFI_CAMERA => "WiFiCamera",
        dm_type::PC => "PC",
        dm_type::SMART_DISPLAY => "SMART_DISPLAY",
        dm_type::TWO_IN_ONE => "2IN1",
        _ => "UNKNOWN",
    }
}

impl DeviceType {
    /// DmDeviceType id.
    pub fn type_id(self) -> u16 {
        match self {
            DeviceType::Phone | DeviceType::Default => dm_type::PHONE,
            DeviceType::Tablet => dm_type::PAD,
            DeviceType::Tv => dm_type::TV,
            DeviceType::Watch => dm_type::WATCH,
            DeviceType::Pc => dm_type::PC,
            DeviceType::TwoInOne => dm_type::TWO_IN_ONE,
            DeviceType::Car => dm_type::CAR,
        }
    }
    /// The product type name: on the command line, in `const.product.devicetype` and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Phone => "phone",
            DeviceType::Tablet => "tablet",
            DeviceType::Tv => "tv",
            DeviceType::Watch => "wearable",
            DeviceType::Pc => "pc",
            DeviceType::TwoInOne => "2in1",
            DeviceType::Car => "car",
            DeviceType::Default => "default",
        }
    }
}

impl std::str::FromStr for DeviceType {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "phone" => DeviceType::Phone,
            "tablet" | "pad" => DeviceType::Tablet,
            "tv" => DeviceType::Tv,
            "watch" | "wearable" => DeviceType::Watch,
            "pc" => DeviceType::Pc,
            "2in1" => DeviceType::TwoInOne,
            "car" => DeviceType::Car,
            "default" => DeviceType::Default,
            _ => return Err(IdentityError::DeviceType(s.to_string())),
        })
    }
}

/// The device's name and type, kept beside the key so that they survive restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Human-readable name shown to other devices, only when the owner set one (`oxhd
    /// --name`); `None` shows [`DEFAULT_NAME`] and leaves the name out of adverts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Device type.
    pub device_type: DeviceType,
}

/// What `oxh device info` shows. JSON names as OpenHarmony's: udid, deviceName, deviceTypeId
/// (device manager), deviceType and osFullName (`@ohos.deviceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// Hex SHA-256 of the public key.
    pub udid: String,
    /// Device name.
    #[serde(rename = "deviceName")]
    pub name: String,
    /// Product type.
    pub device_type: DeviceType,
    /// DmDeviceType id.
    pub device_type_id: u16,
    /// OS full name and version.
    #[serde(rename = "osFullName")]
    pub os_version: String,
}

/// The OS version string, OpenHarmony's `const.ohos.fullname` style.
pub const OS_FULL_NAME: &str = concat!("oxharmony-", env!("CARGO_PKG_VERSION"));

/// A device's long-term identity.
#[cfg(feature = "service")]
pub struct DeviceIdentity {
    key: SigningKey,
    advert_key: AdvertKey,
    config: DeviceConfig,
}

#[cfg(feature = "service")]
impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("udid", &self.udid())
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(feature = "service")]
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(feature = "service")]
impl DeviceIdentity {
    /// Loads the identity kept in `dir`, creating the keys on first start. `name` and
    /// `device_type`, when given, replace the stored ones (an empty name clears it).
    ///
    /// Earlier versions stored the host name as the default name; a stored name equal to the
    /// host name is read as "no name set", so that upgraded devices stop advertising it.
    pub fn load_or_create(
        dir: &Path,
        name: Option<&str>,
        device_type: Option<DeviceType>,
    ) -> Result<Self, IdentityError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key_path = dir.join("identity.key");
        let key = match std::fs::read(&key_path) {
            Ok(der) => SigningKey::from_pkcs8_der(&der)
                .map_err(|_| IdentityError::CorruptKey(key_path.clone()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
                let key = SigningKey::from_bytes(&seed);
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| IdentityError::Random(e.to_string()))?;
                oxh_kal::write_secret(&key_path, der.as_bytes()).map_err(io_err(&key_path))?;
                key
            }
            Err(e) => return Err(io_err(&key_path)(e)),
        };
        let advert_key = load_or_create_advert_key(&dir.join("advert.key"))?;
        let cfg_path = dir.join("device.json");
        let mut config: DeviceConfig = match std::fs::read(&cfg_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| IdentityError::BadConfig {
                path: cfg_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DeviceConfig {
                name: None,
                device_type: DeviceType::Default,
            },
            Err(e) => return Err(io_err(&cfg_path)(e)),
        };
        if config.name.as_deref() == Some(oxh_kal::hostname().as_str()) {
            config.name = None;
        }
        if let Some(n) = name {
            let n = n.trim();
            config.name = (!n.is_empty()).then(|| n.to_string());
        }
        if let Some(t) = device_type {
            config.device_type = t;
        }
        let json = serde_json::to_vec_pretty(&config).unwrap_or_default();
        oxh_kal::write_atomic(&cfg_path, &json, 0o644).map_err(io_err(&cfg_path))?;
        Ok(Self {
            key,
            advert_key,
            config,
        })
    }

    /// The public key bytes.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Hex SHA-256 of the public key.
    pub fn udid(&self) -> String {
        udid_of(&self.public_key())
    }

    /// Name and type.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The info shown by `oxh device info`.
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            udid: self.udid(),
            name: self
                .config
                .name
                .clone()
                .unwrap_or_else(|| DEFAULT_NAME.to_string()),
            device_type: self.config.device_type,
            device_type_id: self.config.device_type.type_id(),
            os_version: OS_FULL_NAME.to_string(),
        }
    }

    /// The signing key, for the soft bus's TLS and pairing.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The advert identity key, given to bound devices so that they recognise our adverts.
    pub fn advert_key(&self) -> AdvertKey {
        self.advert_key
    }
}

/// Reads the 32 raw bytes at `path`, or creates them (random, 0600) on first start.
#[cfg(feature = "service")]
fn load_or_create_advert_key(path: &Path) -> Result<AdvertKey, IdentityError> {
    match std::fs::read(path) {
        Ok(b) => <[u8; ADVERT_KEY_LEN]>::try_from(b.as_slice())
            .map(AdvertKey)
            .map_err(|_| IdentityError::CorruptAdvertKey(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = [0u8; ADVERT_KEY_LEN];
            getrandom::fill(&mut k).map_err(|e| IdentityError::Random(e.to_string()))?;
            oxh_kal::write_secret(path, &k).map_err(io_err(path))?;
            Ok(AdvertKey(k))
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(all(test, feature = "service"))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn identity_is_created_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = DeviceIdentity::load_or_create(d.path(), None, None).unwrap();
        let mode = std::fs::metadata(d.path().join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = DeviceIdentity::load_or_create(d.path(), Some("kitchen"), Some(DeviceType::Tv))
            .unwrap();
        assert_eq!(a.udid(), b.udid());
        assert_eq!(a.udid().len(), 64);
        assert_eq!(
            a.udid(),
            hex::encode(Sha256::digest(a.public_key())),
            "udid is the hash of the public key"
        );
        let c = DeviceIdentity::load_or_create(d.path(), None, None).unwrap();
        assert_eq!(c.config().name.as_deref(), Some("kitchen"));
        assert_eq!(c.info().device_type_id, 0x9C);
    }

    #[test]
    fn advert_key_is_created_once_private_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = DeviceIdentity::load_or_create(d.path(), None, None).unwrap();
        let path = d.path().join("advert.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), a.advert_key().0);
        let b = DeviceIdentity::load_or_create(d.path(), None, None).unwrap();
        assert_eq!(a.advert_key(), b.advert_key());
        assert_ne!(a.advert_key().0, [0u8; 32]);
        let other = tempfile::tempdir().unwrap();
        let c = DeviceIdentity::load_or_create(other.path(), None, None).unwrap();
        assert_ne!(a.advert_key(), c.advert_key(), "random per device");
        assert_eq!(format!("{:?}", a.advert_key()), "AdvertKey(..)");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            DeviceIdentity::load_or_create(d.path(), None, None),
            Err(IdentityError::CorruptAdvertKey(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"short", "left untouched");
    }

    #[test]
    fn without_a_name_set_the_host_name_is_never_the_name() {
        let d = tempfile::tempdir().unwrap();
        let a = DeviceIdentity::load_or_create(d.path(), None, None).unwrap();
        assert_eq!(a.config().name, None);
        assert_eq!(a.info().name, DEFAULT_NAME);
        let json = std::fs::read_to_string(d.path().join("device.json")).unwrap();
        assert!(!json.contains("name"), "{json}");
        // A config written by an earlier version, which defaulted the name to the host name.
        let legacy = format!(
            r#"{{"name": {:?}, "device_type": "pc"}}"#,
            oxh_kal::hostname()
        );
        std::fs::write(d.path().join("device.json"), legacy).unwrap();
        let b = DeviceIdentity::load_or_create(d.path(), None, None).unwrap();
        assert_eq!(b.config().name, None);
        assert_eq!(b.info().name, DEFAULT_NAME);
        assert_eq!(b.config().device_type, DeviceType::Pc);
        // An owner's name is kept; an empty one clears it.
        let c = DeviceIdentity::load_or_create(d.path(), Some("Den"), None).unwrap();
        assert_eq!(c.info().name, "Den");
        let e = DeviceIdentity::load_or_create(d.path(), Some(" "), None).unwrap();
        assert_eq!(e.config().name, None);
    }

    #[test]
    fn corrupt_key_is_refused_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("identity.key"), b"junk").unwrap();
        assert!(matches!(
            DeviceIdentity::load_or_create(d.path(), None, None),
            Err(IdentityError::CorruptKey(_))
        ));
        assert_eq!(
            std::fs::read(d.path().join("identity.key")).unwrap(),
            b"junk"
        );
    }

    #[test]
    fn device_types_parse() {
        assert_eq!("TV".parse::<DeviceType>().unwrap().type_id(), 0x9C);
        assert!("toaster".parse::<DeviceType>().is_err());
        // OpenHarmony's 2in1 is its own DmDeviceType, not a PC.
        let t: DeviceType = "2in1".parse().unwrap();
        assert_eq!((t.type_id(), dm_type_name(t.type_id())), (0xA2F, "2IN1"));
        assert_eq!(dm_type_name(DeviceType::Tablet.type_id()), "PAD");
        assert_eq!(dm_type_name(DeviceType::Default.type_id()), "PHONE");
        assert_eq!(dm_type_name(0x1234), "UNKNOWN");
    }

    #[test]
    fn device_types_serialize_as_openharmony_product_types() {
        for t in [DeviceType::Watch, DeviceType::TwoInOne, DeviceType::Tablet] {
            let j = serde_json::to_string(&t).unwrap();
            assert_eq!(j, format!("{:?}", t.as_str()));
            assert_eq!(serde_json::from_str::<DeviceType>(&j).unwrap(), t);
        }
        // A device.json written before "wearable" still loads.
        let c: DeviceConfig = serde_json::from_str(r#"{"device_type": "watch"}"#).unwrap();
        assert_eq!(c.device_type, DeviceType::Watch);
    }
}
