//! One step from its first attempt to its outcome: [`StepRun::run_to_end`] makes attempts
//! (each within the step's timeout), retries with backoff, and hands a step that failed for
//! good to `compensate`.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::Instrument;

use super::BoxFuture;
use super::cancel::Cancel;
use super::run::Run;
use super::transition::{Change, Recorded, Retry};
use super::undo::UndoPlan;
use crate::error::{JournalError, RunError, StepError};
use crate::report::{SuspendReason, Suspension};
use crate::step::StepContext;
use crate::validate::{ResolvedStep, Runner};

/// A step that completed: its result, and how to roll it back.
pub(super) struct Done {
    pub(super) result: Value,
    pub(super) attempts: u32,
    /// The result came from `compensate`.
    pub(super) compensated: bool,
    pub(super) undo: UndoPlan,
}

/// How one step (with all its attempts) ended.
pub(super) enum Outcome {
    Done(Done),
    Failed {
        error: RunError,
        attempts: u32,
    },
    Cancelled {
        attempts: u32,
    },
    /// A `map` or `workflow` step stopped part way, nothing undone (a drain, or a missing
    /// capability inside a sub-workflow).
    Suspended {
        suspension: Suspension,
        attempts: u32,
    },
    /// The journal failed: stop everything, undo nothing.
    JournalFailed {
        error: JournalError,
        attempts: u32,
    },
}

/// How one attempt ended.
pub(super) enum Attempt {
    Finished(Result<(Value, UndoPlan), StepError>),
    Cancelled,
    Suspended(Suspension),
    JournalFailed(JournalError),
}

/// One step being run, with what each of its attempts needs.
#[derive(Clone, Copy)]
pub(super) struct StepRun<'a> {
    pub(super) run: &'a Run,
    pub(super) step: &'a ResolvedStep,
    /// Its journal name in `run` (`m[2]` for a map element).
    pub(super) name: &'a str,
    pub(super) args: &'a Value,
    pub(super) cancel: &'a Cancel,
    /// The caller already holds the permits this step needs (it is part of a `map` step).
    pub(super) held: bool,
}

