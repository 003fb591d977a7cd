//! `spillpool bench filters`: what each filter costs, beside the codecs called directly.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt8Array};
use clap::Args;
use rayon::prelude::*;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use spillpool::filter::{Compression, DecodeLimits, EncryptionKey, Filters};
use spillpool::frame;
use spillpool::{Key, Table, Value, format_size, parse_size};

use crate::bench::{Sample, median, report, xorshift};

#[derive(Args, Debug)]
pub struct FiltersBench {
    /// Size of each data set (as an Arrow table in memory).
    #[arg(long, default_value = "128MiB")]
    size: String,
    /// Repeats of every measurement (min / median / max are reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also write every measurement here as CSV.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// Random float64 columns: incompressible.
fn random_floats(bytes: usize) -> Result<Table> {
    let rows = bytes / 32;
    let mut s = 0x1234_5678_9abc_def1u64;
    let cols: Vec<(String, ArrayRef)> = (0..4)
        .map(|c| {
            let a: ArrayRef =
                Arc::new(Float64Array::from_iter_values((0..rows).map(|_| {
                    f64::from_bits((xorshift(&mut s) >> 12) | 0x3FF0_0000_0000_0000)
                })));
            (format!("f{c}"), a)
        })
        .collect();
    Ok(Table::from(RecordBatch::try_from_iter(cols)?))
}

/// A categorical table like the MemPool.jl blog's: four strings and a random byte.
fn categorical(bytes: usize) -> Result<Table> {
    let rows = bytes / 10;
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let names: ArrayRef =
        Arc::new(StringArray::from_iter_values((0..rows).map(|_| {
            ["alpha", "beta", "delta", "eta"][(xorshift(&mut s) % 4) as usize]
        })));
    let bytes: ArrayRef = Arc::new(UInt8Array::from_iter_values(
        (0..rows).map(|_| xorshift(&mut s) as u8),
    ));
    Ok(Table::from(RecordBatch::try_from_iter([
        ("name", names),
        ("x", bytes),
    ])?))
}

struct Config {
    name: &'static str,
    compression: Option<Compression>,
    encrypt: bool,
}

const CONFIGS: [Config; 6] = [
    Config {
        name: "zstd:1",
        compression: Some(Compression::Zstd(1)),
        encrypt: false,
    },
    Config {
        name: "zstd:3",
        compression: Some(Compression::Zstd(3)),
        encrypt: false,
    },
    Config {
        name: "lz4",
        compression: Some(Compression::Lz4),
        encrypt: false,
    },
    Config {
        name: "gzip:6",
        compression: Some(Compression::Gzip(6)),
        encrypt: false,
    },
    Config {
        name: "aes-256-gcm",
        compression: None,
        encrypt: true,
    },
    Config {
        name: "zstd:3+aes-256-gcm",
        compression: Some(Compression::Zstd(3)),
        encrypt: true,
    },
];

/// The codec and cipher alone on 1 MiB chunks, on one core or on every core
/// at once (rayon): returns (write s, read s). The one-core speed × cores is
/// the ideal; the all-core run shows what this machine's memory lets the
/// codec itself reach when every core runs it.
fn direct(payload: &[u8], c: &Config, all_cores: bool) -> Result<(f64, f64)> {
    const CHUNK: usize = 1 << 20;
    let cipher = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &[7u8; 32]).map_err(|_| anyhow::anyhow!("aes key"))?,
    );
    let start = Instant::now();
    let sealed: Vec<Vec<u8>> = if all_cores {
        payload
            .par_chunks(CHUNK)
            .map(|chunk| seal_chunk(chunk, c, &cipher))
            .collect::<Result<_>>()?
    } else {
        payload
            .chunks(CHUNK)
            .map(|chunk| seal_chunk(chunk, c, &cipher))
            .collect::<Result<_>>()?
    };
    let write = start.elapsed().as_secs_f64();
    let raw_len = |i: usize| (payload.len() - i * CHUNK).min(CHUNK);
    // Each core decodes into its own 1 MiB buffer, kept in its cache.
    let start = Instant::now();
    if all_cores {
        sealed.into_par_iter().enumerate().try_for_each_init(
            || vec![0u8; CHUNK],
            |out, (i, data)| open_chunk(data, &mut out[..raw_len(i)], c, &cipher),
        )?;
    } else {
        let mut out = vec![0u8; CHUNK];
        for (i, data) in sealed.into_iter().enumerate() {
            open_chunk(data, &mut out[..raw_len(i)], c, &cipher)?;
        }
    }
    Ok((write, start.elapsed().as_secs_f64()))
}

