//! Filters: compression and authenticated encryption of frame payloads.
//!
//! A filtered payload is cut into chunks (1 MiB of raw bytes by default)
//! that are compressed and then sealed independently, in parallel on all
//! cores. The chain and its parameters are recorded in the frame header (the
//! filter descriptor, see `docs/FORMAT.md`), so reading is self-describing:
//! any reader undoes compression; only encryption needs the key.
//!
//! Each sealed chunk is authenticated (AES-256-GCM) with a unique nonce, and
//! with associated data that binds the storage key, the frame's kind and raw
//! length, the whole descriptor (codec, chunk size, chunk count, key id,
//! nonce base) and the chunk's index. Reordering, dropping, truncating or
//! swapping chunks between values, editing the descriptor, or moving the
//! frame to another key all fail authentication. The header holds the key's
//! identifier, never the key, so a wrong key is reported as such.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arrow_buffer::MutableBuffer;
use rayon::prelude::*;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result, printable};
use crate::frame::{Checksum, SPAN};
use crate::key::Key;

/// Bytes of the filter descriptor in the frame header.
pub const DESCRIPTOR_LEN: usize = 48;
/// Default raw bytes per chunk.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
const MIN_CHUNK: usize = 4 << 10;
const MAX_CHUNK: usize = 64 << 20;
const TAG_LEN: usize = 16;
const CHAIN_FORMAT: u8 = 1;
/// Compression is kept only if the sample shrinks to at most this fraction.
const WORTHWHILE_RATIO: f64 = 0.9;

/// A compression codec, named as in configuration: `zstd`, `zstd:LEVEL`, `lz4`, `gzip`, `gzip:LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Zstandard at a level (1–22; negative levels are faster).
    Zstd(i32),
    /// LZ4 block format.
    Lz4,
    /// gzip (DEFLATE) at a level (0–9).
    Gzip(u32),
}

impl Compression {
    fn code(self) -> u8 {
        match self {
            Compression::Zstd(_) => 1,
            Compression::Lz4 => 2,
            Compression::Gzip(_) => 3,
        }
    }

    /// Compresses `input`, with `ctx`'s zstd context if it has one for this level.
    fn compress(self, input: &[u8], ctx: &mut Contexts) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::Zstd(level) => {
                let zc = match &mut ctx.compressor {
                    Some((l, zc)) if *l == level => zc,
                    slot => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
                };
                zc.compress(input)
            }
            Compression::Lz4 => Ok(lz4_flex::block::compress(input)),
            Compression::Gzip(level) => {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(input.len() / 2),
                    flate2::Compression::new(level),
                );
                e.write_all(input)?;
                e.finish()
            }
        }
    }
}

/// One chunk task's codec contexts, kept across the chunks it handles
/// instead of a zstd context allocated and set up for every chunk (a few
/// percent of a zstd read at 1 MiB chunks; more for small chunks).
#[derive(Default)]
struct Contexts {
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

/// A chunk's range of the output, not yet initialised, that zstd writes
/// without reading it first (so it need not be zeroed): only the first
/// `filled` bytes, which zstd says it wrote, count as initialised.
struct Unwritten<'a> {
    ptr: *mut u8,
    capacity: usize,
    filled: usize,
    _out: std::marker::PhantomData<&'a mut [u8]>,
}

// SAFETY: `as_slice` covers only the bytes zstd reported writing
// (`filled_until`), within `capacity` bytes that belong to this value.
unsafe impl zstd::zstd_safe::WriteBuf for Unwritten<'_> {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `filled` bytes were written (see above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.filled) }
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    unsafe fn filled_until(&mut self, n: usize) {
        self.filled = n;
    }
}

