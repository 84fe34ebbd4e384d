//! What the web console reads from requests anyone on the machine can send: the token in a
//! Cookie header and in a query string, and hilog's filters from the live log's query. Nothing
//! may panic; a token found is a substring of what was sent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut h = axum::http::HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_str(s) {
        h.append(axum::http::header::COOKIE, v);
        if let Some(t) = oxh_console::request::cookie_token(&h) {
            assert!(s.contains(&t));
        }
    }
    if let Some(t) = oxh_console::request::query_token(Some(s)) {
        assert!(s.contains(&t));
    }
    let mut parts = s.splitn(5, '\n').map(String::from);
    let q = oxh_console::LogQuery {
        device: parts.next().unwrap_or_default(),
        level: parts.next().unwrap_or_default(),
        tag: parts.next().unwrap_or_default(),
        domain: parts.next().unwrap_or_default(),
        pid: parts.next().unwrap_or_default(),
    };
    let _ = q.filter();
});
