//! The socket protocol without I/O, in quinn-proto's shape: frames and the time go in, frames
//! to write, events to deliver and close reasons come out. No tasks, streams or clocks: the
//! adapter (`transport::session`) reads and writes the QUIC streams and feeds this.
//!
//! - [`Opening`]: a stream a peer opened, until its first frame ([`OPEN_TIMEOUT`]); an `Open`
//!   becomes an [`OpenRequest`], answered `Accept` or `Reject` ([`OpenRequest::answer`]:
//!   listener, [`MAX_SOCKETS_PER_PEER`]). [`Dialing`] is the other side.
//! - [`Receiver`]: what arrives on one socket (messages, bytes, files numbered per direction,
//!   acks for our files); every protocol violation closes the socket with a reason.
//! - [`FileSender`]: the file being sent on one socket, checked before anything is written.
//! - [`Acks`]: which sender's `End` an incoming `FileAck` completes.

use super::frame::Frame;
use crate::proto::{
    Checksum, DataType, FilePiece, MAX_BYTES, MAX_FILE_CHUNK, MAX_MESSAGE, SessionError,
    SocketEvent, sanitize_file_name,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sockets one peer device may have open to this device at once. An `Open` past it is
/// answered with `Reject` naming the limit (the peer's `Bind` fails with it). An app pair
/// needs a socket per session; 128 is many sessions, and each costs a task and a frame.
pub const MAX_SOCKETS_PER_PEER: usize = 128;
/// How long a new stream may take to send its first frame; one that says nothing for this
/// long is dropped unread.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest file path a sender may announce (Linux's PATH_MAX; each name in it is checked
/// against [`crate::proto::MAX_FILE_NAME`] by the receiver).
pub(crate) const MAX_FILE_PATH: usize = 4096;

/// Why a socket closed when its peer ended the stream without a `Shutdown`.
pub(crate) const PEER_CLOSED: &str = "peer closed the socket";
/// Why a file is skipped when its receiving client cannot take it.
const CLIENT_GONE: &str = "the receiving client is gone";

/// A stream a peer opened, until it says what it is.
#[derive(Debug)]
pub(crate) struct Opening {
    deadline: Instant,
}

/// What a new stream is, from its first frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum First {
    /// A socket, to answer with [`OpenRequest::answer`].
    Open(OpenRequest),
    /// A stream of remote SA calls.
    Dbinder,
    /// Anything else, or nothing: drop the stream.
    Drop,
}

impl Opening {
    /// A stream that arrived at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            deadline: now + OPEN_TIMEOUT,
        }
    }

    /// When the stream is dropped if it has not sent its first frame.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True when the stream is past its deadline at `now` and must be dropped.
    pub(crate) fn on_timeout(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// The stream's first frame (`None`: it ended or was unreadable).
    pub(crate) fn handle(self, first: Option<Frame>) -> First {
        match first {
            Some(Frame::Open {
                name,
                from,
                data_type,
                socket,
            }) => First::Open(OpenRequest {
                name,
                peer_name: from,
                data_type,
                peer_socket: socket,
            }),
            Some(Frame::Dbinder) => First::Dbinder,
            _ => First::Drop,
        }
    }
}

/// A peer's request to open a socket to one of our listeners.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OpenRequest {
    /// The listener's name.
    pub(crate) name: String,
    /// The peer's own socket name.
    pub(crate) peer_name: String,
    /// The socket's data type.
    pub(crate) data_type: DataType,
    /// The peer's id for the socket (what our datagrams name).
    pub(crate) peer_socket: u64,
}

/// The answer to an [`OpenRequest`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer<L> {
    /// Write `Accept`, tell the listener with the `Bind` event, and serve the socket.
    Accept {
        /// The listener (whatever the caller looked up).
        listener: L,
        /// Our id for the socket.
        id: u64,
        /// The frame to write.
        frame: Frame,
    },
    /// Write `Reject` and finish the stream.
    Reject(Frame),
}

