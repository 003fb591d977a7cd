//! Frames: the self-describing on-storage encoding of one [`Value`].
//!
//! A frame is a 64-byte header, an optional filter chain, zero padding up to
//! a 64-byte boundary, and the payload. The exact byte layout is documented
//! in `docs/FORMAT.md`; this module is its only reader and writer.
//!
//! Frames are built in 64-byte-aligned memory and decoded without copying:
//! a blob comes back as a slice of the frame's [`Bytes`], a table's arrays
//! point into the same memory (an mmap'd file, the LMDB map, a shared-memory
//! segment), which stays alive for as long as any of them does.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_ipc::reader::{StreamDecoder, read_footer_length};
use arrow_ipc::{Block, MetadataVersion};
use bytes::Bytes;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::error::{Error, Result, printable};
use crate::filter::{DecodeLimits, EncryptionKey, Filters};
use crate::ipc;
use crate::key::Key;
use crate::value::{Table, Value};

/// The first eight bytes of every frame.
pub const MAGIC: [u8; 8] = *b"SPLPOOL\0";
/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header, and the alignment of the payload.
pub const HEADER_LEN: usize = 64;
/// Alignment of the payload within the frame, in bytes.
pub const ALIGNMENT: usize = 64;

/// How a frame's payload checksum is computed: header byte 11. The raw
/// checksum of a filtered frame (in its descriptor) uses the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// 1: xxh3-64 of the whole payload. One pass on one core.
    Xxh3,
    /// 2: xxh3-64 of the little-endian xxh3-64s of each [`SPAN`] of the
    /// payload (the last one shorter), which every core can share. Written
    /// for payloads of at least [`Checksum::SPANS_FROM`] bytes.
    Xxh3Spans,
}

/// The span of [`Checksum::Xxh3Spans`].
pub const SPAN: usize = 1 << 20;

impl Checksum {
    /// Payloads this long or longer get [`Checksum::Xxh3Spans`]: below it,
    /// one pass is as fast and keeps small frames readable by older builds.
    pub const SPANS_FROM: usize = 4 * SPAN;

    /// The checksum this build writes for a payload of `len` bytes.
    pub fn for_len(len: usize) -> Self {
        if len >= Self::SPANS_FROM {
            Checksum::Xxh3Spans
        } else {
            Checksum::Xxh3
        }
    }

    /// The header byte.
    pub fn id(self) -> u8 {
        match self {
            Checksum::Xxh3 => 1,
            Checksum::Xxh3Spans => 2,
        }
    }

    /// The checksum a header byte names, if any.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Checksum::Xxh3),
            2 => Some(Checksum::Xxh3Spans),
            _ => None,
        }
    }

    /// The checksum of `bytes`.
    ///
    /// ```
    /// use spillpool::frame::{Checksum, SPAN};
    /// let data = vec![7u8; 3 * SPAN + 5];
    /// let spans: Vec<u8> = data
    ///     .chunks(SPAN)
    ///     .flat_map(|s| xxhash_rust::xxh3::xxh3_64(s).to_le_bytes())
    ///     .collect();
    /// assert_eq!(Checksum::Xxh3Spans.of(&data), xxhash_rust::xxh3::xxh3_64(&spans));
    /// assert_eq!(Checksum::Xxh3.of(&data), xxhash_rust::xxh3::xxh3_64(&data));
    /// ```
    pub fn of(self, bytes: &[u8]) -> u64 {
        match self {
            Checksum::Xxh3 => xxh3_64(bytes),
            Checksum::Xxh3Spans => {
                use rayon::prelude::*;
                let sums: Vec<u64> = bytes.par_chunks(SPAN).map(Self::span_sum).collect();
                Self::of_span_sums(&sums)
            }
        }
    }

    /// Whether a payload cut into `piece`-byte pieces can be checksummed
    /// piece by piece, each by whoever holds it (see [`Checksum::span_sums`]):
    /// span checksums over pieces of whole spans.
    pub(crate) fn by_pieces(self, piece: usize) -> bool {
        self == Checksum::Xxh3Spans && piece.is_multiple_of(SPAN)
    }

    /// The span sums of one piece of a payload: whole spans, but for the
    /// payload's last piece ([`Checksum::by_pieces`]).
    pub(crate) fn span_sums(piece: &[u8]) -> Vec<u64> {
        piece.chunks(SPAN).map(Self::span_sum).collect()
    }

    /// One span's sum.
    pub(crate) fn span_sum(span: &[u8]) -> u64 {
        xxh3_64(span)
    }

    /// [`Checksum::Xxh3Spans`] from every span's sum, in order: xxh3-64 of
    /// their little-endian bytes.
    pub(crate) fn of_span_sums(sums: &[u64]) -> u64 {
        let bytes: Vec<u8> = sums.iter().flat_map(|s| s.to_le_bytes()).collect();
        xxh3_64(&bytes)
    }

    /// The checksum of the concatenation of `parts`, hashed where they lie.
    fn of_slices(self, parts: &[&[u8]]) -> u64 {
        // Most frames are one piece (a blob after its empty head): no Vec.
        let mut filled = parts.iter().filter(|p| !p.is_empty());
        match (filled.next(), filled.next()) {
            (None, _) => return self.of(&[]),
            (Some(one), None) => return self.of(one),
            _ => {}
        }
        let many: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        match self {
            Checksum::Xxh3 => xxh3_of_all(&many),
            Checksum::Xxh3Spans => {
                use rayon::prelude::*;
                let sums: Vec<u64> = spans_of(&many, SPAN)
                    .par_iter()
                    .map(|span| xxh3_of_all(span))
                    .collect();
                Self::of_span_sums(&sums)
            }
        }
    }
}

/// xxh3-64 of the concatenation of `parts`.
fn xxh3_of_all(parts: &[&[u8]]) -> u64 {
    match parts {
        [one] => xxh3_64(one),
        many => {
            let mut hasher = Xxh3::new();
            for p in many {
                hasher.update(p);
            }
            hasher.digest()
        }
    }
}

/// The concatenation of `parts` cut into pieces of `size` bytes (the last
/// one shorter), each as the slices of the parts it covers. Nothing for no
/// bytes.
pub(crate) fn spans_of<'a>(parts: &[&'a [u8]], size: usize) -> Vec<Vec<&'a [u8]>> {
    let mut spans: Vec<Vec<&'a [u8]>> = Vec::new();
    let mut room = 0;
    for &part in parts {
        let mut part = part;
        while !part.is_empty() {
            if room == 0 {
                spans.push(Vec::new());
                room = size.max(1);
            }
            let (now, later) = part.split_at(room.min(part.len()));
            if let Some(span) = spans.last_mut() {
                span.push(now);
            }
            room -= now.len();
            part = later;
        }
    }
    spans
}

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Raw bytes.
    Blob = 1,
    /// An Arrow IPC file (footer with a batch index).
    TableIpcFile = 2,
    /// An Arrow IPC stream; used when dictionaries change between batches,
    /// which the IPC file format cannot express.
    TableIpcStream = 3,
}

