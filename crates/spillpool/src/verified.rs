//! Arrow IPC flatbuffers already verified on this thread, kept by their bytes.
//!
//! Verifying an IPC file's footer and its record-batch message is a third of
//! a small store read. Tiles of one shape carry byte-identical footers and
//! messages (the same schema, block offsets and buffer lengths), and a
//! flatbuffer's verification is a function of its bytes alone. So bytes
//! equal to ones verified before are read without verifying again. Equality
//! is checked on the full bytes, never on a hash, so that crafted input
//! cannot pass for verified bytes it differs from.
//!
//! Per thread so that parallel reads share no lock; bounded in entries and in
//! the size of what is kept, so a stream of distinct shapes costs a short
//! scan and a small copy per miss.

use std::cell::RefCell;
use std::sync::Arc;

use arrow_ipc::{Footer, Message};
use arrow_schema::Schema;

/// Footers or messages longer than this are verified every time: large
/// flatbuffers come with large bodies, whose cost dwarfs the verification.
const MAX_KEPT_BYTES: usize = 4096;
/// Entries kept per kind and thread (oldest replaced first).
const KEPT: usize = 16;

struct Footers {
    /// A verified footer's bytes and the schema it holds.
    entries: Vec<(Box<[u8]>, Arc<Schema>)>,
    next: usize,
}

struct Messages {
    entries: Vec<Box<[u8]>>,
    next: usize,
}

thread_local! {
    static FOOTERS: RefCell<Footers> = const { RefCell::new(Footers { entries: Vec::new(), next: 0 }) };
    static MESSAGES: RefCell<Messages> = const { RefCell::new(Messages { entries: Vec::new(), next: 0 }) };
}

/// Puts `item` at the next slot of a ring of [`KEPT`] entries.
fn keep<T>(entries: &mut Vec<T>, next: &mut usize, item: T) {
    if entries.len() < KEPT {
        entries.push(item);
    } else {
        entries[*next] = item;
    }
    *next = (*next + 1) % KEPT;
}

/// The footer in `bytes` and its schema, verified unless the same bytes were.
pub(crate) fn footer(bytes: &[u8]) -> Result<(Footer<'_>, Arc<Schema>), String> {
    let known = FOOTERS.with(|f| {
        f.borrow()
            .entries
            .iter()
            .find(|(b, _)| **b == *bytes)
            .map(|(_, schema)| Arc::clone(schema))
    });
    if let Some(schema) = known {
        // SAFETY: `bytes` equal, byte for byte, bytes that passed
        // `root_as_footer`'s verifier, which depends on nothing else.
        let footer = unsafe { arrow_ipc::root_as_footer_unchecked(bytes) };
        return Ok((footer, schema));
    }
    let footer = arrow_ipc::root_as_footer(bytes).map_err(|e| format!("footer: {e}"))?;
    let fb_schema = footer.schema().ok_or("footer has no schema")?;
    let schema = Arc::new(arrow_ipc::convert::fb_to_schema(fb_schema));
    if bytes.len() <= MAX_KEPT_BYTES {
        FOOTERS.with(|f| {
            let f = &mut *f.borrow_mut();
            keep(
                &mut f.entries,
                &mut f.next,
                (bytes.into(), Arc::clone(&schema)),
            );
        });
    }
    Ok((footer, schema))
}

/// The message flatbuffer in `bytes`, verified unless the same bytes were.
pub(crate) fn message(bytes: &[u8]) -> Result<Message<'_>, String> {
    let known = MESSAGES.with(|m| m.borrow().entries.iter().any(|b| **b == *bytes));
    if known {
        // SAFETY: as in `footer`, with `root_as_message`'s verifier.
        return Ok(unsafe { arrow_ipc::root_as_message_unchecked(bytes) });
    }
    let message = arrow_ipc::root_as_message(bytes).map_err(|e| format!("message: {e}"))?;
    if bytes.len() <= MAX_KEPT_BYTES {
        MESSAGES.with(|m| {
            let m = &mut *m.borrow_mut();
            keep(&mut m.entries, &mut m.next, bytes.into());
        });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Float64Array, RecordBatch};
    use arrow_ipc::writer::FileWriter;

    fn ipc_file(rows: usize) -> Vec<u8> {
        let a: ArrayRef = Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64)));
        let batch = RecordBatch::try_from_iter([("x", a)]).unwrap_or_else(|e| panic!("{e}"));
        let mut w =
            FileWriter::try_new(Vec::new(), &batch.schema()).unwrap_or_else(|e| panic!("{e}"));
        w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        w.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    fn footer_bytes(file: &[u8]) -> &[u8] {
        let n = file.len();
        let mut trailer = [0u8; 10];
        trailer.copy_from_slice(&file[n - 10..]);
        let len = arrow_ipc::reader::read_footer_length(trailer).unwrap_or_else(|e| panic!("{e}"));
        &file[n - 10 - len..n - 10]
    }

    #[test]
    fn bytes_that_differ_from_verified_ones_are_verified_again() {
        let file = ipc_file(3);
        let good = footer_bytes(&file).to_vec();
        let (f, schema) = footer(&good).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.recordBatches().map(|b| b.len()), Some(1));
        assert_eq!(schema.field(0).name(), "x");
        // A second read of the same bytes is a hit and gives the same schema.
        let (_, again) = footer(&good).unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&schema, &again));
        // Damage every byte in turn: each damaged copy is either rejected by
        // the verifier or, where the damage is harmless, parsed; never taken
        // for the verified bytes (which would skip the verifier).
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xA5;
            // arrow panics on some unknown types; the frame decoder contains that.
            let parsed = std::panic::catch_unwind(|| footer(&bad).map(|(_, s)| s));
            if let Ok(Ok(s)) = parsed {
                assert!(
                    !Arc::ptr_eq(&s, &schema),
                    "byte {i}: a damaged footer hit the cache"
                );
            }
        }
        // A truncated footer is verified (and fails), not matched by prefix.
        assert!(footer(&good[..good.len() - 4]).is_err());
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_shapes() {
        // Buffers are padded to 64 bytes: 8 more float64 rows, another footer.
        let files: Vec<Vec<u8>> = (1..=(KEPT + 4)).map(|k| ipc_file(8 * k)).collect();
        for f in &files {
            footer(footer_bytes(f)).unwrap_or_else(|e| panic!("{e}"));
        }
        FOOTERS.with(|f| assert_eq!(f.borrow().entries.len(), KEPT));
        // Every shape still reads correctly, kept or not.
        for (rows, f) in (1..).zip(&files) {
            let (footer, _) = footer(footer_bytes(f)).unwrap_or_else(|e| panic!("{e}"));
            let blocks = footer
                .recordBatches()
                .unwrap_or_else(|| panic!("no blocks"));
            assert_eq!(blocks.len(), 1, "file of {rows} rows");
        }
    }
}
