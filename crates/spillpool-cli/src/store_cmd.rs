//! `spillpool store URI …`: libraries, symbols and versions of a named store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use spillpool::formats::{self, Format, Selection};
use spillpool::store::{CheckOptions, ReadOptions, StoreOptions, VersionInfo, WriteOptions};
use spillpool::{Store, Table};

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The backend: mem://, file:///DIR, lmdb:///DIR, shm://NAME (with ?compression=… etc.).
    uri: String,
    /// Rows per stored segment (for writes).
    #[arg(long, default_value_t = 100_000)]
    rows_per_segment: usize,
    /// Tile bytes per backend batch (one LMDB transaction) for writes.
    #[arg(long, default_value = "8MiB")]
    batch_bytes: String,
    #[command(subcommand)]
    op: StoreOp,
}

#[derive(Subcommand, Debug)]
enum StoreOp {
    /// List libraries, one per line.
    Libs,
    /// List the symbols of LIB, one per line.
    Ls {
        /// The library.
        lib: String,
    },
    /// Write FILE (Parquet, Arrow IPC or CSV, by extension) as a new version
    /// of SYMBOL, creating the library if needed; prints the version.
    Write {
        /// The library.
        lib: String,
        /// The symbol.
        symbol: String,
        /// The table file.
        file: PathBuf,
        /// Add FILE's rows to the latest version instead of replacing it.
        #[arg(long)]
        append: bool,
        /// JSON kept with the version.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Read SYMBOL: a preview on standard output, or the table into a file.
    Read {
        /// The library.
        lib: String,
        /// The symbol.
        symbol: String,
        /// Write the table here (.arrow, .parquet or .csv) instead of previewing it.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Only these columns, comma-separated, in this order.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// Only rows START..END (END exclusive; either may be left out).
        #[arg(long)]
        rows: Option<String>,
        /// Read this version instead of the latest.
        #[arg(long)]
        as_of: Option<u64>,
    },
    /// List the versions of SYMBOL, one per line: version, rows, time (UTC), metadata.
    Versions {
        /// The library.
        lib: String,
        /// The symbol.
        symbol: String,
    },
    /// Delete SYMBOL, or one version of it.
    Rm {
        /// The library.
        lib: String,
        /// The symbol.
        symbol: String,
        /// Delete only this version.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Create library LIB (no error if it exists).
    Mklib {
        /// The library.
        lib: String,
    },
    /// Delete library LIB and everything in it.
    Rmlib {
        /// The library.
        lib: String,
    },
    /// Check every manifest and tile; report orphans left by crashed writers.
    Check {
        /// Remove orphans older than --min-age.
        #[arg(long)]
        repair: bool,
        /// Keep younger orphans: their writer may still be running (e.g. 0s, 90s, 15m, 2h).
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        min_age: Duration,
    },
}

pub fn run(args: StoreArgs) -> Result<()> {
    let uri = args.uri.as_str();
    let options = StoreOptions {
        rows_per_segment: args.rows_per_segment,
        batch_bytes: spillpool::parse_size(&args.batch_bytes, "--batch-bytes")? as usize,
        ..StoreOptions::default()
    };
    let store =
        Store::open_with(uri, options).with_context(|| format!("cannot open store {uri}"))?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    match args.op {
        StoreOp::Libs => {
            for lib in store.list_libraries()? {
                writeln!(out, "{lib}")?;
            }
        }
        StoreOp::Ls { lib } => {
            for symbol in store.library(&lib)?.list_symbols()? {
                writeln!(out, "{symbol}")?;
            }
        }
        StoreOp::Write {
            lib,
            symbol,
            file,
            append,
            metadata,
        } => {
            // Names first: a typo should not cost reading a large file.
            spillpool::store::validate_library_name(&lib)?;
            spillpool::store::validate_symbol_name(&symbol)?;
            let table = read_input(&file)?;
            let mut options = WriteOptions::default();
            if let Some(m) = metadata {
                options = options.metadata(
                    serde_json::from_str(&m)
                        .with_context(|| format!("--metadata is not JSON: {m}"))?,
                );
            }
            let library = store.create_library(&lib)?;
            let info = if append {
                library.append_with(&symbol, &table, &options)?
            } else {
                library.write_with(&symbol, &table, &options)?
            };
            writeln!(out, "{}", info.version)?;
        }
        StoreOp::Read {
            lib,
            symbol,
            output,
            columns,
            rows,
            as_of,
        } => {
            let options = ReadOptions {
                as_of,
                columns,
                row_range: rows.as_deref().map(parse_rows).transpose()?,
            };
            let read = store.library(&lib)?.read_with(&symbol, &options)?;
            match output {
                Some(path) => {
                    let format = Format::from_extension(&path).with_context(|| {
                        format!("{}: use .arrow, .parquet or .csv", path.display())
                    })?;
                    formats::write_table_path(&read.table, &path, format)?;
                }
                None => preview(&mut out, &lib, &symbol, &read.info, &read.table)?,
            }
        }
        StoreOp::Versions { lib, symbol } => {
            let versions = store.library(&lib)?.list_versions(&symbol)?;
            if versions.is_empty() {
                bail!("symbol {symbol:?} not found in library {lib:?} of store {uri}");
            }
            for v in versions {
                let meta = v.metadata.map(|m| m.to_string()).unwrap_or_default();
                writeln!(
                    out,
                    "{}\t{} rows\t{}\t{meta}",
                    v.version,
                    v.rows,
                    utc(v.created_ms)
                )?;
            }
        }
        StoreOp::Rm {
            lib,
            symbol,
            version,
        } => {
            let library = store.library(&lib)?;
            let existed = match version {
                Some(v) => library.delete_version(&symbol, v)?,
                None => library.delete(&symbol)?,
            };
            if !existed {
                let which = version.map(|v| format!(" version {v}")).unwrap_or_default();
                bail!("symbol {symbol:?}{which} not found in library {lib:?} of store {uri}");
            }
        }
        StoreOp::Mklib { lib } => {
            store.create_library(&lib)?;
        }
        StoreOp::Rmlib { lib } => {
            if !store.delete_library(&lib)? {
                bail!("library {lib:?} not found in store {uri}");
            }
        }
        StoreOp::Check { repair, min_age } => {
            let report = store.check(&CheckOptions { repair, min_age })?;
            writeln!(out, "{report}")?;
            if !report.missing.is_empty() || !report.unreadable.is_empty() {
                bail!(
                    "store {uri} is damaged: {} missing tiles, {} unreadable manifests",
                    report.missing.len(),
                    report.unreadable.len()
                );
            }
        }
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<Table> {
    let format = Format::from_extension(path).with_context(|| {
        format!(
            "{}: give a .parquet, .arrow (or .ipc/.feather) or .csv file",
            path.display()
        )
    })?;
    Ok(formats::read_path(path, format, &Selection::all())?)
}

/// `START..END`, `START..` or `..END`.
fn parse_rows(s: &str) -> Result<std::ops::Range<u64>> {
    let Some((a, b)) = s.split_once("..") else {
        bail!("--rows {s:?}: expected START..END");
    };
    let num = |x: &str, default: u64| -> Result<u64> {
        if x.is_empty() {
            Ok(default)
        } else {
            x.parse()
                .with_context(|| format!("--rows {s:?}: {x:?} is not a row number"))
        }
    };
    let (start, end) = (num(a, 0)?, num(b, u64::MAX)?);
    if end < start {
        bail!("--rows {s:?}: END is before START");
    }
    Ok(start..end)
}

/// `90`, `90s`, `15m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 0s, 90s, 15m, 2h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

const PREVIEW_HEAD: usize = 10;

fn preview(
    out: &mut impl std::io::Write,
    lib: &str,
    symbol: &str,
    info: &VersionInfo,
    table: &Table,
) -> Result<()> {
    writeln!(
        out,
        "{lib}/{symbol} version {} ({}): {} rows × {} columns",
        info.version,
        utc(info.created_ms),
        table.num_rows(),
        table.schema().fields().len()
    )?;
    let mut head = Vec::new();
    let mut left = PREVIEW_HEAD;
    for b in table.batches() {
        if left == 0 {
            break;
        }
        let take = left.min(b.num_rows());
        head.push(b.slice(0, take));
        left -= take;
    }
    if head.is_empty() {
        head.push(arrow_array::RecordBatch::new_empty(table.schema().clone()));
    }
    writeln!(out, "{}", arrow_cast::pretty::pretty_format_batches(&head)?)?;
    if table.num_rows() > PREVIEW_HEAD {
        writeln!(out, "… {} more rows", table.num_rows() - PREVIEW_HEAD)?;
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for milliseconds since the epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_durations_and_dates() {
        assert_eq!(parse_rows("5..10").ok(), Some(5..10));
        assert_eq!(parse_rows("..3").ok(), Some(0..3));
        assert_eq!(parse_rows("7..").ok(), Some(7..u64::MAX));
        assert!(
            parse_rows("9..2").is_err() && parse_rows("x..2").is_err() && parse_rows("3").is_err()
        );
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert!(parse_duration("5w").is_err() && parse_duration("m").is_err());
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_305_600_000), "2026-11-22T00:00:00Z");
        assert_eq!(utc(951_782_400_000 + 86_399_000), "2000-02-29T23:59:59Z");
    }
}
