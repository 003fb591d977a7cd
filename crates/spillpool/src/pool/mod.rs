//! The pool: values in memory under a bound, the coldest spilled to a disk tier.
//!
//! [`Pool::put`] stores a value and returns a [`Ref`]; [`Pool::get`] returns
//! a [`Guard`] that shares the value (no copy) and pins it in memory while it
//! lives. When resident values exceed the high watermark a background thread
//! writes the coldest unpinned ones (by the [`EvictionPolicy`]) to the disk
//! tier until they are below the low watermark; at the hard bound `put`
//! evicts on its own thread (back-pressure) rather than exceed it. A value
//! larger than the bound goes straight to disk. A value read back from disk
//! is mapped, not copied, and keeps its disk copy, so evicting it again costs
//! no write.
//!
//! ```
//! use spillpool::pool::Pool;
//! use spillpool::Value;
//!
//! let pool = Pool::builder().memory_limit(8 << 20).build().unwrap();
//! let refs: Vec<_> = (0..16u8)
//!     .map(|i| pool.put(Value::from(vec![i; 1 << 20])).unwrap())
//!     .collect();
//! assert!(pool.stats().memory_used <= 8 << 20);       // the bound holds…
//! let v = pool.get(&refs[0]).unwrap();                  // …and everything is still there
//! assert_eq!(v.as_blob().unwrap()[0], 0);
//! ```

mod clock;
mod config;
mod disk;
mod policy;
mod stats;

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

pub use config::{DEFAULT_MEMORY_LIMIT, PoolBuilder};
pub use disk::{LOCK_FILE, RETAINED_MARKER};
pub use policy::{Candidate, EvictionPolicy, Lru, Mru, by_name as policy_by_name};
pub use stats::Stats;

use crate::error::{Error, Result};
use crate::formats::{Format, Selection};
use crate::frame;
use crate::value::{Table, Value};
use clock::Clock;
use disk::DiskTier;
use stats::Counters;

const SHARDS: usize = 64;

/// Ids are sequential integers that no one outside chooses: a multiplicative
/// hash spreads them well and costs a fraction of SipHash on the hot paths
/// (`get`, `put`, registering thousands of files).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap = HashMap<u64, Arc<Entry>, std::hash::BuildHasherDefault<IdHasher>>;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Which tiers hold a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Only in memory.
    Memory,
    /// Only on disk.
    Disk,
    /// In memory, with a clean copy on disk.
    Both,
}

/// A handle to a value in a [`Pool`]. Cheap to clone.
///
/// When the last clone is dropped the value is freed from memory and disk,
/// unless it was retained ([`Pool::retain`]). A `Ref` used with another pool
/// than its own, or after [`Pool::delete`], gives an error, never another value.
pub struct Ref(Arc<Entry>);

// One allocation per value: the handle is the entry, with its own count of
// `Ref` clones (guards and the pool's index hold the entry too).
impl Clone for Ref {
    fn clone(&self) -> Self {
        self.0.handles.fetch_add(1, Ordering::Relaxed);
        Ref(Arc::clone(&self.0))
    }
}

impl Drop for Ref {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(pool) = self.0.pool.upgrade()
        {
            pool.release(&self.0);
        }
    }
}

impl Ref {
    /// The value's id within its pool.
    pub fn id(&self) -> u64 {
        self.0.id
    }
    /// Bytes the value holds in memory (for a registered file: 0 until first read).
    pub fn size(&self) -> u64 {
        self.0.size()
    }
    /// Whether the value is a table (otherwise a blob).
    pub fn is_table(&self) -> bool {
        self.0.is_table
    }
}

impl fmt::Debug for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ref")
            .field("pool", &self.0.pool.as_ptr())
            .field("id", &self.0.id)
            .field("size", &self.0.size())
            .finish()
    }
}

/// A value returned by [`Pool::get`], pinned in memory while the guard lives.
///
/// Dereferences to [`Value`]; cloning the value out is cheap (buffers are shared).
pub struct Guard {
    value: Arc<Value>,
    entry: Option<Arc<Entry>>,
}

