//! `oxh sim`: a local super device. Starts N device daemons on this machine, each with its own
//! data dir and identity, binds them to each other through the real PIN flow, waits until all
//! are online to each other, prints them, and runs until Ctrl-C.

use super::Global;
use anyhow::{Context, Result, bail};
use clap::Args;
use oxh_kal::ready::ReadyLine;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `oxh sim` options.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// How many devices.
    #[arg(long, default_value_t = 3)]
    pub devices: usize,
    /// Put the devices' data dirs under DIR, kept after exit (default: a fresh temp dir, removed at exit).
    #[arg(long)]
    pub base_dir: Option<PathBuf>,
    /// Start, bind, print, then exit instead of running until Ctrl-C (for scripts and tests).
    #[arg(long)]
    pub exit_when_ready: bool,
    /// Do not build and install the example apps (notes, counter, hello-c).
    #[arg(long)]
    pub no_apps: bool,
    /// Serve the web console of the first device (as `oxh console` does) and print its URL.
    #[arg(long)]
    pub console: bool,
    /// The console's port with --console (0: any free one).
    #[arg(long, default_value_t = 0)]
    pub console_port: u16,
    /// The devices' names, in order, once per device (the rest are dev<N>).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
}

/// Builds the example apps under the sim's dev root (`scripts/build-examples`, from the
/// source tree this binary was built from) and returns their packages; `Err` says why not.
fn build_example_apps(base: &Path) -> Result<Vec<PathBuf>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-examples");
    if !script.is_file() {
        bail!(
            "no source tree at {} to build them from",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    let out = base.join("apps");
    let st = std::process::Command::new(&script)
        .arg(&out)
        .arg("--root")
        .arg(base.join("devroot"))
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !st.success() {
        bail!("{} failed", script.display());
    }
    let mut haps: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hap"))
        .collect();
    haps.sort();
    Ok(haps)
}

/// The children and their data dirs; killed (SIGTERM, then reaped) when dropped, also on a
/// panic, and then any device views a killed one left mounted are detached.
struct Children(Vec<(Child, PathBuf)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (c, _) in &self.0 {
            // SAFETY: kill(2) on our own children; no memory involved.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        for (c, dir) in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
            oxh_dfs::views::detach_dead(dir, crate::file_daemon::USER);
        }
    }
}

/// The fresh temp dir made when no `--base-dir` was given; removed when the sim ends.
struct TempBase(Option<PathBuf>);

