//! The counter example: a ServiceExtensionAbility in Rust. It counts the starts it is asked
//! for (`onRequest`) and the calls of its clients, and logs each callback to hilog (tag
//! `Counter`). Its remote object answers:
//! - code 1: count one more, and answer `count=N caller=UID token=T pid=P service_pid=S
//!   bundle=B` (the caller as the host saw it: the kernel's credentials of the client's
//!   socket, and its token; pid 0 for a client on another device), and the service's own pid;
//! - code 2: the count, without counting;
//! - anything else: 401.
//!
//! The same service is declared twice: `CounterService` (exported) and `HiddenCounter` (not
//! exported: only its own app reaches it).

use oxh_sdk::Device;
use oxh_sdk::ability::{Context, RemoteCaller, RemoteObject, ServiceExtension, Want};
use oxh_sdk::hilog::LogArg;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The hilog domain of this app.
const DOMAIN: u32 = 0x0003;

/// The service.
#[derive(Default)]
pub struct CounterService {
    dev: Option<Device>,
    count: Arc<AtomicU64>,
}

/// What clients call: it shares the service's count.
struct Remote {
    count: Arc<AtomicU64>,
}

impl RemoteObject for Remote {
    fn on_remote_request(
        &self,
        caller: &RemoteCaller,
        code: u32,
        _data: &[u8],
    ) -> Result<Vec<u8>, i32> {
        let n = match code {
            1 => self.count.fetch_add(1, Ordering::SeqCst) + 1,
            2 => self.count.load(Ordering::SeqCst),
            _ => return Err(oxh_sdk::ability::AbilityError::InvalidParam(String::new()).code()),
        };
        Ok(format!(
            "count={n} caller={} token={} pid={} service_pid={} bundle={}",
            caller.uid,
            caller.token_id,
            caller.pid,
            std::process::id(),
            caller.bundle_name
        )
        .into_bytes())
    }
}

impl CounterService {
    fn log(&self, ctx: &Context, what: String) {
        if let Some(dev) = &self.dev {
            let _ = ctx.block_on(dev.hilog().info(
                DOMAIN,
                "Counter",
                "%{public}s",
                &[LogArg::Str(what)],
            ));
        }
    }
}

impl ServiceExtension for CounterService {
    fn on_create(&mut self, ctx: &Context, _want: &Want) {
        self.dev = ctx.block_on(Device::connect_in_app()).ok();
        self.log(ctx, "CounterService onCreate".into());
    }
    fn on_request(&mut self, ctx: &Context, _want: &Want, start_id: i32) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.log(
            ctx,
            format!("CounterService onRequest {start_id} count={n}"),
        );
    }
    fn on_connect(&mut self, ctx: &Context, _want: &Want) -> Option<Arc<dyn RemoteObject>> {
        self.log(ctx, "CounterService onConnect".into());
        Some(Arc::new(Remote {
            count: self.count.clone(),
        }))
    }
    fn on_disconnect(&mut self, ctx: &Context, _want: &Want) {
        self.log(ctx, "CounterService onDisconnect".into());
    }
    fn on_destroy(&mut self, ctx: &Context) {
        self.log(ctx, "CounterService onDestroy".into());
    }
}

oxh_sdk::export_abilities!(
    service "CounterService" => CounterService,
    service "HiddenCounter" => CounterService,
);
