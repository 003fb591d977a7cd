//! The backend conformance suite: one set of checks that every backend passes.
//!
//! Each `check_*` function takes a backend and a key prefix that no other
//! check uses, so checks can share a backend and run in any order. A failed
//! check panics with a message naming the backend (these are test helpers).
//! [`run_all`] runs every check.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    Float32Array, Float64Array, Int8Array, Int16Array, Int64Array, LargeStringArray, NullArray,
    RecordBatch, StringArray, StringViewArray, StructArray, TimestampNanosecondArray, UInt64Array,
};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field};
use bytes::Bytes;

use crate::backend::{Backend, BackendExt, Claim, Last};
use crate::error::Error;
use crate::frame::{self, Frame};
use crate::key::Key;
use crate::value::{Table, Value};

fn key(s: &str) -> Key {
    Key::new(s).unwrap_or_else(|e| panic!("test key {s:?}: {e}"))
}

fn ok<T>(b: &dyn Backend, what: &str, r: crate::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{b}: {what}: {e}"))
}

/// A deterministic byte pattern of `len` bytes, different for each `seed`.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap_or_else(|e| panic!("sample batch: {e}"))
}

fn one(columns: Vec<(&str, ArrayRef)>) -> Table {
    Table::from(batch(columns))
}

/// Tables covering the Arrow types users store, with names for messages.
pub fn sample_tables() -> Vec<(&'static str, Table)> {
    let n = 1000;
    let ints = one(vec![
        (
            "i8",
            Arc::new(Int8Array::from_iter(
                (0..n).map(|i| (i % 7 != 0).then_some(i as i8)),
            )),
        ),
        (
            "i16",
            Arc::new(Int16Array::from_iter_values((0..n).map(|i| i as i16 * 3))),
        ),
        (
            "i64",
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| i64::MAX - i as i64),
            )),
        ),
        (
            "u64",
            Arc::new(UInt64Array::from_iter(
                (0..n).map(|i| (i % 3 != 0).then_some(i as u64)),
            )),
        ),
        (
            "bool",
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| (i % 5 != 0).then_some(i % 2 == 0)),
            )),
        ),
        ("date", Arc::new(Date32Array::from_iter_values(0..n as i32))),
    ]);
    let floats = one(vec![
        (
            "f32",
            Arc::new(Float32Array::from_iter_values(
                (0..n).map(|i| i as f32 / 7.0),
            )),
        ),
        (
            "f64",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (i % 11 != 0).then_some(-(i as f64) * 1e-3)),
            )),
        ),
    ]);
    let strings = one(vec![
        (
            "utf8",
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 4 != 0).then(|| format!("s{i}-ü"))),
            )),
        ),
        (
            "large",
            Arc::new(LargeStringArray::from_iter_values(
                (0..n).map(|i| "x".repeat(i % 50)),
            )),
        ),
        (
            "view",
            Arc::new(StringViewArray::from_iter_values(
                (0..n).map(|i| format!("a view string longer than twelve bytes {i}")),
            )),
        ),
        (
            "bin",
            Arc::new(BinaryArray::from_iter_values(
                (0..n).map(|i| vec![i as u8; i % 9]),
            )),
        ),
    ]);
    let nulls = one(vec![("null", Arc::new(NullArray::new(n)))]);
    let dictionary = {
        let mut b = StringDictionaryBuilder::<Int32Type>::new();
        for i in 0..n {
            if i % 13 == 0 {
                b.append_null();
            } else {
                b.append_value(["alpha", "beta", "delta", "eta"][i % 4]);
            }
        }
        one(vec![("dict", Arc::new(b.finish()))])
    };
    let timestamps = one(vec![(
        "ts",
        Arc::new(
            TimestampNanosecondArray::from_iter_values((0..n).map(|i| i as i64 * 1_000_000_007))
                .with_timezone("Europe/Paris"),
        ),
    )]);
    let decimals = one(vec![
        (
            "d128",
            Arc::new(
                Decimal128Array::from_iter_values((0..n).map(|i| i as i128 * 10_i128.pow(20) + 7))
                    .with_precision_and_scale(38, 10)
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        ),
        (
            "d256",
            Arc::new(
                Decimal256Array::from_iter_values(
                    (0..n).map(|i| {
                        i256::from_i128(i as i128 - 500) * i256::from_i128(10_i128.pow(30))
                    }),
                )
                .with_precision_and_scale(76, 20)
                .unwrap_or_else(|e| panic!("{e}")),
            ),
        ),
    ]);
    let lists = {
        let mut b = ListBuilder::new(Int32Builder::new());
        for i in 0..n {
            if i % 10 == 0 {
                b.append_null();
            } else {
                b.values()
                    .append_slice(&(0..(i % 6) as i32).collect::<Vec<_>>());
                b.append(true);
            }
        }
        one(vec![("list", Arc::new(b.finish()))])
    };
    let structs = {
        let a: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
        let s: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("{i}")),
        ));
        let st = StructArray::from(vec![
            (Arc::new(Field::new("a", DataType::Int64, false)), a),
            (Arc::new(Field::new("s", DataType::Utf8, false)), s),
        ]);
        one(vec![("struct", Arc::new(st))])
    };
    let zero_rows = {
        let b = batch(vec![("x", Arc::new(Int64Array::from(Vec::<i64>::new())))]);
        Table::from(b)
    };
    let no_batches = Table::empty(zero_rows.schema().clone());
    let many_batches = {
        let batches: Vec<RecordBatch> = (0..50)
            .map(|b| {
                batch(vec![
                    (
                        "k",
                        Arc::new(Int64Array::from_iter_values(
                            (0..1000).map(|i| b * 1000 + i),
                        )),
                    ),
                    (
                        "v",
                        Arc::new(StringArray::from_iter_values(
                            (0..1000).map(|i| format!("{b}:{i}")),
                        )),
                    ),
                ])
            })
            .collect();
        let schema = batches[0].schema();
        Table::try_new(schema, batches).unwrap_or_else(|e| panic!("{e}"))
    };
    // Dictionaries that differ between batches: the IPC file format cannot hold them.
    let changing_dictionaries = {
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let mut d = StringDictionaryBuilder::<Int32Type>::new();
                for i in 0..100 {
                    d.append_value(format!("batch{b}-{}", i % (b + 2)));
                }
                batch(vec![("d", Arc::new(d.finish()))])
            })
            .collect();
        let schema = batches[0].schema();
        Table::try_new(schema, batches).unwrap_or_else(|e| panic!("{e}"))
    };
    vec![
        ("ints", ints),
        ("floats", floats),
        ("strings", strings),
        ("nulls", nulls),
        ("dictionary", dictionary),
        ("timestamps_tz", timestamps),
        ("decimals", decimals),
        ("lists", lists),
        ("structs", structs),
        ("zero_rows", zero_rows),
        ("no_batches", no_batches),
        ("many_batches", many_batches),
        ("changing_dictionaries", changing_dictionaries),
    ]
}

