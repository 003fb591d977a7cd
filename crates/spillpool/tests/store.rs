//! The named store, one suite over every backend.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use spillpool::conformance::sample_tables;
use spillpool::filter::{Compression, EncryptionKey, Filters};
use spillpool::store::{CheckOptions, ReadOptions, StoreOptions, WriteOptions};
use spillpool::{Backend, Error, FilteredBackend, Key, ShmBackend, Store, Table, Value};

fn ok<T>(what: &str, r: spillpool::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Small segments and slices so that even test tables span many tiles.
const TILED: StoreOptions = StoreOptions {
    rows_per_segment: 97,
    columns_per_segment: 3,
    batch_bytes: 64 << 20,
};

fn one_batch(t: &Table) -> RecordBatch {
    arrow_select::concat::concat_batches(t.schema(), t.batches())
        .unwrap_or_else(|e| panic!("concat: {e}"))
}

fn numbers(rows: usize, seed: i64) -> Table {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
        (0..rows as i64).map(|i| i + seed),
    ));
    let xs: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..rows).map(|i| (i as f64) * 0.5 + seed as f64),
    ));
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..rows).map(|i| format!("row-{seed}-{i}")),
    ));
    let batch = RecordBatch::try_from_iter([("id", ids), ("x", xs), ("name", names)])
        .unwrap_or_else(|e| panic!("{e}"));
    // Several input batches of uneven sizes, so segments straddle them.
    let cuts = [0, rows / 3, rows / 3 + 1, rows];
    let batches = cuts
        .windows(2)
        .map(|w| batch.slice(w[0], w[1] - w[0]))
        .collect();
    ok("table", Table::try_new(batch.schema(), batches))
}

/// Every behaviour of the store, on one store.
fn suite(store: &Store) {
    let what = store.uri().to_string();
    round_trips(store);
    selections(store);
    versions_and_metadata(store);
    appends(store);
    deletes(store);
    names_and_missing(store);
    conditional_writes(store);
    same_symbol_races(store);
    batches(store);
    whatever_the_head_says(store);
    longest_names(store);
    let report = ok("check", store.check(&CheckOptions::default()));
    assert!(
        report.is_clean() && report.orphans.is_empty(),
        "{what}: {report}"
    );
}

fn round_trips(store: &Store) {
    let lib = ok("library", store.get_library("types", true));
    for (name, table) in sample_tables() {
        let info = ok(name, lib.write(name, &table));
        assert_eq!(info.rows as usize, table.num_rows(), "{name}");
        let back = ok(name, lib.read(name)).table;
        assert_eq!(
            back.schema(),
            table.schema(),
            "{}: {name} schema",
            store.uri()
        );
        assert_eq!(
            one_batch(&back),
            one_batch(&table),
            "{}: {name}",
            store.uri()
        );
    }
    // An empty table keeps its schema.
    let empty = Table::empty(numbers(1, 0).schema().clone());
    ok("write empty", lib.write("empty", &empty));
    let back = ok("read empty", lib.read("empty")).table;
    assert_eq!((back.num_rows(), back.schema()), (0, empty.schema()));
}

fn selections(store: &Store) {
    let lib = ok("library", store.get_library("sel", true));
    let table = numbers(1000, 7);
    ok("write", lib.write("t", &table));
    let whole = one_batch(&table);
    let schema: SchemaRef = table.schema().clone();
    let mut seed = 12345u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..40 {
        let a = next(1100);
        let b = a + next(400);
        let columns: Vec<&str> = match next(4) {
            0 => vec!["name"],
            1 => vec!["x", "id"],
            2 => vec!["name", "x", "id"],
            _ => vec!["x"],
        };
        let got = ok(
            "read selection",
            lib.read_with(
                "t",
                &ReadOptions::default().columns(columns.clone()).rows(a..b),
            ),
        )
        .table;
        let idx: Vec<usize> = columns
            .iter()
            .map(|c| schema.index_of(c).unwrap_or(99))
            .collect();
        let (lo, hi) = (a.min(1000) as usize, b.min(1000) as usize);
        let expect = whole
            .project(&idx)
            .unwrap_or_else(|e| panic!("{e}"))
            .slice(lo, hi - lo);
        assert_eq!(got.num_rows(), hi - lo, "{}: rows {a}..{b}", store.uri());
        if got.num_rows() > 0 {
            assert_eq!(
                one_batch(&got),
                expect,
                "{}: {columns:?} rows {a}..{b}",
                store.uri()
            );
        }
        assert_eq!(got.schema().fields().len(), columns.len());
    }
    let err = lib
        .read_with("t", &ReadOptions::default().columns(["nope"]))
        .err();
    assert!(
        matches!(&err, Some(Error::InvalidValue { reason }) if reason.contains("\"nope\"") && reason.contains("\"t\"")),
        "{err:?}"
    );
}

