//! A run's steps as people look at them: one row per step with where it stands, how many
//! attempts it took and which node ran it, folded from the run's journal.
//!
//! A workflow item's journal holds [`JournalRecord`]s (`{"run": "<run id>", "entry":
//! <JournalEntry>}`), each recorded under the fencing token of the holder that wrote it. The
//! top-level run's id is the item id; a sub-workflow's run is `<item id>/<step>`. A
//! [`StepBoard`] folds the entries of one run into a [`StepRow`] per step, where:
//!
//! - `state` is the latest thing that happened to the step (see [`StepState`]);
//! - `attempts` is the highest attempt number seen;
//! - `node` is the agent that held the token the step's latest entry was recorded under, or
//!   `None` when unknown.
//!
//! Steps appear in the order they were first journaled. The fold knows nothing of protobuf or
//! of the claims state: the node folds its domain work item, `swarmctl` the wire one, and a
//! live watch folds entries one at a time with [`StepBoard::apply`], so all of them read a
//! journal the same way.
//!
//! ```
//! use swarm_reactor::{JournalEntry, JournalRecord, StepBoard, StepState};
//!
//! let started = JournalRecord {
//!     run: "w1".into(),
//!     entry: JournalEntry::StepStarted { step: "build".into(), attempt: 1 },
//! };
//! let text = started.to_json().unwrap();
//! let agent_of = |token: u64| (token == 4).then(|| "node-1".to_string());
//! let board = StepBoard::from_journal("w1", [(4, text.as_str())], agent_of);
//! let row = &board.rows()[0];
//! assert_eq!((row.name.as_str(), row.state, row.attempts), ("build", StepState::Running, 1));
//! assert_eq!(row.node.as_deref(), Some("node-1"));
//! ```

use crate::journal::JournalEntry;
use crate::report::SuspendReason;
use crate::work_item::JournalRecord;

/// Where a step stands, as far as the journal says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// An attempt started and has no outcome yet.
    Running,
    /// An attempt failed and another follows.
    Retrying,
    Succeeded,
    /// Failed for good.
    Failed,
    /// Stopped while running.
    Cancelled,
    /// Rolled back after a later failure.
    Undone,
    /// Its undo failed: its effects stay.
    UndoFailed,
    /// In a branch its `switch` did not take: it never runs.
    Skipped,
    /// Parked: it waits for a signal or a time (or a step inside it does),
    /// and runs again when the run is resumed.
    Waiting,
}

impl StepState {
    /// The lowercase word scripts and the dashboard see: `running`, `retrying`, `succeeded`,
    /// `failed`, `cancelled`, `undone`, `undo_failed`, `skipped`, `waiting`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Retrying => "retrying",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Undone => "undone",
            StepState::UndoFailed => "undo_failed",
            StepState::Skipped => "skipped",
            StepState::Waiting => "waiting",
        }
    }

    /// Whether the step got as far as it will in this run: what a progress
    /// bar counts as done.
    pub fn is_done(self) -> bool {
        !matches!(
            self,
            StepState::Running | StepState::Retrying | StepState::Waiting
        )
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    pub name: String,
    pub state: StepState,
    pub attempts: u32,
    /// The agent that recorded the step's latest entry, when known.
    pub node: Option<String>,
}

/// The steps of one run, folded from its journal entries one at a time (so
/// that a live watch and a finished item's journal read the same way).
#[derive(Debug, Clone, Default)]
pub struct StepBoard {
    rows: Vec<StepRow>,
}

impl StepBoard {
    /// The steps of run `run` from a journal given as `(token, outcome_json)` pairs in journal
    /// order; `agent_of` names the agent that held a token (from the item's history).
    /// The steps of the runs inside it (a `workflow` step's sub-run `<run>/<step>`, a
    /// `switch` branch's `<run>/<step>/<branch>`) are rows too, named by their path from
    /// `run` (`deploy/build`, `route/approve/notify`). Entries of other runs and text that is
    /// not a [`JournalRecord`] are skipped.
    pub fn from_journal<'a>(
        run: &str,
        entries: impl IntoIterator<Item = (u64, &'a str)>,
        agent_of: impl Fn(u64) -> Option<String>,
    ) -> StepBoard {
        let mut board = StepBoard::default();
        for (token, outcome_json) in entries {
            let Some(recorded) = JournalRecord::parse(outcome_json) else {
                continue;
            };
            if recorded.run == run {
                board.apply(&recorded.entry, agent_of(token));
            } else if let Some(inner) = recorded
                .run
                .strip_prefix(run)
                .and_then(|rest| rest.strip_prefix('/'))
            {
                board.apply_within(inner, &recorded.entry, agent_of(token));
            }
        }
        board
    }

