//! OpenHarmony's code signatures (security_code_signature, hapsigner's `CodeSigning`): the
//! code-signing block in the HAP signing block's property block, fs-verity digests of the
//! HAP's leading code region and of each native library, and the detached PKCS#7 signature
//! over each digest. Pure functions over bytes: the parser checks every length against the
//! block before it reads, and the verifier recomputes every digest itself.
//!
//! Layout (little-endian, see docs/CODESIGN.md): the property block 0x20000003 holds records
//! `{u32 type, u32 size, u32 offset}` + payload; record [`RECORD_CODE_SIGN`] is the
//! code-signing block: a 32-byte header, three segment headers, padding, the HAP's Merkle
//! tree, then the fs-verity info, HAP info and native-library segments.

use crate::der::{oids, tag};
use crate::pkcs7;
use crate::signing::{BLOCK_PROPERTY, SigningBlock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Property record type of the code-signing block (hapsigner's HAP_CODE_SIGN_BLOCK_ID).
pub const RECORD_CODE_SIGN: u32 = 0x3000_0001;
/// A property record's header: type, size, offset.
pub const RECORD_HEADER_LEN: usize = 12;
/// The block's magic: the low 8 bytes of MD5("hap code sign block").
pub const MAGIC: u64 = 0xE046_C8C6_5389_FCCD;
/// The only block version.
pub const VERSION: u32 = 1;
/// The block header's length.
pub const HEADER_LEN: usize = 32;
/// One segment header's length: type, offset, size.
pub const SEGMENT_HEADER_LEN: usize = 12;
/// Segments a block has: fs-verity info, HAP info, native libraries (hapsigner writes 3).
pub const SEGMENTS: u32 = 3;
/// Segment type: fs-verity info.
pub const SEGMENT_FSVERITY: u32 = 1;
/// Segment type: the HAP's own signature.
pub const SEGMENT_HAP: u32 = 2;
/// Segment type: the native libraries' signatures.
pub const SEGMENT_NATIVE_LIBS: u32 = 3;
/// Header flag: the HAP's Merkle tree is stored in the block.
pub const FLAG_MERKLE_TREE_INLINED: u32 = 0x1;
/// Header flag: the block signs native libraries.
pub const FLAG_NATIVE_LIBS: u32 = 0x2;
/// fs-verity info segment: magic and length.
pub const FSVERITY_INFO_MAGIC: u32 = 0x1E38_31AB;
/// The fs-verity info segment's length.
pub const FSVERITY_INFO_LEN: usize = 64;
/// fs-verity descriptor version.
pub const FSVERITY_VERSION: u8 = 1;
/// fs-verity hash algorithm 1: SHA-256 (the only one OpenHarmony signs with).
pub const HASH_SHA256: u8 = 1;
/// log2 of the Merkle tree block size; the device refuses others.
pub const LOG2_BLOCK_SIZE: u8 = 12;
/// The Merkle tree block size: 4096, as Linux fs-verity's default and the page size.
pub const BLOCK_SIZE: usize = 1 << LOG2_BLOCK_SIZE;
/// HAP info segment magic.
pub const HAP_INFO_MAGIC: u32 = 0xC1B5_CC66;
/// Native library segment magic.
pub const NATIVE_LIB_MAGIC: u32 = 0x0ED2_E720;
/// Native library segment header: magic, length, count.
pub const NATIVE_LIB_HEADER_LEN: usize = 12;
/// One native library entry: name offset, name size, sign offset, sign size.
pub const NATIVE_LIB_ENTRY_LEN: usize = 16;
/// SignInfo's fixed part.
pub const SIGN_INFO_LEN: usize = 60;
/// SignInfo flag: a Merkle tree extension follows (the HAP's).
pub const SIGN_INFO_FLAG_MERKLE: u32 = 0x1;
/// Extension type: Merkle tree (size, offset, root hash).
pub const EXT_MERKLE_TREE: u32 = 1;
/// Extension type: page info (code sign v2: the page-type bitmap and its own signature).
pub const EXT_PAGE_INFO: u32 = 2;
/// Extension header: type, size.
pub const EXT_HEADER_LEN: usize = 8;
/// The Merkle tree extension's length.
pub const MERKLE_EXT_LEN: usize = 80;
/// The page info extension's fixed part.
pub const PAGE_INFO_EXT_LEN: usize = 24;
/// Largest page-info unit size the device accepts.
pub const MAX_PAGE_INFO_UNIT_SIZE: u8 = 7;
/// The fs-verity descriptor's length.
pub const DESCRIPTOR_LEN: usize = 256;
/// Descriptor flag: the tree offset field is set (OpenHarmony's FLAG_STORE_MERKLE_TREE_OFFSET).
pub const DESCRIPTOR_FLAG_TREE_OFFSET: u32 = 0x1;
/// Length of the signed content: "FSVerity", u16 algorithm, u16 length, digest.
pub const FORMATTED_DIGEST_LEN: usize = 44;
/// The ownerID of signatures made with a debug profile.
pub const DEBUG_OWNER_ID: &str = "DEBUG_LIB_ID";
/// Most native libraries one block may sign.
pub const MAX_LIBS: u32 = 4096;
/// Largest signature (PKCS#7) in a SignInfo; real ones are ~2.2 KB with a 3-certificate chain.
pub const MAX_SIGNATURE_LEN: u32 = 64 << 10;
/// Longest library name.
pub const MAX_NAME_LEN: u32 = 4096;
/// Most extensions a SignInfo may declare (hapsigner writes at most 2).
pub const MAX_EXTENSIONS: u32 = 8;
/// Longest salt.
pub const MAX_SALT_LEN: u32 = 32;

/// OpenHarmony's code-signature error codes (security_code_signature errcode.h), defined
/// once; [`CodeSignError::code`] is one of them.
pub mod cs {
    /// A file that should be signed has no signature.
    pub const NO_SIGNATURE: i32 = -0x3;
    /// A signature does not verify.
    pub const INVALID_SIGNATURE: i32 = -0x4;
    /// Not a signed HAP.
    pub const FILE_INVALID: i32 = -0x100;
    /// The signature's ownerID is not the app's.
    pub const INVALID_OWNER_ID: i32 = -0x303;
    /// The package has no code-signing block.
    pub const CODE_SIGN_NOT_EXISTS: i32 = -0x304;
    /// Bad block magic.
    pub const BLOCK_MAGIC: i32 = -0x600;
    /// Unknown block version.
    pub const BLOCK_VERSION: i32 = -0x601;
    /// Wrong segment count.
    pub const BLOCK_SEG_NUM: i32 = -0x602;
    /// Block size does not match its record.
    pub const BLOCK_SIZE: i32 = -0x603;
    /// Segment 1 is not fs-verity info.
    pub const SEGMENT_FSVERITY_TYPE: i32 = -0x604;
    /// Segment 2 is not HAP info.
    pub const SEGMENT_HAP_TYPE: i32 = -0x605;
    /// Segment 3 is not native-library info.
    pub const SEGMENT_SO_TYPE: i32 = -0x606;
    /// fs-verity segment outside the block.
    pub const SEGMENT_FSVERITY_OFFSET: i32 = -0x607;
    /// HAP segment outside the block.
    pub const SEGMENT_HAP_OFFSET: i32 = -0x608;
    /// Native-library segment outside the block.
    pub const SEGMENT_SO_OFFSET: i32 = -0x609;
    /// Bad fs-verity info magic.
    pub const FSVERITY_MAGIC: i32 = -0x610;
    /// Unknown fs-verity version.
    pub const FSVERITY_VERSION: i32 = -0x611;
    /// Block size other than 4096 (positive upstream too).
    pub const FSVERITY_BLOCK_SIZE: i32 = 0x612;
    /// Bad HAP info magic.
    pub const HAP_MAGIC: i32 = -0x613;
    /// Bad HAP extension.
    pub const HAP_EXTENSION: i32 = -0x614;
    /// Bad native-library magic.
    pub const SO_MAGIC: i32 = -0x615;
    /// Native-library count inconsistent with the flags or the segment.
    pub const SO_SECTION_NUM: i32 = -0x616;
    /// A library name outside the segment.
    pub const SO_FILE_OFFSET: i32 = -0x617;
    /// A library name too long or not UTF-8.
    pub const SO_FILE_SIZE: i32 = -0x618;
    /// A library signature outside the segment.
    pub const SO_SIGN_OFFSET: i32 = -0x619;
    /// A library signature of a bad size.
    pub const SO_SIGN_SIZE: i32 = -0x620;
    /// An extension outside its SignInfo.
    pub const INVALID_EXTENSION_OFFSET: i32 = -0x622;
    /// A bad page info extension.
    pub const INVALID_PAGE_INFO_EXTENSION: i32 = -0x623;
    /// A page info signature larger than its extension.
    pub const EXTENSION_SIGN_SIZE: i32 = -0x624;

    /// A code as OpenHarmony's sources write it: name and hex, e.g. `CS_ERR_NO_SIGNATURE -0x3`.
    pub fn describe(c: i32) -> String {
        if c < 0 {
            format!("{} -{:#x}", name(c), c.unsigned_abs())
        } else {
            format!("{} {c:#x}", name(c))
        }
    }

    /// OpenHarmony's name of a code.
    pub fn name(c: i32) -> &'static str {
        match c {
            NO_SIGNATURE => "CS_ERR_NO_SIGNATURE",
            INVALID_SIGNATURE => "CS_ERR_INVALID_SIGNATURE",
            FILE_INVALID => "CS_ERR_FILE_INVALID",
            INVALID_OWNER_ID => "CS_ERR_INVALID_OWNER_ID",
            CODE_SIGN_NOT_EXISTS => "CS_CODE_SIGN_NOT_EXISTS",
            BLOCK_MAGIC => "CS_ERR_BLOCK_MAGIC",
            BLOCK_VERSION => "CS_ERR_BLOCK_VERSION",
            BLOCK_SEG_NUM => "CS_ERR_BLOCK_SEG_NUM",
            BLOCK_SIZE => "CS_ERR_BLOCK_SIZE",
            SEGMENT_FSVERITY_TYPE => "CS_ERR_SEGMENT_FSVERITY_TYPE",
            SEGMENT_HAP_TYPE => "CS_ERR_SEGMENT_HAP_TYPE",
            SEGMENT_SO_TYPE => "CS_ERR_SEGMENT_SO_TYPE",
            SEGMENT_FSVERITY_OFFSET => "CS_ERR_SEGMENT_FSVERITY_OFFSET",
            SEGMENT_HAP_OFFSET => "CS_ERR_SEGMENT_HAP_OFFSET",
            SEGMENT_SO_OFFSET => "CS_ERR_SEGMENT_SO_OFFSET",
            FSVERITY_MAGIC => "CS_ERR_FSVERITY_MAGIC",
            FSVERITY_VERSION => "CS_ERR_FSVERITY_VERSION",
            FSVERITY_BLOCK_SIZE => "CS_ERR_FSVERITY_BLOCK_SIZE",
            HAP_MAGIC => "CS_ERR_HAP_MAGIC",
            HAP_EXTENSION => "CS_ERR_HAP_EXTERNSION",
            SO_MAGIC => "CS_ERR_SO_MAGIC",
            SO_SECTION_NUM => "CS_ERR_SO_SECTION_NUM",
            SO_FILE_OFFSET => "CS_ERR_SO_FILE_OFFSET",
            SO_FILE_SIZE => "CS_ERR_SO_FILE_SIZE",
            SO_SIGN_OFFSET => "CS_ERR_SO_SIGN_OFFSET",
            SO_SIGN_SIZE => "CS_ERR_SO_SIGN_SIZE",
            INVALID_EXTENSION_OFFSET => "CS_ERR_INVALID_EXTENSION_OFFSET",
            INVALID_PAGE_INFO_EXTENSION => "CS_ERR_INVALID_PAGE_INFO_EXTENSION",
            EXTENSION_SIGN_SIZE => "CS_ERR_EXTENSION_SIGN_SIZE",
            _ => "CS_ERR",
        }
    }
}

/// Why a code signature is refused: OpenHarmony's code ([`cs`]) and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({})", cs::describe(*.code))]
pub struct CodeSignError {
    /// One of [`cs`].
    pub code: i32,
    /// What was wrong, naming the file.
    pub reason: String,
}

impl CodeSignError {
    /// An error with `code` and a reason.
    pub fn new(code: i32, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// The Merkle tree extension: where the HAP's tree is in the file and its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerkleTreeExt {
    /// Tree length in bytes.
    pub tree_size: u64,
    /// Absolute file offset of the tree (4 KiB aligned).
    pub tree_offset: u64,
    /// The root hash (SHA-256).
    pub root_hash: [u8; 32],
}

/// The page info extension (code sign v2): the page-type bitmap and its own signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfoExt<'a> {
    /// File offset of the bitmap.
    pub map_offset: u64,
    /// Bitmap length in bits.
    pub map_size: u64,
    /// Bits per page.
    pub unit_size: u8,
    /// PKCS#7 over the v2 descriptor.
    pub signature: &'a [u8],
}

/// One signed file's parameters (hapsigner's SignInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInfo<'a> {
    /// [`SIGN_INFO_FLAG_MERKLE`] or 0.
    pub flags: u32,
    /// Bytes covered by fs-verity.
    pub data_size: u64,
    /// The salt (hapsigner never sets one).
    pub salt: &'a [u8],
    /// PKCS#7 SignedData over the formatted fs-verity digest.
    pub signature: &'a [u8],
    /// The Merkle tree extension (the HAP's).
    pub merkle: Option<MerkleTreeExt>,
    /// The page info extension (code sign v2).
    pub page_info: Option<PageInfoExt<'a>>,
}

