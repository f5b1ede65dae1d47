//! Rolling back and making up for steps: [`Rollback`] undoes a completed step (a `map`'s
//! elements and a sub-workflow's steps first, in reverse), and [`StepRun::compensate`] lets a
//! step that failed for good supply a replacement result. Both run their actions with their own
//! retries ([`run_action`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::BoxFuture;
use super::attempt::{Done, Outcome, StepRun, with_timeout};
use super::compose::map_elements_done;
use super::run::Run;
use super::transition::Change;
use crate::backoff::Backoff;
use crate::error::{JournalError, RunError, StepError};
use crate::journal::{CompletedStep, completed_steps};
use crate::step::{Compensation, StepContext};
use crate::validate::{ResolvedAction, ResolvedStep, Runner, Workflow, pick_branch};

/// How a completed step is rolled back.
#[derive(Debug, Clone)]
pub(super) enum UndoPlan {
    /// From its arguments and result alone (plain steps; anything resumed from the journal).
    Record,
    /// A map's elements as (journal name, arguments, result), in completion order.
    Map(Vec<(String, Value, Value)>),
    /// A sub-workflow's completed steps, in completion order.
    Sub { completed: Vec<CompletedStep> },
}

/// How rolling back one step ended.
pub(super) enum Undo {
    Done,
    NotUndoable,
    Failed(StepError),
    /// The journal failed to record it: undo nothing more.
    JournalFailed(JournalError),
}

/// A completed step to roll back.
pub(super) struct Rollback<'a> {
    pub(super) step: &'a ResolvedStep,
    /// Its journal name (`m[2]` for a map element).
    pub(super) name: &'a str,
    pub(super) args: &'a Value,
    pub(super) result: &'a Value,
    pub(super) plan: &'a UndoPlan,
}

/// What rolling back a step's parts and the step itself did so far.
#[derive(Default)]
pub(super) struct UndoSoFar {
    /// Something was rolled back.
    did: bool,
    /// The first undo that failed.
    error: Option<StepError>,
}

impl UndoSoFar {
    /// Takes in how one part's undo ended; a journal failure stops the rollback.
    fn note(&mut self, undo: Undo) -> Result<(), JournalError> {
        match undo {
            Undo::Done => self.did = true,
            Undo::Failed(e) => {
                self.error.get_or_insert(e);
            }
            Undo::NotUndoable => {}
            Undo::JournalFailed(e) => return Err(e),
        }
        Ok(())
    }

