//! `swarmctl workflow run FILE --input k=v ... [--priority P] [--requires
//! a,b] [--key K] [--wait [--timeout 5m]]`: validates a workflow here, as
//! `run-local` does, then submits it as a work item of type `workflow` whose
//! payload is `{"spec": <file text>, "inputs": {...}, "base_dir": <absolute
//! directory of FILE>}`. A node claims and runs it.
//!
//! Without `--wait` it prints the submitted item (`-o json`: the item JSON).
//! With `--wait` it follows the item's events: on stderr a progress bar of
//! steps done / total with the step running now (redrawn in place on a
//! terminal, plain lines otherwise) and a line per notable event; at the end
//! the result on stdout (`-o json`: `{"id", "status", "result", "error",
//! "steps"}`), exit 1 when the item failed or was cancelled.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use swarm_claims::WORKFLOW_KIND;
use swarm_client::proto::{GetWorkRequest, ReadConsistency, WorkEvent, WorkItem};
use swarm_reactor::{JournalRecord, StepBoard, parse_input};

use crate::commands::Context;
use crate::commands::work::submit::{SubmitOptions, submit};
use crate::commands::work::watch::{EventSink, follow};
use crate::output::{OutputFormat, fields, or_dash, print_json, print_text};
use crate::views::work_event::news;
use crate::views::work_item::{json_text, status_name};
use crate::views::workflow_steps::{board_of, steps_json, steps_table};

#[derive(Debug, Args)]
pub struct Run {
    /// Workflow spec, YAML or JSON
    pub file: PathBuf,
    /// A run input as NAME=VALUE; VALUE is JSON if it parses, a string otherwise (repeat per input)
    #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
    pub inputs: Vec<(String, Value)>,
    #[command(flatten)]
    pub options: SubmitOptions,
    /// Follow the run to its end, showing progress on stderr
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this long (humantime: 30s, 5m; default: no limit)
    #[arg(long, value_parser = humantime::parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
}

pub async fn run(ctx: &Context, args: Run) -> Result<()> {
    let (workflow, payload) = super::workflow_payload(&args.file, args.inputs)?;
    let item = submit(ctx, WORKFLOW_KIND, payload, args.options, 0)
        .await
        .with_context(|| format!("run workflow {:?}", workflow.name()))?;
    if !args.wait {
        return crate::commands::work::print_item(ctx, &item);
    }

    eprintln!(
        "submitted workflow {:?} as work item {}",
        workflow.name(),
        item.id
    );
    let total = workflow.spec().steps.len();
    let mut progress = Progress::new(&item.id, total, std::io::stderr().is_terminal());
    let followed = follow(&ctx.client, &item.id, true, &mut progress);
    let ended = match args.timeout {
        Some(limit) => match tokio::time::timeout(limit, followed).await {
            Ok(ended) => ended,
            Err(_) => {
                progress.finish();
                bail!(
                    "gave up waiting for work item {} after {}: it is still running (`swarmctl work watch {}` follows it)",
                    item.id,
                    humantime::format_duration(limit),
                    item.id
                );
            }
        },
        None => followed.await,
    };
    progress.finish();
    ended?;

    let item = ctx
        .client
        .get_work(GetWorkRequest {
            id: item.id.clone(),
            consistency: ReadConsistency::Linearizable as i32,
        })
        .await
        .with_context(|| format!("get work item {:?}", item.id))?;
    print_outcome(ctx.output, &item)?;
    let status = status_name(item.status);
    if matches!(status, "failed" | "cancelled") {
        bail!(
            "workflow {:?} {status}: {}",
            workflow.name(),
            item.error.as_deref().unwrap_or("no error recorded")
        );
    }
    Ok(())
}

/// `{"id", "status", "result", "error", "steps"}`: how a waited-for run ended.
pub fn outcome_json(item: &WorkItem) -> Value {
    json!({
        "id": item.id,
        "status": status_name(item.status),
        "result": item.result_json.as_deref().map_or(Value::Null, json_text),
        "error": item.error.as_deref().filter(|e| !e.is_empty()),
        "steps": steps_json(&board_of(item)),
    })
}

fn print_outcome(output: OutputFormat, item: &WorkItem) -> Result<()> {
    match output {
        OutputFormat::Json => print_json(&outcome_json(item)),
        OutputFormat::Table => {
            let result = match item.result_json.as_deref().map_or(Value::Null, json_text) {
                Value::Null => "-".to_string(),
                other => other.to_string(),
            };
            let mut text = fields(&[
                ("id", item.id.clone()),
                ("status", status_name(item.status).to_string()),
                ("result", result),
                (
                    "error",
                    or_dash(item.error.as_deref().filter(|e| !e.is_empty())),
                ),
            ]);
            let steps = board_of(item);
            if !steps.rows().is_empty() {
                text.push('\n');
                text.push_str(&steps_table(&steps).render());
            }
            print_text(&text)
        }
    }
}

/// The live view of a run on stderr: the steps board, folded from step
/// events, and who holds the item now (step events name no agent: the
/// holder recorded them).
struct Progress {
    item_id: String,
    total: usize,
    board: StepBoard,
    holder: Option<String>,
    /// Redraw the bar in place with `\r`; otherwise print a plain line
    /// whenever what it shows changes.
    terminal: bool,
    /// The bar on screen now (terminal), or the last one printed (plain).
    shown: Option<String>,
}

impl Progress {
    fn new(item_id: &str, total: usize, terminal: bool) -> Progress {
        Progress {
            item_id: item_id.to_string(),
            total,
            board: StepBoard::default(),
            holder: None,
            terminal,
            shown: None,
        }
    }

