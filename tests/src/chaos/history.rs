//! The operation history, Jepsen style: every operation a chaos client
//! performs is recorded when it is invoked and again when it completes, with
//! its outcome. The checker reads the finished [`History`].
//!
//! Outcomes mean what Jepsen means by them, and the checker relies on it:
//! - [`Outcome::Ok`]: the cluster acknowledged the operation; it took effect.
//! - [`Outcome::Failed`]: the operation **certainly** did not take effect (a
//!   definite rejection such as a stale token or an unknown item).
//! - [`Outcome::Unknown`]: it may or may not have taken effect, at any time
//!   after its invocation (a timeout, a dropped connection, a node that died
//!   mid-request). When in doubt, record unknown: a wrong `Failed` can make
//!   the checker miss a bug, a wrong `Unknown` only makes it more careful.
//!
//! ```
//! use swarm_tests::chaos::history::{OpFields, OpKind, OpResult, Recorder};
//!
//! let recorder = Recorder::new();
//! let op = recorder.invoke(1, OpKind::Submit, OpFields::submit("key-1"));
//! op.ok(OpResult::submitted("item-1", true));
//! let history = recorder.history();
//! assert_eq!(history.counts().ok, 1);
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use swarm_proto::v1::WorkItem;

use crate::{Cluster, NodeId};

/// What a chaos client asked the cluster (or the fenced resource) to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Submit,
    Claim,
    Renew,
    Complete,
    Fail,
    Release,
    Handoff,
    Cancel,
    FencedWrite,
    Read,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    Unknown,
}

/// One claim as granted (or, in a renew's result, as extended) by the
/// cluster: the item, its fencing token and the lease, in the leader's Unix
/// epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub item: String,
    pub token: u64,
    pub agent: String,
    /// When the leader granted the claim. Compared with other grants'
    /// `lease_expires_at_ms`, never with the history's own clock.
    pub granted_at_ms: u64,
    pub lease_expires_at_ms: u64,
}

impl Grant {
    /// The grant an item returned by Claim, Handoff or Renew carries, if it
    /// is claimed.
    pub fn from_item(item: &WorkItem) -> Option<Grant> {
        let claim = item.claim.as_ref()?;
        Some(Grant {
            item: item.id.clone(),
            token: claim.token,
            agent: claim.agent.clone(),
            granted_at_ms: claim.granted_at_ms,
            lease_expires_at_ms: claim.lease_expires_at_ms,
        })
    }

    /// The grants of every claimed item in `items`.
    pub fn from_items(items: &[WorkItem]) -> Vec<Grant> {
        items.iter().filter_map(Grant::from_item).collect()
    }
}

/// What the client sent: the fields the checker needs, by operation kind.
/// - Submit: `idempotency_key`.
/// - Claim: `agent`.
/// - Renew: `agent`, `tokens` (empty = every lease the agent holds).
/// - Complete, Release: `item`, `token`.
/// - Fail: `item`, `token`, `retry`.
/// - Handoff: `item`, `token`, `to_agent`.
/// - Cancel, Read: `item`.
/// - FencedWrite: `item`, `token`, `writer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

impl OpFields {
    /// A submit with an idempotency key.
    pub fn submit(idempotency_key: impl Into<String>) -> OpFields {
        OpFields {
            idempotency_key: Some(idempotency_key.into()),
            ..OpFields::default()
        }
    }

    /// A claim, or a renew of every lease, by `agent`.
    pub fn agent(agent: impl Into<String>) -> OpFields {
        OpFields {
            agent: Some(agent.into()),
            ..OpFields::default()
        }
    }

    /// An operation on one item under one token: complete, fail, release,
    /// handoff (add `to_agent`) or a fenced write (add `writer`).
    pub fn held(item: impl Into<String>, token: u64) -> OpFields {
        OpFields {
            item: Some(item.into()),
            token: Some(token),
            ..OpFields::default()
        }
    }

    /// An operation that names only an item: cancel, read.
    pub fn item(item: impl Into<String>) -> OpFields {
        OpFields {
            item: Some(item.into()),
            ..OpFields::default()
        }
    }
}

