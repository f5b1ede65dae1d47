//! The checker: reads a run's history, the fenced resource's log and every
//! replica's final state, and reports every anomaly it can prove.
//!
//! Each check is sound rather than complete: it reports only what the
//! evidence shows beyond doubt, treating an operation with an unknown outcome
//! as possibly having taken effect at any moment after its invocation, and a
//! failed one as certainly not. A clean report is therefore only as strong as
//! the history is honest; the tests in `tests/chaos_checker.rs` prove that
//! each anomaly, when present, is reported.
//!
//! The checks of the replicas alone are [`swarm_check`]'s, the ones
//! `swarmctl chaos check` runs against a live cluster, under the same names;
//! this checker adds the client history's evidence to the same kinds and the
//! kinds only a recorded run can show.
//!
//! Anomaly kinds (the keys of [`CheckReport::anomalies`], see
//! [`ANOMALY_KINDS`]):
//! - `double_grant`: an item held by two holders over overlapping intervals
//!   (in the client history, or in a replica's holder records, claim and
//!   events).
//! - `token_not_increasing`: an item's grant tokens not strictly increasing,
//!   or one token granted for two items.
//! - `stale_write_accepted`: the fenced resource accepted a token lower than
//!   one it had already accepted for the item.
//! - `lost_ack`: an acknowledged operation whose effect some replica lacks.
//!   An item a replica does not hold at all is lost only beyond what the
//!   replica removed after the retention period: retention removes finished
//!   items, and a removed item leaves nothing to tell it from a lost one but
//!   the count ([`ReplicaState::removed`]).
//! - `duplicate_completion`: an item completed more than once.
//! - `stuck`: an item not in a terminal state after the liveness deadline.
//! - `replica_divergence`: replicas disagree about the items they hold.
//! - `two_leaders_in_term`: two different leaders observed for one term.
//! - `unknown_applied_twice`: one keyed submit that produced two items.
//! - `limit_exceeded`: more items of a concurrency key claimed at once than
//!   its limit allows (from a replica's claim and end events).
//! - `granted_early`: a delayed item granted before its `not_before` time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
pub use swarm_check::{
    DOUBLE_GRANT, DUPLICATE_COMPLETION, REPLICA_DIVERGENCE, ReplicaState, TOKEN_NOT_INCREASING,
    UNKNOWN_APPLIED_TWICE,
};
use swarm_proto::v1::{ListWorkRequest, ReadConsistency, WorkItem, WorkStatus};

use super::fenced::WriteAttempt;
use super::history::{Grant, History, Op, OpKind, Outcome};
use crate::{Cluster, NodeId};

pub const STALE_WRITE_ACCEPTED: &str = "stale_write_accepted";
pub const LOST_ACK: &str = "lost_ack";
pub const STUCK: &str = "stuck";
pub const TWO_LEADERS_IN_TERM: &str = "two_leaders_in_term";
pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
pub const GRANTED_EARLY: &str = "granted_early";

/// Every anomaly kind; each is a key of every report.
pub const ANOMALY_KINDS: [&str; 11] = [
    DOUBLE_GRANT,
    TOKEN_NOT_INCREASING,
    STALE_WRITE_ACCEPTED,
    LOST_ACK,
    DUPLICATE_COMPLETION,
    STUCK,
    REPLICA_DIVERGENCE,
    TWO_LEADERS_IN_TERM,
    UNKNOWN_APPLIED_TWICE,
    LIMIT_EXCEEDED,
    GRANTED_EARLY,
];

/// What the liveness check may expect at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    /// The run lasted past its liveness deadline (workload stopped, faults
    /// healed, and time enough for leases to expire and work to finish).
    /// Until then nothing counts as stuck.
    pub deadline_passed: bool,
    /// Items in the claimed state are held by a workload that is still
    /// running: they are not stuck.
    pub exempt_claimed: bool,
    /// Items the caller knows are legitimately unfinished.
    pub exempt_items: BTreeSet<String>,
}

