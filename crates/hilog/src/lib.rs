//! hilog, OpenHarmony's logging, for oxharmony.
//!
//! The daemon keeps a ring buffer of log lines. Its own `tracing` events enter through
//! [`HilogLayer`]; apps and tools write through the hilog system ability (SA 1290, see
//! [`api`]), where the caller's pid comes from the kernel, OpenHarmony's privacy format
//! (`%{public}s`, `%{private}d`) is applied and each process is held to a byte quota per second.
//! `hilog` the CLI reads the buffer with filters ([`Filter`]) and can follow it, and the buffer
//! can be persisted to rotated zstd files ([`Persister`]).
//!
//! The core (entries and their line format, privacy formatting, the buffer, filters, flow
//! control) does no I/O and is tested deterministically. With the default `service` feature
//! the crate also has the layer, the SA and persistence; clients that only need the types and
//! the line format can build it with `default-features = false`.

pub mod api;
mod buffer;
mod entry;
mod error;
mod filter;
mod format;
mod quota;

#[cfg(feature = "service")]
mod layer;
#[cfg(feature = "service")]
pub mod persist;
#[cfg(feature = "service")]
mod service;

pub use buffer::{
    DEFAULT_BUFFER_SIZE, MAX_BUFFER_SIZE, MIN_BUFFER_SIZE, ReadBatch, RingBuffer,
    check_buffer_size, format_size, parse_size,
};
pub use entry::{
    APP_DOMAIN_MAX, CORE_DOMAIN_RANGE, DOMAIN_MASK, ENTRY_HEADER_COST, Level, LogEntry, LogType,
    MAX_MSG_LEN, MAX_TAG_LEN, truncate_utf8, wall_clock_now,
};
pub use error::HilogError;
pub use filter::{
    Filter, MAX_DOMAINS, MAX_PIDS, MAX_REGEX_LEN, MAX_TAGS, Selection, parse_domain, parse_domains,
    parse_levels, parse_pids, parse_tags, parse_types,
};
#[cfg(feature = "text")]
pub use filter::{Matcher, select};
pub use format::{LogArg, PRIVATE_MARK, format_log};
pub use quota::{Admit, DEFAULT_QUOTA, FlowControl, QUOTA_TAG, quota_notice};

#[cfg(feature = "service")]
pub use layer::{DEFAULT_CORE_DOMAIN, HilogLayer, level_from_tracing, tag_from_target};
#[cfg(feature = "service")]
pub use persist::{PersistConfig, Persister};
#[cfg(feature = "service")]
pub use service::{
    HilogConfig, HilogService, MAX_FOLLOW_EVENT_BYTES, MAX_FOLLOWS, MAX_FOLLOWS_PER_CONN,
    MAX_READ_REPLY_BYTES,
};
