//! Install on demand: a continuation's target that lacks the app fetches the signed HAPs
//! from the source's scheduler and installs them through its own bundle manager (see
//! [`crate::dms_api`], "Install on demand").
//!
//! The source serves a bundle's package files only to the device its current continuation
//! prepares on, for that txn and bundle, and only when the caller allowed install on demand
//! ([`crate::continuation::Source::offers`]); one fetch at a time. The files travel on the
//! stream of a remote SA call ([`dms_api::FETCH_BUNDLE_FROM_REMOTE`]), which the daemons relay
//! on a QUIC stream of the bus connection authenticated at binding. The target bounds what it
//! takes by the bundle manager's own limits (files per install, bytes per package) and by the
//! time a pending continuation may wait, writes it to files of its own (0600, in a 0700 dir)
//! and hands them to the bundle manager, which checks everything as for any install.

use super::dms::{DmsService, PeerError};
use crate::continuation::{PENDING_TIMEOUT_MS, Txn, check_package_sizes as check_sizes};
use crate::dms_api::{self, FetchBundleArgs, FetchBundleReply};
use crate::error::AbilityError;
use oxh_ipc::{RemoteError, decode, encode};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long moving the files may take, either way: a pending continuation waits no longer.
const TRANSFER_TIMEOUT: Duration = Duration::from_millis(PENDING_TIMEOUT_MS);

impl DmsService {
    /// Target: fetches the package files of `bundle` for txn `txn` from its source into
    /// `dir` (made afresh, 0700); the files' paths, in install order.
    pub(super) async fn fetch_bundle(
        &self,
        txn: &Txn,
        bundle: &str,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, String> {
        let network_id = self
            .peers
            .network_id_of(&txn.source)
            .ok_or_else(|| "the source device is not online".to_string())?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| format!("cannot make the transfer's socket: {e}"))?;
        let args = encode(&FetchBundleArgs {
            seq: txn.seq,
            bundle_name: bundle.to_string(),
        });
        let (reply, _ended) = self
            .peers
            .connect(
                &self.peers.own_caller(),
                &network_id,
                dms_api::FETCH_BUNDLE_FROM_REMOTE,
                args,
                OwnedFd::from(theirs),
            )
            .await
            .map_err(|e| match e {
                PeerError::Offline(d) => format!("device {d} is not online"),
                PeerError::Remote(r) => format!("the source refused the package: {r}"),
            })?;
        let rep: FetchBundleReply = decode(&reply)
            .map_err(|e| format!("the source answered a bad FetchBundleReply: {e}"))?;
        check_sizes(&rep.sizes)?;
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || receive(ours, &rep.sizes, &dir))
            .await
            .map_err(|e| format!("the transfer task failed: {e}"))?
    }

    /// Source: serves the package files of the bundle in `data` to device `network_id`, on
    /// `sock`, if this device's continuation offers them there.
    pub(super) fn serve_bundle(
        &self,
        network_id: &str,
        data: &[u8],
        sock: OwnedFd,
    ) -> Result<Vec<u8>, RemoteError> {
        let a: FetchBundleArgs = decode(data)?;
        let refused = || {
            RemoteError::from(AbilityError::PermissionDenied(format!(
                "no continuation of {} to this device with install on demand is being prepared",
                a.bundle_name
            )))
        };
        let udid = self.peers.udid_of(network_id).ok_or_else(refused)?;
        let offers = self
            .ams
            .continuation()
            .is_some_and(|c| c.offers(&udid, a.seq, &a.bundle_name));
        if !offers {
            return Err(refused());
        }
        let files = self
            .ams
            .bundles
            .package_files(&a.bundle_name, self.ams.cfg.user);
        let sizes = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|e| AbilityError::Internal(format!("cannot read the package: {e}")))?;
        check_sizes(&sizes).map_err(AbilityError::Internal)?;
        if self.serving.swap(true, Ordering::AcqRel) {
            return Err(AbilityError::Busy("a package is being sent already".into()).into());
        }
        tracing::info!(
            tag = "DistributedSched",
            public_bundle = a.bundle_name.as_str(),
            "sending the package to the continuation's target"
        );
        let serving = self.serving_flag();
        let plan: Vec<(PathBuf, u64)> = files.into_iter().zip(sizes.iter().copied()).collect();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = send(sock, &plan) {
                tracing::warn!(tag = "DistributedSched", "sending the package failed: {e}");
            }
            serving.store(false, Ordering::Release);
        });
        Ok(encode(&FetchBundleReply { sizes }))
    }
}

/// Writes each file's first `size` bytes to `sock`, then closes it.
fn send(sock: OwnedFd, plan: &[(PathBuf, u64)]) -> std::io::Result<()> {
    let mut s = std::os::unix::net::UnixStream::from(sock);
    s.set_write_timeout(Some(TRANSFER_TIMEOUT))?;
    for (path, size) in plan {
        let mut f = std::fs::File::open(path)?.take(*size);
        let n = std::io::copy(&mut f, &mut s)?;
        if n != *size {
            return Err(std::io::Error::other(format!(
                "{} shrank while it was sent",
                path.display()
            )));
        }
    }
    s.flush()
}

/// Reads files of `sizes` bytes from `sock` into `dir` (made afresh, 0700; each file 0600).
fn receive(
    sock: std::os::unix::net::UnixStream,
    sizes: &[u64],
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    let io = |e: std::io::Error| format!("receiving the package failed: {e}");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let deadline = std::time::Instant::now() + TRANSFER_TIMEOUT;
    let mut sock = sock;
    let mut buf = vec![0u8; 256 * 1024];
    let mut paths = Vec::with_capacity(sizes.len());
    for (i, size) in sizes.iter().enumerate() {
        let path = dir.join(format!("{i}.hap"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut left = *size;
        while left > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(format!(
                    "the package did not arrive within {} ms",
                    TRANSFER_TIMEOUT.as_millis()
                ));
            }
            sock.set_read_timeout(Some(deadline - now)).map_err(io)?;
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = sock.read(&mut buf[..want]).map_err(io)?;
            if n == 0 {
                return Err("the source closed the transfer before the package was whole".into());
            }
            f.write_all(&buf[..n]).map_err(io)?;
            left -= n as u64;
        }
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_sent_arrive_whole_and_private_and_a_short_stream_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.hap"), d.path().join("b.hap"));
        std::fs::write(&a, vec![7u8; 300_000]).unwrap();
        std::fs::write(&b, b"entry").unwrap();
        let (tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let plan = vec![(a, 300_000), (b, 5)];
        let t = std::thread::spawn(move || send(OwnedFd::from(tx), &plan));
        let got = receive(rx, &[300_000, 5], &d.path().join("in")).unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&got[0]).unwrap(), vec![7u8; 300_000]);
        assert_eq!(std::fs::read(&got[1]).unwrap(), b"entry");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&got[0]), 0o600);
        assert_eq!(mode(&d.path().join("in")), 0o700);

        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        tx.write_all(b"abc").unwrap();
        drop(tx);
        let e = receive(rx, &[10], &d.path().join("in2")).unwrap_err();
        assert!(e.contains("before the package was whole"), "{e}");
    }
}
