//! hdc's command lines as the host server receives them (OpenHarmony's
//! `TranslateCommand::String2FormatCommand`): the text after the channel handshake, parsed
//! into what the server does itself and what it runs on the device. Pure.

use crate::channel::split_args;
use crate::proto::{FileOpts, Request};

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `checkserver`: the server's version, behind the CMD_CHECK_SERVER id.
    CheckServer,
    /// `version`.
    Version,
    /// `list targets [-v]`.
    ListTargets {
        /// `-v`.
        verbose: bool,
    },
    /// `tconn IP:PORT [-remove]`.
    Tconn {
        /// HOST:PORT.
        addr: String,
        /// `-remove`.
        remove: bool,
    },
    /// `kill`.
    Kill,
    /// `fport|rport SPEC SPEC`.
    FportAdd {
        /// The first spec (host for fport, device for rport).
        local: String,
        /// The second.
        remote: String,
        /// rport.
        reverse: bool,
    },
    /// `fport ls`.
    FportList,
    /// `fport rm SPEC SPEC` (or the task string `SPEC SPEC` as one argument).
    FportRemove {
        /// First spec.
        local: String,
        /// Second spec.
        remote: String,
    },
    /// `file send [opts] LOCAL REMOTE`: the server reads LOCAL.
    FileSend {
        /// Host path (relative to `cwd`).
        local: String,
        /// Device path.
        remote: String,
        /// Options.
        opts: FileOpts,
        /// `-cwd DIR`: the client's working directory.
        cwd: Option<String>,
    },
    /// `file recv [opts] REMOTE LOCAL`: the server writes LOCAL.
    FileRecv {
        /// Device path.
        remote: String,
        /// Host path (relative to `cwd`).
        local: String,
        /// Options.
        opts: FileOpts,
        /// `-cwd DIR`.
        cwd: Option<String>,
    },
    /// `install [-r] [options] PACKAGE`: the server reads the package.
    Install {
        /// The package (.hap, .hsp, .app or a directory of them).
        path: String,
        /// `-r`.
        replace: bool,
        /// `-cwd DIR`.
        cwd: Option<String>,
    },
    /// Run on the device as is: shells, hilog, boot, smode, uninstall.
    Device(Request),
}

/// Why a command line is refused, in hdc's words.
pub type ParseError = String;

/// The usage line for a bad command.
fn usage(what: &str) -> ParseError {
    format!("[Fail]Incorrect command: {what}")
}

/// Parses one command line. `shell` with nothing after it is the interactive shell; its pty
/// (rows, columns, TERM) comes from the client, or OpenHarmony's defaults.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let args = split_args(line);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(match a.as_slice() {
        ["checkserver"] => Command::CheckServer,
        ["version"] | ["-v"] => Command::Version,
        ["list", "targets", rest @ ..] => Command::ListTargets {
            verbose: rest.contains(&"-v"),
        },
        ["tconn", addr, rest @ ..] => Command::Tconn {
            addr: addr.to_string(),
            remove: rest.contains(&"-remove"),
        },
        ["kill", ..] => Command::Kill,
        ["fport", "ls"] => Command::FportList,
        ["fport", "rm", task] => {
            let t: Vec<&str> = task.split_whitespace().collect();
            let [l, r] = t.as_slice() else {
                return Err(usage("fport rm SPEC SPEC"));
            };
            Command::FportRemove {
                local: l.to_string(),
                remote: r.to_string(),
            }
        }
        ["fport", "rm", l, r] => Command::FportRemove {
            local: l.to_string(),
            remote: r.to_string(),
        },
        [kind @ ("fport" | "rport"), l, r] => Command::FportAdd {
            local: l.to_string(),
            remote: r.to_string(),
            reverse: *kind == "rport",
        },
        ["file", dir @ ("send" | "recv"), rest @ ..] => {
            let (opts, cwd, paths) = file_opts(rest)?;
            let [x, y] = paths.as_slice() else {
                return Err(usage(&format!(
                    "file {dir} [-a] [-z] [-sync] [-cwd DIR] SOURCE DESTINATION"
                )));
            };
            if *dir == "send" {
                Command::FileSend {
                    local: x.clone(),
                    remote: y.clone(),
                    opts,
                    cwd,
                }
            } else {
                Command::FileRecv {
                    remote: x.clone(),
                    local: y.clone(),
                    opts,
                    cwd,
                }
            }
        }
        ["install", rest @ ..] => {
            let (mut replace, mut cwd, mut paths) = (false, None, Vec::new());
            let mut it = rest.iter();
            while let Some(x) = it.next() {
                match *x {
                    "-r" => replace = true,
                    "-cwd" => cwd = it.next().map(|s| s.to_string()),
                    // hdc-rs passes an option and its value as one argument ("-w 180").
                    o if o.starts_with('-') => {}
                    p => paths.push(p.to_string()),
                }
            }
            let [path] = paths.as_slice() else {
                return Err(usage(
                    "install [-r] PACKAGE (one .hap, .hsp, .app or a directory of them)",
                ));
            };
            Command::Install {
                path: path.clone(),
                replace,
                cwd,
            }
        }
        ["uninstall", rest @ ..] => {
            let (mut keep, mut name) = (false, None);
            let mut it = rest.iter();
            while let Some(x) = it.next() {
                match *x {
                    "-k" => keep = true,
                    "-n" => name = it.next().map(|s| s.to_string()),
                    // "-n NAME" as one argument (hdc-rs), or another option with its value.
                    o if o.starts_with("-n ") => name = Some(o[3..].trim().to_string()),
                    o if o.starts_with('-') => {}
                    n => name = Some(n.to_string()),
                }
            }
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                return Err(usage("uninstall [-k] BUNDLE_NAME"));
            };
            Command::Device(Request::Uninstall { name, keep })
        }
        ["shell"] => Command::Device(Request::Shell {
            command: None,
            pty: Some(crate::proto::WinSize { rows: 24, cols: 80 }),
            term: "xterm".into(),
        }),
        ["shell", "-b", rest @ ..] => {
            // As OpenHarmony's host checks it (HostShellOption).
            let Some((bundle, cmd)) = rest.split_first() else {
                return Err("[Fail][E003001] Invalid bundle name: ".into());
            };
            if !crate::ohos_device::plain_bundle_name(bundle) {
                return Err(format!("[Fail][E003001] Invalid bundle name: {bundle}"));
            }
            if cmd.is_empty() {
                return Err("[Fail][E003002] Unsupport interactive shell command option".into());
            }
            Command::Device(Request::ShellIn {
                bundle: bundle.to_string(),
                command: cmd.join(" "),
            })
        }
        ["shell", ..] => {
            // The command is the rest of the line as typed, quotes and all: the device's
            // shell parses it.
            let rest = line.trim_start();
            let rest = rest["shell".len()..].trim_start();
            Command::Device(Request::Shell {
                command: Some(rest.to_string()),
                pty: None,
                term: String::new(),
            })
        }
        ["hilog", rest @ ..] => Command::Device(Request::Hilog {
            args: rest.iter().map(|s| s.to_string()).collect(),
        }),
        ["target", "boot", ..] => Command::Device(Request::Boot),
        ["smode", rest @ ..] => Command::Device(Request::Smode {
            root: !rest.contains(&"-r"),
        }),
        [] => return Err("[Fail]empty command".into()),
        _ => {
            return Err(format!(
                "[Fail]Unknown command: {}",
                line.chars().take(200).collect::<String>()
            ));
        }
    })
}

