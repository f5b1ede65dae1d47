//! Prints what a node's sled store holds, for post-mortems of a data dir
//! (run it on a copy: opening a sled database may rewrite it, and a legacy
//! JSON snapshot is rewritten in the binary format): vote, committed,
//! purged, the stored snapshot's last log id, file, format and size, and
//! every log entry as `index leader fnv64(payload) payload...` (payloads
//! shown as JSON whatever their stored format). With `DUMP_SNAPSHOT=FILE`
//! the stored snapshot's state is written there as JSON.
//!
//! Run: `cargo run -p swarm-raft --example inspect_store -- DATA_DIR`, or
//! `... -- --snapshot FILE` for one snapshot file (binary or legacy JSON).

use openraft::RaftLogReader;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use swarm_raft::{SledStore, SnapshotFile};

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: inspect_store DATA_DIR [UPTO_INDEX] | --snapshot FILE")?;
    if dir == "--snapshot" {
        let path = std::env::args().nth(2).ok_or("usage: --snapshot FILE")?;
        return inspect_snapshot_file(std::path::Path::new(&path));
    }
    let store = SledStore::open(std::path::Path::new(&dir), 64 << 20)?;
    let (mut log, mut sm) = store.stores()?;
    println!("vote {:?}", log.read_vote().await?);
    println!("committed {:?}", log.read_committed().await?);
    println!("log state {:?}", log.get_log_state().await?);
    println!("snapshot at {:?}", sm.applied_state().await?.0);
    if let Some(current) = sm.get_current_snapshot().await? {
        println!(
            "snapshot file {} format {:?} bytes {}",
            current.snapshot.path().display(),
            current.snapshot.verify()?,
            current.snapshot.len()?
        );
    }
    // The state the node would rebuild on start: stored snapshot, then the
    // log after it up to `UPTO` (default: the stored committed index).
    let upto: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .or(log.read_committed().await?.map(|l| l.index()))
        .unwrap_or(0);
    let mut state = sm.read(|s| s.clone());
    if let Ok(path) = std::env::var("DUMP_SNAPSHOT") {
        std::fs::write(&path, serde_json::to_vec_pretty(&state)?)?;
    }
    let from = sm.applied_state().await?.0.map_or(0, |l| l.index() + 1);
    for e in log.try_get_log_entries(from..=upto).await? {
        if let openraft::EntryPayload::Normal(cmd) = e.payload {
            let _ = swarm_claims::apply(&mut state, cmd);
        }
    }
    println!(
        "replayed {from}..={upto}: last_token {} items {} state fnv {:016x}",
        state.last_token(),
        state.len(),
        fnv(&serde_json::to_vec(&state)?)
    );
    for e in log.try_get_log_entries(0..u64::MAX).await? {
        let payload = serde_json::to_vec(&e.payload)?;
        let text = String::from_utf8_lossy(&payload);
        println!(
            "{} {} {:016x} {}",
            e.index(),
            e.log_id().leader_id,
            fnv(&payload),
            text.chars().take(200).collect::<String>()
        );
    }
    Ok(())
}

/// Prints one snapshot file's format, size and state summary.
fn inspect_snapshot_file(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let file = SnapshotFile::open(path)?;
    let (state, format) = file.read_state()?;
    println!(
        "{} format {format:?} bytes {} items {} live claims {} last_token {} state fnv {:016x}",
        path.display(),
        file.len()?,
        state.len(),
        state.live_claims(),
        state.last_token(),
        fnv(&serde_json::to_vec(&state)?)
    );
    if let Ok(out) = std::env::var("DUMP_SNAPSHOT") {
        std::fs::write(&out, serde_json::to_vec_pretty(&state)?)?;
    }
    Ok(())
}
