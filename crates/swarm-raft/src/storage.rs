//! A node's stores. One sled database per node holds the vote, the
//! committed index, how far the log is purged and which snapshot is current.
//! The Raft log is in segment files of its own beside it ([`wal`]: sled's
//! flush woke its whole io thread pool for every append); the snapshot is a
//! file beside it too (a value of many megabytes in sled is rewritten with its
//! page each time a small key beside it changes, and filled the disk). The
//! state machine lives in memory and is rebuilt on start from the snapshot
//! plus the log entries after it.
//!
//! # Formats
//! - Log entries: the tagged binary encoding of `codec` (a format tag, then
//!   bincode), as records of the segment files (`raft-log/`, see [`wal`]).
//!   Entries written in JSON by an older swarmd still load, and a log an
//!   older swarmd kept in sled is moved into segment files on open.
//! - Snapshots: files in the binary format of [`SnapshotFile`] (a header
//!   with a version, bincode, a checksum), written and read as a stream. A
//!   JSON snapshot of an older swarmd (a file, or the value older versions
//!   kept in sled) loads on start and is rewritten in the binary format.
//! - The small records (vote, committed index, last purged log id, which
//!   snapshot is current) stay JSON: a few dozen bytes each, readable in a
//!   post-mortem.
//!
//! Data that cannot be read (damaged, or written by a newer swarmd) is an
//! error that names the data dir and says what to do, never a panic.
//!
//! Durability: appended entries are reported flushed after an `fdatasync` of
//! their segment file (one for every append that arrived meanwhile). sled's
//! `flush` writes with `sync_file_range`, which survives a process crash but
//! not a power loss, so every sled write reported durable (the vote, how far
//! the log is purged, a snapshot's record) is followed by an `fdatasync` of
//! sled's data file.
//!
//! # Layout
//! - this module: [`SledStore`] and [`LogStore`].
//! - `state_machine`: [`StateMachineStore`] and the snapshot records.
//! - `snapshot_file`: [`SnapshotFile`] and the snapshot format.
//! - `item_watch`: [`ItemWatch`], which items applied entries changed.
//! - `wal`: the Raft log's segment files.

mod item_watch;
mod snapshot_file;
mod state_machine;
mod wal;

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use serde::{Deserialize, Serialize};

pub use item_watch::{ItemChanges, ItemWatch};
pub use snapshot_file::{Format, SnapshotFile, SnapshotReadError};
pub use state_machine::StateMachineStore;

use crate::codec;
use crate::{Entry, LogId, TypeConfig, Vote};

const TREE_LOG: &str = "raft_log";
const TREE_META: &str = "raft_meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// Which snapshot file is current, with its Raft metadata.
const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// Where versions before snapshot files kept the snapshot (JSON): read on
/// open, rewritten as a snapshot file and removed.
const LEGACY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const LEGACY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";
/// The directory, inside the sled directory, of snapshot files.
const SNAPSHOT_DIR: &str = "snapshots";
/// The directory, inside the sled directory, of the Raft log's segments.
const LOG_DIR: &str = "raft-log";

/// Why a node's storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageOpenError {
    #[error("data dir {dir} is in use by another process (sled holds a lock on {dir}/db)")]
    InUse { dir: PathBuf },
    #[error("open sled database in {dir}: {source}")]
    Sled { dir: PathBuf, source: sled::Error },
    #[error(
        "read stored snapshot in {dir}: {reason}; this data dir cannot be used as it is: \
         start the swarmd version that wrote it, restore the dir from a backup, or remove \
         the node from the cluster, empty its data dir and add it back"
    )]
    Snapshot { dir: PathBuf, reason: String },
    #[error("open {path} for fdatasync: {source}")]
    DataFile { path: PathBuf, source: io::Error },
    #[error(
        "open the raft log in {dir}: {source}; if it is damaged, remove the node from the \
         cluster, empty its data dir and add it back"
    )]
    Log { dir: PathBuf, source: io::Error },
}

/// A node's sled database, its Raft log files and what it takes to make
/// writes durable.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    /// The Raft log.
    wal: Arc<wal::Wal>,
    meta: sled::Tree,
    /// sled's data file, kept open to `fdatasync` it after every flush.
    data_file: Arc<File>,
    dir: PathBuf,
}

impl Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("dir", &self.dir).finish()
    }
}

impl SledStore {
    /// Opens (or creates) the database under `dir`, with sled's page cache
    /// bounded to `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StorageOpenError> {
        let sled_err = |source: sled::Error| {
            let in_use = matches!(&source, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"));
            if in_use {
                StorageOpenError::InUse {
                    dir: dir.to_path_buf(),
                }
            } else {
                StorageOpenError::Sled {
                    dir: dir.to_path_buf(),
                    source,
                }
            }
        };
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // Every write that must be durable is flushed and fdatasynced by
            // this store; sled's own periodic flusher would only add stalls.
            .flush_every_ms(None)
            .open()
            .map_err(sled_err)?;
        let meta = db.open_tree(TREE_META).map_err(sled_err)?;
        let path = dir.join("db");
        let data_file =
            File::open(&path).map_err(|source| StorageOpenError::DataFile { path, source })?;
        let log_err = |source: io::Error| StorageOpenError::Log {
            dir: dir.join(LOG_DIR),
            source,
        };
        let legacy = db.open_tree(TREE_LOG).map_err(sled_err)?;
        let purged = read_json::<LogId>(&meta, KEY_LAST_PURGED).map_err(log_err)?;
        let wal = open_log(dir, &legacy, purged.map(|l| l.index())).map_err(log_err)?;
        let store = SledStore {
            db,
            wal: Arc::new(wal),
            meta,
            data_file: Arc::new(data_file),
            dir: dir.to_path_buf(),
        };
        if !legacy.is_empty() {
            // Moved into segment files (now durable): forget sled's copy.
            legacy.clear().map_err(|e| log_err(io::Error::other(e)))?;
            store.sync().map_err(log_err)?;
        }
        Ok(store)
    }

