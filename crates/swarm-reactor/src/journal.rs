//! The journal: where every step outcome is recorded, and what a run resumes from.
//!
//! The executor appends an entry before acting on an outcome, so a run restarted with the same
//! run id and journal skips the steps that already succeeded and feeds their recorded results to
//! the steps after them.
//!
//! An append that fails means the run may not act on the outcome, since it is not durable. The
//! executor then stops at once, cancelling what runs, undoing and compensating nothing, and ends
//! the run suspended. The [`JournalError`] says why, and with it the suspension: a
//! [`JournalError::Fenced`] append (with a Raft-backed journal: the lease moved to another
//! holder) suspends with [`SuspendReason::Fenced`], and the run is the new holder's to finish; an
//! [`JournalError::Unavailable`] or [`JournalError::Unknown`] one (no quorum or leader in time)
//! suspends with [`SuspendReason::JournalUnavailable`], and the run may be resumed once the
//! journal is back.
//!
//! The cluster provides a Raft-backed journal; [`InMemoryJournal`] is for tests and local runs.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::JournalError;
use crate::report::{RunStatus, SuspendReason};

/// One recorded fact about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEntry {
    RunStarted {
        workflow: String,
        inputs: Value,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    /// `arguments` are kept so the step can be undone after a restart.
    StepSucceeded {
        step: String,
        attempt: u32,
        arguments: Value,
        result: Value,
        /// The result came from `compensate` after the step failed.
        #[serde(default)]
        compensated: bool,
    },
    StepFailed {
        step: String,
        attempt: u32,
        error: String,
        /// Another attempt follows.
        will_retry: bool,
    },
    StepRetried {
        step: String,
        /// The attempt about to start.
        attempt: u32,
        delay_ms: u64,
    },
    StepCancelled {
        step: String,
    },
    StepUndone {
        step: String,
    },
    StepUndoFailed {
        step: String,
        error: String,
    },
    RunFinished {
        status: RunStatus,
    },
    /// A `switch` step picked `branch`; `skipped` names the steps of the
    /// branches it did not take, as `<switch>/<branch>/<step>`.
    BranchTaken {
        step: String,
        branch: String,
        skipped: Vec<String>,
    },
    /// The run stopped without undoing anything, to be resumed (written instead of
    /// `RunFinished`). A run resumed from this journal continues as if it were not there. Not
    /// written when the suspension is [`SuspendReason::Fenced`] (the journal is not ours any
    /// more) or [`SuspendReason::JournalUnavailable`] (the journal just failed).
    RunSuspended {
        reason: SuspendReason,
        step: Option<String>,
    },
}

impl JournalEntry {
    /// The step this entry concerns: a step entry's step, the step a run
    /// suspended at, `None` for the run's start and end.
    pub fn step(&self) -> Option<&str> {
        match self {
            JournalEntry::StepStarted { step, .. }
            | JournalEntry::StepSucceeded { step, .. }
            | JournalEntry::StepFailed { step, .. }
            | JournalEntry::StepRetried { step, .. }
            | JournalEntry::StepCancelled { step }
            | JournalEntry::StepUndone { step }
            | JournalEntry::StepUndoFailed { step, .. }
            | JournalEntry::BranchTaken { step, .. } => Some(step),
            JournalEntry::RunSuspended { step, .. } => step.as_deref(),
            JournalEntry::RunStarted { .. } | JournalEntry::RunFinished { .. } => None,
        }
    }

    /// Whether the entry only reports progress (a run or an attempt began):
    /// losing it in a crash changes nothing a resume does, since a step
    /// without a recorded outcome runs again either way. A journal may make
    /// such an entry durable together with the next one (see [`Journal`]).
    pub fn is_progress(&self) -> bool {
        matches!(
            self,
            JournalEntry::RunStarted { .. }
                | JournalEntry::StepStarted { .. }
                | JournalEntry::StepRetried { .. }
        )
    }
}

