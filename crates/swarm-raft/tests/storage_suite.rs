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
/// as if it directly followed i.
#[tokio::test]
async fn log_reads_stop_at_a_hole_instead_of_skipping_it() {
    use openraft::RaftLogReader;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::testing::blank_ent;

    let dir = TempDir::new().unwrap();
    let store = SledStore::open(dir.path(), 1 << 20).unwrap();
    let (mut log, _sm) = store.stores().unwrap();
    let entries = [1, 2, 4].map(|i| blank_ent::<TypeConfig>(1, 1, i));
    log.append(entries, IOFlushed::noop()).await.unwrap();
    let got = log.try_get_log_entries(1..5).await.unwrap();
    let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index()).collect();
    assert_eq!(indexes, [1, 2]);
}
