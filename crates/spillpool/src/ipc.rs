//! Tables as Arrow IPC without copying their arrays.
//!
//! arrow-ipc's `StreamEncoder` hands an IPC stream back as a list of
//! buffers, the arrays' own buffers among them (sliced, never copied). The
//! IPC *file* format is that same stream between a padded magic and a footer
//! that indexes its messages; this module adds those two, giving the bytes
//! arrow-ipc's `FileWriter` would write (a test compares them byte for
//! byte). A table then reaches storage with one copy, from its arrays to the
//! destination, instead of two (into an encoding buffer, then out of it).

use std::borrow::Cow;
use std::collections::HashSet;

use arrow_array::RecordBatch;
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_ipc::convert::IpcSchemaEncoder;
use arrow_ipc::writer::{
    DictionaryTracker, FileWriter, IpcWriteOptions, StreamEncoder, StreamWriter,
};
use arrow_ipc::{Block, FooterBuilder, MessageHeader, MetadataVersion};
use arrow_schema::{ArrowError, Schema};

/// The IPC file's magic, at its start (padded) and at its end.
const ARROW_MAGIC: &[u8; 6] = b"ARROW1";

/// Which IPC format [`encode`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The IPC file format: footer with a batch index.
    File,
    /// The IPC stream format, for a dictionary that changes between
    /// batches (which a file cannot hold).
    Stream,
}

/// Encodes `batches` as an Arrow IPC file (or stream, see [`Format`]) with
/// buffers aligned to `alignment` bytes. The encoding is the concatenation
/// of the returned pieces; pieces from the arrays share their memory.
pub(crate) fn encode(
    schema: &Schema,
    batches: &[RecordBatch],
    alignment: usize,
) -> Result<(Format, Vec<Buffer>), ArrowError> {
    let options = IpcWriteOptions::try_new(alignment, false, MetadataVersion::V5)?;
    let mut encoder = StreamEncoder::try_new_with_options(schema, options)?;
    let mut stream = Vec::new();
    for batch in batches {
        stream.extend(encoder.encode(batch)?);
    }
    stream.extend(encoder.finish()?);
    let prefix = ARROW_MAGIC.len().next_multiple_of(alignment);
    let Some((dictionaries, records)) = blocks(&stream, prefix)? else {
        return Ok((Format::Stream, stream));
    };
    let mut pieces = Vec::with_capacity(stream.len() + 2);
    let mut head = vec![0u8; prefix];
    head[..ARROW_MAGIC.len()].copy_from_slice(ARROW_MAGIC);
    pieces.push(Buffer::from_vec(head));
    pieces.extend(stream);
    pieces.push(footer(schema, &dictionaries, &records));
    Ok((Format::File, pieces))
}

/// [`encode`] into one buffer, after `reserve` zero bytes: for small tables,
/// where there is nothing worth sharing and one buffer is cheaper than many
/// pieces. The same bytes as [`encode`] (its tests compare them).
pub(crate) fn encode_joined(
    schema: &Schema,
    batches: &[RecordBatch],
    alignment: usize,
    reserve: usize,
    capacity: usize,
) -> Result<(Format, MutableBuffer), ArrowError> {
    let options = IpcWriteOptions::try_new(alignment, false, MetadataVersion::V5)?;
    let fresh = || {
        let mut buf = MutableBuffer::with_capacity(reserve + capacity);
        buf.extend_zeros(reserve);
        Joining(buf)
    };
    // The file format is preferred; it cannot replace a dictionary, which
    // the stream format can.
    let file = (|| {
        let mut w = FileWriter::try_new_with_options(fresh(), schema, options.clone())?;
        for batch in batches {
            w.write(batch)?;
        }
        w.finish()?;
        w.into_inner()
    })();
    if let Ok(Joining(buf)) = file {
        return Ok((Format::File, buf));
    }
    let mut w = StreamWriter::try_new_with_options(fresh(), schema, options)?;
    for batch in batches {
        w.write(batch)?;
    }
    w.finish()?;
    Ok((Format::Stream, w.into_inner()?.0))
}

/// A writer into a `MutableBuffer`, which stays 64-byte aligned as it grows.
struct Joining(MutableBuffer);

