//! `spillpool bench …`: throughput measured beside the machine's own limits, in one run.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use spillpool::pool::Pool;
use spillpool::{Value, format_size, parse_size};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand, Debug)]
enum Suite {
    /// Put a working set several times the memory bound, then get it all back
    /// (in order and at random), beside raw file write and read of the same bytes.
    Pool(PoolBench),
    /// The cost of each filter (compression, encryption, both) on incompressible
    /// and categorical tables, beside the codecs called directly.
    Filters(crate::bench_filters::FiltersBench),
    /// Register many small CSV files (ns per file), then time first reads of a sample.
    Lazy(crate::bench_lazy::LazyBench),
    /// ArcticDB's LMDB-tutorial workload on the named store (10 float64
    /// columns, 200-1000 MB, write and read per storage) beside raw disk and
    /// memcpy limits, plus 10,000 small symbols.
    Store(crate::bench_store::StoreBench),
}

#[derive(Args, Debug)]
struct PoolBench {
    /// The pool's memory bound.
    #[arg(long, default_value = "512MiB")]
    memory_limit: String,
    /// Working set (several times the bound).
    #[arg(long, default_value = "4GiB")]
    data: String,
    /// Size of each value.
    #[arg(long, default_value = "8MiB")]
    value_size: String,
    /// Repeats of every measurement (min / median / max are reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Directory for spill files and raw files (default: the system temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write every measurement here as CSV.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Put Arrow tables (8 float64 columns over the same bytes) instead of blobs.
    #[arg(long)]
    tables: bool,
}

/// One timed operation over `bytes`.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub storage: String,
    pub op: &'static str,
    pub bytes: u64,
    pub repeat: usize,
    pub seconds: f64,
}

