//! A workflow item's steps, decoded from its journal, as JSON and a table.
//!
//! The fold itself (journal entries to one row per step: state, attempts,
//! node) is [`swarm_reactor::StepBoard`], shared with the node's dashboard;
//! this module feeds it the wire [`WorkItem`] and renders its rows. Each row
//! is `{"name", "status", "attempts", "node"}`: `status` is the step's
//! [`StepState`](swarm_reactor::StepState) word (`running`, `retrying`,
//! `succeeded`, `failed`, `cancelled`, `undone`, `undo_failed`), `node` the
//! agent that held the token its latest entry was recorded under, or null.
//! Steps appear in the order they were first journaled.

use std::collections::HashMap;

use serde_json::{Value, json};
use swarm_client::proto::WorkItem;
use swarm_reactor::{JournalEntry, JournalRecord, StepBoard, StepRow};

use crate::output::{Table, or_dash};

/// The steps of `item`'s top-level run (whose id is the item id), from its
/// journal and history.
pub fn board_of(item: &WorkItem) -> StepBoard {
    let agents: HashMap<u64, &str> = item
        .history
        .iter()
        .map(|h| (h.token, h.agent.as_str()))
        .collect();
    StepBoard::from_journal(
        &item.id,
        item.journal
            .iter()
            .map(|j| (j.token, j.outcome_json.as_str())),
        |token| agents.get(&token).map(|a| (*a).to_string()),
    )
}

fn row_json(row: &StepRow) -> Value {
    json!({
        "name": row.name,
        "status": row.state.as_str(),
        "attempts": row.attempts,
        "node": row.node,
    })
}

pub fn steps_json(board: &StepBoard) -> Value {
    Value::Array(board.rows().iter().map(row_json).collect())
}

pub fn steps_table(board: &StepBoard) -> Table {
    let mut table = Table::new(&["STEP", "STATUS", "ATTEMPTS", "NODE"]);
    for r in board.rows() {
        table.push(vec![
            r.name.clone(),
            r.state.as_str().to_string(),
            r.attempts.to_string(),
            or_dash(r.node.as_deref()),
        ]);
    }
    table
}

/// What one journal entry says, in a few words, for event lines:
/// `started (attempt 2)`, `failed on attempt 1, retrying: boom`, `undone`.
pub fn describe(entry: &JournalEntry) -> String {
    match entry {
        JournalEntry::RunStarted { workflow, .. } => format!("run of {workflow:?} started"),
        JournalEntry::StepStarted { attempt, .. } => format!("started (attempt {attempt})"),
        JournalEntry::StepSucceeded {
            attempt,
            compensated,
            ..
        } => {
            if *compensated {
                format!("compensated after attempt {attempt}")
            } else {
                format!("succeeded (attempt {attempt})")
            }
        }
        JournalEntry::StepFailed {
            attempt,
            error,
            will_retry: true,
            ..
        } => format!("failed on attempt {attempt}, retrying: {error}"),
        JournalEntry::StepFailed {
            attempt,
            error,
            will_retry: false,
            ..
        } => format!("failed on attempt {attempt}: {error}"),
        JournalEntry::StepRetried {
            attempt, delay_ms, ..
        } => format!("attempt {attempt} in {delay_ms}ms"),
        JournalEntry::StepCancelled { .. } => "cancelled".to_string(),
        JournalEntry::StepUndone { .. } => "undone".to_string(),
        JournalEntry::StepUndoFailed { error, .. } => format!("undo failed: {error}"),
        JournalEntry::RunFinished { status } => format!("run {status}"),
        JournalEntry::BranchTaken {
            branch, skipped, ..
        } => match skipped.len() {
            0 => format!("took branch {branch:?}"),
            n => format!(
                "took branch {branch:?}, skipped {n} step{}",
                if n == 1 { "" } else { "s" }
            ),
        },
        JournalEntry::RunSuspended { reason, step } => match step {
            Some(step) => format!("run suspended at step {step:?}: {reason}"),
            None => format!("run suspended: {reason}"),
        },
    }
}