impl OpenRequest {
    /// Accepts the socket, under a fresh id from `new_id`, if `listener` (the live listener of
    /// the name, on a live connection) exists and the peer has fewer than
    /// [`MAX_SOCKETS_PER_PEER`] sockets open.
    pub(crate) fn answer<L>(
        &self,
        listener: Option<L>,
        peer_sockets: usize,
        new_id: impl FnOnce() -> u64,
    ) -> Answer<L> {
        let Some(listener) = listener else {
            return Answer::Reject(Frame::Reject {
                reason: format!("no listener for session {:?}", self.name),
            });
        };
        if peer_sockets >= MAX_SOCKETS_PER_PEER {
            return Answer::Reject(Frame::Reject {
                reason: format!(
                    "too busy: {peer_sockets} sockets from this device (limit {MAX_SOCKETS_PER_PEER})"
                ),
            });
        }
        let id = new_id();
        Answer::Accept {
            listener,
            id,
            frame: Frame::Accept { socket: id },
        }
    }

    /// The event the listener hears for the socket `id` from the device `peer_network_id`
    /// named `peer_device`.
    pub(crate) fn bind_event(
        self,
        id: u64,
        peer_network_id: String,
        peer_device: String,
    ) -> SocketEvent {
        SocketEvent::Bind {
            socket: id,
            name: self.name,
            peer_name: self.peer_name,
            peer_network_id,
            peer_device,
        }
    }
}

/// Opening a socket to a peer's listener: the `Open` frame, then the peer's answer.
pub(crate) struct Dialing;

impl Dialing {
    /// The frame that opens socket `id` (ours) to the listener `name`, from our socket `from`.
    pub(crate) fn open(name: &str, from: &str, data_type: DataType, id: u64) -> Frame {
        Frame::Open {
            name: name.into(),
            from: from.into(),
            data_type,
            socket: id,
        }
    }

    /// The peer's id for the socket, from its answer (`None`: the stream ended).
    pub(crate) fn answer(first: Option<Frame>) -> Result<u64, SessionError> {
        match first {
            Some(Frame::Accept { socket }) => Ok(socket),
            Some(Frame::Reject { reason }) => Err(SessionError::Refused(reason)),
            _ => Err(SessionError::Io("peer sent no answer".into())),
        }
    }
}

/// What the adapter does with one incoming frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do.
    None,
    /// Deliver an event to the socket's owner.
    Event(SocketEvent),
    /// A file begins: make sure the socket's file queue exists (else call
    /// [`Receiver::client_gone`]), then deliver the event.
    FileBegin(SocketEvent),
    /// Queue a piece for the owner to pull; if it cannot be queued, tell
    /// [`Receiver::undelivered`].
    Piece(FilePiece),
    /// Write this frame on the socket's stream (a refusal of the peer's file).
    Write(Frame),
    /// The peer's verdict on our file `seq`: hand it to [`Acks::on_ack`].
    Acked {
        /// Which of our files.
        seq: u64,
        /// `None`: saved.
        error: Option<String>,
    },
    /// The socket is over, for this reason; then call [`Receiver::cut_off`].
    Close(String),
}

/// A file arriving on a socket.
#[derive(Debug)]
struct InFile {
    seq: u64,
    size: u64,
    got: u64,
    /// `Some` when the file is skipped (refused name, client gone): why.
    skipped: Option<String>,
}

/// The receiving side of one socket: what each incoming frame means.
#[derive(Debug)]
pub(crate) struct Receiver {
    id: u64,
    file: Option<InFile>,
    /// The seq of the next file the peer begins (files are numbered per direction).
    next_seq: u64,
}

