//! Cron expressions in a time zone, evaluated at the edge (croner for the
//! expression, chrono-tz for IANA zones): the state machine stores fire
//! times, never rules, so every replica agrees whatever its time zone data.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// How many fire times one catch-up counts at most: a schedule that fires
/// every second and was down for a day is not walked second by second.
const MAX_COUNTED: u32 = 10_000;

/// A parsed cron expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct CronRule {
    cron: Cron,
    tz: Tz,
}

/// Why an expression or a zone was refused, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CronError {
    #[error("invalid cron: {expr:?} is not a cron expression: {reason}")]
    Expression { expr: String, reason: String },
    #[error("invalid timezone: {0:?} is not an IANA time zone name (such as UTC or Europe/Berlin)")]
    TimeZone(String),
    #[error("invalid cron: {0:?} never fires")]
    Never(String),
}

impl CronRule {
    /// Parses `expr` (five fields, six with seconds first, or a nickname
    /// such as `@hourly`) in zone `timezone` (empty: UTC).
    pub fn parse(expr: &str, timezone: &str) -> Result<CronRule, CronError> {
        let tz = match timezone {
            "" => Tz::UTC,
            name => Tz::from_str(name).map_err(|_| CronError::TimeZone(name.to_string()))?,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| CronError::Expression {
                expr: expr.to_string(),
                reason: e.to_string(),
            })?;
        let rule = CronRule { cron, tz };
        if rule.next_after(0).is_none() {
            return Err(CronError::Never(expr.to_string()));
        }
        Ok(rule)
    }

    /// The first fire time strictly after `after_ms` (Unix epoch ms).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = i64::try_from(after_ms).ok()?;
        let start: DateTime<Tz> = self
            .tz
            .from_utc_datetime(&DateTime::<Utc>::from_timestamp_millis(after)?.naive_utc());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// How many fire times fall in `(after_ms, until_ms]`, counted up to a
    /// bound.
    pub fn count_between(&self, after_ms: u64, until_ms: u64) -> u32 {
        let mut count = 0;
        let mut at = after_ms;
        while count < MAX_COUNTED {
            match self.next_after(at) {
                Some(next) if next <= until_ms => {
                    count += 1;
                    at = next;
                }
                _ => break,
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ms(rfc3339: &str) -> u64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn five_fields_fire_on_minute_boundaries_in_utc() {
        let rule = CronRule::parse("*/5 * * * *", "").unwrap();
        let next = rule.next_after(ms("2026-12-02T10:03:20Z")).unwrap();
        assert_eq!(next, ms("2026-12-02T10:05:00Z"));
        // Strictly after: a fire time is not its own next.
        assert_eq!(rule.next_after(next).unwrap(), ms("2026-12-02T10:10:00Z"));
    }

    #[test]
    fn six_fields_fire_on_seconds_and_a_zone_moves_the_hour() {
        let rule = CronRule::parse("*/2 * * * * *", "").unwrap();
        assert_eq!(
            rule.next_after(ms("2026-12-02T10:00:00.500Z")).unwrap(),
            ms("2026-12-02T10:00:02Z")
        );
        let berlin = CronRule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // 09:00 in Berlin in winter is 08:00 UTC.
        assert_eq!(
            berlin.next_after(ms("2026-12-02T00:00:00Z")).unwrap(),
            ms("2026-12-02T08:00:00Z")
        );
    }

    #[test]
    fn missed_fire_times_are_counted() {
        let rule = CronRule::parse("* * * * *", "UTC").unwrap();
        let from = ms("2026-12-02T10:00:00Z");
        assert_eq!(rule.count_between(from, ms("2026-12-02T10:10:00Z")), 10);
        assert_eq!(rule.count_between(from, from), 0);
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = CronRule::parse("*/5 * * *", "").unwrap_err();
        assert!(e.to_string().starts_with("invalid cron:"), "{e}");
        let e = CronRule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(e.to_string().starts_with("invalid timezone:"), "{e}");
        assert!(CronRule::parse("61 * * * *", "").is_err());
    }
}
