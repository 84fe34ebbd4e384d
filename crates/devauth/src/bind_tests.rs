//! Deterministic simulations of the binding protocol: two (or three) state machines, an
//! in-memory link and injected time and randomness.

use super::*;
use crate::pin::PinManager;
use proptest::prelude::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn dev(seed: u8, name: &str) -> LocalDevice {
    LocalDevice::new(
        SigningKey::from_bytes(&[seed; 32]),
        advert_key_of(seed),
        name,
        "pc",
        0x0C,
    )
}

/// The advert key of test device `seed`.
fn advert_key_of(seed: u8) -> AdvertKey {
    AdvertKey([seed.wrapping_add(100); 32])
}

fn pk(d: &LocalDevice) -> [u8; 32] {
    d.public_key()
}

/// A manager whose random source yields `pins` in order.
fn pins_yielding(pins: &[u32]) -> PinManager {
    let mut left = std::collections::VecDeque::from(pins.to_vec());
    PinManager::with_random(move |b| {
        b.copy_from_slice(&left.pop_front().ok_or("no more PINs")?.to_le_bytes());
        Ok(())
    })
}

fn pin(s: &str) -> Pin {
    s.parse().unwrap()
}

fn outcome(step: &Step) -> Option<Result<BoundPeer, BindError>> {
    match &step.progress {
        Progress::Continue => None,
        Progress::Bound(p) => Some(Ok(p.clone())),
        Progress::Failed(e) => Some(Err(e.clone())),
    }
}

struct Run {
    a: Option<Result<BoundPeer, BindError>>,
    b: Option<Result<BoundPeer, BindError>>,
    /// Every frame, in order, with its direction: true = initiator → target.
    frames: Vec<(bool, Vec<u8>)>,
}

/// Delivers frames between an initiator and a target until neither has anything to send.
fn drive(
    a: &mut Initiator,
    start: Vec<u8>,
    b: &mut Target,
    pins: &mut PinManager,
    now: Duration,
) -> Run {
    let mut run = Run {
        a: None,
        b: None,
        frames: vec![(true, start.clone())],
    };
    let mut to_b = Some(start);
    while let Some(f) = to_b.take() {
        if run.b.is_some() {
            break;
        }
        let sb = b.handle(&f, now, pins);
        run.b = outcome(&sb);
        let Some(to_a) = sb.send else { break };
        run.frames.push((false, to_a.clone()));
        if run.a.is_some() {
            break;
        }
        let sa = a.handle(&to_a, now);
        run.a = outcome(&sa);
        if let Some(f) = sa.send {
            run.frames.push((true, f.clone()));
            to_b = Some(f);
        }
    }
    run
}

fn chan(exporter: u8, peer: &LocalDevice) -> Channel {
    Channel {
        exporter: [exporter; 32],
        peer_key: pk(peer),
    }
}

/// Device B's PINs, yielding `pins` in order, the first issued at 0 s.
fn issued_at_0(pins: &[u32]) -> PinManager {
    let mut m = pins_yielding(pins);
    m.issue(secs(0)).unwrap();
    m
}

/// A's initiator (typing 123456) and B's target at `now`, over the channels each sees, with
/// the seeds `bind_once(.., 1)` uses; and A's `Start`.
fn machines(
    a: &LocalDevice,
    a_chan: Channel,
    b: &LocalDevice,
    b_chan: Channel,
    now: Duration,
) -> (Initiator, Vec<u8>, Target) {
    let (ia, start) = Initiator::start_seeded(a.clone(), a_chan, pin("123456"), now, [1; 32]);
    let tb = Target::new_seeded(b.clone(), b_chan, now, [2; 32]);
    (ia, start, tb)
}

/// A binding up to A's Confirm: B issued the PIN `target_pin` (A types 123456), B answered
/// A's Start; both state machines, B's PINs and the Confirm, for tests that tamper with it.
fn up_to_confirm(
    a: &LocalDevice,
    b: &LocalDevice,
    target_pin: u32,
) -> (Initiator, Target, PinManager, Confirm) {
    let mut pins = issued_at_0(&[target_pin]);
    let (mut ia, start, mut tb) = machines(a, chan(7, b), b, chan(7, a), secs(1));
    let ch = tb.handle(&start, secs(1), &mut pins).send.unwrap();
    let confirm = ia.handle(&ch, secs(1)).send.unwrap();
    let BindMsg::Confirm(c) = decode_bind_msg(&confirm).unwrap() else {
        panic!("not a Confirm")
    };
    (ia, tb, pins, c)
}