impl Receiver {
    /// The receiver of our socket `id` (the id events name).
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            file: None,
            next_seq: 0,
        }
    }

    /// The next frame of the stream; `None` when the peer ended it.
    pub(crate) fn handle(&mut self, frame: Option<Frame>) -> Step {
        let socket = self.id;
        let Some(frame) = frame else {
            return Step::Close(PEER_CLOSED.into());
        };
        match frame {
            Frame::Message(data) if data.len() <= MAX_MESSAGE => {
                Step::Event(SocketEvent::Message { socket, data })
            }
            Frame::Bytes(data) if data.len() <= MAX_BYTES => {
                Step::Event(SocketEvent::Bytes { socket, data })
            }
            Frame::Shutdown { reason } => Step::Close(reason),
            Frame::FileBegin { name, size } => {
                if self.file.is_some() {
                    return protocol("a file began inside another");
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                let (skipped, step) = match sanitize_file_name(&name) {
                    Ok(clean) => (
                        None,
                        Step::FileBegin(SocketEvent::FileBegin {
                            socket,
                            name: clean,
                            size,
                        }),
                    ),
                    Err(e) => {
                        let reason = format!("refused: {e}");
                        let ev = SocketEvent::FileRefused {
                            socket,
                            name,
                            reason: reason.clone(),
                        };
                        (Some(reason), Step::Event(ev))
                    }
                };
                self.file = Some(InFile {
                    seq,
                    size,
                    got: 0,
                    skipped,
                });
                step
            }
            Frame::FileData(data) => {
                let Some(f) = self.file.as_mut() else {
                    return protocol("file data outside a file");
                };
                f.got += data.len() as u64;
                if f.got > f.size {
                    return protocol("more file data than announced");
                }
                match f.skipped {
                    Some(_) => Step::None,
                    None => Step::Piece(FilePiece::Data(data)),
                }
            }
            Frame::FileEnd { checksum } => self.file_end(checksum),
            Frame::FileAbort { reason } => match self.file.take() {
                Some(InFile { skipped: None, .. }) => Step::Piece(FilePiece::Broken {
                    reason: format!("the sender gave up: {reason}"),
                }),
                _ => Step::None,
            },
            Frame::FileAck { seq, error } => Step::Acked { seq, error },
            _ => Step::Close("protocol error".into()),
        }
    }

    fn file_end(&mut self, checksum: Checksum) -> Step {
        let Some(f) = self.file.as_ref() else {
            return protocol("file end outside a file");
        };
        if f.got != f.size {
            return Step::Close(format!(
                "protocol error: file ended after {} of {} bytes",
                f.got, f.size
            ));
        }
        let Some(f) = self.file.take() else {
            return Step::None;
        };
        match f.skipped {
            Some(error) => Step::Write(Frame::FileAck {
                seq: f.seq,
                error: Some(error),
            }),
            None => Step::Piece(FilePiece::End {
                checksum,
                seq: f.seq,
            }),
        }
    }

    /// A piece could not reach the owner: for a file's end, the frame that tells the sender;
    /// for its data, the rest of the file is skipped ([`Receiver::client_gone`]).
    pub(crate) fn undelivered(&mut self, piece: &FilePiece) -> Option<Frame> {
        match piece {
            FilePiece::End { seq, .. } => Some(Frame::FileAck {
                seq: *seq,
                error: Some(CLIENT_GONE.into()),
            }),
            FilePiece::Data(_) => {
                self.client_gone();
                None
            }
            FilePiece::Broken { .. } => None,
        }
    }

    /// The owner cannot take the current file (its queue is gone): the rest of it is skipped,
    /// and its end is answered with an error.
    pub(crate) fn client_gone(&mut self) {
        if let Some(f) = self.file.as_mut() {
            f.skipped.get_or_insert_with(|| CLIENT_GONE.into());
        }
    }

    /// The socket ended for `reason`: a file cut off on the way, for its owner to discard.
    pub(crate) fn cut_off(&mut self, reason: &str) -> Option<FilePiece> {
        match self.file.take() {
            Some(InFile { skipped: None, .. }) => Some(FilePiece::Broken {
                reason: format!("transfer broken: {reason}"),
            }),
            _ => None,
        }
    }
}

fn protocol(what: &str) -> Step {
    Step::Close(format!("protocol error: {what}"))
}

/// A file being sent: its number, announced size and bytes sent so far.
#[derive(Debug, Clone, Copy)]
struct OutFile {
    seq: u64,
    size: u64,
    sent: u64,
}

/// The sending side of one socket's files: each call checks the step and says what to write.
#[derive(Debug, Default)]
pub(crate) struct FileSender {
    file: Option<OutFile>,
    next_seq: u64,
}

fn invalid(m: String) -> SessionError {
    SessionError::Invalid(m)
}

