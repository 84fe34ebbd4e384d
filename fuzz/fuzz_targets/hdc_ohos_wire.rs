//! Fuzzes the decoders of OpenHarmony's hdc session wire (oxh_hdc::ohos): packets and the
//! protobuf-style structs inside them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oxh_hdc::ohos::fuzz_one(data);
});
