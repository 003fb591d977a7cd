//! `lmdb://`: an LMDB environment (through heed), shared by many processes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use heed::types::{Bytes as RawBytes, DecodeIgnore};
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, MdbError, RoTxn, WithoutTls};
use parking_lot::{Mutex, RawRwLock, RwLock, lock_api::ArcRwLockReadGuard};
use xxhash_rust::xxh3::xxh3_128;

use super::dir::create_private_dir;
use super::{Backend, Claim, LAST_UNDER_STEPS, Last, Usage};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::key::Key;
use crate::uri::Uri;

/// Default map size: address space only (the file grows with its data), so
/// growth is rarely needed.
pub const DEFAULT_MAP_SIZE: u64 = 1 << 40;
/// How long growing the map waits for reads of this process to finish.
const GROW_WAIT: Duration = Duration::from_secs(3);

type Db = Database<'static, RawBytes, RawBytes>;

/// One environment per path per process: LMDB forbids opening it twice.
static ENVS: LazyLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = LazyLock::new(Default::default);

struct Shared {
    path: PathBuf,
    env: Env<WithoutTls>,
    frames: Db,
    /// Keys longer than LMDB's key limit: hashed key → full key.
    long_keys: Db,
    sync: bool,
    /// Held shared by every transaction and every frame still borrowed from
    /// the map; held exclusively to resize the map, which may move it.
    gate: Arc<RwLock<()>>,
}

/// LMDB: a B-tree in one memory-mapped file, written by many processes at once.
///
/// `lmdb:///DIR` opens (creating if needed) the environment in directory `DIR`.
/// Parameters: `sync=false` (commits are not fsynced: for scratch data),
/// `map_size=1TiB` (initial address space; the map doubles by itself when
/// full). One environment per path is opened per process and shared by every
/// handle; a second handle asking for another `sync` setting is an error.
///
/// Writers are serialised by LMDB (across processes too); readers never
/// block. `get` borrows the value from the map: the returned bytes keep a read
/// transaction open until they are dropped, so drop them when done (a long
/// read keeps old pages from being reused, and delays growing the map). The
/// reads of one thread share that transaction while values borrowed from it
/// are alive and nothing was committed since, so holding thousands of values
/// takes one reader slot, not thousands.
/// Values are stored with a small prefix that puts the frame's payload on a
/// 64-byte boundary in the map, so tables decode without a copy.
///
/// ```
/// use spillpool::{Backend, LmdbBackend, BackendExt, Key, Value};
/// let dir = tempfile::tempdir().unwrap();
/// let db = LmdbBackend::open(dir.path(), true, 1 << 30).unwrap();
/// db.put_value(&Key::new("k").unwrap(), &Value::from(vec![1u8; 100])).unwrap();
/// assert_eq!(db.usage().unwrap().keys, 1);
/// ```
pub struct LmdbBackend {
    uri: String,
    shared: Arc<Shared>,
}

fn lmdb_err<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(heed::Error) -> Error + 'p {
    move |source| match source {
        heed::Error::Mdb(MdbError::MapFull) => Error::TierFull {
            tier: format!("lmdb://{}", path.display()),
            reason: format!("{op}: the LMDB map is full"),
        },
        heed::Error::Io(e) => Error::write_io(op, path.join("data.mdb"), e),
        source => Error::Lmdb {
            path: path.to_path_buf(),
            op,
            source,
        },
    }
}

/// Allocates the blocks of LMDB's lock file, which it creates sparse and
/// maps: a reader slot first touched when the file system is full would
/// otherwise have no block behind it, and the process would die of SIGBUS
/// (seen on a full tmpfs). Allocated now, a full disk is an error at open.
///
/// The allocation goes through LMDB's own descriptor, found in
/// `/proc/self/fd`: opening and closing the file ourselves would drop the
/// POSIX record lock LMDB holds on it (closing *any* descriptor of a file
/// releases all of a process's record locks on it), and another process
/// would then take itself for the only user and reset the reader table —
/// which the 50-writer test caught as an LMDB assertion failure.
fn reserve_lock_file(dir: &Path) -> Result<()> {
    let path = dir.join("lock.mdb");
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Ok(()); // no procfs: nothing to protect with
    };
    for fd in fds.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() != Some(path.as_path()) {
            continue;
        }
        let Ok(raw) = fd.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: `raw` is LMDB's descriptor of its lock file, open for as
        // long as the environment, which outlives this call; we only
        // borrow it and never close it.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        let len = rustix::fs::fstat(fd)
            .map_err(|e| Error::io("stat", &path, std::io::Error::from(e)))?
            .st_size;
        return match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
            // Some file systems cannot preallocate: nothing to protect against there.
            Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(Error::write_io("allocate", &path, std::io::Error::from(e))),
        };
    }
    Ok(())
}

