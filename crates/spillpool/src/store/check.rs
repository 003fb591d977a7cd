//! `check`: find (and remove) what a crashed writer left behind.
//!
//! A writer stores its tiles before its manifest, so a writer killed in
//! between leaves tiles no manifest names: *orphans*. They are invisible to
//! readers and harmless except for the space they take. A tile a manifest
//! names but the backend lacks is *missing*: that should never happen, and
//! is reported loudly.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::manifest::{Manifest, now_ms};
use super::{names, write_time_ms};
use crate::backend::Backend;
use crate::error::Result;
use crate::frame;
use crate::key::Key;

/// What [`crate::store::Store::check`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Remove orphans (and stale head hints).
    pub repair: bool,
    /// Keep orphans younger than this: a writer may still be running and
    /// about to publish them. Default 15 minutes.
    pub min_age: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            repair: false,
            min_age: Duration::from_secs(15 * 60),
        }
    }
}

/// A key nothing refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The backend key.
    pub key: String,
    /// How old its write is (`None`: unknown, treated as old).
    pub age: Option<Duration>,
    /// Whether this check removed it.
    pub removed: bool,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Libraries.
    pub libraries: usize,
    /// Symbols with at least one manifest.
    pub symbols: usize,
    /// Live versions.
    pub versions: usize,
    /// Tiles stored.
    pub tiles: usize,
    /// Tiles (and head hints) no manifest refers to.
    pub orphans: Vec<Orphan>,
    /// Tiles a live manifest names that are not stored: `"TILE (version V)"`.
    pub missing: Vec<String>,
    /// Manifests that cannot be read, with the reason.
    pub unreadable: Vec<String>,
}

impl CheckReport {
    /// No missing tile, no unreadable manifest, and no orphan left in place.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unreadable.is_empty()
            && self.orphans.iter().all(|o| o.removed)
    }

    /// Orphans removed by this check.
    pub fn removed(&self) -> usize {
        self.orphans.iter().filter(|o| o.removed).count()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} libraries, {} symbols, {} live versions, {} tiles",
            self.libraries, self.symbols, self.versions, self.tiles
        )?;
        for o in &self.orphans {
            let age = o.age.map_or("age unknown".to_string(), |a| {
                format!("{}s old", a.as_secs())
            });
            let state = if o.removed { "removed" } else { "kept" };
            writeln!(f, "orphan ({age}, {state}): {}", o.key)?;
        }
        for m in &self.missing {
            writeln!(f, "MISSING: {m}")?;
        }
        for u in &self.unreadable {
            writeln!(f, "UNREADABLE: {u}")?;
        }
        let kept = self.orphans.len() - self.removed();
        write!(
            f,
            "{} orphans ({} removed, {kept} kept), {} missing, {} unreadable: {}",
            self.orphans.len(),
            self.removed(),
            self.missing.len(),
            self.unreadable.len(),
            if self.is_clean() {
                "clean"
            } else {
                "NOT clean"
            }
        )
    }
}

pub(super) fn run(b: &Arc<dyn Backend>, options: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport {
        libraries: b.list(&names::libraries_prefix())?.len(),
        ..CheckReport::default()
    };
    // tile key → a live version naming it
    let mut referenced: HashMap<String, u64> = HashMap::new();
    let mut symbols: HashMap<(String, String), bool> = HashMap::new(); // → readable
    for key in b.list(&format!("{}ver/", names::ROOT))? {
        let Some([lib, sym, _]) = names::parts(&key, "ver")
            .as_deref()
            .map(|p| p.to_vec())
            .and_then(|p| <[&str; 3]>::try_from(p).ok())
        else {
            report.unreadable.push(format!("{key}: not a manifest key"));
            continue;
        };
        let location = b.location(&key);
        let manifest = b.get(&key).and_then(|f| {
            let f = f.ok_or_else(|| {
                crate::Error::corrupt(&key, &location, "vanished during the check")
            })?;
            let v = frame::decode(f, &key, &location)?;
            let bytes = v.as_blob().ok_or_else(|| {
                crate::Error::corrupt(&key, &location, "a manifest must be a blob")
            })?;
            Manifest::from_bytes(bytes, &key, &location)
        });
        let readable = symbols
            .entry((lib.to_string(), sym.to_string()))
            .or_insert(true);
        match manifest {
            Err(e) => {
                *readable = false;
                report.unreadable.push(e.to_string());
            }
            Ok(m) if m.deleted => {}
            Ok(m) => {
                report.versions += 1;
                for seg in &m.segments {
                    for c in 0..m.column_slices.len() {
                        let tile = names::tile_key(lib, sym, &seg.write, seg.index, c as u32)?;
                        referenced
                            .entry(tile.as_str().to_string())
                            .or_insert(m.version);
                    }
                }
            }
        }
    }
    report.symbols = symbols.len();
    let now = now_ms();
    let mut orphans = Vec::new();
    let mut stored: HashSet<String> = HashSet::new();
    for key in b.list(&names::tiles_prefix(None, None))? {
        report.tiles += 1;
        stored.insert(key.as_str().to_string());
        if referenced.contains_key(key.as_str()) {
            continue;
        }
        let parts = names::parts(&key, "tile").unwrap_or_default();
        // A symbol with an unreadable manifest may own this tile: keep it.
        if let [lib, sym, ..] = parts.as_slice()
            && symbols.get(&(lib.to_string(), sym.to_string())) == Some(&false)
        {
            continue;
        }
        let age = parts
            .get(2)
            .and_then(|w| write_time_ms(w))
            .map(|t| Duration::from_millis(now.saturating_sub(t)));
        orphans.push((key, age));
    }
    let mut missing: Vec<(&String, &u64)> = referenced
        .iter()
        .filter(|(tile, _)| !stored.contains(*tile))
        .collect();
    missing.sort();
    for (tile, version) in missing {
        let location = Key::new(tile).map(|k| b.location(&k)).unwrap_or_default();
        report
            .missing
            .push(format!("{tile} (version {version} at {location})"));
    }
    for key in b.list(&names::heads_prefix(None))? {
        if let Some([lib, sym]) =
            names::parts(&key, "head").and_then(|p| <[&str; 2]>::try_from(p).ok())
            && !symbols.contains_key(&(lib.to_string(), sym.to_string()))
        {
            orphans.push((key, None));
        }
    }
    for (key, age) in orphans {
        let old_enough = age.is_none_or(|a| a >= options.min_age);
        let removed = options.repair && old_enough && b.delete(&key)?;
        report.orphans.push(Orphan {
            key: key.as_str().to_string(),
            age,
            removed,
        });
    }
    Ok(report)
}
