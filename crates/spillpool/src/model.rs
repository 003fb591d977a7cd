//! Model-based checking: random operation sequences run against a real
//! backend, pool or store and against a plain in-memory model at once; any
//! difference is a failure (a panic naming the step).
//!
//! The fuzz targets in `fuzz/` feed these with libFuzzer's inputs (through
//! [`arbitrary`], with the `arbitrary` feature); the test suite feeds them
//! seeded random bytes. Values are small and derived from a seed, so a
//! model only needs `(length, seed)` to know what must come back.
//!
//! ```
//! use spillpool::model::{BackendOp, run_backend};
//! let backend = spillpool::open("mem://").unwrap();
//! let ops = [
//!     BackendOp::Put { key: 1, len: 10, seed: 2 },
//!     BackendOp::Get { key: 1 },
//!     BackendOp::Delete { key: 1 },
//!     BackendOp::List,
//! ];
//! run_backend(backend.as_ref(), "doc/", &ops);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};

use crate::backend::{Backend, BackendExt};
use crate::conformance::pattern;
use crate::error::Error;
use crate::frame;
use crate::key::Key;
use crate::pool::{Pool, Ref, Tier};
use crate::store::{Library, ReadOptions, Store, WriteOptions};
use crate::value::{Table, Value};

/// Decodes operations from raw bytes, one after another until the bytes run
/// out (denser than `Vec::arbitrary`, which stops at the first even
/// "continue" byte): what the fuzz targets and the tests feed the models.
#[cfg(feature = "arbitrary")]
pub fn decode_ops<'a, T: arbitrary::Arbitrary<'a>>(data: &'a [u8]) -> Vec<T> {
    let mut u = arbitrary::Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() {
        match T::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap_or_else(|e| panic!("model key {s:?}: {e}"))
}

fn blob(len: u16, seed: u8) -> Value {
    Value::Blob(pattern(usize::from(len), u64::from(seed)))
}

/// One operation on a [`Backend`]. Keys are one of 256 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum BackendOp {
    /// Store (or overwrite) `len` pattern bytes from `seed`.
    Put {
        /// Which key.
        key: u8,
        /// Bytes.
        len: u16,
        /// Content seed.
        seed: u8,
    },
    /// Store only if absent.
    PutNew {
        /// Which key.
        key: u8,
        /// Bytes.
        len: u16,
        /// Content seed.
        seed: u8,
    },
    /// Store several keys in one batch.
    PutBatch {
        /// First key.
        first: u8,
        /// How many consecutive keys (0..=7).
        count: u8,
        /// Content seed.
        seed: u8,
    },
    /// Read and compare.
    Get {
        /// Which key.
        key: u8,
    },
    /// Remove.
    Delete {
        /// Which key.
        key: u8,
    },
    /// List and compare.
    List,
}

/// Runs `ops` against `b` (keys under `prefix`, which must be unused) and a
/// model, panicking at the first difference; ends by comparing everything.
pub fn run_backend(b: &dyn Backend, prefix: &str, ops: &[BackendOp]) {
    let mut model: BTreeMap<u8, (u16, u8)> = BTreeMap::new();
    let k = |i: u8| key(&format!("{prefix}{i:03}"));
    let ok = |step: usize, what: &str, r: crate::Result<()>| {
        r.unwrap_or_else(|e| panic!("{b}: step {step} {what}: {e}"))
    };
    for (step, op) in ops.iter().enumerate() {
        match *op {
            BackendOp::Put { key, len, seed } => {
                ok(step, "put", b.put_value(&k(key), &blob(len, seed)));
                model.insert(key, (len, seed));
            }
            BackendOp::PutNew { key, len, seed } => {
                let f = frame::encode(&blob(len, seed))
                    .unwrap_or_else(|e| panic!("{b}: step {step}: encode: {e}"));
                let stored = b
                    .put_new(&k(key), f)
                    .unwrap_or_else(|e| panic!("{b}: step {step} put_new: {e}"));
                assert_eq!(
                    stored,
                    !model.contains_key(&key),
                    "{b}: step {step}: put_new of {key}"
                );
                model.entry(key).or_insert((len, seed));
            }
            BackendOp::PutBatch { first, count, seed } => {
                let items = (0..count % 8)
                    .map(|j| {
                        let key = first.wrapping_add(j);
                        let len = 50 + u16::from(j) * 300;
                        model.insert(key, (len, seed));
                        let f = frame::encode(&blob(len, seed))
                            .unwrap_or_else(|e| panic!("{b}: step {step}: encode: {e}"));
                        (k(key), f)
                    })
                    .collect::<Vec<_>>();
                // A batch may name a key twice (wrapping): the last one wins in the model;
                // backends must agree, so keep only the last of each key.
                let mut dedup: Vec<(Key, frame::Frame)> = Vec::new();
                for (kk, f) in items.into_iter().rev() {
                    if !dedup.iter().any(|(d, _)| *d == kk) {
                        dedup.push((kk, f));
                    }
                }
                ok(step, "put_batch", b.put_batch(dedup));
            }
            BackendOp::Get { key } => {
                let got = b
                    .get_value(&k(key))
                    .unwrap_or_else(|e| panic!("{b}: step {step} get: {e}"));
                let want = model.get(&key).map(|&(len, seed)| blob(len, seed));
                assert_eq!(
                    got.as_ref().and_then(|v| v.as_blob()),
                    want.as_ref().and_then(|v| v.as_blob()),
                    "{b}: step {step}: get {key}"
                );
            }
            BackendOp::Delete { key } => {
                let existed = b
                    .delete(&k(key))
                    .unwrap_or_else(|e| panic!("{b}: step {step} delete: {e}"));
                assert_eq!(
                    existed,
                    model.remove(&key).is_some(),
                    "{b}: step {step}: delete {key}"
                );
            }
            BackendOp::List => {
                let listed = b
                    .list(prefix)
                    .unwrap_or_else(|e| panic!("{b}: step {step} list: {e}"));
                let want: Vec<Key> = model.keys().map(|&i| k(i)).collect();
                assert_eq!(listed, want, "{b}: step {step}: list");
            }
        }
    }
    for (&i, &(len, seed)) in &model {
        let got = b
            .fetch_value(&k(i))
            .unwrap_or_else(|e| panic!("{b}: final get {i}: {e}"));
        assert_eq!(got.as_blob(), blob(len, seed).as_blob(), "{b}: final {i}");
    }
}