fn file_opts(args: &[&str]) -> Result<(FileOpts, Option<String>, Vec<String>), ParseError> {
    let mut o = FileOpts::default();
    let (mut cwd, mut rest) = (None, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "-a" => o.keep_attrs = true,
            "-z" => o.compress = true,
            "-sync" => o.sync = true,
            "-m" | "remote" => {}
            "-cwd" => cwd = Some(it.next().ok_or_else(|| usage("-cwd DIR"))?.to_string()),
            "-b" => return Err("[Fail]-b (an app's sandbox) is not supported yet".into()),
            p => rest.push(p.to_string()),
        }
    }
    Ok((o, cwd, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_commands() {
        assert_eq!(
            parse("list targets -v"),
            Ok(Command::ListTargets { verbose: true })
        );
        assert_eq!(parse("checkserver"), Ok(Command::CheckServer));
        assert_eq!(
            parse("fport rm \"tcp:1 tcp:2\""),
            Ok(Command::FportRemove {
                local: "tcp:1".into(),
                remote: "tcp:2".into()
            })
        );
        assert_eq!(
            parse("rport tcp:1 tcp:2"),
            Ok(Command::FportAdd {
                local: "tcp:1".into(),
                remote: "tcp:2".into(),
                reverse: true
            })
        );
        assert!(
            parse("frobnicate")
                .unwrap_err()
                .starts_with("[Fail]Unknown command")
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn files_take_options_and_the_clients_directory() {
        assert_eq!(
            parse(r#"file send -a -z -cwd "/home/u/my dir" a.txt /data/local/tmp"#),
            Ok(Command::FileSend {
                local: "a.txt".into(),
                remote: "/data/local/tmp".into(),
                opts: FileOpts {
                    keep_attrs: true,
                    compress: true,
                    sync: false
                },
                cwd: Some("/home/u/my dir".into()),
            })
        );
        assert!(parse("file recv onlyone").is_err());
        assert!(parse("file send -cwd").is_err());
    }

    #[test]
    fn shell_in_a_bundle_is_checked_as_openharmonys_host_does() {
        assert_eq!(
            parse("shell -b com.example.notes ls -l"),
            Ok(Command::Device(Request::ShellIn {
                bundle: "com.example.notes".into(),
                command: "ls -l".into(),
            }))
        );
        let e = parse("shell -b ../../etc ls").unwrap_err();
        assert!(e.contains("E003001"), "{e}");
        let e = parse("shell -b com.example.notes").unwrap_err();
        assert!(e.contains("E003002"), "{e}");
    }

    #[test]
    fn shells_keep_the_command_as_typed() {
        assert_eq!(
            parse(r#"shell echo "a  b" | wc -c"#),
            Ok(Command::Device(Request::Shell {
                command: Some(r#"echo "a  b" | wc -c"#.into()),
                pty: None,
                term: String::new()
            }))
        );
        assert!(matches!(
            parse("shell"),
            Ok(Command::Device(Request::Shell { command: None, .. }))
        ));
    }

    #[test]
    fn install_and_uninstall_as_the_clients_write_them() {
        assert_eq!(
            parse("install -r \"-w 180\" /tmp/a.hap"),
            Ok(Command::Install {
                path: "/tmp/a.hap".into(),
                replace: true,
                cwd: None
            })
        );
        for line in [
            "uninstall -k -n com.x",
            "uninstall -k \"-n com.x\"",
            "uninstall -k com.x",
        ] {
            assert_eq!(
                parse(line),
                Ok(Command::Device(Request::Uninstall {
                    name: "com.x".into(),
                    keep: true
                })),
                "{line}"
            );
        }
        assert!(parse("uninstall").is_err());
    }
}