/// Blobs of 0 bytes, 1 byte and 64 MiB come back identical.
pub fn check_blobs(b: &dyn Backend, prefix: &str) {
    for (i, len) in [0usize, 1, 4096, 64 << 20].into_iter().enumerate() {
        let k = key(&format!("{prefix}blob-{len}"));
        let data = pattern(len, i as u64);
        ok(b, "put blob", b.put_value(&k, &Value::Blob(data.clone())));
        let back = ok(b, "get blob", b.fetch_value(&k));
        assert_eq!(
            back.as_blob().map(|x| x.len()),
            Some(len),
            "{b}: blob of {len} bytes"
        );
        assert!(
            back.as_blob() == Some(&data),
            "{b}: blob of {len} bytes differs"
        );
    }
}

/// Every sample table comes back equal (schema, metadata and values).
pub fn check_tables(b: &dyn Backend, prefix: &str) {
    for (name, table) in sample_tables() {
        let k = key(&format!("{prefix}{name}"));
        ok(b, name, b.put_value(&k, &Value::Table(table.clone())));
        let back = ok(b, name, b.fetch_value(&k));
        let back = back
            .as_table()
            .unwrap_or_else(|| panic!("{b}: {name} came back as a blob"));
        assert_eq!(back.schema(), table.schema(), "{b}: {name} schema");
        assert_eq!(back.num_rows(), table.num_rows(), "{b}: {name} rows");
        let (got, want): (Vec<_>, Vec<_>) = (back.batches().to_vec(), table.batches().to_vec());
        assert_eq!(got, want, "{b}: {name} values");
    }
}

