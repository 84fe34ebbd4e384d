//! hdc benchmark: a real `oxhd` with hdc on loopback (OpenHarmony's session packets inside TLS
//! 1.3), the real host server (run here, so its CPU is counted) and `hdc` tool,
//! beside OpenSSH's scp/ssh (Debian's openssh-server and client) on loopback in the same run.
//! Measures `hdc file send` / `file recv` of one big file with and without `-z` against `scp`
//! up and down, and the `hdc shell true` round trip against `ssh HOST true`.
//!
//! Run: `cargo bench --bench hdc` (needs /usr/sbin/sshd and scp for the peer figures: the
//! peer is skipped with a note when missing). `OXH_BENCH_MB` sets the file size (1024).
//! Times are wall times of the whole command (process start included), medians of 3 runs.
//! `OXH_BENCH_OHOS_WIRE=1` makes the device answer only OpenHarmony's wire
//! (`persist.hdc.ohos_only`), so the host server drives it with OpenHarmony's own commands
//! (FILE_*, LZ4 for `-z`) over its TLS-PSK channel, authenticated with the RSA host key.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn timed(c: Command) -> f64 {
    timed_to(c, None)
}

/// Times a command that writes `dest`. Untimed before it: the previous run's copy is removed
/// and dirty pages are written back, so no run (ours or the peer's) pays for the previous
/// one's unlink or writeback.
fn timed_to(mut c: Command, dest: Option<&Path>) -> f64 {
    if let Some(d) = dest {
        let _ = std::fs::remove_file(d);
    }
    let _ = Command::new("sync").status();
    let t = Instant::now();
    let o = c.output().expect("run");
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) of this process's waited-for children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU seconds (user + system) a running process has used, from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / hz
}

struct Host {
    home: PathBuf,
    port: u16,
}

impl Host {
    fn hdc(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxh"));
        c.arg("hdc")
            .args(args)
            .env("HOME", &self.home)
            .env("OHOS_HDC_SERVER_PORT", self.port.to_string())
            .stdin(Stdio::null());
        c
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.hdc(&["kill"]).output();
    }
}

fn make_file(p: &Path, mb: usize) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(p).expect("create"));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for c in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        w.write_all(&block).expect("write");
    }
    w.flush().expect("flush");
}

/// `mb` MiB of log-like text (hilog lines with changing numbers): what `-z` is for.
fn make_text_file(p: &Path, mb: usize) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(p).expect("create"));
    let (mut n, mut x) = (0u64, 0x9e37_79b9u64);
    while n < (mb as u64) << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let line = format!(
            "11-26 17:{:02}:{:02}.{:03} {:5} {:5} I C01500/oxhd: session {} sent {} bytes to {:016x}\n",
            (x >> 8) % 60,
            (x >> 16) % 60,
            (x >> 24) % 1000,
            4000 + (x >> 32) % 900,
            4000 + (x >> 40) % 900,
            (x >> 48) % 64,
            (x >> 20) % 100_000,
            x
        );
        w.write_all(line.as_bytes()).expect("write");
        n += line.len() as u64;
    }
    w.flush().expect("flush");
}

struct Sshd {
    _proc: Proc,
    port: u16,
    key: PathBuf,
    user: String,
}

impl Sshd {
    fn opts(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key.to_string_lossy().into_owned(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "BatchMode=yes".into(),
        ]
    }
}