/// One operation on a [`Pool`]. `slot` picks one of the values put so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum PoolOp {
    /// Put `kib` KiB (1..=256) of pattern bytes.
    Put {
        /// Size in KiB.
        kib: u8,
        /// Content seed.
        seed: u8,
    },
    /// Get and compare.
    Get {
        /// Which value.
        slot: u8,
    },
    /// Delete: later gets must fail.
    Delete {
        /// Which value.
        slot: u8,
    },
    /// Move to disk.
    Spill {
        /// Which value.
        slot: u8,
    },
    /// Copy to disk.
    Copy {
        /// Which value.
        slot: u8,
    },
    /// Drop the handle (and with the last one, the value).
    Forget {
        /// Which value.
        slot: u8,
    },
    /// Evict everything unpinned.
    Shrink,
}

/// Runs `ops` against `pool` and a model of what each handle must read.
pub fn run_pool(pool: &Pool, ops: &[PoolOp]) {
    // (handle, expected contents; None once deleted)
    let mut live: Vec<(Ref, Option<(usize, u8)>)> = Vec::new();
    let pick = |live: &[(Ref, Option<(usize, u8)>)], slot: u8| {
        (!live.is_empty()).then(|| usize::from(slot) % live.len())
    };
    for (step, op) in ops.iter().enumerate() {
        match *op {
            PoolOp::Put { kib, seed } => {
                let len = (usize::from(kib) % 256 + 1) << 10;
                let r = pool
                    .put(Value::Blob(pattern(len, u64::from(seed))))
                    .unwrap_or_else(|e| panic!("pool step {step}: put: {e}"));
                live.push((r, Some((len, seed))));
            }
            PoolOp::Get { slot } => {
                let Some(i) = pick(&live, slot) else { continue };
                let (r, want) = &live[i];
                match (pool.get(r), want) {
                    (Ok(g), Some((len, seed))) => assert_eq!(
                        g.as_blob(),
                        Some(&pattern(*len, u64::from(*seed))),
                        "pool step {step}: get"
                    ),
                    (Err(Error::NotFound { .. }), None) => {}
                    (got, want) => {
                        panic!("pool step {step}: get gave {:?}, model {want:?}", got.err())
                    }
                }
            }
            PoolOp::Delete { slot } => {
                let Some(i) = pick(&live, slot) else { continue };
                let r = pool.delete(&live[i].0);
                match (&r, live[i].1) {
                    (Ok(()), Some(_)) => live[i].1 = None,
                    (Err(Error::NotFound { .. }), None) => {}
                    _ => panic!("pool step {step}: delete gave {r:?}, model {:?}", live[i].1),
                }
            }
            PoolOp::Spill { slot } | PoolOp::Copy { slot } => {
                let Some(i) = pick(&live, slot) else { continue };
                let r = &live[i].0;
                let result = if matches!(op, PoolOp::Spill { .. }) {
                    pool.move_to_disk(r)
                } else {
                    pool.copy_to_disk(r)
                };
                match (result, live[i].1) {
                    (Ok(()), Some(_)) => {
                        let tier = pool
                            .tier(r)
                            .unwrap_or_else(|e| panic!("pool step {step}: tier: {e}"));
                        let want_disk = matches!(op, PoolOp::Spill { .. });
                        assert!(
                            if want_disk {
                                tier == Tier::Disk
                            } else {
                                tier != Tier::Memory
                            },
                            "pool step {step}: after {op:?} the value is in {tier:?}"
                        );
                    }
                    (Err(Error::NotFound { .. }), None) => {}
                    (other, want) => {
                        panic!("pool step {step}: {op:?} gave {other:?}, model {want:?}")
                    }
                }
            }
            PoolOp::Forget { slot } => {
                if let Some(i) = pick(&live, slot) {
                    live.swap_remove(i);
                }
            }
            PoolOp::Shrink => {
                pool.shrink_to(0)
                    .unwrap_or_else(|e| panic!("pool step {step}: shrink: {e}"));
            }
        }
    }
    for (i, (r, want)) in live.iter().enumerate() {
        if let Some((len, seed)) = want {
            let g = pool
                .get(r)
                .unwrap_or_else(|e| panic!("pool: final get {i}: {e}"));
            assert_eq!(
                g.as_blob(),
                Some(&pattern(*len, u64::from(*seed))),
                "pool: final {i}"
            );
        }
    }
}

