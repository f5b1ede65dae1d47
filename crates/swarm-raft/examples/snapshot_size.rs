//! Compares a snapshot of the same state in the legacy JSON format and in
//! the binary format: size on disk, time to write, time to read back.
//! The state: `ITEMS` items (default 100,000) with a small JSON payload;
//! half of them claimed with one workflow step recorded, half of those
//! completed with a result.
//!
//! Run: `cargo run --release -p swarm-raft --example snapshot_size [-- ITEMS]`

use std::time::Instant;

use swarm_claims::command::{Claim, Complete, StepDone, Submit};
use swarm_claims::{Command, Response, State, apply};
use swarm_raft::SnapshotFile;

/// The snapshot body as swarmd wrote it in JSON.
#[derive(serde::Serialize)]
struct LegacyBody<'a> {
    state: &'a State,
}

fn state_of(items: usize) -> Result<State, Box<dyn std::error::Error>> {
    let mut state = State::new();
    for i in 0..items {
        let submit = Submit {
            id: format!("item-{i:08}"),
            idempotency_key: String::new(),
            kind: "task".into(),
            priority: 0,
            requires: Vec::new(),
            payload: format!(r#"{{"job":{i},"repo":"github.com/example/repo","ref":"main"}}"#),
            max_attempts: 0,
            now: 1_764_000_000_000 + i as u64,
        };
        apply(&mut state, Command::Submit(submit))?;
    }
    let claim = Claim {
        agent: "agent-1".into(),
        kinds: Vec::new(),
        capabilities: Vec::new(),
        max: 10_000,
        lease_ms: 30_000,
        now: 1_764_000_100_000,
    };
    let mut claimed = Vec::new();
    while claimed.len() < items / 2 {
        let Response::Granted(granted) = apply(&mut state, Command::Claim(claim.clone()))? else {
            return Err("claim answered something else".into());
        };
        if granted.is_empty() {
            break;
        }
        claimed.extend(granted);
    }
    claimed.truncate(items / 2);
    for (n, item) in claimed.iter().enumerate() {
        let token = item.lease.as_ref().map_or(0, |l| l.token);
        let step = StepDone {
            id: item.id.to_string(),
            token,
            step: "checkout".into(),
            outcome: r#"{"sha":"4b825dc642cb6eb9a060e54bf8d69288fbee4904"}"#.into(),
            now: 1_764_000_101_000,
        };
        apply(&mut state, Command::StepDone(step))?;
        if n % 2 == 0 {
            let complete = Complete {
                id: item.id.to_string(),
                token,
                result: r#"{"ok":true,"tests":412}"#.into(),
                now: 1_764_000_102_000,
            };
            apply(&mut state, Command::Complete(complete))?;
        }
    }
    Ok(state)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let state = state_of(items)?;
    let dir = tempfile::tempdir()?;

    let json_path = dir.path().join("snapshot.json");
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&json_path)?);
    serde_json::to_writer(&mut out, &LegacyBody { state: &state })?;
    // Synced, as the binary file is.
    out.into_inner()?.sync_all()?;
    let json_write = started.elapsed();
    let json_bytes = std::fs::metadata(&json_path)?.len();
    let started = Instant::now();
    let (from_json, _) = SnapshotFile::open(&json_path)?.read_state()?;
    let json_read = started.elapsed();

    let bin_path = dir.path().join("snapshot.bin");
    let started = Instant::now();
    let file = SnapshotFile::create(&bin_path, &state)?;
    let bin_write = started.elapsed();
    let bin_bytes = file.len()?;
    let started = Instant::now();
    let (from_bin, _) = file.read_state()?;
    let bin_read = started.elapsed();

    // Builds used to copy the state under its read lock and encode the
    // copy; they now encode under the lock. The copy's cost, for scale.
    let started = Instant::now();
    let copy = state.clone();
    let clone_time = started.elapsed();
    drop(copy);

    if from_json != state || from_bin != state {
        return Err("a snapshot did not restore the state".into());
    }
    println!("{items} items");
    println!("format  bytes       write     read");
    println!("json    {json_bytes:<11} {json_write:<9.1?} {json_read:.1?}");
    println!("binary  {bin_bytes:<11} {bin_write:<9.1?} {bin_read:.1?}");
    println!("copy of the state (what builds did before encoding): {clone_time:.1?}");
    println!(
        "binary/json size: {:.2}",
        bin_bytes as f64 / json_bytes as f64
    );
    Ok(())
}
