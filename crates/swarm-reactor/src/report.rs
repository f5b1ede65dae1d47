//! What a run produced: the report a caller prints or serializes, and the events sent while it
//! runs so a CLI can show each step as it starts and ends.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{JournalError, RunError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// Stopped without undoing anything, to be resumed from the journal (by this node or
    /// another): see [`Suspension`].
    Suspended,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Suspended => "suspended",
        })
    }
}

/// Why a run was suspended. Serializes as `{"kind": "missing_capability", "capability": ..}`,
/// `{"kind": "requested"}`, `{"kind": "fenced", "error": ..}` or
/// `{"kind": "journal_unavailable", "error": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SuspendReason {
    /// The next ready step requires a capability this node lacks (only with
    /// [`crate::Reactor::suspend_on_missing_capability`]).
    MissingCapability { capability: String },
    /// The caller asked, through [`crate::RunOptions::suspend`].
    Requested,
    /// The journal refused an append ([`JournalError::Fenced`]): another holder owns the work
    /// now, and finishes it.
    Fenced { error: String },
    /// An append failed because the journal could not be reached
    /// ([`JournalError::Unavailable`]) or its outcome is unknown ([`JournalError::Unknown`]), or
    /// the journal could not be read at the start. The run still belongs to this holder: resume
    /// it with the same run id once the journal is back.
    JournalUnavailable { error: String },
    /// A step waits: for a signal (until `until`, when it has a timeout), or
    /// until a time (a durable sleep). `since` is when the step first
    /// waited (Unix epoch ms): the wait's clock, kept across resumes.
    Wait {
        signal: Option<String>,
        until: Option<u64>,
        since: u64,
    },
    /// A step with `on_exhausted: pause` failed for good: the run waits,
    /// paused, for an operator to fix the cause and resume it.
    Exhausted { error: String },
}

impl SuspendReason {
    /// The suspension a failed journal append (or read) calls for; `error` is the message
    /// without the variant's prefix.
    pub(crate) fn journal(error: &JournalError) -> Self {
        let message = error.message().to_owned();
        match error {
            JournalError::Fenced(_) => SuspendReason::Fenced { error: message },
            JournalError::Unavailable(_) | JournalError::Unknown(_) => {
                SuspendReason::JournalUnavailable { error: message }
            }
        }
    }

    /// Whether the suspension comes from a failed journal append or read: the journal may not
    /// take any more entries, so the run's end is not recorded.
    pub(crate) fn is_journal(&self) -> bool {
        matches!(
            self,
            SuspendReason::Fenced { .. } | SuspendReason::JournalUnavailable { .. }
        )
    }
}

impl fmt::Display for SuspendReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuspendReason::MissingCapability { capability } => {
                write!(
                    f,
                    "requires capability {capability:?}, which this node does not have"
                )
            }
            SuspendReason::Requested => f.write_str("suspension requested"),
            SuspendReason::Fenced { error } => write!(f, "journal refused an append: {error}"),
            SuspendReason::JournalUnavailable { error } => {
                write!(f, "journal unavailable: {error}")
            }
            SuspendReason::Wait {
                signal,
                until,
                since,
            } => {
                let wait = crate::error::WaitFor {
                    signal: signal.clone(),
                    until: *until,
                    since: *since,
                };
                write!(f, "{wait}")
            }
            SuspendReason::Exhausted { error } => {
                write!(f, "a step failed for good and pauses the run: {error}")
            }
        }
    }
}

/// How and where a run was suspended. Nothing was undone: steps that succeeded stay recorded in
/// the journal, and a run started again with the same run id skips them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: SuspendReason,
    /// The step that caused it: the one lacking a capability, or the one whose journal append
    /// failed (`parent/child` inside a sub-workflow). `None` for a requested suspension, or
    /// when the failed append was not a step's (the run's start or end) or the journal could not
    /// be read at the start.
    pub step: Option<String>,
}

impl fmt::Display for Suspension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "step {step:?}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

/// How a step ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Completed (possibly with a compensated result, possibly resumed from the journal) and not
    /// rolled back: either the run succeeded or the step has no undo.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Completed, then rolled back because the run failed.
    Undone,
    /// Never started (also: not started because the run was suspended).
    Skipped,
    /// Was running when the run failed, or was suspended without waiting for it, and was
    /// stopped.
    Cancelled,
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Undone => "undone",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        })
    }
}

/// One step's line in a [`RunReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
    /// Attempts made in this run (0 when skipped or resumed from the journal).
    pub attempts: u32,
    /// The last error, for failed steps and failed undos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result came from `compensate`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compensated: bool,
    /// Taken from the journal instead of run again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// The outcome of a run. Serializes as
