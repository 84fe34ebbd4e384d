//! `oxh bus`: soft bus sockets from the command line.

use super::Global;
use anyhow::{Result, bail};
use clap::Subcommand;
use oxh_sdk::bus::{DataType, SocketEvent};
use std::io::Write;
use std::path::PathBuf;

/// `oxh bus` subcommands.
#[derive(Debug, Subcommand)]
pub enum BusCmd {
    /// Receive on a session name: prints each message, and each bytes payload's size.
    Listen {
        /// Session name.
        name: String,
        /// Save received files into DIR (file transfer is not built yet).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit after this many messages/payloads.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send to a session on a device.
    Send {
        /// The device's networkId (see `oxh device list`).
        network_id: String,
        /// Session name on that device.
        name: String,
        /// A text message (≤ 4 KiB).
        #[arg(long, group = "what")]
        message: Option<String>,
        /// The contents of FILE as one bytes payload (≤ 4 MiB).
        #[arg(long, group = "what")]
        bytes: Option<PathBuf>,
        /// Files to transfer (not built yet).
        #[arg(long, group = "what", num_args = 1..)]
        file: Vec<PathBuf>,
    },
}

/// Runs `oxh bus ...`.
pub async fn run(g: &Global, cmd: &BusCmd) -> Result<i32> {
    let dev = g.connect().await?;
    let bus = dev.bus();
    match cmd {
        BusCmd::Listen { name, out, count } => {
            if out.is_some() {
                bail!("file transfer (--out) is not built yet; messages and bytes are");
            }
            let mut ev = bus.listen(name).await?;
            eprintln!("listening on {name:?}");
            let mut n = 0u64;
            let mut stdout = std::io::stdout();
            while let Some(e) = ev.next().await {
                let line = match &e {
                    SocketEvent::Bind {
                        peer_device,
                        peer_network_id,
                        peer_name,
                        ..
                    } => {
                        format!("bind from {peer_device} ({peer_network_id}) socket {peer_name:?}")
                    }
                    SocketEvent::Message { data, .. } => {
                        n += 1;
                        format!("message: {}", String::from_utf8_lossy(data))
                    }
                    SocketEvent::Bytes { data, .. } => {
                        n += 1;
                        format!("bytes: {} bytes", data.len())
                    }
                    SocketEvent::Shutdown { reason, .. } => format!("shutdown: {reason}"),
                };
                if g.json {
                    writeln!(stdout, "{}", serde_json::json!({ "event": line }))?;
                } else {
                    writeln!(stdout, "{line}")?;
                }
                stdout.flush()?;
                if count.is_some_and(|c| n >= c) {
                    break;
                }
            }
            Ok(0)
        }
        BusCmd::Send {
            network_id,
            name,
            message,
            bytes,
            file,
        } => {
            if !file.is_empty() {
                bail!("file transfer (--file) is not built yet; use --message or --bytes");
            }
            let (kind, data) = match (message, bytes) {
                (Some(m), None) => (DataType::Message, m.as_bytes().to_vec()),
                (None, Some(p)) => (
                    DataType::Bytes,
                    std::fs::read(p)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
                ),
                _ => bail!("give one of --message, --bytes"),
            };
            let own = format!("oxh-cli-{}", std::process::id());
            let (socket, _events) = bus.bind(network_id, name, &own, kind).await?;
            match kind {
                DataType::Message => bus.send_message(socket, &data).await?,
                _ => bus.send_bytes(socket, &data).await?,
            }
            bus.shutdown(socket).await?;
            println!("sent {} bytes to {name} on {network_id}", data.len());
            Ok(0)
        }
    }
}
