//! `sleep`, `echo`, `fail` and `signal`: small kinds for demos, tests and
//! glue, and the two that wait (a durable sleep, a signal).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::check_keys;
use crate::error::StepError;
use crate::spec::duration_value;
use crate::step::{Step, StepContext};

/// Waits `with.duration`, then returns its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Sleep;

fn sleep_duration(with: &Value) -> Result<Duration, String> {
    match with.get("duration") {
        None | Some(Value::Null) => Err("\"duration\" is required (e.g. \"300ms\")".into()),
        Some(v) => duration_value(v).map_err(|e| format!("\"duration\": {e}")),
    }
}

#[async_trait]
impl Step for Sleep {
    fn check(&self, with: &Value) -> Vec<String> {
        let mut v = check_keys(with, &["duration"]);
        if let Err(e) = sleep_duration(with) {
            v.push(e);
        }
        v
    }

    /// On a cluster, a sleep at least as long as its threshold parks the run
    /// until it is due (durably: the run holds no lease meanwhile, and any
    /// node wakes it); a shorter one, or one outside a cluster, sleeps here.
    async fn run(&self, ctx: &StepContext, arguments: &Value) -> Result<Value, StepError> {
        let d = sleep_duration(&ctx.with).map_err(StepError::fatal)?;
        let Some(waits) = ctx.waits.as_ref().filter(|w| d >= w.durable_sleep_after()) else {
            tokio::time::sleep(d).await;
            return Ok(arguments.clone());
        };
        let now = waits.now_ms();
        let since = ctx.waited_since.unwrap_or(now);
        let until = since.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if now >= until {
            return Ok(arguments.clone());
        }
        Err(StepError::wait(crate::error::WaitFor {
            signal: None,
            until: Some(until),
            since,
        }))
    }
}

/// Waits for the signal `with.name` (`swarmctl work signal ID NAME
/// --payload JSON`), at most `with.timeout` if given, and returns its payload.
/// The run parks while it waits: it holds no lease and no node. A signal that
/// came before the step was reached is kept and returned at once. Past the
/// timeout the step fails (retryably: `max_retries`, `compensate` and undo
/// apply as to any failure). Outside a cluster it fails: only a cluster
/// delivers signals.
#[derive(Debug, Clone, Copy)]
pub struct SignalStep;

fn signal_name(with: &Value) -> Result<&str, String> {
    match with.get("name") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err("\"name\" is required (the signal to wait for)".into()),
        Some(_) => Err("\"name\" must be a non-empty string".into()),
    }
}

fn signal_timeout(with: &Value) -> Result<Option<Duration>, String> {
    match with.get("timeout") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => duration_value(v)
            .map(Some)
            .map_err(|e| format!("\"timeout\": {e}")),
    }
}

#[async_trait]
impl Step for SignalStep {
    fn check(&self, with: &Value) -> Vec<String> {
        let mut v = check_keys(with, &["name", "timeout"]);
        if let Err(e) = signal_name(with) {
            v.push(e);
        }
        if let Err(e) = signal_timeout(with) {
            v.push(e);
        }
        v
    }

    async fn run(&self, ctx: &StepContext, _arguments: &Value) -> Result<Value, StepError> {
        let name = signal_name(&ctx.with).map_err(StepError::fatal)?;
        let timeout = signal_timeout(&ctx.with).map_err(StepError::fatal)?;
        let Some(waits) = ctx.waits.as_ref() else {
            return Err(StepError::fatal(format!(
                "signal {name:?}: only a cluster delivers signals (swarmctl work signal); this run has none"
            )));
        };
        if let Some(payload) = waits.signal(&ctx.run_id, name) {
            return Ok(payload);
        }
        let now = waits.now_ms();
        let since = ctx.waited_since.unwrap_or(now);
        let until =
            timeout.map(|t| since.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)));
        if let (Some(until), Some(t)) = (until, timeout)
            && now >= until
        {
            return Err(StepError::retryable(format!(
                "signal {name:?} did not arrive within {}",
                humantime::format_duration(t)
            )));
        }
        Err(StepError::wait(crate::error::WaitFor {
            signal: Some(name.to_string()),
            until,
            since,
        }))
    }
}

/// Returns `with.value` if given, otherwise its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Echo;

#[async_trait]
impl Step for Echo {
    fn check(&self, with: &Value) -> Vec<String> {
        check_keys(with, &["value"])
    }

    fn pure(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepContext, arguments: &Value) -> Result<Value, StepError> {
        Ok(match ctx.with.get("value") {
            Some(v) => v.clone(),
            None => arguments.clone(),
        })
    }
}

/// Fails its first `with.times` attempts (every attempt when `times` is absent), then returns
/// its arguments. `with.message` sets the error; `with.retryable: false` makes it final.
#[derive(Debug, Clone, Copy)]
pub struct Fail;

#[async_trait]
impl Step for Fail {
    fn check(&self, with: &Value) -> Vec<String> {
        let mut v = check_keys(with, &["times", "message", "retryable"]);
        if let Some(t) = with.get("times")
            && t.as_u64().is_none()
        {
            v.push(format!(
                "\"times\": expected a non-negative integer, got {t}"
            ));
        }
        if let Some(r) = with.get("retryable")
            && !r.is_boolean()
        {
            v.push(format!("\"retryable\": expected true or false, got {r}"));
        }
        v
    }

    async fn run(&self, ctx: &StepContext, arguments: &Value) -> Result<Value, StepError> {
        let times = ctx.with.get("times").and_then(Value::as_u64);
        if times.is_some_and(|t| u64::from(ctx.attempt) > t) {
            return Ok(arguments.clone());
        }
        let message = ctx.with.get("message").and_then(Value::as_str).map_or_else(
            || format!("failing as asked (attempt {})", ctx.attempt),
            str::to_owned,
        );
        let retryable = ctx
            .with
            .get("retryable")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        Err(StepError {
            message,
            retryable,
            wait: None,
        })
    }
}
