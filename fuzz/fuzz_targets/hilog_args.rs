//! Fuzzes the hilog SA's IPC arguments: the first byte picks the method, the rest is its
//! postcard payload as a client sends it. What decodes is then run through what the daemon
//! does with it before storing or selecting (domain check, privacy formatting, truncation,
//! filter limits and regex compilation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_hilog::api::{FlowControlArgs, PersistCmd, ReadArgs, WriteArgs};
use oxh_hilog::{MAX_MSG_LEN, MAX_TAG_LEN, format_log, truncate_utf8};
use oxh_ipc::decode;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(w) = decode::<WriteArgs>(body) {
                let _ = w.log_type.check_domain(w.domain);
                let mut tag = w.tag.clone();
                truncate_utf8(&mut tag, MAX_TAG_LEN);
                assert!(tag.len() <= MAX_TAG_LEN);
                for mask in [false, true] {
                    let mut msg = format_log(&w.fmt, &w.args, mask);
                    truncate_utf8(&mut msg, MAX_MSG_LEN);
                    assert!(msg.len() <= MAX_MSG_LEN);
                }
                // Decoded arguments encode back to something that decodes to the same.
                let again = oxh_ipc::encode(&w);
                let back = decode::<WriteArgs>(&again).expect("re-encoded args decode");
                assert_eq!(oxh_ipc::encode(&back), again);
            }
        }
        1 => {
            if let Ok(r) = decode::<ReadArgs>(body) {
                let _ = r.filter.compile();
            }
        }
        2 => {
            let _ = decode::<PersistCmd>(body);
        }
        3 => {
            let _ = decode::<FlowControlArgs>(body);
        }
        4 => {
            // Subscription ids and the buffer size.
            let _ = decode::<u64>(body);
        }
        _ => {
            let _ = decode::<bool>(body);
        }
    }
});