fn versions_and_metadata(store: &Store) {
    let lib = ok("library", store.get_library("ver", true));
    let tables: Vec<Table> = (0..4).map(|i| numbers(50 + 100 * i, i as i64)).collect();
    for (i, t) in tables.iter().enumerate() {
        let meta = serde_json::json!({"step": i, "who": "test"});
        let info = ok(
            "write",
            lib.write_with("s", t, &WriteOptions::default().metadata(meta.clone())),
        );
        assert_eq!(info.version, i as u64);
        assert_eq!(info.metadata, Some(meta));
    }
    for (i, t) in tables.iter().enumerate() {
        let got = ok(
            "as_of",
            lib.read_with("s", &ReadOptions::default().as_of(i as u64)),
        );
        assert_eq!(got.info.version, i as u64);
        assert_eq!(
            got.info.metadata.as_ref().and_then(|m| m["step"].as_u64()),
            Some(i as u64)
        );
        assert_eq!(one_batch(&got.table), one_batch(t));
    }
    let latest = ok("read", lib.read("s"));
    assert_eq!(latest.info.version, 3);
    let listed: Vec<u64> = ok("versions", lib.list_versions("s"))
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed, vec![0, 1, 2, 3]);
    let err = lib.read_with("s", &ReadOptions::default().as_of(9)).err();
    assert!(
        matches!(
            err,
            Some(Error::SymbolNotFound {
                version: Some(9),
                ..
            })
        ),
        "{err:?}"
    );
}

