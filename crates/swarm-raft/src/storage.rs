//! The sled stores. One sled database per node holds the Raft log, the vote,
//! the committed index and which snapshot is current; the snapshot itself is
//! a file beside it (a value of many megabytes in sled is rewritten with its
//! page each time a small key beside it changes, and filled the disk). The
//! state machine lives in memory and is rebuilt on start from the snapshot
//! plus the log entries after it.
//!
//! # Formats
//! - Log entries: the tagged binary encoding of `codec` (a format tag, then
//!   bincode). Entries written in JSON by an older swarmd still load.
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
//! Durability: sled's `flush` writes with `sync_file_range`, which survives a
//! process crash but not a power loss. Every write reported durable here
//! (appended entries, the vote, a snapshot) is followed by an `fdatasync` of
//! sled's data file.
//!
//! # Layout
//! - this module: [`SledStore`] and [`LogStore`].
//! - `state_machine`: [`StateMachineStore`] and the snapshot records.
//! - `snapshot_file`: [`SnapshotFile`] and the snapshot format.
//! - `item_watch`: [`ItemWatch`], which items applied entries changed.

mod item_watch;
mod snapshot_file;
mod state_machine;

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
}

/// A node's sled database and what it takes to make writes durable.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    log: sled::Tree,
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
        let log = db.open_tree(TREE_LOG).map_err(sled_err)?;
        let meta = db.open_tree(TREE_META).map_err(sled_err)?;
        let path = dir.join("db");
        let data_file =
            File::open(&path).map_err(|source| StorageOpenError::DataFile { path, source })?;
        Ok(SledStore {
            db,
            log,
            meta,
            data_file: Arc::new(data_file),
            dir: dir.to_path_buf(),
        })
    }

    /// Makes every write so far durable: sled's flush, then fdatasync.
    fn sync(&self) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        self.data_file.sync_data()
    }

    fn get_meta<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(io::Error::other)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        }
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

// ---------------------------------------------------------------------------
// Log store

/// The Raft log, vote and committed index in sled.
#[derive(Clone)]
pub struct LogStore {
    store: SledStore,
    /// Appended entries wait here for one shared flush + fdatasync.
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
                    let result = syncing.sync();
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

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
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
        let mut out = Vec::new();
        for kv in self.store.log.range(index_key(start)..) {
            let (key, value) = kv.map_err(io::Error::other)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "log key is not 8 bytes")
            })?);
            // Only a contiguous run: entries past a hole would let a caller
            // apply index i+2 as if it followed i. (The run may begin after
            // `start` when the log before it was purged.)
            let follows = out
                .last()
                .is_none_or(|prev: &Entry| prev.index() + 1 == index);
            if !range.contains(&index) || !follows {
                break;
            }
            out.push(self.store.decode_entry(index, &value)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.store.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.store.get_meta(KEY_LAST_PURGED)?;
        let last = match self.store.log.last().map_err(io::Error::other)? {
            Some((key, value)) => {
                let index = key.as_ref().try_into().map_or(0, u64::from_be_bytes);
                Some(self.store.decode_entry(index, &value)?.log_id())
            }
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
        // Plain inserts, not a `sled::Batch`: sled seals and writes the
        // current io buffer around a batch's manifest, which made every
        // append three disk writes and three waits instead of one. Atomicity
        // is not needed here: sled recovers a prefix of its log, and a prefix
        // of appended entries is a valid Raft log whose append simply was
        // never reported flushed.
        for entry in entries {
            let bytes = codec::to_bytes(&entry)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.store
                .log
                .insert(index_key(entry.index()), bytes)
                .map_err(io::Error::other)?;
        }
        // Readable now; durable when the flusher calls back.
        if let Err(std::sync::mpsc::SendError(cb)) = self.flusher.send(callback) {
            cb.io_completed(self.store.sync());
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        self.remove_range(from, u64::MAX)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record how far the log is purged before deleting: openraft ignores
        // everything at or before it.
        self.store.put_meta(KEY_LAST_PURGED, &log_id)?;
        self.remove_range(0, log_id.index())
    }
}

impl LogStore {
    /// Removes entries with index in `from..=to`.
    fn remove_range(&self, from: u64, to: u64) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        for kv in self.store.log.range(index_key(from)..=index_key(to)) {
            let (key, _) = kv.map_err(io::Error::other)?;
            batch.remove(key);
        }
        self.store.log.apply_batch(batch).map_err(io::Error::other)
    }
}