impl Deref for Guard {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(entry) = &self.entry {
            entry.pins.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("value", &self.value).finish()
    }
}

/// Where a retained value's disk copy lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    /// The disk tier's backend URI.
    pub backend: String,
    /// The key of the copy in that backend.
    pub key: crate::Key,
}

struct Entry {
    id: u64,
    /// The pool, for releasing the value when the last `Ref` drops.
    pool: Weak<Inner>,
    /// Live `Ref` clones.
    handles: AtomicUsize,
    is_table: bool,
    /// Bytes held in memory when resident (for a registered file: known once parsed).
    size: AtomicU64,
    /// A registered file the value is read from (never written, never deleted).
    source: Option<Source>,
    last_access: AtomicU64,
    /// Guards alive; incremented under `state`, decremented without it.
    pins: AtomicU32,
    state: Mutex<State>,
}

/// Where a registered file's value comes from.
struct Source {
    /// A boxed path (16 bytes, not a `PathBuf`'s 24): entries are made by the thousand.
    path: Box<std::path::Path>,
    format: Format,
}

impl Entry {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct State {
    /// A registered file's length and modification time when first read.
    /// Boxed: most entries are never registered files, and a registered
    /// file's entry is allocated by the thousand at registration.
    file_seen: Option<Box<(u64, Option<std::time::SystemTime>)>>,
    resident: Option<Arc<Value>>,
    /// Bytes of the disk copy, if there is one.
    on_disk: Option<u64>,
    retained: bool,
    released: bool,
}

struct Inner {
    id: u64,
    memory_limit: u64,
    high: u64,
    low: u64,
    shards: Vec<Mutex<IdMap>>,
    next_id: AtomicU64,
    /// Stamps accesses (see [`Clock`]).
    clock: Clock,
    memory_used: AtomicU64,
    disk: DiskTier,
    policy: Box<dyn EvictionPolicy>,
    counters: Counters,
    /// One evictor at a time; `put` at the hard bound queues here (back-pressure).
    evict_lock: Mutex<()>,
    spiller: Arc<Signal>,
}

#[derive(Default)]
struct Signal {
    wake: Mutex<bool>,
    cond: Condvar,
    shutdown: AtomicBool,
}

/// A memory-bounded object pool that spills to a disk tier. See the [module docs](self).
pub struct Pool {
    inner: Arc<Inner>,
    spiller: Option<JoinHandle<()>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("memory_limit", &self.inner.memory_limit)
            .field("disk", &self.inner.disk.uri())
            .field("policy", &self.inner.policy.name())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A builder with the defaults (1 GiB memory, unbounded disk, LRU, temporary spill directory).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool configured from the defaults and the `SPILLPOOL_*` environment
    /// variables (see [`PoolBuilder::from_env`]).
    pub fn from_env() -> Result<Pool> {
        PoolBuilder::default().from_env()?.build()
    }

    fn start(b: PoolBuilder) -> Result<Pool> {
        let disk = DiskTier::open(b.spill_dirs, b.disk_backend, b.disk_limit, b.filters)?;
        let limit = b.memory_limit;
        let inner = Arc::new(Inner {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            memory_limit: limit,
            high: (limit as f64 * b.high_watermark) as u64,
            low: (limit as f64 * b.low_watermark) as u64,
            shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            next_id: AtomicU64::new(1),
            clock: Clock::new(),
            memory_used: AtomicU64::new(0),
            disk,
            policy: b.policy,
            counters: Counters::default(),
            evict_lock: Mutex::new(()),
            spiller: Arc::default(),
        });
        let spiller = if b.background_spill {
            let weak = Arc::downgrade(&inner);
            let signal = Arc::clone(&inner.spiller);
            let handle = std::thread::Builder::new()
                .name("spillpool-spiller".into())
                .spawn(move || spill_loop(weak, signal))
                .map_err(|e| Error::io("start spiller thread", PathBuf::new(), e))?;
            Some(handle)
        } else {
            None
        };
        Ok(Pool { inner, spiller })
    }

