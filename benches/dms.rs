//! Distributed scheduler benchmark (issue 19): two devices on loopback, each a real `oxhd`,
//! bound with a PIN, the notes example installed on both from one HAP (one appId).
//!
//! - Continuation: `continueMission` (what `aa continue` calls) of notes carrying a 100 KiB
//!   wantParam (its note; the limit), to the target's `onForeground` (the time the target's
//!   daemon stamped on that hilog line), and to the call's answer; missions go back and forth.
//! - Remote start: `startAbility` with the Want's deviceId (what `aa start -d` calls) to
//!   `onForeground` on the other device.
//!
//! Beside, in the same run: a 64-byte bus message round trip app to app (the floor of any
//! exchange between the two schedulers), the schedulers' own round trip (`aa dump -l -d`'s
//! call), and the cold start of notes on one device (`aa start -W`'s TotalTime and wall time).
//! Needs root (app sandboxes).
//!
//! Run: `cargo bench --bench dms` (env OXH_BENCH_ITERS, default 20 of each;
//! OXH_BENCH_NOTE_BYTES, the note's length, default the 100 KiB wantParam limit less the
//! 10 bytes around it; OXH_BENCH_ROUNDS, bus round trips, default 2000; OXH_BENCH_TRACE=1
//! prints each continuation). The steps are split by the hilog stamps of the apps' lines.

mod common;
use common::{build_examples, ms, pct};

use oxh_sdk::ability::{Want, WantParam};
use oxh_sdk::bus::{DataType, SocketEvent};
use std::time::{Duration, Instant, SystemTime};

const NOTES: &str = "com.example.notes";

/// How long one step may take before the bench gives up (a bench that hangs tells nothing).
const STEP: Duration = Duration::from_secs(30);

/// New lines of the notes app on one device.
struct Lines(oxh_sdk::hilog::Follow);

impl Lines {
    async fn open(dev: &oxh_sdk::Device) -> Lines {
        let filter = oxh_hilog::Filter {
            tags: vec!["Notes".into()],
            ..Default::default()
        };
        let (_, f) = dev
            .hilog()
            .follow(filter, Some(0))
            .await
            .expect("follow hilog");
        Lines(f)
    }

    /// The stamp of the next line `msg` written at or after `since`.
    async fn next(&mut self, msg: &str, since: SystemTime) -> SystemTime {
        let wait = async {
            loop {
                let batch = self.0.next().await.expect("hilog follow ended");
                for e in batch {
                    let at = SystemTime::UNIX_EPOCH + Duration::new(e.sec.max(0) as u64, e.nsec);
                    if e.msg == msg && at >= since {
                        return at;
                    }
                }
            }
        };
        tokio::time::timeout(STEP, wait)
            .await
            .unwrap_or_else(|_| panic!("no {msg:?} within {STEP:?}"))
    }
}

