//! A [`WorkItem`] as JSON and as table rows.
//!
//! The JSON keys are what scripts rely on: `id`, `type`, `status` (a
//! lowercase word), `holder` and `token` (the live claim's, or null),
//! `attempt`, `payload` and `result` (parsed JSON, null when empty),
//! `priority`, `requires`, `error`, `lease_expires_at` (Unix epoch ms, or
//! null), `history` (`agent`, `token`, `granted_at`, `ended`), `steps` (a
//! workflow's steps from its journal: `name`, `status`, `attempts`, `node`;
//! see [`super::workflow_steps`]), `cancel_requested` (the reason, while a
//! cancel waits for the holder to undo; else null), `events` (see
//! [`super::work_event`]), `not_before` (Unix epoch ms before which the
//! item is not claimable, or null), `concurrency_key` (or null),
//! `dead_letter` (true when it failed because its attempts ran out),
//! `retries` (how often `work retry` put it back), `attempts` (its holders
//! numbered as attempts, each with its error; see [`super::attempts`]) and
//! `last_error` (or null). `status` is the item's status on the cluster:
//! a scheduled item is `pending` (tables say `scheduled`). Other keys may be
//! added, never removed.

use serde_json::{Value, json};
use swarm_claims::WORKFLOW_KIND;
use swarm_client::proto::{WorkItem, WorkStatus};

use super::attempts::{attempts_json, attempts_table, last_error};
use super::work_event::event_json;
use super::workflow_steps::{board_of, steps_json, steps_table};
use crate::output::{Table, fields, or_dash, time_left, utc_time, utc_time_ahead};

/// The lowercase word for a status: `pending`, `claimed`, `completed`,
/// `failed`, `cancelled` (`unknown` for a value this build does not know).
pub fn status_name(status: i32) -> &'static str {
    match WorkStatus::try_from(status) {
        Ok(WorkStatus::Pending) => "pending",
        Ok(WorkStatus::Claimed) => "claimed",
        Ok(WorkStatus::Completed) => "completed",
        Ok(WorkStatus::Failed) => "failed",
        Ok(WorkStatus::Cancelled) => "cancelled",
        Ok(WorkStatus::Unspecified) | Err(_) => "unknown",
    }
}

/// The status as tables show it: [`status_name`], except that a paused
/// item is `paused`, a parked workflow run `waiting`, and a pending item
/// waiting for its not-before time `scheduled`.
pub fn shown_status(item: &WorkItem, now_ms: u64) -> &'static str {
    if item.status == WorkStatus::Pending as i32 && item.hold.starts_with("paused") {
        "paused"
    } else if item.status == WorkStatus::Pending as i32 && !item.hold.is_empty() {
        "waiting"
    } else if is_scheduled(item, now_ms) {
        "scheduled"
    } else {
        status_name(item.status)
    }
}

/// A hold as the node words it, its time (`until <epoch ms>`) in RFC 3339.
fn readable_hold(hold: &str) -> String {
    let Some((head, ms)) = hold.rsplit_once("until ") else {
        return hold.to_string();
    };
    match ms.parse::<u64>() {
        Ok(ms) => format!("{head}until {}", utc_time(ms)),
        Err(_) => hold.to_string(),
    }
}

fn is_scheduled(item: &WorkItem, now_ms: u64) -> bool {
    item.status == WorkStatus::Pending as i32 && item.not_before_ms > now_ms
}

