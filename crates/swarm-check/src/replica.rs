//! The checks of one replica's items, each on its own and across the
//! replica: holders, fencing tokens, completions and idempotency keys.

use std::collections::BTreeMap;

use swarm_proto::v1::{WorkItem, WorkStatus};

use crate::{
    DOUBLE_GRANT, DUPLICATE_COMPLETION, ReplicaReport, ReplicaState, TOKEN_NOT_INCREASING,
    UNKNOWN_APPLIED_TWICE, status_name,
};

/// The event kinds that end the live claim when they carry its token;
/// `cancelled` ends it whatever it carries.
const CLAIM_ENDING_EVENTS: [&str; 5] = ["expired", "released", "completed", "failed", "retrying"];

pub(crate) fn check(replica: &ReplicaState, report: &mut ReplicaReport) {
    let node = replica.node;
    for item in &replica.items {
        check_holders(node, item, report);
        check_grant_events(node, item, report);
        check_tokens(node, item, report);
        check_completions(node, item, report);
    }
    check_keys(replica, report);
    check_tokens_unique_across_items(replica, report);
}

/// Holder records: at most one live, and only the last; a claim only in the
/// claimed state, matching the live holder record.
fn check_holders(node: u64, item: &WorkItem, report: &mut ReplicaReport) {
    let id = &item.id;
    let live: Vec<u64> = item
        .history
        .iter()
        .filter(|h| h.ended.is_empty())
        .map(|h| h.token)
        .collect();
    if live.len() > 1 {
        report.add(
            DOUBLE_GRANT,
            format!("node {node}, item {id}: holders with tokens {live:?} are all live"),
        );
    } else if let Some([holder, next]) = item.history.windows(2).find(|w| w[0].ended.is_empty()) {
        report.add(
            DOUBLE_GRANT,
            format!(
                "node {node}, item {id}: token {} granted to {} while token {} of {} was live",
                next.token, next.agent, holder.token, holder.agent
            ),
        );
    }
    let Some(claim) = &item.claim else {
        return;
    };
    match item.history.iter().rfind(|h| h.ended.is_empty()) {
        Some(h) if claim.token != h.token => report.add(
            DOUBLE_GRANT,
            format!(
                "node {node}, item {id}: the claim has token {} but the live holder record token {}",
                claim.token, h.token
            ),
        ),
        None => report.add(
            DOUBLE_GRANT,
            format!(
                "node {node}, item {id}: claim with token {} of {} has no live holder record",
                claim.token, claim.agent
            ),
        ),
        Some(_) => {}
    }
    if item.status != WorkStatus::Claimed as i32 {
        report.add(
            DOUBLE_GRANT,
            format!(
                "node {node}, item {id}: claim with token {} of {} on an item in status {}",
                claim.token,
                claim.agent,
                status_name(item.status)
            ),
        );
    }
}

/// Events: no grant while another claim is live.
fn check_grant_events(node: u64, item: &WorkItem, report: &mut ReplicaReport) {
    let mut live_token: Option<u64> = None;
    for event in &item.events {
        match event.kind.as_str() {
            "claimed" => {
                if let Some(previous) = live_token {
                    report.add(
                        DOUBLE_GRANT,
                        format!(
                            "node {node}, item {}: event {} claimed with token {} by {} while token {previous} was live",
                            item.id, event.seq, event.token, event.agent
                        ),
                    );
                }
                live_token = Some(event.token);
            }
            "handed_off" => live_token = Some(event.token),
            "cancelled" => live_token = None,
            kind if CLAIM_ENDING_EVENTS.contains(&kind) && live_token == Some(event.token) => {
                live_token = None;
            }
            _ => {}
        }
    }
}

/// Tokens strictly increasing in holder order and in grant events, and the
/// item's token the latest, carried by its claim.
fn check_tokens(node: u64, item: &WorkItem, report: &mut ReplicaReport) {
    let id = &item.id;
    for pair in item.history.windows(2) {
        if pair[1].token <= pair[0].token {
            report.add(
                TOKEN_NOT_INCREASING,
                format!(
                    "node {node}, item {id}: holder token {} follows {}",
                    pair[1].token, pair[0].token
                ),
            );
        }
    }
    let granted: Vec<u64> = item
        .events
        .iter()
        .filter(|e| e.kind == "claimed" || e.kind == "handed_off")
        .map(|e| e.token)
        .collect();
    for pair in granted.windows(2) {
        if pair[1] <= pair[0] {
            report.add(
                TOKEN_NOT_INCREASING,
                format!(
                    "node {node}, item {id}: grant event token {} follows {}",
                    pair[1], pair[0]
                ),
            );
        }
    }
    if let Some(max) = item.history.iter().map(|h| h.token).max()
        && item.token < max
    {
        report.add(
            TOKEN_NOT_INCREASING,
            format!(
                "node {node}, item {id}: item token {} is below holder token {max}",
                item.token
            ),
        );
    }
    if let Some(claim) = &item.claim
        && claim.token != item.token
    {
        report.add(
            TOKEN_NOT_INCREASING,
            format!(
                "node {node}, item {id}: claimed under token {} but its latest token is {}",
                claim.token, item.token
            ),
        );
    }
}

/// At most one completion, by holder record and by event.
fn check_completions(node: u64, item: &WorkItem, report: &mut ReplicaReport) {
    let completed_holders: Vec<u64> = item
        .history
        .iter()
        .filter(|h| h.ended == "completed")
        .map(|h| h.token)
        .collect();
    let completed_events = item.events.iter().filter(|e| e.kind == "completed").count();
    if completed_holders.len() > 1 || completed_events > 1 {
        report.add(
            DUPLICATE_COMPLETION,
            format!(
                "node {node}, item {}: completed by tokens {completed_holders:?}, {completed_events} completed events",
                item.id
            ),
        );
    }
}

/// One idempotency key, one item.
fn check_keys(replica: &ReplicaState, report: &mut ReplicaReport) {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for item in replica
        .items
        .iter()
        .filter(|i| !i.idempotency_key.is_empty())
    {
        by_key
            .entry(item.idempotency_key.as_str())
            .or_default()
            .push(&item.id);
    }
    for (key, ids) in by_key {
        if ids.len() > 1 {
            report.add(
                UNKNOWN_APPLIED_TWICE,
                format!(
                    "node {}: idempotency key {key:?} has items {ids:?}",
                    replica.node
                ),
            );
        }
    }
}

/// A token is granted once, for one item.
fn check_tokens_unique_across_items(replica: &ReplicaState, report: &mut ReplicaReport) {
    let mut owner: BTreeMap<u64, &str> = BTreeMap::new();
    for item in &replica.items {
        for h in &item.history {
            if let Some(other) = owner.insert(h.token, &item.id)
                && other != item.id
            {
                report.add(
                    TOKEN_NOT_INCREASING,
                    format!(
                        "node {}: token {} granted for items {other} and {}",
                        replica.node, h.token, item.id
                    ),
                );
            }
        }
    }
}