/// Waits (bounded) until `dev` runs no app process, so that the next start is cold.
async fn no_app_process(dev: &oxh_sdk::Device) {
    let end = Instant::now() + STEP;
    while dev
        .ability()
        .dump()
        .await
        .unwrap()
        .iter()
        .any(|r| r.pid.is_some())
    {
        assert!(Instant::now() < end, "the app process did not end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The mission of notes' EntryAbility on `dev`.
async fn entry_mission(dev: &oxh_sdk::Device) -> i32 {
    dev.ability()
        .dump()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.element.bundle_name == NOTES && r.element.ability_name == "EntryAbility")
        .filter(|r| r.pid.is_some())
        .find_map(|r| r.mission)
        .expect("notes' mission")
}

/// `rounds` round trips of a 64-byte message from `a` to an echo on `b` (after a tenth as
/// many to warm up), timed on a runtime worker as an app's task would be.
async fn bus_rtt(
    a: &oxh_sdk::Device,
    b: &oxh_sdk::Device,
    nid_b: &str,
    rounds: usize,
) -> Vec<Duration> {
    let mut l = b.bus().listen("dms-bench").await.expect("listen");
    let (sock, mut replies) = a
        .bus()
        .bind(nid_b, "dms-bench", "dms-bench-a", DataType::Message)
        .await
        .expect("bind socket");
    let Some(SocketEvent::Bind { socket: peer, .. }) = l.next().await else {
        panic!("expected the bind")
    };
    let b2 = b.clone();
    let echo = tokio::spawn(async move {
        while let Some(e) = l.next().await {
            if let SocketEvent::Message { data, .. } = e
                && b2.bus().send_message(peer, &data).await.is_err()
            {
                break;
            }
        }
    });
    let a2 = a.clone();
    let lat = tokio::spawn(async move {
        let msg = [7u8; 64];
        let mut lat = Vec::with_capacity(rounds);
        for i in 0..rounds + rounds / 10 {
            let t = Instant::now();
            a2.bus().send_message(sock, &msg).await.expect("send");
            match replies.next().await {
                Some(SocketEvent::Message { .. }) => {}
                other => panic!("{other:?}"),
            }
            if i >= rounds / 10 {
                lat.push(t.elapsed());
            }
        }
        lat
    })
    .await
    .expect("round trips");
    echo.abort();
    lat
}

/// `at` after `t0` (zero if the clock says before).
fn since(at: SystemTime, t0: SystemTime) -> Duration {
    at.duration_since(t0).unwrap_or_default()
}

fn line(what: &str, v: &[Duration], peer: Option<(&str, Duration)>) {
    let p50 = pct(v.to_vec(), 50);
    let ratio = peer
        .map(|(n, d)| format!("  = {:.1}x {n}", ms(p50) / ms(d)))
        .unwrap_or_default();
    println!(
        "  {what:<50} p50 {:>8.2} ms  p90 {:>8.2} ms{ratio}",
        ms(p50),
        ms(pct(v.to_vec(), 90))
    );
}

fn main() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("dms bench: needs root (app sandboxes); not measured");
        return;
    }
    let iters: usize = common::env_num("OXH_BENCH_ITERS", 20);
    // notes' onContinue encodes its note with 10 bytes around it: by default the wantParam
    // is exactly MAX_WANT_PARAM (100 KiB), the most a continuation may carry.
    let note_bytes: usize = common::env_num(
        "OXH_BENCH_NOTE_BYTES",
        oxh_ability::continuation::MAX_WANT_PARAM - 10,
    );
    let rounds: usize = common::env_num("OXH_BENCH_ROUNDS", 2000);
    let (lib, _) = build_examples();
    let base = tempfile::tempdir().unwrap();
    let rt = common::multi_thread_runtime();
    let (a, b, da, db) = rt.block_on(common::bound_pair(base.path()));
    let udids = [a.field("udid"), b.field("udid")];
    let work = tempfile::tempdir().unwrap();
    common::install_example(&[&a, &b], work.path(), "notes", NOTES, &lib, &udids);
    let (nid_a, nid_b) = (a.field("network_id"), b.field("network_id"));
    let devs: [(&oxh_sdk::Device, &str); 2] = [(&da, &nid_a), (&db, &nid_b)];

    rt.block_on(async {
        let mut lines = [Lines::open(&da).await, Lines::open(&db).await];

        // The peers: the bus round trip, the schedulers' round trip, a local cold start.
        let rtt = bus_rtt(&da, &db, &nid_b, rounds).await;
        let mut dms_rtt = Vec::new();
        for _ in 0..iters.max(20) {
            let t = Instant::now();
            da.ability()
                .remote_missions(&nid_b)
                .await
                .expect("missions");
            dms_rtt.push(t.elapsed());
        }
        let want = Want::explicit(NOTES, "EntryAbility");
        let (mut cold, mut cold_wall) = (Vec::new(), Vec::new());
        // Where a local cold start's time goes: to onCreate (spawn), then to onForeground.
        let (mut cold_create, mut cold_fg) = (Vec::new(), Vec::new());
        for _ in 0..=iters {
            no_app_process(&db).await;
            let (t0, t) = (SystemTime::now(), Instant::now());
            let r = db
                .ability()
                .start_ability(want.clone(), true)
                .await
                .unwrap();
            let s = r.started.expect("waited");
            assert!(s.cold);
            cold_wall.push(t.elapsed());
            cold.push(Duration::from_micros(s.elapsed_us));
            let created = lines[1]
                .next("EntryAbility onCreate StartAbility", t0)
                .await;
            let fg = lines[1].next("EntryAbility onForeground", created).await;
            cold_create.push(since(created, t0));
            cold_fg.push(since(fg, created));
            db.ability().force_stop(NOTES).await.unwrap();
        }
        // The first start pages the binaries in: not counted.
        for v in [&mut cold, &mut cold_wall, &mut cold_create, &mut cold_fg] {
            v.remove(0);
        }

        // Remote start: from A, notes on B, to its onForeground there.
        let mut remote = Vec::new();
        let mut remote_answer = Vec::new();
        let mut remote_want = want.clone();
        remote_want.device_id = nid_b.clone();
        for _ in 0..iters {
            no_app_process(&db).await;
            let (t0, t) = (SystemTime::now(), Instant::now());
            da.ability()
                .start_ability(remote_want.clone(), true)
                .await
                .expect("remote start");
            remote_answer.push(t.elapsed());
            let fg = lines[1].next("EntryAbility onForeground", t0).await;
            remote.push(since(fg, t0));
            db.ability().force_stop(NOTES).await.unwrap();
        }

        // Continuation with a note of `note_kib` KiB, back and forth between A and B.
        no_app_process(&db).await;
        let mut note_want = want.clone();
        note_want
            .parameters
            .insert("note".into(), WantParam::String("n".repeat(note_bytes)));
        da.ability().start_ability(note_want, true).await.unwrap();
        let (mut cont, mut cont_answer) = (Vec::new(), Vec::new());
        // Where it goes: the source app's onContinue answered, the target's onCreate, its
        // onForeground.
        let (mut on_continue, mut to_create, mut to_fg) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..iters {
            let (src, dst) = (devs[i % 2], devs[(i + 1) % 2]);
            let m = entry_mission(src.0).await;
            no_app_process(dst.0).await;
            let (t0, t) = (SystemTime::now(), Instant::now());
            src.0
                .ability()
                .continue_mission(m, dst.1)
                .await
                .unwrap_or_else(|e| panic!("continuation {i} to {}: {e}", dst.1));
            cont_answer.push(t.elapsed());
            let agreed = lines[i % 2].next("EntryAbility onContinue Agree", t0).await;
            let target = &mut lines[(i + 1) % 2];
            let created = target.next("EntryAbility onCreate Continuation", t0).await;
            let fg = target.next("EntryAbility onForeground", created).await;
            cont.push(since(fg, t0));
            on_continue.push(since(agreed, t0));
            to_create.push(since(created, agreed));
            to_fg.push(since(fg, created));
            if std::env::var_os("OXH_BENCH_TRACE").is_some() {
                println!(
                    "  continuation {i} {}: onContinue {:.2}, onCreate +{:.2}, onForeground \
                     +{:.2} = {:.2} ms; answered {:.2} ms",
                    if i % 2 == 0 { "a->b" } else { "b->a" },
                    ms(on_continue[i]),
                    ms(to_create[i]),
                    ms(to_fg[i]),
                    ms(cont[i]),
                    ms(cont_answer[i])
                );
            }
        }

        let cold50 = pct(cold.clone(), 50);
        let rtt50 = pct(rtt.clone(), 50);
        println!(
            "distributed scheduler (two oxhd on loopback, {iters} runs each; \
             notes cold-started on the target)"
        );
        line(
            &format!(
                "continuation ({} B wantParam) to onForeground",
                note_bytes + 10
            ),
            &cont,
            Some(("cold start", cold50)),
        );
        line("continuation: continueMission answered", &cont_answer, None);
        line("  source app's onContinue answered", &on_continue, None);
        line("  then the target's onCreate", &to_create, None);
        line("  then its onForeground", &to_fg, None);
        line(
            "remote start to onForeground there",
            &remote,
            Some(("cold start", cold50)),
        );
        line(
            "remote start: startAbility(-W) answered",
            &remote_answer,
            None,
        );
        line("local cold start (TotalTime)", &cold, None);
        line("local cold start (aa start -W wall)", &cold_wall, None);
        line("  request to onCreate", &cold_create, None);
        line("  then onForeground", &cold_fg, None);
        let bus = Some(("bus round trip", rtt50));
        line("schedulers' round trip (remote missions)", &dms_rtt, bus);
        line(
            &format!("bus message round trip (64 B, {rounds})"),
            &rtt,
            None,
        );
        let c50 = pct(cont.clone(), 50);
        println!(
            "  continuation p50 - cold start p50 = {:.2} ms ({:.0} bus round trips); \
             goal p50 <= 50 ms: {}",
            ms(c50) - ms(cold50),
            (ms(c50) - ms(cold50)) / ms(rtt50),
            if ms(c50) <= 50.0 { "met" } else { "missed" }
        );
    });
}
