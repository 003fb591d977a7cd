//! Files that people and other tools read: Arrow IPC files, and Parquet
//! (with the `parquet` feature).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_ipc::MetadataVersion;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};

use crate::error::{Error, Result};
use crate::value::Table;

/// A table file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Arrow IPC file (`.arrow`, `.ipc`, `.feather`).
    ArrowIpc,
    /// Apache Parquet (`.parquet`).
    Parquet,
    /// CSV with a header row (`.csv`); the schema is inferred from the first 1,000 rows.
    Csv,
}

impl Format {
    /// Recognises a format from a file's first bytes (`ARROW1` or `PAR1`).
    pub fn sniff(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"ARROW1") {
            Some(Format::ArrowIpc)
        } else if head.starts_with(b"PAR1") {
            Some(Format::Parquet)
        } else {
            None
        }
    }

    /// The format's name, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::ArrowIpc => "Arrow IPC",
            Format::Parquet => "Parquet",
            Format::Csv => "CSV",
        }
    }

    /// The format a file name's extension names (no I/O).
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "arrow" | "ipc" | "feather" => Some(Format::ArrowIpc),
            "parquet" | "pq" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// Reads a whole table from `bytes` (the contents of an Arrow IPC or Parquet
/// file), recognising the format by its magic. `path` labels errors.
pub fn read_table(bytes: bytes::Bytes, path: &Path) -> Result<Table> {
    let format = Format::sniff(&bytes).ok_or_else(|| Error::InputFile {
        path: path.to_path_buf(),
        format: "table",
        reason: "neither an Arrow IPC file (ARROW1) nor a Parquet file (PAR1)".into(),
    })?;
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        format: format.name(),
        reason,
    };
    match format {
        Format::ArrowIpc => {
            let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
                .map_err(|e| bad(e.to_string()))?;
            let schema = reader.schema();
            let batches = reader
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            Table::try_new(schema, batches)
        }
        Format::Parquet => read_parquet(bytes).map_err(bad),
        Format::Csv => Err(bad("CSV is read from a path (read_path)".into())),
    }
}

/// What part of a table file to read.
///
/// `batches` counts record batches in an Arrow IPC file and row groups in a
/// Parquet file; CSV supports columns only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Column names to read, in this order (`None`: all).
    pub columns: Option<Vec<String>>,
    /// Record batches (IPC) or row groups (Parquet) to read (`None`: all).
    pub batches: Option<std::ops::Range<usize>>,
}

impl Selection {
    /// Everything.
    pub fn all() -> Self {
        Selection::default()
    }

    /// Whether this selects everything.
    pub fn is_all(&self) -> bool {
        self.columns.is_none() && self.batches.is_none()
    }

    fn indices(
        &self,
        schema: &arrow_schema::Schema,
    ) -> std::result::Result<Option<Vec<usize>>, String> {
        self.columns
            .as_ref()
            .map(|names| {
                names
                    .iter()
                    .map(|n| schema.index_of(n).map_err(|_| format!("no column {n:?}")))
                    .collect()
            })
            .transpose()
    }

    /// Applies the selection to a table already in memory.
    pub fn apply(&self, table: &Table) -> Result<Table> {
        let bad = |reason: String| Error::InvalidValue { reason };
        let indices = self.indices(table.schema()).map_err(bad)?;
        let batches = match &self.batches {
            Some(r) => table.batches().get(r.clone()).ok_or_else(|| {
                bad(format!(
                    "batches {r:?} out of range (the table has {})",
                    table.batches().len()
                ))
            })?,
            None => table.batches(),
        };
        match indices {
            None => Table::try_new(table.schema().clone(), batches.to_vec()),
            Some(idx) => {
                let schema = Arc::new(
                    table
                        .schema()
                        .project(&idx)
                        .map_err(|e| bad(e.to_string()))?,
                );
                let projected = batches
                    .iter()
                    .map(|b| b.project(&idx))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                Table::try_new(schema, projected)
            }
        }
    }
}

/// Reads (part of) a table file. Arrow IPC files are mapped and decoded in
/// place (no copy); Parquet and CSV are parsed. Errors name the path and format.
pub fn read_path(path: &Path, format: Format, selection: &Selection) -> Result<Table> {
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        format: format.name(),
        reason,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    match format {
        Format::ArrowIpc => {
            // SAFETY: the mapping is read-only; the file must not be truncated
            // while values read from it are alive (see Pool::register_file).
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(e.to_string()))?;
            let buffer = arrow_buffer::Buffer::from(bytes::Bytes::from_owner(map));
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::frame::decode_ipc_file_selected(&buffer, selection)
            }));
            match decoded {
                Ok(r) => r.map_err(bad),
                Err(_) => Err(bad("the Arrow IPC decoder panicked on this file".into())),
            }
        }
        Format::Parquet => read_parquet_file(file, selection).map_err(bad),
        Format::Csv => read_csv(file, selection).map_err(bad),
    }
}

