//! The `exec` kind against real `/bin/sh` scripts: JSON in and out, environment, errors with the
//! stderr tail, and children killed on timeout and on cancel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;
use swarm_reactor::{Reactor, RunOptions, RunStatus, StepStatus};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Alive means it exists and is not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

async fn wait_for_file(path: &Path) -> String {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never appeared", path.display());
}

async fn eventually_dead(pid: u32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn arguments_go_in_as_json_and_stdout_comes_back_as_json_with_env() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "env.sh",
        r#"input=$(cat)
printf '{"run": "%s", "step": "%s", "attempt": %s, "token": "%s", "input": %s}\n' \
  "$SWARM_RUN_ID" "$SWARM_STEP" "$SWARM_ATTEMPT" "$SWARM_FENCING_TOKEN" "$input""#,
    );
    let wf = workflow(
        &format!(
            "name: w\ninputs: [who]\nsteps:\n  - name: e\n    run: exec\n    with: {{ command: [\"{}\"] }}\n    arguments: {{ who: input(who), n: value(2) }}\nreturn: e\n",
            s.display()
        ),
        &registry(&Probe::default()),
    );
    let opts = RunOptions {
        run_id: Some("run-1".into()),
        fencing_token: Some(42),
        ..RunOptions::default()
    };
    let report = Reactor::new()
        .run(wf, inputs(json!({"who": "ann"})), opts)
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(
        report.result,
        json!({"run": "run-1", "step": "e", "attempt": 1, "token": "42", "input": {"who": "ann", "n": 2}})
    );
}

#[tokio::test]
async fn plain_text_stdout_is_kept_as_a_string() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: e, run: exec, with: { command: [\"/bin/sh\", \"-c\", \"echo hello world\"] } }\nreturn: e\n",
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.result, json!("hello world"));
}

#[tokio::test]
async fn non_zero_exit_is_a_retryable_error_with_the_stderr_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "bad.sh",
        "echo 'first line' >&2\necho 'disk full' >&2\nexit 3",
    );
    let wf = workflow(
        &format!(
            "name: w\nsteps:\n  - name: e\n    run: exec\n    with: {{ command: [\"{}\"] }}\n    max_retries: 1\n    backoff: {{ initial: 1ms, max: 1ms }}\n",
            s.display()
        ),
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.step("e").unwrap().attempts, 2);
    let err = report.error.unwrap().to_string();
    assert!(
        err.contains("exit status 3: first line\ndisk full"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_program_fails_without_retrying() {
    let wf = workflow(
        "name: w\nsteps:\n  - { name: e, run: exec, with: { command: [\"/nonexistent/prog\"] }, max_retries: 3 }\n",
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.step("e").unwrap().attempts, 1);
    assert!(
        report
            .error
            .unwrap()
            .to_string()
            .contains("could not start")
    );
}

#[tokio::test]
async fn timeout_kills_the_child_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let s = script(
        dir.path(),
        "hang.sh",
        &format!("sleep 30 &\necho \"$$ $!\" > {}\nwait", pids.display()),
    );
    let wf = workflow(
        &format!(
            "name: w\nsteps:\n  - {{ name: e, run: exec, with: {{ command: [\"{}\"] }}, timeout: 500ms }}\n",
            s.display()
        ),
        &registry(&Probe::default()),
    );
    let t0 = std::time::Instant::now();
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        report
            .error
            .unwrap()
            .to_string()
            .contains("timed out after 500ms")
    );
    let line = wait_for_file(&pids).await;
    for pid in line.split_whitespace() {
        let pid: u32 = pid.parse().unwrap();
        assert!(
            eventually_dead(pid).await,
            "process {pid} survived the timeout"
        );
    }
}

#[tokio::test]
async fn cancel_kills_a_running_child() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let s = script(
        dir.path(),
        "hang.sh",
        &format!("echo \"$$\" > {}\nsleep 30", pids.display()),
    );
    let wf = workflow(
        &format!(
            "name: w\nsteps:\n  - {{ name: e, run: exec, with: {{ command: [\"{}\"] }} }}\n  - {{ name: wait, run: sleep, with: {{ duration: 300ms }} }}\n  - {{ name: boom, run: fail, arguments: {{ x: result(wait) }} }}\n",
            s.display()
        ),
        &registry(&Probe::default()),
    );
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.step("e").unwrap().status, StepStatus::Cancelled);
    let pid: u32 = wait_for_file(&pids).await.parse().unwrap();
    assert!(
        eventually_dead(pid).await,
        "process {pid} survived the cancel"
    );
}
