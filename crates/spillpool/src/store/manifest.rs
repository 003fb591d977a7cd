//! Version manifests: the small record that makes a version exist.
//!
//! A manifest is stored as a blob frame (so it is checksummed and filtered
//! like everything else). It names the version's row segments (each written
//! by some write, possibly an earlier one for an append), the column slices
//! every segment is split into, the schema (an Arrow IPC stream holding no
//! batch) and the user's metadata.
//!
//! Format 2 (written since 0.1, session 5) is binary, little-endian:
//!
//! | field | bytes |
//! |---|---|
//! | magic `SPMF` | 4 |
//! | format (2) | u32 |
//! | version, created (ms since the epoch) | u64, u64 |
//! | deleted (0 or 1) | u8 |
//! | rows | u64 |
//! | schema | u32 length + IPC stream |
//! | column slices | u32 count + count × (u32 start, u32 end) |
//! | segments | u32 count + count × (u16 length + write id, u32 index, u64 rows) |
//! | metadata | u32 length (`u32::MAX`: none) + JSON text |
//!
//! Format 1 was JSON with the schema hex-encoded; it is still read. Parsing
//! the JSON was a tenth of a small store read.

use std::io::Cursor;
use std::sync::Arc;

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::Key;

/// The manifest format this build writes.
const MANIFEST_FORMAT: u32 = 2;
/// The JSON format of earlier builds, still read.
const JSON_FORMAT: u32 = 1;
const MAGIC: &[u8; 4] = b"SPMF";
/// Metadata length meaning "no metadata".
const NO_METADATA: u32 = u32::MAX;

/// One row segment of a version: which write stored its tiles, and how many rows it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Segment {
    /// The write id the tiles are keyed under.
    pub write: String,
    /// The segment's index within that write.
    pub index: u32,
    /// Rows in the segment.
    pub rows: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub version: u64,
    /// Milliseconds since the Unix epoch when the version was published.
    pub created_ms: u64,
    /// A deleted version keeps its number (numbers are never reused).
    pub deleted: bool,
    pub rows: u64,
    /// The schema as an Arrow IPC stream holding no batch.
    pub schema: Arc<[u8]>,
    /// Column ranges `[start, end)` of the schema, one tile per range per segment.
    pub column_slices: Vec<(u32, u32)>,
    pub segments: Vec<Segment>,
    pub metadata: Option<serde_json::Value>,
}

/// Format 1, as earlier builds wrote it.
#[derive(Serialize, Deserialize)]
struct JsonManifest {
    format: u32,
    version: u64,
    created_ms: u64,
    #[serde(default)]
    deleted: bool,
    rows: u64,
    /// The schema, hex-encoded.
    schema: String,
    column_slices: Vec<(u32, u32)>,
    segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
}

impl Manifest {
    pub(crate) fn new(
        version: u64,
        schema: &Schema,
        column_slices: Vec<(u32, u32)>,
        segments: Vec<Segment>,
        metadata: Option<serde_json::Value>,
    ) -> Result<Self> {
        Ok(Manifest {
            version,
            created_ms: now_ms(),
            deleted: false,
            rows: segments.iter().map(|s| s.rows).sum(),
            schema: encode_schema(schema)?,
            column_slices,
            segments,
            metadata,
        })
    }

    /// The record left behind by a deleted version.
    pub(crate) fn tombstone(&self) -> Self {
        Manifest {
            deleted: true,
            segments: Vec::new(),
            rows: 0,
            created_ms: now_ms(),
            ..self.clone()
        }
    }