/// One operation on a [`Store`] library. Symbols are one of four names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum StoreOp {
    /// Write `rows` rows derived from `seed` as a new version.
    Write {
        /// Which symbol.
        sym: u8,
        /// Rows.
        rows: u8,
        /// Content seed.
        seed: u8,
    },
    /// Append rows.
    Append {
        /// Which symbol.
        sym: u8,
        /// Rows.
        rows: u8,
        /// Content seed.
        seed: u8,
    },
    /// Read the latest version (or rows `start..start+len` of it) and compare.
    Read {
        /// Which symbol.
        sym: u8,
        /// First row.
        start: u8,
        /// Rows (0: all).
        len: u8,
    },
    /// Read an older version and compare.
    ReadAsOf {
        /// Which symbol.
        sym: u8,
        /// Which version.
        version: u8,
    },
    /// Delete one version.
    DeleteVersion {
        /// Which symbol.
        sym: u8,
        /// Which version.
        version: u8,
    },
    /// Delete the symbol.
    Delete {
        /// Which symbol.
        sym: u8,
    },
    /// Compare symbol and version listings.
    List,
    /// Open a new store handle over the same backend.
    Reopen,
}

fn rows(n: u8, seed: u8) -> Vec<i64> {
    (0..i64::from(n))
        .map(|i| i * 1000 + i64::from(seed))
        .collect()
}

fn column(t: &Table) -> Vec<i64> {
    t.batches()
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.values().to_vec())
                .unwrap_or_default()
        })
        .collect()
}

fn table(values: &[i64]) -> Table {
    let a: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
    let batch =
        RecordBatch::try_from_iter([("v", a)]).unwrap_or_else(|e| panic!("model table: {e}"));
    Table::from(batch)
}

