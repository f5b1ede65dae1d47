//! Data dirs as swarmd wrote them before the binary formats (JSON log
//! entries, JSON snapshots in a file or in sled) load; damaged data is an
//! error that says what to do, never a panic. The legacy layouts are
//! written here by hand, with serde_json, as the old code did: these tests
//! pin them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openraft::RaftLogReader;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::log_id;
use swarm_claims::command::{Claim, StepDone, Submit};
use swarm_claims::{Command, Response, State, apply};
use swarm_raft::storage::Format;
use swarm_raft::{Entry, SledStore, SnapshotMeta, TypeConfig};
use tempfile::TempDir;

fn submit(i: usize) -> Command {
    Command::Submit(Submit {
        id: format!("item-{i:04}"),
        idempotency_key: format!("key-{i}"),
        kind: "task".into(),
        priority: 0,
        requires: Vec::new(),
        payload: format!(r#"{{"n":{i}}}"#),
        max_attempts: 0,
        now: 1_000,
    })
}

/// A state with pending and claimed items and step events.
fn some_state() -> State {
    let mut state = State::new();
    for i in 0..50 {
        apply(&mut state, submit(i)).unwrap();
    }
    let claim = Command::Claim(Claim {
        agent: "a1".into(),
        kinds: Vec::new(),
        capabilities: Vec::new(),
        max: 10,
        lease_ms: 60_000,
        now: 2_000,
    });
    let Ok(Response::Granted(items)) = apply(&mut state, claim) else {
        panic!("claim");
    };
    for item in items {
        let step = Command::StepDone(StepDone {
            id: item.id.to_string(),
            token: item.lease.unwrap().token,
            step: "s1".into(),
            outcome: "1".into(),
            now: 2_500,
        });
        apply(&mut state, step).unwrap();
    }
    state
}

fn meta_at(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id::<TypeConfig>(1, 1, index)),
        last_membership: Default::default(),
    }
}

/// Log entries 11..=15, each a submit.
fn entries() -> Vec<Entry> {
    (11..=15)
        .map(|i| Entry::new_normal(log_id::<TypeConfig>(1, 1, i), submit(i as usize)))
        .collect()
}

/// Writes what an older swarmd kept in sled, in JSON: the log entries
/// and the vote, plus `meta` records given as (key, JSON value).
fn write_legacy_sled(dir: &std::path::Path, meta: &[(&str, Vec<u8>)]) {
    let db = sled::open(dir).unwrap();
    let log = db.open_tree("raft_log").unwrap();
    for e in entries() {
        log.insert(e.index().to_be_bytes(), serde_json::to_vec(&e).unwrap())
            .unwrap();
    }
    let tree = db.open_tree("raft_meta").unwrap();
    let vote: swarm_raft::Vote = openraft::Vote::new_committed(1, 1);
    tree.insert("vote", serde_json::to_vec(&vote).unwrap())
        .unwrap();
    for (key, value) in meta {
        tree.insert(key.as_bytes(), value.as_slice()).unwrap();
    }
    db.flush().unwrap();
}

