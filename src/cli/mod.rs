//! The `oxh` command line. One multi-call binary: run through a link named `hilog`, `param`,
//! `bm`, `aa`, `hdc` or `hidumper` it is that OpenHarmony tool; run as `oxh` it has them all as subcommands.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

mod aa;
mod atm;
mod bm;
mod bus;
mod console;
mod device;
mod fs;
mod hap;
mod hdc;
mod hidumper;
mod hilog;
mod kv;
mod param;
mod rdb;
mod sa;
mod sim;

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The device's data dir: picks which local device to run or talk to.
    #[arg(long, global = true, env = "OXH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print listings as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    /// The data dir this command is about.
    pub fn data_dir(&self) -> PathBuf {
        oxh_sdk::resolve_data_dir(self.data_dir.as_deref())
    }
    /// Connects to the device.
    pub async fn connect(&self) -> Result<oxh_sdk::Device> {
        Ok(oxh_sdk::Device::connect(self.data_dir()).await?)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "oxh",
    version,
    about = "oxharmony: OpenHarmony's distributed system services on Linux"
)]
struct Oxh {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run this device's daemon in the foreground (same code as `oxhd`).
    Up(UpArgs),
    /// System abilities.
    #[command(subcommand)]
    Sa(sa::SaCmd),
    /// This device.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// System parameters (OpenHarmony's `param`).
    Param(param::ParamArgs),
    /// Packages: pack, keygen, sign, verify, info, trust roots.
    #[command(subcommand)]
    Hap(hap::HapCmd),
    /// The bundle manager (OpenHarmony's `bm`).
    Bm(bm::BmArgs),
    /// Logs (OpenHarmony's `hilog`).
    Hilog(Box<hilog::HilogArgs>),
    /// Access tokens and permissions.
    #[command(subcommand)]
    Atm(atm::AtmCmd),
    /// Soft bus sockets: listen on a session name, send to a device.
    #[command(subcommand)]
    Bus(bus::BusCmd),
    /// The distributed KV store (@ohos.data.distributedKVStore).
    #[command(subcommand)]
    Kv(kv::KvCmd),
    /// The relational store (@ohos.data.relationalStore): SQL on an app's SQLite stores.
    #[command(subcommand)]
    Rdb(rdb::RdbCmd),
    /// Distributed files: security labels and file URIs.
    #[command(subcommand)]
    Fs(fs::FsCmd),
    /// The web console of the super device: prints its URL (with a one-time token).
    Console(console::ConsoleArgs),
    /// Run a local super device: several devices on this machine, bound to each other.
    Sim(sim::SimArgs),
    /// The device connector (OpenHarmony's `hdc`); `oxh hdc allow` for the device owner.
    #[command(disable_help_flag = true)]
    Hdc {
        /// hdc's own arguments (`hdc help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Abilities (OpenHarmony's `aa`): start, stop-service, force-stop, dump.
    #[command(disable_help_flag = true)]
    Aa {
        /// aa's own arguments (`aa help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// SA dumps (OpenHarmony's `hidumper`).
    #[command(disable_help_flag = true)]
    Hidumper {
        /// hidumper's own arguments: -ls, -s ID [-a ARGS].
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Options of `oxh up` / `oxhd`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Device name shown to other devices; kept for later starts ("" clears it). Without one,
    /// adverts carry no name and the device shows as "oxharmony device", never the host name.
    #[arg(long)]
    pub name: Option<String>,
    /// Device type: phone, tablet, tv, watch, pc, car, default; kept for later starts.
    #[arg(long = "type", value_name = "TYPE")]
    pub device_type: Option<String>,
    /// Soft bus address (QUIC over UDP); port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:0", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// A static peer HOST:PORT, for networks without multicast (repeatable).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<std::net::SocketAddr>,
    /// mDNS discovery on: all, loopback, off, or interface names (comma separated).
    #[arg(long, default_value = "all")]
    pub discovery: String,
    /// Bus heartbeat in milliseconds; a peer silent for 4 heartbeats is OFFLINE.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_ms: u64,
    /// How long a binding PIN (`oxh device pin`) stays valid, in seconds (OpenHarmony: 60).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub pin_validity_secs: u64,
    /// hdc's TCP port, kept as `persist.hdc.port` (default 8711; 0 picks a free port).
    #[arg(long, value_name = "PORT")]
    pub hdc_port: Option<u16>,
    /// The address hdc listens on: every interface by default (hosts on the LAN connect
    /// after authorisation); 127.0.0.1 keeps it to this machine, as `oxh sim` does.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub hdc_listen: std::net::IpAddr,
    /// Who hdc's shells and file transfers run as (a user name or uid; not root), kept as
    /// `persist.hdc.shell_user` (default: the `shell` user, else uid 2000).
    #[arg(long, value_name = "USER")]
    pub hdc_shell_user: Option<String>,
    /// `false` makes this a release device: `const.debuggable=0`, no `hdc smode` (a const
    /// parameter: the first start that sets it decides).
    #[arg(long, value_name = "BOOL")]
    pub debuggable: Option<bool>,
}

/// Runs a device: the body of `oxh up` and of `oxhd`.
pub fn run_daemon(global: &Global, up: &UpArgs) -> Result<()> {
    let device_type = up.device_type.as_deref().map(str::parse).transpose()?;
    use oxh_softbus::discovery::Interfaces;
    let discovery = match up.discovery.as_str() {
        "all" => Some(Interfaces::All),
        "loopback" => Some(Interfaces::Loopback),
        "off" | "none" => None,
        names => Some(Interfaces::Named(
            names.split(',').map(|n| n.trim().to_string()).collect(),
        )),
    };
    let cfg = crate::daemon::DaemonConfig {
        data_dir: global.data_dir(),
        name: up.name.clone(),
        device_type,
        listen: up.listen,
        peers: up.peers.clone(),
        discovery,
        heartbeat: std::time::Duration::from_millis(up.heartbeat_ms.max(50)),
        pin_validity: std::time::Duration::from_secs(up.pin_validity_secs),
        hdc_port: up.hdc_port,
        hdc_listen: up.hdc_listen,
        hdc_shell_user: up.hdc_shell_user.clone(),
        debuggable: up.debuggable,
    };
    // The app spawner is forked now, before the runtime starts threads (as OpenHarmony's
    // appspawn starts before the services it serves).
    let spawner = crate::daemon::fork_spawner(&cfg.data_dir)?;
    crate::daemon::runtime()?.block_on(crate::daemon::run(cfg, spawner))
}

/// `oxhd`'s arguments: the global options and `up`'s.
#[derive(Debug, Parser)]
#[command(name = "oxhd", version, about = "oxharmony device daemon")]
pub struct OxhdArgs {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// Device options.
    #[command(flatten)]
    pub up: UpArgs,
}

fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Entry point of the `oxh` binary; returns the process exit code.
pub fn main() -> Result<i32> {
    let argv: Vec<String> = std::env::args().collect();
    let tool = argv
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    match tool.as_str() {
        "hilog" => {
            let t = hilog::HilogTool::parse_from(&argv);
            client_runtime()?.block_on(hilog::run(&t.global, &t.args))
        }
        "param" => {
            let t = param::ParamTool::parse_from(&argv);
            client_runtime()?.block_on(param::run(&t.global, &t.args))
        }
        "bm" => {
            let t = bm::BmTool::parse_from(&argv);
            client_runtime()?.block_on(bm::run(&t.global, &t.args))
        }
        "hdc" => {
            let g = Global {
                data_dir: None,
                json: false,
            };
            hdc::main(&g, &argv[1..])
        }
        "hidumper" => {
            let g = Global {
                data_dir: None,
                json: false,
            };
            client_runtime()?.block_on(hidumper::run(&g, &argv[1..]))
        }
        "aa" => {
            let g = Global {
                data_dir: None,
                json: false,
            };
            print!("{}", client_runtime()?.block_on(aa::run(&g, &argv[1..])));
            Ok(0)
        }
        _ => {
            let o = Oxh::parse_from(&argv);
            match &o.cmd {
                Cmd::Up(up) => run_daemon(&o.global, up).map(|_| 0),
                Cmd::Sa(c) => client_runtime()?.block_on(sa::run(&o.global, c)),
                Cmd::Device(c) => client_runtime()?.block_on(device::run(&o.global, c)),
                Cmd::Atm(c) => client_runtime()?.block_on(atm::run(&o.global, c)),
                Cmd::Bus(c) => client_runtime()?.block_on(bus::run(&o.global, c)),
                Cmd::Kv(c) => client_runtime()?.block_on(kv::run(&o.global, c)),
                Cmd::Rdb(c) => client_runtime()?.block_on(rdb::run(&o.global, c)),
                Cmd::Fs(c) => client_runtime()?.block_on(fs::run(&o.global, c)),
                Cmd::Console(a) => client_runtime()?.block_on(console::run(&o.global, a)),
                Cmd::Sim(a) => sim::run(&o.global, a),
                Cmd::Param(a) => client_runtime()?.block_on(param::run(&o.global, a)),
                Cmd::Hap(c) => client_runtime()?.block_on(hap::run(&o.global, c)),
                Cmd::Bm(a) => client_runtime()?.block_on(bm::run(&o.global, a)),
                Cmd::Hilog(a) => client_runtime()?.block_on(hilog::run(&o.global, a)),
                Cmd::Hdc { args } => hdc::main(&o.global, args),
                Cmd::Aa { args } => {
                    print!("{}", client_runtime()?.block_on(aa::run(&o.global, args)));
                    Ok(0)
                }
                Cmd::Hidumper { args } => {
                    client_runtime()?.block_on(hidumper::run(&o.global, args))
                }
            }
        }
    }
}

/// Prints a value as pretty JSON.
fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
