//! What the `hdc` tool uses: find (or start) the host server, open a channel for a command,
//! and the terminal handling of interactive shells.

use crate::proto::{self, ClientRequest, Ctrl, Exit, Hello, Request, WinSize};
use crate::session::{self, Channel, Event, Session};
use std::io::Write;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Connects to the host server on 127.0.0.1:`port`; with `spawn`, starts one (`spawn` runs
/// the server detached) when nothing listens, and waits for it (up to 5 s).
pub async fn connect(
    port: u16,
    spawn: Option<&dyn Fn() -> std::io::Result<()>>,
) -> Result<Session, String> {
    let mut tcp = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(t) => t,
        Err(e) => {
            let Some(spawn) = spawn else {
                return Err(format!("[Fail]Connect server failed: {e}"));
            };
            spawn().map_err(|e| format!("[Fail]cannot start the hdc server: {e}"))?;
            let t0 = Instant::now();
            loop {
                match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(t) => break t,
                    Err(e) if t0.elapsed() > Duration::from_secs(5) => {
                        return Err(format!("[Fail]the hdc server did not start: {e}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
    };
    let _ = tcp.set_nodelay(true);
    crate::local::check_server(&tcp, port)?;
    let me = Hello {
        version: proto::VERSION,
        name: "hdc".into(),
        refused: String::new(),
    };
    session::hello(&mut tcp, &me).await.map_err(|e| match e {
        session::SessionError::Refused(r) => r,
        e => format!("[Fail]hdc server: {e}"),
    })?;
    Ok(Session::start(tcp, false, "hdc server".into()).0)
}

/// A session straight to the (already connected, pinned) device at `addr`, for bulk data:
/// file bytes then skip the host server's hop. The device checks this host's key as for the
/// server's own session.
pub async fn direct(addr: &str) -> Result<Session, String> {
    let home = crate::keys::harmony_dir();
    let key = crate::keys::host_key(&home).map_err(|e| e.to_string())?;
    let (tls, _) = crate::server::dial(&key, &home, addr, false).await?;
    Ok(Session::start(tls, false, format!("device {addr}")).0)
}

/// The text a server request prints (e.g. `list targets`), or its failure.
pub async fn text_of(sess: &Session, req: Request) -> Result<String, String> {
    let mut ch = open(sess, None, req)?;
    let mut out = String::new();
    loop {
        match ch.recv().await {
            Event::Ctrl(Ctrl::Text(t)) => out.push_str(&t),
            Event::Close(e) if e.code == 0 => return Ok(out),
            Event::Close(e) => return Err(e.message),
            _ => {}
        }
    }
}

/// Draws a progress bar on stderr while a transfer runs, if stderr is a terminal; abort the
/// returned task when done (then [`clear_progress`]).
pub fn progress_bar(
    p: std::sync::Arc<crate::transfer::Progress>,
) -> Option<tokio::task::JoinHandle<()>> {
    // SAFETY: isatty on fd 2.
    if unsafe { libc::isatty(2) } != 1 {
        return None;
    }
    Some(tokio::spawn(async move {
        use std::sync::atomic::Ordering::Relaxed;
        let t0 = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (d, t) = (p.done.load(Relaxed), p.total.load(Relaxed));
            let pct = (d * 100).checked_div(t).unwrap_or(0).min(100);
            let bar = "=".repeat((pct / 4) as usize);
            let rate = d as f64 / t0.elapsed().as_secs_f64().max(1e-3) / 1e6;
            eprint!(
                "\r[{bar:<25}] {pct:>3}% {:.1}/{:.1} MB {rate:.0} MB/s",
                d as f64 / 1e6,
                t as f64 / 1e6
            );
        }
    }))
}

/// Ends a progress bar.
pub fn clear_progress(bar: Option<tokio::task::JoinHandle<()>>) {
    if let Some(b) = bar {
        b.abort();
        eprint!("\r\x1b[K");
    }
}

/// Opens a channel for a request.
pub fn open(sess: &Session, target: Option<String>, req: Request) -> Result<Channel, String> {
    sess.open(&proto::to_bytes(&ClientRequest { target, req }))
        .map_err(|e| e.to_string())
}

/// Prints what a channel sends (Data and Text on stdout, Stderr on stderr) until it closes;
/// returns the exit (its message printed: on stdout for success, stderr otherwise).
pub async fn print_until_close(ch: &mut Channel) -> i32 {
    let mut out = std::io::stdout();
    loop {
        match ch.recv().await {
            Event::Data(d) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Event::Ctrl(Ctrl::Text(t)) => {
                let _ = writeln!(out, "{t}");
            }
            Event::Ctrl(Ctrl::Stderr(b)) => {
                let _ = std::io::stderr().write_all(&b);
            }
            Event::Ctrl(_) => {}
            Event::Close(e) => return report(&e),
        }
    }
}

/// Prints an exit's message and returns its code.
pub fn report(e: &Exit) -> i32 {
    if !e.message.is_empty() {
        if e.code == 0 {
            println!("{}", e.message);
        } else {
            eprintln!("{}", e.message);
        }
    }
    e.code
}

/// The terminal's size (stdin), if it is a terminal.
pub fn term_size() -> Option<WinSize> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into the struct we own.
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut w) };
    (r == 0 && w.ws_row > 0).then_some(WinSize {
        rows: w.ws_row,
        cols: w.ws_col,
    })
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty on fd 0.
    unsafe { libc::isatty(0) == 1 }
}

/// Puts the terminal in raw mode until dropped.
pub struct RawMode(Option<libc::termios>);

impl RawMode {
    /// Raw mode on stdin (no-op if it is not a terminal).
    pub fn enter() -> RawMode {
        // SAFETY: termios is plain data; tcgetattr fills it.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return RawMode(None);
            }
            let orig = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            RawMode(Some(orig))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the settings read in enter().
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

/// Runs a shell channel: stdin to the device, output to stdout/stderr, window changes and
/// SIGINT/SIGTERM/SIGHUP (when not on a pty) passed through. Returns the exit code.
pub async fn shell(mut ch: Channel, forward_stdin: bool, pty: bool) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let _raw = pty.then(RawMode::enter);
    let tx = ch.sender();
    let stdin_task = forward_stdin.then(|| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.ctrl(&Ctrl::Eof);
                        return;
                    }
                    Ok(n) => {
                        if tx
                            .send(bytes::Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        })
    });
    let mut winch = signal(SignalKind::window_change()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let mut out = std::io::stdout();
    let code = loop {
        tokio::select! {
            ev = ch.recv() => match ev {
                Event::Data(d) => {
                    let _ = out.write_all(&d);
                    let _ = out.flush();
                }
                Event::Ctrl(Ctrl::Stderr(b)) => {
                    let _ = std::io::stderr().write_all(&b);
                }
                Event::Ctrl(Ctrl::Text(t)) => println!("{t}"),
                Event::Ctrl(_) => {}
                Event::Close(e) => {
                    drop(_raw);
                    break report(&e);
                }
            },
            _ = next(&mut winch) => {
                if let Some(ws) = term_size() {
                    let _ = tx.ctrl(&Ctrl::WindowSize(ws));
                }
            }
            _ = next(&mut int) => { let _ = tx.ctrl(&Ctrl::Signal(libc::SIGINT)); }
            _ = next(&mut term) => { let _ = tx.ctrl(&Ctrl::Signal(libc::SIGTERM)); }
            _ = next(&mut hup) => { let _ = tx.ctrl(&Ctrl::Signal(libc::SIGHUP)); }
        }
    };
    if let Some(t) = stdin_task {
        t.abort();
    }
    code
}
