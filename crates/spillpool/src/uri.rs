//! Backend URIs: `scheme://path?name=value&…`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A parsed backend URI.
///
/// ```
/// use spillpool::Uri;
/// let uri = Uri::parse("file:///data/spill?sync=false&root=/mnt/b").unwrap();
/// assert_eq!(uri.scheme(), "file");
/// assert_eq!(uri.path(), "/data/spill");
/// assert_eq!(uri.param("sync"), Some("false"));
/// assert_eq!(uri.params("root"), vec!["/mnt/b"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    original: String,
    scheme: String,
    path: String,
    params: BTreeMap<String, Vec<String>>,
}

impl Uri {
    /// Parses `text`. The path and parameter values may be percent-encoded.
    ///
    /// Returns [`Error::InvalidUri`] when there is no `scheme://` or an escape is malformed.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUri {
            uri: text.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://…, e.g. file:///tmp/data or mem://"))?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(invalid("malformed scheme"));
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = decode(path).ok_or_else(|| invalid("malformed %-escape in path"))?;
        let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value).ok_or_else(|| invalid("malformed %-escape in parameter"))?;
            params.entry(name.to_string()).or_default().push(value);
        }
        Ok(Uri {
            original: text.to_string(),
            scheme: scheme.to_ascii_lowercase(),
            path,
            params,
        })
    }

    /// The scheme, lower-cased (`file`, `mem`, `lmdb`, `shm`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Everything between `://` and `?`, decoded.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The last value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of parameter `name`, in order.
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.params
            .get(name)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The URI as it was given.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Rejects parameters not in `known`, so a typo is an error rather than ignored.
    pub fn check_params(&self, known: &[&str]) -> Result<()> {
        match self.params.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(self.invalid(format!(
                "unknown parameter {unknown:?} (known: {})",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// A boolean parameter (`true`/`false`/`1`/`0`), or `default` when absent.
    pub fn bool_param(&self, name: &str, default: bool) -> Result<bool> {
        match self.param(name) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(self.invalid(format!("{name}={other:?} is not true or false"))),
        }
    }

    /// A byte-size parameter (`1TiB`, `4096`), or `default` when absent.
    pub fn size_param(&self, name: &str, default: u64) -> Result<u64> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => crate::size::parse_size(v, name).map_err(|e| self.invalid(e.to_string())),
        }
    }

    /// An [`Error::InvalidUri`] for this URI.
    pub fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidUri {
            uri: self.original.clone(),
            reason: reason.into(),
        }
    }
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        let u = Uri::parse("LMDB:///a%20b/c?sync=0&map_size=1GiB&root=x&root=y")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.scheme(), "lmdb");
        assert_eq!(u.path(), "/a b/c");
        assert_eq!(u.bool_param("sync", true).ok(), Some(false));
        assert_eq!(u.size_param("map_size", 0).ok(), Some(1 << 30));
        assert_eq!(u.params("root"), vec!["x", "y"]);
        assert!(u.check_params(&["sync", "map_size", "root"]).is_ok());
        assert!(u.check_params(&["sync"]).is_err());
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["nothing", "://x", "file:///a%zz", "file:///a?sync=%4"] {
            assert!(
                matches!(Uri::parse(bad), Err(Error::InvalidUri { .. })),
                "{bad}"
            );
        }
        let u = Uri::parse("file:///a?sync=maybe").unwrap_or_else(|e| panic!("{e}"));
        assert!(u.bool_param("sync", true).is_err());
    }
}
