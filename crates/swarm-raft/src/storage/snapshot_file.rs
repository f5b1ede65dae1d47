//! Snapshot files: the format of a snapshot's body, on disk and on the wire
//! alike, and [`SnapshotFile`], the open file that openraft hands between
//! the state machine and the network.
//!
//! # Format
//! | bytes | what |
//! |---|---|
//! | 8 | magic, `SWARMSNP` |
//! | 1 | format version, `2` |
//! | n | the [`State`] in bincode 2 (serde, standard configuration), then its queue control (limits, schedules) |
//! | 4 | CRC-32 of those n bytes, little endian |
//!
//! Written and read as a stream through fixed buffers: the encoded state is
//! never one buffer in memory. A reader checks the checksum in a first pass
//! and decodes in a second, so a damaged file is refused before anything is
//! decoded from it (a damaged length could otherwise ask for gigabytes).
//!
//! Version 1 (before queue control) had no queue control after the state,
//! nor a control field at the end of each item: it is read as such, with
//! none. Before version 1 a snapshot was the JSON object `{"state": ...}`; a
//! file that starts with `{` is read that way ([`Format::LegacyJson`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use swarm_claims::State;

use crate::codec::BINCODE;

const MAGIC: &[u8; 8] = b"SWARMSNP";
const VERSION: u8 = 2;
/// The binary format before queue control.
const VERSION_1: u8 = 1;
const HEADER_BYTES: u64 = MAGIC.len() as u64 + 1;
const CHECKSUM_BYTES: u64 = 4;
/// The buffer between the encoder (or decoder) and the file.
const BUFFER_BYTES: usize = 256 * 1024;

/// How a snapshot file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The current format, version 2 (see the module docs).
    Binary,
    /// Version 1, before queue control.
    BinaryV1,
    /// `{"state": ...}` in JSON, as swarmd wrote it before the binary format.
    LegacyJson,
}

