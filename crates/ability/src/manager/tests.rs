//! The manager driven by simulated app hosts in virtual time: each host answers a step after
//! its delay, or never (a hang), or dies; time jumps to the next event or deadline.

use super::*;
use std::collections::{BTreeMap, HashMap};

const MS: Duration = Duration::from_millis(1);

fn page(bundle: &str, ability: &str, launch: LaunchType) -> Target {
    Target {
        element: Element {
            bundle_name: bundle.into(),
            module_name: "entry".into(),
            ability_name: ability.into(),
        },
        kind: AbilityType::Page,
        launch_type: launch,
    }
}

fn service(bundle: &str, ability: &str) -> Target {
    Target {
        kind: AbilityType::Service,
        ..page(bundle, ability, LaunchType::Singleton)
    }
}

/// How a bundle's host behaves.
#[derive(Clone, Default)]
struct Host {
    /// Time each step takes.
    delay: Duration,
    /// A step it never finishes.
    hang_on: Option<&'static str>,
    /// It never attaches.
    no_attach: bool,
}

#[derive(Debug)]
enum Ev {
    Spawned(ProcId),
    Attached(ProcId),
    Done(ProcId, RecordId, &'static str),
    /// `onAcceptWant` returned this key.
    Accepted(ProcId, RecordId, String),
    Exited(ProcId, Option<i32>),
}

struct Sim {
    m: Manager,
    t0: Instant,
    now: Instant,
    hosts: HashMap<String, Host>,
    /// Pending events by (time, sequence).
    events: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    next_pid: u32,
    /// "Ability onStep", in the order hosts ran them.
    log: Vec<String>,
    replies: HashMap<RequestId, Result<Started, AbilityError>>,
    connected: HashMap<ConnId, Result<RecordId, AbilityError>>,
    lost: Vec<ConnId>,
    faults: Vec<Fault>,
    kills: Vec<String>,
    spawns: usize,
}

impl Sim {
    fn new() -> Self {
        let t0 = Instant::now();
        Sim {
            m: Manager::new(Timeouts::default()),
            t0,
            now: t0,
            hosts: HashMap::new(),
            events: BTreeMap::new(),
            seq: 0,
            next_pid: 1000,
            log: Vec::new(),
            replies: HashMap::new(),
            connected: HashMap::new(),
            lost: Vec::new(),
            faults: Vec::new(),
            kills: Vec::new(),
            spawns: 0,
        }
    }

    fn host(&mut self, bundle: &str, h: Host) {
        self.hosts.insert(bundle.into(), h);
    }

