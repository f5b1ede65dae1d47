//! The Python client's pytest suite (`clients/python/tests`) as one test of
//! the workspace's test command: it starts its own three-node cluster of the
//! `swarmd` under test (handed over in `SWARMD_BIN`), runs agent processes
//! against it and tears it down.
//!
//! The interpreter is the venv `scripts/install-python.sh` makes under
//! `target/python-venv` as a nextest setup script, handed over in
//! `PYTHON_BIN`. When the script could not make it (no python3, no venv
//! module, no PyPI) it hands over why in `PYTHON_SKIP_REASON`, and this test
//! skips saying so; it fails instead when `CI` is set.
//!
//! pytest runs from the workspace root, bounded by [`SUITE_LIMIT`]: past it,
//! pytest gets SIGTERM (its conftest turns that into an interrupt whose
//! teardown kills the nodes by their PIDs), then SIGKILL after [`GRACE`].
//! Its output is printed either way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Bound on the whole pytest run (it takes about 30 s on two idle cores).
const SUITE_LIMIT: Duration = Duration::from_secs(240);
/// How long an interrupted pytest may take to tear its cluster down.
const GRACE: Duration = Duration::from_secs(15);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The venv's python, or `None` (after saying why) when there is none.
fn python_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PYTHON_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let why = std::env::var("PYTHON_SKIP_REASON")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| {
            "PYTHON_BIN is not set: run the tests with cargo nextest, whose setup script \
             scripts/install-python.sh makes the venv, or run that script and set \
             PYTHON_BIN=target/python-venv/bin/python"
                .to_string()
        });
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI must run the Python client tests");
    }
    eprintln!("SKIPPED: the Python client tests need a Python venv: {why}");
    None
}

/// Waits for `child` until `limit` has passed since `started`.
fn wait_until(
    child: &mut std::process::Child,
    started: Instant,
    limit: Duration,
) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("wait for pytest") {
            return Some(status);
        }
        if started.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn python_client_suite_passes_against_a_real_cluster() {
    let Some(python) = python_binary() else {
        return;
    };
    let swarmd = swarm_tests::swarmd_binary().expect("the swarmd to test");
    let root = workspace_root();
    let output = tempfile::NamedTempFile::new().expect("a file for pytest's output");
    let out = File::options()
        .append(true)
        .open(output.path())
        .expect("open pytest's output file");
    let err = out.try_clone().expect("clone a file handle");

    let started = Instant::now();
    let mut child = Command::new(&python)
        .args(["-m", "pytest", "clients/python/tests", "-q", "-rfE"])
        .current_dir(&root)
        .env("SWARMD_BIN", &swarmd)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} -m pytest: {e}", python.display()));

    let mut status = wait_until(&mut child, started, SUITE_LIMIT);
    if status.is_none() {
        // SIGTERM to the recorded PID: pytest tears its cluster down.
        let _ = kill_process(Pid::from_child(&child), Signal::TERM);
        status = wait_until(&mut child, Instant::now(), GRACE);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let text = std::fs::read_to_string(output.path()).unwrap_or_default();
    println!("{text}");
    match status {
        None => panic!(
            "pytest did not finish within {}s and was stopped; its output is above",
            SUITE_LIMIT.as_secs()
        ),
        Some(status) => assert!(
            status.success(),
            "pytest failed ({status}) after {:.1}s; its output is above",
            started.elapsed().as_secs_f64()
        ),
    }
}