    /// Stores `value` and returns its handle.
    ///
    /// The value is kept in memory if it fits under the bound (evicting colder
    /// values first if needed, on this thread); a value larger than the bound,
    /// or one that cannot fit because everything else is pinned, goes straight
    /// to disk. Returns [`Error::TierFull`] naming the disk tier and its bound
    /// when neither tier has room; every value stored before stays readable.
    pub fn put(&self, value: impl Into<Value>) -> Result<Ref> {
        let value: Value = value.into();
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let size = value.size() as u64;
        let is_table = value.as_table().is_some();
        let entry = Arc::new(Entry {
            id,
            pool: Arc::downgrade(inner),
            handles: AtomicUsize::new(1),
            is_table,
            size: AtomicU64::new(size),
            source: None,
            last_access: AtomicU64::new(inner.tick()),
            pins: AtomicU32::new(0),
            state: Mutex::new(State::default()),
        });
        {
            let mut st = entry.state.lock();
            if size <= inner.memory_limit && inner.reserve(size)? {
                st.resident = Some(Arc::new(value));
                Counters::add(&inner.counters.entries_in_memory, 1);
            } else {
                let len = inner.spill_write(id, &value)?;
                st.on_disk = Some(len);
            }
        }
        inner.shard(id).lock().insert(id, Arc::clone(&entry));
        Counters::add(&inner.counters.entries, 1);
        Ok(Ref(entry))
    }

    /// Returns the value, from memory or read back from disk (mapped, not copied).
    ///
    /// The value becomes the most recently used, and stays in memory at
    /// least as long as the returned [`Guard`]. A value read back keeps its
    /// disk copy. Returns [`Error::NotFound`] for a deleted value or a `Ref`
    /// of another pool, and [`Error::Corrupt`] if the disk copy is damaged.
    pub fn get(&self, r: &Ref) -> Result<Guard> {
        let inner = &self.inner;
        let entry = inner.entry(r)?;
        entry.last_access.store(inner.tick(), Ordering::Relaxed);
        let mut st = inner.lock_live(r, &entry)?;
        if let Some(value) = &st.resident {
            entry.pins.fetch_add(1, Ordering::AcqRel);
            inner.counters.hits.add(1);
            return Ok(Guard {
                value: Arc::clone(value),
                entry: Some(Arc::clone(&entry)),
            });
        }
        Counters::add(&inner.counters.misses, 1);
        // Read while holding this entry's lock: concurrent gets of one value
        // read it once. Evictors only try-lock entries, so no deadlock.
        let value = match (&entry.source, st.on_disk) {
            (Some(src), None) => Arc::new(inner.read_source(&entry, src, &mut st)?),
            _ => {
                let start = Instant::now();
                let frame = inner.disk.read(entry.id)?;
                let len = frame.len() as u64;
                let location = inner.disk.location(entry.id);
                let value = frame::decode(frame, &inner.disk.key(entry.id), &location)?;
                Counters::add(&inner.counters.restores, 1);
                Counters::add(&inner.counters.bytes_read, len);
                Counters::add(
                    &inner.counters.restore_nanos,
                    start.elapsed().as_nanos() as u64,
                );
                Arc::new(value)
            }
        };
        // No room (all pinned, or the disk tier is too full to spill others):
        // the caller still gets the value, mapped, just not cached.
        if entry.size() <= inner.memory_limit && inner.reserve(entry.size()).unwrap_or(false) {
            st.resident = Some(Arc::clone(&value));
            Counters::add(&inner.counters.entries_in_memory, 1);
            entry.pins.fetch_add(1, Ordering::AcqRel);
            Ok(Guard {
                value,
                entry: Some(Arc::clone(&entry)),
            })
        } else {
            Ok(Guard { value, entry: None })
        }
    }

