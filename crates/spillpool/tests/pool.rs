//! The pool: bounds, spilling, restoring, policies, explicit moves, failures.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use spillpool::conformance::{mapped_file_at, pattern};
use spillpool::pool::{LOCK_FILE, Mru, Pool, Tier};
use spillpool::{Error, Table, Value};

const MIB: u64 = 1 << 20;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

fn ok<T>(r: spillpool::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn blob(len: u64, seed: u64) -> Value {
    Value::Blob(pattern(len as usize, seed))
}

fn table(rows: usize, seed: i64) -> Table {
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(
                (0..rows as i64).map(|i| i * seed),
            )),
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 + seed as f64),
            )),
        ),
        (
            "s",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("{seed}-{i}")),
            )),
        ),
    ];
    Table::from(RecordBatch::try_from_iter(cols).unwrap_or_else(|e| panic!("{e}")))
}

/// Value files (not lock or temporary files) under `dir`, with their sizes.
fn value_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(value_files(&e.path()));
        } else {
            out.push((name, len));
        }
    }
    out
}

#[test]
fn working_set_ten_times_memory_reads_back_identical_with_both_policies() {
    for mru in [false, true] {
        let dir = tmp();
        let mut builder = Pool::builder()
            .memory_limit(8 * MIB)
            .spill_dirs([dir.path()]);
        if mru {
            builder = builder.policy(Mru);
        }
        let pool = ok(builder.build());
        let mut refs = Vec::new();
        for i in 0..80 {
            let value = if i % 2 == 0 {
                blob(MIB, i)
            } else {
                Value::Table(table(20_000, i as i64))
            };
            refs.push((ok(pool.put(value.clone())), value));
            let s = pool.stats();
            assert!(
                s.memory_used <= s.memory_limit,
                "bound broken after put {i}: {s}"
            );
        }
        let s = pool.stats();
        assert!(s.spills > 40, "{s}");
        // Read back in a scrambled order.
        for k in 0..refs.len() {
            let (r, want) = &refs[(k * 37) % refs.len()];
            let got = ok(pool.get(r));
            assert_eq!(&*got, want, "value {} differs (mru={mru})", r.id());
            let s = pool.stats();
            assert!(s.memory_used <= s.memory_limit, "{s}");
        }
        assert!(pool.stats().restores > 0);
    }
}

#[test]
fn lru_and_mru_evict_different_values() {
    for (mru, expect_resident) in [(false, vec![5, 6, 7, 8]), (true, vec![1, 2, 3, 8])] {
        let mut b = Pool::builder()
            .memory_limit(4 * MIB)
            .watermarks(1.0, 1.0)
            .background_spill(false);
        if mru {
            b = b.policy(Mru);
        }
        let pool = ok(b.build());
        let refs: Vec<_> = (1..=8).map(|i| ok(pool.put(blob(MIB, i)))).collect();
        let resident: Vec<u64> = (1..=8)
            .filter(|&i| ok(pool.tier(&refs[i as usize - 1])) == Tier::Memory)
            .collect();
        assert_eq!(resident, expect_resident, "mru={mru}");
    }
}

#[test]
fn stats_agree_with_the_disk_and_drop_leaves_nothing() {
    let dir = tmp();
    let spill = dir.path().join("spill");
    {
        let pool = ok(Pool::builder()
            .memory_limit(4 * MIB)
            .spill_dirs([&spill])
            .build());
        let refs: Vec<_> = (0..20).map(|i| ok(pool.put(blob(MIB / 2, i)))).collect();
        ok(pool.shrink_to(2 * MIB));
        let s = pool.stats();
        let files = value_files(&spill);
        assert_eq!(s.entries_on_disk as usize, files.len(), "{s}");
        assert_eq!(
            s.disk_used,
            files.iter().map(|(_, l)| l).sum::<u64>(),
            "{s}"
        );
        assert_eq!(s.entries, 20);
        assert_eq!(
            s.entries_in_memory + s.entries_on_disk,
            20,
            "nothing is in both tiers yet: {s}"
        );
        assert_eq!(s.memory_used, s.entries_in_memory * (MIB / 2));
        assert!(spill.join(LOCK_FILE).exists());
        drop(refs);
        let s = pool.stats();
        assert_eq!(
            (s.entries, s.memory_used, s.disk_used, s.entries_on_disk),
            (0, 0, 0, 0),
            "{s}"
        );
        assert!(value_files(&spill).is_empty());
    }
    assert!(!spill.join(LOCK_FILE).exists(), "lock file left behind");
    assert!(value_files(&spill).is_empty());
}

