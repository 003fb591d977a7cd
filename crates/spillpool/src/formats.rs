//! Files that people and other tools read: Arrow IPC files, and Parquet
//! (with the `parquet` feature).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

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
    }
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

/// Writes `table` as an Arrow IPC file at `path` (created with mode 0600 if new).
pub fn write_ipc_file(table: &Table, path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::write_io("create", path, e))?;
    let mut out = write_ipc(table, BufWriter::new(file)).map_err(|reason| Error::InputFile {
        path: path.to_path_buf(),
        format: "Arrow IPC",
        reason,
    })?;
    out.flush().map_err(|e| Error::write_io("write", path, e))
}
