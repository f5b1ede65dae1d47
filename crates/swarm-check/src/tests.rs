//! Every replica anomaly, when present, is reported under its kind and
//! nothing else is; replicas of a correct cluster check clean.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use crate::fixtures::{
    all_items_mut, assert_only, ended, granted, item, item_mut, replicas, three_completed_items,
};
use crate::*;

/// The leader's clock (Unix epoch ms) at the start of the scenarios.
const T0: u64 = 1_700_000_000_000;

/// Three nodes at index 42, each holding [`three_completed_items`].
fn clean() -> Vec<ReplicaState> {
    replicas(&three_completed_items(T0), 42)
}

/// Asserts that `kind`, and only `kind`, is reported, and returns the report.
fn only(replicas: &[ReplicaState], kind: &str) -> ReplicaReport {
    let report = check_replicas(replicas);
    let shown = format!("{report:#?}");
    assert_only(&report.anomalies, &REPLICA_ANOMALY_KINDS, kind, &shown);
    assert!(!report.is_clean());
    report
}

// ---------------------------------------------------------------------------
// A clean cluster, and the hash.

#[test]
fn a_clean_cluster_reports_nothing() {
    let report = check_replicas(&clean());
    assert!(report.is_clean(), "{report:#?}");
    assert!(report.compared);
    let kinds: BTreeSet<&str> = report.anomalies.keys().map(String::as_str).collect();
    assert_eq!(kinds, REPLICA_ANOMALY_KINDS.into_iter().collect());
    let hashes: BTreeSet<&String> = report.replica_hashes.values().collect();
    assert_eq!((report.replica_hashes.len(), hashes.len()), (3, 1));
}

#[test]
fn the_hash_is_stable() {
    // Pinned: a change of canonical form or hash shows up here, not as
    // replicas of different harness versions that cannot be compared.
    let replica = ReplicaState {
        node: 1,
        applied: 0,
        items: vec![item("w1", "k1", T0)],
        removed: 0,
    };
    let hash = replica_hash(&replica);
    assert_eq!(hash.len(), 16);
    assert_eq!(hash, replica_hash(&replica.clone()));
    assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
}

// ---------------------------------------------------------------------------
// double_grant

#[test]
fn a_live_holder_followed_by_another_grant_is_a_double_grant() {
    let mut replicas = clean();
    // b's claim of w2 never ended, yet d was granted it (and completed).
    for w2 in all_items_mut(&mut replicas, "w2") {
        w2.history[0].ended.clear();
    }
    let report = only(&replicas, DOUBLE_GRANT);
    assert!(report.of(DOUBLE_GRANT)[0].contains("token 4 granted to d while token 2 of b"));
}

#[test]
fn a_double_grant_in_events_alone_is_reported() {
    let mut replicas = clean();
    for w2 in all_items_mut(&mut replicas, "w2") {
        // Drop the "released" event: d's claim now overlaps b's.
        w2.events.retain(|e| e.kind != "released");
    }
    only(&replicas, DOUBLE_GRANT);
}

#[test]
fn a_claim_on_an_item_not_in_the_claimed_state_is_a_double_grant() {
    let mut replicas = clean();
    let held = granted(item("w7", "k7", T0 + 6), "g", 11, T0 + 7);
    for r in &mut replicas {
        r.items.push(held.clone());
    }
    assert!(check_replicas(&replicas).is_clean());
    // Pending again, so claimable, while g still holds it.
    for w7 in all_items_mut(&mut replicas, "w7") {
        w7.status = WorkStatus::Pending as i32;
    }
    let report = only(&replicas, DOUBLE_GRANT);
    assert!(report.of(DOUBLE_GRANT)[0].contains("in status WORK_STATUS_PENDING"));
}

