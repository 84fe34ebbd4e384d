//! Access tokens end to end: every SA method says who may call it; a local user without
//! permissions is refused by every gated method and changes nothing; a caller cannot claim
//! another identity (the token comes from SO_PEERCRED, not from anything the caller sends).
//!
//! The tests that need another user run a client as `nobody` by re-running this test binary
//! through `runuser` with [`CHILD_ENV`] set, which makes [`child_process_entry`] act as that
//! client; it prints its findings as JSON lines for the parent to check.

use crate::common::*;
use oxh_atm::api::{
    self as atm, AllocHapArgs, CheckArgs, GrantArgs, TokenDetail, TokenInfo, TokenTarget,
    UpdateHapArgs, UsageArgs, UsageRecord,
};
use oxh_atm::rules::{HapPolicy, UpdateHapInfoParams, flag};
use oxh_atm::test_util::app as app_info;
use oxh_hilog::api as hilog;
use oxh_ipc::{Caller, TokenType, encode};
use oxh_samgr::samgr_method::{self as samgr, DumpArgs};
use oxh_samgr::{MethodInfo, SaInfo, SaState, sa_id};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Methods anyone may call, with why. Every other method of every SA must declare a
/// permission or be system-only; `every_sa_method_declares_who_may_call_it` enforces both
/// directions (no undeclared open method, no stale entry here).
const PUBLIC_METHODS: &[(i32, &str, &str)] = &[
    (
        sa_id::ABILITY_MGR,
        "StartAbility",
        "any app may start an exported ability (OpenHarmony's startAbility needs no \
         permission); a non-exported one needs START_INVISIBLE_ABILITY, checked in the method \
         (crashes_hangs_launch_types_and_visibility)",
    ),
    (
        sa_id::ABILITY_MGR,
        "StopServiceAbility",
        "only the service's own app, the shell or a native caller, checked in the method",
    ),
    (
        sa_id::ABILITY_MGR,
        "TerminateAbility",
        "only the app process hosting the record may end it (its pid and uid), checked in the method",
    ),
    (
        sa_id::ABILITY_MGR,
        "ConnectAbility",
        "as StartAbility: an exported service, or START_INVISIBLE_ABILITY, checked in the \
         method; the caller must hold a token and pass a socket it made itself \
         (an_app_calls_another_apps_service_directly_...)",
    ),
    (
        sa_id::ABILITY_MGR,
        "ConnectionClosed",
        "only the app process hosting the connection's service may report its end, checked \
         in the method",
    ),
    (
        sa_id::ABILITY_MGR,
        "SetMissionContinueState",
        "only the app process hosting the record may set its mission's continue state, \
         checked in the method",
    ),
    (
        sa_id::ABILITY_MGR,
        "AttachApplication",
        "only the process the spawner started, by its kernel pid and uid, checked in the method",
    ),
    (
        sa_id::ABILITY_MGR,
        "AbilityTransitionDone",
        "only the app process hosting the record may report its steps, checked in the method",
    ),
    (
        sa_id::SAMGR,
        "ListSystemAbilities",
        "which SAs exist and whether they run; OpenHarmony's samgr lists them to anyone",
    ),
    (
        sa_id::SAMGR,
        "Echo",
        "returns the caller's own bytes: a liveness and latency probe",
    ),
    (
        sa_id::SAMGR,
        "WhoAmI",
        "tells the caller only its own kernel identity and token",
    ),
    (
        sa_id::SAMGR,
        "ListMethods",
        "the method tables with their permissions are the published API",
    ),
    (
        sa_id::SAMGR,
        "CallRemote",
        "the device that runs the method checks the caller's synced token, with \
         DISTRIBUTED_DATASYNC (remote_tokens_follow_grants_and_revocations_on_the_origin_device)",
    ),
    (
        sa_id::HILOG,
        "Write",
        "every process may log (OH_LOG_Print needs no permission); the pid is the kernel's, \
         the quota is per process, and core lines are for system callers only",
    ),
    (
        sa_id::ACCESS_TOKEN,
        "GetDefPermissions",
        "OpenHarmony's permission definitions are public",
    ),
    (
        sa_id::PARAM,
        "GetParameter",
        "param applies its read rules by name and token type inside the SA (samgr's gate \
         cannot see the name); every prefix is readable by everyone (checked below)",
    ),
    (
        sa_id::PARAM,
        "ListParameters",
        "as GetParameter: read rules inside the SA, every prefix readable by everyone",
    ),
    (
        sa_id::PARAM,
        "WaitParameter",
        "as GetParameter: read rules inside the SA, every prefix readable by everyone",
    ),
    (
        sa_id::PARAM,
        "DumpParameters",
        "the access table and the values, all readable by everyone anyway (checked below); \
         it must be gated once a read rule excludes someone",
    ),
    (
        sa_id::PARAM,
        "SetParameter",
        "param applies its write rules by name inside the SA: no rule lets a hap or an \
         invalid token write (checked below, and refused as nobody below)",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "GetKVStore",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "Put",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "Delete",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "Get",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "GetEntries",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "SubscribeKvStore",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "UnsubscribeKvStore",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "Backup",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "Restore",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "DeleteBackup",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "RemoveDeviceData",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "StartTransaction",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "Commit",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "Rollback",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "CloseKVStore",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "DeleteKVStore",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "GetAllKVStoreId",
        "an app's own KV stores need no permission (as in OpenHarmony); the service takes the \
         app from the caller's token and refuses other apps' stores and invalid tokens",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "AppendValue",
        "put/get of a large value in parts: as Put and Get (the app's own stores; staged \
         parts are the caller's connection's own)",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "PutStaged",
        "put/get of a large value in parts: as Put and Get (the app's own stores; staged \
         parts are the caller's connection's own)",
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "GetPart",
        "put/get of a large value in parts: as Put and Get (the app's own stores; staged \
         parts are the caller's connection's own)",
    ),
    (sa_id::DISTRIBUTED_KV, "GetRdbStore", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbExecute", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbInsert", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbBatchInsert", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbUpdate", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbDelete", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbQuery", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbQuerySql", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbBeginTransaction", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbCommit", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbRollBack", RDB_OWN_STORES),
    (
        sa_id::DISTRIBUTED_KV,
        "SetDistributedTables",
        RDB_OWN_STORES,
    ),
    (
        sa_id::DISTRIBUTED_KV,
        "ObtainDistributedTableName",
        RDB_OWN_STORES,
    ),
    (sa_id::DISTRIBUTED_KV, "CloseRdbStore", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "DeleteRdbStore", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbSubscribe", RDB_OWN_STORES),
    (sa_id::DISTRIBUTED_KV, "RdbUnsubscribe", RDB_OWN_STORES),
];

/// Why the relational store's methods are open (SA 1301's RDB feature).
const RDB_OWN_STORES: &str = "an app's own relational stores need no permission (as in OpenHarmony, where \
     the app opens its own file); the service takes the app from the caller's token, refuses \
     other apps' stores, and store handles are the caller's connection's own \
     (apps_reach_only_their_own_stores_by_token, an_app_reaches_only_its_own_relational_stores)";

/// Dump lines that change because of the refused calls themselves, with why; the rest of
/// every SA's dump must be the same before and after the walk.
const VOLATILE_DUMP_LINES: &[(i32, &str, &str)] = &[
    (
        sa_id::SAMGR,
        "  clients:",
        "the walking client connects and goes",
    ),
    (sa_id::SAMGR, "    conn ", "one line per connected client"),
    (
        sa_id::HILOG,
        "  buffer:",
        "samgr logs each refusal (\"permission denied\"), so the buffer grows",
    ),
    (
        sa_id::ACCESS_TOKEN,
        "  checks:",
        "counts every permission check, refused ones included",
    ),
];

/// Set to `MODE DATA_DIR` to make [`child_process_entry`] a client.
const CHILD_ENV: &str = "OXH_ATM_TEST_CHILD";
/// Prefix of the child's result lines.
const RESULT: &str = "OXH-ATM-RESULT ";

const APP: &str = "com.example.atmwalk";
const CAMERA: &str = "ohos.permission.CAMERA";
const MICROPHONE: &str = "ohos.permission.MICROPHONE";
const INTERNET: &str = "ohos.permission.INTERNET";
const MARKER_TAG: &str = "AtmWalkMarker";
const REMOTE_APP: &str = "com.example.remotecaller";
const DATASYNC: &str = "ohos.permission.DISTRIBUTED_DATASYNC";

fn is_public(sa: i32, name: &str) -> bool {
    PUBLIC_METHODS
        .iter()
        .any(|(s, n, _)| *s == sa && *n == name)
}

/// Lists every SA (starting the on-demand ones) with its method table; afterwards every SA
/// must be running.
async fn method_tables(dev: &oxh_sdk::Device) -> Vec<(SaInfo, Vec<MethodInfo>)> {
    let sas = dev.samgr().list().await.unwrap();
    assert!(sas.iter().any(|s| !s.run_on_create), "an on-demand SA");
    let mut out = Vec::new();
    for sa in &sas {
        let methods = dev.samgr().list_methods(sa.id).await.unwrap();
        assert!(!methods.is_empty(), "{} has no methods", sa.name);
        out.push((sa.clone(), methods));
    }
    for sa in dev.samgr().list().await.unwrap() {
        assert_eq!(
            sa.state,
            SaState::Running,
            "{} started by ListMethods",
            sa.name
        );
    }
    out
}

#[tokio::test]
async fn every_sa_method_declares_who_may_call_it() {
    let dev = TestDevice::start();
    let sdk = dev.sdk().await;
    let tables = method_tables(&sdk).await;
    let ids: BTreeSet<i32> = tables.iter().map(|(s, _)| s.id).collect();
    for want in [
        sa_id::SAMGR,
        sa_id::HILOG,
        sa_id::ACCESS_TOKEN,
        sa_id::PARAM,
        sa_id::SOFTBUS,
        sa_id::DEVICE_MANAGER,
    ] {
        assert!(ids.contains(&want), "SA {want} is listed: {ids:?}");
    }
    let mut seen_public = BTreeSet::new();
    for (sa, methods) in &tables {
        let codes: BTreeSet<u32> = methods.iter().map(|m| m.code).collect();
        assert_eq!(codes.len(), methods.len(), "{}: codes are unique", sa.name);
        for m in methods {
            if let Some(p) = &m.permission {
                assert!(
                    oxh_atm::definitions::find(p).is_some(),
                    "{}.{} declares {p}, which OpenHarmony does not define",
                    sa.name,
                    m.name
                );
            } else if !m.system_only {
                assert!(
                    is_public(sa.id, &m.name),
                    "{}.{} (code {}) declares no permission, is not system-only and is not on \
                     PUBLIC_METHODS: give it a permission, or list it there with a reason",
                    sa.name,
                    m.name,
                    m.code
                );
                seen_public.insert((sa.id, m.name.clone()));
            }
        }
    }
    for (sa, name, why) in PUBLIC_METHODS {
        assert!(!why.is_empty());
        assert!(
            seen_public.contains(&(*sa, name.to_string())),
            "PUBLIC_METHODS lists {sa}.{name}, which is not an open method (stale entry?)"
        );
    }

    // What makes param's open methods safe: read rules let everyone read (so Get, List, Wait
    // and Dump show nothing more to anyone), write rules let neither apps nor strangers write.
    for r in oxh_param::rules::ACCESS_RULES {
        assert!(
            r.read.contains(&TokenType::Invalid),
            "{} is no longer readable by everyone: gate DumpParameters (it prints every value)",
            r.scope()
        );
        assert!(
            !r.write.contains(&TokenType::Invalid) && !r.write.contains(&TokenType::Hap),
            "{} is writable by apps or strangers",
            r.scope()
        );
    }

    // hidumper shows the same tables.
    let d = dev.oxh_ok(&["hidumper", "-s", "0", "-a", "-m"]);
    assert!(
        d.contains("GetTokenList: ohos.permission.GET_SENSITIVE_PERMISSIONS"),
        "{d}"
    );
    assert!(d.contains("SubscribeClientDeaths: system processes"), "{d}");
}

// ---- the client that runs as another user ----

fn emit(v: Value) {
    println!("{RESULT}{v}");
}

fn err_json(e: &oxh_ipc::IpcError) -> Value {
    json!({ "ok": false, "code": e.code(), "message": e.to_string() })
}

/// Sets this process's name (`/proc/PID/comm`, what the token resolver reads) from any thread.
fn set_process_name(name: &str) {
    let path = format!("/proc/self/task/{}/comm", std::process::id());
    std::fs::write(&path, name).unwrap_or_else(|e| panic!("write {path}: {e}"));
    assert_eq!(
        oxh_kal::process_name(std::process::id() as i32).unwrap(),
        name
    );
}

/// A well-formed request for a gated method, where the test knows one: what a real attempt
/// to read or change state looks like (an empty payload is also sent to every method).
fn valid_payload(sa: i32, code: u32, app: u32) -> Option<Vec<u8>> {
    let target = TokenTarget::Id(app);
    Some(match (sa, code) {
        (sa_id::SAMGR, samgr::DUMP) => encode(&DumpArgs {
            sa: sa_id::ACCESS_TOKEN,
            args: vec!["-v".into()],
        }),
        (sa_id::SAMGR, samgr::SUBSCRIBE_DEATHS) => encode(&7u64),
        (sa_id::SAMGR, samgr::ECHO_CHECKED) => b"probe".to_vec(),
        (sa_id::HILOG, hilog::READ) => encode(&hilog::ReadArgs::default()),
        (sa_id::HILOG, hilog::STOP_FOLLOW) => encode(&1u64),
        (sa_id::HILOG, hilog::GET_BUFFER_SIZE | hilog::CLEAR) => encode(&()),
        (sa_id::HILOG, hilog::SET_BUFFER_SIZE) => encode(&(64u64 * 1024)),
        (sa_id::HILOG, hilog::SET_PRIVACY) => encode(&false),
        (sa_id::HILOG, hilog::PERSIST) => encode(&hilog::PersistCmd::Start {
            file_size: None,
            max_files: None,
        }),
        (sa_id::HILOG, hilog::FLOW_CONTROL) => encode(&hilog::FlowControlArgs {
            enabled: Some(false),
            quota: Some(1),
        }),
        (sa_id::ACCESS_TOKEN, atm::LIST_TOKENS) => encode(&()),
        (sa_id::ACCESS_TOKEN, atm::CHECK) => encode(&CheckArgs {
            target,
            permission: CAMERA.into(),
        }),
        (sa_id::ACCESS_TOKEN, atm::TOKEN_PERMISSIONS | atm::REMOVE_USAGE) => encode(&target),
        (sa_id::ACCESS_TOKEN, atm::GRANT) => encode(&GrantArgs {
            target,
            permission: MICROPHONE.into(),
            flags: flag::USER_SET,
        }),
        (sa_id::ACCESS_TOKEN, atm::REVOKE) => encode(&GrantArgs {
            target,
            permission: CAMERA.into(),
            flags: flag::USER_FIXED,
        }),
        (sa_id::ACCESS_TOKEN, atm::USAGE) => encode(&UsageArgs::default()),
        // Make itself an app with every permission it can think of.
        (sa_id::ACCESS_TOKEN, atm::ALLOC_HAP) => encode(&AllocHapArgs {
            info: app_info("com.example.intruder", Some(65534)),
            policy: HapPolicy::normal(&[CAMERA, MICROPHONE, INTERNET]),
        }),
        // Or take the app's token by giving it nobody's uid.
        (sa_id::ACCESS_TOKEN, atm::UPDATE_HAP) => encode(&UpdateHapArgs {
            token_id: app,
            info: UpdateHapInfoParams {
                app_id_desc: format!("{APP}_appid"),
                api_version: 12,
                is_system_app: true,
                app_distribution_type: "app_gallery".into(),
                uid: Some(65534),
            },
            policy: HapPolicy::normal(&[CAMERA, MICROPHONE, INTERNET]),
        }),
        (sa_id::ACCESS_TOKEN, atm::DELETE_TOKEN) => encode(&app),
        (sa_id::DEVICE_MANAGER, oxh_softbus::api::dm::ISSUE_PIN) => encode(&()),
        (sa_id::DEVICE_MANAGER, oxh_softbus::api::dm::ADD_PEER) => encode(&"127.0.0.1:9"),
        (sa_id::DEVICE_MANAGER, oxh_softbus::api::dm::UNBIND) => encode(&"0".repeat(64)),
        (sa_id::DEVICE_MANAGER, oxh_softbus::api::dm::SUBSCRIBE_STATE) => encode(&3u64),
        _ => return None,
    })
}

/// As root named `oxhd`: the daemon's own token, so it may create the app the walk targets.
async fn child_setup(dev: &oxh_sdk::Device) {
    let me = dev.samgr().whoami().await.unwrap();
    let id = dev
        .atm()
        .alloc_hap_token(
            app_info(APP, None),
            HapPolicy::normal(&[CAMERA, MICROPHONE, INTERNET]),
        )
        .await
        .unwrap()
        .token_id();
    emit(json!({ "whoami": me, "app": id }));
}

/// As root named `oxhd`: creates the app whose processes run as `nobody` and that asks for
/// DISTRIBUTED_DATASYNC (user_grant: DENIED until the user grants it).
async fn child_setup_remote(dev: &oxh_sdk::Device) {
    let nobody = 65_534;
    let id = dev
        .atm()
        .alloc_hap_token(
            app_info(REMOTE_APP, Some(nobody)),
            HapPolicy::normal(&[DATASYNC, INTERNET]),
        )
        .await
        .unwrap()
        .token_id();
    emit(json!({ "app": id }));
}

/// As nobody (the remote-calling app): who it is here, then an echo and a DUMP-gated echo
/// through samgr on device `peer`.
async fn child_remote(dev: &oxh_sdk::Device, peer: &str) {
    let me = dev.samgr().whoami().await.unwrap();
    let s = dev.samgr();
    let echo = s
        .call_remote_raw(peer, sa_id::SAMGR, samgr::ECHO, b"across".to_vec())
        .await;
    let checked = s
        .call_remote_raw(peer, sa_id::SAMGR, samgr::ECHO_CHECKED, b"x".to_vec())
        .await;
    let whoami: Result<Caller, _> = s.call_remote(peer, sa_id::SAMGR, samgr::WHOAMI, &()).await;
    let r = |v: Result<Vec<u8>, oxh_ipc::IpcError>| match v {
        Ok(b) => json!({ "ok": true, "data": String::from_utf8_lossy(&b) }),
        Err(e) => err_json(&e),
    };
    emit(json!({
        "whoami": me,
        "echo": r(echo),
        "checked": r(checked),
        "remote_whoami": whoami.map_err(|e| e.to_string()),
    }));
}

/// As nobody: every gated method of every SA, with an empty and a well-formed payload, and
/// param sets that the SA's own rules refuse.
async fn child_walk(dev: &oxh_sdk::Device, app: u32) {
    emit(json!({ "whoami": dev.samgr().whoami().await.unwrap() }));
    for sa in dev.samgr().list().await.unwrap() {
        for m in dev.samgr().list_methods(sa.id).await.unwrap() {
            if m.permission.is_none() && !m.system_only {
                continue;
            }
            let mut payloads = vec![("empty", Vec::new())];
            if let Some(p) = valid_payload(sa.id, m.code, app) {
                payloads.push(("valid", p));
            }
            for (kind, data) in payloads {
                let r = match dev.client().call_raw(sa.id, m.code, &data).await {
                    Ok(b) => json!({ "ok": true, "len": b.len() }),
                    Err(e) => err_json(&e),
                };
                emit(
                    json!({ "sa": sa.id, "code": m.code, "name": m.name, "payload": kind,
                             "result": r }),
                );
            }
        }
    }
    for (k, v) in [
        ("persist.atm.walk", "nobody"),
        ("const.product.name", "nobody"),
        ("debug.atm.nobody", "1"),
    ] {
        let r = match dev.param().set(k, v).await {
            Ok(()) => json!({ "ok": true }),
            Err(e) => err_json(&e),
        };
        emit(json!({ "param_set": k, "result": r }));
    }
}

/// As nobody named `oxhd`, sending a payload that claims to be root's oxhd: the SAs still
/// see nobody with the invalid token.
async fn child_claim(dev: &oxh_sdk::Device, oxhd_token: u32) {
    let claim = Caller {
        pid: 1,
        uid: 0,
        gid: 0,
        token_id: oxhd_token,
        token_type: TokenType::Native,
        process_name: "oxhd".into(),
    };
    let payload = encode(&claim);
    let c = dev.client();
    let who = c
        .call_raw(sa_id::SAMGR, samgr::WHOAMI, &payload)
        .await
        .map(|b| oxh_ipc::decode::<Caller>(&b).unwrap());
    emit(json!({ "whoami_with_claim": who.map_err(|e| e.to_string()), "pid": std::process::id() }));
    // The claim prefixed to a well-formed request, and as the whole payload of gated calls.
    for (sa, code, data) in [
        (sa_id::SAMGR, samgr::ECHO_CHECKED, payload.clone()),
        (sa_id::SAMGR, samgr::SUBSCRIBE_DEATHS, payload.clone()),
        (
            sa_id::ACCESS_TOKEN,
            atm::LIST_TOKENS,
            [payload.clone(), encode(&())].concat(),
        ),
        (sa_id::ACCESS_TOKEN, atm::DELETE_TOKEN, payload.clone()),
        (sa_id::HILOG, hilog::CLEAR, payload.clone()),
    ] {
        let r = match c.call_raw(sa, code, &data).await {
            Ok(_) => json!({ "ok": true }),
            Err(e) => err_json(&e),
        };
        emit(json!({ "sa": sa, "code": code, "result": r }));
    }
}

/// Not a test of its own: the entry point of the client processes the tests start (does
/// nothing unless [`CHILD_ENV`] is set).
#[tokio::test]
async fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut it = spec.splitn(3, ' ');
    let (mode, arg, dir) = (
        it.next().unwrap().to_string(),
        it.next().unwrap().parse::<u32>().unwrap(),
        it.next().unwrap().to_string(),
    );
    if mode == "setup" || mode == "setup_remote" || mode == "claim" {
        set_process_name("oxhd");
    }
    let dev_dir = dir.split(' ').next().unwrap_or_default().to_string();
    let dev = oxh_sdk::Device::connect(&dev_dir).await.unwrap();
    match mode.as_str() {
        "setup" => child_setup(&dev).await,
        "setup_remote" => child_setup_remote(&dev).await,
        "remote" => {
            let peer = dir.split(' ').nth(1).expect("remote needs DIR NETWORK_ID");
            child_remote(&dev, peer).await
        }
        "walk" => child_walk(&dev, arg).await,
        "claim" => child_claim(&dev, arg).await,
        m => panic!("unknown child mode {m}"),
    }
}

