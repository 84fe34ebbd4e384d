//! The notes example: a native UIAbility in Rust. It logs each lifecycle callback to hilog
//! (tag `Notes`, so a test can read the order), keeps a count of its starts in a KV store of
//! its own, and obeys two Want parameters: `crash` (abort in onForeground, to show a fault
//! record) and `hang` (never return from onForeground, to show the 5 s deadline).

use oxh_sdk::Device;
use oxh_sdk::ability::{Ability, Context, LaunchReason, Want, WantParam};
use oxh_sdk::hilog::LogArg;
use oxh_sdk::kv::{KVManager, Options};

/// The hilog domain of this app.
const DOMAIN: u32 = 0x0001;

/// One instance of an ability of this app.
#[derive(Default)]
pub struct Notes {
    name: &'static str,
    dev: Option<Device>,
    crash: bool,
    hang: bool,
}

impl Notes {
    fn log(&self, ctx: &Context, what: &str) {
        let Some(dev) = &self.dev else { return };
        let line = format!("{} {what}", self.name);
        let _ = ctx.block_on(
            dev.hilog()
                .info(DOMAIN, "Notes", "%{public}s", &[LogArg::Str(line)]),
        );
    }

    fn create(&mut self, name: &'static str, ctx: &Context, want: &Want) {
        self.name = name;
        self.crash = want.parameters.get("crash") == Some(&WantParam::Bool(true));
        self.hang = want.parameters.get("hang") == Some(&WantParam::Bool(true));
        self.dev = ctx.block_on(Device::connect_in_app()).ok();
        if let Some(dev) = &self.dev {
            // Its own KV store: the count of its creations.
            let _ = ctx.block_on(async {
                let kv = KVManager::new(dev, None)
                    .get_single_kv_store("notes", Options::default())
                    .await?;
                let n = kv
                    .get(b"starts")
                    .await
                    .ok()
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                kv.put(b"starts", (n + 1).to_string().as_bytes()).await
            });
        }
    }
}

macro_rules! ability {
    ($ty:ident, $name:literal) => {
        /// An ability of this app (see the crate doc).
        #[derive(Default)]
        pub struct $ty(Notes);

        impl Ability for $ty {
            fn on_create(&mut self, ctx: &Context, want: &Want, reason: LaunchReason) {
                self.0.create($name, ctx, want);
                self.0.log(ctx, &format!("onCreate {reason:?}"));
            }
            fn on_new_want(&mut self, ctx: &Context, want: &Want) {
                let note = match want.parameters.get("note") {
                    Some(WantParam::String(s)) => s.clone(),
                    _ => String::new(),
                };
                self.0.log(ctx, &format!("onNewWant {note}"));
                if want.parameters.get("finish") == Some(&WantParam::Bool(true)) {
                    let _ = ctx.terminate_self();
                }
            }
            fn on_foreground(&mut self, ctx: &Context) {
                self.0.log(ctx, "onForeground");
                if self.0.crash {
                    std::process::abort();
                }
                while self.0.hang {
                    std::thread::park();
                }
            }
            fn on_background(&mut self, ctx: &Context) {
                self.0.log(ctx, "onBackground");
            }
            fn on_destroy(&mut self, ctx: &Context) {
                self.0.log(ctx, "onDestroy");
            }
        }
    };
}

ability!(EntryAbility, "EntryAbility");
ability!(NoteAbility, "NoteAbility");
ability!(HiddenAbility, "HiddenAbility");

oxh_sdk::export_abilities!(
    ability "EntryAbility" => EntryAbility,
    ability "NoteAbility" => NoteAbility,
    ability "HiddenAbility" => HiddenAbility,
);