/// Undoes codec `code` from `input` into exactly `len` bytes at `at` in
/// `out`, and returns them (initialised).
///
/// # Safety
/// As for [`Dest::copy_in`]: that range is the caller's alone.
unsafe fn decompress_in<'a>(
    code: u8,
    input: &[u8],
    out: Dest,
    at: usize,
    len: usize,
    ctx: &mut Contexts,
) -> std::result::Result<&'a mut [u8], String> {
    let wrong = |n: usize| format!("chunk decompressed to {n} bytes, expected {len}");
    if code == 1 {
        let mut dst = Unwritten {
            ptr: out.at(at, len),
            capacity: len,
            filled: 0,
            _out: std::marker::PhantomData,
        };
        let zd = match &mut ctx.decompressor {
            Some(zd) => zd,
            slot => slot.insert(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?),
        };
        let n = zd
            .decompress_to_buffer(input, &mut dst)
            .map_err(|e| format!("zstd: {e}"))?;
        if n != len || dst.filled != len {
            return Err(wrong(n));
        }
        // SAFETY: zstd wrote all `len` bytes (just checked), and the range
        // is the caller's alone.
        return Ok(unsafe { std::slice::from_raw_parts_mut(dst.ptr, len) });
    }
    // lz4 and gzip decode into initialised memory.
    // SAFETY: the caller's promise.
    let dst = unsafe { out.zeroed(at, len) };
    let n = match code {
        2 => lz4_flex::block::decompress_into(input, dst).map_err(|e| format!("lz4: {e}"))?,
        3 => {
            let mut d = flate2::read::GzDecoder::new(input);
            d.read_exact(dst).map_err(|e| format!("gzip: {e}"))?;
            let mut extra = [0u8; 1];
            if d.read(&mut extra).map_err(|e| format!("gzip: {e}"))? != 0 {
                return Err("gzip: more data than the chunk holds".into());
            }
            dst.len()
        }
        other => return Err(format!("unknown codec {other}")),
    };
    if n != len {
        return Err(wrong(n));
    }
    Ok(dst)
}

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidConfig {
            what: format!("compression {s:?}"),
            reason,
        };
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let level_i32 = |default: i32| -> Result<i32> {
            level.map_or(Ok(default), |l| {
                l.parse()
                    .map_err(|_| bad(format!("level {l:?} is not a number")))
            })
        };
        match name.to_ascii_lowercase().as_str() {
            "zstd" => {
                let l = level_i32(3)?;
                if !(-7..=22).contains(&l) {
                    return Err(bad("zstd levels run from -7 to 22".into()));
                }
                Ok(Compression::Zstd(l))
            }
            "lz4" if level.is_none() => Ok(Compression::Lz4),
            "gzip" => {
                let l = level_i32(6)?;
                if !(0..=9).contains(&l) {
                    return Err(bad("gzip levels run from 0 to 9".into()));
                }
                Ok(Compression::Gzip(l as u32))
            }
            _ => Err(bad("use zstd, zstd:LEVEL, lz4, gzip or gzip:LEVEL".into())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Gzip(l) => write!(f, "gzip:{l}"),
        }
    }
}

/// A 256-bit AES-GCM key. Its `Debug` and `Display` show only its identifier.
///
/// ```
/// use spillpool::filter::EncryptionKey;
/// let key = EncryptionKey::from_hex(&"ab".repeat(32)).unwrap();
/// assert!(!format!("{key:?}").contains("abab"));
/// assert!(EncryptionKey::from_hex("too short").is_err());
/// ```
pub struct EncryptionKey {
    key: LessSafeKey,
    id: [u8; 8],
}

impl EncryptionKey {
    /// [`Error::WrongKey`] unless the encrypted filter chain `desc` (see
    /// [`authenticates`]) was sealed with this key.
    pub(crate) fn check_sealed_with(
        &self,
        desc: &[u8],
        key: &Key,
        location: &(impl fmt::Display + ?Sized),
    ) -> Result<()> {
        match desc.get(16..24) {
            Some(id) if id == self.id => Ok(()),
            id => Err(Error::WrongKey {
                key: printable(key.as_str()),
                location: location.to_string(),
                stored_key_id: hex(id.unwrap_or_default()),
            }),
        }
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"spillpool key id v1\0".as_slice(), bytes.as_slice()].concat(),
        );
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_ref()[..8]);
        // AES-256 accepts any 32 bytes: this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        EncryptionKey {
            key: LessSafeKey::new(unbound),
            id,
        }
    }

    /// A key from 64 hexadecimal characters. The error never repeats the input.
    pub fn from_hex(hex: &str) -> Result<Self> {
        let hex = hex.trim();
        let bad = || Error::InvalidConfig {
            what: "encryption key".into(),
            reason: "expected 64 hexadecimal characters (32 bytes)".into(),
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// The key from `SPILLPOOL_ENCRYPTION_KEY` (64 hex characters) or the
    /// file named by `SPILLPOOL_ENCRYPTION_KEY_FILE`; `None` if neither is set.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(&|n| std::env::var(n).ok())
    }

    pub(crate) fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let named = |what: &str, e: Error| match e {
            Error::InvalidConfig { reason, .. } => Error::InvalidConfig {
                what: what.to_string(),
                reason,
            },
            other => other,
        };
        if let Some(hex) = get("SPILLPOOL_ENCRYPTION_KEY").filter(|v| !v.is_empty()) {
            return Self::from_hex(&hex)
                .map(Some)
                .map_err(|e| named("SPILLPOOL_ENCRYPTION_KEY", e));
        }
        if let Some(path) = get("SPILLPOOL_ENCRYPTION_KEY_FILE").filter(|v| !v.is_empty()) {
            let text = std::fs::read_to_string(Path::new(&path))
                .map_err(|e| Error::io("read key file", &path, e))?;
            return Self::from_hex(&text)
                .map(Some)
                .map_err(|e| named(&format!("SPILLPOOL_ENCRYPTION_KEY_FILE ({path})"), e));
        }
        Ok(None)
    }

    /// The key's public identifier (a hash), stored in frame headers.
    pub fn id(&self) -> [u8; 8] {
        self.id
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey(id={})", hex(&self.id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The filters to apply on write.
///
/// ```
/// use spillpool::filter::{Compression, Filters};
/// let f = Filters::none().with_compression(Compression::Zstd(3));
/// assert!(!f.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Filters {
    compression: Option<Compression>,
    encryption: Option<Arc<EncryptionKey>>,
    chunk_size: usize,
}

impl fmt::Debug for Filters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filters")
            .field("compression", &self.compression)
            .field("encryption", &self.encryption)
            .field("chunk_size", &self.chunk_size())
            .finish()
    }
}

