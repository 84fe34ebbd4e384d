//! A minimal DER reader and writer: enough for PKCS#7 SignedData (the HAP signature and the
//! signed profile). Certificates themselves are parsed by `x509-parser`; this module only walks
//! the CMS envelope around them, so its input is bounded by the signing block's size and every
//! read is checked against the remaining bytes.

use std::fmt;

/// Universal tags used here.
pub mod tag {
    /// INTEGER
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub const OID: u8 = 0x06;
    /// UTF8String
    pub const UTF8_STRING: u8 = 0x0c;
    /// UTCTime
    pub const UTC_TIME: u8 = 0x17;
    /// SEQUENCE (constructed)
    pub const SEQUENCE: u8 = 0x30;
    /// SET (constructed)
    pub const SET: u8 = 0x31;
    /// \[0\] constructed, context-specific
    pub const CTX0: u8 = 0xa0;
    /// \[1\] constructed, context-specific
    pub const CTX1: u8 = 0xa1;
}

/// A malformed DER structure; says where the reader gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerError(pub &'static str);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed DER: {}", self.0)
    }
}

impl std::error::Error for DerError {}

/// One TLV: its tag, its content and the whole encoding (tag + length + content), which
/// signature checks need byte for byte.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The identifier octet (only single-octet tags are accepted).
    pub tag: u8,
    /// The content octets.
    pub value: &'a [u8],
    /// Tag, length and content.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over this TLV's content (for SEQUENCE, SET, \[n\]).
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.value)
    }
}

/// Reads consecutive TLVs from a buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next tag without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// The next TLV, whatever its tag.
    pub fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let b = self.buf;
        if b.len() < 2 {
            return Err(DerError("truncated header"));
        }
        let tag = b[0];
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte tags are not supported"));
        }
        let (len, hdr) = match b[1] {
            l if l < 0x80 => (l as usize, 2),
            0x80 => return Err(DerError("indefinite length")),
            l => {
                let n = (l & 0x7f) as usize;
                if n > 4 || b.len() < 2 + n {
                    return Err(DerError("bad length"));
                }
                let mut len = 0usize;
                for &x in &b[2..2 + n] {
                    len = (len << 8) | x as usize;
                }
                (len, 2 + n)
            }
        };
        let end = hdr.checked_add(len).ok_or(DerError("length overflow"))?;
        if b.len() < end {
            return Err(DerError("content runs past the end"));
        }
        self.buf = &b[end..];
        Ok(Tlv {
            tag,
            value: &b[hdr..end],
            raw: &b[..end],
        })
    }

    /// The next TLV, which must have tag `t`.
    pub fn expect(&mut self, t: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let v = self.any()?;
        if v.tag != t {
            return Err(DerError(what));
        }
        Ok(v)
    }

    /// The next TLV if it has tag `t`.
    pub fn optional(&mut self, t: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(t) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Parses exactly one TLV that fills `buf`.
pub fn parse_one(buf: &[u8]) -> Result<Tlv<'_>, DerError> {
    let mut r = Reader::new(buf);
    let t = r.any()?;
    if !r.is_empty() {
        return Err(DerError("trailing bytes"));
    }
    Ok(t)
}

// ---- writing ----

/// Encodes a TLV.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded parts.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &parts.concat())
}

/// A SET of already-encoded parts, sorted as DER requires for SET OF.
pub fn set_of(parts: &[&[u8]]) -> Vec<u8> {
    let mut v: Vec<&[u8]> = parts.to_vec();
    v.sort();
    tlv(tag::SET, &v.concat())
}

/// An OBJECT IDENTIFIER from its content bytes.
pub fn oid(content: &[u8]) -> Vec<u8> {
    tlv(tag::OID, content)
}

/// A small non-negative INTEGER.
pub fn small_int(v: u8) -> Vec<u8> {
    tlv(tag::INTEGER, &[v])
}

/// OIDs (content bytes) used by PKCS#7 and the HAP scheme.
pub mod oids {
    /// 1.2.840.113549.1.7.1 data
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// 1.2.840.113549.1.7.2 signedData
    pub const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    /// 1.2.840.113549.1.9.3 contentType
    pub const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
    /// 1.2.840.113549.1.9.4 messageDigest
    pub const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    /// 1.2.840.113549.1.9.5 signingTime
    pub const SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];
    /// 2.16.840.1.101.3.4.2.1 sha256
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// 2.16.840.1.101.3.4.2.2 sha384
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    /// 1.2.840.10045.4.3.2 ecdsa-with-SHA256
    pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// 1.2.840.10045.4.3.3 ecdsa-with-SHA384
    pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// 1.2.840.113549.1.1.11 sha256WithRSAEncryption
    pub const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    /// 1.2.840.113549.1.1.12 sha384WithRSAEncryption
    pub const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    /// 1.2.840.113549.1.1.1 rsaEncryption (some signers name the key, not the scheme)
    pub const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.3.6.1.4.1.2011.2.376.1.4.1: the code signature's ownerID attribute (hapsigner's
    /// OWNERID_OID): `DEBUG_LIB_ID` for debug profiles, else the profile's app-identifier.
    pub const OWNER_ID: &[u8] = &[
        0x2b, 0x06, 0x01, 0x04, 0x01, 0x8f, 0x5b, 0x02, 0x82, 0x78, 0x01, 0x04, 0x01,
    ];
    /// 1.2.840.10045.2.1 id-ecPublicKey (some signers name the key, not the scheme)
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lengths() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; n];
            let enc = tlv(tag::OCTET_STRING, &content);
            let t = parse_one(&enc).unwrap();
            assert_eq!(t.tag, tag::OCTET_STRING);
            assert_eq!(t.value.len(), n);
            assert_eq!(t.raw, &enc[..]);
        }
    }

    #[test]
    fn truncation_and_indefinite_are_errors() {
        assert!(parse_one(&[0x30]).is_err());
        assert!(parse_one(&[0x30, 0x80, 0, 0]).is_err());
        assert!(parse_one(&[0x04, 0x05, 1, 2]).is_err());
        assert!(parse_one(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(parse_one(&[0x04, 0x01, 1, 2]).is_err());
    }
}