    fn at(&mut self, after: Duration, ev: Ev) {
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), ev);
    }

    /// Carries out the manager's actions as hosts would.
    fn drain(&mut self) {
        while let Some(a) = self.m.poll_action() {
            match a {
                Action::Spawn { proc, bundle } => {
                    self.spawns += 1;
                    let h = self.hosts.get(&bundle).cloned().unwrap_or_default();
                    self.at(MS, Ev::Spawned(proc));
                    if !h.no_attach {
                        self.at(2 * MS, Ev::Attached(proc));
                    }
                }
                Action::Schedule {
                    proc,
                    record,
                    element,
                    cmd,
                } => {
                    self.log
                        .push(format!("{} {}", element.ability_name, cmd.name()));
                    let h = self
                        .hosts
                        .get(&element.bundle_name)
                        .cloned()
                        .unwrap_or_default();
                    if h.hang_on != Some(cmd.name()) {
                        let ev = match &*cmd {
                            Command::AcceptWant { want } => {
                                let key = match want.parameters.get("doc") {
                                    Some(crate::want::WantParam::String(d)) => d.clone(),
                                    _ => String::new(),
                                };
                                Ev::Accepted(proc, record, key)
                            }
                            _ => Ev::Done(proc, record, cmd.name()),
                        };
                        self.at(h.delay, ev);
                    }
                }
                Action::Kill { proc, reason, .. } => {
                    self.kills.push(reason);
                    self.at(Duration::ZERO, Ev::Exited(proc, Some(9)));
                }
                Action::Reply { request, result } => {
                    self.replies.insert(request, result);
                }
                Action::Connected { conn, result, .. } => {
                    self.connected.insert(conn, result);
                }
                Action::ConnectionLost { conn } => self.lost.push(conn),
                Action::Fault(f) => self.faults.push(f),
            }
        }
    }

    /// Runs events and deadlines until nothing is left or `limit` of virtual time passed.
    fn run_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        for _ in 0..10_000 {
            self.drain();
            let next_ev = self.events.keys().next().map(|(t, _)| *t);
            let next = match (next_ev, self.m.deadline()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return,
                },
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            if next_ev == Some(next) {
                let key = *self.events.keys().next().expect("an event is due");
                let ev = self.events.remove(&key).expect("it is there");
                match ev {
                    Ev::Spawned(p) => {
                        self.next_pid += 1;
                        self.m.spawned(p, self.next_pid);
                    }
                    Ev::Attached(p) => self.m.attached(p, self.now),
                    Ev::Done(p, r, step) => self.m.step_done(p, r, step, self.now),
                    Ev::Accepted(p, r, key) => self.m.accepted(p, r, key, self.now),
                    Ev::Exited(p, sig) => self.m.exited(p, sig, None),
                }
            } else {
                self.m.on_timeout(self.now);
            }
        }
        panic!("the simulation did not settle in 10,000 steps");
    }

    fn settle(&mut self) {
        self.run_for(Duration::from_secs(60));
    }

    fn start(&mut self, request: RequestId, t: Target) {
        self.m.start(request, t, Want::default(), self.now);
        self.settle();
    }

    fn connect(&mut self, request: RequestId, conn: ConnId, t: Target) {
        self.m.connect(request, conn, t, Want::default(), self.now);
        self.settle();
    }

    fn disconnect(&mut self, conn: ConnId) {
        self.m.disconnect(conn, self.now);
        self.settle();
    }

    fn reply(&self, request: RequestId) -> &Result<Started, AbilityError> {
        self.replies
            .get(&request)
            .expect("the request was answered")
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }
}

#[test]
fn a_cold_start_creates_then_foregrounds_and_answers_once_in_the_foreground() {
    let mut s = Sim::new();
    s.host(
        "a",
        Host {
            delay: 3 * MS,
            ..Host::default()
        },
    );
    s.start(1, page("a", "Main", LaunchType::Singleton));
    assert_eq!(s.log, ["Main onCreate", "Main onForeground"]);
    let r = s.reply(1).clone().expect("started");
    assert!(r.cold);
    assert_eq!(r.mission, Some(1));
    // Spawn 1 ms, attach 2 ms, two steps of 3 ms each.
    assert_eq!(r.elapsed, 8 * MS);
    let missions = s.m.missions();
    assert_eq!(missions.len(), 1);
    assert_eq!(missions[0].state, State::Foreground);
    assert!(missions[0].pid.is_some());
    assert_eq!(s.m.foreground(), Some(r.record));
}

#[test]
fn a_singleton_started_again_gets_on_new_want_in_its_running_process() {
    let mut s = Sim::new();
    s.start(1, page("a", "Main", LaunchType::Singleton));
    s.start(2, page("a", "Main", LaunchType::Singleton));
    assert_eq!(
        s.log,
        ["Main onCreate", "Main onForeground", "Main onNewWant"]
    );
    let (first, second) = (s.reply(1).clone().unwrap(), s.reply(2).clone().unwrap());
    assert_eq!(first.record, second.record);
    assert!(!second.cold, "a hot start");
    assert_eq!(s.spawns, 1);
    assert_eq!(s.m.missions().len(), 1);
}