    /// The manifest in format 2.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        let too_big = |what: &str| Error::InvalidValue {
            reason: format!("manifest: {what} too large to store"),
        };
        let len32 = |n: usize, what: &str| u32::try_from(n).map_err(|_| too_big(what));
        let metadata = self
            .metadata
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::InvalidValue {
                reason: format!("manifest metadata does not serialise: {e}"),
            })?;
        let mut out = Vec::with_capacity(
            64 + self.schema.len()
                + 8 * self.column_slices.len()
                + self
                    .segments
                    .iter()
                    .map(|s| 14 + s.write.len())
                    .sum::<usize>()
                + metadata.as_ref().map_or(0, Vec::len),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&MANIFEST_FORMAT.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.push(u8::from(self.deleted));
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&len32(self.schema.len(), "schema")?.to_le_bytes());
        out.extend_from_slice(&self.schema);
        out.extend_from_slice(&len32(self.column_slices.len(), "column slices")?.to_le_bytes());
        for (lo, hi) in &self.column_slices {
            out.extend_from_slice(&lo.to_le_bytes());
            out.extend_from_slice(&hi.to_le_bytes());
        }
        out.extend_from_slice(&len32(self.segments.len(), "segments")?.to_le_bytes());
        for seg in &self.segments {
            let len = u16::try_from(seg.write.len()).map_err(|_| too_big("write id"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(seg.write.as_bytes());
            out.extend_from_slice(&seg.index.to_le_bytes());
            out.extend_from_slice(&seg.rows.to_le_bytes());
        }
        match &metadata {
            Some(m) => {
                let len = len32(m.len(), "metadata").and_then(|n| {
                    if n == NO_METADATA {
                        Err(too_big("metadata"))
                    } else {
                        Ok(n)
                    }
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(m);
            }
            None => out.extend_from_slice(&NO_METADATA.to_le_bytes()),
        }
        Ok(out)
    }

    /// Parses a manifest (format 2, or format 1's JSON) read from `key` at `location`.
    pub(crate) fn from_bytes(
        bytes: &[u8],
        key: &Key,
        location: &(impl std::fmt::Display + ?Sized),
    ) -> Result<Self> {
        let m = if bytes.starts_with(MAGIC) {
            parse_binary(bytes)
        } else {
            parse_json(bytes)
        }
        .map_err(|reason| Error::corrupt(key, location, format!("manifest: {reason}")))?;
        if m.rows != m.segments.iter().map(|s| s.rows).sum::<u64>() {
            return Err(Error::corrupt(
                key,
                location,
                "manifest rows differ from its segments",
            ));
        }
        Ok(m)
    }

    /// The version's schema.
    pub(crate) fn schema(
        &self,
        key: &Key,
        location: &(impl std::fmt::Display + ?Sized),
    ) -> Result<SchemaRef> {
        self.decoded_schema()
            .map_err(|reason| Error::corrupt(key, location, format!("manifest schema: {reason}")))
    }

    /// The version's schema, or why it does not decode.
    pub(crate) fn decoded_schema(&self) -> std::result::Result<SchemaRef, String> {
        decode_schema(&self.schema)
    }
}

/// Reads little-endian fields off a byte slice, every length checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "{what} ({n} bytes at {}) runs past the end ({} bytes)",
                self.at,
                self.bytes.len()
            ));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of entries of at least `min_size` bytes each, bounded by the
    /// bytes left, so that a damaged count cannot make us allocate.
    fn count(&mut self, min_size: usize, what: &str) -> std::result::Result<usize, String> {
        let n = self.u32(what)? as usize;
        let left = self.bytes.len() - self.at;
        if n > left / min_size {
            return Err(format!("{n} {what} cannot fit in the {left} bytes left"));
        }
        Ok(n)
    }
}

fn parse_binary(bytes: &[u8]) -> std::result::Result<Manifest, String> {
    let mut r = Reader { bytes, at: 0 };
    r.take(MAGIC.len(), "magic")?;
    let format = r.u32("format")?;
    if format != MANIFEST_FORMAT {
        return Err(format!(
            "format {format} (this build reads {JSON_FORMAT} and {MANIFEST_FORMAT})"
        ));
    }
    let version = r.u64("version")?;
    let created_ms = r.u64("creation time")?;
    let deleted = match r.array::<1>("deleted flag")?[0] {
        0 => false,
        1 => true,
        b => return Err(format!("deleted flag {b} is neither 0 nor 1")),
    };
    let rows = r.u64("rows")?;
    let n = r.u32("schema length")? as usize;
    let schema = schema_bytes(r.take(n, "schema")?);
    let n = r.count(8, "column slices")?;
    let mut column_slices = Vec::with_capacity(n);
    for _ in 0..n {
        column_slices.push((r.u32("slice start")?, r.u32("slice end")?));
    }
    let n = r.count(14, "segments")?;
    let mut segments = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u16("write id length")? as usize;
        let write = std::str::from_utf8(r.take(len, "write id")?)
            .map_err(|_| "a write id is not UTF-8")?
            .to_string();
        segments.push(Segment {
            write,
            index: r.u32("segment index")?,
            rows: r.u64("segment rows")?,
        });
    }
    let metadata = match r.u32("metadata length")? {
        NO_METADATA => None,
        n => {
            let text = r.take(n as usize, "metadata")?;
            Some(serde_json::from_slice(text).map_err(|e| format!("metadata: {e}"))?)
        }
    };
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the end", bytes.len() - r.at));
    }
    Ok(Manifest {
        version,
        created_ms,
        deleted,
        rows,
        schema,
        column_slices,
        segments,
        metadata,
    })
}

