//! Access stamps for eviction order.

use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::Padded;

/// Stamps accesses so that a later access has a larger stamp.
///
/// A shared counter bumped by every `get` makes the stamps exact but puts
/// one cache line under every thread's read-modify-write: two threads
/// getting different values then run no faster than one. Where the CPU has
/// an invariant time-stamp counter (constant rate, synchronised across
/// cores; x86-64 CPUID 0x8000_0007 EDX bit 8) the stamp is the TSC instead:
/// ~10 ns and nothing shared. Elsewhere the counter is used.
#[derive(Debug)]
pub(crate) struct Clock {
    counter: Padded<AtomicU64>,
    tsc: bool,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            counter: Padded(AtomicU64::new(1)),
            tsc: invariant_tsc(),
        }
    }

    /// A stamp larger than any this thread took before (and, up to the
    /// TSC's cross-core skew of nanoseconds, than any other thread's).
    pub fn now(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if self.tsc {
            // SAFETY: RDTSC has no preconditions; `tsc` says it is invariant.
            return unsafe { std::arch::x86_64::_rdtsc() };
        }
        self.counter.0.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid` is safe on newer toolchains, unsafe on older ones
fn invariant_tsc() -> bool {
    use std::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 0x8000_0000 gives the
    // highest extended leaf, checked before asking for 0x8000_0007.
    let max = unsafe { __cpuid(0x8000_0000) }.eax;
    max >= 0x8000_0007 && unsafe { __cpuid(0x8000_0007) }.edx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn invariant_tsc() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_increase_on_one_thread() {
        let clock = Clock::new();
        let mut last = clock.now();
        for _ in 0..10_000 {
            let now = clock.now();
            assert!(
                now > last || (clock.tsc && now >= last),
                "{now} after {last}"
            );
            last = now;
        }
    }

    #[test]
    fn stamps_follow_synchronisation_between_threads() {
        let clock = Clock::new();
        let before = clock.now();
        let other = std::thread::scope(|s| s.spawn(|| clock.now()).join());
        let other = other.unwrap_or_else(|_| panic!("thread panicked"));
        assert!(other > before);
        assert!(clock.now() > other);
    }
}
