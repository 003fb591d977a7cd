//! Backends: key → frame storage behind one trait, opened by URI.
//!
//! | URI | backend | reads |
//! |---|---|---|
//! | `mem://` or `mem://NAME` | [`MemBackend`]: a map in this process (a NAME is shared within the process) | shared `Bytes`, no copy |
//! | `file:///DIR[?root=/DIR2&sync=false]` | [`FileBackend`]: one file per key | mmap, no copy |
//! | `lmdb:///DIR[?sync=false&map_size=1TiB]` | [`LmdbBackend`]: LMDB environment | borrowed from the map, no copy |
//! | `shm://NAME` | [`ShmBackend`]: POSIX shared memory under `/dev/shm` | mmap, no copy, across processes |
//!
//! Every URI also takes `compression=zstd:3|lz4|gzip` and
//! `encryption=aes-256-gcm` (key from `SPILLPOOL_ENCRYPTION_KEY` or
//! `SPILLPOOL_ENCRYPTION_KEY_FILE`), which wrap the backend in a [`FilteredBackend`].
//!
//! Backends store *frames* (see [`crate::frame`]) as opaque bytes; the
//! value-level methods ([`Backend::put_value`], [`Backend::get_value`])
//! encode and decode [`Value`]s on top; `mem://` keeps values as they are.

pub(crate) mod dir;
mod faulty;
mod file;
mod filtered;
mod lmdb;
mod mem;
mod shm;

use std::fmt::{Debug, Display};
use std::sync::Arc;

use bytes::Bytes;
use rayon::prelude::*;

/// Keys other than the wanted length that an ordered backend steps over
/// in [`Backend::last_under`] before it answers [`Last::Unknown`].
pub(crate) const LAST_UNDER_STEPS: usize = 8;

pub use faulty::{FaultOp, FaultPlan, FaultyBackend};
pub use file::FileBackend;
pub use filtered::FilteredBackend;
pub use lmdb::LmdbBackend;
pub use mem::MemBackend;
pub use shm::ShmBackend;

use crate::error::{Error, Result, printable};
use crate::filter::Filters;
use crate::frame::{self, Frame};
use crate::key::Key;
use crate::uri::Uri;
use crate::value::Value;

/// One claim of [`Backend::publish_batch`]: `frame` is stored under `key`
/// only if `key` holds nothing, and then `hint` is stored too.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The key that must hold nothing (a version's manifest, for the store).
    pub key: Key,
    /// What to store under it.
    pub frame: Frame,
    /// Stored (replacing) when the claim is: an advisory pointer to it.
    pub hint: Option<(Key, Frame)>,
}

/// What [`Backend::last_under`] found.
#[derive(Debug, Clone)]
pub enum Last {
    /// The backend cannot find it in one search (its keys are not kept in
    /// order, or not those): the caller finds the key another way.
    Unknown,
    /// No key of that length starts with the prefix.
    Nothing,
    /// The greatest such key, and its frame.
    Found(Key, Bytes),
}

/// How much a backend holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Number of keys stored.
    pub keys: u64,
    /// Bytes of frames stored (excluding the backend's own overhead).
    pub bytes: u64,
}

