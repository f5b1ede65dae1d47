//! The scheduler: [`execute`] runs a workflow (or sub-workflow) from its first journal entry to
//! its last; in between, a [`Scheduler`] starts steps as their arguments become ready, collects
//! their outcomes, and, from what it hears ([`Stops`]), decides how the run ends: succeeded,
//! failed (and undone) or suspended.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::attempt::{Outcome, StepRun};
use super::cancel::{Cancel, Stop, sleep_until};
use super::run::{Ledger, Run, RunParams, State, millis};
use super::transition::Change;
use super::undo::{Rollback, Undo};
use super::{BoxFuture, Env, SuspendMode};
use crate::error::{JournalError, RunError, StepError};
use crate::journal::{CompletedStep, JournalEntry, completed_steps};
use crate::middleware::RunContext;
use crate::report::{RunEvent, RunReport, RunStatus, SuspendReason, Suspension};
use crate::validate::Workflow;

/// Runs a workflow (or sub-workflow) to the end. Returns the report and, for the parent of a
/// sub-workflow, what completed (so it can be undone as a unit later).
pub(super) fn execute(
    env: Arc<Env>,
    wf: Arc<Workflow>,
    inputs: Map<String, Value>,
    params: RunParams,
) -> BoxFuture<'static, (RunReport, Vec<CompletedStep>)> {
    Box::pin(async move {
        let started = Instant::now();
        let mut rctx = RunContext {
            run_id: params.run_id,
            workflow: wf.spec.name.clone(),
            fencing_token: params.fencing_token,
            metadata: params.metadata,
            span: params.parent_span,
        };
        for m in &env.middleware {
            m.run_started(&mut rctx).await;
        }
        env.emit(RunEvent::RunStarted {
            run_id: rctx.run_id.clone(),
            workflow: rctx.workflow.clone(),
        });
        let run = Run::new(
            env.clone(),
            wf,
            &rctx,
            params.prefix,
            Value::Object(inputs.clone()),
        );
        let span = run.span.clone();
        let (mut report, completed) = schedule(run, inputs, params.cancel, started)
            .instrument(span)
            .await;
        record_end(&env, &mut report).await;
        if let Some(s) = &report.suspended {
            for m in &env.middleware {
                m.on_run_suspended(&rctx, s).await;
            }
            env.emit(RunEvent::RunSuspended {
                run_id: report.run_id.clone(),
                reason: s.reason.clone(),
                step: s.step.clone(),
            });
        }
        for m in &env.middleware {
            m.run_finished(&rctx, &report).await;
        }
        env.emit(RunEvent::RunFinished {
            run_id: report.run_id.clone(),
            status: report.status,
            elapsed_ms: millis(report.elapsed),
        });
        (report, completed)
    })
}

/// Records the run's last entry: `RunFinished`, or `RunSuspended`; none once the journal
/// failed. A journal that fails here suspends the run too: a fenced run is finished by whoever
/// holds it now, an unreachable journal's by this holder later.
async fn record_end(env: &Env, report: &mut RunReport) {
    let last = match &report.suspended {
        Some(s) if s.reason.is_journal() => return,
        Some(s) => JournalEntry::RunSuspended {
            reason: s.reason.clone(),
            step: s.step.clone(),
        },
        None => JournalEntry::RunFinished {
            status: report.status,
        },
    };
    if let Err(e) = env.journal.append(&report.run_id, last).await {
        tracing::warn!(run_id = %report.run_id, error = %e, "could not record the end of the run");
        report.status = RunStatus::Suspended;
        report.result = Value::Null;
        report.suspended = Some(journal_suspension(&e, None));
        report.error = Some(e.into());
    }
}

/// The suspension a failed journal calls for; `step` is the step whose entry failed, if any.
pub(super) fn journal_suspension(error: &JournalError, step: Option<String>) -> Suspension {
    Suspension {
        reason: SuspendReason::journal(error),
        step,
    }
}

/// A suspension the caller asked for.
pub(super) fn requested() -> Suspension {
    Suspension {
        reason: SuspendReason::Requested,
        step: None,
    }
}

