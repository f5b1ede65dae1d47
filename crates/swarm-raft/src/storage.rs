//! The sled stores. One sled database per node holds the Raft log, the vote,
//! the committed index and which snapshot is current; the snapshot itself is
//! a file beside it (a value of many megabytes in sled is rewritten with its
//! page each time a small key beside it changes, and filled the disk). The
//! state machine lives in memory and is rebuilt on start from the snapshot
//! plus the log entries after it.
//!
//! Durability: sled's `flush` writes with `sync_file_range`, which survives a
//! process crash but not a power loss. Every write reported durable here
//! (appended entries, the vote, a snapshot) is followed by an `fdatasync` of
//! sled's data file.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use swarm_claims::State;

use crate::{Entry, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, Vote};

const TREE_LOG: &str = "raft_log";
const TREE_META: &str = "raft_meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// Which snapshot file is current, with its Raft metadata.
const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// Where versions before snapshot files kept the snapshot: read on open,
/// removed when the next snapshot is stored.
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
    #[error("read stored snapshot in {dir}: {reason}")]
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

fn decode_entry(bytes: &[u8]) -> io::Result<Entry> {
    serde_json::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
            out.push(decode_entry(&value)?);
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
            Some((_, value)) => Some(decode_entry(&value)?.log_id()),
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            batch.insert(&index_key(entry.index()), bytes);
        }
        self.store
            .log
            .apply_batch(batch)
            .map_err(io::Error::other)?;
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

// ---------------------------------------------------------------------------
// State machine store

/// What the state machine has applied, kept together under one lock.
#[derive(Debug, Default)]
struct Applied {
    state: State,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The snapshot payload: the claims state. Its Raft metadata travels and is
/// stored beside it.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    state: State,
}

/// The replicated [`State`] in memory; its snapshots are files in the
/// snapshot directory beside the sled database, with only their record
/// (which file is current, its Raft metadata) in sled. The encoded snapshot
/// is as large as the state and is read back only on start and to send it
/// to a lagging follower.
#[derive(Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    store: SledStore,
    /// Tells readers the index applied so far.
    applied_tx: Arc<tokio::sync::watch::Sender<u64>>,
    /// Serializes snapshot writes (a build and an install may overlap).
    persisting: Arc<Mutex<()>>,
}

impl StateMachineStore {
    fn open(store: SledStore) -> Result<StateMachineStore, StorageOpenError> {
        let snap_err = |reason: String| StorageOpenError::Snapshot {
            dir: store.dir.clone(),
            reason,
        };
        let mut applied = Applied::default();
        if let Some((meta, data)) = store
            .current_snapshot()
            .map_err(|e| snap_err(e.to_string()))?
        {
            let body: SnapshotBody =
                serde_json::from_slice(&data).map_err(|e| snap_err(e.to_string()))?;
            applied = Applied {
                state: body.state,
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
            };
        }
        store.remove_stale_snapshot_files();
        let index = applied
            .last_applied
            .as_ref()
            .map(|l| l.index())
            .unwrap_or(0);
        Ok(StateMachineStore {
            applied: Arc::new(RwLock::new(applied)),
            store,
            applied_tx: Arc::new(tokio::sync::watch::channel(index).0),
            persisting: Arc::new(Mutex::new(())),
        })
    }

    /// Reads the replicated state as this replica has applied it.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self.applied.read().unwrap_or_else(|p| p.into_inner());
        f(&guard.state)
    }

    /// The last applied log index, as a watch for waiters.
    pub fn applied_index(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Stores a snapshot unless a newer one is stored already: a slow build
    /// that finishes after a newer snapshot was installed must not put the
    /// stored state behind the purged log. Returns whether it was stored.
    fn persist_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let _one_at_a_time = self.persisting.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.store.snapshot_ref()?;
        if stored
            .as_ref()
            .is_some_and(|r| r.meta.last_log_id > meta.last_log_id)
        {
            return Ok(false);
        }
        let file = self.store.write_snapshot_file(meta, data)?;
        // The file is durable; now make it the current one, in one write.
        let record = serde_json::to_vec(&SnapshotRef {
            meta: meta.clone(),
            file: file.clone(),
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_SNAPSHOT, record);
        batch.remove(LEGACY_SNAPSHOT_META);
        batch.remove(LEGACY_SNAPSHOT_DATA);
        self.store
            .meta
            .apply_batch(batch)
            .map_err(io::Error::other)?;
        self.store.sync()?;
        if let Some(old) = stored.filter(|r| r.file != file) {
            let _ = std::fs::remove_file(self.store.snapshot_dir().join(old.file));
        }
        Ok(true)
    }
}

