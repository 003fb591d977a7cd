//! Filters: every combination through the conformance suite, and every way
//! to damage an encrypted value is an error — never wrong data.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use spillpool::conformance::{self, Expect, pattern, reseal};
use spillpool::filter::{self, Compression, DecodeLimits, EncryptionKey, Filters};
use spillpool::frame::{self, HEADER_LEN};
use spillpool::pool::Pool;
use spillpool::{Backend, BackendExt, Error, FileBackend, FilteredBackend, Key, MemBackend, Value};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a";

fn key(s: &str) -> Key {
    Key::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn ok<T>(r: spillpool::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn secret(n: u8) -> Arc<EncryptionKey> {
    Arc::new(EncryptionKey::from_bytes(&[n; 32]))
}

/// Compressible text with the marker in it, several 4 KiB chunks long.
fn text(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(MARKER);
        out.extend_from_slice(format!(" row {i} alpha beta delta eta\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

fn combos() -> Vec<(String, Filters)> {
    let mut out = Vec::new();
    for c in [
        None,
        Some(Compression::Zstd(3)),
        Some(Compression::Lz4),
        Some(Compression::Gzip(1)),
    ] {
        for enc in [false, true] {
            if c.is_none() && !enc {
                continue;
            }
            let mut f = Filters::none();
            if let Some(c) = c {
                f = f.with_compression(c);
            }
            if enc {
                f = f.with_encryption(secret(1));
            }
            out.push((format!("{c:?}+{enc}"), f));
        }
    }
    out
}

#[test]
fn every_filter_combination_conforms() {
    let loose = Expect {
        exact_usage_bytes: false,
    };
    for (name, filters) in combos() {
        let b = FilteredBackend::new(Arc::new(MemBackend::new()), filters);
        conformance::run_all_expecting(&b, &format!("{name}/"), loose);
    }
    // And on the real storages, with the heaviest chain.
    let f = Filters::none()
        .with_compression(Compression::Zstd(3))
        .with_encryption(secret(2));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for uri in [
        format!("file://{}", dir.path().join("f").display()),
        format!("lmdb://{}", dir.path().join("l").display()),
    ] {
        let b = FilteredBackend::new(ok(spillpool::open(&uri)), f.clone());
        conformance::run_all_expecting(&b, "c/", loose);
    }
}

struct Encrypted {
    _dir: tempfile::TempDir,
    files: Arc<FileBackend>,
    sealed: FilteredBackend,
}

fn encrypted_store(chunk: usize) -> Encrypted {
    encrypted_store_with(chunk, Some(Compression::Zstd(1)))
}

fn encrypted_store_with(chunk: usize, compression: Option<Compression>) -> Encrypted {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = Arc::new(ok(FileBackend::open(vec![dir.path().to_path_buf()], false)));
    let mut filters = Filters::none()
        .with_encryption(secret(3))
        .with_chunk_size(chunk);
    if let Some(c) = compression {
        filters = filters.with_compression(c);
    }
    let sealed = FilteredBackend::new(Arc::clone(&files) as Arc<dyn Backend>, filters);
    Encrypted {
        _dir: dir,
        files,
        sealed,
    }
}

/// The stored frame's payload layout: (payload offset, chunk ranges within the frame).
fn chunks(frame: &[u8]) -> (usize, Vec<std::ops::Range<usize>>) {
    let offset = u64::from_le_bytes(frame[16..24].try_into().unwrap_or([0; 8])) as usize;
    let count = u32::from_le_bytes(
        frame[HEADER_LEN + 8..HEADER_LEN + 12]
            .try_into()
            .unwrap_or([0; 4]),
    ) as usize;
    let mut at = offset + 4 * count;
    let mut ranges = Vec::new();
    for i in 0..count {
        let p = offset + 4 * i;
        let len = u32::from_le_bytes(frame[p..p + 4].try_into().unwrap_or([0; 4])) as usize;
        ranges.push(at..at + len);
        at += len;
    }
    (offset, ranges)
}

fn expect_corrupt(store: &Encrypted, k: &Key, what: &str) {
    match store.sealed.get_value(k) {
        Err(Error::Corrupt { key, .. }) => assert_eq!(key, k.as_str(), "{what}"),
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

/// With compression and without: encrypted-only reads trust GCM for the
/// plain data's checksum, so tampering must fail authentication there too.
#[test]
fn tampering_in_every_way_is_detected() {
    for compression in [Some(Compression::Zstd(1)), None] {
        tampering_is_detected(&encrypted_store_with(4096, compression));
    }
}

fn tampering_is_detected(store: &Encrypted) {
    let (a, b) = (key("a"), key("b"));
    ok(store.sealed.put_value(&a, &Value::Blob(text(40_000))));
    ok(store
        .sealed
        .put_value(&b, &Value::Blob(text(40_000).slice(7..))));
    let original = std::fs::read(store.files.path_of(&a)).unwrap_or_else(|e| panic!("{e}"));
    let other = std::fs::read(store.files.path_of(&b)).unwrap_or_else(|e| panic!("{e}"));
    let (_, ranges) = chunks(&original);
    assert!(
        ranges.len() >= 5,
        "want several chunks, got {}",
        ranges.len()
    );
    let write = |bytes: &[u8]| {
        std::fs::write(store.files.path_of(&a), bytes).unwrap_or_else(|e| panic!("{e}"))
    };

    // Flipped ciphertext, checksums made right again: only GCM can tell.
    let mut v = original.clone();
    v[ranges[2].start + 3] ^= 0x40;
    reseal(&mut v);
    write(&v);
    expect_corrupt(store, &a, "tampered ciphertext");

    // Two chunks swapped (table entries and bytes), checksums fixed.
    let mut v = original.clone();
    let (r0, r1) = (ranges[0].clone(), ranges[1].clone());
    let swapped: Vec<u8> = [&original[r1.clone()], &original[r0.clone()]].concat();
    v[r0.start..r1.end].copy_from_slice(&swapped);
    let (offset, _) = chunks(&original);
    let (l0, l1) = (r0.len() as u32, r1.len() as u32);
    v[offset..offset + 4].copy_from_slice(&l1.to_le_bytes());
    v[offset + 4..offset + 8].copy_from_slice(&l0.to_le_bytes());
    reseal(&mut v);
    write(&v);
    expect_corrupt(store, &a, "swapped chunks");

    // The last chunk dropped, count and table adjusted, checksums fixed.
    let mut v = original.clone();
    let last = ranges[ranges.len() - 1].clone();
    v.truncate(last.start);
    let count = ranges.len() as u32 - 1;
    v[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&count.to_le_bytes());
    v.drain(offset + 4 * count as usize..offset + 4 * count as usize + 4);
    reseal(&mut v);
    write(&v);
    expect_corrupt(store, &a, "dropped chunk");

    // Truncated.
    write(&original[..original.len() - 100]);
    expect_corrupt(store, &a, "truncated");

    // The codec byte edited (zstd → none, or none → lz4), checksums fixed:
    // the AAD binds the descriptor.
    let mut v = original.clone();
    v[HEADER_LEN + 1] = if v[HEADER_LEN + 1] == 0 { 2 } else { 0 };
    reseal(&mut v);
    write(&v);
    expect_corrupt(store, &a, "edited descriptor");

    // The plain data's checksum edited, checksums fixed.
    let mut v = original.clone();
    v[HEADER_LEN + 36] ^= 1;
    reseal(&mut v);
    write(&v);
    expect_corrupt(store, &a, "edited raw checksum");

    // A chunk taken from another value at the same index.
    let (_, other_ranges) = chunks(&other);
    let mut v = original.clone();
    let (mine, theirs) = (ranges[1].clone(), other_ranges[1].clone());
    if mine.len() == theirs.len() {
        v[mine].copy_from_slice(&other[theirs]);
        reseal(&mut v);
        write(&v);
        expect_corrupt(store, &a, "chunk from another value");
    }

    // A whole frame moved to another key.
    write(&other);
    expect_corrupt(store, &a, "frame moved between keys");

    // A plain frame in its place, checksums right (anyone can write one),
    // and one that is only compressed: an encrypting store opens neither.
    let forged = Value::Blob(Bytes::from_static(b"forged"));
    let zstd = Filters::none().with_compression(Compression::Zstd(1));
    for planted in [
        ok(frame::encode(&forged)).to_bytes(),
        ok(frame::encode_filtered(&forged, &zstd, &a)).to_bytes(),
    ] {
        write(&planted);
        expect_corrupt(store, &a, "unencrypted frame planted");
        match store.sealed.get(&a) {
            Err(Error::Corrupt { reason, .. }) => {
                assert!(reason.contains("not encrypted"), "{reason}")
            }
            other => panic!("get of a planted frame: {other:?}"),
        }
        // It is still there, as it was: reading refused it, nothing more.
        assert_eq!(ok(store.files.get(&a)).as_deref(), Some(&planted[..]));
    }

    // Put right, it reads again.
    write(&original);
    assert_eq!(
        ok(store.sealed.fetch_value(&a)).as_blob(),
        Some(&text(40_000))
    );
}

/// A frame compressed elsewhere, put into an encrypting store, is stored
/// encrypted (it used to pass through as it was) and reads back equal.
#[test]
fn compressed_frames_are_encrypted_on_the_way_in() {
    let store = encrypted_store_with(4096, None);
    let k = key("copied");
    let value = Value::Blob(text(30_000));
    let zstd = Filters::none().with_compression(Compression::Zstd(3));
    let compressed = ok(frame::encode_filtered(&value, &zstd, &k));
    ok(store.sealed.put(&k, compressed));
    let stored = ok(store.files.get(&k)).unwrap_or_default();
    let header = ok(frame::verify(&stored, &k, "t"));
    assert_eq!(header.filters.get(2), Some(&1), "stored encrypted");
    assert_eq!(ok(store.sealed.fetch_value(&k)), value);
}

#[test]
fn wrong_and_missing_keys_are_their_own_errors() {
    let store = encrypted_store(4096);
    let k = key("k");
    ok(store.sealed.put_value(&k, &Value::Blob(text(10_000))));
    let wrong = FilteredBackend::new(
        Arc::clone(&store.files) as Arc<dyn Backend>,
        Filters::none().with_encryption(secret(99)),
    );
    match wrong.get_value(&k) {
        Err(e @ Error::WrongKey { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("another key") && msg.contains("\"k\""),
                "{msg}"
            );
            // The key's bytes (99 = 0x63) never appear, in any form.
            assert!(
                !msg.contains("63636363") && !format!("{e:?}").contains("63636363"),
                "{msg}"
            );
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    match store.files.get_value(&k) {
        Err(Error::KeyRequired { key, .. }) => assert_eq!(key, "k"),
        other => panic!("expected KeyRequired, got {other:?}"),
    }
    // A frame sealed with another key is refused on the way in (this store
    // could never open it), and nothing is stored.
    let other = key("other");
    let foreign = ok(frame::encode_filtered(
        &Value::Blob(text(5_000)),
        &Filters::none().with_encryption(secret(99)),
        &other,
    ));
    match store.sealed.put(&other, foreign) {
        Err(Error::WrongKey { key, .. }) => assert_eq!(key, "other"),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert_eq!(ok(store.files.get(&other)), None);
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_contain(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

#[test]
fn no_plaintext_reaches_the_disk() {
    for compression in [None, Some(Compression::Lz4)] {
        let store = encrypted_store(64 << 10);
        let mut f = Filters::none().with_encryption(secret(4));
        if let Some(c) = compression {
            f = f.with_compression(c);
        }
        let sealed = FilteredBackend::new(Arc::clone(&store.files) as Arc<dyn Backend>, f);
        for i in 0..5 {
            ok(sealed.put_value(&key(&format!("v{i}")), &Value::Blob(text(300_000 + i))));
        }
        let table = spillpool::conformance::sample_tables().remove(2).1; // strings
        ok(sealed.put_value(&key("t"), &Value::Table(table)));
        let root = &store.files.roots()[0];
        assert!(files_contain(root, b"view string").is_empty());
        assert!(
            files_contain(root, MARKER).is_empty(),
            "plaintext found on disk"
        );
        // The same data unencrypted does show the marker: the scan works.
        ok(store
            .files
            .put_value(&key("plain"), &Value::Blob(text(1000))));
        assert_eq!(files_contain(root, MARKER).len(), 1);
    }
    // The pool's spill files too.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pool = ok(Pool::builder()
        .memory_limit(1 << 20)
        .spill_dirs([dir.path()])
        .filters(Filters::none().with_encryption(secret(5)))
        .build());
    let refs: Vec<_> = (0..8)
        .map(|i| ok(pool.put(Value::Blob(text(500_000 + i)))))
        .collect();
    assert!(pool.stats().spills > 0);
    assert!(
        files_contain(dir.path(), MARKER).is_empty(),
        "plaintext in spill files"
    );
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(ok(pool.get(r)).as_blob(), Some(&text(500_000 + i)));
    }
}

#[test]
fn compression_is_adaptive_and_self_describing() {
    let inner: Arc<dyn Backend> = Arc::new(MemBackend::new());
    let zstd = FilteredBackend::new(
        Arc::clone(&inner),
        Filters::none().with_compression(Compression::Zstd(3)),
    );
    let random = pattern(2 << 20, 1);
    ok(zstd.put_value(&key("random"), &Value::Blob(random.clone())));
    ok(zstd.put_value(&key("text"), &Value::Blob(text(2 << 20))));
    let applied = |k: &str| {
        let raw = ok(inner.get(&key(k))).unwrap_or_default();
        let header = ok(frame::verify(&raw, &key(k), "test"));
        (filter::describe(&header.filters), raw.len())
    };
    let (random_desc, random_len) = applied("random");
    assert_eq!(
        random_desc.map(|d| d.compression),
        Some(None),
        "incompressible data stored uncompressed"
    );
    assert!(random_len >= 2 << 20);
    let (text_desc, text_len) = applied("text");
    assert_eq!(text_desc.map(|d| d.compression), Some(Some("zstd")));
    assert!(text_len < (2 << 20) / 5, "{text_len}");
    // A reader configured without any filter reads both.
    assert_eq!(
        ok(inner.fetch_value(&key("random"))).as_blob(),
        Some(&random)
    );
    assert_eq!(
        ok(inner.fetch_value(&key("text"))).as_blob(),
        Some(&text(2 << 20))
    );
}

#[test]
fn pool_spills_through_filters() {
    for f in [
        Filters::none().with_compression(Compression::Lz4),
        Filters::none()
            .with_compression(Compression::Zstd(1))
            .with_encryption(secret(6)),
    ] {
        let pool = ok(Pool::builder().memory_limit(1 << 20).filters(f).build());
        let refs: Vec<_> = (0..10)
            .map(|i| ok(pool.put(Value::Blob(text(400_000 + i)))))
            .collect();
        let s = pool.stats();
        assert!(s.spills > 0);
        assert!(
            s.disk_used < s.bytes_written.max(1) * 2 && s.disk_used < 10 * 400_000 / 3,
            "compressed on disk: {s}"
        );
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(ok(pool.get(r)).as_blob(), Some(&text(400_000 + i)));
        }
    }
}

/// A bounded in-suite fuzz of the frame and chunk decoder: random damage to
/// filtered frames (with checksums fixed half the time, so the chunk decoder
/// sees it) must give an error or the exact original — never a panic, a
/// wrong value, or an allocation past the limit.
#[test]
fn mutated_frames_never_panic_or_lie() {
    let ek = secret(7);
    let k = key("fuzz");
    let values = [
        Value::Blob(text(50_000)),
        Value::Table(spillpool::conformance::sample_tables().remove(0).1),
    ];
    let limits = DecodeLimits {
        max_raw_len: 16 << 20,
    };
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut errors = 0;
    for (vi, value) in values.iter().enumerate() {
        for (_, filters) in combos() {
            let f = filters.with_chunk_size(4096);
            let good = ok(frame::encode_filtered(value, &f, &k))
                .to_bytes()
                .to_vec();
            for _ in 0..150 {
                let mut v = good.clone();
                match next() % 4 {
                    0 => {
                        let i = (next() as usize) % v.len();
                        v[i] ^= 1 << (next() % 8);
                    }
                    1 => v.truncate((next() as usize) % v.len()),
                    2 => {
                        // Lengths and counts in the header and descriptor.
                        let i = [24, 32, HEADER_LEN + 4, HEADER_LEN + 8][(next() % 4) as usize];
                        v[i + (next() % 4) as usize] = next() as u8;
                    }
                    _ => {
                        let i = (next() as usize) % v.len();
                        let j = (next() as usize) % v.len();
                        v.swap(i, j);
                    }
                }
                if next() % 2 == 0 && v.len() >= 128 {
                    reseal(&mut v);
                }
                match frame::decode_with(Bytes::from(v), &k, "fuzz", Some(&ek), limits) {
                    Ok(back) => assert_eq!(
                        &back, value,
                        "value {vi}: a damaged frame decoded to other data"
                    ),
                    Err(_) => errors += 1,
                }
            }
        }
    }
    assert!(errors > 1500, "mutations were not caught: {errors}");
}

/// Inputs the cargo-fuzz target found that crashed arrow-ipc, kept as fixtures
/// (first byte: odd = reseal the checksums first, as the fuzz target does).
#[test]
fn fuzz_findings_stay_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let limits = DecodeLimits {
        max_raw_len: 16 << 20,
    };
    let ek = secret(7);
    let k = key("fuzz");
    for (name, panic_allowed) in [
        ("ipc-buffer-out-of-range", false),
        ("ipc-schema-type-none", true),
    ] {
        let data = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (mode, rest) = data
            .split_first()
            .unwrap_or_else(|| panic!("{name} is empty"));
        let mut bytes = rest.to_vec();
        if mode & 1 == 1 {
            reseal(&mut bytes);
        }
        match frame::decode_with(Bytes::from(bytes), &k, "fixture", Some(&ek), limits) {
            // Buffer ranges are checked before arrow sees them; the schema
            // converter's panics are contained by catch_unwind.
            Err(Error::Corrupt { reason, .. }) => {
                assert!(
                    panic_allowed || !reason.contains("panic"),
                    "{name}: {reason}"
                );
            }
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
    }
}
