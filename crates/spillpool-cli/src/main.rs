//! `spillpool`: the command-line tool, a thin layer over the library.

mod demo;
mod kv;

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
    /// Store and read back generated blobs and tables on every backend, verifying each.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kv(args) => kv::run(args),
        Command::Demo(args) => demo::run(args),
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
