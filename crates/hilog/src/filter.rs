//! What `hilog` selects: levels, types, domains, tags, pids and a regex on the message, plus
//! the first or last N lines. Pure functions over entries.

use crate::{HilogError, Level, LogEntry, LogType};
use serde::{Deserialize, Serialize};

/// OpenHarmony's MAX_DOMAINS: at most this many `-D` values.
pub const MAX_DOMAINS: usize = 5;
/// OpenHarmony's MAX_TAGS: at most this many `-T` values.
pub const MAX_TAGS: usize = 10;
/// OpenHarmony's MAX_PIDS: at most this many `-P` values.
pub const MAX_PIDS: usize = 5;
/// Longest `-e` expression accepted, so a reader cannot make the daemon compile megabytes.
pub const MAX_REGEX_LEN: usize = 1024;

/// A reader's selection, as sent over IPC. Each list is "any of"; an empty list matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// `-L`: levels to show.
    pub levels: Vec<Level>,
    /// `-t`: app and/or core.
    pub types: Vec<LogType>,
    /// `-D`: domains. A value up to 0xFFFFF compares with the low 20 bits of the entry's
    /// domain (what the line shows, `01510`); a larger one compares in full (`0xD001510`).
    pub domains: Vec<u32>,
    /// `-T`: tags, compared exactly.
    pub tags: Vec<String>,
    /// `-P`: writer pids.
    pub pids: Vec<i32>,
    /// `-e`: a regular expression the message must match.
    pub regex: Option<String>,
}

#[cfg(feature = "text")]
impl Filter {
    /// Checks the limits and compiles the regex once, for matching many entries.
    pub fn compile(&self) -> Result<Matcher, HilogError> {
        if self.domains.len() > MAX_DOMAINS {
            return Err(HilogError::TooManyFilters {
                what: "domains",
                max: MAX_DOMAINS,
            });
        }
        if self.tags.len() > MAX_TAGS {
            return Err(HilogError::TooManyFilters {
                what: "tags",
                max: MAX_TAGS,
            });
        }
        if self.pids.len() > MAX_PIDS {
            return Err(HilogError::TooManyFilters {
                what: "pids",
                max: MAX_PIDS,
            });
        }
        let regex = match &self.regex {
            Some(r) if r.len() > MAX_REGEX_LEN => {
                return Err(HilogError::InvalidRegex(format!(
                    "expression longer than {MAX_REGEX_LEN} bytes"
                )));
            }
            Some(r) => Some(
                regex::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| HilogError::InvalidRegex(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Matcher {
            filter: self.clone(),
            regex,
        })
    }
}

#[cfg(feature = "text")]
/// A compiled [`Filter`].
#[derive(Debug, Clone)]
pub struct Matcher {
    filter: Filter,
    regex: Option<regex::Regex>,
}

#[cfg(feature = "text")]
impl Matcher {
    /// A matcher that takes everything.
    pub fn all() -> Self {
        Self {
            filter: Filter::default(),
            regex: None,
        }
    }

    /// True when `e` passes every part of the filter.
    pub fn matches(&self, e: &LogEntry) -> bool {
        let f = &self.filter;
        (f.levels.is_empty() || f.levels.contains(&e.level))
            && (f.types.is_empty() || f.types.contains(&e.log_type))
            && (f.domains.is_empty() || f.domains.iter().any(|&d| domain_matches(d, e.domain)))
            && (f.tags.is_empty() || f.tags.contains(&e.tag))
            && (f.pids.is_empty() || f.pids.contains(&e.pid))
            && self.regex.as_ref().is_none_or(|r| r.is_match(&e.msg))
    }
}

#[cfg(feature = "text")]
fn domain_matches(filter: u32, domain: u32) -> bool {
    if filter > crate::DOMAIN_MASK {
        filter == domain
    } else {
        filter == domain & crate::DOMAIN_MASK
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split([',', '/']).map(str::trim).filter(|p| !p.is_empty())
}

/// Parses `-L`: one level or several separated by `,` (`I,W`, `E`, `DEBUG`).
pub fn parse_levels(s: &str) -> Result<Vec<Level>, HilogError> {
    let v: Vec<Level> = split_list(s).map(str::parse).collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(HilogError::InvalidLevel(s.to_string()));
    }
    Ok(v)
}

/// Parses `-t`: `app`, `core`, or both separated by `,`.
pub fn parse_types(s: &str) -> Result<Vec<LogType>, HilogError> {
    let v: Vec<LogType> = split_list(s).map(str::parse).collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(HilogError::InvalidType(s.to_string()));
    }
    Ok(v)
}

/// Parses one domain as `-D` takes it: always hexadecimal, with or without `0x`
/// (`0xD001510`, `D001510`, `01510`).
pub fn parse_domain(s: &str) -> Result<u32, HilogError> {
    let t = s.trim();
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if hex.is_empty() || hex.len() > 8 {
        return Err(HilogError::InvalidDomain(s.to_string()));
    }
    u32::from_str_radix(hex, 16).map_err(|_| HilogError::InvalidDomain(s.to_string()))
}

/// Parses `-D` with several domains separated by `,`.
pub fn parse_domains(s: &str) -> Result<Vec<u32>, HilogError> {
    let v: Vec<u32> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_domain)
        .collect::<Result<_, _>>()?;
    if v.is_empty() || v.len() > MAX_DOMAINS {
        return Err(HilogError::TooManyFilters {
            what: "domains (1 or more)",
            max: MAX_DOMAINS,
        });
    }
    Ok(v)
}

