//! A [`WorkItem`]'s attempts: its holders, numbered as the cluster counts
//! attempts, each with the error it ended with; and the item's last error.
//!
//! JSON (under `"attempts"` in `work get -o json`): an array of
//! `{"attempt", "agent", "token", "granted_at" (Unix epoch ms), "ended"
//! (how the claim ended, null while live), "error" (null when it ended
//! without one)}`.

use serde_json::{Value, json};
use swarm_client::proto::{HolderRecord, WorkEvent, WorkItem};

use crate::output::Table;

/// One holder of an item and what its claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// The attempt the claim counted as. A hand-off continues the attempt
    /// it came from, and a released claim gives its number back (the next
    /// claim has it again), as the cluster counts them. Numbered over the
    /// holders the item keeps (a very long history keeps the latest), and
    /// on across retries: `--reset-attempts` restarts the item's counter,
    /// not this history.
    pub number: u32,
    pub holder: &'a HolderRecord,
    /// The detail of the `retrying` or `failed` event of the holder's
    /// token; for a lease that expired with no attempts left, the `failed`
    /// event that followed its expiry.
    pub error: Option<&'a str>,
}

/// The item's holders as attempts, oldest first.
pub fn attempts(item: &WorkItem) -> Vec<Attempt<'_>> {
    let mut number = 0u32;
    let mut continued = false;
    let mut out = Vec::with_capacity(item.history.len());
    for holder in &item.history {
        if !continued {
            number = number.saturating_add(1);
        }
        continued = matches!(holder.ended.as_str(), "handed_off" | "released");
        out.push(Attempt {
            number,
            holder,
            error: error_of(&item.events, holder.token),
        });
    }
    out
}

fn error_of(events: &[WorkEvent], token: u64) -> Option<&str> {
    let by_token = events
        .iter()
        .filter(|e| e.token == token && is_error(e))
        .find_map(detail);
    if by_token.is_some() || token == 0 {
        return by_token;
    }
    // An expiry that used the last attempt ends the item with a `failed`
    // event of its own, at the same moment and with no holder.
    let expired_at = events
        .iter()
        .find(|e| e.kind == "expired" && e.token == token)?
        .at_ms;
    events
        .iter()
        .filter(|e| e.kind == "failed" && e.token == 0 && e.at_ms == expired_at)
        .find_map(detail)
}

fn is_error(event: &WorkEvent) -> bool {
    matches!(event.kind.as_str(), "retrying" | "failed")
}

fn detail(event: &WorkEvent) -> Option<&str> {
    Some(event.detail.as_str()).filter(|d| !d.is_empty())
}

/// The most recent error the item met: the detail of its latest `retrying`
/// or `failed` event, or else the error it keeps.
pub fn last_error(item: &WorkItem) -> Option<&str> {
    item.events
        .iter()
        .rev()
        .filter(|e| is_error(e))
        .find_map(detail)
        .or_else(|| item.error.as_deref().filter(|e| !e.is_empty()))
}

pub fn attempts_json(item: &WorkItem) -> Value {
    let attempts = attempts(item)
        .into_iter()
        .map(|a| {
            json!({
                "attempt": a.number,
                "agent": a.holder.agent,
                "token": a.holder.token,
                "granted_at": a.holder.granted_at_ms,
                "ended": Some(a.holder.ended.as_str()).filter(|e| !e.is_empty()),
                "error": a.error,
            })
        })
        .collect();
    Value::Array(attempts)
}

