//! What the `hdc` tool uses: find (or start) the host server, open a channel for a command,
//! and the terminal handling of interactive shells.

use crate::channel::{ToClient, ToServer};
use crate::conn::ClientConn;
use crate::proto::{Exit, WinSize};
use std::io::Write;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Connects to the host server on 127.0.0.1:`port` for target `connect_key` (empty: the only
/// one); with `spawn`, starts a server (`spawn` runs it detached) when nothing listens, and
/// waits for it (up to 5 s).
pub async fn connect(
    port: u16,
    spawn: Option<&dyn Fn() -> std::io::Result<()>>,
    connect_key: &str,
) -> Result<ClientConn, String> {
    let tcp = match TcpStream::connect(("127.0.0.1", port)).await {
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
    ClientConn::handshake(tcp, connect_key).await
}

/// How [`run`] runs a command.
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    /// Send stdin as the command's input.
    pub stdin: bool,
    /// An interactive shell on a pty of this size and TERM (the terminal goes raw).
    pub pty: Option<(WinSize, String)>,
}

/// Sends a command line and prints what comes back (output on stdout, errors on stderr, a
/// progress bar on a terminal) until the server ends it; returns the exit status. Window
/// changes and SIGINT/SIGTERM/SIGHUP reach the command when the server speaks the extension.
pub async fn run(conn: ClientConn, line: &str, o: RunOpts) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let ClientConn { reader, mut writer } = conn;
    let mut reader = ClientConn::reader_only(reader, writer.ext());
    if let Some((ws, term)) = &o.pty {
        let m = ToServer::Pty {
            rows: ws.rows,
            cols: ws.cols,
            term: term.clone(),
        };
        if writer.send(&m).await.is_err() {
            eprintln!("[Fail]the hdc server closed the connection");
            return 1;
        }
    }
    if let Err(e) = writer.send(&ToServer::Command(line.to_string())).await {
        eprintln!("[Fail]hdc server: {e}");
        return 1;
    }
    let _raw = o.pty.is_some().then(RawMode::enter);
    // One task writes; stdin and the signal handlers hand it messages.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ToServer>(16);
    let writer_task = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if writer.send(&m).await.is_err() {
                return;
            }
        }
    });
    if !o.stdin {
        // Nothing will come: a command reading its input sees its end at once.
        let _ = tx.send(ToServer::Eof).await;
    }
    let stdin_task = o.stdin.then(|| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(ToServer::Eof).await;
                        return;
                    }
                    Ok(n) => {
                        if tx.send(ToServer::In(buf[..n].to_vec())).await.is_err() {
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
    let bar = Bar::new();
    let mut failed = false;
    let code = loop {
        tokio::select! {
            m = reader.next() => match m {
                Ok(Some(ToClient::Out(d))) => {
                    bar.clear();
                    failed |= d.starts_with(b"[Fail]");
                    let _ = out.write_all(&d);
                    let _ = out.flush();
                }
                Ok(Some(ToClient::Err(d))) => {
                    bar.clear();
                    let _ = std::io::stderr().write_all(&d);
                }
                Ok(Some(ToClient::Progress { done, total })) => bar.draw(done, total),
                Ok(Some(ToClient::Exit { code, message })) => {
                    bar.clear();
                    drop(_raw);
                    break report(&Exit { code, message });
                }
                // Without the extension, the end of the connection ends the command.
                Ok(None) => {
                    bar.clear();
                    break if reader.ext() { 1 } else { i32::from(failed) };
                }
                Err(e) => {
                    bar.clear();
                    eprintln!("{e}");
                    break 1;
                }
            },
            _ = next(&mut winch) => {
                if let Some(ws) = term_size() {
                    let _ = tx.try_send(ToServer::WinSize { rows: ws.rows, cols: ws.cols });
                }
            }
            _ = next(&mut int) => { let _ = tx.try_send(ToServer::Signal(libc::SIGINT)); }
            _ = next(&mut term) => { let _ = tx.try_send(ToServer::Signal(libc::SIGTERM)); }
            _ = next(&mut hup) => { let _ = tx.try_send(ToServer::Signal(libc::SIGHUP)); }
        }
    };
    if let Some(t) = stdin_task {
        t.abort();
    }
    writer_task.abort();
    code
}

/// What a server command prints (e.g. `list targets`), or why it failed.
pub async fn text_of(port: u16, line: &str) -> Result<String, String> {
    let mut c = connect(port, None, "").await?;
    c.writer
        .send(&ToServer::Command(line.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    loop {
        match c.next().await.map_err(|e| e.to_string())? {
            Some(ToClient::Out(d)) => text.extend_from_slice(&d),
            Some(ToClient::Exit { code: 0, .. }) | None => {
                return Ok(String::from_utf8_lossy(&text).into_owned());
            }
            Some(ToClient::Exit { message, .. }) => return Err(message),
            Some(_) => {}
        }
    }
}

/// A progress bar on stderr, when it is a terminal.
struct Bar {
    on: bool,
    t0: Instant,
    drawn: std::cell::Cell<bool>,
}

impl Bar {
    fn new() -> Bar {
        // SAFETY: isatty on fd 2.
        let on = unsafe { libc::isatty(2) } == 1;
        Bar {
            on,
            t0: Instant::now(),
            drawn: std::cell::Cell::new(false),
        }
    }

    fn draw(&self, done: u64, total: u64) {
        if !self.on {
            return;
        }
        let pct = (done * 100).checked_div(total).unwrap_or(0).min(100);
        let bar = "=".repeat((pct / 4) as usize);
        let rate = done as f64 / self.t0.elapsed().as_secs_f64().max(1e-3) / 1e6;
        eprint!(
            "\r[{bar:<25}] {pct:>3}% {:.1}/{:.1} MB {rate:.0} MB/s",
            done as f64 / 1e6,
            total as f64 / 1e6
        );
        self.drawn.set(true);
    }

    fn clear(&self) {
        if self.drawn.replace(false) {
            eprint!("\r\x1b[K");
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