impl std::io::Write for Joining {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The footer's index: dictionary blocks, then record-batch blocks.
type Index = (Vec<Block>, Vec<Block>);

/// The footer's index of the messages in `stream`, which starts `at` bytes
/// into the file. `None` when a dictionary is sent twice: the file format
/// cannot replace one.
fn blocks(stream: &[Buffer], at: usize) -> Result<Option<Index>, ArrowError> {
    let bytes = Joined::new(stream);
    let bad = |what: String| ArrowError::IpcError(format!("encoded IPC stream: {what}"));
    let (mut dictionaries, mut records, mut sent) = (Vec::new(), Vec::new(), HashSet::new());
    let mut offset = 0usize;
    loop {
        let prefix = bytes
            .read(offset, 8)
            .ok_or_else(|| bad(format!("no message prefix at {offset}")))?;
        let meta_len = i32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        let meta_len = usize::try_from(meta_len).map_err(|_| bad("negative length".into()))?;
        if meta_len == 0 {
            // End of stream.
            return Ok(Some((dictionaries, records)));
        }
        let meta = bytes
            .read(offset + 8, meta_len)
            .ok_or_else(|| bad(format!("message at {offset} ends early")))?;
        let message = arrow_ipc::root_as_message(&meta).map_err(|e| bad(e.to_string()))?;
        let body = usize::try_from(message.bodyLength())
            .map_err(|_| bad("negative body length".into()))?;
        let block = Block::new(
            (at + offset) as i64,
            (8 + meta_len) as i32,
            message.bodyLength(),
        );
        match message.header_type() {
            MessageHeader::Schema => {}
            MessageHeader::RecordBatch => records.push(block),
            MessageHeader::DictionaryBatch => {
                let sent_before = message
                    .header_as_dictionary_batch()
                    .is_none_or(|d| d.isDelta() || !sent.insert(d.id()));
                if sent_before {
                    return Ok(None);
                }
                dictionaries.push(block);
            }
            other => return Err(bad(format!("unexpected message {other:?}"))),
        }
        offset += 8 + meta_len + body;
    }
}

/// The file's end: footer, its length, the magic (as `FileWriter::finish`).
fn footer(schema: &Schema, dictionaries: &[Block], records: &[Block]) -> Buffer {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let dictionaries = fbb.create_vector(dictionaries);
    let records = fbb.create_vector(records);
    // A fresh tracker numbers the dictionaries as the stream's did.
    let mut tracker = DictionaryTracker::new(true);
    let schema = IpcSchemaEncoder::new()
        .with_dictionary_tracker(&mut tracker)
        .schema_to_fb_offset(&mut fbb, schema);
    let root = {
        let mut footer = FooterBuilder::new(&mut fbb);
        footer.add_version(MetadataVersion::V5);
        footer.add_schema(schema);
        footer.add_dictionaries(dictionaries);
        footer.add_recordBatches(records);
        footer.finish()
    };
    fbb.finish(root, None);
    let data = fbb.finished_data();
    let mut out = Vec::with_capacity(data.len() + 4 + ARROW_MAGIC.len());
    out.extend_from_slice(data);
    out.extend_from_slice(&(data.len() as i32).to_le_bytes());
    out.extend_from_slice(ARROW_MAGIC);
    Buffer::from_vec(out)
}

/// Buffers read as one run of bytes.
struct Joined<'a> {
    parts: &'a [Buffer],
    /// Where each part starts.
    starts: Vec<usize>,
}

impl<'a> Joined<'a> {
    fn new(parts: &'a [Buffer]) -> Self {
        let mut at = 0;
        let starts = parts
            .iter()
            .map(|p| {
                let start = at;
                at += p.len();
                start
            })
            .collect();
        Joined { parts, starts }
    }

    /// `len` bytes from `at`: borrowed when one part holds them.
    fn read(&self, at: usize, len: usize) -> Option<Cow<'a, [u8]>> {
        let first = self.starts.partition_point(|&s| s <= at).checked_sub(1)?;
        let part = &self.parts[first];
        let from = at - self.starts[first];
        if let Some(inside) = part.as_slice().get(from..from.checked_add(len)?) {
            return Some(Cow::Borrowed(inside));
        }
        let mut out = Vec::with_capacity(len);
        let mut from = from;
        for part in &self.parts[first..] {
            let take = (len - out.len()).min(part.len().saturating_sub(from));
            out.extend_from_slice(&part.as_slice()[from..from + take]);
            from = 0;
            if out.len() == len {
                return Some(Cow::Owned(out));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, StructArray};
    use arrow_ipc::writer::{FileWriter, StreamWriter};
    use arrow_schema::{DataType, Field};

    use super::*;

    fn joined(pieces: &[Buffer]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.as_slice().to_vec()).collect()
    }

    fn options() -> IpcWriteOptions {
        IpcWriteOptions::try_new(64, false, MetadataVersion::V5).unwrap_or_else(|e| panic!("{e}"))
    }

    fn file_writer(schema: &Schema, batches: &[RecordBatch]) -> Vec<u8> {
        let mut w = FileWriter::try_new_with_options(Vec::new(), schema, options())
            .unwrap_or_else(|e| panic!("{e}"));
        for b in batches {
            w.write(b).unwrap_or_else(|e| panic!("{e}"));
        }
        w.finish().unwrap_or_else(|e| panic!("{e}"));
        w.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`encode_joined`], without the reserved bytes.
    fn one_buffer(schema: &Schema, batches: &[RecordBatch]) -> (Format, Vec<u8>) {
        let (format, buf) =
            encode_joined(schema, batches, 64, 3, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf.as_slice()[..3], &[0, 0, 0]);
        (format, buf.as_slice()[3..].to_vec())
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap_or_else(|e| panic!("{e}"))
    }

