//! What the consensus layer counts, as Prometheus metrics: the proposer's
//! batches and commit latency, snapshots built and installed, and what the
//! state machine applied (claims granted, renewals, lease expiries, stale
//! tokens refused, completions and failures by type). Every replica applies
//! every entry, so the applied counts of every node move together.
//!
//! [`RaftMetrics`] is a set of handles (cheap clones of shared atomics);
//! [`RaftMetrics::register`] adds them to the node's registry. No label
//! takes an item id or an agent name: types are the only open label, and a
//! cluster has a handful of them.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use swarm_claims::{ClaimError, Command, Response, Status};

/// A work type, the one label of the applied counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

/// The consensus layer's metrics.
#[derive(Debug, Clone)]
pub struct RaftMetrics {
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub queue_depth: Gauge,
    pub forwarded: Counter,
    pub snapshot_builds: Counter,
    pub snapshot_build_seconds: Histogram,
    pub snapshot_installs: Counter,
    pub snapshot_install_seconds: Histogram,
    pub snapshot_bytes: Gauge,
    pub elections: Counter,
    pub leader_changes: Counter,
    pub claims_granted: Counter,
    pub renewals: Counter,
    pub lease_expiries: Counter,
    pub stale_tokens: Counter,
    pub completions: Family<TypeLabel, Counter>,
    pub failures: Family<TypeLabel, Counter>,
    pub retries: Family<TypeLabel, Counter>,
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for RaftMetrics {
    fn default() -> Self {
        RaftMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: seconds_histogram(),
            queue_depth: Gauge::default(),
            forwarded: Counter::default(),
            snapshot_builds: Counter::default(),
            snapshot_build_seconds: seconds_histogram(),
            snapshot_installs: Counter::default(),
            snapshot_install_seconds: seconds_histogram(),
            snapshot_bytes: Gauge::default(),
            elections: Counter::default(),
            leader_changes: Counter::default(),
            claims_granted: Counter::default(),
            renewals: Counter::default(),
            lease_expiries: Counter::default(),
            stale_tokens: Counter::default(),
            completions: Family::default(),
            failures: Family::default(),
            retries: Family::default(),
        }
    }
}

/// What kind of command an applied entry held, taken before `apply`
/// consumes it: what its answer is counted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    Claim,
    Renew,
    Tick,
    Complete,
    Fail,
    Other,
    Batch(Vec<Applied>),
}

impl Applied {
    pub(crate) fn of(cmd: &Command) -> Applied {
        match cmd {
            Command::Claim(_) => Applied::Claim,
            Command::Renew(_) => Applied::Renew,
            Command::Tick { .. } => Applied::Tick,
            Command::Complete(_) => Applied::Complete,
            Command::Fail(_) => Applied::Fail,
            Command::Batch(cmds) => Applied::Batch(cmds.iter().map(Applied::of).collect()),
            _ => Applied::Other,
        }
    }
}