impl TryFrom<u8> for Kind {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            1 => Ok(Kind::Blob),
            2 => Ok(Kind::TableIpcFile),
            3 => Ok(Kind::TableIpcStream),
            other => Err(format!("unknown value kind {other}")),
        }
    }
}

/// The parsed, verified header of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u16,
    /// Payload kind.
    pub kind: Kind,
    /// The filter chain descriptor (empty: no filters).
    pub filters: Vec<u8>,
    /// Offset of the payload from the start of the frame (a multiple of 64).
    pub payload_offset: usize,
    /// Length of the payload as stored.
    pub stored_len: usize,
    /// Length of the payload once the filters are undone.
    pub raw_len: usize,
    /// How the checksums are computed.
    pub checksum: Checksum,
    /// The checksum of the payload as stored (verified).
    pub payload_checksum: u64,
}

/// An encoded frame, in parts that backends store back to back (what they
/// store is [`Frame::to_bytes`]). Encoding copies little: a blob's frame is
/// its header followed by the blob's own bytes, and a table's large buffers
/// are parts of its frame as they are (see [`encode`]).
#[derive(Debug, Clone, Default)]
pub struct Frame {
    head: Bytes,
    body: Vec<Bytes>,
    /// Encoded in this process from a value: its checksums were computed
    /// over these very (immutable) bytes, so refiltering it need not hash
    /// the payload again to trust them (a serial pass per filtered write).
    encoded: bool,
}

/// Frames are equal when their bytes are, however they were made.
impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        let bytes = |f: &Frame| {
            f.parts()
                .flat_map(|p| p.iter())
                .copied()
                .collect::<Vec<u8>>()
        };
        self.len() == other.len()
            && (self.head == other.head && self.body == other.body || bytes(self) == bytes(other))
    }
}

impl Eq for Frame {}

impl Frame {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether the frame has no bytes (never true of an encoded value).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts, in order (some may be empty).
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.head).chain(&self.body)
    }

    /// The frame as contiguous, 64-byte-aligned bytes (copied only when in
    /// several parts).
    pub fn to_bytes(&self) -> Bytes {
        if self.body.iter().all(Bytes::is_empty) {
            return self.head.clone();
        }
        let mut all = MutableBuffer::with_capacity(self.len());
        for part in self.parts() {
            all.extend_from_slice(part);
        }
        Bytes::from_owner(BufferOwner(all.into()))
    }
}

/// Bytes taken as a frame as they are (for example, bytes read back from storage).
impl From<Bytes> for Frame {
    fn from(head: Bytes) -> Self {
        Frame {
            head,
            body: Vec::new(),
            encoded: false,
        }
    }
}

/// Lets `Bytes` own an arrow `Buffer` without copying it.
struct BufferOwner(Buffer);