/// Everything the checker reads. Leader observations travel in
/// [`History::leaders`].
#[derive(Debug, Clone, Default)]
pub struct CheckInput {
    pub history: History,
    /// [`super::fenced::FencedResource::log`].
    pub fenced: Vec<WriteAttempt>,
    /// Every reachable node's replica after healing, all at one applied
    /// index ([`collect_replicas`]): replicas at different indexes are not
    /// compared.
    pub replicas: Vec<ReplicaState>,
    pub liveness: Liveness,
    /// The limit on running items of each concurrency key the run set.
    pub key_limits: BTreeMap<String, u32>,
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Operations of the history checked.
    pub ops_checked: u64,
    /// Every kind of [`ANOMALY_KINDS`], each with one line per anomaly found
    /// (empty when none).
    pub anomalies: BTreeMap<String, Vec<String>>,
    /// Stale writes the fenced resource rejected: more than zero proves the
    /// fault paths ran.
    pub stale_rejected: u64,
    /// Per node: a stable hash (FNV-1a 64, hex) of its items' canonical JSON
    /// sorted by id. Equal hashes = equal replicas.
    pub replica_hashes: BTreeMap<NodeId, String>,
    /// Claims of limited concurrency keys, and delayed items, the replicas
    /// recorded (summed over replicas): more than zero proves the
    /// `limit_exceeded` and `granted_early` checks had something to check.
    pub key_claims_checked: u64,
    pub delayed_checked: u64,
}

impl CheckReport {
    /// No anomaly of any kind.
    pub fn is_clean(&self) -> bool {
        self.anomalies.values().all(Vec::is_empty)
    }

    /// How many anomalies of each kind.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.anomalies
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    /// The anomalies of one kind.
    pub fn of(&self, kind: &str) -> &[String] {
        self.anomalies.get(kind).map_or(&[], Vec::as_slice)
    }

    fn add(&mut self, kind: &str, example: String) {
        self.anomalies
            .entry(kind.to_string())
            .or_default()
            .push(example);
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "checked {} operations; {} stale writes rejected; {} claims of limited keys and {} delayed items checked",
            self.ops_checked, self.stale_rejected, self.key_claims_checked, self.delayed_checked
        )?;
        for (kind, found) in &self.anomalies {
            writeln!(f, "  {kind}: {}", found.len())?;
            for example in found.iter().take(10) {
                writeln!(f, "    - {example}")?;
            }
            if found.len() > 10 {
                writeln!(f, "    - ... and {} more", found.len() - 10)?;
            }
        }
        for (node, hash) in &self.replica_hashes {
            writeln!(f, "  replica of node {node}: {hash}")?;
        }
        Ok(())
    }
}

/// Runs every check.
pub fn check(input: &CheckInput) -> CheckReport {
    let mut report = CheckReport {
        ops_checked: input.history.ops.len() as u64,
        anomalies: ANOMALY_KINDS
            .iter()
            .map(|k| (k.to_string(), Vec::new()))
            .collect(),
        stale_rejected: input.fenced.iter().filter(|w| !w.accepted).count() as u64,
        replica_hashes: BTreeMap::new(),
        key_claims_checked: 0,
        delayed_checked: 0,
    };
    let grants = client_grants(&input.history);
    check_client_double_grants(&input.history, &grants, &mut report);
    check_client_token_order(&grants, &mut report);
    check_client_completions(&input.history, &mut report);
    check_client_keys(&input.history, &mut report);
    check_client_tokens_unique_across_items(&grants, &mut report);
    let replicas = swarm_check::check_replicas(&input.replicas);
    for (kind, found) in replicas.anomalies {
        report.anomalies.entry(kind).or_default().extend(found);
    }
    report.replica_hashes = replicas.replica_hashes;
    check_stale_writes(&input.fenced, &mut report);
    check_lost_acks(&input.history, &input.replicas, &mut report);
    check_stuck(&input.replicas, &input.liveness, &mut report);
    check_key_limits(&input.replicas, &input.key_limits, &mut report);
    check_delays(&input.replicas, &mut report);
    check_leaders(&input.history, &mut report);
    report
}

