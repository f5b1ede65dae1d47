//! [`WorkStatsResponse`] as JSON and as a table.
//!
//! JSON: `{"by_status": {"pending": N, "claimed": N, "completed": N,
//! "failed": N, "cancelled": N}, "by_type": {"T": {...same keys}},
//! "oldest_pending_age_ms": N or null, "oldest_pending_id": "id" or null,
//! "oldest_pending_age_ms_by_type": {"T": N}, "total": N, "scheduled": N,
//! "dead_letters": N, "by_concurrency_key": {"K": {"running": N, "pending":
//! N, "max_running": N or null, "rate": "10/s burst 20" or null}}}`.
//! `by_type` names only types that have items; the oldest pending item is
//! the pending one submitted first, of any type, and its age is taken by
//! the answering node's clock. `scheduled` items wait for their not-before
//! time and are counted in `pending` too; `dead_letters` failed because
//! their attempts ran out and are counted in `failed` too. Other keys may
//! be added, never removed.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use swarm_client::proto::{KeyStats, StatusCounts, WorkStatsResponse};

use crate::output::{Table, duration_ms, fields, or_dash};

fn counts_json(c: &StatusCounts) -> Value {
    json!({
        "pending": c.pending,
        "claimed": c.claimed,
        "completed": c.completed,
        "failed": c.failed,
        "cancelled": c.cancelled,
    })
}

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

/// Types in name order.
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
        "scheduled": stats.scheduled,
        "dead_letters": stats.dead_letters,
        "by_concurrency_key": by_key(stats)
            .into_iter()
            .map(|(key, k)| (key.to_string(), key_json(k)))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// Concurrency keys in name order.
fn by_key(stats: &WorkStatsResponse) -> BTreeMap<&str, &KeyStats> {
    stats
        .by_concurrency_key
        .iter()
        .map(|(key, k)| (key.as_str(), k))
        .collect()
}

fn key_json(k: &KeyStats) -> Value {
    json!({
        "running": k.running,
        "pending": k.pending,
        "max_running": (k.max_running != 0).then_some(k.max_running),
        "rate": Some(k.rate.as_str()).filter(|r| !r.is_empty()),
    })
}

/// One row per concurrency key: its items running and pending, and its
/// limit (`-`: none).
fn keys_table(stats: &WorkStatsResponse) -> Table {
    let mut table = Table::new(&[
        "CONCURRENCY_KEY",
        "RUNNING",
        "PENDING",
        "MAX_RUNNING",
        "RATE",
    ]);
    for (key, k) in by_key(stats) {
        table.push(vec![
            key.to_string(),
            k.running.to_string(),
            k.pending.to_string(),
            or_dash((k.max_running != 0).then_some(k.max_running)),
            or_dash(Some(k.rate.as_str()).filter(|r| !r.is_empty())),
        ]);
    }
    table
}

/// One row per type and a row for all of them; the total, the scheduled
/// items, the dead letters and the oldest pending item; then a row per
/// concurrency key, if there are any.
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
        ("scheduled", stats.scheduled.to_string()),
        ("dead letters", stats.dead_letters.to_string()),
        ("oldest pending", oldest),
    ]);
    let mut text = format!("{}\n{summary}", table.render());
    if !stats.by_concurrency_key.is_empty() {
        text.push('\n');
        text.push_str(&keys_table(stats).render());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> WorkStatsResponse {
        WorkStatsResponse {
            by_status: Some(StatusCounts {
                pending: 5,
                claimed: 2,
                failed: 1,
                ..Default::default()
            }),
            total: 8,
            scheduled: 3,
            dead_letters: 1,
            by_concurrency_key: [
                (
                    "db".to_string(),
                    KeyStats {
                        running: 2,
                        pending: 4,
                        max_running: 2,
                        rate: "10/s burst 20".into(),
                    },
                ),
                (
                    "api".to_string(),
                    KeyStats {
                        running: 0,
                        pending: 1,
                        max_running: 0,
                        rate: String::new(),
                    },
                ),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn scheduled_dead_letters_and_keys_as_json() {
        let v = stats_json(&stats());
        assert_eq!(
            (v["scheduled"].as_u64(), v["dead_letters"].as_u64()),
            (Some(3), Some(1))
        );
        assert_eq!(
            v["by_concurrency_key"],
            json!({
                "api": {"running": 0, "pending": 1, "max_running": null, "rate": null},
                "db": {"running": 2, "pending": 4, "max_running": 2, "rate": "10/s burst 20"},
            })
        );
    }

    #[test]
    fn scheduled_dead_letters_and_keys_as_text() {
        assert_eq!(
            stats_text(&stats()),
            "TYPE   PENDING  CLAIMED  COMPLETED  FAILED  CANCELLED\n\
             (all)  5        2        0          1       0\n\
             \n\
             total           8\n\
             scheduled       3\n\
             dead letters    1\n\
             oldest pending  -\n\
             \n\
             CONCURRENCY_KEY  RUNNING  PENDING  MAX_RUNNING  RATE\n\
             api              0        1        -            -\n\
             db               2        4        2            10/s burst 20\n"
        );
        let no_keys = WorkStatsResponse {
            by_concurrency_key: Default::default(),
            ..stats()
        };
        assert!(!stats_text(&no_keys).contains("CONCURRENCY_KEY"));
    }
}
