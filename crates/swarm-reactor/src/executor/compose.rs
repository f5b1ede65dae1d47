//! Steps made of steps: `map` runs a template step once per list element
//! ([`StepRun::run_map`]), `workflow` runs another spec as a sub-run
//! ([`StepRun::run_sub`]), `switch` runs one of its branches as one ([`StepRun::run_switch`]).

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};

use super::attempt::{Attempt, Done, Outcome, StepRun};
use super::cancel::Stop;
use super::run::RunParams;
use super::schedule::{execute, requested};
use super::undo::{UndoPlan, undo_elements};
use crate::error::{RunError, StepError};
use crate::journal::JournalEntry;
use crate::report::Suspension;
use crate::validate::{Branch, ResolvedStep, Workflow, pick_branch};

impl<'a> StepRun<'a> {
    /// `map`: runs `template` once per element of `arguments.items`, at most `limit` at a time,
    /// results in element order. On failure or cancel, completed elements are undone first. On
    /// a drain it starts no more elements and suspends once the running ones end; suspended
    /// `Now` or with the journal failing, it undoes nothing (the elements done are journaled,
    /// so a resume skips them).
    pub(super) async fn run_map(self, template: &'a ResolvedStep, limit: Option<usize>) -> Attempt {
        let items = match self.args.get("items") {
            Some(Value::Array(items)) => items,
            other => {
                let got = other.map_or("nothing".to_owned(), |v| v.to_string());
                return Attempt::Finished(Err(StepError::fatal(format!(
                    "argument \"items\" must be a list, got {}",
                    truncate(&got, 80)
                ))));
            }
        };
        let elements = map_elements(self.name, self.args, items);
        let limit = if self.held {
            1
        } else {
            limit.unwrap_or(items.len()).max(1)
        };

        let mut results: Vec<Option<Value>> = vec![None; items.len()];
        let mut done: Vec<(String, Value, Value)> = Vec::new();
        for (i, (name, _)) in elements.iter().enumerate() {
            if let Some(c) = self.run.resumed.get(name) {
                results[i] = Some(c.result.clone());
                done.push((name.clone(), c.arguments.clone(), c.result.clone()));
            }
        }
        let todo: Vec<usize> = (0..items.len()).filter(|&i| results[i].is_none()).collect();
        let mut todo = todo.into_iter();
        let mut inflight = FuturesUnordered::new();
        let mut failure: Option<StepError> = None;
        let mut stopped = false;
        let mut suspended: Option<Suspension> = None;
        loop {
            while inflight.len() < limit
                && suspended.is_none()
                && self.cancel.suspending().is_none()
            {
                let Some(i) = todo.next() else { break };
                let (name, args) = (&elements[i].0, &elements[i].1);
                let element = StepRun {
                    step: template,
                    name,
                    args,
                    ..self
                };
                inflight.push(async move { (i, element.run_to_end().await) });
            }
            let Some((i, outcome)) = inflight.next().await else {
                break;
            };
            let (name, args) = &elements[i];
            match outcome {
                Outcome::Done(Done { result, .. }) => {
                    results[i] = Some(result.clone());
                    done.push((name.clone(), args.clone(), result));
                }
                Outcome::Failed { error, .. } => {
                    let inner = match error {
                        RunError::StepFailed { error, .. } => error,
                        other => StepError::fatal(other.to_string()),
                    };
                    failure = Some(StepError {
                        wait: None,
                        message: format!("element {i}: {}", inner.message),
                        retryable: inner.retryable,
                    });
                    break;
                }
                Outcome::Cancelled { .. } => {
                    stopped = true;
                    // The others see the same signal; let them finish so they are recorded.
                    while let Some((j, o)) = inflight.next().await {
                        match o {
                            Outcome::Done(Done { result, .. }) => {
                                let (name, args) = &elements[j];
                                done.push((name.clone(), args.clone(), result));
                            }
                            Outcome::JournalFailed { error, .. } => {
                                return Attempt::JournalFailed(error);
                            }
                            _ => {}
                        }
                    }
                    break;
                }
                // An element (a sub-workflow) stopped part way: start no more, let the others end.
                Outcome::Suspended { suspension, .. } => {
                    suspended.get_or_insert(suspension);
                }
                // Dropping the others stops them at once.
                Outcome::JournalFailed { error, .. } => return Attempt::JournalFailed(error),
            }
        }
        drop(inflight);
        if failure.is_none() && !stopped {
            if results.iter().all(Option::is_some) {
                let results = results.into_iter().map(Option::unwrap_or_default).collect();
                return Attempt::Finished(Ok((Value::Array(results), UndoPlan::Map(done))));
            }
            return Attempt::Suspended(suspended.unwrap_or_else(requested));
        }
        if failure.is_none() && self.cancel.halted() {
            return Attempt::Cancelled;
        }
        // The attempt fails or stops either way; an element whose undo fails says so itself.
        if let Err(e) = undo_elements(self.run, template, &done).await {
            return Attempt::JournalFailed(e);
        }
        match (failure, self.cancel.now()) {
            (Some(e), _) => Attempt::Finished(Err(e)),
            (None, Some(Stop::TimedOut(t))) => Attempt::Finished(Err(StepError::timed_out(t))),
            (None, _) => Attempt::Cancelled,
        }
    }

