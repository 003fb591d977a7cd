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
    pub(crate) retained_any: AtomicBool,
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
                    holder.trim()
                ),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
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
            let dir =
                std::env::temp_dir().join(format!("spillpool-{}-{nonce:x}", std::process::id()));
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
