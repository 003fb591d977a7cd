//! Random puts, gets, deletes, spills and evictions on a small pool against a model.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spillpool::Pool;
use spillpool::model::{PoolOp, decode_ops, run_pool};

fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")));
    let pool = Pool::builder()
        .memory_limit(1 << 20)
        .spill_dirs(vec![dir.path().to_path_buf()])
        .background_spill(false)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let ops: Vec<PoolOp> = decode_ops(data);
    run_pool(&pool, &ops);
});