/// One chunk through the codec, then the cipher, as a caller of them would.
fn seal_chunk(chunk: &[u8], c: &Config, cipher: &LessSafeKey) -> Result<Vec<u8>> {
    let mut data = match c.compression {
        Some(Compression::Zstd(l)) => zstd::bulk::compress(chunk, l)?,
        Some(Compression::Lz4) => lz4_flex::block::compress(chunk),
        Some(Compression::Gzip(l)) => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(l));
            e.write_all(chunk)?;
            e.finish()?
        }
        None => {
            // Room for the tag: appending it must not move the chunk again.
            let mut v = Vec::with_capacity(chunk.len() + AES_256_GCM.tag_len());
            v.extend_from_slice(chunk);
            v
        }
    };
    if c.encrypt {
        cipher
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::empty(),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("seal"))?;
    }
    Ok(data)
}

/// Undoes [`seal_chunk`] into `out` (the chunk's raw length).
fn open_chunk(mut data: Vec<u8>, out: &mut [u8], c: &Config, cipher: &LessSafeKey) -> Result<()> {
    let body: &[u8] = if c.encrypt {
        cipher
            .open_in_place(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::empty(),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("open"))?
    } else {
        &data
    };
    match c.compression {
        Some(Compression::Zstd(_)) => {
            zstd::bulk::decompress_to_buffer(body, out)?;
        }
        Some(Compression::Lz4) => {
            lz4_flex::block::decompress_into(body, out)?;
        }
        Some(Compression::Gzip(_)) => {
            use std::io::Read;
            flate2::read::GzDecoder::new(body).read_exact(out)?;
        }
        None => out.copy_from_slice(&body[..out.len()]),
    }
    Ok(())
}

/// Seconds of one xxh3-64 pass over `bytes` on one core: the frame format
/// checksums a whole payload, so each such pass is serial.
fn hash_pass(bytes: &[u8]) -> f64 {
    let start = Instant::now();
    std::hint::black_box(xxhash_rust::xxh3::xxh3_64(bytes));
    start.elapsed().as_secs_f64()
}

/// Seconds to copy `bytes` into `into` (the same length, reused) on every
/// core at once, 1 MiB per task: the memory's own limit for a filter
/// whose work per byte is a copy (a value stored as it is).
fn copy_all(bytes: &[u8], into: &mut [u8]) -> f64 {
    let start = Instant::now();
    into.par_chunks_mut(1 << 20)
        .zip(bytes.par_chunks(1 << 20))
        .for_each(|(to, from)| to.copy_from_slice(from));
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&into);
    secs
}

/// Seconds to allocate and fill `n` bytes of fresh memory: a cost every
/// filter path pays for its output, and one this VM makes high.
fn fresh_fill(n: usize) -> f64 {
    let start = Instant::now();
    let mut buf = arrow_buffer::MutableBuffer::from_len_zeroed(n);
    buf.as_slice_mut().fill(1);
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&buf);
    secs
}