impl AsRef<[u8]> for BufferOwner {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// Encodes `value` as a frame.
///
/// A blob is not copied: its frame is a 64-byte header followed by the blob's
/// own bytes. A table becomes Arrow IPC with 64-byte buffer alignment whose
/// large buffers are the table's own (shared, not copied; see
/// [`SHARE_FROM`]); the metadata and small buffers are copied together.
///
/// ```
/// use spillpool::{frame, Key, Value};
/// let key = Key::new("k").unwrap();
/// let frame = frame::encode(&Value::from(b"hello".to_vec())).unwrap();
/// assert_eq!(frame.len(), 64 + 5);
/// let bytes = frame.to_bytes();
/// assert_eq!(bytes.as_ptr() as usize % 64, 0);
/// let back = frame::decode(bytes, &key, "example").unwrap();
/// assert_eq!(back.as_blob().unwrap().as_ref(), b"hello");
/// ```
pub fn encode(value: &Value) -> Result<Frame> {
    match value {
        Value::Blob(b) => {
            // The blob is the frame's body as it is: not copied.
            let mut head = MutableBuffer::with_capacity(HEADER_LEN);
            head.extend_zeros(HEADER_LEN);
            Ok(finish(Kind::Blob, head, vec![b.clone()]))
        }
        Value::Table(t) => {
            let invalid = |e: arrow_schema::ArrowError| Error::InvalidValue {
                reason: format!("table cannot be encoded as Arrow IPC: {e}"),
            };
            let kind = |format| match format {
                ipc::Format::File => Kind::TableIpcFile,
                ipc::Format::Stream => Kind::TableIpcStream,
            };
            let (schema, batches) = (t.schema(), t.batches());
            // The rows' bytes (a tile is a slice: `Table::size` would count
            // the whole arrays it shares).
            let spanned = crate::value::spanned_bytes(batches);
            if spanned < SHARE_FROM {
                // Nothing to share: one buffer costs less than many pieces.
                let buffers: usize = batches.iter().map(|b| 3 * b.num_columns()).sum();
                let capacity = spanned + 64 * buffers + 4096;
                let (format, out) =
                    ipc::encode_joined(schema, batches, ALIGNMENT, HEADER_LEN, capacity)
                        .map_err(invalid)?;
                return Ok(finish(kind(format), out, Vec::new()));
            }
            let (format, pieces) = ipc::encode(schema, batches, ALIGNMENT).map_err(invalid)?;
            Ok(assemble(kind(format), pieces))
        }
    }
}

/// Pieces of a table's encoding at least this long are parts of its frame
/// as they are; shorter ones are copied together (fewer, larger writes).
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{ArrayRef, Float64Array, RecordBatch};
/// use spillpool::{frame, Value};
/// let column = Float64Array::from_iter_values((0..65_536).map(f64::from));
/// let data = column.values().inner().as_ptr();
/// let batch = RecordBatch::try_from_iter([("x", Arc::new(column) as ArrayRef)]).unwrap();
/// // 512 KiB of values: at least SHARE_FROM, so the frame holds them as they are.
/// let frame = frame::encode(&Value::from(batch)).unwrap();
/// assert!(frame.parts().any(|part| part.as_ptr() == data));
/// ```
pub const SHARE_FROM: usize = 64 * 1024;

/// A frame of `kind` whose payload is the concatenation of `pieces`.
fn assemble(kind: Kind, pieces: Vec<Buffer>) -> Frame {
    let short = |p: &Buffer| p.len() < SHARE_FROM;
    // The header and the pieces before the first shared one.
    let leading: usize = pieces
        .iter()
        .take_while(|p| short(p))
        .map(Buffer::len)
        .sum();
    let mut head = MutableBuffer::with_capacity(HEADER_LEN + leading);
    head.extend_zeros(HEADER_LEN);
    let mut body: Vec<Buffer> = Vec::new();
    let mut small = MutableBuffer::new(0);
    for piece in pieces {
        if !short(&piece) {
            if !small.is_empty() {
                body.push(std::mem::replace(&mut small, MutableBuffer::new(0)).into());
            }
            body.push(piece);
        } else if body.is_empty() {
            head.extend_from_slice(piece.as_slice());
        } else {
            small.extend_from_slice(piece.as_slice());
        }
    }
    if !small.is_empty() {
        body.push(small.into());
    }
    let body = body
        .into_iter()
        .map(|b| Bytes::from_owner(BufferOwner(b)))
        .collect();
    finish(kind, head, body)
}

/// A frame of `kind` from `head` (room for the header, then the payload's
/// first bytes) and `body`: checksums the payload and fills in the header.
fn finish(kind: Kind, mut head: MutableBuffer, body: Vec<Bytes>) -> Frame {
    let stored_len = head.len() - HEADER_LEN + body.iter().map(Bytes::len).sum::<usize>();
    let checksum = Checksum::for_len(stored_len);
    let mut slices: Vec<&[u8]> = Vec::with_capacity(body.len() + 1);
    slices.push(&head.as_slice()[HEADER_LEN..]);
    slices.extend(body.iter().map(|b| b.as_ref()));
    let sum = checksum.of_slices(&slices);
    let header = header_bytes(kind, &[], HEADER_LEN, stored_len, stored_len, checksum, sum);
    head.as_slice_mut()[..HEADER_LEN].copy_from_slice(&header);
    Frame {
        head: Bytes::from_owner(BufferOwner(head.into())),
        body,
        encoded: true,
    }
}

/// Builds a header. Bytes 56..64 hold a checksum of bytes 0..56 and the filter chain.
fn header_bytes(
    kind: Kind,
    filters: &[u8],
    payload_offset: usize,
    stored_len: usize,
    raw_len: usize,
    checksum: Checksum,
    payload_checksum: u64,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10] = kind as u8;
    h[11] = checksum.id();
    h[12..16].copy_from_slice(&(filters.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&(payload_offset as u64).to_le_bytes());
    h[24..32].copy_from_slice(&(stored_len as u64).to_le_bytes());
    h[32..40].copy_from_slice(&(raw_len as u64).to_le_bytes());
    h[40..48].copy_from_slice(&payload_checksum.to_le_bytes());
    let sum = header_checksum(&h, filters);
    h[56..64].copy_from_slice(&sum.to_le_bytes());
    h
}

fn header_checksum(header: &[u8], filters: &[u8]) -> u64 {
    xxh3_of(&header[..56], filters)
}

/// xxh3-64 of `a` followed by `b`. One-shot when either is empty: the
/// streaming hasher's setup costs more than hashing a small frame.
fn xxh3_of(a: &[u8], b: &[u8]) -> u64 {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => xxh3_64(a),
        (true, false) => xxh3_64(b),
        (false, false) => {
            let mut hasher = Xxh3::new();
            hasher.update(a);
            hasher.update(b);
            hasher.digest()
        }
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses and verifies a frame's header and payload checksum.
///
/// `key` and `location` only label errors: [`Error::Corrupt`] for a frame that
/// fails any check, [`Error::UnsupportedVersion`] for one written by a newer format.
pub fn verify(
    frame: &[u8],
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
) -> Result<Header> {
    verify_parts(frame, &[], key, location, PayloadCheck::Hash)
}

/// Whether `frame` says it is encrypted (its filter chain's cipher byte).
/// Only a claim: opening the frame checks it (header checksum, then GCM).
pub(crate) fn claims_encryption(frame: &[u8]) -> bool {
    let filter_len = frame
        .get(12..16)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    frame
        .get(HEADER_LEN..HEADER_LEN.saturating_add(filter_len))
        .is_some_and(crate::filter::authenticates)
}

/// [`verify`] for a frame about to be opened (its filters undone, with
/// `cipher_key` if encrypted): its header always, its stored payload's
/// checksum only when undoing the filters would not check every stored
/// byte anyway. They do when the frame is encrypted and `cipher_key` is
/// given (AES-GCM authenticates each chunk under its own nonce, its index,
/// the key and the descriptor), and when it is filtered without encryption
/// (the raw checksum, in the header-checked descriptor, is compared with
/// what decoding gives: a changed stored byte fails to decode or changes
/// the result). Either way nothing is handed out before that check, and
/// hashing the stored bytes first would check them twice.
fn verify_to_open(
    frame: &[u8],
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
    cipher_key: Option<&EncryptionKey>,
) -> Result<Header> {
    let check = PayloadCheck::UnlessUndone {
        with_key: cipher_key.is_some(),
    };
    verify_parts(frame, &[], key, location, check)
}

/// How [`verify_parts`] treats the payload checksum.
#[derive(Clone, Copy)]
enum PayloadCheck {
    /// Hash the payload and compare.
    Hash,
    /// Take the checksum as right: a frame this process encoded.
    Trust,
    /// Hash it unless undoing the frame's filters checks every stored byte
    /// (see `verify_to_open`); `with_key`: a key to open encrypted ones.
    UnlessUndone { with_key: bool },
}

/// [`PayloadCheck::Trust`] for a frame encoded here, else [`PayloadCheck::Hash`].
fn trust_if(encoded: bool) -> PayloadCheck {
    if encoded {
        PayloadCheck::Trust
    } else {
        PayloadCheck::Hash
    }
}

/// [`verify`] for a frame held as `head` followed by the `body` parts (see
/// [`Frame`]); the header and filter descriptor must lie in `head`.
/// `check` says whether the payload is hashed.
fn verify_parts(
    head: &[u8],
    body: &[Bytes],
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
    check: PayloadCheck,
) -> Result<Header> {
    let corrupt = |reason: String| Error::corrupt(key, location, reason);
    let total = head.len() + body.iter().map(Bytes::len).sum::<usize>();
    if head.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "truncated: {total} bytes, a frame header needs {HEADER_LEN}"
        )));
    }
    if head[0..8] != MAGIC {
        return Err(corrupt("not a spillpool frame (bad magic)".into()));
    }
    let version = u16::from_le_bytes([head[8], head[9]]);
    let filter_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    let filters_end = HEADER_LEN
        .checked_add(filter_len)
        .filter(|&e| e <= head.len());
    let header_ok = filters_end
        .is_some_and(|end| header_checksum(head, &head[HEADER_LEN..end]) == le_u64(head, 56));
    if version != FORMAT_VERSION {
        // A flipped bit in the version field is corruption, not a newer format.
        return Err(if header_ok {
            Error::UnsupportedVersion {
                key: printable(key.as_str()),
                location: location.to_string(),
                version,
            }
        } else {
            corrupt(format!(
                "bad header checksum (version field reads {version})"
            ))
        });
    }
    let Some(filters_end) = filters_end else {
        return Err(corrupt(format!(
            "truncated: filter chain of {filter_len} bytes does not fit in {total} bytes"
        )));
    };
    if !header_ok {
        return Err(corrupt("bad header checksum".into()));
    }
    let Some(checksum) = Checksum::from_id(head[11]) else {
        return Err(corrupt(format!("unknown checksum algorithm {}", head[11])));
    };
    let kind = Kind::try_from(head[10]).map_err(corrupt)?;
    let payload_offset = le_u64(head, 16);
    let stored_len = le_u64(head, 24);
    let raw_len = le_u64(head, 32);
    if !payload_offset.is_multiple_of(ALIGNMENT as u64) || payload_offset < filters_end as u64 {
        return Err(corrupt(format!("bad payload offset {payload_offset}")));
    }
    let expected = payload_offset.checked_add(stored_len);
    if expected != Some(total as u64) {
        return Err(corrupt(format!(
            "truncated or extended: header says {} bytes, found {total}",
            expected.map_or_else(|| "an impossible number of".to_string(), |e| e.to_string()),
        )));
    }
    let (payload_offset, stored_len) = (payload_offset as usize, stored_len as usize);
    let hash_payload = match check {
        PayloadCheck::Hash => true,
        PayloadCheck::Trust => false,
        PayloadCheck::UnlessUndone { with_key } => {
            let filters = &head[HEADER_LEN..filters_end];
            filters.is_empty() || (crate::filter::authenticates(filters) && !with_key)
        }
    };
    let sum = if !hash_payload {
        le_u64(head, 40)
    } else if body.is_empty() {
        checksum.of(&head[payload_offset..])
    } else {
        checksum.of_slices(&payload_slices(head, body, payload_offset))
    };
    if sum != le_u64(head, 40) {
        return Err(corrupt("payload checksum mismatch".into()));
    }
    let filters = head[HEADER_LEN..filters_end].to_vec();
    if filters.is_empty() && raw_len != stored_len as u64 {
        return Err(corrupt(format!(
            "raw length {raw_len} differs from stored length {stored_len} without filters"
        )));
    }
    Ok(Header {
        version,
        kind,
        filters,
        payload_offset,
        stored_len,
        raw_len: usize::try_from(raw_len).map_err(|_| corrupt("raw length too large".into()))?,
        checksum,
        payload_checksum: le_u64(head, 40),
    })
}