/// Checks the inputs, resumes from the journal, runs the steps, and on failure undoes what
/// completed.
async fn schedule(
    mut run: Run,
    inputs: Map<String, Value>,
    outer: Cancel,
    started: Instant,
) -> (RunReport, Vec<CompletedStep>) {
    let mut ledger = Ledger::new(run.wf.steps.len());
    let mut stops = Stops::default();
    match run.wf.check_inputs(&inputs) {
        Err(problems) => stops.failure = Some(RunError::InvalidInputs(problems)),
        Ok(()) => resume(&mut run, inputs, &mut ledger, &mut stops).await,
    }
    let mut scheduler = Scheduler::new(Arc::new(run), ledger, stops, started);
    if !scheduler.stops.ending() {
        scheduler.drive(&outer).await;
    }
    scheduler.close(started).await
}

/// Resume: what the journal says is done is not run again. Anything else in it (failures,
/// cancels, an earlier `RunSuspended`) changes nothing. A journal that has nothing for the run
/// gets its `RunStarted`.
async fn resume(run: &mut Run, inputs: Map<String, Value>, ledger: &mut Ledger, stops: &mut Stops) {
    match run.env.journal.entries(&run.run_id).await {
        Err(e) if e.is_fenced() => stops.failure = Some(e.into()),
        // Nothing has run: suspend, to be resumed once the journal is back.
        Err(e) => stops.journal_failed(journal_suspension(&e, None), e),
        Ok(entries) if entries.is_empty() => {
            let first = JournalEntry::RunStarted {
                workflow: run.wf.spec.name.clone(),
                inputs: Value::Object(inputs),
            };
            if let Err(e) = run.record(first).await {
                stops.journal_failed(journal_suspension(&e, None), e);
            }
        }
        Ok(entries) => {
            let wf = run.wf.clone();
            // The first wait of each step that waited: its clock.
            for entry in &entries {
                if let JournalEntry::RunSuspended {
                    reason: SuspendReason::Wait { since, .. },
                    step: Some(step),
                } = entry
                {
                    run.waited.entry(step.clone()).or_insert(*since);
                }
            }
            for c in completed_steps(&entries) {
                if let Some(&i) = wf.index.get(&c.step) {
                    ledger.resume(i, &c);
                    let spec = &wf.steps[i].spec;
                    let mut ctx = run.context(&c.step, &spec.run, 0, &spec.with);
                    // Only announced: nothing to record, so nothing can fail.
                    let _ = run.transition(&c.step, &mut ctx, Change::Resumed).await;
                }
                run.resumed.insert(c.step.clone(), c);
            }
        }
    }
}

/// How the run is stopping, if it is. A failed journal beats a failure, which beats a
/// suspension.
#[derive(Default)]
struct Stops {
    /// A journal append (or the first read) failed: stop everything at once, undo nothing.
    journal: Option<(Suspension, JournalError)>,
    /// The first error: running steps are cancelled, completed ones undone.
    failure: Option<RunError>,
    /// Why the run is being suspended, first reason wins. Ignored once the run fails.
    suspension: Option<Suspension>,
    /// Running steps were told to stop now (suspended `Now`, or the journal failed): a step
    /// failing after that no longer fails the run.
    halted: bool,
    /// Running steps were told to drain.
    draining: bool,
}

impl Stops {
    /// No step starts any more.
    fn stopping(&self) -> bool {
        self.ending() || self.suspension.is_some()
    }

    /// Only the running steps are waited for: the deadline and the caller's signals no longer
    /// count.
    fn ending(&self) -> bool {
        self.failure.is_some() || self.journal.is_some()
    }

    /// The caller's cancel and suspend signals still count.
    fn listening(&self) -> bool {
        !self.ending() && !self.halted
    }

    fn journal_failed(&mut self, suspension: Suspension, error: JournalError) {
        self.journal = Some((suspension, error));
    }
}

/// What the scheduler learns from a finished step task.
enum Settled {
    Ok,
    Failed(RunError),
    Suspended(Suspension),
    JournalFailed(Suspension, JournalError),
}

/// A step task that ended: its step's index and outcome, or why it has none.
type Joined = Result<(Id, (usize, Outcome)), JoinError>;

/// What woke the scheduler up.
enum Wake {
    Joined(Option<Joined>),
    Deadline,
    Caller(Stop),
    Drain,
}