impl Filters {
    /// No filters.
    pub fn none() -> Self {
        Filters::default()
    }

    /// Compress with `c`.
    pub fn with_compression(mut self, c: Compression) -> Self {
        self.compression = Some(c);
        self
    }

    /// Encrypt with AES-256-GCM under `key`.
    pub fn with_encryption(mut self, key: Arc<EncryptionKey>) -> Self {
        self.encryption = Some(key);
        self
    }

    /// Raw bytes per chunk (clamped to 4 KiB – 64 MiB; default 1 MiB).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.clamp(MIN_CHUNK, MAX_CHUNK);
        self
    }

    /// Whether no filter is configured.
    pub fn is_empty(&self) -> bool {
        self.compression.is_none() && self.encryption.is_none()
    }

    /// The compression, if any.
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// The encryption key, if any (also used to read).
    pub fn key(&self) -> Option<&Arc<EncryptionKey>> {
        self.encryption.as_ref()
    }

    fn chunk_size(&self) -> usize {
        if self.chunk_size == 0 {
            DEFAULT_CHUNK_SIZE
        } else {
            self.chunk_size
        }
    }

    /// Filters from a compression spec (`zstd:3`, or `none`) and an encryption
    /// spec (`aes-256-gcm`, or `none`); the key for encryption comes from
    /// `key`, or else from the environment (never from configuration text).
    pub fn from_specs(
        compression: Option<&str>,
        encryption: Option<&str>,
        key: Option<Arc<EncryptionKey>>,
    ) -> Result<Self> {
        let mut f = Filters::none();
        if let Some(c) = compression.filter(|c| !c.eq_ignore_ascii_case("none")) {
            f = f.with_compression(c.parse()?);
        }
        match encryption.map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => {}
            Some("aes-256-gcm") => {
                let key = match key {
                    Some(k) => k,
                    None => Arc::new(EncryptionKey::from_env()?.ok_or_else(|| Error::InvalidConfig {
                        what: "encryption".into(),
                        reason: "aes-256-gcm needs a key: set SPILLPOOL_ENCRYPTION_KEY (64 hex characters) or SPILLPOOL_ENCRYPTION_KEY_FILE".into(),
                    })?),
                };
                f = f.with_encryption(key);
            }
            Some(other) => {
                return Err(Error::InvalidConfig {
                    what: format!("encryption {other:?}"),
                    reason: "the supported cipher is aes-256-gcm".into(),
                });
            }
        }
        Ok(f)
    }

    /// Filters `payload` (raw bytes of a frame of `kind`, the concatenation
    /// of these slices) for storage under `key`. Returns the descriptor,
    /// the stored payload (64-byte aligned) and its `checksum`.
    ///
    /// `raw_sum` is the payload's checksum, which the caller has at hand
    /// (the plain frame's verified one): it is not computed again.
    pub(crate) fn apply(
        &self,
        payload: &[&[u8]],
        raw_sum: u64,
        checksum: Checksum,
        kind: u8,
        key: &Key,
    ) -> Result<(Vec<u8>, MutableBuffer, u64)> {
        let chunk_size = self.chunk_size();
        let raw_len = pieces_len(payload);
        let chunks = crate::frame::spans_of(payload, chunk_size);
        // Adaptive: compress samples first; keep compression only if it pays.
        let codec = self
            .compression
            .filter(|c| compression_pays(*c, payload, raw_len));
        let mut desc = vec![0u8; DESCRIPTOR_LEN];
        desc[0] = CHAIN_FORMAT;
        desc[1] = codec.map_or(0, Compression::code);
        desc[2] = u8::from(self.encryption.is_some());
        desc[4..8].copy_from_slice(&(chunk_size as u32).to_le_bytes());
        desc[8..12].copy_from_slice(&(chunks.len() as u32).to_le_bytes());
        // End to end: what comes out of undoing the filters must be what went in.
        desc[36..44].copy_from_slice(&raw_sum.to_le_bytes());
        if let Some(k) = &self.encryption {
            desc[16..24].copy_from_slice(&k.id);
            SystemRandom::new()
                .fill(&mut desc[24..36])
                .map_err(|_| Error::InvalidValue {
                    reason: "no randomness for a nonce".into(),
                })?;
        }
        let compressed: Vec<Option<Vec<u8>>> = match codec {
            Some(c) => chunks
                .par_iter()
                .map_init(Contexts::default, |ctx, chunk| {
                    c.compress(&joined(chunk), ctx).map(Some)
                })
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::InvalidValue {
                    reason: format!("{c} compression: {e}"),
                })?,
            None => vec![None; chunks.len()],
        };
        let tag = if self.encryption.is_some() {
            TAG_LEN
        } else {
            0
        };
        let sizes: Vec<usize> = chunks
            .iter()
            .zip(&compressed)
            .map(|(raw, c)| c.as_ref().map_or_else(|| pieces_len(raw), Vec::len) + tag)
            .collect();
        let table_len = 4 * chunks.len();
        let total = table_len + sizes.iter().sum::<usize>();
        let mut out = MutableBuffer::new(0);
        let dest = Dest::of(&mut out, 0, total);
        let table: Vec<u8> = sizes
            .iter()
            .flat_map(|size| (*size as u32).to_le_bytes())
            .collect();
        let starts: Vec<usize> = sizes
            .iter()
            .scan(table_len, |at, size| {
                let start = *at;
                *at += size;
                Some(start)
            })
            .collect();
        // Span checksums of the stored payload are taken by whichever task
        // completes each span, while it is in cache, not in a pass after.
        let tally = (checksum == Checksum::Xxh3Spans).then(|| {
            SpanTally::new(
                std::iter::once((0, table_len))
                    .chain(starts.iter().copied().zip(sizes.iter().copied())),
                total,
            )
        });
        // SAFETY: 0..table_len is in `dest` and no task below writes there.
        unsafe { dest.copy_in(0, &table) };
        if let Some(t) = &tally {
            // SAFETY: the table is written and nothing writes it again.
            unsafe { t.wrote(dest, 0, table_len) };
        }
        let aad_base = aad_prefix(key, kind, raw_len as u64, &desc);
        let cipher = self.encryption.as_deref();
        (0..chunks.len())
            .into_par_iter()
            .try_for_each(|i| {
                let packed;
                let body: &[&[u8]] = match compressed[i].as_deref() {
                    Some(c) => {
                        packed = [c];
                        &packed
                    }
                    None => &chunks[i],
                };
                // SAFETY: slot i is starts[i]..starts[i] + sizes[i], inside
                // `dest` (the sizes sum to its length) and only this task's.
                let data = unsafe { dest.copy_all_in(starts[i], body) };
                if let Some(k) = cipher {
                    let t = k
                        .key
                        .seal_in_place_separate_tag(nonce(&desc, i), aad(&aad_base, i), data)
                        .map_err(|_| ())?;
                    let end = starts[i] + data.len();
                    // SAFETY: the tag ends slot i (sizes[i] = body + TAG_LEN).
                    unsafe { dest.copy_in(end, t.as_ref()) };
                }
                if let Some(t) = &tally {
                    // SAFETY: slot i is written, and no task writes it again.
                    unsafe { t.wrote(dest, starts[i], sizes[i]) };
                }
                Ok::<(), ()>(())
            })
            .map_err(|()| Error::InvalidValue {
                reason: "encryption failed".into(),
            })?;
        // SAFETY: the table and every slot (body, then tag) were written:
        // all of 0..total, within the capacity `Dest::of` reserved.
        unsafe { out.set_len(total) };
        let stored_sum = match tally {
            Some(t) => t.sum(),
            None => checksum.of(out.as_slice()),
        };
        Ok((desc, out, stored_sum))
    }
}