/// One row per holder: what `work get` shows under the item's fields.
pub fn attempts_table(item: &WorkItem) -> Table {
    let mut table = Table::new(&["ATTEMPT", "AGENT", "TOKEN", "GRANTED_AT", "ENDED", "ERROR"]);
    for a in attempts(item) {
        table.push(vec![
            a.number.to_string(),
            a.holder.agent.clone(),
            a.holder.token.to_string(),
            crate::output::utc_time(a.holder.granted_at_ms),
            if a.holder.ended.is_empty() {
                "live".to_string()
            } else {
                a.holder.ended.clone()
            },
            a.error.unwrap_or("-").to_string(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use swarm_client::proto::WorkStatus;

    use super::*;

    fn holder(agent: &str, token: u64, ended: &str) -> HolderRecord {
        HolderRecord {
            agent: agent.into(),
            token,
            granted_at_ms: token * 100,
            ended: ended.into(),
        }
    }

    fn event(seq: u64, kind: &str, token: u64, detail: &str) -> WorkEvent {
        WorkEvent {
            seq,
            at_ms: seq * 10,
            kind: kind.into(),
            token,
            detail: detail.into(),
            ..Default::default()
        }
    }

    /// Claimed by a1 (failed, retried), handed from a2 to a3 (failed,
    /// retried), released by a4, claimed by a5 (lease expired, no attempts
    /// left), then put back and claimed by a6, who holds it now.
    fn item() -> WorkItem {
        let expired = WorkEvent {
            at_ms: 500,
            ..event(9, "expired", 5, "")
        };
        let dead = WorkEvent {
            at_ms: 500,
            ..event(
                10,
                "failed",
                0,
                "lease expired on attempt 3 of 3: no attempts left",
            )
        };
        WorkItem {
            status: WorkStatus::Claimed as i32,
            error: Some("lease expired on attempt 3 of 3: no attempts left".into()),
            history: vec![
                holder("a1", 1, "failed"),
                holder("a2", 2, "handed_off"),
                holder("a3", 3, "failed"),
                holder("a4", 4, "released"),
                holder("a5", 5, "expired"),
                holder("a6", 6, ""),
            ],
            events: vec![
                event(0, "submitted", 0, ""),
                event(1, "claimed", 1, ""),
                event(2, "retrying", 1, "disk full"),
                event(3, "claimed", 2, ""),
                event(4, "handed_off", 3, ""),
                event(5, "retrying", 3, "timeout"),
                event(6, "claimed", 4, ""),
                event(7, "released", 4, ""),
                event(8, "claimed", 5, ""),
                expired,
                dead,
                event(11, "requeued", 0, "retried: attempt 4 of 4 next"),
                event(12, "claimed", 6, ""),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn holders_are_numbered_as_attempts_with_their_errors() {
        let item = item();
        let got: Vec<(u32, &str, Option<&str>)> = attempts(&item)
            .iter()
            .map(|a| (a.number, a.holder.agent.as_str(), a.error))
            .collect();
        assert_eq!(
            got,
            [
                (1, "a1", Some("disk full")),
                (2, "a2", None),
                (2, "a3", Some("timeout")),
                (3, "a4", None),
                (
                    3,
                    "a5",
                    Some("lease expired on attempt 3 of 3: no attempts left")
                ),
                (4, "a6", None),
            ]
        );
    }

    #[test]
    fn last_error_is_the_latest_failure_detail_or_the_kept_error() {
        let mut item = item();
        assert_eq!(
            last_error(&item),
            Some("lease expired on attempt 3 of 3: no attempts left")
        );
        item.events.truncate(6);
        assert_eq!(last_error(&item), Some("timeout"));
        item.events.clear();
        item.error = Some("kept".into());
        assert_eq!(last_error(&item), Some("kept"));
        item.error = Some(String::new());
        assert_eq!(last_error(&item), None);
    }

    #[test]
    fn attempts_as_json_and_table() {
        let item = item();
        let v = attempts_json(&item);
        assert_eq!(
            v[0],
            json!({"attempt": 1, "agent": "a1", "token": 1, "granted_at": 100, "ended": "failed", "error": "disk full"})
        );
        assert_eq!(
            v[5],
            json!({"attempt": 4, "agent": "a6", "token": 6, "granted_at": 600, "ended": null, "error": null})
        );
        let text = attempts_table(&item).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ATTEMPT  AGENT  TOKEN  GRANTED_AT            ENDED       ERROR"
        );
        assert_eq!(
            lines[1],
            "1        a1     1      1970-01-01T00:00:00Z  failed      disk full"
        );
        assert_eq!(
            lines[6],
            "4        a6     6      1970-01-01T00:00:00Z  live        -"
        );
    }
}
