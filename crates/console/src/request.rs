//! What the guard reads from a request that anyone can send: the token in the cookie or in
//! the query. Public for the fuzz target (`fuzz/fuzz_targets/console_request.rs`).

use crate::COOKIE;
use axum::http::{HeaderMap, header};

/// The console's token in the request's `Cookie` headers, if any.
pub fn cookie_token(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The `token` parameter of a query string, if any.
pub fn query_token(q: Option<&str>) -> Option<String> {
    q?.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
}
