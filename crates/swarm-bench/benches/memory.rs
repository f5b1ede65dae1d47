//! Memory of the replicated state with 100,000 active claims: the bytes its
//! live allocations hold, per item, the resident set it adds, and the size of
//! its snapshot in the binary encoding swarmd writes.
//! The figure behind the "RSS at most 100 MB per node with 100k active
//! claims" target: what the state costs before sled and the runtime.
//!
//! It runs on swarmd's allocator (jemalloc) and reads jemalloc's own count of
//! allocated bytes (size-class rounding included), so freed leftovers (the
//! claim queue the claims emptied, each command once applied) do not count,
//! and every byte the state keeps does: commands are made one at a time,
//! after the first reading.
//!
//! Run: `cargo bench -p swarm-bench --bench memory`

use swarm_bench::workload::{claim, submit};
use swarm_claims::{State, apply};
use tikv_jemalloc_ctl::{epoch, stats};

/// swarmd's allocator, so the figure is what a node pays.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// This process's resident set, from /proc/self/status (Linux).
fn rss_bytes() -> isize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<isize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes held by live allocations, as jemalloc counts them now.
fn allocated_bytes() -> isize {
    let _ = epoch::advance();
    stats::allocated::read().map_or(0, |b| b as isize)
}

const ITEMS: usize = 100_000;

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // and wants a quick pass.
    let n = if std::env::args().any(|a| a == "--bench") {
        ITEMS
    } else {
        1_000
    };
    let (rss_before, allocated_before) = (rss_bytes(), allocated_bytes());
    let mut state = State::new();
    for i in 0..n {
        let _ = apply(&mut state, submit(i, 1));
    }
    for i in 0..n {
        let _ = apply(&mut state, claim(i, 64, 2));
    }
    let held = allocated_bytes() - allocated_before;
    let resident = rss_bytes() - rss_before;
    let snapshot = state.to_snapshot().unwrap_or_default();
    println!(
        "memory/state_{n}_active_claims: {:.1} MiB allocated ({} bytes per item), {:.1} MiB resident ({} bytes per item), snapshot {:.1} MiB, {} live claims",
        mib(held),
        held / n as isize,
        mib(resident),
        resident / n as isize,
        mib(snapshot.len() as isize),
        state.live_claims(),
    );
}
