//! `spillpool kv URI …`: key/value access to any backend.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use spillpool::{BackendExt, Key, ShmBackend, Uri, Value, format_size, formats};

#[derive(Args, Debug)]
pub struct KvArgs {
    /// The backend: mem://, file:///DIR, lmdb:///DIR, shm://NAME (with ?sync=false etc.).
    uri: String,
    #[command(subcommand)]
    op: KvOp,
}

#[derive(Subcommand, Debug)]
enum KvOp {
    /// Store FILE (or standard input) under KEY.
    Put {
        /// The key.
        key: String,
        /// The file to store; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Read FILE as a table (Arrow IPC or Parquet) and store it as a table value.
        #[arg(long)]
        table: bool,
    },
    /// Write the value under KEY to standard output or a file (tables as Arrow IPC files).
    Get {
        /// The key.
        key: String,
        /// Write here instead of standard output (created with mode 0600).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Require the value to be a table.
        #[arg(long)]
        table: bool,
    },
    /// List keys (optionally only those starting with PREFIX), one per line.
    Ls {
        /// Only keys starting with this.
        prefix: Option<String>,
    },
    /// Remove KEY.
    Rm {
        /// The key.
        key: String,
    },
    /// Show how many keys and bytes the backend holds.
    Stat,
    /// Write COUNT generated values (PREFIX00000000, PREFIX00000001, …),
    /// printing each index once its put has returned: load for tests and
    /// benchmarks, and the acknowledgement log of the crash tests.
    Fill {
        /// How many values.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Bytes per value.
        #[arg(long, default_value = "64KiB")]
        size: String,
        /// Key prefix.
        #[arg(long, default_value = "fill/")]
        prefix: String,
        /// Seed of the generated contents (see `fill_value`).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Remove a shared-memory namespace (shm:// only) and free its memory.
    Destroy,
}

pub fn run(args: KvArgs) -> Result<()> {
    let uri = args.uri.as_str();
    if let KvOp::Destroy = args.op {
        let parsed = Uri::parse(uri)?;
        if parsed.scheme() != "shm" {
            bail!("destroy applies to shm:// namespaces only, not {uri}");
        }
        let existed = ShmBackend::destroy_namespace(parsed.path())?;
        if !existed {
            bail!("{uri} does not exist");
        }
        return Ok(());
    }
    let backend = spillpool::open(uri).with_context(|| format!("cannot open {uri}"))?;
    let key = |k: &str| Key::new(k).with_context(|| format!("in {uri}"));
    match args.op {
        KvOp::Put {
            key: k,
            file,
            table,
        } => {
            let k = key(&k)?;
            let path = file.unwrap_or_else(|| PathBuf::from("-"));
            let value = if table {
                Value::Table(formats::read_table_file(&path)?)
            } else {
                Value::Blob(read_all(&path)?.into())
            };
            backend
                .put_value(&k, &value)
                .with_context(|| format!("cannot put {k:?} into {uri}"))?;
        }
        KvOp::Get {
            key: k,
            output,
            table,
        } => {
            let k = key(&k)?;
            let value = backend
                .fetch_value(&k)
                .with_context(|| format!("cannot get {k:?} from {uri}"))?;
            if table && value.as_table().is_none() {
                bail!("{k:?} in {uri} holds a blob, not a table");
            }
            write_value(&value, output.as_deref())
                .with_context(|| format!("cannot write {k:?} from {uri}"))?;
        }
        KvOp::Ls { prefix } => {
            let keys = backend.list(prefix.as_deref().unwrap_or(""))?;
            let mut out = BufWriter::new(io::stdout().lock());
            for k in keys {
                writeln!(out, "{k}")?;
            }
            out.flush()?;
        }
        KvOp::Rm { key: k } => {
            let k = key(&k)?;
            if !backend
                .delete(&k)
                .with_context(|| format!("cannot remove {k:?} from {uri}"))?
            {
                bail!("key {k:?} not found in {uri}");
            }
        }
        KvOp::Stat => {
            let usage = backend.usage()?;
            println!("uri: {backend}");
            println!("keys: {}", usage.keys);
            println!("bytes: {} ({})", usage.bytes, format_size(usage.bytes));
        }
        KvOp::Fill {
            count,
            size,
            prefix,
            seed,
        } => {
            let size = spillpool::parse_size(&size, "--size")? as usize;
            let mut out = io::stdout().lock();
            for i in 0..count {
                let k = key(&format!("{prefix}{i:08}"))?;
                backend
                    .put_value(&k, &Value::Blob(fill_value(seed, i, size).into()))
                    .with_context(|| format!("cannot put {k:?} into {uri}"))?;
                // Acknowledged only once put returned: flushed line by line.
                writeln!(out, "{i}")?;
                out.flush()?;
            }
        }
        KvOp::Destroy => unreachable!("handled above"),
    }
    Ok(())
}

/// The contents `kv fill` writes for index `i` (so a checker can regenerate them).
pub fn fill_value(seed: u64, i: u64, size: usize) -> Vec<u8> {
    crate::bench::generated(seed << 32 ^ i, size)
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        io::stdin()
            .read_to_end(&mut data)
            .context("cannot read standard input")?;
    } else {
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(data)
}

fn write_value(value: &Value, output: Option<&Path>) -> Result<()> {
    let sink: Box<dyn Write> = match output {
        Some(path) => Box::new(formats::create_private(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut sink = BufWriter::with_capacity(1 << 20, sink);
    match value {
        Value::Blob(b) => sink.write_all(b)?,
        Value::Table(t) => {
            sink = formats::write_ipc(t, sink).map_err(anyhow::Error::msg)?;
        }
    }
    sink.flush()?;
    Ok(())
}
