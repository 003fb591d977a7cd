//! Fault injection: storage that fails must give errors, and every value
//! acknowledged earlier must stay readable and correct.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use spillpool::backend::{FaultOp, FaultPlan, FaultyBackend};
use spillpool::conformance::pattern;
use spillpool::store::{CheckOptions, ReadOptions, StoreOptions};
use spillpool::{Backend, BackendExt, Error, FileBackend, Key, Pool, Store, Table, Value};

fn key(s: &str) -> Key {
    Key::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// What a key may hold after a sequence of operations, some of which failed:
/// a failed write may or may not have landed (a file backend can fail after
/// its rename), so a key can have several acceptable values.
type Model = BTreeMap<String, Vec<Option<u64>>>;

/// Random puts, overwrites, gets and deletes against `b` while `plan` fails
/// some of them; then, with faults off, every key holds an acceptable value
/// and no other key exists.
fn random_ops_keep_acknowledged_values(b: &dyn Backend, plan: &FaultPlan, seed: u64) -> (u64, u64) {
    let mut model: Model = BTreeMap::new();
    let mut s = seed | 1;
    let mut errors = 0;
    let ops = 400;
    for _ in 0..ops {
        let k = format!("m/{}", xorshift(&mut s) % 24);
        let accept = model.entry(k.clone()).or_insert_with(|| vec![None]);
        match xorshift(&mut s) % 10 {
            0..=4 => {
                let v = xorshift(&mut s) % 1000;
                let value = Value::Blob(pattern(100 + (v as usize) * 37, v));
                match b.put_value(&key(&k), &value) {
                    Ok(()) => *accept = vec![Some(v)],
                    Err(_) => {
                        errors += 1;
                        accept.push(Some(v));
                    }
                }
            }
            5..=7 => match b.get_value(&key(&k)) {
                Ok(got) => {
                    let seen = got.map(|g| g.as_blob().cloned());
                    let ok = accept.iter().any(|a| match (a, &seen) {
                        (None, None) => true,
                        (Some(v), Some(Some(bytes))) => {
                            *bytes == pattern(100 + (*v as usize) * 37, *v)
                        }
                        _ => false,
                    });
                    assert!(ok, "{b}: {k} read {seen:?}, acceptable {accept:?}");
                    // What was read is now the only possibility.
                    if let Some(Some(bytes)) = seen {
                        accept.retain(|a| {
                            a.is_some_and(|v| bytes == pattern(100 + (v as usize) * 37, v))
                        });
                    } else {
                        *accept = vec![None];
                    }
                }
                Err(e) => {
                    errors += 1;
                    assert!(
                        e.to_string().contains("injected"),
                        "{b}: unexpected error {e}"
                    );
                }
            },
            _ => match b.delete(&key(&k)) {
                Ok(_) => *accept = vec![None],
                Err(_) => {
                    errors += 1;
                    accept.push(None);
                }
            },
        }
    }
    plan.set_enabled(false);
    for (k, accept) in &model {
        let got = b
            .get_value(&key(k))
            .unwrap_or_else(|e| panic!("{b}: {k}: {e}"));
        let seen = got.map(|g| g.as_blob().cloned().unwrap_or_default());
        let ok = accept.iter().any(|a| match (a, &seen) {
            (None, None) => true,
            (Some(v), Some(bytes)) => *bytes == pattern(100 + (*v as usize) * 37, *v),
            _ => false,
        });
        assert!(
            ok,
            "{b}: after faults, {k} holds {:?}, acceptable {accept:?}",
            seen.map(|b| b.len())
        );
    }
    let listed = b.list("m/").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        listed.iter().all(|k| model.contains_key(k.as_str())),
        "{b}: unknown keys {listed:?}"
    );
    (ops, errors)
}

fn each_backend(dir: &std::path::Path) -> Vec<Arc<dyn Backend>> {
    vec![
        spillpool::open("mem://").unwrap_or_else(|e| panic!("{e}")),
        spillpool::open(&format!("file://{}", dir.join("f").display()))
            .unwrap_or_else(|e| panic!("{e}")),
        spillpool::open(&format!("lmdb://{}", dir.join("l").display()))
            .unwrap_or_else(|e| panic!("{e}")),
    ]
}

#[test]
fn failed_operations_leave_every_acknowledged_value_intact() {
    let dir = tmp();
    for (i, inner) in each_backend(dir.path()).into_iter().enumerate() {
        let plan = Arc::new(
            FaultPlan::new()
                .fail_randomly(FaultOp::Write, 0.2, 11 + i as u64)
                .fail_every(FaultOp::Read, 7)
                .fail_every(FaultOp::Delete, 3),
        );
        let b = FaultyBackend::new(inner, Arc::clone(&plan));
        let (ops, errors) = random_ops_keep_acknowledged_values(&b, &plan, 42 + i as u64);
        eprintln!("faults: {b}: {errors} faults injected over {ops} operations, 0 values lost");
        assert!(
            errors > 20 && plan.injected() == errors,
            "{b}: {errors} errors, {} injected",
            plan.injected()
        );
    }
}