fn parse_json(bytes: &[u8]) -> std::result::Result<Manifest, String> {
    let m: JsonManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if m.format != JSON_FORMAT {
        return Err(format!(
            "format {} (this build reads {JSON_FORMAT} and {MANIFEST_FORMAT})",
            m.format
        ));
    }
    Ok(Manifest {
        version: m.version,
        created_ms: m.created_ms,
        deleted: m.deleted,
        rows: m.rows,
        schema: Arc::from(unhex(&m.schema)?),
        column_slices: m.column_slices,
        segments: m.segments,
        metadata: m.metadata,
    })
}

fn unhex(hex: &str) -> std::result::Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    let digit = |c: u8, at: usize| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(format!("bad hex at {at}")),
    };
    hex.as_bytes()
        .chunks_exact(2)
        .enumerate()
        .map(|(i, p)| Ok(digit(p[0], 2 * i)? << 4 | digit(p[1], 2 * i + 1)?))
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Recently encoded and decoded schemas: a batch of small symbols shares
/// one schema, and encoding or decoding it is most of a small read's or
/// write's work. Keyed by the schema (encoding) and its bytes (decoding).
/// Per thread, so that parallel reads share no lock.
type SchemaCache = std::cell::RefCell<Vec<(SchemaRef, Arc<[u8]>)>>;
thread_local! {
    static SCHEMAS: SchemaCache = const { std::cell::RefCell::new(Vec::new()) };
}
const SCHEMAS_KEPT: usize = 16;

fn remember(schema: SchemaRef, bytes: Arc<[u8]>) {
    SCHEMAS.with_borrow_mut(|cache| {
        if cache.len() >= SCHEMAS_KEPT {
            cache.remove(0);
        }
        cache.push((schema, bytes));
    });
}

/// The cached schema encoded as `bytes`, and the cache's copy of them.
fn known(bytes: &[u8]) -> Option<(SchemaRef, Arc<[u8]>)> {
    SCHEMAS.with_borrow(|cache| {
        cache
            .iter()
            .find(|(_, b)| **b == *bytes)
            .map(|(s, b)| (Arc::clone(s), Arc::clone(b)))
    })
}

/// `bytes` shared with the cache when it holds them (no copy per manifest read).
fn schema_bytes(bytes: &[u8]) -> Arc<[u8]> {
    known(bytes).map_or_else(|| Arc::from(bytes), |(_, b)| b)
}

fn encode_schema(schema: &Schema) -> Result<Arc<[u8]>> {
    let known = SCHEMAS.with_borrow(|cache| {
        cache
            .iter()
            .find(|(s, _)| s.as_ref() == schema)
            .map(|(_, bytes)| Arc::clone(bytes))
    });
    if let Some(bytes) = known {
        return Ok(bytes);
    }
    let bad = |e: arrow_schema::ArrowError| Error::InvalidValue {
        reason: format!("schema does not encode: {e}"),
    };
    let mut writer = StreamWriter::try_new(Vec::new(), schema).map_err(bad)?;
    writer.finish().map_err(bad)?;
    let bytes: Arc<[u8]> = Arc::from(writer.into_inner().map_err(bad)?);
    remember(Arc::new(schema.clone()), Arc::clone(&bytes));
    Ok(bytes)
}

