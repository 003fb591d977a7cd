//! Version manifests: the small record that makes a version exist.
//!
//! A manifest is stored as a blob frame (so it is checksummed and filtered
//! like everything else) holding JSON. It names the version's row segments
//! (each written by some write, possibly an earlier one for an append), the
//! column slices every segment is split into, the schema (an Arrow IPC schema
//! message, hex-encoded) and the user's metadata.

use std::io::Cursor;
use std::sync::Arc;

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::Key;

/// The manifest format this build writes and reads.
const MANIFEST_FORMAT: u32 = 1;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub version: u64,
    /// Milliseconds since the Unix epoch when the version was published.
    pub created_ms: u64,
    /// A deleted version keeps its number (numbers are never reused).
    #[serde(default)]
    pub deleted: bool,
    pub rows: u64,
    /// The schema as an Arrow IPC stream holding no batch, hex-encoded.
    pub schema: String,
    /// Column ranges `[start, end)` of the schema, one tile per range per segment.
    pub column_slices: Vec<(u32, u32)>,
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
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
            format: MANIFEST_FORMAT,
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

    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::InvalidValue {
            reason: format!("manifest does not serialise: {e}"),
        })
    }

    /// Parses a manifest read from `key` at `location`.
    pub(crate) fn from_bytes(
        bytes: &[u8],
        key: &Key,
        location: &(impl std::fmt::Display + ?Sized),
    ) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(key, location, format!("manifest: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(Error::corrupt(
                key,
                location,
                format!(
                    "manifest format {} (this build reads {MANIFEST_FORMAT})",
                    m.format
                ),
            ));
        }
        if m.rows != m.segments.iter().map(|s| s.rows).sum::<u64>() {
            return Err(Error::corrupt(
                key,
                location,
                "manifest rows differ from its segments",
            ));
        }
        Ok(m)
    }

    pub(crate) fn schema(
        &self,
        key: &Key,
        location: &(impl std::fmt::Display + ?Sized),
    ) -> Result<SchemaRef> {
        decode_schema(&self.schema)
            .map_err(|reason| Error::corrupt(key, location, format!("manifest schema: {reason}")))
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Recently encoded and decoded schemas: a batch of small symbols shares
/// one schema, and encoding or decoding it is most of a small read's or
/// write's work. Keyed by the schema (encoding) and its hex text (decoding).
/// Per thread, so that parallel reads share no lock.
type SchemaCache = std::cell::RefCell<Vec<(SchemaRef, Arc<str>)>>;
thread_local! {
    static SCHEMAS: SchemaCache = const { std::cell::RefCell::new(Vec::new()) };
}
const SCHEMAS_KEPT: usize = 16;

fn remember(schema: SchemaRef, hex: Arc<str>) {
    SCHEMAS.with_borrow_mut(|cache| {
        if cache.len() >= SCHEMAS_KEPT {
            cache.remove(0);
        }
        cache.push((schema, hex));
    });
}

fn encode_schema(schema: &Schema) -> Result<String> {
    let known = SCHEMAS.with_borrow(|cache| {
        cache
            .iter()
            .find(|(s, _)| s.as_ref() == schema)
            .map(|(_, hex)| hex.to_string())
    });
    if let Some(hex) = known {
        return Ok(hex);
    }
    let bad = |e: arrow_schema::ArrowError| Error::InvalidValue {
        reason: format!("schema does not encode: {e}"),
    };
    let mut writer = StreamWriter::try_new(Vec::new(), schema).map_err(bad)?;
    writer.finish().map_err(bad)?;
    let bytes = writer.into_inner().map_err(bad)?;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hex: String = bytes
        .iter()
        .flat_map(|b| {
            [
                DIGITS[(b >> 4) as usize] as char,
                DIGITS[(b & 15) as usize] as char,
            ]
        })
        .collect();
    remember(Arc::new(schema.clone()), Arc::from(hex.as_str()));
    Ok(hex)
}

fn decode_schema(hex: &str) -> std::result::Result<SchemaRef, String> {
    let known = SCHEMAS.with_borrow(|cache| {
        cache
            .iter()
            .find(|(_, h)| h.as_ref() == hex)
            .map(|(schema, _)| Arc::clone(schema))
    });
    if let Some(schema) = known {
        return Ok(schema);
    }
    if !hex.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    let digit = |c: u8, at: usize| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(format!("bad hex at {at}")),
    };
    let bytes = hex
        .as_bytes()
        .chunks_exact(2)
        .enumerate()
        .map(|(i, p)| Ok(digit(p[0], 2 * i)? << 4 | digit(p[1], 2 * i + 1)?))
        .collect::<std::result::Result<Vec<u8>, String>>()?;
    // arrow's schema converter panics on some malformed flatbuffers.
    let schema = std::panic::catch_unwind(|| {
        StreamReader::try_new(Cursor::new(bytes), None)
            .map(|r| r.schema())
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("the schema made the decoder panic".into()))
    .map(|s| Arc::new(Schema::clone(&s)))?;
    remember(Arc::clone(&schema), Arc::from(hex));
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};

    #[test]
    fn round_trips_and_rejects_damage() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Float64, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        let seg = Segment {
            write: "w".into(),
            index: 0,
            rows: 5,
        };
        let m = Manifest::new(3, &schema, vec![(0, 2)], vec![seg], None)
            .unwrap_or_else(|e| panic!("{e}"));
        let key = Key::new("k").unwrap_or_else(|e| panic!("{e}"));
        let bytes = m.to_bytes().unwrap_or_else(|e| panic!("{e}"));
        let back = Manifest::from_bytes(&bytes, &key, "here").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.rows, 5);
        assert_eq!(
            back.schema(&key, "here")
                .unwrap_or_else(|e| panic!("{e}"))
                .as_ref(),
            &schema
        );

        let mut lying = back.clone();
        lying.rows = 6;
        let bytes = lying.to_bytes().unwrap_or_else(|e| panic!("{e}"));
        assert!(Manifest::from_bytes(&bytes, &key, "here").is_err());
        assert!(Manifest::from_bytes(b"{not json", &key, "here").is_err());
        let mut bad_schema = back;
        bad_schema.schema = "ffff00".into();
        assert!(bad_schema.schema(&key, "here").is_err());
        bad_schema.schema = "0g".into();
        assert!(bad_schema.schema(&key, "here").is_err());
    }

    #[test]
    fn schemas_round_trip_through_the_cache_and_without_it() {
        let schema = Schema::new(vec![Field::new("only-here", DataType::Int32, true)]);
        let hex = encode_schema(&schema).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            encode_schema(&schema).unwrap_or_else(|e| panic!("{e}")),
            hex
        );
        assert_eq!(
            decode_schema(&hex).map(|s| Schema::clone(&s)),
            Ok(schema.clone())
        );
        SCHEMAS.with_borrow_mut(Vec::clear);
        assert_eq!(decode_schema(&hex).map(|s| Schema::clone(&s)), Ok(schema));
        // Uppercase hex was never written: rejected, not guessed.
        assert!(decode_schema(&hex.to_uppercase()).is_err());
    }
}
