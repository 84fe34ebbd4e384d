//! Logging, as `@ohos.hilog`: apps write lines with OpenHarmony's privacy format strings
//! (`%{public}s` shown, plain `%s` masked as `<private>` while privacy is on); tools read them.

use crate::{Device, Error};
use oxh_hilog::api::{
    self, BufferInfo, FlowControlArgs, FlowControlInfo, PersistCmd, PersistStatus, ReadArgs,
    ReadReply, WriteArgs,
};
use oxh_hilog::{Filter, LogEntry};
use oxh_ipc::Subscription;

pub use oxh_hilog::{Level, LogArg, LogEntry as Entry, LogType};

/// Proxy for the hilog service.
pub struct HiLog<'a> {
    pub(crate) dev: &'a Device,
}

/// New log lines of a follow, in order.
pub struct Follow {
    sub: Subscription,
}

impl Follow {
    /// The next batch of lines; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<Vec<LogEntry>> {
        let b = self.sub.recv().await?;
        oxh_ipc::decode(&b).ok()
    }
}

/// One method a level: [`HiLog::print`] of an app's line at that level.
macro_rules! app_levels {
    ($($(#[$doc:meta])* $name:ident => $level:ident,)*) => {$(
        $(#[$doc])*
        pub async fn $name(
            &self,
            domain: u32,
            tag: &str,
            fmt: &str,
            args: &[LogArg],
        ) -> Result<(), Error> {
            self.print(LogType::App, Level::$level, domain, tag, fmt, args)
                .await
        }
    )*};
}

impl HiLog<'_> {
    /// Writes one line (OpenHarmony's `OH_LOG_Print`). The daemon stamps time and pid.
    pub async fn print(
        &self,
        log_type: LogType,
        level: Level,
        domain: u32,
        tag: &str,
        fmt: &str,
        args: &[LogArg],
    ) -> Result<(), Error> {
        let a = WriteArgs {
            level,
            log_type,
            domain,
            tag: tag.into(),
            fmt: fmt.into(),
            args: args.to_vec(),
            tid: oxh_kal::current_tid(),
        };
        self.dev.client.call(api::SA_ID, api::WRITE, &a).await
    }
    app_levels! {
        /// `hilog.debug(domain, tag, fmt, ...args)` for an app.
        debug => Debug,
        /// `hilog.info(domain, tag, fmt, ...args)` for an app.
        info => Info,
        /// `hilog.warn(domain, tag, fmt, ...args)` for an app.
        warn => Warn,
        /// `hilog.error(domain, tag, fmt, ...args)` for an app.
        error => Error,
        /// `hilog.fatal(domain, tag, fmt, ...args)` for an app.
        fatal => Fatal,
    }

    async fn read_pages(&self, first: ReadArgs) -> Result<(Vec<LogEntry>, u64), Error> {
        let mut reply: ReadReply = self.dev.client.call(api::SA_ID, api::READ, &first).await?;
        let last_seq = reply.last_seq;
        let mut args = first;
        let mut out = Vec::new();
        loop {
            let next = args.next_page(&reply);
            out.append(&mut reply.entries);
            match next {
                Some(n) => {
                    reply = self.dev.client.call(api::SA_ID, api::READ, &n).await?;
                    args = n;
                }
                None => return Ok((out, last_seq)),
            }
        }
    }

    /// The stored lines that match (`hilog -x` with filters, `-a`/`-z`).
    pub async fn read(
        &self,
        filter: Filter,
        head: Option<u64>,
        tail: Option<u64>,
    ) -> Result<Vec<LogEntry>, Error> {
        let args = ReadArgs {
            filter,
            head,
            tail,
            ..Default::default()
        };
        Ok(self.read_pages(args).await?.0)
    }

    /// The stored lines that match, then every new matching line (`hilog` without `-x`).
    pub async fn follow(
        &self,
        filter: Filter,
        tail: Option<u64>,
    ) -> Result<(Vec<LogEntry>, Follow), Error> {
        let sub = self.dev.client.subscribe();
        let args = ReadArgs {
            filter,
            tail,
            follow: Some(sub.id()),
            ..Default::default()
        };
        let (lines, _) = self.read_pages(args).await?;
        Ok((lines, Follow { sub }))
    }

    /// `hilog -g`.
    pub async fn buffer_size(&self) -> Result<BufferInfo, Error> {
        self.dev
            .client
            .call(api::SA_ID, api::GET_BUFFER_SIZE, &())
            .await
    }
    /// `hilog -G SIZE`.
    pub async fn set_buffer_size(&self, bytes: u64) -> Result<BufferInfo, Error> {
        self.dev
            .client
            .call(api::SA_ID, api::SET_BUFFER_SIZE, &bytes)
            .await
    }
    /// `hilog -r`.
    pub async fn clear(&self) -> Result<(), Error> {
        self.dev.client.call(api::SA_ID, api::CLEAR, &()).await
    }
    /// `hilog -p on|off`: mask private arguments of lines written from now on.
    pub async fn set_privacy(&self, on: bool) -> Result<(), Error> {
        self.dev
            .client
            .call(api::SA_ID, api::SET_PRIVACY, &on)
            .await
    }
    /// `hilog -w start|stop|query`.
    pub async fn persist(&self, cmd: PersistCmd) -> Result<PersistStatus, Error> {
        self.dev.client.call(api::SA_ID, api::PERSIST, &cmd).await
    }
    /// `hilog -Q pidon|pidoff` and the per-process quota.
    pub async fn flow_control(&self, args: FlowControlArgs) -> Result<FlowControlInfo, Error> {
        self.dev
            .client
            .call(api::SA_ID, api::FLOW_CONTROL, &args)
            .await
    }
}
