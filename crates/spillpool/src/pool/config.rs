//! Pool configuration: a builder, and the `SPILLPOOL_*` environment variables.

use std::path::PathBuf;
use std::sync::Arc;

use super::Pool;
use super::policy::{self, EvictionPolicy, Lru};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::filter::{EncryptionKey, Filters};
use crate::size::parse_size;

/// Default memory bound: 1 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;

/// Builds a [`Pool`]. Setters never fail; [`PoolBuilder::build`] checks everything.
///
/// ```
/// use spillpool::pool::{Mru, Pool};
/// let pool = Pool::builder()
///     .memory_limit(64 << 20)
///     .disk_limit(1 << 30)
///     .policy(Mru)
///     .build()
///     .unwrap();
/// assert_eq!(pool.stats().memory_limit, 64 << 20);
/// ```
#[derive(Debug)]
pub struct PoolBuilder {
    pub(crate) memory_limit: u64,
    pub(crate) disk_limit: u64,
    pub(crate) spill_dirs: Vec<PathBuf>,
    pub(crate) disk_backend: Option<Arc<dyn Backend>>,
    pub(crate) policy: Box<dyn EvictionPolicy>,
    pub(crate) high_watermark: f64,
    pub(crate) low_watermark: f64,
    pub(crate) background_spill: bool,
    pub(crate) filters: Filters,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            disk_limit: u64::MAX,
            spill_dirs: Vec::new(),
            disk_backend: None,
            policy: Box::new(Lru),
            high_watermark: 0.9,
            low_watermark: 0.75,
            background_spill: true,
            filters: Filters::none(),
        }
    }
}

fn lookup_env(
    name: &str,
    get: &dyn Fn(&str) -> std::result::Result<String, std::env::VarError>,
) -> Result<Option<String>> {
    match get(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidConfig {
            what: name.to_string(),
            reason: "not valid UTF-8".into(),
        }),
    }
}

impl PoolBuilder {
    /// Bytes of values the memory tier may hold (default 1 GiB).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Bytes of frames the disk tier may hold (default: unbounded, up to the file system).
    pub fn disk_limit(mut self, bytes: u64) -> Self {
        self.disk_limit = bytes;
        self
    }

    /// Directories for spilled values (several: spread by hash). Default: a
    /// fresh directory under the system temporary directory, removed on drop.
    pub fn spill_dirs(mut self, dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.spill_dirs = dirs.into_iter().map(Into::into).collect();
        self
    }

