//! Fuzzes the IPC arguments of the device manager (4802) and soft bus (4700) SAs: the first
//! byte picks the method, the rest is its postcard payload as a client sends it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_ipc::decode;
use oxh_softbus::api::{BindArgs, BindSocketArgs, ListenArgs, SendArgs};
use oxh_softbus::sa::fuzz_parse_send_args;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(a) = decode::<BindArgs>(body) {
                // The service parses the PIN and tries the id as HOST:PORT.
                let _ = a.pin.parse::<oxh_devauth::Pin>();
                let _ = a.id.parse::<std::net::SocketAddr>();
            }
        }
        1 => {
            // Unbind ids and static peers.
            if let Ok(s) = decode::<String>(body) {
                let _ = s.parse::<std::net::SocketAddr>();
            }
        }
        2 => {
            let _ = decode::<u64>(body);
        }
        3 => {
            let _ = decode::<ListenArgs>(body);
        }
        4 => {
            let _ = decode::<BindSocketArgs>(body);
        }
        _ => {
            let _ = decode::<SendArgs>(body);
            // The SA's copy-free parse of the same bytes must agree with postcard.
            fuzz_parse_send_args(body);
        }
    }
});
