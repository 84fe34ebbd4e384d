//! `oxh fs`: distributed files. So far the parts that need no file daemon: a file's
//! security label (`user.security`, as OpenHarmony's `securityLabel`) and file URIs.

use anyhow::Result;
use clap::Subcommand;
use oxh_dfs::label::{self, Label};
use oxh_dfs::uri::FileUri;
use std::path::PathBuf;

/// `oxh fs` commands.
#[derive(Debug, Subcommand)]
pub enum FsCmd {
    /// A file's security label: `get PATH`, or `set PATH s0..s4` (devices whose security
    /// level does not cover it can list the file but not open it).
    Label {
        #[command(subcommand)]
        op: LabelOp,
    },
    /// The URI of an app's file: `uri --bundle B /data/storage/...` (the path as the app sees
    /// it in its sandbox), `--device` for the same file on another device.
    Uri {
        /// The app.
        #[arg(long)]
        bundle: String,
        /// The device (networkId), for a remote URI.
        #[arg(long)]
        device: Option<String>,
        /// The sandbox path.
        path: String,
    },
    /// What a file URI names: its app, path, name and device.
    Path {
        /// The URI.
        uri: String,
    },
}

/// `oxh fs label` operations.
#[derive(Debug, Subcommand)]
pub enum LabelOp {
    /// Prints the label (s3 when the file has none).
    Get {
        /// The file.
        path: PathBuf,
    },
    /// Sets the label.
    Set {
        /// The file.
        path: PathBuf,
        /// s0..s4.
        label: String,
    },
}

/// Runs `oxh fs ...`.
pub fn run(c: &FsCmd) -> Result<i32> {
    match c {
        FsCmd::Label {
            op: LabelOp::Get { path },
        } => println!("{}", label::get(path)?),
        FsCmd::Label {
            op: LabelOp::Set { path, label: l },
        } => label::set(path, l.parse::<Label>()?)?,
        FsCmd::Uri {
            bundle,
            device,
            path,
        } => {
            let mut u = FileUri::from_path(bundle, path)?;
            if let Some(d) = device {
                u = u.on_device(d);
            }
            println!("{u}");
        }
        FsCmd::Path { uri } => {
            let u: FileUri = uri.parse()?;
            println!("bundle={}", u.authority());
            println!("path={}", u.path());
            println!("name={}", u.name());
            if let Some(n) = u.network_id() {
                println!("networkid={n}");
            }
        }
    }
    Ok(0)
}