/// One native library's entry: its ZIP entry name and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibSign<'a> {
    /// The ZIP entry name, e.g. `libs/arm64-v8a/libentry.so`.
    pub name: &'a str,
    /// Its SignInfo.
    pub info: SignInfo<'a>,
}

/// A parsed code-signing block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSignBlock<'a> {
    /// The offset its property record states (the block's absolute offset in the file).
    pub offset: u32,
    /// Header flags ([`FLAG_MERKLE_TREE_INLINED`], [`FLAG_NATIVE_LIBS`]).
    pub flags: u32,
    /// The HAP's own signature.
    pub hap: SignInfo<'a>,
    /// The native libraries' signatures.
    pub libs: Vec<LibSign<'a>>,
}

impl<'a> CodeSignBlock<'a> {
    /// The signature of library `name`.
    pub fn lib(&self, name: &str) -> Option<&SignInfo<'a>> {
        self.libs.iter().find(|l| l.name == name).map(|l| &l.info)
    }
}

fn u32_at(d: &[u8], i: usize) -> Option<u32> {
    d.get(i..i.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(d: &[u8], i: usize) -> Option<u64> {
    let b = d.get(i..i.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// `d[off..off+len]`, or `code` naming `what`.
fn slice<'a>(
    d: &'a [u8],
    off: usize,
    len: usize,
    code: i32,
    what: &str,
) -> Result<&'a [u8], CodeSignError> {
    off.checked_add(len)
        .and_then(|end| d.get(off..end))
        .ok_or_else(|| {
            CodeSignError::new(
                code,
                format!("{what} at {off}+{len} lies outside its {} bytes", d.len()),
            )
        })
}

/// The code-signing block of a signed package, `None` if it has none (no property block, or
/// no code-signing record in it).
pub fn find<'a>(
    data: &'a [u8],
    block: &SigningBlock,
) -> Result<Option<CodeSignBlock<'a>>, CodeSignError> {
    let Some(prop) = block.value(data, BLOCK_PROPERTY) else {
        return Ok(None);
    };
    let mut p = 0usize;
    while p < prop.len() {
        let rec = slice(
            prop,
            p,
            RECORD_HEADER_LEN,
            cs::BLOCK_SIZE,
            "a property record",
        )?;
        let (Some(kind), Some(size), Some(offset)) =
            (u32_at(rec, 0), u32_at(rec, 4), u32_at(rec, 8))
        else {
            return Err(CodeSignError::new(
                cs::BLOCK_SIZE,
                "truncated property record",
            ));
        };
        let payload = slice(
            prop,
            p + RECORD_HEADER_LEN,
            size as usize,
            cs::BLOCK_SIZE,
            "a property record's payload",
        )?;
        if kind == RECORD_CODE_SIGN {
            return parse(payload, offset).map(Some);
        }
        p += RECORD_HEADER_LEN + size as usize;
    }
    Ok(None)
}

