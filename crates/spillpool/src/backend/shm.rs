//! `shm://NAME`: POSIX shared memory, shared between the processes of one machine.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::dir::DirStore;
use super::{Backend, Usage};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::key::Key;
use crate::uri::Uri;

/// Where POSIX shared-memory objects live on Linux (what `shm_open` opens).
const SHM_ROOT: &str = "/dev/shm";

/// Shared memory: each value is a POSIX shared-memory object under
/// `/dev/shm/spillpool-NAME/`.
///
/// On Linux `shm_open(name)` is `open("/dev/shm/name")` on a tmpfs; keeping a
/// namespace in a directory there gives atomic publication by rename and
/// nested keys, which flat `shm_open` names lack. Values live in RAM (the
/// page cache of the tmpfs), so a reader in another process maps the very
/// pages the writer filled: no copy, no disk. Nothing is fsynced (there is
/// no disk); values survive the processes but not a reboot, and use memory
/// until deleted or until [`ShmBackend::destroy`].
///
/// ```
/// use spillpool::{Backend, ShmBackend, BackendExt, Key, Value};
/// let ns = format!("doc-{}", std::process::id());
/// let shm = ShmBackend::open(&ns).unwrap();
/// shm.put_value(&Key::new("k").unwrap(), &Value::from(vec![9u8; 10])).unwrap();
/// assert_eq!(ShmBackend::open(&ns).unwrap().usage().unwrap().keys, 1);
/// shm.destroy().unwrap();
/// ```
#[derive(Debug)]
pub struct ShmBackend {
    name: String,
    store: DirStore,
}

impl ShmBackend {
    /// Opens namespace `name` (`[A-Za-z0-9_.-]`, not starting with `.`), creating it if needed.
    pub fn open(name: &str) -> Result<Self> {
        let dir = Self::dir_of(name)?;
        Ok(ShmBackend {
            name: name.to_string(),
            store: DirStore::open(vec![dir], false)?,
        })
    }

    pub(crate) fn from_uri(uri: &Uri) -> Result<Self> {
        uri.check_params(&["compression", "encryption"])?;
        Self::open(uri.path()).map_err(|e| uri.invalid(e.to_string()))
    }

    fn dir_of(name: &str) -> Result<PathBuf> {
        let valid = !name.is_empty()
            && name.len() <= 200
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(Error::InvalidConfig {
                what: format!("shm namespace {:?}", crate::error::printable(name)),
                reason: "use 1-200 characters of A-Z a-z 0-9 _ - . not starting with '.'".into(),
            });
        }
        Ok(Path::new(SHM_ROOT).join(format!("spillpool-{name}")))
    }

    /// Removes every value of this namespace and frees its memory.
    ///
    /// Processes that still map a value keep it until they drop it.
    pub fn destroy(&self) -> Result<()> {
        Self::destroy_namespace(&self.name).map(|_| ())
    }

    /// Removes namespace `name` without opening it. Returns whether it existed.
    pub fn destroy_namespace(name: &str) -> Result<bool> {
        let dir = Self::dir_of(name)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove shared-memory namespace", dir, e)),
        }
    }

    /// The shared-memory object that holds (or would hold) `key`.
    pub fn path_of(&self, key: &Key) -> PathBuf {
        self.store.path_of(key)
    }
}

impl fmt::Display for ShmBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shm://{}", self.name)
    }
}

impl ShmBackend {
    /// Says where a full tier's limit comes from.
    fn full(&self, e: Error) -> Error {
        match e {
            Error::TierFull { reason, .. } => Error::TierFull {
                tier: self.to_string(),
                reason: format!("{reason} (shared memory is limited by the size of {SHM_ROOT})"),
            },
            other => other,
        }
    }
}

impl Backend for ShmBackend {
    fn put(&self, key: &Key, frame: Frame) -> Result<()> {
        self.store.put(key, &frame).map_err(|e| self.full(e))
    }
    fn put_new(&self, key: &Key, frame: Frame) -> Result<bool> {
        self.store.put_new(key, &frame).map_err(|e| self.full(e))
    }
    fn put_new_batch(&self, items: Vec<(Key, Frame)>) -> Result<Vec<bool>> {
        self.store.put_new_batch(&items).map_err(|e| self.full(e))
    }
    fn put_batch(&self, items: Vec<(Key, Frame)>) -> Result<()> {
        self.store.put_batch(&items).map_err(|e| self.full(e))
    }
    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.store.get(key)
    }
    fn delete(&self, key: &Key) -> Result<bool> {
        self.store.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        self.store.list(prefix)
    }
    fn usage(&self) -> Result<Usage> {
        self.store.usage()
    }
    fn location(&self, key: &Key) -> String {
        self.path_of(key).display().to_string()
    }
}
