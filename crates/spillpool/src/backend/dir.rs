//! One file per key under one or more root directories: the storage behind
//! `file://` and `shm://`.
//!
//! A key maps to a flat file name: bytes outside `[A-Za-z0-9._-]` (and a
//! leading `.`) are written `%XX`, so no key can name `..`, a separator or a
//! file of ours (`.tmp`, which starts with a dot). Names longer than
//! [`CHUNK`] bytes are split into directories whose names end in `~` (a byte
//! the encoding always escapes), so they never collide with a value file.
//! Writes go to `ROOT/.tmp/` and are renamed into place; files are never
//! modified after that, which keeps every mmap of them valid.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use parking_lot::Mutex;

use super::Usage;
use super::faulty::{FaultOp, FaultPlan};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::key::Key;

/// Longest file or directory name component written (file systems allow 255).
const CHUNK: usize = 240;
const TMP_DIR: &str = ".tmp";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub(crate) struct DirStore {
    roots: Vec<PathBuf>,
    sync: bool,
    /// Injected failures and delays (tests).
    faults: Option<Arc<FaultPlan>>,
    /// Set by a failed fsync: after one, the kernel may have dropped dirty
    /// pages and cleared the error, so a later fsync proves nothing and
    /// writes are refused until the store is reopened.
    poisoned: Mutex<Option<String>>,
}

/// A frame written to a temporary file, not yet visible under its key.
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    parent: PathBuf,
}

