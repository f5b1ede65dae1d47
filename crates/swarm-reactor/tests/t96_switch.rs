//! `switch`: a step that runs one of its named branches, picked by its `on`
//! argument (or its `default`), as a sub-run. The branches not taken are
//! journaled as skipped; the taken one resumes and undoes like a
//! sub-workflow. Validation checks the branches and what steps outside may
//! use of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use swarm_reactor::{
    InMemoryJournal, Journal, JournalEntry, JournalRecord, PlanFormat, Reactor, Registry,
    RunOptions, RunStatus, StepBoard, Workflow, plan,
};

/// Classifies a change, then either ships it (two steps) or asks for a
/// review (one step); `report` uses what both branches provide.
const ROUTE: &str = r#"
name: triage
inputs: [kind]
steps:
  - name: classify
    run: probe
    arguments: { kind: input(kind) }
  - name: route
    run: switch
    arguments: { on: result(classify.kind), title: value("fix typo") }
    with:
      default: review
      branches:
        ship:
          - { name: build, run: probe, arguments: { title: input(title) } }
          - { name: summary, run: probe, arguments: { built: result(build.by) } }
        review:
          - { name: summary, run: probe, arguments: { title: input(title) } }
  - name: report
    run: probe
    arguments: { summary: result(route.summary.by) }
return: report.summary
"#;

fn records(journal: &InMemoryJournal) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for run in journal.run_ids() {
        for entry in journal.snapshot(&run) {
            let text = JournalRecord {
                run: run.clone(),
                entry,
            }
            .to_json()
            .unwrap();
            out.push((1, text));
        }
    }
    out
}

fn board(journal: &InMemoryJournal, run: &str) -> Vec<(String, String)> {
    let records = records(journal);
    let board =
        StepBoard::from_journal(run, records.iter().map(|(t, s)| (*t, s.as_str())), |_| None);
    let mut rows: Vec<(String, String)> = board
        .rows()
        .iter()
        .map(|r| (r.name.clone(), r.state.as_str().to_string()))
        .collect();
    rows.sort();
    rows
}

fn runs(journal: &InMemoryJournal) -> Vec<String> {
    let mut ids = journal.run_ids();
    ids.sort();
    ids
}

async fn run_with(
    journal: &Arc<InMemoryJournal>,
    probe: &Probe,
    kind: &str,
) -> swarm_reactor::RunReport {
    let wf = workflow(ROUTE, &registry(probe));
    let reactor = Reactor::new().with_journal(journal.clone());
    let options = RunOptions {
        run_id: Some("r1".into()),
        ..RunOptions::default()
    };
    reactor
        .run(wf, inputs(json!({ "kind": kind })), options)
        .await
}

#[tokio::test]
async fn a_switch_runs_the_branch_its_value_names_and_records_the_others_as_skipped() {
    let probe = Probe::default();
    let journal = Arc::new(InMemoryJournal::new());
    let report = run_with(&journal, &probe, "ship").await;
    assert!(report.succeeded(), "{:?}", report.error);
    // The branch's steps ran as `route/ship/...`, the review branch's did not.
    let ran: Vec<String> = probe.logged("run:");
    assert_eq!(
        ran,
        vec![
            "run:classify",
            "run:route/ship/build",
            "run:route/ship/summary",
            "run:report"
        ]
    );
    assert_eq!(report.result, json!("route/ship/summary"));
    assert_eq!(runs(&journal), vec!["r1", "r1/route/ship"]);
    let taken = journal
        .snapshot("r1")
        .into_iter()
        .find(|e| matches!(e, JournalEntry::BranchTaken { .. }));
    assert_eq!(
        taken,
        Some(JournalEntry::BranchTaken {
            step: "route".into(),
            branch: "ship".into(),
            skipped: vec!["route/review/summary".into()],
        })
    );
    // The board shows every step: the taken branch's as they went, the
    // other's as skipped.
    assert_eq!(
        board(&journal, "r1"),
        vec![
            ("classify".to_string(), "succeeded".to_string()),
            ("report".into(), "succeeded".into()),
            ("route".into(), "succeeded".into()),
            ("route/review/summary".into(), "skipped".into()),
            ("route/ship/build".into(), "succeeded".into()),
            ("route/ship/summary".into(), "succeeded".into()),
        ]
    );
}

