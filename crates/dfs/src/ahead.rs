//! Read-ahead for a file read from another device, as a plan apart from the link: the
//! calls for the chunks ahead of a sequential reader are kept in flight together, so the
//! link's round trip and the owner's disk overlap with the reading instead of adding up.
//!
//! The window starts at [`MIN_WINDOW`] chunks of [`CHUNK`] bytes and doubles each time the
//! reader has to wait for a chunk (the round trip was longer than reading the chunks ahead
//! of it took), up to [`MAX_WINDOW`]: it grows with the round trip, as the issue asks, and
//! stays small on a fast link. A read just past the window (the kernel's parallel reads
//! overtaking each other) stretches it; one far past it (a seek) starts it again there; a
//! read behind it (a straggler) is left to a direct call.
//! Chunks are aligned to [`CHUNK`], so the kernel's aligned reads fall within one chunk and
//! are served without a copy. Nothing is read ahead past the size the file had at open
//! (close-to-open: a file grown since is read directly).

use crate::proto::MAX_IO;
use std::borrow::Cow;
use std::collections::VecDeque;

/// What one read-ahead call asks for.
pub const CHUNK: u64 = MAX_IO as u64;
/// The window a sequential reader starts with, in chunks.
pub const MIN_WINDOW: usize = 2;
/// The largest window, in chunks (what one file may hold read ahead).
pub const MAX_WINDOW: usize = 16;

/// Where chunks come from: the owner, through the link.
pub trait Source {
    /// A chunk's call in flight.
    type Ticket;
    /// Sends the call for `size` bytes at `offset`; `None` when no more may be in flight
    /// (the views' budget of read-ahead memory is spent).
    fn start(&self, offset: u64, size: u32) -> Option<Self::Ticket>;
    /// The chunk's bytes (or errno), waiting for them if they are not here; whether it
    /// had to wait.
    fn finish(&self, t: &mut Self::Ticket) -> (Result<Vec<u8>, i32>, bool);
}

struct Chunk<T> {
    offset: u64,
    end: u64,
    /// Kept until the chunk is dropped (it may hold a share of a memory budget).
    ticket: T,
    got: Option<Result<Vec<u8>, i32>>,
}

/// What a read is answered with.
#[derive(Debug, PartialEq, Eq)]
pub enum Served<'a> {
    /// The bytes (fewer than asked at the end of the file).
    Data(Cow<'a, [u8]>),
    /// The read failed with this errno.
    Failed(i32),
    /// Not read ahead: call the owner for it directly.
    Direct,
}

/// The read-ahead state of one open file.
pub struct ReadAhead<T> {
    chunks: VecDeque<Chunk<T>>,
    /// Where the next chunk starts.
    next: u64,
    /// The file's size when it was opened.
    size: u64,
    /// Chunks kept in flight or ready.
    window: usize,
}

impl<T> ReadAhead<T> {
    /// Read-ahead for a file of `size` bytes (its size at open).
    pub fn new(size: u64) -> Self {
        Self {
            chunks: VecDeque::new(),
            next: 0,
            size,
            window: MIN_WINDOW,
        }
    }

