//! What the pool is doing, for people (`Display`) and programs (serde).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use serde::Serialize;

use crate::size::format_size;

/// A snapshot of a pool's state and counters since it was created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Bytes held in memory by resident values.
    pub memory_used: u64,
    /// The memory bound.
    pub memory_limit: u64,
    /// Bytes of frames in the disk tier.
    pub disk_used: u64,
    /// The disk bound (`u64::MAX`: only the file system's size).
    pub disk_limit: u64,
    /// Where the disk tier is (a backend URI).
    pub disk_tier: String,
    /// Live values.
    pub entries: u64,
    /// Values resident in memory.
    pub entries_in_memory: u64,
    /// Values with a copy in the disk tier (some are in memory too).
    pub entries_on_disk: u64,
    /// Values written to disk to make room (or by `move_to_disk`/`copy_to_disk`).
    pub spills: u64,
    /// Values read back from disk into memory.
    pub restores: u64,
    /// Registered files parsed (first reads, and re-reads after eviction).
    pub file_reads: u64,
    /// Bytes written to the disk tier.
    pub bytes_written: u64,
    /// Bytes read from the disk tier.
    pub bytes_read: u64,
    /// Seconds spent writing to the disk tier.
    pub spill_seconds: f64,
    /// Seconds spent reading from the disk tier.
    pub restore_seconds: f64,
    /// `get`s answered from memory.
    pub hits: u64,
    /// `get`s that had to read from disk.
    pub misses: u64,
    /// Values that left memory without a write (a disk copy existed).
    pub clean_evictions: u64,
    /// Times `put` waited for room (evicting on the caller's thread).
    pub backpressure_waits: u64,
    /// The eviction policy.
    pub policy: String,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = |l: u64| {
            if l == u64::MAX {
                "unbounded".to_string()
            } else {
                format_size(l)
            }
        };
        writeln!(
            f,
            "memory   {} / {}  ({} values, policy {})",
            format_size(self.memory_used),
            limit(self.memory_limit),
            self.entries_in_memory,
            self.policy
        )?;
        writeln!(
            f,
            "disk     {} / {}  ({} values) at {}",
            format_size(self.disk_used),
            limit(self.disk_limit),
            self.entries_on_disk,
            self.disk_tier
        )?;
        writeln!(
            f,
            "spilled  {} values, {} in {:.2} s; {} left memory without a write",
            self.spills,
            format_size(self.bytes_written),
            self.spill_seconds,
            self.clean_evictions
        )?;
        writeln!(
            f,
            "restored {} values and parsed {} registered files, {} in {:.2} s",
            self.restores,
            self.file_reads,
            format_size(self.bytes_read),
            self.restore_seconds
        )?;
        write!(
            f,
            "gets     {} hits, {} misses; {} live values; put waited for room {} times",
            self.hits, self.misses, self.entries, self.backpressure_waits
        )
    }
}

/// The pool's running counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub spills: AtomicU64,
    pub restores: AtomicU64,
    pub file_reads: AtomicU64,
    pub bytes_written: AtomicU64,
    pub bytes_read: AtomicU64,
    pub spill_nanos: AtomicU64,
    pub restore_nanos: AtomicU64,
    /// Bumped by every `get` hit, on every thread: striped.
    pub hits: Striped,
    pub misses: AtomicU64,
    pub clean_evictions: AtomicU64,
    pub backpressure_waits: AtomicU64,
    pub entries: AtomicU64,
    pub entries_in_memory: AtomicU64,
    pub entries_on_disk: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// Holds `T` on its own cache line(s), so that threads writing neighbours
/// do not slow each other (128 bytes: adjacent-line prefetch pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

const STRIPES: usize = 8;

/// A counter bumped by many threads on a hot path: each thread adds to its
/// own stripe (one cache line each), readers sum the stripes.
#[derive(Debug, Default)]
pub(crate) struct Striped([Padded<AtomicU64>; STRIPES]);

impl Striped {
    pub fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

/// This thread's stripe, chosen round-robin the first time it asks.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}
