//! Values: byte blobs and Arrow tables.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;

use crate::error::{Error, Result};

/// What a backend or pool stores: a byte blob or an Arrow table.
///
/// Both variants are cheap to clone: a blob is reference-counted [`Bytes`],
/// a table's arrays share their buffers.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An opaque byte blob.
    Blob(Bytes),
    /// An Arrow table.
    Table(Table),
}

impl Value {
    /// The bytes held by the value's buffers (for a table, the arrays' memory).
    pub fn size(&self) -> usize {
        match self {
            Value::Blob(b) => b.len(),
            Value::Table(t) => t.size(),
        }
    }

    /// The blob, if this is one.
    pub fn as_blob(&self) -> Option<&Bytes> {
        match self {
            Value::Blob(b) => Some(b),
            Value::Table(_) => None,
        }
    }

    /// The table, if this is one.
    pub fn as_table(&self) -> Option<&Table> {
        match self {
            Value::Blob(_) => None,
            Value::Table(t) => Some(t),
        }
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Blob(b)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Blob(Bytes::from(b))
    }
}

impl From<Table> for Value {
    fn from(t: Table) -> Self {
        Value::Table(t)
    }
}

impl From<RecordBatch> for Value {
    fn from(b: RecordBatch) -> Self {
        Value::Table(Table::from(b))
    }
}

/// An Arrow table: record batches that share one schema.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use spillpool::Table;
/// let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as _)]).unwrap();
/// let table = Table::try_new(batch.schema(), vec![batch.clone(), batch]).unwrap();
/// assert_eq!(table.num_rows(), 4);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Table {
    /// Builds a table, checking that every batch has `schema`.
    ///
    /// Returns [`Error::InvalidValue`] naming the first batch whose schema differs.
    pub fn try_new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        for (i, batch) in batches.iter().enumerate() {
            if batch.schema_ref().fields() != schema.fields() {
                return Err(Error::InvalidValue {
                    reason: format!(
                        "batch {i} has schema {:?}, the table has {:?}",
                        batch.schema_ref().fields(),
                        schema.fields()
                    ),
                });
            }
        }
        Ok(Table { schema, batches })
    }

    /// A table with no rows.
    pub fn empty(schema: SchemaRef) -> Self {
        Table {
            schema,
            batches: Vec::new(),
        }
    }

    /// The schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The record batches.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Consumes the table, returning its batches.
    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.batches
    }

    /// Total number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Memory held by the arrays' buffers, in bytes.
    pub fn size(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }
}

/// Bytes the rows of `batches` span in their buffers. A slice of a larger
/// array counts its rows only, where `get_array_memory_size` counts every
/// buffer it shares whole.
pub(crate) fn spanned_bytes(batches: &[RecordBatch]) -> usize {
    batches
        .iter()
        .flat_map(|b| b.columns())
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

impl From<RecordBatch> for Table {
    fn from(batch: RecordBatch) -> Self {
        Table {
            schema: batch.schema(),
            batches: vec![batch],
        }
    }
}

impl From<Table> for (SchemaRef, Vec<RecordBatch>) {
    fn from(t: Table) -> Self {
        (Arc::clone(&t.schema), t.batches)
    }
}