#[tokio::test]
async fn a_value_no_branch_names_takes_the_default() {
    let probe = Probe::default();
    let journal = Arc::new(InMemoryJournal::new());
    let report = run_with(&journal, &probe, "docs").await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.result, json!("route/review/summary"));
    let skipped: Vec<(String, String)> = board(&journal, "r1")
        .into_iter()
        .filter(|(_, s)| s == "skipped")
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("route/ship/build".to_string(), "skipped".to_string()),
            ("route/ship/summary".into(), "skipped".into()),
        ]
    );
}

#[tokio::test]
async fn without_a_default_a_value_no_branch_names_fails_the_step_naming_the_branches() {
    let wf = workflow(
        "name: w\nsteps:\n  - name: pick\n    run: switch\n    arguments: { on: value(7) }\n    with:\n      branches:\n        a: [ { name: x, run: echo } ]\n        '8': [ { name: y, run: echo } ]\n",
        &Registry::builtin(),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap().to_string();
    assert!(
        error.contains(
            "argument \"on\" is \"7\", which names no branch (branches: 8, a) and the switch has no default"
        ),
        "{error}"
    );
    // A number picks the branch named by its JSON text.
    let wf = workflow(
        "name: w\nsteps:\n  - name: pick\n    run: switch\n    arguments: { on: value(8) }\n    with:\n      branches:\n        a: [ { name: x, run: echo, with: { value: 1 } } ]\n        '8': { steps: [ { name: y, run: echo, with: { value: 2 } } ], return: y }\n",
        &Registry::builtin(),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.result, json!({ "pick": 2 }));
}

#[tokio::test]
async fn a_later_failure_undoes_the_taken_branch_in_reverse() {
    let probe = Probe::default();
    let wf = workflow(
        &ROUTE.replace(
            "  - name: report\n    run: probe\n",
            "  - name: report\n    run: fail\n",
        ),
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({ "kind": "ship" })).await;
    assert_eq!(report.status, RunStatus::Failed);
    let undos: Vec<String> = probe.logged("undo:");
    assert_eq!(
        undos,
        vec![
            "undo:route/ship/summary",
            "undo:route/ship/build",
            "undo:classify"
        ]
    );
    assert_eq!(report.undone, vec!["route", "classify"]);
}

#[tokio::test]
async fn a_resumed_run_goes_on_in_its_branch_without_running_done_steps_again() {
    let probe = Probe::default();
    let journal = Arc::new(InMemoryJournal::new());
    // The first holder got as far as the branch's first step.
    let first = run_with(&journal, &probe, "ship").await;
    assert!(first.succeeded());
    let mut branch = journal.snapshot("r1/route/ship");
    let cut = branch
        .iter()
        .position(|e| matches!(e, JournalEntry::StepSucceeded { step, .. } if step == "build"))
        .unwrap();
    branch.truncate(cut + 1);
    journal.replace("r1/route/ship", branch);
    let mut top = journal.snapshot("r1");
    let cut = top
        .iter()
        .position(|e| matches!(e, JournalEntry::BranchTaken { .. }))
        .unwrap();
    top.truncate(cut + 1);
    journal.replace("r1", top);

    let again = Probe::default();
    let report = run_with(&journal, &again, "ship").await;
    assert!(report.succeeded(), "{:?}", report.error);
    let ran: Vec<String> = again.logged("run:");
    assert_eq!(ran, vec!["run:route/ship/summary", "run:report"]);
    assert_eq!(report.result, json!("route/ship/summary"));
}

fn problems(yaml: &str) -> Vec<String> {
    match Workflow::parse(yaml, &registry(&Probe::default())) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.into_iter().map(|p| p.message).collect(),
    }
}

