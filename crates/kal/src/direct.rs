//! Sequential file writes that bypass the page cache (O_DIRECT) where the file system allows
//! it, for large files that arrive from elsewhere (the soft bus's received files).
//!
//! Why: a received file goes to disk once and is not read back soon. Through the page cache
//! every byte is copied into a cache page, accounted as dirty, written back and then waited
//! for by the final fsync; on this kind of VM a buffered 1 GiB write + fsync ran at 0.95-1.4
//! GB/s and sometimes far less, a direct one at 1.7-2.0 GB/s. Direct I/O needs the buffer,
//! the file offset and the length aligned, so the writer gathers the arriving pieces in an
//! aligned buffer and writes whole buffers; the unaligned tail at the end goes through the
//! page cache. Where O_DIRECT is refused (tmpfs on older kernels, some FUSE file systems),
//! or the start offset is not aligned, it writes through the page cache and starts write-back
//! as it goes, so that the final fsync has little left to do.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

/// Alignment of the buffer address, file offset and length for direct writes: 4 KiB covers
/// the logical block size of practically every device and file system.
const ALIGN: usize = 4096;

/// Bytes gathered before one direct write: large enough that the device sees few, big
/// requests.
pub const DIRECT_CHUNK: usize = 4 << 20;

/// How much is written through the page cache before its write-back is started.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Writes one file front to back; see the module docs.
pub struct SeqWriter {
    file: File,
    /// File offset of the first gathered byte (direct) or of the next write (buffered).
    at: u64,
    /// Direct mode: `DIRECT_CHUNK + ALIGN` bytes, used from `start` (aligned). Empty otherwise.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    direct: bool,
    /// Buffered mode: where write-back was last started.
    flushed: u64,
}

impl SeqWriter {
    /// Starts writing `file` at offset `at`. Direct I/O is used when `at` is aligned and the
    /// file system accepts O_DIRECT on this file.
    pub fn new(file: File, at: u64) -> Self {
        let buf = vec![0u8; DIRECT_CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        let direct =
            at.is_multiple_of(ALIGN as u64) && start < ALIGN && set_direct(&file, true).is_ok();
        Self {
            file,
            at,
            buf: if direct { buf } else { Vec::new() },
            start: if direct { start } else { 0 },
            filled: 0,
            direct,
            flushed: at,
        }
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether writes currently bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bytes written or gathered so far, as a file offset.
    pub fn position(&self) -> u64 {
        self.at + self.filled as u64
    }

    /// Appends `data`.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        if !self.direct {
            return self.write_buffered(data);
        }
        while !data.is_empty() {
            let n = (DIRECT_CHUNK - self.filled).min(data.len());
            let from = self.start + self.filled;
            self.buf[from..from + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == DIRECT_CHUNK {
                self.write_gathered(DIRECT_CHUNK)?;
            }
        }
        Ok(())
    }

    /// Writes everything still gathered (the unaligned tail through the page cache), turns
    /// O_DIRECT off again and gives the file back. Durability still needs a sync after this.
    pub fn finish(mut self) -> io::Result<File> {
        if self.direct {
            let whole = self.filled / ALIGN * ALIGN;
            if whole > 0 {
                self.write_gathered(whole)?;
            }
        }
        if self.direct {
            self.direct = false;
            set_direct(&self.file, false)?;
        }
        if self.filled > 0 {
            let tail = self.buf[self.start..self.start + self.filled].to_vec();
            self.filled = 0;
            self.write_buffered(&tail)?;
        }
        Ok(self.file)
    }

    /// Writes the first `len` gathered bytes (a multiple of [`ALIGN`]) directly and keeps the
    /// rest. A file system that refuses the direct write after all (EINVAL) gets it, and
    /// everything after, through the page cache.
    fn write_gathered(&mut self, len: usize) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            let from = self.start + done;
            match self
                .file
                .write_at(&self.buf[from..self.start + len], self.at)
            {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    done += n;
                    self.at += n as u64;
                    if !n.is_multiple_of(ALIGN) {
                        // A short, unaligned write (a full disk, say): no more direct I/O.
                        return self.fall_back(done);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return self.fall_back(done),
                Err(e) => return Err(e),
            }
        }
        self.buf
            .copy_within(self.start + len..self.start + self.filled, self.start);
        self.filled -= len;
        Ok(())
    }

    /// Leaves direct mode with `done` gathered bytes already written: the rest goes through
    /// the page cache.
    fn fall_back(&mut self, done: usize) -> io::Result<()> {
        self.direct = false;
        set_direct(&self.file, false)?;
        let rest = self.buf[self.start + done..self.start + self.filled].to_vec();
        self.filled = 0;
        self.buf = Vec::new();
        self.flushed = self.at;
        self.write_buffered(&rest)
    }

    fn write_buffered(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.at)?;
        self.at += data.len() as u64;
        if self.at - self.flushed >= WRITEBACK_EVERY {
            let _ = crate::start_writeback(self.file.as_fd(), self.flushed, self.at - self.flushed);
            self.flushed = self.at;
        }
        Ok(())
    }
}

/// Turns O_DIRECT on or off for an open file (fcntl F_SETFL; it applies to the open file
/// description, so to every descriptor that shares it).
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    fcntl(file, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// Pieces of awkward sizes, crossing the gather buffer's edges, arrive whole and in
    /// order, whatever mode the file system allows; the file ends up with O_DIRECT off.
    #[test]
    fn odd_pieces_arrive_whole_and_direct_is_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut w = SeqWriter::new(file, 0);
        if !w.is_direct() {
            eprintln!("this file system refuses O_DIRECT: only the page-cache path is tested");
        }
        let mut want = Vec::new();
        for (i, n) in [
            1,
            4095,
            4097,
            DIRECT_CHUNK - 3,
            7,
            DIRECT_CHUNK * 2 + 5,
            12_345,
        ]
        .into_iter()
        .enumerate()
        {
            let p = pattern(n, i as u8);
            w.write(&p).unwrap();
            want.extend_from_slice(&p);
            assert_eq!(w.position(), want.len() as u64);
        }
        let file = w.finish().unwrap();
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_DIRECT, 0, "O_DIRECT left on");
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    /// An unaligned start cannot go direct, and still writes at the right place.
    #[test]
    fn an_unaligned_start_writes_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut w = SeqWriter::new(file, 3);
        assert!(!w.is_direct());
        w.write(b"def").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdef");
    }
}
