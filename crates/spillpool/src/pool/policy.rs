//! Eviction policies: which resident values leave memory first.

use std::fmt::Debug;

/// A resident, unpinned value the pool could evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The value's id.
    pub id: u64,
    /// Logical time of its last `put` or `get` (larger is more recent).
    pub last_access: u64,
    /// Bytes it holds in memory.
    pub size: u64,
    /// Whether a disk copy exists already (evicting it then costs no write).
    pub on_disk: bool,
}

/// Orders eviction candidates, first to leave memory first.
///
/// The pool keeps recency itself (a clock stamped on every access),
/// so a policy holds no state and the `get` hot path takes no policy lock.
///
/// ```
/// use spillpool::pool::{Candidate, EvictionPolicy, Lru};
/// let mut c = vec![
///     Candidate { id: 1, last_access: 9, size: 1, on_disk: false },
///     Candidate { id: 2, last_access: 3, size: 1, on_disk: false },
/// ];
/// Lru.order(&mut c);
/// assert_eq!(c[0].id, 2); // least recently used first
/// ```
pub trait EvictionPolicy: Debug + Send + Sync + 'static {
    /// The policy's name, as in `SPILLPOOL_POLICY`.
    fn name(&self) -> &'static str;
    /// Sorts `candidates` so that the first should be evicted first.
    fn order(&self, candidates: &mut [Candidate]);
}

/// Least recently used first: the default; right when recent data is reused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lru;

impl EvictionPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }
    fn order(&self, candidates: &mut [Candidate]) {
        candidates.sort_unstable_by_key(|c| c.last_access);
    }
}

/// Most recently used first (MemPool.jl's default): right for scans larger
/// than memory, where the oldest values are the next to be read again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mru;

impl EvictionPolicy for Mru {
    fn name(&self) -> &'static str {
        "mru"
    }
    fn order(&self, candidates: &mut [Candidate]) {
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.last_access));
    }
}

/// The built-in policy called `name` (`lru` or `mru`, any case).
pub fn by_name(name: &str) -> Option<Box<dyn EvictionPolicy>> {
    match name.to_ascii_lowercase().as_str() {
        "lru" => Some(Box::new(Lru)),
        "mru" => Some(Box::new(Mru)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(p: &dyn EvictionPolicy) -> Vec<u64> {
        let mut c: Vec<Candidate> = [(1, 5), (2, 1), (3, 9), (4, 3)]
            .map(|(id, t)| Candidate {
                id,
                last_access: t,
                size: 10,
                on_disk: false,
            })
            .to_vec();
        p.order(&mut c);
        c.iter().map(|c| c.id).collect()
    }

    #[test]
    fn lru_and_mru_order_by_recency() {
        assert_eq!(ids(&Lru), vec![2, 4, 1, 3]);
        assert_eq!(ids(&Mru), vec![3, 1, 4, 2]);
        assert_eq!(by_name("MRU").map(|p| p.name()), Some("mru"));
        assert!(by_name("fifo").is_none());
    }
}
