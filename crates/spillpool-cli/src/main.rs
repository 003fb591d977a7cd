//! `spillpool`: the command-line tool, a thin layer over the library.

mod bench;
mod bench_filters;
mod bench_lazy;
mod bench_store;
mod chart;
mod demo;
mod demo_backends;
mod demo_lazy;
mod kv;
mod rss;
mod soak;
mod store_cmd;

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// spillpool: storage for intermediate data — memory, disk, shared memory, LMDB.
#[derive(Parser, Debug)]
#[command(name = "spillpool", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Put, get, list and remove values in a backend named by URI
    /// (mem://, file:///DIR, lmdb:///DIR, shm://NAME).
    Kv(kv::KvArgs),
    /// The main job: a memory-bounded pool works through more data than fits
    /// (spilling to disk), then verifies every value. `demo backends` tours the backends.
    Demo(demo::DemoArgs),
    /// Libraries, symbols and versions of tables in a named store on any backend.
    Store(store_cmd::StoreArgs),
    /// Many threads work a pool ten times its memory bound for a bounded
    /// time, checking every value, the memory bound and leftover files.
    Soak(soak::SoakArgs),
    /// Benchmarks, each beside the machine's own limits measured in the same run.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Whether the command runs a memory-bounded pool.
    fn runs_a_pool(&self) -> bool {
        match self {
            Command::Kv(_) | Command::Store(_) => false,
            Command::Bench(b) => b.runs_a_pool(),
            Command::Demo(_) | Command::Soak(_) => true,
        }
    }
}

/// Makes glibc return large freed buffers to the OS at once.
///
/// glibc raises its mmap threshold (up to 32 MiB) after the first large
/// free, so evicted multi-MiB values would stay on its heap and resident
/// memory would stay at its peak long after the pool released them. A fixed
/// threshold (what `MALLOC_MMAP_THRESHOLD_=131072` does) keeps resident
/// memory close to what the pool actually holds.
fn return_freed_memory_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The pool's memory bound needs freed buffers returned at once; the
    // store's writes are faster when glibc reuses its heap (LMDB's dirty
    // pages and tile buffers are multi-MiB: fresh pages cost 2× in write
    // speed on lmdb-tmpfs), and they promise no memory bound.
    if cli.command.runs_a_pool() {
        return_freed_memory_to_the_os();
    }
    let result = match cli.command {
        Command::Kv(args) => kv::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Store(args) => store_cmd::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Soak(args) => soak::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`spillpool kv … get k | head`) is the reader's choice, not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spillpool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}
