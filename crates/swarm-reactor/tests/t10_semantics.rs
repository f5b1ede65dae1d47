//! Scheduling semantics: data flow, retries, backoff, undo, compensate, concurrency, timeouts,
//! map and workflow composition, events and middleware.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;
use swarm_reactor::{
    InMemoryJournal, JournalEntry, MetricsMiddleware, Reactor, RunError, RunEvent, RunOptions,
    RunStatus, StepStatus, TracingMiddleware,
};

#[tokio::test(start_paused = true)]
async fn diamond_passes_results_along_both_paths() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: diamond
inputs: [n]
steps:
  - name: top
    run: echo
    arguments: { n: input(n) }
  - name: left
    run: probe
    arguments: { from_top: result(top.n), side: value("left") }
  - name: right
    run: probe
    arguments: { from_top: result(top.n), side: value("right") }
  - name: bottom
    run: echo
    arguments: { l: result(left), r: result(right.side) }
return: bottom
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({"n": 7})).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(
        report.result,
        json!({"l": {"from_top": 7, "side": "left", "by": "left"}, "r": "right"})
    );
    assert!(report.steps.iter().all(|s| s.attempts == 1));
}

#[tokio::test(start_paused = true)]
async fn no_return_gives_every_result_by_name() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: echo, with: { value: 1 } }\n  - { name: b, run: echo, with: { value: 2 } }\n",
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.result, json!({"a": 1, "b": 2}));
}

