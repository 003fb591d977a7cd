//! Random operations on a backend (first byte: mem, file, lmdb) against a
//! `BTreeMap` model: any difference, panic or error aborts.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use spillpool::Backend;
use spillpool::model::{BackendOp, decode_ops, run_backend};

fn backends() -> &'static [Arc<dyn Backend>] {
    static B: OnceLock<(tempfile::TempDir, Vec<Arc<dyn Backend>>)> = OnceLock::new();
    &B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let open = |uri: String| spillpool::open(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
        let all = vec![
            open("mem://".into()),
            open(format!("file://{}?sync=false", dir.path().join("f").display())),
            open(format!("lmdb://{}?sync=false", dir.path().join("l").display())),
        ];
        (dir, all)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let Some((&which, rest)) = data.split_first() else { return };
    let b = &backends()[usize::from(which) % 3];
    let prefix = format!("run{}/", RUN.fetch_add(1, Ordering::Relaxed));
    let ops: Vec<BackendOp> = decode_ops(rest);
    run_backend(b.as_ref(), &prefix, &ops);
    // Keep the shared backends small across millions of runs.
    for k in b.list(&prefix).unwrap_or_default() {
        let _ = b.delete(&k);
    }
});
