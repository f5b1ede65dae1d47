//! `swarmctl work submit --type T [--payload JSON] [--delay 10m | --at
//! RFC3339] [--concurrency-key K] ...`

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::Value;
use swarm_client::proto::{SubmitRequest, WorkItem};

use crate::cli::{parse_json, parse_name};
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Submit {
    /// Work type (agents claim by type)
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_name)]
    pub kind: String,
    /// Payload, a JSON document
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub payload: Option<Value>,
    #[command(flatten)]
    pub options: SubmitOptions,
    /// Attempts before the item fails for good (0: the cluster default)
    #[arg(long, default_value_t = 0)]
    pub max_attempts: u32,
}

/// Where an item queues and what may claim it: what every submitted item
/// carries, whether `work submit`, `workflow run` or a schedule's fire
/// submits it.
#[derive(Debug, Args)]
pub struct QueueOptions {
    /// Higher is claimed first
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Capabilities an agent needs to claim it, comma-separated or repeated
    #[arg(long, value_delimiter = ',', value_name = "CAP,..")]
    pub requires: Vec<String>,
    /// Concurrency key: items with the key are claimed within its limit
    /// (`swarmctl limit set KEY`)
    #[arg(long, value_name = "KEY", value_parser = parse_name)]
    pub concurrency_key: Option<String>,
}

/// How an item queues, what may claim it and when, and its idempotency key:
/// the options `work submit` and `workflow run` share.
#[derive(Debug, Args)]
pub struct SubmitOptions {
    #[command(flatten)]
    pub queue: QueueOptions,
    /// Idempotency key: submitting the same key again returns the same item
    /// (default: a random one, so that retries never create a second item)
    #[arg(long, value_parser = parse_name)]
    pub key: Option<String>,
    /// Not claimable for this long after the cluster accepts it (humantime:
    /// 30s, 10m, 1h30m)
    #[arg(long, value_name = "DURATION", value_parser = parse_delay, conflicts_with = "at")]
    pub delay: Option<Duration>,
    /// Not claimable before this time (RFC 3339: 2026-12-24T09:00:00Z, or
    /// with an offset); a time in the past is claimable at once
    #[arg(long = "at", id = "at", value_name = "RFC3339", value_parser = parse_rfc3339_ms)]
    pub not_before_ms: Option<u64>,
}

/// `--delay`: a humantime duration that fits the wire's milliseconds.
pub fn parse_delay(s: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(s.trim())
        .map_err(|e| format!("not a duration such as 30s, 10m or 1h30m: {e}"))?;
    u64::try_from(delay.as_millis()).map_err(|_| "is too long".to_string())?;
    Ok(delay)
}

/// `--at`: an RFC 3339 time with any offset, as Unix epoch milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Result<u64, String> {
    let time = chrono::DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| format!("not an RFC 3339 time such as 2026-12-24T09:00:00Z: {e}"))?;
    u64::try_from(time.timestamp_millis()).map_err(|_| "is before 1970-01-01T00:00:00Z".to_string())
}

/// The submit `options` ask for, of an item of type `kind`; the key is a
/// fresh one when none was given.
fn request(
    kind: &str,
    payload_json: String,
    options: SubmitOptions,
    max_attempts: u32,
) -> SubmitRequest {
    let SubmitOptions {
        queue,
        key,
        delay,
        not_before_ms,
    } = options;
    SubmitRequest {
        r#type: kind.to_string(),
        priority: queue.priority,
        requires: queue.requires,
        payload_json,
        idempotency_key: key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        max_attempts,
        not_before_ms: not_before_ms.unwrap_or(0),
        // parse_delay made sure it fits.
        delay_ms: delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        concurrency_key: queue.concurrency_key.unwrap_or_default(),
    }
}

