//! `oxh sa`: system abilities.

use super::{Global, print_json};
use anyhow::Result;
use clap::Subcommand;
use oxh_samgr::SaState;

/// `oxh sa` subcommands.
#[derive(Debug, Subcommand)]
pub enum SaCmd {
    /// Every system ability: id, name, state.
    List {
        /// On another trusted device (by networkId), through a remote call: that device checks
        /// this caller's synced token (it needs ohos.permission.DISTRIBUTED_DATASYNC).
        #[arg(long, value_name = "NETWORK_ID")]
        device: Option<String>,
    },
    /// Who the daemon takes this process for: pid, uid and gid from the kernel, and the
    /// access token that decides what it may do.
    Whoami,
}

/// Runs `oxh sa ...`.
pub async fn run(g: &Global, cmd: &SaCmd) -> Result<i32> {
    match cmd {
        SaCmd::List { device } => {
            let dev = g.connect().await?;
            let list: Vec<oxh_samgr::SaInfo> = match device {
                Some(nid) => dev.samgr().list_remote(nid).await?,
                None => dev.samgr().list().await?,
            };
            if g.json {
                print_json(&list)?;
            } else {
                println!("{:>6}  {:<28} {:<12} START", "SA ID", "NAME", "STATE");
                for i in list {
                    let state = match i.state {
                        SaState::Running => "running",
                        SaState::NotStarted => "not started",
                    };
                    let start = if i.run_on_create {
                        "run-on-create"
                    } else {
                        "on-demand"
                    };
                    println!("{:>6}  {:<28} {:<12} {start}", i.id, i.name, state);
                }
            }
            Ok(0)
        }
        SaCmd::Whoami => {
            let dev = g.connect().await?;
            let c = dev.samgr().whoami().await?;
            if g.json {
                print_json(&c)?;
            } else {
                println!(
                    "pid {} uid {} gid {} token {:#010x} ({:?}) process {}",
                    c.pid, c.uid, c.gid, c.token_id, c.token_type, c.process_name
                );
            }
            Ok(0)
        }
    }
}
