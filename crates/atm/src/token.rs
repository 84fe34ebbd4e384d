//! OpenHarmony's AccessTokenID layout, 32 and 64 bits.
//!
//! ```text
//! AccessTokenID (u32):  bits 0-19 unique id | 20-23 reserved | 24 clone | 25 render | 26 dlp
//!                       | 27-28 type (HAP 0, NATIVE 1, SHELL 2) | 29-31 version (1)
//! FullTokenID / AccessTokenIDEx (u64): low 32 bits the AccessTokenID, high 32 bits the
//!                       token attributes; attribute bit 0 (bit 32 overall) = system app.
//! ```
//! Token id 0 is OpenHarmony's INVALID_TOKENID: a caller with no permissions.

use oxh_ipc::TokenType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Width mask of the unique-id field (bits 0-19).
pub const UNIQUE_MASK: u32 = 0xF_FFFF;
/// The clone flag (bit 24): an app clone (instIndex > 0 and not DLP).
pub const CLONE_FLAG: u32 = 1 << 24;
/// The render flag (bit 25): a render process's token.
pub const RENDER_FLAG: u32 = 1 << 25;
/// The DLP flag (bit 26): a data-loss-prevention sandbox instance.
pub const DLP_FLAG: u32 = 1 << 26;
/// Shift of the two type bits.
pub const TYPE_SHIFT: u32 = 27;
/// Shift of the three version bits.
pub const VERSION_SHIFT: u32 = 29;
/// The only version OpenHarmony uses (DEFAULT_TOKEN_VERSION).
pub const VERSION: u32 = 1;
/// OpenHarmony's invalid token id.
pub const INVALID_TOKEN_ID: u32 = 0;
/// The system-app attribute in a 64-bit FullTokenID (attribute bit 0 = bit 32).
pub const SYSTEM_APP_MASK: u64 = 1 << 32;

/// Builds an AccessTokenID from its fields; `unique` is masked to 20 bits. For `Invalid` the
/// result is 0. With no flags this equals [`oxh_ipc::caller::make_token_id`].
pub fn make(token_type: TokenType, unique: u32, dlp: bool, clone: bool) -> u32 {
    let t = match token_type {
        TokenType::Hap => 0,
        TokenType::Native => 1,
        TokenType::Shell => 2,
        TokenType::Invalid => return INVALID_TOKEN_ID,
    };
    let mut id = (VERSION << VERSION_SHIFT) | (t << TYPE_SHIFT) | (unique & UNIQUE_MASK);
    if dlp {
        id |= DLP_FLAG;
    }
    if clone {
        id |= CLONE_FLAG;
    }
    id
}

/// The type encoded in a token id; anything malformed (0, wrong version, type 3) is `Invalid`.
pub fn type_of(id: u32) -> TokenType {
    if id >> VERSION_SHIFT != VERSION {
        return TokenType::Invalid;
    }
    match (id >> TYPE_SHIFT) & 3 {
        0 => TokenType::Hap,
        1 => TokenType::Native,
        2 => TokenType::Shell,
        _ => TokenType::Invalid,
    }
}

/// The unique-id field of a token id.
pub fn unique_of(id: u32) -> u32 {
    id & UNIQUE_MASK
}

/// True when the DLP flag is set.
pub fn is_dlp(id: u32) -> bool {
    id & DLP_FLAG != 0
}

/// True when the clone flag is set.
pub fn is_clone(id: u32) -> bool {
    id & CLONE_FLAG != 0
}

/// OpenHarmony's AccessTokenIDEx: the 32-bit id plus its attributes, as one 64-bit value.
/// This is what `alloc_hap_token` returns and what an app's process carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccessTokenIdEx(pub u64);

impl AccessTokenIdEx {
    /// Joins a token id and the system-app attribute.
    pub fn new(token_id: u32, is_system_app: bool) -> Self {
        let mut v = u64::from(token_id);
        if is_system_app {
            v |= SYSTEM_APP_MASK;
        }
        Self(v)
    }
    /// The 32-bit AccessTokenID (the low half).
    pub fn token_id(self) -> u32 {
        self.0 as u32
    }
    /// The attribute word (the high half).
    pub fn token_attr(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// OpenHarmony's `TokenIdKit::IsSystemAppByFullTokenID`.
    pub fn is_system_app(self) -> bool {
        self.0 & SYSTEM_APP_MASK != 0
    }
}

impl fmt::Display for AccessTokenIdEx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Parses a token id as people type it: decimal or `0x` hex.
pub fn parse_id(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_openharmony() {
        let h = make(TokenType::Hap, 0x1_2345, false, false);
        assert_eq!(h >> 29, 1, "version 1");
        assert_eq!((h >> 27) & 3, 0, "hap type");
        assert_eq!(h & UNIQUE_MASK, 0x1_2345);
        assert_eq!(type_of(h), TokenType::Hap);
        let n = make(TokenType::Native, 7, false, false);
        assert_eq!(type_of(n), TokenType::Native);
        assert_eq!(n, oxh_ipc::caller::make_token_id(TokenType::Native, 7));
        let s = make(TokenType::Shell, 1, false, false);
        assert_eq!(type_of(s), TokenType::Shell);
        assert_eq!(s, oxh_ipc::caller::make_token_id(TokenType::Shell, 1));
        assert_eq!(make(TokenType::Invalid, 5, true, true), 0);
        assert_eq!(type_of(0), TokenType::Invalid);
        assert_eq!(type_of(3 << 27 | 1 << 29), TokenType::Invalid);

        let d = make(TokenType::Hap, 9, true, false);
        assert!(is_dlp(d) && !is_clone(d));
        assert_eq!(d & (1 << 26), 1 << 26);
        let c = make(TokenType::Hap, 9, false, true);
        assert!(is_clone(c) && !is_dlp(c));
        assert_eq!(c & (1 << 24), 1 << 24);
        assert_eq!(type_of(c), TokenType::Hap);
        assert_eq!(
            unique_of(make(TokenType::Hap, 0xFFF_FFFF, false, false)),
            0xF_FFFF
        );
    }

    #[test]
    fn full_token_id_carries_the_system_app_bit() {
        let id = make(TokenType::Hap, 42, false, false);
        let ex = AccessTokenIdEx::new(id, true);
        assert_eq!(ex.0, (1u64 << 32) | u64::from(id));
        assert!(ex.is_system_app());
        assert_eq!(ex.token_id(), id);
        assert_eq!(ex.token_attr(), 1);
        assert!(!AccessTokenIdEx::new(id, false).is_system_app());
    }

    #[test]
    fn ids_parse_in_hex_and_decimal() {
        assert_eq!(parse_id("0x20000001"), Some(0x2000_0001));
        assert_eq!(parse_id("536870913"), Some(536_870_913));
        assert_eq!(parse_id("com.example"), None);
        assert_eq!(parse_id("0xzz"), None);
        assert_eq!(parse_id(""), None);
    }
}