/// Submits an item of type `kind` and returns it; says on stderr when the
/// key matched an item submitted before.
pub(crate) async fn submit(
    ctx: &Context,
    kind: &str,
    payload_json: String,
    options: SubmitOptions,
    max_attempts: u32,
) -> Result<WorkItem> {
    let request = request(kind, payload_json, options, max_attempts);
    let key = request.idempotency_key.clone();
    let resp = ctx
        .client
        .submit(request)
        .await
        .with_context(|| format!("submit work of type {kind:?}"))?;
    let item = resp.item.context("submit response has no work item")?;
    if !resp.created {
        eprintln!(
            "note: idempotency key {key:?} matched existing work item {:?}",
            item.id
        );
    }
    Ok(item)
}

pub async fn run(ctx: &Context, args: Submit) -> Result<()> {
    let payload = args.payload.map(|p| p.to_string()).unwrap_or_default();
    let item = submit(ctx, &args.kind, payload, args.options, args.max_attempts).await?;
    super::print_item(ctx, &item)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser as _;
    use clap::error::ErrorKind;

    use super::*;
    use crate::Cli;
    use crate::commands::Command;
    use crate::commands::work::Work;

    fn submit_args(flags: &[&str]) -> Result<Submit, clap::Error> {
        let argv = ["swarmctl", "work", "submit", "--type", "build"];
        let cli = Cli::try_parse_from(argv.iter().chain(flags))?;
        match cli.command {
            Command::Work(Work::Submit(s)) => Ok(s),
            other => panic!("expected work submit, got {other:?}"),
        }
    }

    #[test]
    fn delay_and_concurrency_key_go_into_the_request() {
        let s = submit_args(&["--delay", "10m", "--concurrency-key", "db"]).unwrap();
        assert_eq!(s.options.delay, Some(Duration::from_secs(600)));
        let r = request("build", String::new(), s.options, 0);
        assert_eq!((r.delay_ms, r.not_before_ms), (600_000, 0));
        assert_eq!(r.concurrency_key, "db");
        assert_eq!(r.idempotency_key.len(), 36, "a fresh uuid");
    }

    #[test]
    fn at_is_an_rfc3339_time_with_any_offset() {
        let s = submit_args(&["--at", "2026-12-24T09:00:00Z", "--key", "k"]).unwrap();
        let r = request("build", String::new(), s.options, 3);
        assert_eq!((r.not_before_ms, r.delay_ms), (1_798_102_800_000, 0));
        assert_eq!((r.idempotency_key.as_str(), r.max_attempts), ("k", 3));
        assert_eq!(
            parse_rfc3339_ms("2026-12-24T10:00:00.250+01:00"),
            Ok(1_798_102_800_250)
        );
        // In the past is fine: claimable at once.
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z"), Ok(1_000));
        let none = submit_args(&[]).unwrap();
        let r = request("build", String::new(), none.options, 0);
        assert_eq!((r.not_before_ms, r.delay_ms), (0, 0));
        assert!(r.concurrency_key.is_empty());
    }

    #[test]
    fn bad_times_name_the_flag_and_are_usage_errors() {
        let err = submit_args(&["--at", "tomorrow"]).unwrap_err();
        assert_eq!(
            (err.kind(), err.exit_code()),
            (ErrorKind::ValueValidation, 2)
        );
        let text = err.to_string();
        assert!(text.contains("--at <RFC3339>"), "{text}");
        assert!(text.contains("not an RFC 3339 time"), "{text}");

        let err = submit_args(&["--at", "1969-12-31T23:59:59Z"]).unwrap_err();
        assert!(err.to_string().contains("before 1970"), "{err}");

        let err = submit_args(&["--delay", "10 fortnights"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--delay <DURATION>"), "{err}");
        assert!(err.to_string().contains("not a duration"), "{err}");

        let err = submit_args(&["--concurrency-key", " "]).unwrap_err();
        assert!(err.to_string().contains("--concurrency-key"), "{err}");
    }

    #[test]
    fn delay_and_at_exclude_each_other() {
        let err = submit_args(&["--delay", "1m", "--at", "2026-12-24T09:00:00Z"]).unwrap_err();
        assert_eq!(
            (err.kind(), err.exit_code()),
            (ErrorKind::ArgumentConflict, 2)
        );
    }
}