#[test]
fn default_spill_directory_is_private_and_removed_on_drop() {
    let pool = ok(Pool::builder().memory_limit(MIB).build());
    let dir = pool.spill_dirs()[0].clone();
    assert!(dir.starts_with(std::env::temp_dir()));
    let _refs: Vec<_> = (0..8).map(|i| ok(pool.put(blob(MIB / 2, i)))).collect();
    assert!(!value_files(&dir).is_empty());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o700);
    drop(pool);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn dropping_the_last_ref_frees_memory_and_disk() {
    let pool = ok(Pool::builder()
        .memory_limit(2 * MIB)
        .background_spill(false)
        .build());
    let a = ok(pool.put(blob(MIB, 1)));
    let b = ok(pool.put(blob(MIB, 2)));
    ok(pool.move_to_disk(&b));
    let a2 = a.clone();
    drop(a);
    assert_eq!(pool.stats().memory_used, MIB, "a clone still holds it");
    drop(a2);
    assert_eq!(pool.stats().memory_used, 0);
    assert!(pool.stats().disk_used > 0);
    drop(b);
    let s = pool.stats();
    assert_eq!((s.disk_used, s.entries), (0, 0), "{s}");
    assert!(value_files(&pool.spill_dirs()[0]).is_empty());
}

#[test]
fn pinned_values_are_never_evicted() {
    let pool = ok(Pool::builder().memory_limit(4 * MIB).build());
    let pinned = ok(pool.put(blob(MIB, 0)));
    let guard = ok(pool.get(&pinned));
    let others: Vec<_> = (1..30).map(|i| ok(pool.put(blob(MIB, i)))).collect();
    ok(pool.shrink_to(0));
    assert_eq!(ok(pool.tier(&pinned)), Tier::Memory);
    assert_eq!(pool.stats().memory_used, MIB);
    drop(guard);
    ok(pool.shrink_to(0));
    assert_eq!(ok(pool.tier(&pinned)), Tier::Disk);
    assert_eq!(&*ok(pool.get(&others[0])), &blob(MIB, 1));
}

#[test]
fn everything_pinned_sends_new_values_to_disk_without_breaking_the_bound() {
    let pool = ok(Pool::builder()
        .memory_limit(2 * MIB)
        .background_spill(false)
        .build());
    let a = ok(pool.put(blob(MIB, 1)));
    let b = ok(pool.put(blob(MIB, 2)));
    let (_ga, _gb) = (ok(pool.get(&a)), ok(pool.get(&b)));
    let c = ok(pool.put(blob(MIB, 3)));
    assert_eq!(ok(pool.tier(&c)), Tier::Disk);
    assert!(pool.stats().memory_used <= 2 * MIB);
    assert_eq!(&*ok(pool.get(&c)), &blob(MIB, 3));
}