/// Parses a code-signing block (the payload of its property record, which stated `offset`),
/// with the device's checks in its order and its codes.
pub fn parse(b: &[u8], offset: u32) -> Result<CodeSignBlock<'_>, CodeSignError> {
    let err = |c: i32, m: String| CodeSignError::new(c, m);
    let heads = HEADER_LEN + SEGMENT_HEADER_LEN * SEGMENTS as usize;
    if b.len() < heads {
        return Err(err(
            cs::BLOCK_SIZE,
            format!(
                "code-signing block of {} bytes, shorter than its headers",
                b.len()
            ),
        ));
    }
    let r32 = |i| u32_at(b, i).unwrap_or(0);
    if u64_at(b, 0) != Some(MAGIC) {
        return Err(err(
            cs::BLOCK_MAGIC,
            "not a code-signing block (bad magic)".into(),
        ));
    }
    if r32(8) != VERSION {
        return Err(err(
            cs::BLOCK_VERSION,
            format!("code-signing block version {}", r32(8)),
        ));
    }
    if r32(12) as usize != b.len() {
        return Err(err(
            cs::BLOCK_SIZE,
            format!(
                "code-signing block says {} bytes, its record holds {}",
                r32(12),
                b.len()
            ),
        ));
    }
    if r32(16) != SEGMENTS {
        return Err(err(
            cs::BLOCK_SEG_NUM,
            format!("{} segments, not {SEGMENTS}", r32(16)),
        ));
    }
    let flags = r32(20);
    let seg = |k: usize, kind: u32, type_err: i32, off_err: i32, what: &str| {
        let h = HEADER_LEN + SEGMENT_HEADER_LEN * k;
        if r32(h) != kind {
            return Err(err(
                type_err,
                format!("segment {} has type {}, not {kind} ({what})", k + 1, r32(h)),
            ));
        }
        slice(b, r32(h + 4) as usize, r32(h + 8) as usize, off_err, what)
    };
    let fsv = seg(
        0,
        SEGMENT_FSVERITY,
        cs::SEGMENT_FSVERITY_TYPE,
        cs::SEGMENT_FSVERITY_OFFSET,
        "the fs-verity info segment",
    )?;
    if fsv.len() < FSVERITY_INFO_LEN || u32_at(fsv, 0) != Some(FSVERITY_INFO_MAGIC) {
        return Err(err(cs::FSVERITY_MAGIC, "bad fs-verity info segment".into()));
    }
    if fsv[4] != FSVERITY_VERSION || fsv[5] != HASH_SHA256 {
        return Err(err(
            cs::FSVERITY_VERSION,
            format!("fs-verity version {} hash {}", fsv[4], fsv[5]),
        ));
    }
    if fsv[6] != LOG2_BLOCK_SIZE {
        return Err(err(
            cs::FSVERITY_BLOCK_SIZE,
            format!("fs-verity block size 2^{}, not 4096", fsv[6]),
        ));
    }
    let hap_seg = seg(
        1,
        SEGMENT_HAP,
        cs::SEGMENT_HAP_TYPE,
        cs::SEGMENT_HAP_OFFSET,
        "the HAP info segment",
    )?;
    if u32_at(hap_seg, 0) != Some(HAP_INFO_MAGIC) {
        return Err(err(cs::HAP_MAGIC, "bad HAP info magic".into()));
    }
    let hap = parse_sign_info(&hap_seg[4..], "the HAP", cs::HAP_EXTENSION)?;
    let so = seg(
        2,
        SEGMENT_NATIVE_LIBS,
        cs::SEGMENT_SO_TYPE,
        cs::SEGMENT_SO_OFFSET,
        "the native library segment",
    )?;
    if so.len() < NATIVE_LIB_HEADER_LEN || u32_at(so, 0) != Some(NATIVE_LIB_MAGIC) {
        return Err(err(cs::SO_MAGIC, "bad native library segment magic".into()));
    }
    let n = u32_at(so, 8).unwrap_or(0);
    if n > MAX_LIBS
        || (flags & FLAG_NATIVE_LIBS != 0 && n == 0)
        || NATIVE_LIB_HEADER_LEN + NATIVE_LIB_ENTRY_LEN * n as usize > so.len()
    {
        return Err(err(
            cs::SO_SECTION_NUM,
            format!(
                "{n} native libraries declared (flags {flags:#x}, segment of {} bytes, at most {MAX_LIBS})",
                so.len()
            ),
        ));
    }
    let mut libs = Vec::with_capacity(n as usize);
    for k in 0..n as usize {
        let e = NATIVE_LIB_HEADER_LEN + NATIVE_LIB_ENTRY_LEN * k;
        let f = |i| u32_at(so, e + i).unwrap_or(0) as usize;
        if f(4) as u32 > MAX_NAME_LEN || f(4) == 0 {
            return Err(err(
                cs::SO_FILE_SIZE,
                format!("native library {k}: name of {} bytes", f(4)),
            ));
        }
        let name = slice(so, f(0), f(4), cs::SO_FILE_OFFSET, "a library name")?;
        let name = std::str::from_utf8(name).map_err(|_| {
            err(
                cs::SO_FILE_SIZE,
                format!("native library {k}: name is not UTF-8"),
            )
        })?;
        if f(12) < SIGN_INFO_LEN {
            return Err(err(
                cs::SO_SIGN_SIZE,
                format!("{name}: SignInfo of {} bytes", f(12)),
            ));
        }
        let si = slice(so, f(8), f(12), cs::SO_SIGN_OFFSET, "a library signature")?;
        libs.push(LibSign {
            name,
            info: parse_sign_info(si, name, cs::SO_SIGN_SIZE)?,
        });
    }
    Ok(CodeSignBlock {
        offset,
        flags,
        hap,
        libs,
    })
}