/// Span checksums ([`Checksum::Xxh3Spans`]) of a buffer that parallel
/// tasks write in disjoint ranges: each span counts the ranges that touch
/// it, and the task that writes the last of them hashes the span, which
/// it has just written (part of it, or all) and so finds in cache.
struct SpanTally {
    left: Vec<AtomicUsize>,
    sums: Vec<AtomicU64>,
    total: usize,
}

impl SpanTally {
    /// For a buffer of `total` bytes written as these `(start, len)` ranges.
    fn new(ranges: impl Iterator<Item = (usize, usize)>, total: usize) -> Self {
        let spans = total.div_ceil(SPAN);
        let mut left: Vec<AtomicUsize> = (0..spans).map(|_| AtomicUsize::new(0)).collect();
        for (start, len) in ranges {
            for span in Self::touched(start, len) {
                *left[span].get_mut() += 1;
            }
        }
        SpanTally {
            left,
            sums: (0..spans).map(|_| AtomicU64::new(0)).collect(),
            total,
        }
    }

    /// The spans that `len` bytes at `start` touch.
    fn touched(start: usize, len: usize) -> std::ops::Range<usize> {
        if len == 0 {
            0..0
        } else {
            start / SPAN..(start + len - 1) / SPAN + 1
        }
    }

    /// Range `start..start + len` of `dest` is written: hashes each span it
    /// was the last to complete.
    ///
    /// # Safety
    /// That range was written and nothing writes any of `dest` again
    /// before [`SpanTally::sum`]; each range is reported once.
    unsafe fn wrote(&self, dest: Dest, start: usize, len: usize) {
        for span in Self::touched(start, len) {
            // AcqRel: the last writer sees every other writer's bytes.
            if self.left[span].fetch_sub(1, Ordering::AcqRel) == 1 {
                let from = span * SPAN;
                let len = SPAN.min(self.total - from);
                // SAFETY: every range touching this span has been written
                // (its count reached zero) and none is written again.
                let bytes = unsafe { dest.written(from, len) };
                self.sums[span].store(Checksum::span_sum(bytes), Ordering::Relaxed);
            }
        }
    }

    /// The checksum, once every range was reported.
    fn sum(self) -> u64 {
        let sums: Vec<u64> = self.sums.into_iter().map(AtomicU64::into_inner).collect();
        Checksum::of_span_sums(&sums)
    }
}

