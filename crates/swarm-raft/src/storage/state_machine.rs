//! [`StateMachineStore`]: the replicated [`State`] in memory, and its
//! snapshots: files in the snapshot directory beside the sled database,
//! with only their record (which file is current, its Raft metadata) in
//! sled.

use crate::metrics::{Applied as AppliedCommand, RaftMetrics};
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use swarm_claims::State;

use super::snapshot_file::{Format, IncomingSnapshot, SnapshotFile, read_legacy_json};
use super::{
    KEY_SNAPSHOT, LEGACY_SNAPSHOT_DATA, LEGACY_SNAPSHOT_META, SNAPSHOT_DIR, SledStore,
    StorageOpenError,
};
use crate::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// What the state machine has applied, kept together under one lock.
#[derive(Debug, Default)]
struct Applied {
    state: State,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The replicated [`State`] in memory; its snapshots are files in the
/// snapshot directory beside the sled database, with only their record
/// (which file is current, its Raft metadata) in sled. A snapshot file is
/// as large as the state; it is streamed, never held in memory whole.
#[derive(Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    store: SledStore,
    /// Tells readers the index applied so far.
    applied_tx: Arc<tokio::sync::watch::Sender<u64>>,
    /// Tells watchers of one item that it changed.
    item_watch: Arc<super::ItemWatch>,
    /// Serializes snapshot writes (a build and an install may overlap).
    persisting: Arc<Mutex<()>>,
    /// What applying and snapshots count.
    metrics: RaftMetrics,
}

impl StateMachineStore {
    pub(super) fn open(store: SledStore) -> Result<StateMachineStore, StorageOpenError> {
        let dir = store.dir.clone();
        let snap_err = move |reason: String| StorageOpenError::Snapshot {
            dir: dir.clone(),
            reason,
        };
        let stored = store
            .stored_snapshot()
            .map_err(|e| snap_err(e.to_string()))?;
        let mut applied = Applied::default();
        let mut legacy = None;
        if let Some((meta, state, format)) = stored {
            if format != Format::Binary {
                legacy = Some(meta.clone());
            }
            applied = Applied {
                state,
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
            };
        }
        let index = applied
            .last_applied
            .as_ref()
            .map(|l| l.index())
            .unwrap_or(0);
        let this = StateMachineStore {
            applied: Arc::new(RwLock::new(applied)),
            store,
            applied_tx: Arc::new(tokio::sync::watch::channel(index).0),
            item_watch: Arc::default(),
            persisting: Arc::new(Mutex::new(())),
            metrics: RaftMetrics::default(),
        };
        if let Some(meta) = legacy {
            // Rewritten once in the binary format: what is sent to a lagging
            // follower is then always a snapshot file of the current format.
            let guard = this.applied.read().unwrap_or_else(|p| p.into_inner());
            this.persist(&meta, |store| store.write_snapshot(&meta, &guard.state))
                .map_err(|e| snap_err(format!("rewrite the snapshot of an older format: {e}")))?;
            tracing::info!(last_log_id = ?meta.last_log_id, "rewrote a snapshot of an older format (legacy JSON or binary version 1) in the current one");
        }
        this.store.remove_stale_snapshot_files();
        Ok(this)
    }

