//! `spillpool demo`: the main job. A pool with a small memory bound works
//! through much more data than fits, then proves every value came back intact.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use spillpool::pool::{Pool, policy_by_name};
use spillpool::{Table, Value, format_size, parse_size};
use xxhash_rust::xxh3::Xxh3;

use crate::{demo_backends, rss};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    which: Option<DemoKind>,
    #[command(flatten)]
    pool: PoolDemoArgs,
}

#[derive(Subcommand, Debug)]
enum DemoKind {
    /// Store and read back blobs and tables on every backend (mem, file, lmdb, shm).
    Backends(demo_backends::BackendsArgs),
    /// Register every table file of a directory or glob, then read a sample.
    Lazy(crate::demo_lazy::LazyArgs),
}

#[derive(Args, Debug)]
pub struct PoolDemoArgs {
    /// The pool's memory bound.
    #[arg(long, default_value = "256MiB")]
    memory_limit: String,
    /// Total size of the tables to generate.
    #[arg(long, default_value = "2GiB")]
    data: String,
    /// Size of each table.
    #[arg(long, default_value = "4MiB")]
    value_size: String,
    /// Where to spill (default: a fresh temporary directory, removed at the end).
    #[arg(long)]
    spill_dir: Option<std::path::PathBuf>,
    /// Eviction policy: lru or mru.
    #[arg(long, default_value = "lru")]
    policy: String,
}

pub fn run(args: DemoArgs) -> Result<()> {
    match args.which {
        Some(DemoKind::Backends(a)) => demo_backends::run(a),
        Some(DemoKind::Lazy(a)) => crate::demo_lazy::run(a),
        None => run_pool(args.pool),
    }
}

/// Rows of an i64, an f64 and a short string column: about 30 bytes a row.
const ROW_BYTES: usize = 30;

/// Generates table `i` of about `size` bytes; deterministic in `i`.
fn make_table(i: usize, size: usize) -> Result<Table> {
    let rows = (size / ROW_BYTES).max(1);
    let seed = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
        (0..rows as u64).map(|r| (r ^ seed) as i64),
    ));
    let xs: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..rows).map(|r| (r as f64) * 0.5 + i as f64),
    ));
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..rows).map(|r| ["alpha", "beta", "delta", "eta"][(r + i) % 4]),
    ));
    let batch = RecordBatch::try_from_iter([("id", ids), ("x", xs), ("name", names)])?;
    Ok(Table::from(batch))
}

/// A checksum of a table's content, independent of where its buffers live.
fn checksum(table: &Table) -> u64 {
    let mut h = Xxh3::new();
    for batch in table.batches() {
        for column in batch.columns() {
            let data = column.to_data();
            h.update(&(data.len() as u64).to_le_bytes());
            h.update(&(column.null_count() as u64).to_le_bytes());
            for buffer in data.buffers() {
                h.update(buffer.as_slice());
            }
        }
    }
    h.digest()
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>7} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn run_pool(args: PoolDemoArgs) -> Result<()> {
    let memory_limit = parse_size(&args.memory_limit, "--memory-limit")?;
    let total = parse_size(&args.data, "--data")?;
    let value_size = parse_size(&args.value_size, "--value-size")?.max(1024) as usize;
    let count = (total as usize).div_ceil(value_size);
    let policy = policy_by_name(&args.policy).with_context(|| {
        format!(
            "--policy {:?} is not a policy (use lru or mru)",
            args.policy
        )
    })?;
    // SPILLPOOL_* variables (disk limit, spill dirs, filters) apply where no
    // flag says otherwise; a malformed one is an error, not ignored.
    let mut builder = Pool::builder()
        .from_env()
        .context("invalid SPILLPOOL_* environment")?
        .memory_limit(memory_limit);
    builder = match policy.name() {
        "mru" => builder.policy(spillpool::pool::Mru),
        _ => builder.policy(spillpool::pool::Lru),
    };
    if let Some(dir) = &args.spill_dir {
        builder = builder.spill_dirs([dir]);
    }
    let pool = builder.build().context("cannot start the pool")?;
    println!(
        "spillpool demo: {count} tables of {} ({} in all) through a pool bounded at {}, policy {}",
        format_size(value_size as u64),
        format_size(total),
        format_size(memory_limit),
        policy.name()
    );
    println!(
        "spilling to {}",
        pool.spill_dirs()
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );

    let start = Instant::now();
    let put_bar = bar(total, "put");
    let mut refs = Vec::with_capacity(count);
    let mut bytes = 0u64;
    for i in 0..count {
        let table = make_table(i, value_size)?;
        let sum = checksum(&table);
        let size = table.size() as u64;
        bytes += size;
        refs.push((
            pool.put(Value::Table(table))
                .with_context(|| format!("put of table {i}"))?,
            sum,
        ));
        put_bar.inc(size);
    }
    put_bar.finish_and_clear();
    let put_secs = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let get_bar = bar(bytes, "verify");
    let mut verified = 0usize;
    // A stride coprime with the count visits every table once, out of order.
    let stride = (1..=count)
        .rev()
        .find(|s| gcd(*s, count) == 1 && *s < count.max(2))
        .unwrap_or(1);
    for k in 0..count {
        let i = (k * stride) % count;
        let (r, want) = &refs[i];
        let guard = pool.get(r).with_context(|| format!("get of table {i}"))?;
        let Some(table) = guard.as_table() else {
            bail!("table {i} came back as a blob")
        };
        if checksum(table) != *want {
            bail!("table {i} differs from what was put: checksum mismatch");
        }
        verified += 1;
        get_bar.inc(r.size());
    }
    get_bar.finish_and_clear();
    let get_secs = start.elapsed().as_secs_f64();

    let mb = bytes as f64 / 1e6;
    println!("put    {:>8.0} MB/s  ({put_secs:.1} s)", mb / put_secs);
    println!(
        "verify {:>8.0} MB/s  ({get_secs:.1} s, reading back and checking every table)",
        mb / get_secs
    );
    println!("{}", pool.stats());
    println!(
        "verified {verified} values, {:.2} GiB, peak RSS {} MiB",
        bytes as f64 / (1u64 << 30) as f64,
        rss::peak_rss_bytes().map(|b| b >> 20).unwrap_or(0)
    );
    Ok(())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