#[test]
fn a_claim_unlike_its_holder_record_is_a_double_grant() {
    let mut replicas = clean();
    let held = granted(item("w7", "k7", T0 + 6), "g", 11, T0 + 7);
    let mut orphan = held.clone();
    orphan.id = "w8".into();
    orphan.idempotency_key = "k8".into();
    orphan.history.clear();
    for r in &mut replicas {
        r.items.push(held.clone());
        r.items.push(orphan.clone());
    }
    // w7's claim carries another token than its live holder record; w8's
    // has no holder record at all.
    for w7 in all_items_mut(&mut replicas, "w7") {
        w7.history[0].token = 10;
    }
    let report = only(&replicas, DOUBLE_GRANT);
    let text = report.of(DOUBLE_GRANT).join("\n");
    assert!(text.contains("item w7: the claim has token 11"), "{text}");
    assert!(
        text.contains("item w8: claim with token 11 of g has no live"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// token_not_increasing

#[test]
fn a_token_going_down_in_a_replica_is_reported() {
    let mut replicas = clean();
    for w2 in all_items_mut(&mut replicas, "w2") {
        // The second holder of w2 got token 1 instead of 4.
        w2.history[1].token = 1;
        w2.events
            .iter_mut()
            .filter(|e| e.token == 4)
            .for_each(|e| e.token = 1);
        w2.token = 1;
    }
    let report = check_replicas(&replicas);
    assert!(!report.of(TOKEN_NOT_INCREASING).is_empty(), "{report:#?}");
    let text = report.of(TOKEN_NOT_INCREASING).join("\n");
    assert!(text.contains("item w2"), "{text}");
    assert!(text.contains("holder token 1 follows 2"), "{text}");
    assert!(text.contains("grant event token 1 follows 2"), "{text}");
    assert!(
        text.contains("item token 1 is below holder token 2"),
        "{text}"
    );
}

#[test]
fn a_claim_not_carrying_the_latest_token_is_reported() {
    let mut replicas = clean();
    let held = granted(item("w7", "k7", T0 + 6), "g", 11, T0 + 7);
    for r in &mut replicas {
        r.items.push(held.clone());
    }
    for w7 in all_items_mut(&mut replicas, "w7") {
        w7.token = 12;
    }
    let report = only(&replicas, TOKEN_NOT_INCREASING);
    assert_eq!(report.of(TOKEN_NOT_INCREASING).len(), 3);
    assert!(report.of(TOKEN_NOT_INCREASING)[0].contains("claimed under token 11"));
}

#[test]
fn one_token_granted_for_two_items_in_a_replica_is_reported() {
    let mut replicas = clean();
    // w6 was granted token 5, which w3 already had.
    let w6 = ended(
        granted(item("w6", "k6", T0 + 1_101), "g", 5, T0 + 1_102),
        "completed",
        T0 + 1_103,
    );
    for r in &mut replicas {
        r.items.push(w6.clone());
    }
    let report = only(&replicas, TOKEN_NOT_INCREASING);
    assert_eq!(report.of(TOKEN_NOT_INCREASING).len(), 3);
    assert!(report.of(TOKEN_NOT_INCREASING)[0].contains("token 5 granted for items w3 and w6"));
}

// ---------------------------------------------------------------------------
// duplicate_completion

#[test]
fn a_duplicate_completion_in_a_replica_is_reported() {
    let mut replicas = clean();
    for w3 in all_items_mut(&mut replicas, "w3") {
        // c completed before its lease expired was noticed, then e did too.
        w3.history[0].ended = "completed".into();
        for e in w3.events.iter_mut().filter(|e| e.kind == "expired") {
            e.kind = "completed".into();
        }
    }
    let report = only(&replicas, DUPLICATE_COMPLETION);
    assert_eq!(report.of(DUPLICATE_COMPLETION).len(), 3);
}

// ---------------------------------------------------------------------------
// unknown_applied_twice

#[test]
fn a_keyed_submit_that_made_two_items_is_reported() {
    let mut replicas = clean();
    // A submit with key k4 took effect twice.
    let a = ended(
        granted(item("w4a", "k4", T0 + 3), "h", 12, T0 + 30),
        "completed",
        T0 + 31,
    );
    let b = ended(
        granted(item("w4b", "k4", T0 + 4), "h", 13, T0 + 32),
        "completed",
        T0 + 33,
    );
    for r in &mut replicas {
        r.items.push(a.clone());
        r.items.push(b.clone());
    }
    let report = only(&replicas, UNKNOWN_APPLIED_TWICE);
    assert_eq!(report.of(UNKNOWN_APPLIED_TWICE).len(), 3);
    assert!(report.of(UNKNOWN_APPLIED_TWICE)[0].contains(r#"key "k4" has items ["w4a", "w4b"]"#));
}

// ---------------------------------------------------------------------------
// replica_divergence

#[test]
fn diverging_replicas_are_reported_with_their_hashes() {
    let mut replicas = clean();
    item_mut(&mut replicas, 3, "w1").unwrap().result_json = Some("{\"ok\":false}".into());
    let report = only(&replicas, REPLICA_DIVERGENCE);
    let hashes: BTreeSet<&String> = report.replica_hashes.values().collect();
    assert_eq!(hashes.len(), 2);
    assert_eq!(report.replica_hashes[&1], report.replica_hashes[&2]);
    assert_ne!(report.replica_hashes[&1], report.replica_hashes[&3]);
    let text = &report.of(REPLICA_DIVERGENCE)[0];
    assert!(text.contains("item w1"), "{text}");
    assert!(!text.contains("item w2"), "{text}");
    assert!(
        text.contains("item w1: 2 different versions: result_json"),
        "{text}"
    );
}

#[test]
fn a_missing_item_is_a_divergence() {
    let mut replicas = clean();
    replicas[2].items.retain(|i| i.id != "w2");
    let report = only(&replicas, REPLICA_DIVERGENCE);
    let text = &report.of(REPLICA_DIVERGENCE)[0];
    assert!(text.contains("1 items differ"), "{text}");
    assert!(text.contains("item w2: missing on nodes [3]"), "{text}");
}

#[test]
fn replicas_at_different_indexes_are_not_compared() {
    let mut replicas = clean();
    replicas[2].applied = 43;
    replicas[2].items.retain(|i| i.id != "w2");
    // Still checked one by one: c's claim of w3 never ended, yet e got it.
    item_mut(&mut replicas, 3, "w3").unwrap().history[0]
        .ended
        .clear();
    let report = only(&replicas, DOUBLE_GRANT);
    assert_eq!(report.of(DOUBLE_GRANT).len(), 1);
    assert!(!report.compared);
    assert_eq!(report.replica_hashes.len(), 3);
}

#[test]
fn replicas_listing_items_in_another_order_agree() {
    let mut replicas = clean();
    replicas[1].items.reverse();
    assert!(check_replicas(&replicas).is_clean());
}