    /// The window, in chunks.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Forgets what was read ahead (the file was written through this handle).
    pub fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Serves a read of `len` bytes at `offset`, keeping the window full ahead of it.
    pub fn read<S: Source<Ticket = T>>(&mut self, src: &S, offset: u64, len: u32) -> Served<'_> {
        let want_end = offset.saturating_add(u64::from(len));
        if len == 0 || offset >= self.size {
            return Served::Direct;
        }
        // Chunks behind the read go, but one not read yet stays a little while: a read
        // that was overtaken by this one may still come for it.
        while self
            .chunks
            .front()
            .is_some_and(|c| c.end <= offset && (c.got.is_some() || c.end + 2 * CHUNK <= offset))
        {
            self.chunks.pop_front();
        }
        match self.chunks.front() {
            Some(c) if offset < c.offset => return Served::Direct,
            Some(_) if offset < self.next => {}
            // Just past the window: the kernel's parallel reads overtook each other; the
            // window reaches out to it and keeps what is in flight.
            Some(_) if offset < self.next + MAX_WINDOW as u64 * CHUNK => {
                while self.next <= offset && self.next < self.size {
                    if !self.push(src) {
                        break;
                    }
                }
            }
            // Empty, or a jump far past the window: start it again here.
            _ => {
                self.chunks.clear();
                self.next = offset;
            }
        }
        self.fill(src);
        let Some(i) = self
            .chunks
            .iter()
            .position(|c| c.offset <= offset && offset < c.end)
        else {
            return Served::Direct;
        };
        if let Err(e) = self.resolve(src, i) {
            self.chunks.clear();
            return Served::Failed(e);
        }
        // `resolve` left bytes there.
        let (c_off, c_end, have) = {
            let c = &self.chunks[i];
            let n = c
                .got
                .as_ref()
                .and_then(|g| g.as_ref().ok())
                .map_or(0, Vec::len);
            (c.offset, c.end, n as u64)
        };
        let from = (offset - c_off) as usize;
        // A short chunk is the end of the file (it shrank since the open).
        if want_end <= c_end || c_off + have < c_end || i + 1 >= self.chunks.len() {
            let data = self.data(i);
            let to = (from + len as usize).min(data.len());
            return Served::Data(Cow::Borrowed(&data[from.min(to)..to]));
        }
        // The read spans two chunks: both, copied together.
        if let Err(e) = self.resolve(src, i + 1) {
            self.chunks.clear();
            return Served::Failed(e);
        }
        let mut out = self.data(i)[from..].to_vec();
        let rest = (want_end - c_end) as usize;
        let next = self.data(i + 1);
        out.extend_from_slice(&next[..rest.min(next.len())]);
        Served::Data(Cow::Owned(out))
    }

    /// Issues chunks until the window is full (or the file's end, or the budget).
    fn fill<S: Source<Ticket = T>>(&mut self, src: &S) {
        while self.chunks.len() < self.window && self.next < self.size {
            if !self.push(src) {
                return;
            }
        }
    }

    /// Issues the next chunk; false when the budget is spent.
    fn push<S: Source<Ticket = T>>(&mut self, src: &S) -> bool {
        let end = ((self.next / CHUNK + 1) * CHUNK).min(self.size);
        // At most CHUNK (MAX_IO, a u32) bytes.
        let Some(ticket) = src.start(self.next, (end - self.next) as u32) else {
            return false;
        };
        self.chunks.push_back(Chunk {
            offset: self.next,
            end,
            ticket,
            got: None,
        });
        self.next = end;
        true
    }

    /// Waits for chunk `i` if it is not here; a wait widens the window.
    fn resolve<S: Source<Ticket = T>>(&mut self, src: &S, i: usize) -> Result<(), i32> {
        let c = &mut self.chunks[i];
        if c.got.is_none() {
            let (got, waited) = src.finish(&mut c.ticket);
            c.got = Some(got);
            if waited && self.window < MAX_WINDOW {
                self.window *= 2;
            }
        }
        match &self.chunks[i].got {
            Some(Err(e)) => Err(*e),
            _ => Ok(()),
        }
    }

    fn data(&self, i: usize) -> &[u8] {
        match &self.chunks[i].got {
            Some(Ok(d)) => d,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// A file of `size` bytes, byte i = i % 251, whose chunks arrive only when waited for
    /// (`slow`) or at once; it records the calls.
    struct Fake {
        size: u64,
        slow: bool,
        calls: RefCell<Vec<(u64, u32)>>,
        budget: Cell<usize>,
        fail_at: Option<u64>,
    }

    impl Fake {
        fn new(size: u64, slow: bool) -> Self {
            Fake {
                size,
                slow,
                calls: RefCell::new(Vec::new()),
                budget: Cell::new(usize::MAX),
                fail_at: None,
            }
        }
        fn bytes(&self, offset: u64, len: u64) -> Vec<u8> {
            (offset..(offset + len).min(self.size))
                .map(|i| (i % 251) as u8)
                .collect()
        }
    }

    impl Source for Fake {
        type Ticket = (u64, u32);
        fn start(&self, offset: u64, size: u32) -> Option<(u64, u32)> {
            let b = self.budget.get();
            if b == 0 {
                return None;
            }
            self.budget.set(b - 1);
            self.calls.borrow_mut().push((offset, size));
            Some((offset, size))
        }
        fn finish(&self, t: &mut (u64, u32)) -> (Result<Vec<u8>, i32>, bool) {
            if self.fail_at == Some(t.0) {
                return (Err(5), self.slow);
            }
            (Ok(self.bytes(t.0, u64::from(t.1))), self.slow)
        }
    }

    fn data(s: Served<'_>) -> Vec<u8> {
        match s {
            Served::Data(d) => d.into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sequential_reader_gets_every_byte_and_the_window_grows_while_it_waits() {
        let size = 20 * CHUNK + 12_345;
        let src = Fake::new(size, true);
        let mut ra = ReadAhead::new(size);
        let mut at = 0;
        while at < size {
            let d = data(ra.read(&src, at, 128 * 1024));
            assert_eq!(d, src.bytes(at, 128 * 1024), "at {at}");
            at += d.len() as u64;
        }
        assert_eq!(ra.window(), MAX_WINDOW);
        let calls = src.calls.borrow();
        assert!(calls.iter().all(|(o, _)| o % CHUNK == 0), "aligned");
        assert_eq!(calls.len(), 21, "each chunk asked once, none past the end");
    }

    #[test]
    fn a_fast_source_keeps_the_window_small() {
        let size = 8 * CHUNK;
        let src = Fake::new(size, false);
        let mut ra = ReadAhead::new(size);
        for i in 0..32 {
            data(ra.read(&src, i * 256 * 1024, 256 * 1024));
        }
        assert_eq!(ra.window(), MIN_WINDOW);
    }

    #[test]
    fn seeks_restart_the_window_and_stragglers_go_direct() {
        let size = 10 * CHUNK;
        let src = Fake::new(size, false);
        let mut ra = ReadAhead::new(size);
        // Unaligned, spanning two chunks: copied together.
        let at = CHUNK - 100;
        assert_eq!(data(ra.read(&src, at, 4096)), src.bytes(at, 4096));
        let at = 7 * CHUNK + 5;
        assert_eq!(data(ra.read(&src, at, 1000)), src.bytes(at, 1000));
        assert_eq!(ra.read(&src, 3 * CHUNK, 10), Served::Direct, "behind");
        // Just past the window (parallel reads out of order): reached, the rest kept.
        let calls = src.calls.borrow().len();
        let at = 9 * CHUNK + 7;
        assert_eq!(data(ra.read(&src, at, 100)), src.bytes(at, 100));
        assert_eq!(
            data(ra.read(&src, 8 * CHUNK, 100)),
            src.bytes(8 * CHUNK, 100)
        );
        assert_eq!(src.calls.borrow().len(), calls + 1, "only chunk 9 was new");
        assert_eq!(
            ra.read(&src, size, 10),
            Served::Direct,
            "past the size at open"
        );
        assert_eq!(data(ra.read(&src, size - 10, 4096)).len(), 10);
    }

    #[test]
    fn errors_are_answered_and_forgotten_and_a_spent_budget_reads_directly() {
        let size = 4 * CHUNK;
        let mut src = Fake::new(size, false);
        src.fail_at = Some(CHUNK);
        let mut ra = ReadAhead::new(size);
        data(ra.read(&src, 0, 4096));
        assert_eq!(ra.read(&src, CHUNK, 4096), Served::Failed(5));
        src.fail_at = None;
        assert_eq!(data(ra.read(&src, CHUNK, 4096)), src.bytes(CHUNK, 4096));
        let src = Fake::new(size, false);
        src.budget.set(0);
        let mut ra = ReadAhead::new(size);
        assert_eq!(ra.read(&src, 0, 4096), Served::Direct);
    }
}