/// Key → frame storage.
///
/// Implementations are object-safe and shared between threads. Every method
/// names its guarantees; callers rely on nothing else.
pub trait Backend: Debug + Display + Send + Sync + 'static {
    /// Stores `frame` under `key`, replacing any previous value.
    ///
    /// Atomic: a concurrent or later `get` sees the old frame or the new one,
    /// never a mix. Durable on return when the backend is configured to sync
    /// (`file://` and `lmdb://` by default). A full tier is [`Error::TierFull`]
    /// and leaves every stored value intact.
    fn put(&self, key: &Key, frame: Frame) -> Result<()>;

    /// Stores `frame` under `key` only if `key` holds nothing; returns
    /// whether it stored it.
    ///
    /// Atomic across threads and processes: of many concurrent `put_new`s of
    /// one key exactly one returns `true`. Durable like [`Backend::put`]. This
    /// is what the named store publishes versions with.
    fn put_new(&self, key: &Key, frame: Frame) -> Result<bool>;

    /// Stores many frames, each as [`Backend::put`] would.
    ///
    /// Each item is atomic; the batch as a whole is not (LMDB commits it in
    /// one transaction, file backends sync once at the end). On error, items
    /// before the failing one may be stored. The default puts one by one.
    fn put_batch(&self, items: Vec<(Key, Frame)>) -> Result<()> {
        for (key, frame) in items {
            self.put(&key, frame)?;
        }
        Ok(())
    }

    /// [`Backend::put_new`] for many keys; returns for each whether it was stored.
    ///
    /// Each item is decided atomically; LMDB commits the batch in one
    /// transaction. The default calls `put_new` one by one.
    fn put_new_batch(&self, items: Vec<(Key, Frame)>) -> Result<Vec<bool>> {
        items
            .into_iter()
            .map(|(key, frame)| self.put_new(&key, frame))
            .collect()
    }

    /// Publishes a batch, as the named store does: stores every frame of
    /// `plain` (as [`Backend::put_batch`]), then each claim's frame only if
    /// its key holds nothing (as [`Backend::put_new`]) and, for each claim
    /// stored, its hint (as [`Backend::put`]). Returns for each claim
    /// whether it was stored.
    ///
    /// No claim is visible before every plain frame is stored. A hint is
    /// advisory: the default ignores a failure to store hints, so readers
    /// must not rely on them. The default makes the three calls in that
    /// order (three syncs on a syncing backend); LMDB commits everything in
    /// one transaction, which is one sync and all-or-nothing.
    ///
    /// ```
    /// use spillpool::{open, Claim, Key, frame};
    /// let b = open("mem://").unwrap();
    /// let k = |s: &str| Key::new(s).unwrap();
    /// let f = |v: u8| frame::encode(&vec![v].into()).unwrap();
    /// let claim = |v| Claim { key: k("v/1"), frame: f(v), hint: Some((k("head"), f(v))) };
    /// assert_eq!(b.publish_batch(vec![(k("data"), f(0))], vec![claim(1)]).unwrap(), [true]);
    /// assert_eq!(b.publish_batch(vec![], vec![claim(2)]).unwrap(), [false]);
    /// assert!(b.get(&k("head")).unwrap().is_some());
    /// ```
    fn publish_batch(&self, plain: Vec<(Key, Frame)>, claims: Vec<Claim>) -> Result<Vec<bool>> {
        if !plain.is_empty() {
            self.put_batch(plain)?;
        }
        let mut hints = Vec::new();
        let mut items = Vec::with_capacity(claims.len());
        for claim in claims {
            hints.push(claim.hint);
            items.push((claim.key, claim.frame));
        }
        let won = self.put_new_batch(items)?;
        let hints: Vec<(Key, Frame)> = hints
            .into_iter()
            .zip(&won)
            .filter_map(|(hint, &won)| hint.filter(|_| won))
            .collect();
        if !hints.is_empty() {
            let _ = self.put_batch(hints);
        }
        Ok(won)
    }

    /// Returns the frame stored under `key`, or `None`.
    ///
    /// The bytes may borrow storage (an mmap, the LMDB map); they stay valid
    /// for as long as they (or anything sliced from them) are alive, whatever
    /// happens to the key afterwards.
    fn get(&self, key: &Key) -> Result<Option<Bytes>>;

    /// The greatest key of `len` bytes that starts with `prefix`, and its
    /// frame, found in one search of an ordered index (the newest of a
    /// symbol's versions, whose numbers have a fixed width).
    ///
    /// Backends that do not keep their keys in order answer
    /// [`Last::Unknown`] (the default), as may one that finds too many other
    /// keys under the prefix before a match. `Found` and `Nothing` are exact
    /// for one moment of the backend (an LMDB read snapshot).
    ///
    /// ```
    /// use spillpool::{open, Key, frame};
    /// use spillpool::Last;
    /// let b = open("mem://").unwrap();
    /// for v in ["v/07", "v/10", "v/09"] {
    ///     b.put(&Key::new(v).unwrap(), frame::encode(&vec![1].into()).unwrap()).unwrap();
    /// }
    /// match b.last_under("v/", 4).unwrap() {
    ///     Last::Found(key, _) => assert_eq!(key.as_str(), "v/10"),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    fn last_under(&self, prefix: &str, len: usize) -> Result<Last> {
        let _ = (prefix, len);
        Ok(Last::Unknown)
    }

    /// Whether `key` holds a frame, without reading or decoding it where the
    /// backend can tell (the default gets it).
    ///
    /// ```
    /// use spillpool::{open, Key, Value};
    /// let b = open("mem://?compression=zstd").unwrap();
    /// let k = Key::new("k").unwrap();
    /// assert!(!b.contains(&k).unwrap());
    /// b.put_value(&k, &Value::from(vec![1u8; 100])).unwrap();
    /// assert!(b.contains(&k).unwrap());
    /// ```
    fn contains(&self, key: &Key) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Removes `key`; returns whether it existed. Readers holding its frame keep it.
    fn delete(&self, key: &Key) -> Result<bool>;

    /// Every key that starts with `prefix` (a plain string prefix), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<Key>>;

    /// Keys and bytes stored. May scan the whole backend.
    fn usage(&self) -> Result<Usage>;

    /// Encodes `value` as a frame and stores it under `key`, as [`Backend::put`].
    ///
    /// A backend that [keeps values](Backend::keeps_values) (`mem://`)
    /// stores the value itself instead: no encoding, no copy, the same
    /// cost whatever its size.
    ///
    /// ```
    /// use spillpool::{open, Key, Value};
    /// let backend = open("mem://").unwrap();
    /// let key = Key::new("greeting").unwrap();
    /// backend.put_value(&key, &Value::from(b"hi".to_vec())).unwrap();
    /// let back = backend.get_value(&key).unwrap().unwrap();
    /// assert_eq!(back.as_blob().unwrap().as_ref(), b"hi");
    /// ```
    fn put_value(&self, key: &Key, value: &Value) -> Result<()> {
        self.put(key, frame::encode(value)?)
    }

    /// Stores many values, as [`Backend::put_batch`] stores frames (one LMDB
    /// transaction, one sync for files). The default encodes them in parallel.
    fn put_values(&self, items: Vec<(Key, Value)>) -> Result<()> {
        self.put_batch(encode_values(items)?)
    }

    /// Reads and decodes the value under `key`, or `None`.
    ///
    /// Returns [`Error::Corrupt`] naming the key and its location when the
    /// stored frame fails a check.
    fn get_value(&self, key: &Key) -> Result<Option<Value>> {
        match self.get(key)? {
            Some(f) => frame::decode(f, key, &Location::new(self, key)).map(Some),
            None => Ok(None),
        }
    }

    /// Whether [`Backend::put_value`] keeps values as they are, so that
    /// [`Backend::get_value`] returns them without decoding (and
    /// [`Backend::get`] must encode them). Callers that select parts of a
    /// table read such backends by value.
    fn keeps_values(&self) -> bool {
        false
    }

    /// Whether a whole value is cheaper to read through
    /// [`Backend::get_value`] than through [`Backend::get`] and decoding:
    /// where values are [kept](Backend::keeps_values), and on a
    /// [`FilteredBackend`], whose `get` returns a plain frame that its
    /// reader would verify (hash) again. Callers that select parts of a
    /// table read such backends by value and select afterwards.
    fn reads_by_value(&self) -> bool {
        self.keeps_values()
    }

    /// Where `key` lives, for error messages (a file path, or the URI).
    fn location(&self, key: &Key) -> String {
        let _ = key;
        self.to_string()
    }
}

