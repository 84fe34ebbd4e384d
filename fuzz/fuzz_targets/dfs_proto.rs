//! The remote file protocol from a peer: arbitrary bytes as frames (the decoder never
//! panics, and what it accepts re-encodes to the same call), and the calls it yields run
//! against a served tree in a temp dir, whose outside must stay untouched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_dfs::proto::{Call, Request, VERSION, decode, decode_frame, encode, split_frames};
use oxh_dfs::serve::Server;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One served tree per fuzzing process, with a file beside it that no call may reach.
fn tree() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static T: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    T.get_or_init(|| {
        let d = tempfile::tempdir().expect("temp dir");
        let root = d.path().join("account");
        std::fs::create_dir_all(root.join("d")).expect("tree");
        std::fs::write(root.join("d/f"), b"data").expect("file");
        let outside = d.path().join("outside");
        std::fs::write(&outside, b"keep").expect("outside");
        let _ = std::os::unix::fs::symlink("../../outside", root.join("d/out"));
        (d, root, outside)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame::<Call>(data);
    let Ok((bodies, _)) = split_frames(data) else {
        return;
    };
    let (_, root, outside) = tree();
    let Ok(server) = Server::new(root) else {
        return;
    };
    let _ = server.call(Request::Hello {
        version: VERSION,
        device_level: 3,
    });
    for body in bodies {
        let Ok(call) = decode::<Call>(body) else {
            continue;
        };
        let again = encode(&call).expect("an accepted call encodes");
        assert_eq!(decode_frame::<Call>(&again).ok().as_ref(), Some(&call));
        let _ = server.call(call.req);
    }
    assert_eq!(std::fs::read(outside).ok().as_deref(), Some(&b"keep"[..]));
});
