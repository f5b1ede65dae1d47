//! Issue 10: typed journal errors. Whatever the error, a failed append stops the run at once and
//! undoes nothing; only a [`JournalError::Fenced`] one says another holder owns the run. A
//! journal out of reach ([`JournalError::Unavailable`]) or an append whose outcome is unknown
//! ([`JournalError::Unknown`]) suspends with [`SuspendReason::JournalUnavailable`], for the same
//! holder to resume later.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use serde_json::{Value, json};
use swarm_reactor::{
    InMemoryJournal, Journal, JournalEntry, JournalError, Middleware, Reactor, RunContext,
    RunError, RunEvent, RunOptions, RunReport, RunStatus, SuspendReason, Suspension,
};

/// A journal that takes `limit` appends, then fails every one with `error`; with `read_error`,
/// reading fails too.
struct Failing {
    inner: InMemoryJournal,
    limit: usize,
    /// Every append tried, failed ones included: shows whether the run tried to write its end.
    tried: Mutex<Vec<JournalEntry>>,
    error: JournalError,
    read_error: Option<JournalError>,
}

impl Failing {
    fn after(limit: usize, error: JournalError) -> Arc<Self> {
        Arc::new(Self {
            inner: InMemoryJournal::new(),
            limit,
            tried: Mutex::default(),
            error,
            read_error: None,
        })
    }

    fn unreadable(error: JournalError) -> Arc<Self> {
        Arc::new(Self {
            inner: InMemoryJournal::new(),
            limit: usize::MAX,
            tried: Mutex::default(),
            error: error.clone(),
            read_error: Some(error),
        })
    }

    fn tried(&self) -> Vec<JournalEntry> {
        self.tried.lock().unwrap().clone()
    }
}

#[async_trait]
impl Journal for Failing {
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        let tried = {
            let mut tried = self.tried.lock().unwrap();
            tried.push(entry.clone());
            tried.len()
        };
        if tried > self.limit {
            return Err(self.error.clone());
        }
        self.inner.append(run_id, entry).await
    }

    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        match &self.read_error {
            Some(e) => Err(e.clone()),
            None => self.inner.entries(run_id).await,
        }
    }
}

/// Records `on_run_suspended` calls.
#[derive(Default)]
struct SeesSuspensions(Mutex<Vec<Suspension>>);

#[async_trait]
impl Middleware for SeesSuspensions {
    async fn on_run_suspended(&self, _run: &RunContext, suspension: &Suspension) {
        self.0.lock().unwrap().push(suspension.clone());
    }
}

fn opts(id: &str) -> RunOptions {
    RunOptions {
        run_id: Some(id.into()),
        ..RunOptions::default()
    }
}

fn unavailable() -> JournalError {
    JournalError::Unavailable("no leader for 5s".into())
}

fn unknown() -> JournalError {
    JournalError::Unknown("leader lost before the entry committed".into())
}

fn undos(probe: &Probe) -> Vec<String> {
    probe
        .log()
        .into_iter()
        .filter(|l| l.starts_with("undo:"))
        .collect()
}

/// What a run against a failing journal produced, and what it told middleware and events.
struct Stopped {
    report: RunReport,
    probe: Probe,
    middleware: Vec<Suspension>,
    events: Vec<RunEvent>,
}

/// Runs `yaml` (its steps may use the `probe` kind) against `journal`.
async fn run_against(yaml: &str, journal: Arc<Failing>, run_id: &str) -> Stopped {
    let probe = Probe::default();
    let wf = workflow(yaml, &registry(&probe));
    let seen = Arc::new(SeesSuspensions::default());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let report = Reactor::new()
        .with_journal(journal)
        .with_middleware_arc(seen.clone())
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .run(wf, Default::default(), opts(run_id))
        .await;
    let middleware = seen.0.lock().unwrap().clone();
    let events = events.lock().unwrap().clone();
    Stopped {
        report,
        probe,
        middleware,
        events,
    }
}