#[test]
fn a_multiton_gets_a_new_record_and_mission_for_every_start_in_one_process() {
    let mut s = Sim::new();
    s.start(1, page("a", "Doc", LaunchType::Multiton));
    s.start(2, page("a", "Doc", LaunchType::Multiton));
    let (first, second) = (s.reply(1).clone().unwrap(), s.reply(2).clone().unwrap());
    assert_ne!(first.record, second.record);
    assert_ne!(first.mission, second.mission);
    assert!(first.cold && !second.cold);
    assert_eq!(s.spawns, 1);
    // The second instance's foreground sends the first to the background.
    assert_eq!(
        s.log,
        [
            "Doc onCreate",
            "Doc onForeground",
            "Doc onCreate",
            "Doc onForeground",
            "Doc onBackground"
        ]
    );
    let states: Vec<State> = s.m.missions().iter().map(|m| m.state).collect();
    assert_eq!(states, [State::Background, State::Foreground]);
}

#[test]
fn one_mission_is_in_the_foreground_the_previous_goes_to_the_background_after() {
    let mut s = Sim::new();
    s.start(1, page("a", "A", LaunchType::Singleton));
    s.start(2, page("b", "B", LaunchType::Singleton));
    assert_eq!(
        s.log,
        [
            "A onCreate",
            "A onForeground",
            "B onCreate",
            "B onForeground",
            "A onBackground"
        ]
    );
    assert_eq!(s.m.foreground(), Some(s.reply(2).clone().unwrap().record));
    // Back to A: hot, A foreground, B background; A's mission is now the most recent.
    s.log.clear();
    s.start(3, page("a", "A", LaunchType::Singleton));
    assert_eq!(s.log, ["A onNewWant", "A onForeground", "B onBackground"]);
    let names: Vec<String> =
        s.m.missions()
            .into_iter()
            .map(|m| m.element.ability_name)
            .collect();
    assert_eq!(names, ["B", "A"]);
}

#[test]
fn an_app_that_misses_the_foreground_deadline_is_killed_and_the_caller_told() {
    let mut s = Sim::new();
    s.host(
        "a",
        Host {
            hang_on: Some("onForeground"),
            ..Host::default()
        },
    );
    s.start(1, page("a", "Main", LaunchType::Singleton));
    let err = s.reply(1).clone().expect_err("the start failed");
    assert_eq!(err.code(), crate::error::code::INTERNAL);
    assert!(
        err.to_string()
            .contains("did not finish onForeground within 5000 ms"),
        "{err}"
    );
    // Killed 5 s after onForeground was sent (the host attached at 2 ms; onCreate took 0).
    assert_eq!(s.elapsed(), Duration::from_secs(5) + 2 * MS);
    assert_eq!(s.kills.len(), 1);
    assert!(s.faults.is_empty(), "a kill we ordered is not a crash");
    assert!(s.m.missions().is_empty());
    assert_eq!(s.m.foreground(), None);
    assert_eq!(s.m.deadline(), None);
}

#[test]
fn a_host_that_never_attaches_is_killed_at_the_load_deadline() {
    let mut s = Sim::new();
    s.host(
        "a",
        Host {
            no_attach: true,
            ..Host::default()
        },
    );
    s.start(1, page("a", "Main", LaunchType::Singleton));
    let err = s.reply(1).clone().expect_err("the start failed");
    assert!(
        err.to_string().contains("did not attach within 10000 ms"),
        "{err}"
    );
    assert_eq!(s.elapsed(), Duration::from_secs(10));
    assert!(s.log.is_empty());
}

