//! Runs a validated [`Workflow`]: schedules steps as their arguments become ready, retries,
//! compensates, and on failure cancels what is in flight, waits for it, and undoes what
//! completed in reverse completion order.
//!
//! One task per running step; the run's scheduler only waits for outcomes and starts steps. A
//! semaphore with `max_concurrency` permits bounds attempts in flight (an `async: false` step
//! takes every permit). Cancellation is a watch channel: plain steps are dropped (which kills an
//! `exec` child), while `map` and `workflow` steps get the signal so they can undo their own
//! completed parts before returning.
//!
//! A run can end a third way, **suspended**: it stops without undoing or compensating anything,
//! so that it resumes later from the journal (the steps that succeeded are not run again). Three
//! things suspend a run:
//! - a request through [`RunOptions::suspend`]: [`SuspendMode::Drain`] stops starting steps and
//!   lets the running ones finish; [`SuspendMode::Now`] stops the running ones as a cancel does
//!   (an `exec` child is killed) but undoes nothing. Both reach into running `map` and
//!   `workflow` steps, which drain or stop their own parts the same way;
//! - a ready step whose `requires` this node lacks, with
//!   [`Reactor::suspend_on_missing_capability`]: like a drain, and a step that fails for good
//!   while the others finish still fails the run (and undoes it) as usual;
//! - a journal append that fails (the run is fenced: another holder owns it): running steps are
//!   stopped at once, and nothing more is run, undone, compensated, or (when it can be helped)
//!   written.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{JournalError, RunError, StepError};
use crate::journal::{CompletedStep, InMemoryJournal, Journal, JournalEntry, completed_steps};
use crate::middleware::{Middleware, RunContext};
use crate::report::{
    RunEvent, RunReport, RunStatus, StepReport, StepStatus, SuspendReason, Suspension,
};
use crate::spec::{Source, follow};
use crate::step::{Compensation, StepContext};
use crate::validate::{ResolvedAction, ResolvedStep, Runner, Workflow};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type EventFn = Arc<dyn Fn(&RunEvent) + Send + Sync>;

/// Permits when `max_concurrency` is not set: effectively unlimited, and small enough for
/// `acquire_many` (an `async: false` step takes them all).
const UNLIMITED_PERMITS: u32 = 1 << 20;

/// What runs share: middleware, journal, event sink. Sub-workflows use the same.
#[derive(Clone)]
struct Env {
    middleware: Vec<Arc<dyn Middleware>>,
    journal: Arc<dyn Journal>,
    events: Option<EventFn>,
    /// Seeds each step's backoff RNG (mixed with the step's name) so retries replay exactly.
    seed: Option<u64>,
    /// When set, steps whose `requires` are not all in here fail instead of running.
    capabilities: Option<BTreeSet<String>>,
    /// A step lacking a capability suspends the run instead of failing it.
    suspend_on_missing_capability: bool,
}

impl Env {
    fn emit(&self, event: RunEvent) {
        if let Some(f) = &self.events {
            f(&event);
        }
    }
}

/// Runs workflows. Build one per node (or per CLI invocation) and reuse it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use swarm_reactor::{Reactor, Registry, RunOptions, TracingMiddleware, load_file};
///
/// let workflow = Arc::new(load_file("cluster/workflows/parallel-analysis.yaml", &Registry::builtin())?);
/// let reactor = Reactor::new()
///     .with_middleware(TracingMiddleware)
///     .on_event(|e| eprintln!("{e}"));
/// let inputs = serde_json::Map::from_iter([("dataset".to_owned(), serde_json::json!("sales"))]);
/// let report = reactor.run(workflow, inputs, RunOptions::default()).await;
/// println!("{}", report.to_json());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Reactor {
    env: Env,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("middleware", &self.env.middleware.len())
            .field("seed", &self.env.seed)
            .finish()
    }
}

impl Default for Reactor {
    fn default() -> Self {
        Self::new()
    }
}

/// How a requested suspension treats the steps that are running (see [`RunOptions::suspend`]).
/// Neither mode undoes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspendMode {
    /// Start no more steps, let the running ones finish (and be journaled), then suspend.
    Drain,
    /// Stop the running steps now, as a cancel does (an `exec` child is killed), then suspend.
    Now,
}

/// Per-run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Identifies the run in the journal; reuse it to resume. A fresh UUID when `None`.
    pub run_id: Option<String>,
    /// The claim's fencing token, handed to every step.
    pub fencing_token: Option<u64>,
    /// Initial metadata, visible to middleware and steps.
    pub metadata: BTreeMap<String, Value>,
    /// Set to `true` to cancel the run (in-flight steps are stopped, completed ones undone).
    pub cancel: Option<watch::Receiver<bool>>,
    /// Set to `Some(mode)` to suspend the run: it ends [`RunStatus::Suspended`] with
    /// [`SuspendReason::Requested`], nothing undone, ready to be resumed with the same run id.
    /// `Drain` may be escalated to `Now` by sending again. A cancel sent while draining wins,
    /// and so does a step failing for good while draining; a run whose steps all finish while
    /// draining succeeds.
    ///
    /// ```
    /// # use swarm_reactor::{RunOptions, SuspendMode};
    /// let (suspend, rx) = tokio::sync::watch::channel(None);
    /// let options = RunOptions { suspend: Some(rx), ..RunOptions::default() };
    /// // later, from another task:
    /// suspend.send(Some(SuspendMode::Drain)).ok();
    /// # drop(options);
    /// ```
    pub suspend: Option<watch::Receiver<Option<SuspendMode>>>,
}