/// Parses `-T`: tags separated by `,`, each 1..=31 bytes.
pub fn parse_tags(s: &str) -> Result<Vec<String>, HilogError> {
    let mut v = Vec::new();
    for t in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if t.len() > crate::MAX_TAG_LEN {
            return Err(HilogError::InvalidTag(t.to_string()));
        }
        v.push(t.to_string());
    }
    if v.is_empty() {
        return Err(HilogError::InvalidTag(s.to_string()));
    }
    if v.len() > MAX_TAGS {
        return Err(HilogError::TooManyFilters {
            what: "tags",
            max: MAX_TAGS,
        });
    }
    Ok(v)
}

/// Parses `-P`: pids separated by `,`.
pub fn parse_pids(s: &str) -> Result<Vec<i32>, HilogError> {
    let mut v = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p.parse::<i32>() {
            Ok(n) if n >= 0 => v.push(n),
            _ => return Err(HilogError::InvalidPid(p.to_string())),
        }
    }
    if v.is_empty() {
        return Err(HilogError::InvalidPid(s.to_string()));
    }
    if v.len() > MAX_PIDS {
        return Err(HilogError::TooManyFilters {
            what: "pids",
            max: MAX_PIDS,
        });
    }
    Ok(v)
}

/// The result of [`select`]: one page of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The entries, oldest first.
    pub entries: Vec<LogEntry>,
    /// True when the page filled up before the selection ended; read on after the last seq.
    pub more: bool,
}