// ---------------------------------------------------------------------------
// The client history.

/// A grant the client history proves: an acknowledged claim or handoff.
struct ClientGrant<'a> {
    op: &'a Op,
    grant: &'a Grant,
}

fn client_grants(history: &History) -> Vec<ClientGrant<'_>> {
    history
        .ops
        .iter()
        .filter(|op| {
            op.outcome == Outcome::Ok && matches!(op.kind, OpKind::Claim | OpKind::Handoff)
        })
        .flat_map(|op| {
            op.result
                .grants
                .iter()
                .map(move |grant| ClientGrant { op, grant })
        })
        .collect()
}

fn by_item<'a, 'b>(grants: &'b [ClientGrant<'a>]) -> BTreeMap<&'a str, Vec<&'b ClientGrant<'a>>> {
    let mut map: BTreeMap<&str, Vec<&ClientGrant<'_>>> = BTreeMap::new();
    for g in grants {
        map.entry(g.grant.item.as_str()).or_default().push(g);
    }
    map
}

/// The latest lease expiry the history proves for a claim: the grant's own,
/// or a later one from an acknowledged renew. A renew with an unknown
/// outcome or a new leader's extension can only make the true expiry later,
/// so a grant before this moment overlaps the claim for certain.
fn proven_expiry(history: &History, item: &str, token: u64, granted_expiry: u64) -> u64 {
    history
        .ops
        .iter()
        .filter(|op| op.outcome == Outcome::Ok && op.kind == OpKind::Renew)
        .flat_map(|op| op.result.grants.iter())
        .filter(|g| g.item == item && g.token == token)
        .map(|g| g.lease_expires_at_ms)
        .fold(granted_expiry, u64::max)
}

/// Whether some operation that may have ended the claim `(item, token)` may
/// have taken effect before `before_ms` (history clock): an acknowledged or
/// unknown complete, fail, release or handoff of that token, or cancel of
/// the item, invoked before then.
fn possibly_ended_before(history: &History, item: &str, token: u64, before_ms: u64) -> bool {
    history.ops.iter().any(|op| {
        op.outcome != Outcome::Failed
            && op.invoked_at_ms < before_ms
            && op.fields.item.as_deref() == Some(item)
            && match op.kind {
                OpKind::Complete | OpKind::Fail | OpKind::Release | OpKind::Handoff => {
                    op.fields.token == Some(token)
                }
                OpKind::Cancel => true,
                _ => false,
            }
    })
}

