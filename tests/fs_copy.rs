//! Cross-device copy (`fs.copy` with a progress listener and a task signal) between two bound
//! devices on loopback: the peer's file daemon sends the file over the soft bus (no FUSE
//! needed), bytes arrive whole, progress only grows and ends at the total, a cancelled copy
//! leaves neither the file nor a temp, an unreachable peer is 13900044, the 11th concurrent
//! copy and a copy of 501 files are refused with their codes. With root and FUSE also
//! `oxh fs ls/cat/stat/mv/rm` on a remote URI, through the device view.

use crate::common::{TestDevice, within};
use crate::hmdfs::{pair_at, runnable, tree, view_of};
use oxh_dfs::api::{self, CopySession, PrepareSessionArgs};
use oxh_dfs::copy::{MAX_CONCURRENT_COPIES, MAX_FILES_PER_COPY};
use oxh_dfs::errcode;
use oxh_ipc::sa_id::DISTRIBUTED_FILE;
use oxh_sdk::fs::TaskSignal;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BUNDLE: &str = "com.example.copy";
const COPY_BOUND: Duration = Duration::from_secs(60);

/// The app's shared dir in `d`'s account tree (what `distributedfiles` URIs name).
fn shared(d: &TestDevice) -> PathBuf {
    let p = tree(d).join("data").join(BUNDLE);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn uri_on(d: &TestDevice, name: &str) -> String {
    format!(
        "file://{BUNDLE}/data/storage/el2/distributedfiles/{name}?networkid={}",
        d.ready_field("network_id")
    )
}

fn code_of(e: &oxh_sdk::Error) -> i32 {
    match e {
        oxh_sdk::Error::Remote(r) => r.code,
        other => panic!("not a remote error: {other}"),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_crosses_devices_whole_with_progress_and_cancellation_leaves_nothing() {
    let (a, b) = pair_at("SL3", "SL3").await;
    let data = pattern(24 << 20, 7);
    std::fs::write(shared(&b).join("big.bin"), &data).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dev = a.sdk().await;
    let mut seen = Vec::new();
    let n = within(
        "the copy",
        COPY_BOUND,
        dev.fs().copy(
            &uri_on(&b, "big.bin"),
            &out.path().join("big.bin"),
            &TaskSignal::default(),
            |p| seen.push((p.processed_size, p.total_size)),
        ),
    )
    .await
    .expect("copied");
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(out.path().join("big.bin")).unwrap(), data);
    assert_eq!(names(out.path()), ["big.bin"], "no temp left");
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert!(seen.iter().all(|(_, t)| *t == n));
    assert_eq!(seen.last(), Some(&(n, n)));

    // The CLI: same copy, printed figures (stderr is no terminal: no bar).
    let cli_out = out.path().join("cli");
    std::fs::create_dir(&cli_out).unwrap();
    let printed = a.oxh_ok(&[
        "fs",
        "cp",
        &uri_on(&b, "big.bin"),
        cli_out.to_str().unwrap(),
    ]);
    assert!(printed.contains(&format!("copied {n} bytes")), "{printed}");
    assert_eq!(std::fs::read(cli_out.join("big.bin")).unwrap(), data);

    // Cancelled at the first progress event: an error, and nothing in the directory.
    let big = pattern(128 << 20, 9);
    std::fs::write(shared(&b).join("huge.bin"), &big).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let signal = TaskSignal::default();
    let s2 = signal.clone();
    let r = within(
        "the cancelled copy",
        COPY_BOUND,
        dev.fs().copy(
            &uri_on(&b, "huge.bin"),
            &empty.path().join("huge.bin"),
            &signal,
            move |_| s2.cancel(),
        ),
    )
    .await;
    let e = r.expect_err("cancelled");
    assert_eq!(code_of(&e), errcode::E_INTR.code, "{e}");
    assert!(names(empty.path()).is_empty(), "{:?}", names(empty.path()));
    // Its slot is free again.
    let dump = a.oxh_ok(&["hidumper", "-s", "5201"]);
    assert!(dump.contains("copies running: 0"), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_and_bad_input_get_openharmonys_codes() {
    let (a, b) = pair_at("SL3", "SL3").await;
    let out = tempfile::tempdir().unwrap();
    let dev = a.sdk().await;
    let nowhere = format!("file://{BUNDLE}/data/storage/el2/distributedfiles/x?networkid=nowhere");
    let e = dev
        .fs()
        .copy(
            &nowhere,
            &out.path().join("x"),
            &TaskSignal::default(),
            |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), errcode::E_NETUNREACH.code, "{e}");
    let err = a.oxh_err(&["fs", "cp", &nowhere, out.path().to_str().unwrap()]);
    assert!(
        err.contains("13900044") && err.contains("Network is unreachable"),
        "{err}"
    );
    // A file the peer lacks: 13900002, from the peer's open.
    let e = dev
        .fs()
        .copy(
            &uri_on(&b, "missing"),
            &out.path().join("m"),
            &TaskSignal::default(),
            |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), errcode::E_NOENT.code, "{e}");
    // A path out of the shared dir, and a local file that is not there.
    let e = dev
        .fs()
        .copy(
            &format!("file://{BUNDLE}/data/storage/el2/distributedfiles/../base/x?networkid=n"),
            &out.path().join("y"),
            &TaskSignal::default(),
            |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), errcode::E_INVAL.code, "{e}");
    let err = a.oxh_err(&["fs", "cat", "/nonexistent/oxh-file"]);
    assert!(err.contains("13900002 No such file or directory"), "{err}");
    assert!(
        names(out.path()).is_empty(),
        "nothing made: {:?}",
        names(out.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_concurrent_copy_and_501_files_are_refused() {
    let (a, b) = pair_at("SL3", "SL3").await;
    std::fs::write(shared(&b).join("one"), b"1").unwrap();
    let dev = a.sdk().await;
    let c = dev.client();
    let args = |paths: Vec<String>| PrepareSessionArgs {
        network_id: b.ready_field("network_id"),
        paths,
        sub: 0,
    };
    let one = || vec![format!("data/{BUNDLE}/one")];
    let mut tasks = Vec::new();
    for _ in 0..MAX_CONCURRENT_COPIES {
        let s: CopySession = c
            .call(DISTRIBUTED_FILE, api::PREPARE_SESSION, &args(one()))
            .await
            .expect("admitted");
        assert_eq!(s.sizes, [1]);
        tasks.push(s.task);
    }
    let e = c
        .call::<_, CopySession>(DISTRIBUTED_FILE, api::PREPARE_SESSION, &args(one()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("13900010"), "{e}");
    assert!(matches!(&e, oxh_ipc::IpcError::Remote(r) if r.code == errcode::E_AGAIN.code));
    // One ends: the next is admitted.
    c.call::<_, ()>(
        DISTRIBUTED_FILE,
        api::CANCEL_COPY_TASK,
        &tasks.pop().unwrap(),
    )
    .await
    .unwrap();
    let s: CopySession = c
        .call(DISTRIBUTED_FILE, api::PREPARE_SESSION, &args(one()))
        .await
        .expect("admitted after one ended");
    tasks.push(s.task);
    for t in tasks {
        c.call::<_, ()>(DISTRIBUTED_FILE, api::CANCEL_COPY_TASK, &t)
            .await
            .unwrap();
    }
    let e = c
        .call::<_, ()>(DISTRIBUTED_FILE, api::CANCEL_COPY_TASK, &12345u64)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, oxh_ipc::IpcError::Remote(r) if r.code == errcode::E_NOTASK.code),
        "{e}"
    );
    let many: Vec<String> = (0..=MAX_FILES_PER_COPY)
        .map(|i| format!("data/{BUNDLE}/f{i}"))
        .collect();
    let e = c
        .call::<_, CopySession>(DISTRIBUTED_FILE, api::PREPARE_SESSION, &args(many))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, oxh_ipc::IpcError::Remote(r) if r.code == errcode::E_INVAL.code),
        "{e}"
    );
    // 500 files are one copy.
    let dir = shared(&b).join("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..MAX_FILES_PER_COPY {
        std::fs::write(dir.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let srcs: Vec<String> = (0..MAX_FILES_PER_COPY)
        .map(|i| uri_on(&b, &format!("many/f{i}")))
        .collect();
    let dsts: Vec<PathBuf> = (0..MAX_FILES_PER_COPY)
        .map(|i| out.path().join(format!("f{i}")))
        .collect();
    let mut last = (0, 0);
    within(
        "500 files",
        COPY_BOUND,
        dev.fs()
            .copy_files(&srcs, &dsts, &TaskSignal::default(), |p| {
                last = (p.processed_size, p.total_size)
            }),
    )
    .await
    .expect("500 files copied");
    assert_eq!(names(out.path()).len(), MAX_FILES_PER_COPY);
    assert_eq!(std::fs::read(out.path().join("f499")).unwrap(), b"file 499");
    assert_eq!(last.0, last.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxh_fs_lists_reads_stats_moves_and_removes_a_remote_uri() {
    if !runnable("fs_copy remote uri") {
        return;
    }
    let (a, b) = pair_at("SL3", "SL3").await;
    let dir = shared(&b);
    std::fs::write(dir.join("r.txt"), b"remote text").unwrap();
    view_of(&a, &b).await;
    let dir_uri = uri_on(&b, "");
    let ls = a.oxh_ok(&["fs", "ls", &dir_uri]);
    assert!(ls.contains("r.txt") && ls.contains("file"), "{ls}");
    assert_eq!(
        a.oxh_ok(&["fs", "cat", &uri_on(&b, "r.txt")]),
        "remote text"
    );
    let st = a.oxh_ok(&["fs", "stat", &uri_on(&b, "r.txt")]);
    assert!(st.contains("type=file") && st.contains("size=11"), "{st}");
    a.oxh_ok(&["fs", "mv", &uri_on(&b, "r.txt"), &uri_on(&b, "s.txt")]);
    assert_eq!(std::fs::read(dir.join("s.txt")).unwrap(), b"remote text");
    assert!(!dir.join("r.txt").exists());
    let err = a.oxh_err(&["fs", "cat", &uri_on(&b, "r.txt")]);
    assert!(err.contains("13900002 No such file or directory"), "{err}");
    a.oxh_ok(&["fs", "rm", &uri_on(&b, "s.txt")]);
    assert!(!dir.join("s.txt").exists());
}
