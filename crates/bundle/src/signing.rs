//! The HAP signing block (OpenHarmony's appverify / hapsigner scheme, shaped like APK
//! signature scheme v2): where it is, its typed sub-blocks, the content digest the signature
//! covers, and how to insert a block into an unsigned zip. Pure functions over bytes.
//!
//! Layout (all integers little-endian): the block sits right before the central directory.
//! It starts with N headers of 12 bytes (u32 type, u32 length, u32 offset from the block
//! start), then the values, and ends with a 32-byte footer: u32 N, u64 block size (including
//! the footer), the 16-byte magic (`HAP Sig Block 42` for v2, `<hap sign block>` for v3) and
//! u32 version.

use sha2::{Digest, Sha256};

/// Footer magic of version 2 blocks.
pub const MAGIC_V2: &[u8; 16] = b"HAP Sig Block 42";
/// Footer magic of version 3 blocks.
pub const MAGIC_V3: &[u8; 16] = b"<hap sign block>";
/// Footer size.
pub const FOOTER_LEN: usize = 32;
/// Sub-block type: the PKCS#7 SignedData over the content digest.
pub const BLOCK_SIGNATURE: u32 = 0x2000_0000;
/// Sub-block type: proof of rotation.
pub const BLOCK_PROOF_OF_ROTATION: u32 = 0x2000_0001;
/// Sub-block type: the signed provisioning profile (PKCS#7 wrapping JSON).
pub const BLOCK_PROFILE: u32 = 0x2000_0002;
/// Sub-block type: properties (holds the code-signing block for native libraries).
pub const BLOCK_PROPERTY: u32 = 0x2000_0003;
/// One sub-block header: type, length, offset.
pub const BLOCK_HEADER_LEN: usize = 12;
/// The chunk size of the content digest.
pub const CHUNK: usize = 1 << 20;
/// Most sub-blocks a block may declare (real ones have 2 or 3).
pub const MAX_SUB_BLOCKS: u32 = 64;
/// The digest algorithm id the signature content names: SHA256withECDSA.
pub const ALG_SHA256_ECDSA: u32 = 0x201;
const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;

/// What is wrong with a zip's end record or signing block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// No end-of-central-directory record: not a zip.
    #[error("no zip end of central directory record")]
    NoEocd,
    /// The end record points outside the file.
    #[error("zip end record is inconsistent: {0}")]
    BadEocd(&'static str),
    /// A zip64 archive: more than 65,535 entries or over 4 GiB, which packages may not be.
    #[error("zip64 archive (more than 65535 entries or over 4 GiB): not accepted for packages")]
    Zip64,
    /// A signing block footer is there but its headers or sizes do not fit.
    #[error("malformed signing block: {0}")]
    BadBlock(String),
}

/// Where the zip's parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLayout {
    /// Offset of the end-of-central-directory record.
    pub eocd: usize,
    /// Offset of the central directory, as the end record says.
    pub cd_offset: usize,
    /// Size of the central directory.
    pub cd_size: usize,
    /// Total entries, as the end record says.
    pub entries: u64,
}

/// Finds the end record (scanning back over a comment of up to 64 KiB).
pub fn zip_layout(data: &[u8]) -> Result<ZipLayout, SigningError> {
    if data.len() < EOCD_LEN {
        return Err(SigningError::NoEocd);
    }
    let last = data.len() - EOCD_LEN;
    let first = last.saturating_sub(0xffff);
    for i in (first..=last).rev() {
        if u32_at(data, i) != Some(EOCD_SIG) {
            continue;
        }
        let comment = u16_at(data, i + 20).unwrap_or(0) as usize;
        if i + EOCD_LEN + comment != data.len() {
            continue;
        }
        let entries = u16_at(data, i + 10).unwrap_or(0) as u64;
        let cd_size = u32_at(data, i + 12).unwrap_or(0) as usize;
        let cd_offset = u32_at(data, i + 16).unwrap_or(0) as usize;
        let zip64_locator = i >= 20 && u32_at(data, i - 20) == Some(0x0706_4b50);
        if zip64_locator || entries == 0xffff || cd_offset == 0xffff_ffff || cd_size == 0xffff_ffff
        {
            return Err(SigningError::Zip64);
        }
        if cd_offset.checked_add(cd_size) != Some(i) {
            return Err(SigningError::BadEocd(
                "the central directory does not end at the end record",
            ));
        }
        return Ok(ZipLayout {
            eocd: i,
            cd_offset,
            cd_size,
            entries,
        });
    }
    Err(SigningError::NoEocd)
}

/// One typed sub-block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubBlock {
    /// Type, e.g. [`BLOCK_SIGNATURE`].
    pub kind: u32,
    /// Offset of the value in the file.
    pub offset: usize,
    /// Length of the value.
    pub len: usize,
}

