//! `sleep`, `echo` and `fail`: small kinds for demos, tests and glue.

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

    async fn run(&self, ctx: &StepContext, arguments: &Value) -> Result<Value, StepError> {
        let d = sleep_duration(&ctx.with).map_err(StepError::fatal)?;
        tokio::time::sleep(d).await;
        Ok(arguments.clone())
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
        Err(StepError { message, retryable })
    }
}
