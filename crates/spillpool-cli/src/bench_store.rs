//! `spillpool bench store`: the profiling workload of ArcticDB's LMDB
//! tutorial (a table of 10 random float64 columns, 200 MB to 1000 MB,
//! written then read on each storage), beside the machine's limits for the
//! same bytes measured in the same run, plus a small-symbol workload.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use spillpool::{Library, Store, Table, parse_size};

use crate::bench::{Sample, median, report, settle, xorshift};

const STORAGES: [&str; 4] = ["lmdb", "lmdb-tmpfs", "file", "mem"];

#[derive(Args, Debug)]
pub struct StoreBench {
    /// Table sizes (10 float64 columns), comma-separated.
    #[arg(long, default_value = "200MB,600MB,1000MB", value_delimiter = ',')]
    sizes: Vec<String>,
    /// Storages, comma-separated: lmdb (on disk), lmdb-tmpfs (on /dev/shm), file, mem.
    #[arg(
        long,
        default_value = "lmdb,lmdb-tmpfs,file,mem",
        value_delimiter = ','
    )]
    storages: Vec<String>,
    /// Repeats of every measurement, each on a fresh store (min / median / max are reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Symbols in the small-symbol workload (100 rows × 3 float64 each; 0 skips it).
    #[arg(long, default_value_t = 10_000)]
    symbols: usize,
    /// Symbols per batch in the small-symbol workload.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Directory on the disk to measure (default: the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write every measurement here as CSV.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw MB/s by size and storage here (SVG).
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Bytes of tiles per backend batch (one LMDB transaction each) for the large writes.
    #[arg(long, default_value = "8MiB")]
    batch_bytes: String,
}

/// ArcticDB's tutorial table: 10 columns of random float64.
fn random_table(bytes: u64) -> Result<Table> {
    let rows = (bytes / 80) as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let cols = (0..10)
        .map(|c| {
            let a: ArrayRef =
                Arc::new(Float64Array::from_iter_values((0..rows).map(|_| {
                    (xorshift(&mut state) >> 11) as f64 / (1u64 << 53) as f64
                })));
            (format!("c{c}"), a)
        })
        .collect::<Vec<_>>();
    Ok(Table::from(RecordBatch::try_from_iter(cols)?))
}

/// A fresh store of `kind` whose files live in a directory removed on drop.
fn fresh_store(kind: &str, disk: &Path) -> Result<(Store, Option<tempfile::TempDir>)> {
    let (uri, dir) = fresh_uri(kind, disk)?;
    Ok((Store::open(&uri)?, dir))
}

/// A URI of `kind` on a fresh directory (removed when the guard drops).
fn fresh_uri(kind: &str, disk: &Path) -> Result<(String, Option<tempfile::TempDir>)> {
    let temp = |root: &Path| {
        tempfile::Builder::new()
            .prefix("spillpool-bench-store-")
            .tempdir_in(root)
            .with_context(|| format!("temporary directory in {}", root.display()))
    };
    let (uri, dir) = match kind {
        "mem" => ("mem://".to_string(), None),
        "lmdb" => {
            let d = temp(disk)?;
            (format!("lmdb://{}", d.path().display()), Some(d))
        }
        "lmdb-tmpfs" => {
            let d = temp(Path::new("/dev/shm"))?;
            (format!("lmdb://{}", d.path().display()), Some(d))
        }
        "file" => {
            let d = temp(disk)?;
            (format!("file://{}", d.path().display()), Some(d))
        }
        other => bail!("unknown storage {other:?} (known: {})", STORAGES.join(", ")),
    };
    Ok((uri, dir))
}