/// The run's steps in motion: which are ready, which run, and how the run is stopping.
struct Scheduler {
    run: Arc<Run>,
    ledger: Ledger,
    stops: Stops,
    /// The steps each step's result feeds.
    dependents: Vec<Vec<usize>>,
    /// How many unfinished dependencies each step still waits for.
    waiting: Vec<usize>,
    ready: VecDeque<usize>,
    /// The run's `timeout`: when it runs out, and the limit for the error message.
    deadline: Option<(Instant, Duration)>,
    /// What the steps of this run see: `true` cancels them (their parts are undone), `Drain`
    /// and `Now` suspend them (nothing undone).
    cancel_tx: watch::Sender<bool>,
    suspend_tx: watch::Sender<Option<SuspendMode>>,
    step_cancel: Cancel,
    tasks: JoinSet<(usize, Outcome)>,
    /// Which step each task runs, for a task that panicked or was aborted.
    task_step: HashMap<Id, usize>,
}

impl Scheduler {
    fn new(run: Arc<Run>, ledger: Ledger, stops: Stops, started: Instant) -> Self {
        let wf = run.wf.clone();
        let n = wf.steps.len();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut waiting: Vec<usize> = vec![0; n];
        for (i, s) in wf.steps.iter().enumerate() {
            for &d in &s.deps {
                dependents[d].push(i);
                if ledger.slots[d].state != State::Succeeded {
                    waiting[i] += 1;
                }
            }
        }
        let ready = wf
            .order
            .iter()
            .copied()
            .filter(|&i| waiting[i] == 0 && ledger.slots[i].state == State::Pending)
            .collect();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (suspend_tx, suspend_rx) = watch::channel(None::<SuspendMode>);
        Self {
            ledger,
            stops,
            dependents,
            waiting,
            ready,
            deadline: wf.spec.timeout.map(|t| (started + t, t)),
            cancel_tx,
            suspend_tx,
            step_cancel: Cancel::new(Some(cancel_rx), Some(suspend_rx)),
            tasks: JoinSet::new(),
            task_step: HashMap::new(),
            run,
        }
    }

    /// The loop: start ready steps and collect outcomes until no step runs. On the first
    /// failure it cancels what runs and waits for it; on a suspension it starts nothing more
    /// and lets (or, `Now` and with the journal failing, makes) the running steps stop.
    async fn drive(&mut self, outer: &Cancel) {
        loop {
            self.start_ready().await;
            if self.tasks.is_empty() {
                break;
            }
            match self.wait(outer).await {
                Wake::Joined(None) => break,
                Wake::Joined(Some(joined)) => self.settle(joined),
                Wake::Deadline => {
                    if let Some((_, limit)) = self.deadline {
                        self.fail(RunError::TimedOut(limit));
                    }
                }
                Wake::Caller(Stop::Cancelled) => self.fail(RunError::Cancelled),
                Wake::Caller(Stop::TimedOut(t)) => self.fail(RunError::TimedOut(t)),
                Wake::Caller(Stop::Halted) => {
                    self.stops.suspension.get_or_insert_with(requested);
                    self.halt();
                }
                Wake::Drain => {
                    self.stops.suspension.get_or_insert_with(requested);
                    self.stops.draining = true;
                    let _ = self.suspend_tx.send(Some(SuspendMode::Drain));
                }
            }
        }
    }

    /// Starts every ready step, until the run is stopping.
    async fn start_ready(&mut self) {
        while !self.stops.stopping()
            && let Some(i) = self.ready.pop_front()
        {
            let name = self.run.wf.steps[i].spec.name.clone();
            let prepared = match missing_capability(&self.run, i) {
                Some(capability) if self.run.env.suspend_on_missing_capability => {
                    self.stops.suspension = Some(Suspension {
                        reason: SuspendReason::MissingCapability { capability },
                        step: Some(self.run.display(&name)),
                    });
                    return;
                }
                Some(capability) => Err(StepError::fatal(format!(
                    "requires capability {capability:?}, which this node does not have"
                ))),
                None => self.ledger.arguments(&self.run, i),
            };
            match prepared {
                Ok(args) => self.spawn(i, args),
                Err(error) => return self.refuse(i, &name, error).await,
            }
        }
    }

    fn spawn(&mut self, i: usize, args: Value) {
        self.ledger.slots[i].state = State::Running;
        self.ledger.slots[i].arguments = args.clone();
        let run = self.run.clone();
        let cancel = self.step_cancel.clone();
        let handle = self.tasks.spawn(async move {
            let step = &run.wf.steps[i];
            let this = StepRun {
                run: &run,
                step,
                name: &step.spec.name,
                args: &args,
                cancel: &cancel,
                held: false,
            };
            (i, this.run_to_end().await)
        });
        self.task_step.insert(handle.id(), i);
    }