/// One binding between A and B over one TLS session (exporter `e`), A typing `typed`.
fn bind_once(
    a: &LocalDevice,
    b: &LocalDevice,
    typed: &str,
    pins: &mut PinManager,
    now: Duration,
    e: u8,
    seed: u8,
) -> Run {
    let (mut ia, start) =
        Initiator::start_seeded(a.clone(), chan(e, b), pin(typed), now, [seed; 32]);
    let mut tb = Target::new_seeded(b.clone(), chan(e, a), now, [seed.wrapping_add(1); 32]);
    drive(&mut ia, start, &mut tb, pins, now)
}

#[test]
fn happy_path_both_sides_learn_each_others_key() {
    let (a, b) = (dev(1, "laptop"), dev(2, "tv"));
    let mut pins = pins_yielding(&[123_456]);
    assert_eq!(pins.issue(secs(0)).unwrap().to_string(), "123456");
    let run = bind_once(&a, &b, "123456", &mut pins, secs(5), 7, 1);
    let got_a = run.a.unwrap().unwrap();
    let got_b = run.b.unwrap().unwrap();
    assert_eq!(got_a.public_key, pk(&b));
    assert_eq!(&got_a.record, b.record());
    assert_eq!(got_b.public_key, pk(&a));
    assert_eq!(&got_b.record, a.record());
    assert_eq!(got_b.record.udid, udid_of(&pk(&a)));
    assert_eq!(run.frames.len(), 4);
    let kinds: Vec<_> = run
        .frames
        .iter()
        .map(|(_, f)| decode_bind_msg(f).unwrap().kind())
        .collect();
    assert_eq!(kinds, ["Start", "Challenge", "Confirm", "Accept"]);
    assert!(run.frames.iter().all(|(_, f)| f[0] == BIND_VERSION));
    // One-time PIN: used up.
    assert_eq!(pins.begin_attempt(secs(6)), Err(BindError::Expired));
    assert_eq!(pins.failures(), 0);
    let t = got_b.to_trusted(1_700_000_000);
    assert_eq!(t.udid, a.record().udid);
    t.validate().unwrap();
}

#[test]
fn both_sides_store_each_others_advert_key_which_never_travels_in_clear() {
    let (a, b) = (dev(1, "laptop"), dev(2, "tv"));
    let mut pins = issued_at_0(&[123_456]);
    let run = bind_once(&a, &b, "123456", &mut pins, secs(5), 7, 1);
    let got_a = run.a.unwrap().unwrap();
    let got_b = run.b.unwrap().unwrap();
    assert_eq!(got_a.advert_key, advert_key_of(2), "A learned B's key");
    assert_eq!(got_b.advert_key, advert_key_of(1), "B learned A's key");
    assert_eq!(got_a.to_trusted(1).advert_key, Some(advert_key_of(2)));
    assert_eq!(got_b.to_trusted(1).advert_key, Some(advert_key_of(1)));
    for (_, f) in &run.frames {
        for k in [advert_key_of(1), advert_key_of(2)] {
            assert!(!f.windows(32).any(|w| w == k.0), "an advert key in clear");
        }
    }
}

#[test]
fn a_target_without_the_pin_cannot_unseal_the_initiators_advert_key() {
    // The target guesses a PIN; the initiator's Confirm (sent before it can tell) carries its
    // sealed key, and the pad the wrong guess derives does not open it.
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let (_ia, tb, _pins, c) = up_to_confirm(&a, &b, 111_111);
    assert_ne!(c.advert_key, advert_key_of(1).0);
    let TState::AwaitConfirm { keys, .. } = &tb.state else {
        panic!("target not waiting for Confirm")
    };
    assert_ne!(xor_pad(&c.advert_key, &keys.pad_i), advert_key_of(1).0);
    // And a sealed key altered in flight fails the confirmation.
    let (_ia, mut tb, mut pins, mut c) = up_to_confirm(&a, &b, 123_456);
    c.advert_key[0] ^= 1;
    let s = tb.handle(&BindMsg::Confirm(c).encode(), secs(1), &mut pins);
    assert_eq!(s.error(), Some(&BindError::WrongPin));
}

