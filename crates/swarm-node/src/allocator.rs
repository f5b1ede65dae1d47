//! swarmd's allocator, jemalloc: how it gives memory back, and what it holds.
//!
//! jemalloc keeps freed pages ("dirty") for a while in case they are wanted
//! again, and by default purges them only when the arena that freed them
//! allocates again, after up to ten seconds. A node that builds a snapshot
//! (a burst of allocation, then none) would hold that burst's pages long
//! after: its resident set says more than it uses. [`tune`] starts jemalloc's
//! background purging threads and shortens the time dirty pages are kept, so
//! the resident set follows what the node holds.

use tikv_jemalloc_ctl::{Access, AsName, background_thread, epoch, stats};

/// How long freed pages stay resident before jemalloc returns them, in
/// milliseconds (jemalloc's default is 10,000).
pub const DIRTY_DECAY_MS: isize = 1_000;

/// Starts background purging and sets the dirty-page decay of every arena,
/// present and future. Call before the runtime starts its threads. Says what
/// it could not set; the node runs either way.
pub fn tune() -> Vec<String> {
    let mut failed = Vec::new();
    // 4096 is MALLCTL_ARENAS_ALL: every arena that exists now.
    let names: [&[u8]; 2] = [b"arenas.dirty_decay_ms\0", b"arena.4096.dirty_decay_ms\0"];
    for name in names {
        if let Err(e) = name.name().write(DIRTY_DECAY_MS) {
            failed.push(format!(
                "{}: {e}",
                String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name))
            ));
        }
    }
    if let Err(e) = background_thread::write(true) {
        failed.push(format!("background_thread: {e}"));
    }
    failed
}

/// What the allocator holds, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes in pages that hold live allocations.
    pub active: u64,
    /// Bytes of physical memory the allocator maps (its share of RSS).
    pub resident: u64,
    /// Bytes mapped but returned to the OS, kept for reuse of the addresses.
    pub retained: u64,
}

/// jemalloc's statistics now; zeros where it cannot tell (not the process's
/// allocator).
pub fn stats() -> MemoryStats {
    let _ = epoch::advance();
    let read = |r: tikv_jemalloc_ctl::Result<usize>| r.map_or(0, |v| v as u64);
    MemoryStats {
        allocated: read(stats::allocated::read()),
        active: read(stats::active::read()),
        resident: read(stats::resident::read()),
        retained: read(stats::retained::read()),
    }
}
