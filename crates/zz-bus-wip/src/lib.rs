//! temporary
#[path = "../../softbus/src/transport/mod.rs"]
pub mod transport;
