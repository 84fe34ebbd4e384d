//! `hdc`: OpenHarmony's device connector tool, against oxharmony devices. Invoked as `hdc`
//! (a link to `oxh`) or as `oxh hdc ...`; `oxh hdc allow` is for the device's owner.
//!
//! The argument syntax is hdc's own (`-t KEY`, `-remove`, `-sync`, `list targets -v`), so it is
//! parsed by hand rather than with clap.

use super::Global;
use anyhow::{Result, bail};
use oxh_hdc::client;
use oxh_hdc::proto::{FileOpts, Request};
use oxh_hdc::server;
use std::path::Path;

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
                match client::connect(port, None).await {
                    Ok(s) => simple(&s, None, Request::Kill).await,
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
                    if let Ok(s) = client::connect(port, None).await {
                        simple(&s, None, Request::Kill).await;
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
        match client::connect(port, Some(&spawn_server)).await {
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

async fn simple(s: &oxh_hdc::session::Session, target: Option<String>, req: Request) -> i32 {
    match client::open(s, target, req) {
        Ok(mut ch) => client::print_until_close(&mut ch).await,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Runs a transfer with a progress bar while it lasts (on a terminal).
async fn with_progress<F, Fut>(f: F) -> Result<oxh_hdc::transfer::Stats, String>
where
    F: FnOnce(oxh_hdc::transfer::ProgressRef) -> Fut,
    Fut: std::future::Future<Output = Result<oxh_hdc::transfer::Stats, String>>,
{
    let p = std::sync::Arc::new(oxh_hdc::transfer::Progress::default());
    let bar = client::progress_bar(p.clone());
    let r = f(Some(p)).await;
    client::clear_progress(bar);
    r
}

fn file_opts(args: &[&str]) -> (FileOpts, Vec<String>) {
    let mut o = FileOpts::default();
    let mut rest = Vec::new();
    for a in args {
        match *a {
            "-a" => o.keep_attrs = true,
            "-z" => o.compress = true,
            "-sync" => o.sync = true,
            "-m" | "-cwd" => {}
            p => rest.push(p.to_string()),
        }
    }
    (o, rest)
}

async fn command(port: u16, target: Option<String>, args: &[&str]) -> Result<i32> {
    let sess = match client::connect(port, Some(&spawn_server)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let t = target.clone();
    let code = match args {
        ["list", "targets", rest @ ..] => {
            let verbose = rest.contains(&"-v");
            simple(&sess, None, Request::ListTargets { verbose }).await
        }
        ["tconn", addr, rest @ ..] => {
            let remove = rest.contains(&"-remove");
            simple(
                &sess,
                None,
                Request::Tconn {
                    addr: addr.to_string(),
                    remove,
                },
            )
            .await
        }
        ["shell", cmd @ ..] => {
            let command = (!cmd.is_empty()).then(|| cmd.join(" "));
            let tty = client::stdin_is_tty();
            let pty = if command.is_none() && tty {
                Some(client::term_size().unwrap_or(oxh_hdc::proto::WinSize { rows: 24, cols: 80 }))
            } else {
                None
            };
            let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
            let req = Request::Shell {
                command: command.clone(),
                pty,
                term,
            };
            match client::open(&sess, t, req) {
                Ok(ch) => client::shell(ch, !tty || pty.is_some(), pty.is_some()).await,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        ["file", dir @ ("send" | "recv"), rest @ ..] => {
            let (opts, paths) = file_opts(rest);
            let [a, b] = paths.as_slice() else {
                eprintln!("[Fail]usage: hdc file {dir} [-a] [-z] [-sync] SOURCE DESTINATION");
                return Ok(1);
            };
            // File bytes go straight to the device when this host can dial it (same key, the
            // device pinned): one hop less. Otherwise through the server.
            let direct = direct_session(&sess, t.clone()).await;
            let open = |req: Request| match &direct {
                Some(d) => d
                    .open(&oxh_hdc::proto::to_bytes(&req))
                    .map_err(|e| e.to_string()),
                None => client::open(&sess, t.clone(), req),
            };
            let send = *dir == "send";
            let req = if send {
                Request::FileSend {
                    remote: b.clone(),
                    opts: opts.clone(),
                }
            } else {
                Request::FileRecv {
                    remote: a.clone(),
                    opts: opts.clone(),
                }
            };
            let mut ch = match open(req) {
                Ok(ch) => ch,
                Err(e) => return Ok(done(Err(e))),
            };
            let (ch, o) = (&mut ch, &opts);
            done(
                with_progress(move |p| async move {
                    if send {
                        oxh_hdc::transfer::send_files(ch, Path::new(a), o, true, p, &None).await
                    } else {
                        oxh_hdc::transfer::recv_progress(ch, Path::new(b), o, p, &None).await
                    }
                })
                .await,
            )
        }
        ["hilog", rest @ ..] => {
            let req = Request::Hilog {
                args: rest.iter().map(|s| s.to_string()).collect(),
            };
            simple(&sess, t, req).await
        }
        [kind @ ("fport" | "rport"), a, b] if *a != "rm" => {
            let req = Request::FportAdd {
                local: a.to_string(),
                remote: b.to_string(),
                reverse: *kind == "rport",
            };
            simple(&sess, t, req).await
        }
        ["fport", "ls"] => simple(&sess, None, Request::FportList).await,
        ["fport", "rm", a, b] => {
            let req = Request::FportRemove {
                local: a.to_string(),
                remote: b.to_string(),
            };
            simple(&sess, None, req).await
        }
        ["target", "boot"] => simple(&sess, t, Request::Boot).await,
        ["smode", rest @ ..] => {
            let root = !rest.contains(&"-r");
            simple(&sess, t, Request::Smode { root }).await
        }
        ["install", rest @ ..] => {
            let replace = rest.contains(&"-r");
            let paths: Vec<&&str> = rest.iter().filter(|a| !a.starts_with('-')).collect();
            let [path] = paths.as_slice() else {
                eprintln!(
                    "[Fail]usage: hdc install [-r] PACKAGE (.hap, .hsp, .app or a directory)"
                );
                return Ok(1);
            };
            match client::open(&sess, t, Request::Install { replace }) {
                Ok(mut ch) => {
                    let opts = FileOpts::default();
                    match oxh_hdc::transfer::send_files(
                        &mut ch,
                        Path::new(path),
                        &opts,
                        false,
                        None,
                        &None,
                    )
                    .await
                    {
                        Ok(_) => client::print_until_close(&mut ch).await,
                        Err(e) => done(Err(e)),
                    }
                }
                Err(e) => done(Err(e)),
            }
        }
        ["uninstall", rest @ ..] => {
            let keep = rest.contains(&"-k");
            let names: Vec<&&str> = rest.iter().filter(|a| !a.starts_with('-')).collect();
            let [name] = names.as_slice() else {
                eprintln!("[Fail]usage: hdc uninstall [-k] BUNDLE_NAME");
                return Ok(1);
            };
            let req = Request::Uninstall {
                name: name.to_string(),
                keep,
            };
            simple(&sess, t, req).await
        }
        ["discover", ..] => discover()?,
        _ => {
            eprintln!("[Fail]Unknown command: {}\n{USAGE}", args.join(" "));
            1
        }
    };
    Ok(code)
}

/// A direct session to the target for file data, if this host can dial it
/// (`OXH_HDC_DIRECT=0` turns it off).
async fn direct_session(
    sess: &oxh_hdc::session::Session,
    target: Option<String>,
) -> Option<oxh_hdc::session::Session> {
    if std::env::var("OXH_HDC_DIRECT").as_deref() == Ok("0") {
        return None;
    }
    let key = match target {
        Some(k) => k,
        None => {
            let list = client::text_of(sess, Request::ListTargets { verbose: false })
                .await
                .ok()?;
            let keys: Vec<&str> = list.lines().filter(|l| !l.starts_with('[')).collect();
            match keys.as_slice() {
                [one] => one.to_string(),
                _ => return None,
            }
        }
    };
    client::direct(&key).await.ok()
}

fn done(r: Result<oxh_hdc::transfer::Stats, String>) -> i32 {
    match r {
        Ok(s) => {
            println!("{}", s.finish_line());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
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
