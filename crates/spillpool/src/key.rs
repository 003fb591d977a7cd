//! Validated keys.

use std::fmt;

use crate::error::{Error, Result, printable};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A validated key: the name a value is stored under in a [`crate::Backend`].
///
/// Keys are UTF-8 strings of 1 to [`MAX_KEY_LEN`] bytes, made of `/`-separated
/// segments. Rejected: the empty key, keys over 1024 bytes, NUL bytes, a
/// leading `/`, empty segments (`a//b`, a trailing `/`), and `.` or `..`
/// segments. These rules mean no key can ever name a path outside a file
/// backend's root.
///
/// ```
/// use spillpool::Key;
/// assert!(Key::new("tables/2026/x").is_ok());
/// assert!(Key::new("../etc/passwd").is_err());
/// assert!(Key::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Box<str>);

impl Key {
    /// Validates `key`.
    ///
    /// Returns [`Error::InvalidKey`] naming the key and the rule it breaks.
    pub fn new(key: impl AsRef<str>) -> Result<Self> {
        let key = key.as_ref();
        check(key)?;
        Ok(Key(key.into()))
    }

    /// Validates `key`, keeping its buffer (no copy when it has no spare capacity).
    pub(crate) fn from_string(key: String) -> Result<Self> {
        check(&key)?;
        Ok(Key(key.into_boxed_str()))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The rules of [`Key`], on bytes (keys are built and checked several
/// times per store read; splitting a `str` on a `char` was ~4 % of one).
fn check(key: &str) -> Result<()> {
    let reject = |reason| {
        Err(Error::InvalidKey {
            key: printable(key),
            reason,
        })
    };
    if key.is_empty() {
        return reject("a key must not be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return reject("a key must be at most 1024 bytes");
    }
    if key.as_bytes().contains(&0) {
        return reject("a key must not contain NUL");
    }
    if key.starts_with('/') {
        return reject("a key must not start with '/'");
    }
    for segment in key.as_bytes().split(|&b| b == b'/') {
        match segment {
            b"" => {
                return reject("a key must not contain empty segments ('//' or a trailing '/')");
            }
            b"." | b".." => return reject("a key must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", printable(&self.0))
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        Key::new(value)
    }
}

// Keys order as their strings do, so maps of keys can be searched by `&str`.
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "a",
            "a/b",
            "a.b/c..d",
            "x".repeat(1024).as_str(),
            "ünïcødé/ok",
            ".hidden/x",
        ] {
            assert_eq!(
                Key::new(k).map(|k| k.to_string()).ok(),
                Some(k.to_string()),
                "{k}"
            );
        }
    }

    #[test]
    fn rejects_bad_keys_with_reason() {
        let long = "x".repeat(1025);
        for (k, why) in [
            ("", "empty"),
            (long.as_str(), "1024"),
            ("a\0b", "NUL"),
            ("/abs", "start"),
            ("a//b", "empty segments"),
            ("a/", "empty segments"),
            (".", "'.'"),
            ("a/../b", "'..'"),
            ("..", "'..'"),
        ] {
            match Key::new(k) {
                Err(Error::InvalidKey { reason, .. }) => {
                    assert!(reason.contains(why), "{k:?}: {reason}")
                }
                other => panic!("{k:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn error_message_shortens_long_keys() {
        let err = Key::new("y".repeat(5000))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.len() < 400, "{err}");
        assert!(err.contains("1024"));
    }
}
