//! `oxh bus`: soft bus sockets from the command line.

use super::Global;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use oxh_sdk::bus::{DataType, SocketEvent};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// Redraws one progress line on stderr at most every 100 ms (only when it is a terminal).
pub(super) struct Progress {
    on: bool,
    last: Option<Instant>,
}

impl Progress {
    pub(super) fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            last: None,
        }
    }
    pub(super) fn show(&mut self, text: impl FnOnce() -> String) {
        if !self.on
            || self
                .last
                .is_some_and(|l| l.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        eprint!("\r\x1b[2K{}", text());
    }
    pub(super) fn clear(&mut self) {
        if self.on && self.last.take().is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

pub(super) fn rate(bytes: u64, d: Duration) -> String {
    let s = d.as_secs_f64().max(1e-9);
    format!(
        "{:.1} MiB/s ({:.0} MB/s)",
        bytes as f64 / MIB / s,
        bytes as f64 / 1e6 / s
    )
}

/// `oxh bus` subcommands.
#[derive(Debug, Subcommand)]
pub enum BusCmd {
    /// Receive on a session name: prints each message, each bytes payload's size, each stream
    /// frame's size, and one line per file (size and XXH3-128 checksum).
    Listen {
        /// Save received files into DIR (created if missing): under a temp name until complete
        /// and checksummed. Without it, files are refused.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Session name.
        name: String,
        /// Exit after this many messages/payloads/files.
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
        /// Files to transfer, of any size; each is confirmed by the receiver's checksum (XXH3-128) check.
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
            let mut ev = bus.listen(name).await?;
            if let Some(dir) = out {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                ev.save_files_into(dir);
            }
            eprintln!("listening on {name:?}");
            let mut n = 0u64;
            let mut stdout = std::io::stdout();
            let mut progress = Progress::new();
            let mut started = Instant::now();
            while let Some(e) = ev.next().await {
                let line = match &e {
                    SocketEvent::FileStart { name, size, .. } => {
                        started = Instant::now();
                        eprintln!("receiving {name} ({size} bytes)");
                        continue;
                    }
                    SocketEvent::FileProgress {
                        name,
                        received,
                        size,
                        ..
                    } => {
                        progress.show(|| {
                            format!(
                                "{name}: {:.1}/{:.1} MiB, {}",
                                *received as f64 / MIB,
                                *size as f64 / MIB,
                                rate(*received, started.elapsed())
                            )
                        });
                        continue;
                    }
                    SocketEvent::FileFinish {
                        name,
                        size,
                        checksum,
                        path,
                        ..
                    } => {
                        progress.clear();
                        n += 1;
                        format!(
                            "file {name}: {size} bytes, xxh128 {checksum}, saved as {} ({})",
                            path.display(),
                            rate(*size, started.elapsed())
                        )
                    }
                    SocketEvent::FileError { name, reason, .. } => {
                        progress.clear();
                        n += 1;
                        format!("file {name} failed: {reason}")
                    }
                    SocketEvent::Stream { data, .. } => {
                        n += 1;
                        format!("stream: {} bytes", data.len())
                    }
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
                for f in file {
                    let m = std::fs::metadata(f)
                        .with_context(|| format!("cannot read {}", f.display()))?;
                    if !m.is_file() {
                        bail!("{} is not a file", f.display());
                    }
                }
                let own = format!("oxh-cli-{}", std::process::id());
                let (socket, _events) = bus.bind(network_id, name, &own, DataType::File).await?;
                let mut progress = Progress::new();
                let t0 = Instant::now();
                let sent = bus
                    .send_file(socket, file, |p| {
                        progress.show(|| {
                            format!(
                                "[{}/{}] {}: {:.1}/{:.1} MiB, {}",
                                p.index + 1,
                                p.count,
                                p.name,
                                p.sent as f64 / MIB,
                                p.size as f64 / MIB,
                                rate(p.sent, t0.elapsed())
                            )
                        })
                    })
                    .await;
                progress.clear();
                let sent = sent?;
                let took = t0.elapsed();
                let _ = bus.shutdown(socket).await;
                let total: u64 = sent.iter().map(|f| f.size).sum();
                for f in &sent {
                    println!("sent {}: {} bytes, xxh128 {}", f.name, f.size, f.checksum);
                }
                println!(
                    "sent {} file(s), {total} bytes to {name} on {network_id} in {:.2} s: {}",
                    sent.len(),
                    took.as_secs_f64(),
                    rate(total, took)
                );
                return Ok(0);
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
