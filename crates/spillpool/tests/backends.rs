//! Every backend against the conformance suite, plus what only some backends promise.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use spillpool::conformance::{self, mapped_file_at, pattern};
use spillpool::{
    Backend, BackendExt, Error, FileBackend, Key, LmdbBackend, MemBackend, ShmBackend, Table, Value,
};

fn key(s: &str) -> Key {
    Key::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn open(uri: &str) -> Arc<dyn Backend> {
    spillpool::open(uri).unwrap_or_else(|e| panic!("open {uri}: {e}"))
}

/// A unique shared-memory namespace, destroyed when dropped.
struct Ns(String);
impl Ns {
    fn new(tag: &str) -> Self {
        Ns(format!(
            "test-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ))
    }
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = ShmBackend::destroy_namespace(&self.0);
    }
}
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[test]
fn mem_conforms() {
    conformance::run_all(&MemBackend::new(), "c/");
}

#[test]
fn file_conforms() {
    let dir = tmp();
    conformance::run_all(&*open(&format!("file://{}", dir.path().display())), "c/");
}

#[test]
fn file_with_several_roots_conforms_and_spreads() {
    let (a, b) = (tmp(), tmp());
    let uri = format!(
        "file://{}?root={}&sync=false",
        a.path().display(),
        b.path().display()
    );
    let backend = open(&uri);
    conformance::run_all(&*backend, "c/");
    let count = |d: &std::path::Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    assert!(
        count(a.path()) > 10 && count(b.path()) > 10,
        "keys not spread over both roots"
    );
}

#[test]
fn lmdb_conforms() {
    let dir = tmp();
    conformance::run_all(&*open(&format!("lmdb://{}", dir.path().display())), "c/");
}

/// The ordered backends answer `last_under` exactly (the store's newest
/// version in one search), also through filters; the others may decline.
#[test]
fn ordered_backends_find_the_last_key_under_a_prefix() {
    let dir = tmp();
    let lmdb = format!("lmdb://{}", dir.path().display());
    let filtered = format!("lmdb://{}/f?compression=zstd", dir.path().display());
    let questions = 11;
    for uri in ["mem://", lmdb.as_str(), filtered.as_str()] {
        let b = open(uri);
        // All but the one after too many other keys under the prefix.
        let exact = conformance::check_last_under(&*b, "last/");
        assert_eq!(exact, questions - 1, "{uri}: exact answers");
    }
    let files = tmp();
    let file = open(&format!("file://{}", files.path().display()));
    conformance::check_last_under(&*file, "last/");
}

#[test]
fn shm_conforms() {
    let ns = Ns::new("conf");
    conformance::run_all(&*open(&format!("shm://{}", ns.0)), "c/");
}

/// A table with one large i64 column: its values buffer must point into the mapping of `file`.
fn assert_zero_copy(backend: &dyn Backend, mapped: &str) {
    let k = key("zero/copy");
    let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1_000_000));
    let batch = RecordBatch::try_from_iter([("x", column)]).unwrap_or_else(|e| panic!("{e}"));
    backend
        .put_value(&k, &Value::Table(Table::from(batch.clone())))
        .unwrap_or_else(|e| panic!("{e}"));
    let value = backend.fetch_value(&k).unwrap_or_else(|e| panic!("{e}"));
    let table = value.as_table().unwrap_or_else(|| panic!("not a table"));
    assert_eq!(table.batches(), &[batch]);
    let values = table.batches()[0].column(0).to_data().buffers()[0].clone();
    let addr = values.as_ptr() as usize;
    assert_eq!(addr % 64, 0, "{backend}: column buffer not 64-byte aligned");
    let file = mapped_file_at(addr)
        .unwrap_or_else(|| panic!("{backend}: buffer at {addr:#x} is not in a file mapping"));
    assert!(
        file.contains(mapped),
        "{backend}: buffer lies in {file}, expected {mapped}"
    );

    backend
        .put_value(&k, &Value::Blob(pattern(1 << 20, 3)))
        .unwrap_or_else(|e| panic!("{e}"));
    let blob = backend.fetch_value(&k).unwrap_or_else(|e| panic!("{e}"));
    let blob_addr = blob.as_blob().map(|b| b.as_ptr() as usize).unwrap_or(0);
    let file = mapped_file_at(blob_addr).unwrap_or_default();
    assert!(
        file.contains(mapped),
        "{backend}: blob lies in {file:?}, expected {mapped}"
    );
    // The table read earlier stays valid after its key was overwritten.
    assert_eq!(table.batches()[0].column(0).len(), 1_000_000);
}