    /// Frees the value now, from memory and disk (a retained disk copy is kept).
    /// Every clone of `r` then gets [`Error::NotFound`].
    pub fn delete(&self, r: &Ref) -> Result<()> {
        let entry = self.inner.entry(r)?;
        drop(self.inner.lock_live(r, &entry)?);
        self.inner.release(&r.0);
        Ok(())
    }

    /// Writes the value to disk (if it has no disk copy) and drops it from memory.
    pub fn move_to_disk(&self, r: &Ref) -> Result<()> {
        let inner = &self.inner;
        let entry = inner.entry(r)?;
        let mut st = inner.lock_live(r, &entry)?;
        inner.ensure_on_disk(&entry, &mut st)?;
        if st.resident.take().is_some() {
            inner.memory_used.fetch_sub(entry.size(), Ordering::AcqRel);
            Counters::sub(&inner.counters.entries_in_memory, 1);
        }
        Ok(())
    }

    /// Writes the value to disk (if it has no disk copy), keeping it in memory.
    pub fn copy_to_disk(&self, r: &Ref) -> Result<()> {
        let entry = self.inner.entry(r)?;
        let mut st = self.inner.lock_live(r, &entry)?;
        self.inner.ensure_on_disk(&entry, &mut st)
    }

    /// Keeps the value's disk copy (writing one if needed) after its last
    /// handle is dropped, and after the pool is dropped. Returns where it is.
    pub fn retain(&self, r: &Ref) -> Result<Retained> {
        let inner = &self.inner;
        let entry = inner.entry(r)?;
        if let Some(src) = &entry.source {
            return Err(Error::Unsupported {
                backend: format!("registered file {}", src.path.display()),
                op: "retain (the file already belongs to you and is never deleted)",
            });
        }
        let mut st = inner.lock_live(r, &entry)?;
        inner.ensure_on_disk(&entry, &mut st)?;
        inner.disk.mark_retained()?;
        st.retained = true;
        Ok(Retained {
            backend: inner.disk.uri(),
            key: inner.disk.key(entry.id),
        })
    }

    /// Saves the value to `path` in a format other tools read: a table as an
    /// Arrow IPC file (pyarrow: `pyarrow.ipc.open_file`), a blob as its bytes.
    /// The file is the caller's: the pool never modifies or deletes it.
    /// Written to a temporary name beside `path`, then renamed; mode 0600.
    pub fn save_to(&self, r: &Ref, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let guard = self.get(r)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = match &*guard {
            Value::Table(t) => crate::formats::write_ipc_file(t, &tmp),
            Value::Blob(b) => write_private(&tmp, b),
        }
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| Error::write_io("rename into place", path, e))
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Registers an existing table file as a value, without touching it: no
    /// open, no stat — the path and format are recorded and the file is
    /// parsed on the first [`Pool::get`]. `format`: given, or taken from the
    /// extension (`.parquet`, `.arrow`/`.ipc`/`.feather`, `.csv`).
    ///
    /// The value is *clean*: evicting it drops it from memory (no spill
    /// write) and a later `get` parses the file again. The file is the
    /// caller's: the pool never modifies or deletes it. Its size and
    /// modification time are recorded at the first read; if they differ when
    /// the file must be parsed again, `get` fails with [`Error::InputFile`]
    /// rather than return other data under the same handle. Arrow IPC files
    /// are mapped, not copied: do not truncate one while values read from
    /// it are alive. A missing or malformed file is an error at `get`,
    /// naming the path and format.
    ///
    /// Returns [`Error::InvalidConfig`] only when no format is given and the
    /// extension names none.
    pub fn register_file(&self, path: impl Into<PathBuf>, format: Option<Format>) -> Result<Ref> {
        let path = path.into();
        let format = resolve_format(&path, format)?;
        let mut refs = self.insert_sources(std::iter::once((path, format)));
        refs.pop().ok_or_else(|| Error::InvalidValue {
            reason: "registration produced no handle".into(),
        })
    }