    /// `workflow`: runs the sub-workflow with this step's arguments as its inputs, under the
    /// run id `<run>/<step>` so it resumes and undoes on its own journal.
    pub(super) async fn run_sub(self, sub: &Arc<Workflow>) -> Attempt {
        let label = format!("workflow {:?}", sub.spec.name);
        self.run_child(sub, self.name.to_owned(), &label).await
    }

    /// `switch`: records the branch its `on` argument picks (and the other branches' steps as
    /// skipped), then runs that branch with the step's arguments as its inputs under the run
    /// id `<run>/<step>/<branch>`. A value that picks no branch fails the step for good.
    pub(super) async fn run_switch(self, branches: &[Branch], default: Option<usize>) -> Attempt {
        let on = self.args.get("on").unwrap_or(&Value::Null);
        let branch = match pick_branch(branches, default, on) {
            Ok(b) => b,
            Err(e) => return Attempt::Finished(Err(StepError::fatal(e))),
        };
        let skipped = branches
            .iter()
            .filter(|b| b.name != branch.name)
            .flat_map(|b| {
                b.workflow
                    .spec
                    .steps
                    .iter()
                    .map(move |s| format!("{}/{}/{}", self.name, b.name, s.name))
            })
            .collect();
        let taken = JournalEntry::BranchTaken {
            step: self.name.to_owned(),
            branch: branch.name.clone(),
            skipped,
        };
        if let Err(e) = self.run.record(taken).await {
            return Attempt::JournalFailed(e);
        }
        let child = format!("{}/{}", self.name, branch.name);
        let label = format!("branch {:?}", branch.name);
        self.run_child(&branch.workflow, child, &label).await
    }

    /// Runs `sub` with this step's arguments as its inputs as the run `<run>/<child>`.
    async fn run_child(self, sub: &Arc<Workflow>, child: String, label: &str) -> Attempt {
        let run = self.run;
        let params = RunParams {
            run_id: format!("{}/{child}", run.run_id),
            prefix: format!("{}{child}/", run.prefix),
            fencing_token: run.fencing_token,
            metadata: run.metadata.clone(),
            parent_span: tracing::Span::current(),
            cancel: self.cancel.clone(),
        };
        let inputs = self.args.as_object().cloned().unwrap_or_default();
        let (report, completed) = execute(run.env.clone(), sub.clone(), inputs, params).await;
        match (report.suspended, report.error) {
            // Suspended with an error: the sub-run's journal failed.
            (Some(_), Some(RunError::Journal(e))) => Attempt::JournalFailed(e),
            (Some(s), _) => Attempt::Suspended(s),
            (None, None) => Attempt::Finished(Ok((report.result, UndoPlan::Sub { completed }))),
            (None, Some(RunError::Cancelled)) => Attempt::Cancelled,
            (None, Some(RunError::TimedOut(t))) if self.cancel.now().is_some() => {
                Attempt::Finished(Err(StepError::timed_out(t)))
            }
            (None, Some(e)) => Attempt::Finished(Err(StepError {
                wait: None,
                message: format!("{label} failed: {e}"),
                retryable: !matches!(e, RunError::InvalidInputs(_)),
            })),
        }
    }
}

/// A map step's elements: each one's journal name (`m[2]`) and arguments (the step's
/// arguments without `items`, plus `item` and `index`).
fn map_elements(name: &str, args: &Value, items: &[Value]) -> Vec<(String, Value)> {
    let mut base = args.as_object().cloned().unwrap_or_default();
    base.remove("items");
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut m = base.clone();
            m.insert("item".into(), item.clone());
            m.insert("index".into(), json!(i));
            (format!("{name}[{i}]"), Value::Object(m))
        })
        .collect()
}

/// A resumed map step's elements as (journal name, arguments, result), rebuilt from its
/// arguments and result.
pub(super) fn map_elements_done(
    name: &str,
    args: &Value,
    result: &Value,
) -> Vec<(String, Value, Value)> {
    let (Some(Value::Array(items)), Value::Array(results)) = (args.get("items"), result) else {
        return Vec::new();
    };
    map_elements(name, args, items)
        .into_iter()
        .zip(results)
        .map(|((name, args), result)| (name, args, result.clone()))
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).collect::<String>() + "..."
    }
}