    /// Step `i` cannot start (an argument or a capability is missing): it fails, and so does
    /// the run.
    async fn refuse(&mut self, i: usize, name: &str, error: StepError) {
        let spec = &self.run.wf.steps[i].spec;
        let mut ctx = self.run.context(name, &spec.run, 0, &spec.with);
        // Only announced: nothing to record, so nothing can fail.
        let _ = self
            .run
            .transition(name, &mut ctx, Change::Refused { error: &error })
            .await;
        self.ledger.slots[i].state = State::Failed;
        self.ledger.slots[i].error = Some(error.message.clone());
        self.fail(RunError::StepFailed {
            step: self.run.display(name),
            attempts: 0,
            error,
        });
    }

    /// Waits for a step to finish or a signal to come. Once failing or with the journal
    /// failing, only for the steps to stop.
    async fn wait(&mut self, outer: &Cancel) -> Wake {
        let ending = self.stops.ending();
        let listening = self.stops.listening();
        let draining = self.stops.draining;
        tokio::select! {
            next = self.tasks.join_next_with_id() => Wake::Joined(next),
            () = sleep_until(self.deadline.map(|d| d.0)), if !ending => Wake::Deadline,
            stop = outer.wait(), if listening => Wake::Caller(stop),
            () = outer.wait_suspend(), if listening && !draining => Wake::Drain,
        }
    }

    /// The run fails: cancel what runs.
    fn fail(&mut self, error: RunError) {
        self.stops.failure = Some(error);
        let _ = self.cancel_tx.send(true);
    }

    /// Stop the running steps now, undoing nothing.
    fn halt(&mut self) {
        self.stops.halted = true;
        let _ = self.suspend_tx.send(Some(SuspendMode::Now));
    }

    /// Takes in a finished step task, and makes the steps it unblocks ready.
    fn settle(&mut self, joined: Joined) {
        let before = self.ledger.completion.len();
        match self.record_outcome(joined) {
            Settled::Ok => {}
            // While draining, a failure still fails the run; once stopping without waiting
            // (`Now`, the journal failing), nothing is undone any more.
            Settled::Failed(err) => {
                if !self.stops.ending() && !self.stops.halted {
                    self.fail(err);
                }
            }
            Settled::Suspended(s) => {
                self.stops.suspension.get_or_insert(s);
            }
            Settled::JournalFailed(s, e) => {
                if self.stops.journal.is_none() {
                    self.stops.journal_failed(s, e);
                    self.halt();
                }
            }
        }
        if let Some(&i) = self.ledger.completion.get(before) {
            for &j in &self.dependents[i] {
                self.waiting[j] = self.waiting[j].saturating_sub(1);
                if self.waiting[j] == 0 && self.ledger.slots[j].state == State::Pending {
                    self.ready.push_back(j);
                }
            }
        }
    }

    /// Records a finished task in the ledger and says what it means for the run.
    fn record_outcome(&mut self, joined: Joined) -> Settled {
        let (i, outcome) = match joined {
            Ok((_, finished)) => finished,
            Err(e) => return self.record_lost_task(&e),
        };
        match outcome {
            Outcome::Done(done) => {
                self.ledger.succeed(i, done);
                Settled::Ok
            }
            Outcome::Failed { error, attempts } => {
                let message = match &error {
                    RunError::StepFailed { error, .. } => error.message.clone(),
                    other => other.to_string(),
                };
                self.ledger.end(i, State::Failed, attempts, Some(message));
                Settled::Failed(error)
            }
            Outcome::Cancelled { attempts } => {
                self.ledger.end(i, State::Cancelled, attempts, None);
                Settled::Ok
            }
            Outcome::Suspended {
                suspension,
                attempts,
            } => {
                self.ledger.end(i, State::Cancelled, attempts, None);
                Settled::Suspended(suspension)
            }
            Outcome::JournalFailed { error, attempts } => {
                self.ledger
                    .end(i, State::Cancelled, attempts, Some(error.to_string()));
                let name = self.run.display(&self.run.wf.steps[i].spec.name);
                Settled::JournalFailed(journal_suspension(&error, Some(name)), error)
            }
        }
    }

