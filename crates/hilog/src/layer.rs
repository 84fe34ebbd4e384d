//! The daemon's own `tracing` events as hilog lines (type core, our pid, the thread's tid).
//!
//! Conventions of the code base: `tag = "samgr"` names the tag (otherwise the last segment of
//! the event's target, without an `oxh_` prefix); `domain = 0xD001510u32` sets the domain; the
//! message is public; every other field is appended as ` name=value` and is private (printed
//! `<private>` while privacy is on) unless its name starts with `public_`, which is dropped
//! from the printed name.

use crate::format::PRIVATE_MARK;
use crate::service::Core;
use crate::{Level, LogEntry, LogType, MAX_MSG_LEN, MAX_TAG_LEN, truncate_utf8};
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Domain of daemon lines that name none: OpenHarmony's core range, subsystem 0x015xx.
pub const DEFAULT_CORE_DOMAIN: u32 = 0xD00_1500;

thread_local! {
    /// Set while this thread is inside the layer, so that an event raised while storing an
    /// event (which would deadlock on the buffer) is ignored instead.
    static IN_LAYER: Cell<bool> = const { Cell::new(false) };
}

/// A `tracing_subscriber` layer that stores the daemon's events in the hilog buffer. Get one
/// from [`crate::HilogService::layer`] and install it before the SA starts, so that start-up
/// logs are kept.
#[derive(Clone)]
pub struct HilogLayer {
    core: Arc<Core>,
    min_level: Level,
}

impl std::fmt::Debug for HilogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HilogLayer")
            .field("min_level", &self.min_level)
            .finish()
    }
}

impl HilogLayer {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            min_level: Level::Debug,
        }
    }

    /// Stores only events at `level` or above (tracing's TRACE is never stored).
    pub fn with_min_level(mut self, level: Level) -> Self {
        self.min_level = level;
        self
    }
}

/// Maps a tracing level to hilog's; TRACE has no hilog level and gives `None`.
pub fn level_from_tracing(l: &tracing::Level) -> Option<Level> {
    match *l {
        tracing::Level::ERROR => Some(Level::Error),
        tracing::Level::WARN => Some(Level::Warn),
        tracing::Level::INFO => Some(Level::Info),
        tracing::Level::DEBUG => Some(Level::Debug),
        _ => None,
    }
}

/// The tag for an event without a `tag` field: the target's last `::` segment without an
/// `oxh_` prefix (`oxh_samgr::samgr_sa` gives `samgr_sa`, `oxh_ipc` gives `ipc`).
pub fn tag_from_target(target: &str) -> String {
    let last = target.rsplit("::").next().unwrap_or(target);
    let t = last.strip_prefix("oxh_").unwrap_or(last);
    let mut t = if t.is_empty() { "oxhd" } else { t }.to_string();
    truncate_utf8(&mut t, MAX_TAG_LEN);
    t
}

struct Visitor {
    mask: bool,
    message: String,
    fields: String,
    tag: Option<String>,
    domain: Option<u32>,
}

impl Visitor {
    fn field(&mut self, field: &Field, value: &dyn std::fmt::Display) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        match name.strip_prefix("public_") {
            Some(public) => {
                let _ = write!(self.fields, " {public}={value}");
            }
            None if self.mask => {
                let _ = write!(self.fields, " {name}={PRIVATE_MARK}");
            }
            None => {
                let _ = write!(self.fields, " {name}={value}");
            }
        }
    }
}