impl Reactor {
    /// No middleware, an in-memory journal, jitter from the OS RNG.
    pub fn new() -> Self {
        Self {
            env: Env {
                middleware: Vec::new(),
                journal: Arc::new(InMemoryJournal::new()),
                events: None,
                seed: None,
                capabilities: None,
                suspend_on_missing_capability: false,
            },
        }
    }

    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.env.journal = journal;
        self
    }

    /// Adds middleware; hooks run in the order added.
    pub fn with_middleware(self, middleware: impl Middleware) -> Self {
        self.with_middleware_arc(Arc::new(middleware))
    }

    pub fn with_middleware_arc(mut self, middleware: Arc<dyn Middleware>) -> Self {
        self.env.middleware.push(middleware);
        self
    }

    /// Calls `f` for every [`RunEvent`] as it happens (keep it quick: it runs inline).
    pub fn on_event(mut self, f: impl Fn(&RunEvent) + Send + Sync + 'static) -> Self {
        self.env.events = Some(Arc::new(f));
        self
    }

    /// Makes backoff jitter reproducible.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.env.seed = Some(seed);
        self
    }

    /// The capabilities of this node; steps whose `requires` are not all here fail (or suspend
    /// the run, with [`Reactor::suspend_on_missing_capability`]).
    pub fn with_capabilities(mut self, caps: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.env.capabilities = Some(caps.into_iter().map(Into::into).collect());
        self
    }

    /// With `true`, a step that becomes ready while lacking a capability (see
    /// [`Reactor::with_capabilities`]) does not fail the run: the run starts no more steps, lets
    /// the running ones finish, undoes nothing, records [`JournalEntry::RunSuspended`] and ends
    /// [`RunStatus::Suspended`] with [`SuspendReason::MissingCapability`] naming the capability
    /// and the step, so that a node that has it resumes the run. A running step that fails for
    /// good meanwhile still fails the run, which is undone as usual. Default `false`: the step
    /// fails, and with it the run.
    pub fn suspend_on_missing_capability(mut self, on: bool) -> Self {
        self.env.suspend_on_missing_capability = on;
        self
    }

    /// Runs `workflow` to the end and reports what happened. Never panics and never returns
    /// early: a failed run has already been undone when this returns, and every step of a
    /// suspended run has stopped.
    pub async fn run(
        &self,
        workflow: Arc<Workflow>,
        inputs: Map<String, Value>,
        options: RunOptions,
    ) -> RunReport {
        let params = RunParams {
            run_id: options
                .run_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            prefix: String::new(),
            fencing_token: options.fencing_token,
            metadata: options.metadata,
            parent_span: tracing::Span::current(),
            cancel: Cancel {
                rx: options.cancel,
                suspend: options.suspend,
                deadline: None,
                timeout: None,
            },
        };
        execute(Arc::new(self.env.clone()), workflow, inputs, params)
            .await
            .0
    }
}

/// Cancellation as seen by one step: the run's cancel and suspend signals and, for `map` and
/// `workflow` steps, the attempt's deadline.
#[derive(Clone)]
struct Cancel {
    rx: Option<watch::Receiver<bool>>,
    /// `Drain`: start nothing new; `Now`: stop without undoing anything.
    suspend: Option<watch::Receiver<Option<SuspendMode>>>,
    deadline: Option<Instant>,
    /// The limit behind `deadline`, for the error message.
    timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Cancelled,
    TimedOut(Duration),
    /// Suspended `Now`: stop, and undo or compensate nothing.
    Halted,
}

impl Cancel {
    fn from(rx: &watch::Receiver<bool>, suspend: &watch::Receiver<Option<SuspendMode>>) -> Self {
        Self {
            rx: Some(rx.clone()),
            suspend: Some(suspend.clone()),
            deadline: None,
            timeout: None,
        }
    }

    /// The suspension asked for, if any.
    fn suspending(&self) -> Option<SuspendMode> {
        self.suspend.as_ref().and_then(|rx| *rx.borrow())
    }

    fn halted(&self) -> bool {
        self.suspending() == Some(SuspendMode::Now)
    }

    /// Resolves once a suspension (either mode) is asked for; never if none can be.
    async fn wait_suspend(&self) {
        if let Some(rx) = &self.suspend {
            let mut rx = rx.clone();
            if rx.wait_for(Option::is_some).await.is_ok() {
                return;
            }
        }
        pending::<()>().await;
    }

    /// Resolves once a suspension `Now` is asked for; never if none can be.
    async fn wait_halt(&self) {
        if let Some(rx) = &self.suspend {
            let mut rx = rx.clone();
            if rx.wait_for(|m| *m == Some(SuspendMode::Now)).await.is_ok() {
                return;
            }
        }
        pending::<()>().await;
    }

    fn within(&self, timeout: Option<Duration>) -> Self {
        let Some(t) = timeout else {
            return self.clone();
        };
        let d = Instant::now() + t;
        match self.deadline {
            Some(existing) if existing <= d => self.clone(),
            _ => Self {
                rx: self.rx.clone(),
                suspend: self.suspend.clone(),
                deadline: Some(d),
                timeout: Some(t),
            },
        }
    }

    fn now(&self) -> Option<Stop> {
        if self.rx.as_ref().is_some_and(|rx| *rx.borrow()) {
            return Some(Stop::Cancelled);
        }
        if self.halted() {
            return Some(Stop::Halted);
        }
        match (self.deadline, self.timeout) {
            (Some(d), Some(t)) if Instant::now() >= d => Some(Stop::TimedOut(t)),
            _ => None,
        }
    }

    async fn wait(&self) -> Stop {
        let signal = async {
            if let Some(rx) = &self.rx {
                let mut rx = rx.clone();
                if rx.wait_for(|c| *c).await.is_ok() {
                    return;
                }
            }
            // No sender any more means nobody can cancel.
            pending::<()>().await;
        };
        let timer = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => pending::<()>().await,
            }
        };
        tokio::select! {
            () = signal => Stop::Cancelled,
            () = self.wait_halt() => Stop::Halted,
            () = timer => Stop::TimedOut(self.timeout.unwrap_or_default()),
        }
    }
}

struct RunParams {
    run_id: String,
    /// Prepended to step names in events and contexts (`parent/` inside a sub-workflow).
    prefix: String,
    fencing_token: Option<u64>,
    metadata: BTreeMap<String, Value>,
    parent_span: tracing::Span,
    cancel: Cancel,
}

/// One run (or sub-run) in progress, shared with its step tasks.
struct Run {
    env: Arc<Env>,
    wf: Arc<Workflow>,
    run_id: String,
    prefix: String,
    fencing_token: Option<u64>,
    metadata: BTreeMap<String, Value>,
    span: tracing::Span,
    permits: Arc<Semaphore>,
    total_permits: u32,
    inputs: Value,
    /// Everything the journal says is done, including map elements (`m[2]`).
    resumed: HashMap<String, CompletedStep>,
}