impl<'a> StepRun<'a> {
    /// Runs the step with its retries and compensation.
    pub(super) fn run_to_end(self) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let spec = &self.step.spec;
            let mut rng = self.run.rng(self.name);
            let mut attempt = 0u32;
            let (error, ctx) = loop {
                attempt += 1;
                let mut ctx = self.run.context(self.name, &spec.run, attempt, &spec.with);
                if let Err(error) = self.change(&mut ctx, Change::Started { attempt }).await {
                    return journal_failed(error, attempt);
                }
                let t0 = Instant::now();
                let span = ctx.span.clone();
                let outcome = self.attempt(&ctx).instrument(span).await;
                let elapsed = t0.elapsed();
                let e = match outcome {
                    Attempt::Cancelled => return self.cancelled(&mut ctx, attempt, None).await,
                    // Stopped part way (its done parts are journaled): the run resumes it later.
                    Attempt::Suspended(s) => {
                        return self.cancelled(&mut ctx, attempt, Some(s)).await;
                    }
                    Attempt::JournalFailed(error) => return journal_failed(error, attempt),
                    Attempt::Finished(Ok((result, undo))) => {
                        let done = Done {
                            result,
                            attempts: attempt,
                            compensated: false,
                            undo,
                        };
                        return self.succeed(&mut ctx, done, elapsed).await;
                    }
                    // Suspended now: neither retry nor compensate; the next holder runs it again.
                    Attempt::Finished(Err(_)) if self.cancel.halted() => {
                        return self.cancelled(&mut ctx, attempt, None).await;
                    }
                    Attempt::Finished(Err(e)) => e,
                };
                let retry = Retry {
                    allowed: e.retryable && attempt <= spec.max_retries,
                    unless: self.cancel,
                };
                let failed = Change::Failed {
                    attempt,
                    error: &e,
                    elapsed,
                    retry,
                };
                match self.change(&mut ctx, failed).await {
                    Err(error) => return journal_failed(error, attempt),
                    Ok(recorded) if !recorded.will_retry => break (e, ctx),
                    Ok(_) => {}
                }
                let delay = spec.backoff.delay(attempt, &mut rng);
                let retrying = Change::Retrying {
                    attempt: attempt + 1,
                    error: &e,
                    delay,
                };
                if let Err(error) = self.change(&mut ctx, retrying).await {
                    return journal_failed(error, attempt);
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = self.cancel.wait() => return Outcome::Cancelled { attempts: attempt },
                }
            };
            if spec.on_exhausted == crate::spec::OnExhausted::Pause {
                let mut ctx = ctx;
                let suspension = Suspension {
                    reason: SuspendReason::Exhausted {
                        error: error.message.clone(),
                    },
                    step: Some(self.run.display(self.name)),
                };
                return self.cancelled(&mut ctx, attempt, Some(suspension)).await;
            }
            self.compensate(error, ctx, attempt).await
        })
    }

    /// This step went through `change` (see [`Run::transition`]).
    pub(super) async fn change(
        &self,
        ctx: &mut StepContext,
        change: Change<'_>,
    ) -> Result<Recorded, JournalError> {
        self.run.transition(self.name, ctx, change).await
    }

    /// One attempt, whatever the step's kind.
    async fn attempt(&self, ctx: &StepContext) -> Attempt {
        let spec = &self.step.spec;
        let exclusive = !spec.run_async && !self.held;
        match &self.step.runner {
            Runner::Kind(kind) => {
                let body = async {
                    let _permit = if self.held {
                        None
                    } else {
                        self.run.acquire(exclusive).await
                    };
                    with_timeout(spec.timeout, kind.run(ctx, self.args)).await
                };
                // Dropping `body` on cancel stops the step (and kills an exec child).
                tokio::select! {
                    r = body => match r {
                        // The step waits: the run parks, to run it again later.
                        Err(StepError { wait: Some(w), .. }) => Attempt::Suspended(Suspension {
                            reason: SuspendReason::Wait {
                                signal: w.signal,
                                until: w.until,
                                since: w.since,
                            },
                            step: Some(self.run.display(self.name)),
                        }),
                        r => Attempt::Finished(r.map(|v| (v, UndoPlan::Record))),
                    },
                    _ = self.cancel.wait() => Attempt::Cancelled,
                }
            }
            Runner::Map {
                template,
                max_concurrency,
            } => {
                let (cancel, _all) = self.composite_scope(exclusive).await;
                let map = StepRun {
                    cancel: &cancel,
                    held: exclusive || self.held,
                    ..*self
                };
                map.run_map(template, *max_concurrency).await
            }
            Runner::Workflow(sub) => {
                let (cancel, _all) = self.composite_scope(exclusive).await;
                StepRun {
                    cancel: &cancel,
                    ..*self
                }
                .run_sub(sub)
                .await
            }
            Runner::Switch { branches, default } => {
                let (cancel, _all) = self.composite_scope(exclusive).await;
                StepRun {
                    cancel: &cancel,
                    ..*self
                }
                .run_switch(branches, *default)
                .await
            }
        }
    }

    /// What a composite step (`map`, `workflow`, `switch`) runs within: its timeout over all
    /// it runs, and, when it must run alone, every permit of the run, held until dropped.
    async fn composite_scope(&self, exclusive: bool) -> (Cancel, Option<OwnedSemaphorePermit>) {
        let cancel = self.cancel.within(self.step.spec.timeout);
        let all = if exclusive {
            self.run.acquire(true).await
        } else {
            None
        };
        (cancel, all)
    }

    /// Records that the step was stopped (cancelled, or stopped by a suspension).
    pub(super) async fn cancelled(
        &self,
        ctx: &mut StepContext,
        attempts: u32,
        suspension: Option<Suspension>,
    ) -> Outcome {
        if let Err(error) = self.change(ctx, Change::Cancelled).await {
            return journal_failed(error, attempts);
        }
        match suspension {
            Some(suspension) => Outcome::Suspended {
                suspension,
                attempts,
            },
            None => Outcome::Cancelled { attempts },
        }
    }

    /// Records that the step completed (`elapsed` is the last attempt's).
    pub(super) async fn succeed(
        &self,
        ctx: &mut StepContext,
        done: Done,
        elapsed: Duration,
    ) -> Outcome {
        let succeeded = Change::Succeeded {
            attempt: done.attempts,
            arguments: self.args,
            result: &done.result,
            elapsed,
            compensated: done.compensated,
            pure: matches!(&self.step.runner, Runner::Kind(kind) if kind.pure()),
        };
        match self.change(ctx, succeeded).await {
            Ok(_) => Outcome::Done(done),
            Err(error) => journal_failed(error, done.attempts),
        }
    }
}

fn journal_failed(error: JournalError, attempts: u32) -> Outcome {
    Outcome::JournalFailed { error, attempts }
}

/// Awaits `work`, failing it with a retryable "timed out" error after `limit`, if there is one.
pub(super) async fn with_timeout<T>(
    limit: Option<Duration>,
    work: impl Future<Output = Result<T, StepError>>,
) -> Result<T, StepError> {
    match limit {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .unwrap_or_else(|_| Err(StepError::timed_out(t))),
        None => work.await,
    }
}
