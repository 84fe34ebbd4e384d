//! `hilog`: OpenHarmony's log tool, against this device's buffer.

use super::{Global, print_json};
use anyhow::{Result, bail};
use clap::{Args, Parser};
use oxh_hilog::api::{FlowControlArgs, PersistCmd};
use oxh_hilog::{
    Filter, LogEntry, parse_domains, parse_levels, parse_pids, parse_size, parse_tags, parse_types,
};
use std::io::Write;

/// `hilog` as its own tool (through a link named `hilog`).
#[derive(Debug, Parser)]
#[command(name = "hilog", about = "read and control the device's logs")]
pub struct HilogTool {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// hilog's options.
    #[command(flatten)]
    pub args: HilogArgs,
}

/// hilog's options, with OpenHarmony's letters.
#[derive(Debug, Args)]
pub struct HilogArgs {
    /// Dump the buffer and exit (otherwise keep following new lines).
    #[arg(short = 'x', long = "exit")]
    exit: bool,
    /// Levels to show: D, I, W, E, F (comma separated).
    #[arg(short = 'L', long = "level")]
    level: Option<String>,
    /// Domains (hex, e.g. 0xD001510 or 01510; comma separated).
    #[arg(short = 'D', long = "domain")]
    domain: Option<String>,
    /// Tags (comma separated).
    #[arg(short = 'T', long = "tag")]
    tag: Option<String>,
    /// Pids (comma separated).
    #[arg(short = 'P', long = "pid")]
    pid: Option<String>,
    /// A regular expression the message must match.
    #[arg(short = 'e', long = "regex")]
    regex: Option<String>,
    /// Show only the first N lines.
    #[arg(short = 'a', long = "head")]
    head: Option<u64>,
    /// Show only the last N lines.
    #[arg(short = 'z', long = "tail")]
    tail: Option<u64>,
    /// Types: app, core (comma separated).
    #[arg(short = 't', long = "type")]
    log_type: Option<String>,
    /// Set the ring buffer size (e.g. 16M, 256K).
    #[arg(short = 'G', long = "buffer-size")]
    set_size: Option<String>,
    /// Show the ring buffer size.
    #[arg(short = 'g')]
    get_size: bool,
    /// Clear the ring buffer.
    #[arg(short = 'r')]
    clear: bool,
    /// Privacy masking of private arguments: on or off.
    #[arg(short = 'p', long = "privacy")]
    privacy: Option<String>,
    /// Log persistence: start, stop or query.
    #[arg(short = 'w', long = "write")]
    write: Option<String>,
    /// With -w start: bytes per file before rotating (e.g. 4M).
    #[arg(short = 'l', long = "file-size")]
    file_size: Option<String>,
    /// With -w start: files kept.
    #[arg(short = 'n', long = "file-num")]
    file_num: Option<u32>,
    /// Per-process flow control: pidon or pidoff.
    #[arg(short = 'Q')]
    quota: Option<String>,
}

fn filter(a: &HilogArgs) -> Result<Filter> {
    Ok(Filter {
        levels: a
            .level
            .as_deref()
            .map(parse_levels)
            .transpose()?
            .unwrap_or_default(),
        types: a
            .log_type
            .as_deref()
            .map(parse_types)
            .transpose()?
            .unwrap_or_default(),
        domains: a
            .domain
            .as_deref()
            .map(parse_domains)
            .transpose()?
            .unwrap_or_default(),
        tags: a
            .tag
            .as_deref()
            .map(parse_tags)
            .transpose()?
            .unwrap_or_default(),
        pids: a
            .pid
            .as_deref()
            .map(parse_pids)
            .transpose()?
            .unwrap_or_default(),
        regex: a.regex.clone(),
    })
}

fn print_lines(g: &Global, lines: &[LogEntry]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for e in lines {
        if g.json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            writeln!(out, "{}", e.format_line())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs `hilog ...`: a control command when one is given, else read (and follow unless -x).
pub async fn run(g: &Global, a: &HilogArgs) -> Result<i32> {
    let dev = g.connect().await?;
    let h = dev.hilog();
    let mut control = false;
    if let Some(s) = &a.set_size {
        let info = h.set_buffer_size(parse_size(s)?).await?;
        println!(
            "Set log buffer size to {} successfully",
            oxh_hilog::format_size(info.size)
        );
        control = true;
    }
    if a.get_size {
        let info = h.buffer_size().await?;
        if g.json {
            print_json(&info)?;
        } else {
            println!(
                "Log buffer size is {}, used {} ({} lines)",
                oxh_hilog::format_size(info.size),
                oxh_hilog::format_size(info.used),
                info.entries
            );
        }
        control = true;
    }
    if a.clear {
        h.clear().await?;
        println!("Log type app,core,init,kmsg buffer clear successfully");
        control = true;
    }
    if let Some(p) = &a.privacy {
        let on = switch("-p", p, "on", "off")?;
        h.set_privacy(on).await?;
        println!("Set privacy {p} successfully");
        control = true;
    }
    if let Some(q) = &a.quota {
        let enabled = switch("-Q", q, "pidon", "pidoff")?;
        h.flow_control(FlowControlArgs {
            enabled: Some(enabled),
            quota: None,
        })
        .await?;
        println!("Set flow control {q} successfully");
        control = true;
    }
    if let Some(w) = &a.write {
        let cmd = match w.as_str() {
            "start" => PersistCmd::Start {
                file_size: a.file_size.as_deref().map(parse_size).transpose()?,
                max_files: a.file_num,
            },
            "stop" => PersistCmd::Stop,
            "query" => PersistCmd::Query,
            other => bail!("hilog -w takes start, stop or query, not {other:?}"),
        };
        let st = h.persist(cmd).await?;
        if g.json {
            print_json(&st)?;
        } else {
            match w.as_str() {
                "start" => println!("Persist task start successfully: {}", st.dir),
                "stop" => println!("Persist task stop successfully"),
                _ => {
                    println!(
                        "Persist task: {}, dir {}, {} per file, {} files kept",
                        if st.running { "running" } else { "stopped" },
                        st.dir,
                        oxh_hilog::format_size(st.file_size),
                        st.max_files
                    );
                    for f in &st.files {
                        println!("  {}  {} bytes", f.name, f.size);
                    }
                }
            }
        }
        control = true;
    }
    if control {
        return Ok(0);
    }

    let f = filter(a)?;
    if a.exit {
        let lines = h.read(f, a.head, a.tail).await?;
        print_lines(g, &lines)?;
        return Ok(0);
    }
    let (lines, mut follow) = h.follow(f, a.tail).await?;
    print_lines(g, &lines)?;
    while let Some(batch) = follow.next().await {
        print_lines(g, &batch)?;
    }
    Ok(0)
}

/// The value of `hilog FLAG ON|OFF`: true for `on`, false for `off`, else an error naming the
/// two.
fn switch(flag: &str, v: &str, on: &str, off: &str) -> Result<bool> {
    match v {
        v if v == on => Ok(true),
        v if v == off => Ok(false),
        other => bail!("hilog {flag} takes {on} or {off}, not {other:?}"),
    }
}
