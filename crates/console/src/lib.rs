//! The web console of the super device (issue 20): a page and a JSON API on loopback, acting
//! through the SDK with the rights of the user who started it (never around a permission
//! check: every datum comes from the daemon's SAs as that user's shell token sees it).
//!
//! **Security.** Binds 127.0.0.1 unless told otherwise. A random token is printed once in the
//! URL (`/?token=...`, as Jupyter does); the first visit trades it for an HttpOnly,
//! SameSite=Strict cookie. Every request needs the token (cookie, or the query on the first
//! visit), a `Host` that is the console's own address (so a DNS-rebinding page cannot reach
//! it), and, when it has an `Origin`, the console's own origin; there are no CORS headers.
//! The page builds its DOM with `textContent` only: device names are outside input.
//!
//! **A daemon that goes away** is a state, not an error: `/api/devices` answers
//! `{"daemon": "offline"}` and the page shows it.

mod server;

pub use server::{Config, Connector, serve};

/// The token's length in random bytes (hex in the URL).
pub const TOKEN_BYTES: usize = 24;
/// The cookie the token is kept in.
pub const COOKIE: &str = "oxh_console";

/// Errors of the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No randomness for the token.
    #[error("no randomness for the console's token: {0}")]
    Random(String),
    /// The socket failed.
    #[error("the console's socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A fresh random token, as hex.
pub fn new_token() -> Result<String, ConsoleError> {
    let mut b = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut b).map_err(|e| ConsoleError::Random(e.to_string()))?;
    Ok(hex::encode(b))
}
