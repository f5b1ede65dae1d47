//! Suspended runs: stopped without undoing anything, to be resumed from the journal, because a
//! step needs a capability this node lacks, because the caller asked (drain or now), or because
//! the journal refused an append (fenced).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::{Value, json};
use swarm_reactor::{
    InMemoryJournal, Journal, JournalEntry, JournalError, Middleware, Reactor, Registry,
    RunContext, RunError, RunEvent, RunOptions, RunReport, RunStatus, Step, StepContext, StepError,
    StepStatus, SuspendMode, SuspendReason, Suspension, Workflow, completed_steps,
};
use tokio::sync::watch;

/// Counts runs per step, undos and compensations.
#[derive(Clone, Default)]
struct Counter {
    runs: Arc<Mutex<HashMap<String, usize>>>,
    undos: Arc<AtomicUsize>,
    compensations: Arc<AtomicUsize>,
}

impl Counter {
    fn runs(&self, step: &str) -> usize {
        self.runs.lock().unwrap().get(step).copied().unwrap_or(0)
    }

    fn total_runs(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }

    fn undos(&self) -> usize {
        self.undos.load(Ordering::SeqCst)
    }

    fn compensations(&self) -> usize {
        self.compensations.load(Ordering::SeqCst)
    }
}

/// `count`: counts the run, sleeps `with.delay` if given, fails if `with.fail`, and returns its
/// arguments plus `{"by": <step>}`. Undo and compensate are counted (compensate gives up).
struct Count(Counter);

#[async_trait]
impl Step for Count {
    async fn run(&self, ctx: &StepContext, args: &Value) -> Result<Value, StepError> {
        *self
            .0
            .runs
            .lock()
            .unwrap()
            .entry(ctx.step.clone())
            .or_default() += 1;
        if let Some(d) = ctx.with.get("delay").and_then(Value::as_str) {
            tokio::time::sleep(humantime::parse_duration(d).unwrap()).await;
        }
        if ctx.with.get("fail").and_then(Value::as_bool) == Some(true) {
            return Err(StepError::fatal(format!("{} failed on purpose", ctx.step)));
        }
        let mut out = args.as_object().cloned().unwrap_or_default();
        out.insert("by".into(), json!(ctx.step));
        Ok(Value::Object(out))
    }

    fn can_undo(&self) -> bool {
        true
    }

