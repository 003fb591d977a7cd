//! Library and symbol names, and the backend keys the store keeps them under.
//!
//! Every key the store writes starts with `store/`, so a store can share a
//! backend with other data:
//!
//! | key | holds |
//! |---|---|
//! | `store/lib/LIB` | the library's marker |
//! | `store/ver/LIB/SYMBOL/VERSION` | a version's manifest (VERSION: 20 digits, so keys sort by version) |
//! | `store/head/LIB/SYMBOL` | a copy of the newest manifest: a hint that saves a listing |
//! | `store/tile/LIB/SYMBOL/WRITE/SEG.SLICE` | one tile: row segment SEG, column slice SLICE of write WRITE |

use crate::error::{Error, Result, printable};
use crate::key::Key;

/// The longest library or symbol name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

pub(crate) const ROOT: &str = "store/";

/// Checks a library (`kind = "library"`) or symbol name.
pub(crate) fn validate(kind: &'static str, name: &str) -> Result<()> {
    let reject = |reason| {
        Err(Error::InvalidName {
            kind,
            name: printable(name),
            reason,
        })
    };
    if name.is_empty() {
        return reject("a name must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return reject("a name must be at most 255 bytes");
    }
    if name.contains('\0') {
        return reject("a name must not contain NUL");
    }
    if name.contains('/') || name.contains('\\') {
        return reject("a name must not contain '/' or '\\'");
    }
    if name == "." || name == ".." {
        return reject("a name must not be '.' or '..'");
    }
    if name.chars().any(char::is_control) {
        return reject("a name must not contain control characters");
    }
    Ok(())
}

fn key(s: String) -> Result<Key> {
    Key::new(s)
}

pub(crate) fn library_key(lib: &str) -> Result<Key> {
    key(format!("{ROOT}lib/{lib}"))
}

pub(crate) fn libraries_prefix() -> String {
    format!("{ROOT}lib/")
}

pub(crate) fn version_key(lib: &str, sym: &str, version: u64) -> Result<Key> {
    key(format!("{ROOT}ver/{lib}/{sym}/{version:020}"))
}

/// Prefix of every manifest of `sym`, or of every symbol of `lib` when `sym` is `None`.
pub(crate) fn versions_prefix(lib: &str, sym: Option<&str>) -> String {
    match sym {
        Some(sym) => format!("{ROOT}ver/{lib}/{sym}/"),
        None => format!("{ROOT}ver/{lib}/"),
    }
}

pub(crate) fn head_key(lib: &str, sym: &str) -> Result<Key> {
    key(format!("{ROOT}head/{lib}/{sym}"))
}

pub(crate) fn heads_prefix(lib: Option<&str>) -> String {
    match lib {
        Some(lib) => format!("{ROOT}head/{lib}/"),
        None => format!("{ROOT}head/"),
    }
}

pub(crate) fn tile_key(lib: &str, sym: &str, write: &str, segment: u32, slice: u32) -> Result<Key> {
    key(format!("{ROOT}tile/{lib}/{sym}/{write}/{segment}.{slice}"))
}

pub(crate) fn tiles_prefix(lib: Option<&str>, sym: Option<&str>) -> String {
    match (lib, sym) {
        (Some(lib), Some(sym)) => format!("{ROOT}tile/{lib}/{sym}/"),
        (Some(lib), None) => format!("{ROOT}tile/{lib}/"),
        _ => format!("{ROOT}tile/"),
    }
}

/// Splits `store/KIND/A/B/...` after the prefix `store/KIND/` into its parts.
pub(crate) fn parts<'k>(key: &'k Key, kind: &str) -> Option<Vec<&'k str>> {
    let rest = key
        .as_str()
        .strip_prefix(ROOT)?
        .strip_prefix(kind)?
        .strip_prefix('/')?;
    Some(rest.split('/').collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in [
            "a",
            "prices.daily",
            "ü-🎉",
            &"x".repeat(255),
            "a..b",
            "sp ace",
        ] {
            assert!(validate("symbol", good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\0b",
            "tab\t",
            &"x".repeat(256),
        ] {
            let err = validate("symbol", bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("invalid symbol name")),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn longest_names_make_valid_keys() {
        let (lib, sym) = ("l".repeat(255), "s".repeat(255));
        let write = "0123456789abcdef-ffffffff-ffffffff-0123456789abcdef";
        let k = tile_key(&lib, &sym, write, u32::MAX, u32::MAX);
        assert!(k.is_ok(), "{k:?}");
        assert!(version_key(&lib, &sym, u64::MAX).is_ok());
        let k = k.unwrap_or_else(|e| panic!("{e}"));
        let p = parts(&k, "tile").unwrap_or_default();
        assert_eq!(
            p,
            vec![lib.as_str(), sym.as_str(), write, "4294967295.4294967295"]
        );
    }
}