/// The bytes from `offset` on of `head` followed by `body`, where they lie.
pub(crate) fn payload_slices<'a>(
    head: &'a [u8],
    body: &'a [Bytes],
    offset: usize,
) -> Vec<&'a [u8]> {
    let mut skip = offset;
    std::iter::once(head)
        .chain(body.iter().map(|b| b.as_ref()))
        .map(|part| {
            let from = skip.min(part.len());
            skip -= from;
            &part[from..]
        })
        .collect()
}

/// Encodes `value` with `filters` for storage under `key` (the key is
/// authenticated with encrypted chunks, so the frame reads back only there).
pub fn encode_filtered(value: &Value, filters: &Filters, key: &Key) -> Result<Frame> {
    refilter(encode(value)?, filters, key, "encoding")
}

/// Applies `filters` to a plain frame. A frame that is already filtered, or
/// that does not verify, is returned as it is: it will read back as itself.
/// When `filters` encrypt, a frame that is only compressed is decompressed
/// and encrypted, and one encrypted with another key is
/// [`Error::WrongKey`] (it could never be read back with this one).
pub fn refilter(
    frame: Frame,
    filters: &Filters,
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
) -> Result<Frame> {
    if filters.is_empty() {
        return Ok(frame);
    }
    let header = match verify_parts(
        &frame.head,
        &frame.body,
        key,
        location,
        trust_if(frame.encoded),
    ) {
        Ok(h) if h.filters.is_empty() => h,
        // Compressed elsewhere, but these filters encrypt: undo the
        // compression and filter it as a plain frame. Kept as it is, it
        // would be a value anyone could have written, which an encrypting
        // store does not read back.
        Ok(h) if filters.key().is_some() && !crate::filter::authenticates(&h.filters) => {
            let (plain, _) = unfilter_verified(
                frame.to_bytes(),
                h,
                key,
                location,
                None,
                DecodeLimits::default(),
            )?;
            return refilter(Frame::from(plain), filters, key, location);
        }
        // Encrypted elsewhere: stored as it is if with this key, refused if
        // with another (this store could never read it back).
        Ok(h) => {
            if let Some(k) = filters.key() {
                k.check_sealed_with(&h.filters, key, location)?;
            }
            return Ok(frame);
        }
        _ => return Ok(frame),
    };
    // A table's frame in parts is filtered where its parts lie: each chunk
    // is gathered by the task that filters it, not joined beforehand.
    let payload = payload_slices(&frame.head, &frame.body, header.payload_offset);
    let raw_len = crate::filter::pieces_len(&payload);
    // Unfiltered, the payload's checksum is the raw data's, verified just now.
    // The raw checksum came with the plain frame's algorithm: the stored
    // one uses the same (one byte says for both).
    let (desc, stored, stored_sum) = filters.apply(
        &payload,
        header.payload_checksum,
        header.checksum,
        header.kind as u8,
        key,
    )?;
    let payload_offset = (HEADER_LEN + desc.len()).next_multiple_of(ALIGNMENT);
    let h = header_bytes(
        header.kind,
        &desc,
        payload_offset,
        stored.len(),
        raw_len,
        header.checksum,
        stored_sum,
    );
    let mut head = MutableBuffer::with_capacity(payload_offset);
    head.extend_from_slice(&h);
    head.extend_from_slice(&desc);
    head.extend_zeros(payload_offset - HEADER_LEN - desc.len());
    Ok(Frame {
        head: Bytes::from_owner(BufferOwner(head.into())),
        body: vec![Bytes::from_owner(BufferOwner(stored.into()))],
        encoded: true,
    })
}

/// Undoes a frame's filters, returning an equivalent plain frame (the same
/// bytes when it has none). Decryption uses `cipher_key`; allocation is
/// bounded by `limits`.
pub fn unfilter(
    frame: Bytes,
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
    cipher_key: Option<&EncryptionKey>,
    limits: DecodeLimits,
) -> Result<Bytes> {
    let header = verify_to_open(&frame, key, location, cipher_key)?;
    Ok(unfilter_verified(frame, header, key, location, cipher_key, limits)?.0)
}