    /// [`Pool::register_file`] for many paths at once (cheaper per file: one
    /// lock per shard for the whole batch).
    pub fn register_files<I, P>(&self, paths: I, format: Option<Format>) -> Result<Vec<Ref>>
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        let paths = paths.into_iter();
        let mut failure = None;
        // One pass, no intermediate list: on an unknown extension the refs
        // made so far are dropped (releasing them is free: nothing was read).
        let items = paths.map_while(|p| {
            let p = p.into();
            match resolve_format(&p, format) {
                Ok(f) => Some((p, f)),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        });
        let refs = self.insert_sources(items);
        match failure {
            Some(e) => Err(e),
            None => Ok(refs),
        }
    }

    /// Registers every table file of a directory (by extension, unless a
    /// format is given), or every path matching a glob (`data/*.csv`),
    /// sorted by path. Listing the directory is the only I/O.
    pub fn register_glob(&self, dir_or_glob: &str, format: Option<Format>) -> Result<Vec<Ref>> {
        let as_path = Path::new(dir_or_glob);
        let mut paths: Vec<PathBuf> = if as_path.is_dir() {
            std::fs::read_dir(as_path)
                .map_err(|e| Error::io("list directory", as_path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| format.is_some() || Format::from_extension(p).is_some())
                .collect()
        } else {
            glob::glob(dir_or_glob)
                .map_err(|e| Error::InvalidConfig {
                    what: format!("pattern {dir_or_glob:?}"),
                    reason: e.to_string(),
                })?
                .filter_map(std::result::Result::ok)
                .collect()
        };
        paths.sort();
        self.register_files(paths, format)
    }

    fn insert_sources(&self, items: impl Iterator<Item = (PathBuf, Format)>) -> Vec<Ref> {
        let inner = &self.inner;
        let tick = inner.tick();
        let pool = Arc::downgrade(inner);
        // Registered entries join the shard index only when first parsed:
        // the index exists to find resident values to evict, and an unread
        // file holds nothing. Registration is one allocation per file.
        let (low, high) = items.size_hint();
        let mut refs = Vec::with_capacity(high.unwrap_or(low));
        for (path, format) in items {
            refs.push(Ref(Arc::new(Entry {
                id: inner.next_id.fetch_add(1, Ordering::Relaxed),
                pool: Weak::clone(&pool),
                handles: AtomicUsize::new(1),
                is_table: true,
                size: AtomicU64::new(0),
                source: Some(Source {
                    path: path.into_boxed_path(),
                    format,
                }),
                last_access: AtomicU64::new(tick),
                pins: AtomicU32::new(0),
                state: Mutex::new(State::default()),
            })));
        }
        Counters::add(&inner.counters.entries, refs.len() as u64);
        refs
    }

    /// Reads part of a value: some columns and/or batches (for a registered
    /// Parquet or Arrow IPC file not in memory, only those are read from the
    /// file, and the result is not cached). A value in memory is selected there.
    pub fn read_selection(&self, r: &Ref, selection: &Selection) -> Result<Table> {
        let entry = self.inner.entry(r)?;
        if let Some(src) = &entry.source {
            let resident = self.inner.lock_live(r, &entry)?.resident.clone();
            return match resident {
                Some(v) => select(&v, selection),
                None => crate::formats::read_path(&src.path, src.format, selection),
            };
        }
        let guard = self.get(r)?;
        select(&guard, selection)
    }

    /// Which tiers hold the value now.
    pub fn tier(&self, r: &Ref) -> Result<Tier> {
        let entry = self.inner.entry(r)?;
        let st = self.inner.lock_live(r, &entry)?;
        Ok(match (st.resident.is_some(), st.on_disk.is_some()) {
            (true, false) => Tier::Memory,
            (true, true) => Tier::Both,
            _ => Tier::Disk,
        })
    }

    /// A snapshot of the pool's state and counters.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        let c = &i.counters;
        Stats {
            memory_used: i.memory_used.load(Ordering::Relaxed),
            memory_limit: i.memory_limit,
            disk_used: i.disk.used(),
            disk_limit: i.disk.limit(),
            disk_tier: i.disk.uri(),
            entries: Counters::get(&c.entries),
            entries_in_memory: Counters::get(&c.entries_in_memory),
            entries_on_disk: Counters::get(&c.entries_on_disk),
            spills: Counters::get(&c.spills),
            restores: Counters::get(&c.restores),
            file_reads: Counters::get(&c.file_reads),
            bytes_written: Counters::get(&c.bytes_written),
            bytes_read: Counters::get(&c.bytes_read),
            spill_seconds: Counters::get(&c.spill_nanos) as f64 / 1e9,
            restore_seconds: Counters::get(&c.restore_nanos) as f64 / 1e9,
            hits: c.hits.get(),
            misses: Counters::get(&c.misses),
            clean_evictions: Counters::get(&c.clean_evictions),
            backpressure_waits: Counters::get(&c.backpressure_waits),
            policy: i.policy.name().to_string(),
        }
    }

