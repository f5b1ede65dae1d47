//! Replicas compared: every item as canonical JSON, a stable hash of each
//! replica, and, when the hashes differ, which items and fields differ.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use swarm_proto::v1::WorkItem;

use crate::{REPLICA_DIVERGENCE, ReplicaReport, ReplicaState, status_name};

/// An item as canonical JSON: every field, in a fixed order, with enums by
/// name. Two replicas agree when these agree.
pub fn canonical_item(item: &WorkItem) -> Value {
    json!({
        "id": item.id,
        "type": item.r#type,
        "priority": item.priority,
        "requires": item.requires,
        "payload_json": item.payload_json,
        "status": status_name(item.status),
        "attempt": item.attempt,
        "max_attempts": item.max_attempts,
        "claim": item.claim.as_ref().map(|c| json!({
            "agent": c.agent,
            "token": c.token,
            "lease_expires_at_ms": c.lease_expires_at_ms,
            "lease_ms": c.lease_ms,
            "granted_at_ms": c.granted_at_ms,
            "progress": c.progress,
        })),
        "token": item.token,
        "result_json": item.result_json,
        "error": item.error,
        "idempotency_key": item.idempotency_key,
        "submitted_at_ms": item.submitted_at_ms,
        "updated_at_ms": item.updated_at_ms,
        "history": item.history.iter().map(|h| json!({
            "agent": h.agent,
            "token": h.token,
            "granted_at_ms": h.granted_at_ms,
            "ended": h.ended,
        })).collect::<Vec<_>>(),
        "journal": item.journal.iter().map(|j| json!({
            "step": j.step,
            "token": j.token,
            "outcome_json": j.outcome_json,
        })).collect::<Vec<_>>(),
        "events": item.events.iter().map(|e| json!({
            "seq": e.seq,
            "at_ms": e.at_ms,
            "kind": e.kind,
            "agent": e.agent,
            "token": e.token,
            "step": e.step,
            "detail": e.detail,
            "outcome_json": e.outcome_json,
            "status": status_name(e.status),
        })).collect::<Vec<_>>(),
        "cancel_requested": item.cancel_requested,
    })
}

/// FNV-1a, 64 bits: stable across runs, platforms and Rust versions, which
/// `std`'s hashers do not promise.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A replica's items as canonical JSON text, by id.
fn canonical_items(replica: &ReplicaState) -> BTreeMap<&str, String> {
    replica
        .items
        .iter()
        .map(|i| (i.id.as_str(), canonical_item(i).to_string()))
        .collect()
}

/// The hash (hex) of a replica's items, canonical JSON sorted by id.
pub fn replica_hash(replica: &ReplicaState) -> String {
    let items: Vec<String> = canonical_items(replica).into_values().collect();
    format!(
        "{:016x}",
        stable_hash(format!("[{}]", items.join(",")).as_bytes())
    )
}

/// Replicas read at one applied index must hold the same items; the
/// report's hashes are already in place.
pub(crate) fn check(replicas: &[ReplicaState], report: &mut ReplicaReport) {
    let distinct: BTreeSet<&String> = report.replica_hashes.values().collect();
    if distinct.len() <= 1 {
        return;
    }
    let canon: Vec<(u64, BTreeMap<&str, String>)> = replicas
        .iter()
        .map(|r| (r.node, canonical_items(r)))
        .collect();
    let hashes: Vec<String> = replicas
        .iter()
        .map(|r| {
            format!(
                "node {} at index {}: {}",
                r.node,
                r.applied,
                report
                    .replica_hashes
                    .get(&r.node)
                    .map_or("", String::as_str)
            )
        })
        .collect();
    let ids: BTreeSet<&str> = canon
        .iter()
        .flat_map(|(_, items)| items.keys().copied())
        .collect();
    let mut differing = Vec::new();
    for id in ids {
        // Nodes grouped by what they hold for the item ("" = nothing).
        let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (node, items) in &canon {
            versions
                .entry(items.get(id).map_or("", String::as_str))
                .or_default()
                .push(*node);
        }
        if versions.len() > 1 {
            let missing = versions.get("").cloned().unwrap_or_default();
            let variants = versions.len() - usize::from(!missing.is_empty());
            differing.push(if missing.is_empty() {
                format!(
                    "item {id}: {variants} different versions: {}",
                    field_differences(versions.keys().copied().collect())
                )
            } else {
                format!("item {id}: missing on nodes {missing:?}, {variants} versions elsewhere")
            });
        }
    }
    let shown: Vec<&str> = differing.iter().take(20).map(String::as_str).collect();
    report.add(
        REPLICA_DIVERGENCE,
        format!(
            "replicas differ ({}); {} items differ: {}{}",
            hashes.join("; "),
            differing.len(),
            shown.join("; "),
            if differing.len() > shown.len() {
                "; ..."
            } else {
                ""
            }
        ),
    );
}

/// The top-level fields in which the versions of one item differ, with each
/// version's value, so a divergence report says what diverged.
fn field_differences(versions: Vec<&str>) -> String {
    let parsed: Vec<Value> = versions
        .iter()
        .filter_map(|v| serde_json::from_str(v).ok())
        .collect();
    let Some(first) = parsed.first().and_then(Value::as_object) else {
        return String::new();
    };
    let mut out = Vec::new();
    for (key, value) in first {
        if parsed.iter().any(|v| v[key] != *value) {
            let values: Vec<String> = parsed.iter().map(|v| v[key].to_string()).collect();
            out.push(format!("{key}: {}", values.join(" vs ")));
        }
    }
    out.join("; ")
}