#[test]
fn a_value_larger_than_memory_goes_straight_to_disk() {
    let pool = ok(Pool::builder().memory_limit(MIB).build());
    let small = ok(pool.put(blob(1000, 1)));
    let big = ok(pool.put(blob(3 * MIB, 2)));
    assert_eq!(ok(pool.tier(&big)), Tier::Disk);
    assert_eq!(
        ok(pool.tier(&small)),
        Tier::Memory,
        "a big put must not evict small values"
    );
    let got = ok(pool.get(&big));
    assert_eq!(&*got, &blob(3 * MIB, 2));
    assert_eq!(
        ok(pool.tier(&big)),
        Tier::Disk,
        "not cached: it would break the bound"
    );
    assert!(pool.stats().memory_used <= MIB);
}

#[test]
fn restored_values_are_mapped_and_evicting_them_again_costs_no_write() {
    let pool = ok(Pool::builder().memory_limit(64 * MIB).build());
    let t = table(100_000, 3);
    let r = ok(pool.put(Value::Table(t.clone())));
    ok(pool.move_to_disk(&r));
    assert_eq!(ok(pool.tier(&r)), Tier::Disk);
    let spills = pool.stats().spills;
    {
        let got = ok(pool.get(&r));
        assert_eq!(got.as_table(), Some(&t));
        let col = got
            .as_table()
            .map(|t| t.batches()[0].column(0).to_data().buffers()[0].as_ptr() as usize);
        let mapped = col.and_then(mapped_file_at).unwrap_or_default();
        assert!(
            mapped.starts_with(&pool.spill_dirs()[0].display().to_string()),
            "restored buffer not mapped from the spill file: {mapped:?}"
        );
    }
    assert_eq!(ok(pool.tier(&r)), Tier::Both);
    ok(pool.shrink_to(0));
    let s = pool.stats();
    assert_eq!(s.spills, spills, "a clean value was written again");
    assert_eq!(s.clean_evictions, 1);
    assert_eq!((s.restores, s.misses), (1, 1));
    assert_eq!(ok(pool.get(&r)).as_table(), Some(&t));
}

#[test]
fn copy_move_save_and_retain() {
    let dir = tmp();
    let spill = dir.path().join("spill");
    let saved_table = dir.path().join("t.arrow");
    let saved_blob = dir.path().join("b.bin");
    let t = table(1000, 7);
    let retained;
    {
        let pool = ok(Pool::builder().spill_dirs([&spill]).build());
        let rt = ok(pool.put(Value::Table(t.clone())));
        let rb = ok(pool.put(blob(5000, 9)));
        ok(pool.copy_to_disk(&rt));
        assert_eq!(ok(pool.tier(&rt)), Tier::Both);
        ok(pool.move_to_disk(&rb));
        assert_eq!(ok(pool.tier(&rb)), Tier::Disk);
        ok(pool.save_to(&rt, &saved_table));
        ok(pool.save_to(&rb, &saved_blob));
        retained = ok(pool.retain(&rb));
        ok(pool.delete(&rt));
        assert!(matches!(pool.get(&rt), Err(Error::NotFound { .. })));
    }
    // Saved files belong to the user; the retained copy outlives the pool.
    let file = std::fs::File::open(&saved_table).unwrap_or_else(|e| panic!("{e}"));
    let reader =
        arrow_ipc::reader::FileReader::try_new(file, None).unwrap_or_else(|e| panic!("{e}"));
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batches, t.batches());
    assert_eq!(
        std::fs::read(&saved_blob).ok().map(Bytes::from),
        blob(5000, 9).as_blob().cloned()
    );
    let backend = ok(spillpool::open(&retained.backend));
    let kept = ok(backend.get(&retained.key));
    assert!(kept.is_some(), "retained copy was deleted");
    let remaining = value_files(&spill);
    assert_eq!(
        remaining.len(),
        1,
        "only the retained copy may remain: {remaining:?}"
    );
}

#[test]
fn refs_of_other_pools_and_deleted_refs_are_errors() {
    let (p1, p2) = (ok(Pool::builder().build()), ok(Pool::builder().build()));
    let r = ok(p1.put(blob(10, 1)));
    assert!(matches!(p2.get(&r), Err(Error::NotFound { .. })));
    let clone = r.clone();
    ok(p1.delete(&r));
    assert!(matches!(p1.get(&clone), Err(Error::NotFound { .. })));
    assert!(matches!(p1.delete(&clone), Err(Error::NotFound { .. })));
}

