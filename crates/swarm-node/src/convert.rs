//! Domain <-> protobuf conversions and the one place that maps domain errors
//! to gRPC status codes. prost types do not travel past the service layer.

use std::time::Duration;

use swarm_claims::{ClaimError, Status as WorkStatus, StatusCounts, WorkCounts, WorkItem};
use swarm_proto::v1 as pb;
use swarm_raft::ClusterError;
use tonic::Status;

use crate::listing::ReadError;

pub fn status_to_pb(s: WorkStatus) -> pb::WorkStatus {
    match s {
        WorkStatus::Pending => pb::WorkStatus::Pending,
        WorkStatus::Claimed => pb::WorkStatus::Claimed,
        WorkStatus::Completed => pb::WorkStatus::Completed,
        WorkStatus::Failed => pb::WorkStatus::Failed,
        WorkStatus::Cancelled => pb::WorkStatus::Cancelled,
    }
}

pub fn status_from_pb(s: pb::WorkStatus) -> Option<WorkStatus> {
    match s {
        pb::WorkStatus::Unspecified => None,
        pb::WorkStatus::Pending => Some(WorkStatus::Pending),
        pb::WorkStatus::Claimed => Some(WorkStatus::Claimed),
        pb::WorkStatus::Completed => Some(WorkStatus::Completed),
        pb::WorkStatus::Failed => Some(WorkStatus::Failed),
        pb::WorkStatus::Cancelled => Some(WorkStatus::Cancelled),
    }
}

pub fn item_to_pb(item: &WorkItem) -> pb::WorkItem {
    pb::WorkItem {
        id: item.id.to_string(),
        r#type: item.kind.to_string(),
        priority: item.priority,
        requires: item.requires().to_vec(),
        payload_json: item.payload.to_string(),
        status: status_to_pb(item.status) as i32,
        attempt: item.attempt,
        max_attempts: item.max_attempts,
        claim: item.lease.as_ref().map(|l| pb::Claim {
            agent: l.agent.to_string(),
            token: l.token,
            lease_expires_at_ms: l.expires_at,
            lease_ms: l.lease_ms,
            granted_at_ms: l.granted_at,
            progress: l.progress.as_deref().map(str::to_string),
        }),
        token: item.token,
        result_json: item.result.as_deref().map(str::to_string),
        error: item.error().map(str::to_string),
        idempotency_key: item.idempotency_key.to_string(),
        submitted_at_ms: item.submitted_at,
        updated_at_ms: item.updated_at,
        history: item
            .holders()
            .map(|h| pb::HolderRecord {
                agent: h.agent.to_string(),
                token: h.token,
                granted_at_ms: h.granted_at,
                ended: h.ended.map(|e| e.as_str().to_string()).unwrap_or_default(),
            })
            .collect(),
        journal: item
            .journal()
            .iter()
            .map(|j| pb::JournalEntry {
                step: j.step.clone(),
                token: j.token,
                outcome_json: j.outcome.clone(),
            })
            .collect(),
        events: (0..item.event_count())
            .filter_map(|i| event_to_pb(item, i))
            .collect(),
        cancel_requested: item.cancel_requested().map(str::to_string),
        not_before_ms: item.not_before(),
        concurrency_key: item
            .concurrency_key()
            .map(ToString::to_string)
            .unwrap_or_default(),
        dead_letter: item.dead_letter(),
        retries: item.control().map_or(0, |c| c.retries),
        hold: item
            .control()
            .and_then(|c| c.hold.as_ref())
            .map(swarm_claims::Hold::describe)
            .unwrap_or_default(),
        hold_since_ms: item
            .control()
            .and_then(|c| c.hold.as_ref())
            .map_or(0, swarm_claims::Hold::since),
        pause_requested: item.control().and_then(|c| c.pause_requested.clone()),
    }
}