/// Where parallel chunk tasks write their output: `len` bytes at `ptr`, not
/// necessarily initialised, each task in its own range. Writing into
/// uninitialised memory spares a serial zeroing pass over the whole value
/// (~6 ms per 64 MiB here), and each chunk is written while it is in cache.
#[derive(Clone, Copy)]
pub(crate) struct Dest {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a `Dest` is shared only by tasks that write disjoint ranges of one
// buffer, which outlives them and is not otherwise touched meanwhile.
unsafe impl Send for Dest {}
unsafe impl Sync for Dest {}

impl Dest {
    /// `len` bytes of `buf` from `offset`, reserving the capacity they need.
    pub(crate) fn of(buf: &mut MutableBuffer, offset: usize, len: usize) -> Dest {
        let end = offset.saturating_add(len);
        buf.reserve(end.saturating_sub(buf.len()));
        // `offset` is within the capacity just reserved.
        Dest {
            ptr: buf.as_mut_ptr().wrapping_add(offset),
            len,
        }
    }

    #[cfg(test)]
    fn of_slice(out: &mut [u8]) -> Dest {
        Dest {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }

    /// Copies `src` to `at..at + src.len()` and returns those bytes, now initialised.
    ///
    /// # Safety
    /// No other task may use that range while the result lives.
    unsafe fn copy_in<'a>(self, at: usize, src: &[u8]) -> &'a mut [u8] {
        // SAFETY: the caller's promise.
        unsafe { self.copy_all_in(at, std::slice::from_ref(&src)) }
    }

    /// Copies the concatenation of `srcs` to `at..` and returns those bytes.
    ///
    /// # Safety
    /// As for [`Dest::copy_in`].
    unsafe fn copy_all_in<'a>(self, at: usize, srcs: &[&[u8]]) -> &'a mut [u8] {
        let len = pieces_len(srcs);
        let start = self.at(at, len);
        let mut to = start;
        for src in srcs {
            // SAFETY: in bounds (checked: the pieces sum to `len`), and the
            // range is this caller's alone.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), to, src.len());
                to = to.add(src.len());
            }
        }
        // SAFETY: at..at + len is in bounds and was written just now.
        unsafe { std::slice::from_raw_parts_mut(start, len) }
    }

    /// The address of byte `at`, checking that `at..at + len` is in the buffer.
    fn at(self, at: usize, len: usize) -> *mut u8 {
        assert!(
            at <= self.len && len <= self.len - at,
            "chunk outside its buffer"
        );
        // In bounds (checked above): `wrapping_add` lands where `add` would.
        self.ptr.wrapping_add(at)
    }

    /// Bytes `at..at + len`, already written.
    ///
    /// # Safety
    /// Every one of them was written, and no task writes them meanwhile.
    unsafe fn written<'a>(self, at: usize, len: usize) -> &'a [u8] {
        // SAFETY: in bounds (`at` checks), and the caller's promise.
        unsafe { std::slice::from_raw_parts(self.at(at, len), len) }
    }

    /// Zeroes `at..at + len` and returns it, for a decoder that needs initialised output.
    ///
    /// # Safety
    /// As for [`Dest::copy_in`].
    unsafe fn zeroed<'a>(self, at: usize, len: usize) -> &'a mut [u8] {
        let start = self.at(at, len);
        // SAFETY: in bounds (`at` checks), and the range is the caller's alone.
        unsafe {
            std::ptr::write_bytes(start, 0, len);
            std::slice::from_raw_parts_mut(start, len)
        }
    }

    /// All `len` bytes.
    ///
    /// # Safety
    /// Every byte must have been written, and no task may still be writing.
    unsafe fn all<'a>(self) -> &'a [u8] {
        // SAFETY: the caller's promise.
        unsafe { self.written(0, self.len) }
    }
}

/// Whether a frame with this filter chain is encrypted, so that opening it
/// authenticates every stored byte (see `frame::verify_to_open`).
pub(crate) fn authenticates(desc: &[u8]) -> bool {
    desc.len() == DESCRIPTOR_LEN && desc[0] == CHAIN_FORMAT && desc[2] == 1
}

/// Compresses up to four 64 KiB slices spread over `payload` (`len` bytes
/// in pieces; the start of a table's payload is often offsets, unlike the
/// rest) and says whether they shrink to [`WORTHWHILE_RATIO`] or better.
fn compression_pays(c: Compression, payload: &[&[u8]], len: usize) -> bool {
    const SAMPLE: usize = 64 << 10;
    if len <= 4 * SAMPLE {
        return c
            .compress(&joined(payload), &mut Contexts::default())
            .is_ok_and(|out| out.len() as f64 <= len as f64 * WORTHWHILE_RATIO);
    }
    let step = (len - SAMPLE) / 3;
    let mut ctx = Contexts::default();
    let (mut raw, mut packed) = (0usize, 0usize);
    for i in 0..4 {
        let slice = joined(&range_of(payload, i * step, SAMPLE));
        match c.compress(&slice, &mut ctx) {
            Ok(out) => {
                raw += slice.len();
                packed += out.len();
            }
            Err(_) => return false,
        }
    }
    packed as f64 <= raw as f64 * WORTHWHILE_RATIO
}

/// The total length of `pieces`.
pub(crate) fn pieces_len(pieces: &[&[u8]]) -> usize {
    pieces.iter().map(|p| p.len()).sum()
}

/// `pieces` as one slice: borrowed when there is one, else joined (a chunk
/// that straddles two parts of a table's frame; copied by the task that
/// filters it, while it is in that core's cache).
fn joined<'a>(pieces: &[&'a [u8]]) -> Cow<'a, [u8]> {
    match pieces {
        [] => Cow::Borrowed(&[]),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.concat()),
    }
}

