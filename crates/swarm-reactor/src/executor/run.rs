//! One run in progress: [`Run`], what its step tasks share (journal, permits, resumed steps),
//! and [`Ledger`], where each of its steps stands.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Env;
use super::attempt::Done;
use super::cancel::Cancel;
use super::undo::UndoPlan;
use crate::error::{JournalError, StepError};
use crate::journal::{CompletedStep, JournalEntry};
use crate::middleware::RunContext;
use crate::report::{StepReport, StepStatus};
use crate::spec::{Source, follow};
use crate::step::StepContext;
use crate::validate::Workflow;

/// Permits when `max_concurrency` is not set: effectively unlimited, and small enough for
/// `acquire_many` (an `async: false` step takes them all).
const UNLIMITED_PERMITS: u32 = 1 << 20;

/// What a run (or sub-run) starts from, besides its workflow and inputs.
pub(super) struct RunParams {
    pub(super) run_id: String,
    /// Prepended to step names in events and contexts (`parent/` inside a sub-workflow).
    pub(super) prefix: String,
    pub(super) fencing_token: Option<u64>,
    pub(super) metadata: BTreeMap<String, Value>,
    pub(super) parent_span: tracing::Span,
    pub(super) cancel: Cancel,
}

/// One run (or sub-run) in progress, shared with its step tasks.
pub(super) struct Run {
    pub(super) env: Arc<Env>,
    pub(super) wf: Arc<Workflow>,
    pub(super) run_id: String,
    pub(super) prefix: String,
    pub(super) fencing_token: Option<u64>,
    pub(super) metadata: BTreeMap<String, Value>,
    pub(super) span: tracing::Span,
    permits: Arc<Semaphore>,
    total_permits: u32,
    pub(super) inputs: Value,
    /// Everything the journal says is done, including map elements (`m[2]`).
    pub(super) resumed: HashMap<String, CompletedStep>,
    /// When each step that waited first did, as the journal says.
    pub(super) waited: HashMap<String, u64>,
}

impl Run {
    /// A run of `wf` as `ctx` describes it (once middleware has seen it), with no steps
    /// resumed yet.
    pub(super) fn new(
        env: Arc<Env>,
        wf: Arc<Workflow>,
        ctx: &RunContext,
        prefix: String,
        inputs: Value,
    ) -> Self {
        let total = permits_for(&wf);
        Run {
            env,
            wf,
            run_id: ctx.run_id.clone(),
            prefix,
            fencing_token: ctx.fencing_token,
            metadata: ctx.metadata.clone(),
            span: ctx.span.clone(),
            permits: Arc::new(Semaphore::new(total as usize)),
            total_permits: total,
            inputs,
            resumed: HashMap::new(),
            waited: HashMap::new(),
        }
    }

    /// A run for a sub-workflow step, used to undo it after the fact.
    pub(super) fn child(&self, wf: Arc<Workflow>, run_id: String, name: &str) -> Run {
        let ctx = RunContext {
            run_id,
            workflow: wf.spec.name.clone(),
            fencing_token: self.fencing_token,
            metadata: self.metadata.clone(),
            span: self.span.clone(),
        };
        let prefix = format!("{}{name}/", self.prefix);
        Run::new(self.env.clone(), wf, &ctx, prefix, Value::Null)
    }

    /// A step's name as events and contexts show it.
    pub(super) fn display(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub(super) fn context(
        &self,
        name: &str,
        kind: &str,
        attempt: u32,
        with: &Value,
    ) -> StepContext {
        StepContext {
            run_id: self.run_id.clone(),
            step: self.display(name),
            kind: kind.to_owned(),
            attempt,
            fencing_token: self.fencing_token,
            with: Arc::new(with.clone()),
            metadata: self.metadata.clone(),
            span: self.span.clone(),
            waits: self.env.waits.clone(),
            waited_since: self.waited.get(&self.display(name)).copied(),
        }
    }

    pub(super) async fn record(&self, entry: JournalEntry) -> Result<(), JournalError> {
        self.env.journal.append(&self.run_id, entry).await
    }

    /// The backoff RNG of one step: seeded from the reactor's seed and the step's name when
    /// there is a seed, so retries replay exactly.
    pub(super) fn rng(&self, name: &str) -> StdRng {
        match self.env.seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ fnv1a(self.display(name).as_bytes())),
            None => StdRng::from_os_rng(),
        }
    }

    /// One permit, or every permit for a step that runs alone (`async: false`).
    pub(super) async fn acquire(&self, exclusive: bool) -> Option<OwnedSemaphorePermit> {
        let n = if exclusive { self.total_permits } else { 1 };
        self.permits.clone().acquire_many_owned(n).await.ok()
    }
}

fn permits_for(wf: &Workflow) -> u32 {
    wf.spec
        .max_concurrency
        .map_or(UNLIMITED_PERMITS, |n| {
            u32::try_from(n).unwrap_or(UNLIMITED_PERMITS)
        })
        .min(UNLIMITED_PERMITS)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Undone,
}

/// Where one step stands.
pub(super) struct Slot {
    pub(super) state: State,
    pub(super) attempts: u32,
    pub(super) arguments: Value,
    pub(super) result: Option<Value>,
    pub(super) error: Option<String>,
    pub(super) compensated: bool,
    pub(super) resumed: bool,
    pub(super) undo: UndoPlan,
}

/// Where each step of a run stands (one slot per step, in spec order) and the order in which
/// they completed, which undo runs backwards.
pub(super) struct Ledger {
    pub(super) slots: Vec<Slot>,
    pub(super) completion: Vec<usize>,
}

