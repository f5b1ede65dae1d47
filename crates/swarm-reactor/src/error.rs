//! Errors: what a step reports, what validation finds, and why a run failed.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Why one attempt of a step failed.
///
/// `retryable` separates failures worth another attempt (a non-zero exit, a 503, a timeout) from
/// ones that will fail the same way again (a 404, a bad argument); only the first kind uses up
/// `max_retries`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// Lowercase, names what went wrong.
    pub message: String,
    /// Whether another attempt might succeed.
    pub retryable: bool,
    /// Set by a step that waits (a signal, a durable sleep): the run parks
    /// instead of failing (see [`StepError::wait`]).
    pub wait: Option<WaitFor>,
}

impl StepError {
    /// A failure another attempt might not repeat.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            wait: None,
        }
    }

    /// Not a failure: the step waits, and the run parks (ends suspended
    /// with [`crate::SuspendReason::Wait`]) until a holder runs it again.
    pub fn wait(wait: WaitFor) -> Self {
        Self {
            message: wait.to_string(),
            retryable: false,
            wait: Some(wait),
        }
    }

    /// A failure that retrying cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            wait: None,
        }
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self::retryable(format!(
            "timed out after {}",
            humantime::format_duration(after)
        ))
    }
}

/// One thing wrong with a workflow spec, found before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The step the problem is in, when it is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The field (`timeout`, `arguments.x`, `with.command`, ...), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The full message, naming the step and field itself.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every problem validation found, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ValidationErrors {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "workflow is invalid ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Messages only, one per problem.
    pub fn messages(&self) -> Vec<String> {
        self.problems.iter().map(|p| p.message.clone()).collect()
    }

    pub(crate) fn push(&mut self, step: Option<&str>, field: Option<&str>, message: String) {
        self.problems.push(Problem {
            step: step.map(str::to_owned),
            field: field.map(str::to_owned),
            message,
        });
    }
}

/// Why a workflow file could not be turned into a runnable [`crate::Workflow`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("read workflow {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

impl LoadError {
    /// Every problem, one message each (an I/O failure is a single problem).
    pub fn messages(&self) -> Vec<String> {
        match self {
            LoadError::Io { .. } => vec![self.to_string()],
            LoadError::Invalid(v) => v.messages(),
        }
    }
}

/// Why a journal could not record or replay an outcome.
///
/// An outcome that is not durable must not be acted on, so whatever the variant, a failed append
/// ends the run suspended at once, with nothing more run, undone or compensated; the variant says
/// what the caller can do next:
///
/// - [`Fenced`](Self::Fenced): a newer holder owns the run (a stale fencing token). The run
///   ends suspended with [`SuspendReason::Fenced`]; the caller lets go of it, and the new
///   holder finishes it.
/// - [`Unavailable`](Self::Unavailable): the journal could not be reached (no quorum or leader
///   in time) and nothing was recorded. The run ends suspended with
///   [`SuspendReason::JournalUnavailable`]; it is still the caller's, to resume later with the
///   same run id.
/// - [`Unknown`](Self::Unknown): the append was sent, but whether it was recorded is unknown.
///   Handled as `Unavailable`: a resume reads back whatever was recorded.
///
/// A failed read of the journal at the start of a run fails the run when it is
/// [`Fenced`](Self::Fenced), and suspends it with [`SuspendReason::JournalUnavailable`]
/// otherwise (nothing has run then, so nothing needs undoing).
///
/// [`SuspendReason::Fenced`]: crate::SuspendReason::Fenced
/// [`SuspendReason::JournalUnavailable`]: crate::SuspendReason::JournalUnavailable
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// A newer holder owns the run: this one may no longer write to its journal.
    #[error("journal: {0}")]
    Fenced(String),
    /// The journal could not be reached in time; nothing was recorded, and trying again later
    /// is safe.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    /// The append was sent but its outcome is unknown: it may or may not have been recorded.
    #[error("journal outcome unknown: {0}")]
    Unknown(String),
}

impl JournalError {
    /// What went wrong, without the variant's prefix.
    pub fn message(&self) -> &str {
        match self {
            JournalError::Fenced(m) | JournalError::Unavailable(m) | JournalError::Unknown(m) => m,
        }
    }

    /// Whether a newer holder owns the run (as opposed to the journal being out of reach).
    pub fn is_fenced(&self) -> bool {
        matches!(self, JournalError::Fenced(_))
    }
}

/// Why a run ended failed. The first error wins; later ones are in the step reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("step {step:?} failed after {attempts} attempt{}: {error}", if *attempts == 1 { "" } else { "s" })]
    StepFailed {
        step: String,
        attempts: u32,
        error: StepError,
    },
    #[error("run timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("run inputs are invalid: {}", .0.join("; "))]
    InvalidInputs(Vec<String>),
    #[error("run was cancelled")]
    Cancelled,
    #[error("{0}")]
    Return(String),
    /// The journal failed (see [`JournalError`] for what each variant means); with a failed
    /// append or an unreachable journal the run ends suspended, and this is its report's error.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl Serialize for RunError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a waiting step waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitFor {
    /// A signal by this name; `None`: only time.
    pub signal: Option<String>,
    /// Until when (Unix epoch ms): a signal's timeout, a sleep's end.
    pub until: Option<u64>,
    /// When the step first waited.
    pub since: u64,
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.signal, self.until) {
            (Some(name), Some(t)) => write!(f, "waiting for signal {name:?} until {t}"),
            (Some(name), None) => write!(f, "waiting for signal {name:?}"),
            (None, Some(t)) => write!(f, "sleeping until {t}"),
            (None, None) => f.write_str("waiting"),
        }
    }
}
