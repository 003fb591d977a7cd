//! `spillpool bench lazy`: registration cost per file, and first-read latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use spillpool::formats::Format;
use spillpool::pool::Pool;

use crate::bench::{Sample, report};

#[derive(Args, Debug)]
pub struct LazyBench {
    /// Number of CSV files (created if `--dir` does not hold them yet).
    #[arg(long, default_value_t = 87_600)]
    files: usize,
    /// Directory of CSV files to use (and to create them in); default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Files read after registration, to time first reads.
    #[arg(long, default_value_t = 100)]
    sample: usize,
    /// Repeats of the registration (each in a fresh pool).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Also write every measurement here as CSV.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// An hour of weather readings, one per minute: a small CSV like the MemPool.jl archive's.
fn hourly_csv(i: usize) -> String {
    let mut s = String::with_capacity(2048);
    s.push_str("minute,temperature,humidity,station\n");
    for m in 0..60 {
        let t = 10.0 + ((i * 60 + m) % 97) as f64 * 0.1;
        s.push_str(&format!("{m},{t:.1},{},st{}\n", 40 + (i + m) % 50, i % 20));
    }
    s
}

fn prepare(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let paths: Vec<PathBuf> = (0..n)
        .map(|i| dir.join(format!("hour-{i:06}.csv")))
        .collect();
    for (i, p) in paths.iter().enumerate() {
        if !p.exists() {
            std::fs::write(p, hourly_csv(i)).with_context(|| format!("write {}", p.display()))?;
        }
    }
    Ok(paths)
}

pub fn run(a: LazyBench) -> Result<()> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("spillpool-lazy-")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let start = Instant::now();
    let paths = prepare(&dir, a.files)?;
    println!(
        "bench lazy: {} CSV files in {} (prepared in {:.1} s)",
        paths.len(),
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    let mut samples = Vec::new();
    let mut ns_per_file = Vec::new();
    let mut kept = None;
    // One untimed round first, to warm the allocator on this VM.
    for repeat in 0..=a.repeats {
        let pool = Pool::builder().build()?;
        let batch = paths.clone();
        let start = Instant::now();
        let refs = pool.register_files(batch, Some(Format::Csv))?;
        let secs = start.elapsed().as_secs_f64();
        if repeat > 0 {
            ns_per_file.push(secs * 1e9 / paths.len().max(1) as f64);
            samples.push(Sample {
                storage: "pool".into(),
                op: "register",
                bytes: paths.len() as u64,
                repeat,
                seconds: secs,
            });
        }
        kept = Some((pool, refs));
    }
    ns_per_file.sort_by(f64::total_cmp);
    let (pool, refs) = kept.context("no registration ran")?;
    let n = a.sample.min(refs.len());
    let mut first_reads = Vec::new();
    for k in 0..n {
        let i = k * refs.len() / n.max(1);
        let start = Instant::now();
        pool.get(&refs[i])?;
        first_reads.push(start.elapsed().as_secs_f64() * 1e6);
    }
    first_reads.sort_by(f64::total_cmp);
    report(&samples, "lazy", a.out.as_deref())?;
    let pick = |v: &[f64], q: usize| v.get(q).copied().unwrap_or(0.0);
    println!(
        "registration: {:.1} / {:.1} / {:.1} ns per file (min / median / max of {} repeats)",
        pick(&ns_per_file, 0),
        pick(&ns_per_file, ns_per_file.len() / 2),
        pick(&ns_per_file, ns_per_file.len().saturating_sub(1)),
        ns_per_file.len()
    );
    println!(
        "first read: {:.0} / {:.0} / {:.0} µs (min / median / max of {n} files); pool holds {} after them; peak RSS {} MiB",
        pick(&first_reads, 0),
        pick(&first_reads, first_reads.len() / 2),
        pick(&first_reads, first_reads.len().saturating_sub(1)),
        spillpool::format_size(pool.stats().memory_used),
        crate::rss::peak_rss_bytes().map(|b| b >> 20).unwrap_or(0)
    );
    println!(
        "registration_ns_per_file={:.1}",
        pick(&ns_per_file, ns_per_file.len() / 2)
    );
    Ok(())
}
