//! The Raft log's write path: append entries to the log store (its segment
//! files) and wait until they are durable (one fdatasync, shared by every
//! append that arrived while the previous one ran). The floor under every
//! acknowledged write's latency on this disk.
//!
//! Run: `cargo bench -p swarm-bench --bench log_append`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::log_id;
use openraft::type_config::TypeConfigExt;
use swarm_bench::workload::submits;
use swarm_raft::{Entry, LogStore, SledStore, TypeConfig};

/// A log store in a fresh temporary directory.
fn fresh_log() -> (tempfile::TempDir, LogStore) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SledStore::open(dir.path(), 16 << 20).expect("open sled");
    let (log, _sm) = store.stores().expect("open the stores");
    (dir, log)
}

/// `n` entries carrying one submit each, from index `first`.
fn entries(first: u64, n: usize) -> Vec<Entry> {
    submits(n, 1)
        .into_iter()
        .enumerate()
        .map(|(i, cmd)| Entry::new_normal(log_id::<TypeConfig>(1, 1, first + i as u64), cmd))
        .collect()
}

async fn append_durably(log: &mut LogStore, batch: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    log.append(batch, IOFlushed::signal(tx))
        .await
        .expect("append");
    rx.await.expect("flush callback").expect("flush");
}

fn bench_log_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("log_append");
    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        let (_dir, mut log) = fresh_log();
        let mut next = 1u64;
        group.bench_function(format!("durable_batch_of_{batch}"), |b| {
            b.iter_batched(
                || {
                    let e = entries(next, batch);
                    next += batch as u64;
                    e
                },
                |e| rt.block_on(append_durably(&mut log, e)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_log_append);
criterion_main!(benches);
