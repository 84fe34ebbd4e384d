//! The tar archives OpenHarmony's hdc makes of a directory it installs (`hdc install DIR`:
//! developtools_hdc's compress.cpp, entry.cpp, header.cpp): 512-byte headers, magic
//! `"ustar "` and version `" \0"`; size 11 octal digits and NUL; checksum as POSIX (the
//! field counted as blanks) in 7 octal digits and NUL; mode, owner and time left zero;
//! typeflag `'0'` (file) or `'5'` (directory); dotfiles skipped; no end-of-archive blocks.
//! A name of 100 bytes or more keeps its last 99 in `name` and the rest in `prefix`, and the
//! full name is prefix + name with no `/` between (unlike POSIX, whose readers misread it).
//!
//! [`TarReader`] takes the archive as it arrives, in pieces of any size, and says what is in
//! it without holding more than a header; [`write_entry`] writes OpenHarmony's format.

use thiserror::Error;

/// A tar block.
pub const BLOCK: usize = 512;
/// Longest name a header holds (prefix 99 + name 99, as hdc writes them).
pub const MAX_NAME: usize = 198;
const NAME: std::ops::Range<usize> = 0..100;
const SIZE: std::ops::Range<usize> = 124..136;
const CHKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const MAGIC: std::ops::Range<usize> = 257..263;
const VERSION: std::ops::Range<usize> = 263..265;
const PREFIX: std::ops::Range<usize> = 345..500;

/// A bad archive.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TarError {
    /// A header's checksum is wrong (not a tar, or damaged).
    #[error("a tar header's checksum is wrong")]
    Checksum,
    /// A size field is not octal.
    #[error("a tar header's size is not a number")]
    Size,
    /// A name that leaves the directory (`..`, absolute) or is empty or too long.
    #[error("a tar entry's name is not a path inside the package: {0:?}")]
    Name(String),
    /// The archive ends inside an entry.
    #[error("the tar ends inside an entry")]
    Truncated,
}

/// What an archive holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEvent {
    /// A directory.
    Dir(String),
    /// A file of `size` bytes: its [`TarEvent::Data`] follow, then [`TarEvent::FileEnd`].
    File {
        /// Its path inside the archive.
        path: String,
        /// Its size.
        size: u64,
    },
    /// Bytes of the current file.
    Data(Vec<u8>),
    /// The current file is complete.
    FileEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header.
    Header,
    /// In a file's bytes (`left` of them), then `pad` bytes to the block.
    Body { left: u64, pad: usize, file: bool },
    /// After the end-of-archive block: everything else is ignored.
    End,
}

/// A streaming reader of hdc's tar archives.
#[derive(Debug)]
pub struct TarReader {
    head: Vec<u8>,
    state: State,
}

impl Default for TarReader {
    fn default() -> Self {
        TarReader {
            head: Vec::with_capacity(BLOCK),
            state: State::Header,
        }
    }
}

fn octal(field: &[u8]) -> Result<u64, TarError> {
    let digits: &[u8] = field
        .split(|&b| b == 0 || b == b' ')
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    if digits.is_empty() {
        return Ok(0);
    }
    digits.iter().try_fold(0u64, |n, &d| match d {
        b'0'..=b'7' => n
            .checked_mul(8)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(TarError::Size),
        _ => Err(TarError::Size),
    })
}

fn cstr(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or_default()
}

/// The checksum of a header: every byte, the checksum field counted as blanks.
fn checksum(h: &[u8]) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, &b)| {
            if CHKSUM.contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum()
}

/// A name inside the package: relative, no `.` or `..` parts, not empty.
fn checked_name(raw: &[u8]) -> Result<String, TarError> {
    let name = String::from_utf8_lossy(raw).into_owned();
    let trimmed = name.trim_end_matches('/');
    let ok = !trimmed.is_empty()
        && name.len() <= MAX_NAME
        && !trimmed.starts_with('/')
        && trimmed
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(trimmed.to_string())
    } else {
        Err(TarError::Name(name.chars().take(MAX_NAME).collect()))
    }
}

