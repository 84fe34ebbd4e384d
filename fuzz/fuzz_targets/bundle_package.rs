//! Fuzzes the package parser: zip container checks (names, sizes, ratios), module.json /
//! config.json, and then the verifier on whatever parsed. Small limits keep each run fast.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oxh_bundle::package::fuzz_one(data);
    let _ = oxh_bundle::model::parse_module_json(data);
    let _ = oxh_bundle::model::parse_config_json(data);
});