    /// A task that ended without an outcome: aborted, or panicked.
    fn record_lost_task(&mut self, e: &JoinError) -> Settled {
        let Some(i) = self.task_step.get(&e.id()).copied() else {
            return Settled::Ok;
        };
        let slot = &mut self.ledger.slots[i];
        if e.is_cancelled() {
            slot.state = State::Cancelled;
            return Settled::Ok;
        }
        slot.state = State::Failed;
        slot.error = Some("step panicked".into());
        Settled::Failed(RunError::StepFailed {
            step: self.run.display(&self.run.wf.steps[i].spec.name),
            attempts: slot.attempts.max(1),
            error: StepError::fatal("step panicked"),
        })
    }

    /// After the loop: the `return` value, the rollback of a failed run, and the report.
    async fn close(mut self, started: Instant) -> (RunReport, Vec<CompletedStep>) {
        let wf = self.run.wf.clone();
        // Asked to drain, but every step finished meanwhile: nothing is left to resume.
        if self.stops.suspension.is_some() && self.ledger.all_succeeded() {
            self.stops.suspension = None;
        }
        // A return that cannot be computed fails a run whose steps all succeeded.
        let mut result = Value::Null;
        if !self.stops.stopping() {
            match self.ledger.return_value(&wf) {
                Ok(v) => result = v,
                Err(e) => self.stops.failure = Some(RunError::Return(e)),
            }
        }
        let undone = if self.stops.failure.is_some() && self.stops.journal.is_none() {
            self.roll_back().await
        } else {
            Vec::new()
        };
        let completed = self.ledger.completed(&wf);
        let steps = self.ledger.reports(&wf);
        let (status, error, suspended) = match (
            self.stops.journal,
            self.stops.failure,
            self.stops.suspension,
        ) {
            (Some((s, e)), _, _) => (RunStatus::Suspended, Some(e.into()), Some(s)),
            (None, Some(e), _) => (RunStatus::Failed, Some(e), None),
            (None, None, Some(s)) => (RunStatus::Suspended, None, Some(s)),
            (None, None, None) => (RunStatus::Succeeded, None, None),
        };
        if status != RunStatus::Succeeded {
            result = Value::Null;
        }
        let report = RunReport {
            run_id: self.run.run_id.clone(),
            status,
            result,
            error,
            steps,
            undone,
            suspended,
            elapsed: started.elapsed(),
        };
        (report, completed)
    }

    /// The run failed and what ran has stopped: roll back what completed, in reverse
    /// completion order, until the journal fails. Returns the steps rolled back.
    async fn roll_back(&mut self) -> Vec<String> {
        let mut undone = Vec::new();
        let order: Vec<usize> = self.ledger.completion.iter().rev().copied().collect();
        for i in order {
            let slot = &self.ledger.slots[i];
            if slot.compensated || slot.state != State::Succeeded {
                continue;
            }
            let step = &self.run.wf.steps[i];
            let name = &step.spec.name;
            let result = slot.result.clone().unwrap_or(Value::Null);
            let rollback = Rollback {
                step,
                name,
                args: &slot.arguments,
                result: &result,
                plan: &slot.undo,
            };
            let outcome = rollback.run(&self.run).await;
            let slot = &mut self.ledger.slots[i];
            match outcome {
                Undo::Done => {
                    slot.state = State::Undone;
                    undone.push(name.clone());
                }
                Undo::Failed(e) => slot.error = Some(format!("undo failed: {e}")),
                Undo::NotUndoable => {}
                Undo::JournalFailed(e) => {
                    // Rolled back (in part, for a map or sub-workflow), but not recorded.
                    slot.state = State::Undone;
                    slot.error = Some(format!("undo not recorded: {e}"));
                    undone.push(name.clone());
                    let suspension = journal_suspension(&e, Some(self.run.display(name)));
                    self.stops.journal_failed(suspension, e);
                    break;
                }
            }
        }
        undone
    }
}

/// The first of step `i`'s `requires` that this node lacks, when the node's capabilities are
/// set.
fn missing_capability(run: &Run, i: usize) -> Option<String> {
    let caps = run.env.capabilities.as_ref()?;
    run.wf.steps[i]
        .spec
        .requires
        .iter()
        .find(|r| !caps.contains(*r))
        .cloned()
}