fn decode_schema(bytes: &[u8]) -> std::result::Result<SchemaRef, String> {
    if let Some((schema, _)) = known(bytes) {
        return Ok(schema);
    }
    let owned = bytes.to_vec();
    // arrow's schema converter panics on some malformed flatbuffers.
    let schema = std::panic::catch_unwind(|| {
        StreamReader::try_new(Cursor::new(owned), None)
            .map(|r| r.schema())
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("the schema made the decoder panic".into()))
    .map(|s| Arc::new(Schema::clone(&s)))?;
    remember(Arc::clone(&schema), Arc::from(bytes));
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};

    fn key() -> Key {
        Key::new("k").unwrap_or_else(|e| panic!("{e}"))
    }

    fn sample(metadata: Option<serde_json::Value>) -> (Manifest, Schema) {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Float64, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        let segs = vec![
            Segment {
                write: "0192f0a1b2c-1f-3-a1b2c3d4".into(),
                index: 0,
                rows: 5,
            },
            Segment {
                write: "w2".into(),
                index: 7,
                rows: 11,
            },
        ];
        let m = Manifest::new(3, &schema, vec![(0, 1), (1, 2)], segs, metadata)
            .unwrap_or_else(|e| panic!("{e}"));
        (m, schema)
    }

    fn same(a: &Manifest, b: &Manifest) {
        assert_eq!(
            (a.version, a.created_ms, a.deleted, a.rows),
            (b.version, b.created_ms, b.deleted, b.rows)
        );
        assert_eq!(a.schema, b.schema);
        assert_eq!(a.column_slices, b.column_slices);
        assert_eq!(a.segments, b.segments);
        assert_eq!(a.metadata, b.metadata);
    }

    fn parse(bytes: &[u8]) -> Result<Manifest> {
        Manifest::from_bytes(bytes, &key(), "here")
    }

    #[test]
    fn round_trips_with_and_without_metadata() {
        for metadata in [
            None,
            Some(serde_json::json!({"source": "test", "n": [1, 2.5]})),
        ] {
            let (m, schema) = sample(metadata);
            let bytes = m.to_bytes().unwrap_or_else(|e| panic!("{e}"));
            assert!(bytes.starts_with(MAGIC));
            let back = parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
            same(&m, &back);
            let decoded = back
                .schema(&key(), "here")
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(decoded.as_ref(), &schema);
            let tomb = back.tombstone();
            let again = parse(&tomb.to_bytes().unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(again.deleted && again.segments.is_empty());
        }
    }

    /// Stores written by earlier builds hold JSON manifests: still read.
    #[test]
    fn reads_format_1_json() {
        let (m, _) = sample(Some(serde_json::json!({"k": "v"})));
        let hex: String = m.schema.iter().map(|b| format!("{b:02x}")).collect();
        let json = serde_json::to_vec(&JsonManifest {
            format: JSON_FORMAT,
            version: m.version,
            created_ms: m.created_ms,
            deleted: false,
            rows: m.rows,
            schema: hex.clone(),
            column_slices: m.column_slices.clone(),
            segments: m.segments.clone(),
            metadata: m.metadata.clone(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        same(&m, &parse(&json).unwrap_or_else(|e| panic!("{e}")));
        // Uppercase hex was never written: rejected, not guessed.
        let upper = String::from_utf8_lossy(&json).replace(&hex, &hex.to_uppercase());
        assert!(parse(upper.as_bytes()).is_err());
        let future = String::from_utf8_lossy(&json).replace("\"format\":1", "\"format\":9");
        let err = parse(future.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("format 9"), "{err}");
        assert!(parse(b"{not json").is_err());
    }

    /// Every truncation and every flipped byte is an error or a manifest
    /// that still adds up (the frame's checksum catches damage before this;
    /// this is about never panicking or allocating what a length claims).
    #[test]
    fn damage_is_an_error_never_a_panic() {
        let (m, _) = sample(Some(serde_json::json!({"x": 1})));
        let bytes = m.to_bytes().unwrap_or_else(|e| panic!("{e}"));
        for n in 0..bytes.len() {
            assert!(parse(&bytes[..n]).is_err(), "truncated to {n} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(parse(&longer).is_err(), "a trailing byte");
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                if let Ok(back) = parse(&bad) {
                    assert_eq!(back.rows, back.segments.iter().map(|s| s.rows).sum::<u64>());
                }
            }
        }
        let mut lying = m.clone();
        lying.rows = 17;
        let bytes = lying.to_bytes().unwrap_or_else(|e| panic!("{e}"));
        assert!(parse(&bytes).is_err(), "rows differ from segments");
        let mut bad_schema = m;
        bad_schema.schema = Arc::from(&b"\xff\xff\x00"[..]);
        assert!(bad_schema.schema(&key(), "here").is_err());
    }

    #[test]
    fn schemas_round_trip_through_the_cache_and_without_it() {
        let schema = Schema::new(vec![Field::new("only-here", DataType::Int32, true)]);
        let bytes = encode_schema(&schema).unwrap_or_else(|e| panic!("{e}"));
        let again = encode_schema(&schema).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Arc::ptr_eq(&bytes, &again),
            "the second encoding came from the cache"
        );
        assert_eq!(
            decode_schema(&bytes).map(|s| Schema::clone(&s)),
            Ok(schema.clone())
        );
        SCHEMAS.with_borrow_mut(Vec::clear);
        assert_eq!(decode_schema(&bytes).map(|s| Schema::clone(&s)), Ok(schema));
        assert!(decode_schema(&bytes[..bytes.len() / 2]).is_err());
    }
}
