//! One log line: its level, type, origin and text, and OpenHarmony's line format.

use crate::HilogError;
#[cfg(feature = "text")]
use chrono::{Local, TimeZone};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::str::FromStr;

/// OpenHarmony's MAX_LOG_LEN is 4096 bytes including the terminating NUL: a message keeps at
/// most this many bytes and the rest is cut, as libhilog does.
pub const MAX_MSG_LEN: usize = 4095;
/// OpenHarmony's MAX_TAG_LEN is 32 bytes including the NUL: a tag keeps at most 31 bytes.
pub const MAX_TAG_LEN: usize = 31;
/// Domains are printed as their low 20 bits (five hex digits), as `C01510` for 0xD001510.
pub const DOMAIN_MASK: u32 = 0xF_FFFF;
/// The range of LOG_CORE domains in OpenHarmony (0xD000000..=0xD0FFFFF).
pub const CORE_DOMAIN_RANGE: std::ops::RangeInclusive<u32> = 0xD00_0000..=0xD0F_FFFF;
/// The range of LOG_APP domains in OpenHarmony (0x0..=0xFFFF).
pub const APP_DOMAIN_MAX: u32 = 0xFFFF;

/// Severity of a line, with OpenHarmony's LogLevel numbering (DEBUG = 3 .. FATAL = 7) so that
/// ordering compares severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// LOG_DEBUG, printed as `D`.
    Debug = 3,
    /// LOG_INFO, printed as `I`.
    Info = 4,
    /// LOG_WARN, printed as `W`.
    Warn = 5,
    /// LOG_ERROR, printed as `E`.
    Error = 6,
    /// LOG_FATAL, printed as `F`.
    Fatal = 7,
}

impl Level {
    /// All levels, least severe first, for `-L` parsing and tests.
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The letter of the line format (D/I/W/E/F).
    pub fn letter(self) -> char {
        match self {
            Level::Debug => 'D',
            Level::Info => 'I',
            Level::Warn => 'W',
            Level::Error => 'E',
            Level::Fatal => 'F',
        }
    }

    /// The full upper-case name, as `hilog -b` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }
}

impl FromStr for Level {
    type Err = HilogError;
    /// Accepts the letter or the name in any case ("d", "D", "debug", "DEBUG").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Level::ALL
            .into_iter()
            .find(|l| {
                t.eq_ignore_ascii_case(l.name())
                    || (t.len() == 1 && t.eq_ignore_ascii_case(&l.letter().to_string()))
            })
            .ok_or_else(|| HilogError::InvalidLevel(s.to_string()))
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char(self.letter())
    }
}

/// Who wrote a line: an application (LOG_APP) or the system (LOG_CORE), as OpenHarmony keeps
/// them apart in `hilog -t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogType {
    /// LOG_APP: application logs, domain 0x0..=0xFFFF, printed with `A`.
    #[serde(rename = "LOG_APP")]
    App,
    /// LOG_CORE: system services, domain 0xD000000..=0xD0FFFFF, printed with `C`.
    #[serde(rename = "LOG_CORE")]
    Core,
}

impl LogType {
    /// The letter before the domain in the line format.
    pub fn letter(self) -> char {
        match self {
            LogType::App => 'A',
            LogType::Core => 'C',
        }
    }
    /// The name `hilog -t` takes.
    pub fn name(self) -> &'static str {
        match self {
            LogType::App => "app",
            LogType::Core => "core",
        }
    }
    /// Checks that `domain` lies in this type's range, as hilogd does before storing a line.
    pub fn check_domain(self, domain: u32) -> Result<(), HilogError> {
        let ok = match self {
            LogType::App => domain <= APP_DOMAIN_MAX,
            LogType::Core => CORE_DOMAIN_RANGE.contains(&domain),
        };
        if ok {
            Ok(())
        } else {
            Err(HilogError::InvalidDomain(format!(
                "{domain:#x}: {} domains are {}",
                self.name(),
                match self {
                    LogType::App => "0x0..=0xFFFF",
                    LogType::Core => "0xD000000..=0xD0FFFFF",
                }
            )))
        }
    }
}

impl FromStr for LogType {
    type Err = HilogError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "app" | "a" => Ok(LogType::App),
            "core" | "c" => Ok(LogType::Core),
            _ => Err(HilogError::InvalidType(s.to_string())),
        }
    }
}

/// One stored log line. `seq` is assigned by the ring buffer and only grows, so a reader can
/// ask for "everything after seq N"; the time is the daemon's wall clock when it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Position in the buffer's history (1, 2, ...).
    pub seq: u64,
    /// Wall-clock seconds since the Unix epoch.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: u32,
    /// Writer's process id (from the kernel for IPC writers).
    pub pid: i32,
    /// Writer's thread id.
    pub tid: i32,
    /// Severity.
    pub level: Level,
    /// App or core.
    pub log_type: LogType,
    /// OpenHarmony domain id.
    pub domain: u32,
    /// Module tag.
    pub tag: String,
    /// The formatted (and, with privacy on, masked) message.
    pub msg: String,
}

