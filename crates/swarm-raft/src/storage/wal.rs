//! [`Wal`]: the Raft log in segment files of its own, beside the sled
//! database (`<data dir>/raft-log/`).
//!
//! Why not sled: every sled `flush` hands the write of its io buffer to
//! sled's thread pool, which wakes all of its idle threads (a condvar
//! `notify_all`) for each job, and then waits on `sync_file_range` before
//! our `fdatasync`. Measured on the leader under one client (`strace -c
//! -f`): 25 futex calls per acknowledged write, 13,000 a second from
//! sled's eight io threads alone. This log is one `pwrite` per append and
//! one `fdatasync` per group of appends, on the thread that asks.
//!
//! # Format
//! Segment files `<seq>.wal` (20 decimal digits), each created at
//! [`SEGMENT_BYTES`] as a sparse file, so appending never changes its size
//! and `fdatasync` has no metadata to write. Records follow each other from
//! offset 0:
//!
//! ```text
//! len: u32 LE | crc32: u32 LE (of index and payload) | index: u64 LE | payload: len bytes
//! ```
//!
//! The payload is a log entry in `codec`'s tagged encoding. A record whose
//! `len` is 0 (the zeros of the sparse file) ends the segment.
//!
//! # Recovery
//! The log is the longest run of whole, checksummed, consecutive records.
//! The last segment may end in a torn or unsynced record (a crash during an
//! append that was never reported flushed): it is cut there and the rest of
//! the segment zeroed. Anything wrong before the last segment is damage,
//! reported as an error that names the file: a segment is synced before
//! the next one is started, so its records were all durable.
//!
//! # Truncation and purge
//! Truncating removes the later segments (last first), then zeroes the
//! segment it cuts from the cut on, and syncs, so a crash midway leaves a
//! log that is a prefix of the one before. Purging forgets the records at
//! or before an index and deletes the segments that hold nothing after it;
//! records of a purged index left in a kept segment are skipped on open
//! (the store passes the purged index).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The size every segment file is created at; a record larger than what is
/// left in the current segment starts the next one (or, if larger than a
/// whole segment, gets a segment of its own, as large as it needs).
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: usize = 16;
/// The largest record payload accepted on read: no entry is larger than
/// the largest message a peer may send (`service::PEER_MESSAGE_BYTES`).
const MAX_RECORD: usize = 256 << 20;
const SUFFIX: &str = "wal";

/// Where one record is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seq: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    /// The size it was created at (`SEGMENT_BYTES`, or more for a record
    /// larger than that).
    capacity: u64,
}

struct Inner {
    /// In order of `seq`; the last one is where appends go.
    segments: Vec<Segment>,
    /// Where appends go in the last segment.
    write_at: u64,
    /// The index of `locs[0]` (or of the next append, when `locs` is empty
    /// and `next_known`).
    first: u64,
    /// One per record, consecutive indexes from `first`.
    locs: VecDeque<Loc>,
    /// Whether the next append's index is known (false only for a log that
    /// never held or purged anything).
    next_known: bool,
    /// Segments written since the last sync.
    unsynced: Vec<Arc<File>>,
}

impl Inner {
    fn next_index(&self) -> u64 {
        self.first + self.locs.len() as u64
    }

    fn mark_unsynced(&mut self, file: &Arc<File>) {
        if !self.unsynced.iter().any(|f| Arc::ptr_eq(f, file)) {
            self.unsynced.push(file.clone());
        }
    }
}

/// The Raft log's segment files and an index of where each record is.
pub(crate) struct Wal {
    dir: PathBuf,
    /// The size new segments are created at ([`SEGMENT_BYTES`]; smaller in
    /// tests).
    segment_bytes: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{SUFFIX}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates segment `seq` at `capacity` bytes (sparse), durably.
fn create_segment(dir: &Path, seq: u64, capacity: u64) -> io::Result<Segment> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.set_len(capacity)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(Segment {
        seq,
        path,
        file: Arc::new(file),
        capacity,
    })
}

/// Zeroes `file` from `offset` on, keeping its size.
fn zero_from(file: &File, offset: u64, capacity: u64) -> io::Result<()> {
    file.set_len(offset)?;
    file.set_len(capacity)?;
    file.sync_all()
}

/// One record read back while recovering, or why the segment ends.
enum Scanned {
    Record { index: u64, len: u32 },
    End,
    Torn(String),
}