/// The slices of `pieces` that hold bytes `at..at + len` of their concatenation.
fn range_of<'a>(pieces: &[&'a [u8]], mut at: usize, mut len: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for &piece in pieces {
        if len == 0 {
            break;
        }
        if at >= piece.len() {
            at -= piece.len();
            continue;
        }
        let take = (piece.len() - at).min(len);
        out.push(&piece[at..at + take]);
        (at, len) = (0, len - take);
    }
    out
}

fn aad_prefix(key: &Key, kind: u8, raw_len: u64, desc: &[u8]) -> Vec<u8> {
    let k = key.as_str().as_bytes();
    let mut a = Vec::with_capacity(k.len() + 64);
    a.extend_from_slice(&(k.len() as u32).to_le_bytes());
    a.extend_from_slice(k);
    a.push(kind);
    a.extend_from_slice(&raw_len.to_le_bytes());
    a.extend_from_slice(desc);
    a
}

fn aad(base: &[u8], index: usize) -> Aad<Vec<u8>> {
    let mut a = base.to_vec();
    a.extend_from_slice(&(index as u64).to_le_bytes());
    Aad::from(a)
}

/// The chunk's nonce: the value's random 96-bit base with the index XORed into its last 4 bytes.
fn nonce(desc: &[u8], index: usize) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&desc[24..36]);
    for (b, i) in n[8..].iter_mut().zip((index as u32).to_le_bytes()) {
        *b ^= i;
    }
    Nonce::assume_unique_for_key(n)
}

/// Limits on what a decoder will allocate for one value.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// The largest raw (unfiltered) payload accepted, in bytes.
    pub max_raw_len: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_raw_len: 1 << 40,
        }
    }
}