const fn libc_eio() -> i32 {
    5 // EIO on Linux
}

/// LMDB reports a short write (what a full file system causes) as EIO
/// (`mdb_page_flush`: "short write, filesystem full?"). When the file system
/// is indeed (nearly) full, say so: it is a full tier, not a broken disk.
fn short_write(path: &Path, op: &'static str, e: std::io::Error) -> Error {
    let free = rustix::fs::statvfs(path)
        .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
        .ok();
    match free {
        Some(free) if free < 64 << 20 => Error::TierFull {
            tier: format!("lmdb://{}", path.display()),
            reason: format!(
                "{op}: LMDB's write was cut short and the file system has {free} bytes free (disk full)"
            ),
        },
        _ => Error::write_io(op, path.join("data.mdb"), e),
    }
}

impl LmdbBackend {
    /// Opens the environment in `dir`. `sync`: fsync every commit. `map_size`: initial map size.
    pub fn open(dir: &Path, sync: bool, map_size: u64) -> Result<Self> {
        create_private_dir(dir)?;
        let path = dir
            .canonicalize()
            .map_err(|e| Error::io("resolve", dir, e))?;
        let mut envs = ENVS.lock();
        if let Some(shared) = envs.get(&path).and_then(Weak::upgrade) {
            if shared.sync != sync {
                return Err(Error::InvalidConfig {
                    what: format!("lmdb://{}", path.display()),
                    reason: format!(
                        "already open in this process with sync={}; one environment per path is shared",
                        shared.sync
                    ),
                });
            }
            return Ok(Self::with_shared(shared));
        }
        let page = page_size();
        let map_size =
            usize::try_from(map_size.max(page as u64).div_ceil(page as u64) * page as u64)
                .map_err(|_| Error::InvalidConfig {
                    what: "map_size".into(),
                    reason: "too large for this platform".into(),
                })?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_size).max_readers(1024).max_dbs(4);
        if !sync {
            // SAFETY: NO_SYNC only weakens durability, which `sync=false` asks for.
            unsafe { options.flags(EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC) };
        }
        // SAFETY: the registry above guarantees one open per path in this process,
        // and mapped pages are only read through transactions we keep alive.
        let env = unsafe { options.open(&path) }.map_err(lmdb_err(&path, "open"))?;
        reserve_lock_file(&path)?;
        let wtxn = env.write_txn().map_err(lmdb_err(&path, "begin"))?;
        let created: heed::Result<_> = env.create_databases_and_commit(wtxn, |opener, wtxn| {
            let frames: Database<RawBytes, RawBytes> =
                opener.create_database(wtxn, Some("frames"))?;
            let long_keys: Database<RawBytes, RawBytes> =
                opener.create_database(wtxn, Some("long_keys"))?;
            Ok(CommitOrAbort::<_, ()>::Commit((frames, long_keys)))
        });
        let (frames, long_keys) = match created.map_err(lmdb_err(&path, "create databases"))? {
            CommitOrAbort::Commit(dbs) => dbs,
            CommitOrAbort::Abort(()) => {
                return Err(Error::InvalidConfig {
                    what: format!("lmdb://{}", path.display()),
                    reason: "creating the databases was aborted".into(),
                });
            }
        };
        let shared = Arc::new(Shared {
            path: path.clone(),
            env,
            frames,
            long_keys,
            sync,
            gate: Arc::default(),
        });
        envs.retain(|_, w| w.strong_count() > 0);
        envs.insert(path, Arc::downgrade(&shared));
        Ok(Self::with_shared(shared))
    }

    fn with_shared(shared: Arc<Shared>) -> Self {
        let mut uri = format!("lmdb://{}", shared.path.display());
        if !shared.sync {
            uri.push_str("?sync=false");
        }
        LmdbBackend { uri, shared }
    }

    pub(crate) fn from_uri(uri: &Uri) -> Result<Self> {
        uri.check_params(&["sync", "map_size", "compression", "encryption"])?;
        if uri.path().is_empty() {
            return Err(uri.invalid("lmdb:// needs a directory, e.g. lmdb:///var/lib/spillpool"));
        }
        let sync = uri.bool_param("sync", true)?;
        let map_size = uri.size_param("map_size", DEFAULT_MAP_SIZE)?;
        let mut backend = LmdbBackend::open(Path::new(uri.path()), sync, map_size)?;
        backend.uri = uri.as_str().to_string();
        Ok(backend)
    }

    /// The environment's directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The current map size in bytes.
    pub fn map_size(&self) -> usize {
        self.shared.env.info().map_size
    }

    /// A key as stored (unhashed), checked: the file may have been damaged.
    fn stored_key(&self, raw: &[u8]) -> Result<Key> {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|k| Key::new(k).ok())
            .ok_or_else(|| Error::Corrupt {
                key: String::from_utf8_lossy(raw).chars().take(200).collect(),
                location: self.uri.clone(),
                reason: "stored key is not a valid key".into(),
            })
    }

    /// The LMDB key for `key`: itself, or `\0` + a 128-bit hash when too long
    /// for LMDB (a valid key never holds NUL, so the two cannot collide).
    fn lmdb_key<'k>(&self, key: &'k Key) -> (Cow<'k, [u8]>, bool) {
        let raw = key.as_str().as_bytes();
        if raw.len() <= self.shared.env.max_key_size() {
            (Cow::Borrowed(raw), false)
        } else {
            let mut k = vec![0u8];
            k.extend_from_slice(&xxh3_128(raw).to_le_bytes());
            (Cow::Owned(k), true)
        }
    }

    /// Runs a write transaction, growing the map (or adopting another
    /// process's growth) and retrying when LMDB asks for it.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl Fn(&mut heed::RwTxn) -> heed::Result<T>,
    ) -> Result<T> {
        let s = &self.shared;
        loop {
            let attempt = {
                let _gate = s.gate.read();
                s.env.write_txn().and_then(|mut txn| {
                    let out = f(&mut txn)?;
                    txn.commit()?;
                    Ok(out)
                })
            };
            match attempt {
                Ok(out) => return Ok(out),
                Err(heed::Error::Mdb(MdbError::MapFull)) => self.resize(true, op)?,
                Err(heed::Error::Mdb(MdbError::MapResized)) => self.resize(false, op)?,
                Err(heed::Error::Io(e)) if e.raw_os_error() == Some(libc_eio()) => {
                    return Err(short_write(&s.path, op, e));
                }
                Err(e) => return Err(lmdb_err(&s.path, op)(e)),
            }
        }
    }

    /// Doubles the map (`grow`) or adopts the size another process set.
    fn resize(&self, grow: bool, op: &'static str) -> Result<()> {
        let s = &self.shared;
        let Some(_exclusive) = s.gate.try_write_for(GROW_WAIT) else {
            return Err(Error::TierFull {
                tier: self.uri.clone(),
                reason: format!(
                    "{op}: the LMDB map ({} bytes) must grow, but values read from it are still in use in this process",
                    self.map_size()
                ),
            });
        };
        let new_size = if grow {
            self.map_size().saturating_mul(2)
        } else {
            0
        };
        // SAFETY: the exclusive gate guarantees no transaction of this process
        // is open and no borrowed frame points into the map while it is remapped.
        unsafe { s.env.resize(new_size) }.map_err(lmdb_err(&s.path, "resize map"))
    }

    fn read_txn(
        &self,
    ) -> Result<(
        RoTxn<'static, WithoutTls>,
        ArcRwLockReadGuard<RawRwLock, ()>,
    )> {
        let s = &self.shared;
        loop {
            let gate = s.gate.read_arc();
            match s.env.clone().static_read_txn() {
                Ok(txn) => return Ok((txn, gate)),
                Err(heed::Error::Mdb(MdbError::MapResized)) => {
                    drop(gate);
                    self.resize(false, "read")?;
                }
                Err(e) => return Err(lmdb_err(&s.path, "begin read")(e)),
            }
        }
    }

    /// Every write of this backend, in one write transaction: `plain` frames
    /// stored, then each claim stored only if its key is free, with its hint.
    fn commit(
        &self,
        op: &'static str,
        plain: Vec<(Key, Frame)>,
        claims: Vec<Claim>,
    ) -> Result<Vec<bool>> {
        let s = &self.shared;
        let plain_keys: Vec<_> = plain.iter().map(|(k, _)| self.lmdb_key(k)).collect();
        let claim_keys: Vec<_> = claims
            .iter()
            .map(|c| {
                (
                    self.lmdb_key(&c.key),
                    c.hint.as_ref().map(|(k, _)| self.lmdb_key(k)),
                )
            })
            .collect();
        self.write(op, |txn| {
            for ((key, frame), (lkey, long)) in plain.iter().zip(&plain_keys) {
                put_padded(s, txn, lkey, long.then_some(key), frame)?;
            }
            let mut stored = Vec::with_capacity(claims.len());
            for (claim, ((lkey, long), hint_key)) in claims.iter().zip(&claim_keys) {
                let free = s
                    .frames
                    .remap_data_type::<DecodeIgnore>()
                    .get(txn, lkey)?
                    .is_none();
                if free {
                    put_padded(s, txn, lkey, long.then_some(&claim.key), &claim.frame)?;
                    if let (Some((key, frame)), Some((hkey, hlong))) = (&claim.hint, hint_key) {
                        put_padded(s, txn, hkey, hlong.then_some(key), frame)?;
                    }
                }
                stored.push(free);
            }
            Ok(stored)
        })
    }

    /// This thread's snapshot of the newest commit: the cached one when it
    /// is still alive and nothing was committed since (any process), else a
    /// new read transaction. A read that starts after a commit returned
    /// therefore sees it, as with a transaction per read.
    fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let s = &self.shared;
        let cached = SNAPSHOTS.with_borrow_mut(|cache| {
            cache.retain(|w| w.strong_count() > 0);
            cache
                .iter()
                .filter_map(Weak::upgrade)
                .find(|snap| Arc::ptr_eq(&snap.shared, s))
        });
        if let Some(snap) = cached
            && snap.txn.id() == s.env.info().last_txn_id
        {
            return Ok(snap);
        }
        let (txn, gate) = self.read_txn()?;
        let snap = Arc::new(Snapshot {
            txn,
            shared: Arc::clone(s),
            _gate: gate,
        });
        SNAPSHOTS.with_borrow_mut(|cache| {
            cache.retain(|w| w.upgrade().is_some_and(|old| !Arc::ptr_eq(&old.shared, s)));
            cache.push(Arc::downgrade(&snap));
        });
        Ok(snap)
    }
}

