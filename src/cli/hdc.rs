//! `hdc`: OpenHarmony's device connector tool, against oxharmony devices. Invoked as `hdc`
//! (a link to `oxh`) or as `oxh hdc ...`; `oxh hdc allow` is for the device's owner.
//!
//! The argument syntax is hdc's own (`-t KEY`, `-remove`, `-sync`, `list targets -v`), so it is
//! parsed by hand rather than with clap.

use super::Global;
use anyhow::{Result, bail};
use oxh_hdc::client;
use oxh_hdc::proto::WinSize;
use oxh_hdc::server;

const USAGE: &str = "\
usage: hdc [-t KEY] COMMAND
  list targets [-v]                     connected devices
  tconn IP:PORT [-remove]               connect (or drop) a device over TCP
  shell [COMMAND]                       interactive shell, or one command (exit status kept)
  file send [-a] [-z] [-sync] LOCAL REMOTE
  file recv [-a] [-z] REMOTE LOCAL
  hilog [hilog args]                    the device's log
  fport tcp:HOST_PORT tcp:DEVICE_PORT   forward a host port to the device
  rport tcp:DEVICE_PORT tcp:HOST_PORT   forward a device port to the host
  fport ls | fport rm SPEC SPEC         list / remove forwards
  install [-r] PACKAGE                  install a .hap/.hsp/.app (or a directory of them)
  uninstall [-k] BUNDLE                 uninstall a bundle (-k keeps its data)
  target boot                           restart the device daemon
  smode [-r]                            run shells and file transfers as root (-r: as the
                                        shell user again)
  kill [-r] | start [-r]                stop / start the host server
  -m                                    run the host server in the foreground
  version