/// A put replaces the previous value; a missing key is `None`/`NotFound`.
pub fn check_overwrite_and_missing(b: &dyn Backend, prefix: &str) {
    let k = key(&format!("{prefix}x"));
    assert!(
        ok(b, "get missing", b.get(&k)).is_none(),
        "{b}: missing key found"
    );
    match b.fetch_value(&k) {
        Err(Error::NotFound { key, .. }) => assert_eq!(key, k.as_str()),
        other => panic!("{b}: fetch of a missing key gave {other:?}"),
    }
    ok(b, "put", b.put_value(&k, &Value::from(b"first".to_vec())));
    ok(
        b,
        "put",
        b.put_value(&k, &Value::from(b"second, longer".to_vec())),
    );
    let back = ok(b, "get", b.fetch_value(&k));
    assert_eq!(
        back.as_blob().map(|x| x.as_ref()),
        Some(&b"second, longer"[..]),
        "{b}"
    );
    ok(
        b,
        "put table over blob",
        b.put_value(&k, &Value::Table(sample_tables()[0].1.clone())),
    );
    assert!(
        ok(b, "get", b.fetch_value(&k)).as_table().is_some(),
        "{b}: kind not replaced"
    );
}

/// Delete removes a key, reports whether it existed, and leaves frames already read intact.
pub fn check_delete(b: &dyn Backend, prefix: &str) {
    let k = key(&format!("{prefix}gone"));
    let keep = key(&format!("{prefix}kept"));
    let data = pattern(100_000, 7);
    ok(b, "put", b.put_value(&k, &Value::Blob(data.clone())));
    ok(b, "put", b.put_value(&keep, &Value::from(b"stay".to_vec())));
    let held = ok(b, "get", b.fetch_value(&k));
    assert!(
        ok(b, "delete", b.delete(&k)),
        "{b}: delete of an existing key said false"
    );
    assert!(
        !ok(b, "delete", b.delete(&k)),
        "{b}: second delete said true"
    );
    assert!(
        ok(b, "get", b.get(&k)).is_none(),
        "{b}: deleted key still readable"
    );
    assert_eq!(
        held.as_blob(),
        Some(&data),
        "{b}: a value read before delete changed"
    );
    assert!(
        ok(b, "get", b.get(&keep)).is_some(),
        "{b}: delete removed another key"
    );
}

/// `list` returns exactly the keys with the prefix, sorted, including awkward ones.
pub fn check_list(b: &dyn Backend, prefix: &str) {
    let long = format!("{prefix}long/{}", "ü".repeat(400)); // > 511 bytes: past LMDB's key limit
    let names = [
        format!("{prefix}a/1"),
        format!("{prefix}a/2"),
        format!("{prefix}a/sub/3"),
        format!("{prefix}ab"),
        format!("{prefix}b"),
        format!("{prefix}sp ace/%41~x"),
        format!("{prefix}.dot/x"),
        long.clone(),
    ];
    for n in &names {
        ok(
            b,
            "put",
            b.put_value(&key(n), &Value::from(n.as_bytes().to_vec())),
        );
    }
    let listed = |p: &str| -> Vec<String> {
        ok(b, "list", b.list(p))
            .into_iter()
            .map(|k| k.to_string())
            .collect()
    };
    let mut all = names.to_vec();
    all.sort();
    assert_eq!(listed(prefix), all, "{b}: list of everything");
    assert_eq!(
        listed(&format!("{prefix}a")),
        vec![
            format!("{prefix}a/1"),
            format!("{prefix}a/2"),
            format!("{prefix}a/sub/3"),
            format!("{prefix}ab")
        ],
        "{b}: list by string prefix"
    );
    assert_eq!(
        listed(&format!("{prefix}long/")),
        vec![long.clone()],
        "{b}: long key listed"
    );
    assert!(
        listed(&format!("{prefix}zzz")).is_empty(),
        "{b}: empty prefix match"
    );
    let everything = listed("");
    assert!(
        all.iter().all(|n| everything.contains(n)),
        "{b}: list(\"\") misses keys"
    );
    assert!(
        everything.windows(2).all(|w| w[0] < w[1]),
        "{b}: list(\"\") not sorted"
    );
    let back = ok(b, "get long", b.fetch_value(&key(&long)));
    assert_eq!(
        back.as_blob().map(|x| x.as_ref()),
        Some(long.as_bytes()),
        "{b}: long key value"
    );
}