/// A read transaction shared by every frame borrowed through it.
///
/// Each thread reuses its newest snapshot while frames borrowed from it are
/// still alive and nothing was committed since (see [`LmdbBackend::snapshot`]).
/// Without sharing, a batch read of 1,000 symbols held 1,000 read
/// transactions open at once: every new one scanned LMDB's reader table for
/// a free slot under its mutex, so batched reads did not scale past one
/// core, and a batch of more than `max_readers` symbols would have failed.
struct Snapshot {
    txn: RoTxn<'static, WithoutTls>,
    /// The environment it belongs to (the per-thread cache's key). Held, so
    /// that no other environment can take its address while it lives.
    shared: Arc<Shared>,
    _gate: ArcRwLockReadGuard<RawRwLock, ()>,
}

// SAFETY: lookups through `txn` are made only on the thread whose cache holds
// the snapshot (`LmdbBackend::snapshot`); other threads only keep it alive
// for the pages they borrowed and may drop it, which `MDB_NOTLS` allows
// (`RoTxn<WithoutTls>` is `Send`). LMDB's MVCC keeps the pages immutable
// while the transaction is open.
unsafe impl Send for Snapshot {}
// SAFETY: see `Send`; shared references never reach `txn` off its thread.
unsafe impl Sync for Snapshot {}

