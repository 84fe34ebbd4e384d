//! Fuzzes the param SA's IPC arguments: the first byte picks the method, the rest is its
//! postcard payload. What decodes is then run through the checks the service applies (name,
//! prefix and value rules, access rules, the wait pattern matcher).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_ipc::{TokenType, decode};
use oxh_param::api::{DumpArgs, GetArgs, ListArgs, SetArgs, WaitArgs};
use oxh_param::rules;

const TOKENS: [TokenType; 4] = [
    TokenType::Hap,
    TokenType::Native,
    TokenType::Shell,
    TokenType::Invalid,
];

fn checks(name: &str) {
    if rules::validate_name(name).is_ok() {
        let _ = rules::kind(name);
        let _ = rules::rule_for(name).scope();
        for t in TOKENS {
            let _ = rules::check_read(name, t);
            let _ = rules::check_write(name, t);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(a) = decode::<GetArgs>(body) {
                checks(&a.key);
            }
        }
        1 => {
            if let Ok(a) = decode::<SetArgs>(body) {
                checks(&a.key);
                if rules::validate_value(&a.key, &a.value).is_ok() {
                    assert!(a.value.len() <= rules::value_limit(&a.key));
                }
            }
        }
        2 => {
            if let Ok(a) = decode::<ListArgs>(body) {
                let _ = rules::validate_prefix(&a.prefix);
            }
        }
        3 => {
            if let Ok(a) = decode::<WaitArgs>(body) {
                checks(&a.key);
                if let Some(p) = &a.value {
                    // The pattern against the key as a value, and against itself.
                    let _ = rules::value_matches(&a.key, p);
                    let _ = rules::value_matches(p, p);
                    assert!(rules::value_matches(&a.key, "*"));
                }
            }
        }
        _ => {
            let _ = decode::<DumpArgs>(body);
        }
    }
});