#[test]
fn a_crash_is_reaped_with_a_fault_record_and_its_missions_end() {
    let mut s = Sim::new();
    s.start(1, page("a", "Main", LaunchType::Singleton));
    let proc =
        s.m.proc_of_record(s.reply(1).clone().unwrap().record)
            .unwrap();
    let pid = s.m.missions()[0].pid.unwrap();
    s.m.exited(proc, Some(11), None);
    s.drain();
    assert_eq!(
        s.faults,
        [Fault {
            bundle: "a".into(),
            pid,
            signal: Some(11),
            status: None,
            abilities: vec![page("a", "Main", LaunchType::Singleton).element],
        }]
    );
    assert!(s.m.missions().is_empty());
    assert_eq!(s.m.foreground(), None);
    assert!(
        s.kills.is_empty(),
        "nothing is restarted or killed after a crash"
    );
    // A new start is cold again.
    s.start(2, page("a", "Main", LaunchType::Singleton));
    assert!(s.reply(2).as_ref().unwrap().cold);
}

#[test]
fn force_stop_kills_without_callbacks_or_fault() {
    let mut s = Sim::new();
    s.start(1, page("a", "Main", LaunchType::Singleton));
    s.log.clear();
    assert!(s.m.force_stop("a"));
    s.settle();
    assert!(s.log.is_empty());
    assert_eq!(s.kills.len(), 1);
    assert!(s.faults.is_empty());
    assert!(s.m.missions().is_empty());
    assert!(!s.m.force_stop("a"), "nothing left to stop");
    assert!(!s.m.force_stop("nobody"));
}

#[test]
fn terminate_self_backgrounds_then_destroys_and_ends_the_process() {
    let mut s = Sim::new();
    s.start(1, page("a", "Main", LaunchType::Singleton));
    let rec = s.reply(1).clone().unwrap().record;
    s.log.clear();
    s.m.terminate(rec, s.now).unwrap();
    s.settle();
    assert_eq!(s.log, ["Main onBackground", "Main onDestroy"]);
    assert!(s.m.missions().is_empty());
    assert_eq!(s.kills, ["its last ability ended"]);
    assert!(s.faults.is_empty());
    assert_eq!(
        s.m.terminate(rec, s.now).unwrap_err().code(),
        crate::error::code::CONTEXT_NOT_EXIST
    );
}

#[test]
fn a_connected_service_binds_once_and_unbinds_when_its_last_client_goes() {
    let mut s = Sim::new();
    s.connect(10, 1, service("svc", "Counter"));
    s.connect(11, 2, service("svc", "Counter"));
    assert_eq!(
        s.log,
        ["Counter onCreate", "Counter onConnect"],
        "the second client shares the remote object of the first onConnect"
    );
    let rec = s.connected[&1].clone().unwrap();
    assert_eq!(s.connected[&2].clone().unwrap(), rec);
    assert_eq!(s.m.records()[0].connections, 2);
    assert!(s.m.missions().is_empty(), "services have no mission");
    s.disconnect(1);
    assert_eq!(s.log.len(), 2, "one client left: no callback");
    assert_eq!(s.m.records().len(), 1, "still one client");
    s.disconnect(2);
    assert_eq!(&s.log[2..], ["Counter onDisconnect", "Counter onDestroy"]);
    assert!(s.m.records().is_empty());
    assert_eq!(s.kills, ["its last ability ended"]);
    assert!(s.lost.is_empty(), "the clients left: none was lost");
}

