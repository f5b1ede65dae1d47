//! A [`Schedule`] as JSON, as a table row and field by field.
//!
//! JSON keys: `name`, `cron`, `timezone` (an IANA name; `UTC` when the
//! schedule names none), `type`, `payload` (parsed JSON), `priority`,
//! `requires`, `max_attempts` (0: the cluster default), `concurrency_key`
//! (or null), `overlap` (`skip` or `allow`), `paused`, `next_fire`,
//! `created_at` and `last_fire` (Unix epoch ms; `last_fire` null before
//! the first fire), `last_item_id` (the item the last fire submitted, or
//! null), and the counts `fires`, `skipped` (fire times passed over while
//! the previous item ran, with overlap `skip`) and `missed` (fire times
//! the cluster was down for, folded into one fire). Other keys may be
//! added, never removed.

use serde_json::{Value, json};
use swarm_claims::WORKFLOW_KIND;
use swarm_client::proto::{Overlap, Schedule};

use super::work_item::json_text;
use crate::output::{Table, fields, or_dash, utc_time, utc_time_ahead};

/// `skip` or `allow` (`unknown` for a value this build does not know).
pub fn overlap_name(overlap: i32) -> &'static str {
    match Overlap::try_from(overlap) {
        Ok(Overlap::Skip) => "skip",
        Ok(Overlap::Allow) => "allow",
        Err(_) => "unknown",
    }
}

/// The time zone the cron expression is read in.
fn timezone(s: &Schedule) -> &str {
    if s.timezone.is_empty() {
        "UTC"
    } else {
        &s.timezone
    }
}

fn last_fire(s: &Schedule) -> Option<u64> {
    (s.last_fire_ms != 0).then_some(s.last_fire_ms)
}

pub fn schedule_json(s: &Schedule) -> Value {
    json!({
        "name": s.name,
        "cron": s.cron,
        "timezone": timezone(s),
        "type": s.r#type,
        "payload": json_text(&s.payload_json),
        "priority": s.priority,
        "requires": s.requires,
        "max_attempts": s.max_attempts,
        "concurrency_key": Some(s.concurrency_key.as_str()).filter(|k| !k.is_empty()),
        "overlap": overlap_name(s.overlap),
        "paused": s.paused,
        "next_fire": s.next_fire_ms,
        "created_at": s.created_at_ms,
        "last_fire": last_fire(s),
        "last_item_id": Some(s.last_item_id.as_str()).filter(|id| !id.is_empty()),
        "fires": s.fires,
        "skipped": s.skipped,
        "missed": s.missed,
    })
}

pub fn schedules_json(schedules: &[Schedule]) -> Value {
    Value::Array(schedules.iter().map(schedule_json).collect())
}

/// When the schedule fires next: `paused`, or the time in UTC.
fn next_fire(s: &Schedule) -> String {
    if s.paused {
        "paused".to_string()
    } else {
        utc_time(s.next_fire_ms)
    }
}

/// One row per schedule: what `schedule list` shows.
pub fn schedules_table(schedules: &[Schedule]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "CRON",
        "TIMEZONE",
        "TYPE",
        "NEXT_FIRE",
        "LAST_FIRE",
        "FIRES",
        "SKIPPED",
        "MISSED",
    ]);
    for s in schedules {
        table.push(vec![
            s.name.clone(),
            s.cron.clone(),
            timezone(s).to_string(),
            s.r#type.clone(),
            next_fire(s),
            or_dash(last_fire(s).map(utc_time)),
            s.fires.to_string(),
            s.skipped.to_string(),
            s.missed.to_string(),
        ]);
    }
    table
}