/// Runs [`child_process_entry`] in a new process, as `user` (through runuser) or as this
/// user; returns its result lines.
fn run_child(user: Option<&str>, mode: &str, arg: u32, dev: &TestDevice) -> Vec<Value> {
    run_child_with(user, mode, arg, dev, "")
}

/// [`run_child`] with one more word for the child (after the data dir).
fn run_child_with(
    user: Option<&str>,
    mode: &str,
    arg: u32,
    dev: &TestDevice,
    extra: &str,
) -> Vec<Value> {
    let spec = format!("{mode} {arg} {} {extra}", dev.data_dir().display());
    run_test_child(
        user,
        CHILD_ENV,
        spec.trim_end(),
        "atm::child_process_entry",
        RESULT,
    )
}

/// A device whose socket other users can reach (the data dir is 0700 by default).
fn device_for_other_users() -> TestDevice {
    let dev = TestDevice::start();
    dev.let_others_in();
    dev
}

/// What must not change when a caller without permissions tries everything.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sas: Vec<SaInfo>,
    dumps: Vec<(i32, String)>,
    params: Vec<(String, String)>,
    hilog_buffer_size: u64,
    hilog_marker_lines: usize,
    tokens: Vec<TokenInfo>,
    app: TokenDetail,
    usage: Vec<UsageRecord>,
}

