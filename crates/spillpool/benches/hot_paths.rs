//! Micro-benchmarks of the hot paths: frame encode/decode, filtering and
//! unfiltering (compression, encryption) at 16 MiB, key validation,
//! the pool's memory tier (put, get hits by size and by thread count),
//! `mem://` values by size, eviction ordering, and LMDB small values.
//!
//! `cargo bench -p spillpool --bench hot_paths` measures;
//! `cargo test -p spillpool --benches` runs each once (what CI does).
//! Results and how to read them: docs/BENCHMARKS.md.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spillpool::pool::{Candidate, EvictionPolicy, Lru};
use spillpool::{Backend, Key, LmdbBackend, MemBackend, Pool, Table, Value, frame};

const SIZES: [(&str, usize); 3] = [("64B", 64), ("1MiB", 1 << 20), ("64MiB", 64 << 20)];

fn blob(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

fn table(rows: usize) -> Table {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let xs: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..rows).map(|i| i as f64 * 0.25),
    ));
    let batch = RecordBatch::try_from_iter([("id", ids), ("x", xs)])
        .unwrap_or_else(|e| panic!("batch: {e}"));
    Table::from(batch)
}

fn ok<T>(what: &str, r: spillpool::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn frames(c: &mut Criterion) {
    let key = ok("key", Key::new("bench/frame"));
    let mut g = c.benchmark_group("frame");
    // Blobs, then a small symbol's shape (nothing to share) and 1 MiB of
    // int64 + float64.
    let cases = [
        ("blob", "1KiB", Value::Blob(blob(1 << 10))),
        ("blob", "1MiB", Value::Blob(blob(1 << 20))),
        ("table", "2KiB", Value::Table(table(128))),
        ("table", "1MiB", Value::Table(table(65_536))),
    ];
    for (kind, name, value) in &cases {
        g.throughput(Throughput::Bytes(value.size() as u64));
        g.bench_function(BenchmarkId::new(format!("encode_{kind}"), name), |x| {
            x.iter(|| ok("encode", frame::encode(black_box(value))))
        });
        let bytes = ok("encode", frame::encode(value)).to_bytes();
        g.bench_function(BenchmarkId::new(format!("decode_{kind}"), name), |x| {
            x.iter(|| {
                ok(
                    "decode",
                    frame::decode(black_box(bytes.clone()), &key, "bench"),
                )
            })
        });
    }
    g.finish();
}

/// Filtering frames (`frame::refilter`: compress, encrypt, checksum) and
/// reading them back (`frame::unfilter`: checks, decrypt, decompress) at 16 MiB, past the size where payloads are checksummed by
/// span: `words` is four words in random order (lz4 keeps ~0.6 of it,
/// zstd ~0.3, like the categorical table of `bench filters`), `random`
/// does not compress (stored as it is, in chunks).
fn filtered_frames(c: &mut Criterion) {
    use spillpool::filter::{Compression, DecodeLimits, EncryptionKey, Filters};
    const LEN: usize = 16 << 20;
    let key = ok("key", Key::new("bench/filters"));
    let ek = Arc::new(EncryptionKey::from_bytes(&[3u8; 32]));
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut words = Vec::with_capacity(LEN + 8);
    while words.len() < LEN {
        words.extend_from_slice(
            [&b"alpha "[..], b"beta ", b"delta ", b"eta "][(next() % 4) as usize],
        );
    }
    words.truncate(LEN);
    let words = Value::from(words);
    let random = Value::from((0..LEN).map(|_| next() as u8).collect::<Vec<u8>>());
    let mut g = c.benchmark_group("filters");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(LEN as u64));
    for (name, filters, value) in [
        (
            "lz4/words",
            Filters::none().with_compression(Compression::Lz4),
            &words,
        ),
        (
            "zstd1/words",
            Filters::none().with_compression(Compression::Zstd(1)),
            &words,
        ),
        (
            "zstd1+aes/words",
            Filters::none()
                .with_compression(Compression::Zstd(1))
                .with_encryption(Arc::clone(&ek)),
            &words,
        ),
        (
            "lz4/random",
            Filters::none().with_compression(Compression::Lz4),
            &random,
        ),
        (
            "aes/random",
            Filters::none().with_encryption(Arc::clone(&ek)),
            &random,
        ),
    ] {
        let plain = ok("encode", frame::encode(value));
        g.bench_function(BenchmarkId::new("refilter", name), |x| {
            x.iter(|| {
                ok(
                    "refilter",
                    frame::refilter(black_box(plain.clone()), &filters, &key, "bench"),
                )
            })
        });
        let stored = ok("encode", frame::encode_filtered(value, &filters, &key)).to_bytes();
        g.bench_function(BenchmarkId::new("unfilter", name), |x| {
            x.iter(|| {
                ok(
                    "unfilter",
                    frame::unfilter(
                        black_box(stored.clone()),
                        &key,
                        "bench",
                        Some(&ek),
                        DecodeLimits::default(),
                    ),
                )
            })
        });
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("key");
    g.throughput(Throughput::Elements(1));
    let text = "store/tile/prices/eurusd-1m/w0192a3f4c5d6e7f8-1a2b3c/00000012/0003";
    g.bench_function("new_64_chars", |x| {
        x.iter(|| ok("key", Key::new(black_box(text))))
    });
    g.bench_function("new_8_chars", |x| {
        x.iter(|| ok("key", Key::new(black_box("k/000042"))))
    });
    g.finish();
}

fn memory_tier(c: &mut Criterion) {
    let pool = ok("pool", Pool::builder().memory_limit(1 << 30).build());
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(1));
    let small = Value::Blob(blob(64));
    g.bench_function("put_and_drop/64B", |x| {
        x.iter(|| ok("put", pool.put(black_box(small.clone()))))
    });
    for (name, len) in SIZES {
        let r = ok("put", pool.put(Value::Blob(blob(len))));
        g.bench_function(BenchmarkId::new("get_hit", name), |x| {
            x.iter(|| ok("get", pool.get(black_box(&r))))
        });
    }
    // Threads each getting their own small value; the time is the wall time
    // of `iters` gets on every thread, so throughput counts all threads.
    for threads in [1usize, 2] {
        let refs: Vec<_> = (0..threads)
            .map(|_| ok("put", pool.put(Value::Blob(blob(64)))))
            .collect();
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(BenchmarkId::new("get_hit_threads", threads), |x| {
            x.iter_custom(|iters| gets_on_threads(&pool, &refs, iters))
        });
    }
    g.finish();
}