#[test]
fn two_pools_cannot_share_a_spill_directory() {
    let dir = tmp();
    let _first = ok(Pool::builder().spill_dirs([dir.path()]).build());
    match Pool::builder().spill_dirs([dir.path()]).build() {
        Err(Error::InvalidConfig { reason, .. }) => {
            assert!(reason.contains("in use by another pool"), "{reason}");
            let pid = std::process::id().to_string();
            assert!(reason.contains(&format!("(process {pid})")), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

/// Puts 1 MiB blobs until one fails; returns those kept (with their seeds) and the error.
fn fill_until_full(pool: &Pool, most: u64) -> (Vec<(spillpool::Ref, u64)>, Option<Error>) {
    let mut kept = Vec::new();
    for i in 0..most {
        match pool.put(blob(MIB, i)) {
            Ok(r) => kept.push((r, i)),
            Err(e) => return (kept, Some(e)),
        }
    }
    (kept, None)
}

#[test]
fn a_full_disk_bound_fails_put_clearly_and_loses_nothing() {
    let pool = ok(Pool::builder()
        .memory_limit(2 * MIB)
        .disk_limit(3 * MIB)
        .build());
    let (mut kept, failure) = fill_until_full(&pool, 20);
    match failure {
        Some(Error::TierFull { tier, reason }) => {
            assert!(tier.contains("disk tier"), "{tier}");
            assert!(reason.contains("3.00 MiB"), "{reason}");
        }
        other => panic!("expected TierFull, got {other:?}"),
    }
    for (r, i) in &kept {
        assert_eq!(&*ok(pool.get(r)), &blob(MIB, *i), "value {i} lost");
    }
    // Freeing space makes the pool usable again.
    kept.truncate(1);
    let again = ok(pool.put(blob(MIB, 99)));
    assert_eq!(&*ok(pool.get(&again)), &blob(MIB, 99));
}

/// Real ENOSPC: the spill directory on a 4 MiB tmpfs (needs root; skipped otherwise).
#[test]
fn a_full_file_system_fails_put_clearly_and_loses_nothing() {
    spillpool::conformance::with_tmpfs("4m", |dir| {
        let pool = ok(Pool::builder()
            .memory_limit(2 * MIB)
            .spill_dirs([dir.join("s")])
            .build());
        let (mut kept, failure) = fill_until_full(&pool, 30);
        match failure {
            Some(Error::TierFull { tier, reason }) => {
                assert!(
                    tier.contains("disk tier") && reason.contains("file system is full"),
                    "{tier}: {reason}"
                );
            }
            other => panic!("expected TierFull, got {other:?}"),
        }
        for (r, i) in &kept {
            assert_eq!(&*ok(pool.get(r)), &blob(MIB, *i), "value {i} lost");
        }
        kept.truncate(2);
        ok(pool.shrink_to(0));
        let again = ok(pool.put(blob(MIB, 77)));
        assert_eq!(&*ok(pool.get(&again)), &blob(MIB, 77));
    });
}

#[test]
fn a_corrupted_spill_file_is_an_error_naming_it() {
    let dir = tmp();
    let pool = ok(Pool::builder().spill_dirs([dir.path()]).build());
    let r = ok(pool.put(blob(100_000, 5)));
    let other = ok(pool.put(blob(100_000, 6)));
    ok(pool.move_to_disk(&r));
    let files = value_files(dir.path());
    let (name, _) = files.first().cloned().unwrap_or_default();
    let path = find(dir.path(), &name).unwrap_or_else(|| panic!("spill file {name} not found"));
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    bytes[70_000] ^= 1;
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    match pool.get(&r) {
        Err(e @ Error::Corrupt { .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()), "{e}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        &*ok(pool.get(&other)),
        &blob(100_000, 6),
        "other values unaffected"
    );
}

fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if e.file_name().to_string_lossy() == name {
            return Some(e.path());
        }
        if e.file_type().is_ok_and(|t| t.is_dir())
            && let Some(p) = find(&e.path(), name)
        {
            return Some(p);
        }
    }
    None
}

#[test]
fn many_threads_put_get_and_drop_at_once() {
    let dir = tmp();
    let pool = ok(Pool::builder()
        .memory_limit(3 * MIB)
        .spill_dirs([dir.path()])
        .build());
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let pool = &pool;
            s.spawn(move || {
                let mut mine: Vec<(spillpool::Ref, u64, u64)> = Vec::new();
                let mut rng = t * 7919 + 1;
                for i in 0..150u64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    match rng % 4 {
                        0 | 1 => {
                            let len = 10_000 + rng % 300_000;
                            let seed = t * 1000 + i;
                            mine.push((ok(pool.put(blob(len, seed))), len, seed));
                        }
                        2 if !mine.is_empty() => {
                            let (r, len, seed) = &mine[(rng as usize / 4) % mine.len()];
                            assert_eq!(&*ok(pool.get(r)), &blob(*len, *seed), "thread {t}");
                        }
                        _ if !mine.is_empty() => {
                            mine.swap_remove((rng as usize / 4) % mine.len());
                        }
                        _ => {}
                    }
                    let st = pool.stats();
                    assert!(st.memory_used <= st.memory_limit, "{st}");
                }
                for (r, len, seed) in &mine {
                    assert_eq!(&*ok(pool.get(r)), &blob(*len, *seed));
                }
            });
        }
    });
    let s = pool.stats();
    assert_eq!((s.entries, s.memory_used, s.disk_used), (0, 0, 0), "{s}");
    assert!(
        s.spills > 0 && s.restores > 0,
        "the test did not exercise spilling: {s}"
    );
    assert!(value_files(dir.path()).is_empty());
}