/// Faults inside the file backend itself: after writing, at fsync, at rename.
#[test]
fn file_backend_faults_at_write_and_rename_keep_old_values() {
    let dir = tmp();
    let plan = Arc::new(
        FaultPlan::new()
            .fail_randomly(FaultOp::Write, 0.15, 3)
            .fail_randomly(FaultOp::Rename, 0.15, 5)
            .fail_every(FaultOp::Delete, 4),
    );
    let b = FileBackend::open(vec![dir.path().to_path_buf()], true)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_faults(Arc::clone(&plan));
    let (ops, errors) = random_ops_keep_acknowledged_values(&b, &plan, 9);
    eprintln!(
        "faults: file backend internals: {errors} faults over {ops} operations, 0 values lost"
    );
    assert!(errors > 20, "{errors}");
    // No temporary file is left behind by a failed write.
    let tmp_files = std::fs::read_dir(dir.path().join(".tmp"))
        .map(|d| d.count())
        .unwrap_or(99);
    assert_eq!(tmp_files, 0);
}

/// After a failed fsync the kernel may have dropped the dirty pages, so the
/// tier refuses writes (saying why) until reopened; reads keep working.
#[test]
fn a_failed_fsync_poisons_the_file_tier_until_reopened() {
    let dir = tmp();
    let plan = Arc::new(FaultPlan::new().fail_nth(FaultOp::Fsync, 5));
    let b = FileBackend::open(vec![dir.path().to_path_buf()], true)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_faults(Arc::clone(&plan));
    let v = |i: u64| Value::Blob(pattern(5000, i));
    // Each put fsyncs the file and its directory: the 5th fsync is the 3rd put's file.
    b.put_value(&key("a"), &v(1))
        .unwrap_or_else(|e| panic!("{e}"));
    b.put_value(&key("b"), &v(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = b.put_value(&key("c"), &v(3)).err();
    assert!(
        matches!(&err, Some(Error::Io { .. } | Error::TierFull { .. })),
        "{err:?}"
    );
    for k in ["d", "a"] {
        match b.put_value(&key(k), &v(4)).err() {
            Some(e @ Error::Poisoned { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("fsync") && msg.contains("reopen"), "{msg}");
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert!(matches!(
        b.delete(&key("a")).err(),
        Some(Error::Poisoned { .. })
    ));
    // Reads still work, and show only acknowledged values.
    assert_eq!(
        b.fetch_value(&key("a"))
            .ok()
            .and_then(|x| x.as_blob().cloned()),
        Some(pattern(5000, 1))
    );
    assert!(b.get_value(&key("c")).ok().flatten().is_none());
    drop(b);
    let reopened =
        FileBackend::open(vec![dir.path().to_path_buf()], true).unwrap_or_else(|e| panic!("{e}"));
    reopened
        .put_value(&key("d"), &v(4))
        .unwrap_or_else(|e| panic!("after reopen: {e}"));
    assert_eq!(
        reopened
            .fetch_value(&key("b"))
            .ok()
            .and_then(|x| x.as_blob().cloned()),
        Some(pattern(5000, 2))
    );
}

/// The pool spilling to a disk tier that fails: eviction works around
/// failed writes while it can, puts fail clearly once it cannot, and every
/// value a put acknowledged reads back right.
#[test]
fn the_pool_over_a_failing_disk_tier_loses_nothing_acknowledged() {
    let dir = tmp();
    let plan = Arc::new(
        FaultPlan::new()
            .fail_every(FaultOp::Write, 3)
            .fail_every(FaultOp::Read, 5),
    );
    let disk: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
        spillpool::open(&format!("file://{}?sync=false", dir.path().display()))
            .unwrap_or_else(|e| panic!("{e}")),
        Arc::clone(&plan),
    ));
    let pool = Pool::builder()
        .memory_limit(4 << 20)
        .disk_backend(disk)
        .background_spill(false)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut kept = Vec::new();
    // Every third spill write fails: eviction picks other values instead.
    for i in 0..40u64 {
        let v = pattern(512 << 10, i);
        let r = pool
            .put(Value::Blob(v.clone()))
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        kept.push((r, v));
    }
    assert!(plan.injected() > 0, "no write fault was hit");
    // The disk dies: once memory is full, puts fail and say why.
    plan.fail_all(FaultOp::Write, true);
    let mut failed_puts = 0;
    for i in 40..60u64 {
        let v = pattern(512 << 10, i);
        match pool.put(Value::Blob(v.clone())) {
            Ok(r) => kept.push((r, v)),
            Err(e) => {
                failed_puts += 1;
                assert!(e.to_string().contains("injected"), "{e}");
            }
        }
    }
    assert!(
        failed_puts > 0,
        "puts beyond memory must fail when the disk is dead"
    );
    let mut read_errors = 0;
    for (r, v) in &kept {
        match pool.get(r) {
            Ok(g) => assert_eq!(g.as_blob(), Some(v)),
            Err(e) => {
                read_errors += 1;
                assert!(e.to_string().contains("injected"), "{e}");
            }
        }
    }
    assert!(read_errors > 0, "no read fault was hit");
    plan.fail_all(FaultOp::Write, false);
    plan.set_enabled(false);
    for (i, (r, v)) in kept.iter().enumerate() {
        let g = pool
            .get(r)
            .unwrap_or_else(|e| panic!("value {i} after faults: {e}"));
        assert_eq!(g.as_blob(), Some(v), "value {i}");
    }
}

fn table(rows: i64, seed: i64) -> Table {
    let a: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i * seed)));
    Table::from(RecordBatch::try_from_iter([("a", a)]).unwrap_or_else(|e| panic!("{e}")))
}