/// [`unfilter`] of a frame whose header was just verified; also returns the plain header.
fn unfilter_verified(
    frame: Bytes,
    header: Header,
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
    cipher_key: Option<&EncryptionKey>,
    limits: DecodeLimits,
) -> Result<(Bytes, Header)> {
    if header.filters.is_empty() {
        return Ok((frame, header));
    }
    if header.raw_len as u64 > limits.max_raw_len {
        return Err(Error::corrupt(
            key,
            location,
            format!(
                "raw length {} exceeds this reader's limit of {} bytes",
                header.raw_len, limits.max_raw_len
            ),
        ));
    }
    let len = HEADER_LEN + header.raw_len;
    // Not zeroed: every chunk task initialises its own range (in parallel,
    // while it is in cache), and the header is written below.
    let mut out = MutableBuffer::with_capacity(len);
    let sum = crate::filter::undo_into(
        &header.filters,
        &frame[header.payload_offset..],
        header.kind as u8,
        crate::filter::Dest::of(&mut out, HEADER_LEN, header.raw_len),
        header.checksum,
        key,
        location,
        cipher_key,
    )?;
    let h = header_bytes(
        header.kind,
        &[],
        HEADER_LEN,
        header.raw_len,
        header.raw_len,
        header.checksum,
        sum,
    );
    // SAFETY: the capacity is `len`; undo_into initialised HEADER_LEN..len
    // (it returned Ok), and the header fills 0..HEADER_LEN here.
    unsafe {
        std::ptr::copy_nonoverlapping(h.as_ptr(), out.as_mut_ptr(), HEADER_LEN);
        out.set_len(len);
    }
    let plain = Header {
        version: header.version,
        kind: header.kind,
        filters: Vec::new(),
        payload_offset: HEADER_LEN,
        stored_len: header.raw_len,
        raw_len: header.raw_len,
        checksum: header.checksum,
        payload_checksum: sum,
    };
    Ok((Bytes::from_owner(BufferOwner(out.into())), plain))
}

/// Verifies and decodes a frame, borrowing its memory for the result.
///
/// A compressed frame is decompressed (a copy); an encrypted one gives
/// [`Error::KeyRequired`] (use [`decode_with`]). Returns [`Error::Corrupt`]
/// (naming `key` and `location`) for a frame that fails a check or whose
/// payload does not decode, and [`Error::UnsupportedVersion`] for a newer format.
pub fn decode(
    frame: Bytes,
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
) -> Result<Value> {
    decode_with(frame, key, location, None, DecodeLimits::default())
}

/// [`decode`] with a key for encrypted frames and allocation limits.
pub fn decode_with(
    frame: Bytes,
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
    cipher_key: Option<&EncryptionKey>,
    limits: DecodeLimits,
) -> Result<Value> {
    let header = verify_to_open(&frame, key, location, cipher_key)?;
    let (frame, header) = unfilter_verified(frame, header, key, location, cipher_key, limits)?;
    let corrupt = |reason: String| Error::corrupt(key, location, reason);
    let payload = frame.slice(header.payload_offset..);
    if header.kind == Kind::Blob {
        return Ok(Value::Blob(payload));
    }
    let buffer = Buffer::from(payload);
    // arrow's decoders validate what they read, but a crafted payload with a
    // valid checksum must still never unwind into the caller.
    let decoded = catch_unwind(AssertUnwindSafe(|| match header.kind {
        Kind::TableIpcStream => decode_ipc_stream(buffer),
        _ => decode_ipc_file(&buffer),
    }));
    match decoded {
        Ok(Ok(table)) => Ok(Value::Table(table)),
        Ok(Err(reason)) => Err(corrupt(format!("Arrow IPC payload: {reason}"))),
        Err(_) => Err(corrupt("Arrow IPC payload made the decoder panic".into())),
    }
}

/// Decodes a table frame, reading only the columns and batches `selection`
/// names (an IPC-file payload is decoded in place, so unselected columns are
/// never touched). A blob frame is [`Error::Corrupt`]: a table was expected.
pub(crate) fn decode_table_selected(
    frame: Bytes,
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
    selection: &crate::formats::Selection,
) -> Result<Table> {
    let header = verify_to_open(&frame, key, location, None)?;
    let (frame, header) =
        unfilter_verified(frame, header, key, location, None, DecodeLimits::default())?;
    let corrupt = |reason: String| Error::corrupt(key, location, reason);
    let buffer = Buffer::from(frame.slice(header.payload_offset..));
    let decoded = catch_unwind(AssertUnwindSafe(|| match header.kind {
        Kind::Blob => Err("a byte blob where a table was expected".to_string()),
        Kind::TableIpcStream => {
            decode_ipc_stream(buffer).and_then(|t| selection.apply(&t).map_err(|e| e.to_string()))
        }
        Kind::TableIpcFile => decode_ipc_file_selected(&buffer, selection),
    }));
    match decoded {
        Ok(Ok(table)) => Ok(table),
        Ok(Err(reason)) => Err(corrupt(format!("Arrow IPC payload: {reason}"))),
        Err(_) => Err(corrupt("Arrow IPC payload made the decoder panic".into())),
    }
}

fn block_range(block: &Block, len: usize) -> Result<(usize, usize), String> {
    let offset = usize::try_from(block.offset()).map_err(|_| "negative block offset")?;
    let meta = usize::try_from(block.metaDataLength()).map_err(|_| "negative metadata length")?;
    let body = usize::try_from(block.bodyLength()).map_err(|_| "negative body length")?;
    let size = meta.checked_add(body).ok_or("block length overflows")?;
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok((offset, size)),
        _ => Err(format!(
            "block at {offset}+{size} lies outside the {len}-byte payload"
        )),
    }
}

/// Parses and verifies the IPC message of a block, and checks that every
/// buffer it declares (record batch or dictionary) lies inside its body
/// before arrow slices it: arrow-ipc panics on out-of-range buffers (found
/// by the fuzz target), and a decoder that must never panic cannot rely on
/// catching that. The verified message goes to arrow as it is, so each
/// message is verified once (arrow's `FileDecoder` would verify it again).
fn checked_message(block_bytes: &[u8], meta_len: usize) -> Result<arrow_ipc::Message<'_>, String> {
    let meta = block_bytes
        .get(..meta_len)
        .ok_or("metadata runs past the block")?;
    let word = |at: usize| -> Option<usize> {
        let b = meta.get(at..at + 4)?;
        usize::try_from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    // An encapsulated message: [0xFFFFFFFF] length flatbuffer, or the legacy length flatbuffer.
    let (start, len): (usize, usize) = if meta.get(..4) == Some(&[0xff; 4][..]) {
        (8, word(4).ok_or("bad message length")?)
    } else {
        (4, word(0).ok_or("bad message length")?)
    };
    let fb = meta
        .get(start..start.saturating_add(len))
        .ok_or("message runs past its metadata")?;
    let message = crate::verified::message(fb)?;
    let batch = match message.header_type() {
        arrow_ipc::MessageHeader::RecordBatch => message.header_as_record_batch(),
        arrow_ipc::MessageHeader::DictionaryBatch => {
            message.header_as_dictionary_batch().and_then(|d| d.data())
        }
        _ => None,
    };
    let body_len = block_bytes.len() - meta_len;
    if let Some(buffers) = batch.and_then(|b| b.buffers()) {
        for b in buffers.iter() {
            let ok = u64::try_from(b.offset())
                .ok()
                .zip(u64::try_from(b.length()).ok())
                .and_then(|(o, l)| o.checked_add(l))
                .is_some_and(|end| end <= body_len as u64);
            if !ok {
                return Err(format!(
                    "buffer at {}+{} lies outside the {body_len}-byte message body",
                    b.offset(),
                    b.length()
                ));
            }
        }
    }
    Ok(message)
}

