//! The disk tier: a backend with a byte bound, owning its spill directories.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use crate::backend::dir::create_private_dir;
use crate::backend::{Backend, FileBackend, FilteredBackend};
use crate::error::{Error, Result};
use crate::filter::Filters;
use crate::frame;
use crate::key::Key;
use crate::size::format_size;
use crate::value::Value;

/// Name of the lock file that keeps two pools out of one spill directory.
pub const LOCK_FILE: &str = ".spillpool.lock";

/// Written into a pool's own temporary directory before it retains a value:
/// no later pool's sweep removes a directory holding it.
pub const RETAINED_MARKER: &str = ".spillpool.retained";

/// The lock file's second line in directories made by builds that write
/// [`RETAINED_MARKER`]: only those are swept (an older build's directory may
/// hold retained values without the marker).
const SWEEPABLE: &str = "sweepable";

/// How long an abandoned temporary directory stays before a sweep takes it:
/// a pool creates its directory just before it locks it.
const SWEEP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Where pools without configured spill directories put theirs.
const TEMP_DIR_PREFIX: &str = "spillpool-";

/// Removes, from `tmp`, the temporary spill directories of pools that died
/// without cleaning up after themselves: named as pools name them, their
/// lock file left behind (a pool that exits removes it) and free (the
/// process holding it is gone), written by a build that marks retained
/// values, holding no retained value, and untouched for [`SWEEP_AGE`].
/// Best effort; returns how many were removed.
pub(crate) fn sweep_temp_dirs(tmp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_DIR_PREFIX))
            .is_some_and(|rest| {
                rest.split_once('-').is_some_and(|(pid, nonce)| {
                    !pid.is_empty()
                        && pid.bytes().all(|b| b.is_ascii_digit())
                        && !nonce.is_empty()
                        && nonce.bytes().all(|b| b.is_ascii_hexdigit())
                })
            });
        // A symlink is never followed: only real directories are ours.
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let dir = entry.path();
            if let Some(_lock) = abandoned(&dir)
                && std::fs::remove_dir_all(&dir).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// The lock of `dir`, held, if the directory may be swept (see
/// [`sweep_temp_dirs`]); holding it keeps a concurrent sweep away.
fn abandoned(dir: &Path) -> Option<File> {
    if dir.join(RETAINED_MARKER).exists() {
        return None;
    }
    let age = std::fs::symlink_metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())?;
    if age < SWEEP_AGE {
        return None;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .ok()?;
    let mut content = String::new();
    std::io::Read::read_to_string(&mut file, &mut content).ok()?;
    if !content.lines().any(|l| l == SWEEPABLE) {
        return None;
    }
    file.try_lock().ok()?;
    // Checked again under the lock: a pool that retained since looked is kept.
    if dir.join(RETAINED_MARKER).exists() {
        return None;
    }
    Some(file)
}

pub(crate) struct DiskTier {
    backend: Arc<dyn Backend>,
    limit: u64,
    used: AtomicU64,
    /// Keys of this pool start with it, so several pools can share one backend.
    prefix: String,
    /// A directory this pool created and removes when dropped.
    owned_dir: Option<PathBuf>,
    dirs: Vec<PathBuf>,
    /// Held for the pool's life: the OS releases the lock if the process dies.
    locks: Vec<(PathBuf, File)>,
    retained_any: AtomicBool,
    /// Applied when writing, so the bound is charged what is actually stored.
    filters: Filters,
}

fn lock_dir(dir: &Path) -> Result<(PathBuf, File)> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::write_io("create lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::InvalidConfig {
                what: format!("spill directory {}", dir.display()),
                reason: format!(
                    "in use by another pool (process {}); give each pool its own directory",
                    holder.lines().next().unwrap_or("unknown").trim()
                ),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}\n{SWEEPABLE}\n", std::process::id());
    Ok((path, file))
}