#[test]
fn file_reads_are_zero_copy() {
    let dir = tmp();
    let files =
        FileBackend::open(vec![dir.path().to_path_buf()], false).unwrap_or_else(|e| panic!("{e}"));
    let path = files.path_of(&key("zero/copy")).display().to_string();
    assert_zero_copy(&files, &path);
}

#[test]
fn lmdb_reads_are_zero_copy() {
    let dir = tmp();
    let db = LmdbBackend::open(dir.path(), false, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
    let data = db.path().join("data.mdb").display().to_string();
    assert_zero_copy(&db, &data);
}

#[test]
fn shm_reads_are_zero_copy() {
    let ns = Ns::new("zc");
    let shm = ShmBackend::open(&ns.0).unwrap_or_else(|e| panic!("{e}"));
    let path = shm.path_of(&key("zero/copy")).display().to_string();
    assert!(path.starts_with("/dev/shm/"));
    assert_zero_copy(&shm, &path);
}

#[test]
fn mem_get_shares_the_stored_bytes() {
    let mem = MemBackend::new();
    let k = key("k");
    mem.put_value(&k, &Value::Blob(pattern(1 << 20, 1)))
        .unwrap_or_else(|e| panic!("{e}"));
    let a = mem.fetch_value(&k).unwrap_or_else(|e| panic!("{e}"));
    let b = mem.fetch_value(&k).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a.as_blob().map(|x| x.as_ptr()),
        b.as_blob().map(|x| x.as_ptr())
    );
}

