//! File URIs and peer-named paths from outside: parsed, printed and parsed again (the same
//! URI), and checked as served paths. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxh_dfs::uri::FileUri;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = s.parse::<FileUri>() {
        let again: FileUri = u.to_string().parse().expect("a printed URI parses");
        assert_eq!(again, u);
        let _ = (u.name(), u.is_remote());
    }
    let _ = oxh_dfs::beneath::check(s);
    let _ = s.parse::<oxh_dfs::label::Label>();
});