    /// `[########............] 2/5 steps  running: build on node-2`.
    fn bar(&self) -> String {
        bar_text(&self.board, self.total)
    }

    /// Writes `line` to stderr above the bar.
    fn say(&mut self, line: &str) {
        self.clear();
        eprintln!("{line}");
        self.draw();
    }

    fn draw(&mut self) {
        let bar = self.bar();
        if self.terminal {
            eprint!("\r{bar}");
            let _ = std::io::stderr().flush();
            self.shown = Some(bar);
        } else if self.shown.as_deref() != Some(bar.as_str()) {
            eprintln!("{bar}");
            self.shown = Some(bar);
        }
    }

    /// Wipes the bar off a terminal line (plain output has nothing to wipe).
    fn clear(&mut self) {
        if self.terminal
            && let Some(shown) = self.shown.take()
        {
            eprint!("\r{}\r", " ".repeat(shown.chars().count()));
        }
    }

    /// Leaves the bar where it is, on a line of its own.
    fn finish(&mut self) {
        if self.terminal && self.shown.take().is_some() {
            eprintln!();
        }
    }
}

impl EventSink for Progress {
    fn event(&mut self, event: &WorkEvent) -> Result<()> {
        if matches!(event.kind.as_str(), "claimed" | "handed_off") && !event.agent.is_empty() {
            self.holder = Some(event.agent.clone());
        }
        if event.kind == "step"
            && let Some(recorded) = JournalRecord::parse(&event.outcome_json)
            && recorded.run == self.item_id
        {
            self.board.apply(&recorded.entry, self.holder.clone());
        }
        match news(&self.item_id, event) {
            Some(line) => self.say(&line),
            None => {
                self.clear();
                self.draw();
            }
        }
        Ok(())
    }

    fn notice(&mut self, text: &str) {
        self.say(text);
    }
}

const BAR_WIDTH: usize = 20;

fn bar_text(board: &StepBoard, total: usize) -> String {
    let done = board.done().min(total.max(board.done()));
    let total = total.max(board.rows().len());
    let filled = (done * BAR_WIDTH).checked_div(total).unwrap_or(BAR_WIDTH);
    let mut text = format!(
        "[{}{}] {done}/{total} steps",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled)
    );
    let running: Vec<String> = board
        .running()
        .map(|r| match &r.node {
            Some(node) => format!("{} on {node}", r.name),
            None => r.name.clone(),
        })
        .collect();
    if !running.is_empty() {
        text.push_str("  running: ");
        text.push_str(&running.join(", "));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use swarm_client::proto::{HolderRecord, JournalEntry, WorkStatus};
    use swarm_reactor::JournalEntry as Entry;

    use super::*;

    #[test]
    fn the_bar_counts_done_steps_and_names_the_running_ones() {
        let mut board = StepBoard::default();
        assert_eq!(bar_text(&board, 4), "[....................] 0/4 steps");
        board.apply(
            &Entry::StepSucceeded {
                step: "a".into(),
                attempt: 1,
                arguments: json!({}),
                result: json!(null),
                compensated: false,
            },
            Some("node-1".into()),
        );
        board.apply(
            &Entry::StepStarted {
                step: "b".into(),
                attempt: 1,
            },
            Some("node-2".into()),
        );
        assert_eq!(
            bar_text(&board, 4),
            "[#####...............] 1/4 steps  running: b on node-2"
        );
        assert_eq!(
            bar_text(&StepBoard::default(), 0),
            "[####################] 0/0 steps"
        );
    }

    #[test]
    fn progress_tracks_the_holder_for_step_nodes() {
        let mut p = Progress::new("w1", 2, false);
        let claimed = WorkEvent {
            seq: 1,
            kind: "claimed".into(),
            agent: "node-2".into(),
            token: 4,
            ..Default::default()
        };
        p.event(&claimed).unwrap();
        let step = WorkEvent {
            seq: 2,
            kind: "step".into(),
            outcome_json: r#"{"run":"w1","entry":{"event":"step_started","step":"a","attempt":1}}"#
                .into(),
            ..Default::default()
        };
        p.event(&step).unwrap();
        let sub = WorkEvent {
            seq: 3,
            kind: "step".into(),
            outcome_json:
                r#"{"run":"w1/a","entry":{"event":"step_started","step":"x","attempt":1}}"#.into(),
            ..Default::default()
        };
        p.event(&sub).unwrap();
        assert_eq!(
            p.board.rows().len(),
            1,
            "sub-workflow steps are not counted"
        );
        assert_eq!(p.board.rows()[0].node.as_deref(), Some("node-2"));
        assert_eq!(
            p.shown.as_deref(),
            Some("[....................] 0/2 steps  running: a on node-2")
        );
    }

    #[test]
    fn outcome_json_shape() {
        let item = WorkItem {
            id: "w1".into(),
            status: WorkStatus::Completed as i32,
            result_json: Some(r#"{"ok":true}"#.into()),
            history: vec![HolderRecord {
                agent: "node-1".into(),
                token: 3,
                granted_at_ms: 1,
                ended: "completed".into(),
            }],
            journal: vec![JournalEntry {
                step: "a".into(),
                token: 3,
                outcome_json: r#"{"run":"w1","entry":{"event":"step_succeeded","step":"a","attempt":1,"arguments":{},"result":1}}"#.into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            outcome_json(&item),
            json!({
                "id": "w1",
                "status": "completed",
                "result": {"ok": true},
                "error": null,
                "steps": [{"name": "a", "status": "succeeded", "attempts": 1, "node": "node-1"}],
            })
        );
    }
}