impl Visit for Visitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "tag" => self.tag = Some(value.to_string()),
            _ => self.field(field, &value),
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "domain" {
            self.domain = u32::try_from(value).ok();
        } else {
            self.field(field, &value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "domain" {
            self.domain = u32::try_from(value).ok();
        } else {
            self.field(field, &value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "tag" => self.tag = Some(format!("{value:?}").trim_matches('"').to_string()),
            _ => self.field(field, &format_args!("{value:?}")),
        }
    }
}

impl HilogLayer {
    /// Whether events of this callsite are stored at all: ours from `min_level` up, other
    /// crates' (quinn, rustls, ...) from INFO up. Deciding per callsite lets tracing skip the
    /// rest entirely, which matters on hot paths such as QUIC's per-packet debug events.
    fn wants(&self, meta: &tracing::Metadata<'_>) -> bool {
        if meta.is_span() {
            // No spans are stored; disabling them saves the registry's work per span.
            return false;
        }
        let Some(level) = level_from_tracing(meta.level()) else {
            return false;
        };
        let floor = if meta.target().starts_with("oxh") {
            self.min_level
        } else {
            self.min_level.max(Level::Info)
        };
        level >= floor
    }
}

impl<S: Subscriber> Layer<S> for HilogLayer {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.wants(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.wants(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let Some(level) = level_from_tracing(meta.level()) else {
            return;
        };
        if level < self.min_level || IN_LAYER.with(Cell::get) {
            return;
        }
        IN_LAYER.with(|c| c.set(true));
        let mut v = Visitor {
            mask: self.core.privacy(),
            message: String::new(),
            fields: String::new(),
            tag: None,
            domain: None,
        };
        event.record(&mut v);
        let mut tag = v.tag.unwrap_or_else(|| tag_from_target(meta.target()));
        truncate_utf8(&mut tag, MAX_TAG_LEN);
        let mut msg = v.message;
        msg.push_str(&v.fields);
        truncate_utf8(&mut msg, MAX_MSG_LEN);
        let (sec, nsec) = crate::wall_clock_now();
        self.core.append(LogEntry {
            seq: 0,
            sec,
            nsec,
            pid: std::process::id() as i32,
            tid: oxh_kal::current_tid(),
            level,
            log_type: LogType::Core,
            domain: v.domain.unwrap_or(DEFAULT_CORE_DOMAIN),
            tag,
            msg,
        });
        IN_LAYER.with(|c| c.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HilogConfig, HilogService};
    use tracing_subscriber::layer::SubscriberExt;

    fn run_with(svc: &HilogService, f: impl FnOnce()) -> Vec<LogEntry> {
        let subscriber = tracing_subscriber::registry().with(svc.layer());
        tracing::subscriber::with_default(subscriber, f);
        svc.snapshot()
    }

    #[test]
    fn targets_give_tags() {
        assert_eq!(tag_from_target("oxh_samgr::samgr_sa"), "samgr_sa");
        assert_eq!(tag_from_target("oxh_ipc"), "ipc");
        assert_eq!(tag_from_target("oxhd"), "oxhd");
        assert_eq!(tag_from_target(&"x".repeat(40)).len(), MAX_TAG_LEN);
    }

    #[test]
    fn events_become_core_lines_with_privacy() {
        let svc = HilogService::new(HilogConfig::default());
        let got = run_with(&svc, || {
            tracing::warn!(
                tag = "samgr",
                public_pid = 42,
                secret = "hunter2",
                "permission denied for {}",
                "x"
            );
            tracing::info!(domain = 0xD001510u32, "with domain");
            tracing::trace!("never stored");
        });
        assert_eq!(got.len(), 2, "{got:?}");
        let e = &got[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(e.log_type, LogType::Core);
        assert_eq!(e.tag, "samgr");
        assert_eq!(e.pid, std::process::id() as i32);
        assert_eq!(e.tid, oxh_kal::current_tid());
        assert_eq!(e.domain, DEFAULT_CORE_DOMAIN);
        assert_eq!(e.msg, "permission denied for x pid=42 secret=<private>");
        assert_eq!(got[1].domain, 0xD00_1510);
        assert_eq!(
            got[1].tag, "tests",
            "last segment of oxh_hilog::layer::tests"
        );

        svc.set_privacy(false);
        let got = run_with(&svc, || tracing::error!(secret = 7, "open"));
        assert_eq!(got.last().unwrap().msg, "open secret=7");
    }

    #[test]
    fn global_subscriber_installs_once() {
        let svc = HilogService::new(HilogConfig::default());
        assert!(svc.install_global_subscriber());
        assert!(
            !svc.install_global_subscriber(),
            "a second install changes nothing"
        );
        std::thread::spawn(|| tracing::info!(tag = "global", "from another thread"))
            .join()
            .unwrap();
        let got = svc.snapshot();
        assert!(
            got.iter()
                .any(|e| e.tag == "global" && e.msg == "from another thread")
        );
    }

    #[test]
    fn min_level_filters() {
        let svc = HilogService::new(HilogConfig::default());
        let subscriber =
            tracing_subscriber::registry().with(svc.layer().with_min_level(Level::Warn));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("dropped");
            tracing::error!("kept");
        });
        let got = svc.snapshot();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].msg, "kept");
    }
}
