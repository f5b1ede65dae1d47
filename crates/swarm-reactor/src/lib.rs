//! The step executor each Swarm node runs: a saga engine in the spirit of Elixir's Ash Reactor.
//!
//! A workflow is a DAG of steps whose arguments come from the run's inputs or from other steps'
//! results. Steps start as soon as their arguments are ready and run concurrently (up to
//! `max_concurrency`); failed steps are retried with exponential backoff and jitter; a step that
//! fails for good may `compensate` with a replacement result, and otherwise the run cancels what
//! is in flight and undoes every completed step in reverse completion order. Every outcome goes
//! through a [`Journal`], so a run restarted with the same id skips what already succeeded.
//!
//! A run can also end **suspended**: stopped without undoing anything, so that it is resumed
//! from the journal later, possibly on another node. That happens when the caller asks
//! ([`RunOptions::suspend`] with a [`SuspendMode`]), when a step needs a capability this node
//! lacks and [`Reactor::suspend_on_missing_capability`] is on, and when a journal append fails.
//! See [`Suspension`].
//!
//! A journal failure is a [`JournalError`], and its variant tells the caller what to do:
//! [`JournalError::Fenced`] (another holder owns the run: let it go) suspends with
//! [`SuspendReason::Fenced`]; [`JournalError::Unavailable`] (nothing was recorded) and
//! [`JournalError::Unknown`] (it may have been) suspend with
//! [`SuspendReason::JournalUnavailable`] (the run is still ours: resume it later with the same
//! run id). Either way nothing is undone, and the report's error is [`RunError::Journal`].
//!
//! This crate has no Raft and no gRPC: the node plugs in a Raft-backed journal and its own
//! middleware, and `swarmctl workflow` uses it directly.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use serde_json::{Map, json};
//! use swarm_reactor::{Reactor, Registry, RunOptions, Workflow};
//!
//! let yaml = r#"
//! name: greet
//! inputs: [who]
//! steps:
//!   - name: hello
//!     run: echo
//!     arguments: { greeting: value("hello"), who: input(who) }
//!   - name: shout
//!     run: echo
//!     arguments: { said: result(hello.greeting) }
//! return: shout.said
//! "#;
//! let workflow = Arc::new(Workflow::parse(yaml, &Registry::builtin()).unwrap());
//! let inputs = Map::from_iter([("who".to_owned(), json!("world"))]);
//! let report = Reactor::new().run(workflow, inputs, RunOptions::default()).await;
//! assert!(report.succeeded());
//! assert_eq!(report.result, json!("hello"));
//! # }
//! ```
//!
//! # Layout
//!
//! - [`spec`]: the typed workflow spec and the lenient YAML/JSON parser that collects every
//!   shape problem (types, durations, argument syntax, unknown fields).
//! - [`validate`](mod@validate): turns a spec into a runnable [`Workflow`]: kinds, references,
//!   cycles, the DAG.
//! - [`plan`]: renders the DAG as text stages or a mermaid flowchart, and lists each step's
//!   direct dependencies ([`plan::dependencies`]).
//! - [`executor`]: [`Reactor`] and its [`RunOptions`], in modules by job: `schedule` (a run
//!   from its first journal entry to its last: ready steps, concurrency, how the run ends),
//!   `run` (a run in progress and its ledger of steps), `attempt` (one step's attempts:
//!   retries, backoff, timeouts), `transition` (the one place a step's state change is
//!   journaled, told to middleware and sent as an event), `compose` (`map`, `workflow`
//!   and `switch` steps), `undo` (rollback and compensation), `cancel` (cancel, suspend and deadline
//!   signals).
//! - [`step`]: the [`Step`] trait for custom kinds, [`StepContext`] and the [`Registry`].
//! - [`kinds`]: built-in kinds `exec`, `http`, `sleep`, `echo`, `fail`.
//! - [`backoff`]: retry delays as data.
//! - [`journal`]: the [`Journal`] trait, [`InMemoryJournal`], and resume bookkeeping.
//! - [`middleware`]: the [`Middleware`] trait, [`TracingMiddleware`], [`MetricsMiddleware`].
//! - [`report`]: [`RunReport`] (the `-o json` shape) and [`RunEvent`] (live progress).
//! - [`error`]: [`StepError`], [`Problem`]/[`ValidationErrors`], [`RunError`], [`LoadError`].
//! - [`work_item`]: a workflow as a Swarm work item, shared by the node and the CLI: the
//!   [`WorkflowPayload`] of an item of type `workflow`, and the [`JournalRecord`] each journal
//!   entry of it holds.
//! - [`steps`]: [`StepBoard`], a run's steps (state, attempts, node) folded from its journal,
//!   shared by the node's dashboard and `swarmctl`.

pub mod backoff;
pub mod error;
pub mod executor;
pub mod journal;
pub mod kinds;
pub mod middleware;
pub mod plan;
pub mod report;
pub mod spec;
pub mod step;
pub mod steps;
pub mod validate;
pub mod work_item;

use serde_json::Value;

pub use backoff::Backoff;
pub use error::{JournalError, LoadError, Problem, RunError, StepError, ValidationErrors, WaitFor};
pub use executor::{Reactor, RunOptions, SuspendMode};
pub use journal::{CompletedStep, InMemoryJournal, Journal, JournalEntry, completed_steps};
pub use middleware::{MetricsMiddleware, Middleware, RunContext, Tally, TracingMiddleware};
pub use plan::PlanFormat;
pub use report::{
    RunEvent, RunReport, RunStatus, StepReport, StepStatus, SuspendReason, Suspension,
};
pub use spec::{ActionSpec, OnExhausted, Source, StepSpec, WorkflowSpec};
pub use step::{Compensation, Registry, ReservedKind, Step, StepContext, Waits};
pub use steps::{StepBoard, StepRow, StepState};
pub use validate::{Workflow, load_file, validate};
pub use work_item::{JournalRecord, WorkflowPayload};

/// Parses a `--input k=v` flag: the value is JSON if it parses (`n=3`, `tags=["a"]`), a plain
/// string otherwise (`name=alice`).
pub fn parse_input(flag: &str) -> Result<(String, Value), String> {
    let (k, v) = flag
        .split_once('=')
        .ok_or_else(|| format!("input {flag:?} must look like name=value"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("input {flag:?} has an empty name"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn input_flags() {
        assert_eq!(parse_input("n=3"), Ok(("n".into(), json!(3))));
        assert_eq!(parse_input("who=alice"), Ok(("who".into(), json!("alice"))));
        assert_eq!(parse_input("x=a=b"), Ok(("x".into(), json!("a=b"))));
        assert!(parse_input("nothing").is_err());
        assert!(parse_input("=3").is_err());
    }
}
