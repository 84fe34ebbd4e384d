//! `bm`: OpenHarmony's bundle manager tool. Output and error lines as OpenHarmony's prints
//! them ("install bundle successfully." / "error: failed to install bundle." + code + message),
//! followed by our reason. The package files are read here and streamed to the daemon.

use super::Global;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use oxh_bundle::api::DEFAULT_USER;
use oxh_bundle::error::{code, message};
use std::path::{Path, PathBuf};

/// `bm` as its own tool (through a link named `bm`).
#[derive(Debug, Parser)]
#[command(name = "bm", about = "bundle manager")]
pub struct BmTool {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(flatten)]
    pub args: BmArgs,
}

/// `bm` arguments.
#[derive(Debug, Args)]
pub struct BmArgs {
    #[command(subcommand)]
    cmd: BmCmd,
}

#[derive(Debug, Subcommand)]
enum BmCmd {
    /// Install a bundle: HAP files, an .app, or a directory of HAPs.
    Install {
        /// Package path(s): .hap, .hsp, .app, or a directory holding HAPs.
        #[arg(short = 'p', num_args = 1.., required = true)]
        path: Vec<PathBuf>,
        /// Replace an installed bundle (the default, as in OpenHarmony).
        #[arg(short = 'r')]
        replace: bool,
        /// User id.
        #[arg(short = 'u', default_value_t = DEFAULT_USER)]
        user: i32,
        /// Skip signature verification; only when persist.bms.dev_mode is 1.
        #[arg(long)]
        skip_verify: bool,
    },
    /// Uninstall a bundle.
    Uninstall {
        /// Bundle name.
        #[arg(short = 'n')]
        name: String,
        /// Keep the bundle's data.
        #[arg(short = 'k')]
        keep: bool,
        /// User id.
        #[arg(short = 'u', default_value_t = DEFAULT_USER)]
        user: i32,
    },
    /// Bundle information: -a lists bundles, -n NAME shows one.
    Dump {
        /// All bundle names.
        #[arg(short = 'a')]
        all: bool,
        /// One bundle.
        #[arg(short = 'n')]
        name: Option<String>,
        /// User id.
        #[arg(short = 'u', default_value_t = DEFAULT_USER)]
        user: i32,
    },
}

fn remote(e: &oxh_sdk::Error) -> Option<oxh_sdk::RemoteError> {
    match e {
        oxh_sdk::Error::Remote(r) if r.code == oxh_ipc::code::PERMISSION_DENIED => Some(
            oxh_sdk::RemoteError::new(code::PERMISSION_DENIED, r.message.clone()),
        ),
        oxh_sdk::Error::Remote(r) => Some(r.clone()),
        _ => None,
    }
}

fn fail(what: &str, c: i32, reason: &str) -> i32 {
    println!("error: failed to {what} bundle.");
    println!("code:{c}");
    println!("{}", message(c));
    if !reason.is_empty() {
        println!("reason: {reason}");
    }
    1
}

/// An error about a package path, in words: "does not exist" only when it does not.
fn path_error(p: &Path, e: std::io::Error) -> std::io::Error {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    std::io::Error::new(e.kind(), format!("{}: {why}", p.display()))
}

/// The files `-p` names: files as given, a directory's `*.hap`/`*.hsp`/`*.app`, sorted.
fn package_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        // Stat first: "does not exist" only when it does not; a path this user may not
        // reach says so.
        let meta = std::fs::metadata(p).map_err(|e| path_error(p, e))?;
        if meta.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(
                            f.extension().and_then(|e| e.to_str()),
                            Some("hap" | "hsp" | "app")
                        )
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn read_all(files: &[PathBuf]) -> std::io::Result<Vec<Vec<u8>>> {
    files
        .iter()
        .map(|f| std::fs::read(Path::new(f)).map_err(|e| path_error(f, e)))
        .collect()
}

/// Runs `bm ...`; returns the exit code.
pub async fn run(g: &Global, a: &BmArgs) -> Result<i32> {
    let dev = g.connect().await?;
    let bm = dev.bundle();
    match &a.cmd {
        BmCmd::Install {
            path,
            replace: _,
            user,
            skip_verify,
        } => {
            let files = match package_files(path) {
                Ok(f) if !f.is_empty() => f,
                Ok(_) => return Ok(fail("install", code::FILE_PATH_INVALID, "no package found")),
                Err(e) => {
                    return Ok(fail("install", code::FILE_PATH_INVALID, &e.to_string()));
                }
            };
            let data = match read_all(&files) {
                Ok(d) => d,
                Err(e) => return Ok(fail("install", code::FILE_PATH_INVALID, &e.to_string())),
            };
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            match bm.install(&refs, *user, *skip_verify).await {
                Ok(r) => {
                    if !r.skipped.is_empty() {
                        eprintln!(
                            "WARNING: signature verification was SKIPPED ({} = 1):",
                            oxh_bundle::api::DEV_MODE_PARAM
                        );
                        for s in &r.skipped {
                            eprintln!("WARNING:   {s}");
                        }
                    }
                    println!("install bundle successfully.");
                    Ok(0)
                }
                Err(e) => Ok(match remote(&e) {
                    Some(r) => fail("install", r.code, &r.message),
                    None => fail("install", code::INTERNAL_ERROR, &e.to_string()),
                }),
            }
        }
        BmCmd::Uninstall { name, keep, user } => match bm.uninstall(name, *user, *keep).await {
            Ok(()) => {
                println!("uninstall bundle successfully.");
                Ok(0)
            }
            Err(e) => Ok(match remote(&e) {
                Some(r) => fail("uninstall", r.code, &r.message),
                None => fail("uninstall", code::INTERNAL_ERROR, &e.to_string()),
            }),
        },
        BmCmd::Dump { all, name, user } => {
            if let Some(n) = name {
                match bm.dump(n, *user).await {
                    Ok(j) => {
                        println!("{n}:");
                        println!("{j}");
                        Ok(0)
                    }
                    Err(e) => {
                        println!(
                            "error: failed to get information and the parameters may be wrong."
                        );
                        if let Some(r) = remote(&e) {
                            println!("code:{}", r.code);
                            println!("reason: {}", r.message);
                        }
                        Ok(1)
                    }
                }
            } else if *all {
                let names = bm.names(*user).await?;
                println!("ID: {user}:");
                for n in names {
                    println!("\t{n}");
                }
                Ok(0)
            } else {
                println!("error: you must specify an option at least.");
                Ok(1)
            }
        }
    }
}