#[test]
fn clients_that_come_while_on_connect_runs_wait_for_it_and_one_that_leaves_is_not_served() {
    let mut s = Sim::new();
    s.host(
        "svc",
        Host {
            delay: 100 * MS,
            ..Host::default()
        },
    );
    let t = service("svc", "Counter");
    s.m.connect(1, 1, t.clone(), Want::default(), s.now);
    s.run_for(150 * MS);
    assert_eq!(s.log, ["Counter onCreate", "Counter onConnect"]);
    s.m.connect(2, 2, t.clone(), Want::default(), s.now);
    s.m.connect(3, 3, t.clone(), Want::default(), s.now);
    s.m.disconnect(3, s.now);
    s.settle();
    assert_eq!(s.log, ["Counter onCreate", "Counter onConnect"]);
    assert!(s.connected[&1].is_ok() && s.connected[&2].is_ok());
    assert!(
        !s.connected.contains_key(&3),
        "it left before it was answered"
    );
    assert_eq!(s.m.records()[0].connections, 2);

    // All leave while a new onConnect runs (after an unbind): it is undone at once.
    s.disconnect(1);
    s.disconnect(2);
    assert_eq!(s.log.last().unwrap(), "Counter onDestroy");
    s.m.connect(4, 4, t.clone(), Want::default(), s.now);
    s.run_for(150 * MS);
    s.m.disconnect(4, s.now);
    s.settle();
    let tail: Vec<&str> = s.log[4..].iter().map(|l| l.as_str()).collect();
    assert_eq!(
        tail,
        [
            "Counter onCreate",
            "Counter onConnect",
            "Counter onDisconnect",
            "Counter onDestroy"
        ]
    );
    assert!(s.m.records().is_empty());
}

#[test]
fn connections_to_one_service_are_bounded() {
    let mut s = Sim::new();
    let t = service("svc", "Counter");
    for c in 0..crate::manager::MAX_CONNECTIONS_PER_SERVICE as u64 {
        s.m.connect(c, c, t.clone(), Want::default(), s.now);
    }
    s.settle();
    let over = crate::manager::MAX_CONNECTIONS_PER_SERVICE as u64;
    s.connect(over, over, t);
    assert_eq!(
        s.connected[&over].clone().unwrap_err().code(),
        crate::error::code::BUSY
    );
    assert_eq!(
        s.m.records()[0].connections,
        crate::manager::MAX_CONNECTIONS_PER_SERVICE
    );
    assert_eq!(s.log, ["Counter onCreate", "Counter onConnect"]);
}

#[test]
fn a_started_service_outlives_its_connections_until_stopped() {
    let mut s = Sim::new();
    let t = service("svc", "Counter");
    s.start(1, t.clone());
    s.start(2, t.clone());
    assert_eq!(
        s.log,
        ["Counter onCreate", "Counter onRequest", "Counter onRequest"]
    );
    assert!(s.reply(1).as_ref().unwrap().cold && !s.reply(2).as_ref().unwrap().cold);
    s.connect(3, 7, t.clone());
    s.disconnect(7);
    assert_eq!(s.m.records().len(), 1, "started: it stays");
    s.m.stop_service(&t.element, s.now).unwrap();
    s.settle();
    assert_eq!(s.log.last().unwrap(), "Counter onDestroy");
    assert!(s.m.records().is_empty());
    assert_eq!(
        s.m.stop_service(&t.element, s.now).unwrap_err().code(),
        crate::error::code::NO_SUCH_ABILITY
    );
}

#[test]
fn a_service_that_dies_tells_its_clients() {
    let mut s = Sim::new();
    s.connect(10, 1, service("svc", "Counter"));
    let proc =
        s.m.proc_of_record(s.connected[&1].clone().unwrap())
            .unwrap();
    s.m.exited(proc, Some(6), None);
    s.drain();
    assert_eq!(s.lost, [1]);
    assert_eq!(s.faults.len(), 1);
}

#[test]
fn connecting_to_a_ui_ability_is_the_wrong_type() {
    let mut s = Sim::new();
    s.m.connect(
        1,
        5,
        page("a", "Main", LaunchType::Singleton),
        Want::default(),
        s.now,
    );
    s.drain();
    let err = s.connected[&5].clone().unwrap_err();
    assert_eq!(err.code(), crate::error::code::INCORRECT_ABILITY_TYPE);
    assert_eq!(s.spawns, 0);
}