/// Why a snapshot file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotReadError {
    #[error("read: {0}")]
    Io(#[from] io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("not a snapshot: it starts with neither the SWARMSNP header nor legacy JSON")]
    NotASnapshot,
    #[error("snapshot format version {0} is unknown to this swarmd (written by a newer version?)")]
    UnknownVersion(u8),
    #[error("the file is truncated: {0} bytes")]
    Truncated(u64),
    #[error(
        "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is damaged"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("decode the state: {0}")]
    Binary(#[from] bincode::error::DecodeError),
    #[error("{0} bytes follow the state")]
    Trailing(u64),
    #[error("decode the legacy JSON snapshot: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<SnapshotReadError> for io::Error {
    fn from(e: SnapshotReadError) -> io::Error {
        match e {
            SnapshotReadError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// A snapshot body in a file, open for reading: what the state machine
/// builds or stores, what the network sends to a lagging follower in
/// chunks, and what that follower installs. The file stays readable through
/// this handle even after a newer snapshot has replaced (removed) it.
#[derive(Debug)]
pub struct SnapshotFile {
    file: File,
    path: PathBuf,
    /// Received from the leader into a temporary file: installing it moves
    /// the file into place; dropped without that, the file is removed.
    received: bool,
}

impl SnapshotFile {
    /// Opens a snapshot file for reading.
    pub fn open(path: &Path) -> io::Result<SnapshotFile> {
        let file = File::open(path).map_err(|e| {
            io::Error::new(e.kind(), format!("open snapshot {}: {e}", path.display()))
        })?;
        Ok(SnapshotFile {
            file,
            path: path.to_path_buf(),
            received: false,
        })
    }

    /// Writes `state` as a snapshot (the current format) to a new file at
    /// `path` and makes the file durable; its directory entry is the
    /// caller's to sync.
    pub fn create(path: &Path, state: &State) -> io::Result<SnapshotFile> {
        let written = SnapshotFile::create_unsynced(path, state)?;
        written.sync()?;
        Ok(written)
    }

    /// [`SnapshotFile::create`] without making the file durable yet.
    pub(crate) fn create_unsynced(path: &Path, state: &State) -> io::Result<SnapshotFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        write_snapshot(state, &mut &file)?;
        Ok(SnapshotFile {
            file,
            path: path.to_path_buf(),
            received: false,
        })
    }

    /// Makes the file's content durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Where the file is (or was, if a newer snapshot replaced it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size of the file in bytes.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A handle to read the file from its start.
    pub fn reader(&self) -> io::Result<File> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Checks that the file is a whole, undamaged snapshot (header and
    /// checksum; a legacy JSON file has neither and passes).
    pub fn verify(&self) -> Result<Format, SnapshotReadError> {
        Ok(check(&mut self.reader()?, self.len()?)?.0)
    }

    /// Reads the state the file holds, streaming it through a buffer.
    pub fn read_state(&self) -> Result<(State, Format), SnapshotReadError> {
        let len = self.len()?;
        let mut file = self.reader()?;
        match check(&mut file, len)? {
            (format @ (Format::Binary | Format::BinaryV1), body_len) => {
                file.seek(SeekFrom::Start(HEADER_BYTES))?;
                let mut body = BufReader::with_capacity(BUFFER_BYTES, file.take(body_len));
                let state = match format {
                    Format::BinaryV1 => swarm_claims::decode_items_without_control(|| {
                        bincode::serde::decode_from_std_read::<State, _, _>(&mut body, BINCODE)
                    })?
                    .restored(),
                    _ => State::from_snapshot_body(bincode::serde::decode_from_std_read(
                        &mut body, BINCODE,
                    )?),
                };
                let left = body.buffer().len() as u64 + body.get_ref().limit();
                if left > 0 {
                    return Err(SnapshotReadError::Trailing(left));
                }
                Ok((state, format))
            }
            (Format::LegacyJson, _) => {
                file.seek(SeekFrom::Start(0))?;
                let reader = BufReader::with_capacity(BUFFER_BYTES, file);
                Ok((read_legacy_json(reader)?, Format::LegacyJson))
            }
        }
    }

    /// Moves a received file to `path` and makes it durable there; its
    /// directory entry is the caller's to sync. Any other snapshot is
    /// someone's stored one, not this store's to move: `None`.
    pub(crate) fn adopt(&mut self, path: &Path) -> io::Result<Option<SnapshotFile>> {
        if !self.received {
            return Ok(None);
        }
        self.file.sync_all()?;
        std::fs::rename(&self.path, path)?;
        self.received = false;
        Ok(Some(SnapshotFile {
            file: self.file.try_clone()?,
            path: path.to_path_buf(),
            received: false,
        }))
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.received {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads a snapshot body in the JSON of versions before the binary format,
/// `{"state": ...}`.
pub(super) fn read_legacy_json(reader: impl Read) -> serde_json::Result<State> {
    #[derive(Deserialize)]
    struct LegacyBody {
        state: State,
    }
    Ok(serde_json::from_reader::<_, LegacyBody>(reader)?
        .state
        .restored())
}

/// Reads the header (and, for the binary format, checks the checksum):
/// the format and the length of the body.
fn check(file: &mut File, len: u64) -> Result<(Format, u64), SnapshotReadError> {
    let mut header = [0u8; HEADER_BYTES as usize];
    let got = read_up_to(file, &mut header)?;
    match header.first() {
        _ if got == 0 => return Err(SnapshotReadError::Empty),
        Some(b'{') => return Ok((Format::LegacyJson, len)),
        _ if got < header.len() || &header[..MAGIC.len()] != MAGIC => {
            return Err(SnapshotReadError::NotASnapshot);
        }
        _ => {}
    }
    let format = match header[MAGIC.len()] {
        VERSION => Format::Binary,
        VERSION_1 => Format::BinaryV1,
        version => return Err(SnapshotReadError::UnknownVersion(version)),
    };
    let body_len = len
        .checked_sub(HEADER_BYTES + CHECKSUM_BYTES)
        .ok_or(SnapshotReadError::Truncated(len))?;
    let mut hasher = Checksummed::new(io::sink());
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, (&mut *file).take(body_len));
    io::copy(&mut reader, &mut hasher)?;
    if hasher.len != body_len {
        return Err(SnapshotReadError::Truncated(len));
    }
    let mut stored = [0u8; CHECKSUM_BYTES as usize];
    file.read_exact(&mut stored)?;
    let (stored, computed) = (u32::from_le_bytes(stored), hasher.hasher.finalize());
    if stored != computed {
        return Err(SnapshotReadError::Checksum { stored, computed });
    }
    Ok((format, body_len))
}

/// Fills `buf` as far as the file goes; returns how much it filled.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes `state` as a snapshot in the current format to `out`, through a
/// buffer; returns the bytes written.
pub(crate) fn write_snapshot(state: &State, out: &mut impl Write) -> io::Result<u64> {
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    let mut body = BufWriter::with_capacity(BUFFER_BYTES, Checksummed::new(&mut *out));
    bincode::serde::encode_into_std_write(state.snapshot_body(), &mut body, BINCODE)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let body = body.into_inner().map_err(|e| e.into_error())?;
    let (len, crc) = (body.len, body.hasher.finalize());
    out.write_all(&crc.to_le_bytes())?;
    out.flush()?;
    Ok(HEADER_BYTES + len + CHECKSUM_BYTES)
}

/// A writer that passes bytes on and keeps their CRC-32 and count.
struct Checksummed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl<W> Checksummed<W> {
    fn new(inner: W) -> Self {
        Checksummed {
            inner,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.len += written.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A snapshot arriving from the leader in chunks, written to a temporary
/// file in the snapshot directory (removed if it is never installed, or at
/// the next start).
pub(crate) struct IncomingSnapshot {
    snapshot: SnapshotFile,
    writer: tokio::io::BufWriter<tokio::fs::File>,
    bytes: u64,
}

impl IncomingSnapshot {
    pub(crate) async fn create(dir: &Path) -> io::Result<IncomingSnapshot> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "incoming-{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await?
            .into_std()
            .await;
        let writer = tokio::fs::File::from_std(file.try_clone()?);
        Ok(IncomingSnapshot {
            snapshot: SnapshotFile {
                file,
                path,
                received: true,
            },
            writer: tokio::io::BufWriter::with_capacity(BUFFER_BYTES, writer),
            bytes: 0,
        })
    }

    pub(crate) async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(chunk).await?;
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// How many bytes arrived so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The whole received file, ready to verify and install.
    pub(crate) async fn finish(mut self) -> io::Result<SnapshotFile> {
        use tokio::io::AsyncWriteExt;
        self.writer.flush().await?;
        Ok(self.snapshot)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use swarm_claims::command::{Claim, Complete, StepDone, Submit};
    use swarm_claims::{Command, Response, apply};

    use super::*;

    /// A state with every kind of record: pending, claimed, completed
    /// items, step events with a journal index, a registered node.
    pub(crate) fn sample_state(items: usize) -> State {
        let mut state = State::new();
        for i in 0..items {
            let submit = Submit {
                id: format!("item-{i:06}"),
                idempotency_key: if i % 3 == 0 {
                    format!("key-{i}")
                } else {
                    String::new()
                },
                kind: if i % 2 == 0 { "build" } else { "test" }.into(),
                priority: (i % 5) as i32 - 2,
                requires: if i % 4 == 0 {
                    vec!["gpu".into()]
                } else {
                    Vec::new()
                },
                payload: format!(r#"{{"n":{i},"text":"payload ✓ \"{i}\""}}"#),
                max_attempts: 0,
                now: 1_000 + i as u64,
            };
            apply(&mut state, Command::Submit(submit)).unwrap();
        }
        let claim = Claim {
            agent: "agent-1".into(),
            kinds: Vec::new(),
            capabilities: vec!["gpu".into()],
            max: (items / 2) as u32,
            lease_ms: 30_000,
            now: 50_000,
        };
        let Ok(Response::Granted(granted)) = apply(&mut state, Command::Claim(claim)) else {
            panic!("claim");
        };
        for (n, item) in granted.iter().enumerate() {
            let token = item.lease.as_ref().unwrap().token;
            let step = StepDone {
                id: item.id.to_string(),
                token,
                step: "fetch".into(),
                outcome: "{\"ok\":true}".into(),
                now: 51_000,
            };
            apply(&mut state, Command::StepDone(step)).unwrap();
            if n % 2 == 0 {
                let complete = Complete {
                    id: item.id.to_string(),
                    token,
                    result: format!("{{\"done\":{n}}}"),
                    now: 52_000,
                };
                apply(&mut state, Command::Complete(complete)).unwrap();
            }
        }
        state
    }

    /// Keeps what is written, and the size of the largest single write.
    #[derive(Default)]
    struct Largest {
        bytes: Vec<u8>,
        largest_write: usize,
    }

    impl Write for Largest {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.largest_write = self.largest_write.max(buf.len());
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_snapshot_is_written_and_read_as_a_stream_and_restores_the_state() {
        let state = sample_state(8_000);
        let mut out = Largest::default();
        let written = write_snapshot(&state, &mut out).unwrap();
        assert_eq!(written, out.bytes.len() as u64);
        assert!(
            out.bytes.len() > 4 * BUFFER_BYTES,
            "{} bytes",
            out.bytes.len()
        );
        assert!(out.largest_write <= BUFFER_BYTES, "{}", out.largest_write);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        std::fs::write(&path, &out.bytes).unwrap();
        let file = SnapshotFile::open(&path).unwrap();
        assert_eq!(file.verify().unwrap(), Format::Binary);
        let (back, format) = file.read_state().unwrap();
        assert_eq!(format, Format::Binary);
        assert_eq!(back, state);

        // Reading goes through the fixed buffer, never the whole body.
        let mut reader = out.bytes.as_slice();
        let mut counting = ReadCounter {
            inner: &mut reader,
            largest: 0,
        };
        let mut skip = [0u8; HEADER_BYTES as usize];
        counting.read_exact(&mut skip).unwrap();
        let mut body = BufReader::with_capacity(BUFFER_BYTES, &mut counting);
        let again = State::from_snapshot_body(
            bincode::serde::decode_from_std_read(&mut body, BINCODE).unwrap(),
        );
        assert_eq!(again, state);
        drop(body);
        assert!(counting.largest <= BUFFER_BYTES, "{}", counting.largest);
    }

    struct ReadCounter<'a, R> {
        inner: &'a mut R,
        largest: usize,
    }

    impl<R: Read> Read for ReadCounter<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.largest = self.largest.max(n);
            Ok(n)
        }
    }

    #[test]
    fn the_snapshot_encoding_is_the_one_swarm_claims_round_trips() {
        let state = sample_state(50);
        let mut out = Vec::new();
        write_snapshot(&state, &mut out).unwrap();
        let body = &out[HEADER_BYTES as usize..out.len() - CHECKSUM_BYTES as usize];
        assert_eq!(body, state.to_snapshot().unwrap().as_slice());
    }

    #[test]
    fn a_legacy_json_snapshot_loads() {
        let state = sample_state(200);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot-T1-N1.10.json");
        let json = serde_json::to_vec(&serde_json::json!({ "state": state })).unwrap();
        std::fs::write(&path, json).unwrap();
        let file = SnapshotFile::open(&path).unwrap();
        assert_eq!(file.verify().unwrap(), Format::LegacyJson);
        let (back, format) = file.read_state().unwrap();
        assert_eq!((back, format), (state, Format::LegacyJson));
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_that_says_so() {
        let state = sample_state(100);
        let mut good = Vec::new();
        write_snapshot(&state, &mut good).unwrap();
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        let mut newer = good.clone();
        newer[MAGIC.len()] = 9;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty"),
            (b"hello world, not a snapshot".to_vec(), "not a snapshot"),
            (good[..5].to_vec(), "not a snapshot"),
            (good[..good.len() / 2].to_vec(), "checksum mismatch"),
            (good[..10].to_vec(), "truncated"),
            (flipped, "checksum mismatch"),
            (newer, "version 9 is unknown"),
            (b"{\"state\": {\"items\": 3".to_vec(), "legacy JSON"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("case-{i}"));
            std::fs::write(&path, &bytes).unwrap();
            let file = SnapshotFile::open(&path).unwrap();
            let err = file.read_state().unwrap_err().to_string();
            assert!(err.contains(want), "case {i}: {err:?} lacks {want:?}");
        }
    }
}
