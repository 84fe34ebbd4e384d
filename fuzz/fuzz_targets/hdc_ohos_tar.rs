//! Fuzzes the reader of the tar OpenHarmony's host sends for `hdc install DIR`: any bytes in
//! any split give entries or an error, never a panic, never more data than announced.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxh_hdc::ohos_tar::fuzz_one(data));
