//! # spillpool
//!
//! A storage layer for the intermediate data of data engines: values (byte
//! blobs and Apache Arrow tables) stored under validated [`Key`]s in
//! pluggable [`Backend`]s, encoded as self-describing, checksummed
//! [`frame`]s, and read back without copying wherever the storage allows.
//!
//! | layer | module | holds |
//! |---|---|---|
//! | values | [`Value`], [`Table`] | byte blobs and Arrow tables |
//! | frames | [`frame`] | the on-storage encoding: header, checksums, 64-byte-aligned payload |
//! | backends | [`Backend`], [`open`] | `mem://`, `file://`, `lmdb://`, `shm://` |
//! | pool | [`Pool`] | a memory-bounded pool that spills to a disk tier |
//! | named store | [`Store`], [`Library`] | libraries of symbols with versions, on any backend |
//!
//! ```
//! use spillpool::{open, BackendExt, Key, Value};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = open(&format!("lmdb://{}", dir.path().display())).unwrap();
//! let key = Key::new("results/step-1").unwrap();
//! store.put_value(&key, &Value::from(vec![42u8; 1 << 20])).unwrap();
//! let value = store.fetch_value(&key).unwrap();
//! assert_eq!(value.size(), 1 << 20);
//! assert_eq!(store.list("results/").unwrap(), vec![key]);
//! ```
//!
//! Not here yet: the network server and object storage.
//!
//! Cargo features: `parquet` (read and write Parquet files, see [`formats`]),
//! `conformance` (the backend test suite and the model checks of `model`,
//! for other crates' tests), `arbitrary` (model operations from fuzzer input).

#![warn(missing_docs)]

pub mod backend;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
pub mod filter;
pub mod formats;
pub mod frame;
mod ipc;
mod key;
#[cfg(any(test, feature = "conformance"))]
pub mod model;
pub mod pool;
mod size;
pub mod store;
mod uri;
mod value;
mod verified;

pub use backend::{
    Backend, BackendExt, Claim, FileBackend, FilteredBackend, Last, LmdbBackend, MemBackend,
    ShmBackend, Usage, open,
};
pub use error::{Error, Result};
pub use key::{Key, MAX_KEY_LEN};
pub use pool::{Guard, Pool, PoolBuilder, Ref, Stats};
pub use size::{format_size, parse_size};
pub use store::{Library, Store};
pub use uri::Uri;
pub use value::{Table, Value};
