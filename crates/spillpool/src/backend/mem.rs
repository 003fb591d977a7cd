//! `mem://`: a concurrent map in this process.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, LazyLock, Weak};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::{Backend, LAST_UNDER_STEPS, Last, Usage};
use crate::error::Result;
use crate::frame::{self, Frame};
use crate::key::Key;
use crate::uri::Uri;
use crate::value::Value;

/// What a key holds: a frame put as bytes, or a value kept as it is.
#[derive(Clone)]
enum Stored {
    Frame(Bytes),
    Value(Value),
}

impl Stored {
    /// The frame's length, or for a kept value the bytes it spans plus a
    /// header. A tile kept by the named store is a slice of the caller's
    /// arrays: it counts its slice, not the whole buffers it shares.
    fn len(&self) -> u64 {
        let bytes = match self {
            Stored::Frame(f) => return f.len() as u64,
            Stored::Value(Value::Blob(b)) => b.len(),
            Stored::Value(Value::Table(t)) => crate::value::spanned_bytes(t.batches()),
        };
        (frame::HEADER_LEN + bytes) as u64
    }
}

type Map = RwLock<BTreeMap<Key, Stored>>;

/// Named in-memory maps, so that every `mem://NAME` opened in this process shares one.
static NAMED: LazyLock<Mutex<HashMap<String, Weak<Map>>>> = LazyLock::new(Default::default);

/// In-process storage: `mem://` (private to this handle) or `mem://NAME`
/// (shared by every handle opened with that name in this process, until the last is dropped).
///
/// [`Backend::put_value`] keeps the value itself (a blob's `Bytes`, a
/// table's arrays), so putting and getting a value costs the same whatever
/// its size: nothing is encoded, copied or checksummed, and the value read
/// back shares the caller's buffers (Arrow data is immutable). `put` of a
/// frame stores its bytes (a blob frame's header and body are joined once);
/// `get` of a kept value encodes a frame on demand.
///
/// ```
/// use spillpool::{Backend, MemBackend, Key, Value};
/// let mem = MemBackend::new();
/// let key = Key::new("k").unwrap();
/// mem.put(&key, bytes::Bytes::from_static(b"frame").into()).unwrap();
/// assert_eq!(mem.get(&key).unwrap().unwrap().as_ref(), b"frame");
///
/// let blob = bytes::Bytes::from(vec![1u8; 1 << 20]);
/// mem.put_value(&key, &Value::Blob(blob.clone())).unwrap();
/// let back = mem.get_value(&key).unwrap().unwrap();
/// assert_eq!(back.as_blob().unwrap().as_ptr(), blob.as_ptr()); // the same memory
/// ```
pub struct MemBackend {
    name: Option<String>,
    map: Arc<Map>,
}

impl MemBackend {
    /// A fresh, private map.
    pub fn new() -> Self {
        MemBackend {
            name: None,
            map: Arc::default(),
        }
    }

    /// The map called `name` in this process, created on first use.
    pub fn named(name: &str) -> Self {
        let mut named = NAMED.lock();
        let map = match named.get(name).and_then(Weak::upgrade) {
            Some(map) => map,
            None => {
                let map: Arc<Map> = Arc::default();
                named.retain(|_, weak| weak.strong_count() > 0);
                named.insert(name.to_string(), Arc::downgrade(&map));
                map
            }
        };
        MemBackend {
            name: Some(name.to_string()),
            map,
        }
    }

    pub(crate) fn from_uri(uri: &Uri) -> Result<Self> {
        uri.check_params(&["compression", "encryption"])?;
        Ok(match uri.path() {
            "" => MemBackend::new(),
            name => MemBackend::named(name),
        })
    }
}

impl Default for MemBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mem://{}", self.name.as_deref().unwrap_or(""))
    }
}

impl fmt::Debug for MemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemBackend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Backend for MemBackend {
    fn put(&self, key: &Key, frame: Frame) -> Result<()> {
        // The one copy a put may make: a blob's header and bytes joined into one frame.
        let frame = frame.to_bytes();
        self.map.write().insert(key.clone(), Stored::Frame(frame));
        Ok(())
    }

    fn put_new(&self, key: &Key, frame: Frame) -> Result<bool> {
        let mut map = self.map.write();
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(key.clone(), Stored::Frame(frame.to_bytes()));
        Ok(true)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let stored = self.map.read().get(key).cloned();
        match stored {
            None => Ok(None),
            Some(Stored::Frame(f)) => Ok(Some(f)),
            Some(Stored::Value(v)) => Ok(Some(frame::encode(&v)?.to_bytes())),
        }
    }

    /// A kept value is not encoded to say it exists.
    fn contains(&self, key: &Key) -> Result<bool> {
        Ok(self.map.read().contains_key(key))
    }

    fn last_under(&self, prefix: &str, len: usize) -> Result<Last> {
        // Every key that starts with `prefix` sorts before `prefix` + the
        // greatest char, except those that continue with that char.
        let mut end = String::with_capacity(prefix.len() + 4);
        end.push_str(prefix);
        end.push(char::MAX);
        let found = {
            let map = self.map.read();
            let beyond = map
                .range::<str, _>((Bound::Included(end.as_str()), Bound::Unbounded))
                .next();
            if beyond.is_some_and(|(k, _)| k.as_str().starts_with(prefix)) {
                return Ok(Last::Unknown);
            }
            let mut under = map
                .range::<str, _>((Bound::Included(prefix), Bound::Excluded(end.as_str())))
                .rev();
            let mut found = None;
            for (k, v) in under.by_ref().take(LAST_UNDER_STEPS + 1) {
                if k.as_str().len() == len {
                    found = Some((k.clone(), v.clone()));
                    break;
                }
            }
            if found.is_none() && under.next().is_some() {
                return Ok(Last::Unknown);
            }
            found
        };
        Ok(match found {
            None => Last::Nothing,
            Some((key, Stored::Frame(f))) => Last::Found(key, f),
            Some((key, Stored::Value(v))) => Last::Found(key, frame::encode(&v)?.to_bytes()),
        })
    }

    fn put_value(&self, key: &Key, value: &Value) -> Result<()> {
        self.map
            .write()
            .insert(key.clone(), Stored::Value(value.clone()));
        Ok(())
    }

    fn put_values(&self, items: Vec<(Key, Value)>) -> Result<()> {
        let mut map = self.map.write();
        for (key, value) in items {
            map.insert(key, Stored::Value(value));
        }
        Ok(())
    }

    fn get_value(&self, key: &Key) -> Result<Option<Value>> {
        let stored = self.map.read().get(key).cloned();
        match stored {
            None => Ok(None),
            Some(Stored::Value(v)) => Ok(Some(v)),
            Some(Stored::Frame(f)) => {
                frame::decode(f, key, &super::Location::new(self, key)).map(Some)
            }
        }
    }

    fn keeps_values(&self) -> bool {
        true
    }

    fn delete(&self, key: &Key) -> Result<bool> {
        Ok(self.map.write().remove(key).is_some())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        let map = self.map.read();
        Ok(map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.as_str().starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn usage(&self) -> Result<Usage> {
        let map = self.map.read();
        Ok(Usage {
            keys: map.len() as u64,
            bytes: map.values().map(Stored::len).sum(),
        })
    }
}
