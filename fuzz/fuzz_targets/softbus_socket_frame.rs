//! Fuzzes the soft bus socket-stream reader (open, accept, reject, message, bytes, shutdown
//! and the file frames, `FileData` through its zero-copy path), on what a trusted peer can
//! write on a socket stream. Every frame read must be read back the same from its own
//! encoding (`len:u32 LE | postcard`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_softbus::transport::session::fuzz_read_socket_frames;

fuzz_target!(|data: &[u8]| {
    oxh_fuzz::block_on(async {
        let (frames, _err) = fuzz_read_socket_frames(data).await;
        for f in frames {
            let mut stream = (f.len() as u32).to_le_bytes().to_vec();
            stream.extend_from_slice(&f);
            let (again, err) = fuzz_read_socket_frames(&stream).await;
            assert!(err.is_none(), "own encoding unreadable: {err:?}");
            assert_eq!(again, vec![f]);
        }
    });
});
