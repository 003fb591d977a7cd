//! Human-readable byte sizes: `512MiB`, `2GB`, `1.5 GiB`, `4096`.

use crate::error::{Error, Result};

/// Parses a byte size such as `512MiB`, `2GB`, `1.5GiB`, `64k` or `4096`.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the short `k`, `m`, `g`, `t`)
/// are powers of 1024; decimal units (`KB`, `MB`, `GB`, `TB`) powers of 1000.
/// `what` names the setting in the error, e.g. `SPILLPOOL_MEMORY_LIMIT`.
///
/// ```
/// use spillpool::parse_size;
/// assert_eq!(parse_size("512MiB", "x").unwrap(), 512 << 20);
/// assert_eq!(parse_size("2GB", "x").unwrap(), 2_000_000_000);
/// assert!(parse_size("lots", "SPILLPOOL_MEMORY_LIMIT").is_err());
/// ```
pub fn parse_size(text: &str, what: &str) -> Result<u64> {
    let bad = |reason: &str| Error::InvalidConfig {
        what: what.to_string(),
        reason: format!("{text:?} is not a size ({reason}); use e.g. 512MiB, 2GB or 4096"),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(bad("no number"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad("unknown unit")),
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier).ok_or_else(|| bad("too large"));
    }
    let n: f64 = number.parse().map_err(|_| bad("malformed number"))?;
    let bytes = n * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes.round() as u64)
}

/// Formats a byte count for people: `1.50 GiB`, `12.0 MiB`, `512 B`.
///
/// ```
/// assert_eq!(spillpool::format_size(3 << 29), "1.50 GiB");
/// ```
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else if value >= 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("4096", 4096),
            ("512MiB", 512 << 20),
            ("512 MiB", 512 << 20),
            ("2GB", 2_000_000_000),
            ("1.5GiB", 3 << 29),
            ("64k", 64 << 10),
            ("1TiB", 1 << 40),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text, "t").ok(), Some(want), "{text}");
        }
    }

    #[test]
    fn rejects_garbage_naming_the_setting() {
        for text in ["", "MiB", "12 parsecs", "1.2.3G", "99999999999999999999TiB"] {
            let err = parse_size(text, "SPILLPOOL_DISK_LIMIT")
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("SPILLPOOL_DISK_LIMIT")),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(10 << 20), "10.0 MiB");
        assert_eq!(format_size(300 << 30), "300 GiB");
    }
}
