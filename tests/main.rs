//! Integration tests: real `oxhd` processes on real sockets, driven through the real CLI and
//! the SDK. One test binary (faster to link); one module per area.

mod common;

mod ability;
mod atm;
mod bundle;
mod cli;
mod console;
mod console_browser;
mod crash;
mod dms;
mod dms_connect;
mod dms_install;
mod dms_netns;
mod dms_sync;
mod fs;
mod fs_copy;
mod hdc;
mod hilog;
mod hmdfs;
mod hmdfs_app;
mod hmdfs_netns;
mod ipc;
mod kv;
mod limits;
mod names;
mod netns;
mod param;
mod rdb;
mod samgr;
mod softbus;