/// A parsed signing block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningBlock {
    /// 2 (`HAP Sig Block 42`) or 3 (`<hap sign block>`).
    pub version: u32,
    /// Offset of the block in the file.
    pub start: usize,
    /// Block size, footer included.
    pub size: usize,
    /// Sub-blocks in header order.
    pub blocks: Vec<SubBlock>,
}

impl SigningBlock {
    /// The value of the first sub-block of `kind`.
    pub fn value<'a>(&self, data: &'a [u8], kind: u32) -> Option<&'a [u8]> {
        self.blocks
            .iter()
            .find(|b| b.kind == kind)
            .map(|b| &data[b.offset..b.offset + b.len])
    }
    /// The values the digest covers: the sub-blocks listed before the signature, in order.
    pub fn optional_values<'a>(&self, data: &'a [u8]) -> Vec<&'a [u8]> {
        self.blocks
            .iter()
            .take_while(|b| b.kind != BLOCK_SIGNATURE)
            .map(|b| &data[b.offset..b.offset + b.len])
            .collect()
    }
}

/// The signing block before the central directory, `None` for an unsigned zip.
pub fn find_block(data: &[u8], z: &ZipLayout) -> Result<Option<SigningBlock>, SigningError> {
    let cd = z.cd_offset;
    if cd < FOOTER_LEN {
        return Ok(None);
    }
    let foot = &data[cd - FOOTER_LEN..cd];
    let magic = &foot[12..28];
    let version = if magic == MAGIC_V2 {
        2
    } else if magic == MAGIC_V3 {
        3
    } else {
        return Ok(None);
    };
    let bad = |s: &str| SigningError::BadBlock(s.to_string());
    let count = u32::from_le_bytes(foot[0..4].try_into().map_err(|_| bad("footer"))?);
    let size = u64::from_le_bytes(foot[4..12].try_into().map_err(|_| bad("footer"))?);
    if count == 0 || count > MAX_SUB_BLOCKS {
        return Err(bad(&format!("{count} sub-blocks declared")));
    }
    let size = usize::try_from(size).map_err(|_| bad("size"))?;
    if size > cd || size < FOOTER_LEN + 12 * count as usize {
        return Err(bad(&format!(
            "declared size {size} does not fit before the central directory at {cd}"
        )));
    }
    let start = cd - size;
    let values_end = size - FOOTER_LEN;
    let mut blocks = Vec::with_capacity(count as usize);
    for k in 0..count as usize {
        let h = start + 12 * k;
        let kind = u32_at(data, h).ok_or_else(|| bad("header"))?;
        let len = u32_at(data, h + 4).ok_or_else(|| bad("header"))? as usize;
        let off = u32_at(data, h + 8).ok_or_else(|| bad("header"))? as usize;
        if off < 12 * count as usize || off.checked_add(len).is_none_or(|e| e > values_end) {
            return Err(bad(&format!(
                "sub-block {kind:#x} at {off}+{len} lies outside the block"
            )));
        }
        blocks.push(SubBlock {
            kind,
            offset: start + off,
            len,
        });
    }
    Ok(Some(SigningBlock {
        version,
        start,
        size,
        blocks,
    }))
}

/// The content digest (the value the PKCS#7 signature signs), for a zip whose local entries
/// end at `entries_end` (the block start, or the central directory if unsigned).
pub fn content_digest(
    data: &[u8],
    z: &ZipLayout,
    entries_end: usize,
    optional: &[&[u8]],
) -> [u8; 32] {
    let mut eocd = data[z.eocd..].to_vec();
    eocd[16..20].copy_from_slice(&(entries_end as u32).to_le_bytes());
    let segments: [&[u8]; 3] = [&data[..entries_end], &data[z.cd_offset..z.eocd], &eocd[..]];
    let chunks: usize = segments.iter().map(|s| s.len().div_ceil(CHUNK)).sum();
    let mut first = Vec::with_capacity(5 + 32 * chunks);
    first.push(0x5a);
    first.extend_from_slice(&(chunks as u32).to_le_bytes());
    for seg in segments {
        for c in seg.chunks(CHUNK) {
            let mut h = Sha256::new();
            h.update([0xa5]);
            h.update((c.len() as u32).to_le_bytes());
            h.update(c);
            first.extend_from_slice(&h.finalize());
        }
    }
    let mut h = Sha256::new();
    h.update(&first);
    for v in optional {
        h.update(v);
    }
    h.finalize().into()
}

/// The PKCS#7 encapsulated content for a digest: u32 version 2, u32 count 1, then u32 entry
/// length 0x28, u32 algorithm, u32 digest length 0x20 and the digest.
pub fn signed_content(digest: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(52);
    for x in [2u32, 1, 0x28, ALG_SHA256_ECDSA, 0x20] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(digest);
    v
}