#[tokio::test(start_paused = true)]
async fn retries_make_exactly_max_retries_plus_one_attempts() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: retries
steps:
  - name: flaky
    run: probe
    with: { fail: true }
    max_retries: 3
    backoff: { initial: 10ms, max: 1s, factor: 2.0, jitter: false }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.step("flaky").unwrap().attempts, 4);
    assert_eq!(probe.attempt_times.lock().unwrap().len(), 4);
    match &report.error {
        Some(RunError::StepFailed { step, attempts, .. }) => {
            assert_eq!((step.as_str(), *attempts), ("flaky", 4));
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn fail_kind_succeeds_after_its_failures_within_retries() {
    let wf = workflow(
        r#"
name: w
steps:
  - name: f
    run: fail
    with: { times: 2 }
    max_retries: 2
    backoff: { initial: 5ms, max: 5ms, jitter: false }
    arguments: { x: value(1) }
"#,
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.step("f").unwrap().attempts, 3);
    assert_eq!(report.result, json!({"f": {"x": 1}}));
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_are_not_retried() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: f, run: fail, with: { retryable: false }, max_retries: 5 }\n",
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.step("f").unwrap().attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_grow_and_respect_max() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: backoff
steps:
  - name: flaky
    run: probe
    with: { fail: true }
    max_retries: 5
    backoff: { initial: 100ms, max: 500ms, factor: 2.0, jitter: false }
"#,
        &registry(&probe),
    );
    run(&Reactor::new(), &wf, json!({})).await;
    let times = probe.attempt_times.lock().unwrap().clone();
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    assert_eq!(gaps, vec![100, 200, 400, 500, 500]);
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_is_bounded_and_reproducible_with_a_seed() {
    let delays = |seed: u64| async move {
        let probe = Probe::default();
        let journal = Arc::new(InMemoryJournal::new());
        let wf = workflow(
            r#"
name: jitter
steps:
  - name: flaky
    run: probe
    with: { fail: true }
    max_retries: 4
    backoff: { initial: 100ms, max: 1s, factor: 3.0, jitter: true }
"#,
            &registry(&probe),
        );
        let reactor = Reactor::new().with_seed(seed).with_journal(journal.clone());
        let opts = RunOptions {
            run_id: Some("r".into()),
            ..RunOptions::default()
        };
        reactor.run(wf, Default::default(), opts).await;
        journal
            .snapshot("r")
            .into_iter()
            .filter_map(|e| match e {
                JournalEntry::StepRetried { delay_ms, .. } => Some(delay_ms),
                _ => None,
            })
            .collect::<Vec<u64>>()
    };
    let a = delays(42).await;
    let b = delays(42).await;
    assert_eq!(a, b, "same seed, same delays");
    assert_eq!(a.len(), 4);
    for (i, (d, base)) in a.iter().zip([100u64, 300, 900, 1000]).enumerate() {
        assert!(
            *d >= base / 2 && *d <= base,
            "retry {i}: {d}ms not in [{}, {base}]",
            base / 2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn undo_runs_in_reverse_completion_order_for_completed_steps_only() {
    let probe = Probe::default();
    // a finishes first, then c, then b; d depends on b and fails; e never starts.
    let wf = workflow(
        r#"
name: undo
steps:
  - { name: a, run: probe, with: { delay: 10ms } }
  - { name: b, run: probe, with: { delay: 30ms } }
  - { name: c, run: probe, with: { delay: 20ms } }
  - { name: d, run: probe, with: { fail: true }, arguments: { x: result(b) } }
  - { name: e, run: probe, arguments: { x: result(d) } }
  - { name: slow, run: probe, with: { delay: 10s } }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    let undos: Vec<String> = probe.logged("undo:");
    assert_eq!(undos, vec!["undo:b", "undo:c", "undo:a"]);
    assert_eq!(report.undone, vec!["b", "c", "a"]);
    assert_eq!(
        statuses(&report),
        vec![
            ("a".into(), "undone".into()),
            ("b".into(), "undone".into()),
            ("c".into(), "undone".into()),
            ("d".into(), "failed".into()),
            ("e".into(), "skipped".into()),
            ("slow".into(), "cancelled".into()),
        ]
    );
    // The in-flight step was stopped before any undo ran.
    let log = probe.log();
    assert!(!log.contains(&"end:slow".to_owned()));
    let first_undo = log.iter().position(|l| l.starts_with("undo:")).unwrap();
    assert!(log[..first_undo].contains(&"fail:d".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn spec_undo_actions_get_arguments_and_result() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: w
steps:
  - name: a
    run: echo
    arguments: { k: value(1) }
    undo: { run: probe }
  - { name: b, run: fail, arguments: { x: result(a) } }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.undone, vec!["a"]);
    assert_eq!(probe.log()[0], "run:a.undo");
}

#[tokio::test(start_paused = true)]
async fn compensate_replacement_reaches_later_steps() {
    let wf = workflow(
        r#"
name: compensate
steps:
  - name: risky
    run: fail
    max_retries: 1
    backoff: { initial: 1ms, max: 1ms }
    compensate: { run: echo, with: { value: { score: 0, source: "fallback" } } }
  - name: after
    run: echo
    arguments: { score: result(risky.score) }
return: after.score
"#,
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.result, json!(0));
    let risky = report.step("risky").unwrap();
    assert!(risky.compensated);
    assert_eq!(risky.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn failing_compensate_fails_the_run() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: fail, compensate: { run: fail } }\n",
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn max_concurrency_is_never_exceeded() {
    let probe = Probe::default();
    let mut steps = String::new();
    for i in 0..12 {
        steps.push_str(&format!(
            "  - {{ name: s{i}, run: probe, with: {{ delay: {}ms }} }}\n",
            10 + (i * 7) % 30
        ));
    }
    let wf = workflow(
        &format!("name: w\nmax_concurrency: 3\nsteps:\n{steps}"),
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded());
    assert_eq!(probe.max_running(), 3);
}

#[tokio::test(start_paused = true)]
async fn async_false_steps_run_alone() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: probe, with: { delay: 50ms } }
  - { name: b, run: probe, with: { delay: 50ms } }
  - { name: alone, run: probe, with: { delay: 50ms }, async: false }
  - { name: c, run: probe, with: { delay: 50ms } }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded());
    let log = probe.log();
    let start = log.iter().position(|l| l == "run:alone").unwrap();
    let end = log.iter().position(|l| l == "end:alone").unwrap();
    assert_eq!(
        end,
        start + 1,
        "something ran alongside the async: false step: {log:?}"
    );
}

/// Real time: three independent 300 ms sleeps finish together, not one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_run_concurrently() {
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: sleep, with: { duration: 300ms } }
  - { name: b, run: sleep, with: { duration: 300ms } }
  - { name: c, run: sleep, with: { duration: 300ms } }
"#,
        &registry(&Probe::default()),
    );
    let t0 = std::time::Instant::now();
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded());
    assert!(t0.elapsed() < ms(800), "took {:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn step_timeout_fails_the_attempt_and_retries() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: w
steps:
  - name: slow
    run: probe
    with: { delay: 10s }
    timeout: 100ms
    max_retries: 1
    backoff: { initial: 1ms, max: 1ms }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.step("slow").unwrap().attempts, 2);
    let err = report.error.unwrap().to_string();
    assert!(err.contains("timed out after 100ms"), "{err}");
    assert!(report.elapsed < ms(1000));
}