/// The run ended suspended at `step` because the journal failed with `error`, and said so to
/// middleware and in its events.
fn assert_suspended_by(s: &Stopped, error: &JournalError, step: Option<&str>) {
    let report = &s.report;
    let message = error.message().to_owned();
    let reason = match error {
        JournalError::Fenced(_) => SuspendReason::Fenced { error: message },
        _ => SuspendReason::JournalUnavailable { error: message },
    };
    let expected = Suspension {
        reason,
        step: step.map(Into::into),
    };
    assert_eq!(report.status, RunStatus::Suspended);
    assert_eq!(report.suspended.as_ref(), Some(&expected));
    assert_eq!(report.error, Some(RunError::Journal(error.clone())));
    assert_eq!(report.result, Value::Null);
    // A sub-run tells middleware of its own suspension first.
    assert_eq!(s.middleware.last(), Some(&expected));
    assert!(s.events.contains(&RunEvent::RunSuspended {
        run_id: report.run_id.clone(),
        reason: expected.reason,
        step: expected.step,
    }));
}

/// `a` and an hour-long step start, `a` succeeds, then `b`'s start (the fifth append) fails.
const FAIL_AT_B: &str = r#"
name: w
steps:
  - { name: a, run: probe }
  - { name: long, run: probe, with: { delay: 1h } }
  - { name: b, run: probe, arguments: { x: result(a) } }
  - { name: c, run: probe, arguments: { x: result(b) } }
"#;

/// Fails `b`'s start with `error`, and checks the run stopped at once, undid nothing and
/// did not try to write its end.
async fn fail_at_b_start(error: JournalError, run_id: &str) -> Stopped {
    let journal = Failing::after(4, error.clone());
    let s = run_against(FAIL_AT_B, journal.clone(), run_id).await;
    assert_suspended_by(&s, &error, Some("b"));
    let report = &s.report;
    assert!(report.elapsed < ms(1000), "{:?}", report.elapsed);
    assert_eq!(
        statuses(report),
        vec![
            ("a".into(), "succeeded".into()),
            ("long".into(), "cancelled".into()),
            ("b".into(), "cancelled".into()),
            ("c".into(), "skipped".into()),
        ]
    );
    assert!(report.undone.is_empty());
    assert_eq!(s.middleware.len(), 1);
    assert_eq!(undos(&s.probe), Vec::<String>::new());
    assert!(!s.probe.log().contains(&"run:b".to_owned()));
    assert_eq!(journal.inner.snapshot(run_id).len(), 4);
    let ends: Vec<_> = journal
        .tried()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                JournalEntry::RunFinished { .. } | JournalEntry::RunSuspended { .. }
            )
        })
        .collect();
    assert_eq!(ends, vec![], "the end of the run must not be written");
    s
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_append_suspends_with_journal_unavailable_and_undoes_nothing() {
    let s = fail_at_b_start(unavailable(), "u1").await;
    assert_eq!(
        s.report.suspended,
        Some(Suspension {
            reason: SuspendReason::JournalUnavailable {
                error: "no leader for 5s".into(),
            },
            step: Some("b".into()),
        })
    );
    let v = serde_json::to_value(&s.report).unwrap();
    assert_eq!(
        v["suspended"],
        json!({"reason": {"kind": "journal_unavailable", "error": "no leader for 5s"}, "step": "b"})
    );
    assert_eq!(v["error"], json!("journal unavailable: no leader for 5s"));
}