fn appends(store: &Store) {
    let lib = ok("library", store.get_library("app", true));
    let parts: Vec<Table> = (0..5)
        .map(|i| numbers(30 + 70 * i, 1000 * i as i64))
        .collect();
    // Appending to a missing symbol creates it.
    for (i, p) in parts.iter().enumerate() {
        let info = ok("append", lib.append("a", p));
        assert_eq!(info.version, i as u64);
    }
    let all: Vec<RecordBatch> = parts.iter().map(one_batch).collect();
    let expect = arrow_select::concat::concat_batches(parts[0].schema(), &all)
        .unwrap_or_else(|e| panic!("{e}"));
    let got = ok("read", lib.read("a")).table;
    assert_eq!(one_batch(&got), expect);
    // Every earlier version is still whole.
    let v2 = ok(
        "as_of 2",
        lib.read_with("a", &ReadOptions::default().as_of(2)),
    )
    .table;
    assert_eq!(
        v2.num_rows(),
        parts[..3].iter().map(Table::num_rows).sum::<usize>()
    );
    // A row range across appended segments.
    let mid = ok(
        "rows",
        lib.read_with("a", &ReadOptions::default().rows(20..400)),
    )
    .table;
    assert_eq!(one_batch(&mid), expect.slice(20, 380));
    // A different schema: a clear error, and nothing written.
    let other = numbers(5, 0);
    let renamed = ok(
        "renamed",
        Table::try_new(
            Arc::new(arrow_schema::Schema::new(vec![
                other.schema().field(0).clone().with_name("ident"),
                other.schema().field(1).clone(),
                other.schema().field(2).clone(),
            ])),
            other
                .batches()
                .iter()
                .map(|b| {
                    RecordBatch::try_new(
                        Arc::new(arrow_schema::Schema::new(vec![
                            b.schema().field(0).clone().with_name("ident"),
                            b.schema().field(1).clone(),
                            b.schema().field(2).clone(),
                        ])),
                        b.columns().to_vec(),
                    )
                    .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect(),
        ),
    );
    let err = lib.append("a", &renamed).err();
    match &err {
        Some(Error::SchemaMismatch {
            library,
            symbol,
            reason,
            ..
        }) => {
            assert_eq!((library.as_str(), symbol.as_str()), ("app", "a"));
            assert!(reason.contains("ident"), "{reason}");
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    assert_eq!(ok("versions", lib.list_versions("a")).len(), 5);
    // Columns labelled nullable (as CSV readers do) but holding no nulls append fine…
    let plain = numbers(4, 77);
    let relabelled: Vec<arrow_schema::Field> = plain
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let nullable_schema = Arc::new(arrow_schema::Schema::new(relabelled));
    let as_nullable = |b: &RecordBatch| {
        RecordBatch::try_new(nullable_schema.clone(), b.columns().to_vec())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let t = ok(
        "nullable",
        Table::try_new(
            nullable_schema.clone(),
            plain.batches().iter().map(as_nullable).collect(),
        ),
    );
    let info = ok("append nullable-labelled", lib.append("a", &t));
    let back = ok("read", lib.read("a")).table;
    assert_eq!(
        back.schema(),
        parts[0].schema(),
        "the symbol keeps its schema"
    );
    assert_eq!(info.rows as usize, back.num_rows());
    // …but nulls in a column the symbol declares non-nullable do not.
    let xs: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None]));
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
    let with_nulls = RecordBatch::try_new(nullable_schema, vec![ids, xs, names])
        .unwrap_or_else(|e| panic!("{e}"));
    let err = lib.append("a", &Table::from(with_nulls)).err();
    assert!(
        matches!(&err, Some(Error::SchemaMismatch { reason, .. }) if reason.contains("null")),
        "{err:?}"
    );
    assert_eq!(ok("versions", lib.list_versions("a")).len(), 6);
}

fn deletes(store: &Store) {
    let lib = ok("library", store.get_library("del", true));
    ok("w0", lib.write("d", &numbers(100, 0)));
    ok("a1", lib.append("d", &numbers(100, 100)));
    ok("w2", lib.write("d", &numbers(10, 5)));
    // Deleting version 0 keeps version 1, which shares its rows.
    assert!(ok("delete v0", lib.delete_version("d", 0)));
    assert!(!ok("delete v0 again", lib.delete_version("d", 0)));
    let v1 = ok(
        "read v1",
        lib.read_with("d", &ReadOptions::default().as_of(1)),
    )
    .table;
    assert_eq!(v1.num_rows(), 200);
    let listed: Vec<u64> = ok("versions", lib.list_versions("d"))
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed, vec![1, 2]);
    // Deleting the latest makes the previous one latest; numbers are not
    // reused, and the next one is taken too (a fence against an append that
    // read version 2 as its base: see `deleting_the_newest_version_…`).
    assert!(ok("delete v2", lib.delete_version("d", 2)));
    assert_eq!(ok("read", lib.read("d")).info.version, 1);
    assert_eq!(ok("write", lib.write("d", &numbers(3, 0))).version, 4);
    // Deleting an older version fences nothing.
    assert!(ok("delete v1", lib.delete_version("d", 1)));
    assert_eq!(ok("write", lib.write("d", &numbers(3, 0))).version, 5);
    // Deleting the symbol removes every key it had.
    assert!(ok("delete", lib.delete("d")));
    assert!(!ok("delete again", lib.delete("d")));
    assert!(!ok("has", lib.has_symbol("d")));
    assert!(!ok("symbols", lib.list_symbols()).contains(&"d".to_string()));
    let leftovers: Vec<Key> = ok("list", store.backend().list("store/"))
        .into_iter()
        .filter(|k| k.as_str().contains("/del/d/") || k.as_str().ends_with("/del/d"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Libraries.
    ok("lib2", store.create_library("gone"));
    ok(
        "gone write",
        ok("lib", store.library("gone")).write("x", &numbers(5, 0)),
    );
    assert!(ok("delete library", store.delete_library("gone")));
    assert!(!ok("libraries", store.list_libraries()).contains(&"gone".to_string()));
    assert!(matches!(
        store.library("gone").err(),
        Some(Error::LibraryNotFound { .. })
    ));
    assert!(ok("list", store.backend().list("store/ver/gone/")).is_empty());
}

fn names_and_missing(store: &Store) {
    let lib = ok("library", store.get_library("names", true));
    for bad in ["", "..", "a/b", "nul\0", &"x".repeat(300)] {
        let err = lib.write(bad, &numbers(1, 0)).err();
        assert!(
            matches!(err, Some(Error::InvalidName { kind: "symbol", .. })),
            "{bad:?}: {err:?}"
        );
        assert!(matches!(
            store.create_library(bad).err(),
            Some(Error::InvalidName {
                kind: "library",
                ..
            })
        ));
    }
    let unicode = "ünïcode symbol 🎉";
    ok("unicode", lib.write(unicode, &numbers(3, 0)));
    assert_eq!(ok("symbols", lib.list_symbols()), vec![unicode.to_string()]);
    match lib.read("missing").err() {
        Some(e @ Error::SymbolNotFound { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("missing") && msg.contains("names") && msg.contains(store.uri()),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    match store.library("no-such-lib").err() {
        Some(e @ Error::LibraryNotFound { .. }) => assert!(e.to_string().contains("no-such-lib")),
        other => panic!("{other:?}"),
    }
    assert!(ok("libraries", store.list_libraries()).contains(&"names".to_string()));
}

fn conditional_writes(store: &Store) {
    let lib = ok("library", store.get_library("cond", true));
    let t = numbers(10, 0);
    ok(
        "create",
        lib.write_with("c", &t, &WriteOptions::default().if_latest(None)),
    );
    let err = lib
        .write_with("c", &t, &WriteOptions::default().if_latest(None))
        .err();
    assert!(
        matches!(
            err,
            Some(Error::Conflict {
                expected: None,
                found: Some(0),
                ..
            })
        ),
        "{err:?}"
    );
    ok(
        "v1",
        lib.write_with("c", &t, &WriteOptions::default().if_latest(Some(0))),
    );
    let err = lib
        .append_with("c", &t, &WriteOptions::default().if_latest(Some(0)))
        .err();
    assert!(
        matches!(
            err,
            Some(Error::Conflict {
                expected: Some(0),
                found: Some(1),
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(ok("versions", lib.list_versions("c")).len(), 2);
}

/// Racing writers of one symbol all succeed, each with its own version;
/// racing appends all land, each exactly once.
fn same_symbol_races(store: &Store) {
    let lib = ok("library", store.get_library("race", true));
    let threads = 6;
    std::thread::scope(|s| {
        for t in 0..threads {
            let lib = &lib;
            s.spawn(move || {
                ok(
                    "race write",
                    lib.write("w", &numbers(20 + t, 100 * t as i64)),
                );
                ok(
                    "race append",
                    lib.append("a", &numbers(1 + t, 1000 * t as i64)),
                );
            });
        }
    });
    let versions = ok("versions", lib.list_versions("w"));
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (0..threads as u64).collect::<Vec<_>>()
    );
    let mut rows: Vec<u64> = versions.iter().map(|v| v.rows).collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        (0..threads as u64).map(|t| 20 + t).collect::<Vec<_>>()
    );
    let all = ok("read appended", lib.read("a")).table;
    let mut ids: Vec<i64> = one_batch(&all)
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default();
    ids.sort_unstable();
    let mut expect: Vec<i64> = (0..threads)
        .flat_map(|t| (0..1 + t as i64).map(move |i| i + 1000 * t as i64))
        .collect();
    expect.sort_unstable();
    assert_eq!(ids, expect, "{}: every append exactly once", store.uri());
}

fn batches(store: &Store) {
    let lib = ok("library", store.get_library("batch", true));
    let tables: Vec<(String, Table)> = (0..50)
        .map(|i| (format!("s{i:03}"), numbers(100, i)))
        .collect();
    ok("one earlier", lib.write("s007", &numbers(5, 0)));
    let items: Vec<(&str, &Table)> = tables.iter().map(|(s, t)| (s.as_str(), t)).collect();
    let infos = ok("write_batch", lib.write_batch(&items));
    assert_eq!(infos[7].version, 1);
    assert!(
        infos
            .iter()
            .enumerate()
            .all(|(i, v)| i == 7 || v.version == 0)
    );
    let names: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
    let read = ok("read_batch", lib.read_batch(&names));
    for ((_, t), r) in tables.iter().zip(&read) {
        assert_eq!(one_batch(&r.table), one_batch(t));
    }
    assert_eq!(ok("symbols", lib.list_symbols()).len(), 50);
    let dup = lib
        .write_batch(&[("x", &tables[0].1), ("x", &tables[1].1)])
        .err();
    assert!(matches!(dup, Some(Error::InvalidValue { .. })), "{dup:?}");
}

/// The head is a hint: a read finds the newest live version, and a write
/// the next number, when the head lags (a writer died before updating it),
/// names a version that does not exist, is damaged or is gone.
fn whatever_the_head_says(store: &Store) {
    let what = store.uri().to_string();
    let lib = ok("library", store.get_library("heads", true));
    for seed in 0..3 {
        ok("write", lib.write("s", &numbers(5 + seed as usize, seed)));
    }
    let head = ok("key", Key::new("store/head/heads/s"));
    let b = store.backend();
    let hint = |v: u64| {
        ok(
            "frame",
            spillpool::frame::encode(&Value::from(v.to_le_bytes().to_vec())),
        )
    };
    let heads: Vec<(&str, Option<spillpool::frame::Frame>)> = vec![
        ("lagging", Some(hint(0))),
        ("ahead", Some(hint(7))),
        (
            "damaged",
            Some(ok(
                "frame",
                spillpool::frame::encode(&Value::from(b"???".to_vec())),
            )),
        ),
        ("gone", None),
    ];
    let mut next = 3;
    for (case, frame) in heads {
        match frame {
            Some(f) => ok("put head", b.put(&head, f)),
            None => {
                ok("delete head", b.delete(&head));
            }
        }
        let newest = ok("read", lib.read("s"));
        assert_eq!(newest.info.version, next - 1, "{what}: head {case}: read");
        assert_eq!(
            one_batch(&newest.table),
            one_batch(&numbers(
                5 + (next as usize - 1).min(2),
                (next as i64 - 1).min(2)
            )),
            "{what}: head {case}: data"
        );
        // The next write gets the next number, whatever the head said;
        // writing the same data keeps the expected table simple.
        let last = one_batch(&newest.table);
        let info = ok("write", lib.write("s", &Table::from(last)));
        assert_eq!(info.version, next, "{what}: head {case}: write");
        next += 1;
        // Put the head back in the case's state for the deleted-newest check.
        if case == "lagging" {
            ok("put head", b.put(&head, hint(0)));
            ok(
                "delete version",
                lib.delete_version("s", next - 1).map(|_| ()),
            );
            let live = ok("read", lib.read("s"));
            assert_eq!(
                live.info.version,
                next - 2,
                "{what}: newest deleted, head lagging"
            );
            // The deletion fenced `next`.
            let info = ok("write", lib.write("s", &live.table));
            assert_eq!(info.version, next + 1, "{what}: numbers are never reused");
            next += 2;
        }
    }
    ok("delete", lib.delete("s"));
}

/// The longest library and symbol names make keys longer than LMDB's key
/// limit (stored hashed, out of order): the store finds versions without
/// an ordered search there, and everything still works.
fn longest_names(store: &Store) {
    let what = store.uri().to_string();
    let (lib_name, sym) = ("l".repeat(255), "s".repeat(255));
    let lib = ok("library", store.get_library(&lib_name, true));
    ok("w0", lib.write(&sym, &numbers(10, 0)));
    ok("w1", lib.write(&sym, &numbers(20, 1)));
    ok("a2", lib.append(&sym, &numbers(5, 2)));
    assert_eq!(ok("read", lib.read(&sym)).info.version, 2, "{what}");
    assert!(ok("delete v2", lib.delete_version(&sym, 2)));
    let latest = ok("read", lib.read(&sym));
    assert_eq!(
        (latest.info.version, latest.table.num_rows()),
        (1, 20),
        "{what}"
    );
    assert_eq!(
        ok("w", lib.write(&sym, &numbers(1, 3))).version,
        4,
        "{what}: fenced 3"
    );
    assert_eq!(
        ok("symbols", lib.list_symbols()),
        vec![sym.clone()],
        "{what}"
    );
    assert!(ok("delete", lib.delete(&sym)), "{what}");
    assert!(
        ok("delete library", store.delete_library(&lib_name)),
        "{what}"
    );
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

#[test]
fn store_on_mem() {
    suite(&ok("open", Store::open_with("mem://", TILED)));
}

#[test]
fn store_on_file() {
    let dir = tmp();
    suite(&ok(
        "open",
        Store::open_with(&format!("file://{}", dir.path().display()), TILED),
    ));
}

#[test]
fn store_on_lmdb() {
    let dir = tmp();
    suite(&ok(
        "open",
        Store::open_with(&format!("lmdb://{}", dir.path().display()), TILED),
    ));
}

/// Writes that outgrow LMDB's map grow it, also when they are new versions
/// of a symbol (whose state the writer read first: nothing it read may still
/// borrow the map when the map must move).
#[test]
fn store_on_lmdb_grows_its_map_while_writing_versions() {
    let dir = tmp();
    let uri = format!("lmdb://{}?sync=false&map_size=1MiB", dir.path().display());
    let store = ok("open", Store::open(&uri));
    let lib = ok("library", store.get_library("grow", true));
    // ~1.6 MB (small writes: tiles and manifest in one transaction) and
    // ~8 MB (tiles first, then the manifest) against a 1 MiB map.
    for (version, rows) in [100_000usize, 100_000, 500_000, 500_000]
        .into_iter()
        .enumerate()
    {
        let col = || -> ArrayRef { Arc::new(Int64Array::from_iter_values(0..rows as i64)) };
        let t = Table::from(
            RecordBatch::try_from_iter([("a", col()), ("b", col())])
                .unwrap_or_else(|e| panic!("{e}")),
        );
        // Growth gives up (`TierFull`) after 3 s if values borrowed from
        // the map are still alive; the writer's own reads must not be.
        let info = ok("write", lib.write("t", &t));
        assert_eq!(info.version, version as u64);
        assert_eq!(ok("read", lib.read("t")).table.num_rows(), rows);
    }
}

#[test]
fn store_on_shm() {
    let ns = format!("test-store-{}", std::process::id());
    let result = std::panic::catch_unwind(|| {
        suite(&ok("open", Store::open_with(&format!("shm://{ns}"), TILED)));
    });
    let _ = ShmBackend::destroy_namespace(&ns);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn store_on_compressed_encrypted_lmdb() {
    let dir = tmp();
    let inner = spillpool::open(&format!("lmdb://{}?sync=false", dir.path().display()))
        .unwrap_or_else(|e| panic!("{e}"));
    let filters = Filters::none()
        .with_compression(Compression::Zstd(1))
        .with_encryption(Arc::new(EncryptionKey::from_bytes(&[7; 32])));
    let backend: Arc<dyn Backend> = Arc::new(FilteredBackend::new(inner, filters));
    suite(&ok("open", Store::from_backend(backend, TILED)));
}

/// On `mem://` a write keeps the caller's arrays (sliced into tiles) and a
/// read returns them: neither copies the data, whatever its size.
#[test]
fn store_on_mem_shares_the_written_arrays() {
    let store = ok("open", Store::open("mem://"));
    let lib = ok("library", store.get_library("zero", true));
    let t = numbers(250_000, 5);
    ok("write", lib.write("t", &t));
    let got = ok("read", lib.read("t")).table;
    assert_eq!(one_batch(&got), one_batch(&t));
    let first = |t: &Table| t.batches()[0].column(1).to_data().buffers()[0].as_ptr();
    assert_eq!(first(&got), first(&t));
    // Tiles share the table's buffers; usage counts each tile's slice once.
    let used = ok("usage", store.backend().usage()).bytes;
    let logical: usize = 250_000 * 16
        + one_batch(&t)
            .column(2)
            .to_data()
            .get_slice_memory_size()
            .unwrap_or(0);
    assert!(
        used >= logical as u64 && used < logical as u64 + 64 * 1024,
        "usage {used} for {logical} bytes of data"
    );
    let some = ok(
        "read",
        lib.read_with("t", &ReadOptions::default().columns(["x"]).rows(0..10)),
    );
    assert_eq!(
        some.table.batches()[0].column(0).to_data().buffers()[0].as_ptr(),
        first(&t)
    );
}

#[test]
fn default_layout_keeps_big_tables_in_few_tiles() {
    let store = ok("open", Store::open("mem://"));
    let lib = ok("library", store.get_library("big", true));
    let t = numbers(250_000, 0);
    let info = ok("write", lib.write("t", &t));
    assert_eq!(info.segments, 3);
    let tiles = ok("list", store.backend().list("store/tile/big/t/"));
    assert_eq!(tiles.len(), 3, "{tiles:?}");
    let got = ok(
        "read",
        lib.read_with("t", &ReadOptions::default().rows(99_990..100_010)),
    );
    assert_eq!(one_batch(&got.table), one_batch(&t).slice(99_990, 20));
}

/// A big write goes to the backend in batches of about `batch_bytes` (one
/// LMDB commit, one sync each), counted on the rows each tile spans: tiles
/// are slices of the caller's arrays, and counting their shared buffers made
/// every tile a batch (and a sync) of its own.
#[test]
fn big_writes_are_batched_by_the_bytes_of_their_tiles() {
    use spillpool::backend::{FaultOp, FaultPlan, FaultyBackend};
    let plan = Arc::new(FaultPlan::new());
    let inner = ok("open", spillpool::open("mem://"));
    let backend: Arc<dyn Backend> = Arc::new(FaultyBackend::new(inner, Arc::clone(&plan)));
    let options = StoreOptions {
        rows_per_segment: 100_000,
        batch_bytes: 4 << 20,
        ..StoreOptions::default()
    };
    let store = ok("store", Store::from_backend(backend, options));
    let lib = ok("library", store.get_library("b", true));
    // 1,000,000 rows of two int64 columns: 16 MB in 10 tiles of 1.6 MB.
    let col = || -> ArrayRef { Arc::new(Int64Array::from_iter_values(0..1_000_000)) };
    let t = Table::from(
        RecordBatch::try_from_iter([("a", col()), ("b", col())]).unwrap_or_else(|e| panic!("{e}")),
    );
    let writes_before = plan.count(FaultOp::Write);
    let info = ok("write", lib.write("t", &t));
    assert_eq!(info.segments, 10);
    // Tiles in batches of three (4.8 MB ≥ 4 MB): 3 + 3 + 3 + 1, then the
    // manifest and the head hint.
    assert_eq!(plan.count(FaultOp::Write) - writes_before, 4 + 2);
    let back = ok("read", lib.read("t"));
    assert_eq!(one_batch(&back.table), one_batch(&t));
}

/// Tiles a writer stored before dying are orphans: reported, then removed
/// by repair once old enough; nothing readable is touched.
#[test]
fn check_finds_and_repairs_orphans() {
    let dir = tmp();
    let store = ok(
        "open",
        Store::open_with(&format!("lmdb://{}", dir.path().display()), TILED),
    );
    let lib = ok("library", store.get_library("l", true));
    ok("write", lib.write("s", &numbers(300, 1)));
    // What a killed writer leaves: tiles under a write id no manifest names.
    let b = store.backend();
    let dead = "0000000000a-1-0-deadbeef"; // an old write id
    for i in 0..3 {
        let k = Key::new(format!("store/tile/l/s/{dead}/{i}.0")).unwrap_or_else(|e| panic!("{e}"));
        ok("orphan", b.put_value(&k, &Value::from(numbers(5, 0))));
    }
    let young = format!("{:011x}-1-0-00000000", now_ms());
    let k = Key::new(format!("store/tile/l/s/{young}/0.0")).unwrap_or_else(|e| panic!("{e}"));
    ok("young orphan", b.put_value(&k, &Value::from(numbers(5, 0))));

    let report = ok("check", store.check(&CheckOptions::default()));
    assert_eq!(report.orphans.len(), 4, "{report}");
    assert!(!report.is_clean() && report.removed() == 0 && report.missing.is_empty());
    let repaired = ok(
        "repair",
        store.check(&CheckOptions {
            repair: true,
            ..CheckOptions::default()
        }),
    );
    assert_eq!(repaired.removed(), 3, "{repaired}");
    let kept: Vec<&str> = repaired
        .orphans
        .iter()
        .filter(|o| !o.removed)
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(
        kept,
        vec![k.as_str()],
        "the young orphan may be a live writer's"
    );
    let forced = ok(
        "repair now",
        store.check(&CheckOptions {
            repair: true,
            min_age: std::time::Duration::ZERO,
        }),
    );
    assert_eq!(forced.removed(), 1);
    let after = ok("check", store.check(&CheckOptions::default()));
    assert!(after.is_clean() && after.orphans.is_empty(), "{after}");
    assert_eq!(
        one_batch(&ok("read", lib.read("s")).table),
        one_batch(&numbers(300, 1))
    );

    // A missing tile is reported, and reading names it.
    let tile = ok("tiles", b.list("store/tile/l/s/")).into_iter().next();
    let tile = tile.unwrap_or_else(|| panic!("no tile"));
    ok("delete tile", b.delete(&tile));
    let broken = ok("check", store.check(&CheckOptions::default()));
    assert_eq!(broken.missing.len(), 1, "{broken}");
    match lib.read("s").err() {
        Some(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains("missing"), "{e}"),
        other => panic!("{other:?}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A corrupted tile is an error naming it, never a wrong answer.
#[test]
fn corrupt_tiles_are_errors() {
    let dir = tmp();
    let store = ok(
        "open",
        Store::open_with(
            &format!("file://{}?sync=false", dir.path().display()),
            TILED,
        ),
    );
    let lib = ok("library", store.get_library("l", true));
    ok("write", lib.write("s", &numbers(300, 1)));
    let b = store.backend();
    let tile = ok("tiles", b.list("store/tile/l/s/")).into_iter().nth(2);
    let tile = tile.unwrap_or_else(|| panic!("no tile"));
    let mut bytes = ok("get", b.get(&tile)).unwrap_or_default().to_vec();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    let path = spillpool::FileBackend::open(vec![dir.path().to_path_buf()], false)
        .unwrap_or_else(|e| panic!("{e}"))
        .path_of(&tile);
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    match lib.read("s").err() {
        Some(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains(tile.as_str()), "{e}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Rows in other tiles (segment 0 of 4) still read.
    let first = ok(
        "rows in a sound tile",
        lib.read_with("s", &ReadOptions::default().rows(0..10)),
    );
    assert_eq!(
        one_batch(&first.table),
        one_batch(&numbers(300, 1)).slice(0, 10)
    );
}

/// Real ENOSPC during store writes (a 12 MiB tmpfs; needs root, skipped
/// otherwise): a clear error, every earlier version intact, and writes work
/// again once space is freed.
#[test]
fn a_full_disk_fails_store_writes_clearly_and_loses_nothing() {
    spillpool::conformance::with_tmpfs("12m", |dir| {
        for uri in [
            format!("file://{}", dir.join("f").display()),
            format!("lmdb://{}", dir.join("l").display()),
        ] {
            let store = ok("open", Store::open_with(&uri, TILED));
            let lib = ok("library", store.get_library("l", true));
            let mut written = Vec::new();
            let full = loop {
                let i = written.len() as i64;
                let t = numbers(20_000, i);
                match lib.write(&format!("s{i}"), &t) {
                    Ok(_) => written.push(t),
                    Err(e) => break e,
                }
                assert!(written.len() < 100, "{uri}: the tmpfs never filled");
            };
            let msg = full.to_string();
            assert!(
                matches!(full, Error::TierFull { .. }),
                "{uri}: expected TierFull, got {msg}"
            );
            assert!(msg.contains(&dir.display().to_string()), "{uri}: {msg}");
            assert!(written.len() >= 2, "{uri}: only {} written", written.len());
            for (i, t) in written.iter().enumerate() {
                let got = ok("read after ENOSPC", lib.read(&format!("s{i}")));
                assert_eq!(one_batch(&got.table), one_batch(t), "{uri}: s{i}");
            }
            // Free space, clean up after the failed write, and write again.
            ok("delete", lib.delete("s0"));
            ok(
                "repair",
                store.check(&CheckOptions {
                    repair: true,
                    min_age: std::time::Duration::ZERO,
                }),
            );
            ok("write after freeing", lib.write("again", &numbers(1000, 9)));
            assert_eq!(ok("read", lib.read("again")).table.num_rows(), 1000);
            ok("delete all", store.delete_library("l"));
        }
    });
}

/// A backend that holds the first claim published after `arm` until the
/// test lets it go: an append paused between reading its base and claiming.
#[derive(Debug)]
struct Gate {
    inner: Arc<dyn Backend>,
    armed: std::sync::atomic::AtomicBool,
    reached: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gate over {}", self.inner)
    }
}

impl Backend for Gate {
    fn put(&self, key: &Key, frame: spillpool::frame::Frame) -> spillpool::Result<()> {
        self.inner.put(key, frame)
    }
    fn put_new(&self, key: &Key, frame: spillpool::frame::Frame) -> spillpool::Result<bool> {
        self.inner.put_new(key, frame)
    }
    fn put_batch(&self, items: Vec<(Key, spillpool::frame::Frame)>) -> spillpool::Result<()> {
        self.inner.put_batch(items)
    }
    fn put_new_batch(
        &self,
        items: Vec<(Key, spillpool::frame::Frame)>,
    ) -> spillpool::Result<Vec<bool>> {
        self.inner.put_new_batch(items)
    }
    fn publish_batch(
        &self,
        plain: Vec<(Key, spillpool::frame::Frame)>,
        claims: Vec<spillpool::Claim>,
    ) -> spillpool::Result<Vec<bool>> {
        if !claims.is_empty() && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let reached = self.reached.lock().ok().and_then(|mut r| r.take());
            let release = self.release.lock().ok().and_then(|mut r| r.take());
            if let (Some(reached), Some(release)) = (reached, release) {
                let _ = reached.send(());
                let _ = release.recv();
            }
        }
        self.inner.publish_batch(plain, claims)
    }
    fn get(&self, key: &Key) -> spillpool::Result<Option<bytes::Bytes>> {
        self.inner.get(key)
    }
    fn last_under(&self, prefix: &str, len: usize) -> spillpool::Result<spillpool::Last> {
        self.inner.last_under(prefix, len)
    }
    fn delete(&self, key: &Key) -> spillpool::Result<bool> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> spillpool::Result<Vec<Key>> {
        self.inner.list(prefix)
    }
    fn usage(&self) -> spillpool::Result<spillpool::Usage> {
        self.inner.usage()
    }
    fn put_value(&self, key: &Key, value: &Value) -> spillpool::Result<()> {
        self.inner.put_value(key, value)
    }
    fn put_values(&self, items: Vec<(Key, Value)>) -> spillpool::Result<()> {
        self.inner.put_values(items)
    }
    fn get_value(&self, key: &Key) -> spillpool::Result<Option<Value>> {
        self.inner.get_value(key)
    }
    fn keeps_values(&self) -> bool {
        self.inner.keeps_values()
    }
    fn reads_by_value(&self) -> bool {
        self.inner.reads_by_value()
    }
    fn location(&self, key: &Key) -> String {
        self.inner.location(key)
    }
}

/// On mem, lmdb and file: after `setup`, runs `pending` (a write or an
/// append of symbol `s`) on a thread, holds it at its claim while `delete`
/// runs to the end, then lets it go. Hands `then` the pending operation's
/// result; afterwards every listed version reads and no tile is missing.
fn publish_held_through(
    setup: impl Fn(&spillpool::Library),
    pending: impl Fn(&spillpool::Library) -> spillpool::Result<spillpool::store::VersionInfo> + Sync,
    delete: impl Fn(&spillpool::Library) -> spillpool::Result<bool>,
    then: impl Fn(&str, &spillpool::Library, spillpool::store::VersionInfo),
) {
    let dir = tmp();
    for uri in [
        "mem://".to_string(),
        format!("lmdb://{}?sync=false", dir.path().display()),
        format!("file://{}?sync=false", dir.path().join("f").display()),
    ] {
        let (reached_tx, reached_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let gate = Arc::new(Gate {
            inner: ok("open", spillpool::open(&uri)),
            armed: std::sync::atomic::AtomicBool::new(false),
            reached: std::sync::Mutex::new(Some(reached_tx)),
            release: std::sync::Mutex::new(Some(release_rx)),
        });
        let store = ok("store", Store::from_backend(gate.clone(), TILED));
        let lib = ok("library", store.get_library("race", true));
        setup(&lib);
        gate.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let done = std::thread::scope(|scope| {
            let held = scope.spawn(|| pending(&lib));
            // It has read the symbol's state and waits to claim.
            reached_rx
                .recv()
                .unwrap_or_else(|e| panic!("{uri}: it never published: {e}"));
            assert!(ok("delete", delete(&lib)), "{uri}");
            let _ = release_tx.send(());
            held.join().unwrap_or_else(|_| panic!("{uri}: it panicked"))
        });
        then(&uri, &lib, ok("pending write", done));
        for v in ok("versions", lib.list_versions("s")) {
            let read = lib.read_with("s", &ReadOptions::default().as_of(v.version));
            let read = read.unwrap_or_else(|e| panic!("{uri}: version {}: {e}", v.version));
            assert_eq!(read.table.num_rows() as u64, v.rows, "{uri}");
        }
        let report = ok("check", store.check(&CheckOptions::default()));
        assert!(report.missing.is_empty(), "{uri}: {report}");
    }
}

/// Deleting the newest version while an append that read it as its base is
/// about to publish: the append must not publish a version naming the tiles
/// the delete removes. (It did: the delete listed the live versions before
/// the append's claim, then removed tiles the new version needed.)
#[test]
fn deleting_the_newest_version_under_a_pending_append_loses_nothing() {
    publish_held_through(
        |lib| {
            ok("write v0", lib.write("s", &numbers(50, 0)));
            ok("write v1", lib.write("s", &numbers(300, 1)));
        },
        |lib| lib.append("s", &numbers(20, 2)),
        |lib| lib.delete_version("s", 1),
        |uri, lib, info| {
            let latest = ok("read", lib.read("s"));
            assert_eq!(latest.info.version, info.version, "{uri}");
            let want = Table::try_new(
                numbers(50, 0).schema().clone(),
                [numbers(50, 0), numbers(20, 2)]
                    .iter()
                    .flat_map(|t| t.batches().to_vec())
                    .collect(),
            );
            assert_eq!(
                one_batch(&latest.table),
                one_batch(&ok("table", want)),
                "{uri}: the append is on version 0"
            );
        },
    );
}

/// Deleting a symbol while a write of it is about to publish: the write
/// lands after the delete, whole and readable on every backend. (The delete
/// removed every tile under the symbol, the writer's too, and its head, so
/// the new version named missing tiles, and on files could not be found.)
#[test]
fn deleting_a_symbol_under_a_pending_write_keeps_the_write_whole() {
    publish_held_through(
        |lib| {
            ok("write v0", lib.write("s", &numbers(50, 0)));
            ok("write v1", lib.write("s", &numbers(300, 1)));
        },
        |lib| lib.write("s", &numbers(120, 2)),
        |lib| lib.delete("s"),
        |uri, lib, info| {
            let latest = lib
                .read("s")
                .unwrap_or_else(|e| panic!("{uri}: the write landed but reads as {e}"));
            assert_eq!(latest.info.version, info.version, "{uri}");
            assert_eq!(
                one_batch(&latest.table),
                one_batch(&numbers(120, 2)),
                "{uri}"
            );
            assert_eq!(
                ok("versions", lib.list_versions("s")).len(),
                1,
                "{uri}: only the write is left"
            );
        },
    );
}

/// Deleting a symbol while an append to it is about to publish: the append
/// must not publish a version naming the tiles the delete removed. It finds
/// its inherited tiles gone, takes its version back and lands as the first
/// version of the symbol, holding only its own rows.
#[test]
fn deleting_a_symbol_under_a_pending_append_loses_nothing() {
    publish_held_through(
        |lib| {
            ok("write v0", lib.write("s", &numbers(50, 0)));
            ok("append v1", lib.append("s", &numbers(300, 1)));
        },
        |lib| lib.append("s", &numbers(20, 2)),
        |lib| lib.delete("s"),
        |uri, lib, info| {
            let latest = lib
                .read("s")
                .unwrap_or_else(|e| panic!("{uri}: the append landed but reads as {e}"));
            assert_eq!(latest.info.version, info.version, "{uri}");
            assert_eq!(
                one_batch(&latest.table),
                one_batch(&numbers(20, 2)),
                "{uri}: only the appended rows are left"
            );
        },
    );
}
