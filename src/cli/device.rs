//! `oxh device`: this device, discovery, PIN binding, trusted devices.

use super::{Global, print_json};
use anyhow::Result;
use clap::Subcommand;
use oxh_softbus::api::{DeviceStateChangeResult, StateEvent, TrustedView};

/// `oxh device` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// udid, name, type, OS version and networkId of this device.
    Info,
    /// Devices seen on the network: id, name, type, address, trusted?
    Discover,
    /// Show a one-time 6-digit PIN that another device can bind with (valid 60 s).
    Pin,
    /// Bind with a device (an id from `discover`, or HOST:PORT) using the PIN it shows.
    Bind {
        /// Discover id (a prefix is enough), name, or HOST:PORT.
        id: String,
        /// The 6-digit PIN shown on the other device.
        #[arg(long)]
        pin: String,
    },
    /// Remove the trust with a device, on both sides when it is reachable.
    Unbind {
        /// udid (a prefix of 6+ is enough), name or networkId.
        id: String,
    },
    /// Trusted devices: online/offline and networkId.
    List {
        /// Keep running and print state changes.
        #[arg(long)]
        watch: bool,
    },
}

fn print_trusted(g: &Global, list: &[TrustedView]) -> Result<()> {
    if g.json {
        return print_json(&list);
    }
    println!(
        "{:<16} {:<8} {:<8} {:<14} NETWORK ID",
        "NAME", "TYPE", "STATE", "UDID"
    );
    for t in list {
        println!(
            "{:<16} {:<8} {:<8} {:<14} {}",
            t.name,
            t.device_type,
            if t.online { "online" } else { "offline" },
            &t.udid[..12.min(t.udid.len())],
            t.network_id.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// Runs `oxh device ...`.
pub async fn run(g: &Global, cmd: &DeviceCmd) -> Result<i32> {
    let dev = g.connect().await?;
    let dm = dev.device_manager();
    match cmd {
        DeviceCmd::Info => {
            let l = dm.local_device_info().await?;
            if g.json {
                print_json(&l)?;
            } else {
                println!("udid:        {}", l.udid);
                println!("name:        {}", l.name);
                println!(
                    "type:        {} ({:#04X} {})",
                    l.device_type.as_str(),
                    l.device_type_id,
                    oxh_devauth::dm_type_name(l.device_type_id)
                );
                println!("os version:  {}", l.os_version);
                println!("networkId:   {}", l.network_id);
                println!("bus:         {}", l.bus_addr);
            }
        }
        DeviceCmd::Discover => {
            let seen = dm.discover().await?;
            if g.json {
                print_json(&seen)?;
            } else {
                println!(
                    "{:<34} {:<16} {:<8} {:<8} ADDRESS",
                    "ID", "NAME", "TYPE", "TRUSTED"
                );
                for s in seen {
                    println!(
                        "{:<34} {:<16} {:<8} {:<8} {}",
                        s.id,
                        s.name,
                        s.device_type,
                        if s.trusted {
                            if s.online { "online" } else { "yes" }
                        } else {
                            "no"
                        },
                        s.addresses.join(",")
                    );
                }
            }
        }
        DeviceCmd::Pin => {
            let p = dm.issue_pin().await?;
            if g.json {
                print_json(&p)?;
            } else {
                println!("PIN: {}  (valid for {} s)", p.pin, p.valid_secs);
            }
        }
        DeviceCmd::Bind { id, pin } => {
            let t = dm.bind(id, pin).await?;
            if g.json {
                print_json(&t)?;
            } else {
                println!(
                    "bound with {} ({}); {}",
                    t.name,
                    &t.udid[..12.min(t.udid.len())],
                    if t.online { "online" } else { "not online yet" }
                );
            }
        }
        DeviceCmd::Unbind { id } => {
            dm.unbind(id).await?;
            println!("unbound {id}");
        }
        DeviceCmd::List { watch } => {
            let mut w = if *watch {
                Some(dm.on_state_change().await?)
            } else {
                None
            };
            print_trusted(g, &dm.trusted_devices().await?)?;
            if let Some(w) = w.as_mut() {
                use std::io::Write;
                while let Some(ev) = w.next().await {
                    let (what, t) = match &ev {
                        StateEvent::Online(t) => ("ONLINE", t),
                        StateEvent::Offline(t) => ("OFFLINE", t),
                        StateEvent::InfoChanged(t) => ("INFO_CHANGED", t),
                    };
                    if g.json {
                        let r = DeviceStateChangeResult::from(ev.clone());
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "{what:<12} {} {}",
                            t.name,
                            t.network_id.as_deref().unwrap_or("-")
                        );
                    }
                    std::io::stdout().flush()?;
                }
            }
        }
    }
    Ok(0)
}
