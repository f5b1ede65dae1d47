//! Middleware: hooks around the run and each step attempt. A hook sees the context and may
//! enrich it (metadata, the span the attempt runs in); it cannot change outcomes.
//!
//! Built-ins: [`TracingMiddleware`] (a span per run and per step attempt, with attempt and
//! duration) and [`MetricsMiddleware`] (counts and durations by step kind and outcome, rendered
//! in the Prometheus text format).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tracing::field::Empty;

use crate::error::StepError;
use crate::report::{RunReport, RunStatus, SuspendReason, Suspension};
use crate::step::StepContext;

/// What middleware sees about a run.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub workflow: String,
    pub fencing_token: Option<u64>,
    /// Copied into every [`StepContext`] of the run.
    pub metadata: BTreeMap<String, Value>,
    /// The span the run's scheduling happens in and steps' spans descend from.
    pub span: tracing::Span,
}

/// Hooks around a run and each step attempt. Every hook has a default that does nothing.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    async fn run_started(&self, _run: &mut RunContext) {}
    /// The run stopped without undoing anything, to be resumed from the journal. Called before
    /// [`Middleware::run_finished`], which sees the report with status `suspended`.
    async fn on_run_suspended(&self, _run: &RunContext, _suspension: &Suspension) {}
    async fn run_finished(&self, _run: &RunContext, _report: &RunReport) {}
    /// Before each attempt; may add metadata or set `step.span`.
    async fn step_started(&self, _step: &mut StepContext) {}
    async fn step_succeeded(&self, _step: &StepContext, _result: &Value, _elapsed: Duration) {}
    async fn step_failed(&self, _step: &StepContext, _error: &StepError, _elapsed: Duration) {}
    /// A failed attempt will be retried after `delay`.
    async fn step_retrying(&self, _step: &StepContext, _error: &StepError, _delay: Duration) {}
    /// A step's result was replaced by `compensate`.
    async fn step_compensated(&self, _step: &StepContext, _result: &Value) {}
    async fn step_undone(&self, _step: &StepContext, _outcome: Result<(), &StepError>) {}
}

/// A span per run (`run_id`, `workflow`) and per step attempt (`step`, `kind`, `attempt`,
/// `duration_ms`), with an event at each outcome. A step's span is a child of its run's, the
/// run's a child of the span `Reactor::run` was called in; a failed run or attempt sets
/// `otel.status_code = "error"` for a tracing backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingMiddleware;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Middleware for TracingMiddleware {
    async fn run_started(&self, run: &mut RunContext) {
        run.span = tracing::info_span!(
            parent: &run.span,
            "run",
            run_id = %run.run_id,
            workflow = %run.workflow,
            token = run.fencing_token,
            status = Empty,
            otel.status_code = Empty,
        );
        run.span.in_scope(|| tracing::info!("run started"));
    }

    async fn run_finished(&self, run: &RunContext, report: &RunReport) {
        run.span
            .record("status", tracing::field::display(report.status));
        if report.status == RunStatus::Failed {
            // A tracing backend shows the run as failed.
            run.span.record("otel.status_code", "error");
        }
        run.span.in_scope(|| match (report.status, &report.error) {
            // Logged by `on_run_suspended`.
            (RunStatus::Suspended, _) => {}
            (_, None) => tracing::info!(elapsed_ms = millis(report.elapsed), "run succeeded"),
            (_, Some(e)) => tracing::warn!(
                elapsed_ms = millis(report.elapsed),
                error = %e,
                undone = ?report.undone,
                "run failed"
            ),
        });
    }

    async fn on_run_suspended(&self, run: &RunContext, suspension: &Suspension) {
        let step = suspension.step.as_deref();
        let reason = &suspension.reason;
        run.span.in_scope(|| match reason {
            SuspendReason::Fenced { .. } | SuspendReason::JournalUnavailable { .. } => {
                tracing::warn!(reason = %reason, step, "run suspended");
            }
            _ => tracing::info!(reason = %reason, step, "run suspended"),
        });
    }

    async fn step_started(&self, step: &mut StepContext) {
        step.span = tracing::info_span!(
            parent: &step.span,
            "step",
            step = %step.step,
            kind = %step.kind,
            attempt = step.attempt,
            duration_ms = Empty,
            otel.status_code = Empty,
        );
        step.span.in_scope(|| tracing::debug!("step started"));
    }

    async fn step_succeeded(&self, step: &StepContext, _result: &Value, elapsed: Duration) {
        step.span.record("duration_ms", millis(elapsed));
        step.span.in_scope(|| tracing::info!("step succeeded"));
    }

    async fn step_failed(&self, step: &StepContext, error: &StepError, elapsed: Duration) {
        step.span.record("duration_ms", millis(elapsed));
        step.span.record("otel.status_code", "error");
        step.span.in_scope(
            || tracing::warn!(error = %error, retryable = error.retryable, "step failed"),
        );
    }

    async fn step_retrying(&self, step: &StepContext, _error: &StepError, delay: Duration) {
        step.span
            .in_scope(|| tracing::info!(delay_ms = millis(delay), "step will retry"));
    }

    async fn step_compensated(&self, step: &StepContext, _result: &Value) {
        step.span.in_scope(|| tracing::info!("step compensated"));
    }

    async fn step_undone(&self, step: &StepContext, outcome: Result<(), &StepError>) {
        step.span.in_scope(|| match outcome {
            Ok(()) => tracing::info!("step undone"),
            Err(e) => tracing::error!(error = %e, "step undo failed"),
        });
    }
}