/// The store on failing storage: every acknowledged version reads back;
/// failed writes leave at most orphans, which check finds and repair removes.
#[test]
fn the_store_over_failing_storage_keeps_every_acknowledged_version() {
    let dir = tmp();
    for uri in [
        format!("lmdb://{}", dir.path().join("l").display()),
        format!("file://{}", dir.path().join("f").display()),
    ] {
        let plan = Arc::new(
            FaultPlan::new()
                .fail_randomly(FaultOp::Write, 0.1, 77)
                .fail_every(FaultOp::Read, 23),
        );
        let inner = spillpool::open(&uri).unwrap_or_else(|e| panic!("{e}"));
        let backend: Arc<dyn Backend> = Arc::new(FaultyBackend::new(inner, Arc::clone(&plan)));
        let opts = StoreOptions {
            rows_per_segment: 50,
            batch_bytes: 1000,
            ..StoreOptions::default()
        };
        let store = Store::from_backend(backend, opts).unwrap_or_else(|e| panic!("{e}"));
        plan.set_enabled(false);
        let lib = store.create_library("l").unwrap_or_else(|e| panic!("{e}"));
        plan.set_enabled(true);
        let mut acked: Vec<(u64, i64)> = Vec::new();
        let mut failures = 0;
        for i in 1..=60i64 {
            match lib.write("s", &table(120 + i, i)) {
                Ok(info) => acked.push((info.version, i)),
                Err(e) => {
                    failures += 1;
                    let msg = e.to_string();
                    assert!(
                        msg.contains("injected") || msg.contains("missing"),
                        "{uri}: {msg}"
                    );
                }
            }
        }
        plan.set_enabled(false);
        assert!(
            failures > 3 && acked.len() > 10,
            "{uri}: {failures} failures, {} acked",
            acked.len()
        );
        for (v, i) in &acked {
            let got = lib
                .read_with("s", &ReadOptions::default().as_of(*v))
                .unwrap_or_else(|e| panic!("{uri}: acknowledged version {v}: {e}"));
            let expect = table(120 + i, *i);
            assert_eq!(
                got.table
                    .batches()
                    .iter()
                    .map(|b| b.num_rows())
                    .sum::<usize>(),
                expect.num_rows()
            );
            let col = arrow_select::concat::concat_batches(got.table.schema(), got.table.batches())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(col, expect.batches()[0], "{uri}: version {v}");
        }
        eprintln!(
            "faults: store on {uri}: {} faults injected, {failures} writes failed, {} acknowledged versions intact",
            plan.injected(),
            acked.len()
        );
        let report = store
            .check(&CheckOptions {
                repair: true,
                min_age: Duration::ZERO,
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.missing.is_empty() && report.unreadable.is_empty(),
            "{uri}: {report}"
        );
        let after = store
            .check(&CheckOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            after.is_clean() && after.orphans.is_empty(),
            "{uri}: {after}"
        );
    }
}

/// Slow storage changes timing, never results.
#[test]
fn latency_changes_nothing_but_time() {
    let plan = Arc::new(FaultPlan::new().with_latency(Duration::from_millis(1)));
    let b = FaultyBackend::new(
        spillpool::open("mem://").unwrap_or_else(|e| panic!("{e}")),
        Arc::clone(&plan),
    );
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let b = &b;
            s.spawn(move || {
                for i in 0..25u64 {
                    let k = key(&format!("t{t}/{i}"));
                    b.put_value(&k, &Value::Blob(pattern(1000, t * 100 + i)))
                        .unwrap_or_else(|e| panic!("{e}"));
                    let got = b.fetch_value(&k).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(got.as_blob(), Some(&pattern(1000, t * 100 + i)));
                }
            });
        }
    });
    assert_eq!(plan.count(FaultOp::Write), 100);
    assert_eq!(plan.count(FaultOp::Read), 100);
    assert_eq!(plan.injected(), 0);
}