#[test]
fn mem_keeps_values_without_copying_them() {
    let mem = MemBackend::new();
    assert!(mem.keeps_values());
    let blob = pattern(4 << 20, 3);
    let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100_000));
    let batch =
        RecordBatch::try_from_iter([("n", Arc::clone(&column))]).unwrap_or_else(|e| panic!("{e}"));
    let table = Table::from(batch);
    mem.put_values(vec![
        (key("blob"), Value::Blob(blob.clone())),
        (key("table"), Value::Table(table.clone())),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    // The very memory put is what comes back: nothing was encoded or copied.
    let back = mem
        .fetch_value(&key("blob"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.as_blob().map(|b| b.as_ptr()), Some(blob.as_ptr()));
    let back = mem
        .fetch_value(&key("table"))
        .unwrap_or_else(|e| panic!("{e}"));
    let got = back.as_table().map(|t| t.batches()[0].column(0).to_data());
    assert_eq!(
        got.map(|d| d.buffers()[0].as_ptr()),
        Some(column.to_data().buffers()[0].as_ptr())
    );
    // A raw `get` still returns a frame any reader can decode.
    let frame = mem.get(&key("table")).unwrap_or_else(|e| panic!("{e}"));
    let decoded = frame
        .map(|f| spillpool::frame::decode(f, &key("table"), "test"))
        .transpose()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded, Some(Value::Table(table)));
    let usage = mem.usage().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(usage.keys, 2);
    assert!(usage.bytes >= (4 << 20) + 800_000, "{usage:?}");
    // A frame put as bytes next to kept values reads back through both paths.
    let encoded =
        spillpool::frame::encode(&Value::from(vec![9u8; 10])).unwrap_or_else(|e| panic!("{e}"));
    mem.put(&key("frame"), encoded)
        .unwrap_or_else(|e| panic!("{e}"));
    let v = mem
        .fetch_value(&key("frame"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.as_blob().map(|b| b.to_vec()), Some(vec![9u8; 10]));
}

#[test]
fn filtered_mem_does_not_keep_values() {
    let zstd = open("mem://?compression=zstd:1");
    assert!(!zstd.keeps_values());
    zstd.put_value(&key("k"), &Value::from(vec![0u8; 1 << 20]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        zstd.fetch_value(&key("k"))
            .unwrap_or_else(|e| panic!("{e}"))
            .size(),
        1 << 20
    );
}

#[test]
fn mem_names_are_shared_within_the_process() {
    let name = format!("mem://shared-{}", rand_suffix());
    let (a, b) = (open(&name), open(&name));
    a.put_value(&key("k"), &Value::from(vec![1u8]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(b.get(&key("k")).unwrap_or_else(|e| panic!("{e}")).is_some());
    assert!(
        open("mem://")
            .get(&key("k"))
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}

#[test]
fn lmdb_map_grows_by_itself() {
    let dir = tmp();
    let db = open(&format!(
        "lmdb://{}?sync=false&map_size=1MiB",
        dir.path().display()
    ));
    let data: Vec<_> = (0..24).map(|i| pattern(1 << 20, i)).collect();
    for (i, d) in data.iter().enumerate() {
        db.put_value(&key(&format!("big/{i}")), &Value::Blob(d.clone()))
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    for (i, d) in data.iter().enumerate() {
        let back = db
            .fetch_value(&key(&format!("big/{i}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.as_blob(), Some(d));
    }
}

#[test]
fn lmdb_growth_waits_for_borrowed_reads_and_says_so() {
    let dir = tmp();
    let db = LmdbBackend::open(dir.path(), false, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
    db.put_value(&key("a"), &Value::Blob(pattern(100_000, 1)))
        .unwrap_or_else(|e| panic!("{e}"));
    let held = db.get(&key("a")).unwrap_or_else(|e| panic!("{e}"));
    // The gate cannot be taken while `held` borrows the map: growth must fail cleanly…
    let err = std::thread::scope(|s| {
        s.spawn(|| db.put_value(&key("b"), &Value::Blob(pattern(4 << 20, 2))))
            .join()
    });
    match err {
        Ok(Err(Error::TierFull { reason, .. })) => {
            assert!(reason.contains("still in use"), "{reason}")
        }
        other => panic!("expected TierFull, got {other:?}"),
    }
    // …leave the stored value intact, and succeed once the read is dropped.
    assert!(held.as_ref().is_some_and(|h| h.len() > 100_000));
    drop(held);
    db.put_value(&key("b"), &Value::Blob(pattern(4 << 20, 2)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        db.fetch_value(&key("a"))
            .ok()
            .and_then(|v| v.as_blob().cloned()),
        Some(pattern(100_000, 1))
    );
}

#[test]
fn lmdb_holds_more_borrowed_values_than_reader_slots() {
    // LMDB has 1,024 reader slots here; borrowed values share their thread's
    // snapshot, so holding 3,000 of them (a large `read_batch`) takes one.
    let dir = tmp();
    let db = open(&format!("lmdb://{}?sync=false", dir.path().display()));
    let items: Vec<(Key, Value)> = (0..3000u32)
        .map(|i| {
            (
                key(&format!("k/{i}")),
                Value::from(i.to_le_bytes().to_vec()),
            )
        })
        .collect();
    db.put_values(items).unwrap_or_else(|e| panic!("{e}"));
    let held: Vec<Value> = (0..3000u32)
        .map(|i| {
            db.fetch_value(&key(&format!("k/{i}")))
                .unwrap_or_else(|e| panic!("get {i}: {e}"))
        })
        .collect();
    for (i, v) in held.iter().enumerate() {
        assert_eq!(
            v.as_blob().map(|b| b.to_vec()),
            Some((i as u32).to_le_bytes().to_vec())
        );
    }
}

#[test]
fn lmdb_reads_after_a_commit_see_it_while_older_borrows_keep_theirs() {
    let dir = tmp();
    let uri = format!("lmdb://{}?sync=false", dir.path().display());
    let db = open(&uri);
    let k = key("k");
    db.put_value(&k, &Value::from(vec![1u8; 100]))
        .unwrap_or_else(|e| panic!("{e}"));
    let old = db.get(&k).unwrap_or_else(|e| panic!("{e}"));
    // Committed from another thread, as another process would.
    std::thread::scope(|s| {
        s.spawn(|| db.put_value(&k, &Value::from(vec![2u8; 100])))
            .join()
            .unwrap_or_else(|_| panic!("writer panicked"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let new = db.fetch_value(&k).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(new.as_blob().map(|b| b[0]), Some(2));
    // The value borrowed before the commit still reads as it was.
    let old = spillpool::frame::decode(old.unwrap_or_else(|| panic!("k missing")), &k, "test")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.as_blob().map(|b| b.to_vec()), Some(vec![1u8; 100]));
    // Deleting is a commit too.
    db.delete(&k).unwrap_or_else(|e| panic!("{e}"));
    assert!(db.get(&k).unwrap_or_else(|e| panic!("{e}")).is_none());
}

#[test]
fn lmdb_reads_of_a_new_environment_never_use_an_old_ones_snapshot() {
    // A value read from a closed handle keeps that environment's snapshot
    // alive: the next environment opened (whose state may land at the same
    // address) must be read through its own transaction, and reopening a
    // path whose values are still held must work.
    // Fresh directories (a new environment each time), then two reopened
    // in turn while values read from them are still held.
    let dirs: Vec<_> = (0..10).map(|_| tmp()).collect();
    let mut held = Vec::new();
    for round in 0..20u8 {
        let dir = &dirs[if round < 10 {
            round as usize
        } else {
            round as usize % 2
        }];
        let db = LmdbBackend::open(dir.path(), false, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
        let k = key(&format!("k{round}"));
        db.put_value(&k, &Value::from(vec![round; 100]))
            .unwrap_or_else(|e| panic!("{e}"));
        let v = db
            .fetch_value(&k)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(v.as_blob().map(|b| b[0]), Some(round));
        held.push(v);
        drop(db);
    }
    for (round, v) in held.iter().enumerate() {
        assert_eq!(
            v.as_blob().map(|b| b.to_vec()),
            Some(vec![round as u8; 100])
        );
    }
}

#[test]
fn lmdb_one_environment_per_path() {
    let dir = tmp();
    let uri = format!("lmdb://{}", dir.path().display());
    let (a, b) = (open(&uri), open(&uri));
    a.put_value(&key("k"), &Value::from(vec![5u8]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(b.get(&key("k")).unwrap_or_else(|e| panic!("{e}")).is_some());
    match spillpool::open(&format!("{uri}?sync=false")) {
        Err(Error::InvalidConfig { reason, .. }) => assert!(reason.contains("sync=true")),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn file_values_are_private_and_stay_inside_the_root() {
    let outer = tmp();
    let root = outer.path().join("root");
    let files = FileBackend::open(vec![root.clone()], true).unwrap_or_else(|e| panic!("{e}"));
    let long = "a%2F..%2F..".repeat(90);
    for k in ["x", ".x", "a/..b/c", "%2e%2e/x", long.as_str()] {
        files
            .put_value(&key(k), &Value::from(k.as_bytes().to_vec()))
            .unwrap_or_else(|e| panic!("{e}"));
        let path = files.path_of(&key(k));
        assert!(path.starts_with(&root), "{k} → {}", path.display());
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let root_mode = std::fs::metadata(&root)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(root_mode, 0o700);
    let outside: Vec<_> = std::fs::read_dir(outer.path())
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        outside,
        vec![std::ffi::OsString::from("root")],
        "something was written outside the root"
    );
    // A stray file in the root is not a key.
    std::fs::write(root.join("stray%zz"), b"x").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files.list("").map(|l| l.len()).unwrap_or(0), 5);
}

#[test]
fn file_corrupted_on_disk_is_reported_with_its_path() {
    let dir = tmp();
    let files =
        FileBackend::open(vec![dir.path().to_path_buf()], true).unwrap_or_else(|e| panic!("{e}"));
    let k = key("victim");
    files
        .put_value(&k, &Value::Blob(pattern(10_000, 9)))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = files.path_of(&k);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    bytes[5000] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    match files.get_value(&k) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("victim") && msg.contains(&path.display().to_string()),
                "{msg}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    std::fs::write(&path, &bytes[..3000]).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(files.get_value(&k), Err(Error::Corrupt { .. })));
    std::fs::write(&path, b"").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(files.get_value(&k), Err(Error::Corrupt { .. })));
}

#[test]
fn shm_destroy_frees_the_namespace() {
    let ns = Ns::new("destroy");
    let shm = ShmBackend::open(&ns.0).unwrap_or_else(|e| panic!("{e}"));
    shm.put_value(&key("a"), &Value::Blob(pattern(1 << 20, 1)))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = std::path::Path::new("/dev/shm").join(format!("spillpool-{}", ns.0));
    assert!(dir.exists());
    shm.destroy().unwrap_or_else(|e| panic!("{e}"));
    assert!(!dir.exists());
    assert!(!ShmBackend::destroy_namespace(&ns.0).unwrap_or(true));
    for bad in ["", "../x", "a/b", ".hidden"] {
        assert!(ShmBackend::open(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn bad_uris_are_rejected_with_the_reason() {
    for (uri, why) in [
        ("nothing", "scheme://"),
        ("s4://bucket", "unknown scheme"),
        ("file://", "needs a directory"),
        ("lmdb://", "needs a directory"),
        ("file:///tmp/x?snyc=false", "unknown parameter"),
        ("lmdb:///tmp/x?map_size=huge", "map_size"),
        ("mem://?x=1", "unknown parameter"),
        ("shm://../etc", "namespace"),
    ] {
        match spillpool::open(uri) {
            Err(e) => assert!(e.to_string().contains(why), "{uri}: {e}"),
            Ok(b) => panic!("{uri} opened as {b}"),
        }
    }
}

/// Real ENOSPC: a 2 MiB tmpfs mounted for the test (needs root; skipped otherwise).
#[test]
fn full_file_system_is_tier_full_and_loses_nothing() {
    conformance::with_tmpfs("2m", |dir| {
        let files = FileBackend::open(vec![dir.join("s")], true).unwrap_or_else(|e| panic!("{e}"));
        let small = pattern(500_000, 1);
        files
            .put_value(&key("small"), &Value::Blob(small.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        match files.put_value(&key("big"), &Value::Blob(pattern(3 << 20, 2))) {
            Err(Error::TierFull { .. }) => {}
            other => panic!("expected TierFull, got {other:?}"),
        }
        assert_eq!(
            files
                .fetch_value(&key("small"))
                .ok()
                .and_then(|v| v.as_blob().cloned()),
            Some(small)
        );
        assert!(
            files
                .get(&key("big"))
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        // No temporary file is left taking the space: a value that fits goes in.
        files
            .put_value(&key("again"), &Value::Blob(pattern(1 << 20, 3)))
            .unwrap_or_else(|e| panic!("{e}"));
    });
}

/// LMDB's lock file is fully allocated at open (so a full disk cannot turn a
/// reader-slot write into SIGBUS), through LMDB's own descriptor.
#[test]
fn lmdb_lock_file_is_allocated_at_open() {
    use std::os::unix::fs::MetadataExt;
    let dir = tmp();
    let db = open(&format!("lmdb://{}", dir.path().display()));
    db.put_value(&key("k"), &Value::from(b"v".to_vec()))
        .unwrap_or_else(|e| panic!("{e}"));
    let meta = std::fs::metadata(dir.path().join("lock.mdb")).unwrap_or_else(|e| panic!("{e}"));
    assert!(meta.len() > 0);
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "lock.mdb: {} bytes but {} allocated",
        meta.len(),
        meta.blocks() * 512
    );
}