/// Count and total duration for one (kind, outcome) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub count: u64,
    pub total: Duration,
}

/// Counts and durations of step attempts by kind and outcome (`succeeded`, `failed`,
/// `retried`, `compensated`, `undone`, `undo_failed`), and runs by status.
#[derive(Debug, Default)]
pub struct MetricsMiddleware {
    steps: Mutex<HashMap<(String, &'static str), Tally>>,
    runs: Mutex<HashMap<&'static str, Tally>>,
}

impl MetricsMiddleware {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, kind: &str, outcome: &'static str, elapsed: Duration) {
        if let Ok(mut m) = self.steps.lock() {
            let t = m.entry((kind.to_owned(), outcome)).or_default();
            t.count += 1;
            t.total += elapsed;
        }
    }

    /// The tally for one kind and outcome.
    pub fn step_tally(&self, kind: &str, outcome: &str) -> Tally {
        self.steps
            .lock()
            .ok()
            .and_then(|m| {
                m.iter()
                    .find(|((k, o), _)| k == kind && *o == outcome)
                    .map(|(_, t)| *t)
            })
            .unwrap_or_default()
    }

    /// The tally of runs that ended `succeeded`, `failed` or `suspended`.
    pub fn run_tally(&self, status: &str) -> Tally {
        self.runs
            .lock()
            .ok()
            .and_then(|m| m.get(status).copied())
            .unwrap_or_default()
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let steps: Vec<((String, &str), Tally)> = self
            .steps
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let mut steps = steps;
        steps.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# TYPE swarm_reactor_steps_total counter\n");
        for ((kind, outcome), t) in &steps {
            let _ = writeln!(
                out,
                "swarm_reactor_steps_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {}",
                t.count
            );
        }
        out.push_str("# TYPE swarm_reactor_step_seconds_sum counter\n");
        for ((kind, outcome), t) in &steps {
            let _ = writeln!(
                out,
                "swarm_reactor_step_seconds_sum{{kind=\"{kind}\",outcome=\"{outcome}\"}} {}",
                t.total.as_secs_f64()
            );
        }
        let mut runs: Vec<(&str, Tally)> = self
            .runs
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        runs.sort_by(|a, b| a.0.cmp(b.0));
        out.push_str("# TYPE swarm_reactor_runs_total counter\n");
        for (status, t) in &runs {
            let _ = writeln!(
                out,
                "swarm_reactor_runs_total{{status=\"{status}\"}} {}",
                t.count
            );
        }
        out.push_str("# TYPE swarm_reactor_run_seconds_sum counter\n");
        for (status, t) in &runs {
            let _ = writeln!(
                out,
                "swarm_reactor_run_seconds_sum{{status=\"{status}\"}} {}",
                t.total.as_secs_f64()
            );
        }
        out
    }
}

#[async_trait]
impl Middleware for MetricsMiddleware {
    async fn run_finished(&self, _run: &RunContext, report: &RunReport) {
        let status = match report.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Suspended => "suspended",
        };
        if let Ok(mut m) = self.runs.lock() {
            let t = m.entry(status).or_default();
            t.count += 1;
            t.total += report.elapsed;
        }
    }

    async fn step_succeeded(&self, step: &StepContext, _result: &Value, elapsed: Duration) {
        self.add(&step.kind, "succeeded", elapsed);
    }

    async fn step_failed(&self, step: &StepContext, _error: &StepError, elapsed: Duration) {
        self.add(&step.kind, "failed", elapsed);
    }

    async fn step_retrying(&self, step: &StepContext, _error: &StepError, _delay: Duration) {
        self.add(&step.kind, "retried", Duration::ZERO);
    }

    async fn step_compensated(&self, step: &StepContext, _result: &Value) {
        self.add(&step.kind, "compensated", Duration::ZERO);
    }

    async fn step_undone(&self, step: &StepContext, outcome: Result<(), &StepError>) {
        let o = if outcome.is_ok() {
            "undone"
        } else {
            "undo_failed"
        };
        self.add(&step.kind, o, Duration::ZERO);
    }
}
