//! Library and symbol names, and the backend keys the store keeps them under.
//!
//! Every key the store writes starts with `store/`, so a store can share a
//! backend with other data:
//!
//! | key | holds |
//! |---|---|
//! | `store/lib/LIB` | the library's marker |
//! | `store/ver/LIB/SYMBOL/VERSION` | a version's manifest (VERSION: 20 digits, so keys sort by version) |
//! | `store/head/LIB/SYMBOL` | the newest version number (8 bytes): a hint for backends whose keys are not in order |
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

/// Joins `parts` into a key: the store builds five keys per read, and
/// `format!` plus a copy into the key was ~10 % of a small read.
fn key(parts: &[&str]) -> Result<Key> {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    Key::from_string(s)
}

/// Digits of a version number in its key.
pub(crate) const VERSION_DIGITS: usize = 20;

/// `n` as 20 zero-padded digits (every u64 fits), so keys sort by number.
fn digits20(mut n: u64, out: &mut [u8; VERSION_DIGITS]) -> &str {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // Only ASCII digits were written.
    std::str::from_utf8(out).unwrap_or_default()
}

pub(crate) fn library_key(lib: &str) -> Result<Key> {
    key(&[ROOT, "lib/", lib])
}

pub(crate) fn libraries_prefix() -> String {
    format!("{ROOT}lib/")
}

pub(crate) fn version_key(lib: &str, sym: &str, version: u64) -> Result<Key> {
    let mut buf = [0u8; 20];
    key(&[
        ROOT,
        "ver/",
        lib,
        "/",
        sym,
        "/",
        digits20(version, &mut buf),
    ])
}

/// Prefix of every manifest of `sym`, or of every symbol of `lib` when `sym` is `None`.
pub(crate) fn versions_prefix(lib: &str, sym: Option<&str>) -> String {
    match sym {
        // Built per read on ordered backends: no `format!`.
        Some(sym) => [ROOT, "ver/", lib, "/", sym, "/"].concat(),
        None => format!("{ROOT}ver/{lib}/"),
    }
}

pub(crate) fn head_key(lib: &str, sym: &str) -> Result<Key> {
    key(&[ROOT, "head/", lib, "/", sym])
}

pub(crate) fn heads_prefix(lib: Option<&str>) -> String {
    match lib {
        Some(lib) => format!("{ROOT}head/{lib}/"),
        None => format!("{ROOT}head/"),
    }
}

pub(crate) fn tile_key(lib: &str, sym: &str, write: &str, segment: u32, slice: u32) -> Result<Key> {
    let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
    key(&[
        ROOT,
        "tile/",
        lib,
        "/",
        sym,
        "/",
        write,
        "/",
        decimal(segment, &mut a),
        ".",
        decimal(slice, &mut b),
    ])
}

/// `n` in decimal without `format!` (a tile key is built per tile read).
fn decimal(mut n: u32, out: &mut [u8; 10]) -> &str {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&out[at..]).unwrap_or_default()
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
    fn tile_places_are_decimal() {
        for (seg, slice) in [(0, 0), (7, 10), (1234, 99), (u32::MAX, 0)] {
            let k = tile_key("l", "s", "w", seg, slice).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(k.as_str(), format!("store/tile/l/s/w/{seg}.{slice}"));
        }
    }

    #[test]
    fn longest_names_make_valid_keys() {
        let (lib, sym) = ("l".repeat(255), "s".repeat(255));
        let write = "0123456789abcdef-ffffffff-ffffffff-0123456789abcdef";
        let k = tile_key(&lib, &sym, write, u32::MAX, u32::MAX);
        assert!(k.is_ok(), "{k:?}");
        assert!(version_key(&lib, &sym, u64::MAX).is_ok());
        let v = version_key("l", "s", 42).map(|k| k.to_string()).ok();
        assert_eq!(v.as_deref(), Some("store/ver/l/s/00000000000000000042"));
        let v = version_key("l", "s", u64::MAX).map(|k| k.to_string()).ok();
        assert_eq!(v, Some(format!("store/ver/l/s/{:020}", u64::MAX)));
        let k = k.unwrap_or_else(|e| panic!("{e}"));
        let p = parts(&k, "tile").unwrap_or_default();
        assert_eq!(
            p,
            vec![lib.as_str(), sym.as_str(), write, "4294967295.4294967295"]
        );
    }
}
