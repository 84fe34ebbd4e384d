//! `param`: OpenHarmony's system-parameter tool.

use super::{Global, print_json};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

/// `param` as its own tool (through a link named `param`).
#[derive(Debug, Parser)]
#[command(name = "param", about = "system parameters")]
pub struct ParamTool {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(flatten)]
    pub args: ParamArgs,
}

/// `param` arguments.
#[derive(Debug, Args)]
pub struct ParamArgs {
    #[command(subcommand)]
    cmd: ParamCmd,
}

#[derive(Debug, Subcommand)]
enum ParamCmd {
    /// Print a parameter's value; without NAME, every parameter.
    Get { name: Option<String> },
    /// Set a parameter.
    Set { name: String, value: String },
    /// List the parameter NAME; with -r, every parameter under it.
    Ls {
        /// Recursive: everything whose name starts with NAME.
        #[arg(short = 'r')]
        recursive: bool,
        name: Option<String>,
    },
    /// Wait until NAME exists (and matches VALUE, `*` wildcards), up to TIMEOUT seconds (30).
    Wait {
        name: String,
        value: Option<String>,
        timeout: Option<u64>,
    },
    /// Counts, storage and waiters; `verbose` lists every parameter.
    Dump { verbose: Option<String> },
}

fn print_list(g: &Global, list: &[(String, String)]) -> Result<()> {
    if g.json {
        let m: serde_json::Map<String, serde_json::Value> = list
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        return print_json(&m);
    }
    for (k, v) in list {
        println!("{k} = {v}");
    }
    Ok(())
}

/// Runs `param ...`; failures print OpenHarmony-style messages and exit 1.
pub async fn run(g: &Global, a: &ParamArgs) -> Result<i32> {
    let dev = g.connect().await?;
    let p = dev.param();
    match &a.cmd {
        ParamCmd::Get { name: None } => {
            print_list(g, &p.list("", true).await?)?;
            Ok(0)
        }
        ParamCmd::Get { name: Some(n) } => match p.get(n).await {
            Ok(v) => {
                if g.json {
                    print_json(&serde_json::json!({ n: v }))?;
                } else {
                    println!("{v}");
                }
                Ok(0)
            }
            Err(e) => {
                eprintln!("Get parameter \"{n}\" fail! {e}");
                Ok(1)
            }
        },
        ParamCmd::Set { name, value } => match p.set(name, value).await {
            Ok(()) => {
                println!("Set parameter {name} {value} success");
                Ok(0)
            }
            Err(e) => {
                eprintln!("Set parameter {name} {value} fail! {e}");
                Ok(1)
            }
        },
        ParamCmd::Ls { recursive, name } => {
            let name = name.as_deref().unwrap_or("");
            match p.list(name, *recursive || name.is_empty()).await {
                Ok(l) => {
                    print_list(g, &l)?;
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("List parameter \"{name}\" fail! {e}");
                    Ok(1)
                }
            }
        }
        ParamCmd::Wait {
            name,
            value,
            timeout,
        } => {
            let pattern = value.as_deref().filter(|v| !v.is_empty());
            let t = Duration::from_secs(timeout.unwrap_or(30));
            match p.wait(name, pattern, t).await {
                Ok(v) => {
                    println!("Wait parameter {name} success, value: {v}");
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("Wait parameter {name} fail! {e}");
                    Ok(1)
                }
            }
        }
        ParamCmd::Dump { verbose } => {
            print!("{}", p.dump(verbose.is_some()).await?);
            Ok(0)
        }
    }
}