impl DiskTier {
    pub(crate) fn open(
        spill_dirs: Vec<PathBuf>,
        backend: Option<Arc<dyn Backend>>,
        limit: u64,
        filters: Filters,
    ) -> Result<Self> {
        let filtered = |b: Arc<dyn Backend>| -> Arc<dyn Backend> {
            if filters.is_empty() {
                b
            } else {
                Arc::new(FilteredBackend::new(b, filters.clone()))
            }
        };
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let prefix = format!("pool-{}-{nonce:x}/", std::process::id());
        if let Some(backend) = backend {
            return Ok(DiskTier {
                backend: filtered(backend),
                limit,
                used: AtomicU64::new(0),
                prefix,
                owned_dir: None,
                dirs: Vec::new(),
                locks: Vec::new(),
                retained_any: AtomicBool::new(false),
                filters,
            });
        }
        let (dirs, owned_dir) = if spill_dirs.is_empty() {
            let tmp = std::env::temp_dir();
            // Pools that were killed leave their directory behind: take
            // those no process holds and nobody retained anything in.
            sweep_temp_dirs(&tmp);
            let dir = tmp.join(format!("{TEMP_DIR_PREFIX}{}-{nonce:x}", std::process::id()));
            (vec![dir.clone()], Some(dir))
        } else {
            (spill_dirs, None)
        };
        let mut locks = Vec::new();
        for dir in &dirs {
            create_private_dir(dir)?;
            locks.push(lock_dir(dir)?);
        }
        // Scratch data: no fsync. A crash loses spilled values, as it loses memory.
        let backend = filtered(Arc::new(FileBackend::open(dirs.clone(), false)?));
        Ok(DiskTier {
            backend,
            limit,
            used: AtomicU64::new(0),
            prefix,
            owned_dir,
            dirs,
            locks,
            retained_any: AtomicBool::new(false),
            filters,
        })
    }