#[test]
fn reports_of_steps_not_in_flight_or_from_another_process_are_ignored() {
    let mut s = Sim::new();
    s.host(
        "a",
        Host {
            hang_on: Some("onForeground"),
            ..Host::default()
        },
    );
    s.m.start(
        1,
        page("a", "Main", LaunchType::Singleton),
        Want::default(),
        s.now,
    );
    s.run_for(100 * MS);
    let rec = s.m.records()[0].id;
    let proc = s.m.proc_of_record(rec).unwrap();
    // A forged "done" from another process, and a stale one for the wrong step.
    s.m.step_done(proc + 100, rec, "onForeground", s.now);
    s.m.step_done(proc, rec, "onBackground", s.now);
    s.m.step_done(proc, rec + 100, "onForeground", s.now);
    s.drain();
    assert_eq!(s.m.records()[0].state, State::Foregrounding);
    assert!(!s.replies.contains_key(&1));
    // The real one completes it.
    s.m.step_done(proc, rec, "onForeground", s.now);
    s.drain();
    assert!(s.reply(1).is_ok());
}

#[test]
fn what_one_caller_can_make_the_manager_hold_is_bounded() {
    let mut s = Sim::new();
    // A host that never finishes onForeground: starts pile up behind it.
    s.host(
        "a",
        Host {
            hang_on: Some("onForeground"),
            ..Host::default()
        },
    );
    s.m.start(
        1,
        page("a", "Main", LaunchType::Singleton),
        Want::default(),
        s.now,
    );
    s.run_for(10 * MS);
    // Each start again queues onNewWant and onForeground.
    let mut accepted = 0;
    for r in 100..200 {
        s.m.start(
            r,
            page("a", "Main", LaunchType::Singleton),
            Want::default(),
            s.now,
        );
        s.drain();
        if let Some(res) = s.replies.get(&r) {
            assert_eq!(res.clone().unwrap_err().code(), crate::error::code::BUSY);
            break;
        }
        accepted += 1;
    }
    assert_eq!(accepted, MAX_QUEUED_STEPS / 2);

    // Multiton instances up to MAX_RECORDS, then an internal error; nothing more is spawned.
    let mut s = Sim::new();
    for r in 0..MAX_RECORDS as u64 {
        s.m.start(
            r,
            page("b", "Doc", LaunchType::Multiton),
            Want::default(),
            s.now,
        );
    }
    s.m.start(
        9_999,
        page("b", "Doc", LaunchType::Multiton),
        Want::default(),
        s.now,
    );
    s.drain();
    let e = s.reply(9_999).clone().unwrap_err();
    assert_eq!(e.code(), crate::error::code::INTERNAL);
    assert!(
        e.to_string().contains("too many ability instances: 512"),
        "{e}"
    );
    assert_eq!(s.m.records().len(), MAX_RECORDS);
}

fn doc_want(doc: &str) -> Want {
    let mut w = Want::default();
    w.parameters
        .insert("doc".into(), crate::want::WantParam::String(doc.into()));
    w
}

#[test]
fn a_specified_ability_gets_one_instance_per_key_its_app_names() {
    let mut s = Sim::new();
    let t = page("a", "Doc", LaunchType::Specified);
    for (request, doc) in [(1, "x"), (2, "y"), (3, "x")] {
        s.m.start(request, t.clone(), doc_want(doc), s.now);
        s.settle();
    }
    assert_eq!(
        s.log,
        [
            "Doc onAcceptWant",
            "Doc onCreate",
            "Doc onForeground",
            "Doc onAcceptWant",
            "Doc onCreate",
            "Doc onForeground",
            "Doc onBackground",
            "Doc onAcceptWant",
            "Doc onNewWant",
            "Doc onForeground",
            "Doc onBackground",
        ],
        "x, then y (x to the background), then x again: onNewWant on the first instance"
    );
    let recs = s.m.records();
    assert_eq!(recs.len(), 2, "two keys, two instances");
    assert_eq!(
        s.m.missions().len(),
        2,
        "the provisional record left no mission"
    );
    let first = s.reply(1).as_ref().unwrap().record;
    let again = s.reply(3).as_ref().unwrap();
    assert_eq!(again.record, first, "the same key reached the same record");
    assert!(!again.cold);
    assert_ne!(s.reply(2).as_ref().unwrap().record, first);
    assert_eq!(s.m.foreground(), Some(first));
    assert_eq!(s.spawns, 1, "one process for the bundle");
}