#[tokio::test(start_paused = true)]
async fn run_timeout_cancels_and_undoes() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: w
timeout: 1s
steps:
  - { name: quick, run: probe, with: { delay: 10ms } }
  - { name: slow, run: probe, with: { delay: 1h } }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.error, Some(RunError::TimedOut(ms(1000))));
    assert_eq!(report.step("slow").unwrap().status, StepStatus::Cancelled);
    assert_eq!(report.undone, vec!["quick"]);
}

#[tokio::test(start_paused = true)]
async fn external_cancel_stops_the_run() {
    let probe = Probe::default();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: probe }\n  - { name: b, run: probe, with: { delay: 1h }, arguments: { x: result(a) } }\n",
        &registry(&probe),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let opts = RunOptions {
        cancel: Some(rx),
        ..RunOptions::default()
    };
    let handle =
        tokio::spawn(async move { Reactor::new().run(wf, Default::default(), opts).await });
    tokio::time::sleep(ms(100)).await;
    tx.send(true).unwrap();
    let report = handle.await.unwrap();
    assert_eq!(report.error, Some(RunError::Cancelled));
    assert_eq!(report.undone, vec!["a"]);
    assert_eq!(report.step("b").unwrap().status, StepStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn missing_inputs_fail_before_anything_runs() {
    let probe = Probe::default();
    let wf = workflow(
        "name: w\ninputs: [x]\nsteps:\n  - { name: a, run: probe, arguments: { x: input(x) } }\n",
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({"y": 1})).await;
    assert!(matches!(report.error, Some(RunError::InvalidInputs(ref p)) if p.len() == 2));
    assert!(probe.log().is_empty());
    assert_eq!(report.step("a").unwrap().status, StepStatus::Skipped);
}

#[tokio::test(start_paused = true)]
async fn a_missing_result_path_fails_the_step_naming_the_argument() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: echo, with: { value: {} } }\n  - { name: b, run: echo, arguments: { x: result(a.nope) } }\n",
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    let err = report.error.unwrap().to_string();
    assert!(
        err.contains("argument \"x\": result of step \"a\" has no field \"nope\""),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn capabilities_gate_steps() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: echo, requires: [gpu] }\n",
        &registry(&Probe::default()),
    );
    let ok = Reactor::new().with_capabilities(["gpu"]);
    assert!(run(&ok, &wf, json!({})).await.succeeded());
    let no = Reactor::new().with_capabilities(["cpu"]);
    let report = run(&no, &wf, json!({})).await;
    assert!(
        report
            .error
            .unwrap()
            .to_string()
            .contains("requires capability \"gpu\"")
    );
}

#[tokio::test(start_paused = true)]
async fn map_collects_results_in_order_and_bounds_concurrency() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: w
inputs: [files]
steps:
  - name: each
    run: map
    arguments: { items: input(files), prefix: value("f-") }
    with:
      max_concurrency: 2
      step: { run: probe, with: { delay: 20ms } }
