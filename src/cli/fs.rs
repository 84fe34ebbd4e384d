//! `oxh fs`: distributed files: a file's security label (`user.security`, as OpenHarmony's
//! `securityLabel`), file URIs, and `ls`/`cat`/`stat`/`cp`/`mv`/`rm` of a path or a file URI
//! (a local URI names the app's file on this device; one with `?networkid=` that device's
//! file, reached through its device view, or for `cp` to here, sent by its file daemon over
//! the soft bus). Failures say OpenHarmony's file error (`13900002 No such file or
//! directory`) and change nothing.

use super::Global;
use super::bus::{MIB, Progress, rate};
use anyhow::{Result, anyhow};
use clap::Subcommand;
use oxh_dfs::errcode::{self, FileErr};
use oxh_dfs::label::{self, Label};
use oxh_dfs::uri::FileUri;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// Lists a directory (a path or a file URI).
    Ls {
        /// The directory.
        target: String,
    },
    /// Writes a file to stdout.
    Cat {
        /// The file.
        target: String,
    },
    /// A file's type, size, mode and modification time.
    Stat {
        /// The file.
        target: String,
    },
    /// Copies a file; from another device (a URI with `?networkid=`) its file daemon sends
    /// it over the soft bus, with a progress bar on a terminal; Ctrl-C cancels and leaves
    /// nothing behind.
    Cp {
        /// The source.
        src: String,
        /// The destination (a file, or a directory to copy into).
        dst: String,
    },
    /// Moves (renames) a file or directory.
    Mv {
        /// The source.
        src: String,
        /// The destination.
        dst: String,
    },
    /// Removes a file (or, with -r, a directory and all below it).
    Rm {
        /// Remove directories and their contents.
        #[arg(short, long)]
        recursive: bool,
        /// The file.
        target: String,
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

/// A file error with OpenHarmony's code, for `what`.
fn ferr(what: impl std::fmt::Display, e: FileErr) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

fn io_err(what: impl std::fmt::Display, e: &std::io::Error) -> anyhow::Error {
    ferr(what, FileErr::of_io(e))
}

/// Where a path or URI leads on this device, and the peer it names, if any.
struct Target {
    path: PathBuf,
    uri: Option<FileUri>,
}

impl Target {
    fn remote(&self) -> Option<&FileUri> {
        self.uri.as_ref().filter(|u| u.is_remote())
    }
}

fn resolve(g: &Global, s: &str) -> Result<Target> {
    if !s.starts_with("file://") {
        return Ok(Target {
            path: PathBuf::from(s),
            uri: None,
        });
    }
    let u: FileUri = s.parse().map_err(|e| ferr(e, errcode::E_INVAL))?;
    let user = crate::file_daemon::USER;
    let path = match u.network_id() {
        None => g
            .data_dir()
            .join(u.local_path(user).map_err(|e| ferr(e, errcode::E_INVAL))?),
        Some(n) => {
            let view = oxh_dfs::views::mount_point(&g.data_dir(), user)
                .join(oxh_dfs::views::DEVICE_VIEW)
                .join(n);
            if std::fs::metadata(&view).is_err() {
                return Err(ferr(
                    format!(
                        "device {n} (no device view of it here: is it online, and are the views mounted?)"
                    ),
                    errcode::E_NETUNREACH,
                ));
            }
            view.join(u.account_path().map_err(|e| ferr(e, errcode::E_INVAL))?)
        }
    };
    Ok(Target { path, uri: Some(u) })
}

fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "link"
    } else {
        "other"
    }
}