impl Staged {
    /// Best effort: the temporary file holds nothing anyone can see.
    fn discard(&self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// The path components (relative to a root) that hold `key`.
fn components(key: &Key) -> Vec<String> {
    let mut name = String::with_capacity(key.as_str().len());
    for (i, &b) in key.as_str().as_bytes().iter().enumerate() {
        if is_safe(b) && !(i == 0 && b == b'.') {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    let mut parts: Vec<String> = Vec::new();
    let mut rest = name.as_str();
    while rest.len() > CHUNK {
        let (head, tail) = rest.split_at(CHUNK);
        parts.push(format!("{head}~"));
        rest = tail;
    }
    parts.push(rest.to_string());
    parts
}

/// Inverse of [`components`] on the concatenated name (chunk markers removed).
fn decode_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(name.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Removes temporary files left by processes that died mid-write (their
/// names start with the writer's pid). Files of live processes — other
/// writers sharing the directory — are left alone. Best effort.
fn remove_dead_writers_files(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes a frame's parts in order (a table's frame has a part per large
/// buffer, shared with the arrays rather than copied into one), in as few
/// `writev` calls as the parts allow (1,024 per call): the page cache gives
/// a write large folios only as large as the call, and mmap reads of the
/// file run at their speed (kernel 6.18, ext4: 64 MiB written in 64 KiB
/// calls reads back at 12 GB/s, in one call at 25). Measured against one
/// `write` per part, alternating (docs/BENCHMARKS.md, "Tables"): pool get
/// at random +35–70 %, `bench store` file writes 2×, reads +25–60 %.
fn write_parts(file: &mut File, frame: &Frame) -> std::io::Result<()> {
    use std::io::IoSlice;
    let mut slices: Vec<IoSlice<'_>> = frame
        .parts()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::write_io("create directory", path, e))
}

impl DirStore {
    /// Opens (creating if needed) a store over `roots`. `sync`: fsync on every put.
    pub(crate) fn open(roots: Vec<PathBuf>, sync: bool) -> Result<Self> {
        for root in &roots {
            let tmp = root.join(TMP_DIR);
            create_private_dir(&tmp)?;
            remove_dead_writers_files(&tmp);
        }
        Ok(DirStore {
            roots,
            sync,
            faults: None,
            poisoned: Mutex::new(None),
        })
    }

    pub(crate) fn set_faults(&mut self, plan: Arc<FaultPlan>) {
        self.faults = Some(plan);
    }

    /// Consults the fault plan, if any, before an operation.
    /// (The caller's error names the path.)
    fn fault(&self, op: FaultOp) -> std::io::Result<()> {
        match &self.faults {
            Some(plan) => plan.check(op),
            None => Ok(()),
        }
    }

    /// Refuses writes after a failed fsync.
    fn writable(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            None => Ok(()),
            Some(first) => Err(Error::Poisoned {
                tier: self
                    .roots
                    .first()
                    .map(|r| r.display().to_string())
                    .unwrap_or_default(),
                reason: format!(
                    "an fsync failed earlier ({first}), so data written since the last successful sync may not be on disk; \
                     check the disk, then reopen the backend"
                ),
            }),
        }
    }

    /// Runs an fsync-like call, poisoning the store if it fails.
    fn fsync(
        &self,
        what: &'static str,
        path: &Path,
        f: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<()> {
        match self.fault(FaultOp::Fsync).and_then(|()| f()) {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut poisoned = self.poisoned.lock();
                if poisoned.is_none() {
                    *poisoned = Some(format!("{what} {}: {e}", path.display()));
                }
                Err(Error::write_io(what, path, e))
            }
        }
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.fsync("fsync directory", path, || {
            File::open(path).and_then(|d| d.sync_all())
        })
    }

    pub(crate) fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    fn root_of(&self, key: &Key) -> &Path {
        let i = if self.roots.len() == 1 {
            0
        } else {
            (xxh3_64(key.as_str().as_bytes()) % self.roots.len() as u64) as usize
        };
        &self.roots[i]
    }

    /// The file that holds `key`.
    pub(crate) fn path_of(&self, key: &Key) -> PathBuf {
        let mut path = self.root_of(key).to_path_buf();
        path.extend(components(key));
        path
    }

    /// Writes `frame` to a new temporary file (synced when `self.sync`) and
    /// makes sure the target's directory exists.
    fn stage(&self, key: &Key, frame: &Frame, fsync: bool) -> Result<Staged> {
        self.writable()?;
        let root = self.root_of(key);
        let target = self.path_of(key);
        let tmp = root.join(TMP_DIR).join(format!(
            "{}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
            xxh3_64(key.as_str().as_bytes())
        ));
        let staged = Staged {
            parent: target.parent().unwrap_or(root).to_path_buf(),
            tmp,
            target,
        };
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&staged.tmp)
                .map_err(|e| Error::write_io("create", &staged.tmp, e))?;
            self.fault(FaultOp::Write)
                .map_err(|e| Error::write_io("write", &staged.tmp, e))?;
            write_parts(&mut file, frame).map_err(|e| Error::write_io("write", &staged.tmp, e))?;
            if fsync {
                self.fsync("fsync", &staged.tmp, || file.sync_data())?;
            }
            if staged.parent != root {
                create_private_dir(&staged.parent)?;
            }
            Ok(())
        })();
        match written {
            Ok(()) => Ok(staged),
            Err(e) => {
                staged.discard();
                Err(e)
            }
        }
    }

    pub(crate) fn put(&self, key: &Key, frame: &Frame) -> Result<()> {
        let staged = self.stage(key, frame, self.sync)?;
        let renamed = self
            .fault(FaultOp::Rename)
            .and_then(|()| fs::rename(&staged.tmp, &staged.target));
        if let Err(e) = renamed {
            staged.discard();
            return Err(Error::write_io("rename into place", &staged.target, e));
        }
        if self.sync {
            self.sync_dir(&staged.parent)?;
        }
        Ok(())
    }

    /// Publishes with `link`, which (unlike `rename`) fails when the target exists.
    pub(crate) fn put_new(&self, key: &Key, frame: &Frame) -> Result<bool> {
        let staged = self.stage(key, frame, self.sync)?;
        let linked = self
            .fault(FaultOp::Rename)
            .and_then(|()| fs::hard_link(&staged.tmp, &staged.target));
        staged.discard();
        match linked {
            Ok(()) => {
                if self.sync {
                    self.sync_dir(&staged.parent)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::write_io("link into place", &staged.target, e)),
        }
    }

    /// Stages every frame (unsynced), makes them durable with one `syncfs`
    /// per root, publishes them all, and syncs again for the directory
    /// entries: two file-system syncs per batch instead of two per value.
    fn stage_all(&self, items: &[(Key, Frame)]) -> Result<Vec<Staged>> {
        let mut staged = Vec::with_capacity(items.len());
        for (key, frame) in items {
            match self.stage(key, frame, false) {
                Ok(s) => staged.push(s),
                Err(e) => {
                    staged.iter().for_each(Staged::discard);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.sync_roots() {
            staged.iter().for_each(Staged::discard);
            return Err(e);
        }
        Ok(staged)
    }

    /// `syncfs` on every root's file system (when this store syncs).
    fn sync_roots(&self) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        for root in &self.roots {
            self.fsync("syncfs", root, || {
                let dir = File::open(root)?;
                rustix::fs::syncfs(&dir).map_err(std::io::Error::from)
            })?;
        }
        Ok(())
    }

    pub(crate) fn put_batch(&self, items: &[(Key, Frame)]) -> Result<()> {
        let staged = self.stage_all(items)?;
        for (i, s) in staged.iter().enumerate() {
            let renamed = self
                .fault(FaultOp::Rename)
                .and_then(|()| fs::rename(&s.tmp, &s.target));
            if let Err(e) = renamed {
                staged[i..].iter().for_each(Staged::discard);
                return Err(Error::write_io("rename into place", &s.target, e));
            }
        }
        self.sync_roots()
    }

    pub(crate) fn put_new_batch(&self, items: &[(Key, Frame)]) -> Result<Vec<bool>> {
        let staged = self.stage_all(items)?;
        let mut stored = Vec::with_capacity(staged.len());
        for (i, s) in staged.iter().enumerate() {
            let linked = self
                .fault(FaultOp::Rename)
                .and_then(|()| fs::hard_link(&s.tmp, &s.target));
            s.discard();
            match linked {
                Ok(()) => stored.push(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => stored.push(false),
                Err(e) => {
                    staged[i..].iter().for_each(Staged::discard);
                    return Err(Error::write_io("link into place", &s.target, e));
                }
            }
        }
        self.sync_roots()?;
        Ok(stored)
    }

    pub(crate) fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let path = self.path_of(key);
        self.fault(FaultOp::Read)
            .map_err(|e| Error::io("open", &path, e))?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        if len == 0 {
            return Ok(Some(Bytes::new()));
        }
        // SAFETY: files are published by rename and never written again, so the
        // mapping's contents cannot change under us (see the module docs).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("mmap", &path, e))?;
        Ok(Some(Bytes::from_owner(map)))
    }

    pub(crate) fn delete(&self, key: &Key) -> Result<bool> {
        self.writable()?;
        let path = self.path_of(key);
        let removed = self
            .fault(FaultOp::Delete)
            .and_then(|()| fs::remove_file(&path));
        match removed {
            Ok(()) => {
                if self.sync {
                    self.sync_dir(path.parent().unwrap_or(self.root_of(key)))?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }

    /// Calls `f(key, size)` for every stored key whose name starts with `prefix`.
    fn walk(&self, prefix: &str, f: &mut dyn FnMut(Key, u64)) -> Result<()> {
        for root in &self.roots {
            walk_dir(root, root, String::new(), prefix, f)?;
        }
        Ok(())
    }

    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        let mut keys = Vec::new();
        self.walk(prefix, &mut |k, _| keys.push(k))?;
        keys.sort();
        Ok(keys)
    }

    pub(crate) fn usage(&self) -> Result<Usage> {
        let mut usage = Usage::default();
        self.walk("", &mut |_, size| {
            usage.keys += 1;
            usage.bytes += size;
        })?;
        Ok(usage)
    }
}

fn walk_dir(
    root: &Path,
    dir: &Path,
    name_so_far: String,
    prefix: &str,
    f: &mut dyn FnMut(Key, u64),
) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        let file_name = entry.file_name();
        let Some(part) = file_name.to_str() else {
            continue;
        };
        if dir == root && part.starts_with('.') {
            continue; // our temporary directory and lock files
        }
        let file_type = entry
            .file_type()
            .map_err(|e| Error::io("stat", entry.path(), e))?;
        if let Some(chunk) = part.strip_suffix('~') {
            if file_type.is_dir() {
                walk_dir(
                    root,
                    &entry.path(),
                    format!("{name_so_far}{chunk}"),
                    prefix,
                    f,
                )?;
            }
            continue;
        }
        if !file_type.is_file() {
            continue;
        }
        // Files that are not encoded keys (placed there by someone else) are not ours to list.
        let Some(key) = decode_name(&format!("{name_so_far}{part}")).and_then(|k| Key::new(k).ok())
        else {
            continue;
        };
        if key.as_str().starts_with(prefix) {
            let size = entry
                .metadata()
                .map_err(|e| Error::io("stat", entry.path(), e))?
                .len();
            f(key, size);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn names_round_trip_and_never_escape() {
        let long = format!("{}tail", "ü~%/".repeat(150));
        for k in [
            "a",
            ".hidden",
            "a/b",
            "a/.b",
            "x~",
            "%41",
            "sp ace",
            long.as_str(),
        ] {
            let parts = components(&key(k));
            assert!(
                parts
                    .iter()
                    .all(|p| p.len() <= CHUNK + 1 && !p.contains('/') && p != ".." && p != ".")
            );
            assert!(!parts[0].starts_with('.'), "{k}");
            let (last, dirs) = parts.split_last().unwrap_or_else(|| panic!("no parts"));
            assert!(dirs.iter().all(|d| d.ends_with('~')) && !last.ends_with('~'));
            let joined: String = dirs
                .iter()
                .map(|d| d.trim_end_matches('~'))
                .chain([last.as_str()])
                .collect();
            assert_eq!(decode_name(&joined).as_deref(), Some(k));
        }
    }

    #[test]
    fn a_frame_in_parts_is_stored_as_its_joined_bytes() {
        use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let rows = 40_000;
        let batch = RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(Float64Array::from_iter_values((0..rows).map(f64::from))) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("row {i}")),
                )) as ArrayRef,
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let value = crate::Value::from(batch);
        let frame = crate::frame::encode(&value).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            frame.parts().count() > 2,
            "a table this size has shared parts"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            DirStore::open(vec![dir.path().to_path_buf()], false).unwrap_or_else(|e| panic!("{e}"));
        store
            .put(&key("t"), &frame)
            .unwrap_or_else(|e| panic!("{e}"));
        let stored = store
            .get(&key("t"))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("missing"));
        assert_eq!(stored, frame.to_bytes());
        let back =
            crate::frame::decode(stored, &key("t"), "test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, value);
    }
}
