//! Limits and validation, as `@ohos.data.distributedKVStore` defines them: one definition of
//! each, next to the check that enforces it.

use crate::error::KvError;
use serde::{Deserialize, Serialize};

/// Largest key of a single-version store, in bytes (MAX_KEY_LENGTH).
pub const MAX_KEY_LENGTH: usize = 1024;
/// Largest key of a device-collaboration store (MAX_KEY_LENGTH_DEVICE): the stored key is
/// prefixed with the writer's device, so the user's part is shorter.
pub const MAX_KEY_LENGTH_DEVICE: usize = 896;
/// Largest value, in bytes (MAX_VALUE_LENGTH: 4 MiB − 1).
pub const MAX_VALUE_LENGTH: usize = 4 * 1024 * 1024 - 1;
/// Longest storeId, in characters (MAX_STORE_ID_LENGTH).
pub const MAX_STORE_ID_LENGTH: usize = 128;
/// Most entries in one putBatch / deleteBatch (MAX_BATCH_SIZE).
pub const MAX_BATCH_SIZE: usize = 128;
/// Most dataChange subscriptions on one store (MAX_SUBSCRIBE_NUM, error 15100001).
pub const MAX_SUBSCRIPTIONS: usize = 8;
/// Longest bundle name (as the bundle manager allows).
pub const MAX_BUNDLE_NAME: usize = 128;
/// Longest backup name.
pub const MAX_BACKUP_NAME: usize = 128;

/// `KVStoreType`: how entries of different devices are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StoreType {
    /// DEVICE_COLLABORATION: entries partitioned by the device that wrote them.
    DeviceCollaboration,
    /// SINGLE_VERSION: one value per key across devices.
    SingleVersion,
}

impl StoreType {
    /// The name used on the command line and in dumps.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreType::DeviceCollaboration => "device",
            StoreType::SingleVersion => "single",
        }
    }
    /// The longest key for this store type.
    pub fn max_key(self) -> usize {
        match self {
            StoreType::DeviceCollaboration => MAX_KEY_LENGTH_DEVICE,
            StoreType::SingleVersion => MAX_KEY_LENGTH,
        }
    }
}

impl std::str::FromStr for StoreType {
    type Err = KvError;
    fn from_str(s: &str) -> Result<Self, KvError> {
        match s.to_ascii_lowercase().as_str() {
            "single" | "single_version" => Ok(StoreType::SingleVersion),
            "device" | "device_collaboration" => Ok(StoreType::DeviceCollaboration),
            _ => Err(KvError::invalid(format!(
                "kvStoreType {s:?}: expected single or device"
            ))),
        }
    }
}

/// `SecurityLevel` of a store, S1 (lowest) to S4. Stores of different levels never sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SecurityLevel {
    /// Low risk data.
    S1 = 1,
    /// Medium.
    S2 = 2,
    /// High.
    S3 = 3,
    /// Critical.
    S4 = 4,
}

impl SecurityLevel {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::S1 => "S1",
            SecurityLevel::S2 => "S2",
            SecurityLevel::S3 => "S3",
            SecurityLevel::S4 => "S4",
        }
    }
    /// From its number (1..=4).
    pub fn from_u8(n: u8) -> Option<Self> {
        match n {
            1 => Some(SecurityLevel::S1),
            2 => Some(SecurityLevel::S2),
            3 => Some(SecurityLevel::S3),
            4 => Some(SecurityLevel::S4),
            _ => None,
        }
    }
}

impl std::str::FromStr for SecurityLevel {
    type Err = KvError;
    fn from_str(s: &str) -> Result<Self, KvError> {
        let t = s.trim().trim_start_matches(['S', 's']);
        t.parse::<u8>()
            .ok()
            .and_then(Self::from_u8)
            .ok_or_else(|| KvError::invalid(format!("securityLevel {s:?}: expected S1..S4")))
    }
}

/// Name of the param that holds this device's security level (SL1..SL5).
pub const DEVICE_SECURITY_LEVEL_PARAM: &str = "const.security.device_security_level";
/// A device's level when the param is not set: SL1, as OpenHarmony's development boards.
pub const DEFAULT_DEVICE_LEVEL: u8 = 1;

/// Parses a device security level as the param holds it ("SL3", "3").
pub fn parse_device_level(s: &str) -> Option<u8> {
    let t = s.trim();
    let t = t
        .strip_prefix("SL")
        .or_else(|| t.strip_prefix("sl"))
        .unwrap_or(t);
    t.parse::<u8>().ok().filter(|n| (1..=5).contains(n))
}

/// True when a device of security level `device_level` (SL1..SL5) may hold a store of
/// `level`: SL1→S1, SL2→S2, SL3→S3, SL4/SL5→S4.
pub fn device_covers(device_level: u8, level: SecurityLevel) -> bool {
    device_level.min(4) >= level as u8
}