    /// The spill directories (empty when the disk tier is a custom backend).
    pub fn spill_dirs(&self) -> &[PathBuf] {
        self.inner.disk.dirs()
    }

    /// Evicts unpinned values until at most `target` bytes are resident, on
    /// this thread. Returns the bytes freed. Useful before a phase that needs memory.
    pub fn shrink_to(&self, target: u64) -> Result<u64> {
        self.inner.evict_until(target)
    }
}

fn resolve_format(path: &Path, format: Option<Format>) -> Result<Format> {
    format.or_else(|| Format::from_extension(path)).ok_or_else(|| Error::InvalidConfig {
        what: format!("file {}", path.display()),
        reason: "no format given and the extension names none (.parquet, .arrow, .ipc, .feather, .csv)".into(),
    })
}

fn select(value: &Value, selection: &Selection) -> Result<Table> {
    match value {
        Value::Table(t) => selection.apply(t),
        Value::Blob(_) => Err(Error::InvalidValue {
            reason: "a blob has no columns to select".into(),
        }),
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    crate::formats::create_private(path)?
        .write_all(data)
        .map_err(|e| Error::write_io("write", path, e))
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner.spiller.shutdown.store(true, Ordering::Release);
        {
            let mut wake = self.inner.spiller.wake.lock();
            *wake = true;
            self.inner.spiller.cond.notify_all();
        }
        if let Some(handle) = self.spiller.take() {
            let _ = handle.join();
        }
    }
}

impl Inner {
    fn tick(&self) -> u64 {
        self.clock.now()
    }

    fn shard(&self, id: u64) -> &Mutex<IdMap> {
        &self.shards[(id as usize) % SHARDS]
    }