/// The step an entry concerns, as people read it: `build` in the top-level
/// run, `deploy/build` inside the sub-workflow run by step `deploy`.
pub fn step_label(item_id: &str, recorded: &JournalRecord) -> Option<String> {
    let step = recorded.entry.step();
    let sub_run = recorded
        .run
        .strip_prefix(item_id)
        .and_then(|rest| rest.strip_prefix('/'));
    match (sub_run, step) {
        (Some(sub), Some(step)) => Some(format!("{sub}/{step}")),
        (Some(sub), None) => Some(sub.to_string()),
        (None, step) => step.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use swarm_client::proto::{HolderRecord, JournalEntry as PbEntry};
    use swarm_reactor::RunStatus;

    use super::*;

    fn recorded(run: &str, entry: JournalEntry) -> String {
        let entry = serde_json::to_value(&entry).unwrap();
        json!({"run": run, "entry": entry}).to_string()
    }

    fn journal(entries: &[(&str, u64, JournalEntry)]) -> Vec<PbEntry> {
        entries
            .iter()
            .map(|(run, token, entry)| PbEntry {
                step: "x".into(),
                token: *token,
                outcome_json: recorded(run, entry.clone()),
            })
            .collect()
    }

    fn holder(agent: &str, token: u64) -> HolderRecord {
        HolderRecord {
            agent: agent.into(),
            token,
            granted_at_ms: 1,
            ended: String::new(),
        }
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
        let item = WorkItem {
            id: "w1".into(),
            history: vec![holder("node-1", 4), holder("node-3", 7)],
            journal: journal(&[
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
            ]),
            ..Default::default()
        };
        let board = board_of(&item);
        assert_eq!(
            steps_json(&board),
            json!([
                {"name": "a", "status": "succeeded", "attempts": 1, "node": "node-1"},
                {"name": "b", "status": "succeeded", "attempts": 2, "node": "node-3"},
                {"name": "c", "status": "running", "attempts": 1, "node": "node-3"},
            ])
        );
        assert_eq!(board.done(), 2);
        assert_eq!(
            board.running().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn a_cancelled_step_and_an_unknown_token_and_foreign_entries() {
        let mut entries = journal(&[
            ("w3", 9, started("a", 1)),
            ("w3", 9, JournalEntry::StepCancelled { step: "a".into() }),
        ]);
        entries.push(PbEntry {
            step: "run".into(),
            token: 9,
            outcome_json: r#"{"not": "a recorded entry"}"#.into(),
        });
        let item = WorkItem {
            id: "w3".into(),
            journal: entries,
            ..Default::default()
        };
        assert_eq!(
            steps_json(&board_of(&item)),
            json!([{"name": "a", "status": "cancelled", "attempts": 1, "node": null}])
        );
    }

    #[test]
    fn an_item_without_journal_has_no_steps() {
        let board = board_of(&WorkItem::default());
        assert_eq!(steps_json(&board), json!([]));
        assert_eq!(
            steps_table(&board).render(),
            "STEP  STATUS  ATTEMPTS  NODE\n"
        );
    }

    #[test]
    fn labels_and_descriptions() {
        let top = JournalRecord {
            run: "w1".into(),
            entry: failed("b", 1, true),
        };
        assert_eq!(step_label("w1", &top).as_deref(), Some("b"));
        assert_eq!(describe(&top.entry), "failed on attempt 1, retrying: boom");
        let sub = JournalRecord {
            run: "w1/deploy".into(),
            entry: succeeded("push", 1),
        };
        assert_eq!(step_label("w1", &sub).as_deref(), Some("deploy/push"));
        assert_eq!(describe(&sub.entry), "succeeded (attempt 1)");
        let finished = JournalRecord {
            run: "w1".into(),
            entry: JournalEntry::RunFinished {
                status: RunStatus::Succeeded,
            },
        };
        assert_eq!(step_label("w1", &finished), None);
        assert_eq!(describe(&finished.entry), "run succeeded");
    }

    #[test]
    fn recorded_parses_what_swarmd_writes() {
        let text = r#"{"run":"w1","entry":{"event":"step_started","step":"a","attempt":1}}"#;
        assert_eq!(
            JournalRecord::parse(text),
            Some(JournalRecord {
                run: "w1".into(),
                entry: started("a", 1)
            })
        );
        assert_eq!(JournalRecord::parse("null"), None);
    }
}