#[test]
fn from_identity_uses_the_device_key_and_config() {
    let d = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(d.path(), Some("kitchen"), Some(crate::DeviceType::Tv))
        .unwrap();
    let l = LocalDevice::from_identity(&id);
    assert_eq!(l.record().udid, id.udid());
    assert_eq!(l.record().device_type, "tv");
    assert_eq!(l.record().device_type_id, 0x9C);
    assert_eq!(pk(&l), id.public_key());
    assert_eq!(l.advert_key, id.advert_key());
}

#[test]
fn wrong_pin_fails_both_sides_and_counts_one_failure() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456]);
    let run = bind_once(&a, &b, "123457", &mut pins, secs(1), 7, 1);
    assert_eq!(run.a, Some(Err(BindError::WrongPin)));
    assert_eq!(run.b, Some(Err(BindError::WrongPin)));
    assert_eq!(BindError::WrongPin.to_string(), "wrong PIN");
    assert_eq!(BindError::WrongPin.code(), 11_600_101);
    assert_eq!(BindError::WrongPin.reason(), 96_929_779);
    assert_eq!(pins.failures(), 1);
    // The PIN is still good for the real user.
    let run = bind_once(&a, &b, "123456", &mut pins, secs(2), 8, 2);
    assert!(matches!(run.a, Some(Ok(_))) && matches!(run.b, Some(Ok(_))));
}

#[test]
fn three_wrong_pins_lock_out_for_sixty_seconds_then_release() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456, 654_321]);
    for (i, guess) in ["000000", "000001", "000002"].into_iter().enumerate() {
        let run = bind_once(&a, &b, guess, &mut pins, secs(10), 7, i as u8);
        assert_eq!(run.b, Some(Err(BindError::WrongPin)));
    }
    // Even the right PIN is refused now; both sides learn for how long.
    let run = bind_once(&a, &b, "123456", &mut pins, secs(11), 7, 9);
    let locked = Err(BindError::LockedOut { retry_after: 59 });
    assert_eq!(run.b, Some(locked.clone()));
    assert_eq!(run.a, Some(locked));
    assert_eq!(run.frames.len(), 2, "refused at Start, before any PAKE");
    assert!(pins.issue(secs(69)).is_err(), "no fresh PIN during lockout");
    // Released after 60 s; the old PIN went with the lockout, a new one works.
    let run = bind_once(&a, &b, "123456", &mut pins, secs(70), 7, 10);
    assert_eq!(run.b, Some(Err(BindError::Expired)));
    assert_eq!(pins.issue(secs(70)).unwrap().to_string(), "654321");
    let run = bind_once(&a, &b, "654321", &mut pins, secs(71), 7, 11);
    assert!(matches!(run.b, Some(Ok(_))) && matches!(run.a, Some(Ok(_))));
}

#[test]
fn a_pin_expires_after_sixty_seconds() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = pins_yielding(&[123_456]);
    pins.issue(secs(100)).unwrap();
    let run = bind_once(&a, &b, "123456", &mut pins, secs(160), 7, 1);
    assert_eq!(run.b, Some(Err(BindError::Expired)));
    assert_eq!(run.a, Some(Err(BindError::Expired)));
    assert_eq!(pins.failures(), 0, "expiry is not a guess");
    let run = bind_once(&a, &b, "123456", &mut pins, secs(159), 7, 1);
    assert!(matches!(run.b, Some(Ok(_))));
}

#[test]
fn no_pin_issued_is_expired() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = PinManager::new();
    let run = bind_once(&a, &b, "123456", &mut pins, secs(0), 7, 1);
    assert_eq!(run.a, Some(Err(BindError::Expired)));
}