impl FileSender {
    /// Begins a file: the `FileBegin` frame to write (call [`FileSender::abandon`] if that fails).
    pub(crate) fn begin(&mut self, name: String, size: u64) -> Result<Frame, SessionError> {
        if self.file.is_some() {
            return Err(invalid(
                "a file is already being sent on this socket".into(),
            ));
        }
        if name.is_empty() || name.len() > MAX_FILE_PATH || name.contains('\0') {
            return Err(invalid(format!(
                "file name {name:?} must be 1..={MAX_FILE_PATH} bytes without NUL"
            )));
        }
        self.file = Some(OutFile {
            seq: self.next_seq,
            size,
            sent: 0,
        });
        self.next_seq += 1;
        Ok(Frame::FileBegin { name, size })
    }

    /// The `FileBegin` just made could not be written: no file is in progress.
    pub(crate) fn abandon(&mut self) {
        self.file = None;
    }

    /// The next `len` bytes at `offset`: true when there is a `FileData` frame to write
    /// (an empty chunk writes nothing).
    pub(crate) fn data(&mut self, offset: u64, len: usize) -> Result<bool, SessionError> {
        let Some(f) = self.file.as_mut() else {
            return Err(invalid("no file begun on this socket".into()));
        };
        if offset != f.sent {
            return Err(invalid(format!(
                "file chunk at offset {offset}, expected {}",
                f.sent
            )));
        }
        if len > MAX_FILE_CHUNK {
            return Err(invalid(format!(
                "file chunk of {len} bytes exceeds {MAX_FILE_CHUNK}"
            )));
        }
        if f.sent + len as u64 > f.size {
            return Err(invalid(format!(
                "more data than the {} bytes announced",
                f.size
            )));
        }
        f.sent += len as u64;
        Ok(len > 0)
    }

    /// All bytes sent: the file's seq (whose `FileAck` completes this end, see [`Acks`]) and
    /// the `FileEnd` frame to write.
    pub(crate) fn end(&mut self, checksum: Checksum) -> Result<(u64, Frame), SessionError> {
        let Some(f) = self.file else {
            return Err(invalid("no file begun on this socket".into()));
        };
        if f.sent != f.size {
            return Err(invalid(format!(
                "only {} of the {} bytes announced were sent",
                f.sent, f.size
            )));
        }
        self.file = None;
        Ok((f.seq, Frame::FileEnd { checksum }))
    }

    /// Gives up on the file in progress: the `FileAbort` to write, if one was.
    pub(crate) fn abort(&mut self, reason: String) -> Option<Frame> {
        self.file.take().map(|_| Frame::FileAbort { reason })
    }
}

/// Why a sender's `End` failed when its socket closed first.
pub(crate) const CLOSED_BEFORE_ACK: &str =
    "the socket closed before the receiver confirmed the file";

/// Senders waiting for the receiver's verdict on their file, by seq: `W` is how the adapter
/// wakes one.
#[derive(Debug)]
pub(crate) struct Acks<W> {
    waiting: HashMap<u64, W>,
}

impl<W> Default for Acks<W> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
        }
    }
}

impl<W> Acks<W> {
    /// `w` waits for the verdict on file `seq` (from [`FileSender::end`]).
    pub(crate) fn expect(&mut self, seq: u64, w: W) {
        self.waiting.insert(seq, w);
    }

    /// Stops waiting for `seq` (its `FileEnd` was never written); the waiter, if any.
    pub(crate) fn cancel(&mut self, seq: u64) -> Option<W> {
        self.waiting.remove(&seq)
    }

    /// The verdict on `seq` arrived: the waiter it completes and the result of its `End`;
    /// `None` for a seq nobody waits for (ignored).
    pub(crate) fn on_ack(
        &mut self,
        seq: u64,
        error: Option<String>,
    ) -> Option<(W, Result<(), SessionError>)> {
        let w = self.waiting.remove(&seq)?;
        Some((
            w,
            error.map_or(Ok(()), |e| Err(SessionError::FileRejected(e))),
        ))
    }

    /// The socket closed: every waiter, each of whose `End` fails with [`CLOSED_BEFORE_ACK`].
    pub(crate) fn close(&mut self) -> Vec<W> {
        self.waiting.drain().map(|(_, w)| w).collect()
    }

    /// True when nobody waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