/// Runs `ops` against library `lib` of `open()` (called again on
/// [`StoreOp::Reopen`]) and a model of every symbol's versions.
pub fn run_store(open: &dyn Fn() -> Store, lib: &str, ops: &[StoreOp]) {
    const SYMBOLS: [&str; 4] = ["a", "b", "c", "d"];
    let mut store = open();
    let library = |s: &Store| -> Library {
        s.get_library(lib, true)
            .unwrap_or_else(|e| panic!("store: library: {e}"))
    };
    let mut l = library(&store);
    // symbol → versions (index = number; None = deleted)
    let mut model: BTreeMap<&str, Vec<Option<Vec<i64>>>> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        let name = |sym: u8| SYMBOLS[usize::from(sym) % SYMBOLS.len()];
        let latest = |model: &BTreeMap<&str, Vec<Option<Vec<i64>>>>, s: &str| {
            model
                .get(s)
                .and_then(|v| v.iter().rev().find_map(|x| x.clone()))
        };
        match *op {
            StoreOp::Write { sym, rows: n, seed } | StoreOp::Append { sym, rows: n, seed } => {
                let s = name(sym);
                let new = rows(n, seed);
                let append = matches!(op, StoreOp::Append { .. });
                let info = if append {
                    l.append(s, &table(&new))
                } else {
                    l.write_with(s, &table(&new), &WriteOptions::default())
                }
                .unwrap_or_else(|e| panic!("store step {step}: {op:?}: {e}"));
                let mut data = if append {
                    latest(&model, s).unwrap_or_default()
                } else {
                    Vec::new()
                };
                data.extend(new);
                let versions = model.entry(s).or_default();
                assert_eq!(
                    info.version as usize,
                    versions.len(),
                    "store step {step}: version number"
                );
                versions.push(Some(data));
            }
            StoreOp::Read { sym, start, len } => {
                let s = name(sym);
                let want = latest(&model, s);
                let opts = if len == 0 {
                    ReadOptions::default()
                } else {
                    ReadOptions::default().rows(u64::from(start)..u64::from(start) + u64::from(len))
                };
                match (l.read_with(s, &opts), want) {
                    (Ok(got), Some(all)) => {
                        let want: Vec<i64> = if len == 0 {
                            all
                        } else {
                            all.into_iter()
                                .skip(usize::from(start))
                                .take(usize::from(len))
                                .collect()
                        };
                        assert_eq!(column(&got.table), want, "store step {step}: read {s}");
                    }
                    (Err(Error::SymbolNotFound { .. }), None) => {}
                    (got, want) => panic!(
                        "store step {step}: read {s} gave {:?}, model {want:?}",
                        got.map(|g| g.info)
                    ),
                }
            }
            StoreOp::ReadAsOf { sym, version } => {
                let s = name(sym);
                let want = model
                    .get(s)
                    .and_then(|v| v.get(usize::from(version)).cloned().flatten());
                let got = l.read_with(s, &ReadOptions::default().as_of(u64::from(version)));
                match (got, want) {
                    (Ok(got), Some(want)) => {
                        assert_eq!(column(&got.table), want, "store step {step}: as_of")
                    }
                    (Err(Error::SymbolNotFound { .. }), None) => {}
                    (got, want) => panic!(
                        "store step {step}: {s} v{version} gave {:?}, model {want:?}",
                        got.map(|g| g.info)
                    ),
                }
            }
            StoreOp::DeleteVersion { sym, version } => {
                let s = name(sym);
                let existed = l
                    .delete_version(s, u64::from(version))
                    .unwrap_or_else(|e| panic!("store step {step}: delete_version: {e}"));
                let had = model
                    .get(s)
                    .and_then(|v| v.get(usize::from(version)))
                    .is_some_and(Option::is_some);
                assert_eq!(existed, had, "store step {step}: delete {s} v{version}");
                if let Some(versions) = model.get_mut(s).filter(|_| had) {
                    versions[usize::from(version)] = None;
                    // Deleting the last live version deletes the symbol (numbers restart).
                    if versions.iter().all(Option::is_none) {
                        model.remove(s);
                    } else if versions[usize::from(version)..].iter().all(Option::is_none) {
                        // Deleting the newest live version fences the next number.
                        versions.push(None);
                    }
                }
            }
            StoreOp::Delete { sym } => {
                let s = name(sym);
                let existed = l
                    .delete(s)
                    .unwrap_or_else(|e| panic!("store step {step}: delete: {e}"));
                let had = model
                    .remove(s)
                    .is_some_and(|v| v.iter().any(Option::is_some));
                assert_eq!(existed, had, "store step {step}: delete {s}");
            }
            StoreOp::List => {
                let listed = l
                    .list_symbols()
                    .unwrap_or_else(|e| panic!("store step {step}: list: {e}"));
                let want: Vec<String> = model.keys().map(|s| s.to_string()).collect();
                assert_eq!(listed, want, "store step {step}: symbols");
                for (s, versions) in &model {
                    let got: Vec<u64> = l
                        .list_versions(s)
                        .unwrap_or_else(|e| panic!("store step {step}: versions: {e}"))
                        .iter()
                        .map(|v| v.version)
                        .collect();
                    let want: Vec<u64> = (0..versions.len() as u64)
                        .filter(|&v| versions[v as usize].is_some())
                        .collect();
                    assert_eq!(got, want, "store step {step}: versions of {s}");
                }
            }
            StoreOp::Reopen => {
                store = open();
                l = library(&store);
            }
        }
    }
    for (s, versions) in &model {
        for (v, want) in versions.iter().enumerate() {
            if let Some(want) = want {
                let got = l
                    .read_with(s, &ReadOptions::default().as_of(v as u64))
                    .unwrap_or_else(|e| panic!("store: final read {s} v{v}: {e}"));
                assert_eq!(&column(&got.table), want, "store: final {s} v{v}");
            }
        }
    }
    let report = store
        .check(&crate::store::CheckOptions::default())
        .unwrap_or_else(|e| panic!("store: check: {e}"));
    assert!(
        report.is_clean() && report.orphans.is_empty(),
        "store: {report}"
    );
}
