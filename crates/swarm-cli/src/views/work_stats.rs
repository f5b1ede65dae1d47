//! [`WorkStatsResponse`] as JSON and as a table.
//!
//! JSON: `{"by_status": {"pending": N, "claimed": N, "completed": N,
//! "failed": N, "cancelled": N}, "by_type": {"T": {...same keys}},
//! "oldest_pending_age_ms": N or null, "oldest_pending_id": "id" or null,
//! "oldest_pending_age_ms_by_type": {"T": N}, "total": N}`. `by_type` names only types that have items; the oldest
//! pending item is the pending one submitted first, of any type, and its
//! age is taken by the answering node's clock. Other keys may be added,
//! never removed.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use swarm_client::proto::{StatusCounts, WorkStatsResponse};

use crate::output::{Table, duration_ms, fields};

fn counts_json(c: &StatusCounts) -> Value {
    json!({
        "pending": c.pending,
        "claimed": c.claimed,
        "completed": c.completed,
        "failed": c.failed,
        "cancelled": c.cancelled,
    })
}

/// Types in name order.
/// The header of a table of counts by status, a row per type.
pub const COUNTS_HEADER: [&str; 6] = [
    "TYPE",
    "PENDING",
    "CLAIMED",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
];

/// A row of [`COUNTS_HEADER`]: `name` and its counts.
pub fn counts_row(name: &str, c: &StatusCounts) -> Vec<String> {
    vec![
        name.to_string(),
        c.pending.to_string(),
        c.claimed.to_string(),
        c.completed.to_string(),
        c.failed.to_string(),
        c.cancelled.to_string(),
    ]
}

pub fn by_type(stats: &WorkStatsResponse) -> BTreeMap<&str, &StatusCounts> {
    stats
        .by_type
        .iter()
        .map(|(kind, c)| (kind.as_str(), c))
        .collect()
}

pub fn stats_json(stats: &WorkStatsResponse) -> Value {
    let none = StatusCounts::default();
    let by_status = stats.by_status.as_ref().unwrap_or(&none);
    let types: serde_json::Map<String, Value> = by_type(stats)
        .into_iter()
        .map(|(kind, c)| (kind.to_string(), counts_json(c)))
        .collect();
    json!({
        "by_status": counts_json(by_status),
        "by_type": types,
        "oldest_pending_age_ms": stats.oldest_pending_age_ms,
        "oldest_pending_id": Some(stats.oldest_pending_id.as_str()).filter(|id| !id.is_empty()),
        "oldest_pending_age_ms_by_type": stats
            .oldest_pending_age_ms_by_type
            .iter()
            .collect::<BTreeMap<_, _>>(),
        "total": stats.total,
    })
}

/// One row per type and a row for all of them, then the total and the
/// oldest pending item.
pub fn stats_text(stats: &WorkStatsResponse) -> String {
    let mut table = Table::new(&COUNTS_HEADER);
    let row = |name: &str, c: &StatusCounts| counts_row(name, c);
    for (kind, c) in by_type(stats) {
        table.push(row(kind, c));
    }
    let none = StatusCounts::default();
    table.push(row("(all)", stats.by_status.as_ref().unwrap_or(&none)));
    let oldest = match stats.oldest_pending_age_ms {
        Some(age) => format!("{} ({})", duration_ms(age), stats.oldest_pending_id),
        None => "-".to_string(),
    };
    let summary = fields(&[
        ("total", stats.total.to_string()),
        ("oldest pending", oldest),
    ]);
    format!("{}\n{summary}", table.render())
}