/// Durable storage for run outcomes.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Records `entry` for `run_id`; once this returns `Ok` the entry must survive a restart.
    /// A [progress](JournalEntry::is_progress) entry may instead become durable shortly after,
    /// but always before any later entry of the run and in order, so a journal can commit a
    /// step's start together with its outcome.
    ///
    /// Fails with [`JournalError::Fenced`] when a newer holder owns the run,
    /// [`JournalError::Unavailable`] when the journal could not be reached and nothing was
    /// recorded, [`JournalError::Unknown`] when the entry may or may not have been recorded.
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError>;

    /// Records the outcome of a [pure](crate::Step::pure) step: like a progress entry, it may
    /// become durable only with the run's next entry (always before it and in order), so a
    /// chain of pure steps costs one write, not one each. A crash before then runs the step
    /// again on resume, which changes nothing. An entry that could not be recorded fails the
    /// run's next `append`. The default records it at once, like `append`.
    async fn append_deferred(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        self.append(run_id, entry).await
    }

    /// Every entry recorded for `run_id`, oldest first (empty for an unknown run). A
    /// [`JournalError::Fenced`] failure fails the run; any other suspends it.
    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError>;
}

/// A journal in memory, for tests and `run-local`.
#[derive(Debug, Default)]
pub struct InMemoryJournal {
    runs: Mutex<HashMap<String, Vec<JournalEntry>>>,
}

impl InMemoryJournal {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what was recorded for `run_id`.
    pub fn snapshot(&self, run_id: &str) -> Vec<JournalEntry> {
        self.runs
            .lock()
            .map(|r| r.get(run_id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Replaces what is recorded for `run_id` (to set up a resume in tests).
    pub fn replace(&self, run_id: &str, entries: Vec<JournalEntry>) {
        if let Ok(mut r) = self.runs.lock() {
            r.insert(run_id.to_owned(), entries);
        }
    }

    /// Every run id with entries.
    pub fn run_ids(&self) -> Vec<String> {
        self.runs
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Journal for InMemoryJournal {
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        let mut runs = self.runs.lock().map_err(|_| poisoned())?;
        runs.entry(run_id.to_owned()).or_default().push(entry);
        Ok(())
    }

    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        let runs = self.runs.lock().map_err(|_| poisoned())?;
        Ok(runs.get(run_id).cloned().unwrap_or_default())
    }
}

/// A panic while the lock was held leaves the map in doubt: report the journal as out of
/// reach, not the run as fenced.
fn poisoned() -> JournalError {
    JournalError::Unavailable("in-memory journal lock poisoned".into())
}

/// A step that the journal says is done and not undone.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedStep {
    pub step: String,
    pub attempts: u32,
    pub arguments: Value,
    pub result: Value,
    pub compensated: bool,
}

/// The steps that succeeded and were not undone since, in completion order.
pub fn completed_steps(entries: &[JournalEntry]) -> Vec<CompletedStep> {
    let mut done: Vec<CompletedStep> = Vec::new();
    for e in entries {
        match e {
            JournalEntry::StepSucceeded {
                step,
                attempt,
                arguments,
                result,
                compensated,
            } => {
                done.retain(|c| c.step != *step);
                done.push(CompletedStep {
                    step: step.clone(),
                    attempts: *attempt,
                    arguments: arguments.clone(),
                    result: result.clone(),
                    compensated: *compensated,
                });
            }
            JournalEntry::StepUndone { step } => done.retain(|c| c.step != *step),
            _ => {}
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok(step: &str) -> JournalEntry {
        JournalEntry::StepSucceeded {
            step: step.into(),
            attempt: 1,
            arguments: json!({}),
            result: json!(step),
            compensated: false,
        }
    }

    #[test]
    fn completed_steps_drop_undone_ones_and_keep_order() {
        let entries = vec![
            ok("a"),
            ok("b"),
            JournalEntry::StepUndone { step: "a".into() },
            ok("c"),
        ];
        let names: Vec<_> = completed_steps(&entries)
            .into_iter()
            .map(|c| c.step)
            .collect();
        assert_eq!(names, vec!["b", "c"]);
    }

    #[tokio::test]
    async fn a_poisoned_in_memory_journal_is_unavailable_not_fenced() {
        let journal = InMemoryJournal::new();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = journal.runs.lock();
            panic!("poison the lock");
        }));
        let refused = journal.append("r", ok("a")).await;
        assert!(
            matches!(refused, Err(JournalError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(matches!(
            journal.entries("r").await,
            Err(JournalError::Unavailable(_))
        ));
    }

    #[test]
    fn entries_serialize_with_an_event_tag() {
        let v =
            serde_json::to_value(JournalEntry::StepUndone { step: "a".into() }).unwrap_or_default();
        assert_eq!(v, json!({"event": "step_undone", "step": "a"}));
    }
}