async fn snapshot(dev: &oxh_sdk::Device, app: u32) -> Snapshot {
    let sas = dev.samgr().list().await.unwrap();
    let mut dumps = Vec::new();
    for sa in &sas {
        let d = dev.samgr().dump(sa.id, vec!["-v".into()]).await.unwrap();
        let kept: Vec<&str> = d
            .lines()
            .filter(|l| {
                !VOLATILE_DUMP_LINES
                    .iter()
                    .any(|(s, prefix, _)| *s == sa.id && l.starts_with(prefix))
            })
            .collect();
        dumps.push((sa.id, kept.join("\n")));
    }
    let marker = dev
        .hilog()
        .read(oxh_hilog::Filter::default(), None, None)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.tag == MARKER_TAG)
        .count();
    Snapshot {
        sas,
        dumps,
        params: dev.param().list("", true).await.unwrap(),
        hilog_buffer_size: dev.hilog().buffer_size().await.unwrap().size,
        hilog_marker_lines: marker,
        tokens: dev.atm().tokens().await.unwrap(),
        app: dev.atm().token(TokenTarget::Id(app)).await.unwrap(),
        usage: dev.atm().usage(&UsageArgs::default()).await.unwrap(),
    }
}

/// Creates the app the walk targets (through a child that is root named oxhd, the daemon's
/// native token, as only the bundle manager may create tokens) and gives the device some
/// state to keep: a granted user_grant permission, parameters, a log line.
async fn prepare(dev: &TestDevice, sdk: &oxh_sdk::Device) -> u32 {
    let setup = run_child(None, "setup", 0, dev);
    let who: Caller = serde_json::from_value(setup[0]["whoami"].clone()).unwrap();
    let tokens = sdk.atm().tokens().await.unwrap();
    let oxhd = tokens.iter().find(|t| t.name == "oxhd").unwrap().token_id;
    assert_eq!(
        (who.token_type, who.token_id),
        (TokenType::Native, oxhd),
        "root running a process named oxhd gets oxhd's token (names count for trusted uids)"
    );
    let app = setup[0]["app"].as_u64().unwrap() as u32;
    sdk.atm()
        .grant(TokenTarget::Id(app), CAMERA, flag::USER_SET)
        .await
        .unwrap();
    sdk.param().set("persist.atm.walk", "before").await.unwrap();
    sdk.param().set("debug.atm.walk", "1").await.unwrap();
    sdk.hilog()
        .info(
            0x0100,
            MARKER_TAG,
            "kept unless someone clears the buffer",
            &[],
        )
        .await
        .unwrap();
    app
}