/// A man in the middle M terminates TLS with A (exporter 1) and with B (exporter 2) and
/// relays the binding messages unmodified.
#[test]
fn relay_between_two_tls_sessions_fails() {
    let (a, b, m) = (dev(1, "a"), dev(2, "b"), dev(3, "mallory"));
    let mut pins = issued_at_0(&[123_456]);

    // 1. Realistic: M cannot present A's or B's key in TLS, so each side sees M's key.
    let (mut ia, start, mut tb) = machines(&a, chan(1, &m), &b, chan(2, &m), secs(1));
    let run = drive(&mut ia, start, &mut tb, &mut pins, secs(1));
    assert_eq!(run.b, Some(Err(BindError::PeerKeyMismatch)));
    assert!(matches!(run.a, Some(Err(BindError::Protocol(_)))));

    // 2. Even if M could make each side see the right peer key (say, a broken TLS stack),
    //    the two sessions' exporters differ: the confirmation fails although A typed the
    //    right PIN, and nobody binds.
    let (mut ia, start, mut tb) = machines(&a, chan(1, &b), &b, chan(2, &a), secs(1));
    let run = drive(&mut ia, start, &mut tb, &mut pins, secs(1));
    assert_eq!(run.b, Some(Err(BindError::WrongPin)));
    assert_eq!(run.a, Some(Err(BindError::WrongPin)));
}

/// M does not know the PIN and runs its own PAKE with B, guessing. Each attempt tests exactly
/// one PIN out of 10^6 (only the exact PIN confirms), and B locks M out after three.
#[test]
fn pin_guessing_mitm_gets_one_guess_per_attempt_and_is_locked_out() {
    let (b, m) = (dev(2, "b"), dev(3, "mallory"));
    assert!(Pin::from_number(999_999).is_some() && Pin::from_number(1_000_000).is_none());
    // Over many PINs, the guess "000000" confirms only when it is the PIN.
    for real in [0u32, 1, 10, 999_999, 123_456] {
        let mut pins = issued_at_0(&[real]);
        let run = bind_once(&m, &b, "000000", &mut pins, secs(1), 5, 3);
        assert_eq!(run.b.unwrap().is_ok(), real == 0, "PIN {real:06}");
    }
    // Against one PIN, M's guesses each fail, and the fourth is never judged.
    let mut pins = issued_at_0(&[424_242]);
    let mut judged = 0;
    for g in 0..10u32 {
        let run = bind_once(&m, &b, &format!("{g:06}"), &mut pins, secs(1), 5, g as u8);
        match run.b {
            Some(Err(BindError::WrongPin)) => judged += 1,
            Some(Err(BindError::LockedOut { .. })) => {}
            other => panic!("guess {g}: {other:?}"),
        }
    }
    assert_eq!(judged, 3);
}

/// Many parallel sessions: M opens them all before guessing, then confirms each; the lockout
/// still stops judging after three.
#[test]
fn parallel_guesses_are_capped_by_the_lockout() {
    let (b, m) = (dev(2, "b"), dev(3, "mallory"));
    let mut pins = issued_at_0(&[424_242]);
    let mut sessions = Vec::new();
    for g in 0..6u8 {
        let (mut im, start) = Initiator::start_seeded(
            m.clone(),
            chan(5, &b),
            Pin::from_number(u32::from(g)).unwrap(),
            secs(1),
            [g; 32],
        );
        let mut tb = Target::new_seeded(b.clone(), chan(5, &m), secs(1), [g + 100; 32]);
        let ch = tb.handle(&start, secs(1), &mut pins).send.unwrap();
        let confirm = im.handle(&ch, secs(1)).send.unwrap();
        sessions.push((tb, confirm));
    }
    let results: Vec<_> = sessions
        .iter_mut()
        .map(|(tb, c)| outcome(&tb.handle(c, secs(2), &mut pins)).unwrap())
        .collect();
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Err(BindError::WrongPin))
            .count(),
        3
    );
    assert!(
        results[3..]
            .iter()
            .all(|r| matches!(r, Err(BindError::LockedOut { .. })))
    );
}

#[test]
fn the_same_message_twice_fails() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456]);
    let (mut ia, start, mut tb) = machines(&a, chan(7, &b), &b, chan(7, &a), secs(1));
    let ch = tb.handle(&start, secs(1), &mut pins).send.unwrap();
    // Start again: out of order for the target, which gives up.
    let s = tb.handle(&start, secs(1), &mut pins);
    assert!(matches!(
        s.error(),
        Some(BindError::Protocol(ProtocolError::Unexpected { .. }))
    ));
    assert!(s.send.is_some(), "the target tells the peer it aborted");
    // The initiator, given the challenge twice, also fails on the second.
    let c = ia.handle(&ch, secs(1));
    assert!(!c.is_finished());
    let c2 = ia.handle(&ch, secs(1));
    assert!(matches!(
        c2.error(),
        Some(BindError::Protocol(ProtocolError::Unexpected { .. }))
    ));
    // And after that nothing succeeds.
    let c3 = ia.handle(&ch, secs(1));
    assert_eq!(
        c3.error(),
        Some(&BindError::Protocol(ProtocolError::Finished))
    );
}

