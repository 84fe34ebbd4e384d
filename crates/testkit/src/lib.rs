//! Test support for tests that need separate hosts: Linux network namespaces joined by a
//! bridge, created by the test and removed when it ends, even when it fails. Nothing here
//! touches the host's own interfaces or routes. And [`zip`]: hostile zip files crafted from
//! honest ones.

pub mod zip;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Runs a program; its stdout, or an error naming the command and its stderr.
pub fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside namespace `ns`.
pub fn ns_run(ns: &str, cmd: &[&str]) -> Result<String, String> {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    run("ip", &args)
}

/// Set to `1` (`.ci/run` does, when it runs as root): a test that would skip because this run
/// lacks root, `runuser` or namespaces fails instead, since such a run must be able to run it.
pub const REQUIRE_ROOT_ENV: &str = "OXH_REQUIRE_ROOT";

/// Skips `test` because of `why` (something only root, or a root machine's tools, provide):
/// prints why; under [`REQUIRE_ROOT_ENV`]`=1` panics instead, so the skip cannot pass
/// unnoticed where the test must run.
pub fn skip(test: &str, why: &str) {
    if std::env::var(REQUIRE_ROOT_ENV).as_deref() == Ok("1") {
        panic!("{test} would skip ({why}), but {REQUIRE_ROOT_ENV}=1: this run must run it");
    }
    eprintln!("SKIP {test}: {why}");
}

/// Whether this process is root; if not, [`skip`]s `test` (`what` says what root is for).
pub fn require_root(test: &str, what: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, &format!("needs root {what} (CI runs as root)"));
    false
}

/// Whether this run can start processes as `nobody` (root and `runuser`); if not, [`skip`]s.
pub fn require_nobody(test: &str) -> bool {
    if !require_root(test, "to run a process as nobody") {
        return false;
    }
    if Command::new("runuser").arg("--help").output().is_err() {
        skip(test, "runuser not found");
        return false;
    }
    true
}

/// `n` host namespaces on a bridge (`{subnet}.1`, `.2`, ... on their `eth0`), or `None`
/// after [`skip`]ping `test` when namespaces cannot be made here.
pub fn bridged_hosts(
    test: &str,
    prefix: &str,
    n: usize,
    subnet: &str,
) -> Option<(Netns, Vec<String>)> {
    if let Some(why) = skip_reason() {
        skip(test, &why);
        return None;
    }
    let mut netns = Netns::new(prefix);
    let hosts = match (0..n).map(|_| netns.add()).collect::<Result<Vec<_>, _>>() {
        Ok(h) => h,
        Err(e) => {
            skip(test, &format!("cannot make network namespaces: {e}"));
            return None;
        }
    };
    if let Err(e) = netns.bridge(&hosts, subnet) {
        skip(
            test,
            &format!("cannot make a bridge between namespaces: {e}"),
        );
        return None;
    }
    Some((netns, hosts))
}

/// Why namespace tests cannot run here (not root, no `ip`), if they cannot; tests print it
/// and skip.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    if let Err(e) = run("ip", &["-V"]) {
        return Some(format!("no usable `ip`: {e}"));
    }
    None
}

static NS_SEQ: AtomicU32 = AtomicU32::new(0);

/// Network namespaces made by a test; deleted on drop (newest first), which also deletes the
/// veths and bridges inside them. Drop processes running in them first.
#[derive(Debug)]
pub struct Netns {
    prefix: String,
    names: Vec<String>,
}

impl Netns {
    /// A set whose namespace names start with `prefix` (plus pid and a counter, so parallel
    /// runs never collide).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            names: Vec::new(),
        }
    }

    /// Creates a namespace with `lo` up; returns its name.
    pub fn add(&mut self) -> Result<String, String> {
        let name = format!(
            "{}{}-{}",
            self.prefix,
            std::process::id(),
            NS_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        self.names.push(name.clone());
        ns_run(&name, &["ip", "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// A bridge `br0` in a namespace of its own, and one veth per host namespace: `pN` on the
    /// bridge, `eth0` with `{subnet}.N+1/24` in the host. Waits (bounded) for the links.
    pub fn bridge(&mut self, hosts: &[String], subnet: &str) -> Result<(), String> {
        let br = self.add()?;
        ns_run(&br, &["ip", "link", "add", "br0", "type", "bridge"])?;
        ns_run(&br, &["ip", "link", "set", "br0", "up"])?;
        for (i, ns) in hosts.iter().enumerate() {
            let port = format!("p{i}");
            ns_run(
                &br,
                &[
                    "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ],
            )?;
            ns_run(&br, &["ip", "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{subnet}.{}/24", i + 1);
            ns_run(ns, &["ip", "addr", "add", &addr, "dev", "eth0"])?;
            ns_run(ns, &["ip", "link", "set", "eth0", "up"])?;
        }
        for ns in hosts {
            wait_link_up(ns)?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in self.names.drain(..).rev() {
            if let Err(e) = run("ip", &["netns", "del", &n]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Waits (at most 5 s) until `eth0` in `ns` is up, so that a first multicast is not lost to
/// the link coming up.
pub fn wait_link_up(ns: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ns_run(ns, &["ip", "-br", "link", "show", "eth0"])?;
        if out.contains(" UP ") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("eth0 in {ns} not up: {out}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
