//! `apply()` throughput: how many claims the state machine itself can grant
//! per second, the ceiling above Raft and the disk.
//!
//! Run: `cargo bench -p swarm-bench --bench state_machine`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use swarm_bench::workload::{claims, submits};
use swarm_claims::{Command, State, apply};

const ITEMS: usize = 10_000;

fn loaded_state() -> State {
    let mut state = State::new();
    for cmd in submits(ITEMS, 1) {
        let _ = apply(&mut state, cmd);
    }
    state
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("submit_10k", |b| {
        b.iter_batched(
            || submits(ITEMS, 1),
            |cmds| {
                let mut state = State::new();
                for cmd in cmds {
                    let _ = apply(&mut state, cmd);
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("claim_10k_one_per_entry", |b| {
        b.iter_batched(
            || (loaded_state(), claims(ITEMS, 64, 2)),
            |(mut state, cmds)| {
                for cmd in cmds {
                    let _ = apply(&mut state, cmd);
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("claim_10k_in_batches_of_64", |b| {
        b.iter_batched(
            || {
                let mut cmds = claims(ITEMS, 64, 2);
                let mut batches = Vec::new();
                while !cmds.is_empty() {
                    let rest = cmds.split_off(cmds.len().min(64));
                    batches.push(Command::Batch(cmds));
                    cmds = rest;
                }
                (loaded_state(), batches)
            },
            |(mut state, batches)| {
                for cmd in batches {
                    let _ = apply(&mut state, cmd);
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