impl Ledger {
    pub(super) fn new(steps: usize) -> Self {
        let slots = (0..steps)
            .map(|_| Slot {
                state: State::Pending,
                attempts: 0,
                arguments: Value::Null,
                result: None,
                error: None,
                compensated: false,
                resumed: false,
                undo: UndoPlan::Record,
            })
            .collect();
        Self {
            slots,
            completion: Vec::new(),
        }
    }

    /// Step `i` completed in an earlier run, as the journal says.
    pub(super) fn resume(&mut self, i: usize, done: &CompletedStep) {
        let slot = &mut self.slots[i];
        slot.state = State::Succeeded;
        slot.arguments = done.arguments.clone();
        slot.result = Some(done.result.clone());
        slot.compensated = done.compensated;
        slot.resumed = true;
        self.completion.push(i);
    }

    /// Step `i` completed in this run.
    pub(super) fn succeed(&mut self, i: usize, done: Done) {
        let slot = &mut self.slots[i];
        slot.state = State::Succeeded;
        slot.attempts = done.attempts;
        slot.result = Some(done.result);
        slot.compensated = done.compensated;
        slot.resumed = false;
        slot.undo = done.undo;
        self.completion.push(i);
    }

    /// Step `i` ended without a result (`Failed` or `Cancelled`).
    pub(super) fn end(&mut self, i: usize, state: State, attempts: u32, error: Option<String>) {
        let slot = &mut self.slots[i];
        slot.state = state;
        slot.attempts = attempts;
        if let Some(error) = error {
            slot.error = Some(error);
        }
    }

    pub(super) fn all_succeeded(&self) -> bool {
        self.slots.iter().all(|s| s.state == State::Succeeded)
    }

    /// What completed and was not undone, in completion order, for the parent of a
    /// sub-workflow to undo it as a unit later.
    pub(super) fn completed(&self, wf: &Workflow) -> Vec<CompletedStep> {
        self.completion
            .iter()
            .filter(|&&i| self.slots[i].state == State::Succeeded)
            .map(|&i| {
                let slot = &self.slots[i];
                CompletedStep {
                    step: wf.steps[i].spec.name.clone(),
                    attempts: slot.attempts,
                    arguments: slot.arguments.clone(),
                    result: slot.result.clone().unwrap_or(Value::Null),
                    compensated: slot.compensated,
                }
            })
            .collect()
    }

    /// One report per step, in spec order.
    pub(super) fn reports(&self, wf: &Workflow) -> Vec<StepReport> {
        wf.steps
            .iter()
            .zip(&self.slots)
            .map(|(s, slot)| StepReport {
                name: s.spec.name.clone(),
                status: match slot.state {
                    State::Pending => StepStatus::Skipped,
                    State::Running | State::Cancelled => StepStatus::Cancelled,
                    State::Succeeded => StepStatus::Succeeded,
                    State::Failed => StepStatus::Failed,
                    State::Undone => StepStatus::Undone,
                },
                attempts: slot.attempts,
                error: slot.error.clone(),
                compensated: slot.compensated,
                resumed: slot.resumed,
            })
            .collect()
    }

    /// Resolves step `i`'s arguments.
    pub(super) fn arguments(&self, run: &Run, i: usize) -> Result<Value, StepError> {
        let step = &run.wf.steps[i];
        let mut args = Map::new();
        for (name, source) in &step.spec.arguments {
            let v = match source {
                Source::Value(v) => v.clone(),
                Source::Input { name: input, path } => {
                    let root = run.inputs.get(input).ok_or_else(|| {
                        StepError::fatal(format!("argument {name:?}: input {input:?} is missing"))
                    })?;
                    follow(root, path)
                        .map_err(|e| {
                            StepError::fatal(format!("argument {name:?}: input {input:?} {e}"))
                        })?
                        .clone()
                }
                Source::Result { step: from, path } => {
                    let root = self.result_of(&run.wf, from).ok_or_else(|| {
                        StepError::fatal(format!("argument {name:?}: step {from:?} has no result"))
                    })?;
                    follow(root, path)
                        .map_err(|e| {
                            StepError::fatal(format!(
                                "argument {name:?}: result of step {from:?} {e}"
                            ))
                        })?
                        .clone()
                }
            };
            args.insert(name.clone(), v);
        }
        Ok(Value::Object(args))
    }

    /// The result of the step named `step`, once it has one.
    fn result_of(&self, wf: &Workflow, step: &str) -> Option<&Value> {
        let &i = wf.index.get(step)?;
        self.slots[i].result.as_ref()
    }

    /// The run's `return` value (every step's result, by name, when the spec has none).
    pub(super) fn return_value(&self, wf: &Workflow) -> Result<Value, String> {
        match &wf.spec.returns {
            Some(Source::Result { step, path }) => {
                let root = self
                    .result_of(wf, step)
                    .ok_or_else(|| format!("return: step {step:?} has no result"))?;
                follow(root, path)
                    .cloned()
                    .map_err(|e| format!("return: result of step {step:?} {e}"))
            }
            Some(other) => Err(format!("return: {other} is not a step result")),
            None => Ok(Value::Object(
                wf.steps
                    .iter()
                    .zip(&self.slots)
                    .map(|(s, slot)| {
                        (
                            s.spec.name.clone(),
                            slot.result.clone().unwrap_or(Value::Null),
                        )
                    })
                    .collect(),
            )),
        }
    }
}
