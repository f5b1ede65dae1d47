//! The `Step` trait Rust users implement to add their own kinds, the context a step runs in, and
//! the registry that maps kind names to implementations.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StepError;
use crate::kinds;

/// What a step knows about where and why it runs.
#[derive(Clone)]
pub struct StepContext {
    pub run_id: String,
    /// The step's name; `parent/child` inside a sub-workflow, `name[3]` for a map element.
    pub step: String,
    /// The kind being run (`exec`, `echo`, ...).
    pub kind: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The claim's fencing token, passed on so effects can reject older attempts.
    pub fencing_token: Option<u64>,
    /// The kind's configuration (`with:` in the spec).
    pub with: Arc<Value>,
    /// Free-form data that middleware adds and steps may read (trace ids, tenant, ...).
    pub metadata: BTreeMap<String, Value>,
    /// The span the attempt runs in; middleware may replace it.
    pub span: tracing::Span,
    /// Where waiting steps (`signal`, a durable `sleep`) learn of signals and
    /// time; `None` outside a cluster.
    pub waits: Option<Arc<dyn Waits>>,
    /// When this step first waited (Unix epoch ms), as the run's journal
    /// says: the clock of its timeout or sleep, kept across resumes.
    pub waited_since: Option<u64>,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("run_id", &self.run_id)
            .field("step", &self.step)
            .field("kind", &self.kind)
            .field("attempt", &self.attempt)
            .field("fencing_token", &self.fencing_token)
            .field("with", &self.with)
            .field("metadata", &self.metadata)
            .field("waits", &self.waits.is_some())
            .field("waited_since", &self.waited_since)
            .finish()
    }
}

/// What a cluster gives waiting steps: the signals delivered to a run, the
/// time, and how long a sleep must be to park the run instead of holding
/// its lease.
pub trait Waits: Send + Sync + 'static {
    /// The JSON payload of signal `name` delivered to run `run_id`, if any.
    fn signal(&self, run_id: &str, name: &str) -> Option<Value>;
    /// Now, Unix epoch ms.
    fn now_ms(&self) -> u64;
    /// A `sleep` at least this long parks the run durably.
    fn durable_sleep_after(&self) -> std::time::Duration;
}

/// What `compensate` decided after a step failed for good.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Compensation {
    /// Fail the run (undoing completed steps).
    Fail,
    /// Use this as the step's result and carry on.
    Continue(Value),
}

/// A step kind. Implement this to register your own (`registry.register("charge", Charge)`).
///
/// ```
/// use async_trait::async_trait;
/// use serde_json::{Value, json};
/// use swarm_reactor::{Registry, Step, StepContext, StepError};
///
/// struct Double;
///
/// #[async_trait]
/// impl Step for Double {
///     async fn run(&self, _ctx: &StepContext, args: &Value) -> Result<Value, StepError> {
///         let n = args["n"].as_i64().ok_or_else(|| StepError::fatal("argument \"n\" must be an integer"))?;
///         Ok(json!(n * 2))
///     }
/// }
///
/// let mut registry = Registry::builtin();
/// registry.register("double", Double).unwrap();
/// ```
#[async_trait]
pub trait Step: Send + Sync + 'static {
    /// Checks the kind's `with:` config before anything runs. Each message names the field
    /// (`"command" is required`); the caller adds the step name.
    fn check(&self, _with: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Runs one attempt. `arguments` is a JSON object with the step's resolved arguments.
    async fn run(&self, ctx: &StepContext, arguments: &Value) -> Result<Value, StepError>;

    /// Whether the step is pure: it changes nothing outside its result, so running it again
    /// with the same arguments does no harm. A pure step's success is not made durable on its
    /// own: it rides with the run's next journal write ([`Journal::append_deferred`]), and the
    /// steps after it start at once. Built-in: `echo`. Default: not pure.
    ///
    /// [`Journal::append_deferred`]: crate::Journal::append_deferred
    fn pure(&self) -> bool {
        false
    }

    /// Whether [`Step::undo`] does anything; shown by `plan` and used to list undone steps.
    fn can_undo(&self) -> bool {
        false
    }

    /// Rolls back a completed run of this step, when a later failure aborts the workflow.
    async fn undo(
        &self,
        _ctx: &StepContext,
        _arguments: &Value,
        _result: &Value,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// Called when the step failed for good and the spec gives no `compensate` action.
    async fn compensate(
        &self,
        _ctx: &StepContext,
        _arguments: &Value,
        _error: &StepError,
    ) -> Compensation {
        Compensation::Fail
    }
}

/// Names that the executor handles itself and that no registered kind may take.
pub const COMPOSITE_KINDS: [&str; 3] = ["map", "switch", "workflow"];

/// Why a kind could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step kind {0:?} is reserved for the executor")]
pub struct ReservedKind(pub String);

/// Step kinds by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<String, Arc<dyn Step>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.names())
            .finish()
    }
}

impl Registry {
    /// No kinds at all (`map`, `switch` and `workflow` always work).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in kinds: `exec`, `http`, `sleep`, `echo`, `fail`.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.kinds.insert("exec".into(), Arc::new(kinds::Exec));
        r.kinds.insert("http".into(), Arc::new(kinds::Http));
        r.kinds.insert("sleep".into(), Arc::new(kinds::Sleep));
        r.kinds.insert("signal".into(), Arc::new(kinds::SignalStep));
        r.kinds.insert("echo".into(), Arc::new(kinds::Echo));
        r.kinds.insert("fail".into(), Arc::new(kinds::Fail));
        r
    }

    /// Adds or replaces a kind.
    pub fn register(&mut self, name: &str, step: impl Step) -> Result<&mut Self, ReservedKind> {
        self.register_arc(name, Arc::new(step))
    }

    /// Adds or replaces a kind that is already shared.
    pub fn register_arc(
        &mut self,
        name: &str,
        step: Arc<dyn Step>,
    ) -> Result<&mut Self, ReservedKind> {
        if COMPOSITE_KINDS.contains(&name) {
            return Err(ReservedKind(name.to_owned()));
        }
        self.kinds.insert(name.to_owned(), step);
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Step>> {
        self.kinds.get(name).cloned()
    }

    /// Every kind name a spec may use, sorted, composites included.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.kinds.keys().cloned().collect();
        v.extend(COMPOSITE_KINDS.iter().map(|s| (*s).to_owned()));
        v.sort();
        v
    }
}
