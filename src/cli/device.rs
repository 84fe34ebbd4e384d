//! `oxh device`: this device's identity.

use super::{Global, print_json};
use anyhow::Result;
use clap::Subcommand;

/// `oxh device` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// udid, name, type and OS version of this device.
    Info,
}

/// Runs `oxh device ...`.
pub async fn run(g: &Global, cmd: &DeviceCmd) -> Result<i32> {
    match cmd {
        DeviceCmd::Info => {
            let dev = g.connect().await?;
            let info = dev.device_manager().local_device_info().await?;
            if g.json {
                print_json(&info)?;
            } else {
                println!("udid:        {}", info.udid);
                println!("name:        {}", info.name);
                println!(
                    "type:        {} ({:#04X})",
                    info.device_type.as_str(),
                    info.device_type_id
                );
                println!("os version:  {}", info.os_version);
            }
            Ok(0)
        }
    }
}
