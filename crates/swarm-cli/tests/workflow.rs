//! `swarmctl workflow ...` as a process on the sample workflows in
//! `cluster/workflows/`, run from the repository root as a user would (their
//! `exec` steps call `./cluster/steps/*.sh`). No cluster: `SWARM_ENDPOINTS`
//! points at a port nobody listens on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn swarmctl_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    cmd.args(args)
        .current_dir(repo_root())
        .env("SWARM_ENDPOINTS", "127.0.0.1:1");
    cmd
}

fn swarmctl(args: &[&str]) -> Output {
    swarmctl_command(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not json ({e}): {}\nstderr: {}",
            stdout(out),
            stderr(out)
        )
    })
}

/// `(name, status, attempts)` of each step in a run report.
fn steps(report: &Value) -> Vec<(String, String, u64)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
                s["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn owned(steps: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    steps
        .iter()
        .map(|(n, s, a)| ((*n).to_owned(), (*s).to_owned(), *a))
        .collect()
}

/// A workflow file in a temp dir that lives as long as the returned guard.
fn temp_workflow(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflow.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn validate_accepts_every_sample_workflow() {
    for (file, steps) in [
        ("cluster/workflows/aps-coordination.yaml", 3),
        ("cluster/workflows/error-recovery.yaml", 5),
        ("cluster/workflows/nightly-report.yaml", 3),
        ("cluster/workflows/parallel-analysis.yaml", 5),
    ] {
        let out = swarmctl(&["workflow", "validate", file]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
        assert_eq!(stdout(&out), format!("{file}: ok ({steps} steps)\n"));
    }

    let out = swarmctl(&[
        "workflow",
        "validate",
        "cluster/workflows/parallel-analysis.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out),
        json!({
            "file": "cluster/workflows/parallel-analysis.yaml",
            "valid": true,
            "steps": 5,
            "problems": [],
        })
    );
}

const BROKEN: &str = r#"
name: broken
steps:
  - name: a
    run: echo
    arguments: { v: result(b) }
  - name: b
    run: echo
    arguments: { v: result(a), w: result(ghost) }
  - name: c
    run: sleep
    with: { duration: 100ms }
    timeout: soonish
return: c
"#;

#[test]
fn validate_lists_every_problem_one_per_line() {
    let (_dir, file) = temp_workflow(BROKEN);
    let out = swarmctl(&["workflow", "validate", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "three problems and the error: {err}");
    let problem = |needle: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}: ")) && l.contains(needle))
    };
    assert!(problem("a -> b -> a"), "the cycle: {err}");
    assert!(
        problem(r#"step "b" argument "w" refers to unknown step "ghost""#),
        "the unknown step: {err}"
    );
    assert!(
        problem(r#"step "c" field "timeout": bad duration "soonish""#),
        "the bad duration: {err}"
    );
    assert_eq!(
        lines[3],
        format!("error: {file}: workflow is invalid (3 problems)")
    );

    // The same problems as data, each with its step and field.
    let out = swarmctl(&["workflow", "validate", &file, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["valid"], false);
    let mut located: Vec<(String, String)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["step"].as_str().unwrap().to_owned(),
                p["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    located.sort();
    assert_eq!(
        located,
        [
            ("a".to_owned(), "arguments".to_owned()),
            ("b".to_owned(), "arguments.w".to_owned()),
            ("c".to_owned(), "timeout".to_owned()),
        ]
    );
}

#[test]
fn validate_a_missing_file_fails_once_with_the_path() {
    let out = swarmctl(&["workflow", "validate", "cluster/workflows/nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: read workflow cluster/workflows/nope.yaml: "),
        "{err}"
    );
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn plan_text_shows_stages_and_what_can_be_undone() {
    let out = swarmctl(&[
        "workflow",
        "plan",
        "cluster/workflows/parallel-analysis.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(plan.starts_with("workflow parallel-analysis"), "{plan}");
    let stage2 = plan
        .split("stage 2:")
        .nth(1)
        .and_then(|rest| rest.split("stage 3:").next())
        .unwrap_or_else(|| panic!("no stage 2: {plan}"));
    for analysis in ["statistics", "trends", "anomalies"] {
        assert!(
            stage2.contains(&format!("  {analysis} (exec) after fetch_data")),
            "{analysis} runs in stage 2, after fetch_data: {plan}"
        );
    }
    assert!(plan.contains("stage 3:\n  aggregate (exec)"), "{plan}");

    let out = swarmctl(&["workflow", "plan", "cluster/workflows/error-recovery.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = stdout(&out);
    let line = |step: &str| {
        plan.lines()
            .find(|l| l.trim_start().starts_with(&format!("{step} (")))
            .unwrap_or_else(|| panic!("no line for {step}: {plan}"))
            .to_owned()
    };
    assert!(line("reserve_inventory").ends_with("[undoable]"), "{plan}");
    assert!(line("charge_payment").ends_with("[undoable]"), "{plan}");
    assert!(line("ship_order").ends_with("not undoable]"), "{plan}");
    assert!(line("send_receipt").contains("compensates"), "{plan}");
}

#[test]
fn plan_mermaid_draws_nodes_and_edges() {
    let out = swarmctl(&[
        "workflow",
        "plan",
        "cluster/workflows/error-recovery.yaml",
        "--format",
        "mermaid",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let chart = stdout(&out);
    assert!(chart.starts_with("flowchart TD\n"), "{chart}");
    assert!(
        chart.contains(r#"s0["reserve_inventory<br/>exec · undoable"]:::undoable"#),
        "{chart}"
    );
    assert!(
        chart.contains("s3[\"ship_order<br/>exec · not undoable"),
        "{chart}"
    );
    assert!(chart.contains("    s0 --> s1\n"), "{chart}");
    assert!(chart.contains("classDef undoable"), "{chart}");

    let out = swarmctl(&[
        "workflow",
        "plan",
        "cluster/workflows/error-recovery.yaml",
        "--format",
        "dot",
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn plan_of_an_invalid_workflow_lists_its_problems() {
    let (_dir, file) = temp_workflow(BROKEN);
    let out = swarmctl(&["workflow", "plan", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("a -> b -> a"), "{}", stderr(&out));
}

#[test]
fn run_local_parallel_analysis_succeeds_with_the_report_as_json() {
    let out = swarmctl(&[
        "workflow",
        "run-local",
        "cluster/workflows/parallel-analysis.yaml",
        "--input",
        "dataset=sales",
        "-o",
        "json",
        "--seed",
        "7",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "result", "status", "steps"], "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(
        steps(&v),
        owned(&[
            ("fetch_data", "succeeded", 1),
            ("statistics", "succeeded", 1),
            ("trends", "succeeded", 1),
            ("anomalies", "succeeded", 1),
            ("aggregate", "succeeded", 1),
        ])
    );
    for step in v["steps"].as_array().unwrap() {
        let mut keys: Vec<&str> = step
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["attempts", "name", "status"], "{step}");
    }
    assert_eq!(v["result"]["dataset"], "sales");
    assert_eq!(v["result"]["analyses"]["stats"]["count"], 8);

    // Progress on stderr: every step starts and ends, the analyses overlap.
    let err = stderr(&out);
    for step in [
        "fetch_data",
        "statistics",
        "trends",
        "anomalies",
        "aggregate",
    ] {
        assert!(
            err.contains(&format!("step {step}: started (attempt 1)")),
            "{err}"
        );
        assert!(
            err.contains(&format!("step {step}: succeeded (attempt 1, ")),
            "{err}"
        );
    }
    let position = |line: &str| err.find(line).unwrap_or_else(|| panic!("{line}: {err}"));
    let last_start = ["statistics", "trends", "anomalies"]
        .map(|s| position(&format!("step {s}: started")))
        .into_iter()
        .max();
    let first_end = ["statistics", "trends", "anomalies"]
        .map(|s| position(&format!("step {s}: succeeded")))
        .into_iter()
        .min();
    assert!(
        last_start < first_end,
        "all three analyses start before any ends: {err}"
    );
}

#[test]
fn run_local_table_shows_each_step_and_the_result() {
    let out = swarmctl(&[
        "workflow",
        "run-local",
        "cluster/workflows/aps-coordination.yaml",
        "--input",
        "process_file_path=cluster/workflows/samples/onboarding.aps",
        "--input",
        "agent_id=agent-7",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("STEP "), "{table}");
    for step in ["parse_aps_file", "assign_agent", "update_metrics"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(step) && l.contains("succeeded")),
            "{step}: {table}"
        );
    }
    assert!(table.contains("\nresult: "), "{table}");
}

#[test]
fn run_local_error_recovery_undoes_in_reverse_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("orders.log");
    let audit_flag = format!("audit_log={}", audit.display());
    let out = swarmctl(&[
        "workflow",
        "run-local",
        "cluster/workflows/error-recovery.yaml",
        "--input",
        "order_id=A-1001",
        "--input",
        &audit_flag,
        "--input",
        "fail_at=ship",
        "--seed",
        "1",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["result"], Value::Null);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with(r#"step "ship_order" failed after 3 attempts"#),
        "{error}"
    );
    assert!(error.contains("carrier unavailable"), "{error}");
    assert_eq!(
        steps(&v),
        owned(&[
            ("reserve_inventory", "undone", 1),
            ("charge_payment", "undone", 1),
            ("send_receipt", "succeeded", 1),
            ("ship_order", "failed", 3),
            ("summary", "skipped", 0),
        ])
    );
    assert_eq!(v["undone"], json!(["charge_payment", "reserve_inventory"]));

    // The undo scripts really ran, refund before release.
    let log = std::fs::read_to_string(&audit).unwrap();
    let actions: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        actions,
        ["reserve", "charge", "receipt", "refund", "release"]
    );

    let err = stderr(&out);
    assert!(err.contains("step ship_order: retrying in "), "{err}");
    assert!(
        err.find("step charge_payment: undone") < err.find("step reserve_inventory: undone"),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(r#"error: workflow "error-recovery" failed: step "ship_order""#)
            && last.ends_with("(undone: charge_payment, reserve_inventory)"),
        "{last}"
    );
}

#[test]
fn run_local_checks_inputs_before_running() {
    let out = swarmctl(&[
        "workflow",
        "run-local",
        "cluster/workflows/parallel-analysis.yaml",
        "--input",
        "datset=sales",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains(r#"input "dataset" is missing"#), "{err}");
    assert!(err.contains(r#"input "datset" is not declared"#), "{err}");
    assert!(!err.contains("started"), "nothing ran: {err}");

    let out = swarmctl(&[
        "workflow",
        "run-local",
        "cluster/workflows/parallel-analysis.yaml",
        "--input",
        "dataset=a",
        "--input",
        "dataset=b",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("given more than once"),
        "{}",
        stderr(&out)
    );

    let out = swarmctl(&[
        "workflow",
        "run-local",
        "cluster/workflows/parallel-analysis.yaml",
        "--input",
        "dataset",
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

/// A step with an undo, then one that would sleep for a minute.
const SLOW: &str = r#"
name: slow
inputs: [audit_log]
steps:
  - name: reserve
    run: exec
    with: { command: ["./cluster/steps/order-step.sh", "reserve"] }
    arguments: { order_id: value("C-1"), audit_log: input(audit_log) }
    undo: { run: exec, with: { command: ["./cluster/steps/order-step.sh", "release"] } }
  - name: nap
    run: sleep
    with: { duration: 60s }
    arguments: { after: result(reserve) }
"#;

#[test]
fn ctrl_c_cancels_the_run_and_undoes_completed_steps() {
    let (dir, file) = temp_workflow(SLOW);
    let audit = dir.path().join("orders.log");
    let audit_flag = format!("audit_log={}", audit.display());
    let mut child = swarmctl_command(&[
        "workflow",
        "run-local",
        &file,
        "--input",
        &audit_flag,
        "-o",
        "json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();

    // Interrupt once the sleep is under way, as a user at the terminal would.
    let mut progress = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            progress.read_line(&mut line).unwrap() > 0,
            "stderr ended early: {seen}"
        );
        seen.push_str(&line);
        if line.starts_with("step nap: started") {
            break;
        }
    }
    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::io::Read::read_to_string(&mut progress, &mut seen).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancelled, not slept out"
    );

    assert_eq!(out.status.code(), Some(1), "{seen}");
    let v = stdout_json(&out);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"], "run was cancelled");
    assert_eq!(
        steps(&v),
        owned(&[("reserve", "undone", 1), ("nap", "cancelled", 1)])
    );
    assert!(seen.contains("interrupted: cancelling the run"), "{seen}");
    assert!(seen.contains("step reserve: undone"), "{seen}");
    let log = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        log.lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect::<Vec<_>>(),
        ["reserve", "release"]
    );
}
