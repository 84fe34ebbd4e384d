//! Fuzzes what the ability manager and the app host take from outside: the IPC arguments of
//! SA 180 (first byte picks the method, the rest is its postcard payload), the Want JSON a C
//! app hands the host, what a service's host reads from a client on a connection, and what a
//! peer's scheduler sends SA 1401 to connect a service here (ConnectAbilityFromRemote), and
//! its answer; a peer's synced mission list; and a continuation's package request and answer (FetchBundleFromRemote), whose
//! announced sizes the target bounds before it takes a byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_ability::api::{AttachArgs, ConnectArgs, HostControl, HostEvent, StartArgs, StepDone};
use oxh_ability::dms_api::{ConnectFromRemoteArgs, ConnectReply, FetchBundleArgs, FetchBundleReply};
use oxh_ability::{Element, host, remote};
use oxh_ipc::decode;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => {
            let _ = decode::<StartArgs>(body);
        }
        1 => {
            let _ = decode::<ConnectArgs>(body);
            let _ = decode::<Element>(body);
            if let Ok(a) = decode::<ConnectFromRemoteArgs>(body) {
                assert_eq!(decode::<ConnectFromRemoteArgs>(&oxh_ipc::encode(&a)).ok(), Some(a));
            }
            let _ = decode::<ConnectReply>(body);
            let _ = decode::<FetchBundleArgs>(body);
            if let Some(oxh_ability::dms_api::MissionSyncMsg::Missions(l)) =
                oxh_ability::dms_api::decode_mission_sync(body)
            {
                assert!(l.len() <= oxh_ability::dms_api::MAX_SYNCED_MISSIONS);
            }
            if let Ok(r) = decode::<FetchBundleReply>(body)
                && let Ok(total) = oxh_ability::continuation::check_package_sizes(&r.sizes)
            {
                assert_eq!(total, r.sizes.iter().sum::<u64>());
            }
        }
        2 => {
            let _ = decode::<AttachArgs>(body);
            let _ = decode::<StepDone>(body);
        }
        3 => {
            let _ = decode::<HostEvent>(body);
            let _ = decode::<HostControl>(body);
        }
        4 => {
            if let Ok(s) = std::str::from_utf8(body)
                && let Ok(w) = host::want_from_json(s)
            {
                // What is accepted converts back and forth unchanged.
                let again = host::want_from_json(&host::want_to_json(&w)).expect("round trip");
                assert_eq!(again.bundle_name, w.bundle_name);
            }
        }
        _ => {
            // A client's bytes on a service connection: the host answers or stops, never
            // more than the frame limit held.
            let Ok((mut a, b)) = std::os::unix::net::UnixStream::pair() else {
                return;
            };
            // Below a socket buffer, so the write cannot wait for the reader.
            let _ = a.write_all(&body[..body.len().min(64 * 1024)]);
            drop(a.shutdown(std::net::Shutdown::Write));
            let _ = remote::serve(b, |_, d| Ok(d.to_vec()));
        }
    }
});
