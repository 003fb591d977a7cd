//! `spillpool demo lazy DIR_OR_GLOB`: register files in nanoseconds, parse on first read.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use spillpool::pool::Pool;
use spillpool::{Table, format_size};

#[derive(Args, Debug)]
pub struct LazyArgs {
    /// A directory of table files, or a glob such as 'data/*.csv'.
    dir_or_glob: String,
    /// How many of the registered files to read.
    #[arg(long, default_value_t = 10)]
    sample: usize,
}

pub fn run(args: LazyArgs) -> Result<()> {
    let pool = Pool::from_env().context("cannot start the pool")?;
    let start = Instant::now();
    let refs = pool
        .register_glob(&args.dir_or_glob, None)
        .with_context(|| format!("cannot register {}", args.dir_or_glob))?;
    let took = start.elapsed();
    println!(
        "registered {} files from {} in {:.3} ms (listing included): {:.0} ns per file",
        refs.len(),
        args.dir_or_glob,
        took.as_secs_f64() * 1e3,
        took.as_nanos() as f64 / refs.len().max(1) as f64
    );
    let n = args.sample.min(refs.len());
    for k in 0..n {
        let i = k * refs.len() / n.max(1);
        let start = Instant::now();
        match pool.get(&refs[i]) {
            Ok(v) => println!(
                "read #{i}: {} rows in {:.2} ms",
                v.as_table().map(Table::num_rows).unwrap_or(0),
                start.elapsed().as_secs_f64() * 1e3
            ),
            Err(e) => println!("read #{i}: {e}"),
        }
    }
    let s = pool.stats();
    println!(
        "parsed {} of {} files; {} in memory",
        s.file_reads,
        refs.len(),
        format_size(s.memory_used)
    );
    Ok(())
}