impl TarReader {
    /// Takes the next piece of the archive; returns what it completes.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Vec<TarEvent>, TarError> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match self.state {
                State::End => break,
                State::Header => {
                    let take = (BLOCK - self.head.len()).min(data.len());
                    self.head.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.head.len() == BLOCK {
                        let h = std::mem::take(&mut self.head);
                        self.header(&h, &mut out)?;
                    }
                }
                State::Body { left, pad, file } => {
                    if left > 0 {
                        let take = (left.min(data.len() as u64)) as usize;
                        if file {
                            out.push(TarEvent::Data(data[..take].to_vec()));
                        }
                        data = &data[take..];
                        let left = left - take as u64;
                        self.state = match (left, pad) {
                            (0, 0) => State::Header,
                            _ => State::Body { left, pad, file },
                        };
                        if left == 0 && file {
                            out.push(TarEvent::FileEnd);
                        }
                    } else {
                        let take = pad.min(data.len());
                        data = &data[take..];
                        self.state = match pad - take {
                            0 => State::Header,
                            pad => State::Body { left, pad, file },
                        };
                    }
                }
            }
        }
        Ok(out)
    }

    fn header(&mut self, h: &[u8], out: &mut Vec<TarEvent>) -> Result<(), TarError> {
        if h.iter().all(|&b| b == 0) {
            self.state = State::End;
            return Ok(());
        }
        if octal(&h[CHKSUM])? != checksum(h) {
            return Err(TarError::Checksum);
        }
        let size = octal(&h[SIZE])?;
        let mut raw = cstr(&h[PREFIX]).to_vec();
        raw.extend_from_slice(cstr(&h[NAME]));
        let pad = ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize;
        let kind = h[TYPEFLAG];
        let file = matches!(kind, b'0' | 0);
        if file {
            let path = checked_name(&raw)?;
            out.push(TarEvent::File { path, size });
            if size == 0 {
                out.push(TarEvent::FileEnd);
            }
        } else if kind == b'5' {
            out.push(TarEvent::Dir(checked_name(&raw)?));
        }
        // Anything else (links, devices) is skipped with its bytes.
        self.state = if size == 0 && pad == 0 {
            State::Header
        } else {
            State::Body {
                left: size,
                pad,
                file,
            }
        };
        Ok(())
    }

    /// The archive is over: an error if it stopped inside an entry.
    pub fn finish(&self) -> Result<(), TarError> {
        match self.state {
            State::Header if self.head.is_empty() => Ok(()),
            State::End => Ok(()),
            _ => Err(TarError::Truncated),
        }
    }
}

/// A header as hdc writes it, for a file of `size` bytes or (`dir`) a directory.
pub fn header(name: &str, size: u64, dir: bool) -> Result<[u8; BLOCK], TarError> {
    let checked = checked_name(name.as_bytes())?;
    if checked != name {
        return Err(TarError::Name(name.into()));
    }
    let mut h = [0u8; BLOCK];
    let b = name.as_bytes();
    if b.len() < NAME.len() {
        h[..b.len()].copy_from_slice(b);
    } else {
        let (p, n) = b.split_at(b.len() - (NAME.len() - 1));
        h[NAME.start..NAME.start + n.len()].copy_from_slice(n);
        h[PREFIX.start..PREFIX.start + p.len()].copy_from_slice(p);
    }
    let size = if dir { 0 } else { size };
    let s = format!("{size:011o}");
    if s.len() > 11 {
        return Err(TarError::Size);
    }
    h[SIZE.start..SIZE.start + 11].copy_from_slice(s.as_bytes());
    h[TYPEFLAG] = if dir { b'5' } else { b'0' };
    h[MAGIC].copy_from_slice(b"ustar ");
    h[VERSION].copy_from_slice(b" \0");
    let sum = format!("{:07o}", checksum(&h));
    h[CHKSUM.start..CHKSUM.start + 7].copy_from_slice(sum.as_bytes());
    Ok(h)
}