#[test]
fn a_finished_session_ignores_replays() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456, 123_456]);
    let (mut ia, start, mut tb) = machines(&a, chan(7, &b), &b, chan(7, &a), secs(1));
    let run = drive(&mut ia, start, &mut tb, &mut pins, secs(1));
    assert!(run.a.unwrap().is_ok());
    pins.issue(secs(2)).unwrap();
    for (to_b, f) in &run.frames {
        let s = if *to_b {
            tb.handle(f, secs(2), &mut pins)
        } else {
            ia.handle(f, secs(2))
        };
        assert_eq!(
            s.error(),
            Some(&BindError::Protocol(ProtocolError::Finished))
        );
        assert!(s.send.is_none());
    }
    assert_eq!(pins.failures(), 0);
}

#[test]
fn messages_from_an_earlier_run_fail() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456, 123_456, 123_456, 123_456]);
    let old = bind_once(&a, &b, "123456", &mut pins, secs(1), 7, 1);
    assert!(old.b.unwrap().is_ok());
    let old_start = old.frames[0].1.clone();
    let old_challenge = old.frames[1].1.clone();
    let old_confirm = old.frames[2].1.clone();
    let old_accept = old.frames[3].1.clone();

    // Same PIN value re-issued, and even the same TLS exporter: the target's fresh randomness
    // makes the old confirmation worthless.
    pins.issue(secs(2)).unwrap();
    let mut tb = Target::new_seeded(b.clone(), chan(7, &a), secs(2), [50; 32]);
    assert!(!tb.handle(&old_start, secs(2), &mut pins).is_finished());
    let s = tb.handle(&old_confirm, secs(2), &mut pins);
    assert_eq!(s.error(), Some(&BindError::WrongPin));

    // A new session on a new TLS session (new exporter), old Confirm injected.
    pins.issue(secs(3)).unwrap();
    let (mut ia, start) =
        Initiator::start_seeded(a.clone(), chan(8, &b), pin("123456"), secs(3), [9; 32]);
    let mut tb = Target::new_seeded(b.clone(), chan(8, &a), secs(3), [10; 32]);
    let ch = tb.handle(&start, secs(3), &mut pins);
    assert!(!ch.is_finished());
    assert!(
        tb.handle(&old_confirm, secs(3), &mut pins)
            .bound()
            .is_none()
    );

    // A new initiator fed the old Challenge and Accept.
    let s = ia.handle(&old_challenge, secs(3));
    assert!(!s.is_finished(), "a Challenge alone proves nothing yet");
    let s = ia.handle(&old_accept, secs(3));
    assert_eq!(s.error(), Some(&BindError::WrongPin));
    assert!(s.bound().is_none());
}

#[test]
fn reordered_messages_fail() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456, 123_456]);
    let run = bind_once(&a, &b, "123456", &mut pins, secs(1), 7, 1);
    let confirm = run.frames[2].1.clone();
    let accept = run.frames[3].1.clone();
    pins.issue(secs(2)).unwrap();
    let mut tb = Target::new_seeded(b.clone(), chan(7, &a), secs(2), [2; 32]);
    let s = tb.handle(&confirm, secs(2), &mut pins);
    assert!(matches!(
        s.error(),
        Some(BindError::Protocol(ProtocolError::Unexpected {
            expected: "Start",
            got: "Confirm"
        }))
    ));
    let (mut ia, _) =
        Initiator::start_seeded(a.clone(), chan(7, &b), pin("123456"), secs(2), [1; 32]);
    let s = ia.handle(&accept, secs(2));
    assert!(matches!(
        s.error(),
        Some(BindError::Protocol(ProtocolError::Unexpected { .. }))
    ));
}