/// Opens the dir once the stores of a previous open have let go of it
/// (their flush thread ends a moment after they are dropped).
async fn open_when_free(dir: &std::path::Path) -> SledStore {
    for _ in 0..100 {
        match SledStore::open(dir, 1 << 20) {
            Err(swarm_raft::StorageOpenError::InUse { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stays in use", dir.display());
}

/// Opens the dir and checks that it holds `state` at index 10, the JSON
/// log entries after it, and that the snapshot is binary now.
async fn check_loads(dir: &std::path::Path, state: &State) {
    let store = open_when_free(dir).await;
    let (mut log, mut sm) = store.stores().unwrap();
    assert_eq!(&sm.read(|s| s.clone()), state);
    assert_eq!(sm.applied_state().await.unwrap().0, meta_at(10).last_log_id);
    assert_eq!(log.try_get_log_entries(11..16).await.unwrap(), entries());
    let log_state = log.get_log_state().await.unwrap();
    assert_eq!(log_state.last_log_id, Some(log_id::<TypeConfig>(1, 1, 15)));
    assert!(log.read_vote().await.unwrap().is_some());
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, meta_at(10));
    assert_eq!(current.snapshot.verify().unwrap(), Format::Binary);
    assert_eq!(&current.snapshot.read_state().unwrap().0, state);
    let files: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".bin"), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_snapshot_file_and_json_log_entries_load() {
    let dir = TempDir::new().unwrap();
    let state = some_state();
    let name = "snapshot-T1-N1.10.json";
    std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
    let body = serde_json::json!({ "state": state });
    std::fs::write(
        dir.path().join("snapshots").join(name),
        serde_json::to_vec(&body).unwrap(),
    )
    .unwrap();
    let record = serde_json::json!({ "meta": meta_at(10), "file": name });
    write_legacy_sled(
        dir.path(),
        &[("snapshot", serde_json::to_vec(&record).unwrap())],
    );
    check_loads(dir.path(), &state).await;
    // And again, now from the binary snapshot it was rewritten to.
    check_loads(dir.path(), &state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_snapshot_kept_in_sled_loads() {
    let dir = TempDir::new().unwrap();
    let state = some_state();
    let body = serde_json::json!({ "state": state });
    write_legacy_sled(
        dir.path(),
        &[
            ("snapshot_meta", serde_json::to_vec(&meta_at(10)).unwrap()),
            ("snapshot_data", serde_json::to_vec(&body).unwrap()),
        ],
    );
    check_loads(dir.path(), &state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_entry_is_an_error_that_says_what_to_do() {
    let dir = TempDir::new().unwrap();
    write_legacy_sled(dir.path(), &[]);
    {
        let db = sled::open(dir.path()).unwrap();
        let log = db.open_tree("raft_log").unwrap();
        log.insert(13u64.to_be_bytes(), b"\x01\xff\xff".as_slice())
            .unwrap();
        log.insert(
            14u64.to_be_bytes(),
            b"\x05binary from the future".as_slice(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let store = open_when_free(dir.path()).await;
    let (mut log, _sm) = store.stores().unwrap();
    let err = log.try_get_log_entries(11..16).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("raft log entry 13"), "{msg}");
    assert!(msg.contains("empty its data dir"), "{msg}");
    let err = log.try_get_log_entries(14..16).await.unwrap_err();
    assert!(
        err.to_string().contains("format tag 0x05 is unknown"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_file_stops_the_start_with_what_to_do() {
    let dir = TempDir::new().unwrap();
    let state = some_state();
    {
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (_log, mut sm) = store.stores().unwrap();
        let built = dir.path().join("built.bin");
        let file = swarm_raft::SnapshotFile::create(&built, &state).unwrap();
        sm.install_snapshot(&meta_at(10), file).await.unwrap();
        std::fs::remove_file(built).unwrap();
    }
    let stored = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&stored, bytes).unwrap();

    let store = open_when_free(dir.path()).await;
    let Err(err) = store.stores() else {
        panic!("a damaged snapshot loaded");
    };
    let msg = err.to_string();
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains(&stored.display().to_string()), "{msg}");
    assert!(msg.contains("empty its data dir"), "{msg}");
}

/// A snapshot file of format version 1 (before queue control), its body as
/// the swarmd of that version encoded `some_state()`
/// (`fixtures/state-v1.bincode`, written by that version), reads as the same
/// state: its items have no queue control, and there are no limits or
/// schedules.
#[test]
fn a_snapshot_of_format_version_1_reads_as_the_same_state() {
    let body = include_bytes!("fixtures/state-v1.bincode");
    let mut file = b"SWARMSNP\x01".to_vec();
    file.extend_from_slice(body);
    file.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.bin");
    std::fs::write(&path, &file).unwrap();
    let snapshot = swarm_raft::storage::SnapshotFile::open(&path).unwrap();
    assert_eq!(snapshot.verify().unwrap(), Format::BinaryV1);
    let (state, format) = snapshot.read_state().unwrap();
    assert_eq!(format, Format::BinaryV1);
    assert_eq!(state, some_state());
    assert_eq!(state.limits().count() + state.schedules().count(), 0);
}