#[test]
fn an_app_that_never_answers_on_accept_want_is_killed_at_the_deadline() {
    let mut s = Sim::new();
    s.host(
        "a",
        Host {
            hang_on: Some("onAcceptWant"),
            ..Host::default()
        },
    );
    s.m.start(
        1,
        page("a", "Doc", LaunchType::Specified),
        doc_want("x"),
        s.now,
    );
    s.settle();
    assert_eq!(
        s.reply(1).clone().unwrap_err().code(),
        crate::error::code::INTERNAL
    );
    assert_eq!(s.kills.len(), 1, "{:?}", s.kills);
    assert!(s.m.records().is_empty());
}

#[test]
fn a_frozen_mission_runs_on_continue_only_until_it_resumes() {
    let mut s = Sim::new();
    s.start(1, page("a", "Main", LaunchType::Singleton));
    let m = s.reply(1).clone().unwrap().mission.unwrap();
    let frozen = |s: &Sim| {
        s.m.records()
            .iter()
            .any(|r| r.mission == Some(m) && r.frozen)
    };
    assert!(!frozen(&s));
    assert!(s.m.freeze(m));
    assert!(frozen(&s), "dumps show it continuing");
    // A start while frozen waits; onContinue runs.
    s.start(2, page("a", "Main", LaunchType::Singleton));
    let now = s.now;
    assert!(s.m.call_on_continue(m, now).is_some());
    s.settle();
    assert_eq!(
        s.log,
        ["Main onCreate", "Main onForeground", "Main onContinue"]
    );
    assert!(
        !s.replies.contains_key(&2),
        "the start waits for the resume"
    );
    let now = s.now;
    s.m.resume(m, now);
    assert!(!frozen(&s));
    s.settle();
    assert!(
        s.log.ends_with(&["Main onNewWant".to_string()]),
        "{:?}",
        s.log
    );
    assert!(s.reply(2).is_ok());
}

#[test]
fn a_frozen_mission_that_moved_ends() {
    let mut s = Sim::new();
    s.start(1, page("a", "Main", LaunchType::Singleton));
    let m = s.reply(1).clone().unwrap().mission.unwrap();
    s.m.freeze(m);
    let now = s.now;
    s.m.end_mission(m, now);
    s.settle();
    assert!(s.log.ends_with(&[
        "Main onBackground".to_string(),
        "Main onDestroy".to_string()
    ]));
    assert!(s.m.missions().is_empty());
}

#[test]
fn a_pending_start_answers_after_on_create_and_shows_on_commit() {
    let mut s = Sim::new();
    let now = s.now;
    s.m.start_pending(
        1,
        page("a", "Main", LaunchType::Singleton),
        Want::default(),
        LaunchReason::Continuation,
        now,
    );
    s.settle();
    assert_eq!(s.log, ["Main onCreate"]);
    let r = s.reply(1).clone().expect("created");
    assert_eq!(s.m.missions()[0].state, State::Inactive);
    // A singleton that runs already is refused: the continuation needs a fresh instance.
    let now = s.now;
    s.m.start_pending(
        2,
        page("a", "Main", LaunchType::Singleton),
        Want::default(),
        LaunchReason::Continuation,
        now,
    );
    s.settle();
    assert!(s.reply(2).is_err());
    let now = s.now;
    s.m.show(r.record, now);
    s.settle();
    assert_eq!(s.log, ["Main onCreate", "Main onForeground"]);
    assert_eq!(s.m.foreground(), Some(r.record));
}
