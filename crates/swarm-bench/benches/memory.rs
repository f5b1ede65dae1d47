//! Memory of the replicated state: resident bytes held by a [`State`] with
//! 100,000 active claims, per item, and the size of its snapshot in the
//! binary encoding swarmd writes.
//! The figure behind the "RSS at most 100 MB per node with 100k active
//! claims" target: what the state costs before sled, the runtime and
//! allocator slack.
//!
//! Run: `cargo bench -p swarm-bench --bench memory`

use swarm_bench::workload::{claims, submits};
use swarm_claims::{State, apply};

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
    let cmds: Vec<_> = submits(n, 1).into_iter().chain(claims(n, 64, 2)).collect();
    let before = rss_bytes();
    let mut state = State::new();
    for cmd in cmds {
        let _ = apply(&mut state, cmd);
    }
    let held = rss_bytes() - before;
    let snapshot = state.to_snapshot().unwrap_or_default();
    println!(
        "memory/state_{n}_active_claims: {:.1} MiB resident ({} bytes per item), snapshot {:.1} MiB, {} live claims",
        mib(held),
        held / n as isize,
        mib(snapshot.len() as isize),
        state.live_claims(),
    );
}
