//! Work items built the way the state machine records them (status, token,
//! claim, holder records and events kept in step), for the tests of this
//! crate and of the chaos suite's checker. Behind the `test-util` feature.

use std::collections::BTreeMap;
use std::fmt::Display;

use swarm_proto::v1::{Claim, HolderRecord, WorkEvent, WorkItem, WorkStatus};

use crate::ReplicaState;

/// The lease every [`granted`] claim gets.
pub const LEASE_MS: u64 = 1_000;

/// A pending item submitted at `at` with idempotency key `key`.
pub fn item(id: &str, key: &str, at: u64) -> WorkItem {
    let mut item = WorkItem {
        id: id.into(),
        r#type: "task".into(),
        payload_json: "null".into(),
        status: WorkStatus::Pending as i32,
        max_attempts: 3,
        idempotency_key: key.into(),
        submitted_at_ms: at,
        updated_at_ms: at,
        ..WorkItem::default()
    };
    event(&mut item, at, "submitted", "", 0);
    item
}

fn event(item: &mut WorkItem, at: u64, kind: &str, agent: &str, token: u64) {
    let seq = item.events.len() as u64;
    item.events.push(WorkEvent {
        seq,
        at_ms: at,
        kind: kind.into(),
        agent: agent.into(),
        token,
        status: item.status,
        ..WorkEvent::default()
    });
}

/// `item` claimed by `agent` under `token` at `at`, for [`LEASE_MS`].
pub fn granted(mut item: WorkItem, agent: &str, token: u64, at: u64) -> WorkItem {
    item.status = WorkStatus::Claimed as i32;
    item.attempt += 1;
    item.token = token;
    item.updated_at_ms = at;
    item.claim = Some(Claim {
        agent: agent.into(),
        token,
        lease_expires_at_ms: at + LEASE_MS,
        lease_ms: LEASE_MS,
        granted_at_ms: at,
        progress: None,
    });
    item.history.push(HolderRecord {
        agent: agent.into(),
        token,
        granted_at_ms: at,
        ended: String::new(),
    });
    event(&mut item, at, "claimed", agent, token);
    item
}

/// `item` with its live claim ended at `at`: `how` is "completed",
/// "released", "expired" or "failed".
pub fn ended(mut item: WorkItem, how: &str, at: u64) -> WorkItem {
    let claim = item.claim.take().unwrap_or_default();
    if let Some(holder) = item.history.last_mut() {
        holder.ended = how.into();
    }
    item.updated_at_ms = at;
    item.status = match how {
        "completed" => WorkStatus::Completed,
        "failed" => WorkStatus::Failed,
        _ => WorkStatus::Pending,
    } as i32;
    if how == "completed" {
        item.result_json = Some("{\"ok\":true}".into());
    }
    event(&mut item, at, how, &claim.agent, claim.token);
    item
}

/// Nodes 1 to 3, each holding `items` at index `applied`.
pub fn replicas(items: &[WorkItem], applied: u64) -> Vec<ReplicaState> {
    (1..=3)
        .map(|node| ReplicaState {
            node,
            applied,
            items: items.to_vec(),
            removed: 0,
        })
        .collect()
}

/// What every replica of a correct cluster holds after three items ran to
/// completion from `t0` on: w1 claimed by a under token 1 and completed; w2
/// claimed by b (2), released, claimed by d (4) and completed; w3 claimed by
/// c (3), left to expire, claimed by e (5) and completed.
pub fn three_completed_items(t0: u64) -> Vec<WorkItem> {
    let w1 = ended(
        granted(item("w1", "k1", t0), "a", 1, t0 + 10),
        "completed",
        t0 + 1_200,
    );
    let w2 = ended(
        granted(item("w2", "k2", t0 + 1), "b", 2, t0 + 11),
        "released",
        t0 + 600,
    );
    let w2 = ended(granted(w2, "d", 4, t0 + 620), "completed", t0 + 1_210);
    let w3 = ended(
        granted(item("w3", "k3", t0 + 2), "c", 3, t0 + 12),
        "expired",
        t0 + 1_012,
    );
    let w3 = ended(granted(w3, "e", 5, t0 + 1_100), "completed", t0 + 1_220);
    vec![w1, w2, w3]
}

/// Item `id` of node `node`'s replica.
pub fn item_mut<'a>(
    replicas: &'a mut [ReplicaState],
    node: u64,
    id: &str,
) -> Option<&'a mut WorkItem> {
    replicas
        .iter_mut()
        .find(|r| r.node == node)?
        .items
        .iter_mut()
        .find(|i| i.id == id)
}

/// Item `id` of every replica that holds it.
pub fn all_items_mut<'a>(
    replicas: &'a mut [ReplicaState],
    id: &'a str,
) -> impl Iterator<Item = &'a mut WorkItem> {
    replicas
        .iter_mut()
        .flat_map(move |r| r.items.iter_mut().filter(move |i| i.id == id))
}

/// Asserts that `anomalies` (by kind) holds some of `kind` and none of the
/// other `kinds`, showing `report` when not.
pub fn assert_only(
    anomalies: &BTreeMap<String, Vec<String>>,
    kinds: &[&str],
    kind: &str,
    report: &dyn Display,
) {
    let found = |k: &str| anomalies.get(k).map_or(0, Vec::len);
    assert!(found(kind) > 0, "{kind} not reported:\n{report}");
    for other in kinds.iter().filter(|k| **k != kind) {
        assert!(
            found(other) == 0,
            "unexpected {other} when checking {kind}:\n{report}"
        );
    }
}
