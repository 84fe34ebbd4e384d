//! The core alone: every decision, protocol violation and limit, with no streams and no clock
//! (times are a base instant plus offsets).

use super::*;
use crate::proto::FileHasher;

const ID: u64 = 5;

fn begin(name: &str, size: u64) -> Frame {
    Frame::FileBegin {
        name: name.into(),
        size,
    }
}

fn end(data: &[u8]) -> Frame {
    Frame::FileEnd {
        checksum: FileHasher::of(data),
    }
}

/// Feeds `frames` to a fresh receiver: every step, the last being the one to check.
fn feed(frames: Vec<Frame>) -> (Receiver, Vec<Step>) {
    let mut r = Receiver::new(ID);
    let steps = frames.into_iter().map(|f| r.handle(Some(f))).collect();
    (r, steps)
}

fn closed(frames: Vec<Frame>) -> String {
    let (_, steps) = feed(frames);
    match steps.last() {
        Some(Step::Close(reason)) => reason.clone(),
        other => panic!("not closed: {other:?}"),
    }
}

#[test]
fn a_file_arrives_numbered_in_pieces_and_its_end_names_its_seq() {
    let (mut r, steps) = feed(vec![
        begin("dir/a.txt", 5),
        Frame::FileData(b"hel".to_vec()),
        Frame::FileData(b"lo".to_vec()),
        end(b"hello"),
        begin("b", 0),
        end(b""),
    ]);
    assert_eq!(
        steps,
        [
            Step::FileBegin(SocketEvent::FileBegin {
                socket: ID,
                name: "a.txt".into(),
                size: 5
            }),
            Step::Piece(FilePiece::Data(b"hel".to_vec())),
            Step::Piece(FilePiece::Data(b"lo".to_vec())),
            Step::Piece(FilePiece::End {
                checksum: FileHasher::of(b"hello"),
                seq: 0
            }),
            Step::FileBegin(SocketEvent::FileBegin {
                socket: ID,
                name: "b".into(),
                size: 0
            }),
            Step::Piece(FilePiece::End {
                checksum: FileHasher::of(b""),
                seq: 1
            }),
        ]
    );
    // Between files nothing is cut off.
    assert_eq!(r.cut_off("x"), None);
}

#[test]
fn messages_bytes_and_acks_pass_through() {
    let (_, steps) = feed(vec![
        Frame::Message(vec![1; MAX_MESSAGE]),
        Frame::Bytes(vec![2; 3]),
        Frame::FileAck {
            seq: 4,
            error: Some("disk full".into()),
        },
    ]);
    assert_eq!(
        steps,
        [
            Step::Event(SocketEvent::Message {
                socket: ID,
                data: vec![1; MAX_MESSAGE]
            }),
            Step::Event(SocketEvent::Bytes {
                socket: ID,
                data: vec![2; 3]
            }),
            Step::Acked {
                seq: 4,
                error: Some("disk full".into())
            },
        ]
    );
}

#[test]
fn protocol_violations_close_the_socket_with_their_reason() {
    assert_eq!(
        closed(vec![begin("a", 1), begin("b", 1)]),
        "protocol error: a file began inside another"
    );
    assert_eq!(
        closed(vec![Frame::FileData(vec![1])]),
        "protocol error: file data outside a file"
    );
    assert_eq!(
        closed(vec![begin("a", 1), Frame::FileData(vec![1, 2])]),
        "protocol error: more file data than announced"
    );
    assert_eq!(
        closed(vec![end(b"")]),
        "protocol error: file end outside a file"
    );
    assert_eq!(
        closed(vec![begin("a", 3), Frame::FileData(vec![1]), end(b"")]),
        "protocol error: file ended after 1 of 3 bytes"
    );
    // Past the limits (which the frame reader enforces too), and frames that only open.
    assert_eq!(
        closed(vec![Frame::Message(vec![0; MAX_MESSAGE + 1])]),
        "protocol error"
    );
    assert_eq!(
        closed(vec![Frame::Bytes(vec![0; MAX_BYTES + 1])]),
        "protocol error"
    );
    assert_eq!(closed(vec![Frame::Accept { socket: 1 }]), "protocol error");
    assert_eq!(closed(vec![Frame::Dbinder]), "protocol error");
    assert_eq!(
        closed(vec![Frame::Shutdown {
            reason: "bye".into()
        }]),
        "bye"
    );
    let mut r = Receiver::new(ID);
    assert_eq!(r.handle(None), Step::Close(PEER_CLOSED.into()));
}

