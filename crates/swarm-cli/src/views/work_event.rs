//! A [`WorkEvent`] as JSON, as a table row, and as the one-line news that
//! `workflow run --wait` prints.
//!
//! JSON keys: `seq`, `at` (Unix epoch ms), `kind`, `agent` and `token`
//! (null when the event concerns no holder), `step` and `detail` (null when
//! empty). A live watch adds `status` (the item's, when the event was sent)
//! and `outcome` (a step event's `{"run", "entry"}`, parsed; else null).

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use swarm_client::proto::WorkEvent;

use super::work_item::{json_text, status_name};
use swarm_reactor::JournalRecord;

use super::workflow_steps::{describe, step_label};
use crate::output::or_dash;

/// Whether the item has no more events after this one. Only the kind says
/// so: `status` is the item's status when the event was *sent*, so every
/// event replayed from the start of an ended item carries the final status.
pub fn is_final(event: &WorkEvent) -> bool {
    matches!(event.kind.as_str(), "completed" | "failed" | "cancelled")
}

/// The event as `work get -o json` lists it under `"events"`.
pub fn event_json(event: &WorkEvent) -> Value {
    json!({
        "seq": event.seq,
        "at": event.at_ms,
        "kind": event.kind,
        "agent": Some(event.agent.as_str()).filter(|a| !a.is_empty()),
        "token": (event.token != 0).then_some(event.token),
        "step": Some(event.step.as_str()).filter(|s| !s.is_empty()),
        "detail": Some(event.detail.as_str()).filter(|d| !d.is_empty()),
    })
}

/// The event as `work watch -o json` prints it: one line, with the item's
/// status and a step event's outcome.
pub fn watched_event_json(event: &WorkEvent) -> Value {
    let mut value = event_json(event);
    if let Value::Object(map) = &mut value {
        map.insert("status".into(), json!(status_name(event.status)));
        map.insert("outcome".into(), json_text(&event.outcome_json));
    }
    value
}

/// Column widths of the `work watch` table, which is printed a row at a
/// time and so cannot be measured first.
const WIDTHS: [usize; 5] = [24, 16, 12, 6, 24];

/// The header of the `work watch` table.
pub fn watch_header() -> String {
    watch_line(["TIME", "KIND", "AGENT", "TOKEN", "STEP", "DETAIL"].map(String::from))
}

/// One row of the `work watch` table: time, kind, agent, token, step and
/// what happened (a step event says what its journal entry records).
pub fn watch_row(item_id: &str, event: &WorkEvent) -> String {
    let recorded = JournalRecord::parse(&event.outcome_json);
    let (step, detail) = match &recorded {
        Some(r) => (
            step_label(item_id, r).unwrap_or_else(|| event.step.clone()),
            describe(&r.entry),
        ),
        None => (event.step.clone(), event.detail.clone()),
    };
    watch_line([
        time(event.at_ms),
        event.kind.clone(),
        or_dash(Some(event.agent.as_str()).filter(|a| !a.is_empty())),
        or_dash((event.token != 0).then_some(event.token)),
        or_dash(Some(step).filter(|s| !s.is_empty())),
        detail,
    ])
}

