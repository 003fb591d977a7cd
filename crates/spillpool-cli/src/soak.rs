//! `spillpool soak`: many threads work a pool whose working set is ten
//! times its memory bound, for a bounded time; every value read back is
//! checked, peak memory is held to the bound, and nothing is left on disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use parking_lot::Mutex;
use spillpool::pool::{Pool, Ref};
use spillpool::{Value, format_size, parse_size};

use crate::bench::{SEED_MIX, generated, xorshift};
use crate::rss;

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// The pool's memory bound.
    #[arg(long, default_value = "256MiB")]
    memory_limit: String,
    /// Working set, as a multiple of the memory bound.
    #[arg(long, default_value_t = 10)]
    factor: u64,
    /// Size of each value.
    #[arg(long, default_value = "1MiB")]
    value_size: String,
    /// Worker threads.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// How long to run.
    #[arg(long, default_value = "60s", value_parser = crate::store_cmd::parse_duration)]
    duration: Duration,
    /// Spill directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    spill_dir: Option<PathBuf>,
}

/// Stack and malloc arena a worker thread may touch.
const THREAD_RUNTIME: u64 = 512 << 10;

/// Whether `bytes` are [`generated`]`(seed, size)`, without building them.
fn matches(seed: u64, size: usize, bytes: &[u8]) -> bool {
    if bytes.len() != size {
        return false;
    }
    let mut state = seed.wrapping_mul(SEED_MIX) | 1;
    bytes.chunks(8).all(|chunk| {
        let word = xorshift(&mut state).to_le_bytes();
        chunk == &word[..chunk.len()]
    })
}

#[derive(Default)]
struct Counts {
    puts: AtomicU64,
    gets: AtomicU64,
    verified_bytes: AtomicU64,
    deletes: AtomicU64,
    spills: AtomicU64,
}

pub fn run(a: SoakArgs) -> Result<()> {
    let limit = parse_size(&a.memory_limit, "--memory-limit")?;
    let size = parse_size(&a.value_size, "--value-size")? as usize;
    if size == 0 || a.threads == 0 {
        bail!("--value-size and --threads must be positive");
    }
    let slots = (limit.saturating_mul(a.factor) / size as u64).max(1) as usize;
    let temp = tempfile::Builder::new()
        .prefix("spillpool-soak-")
        .tempdir()?;
    let dir = a
        .spill_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let baseline = rss::current_rss_bytes().unwrap_or(0);
    let pool = Pool::builder()
        .from_env()
        .context("invalid SPILLPOOL_* environment")?
        .memory_limit(limit)
        .spill_dirs(vec![dir.clone()])
        .build()?;
    let table: Vec<Mutex<Option<(Ref, u64)>>> = (0..slots).map(|_| Mutex::new(None)).collect();
    let counts = Counts::default();
    let failed = AtomicBool::new(false);
    let failure = Mutex::new(None::<String>);
    let deadline = Instant::now() + a.duration;
    println!(
        "soak: {} threads, {slots} slots of {} ({} working set) through a {} pool, for {:?}",
        a.threads,
        format_size(size as u64),
        format_size(slots as u64 * size as u64),
        format_size(limit),
        a.duration
    );
    std::thread::scope(|s| {
        for t in 0..a.threads {
            let (pool, table, counts, failed, failure) =
                (&pool, &table, &counts, &failed, &failure);
            s.spawn(move || {
                let mut rng =
                    0xA076_1D64_78BD_642Fu64 ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let fail = |msg: String| {
                    failed.store(true, Ordering::SeqCst);
                    failure.lock().get_or_insert(msg);
                };
                while Instant::now() < deadline && !failed.load(Ordering::SeqCst) {
                    let slot = (xorshift(&mut rng) % slots as u64) as usize;
                    let roll = xorshift(&mut rng) % 100;
                    let mut cell = table[slot].lock();
                    match (roll, cell.as_ref()) {
                        (0..=54, Some((r, seed))) => match pool.get(r) {
                            Ok(g) if g.as_blob().is_some_and(|b| matches(*seed, size, b)) => {
                                counts.gets.fetch_add(1, Ordering::Relaxed);
                                counts
                                    .verified_bytes
                                    .fetch_add(size as u64, Ordering::Relaxed);
                            }
                            Ok(_) => fail(format!("slot {slot}: value {seed} read back wrong")),
                            Err(e) => fail(format!("slot {slot}: get: {e}")),
                        },
                        (55..=64, Some((r, _))) => match pool.delete(r) {
                            Ok(()) => {
                                *cell = None;
                                counts.deletes.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => fail(format!("slot {slot}: delete: {e}")),
                        },
                        (65..=69, Some((r, _))) => match pool.move_to_disk(r) {
                            Ok(()) => {
                                counts.spills.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => fail(format!("slot {slot}: move to disk: {e}")),
                        },
                        _ => {
                            let seed = xorshift(&mut rng);
                            match pool.put(Value::Blob(generated(seed, size).into())) {
                                // Replacing drops the old handle: its value is freed everywhere.
                                Ok(r) => {
                                    *cell = Some((r, seed));
                                    counts.puts.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => fail(format!("slot {slot}: put: {e}")),
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(msg) = failure.lock().take() {
        bail!("soak failed: {msg}");
    }
    // A last full check of every value.
    let mut last = 0u64;
    for (slot, cell) in table.iter().enumerate() {
        if let Some((r, seed)) = cell.lock().as_ref() {
            let g = pool
                .get(r)
                .with_context(|| format!("final get of slot {slot}"))?;
            if !g.as_blob().is_some_and(|b| matches(*seed, size, b)) {
                bail!("slot {slot}: value {seed} read back wrong at the end");
            }
            last += 1;
        }
    }
    let stats = pool.stats();
    drop(table);
    drop(pool);
    let peak = rss::peak_rss_bytes().unwrap_or(0);
    // Per worker thread, beyond the pool's bound: the value it generates
    // before `put` accounts it, and its stack and malloc arena.
    let per_thread = size as u64 + THREAD_RUNTIME;
    let allowed = limit + limit / 10 + baseline + a.threads as u64 * per_thread;
    let left: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("list {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    let c = &counts;
    println!(
        "ops: {} puts, {} gets ({} verified), {} deletes, {} moves to disk; {last} values checked at the end",
        c.puts.load(Ordering::Relaxed),
        c.gets.load(Ordering::Relaxed),
        format_size(c.verified_bytes.load(Ordering::Relaxed)),
        c.deletes.load(Ordering::Relaxed),
        c.spills.load(Ordering::Relaxed),
    );
    println!("pool: {stats}");
    println!(
        "peak RSS {} (allowed {}: bound + 10 % + baseline {} + {} per thread: its value in flight, stack and arena); files left: {}; values lost: 0",
        format_size(peak),
        format_size(allowed),
        format_size(baseline),
        format_size(per_thread),
        left.len()
    );
    if peak > allowed {
        bail!(
            "peak RSS {} exceeds {}",
            format_size(peak),
            format_size(allowed)
        );
    }
    if !left.is_empty() {
        bail!("files left in {}: {left:?}", dir.display());
    }
    Ok(())
}
