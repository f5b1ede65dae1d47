//! Consistency checks over replica dumps: every node's work items, read at
//! an applied index. One implementation and one set of anomaly names for
//! both `swarmctl chaos check`, run against a live cluster, and the chaos
//! suite's checker (`swarm-tests`), which adds on top the checks that need
//! the recorded client history (lost acknowledgements, stale writes, stuck
//! items, leaders).
//!
//! The checks are pure: they read [`ReplicaState`]s and return a
//! [`ReplicaReport`]; reading the replicas is the caller's job. Each check is
//! sound rather than complete: it reports only what the replicas show beyond
//! doubt, so that a report of a correct cluster is always clean.
//!
//! Anomaly kinds (the keys of [`ReplicaReport::anomalies`], see
//! [`REPLICA_ANOMALY_KINDS`]):
//! - `double_grant`: an item whose holder records or claim let two holders
//!   overlap: two live holder records, a live one followed by a later grant,
//!   a claim that disagrees with the live holder record or with the item's
//!   status, or a grant event while another claim was live.
//! - `token_not_increasing`: an item's holder or grant-event tokens not
//!   strictly increasing, an item token below a holder's or unlike its
//!   claim's, or one token granted for two items.
//! - `duplicate_completion`: an item completed more than once.
//! - `unknown_applied_twice`: one idempotency key on two items.
//! - `replica_divergence`: replicas at one applied index that disagree about
//!   the items they hold.
//!
//! ```
//! use swarm_check::{DOUBLE_GRANT, ReplicaState, TOKEN_NOT_INCREASING, check_replicas};
//! use swarm_proto::v1::{HolderRecord, WorkItem};
//!
//! let holder = |agent: &str, token| HolderRecord {
//!     agent: agent.into(),
//!     token,
//!     ..HolderRecord::default()
//! };
//! // Neither holder record ended: `a` and `b` both hold w1.
//! let w1 = WorkItem {
//!     id: "w1".into(),
//!     token: 2,
//!     history: vec![holder("a", 1), holder("b", 2)],
//!     ..WorkItem::default()
//! };
//! let report = check_replicas(&[ReplicaState { node: 1, applied: 7, items: vec![w1], removed: 0 }]);
//! assert_eq!(report.of(DOUBLE_GRANT).len(), 1);
//! assert!(report.of(TOKEN_NOT_INCREASING).is_empty());
//! ```
//!
//! # Layout
//! - `replica`: the checks of one replica's items: holders, tokens,
//!   completions and idempotency keys.
//! - `divergence`: items as canonical JSON, [`replica_hash`], and the
//!   comparison of replicas at one applied index.
//! - [`fixtures`] (feature `test-util`): work items built the way the state
//!   machine records them, for tests here and in the chaos suite.

use std::collections::{BTreeMap, BTreeSet};

use swarm_proto::v1::{WorkItem, WorkStatus};

mod divergence;
#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;
mod replica;

pub use divergence::{canonical_item, replica_hash, stable_hash};

pub const DOUBLE_GRANT: &str = "double_grant";
pub const TOKEN_NOT_INCREASING: &str = "token_not_increasing";
pub const DUPLICATE_COMPLETION: &str = "duplicate_completion";
pub const UNKNOWN_APPLIED_TWICE: &str = "unknown_applied_twice";
pub const REPLICA_DIVERGENCE: &str = "replica_divergence";

/// Every kind the replica checks report; each is a key of every report.
pub const REPLICA_ANOMALY_KINDS: [&str; 5] = [
    DOUBLE_GRANT,
    TOKEN_NOT_INCREASING,
    DUPLICATE_COMPLETION,
    UNKNOWN_APPLIED_TWICE,
    REPLICA_DIVERGENCE,
];

/// One node's replica: its items as it lists them locally (ListWork, LOCAL).
#[derive(Debug, Clone, Default)]
pub struct ReplicaState {
    pub node: u64,
    /// The applied index the items were read at: replicas are compared only
    /// when they were all read at one.
    pub applied: u64,
    pub items: Vec<WorkItem>,
    /// Finished items the replica has removed after the retention period,
    /// ever (`ClusterStatus.items_removed`): an acknowledged item missing
    /// from it may have been one of them rather than lost.
    pub removed: u64,
}

/// What the replica checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaReport {
    /// Every kind of [`REPLICA_ANOMALY_KINDS`], each with one line per
    /// anomaly found (empty when none).
    pub anomalies: BTreeMap<String, Vec<String>>,
    /// Every replica was read at one applied index, so their contents were
    /// compared; otherwise `replica_divergence` is not checked, since
    /// replicas at different indexes differ legitimately.
    pub compared: bool,
    /// Per node: [`replica_hash`] of its items. Equal hashes = equal replicas.
    pub replica_hashes: BTreeMap<u64, String>,
}

impl ReplicaReport {
    /// No anomaly of any kind.
    pub fn is_clean(&self) -> bool {
        self.anomalies.values().all(Vec::is_empty)
    }

    /// The anomalies of one kind.
    pub fn of(&self, kind: &str) -> &[String] {
        self.anomalies.get(kind).map_or(&[], Vec::as_slice)
    }

    fn add(&mut self, kind: &str, line: String) {
        self.anomalies
            .entry(kind.to_string())
            .or_default()
            .push(line);
    }
}

/// Runs every replica check: each replica's items on their own, then the
/// replicas against each other when they were read at one applied index.
pub fn check_replicas(replicas: &[ReplicaState]) -> ReplicaReport {
    let indexes: BTreeSet<u64> = replicas.iter().map(|r| r.applied).collect();
    let mut report = ReplicaReport {
        anomalies: REPLICA_ANOMALY_KINDS
            .iter()
            .map(|k| (k.to_string(), Vec::new()))
            .collect(),
        compared: indexes.len() <= 1,
        replica_hashes: replicas.iter().map(|r| (r.node, replica_hash(r))).collect(),
    };
    for replica in replicas {
        replica::check(replica, &mut report);
    }
    if report.compared {
        divergence::check(replicas, &mut report);
    }
    report
}

/// A status by its protobuf name (`COMPLETED`), or its number when unknown.
pub fn status_name(status: i32) -> String {
    WorkStatus::try_from(status)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("status {status}"))
}

#[cfg(test)]
mod tests;
