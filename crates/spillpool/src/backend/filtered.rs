//! A wrapper that filters (compresses, encrypts) every value of another backend.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::{Backend, Claim, Last, Location, Usage};
use crate::error::{Error, Result};
use crate::filter::{DecodeLimits, Filters};
use crate::frame::{self, Frame};
use crate::key::Key;
use crate::value::Value;

/// Filters every frame put into `inner`, and undoes the filters on `get`,
/// which then returns a plain frame (a copy: filtered values are not zero-copy).
///
/// Opened by URI parameters on any backend:
/// `file:///DIR?compression=zstd:3&encryption=aes-256-gcm` (the key comes
/// from `SPILLPOOL_ENCRYPTION_KEY` or `SPILLPOOL_ENCRYPTION_KEY_FILE`).
/// Frames that are already filtered, or that do not verify, are stored as
/// they are, so copying between stores never double-filters and damaged
/// bytes still read back as `Corrupt`; with encryption on, a frame that is
/// only compressed is decompressed and encrypted, and one encrypted with
/// another key is refused (`WrongKey`). With encryption on, a
/// stored frame that is not encrypted reads as `Corrupt`: anyone with
/// access to the storage could have written it.
///
/// ```
/// use std::sync::Arc;
/// use spillpool::filter::{Compression, Filters};
/// use spillpool::{Backend, BackendExt, FilteredBackend, Key, MemBackend, Value};
/// let inner: Arc<dyn Backend> = Arc::new(MemBackend::new());
/// let zstd = FilteredBackend::new(Arc::clone(&inner), Filters::none().with_compression(Compression::Zstd(3)));
/// let key = Key::new("k").unwrap();
/// zstd.put_value(&key, &Value::from(vec![0u8; 1 << 20])).unwrap();
/// assert!(inner.usage().unwrap().bytes < 1 << 16);          // stored compressed
/// assert_eq!(inner.fetch_value(&key).unwrap().size(), 1 << 20); // any reader decompresses
/// ```
pub struct FilteredBackend {
    inner: Arc<dyn Backend>,
    filters: Filters,
    limits: DecodeLimits,
    name: String,
}

impl FilteredBackend {
    /// Wraps `inner` with `filters`.
    pub fn new(inner: Arc<dyn Backend>, filters: Filters) -> Self {
        let name = inner.to_string();
        FilteredBackend {
            inner,
            filters,
            limits: DecodeLimits::default(),
            name,
        }
    }

    /// Bounds what one `get` may allocate.
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Shows this name (the URI) instead of the inner backend's.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
}

impl fmt::Display for FilteredBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for FilteredBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilteredBackend")
            .field("inner", &self.name)
            .field("filters", &self.filters)
            .finish()
    }
}

impl FilteredBackend {
    /// `frame` with this backend's filters applied (see [`frame::refilter`]).
    fn refilter(&self, key: &Key, frame: Frame) -> Result<Frame> {
        frame::refilter(frame, &self.filters, key, &Location::new(&*self.inner, key))
    }

    /// With encryption on, only frames that say they are encrypted are
    /// opened (and opening checks that they are, with this key). Anyone who
    /// can write to the storage can write a plain frame with a valid
    /// checksum; read back, it would replace the value unseen.
    fn check_sealed(&self, stored: &[u8], key: &Key) -> Result<()> {
        if self.filters.key().is_none() || frame::claims_encryption(stored) {
            return Ok(());
        }
        Err(Error::corrupt(
            key,
            &Location::new(&*self.inner, key),
            "not encrypted, in a store that encrypts every value: not trusted \
             (values stored before encryption was turned on read through a \
             handle opened without it)",
        ))
    }

    /// A stored frame (if any) with this backend's filters undone.
    fn unfilter(&self, stored: Option<Bytes>, key: &Key) -> Result<Option<Bytes>> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        self.check_sealed(&stored, key)?;
        let location = Location::new(&*self.inner, key);
        let key_ref = self.filters.key().map(|k| &**k);
        frame::unfilter(stored, key, &location, key_ref, self.limits).map(Some)
    }

    fn refilter_all(&self, items: Vec<(Key, Frame)>) -> Result<Vec<(Key, Frame)>> {
        items
            .into_iter()
            .map(|(key, frame)| {
                let frame = self.refilter(&key, frame)?;
                Ok((key, frame))
            })
            .collect()
    }
}

impl Backend for FilteredBackend {
    fn put(&self, key: &Key, frame: Frame) -> Result<()> {
        self.inner.put(key, self.refilter(key, frame)?)
    }

    fn put_new(&self, key: &Key, frame: Frame) -> Result<bool> {
        self.inner.put_new(key, self.refilter(key, frame)?)
    }

    fn put_batch(&self, items: Vec<(Key, Frame)>) -> Result<()> {
        self.inner.put_batch(self.refilter_all(items)?)
    }

    fn put_new_batch(&self, items: Vec<(Key, Frame)>) -> Result<Vec<bool>> {
        self.inner.put_new_batch(self.refilter_all(items)?)
    }

    fn publish_batch(&self, plain: Vec<(Key, Frame)>, claims: Vec<Claim>) -> Result<Vec<bool>> {
        let claims = claims
            .into_iter()
            .map(|c| {
                let hint = match c.hint {
                    Some((k, f)) => {
                        let f = self.refilter(&k, f)?;
                        Some((k, f))
                    }
                    None => None,
                };
                Ok(Claim {
                    frame: self.refilter(&c.key, c.frame)?,
                    hint,
                    key: c.key,
                })
            })
            .collect::<Result<_>>()?;
        self.inner.publish_batch(self.refilter_all(plain)?, claims)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.unfilter(self.inner.get(key)?, key)
    }

    /// Decodes straight from the stored frame: through [`Backend::get`]
    /// the plain frame it returns would be verified again (a serial hash of
    /// the whole value).
    fn get_value(&self, key: &Key) -> Result<Option<Value>> {
        let Some(stored) = self.inner.get(key)? else {
            return Ok(None);
        };
        self.check_sealed(&stored, key)?;
        let location = Location::new(&*self.inner, key);
        let key_ref = self.filters.key().map(|k| &**k);
        frame::decode_with(stored, key, &location, key_ref, self.limits).map(Some)
    }

    /// The stored frame is not unfiltered to say it exists.
    fn contains(&self, key: &Key) -> Result<bool> {
        self.inner.contains(key)
    }

    fn reads_by_value(&self) -> bool {
        !self.filters.is_empty() || self.inner.reads_by_value()
    }

    fn last_under(&self, prefix: &str, len: usize) -> Result<Last> {
        Ok(match self.inner.last_under(prefix, len)? {
            Last::Found(key, stored) => match self.unfilter(Some(stored), &key)? {
                Some(frame) => Last::Found(key, frame),
                None => Last::Nothing,
            },
            other => other,
        })
    }

    fn delete(&self, key: &Key) -> Result<bool> {
        self.inner.delete(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        self.inner.list(prefix)
    }

    /// The inner backend's usage: bytes as stored (compressed, encrypted).
    fn usage(&self) -> Result<Usage> {
        self.inner.usage()
    }

    fn location(&self, key: &Key) -> String {
        self.inner.location(key)
    }
}
