use super::*;

const APP: u32 = 0x2800_0001;
const OTHER: u32 = 0x2800_0002;
const DOC: &str = "file://com.example.notes/data/storage/el2/base/files/doc.txt";
const DIR: &str = "file://com.example.notes/data/storage/el2/base/files";

fn p(uri: &str, m: u32) -> PolicyInfo {
    PolicyInfo {
        uri: uri.into(),
        operation_mode: m,
    }
}

fn u(s: &str) -> FileUri {
    s.parse().unwrap()
}

fn codes(r: PolicyResults) -> Vec<PolicyErrorCode> {
    r.err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.code)
        .collect()
}

#[test]
fn a_temporary_grant_allows_its_modes_only_to_its_app_and_ends_with_its_process() {
    let mut g = Grants::new();
    assert_eq!(g.grant(APP, Some(7), &[p(DOC, mode::READ)]), Ok(Ok(())));
    assert!(g.allows(APP, &u(DOC), mode::READ));
    assert!(!g.allows(APP, &u(DOC), mode::WRITE), "only the modes given");
    assert!(!g.allows(APP, &u(DOC), mode::READ | mode::WRITE));
    assert!(
        !g.allows(OTHER, &u(DOC), mode::READ),
        "only the app granted"
    );
    assert!(
        !g.allows(APP, &u(&format!("{DOC}?networkid=abc")), mode::READ),
        "the same path on another device is another file"
    );
    // Another process of the same app ending leaves it; its own ending takes it.
    g.process_exited(APP, 8);
    assert!(g.allows(APP, &u(DOC), mode::READ));
    g.process_exited(APP, 7);
    assert!(!g.allows(APP, &u(DOC), mode::READ));
    assert!(g.of(APP).is_empty());
}

#[test]
fn a_grant_on_a_directory_covers_what_is_below_it_by_components() {
    let mut g = Grants::new();
    g.grant(APP, Some(1), &[p(DIR, mode::READ | mode::WRITE)])
        .unwrap()
        .unwrap();
    assert!(g.allows(APP, &u(DOC), mode::WRITE));
    assert!(g.allows(APP, &u(DIR), mode::READ));
    assert!(!g.allows(
        APP,
        &u("file://com.example.notes/data/storage/el2/base/filesX/a"),
        mode::READ
    ));
    assert!(!g.allows(
        APP,
        &u("file://com.example.other/data/storage/el2/base/files/doc.txt"),
        mode::READ
    ));
}

#[test]
fn persisting_needs_a_grant_with_the_modes_and_survives_restarts_inactive_until_activated() {
    let mut g = Grants::new();
    // Nothing granted: forbidden.
    assert_eq!(
        codes(g.persist(APP, &[p(DOC, mode::READ)]).unwrap()),
        vec![PolicyErrorCode::PersistenceForbidden]
    );
    g.grant(APP, Some(5), &[p(DOC, mode::READ)])
        .unwrap()
        .unwrap();
    // More than granted: forbidden; a bad mode or URI: their own codes, the rest still done.
    let r = g
        .persist(
            APP,
            &[
                p(DOC, mode::READ | mode::WRITE),
                p(DOC, 0),
                p(DOC, 1 << 5),
                p("http://x/y", mode::READ),
                p("file://com.example.notes/data/../etc", mode::READ),
                p(DOC, mode::READ),
            ],
        )
        .unwrap();
    assert_eq!(
        codes(r),
        vec![
            PolicyErrorCode::PersistenceForbidden,
            PolicyErrorCode::InvalidMode,
            PolicyErrorCode::InvalidMode,
            PolicyErrorCode::InvalidPath,
            PolicyErrorCode::InvalidPath,
        ]
    );
    assert_eq!(
        g.check_persistent(APP, &[p(DOC, mode::READ), p(DOC, mode::WRITE)]),
        Ok(vec![true, false])
    );
    let stored = g.persisted();
    assert_eq!(stored.len(), 1);

    // A restart: the temporary grant is gone, the persisted one is back but inactive.
    let mut g = Grants::new();
    g.restore(stored);
    assert!(!g.allows(APP, &u(DOC), mode::READ), "not yet activated");
    assert_eq!(g.activate(APP, &[p(DOC, mode::READ)]), Ok(Ok(())));
    assert!(g.allows(APP, &u(DOC), mode::READ));
    assert_eq!(g.deactivate(APP, &[p(DOC, mode::READ)]), Ok(Ok(())));
    assert!(!g.allows(APP, &u(DOC), mode::READ));
    g.activate(APP, &[p(DOC, mode::READ)]).unwrap().unwrap();
    // The process ends: still persisted, inactive again.
    g.process_exited(APP, 9);
    assert!(!g.allows(APP, &u(DOC), mode::READ));
    assert_eq!(
        g.check_persistent(APP, &[p(DOC, mode::READ)]),
        Ok(vec![true])
    );
    // Activating what was never persisted says so.
    assert_eq!(
        codes(g.activate(APP, &[p(DIR, mode::READ)]).unwrap()),
        vec![PolicyErrorCode::PermissionNotPersisted]
    );
}

