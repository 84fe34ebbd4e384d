//! `oxh console` against a real daemon, over plain HTTP on a socket: the one-time token and
//! its cookie, Host and Origin checks, the devices as JSON (a device named like markup comes
//! back as data), the page's script building its DOM with textContent only, and a daemon that
//! goes away shown as offline. (The browser tests come with the rest of issue 20.)

use crate::common::{TestDevice, oxh_bin};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The console process, killed when dropped.
struct Console {
    child: Child,
    port: u16,
    token: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn console(d: &TestDevice) -> Console {
    let mut child = Command::new(oxh_bin())
        .arg("--data-dir")
        .arg(d.data_dir())
        .args(["console", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("oxh console");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its URL line");
    let url = line
        .trim()
        .strip_prefix("oxh console: http://127.0.0.1:")
        .unwrap_or_else(|| panic!("a URL line: {line:?}"));
    let (port, token) = url.split_once("/?token=").expect("port and token");
    Console {
        port: port.parse().unwrap(),
        token: token.to_string(),
        child,
    }
}

/// One HTTP/1.1 request; (status, headers, body).
pub(crate) fn http(port: u16, req: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn get(c: &Console, path: &str, extra: &str) -> (u16, String, String) {
    http(
        c.port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{extra}\r\n",
            c.port
        ),
    )
}

#[test]
fn the_token_host_and_origin_guard_every_request_and_names_stay_data() {
    let mut d = TestDevice::start_with(&["--name", "<script>alert(1)</script>"]);
    let c = console(&d);
    assert_eq!(get(&c, "/", "").0, 401, "no token");
    assert_eq!(get(&c, "/api/devices", "").0, 401);
    assert_eq!(get(&c, "/?token=wrong", "").0, 401);
    let (code, head, _) = get(&c, &format!("/?token={}", c.token), "");
    assert_eq!(code, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let jar = format!("Cookie: {}\r\n", cookie.split(';').next().unwrap());
    let (code, head, page) = get(&c, "/", &jar);
    assert_eq!(code, 200, "{head}");
    assert!(page.contains("<svg id=\"topology\""));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy")
    );
    assert!(
        !head.to_ascii_lowercase().contains("access-control-allow"),
        "no CORS"
    );
    let (_, _, js) = get(&c, "/app.js", &jar);
    assert!(
        js.contains("textContent") && !js.contains("innerHTML"),
        "no markup from data"
    );
    let (code, _, body) = get(&c, "/api/devices", &jar);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["daemon"], "online");
    assert_eq!(v["local"]["deviceName"], "<script>alert(1)</script>");
    assert_eq!(v["local"]["udid"], d.ready_field("udid"));
    // Another origin, another Host (DNS rebinding), a wrong cookie: refused.
    assert_eq!(
        get(
            &c,
            "/api/devices",
            &format!("{jar}Origin: http://evil.example\r\n")
        )
        .0,
        403
    );
    let ok_origin = format!("{jar}Origin: http://127.0.0.1:{}\r\n", c.port);
    assert_eq!(get(&c, "/api/devices", &ok_origin).0, 200);
    let rebound = http(
        c.port,
        &format!(
            "GET /api/devices HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n{jar}\r\n",
            c.port
        ),
    );
    assert_eq!(rebound.0, 403);
    assert_eq!(
        get(&c, "/api/devices", "Cookie: oxh_console=nope\r\n").0,
        401
    );
    // A change of state needs our own Origin: none (not a browser page's) or another one is
    // refused before it reaches the daemon; ours goes through.
    let put = |extra: &str| {
        let body = r#"{"app":"com.example.console","store":"http","key":"k","value":"v"}"#;
        http(
            c.port,
            &format!(
                "POST /api/kv/put HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{jar}{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                c.port,
                body.len()
            ),
        )
    };
    assert_eq!(put("").0, 403, "no Origin");
    assert_eq!(
        put("Origin: http://evil.example\r\n").0,
        403,
        "foreign Origin"
    );
    let (code, _, body) = put(&format!("Origin: http://127.0.0.1:{}\r\n", c.port));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        d.oxh_ok(&[
            "kv",
            "get",
            "--app",
            "com.example.console",
            "--store",
            "http",
            "k"
        ]),
        "v\n"
    );
    // Live views are bounded: a bad filter is refused with what is wrong.
    let (code, _, body) = get(&c, "/api/logs?level=X", &jar);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("level"), "{body}");
    // One local process cannot make the console hold connections without bound: with
    // MAX_CONNECTIONS idle ones open (no token needed for that), the next request is not
    // served until one of them closes.
    let mut idle: Vec<TcpStream> = (0..oxh_console::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(("127.0.0.1", c.port)).unwrap())
        .collect();
    let mut extra = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    extra
        .write_all(
            format!(
                "GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{jar}\r\n",
                c.port
            )
            .as_bytes(),
        )
        .unwrap();
    extra
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(
        extra.read(&mut b).is_err(),
        "served beyond the connection bound"
    );
    idle.pop();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    extra.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop(idle);
    // The daemon goes away: a state the page shows, not an error.
    d.kill9();
    let (code, _, body) = get(&c, "/api/devices", &jar);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["daemon"], "offline", "{body}");
}