    /// Locks a live entry's state; a value released meanwhile is [`Error::NotFound`].
    fn lock_live<'e>(
        &self,
        r: &Ref,
        entry: &'e Entry,
    ) -> Result<parking_lot::MutexGuard<'e, State>> {
        let st = entry.state.lock();
        if st.released {
            return Err(self.missing(r));
        }
        Ok(st)
    }

    fn missing(&self, r: &Ref) -> Error {
        Error::NotFound {
            key: format!("pool value {}", r.0.id),
            location: format!("pool {}", self.id),
        }
    }

    /// The entry of `r`, if `r` belongs to this pool. Whether it was
    /// released meanwhile is checked under its lock ([`Inner::lock_live`]).
    fn entry(&self, r: &Ref) -> Result<Arc<Entry>> {
        // The entry's pool is the pool itself: no id to store per entry.
        if !std::ptr::eq(r.0.pool.as_ptr(), self) {
            return Err(self.missing(r));
        }
        Ok(Arc::clone(&r.0))
    }

    /// Reserves `size` bytes of the memory bound, evicting on this thread at
    /// the hard bound. `Ok(false)`: no room even after evicting everything unpinned.
    fn reserve(&self, size: u64) -> Result<bool> {
        let mut waited = false;
        loop {
            let used = self.memory_used.load(Ordering::Acquire);
            if used + size <= self.memory_limit {
                if self
                    .memory_used
                    .compare_exchange(used, used + size, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    if used + size > self.high {
                        self.wake_spiller();
                    }
                    return Ok(true);
                }
                continue;
            }
            if !waited {
                Counters::add(&self.counters.backpressure_waits, 1);
                waited = true;
            }
            // Evict down to the low watermark, not just enough for this value,
            // so the next puts do not queue here too.
            let target = self.low.min(self.memory_limit - size);
            if self.evict_until(target)? == 0
                && self.memory_used.load(Ordering::Acquire) + size > self.memory_limit
            {
                return Ok(false);
            }
        }
    }

    fn wake_spiller(&self) {
        let mut wake = self.spiller.wake.lock();
        if !*wake {
            *wake = true;
            self.spiller.cond.notify_one();
        }
    }

    /// Parses a registered file (the caller holds the entry's lock).
    fn read_source(&self, entry: &Arc<Entry>, src: &Source, st: &mut State) -> Result<Value> {
        let bad = |reason: String| Error::InputFile {
            path: src.path.to_path_buf(),
            format: src.format.name(),
            reason,
        };
        let meta = std::fs::metadata(&src.path).map_err(|e| bad(e.to_string()))?;
        let seen = (meta.len(), meta.modified().ok());
        if let Some(first) = st.file_seen.as_deref()
            && *first != seen
        {
            return Err(bad(format!(
                "changed since it was first read ({} bytes then, {} now, or a new modification time); \
                 the pool does not return other data under the same handle: register it again",
                first.0, seen.0
            )));
        }
        let start = Instant::now();
        let table = crate::formats::read_path(&src.path, src.format, &Selection::all())?;
        if st.file_seen.is_none() {
            // First parse: from now on the value can be resident, so the
            // evictor must be able to find it.
            self.shard(entry.id)
                .lock()
                .insert(entry.id, Arc::clone(entry));
        }
        st.file_seen = Some(Box::new(seen));
        let value = Value::Table(table);
        entry.size.store(value.size() as u64, Ordering::Relaxed);
        Counters::add(&self.counters.file_reads, 1);
        Counters::add(&self.counters.bytes_read, meta.len());
        Counters::add(
            &self.counters.restore_nanos,
            start.elapsed().as_nanos() as u64,
        );
        Ok(value)
    }

    /// Writes a value to the disk tier, counting it.
    fn spill_write(&self, id: u64, value: &Value) -> Result<u64> {
        let start = Instant::now();
        let len = self.disk.write(id, value)?;
        Counters::add(&self.counters.spills, 1);
        Counters::add(&self.counters.bytes_written, len);
        Counters::add(
            &self.counters.spill_nanos,
            start.elapsed().as_nanos() as u64,
        );
        Counters::add(&self.counters.entries_on_disk, 1);
        Ok(len)
    }

    fn ensure_on_disk(&self, entry: &Entry, st: &mut State) -> Result<()> {
        // A registered file is its own disk copy.
        if st.on_disk.is_some() || entry.source.is_some() {
            return Ok(());
        }
        let value = st.resident.clone().ok_or_else(|| Error::Corrupt {
            key: format!("pool value {}", entry.id),
            location: self.disk.uri(),
            reason: "value is neither in memory nor on disk".into(),
        })?;
        st.on_disk = Some(self.spill_write(entry.id, &value)?);
        Ok(())
    }

    /// Evicts unpinned values, by policy order, until at most `target` bytes
    /// are resident. Returns the bytes freed; a disk error is returned only if
    /// the target could not be reached without the write that failed.
    fn evict_until(&self, target: u64) -> Result<u64> {
        let _one_at_a_time = self.evict_lock.lock();
        if self.memory_used.load(Ordering::Acquire) <= target {
            return Ok(0);
        }
        let mut candidates: Vec<(Candidate, Arc<Entry>)> = Vec::new();
        for shard in &self.shards {
            for entry in shard.lock().values() {
                if entry.pins.load(Ordering::Acquire) > 0 {
                    continue;
                }
                let Some(st) = entry.state.try_lock() else {
                    continue;
                };
                if st.resident.is_some() {
                    let c = Candidate {
                        id: entry.id,
                        last_access: entry.last_access.load(Ordering::Relaxed),
                        size: entry.size(),
                        on_disk: st.on_disk.is_some(),
                    };
                    candidates.push((c, Arc::clone(entry)));
                }
            }
        }
        let mut order: Vec<Candidate> = candidates.iter().map(|(c, _)| *c).collect();
        self.policy.order(&mut order);
        let by_id: HashMap<u64, Arc<Entry>> =
            candidates.into_iter().map(|(c, e)| (c.id, e)).collect();
        let mut freed = 0;
        let mut failure = None;
        for c in order {
            if self.memory_used.load(Ordering::Acquire) <= target {
                break;
            }
            let Some(entry) = by_id.get(&c.id) else {
                continue;
            };
            match self.evict(entry) {
                Ok(n) => freed += n,
                // Keep going: values with a disk copy leave memory without a write.
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) if self.memory_used.load(Ordering::Acquire) > target => Err(e),
            _ => Ok(freed),
        }
    }

    /// Moves one value out of memory, writing it first if it has no disk copy.
    fn evict(&self, entry: &Entry) -> Result<u64> {
        let Some(mut st) = entry.state.try_lock() else {
            return Ok(0);
        };
        if entry.pins.load(Ordering::Acquire) > 0 || st.resident.is_none() || st.released {
            return Ok(0);
        }
        if st.on_disk.is_none() && entry.source.is_none() {
            self.ensure_on_disk(entry, &mut st)?;
        } else {
            Counters::add(&self.counters.clean_evictions, 1);
        }
        st.resident = None;
        self.memory_used.fetch_sub(entry.size(), Ordering::AcqRel);
        Counters::sub(&self.counters.entries_in_memory, 1);
        Ok(entry.size())
    }

    /// Forgets a value: its last `Ref` was dropped, or it was deleted.
    ///
    /// Decided under the entry's lock, so a registered file being parsed
    /// for the first time (which indexes it under that lock) cannot slip
    /// back into the index after its release.
    fn release(&self, entry: &Entry) {
        let mut st = entry.state.lock();
        if st.released {
            return;
        }
        st.released = true;
        self.shard(entry.id).lock().remove(&entry.id);
        if st.resident.take().is_some() {
            self.memory_used.fetch_sub(entry.size(), Ordering::AcqRel);
            Counters::sub(&self.counters.entries_in_memory, 1);
        }
        if let Some(len) = st.on_disk.take() {
            Counters::sub(&self.counters.entries_on_disk, 1);
            if !st.retained {
                // Nothing can read the copy any more; a failed unlink only leaks scratch space.
                let _ = self.disk.delete(entry.id, len);
            }
        }
        Counters::sub(&self.counters.entries, 1);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let entries: Vec<Arc<Entry>> = self
            .shards
            .iter()
            .flat_map(|s| s.lock().values().cloned().collect::<Vec<_>>())
            .collect();
        for entry in entries {
            self.release(&entry);
        }
    }
}

/// The background spiller: sleeps until memory passes the high watermark,
/// then evicts down to the low one.
fn spill_loop(pool: Weak<Inner>, signal: Arc<Signal>) {
    loop {
        {
            let mut wake = signal.wake.lock();
            while !*wake && !signal.shutdown.load(Ordering::Acquire) {
                signal.cond.wait_for(&mut wake, Duration::from_millis(200));
                if let Some(p) = pool.upgrade()
                    && p.memory_used.load(Ordering::Acquire) > p.high
                {
                    break;
                }
            }
            *wake = false;
        }
        if signal.shutdown.load(Ordering::Acquire) {
            return;
        }
        let Some(p) = pool.upgrade() else { return };
        if p.memory_used.load(Ordering::Acquire) > p.high && p.evict_until(p.low).is_err() {
            // The disk tier is full: `put` reports it. Retry when woken again.
            drop(p);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
