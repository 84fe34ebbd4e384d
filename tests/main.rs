//! Integration tests: real `oxhd` processes on real sockets, driven through the real CLI and
//! the SDK. One test binary (faster to link); one module per area.

mod common;

mod cli;
mod crash;
mod hilog;
mod ipc;
mod param;
mod samgr;
mod softbus;