fn read_csv(file: File, selection: &Selection) -> std::result::Result<Table, String> {
    use std::io::Seek;
    let mut file = file;
    let (schema, _) = arrow_csv::reader::Format::default()
        .with_header(true)
        .infer_schema(&mut file, Some(1000))
        .map_err(|e| e.to_string())?;
    if schema.fields().is_empty() {
        return Err("no header row (an empty file?)".into());
    }
    file.rewind().map_err(|e| e.to_string())?;
    if selection.batches.is_some() {
        return Err("CSV files can be read by columns, not by batches".into());
    }
    let indices = selection.indices(&schema)?;
    let mut builder = arrow_csv::ReaderBuilder::new(Arc::new(schema.clone())).with_header(true);
    let out_schema = match &indices {
        Some(idx) => {
            builder = builder.with_projection(idx.clone());
            Arc::new(schema.project(idx).map_err(|e| e.to_string())?)
        }
        None => Arc::new(schema),
    };
    let reader = builder.build(file).map_err(|e| e.to_string())?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Table::try_new(out_schema, batches).map_err(|e| e.to_string())
}

#[cfg(feature = "parquet")]
fn read_parquet_file(file: File, selection: &Selection) -> std::result::Result<Table, String> {
    use arrow_array::RecordBatchReader;
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    if let Some(range) = &selection.batches {
        let groups = builder.metadata().num_row_groups();
        if range.end > groups || range.start > range.end {
            return Err(format!(
                "row groups {range:?} out of range (the file has {groups})"
            ));
        }
        builder = builder.with_row_groups(range.clone().collect());
    }
    if let Some(idx) = selection.indices(builder.schema())? {
        // Top-level columns, in file order; reordered to the request below.
        let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    let out_schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let table = Table::try_new(out_schema, batches).map_err(|e| e.to_string())?;
    match &selection.columns {
        // Parquet returns projected columns in file order: put them in the order asked.
        Some(names) => Selection {
            columns: Some(names.clone()),
            batches: None,
        }
        .apply(&table)
        .map_err(|e| e.to_string()),
        None => Ok(table),
    }
}

#[cfg(not(feature = "parquet"))]
fn read_parquet_file(_: File, _: &Selection) -> std::result::Result<Table, String> {
    Err("this build of spillpool has no Parquet support (feature `parquet`)".into())
}

#[cfg(feature = "parquet")]
fn read_parquet(bytes: bytes::Bytes) -> std::result::Result<Table, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| e.to_string())?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Table::try_new(schema, batches).map_err(|e| e.to_string())
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(_: bytes::Bytes) -> std::result::Result<Table, String> {
    Err("this build of spillpool has no Parquet support (feature `parquet`)".into())
}

/// Reads a table from a file or, for `-`, standard input.
pub fn read_table_file(path: &Path) -> Result<Table> {
    let mut data = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut data)
    } else {
        File::open(path).and_then(|mut f| f.read_to_end(&mut data))
    };
    read.map_err(|e| Error::io("read", path, e))?;
    read_table(bytes::Bytes::from(data), path)
}

/// Writes `table` as an Arrow IPC file (readable by pyarrow, polars, DuckDB…) to `out`.
pub fn write_ipc<W: Write>(table: &Table, out: W) -> std::result::Result<W, String> {
    let options =
        IpcWriteOptions::try_new(64, false, MetadataVersion::V5).map_err(|e| e.to_string())?;
    let mut writer = FileWriter::try_new_with_options(out, table.schema(), options)
        .map_err(|e| e.to_string())?;
    for batch in table.batches() {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}

/// Creates (or truncates) `path` for writing, with mode 0600 if it is new.
pub fn create_private(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::write_io("create", path, e))
}

/// Writes `table` as an Arrow IPC file at `path` (created with mode 0600 if new).
pub fn write_ipc_file(table: &Table, path: &Path) -> Result<()> {
    let file = create_private(path)?;
    let mut out = write_ipc(table, BufWriter::new(file)).map_err(|reason| Error::InputFile {
        path: path.to_path_buf(),
        format: "Arrow IPC",
        reason,
    })?;
    out.flush().map_err(|e| Error::write_io("write", path, e))
}

/// Writes `table` to `path` in `format` (created with mode 0600 if new):
/// Arrow IPC file, Parquet (zstd, with the `parquet` feature) or CSV with a header.
pub fn write_table_path(table: &Table, path: &Path, format: Format) -> Result<()> {
    if format == Format::ArrowIpc {
        return write_ipc_file(table, path);
    }
    let bad = |reason: String| Error::InputFile {
        path: path.to_path_buf(),
        format: format.name(),
        reason,
    };
    let out = BufWriter::new(create_private(path)?);
    let out = match format {
        Format::Csv => {
            let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(out);
            for batch in table.batches() {
                writer.write(batch).map_err(|e| bad(e.to_string()))?;
            }
            writer.into_inner()
        }
        _ => write_parquet(table, out).map_err(bad)?,
    };
    out.into_inner()
        .map_err(|e| Error::write_io("write", path, e.into_error()))?
        .sync_all()
        .map_err(|e| Error::write_io("fsync", path, e))
}

#[cfg(feature = "parquet")]
fn write_parquet<W: Write + Send>(table: &Table, out: W) -> std::result::Result<W, String> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(out, Arc::clone(table.schema()), Some(props))
        .map_err(|e| e.to_string())?;
    for batch in table.batches() {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.into_inner().map_err(|e| e.to_string())
}

#[cfg(not(feature = "parquet"))]
fn write_parquet<W: Write + Send>(_: &Table, _: W) -> std::result::Result<W, String> {
    Err("this build has no Parquet support (the `parquet` feature)".into())
}
