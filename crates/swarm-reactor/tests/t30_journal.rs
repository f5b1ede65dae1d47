//! The journal: what a run records, resuming after a crash, and journal failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use serde_json::json;
use swarm_reactor::{
    InMemoryJournal, Journal, JournalEntry, JournalError, Reactor, RunError, RunOptions, RunStatus,
    completed_steps,
};

fn opts(id: &str) -> RunOptions {
    RunOptions {
        run_id: Some(id.into()),
        ..RunOptions::default()
    }
}

const CHAIN: &str = r#"
name: chain
steps:
  - { name: a, run: probe, with: { delay: 10ms }, arguments: { v: value(1) } }
  - { name: b, run: probe, with: { delay: 10ms }, arguments: { from_a: result(a.v) } }
  - { name: c, run: probe, with: { delay: 1h }, arguments: { from_b: result(b.from_a) } }
return: c
"#;

#[tokio::test(start_paused = true)]
async fn resume_after_a_crash_skips_succeeded_steps_and_feeds_their_results() {
    let journal = Arc::new(InMemoryJournal::new());
    let first = Probe::default();
    let wf = workflow(CHAIN, &registry(&first));
    let reactor = Reactor::new().with_journal(journal.clone());
    // The node dies while c runs: the run future is simply dropped, nothing is undone.
    let crashed = tokio::spawn({
        let (reactor, wf) = (reactor.clone(), wf.clone());
        async move { reactor.run(wf, Default::default(), opts("r1")).await }
    });
    tokio::time::sleep(ms(100)).await;
    crashed.abort();
    let _ = crashed.await;
    assert_eq!(
        first.log(),
        vec!["run:a", "end:a", "run:b", "end:b", "run:c"]
    );
    let done: Vec<String> = completed_steps(&journal.snapshot("r1"))
        .into_iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(done, vec!["a", "b"]);

    let second = Probe::default();
    let wf = workflow(CHAIN, &registry(&second));
    let report = Reactor::new()
        .with_journal(journal.clone())
        .run(wf, Default::default(), opts("r1"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(second.log(), vec!["run:c", "end:c"]);
    assert_eq!(report.result, json!({"from_b": 1, "by": "c"}));
    let a = report.step("a").unwrap();
    assert!(a.resumed);
    assert_eq!(a.attempts, 0);
}

#[tokio::test(start_paused = true)]
async fn resumed_steps_are_still_undone_when_the_run_fails() {
    let journal = Arc::new(InMemoryJournal::new());
    journal.replace(
        "r2",
        vec![
            JournalEntry::RunStarted {
                workflow: "w".into(),
                inputs: json!({}),
            },
            JournalEntry::StepSucceeded {
                step: "a".into(),
                attempt: 1,
                arguments: json!({}),
                result: json!({"id": 9}),
                compensated: false,
            },
        ],
    );
    let probe = Probe::default();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: probe }\n  - { name: b, run: fail, arguments: { id: result(a.id) } }\n",
        &registry(&probe),
    );
    let report = Reactor::new()
        .with_journal(journal.clone())
        .run(wf, Default::default(), opts("r2"))
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(probe.log(), vec!["undo:a"]);
    assert_eq!(report.undone, vec!["a"]);
    // Undone now, so a later resume would run it again.
    assert!(completed_steps(&journal.snapshot("r2")).is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_outcome_is_recorded_in_order() {
    let journal = Arc::new(InMemoryJournal::new());
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: echo, undo: { run: echo } }
  - { name: b, run: fail, max_retries: 1, backoff: { initial: 5ms, max: 5ms, jitter: false }, arguments: { x: result(a) } }
"#,
        &registry(&Probe::default()),
    );
    Reactor::new()
        .with_journal(journal.clone())
        .run(wf, Default::default(), opts("r3"))
        .await;
    let got: Vec<String> = journal
        .snapshot("r3")
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        got,
        vec![
            "run_started",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_failed",
            "step_retried",
            "step_started",
            "step_failed",
            "step_undone",
            "run_finished",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn map_elements_done_before_a_crash_are_not_run_again() {
    let journal = Arc::new(InMemoryJournal::new());
    journal.replace(
        "r4",
        vec![JournalEntry::StepSucceeded {
            step: "m[0]".into(),
            attempt: 1,
            arguments: json!({"item": "x", "index": 0}),
            result: json!("from journal"),
            compensated: false,
        }],
    );
    let probe = Probe::default();
    let wf = workflow(
        "name: w\nsteps:\n  - name: m\n    run: map\n    arguments: { items: \"value([\\\"x\\\", \\\"y\\\"])\" }\n    with: { step: { run: probe } }\nreturn: m\n",
        &registry(&probe),
    );
    let report = Reactor::new()
        .with_journal(journal)
        .run(wf, Default::default(), opts("r4"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(probe.log(), vec!["run:m[1]", "end:m[1]"]);
    assert_eq!(report.result[0], json!("from journal"));
    assert_eq!(report.result[1]["item"], json!("y"));
}

/// Fails every append of a successful step: an outcome that cannot be made durable.
struct BrokenJournal(InMemoryJournal);

#[async_trait]
impl Journal for BrokenJournal {
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        if matches!(entry, JournalEntry::StepSucceeded { .. }) {
            return Err(JournalError::Unavailable("disk on fire".into()));
        }
        self.0.append(run_id, entry).await
    }

    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        self.0.entries(run_id).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_journal_failure_stops_the_run_with_its_error() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: echo }\n",
        &registry(&Probe::default()),
    );
    let report = Reactor::new()
        .with_journal(Arc::new(BrokenJournal(InMemoryJournal::new())))
        .run(wf, Default::default(), opts("r5"))
        .await;
    assert_eq!(
        report.error,
        Some(RunError::Journal(JournalError::Unavailable(
            "disk on fire".into()
        )))
    );
}

/// A journal that tells which call recorded each entry.
#[derive(Default)]
struct Calls {
    inner: InMemoryJournal,
    /// `("append" | "deferred", entry)` in call order.
    calls: std::sync::Mutex<Vec<(&'static str, JournalEntry)>>,
}

#[async_trait]
impl Journal for Calls {
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        self.calls.lock().unwrap().push(("append", entry.clone()));
        self.inner.append(run_id, entry).await
    }

    async fn append_deferred(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        self.calls.lock().unwrap().push(("deferred", entry.clone()));
        self.inner.append(run_id, entry).await
    }

    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.entries(run_id).await
    }
}

#[tokio::test]
async fn a_pure_steps_success_is_recorded_deferred_and_any_other_outcome_at_once() {
    let journal = Arc::new(Calls::default());
    let probe = Probe::default();
    let spec = r#"
name: mixed
steps:
  - { name: a, run: echo, arguments: { v: value(1) } }
  - { name: b, run: probe, arguments: { v: result(a.v) } }
  - { name: c, run: echo, arguments: { v: result(b.v) } }
return: c.v
"#;
    let report = Reactor::new()
        .with_journal(journal.clone())
        .run(
            workflow(spec, &registry(&probe)),
            Default::default(),
            opts("p1"),
        )
        .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.result, json!(1));
    let succeeded: Vec<(&str, String)> = journal
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(call, e)| match e {
            JournalEntry::StepSucceeded { step, .. } => Some((*call, step.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        succeeded,
        [
            ("deferred", "a".to_string()),
            ("append", "b".to_string()),
            ("deferred", "c".to_string())
        ]
    );
    // The run's end is recorded at once, after everything deferred.
    let last = journal.calls.lock().unwrap().last().cloned();
    assert!(
        matches!(last, Some(("append", JournalEntry::RunFinished { .. }))),
        "{last:?}"
    );
}