/// Starts sshd on a free loopback port with a temp host key and an authorised temp key.
fn start_sshd(dir: &Path) -> Result<Sshd, String> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() || Command::new("scp").arg("-V").output().is_err() {
        return Err("sshd or scp missing (apt-get install openssh-server openssh-client)".into());
    }
    let _ = std::fs::create_dir_all("/run/sshd");
    for name in ["host", "client"] {
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(name))
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
    }
    std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys"))
        .map_err(|e| e.to_string())?;
    let user = String::from_utf8_lossy(
        &Command::new("id")
            .arg("-un")
            .output()
            .map_err(|e| e.to_string())?
            .stdout,
    )
    .trim()
    .to_string();
    let port = free_port();
    let cfg = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
         StrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n",
        dir.join("host").display(),
        dir.join("authorized_keys").display(),
        dir.join("sshd.pid").display()
    );
    std::fs::write(dir.join("sshd_config"), cfg).map_err(|e| e.to_string())?;
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let s = Sshd {
        _proc: Proc(child),
        port,
        key: dir.join("client"),
        user,
    };
    let t0 = Instant::now();
    loop {
        let o = Command::new("ssh")
            .args(s.opts())
            .args([
                "-p",
                &port.to_string(),
                &format!("{}@127.0.0.1", s.user),
                "true",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            return Ok(s);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "sshd did not accept: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let mb: usize = std::env::var("OXH_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = (mb as f64) * 1048576.0;
    let tmp = tempfile::Builder::new()
        .prefix("oxh-bench-hdc-")
        .tempdir()
        .expect("tmp");
    // The device's shell user (files are written and read as it) must reach its own dir.
    std::fs::set_permissions(
        tmp.path(),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o711),
    )
    .expect("chmod");
    let src = tmp.path().join("src.bin");
    make_file(&src, mb);
    let text = tmp.path().join("src.txt");
    make_text_file(&text, mb);

    // The device.
    let data = tmp.path().join("device");
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxhd"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--discovery",
            "off",
            "--hdc-port",
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn oxhd");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let dev_pid = child.id();
    let _dev = Proc(child);
    let ready = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| oxh_kal::ready::ReadyLine::parse(&l).ok())
        .expect("oxhd ready");
    let addr = ready.hdc.expect("hdc address").to_string();
    let ohos_wire = std::env::var("OXH_BENCH_OHOS_WIRE").as_deref() == Ok("1");
    let oxh = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_oxh"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .expect("oxh");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    if ohos_wire {
        // No bypass: a bypassed OpenHarmony session gets no TLS-PSK.
        oxh(&["param", "set", "persist.hdc.ohos_only", "1"]);
    } else {
        oxh(&["param", "set", "persist.hdc.auth_bypass", "1"]);
    }
    let host = Host {
        home: tmp.path().join("home"),
        port: free_port(),
    };
    std::fs::create_dir_all(&host.home).expect("home");
    // The host server in the foreground, ours to measure: it reads and writes the host's
    // files (the `hdc` tool only asks and prints).
    let mut server = host.hdc(&["-m"]);
    let server = Proc(server.stderr(Stdio::null()).spawn().expect("hdc server"));
    let server_pid = server.0.id();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", host.port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the host server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if ohos_wire {
        // The RSA host key is unknown until the device's owner allows it.
        let _ = host.hdc(&["tconn", &addr]).output().expect("tconn");
        let pending = oxh(&["hdc", "allow", "--list"]);
        let who = pending.split_whitespace().next().expect("a pending host");
        oxh(&["hdc", "allow", "--always", who]);
    }
    let o = host.hdc(&["tconn", &addr]).output().expect("tconn");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if ohos_wire {
        eprintln!("on OpenHarmony's wire (FILE_* commands, TLS-PSK)");
    }

    let remote = data.join("local/tmp/dst.bin");
    let back = tmp.path().join("back.bin");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut rows: Vec<(String, f64)> = Vec::new();
    // CPU per GiB of the hdc tool and of oxhd (median run): what the transfer costs, which a
    // busy machine does not change the way it changes wall time.
    let mut cpu_rows: Vec<(String, f64, f64)> = Vec::new();
    for (name, args) in [
        ("hdc file send", vec!["file", "send"]),
        ("hdc file recv", vec!["file", "recv"]),
        ("hdc file send -z", vec!["file", "send", "-z"]),
        ("hdc file recv -z", vec!["file", "recv", "-z"]),
        ("hdc file send -z, text", vec!["file", "send", "-z"]),
        ("hdc file recv -z, text", vec!["file", "recv", "-z"]),
    ] {
        let recv = args.contains(&"recv");
        let is_text = name.ends_with("text");
        let (src, remote) = if is_text {
            (text.clone(), data.join("local/tmp/dst.txt"))
        } else {
            (src.clone(), remote.clone())
        };
        let mut cpu: Vec<(f64, f64)> = Vec::new();
        let runs: Vec<f64> = (0..3)
            .map(|_| {
                let mut a: Vec<String> = args.iter().map(|x| x.to_string()).collect();
                if recv {
                    a.extend([s(&remote), s(&back)]);
                } else {
                    a.extend([s(&src), s(&remote)]);
                }
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                let c = host.hdc(&a);
                let (c0, s0, d0) = (children_cpu(), proc_cpu(server_pid), proc_cpu(dev_pid));
                let t = timed_to(c, Some(if recv { &back } else { &remote }));
                let host_cpu = children_cpu() - c0 + proc_cpu(server_pid) - s0;
                cpu.push((host_cpu, proc_cpu(dev_pid) - d0));
                t
            })
            .collect();
        let size = std::fs::metadata(&src).map_or(bytes, |m| m.len() as f64);
        let rate = size / median(runs.clone()) / 1e6;
        let gib = size / (1u64 << 30) as f64;
        let client = median(cpu.iter().map(|c| c.0 / gib).collect());
        let device = median(cpu.iter().map(|c| c.1 / gib).collect());
        eprintln!(
            "{name}: {rate:.0} MB/s (runs: {runs:.2?} s; CPU/GiB hdc {client:.2} s, oxhd {device:.2} s)"
        );
        rows.push((name.to_string(), rate));
        cpu_rows.push((name.to_string(), client, device));
    }
    // The limit of `-z` on compressible data: zstd level 1 on one core, the CLI over the same
    // text file in the same run (what one compressing thread can do at best).
    let zstd_text = Command::new("zstd").arg("-V").output().is_ok().then(|| {
        let t: Vec<f64> = (0..3)
            .map(|_| {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("zstd -q -1 -c '{}' > /dev/null", s(&text)));
                timed(c)
            })
            .collect();
        std::fs::metadata(&text).map_or(bytes, |m| m.len() as f64) / median(t) / 1e6
    });
    let shell: Vec<f64> = (0..21)
        .map(|_| timed(host.hdc(&["shell", "true"])) * 1e3)
        .collect();
    let shell_ms = median(shell);

    let ssh = start_sshd(tmp.path());
    let mut scp_up = None;
    let mut scp_down = None;
    let mut ssh_ms = None;
    match &ssh {
        Ok(sd) => {
            let target = format!("{}@127.0.0.1", sd.user);
            let scp = |from: String, to: String| {
                let mut c = Command::new("scp");
                c.args(sd.opts())
                    .args(["-q", "-P", &sd.port.to_string(), &from, &to]);
                c
            };
            let rem = tmp.path().join("scp-dst.bin");
            let up: Vec<f64> = (0..3)
                .map(|_| timed_to(scp(s(&src), format!("{target}:{}", s(&rem))), Some(&rem)))
                .collect();
            scp_up = Some(bytes / median(up) / 1e6);
            let down: Vec<f64> = (0..3)
                .map(|_| {
                    let to = tmp.path().join("scp-back.bin");
                    timed_to(scp(format!("{target}:{}", s(&rem)), s(&to)), Some(&to))
                })
                .collect();
            scp_down = Some(bytes / median(down) / 1e6);
            let rt: Vec<f64> = (0..21)
                .map(|_| {
                    let mut c = Command::new("ssh");
                    c.args(sd.opts())
                        .args(["-p", &sd.port.to_string(), &target, "true"]);
                    timed(c) * 1e3
                })
                .collect();
            ssh_ms = Some(median(rt));
        }
        Err(e) => println!("peer skipped: {e}"),
    }

    println!(
        "hdc vs scp/ssh on loopback, {mb} MiB file (pseudo-random bytes; \"text\": log lines, \
         MB/s of file bytes), medians of 3 (MB = 10^6 bytes)"
    );
    println!(
        "{:<22} {:>10} {:>12} {:>8}",
        "measurement", "hdc", "peer", "ratio"
    );
    for (name, v) in &rows {
        let peer = if name.contains("send") {
            scp_up
        } else {
            scp_down
        };
        let (p, r) = match peer {
            Some(p) => (format!("{p:.0} MB/s"), format!("{:.2}x", v / p)),
            None => ("-".into(), "-".into()),
        };
        println!("{name:<22} {:>7.0} MB/s {p:>12} {r:>8}", v);
    }
    let (p, r) = match ssh_ms {
        Some(p) => (format!("{p:.1} ms"), format!("{:.2}x", p / shell_ms)),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{:<22} {:>7.1} ms {p:>12} {r:>8}  (ratio: ssh time / hdc time)",
        "hdc shell true", shell_ms
    );
    if let Some(z) = zstd_text {
        println!(
            "limit for -z on the text file: `zstd -1` (one core) compresses it at {z:.0} MB/s"
        );
    }
    println!("goals: file >= 1000 MB/s and >= 3x scp (encrypted); shell true < 30 ms");
    println!("CPU seconds per GiB (user + system, median run): hdc tool and host server / oxhd");
    for (name, c, d) in &cpu_rows {
        println!("{name:<22} {c:>6.2} s / {d:.2} s");
    }
}
