//! A [`Limit`] on a concurrency key as JSON and as a table row.
//!
//! JSON keys: `key`, `max_running` (null: no cap), `rate` (`10/s`, or null
//! for none), `burst` (the most grants at once when the bucket is full;
//! null without a rate), `running` and `pending` (the key's items claimed
//! and waiting now), `tokens` (whole grants in the bucket now; null without
//! a rate). Other keys may be added, never removed.

use serde_json::{Value, json};
use swarm_client::proto::Limit;

use crate::output::{Table, or_dash};

fn max_running(l: &Limit) -> Option<u32> {
    (l.max_running != 0).then_some(l.max_running)
}

fn rate(l: &Limit) -> Option<&str> {
    Some(l.rate.as_str()).filter(|r| !r.is_empty())
}

/// A rate's burst and tokens mean nothing without the rate.
fn with_rate<T>(l: &Limit, value: T) -> Option<T> {
    rate(l).map(|_| value)
}

pub fn limit_json(l: &Limit) -> Value {
    json!({
        "key": l.key,
        "max_running": max_running(l),
        "rate": rate(l),
        "burst": with_rate(l, l.burst),
        "running": l.running,
        "pending": l.pending,
        "tokens": with_rate(l, l.tokens),
    })
}

pub fn limits_json(limits: &[Limit]) -> Value {
    Value::Array(limits.iter().map(limit_json).collect())
}

/// One row per limit; `-` where the limit has none.
pub fn limits_table(limits: &[Limit]) -> Table {
    let mut table = Table::new(&[
        "KEY",
        "MAX_RUNNING",
        "RATE",
        "BURST",
        "RUNNING",
        "PENDING",
        "TOKENS",
    ]);
    for l in limits {
        table.push(vec![
            l.key.clone(),
            or_dash(max_running(l)),
            or_dash(rate(l)),
            or_dash(with_rate(l, l.burst)),
            l.running.to_string(),
            l.pending.to_string(),
            or_dash(with_rate(l, l.tokens)),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> [Limit; 2] {
        [
            Limit {
                key: "api".into(),
                max_running: 0,
                rate: "10/s".into(),
                burst: 20,
                running: 3,
                pending: 7,
                tokens: 12,
            },
            Limit {
                key: "db".into(),
                max_running: 2,
                rate: String::new(),
                burst: 0,
                running: 2,
                pending: 0,
                tokens: 0,
            },
        ]
    }

    #[test]
    fn limits_as_json() {
        assert_eq!(
            limits_json(&limits()),
            json!([
                {"key": "api", "max_running": null, "rate": "10/s", "burst": 20, "running": 3, "pending": 7, "tokens": 12},
                {"key": "db", "max_running": 2, "rate": null, "burst": null, "running": 2, "pending": 0, "tokens": null},
            ])
        );
    }

    #[test]
    fn limits_as_a_table() {
        assert_eq!(
            limits_table(&limits()).render(),
            "KEY  MAX_RUNNING  RATE  BURST  RUNNING  PENDING  TOKENS\n\
             api  -            10/s  20     3        7        12\n\
             db   2            -     -      2        0        -\n"
        );
    }
}