#[tokio::test(start_paused = true)]
async fn an_append_with_an_unknown_outcome_behaves_like_an_unavailable_journal() {
    let s = fail_at_b_start(unknown(), "u2").await;
    assert!(matches!(
        s.report.suspended,
        Some(Suspension {
            reason: SuspendReason::JournalUnavailable { .. },
            ..
        })
    ));
    assert_eq!(
        s.report.error.as_ref().unwrap().to_string(),
        "journal outcome unknown: leader lost before the entry committed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fenced_append_at_the_same_point_still_suspends_fenced() {
    let s = fail_at_b_start(JournalError::Fenced("stale token 4".into()), "u3").await;
    assert!(matches!(
        s.report.suspended,
        Some(Suspension {
            reason: SuspendReason::Fenced { .. },
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_journal_during_undo_stops_the_undo_chain() {
    let yaml = r#"
name: w
steps:
  - { name: a, run: probe }
  - { name: b, run: probe, arguments: { x: result(a) } }
  - { name: c, run: probe, with: { fail: true }, arguments: { x: result(b) } }
"#;
    // run_started, a and b started and succeeded, c started and failed: b's undo runs but
    // cannot be recorded, and a is not undone.
    let s = run_against(yaml, Failing::after(7, unavailable()), "u4").await;
    assert_suspended_by(&s, &unavailable(), Some("b"));
    assert_eq!(undos(&s.probe), vec!["undo:b"]);
    assert_eq!(s.report.step("a").unwrap().status.to_string(), "succeeded");
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_end_of_run_entry_suspends_a_finished_run() {
    let yaml = "name: w\nsteps:\n  - { name: a, run: probe }\nreturn: a\n";
    // run_started, a started and succeeded: run_finished fails.
    let s = run_against(yaml, Failing::after(3, unknown()), "u5").await;
    assert_suspended_by(&s, &unknown(), None);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_journal_suspends_before_anything_runs() {
    let yaml = "name: w\nsteps:\n  - { name: a, run: probe }\n";
    let journal = Failing::unreadable(unavailable());
    let s = run_against(yaml, journal.clone(), "u6").await;
    assert_suspended_by(&s, &unavailable(), None);
    assert_eq!(statuses(&s.report), vec![("a".into(), "skipped".into())]);
    assert!(s.probe.log().is_empty());
    assert_eq!(
        journal.tried(),
        vec![],
        "nothing is written to a journal that cannot be read"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fenced_read_still_fails_the_run() {
    let yaml = "name: w\nsteps:\n  - { name: a, run: probe }\n";
    let fenced = JournalError::Fenced("stale token".into());
    let s = run_against(yaml, Failing::unreadable(fenced.clone()), "u7").await;
    assert_eq!(s.report.status, RunStatus::Failed);
    assert_eq!(s.report.suspended, None);
    assert_eq!(s.report.error, Some(RunError::Journal(fenced)));
    assert!(s.probe.log().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_journal_failure_inside_a_sub_workflow_keeps_its_kind() {
    let yaml = r#"
name: w
steps:
  - name: sub
    run: workflow
    with:
      spec:
        name: child
        steps:
          - { name: one, run: probe }
          - { name: two, run: probe, arguments: { x: result(one) } }
"#;
    // run_started, sub started, the child's run_started, one started and succeeded: two's
    // start fails.
    let s = run_against(yaml, Failing::after(5, unknown()), "u8").await;
    assert_suspended_by(&s, &unknown(), Some("sub"));
    assert_eq!(s.probe.log(), vec!["run:sub/one", "end:sub/one"]);
}

#[test]
fn journal_errors_say_what_the_caller_can_do() {
    let cases = [
        (
            JournalError::Fenced("stale token".into()),
            "journal: stale token",
        ),
        (
            JournalError::Unavailable("no leader".into()),
            "journal unavailable: no leader",
        ),
        (
            JournalError::Unknown("timed out".into()),
            "journal outcome unknown: timed out",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
        assert!(text.ends_with(e.message()));
        assert_eq!(e.is_fenced(), matches!(e, JournalError::Fenced(_)));
    }
    let reason = SuspendReason::JournalUnavailable {
        error: "no leader".into(),
    };
    assert_eq!(reason.to_string(), "journal unavailable: no leader");
    let entry = JournalEntry::RunSuspended { reason, step: None };
    let v = serde_json::to_value(&entry).unwrap();
    assert_eq!(
        v,
        json!({"event": "run_suspended", "reason": {"kind": "journal_unavailable", "error": "no leader"}, "step": null})
    );
    assert_eq!(serde_json::from_value::<JournalEntry>(v).unwrap(), entry);
}