/// Value-level conveniences for every [`Backend`].
pub trait BackendExt: Backend {
    /// Like [`Backend::get_value`], but a missing key is [`Error::NotFound`].
    ///
    /// ```
    /// use spillpool::{open, BackendExt, Key, Value};
    /// let backend = open("mem://").unwrap();
    /// let key = Key::new("greeting").unwrap();
    /// backend.put_value(&key, &Value::from(b"hi".to_vec())).unwrap();
    /// assert_eq!(backend.fetch_value(&key).unwrap().as_blob().unwrap().as_ref(), b"hi");
    /// assert!(backend.fetch_value(&Key::new("other").unwrap()).is_err());
    /// ```
    fn fetch_value(&self, key: &Key) -> Result<Value> {
        self.get_value(key)?.ok_or_else(|| Error::NotFound {
            key: printable(key.as_str()),
            location: self.to_string(),
        })
    }
}

impl<T: Backend + ?Sized> BackendExt for T {}

/// [`Backend::location`] of a key, formatted only when shown: reads label
/// every decode with it, and building the string eagerly cost ~10 % of a
/// small store read that almost never fails.
pub(crate) struct Location<'a, B: Backend + ?Sized> {
    backend: &'a B,
    key: &'a Key,
}

impl<'a, B: Backend + ?Sized> Location<'a, B> {
    pub(crate) fn new(backend: &'a B, key: &'a Key) -> Self {
        Location { backend, key }
    }
}

impl<B: Backend + ?Sized> Display for Location<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.backend.location(self.key))
    }
}

/// Encodes values as frames, in parallel.
pub(crate) fn encode_values(items: Vec<(Key, Value)>) -> Result<Vec<(Key, Frame)>> {
    items
        .into_par_iter()
        .map(|(key, value)| Ok((key, frame::encode(&value)?)))
        .collect()
}

/// Opens the backend a URI names.
///
/// Returns [`Error::InvalidUri`] for an unknown scheme or parameter.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let backend = spillpool::open(&format!("file://{}", dir.path().display())).unwrap();
/// assert_eq!(backend.usage().unwrap().keys, 0);
/// ```
pub fn open(uri: &str) -> Result<Arc<dyn Backend>> {
    let parsed = Uri::parse(uri)?;
    let inner: Arc<dyn Backend> = match parsed.scheme() {
        "mem" => Arc::new(MemBackend::from_uri(&parsed)?),
        "file" => Arc::new(FileBackend::from_uri(&parsed)?),
        "lmdb" => Arc::new(LmdbBackend::from_uri(&parsed)?),
        "shm" => Arc::new(ShmBackend::from_uri(&parsed)?),
        other => {
            return Err(parsed.invalid(format!(
                "unknown scheme {other:?} (known: mem, file, lmdb, shm)"
            )));
        }
    };
    let filters = Filters::from_specs(
        parsed.param("compression"),
        parsed.param("encryption"),
        None,
    )
    .map_err(|e| parsed.invalid(e.to_string()))?;
    Ok(if filters.is_empty() {
        inner
    } else {
        Arc::new(FilteredBackend::new(inner, filters).with_name(uri))
    })
}