server: 127.0.0.1:8710 (OHOS_HDC_SERVER_PORT changes it); keys in ~/.harmony
device owner: oxh hdc allow [--always] KEY | oxh hdc allow --list";

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Starts the host server detached (what every command does when none runs).
fn spawn_server() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let dir = oxh_hdc::keys::harmony_dir();
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("hdc_server.log"))?;
    std::process::Command::new(exe)
        .args(["hdc", "-m"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map(|_| ())
}

/// Entry point of `hdc ARGS` / `oxh hdc ARGS`; returns the exit code.
pub fn main(global: &Global, args: &[String]) -> Result<i32> {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args.first() == Some(&"allow") {
        return allow(global, &args[1..]);
    }
    let mut target = None;
    while let Some(a) = args.first().copied() {
        match a {
            "-t" if args.len() > 1 => {
                target = Some(args[1].to_string());
                args.drain(..2);
            }
            "-s" if args.len() > 1 => {
                // hdc's -s IP:PORT picks the server; we take the port.
                if let Some(p) = args[1].rsplit(':').next() {
                    unsafe_set_port(p);
                }
                args.drain(..2);
            }
            _ => break,
        }
    }
    let port = server::server_port();
    match args.as_slice() {
        [] | ["help"] | ["-h"] | ["--help"] => {
            println!("{USAGE}");
            Ok(0)
        }
        ["version"] | ["-v"] | ["--version"] => {
            println!("Ver: 3.1.0a (oxharmony {})", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        ["-m", ..] => run_server(port),
        ["kill", rest @ ..] => {
            let code = runtime()?.block_on(async {
                match client::connect(port, None, "").await {
                    Ok(c) => client::run(c, "kill", client::RunOpts::default()).await,
                    Err(_) => {
                        println!("Kill server finish");
                        0
                    }
                }
            });
            if rest.contains(&"-r") {
                return start(port);
            }
            Ok(code)
        }
        ["start", rest @ ..] => {
            if rest.contains(&"-r") {
                runtime()?.block_on(async {
                    if let Ok(c) = client::connect(port, None, "").await {
                        client::run(c, "kill", client::RunOpts::default()).await;
                        // Wait until the old server let go of the port.
                        for _ in 0..100 {
                            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                                .await
                                .is_err()
                            {
                                break;
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    }
                });
            }
            start(port)
        }
        _ => {
            let rt = runtime()?;
            let r = rt.block_on(command(port, target, &args));
            // A read of stdin may still be blocked on a runtime thread: do not wait for it.
            rt.shutdown_background();
            r
        }
    }
}

fn unsafe_set_port(p: &str) {
    if p.parse::<u16>().is_ok() {
        // SAFETY: called from main before the runtime (or any other thread) starts.
        unsafe { std::env::set_var("OHOS_HDC_SERVER_PORT", p) };
    }
}

fn start(port: u16) -> Result<i32> {
    runtime()?.block_on(async {
        match client::connect(port, Some(&spawn_server), "").await {
            Ok(_) => Ok(0),
            Err(e) => {
                eprintln!("{e}");
                Ok(1)
            }
        }
    })
}

fn run_server(port: u16) -> Result<i32> {
    runtime()?.block_on(async {
        let l = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => bail!("[Fail]cannot listen on 127.0.0.1:{port}: {e} (is a server running?)"),
        };
        let srv = server::Server::new(oxh_hdc::keys::harmony_dir())?;
        eprintln!("hdc server listening on 127.0.0.1:{port}");
        srv.run(l).await;
        Ok(0)
    })
}

/// The command line OpenHarmony's client would send for `args`: arguments re-quoted, a
/// shell's command as typed, and the working directory for commands naming host files.
fn command_line(args: &[&str]) -> Result<String, String> {
    use oxh_hdc::channel::quote_arg;
    let q = |a: &[&str]| a.iter().map(|x| quote_arg(x)).collect::<Vec<_>>().join(" ");
    Ok(match args {
        ["shell", rest @ ..] if !rest.is_empty() => format!("shell {}", rest.join(" ")),
        [first @ ("install" | "file"), rest @ ..] => {
            let cwd = std::env::current_dir().map_err(|e| format!("[Fail]{e}"))?;
            let (head, tail) = if *first == "file" && !rest.is_empty() {
                (format!("file {}", quote_arg(rest[0])), &rest[1..])
            } else {
                (first.to_string(), rest)
            };
            format!(
                "{head} -cwd {} {}",
                quote_arg(&cwd.to_string_lossy()),
                q(tail)
            )
        }
        _ => q(args),
    })
}

async fn command(port: u16, target: Option<String>, args: &[&str]) -> Result<i32> {
    if let ["discover", ..] = args {
        return discover();
    }
    let line = match command_line(args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let conn =
        match client::connect(port, Some(&spawn_server), target.as_deref().unwrap_or("")).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return Ok(1);
            }
        };
    let tty = client::stdin_is_tty();
    let o = match args {
        ["shell"] => {
            let pty = tty.then(|| {
                let ws = client::term_size().unwrap_or(WinSize { rows: 24, cols: 80 });
                (ws, std::env::var("TERM").unwrap_or_else(|_| "xterm".into()))
            });
            client::RunOpts { stdin: true, pty }
        }
        ["shell", ..] => client::RunOpts {
            stdin: !tty,
            pty: None,
        },
        _ => client::RunOpts::default(),
    };
    Ok(client::run(conn, &line, o).await)
}

/// `oxh hdc allow`: the device owner allows a host that was refused (once, or always).
fn allow(global: &Global, args: &[&str]) -> Result<i32> {
    let dir = oxh_kal::DeviceDirs::new(global.data_dir()).subsystem("hdc");
    let always = args.contains(&"--always");
    let list = args.contains(&"--list") || args.iter().all(|a| a.starts_with("--"));
    let who: Vec<&&str> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if list {
        let p = oxh_hdc::keys::pending(&dir)?;
        if p.is_empty() {
            println!("no host is waiting");
        }
        for (k, t, name) in p {
            let fp = oxh_hdc::keys::fingerprint_hex(&k);
            println!(
                "{}  {name}  (asked at unix time {t})",
                &fp[..16.min(fp.len())]
            );
        }
        return Ok(0);
    }
    let [who] = who.as_slice() else {
        bail!("usage: oxh hdc allow [--always] KEY | oxh hdc allow --list");
    };
    let key = oxh_hdc::keys::allow(&dir, who, always)?;
    println!(
        "host {} allowed {}",
        &key[..16],
        if always { "always" } else { "once" }
    );
    Ok(0)
}

/// `hdc discover`: oxharmony devices answering mDNS (the soft bus's `_oxh._udp` adverts) that
/// advertise an hdc port, as `IP:PORT<TAB>NAME (TYPE)`, ready for `hdc tconn IP:PORT`.
/// `OXH_HDC_DISCOVER_IFACES` picks the interfaces (`all`, the default; `loopback`; or names,
/// comma separated) and `OXH_HDC_DISCOVER_MS` how long to listen (default 2000).
fn discover() -> Result<i32> {
    use oxh_softbus::discovery::{Interfaces, browse};
    let ifaces = match std::env::var("OXH_HDC_DISCOVER_IFACES").as_deref() {
        Err(_) | Ok("") | Ok("all") => Interfaces::All,
        Ok("loopback") => Interfaces::Loopback,
        Ok(names) => Interfaces::Named(names.split(',').map(|n| n.trim().to_string()).collect()),
    };
    let wait = std::env::var("OXH_HDC_DISCOVER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000u64);
    let found = browse(&ifaces, std::time::Duration::from_millis(wait))?;
    let mut n = 0;
    for f in &found {
        let Some(port) = f.advert.hdc else { continue };
        // An IPv4 address first: what `hdc tconn` users type.
        let Some(ip) = f
            .addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| f.addrs.first())
        else {
            continue;
        };
        println!(
            "{}\t{} ({})",
            std::net::SocketAddr::new(*ip, port),
            f.advert
                .name
                .as_deref()
                .unwrap_or(oxh_devauth::DEFAULT_NAME),
            f.advert.device_type_name
        );
        n += 1;
    }
    if n == 0 {
        println!("[Empty]");
    }
    Ok(0)
}
