//! Any bytes given to the frame and chunk decoder: an error or a value, never
//! a panic, a hang or an allocation past the limit.
//!
//! arrow-ipc 59 panics on some malformed schemas (its flatbuffer-to-schema
//! converter uses `unimplemented!`/`panic!`); `frame::decode_with` contains
//! those with `catch_unwind`, which is the guarantee tested here: libFuzzer's
//! abort-on-any-panic hook is replaced by a silent one, so a panic that
//! escapes `decode_with` still aborts (libfuzzer-sys catches it), while one
//! contained inside it becomes the `Corrupt` error it is meant to be.
//!
//! The first input byte picks a mode: odd means "recompute both checksums
//! first", so that the fuzzer gets past them into the filter chunks and the
//! Arrow IPC decoder instead of stopping at a checksum mismatch.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use spillpool::filter::{DecodeLimits, EncryptionKey};
use spillpool::{Key, frame};
use spillpool::conformance::reseal;

fn key() -> &'static (Key, Arc<EncryptionKey>) {
    static K: OnceLock<(Key, Arc<EncryptionKey>)> = OnceLock::new();
    K.get_or_init(|| {
        let k = Key::new("fuzz").unwrap_or_else(|_| unreachable!());
        (k, Arc::new(EncryptionKey::from_bytes(&[7; 32])))
    })
}

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut frame_bytes = rest.to_vec();
    if mode & 1 == 1 {
        reseal(&mut frame_bytes);
    }
    let (k, ek) = key();
    // 16 MiB: whatever a frame claims, the decoder allocates no more.
    let limits = DecodeLimits { max_raw_len: 16 << 20 };
    let _ = frame::decode_with(bytes::Bytes::from(frame_bytes), k, "fuzz", Some(ek), limits);
});