#[test]
fn stats_display_and_serialize() {
    let pool = ok(Pool::builder().memory_limit(MIB).build());
    let _r: Vec<_> = (0..4).map(|i| ok(pool.put(blob(MIB / 2, i)))).collect();
    let s = pool.stats();
    let text = s.to_string();
    for word in ["memory", "disk", "spilled", "restored", "hits", "lru"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
    let json = serde_json::to_value(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["memory_limit"], MIB);
    assert_eq!(json["entries"], 4);
    let keys: HashSet<&str> = json
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for k in [
        "memory_used",
        "disk_used",
        "disk_limit",
        "spills",
        "restores",
        "bytes_written",
        "bytes_read",
        "spill_seconds",
        "restore_seconds",
        "hits",
        "misses",
        "entries_in_memory",
        "entries_on_disk",
    ] {
        assert!(keys.contains(k), "{k}");
    }
}

#[test]
fn the_pool_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Pool>();
    check::<spillpool::Ref>();
    check::<spillpool::Guard>();
}

#[test]
fn a_custom_backend_can_be_the_disk_tier() {
    let dir = tmp();
    let lmdb = ok(spillpool::open(&format!(
        "lmdb://{}?sync=false",
        dir.path().display()
    )));
    let pool = ok(Pool::builder()
        .memory_limit(MIB)
        .disk_backend(Arc::clone(&lmdb))
        .build());
    let refs: Vec<_> = (0..6).map(|i| ok(pool.put(blob(MIB / 2, i)))).collect();
    assert!(ok(lmdb.usage()).keys > 0);
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(&*ok(pool.get(r)), &blob(MIB / 2, i as u64));
    }
    drop(refs);
    assert_eq!(ok(lmdb.usage()).keys, 0);
    let _ = Array::len(&Int64Array::from(vec![1]));
}
