//! The named store: libraries of symbols, each a sequence of versions of an
//! Arrow table, on any [`Backend`].
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Float64Array, RecordBatch};
//! use spillpool::store::{ReadOptions, Store};
//!
//! let store = Store::open("mem://").unwrap();
//! let lib = store.get_library("prices", true).unwrap();
//! let batch = RecordBatch::try_from_iter([(
//!     "close",
//!     Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as _,
//! )])
//! .unwrap();
//! let v0 = lib.write("AAPL", &batch.clone().into()).unwrap();
//! let v1 = lib.append("AAPL", &batch.into()).unwrap();
//! assert_eq!((v0.version, v1.version), (0, 1));
//! assert_eq!(lib.read("AAPL").unwrap().table.num_rows(), 6);
//! let old = lib.read_with("AAPL", &ReadOptions::default().as_of(0).rows(1..3)).unwrap();
//! assert_eq!(old.table.num_rows(), 2);
//! assert_eq!(lib.list_symbols().unwrap(), vec!["AAPL"]);
//! ```
//!
//! # Layout
//!
//! A version's table is cut into row segments (`rows_per_segment`, default
//! 100,000 rows) and each segment into column slices (`columns_per_segment`,
//! default 127 columns); every (segment, slice) *tile* is one frame, an Arrow
//! IPC file, stored under a key unique to the write that made it. A version
//! exists once its *manifest* — the list of its segments, the column slices,
//! the schema and the user's metadata — is stored, which happens last and
//! with [`Backend::put_new`]: readers see a version whole or not at all, and
//! of two writers racing for one version number exactly one gets it. The
//! other takes the next number (for an append: re-based on the version that
//! won), so no write is lost; a writer that wants to fail instead says which
//! version it expects ([`WriteOptions::if_latest`]) and gets
//! [`Error::Conflict`]. An append stores only its new rows; its manifest
//! lists the previous version's segments followed by the new ones. Reads fetch
//! only the tiles that hold the selected rows and columns, in parallel, and
//! decode them in place (the arrays point into the LMDB map or the mapped
//! file). See `docs/ARCHITECTURE.md`.

mod check;
mod manifest;
mod names;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use rayon::prelude::*;

pub use check::{CheckOptions, CheckReport, Orphan};
use manifest::{Manifest, Segment};
pub use names::MAX_NAME_LEN;

use crate::backend::{Backend, Claim, Last, Location, encode_values, open};
use crate::error::{Error, Result, printable};
use crate::formats::Selection;
use crate::frame::{self, Frame};
use crate::key::Key;
use crate::value::{Table, Value};

/// Writes up to this size store their tiles and manifest in one batch.
const SMALL_WRITE: usize = 4 << 20;

/// How a store cuts tables into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Rows per segment (default 100,000).
    pub rows_per_segment: usize,
    /// Columns per slice (default 127).
    pub columns_per_segment: usize,
    /// Tile bytes stored per backend batch (one LMDB transaction, one
    /// directory sync; default 8 MiB, one tile of a 10-column float table).
    ///
    /// Larger batches sync less often, but LMDB allocates a transaction's
    /// dirty pages with `malloc` and glibc hands a freed block back to the
    /// kernel once more than twice its largest recent mmap'd block is free:
    /// past ~16 MiB every commit faults and zeroes its pages afresh. Measured
    /// on 1000 MB into LMDB on tmpfs: 1,717–2,095 MB/s at 8 MiB against
    /// 1,140–1,765 at 64 MiB (and 1,389 vs 804–1,211 on disk).
    pub batch_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            rows_per_segment: 100_000,
            columns_per_segment: 127,
            batch_bytes: 8 << 20,
        }
    }
}

/// A named store over one backend.
///
/// Cheap to clone; every clone and every [`Library`] shares the backend.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn Backend>,
    uri: String,
    options: StoreOptions,
}

/// A library: a namespace of symbols in a [`Store`].
#[derive(Debug, Clone)]
pub struct Library {
    inner: Arc<Inner>,
    name: String,
}

/// What a version is, without its data.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    /// The version number (0 for the first write; never reused).
    pub version: u64,
    /// Rows in the version.
    pub rows: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Row segments it is stored in.
    pub segments: usize,
    /// The user's metadata given at write time.
    pub metadata: Option<serde_json::Value>,
}

/// A table read from the store, with the version it came from.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The version read.
    pub info: VersionInfo,
    /// Its data (the selected rows and columns).
    pub table: Table,
}

/// What to read: a version, columns and rows. Default: all of the latest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The version to read (`None`: the latest).
    pub as_of: Option<u64>,
    /// Columns, in the order wanted (`None`: all).
    pub columns: Option<Vec<String>>,
    /// Rows `start..end`, clamped to the table (`None`: all).
    pub row_range: Option<Range<u64>>,
}

impl ReadOptions {
    /// Reads version `version`.
    pub fn as_of(mut self, version: u64) -> Self {
        self.as_of = Some(version);
        self
    }
    /// Reads only these columns, in this order.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }
    /// Reads only rows `range`.
    pub fn rows(mut self, range: Range<u64>) -> Self {
        self.row_range = Some(range);
        self
    }
}

/// Options of a write or append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOptions {
    /// JSON kept with the version.
    pub metadata: Option<serde_json::Value>,
    /// Write only if the latest version is this one (`Some(None)`: only if
    /// the symbol does not exist); otherwise [`Error::Conflict`].
    pub if_latest: Option<Option<u64>>,
}

impl WriteOptions {
    /// Keeps `metadata` with the version.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
    /// Fails with [`Error::Conflict`] unless the latest version is `latest`
    /// (`None`: unless the symbol does not exist).
    pub fn if_latest(mut self, latest: Option<u64>) -> Self {
        self.if_latest = Some(latest);
        self
    }
}