impl Run {
    fn display(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn context(&self, name: &str, kind: &str, attempt: u32, with: &Value) -> StepContext {
        StepContext {
            run_id: self.run_id.clone(),
            step: self.display(name),
            kind: kind.to_owned(),
            attempt,
            fencing_token: self.fencing_token,
            with: Arc::new(with.clone()),
            metadata: self.metadata.clone(),
            span: self.span.clone(),
        }
    }

    async fn record(&self, entry: JournalEntry) -> Result<(), JournalError> {
        self.env.journal.append(&self.run_id, entry).await
    }

    fn rng(&self, name: &str) -> StdRng {
        match self.env.seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ fnv1a(self.display(name).as_bytes())),
            None => StdRng::from_os_rng(),
        }
    }

    /// A run for a sub-workflow step, used to undo it after the fact.
    fn child(&self, wf: Arc<Workflow>, run_id: String, name: &str) -> Run {
        let total = permits_for(&wf);
        Run {
            env: self.env.clone(),
            run_id,
            prefix: format!("{}{name}/", self.prefix),
            fencing_token: self.fencing_token,
            metadata: self.metadata.clone(),
            span: self.span.clone(),
            permits: Arc::new(Semaphore::new(total as usize)),
            total_permits: total,
            inputs: Value::Null,
            resumed: HashMap::new(),
            wf,
        }
    }

    async fn acquire(&self, exclusive: bool) -> Option<OwnedSemaphorePermit> {
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a completed step is rolled back.
#[derive(Debug, Clone)]
enum UndoPlan {
    /// From its arguments and result alone (plain steps; anything resumed from the journal).
    Record,
    /// A map's elements as (journal name, arguments, result), in completion order.
    Map(Vec<(String, Value, Value)>),
    /// A sub-workflow's completed steps, in completion order.
    Sub { completed: Vec<CompletedStep> },
}

/// How one step (with all its attempts) ended.
enum Outcome {
    Done {
        result: Value,
        attempts: u32,
        compensated: bool,
        undo: UndoPlan,
    },
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
    /// The journal refused an append: stop everything, undo nothing.
    Fenced {
        error: JournalError,
        attempts: u32,
    },
}

/// How one attempt ended.
enum Attempt {
    Finished(Result<(Value, UndoPlan), StepError>),
    Cancelled,
    Suspended(Suspension),
    Fenced(JournalError),
}

/// What the scheduler learns from a finished step task.
enum Settled {
    Ok,
    Failed(RunError),
    Suspended(Suspension),
    Fenced(Suspension, JournalError),
}

fn fenced(error: &JournalError, step: Option<String>) -> Suspension {
    Suspension {
        reason: SuspendReason::journal(error),
        step,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Undone,
}

struct Slot {
    state: State,
    attempts: u32,
    arguments: Value,
    result: Option<Value>,
    error: Option<String>,
    compensated: bool,
    resumed: bool,
    undo: UndoPlan,
}

/// Runs a workflow (or sub-workflow) to the end. Returns the report and, for the parent of a
/// sub-workflow, what completed (so it can be undone as a unit later).
fn execute(
    env: Arc<Env>,
    wf: Arc<Workflow>,
    inputs: Map<String, Value>,
    params: RunParams,
) -> BoxFuture<'static, (RunReport, Vec<CompletedStep>)> {
    Box::pin(async move {
        let started = Instant::now();
        let mut rctx = RunContext {
            run_id: params.run_id.clone(),
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
        let total = permits_for(&wf);
        let run = Run {
            env: env.clone(),
            wf: wf.clone(),
            run_id: rctx.run_id.clone(),
            prefix: params.prefix,
            fencing_token: rctx.fencing_token,
            metadata: rctx.metadata.clone(),
            span: rctx.span.clone(),
            permits: Arc::new(Semaphore::new(total as usize)),
            total_permits: total,
            inputs: Value::Object(inputs.clone()),
            resumed: HashMap::new(),
        };
        let span = run.span.clone();
        let (mut report, completed) = schedule(run, inputs, params.cancel, started)
            .instrument(span)
            .await;
        // The last entry: `RunFinished`, or `RunSuspended` (none once fenced). A refused append
        // fences the run here too: whoever holds it now finishes it.
        let last = match &report.suspended {
            Some(s) if s.reason.is_journal() => None,
            Some(s) => Some(JournalEntry::RunSuspended {
                reason: s.reason.clone(),
                step: s.step.clone(),
            }),
            None => Some(JournalEntry::RunFinished {
                status: report.status,
            }),
        };
        if let Some(entry) = last
            && let Err(e) = env.journal.append(&report.run_id, entry).await
        {
            tracing::warn!(run_id = %report.run_id, error = %e, "could not record the end of the run");
            report.status = RunStatus::Suspended;
            report.result = Value::Null;
            report.suspended = Some(fenced(&e, None));
            report.error = Some(e.into());
        }
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

/// The scheduler loop: start ready steps and collect outcomes. On the first failure it cancels
/// what runs, waits for it and undoes what completed; on a suspension it starts nothing more,
/// lets (or, `Now` and fenced, makes) the running steps stop, and undoes nothing.
async fn schedule(
    mut run: Run,
    inputs: Map<String, Value>,
    outer: Cancel,
    started: Instant,
) -> (RunReport, Vec<CompletedStep>) {
    let wf = run.wf.clone();
    let n = wf.steps.len();
    let mut slots: Vec<Slot> = (0..n)
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
    let mut completion: Vec<usize> = Vec::new();
    let mut first_error: Option<RunError> = None;
    // Why the run is being suspended, first reason wins. Ignored once the run fails.
    let mut suspension: Option<Suspension> = None;
    // A journal append was refused: stop everything, undo nothing. Beats everything else.
    let mut fence: Option<(Suspension, JournalError)> = None;

    if let Err(problems) = wf.check_inputs(&inputs) {
        first_error = Some(RunError::InvalidInputs(problems));
    }

    // Resume: what the journal says is done is not run again. Anything else in it (failures,
    // cancels, an earlier `RunSuspended`) changes nothing.
    if first_error.is_none() {
        match run.env.journal.entries(&run.run_id).await {
            Err(e) if e.is_fenced() => first_error = Some(e.into()),
            // Nothing has run: suspend, to be resumed once the journal is back.
            Err(e) => fence = Some((fenced(&e, None), e)),
            Ok(entries) if entries.is_empty() => {
                if let Err(e) = run
                    .record(JournalEntry::RunStarted {
                        workflow: wf.spec.name.clone(),
                        inputs: Value::Object(inputs.clone()),
                    })
                    .await
                {
                    fence = Some((fenced(&e, None), e));
                }
            }
            Ok(entries) => {
                for c in completed_steps(&entries) {
                    if let Some(&i) = wf.index.get(&c.step) {
                        let slot = &mut slots[i];
                        slot.state = State::Succeeded;
                        slot.arguments = c.arguments.clone();
                        slot.result = Some(c.result.clone());
                        slot.compensated = c.compensated;
                        slot.resumed = true;
                        completion.push(i);
                        run.env.emit(RunEvent::StepResumed {
                            run_id: run.run_id.clone(),
                            step: run.display(&c.step),
                        });
                    }
                    run.resumed.insert(c.step.clone(), c);
                }
            }
        }
    }
    let run = Arc::new(run);

    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = vec![0; n];
    for (i, s) in wf.steps.iter().enumerate() {
        for &d in &s.deps {
            dependents[d].push(i);
            if slots[d].state != State::Succeeded {
                waiting[i] += 1;
            }
        }
    }
    let mut ready: VecDeque<usize> = wf
        .order
        .iter()
        .copied()
        .filter(|&i| waiting[i] == 0 && slots[i].state == State::Pending)
        .collect();

    // What the steps of this run see: `true` cancels them (their parts are undone), `Drain`
    // and `Now` suspend them (nothing undone).
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (suspend_tx, suspend_rx) = watch::channel(None::<SuspendMode>);
    let step_cancel = Cancel::from(&cancel_rx, &suspend_rx);
    let deadline = wf.spec.timeout.map(|t| (started + t, t));
    let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
    let mut task_step: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut halted = false;
    let mut drain_sent = false;

    if first_error.is_none() && fence.is_none() {
        loop {
            let stopping = first_error.is_some() || fence.is_some() || suspension.is_some();
            while !stopping && let Some(i) = ready.pop_front() {
                let name = wf.steps[i].spec.name.clone();
                let prepared = match missing_capability(&run, i) {
                    Some(capability) if run.env.suspend_on_missing_capability => {
                        suspension = Some(Suspension {
                            reason: SuspendReason::MissingCapability { capability },
                            step: Some(run.display(&name)),
                        });
                        break;
                    }
                    Some(capability) => Err(StepError::fatal(format!(
                        "requires capability {capability:?}, which this node does not have"
                    ))),
                    None => prepare(&run, i, &slots),
                };
                match prepared {
                    Ok(args) => {
                        slots[i].state = State::Running;
                        slots[i].arguments = args.clone();
                        let r = run.clone();
                        let c = step_cancel.clone();
                        let handle = tasks.spawn(async move {
                            let step = &r.wf.steps[i];
                            let name = &step.spec.name;
                            (i, run_step(&r, step, name, &args, &c, false).await)
                        });
                        task_step.insert(handle.id(), i);
                    }
                    Err(error) => {
                        run.env.emit(RunEvent::StepFailed {
                            run_id: run.run_id.clone(),
                            step: run.display(&name),
                            attempt: 0,
                            error: error.message.clone(),
                            will_retry: false,
                        });
                        slots[i].state = State::Failed;
                        slots[i].error = Some(error.message.clone());
                        first_error = Some(RunError::StepFailed {
                            step: run.display(&name),
                            attempts: 0,
                            error,
                        });
                        let _ = cancel_tx.send(true);
                        break;
                    }
                }
            }
            if tasks.is_empty() {
                break;
            }
            // Once failing or fenced, only wait for the steps to stop.
            let ending = first_error.is_some() || fence.is_some();
            let next = tokio::select! {
                next = tasks.join_next_with_id() => next,
                () = sleep_until(deadline.map(|d| d.0)), if !ending => {
                    first_error = deadline.map(|d| RunError::TimedOut(d.1));
                    let _ = cancel_tx.send(true);
                    continue;
                }
                stop = outer.wait(), if !ending && !halted => {
                    match stop {
                        Stop::Cancelled => {
                            first_error = Some(RunError::Cancelled);
                            let _ = cancel_tx.send(true);
                        }
                        Stop::TimedOut(t) => {
                            first_error = Some(RunError::TimedOut(t));
                            let _ = cancel_tx.send(true);
                        }
                        Stop::Halted => {
                            suspension.get_or_insert_with(requested);
                            halted = true;
                            let _ = suspend_tx.send(Some(SuspendMode::Now));
                        }
                    }
                    continue;
                }
                () = outer.wait_suspend(), if !ending && !halted && !drain_sent => {
                    suspension.get_or_insert_with(requested);
                    drain_sent = true;
                    let _ = suspend_tx.send(Some(SuspendMode::Drain));
                    continue;
                }
            };
            let Some(joined) = next else { break };
            let before = completion.len();
            match settle(&run, joined, &task_step, &mut slots, &mut completion) {
                Settled::Ok => {}
                // While draining, a failure still fails the run; once stopping without waiting
                // (`Now`, fenced), nothing is undone any more.
                Settled::Failed(err) => {
                    if first_error.is_none() && fence.is_none() && !halted {
                        first_error = Some(err);
                        let _ = cancel_tx.send(true);
                    }
                }
                Settled::Suspended(s) => {
                    suspension.get_or_insert(s);
                }
                Settled::Fenced(s, e) => {
                    if fence.is_none() {
                        fence = Some((s, e));
                        halted = true;
                        let _ = suspend_tx.send(Some(SuspendMode::Now));
                    }
                }
            }
            if completion.len() > before {
                let i = completion[before];
                for &j in &dependents[i] {
                    waiting[j] = waiting[j].saturating_sub(1);
                    if waiting[j] == 0 && slots[j].state == State::Pending {
                        ready.push_back(j);
                    }
                }
            }
        }
    }

    // Asked to drain, but every step finished meanwhile: nothing is left to resume.
    if suspension.is_some() && slots.iter().all(|s| s.state == State::Succeeded) {
        suspension = None;
    }

    // A return that cannot be computed fails a run whose steps all succeeded.
    let mut result = Value::Null;
    if first_error.is_none() && fence.is_none() && suspension.is_none() {
        match compute_return(&wf, &slots) {
            Ok(v) => result = v,
            Err(e) => first_error = Some(RunError::Return(e)),
        }
    }

    // Failure: what ran has stopped; roll back what completed, unless the journal refuses.
    let mut undone = Vec::new();
    if first_error.is_some() && fence.is_none() {
        for &i in completion.iter().rev() {
            if slots[i].compensated || slots[i].state != State::Succeeded {
                continue;
            }
            let step = &wf.steps[i];
            let result = slots[i].result.clone().unwrap_or(Value::Null);
            let outcome = undo_step(
                &run,
                step,
                &step.spec.name,
                &slots[i].arguments,
                &result,
                &slots[i].undo,
            )
            .await;
            match outcome {
                Undo::Done => {
                    slots[i].state = State::Undone;
                    undone.push(step.spec.name.clone());
                }
                Undo::Failed(e) => slots[i].error = Some(format!("undo failed: {e}")),
                Undo::NotUndoable => {}
                Undo::Fenced(e) => {
                    // Rolled back (in part, for a map or sub-workflow), but not recorded.
                    slots[i].state = State::Undone;
                    slots[i].error = Some(format!("undo not recorded: {e}"));
                    undone.push(step.spec.name.clone());
                    fence = Some((fenced(&e, Some(run.display(&step.spec.name))), e));
                    break;
                }
            }
        }
    }

    let completed: Vec<CompletedStep> = completion
        .iter()
        .filter(|&&i| slots[i].state == State::Succeeded)
        .map(|&i| CompletedStep {
            step: wf.steps[i].spec.name.clone(),
            attempts: slots[i].attempts,
            arguments: slots[i].arguments.clone(),
            result: slots[i].result.clone().unwrap_or(Value::Null),
            compensated: slots[i].compensated,
        })
        .collect();
    let steps = wf
        .steps
        .iter()
        .zip(&slots)
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
        .collect();
    let (status, error, suspended) = match (fence, first_error, suspension) {
        (Some((s, e)), _, _) => (RunStatus::Suspended, Some(e.into()), Some(s)),
        (None, Some(e), _) => (RunStatus::Failed, Some(e), None),
        (None, None, Some(s)) => (RunStatus::Suspended, None, Some(s)),
        (None, None, None) => (RunStatus::Succeeded, None, None),
    };
    if status != RunStatus::Succeeded {
        result = Value::Null;
    }
    let report = RunReport {
        run_id: run.run_id.clone(),
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

fn requested() -> Suspension {
    Suspension {
        reason: SuspendReason::Requested,
        step: None,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => pending::<()>().await,
    }
}

/// Records a finished task in the slots and says what it means for the run.
fn settle(
    run: &Run,
    joined: Result<(tokio::task::Id, (usize, Outcome)), tokio::task::JoinError>,
    task_step: &HashMap<tokio::task::Id, usize>,
    slots: &mut [Slot],
    completion: &mut Vec<usize>,
) -> Settled {
    match joined {
        Ok((_, (i, outcome))) => match outcome {
            Outcome::Done {
                result,
                attempts,
                compensated,
                undo,
            } => {
                let s = &mut slots[i];
                s.state = State::Succeeded;
                s.attempts = attempts;
                s.result = Some(result);
                s.compensated = compensated;
                s.resumed = false;
                s.undo = undo;
                completion.push(i);
                Settled::Ok
            }
            Outcome::Failed { error, attempts } => {
                let s = &mut slots[i];
                s.state = State::Failed;
                s.attempts = attempts;
                s.error = Some(match &error {
                    RunError::StepFailed { error, .. } => error.message.clone(),
                    other => other.to_string(),
                });
                Settled::Failed(error)
            }
            Outcome::Cancelled { attempts } => {
                slots[i].state = State::Cancelled;
                slots[i].attempts = attempts;
                Settled::Ok
            }
            Outcome::Suspended {
                suspension,
                attempts,
            } => {
                slots[i].state = State::Cancelled;
                slots[i].attempts = attempts;
                Settled::Suspended(suspension)
            }
            Outcome::Fenced { error, attempts } => {
                slots[i].state = State::Cancelled;
                slots[i].attempts = attempts;
                slots[i].error = Some(error.to_string());
                let name = run.display(&run.wf.steps[i].spec.name);
                Settled::Fenced(fenced(&error, Some(name)), error)
            }
        },
        Err(e) => {
            let Some(i) = task_step.get(&e.id()).copied() else {
                return Settled::Ok;
            };
            let name = run.display(&run.wf.steps[i].spec.name);
            if e.is_cancelled() {
                slots[i].state = State::Cancelled;
                return Settled::Ok;
            }
            slots[i].state = State::Failed;
            slots[i].error = Some("step panicked".into());
            Settled::Failed(RunError::StepFailed {
                step: name,
                attempts: slots[i].attempts.max(1),
                error: StepError::fatal("step panicked"),
            })
        }
    }
}

/// The first of a step's `requires` that this node lacks, when the node's capabilities are set.
fn missing_capability(run: &Run, i: usize) -> Option<String> {
    let caps = run.env.capabilities.as_ref()?;
    run.wf.steps[i]
        .spec
        .requires
        .iter()
        .find(|r| !caps.contains(*r))
        .cloned()
}

/// Resolves a step's arguments.
fn prepare(run: &Run, i: usize, slots: &[Slot]) -> Result<Value, StepError> {
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
                let j = run.wf.index.get(from).copied();
                let root = j.and_then(|j| slots[j].result.as_ref()).ok_or_else(|| {
                    StepError::fatal(format!("argument {name:?}: step {from:?} has no result"))
                })?;
                follow(root, path)
                    .map_err(|e| {
                        StepError::fatal(format!("argument {name:?}: result of step {from:?} {e}"))
                    })?
                    .clone()
            }
        };
        args.insert(name.clone(), v);
    }
    Ok(Value::Object(args))
}

fn compute_return(wf: &Workflow, slots: &[Slot]) -> Result<Value, String> {
    match &wf.spec.returns {
        Some(Source::Result { step, path }) => {
            let root = wf
                .index
                .get(step)
                .and_then(|&i| slots[i].result.as_ref())
                .ok_or_else(|| format!("return: step {step:?} has no result"))?;
            follow(root, path)
                .cloned()
                .map_err(|e| format!("return: result of step {step:?} {e}"))
        }
        Some(other) => Err(format!("return: {other} is not a step result")),
        None => Ok(Value::Object(
            wf.steps
                .iter()
                .zip(slots)
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

/// Runs one step with its retries and compensation. `name` is its journal name in `run`
/// (`m[2]` for a map element); `held` means the caller already holds the permits.
fn run_step<'a>(
    run: &'a Run,
    step: &'a ResolvedStep,
    name: &'a str,
    args: &'a Value,
    cancel: &'a Cancel,
    held: bool,
) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        let spec = &step.spec;
        let mut rng = run.rng(name);
        let mut attempt = 0u32;
        let (error, ctx) = loop {
            attempt += 1;
            let mut ctx = run.context(name, &spec.run, attempt, &spec.with);
            for m in &run.env.middleware {
                m.step_started(&mut ctx).await;
            }
            if let Err(error) = run
                .record(JournalEntry::StepStarted {
                    step: name.to_owned(),
                    attempt,
                })
                .await
            {
                return Outcome::Fenced {
                    error,
                    attempts: attempt,
                };
            }
            run.env.emit(RunEvent::StepStarted {
                run_id: run.run_id.clone(),
                step: ctx.step.clone(),
                attempt,
            });
            let t0 = Instant::now();
            let span = ctx.span.clone();
            let outcome = attempt_once(run, step, name, args, cancel, held, &ctx)
                .instrument(span)
                .await;
            let elapsed = t0.elapsed();
            match outcome {
                Attempt::Cancelled => return cancelled(run, name, &ctx, attempt, None).await,
                // Stopped part way (its done parts are journaled): the run resumes it later.
                Attempt::Suspended(s) => return cancelled(run, name, &ctx, attempt, Some(s)).await,
                Attempt::Fenced(error) => {
                    return Outcome::Fenced {
                        error,
                        attempts: attempt,
                    };
                }
                Attempt::Finished(Ok((result, undo))) => {
                    return succeed(run, name, args, &ctx, result, undo, attempt, elapsed, false)
                        .await;
                }
                // Suspended now: neither retry nor compensate; the next holder runs it again.
                Attempt::Finished(Err(_)) if cancel.halted() => {
                    return cancelled(run, name, &ctx, attempt, None).await;
                }
                Attempt::Finished(Err(e)) => {
                    for m in &run.env.middleware {
                        m.step_failed(&ctx, &e, elapsed).await;
                    }
                    let will_retry =
                        e.retryable && attempt <= spec.max_retries && cancel.now().is_none();
                    if let Err(error) = run
                        .record(JournalEntry::StepFailed {
                            step: name.to_owned(),
                            attempt,
                            error: e.message.clone(),
                            will_retry,
                        })
                        .await
                    {
                        return Outcome::Fenced {
                            error,
                            attempts: attempt,
                        };
                    }
                    run.env.emit(RunEvent::StepFailed {
                        run_id: run.run_id.clone(),
                        step: ctx.step.clone(),
                        attempt,
                        error: e.message.clone(),
                        will_retry,
                    });
                    if !will_retry {
                        break (e, ctx);
                    }
                    let delay = spec.backoff.delay(attempt, &mut rng);
                    for m in &run.env.middleware {
                        m.step_retrying(&ctx, &e, delay).await;
                    }
                    if let Err(error) = run
                        .record(JournalEntry::StepRetried {
                            step: name.to_owned(),
                            attempt: attempt + 1,
                            delay_ms: millis(delay),
                        })
                        .await
                    {
                        return Outcome::Fenced {
                            error,
                            attempts: attempt,
                        };
                    }
                    run.env.emit(RunEvent::StepRetrying {
                        run_id: run.run_id.clone(),
                        step: ctx.step.clone(),
                        attempt: attempt + 1,
                        delay_ms: millis(delay),
                    });
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = cancel.wait() => return Outcome::Cancelled { attempts: attempt },
                    }
                }
            }
        };
        compensate(run, step, name, args, error, ctx, attempt, cancel).await
    })
}

/// Records that a step was stopped (cancelled, or stopped by a suspension).
async fn cancelled(
    run: &Run,
    name: &str,
    ctx: &StepContext,
    attempts: u32,
    suspension: Option<Suspension>,
) -> Outcome {
    if let Err(error) = run
        .record(JournalEntry::StepCancelled {
            step: name.to_owned(),
        })
        .await
    {
        return Outcome::Fenced { error, attempts };
    }
    run.env.emit(RunEvent::StepCancelled {
        run_id: run.run_id.clone(),
        step: ctx.step.clone(),
    });
    match suspension {
        Some(suspension) => Outcome::Suspended {
            suspension,
            attempts,
        },
        None => Outcome::Cancelled { attempts },
    }
}

#[allow(clippy::too_many_arguments)]
async fn succeed(
    run: &Run,
    name: &str,
    args: &Value,
    ctx: &StepContext,
    result: Value,
    undo: UndoPlan,
    attempt: u32,
    elapsed: Duration,
    compensated: bool,
) -> Outcome {
    if compensated {
        for m in &run.env.middleware {
            m.step_compensated(ctx, &result).await;
        }
    } else {
        for m in &run.env.middleware {
            m.step_succeeded(ctx, &result, elapsed).await;
        }
    }
    if let Err(error) = run
        .record(JournalEntry::StepSucceeded {
            step: name.to_owned(),
            attempt,
            arguments: args.clone(),
            result: result.clone(),
            compensated,
        })
        .await
    {
        return Outcome::Fenced {
            error,
            attempts: attempt,
        };
    }
    run.env.emit(RunEvent::StepSucceeded {
        run_id: run.run_id.clone(),
        step: ctx.step.clone(),
        attempt,
        elapsed_ms: millis(elapsed),
        compensated,
    });
    Outcome::Done {
        result,
        attempts: attempt,
        compensated,
        undo,
    }
}

/// One attempt of one step, whatever its kind.
async fn attempt_once(
    run: &Run,
    step: &ResolvedStep,
    name: &str,
    args: &Value,
    cancel: &Cancel,
    held: bool,
    ctx: &StepContext,
) -> Attempt {
    let spec = &step.spec;
    let exclusive = !spec.run_async && !held;
    match &step.runner {
        Runner::Kind(kind) => {
            let body = async {
                let _permit = if held {
                    None
                } else {
                    run.acquire(exclusive).await
                };
                let fut = kind.run(ctx, args);
                match spec.timeout {
                    Some(t) => tokio::time::timeout(t, fut)
                        .await
                        .unwrap_or_else(|_| Err(StepError::timed_out(t))),
                    None => fut.await,
                }
            };
            // Dropping `body` on cancel stops the step (and kills an exec child).
            tokio::select! {
                r = body => Attempt::Finished(r.map(|v| (v, UndoPlan::Record))),
                _ = cancel.wait() => Attempt::Cancelled,
            }
        }
        Runner::Map {
            template,
            max_concurrency,
        } => {
            let c = cancel.within(spec.timeout);
            let _all = if exclusive {
                run.acquire(true).await
            } else {
                None
            };
            run_map(
                run,
                template,
                name,
                args,
                &c,
                exclusive || held,
                *max_concurrency,
            )
            .await
        }
        Runner::Workflow(sub) => {
            let c = cancel.within(spec.timeout);
            let _all = if exclusive {
                run.acquire(true).await
            } else {
                None
            };
            run_sub(run, sub, name, args, &c).await
        }
    }
}

/// `map`: runs the template once per element of `arguments.items`, at most `limit` at a time,
/// results in element order. On failure or cancel, completed elements are undone first. On a
/// drain it starts no more elements and suspends once the running ones end; suspended `Now`
/// or fenced, it undoes nothing (the elements done are journaled, so a resume skips them).
async fn run_map(
    run: &Run,
    template: &ResolvedStep,
    name: &str,
    args: &Value,
    cancel: &Cancel,
    held: bool,
    limit: Option<usize>,
) -> Attempt {
    let items = match args.get("items") {
        Some(Value::Array(items)) => items.clone(),
        other => {
            let got = other.map_or("nothing".to_owned(), |v| v.to_string());
            return Attempt::Finished(Err(StepError::fatal(format!(
                "argument \"items\" must be a list, got {}",
                truncate(&got, 80)
            ))));
        }
    };
    let mut base = args.as_object().cloned().unwrap_or_default();
    base.remove("items");
    let element_args: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut m = base.clone();
            m.insert("item".into(), item.clone());
            m.insert("index".into(), json!(i));
            Value::Object(m)
        })
        .collect();
    let names: Vec<String> = (0..items.len()).map(|i| format!("{name}[{i}]")).collect();
    let limit = if held {
        1
    } else {
        limit.unwrap_or(items.len()).max(1)
    };

    let mut results: Vec<Option<Value>> = vec![None; items.len()];
    let mut done: Vec<(String, Value, Value)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if let Some(c) = run.resumed.get(n) {
            results[i] = Some(c.result.clone());
            done.push((n.clone(), c.arguments.clone(), c.result.clone()));
        }
    }
    let todo: Vec<usize> = (0..items.len()).filter(|&i| results[i].is_none()).collect();
    let mut todo = todo.into_iter();
    let mut inflight = FuturesUnordered::new();
    let mut failure: Option<StepError> = None;
    let mut stopped = false;
    let mut suspended: Option<Suspension> = None;
    loop {
        while inflight.len() < limit && suspended.is_none() && cancel.suspending().is_none() {
            let Some(i) = todo.next() else { break };
            let (n, a) = (&names[i], &element_args[i]);
            inflight.push(async move { (i, run_step(run, template, n, a, cancel, held).await) });
        }
        let Some((i, outcome)) = inflight.next().await else {
            break;
        };
        match outcome {
            Outcome::Done { result, .. } => {
                results[i] = Some(result.clone());
                done.push((names[i].clone(), element_args[i].clone(), result));
            }
            Outcome::Failed { error, .. } => {
                let inner = match error {
                    RunError::StepFailed { error, .. } => error,
                    other => StepError::fatal(other.to_string()),
                };
                failure = Some(StepError {
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
                        Outcome::Done { result, .. } => {
                            done.push((names[j].clone(), element_args[j].clone(), result));
                        }
                        Outcome::Fenced { error, .. } => return Attempt::Fenced(error),
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
            Outcome::Fenced { error, .. } => return Attempt::Fenced(error),
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
    if failure.is_none() && cancel.halted() {
        return Attempt::Cancelled;
    }
    for (n, a, r) in done.iter().rev() {
        if let Undo::Fenced(e) = undo_step(run, template, n, a, r, &UndoPlan::Record).await {
            return Attempt::Fenced(e);
        }
    }
    match (failure, cancel.now()) {
        (Some(e), _) => Attempt::Finished(Err(e)),
        (None, Some(Stop::TimedOut(t))) => Attempt::Finished(Err(StepError::timed_out(t))),
        (None, _) => Attempt::Cancelled,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).collect::<String>() + "..."
    }
}

/// `workflow`: runs the sub-workflow with this step's arguments as its inputs, under the run id
/// `<run>/<step>` so it resumes and undoes on its own journal.
async fn run_sub(
    run: &Run,
    sub: &Arc<Workflow>,
    name: &str,
    args: &Value,
    cancel: &Cancel,
) -> Attempt {
    let child_id = format!("{}/{name}", run.run_id);
    let params = RunParams {
        run_id: child_id.clone(),
        prefix: format!("{}{name}/", run.prefix),
        fencing_token: run.fencing_token,
        metadata: run.metadata.clone(),
        parent_span: tracing::Span::current(),
        cancel: cancel.clone(),
    };
    let inputs = args.as_object().cloned().unwrap_or_default();
    let (report, completed) = execute(run.env.clone(), sub.clone(), inputs, params).await;
    match (report.suspended, report.error) {
        // Suspended with an error: the sub-run's journal failed.
        (Some(_), Some(RunError::Journal(e))) => Attempt::Fenced(e),
        (Some(s), _) => Attempt::Suspended(s),
        (None, error) => finished_sub(sub, report.result, completed, error, cancel),
    }
}

fn finished_sub(
    sub: &Workflow,
    result: Value,
    completed: Vec<CompletedStep>,
    error: Option<RunError>,
    cancel: &Cancel,
) -> Attempt {
    match error {
        None => Attempt::Finished(Ok((result, UndoPlan::Sub { completed }))),
        Some(RunError::Cancelled) => Attempt::Cancelled,
        Some(RunError::TimedOut(t)) if cancel.now().is_some() => {
            Attempt::Finished(Err(StepError::timed_out(t)))
        }
        Some(e) => Attempt::Finished(Err(StepError {
            message: format!("workflow {:?} failed: {e}", sub.spec.name),
            retryable: !matches!(e, RunError::InvalidInputs(_)),
        })),
    }
}

/// After a step failed for good: its `compensate` action (or its kind's `compensate`) may
/// supply a replacement result. A suspension `Now` (or a fenced run) stops it.
#[allow(clippy::too_many_arguments)]
async fn compensate(
    run: &Run,
    step: &ResolvedStep,
    name: &str,
    args: &Value,
    error: StepError,
    ctx: StepContext,
    attempts: u32,
    cancel: &Cancel,
) -> Outcome {
    let failed = |error: StepError| Outcome::Failed {
        error: RunError::StepFailed {
            step: ctx.step.clone(),
            attempts,
            error,
        },
        attempts,
    };
    let replace = async {
        if let Some(action) = &step.compensate {
            let input = json!({"arguments": args, "error": error.message});
            match run_action(run, action, name, "compensate", &input).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(step = %ctx.step, error = %e, "compensate failed");
                    None
                }
            }
        } else if let Runner::Kind(kind) = &step.runner {
            match kind.compensate(&ctx, args, &error).await {
                Compensation::Continue(v) => Some(v),
                Compensation::Fail => None,
            }
        } else {
            None
        }
    };
    let replacement = tokio::select! {
        biased;
        () = cancel.wait_halt() => return cancelled(run, name, &ctx, attempts, None).await,
        r = replace => r,
    };
    match replacement {
        Some(v) => {
            succeed(
                run,
                name,
                args,
                &ctx,
                v,
                UndoPlan::Record,
                attempts,
                Duration::ZERO,
                true,
            )
            .await
        }
        None => failed(error),
    }
}

/// Runs an `undo` or `compensate` action with its own retries.
async fn run_action(
    run: &Run,
    action: &ResolvedAction,
    name: &str,
    what: &str,
    input: &Value,
) -> Result<Value, StepError> {
    let mut rng = run.rng(name);
    let backoff = crate::backoff::Backoff::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ctx = run.context(
            &format!("{name}.{what}"),
            &action.spec.run,
            attempt,
            &action.spec.with,
        );
        let fut = action.kind.run(&ctx, input);
        let r = match action.spec.timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .unwrap_or_else(|_| Err(StepError::timed_out(t))),
            None => fut.await,
        };
        match r {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable && attempt <= action.spec.max_retries => {
                tokio::time::sleep(backoff.delay(attempt, &mut rng)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

enum Undo {
    Done,
    NotUndoable,
    Failed(StepError),
    /// The journal refused to record it: undo nothing more.
    Fenced(JournalError),
}

/// Rolls back one completed step: a map's elements in reverse, a sub-workflow's steps in
/// reverse, then the step's own `undo` action or its kind's `undo`. Stops at the first undo the
/// journal refuses to record.
fn undo_step<'a>(
    run: &'a Run,
    step: &'a ResolvedStep,
    name: &'a str,
    args: &'a Value,
    result: &'a Value,
    plan: &'a UndoPlan,
) -> BoxFuture<'a, Undo> {
    Box::pin(async move {
        let mut did = false;
        let mut error: Option<StepError> = None;
        let mut note = |u: Undo| match u {
            Undo::Done => {
                did = true;
                None
            }
            Undo::Failed(e) => {
                error.get_or_insert(e);
                None
            }
            Undo::NotUndoable => None,
            Undo::Fenced(e) => Some(e),
        };
        match &step.runner {
            Runner::Kind(_) => {}
            Runner::Map { template, .. } => {
                let elements = match plan {
                    UndoPlan::Map(done) => done.clone(),
                    _ => map_elements_from_record(name, args, result),
                };
                for (n, a, r) in elements.iter().rev() {
                    let u = undo_step(run, template, n, a, r, &UndoPlan::Record).await;
                    if let Some(e) = note(u) {
                        return Undo::Fenced(e);
                    }
                }
            }
            Runner::Workflow(sub) => {
                let child_id = format!("{}/{name}", run.run_id);
                let completed = match plan {
                    UndoPlan::Sub { completed, .. } => completed.clone(),
                    _ => match run.env.journal.entries(&child_id).await {
                        Ok(entries) => completed_steps(&entries),
                        Err(e) => {
                            let _ = note(Undo::Failed(StepError::fatal(e.to_string())));
                            Vec::new()
                        }
                    },
                };
                let child = run.child(sub.clone(), child_id, name);
                for c in completed.iter().rev() {
                    if c.compensated {
                        continue;
                    }
                    if let Some(&i) = sub.index.get(&c.step) {
                        let u = undo_step(
                            &child,
                            &sub.steps[i],
                            &c.step,
                            &c.arguments,
                            &c.result,
                            &UndoPlan::Record,
                        )
                        .await;
                        if let Some(e) = note(u) {
                            return Undo::Fenced(e);
                        }
                    }
                }
            }
        }
        let ctx = run.context(name, &step.spec.run, 1, &step.spec.with);
        if let Some(action) = &step.undo {
            let input = json!({"arguments": args, "result": result});
            match run_action(run, action, name, "undo", &input).await {
                Ok(_) => did = true,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        } else if let Runner::Kind(kind) = &step.runner
            && kind.can_undo()
        {
            let fut = kind.undo(&ctx, args, result);
            let r = match step.spec.timeout {
                Some(t) => tokio::time::timeout(t, fut)
                    .await
                    .unwrap_or_else(|_| Err(StepError::timed_out(t))),
                None => fut.await,
            };
            match r {
                Ok(()) => did = true,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        let outcome = match error {
            Some(e) => Undo::Failed(e),
            None if did => Undo::Done,
            None => return Undo::NotUndoable,
        };
        for m in &run.env.middleware {
            let r = match &outcome {
                Undo::Failed(e) => Err(e),
                _ => Ok(()),
            };
            m.step_undone(&ctx, r).await;
        }
        let (entry, event) = match &outcome {
            Undo::Failed(e) => (
                JournalEntry::StepUndoFailed {
                    step: name.to_owned(),
                    error: e.message.clone(),
                },
                RunEvent::StepUndoFailed {
                    run_id: run.run_id.clone(),
                    step: ctx.step.clone(),
                    error: e.message.clone(),
                },
            ),
            _ => (
                JournalEntry::StepUndone {
                    step: name.to_owned(),
                },
                RunEvent::StepUndone {
                    run_id: run.run_id.clone(),
                    step: ctx.step.clone(),
                },
            ),
        };
        if let Err(e) = run.record(entry).await {
            tracing::warn!(step = %ctx.step, error = %e, "could not record undo");
            return Undo::Fenced(e);
        }
        run.env.emit(event);
        outcome
    })
}

/// A resumed map step's elements, rebuilt from its arguments and result.
fn map_elements_from_record(
    name: &str,
    args: &Value,
    result: &Value,
) -> Vec<(String, Value, Value)> {
    let (Some(Value::Array(items)), Value::Array(results)) = (args.get("items"), result) else {
        return Vec::new();
    };
    let mut base = args.as_object().cloned().unwrap_or_default();
    base.remove("items");
    items
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (item, r))| {
            let mut m = base.clone();
            m.insert("item".into(), item.clone());
            m.insert("index".into(), json!(i));
            (format!("{name}[{i}]"), Value::Object(m), r.clone())
        })
        .collect()
}
