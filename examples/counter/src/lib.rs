//! The counter example: a ServiceExtensionAbility in Rust. It counts the starts it is asked
//! for (`onRequest`) and logs each callback to hilog (tag `Counter`).

use oxh_sdk::Device;
use oxh_sdk::ability::{Context, ServiceExtension, Want};
use oxh_sdk::hilog::LogArg;

/// The hilog domain of this app.
const DOMAIN: u32 = 0x0003;

/// The service.
#[derive(Default)]
pub struct CounterService {
    dev: Option<Device>,
    count: u64,
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
        self.count += 1;
        self.log(
            ctx,
            format!("CounterService onRequest {start_id} count={}", self.count),
        );
    }
    fn on_connect(&mut self, ctx: &Context, _want: &Want) {
        self.log(ctx, "CounterService onConnect".into());
    }
    fn on_disconnect(&mut self, ctx: &Context, _want: &Want) {
        self.log(ctx, "CounterService onDisconnect".into());
    }
    fn on_destroy(&mut self, ctx: &Context) {
        self.log(ctx, "CounterService onDestroy".into());
    }
}

oxh_sdk::export_abilities!(service "CounterService" => CounterService);
