//! `spillpool demo backends`: every backend, end to end, with verification.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use clap::Args;
use spillpool::{BackendExt, Key, ShmBackend, Table, Value, format_size, parse_size};

#[derive(Args, Debug)]
pub struct BackendsArgs {
    /// Bytes to store in each backend (half blobs, half tables).
    #[arg(long, default_value = "256MiB")]
    data: String,
    /// Size of each value.
    #[arg(long, default_value = "4MiB")]
    value_size: String,
    /// Directory for the file and LMDB backends (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// A checksum of a value's logical content, computed independently of storage.
fn fingerprint(value: &Value) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match value {
        Value::Blob(b) => h.write(b),
        Value::Table(t) => {
            for batch in t.batches() {
                for col in batch.columns() {
                    let data = col.to_data();
                    h.write_usize(data.len());
                    for buf in data.buffers() {
                        h.write(buf.as_slice());
                    }
                }
            }
        }
    }
    h.finish()
}

fn make_value(i: usize, size: usize) -> Value {
    if i.is_multiple_of(2) {
        let seed = i as u64 + 1;
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let data: Vec<u8> = (0..size)
            .map(|_| crate::bench::xorshift(&mut state) as u8)
            .collect();
        Value::from(data)
    } else {
        let rows = (size / 32).max(1);
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
            (0..rows as i64).map(|r| r * i as i64),
        ));
        let xs: ArrayRef = Arc::new(Float64Array::from_iter_values(
            (0..rows).map(|r| (r as f64).sqrt() + i as f64),
        ));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|r| ["alpha", "beta", "delta", "eta"][(r + i) % 4]),
        ));
        match RecordBatch::try_from_iter([("id", ids), ("x", xs), ("name", names)]) {
            Ok(batch) => Value::Table(Table::from(batch)),
            Err(e) => Value::from(e.to_string().into_bytes()),
        }
    }
}

pub fn run(args: BackendsArgs) -> Result<()> {
    let total = parse_size(&args.data, "--data")?;
    let value_size = parse_size(&args.value_size, "--value-size")?.max(64) as usize;
    let count = (total as usize).div_ceil(value_size).max(2);
    let tmp = tempfile::Builder::new()
        .prefix("spillpool-demo-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let shm_name = format!("demo-{}", std::process::id());
    let uris = [
        "mem://".to_string(),
        format!("file://{}?sync=false", tmp.path().join("files").display()),
        format!("lmdb://{}?sync=false", tmp.path().join("lmdb").display()),
        format!("shm://{shm_name}"),
    ];
    println!(
        "spillpool demo: {count} values of {} ({} per backend), blobs and Arrow tables",
        format_size(value_size as u64),
        format_size(total)
    );
    println!("{:<50} {:>12} {:>12}", "backend", "put MB/s", "get MB/s");
    let values: Vec<(Value, u64)> = (0..count)
        .map(|i| {
            let v = make_value(i, value_size);
            let f = fingerprint(&v);
            (v, f)
        })
        .collect();
    let bytes: usize = values.iter().map(|(v, _)| v.size()).sum();
    let mut verified = 0usize;
    let result = (|| -> Result<()> {
        for uri in &uris {
            let backend = spillpool::open(uri).with_context(|| format!("cannot open {uri}"))?;
            let keys: Vec<Key> = (0..count)
                .map(|i| Key::new(format!("demo/{i}")))
                .collect::<Result<_, _>>()?;
            let start = Instant::now();
            for (k, (v, _)) in keys.iter().zip(&values) {
                backend
                    .put_value(k, v)
                    .with_context(|| format!("put {k} into {uri}"))?;
            }
            let put_s = start.elapsed().as_secs_f64();
            let start = Instant::now();
            // Read back in a different order than written.
            for i in (0..count).rev() {
                let got = backend.fetch_value(&keys[i])?;
                if fingerprint(&got) != values[i].1 {
                    bail!(
                        "value {} read back from {uri} differs from what was written",
                        keys[i]
                    );
                }
                verified += 1;
            }
            let get_s = start.elapsed().as_secs_f64();
            let mb = bytes as f64 / 1e6;
            println!(
                "{:<50} {:>12.0} {:>12.0}",
                backend.to_string(),
                mb / put_s,
                mb / get_s
            );
        }
        Ok(())
    })();
    let _ = ShmBackend::destroy_namespace(&shm_name);
    result?;
    println!(
        "verified {verified} values, {} in {} backends",
        format_size(bytes as u64 * uris.len() as u64),
        uris.len()
    );
    Ok(())
}