/// The digests a signed content names: (algorithm, digest) pairs.
pub fn parse_signed_content(c: &[u8]) -> Option<Vec<(u32, Vec<u8>)>> {
    let n = u32_at(c, 4)? as usize;
    if n > 16 {
        return None;
    }
    let mut out = Vec::new();
    let mut p = 8;
    for _ in 0..n {
        let entry = u32_at(c, p)? as usize;
        let alg = u32_at(c, p + 4)?;
        let dl = u32_at(c, p + 8)? as usize;
        let d = c.get(p + 12..p + 12 + dl)?;
        out.push((alg, d.to_vec()));
        p = p.checked_add(4 + entry)?;
    }
    Some(out)
}

/// Builds a signed zip: the unsigned zip with a v3 block of `blocks` (type, value) inserted
/// before its central directory and the end record's offset moved past it.
pub fn insert_block(unsigned: &[u8], z: &ZipLayout, blocks: &[(u32, &[u8])]) -> Vec<u8> {
    let n = blocks.len();
    let values: usize = blocks.iter().map(|b| b.1.len()).sum();
    let size = BLOCK_HEADER_LEN * n + values + FOOTER_LEN;
    let mut block = Vec::with_capacity(size);
    let mut off = BLOCK_HEADER_LEN * n;
    for (kind, v) in blocks {
        block.extend_from_slice(&kind.to_le_bytes());
        block.extend_from_slice(&(v.len() as u32).to_le_bytes());
        block.extend_from_slice(&(off as u32).to_le_bytes());
        off += v.len();
    }
    for (_, v) in blocks {
        block.extend_from_slice(v);
    }
    block.extend_from_slice(&(n as u32).to_le_bytes());
    block.extend_from_slice(&(size as u64).to_le_bytes());
    block.extend_from_slice(MAGIC_V3);
    block.extend_from_slice(&3u32.to_le_bytes());
    let mut out = Vec::with_capacity(unsigned.len() + size);
    out.extend_from_slice(&unsigned[..z.cd_offset]);
    out.extend_from_slice(&block);
    out.extend_from_slice(&unsigned[z.cd_offset..]);
    let eocd = z.eocd + size;
    let new_cd = (z.cd_offset + size) as u32;
    out[eocd + 16..eocd + 20].copy_from_slice(&new_cd.to_le_bytes());
    out
}

fn u32_at(d: &[u8], i: usize) -> Option<u32> {
    d.get(i..i.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(d: &[u8], i: usize) -> Option<u16> {
    d.get(i..i.checked_add(2)?)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_zip() -> Vec<u8> {
        // An empty zip: only the end record.
        let mut v = vec![0x50, 0x4b, 0x05, 0x06];
        v.extend_from_slice(&[0u8; 18]);
        v
    }

    #[test]
    fn empty_zip_has_no_block_and_inserting_one_round_trips() {
        let z0 = tiny_zip();
        let l = zip_layout(&z0).unwrap();
        assert_eq!(l.cd_offset, 0);
        assert_eq!(find_block(&z0, &l).unwrap(), None);
        let signed = insert_block(
            &z0,
            &l,
            &[(BLOCK_PROFILE, b"prof"), (BLOCK_SIGNATURE, b"sig")],
        );
        let l2 = zip_layout(&signed).unwrap();
        let b = find_block(&signed, &l2).unwrap().unwrap();
        assert_eq!(b.version, 3);
        assert_eq!(b.start, 0);
        assert_eq!(b.value(&signed, BLOCK_PROFILE), Some(&b"prof"[..]));
        assert_eq!(b.value(&signed, BLOCK_SIGNATURE), Some(&b"sig"[..]));
        assert_eq!(b.optional_values(&signed), vec![&b"prof"[..]]);
        // The digest of the signed file equals the digest computed before insertion.
        let d0 = content_digest(&z0, &l, l.cd_offset, &[b"prof"]);
        let d1 = content_digest(&signed, &l2, b.start, &b.optional_values(&signed));
        assert_eq!(d0, d1);
    }

    #[test]
    fn signed_content_round_trips() {
        let d = [9u8; 32];
        let c = signed_content(&d);
        assert_eq!(parse_signed_content(&c).unwrap(), vec![(0x201, d.to_vec())]);
        assert!(parse_signed_content(&c[..20]).is_none());
    }

    #[test]
    fn not_a_zip() {
        assert_eq!(zip_layout(b"hello"), Err(SigningError::NoEocd));
        assert_eq!(zip_layout(&[0u8; 100]), Err(SigningError::NoEocd));
    }
}