#[test]
fn a_peer_key_other_than_the_tls_key_fails() {
    let (a, b, c) = (dev(1, "a"), dev(2, "b"), dev(3, "c"));
    let mut pins = issued_at_0(&[123_456]);
    // The target's TLS peer is C, but the Start names A.
    let (mut ia, start, mut tb) = machines(&a, chan(7, &b), &b, chan(7, &c), secs(1));
    let run = drive(&mut ia, start, &mut tb, &mut pins, secs(1));
    assert_eq!(run.b, Some(Err(BindError::PeerKeyMismatch)));
    assert_eq!(pins.failures(), 0);
    assert!(pins.begin_attempt(secs(1)).is_ok(), "PIN untouched");
    // The initiator's TLS peer is C, but the Challenge names B.
    let (mut ia, start, mut tb) = machines(&a, chan(7, &c), &b, chan(7, &a), secs(1));
    let run = drive(&mut ia, start, &mut tb, &mut pins, secs(1));
    assert_eq!(run.a, Some(Err(BindError::PeerKeyMismatch)));
    assert!(run.b.unwrap().is_err());
}

#[test]
fn a_record_or_signature_not_matching_the_key_fails() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let (_ia, mut tb, mut pins, mut c) = up_to_confirm(&a, &b, 123_456);
    // Tamper with the signature: the MAC covers it, so this reads as a failed confirmation.
    c.signature[0] ^= 1;
    let s = tb.handle(&BindMsg::Confirm(c).encode(), secs(1), &mut pins);
    assert_eq!(s.error(), Some(&BindError::WrongPin));

    let bad = DeviceRecord {
        udid: udid_of(&[9; 32]),
        ..a.record().clone()
    };
    assert!(matches!(
        bad.validate_for(&pk(&a)),
        Err(ProtocolError::BadRecord(_))
    ));
    let long = DeviceRecord {
        name: "x".repeat(MAX_NAME_LEN + 1),
        ..a.record().clone()
    };
    assert!(long.validate_for(&pk(&a)).is_err());
    assert!(verify_sig(&pk(&a), &[b"m"], &[0; 64]).is_err());
    assert!(verify_sig(&pk(&a), &[b"m"], &[0; 3]).is_err());
}

#[test]
fn sessions_time_out() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456]);
    let (mut ia, start, mut tb) = machines(&a, chan(7, &b), &b, chan(7, &a), secs(0));
    let ch = tb.handle(&start, secs(1), &mut pins).send.unwrap();
    assert_eq!(ia.deadline(), Some(SESSION_TIMEOUT));
    assert!(ia.on_timeout(secs(29)).is_none());
    let s = ia.handle(&ch, secs(30));
    assert_eq!(s.error(), Some(&BindError::Timeout));
    let s = tb.on_timeout(secs(30)).unwrap();
    assert_eq!(s.error(), Some(&BindError::Timeout));
    assert_eq!(
        decode_bind_msg(s.send.as_ref().unwrap()).unwrap(),
        BindMsg::Abort(AbortReason::Timeout)
    );
    assert!(tb.deadline().is_none() && tb.on_timeout(secs(99)).is_none());
}

#[test]
fn cancel_tells_the_peer() {
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456]);
    let (mut ia, start, mut tb) = machines(&a, chan(7, &b), &b, chan(7, &a), secs(0));
    let _ = tb.handle(&start, secs(0), &mut pins);
    let abort = ia.cancel().unwrap();
    assert!(ia.cancel().is_none());
    let s = tb.handle(&abort, secs(0), &mut pins);
    assert!(matches!(
        s.error(),
        Some(BindError::Protocol(ProtocolError::PeerAborted("cancelled")))
    ));
    assert!(s.send.is_none());
}