    /// Makes every write so far durable: sled's flush, then fdatasync.
    fn sync(&self) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        self.data_file.sync_data()
    }

    fn get_meta<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> io::Result<Option<T>> {
        read_json(&self.meta, key)
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.meta.insert(key, bytes).map_err(io::Error::other)?;
        Ok(())
    }

    /// The log store and the state-machine store over this database.
    pub fn stores(&self) -> Result<(LogStore, StateMachineStore), StorageOpenError> {
        Ok((
            LogStore::new(self.clone()),
            StateMachineStore::open(self.clone())?,
        ))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(tree: &sled::Tree, key: &[u8]) -> io::Result<Option<T>> {
    match tree.get(key).map_err(io::Error::other)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// Opens the Raft log's segment files in `dir`/[`LOG_DIR`]. A log that an
/// older swarmd kept in sled (`legacy`) and that has no segment files yet
/// is first written to a fresh directory, synced, and renamed into place,
/// so a crash midway leaves either the old log or the whole new one.
fn open_log(dir: &Path, legacy: &sled::Tree, purged: Option<u64>) -> io::Result<wal::Wal> {
    let log_dir = dir.join(LOG_DIR);
    if !log_dir.exists() && !legacy.is_empty() {
        let staging = dir.join(format!("{LOG_DIR}.new"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        let moving = wal::Wal::open(&staging, purged)?;
        let mut batch = Vec::new();
        let mut moved = 0usize;
        for kv in legacy.iter() {
            let (key, value) = kv.map_err(io::Error::other)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "sled log key is not 8 bytes")
            })?);
            if purged.is_some_and(|p| index <= p) {
                continue;
            }
            batch.push((index, value.to_vec()));
            moved += 1;
            if batch.len() == 1024 {
                moving.append(&batch)?;
                batch.clear();
            }
        }
        moving.append(&batch)?;
        moving.sync()?;
        drop(moving);
        std::fs::rename(&staging, &log_dir)?;
        File::open(dir)?.sync_all()?;
        tracing::info!(entries = moved, dir = %log_dir.display(), "moved the raft log out of sled into segment files");
    }
    wal::Wal::open(&log_dir, purged)
}

// ---------------------------------------------------------------------------
// Log store

/// The Raft log (segment files), vote and committed index (sled).
#[derive(Clone)]
pub struct LogStore {
    store: SledStore,
    /// Appended entries wait here for one shared fdatasync.
    flusher: std::sync::mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl LogStore {
    fn new(store: SledStore) -> LogStore {
        let (tx, rx) = std::sync::mpsc::channel::<IOFlushed<TypeConfig>>();
        let syncing = store.clone();
        // One thread flushes for every append that arrived while the previous
        // flush ran: group commit at the disk.
        std::thread::Builder::new()
            .name("swarm-log-flush".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = syncing.wal.sync();
                    for cb in waiting {
                        cb.io_completed(match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        });
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "start log flush thread"));
        LogStore { store, flusher: tx }
    }
}

impl SledStore {
    /// Reads a stored log entry (binary, or JSON from an older swarmd).
    fn decode_entry(&self, index: u64, bytes: &[u8]) -> io::Result<Entry> {
        codec::from_bytes(bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "raft log entry {index} in {}: {e}; the log is damaged or was written by \
                     an incompatible swarmd: start this version of swarmd on it, or remove \
                     the node from the cluster, empty its data dir and add it back",
                    self.dir.display()
                ),
            )
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.saturating_add(1),
            Bound::Excluded(x) => *x,
            Bound::Unbounded => u64::MAX,
        };
        // A contiguous run (the log has no holes: `wal` refuses them), which
        // may begin after `start` when the log before it was purged.
        self.store
            .wal
            .read(start, end)?
            .into_iter()
            .map(|(index, bytes)| self.store.decode_entry(index, &bytes))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.store.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.store.get_meta(KEY_LAST_PURGED)?;
        let last = match self.store.wal.bounds() {
            Some((_, last)) => match self.store.wal.read(last, last + 1)?.pop() {
                Some((index, bytes)) => Some(self.store.decode_entry(index, &bytes)?.log_id()),
                None => last_purged,
            },
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // A vote lost to a crash could let this node vote twice in one term.
        self.store.put_meta(KEY_VOTE, vote)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.sync())
            .await
            .map_err(io::Error::other)?
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: losing it only means re-applying from the snapshot once
        // the leader confirms the commit again.
        self.store.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self
            .store
            .get_meta::<Option<LogId>>(KEY_COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
    {
        // One write for the whole append. Atomicity is not needed: recovery
        // keeps a prefix of it, and a prefix of appended entries is a valid
        // Raft log whose append simply was never reported flushed.
        let records = entries
            .into_iter()
            .map(|entry| {
                codec::to_bytes(&entry)
                    .map(|bytes| (entry.index(), bytes))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.store.wal.append(&records)?;
        // Readable now; durable when the flusher calls back.
        if let Err(std::sync::mpsc::SendError(cb)) = self.flusher.send(callback) {
            cb.io_completed(self.store.wal.sync());
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        self.store.wal.truncate_from(from)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record how far the log is purged, durably, before deleting:
        // openraft ignores everything at or before it, and the log files
        // are opened with it (a segment deleted while the record was lost
        // would leave a hole after the old purge point).
        self.store.put_meta(KEY_LAST_PURGED, &log_id)?;
        self.store.sync()?;
        self.store.wal.purge_to(log_id.index())
    }
}
