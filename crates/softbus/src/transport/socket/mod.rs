//! The socket protocol apart from its I/O: the frames and their codec ([`frame`]) and the pure
//! core that decides what each frame means ([`core`]). `transport::session` is the adapter that
//! runs them on QUIC streams.

pub(crate) mod core;
pub(crate) mod frame;

#[cfg(test)]
mod sim_tests;
