//! `oxh sa`: system abilities.

use super::{Global, print_json};
use anyhow::Result;
use clap::Subcommand;
use oxh_samgr::SaState;

/// `oxh sa` subcommands.
#[derive(Debug, Subcommand)]
pub enum SaCmd {
    /// Every system ability: id, name, state.
    List,
}

/// Runs `oxh sa ...`.
pub async fn run(g: &Global, cmd: &SaCmd) -> Result<i32> {
    match cmd {
        SaCmd::List => {
            let dev = g.connect().await?;
            let list = dev.samgr().list().await?;
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
    }
}