    /// Folds one entry of the run in; `node` is the agent it was recorded by.
    /// Returns the step it concerns, if any.
    pub fn apply(&mut self, entry: &JournalEntry, node: Option<String>) -> Option<&StepRow> {
        self.apply_within("", entry, node)
    }

    /// Folds in one entry of the run `inner` within this one (`deploy` for
    /// a sub-workflow run by step `deploy`; empty for this run itself), its
    /// rows named `inner/step`.
    pub fn apply_within(
        &mut self,
        inner: &str,
        entry: &JournalEntry,
        node: Option<String>,
    ) -> Option<&StepRow> {
        let named = |step: &str| {
            if inner.is_empty() {
                step.to_string()
            } else {
                format!("{inner}/{step}")
            }
        };
        let (step, attempt, state) = match entry {
            JournalEntry::StepStarted { step, attempt } => {
                (step, Some(*attempt), StepState::Running)
            }
            JournalEntry::StepSucceeded { step, attempt, .. } => {
                (step, Some(*attempt), StepState::Succeeded)
            }
            JournalEntry::StepFailed {
                step,
                attempt,
                will_retry,
                ..
            } => {
                let state = if *will_retry {
                    StepState::Retrying
                } else {
                    StepState::Failed
                };
                (step, Some(*attempt), state)
            }
            JournalEntry::StepRetried { step, .. } => (step, None, StepState::Retrying),
            JournalEntry::StepCancelled { step } => (step, None, StepState::Cancelled),
            JournalEntry::StepUndone { step } => (step, None, StepState::Undone),
            JournalEntry::StepUndoFailed { step, .. } => (step, None, StepState::UndoFailed),
            JournalEntry::BranchTaken { skipped, .. } => {
                for name in skipped {
                    self.set(named(name), None, StepState::Skipped, None);
                }
                return None;
            }
            // The run parked at a step that waits (named by its path from
            // the top-level run, as are the steps inside it that stopped).
            JournalEntry::RunSuspended {
                reason: SuspendReason::Wait { .. },
                step: Some(at),
            } if inner.is_empty() => {
                for row in &mut self.rows {
                    let on_the_way = at
                        .strip_prefix(row.name.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
                    if row.state == StepState::Cancelled && on_the_way {
                        row.state = StepState::Waiting;
                    }
                }
                return None;
            }
            JournalEntry::RunStarted { .. }
            | JournalEntry::RunFinished { .. }
            | JournalEntry::RunSuspended { .. } => return None,
        };
        Some(self.set(named(step), attempt, state, node))
    }

    /// Sets step `name`'s row, adding it when new.
    fn set(
        &mut self,
        name: String,
        attempt: Option<u32>,
        state: StepState,
        node: Option<String>,
    ) -> &StepRow {
        let i = match self.rows.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                self.rows.push(StepRow {
                    name,
                    state,
                    attempts: 0,
                    node: None,
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        row.state = state;
        row.attempts = row.attempts.max(attempt.unwrap_or(0));
        if node.is_some() {
            row.node = node;
        }
        row
    }

    /// One row per step journaled so far, in the order each was first journaled.
    pub fn rows(&self) -> &[StepRow] {
        &self.rows
    }

    /// The row of step `name`, if the journal mentions it.
    pub fn row(&self, name: &str) -> Option<&StepRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// How many steps are done (see [`StepState::is_done`]).
    pub fn done(&self) -> usize {
        self.rows.iter().filter(|r| r.state.is_done()).count()
    }

    /// The steps running now, in the order they started.
    pub fn running(&self) -> impl Iterator<Item = &StepRow> {
        self.rows
            .iter()
            .filter(|r| matches!(r.state, StepState::Running | StepState::Retrying))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::report::RunStatus;

    /// `(run, token, entry)` as the node records them: `(token, outcome_json)`.
    fn journal(entries: &[(&str, u64, JournalEntry)]) -> Vec<(u64, String)> {
        entries
            .iter()
            .map(|(run, token, entry)| {
                let record = JournalRecord {
                    run: (*run).to_string(),
                    entry: entry.clone(),
                };
                (*token, record.to_json().unwrap())
            })
            .collect()
    }

    fn board(run: &str, journal: &[(u64, String)], agents: &[(u64, &str)]) -> StepBoard {
        let agents: HashMap<u64, &str> = agents.iter().copied().collect();
        StepBoard::from_journal(
            run,
            journal.iter().map(|(t, text)| (*t, text.as_str())),
            |token| agents.get(&token).map(|a| (*a).to_string()),
        )
    }

    /// `(name, state, attempts, node)` per row.
    fn rows(board: &StepBoard) -> Vec<(&str, &str, u32, Option<&str>)> {
        board
            .rows()
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.state.as_str(),
                    r.attempts,
                    r.node.as_deref(),
                )
            })
            .collect()
    }

    fn started(step: &str, attempt: u32) -> JournalEntry {
        JournalEntry::StepStarted {
            step: step.into(),
            attempt,
        }
    }

    fn succeeded(step: &str, attempt: u32) -> JournalEntry {
        JournalEntry::StepSucceeded {
            step: step.into(),
            attempt,
            arguments: json!({}),
            result: json!(1),
            compensated: false,
        }
    }

    fn failed(step: &str, attempt: u32, will_retry: bool) -> JournalEntry {
        JournalEntry::StepFailed {
            step: step.into(),
            attempt,
            error: "boom".into(),
            will_retry,
        }
    }

    #[test]
    fn a_run_handed_off_midway_names_each_steps_node() {
        let journal = journal(&[
            (
                "w1",
                4,
                JournalEntry::RunStarted {
                    workflow: "t".into(),
                    inputs: json!({}),
                },
            ),
            ("w1", 4, started("a", 1)),
            ("w1", 4, succeeded("a", 1)),
            ("w1", 7, started("b", 1)),
            ("w1", 7, failed("b", 1, true)),
            (
                "w1",
                7,
                JournalEntry::StepRetried {
                    step: "b".into(),
                    attempt: 2,
                    delay_ms: 10,
                },
            ),
            ("w1", 7, started("b", 2)),
            ("w1", 7, succeeded("b", 2)),
            ("w1", 7, started("c", 1)),
        ]);
        let board = board("w1", &journal, &[(4, "node-1"), (7, "node-3")]);
        assert_eq!(
            rows(&board),
            [
                ("a", "succeeded", 1, Some("node-1")),
                ("b", "succeeded", 2, Some("node-3")),
                ("c", "running", 1, Some("node-3")),
            ]
        );
        assert_eq!(board.done(), 2);
        assert_eq!(
            board.running().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(board.row("b").map(|r| r.attempts), Some(2));
        assert_eq!(board.row("zzz"), None);
    }

    #[test]
    fn a_failed_run_undoes_and_sub_workflow_steps_show_under_their_step() {
        let journal = journal(&[
            ("w2", 3, started("reserve", 1)),
            ("w2", 3, succeeded("reserve", 1)),
            ("w2", 3, started("sub", 1)),
            ("w2/sub", 3, started("inner", 1)),
            ("w2/sub", 3, succeeded("inner", 1)),
            ("w2", 3, succeeded("sub", 1)),
            ("w2", 3, started("ship", 1)),
            ("w2", 3, failed("ship", 1, true)),
            ("w2", 3, started("ship", 2)),
            ("w2", 3, failed("ship", 2, false)),
            (
                "w2",
                3,
                JournalEntry::StepUndoFailed {
                    step: "sub".into(),
                    error: "gone".into(),
                },
            ),
            (
                "w2",
                3,
                JournalEntry::StepUndone {
                    step: "reserve".into(),
                },
            ),
            (
                "w2",
                3,
                JournalEntry::RunFinished {
                    status: RunStatus::Failed,
                },
            ),
        ]);
        let top = board("w2", &journal, &[(3, "node-2")]);
        assert_eq!(
            rows(&top),
            [
                ("reserve", "undone", 1, Some("node-2")),
                ("sub", "undo_failed", 1, Some("node-2")),
                ("sub/inner", "succeeded", 1, Some("node-2")),
                ("ship", "failed", 2, Some("node-2")),
            ]
        );
        assert_eq!(top.done(), 4);
        // Only runs inside it count: `w2x` is another item's.
        let other = self::journal(&[("w2x", 3, started("a", 1))]);
        assert!(board("w2", &other, &[]).rows().is_empty());
        // The sub-workflow's own run folds the same way.
        let sub = board("w2/sub", &journal, &[]);
        assert_eq!(rows(&sub), [("inner", "succeeded", 1, None)]);
    }

    #[test]
    fn a_switch_parked_in_its_branch_shows_waiting_and_the_other_branch_skipped() {
        let wait = || JournalEntry::RunSuspended {
            reason: SuspendReason::Wait {
                signal: Some("approve".into()),
                until: None,
                since: 1,
            },
            step: Some("route/high/approve".into()),
        };
        let cancelled = |step: &str| JournalEntry::StepCancelled { step: step.into() };
        let mut entries = vec![
            ("w", 2, started("route", 1)),
            (
                "w",
                2,
                JournalEntry::BranchTaken {
                    step: "route".into(),
                    branch: "high".into(),
                    skipped: vec!["route/low/apply".into()],
                },
            ),
            ("w/route/high", 2, started("approve", 1)),
            ("w/route/high", 2, cancelled("approve")),
            ("w/route/high", 2, wait()),
            ("w", 2, cancelled("route")),
            ("w", 2, wait()),
        ];
        let parked = board("w", &self::journal(&entries), &[(2, "node-1")]);
        assert_eq!(
            rows(&parked),
            [
                ("route", "waiting", 1, Some("node-1")),
                ("route/low/apply", "skipped", 0, None),
                ("route/high/approve", "waiting", 1, Some("node-1")),
            ]
        );
        assert_eq!(parked.running().count(), 0);
        assert_eq!(parked.done(), 1);
        // Resumed: the switch and its step run again.
        entries.push(("w", 3, started("route", 2)));
        entries.push(("w/route/high", 3, started("approve", 2)));
        let resumed = board("w", &self::journal(&entries), &[(3, "node-2")]);
        assert_eq!(
            resumed
                .running()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["route", "route/high/approve"]
        );
    }

    #[test]
    fn a_cancelled_step_an_unknown_token_and_foreign_entries() {
        let mut journal = journal(&[
            ("w3", 9, started("a", 1)),
            ("w3", 9, JournalEntry::StepCancelled { step: "a".into() }),
        ]);
        journal.push((9, r#"{"not": "a recorded entry"}"#.to_string()));
        let board = board("w3", &journal, &[]);
        assert_eq!(rows(&board), [("a", "cancelled", 1, None)]);
        assert_eq!(board.running().count(), 0);
    }

    #[test]
    fn a_later_entry_without_a_known_node_keeps_the_one_seen() {
        let mut board = StepBoard::default();
        board.apply(&started("a", 1), Some("node-1".into()));
        let row = board.apply(&failed("a", 1, true), None).cloned();
        assert_eq!(
            row,
            Some(StepRow {
                name: "a".into(),
                state: StepState::Retrying,
                attempts: 1,
                node: Some("node-1".into()),
            })
        );
        assert!(
            board
                .apply(
                    &JournalEntry::RunFinished {
                        status: RunStatus::Succeeded
                    },
                    None
                )
                .is_none()
        );
    }

    #[test]
    fn an_empty_journal_has_no_steps() {
        let board = StepBoard::from_journal("w", [], |_| None);
        assert!(board.rows().is_empty());
        assert_eq!(board.done(), 0);
    }

    #[test]
    fn states_and_their_words() {
        let all = [
            (StepState::Running, "running", false),
            (StepState::Retrying, "retrying", false),
            (StepState::Succeeded, "succeeded", true),
            (StepState::Failed, "failed", true),
            (StepState::Cancelled, "cancelled", true),
            (StepState::Undone, "undone", true),
            (StepState::UndoFailed, "undo_failed", true),
        ];
        for (state, word, done) in all {
            assert_eq!((state.as_str(), state.is_done()), (word, done));
        }
    }
}