/// Parses one SignInfo that starts `b` (its extensions lie within `b`).
fn parse_sign_info<'a>(
    b: &'a [u8],
    what: &str,
    size_err: i32,
) -> Result<SignInfo<'a>, CodeSignError> {
    let err = |c: i32, m: String| CodeSignError::new(c, format!("{what}: {m}"));
    if b.len() < SIGN_INFO_LEN {
        return Err(err(size_err, format!("SignInfo of {} bytes", b.len())));
    }
    let r32 = |i| u32_at(b, i).unwrap_or(0);
    let salt_size = r32(0);
    let sig_size = r32(4);
    let flags = r32(8);
    let data_size = u64_at(b, 12).unwrap_or(0);
    if salt_size > MAX_SALT_LEN {
        return Err(err(size_err, format!("salt of {salt_size} bytes")));
    }
    if sig_size == 0 || sig_size > MAX_SIGNATURE_LEN {
        return Err(err(
            size_err,
            format!("signature of {sig_size} bytes (at most {MAX_SIGNATURE_LEN})"),
        ));
    }
    let signature = slice(
        b,
        SIGN_INFO_LEN,
        sig_size as usize,
        size_err,
        "the signature",
    )
    .map_err(|e| err(e.code, e.reason))?;
    let mut info = SignInfo {
        flags,
        data_size,
        salt: &b[20..20 + salt_size as usize],
        signature,
        merkle: None,
        page_info: None,
    };
    // As the device: extensions count only when the SignInfo says a tree is included.
    if flags & SIGN_INFO_FLAG_MERKLE == 0 {
        return Ok(info);
    }
    let count = r32(52);
    if count > MAX_EXTENSIONS {
        return Err(err(
            cs::HAP_EXTENSION,
            format!("{count} extensions (at most {MAX_EXTENSIONS})"),
        ));
    }
    let mut p = r32(56) as usize;
    for _ in 0..count {
        let h = slice(
            b,
            p,
            EXT_HEADER_LEN,
            cs::INVALID_EXTENSION_OFFSET,
            "an extension",
        )
        .map_err(|e| err(e.code, e.reason))?;
        let (kind, size) = (r32_of(h, 0), r32_of(h, 4) as usize);
        let body = slice(
            b,
            p + EXT_HEADER_LEN,
            size,
            cs::INVALID_EXTENSION_OFFSET,
            "an extension's body",
        )
        .map_err(|e| err(e.code, e.reason))?;
        match kind {
            EXT_MERKLE_TREE => {
                if size != MERKLE_EXT_LEN {
                    return Err(err(
                        cs::HAP_EXTENSION,
                        format!("Merkle tree extension of {size} bytes"),
                    ));
                }
                let mut root_hash = [0u8; 32];
                root_hash.copy_from_slice(&body[16..48]);
                info.merkle = Some(MerkleTreeExt {
                    tree_size: u64_at(body, 0).unwrap_or(0),
                    tree_offset: u64_at(body, 8).unwrap_or(0),
                    root_hash,
                });
            }
            EXT_PAGE_INFO => {
                if size < PAGE_INFO_EXT_LEN {
                    return Err(err(
                        cs::INVALID_PAGE_INFO_EXTENSION,
                        format!("page info extension of {size} bytes"),
                    ));
                }
                let unit_size = body[16];
                if unit_size > MAX_PAGE_INFO_UNIT_SIZE {
                    return Err(err(
                        cs::INVALID_PAGE_INFO_EXTENSION,
                        format!("page info unit size {unit_size}"),
                    ));
                }
                let sign_size = r32_of(body, 20) as usize;
                if sign_size > size - PAGE_INFO_EXT_LEN || sign_size as u32 > MAX_SIGNATURE_LEN {
                    return Err(err(
                        cs::EXTENSION_SIGN_SIZE,
                        format!("page info signature of {sign_size} bytes in {size}"),
                    ));
                }
                info.page_info = Some(PageInfoExt {
                    map_offset: u64_at(body, 0).unwrap_or(0),
                    map_size: u64_at(body, 8).unwrap_or(0),
                    unit_size,
                    signature: &body[PAGE_INFO_EXT_LEN..PAGE_INFO_EXT_LEN + sign_size],
                });
            }
            // The device skips extensions it does not know.
            _ => {}
        }
        p += EXT_HEADER_LEN + size;
    }
    Ok(info)
}