/// What an acknowledged operation returned, as far as the checker cares.
/// - Submit: `item` (the id) and `created`.
/// - Claim, Handoff: `grants`, the claims granted.
/// - Renew: `grants`, the leases renewed, with their new expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    /// Anything else worth keeping in a saved history (a status, a count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl OpResult {
    /// An acknowledgement that carries nothing the checker reads.
    pub fn none() -> OpResult {
        OpResult::default()
    }

    /// A submit's answer.
    pub fn submitted(item: impl Into<String>, created: bool) -> OpResult {
        OpResult {
            item: Some(item.into()),
            created: Some(created),
            ..OpResult::default()
        }
    }

    /// A claim's, handoff's or renew's answer.
    pub fn granted(grants: Vec<Grant>) -> OpResult {
        OpResult {
            grants,
            ..OpResult::default()
        }
    }
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in invocation order, from 0.
    pub index: u64,
    /// Which client (agent task) performed it; a client performs one
    /// operation at a time.
    pub client: u32,
    pub kind: OpKind,
    /// Milliseconds since the run started, on a monotonic clock.
    pub invoked_at_ms: u64,
    /// When the outcome was recorded; `None` while in flight. For an unknown
    /// outcome this is when the client gave up, not when it took effect.
    pub completed_at_ms: Option<u64>,
    pub outcome: Outcome,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub fields: OpFields,
    #[serde(default)]
    pub result: OpResult,
}

impl Op {
    /// The latest moment at which the operation may have taken effect:
    /// its completion for an acknowledged or failed one, never for an
    /// unknown one.
    pub fn effect_deadline_ms(&self) -> u64 {
        match (self.outcome, self.completed_at_ms) {
            (Outcome::Unknown, _) | (_, None) => u64::MAX,
            (_, Some(at)) => at,
        }
    }
}

/// What one node said about leadership at one moment
/// (AdminService.ClusterStatus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderObservation {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// The node that answered.
    pub node: NodeId,
    pub term: u64,
    /// The leader it named; 0 = none known.
    pub leader: NodeId,
}

/// Operation counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoked: u64,
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
}

/// The finished history of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Wall-clock time of the run's start, Unix epoch ms (for humans reading
    /// a saved history; the checker never mixes it with the leader's clock).
    pub started_at_unix_ms: u64,
    /// In invocation order.
    pub ops: Vec<Op>,
    pub leaders: Vec<LeaderObservation>,
}

impl History {
    pub fn counts(&self) -> OpCounts {
        let mut counts = OpCounts {
            invoked: self.ops.len() as u64,
            ..OpCounts::default()
        };
        for op in &self.ops {
            match op.outcome {
                Outcome::Ok => counts.ok += 1,
                Outcome::Failed => counts.failed += 1,
                Outcome::Unknown => counts.unknown += 1,
            }
        }
        counts
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).context("encode the history as JSON")
    }

    pub fn from_json(text: &str) -> Result<History> {
        serde_json::from_str(text).context("decode a history from JSON")
    }

    /// Writes the history as JSON, so a failing run can be checked again.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()?)
            .with_context(|| format!("write the history to {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<History> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read a history from {}", path.display()))?;
        History::from_json(&text)
    }
}

/// Where operations are recorded while a run goes on. Cheap to clone; every
/// clone records into the same history, from any thread or task.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

