//! `oxh console`: the web console of the super device, on loopback unless `--bind` says
//! otherwise; prints its URL with a one-time token and serves until interrupted.

use super::Global;
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::sync::Arc;

/// `oxh console` options.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The port (0: any free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The address to listen on. Anything but loopback lets other machines try the token.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
}

/// Runs `oxh console`.
pub async fn run(g: &Global, a: &ConsoleArgs) -> Result<i32> {
    if !a.bind.is_loopback() {
        eprintln!(
            "warning: the console listens on {}: other machines can reach it (the token still guards it)",
            a.bind
        );
    }
    let (listener, host) = listen((a.bind, a.port).into()).await?;
    let cfg = config(g.data_dir().to_path_buf())?;
    println!("oxh console: http://{host}/?token={}", cfg.token);
    std::io::stdout().flush()?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    oxh_console::serve(listener, cfg, stop).await?;
    Ok(0)
}

/// The console's socket and the `host:port` its URL names.
pub(super) async fn listen(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_loopback() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    Ok((listener, host))
}

/// A console of the device whose data dir is `dir`, with a fresh token.
pub(super) fn config(dir: std::path::PathBuf) -> Result<oxh_console::Config> {
    Ok(oxh_console::Config {
        token: oxh_console::new_token()?,
        connect: Arc::new(move || {
            let dir = dir.clone();
            Box::pin(async move {
                oxh_sdk::Device::connect(&dir)
                    .await
                    .map_err(|e| e.to_string())
            })
        }),
    })
}