#[test]
fn a_refused_name_is_skipped_and_answered_with_its_reason() {
    let (_, steps) = feed(vec![
        begin("../x", 2),
        Frame::FileData(vec![1, 2]),
        end(&[1, 2]),
        begin("ok", 0),
    ]);
    let Step::Event(SocketEvent::FileRefused { name, reason, .. }) = &steps[0] else {
        panic!("{:?}", steps[0]);
    };
    assert_eq!(name, "../x");
    assert!(
        reason.starts_with("refused: ") && reason.contains(".."),
        "{reason}"
    );
    assert_eq!(steps[1], Step::None);
    assert_eq!(
        steps[2],
        Step::Write(Frame::FileAck {
            seq: 0,
            error: Some(reason.clone())
        })
    );
    // The refused file took seq 0.
    assert!(matches!(steps[3], Step::FileBegin(_)));
    // A refused file is still held to its size.
    assert_eq!(
        closed(vec![begin("../x", 1), Frame::FileData(vec![1, 2])]),
        "protocol error: more file data than announced"
    );
}

#[test]
fn an_owner_that_cannot_take_a_file_gets_the_rest_skipped() {
    let (mut r, steps) = feed(vec![begin("a", 4), Frame::FileData(vec![1, 2])]);
    let piece = FilePiece::Data(vec![1, 2]);
    assert_eq!(steps[1], Step::Piece(piece.clone()));
    assert_eq!(r.undelivered(&piece), None);
    assert_eq!(r.handle(Some(Frame::FileData(vec![3, 4]))), Step::None);
    assert_eq!(
        r.handle(Some(end(&[1, 2, 3, 4]))),
        Step::Write(Frame::FileAck {
            seq: 0,
            error: Some("the receiving client is gone".into())
        })
    );
    // An end that cannot be queued is answered too.
    let end_piece = FilePiece::End {
        checksum: [0; 16],
        seq: 7,
    };
    assert_eq!(
        r.undelivered(&end_piece),
        Some(Frame::FileAck {
            seq: 7,
            error: Some("the receiving client is gone".into())
        })
    );
    // No queue at all from the start: the same.
    let (mut r, _) = feed(vec![begin("a", 0)]);
    r.client_gone();
    assert!(matches!(r.handle(Some(end(b""))), Step::Write(_)));
}

#[test]
fn aborts_and_cut_offs_break_the_file_in_progress() {
    let (mut r, _) = feed(vec![begin("a", 4), Frame::FileData(vec![1])]);
    assert_eq!(
        r.handle(Some(Frame::FileAbort {
            reason: "unreadable".into()
        })),
        Step::Piece(FilePiece::Broken {
            reason: "the sender gave up: unreadable".into()
        })
    );
    // The abort ended the file: the next one may begin, and a second abort says nothing.
    assert_eq!(
        r.handle(Some(Frame::FileAbort { reason: "x".into() })),
        Step::None
    );
    assert!(matches!(r.handle(Some(begin("b", 9))), Step::FileBegin(_)));
    assert_eq!(
        r.cut_off("connection lost"),
        Some(FilePiece::Broken {
            reason: "transfer broken: connection lost".into()
        })
    );
    // A skipped file has nobody to tell.
    let (mut r, _) = feed(vec![begin("../x", 4)]);
    assert_eq!(r.cut_off("gone"), None);
}