fn r32_of(b: &[u8], i: usize) -> u32 {
    u32_at(b, i).unwrap_or(0)
}

// ---- fs-verity ----

/// The fs-verity Merkle tree of `data` as Linux builds it (SHA-256, 4096-byte blocks, no
/// salt): the tree bytes, root-most level first, and the root hash. Data of one block or
/// less has no tree: its root is the hash of the zero-padded block (all zero when empty).
pub fn merkle_tree(data: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let hash = |b: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b);
        if b.len() < BLOCK_SIZE {
            h.update(&[0u8; BLOCK_SIZE][..BLOCK_SIZE - b.len()]);
        }
        h.finalize().into()
    };
    if data.is_empty() {
        return (Vec::new(), [0; 32]);
    }
    if data.len() <= BLOCK_SIZE {
        return (Vec::new(), hash(data));
    }
    let mut levels: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = data.chunks(BLOCK_SIZE).flat_map(hash).collect();
    loop {
        let top = cur.len() <= BLOCK_SIZE;
        let mut padded = cur;
        padded.resize(padded.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
        let next: Vec<u8> = padded.chunks(BLOCK_SIZE).flat_map(hash).collect();
        levels.push(padded);
        if top {
            let mut root = [0u8; 32];
            root.copy_from_slice(&next);
            levels.reverse();
            return (levels.concat(), root);
        }
        cur = next;
    }
}

/// The 256-byte fs-verity descriptor that is digested: Linux's `struct fsverity_descriptor`
/// with OpenHarmony's flags and tree offset in its reserved area (both zero for libraries,
/// which makes it Linux's file digest).
pub fn descriptor(
    data_size: u64,
    root: &[u8; 32],
    salt: &[u8],
    flags: u32,
    tree_offset: u64,
) -> [u8; DESCRIPTOR_LEN] {
    let mut d = [0u8; DESCRIPTOR_LEN];
    d[0] = FSVERITY_VERSION;
    d[1] = HASH_SHA256;
    d[2] = LOG2_BLOCK_SIZE;
    let salt = &salt[..salt.len().min(MAX_SALT_LEN as usize)];
    d[3] = salt.len() as u8;
    d[8..16].copy_from_slice(&data_size.to_le_bytes());
    d[16..48].copy_from_slice(root);
    d[80..80 + salt.len()].copy_from_slice(salt);
    d[112..116].copy_from_slice(&flags.to_le_bytes());
    d[120..128].copy_from_slice(&tree_offset.to_le_bytes());
    d
}

/// The fs-verity file digest of `data` as Linux computes it (`fsverity digest`).
pub fn file_digest(data: &[u8]) -> [u8; 32] {
    let (_, root) = merkle_tree(data);
    Sha256::digest(descriptor(data.len() as u64, &root, &[], 0, 0)).into()
}

/// What the signature signs: "FSVerity", u16 algorithm 1, u16 length 32, the digest
/// (Linux's `fsverity_formatted_digest`).
pub fn formatted_digest(digest: &[u8; 32]) -> [u8; FORMATTED_DIGEST_LEN] {
    let mut v = [0u8; FORMATTED_DIGEST_LEN];
    v[..8].copy_from_slice(b"FSVerity");
    v[8..10].copy_from_slice(&(HASH_SHA256 as u16).to_le_bytes());
    v[10..12].copy_from_slice(&32u16.to_le_bytes());
    v[12..].copy_from_slice(digest);
    v
}

/// A signature that verified: its signer and the attributes the trust decision needs.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    /// The signer's certificate (DER).
    pub cert: &'a [u8],
    /// The embedded certificates.
    pub certs: Vec<&'a [u8]>,
    /// The ownerID attribute, if present.
    pub owner_id: Option<String>,
}

/// Verifies a code signature (detached PKCS#7) over `digest`.
pub fn check_signature<'a>(
    sig: &'a [u8],
    digest: &[u8; 32],
    what: &str,
) -> Result<Signed<'a>, CodeSignError> {
    let bad = |m: String| CodeSignError::new(cs::INVALID_SIGNATURE, format!("{what}: {m}"));
    let sd = pkcs7::parse(sig).map_err(|e| bad(format!("the signature is not PKCS#7: {e}")))?;
    let cert = sd
        .verify_detached(&formatted_digest(digest))
        .map_err(|e| match e {
            pkcs7::Pkcs7Error::DigestMismatch => bad(format!(
                "the signature was made over another fs-verity digest (computed {}): the file was changed after signing",
                hex(digest)
            )),
            e => bad(format!("{e}")),
        })?;
    let owner_id = sd
        .signed_attr(oids::OWNER_ID)
        .map_err(|e| bad(format!("{e}")))?
        .filter(|t| t.tag == tag::UTF8_STRING)
        .map(|t| String::from_utf8_lossy(t.value).into_owned());
    Ok(Signed {
        cert,
        certs: sd.certs,
        owner_id,
    })
}