#[derive(Debug)]
struct RecorderInner {
    /// The run's start on the monotonic clock: every `*_at_ms` counts from
    /// here, so a wall-clock jump cannot reorder the history.
    started: Instant,
    started_at_unix_ms: u64,
    ops: Mutex<Vec<Op>>,
    leaders: Mutex<Vec<LeaderObservation>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a client task panicked while recording; what it
    // recorded before is still the truth.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        let started_at_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        Recorder {
            inner: Arc::new(RecorderInner {
                started: Instant::now(),
                started_at_unix_ms,
                ops: Mutex::new(Vec::new()),
                leaders: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that `client` invokes an operation. Complete it through the
    /// handle; a handle dropped without an outcome records `Unknown`.
    pub fn invoke(&self, client: u32, kind: OpKind, fields: OpFields) -> OpHandle {
        let mut ops = lock(&self.inner.ops);
        let index = ops.len() as u64;
        ops.push(Op {
            index,
            client,
            kind,
            invoked_at_ms: self.now_ms(),
            completed_at_ms: None,
            outcome: Outcome::Unknown,
            reason: Some("in flight".into()),
            fields,
            result: OpResult::default(),
        });
        OpHandle {
            recorder: self.clone(),
            index,
            done: false,
        }
    }

    /// Records what a node said about leadership.
    pub fn observe_leader(&self, node: NodeId, term: u64, leader: NodeId) {
        let at_ms = self.now_ms();
        lock(&self.inner.leaders).push(LeaderObservation {
            at_ms,
            node,
            term,
            leader,
        });
    }

    /// Asks every running node of `cluster` for its view of leadership once
    /// (each probe bounded by the harness's probe timeout) and records every
    /// answer. Returns how many nodes answered.
    pub async fn observe_cluster(&self, cluster: &Cluster) -> usize {
        let mut answered = 0;
        for node in cluster.running() {
            if let Ok(Ok(status)) =
                tokio::time::timeout(Duration::from_secs(3), cluster.status(node)).await
            {
                self.observe_leader(status.node_id, status.term, status.leader_id);
                answered += 1;
            }
        }
        answered
    }

    /// A snapshot of everything recorded so far. Operations still in flight
    /// appear as unknown with no completion time.
    pub fn history(&self) -> History {
        History {
            started_at_unix_ms: self.inner.started_at_unix_ms,
            ops: lock(&self.inner.ops).clone(),
            leaders: lock(&self.inner.leaders).clone(),
        }
    }

    fn complete(&self, index: u64, outcome: Outcome, reason: Option<String>, result: OpResult) {
        let at = self.now_ms();
        let mut ops = lock(&self.inner.ops);
        if let Some(op) = usize::try_from(index).ok().and_then(|i| ops.get_mut(i)) {
            op.completed_at_ms = Some(at);
            op.outcome = outcome;
            op.reason = reason;
            op.result = result;
        }
    }
}

/// An invoked operation waiting for its outcome.
#[derive(Debug)]
#[must_use = "an operation without an outcome is recorded as unknown"]
pub struct OpHandle {
    recorder: Recorder,
    index: u64,
    done: bool,
}

impl OpHandle {
    /// The operation's position in the history.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The cluster acknowledged it.
    pub fn ok(mut self, result: OpResult) {
        self.finish(Outcome::Ok, None, result);
    }

    /// It certainly did not take effect.
    pub fn failed(mut self, reason: impl Into<String>) {
        self.finish(Outcome::Failed, Some(reason.into()), OpResult::default());
    }

    /// It may or may not have taken effect.
    pub fn unknown(mut self, reason: impl Into<String>) {
        self.finish(Outcome::Unknown, Some(reason.into()), OpResult::default());
    }

    fn finish(&mut self, outcome: Outcome, reason: Option<String>, result: OpResult) {
        self.done = true;
        self.recorder.complete(self.index, outcome, reason, result);
    }
}

impl Drop for OpHandle {
    fn drop(&mut self) {
        if !self.done {
            self.recorder.complete(
                self.index,
                Outcome::Unknown,
                Some("dropped without an outcome".into()),
                OpResult::default(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn outcomes_and_times_are_recorded() {
        let recorder = Recorder::new();
        let a = recorder.invoke(1, OpKind::Claim, OpFields::agent("a"));
        let b = recorder.invoke(2, OpKind::Complete, OpFields::held("w1", 3));
        let c = recorder.invoke(3, OpKind::Release, OpFields::held("w1", 3));
        let d = recorder.invoke(4, OpKind::Read, OpFields::item("w1"));
        a.ok(OpResult::granted(vec![Grant {
            item: "w1".into(),
            token: 3,
            agent: "a".into(),
            granted_at_ms: 10,
            lease_expires_at_ms: 20,
        }]));
        b.failed("stale token");
        c.unknown("timed out");
        drop(d);
        let e = recorder.invoke(5, OpKind::Read, OpFields::item("w1"));
        let history = recorder.history();
        drop(e);

        let outcomes: Vec<_> = history.ops.iter().map(|o| o.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Ok,
                Outcome::Failed,
                Outcome::Unknown,
                Outcome::Unknown,
                Outcome::Unknown
            ]
        );
        assert_eq!(history.ops[0].result.grants.len(), 1);
        assert_eq!(history.ops[1].reason.as_deref(), Some("stale token"));
        assert_eq!(
            history.ops[3].reason.as_deref(),
            Some("dropped without an outcome")
        );
        assert!(history.ops[3].completed_at_ms.is_some());
        assert_eq!(history.ops[4].completed_at_ms, None);
        assert_eq!(history.ops[4].reason.as_deref(), Some("in flight"));
        for (i, op) in history.ops.iter().enumerate() {
            assert_eq!(op.index, i as u64);
        }
        let counts = history.counts();
        assert_eq!(
            (counts.invoked, counts.ok, counts.failed, counts.unknown),
            (5, 1, 1, 3)
        );
    }

    #[test]
    fn history_round_trips_through_json() {
        let recorder = Recorder::new();
        recorder
            .invoke(7, OpKind::Submit, OpFields::submit("k"))
            .ok(OpResult::submitted("w9", true));
        recorder.observe_leader(2, 5, 2);
        let history = recorder.history();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        history.save(&path).unwrap();
        assert_eq!(History::load(&path).unwrap(), history);
        assert_eq!(history.leaders[0].term, 5);
    }

    #[test]
    fn clones_record_into_one_history_from_many_threads() {
        let recorder = Recorder::new();
        let threads: Vec<_> = (0..8)
            .map(|client| {
                let r = recorder.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        r.invoke(client, OpKind::Read, OpFields::item("x"))
                            .ok(OpResult::none());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let history = recorder.history();
        assert_eq!(history.counts().ok, 800);
        assert!(
            history
                .ops
                .iter()
                .all(|o| o.completed_at_ms.unwrap() >= o.invoked_at_ms)
        );
    }
}