/// `{"status", "result", "error", "steps": [{"name", "status", "attempts"}]}`, plus
/// `"undone"` when steps were rolled back and `"suspended": {"reason", "step"}` when the run was
/// suspended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    #[serde(skip)]
    pub run_id: String,
    pub status: RunStatus,
    /// The `return` value (null unless the run succeeded).
    pub result: Value,
    /// The first error: null when the run succeeded, or was suspended on request or for a
    /// missing capability; the journal's error ([`RunError::Journal`]) when it was suspended
    /// because the journal failed ([`SuspendReason::Fenced`],
    /// [`SuspendReason::JournalUnavailable`]).
    pub error: Option<RunError>,
    /// One per step, in spec order.
    pub steps: Vec<StepReport>,
    /// The steps rolled back, in the order they were undone (reverse completion order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
    /// Set when (and only when) `status` is [`RunStatus::Suspended`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended: Option<Suspension>,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    /// The run stopped without undoing anything; the `suspended` field says why. Resume it by
    /// running the workflow again with the same run id and journal.
    pub fn suspended(&self) -> bool {
        self.status == RunStatus::Suspended
    }

    pub fn step(&self, name: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The report as JSON text (the `-o json` shape).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A plain table: one line per step, then the status and the result or error.
    pub fn render_table(&self) -> String {
        let width = self
            .steps
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!("{:<width$}  {:<9}  ATTEMPTS  NOTE\n", "STEP", "STATUS");
        for s in &self.steps {
            let mut note = Vec::new();
            if s.resumed {
                note.push("resumed".to_owned());
            }
            if s.compensated {
                note.push("compensated".to_owned());
            }
            if let Some(e) = &s.error {
                note.push(e.clone());
            }
            let line = format!(
                "{:<width$}  {:<9}  {:<8}  {}",
                s.name,
                s.status.to_string(),
                s.attempts,
                note.join("; ")
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str(&format!(
            "\nrun {} {} in {}\n",
            self.run_id,
            self.status,
            humantime::format_duration(Duration::from_millis(
                u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX)
            ))
        ));
        if let Some(s) = &self.suspended {
            out.push_str(&format!("suspended: {s}\n"));
        }
        match &self.error {
            Some(e) => out.push_str(&format!("error: {e}\n")),
            None if self.suspended.is_some() => {}
            None => out.push_str(&format!(
                "result: {}\n",
                serde_json::to_string_pretty(&self.result).unwrap_or_default()
            )),
        }
        out
    }
}

/// Something that happened during a run, sent as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        workflow: String,
    },
    StepStarted {
        run_id: String,
        step: String,
        attempt: u32,
    },
    StepSucceeded {
        run_id: String,
        step: String,
        attempt: u32,
        elapsed_ms: u64,
        compensated: bool,
    },
    StepFailed {
        run_id: String,
        step: String,
        attempt: u32,
        error: String,
        will_retry: bool,
    },
    StepRetrying {
        run_id: String,
        step: String,
        attempt: u32,
        delay_ms: u64,
    },
    /// Taken from the journal instead of run again.
    StepResumed {
        run_id: String,
        step: String,
    },
    StepCancelled {
        run_id: String,
        step: String,
    },
    StepUndone {
        run_id: String,
        step: String,
    },
    StepUndoFailed {
        run_id: String,
        step: String,
        error: String,
    },
    /// The run stopped without undoing anything; a `RunFinished` with status `suspended`
    /// follows.
    RunSuspended {
        run_id: String,
        reason: SuspendReason,
        /// See [`Suspension::step`].
        step: Option<String>,
    },
    RunFinished {
        run_id: String,
        status: RunStatus,
        elapsed_ms: u64,
    },
}

impl fmt::Display for RunEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunEvent::RunStarted { run_id, workflow } => {
                write!(f, "run {run_id}: workflow {workflow} started")
            }
            RunEvent::StepStarted { step, attempt, .. } => {
                write!(f, "step {step}: started (attempt {attempt})")
            }
            RunEvent::StepSucceeded {
                step,
                attempt,
                elapsed_ms,
                compensated,
                ..
            } => write!(
                f,
                "step {step}: {} (attempt {attempt}, {elapsed_ms}ms)",
                if *compensated {
                    "compensated"
                } else {
                    "succeeded"
                }
            ),
            RunEvent::StepFailed {
                step,
                attempt,
                error,
                will_retry,
                ..
            } => write!(
                f,
                "step {step}: failed (attempt {attempt}{}): {error}",
                if *will_retry { ", will retry" } else { "" }
            ),
            RunEvent::StepRetrying {
                step,
                attempt,
                delay_ms,
                ..
            } => write!(
                f,
                "step {step}: retrying in {delay_ms}ms (attempt {attempt})"
            ),
            RunEvent::StepResumed { step, .. } => write!(f, "step {step}: done earlier (resumed)"),
            RunEvent::StepCancelled { step, .. } => write!(f, "step {step}: cancelled"),
            RunEvent::StepUndone { step, .. } => write!(f, "step {step}: undone"),
            RunEvent::StepUndoFailed { step, error, .. } => {
                write!(f, "step {step}: undo failed: {error}")
            }
            RunEvent::RunSuspended {
                run_id,
                reason,
                step,
            } => match step {
                Some(step) => write!(f, "run {run_id}: suspended at step {step}: {reason}"),
                None => write!(f, "run {run_id}: suspended: {reason}"),
            },
            RunEvent::RunFinished {
                run_id,
                status,
                elapsed_ms,
            } => write!(f, "run {run_id}: {status} in {elapsed_ms}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::StepError;

    #[test]
    fn report_serializes_to_the_cli_shape() {
        let r = RunReport {
            run_id: "r1".into(),
            status: RunStatus::Failed,
            result: Value::Null,
            error: Some(RunError::StepFailed {
                step: "b".into(),
                attempts: 2,
                error: StepError::fatal("boom"),
            }),
            steps: vec![
                StepReport {
                    name: "a".into(),
                    status: StepStatus::Undone,
                    attempts: 1,
                    error: None,
                    compensated: false,
                    resumed: false,
                },
                StepReport {
                    name: "b".into(),
                    status: StepStatus::Failed,
                    attempts: 2,
                    error: Some("boom".into()),
                    compensated: false,
                    resumed: false,
                },
            ],
            undone: vec!["a".into()],
            suspended: None,
            elapsed: Duration::from_millis(5),
        };
        let v = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(
            v,
            json!({
                "status": "failed",
                "result": null,
                "error": "step \"b\" failed after 2 attempts: boom",
                "steps": [
                    {"name": "a", "status": "undone", "attempts": 1},
                    {"name": "b", "status": "failed", "attempts": 2, "error": "boom"}
                ],
                "undone": ["a"]
            })
        );
    }
}