thread_local! {
    /// This thread's newest snapshot per environment. Weak: a snapshot lives
    /// only as long as frames borrowed from it (or a lookup in progress), so
    /// the cache never pins old pages or delays growing the map by itself.
    static SNAPSHOTS: std::cell::RefCell<Vec<Weak<Snapshot>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A frame borrowed from the LMDB map, kept valid by its snapshot.
struct Borrowed {
    ptr: *const u8,
    len: usize,
    _snapshot: Arc<Snapshot>,
}

impl Borrowed {
    /// The frame in `value`, a value read through `snapshot`'s transaction.
    fn frame(snapshot: &Arc<Snapshot>, value: &[u8]) -> Bytes {
        let frame = unpad(value);
        Bytes::from_owner(Borrowed {
            ptr: frame.as_ptr(),
            len: frame.len(),
            _snapshot: Arc::clone(snapshot),
        })
    }
}

// SAFETY: the pointed-to bytes are immutable while the snapshot lives, and
// the snapshot may move between threads (see `Snapshot`).
unsafe impl Send for Borrowed {}

impl AsRef<[u8]> for Borrowed {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: ptr/len came from a value of the snapshot, which is still open.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// LMDB keeps a large value in overflow pages, starting right after the
/// 16-byte page header (`PAGEHDRSZ` in mdb.c); 48 more bytes put the frame on
/// a 64-byte boundary in the map. The address `MDB_RESERVE` hands out cannot
/// tell: it points into a heap copy of the page that is written out at commit.
/// Small values live inside leaf pages and move as the page changes; arrow
/// realigns (copies) their few bytes when it decodes them.
const OVERFLOW_PAD: usize = 64 - 16;

/// Stored value = `[pad: u8][pad-1 zero bytes][frame][64-pad zero bytes]`.
/// The reader takes the pad from the first byte, so the layout can change
/// without breaking stored data.
fn unpad(value: &[u8]) -> &[u8] {
    let pad = value.first().copied().unwrap_or(0) as usize;
    if pad == 0 || pad > 64 || value.len() < 64 {
        return value; // not ours: the frame check will call it corrupt
    }
    &value[pad..value.len() - 64 + pad]
}

impl fmt::Display for LmdbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for LmdbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmdbBackend")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Writes `frame` under `lkey` inside `txn`, padded so its payload is
/// 64-byte aligned in the map (see [`OVERFLOW_PAD`]).
fn put_padded(
    s: &Shared,
    txn: &mut heed::RwTxn,
    lkey: &[u8],
    long: Option<&Key>,
    frame: &Frame,
) -> heed::Result<()> {
    s.frames
        .put_reserved(txn, lkey, frame.len() + 64, |space| {
            let pad = OVERFLOW_PAD;
            space.write_all(&[pad as u8])?;
            space.write_all(&[0u8; 64][..pad - 1])?;
            for part in frame.parts() {
                space.write_all(part)?;
            }
            space.write_all(&[0u8; 64][..64 - pad])
        })?;
    if let Some(key) = long {
        s.long_keys.put(txn, lkey, key.as_str().as_bytes())?;
    }
    Ok(())
}

impl Backend for LmdbBackend {
    fn put(&self, key: &Key, frame: Frame) -> Result<()> {
        let (lkey, long) = self.lmdb_key(key);
        let long = long.then_some(key);
        self.write("put", |txn| {
            put_padded(&self.shared, txn, &lkey, long, &frame)
        })
    }

    /// Check and put in one write transaction: LMDB serialises writers
    /// across processes, so nobody can store the key in between.
    fn put_new(&self, key: &Key, frame: Frame) -> Result<bool> {
        let claim = Claim {
            key: key.clone(),
            frame,
            hint: None,
        };
        Ok(self.commit("put", Vec::new(), vec![claim])?.first() == Some(&true))
    }

    /// One transaction for the batch: claims without hints.
    fn put_new_batch(&self, items: Vec<(Key, Frame)>) -> Result<Vec<bool>> {
        let claims = items
            .into_iter()
            .map(|(key, frame)| Claim {
                key,
                frame,
                hint: None,
            })
            .collect();
        self.commit("put", Vec::new(), claims)
    }

    /// One transaction: one sync for tiles, manifests and heads, and none of
    /// them visible unless all are (a batch of small symbols was three
    /// durable commits).
    fn publish_batch(&self, plain: Vec<(Key, Frame)>, claims: Vec<Claim>) -> Result<Vec<bool>> {
        self.commit("publish", plain, claims)
    }

    /// One transaction (and one sync) for the whole batch.
    fn put_batch(&self, items: Vec<(Key, Frame)>) -> Result<()> {
        self.commit("put", items, Vec::new()).map(drop)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let (lkey, _) = self.lmdb_key(key);
        let snapshot = self.snapshot()?;
        let found = self
            .shared
            .frames
            .get(&snapshot.txn, &lkey)
            .map_err(lmdb_err(&self.shared.path, "get"))?;
        Ok(found.map(|v| Borrowed::frame(&snapshot, v)))
    }

    fn last_under(&self, prefix: &str, len: usize) -> Result<Last> {
        // Longer keys are stored hashed, out of order; an empty prefix
        // would take in the hashed keys too.
        if len > self.shared.env.max_key_size() || prefix.is_empty() {
            return Ok(Last::Unknown);
        }
        let snapshot = self.snapshot()?;
        let s = &self.shared;
        let err = || lmdb_err(&s.path, "last_under");
        let under = s
            .frames
            .rev_prefix_iter(&snapshot.txn, prefix.as_bytes())
            .map_err(err())?;
        for (step, entry) in under.enumerate() {
            let (k, v) = entry.map_err(err())?;
            if k.len() == len {
                return Ok(Last::Found(
                    self.stored_key(k)?,
                    Borrowed::frame(&snapshot, v),
                ));
            }
            if step >= LAST_UNDER_STEPS {
                return Ok(Last::Unknown);
            }
        }
        Ok(Last::Nothing)
    }

    fn delete(&self, key: &Key) -> Result<bool> {
        let (lkey, long) = self.lmdb_key(key);
        let s = &self.shared;
        self.write("delete", |txn| {
            if long {
                s.long_keys.delete(txn, &lkey)?;
            }
            s.frames.delete(txn, &lkey)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        let s = &self.shared;
        let err = |op| lmdb_err(&s.path, op);
        let (txn, _gate) = self.read_txn()?;
        let mut keys = Vec::new();
        // LMDB cannot position a cursor on an empty key: no prefix means every key.
        let entries: Box<dyn Iterator<Item = heed::Result<(&[u8], ())>>> = if prefix.is_empty() {
            Box::new(
                s.frames
                    .remap_data_type::<DecodeIgnore>()
                    .iter(&txn)
                    .map_err(err("list"))?,
            )
        } else {
            Box::new(
                s.frames
                    .remap_data_type::<DecodeIgnore>()
                    .prefix_iter(&txn, prefix.as_bytes())
                    .map_err(err("list"))?,
            )
        };
        for entry in entries {
            let (raw, ()) = entry.map_err(err("list"))?;
            if raw.first() != Some(&0) {
                keys.push(self.stored_key(raw)?);
            }
        }
        for entry in s.long_keys.iter(&txn).map_err(err("list"))? {
            let (_, full) = entry.map_err(err("list"))?;
            let key = self.stored_key(full)?;
            if key.as_str().starts_with(prefix) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn usage(&self) -> Result<Usage> {
        let s = &self.shared;
        let (txn, _gate) = self.read_txn()?;
        let mut usage = Usage::default();
        for entry in s.frames.iter(&txn).map_err(lmdb_err(&s.path, "usage"))? {
            let (_, value) = entry.map_err(lmdb_err(&s.path, "usage"))?;
            usage.keys += 1;
            usage.bytes += unpad(value).len() as u64;
        }
        Ok(usage)
    }

    fn location(&self, key: &Key) -> String {
        format!(
            "{} (key {:?})",
            self.uri,
            crate::error::printable(key.as_str())
        )
    }
}

fn page_size() -> usize {
    rustix::param::page_size()
}