#[tokio::test]
async fn a_caller_without_permissions_is_refused_by_every_gated_method_and_nothing_changes() {
    let test = "a_caller_without_permissions_is_refused_by_every_gated_method_and_nothing_changes";
    if !can_run_as_nobody(test) {
        return;
    }
    let dev = device_for_other_users();
    let sdk = dev.sdk().await;
    let app = prepare(&dev, &sdk).await;
    let tables = method_tables(&sdk).await;
    let before = snapshot(&sdk, app).await;
    assert!(
        before
            .app
            .permissions
            .iter()
            .any(|p| p.permission == CAMERA && p.granted)
    );
    assert_eq!(before.hilog_marker_lines, 1);

    let lines = run_child(Some("nobody"), "walk", app, &dev);
    let who: Caller = serde_json::from_value(lines[0]["whoami"].clone()).unwrap();
    assert_eq!(
        (who.uid, who.token_type, who.token_id),
        (65534, TokenType::Invalid, 0),
        "nobody holds the invalid token"
    );

    // Every gated method was called and refused: 202 for system-only ones, else 201 naming
    // the permission.
    let mut gated = 0;
    for (sa, methods) in &tables {
        for m in methods {
            if m.permission.is_none() && !m.system_only {
                continue;
            }
            gated += 1;
            let calls: Vec<&Value> = lines
                .iter()
                .filter(|l| l["sa"] == sa.id && l["code"] == m.code)
                .collect();
            assert!(!calls.is_empty(), "{}.{} was not called", sa.name, m.name);
            for c in calls {
                let r = &c["result"];
                let msg = r["message"].as_str().unwrap_or_default();
                if m.system_only {
                    assert_eq!(r["code"], 202, "{}.{}: {c}", sa.name, m.name);
                } else {
                    assert_eq!(r["code"], 201, "{}.{}: {c}", sa.name, m.name);
                    let p = m.permission.as_deref().unwrap();
                    assert!(
                        msg.contains(p),
                        "{}.{}: 201 names {p}: {msg}",
                        sa.name,
                        m.name
                    );
                }
            }
        }
    }
    assert!(gated >= 30, "only {gated} gated methods");
    let valid = lines.iter().filter(|l| l["payload"] == "valid").count();
    assert!(valid >= 20, "only {valid} well-formed attempts");
    eprintln!(
        "nobody: {gated} gated methods refused over {} calls ({valid} well-formed)",
        lines.iter().filter(|l| l.get("payload").is_some()).count()
    );
    // param's own rules refuse nobody's sets.
    for l in lines.iter().filter(|l| l.get("param_set").is_some()) {
        assert_eq!(
            l["result"]["code"],
            oxh_param::code::PERMISSION_DENIED,
            "{l}"
        );
    }

    let after = snapshot(&sdk, app).await;
    assert_eq!(before, after, "a refused caller changed the device's state");
    assert_eq!(sdk.param().get("persist.atm.walk").await.unwrap(), "before");
    assert!(sdk.param().get("debug.atm.nobody").await.is_err());
    // The refusals were counted by the access token manager.
    let d = sdk.samgr().dump(sa_id::ACCESS_TOKEN, vec![]).await.unwrap();
    let denied: u64 = d
        .lines()
        .find_map(|l| l.trim().strip_prefix("checks: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.strip_suffix(" denied"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checks line in {d}"));
    assert!(denied >= 20, "{d}");
}