    async fn undo(&self, _: &StepContext, _: &Value, _: &Value) -> Result<(), StepError> {
        self.0.undos.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn compensate(
        &self,
        _: &StepContext,
        _: &Value,
        _: &StepError,
    ) -> swarm_reactor::Compensation {
        self.0.compensations.fetch_add(1, Ordering::SeqCst);
        swarm_reactor::Compensation::Fail
    }
}

fn counting(counter: &Counter) -> Registry {
    let mut r = Registry::builtin();
    r.register("count", Count(counter.clone())).unwrap();
    r
}

fn opts(id: &str) -> RunOptions {
    RunOptions {
        run_id: Some(id.into()),
        ..RunOptions::default()
    }
}

fn with_suspend(id: &str) -> (watch::Sender<Option<SuspendMode>>, RunOptions) {
    let (tx, rx) = watch::channel(None);
    (
        tx,
        RunOptions {
            suspend: Some(rx),
            ..opts(id)
        },
    )
}

fn event_names(entries: &[JournalEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn spawn_run(
    reactor: &Reactor,
    wf: &Arc<Workflow>,
    options: RunOptions,
) -> tokio::task::JoinHandle<RunReport> {
    let (reactor, wf) = (reactor.clone(), wf.clone());
    tokio::spawn(async move { reactor.run(wf, Default::default(), options).await })
}

/// Records `on_run_suspended` calls and the statuses `run_finished` saw.
#[derive(Default)]
struct SeesSuspensions {
    suspended: Mutex<Vec<Suspension>>,
    finished: Mutex<Vec<RunStatus>>,
}

#[async_trait]
impl Middleware for SeesSuspensions {
    async fn on_run_suspended(&self, _run: &RunContext, suspension: &Suspension) {
        self.suspended.lock().unwrap().push(suspension.clone());
    }

    async fn run_finished(&self, _run: &RunContext, report: &RunReport) {
        self.finished.lock().unwrap().push(report.status);
    }
}

/// `a` then `gpu_step` (requires gpu, fed by `a`) then `c` (fed by `gpu_step`); `slow` runs
/// alongside from the start.
const GPU_CHAIN: &str = r#"
name: chain
steps:
  - { name: slow, run: count, with: { delay: 1s } }
  - { name: a, run: count, arguments: { v: value(7) } }
  - { name: gpu_step, run: count, requires: [gpu], arguments: { from_a: result(a.v) } }
  - { name: c, run: count, arguments: { from_gpu: result(gpu_step.from_a), after: result(slow.by) } }
return: c
"#;

#[tokio::test(start_paused = true)]
async fn a_missing_capability_suspends_before_the_step_then_another_node_resumes() {
    let journal = Arc::new(InMemoryJournal::new());
    let first = Counter::default();
    let wf = workflow(GPU_CHAIN, &counting(&first));
    let seen = Arc::new(SeesSuspensions::default());
    let events = Arc::new(Mutex::new(Vec::<RunEvent>::new()));
    let sink = events.clone();
    let cpu_node = Reactor::new()
        .with_journal(journal.clone())
        .with_capabilities(["cpu"])
        .suspend_on_missing_capability(true)
        .with_middleware_arc(seen.clone())
        .on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let report = cpu_node.run(wf, Default::default(), opts("r1")).await;

    assert_eq!(report.status, RunStatus::Suspended);
    assert!(report.suspended() && !report.succeeded());
    let expected = Suspension {
        reason: SuspendReason::MissingCapability {
            capability: "gpu".into(),
        },
        step: Some("gpu_step".into()),
    };
    assert_eq!(report.suspended, Some(expected.clone()));
    assert_eq!(report.error, None);
    assert_eq!(report.result, Value::Null);
    // `slow` was running when `gpu_step` became ready: it was let finish (1s of paused time).
    assert!(report.elapsed >= ms(1000), "{:?}", report.elapsed);
    assert_eq!(
        statuses(&report),
        vec![
            ("slow".to_owned(), "succeeded".to_owned()),
            ("a".to_owned(), "succeeded".to_owned()),
            ("gpu_step".to_owned(), "skipped".to_owned()),
            ("c".to_owned(), "skipped".to_owned()),
        ]
    );
    assert!(report.undone.is_empty());
    assert_eq!(first.undos(), 0);
    assert_eq!(first.runs("gpu_step"), 0);

    // The journal ends with `RunSuspended`, not `RunFinished`.
    let entries = journal.snapshot("r1");
    assert_eq!(
        entries.last(),
        Some(&JournalEntry::RunSuspended {
            reason: expected.reason.clone(),
            step: Some("gpu_step".into()),
        })
    );
    assert!(
        !event_names(&entries).contains(&"run_finished".to_owned()),
        "{entries:?}"
    );
    let done: Vec<String> = completed_steps(&entries)
        .into_iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(done.len(), 2);

    // The report, the hook and the events.
    let v: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["status"], json!("suspended"));
    assert_eq!(
        v["suspended"],
        json!({"reason": {"kind": "missing_capability", "capability": "gpu"}, "step": "gpu_step"})
    );
    assert!(report.render_table().contains(
        "suspended: step \"gpu_step\": requires capability \"gpu\", which this node does not have"
    ));
    assert_eq!(*seen.suspended.lock().unwrap(), vec![expected.clone()]);
    assert_eq!(*seen.finished.lock().unwrap(), vec![RunStatus::Suspended]);
    let events = events.lock().unwrap().clone();
    let n = events.len();
    assert!(n >= 2);
    assert_eq!(
        events[n - 2],
        RunEvent::RunSuspended {
            run_id: "r1".into(),
            reason: expected.reason.clone(),
            step: Some("gpu_step".into()),
        }
    );
    assert_eq!(
        events[n - 2].to_string(),
        "run r1: suspended at step gpu_step: requires capability \"gpu\", which this node does not have"
    );
    assert!(matches!(
        events[n - 1],
        RunEvent::RunFinished {
            status: RunStatus::Suspended,
            ..
        }
    ));

    // A node with the capability resumes: only the remaining steps run, fed by earlier results.
    let second = Counter::default();
    let wf = workflow(GPU_CHAIN, &counting(&second));
    let gpu_node = Reactor::new()
        .with_journal(journal.clone())
        .with_capabilities(["cpu", "gpu"])
        .suspend_on_missing_capability(true);
    let report = gpu_node.run(wf, Default::default(), opts("r1")).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert!(!report.suspended());
    assert_eq!(report.suspended, None);
    assert_eq!(second.total_runs(), 2);
    assert_eq!((second.runs("gpu_step"), second.runs("c")), (1, 1));
    assert_eq!(
        report.result,
        json!({"from_gpu": 7, "after": "slow", "by": "c"})
    );
    assert!(report.step("a").unwrap().resumed);
    assert!(report.step("slow").unwrap().resumed);
    assert!(
        serde_json::to_value(&report)
            .unwrap()
            .get("suspended")
            .is_none()
    );
    assert!(matches!(
        journal.snapshot("r1").last(),
        Some(JournalEntry::RunFinished {
            status: RunStatus::Succeeded
        })
    ));
    // Every step ran exactly once over both runs.
    for step in ["slow", "a", "gpu_step", "c"] {
        assert_eq!(first.runs(step) + second.runs(step), 1, "{step}");
    }
}

#[tokio::test(start_paused = true)]
async fn without_the_option_a_missing_capability_still_fails_and_undoes() {
    let counter = Counter::default();
    let wf = workflow(GPU_CHAIN, &counting(&counter));
    let report = Reactor::new()
        .with_capabilities(["cpu"])
        .run(wf, Default::default(), opts("r2"))
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.suspended, None);
    assert!(
        report
            .error
            .as_ref()
            .unwrap()
            .to_string()
            .contains("requires capability \"gpu\", which this node does not have"),
        "{:?}",
        report.error
    );
    assert_eq!(report.step("gpu_step").unwrap().status, StepStatus::Failed);
    // `a` completed and is undone; `slow` was cancelled.
    assert_eq!(report.undone, vec!["a"]);
    assert_eq!(counter.undos(), 1);
    assert_eq!(report.step("slow").unwrap().status, StepStatus::Cancelled);
    assert!(
        serde_json::to_value(&report)
            .unwrap()
            .get("suspended")
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_failing_while_others_finish_fails_the_run_despite_a_missing_capability() {
    let counter = Counter::default();
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: count }
  - { name: doomed, run: count, with: { delay: 1s, fail: true } }
  - { name: gpu_step, run: count, requires: [gpu], arguments: { x: result(a) } }
"#,
        &counting(&counter),
    );
    let report = Reactor::new()
        .with_capabilities(["cpu"])
        .suspend_on_missing_capability(true)
        .run(wf, Default::default(), opts("r3"))
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.suspended, None);
    assert!(
        matches!(report.error, Some(RunError::StepFailed { ref step, .. }) if step == "doomed")
    );
    assert_eq!(report.undone, vec!["a"]);
    assert_eq!(counter.undos(), 1);
    assert_eq!(report.step("gpu_step").unwrap().status, StepStatus::Skipped);
}

