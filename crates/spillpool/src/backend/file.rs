//! `file://`: one file per key, read through mmap.

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;

use super::dir::DirStore;
use super::{Backend, Usage};
use crate::error::Result;
use crate::frame::Frame;
use crate::key::Key;
use crate::uri::Uri;

/// Files on a local file system.
///
/// `file:///DIR` stores each key in its own file under `DIR`. Extra roots
/// (`?root=/DIR2&root=/DIR3`) spread keys by hash; the list and order of
/// roots is part of the store's identity, so reopen with the same list.
/// A value is written to a temporary file and renamed into place (readers see
/// the old or the new file, never half of one), created with mode 0600 and,
/// unless `?sync=false`, fsynced with its directory before `put` returns.
/// `get` maps the file: nothing is copied.
///
/// ```
/// use spillpool::{Backend, FileBackend, Key, Value};
/// let dir = tempfile::tempdir().unwrap();
/// let files = FileBackend::open(vec![dir.path().to_path_buf()], true).unwrap();
/// let key = Key::new("a/b").unwrap();
/// files.put_value(&key, &Value::from(vec![1u8, 2, 3])).unwrap();
/// assert!(files.path_of(&key).starts_with(dir.path()));
/// ```
#[derive(Debug)]
pub struct FileBackend {
    uri: String,
    store: DirStore,
}

impl FileBackend {
    /// Opens (creating if needed) a store over `roots`; `sync` makes every `put` durable.
    pub fn open(roots: Vec<PathBuf>, sync: bool) -> Result<Self> {
        let uri = match roots.split_first() {
            Some((first, rest)) => {
                let mut uri = format!("file://{}", first.display());
                let extra: Vec<String> = rest
                    .iter()
                    .map(|r| format!("root={}", r.display()))
                    .collect();
                if !extra.is_empty() {
                    uri = format!("{uri}?{}", extra.join("&"));
                }
                uri
            }
            None => {
                return Err(crate::Error::InvalidConfig {
                    what: "file backend roots".into(),
                    reason: "at least one root directory is needed".into(),
                });
            }
        };
        Ok(FileBackend {
            uri,
            store: DirStore::open(roots, sync)?,
        })
    }

    pub(crate) fn from_uri(uri: &Uri) -> Result<Self> {
        uri.check_params(&["sync", "root", "compression", "encryption"])?;
        if uri.path().is_empty() {
            return Err(uri.invalid("file:// needs a directory, e.g. file:///var/tmp/spill"));
        }
        let mut roots = vec![PathBuf::from(uri.path())];
        roots.extend(uri.params("root").into_iter().map(PathBuf::from));
        let mut backend = FileBackend::open(roots, uri.bool_param("sync", true)?)?;
        backend.uri = uri.as_str().to_string();
        Ok(backend)
    }

    /// Injects the failures and delays `plan` describes into this backend's
    /// own file operations: writes, fsyncs (which poison it: see
    /// [`crate::Error::Poisoned`]), renames, reads and deletes. For tests.
    pub fn with_faults(mut self, plan: std::sync::Arc<super::FaultPlan>) -> Self {
        self.store.set_faults(plan);
        self
    }

    /// The file that holds (or would hold) `key`.
    pub fn path_of(&self, key: &Key) -> PathBuf {
        self.store.path_of(key)
    }

    /// The root directories.
    pub fn roots(&self) -> &[PathBuf] {
        self.store.roots()
    }
}

impl fmt::Display for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl Backend for FileBackend {
    fn put(&self, key: &Key, frame: Frame) -> Result<()> {
        self.store.put(key, &frame)
    }
    fn put_new(&self, key: &Key, frame: Frame) -> Result<bool> {
        self.store.put_new(key, &frame)
    }
    fn put_new_batch(&self, items: Vec<(Key, Frame)>) -> Result<Vec<bool>> {
        self.store.put_new_batch(&items)
    }
    fn put_batch(&self, items: Vec<(Key, Frame)>) -> Result<()> {
        self.store.put_batch(&items)
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
