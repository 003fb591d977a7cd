//! Fault injection: a plan of failures and delays, and a backend wrapper
//! that follows it. For testing what callers do when storage fails.
//!
//! ```
//! use std::sync::Arc;
//! use spillpool::backend::{FaultOp, FaultPlan, FaultyBackend};
//! use spillpool::{open, Backend, BackendExt, Key, Value};
//!
//! let plan = Arc::new(FaultPlan::new().fail_nth(FaultOp::Write, 2));
//! let b = FaultyBackend::new(open("mem://").unwrap(), Arc::clone(&plan));
//! let k = Key::new("k").unwrap();
//! assert!(b.put_value(&k, &Value::from(b"one".to_vec())).is_ok());
//! assert!(b.put_value(&k, &Value::from(b"two".to_vec())).is_err()); // the 2nd write
//! assert_eq!(b.fetch_value(&k).unwrap().as_blob().unwrap().as_ref(), b"one");
//! assert_eq!(plan.injected(), 1);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{Backend, Usage};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::key::Key;

/// An operation a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// A read (`get`).
    Read,
    /// A write: `put`, `put_new`, a batch, or writing a file's bytes.
    Write,
    /// An fsync of a file or directory, or a `syncfs` (file backends only).
    Fsync,
    /// Publishing a file by rename or link (file backends only).
    Rename,
    /// A delete.
    Delete,
}

const OPS: usize = 5;

impl FaultOp {
    fn index(self) -> usize {
        self as usize
    }
    fn name(self) -> &'static str {
        match self {
            FaultOp::Read => "read",
            FaultOp::Write => "write",
            FaultOp::Fsync => "fsync",
            FaultOp::Rename => "rename",
            FaultOp::Delete => "delete",
        }
    }
}

/// Which operations fail, and how long each takes. Shared (through an
/// `Arc`) by the wrapper and the file backends that consult it.
#[derive(Debug, Default)]
pub struct FaultPlan {
    counts: [AtomicU64; OPS],
    rules: Mutex<Vec<Rule>>,
    latency: Mutex<Option<Duration>>,
    disabled: AtomicBool,
    /// Per operation: fail every one (a dead disk), whatever the rules say.
    dead: [AtomicBool; OPS],
    injected: AtomicU64,
    rng: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Fail the Nth operation of this kind (1-based).
    Nth(FaultOp, u64),
    /// Fail every Nth operation of this kind.
    Every(FaultOp, u64),
    /// Fail each operation of this kind with probability `per_million` / 1e6.
    Random(FaultOp, u32),
}

impl FaultPlan {
    /// A plan that injects nothing yet.
    pub fn new() -> Self {
        FaultPlan {
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            ..FaultPlan::default()
        }
    }

    /// Fails the `n`th operation of kind `op` (counting from 1).
    pub fn fail_nth(self, op: FaultOp, n: u64) -> Self {
        self.rules.lock().push(Rule::Nth(op, n));
        self
    }

    /// Fails every `n`th operation of kind `op`.
    pub fn fail_every(self, op: FaultOp, n: u64) -> Self {
        self.rules.lock().push(Rule::Every(op, n.max(1)));
        self
    }

    /// Fails operations of kind `op` at random with probability `p`, from `seed`.
    pub fn fail_randomly(self, op: FaultOp, p: f64, seed: u64) -> Self {
        // Spread small seeds: xorshift's first outputs from a small state are small.
        let mixed = (seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0x2545_F491_4F6C_DD1D);
        self.rng.store(mixed | 1, Ordering::Relaxed);
        let per_million = (p.clamp(0.0, 1.0) * 1e6) as u32;
        self.rules.lock().push(Rule::Random(op, per_million));
        self
    }

    /// Delays every operation by `latency`.
    pub fn with_latency(self, latency: Duration) -> Self {
        *self.latency.lock() = Some(latency);
        self
    }

    /// Stops (or resumes) injecting; counting goes on.
    pub fn set_enabled(&self, enabled: bool) {
        self.disabled.store(!enabled, Ordering::SeqCst);
    }