    /// Reads the replicated state as this replica has applied it.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self.applied.read().unwrap_or_else(|p| p.into_inner());
        f(&guard.state)
    }

    /// What this replica's applying and snapshots count.
    pub fn metrics(&self) -> &RaftMetrics {
        &self.metrics
    }

    /// The last applied log index, as a watch for waiters.
    pub fn applied_index(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Wakes when item `id` may have changed in this replica: when an
    /// applied command's answer names it, on a tick, or when a snapshot
    /// replaced the state.
    pub fn item_changes(&self, id: &str) -> super::ItemChanges {
        self.item_watch.watch(id)
    }

    /// A temporary file for a snapshot arriving from the leader.
    pub(crate) async fn receive_snapshot(&self) -> io::Result<IncomingSnapshot> {
        let store = self.store.clone();
        let dir = tokio::task::spawn_blocking(move || store.ensure_snapshot_dir())
            .await
            .map_err(io::Error::other)??;
        IncomingSnapshot::create(&dir).await
    }

    /// Stores the snapshot `write` makes, unless a newer one is stored
    /// already: a slow build that finishes after a newer snapshot was
    /// installed must not put the stored snapshot behind the purged log.
    /// Returns the stored snapshot file: the new one, or the newer one.
    fn persist(
        &self,
        meta: &SnapshotMeta,
        write: impl FnOnce(&SledStore) -> io::Result<SnapshotFile>,
    ) -> io::Result<(SnapshotMeta, SnapshotFile)> {
        let _one_at_a_time = self.persisting.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.store.snapshot_ref()?;
        if let Some(newer) = stored
            .as_ref()
            .filter(|r| r.meta.last_log_id > meta.last_log_id)
        {
            let file = SnapshotFile::open(&self.store.snapshot_dir().join(&newer.file))?;
            return Ok((newer.meta.clone(), file));
        }
        let file = write(&self.store)?;
        let name = file
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other("snapshot file without a name"))?
            .to_string();
        // The file is durable; now make it the current one, in one write.
        let record = serde_json::to_vec(&SnapshotRef {
            meta: meta.clone(),
            file: name.clone(),
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
        if let Some(old) = stored.filter(|r| r.file != name) {
            let _ = std::fs::remove_file(self.store.snapshot_dir().join(old.file));
        }
        Ok((meta.clone(), file))
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

    /// The stored snapshot's metadata and state, and the format it was
    /// stored in: a snapshot file, or the JSON value in sled of versions
    /// before snapshot files.
    fn stored_snapshot(&self) -> io::Result<Option<(SnapshotMeta, State, Format)>> {
        if let Some(r) = self.snapshot_ref()? {
            let path = self.snapshot_dir().join(&r.file);
            let (state, format) = SnapshotFile::open(&path)?.read_state().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            return Ok(Some((r.meta, state, format)));
        }
        let Some(meta) = self.get_meta::<SnapshotMeta>(LEGACY_SNAPSHOT_META)? else {
            return Ok(None);
        };
        let Some(data) = self
            .meta
            .get(LEGACY_SNAPSHOT_DATA)
            .map_err(io::Error::other)?
        else {
            return Ok(None);
        };
        let state = read_legacy_json(data.as_ref()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the legacy JSON snapshot kept in sled: {e}"),
            )
        })?;
        Ok(Some((meta, state, Format::LegacyJson)))
    }

    /// The name of the snapshot file for `meta`: after its last log id
    /// (`T3-N1.9999`), so unique per snapshot.
    fn snapshot_path(&self, meta: &SnapshotMeta) -> PathBuf {
        let name = match &meta.last_log_id {
            Some(id) => format!("snapshot-{id}.bin"),
            None => "snapshot-empty.bin".to_string(),
        };
        self.snapshot_dir().join(name)
    }

    /// Creates the snapshot directory if it is missing, durably.
    fn ensure_snapshot_dir(&self) -> io::Result<PathBuf> {
        let dir = self.snapshot_dir();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            // The new directory's entry must survive a power loss too.
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(dir)
    }

    /// Writes `state` to a new snapshot file for `meta` and makes it
    /// durable (file and directory entry). `state` is let go of once it is
    /// encoded, before the wait for the disk: a build passes the applied
    /// state's read guard, so applying waits for the encoder only.
    fn write_snapshot(
        &self,
        meta: &SnapshotMeta,
        state: impl Deref<Target = State>,
    ) -> io::Result<SnapshotFile> {
        let dir = self.ensure_snapshot_dir()?;
        let path = self.snapshot_path(meta);
        let mut tmp_name = path.clone().into_os_string();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let written = SnapshotFile::create_unsynced(&tmp, &state)?;
        drop(state);
        written.sync()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&dir)?.sync_all()?;
        drop(written);
        SnapshotFile::open(&path)
    }

    /// Makes a snapshot received from the leader the file for `meta`
    /// (moved, durably), or writes `state` anew when the file is not one
    /// this store received, or is in an older format.
    fn place_snapshot(
        &self,
        meta: &SnapshotMeta,
        received: &mut SnapshotFile,
        format: Format,
        state: &State,
    ) -> io::Result<SnapshotFile> {
        if format == Format::Binary {
            let dir = self.ensure_snapshot_dir()?;
            if let Some(placed) = received.adopt(&self.snapshot_path(meta))? {
                File::open(&dir)?.sync_all()?;
                return Ok(placed);
            }
        }
        self.write_snapshot(meta, state)
    }

    /// Removes snapshot files other than the current one (left by a crash
    /// between writing a file and recording it, or by a transfer cut short).
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
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        let this = self.clone();
        let (snapshot, copied) =
            tokio::task::spawn_blocking(move || -> io::Result<(Snapshot, std::time::Duration)> {
                // A copy of the state under the read lock, encoded after it is
                // released: the copy shares the work items (an item applying
                // changes meanwhile is copied then, once) and duplicates only
                // the indexes, so applying waits for the copy (7-33 ms for
                // 40,000-130,000 items here) instead of the whole build
                // (216-444 ms, which stalled every write on every node at
                // once: they all snapshot at the same index).
                let copying = std::time::Instant::now();
                let (state, meta) = {
                    let applied = this.applied.read().unwrap_or_else(|p| p.into_inner());
                    let meta = SnapshotMeta {
                        last_log_id: applied.last_applied,
                        last_membership: applied.membership.clone(),
                    };
                    (Box::new(applied.state.clone()), meta)
                };
                let copied = copying.elapsed();
                // Durable before openraft may purge the log behind it.
                let (meta, snapshot) =
                    this.persist(&meta, |store| store.write_snapshot(&meta, state))?;
                Ok((Snapshot { meta, snapshot }, copied))
            })
            .await
            .map_err(io::Error::other)??;
        let bytes = snapshot.snapshot.len().unwrap_or(0);
        self.metrics.snapshot_built(started.elapsed(), bytes);
        tracing::info!(
            last_log_id = ?snapshot.meta.last_log_id,
            bytes,
            copy_ms = copied.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "built snapshot"
        );
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotFile;
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
                    EntryPayload::Normal(cmd) => {
                        let what = AppliedCommand::of(&cmd);
                        let result = swarm_claims::apply(&mut guard.state, cmd);
                        self.metrics.applied(&what, &result);
                        result
                    }
                    EntryPayload::Membership(m) => {
                        guard.membership = StoredMembership::new(Some(log_id), m);
                        Ok(swarm_claims::Response::Batch(Vec::new()))
                    }
                    EntryPayload::Blank => Ok(swarm_claims::Response::Batch(Vec::new())),
                }
            };
            last_index = Some(log_id.index());
            if let Ok(response) = &result {
                self.item_watch.touched(response);
            }
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
        mut snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let started = std::time::Instant::now();
        let bytes = snapshot.len().unwrap_or(0);
        let this = self.clone();
        let m = meta.clone();
        // Decoded from the file as a stream, then the file itself becomes
        // the stored snapshot: no second copy of the state in memory.
        let state = tokio::task::spawn_blocking(move || -> io::Result<State> {
            let (state, format) = snapshot.read_state().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("snapshot {}: {e}", snapshot.path().display()),
                )
            })?;
            this.persist(&m, |store| {
                store.place_snapshot(&m, &mut snapshot, format, &state)
            })?;
            Ok(state)
        })
        .await
        .map_err(io::Error::other)??;
        {
            // Replace, never merge: the snapshot is the whole state.
            let mut guard = self.applied.write().unwrap_or_else(|p| p.into_inner());
            *guard = Applied {
                state,
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
        }
        self.applied_tx
            .send_replace(meta.last_log_id.as_ref().map(|l| l.index()).unwrap_or(0));
        self.item_watch.touched_all();
        self.metrics.snapshot_installed(started.elapsed(), bytes);
        tracing::info!(last_log_id = ?meta.last_log_id, bytes, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> io::Result<Option<Snapshot>> {
            // Meta and file of the same snapshot, never a torn pair: once
            // open, the file stays readable even if a newer one replaces it.
            let _no_write = this.persisting.lock().unwrap_or_else(|p| p.into_inner());
            let Some(r) = this.store.snapshot_ref()? else {
                return Ok(None);
            };
            let snapshot = SnapshotFile::open(&this.store.snapshot_dir().join(&r.file))?;
            Ok(Some(Snapshot {
                meta: r.meta,
                snapshot,
            }))
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read;

    use openraft::testing::log_id;

    use super::*;
    use crate::storage::snapshot_file::tests::sample_state;

    fn snapshot_files(store: &SledStore) -> usize {
        std::fs::read_dir(store.snapshot_dir()).unwrap().count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_received_snapshot_is_streamed_into_a_file_and_installed_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db"), 1 << 20).unwrap();
        let (_log, mut sm) = store.stores().unwrap();
        let state = sample_state(500);
        let sent = SnapshotFile::create(&dir.path().join("sent.bin"), &state).unwrap();
        let mut bytes = Vec::new();
        sent.reader().unwrap().read_to_end(&mut bytes).unwrap();

        let mut incoming = sm.receive_snapshot().await.unwrap();
        for chunk in bytes.chunks(1000) {
            incoming.write(chunk).await.unwrap();
        }
        assert_eq!(incoming.bytes(), bytes.len() as u64);
        let received = incoming.finish().await.unwrap();
        let temporary = received.path().to_path_buf();
        assert_eq!(received.verify().unwrap(), Format::Binary);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id::<TypeConfig>(2, 1, 40)),
            last_membership: Default::default(),
        };
        sm.install_snapshot(&meta, received).await.unwrap();

        assert_eq!(sm.read(|s| s.clone()), state);
        assert!(
            !temporary.exists(),
            "the received file was moved into place"
        );
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.snapshot.path(), store.snapshot_path(&meta));
        assert_eq!(std::fs::read(current.snapshot.path()).unwrap(), bytes);
        assert_eq!(snapshot_files(&store), 1);

        // A transfer cut short leaves no file behind.
        let mut cut = sm.receive_snapshot().await.unwrap();
        cut.write(&bytes[..100]).await.unwrap();
        drop(cut);
        assert_eq!(snapshot_files(&store), 1);
    }
}