    pub(crate) fn key(&self, id: u64) -> Key {
        // The prefix holds only safe characters and the id is a number: always valid.
        Key::new(format!("{}{id}", self.prefix)).unwrap_or_else(|_| unreachable!())
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn uri(&self) -> String {
        self.backend.to_string()
    }

    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    pub(crate) fn location(&self, id: u64) -> String {
        self.backend.location(&self.key(id))
    }

    fn full(&self, need: u64) -> Error {
        Error::TierFull {
            tier: format!("disk tier {}", self.uri()),
            reason: format!(
                "its bound of {} is reached ({} used, {} more needed)",
                format_size(self.limit),
                format_size(self.used()),
                format_size(need)
            ),
        }
    }

    /// Writes `value` under `id`; returns the bytes stored.
    pub(crate) fn write(&self, id: u64, value: &Value) -> Result<u64> {
        let key = self.key(id);
        let frame = frame::encode_filtered(value, &self.filters, &key)?;
        let len = frame.len() as u64;
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(len).filter(|&n| n <= self.limit)
            });
        if reserved.is_err() {
            return Err(self.full(len));
        }
        match self.backend.put(&key, frame) {
            Ok(()) => Ok(len),
            Err(e) => {
                self.used.fetch_sub(len, Ordering::AcqRel);
                Err(match e {
                    Error::TierFull { reason, .. } => Error::TierFull {
                        tier: format!("disk tier {}", self.uri()),
                        reason: format!("the file system is full ({reason})"),
                    },
                    other => other,
                })
            }
        }
    }

    /// Reads the frame stored under `id` (mapped, not copied).
    pub(crate) fn read(&self, id: u64) -> Result<Bytes> {
        let key = self.key(id);
        self.backend.get(&key)?.ok_or_else(|| Error::Corrupt {
            key: key.to_string(),
            location: self.location(id),
            reason: "the spilled copy is missing from the disk tier".into(),
        })
    }

    /// Records that this pool retains a value: its own directory gets the
    /// marker that keeps sweeps away, before any value relies on it.
    pub(crate) fn mark_retained(&self) -> Result<()> {
        if self.retained_any.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(dir) = &self.owned_dir {
            let path = dir.join(RETAINED_MARKER);
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::write_io("mark retained values", &path, e))?;
        }
        self.retained_any.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes the copy of `id` (`len` bytes). Errors are reported, space is released.
    pub(crate) fn delete(&self, id: u64, len: u64) -> Result<()> {
        self.used.fetch_sub(len, Ordering::AcqRel);
        self.backend.delete(&self.key(id)).map(|_| ())
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        let retained = self.retained_any.load(Ordering::Relaxed);
        for (path, _) in self.locks.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = &self.owned_dir
            && !retained
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A directory as a pool of `pid` leaves it: a lock file, a spill file.
    fn left_behind(
        tmp: &Path,
        name: &str,
        lock: Option<&str>,
        retained: bool,
        age: Duration,
    ) -> PathBuf {
        let dir = tmp.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("pool-1-2-0"), b"spilled").unwrap_or_else(|e| panic!("{e}"));
        if let Some(content) = lock {
            std::fs::write(dir.join(LOCK_FILE), content).unwrap_or_else(|e| panic!("{e}"));
        }
        if retained {
            std::fs::write(dir.join(RETAINED_MARKER), b"").unwrap_or_else(|e| panic!("{e}"));
        }
        let when = SystemTime::now() - age;
        File::open(&dir)
            .and_then(|d| d.set_modified(when))
            .unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    #[test]
    fn sweeps_only_what_a_dead_pool_left_unretained() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let t = tmp.path();
        let old = Duration::from_secs(3600);
        let lock = Some("123\nsweepable\n");
        let dead = left_behind(t, "spillpool-123-1a", lock, false, old);
        let kept = [
            // Retained values.
            left_behind(t, "spillpool-124-1b", lock, true, old),
            // A clean exit removes the lock file: what stays is retained.
            left_behind(t, "spillpool-125-1c", None, false, old),
            // An older build: retained values carry no marker there.
            left_behind(t, "spillpool-126-1d", Some("126"), false, old),
            // Just made: its pool may not have locked it yet.
            left_behind(t, "spillpool-127-1e", lock, false, Duration::ZERO),
            // Not named as a pool names its directory.
            left_behind(t, "spillpool-data", lock, false, old),
            left_behind(t, "other-128-1f", lock, false, old),
        ];
        // A live pool's: its lock is held.
        let live = left_behind(t, "spillpool-129-2a", lock, false, old);
        let held = OpenOptions::new()
            .read(true)
            .write(true)
            .open(live.join(LOCK_FILE))
            .unwrap_or_else(|e| panic!("{e}"));
        held.try_lock().unwrap_or_else(|e| panic!("{e}"));
        // A symlink to a dead pool's directory is not followed.
        let target = left_behind(t, "elsewhere", lock, false, old);
        std::os::unix::fs::symlink(&target, t.join("spillpool-130-2b"))
            .unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(sweep_temp_dirs(t), 1);
        assert!(!dead.exists(), "the dead pool's directory stayed");
        for dir in kept.iter().chain([&live, &target]) {
            assert!(
                dir.join("pool-1-2-0").exists(),
                "{} was swept",
                dir.display()
            );
        }
        drop(held);
        assert_eq!(sweep_temp_dirs(t), 1, "once its process is gone, it goes");
        assert!(!live.exists());
        assert!(target.exists());
    }

    #[test]
    fn a_retaining_pool_marks_its_own_directory() {
        let tier = DiskTier::open(Vec::new(), None, 1 << 20, Filters::none())
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tier
            .owned_dir
            .clone()
            .unwrap_or_else(|| panic!("no own directory"));
        let lock = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap_or_default();
        assert_eq!(lock.lines().nth(1), Some(SWEEPABLE));
        assert!(!dir.join(RETAINED_MARKER).exists());
        tier.mark_retained().unwrap_or_else(|e| panic!("{e}"));
        assert!(dir.join(RETAINED_MARKER).exists());
        drop(tier);
        assert!(
            dir.exists(),
            "a directory holding retained values was removed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