/// The event at `index` in `item`'s kept events, numbered by its sequence
/// number (dropped events counted), with a step event's journal outcome.
pub fn event_to_pb(item: &WorkItem, index: usize) -> Option<pb::WorkEvent> {
    let e = item.event(index)?;
    let outcome_json = match e.kind {
        swarm_claims::EventKind::StepRecorded => e
            .journal_index()
            .and_then(|i| item.journal().get(i))
            .map(|j| j.outcome.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    Some(pb::WorkEvent {
        seq: item.event_seq(index),
        at_ms: e.at,
        kind: e.kind.as_str().to_string(),
        agent: e.agent.as_deref().unwrap_or_default().to_string(),
        token: e.token().unwrap_or(0),
        step: e.step().unwrap_or_default().to_string(),
        detail: e.detail().unwrap_or_default().to_string(),
        outcome_json,
        status: status_to_pb(item.status) as i32,
    })
}

fn counts_to_pb(c: &StatusCounts) -> pb::StatusCounts {
    pb::StatusCounts {
        pending: c.pending,
        claimed: c.claimed,
        completed: c.completed,
        failed: c.failed,
        cancelled: c.cancelled,
    }
}

/// Stats from the state's counts and its oldest pending items (overall and
/// per type), whose ages are taken at `now_ms`.
pub fn stats_to_pb(state: &swarm_claims::State, now_ms: u64) -> pb::WorkStatsResponse {
    let counts: &WorkCounts = state.counts();
    let oldest_pending: Option<&WorkItem> = state.oldest_pending();
    pb::WorkStatsResponse {
        by_status: Some(counts_to_pb(&counts.by_status())),
        by_type: counts
            .by_kind()
            .map(|(kind, c)| (kind.to_string(), counts_to_pb(c)))
            .collect(),
        oldest_pending_age_ms: oldest_pending.map(|i| now_ms.saturating_sub(i.submitted_at)),
        oldest_pending_id: oldest_pending.map(|i| i.id.to_string()).unwrap_or_default(),
        total: counts.total(),
        oldest_pending_age_ms_by_type: state
            .oldest_pending_by_kind()
            .map(|(kind, i)| (kind.to_string(), now_ms.saturating_sub(i.submitted_at)))
            .collect(),
        scheduled: state.delayed_count() as u64,
        by_concurrency_key: key_stats(state),
        dead_letters: counts.dead_letters(),
    }
}

/// Running and pending items per concurrency key (every key with items or
/// a limit), with the key's limit.
fn key_stats(state: &swarm_claims::State) -> std::collections::HashMap<String, pb::KeyStats> {
    let mut out = std::collections::HashMap::new();
    for (key, c) in state.counts().by_concurrency_key() {
        out.insert(
            key.to_string(),
            pb::KeyStats {
                running: c.claimed,
                pending: c.pending,
                ..pb::KeyStats::default()
            },
        );
    }
    for (key, limit) in state.limits() {
        let stats = out.entry(key.to_string()).or_default();
        stats.max_running = limit.max_running;
        stats.rate = limit
            .rate
            .map(|r| format!("{} burst {}", crate::queue_service::rate_text(&r), r.burst))
            .unwrap_or_default();
    }
    out
}

/// The gRPC status for a refused read.
pub fn read_error_status(e: &ReadError) -> Status {
    match e {
        ReadError::UnknownStatus(_) | ReadError::BadPageToken | ReadError::LimitTooLarge { .. } => {
            Status::invalid_argument(e.to_string())
        }
        ReadError::TooLarge { .. } | ReadError::PageItemTooLarge { .. } => {
            Status::resource_exhausted(e.to_string())
        }
    }
}

/// NOT_FOUND for a work item this replica does not hold: it never existed,
/// or it finished and was removed after the retention period.
pub fn work_not_found(id: &str, retention: Duration) -> Status {
    Status::not_found(not_found_text(id, retention))
}

/// Why an item is not found: it may have finished and been removed.
pub(crate) fn not_found_text(id: &str, retention: Duration) -> String {
    format!(
        "work item {id:?} not found (finished items are removed after the retention period, {})",
        retention_text(retention)
    )
}

/// NOT_FOUND for a watched item that was removed before the watch read its
/// end: only finished items are removed, so it did finish.
pub fn work_removed_while_watched(id: &str, retention: Duration) -> Status {
    Status::not_found(format!(
        "work item {id:?} finished and was removed after the retention period ({}) before this watch read its end",
        retention_text(retention)
    ))
}

/// A retention as an operator writes it: whole hours as hours (`24h`, not
/// humantime's `1day`), anything else in humantime's form (`2s`, `1m 30s`).
fn retention_text(retention: Duration) -> String {
    let secs = retention.as_secs();
    if retention.subsec_nanos() == 0 && secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        humantime::format_duration(retention).to_string()
    }
}

/// [`cluster_error_status`] for a call on a work item: an item that is not
/// there is answered as by [`work_not_found`].
pub fn work_call_status(e: &ClusterError, retention: Duration) -> Status {
    match e {
        ClusterError::Refused(ClaimError::NotFound { id }) => work_not_found(id, retention),
        e => cluster_error_status(e),
    }
}

/// The gRPC status for a refused command.
pub fn claim_error_status(e: &ClaimError) -> Status {
    match e {
        ClaimError::NotFound { .. } | ClaimError::Unknown { .. } => {
            Status::not_found(e.to_string())
        }
        ClaimError::Exists { .. } => Status::already_exists(e.to_string()),
        ClaimError::StaleToken { .. }
        | ClaimError::WrongStatus { .. }
        | ClaimError::NotHolder { .. } => Status::failed_precondition(e.to_string()),
        ClaimError::DuplicateId { .. } => Status::already_exists(e.to_string()),
        ClaimError::Invalid { .. } => Status::invalid_argument(e.to_string()),
    }
}

/// The gRPC status for a call through the cluster that did not succeed.
/// When nothing was applied (no leader, or the leader could not be
/// reached), the status carries [`swarm_proto::LEADER_ADDR_KEY`] (empty when
/// no leader is known): the client may then retry any call safely. An
/// outcome that is unknown carries no such key.
pub fn cluster_error_status(e: &ClusterError) -> Status {
    match e {
        ClusterError::Refused(e) => claim_error_status(e),
        ClusterError::NotLeader { leader_addr, .. } => {
            not_applied(e.to_string(), leader_addr.as_deref().unwrap_or(""))
        }
        ClusterError::Unavailable(_) => not_applied(e.to_string(), ""),
        ClusterError::Unknown(_) => Status::deadline_exceeded(e.to_string()),
        ClusterError::Membership(_) => Status::failed_precondition(e.to_string()),
    }
}

fn not_applied(message: String, leader_addr: &str) -> Status {
    let mut s = Status::unavailable(message);
    if let Ok(v) = leader_addr.parse() {
        s.metadata_mut().insert(swarm_proto::LEADER_ADDR_KEY, v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_item_says_finished_items_are_removed_after_the_retention() {
        let day = work_not_found("w1", Duration::from_secs(24 * 3600));
        assert_eq!(day.code(), tonic::Code::NotFound);
        assert_eq!(
            day.message(),
            r#"work item "w1" not found (finished items are removed after the retention period, 24h)"#
        );
        let short = work_not_found("w1", Duration::from_millis(2_500));
        assert!(
            short.message().ends_with("retention period, 2s 500ms)"),
            "{}",
            short.message()
        );
        let refused = ClusterError::Refused(ClaimError::NotFound { id: "w2".into() });
        let status = work_call_status(&refused, Duration::ZERO);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().contains(r#""w2""#) && status.message().contains("0s"));
        let removed = work_removed_while_watched("w3", Duration::ZERO);
        assert!(
            removed.message().contains("finished and was removed"),
            "{}",
            removed.message()
        );
    }
}
