//! The one public error type of the library.

use std::path::PathBuf;

/// Result alias used throughout spillpool.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, as kinds a caller can act on.
///
/// Every variant names *what* failed and *where* (key, path or URI), so the
/// message alone is enough to find the problem. Encryption keys never appear
/// in any variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key failed validation (see [`crate::Key`]).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key, shortened and made printable.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// No value is stored under `key`.
    #[error("key {key:?} not found in {location}")]
    NotFound {
        /// The key that was asked for.
        key: String,
        /// The backend (URI) that was searched.
        location: String,
    },
    /// Stored bytes failed a check: wrong magic, bad checksum, truncation, undecodable payload.
    #[error("corrupt value for key {key:?} at {location}: {reason}")]
    Corrupt {
        /// The key whose value is corrupt.
        key: String,
        /// Where it was read from (file path, LMDB path, URI).
        location: String,
        /// What check failed.
        reason: String,
    },
    /// A frame written by a newer (or unknown) format version.
    #[error("value for key {key:?} at {location} has unsupported format version {version}")]
    UnsupportedVersion {
        /// The key whose value could not be read.
        key: String,
        /// Where it was read from.
        location: String,
        /// The version found in the frame header.
        version: u16,
    },
    /// An encrypted value was read without an encryption key.
    #[error(
        "value for key {key:?} at {location} is encrypted: configure its key (SPILLPOOL_ENCRYPTION_KEY or SPILLPOOL_ENCRYPTION_KEY_FILE)"
    )]
    KeyRequired {
        /// The key of the value.
        key: String,
        /// Where it was read from.
        location: String,
    },
    /// An encrypted value was read with another key than the one it was written with.
    #[error(
        "value for key {key:?} at {location} was encrypted with another key (key id {stored_key_id})"
    )]
    WrongKey {
        /// The key of the value.
        key: String,
        /// Where it was read from.
        location: String,
        /// The identifier (a hash, not the key) recorded in the frame.
        stored_key_id: String,
    },
    /// A storage tier has no room left (a configured bound, a full map or a full disk).
    #[error("{tier} is full: {reason}")]
    TierFull {
        /// The tier (URI or path) that is full.
        tier: String,
        /// The bound or condition that was hit.
        reason: String,
    },
    /// A tier that saw an fsync fail and refuses writes until it is reopened.
    #[error("{tier} refuses writes: {reason}")]
    Poisoned {
        /// The tier (a root directory or URI).
        tier: String,
        /// The failure that poisoned it, and what to do.
        reason: String,
    },
    /// An operating-system I/O error, with the operation and the path it concerned.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "rename", …).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error from LMDB.
    #[error("lmdb {path}: {op}: {source}")]
    Lmdb {
        /// The environment's directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: heed::Error,
    },
    /// A URI that names no backend or carries bad parameters.
    #[error("invalid URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration value (size, option, environment variable) that cannot be used.
    #[error("invalid configuration {what}: {reason}")]
    InvalidConfig {
        /// The setting, e.g. `SPILLPOOL_MEMORY_LIMIT` or `map_size`.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A value that cannot be stored as given (mismatched schemas, unencodable table).
    #[error("invalid value: {reason}")]
    InvalidValue {
        /// What is wrong with it.
        reason: String,
    },
    /// An input file (Parquet, Arrow IPC, CSV) that cannot be read.
    #[error("cannot read {format} file {path}: {reason}")]
    InputFile {
        /// The file.
        path: PathBuf,
        /// The format it was read as.
        format: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A library or symbol name failed validation.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// `library` or `symbol`.
        kind: &'static str,
        /// The name as given, shortened and made printable.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The store has no library of that name.
    #[error("library {library:?} not found in store {uri}")]
    LibraryNotFound {
        /// The library asked for.
        library: String,
        /// The store (URI).
        uri: String,
    },
    /// The library has no such symbol, or not that version of it.
    #[error("symbol {symbol:?}{} not found in library {library:?} of store {uri}", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    SymbolNotFound {
        /// The library searched.
        library: String,
        /// The symbol asked for.
        symbol: String,
        /// The version asked for (`None`: the latest).
        version: Option<u64>,
        /// The store (URI).
        uri: String,
    },
    /// An append whose schema differs from the symbol's.
    #[error("cannot append to symbol {symbol:?} in library {library:?} of store {uri}: {reason}")]
    SchemaMismatch {
        /// The library.
        library: String,
        /// The symbol.
        symbol: String,
        /// The store (URI).
        uri: String,
        /// How the schemas differ.
        reason: String,
    },
    /// A conditional write found another latest version than it expected.
    #[error("conflict writing symbol {symbol:?} in library {library:?} of store {uri}: expected latest version {}, found {}", show_version(*expected), show_version(*found))]
    Conflict {
        /// The library.
        library: String,
        /// The symbol.
        symbol: String,
        /// The store (URI).
        uri: String,
        /// The latest version the writer expected (`None`: no symbol).
        expected: Option<u64>,
        /// The latest version found (`None`: no symbol).
        found: Option<u64>,
    },
    /// The operation is not offered by this backend.
    #[error("{backend} does not support {op}")]
    Unsupported {
        /// The backend (URI).
        backend: String,
        /// The operation.
        op: &'static str,
    },
}

impl Error {
    /// Builds an [`Error::Corrupt`] for the value under `key` read at `location`.
    pub(crate) fn corrupt(
        key: &crate::Key,
        location: &(impl std::fmt::Display + ?Sized),
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            key: printable(key.as_str()),
            location: location.to_string(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Io`], turning a full file system into [`Error::TierFull`].
    pub(crate) fn write_io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull
            || source.kind() == std::io::ErrorKind::QuotaExceeded
        {
            Error::TierFull {
                tier: path.display().to_string(),
                reason: format!("{op}: {source}"),
            }
        } else {
            Error::io(op, path, source)
        }
    }
}

fn show_version(v: Option<u64>) -> String {
    v.map_or_else(|| "none (no symbol)".to_string(), |v| v.to_string())
}

/// Renders user-supplied key bytes for an error message: printable and at most 200 characters.
pub(crate) fn printable(key: &str) -> String {
    const MAX: usize = 200;
    if key.len() <= MAX {
        return key.to_string(); // no more characters than bytes
    }
    let mut out: String = key.chars().take(MAX).collect();
    if key.chars().count() > MAX {
        out.push('…');
    }
    out
}