const SLEEPY: &str = r#"
name: w
steps:
  - { name: first, run: count, arguments: { v: value(1) } }
  - { name: nap, run: count, with: { delay: 1s }, arguments: { v: result(first.v) } }
  - { name: after, run: count, arguments: { v: result(nap.v) } }
return: after
"#;

#[tokio::test(start_paused = true)]
async fn drain_lets_the_running_step_finish_then_suspends() {
    let journal = Arc::new(InMemoryJournal::new());
    let counter = Counter::default();
    let wf = workflow(SLEEPY, &counting(&counter));
    let reactor = Reactor::new().with_journal(journal.clone());
    let (suspend, options) = with_suspend("r4");
    let handle = spawn_run(&reactor, &wf, options);
    tokio::time::sleep(ms(100)).await;
    suspend.send(Some(SuspendMode::Drain)).unwrap();
    let report = handle.await.unwrap();

    assert_eq!(report.status, RunStatus::Suspended);
    assert_eq!(
        report.suspended,
        Some(Suspension {
            reason: SuspendReason::Requested,
            step: None
        })
    );
    assert_eq!(report.error, None);
    assert!(report.elapsed >= ms(1000), "{:?}", report.elapsed);
    assert_eq!(report.step("first").unwrap().status, StepStatus::Succeeded);
    assert_eq!(report.step("nap").unwrap().status, StepStatus::Succeeded);
    assert_eq!(report.step("after").unwrap().status, StepStatus::Skipped);
    assert_eq!(counter.undos(), 0);
    assert_eq!(
        journal.snapshot("r4").last(),
        Some(&JournalEntry::RunSuspended {
            reason: SuspendReason::Requested,
            step: None
        })
    );

    // Resumed: only `after` runs.
    let again = Counter::default();
    let wf = workflow(SLEEPY, &counting(&again));
    let report = Reactor::new()
        .with_journal(journal.clone())
        .run(wf, Default::default(), opts("r4"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(again.total_runs(), 1);
    assert_eq!(again.runs("after"), 1);
    assert_eq!(report.result, json!({"v": 1, "by": "after"}));
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_finds_nothing_left_to_do_succeeds() {
    let counter = Counter::default();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: only, run: count, with: { delay: 1s } }\nreturn: only.by\n",
        &counting(&counter),
    );
    let (suspend, options) = with_suspend("r5");
    let handle = spawn_run(&Reactor::new(), &wf, options);
    tokio::time::sleep(ms(100)).await;
    suspend.send(Some(SuspendMode::Drain)).unwrap();
    let report = handle.await.unwrap();
    assert!(report.succeeded(), "{:?}", report.suspended);
    assert_eq!(report.result, json!("only"));
}

#[tokio::test(start_paused = true)]
async fn now_cancels_the_running_step_and_undoes_nothing() {
    let journal = Arc::new(InMemoryJournal::new());
    let counter = Counter::default();
    let wf = workflow(
        r#"
name: w
steps:
  - { name: first, run: count }
  - { name: long, run: count, with: { delay: 1h }, arguments: { x: result(first) } }
  - { name: after, run: count, arguments: { x: result(long) } }
"#,
        &counting(&counter),
    );
    let reactor = Reactor::new().with_journal(journal.clone());
    let (suspend, options) = with_suspend("r6");
    let handle = spawn_run(&reactor, &wf, options);
    tokio::time::sleep(ms(100)).await;
    suspend.send(Some(SuspendMode::Now)).unwrap();
    let report = handle.await.unwrap();

    assert_eq!(report.status, RunStatus::Suspended);
    assert_eq!(
        report.suspended.as_ref().map(|s| &s.reason),
        Some(&SuspendReason::Requested)
    );
    assert!(report.elapsed < ms(1000), "{:?}", report.elapsed);
    assert_eq!(report.step("first").unwrap().status, StepStatus::Succeeded);
    assert_eq!(report.step("long").unwrap().status, StepStatus::Cancelled);
    assert_eq!(report.step("after").unwrap().status, StepStatus::Skipped);
    assert_eq!(counter.undos(), 0);
    assert_eq!(counter.compensations(), 0);
    assert!(report.undone.is_empty());
    let names = event_names(&journal.snapshot("r6"));
    assert_eq!(
        names[names.len() - 2..],
        ["step_cancelled".to_owned(), "run_suspended".to_owned()]
    );
    assert!(!names.contains(&"step_undone".to_owned()));

    // Resumed: `long` runs again (it never finished), `first` does not.
    let again = Counter::default();
    let wf2 = workflow(
        r#"
name: w
steps:
  - { name: first, run: count }
  - { name: long, run: count, with: { delay: 1s }, arguments: { x: result(first) } }
  - { name: after, run: count, arguments: { x: result(long) } }
"#,
        &counting(&again),
    );
    let report = Reactor::new()
        .with_journal(journal)
        .run(wf2, Default::default(), opts("r6"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(
        (again.runs("first"), again.runs("long"), again.runs("after")),
        (0, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn drain_can_be_escalated_to_now() {
    let counter = Counter::default();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: first, run: count }\n  - { name: long, run: count, with: { delay: 1h }, arguments: { x: result(first) } }\n",
        &counting(&counter),
    );
    let (suspend, options) = with_suspend("r7");
    let handle = spawn_run(&Reactor::new(), &wf, options);
    tokio::time::sleep(ms(100)).await;
    suspend.send(Some(SuspendMode::Drain)).unwrap();
    tokio::time::sleep(ms(100)).await;
    assert!(!handle.is_finished());
    suspend.send(Some(SuspendMode::Now)).unwrap();
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Suspended);
    assert_eq!(report.step("long").unwrap().status, StepStatus::Cancelled);
    assert_eq!(counter.undos(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_while_draining_wins_and_undoes() {
    let counter = Counter::default();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: first, run: count }\n  - { name: long, run: count, with: { delay: 1h }, arguments: { x: result(first) } }\n",
        &counting(&counter),
    );
    let (suspend, mut options) = with_suspend("r8");
    let (cancel, cancelled) = watch::channel(false);
    options.cancel = Some(cancelled);
    let handle = spawn_run(&Reactor::new(), &wf, options);
    tokio::time::sleep(ms(100)).await;
    suspend.send(Some(SuspendMode::Drain)).unwrap();
    tokio::time::sleep(ms(100)).await;
    cancel.send(true).unwrap();
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.error, Some(RunError::Cancelled));
    assert_eq!(report.undone, vec!["first"]);
    assert_eq!(counter.undos(), 1);
}

#[tokio::test(start_paused = true)]
async fn drain_reaches_into_a_map_and_the_resume_skips_its_done_elements() {
    let journal = Arc::new(InMemoryJournal::new());
    let spec = r#"
name: w
steps:
  - name: each
    run: map
    arguments: { items: "value([1, 2, 3, 4])" }
    with: { max_concurrency: 1, step: { run: count, with: { delay: 1s } } }
return: each
"#;
    let counter = Counter::default();
    let wf = workflow(spec, &counting(&counter));
    let reactor = Reactor::new().with_journal(journal.clone());
    let (suspend, options) = with_suspend("r9");
    let handle = spawn_run(&reactor, &wf, options);
    tokio::time::sleep(ms(1500)).await;
    suspend.send(Some(SuspendMode::Drain)).unwrap();
    let report = handle.await.unwrap();
    assert_eq!(report.status, RunStatus::Suspended);
    assert_eq!(report.step("each").unwrap().status, StepStatus::Cancelled);
    assert_eq!((counter.runs("each[0]"), counter.runs("each[1]")), (1, 1));
    assert_eq!(counter.total_runs(), 2);
    assert_eq!(counter.undos(), 0);

    let again = Counter::default();
    let wf = workflow(spec, &counting(&again));
    let report = Reactor::new()
        .with_journal(journal)
        .run(wf, Default::default(), opts("r9"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!((again.runs("each[2]"), again.runs("each[3]")), (1, 1));
    assert_eq!(again.total_runs(), 2);
    let items: Vec<Value> = report
        .result
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item"].clone())
        .collect();
    assert_eq!(items, vec![json!(1), json!(2), json!(3), json!(4)]);
}

#[tokio::test(start_paused = true)]
async fn a_missing_capability_inside_a_sub_workflow_suspends_the_parent() {
    let journal = Arc::new(InMemoryJournal::new());
    let spec = r#"
name: parent
steps:
  - { name: before, run: count }
  - name: sub
    run: workflow
    arguments: { n: result(before.by) }
    with:
      spec:
        name: child
        inputs: [n]
        steps:
          - { name: one, run: count, arguments: { n: input(n) } }
          - { name: two, run: count, requires: [gpu], arguments: { prev: result(one.n) } }
        return: two
  - { name: after, run: count, arguments: { x: result(sub.prev) } }
return: after
"#;
    let counter = Counter::default();
    let wf = workflow(spec, &counting(&counter));
    let report = Reactor::new()
        .with_journal(journal.clone())
        .with_capabilities(["cpu"])
        .suspend_on_missing_capability(true)
        .run(wf, Default::default(), opts("r10"))
        .await;
    assert_eq!(report.status, RunStatus::Suspended, "{:?}", report.error);
    assert_eq!(
        report.suspended,
        Some(Suspension {
            reason: SuspendReason::MissingCapability {
                capability: "gpu".into()
            },
            step: Some("sub/two".into()),
        })
    );
    assert_eq!(counter.undos(), 0);
    assert_eq!(report.step("after").unwrap().status, StepStatus::Skipped);

    let again = Counter::default();
    let wf = workflow(spec, &counting(&again));
    let report = Reactor::new()
        .with_journal(journal)
        .with_capabilities(["cpu", "gpu"])
        .suspend_on_missing_capability(true)
        .run(wf, Default::default(), opts("r10"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(
        (
            again.runs("before"),
            again.runs("sub/one"),
            again.runs("sub/two"),
            again.runs("after")
        ),
        (0, 0, 1, 1)
    );
    assert_eq!(report.result, json!({"x": "before", "by": "after"}));
}

/// A journal that accepts `limit` appends, then refuses every one: the lease moved on.
struct Fencing {
    inner: InMemoryJournal,
    limit: usize,
    appended: AtomicUsize,
}

impl Fencing {
    fn after(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: InMemoryJournal::new(),
            limit,
            appended: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Journal for Fencing {
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        if self.appended.fetch_add(1, Ordering::SeqCst) >= self.limit {
            return Err(JournalError::Fenced("stale token".into()));
        }
        self.inner.append(run_id, entry).await
    }

    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        self.inner.entries(run_id).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_append_suspends_the_run_fenced_and_undoes_nothing() {
    let counter = Counter::default();
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: count }
  - { name: long, run: count, with: { delay: 1h } }
  - { name: b, run: count, arguments: { x: result(a) } }
  - { name: c, run: count, arguments: { x: result(b) } }
"#,
        &counting(&counter),
    );
    // run_started, a and long started, a succeeded: then b's start is refused.
    let journal = Fencing::after(4);
    let seen = Arc::new(SeesSuspensions::default());
    let report = Reactor::new()
        .with_journal(journal.clone())
        .with_middleware_arc(seen.clone())
        .run(wf, Default::default(), opts("r11"))
        .await;
    assert_eq!(report.status, RunStatus::Suspended);
    let expected = Suspension {
        reason: SuspendReason::Fenced {
            error: "stale token".into(),
        },
        step: Some("b".into()),
    };
    assert_eq!(report.suspended, Some(expected.clone()));
    assert_eq!(
        report.error,
        Some(RunError::Journal(JournalError::Fenced(
            "stale token".into()
        )))
    );
    // Stopped at once: the hour-long step did not hold it up.
    assert!(report.elapsed < ms(1000), "{:?}", report.elapsed);
    assert_eq!(report.step("a").unwrap().status, StepStatus::Succeeded);
    assert_eq!(report.step("long").unwrap().status, StepStatus::Cancelled);
    assert_eq!(report.step("b").unwrap().status, StepStatus::Cancelled);
    assert_eq!(report.step("c").unwrap().status, StepStatus::Skipped);
    assert_eq!(counter.undos(), 0);
    assert_eq!(counter.compensations(), 0);
    assert!(report.undone.is_empty());
    assert_eq!((counter.runs("b"), counter.runs("c")), (0, 0));
    // Nothing after the refusal made it in, and no end entry was attempted into it.
    assert_eq!(journal.inner.snapshot("r11").len(), 4);
    assert_eq!(*seen.suspended.lock().unwrap(), vec![expected]);
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(
        v["suspended"],
        json!({"reason": {"kind": "fenced", "error": "stale token"}, "step": "b"})
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_append_during_a_failure_stops_compensate_and_undo() {
    let counter = Counter::default();
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: count }
  - { name: b, run: count, arguments: { x: result(a) } }
  - { name: c, run: count, with: { fail: true }, arguments: { x: result(b) } }
"#,
        &counting(&counter),
    );
    // run_started, a, b started and succeeded, c started: c's failure is refused.
    let report = Reactor::new()
        .with_journal(Fencing::after(6))
        .run(wf, Default::default(), opts("r12"))
        .await;
    assert_eq!(report.status, RunStatus::Suspended);
    assert!(matches!(
        report.suspended,
        Some(Suspension { reason: SuspendReason::Fenced { .. }, ref step }) if step.as_deref() == Some("c")
    ));
    assert_eq!(counter.runs("c"), 1);
    assert_eq!(counter.compensations(), 0);
    assert_eq!(counter.undos(), 0);

    // One entry later (c's failure recorded, compensate gives up): the first undo (b) runs
    // but cannot be recorded, and the chain stops there: a is not undone.
    let counter = Counter::default();
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: count }
  - { name: b, run: count, arguments: { x: result(a) } }
  - { name: c, run: count, with: { fail: true }, arguments: { x: result(b) } }
"#,
        &counting(&counter),
    );
    let report = Reactor::new()
        .with_journal(Fencing::after(7))
        .run(wf, Default::default(), opts("r13"))
        .await;
    assert_eq!(report.status, RunStatus::Suspended);
    assert!(matches!(
        report.suspended,
        Some(Suspension { reason: SuspendReason::Fenced { .. }, ref step }) if step.as_deref() == Some("b")
    ));
    assert_eq!(counter.compensations(), 1);
    assert_eq!(counter.undos(), 1);
    assert_eq!(report.step("a").unwrap().status, StepStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_refused_end_of_run_entry_fences_a_finished_run() {
    let counter = Counter::default();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: count }\nreturn: a\n",
        &counting(&counter),
    );
    // run_started, a started and succeeded: run_finished is refused.
    let report = Reactor::new()
        .with_journal(Fencing::after(3))
        .run(wf, Default::default(), opts("r14"))
        .await;
    assert_eq!(report.status, RunStatus::Suspended);
    assert_eq!(report.result, Value::Null);
    assert!(matches!(
        report.suspended,
        Some(Suspension {
            reason: SuspendReason::Fenced { .. },
            step: None
        })
    ));
}

#[tokio::test]
async fn now_kills_a_running_exec_child() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = dir.path().join("hang.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$$\" > {}\nsleep 30\n", pids.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wf = workflow(
        &format!(
            "name: w\nsteps:\n  - {{ name: e, run: exec, with: {{ command: [\"{}\"] }} }}\n",
            script.display()
        ),
        &registry(&Probe::default()),
    );
    let (suspend, options) = with_suspend("r15");
    let handle = spawn_run(&Reactor::new(), &wf, options);
    let mut pid = None;
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(&pids)
            && s.ends_with('\n')
        {
            pid = s.trim().parse::<u32>().ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = pid.expect("the script never started");
    suspend.send(Some(SuspendMode::Now)).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the run did not stop")
        .unwrap();
    assert_eq!(report.status, RunStatus::Suspended);
    assert_eq!(report.step("e").unwrap().status, StepStatus::Cancelled);
    let mut dead = false;
    for _ in 0..200 {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        });
        if !alive {
            dead = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(dead, "process {pid} survived the suspension");
}

#[test]
fn journal_entries_and_reasons_serialize_snake_case() {
    let e = JournalEntry::RunSuspended {
        reason: SuspendReason::MissingCapability {
            capability: "gpu".into(),
        },
        step: Some("b".into()),
    };
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(
        v,
        json!({"event": "run_suspended", "reason": {"kind": "missing_capability", "capability": "gpu"}, "step": "b"})
    );
    assert_eq!(serde_json::from_value::<JournalEntry>(v).unwrap(), e);
    assert_eq!(
        serde_json::to_value(SuspendReason::Requested).unwrap(),
        json!({"kind": "requested"})
    );
    assert_eq!(
        serde_json::to_value(RunStatus::Suspended).unwrap(),
        json!("suspended")
    );
    assert_eq!(RunStatus::Suspended.to_string(), "suspended");
    assert_eq!(
        serde_json::to_value(SuspendMode::Drain).unwrap(),
        json!("drain")
    );
}