    fn dictionary(values: &[&str]) -> ArrayRef {
        let mut b = StringDictionaryBuilder::<Int32Type>::new();
        for v in values {
            b.append_value(v);
        }
        Arc::new(b.finish())
    }

    /// Tables of many shapes: the same bytes as arrow-ipc's FileWriter.
    #[test]
    fn pieces_join_to_what_file_writer_writes() {
        let floats: ArrayRef = Arc::new(Float64Array::from_iter_values((0..1000).map(f64::from)));
        let nullable: ArrayRef = Arc::new(Int64Array::from_iter(
            (0..1000).map(|i| (i % 7 != 0).then_some(i)),
        ));
        let strings: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..1000).map(|i| format!("value {i}")),
        ));
        let bools: ArrayRef =
            Arc::new(BooleanArray::from_iter((0..1000).map(|i| Some(i % 3 == 0))));
        let mut list = ListBuilder::new(arrow_array::builder::Int32Builder::new());
        for i in 0..1000 {
            list.append_value((0..i % 4).map(Some));
        }
        let list: ArrayRef = Arc::new(list.finish());
        let nested: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("f", DataType::Float64, false)),
                floats.clone(),
            ),
            (
                Arc::new(Field::new("s", DataType::Utf8, false)),
                strings.clone(),
            ),
        ]));
        let whole = batch(vec![
            ("floats", floats),
            ("nullable", nullable),
            ("strings", strings),
            ("bools", bools),
            ("list", list),
            ("nested", nested),
        ]);
        let schema = whole.schema();
        let cases: Vec<(&str, Vec<RecordBatch>)> = vec![
            ("no batches", vec![]),
            ("one batch", vec![whole.clone()]),
            ("no rows", vec![whole.slice(0, 0)]),
            // Slices start mid-bitmap and mid-offsets: arrow re-bases them.
            (
                "slices",
                vec![
                    whole.slice(3, 500),
                    whole.slice(503, 1),
                    whole.slice(504, 496),
                ],
            ),
        ];
        for (name, batches) in cases {
            let (format, pieces) =
                encode(&schema, &batches, 64).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(format, Format::File, "{name}");
            assert_eq!(joined(&pieces), file_writer(&schema, &batches), "{name}");
            assert_eq!(
                one_buffer(&schema, &batches),
                (Format::File, joined(&pieces)),
                "{name}"
            );
        }
    }

    #[test]
    fn the_arrays_buffers_are_shared_not_copied() {
        let floats = Float64Array::from_iter_values((0..100_000).map(f64::from));
        let data = floats.values().inner().as_ptr();
        let b = batch(vec![("x", Arc::new(floats) as ArrayRef)]);
        let (_, pieces) =
            encode(&b.schema(), &[b.slice(10, 1000)], 64).unwrap_or_else(|e| panic!("{e}"));
        let at = data.wrapping_add(10 * 8);
        assert!(
            pieces.iter().any(|p| p.as_ptr() == at && p.len() == 8000),
            "the sliced values are one piece pointing into the array"
        );
    }

    #[test]
    fn dictionaries_are_indexed_and_a_replaced_one_makes_a_stream() {
        let one = batch(vec![("d", dictionary(&["a", "b", "a"]))]);
        let schema = one.schema();
        let same = [one.clone(), one.slice(1, 2)];
        let (format, pieces) = encode(&schema, &same, 64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format, Format::File);
        assert_eq!(joined(&pieces), file_writer(&schema, &same));
        assert_eq!(one_buffer(&schema, &same), (Format::File, joined(&pieces)));

        let other = batch(vec![("d", dictionary(&["x", "y"]))]);
        let replaced = [one, other];
        let (format, pieces) = encode(&schema, &replaced, 64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format, Format::Stream);
        assert_eq!(
            one_buffer(&schema, &replaced),
            (Format::Stream, joined(&pieces))
        );
        let mut w = StreamWriter::try_new_with_options(Vec::new(), &schema, options())
            .unwrap_or_else(|e| panic!("{e}"));
        for b in &replaced {
            w.write(b).unwrap_or_else(|e| panic!("{e}"));
        }
        w.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            joined(&pieces),
            w.into_inner().unwrap_or_else(|e| panic!("{e}"))
        );
    }

    #[test]
    fn joined_reads_across_pieces() {
        let parts = [
            Buffer::from_vec(vec![1u8, 2, 3]),
            Buffer::from_vec(Vec::<u8>::new()),
            Buffer::from_vec(vec![4u8, 5]),
            Buffer::from_vec(vec![6u8]),
        ];
        let j = Joined::new(&parts);
        assert_eq!(j.read(1, 2).as_deref(), Some(&[2u8, 3][..]));
        assert_eq!(j.read(2, 4).as_deref(), Some(&[3u8, 4, 5, 6][..]));
        assert_eq!(j.read(0, 6).as_deref(), Some(&[1u8, 2, 3, 4, 5, 6][..]));
        assert_eq!(j.read(5, 2), None);
        assert_eq!(j.read(6, 1), None);
    }
}