/// How a backend under test differs from a plain one.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// `usage().bytes` equals the bytes of the plain frames (false for
    /// filtered backends, which count what they store).
    pub exact_usage_bytes: bool,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            exact_usage_bytes: true,
        }
    }
}

/// `usage` counts keys and (see [`Expect`]) exactly the bytes of the frames stored.
pub fn check_usage(b: &dyn Backend, prefix: &str, expect: Expect) {
    let before = ok(b, "usage", b.usage());
    let mut bytes = 0u64;
    for i in 0..5 {
        let v = Value::Blob(pattern(1000 * (i + 1), i as u64));
        bytes += ok(b, "encode", frame::encode(&v)).len() as u64;
        ok(b, "put", b.put_value(&key(&format!("{prefix}{i}")), &v));
    }
    let after = ok(b, "usage", b.usage());
    assert_eq!(after.keys - before.keys, 5, "{b}: usage keys");
    if expect.exact_usage_bytes {
        assert_eq!(after.bytes - before.bytes, bytes, "{b}: usage bytes");
    } else {
        assert!(after.bytes > before.bytes, "{b}: usage bytes did not grow");
    }
    for i in 0..5 {
        ok(b, "delete", b.delete(&key(&format!("{prefix}{i}"))));
    }
    assert_eq!(ok(b, "usage", b.usage()), before, "{b}: usage after delete");
}

/// Many threads put, get and overwrite at once; readers see whole values only.
pub fn check_threads(b: &dyn Backend, prefix: &str) {
    let shared = key(&format!("{prefix}shared"));
    let versions = [pattern(200_000, 1), pattern(300_000, 2)];
    ok(
        b,
        "put",
        b.put_value(&shared, &Value::Blob(versions[0].clone())),
    );
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let (shared, versions) = (&shared, &versions);
            s.spawn(move || {
                for i in 0..20u64 {
                    let k = key(&format!("{prefix}t{t}/{i}"));
                    let v = pattern(1000 + (i as usize) * 100, t * 100 + i);
                    ok(b, "put", b.put_value(&k, &Value::Blob(v.clone())));
                    assert_eq!(
                        ok(b, "get", b.fetch_value(&k)).as_blob(),
                        Some(&v),
                        "{b}: thread {t} key {i}"
                    );
                    if t % 2 == 0 {
                        ok(
                            b,
                            "overwrite",
                            b.put_value(shared, &Value::Blob(versions[(i % 2) as usize].clone())),
                        );
                    } else {
                        let seen = ok(b, "get shared", b.fetch_value(shared));
                        assert!(
                            versions.iter().any(|v| seen.as_blob() == Some(v)),
                            "{b}: torn read"
                        );
                    }
                }
            });
        }
    });
    assert_eq!(
        ok(b, "list", b.list(&format!("{prefix}t"))).len(),
        120,
        "{b}: keys written by threads"
    );
}

/// A flipped byte or a truncated stored value is `Corrupt` naming the key, never data.
///
/// Damaged frames are stored through the backend's own `put`, so the check
/// exercises each backend's read path on bad bytes.
pub fn check_corruption(b: &dyn Backend, prefix: &str) {
    let k = key(&format!("{prefix}victim"));
    let original = ok(
        b,
        "encode",
        frame::encode(&Value::Table(sample_tables()[2].1.clone())),
    )
    .to_bytes();
    let n = original.len();
    let mut damages: Vec<(String, Bytes)> = Vec::new();
    for at in [0, 9, 20, 60, 64, 100, n / 2, n - 1] {
        let mut v = original.to_vec();
        v[at] ^= 0x01;
        damages.push((format!("bit flip at {at}"), Bytes::from(v)));
    }
    for len in [0, 10, 64, n / 2, n - 1] {
        damages.push((format!("truncated to {len}"), original.slice(..len)));
    }
    let mut longer = original.to_vec();
    longer.extend_from_slice(b"tail");
    damages.push(("extended".into(), Bytes::from(longer)));
    for (what, bad) in damages {
        ok(b, "put damaged", b.put(&k, bad.into()));
        match b.get_value(&k) {
            Err(Error::Corrupt { key, location, .. }) => {
                assert_eq!(key, k.as_str(), "{b}: {what}: error names another key");
                assert!(!location.is_empty(), "{b}: {what}: no location");
            }
            other => panic!("{b}: {what}: expected Corrupt, got {other:?}"),
        }
    }
    ok(b, "put good", b.put(&k, original.into()));
    assert!(
        ok(b, "get good", b.fetch_value(&k)).as_table().is_some(),
        "{b}: repaired value"
    );
}

