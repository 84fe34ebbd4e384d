//! Two drivers in one process, over a bus that can be cut, with hosts that play the ability
//! manager: tokio's paused clock drives the cores' timers.

use super::*;
use crate::continuation::{Refusal, code};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex as StdMutex, Weak};

const A: &str = "udid-a";
const B: &str = "udid-b";
const NOTES: &str = "com.example.notes";

/// What one host saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    S(SourceAction),
    T(TargetAction),
}

/// The ability manager of a test device: one continuable mission (7) of notes signed
/// `app_id`; onContinue answers `answer`; the target side has notes installed signed
/// `installed_app_id`.
struct Host {
    me: OnceLock<Weak<Continuation>>,
    answer: OnContinueResult,
    app_id: &'static str,
    installed_app_id: &'static str,
    seen: StdMutex<Vec<Seen>>,
}

impl Host {
    fn new(answer: OnContinueResult, app_id: &'static str, installed: &'static str) -> Arc<Self> {
        Arc::new(Host {
            me: OnceLock::new(),
            answer,
            app_id,
            installed_app_id: installed,
            seen: StdMutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn driver(&self) -> Option<Arc<Continuation>> {
        self.me.get().and_then(Weak::upgrade)
    }
}

impl ContinuationHost for Host {
    fn mission(&self, m: &MissionRef) -> Option<MissionInfo> {
        (m == &MissionRef::Id(7)).then(|| MissionInfo {
            mission_id: 7,
            bundle: NOTES.into(),
            app_id: self.app_id.into(),
            ability: "EntryAbility".into(),
            continuable: true,
            continue_bundle_names: vec![],
        })
    }

    fn source_action(&self, a: SourceAction) {
        self.seen.lock().unwrap().push(Seen::S(a.clone()));
        if let SourceAction::CallOnContinue { seq, .. } = a {
            let d = self.driver();
            let answer = self.answer;
            tokio::spawn(async move {
                if let Some(d) = d {
                    d.on_continue(seq, answer, b"note: hello".to_vec(), true);
                }
            });
        }
    }

    fn target_action(&self, a: TargetAction) {
        self.seen.lock().unwrap().push(Seen::T(a.clone()));
        if let TargetAction::StartPending { txn, app_id, .. } = a {
            let d = self.driver();
            let ok = app_id == self.installed_app_id;
            tokio::spawn(async move {
                if let Some(d) = d {
                    if ok {
                        d.started(txn);
                    } else {
                        d.start_failed(
                            txn,
                            StartFailure::NotInstalled {
                                free_install_supported: false,
                            },
                        );
                    }
                }
            });
        }
    }
}

/// A bus between the two drivers; `cut` drops every message (both ways), `drop_committed`
/// only the target's `Committed` answers.
#[derive(Default)]
struct Net {
    drivers: StdMutex<HashMap<String, Weak<Continuation>>>,
    cut: AtomicBool,
    drop_committed: AtomicBool,
    delivered: StdMutex<Vec<(String, Message)>>,
}

struct Port {
    from: String,
    net: Arc<Net>,
}

#[async_trait::async_trait]
impl MessageBus for Port {
    async fn send(&self, to: &str, msg: Message) -> Result<(), String> {
        let net = &self.net;
        if net.cut.load(Ordering::SeqCst)
            || (net.drop_committed.load(Ordering::SeqCst)
                && matches!(msg, Message::Committed { .. }))
        {
            return Err("the link is down".into());
        }
        let d = net.drivers.lock().unwrap().get(to).and_then(Weak::upgrade);
        let d = d.ok_or_else(|| format!("{to} is not there"))?;
        net.delivered
            .lock()
            .unwrap()
            .push((self.from.clone(), msg.clone()));
        d.on_message(&self.from, msg);
        Ok(())
    }
}

fn open(net: &Arc<Net>, local: &str, dir: &Path, host: &Arc<Host>) -> Arc<Continuation> {
    let port = Arc::new(Port {
        from: local.into(),
        net: net.clone(),
    });
    let d = Continuation::open(local, dir, host.clone(), port).unwrap();
    let _ = host.me.set(Arc::downgrade(&d));
    net.drivers
        .lock()
        .unwrap()
        .insert(local.into(), Arc::downgrade(&d));
    d
}

struct World {
    net: Arc<Net>,
    a: Arc<Continuation>,
    b: Arc<Continuation>,
    ha: Arc<Host>,
    hb: Arc<Host>,
    dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn world(answer: OnContinueResult, installed_on_b: &'static str) -> World {
    let net = Arc::new(Net::default());
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ha = Host::new(answer, "notes_sig", "notes_sig");
    let hb = Host::new(answer, "notes_sig", installed_on_b);
    let a = open(&net, A, dirs.0.path(), &ha);
    let b = open(&net, B, dirs.1.path(), &hb);
    // Opening destroys any continuation instance left from before (none here), then the
    // hosts start with a clean record.
    for h in [&ha, &hb] {
        assert_eq!(
            h.seen(),
            [Seen::T(TargetAction::DiscardPendingExcept { keep: vec![] })]
        );
        h.seen.lock().unwrap().clear();
    }
    World {
        net,
        a,
        b,
        ha,
        hb,
        dirs,
    }
}

fn resumed(h: &Host) -> bool {
    h.seen()
        .iter()
        .any(|s| matches!(s, Seen::S(SourceAction::Resume { mission_id: 7 })))
}

fn ended(h: &Host) -> bool {
    h.seen()
        .iter()
        .any(|s| matches!(s, Seen::S(SourceAction::EndMission { mission_id: 7 })))
}

fn shown(h: &Host) -> bool {
    h.seen()
        .iter()
        .any(|s| matches!(s, Seen::T(TargetAction::MakeForeground { .. })))
}

#[tokio::test(start_paused = true)]
async fn agree_moves_the_mission_with_its_state_and_journals_are_private() {
    let w = world(OnContinueResult::Agree, "notes_sig");
    w.a.continue_mission(B, MissionRef::Id(7), false)
        .await
        .expect("continued");
    let sa = w.ha.seen();
    assert_eq!(sa[0], Seen::S(SourceAction::Freeze { mission_id: 7 }));
    assert!(matches!(
        sa[1],
        Seen::S(SourceAction::CallOnContinue { .. })
    ));
    assert!(ended(&w.ha) && !resumed(&w.ha), "{sa:?}");
    let sb = w.hb.seen();
    let start = sb
        .iter()
        .find_map(|s| match s {
            Seen::T(TargetAction::StartPending {
                want_param,
                launch_reason,
                bundle,
                ..
            }) => Some((want_param.clone(), *launch_reason, bundle.clone())),
            _ => None,
        })
        .expect("a pending start on B");
    assert_eq!(start, (b"note: hello".to_vec(), 3, NOTES.to_string()));
    assert!(shown(&w.hb), "{sb:?}");
    assert!(!w.a.busy());
    // Journals: 0600, and what they say survives a reopen (the next txn number).
    use std::os::unix::fs::PermissionsExt;
    for p in [
        w.dirs.0.path().join(SOURCE_JOURNAL),
        w.dirs.1.path().join(TARGET_JOURNAL),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    let j: SourceJournal =
        serde_json::from_slice(&std::fs::read(w.dirs.0.path().join(SOURCE_JOURNAL)).unwrap())
            .unwrap();
    assert_eq!(j.next_seq, 1);
}

#[tokio::test(start_paused = true)]
async fn reject_and_mismatch_answer_16300501_and_the_source_resumes() {
    for answer in [OnContinueResult::Reject, OnContinueResult::Mismatch] {
        let w = world(answer, "notes_sig");
        let e =
            w.a.continue_mission(B, MissionRef::Id(7), false)
                .await
                .unwrap_err();
        assert_eq!(e.code(), code::CONTINUE_ABNORMAL, "{e}");
        assert!(resumed(&w.ha) && !ended(&w.ha));
        assert!(w.hb.seen().is_empty(), "the target heard nothing");
    }
}

#[tokio::test(start_paused = true)]
async fn a_target_signed_by_another_signer_is_refused_and_the_source_resumes() {
    let w = world(OnContinueResult::Agree, "someone_else");
    let e =
        w.a.continue_mission(B, MissionRef::Id(7), false)
            .await
            .unwrap_err();
    assert_eq!(e.code(), code::CONTINUE_NOT_INSTALLED, "{e}");
    assert!(resumed(&w.ha) && !ended(&w.ha));
    assert!(!shown(&w.hb));
    assert!(
        w.net
            .delivered
            .lock()
            .unwrap()
            .iter()
            .any(|(_, m)| matches!(
                m,
                Message::Refused {
                    why: Refusal::NotInstalled { .. },
                    ..
                }
            ))
    );
}

#[tokio::test(start_paused = true)]
async fn no_mission_and_an_unreachable_target_fail_quickly_and_leave_it_running() {
    let w = world(OnContinueResult::Agree, "notes_sig");
    let e =
        w.a.continue_mission(B, MissionRef::Id(8), false)
            .await
            .unwrap_err();
    assert_eq!(e.code(), code::CONTINUE_NO_MISSION);
    w.net.cut.store(true, Ordering::SeqCst);
    let e =
        w.a.continue_mission(B, MissionRef::Id(7), false)
            .await
            .unwrap_err();
    assert_eq!(e.code(), code::CONTINUE_CONNECT_FAILED, "{e}");
    assert!(resumed(&w.ha) && !ended(&w.ha));
    assert!(!shown(&w.hb));
}

#[tokio::test(start_paused = true)]
async fn a_link_cut_after_the_commit_keeps_exactly_one_copy() {
    let w = world(OnContinueResult::Agree, "notes_sig");
    // The target commits, but its answers never come back while the link is cut.
    w.net.drop_committed.store(true, Ordering::SeqCst);
    let a = w.a.clone();
    let answer = tokio::spawn(async move { a.continue_mission(B, MissionRef::Id(7), false).await });
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    assert!(shown(&w.hb), "B owns it");
    assert!(
        !resumed(&w.ha) && !ended(&w.ha),
        "A stays frozen, not running: {:?}",
        w.ha.seen()
    );
    assert!(!answer.is_finished());
    // The devices meet again: A's repeated Commit is answered, and A ends its mission.
    w.net.drop_committed.store(false, Ordering::SeqCst);
    w.a.link(B, true);
    let r = tokio::time::timeout(std::time::Duration::from_secs(30), answer)
        .await
        .expect("answered once the link is back")
        .unwrap();
    assert_eq!(r, Ok(()));
    assert!(ended(&w.ha) && !resumed(&w.ha));
    drop(w.b);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_journal_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SOURCE_JOURNAL), b"{not json").unwrap();
    let host = Host::new(OnContinueResult::Agree, "x", "x");
    let port = Arc::new(Port {
        from: A.into(),
        net: Arc::new(Net::default()),
    });
    let e = Continuation::open(A, dir.path(), host, port)
        .err()
        .expect("refused");
    assert!(matches!(e, JournalError::Corrupt { .. }), "{e}");
}
