//! Swarm's benchmarks. Targets for speed and memory live here, never as
//! timing assertions in tests: the benches report figures, the tests assert
//! behaviour.
//!
//! # Layout
//! - `benches/state_machine.rs`: `apply()` throughput for submits and claims,
//!   one command per entry and grouped in `Batch` entries.
//! - [`client`]: the calls the load tools share: one agent's submit → claim
//!   → complete ([`client::SwarmClaimer`]) and a workflow to completion.
//! - [`workload`]: command generators and the five-step workflow shared by
//!   the benches and the load tools.
//! - [`soak`]: the soak benchmark: millions of items through a real cluster
//!   while every node's memory, snapshot and log are sampled, then a
//!   whole-cluster restart; its table, JSON and SVG curves.
//! - `src/bin/swarm-load.rs`: load against a running cluster.
//! - `src/bin/swarm-vs-etcd.rs`: the claim workload against Swarm and etcd,
//!   failover and memory fill (etcd side behind the `etcd` feature), for
//!   `scripts/bench.sh`.
//! - `src/bin/swarm-ceiling.rs`: the no-consensus server of the bench's
//!   ceiling column.
//! - `src/bin/swarm-soak.rs`: runs [`soak`] for `scripts/soak.sh`.

pub mod client {
    //! Calls the load tools share.

    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail};
    use swarm_proto::v1::work_service_client::WorkServiceClient;
    use swarm_proto::v1::{ClaimRequest, CompleteRequest, SubmitRequest, WatchWorkRequest};
    use tonic::transport::Channel;

    /// One agent of the claim workload: it submits items of one work type,
    /// claims them under a lease and completes them.
    pub struct SwarmClaimer {
        client: WorkServiceClient<Channel>,
        agent: String,
        /// The work type of this run, so items left by earlier runs do not
        /// change what is claimed.
        kind: String,
        lease_ms: u64,
    }

    impl SwarmClaimer {
        pub fn new(
            client: WorkServiceClient<Channel>,
            agent: String,
            kind: String,
            lease_ms: u64,
        ) -> Self {
            Self {
                client,
                agent,
                kind,
                lease_ms,
            }
        }

        /// Submits one item of the run's type with `payload_json`.
        pub async fn submit(&mut self, payload_json: String) -> Result<()> {
            self.client
                .submit(SubmitRequest {
                    r#type: self.kind.clone(),
                    payload_json,
                    ..Default::default()
                })
                .await?;
            Ok(())
        }

        /// Claims up to `max` items; returns each one's id and fencing token.
        pub async fn claim(&mut self, max: u32) -> Result<Vec<(String, u64)>> {
            let items = self
                .client
                .claim(ClaimRequest {
                    agent: self.agent.clone(),
                    types: vec![self.kind.clone()],
                    max,
                    lease_ms: self.lease_ms,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .items;
            Ok(items
                .into_iter()
                .map(|item| {
                    let token = item.claim.map(|c| c.token).unwrap_or(0);
                    (item.id, token)
                })
                .collect())
        }

        /// Completes a claimed item with no result.
        pub async fn complete(&mut self, id: String, token: u64) -> Result<()> {
            self.client
                .complete(CompleteRequest {
                    id,
                    token,
                    result_json: String::new(),
                })
                .await?;
            Ok(())
        }
    }

    /// Submits one workflow with `payload` (`{"spec", "inputs"}`) and
    /// watches it until it completes: the time from submit to its
    /// `completed` event. A failed or cancelled workflow is an error.
    pub async fn workflow_to_completion(
        c: &mut WorkServiceClient<Channel>,
        payload: String,
    ) -> Result<Duration> {
        let t = Instant::now();
        let id = c
            .submit(SubmitRequest {
                r#type: "workflow".into(),
                payload_json: payload,
                ..Default::default()
            })
            .await?
            .into_inner()
            .item
            .context("submit returned no item")?
            .id;
        let mut events = c
            .watch_work(WatchWorkRequest {
                id: id.clone(),
                from_start: true,
            })
            .await?
            .into_inner();
        while let Some(ev) = events.message().await? {
            match ev.kind.as_str() {
                "completed" => return Ok(t.elapsed()),
                "failed" | "cancelled" => bail!("workflow {id} ended {}: {}", ev.kind, ev.detail),
                _ => {}
            }
        }
        bail!("watch of {id} ended before the workflow did")
    }
}

pub mod workload {
    //! Deterministic command streams for the benches.

    use swarm_claims::Command;
    use swarm_claims::command::{Claim, Submit};

    /// A workflow of five no-op `echo` steps, each depending on the one
    /// before: the reactor's cost per step with nothing else in the way.
    pub const FIVE_NOOP_STEPS: &str = "name: noop5\nsteps:\n  - { name: s1, run: echo, arguments: { v: value(1) } }\n  - { name: s2, run: echo, arguments: { v: result(s1.v) } }\n  - { name: s3, run: echo, arguments: { v: result(s2.v) } }\n  - { name: s4, run: echo, arguments: { v: result(s3.v) } }\n  - { name: s5, run: echo, arguments: { v: result(s4.v) } }\nreturn: s5.v\n";

    /// `n` submits of type `task`, priority cycling over 0..8.
    pub fn submits(n: usize, now: u64) -> Vec<Command> {
        (0..n).map(|i| submit(i, now)).collect()
    }

    /// The `i`th of [`submits`].
    pub fn submit(i: usize, now: u64) -> Command {
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
    }

    /// `n` single-item claims by `agents` agents in turn.
    pub fn claims(n: usize, agents: usize, now: u64) -> Vec<Command> {
        (0..n).map(|i| claim(i, agents, now)).collect()
    }

    /// The `i`th of [`claims`].
    pub fn claim(i: usize, agents: usize, now: u64) -> Command {
        Command::Claim(Claim {
            agent: format!("agent-{}", i % agents.max(1)),
            kinds: vec!["task".into()],
            capabilities: Vec::new(),
            max: 1,
            lease_ms: 30_000,
            now,
        })
    }
}

pub mod soak;
