//! Random writes, appends, reads, deletes and reopens of a store against a model.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use spillpool::model::{StoreOp, decode_ops, run_store};
use spillpool::store::StoreOptions;
use spillpool::{Backend, MemBackend, Store};

fuzz_target!(|data: &[u8]| {
    let backend: Arc<dyn Backend> = Arc::new(MemBackend::new());
    let options = StoreOptions {
        rows_per_segment: 5,
        ..StoreOptions::default()
    };
    let open = || Store::from_backend(Arc::clone(&backend), options).unwrap_or_else(|e| panic!("{e}"));
    let ops: Vec<StoreOp> = decode_ops(data);
    run_store(&open, "lib", &ops);
});