/// Decodes an Arrow IPC file held in `buf` without copying its buffers.
pub(crate) fn decode_ipc_file(buf: &Buffer) -> Result<Table, String> {
    decode_ipc_file_selected(buf, &crate::formats::Selection::all())
}

/// [`decode_ipc_file`] of only the columns and record batches `selection` names.
pub(crate) fn decode_ipc_file_selected(
    buf: &Buffer,
    selection: &crate::formats::Selection,
) -> Result<Table, String> {
    let n = buf.len();
    if n < 10 {
        return Err(format!("{n} bytes is too short for an Arrow IPC file"));
    }
    let mut trailer = [0u8; 10];
    trailer.copy_from_slice(&buf[n - 10..]);
    let footer_len = read_footer_length(trailer).map_err(|e| e.to_string())?;
    let footer_start = (n - 10)
        .checked_sub(footer_len)
        .ok_or_else(|| format!("footer of {footer_len} bytes exceeds the payload"))?;
    let (footer, schema) = crate::verified::footer(&buf[footer_start..n - 10])?;
    let version = footer.version();
    let mut out_schema = Arc::clone(&schema);
    let mut projection = None;
    if let Some(names) = &selection.columns {
        let idx = names
            .iter()
            .map(|n| schema.index_of(n).map_err(|_| format!("no column {n:?}")))
            .collect::<Result<Vec<usize>, String>>()?;
        out_schema = Arc::new(schema.project(&idx).map_err(|e| e.to_string())?);
        projection = Some(idx);
    }
    // The block at `offset` of `len` bytes: its verified message, and its body.
    let block = |offset: usize, len: usize, meta: usize| -> Result<_, String> {
        let message = checked_message(&buf[offset..offset + len], meta)?;
        // As arrow's `FileDecoder`: V1 files left the footer's version unset.
        if version != MetadataVersion::V1 && message.version() != version {
            return Err("IPC message and file footer disagree on the metadata version".into());
        }
        let body = buf.slice_with_length(offset + meta, len - meta);
        Ok((message, body))
    };
    let mut dictionaries = std::collections::HashMap::new();
    for b in footer.dictionaries().iter().flatten() {
        let (offset, len) = block_range(b, n)?;
        let (message, body) = block(offset, len, b.metaDataLength() as usize)?;
        let dictionary = message
            .header_as_dictionary_batch()
            .ok_or("a dictionary block holds no dictionary batch")?;
        arrow_ipc::reader::read_dictionary(
            &body,
            dictionary,
            &schema,
            &mut dictionaries,
            &message.version(),
        )
        .map_err(|e| e.to_string())?;
    }
    let mut batches: Vec<RecordBatch> = Vec::new();
    let blocks: Vec<&Block> = footer.recordBatches().iter().flatten().collect();
    let blocks = match &selection.batches {
        Some(r) => blocks
            .get(r.clone())
            .ok_or_else(|| format!("batches {r:?} out of range (the file has {})", blocks.len()))?,
        None => &blocks[..],
    };
    for &b in blocks {
        let (offset, len) = block_range(b, n)?;
        let (message, body) = block(offset, len, b.metaDataLength() as usize)?;
        match message.header_type() {
            arrow_ipc::MessageHeader::RecordBatch => {
                let batch = message
                    .header_as_record_batch()
                    .ok_or("unreadable record batch message")?;
                batches.push(
                    arrow_ipc::reader::read_record_batch(
                        &body,
                        batch,
                        Arc::clone(&schema),
                        &dictionaries,
                        projection.as_deref(),
                        &message.version(),
                    )
                    .map_err(|e| e.to_string())?,
                );
            }
            arrow_ipc::MessageHeader::NONE => {}
            t => return Err(format!("expected a record batch, found {t:?}")),
        }
    }
    Table::try_new(out_schema, batches).map_err(|e| e.to_string())
}