    /// Fails every operation of kind `op` from now on (`false`: stops that).
    pub fn fail_all(&self, op: FaultOp, on: bool) {
        self.dead[op.index()].store(on, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Operations of kind `op` seen so far.
    pub fn count(&self, op: FaultOp) -> u64 {
        self.counts[op.index()].load(Ordering::SeqCst)
    }

    /// Counts an operation of kind `op` and fails it if the plan says so
    /// (the caller's error names what the operation was on).
    pub fn check(&self, op: FaultOp) -> std::io::Result<()> {
        let n = self.counts[op.index()].fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(latency) = *self.latency.lock() {
            std::thread::sleep(latency);
        }
        if self.disabled.load(Ordering::SeqCst) {
            return Ok(());
        }
        let fail = self.dead[op.index()].load(Ordering::SeqCst)
            || self.rules.lock().iter().any(|r| match *r {
                Rule::Nth(o, k) => o == op && k == n,
                Rule::Every(o, k) => o == op && n.is_multiple_of(k),
                Rule::Random(o, per_million) => {
                    o == op && self.next_random() % 1_000_000 < u64::from(per_million)
                }
            });
        if fail {
            let id = self.injected.fetch_add(1, Ordering::SeqCst) + 1;
            return Err(std::io::Error::other(format!(
                "injected {} fault #{id} ({} number {n})",
                op.name(),
                op.name()
            )));
        }
        Ok(())
    }

    fn next_random(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // One draw per caller, even from many threads at once.
        let prev = self
            .rng
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        step(prev)
    }
}

/// A backend that fails and delays operations as its [`FaultPlan`] says,
/// before they reach the wrapped backend (a failed operation has no effect).
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: Arc<FaultPlan>,
}

impl FaultyBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, plan: Arc<FaultPlan>) -> Self {
        FaultyBackend { inner, plan }
    }

    fn check(&self, op: FaultOp, key: Option<&Key>) -> Result<()> {
        let what = key.map_or_else(|| self.inner.to_string(), |k| self.inner.location(k));
        self.plan
            .check(op)
            .map_err(|e| Error::io("injected fault", what, e))
    }
}

impl fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyBackend({:?})", self.inner)
    }
}

impl fmt::Display for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl Backend for FaultyBackend {
    fn put(&self, key: &Key, frame: Frame) -> Result<()> {
        self.check(FaultOp::Write, Some(key))?;
        self.inner.put(key, frame)
    }
    fn put_new(&self, key: &Key, frame: Frame) -> Result<bool> {
        self.check(FaultOp::Write, Some(key))?;
        self.inner.put_new(key, frame)
    }
    fn put_batch(&self, items: Vec<(Key, Frame)>) -> Result<()> {
        self.check(FaultOp::Write, items.first().map(|i| &i.0))?;
        self.inner.put_batch(items)
    }
    fn put_new_batch(&self, items: Vec<(Key, Frame)>) -> Result<Vec<bool>> {
        self.check(FaultOp::Write, items.first().map(|i| &i.0))?;
        self.inner.put_new_batch(items)
    }
    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.check(FaultOp::Read, Some(key))?;
        self.inner.get(key)
    }
    fn delete(&self, key: &Key) -> Result<bool> {
        self.check(FaultOp::Delete, Some(key))?;
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        self.check(FaultOp::Read, None)?;
        self.inner.list(prefix)
    }
    fn usage(&self) -> Result<Usage> {
        self.inner.usage()
    }
    fn location(&self, key: &Key) -> String {
        self.inner.location(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fail_what_they_say() {
        let plan = FaultPlan::new()
            .fail_nth(FaultOp::Read, 3)
            .fail_every(FaultOp::Delete, 4)
            .fail_randomly(FaultOp::Write, 0.1, 77);
        let reads: Vec<bool> = (0..5).map(|_| plan.check(FaultOp::Read).is_err()).collect();
        assert_eq!(reads, [false, false, true, false, false]);
        let deletes = (0..100)
            .filter(|_| plan.check(FaultOp::Delete).is_err())
            .count();
        assert_eq!(deletes, 25);
        let writes = (0..10_000)
            .filter(|_| plan.check(FaultOp::Write).is_err())
            .count();
        assert!(
            (800..1200).contains(&writes),
            "{writes} of 10,000 at p = 0.1"
        );
        assert_eq!(plan.injected(), 1 + 25 + writes as u64);
        plan.set_enabled(false);
        assert!(plan.check(FaultOp::Read).is_ok() && plan.count(FaultOp::Read) == 6);
        plan.set_enabled(true);
        plan.fail_all(FaultOp::Fsync, true);
        assert!(plan.check(FaultOp::Fsync).is_err() && plan.check(FaultOp::Fsync).is_err());
    }
}