/// LMDB's own cost for the same bytes: 8 MB blob frames (a tile's size,
/// encoded before timing) put straight into a fresh environment of `kind`,
/// `batch_bytes` per transaction, as the store batches them. What is left
/// between this and the raw write is LMDB's; between this and the store, ours.
fn lmdb_itself(kind: &str, disk: &Path, raw: &bytes::Bytes, batch_bytes: usize) -> Result<f64> {
    let (uri, _dir) = fresh_uri(kind, disk)?;
    let backend = spillpool::open(&uri)?;
    const TILE: usize = 8 << 20;
    let per_batch = (batch_bytes / TILE).max(1);
    let mut batches: Vec<Vec<(spillpool::Key, spillpool::frame::Frame)>> = Vec::new();
    for (i, start) in (0..raw.len()).step_by(TILE).enumerate() {
        let tile = raw.slice(start..(start + TILE).min(raw.len()));
        let key = spillpool::Key::new(format!("tile/{i:06}"))?;
        let frame = spillpool::frame::encode(&spillpool::Value::Blob(tile))?;
        if i % per_batch == 0 {
            batches.push(Vec::new());
        }
        if let Some(batch) = batches.last_mut() {
            batch.push((key, frame));
        }
    }
    settle();
    let start = Instant::now();
    for batch in batches {
        backend.put_batch(batch)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Reads every value, so that a zero-copy read pays for touching its bytes.
fn scan(table: &Table) -> f64 {
    let mut sum = 0.0;
    for b in table.batches() {
        for c in b.columns() {
            if let Some(f) = c.as_any().downcast_ref::<Float64Array>() {
                sum += f.values().iter().sum::<f64>();
            }
        }
    }
    sum
}

fn raw_buffer(table: &Table) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.size());
    for b in table.batches() {
        for c in b.columns() {
            for buf in c.to_data().buffers() {
                out.extend_from_slice(buf.as_slice());
            }
        }
    }
    out
}