/// The fs-verity digest the HAP's SignInfo describes, computed over `data` (the HAP file):
/// the tree over its first `dataSize` bytes must be the one stored at the tree offset and
/// have the extension's root.
pub fn hap_digest(
    data: &[u8],
    info: &SignInfo<'_>,
    covered_end: usize,
) -> Result<[u8; 32], CodeSignError> {
    let bad = |m: String| CodeSignError::new(cs::INVALID_SIGNATURE, format!("the HAP: {m}"));
    let size = usize::try_from(info.data_size)
        .ok()
        .filter(|s| *s <= covered_end)
        .ok_or_else(|| {
            bad(format!(
                "fs-verity covers {} bytes, past the entries that end at {covered_end}",
                info.data_size
            ))
        })?;
    if size % BLOCK_SIZE != 0 {
        return Err(bad(format!(
            "fs-verity covers {size} bytes, not a multiple of 4096"
        )));
    }
    let (tree, root) = merkle_tree(&data[..size]);
    let (flags, tree_offset) = match &info.merkle {
        Some(m) => {
            if m.root_hash != root {
                let at = first_changed_block(data, size, m)
                    .map(|o| match entry_at(data, o) {
                        Some(n) => format!(" (first changed 4 KiB block at {o}, in {n})"),
                        None => format!(" (first changed 4 KiB block at {o})"),
                    })
                    .unwrap_or_default();
                return Err(bad(format!(
                    "the Merkle root of its code region is {}, the signed one {}: the code was changed after signing{at}",
                    hex(&root),
                    hex(&m.root_hash)
                )));
            }
            if m.tree_size != 0 {
                let stored = usize::try_from(m.tree_offset)
                    .ok()
                    .filter(|o| o % BLOCK_SIZE == 0)
                    .and_then(|o| data.get(o..o.checked_add(m.tree_size as usize)?));
                if stored != Some(&tree[..]) {
                    return Err(bad(format!(
                        "the Merkle tree stored at {} ({} bytes) is not the tree of its code region",
                        m.tree_offset, m.tree_size
                    )));
                }
            }
            let f = if m.tree_offset != 0 {
                DESCRIPTOR_FLAG_TREE_OFFSET
            } else {
                0
            };
            (f, m.tree_offset)
        }
        None => (0, 0),
    };
    Ok(Sha256::digest(descriptor(
        info.data_size,
        &root,
        info.salt,
        flags,
        tree_offset,
    ))
    .into())
}

/// Where the code region first differs from what was signed: the first data block whose
/// hash differs from the leaf level of the tree stored in the file (itself covered by the
/// package signature), when that tree is there and of the right size.
fn first_changed_block(data: &[u8], size: usize, m: &MerkleTreeExt) -> Option<usize> {
    let blocks = size.div_ceil(BLOCK_SIZE);
    let leaf_len = (blocks * 32).div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    let start = usize::try_from(m.tree_offset).ok()?;
    let tree = data.get(start..start.checked_add(usize::try_from(m.tree_size).ok()?)?)?;
    let leaves = tree.get(tree.len().checked_sub(leaf_len)?..)?;
    (0..blocks).find_map(|k| {
        let h: [u8; 32] = Sha256::digest(&data[k * BLOCK_SIZE..(k + 1) * BLOCK_SIZE]).into();
        (leaves.get(k * 32..k * 32 + 32) != Some(&h[..])).then_some(k * BLOCK_SIZE)
    })
}

/// The ZIP entry whose local header or data holds file offset `at`.
fn entry_at(zip: &[u8], at: usize) -> Option<String> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).ok()?;
    let mut best: Option<(u64, String)> = None;
    for i in 0..a.len() {
        let f = a.by_index_raw(i).ok()?;
        let h = f.header_start();
        if h <= at as u64 && best.as_ref().is_none_or(|(b, _)| h > *b) {
            best = Some((h, String::from_utf8_lossy(f.name_raw()).into_owned()));
        }
    }
    best.map(|(_, n)| n)
}

/// The code sign v2 digest (page info extension): the descriptor with the unit size in its
/// flags, the bitmap's size and offset, and version byte 2 at its end.
pub fn hap_digest_v2(info: &SignInfo<'_>, root: &[u8; 32], p: &PageInfoExt<'_>) -> [u8; 32] {
    let (flags, tree_offset) = match &info.merkle {
        Some(m) if m.tree_offset != 0 => (DESCRIPTOR_FLAG_TREE_OFFSET, m.tree_offset),
        _ => (0, 0),
    };
    let mut d = descriptor(info.data_size, root, info.salt, flags, tree_offset);
    d[112..116].copy_from_slice(&(((p.unit_size as u32) << 1) | flags).to_le_bytes());
    d[116..120].copy_from_slice(&(p.map_size as u32).to_le_bytes());
    d[128..136].copy_from_slice(&p.map_offset.to_le_bytes());
    d[DESCRIPTOR_LEN - 1] = 2;
    Sha256::digest(d).into()
}

/// One signed file's outcome, as `hap verify` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileResult {
    /// `Hap` for the package's own code region, else the ZIP entry name.
    pub name: String,
    /// Verified.
    pub ok: bool,
    /// Bytes covered.
    pub data_size: u64,
    /// The fs-verity digest computed, hex (empty if not computed).
    pub digest: String,
    /// What was found, or why it failed.
    pub detail: String,
    /// OpenHarmony's code-signature error code ([`cs`]), 0 when verified.
    pub error_code: i32,
}

/// The code signature of a package, as `hap verify` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeSignReport {
    /// The package has a code-signing block.
    pub present: bool,
    /// Why the block could not be read, if it could not.
    pub error: Option<String>,
    /// The HAP's own code region.
    pub hap: Option<FileResult>,
    /// Each native library (`libs/...`) of the package.
    pub libs: Vec<FileResult>,
    /// Subject CN of the signer of the code signatures.
    pub signer: String,
    /// The ownerID the signatures carry.
    pub owner_id: Option<String>,
}

/// Whom the code signatures must come from.
#[derive(Debug, Clone, Default)]
pub struct Expect<'e> {
    /// The package signature's signer (DER): the code signatures must be made by it, or by a
    /// certificate whose chain reaches one of `roots`.
    pub signer: Option<&'e [u8]>,
    /// Trust roots (DER).
    pub roots: &'e [Vec<u8>],
    /// The ownerID the signatures must carry if they carry one ([`DEBUG_OWNER_ID`] for a
    /// debug profile, else the profile's app-identifier).
    pub owner_id: Option<String>,
}

/// Checks a verified signature's signer and ownerID against `expect`.
pub fn check_signer(s: &Signed<'_>, expect: &Expect<'_>, what: &str) -> Result<(), CodeSignError> {
    if expect.signer != Some(s.cert) {
        let ch = pkcs7::build_chain(s.cert, &s.certs, expect.roots);
        if !ch.trusted {
            return Err(CodeSignError::new(
                cs::INVALID_SIGNATURE,
                format!(
                    "{what}: signed by \"{}\", not the package's signer, and {}",
                    pkcs7::subject_cn(s.cert),
                    ch.problem.unwrap_or_default()
                ),
            ));
        }
    }
    if let (Some(want), Some(got)) = (&expect.owner_id, &s.owner_id)
        && want != got
    {
        return Err(CodeSignError::new(
            cs::INVALID_OWNER_ID,
            format!("{what}: ownerID \"{got}\", the app's is \"{want}\""),
        ));
    }
    Ok(())
}