/// Undoes the filters of a stored payload into `out`, which must be `raw_len` long;
/// on success every byte of `out` is written (it may start uninitialised).
///
/// `desc` is the frame's filter descriptor; `kind` and `out.len` come from
/// the (checksummed) header. Errors: [`Error::KeyRequired`],
/// [`Error::WrongKey`], and [`Error::Corrupt`] for anything that does not
/// check out — never wrong data. Returns the raw data's (verified) xxh3-64.
#[allow(clippy::too_many_arguments)]
pub(crate) fn undo_into(
    desc: &[u8],
    stored: &[u8],
    kind: u8,
    out: Dest,
    checksum: Checksum,
    key: &Key,
    location: &(impl std::fmt::Display + ?Sized),
    cipher_key: Option<&EncryptionKey>,
) -> Result<u64> {
    let corrupt = |reason: String| Error::corrupt(key, location, reason);
    if desc.len() != DESCRIPTOR_LEN || desc[0] != CHAIN_FORMAT {
        return Err(corrupt(format!(
            "unknown filter chain (format {}, {} bytes)",
            desc.first().copied().unwrap_or(0),
            desc.len()
        )));
    }
    let codec = desc[1];
    if codec > 3 {
        return Err(corrupt(format!("unknown codec {codec}")));
    }
    let encrypted = match desc[2] {
        0 => false,
        1 => true,
        other => return Err(corrupt(format!("unknown cipher {other}"))),
    };
    let chunk_size = u32::from_le_bytes([desc[4], desc[5], desc[6], desc[7]]) as usize;
    let count = u32::from_le_bytes([desc[8], desc[9], desc[10], desc[11]]) as usize;
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
        return Err(corrupt(format!("chunk size {chunk_size} out of range")));
    }
    if count != out.len.div_ceil(chunk_size) {
        return Err(corrupt(format!(
            "{count} chunks cannot hold {} bytes",
            out.len
        )));
    }
    let cipher = if encrypted {
        let k = cipher_key.ok_or_else(|| Error::KeyRequired {
            key: printable(key.as_str()),
            location: location.to_string(),
        })?;
        k.check_sealed_with(desc, key, location)?;
        Some(k)
    } else {
        None
    };
    let table_len = count
        .checked_mul(4)
        .filter(|&t| t <= stored.len())
        .ok_or_else(|| {
            corrupt(format!(
                "chunk table of {count} entries exceeds the {}-byte payload",
                stored.len()
            ))
        })?;
    let mut ranges = Vec::with_capacity(count);
    let mut at = table_len;
    for i in 0..count {
        let len = u32::from_le_bytes([
            stored[4 * i],
            stored[4 * i + 1],
            stored[4 * i + 2],
            stored[4 * i + 3],
        ]) as usize;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= stored.len())
            .ok_or_else(|| corrupt(format!("chunk {i} runs past the payload")))?;
        if encrypted && len < TAG_LEN {
            return Err(corrupt(format!("chunk {i} is shorter than its tag")));
        }
        ranges.push(at..end);
        at = end;
    }
    if at != stored.len() {
        return Err(corrupt(format!(
            "{} bytes after the last chunk",
            stored.len() - at
        )));
    }
    let aad_base = aad_prefix(key, kind, out.len as u64, desc);
    let raw_sum = u64::from_le_bytes([
        desc[36], desc[37], desc[38], desc[39], desc[40], desc[41], desc[42], desc[43],
    ]);
    // Encrypted and not compressed, every output byte is a plaintext byte
    // GCM authenticated, and `raw_sum` (in the descriptor, which is in every
    // chunk's associated data) is the writer's: hashing again proves nothing
    // (a sixth of an AES read). A codec in between gets checked, in case a
    // decoder does not give back what its encoder was given; and so does a
    // frame whose stored bytes were not hashed (`frame::verify_to_open`),
    // which this check covers end to end.
    let authenticated = cipher.is_some() && codec == 0;
    // Span checksums over chunks of whole spans are taken by each chunk's
    // task right after writing it, while it is in that core's cache: not
    // in a second pass over the whole output.
    let by_chunk = !authenticated && checksum.by_pieces(chunk_size);
    let sums = ranges
        .into_par_iter()
        .enumerate()
        .map_init(
            Contexts::default,
            |ctx, (i, range)| -> std::result::Result<Vec<u64>, String> {
                let sealed = &stored[range];
                // Chunk i's place in `out` (`count` chunks cover it exactly, checked above).
                let start = i * chunk_size;
                let len = chunk_size.min(out.len - start);
                let wrong_len = |n: usize| format!("chunk {i} holds {n} bytes, expected {len}");
                let auth_failed =
                    || format!("chunk {i} failed authentication (tampered, reordered or moved)");
                // SAFETY (every `unsafe` below): chunk i's range of `out` is
                // written by this task alone.
                let written: &[u8] = match (cipher, codec) {
                    // Encrypted, uncompressed: decrypt in place in the output, no temporary.
                    (Some(k), 0) => {
                        let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
                        if ct.len() != len {
                            return Err(wrong_len(ct.len()));
                        }
                        let dst = unsafe { out.copy_in(start, ct) };
                        let tag = Tag::try_from(tag).map_err(|_| auth_failed())?;
                        k.key
                            .open_in_place_separate_tag(
                                nonce(desc, i),
                                aad(&aad_base, i),
                                tag,
                                dst,
                                0..,
                            )
                            .map_err(|_| auth_failed())?
                    }
                    (Some(k), codec) => {
                        let mut opened = sealed.to_vec();
                        let plain = k
                            .key
                            .open_in_place(nonce(desc, i), aad(&aad_base, i), &mut opened)
                            .map_err(|_| auth_failed())?;
                        unsafe { decompress_in(codec, plain, out, start, len, ctx) }
                            .map_err(|e| format!("chunk {i}: {e}"))?
                    }
                    (None, 0) => {
                        if sealed.len() != len {
                            return Err(wrong_len(sealed.len()));
                        }
                        unsafe { out.copy_in(start, sealed) }
                    }
                    (None, codec) => unsafe { decompress_in(codec, sealed, out, start, len, ctx) }
                        .map_err(|e| format!("chunk {i}: {e}"))?,
                };
                Ok(if by_chunk {
                    Checksum::span_sums(written)
                } else {
                    Vec::new()
                })
            },
        )
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(corrupt)?;
    let sum = if authenticated {
        raw_sum
    } else if by_chunk {
        Checksum::of_span_sums(sums.concat().as_slice())
    } else {
        // SAFETY: every chunk task succeeded, so each wrote its whole range,
        // and the ranges cover `out`.
        checksum.of(unsafe { out.all() })
    };
    if sum != raw_sum {
        return Err(corrupt(
            "checksum of the data after undoing the filters does not match".into(),
        ));
    }
    Ok(raw_sum)
}

/// What a descriptor says, for people and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The codec actually used (`None`: stored uncompressed, also when compression did not pay).
    pub compression: Option<&'static str>,
    /// Whether the payload is encrypted.
    pub encrypted: bool,
    /// Number of chunks.
    pub chunks: u32,
}