impl Drop for TempBase {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

struct Started {
    name: String,
    data_dir: PathBuf,
    bus: String,
    /// hdc's address (`hdc tconn` it), or "off".
    hdc: String,
}

/// Runs `oxh sim`.
pub fn run(_g: &Global, a: &SimArgs) -> Result<i32> {
    if a.devices == 0 || a.devices > 32 {
        bail!("--devices must be 1..=32");
    }
    // Declared before the children, so dropped after them: a temp base goes once they stopped.
    let (base, _tmp) = match &a.base_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), TempBase(None))
        }
        None => {
            let t = tempfile_dir()?;
            (t.clone(), TempBase(Some(t)))
        }
    };
    let exe = std::env::current_exe().context("cannot find the oxh binary")?;
    let mut children = Children(Vec::new());
    let mut started: Vec<Started> = Vec::new();
    if a.names.len() > a.devices {
        bail!("{} names for {} devices", a.names.len(), a.devices);
    }
    for i in 1..=a.devices {
        let name = a
            .names
            .get(i - 1)
            .cloned()
            .unwrap_or_else(|| format!("dev{i}"));
        // The dir is dev<N> whatever the name says (a name is free text, a path is not).
        let data_dir = base.join(format!("dev{i}"));
        let mut cmd = Command::new(&exe);
        // A sim's devices are SL3, so that they sync S1..S3 KV stores.
        cmd.env("OXH_DEVICE_SECURITY_LEVEL", "SL3");
        cmd.arg("--data-dir").arg(&data_dir).args([
            "up",
            "--name",
            &name,
            "--listen",
            "127.0.0.1:0",
            "--discovery",
            "off",
            "--hdc-port",
            "0",
            // Its devices let this machine's user in without authorisation (below): the LAN
            // must not reach them at all.
            "--hdc-listen",
            "127.0.0.1",
        ]);
        for s in &started {
            cmd.args(["--peer", &s.bus]);
        }
        // If the sim itself dies (even SIGKILL), the kernel stops its devices.
        // SAFETY: prctl(2) in the child before exec; async-signal-safe, touches no memory.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        children.0.push((child, data_dir.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(r) = ReadyLine::parse(&line) {
                    let _ = tx.send(r);
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .with_context(|| format!("{name} did not become ready within 20 s"))?;
        let bus = ready
            .bus
            .context("ready line without bus address")?
            .to_string();
        let hdc = ready.field("hdc").unwrap_or_default();
        started.push(Started {
            name,
            data_dir,
            bus,
            hdc,
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    let table = rt.block_on(async {
        let mut devs = Vec::new();
        for s in &started {
            devs.push(oxh_sdk::Device::connect(&s.data_dir).await?);
        }
        // Bind every pair through the real PIN flow: j shows a PIN, i binds with it.
        for j in 0..devs.len() {
            for i in 0..j {
                let pin = devs[j].device_manager().issue_pin().await?;
                devs[i]
                    .device_manager()
                    .bind(&started[j].bus, &pin.pin)
                    .await
                    .with_context(|| {
                        format!("{} cannot bind {}", started[i].name, started[j].name)
                    })?;
            }
        }
        // Wait until everyone sees everyone online.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut all = true;
            for d in &devs {
                let t = d.device_manager().trusted_devices().await?;
                if t.iter().filter(|t| t.online).count() < devs.len() - 1 {
                    all = false;
                }
            }
            if all {
                break;
            }
            if Instant::now() > deadline {
                bail!("devices did not all come online within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // One dev root for this sim run, trusted by every device: apps signed under it
        // (`oxh hap keygen --root BASE/devroot`) install on all of them.
        let root_dir = base.join("devroot");
        std::fs::create_dir_all(&root_dir)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (root_pem, root_key) = oxh_bundle::tools::dev_root(now)?;
        std::fs::write(root_dir.join("root.pem"), &root_pem)?;
        // The CA every sim device trusts: whoever reads it can sign apps they all install.
        oxh_kal::write_secret(&root_dir.join("root.key"), root_key.as_bytes())?;
        for d in &devs {
            d.bundle().trust_add(&root_pem).await?;
            // Local development: hdc connects without the authorisation step.
            d.param()
                .set(oxh_hdc::device::AUTH_BYPASS_PARAM, "1")
                .await?;
        }
        // The example apps, on every device, so that `aa start` works from the first command.
        let mut apps = Vec::new();
        if !a.no_apps {
            match build_example_apps(&base) {
                Ok(haps) => {
                    for hap in &haps {
                        let data = std::fs::read(hap)?;
                        for d in &devs {
                            let r = d.bundle().install(&[&data], 100, false).await?;
                            if !apps.contains(&r.bundle_name) {
                                apps.push(r.bundle_name);
                            }
                        }
                    }
                }
                Err(e) => eprintln!("example apps not installed: {e:#}"),
            }
        }
        let mut rows = Vec::new();
        for (d, s) in devs.iter().zip(&started) {
            let l = d.device_manager().local_device_info().await?;
            rows.push((
                s.name.clone(),
                l.network_id,
                s.bus.clone(),
                s.data_dir.clone(),
            ));
        }
        anyhow::Ok((rows, apps))
    })?;
    let (table, apps) = table;
    println!(
        "super device ready: {} devices bound and online in {:.0} ms",
        table.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    println!("{:<6} {:<18} {:<22} DATA DIR", "NAME", "NETWORK ID", "BUS");
    for (name, nid, bus, dir) in &table {
        println!(
            "{name:<6} {:<18} {bus:<22} {}",
            &nid[..16.min(nid.len())],
            dir.display()
        );
    }
    for s in &started {
        println!("hdc {:<6} {}   (hdc tconn {})", s.name, s.hdc, s.hdc);
    }
    println!("talk to a device with: oxh --data-dir DIR ...   (Ctrl-C stops them all)");
    println!(
        "every device trusts the dev root in {}: sign apps with `oxh hap keygen --root` on it",
        base.join("devroot").display()
    );
    if !apps.is_empty() {
        println!(
            "apps installed on every device: {}   (try: oxh --data-dir DIR aa start -b com.example.notes -W)",
            apps.join(", ")
        );
    }
    if a.exit_when_ready {
        return Ok(0);
    }
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let stop = async {
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(mut i), Ok(mut t)) => {
                    tokio::select! {
                        _ = i.recv() => {},
                        _ = t.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        match (a.console, started.first()) {
            (true, Some(first)) => {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], a.console_port));
                let (listener, host) = super::console::listen(addr).await?;
                let cfg = super::console::config(first.data_dir.clone())?;
                println!("oxh console: http://{host}/?token={}", cfg.token);
                use std::io::Write;
                std::io::stdout().flush()?;
                oxh_console::serve(listener, cfg, stop).await?;
            }
            _ => stop.await,
        }
        anyhow::Ok(())
    })?;
    eprintln!("stopping {} devices", children.0.len());
    drop(children);
    Ok(0)
}

fn tempfile_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("oxh-sim-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}