/// Runs every check, each under its own prefix below `prefix`.
pub fn run_all(b: &dyn Backend, prefix: &str) {
    run_all_expecting(b, prefix, Expect::default());
}

/// [`run_all`] for a backend that differs as `expect` says.
pub fn run_all_expecting(b: &dyn Backend, prefix: &str, expect: Expect) {
    check_blobs(b, &format!("{prefix}blobs/"));
    check_tables(b, &format!("{prefix}tables/"));
    check_overwrite_and_missing(b, &format!("{prefix}overwrite/"));
    check_delete(b, &format!("{prefix}delete/"));
    check_list(b, &format!("{prefix}list/"));
    check_usage(b, &format!("{prefix}usage/"), expect);
    check_threads(b, &format!("{prefix}threads/"));
    check_put_new(b, &format!("{prefix}put-new/"));
    check_put_batch(b, &format!("{prefix}put-batch/"));
    check_publish_batch(b, &format!("{prefix}publish/"));
    check_last_under(b, &format!("{prefix}last/"));
    check_contains(b, &format!("{prefix}contains/"));
    check_corruption(b, &format!("{prefix}corruption/"));
}

/// `put_new`: of racing threads exactly one stores the key, the stored frame
/// is the winner's, and an existing key is never replaced.
pub fn check_put_new(b: &dyn Backend, prefix: &str) {
    for round in 0..4u64 {
        let k = key(&format!("{prefix}race{round}"));
        let wins: Vec<(u64, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6u64)
                .map(|t| {
                    let k = &k;
                    s.spawn(move || {
                        let v = Value::Blob(pattern(10_000 + t as usize, round * 10 + t));
                        let f = ok(b, "encode", frame::encode(&v));
                        (t, ok(b, "put_new", b.put_new(k, f)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| panic!("{b}: put_new thread panicked"))
                })
                .collect()
        });
        let winners: Vec<u64> = wins.iter().filter(|w| w.1).map(|w| w.0).collect();
        assert_eq!(winners.len(), 1, "{b}: round {round}: winners {winners:?}");
        let t = winners[0];
        let stored = ok(b, "get", b.fetch_value(&k));
        assert_eq!(
            stored.as_blob(),
            Some(&pattern(10_000 + t as usize, round * 10 + t)),
            "{b}: round {round}: the stored value is not the winner's"
        );
        let again = ok(b, "encode", frame::encode(&Value::from(b"late".to_vec())));
        assert!(!ok(b, "put_new", b.put_new(&k, again)), "{b}: replaced");
    }
    assert_eq!(ok(b, "list", b.list(prefix)).len(), 4, "{b}: leftovers");
}

/// `put_batch` stores every item readable afterwards, replacing old values.
pub fn check_put_batch(b: &dyn Backend, prefix: &str) {
    let old = key(&format!("{prefix}k003"));
    ok(b, "put", b.put_value(&old, &Value::from(b"old".to_vec())));
    let items: Vec<(Key, Frame)> = (0..40u64)
        .map(|i| {
            let v = Value::Blob(pattern(100 + 5000 * i as usize, 500 + i));
            (
                key(&format!("{prefix}k{i:03}")),
                ok(b, "encode", frame::encode(&v)),
            )
        })
        .collect();
    ok(b, "put_batch", b.put_batch(items));
    for i in 0..40u64 {
        let got = ok(b, "get", b.fetch_value(&key(&format!("{prefix}k{i:03}"))));
        assert_eq!(
            got.as_blob(),
            Some(&pattern(100 + 5000 * i as usize, 500 + i)),
            "{b}: batch item {i}"
        );
    }
    assert_eq!(ok(b, "list", b.list(prefix)).len(), 40, "{b}: batch keys");

    ok(b, "empty batch", b.put_batch(Vec::new()));
    // put_new_batch stores only what is absent.
    let fresh = Value::Blob(pattern(777, 9));
    let items = vec![
        (
            key(&format!("{prefix}k000")),
            ok(b, "encode", frame::encode(&fresh)),
        ),
        (
            key(&format!("{prefix}new")),
            ok(b, "encode", frame::encode(&fresh)),
        ),
    ];
    assert_eq!(
        ok(b, "put_new_batch", b.put_new_batch(items)),
        vec![false, true],
        "{b}"
    );
    let kept = ok(b, "get", b.fetch_value(&key(&format!("{prefix}k000"))));
    assert_eq!(
        kept.as_blob(),
        Some(&pattern(100, 500)),
        "{b}: put_new_batch replaced a value"
    );
    let new = ok(b, "get", b.fetch_value(&key(&format!("{prefix}new"))));
    assert_eq!(new.as_blob(), Some(&pattern(777, 9)), "{b}");
}

/// `contains` agrees with `get`: absent, present, deleted.
pub fn check_contains(b: &dyn Backend, prefix: &str) {
    let k = key(&format!("{prefix}k"));
    assert!(!ok(b, "contains", b.contains(&k)), "{b}: absent key");
    ok(b, "put", b.put_value(&k, &Value::Blob(pattern(5000, 3))));
    assert!(ok(b, "contains", b.contains(&k)), "{b}: stored key");
    assert!(
        !ok(b, "contains", b.contains(&key(&format!("{prefix}k/x")))),
        "{b}: a key under a stored one"
    );
    ok(b, "delete", b.delete(&k));
    assert!(!ok(b, "contains", b.contains(&k)), "{b}: deleted key");
}

/// `last_under` is exact or [`Last::Unknown`]: checked against a listing,
/// with keys of other lengths under the prefix before and after the answer,
/// more of them than an ordered backend steps over, and no key at all.
/// Returns how many questions got an exact answer.
pub fn check_last_under(b: &dyn Backend, prefix: &str) -> usize {
    let put = |name: &str, seed: u64| {
        let k = key(&format!("{prefix}{name}"));
        ok(b, "put", b.put_value(&k, &Value::Blob(pattern(100, seed))));
    };
    let mut exact = 0;
    let mut check = |under: &str, len: usize| {
        let p = format!("{prefix}{under}");
        let len = p.len() + len;
        let want = ok(b, "list", b.list(&p))
            .into_iter()
            .filter(|k| k.as_str().len() == len)
            .max();
        match ok(b, "last_under", b.last_under(&p, len)) {
            Last::Unknown => {}
            Last::Nothing => {
                assert_eq!(want, None, "{b}: last_under({p:?}, {len})");
                exact += 1;
            }
            Last::Found(k, frame) => {
                assert_eq!(Some(&k), want.as_ref(), "{b}: last_under({p:?}, {len})");
                let got = ok(b, "decode", frame::decode(frame, &k, "last_under"));
                let stored = ok(b, "get", b.fetch_value(&k));
                assert_eq!(got.as_blob(), stored.as_blob(), "{b}: frame of {k}");
                exact += 1;
            }
        }
    };
    check("a/", 2);
    for (i, v) in ["07", "10", "09"].iter().enumerate() {
        put(&format!("a/{v}"), i as u64);
    }
    check("a/", 2);
    check("a/", 3);
    check("a/0", 1);
    check("a/1", 1);
    check("a/2", 1);
    // Longer keys after the newest: a few, then more than a backend steps over.
    put("a/10/x", 7);
    put("a/11x", 8);
    check("a/", 2);
    for i in 0..(crate::backend::LAST_UNDER_STEPS + 4) {
        put(&format!("a/99/{i:02}"), 9 + i as u64);
    }
    check("a/", 2);
    check("a/", 5);
    // A prefix that is a whole key, and one nothing starts with.
    check("a/07", 0);
    check("b/", 2);
    exact
}

/// `publish_batch`: plain frames always stored, a claim only on a free key,
/// its hint only with it; racing publishers of one key: exactly one wins and
/// the stored claim and hint are the winner's.
pub fn check_publish_batch(b: &dyn Backend, prefix: &str) {
    let k = |s: &str| key(&format!("{prefix}{s}"));
    let f = |seed: u64| ok(b, "encode", frame::encode(&Value::Blob(pattern(300, seed))));
    let claim = |name: &str, seed: u64| Claim {
        key: k(name),
        frame: f(seed),
        hint: Some((k(&format!("hint-{name}")), f(seed + 100))),
    };
    let blob = |name: &str| ok(b, "get", b.get_value(&k(name))).and_then(|v| v.as_blob().cloned());
    ok(
        b,
        "put",
        b.put_value(&k("taken"), &Value::Blob(pattern(300, 1))),
    );
    let won = ok(
        b,
        "publish_batch",
        b.publish_batch(
            vec![(k("plain"), f(2))],
            vec![claim("taken", 3), claim("free", 4)],
        ),
    );
    assert_eq!(won, vec![false, true], "{b}");
    assert_eq!(blob("plain"), Some(pattern(300, 2)), "{b}: plain frame");
    assert_eq!(
        blob("taken"),
        Some(pattern(300, 1)),
        "{b}: a taken claim was replaced"
    );
    assert_eq!(
        blob("hint-taken"),
        None,
        "{b}: a lost claim's hint was stored"
    );
    assert_eq!(blob("free"), Some(pattern(300, 4)), "{b}: claim");
    assert_eq!(blob("hint-free"), Some(pattern(300, 104)), "{b}: hint");
    assert_eq!(
        ok(b, "publish_batch", b.publish_batch(Vec::new(), Vec::new())),
        Vec::<bool>::new()
    );

    let results: Vec<(u64, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let claim = &claim;
                s.spawn(move || {
                    let won = ok(
                        b,
                        "publish_batch",
                        b.publish_batch(Vec::new(), vec![claim("race", 10 + t)]),
                    );
                    (t, won == [true])
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("{b}: publish thread panicked"))
            })
            .collect()
    });
    let winners: Vec<u64> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "{b}: winners {winners:?}");
    assert_eq!(
        blob("race"),
        Some(pattern(300, 10 + winners[0])),
        "{b}: race claim"
    );
    assert_eq!(
        blob("hint-race"),
        Some(pattern(300, 110 + winners[0])),
        "{b}: race hint"
    );
}