#[test]
fn revoking_removes_the_persisted_grant_and_the_temporary_one_on_it() {
    let mut g = Grants::new();
    g.grant(APP, Some(5), &[p(DOC, mode::READ)])
        .unwrap()
        .unwrap();
    g.persist(APP, &[p(DOC, mode::READ)]).unwrap().unwrap();
    assert_eq!(g.revoke(APP, &[p(DOC, mode::READ)]), Ok(Ok(())));
    assert!(!g.allows(APP, &u(DOC), mode::READ));
    assert!(g.persisted().is_empty());
    assert_eq!(
        codes(g.revoke(APP, &[p(DOC, mode::READ)]).unwrap()),
        vec![PolicyErrorCode::PermissionNotPersisted]
    );
}

#[test]
fn uninstalling_takes_the_apps_grants_and_the_grants_on_its_files() {
    let mut g = Grants::new();
    let theirs = "file://com.example.other/data/storage/el2/base/x";
    g.grant(APP, Some(1), &[p(theirs, mode::READ)])
        .unwrap()
        .unwrap();
    g.persist(APP, &[p(theirs, mode::READ)]).unwrap().unwrap();
    g.grant(OTHER, Some(2), &[p(DOC, mode::READ)])
        .unwrap()
        .unwrap();
    // com.example.other (OTHER) goes: APP's grant on its file goes, and OTHER's own.
    assert!(g.uninstalled(OTHER, "com.example.other"));
    assert!(!g.allows(APP, &u(theirs), mode::READ));
    assert!(!g.allows(OTHER, &u(DOC), mode::READ));
    assert!(g.persisted().is_empty());
}

#[test]
fn a_call_takes_one_to_500_policies_and_an_app_holds_a_bounded_number() {
    let mut g = Grants::new();
    let many: Vec<PolicyInfo> = (0..=MAX_POLICIES)
        .map(|i| p(&format!("{DIR}/f{i}"), mode::READ))
        .collect();
    assert!(matches!(
        g.grant(APP, None, &many),
        Err(GrantError::Param(_))
    ));
    assert!(matches!(g.grant(APP, None, &[]), Err(GrantError::Param(_))));
    assert!(matches!(g.persist(APP, &many), Err(GrantError::Param(_))));
    assert!(matches!(
        g.check_persistent(APP, &many),
        Err(GrantError::Param(_))
    ));
    assert!(g.of(APP).is_empty(), "nothing of a refused call is kept");
    assert_eq!(g.grant(APP, None, &many[..MAX_POLICIES]), Ok(Ok(())));
    for round in 1..MAX_GRANTS_PER_APP / MAX_POLICIES {
        let next: Vec<PolicyInfo> = (0..MAX_POLICIES)
            .map(|i| p(&format!("{DIR}/r{round}/f{i}"), mode::READ))
            .collect();
        assert_eq!(g.grant(APP, None, &next), Ok(Ok(())));
    }
    assert_eq!(g.of(APP).len(), MAX_GRANTS_PER_APP);
    assert_eq!(
        g.grant(APP, None, &[p(&format!("{DIR}/one-more"), mode::READ)]),
        Err(GrantError::TooMany)
    );
    // Adding modes to a URI already held is not a new grant.
    assert_eq!(
        g.grant(APP, None, &[p(&format!("{DIR}/f0"), mode::WRITE)]),
        Ok(Ok(()))
    );
}