/// Copies a file on this device (or through a view): under a temp name, renamed when done.
fn copy_local(src: &Path, dst: &Path) -> Result<u64> {
    let tmp = dst.with_file_name(format!(
        ".{}.oxhcp-{}",
        dst.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let r = std::fs::copy(src, &tmp).map_err(|e| io_err(src.display(), &e));
    let r = r.and_then(|n| {
        std::fs::rename(&tmp, dst)
            .map(|_| n)
            .map_err(|e| io_err(dst.display(), &e))
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// `oxh fs cp` from another device: the SDK's copy, a progress bar, Ctrl-C to cancel.
async fn copy_remote(g: &Global, src: &str, dst: &Path) -> Result<i32> {
    let dev = g.connect().await?;
    let signal = oxh_sdk::fs::TaskSignal::default();
    let mut bar = Progress::new();
    let t0 = Instant::now();
    let fs = dev.fs();
    let r = {
        let copy = fs.copy(src, dst, &signal, |p| {
            bar.show(|| {
                let frac = if p.total_size == 0 {
                    1.0
                } else {
                    p.processed_size as f64 / p.total_size as f64
                };
                let filled = (frac * 30.0) as usize;
                format!(
                    "[{}{}] {:>3.0}% {:.1}/{:.1} MiB, {}",
                    "#".repeat(filled),
                    "-".repeat(30 - filled.min(30)),
                    frac * 100.0,
                    p.processed_size as f64 / MIB,
                    p.total_size as f64 / MIB,
                    rate(p.processed_size, t0.elapsed())
                )
            })
        });
        tokio::pin!(copy);
        tokio::select! {
            r = &mut copy => r,
            _ = tokio::signal::ctrl_c() => {
                signal.cancel();
                copy.await
            }
        }
    };
    bar.clear();
    let n = r.map_err(|e| anyhow!("cannot copy {src}: {e}"))?;
    let took = t0.elapsed();
    println!(
        "copied {n} bytes to {} in {:.2} s: {}",
        dst.display(),
        took.as_secs_f64(),
        rate(n, took)
    );
    Ok(0)
}

/// Runs `oxh fs ...`.
pub async fn run(g: &Global, c: &FsCmd) -> Result<i32> {
    match c {
        FsCmd::Ls { target } => {
            let t = resolve(g, target)?;
            let mut v: Vec<(String, &str, u64)> = Vec::new();
            for e in std::fs::read_dir(&t.path).map_err(|e| io_err(target, &e))? {
                let e = e.map_err(|e| io_err(target, &e))?;
                let m = e.metadata().map_err(|e| io_err(target, &e))?;
                v.push((
                    e.file_name().to_string_lossy().into_owned(),
                    kind(m.file_type()),
                    m.len(),
                ));
            }
            v.sort();
            if g.json {
                let j: Vec<_> = v
                    .iter()
                    .map(|(n, k, s)| serde_json::json!({"name": n, "type": k, "size": s}))
                    .collect();
                super::print_json(&j)?;
            } else {
                for (n, k, s) in v {
                    println!("{k:4} {s:>12} {n}");
                }
            }
        }
        FsCmd::Cat { target } => {
            let t = resolve(g, target)?;
            let mut f = std::fs::File::open(&t.path).map_err(|e| io_err(target, &e))?;
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut f, &mut out).map_err(|e| io_err(target, &e))?;
            out.flush()?;
        }
        FsCmd::Stat { target } => {
            use std::os::unix::fs::MetadataExt;
            let t = resolve(g, target)?;
            let m = std::fs::metadata(&t.path).map_err(|e| io_err(target, &e))?;
            let j = serde_json::json!({
                "type": kind(m.file_type()),
                "size": m.len(),
                "mode": format!("{:o}", m.mode() & 0o7777),
                "mtime": m.mtime(),
            });
            if g.json {
                super::print_json(&j)?;
            } else {
                println!("type={}", j["type"].as_str().unwrap_or_default());
                println!("size={}", m.len());
                println!("mode={:o}", m.mode() & 0o7777);
                println!("mtime={}", m.mtime());
            }
        }
        FsCmd::Cp { src, dst } => {
            let s = resolve(g, src).or_else(|e| match src.parse::<FileUri>() {
                // A peer without a view here can still send its file over the bus.
                Ok(u) if u.is_remote() => Ok(Target {
                    path: PathBuf::new(),
                    uri: Some(u),
                }),
                _ => Err(e),
            })?;
            let d = resolve(g, dst)?;
            let mut to = d.path.clone();
            if std::fs::metadata(&to).is_ok_and(|m| m.is_dir()) {
                let name = match &s.uri {
                    Some(u) => u.name().to_string(),
                    None => Path::new(src)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
                to = to.join(name);
            }
            if s.remote().is_some() && d.remote().is_none() {
                return copy_remote(g, src, &to).await;
            }
            let n = copy_local(&s.path, &to)?;
            println!("copied {n} bytes to {}", to.display());
        }
        FsCmd::Mv { src, dst } => {
            let (s, d) = (resolve(g, src)?, resolve(g, dst)?);
            let mut to = d.path.clone();
            if std::fs::metadata(&to).is_ok_and(|m| m.is_dir()) {
                to = to.join(s.path.file_name().unwrap_or_default());
            }
            std::fs::rename(&s.path, &to).map_err(|e| io_err(format!("{src} → {dst}"), &e))?;
        }
        FsCmd::Rm { recursive, target } => {
            let t = resolve(g, target)?;
            let m = std::fs::symlink_metadata(&t.path).map_err(|e| io_err(target, &e))?;
            let r = if m.is_dir() {
                if *recursive {
                    std::fs::remove_dir_all(&t.path)
                } else {
                    std::fs::remove_dir(&t.path)
                }
            } else {
                std::fs::remove_file(&t.path)
            };
            r.map_err(|e| io_err(target, &e))?;
        }
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