pub fn run(a: FiltersBench) -> Result<()> {
    let size = parse_size(&a.size, "--size")? as usize;
    let cores = rayon::current_num_threads();
    let key = Key::new("bench/filters")?;
    let secret = Arc::new(EncryptionKey::from_bytes(&[7u8; 32]));
    let mut samples: Vec<Sample> = Vec::new();
    let mut ratios: Vec<(String, f64)> = Vec::new();
    println!(
        "bench filters: {} per data set, {cores} cores, {} repeats (filter path vs codec called directly × cores)",
        format_size(size as u64),
        a.repeats
    );
    for (set, table) in [
        ("random-f64", random_floats(size)?),
        ("categorical", categorical(size)?),
    ] {
        let plain = frame::encode(&Value::Table(table))?;
        let plain_bytes = plain.to_bytes();
        let header = frame::verify(&plain_bytes, &key, "bench")?;
        let payload = plain_bytes.slice(header.payload_offset..);
        let bytes = payload.len() as u64;
        let mut copy_to = vec![1u8; payload.len()];
        for c in &CONFIGS {
            let mut f = Filters::none();
            if let Some(comp) = c.compression {
                f = f.with_compression(comp);
            }
            if c.encrypt {
                f = f.with_encryption(Arc::clone(&secret));
            }
            for repeat in 0..=a.repeats {
                let start = Instant::now();
                let stored = frame::refilter(plain.clone(), &f, &key, "bench")?;
                let write = start.elapsed().as_secs_f64();
                let stored = stored.to_bytes();
                let start = Instant::now();
                let back = frame::unfilter(
                    stored.clone(),
                    &key,
                    "bench",
                    f.key().map(|k| &**k),
                    DecodeLimits::default(),
                )?;
                let read = start.elapsed().as_secs_f64();
                if back.len() != plain_bytes.len() {
                    anyhow::bail!(
                        "{set} {}: read back {} bytes, wrote {}",
                        c.name,
                        back.len(),
                        plain_bytes.len()
                    );
                }
                let (dw, dr) = direct(&payload, c, false)?;
                let (aw, ar) = direct(&payload, c, true)?;
                let fill = fresh_fill(payload.len());
                let hash = hash_pass(&payload);
                let copy = copy_all(&payload, &mut copy_to);
                if repeat == 0 {
                    ratios.push((
                        format!("{set}/{}", c.name),
                        stored.len() as f64 / bytes as f64,
                    ));
                    continue; // warm-up
                }
                for (storage, op, seconds) in [
                    (format!("{set}/{}", c.name), "write", write),
                    (format!("{set}/{}", c.name), "read", read),
                    (format!("{set}/{}/direct-1core", c.name), "write", dw),
                    (format!("{set}/{}/direct-1core", c.name), "read", dr),
                    (format!("{set}/{}/direct-all", c.name), "write", aw),
                    (format!("{set}/{}/direct-all", c.name), "read", ar),
                    ("hw-memory".to_string(), "fresh-fill", fill),
                    ("hw-memory".to_string(), "xxh3-1core", hash),
                    ("hw-memory".to_string(), "copy-all", copy),
                ] {
                    samples.push(Sample {
                        storage,
                        op,
                        bytes,
                        repeat,
                        seconds,
                    });
                }
            }
        }
    }
    report(&samples, "filters", a.out.as_deref())?;
    println!();
    // Limits: the codec called directly, one core's speed × cores and on
    // every core at once; and filling the output's fresh memory, which the
    // filter path cannot avoid.
    let fill = median(&samples, "hw-memory", "fresh-fill");
    let hash = median(&samples, "hw-memory", "xxh3-1core");
    let copy = median(&samples, "hw-memory", "copy-all");
    println!(
        "fresh memory fill: {fill:.0} MB/s, xxh3 on one core: {hash:.0} MB/s, copy on all cores: {copy:.0} MB/s (medians)"
    );
    // The format's floor: the codec on every core, the output's memory, and
    // the checksums the format defines (the stored bytes', written or
    // verified; on reads also the plain data's, unless GCM authenticated
    // every plain byte), by span on every core at these sizes.
    let spans = size >= frame::Checksum::SPANS_FROM;
    let hash = if spans { hash * cores as f64 } else { hash };
    // write/codec: against the one-core codec × cores (the ideal);
    // write/all: against the codec run on every core at once in this
    // machine's memory (what any caller of it gets here).
    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "storage",
        "stored/raw",
        "write/codec",
        "read/codec",
        "write/all",
        "read/all",
        "write/floor",
        "read/floor"
    );
    for (name, ratio) in ratios {
        let w = median(&samples, &name, "write");
        let r = median(&samples, &name, "read");
        let cw = median(&samples, &format!("{name}/direct-1core"), "write") * cores as f64;
        let cr = median(&samples, &format!("{name}/direct-1core"), "read") * cores as f64;
        let aw = median(&samples, &format!("{name}/direct-all"), "write");
        let ar = median(&samples, &format!("{name}/direct-all"), "read");
        let authenticated = name.ends_with("/aes-256-gcm") || ratio >= 1.0 && name.contains("aes");
        let raw_checks = if authenticated { 0.0 } else { 1.0 };
        let floor_w = 1.0 / (1.0 / cw + 1.0 / fill + ratio / hash);
        let floor_r = 1.0 / (1.0 / cr + 1.0 / fill + (ratio + raw_checks) / hash);
        println!(
            "{name:<28} {ratio:>10.3} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
            w / cw,
            r / cr,
            w / aw,
            r / ar,
            w / floor_w,
            r / floor_r
        );
    }
    Ok(())
}