fn decode_ipc_stream(mut buf: Buffer) -> Result<Table, String> {
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !buf.is_empty() {
        let before = buf.len();
        match decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            Some(batch) => batches.push(batch),
            None if buf.len() == before => return Err("stream decoder made no progress".into()),
            None => {}
        }
    }
    decoder.finish().map_err(|e| e.to_string())?;
    let schema = decoder.schema().ok_or("stream has no schema")?;
    Table::try_new(schema, batches).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int32Array, StringArray};

    fn key() -> Key {
        Key::new("t/k").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Decodes `frame` (stored under `key()`) with the encryption key `ek`.
    fn open(frame: Bytes, ek: &EncryptionKey) -> Result<Value> {
        decode_with(frame, &key(), "t", Some(ek), DecodeLimits::default())
    }

    fn table() -> Table {
        let batch = RecordBatch::try_from_iter([
            ("i", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec!["a", "bb", "ccc"])) as ArrayRef,
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        Table::from(batch)
    }

    #[test]
    fn round_trips_and_aligns() {
        for value in [
            Value::from(vec![7u8; 1000]),
            Value::from(Vec::new()),
            Value::Table(table()),
        ] {
            let frame = encode(&value).unwrap_or_else(|e| panic!("{e}")).to_bytes();
            assert_eq!(frame.as_ptr() as usize % ALIGNMENT, 0);
            let header = verify(&frame, &key(), "test").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(header.payload_offset % ALIGNMENT, 0);
            let back = decode(frame, &key(), "test").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, value);
        }
    }

    /// A table's frame in parts is filtered where its parts lie, with
    /// chunks that straddle parts: it stores what the joined frame stores
    /// and reads back equal, compressed or encrypted.
    #[test]
    fn a_table_in_parts_is_filtered_like_its_joined_frame() {
        let n = 40_000;
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int32Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "b",
                Arc::new(Int32Array::from_iter_values((0..n).map(|i| i % 97))) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("v{}", i % 13)),
                )) as ArrayRef,
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let value = Value::Table(Table::from(batch));
        let parts = encode(&value).unwrap_or_else(|e| panic!("{e}"));
        assert!(parts.body.len() > 1, "a table this size is framed in parts");
        let joined = Frame::from(parts.to_bytes());
        let ek = Arc::new(EncryptionKey::from_bytes(&[3u8; 32]));
        // 4 KiB chunks: most of them cross a part boundary somewhere.
        let zstd = Filters::none()
            .with_compression(crate::filter::Compression::Zstd(1))
            .with_chunk_size(4 << 10);
        let aes = Filters::none()
            .with_encryption(Arc::clone(&ek))
            .with_chunk_size(4 << 10);
        let from_parts =
            refilter(parts.clone(), &zstd, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        let from_joined = refilter(joined, &zstd, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_parts.to_bytes(), from_joined.to_bytes());
        for sealed in [
            from_parts,
            refilter(parts, &aes, &key(), "t").unwrap_or_else(|e| panic!("{e}")),
        ] {
            assert_eq!(open(sealed.to_bytes(), &ek).ok(), Some(value.clone()));
        }
    }

    /// Payloads from 4 MiB get the span checksum (computed on every core),
    /// smaller ones the single pass; both read, filtered or not, and damage
    /// anywhere in a span is caught. Frames of either kind at any size read
    /// (older builds wrote large payloads with the single pass).
    #[test]
    fn large_payloads_are_checksummed_by_span() {
        let big: Vec<u8> = (0..Checksum::SPANS_FROM + SPAN / 3)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let value = Value::from(big.clone());
        let frame = encode(&value).unwrap_or_else(|e| panic!("{e}")).to_bytes();
        let header = verify(&frame, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header.checksum, Checksum::Xxh3Spans);
        assert_eq!(frame[11], 2);
        assert_eq!(header.payload_checksum, Checksum::Xxh3Spans.of(&big));
        let small = encode(&Value::from(vec![1u8; 100])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(small.to_bytes()[11], 1);
        for at in [0, SPAN - 1, SPAN, 2 * SPAN + 17, big.len() - 1] {
            let mut bad = frame.to_vec();
            bad[HEADER_LEN + at] ^= 0x10;
            assert!(
                verify(&bad, &key(), "t").is_err(),
                "a flipped byte at {at} went unseen"
            );
        }
        // The single pass over a large payload, as older builds wrote it.
        let mut old = frame.to_vec();
        let h = header_bytes(
            Kind::Blob,
            &[],
            HEADER_LEN,
            big.len(),
            big.len(),
            Checksum::Xxh3,
            xxh3_64(&big),
        );
        old[..HEADER_LEN].copy_from_slice(&h);
        let back = decode(Bytes::from(old), &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, value);
        // Filtered: compressed (the plain data checked after decompression)
        // and encrypted only (GCM), both by span.
        let ek = Arc::new(EncryptionKey::from_bytes(&[9u8; 32]));
        for filters in [
            Filters::none().with_compression(crate::filter::Compression::Lz4),
            Filters::none().with_encryption(Arc::clone(&ek)),
        ] {
            let sealed = refilter(
                encode(&value).unwrap_or_else(|e| panic!("{e}")),
                &filters,
                &key(),
                "t",
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
            assert_eq!(sealed[11], 2);
            assert_eq!(open(sealed.clone(), &ek).ok(), Some(value.clone()));
            let plain = unfilter(sealed, &key(), "t", Some(&ek), DecodeLimits::default())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(plain[11], 2);
            assert_eq!(
                verify(&plain, &key(), "t").map(|h| h.payload_checksum).ok(),
                Some(header.payload_checksum)
            );
        }
    }

    /// A table's large buffers are parts of its frame, not copies; the frame
    /// reads back whole, its checksum (by span, across parts) is the one the
    /// joined bytes give, and filtering it works on the joined payload.
    #[test]
    fn table_frames_share_large_buffers() {
        use arrow_array::Float64Array;
        let rows = 3 * SPAN / 8 + 5;
        let x = Float64Array::from_iter_values((0..rows).map(|i| i as f64));
        let x_data = x.values().inner().as_ptr();
        let batch = RecordBatch::try_from_iter([
            ("x", Arc::new(x) as ArrayRef),
            (
                "i",
                Arc::new(Int32Array::from_iter_values(0..rows as i32)) as ArrayRef,
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let value = Value::Table(Table::from(batch.slice(1, rows - 2)));
        let frame = encode(&value).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            frame.parts().any(|p| p.as_ptr() == x_data.wrapping_add(8)),
            "the sliced column is a part of the frame as it is"
        );
        assert!(frame.parts().count() >= 3);
        let joined = frame.to_bytes();
        assert_eq!(joined.len(), frame.len());
        let header = verify(&joined, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header.checksum, Checksum::Xxh3Spans);
        assert_eq!(header.kind, Kind::TableIpcFile);
        // The parts, hashed where they lie, against the joined payload.
        let body: Vec<Bytes> = frame.parts().skip(1).cloned().collect();
        let from_parts = verify_parts(&frame.head, &body, &key(), "t", PayloadCheck::Hash)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_parts, header);
        assert_eq!(Frame::from(joined.clone()), frame);
        let back = decode(joined, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, value);
        let sealed = refilter(
            frame,
            &Filters::none().with_compression(crate::filter::Compression::Lz4),
            &key(),
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .to_bytes();
        let back = decode(sealed, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, value);
    }

    /// Hashing the pieces where they lie gives the joined bytes' checksum,
    /// however they are cut, for both algorithms.
    #[test]
    fn checksums_of_pieces_match_the_joined_bytes() {
        let data: Vec<u8> = (0..2 * SPAN + 1000).map(|i| (i * 13 % 253) as u8).collect();
        for cuts in [
            vec![],
            vec![0],
            vec![1, 2, 3],
            vec![SPAN - 1, SPAN, SPAN + 1],
            vec![100, SPAN + 100, 2 * SPAN],
            vec![data.len()],
        ] {
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut from = 0;
            for &c in &cuts {
                pieces.push(&data[from..c]);
                from = c;
            }
            pieces.push(&data[from..]);
            for checksum in [Checksum::Xxh3, Checksum::Xxh3Spans] {
                assert_eq!(
                    checksum.of_slices(&pieces),
                    checksum.of(&data),
                    "{checksum:?} cut at {cuts:?}"
                );
            }
        }
        assert_eq!(
            Checksum::Xxh3Spans.of_slices(&[]),
            Checksum::Xxh3Spans.of(&[])
        );
    }

    /// A frame encoded here is filtered without hashing its payload again;
    /// bytes from elsewhere are verified first, and damaged ones are left
    /// as they are (they read back as the error they are).
    #[test]
    fn refilter_trusts_only_frames_it_encoded() {
        let filters = Filters::none().with_compression(crate::filter::Compression::Zstd(1));
        let value = Value::from(b"abc".repeat(10_000));
        let fresh = encode(&value).unwrap_or_else(|e| panic!("{e}"));
        let filtered =
            refilter(fresh.clone(), &filters, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert!(filtered.len() < fresh.len() / 10, "compressed");
        let back = decode(filtered.to_bytes(), &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, value);
        // The same bytes read from storage: verified, then filtered alike.
        let stored = Frame::from(fresh.to_bytes());
        assert_eq!(stored, fresh, "equal bytes are equal frames");
        let again = refilter(stored, &filters, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.len(), filtered.len());
        // Damaged bytes are not filtered (which would seal the damage in).
        let mut bad = fresh.to_bytes().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let bad = Frame::from(Bytes::from(bad));
        let kept = refilter(bad.clone(), &filters, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, bad);
        assert!(decode(kept.to_bytes(), &key(), "t").is_err());
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let frame = encode(&Value::Table(table()))
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        for i in 0..frame.len() {
            let mut bad = frame.to_vec();
            bad[i] ^= 0x20;
            match decode(Bytes::from(bad), &key(), "loc") {
                Err(Error::Corrupt { key, location, .. }) => {
                    assert_eq!((key.as_str(), location.as_str()), ("t/k", "loc"));
                }
                other => panic!("byte {i}: {other:?}"),
            }
        }
    }

    /// A filtered frame's stored payload is not hashed when it is opened:
    /// GCM authenticates an encrypted one, and the raw checksum checks what
    /// decoding an unencrypted one gives. Every flipped byte and every cut
    /// must still be an error, never a different value. Encrypted, the
    /// only bytes that change nothing are the zeros padding the descriptor
    /// to the payload (part of no value); compressed, a codec's own header
    /// has fields its decoder ignores (gzip's time and OS bytes), which
    /// may decode to the same value.
    #[test]
    fn every_flipped_byte_of_a_filtered_frame_is_an_error_or_the_same_value() {
        use crate::filter::Compression::{Gzip, Lz4, Zstd};
        let ek = Arc::new(EncryptionKey::from_bytes(&[5u8; 32]));
        let text = Value::from(b"spillpool ".repeat(1_300));
        let noise = Value::from(
            (0u64..9_000)
                .map(|i| xxh3_64(&i.to_le_bytes()) as u8)
                .collect::<Vec<u8>>(),
        );
        let sealed = || Filters::none().with_encryption(Arc::clone(&ek));
        for (filters, value, authenticated) in [
            (sealed(), &text, true),
            (sealed().with_compression(Lz4), &text, true),
            (Filters::none().with_compression(Lz4), &text, false),
            (Filters::none().with_compression(Zstd(1)), &text, false),
            (Filters::none().with_compression(Gzip(1)), &text, false),
            // Compression that does not pay: stored as it is, in chunks.
            (Filters::none().with_compression(Zstd(1)), &noise, false),
        ] {
            let filters = filters.with_chunk_size(4 << 10);
            let stored = encode_filtered(value, &filters, &key())
                .unwrap_or_else(|e| panic!("{e}"))
                .to_bytes();
            assert_eq!(open(stored.clone(), &ek).ok().as_ref(), Some(value));
            let h = verify(&stored, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
            let padding = HEADER_LEN + h.filters.len()..h.payload_offset;
            let applied = crate::filter::describe(&h.filters);
            assert_eq!(
                applied.and_then(|a| a.compression).is_none(),
                value == &noise || filters.compression().is_none(),
                "{filters:?}: noise is stored as it is, the text compressed"
            );
            for i in 0..stored.len() {
                let mut bad = stored.to_vec();
                bad[i] ^= 0x04;
                let bad = Bytes::from(bad);
                let got = if authenticated {
                    open(bad, &ek)
                } else {
                    decode(bad, &key(), "t")
                };
                match got {
                    Err(Error::Corrupt { .. }) => {}
                    Ok(v) if &v == value && (!authenticated || padding.contains(&i)) => {}
                    other => panic!(
                        "{filters:?}, byte {i} of {}: {:?}",
                        stored.len(),
                        other.map(|v| v == *value)
                    ),
                }
            }
            for len in [0, HEADER_LEN, stored.len() - 16, stored.len() - 1] {
                assert!(matches!(
                    open(stored.slice(..len), &ek),
                    Err(Error::Corrupt { .. })
                ));
            }
        }
    }

    /// Chunks of whole spans are checksummed by the tasks that decode them
    /// (span checksums, payloads from 4 MiB): a changed byte anywhere, in
    /// any chunk, the last (short) one included, is still caught.
    #[test]
    fn big_filtered_frames_are_checked_chunk_by_chunk() {
        use crate::filter::Compression::{Lz4, Zstd};
        let raw: Vec<u8> = (0..Checksum::SPANS_FROM + SPAN / 2 + 3)
            .map(|i| (i % 7 + i / 4099 % 5) as u8)
            .collect();
        let value = Value::from(raw);
        for filters in [
            Filters::none().with_compression(Lz4),
            Filters::none()
                .with_compression(Zstd(1))
                .with_chunk_size(2 * SPAN),
        ] {
            let stored = encode_filtered(&value, &filters, &key())
                .unwrap_or_else(|e| panic!("{e}"))
                .to_bytes();
            let h = verify(&stored, &key(), "t").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(h.checksum, Checksum::Xxh3Spans);
            assert_eq!(
                decode(stored.clone(), &key(), "t").ok(),
                Some(value.clone())
            );
            let payload = h.payload_offset..stored.len();
            let mut at: Vec<usize> = (0..16)
                .map(|k| payload.start + k * payload.len() / 16)
                .collect();
            at.extend([payload.start, payload.start + 5, stored.len() - 1]);
            for i in at {
                let mut bad = stored.to_vec();
                bad[i] ^= 0x40;
                match decode(Bytes::from(bad), &key(), "t") {
                    Err(Error::Corrupt { .. }) => {}
                    other => panic!("{filters:?}, byte {i}: {:?}", other.map(|v| v == value)),
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let frame = encode(&Value::from(vec![1u8; 300]))
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        for len in 0..frame.len() {
            assert!(matches!(
                decode(frame.slice(..len), &key(), "loc"),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let frame = encode(&Value::from(vec![1u8; 10]))
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        let mut v = frame.to_vec();
        v[8..10].copy_from_slice(&2u16.to_le_bytes());
        let sum = header_checksum(&v, &[]);
        v[56..64].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(
            decode(Bytes::from(v), &key(), "loc"),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn valid_checksum_over_garbage_payload_is_corrupt_not_panic() {
        // A frame whose checksums are right but whose IPC payload is nonsense.
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(b"ARROW1\0\0garbage garbage garbage\xff\xff\xff\x7fARROW1");
        let stored = buf.len() - HEADER_LEN;
        let h = header_bytes(
            Kind::TableIpcFile,
            &[],
            HEADER_LEN,
            stored,
            stored,
            Checksum::Xxh3,
            xxh3_64(&buf[HEADER_LEN..]),
        );
        buf[..HEADER_LEN].copy_from_slice(&h);
        assert!(matches!(
            decode(Bytes::from(buf), &key(), "loc"),
            Err(Error::Corrupt { .. })
        ));
    }
}