/// Verifies one native library's bytes against its SignInfo.
pub fn verify_lib(
    name: &str,
    bytes: &[u8],
    info: &SignInfo<'_>,
    expect: &Expect<'_>,
) -> Result<([u8; 32], String, Option<String>), CodeSignError> {
    let digest = file_digest(bytes);
    if info.data_size != bytes.len() as u64 {
        return Err(CodeSignError::new(
            cs::INVALID_SIGNATURE,
            format!(
                "{name}: is {} bytes, its signature covers {}: the library was changed after signing",
                bytes.len(),
                info.data_size
            ),
        ));
    }
    let s = check_signature(info.signature, &digest, name)?;
    check_signer(&s, expect, name)?;
    Ok((digest, pkcs7::subject_cn(s.cert), s.owner_id))
}

/// Verifies a package's code signatures: the HAP's code region (`covered_end`: where its
/// entries end, i.e. the signing block's start) and each of `libs` (entry name, bytes).
pub fn verify(
    data: &[u8],
    covered_end: usize,
    block: &CodeSignBlock<'_>,
    libs: &[(String, Vec<u8>)],
    expect: &Expect<'_>,
) -> CodeSignReport {
    let mut r = CodeSignReport {
        present: true,
        ..Default::default()
    };
    let fail = |name: &str, size: u64, digest: String, e: CodeSignError| FileResult {
        name: name.into(),
        ok: false,
        data_size: size,
        digest,
        detail: e.reason,
        error_code: e.code,
    };
    let info = &block.hap;
    let hap = (|| {
        let d = hap_digest(data, info, covered_end)?;
        let s = check_signature(info.signature, &d, "the HAP")?;
        check_signer(&s, expect, "the HAP")?;
        r.signer = pkcs7::subject_cn(s.cert);
        r.owner_id = s.owner_id.clone();
        let mut detail = format!(
            "fs-verity over its first {} bytes, signed by \"{}\"",
            info.data_size, r.signer
        );
        if let (Some(p), Some(m)) = (&info.page_info, &info.merkle) {
            let d2 = hap_digest_v2(info, &m.root_hash, p);
            let s2 = check_signature(p.signature, &d2, "the HAP (page info)")?;
            check_signer(&s2, expect, "the HAP (page info)")?;
            detail.push_str(&format!(
                "; page info ({} bits at {}) signed too",
                p.map_size, p.map_offset
            ));
        }
        Ok::<_, CodeSignError>((d, detail))
    })();
    r.hap = Some(match hap {
        Ok((d, detail)) => FileResult {
            name: "Hap".into(),
            ok: true,
            data_size: info.data_size,
            digest: hex(&d),
            detail,
            error_code: 0,
        },
        Err(e) => fail("Hap", info.data_size, String::new(), e),
    });
    for (name, bytes) in libs {
        let res = match block.lib(name) {
            None => Err(CodeSignError::new(
                cs::NO_SIGNATURE,
                format!("{name}: has no code signature in the package's code-signing block"),
            )),
            Some(si) => verify_lib(name, bytes, si, expect),
        };
        r.libs.push(match res {
            Ok((d, signer, owner)) => {
                if r.signer.is_empty() {
                    r.signer = signer.clone();
                }
                if r.owner_id.is_none() {
                    r.owner_id = owner;
                }
                FileResult {
                    name: name.clone(),
                    ok: true,
                    data_size: bytes.len() as u64,
                    digest: hex(&d),
                    detail: format!("fs-verity digest {}, signed by \"{signer}\"", hex(&d)),
                    error_code: 0,
                }
            }
            Err(e) => fail(name, bytes.len() as u64, hex(&file_digest(bytes)), e),
        });
    }
    r
}

/// Whether a ZIP entry is one hapsigner signs as a native library: every file below `libs/`
/// and every `.an` (ahead-of-time compiled) file.
pub fn is_signed_lib(name: &str) -> bool {
    !name.ends_with('/') && (name.starts_with("libs/") || name.ends_with(".an"))
}

/// Whether hapsigner counts an entry as runnable code (which the kernel maps straight from
/// the HAP when it is stored uncompressed): `.abc`, `.so` and `.an` files.
fn is_runnable(name: &str) -> bool {
    name.ends_with(".abc") || name.ends_with(".so") || name.ends_with(".an")
}

/// The page-type bitmap entry of code sign v2, which the code region skips over.
const PAGES_INFO_ENTRY: &str = ".pages.info";