/// Reads a filter descriptor (from [`crate::frame::Header::filters`]).
pub fn describe(desc: &[u8]) -> Option<Applied> {
    if desc.len() != DESCRIPTOR_LEN || desc[0] != CHAIN_FORMAT {
        return None;
    }
    Some(Applied {
        compression: match desc[1] {
            1 => Some("zstd"),
            2 => Some("lz4"),
            3 => Some("gzip"),
            _ => None,
        },
        encrypted: desc[2] == 1,
        chunks: u32::from_le_bytes([desc[8], desc[9], desc[10], desc[11]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            "zstd".parse::<Compression>().ok(),
            Some(Compression::Zstd(3))
        );
        assert_eq!(
            "zstd:19".parse::<Compression>().ok(),
            Some(Compression::Zstd(19))
        );
        assert_eq!("LZ4".parse::<Compression>().ok(), Some(Compression::Lz4));
        assert_eq!(
            "gzip:1".parse::<Compression>().ok(),
            Some(Compression::Gzip(1))
        );
        for bad in ["zstd:99", "zstd:x", "gzip:12", "brotli", "lz4:3", ""] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
        let key = Arc::new(EncryptionKey::from_bytes(&[7; 32]));
        let f = Filters::from_specs(Some("none"), Some("aes-256-gcm"), Some(key));
        assert!(f.is_ok_and(|f| f.compression.is_none() && f.encryption.is_some()));
        assert!(Filters::from_specs(None, Some("rot13"), None).is_err());
    }

    #[test]
    fn keys_come_from_the_environment_and_never_show() {
        let secret = "0123456789abcdef".repeat(4);
        let k = EncryptionKey::from_lookup(&|n| {
            (n == "SPILLPOOL_ENCRYPTION_KEY").then(|| secret.clone())
        });
        let k = k.ok().flatten().unwrap_or_else(|| panic!("no key"));
        assert!(!format!("{k:?}").contains("0123"));
        let bad = EncryptionKey::from_lookup(&|n| {
            (n == "SPILLPOOL_ENCRYPTION_KEY").then(|| "zz".repeat(32))
        });
        let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("SPILLPOOL_ENCRYPTION_KEY") && !msg.contains("zzzz"),
            "{msg}"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{secret}\n")).unwrap_or_else(|e| panic!("{e}"));
        let path = file.display().to_string();
        let from_file = EncryptionKey::from_lookup(&|n| {
            (n == "SPILLPOOL_ENCRYPTION_KEY_FILE").then(|| path.clone())
        });
        assert_eq!(from_file.ok().flatten().map(|f| f.id()), Some(k.id()));
        assert!(EncryptionKey::from_lookup(&|_| None).is_ok_and(|k| k.is_none()));
    }

    #[test]
    fn round_trips_every_combination_and_chunk_boundary() {
        let key = Key::new("k").unwrap_or_else(|e| panic!("{e}"));
        let ek = Arc::new(EncryptionKey::from_bytes(&[1; 32]));
        let text: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("row {} ", i % 977).into_bytes())
            .collect();
        for codec in [
            None,
            Some(Compression::Zstd(1)),
            Some(Compression::Lz4),
            Some(Compression::Gzip(1)),
        ] {
            for enc in [false, true] {
                for len in [
                    0usize,
                    1,
                    MIN_CHUNK,
                    MIN_CHUNK + 1,
                    3 * MIN_CHUNK,
                    text.len(),
                ] {
                    let mut f = Filters::none().with_chunk_size(MIN_CHUNK);
                    if let Some(c) = codec {
                        f = f.with_compression(c);
                    }
                    if enc {
                        f = f.with_encryption(Arc::clone(&ek));
                    }
                    let sum = xxhash_rust::xxh3::xxh3_64(&text[..len]);
                    let (desc, stored, stored_sum) = f
                        .apply(&[&text[..len]], sum, Checksum::Xxh3, 1, &key)
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(stored_sum, Checksum::Xxh3.of(stored.as_slice()));
                    // The same bytes in uneven pieces (a table's frame in
                    // parts) filter to the same stored bytes, nonce aside.
                    let third = (len / 3).max(len.min(7));
                    let cuts = [0, len.min(7), third, (third + 1).min(len), len];
                    let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
                    let (desc2, stored2, _) = f
                        .apply(&pieces, sum, Checksum::Xxh3, 1, &key)
                        .unwrap_or_else(|e| panic!("{e}"));
                    if !enc {
                        assert_eq!((&desc2, stored2.as_slice()), (&desc, stored.as_slice()));
                    }
                    for (desc, stored, how) in
                        [(&desc, &stored, "whole"), (&desc2, &stored2, "in pieces")]
                    {
                        let mut out = vec![0u8; len];
                        let back = undo_into(
                            desc,
                            stored.as_slice(),
                            1,
                            Dest::of_slice(&mut out),
                            Checksum::Xxh3,
                            &key,
                            "t",
                            Some(&ek),
                        )
                        .unwrap_or_else(|e| panic!("{codec:?} {enc} {len} {how}: {e}"));
                        assert_eq!(back, sum);
                        assert!(out == text[..len], "{codec:?} {enc} {len} {how}");
                    }
                }
            }
        }
    }

    /// Span checksums tallied by the writers of uneven ranges, in any
    /// order, match one pass over the whole buffer: ranges inside one span,
    /// across two, longer than a span, empty, and ending short of a span.
    #[test]
    fn span_tally_matches_a_pass_over_the_buffer() {
        let total = 3 * SPAN + SPAN / 2 + 5;
        let mut buf = vec![0u8; total];
        let cuts = [
            0,
            10,
            SPAN - 1,
            SPAN - 1,
            SPAN + 3,
            3 * SPAN + 1,
            3 * SPAN + 100,
            total,
        ];
        let ranges: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
        let tally = SpanTally::new(ranges.iter().copied(), total);
        let dest = Dest::of_slice(&mut buf);
        let src: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
        // Written and reported last range first.
        for &(start, len) in ranges.iter().rev() {
            // SAFETY: each range once, disjoint, within the buffer.
            unsafe {
                dest.copy_in(start, &src[start..start + len]);
                tally.wrote(dest, start, len);
            }
        }
        assert_eq!(tally.sum(), Checksum::Xxh3Spans.of(&src));
        assert_eq!(buf, src);
    }
}
