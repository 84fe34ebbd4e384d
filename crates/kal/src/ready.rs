//! The line `oxhd` prints on stdout once it serves, which tools (`oxh sim`), the tests and the
//! benchmarks wait for and read its addresses from. One type prints and parses it, so that
//! the format is written down once.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What every ready line starts with.
pub const PREFIX: &str = "oxhd ready: ";

/// What the `hdc` field says when hdc does not run.
pub const HDC_OFF: &str = "off";

/// The fields, in the order they are printed.
const KEYS: [&str; 7] = ["name", "type", "udid", "network_id", "bus", "hdc", "socket"];

/// `oxhd ready: name=... type=... udid=... network_id=... bus=... hdc=... socket=... (N ms)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadyLine {
    /// Device name.
    pub name: String,
    /// Device type (`phone`, `pc`, ...).
    pub device_type: String,
    /// The device's udid.
    pub udid: String,
    /// Its networkId on the soft bus.
    pub network_id: String,
    /// The soft bus address (`--peer` it); `None` when the bus has none (printed empty).
    pub bus: Option<SocketAddr>,
    /// hdc's address (`hdc tconn` it); `None` when hdc is off.
    pub hdc: Option<SocketAddr>,
    /// The local IPC socket.
    pub socket: PathBuf,
    /// Milliseconds from start to ready.
    pub ready_ms: f64,
}

/// Why a line is not a ready line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadyLineError {
    /// It does not start with [`PREFIX`].
    #[error("not an oxhd ready line")]
    NotReady,
    /// A field is missing.
    #[error("ready line without {0}")]
    Missing(&'static str),
    /// A field does not parse.
    #[error("ready line with a bad {key}: {value:?}")]
    Bad {
        /// The field.
        key: &'static str,
        /// What it held.
        value: String,
    },
}

impl ReadyLine {
    /// Parses a line as printed by [`fmt::Display`] (a trailing newline is allowed). Each
    /// value runs up to the next key, so a name or a socket path may hold spaces.
    pub fn parse(line: &str) -> Result<Self, ReadyLineError> {
        use ReadyLineError::{Bad, Missing, NotReady};
        let rest = line.trim_end().strip_prefix(PREFIX).ok_or(NotReady)?;
        let (rest, ms) = rest.rsplit_once(" (").ok_or(Missing("time"))?;
        let ms = ms.strip_suffix(" ms)").ok_or(Missing("time"))?;
        let ready_ms = ms.parse().map_err(|_| Bad {
            key: "time",
            value: ms.into(),
        })?;
        let mut rest = rest.strip_prefix("name=").ok_or(Missing("name"))?;
        let mut vals = [""; KEYS.len()];
        for (i, next) in KEYS.iter().skip(1).enumerate() {
            let (v, r) = rest
                .split_once(format!(" {next}=").as_str())
                .ok_or(Missing(next))?;
            vals[i] = v;
            rest = r;
        }
        vals[KEYS.len() - 1] = rest;
        let [name, device_type, udid, network_id, bus, hdc, socket] = vals;
        let addr = |key: &'static str, v: &str, none: &str| {
            if v == none {
                return Ok(None);
            }
            v.parse().map(Some).map_err(|_| Bad {
                key,
                value: v.into(),
            })
        };
        Ok(Self {
            name: name.into(),
            device_type: device_type.into(),
            udid: udid.into(),
            network_id: network_id.into(),
            bus: addr("bus", bus, "")?,
            hdc: addr("hdc", hdc, HDC_OFF)?,
            socket: socket.into(),
            ready_ms,
        })
    }

    /// A field as the line prints it (`bus`, `hdc`, `network_id`, ...); `None` for a key the
    /// line does not have.
    pub fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "name" => self.name.clone(),
            "type" => self.device_type.clone(),
            "udid" => self.udid.clone(),
            "network_id" => self.network_id.clone(),
            "bus" => self.bus.map(|a| a.to_string()).unwrap_or_default(),
            "hdc" => self
                .hdc
                .map_or_else(|| HDC_OFF.to_string(), |a| a.to_string()),
            "socket" => self.socket.display().to_string(),
            _ => return None,
        })
    }
}

impl fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        for (i, k) in KEYS.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{k}={}", self.field(k).unwrap_or_default())?;
        }
        write!(f, " ({:.1} ms)", self.ready_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "oxhd ready: name=dev 1 type=pc udid=ab12 network_id=cd34 \
        bus=127.0.0.1:4242 hdc=127.0.0.1:8710 socket=/tmp/a b/run/oxhd.sock (12.5 ms)";

    #[test]
    fn parse_then_print_is_the_same_line() {
        let r = ReadyLine::parse(LINE).expect("parses");
        assert_eq!(r.name, "dev 1");
        assert_eq!(r.bus, Some("127.0.0.1:4242".parse().expect("addr")));
        assert_eq!(r.socket, PathBuf::from("/tmp/a b/run/oxhd.sock"));
        assert_eq!(r.ready_ms, 12.5);
        assert_eq!(r.to_string(), LINE);
        assert_eq!(ReadyLine::parse(&format!("{LINE}\n")), Ok(r));
    }

    #[test]
    fn print_then_parse_is_the_same_value() {
        let r = ReadyLine {
            name: "phone".into(),
            device_type: "phone".into(),
            udid: "u".into(),
            network_id: "n".into(),
            bus: None,
            hdc: None,
            socket: "/s".into(),
            ready_ms: 3.0,
        };
        let line = r.to_string();
        assert!(line.contains(" bus= hdc=off socket=/s (3.0 ms)"), "{line}");
        assert_eq!(ReadyLine::parse(&line), Ok(r.clone()));
        assert_eq!(r.field("hdc").as_deref(), Some(HDC_OFF));
        assert_eq!(r.field("bus").as_deref(), Some(""));
        assert_eq!(r.field("nope"), None);
    }

    #[test]
    fn other_lines_are_errors() {
        assert_eq!(
            ReadyLine::parse("oxhd starting"),
            Err(ReadyLineError::NotReady)
        );
        assert_eq!(
            ReadyLine::parse("oxhd ready: name=a type=pc (1.0 ms)"),
            Err(ReadyLineError::Missing("udid"))
        );
        assert!(matches!(
            ReadyLine::parse(&LINE.replace("hdc=127.0.0.1:8710", "hdc=nowhere")),
            Err(ReadyLineError::Bad { key: "hdc", .. })
        ));
        assert!(matches!(
            ReadyLine::parse(&LINE.replace("12.5 ms", "soon ms")),
            Err(ReadyLineError::Bad { key: "time", .. })
        ));
    }
}
