//! Continuation messages from a peer device (they arrive on the data service's session): any
//! bytes are decoded, and whatever decodes is fed to a source and a target, twice and from two
//! devices. Nothing may panic, and a decoded message encodes back to a message equal to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_ability::continuation::{Message, Source, SourceInput, Target, TargetInput};

fuzz_target!(|data: &[u8]| {
    let Some((&who, rest)) = data.split_first() else {
        return;
    };
    let Ok(msg) = postcard::from_bytes::<Message>(rest) else {
        return;
    };
    let again: Message = postcard::from_bytes(&postcard::to_allocvec(&msg).expect("encode"))
        .expect("a message encoded here decodes");
    assert_eq!(again, msg);
    let from = if who & 1 == 0 { "peer-a" } else { "peer-b" };
    let mut s = Source::new("local");
    let mut t = Target::new("local");
    for now in [0u64, u64::from(who) * 1000] {
        let _ = s.handle(
            now,
            SourceInput::Message {
                from: from.into(),
                msg: msg.clone(),
            },
        );
        let _ = t.handle(
            now,
            TargetInput::Message {
                from: from.into(),
                msg: msg.clone(),
            },
        );
    }
});