return: each
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({"files": ["x", "y", "z", "w"]})).await;
    assert!(report.succeeded(), "{:?}", report.error);
    let items: Vec<_> = report
        .result
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["item"].clone(), r["index"].clone(), r["prefix"].clone()))
        .collect();
    assert_eq!(
        items,
        vec![
            (json!("x"), json!(0), json!("f-")),
            (json!("y"), json!(1), json!("f-")),
            (json!("z"), json!(2), json!("f-")),
            (json!("w"), json!(3), json!("f-")),
        ]
    );
    assert_eq!(probe.max_running(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_map_element_undoes_the_completed_ones() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: w
steps:
  - name: each
    run: map
    arguments: { items: "value([1, 2, 3])" }
    with:
      max_concurrency: 1
      step: { run: probe }
  - { name: boom, run: fail, arguments: { x: result(each) } }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.undone, vec!["each"]);
    let undos: Vec<String> = probe.logged("undo:");
    assert_eq!(undos, vec!["undo:each[2]", "undo:each[1]", "undo:each[0]"]);
}

#[tokio::test(start_paused = true)]
async fn sub_workflow_returns_its_result_and_is_undone_as_a_unit() {
    let probe = Probe::default();
    let wf = workflow(
        r#"
name: parent
steps:
  - name: prepare
    run: probe
  - name: inner
    run: workflow
    arguments: { n: value(5) }
    with:
      spec:
        name: child
        inputs: [n]
        steps:
          - { name: one, run: probe, arguments: { n: input(n) } }
          - { name: two, run: probe, arguments: { prev: result(one.n) } }
        return: two.prev
  - name: boom
    run: fail
    arguments: { got: result(inner), p: result(prepare) }
"#,
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    let undos: Vec<String> = probe.logged("undo:");
    assert_eq!(
        undos,
        vec!["undo:inner/two", "undo:inner/one", "undo:prepare"]
    );
    assert_eq!(report.undone, vec!["inner", "prepare"]);
}

#[tokio::test(start_paused = true)]
async fn events_show_each_step_start_and_end() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let reactor = Reactor::new().on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: echo }\n  - { name: b, run: fail, with: { times: 1 }, max_retries: 1, backoff: { initial: 1ms, max: 1ms, jitter: false } }\n",
        &registry(&Probe::default()),
    );
    let report = run(&reactor, &wf, json!({})).await;
    assert!(report.succeeded());
    let events = events.lock().unwrap().clone();
    let kinds: Vec<String> = events
        .iter()
        .filter(|e| matches!(e, RunEvent::StepStarted { step, .. } | RunEvent::StepSucceeded { step, .. } if step == "b")
            || matches!(e, RunEvent::StepFailed { .. } | RunEvent::StepRetrying { .. }))
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "step b: started (attempt 1)",
            "step b: failed (attempt 1, will retry): failing as asked (attempt 1)",
            "step b: retrying in 1ms (attempt 2)",
            "step b: started (attempt 2)",
            "step b: succeeded (attempt 2, 0ms)",
        ]
    );
    assert!(matches!(events.first(), Some(RunEvent::RunStarted { .. })));
    assert!(matches!(
        events.last(),
        Some(RunEvent::RunFinished {
            status: RunStatus::Succeeded,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn metrics_and_tracing_middleware_see_every_outcome() {
    let metrics = Arc::new(MetricsMiddleware::new());
    let reactor = Reactor::new()
        .with_middleware(TracingMiddleware)
        .with_middleware_arc(metrics.clone());
    let wf = workflow(
        r#"
name: w
steps:
  - { name: a, run: echo, undo: { run: echo } }
  - { name: b, run: fail, max_retries: 2, backoff: { initial: 1ms, max: 1ms }, arguments: { x: result(a) } }
"#,
        &registry(&Probe::default()),
    );
    let report = run(&reactor, &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(metrics.step_tally("echo", "succeeded").count, 1);
    assert_eq!(metrics.step_tally("fail", "failed").count, 3);
    assert_eq!(metrics.step_tally("fail", "retried").count, 2);
    assert_eq!(metrics.step_tally("echo", "undone").count, 1);
    assert_eq!(metrics.run_tally("failed").count, 1);
    let text = metrics.render_prometheus();
    assert!(
        text.contains("swarm_reactor_steps_total{kind=\"fail\",outcome=\"failed\"} 3"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn middleware_can_enrich_the_step_context() {
    use async_trait::async_trait;
    use swarm_reactor::{Middleware, RunContext, StepContext};

    struct Tenant;
    #[async_trait]
    impl Middleware for Tenant {
        async fn run_started(&self, run: &mut RunContext) {
            run.metadata.insert("tenant".into(), json!("acme"));
        }
        async fn step_started(&self, step: &mut StepContext) {
            step.metadata
                .insert("seen_attempt".into(), json!(step.attempt));
        }
    }
    struct ReadMeta;
    #[async_trait]
    impl swarm_reactor::Step for ReadMeta {
        async fn run(
            &self,
            ctx: &StepContext,
            _args: &serde_json::Value,
        ) -> Result<serde_json::Value, swarm_reactor::StepError> {
            Ok(json!(ctx.metadata))
        }
    }
    let mut reg = registry(&Probe::default());
    reg.register("meta", ReadMeta).unwrap();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: m, run: meta }\nreturn: m\n",
        &reg,
    );
    let report = run(&Reactor::new().with_middleware(Tenant), &wf, json!({})).await;
    assert_eq!(report.result, json!({"tenant": "acme", "seen_attempt": 1}));
}

#[tokio::test(start_paused = true)]
async fn a_rust_step_can_compensate_and_undo() {
    use async_trait::async_trait;
    use swarm_reactor::{Compensation, StepContext, StepError};

    struct Charge(Arc<Mutex<Vec<String>>>);
    #[async_trait]
    impl swarm_reactor::Step for Charge {
        async fn run(
            &self,
            _ctx: &StepContext,
            args: &serde_json::Value,
        ) -> Result<serde_json::Value, StepError> {
            if args["amount"].as_i64().unwrap_or(0) > 100 {
                return Err(StepError::fatal("card declined"));
            }
            Ok(json!({"charged": args["amount"]}))
        }
        fn can_undo(&self) -> bool {
            true
        }
        async fn undo(
            &self,
            _ctx: &StepContext,
            _args: &serde_json::Value,
            result: &serde_json::Value,
        ) -> Result<(), StepError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("refund {}", result["charged"]));
            Ok(())
        }
        async fn compensate(
            &self,
            _ctx: &StepContext,
            _args: &serde_json::Value,
            error: &StepError,
        ) -> Compensation {
            Compensation::Continue(json!({"charged": 0, "note": error.message}))
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut reg = registry(&Probe::default());
    reg.register("charge", Charge(log.clone())).unwrap();
    let wf = workflow(
        r#"
name: w
steps:
  - { name: small, run: charge, arguments: { amount: value(5) } }
  - { name: big, run: charge, arguments: { amount: value(500) } }
  - { name: end, run: fail, arguments: { a: result(small), b: result(big.note) } }
"#,
        &reg,
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.step("big").unwrap().compensated);
    // `big` was compensated (it never charged), so only `small` is refunded.
    assert_eq!(*log.lock().unwrap(), vec!["refund 5"]);
    assert_eq!(report.undone, vec!["small"]);
}

#[tokio::test(start_paused = true)]
async fn a_return_path_that_does_not_exist_fails_the_run_and_undoes() {
    let probe = Probe::default();
    let wf = workflow(
        "name: w\nsteps:\n  - { name: a, run: probe }\nreturn: a.missing\n",
        &registry(&probe),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        report.error.unwrap().to_string(),
        "return: result of step \"a\" has no field \"missing\""
    );
    assert_eq!(report.undone, vec!["a"]);
    assert_eq!(report.result, serde_json::Value::Null);
}
