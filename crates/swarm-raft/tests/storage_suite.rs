//! openraft's storage conformance suite against the sled log and
//! state-machine stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use swarm_raft::{LogStore, SledStore, StateMachineStore, TypeConfig};
use tempfile::TempDir;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = TempDir::new().expect("temp dir");
        let store = SledStore::open(dir.path(), 16 * 1024 * 1024).expect("open sled");
        let (log, sm) = store.stores().expect("stores");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_stores_pass_openraft_suite() {
    Suite::test_all(SledBuilder).await.unwrap();
}

#[tokio::test]
async fn second_open_of_a_data_dir_says_in_use() {
    let dir = TempDir::new().unwrap();
    let _first = SledStore::open(dir.path(), 1 << 20).unwrap();
    let err = SledStore::open(dir.path(), 1 << 20).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

/// Regression (chaos run, seed 20261124, replica divergence): a log read must
/// never return entries from beyond a hole, or the caller applies index i+2
/// as if it directly followed i. The log now refuses the append that would
/// make the hole, with an error that names it, and keeps what it had.
#[tokio::test]
async fn an_append_that_would_leave_a_hole_is_refused_and_reads_stay_contiguous() {
    use openraft::RaftLogReader;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::testing::blank_ent;

    let dir = TempDir::new().unwrap();
    let store = SledStore::open(dir.path(), 1 << 20).unwrap();
    let (mut log, _sm) = store.stores().unwrap();
    let entries = [1, 2].map(|i| blank_ent::<TypeConfig>(1, 1, i));
    log.append(entries, IOFlushed::noop()).await.unwrap();
    let err = log
        .append([blank_ent::<TypeConfig>(1, 1, 4)], IOFlushed::noop())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("log index 4 would leave a hole"),
        "{err}"
    );
    let got = log.try_get_log_entries(1..5).await.unwrap();
    let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index()).collect();
    assert_eq!(indexes, [1, 2]);
}

/// A data dir of a swarmd that kept the Raft log in sled (in JSON, as the
/// oldest ones did) opens with its log moved into segment files: every
/// entry after the purge point readable, in order, and still there after
/// the next open, with sled's copy gone.
#[tokio::test]
async fn a_log_kept_in_sled_by_an_older_swarmd_is_moved_into_segment_files() {
    use openraft::testing::{blank_ent, log_id};
    use openraft::{RaftLogReader, storage::RaftLogStorage};

    let dir = TempDir::new().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("raft_log").unwrap();
        for i in 1..=50u64 {
            let entry = blank_ent::<TypeConfig>(2, 1, i);
            tree.insert(i.to_be_bytes(), serde_json::to_vec(&entry).unwrap())
                .unwrap();
        }
        let meta = db.open_tree("raft_meta").unwrap();
        let purged = log_id::<TypeConfig>(2, 1, 10);
        meta.insert("last_purged", serde_json::to_vec(&purged).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (mut log, _sm) = store.stores().unwrap();
        let got = log.try_get_log_entries(0..100).await.unwrap();
        let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index()).collect();
        assert_eq!(indexes, (11..=50).collect::<Vec<_>>());
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(50));
        assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(10));
        assert!(dir.path().join("raft-log").is_dir());
    }
    let db = sled::open(dir.path()).unwrap();
    assert!(db.open_tree("raft_log").unwrap().is_empty());
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                // Allocated, not apparent, size: log segments are sparse.
                std::os::unix::fs::MetadataExt::blocks(&meta) * 512
            }
        })
        .sum()
}

/// Regression (a 10-minute chaos run filled the disk: 18 GB of sled blobs
/// in three data dirs): the snapshot body lived in sled beside the vote and
/// the committed index, and every time sled rewrote that page it wrote the
/// whole multi-megabyte snapshot again. The body is a file now; small
/// writes beside its record must not grow the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_meta_writes_do_not_rewrite_the_snapshot() {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::testing::log_id;
    use swarm_claims::command::Submit;
    use swarm_claims::{Command, State};

    let dir = TempDir::new().unwrap();
    let store = SledStore::open(dir.path(), 16 << 20).unwrap();
    let (mut log, mut sm) = store.stores().unwrap();

    let mut state = State::new();
    for i in 0..10_000 {
        let cmd = Command::Submit(Submit {
            id: format!("item-{i:06}"),
            idempotency_key: String::new(),
            kind: "task".into(),
            priority: 0,
            requires: Vec::new(),
            payload: format!("\"{}\"", "x".repeat(400)),
            max_attempts: 0,
            now: 1,
        });
        swarm_claims::apply(&mut state, cmd).unwrap();
    }
    let written = dir.path().join("built.bin");
    let body = swarm_raft::SnapshotFile::create(&written, &state).unwrap();
    let body_len = body.len().unwrap();
    assert!(body_len > 4 << 20, "snapshot of {body_len} bytes");
    let meta = swarm_raft::SnapshotMeta {
        last_log_id: Some(log_id::<TypeConfig>(1, 1, 10)),
        last_membership: Default::default(),
    };
    sm.install_snapshot(&meta, body).await.unwrap();
    std::fs::remove_file(&written).unwrap();

    let vote = openraft::Vote::new_committed(1, 1);
    for i in 11..600 {
        log.save_committed(Some(log_id::<TypeConfig>(1, 1, i)))
            .await
            .unwrap();
        log.save_vote(&vote).await.unwrap();
    }
    let bytes = dir_bytes(dir.path());
    assert!(
        bytes < 8 * body_len,
        "the store holds {bytes} bytes after small writes beside a {body_len}-byte snapshot"
    );
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, meta.last_log_id);
    assert_eq!(current.snapshot.read_state().unwrap().0, state);
}
