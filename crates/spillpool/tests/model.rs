//! The model checks (also the fuzz targets' bodies) on seeded random
//! operation sequences: every backend, the pool and the store against a
//! `BTreeMap` model.

use spillpool::model::{BackendOp, PoolOp, StoreOp, decode_ops, run_backend, run_pool, run_store};
use spillpool::store::StoreOptions;
use spillpool::{Pool, ShmBackend, Store};

/// Deterministic pseudo-random bytes, decoded into operations as the fuzzer's are.
fn ops<T: for<'a> arbitrary::Arbitrary<'a>>(seed: u64, len: usize) -> Vec<T> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    decode_ops(&bytes)
}

fn sequences() -> u64 {
    std::env::var("SPILLPOOL_MODEL_SEQUENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[test]
fn backends_match_the_model() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let shm = format!("model-{}", std::process::id());
    let uris = [
        "mem://".to_string(),
        format!("file://{}?sync=false", dir.path().join("f").display()),
        format!("lmdb://{}?sync=false", dir.path().join("l").display()),
        format!("shm://{shm}"),
        format!(
            "file://{}?sync=false&compression=lz4",
            dir.path().join("z").display()
        ),
    ];
    let result = std::panic::catch_unwind(|| {
        for uri in &uris {
            let b = spillpool::open(uri).unwrap_or_else(|e| panic!("{e}"));
            let mut total = 0;
            for seed in 0..sequences() {
                let ops: Vec<BackendOp> = ops(seed, 3000);
                total += ops.len();
                run_backend(b.as_ref(), &format!("s{seed}/"), &ops);
            }
            assert!(
                total > 100 * sequences() as usize,
                "{uri}: only {total} operations"
            );
            eprintln!(
                "model: {uri}: {total} operations in {} sequences, 0 differences",
                sequences()
            );
        }
    });
    let _ = ShmBackend::destroy_namespace(&shm);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn the_pool_matches_the_model() {
    for seed in 0..sequences() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pool = Pool::builder()
            .memory_limit(2 << 20)
            .spill_dirs(vec![dir.path().to_path_buf()])
            .background_spill(seed % 2 == 0)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let ops: Vec<PoolOp> = ops(seed, 2000);
        assert!(ops.len() > 200, "seed {seed}: {} operations", ops.len());
        run_pool(&pool, &ops);
        eprintln!(
            "model: pool seed {seed}: {} operations, 0 differences",
            ops.len()
        );
        drop(pool);
        // Nothing is left behind in the spill directory but the lock file.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n.to_string_lossy().starts_with('.')),
            "seed {seed}: {left:?}"
        );
    }
}

#[test]
fn the_store_matches_the_model() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = StoreOptions {
        rows_per_segment: 7,
        ..StoreOptions::default()
    };
    for kind in ["mem", "lmdb", "file"] {
        for seed in 0..sequences() {
            let uri = match kind {
                "mem" => format!("mem://model-{seed}"),
                "lmdb" => format!(
                    "lmdb://{}?sync=false",
                    dir.path().join(format!("l{seed}")).display()
                ),
                _ => format!(
                    "file://{}?sync=false",
                    dir.path().join(format!("f{seed}")).display()
                ),
            };
            let open = || Store::open_with(&uri, options).unwrap_or_else(|e| panic!("{e}"));
            let ops: Vec<StoreOp> = ops(seed, 1500);
            assert!(ops.len() > 200, "seed {seed}: {} operations", ops.len());
            run_store(&open, "lib", &ops);
            eprintln!(
                "model: store on {kind} seed {seed}: {} operations, 0 differences",
                ops.len()
            );
        }
    }
}