fn watch_line(cells: [String; 6]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        line.push_str(cell);
        if let Some(width) = WIDTHS.get(i) {
            let pad = width.saturating_sub(cell.chars().count()) + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line.trim_end().to_string()
}

/// `2024-05-01T12:00:00.123Z`.
fn time(at_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// What `workflow run --wait` says about an event, or `None` for events
/// the progress bar shows instead (a step starting, a retry's delay, the
/// run's own start and end).
pub fn news(item_id: &str, event: &WorkEvent) -> Option<String> {
    let agent = if event.agent.is_empty() {
        "?"
    } else {
        event.agent.as_str()
    };
    let detail = |prefix: &str| {
        if event.detail.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}: {}", event.detail)
        }
    };
    Some(match event.kind.as_str() {
        "submitted" => "submitted".to_string(),
        "claimed" => format!("claimed by {agent} with token {}", event.token),
        "handed_off" => format!("handed off to {agent} with token {}", event.token),
        "released" => format!("released by {agent}"),
        "expired" => format!("lease of {agent} (token {}) expired", event.token),
        "retrying" => detail(&format!("attempt on {agent} failed, retrying")),
        "cancel_requested" => detail("cancel requested: the holder is undoing completed steps"),
        "completed" => "completed".to_string(),
        "failed" => detail("failed"),
        "cancelled" => detail("cancelled"),
        "step" => {
            let recorded = JournalRecord::parse(&event.outcome_json)?;
            use swarm_reactor::JournalEntry as E;
            match &recorded.entry {
                E::StepStarted { .. } | E::StepRetried { .. } | E::RunStarted { .. } => {
                    return None;
                }
                E::RunFinished { .. } if recorded.run == item_id => return None,
                _ => {}
            }
            let what = describe(&recorded.entry);
            let is_run_entry = matches!(
                recorded.entry,
                E::RunFinished { .. } | E::RunSuspended { .. }
            );
            let sub_run = recorded
                .run
                .strip_prefix(item_id)
                .and_then(|r| r.strip_prefix('/'));
            match (is_run_entry, sub_run) {
                (true, Some(sub)) => format!("sub-workflow {sub}: {what}"),
                (true, None) => what,
                (false, _) => {
                    let step = step_label(item_id, &recorded).unwrap_or_default();
                    format!("step {step} {what}")
                }
            }
        }
        other => detail(other),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use swarm_client::proto::WorkStatus;

    use super::*;

    fn step_event(seq: u64, run: &str, entry: serde_json::Value) -> WorkEvent {
        WorkEvent {
            seq,
            at_ms: 1_700_000_000_123,
            kind: "step".into(),
            step: "a".into(),
            detail: "3".into(),
            outcome_json: json!({"run": run, "entry": entry}).to_string(),
            status: WorkStatus::Claimed as i32,
            ..Default::default()
        }
    }

    fn claimed() -> WorkEvent {
        WorkEvent {
            seq: 1,
            at_ms: 1_700_000_000_000,
            kind: "claimed".into(),
            agent: "node-1".into(),
            token: 7,
            status: WorkStatus::Claimed as i32,
            ..Default::default()
        }
    }

    #[test]
    fn event_json_has_nulls_for_what_is_absent() {
        assert_eq!(
            event_json(&claimed()),
            json!({"seq": 1, "at": 1_700_000_000_000u64, "kind": "claimed",
                   "agent": "node-1", "token": 7, "step": null, "detail": null})
        );
        let e = step_event(
            4,
            "w1",
            json!({"event": "step_succeeded", "step": "a", "attempt": 1,
                   "arguments": {}, "result": 2}),
        );
        let v = watched_event_json(&e);
        assert_eq!(v["token"], Value::Null);
        assert_eq!(v["status"], "claimed");
        assert_eq!(v["outcome"]["entry"]["result"], 2);
        assert_eq!(v["step"], "a");
    }

    #[test]
    fn watch_rows_describe_step_entries() {
        let e = step_event(
            4,
            "w1/sub",
            json!({"event": "step_failed", "step": "x", "attempt": 2,
                   "error": "boom", "will_retry": false}),
        );
        let row = watch_row("w1", &e);
        assert!(row.starts_with("2023-11-14T22:13:20.123Z  step "), "{row}");
        assert!(
            row.ends_with(&format!("sub/x{}failed on attempt 2: boom", " ".repeat(21))),
            "{row}"
        );
        let row = watch_row("w1", &claimed());
        assert!(row.contains("claimed           node-1        7"), "{row}");
        assert!(watch_header().starts_with("TIME "));
    }

    #[test]
    fn news_lines() {
        assert_eq!(
            news("w1", &claimed()).as_deref(),
            Some("claimed by node-1 with token 7")
        );
        let handed = WorkEvent {
            kind: "handed_off".into(),
            agent: "node-3".into(),
            token: 9,
            ..claimed()
        };
        assert_eq!(
            news("w1", &handed).as_deref(),
            Some("handed off to node-3 with token 9")
        );
        let ok = step_event(
            2,
            "w1",
            json!({"event": "step_succeeded", "step": "a", "attempt": 1,
                   "arguments": {}, "result": 2}),
        );
        assert_eq!(
            news("w1", &ok).as_deref(),
            Some("step a succeeded (attempt 1)")
        );
        let started = step_event(
            2,
            "w1",
            json!({"event": "step_started", "step": "a", "attempt": 1}),
        );
        assert_eq!(news("w1", &started), None);
        let undone = step_event(2, "w1", json!({"event": "step_undone", "step": "a"}));
        assert_eq!(news("w1", &undone).as_deref(), Some("step a undone"));
        let suspended = step_event(
            2,
            "w1",
            json!({"event": "run_suspended", "reason": {"kind": "requested"}, "step": null}),
        );
        assert!(
            news("w1", &suspended).unwrap().starts_with("run suspended"),
            "{:?}",
            news("w1", &suspended)
        );
        let failed = WorkEvent {
            kind: "failed".into(),
            detail: "step \"b\" failed".into(),
            status: WorkStatus::Failed as i32,
            ..claimed()
        };
        assert_eq!(
            news("w1", &failed).as_deref(),
            Some("failed: step \"b\" failed")
        );
        assert!(is_final(&failed));
        assert!(!is_final(&claimed()));
        let replayed = WorkEvent {
            status: WorkStatus::Completed as i32,
            ..claimed()
        };
        assert!(
            !is_final(&replayed),
            "a replayed event carries the final status"
        );
    }
}