#[tokio::test]
async fn a_caller_cannot_claim_another_identity() {
    let test = "a_caller_cannot_claim_another_identity";
    if !can_run_as_nobody(test) {
        return;
    }
    let dev = device_for_other_users();
    let sdk = dev.sdk().await;
    let tokens = sdk.atm().tokens().await.unwrap();
    let oxhd = tokens.iter().find(|t| t.name == "oxhd").unwrap().token_id;
    let lines = run_child(Some("nobody"), "claim", oxhd, &dev);
    let who: Caller = serde_json::from_value(lines[0]["whoami_with_claim"]["Ok"].clone())
        .unwrap_or_else(|e| panic!("{e}: {}", lines[0]));
    assert_eq!(who.uid, 65534, "uid from SO_PEERCRED, not the payload");
    assert_eq!(who.pid, lines[0]["pid"].as_i64().unwrap() as i32);
    assert_eq!(
        (who.token_type, who.token_id),
        (TokenType::Invalid, 0),
        "neither the payload nor the process name oxhd gives another user oxhd's token"
    );
    assert_eq!(
        who.process_name, "oxhd",
        "the name it chose is reported, not trusted"
    );
    let refused: Vec<&Value> = lines.iter().filter(|l| l.get("sa").is_some()).collect();
    assert_eq!(refused.len(), 5);
    for l in refused {
        let code = &l["result"]["code"];
        assert!(code == 201 || code == 202, "{l}");
    }
}

