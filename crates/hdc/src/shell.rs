//! Running commands for a channel: on a pty (interactive shells, `vi`, `top`) or on pipes
//! (one command: stdout as Data, stderr as `Ctrl::Stderr`). Window sizes and signals from the
//! client are passed through; the channel closes with the exit status (128 + signal when the
//! command was killed, as shells report it).

use crate::proto::{Ctrl, Exit, WinSize};
use crate::session::{Channel, Event, Sender};
use bytes::Bytes;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn status_code(s: ExitStatus) -> i32 {
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

fn set_winsize(fd: i32, ws: WinSize) {
    let w = libc::winsize {
        ws_row: ws.rows,
        ws_col: ws.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own, on a pty fd we own.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &w);
    }
}

fn kill_group(pgid: i32, sig: i32) {
    if pgid > 0 && (1..=64).contains(&sig) {
        // SAFETY: kill(2) with a negative pid signals the group; no memory involved.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// The exit a finished command closes its channel with.
fn exit_of(status: std::io::Result<ExitStatus>) -> Exit {
    match status {
        Ok(s) => Exit {
            code: status_code(s),
            message: String::new(),
        },
        Err(e) => Exit::fail(format!("[Fail]{e}")),
    }
}

/// Starts `cmd` (killed when dropped); or the exit (code 127) to close the channel with, `what`
/// naming the command in its message.
fn spawn(cmd: std::process::Command, what: &str) -> Result<tokio::process::Child, Exit> {
    tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Exit {
            code: 127,
            message: format!("[Fail]cannot run the {what}: {e}"),
        })
}

/// Runs `cmd` on pipes for `ch` and closes `ch` with its exit status.
pub async fn run_piped(mut ch: Channel, mut cmd: std::process::Command) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match spawn(cmd, "command") {
        Ok(c) => c,
        Err(exit) => return ch.close(&exit),
    };
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    let mut stdin = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let tx = ch.sender();
    let t1 = tx.clone();
    let out_task = tokio::spawn(async move {
        if let Some(o) = out.as_mut() {
            pump_out(o, &t1, false).await;
        }
    });
    let t2 = tx.clone();
    let err_task = tokio::spawn(async move {
        if let Some(e) = err.as_mut() {
            pump_out(e, &t2, true).await;
        }
    });
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            ev = ch.recv() => match ev {
                Event::Data(d) => {
                    if let Some(i) = stdin.as_mut()
                        && i.write_all(&d).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Event::Ctrl(Ctrl::Eof) => stdin = None,
                Event::Ctrl(Ctrl::Signal(s)) => kill_group(pgid, s),
                Event::Ctrl(_) => {}
                Event::Close(_) => {
                    // The client went away: end the command.
                    kill_group(pgid, libc::SIGHUP);
                    kill_group(pgid, libc::SIGKILL);
                    let _ = child.wait().await;
                    return;
                }
            }
        }
    };
    let _ = out_task.await;
    let _ = err_task.await;
    ch.close(&exit_of(status));
}

async fn pump_out<R: tokio::io::AsyncRead + Unpin>(r: &mut R, tx: &Sender, stderr: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let ok = if stderr {
                    tx.ctrl(&Ctrl::Stderr(buf[..n].to_vec())).is_ok()
                } else {
                    tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_ok()
                };
                if !ok {
                    return;
                }
            }
        }
    }
}

fn open_pty(ws: WinSize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut master = -1;
    let mut slave = -1;
    let w = libc::winsize {
        ws_row: ws.rows,
        ws_col: ws.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds into our ints; name and termios are null (allowed).
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &w,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both are fresh fds that we now own.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [m.as_raw_fd(), s.as_raw_fd()] {
        // SAFETY: fcntl on fds we own.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok((m, s))
}

/// Runs `cmd` on a new pty of size `ws` for `ch` and closes `ch` with its exit status.
pub async fn run_pty(mut ch: Channel, mut cmd: std::process::Command, ws: WinSize) {
    let (master, slave) = match open_pty(ws) {
        Ok(p) => p,
        Err(e) => {
            ch.close(&Exit::fail(format!("[Fail]cannot open a pty: {e}")));
            return;
        }
    };
    let slave_fd = slave.as_raw_fd();
    let io = (|| -> std::io::Result<_> {
        Ok((slave.try_clone()?, slave.try_clone()?, slave.try_clone()?))
    })();
    let Ok((i, o, e)) = io else {
        ch.close(&Exit::fail("[Fail]cannot set up the pty"));
        return;
    };
    cmd.stdin(Stdio::from(i))
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e));
    // SAFETY: between fork and exec we only call async-signal-safe functions (setsid, ioctl).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _ = slave_fd;
    let mut child = match spawn(cmd, "shell") {
        Ok(c) => c,
        Err(exit) => return ch.close(&exit),
    };
    drop(slave);
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let mfd = master.as_raw_fd();
    let Ok(wfd) = master.try_clone() else {
        ch.close(&Exit::fail("[Fail]cannot set up the pty"));
        return;
    };
    let mut reader = tokio::fs::File::from(std::fs::File::from(master));
    let mut writer = tokio::fs::File::from(std::fs::File::from(wfd));
    let tx = ch.sender();
    let out_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // EIO once every slave fd is closed: the end of output.
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            ev = ch.recv() => match ev {
                Event::Data(d) => {
                    let _ = writer.write_all(&d).await;
                    let _ = writer.flush().await;
                }
                Event::Ctrl(Ctrl::WindowSize(ws)) => {
                    set_winsize(mfd, ws);
                    kill_group(pid, libc::SIGWINCH);
                }
                Event::Ctrl(Ctrl::Signal(s)) => {
                    // To the terminal's foreground job, as the tty driver would.
                    // SAFETY: tcgetpgrp on the pty master we own.
                    let fg = unsafe { libc::tcgetpgrp(mfd) };
                    kill_group(if fg > 0 { fg } else { pid }, s);
                }
                Event::Ctrl(Ctrl::Eof) => {
                    let _ = writer.write_all(&[4]).await;
                }
                Event::Ctrl(_) => {}
                Event::Close(_) => {
                    kill_group(pid, libc::SIGHUP);
                    kill_group(pid, libc::SIGKILL);
                    let _ = child.wait().await;
                    out_task.abort();
                    return;
                }
            }
        }
    };
    // Output still in the pty after the shell ended; a background job that keeps the pty open
    // does not hold the channel for long.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), out_task).await;
    ch.close(&exit_of(status));
}