impl Sample {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

impl BenchArgs {
    /// Whether the benchmark runs a memory-bounded pool.
    pub fn runs_a_pool(&self) -> bool {
        !matches!(self.suite, Suite::Store(_))
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.suite {
        Suite::Pool(a) => bench_pool(a),
        Suite::Filters(a) => crate::bench_filters::run(a),
        Suite::Lazy(a) => crate::bench_lazy::run(a),
        Suite::Store(a) => crate::bench_store::run(a),
    }
}

/// One step of xorshift64: deterministic, fast test data (not for anything secret).
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Multiplier that spreads small seeds before xorshift (whose first outputs
/// from a small state are small).
pub(crate) const SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// `size` deterministic bytes from `seed`: xorshift64 words from
/// `seed * SEED_MIX | 1`. Test data for `kv fill` and the soak, which
/// checkers regenerate.
pub(crate) fn generated(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(SEED_MIX) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&xorshift(&mut state).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Distinct values without generating gigabytes: slices of one random block.
fn values(count: usize, size: usize) -> Vec<Bytes> {
    let block_len = (64 << 20).max(size * 2);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = Vec::with_capacity(block_len + 8);
    while block.len() < block_len {
        block.extend_from_slice(&xorshift(&mut state).to_le_bytes());
    }
    let block = Bytes::from(block);
    (0..count)
        .map(|i| {
            let offset = (i * 4099 * 8) % (block_len - size);
            block.slice(offset..offset + size)
        })
        .collect()
}

/// `bytes` as a table of 8 float64 columns sharing its memory: every byte
/// is a value's, so a table's size is the blob's (`bench_pool` asks for a
/// multiple of 64 bytes).
fn as_table(bytes: &Bytes) -> Result<Value> {
    use std::sync::Arc;
    if !bytes.len().is_multiple_of(64) || bytes.as_ptr().align_offset(8) != 0 {
        bail!(
            "{} bytes at {:p}: tables need a multiple of 64 bytes, 8-aligned",
            bytes.len(),
            bytes.as_ptr()
        );
    }
    let column_len = bytes.len() / 8;
    let columns = (0..8).map(|c| {
        let buffer = arrow_buffer::Buffer::from(bytes.slice(c * column_len..(c + 1) * column_len));
        let values = arrow_buffer::ScalarBuffer::<f64>::new(buffer, 0, column_len / 8);
        (
            format!("c{c}"),
            Arc::new(arrow_array::Float64Array::new(values, None)) as arrow_array::ArrayRef,
        )
    });
    Ok(Value::Table(spillpool::Table::from(
        arrow_array::RecordBatch::try_from_iter(columns)?,
    )))
}

fn shuffled(count: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    let mut state = seed | 1;
    for i in (1..count).rev() {
        order.swap(i, (xorshift(&mut state) % (i as u64 + 1)) as usize);
    }
    order
}

/// Flushes dirty pages (untimed) so that no phase pays for the previous one's writeback.
pub(crate) fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn raw_write(dir: &Path, values: &[Bytes]) -> Result<f64> {
    let start = Instant::now();
    for (i, v) in values.iter().enumerate() {
        let path = dir.join(format!("raw-{i}"));
        File::create(&path)
            .and_then(|mut f| f.write_all(v))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn raw_read(dir: &Path, count: usize, size: usize) -> Result<f64> {
    let mut buf = vec![0u8; size];
    let start = Instant::now();
    for i in 0..count {
        let path = dir.join(format!("raw-{i}"));
        File::open(&path)
            .and_then(|mut f| f.read_exact(&mut buf))
            .with_context(|| format!("read {}", path.display()))?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn bench_pool(a: PoolBench) -> Result<()> {
    let memory_limit = parse_size(&a.memory_limit, "--memory-limit")?;
    let data = parse_size(&a.data, "--data")?;
    let size = parse_size(&a.value_size, "--value-size")?.max(1) as usize;
    if a.tables && !size.is_multiple_of(64) {
        bail!(
            "--value-size {size}: with --tables it must be a multiple of 64 bytes (8 float64 columns)"
        );
    }
    let count = (data as usize).div_ceil(size).max(1);
    let bytes = (count * size) as u64;
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("spillpool-bench-")
        .tempdir_in(&base)?;
    let vals = values(count, size);
    let puts: Vec<Value> = if a.tables {
        vals.iter().map(as_table).collect::<Result<_>>()?
    } else {
        vals.iter().map(|v| Value::Blob(v.clone())).collect()
    };
    println!(
        "bench pool: {count} {} of {} ({}) through a {} memory bound, {} repeats, in {}",
        if a.tables { "tables" } else { "blobs" },
        format_size(size as u64),
        format_size(bytes),
        format_size(memory_limit),
        a.repeats,
        base.display()
    );
    let mut samples: Vec<Sample> = Vec::new();
    // One untimed round first: the VM hands back idle memory, so touch it before timing.
    for repeat in 0..=a.repeats {
        let timed = repeat > 0;
        let raw_dir = work.path().join(format!("raw-{repeat}"));
        std::fs::create_dir_all(&raw_dir)?;
        settle();
        let w = raw_write(&raw_dir, &vals)?;
        let r = raw_read(&raw_dir, count, size)?;
        std::fs::remove_dir_all(&raw_dir)?;
        settle();

        let spill = work.path().join(format!("spill-{repeat}"));
        let pool = Pool::builder()
            .memory_limit(memory_limit)
            .spill_dirs([&spill])
            .build()?;
        let start = Instant::now();
        let refs: Vec<_> = puts
            .iter()
            .map(|v| pool.put(v.clone()))
            .collect::<spillpool::Result<_>>()?;
        let put = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for r in &refs {
            pool.get(r)?;
        }
        let get_seq = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for i in shuffled(count, repeat as u64 + 1) {
            pool.get(&refs[i])?;
        }
        let get_rand = start.elapsed().as_secs_f64();
        drop(refs);
        drop(pool);
        if timed {
            for (storage, op, seconds) in [
                ("hw-disk", "write", w),
                ("hw-disk", "read", r),
                ("pool", "put", put),
                ("pool", "get-seq", get_seq),
                ("pool", "get-random", get_rand),
            ] {
                samples.push(Sample {
                    storage: storage.to_string(),
                    op,
                    bytes,
                    repeat,
                    seconds,
                });
            }
        }
    }
    report(&samples, "pool", a.out.as_deref())?;
    let median = |storage: &str, op: &str| median(&samples, storage, op);
    println!(
        "ratios (medians): put/raw write {:.2}, get-seq/raw read {:.2}, get-random/raw read {:.2}",
        median("pool", "put") / median("hw-disk", "write"),
        median("pool", "get-seq") / median("hw-disk", "read"),
        median("pool", "get-random") / median("hw-disk", "read"),
    );
    Ok(())
}

/// Prints min / median / max per (storage, op) and writes every sample as CSV.
pub(crate) fn report(samples: &[Sample], suite: &str, out: Option<&Path>) -> Result<()> {
    println!(
        "{:<28} {:<11} {:>10} {:>10} {:>10}",
        "storage", "op", "min MB/s", "median", "max"
    );
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for s in samples {
        if !keys.contains(&(s.storage.as_str(), s.op)) {
            keys.push((s.storage.as_str(), s.op));
        }
    }
    for (storage, op) in keys {
        let v = sorted(samples, storage, op);
        let (min, med, max) = (v[0], v[v.len() / 2], v[v.len() - 1]);
        println!("{storage:<28} {op:<11} {min:>10.0} {med:>10.0} {max:>10.0}");
    }
    if let Some(path) = out {
        write_csv(samples, path, |_| suite)?;
    }
    Ok(())
}

/// Writes every sample as a CSV row `suite,storage,op,bytes,repeat,seconds,mb_per_s`.
pub(crate) fn write_csv<'s>(
    samples: &'s [Sample],
    path: &Path,
    suite_of: impl Fn(&'s Sample) -> &'s str,
) -> Result<()> {
    let mut csv = String::from("suite,storage,op,bytes,repeat,seconds,mb_per_s\n");
    for s in samples {
        csv.push_str(&format!(
            "{},{},{},{},{},{:.6},{:.1}\n",
            suite_of(s),
            s.storage,
            s.op,
            s.bytes,
            s.repeat,
            s.seconds,
            s.mb_per_s()
        ));
    }
    std::fs::write(path, csv).with_context(|| format!("write {}", path.display()))
}

/// MB/s of every sample of (storage, op), sorted.
fn sorted(samples: &[Sample], storage: &str, op: &str) -> Vec<f64> {
    let mut v: Vec<f64> = samples
        .iter()
        .filter(|s| s.storage == storage && s.op == op)
        .map(Sample::mb_per_s)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The median MB/s of (storage, op).
pub(crate) fn median(samples: &[Sample], storage: &str, op: &str) -> f64 {
    let v = sorted(samples, storage, op);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