impl RaftMetrics {
    /// Adds every metric to `registry` (the node's `swarm_` registry).
    pub fn register(&self, registry: &mut Registry) {
        let proposer = registry.sub_registry_with_prefix("proposer");
        proposer.register(
            "batch_size",
            "Commands per Raft entry this node proposed (group commit)",
            self.batch_size.clone(),
        );
        proposer.register_with_unit(
            "commit",
            "Time from proposing an entry to its answer from the state machine",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        proposer.register(
            "queue_depth",
            "Commands waiting for the next entry",
            self.queue_depth.clone(),
        );
        proposer.register(
            "forwarded",
            "Commands this node forwarded to the leader",
            self.forwarded.clone(),
        );
        let raft = registry.sub_registry_with_prefix("raft");
        raft.register(
            "snapshot_builds",
            "Snapshots this node built",
            self.snapshot_builds.clone(),
        );
        raft.register_with_unit(
            "snapshot_build",
            "Time to build a snapshot",
            Unit::Seconds,
            self.snapshot_build_seconds.clone(),
        );
        raft.register(
            "snapshot_installs",
            "Snapshots this node installed from the leader",
            self.snapshot_installs.clone(),
        );
        raft.register_with_unit(
            "snapshot_install",
            "Time to install a snapshot",
            Unit::Seconds,
            self.snapshot_install_seconds.clone(),
        );
        raft.register_with_unit(
            "snapshot_size",
            "Size of the latest snapshot built or installed",
            Unit::Bytes,
            self.snapshot_bytes.clone(),
        );
        raft.register(
            "elections",
            "Terms this node has seen begin (each is an election)",
            self.elections.clone(),
        );
        raft.register(
            "leader_changes",
            "Times this node saw a new leader",
            self.leader_changes.clone(),
        );
        let work = registry.sub_registry_with_prefix("work");
        work.register(
            "claims_granted",
            "Claims granted (applied on this replica)",
            self.claims_granted.clone(),
        );
        work.register(
            "renewals",
            "Leases renewed (applied on this replica)",
            self.renewals.clone(),
        );
        work.register(
            "lease_expiries",
            "Leases that expired (applied on this replica)",
            self.lease_expiries.clone(),
        );
        work.register(
            "stale_tokens_rejected",
            "Commands refused for a fencing token that is no longer the item's",
            self.stale_tokens.clone(),
        );
        work.register(
            "completions",
            "Items completed, by type",
            self.completions.clone(),
        );
        work.register(
            "failures",
            "Items failed for good, by type",
            self.failures.clone(),
        );
        work.register(
            "retries",
            "Failed attempts put back in the queue for another, by type",
            self.retries.clone(),
        );
    }

    /// Counts what one applied entry did.
    pub(crate) fn applied(&self, what: &Applied, result: &Result<Response, ClaimError>) {
        let response = match result {
            Ok(r) => r,
            Err(ClaimError::StaleToken { .. }) => {
                self.stale_tokens.inc();
                return;
            }
            Err(_) => return,
        };
        match (what, response) {
            (Applied::Batch(whats), Response::Batch(results)) => {
                for (what, result) in whats.iter().zip(results) {
                    self.applied(what, result);
                }
            }
            (Applied::Claim, Response::Granted(items)) => {
                self.claims_granted.inc_by(items.len() as u64);
            }
            (Applied::Renew, Response::Renewed { renewed, rejected }) => {
                self.renewals.inc_by(renewed.len() as u64);
                let stale = rejected
                    .iter()
                    .filter(|(_, e)| matches!(e, ClaimError::StaleToken { .. }))
                    .count();
                self.stale_tokens.inc_by(stale as u64);
            }
            (Applied::Tick, Response::Expired(ids)) => {
                self.lease_expiries.inc_by(ids.len() as u64);
            }
            (Applied::Complete, Response::Item(item)) => {
                self.completions.get_or_create(&label(&item.kind)).inc();
            }
            (Applied::Fail, Response::Item(item)) => {
                let family = match item.status {
                    Status::Pending => &self.retries,
                    Status::Failed => &self.failures,
                    _ => return,
                };
                family.get_or_create(&label(&item.kind)).inc();
            }
            _ => {}
        }
    }

    /// Records a built snapshot.
    pub(crate) fn snapshot_built(&self, took: Duration, bytes: u64) {
        self.snapshot_builds.inc();
        self.snapshot_build_seconds.observe(took.as_secs_f64());
        self.snapshot_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Records an installed snapshot.
    pub(crate) fn snapshot_installed(&self, took: Duration, bytes: u64) {
        self.snapshot_installs.inc();
        self.snapshot_install_seconds.observe(took.as_secs_f64());
        self.snapshot_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

fn label(kind: &str) -> TypeLabel {
    TypeLabel {
        r#type: kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use swarm_claims::State;
    use swarm_claims::command::{Claim, Complete, Submit};

    fn submit(id: &str) -> Command {
        Command::Submit(Submit {
            id: id.into(),
            idempotency_key: String::new(),
            kind: "build".into(),
            priority: 0,
            requires: Vec::new(),
            payload: "{}".into(),
            max_attempts: 0,
            now: 1,
        })
    }

    fn apply(state: &mut State, metrics: &RaftMetrics, cmd: Command) -> Response {
        let what = Applied::of(&cmd);
        let result = swarm_claims::apply(state, cmd);
        metrics.applied(&what, &result);
        result.unwrap()
    }

    #[test]
    fn applied_entries_are_counted_by_what_they_did() {
        let metrics = RaftMetrics::default();
        let mut state = State::new();
        apply(
            &mut state,
            &metrics,
            Command::Batch(vec![submit("a"), submit("b")]),
        );
        let granted = apply(
            &mut state,
            &metrics,
            Command::Claim(Claim {
                agent: "x".into(),
                kinds: Vec::new(),
                capabilities: Vec::new(),
                max: 2,
                lease_ms: 1_000,
                now: 2,
            }),
        );
        let Response::Granted(items) = granted else {
            panic!("{granted:?}");
        };
        assert_eq!(metrics.claims_granted.get(), 2);
        let complete = |token| {
            Command::Complete(Complete {
                id: "a".into(),
                token,
                result: "{}".into(),
                now: 3,
            })
        };
        let token = items[0].lease.as_ref().unwrap().token;
        let wrong = token + 100;
        let what = Applied::of(&complete(wrong));
        let refused = swarm_claims::apply(&mut state, complete(wrong));
        metrics.applied(&what, &refused);
        assert_eq!(metrics.stale_tokens.get(), 1);
        apply(&mut state, &metrics, Command::Batch(vec![complete(token)]));
        assert_eq!(metrics.completions.get_or_create(&label("build")).get(), 1);
        let expired = apply(&mut state, &metrics, Command::Tick { now: 10_000 });
        assert!(matches!(expired, Response::Expired(ref ids) if ids.len() == 1));
        assert_eq!(metrics.lease_expiries.get(), 1);
    }
}