#[test]
fn validation_names_what_is_wrong_with_a_switch() {
    let one = |yaml: &str| {
        let p = problems(yaml);
        assert!(!p.is_empty(), "accepted: {yaml}");
        p.join("\n")
    };
    let base = "name: w\nsteps:\n  - name: pick\n    run: switch\n";
    let no_on = one(&format!(
        "{base}    with: {{ branches: {{ a: [ {{ name: x, run: echo }} ] }} }}\n"
    ));
    assert!(no_on.contains("needs argument \"on\""), "{no_on}");
    let no_branches = one(&format!("{base}    arguments: {{ on: value(a) }}\n"));
    assert!(no_branches.contains("with"), "{no_branches}");
    let bad_default = one(&format!(
        "{base}    arguments: {{ on: value(a) }}\n    with: {{ default: c, branches: {{ a: [ {{ name: x, run: echo }} ], b: [ {{ name: y, run: echo }} ] }} }}\n"
    ));
    assert!(
        bad_default.contains("\"with.default\": names no branch: \"c\" (branches: a, b)"),
        "{bad_default}"
    );
    let bad_branch = one(&format!(
        "{base}    arguments: {{ on: value(a) }}\n    with: {{ branches: {{ a: 3, 'x/y': [ {{ name: x, run: echo }} ] }} }}\n"
    ));
    assert!(
        bad_branch.contains("\"with.branches.a\": expected the branch's steps"),
        "{bad_branch}"
    );
    assert!(
        bad_branch.contains("must not be empty or contain '/'"),
        "{bad_branch}"
    );
    let inner = one(&format!(
        "{base}    arguments: {{ on: value(a) }}\n    with: {{ branches: {{ a: [ {{ name: x, run: nope }} ] }} }}\n"
    ));
    assert!(
        inner.contains("in branch \"a\": step \"x\" field \"run\": unknown step kind \"nope\""),
        "{inner}"
    );
    let unknown_key = one(&format!(
        "{base}    arguments: {{ on: value(a) }}\n    with: {{ branch: {{}}, branches: {{ a: [ {{ name: x, run: echo }} ] }} }}\n"
    ));
    assert!(
        unknown_key.contains("\"with.branch\": is not a known option"),
        "{unknown_key}"
    );
    // A branch's steps see the switch's arguments as inputs, and nothing else.
    let input = one(&format!(
        "{base}    arguments: {{ on: value(a) }}\n    with: {{ branches: {{ a: [ {{ name: x, run: echo, arguments: {{ t: input(title) }} }} ] }} }}\n"
    ));
    assert!(
        input.contains("refers to unknown input \"title\""),
        "{input}"
    );
}

#[test]
fn steps_outside_a_switch_use_only_what_every_branch_provides() {
    // `report` uses `route.summary`: every branch has it.
    assert_eq!(problems(ROUTE), Vec::<String>::new());
    // Only `ship` has `build`.
    let one_sided = ROUTE.replace("result(route.summary.by)", "result(route.build)");
    let p = problems(&one_sided).join("\n");
    assert!(
        p.contains("step \"report\" argument \"summary\" uses result(route.build), which not every branch of switch \"route\" provides: branch \"review\" has no step \"build\" (its steps: summary)"),
        "{p}"
    );
    // A step inside a branch is not a step of the workflow.
    let inside = ROUTE.replace("result(route.summary.by)", "result(build)");
    let p = problems(&inside).join("\n");
    assert!(
        p.contains("refers to step \"build\", which is inside branch \"ship\" of switch \"route\"; outside a switch use its result: result(route.build)"),
        "{p}"
    );
    // A branch with a `return` provides whatever it returns.
    let returns = one_sided.replace(
        "        review:\n          - { name: summary, run: probe, arguments: { title: input(title) } }\n",
        "        review:\n          steps:\n            - { name: summary, run: probe, arguments: { title: input(title) } }\n          return: summary\n",
    );
    assert_eq!(problems(&returns), Vec::<String>::new());
}

#[test]
fn the_plan_shows_each_branch_and_its_steps() {
    let wf = workflow(ROUTE, &registry(&Probe::default()));
    let text = plan::render(&wf, PlanFormat::Text);
    assert!(
        text.contains(
            "  route (switch on result(classify.kind)) after classify [undoable]\n    branch review (default):\n      summary (probe) [undoable]\n    branch ship:\n      build (probe) [undoable]\n      summary (probe) after build [undoable]\n"
        ),
        "{text}"
    );
    let mermaid = plan::render(&wf, PlanFormat::Mermaid);
    assert!(
        mermaid.contains("subgraph s1b1[\"route: ship\"]"),
        "{mermaid}"
    );
    assert!(mermaid.contains("s1 -->|review| s1b0s0"), "{mermaid}");
    assert_eq!(
        wf.branches("route")
            .unwrap()
            .iter()
            .map(|(name, w, default)| (*name, w.step_names(), *default))
            .collect::<Vec<_>>(),
        vec![
            ("review", vec!["summary"], true),
            ("ship", vec!["build", "summary"], false)
        ]
    );
    assert!(wf.branches("classify").is_none());
}

#[tokio::test]
async fn journal_entries_for_a_branch_name_their_run() {
    // The journal trait sees the branch's run id, as a cluster journal does.
    let journal = Arc::new(InMemoryJournal::new());
    let probe = Probe::default();
    run_with(&journal, &probe, "ship").await;
    let entries = journal.entries("r1/route/ship").await.unwrap();
    assert!(matches!(
        entries.first(),
        Some(JournalEntry::RunStarted { workflow, .. }) if workflow == "route/ship"
    ));
}