    /// Uses `backend` as the disk tier instead of spill directories.
    pub fn disk_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.disk_backend = Some(backend);
        self
    }

    /// The eviction policy (default [`Lru`]).
    pub fn policy(mut self, policy: impl EvictionPolicy) -> Self {
        self.policy = Box::new(policy);
        self
    }

    /// Fractions of the memory bound between which the background spiller
    /// works: it starts above `high` and stops below `low` (default 0.9, 0.75).
    pub fn watermarks(mut self, high: f64, low: f64) -> Self {
        self.high_watermark = high;
        self.low_watermark = low;
        self
    }

    /// Whether a background thread spills between the watermarks (default
    /// true). Without it, `put` spills on its own thread at the hard bound.
    pub fn background_spill(mut self, on: bool) -> Self {
        self.background_spill = on;
        self
    }

    /// Filters for everything written to the disk tier: compression and/or
    /// encryption (spilled values then read back as copies, not mappings).
    pub fn filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// Applies `SPILLPOOL_MEMORY_LIMIT`, `SPILLPOOL_DISK_LIMIT` (sizes such as
    /// `512MiB` or `2GB`), `SPILLPOOL_SPILL_DIR` (directories separated by `:`)
    /// `SPILLPOOL_POLICY` (`lru` or `mru`), `SPILLPOOL_COMPRESSION` (`zstd:3`,
    /// `lz4`, `gzip`, `none`) and `SPILLPOOL_ENCRYPTION` (`aes-256-gcm`, with the
    /// key in `SPILLPOOL_ENCRYPTION_KEY` or `SPILLPOOL_ENCRYPTION_KEY_FILE`)
    /// where they are set.
    ///
    /// Returns [`Error::InvalidConfig`] naming the variable whose value is invalid.
    pub fn from_env(self) -> Result<Self> {
        self.from_lookup(&|n| std::env::var(n))
    }

    /// [`PoolBuilder::from_env`] over any source of variables (tests, config maps).
    pub fn from_lookup(
        mut self,
        get: &dyn Fn(&str) -> std::result::Result<String, std::env::VarError>,
    ) -> Result<Self> {
        let env_var = |name: &str| lookup_env(name, get);
        if let Some(v) = env_var("SPILLPOOL_MEMORY_LIMIT")? {
            self.memory_limit = parse_size(&v, "SPILLPOOL_MEMORY_LIMIT")?;
        }
        if let Some(v) = env_var("SPILLPOOL_DISK_LIMIT")? {
            self.disk_limit = parse_size(&v, "SPILLPOOL_DISK_LIMIT")?;
        }
        if let Some(v) = env_var("SPILLPOOL_SPILL_DIR")? {
            self.spill_dirs = v
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(v) = env_var("SPILLPOOL_POLICY")? {
            self.policy = policy::by_name(&v).ok_or_else(|| Error::InvalidConfig {
                what: "SPILLPOOL_POLICY".into(),
                reason: format!("{v:?} is not a policy (use lru or mru)"),
            })?;
        }
        let compression = env_var("SPILLPOOL_COMPRESSION")?;
        let encryption = env_var("SPILLPOOL_ENCRYPTION")?;
        if compression.is_some() || encryption.is_some() {
            let key = if encryption.is_some() {
                EncryptionKey::from_lookup(&|n| get(n).ok())?.map(Arc::new)
            } else {
                None
            };
            let named = |what: &str, e: Error| match e {
                Error::InvalidConfig { reason, .. } => Error::InvalidConfig {
                    what: what.to_string(),
                    reason,
                },
                other => other,
            };
            let c = Filters::from_specs(compression.as_deref(), None, None)
                .map_err(|e| named("SPILLPOOL_COMPRESSION", e))?;
            let e = Filters::from_specs(None, encryption.as_deref(), key)
                .map_err(|e| named("SPILLPOOL_ENCRYPTION", e))?;
            let mut f = Filters::none();
            if let Some(c) = c.compression() {
                f = f.with_compression(c);
            }
            if let Some(k) = e.key() {
                f = f.with_encryption(Arc::clone(k));
            }
            self.filters = f;
        }
        Ok(self)
    }

    /// Checks the configuration and starts the pool.
    ///
    /// Returns [`Error::InvalidConfig`] for a zero memory bound or bad
    /// watermarks, and an I/O error or [`Error::InvalidConfig`] when a spill
    /// directory cannot be created or is locked by another pool.
    pub fn build(self) -> Result<Pool> {
        let invalid = |what: &str, reason: String| Error::InvalidConfig {
            what: what.to_string(),
            reason,
        };
        if self.memory_limit == 0 {
            return Err(invalid("memory limit", "must be at least 1 byte".into()));
        }
        if self.disk_limit == 0 {
            return Err(invalid("disk limit", "must be at least 1 byte".into()));
        }
        let (h, l) = (self.high_watermark, self.low_watermark);
        if !(0.0 < l && l <= h && h <= 1.0) {
            return Err(invalid(
                "watermarks",
                format!("need 0 < low ({l}) <= high ({h}) <= 1"),
            ));
        }
        Pool::start(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::env::VarError;

    fn with(vars: &[(&str, &str)]) -> Result<PoolBuilder> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PoolBuilder::default()
            .from_lookup(&move |n| map.get(n).cloned().ok_or(VarError::NotPresent))
    }

    #[test]
    fn reads_every_variable() {
        let b = with(&[
            ("SPILLPOOL_MEMORY_LIMIT", "512MiB"),
            ("SPILLPOOL_DISK_LIMIT", "2GB"),
            ("SPILLPOOL_SPILL_DIR", "/a:/b"),
            ("SPILLPOOL_POLICY", "mru"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.memory_limit, 512 << 20);
        assert_eq!(b.disk_limit, 2_000_000_000);
        assert_eq!(b.spill_dirs, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(b.policy.name(), "mru");
        let d = with(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (d.memory_limit, d.disk_limit, d.policy.name()),
            (DEFAULT_MEMORY_LIMIT, u64::MAX, "lru")
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("SPILLPOOL_MEMORY_LIMIT", "lots"),
            ("SPILLPOOL_DISK_LIMIT", "12 parsecs"),
            ("SPILLPOOL_POLICY", "random"),
        ] {
            let err = with(&[(var, value)])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(var) && err.contains(value), "{var}: {err}");
        }
    }

    #[test]
    fn build_rejects_impossible_settings() {
        assert!(PoolBuilder::default().memory_limit(0).build().is_err());
        assert!(PoolBuilder::default().disk_limit(0).build().is_err());
        assert!(PoolBuilder::default().watermarks(0.5, 0.9).build().is_err());
        assert!(PoolBuilder::default().watermarks(1.5, 0.9).build().is_err());
    }
}