fn gets_on_threads(pool: &Pool, refs: &[spillpool::Ref], iters: u64) -> Duration {
    let barrier = Barrier::new(refs.len() + 1);
    std::thread::scope(|s| {
        for r in refs {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    black_box(ok("get", pool.get(r)));
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn mem_values(c: &mut Criterion) {
    let mem = MemBackend::new();
    let key = ok("key", Key::new("bench/mem"));
    let mut g = c.benchmark_group("mem");
    g.throughput(Throughput::Elements(1));
    for (name, len) in SIZES {
        let v = Value::Blob(blob(len));
        g.bench_function(BenchmarkId::new("put_value", name), |x| {
            x.iter(|| ok("put", mem.put_value(&key, black_box(&v))))
        });
        g.bench_function(BenchmarkId::new("get_value", name), |x| {
            x.iter(|| ok("get", mem.get_value(black_box(&key))))
        });
    }
    let t = Value::Table(table(4 << 20)); // 64 MiB
    g.bench_function(BenchmarkId::new("put_value_table", "64MiB"), |x| {
        x.iter(|| ok("put", mem.put_value(&key, black_box(&t))))
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    let n = 10_000u64;
    let fresh: Vec<Candidate> = (0..n)
        .map(|i| Candidate {
            id: i,
            last_access: (i * 7919) % n,
            size: 1 << 20,
            on_disk: i % 3 == 0,
        })
        .collect();
    g.throughput(Throughput::Elements(n));
    g.bench_function("lru_order/10000", |x| {
        x.iter_batched_ref(
            || fresh.clone(),
            |c| Lru.order(black_box(c)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn lmdb_small(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // No fsync per commit: this measures LMDB's and our work, not the disk.
    let lmdb = ok("lmdb", LmdbBackend::open(dir.path(), false, 1 << 30));
    let frame_of = |i: u64| {
        ok(
            "encode",
            frame::encode(&Value::Blob(blob(100 + (i % 7) as usize))),
        )
    };
    let keys: Vec<Key> = (0..1000)
        .map(|i| ok("key", Key::new(format!("bench/small/{i:06}"))))
        .collect();
    let mut g = c.benchmark_group("lmdb");
    g.throughput(Throughput::Elements(1));
    let f = frame_of(1);
    g.bench_function("put_small_nosync", |x| {
        x.iter(|| ok("put", lmdb.put(&keys[0], black_box(f.clone()))))
    });
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("put_batch_1000_nosync", |x| {
        x.iter_batched(
            || {
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| (k.clone(), frame_of(i as u64)))
                    .collect()
            },
            |items| ok("put", lmdb.put_batch(items)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_small", |x| {
        x.iter(|| ok("get", lmdb.get(black_box(&keys[17]))))
    });
    g.finish();
}

/// The small-symbol path of the named store: one symbol of 100 rows × 3
/// float64 read by itself (head, manifest, tile), on `mem://` and LMDB.
fn store_small(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let lmdb = format!("lmdb://{}?sync=false", dir.path().display());
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    let cols: Vec<(&str, ArrayRef)> = ["a", "b", "c"]
        .into_iter()
        .map(|n| {
            let a: ArrayRef = Arc::new(Float64Array::from_iter_values((0..100).map(f64::from)));
            (n, a)
        })
        .collect();
    let small = Table::from(RecordBatch::try_from_iter(cols).unwrap_or_else(|e| panic!("{e}")));
    for (name, uri) in [("mem", "mem://"), ("lmdb", lmdb.as_str())] {
        let store = ok("open", spillpool::Store::open(uri));
        let lib = ok("library", store.get_library("bench", true));
        let names: Vec<String> = (0..1000).map(|i| format!("sym-{i:04}")).collect();
        let items: Vec<(&str, &Table)> = names.iter().map(|n| (n.as_str(), &small)).collect();
        ok("write", lib.write_batch(&items));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("read_small", name), |x| {
            x.iter(|| ok("read", lib.read(black_box("sym-0421"))))
        });
        // 1,000 symbols per call: what `read_batch` gains from both cores.
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        g.throughput(Throughput::Elements(refs.len() as u64));
        g.bench_function(BenchmarkId::new("read_batch_1000", name), |x| {
            x.iter(|| ok("read batch", lib.read_batch(black_box(&refs))))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = frames, filtered_frames, keys, memory_tier, mem_values, policy, lmdb_small, store_small
}
criterion_main!(benches);