    fn note_own(&mut self, undone: Result<(), StepError>) {
        match undone {
            Ok(()) => self.did = true,
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
}

impl<'a> Rollback<'a> {
    /// A step rolled back from its arguments and result alone: a map element, a sub-workflow's
    /// step.
    pub(super) fn recorded(
        step: &'a ResolvedStep,
        name: &'a str,
        args: &'a Value,
        result: &'a Value,
    ) -> Self {
        Rollback {
            step,
            name,
            args,
            result,
            plan: &UndoPlan::Record,
        }
    }

    /// Rolls back the step in `run`: a map's elements in reverse, a sub-workflow's steps in
    /// reverse, then the step's own `undo` action or its kind's `undo`. Stops at the first undo
    /// the journal fails to record.
    pub(super) fn run(self, run: &'a Run) -> BoxFuture<'a, Undo> {
        Box::pin(async move {
            let mut so_far = match self.undo_parts(run).await {
                Ok(so_far) => so_far,
                Err(e) => return Undo::JournalFailed(e),
            };
            let spec = &self.step.spec;
            let mut ctx = run.context(self.name, &spec.run, 1, &spec.with);
            self.undo_own(run, &ctx, &mut so_far).await;
            let outcome = match so_far.error {
                Some(e) => Undo::Failed(e),
                None if so_far.did => Undo::Done,
                None => return Undo::NotUndoable,
            };
            let undone = Change::Undone(match &outcome {
                Undo::Failed(e) => Err(e),
                _ => Ok(()),
            });
            if let Err(e) = run.transition(self.name, &mut ctx, undone).await {
                tracing::warn!(step = %ctx.step, error = %e, "could not record undo");
                return Undo::JournalFailed(e);
            }
            outcome
        })
    }

    /// A map's elements, or a sub-workflow's completed steps, in reverse completion order.
    async fn undo_parts(&self, run: &Run) -> Result<UndoSoFar, JournalError> {
        match &self.step.runner {
            Runner::Kind(_) => Ok(UndoSoFar::default()),
            Runner::Map { template, .. } => {
                let elements = match self.plan {
                    UndoPlan::Map(done) => done.clone(),
                    _ => map_elements_done(self.name, self.args, self.result),
                };
                undo_elements(run, template, &elements).await
            }
            Runner::Workflow(sub) => self.undo_sub(run, sub, self.name).await,
            Runner::Switch { branches, default } => {
                let on = self.args.get("on").unwrap_or(&Value::Null);
                match pick_branch(branches, *default, on) {
                    Ok(b) => {
                        let child = format!("{}/{}", self.name, b.name);
                        self.undo_sub(run, &b.workflow, &child).await
                    }
                    // It picked no branch, so it did not complete: nothing to undo.
                    Err(_) => Ok(UndoSoFar::default()),
                }
            }
        }
    }

    /// A sub-workflow's completed steps, under the sub-run's id (`<run>/<child>`).
    async fn undo_sub(
        &self,
        run: &Run,
        sub: &Arc<Workflow>,
        child: &str,
    ) -> Result<UndoSoFar, JournalError> {
        let mut so_far = UndoSoFar::default();
        let child_id = format!("{}/{child}", run.run_id);
        let completed = match self.plan {
            UndoPlan::Sub { completed } => completed.clone(),
            _ => match run.env.journal.entries(&child_id).await {
                Ok(entries) => completed_steps(&entries),
                Err(e) => {
                    so_far.note_own(Err(StepError::fatal(e.to_string())));
                    Vec::new()
                }
            },
        };
        let child = run.child(sub.clone(), child_id, child);
        for c in completed.iter().rev().filter(|c| !c.compensated) {
            if let Some(&i) = sub.index.get(&c.step) {
                let step = Rollback::recorded(&sub.steps[i], &c.step, &c.arguments, &c.result);
                so_far.note(step.run(&child).await)?;
            }
        }
        Ok(so_far)
    }

    /// The step's `undo` action, or else its kind's `undo` (within the step's timeout).
    async fn undo_own(&self, run: &Run, ctx: &StepContext, so_far: &mut UndoSoFar) {
        let undone = if let Some(action) = &self.step.undo {
            let input = json!({"arguments": self.args, "result": self.result});
            run_action(run, action, self.name, "undo", &input)
                .await
                .map(|_| ())
        } else if let Runner::Kind(kind) = &self.step.runner
            && kind.can_undo()
        {
            with_timeout(
                self.step.spec.timeout,
                kind.undo(ctx, self.args, self.result),
            )
            .await
        } else {
            return;
        };
        so_far.note_own(undone);
    }
}

/// Rolls back a map's `elements` (journal name, arguments, result), last completed first, until
/// the journal fails.
pub(super) async fn undo_elements(
    run: &Run,
    template: &ResolvedStep,
    elements: &[(String, Value, Value)],
) -> Result<UndoSoFar, JournalError> {
    let mut so_far = UndoSoFar::default();
    for (name, args, result) in elements.iter().rev() {
        let element = Rollback::recorded(template, name, args, result);
        so_far.note(element.run(run).await)?;
    }
    Ok(so_far)
}

impl StepRun<'_> {
    /// After the step failed for good: its `compensate` action (or its kind's `compensate`)
    /// may supply a replacement result. A suspension `Now` (or a failed journal) stops it.
    pub(super) async fn compensate(
        &self,
        error: StepError,
        mut ctx: StepContext,
        attempts: u32,
    ) -> Outcome {
        let replace = async {
            if let Some(action) = &self.step.compensate {
                let input = json!({"arguments": self.args, "error": error.message});
                match run_action(self.run, action, self.name, "compensate", &input).await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::warn!(step = %ctx.step, error = %e, "compensate failed");
                        None
                    }
                }
            } else if let Runner::Kind(kind) = &self.step.runner {
                match kind.compensate(&ctx, self.args, &error).await {
                    Compensation::Continue(v) => Some(v),
                    Compensation::Fail => None,
                }
            } else {
                None
            }
        };
        let replacement = tokio::select! {
            biased;
            () = self.cancel.wait_halt() => None,
            r = replace => Some(r),
        };
        match replacement {
            // Suspended now: the next holder runs the step again.
            None => self.cancelled(&mut ctx, attempts, None).await,
            Some(Some(result)) => {
                let done = Done {
                    result,
                    attempts,
                    compensated: true,
                    undo: UndoPlan::Record,
                };
                self.succeed(&mut ctx, done, Duration::ZERO).await
            }
            Some(None) => Outcome::Failed {
                error: RunError::StepFailed {
                    step: ctx.step.clone(),
                    attempts,
                    error,
                },
                attempts,
            },
        }
    }
}

/// Runs an `undo` or `compensate` action (`what`) for step `name`, with its own retries.
async fn run_action(
    run: &Run,
    action: &ResolvedAction,
    name: &str,
    what: &str,
    input: &Value,
) -> Result<Value, StepError> {
    let mut rng = run.rng(name);
    let backoff = Backoff::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ctx = run.context(
            &format!("{name}.{what}"),
            &action.spec.run,
            attempt,
            &action.spec.with,
        );
        match with_timeout(action.spec.timeout, action.kind.run(&ctx, input)).await {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable && attempt <= action.spec.max_retries => {
                tokio::time::sleep(backoff.delay(attempt, &mut rng)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