/// JSON text from the wire as a value: empty is null. Text that is not JSON
/// (which a node should never send) is kept as a string rather than lost.
pub fn json_text(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub fn item_json(item: &WorkItem) -> Value {
    let claim = item.claim.as_ref();
    json!({
        "id": item.id,
        "type": item.r#type,
        "status": status_name(item.status),
        "holder": claim.map(|c| c.agent.as_str()),
        "token": claim.map(|c| c.token),
        "attempt": item.attempt,
        "max_attempts": item.max_attempts,
        "priority": item.priority,
        "requires": item.requires,
        "payload": json_text(&item.payload_json),
        "result": item.result_json.as_deref().map_or(Value::Null, json_text),
        "error": item.error.as_deref().filter(|e| !e.is_empty()),
        "lease_expires_at": claim.map(|c| c.lease_expires_at_ms),
        "lease_ms": claim.map(|c| c.lease_ms),
        "granted_at": claim.map(|c| c.granted_at_ms),
        "progress": claim.and_then(|c| c.progress.as_deref()),
        "last_token": (item.token != 0).then_some(item.token),
        "idempotency_key": Some(item.idempotency_key.as_str()).filter(|k| !k.is_empty()),
        "submitted_at": item.submitted_at_ms,
        "updated_at": item.updated_at_ms,
        "history": item.history.iter().map(|h| json!({
            "agent": h.agent,
            "token": h.token,
            "granted_at": h.granted_at_ms,
            "ended": Some(h.ended.as_str()).filter(|e| !e.is_empty()),
        })).collect::<Vec<_>>(),
        "journal": item.journal.iter().map(|j| json!({
            "step": j.step,
            "token": j.token,
            "outcome": json_text(&j.outcome_json),
        })).collect::<Vec<_>>(),
        "steps": steps_json(&board_of(item)),
        "cancel_requested": item.cancel_requested,
        "events": item.events.iter().map(event_json).collect::<Vec<_>>(),
        "not_before": (item.not_before_ms != 0).then_some(item.not_before_ms),
        "concurrency_key": Some(item.concurrency_key.as_str()).filter(|k| !k.is_empty()),
        "dead_letter": item.dead_letter,
        "retries": item.retries,
        "attempts": attempts_json(item),
        "last_error": last_error(item),
        "hold": Some(item.hold.as_str()).filter(|h| !h.is_empty()),
        "hold_since": (item.hold_since_ms != 0).then_some(item.hold_since_ms),
        "pause_requested": item.pause_requested,
    })
}

pub fn items_json(items: &[WorkItem]) -> Value {
    Value::Array(items.iter().map(item_json).collect())
}

/// One row per item: what `work list` and `work claim` show.
pub fn items_table(items: &[WorkItem], now_ms: u64) -> Table {
    let mut table = Table::new(&[
        "ID", "TYPE", "STATUS", "HOLDER", "TOKEN", "ATTEMPT", "PRIORITY", "LEASE",
    ]);
    for item in items {
        let claim = item.claim.as_ref();
        table.push(vec![
            item.id.clone(),
            item.r#type.clone(),
            shown_status(item, now_ms).to_string(),
            or_dash(claim.map(|c| c.agent.as_str())),
            or_dash(claim.map(|c| c.token)),
            item.attempt.to_string(),
            item.priority.to_string(),
            or_dash(claim.map(|c| time_left(c.lease_expires_at_ms, now_ms))),
        ]);
    }
    table
}

/// One item, field by field, then its workflow steps and its attempts.
pub fn item_detail(item: &WorkItem, now_ms: u64) -> String {
    let claim = item.claim.as_ref();
    let attempts = if item.max_attempts == 0 {
        item.attempt.to_string()
    } else {
        format!("{}/{}", item.attempt, item.max_attempts)
    };
    let compact = |v: Value| match v {
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut pairs = vec![
        ("id", item.id.clone()),
        ("type", item.r#type.clone()),
        ("status", shown_status(item, now_ms).to_string()),
        (
            "not before",
            or_dash((item.not_before_ms != 0).then(|| utc_time_ahead(item.not_before_ms, now_ms))),
        ),
        (
            "dead letter",
            if item.dead_letter { "yes" } else { "no" }.to_string(),
        ),
        (
            "held",
            match (item.hold.is_empty(), item.pause_requested.as_deref()) {
                (false, _) => format!(
                    "{} (since {})",
                    readable_hold(&item.hold),
                    utc_time(item.hold_since_ms)
                ),
                (true, Some(reason)) => format!("pause requested: {reason}"),
                (true, None) => "-".to_string(),
            },
        ),
        ("holder", or_dash(claim.map(|c| c.agent.as_str()))),
        ("token", or_dash(claim.map(|c| c.token))),
        (
            "lease",
            or_dash(claim.map(|c| time_left(c.lease_expires_at_ms, now_ms))),
        ),
        (
            "progress",
            or_dash(claim.and_then(|c| c.progress.as_deref())),
        ),
        ("attempt", attempts),
        ("retries", item.retries.to_string()),
        ("priority", item.priority.to_string()),
        (
            "requires",
            or_dash(Some(item.requires.join(",")).filter(|r| !r.is_empty())),
        ),
        (
            "concurrency key",
            or_dash(Some(item.concurrency_key.as_str()).filter(|k| !k.is_empty())),
        ),
        ("payload", compact(json_text(&item.payload_json))),
        (
            "result",
            compact(item.result_json.as_deref().map_or(Value::Null, json_text)),
        ),
        (
            "error",
            or_dash(item.error.as_deref().filter(|e| !e.is_empty())),
        ),
    ];
    if let Some(reason) = &item.cancel_requested {
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        pairs.push(("cancel", format!("requested ({reason})")));
    }
    let mut text = fields(&pairs);
    let steps = board_of(item);
    if item.r#type == WORKFLOW_KIND && !steps.rows().is_empty() {
        text.push('\n');
        text.push_str(&steps_table(&steps).render());
    }
    if !item.history.is_empty() {
        text.push('\n');
        text.push_str(&attempts_table(item).render());
    }
    text
}

#[cfg(test)]
mod tests {
    use swarm_client::proto::{Claim, HolderRecord, JournalEntry, WorkEvent};

    use super::*;

    fn claimed_item() -> WorkItem {
        WorkItem {
            id: "w1".into(),
            r#type: "build".into(),
            priority: 5,
            requires: vec!["gpu".into()],
            payload_json: r#"{"repo":"swarm"}"#.into(),
            status: WorkStatus::Claimed as i32,
            attempt: 2,
            max_attempts: 3,
            claim: Some(Claim {
                agent: "a2".into(),
                token: 9,
                lease_expires_at_ms: 1_700_000_010_000,
                lease_ms: 10_000,
                granted_at_ms: 1_700_000_000_000,
                progress: Some("half".into()),
            }),
            token: 9,
            result_json: None,
            error: None,
            idempotency_key: "k1".into(),
            submitted_at_ms: 1_699_999_990_000,
            updated_at_ms: 1_700_000_000_000,
            history: vec![
                HolderRecord {
                    agent: "a1".into(),
                    token: 4,
                    granted_at_ms: 1_699_999_995_000,
                    ended: "expired".into(),
                },
                HolderRecord {
                    agent: "a2".into(),
                    token: 9,
                    granted_at_ms: 1_700_000_000_000,
                    ended: String::new(),
                },
            ],
            journal: vec![JournalEntry {
                step: "parse".into(),
                token: 4,
                outcome_json: r#"{"ok":1}"#.into(),
            }],
            events: Vec::new(),
            cancel_requested: None,
            not_before_ms: 0,
            concurrency_key: String::new(),
            dead_letter: false,
            retries: 0,
            hold: String::new(),
            hold_since_ms: 0,
            pause_requested: None,
        }
    }

    #[test]
    fn a_claimed_item_as_json() {
        let mut json = item_json(&claimed_item());
        // Not held, no pause asked: each of these is null.
        for key in ["hold", "hold_since", "pause_requested"] {
            assert_eq!(
                json.as_object_mut().and_then(|o| o.remove(key)),
                Some(Value::Null),
                "{key}"
            );
        }
        assert_eq!(
            json,
            json!({
                "id": "w1",
                "type": "build",
                "status": "claimed",
                "holder": "a2",
                "token": 9,
                "attempt": 2,
                "max_attempts": 3,
                "priority": 5,
                "requires": ["gpu"],
                "payload": {"repo": "swarm"},
                "result": null,
                "error": null,
                "lease_expires_at": 1_700_000_010_000u64,
                "lease_ms": 10_000,
                "granted_at": 1_700_000_000_000u64,
                "progress": "half",
                "last_token": 9,
                "idempotency_key": "k1",
                "submitted_at": 1_699_999_990_000u64,
                "updated_at": 1_700_000_000_000u64,
                "history": [
                    {"agent": "a1", "token": 4, "granted_at": 1_699_999_995_000u64, "ended": "expired"},
                    {"agent": "a2", "token": 9, "granted_at": 1_700_000_000_000u64, "ended": null},
                ],
                "journal": [{"step": "parse", "token": 4, "outcome": {"ok": 1}}],
                "steps": [],
                "cancel_requested": null,
                "events": [],
                "not_before": null,
                "concurrency_key": null,
                "dead_letter": false,
                "retries": 0,
                "attempts": [
                    {"attempt": 1, "agent": "a1", "token": 4, "granted_at": 1_699_999_995_000u64, "ended": "expired", "error": null},
                    {"attempt": 2, "agent": "a2", "token": 9, "granted_at": 1_700_000_000_000u64, "ended": null, "error": null},
                ],
                "last_error": null,
            })
        );
    }

    #[test]
    fn a_holds_time_reads_as_a_date() {
        assert_eq!(
            readable_hold("waiting for signal \"approve\" until 1796295851827"),
            "waiting for signal \"approve\" until 2026-12-03T11:04:11Z"
        );
        assert_eq!(
            readable_hold("paused: until tomorrow"),
            "paused: until tomorrow"
        );
        assert_eq!(readable_hold("paused: ops"), "paused: ops");
    }

    #[test]
    fn a_held_item_shows_as_paused_or_waiting() {
        let mut item = claimed_item();
        item.status = WorkStatus::Pending as i32;
        item.claim = None;
        item.hold = "paused: vendor outage".into();
        assert_eq!(shown_status(&item, 0), "paused");
        item.hold = "waiting for signal \"approve\"".into();
        assert_eq!(shown_status(&item, 0), "waiting");
        item.hold.clear();
        assert_eq!(shown_status(&item, 0), "pending");
    }

    /// Pending until 2026-12-24T09:00:00Z, under concurrency key `db`.
    fn scheduled_item() -> WorkItem {
        WorkItem {
            status: WorkStatus::Pending as i32,
            claim: None,
            attempt: 0,
            history: Vec::new(),
            not_before_ms: 1_798_102_800_000,
            concurrency_key: "db".into(),
            ..claimed_item()
        }
    }

    #[test]
    fn a_pending_item_waiting_for_its_time_shows_as_scheduled() {
        let item = scheduled_item();
        let before = 1_798_102_200_000;
        let text = items_table(std::slice::from_ref(&item), before).render();
        assert_eq!(
            text.lines().nth(1),
            Some("w1  build  scheduled  -       -      0        5         -")
        );
        let text = item_detail(&item, before);
        assert!(text.contains("status           scheduled\n"), "{text}");
        assert!(
            text.contains("not before       2026-12-24T09:00:00Z (in 10m)\n"),
            "{text}"
        );
        assert!(text.contains("concurrency key  db\n"), "{text}");

        // Once the time has come it is plainly pending.
        let after = 1_798_102_800_001;
        assert_eq!(shown_status(&item, after), "pending");
        let text = item_detail(&item, after);
        assert!(
            text.contains("not before       2026-12-24T09:00:00Z\n"),
            "{text}"
        );

        // JSON keeps the cluster's status and says when.
        let v = item_json(&item);
        assert_eq!(v["status"], "pending");
        assert_eq!(v["not_before"], 1_798_102_800_000u64);
        assert_eq!(v["concurrency_key"], "db");
    }

    #[test]
    fn a_dead_letter_says_so_with_its_retries_and_last_error() {
        let item = WorkItem {
            status: WorkStatus::Failed as i32,
            claim: None,
            dead_letter: true,
            retries: 2,
            error: Some("boom".into()),
            history: vec![HolderRecord {
                agent: "a1".into(),
                token: 4,
                granted_at_ms: 1_700_000_000_000,
                ended: "failed".into(),
            }],
            events: vec![WorkEvent {
                seq: 3,
                kind: "failed".into(),
                agent: "a1".into(),
                token: 4,
                detail: "boom".into(),
                ..Default::default()
            }],
            ..claimed_item()
        };
        let v = item_json(&item);
        assert_eq!(v["dead_letter"], true);
        assert_eq!(v["retries"], 2);
        assert_eq!(v["last_error"], "boom");
        assert_eq!(v["attempts"][0]["error"], "boom");
        let text = item_detail(&item, 1_700_000_001_000);
        assert!(text.contains("dead letter      yes\n"), "{text}");
        assert!(text.contains("retries          2\n"), "{text}");
        assert!(
            text.contains("1        a1     4      2023-11-14T22:13:20Z  failed  boom\n"),
            "{text}"
        );
    }

    #[test]
    fn a_completed_item_has_no_holder_and_a_parsed_result() {
        let item = WorkItem {
            status: WorkStatus::Completed as i32,
            claim: None,
            result_json: Some("[1,2,3]".into()),
            payload_json: String::new(),
            ..claimed_item()
        };
        let v = item_json(&item);
        assert_eq!(v["status"], "completed");
        assert_eq!(v["holder"], Value::Null);
        assert_eq!(v["token"], Value::Null);
        assert_eq!(v["lease_expires_at"], Value::Null);
        assert_eq!(v["result"], json!([1, 2, 3]));
        assert_eq!(v["payload"], Value::Null);
        assert_eq!(v["last_token"], 9);
    }

    #[test]
    fn failed_item_error_and_empty_result() {
        let item = WorkItem {
            status: WorkStatus::Failed as i32,
            claim: None,
            result_json: Some(String::new()),
            error: Some("boom".into()),
            ..claimed_item()
        };
        let v = item_json(&item);
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error"], "boom");
        assert_eq!(v["result"], Value::Null);
    }

    #[test]
    fn status_names() {
        let names: Vec<_> = (0..=6).map(status_name).collect();
        assert_eq!(
            names,
            [
                "unknown",
                "pending",
                "claimed",
                "completed",
                "failed",
                "cancelled",
                "unknown"
            ]
        );
    }

    #[test]
    fn text_that_is_not_json_is_kept_as_a_string() {
        assert_eq!(json_text("not json"), json!("not json"));
        assert_eq!(json_text("  "), Value::Null);
        assert_eq!(json_text("42"), json!(42));
    }

    #[test]
    fn table_shows_holder_token_and_lease_left() {
        let item = claimed_item();
        let text = items_table(&[item], 1_700_000_001_000).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  TYPE   STATUS   HOLDER  TOKEN  ATTEMPT  PRIORITY  LEASE"
        );
        assert_eq!(
            lines[1],
            "w1  build  claimed  a2      9      2        5         9s"
        );
    }

    #[test]
    fn detail_lists_fields_and_history() {
        let text = item_detail(&claimed_item(), 1_700_000_001_000);
        assert!(text.contains("holder           a2\n"), "{text}");
        assert!(text.contains("lease            9s\n"), "{text}");
        assert!(text.contains("attempt          2/3\n"), "{text}");
        assert!(text.contains("not before       -\n"), "{text}");
        assert!(text.contains("dead letter      no\n"), "{text}");
        assert!(
            text.contains(r#"payload          {"repo":"swarm"}"#),
            "{text}"
        );
        assert!(
            text.contains("2        a2     9      2023-11-14T22:13:20Z  live     -\n"),
            "{text}"
        );
        assert!(!text.contains("STEP"), "{text}");
    }

    #[test]
    fn a_workflow_item_shows_its_steps_and_a_pending_cancel() {
        let item = WorkItem {
            r#type: WORKFLOW_KIND.into(),
            cancel_requested: Some("user".into()),
            journal: vec![JournalEntry {
                step: "a".into(),
                token: 9,
                outcome_json:
                    r#"{"run":"w1","entry":{"event":"step_started","step":"a","attempt":1}}"#.into(),
            }],
            ..claimed_item()
        };
        let v = item_json(&item);
        assert_eq!(
            v["steps"],
            json!([{"name": "a", "status": "running", "attempts": 1, "node": "a2"}])
        );
        assert_eq!(v["cancel_requested"], "user");
        let text = item_detail(&item, 1_700_000_001_000);
        assert!(
            text.contains("cancel           requested (user)\n"),
            "{text}"
        );
        assert!(
            text.contains("STEP  STATUS   ATTEMPTS  NODE\na     running  1         a2\n"),
            "{text}"
        );
    }
}