#[test]
fn the_sender_checks_each_step_with_its_reasons() {
    fn err<T: std::fmt::Debug>(r: Result<T, SessionError>) -> String {
        match r {
            Err(SessionError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        }
    }
    let mut s = FileSender::default();
    assert_eq!(
        err(s.data(0, 1)),
        "no file begun on this socket".to_string()
    );
    assert_eq!(err(s.end([0; 16])), "no file begun on this socket");
    assert!(err(s.begin(String::new(), 1)).contains("must be 1..=4096 bytes without NUL"));
    assert!(err(s.begin("a\0b".into(), 1)).contains("without NUL"));
    assert!(err(s.begin("n".repeat(MAX_FILE_PATH + 1), 1)).contains("4096"));
    assert_eq!(s.begin("f".into(), 3), Ok(begin("f", 3)));
    assert_eq!(
        err(s.begin("g".into(), 1)),
        "a file is already being sent on this socket"
    );
    assert_eq!(err(s.data(1, 1)), "file chunk at offset 1, expected 0");
    assert_eq!(
        err(s.data(0, MAX_FILE_CHUNK + 1)),
        format!(
            "file chunk of {} bytes exceeds {MAX_FILE_CHUNK}",
            MAX_FILE_CHUNK + 1
        )
    );
    assert_eq!(err(s.data(0, 4)), "more data than the 3 bytes announced");
    assert_eq!(s.data(0, 0), Ok(false));
    assert_eq!(s.data(0, 2), Ok(true));
    assert_eq!(
        err(s.end([0; 16])),
        "only 2 of the 3 bytes announced were sent"
    );
    assert_eq!(s.data(2, 1), Ok(true));
    assert_eq!(
        s.end([1; 16]),
        Ok((0, Frame::FileEnd { checksum: [1; 16] }))
    );
    // Files are numbered in order; an abort ends the file (and only a file in progress).
    assert_eq!(s.abort("x".into()), None);
    s.begin("h".into(), 9).unwrap();
    assert_eq!(
        s.abort("unreadable".into()),
        Some(Frame::FileAbort {
            reason: "unreadable".into()
        })
    );
    s.begin("i".into(), 0).unwrap();
    assert_eq!(s.end([0; 16]).map(|(seq, _)| seq), Ok(2));
    // A begin that could not be written leaves no file in progress.
    s.begin("j".into(), 5).unwrap();
    s.abandon();
    assert_eq!(err(s.data(0, 1)), "no file begun on this socket");
}

#[test]
fn each_ack_completes_the_end_of_its_own_seq() {
    let mut a: Acks<&str> = Acks::default();
    a.expect(0, "first");
    a.expect(1, "second");
    assert_eq!(a.on_ack(5, None), None);
    assert_eq!(a.on_ack(1, None), Some(("second", Ok(()))));
    assert_eq!(a.on_ack(1, None), None, "an ack completes one end only");
    assert_eq!(
        a.on_ack(0, Some("checksum".into())),
        Some(("first", Err(SessionError::FileRejected("checksum".into()))))
    );
    a.expect(2, "third");
    assert_eq!(a.cancel(2), Some("third"));
    a.expect(3, "fourth");
    assert_eq!(a.close(), ["fourth"]);
    assert!(a.is_empty());
}

/// The request a dialer's `Open` makes on the accepting side.
fn request(name: &str) -> OpenRequest {
    let open = Dialing::open(name, "me", DataType::Bytes, 9);
    match Opening::new(Instant::now()).handle(Some(open)) {
        First::Open(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn opens_are_accepted_by_a_listener_under_the_peer_limit() {
    let req = request("chat");
    assert_eq!(
        req,
        OpenRequest {
            name: "chat".into(),
            peer_name: "me".into(),
            data_type: DataType::Bytes,
            peer_socket: 9
        }
    );
    assert_eq!(
        req.answer(Some("l"), 0, || 42),
        Answer::Accept {
            listener: "l",
            id: 42,
            frame: Frame::Accept { socket: 42 }
        }
    );
    assert_eq!(
        req.answer(Some("l"), MAX_SOCKETS_PER_PEER - 1, || 43),
        Answer::Accept {
            listener: "l",
            id: 43,
            frame: Frame::Accept { socket: 43 }
        }
    );
    // Refusals take no id.
    let no_id = || -> u64 { panic!("an id for a refused socket") };
    assert_eq!(
        req.answer(Some("l"), MAX_SOCKETS_PER_PEER, no_id),
        Answer::Reject(Frame::Reject {
            reason: "too busy: 128 sockets from this device (limit 128)".into()
        })
    );
    assert_eq!(
        req.answer(None::<&str>, 0, no_id),
        Answer::Reject(Frame::Reject {
            reason: "no listener for session \"chat\"".into()
        })
    );
    assert_eq!(
        req.bind_event(42, "net".into(), "dev".into()),
        SocketEvent::Bind {
            socket: 42,
            name: "chat".into(),
            peer_name: "me".into(),
            peer_network_id: "net".into(),
            peer_device: "dev".into()
        }
    );
}

#[test]
fn a_stream_has_open_timeout_to_say_what_it_is() {
    let t0 = Instant::now();
    let o = Opening::new(t0);
    assert_eq!(o.deadline(), t0 + OPEN_TIMEOUT);
    assert!(!o.on_timeout(t0));
    assert!(!o.on_timeout(t0 + OPEN_TIMEOUT - Duration::from_millis(1)));
    assert!(o.on_timeout(t0 + OPEN_TIMEOUT));
    assert_eq!(o.handle(Some(Frame::Dbinder)), First::Dbinder);
    for first in [
        None,
        Some(Frame::Accept { socket: 1 }),
        Some(Frame::Message(vec![])),
    ] {
        assert_eq!(Opening::new(t0).handle(first), First::Drop);
    }
}

#[test]
fn the_dialer_reads_the_answer() {
    assert_eq!(Dialing::answer(Some(Frame::Accept { socket: 3 })), Ok(3));
    assert_eq!(
        Dialing::answer(Some(Frame::Reject {
            reason: "no".into()
        })),
        Err(SessionError::Refused("no".into()))
    );
    for other in [None, Some(Frame::Dbinder)] {
        assert_eq!(
            Dialing::answer(other),
            Err(SessionError::Io("peer sent no answer".into()))
        );
    }
}
