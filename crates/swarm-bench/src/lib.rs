//! Swarm's benchmarks. Targets for speed and memory live here, never as
//! timing assertions in tests: the benches report figures, the tests assert
//! behaviour.
//!
//! # Layout
//! - `benches/state_machine.rs`: `apply()` throughput for submits and claims,
//!   one command per entry and grouped in `Batch` entries.
//! - [`workload`]: command generators shared by the benches.

pub mod workload {
    //! Deterministic command streams for the benches.

    use swarm_claims::Command;
    use swarm_claims::command::{Claim, Submit};

    /// `n` submits of type `task`, priority cycling over 0..8.
    pub fn submits(n: usize, now: u64) -> Vec<Command> {
        (0..n)
            .map(|i| {
                Command::Submit(Submit {
                    id: format!("w{i:08}"),
                    idempotency_key: format!("k{i:08}"),
                    kind: "task".into(),
                    priority: (i % 8) as i32,
                    requires: Vec::new(),
                    payload: "{\"n\":1}".into(),
                    max_attempts: 0,
                    now,
                })
            })
            .collect()
    }

    /// `n` single-item claims by `agents` agents in turn.
    pub fn claims(n: usize, agents: usize, now: u64) -> Vec<Command> {
        (0..n)
            .map(|i| {
                Command::Claim(Claim {
                    agent: format!("agent-{}", i % agents.max(1)),
                    kinds: vec!["task".into()],
                    capabilities: Vec::new(),
                    max: 1,
                    lease_ms: 30_000,
                    now,
                })
            })
            .collect()
    }
}