pub fn run(a: StoreBench) -> Result<()> {
    let disk = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    for s in &a.storages {
        if !STORAGES.contains(&s.as_str()) {
            bail!("unknown storage {s:?} (known: {})", STORAGES.join(", "));
        }
    }
    let sizes = a
        .sizes
        .iter()
        .map(|s| parse_size(s, "--sizes"))
        .collect::<Result<Vec<u64>, _>>()?;
    let repeats = a.repeats.max(1);
    let options = spillpool::store::StoreOptions {
        batch_bytes: parse_size(&a.batch_bytes, "--batch-bytes")? as usize,
        ..Default::default()
    };
    let steps = sizes.len() * repeats * (a.storages.len() + 2);
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut samples = Vec::new();
    let mut size_bytes = Vec::new();
    for &size in &sizes {
        let table = random_table(size)?;
        let bytes = table.size() as u64;
        size_bytes.push((size, bytes));
        // One buffer for every limit, so it is warm when each is measured
        // (this VM is slow to touch memory left idle for seconds).
        let raw = bytes::Bytes::from(raw_buffer(&table));
        let mut copy = vec![1u8; raw.len()]; // touched up front: fresh memory is slow here
        for repeat in 0..repeats {
            bar.set_message(format!("hw {} MB", size / 1_000_000));
            let (w, r) = hw_disk(&disk, &raw)?;
            samples.push(sample("hw-disk", "write+fsync", bytes, repeat, w));
            samples.push(sample("hw-disk", "read", bytes, repeat, r));
            if a.storages.iter().any(|k| k == "lmdb-tmpfs") {
                // The limit for lmdb-tmpfs: the same bytes written into a tmpfs file.
                let (w, _) = hw_disk(Path::new("/dev/shm"), &raw)?;
                samples.push(sample("hw-tmpfs", "write", bytes, repeat, w));
            }
            let start = Instant::now();
            copy.copy_from_slice(&raw);
            std::hint::black_box(&copy);
            samples.push(sample(
                "hw-memcpy",
                "copy",
                bytes,
                repeat,
                start.elapsed().as_secs_f64(),
            ));
            bar.inc(2);
            for kind in a.storages.iter().filter(|k| k.starts_with("lmdb")) {
                let seconds = lmdb_itself(kind, &disk, &raw, options.batch_bytes)?;
                samples.push(sample(
                    &format!("{kind}-itself"),
                    "write",
                    bytes,
                    repeat,
                    seconds,
                ));
            }
            for kind in &a.storages {
                bar.set_message(format!("{kind} {} MB", size / 1_000_000));
                let (uri, dir) = fresh_uri(kind, &disk)?;
                let store = Store::open_with(&uri, options)?;
                let lib = store.create_library("bench")?;
                settle();
                let start = Instant::now();
                lib.write("sym", &table)?;
                samples.push(sample(
                    kind,
                    "write",
                    bytes,
                    repeat,
                    start.elapsed().as_secs_f64(),
                ));
                let start = Instant::now();
                let read = lib.read("sym")?;
                samples.push(sample(
                    kind,
                    "read",
                    bytes,
                    repeat,
                    start.elapsed().as_secs_f64(),
                ));
                let sum = scan(&read.table);
                samples.push(sample(
                    kind,
                    "read+scan",
                    bytes,
                    repeat,
                    start.elapsed().as_secs_f64(),
                ));
                if read.table.num_rows() != table.num_rows() || !sum.is_finite() {
                    bail!(
                        "{kind}: read back {} rows of {}",
                        read.table.num_rows(),
                        table.num_rows()
                    );
                }
                drop((read, lib, store, dir));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    report(&samples, "store", None)?;
    println!();
    for &(size, bytes) in &size_bytes {
        let at: Vec<Sample> = samples
            .iter()
            .filter(|s| s.bytes == bytes)
            .cloned()
            .collect();
        for kind in &a.storages {
            let (limit, limit_name) = if kind == "lmdb-tmpfs" {
                (median(&at, "hw-tmpfs", "write"), "raw tmpfs write")
            } else {
                (median(&at, "hw-disk", "write+fsync"), "raw write+fsync")
            };
            let itself = median(&at, &format!("{kind}-itself"), "write");
            let itself = if itself.is_finite() && itself > 0.0 {
                format!(
                    " ({:.2}× LMDB itself, which is {:.2}× the limit)",
                    median(&at, kind, "write") / itself,
                    itself / limit
                )
            } else {
                String::new()
            };
            println!(
                "{} MB {kind:<10} write {:>6.0} MB/s = {:.2}× {limit_name}{itself}; read {:>7.0} MB/s, read+scan {:>6.0} MB/s",
                size / 1_000_000,
                median(&at, kind, "write"),
                median(&at, kind, "write") / limit,
                median(&at, kind, "read"),
                median(&at, kind, "read+scan"),
            );
        }
    }
    if a.symbols > 0 {
        println!();
        for kind in &a.storages {
            small_symbols(
                kind,
                &disk,
                a.symbols,
                a.batch.max(1),
                repeats,
                &mut samples,
            )?;
        }
    }
    if let Some(path) = &a.out {
        crate::bench::write_csv(&samples, path, |s| {
            if s.op.starts_with("small-") {
                "store-small"
            } else {
                "store"
            }
        })?;
    }
    if let Some(path) = &a.chart {
        crate::chart::draw(&samples, path)?;
        println!("chart: {}", path.display());
    }
    Ok(())
}

fn sample(storage: &str, op: &'static str, bytes: u64, repeat: usize, seconds: f64) -> Sample {
    Sample {
        storage: storage.to_string(),
        op,
        bytes,
        repeat,
        seconds,
    }
}

/// Raw write + fsync of `raw` to one file on the disk, then a read of it (page cache warm).
fn hw_disk(dir: &Path, raw: &[u8]) -> Result<(f64, f64)> {
    let path = dir.join(format!(".spillpool-bench-raw-{}", std::process::id()));
    settle();
    let start = Instant::now();
    let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(raw)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    let w = start.elapsed().as_secs_f64();
    drop(f);
    let mut back = vec![0u8; raw.len()];
    let start = Instant::now();
    File::open(&path)
        .and_then(|mut f| f.read_exact(&mut back))
        .with_context(|| format!("read {}", path.display()))?;
    let r = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok((w, r))
}

/// Many small symbols: written one by one and in batches, read one by one and in batches.
fn small_symbols(
    kind: &str,
    disk: &Path,
    n: usize,
    batch: usize,
    repeats: usize,
    samples: &mut Vec<Sample>,
) -> Result<()> {
    let tables: Vec<Table> = (0..n.min(1000))
        .map(|i| {
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
            let cols = (0..3)
                .map(|c| {
                    let a: ArrayRef = Arc::new(Float64Array::from_iter_values(
                        (0..100).map(|_| xorshift(&mut state) as f64),
                    ));
                    (format!("c{c}"), a)
                })
                .collect::<Vec<_>>();
            Ok(Table::from(RecordBatch::try_from_iter(cols)?))
        })
        .collect::<Result<_>>()?;
    let names: Vec<String> = (0..n).map(|i| format!("sym{i:06}")).collect();
    let table_of = |i: usize| &tables[i % tables.len()];
    let bytes = |count: usize| count as u64 * 2400;
    const OPS: [&str; 4] = [
        "small-write-one",
        "small-read-one",
        "small-write-batch",
        "small-read-batch",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); OPS.len()];
    // Repeat 0 is untimed: this VM is slow on memory it has not touched lately.
    for repeat in 0..=repeats {
        let mut time = |op: usize, count: usize, f: &mut dyn FnMut() -> Result<()>| {
            let start = Instant::now();
            f()?;
            let s = start.elapsed().as_secs_f64();
            if repeat > 0 {
                rates[op].push(count as f64 / s);
                samples.push(sample(kind, OPS[op], bytes(count), repeat, s));
            }
            Ok::<(), anyhow::Error>(())
        };
        // One by one: a fresh store; at most 2,000 symbols (each is a durable commit).
        let one = n.min(2000);
        let (store, dir) = fresh_store(kind, disk)?;
        let lib = store.create_library("small")?;
        time(0, one, &mut || {
            for (i, name) in names.iter().take(one).enumerate() {
                lib.write(name, table_of(i))?;
            }
            Ok(())
        })?;
        time(1, one, &mut || {
            for name in names.iter().take(one) {
                std::hint::black_box(lib.read(name)?);
            }
            Ok(())
        })?;
        drop((lib, store, dir));
        let (store, dir) = fresh_store(kind, disk)?;
        let lib: Library = store.create_library("small")?;
        time(2, n, &mut || {
            for (c, chunk) in names.chunks(batch).enumerate() {
                let items: Vec<(&str, &Table)> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.as_str(), table_of(c * batch + i)))
                    .collect();
                lib.write_batch(&items)?;
            }
            Ok(())
        })?;
        time(3, n, &mut || {
            for chunk in names.chunks(batch) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                std::hint::black_box(lib.read_batch(&refs)?);
            }
            Ok(())
        })?;
        if lib.list_symbols()?.len() != n {
            bail!(
                "{kind}: {} symbols listed, {n} written",
                lib.list_symbols()?.len()
            );
        }
        drop((lib, store, dir));
    }
    let line: Vec<String> = OPS
        .iter()
        .zip(&mut rates)
        .map(|(op, r)| {
            r.sort_by(f64::total_cmp);
            let (lo, mid, hi) = (r[0], r[r.len() / 2], r[r.len() - 1]);
            format!("{op} {mid:.0}/s ({lo:.0}–{hi:.0})")
        })
        .collect();
    println!(
        "small symbols on {kind:<10} ({n}; batches of {batch}; median of {repeats}, min–max): {}",
        line.join(", ")
    );
    Ok(())
}
