//! Steps that wait: a `signal` step parks its run until the signal comes
//! (or its timeout passes), and a long `sleep` parks it until due, when the
//! reactor has a [`Waits`] (a cluster's replica). Resumed from the journal,
//! the waiting step's clock is the time it first waited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use swarm_reactor::{
    InMemoryJournal, Reactor, Registry, RunOptions, RunReport, RunStatus, SuspendReason, Waits,
};

/// Signals and a clock the test sets.
#[derive(Default)]
struct FakeWaits {
    signals: Mutex<HashMap<String, Value>>,
    now: AtomicU64,
}

impl Waits for FakeWaits {
    fn signal(&self, _run_id: &str, name: &str) -> Option<Value> {
        self.signals.lock().unwrap().get(name).cloned()
    }
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn durable_sleep_after(&self) -> Duration {
        Duration::from_secs(10)
    }
}

const APPROVAL: &str = "name: approval\nsteps:\n  - { name: draft, run: echo, with: { value: 1 } }\n  - { name: approve, run: signal, with: { name: approve, timeout: 1h }, wait_for: [draft] }\n  - { name: ship, run: echo, arguments: { by: result(approve.by) } }\nreturn: ship.by\n";

async fn run_once(reactor: &Reactor, yaml: &str) -> RunReport {
    let wf = workflow(yaml, &Registry::builtin());
    let options = RunOptions {
        run_id: Some("r1".into()),
        ..RunOptions::default()
    };
    reactor.run(wf, inputs(json!({})), options).await
}

fn wait_of(report: &RunReport) -> (Option<String>, Option<u64>, u64) {
    match report.suspended.as_ref().map(|s| s.reason.clone()) {
        Some(SuspendReason::Wait {
            signal,
            until,
            since,
        }) => (signal, until, since),
        other => panic!("not waiting: {other:?} ({:?})", report.status),
    }
}

#[tokio::test]
async fn a_signal_step_parks_the_run_until_the_signal_then_returns_its_payload() {
    let waits = Arc::new(FakeWaits::default());
    waits.now.store(1_000, Ordering::SeqCst);
    let journal = Arc::new(InMemoryJournal::new());
    let reactor = Reactor::new()
        .with_journal(journal.clone())
        .with_waits(waits.clone());
    let first = run_once(&reactor, APPROVAL).await;
    assert_eq!(first.status, RunStatus::Suspended);
    assert_eq!(
        wait_of(&first),
        (Some("approve".into()), Some(1_000 + 3_600_000), 1_000)
    );
    // Woken without the signal (a resume, a new holder): it waits on, its
    // clock kept from the first wait.
    waits.now.store(5_000, Ordering::SeqCst);
    let again = run_once(&reactor, APPROVAL).await;
    assert_eq!(wait_of(&again).2, 1_000);
    waits
        .signals
        .lock()
        .unwrap()
        .insert("approve".into(), json!({"by": "alice"}));
    let done = run_once(&reactor, APPROVAL).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result, json!("alice"));
}

#[tokio::test]
async fn a_signal_that_does_not_come_in_time_fails_the_step() {
    let waits = Arc::new(FakeWaits::default());
    waits.now.store(1_000, Ordering::SeqCst);
    let reactor = Reactor::new()
        .with_journal(Arc::new(InMemoryJournal::new()))
        .with_waits(waits.clone());
    assert_eq!(
        run_once(&reactor, APPROVAL).await.status,
        RunStatus::Suspended
    );
    waits.now.store(1_000 + 3_600_000, Ordering::SeqCst);
    let late = run_once(&reactor, APPROVAL).await;
    assert_eq!(late.status, RunStatus::Failed);
    let error = late.error.map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("did not arrive within 1h"), "{error}");
}

#[tokio::test]
async fn without_a_cluster_a_signal_step_fails_saying_why() {
    let reactor = Reactor::new();
    let report = run_once(&reactor, APPROVAL).await;
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("only a cluster delivers signals"), "{error}");
}

#[tokio::test]
async fn a_long_sleep_parks_the_run_and_a_short_one_sleeps_in_place() {
    let waits = Arc::new(FakeWaits::default());
    waits.now.store(1_000, Ordering::SeqCst);
    let reactor = Reactor::new()
        .with_journal(Arc::new(InMemoryJournal::new()))
        .with_waits(waits.clone());
    let yaml = "name: nap\nsteps:\n  - { name: short, run: sleep, with: { duration: 10ms } }\n  - { name: long, run: sleep, with: { duration: 1h }, wait_for: [short] }\n  - { name: after, run: echo, with: { value: woke }, wait_for: [long] }\nreturn: after\n";
    let first = run_once(&reactor, yaml).await;
    assert_eq!(wait_of(&first), (None, Some(1_000 + 3_600_000), 1_000));
    waits.now.store(1_000 + 3_600_000, Ordering::SeqCst);
    let done = run_once(&reactor, yaml).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result, json!("woke"));
}

#[test]
fn a_signal_step_without_a_name_is_refused_naming_the_field() {
    let yaml = "name: bad\nsteps:\n  - { name: s, run: signal, with: { timeout: soon } }\n";
    let err = swarm_reactor::validate(yaml, &Registry::builtin(), std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"name\" is required"), "{err}");
    assert!(err.contains("\"timeout\""), "{err}");
}

#[tokio::test]
async fn a_step_with_on_exhausted_pause_parks_the_run_instead_of_failing_it() {
    let yaml = "name: fragile\nsteps:\n  - { name: done, run: echo, with: { value: 1 }, undo: { run: echo } }\n  - { name: flaky, run: fail, with: { message: upstream 503 }, max_retries: 1, backoff: { initial: 1ms }, on_exhausted: pause, wait_for: [done] }\n";
    let journal = Arc::new(InMemoryJournal::new());
    let reactor = Reactor::new().with_journal(journal);
    let report = run_once(&reactor, yaml).await;
    assert_eq!(report.status, RunStatus::Suspended, "{:?}", report.error);
    let suspension = report.suspended.expect("suspended");
    assert!(
        matches!(&suspension.reason, SuspendReason::Exhausted { error } if error.contains("upstream 503")),
        "{suspension:?}"
    );
    assert_eq!(suspension.step.as_deref(), Some("flaky"));
    assert!(
        report.undone.is_empty(),
        "nothing undone: {:?}",
        report.undone
    );
    let bad = "name: b\nsteps:\n  - { name: s, run: echo, on_exhausted: retry }\n";
    let err = swarm_reactor::validate(bad, &Registry::builtin(), std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("on_exhausted") && err.contains("fail, pause"),
        "{err}"
    );
}
