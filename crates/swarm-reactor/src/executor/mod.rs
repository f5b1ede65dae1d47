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
//! - a journal append that fails: running steps are stopped at once, and nothing more is run,
//!   undone, compensated, or (when it can be helped) written. A [`JournalError::Fenced`] append
//!   (another holder owns the run) suspends it with [`SuspendReason::Fenced`]; an
//!   [`JournalError::Unavailable`] or [`JournalError::Unknown`] one (the journal is out of reach)
//!   with [`SuspendReason::JournalUnavailable`]. Either way the report's error is the journal's.
//!   A journal that cannot be read at the start fails the run when fenced, and suspends it with
//!   [`SuspendReason::JournalUnavailable`] otherwise.
//!
//! # Layout
//!
//! - this module: [`Reactor`] and its options, the entry point;
//! - `schedule`: a run from its first journal entry to its last, and the scheduler loop in
//!   between (ready steps, signals, how the run ends, rollback on failure);
//! - `run`: one run in progress (journal, permits, resumed steps) and its ledger of steps;
//! - `attempt`: one step from its first attempt to its outcome: retries, backoff, timeouts;
//! - `transition`: the one place a step's state changes (middleware, journal, event);
//! - `compose`: `map` and `workflow` steps;
//! - `undo`: rolling back completed steps, and `compensate`;
//! - `cancel`: the cancel, suspend and deadline signals a step watches.

mod attempt;
mod cancel;
mod compose;
mod run;
mod schedule;
mod transition;
mod undo;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::watch;

use self::cancel::Cancel;
use self::run::RunParams;
use crate::journal::{InMemoryJournal, Journal};
use crate::middleware::Middleware;
use crate::report::{RunEvent, RunReport};
use crate::validate::Workflow;
#[cfg(doc)]
use crate::{JournalEntry, JournalError, RunStatus, SuspendReason};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type EventFn = Arc<dyn Fn(&RunEvent) + Send + Sync>;

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
    /// Signals and time for waiting steps.
    waits: Option<Arc<dyn crate::step::Waits>>,
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
                waits: None,
            },
        }
    }

    /// Where `signal` steps and durable sleeps learn of signals and time
    /// (a cluster node gives its replica); without it a `signal` step fails
    /// and every sleep holds its run.
    pub fn with_waits(mut self, waits: Arc<dyn crate::step::Waits>) -> Self {
        self.env.waits = Some(waits);
        self
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
            cancel: Cancel::new(options.cancel, options.suspend),
        };
        schedule::execute(Arc::new(self.env.clone()), workflow, inputs, params)
            .await
            .0
    }
}
