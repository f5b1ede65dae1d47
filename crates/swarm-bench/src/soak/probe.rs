//! What a node costs, read from outside the process: its resident memory from
//! `/proc`, and its snapshot and log from its data directory.
//!
//! The data dir layout is swarmd's: `<data_dir>/sled` is the sled database
//! (the Raft log, the vote, the committed index and the record of the current
//! snapshot; `swarm-node`'s `node.rs`), and the snapshot bodies are files in
//! its `snapshots` directory (`swarm-raft`'s `storage.rs`), one current file
//! plus, for a moment, the one a build or an install is writing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The sled directory inside a node's data dir.
const SLED_DIR: &str = "sled";
/// The snapshot directory inside the sled directory.
const SNAPSHOT_DIR: &str = "snapshots";
/// A snapshot file still being written ends so; it is not the current one.
const PARTIAL_SUFFIX: &str = ".tmp";

/// The `VmRSS` of process `pid` in bytes; `None` when the process is gone.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss_bytes(&status)
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(kib * 1024),
        Some(_) => None,
    }
}

/// The current snapshot file of a node: the newest complete file in its
/// snapshot directory.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFile {
    pub bytes: u64,
    /// Time since it was written.
    pub age: Duration,
}

impl SnapshotFile {
    /// The snapshot of the node whose data dir is `data_dir`; `None` before
    /// its first snapshot.
    pub fn of_node(data_dir: &Path) -> Option<SnapshotFile> {
        newest_complete_file(&snapshot_dir(data_dir))
    }
}

/// Bytes of the node's sled directory without its snapshot files: the Raft
/// log and the little metadata beside it, as sled keeps them on disk.
pub fn log_bytes(data_dir: &Path) -> u64 {
    let sled = data_dir.join(SLED_DIR);
    dir_bytes(&sled, Some(&sled.join(SNAPSHOT_DIR)))
}

fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SLED_DIR).join(SNAPSHOT_DIR)
}

fn newest_complete_file(dir: &Path) -> Option<SnapshotFile> {
    let now = SystemTime::now();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(PARTIAL_SUFFIX))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .filter_map(|m| Some((m.modified().ok()?, m.len())))
        .max_by_key(|(modified, _)| *modified)
        .map(|(modified, bytes)| SnapshotFile {
            bytes,
            age: now.duration_since(modified).unwrap_or_default(),
        })
}

/// The bytes of the regular files under `dir`, leaving out the subtree
/// `skip`. Files that vanish while it walks (sled rewrites its segments)
/// count as empty.
fn dir_bytes(dir: &Path, skip: Option<&Path>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && skip != Some(path.as_path()) => dir_bytes(&path, skip),
                Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => 0,
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tswarmd\nVmPeak:\t  900 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_bytes(status), Some(50 * 1024 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tzombie\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let pid = std::process::id() as i32;
        assert!(rss_bytes(pid).unwrap() > 0);
    }

    #[test]
    fn the_snapshot_is_the_newest_complete_file_and_the_log_leaves_it_out() {
        let data = tempfile::tempdir().unwrap();
        assert_eq!(SnapshotFile::of_node(data.path()), None);
        assert_eq!(log_bytes(data.path()), 0);

        let sled = data.path().join("sled");
        let snaps = sled.join("snapshots");
        std::fs::create_dir_all(&snaps).unwrap();
        std::fs::write(sled.join("db"), vec![0u8; 1000]).unwrap();
        std::fs::write(sled.join("conf"), vec![0u8; 24]).unwrap();
        std::fs::write(snaps.join("snapshot-T1-N1.9999.json"), vec![0u8; 300]).unwrap();
        // Written later: newer than the first.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(snaps.join("snapshot-T1-N1.19999.json"), vec![0u8; 500]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(snaps.join("snapshot-T1-N1.29999.json.tmp"), vec![0u8; 7]).unwrap();

        let current = SnapshotFile::of_node(data.path()).unwrap();
        assert_eq!(current.bytes, 500);
        assert!(current.age < Duration::from_secs(60));
        assert_eq!(log_bytes(data.path()), 1024);
    }
}