/// The current snapshot: its metadata and the file (in [`SNAPSHOT_DIR`])
/// that holds its body.
#[derive(Serialize, Deserialize)]
struct SnapshotRef {
    meta: SnapshotMeta,
    file: String,
}

impl SledStore {
    fn snapshot_dir(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_DIR)
    }

    fn snapshot_ref(&self) -> io::Result<Option<SnapshotRef>> {
        self.get_meta(KEY_SNAPSHOT)
    }

    /// The current snapshot's metadata and body, if there is one.
    fn current_snapshot(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        if let Some(r) = self.snapshot_ref()? {
            let path = self.snapshot_dir().join(&r.file);
            let data = std::fs::read(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("read snapshot {}: {e}", path.display()))
            })?;
            return Ok(Some((r.meta, data)));
        }
        let meta: Option<SnapshotMeta> = self.get_meta(LEGACY_SNAPSHOT_META)?;
        let data = self
            .meta
            .get(LEGACY_SNAPSHOT_DATA)
            .map_err(io::Error::other)?;
        Ok(meta.zip(data.map(|d| d.to_vec())))
    }

    /// Writes a snapshot body to a new file and makes it durable (file and
    /// directory entry); returns its name.
    fn write_snapshot_file(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<String> {
        use std::io::Write;
        let dir = self.snapshot_dir();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            // The new directory's entry must survive a power loss too.
            File::open(&self.dir)?.sync_all()?;
        }
        // Named after its last log id (`T3-N1.9999`): unique per snapshot.
        let name = match &meta.last_log_id {
            Some(id) => format!("snapshot-{id}.json"),
            None => "snapshot-empty.json".to_string(),
        };
        let tmp = dir.join(format!("{name}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(&name))?;
        File::open(&dir)?.sync_all()?;
        Ok(name)
    }

    /// Removes snapshot files other than the current one (left by a crash
    /// between writing a file and recording it).
    fn remove_stale_snapshot_files(&self) {
        let current = self.snapshot_ref().ok().flatten().map(|r| r.file);
        let Ok(entries) = std::fs::read_dir(self.snapshot_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if current.as_deref() != name.to_str() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (state, last_applied, membership) = {
            let guard = self.applied.read().unwrap_or_else(|p| p.into_inner());
            (
                guard.state.clone(),
                guard.last_applied,
                guard.membership.clone(),
            )
        };
        let this = self.clone();
        let snapshot = tokio::task::spawn_blocking(move || -> io::Result<Snapshot> {
            let data = serde_json::to_vec(&SnapshotBody { state })
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let meta = SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
            };
            // Durable before openraft may purge the log behind it.
            this.persist_snapshot(&meta, &data)?;
            Ok(Snapshot {
                meta,
                snapshot: data,
            })
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(last_log_id = ?snapshot.meta.last_log_id, bytes = snapshot.snapshot.len(), "built snapshot");
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let guard = self.applied.read().unwrap_or_else(|p| p.into_inner());
        Ok((guard.last_applied, guard.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut last_index = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let result = {
                let mut guard = self.applied.write().unwrap_or_else(|p| p.into_inner());
                guard.last_applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Normal(cmd) => swarm_claims::apply(&mut guard.state, cmd),
                    EntryPayload::Membership(m) => {
                        guard.membership = StoredMembership::new(Some(log_id), m);
                        Ok(swarm_claims::Response::Batch(Vec::new()))
                    }
                    EntryPayload::Blank => Ok(swarm_claims::Response::Batch(Vec::new())),
                }
            };
            last_index = Some(log_id.index());
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        if let Some(index) = last_index {
            self.applied_tx.send_replace(index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let body: SnapshotBody = serde_json::from_slice(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let this = self.clone();
        let (m, data) = (meta.clone(), snapshot);
        tokio::task::spawn_blocking(move || this.persist_snapshot(&m, &data))
            .await
            .map_err(io::Error::other)??;
        {
            // Replace, never merge: the snapshot is the whole state.
            let mut guard = self.applied.write().unwrap_or_else(|p| p.into_inner());
            *guard = Applied {
                state: body.state,
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
        }
        self.applied_tx
            .send_replace(meta.last_log_id.as_ref().map(|l| l.index()).unwrap_or(0));
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> io::Result<Option<Snapshot>> {
            // Meta and body of the same snapshot, never a torn pair.
            let _no_write = this.persisting.lock().unwrap_or_else(|p| p.into_inner());
            Ok(this
                .store
                .current_snapshot()?
                .map(|(meta, snapshot)| Snapshot { meta, snapshot }))
        })
        .await
        .map_err(io::Error::other)?
    }
}