fn check_client_double_grants(
    history: &History,
    grants: &[ClientGrant<'_>],
    report: &mut CheckReport,
) {
    for (item, list) in by_item(grants) {
        for a in &list {
            for b in &list {
                if std::ptr::eq(*a, *b) {
                    continue;
                }
                let (ga, gb) = (a.grant, b.grant);
                if ga.token == gb.token {
                    // Reported once per pair, from the earlier operation.
                    if a.op.index < b.op.index {
                        report.add(
                            DOUBLE_GRANT,
                            format!(
                                "item {item}: token {} granted twice, to {} (op {}) and to {} (op {})",
                                ga.token, ga.agent, a.op.index, gb.agent, b.op.index
                            ),
                        );
                    }
                    continue;
                }
                // `a` was granted first when its claim was acknowledged
                // before `b`'s was invoked; for concurrent claims, token
                // order is apply order.
                let a_first = if a.op.effect_deadline_ms() < b.op.invoked_at_ms {
                    true
                } else if b.op.effect_deadline_ms() < a.op.invoked_at_ms {
                    false
                } else {
                    ga.token < gb.token
                };
                if !a_first {
                    continue;
                }
                // `b` was legitimate only if `a` had ended (or may have) or
                // its lease had run out.
                let expiry = proven_expiry(history, item, ga.token, ga.lease_expires_at_ms);
                if gb.granted_at_ms >= expiry {
                    continue;
                }
                if possibly_ended_before(history, item, ga.token, b.op.effect_deadline_ms()) {
                    continue;
                }
                report.add(
                    DOUBLE_GRANT,
                    format!(
                        "item {item}: token {} granted to {} (op {}) at {} while token {} of {} (op {}) was live until at least {} and never ended",
                        gb.token,
                        gb.agent,
                        b.op.index,
                        gb.granted_at_ms,
                        ga.token,
                        ga.agent,
                        a.op.index,
                        expiry
                    ),
                );
            }
        }
    }
}

/// Grants in real-time order (one acknowledged before the other was even
/// invoked) must carry increasing tokens.
fn check_client_token_order(grants: &[ClientGrant<'_>], report: &mut CheckReport) {
    for (item, list) in by_item(grants) {
        for a in &list {
            for b in &list {
                let a_done = a.op.completed_at_ms.unwrap_or(u64::MAX);
                if a_done < b.op.invoked_at_ms && a.grant.token >= b.grant.token {
                    report.add(
                        TOKEN_NOT_INCREASING,
                        format!(
                            "item {item}: token {} (op {}, acknowledged at {} ms) then token {} (op {}, invoked at {} ms)",
                            a.grant.token,
                            a.op.index,
                            a_done,
                            b.grant.token,
                            b.op.index,
                            b.op.invoked_at_ms
                        ),
                    );
                }
            }
        }
    }
}

fn check_client_completions(history: &History, report: &mut CheckReport) {
    let mut completed: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    for op in &history.ops {
        if op.kind == OpKind::Complete
            && op.outcome == Outcome::Ok
            && let (Some(item), Some(token)) = (op.fields.item.as_deref(), op.fields.token)
        {
            completed
                .entry(item)
                .or_default()
                .entry(token)
                .or_insert(op.index);
        }
    }
    for (item, tokens) in completed {
        if tokens.len() > 1 {
            let list: Vec<String> = tokens
                .iter()
                .map(|(t, op)| format!("token {t} (op {op})"))
                .collect();
            report.add(
                DUPLICATE_COMPLETION,
                format!(
                    "item {item}: completions acknowledged for {}",
                    list.join(", ")
                ),
            );
        }
    }
}

/// Acknowledged submits with one idempotency key must name one item.
fn check_client_keys(history: &History, report: &mut CheckReport) {
    let mut by_key: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for op in &history.ops {
        if op.kind == OpKind::Submit
            && op.outcome == Outcome::Ok
            && let (Some(key), Some(item)) = (
                op.fields.idempotency_key.as_deref(),
                op.result.item.as_deref(),
            )
            && !key.is_empty()
        {
            by_key
                .entry(key)
                .or_default()
                .entry(item)
                .or_insert(op.index);
        }
    }
    for (key, items) in by_key {
        if items.len() > 1 {
            let list: Vec<String> = items
                .iter()
                .map(|(item, op)| format!("{item} (op {op})"))
                .collect();
            report.add(
                UNKNOWN_APPLIED_TWICE,
                format!(
                    "idempotency key {key:?} acknowledged as different items: {}",
                    list.join(", ")
                ),
            );
        }
    }
}

/// A token is granted once, for one item: the client history must agree, as
/// every replica must ([`swarm_check`]).
fn check_client_tokens_unique_across_items(grants: &[ClientGrant<'_>], report: &mut CheckReport) {
    let mut owner: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
    for g in grants {
        match owner.get(&g.grant.token) {
            Some((item, op)) if *item != g.grant.item => report.add(
                TOKEN_NOT_INCREASING,
                format!(
                    "token {} granted for item {item} (op {op}) and item {} (op {})",
                    g.grant.token, g.grant.item, g.op.index
                ),
            ),
            Some(_) => {}
            None => {
                owner.insert(g.grant.token, (&g.grant.item, g.op.index));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The fenced resource, and the replicas against the history.

/// Recomputed from the log, never from the resource's own verdicts.
fn check_stale_writes(log: &[WriteAttempt], report: &mut CheckReport) {
    let mut attempts: Vec<&WriteAttempt> = log.iter().collect();
    attempts.sort_by_key(|w| w.seq);
    let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
    for w in attempts {
        if !w.accepted {
            continue;
        }
        let seen = highest.entry(w.item.as_str()).or_insert(w.token);
        if w.token < *seen {
            report.add(
                STALE_WRITE_ACCEPTED,
                format!(
                    "item {}: write {} by {} with token {} accepted after token {} was",
                    w.item, w.seq, w.writer, w.token, seen
                ),
            );
        } else {
            *seen = w.token;
        }
    }
}

/// Acknowledged effects must be on every replica: submitted items exist, and
/// a claim ended by an acknowledged complete, fail, release or handoff is
/// recorded as ended that way. An acknowledged item a replica does not hold
/// at all may have finished and been removed after the retention period:
/// that is a lost acknowledgement only when the replica misses more such
/// items than it removed.
fn check_lost_acks(history: &History, replicas: &[ReplicaState], report: &mut CheckReport) {
    let indexed: Vec<(NodeId, BTreeMap<&str, &WorkItem>)> = replicas
        .iter()
        .map(|r| (r.node, r.items.iter().map(|i| (i.id.as_str(), i)).collect()))
        .collect();
    // Per node: the acknowledged items it does not hold, each with the
    // first line that would report it.
    let mut missing: BTreeMap<NodeId, BTreeMap<&str, String>> = BTreeMap::new();
    for op in history.ops.iter().filter(|op| op.outcome == Outcome::Ok) {
        match op.kind {
            OpKind::Submit => {
                let Some(id) = op.result.item.as_deref() else {
                    continue;
                };
                for (node, items) in &indexed {
                    if !items.contains_key(id) {
                        missing.entry(*node).or_default().entry(id).or_insert_with(|| {
                            format!(
                                "node {node}: item {id} of acknowledged submit op {} is missing",
                                op.index
                            )
                        });
                    }
                }
            }
            OpKind::Complete | OpKind::Fail | OpKind::Release | OpKind::Handoff => {
                let (Some(id), Some(token)) = (op.fields.item.as_deref(), op.fields.token) else {
                    continue;
                };
                let ended = match op.kind {
                    OpKind::Complete => "completed",
                    OpKind::Fail => "failed",
                    OpKind::Release => "released",
                    _ => "handed_off",
                };
                for (node, items) in &indexed {
                    let Some(item) = items.get(id) else {
                        missing.entry(*node).or_default().entry(id).or_insert_with(|| {
                            format!(
                                "node {node}: item {id} token {token} should have ended {ended} (op {}) but the item is missing",
                                op.index
                            )
                        });
                        continue;
                    };
                    let found = item
                        .history
                        .iter()
                        .find(|h| h.token == token)
                        .map(|h| h.ended.as_str());
                    // An item keeps its most recent holder records only:
                    // one older than every kept record may have been
                    // dropped.
                    let trimmed =
                        found.is_none() && item.history.first().is_some_and(|h| h.token > token);
                    if found != Some(ended) && !trimmed {
                        report.add(
                            LOST_ACK,
                            format!(
                                "node {node}: item {id} token {token} should have ended {ended} (op {}) but is {}",
                                op.index,
                                match found {
                                    None => "unknown to the replica".to_string(),
                                    Some("") => "still live".to_string(),
                                    Some(other) => format!("ended {other}"),
                                }
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    for replica in replicas {
        let Some(lines) = missing.remove(&replica.node) else {
            continue;
        };
        if lines.len() as u64 <= replica.removed {
            continue;
        }
        for line in lines.into_values() {
            report.add(
                LOST_ACK,
                format!(
                    "{line} (and the replica removed only {} finished items after the retention period)",
                    replica.removed
                ),
            );
        }
    }
}

fn is_terminal(status: i32) -> bool {
    matches!(
        WorkStatus::try_from(status),
        Ok(WorkStatus::Completed | WorkStatus::Failed | WorkStatus::Cancelled)
    )
}

/// The event kinds that end a claim (a grant of the item ends it too).
const CLAIM_ENDS: [&str; 6] = [
    "completed",
    "failed",
    "retrying",
    "released",
    "expired",
    "cancelled",
];

/// The claims of one item a replica records, as intervals of the state
/// machine's clock: from each grant (`claimed`, `handed_off`) to the event
/// that ended it (`u64::MAX` while live). An item whose early events were
/// dropped (the per-item bound) tells only of its recent claims.
fn claim_intervals(item: &WorkItem) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut open: Option<u64> = None;
    for event in &item.events {
        let grant = matches!(event.kind.as_str(), "claimed" | "handed_off");
        if let Some(start) = open
            && (grant || CLAIM_ENDS.contains(&event.kind.as_str()))
        {
            out.push((start, event.at_ms));
            open = None;
        }
        if grant {
            open = Some(event.at_ms);
        }
    }
    if let Some(start) = open {
        out.push((start, u64::MAX));
    }
    out
}

/// No concurrency key ever had more claims live at once than its limit, by
/// every replica's records. A claim that ends when another starts (same
/// clock reading) does not overlap it: the state machine applied the end
/// first or the grant would not have been made.
fn check_key_limits(
    replicas: &[ReplicaState],
    limits: &BTreeMap<String, u32>,
    report: &mut CheckReport,
) {
    for replica in replicas {
        for (key, limit) in limits {
            let intervals: Vec<(u64, u64)> = replica
                .items
                .iter()
                .filter(|i| i.concurrency_key == *key)
                .flat_map(claim_intervals)
                .collect();
            report.key_claims_checked += intervals.len() as u64;
            let mut points: Vec<(u64, i64)> = intervals
                .into_iter()
                .flat_map(|(start, end)| [(start, 1), (end, -1)])
                .collect();
            // Ends before starts at one instant.
            points.sort();
            let (mut live, mut peak, mut at) = (0i64, 0i64, 0u64);
            for (t, d) in points {
                live += d;
                if live > peak {
                    (peak, at) = (live, t);
                }
            }
            if peak > i64::from(*limit) {
                report.add(
                    LIMIT_EXCEEDED,
                    format!(
                        "node {}: {peak} items of concurrency key {key:?} claimed at once at {at} (limit {limit})",
                        replica.node
                    ),
                );
            }
        }
    }
}

/// No delayed item was granted before its time, by every replica's records.
fn check_delays(replicas: &[ReplicaState], report: &mut CheckReport) {
    for replica in replicas {
        for item in replica.items.iter().filter(|i| i.not_before_ms > 0) {
            report.delayed_checked += 1;
            if let Some(early) = item
                .events
                .iter()
                .find(|e| e.kind == "claimed" && e.at_ms < item.not_before_ms)
            {
                report.add(
                    GRANTED_EARLY,
                    format!(
                        "node {}: item {} granted at {} before its time {}",
                        replica.node, item.id, early.at_ms, item.not_before_ms
                    ),
                );
            }
        }
    }
}

fn check_stuck(replicas: &[ReplicaState], liveness: &Liveness, report: &mut CheckReport) {
    if !liveness.deadline_passed {
        return;
    }
    let mut stuck: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for replica in replicas {
        for item in &replica.items {
            if is_terminal(item.status)
                || liveness.exempt_items.contains(&item.id)
                || (liveness.exempt_claimed && item.status == WorkStatus::Claimed as i32)
            {
                continue;
            }
            stuck.entry(item.id.as_str()).or_default().push(format!(
                "node {} {}",
                replica.node,
                swarm_check::status_name(item.status)
            ));
        }
    }
    for (id, seen) in stuck {
        report.add(
            STUCK,
            format!(
                "item {id} unfinished after the liveness deadline: {}",
                seen.join(", ")
            ),
        );
    }
}

fn check_leaders(history: &History, report: &mut CheckReport) {
    // term -> leader -> (observer, at_ms) of its first sighting.
    let mut terms: BTreeMap<u64, BTreeMap<NodeId, (NodeId, u64)>> = BTreeMap::new();
    for o in history.leaders.iter().filter(|o| o.leader != 0) {
        terms
            .entry(o.term)
            .or_default()
            .entry(o.leader)
            .or_insert((o.node, o.at_ms));
    }
    for (term, leaders) in terms {
        if leaders.len() > 1 {
            let list: Vec<String> = leaders
                .iter()
                .map(|(leader, (by, at))| format!("{leader} (seen by node {by} at {at} ms)"))
                .collect();
            report.add(
                TWO_LEADERS_IN_TERM,
                format!("term {term}: leaders {}", list.join(", ")),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the replicas of a live cluster.

/// How long [`collect_replicas`] waits for the replicas to agree.
pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one ListWork may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// [`collect_replicas_within`] with [`COLLECT_TIMEOUT`].
pub async fn collect_replicas(cluster: &Cluster) -> Result<Vec<ReplicaState>> {
    collect_replicas_within(cluster, COLLECT_TIMEOUT).await
}

/// Reads every running node's replica (ListWork, LOCAL) once all of them
/// report the same `last_applied`, and checks that none applied anything
/// while it was read, so the replicas are compared at one index. Retries
/// until `timeout`.
pub async fn collect_replicas_within(
    cluster: &Cluster,
    timeout: Duration,
) -> Result<Vec<ReplicaState>> {
    let deadline = Instant::now() + timeout;
    let mut last_problem = anyhow!("no attempt made");
    loop {
        match tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            read_replicas_at_one_index(cluster),
        )
        .await
        {
            Ok(Ok(replicas)) => return Ok(replicas),
            Ok(Err(e)) => last_problem = e,
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(last_problem.context(format!(
                "replicas did not agree on an applied index within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn applied_indexes(cluster: &Cluster, nodes: &[NodeId]) -> Result<BTreeMap<NodeId, u64>> {
    let mut applied = BTreeMap::new();
    for &node in nodes {
        applied.insert(node, cluster.applied(node).await?);
    }
    Ok(applied)
}

async fn read_replicas_at_one_index(cluster: &Cluster) -> Result<Vec<ReplicaState>> {
    let nodes = cluster.running();
    if nodes.is_empty() {
        bail!("no node is running");
    }
    let before = applied_indexes(cluster, &nodes).await?;
    let indexes: BTreeSet<u64> = before.values().copied().collect();
    if indexes.len() != 1 {
        bail!("nodes are at different applied indexes: {before:?}");
    }
    let mut replicas = Vec::with_capacity(nodes.len());
    for &node in &nodes {
        let removed = cluster.status(node).await?.items_removed;
        let request = ListWorkRequest {
            consistency: ReadConsistency::Local as i32,
            ..ListWorkRequest::default()
        };
        let items = cluster.list_all(node, request, READ_TIMEOUT).await?;
        replicas.push(ReplicaState {
            node,
            applied: before.get(&node).copied().unwrap_or_default(),
            items,
            removed,
        });
    }
    let after = applied_indexes(cluster, &nodes).await?;
    if after != before {
        bail!("nodes applied entries while being read: {before:?} then {after:?}");
    }
    Ok(replicas)
}