/// What each fire submits, in a line: the payload as compact JSON, or for
/// a workflow its inputs and the size of its spec (the spec is long).
fn payload_summary(s: &Schedule) -> String {
    let payload = json_text(&s.payload_json);
    if s.r#type == WORKFLOW_KIND
        && let Some(spec) = payload.get("spec").and_then(Value::as_str)
    {
        let inputs = payload.get("inputs").cloned().unwrap_or(json!({}));
        let lines = spec.lines().count();
        return format!("workflow spec of {lines} lines, inputs {inputs}");
    }
    match payload {
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// One schedule, field by field.
pub fn schedule_detail(s: &Schedule, now_ms: u64) -> String {
    let next = if s.paused {
        "paused".to_string()
    } else {
        utc_time_ahead(s.next_fire_ms, now_ms)
    };
    let last = match last_fire(s) {
        Some(at) if s.last_item_id.is_empty() => utc_time(at),
        Some(at) => format!("{} (work item {})", utc_time(at), s.last_item_id),
        None => "-".to_string(),
    };
    let max_attempts = match s.max_attempts {
        0 => "cluster default".to_string(),
        n => n.to_string(),
    };
    fields(&[
        ("name", s.name.clone()),
        ("cron", s.cron.clone()),
        ("timezone", timezone(s).to_string()),
        ("type", s.r#type.clone()),
        ("payload", payload_summary(s)),
        ("priority", s.priority.to_string()),
        (
            "requires",
            or_dash(Some(s.requires.join(",")).filter(|r| !r.is_empty())),
        ),
        ("max attempts", max_attempts),
        (
            "concurrency key",
            or_dash(Some(s.concurrency_key.as_str()).filter(|k| !k.is_empty())),
        ),
        ("overlap", overlap_name(s.overlap).to_string()),
        ("next fire", next),
        ("last fire", last),
        ("created", utc_time(s.created_at_ms)),
        ("fires", s.fires.to_string()),
        ("skipped", s.skipped.to_string()),
        ("missed", s.missed.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fires at 03:00 in Berlin; fired twice, the last at
    /// 2026-12-24T02:00:00Z (item w7), next 2026-12-25T02:00:00Z.
    fn nightly() -> Schedule {
        Schedule {
            name: "nightly".into(),
            cron: "0 3 * * *".into(),
            timezone: "Europe/Berlin".into(),
            r#type: "backup".into(),
            payload_json: r#"{"db":"main"}"#.into(),
            priority: 2,
            requires: vec!["disk".into()],
            max_attempts: 0,
            concurrency_key: "db".into(),
            overlap: Overlap::Skip as i32,
            paused: false,
            next_fire_ms: 1_798_164_000_000,
            created_at_ms: 1_798_000_000_000,
            last_fire_ms: 1_798_077_600_000,
            last_item_id: "w7".into(),
            fires: 2,
            skipped: 1,
            missed: 0,
        }
    }

    #[test]
    fn a_schedule_as_json() {
        assert_eq!(
            schedule_json(&nightly()),
            json!({
                "name": "nightly",
                "cron": "0 3 * * *",
                "timezone": "Europe/Berlin",
                "type": "backup",
                "payload": {"db": "main"},
                "priority": 2,
                "requires": ["disk"],
                "max_attempts": 0,
                "concurrency_key": "db",
                "overlap": "skip",
                "paused": false,
                "next_fire": 1_798_164_000_000u64,
                "created_at": 1_798_000_000_000u64,
                "last_fire": 1_798_077_600_000u64,
                "last_item_id": "w7",
                "fires": 2,
                "skipped": 1,
                "missed": 0,
            })
        );
        let fresh = Schedule {
            timezone: String::new(),
            concurrency_key: String::new(),
            overlap: Overlap::Allow as i32,
            last_fire_ms: 0,
            last_item_id: String::new(),
            ..nightly()
        };
        let v = schedule_json(&fresh);
        assert_eq!(v["timezone"], "UTC");
        assert_eq!(v["overlap"], "allow");
        assert_eq!(
            (&v["concurrency_key"], &v["last_fire"], &v["last_item_id"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
    }

    #[test]
    fn the_table_shows_next_and_last_fire_in_utc_or_paused() {
        let paused = Schedule {
            name: "hourly".into(),
            cron: "@hourly".into(),
            timezone: String::new(),
            paused: true,
            last_fire_ms: 0,
            ..nightly()
        };
        let text = schedules_table(&[nightly(), paused]).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME     CRON       TIMEZONE       TYPE    NEXT_FIRE             LAST_FIRE             FIRES  SKIPPED  MISSED",
                "nightly  0 3 * * *  Europe/Berlin  backup  2026-12-25T02:00:00Z  2026-12-24T02:00:00Z  2      1        0",
                "hourly   @hourly    UTC            backup  paused                -                     2      1        0",
            ]
        );
    }

    #[test]
    fn detail_says_when_it_fires_and_what_it_submits() {
        let text = schedule_detail(&nightly(), 1_798_160_400_000);
        assert!(
            text.contains("next fire        2026-12-25T02:00:00Z (in 1h)\n"),
            "{text}"
        );
        assert!(
            text.contains("last fire        2026-12-24T02:00:00Z (work item w7)\n"),
            "{text}"
        );
        assert!(
            text.contains("payload          {\"db\":\"main\"}\n"),
            "{text}"
        );
        assert!(
            text.contains("max attempts     cluster default\n"),
            "{text}"
        );

        let workflow = Schedule {
            r#type: WORKFLOW_KIND.into(),
            payload_json: json!({"spec": "name: w\nsteps: []\n", "inputs": {"n": 3}}).to_string(),
            paused: true,
            ..nightly()
        };
        let text = schedule_detail(&workflow, 0);
        assert!(
            text.contains("payload          workflow spec of 2 lines, inputs {\"n\":3}\n"),
            "{text}"
        );
        assert!(text.contains("next fire        paused\n"), "{text}");
    }

    #[test]
    fn overlap_names() {
        assert_eq!([0, 1, 7].map(overlap_name), ["skip", "allow", "unknown"]);
    }
}