fn scan_record(r: &mut impl Read, offset: u64, capacity: u64) -> io::Result<Scanned> {
    let mut header = [0u8; HEADER];
    if offset + HEADER as u64 > capacity {
        return Ok(Scanned::End);
    }
    if let Err(e) = r.read_exact(&mut header) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(Scanned::End)
        } else {
            Err(e)
        };
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let len = word(0);
    if len == 0 {
        return Ok(Scanned::End);
    }
    if len as usize > MAX_RECORD || offset + (HEADER as u64) + u64::from(len) > capacity {
        return Ok(Scanned::Torn(format!(
            "record at offset {offset} claims {len} bytes"
        )));
    }
    let crc = word(4);
    let mut index_bytes = [0u8; 8];
    index_bytes.copy_from_slice(&header[8..16]);
    let index = u64::from_le_bytes(index_bytes);
    let mut payload = vec![0u8; len as usize];
    if let Err(e) = r.read_exact(&mut payload) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(Scanned::Torn(format!(
                "record at offset {offset} ends past the file"
            )))
        } else {
            Err(e)
        };
    }
    if checksum(index, &payload) != crc {
        return Ok(Scanned::Torn(format!(
            "record at offset {offset} (index {index}) fails its checksum"
        )));
    }
    Ok(Scanned::Record { index, len })
}

impl Wal {
    /// Opens the log in `dir`, creating it if missing, and recovers it (see
    /// the module docs). Records at or before `purged` are skipped.
    pub(crate) fn open(dir: &Path, purged: Option<u64>) -> io::Result<Wal> {
        Wal::open_with(dir, purged, SEGMENT_BYTES)
    }

