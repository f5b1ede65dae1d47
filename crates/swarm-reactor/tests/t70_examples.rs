//! The sample workflows under `cluster/workflows/` validate and run with their scripts.
//! Their `exec` commands are relative to the repository root, so every test here runs there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use serde_json::json;
use swarm_reactor::{
    PlanFormat, Reactor, Registry, RunOptions, RunStatus, StepStatus, load_file, plan,
};

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // All tests in this binary want the same directory, so setting it from each is harmless.
    std::env::set_current_dir(&root).unwrap();
    root
}

fn example(name: &str) -> Arc<swarm_reactor::Workflow> {
    let root = repo_root();
    match load_file(
        root.join("cluster/workflows").join(name),
        &Registry::builtin(),
    ) {
        Ok(w) => Arc::new(w),
        Err(e) => panic!("{name}: {e}"),
    }
}

#[test]
fn every_example_validates_and_plans() {
    let root = repo_root();
    let mut n = 0;
    for entry in std::fs::read_dir(root.join("cluster/workflows")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let wf = load_file(&path, &Registry::builtin())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!plan::render(&wf, PlanFormat::Text).is_empty());
            assert!(plan::render(&wf, PlanFormat::Mermaid).starts_with("flowchart TD"));
            n += 1;
        }
    }
    assert!(n >= 4, "found only {n} examples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aps_coordination_assigns_the_agent() {
    let wf = example("aps-coordination.yaml");
    let report = run(
        &Reactor::new(),
        &wf,
        json!({"process_file_path": "cluster/workflows/samples/onboarding.aps", "agent_id": "agent-7"}),
    )
    .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(
        report.result,
        json!({
            "assignment": "agent-7",
            "process": "onboarding-42",
            "tasks": ["provision-laptop", "create-accounts", "schedule-intro"]
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_analysis_runs_the_three_analyses_concurrently() {
    let wf = example("parallel-analysis.yaml");
    let t0 = std::time::Instant::now();
    let report = run(&Reactor::new(), &wf, json!({"dataset": "sales"})).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.result["verdict"], json!("review"));
    assert_eq!(
        report.result["analyses"]["anomalies"]["outliers"],
        json!([90])
    );
    assert_eq!(report.result["analyses"]["stats"]["count"], json!(8));
    // Three ~200ms analyses one after another would take at least 600ms on their own.
    assert!(t0.elapsed() < ms(3000), "took {:?}", t0.elapsed());
    assert_eq!(
        plan::stages(&wf),
        vec![
            vec!["fetch_data"],
            vec!["statistics", "trends", "anomalies"],
            vec!["aggregate"]
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_recovery_undoes_charge_then_reservation() {
    let wf = example("error-recovery.yaml");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let report = Reactor::new()
        .with_seed(1)
        .run(
            wf,
            inputs(json!({"order_id": "A-1", "audit_log": log.display().to_string(), "fail_at": "ship"})),
            RunOptions::default(),
        )
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.step("ship_order").unwrap().attempts, 3);
    assert_eq!(report.step("summary").unwrap().status, StepStatus::Skipped);
    assert_eq!(report.undone, vec!["charge_payment", "reserve_inventory"]);
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split(" attempt").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        lines,
        vec![
            "reserve order=A-1",
            "charge order=A-1",
            "receipt order=A-1",
            "refund order=A-1",
            "release order=A-1"
        ]
    );
    assert!(
        report
            .error
            .unwrap()
            .to_string()
            .contains("carrier unavailable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_recovery_compensates_a_failed_receipt() {
    let wf = example("error-recovery.yaml");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let report = run(
        &Reactor::new(),
        &wf,
        json!({"order_id": "A-2", "audit_log": log.display().to_string(), "fail_at": "receipt"}),
    )
    .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(
        report.result,
        json!({"order": "A-2", "shipment": "ship-A-2", "receipt": "not-sent"})
    );
    assert!(report.step("send_receipt").unwrap().compensated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_report_maps_and_composes() {
    let wf = example("nightly-report.yaml");
    let report = run(
        &Reactor::new(),
        &wf,
        json!({"datasets": ["traffic", "sales"]}),
    )
    .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.result["fetched"][1]["dataset"], json!("sales"));
    assert_eq!(report.result["headline"], json!("review"));
}