/// Checks a storeId: 1..=128 characters of letters, digits and `_` (OpenHarmony's rule).
pub fn check_store_id(id: &str) -> Result<(), KvError> {
    let n = id.chars().count();
    if n == 0 || n > MAX_STORE_ID_LENGTH {
        return Err(KvError::invalid(format!(
            "storeId must be 1..={MAX_STORE_ID_LENGTH} characters, got {n}"
        )));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(KvError::invalid(format!(
            "storeId {id:?} may only contain letters, digits and '_'"
        )));
    }
    Ok(())
}

/// Letters, digits, `.`, `_` and `-` only, not starting with `.`: a name that is safe as one
/// path component (no separator, not `.`, `..` or hidden).
fn is_safe_component(b: &str) -> bool {
    !b.starts_with('.')
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks a bundle name; it becomes a directory name, so it must be a safe path component.
pub fn check_bundle_name(b: &str) -> Result<(), KvError> {
    if b.is_empty() || b.len() > MAX_BUNDLE_NAME {
        return Err(KvError::invalid(format!(
            "bundleName must be 1..={MAX_BUNDLE_NAME} bytes"
        )));
    }
    if !is_safe_component(b) {
        return Err(KvError::invalid(format!(
            "bundleName {b:?} may only contain letters, digits, '.', '_' and '-' and not start with '.'"
        )));
    }
    Ok(())
}

/// Checks a backup file name (a path component under the store's backup dir).
pub fn check_backup_name(b: &str) -> Result<(), KvError> {
    if b.is_empty() || b.len() > MAX_BACKUP_NAME || !is_safe_component(b) {
        return Err(KvError::invalid(format!(
            "backup name {b:?}: 1..={MAX_BACKUP_NAME} letters, digits, '.', '_', '-', not starting with '.'"
        )));
    }
    Ok(())
}

/// Checks a key for a store of type `t`: not empty, not longer than the type's limit.
pub fn check_key(t: StoreType, key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::invalid("key must not be empty"));
    }
    if key.len() > t.max_key() {
        return Err(KvError::invalid(format!(
            "key of {} bytes exceeds the {}-byte limit of a {} store",
            key.len(),
            t.max_key(),
            t.as_str()
        )));
    }
    Ok(())
}

/// Checks a value: at most [`MAX_VALUE_LENGTH`] bytes.
pub fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_LENGTH {
        return Err(KvError::invalid(format!(
            "value of {} bytes exceeds the {MAX_VALUE_LENGTH}-byte limit",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a batch size: 1..=[`MAX_BATCH_SIZE`].
pub fn check_batch(n: usize) -> Result<(), KvError> {
    if n == 0 || n > MAX_BATCH_SIZE {
        return Err(KvError::invalid(format!(
            "a batch holds 1..={MAX_BATCH_SIZE} entries, got {n}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits_depend_on_the_store_type() {
        let k = vec![b'k'; MAX_KEY_LENGTH];
        assert!(check_key(StoreType::SingleVersion, &k).is_ok());
        assert_eq!(
            check_key(StoreType::SingleVersion, &[b'k'; MAX_KEY_LENGTH + 1])
                .unwrap_err()
                .code(),
            401
        );
        assert!(check_key(StoreType::DeviceCollaboration, &k).is_err());
        assert!(check_key(StoreType::DeviceCollaboration, &k[..896]).is_ok());
        assert!(check_key(StoreType::SingleVersion, b"").is_err());
    }

    #[test]
    fn value_store_id_and_batch_limits() {
        assert!(check_value(&vec![0; MAX_VALUE_LENGTH]).is_ok());
        assert!(check_value(&vec![0; MAX_VALUE_LENGTH + 1]).is_err());
        assert!(check_store_id(&"a".repeat(128)).is_ok());
        assert!(check_store_id(&"a".repeat(129)).is_err());
        assert!(check_store_id("").is_err());
        assert!(check_store_id("../x").is_err());
        assert!(check_store_id("s_1").is_ok());
        assert!(check_batch(128).is_ok());
        assert!(check_batch(129).is_err());
        assert!(check_batch(0).is_err());
    }

    #[test]
    fn names_that_become_paths_are_safe() {
        assert!(check_bundle_name("com.example.notes").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a\0b", "x y"] {
            assert!(check_bundle_name(bad).is_err(), "{bad:?}");
            assert!(check_backup_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn device_levels_cover_store_levels() {
        assert!(device_covers(1, SecurityLevel::S1));
        assert!(!device_covers(1, SecurityLevel::S2));
        assert!(device_covers(3, SecurityLevel::S3));
        assert!(!device_covers(3, SecurityLevel::S4));
        assert!(device_covers(5, SecurityLevel::S4));
        assert_eq!(parse_device_level("SL3"), Some(3));
        assert_eq!(parse_device_level("6"), None);
        assert_eq!("s2".parse::<SecurityLevel>().unwrap(), SecurityLevel::S2);
        assert!("S5".parse::<SecurityLevel>().is_err());
        assert_eq!(
            "device".parse::<StoreType>().unwrap(),
            StoreType::DeviceCollaboration
        );
    }
}
