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
    let listener = tokio::net::TcpListener::bind((a.bind, a.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", a.bind, a.port))?;
    let addr = listener.local_addr()?;
    let token = oxh_console::new_token()?;
    let dir = g.data_dir().to_path_buf();
    let cfg = oxh_console::Config {
        token: token.clone(),
        connect: Arc::new(move || {
            let dir = dir.clone();
            Box::pin(async move {
                oxh_sdk::Device::connect(&dir)
                    .await
                    .map_err(|e| e.to_string())
            })
        }),
    };
    let host = if addr.ip().is_loopback() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("oxh console: http://{host}/?token={token}");
    std::io::stdout().flush()?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    oxh_console::serve(listener, cfg, stop).await?;
    Ok(0)
}