/// B's copy of A's token for [`REMOTE_APP`], if B holds one.
async fn remote_copy(b: &oxh_sdk::Device, a_udid: &str) -> Option<TokenInfo> {
    b.atm()
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == REMOTE_APP && t.remote_udid.as_deref() == Some(a_udid))
}

/// Waits (bounded) until B's copy of the app's token is in the wanted state.
async fn wait_copy(
    b: &oxh_sdk::Device,
    a_udid: &str,
    what: &str,
    ok: impl Fn(Option<&TokenInfo>) -> bool,
) {
    within(what, std::time::Duration::from_secs(5), async {
        loop {
            if ok(remote_copy(b, a_udid).await.as_ref()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_tokens_follow_grants_and_revocations_on_the_origin_device() {
    let test = "remote_tokens_follow_grants_and_revocations_on_the_origin_device";
    if !can_run_as_nobody(test) {
        return;
    }
    let (a, b) = crate::softbus::online_pair().await;
    a.let_others_in();
    let app = run_child(None, "setup_remote", 0, &a)[0]["app"]
        .as_u64()
        .unwrap() as u32;
    let b_net = b.ready_field("network_id");
    let a_udid = a.ready_field("udid");
    let sb = b.sdk().await;
    let call = || run_child_with(Some("nobody"), "remote", 0, &a, &b_net).remove(0);

    // DATASYNC is user_grant: DENIED on A, so B refuses, and says it checked.
    let r = call();
    let who: Caller = serde_json::from_value(r["whoami"].clone()).unwrap();
    assert_eq!((who.token_type, who.token_id), (TokenType::Hap, app), "{r}");
    assert_eq!(r["echo"]["code"], 201, "{r}");
    let msg = r["echo"]["message"].as_str().unwrap();
    assert!(msg.contains(DATASYNC) && msg.contains(&b_net[..8]), "{msg}");
    let copy = remote_copy(&sb, &a_udid)
        .await
        .expect("B holds a copy of the caller's token");
    assert_eq!(
        (copy.token_type, copy.granted),
        (TokenType::Hap, 1),
        "INTERNET only: {copy:?}"
    );
    assert_ne!(copy.token_id, app, "the copy has a local id of B's");

    // Granted on A: B lets the call through, under the copy's id, and still refuses what the
    // app does not hold (DUMP).
    a.oxh_ok(&["atm", "grant", REMOTE_APP, DATASYNC]);
    let r = call();
    assert_eq!(r["echo"], json!({ "ok": true, "data": "across" }), "{r}");
    assert_eq!(r["checked"]["code"], 201, "{r}");
    assert!(
        r["checked"]["message"]
            .as_str()
            .unwrap()
            .contains("ohos.permission.DUMP"),
        "{r}"
    );
    let rw: Caller = serde_json::from_value(r["remote_whoami"]["Ok"].clone()).unwrap();
    assert_eq!(
        (rw.token_type, rw.token_id),
        (TokenType::Hap, copy.token_id),
        "{r}"
    );
    assert!(rw.process_name.starts_with(REMOTE_APP), "{rw:?}");
    assert_eq!(
        b.oxh_ok(&["atm", "check", &copy.token_id.to_string(), DATASYNC])
            .trim(),
        "GRANTED"
    );

    let listing = b.oxh_ok(&["atm", "tokens"]);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(REMOTE_APP)
                && l.contains(&format!("[remote: device {}", &a_udid[..12]))),
        "{listing}"
    );

    // Revoked on A: the push reaches B's copy, and the next call is refused.
    a.oxh_ok(&["atm", "revoke", REMOTE_APP, DATASYNC]);
    wait_copy(&sb, &a_udid, "revocation pushed to B", |c| {
        c.is_some_and(|c| c.granted == 1)
    })
    .await;
    let r = call();
    assert_eq!(r["echo"]["code"], 201, "{r}");

    // Unbound: B drops every token copied from A.
    a.oxh_ok(&["device", "unbind", &b.ready_field("udid")]);
    wait_copy(&sb, &a_udid, "copies dropped at unbind", |c| c.is_none()).await;
    assert!(
        sb.atm()
            .tokens()
            .await
            .unwrap()
            .iter()
            .all(|t| t.remote_udid.is_none()),
        "no remote token left on B"
    );
}