#[test]
fn frame_checks() {
    let ok = BindMsg::Abort(AbortReason::LockedOut { retry_after: 7 }).encode();
    assert_eq!(ok, [2, 4, 2, 7], "version, type, reason, varint");
    assert_eq!(
        decode_bind_msg(&ok).unwrap(),
        BindMsg::Abort(AbortReason::LockedOut { retry_after: 7 })
    );
    assert_eq!(
        decode_bind_msg(&[]),
        Err(BindError::Protocol(ProtocolError::Empty))
    );
    // Version 1 (before sealed advert keys) and later versions are refused.
    for v in [1u8, 3] {
        let mut other = ok.clone();
        other[0] = v;
        assert_eq!(
            decode_bind_msg(&other),
            Err(BindError::Protocol(ProtocolError::BadVersion(v)))
        );
    }
    let mut trailing = ok.clone();
    trailing.push(0);
    assert!(matches!(
        decode_bind_msg(&trailing),
        Err(BindError::Protocol(ProtocolError::Malformed(_)))
    ));
    assert!(matches!(
        decode_bind_msg(&[BIND_VERSION, 9]),
        Err(BindError::Protocol(ProtocolError::Malformed(_)))
    ));
    assert!(matches!(
        decode_bind_msg(&vec![1; MAX_BIND_MSG + 1]),
        Err(BindError::Protocol(ProtocolError::TooLarge(_)))
    ));
    let start = BindMsg::Start(Start {
        spake: [3; 32],
        public_key: [4; 32],
    })
    .encode();
    assert_eq!(start.len(), 1 + 1 + 64);
    assert_eq!(&start[..2], &[BIND_VERSION, 0]);
}

#[test]
fn error_codes() {
    assert_eq!(BindError::InvalidPin.code(), 401);
    assert_eq!(BindError::Expired.reason(), code::ERR_DM_TIME_OUT);
    assert_eq!(
        BindError::LockedOut { retry_after: 3 }.to_string(),
        "too many wrong PINs: the target refuses binding for 3 more seconds"
    );
    assert_eq!(BindError::Timeout.code(), code::DM_ERR_FAILED);
}

/// Frames of one honest run, to mutate; the machines in the property test use the same keys,
/// exporter, PIN and seeds, so only the mutation stands between them and success.
fn honest_frames() -> &'static [(bool, Vec<u8>)] {
    static FRAMES: std::sync::OnceLock<Vec<(bool, Vec<u8>)>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        let (a, b) = (dev(1, "a"), dev(2, "b"));
        let mut pins = issued_at_0(&[123_456]);
        let run = bind_once(&a, &b, "123456", &mut pins, secs(1), 7, 1);
        assert!(run.b.unwrap().is_ok());
        run.frames
    })
}

/// The control for `garbage_never_binds`: the same frames unmutated, into machines built
/// the same way, do bind, so the property test fails only because of its mutations.
#[test]
fn unmutated_frames_into_identical_machines_bind() {
    let honest = honest_frames();
    let (a, b) = (dev(1, "a"), dev(2, "b"));
    let mut pins = issued_at_0(&[123_456]);
    let mut tb = Target::new_seeded(b.clone(), chan(7, &a), secs(1), [2; 32]);
    assert!(!tb.handle(&honest[0].1, secs(1), &mut pins).is_finished());
    assert!(
        tb.handle(&honest[2].1, secs(1), &mut pins)
            .bound()
            .is_some()
    );
    let (mut ia, _) =
        Initiator::start_seeded(a.clone(), chan(7, &b), pin("123456"), secs(1), [1; 32]);
    assert!(!ia.handle(&honest[1].1, secs(1)).is_finished());
    assert!(ia.handle(&honest[3].1, secs(1)).bound().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn garbage_never_panics_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_bind_msg(&bytes);
        let mut v = vec![BIND_VERSION];
        v.extend(&bytes);
        let _ = decode_bind_msg(&v);
    }

    /// Random frames, or honest frames with bytes flipped, fed in any order to fresh machines:
    /// no panic, and never a binding.
    #[test]
    fn garbage_never_binds(
        inputs in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| (None, b)),
                (0usize..4, any::<usize>(), 1u8..=255)
                    .prop_map(|(i, at, x)| (Some((i, at, x)), Vec::new())),
            ],
            1..6,
        )
    ) {
        let honest = honest_frames();
        let (a, b) = (dev(1, "a"), dev(2, "b"));
        let mut pins = issued_at_0(&[123_456]);
        let (mut ia, _start, mut tb) = machines(&a, chan(7, &b), &b, chan(7, &a), secs(1));
        for (mutation, random) in inputs {
            let frame = match mutation {
                None => random,
                Some((i, at, x)) => {
                    let mut f = honest[i].1.clone();
                    let at = at % f.len();
                    f[at] ^= x;
                    f
                }
            };
            let sa = ia.handle(&frame, secs(1));
            prop_assert!(sa.bound().is_none());
            let sb = tb.handle(&frame, secs(1), &mut pins);
            prop_assert!(sb.bound().is_none());
        }
    }
}