/// The HAP's code region, hapsigner's `computeDataSize`: its leading run of uncompressed
/// runnable entries (`is_runnable`), up to the data of the first other entry; 0 when the
/// first entry is not such code (as in packages whose code is all compressed). It must end
/// on a 4 KiB boundary (hapsigner aligns such packages so).
pub fn code_region(zip: &[u8]) -> Result<usize, CodeSignError> {
    let bad = |m: String| CodeSignError::new(cs::FILE_INVALID, m);
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| bad(format!("not a readable zip: {e}")))?;
    let mut entries = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        let f = a
            .by_index_raw(i)
            .map_err(|e| bad(format!("not a readable zip: {e}")))?;
        let name = String::from_utf8_lossy(f.name_raw());
        let code = f.compression() == zip::CompressionMethod::Stored
            && (is_runnable(&name) || name == PAGES_INFO_ENTRY);
        entries.push((f.header_start() as usize, code));
    }
    entries.sort_unstable();
    let Some(k) = entries.iter().position(|(_, code)| !code) else {
        return Err(bad(
            "every entry is uncompressed code: no end to the code region".into(),
        ));
    };
    if k == 0 {
        return Ok(0);
    }
    let h = entries[k].0;
    let field = |i: usize| -> Option<usize> {
        zip.get(h + i..h + i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let (Some(name), Some(extra)) = (field(26), field(28)) else {
        return Err(bad(format!("local header at {h} is truncated")));
    };
    let end = h + 30 + name + extra;
    if end % BLOCK_SIZE != 0 {
        return Err(bad(format!(
            "the uncompressed code ends at {end}, not on a 4 KiB boundary (align the package)"
        )));
    }
    Ok(end)
}

/// Lowercase hex.
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- signing ----

/// Makes a detached PKCS#7 over a formatted digest ([`formatted_digest`]).
pub type Signer<'s> = dyn Fn(&[u8; FORMATTED_DIGEST_LEN]) -> Result<Vec<u8>, CodeSignError> + 's;

/// Builds the property block value for a package: one record holding the code-signing
/// block that lands at absolute file offset `csb_offset` (the signer knows where the
/// signing block will put it). The HAP's code region is its first `data_size` bytes of
/// `data`; `libs` are (entry name, bytes); `sign` makes a detached PKCS#7 over a
/// formatted digest.
pub fn build_property(
    data: &[u8],
    data_size: usize,
    csb_offset: u64,
    libs: &[(String, Vec<u8>)],
    sign: &Signer<'_>,
) -> Result<Vec<u8>, CodeSignError> {
    let heads = HEADER_LEN + SEGMENT_HEADER_LEN * SEGMENTS as usize;
    let region = data.get(..data_size).ok_or_else(|| {
        CodeSignError::new(
            cs::FILE_INVALID,
            "the code region is past the end of the file",
        )
    })?;
    let (tree, root) = merkle_tree(region);
    // The tree starts on a 4 KiB boundary of the file, so the kernel can read it in place.
    let pad = if tree.is_empty() {
        0
    } else {
        (BLOCK_SIZE - (csb_offset as usize + heads) % BLOCK_SIZE) % BLOCK_SIZE
    };
    let tree_offset = if tree.is_empty() {
        0
    } else {
        csb_offset + (heads + pad) as u64
    };
    let flags = if tree_offset != 0 {
        DESCRIPTOR_FLAG_TREE_OFFSET
    } else {
        0
    };
    let d: [u8; 32] =
        Sha256::digest(descriptor(data_size as u64, &root, &[], flags, tree_offset)).into();
    let mut merkle = Vec::with_capacity(MERKLE_EXT_LEN);
    merkle.extend_from_slice(&(tree.len() as u64).to_le_bytes());
    merkle.extend_from_slice(&tree_offset.to_le_bytes());
    merkle.extend_from_slice(&root);
    merkle.extend_from_slice(&[0u8; 32]);
    let hap_info = sign_info(
        SIGN_INFO_FLAG_MERKLE,
        data_size as u64,
        &sign(&formatted_digest(&d))?,
        &[(EXT_MERKLE_TREE, &merkle)],
    );
    let mut names = Vec::new();
    let mut infos = Vec::new();
    for (name, bytes) in libs {
        let d = file_digest(bytes);
        names.push(name.as_bytes());
        infos.push(sign_info(
            0,
            bytes.len() as u64,
            &sign(&formatted_digest(&d))?,
            &[],
        ));
    }
    if libs.len() > MAX_LIBS as usize {
        return Err(CodeSignError::new(
            cs::SO_SECTION_NUM,
            format!("{} native libraries, more than {MAX_LIBS}", libs.len()),
        ));
    }
    // The native library segment.
    let mut so = Vec::new();
    let table = NATIVE_LIB_HEADER_LEN + NATIVE_LIB_ENTRY_LEN * libs.len();
    let names_len: usize = names.iter().map(|n| n.len()).sum();
    let infos_at = (table + names_len).div_ceil(4) * 4;
    let total = infos_at + infos.iter().map(Vec::len).sum::<usize>();
    so.extend_from_slice(&NATIVE_LIB_MAGIC.to_le_bytes());
    so.extend_from_slice(&(total as u32).to_le_bytes());
    so.extend_from_slice(&(libs.len() as u32).to_le_bytes());
    let (mut name_at, mut info_at) = (table, infos_at);
    for (n, i) in names.iter().zip(&infos) {
        for v in [name_at, n.len(), info_at, i.len()] {
            so.extend_from_slice(&(v as u32).to_le_bytes());
        }
        name_at += n.len();
        info_at += i.len();
    }
    for n in &names {
        so.extend_from_slice(n);
    }
    so.resize(infos_at, 0);
    for i in &infos {
        so.extend_from_slice(i);
    }
    let mut fsv = vec![0u8; FSVERITY_INFO_LEN];
    fsv[..4].copy_from_slice(&FSVERITY_INFO_MAGIC.to_le_bytes());
    fsv[4] = FSVERITY_VERSION;
    fsv[5] = HASH_SHA256;
    fsv[6] = LOG2_BLOCK_SIZE;
    let mut hap_seg = HAP_INFO_MAGIC.to_le_bytes().to_vec();
    hap_seg.extend_from_slice(&hap_info);
    let seg1 = heads + pad + tree.len();
    let seg2 = seg1 + fsv.len();
    let seg3 = seg2 + hap_seg.len();
    let size = seg3 + so.len();
    let mut b = Vec::with_capacity(RECORD_HEADER_LEN + size);
    b.extend_from_slice(&RECORD_CODE_SIGN.to_le_bytes());
    b.extend_from_slice(&(size as u32).to_le_bytes());
    b.extend_from_slice(&(csb_offset as u32).to_le_bytes());
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(size as u32).to_le_bytes());
    b.extend_from_slice(&SEGMENTS.to_le_bytes());
    let hflags = FLAG_MERKLE_TREE_INLINED | if libs.is_empty() { 0 } else { FLAG_NATIVE_LIBS };
    b.extend_from_slice(&hflags.to_le_bytes());
    b.extend_from_slice(&[0u8; 8]);
    for (kind, off, len) in [
        (SEGMENT_FSVERITY, seg1, fsv.len()),
        (SEGMENT_HAP, seg2, hap_seg.len()),
        (SEGMENT_NATIVE_LIBS, seg3, so.len()),
    ] {
        for v in [kind, off as u32, len as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b.resize(RECORD_HEADER_LEN + heads + pad, 0);
    b.extend_from_slice(&tree);
    b.extend_from_slice(&fsv);
    b.extend_from_slice(&hap_seg);
    b.extend_from_slice(&so);
    Ok(b)
}

/// One SignInfo: fixed part, signature padded to 4, extensions.
fn sign_info(flags: u32, data_size: u64, sig: &[u8], exts: &[(u32, &[u8])]) -> Vec<u8> {
    let ext_at = (SIGN_INFO_LEN + sig.len()).div_ceil(4) * 4;
    let mut v = Vec::with_capacity(ext_at + 96);
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&(sig.len() as u32).to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&data_size.to_le_bytes());
    v.extend_from_slice(&[0u8; 32]);
    v.extend_from_slice(&(exts.len() as u32).to_le_bytes());
    v.extend_from_slice(&(ext_at as u32).to_le_bytes());
    v.extend_from_slice(sig);
    v.resize(ext_at, 0);
    for (kind, body) in exts {
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
    }
    v
}

/// Parser entry for fuzzing: never panics, whatever the bytes.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(b) = parse(data, 0) {
        let _ = hap_digest(data, &b.hap, data.len());
        for l in &b.libs {
            let _ = check_signature(l.info.signature, &[0; 32], l.name);
        }
    }
}