/// The wall clock now, as the (seconds, nanoseconds) pair a [`LogEntry`] stores.
pub fn wall_clock_now() -> (i64, u32) {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(_) => (0, 0),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, as OpenHarmony cuts long logs.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl LogEntry {
    #[cfg(feature = "text")]
    /// The local time column: `MM-DD HH:MM:SS.mmm`.
    pub fn time_str(&self) -> String {
        match Local
            .timestamp_opt(self.sec, self.nsec.min(999_999_999))
            .earliest()
        {
            Some(t) => t.format("%m-%d %H:%M:%S%.3f").to_string(),
            None => "00-00 00:00:00.000".to_string(),
        }
    }

    #[cfg(feature = "text")]
    /// The prefix before the message: time, pid, tid, level, type+domain and tag.
    pub fn prefix(&self) -> String {
        format!(
            "{}  {:>5} {:>5} {} {}{:05X}/{}: ",
            self.time_str(),
            self.pid,
            self.tid,
            self.level.letter(),
            self.log_type.letter(),
            self.domain & DOMAIN_MASK,
            self.tag
        )
    }

    #[cfg(feature = "text")]
    /// The entry as `hilog` prints it:
    /// `11-26 10:51:02.087  2823  2823 I C01510/samgr: message`. A message with several lines
    /// gives several output lines, each with the prefix, as hilog does without `-v wrap`.
    /// No trailing newline.
    pub fn format_line(&self) -> String {
        let prefix = self.prefix();
        let mut out = String::with_capacity(prefix.len() + self.msg.len());
        for (i, line) in self.msg.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&prefix);
            out.push_str(line);
        }
        out
    }

    /// What this entry counts against the buffer size and the per-process quota: a fixed
    /// header estimate (OpenHarmony's packed HilogMsg header and terminators) plus tag and text.
    pub fn cost(&self) -> usize {
        ENTRY_HEADER_COST + self.tag.len() + self.msg.len()
    }
}

/// Bytes an entry costs beyond its tag and message (see [`LogEntry::cost`]).
pub const ENTRY_HEADER_COST: usize = 32;

#[cfg(test)]
pub(crate) fn sample(seq: u64, level: Level, tag: &str, msg: &str) -> LogEntry {
    LogEntry {
        seq,
        sec: 1_700_000_000,
        nsec: 87_000_000,
        pid: 2823,
        tid: 2823,
        level,
        log_type: LogType::Core,
        domain: 0xD00_1510,
        tag: tag.to_string(),
        msg: msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_every_spelling() {
        for s in ["D", "d", "DEBUG", "debug", " Debug "] {
            assert_eq!(s.parse::<Level>().unwrap(), Level::Debug, "{s}");
        }
        assert_eq!("f".parse::<Level>().unwrap(), Level::Fatal);
        assert_eq!("Warn".parse::<Level>().unwrap(), Level::Warn);
        assert!("X".parse::<Level>().is_err());
        assert!("".parse::<Level>().is_err());
        assert!(Level::Debug < Level::Fatal);
        assert_eq!(Level::Error as u8, 6, "OpenHarmony LOG_ERROR");
    }

    #[test]
    fn types_parse_and_check_domains() {
        assert_eq!("APP".parse::<LogType>().unwrap(), LogType::App);
        assert_eq!("core".parse::<LogType>().unwrap(), LogType::Core);
        assert!("kmsg".parse::<LogType>().is_err());
        assert!(LogType::App.check_domain(0x3200).is_ok());
        assert!(LogType::App.check_domain(0x1_0000).is_err());
        assert!(LogType::Core.check_domain(0xD00_1510).is_ok());
        assert!(LogType::Core.check_domain(0x1510).is_err());
    }

    #[test]
    fn line_format_matches_openharmony() {
        let e = sample(1, Level::Info, "samgr", "message");
        let line = e.format_line();
        let time = e.time_str();
        assert_eq!(time.len(), "11-26 10:51:02.087".len());
        assert!(time.ends_with(".087"), "{time}");
        assert_eq!(line, format!("{time}   2823  2823 I C01510/samgr: message"));

        let mut a = sample(1, Level::Error, "testTag", "x");
        a.log_type = LogType::App;
        a.domain = 0x3200;
        a.pid = 7;
        a.tid = 123456;
        assert_eq!(
            a.format_line(),
            format!("{}      7 123456 E A03200/testTag: x", a.time_str())
        );
    }

    #[test]
    fn domain_prints_low_20_bits_upper_hex() {
        let mut e = sample(1, Level::Info, "t", "m");
        e.domain = 0xD0_01B0F;
        assert!(e.format_line().contains(" C01B0F/t: m"));
    }

    #[test]
    fn multi_line_messages_repeat_the_prefix() {
        let e = sample(1, Level::Warn, "t", "one\ntwo");
        let out = e.format_line();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("W C01510/t: one"));
        assert!(lines[1].ends_with("W C01510/t: two"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "aé".repeat(3); // 'é' is 2 bytes
        truncate_utf8(&mut s, 2);
        assert_eq!(s, "a");
        let mut t = String::from("abc");
        truncate_utf8(&mut t, 10);
        assert_eq!(t, "abc");
    }

    #[test]
    fn cost_counts_header_tag_and_message() {
        let e = sample(1, Level::Info, "tag", "hello");
        assert_eq!(e.cost(), ENTRY_HEADER_COST + 3 + 5);
    }
}