    fn open_with(dir: &Path, purged: Option<u64>, segment_bytes: u64) -> io::Result<Wal> {
        fs::create_dir_all(dir)?;
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(&format!(".{SUFFIX}"))
                && let Ok(seq) = stem.parse::<u64>()
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();

        let mut inner = Inner {
            segments: Vec::new(),
            write_at: 0,
            first: purged.map_or(0, |p| p + 1),
            locs: VecDeque::new(),
            next_known: purged.is_some(),
            unsynced: Vec::new(),
        };
        let count = seqs.len();
        for (i, seq) in seqs.into_iter().enumerate() {
            let last = i + 1 == count;
            let path = segment_path(dir, seq);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let capacity = file.metadata()?.len();
            let mut reader = BufReader::with_capacity(1 << 20, &file);
            let mut offset = 0u64;
            loop {
                match scan_record(&mut reader, offset, capacity)? {
                    Scanned::End => break,
                    Scanned::Torn(why) if last => {
                        tracing::warn!(
                            file = %path.display(), offset, %why,
                            "raft log ends in a record that was never reported flushed; cut there"
                        );
                        zero_from(&file, offset, capacity)?;
                        break;
                    }
                    Scanned::Torn(why) => {
                        return Err(invalid(format!("{}: {why}", path.display())));
                    }
                    Scanned::Record { index, len } => {
                        let loc = Loc { seq, offset, len };
                        offset += HEADER as u64 + u64::from(len);
                        if purged.is_some_and(|p| index <= p) {
                            continue;
                        }
                        if inner.locs.is_empty() && !inner.next_known {
                            inner.first = index;
                            inner.next_known = true;
                        }
                        if index != inner.next_index() {
                            return Err(invalid(format!(
                                "{}: record at offset {} has index {index}, expected {}",
                                path.display(),
                                loc.offset,
                                inner.next_index()
                            )));
                        }
                        inner.locs.push_back(loc);
                    }
                }
            }
            if last {
                inner.write_at = offset;
            }
            inner.segments.push(Segment {
                seq,
                path,
                file: Arc::new(file),
                capacity,
            });
        }
        if inner.segments.is_empty() {
            inner.segments.push(create_segment(dir, 1, segment_bytes)?);
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves `Inner` consistent at every
        // await-free step below, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of the first and the last record, if any.
    pub(crate) fn bounds(&self) -> Option<(u64, u64)> {
        let inner = self.lock();
        (!inner.locs.is_empty()).then(|| (inner.first, inner.next_index() - 1))
    }

    /// Appends `records` (index, payload), which must continue the log
    /// without a hole: readable at once, durable after [`Wal::sync`].
    pub(crate) fn append(&self, records: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let mut inner = self.lock();
        let mut expected = inner.next_known.then(|| inner.next_index());
        for (index, _) in records {
            if expected.is_some_and(|e| e != *index) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "append of log index {index} would leave a hole: the log's next index is {}",
                        expected.unwrap_or_default()
                    ),
                ));
            }
            expected = Some(index + 1);
        }
        let mut buf = Vec::new();
        let mut pending: Vec<(u64, u32)> = Vec::new();
        for (index, payload) in records {
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| (*l as usize) <= MAX_RECORD)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "log entry {index} is {} bytes, over the limit",
                            payload.len()
                        ),
                    )
                })?;
            let size = (HEADER + payload.len()) as u64;
            let capacity = inner.segments.last().map_or(0, |s| s.capacity);
            if inner.write_at + buf.len() as u64 + size > capacity {
                self.write_buf(&mut inner, &mut buf, &mut pending)?;
                self.roll(&mut inner, size)?;
            }
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&checksum(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
            pending.push((*index, len));
        }
        self.write_buf(&mut inner, &mut buf, &mut pending)
    }

    /// Writes `buf` at the end of the last segment and indexes `pending`.
    fn write_buf(
        &self,
        inner: &mut Inner,
        buf: &mut Vec<u8>,
        pending: &mut Vec<(u64, u32)>,
    ) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(seg) = inner.segments.last() else {
            return Err(io::Error::other("raft log has no segment"));
        };
        let (seq, file) = (seg.seq, seg.file.clone());
        file.write_all_at(buf, inner.write_at)?;
        let mut offset = inner.write_at;
        for (index, len) in pending.drain(..) {
            if !inner.next_known {
                inner.first = index;
                inner.next_known = true;
            }
            inner.locs.push_back(Loc { seq, offset, len });
            offset += HEADER as u64 + u64::from(len);
        }
        inner.write_at = offset;
        inner.mark_unsynced(&file);
        buf.clear();
        Ok(())
    }

    /// Starts a new segment with room for at least `need` bytes, after
    /// syncing the current one (see Recovery in the module docs).
    fn roll(&self, inner: &mut Inner, need: u64) -> io::Result<()> {
        if let Some(seg) = inner.segments.last() {
            seg.file.sync_data()?;
        }
        let seq = inner.segments.last().map_or(1, |s| s.seq + 1);
        inner.segments.push(create_segment(
            &self.dir,
            seq,
            need.max(self.segment_bytes),
        )?);
        inner.write_at = 0;
        Ok(())
    }

    /// Makes every append so far durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let files = std::mem::take(&mut self.lock().unsynced);
        for f in &files {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The payloads of the records with index in `start..end`: a contiguous
    /// run from `max(start, first)`, empty if none is stored.
    pub(crate) fn read(&self, start: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let inner = self.lock();
        let from = start.max(inner.first);
        let to = end.min(inner.next_index());
        if from >= to {
            return Ok(Vec::new());
        }
        let locs: Vec<Loc> = inner
            .locs
            .range((from - inner.first) as usize..(to - inner.first) as usize)
            .copied()
            .collect();
        let files: Vec<(u64, Arc<File>, PathBuf)> = inner
            .segments
            .iter()
            .map(|s| (s.seq, s.file.clone(), s.path.clone()))
            .collect();
        drop(inner);
        let mut out = Vec::with_capacity(locs.len());
        for (index, loc) in (from..).zip(locs) {
            let Some((_, file, path)) = files.iter().find(|(seq, _, _)| *seq == loc.seq) else {
                return Err(io::Error::other(format!(
                    "raft log index {index} is in segment {} which is gone",
                    loc.seq
                )));
            };
            let mut payload = vec![0u8; loc.len as usize];
            file.read_exact_at(&mut payload, loc.offset + HEADER as u64)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("read raft log index {index} in {}: {e}", path.display()),
                    )
                })?;
            out.push((index, payload));
        }
        Ok(out)
    }

    /// Removes the records with index `index` and later, durably.
    pub(crate) fn truncate_from(&self, index: u64) -> io::Result<()> {
        let mut inner = self.lock();
        if index >= inner.next_index() {
            return Ok(());
        }
        let pos = index.saturating_sub(inner.first) as usize;
        let Some(cut) = inner.locs.get(pos).copied() else {
            return Ok(());
        };
        // Later segments first, so a crash midway leaves a prefix.
        while inner.segments.last().is_some_and(|s| s.seq > cut.seq) {
            if let Some(seg) = inner.segments.pop() {
                fs::remove_file(&seg.path)?;
            }
        }
        sync_dir(&self.dir)?;
        let Some(seg) = inner.segments.last() else {
            return Err(io::Error::other("raft log has no segment"));
        };
        zero_from(&seg.file, cut.offset, seg.capacity)?;
        inner.locs.truncate(pos);
        inner.write_at = cut.offset;
        let first = inner.first;
        inner.first = first.min(index);
        Ok(())
    }

    /// Forgets the records with index `index` and earlier, deleting the
    /// segments that hold nothing later.
    pub(crate) fn purge_to(&self, index: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let keep_from = index + 1;
        while inner.first < keep_from && !inner.locs.is_empty() {
            inner.locs.pop_front();
            inner.first += 1;
        }
        if inner.locs.is_empty() {
            inner.first = inner.first.max(keep_from);
        }
        inner.next_known = true;
        // Every segment before the one holding the first kept record (or
        // before the last segment, when none is kept) goes.
        let keep_seq = inner
            .locs
            .front()
            .map(|l| l.seq)
            .or_else(|| inner.segments.last().map(|s| s.seq))
            .unwrap_or(0);
        let mut removed = false;
        while inner.segments.first().is_some_and(|s| s.seq < keep_seq) {
            let seg = inner.segments.remove(0);
            fs::remove_file(&seg.path)?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// How many segment files there are.
    #[cfg(test)]
    fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Small segments, so a test rolls over without writing 64 MiB.
    const SEG: u64 = 4096;

    fn records(range: std::ops::Range<u64>, size: usize) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, vec![i as u8; size])).collect()
    }

    fn indexes(got: &[(u64, Vec<u8>)]) -> Vec<u64> {
        got.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn appended_records_read_back_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        wal.append(&records(1..4, 10)).unwrap();
        wal.append(&records(4..6, 3)).unwrap();
        wal.sync().unwrap();
        assert_eq!(
            wal.read(0, 100).unwrap(),
            records(1..4, 10)
                .into_iter()
                .chain(records(4..6, 3))
                .collect::<Vec<_>>()
        );
        drop(wal);
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        assert_eq!(wal.bounds(), Some((1, 5)));
        assert_eq!(indexes(&wal.read(2, 4).unwrap()), [2, 3]);
    }

    #[test]
    fn an_append_that_would_leave_a_hole_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        wal.append(&records(1..3, 4)).unwrap();
        let err = wal.append(&[(4, vec![1])]).unwrap_err();
        assert!(err.to_string().contains("hole"), "{err}");
        assert!(err.to_string().contains("next index is 3"), "{err}");
        assert_eq!(wal.bounds(), Some((1, 2)));
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_log_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        wal.append(&records(1..4, 20)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        // Damage the payload of the last record, as a crash mid-write can.
        let path = segment_path(dir.path(), 1);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let third = 2 * (HEADER as u64 + 20) + HEADER as u64 + 5;
        file.write_all_at(&[0xff], third).unwrap();
        drop(file);
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        assert_eq!(wal.bounds(), Some((1, 2)));
        wal.append(&records(3..5, 7)).unwrap();
        drop(wal);
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        assert_eq!(indexes(&wal.read(0, 10).unwrap()), [1, 2, 3, 4]);
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        wal.append(&records(1..3, 10)).unwrap();
        // A record larger than what is left rolls to segment 2.
        wal.append(&[(3, vec![7u8; SEG as usize])]).unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.segment_count(), 2);
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff], HEADER as u64 + 1).unwrap();
        drop(file);
        let err = Wal::open_with(dir.path(), None, SEG).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn truncation_removes_later_segments_and_appends_continue_from_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        wal.append(&records(1..3, 10)).unwrap();
        wal.append(&[(3, vec![7u8; SEG as usize])]).unwrap();
        wal.append(&records(4..6, 10)).unwrap();
        // 1-2, the large 3 in a segment of its own, 4-5.
        assert_eq!(wal.segment_count(), 3);
        wal.truncate_from(2).unwrap();
        assert_eq!(wal.segment_count(), 1);
        assert_eq!(wal.bounds(), Some((1, 1)));
        wal.append(&records(2..4, 5)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        assert_eq!(
            wal.read(0, 10).unwrap(),
            records(1..2, 10)
                .into_iter()
                .chain(records(2..4, 5))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn purge_deletes_segments_with_nothing_later_and_reopen_skips_purged_records() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), None, SEG).unwrap();
        wal.append(&records(1..3, 10)).unwrap();
        wal.append(&[(3, vec![7u8; SEG as usize])]).unwrap();
        wal.append(&records(4..6, 10)).unwrap();
        wal.purge_to(1).unwrap();
        assert_eq!(wal.segment_count(), 3);
        assert_eq!(indexes(&wal.read(0, 10).unwrap()), [2, 3, 4, 5]);
        wal.purge_to(3).unwrap();
        assert_eq!(wal.segment_count(), 1);
        assert_eq!(indexes(&wal.read(0, 10).unwrap()), [4, 5]);
        wal.purge_to(4).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open_with(dir.path(), Some(4), SEG).unwrap();
        assert_eq!(wal.bounds(), Some((5, 5)));
        // Purging past the end leaves an empty log that continues after it.
        wal.purge_to(9).unwrap();
        assert_eq!(wal.bounds(), None);
        assert!(wal.append(&records(11..12, 1)).is_err());
        wal.append(&records(10..12, 1)).unwrap();
        assert_eq!(wal.bounds(), Some((10, 11)));
    }
}