#[cfg(feature = "text")]
/// Picks what `hilog` shows from `entries` (oldest first): the matches, then the first `head`
/// of them (`-a N`), then the last `tail` of those (`-z N`), cut to a page of at most
/// `max_bytes` of [`LogEntry::cost`] (at least one entry) so that a reply fits one IPC
/// transaction.
pub fn select<'a>(
    entries: impl Iterator<Item = &'a LogEntry>,
    matcher: &Matcher,
    head: Option<usize>,
    tail: Option<usize>,
    max_bytes: usize,
) -> Selection {
    let mut picked: Vec<&LogEntry> = entries.filter(|e| matcher.matches(e)).collect();
    if let Some(h) = head {
        picked.truncate(h);
    }
    if let Some(t) = tail {
        let skip = picked.len().saturating_sub(t);
        picked.drain(..skip);
    }
    let mut out = Selection::default();
    let mut bytes = 0usize;
    for e in picked {
        if !out.entries.is_empty() && bytes + e.cost() > max_bytes {
            out.more = true;
            break;
        }
        bytes += e.cost();
        out.entries.push(e.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::sample;

    fn entries() -> Vec<LogEntry> {
        let mut v = vec![
            sample(1, Level::Debug, "samgr", "start tasks"),
            sample(2, Level::Info, "ipc", "accept failed"),
            sample(3, Level::Warn, "samgr", "permission denied"),
            sample(4, Level::Error, "kv", "sync started"),
        ];
        v[1].pid = 100;
        v[3].log_type = LogType::App;
        v[3].domain = 0x3200;
        v
    }

    fn seqs(f: &Filter) -> Vec<u64> {
        let m = f.compile().unwrap();
        entries()
            .iter()
            .filter(|e| m.matches(e))
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn each_criterion_filters() {
        assert_eq!(seqs(&Filter::default()), vec![1, 2, 3, 4]);
        let f = Filter {
            levels: parse_levels("I,W").unwrap(),
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![2, 3]);
        let f = Filter {
            types: vec![LogType::App],
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![4]);
        let f = Filter {
            tags: parse_tags("samgr").unwrap(),
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![1, 3]);
        let f = Filter {
            pids: parse_pids("100").unwrap(),
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![2]);
        let f = Filter {
            regex: Some("^s".into()),
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![1, 4]);
        let f = Filter {
            tags: vec!["samgr".into()],
            levels: vec![Level::Warn],
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![3], "criteria combine with AND");
    }

    #[test]
    fn domains_match_low_bits_or_full() {
        let f = Filter {
            domains: parse_domains("01510").unwrap(),
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![1, 2, 3]);
        let f = Filter {
            domains: parse_domains("0xD001510").unwrap(),
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![1, 2, 3]);
        let f = Filter {
            domains: parse_domains("0xD003200").unwrap(),
            ..Default::default()
        };
        assert!(
            seqs(&f).is_empty(),
            "full domain differs from the app's 0x3200"
        );
        let f = Filter {
            domains: parse_domains("3200,0x1").unwrap(),
            ..Default::default()
        };
        assert_eq!(seqs(&f), vec![4]);
    }

    #[test]
    fn parsers_reject_bad_input() {
        assert!(parse_levels("").is_err());
        assert!(parse_levels("I,Q").is_err());
        assert_eq!(
            parse_levels("D/E").unwrap(),
            vec![Level::Debug, Level::Error]
        );
        assert_eq!(parse_types("app,core").unwrap().len(), 2);
        assert!(parse_types("kmsg").is_err());
        assert_eq!(parse_domain("0xD001510").unwrap(), 0xD00_1510);
        assert_eq!(parse_domain("D001510").unwrap(), 0xD00_1510);
        assert!(parse_domain("0x").is_err());
        assert!(parse_domain("xyz").is_err());
        assert!(parse_domain("123456789").is_err());
        assert!(parse_domains("1,2,3,4,5,6").is_err());
        assert!(parse_tags(&"t".repeat(32)).is_err());
        assert!(parse_pids("-1").is_err());
        assert!(parse_pids("abc").is_err());
        assert_eq!(parse_pids("1, 2").unwrap(), vec![1, 2]);
    }

    #[test]
    fn compile_checks_limits_and_regex() {
        let f = Filter {
            regex: Some("(".into()),
            ..Default::default()
        };
        assert!(matches!(f.compile(), Err(HilogError::InvalidRegex(_))));
        let f = Filter {
            pids: vec![1; MAX_PIDS + 1],
            ..Default::default()
        };
        assert!(f.compile().is_err());
        let f = Filter {
            regex: Some("a".repeat(MAX_REGEX_LEN + 1)),
            ..Default::default()
        };
        assert!(f.compile().is_err());
    }

    #[test]
    fn head_tail_and_paging() {
        let es = entries();
        let all = Matcher::all();
        let s = |h, t, max| {
            select(es.iter(), &all, h, t, max)
                .entries
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(s(Some(2), None, usize::MAX), vec![1, 2]);
        assert_eq!(s(None, Some(2), usize::MAX), vec![3, 4]);
        assert_eq!(s(Some(3), Some(1), usize::MAX), vec![3]);
        assert_eq!(s(None, Some(10), usize::MAX), vec![1, 2, 3, 4]);
        assert_eq!(s(Some(0), None, usize::MAX), Vec::<u64>::new());
        let page = select(es.iter(), &all, None, None, es[0].cost() + es[1].cost());
        assert_eq!(page.entries.len(), 2);
        assert!(page.more);
        let one = select(es.iter(), &all, None, None, 1);
        assert_eq!(one.entries.len(), 1, "a page holds at least one entry");
        let m = Filter {
            tags: vec!["samgr".into()],
            ..Default::default()
        }
        .compile()
        .unwrap();
        let tail = select(es.iter(), &m, None, Some(1), usize::MAX);
        assert_eq!(tail.entries[0].seq, 3, "tail counts matches, not entries");
    }
}