/// Appends one entry to `out`: its header, its bytes, the padding to a block.
pub fn write_entry(out: &mut Vec<u8>, name: &str, data: &[u8], dir: bool) -> Result<(), TarError> {
    out.extend_from_slice(&header(name, data.len() as u64, dir)?);
    if !dir {
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    Ok(())
}

/// Fuzzing entry: any bytes, in any split, give events or an error, never a panic, and the
/// data events never exceed the sizes announced.
pub fn fuzz_one(data: &[u8]) {
    let split = data.first().map_or(1, |&b| usize::from(b) + 1);
    let mut r = TarReader::default();
    let (mut announced, mut got) = (0u64, 0u64);
    for part in data.chunks(split) {
        match r.feed(part) {
            Ok(evs) => {
                for e in evs {
                    match e {
                        TarEvent::File { size, .. } => announced += size,
                        TarEvent::Data(d) => got += d.len() as u64,
                        _ => {}
                    }
                }
                assert!(got <= announced);
            }
            Err(_) => return,
        }
    }
    let _ = r.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(tar: &[u8], split: usize) -> Result<Vec<TarEvent>, TarError> {
        let mut r = TarReader::default();
        let mut evs = Vec::new();
        for part in tar.chunks(split) {
            evs.extend(r.feed(part)?);
        }
        r.finish()?;
        // Data pieces joined, to compare whatever the split.
        let mut joined: Vec<TarEvent> = Vec::new();
        for e in evs {
            match (joined.last_mut(), e) {
                (Some(TarEvent::Data(a)), TarEvent::Data(b)) => a.extend(b),
                (_, e) => joined.push(e),
            }
        }
        Ok(joined)
    }

    /// The header bytes as header.cpp lays them out.
    #[test]
    fn headers_as_hdc_writes_them() {
        let h = header("entry/x.hap", 1234, false).unwrap();
        assert_eq!(&h[..11], b"entry/x.hap");
        assert_eq!(&h[124..136], b"00000002322\0");
        assert_eq!(h[156], b'0');
        assert_eq!(&h[257..265], b"ustar  \0");
        assert!(h[100..124].iter().all(|&b| b == 0), "mode, uid, gid zero");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum::<u64>()
            - h[148..156].iter().map(|&b| u64::from(b)).sum::<u64>()
            + 256;
        assert_eq!(&h[148..156], format!("{sum:07o}\0").as_bytes());
        // A long name: its last 99 bytes in name, the rest in prefix, no slash added.
        let long = format!("{}/{}", "d".repeat(60), "f".repeat(60));
        let h = header(&long, 0, false).unwrap();
        assert_eq!(cstr(&h[0..100]), &long.as_bytes()[long.len() - 99..]);
        assert_eq!(cstr(&h[345..500]), &long.as_bytes()[..long.len() - 99]);
    }

    #[test]
    fn an_archive_reads_back_in_any_split() {
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let long = format!("{}/{}.hap", "d".repeat(70), "f".repeat(70));
        let mut tar = Vec::new();
        write_entry(&mut tar, "entry", &[], true).unwrap();
        write_entry(&mut tar, "entry/a.hap", &big, false).unwrap();
        write_entry(&mut tar, "empty.hsp", &[], false).unwrap();
        write_entry(&mut tar, &long, b"x", false).unwrap();
        let want = vec![
            TarEvent::Dir("entry".into()),
            TarEvent::File {
                path: "entry/a.hap".into(),
                size: 5000,
            },
            TarEvent::Data(big.clone()),
            TarEvent::FileEnd,
            TarEvent::File {
                path: "empty.hsp".into(),
                size: 0,
            },
            TarEvent::FileEnd,
            TarEvent::File {
                path: long.clone(),
                size: 1,
            },
            TarEvent::Data(b"x".to_vec()),
            TarEvent::FileEnd,
        ];
        for split in [1, 7, 511, 512, 513, 4096, tar.len()] {
            assert_eq!(read_all(&tar, split).unwrap(), want, "split {split}");
        }
        // With POSIX's end blocks too (our reader stops there).
        tar.extend_from_slice(&[0u8; 1024]);
        tar.extend_from_slice(b"trailing junk");
        assert_eq!(read_all(&tar, 100).unwrap(), want);
    }

    #[test]
    fn bad_archives_are_errors() {
        let mut tar = Vec::new();
        write_entry(&mut tar, "a.hap", b"hello", false).unwrap();
        let mut bad = tar.clone();
        bad[0] = b'b';
        assert_eq!(read_all(&bad, 512), Err(TarError::Checksum));
        assert_eq!(read_all(&tar[..600], 512), Err(TarError::Truncated));
        assert_eq!(read_all(&tar[..100], 512), Err(TarError::Truncated));
        for evil in ["../x.hap", "/etc/x.hap", "a/../../x", "a//b", "."] {
            let mut h = [0u8; BLOCK];
            h[..evil.len()].copy_from_slice(evil.as_bytes());
            h[124..135].copy_from_slice(b"00000000000");
            h[156] = b'0';
            let sum = format!("{:07o}", checksum(&h));
            h[148..155].copy_from_slice(sum.as_bytes());
            assert!(
                matches!(read_all(&h, 512), Err(TarError::Name(_))),
                "{evil} was accepted"
            );
            assert!(header(evil, 0, false).is_err(), "{evil} was written");
        }
    }

    proptest::proptest! {
        #[test]
        fn fuzz_entry_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            fuzz_one(&data);
        }
    }
}