impl Store {
    /// Opens the store on the backend `uri` names (see [`crate::open`]).
    pub fn open(uri: &str) -> Result<Store> {
        Store::open_with(uri, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(uri: &str, options: StoreOptions) -> Result<Store> {
        Store::from_backend(open(uri)?, options)
    }

    /// A store over an open backend.
    ///
    /// Returns [`Error::InvalidConfig`] for zero rows or columns per segment.
    pub fn from_backend(backend: Arc<dyn Backend>, options: StoreOptions) -> Result<Store> {
        if options.rows_per_segment == 0 || options.columns_per_segment == 0 {
            return Err(Error::InvalidConfig {
                what: "store options".into(),
                reason: "rows and columns per segment must be at least 1".into(),
            });
        }
        Ok(Store {
            inner: Arc::new(Inner {
                uri: backend.to_string(),
                backend,
                options,
            }),
        })
    }

    /// The backend's URI.
    pub fn uri(&self) -> &str {
        &self.inner.uri
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Creates library `name` if it does not exist, and returns it.
    pub fn create_library(&self, name: &str) -> Result<Library> {
        names::validate("library", name)?;
        let marker = self.inner.blob(br#"{"format":1}"#)?;
        self.inner
            .backend
            .put_new(&names::library_key(name)?, marker)?;
        Ok(self.handle(name))
    }

    /// Library `name`; [`Error::LibraryNotFound`] if it does not exist.
    pub fn library(&self, name: &str) -> Result<Library> {
        names::validate("library", name)?;
        self.inner.require_library(name)?;
        Ok(self.handle(name))
    }

    /// Library `name`, created first if `create_if_missing`.
    pub fn get_library(&self, name: &str, create_if_missing: bool) -> Result<Library> {
        if create_if_missing {
            self.create_library(name)
        } else {
            self.library(name)
        }
    }

    /// Whether library `name` exists.
    pub fn has_library(&self, name: &str) -> Result<bool> {
        names::validate("library", name)?;
        Ok(self
            .inner
            .backend
            .get(&names::library_key(name)?)?
            .is_some())
    }

    /// Every library, sorted.
    pub fn list_libraries(&self) -> Result<Vec<String>> {
        let prefix = names::libraries_prefix();
        Ok(self
            .inner
            .backend
            .list(&prefix)?
            .iter()
            .filter_map(|k| k.as_str().strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    /// Deletes library `name` and everything in it; returns whether it existed.
    ///
    /// The marker goes first (new writes are refused), then the manifests
    /// (versions disappear), then the data.
    pub fn delete_library(&self, name: &str) -> Result<bool> {
        names::validate("library", name)?;
        let b = &self.inner.backend;
        let existed = b.delete(&names::library_key(name)?)?;
        for prefix in [
            names::versions_prefix(name, None),
            names::heads_prefix(Some(name)),
            names::tiles_prefix(Some(name), None),
        ] {
            for key in b.list(&prefix)? {
                b.delete(&key)?;
            }
        }
        Ok(existed)
    }

    /// Checks every manifest and tile; with `options.repair`, removes orphans.
    /// See [`CheckReport`].
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        check::run(&self.inner.backend, options)
    }

    fn handle(&self, name: &str) -> Library {
        Library {
            inner: Arc::clone(&self.inner),
            name: name.to_string(),
        }
    }
}

/// Checks a library name without touching any store (see [`Error::InvalidName`]).
pub fn validate_library_name(name: &str) -> Result<()> {
    names::validate("library", name)
}

/// Checks a symbol name without touching any store (see [`Error::InvalidName`]).
pub fn validate_symbol_name(name: &str) -> Result<()> {
    names::validate("symbol", name)
}

/// The newest version number of a symbol, and its newest live version.
struct SymState {
    next: u64,
    live: Option<Manifest>,
}

impl SymState {
    fn latest(&self) -> Option<u64> {
        self.live.as_ref().map(|m| m.version)
    }
}

impl Inner {
    fn blob(&self, bytes: &[u8]) -> Result<Frame> {
        frame::encode(&Value::Blob(Bytes::copy_from_slice(bytes)))
    }

    fn require_library(&self, lib: &str) -> Result<()> {
        match self.backend.get(&names::library_key(lib)?)? {
            Some(_) => Ok(()),
            None => Err(Error::LibraryNotFound {
                library: printable(lib),
                uri: self.uri.clone(),
            }),
        }
    }
}

/// One symbol of a batch write: its tiles, segments and column slices.
type Prepared = (Vec<(Key, Value)>, Vec<Segment>, Vec<(u32, u32)>);

/// One tile still to be encoded: segment `segment`, column slice `slice`.
struct TileJob<'a> {
    key: Key,
    batches: &'a [RecordBatch],
    slice: (u32, u32),
}

impl Library {
    /// The library's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn b(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    fn not_found(&self, symbol: &str, version: Option<u64>) -> Error {
        Error::SymbolNotFound {
            library: printable(&self.name),
            symbol: printable(symbol),
            version,
            uri: self.inner.uri.clone(),
        }
    }

    /// Writes `table` as a new version of `symbol`.
    pub fn write(&self, symbol: &str, table: &Table) -> Result<VersionInfo> {
        self.write_with(symbol, table, &WriteOptions::default())
    }

    /// [`Library::write`] with metadata or a precondition.
    pub fn write_with(
        &self,
        symbol: &str,
        table: &Table,
        options: &WriteOptions,
    ) -> Result<VersionInfo> {
        names::validate("symbol", symbol)?;
        let slices = column_slices(table.schema(), self.inner.options.columns_per_segment);
        self.commit(symbol, table, slices, options, None)
    }

    /// Appends `table`'s rows as a new version of `symbol` (which is created
    /// if missing). The schema must equal the symbol's: otherwise
    /// [`Error::SchemaMismatch`], and nothing is written.
    pub fn append(&self, symbol: &str, table: &Table) -> Result<VersionInfo> {
        self.append_with(symbol, table, &WriteOptions::default())
    }

    /// [`Library::append`] with metadata or a precondition.
    pub fn append_with(
        &self,
        symbol: &str,
        table: &Table,
        options: &WriteOptions,
    ) -> Result<VersionInfo> {
        names::validate("symbol", symbol)?;
        let state = self.state(symbol)?;
        let (table, slices) = match &state.live {
            Some(base) => (
                self.conform(symbol, base, table)?,
                base.column_slices.clone(),
            ),
            None => (
                table.clone(),
                column_slices(table.schema(), self.inner.options.columns_per_segment),
            ),
        };
        self.commit(symbol, &table, slices, options, Some(state))
    }

    /// `table` relabelled with the symbol's schema: names and types must
    /// match (nested types up to child field names); nullability and field
    /// metadata are the symbol's (a column
    /// the symbol declares non-nullable must then hold no nulls).
    fn conform(&self, symbol: &str, base: &Manifest, table: &Table) -> Result<Table> {
        let key = names::version_key(&self.name, symbol, base.version)?;
        let base_schema = base.schema(&key, &Location::new(self.b(), &key))?;
        if base_schema.fields() == table.schema().fields() {
            return Ok(table.clone());
        }
        let same_shape = base_schema.fields().len() == table.schema().fields().len()
            && base_schema
                .fields()
                .iter()
                .zip(table.schema().fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type().equals_datatype(b.data_type()));
        if !same_shape {
            return Err(self.mismatch(symbol, base, &base_schema, table.schema(), None));
        }
        let batches = table
            .batches()
            .iter()
            .map(|b| {
                // Nested types may differ in child field names only (Parquet
                // readers call list items "element", IPC writers "item").
                let columns = b
                    .columns()
                    .iter()
                    .zip(base_schema.fields())
                    .map(|(c, f)| {
                        if c.data_type() == f.data_type() {
                            Ok(Arc::clone(c))
                        } else {
                            arrow_cast::cast(c, f.data_type())
                        }
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                RecordBatch::try_new(Arc::clone(&base_schema), columns)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                self.mismatch(
                    symbol,
                    base,
                    &base_schema,
                    table.schema(),
                    Some(e.to_string()),
                )
            })?;
        Table::try_new(base_schema, batches)
    }

    fn check_schema(&self, symbol: &str, base: &Manifest, schema: &Schema) -> Result<()> {
        let key = names::version_key(&self.name, symbol, base.version)?;
        let base_schema = base.schema(&key, &Location::new(self.b(), &key))?;
        if base_schema.fields() == schema.fields() {
            return Ok(());
        }
        Err(self.mismatch(symbol, base, &base_schema, schema, None))
    }

    fn mismatch(
        &self,
        symbol: &str,
        base: &Manifest,
        base_schema: &Schema,
        schema: &Schema,
        detail: Option<String>,
    ) -> Error {
        let show = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}{}",
                        f.name(),
                        f.data_type(),
                        if f.is_nullable() { "?" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Error::SchemaMismatch {
            library: printable(&self.name),
            symbol: printable(symbol),
            uri: self.inner.uri.clone(),
            reason: format!(
                "the symbol has columns [{}] (version {}), the appended table has [{}]{}",
                show(base_schema),
                base.version,
                show(schema),
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        }
    }

    /// Stores the tiles of `table`, then publishes a manifest for them.
    /// `append`: the symbol's state the append was planned on (`None`: a write).
    fn commit(
        &self,
        symbol: &str,
        table: &Table,
        slices: Vec<(u32, u32)>,
        options: &WriteOptions,
        append: Option<SymState>,
    ) -> Result<VersionInfo> {
        self.inner.require_library(&self.name)?;
        let write = write_id();
        let segments = row_segments(table, self.inner.options.rows_per_segment);
        let new_segments = describe_segments(&write, &segments);
        let jobs = self.tile_jobs(symbol, &write, &segments, &slices)?;
        let small = table.size() <= SMALL_WRITE.min(self.inner.options.batch_bytes);
        // A small write sends its tiles with its manifest in one batch.
        let mut pending = if small && !self.b().keeps_values() {
            encode_values(tile_values(&jobs, table.schema())?)?
        } else {
            self.put_tiles(&jobs, table.schema())?;
            Vec::new()
        };
        let mut attempted = false;
        let published = self.publish(
            symbol,
            table.schema(),
            &slices,
            &new_segments,
            options,
            append.is_some(),
            append,
            &mut pending,
            &mut attempted,
        );
        if published.is_err() && !attempted {
            // Best effort: without a manifest these tiles are unreachable.
            // Once a manifest store was attempted it may have landed even
            // if it reported an error, so the tiles stay (as orphans at worst).
            for job in &jobs {
                let _ = self.b().delete(&job.key);
            }
        }
        published
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        symbol: &str,
        schema: &Schema,
        slices: &[(u32, u32)],
        new_segments: &[Segment],
        options: &WriteOptions,
        append: bool,
        mut known: Option<SymState>,
        pending: &mut Vec<(Key, Frame)>,
        attempted: &mut bool,
    ) -> Result<VersionInfo> {
        // Times an append found its inherited tiles gone after publishing.
        let mut rebased = 0;
        loop {
            // The first attempt may use the state the caller already read
            // (an append needed it for the schema); a stale one only makes
            // `put_new` lose, and the next attempt reads afresh.
            let state = match known.take() {
                Some(state) => state,
                None => self.state(symbol)?,
            };
            if let Some(expected) = options.if_latest
                && expected != state.latest()
            {
                return Err(Error::Conflict {
                    library: printable(&self.name),
                    symbol: printable(symbol),
                    uri: self.inner.uri.clone(),
                    expected,
                    found: state.latest(),
                });
            }
            let mut segments = Vec::new();
            if append && let Some(base) = &state.live {
                self.check_schema(symbol, base, schema)?;
                if base.column_slices != slices {
                    return Err(Error::Conflict {
                        library: printable(&self.name),
                        symbol: printable(symbol),
                        uri: self.inner.uri.clone(),
                        expected: None,
                        found: Some(base.version),
                    });
                }
                segments.extend(base.segments.iter().cloned());
            }
            let inherited = segments.first().cloned();
            segments.extend(new_segments.iter().cloned());
            let manifest = Manifest::new(
                state.next,
                schema,
                slices.to_vec(),
                segments,
                options.metadata.clone(),
            )?;
            *attempted = true;
            // The head is only a hint (readers probe past a stale one): a
            // backend may fail to store it without failing the write.
            let claim = self.claim(symbol, &manifest)?;
            let won = self
                .b()
                .publish_batch(std::mem::take(pending), vec![claim])?
                .first()
                .copied()
                .unwrap_or(false);
            if !won {
                // Another writer took this number: take the next one.
                continue;
            }
            // An append whose base was deleted (with its symbol) before it
            // claimed would name tiles that are gone: once the delete has
            // finished, every tile it removes is gone, so one is enough to
            // look at. Such a version is taken back, and the append starts
            // again from what is there now.
            if let Some(seg) = inherited
                && !self.tile_exists(symbol, &seg)?
            {
                let key = names::version_key(&self.name, symbol, manifest.version)?;
                self.b().delete(&key)?;
                rebased += 1;
                if rebased > 3 {
                    let tile = names::tile_key(&self.name, symbol, &seg.write, seg.index, 0)?;
                    return Err(Error::corrupt(
                        &tile,
                        &Location::new(self.b(), &tile),
                        format!(
                            "symbol {:?} in library {:?}: the version to append to names a missing tile (run `spillpool store URI check`)",
                            printable(symbol),
                            printable(&self.name)
                        ),
                    ));
                }
                continue;
            }
            return Ok(info(&manifest));
        }
    }

    /// Whether the first tile of `seg` is stored.
    fn tile_exists(&self, symbol: &str, seg: &Segment) -> Result<bool> {
        self.b().contains(&names::tile_key(
            &self.name, symbol, &seg.write, seg.index, 0,
        )?)
    }

    /// Publishing `manifest` as the next version of `symbol`, with the head hint.
    fn claim(&self, symbol: &str, manifest: &Manifest) -> Result<Claim> {
        Ok(Claim {
            key: names::version_key(&self.name, symbol, manifest.version)?,
            frame: self.inner.blob(&manifest.to_bytes()?)?,
            hint: Some((
                names::head_key(&self.name, symbol)?,
                self.inner.blob(&manifest.version.to_le_bytes())?,
            )),
        })
    }

    fn tile_jobs<'a>(
        &self,
        symbol: &str,
        write: &str,
        segments: &'a [Vec<RecordBatch>],
        slices: &[(u32, u32)],
    ) -> Result<Vec<TileJob<'a>>> {
        let mut jobs = Vec::with_capacity(segments.len() * slices.len());
        for (i, batches) in segments.iter().enumerate() {
            for (c, &slice) in slices.iter().enumerate() {
                jobs.push(TileJob {
                    key: names::tile_key(&self.name, symbol, write, i as u32, c as u32)?,
                    batches,
                    slice,
                });
            }
        }
        Ok(jobs)
    }

    /// Encodes and stores tiles in parallel, in batches of about
    /// [`StoreOptions::batch_bytes`].
    fn put_tiles(&self, jobs: &[TileJob<'_>], schema: &SchemaRef) -> Result<()> {
        let mut groups: Vec<&[TileJob<'_>]> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, job) in jobs.iter().enumerate() {
            // Segments are slices of the caller's arrays: count their rows,
            // not the shared buffers (which made every tile a batch of its
            // own: a commit and a sync per 8 MB tile).
            bytes += crate::value::spanned_bytes(job.batches)
                * (job.slice.1 - job.slice.0) as usize
                / schema.fields().len().max(1);
            if bytes >= self.inner.options.batch_bytes {
                groups.push(&jobs[start..=i]);
                (start, bytes) = (i + 1, 0);
            }
        }
        if start < jobs.len() {
            groups.push(&jobs[start..]);
        }
        groups
            .into_par_iter()
            .try_for_each(|group| self.b().put_values(tile_values(group, schema)?))
    }

    /// The newest version number of `symbol` and its newest live version.
    ///
    /// The head key is only a hint: the manifest it names is read, newer
    /// numbers are probed (a writer may have died before updating the head),
    /// and deleted versions are skipped. Without a usable hint, probing
    /// starts at version 0.
    fn state(&self, symbol: &str) -> Result<SymState> {
        self.state_and_head(symbol).map(|(state, _)| state)
    }

    /// [`Library::state`] and the head frame as read. A read holds the frame
    /// to its end: on LMDB the thread's read snapshot lives while a frame
    /// borrowed from it does, so the read's other lookups share one
    /// transaction (7 % of a small read). Writers must not hold it: growing
    /// the map waits for every borrowed frame of the process.
    fn state_and_head(&self, symbol: &str) -> Result<(SymState, Option<Bytes>)> {
        // An ordered backend finds the newest manifest in one search.
        let prefix = names::versions_prefix(&self.name, Some(symbol));
        match self
            .b()
            .last_under(&prefix, prefix.len() + names::VERSION_DIGITS)?
        {
            Last::Nothing => {
                return Ok((
                    SymState {
                        next: 0,
                        live: None,
                    },
                    None,
                ));
            }
            Last::Found(key, frame) => {
                if let Some(newest) = key
                    .as_str()
                    .strip_prefix(prefix.as_str())
                    .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|digits| digits.parse::<u64>().ok())
                {
                    let m = self.parse_manifest(&key, frame.clone())?;
                    let live = self.newest_live(symbol, newest, vec![(newest, Some(m))])?;
                    let next = self.after(symbol, newest)?;
                    return Ok((SymState { next, live }, Some(frame)));
                }
            }
            Last::Unknown => {}
        }
        let head = self.b().get(&names::head_key(&self.name, symbol)?)?;
        let hint = head.clone().and_then(|f| head_version(f, symbol));
        // Numbers are contiguous from 0 (deleted versions keep theirs as
        // tombstones; deleting a symbol removes the newest first), so
        // probing forward from the hint, or from 0 without one, finds the
        // newest without listing.
        let mut n = hint.unwrap_or(0);
        let mut first = self.manifest(symbol, n)?;
        if first.is_none() && n != 0 {
            n = 0;
            first = self.manifest(symbol, 0)?;
        }
        let mut known: Vec<(u64, Option<Manifest>)> = Vec::new();
        if let Some(m) = first {
            known.push((n, Some(m)));
            while let Some(next) = n.checked_add(1)
                && let Some(m) = self.manifest(symbol, next)?
            {
                n = next;
                known.push((n, Some(m)));
            }
        }
        let Some(&(newest, _)) = known.last() else {
            return Ok((
                SymState {
                    next: 0,
                    live: None,
                },
                head,
            ));
        };
        let live = self.newest_live(symbol, newest, known)?;
        Ok((
            SymState {
                next: self.after(symbol, newest)?,
                live,
            },
            head,
        ))
    }

    /// The version number after `newest`: a number that cannot grow (only
    /// a forged store holds one) is an error, not a writer looping forever.
    fn after(&self, symbol: &str, newest: u64) -> Result<u64> {
        newest.checked_add(1).map_or_else(
            || {
                let key = names::version_key(&self.name, symbol, newest)?;
                Err(Error::corrupt(
                    &key,
                    &Location::new(self.b(), &key),
                    "the version number is the largest there is",
                ))
            },
            Ok,
        )
    }

    /// The newest version at or below `newest` that is not deleted, given
    /// the manifests already read.
    fn newest_live(
        &self,
        symbol: &str,
        newest: u64,
        mut known: Vec<(u64, Option<Manifest>)>,
    ) -> Result<Option<Manifest>> {
        let mut live = None;
        let mut n = newest;
        loop {
            let m = match known
                .iter_mut()
                .find(|(k, _)| *k == n)
                .and_then(|(_, m)| m.take())
            {
                Some(m) => Some(m),
                None => self.manifest(symbol, n)?,
            };
            if let Some(m) = m
                && !m.deleted
            {
                live = Some(m);
                break;
            }
            if n == 0 {
                break;
            }
            n -= 1;
        }
        Ok(live)
    }

    /// Version numbers with a manifest (deleted ones included), ascending.
    fn version_numbers(&self, symbol: &str) -> Result<Vec<u64>> {
        let prefix = names::versions_prefix(&self.name, Some(symbol));
        Ok(self
            .b()
            .list(&prefix)?
            .iter()
            .filter_map(|k| k.as_str().strip_prefix(&prefix)?.parse().ok())
            .collect())
    }

    fn manifest(&self, symbol: &str, version: u64) -> Result<Option<Manifest>> {
        let key = names::version_key(&self.name, symbol, version)?;
        let frame = self.b().get(&key)?;
        frame.map(|f| self.parse_manifest(&key, f)).transpose()
    }

    fn parse_manifest(&self, key: &Key, frame: Bytes) -> Result<Manifest> {
        let location = Location::new(self.b(), key);
        let value = frame::decode(frame, key, &location)?;
        let bytes = value
            .as_blob()
            .ok_or_else(|| Error::corrupt(key, &location, "a manifest must be a blob"))?;
        Manifest::from_bytes(bytes, key, &location)
    }

    /// Reads the latest version of `symbol`.
    pub fn read(&self, symbol: &str) -> Result<Versioned> {
        self.read_with(symbol, &ReadOptions::default())
    }

    /// Reads a version, columns and rows of `symbol`.
    ///
    /// Unknown columns are [`Error::InvalidValue`]; a missing symbol or
    /// version is [`Error::SymbolNotFound`].
    pub fn read_with(&self, symbol: &str, options: &ReadOptions) -> Result<Versioned> {
        names::validate("symbol", symbol)?;
        let mut _head = None; // see `Library::state_and_head`
        let manifest = match options.as_of {
            Some(v) => self
                .manifest(symbol, v)?
                .filter(|m| !m.deleted)
                .ok_or_else(|| self.not_found(symbol, Some(v)))?,
            None => {
                let (state, head) = self.state_and_head(symbol)?;
                _head = head;
                state.live.ok_or_else(|| self.not_found(symbol, None))?
            }
        };
        let table = self.read_manifest(symbol, &manifest, options)?;
        Ok(Versioned {
            info: info(&manifest),
            table,
        })
    }

    /// Reads the latest version of each symbol, in parallel.
    pub fn read_batch(&self, symbols: &[&str]) -> Result<Vec<Versioned>> {
        symbols.par_iter().map(|s| self.read(s)).collect()
    }

    fn read_manifest(&self, symbol: &str, m: &Manifest, options: &ReadOptions) -> Result<Table> {
        // The manifest's key names errors only: built when one happens.
        let corrupt = |reason: String| match names::version_key(&self.name, symbol, m.version) {
            Ok(mkey) => Error::corrupt(&mkey, &Location::new(self.b(), &mkey), reason),
            Err(e) => e,
        };
        let schema = m
            .decoded_schema()
            .map_err(|reason| corrupt(format!("manifest schema: {reason}")))?;
        let wanted: Vec<usize> = match &options.columns {
            None => (0..schema.fields().len()).collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    schema.index_of(n).map_err(|_| Error::InvalidValue {
                        reason: format!(
                            "symbol {:?} in library {:?} has no column {n:?} (columns: {})",
                            printable(symbol),
                            printable(&self.name),
                            schema
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
                })
                .collect::<Result<_>>()?,
        };
        // Every column, in order: the manifest's schema as it is (projecting
        // would rebuild it, a few percent of a small read).
        let out_schema = if options.columns.is_none() {
            Arc::clone(&schema)
        } else {
            Arc::new(schema.project(&wanted).map_err(|e| Error::InvalidValue {
                reason: e.to_string(),
            })?)
        };
        // The slices holding wanted columns, each with its wanted columns in
        // schema order; `place[k]`: where output column k is among the tiles.
        let mut slice_columns: Vec<(u32, Option<Vec<String>>)> = Vec::new();
        let mut place = vec![(0usize, 0usize); wanted.len()];
        for (c, &(lo, hi)) in m.column_slices.iter().enumerate() {
            let cols: BTreeSet<usize> = wanted
                .iter()
                .copied()
                .filter(|&i| (lo as usize..hi as usize).contains(&i))
                .collect();
            if cols.is_empty() {
                continue;
            }
            for (k, w) in wanted.iter().enumerate() {
                if let Some(p) = cols.iter().position(|i| i == w) {
                    place[k] = (slice_columns.len(), p);
                }
            }
            let whole = cols.len() == (hi - lo) as usize;
            let names = (!whole).then(|| {
                cols.iter()
                    .map(|&i| schema.field(i).name().clone())
                    .collect()
            });
            slice_columns.push((c as u32, names));
        }
        let (start, end) = match &options.row_range {
            Some(r) => (
                r.start.min(m.rows),
                r.end.clamp(r.start.min(m.rows), m.rows),
            ),
            None => (0, m.rows),
        };
        // (segment, first row within it, rows wanted from it)
        let mut parts = Vec::new();
        let mut offset = 0u64;
        for seg in &m.segments {
            let (lo, hi) = (offset, offset + seg.rows);
            if hi > start && lo < end && seg.rows > 0 {
                let from = start.max(lo) - lo;
                parts.push((seg, from, end.min(hi) - lo - from));
            }
            offset = hi;
        }
        let tiles: Vec<Vec<Table>> = parts
            .par_iter()
            .map(|&(seg, _, _)| {
                slice_columns
                    .iter()
                    .map(|(c, cols)| self.read_tile(symbol, m, seg, *c, cols.clone()))
                    .collect()
            })
            .collect::<Result<_>>()?;
        let mut batches = Vec::new();
        for ((seg, from, len), seg_tiles) in parts.iter().zip(tiles) {
            let joined = join_slices(&out_schema, &seg_tiles, &place).map_err(|reason| {
                corrupt(format!("segment {}/{}: {reason}", seg.write, seg.index))
            })?;
            batches.extend(slice_rows(joined, *from as usize, *len as usize));
        }
        Table::try_new(out_schema, batches)
    }

    fn read_tile(
        &self,
        symbol: &str,
        m: &Manifest,
        seg: &Segment,
        slice: u32,
        columns: Option<Vec<String>>,
    ) -> Result<Table> {
        let key = names::tile_key(&self.name, symbol, &seg.write, seg.index, slice)?;
        let location = Location::new(self.b(), &key);
        let missing = || {
            Error::corrupt(
                &key,
                &location,
                format!(
                    "tile of version {} of symbol {:?} in library {:?} is missing (deleted while being read, or damaged: run `spillpool store URI check`)",
                    m.version,
                    printable(symbol),
                    printable(&self.name)
                ),
            )
        };
        let selection = Selection {
            columns,
            batches: None,
        };
        let table = if self.b().reads_by_value() {
            // The tile is held as a table (select from it, nothing to decode),
            // or behind filters, which decode it once from the stored frame.
            match self.b().get_value(&key)?.ok_or_else(missing)? {
                Value::Table(t) => selection
                    .apply(&t)
                    .map_err(|e| Error::corrupt(&key, &location, e.to_string()))?,
                Value::Blob(_) => {
                    return Err(Error::corrupt(
                        &key,
                        &location,
                        "a blob where a tile was expected",
                    ));
                }
            }
        } else {
            let frame = self.b().get(&key)?.ok_or_else(missing)?;
            frame::decode_table_selected(frame, &key, &location, &selection)?
        };
        if table.num_rows() as u64 != seg.rows {
            return Err(Error::corrupt(
                &key,
                &location,
                format!(
                    "tile has {} rows, its manifest says {}",
                    table.num_rows(),
                    seg.rows
                ),
            ));
        }
        Ok(table)
    }

    /// Writes many symbols at once: their tiles and manifests go to the
    /// backend in a few batches (one LMDB transaction each), which is how
    /// thousands of small symbols are written per second.
    ///
    /// Symbols must be distinct. Each symbol gets a new version as
    /// [`Library::write`] would give it.
    pub fn write_batch(&self, items: &[(&str, &Table)]) -> Result<Vec<VersionInfo>> {
        let mut seen = HashSet::new();
        for (symbol, _) in items {
            names::validate("symbol", symbol)?;
            if !seen.insert(*symbol) {
                return Err(Error::InvalidValue {
                    reason: format!("symbol {:?} appears twice in one batch", printable(symbol)),
                });
            }
        }
        self.inner.require_library(&self.name)?;
        let write = write_id();
        let prepared: Vec<Prepared> = items
            .par_iter()
            .map(|(symbol, table)| {
                let slices = column_slices(table.schema(), self.inner.options.columns_per_segment);
                let segments = row_segments(table, self.inner.options.rows_per_segment);
                let jobs = self.tile_jobs(symbol, &write, &segments, &slices)?;
                let frames = tile_values(&jobs, table.schema())?;
                let segs = describe_segments(&write, &segments);
                Ok((frames, segs, slices))
            })
            .collect::<Result<_>>()?;
        let mut tiles = Vec::new();
        let mut plans = Vec::with_capacity(items.len());
        for (frames, segs, slices) in prepared {
            tiles.extend(frames);
            plans.push((segs, slices));
        }
        // Tiles, manifests and heads in one publish: one LMDB commit (one
        // sync) per batch. A backend that keeps values takes the tiles as
        // they are, first.
        let plain = if self.b().keeps_values() {
            self.b().put_values(tiles)?;
            Vec::new()
        } else {
            encode_values(tiles)?
        };
        let states: Vec<SymState> = items
            .iter()
            .map(|(s, _)| self.state(s))
            .collect::<Result<_>>()?;
        let mut manifests = Vec::with_capacity(items.len());
        let mut claims = Vec::with_capacity(items.len());
        for (((symbol, table), (segs, slices)), state) in items.iter().zip(&plans).zip(&states) {
            let m = Manifest::new(
                state.next,
                table.schema(),
                slices.clone(),
                segs.clone(),
                None,
            )?;
            claims.push(self.claim(symbol, &m)?);
            manifests.push(m);
        }
        let won = self.b().publish_batch(plain, claims)?;
        let mut out = Vec::with_capacity(items.len());
        for (((symbol, table), (segs, slices)), (m, won)) in
            items.iter().zip(&plans).zip(manifests.into_iter().zip(won))
        {
            if won {
                out.push(info(&m));
                continue;
            }
            // Lost a race for this symbol's number: publish it alone.
            out.push(self.publish(
                symbol,
                table.schema(),
                slices,
                segs,
                &WriteOptions::default(),
                false,
                None,
                &mut Vec::new(),
                &mut false,
            )?);
        }
        Ok(out)
    }

    /// Every symbol with at least one version, sorted.
    pub fn list_symbols(&self) -> Result<Vec<String>> {
        let prefix = names::versions_prefix(&self.name, None);
        let mut symbols: Vec<String> = Vec::new();
        for key in self.b().list(&prefix)? {
            if let Some((symbol, _)) = key
                .as_str()
                .strip_prefix(&prefix)
                .and_then(|r| r.split_once('/'))
                && symbols.last().map(String::as_str) != Some(symbol)
            {
                symbols.push(symbol.to_string());
            }
        }
        Ok(symbols)
    }

    /// Whether `symbol` has a version.
    pub fn has_symbol(&self, symbol: &str) -> Result<bool> {
        names::validate("symbol", symbol)?;
        Ok(self.state(symbol)?.live.is_some())
    }

    /// The live versions of `symbol`, oldest first (empty if there is none).
    pub fn list_versions(&self, symbol: &str) -> Result<Vec<VersionInfo>> {
        names::validate("symbol", symbol)?;
        let mut out = Vec::new();
        for n in self.version_numbers(symbol)? {
            if let Some(m) = self.manifest(symbol, n)?
                && !m.deleted
            {
                out.push(info(&m));
            }
        }
        Ok(out)
    }

    /// Deletes `symbol`: every version and its data. Returns whether it existed.
    ///
    /// A write of the symbol that publishes meanwhile lands whole after the
    /// delete. Tiles left by writers that died are not removed here: `check`
    /// with repair removes them.
    pub fn delete(&self, symbol: &str) -> Result<bool> {
        names::validate("symbol", symbol)?;
        let existed = self.state(symbol)?.live.is_some();
        let b = self.b();
        // The head goes first: a writer that publishes after this point
        // leaves its own head, so its version stays findable; one that
        // published before is in the listing below, and goes with the rest.
        b.delete(&names::head_key(&self.name, symbol)?)?;
        // Only the tiles the versions name: a concurrent writer's own tiles
        // (its version may land after this) are not ours to take. Tiles of
        // writers that died are orphans for `check`.
        let mut tiles = Vec::new();
        // Every live version becomes a tombstone (its tiles noted first),
        // then the next number is taken (a fence, as in `delete_version`):
        // an append that read a live version as its base loses its claim
        // and, reading again, finds nothing to build on. One that claims
        // after the delete checks its inherited tiles (`publish`).
        let last = loop {
            for n in self.version_numbers(symbol)? {
                let Some(m) = self.manifest(symbol, n)?.filter(|m| !m.deleted) else {
                    continue;
                };
                for seg in &m.segments {
                    for c in 0..m.column_slices.len() {
                        tiles.push(names::tile_key(
                            &self.name, symbol, &seg.write, seg.index, c as u32,
                        )?);
                    }
                }
                let key = names::version_key(&self.name, symbol, n)?;
                b.put(&key, self.inner.blob(&m.tombstone().to_bytes()?)?)?;
            }
            let state = self.state(symbol)?;
            if state.live.is_some() {
                continue; // a version went live meanwhile
            }
            let Some(newest) = state.next.checked_sub(1) else {
                break None; // no version at all
            };
            let Some(template) = self.manifest(symbol, newest)? else {
                break Some(newest);
            };
            let fence = Manifest {
                version: state.next,
                ..template.tombstone()
            };
            let claim = Claim {
                key: names::version_key(&self.name, symbol, state.next)?,
                frame: self.inner.blob(&fence.to_bytes()?)?,
                hint: None,
            };
            let won = b.publish_batch(Vec::new(), vec![claim])?;
            if won.first().copied().unwrap_or(false) {
                break Some(state.next);
            }
        };
        // Newest manifest first: the numbers left stay contiguous from 0,
        // which probing for the newest version relies on. Versions after
        // the fence were published after this delete, and stay.
        let mut versions = self.version_numbers(symbol)?;
        versions.retain(|&n| last.is_some_and(|last| n <= last));
        versions.reverse();
        for n in versions {
            b.delete(&names::version_key(&self.name, symbol, n)?)?;
        }
        tiles.sort();
        tiles.dedup();
        for key in tiles {
            b.delete(&key)?;
        }
        Ok(existed)
    }

    /// Deletes one version of `symbol`; returns whether it existed.
    ///
    /// Its number is not reused. Data shared with other versions (an
    /// append shares its base's segments) stays. Deleting the newest live
    /// version also takes the next number, as a deleted version that never
    /// was live: an append that read the deleted version as its base then
    /// cannot publish on top of data being removed, and starts again from
    /// what is left. Deleting the last live version deletes the symbol,
    /// whose numbers then start again at 0.
    pub fn delete_version(&self, symbol: &str, version: u64) -> Result<bool> {
        names::validate("symbol", symbol)?;
        let Some(m) = self.manifest(symbol, version)?.filter(|m| !m.deleted) else {
            return Ok(false);
        };
        let mut any_other = false;
        for n in self.version_numbers(symbol)? {
            if n != version
                && let Some(o) = self.manifest(symbol, n)?
                && !o.deleted
            {
                any_other = true;
                break;
            }
        }
        if !any_other {
            return self.delete(symbol);
        }
        let key = names::version_key(&self.name, symbol, version)?;
        let tombstone = m.tombstone();
        self.b()
            .put(&key, self.inner.blob(&tombstone.to_bytes()?)?)?;
        // An append that read this version as its base before the tombstone
        // may still publish the next number, naming tiles we are about to
        // delete. If this was the newest live version, take the next number
        // ourselves (a deleted version that never was live), so that such an
        // append loses its claim and starts again from the versions left;
        // appends that claimed before the fence are in the listing below.
        // (A newer live version makes the fence needless: an append based
        // on this one could only have claimed its number before it.)
        loop {
            let state = self.state(symbol)?;
            if state.live.as_ref().is_some_and(|l| l.version > version) {
                break;
            }
            let fence = Manifest {
                version: state.next,
                ..tombstone.clone()
            };
            let won = self
                .b()
                .publish_batch(Vec::new(), vec![self.claim(symbol, &fence)?])?;
            if won.first().copied().unwrap_or(false) {
                break;
            }
        }
        // Now list what is live: only versions listed here can name the tiles.
        let mut others: HashMap<(String, u32), ()> = HashMap::new();
        for n in self.version_numbers(symbol)? {
            if n == version {
                continue;
            }
            if let Some(o) = self.manifest(symbol, n)?
                && !o.deleted
            {
                for s in o.segments {
                    others.insert((s.write, s.index), ());
                }
            }
        }
        for seg in &m.segments {
            if others.contains_key(&(seg.write.clone(), seg.index)) {
                continue;
            }
            for c in 0..m.column_slices.len() {
                self.b().delete(&names::tile_key(
                    &self.name, symbol, &seg.write, seg.index, c as u32,
                )?)?;
            }
        }
        Ok(true)
    }
}

fn info(m: &Manifest) -> VersionInfo {
    VersionInfo {
        version: m.version,
        rows: m.rows,
        created_ms: m.created_ms,
        segments: m.segments.len(),
        metadata: m.metadata.clone(),
    }
}

fn head_version(frame: Bytes, symbol: &str) -> Option<u64> {
    let key = Key::new(symbol).ok()?;
    let value = frame::decode(frame, &key, "").ok()?;
    let bytes: [u8; 8] = value.as_blob()?.as_ref().try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A key part no other write of any process uses: time, process, counter, randomness.
fn write_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 4];
    // Without randomness, time + pid + counter still separate writers on one host.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    format!(
        "{:011x}-{:x}-{:x}-{}",
        manifest::now_ms(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Milliseconds since the epoch when write `id` began (see [`write_id`]).
pub(crate) fn write_time_ms(id: &str) -> Option<u64> {
    u64::from_str_radix(id.split('-').next()?, 16).ok()
}

/// Column ranges of at most `per_slice` columns covering `schema`.
fn column_slices(schema: &Schema, per_slice: usize) -> Vec<(u32, u32)> {
    let n = schema.fields().len();
    if n == 0 {
        return vec![(0, 0)];
    }
    (0..n)
        .step_by(per_slice)
        .map(|lo| (lo as u32, (lo + per_slice).min(n) as u32))
        .collect()
}

/// Cuts `table` into groups of at most `rows` rows (slices, no copy).
fn row_segments(table: &Table, rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut filled = 0;
    for batch in table.batches() {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (rows - filled).min(batch.num_rows() - offset);
            current.push(batch.slice(offset, take));
            filled += take;
            offset += take;
            if filled == rows {
                out.push(std::mem::take(&mut current));
                filled = 0;
            }
        }
    }
    if filled > 0 {
        out.push(current);
    }
    out
}

/// The manifest entries of the row segments one write stores.
fn describe_segments(write: &str, segments: &[Vec<RecordBatch>]) -> Vec<Segment> {
    segments
        .iter()
        .enumerate()
        .map(|(i, batches)| Segment {
            write: write.to_string(),
            index: i as u32,
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        })
        .collect()
}

/// The tiles of `jobs` as tables (projections: no data is copied); the
/// backend encodes them, in parallel, or keeps them as they are (`mem://`).
fn tile_values(jobs: &[TileJob<'_>], schema: &SchemaRef) -> Result<Vec<(Key, Value)>> {
    jobs.iter()
        .map(|job| {
            let idx: Vec<usize> = (job.slice.0 as usize..job.slice.1 as usize).collect();
            let bad = |e: arrow_schema::ArrowError| Error::InvalidValue {
                reason: e.to_string(),
            };
            let tile_schema = Arc::new(schema.project(&idx).map_err(bad)?);
            let batches = job
                .batches
                .iter()
                .map(|b| b.project(&idx))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?;
            let tile = Value::Table(Table::try_new(tile_schema, batches)?);
            Ok((job.key.clone(), tile))
        })
        .collect()
}

/// Joins the tiles of one segment (one per column slice, same batch
/// boundaries) into batches of `schema`'s columns; output column k is column
/// `place[k].1` of tile `place[k].0`.
fn join_slices(
    schema: &SchemaRef,
    tiles: &[Table],
    place: &[(usize, usize)],
) -> std::result::Result<Vec<RecordBatch>, String> {
    let Some(first) = tiles.first() else {
        return Err("no tile".into());
    };
    let n = first.batches().len();
    if tiles.iter().any(|t| t.batches().len() != n) {
        return Err("its tiles have different batch counts".into());
    }
    let mut out = Vec::with_capacity(n);
    for j in 0..n {
        let columns = place
            .iter()
            .map(|&(t, p)| {
                tiles[t].batches()[j]
                    .columns()
                    .get(p)
                    .cloned()
                    .ok_or_else(|| format!("tile {t} has no column {p}"))
            })
            .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
        let rows = first.batches()[j].num_rows();
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(schema),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| e.to_string())?;
        out.push(batch);
    }
    Ok(out)
}

/// Rows `from..from + len` of `batches` (slices, no copy).
fn slice_rows(batches: Vec<RecordBatch>, from: usize, len: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let (mut skip, mut left) = (from, len);
    for b in batches {
        if left == 0 {
            break;
        }
        if skip >= b.num_rows() {
            skip -= b.num_rows();
            continue;
        }
        let take = (b.num_rows() - skip).min(left);
        out.push(if skip == 0 && take == b.num_rows() {
            b
        } else {
            b.slice(skip, take)
        });
        left -= take;
        skip = 0;
    }
    out
}
