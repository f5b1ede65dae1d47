//! The one place a step's state changes: [`Run::transition`] lets middleware hear of the
//! [`Change`], records it in the journal, then sends the [`RunEvent`], in that order, so that
//! nothing is announced that is not durable. (The success of a pure step is the exception: it
//! is recorded deferred, durable with the run's next entry, since running it again is
//! harmless.)

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::cancel::Cancel;
use super::run::{Run, millis};
use crate::error::{JournalError, StepError};
use crate::journal::JournalEntry;
use crate::middleware::Middleware;
use crate::report::RunEvent;
use crate::step::StepContext;

/// What happened to a step.
pub(super) enum Change<'a> {
    /// An attempt begins (middleware may enrich its context first).
    Started { attempt: u32 },
    /// An attempt failed.
    Failed {
        attempt: u32,
        error: &'a StepError,
        elapsed: Duration,
        retry: Retry<'a>,
    },
    /// Another attempt, `attempt`, starts after `delay`.
    Retrying {
        attempt: u32,
        error: &'a StepError,
        delay: Duration,
    },
    /// The step completed, or failed for good and `compensate` supplied its result.
    Succeeded {
        attempt: u32,
        arguments: &'a Value,
        result: &'a Value,
        elapsed: Duration,
        compensated: bool,
        /// The step's kind is [pure](crate::Step::pure): recorded deferred.
        pure: bool,
    },
    /// Stopped by a cancel or a suspension.
    Cancelled,
    /// Rolled back, or tried to.
    Undone(Result<(), &'a StepError>),
    /// Taken from the journal instead of run again: only announced.
    Resumed,
    /// Failed before its first attempt (an argument or a capability is missing): only
    /// announced.
    Refused { error: &'a StepError },
}

/// Whether a failed attempt is followed by another: when the error and the step's
/// `max_retries` allow it (`allowed`) and, once middleware has heard of the failure, `unless`
/// is not stopping the step.
pub(super) struct Retry<'a> {
    pub(super) allowed: bool,
    pub(super) unless: &'a Cancel,
}

/// What a recorded change decided.
pub(super) struct Recorded {
    /// The change was a failed attempt, and another one follows.
    pub(super) will_retry: bool,
}

impl Run {
    /// Records that step `name` (its journal name: `m[2]` for a map element) went through
    /// `change`: middleware hooks, then the journal entry, then the event. A journal that fails
    /// stops it before the event: the caller must not act on the change.
    pub(super) async fn transition(
        &self,
        name: &str,
        ctx: &mut StepContext,
        change: Change<'_>,
    ) -> Result<Recorded, JournalError> {
        change.notify(&self.env.middleware, ctx).await;
        // Decided after the hooks, which may take a while: a stop that came meanwhile counts.
        let will_retry = match &change {
            Change::Failed { retry, .. } => retry.allowed && retry.unless.now().is_none(),
            _ => false,
        };
        if let Some(entry) = change.entry(name, will_retry) {
            if change.deferrable() {
                self.env
                    .journal
                    .append_deferred(&self.run_id, entry)
                    .await?;
            } else {
                self.record(entry).await?;
            }
        }
        self.env
            .emit(change.event(self.run_id.clone(), ctx.step.clone(), will_retry));
        Ok(Recorded { will_retry })
    }
}

impl Change<'_> {
    async fn notify(&self, middleware: &[Arc<dyn Middleware>], ctx: &mut StepContext) {
        for m in middleware {
            match *self {
                Change::Started { .. } => m.step_started(ctx).await,
                Change::Failed { error, elapsed, .. } => m.step_failed(ctx, error, elapsed).await,
                Change::Retrying { error, delay, .. } => m.step_retrying(ctx, error, delay).await,
                Change::Succeeded {
                    result,
                    compensated: true,
                    ..
                } => m.step_compensated(ctx, result).await,
                Change::Succeeded {
                    result, elapsed, ..
                } => m.step_succeeded(ctx, result, elapsed).await,
                Change::Undone(outcome) => m.step_undone(ctx, outcome).await,
                Change::Cancelled | Change::Resumed | Change::Refused { .. } => {}
            }
        }
    }

    /// A pure step's own result (not one `compensate` supplied) need not be durable before
    /// the run goes on.
    fn deferrable(&self) -> bool {
        matches!(
            self,
            Change::Succeeded {
                pure: true,
                compensated: false,
                ..
            }
        )
    }

    fn entry(&self, name: &str, will_retry: bool) -> Option<JournalEntry> {
        let step = name.to_owned();
        Some(match *self {
            Change::Started { attempt } => JournalEntry::StepStarted { step, attempt },
            Change::Failed { attempt, error, .. } => JournalEntry::StepFailed {
                step,
                attempt,
                error: error.message.clone(),
                will_retry,
            },
            Change::Retrying { attempt, delay, .. } => JournalEntry::StepRetried {
                step,
                attempt,
                delay_ms: millis(delay),
            },
            Change::Succeeded {
                attempt,
                arguments,
                result,
                compensated,
                ..
            } => JournalEntry::StepSucceeded {
                step,
                attempt,
                arguments: arguments.clone(),
                result: result.clone(),
                compensated,
            },
            Change::Cancelled => JournalEntry::StepCancelled { step },
            Change::Undone(Ok(())) => JournalEntry::StepUndone { step },
            Change::Undone(Err(e)) => JournalEntry::StepUndoFailed {
                step,
                error: e.message.clone(),
            },
            Change::Resumed | Change::Refused { .. } => return None,
        })
    }

    /// `step` is the step's name as shown (`parent/child`, `m[2]`).
    fn event(&self, run_id: String, step: String, will_retry: bool) -> RunEvent {
        match *self {
            Change::Started { attempt } => RunEvent::StepStarted {
                run_id,
                step,
                attempt,
            },
            Change::Failed { attempt, error, .. } => RunEvent::StepFailed {
                run_id,
                step,
                attempt,
                error: error.message.clone(),
                will_retry,
            },
            Change::Retrying { attempt, delay, .. } => RunEvent::StepRetrying {
                run_id,
                step,
                attempt,
                delay_ms: millis(delay),
            },
            Change::Succeeded {
                attempt,
                elapsed,
                compensated,
                ..
            } => RunEvent::StepSucceeded {
                run_id,
                step,
                attempt,
                elapsed_ms: millis(elapsed),
                compensated,
            },
            Change::Cancelled => RunEvent::StepCancelled { run_id, step },
            Change::Undone(Ok(())) => RunEvent::StepUndone { run_id, step },
            Change::Undone(Err(e)) => RunEvent::StepUndoFailed {
                run_id,
                step,
                error: e.message.clone(),
            },
            Change::Resumed => RunEvent::StepResumed { run_id, step },
            Change::Refused { error } => RunEvent::StepFailed {
                run_id,
                step,
                attempt: 0,
                error: error.message.clone(),
                will_retry: false,
            },
        }
    }
}