/// The path of the file mapped at `addr` in this process, from `/proc/self/maps`.
///
/// Used to prove zero-copy reads: a decoded array's buffer lies inside the
/// mapping of the stored file (or of the LMDB data file).
pub fn mapped_file_at(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let (lo, hi) = parts.next()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        if (lo..hi).contains(&addr) {
            parts.nth(4).map(str::to_string)
        } else {
            None
        }
    })
}

/// Recomputes a frame's payload checksum, stored length and header checksum
/// in place, so that only deeper checks (authentication, the raw checksum,
/// the Arrow decoder) can catch a change made to it. Frames whose header is
/// too damaged to say where things are are left as they are.
pub fn reseal(frame: &mut [u8]) {
    use xxhash_rust::xxh3::Xxh3;
    if frame.len() < frame::HEADER_LEN {
        return;
    }
    let filter_len = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]) as usize;
    let mut off = [0u8; 8];
    off.copy_from_slice(&frame[16..24]);
    let offset = u64::from_le_bytes(off);
    let Some(stored) = usize::try_from(offset)
        .ok()
        .and_then(|o| frame.len().checked_sub(o))
    else {
        return;
    };
    if frame::HEADER_LEN.saturating_add(filter_len) > frame.len() {
        return;
    }
    let offset = frame.len() - stored;
    frame[24..32].copy_from_slice(&(stored as u64).to_le_bytes());
    let checksum = frame::Checksum::from_id(frame[11]).unwrap_or(frame::Checksum::Xxh3);
    let sum = checksum.of(&frame[offset..]);
    frame[40..48].copy_from_slice(&sum.to_le_bytes());
    let mut h = Xxh3::new();
    h.update(&frame[..56]);
    h.update(&frame[frame::HEADER_LEN..frame::HEADER_LEN + filter_len]);
    let header_sum = h.digest();
    frame[56..64].copy_from_slice(&header_sum.to_le_bytes());
}

/// Runs `f` on a fresh tmpfs of `size` (e.g. `"2m"`) mounted for it, to test
/// a real full file system (ENOSPC), then unmounts it. Returns `false`
/// without running `f` when mounting is not allowed (not root); a panic in
/// `f` is re-raised after unmounting.
pub fn with_tmpfs(size: &str, f: impl FnOnce(&std::path::Path)) -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return false;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(dir.path())));
    let _ = std::process::Command::new("umount")
        .arg(dir.path())
        .status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    true
}
