//! `spillpool store` in real processes: the CLI, many writers, SIGKILL.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use spillpool::formats::{self, Format, Selection};
use spillpool::store::ReadOptions;
use spillpool::{Store, Table};

const BIN: &str = env!("CARGO_BIN_EXE_spillpool");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run spillpool: {e}"))
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "spillpool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "spillpool {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

fn table(rows: usize, seed: i64) -> Table {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
        (0..rows as i64).map(|i| i + seed),
    ));
    let xs: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..rows).map(|i| i as f64 / 4.0),
    ));
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..rows).map(|i| format!("n{seed}-{i}")),
    ));
    let batch = RecordBatch::try_from_iter([("id", ids), ("x", xs), ("name", names)])
        .unwrap_or_else(|e| panic!("{e}"));
    Table::from(batch)
}

fn write_file(t: &Table, path: &Path) -> String {
    let format = Format::from_extension(path).unwrap_or_else(|| panic!("{}", path.display()));
    formats::write_table_path(t, path, format).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn read_file(path: &Path) -> RecordBatch {
    let format = Format::from_extension(path).unwrap_or_else(|| panic!("{}", path.display()));
    let t = formats::read_path(path, format, &Selection::all()).unwrap_or_else(|e| panic!("{e}"));
    arrow_select::concat::concat_batches(t.schema(), t.batches()).unwrap_or_else(|e| panic!("{e}"))
}

fn whole(t: &Table) -> RecordBatch {
    arrow_select::concat::concat_batches(t.schema(), t.batches()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn store_commands_round_trip_and_name_what_failed() {
    let dir = tmp();
    let uri = format!("lmdb://{}", dir.path().join("db").display());
    let t = table(1000, 0);
    let parquet = write_file(&t, &dir.path().join("in.parquet"));
    let csv = write_file(&table(10, 5000), &dir.path().join("more.csv"));
    let arrow = write_file(&t, &dir.path().join("in.arrow"));

    assert_eq!(
        ok(&[
            "store",
            &uri,
            "write",
            "lib",
            "sym",
            &parquet,
            "--metadata",
            r#"{"by":"test"}"#
        ]),
        "0\n"
    );
    assert_eq!(ok(&["store", &uri, "write", "lib", "other", &arrow]), "0\n");
    assert_eq!(
        ok(&["store", &uri, "write", "lib", "sym", &csv, "--append"]),
        "1\n"
    );
    assert_eq!(ok(&["store", &uri, "libs"]), "lib\n");
    assert_eq!(ok(&["store", &uri, "ls", "lib"]), "other\nsym\n");
    let versions = ok(&["store", &uri, "versions", "lib", "sym"]);
    let lines: Vec<&str> = versions.lines().collect();
    assert_eq!(lines.len(), 2, "{versions}");
    assert!(
        lines[0].starts_with("0\t1000 rows\t") && lines[0].ends_with(r#"{"by":"test"}"#),
        "{versions}"
    );
    assert!(lines[1].starts_with("1\t1010 rows\t"), "{versions}");

    // A preview names the version and shape and shows the first rows.
    let preview = ok(&["store", &uri, "read", "lib", "sym"]);
    assert!(
        preview.contains("lib/sym version 1") && preview.contains("1010 rows × 3 columns"),
        "{preview}"
    );
    assert!(
        preview.contains("n0-9")
            && !preview.contains("n0-10 ")
            && preview.contains("1000 more rows"),
        "{preview}"
    );

    // Files out, in every format, with selections.
    for ext in ["arrow", "parquet", "csv"] {
        let out = dir.path().join(format!("out.{ext}"));
        let o = out.display().to_string();
        ok(&[
            "store",
            &uri,
            "read",
            "lib",
            "sym",
            "-o",
            &o,
            "--columns",
            "x,id",
            "--rows",
            "990..1005",
            "--as-of",
            "1",
        ]);
        let got = read_file(&out);
        let mut both = t.batches().to_vec();
        both.extend(table(10, 5000).batches().iter().cloned());
        let all = arrow_select::concat::concat_batches(t.schema(), &both)
            .unwrap_or_else(|e| panic!("{e}"));
        let expect = all
            .project(&[1, 0])
            .unwrap_or_else(|e| panic!("{e}"))
            .slice(990, 15);
        if ext == "csv" {
            assert_eq!(got.num_rows(), 15);
            assert_eq!(got.column(1).as_ref(), expect.column(1).as_ref());
        } else {
            assert_eq!(got, expect, "{ext}");
        }
        let mode = std::fs::metadata(&out)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
    }
    let v0 = dir.path().join("v0.arrow");
    ok(&[
        "store",
        &uri,
        "read",
        "lib",
        "sym",
        "--as-of",
        "0",
        "-o",
        &v0.display().to_string(),
    ]);
    assert_eq!(read_file(&v0), whole(&t));

    // Errors name the library, the symbol and the store.
    let e = fails(&["store", &uri, "read", "lib", "nope"]);
    assert!(
        e.contains("\"nope\"") && e.contains("\"lib\"") && e.contains(&uri),
        "{e}"
    );
    let e = fails(&["store", &uri, "ls", "nolib"]);
    assert!(e.contains("\"nolib\"") && e.contains(&uri), "{e}");
    let e = fails(&["store", &uri, "read", "lib", "sym", "--as-of", "7"]);
    assert!(e.contains("version 7"), "{e}");
    let e = fails(&["store", &uri, "write", "lib", "a/b", &parquet]);
    assert!(e.contains("invalid symbol name"), "{e}");
    let e = fails(&[
        "store",
        &uri,
        "write",
        "lib",
        "sym",
        &arrow,
        "--append",
        "--metadata",
        "{",
    ]);
    assert!(e.contains("--metadata"), "{e}");
    let wrong = write_file(
        &table(3, 0).batches()[0]
            .project(&[0, 2])
            .map(Table::from)
            .unwrap_or_else(|e| panic!("{e}")),
        &dir.path().join("wrong.arrow"),
    );
    let e = fails(&["store", &uri, "write", "lib", "sym", &wrong, "--append"]);
    assert!(e.contains("cannot append") && e.contains("\"sym\""), "{e}");
    let e = fails(&["store", &uri, "read", "lib", "sym", "--rows", "9..2"]);
    assert!(e.contains("--rows"), "{e}");
    let e = fails(&[
        "store",
        &uri,
        "write",
        "lib",
        "s",
        &dir.path().join("missing.parquet").display().to_string(),
    ]);
    assert!(e.contains("missing.parquet"), "{e}");

    // Deleting.
    ok(&["store", &uri, "rm", "lib", "sym", "--version", "0"]);
    assert!(ok(&["store", &uri, "versions", "lib", "sym"]).starts_with("1\t"));
    ok(&["store", &uri, "rm", "lib", "other"]);
    assert_eq!(ok(&["store", &uri, "ls", "lib"]), "sym\n");
    let e = fails(&["store", &uri, "rm", "lib", "other"]);
    assert!(e.contains("\"other\""), "{e}");
    let report = ok(&["store", &uri, "check"]);
    assert!(
        orphans(&report) == Some(0) && report.contains("clean"),
        "{report}"
    );
    ok(&["store", &uri, "rmlib", "lib"]);
    assert_eq!(ok(&["store", &uri, "libs"]), "");
}

/// ArcticDB's tutorial: 50 processes write 50 symbols into one store at once.
#[test]
fn fifty_processes_write_symbols_to_one_store() {
    let dir = tmp();
    let input = write_file(&table(2000, 3), &dir.path().join("t.arrow"));
    for uri in [
        format!("lmdb://{}", dir.path().join("db").display()),
        format!("file://{}", dir.path().join("files").display()),
    ] {
        ok(&["store", &uri, "mklib", "lib"]);
        let children: Vec<_> = (0..50)
            .map(|i| {
                Command::new(BIN)
                    .args(["store", &uri, "write", "lib", &format!("sym{i:02}"), &input])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn: {e}"))
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.status.success(),
                "{uri}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let listed = ok(&["store", &uri, "ls", "lib"]);
        let expect: Vec<String> = (0..50).map(|i| format!("sym{i:02}")).collect();
        assert_eq!(listed.lines().collect::<Vec<_>>(), expect, "{uri}");
        let store = Store::open(&uri).unwrap_or_else(|e| panic!("{e}"));
        let lib = store.library("lib").unwrap_or_else(|e| panic!("{e}"));
        for s in &expect {
            let got = lib.read(s).unwrap_or_else(|e| panic!("{uri} {s}: {e}"));
            assert_eq!(whole(&got.table), whole(&table(2000, 3)), "{uri} {s}");
        }

        // Ten processes writing the same symbol: ten versions, none lost.
        let children: Vec<_> = (0..10)
            .map(|_| {
                Command::new(BIN)
                    .args(["store", &uri, "write", "lib", "same", &input])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn: {e}"))
            })
            .collect();
        let mut got: Vec<u64> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
                assert!(out.status.success());
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(u64::MAX)
            })
            .collect();
        got.sort_unstable();
        assert_eq!(
            got,
            (0..10).collect::<Vec<u64>>(),
            "{uri}: versions reported"
        );
        assert_eq!(lib.list_versions("same").map(|v| v.len()).ok(), Some(10));
    }
}

fn tiles(store: &Store) -> usize {
    store
        .backend()
        .list("store/tile/")
        .map(|t| t.len())
        .unwrap_or(0)
}

/// Writers killed with SIGKILL at random points leave every acknowledged
/// version intact, no partial version visible, and orphans that check finds.
#[test]
fn sigkill_mid_write_leaves_the_store_readable() {
    let dir = tmp();
    let small = table(500, 1);
    let big = table(120_000, 2);
    let small_path = write_file(&small, &dir.path().join("small.arrow"));
    let big_path = write_file(&big, &dir.path().join("big.arrow"));
    let mut state = 0x1234_5678u64;
    for uri in [
        format!("lmdb://{}", dir.path().join("db").display()),
        format!("file://{}", dir.path().join("files").display()),
    ] {
        ok(&["store", &uri, "write", "lib", "sym", &small_path]);
        let store = Store::open(&uri).unwrap_or_else(|e| panic!("{e}"));
        let lib = store.library("lib").unwrap_or_else(|e| panic!("{e}"));
        let mut mid_write = 0;
        for round in 0..6 {
            let before = tiles(&store);
            let versions_before = lib.list_versions("sym").map(|v| v.len()).unwrap_or(0);
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 120 segments: kill once 1..=110 new tiles are visible.
            let threshold = before + 1 + (state % 110) as usize;
            let mut child = Command::new(BIN)
                .args([
                    "store",
                    &uri,
                    "--rows-per-segment",
                    "1000",
                    "--batch-bytes",
                    "0",
                    "write",
                    "lib",
                    "sym",
                    &big_path,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn: {e}"));
            loop {
                if tiles(&store) >= threshold {
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::yield_now();
            }
            let _ = child.kill(); // SIGKILL
            let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            let acknowledged = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .ok();
            let versions = lib
                .list_versions("sym")
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            if let Some(v) = acknowledged {
                assert!(
                    versions.iter().any(|i| i.version == v),
                    "{uri}: acknowledged version {v} lost"
                );
            }
            assert_eq!(versions[0].version, 0, "{uri}: the first version survives");
            // Every visible version is whole: the small table or the big one.
            for v in &versions {
                let got = lib
                    .read_with("sym", &ReadOptions::default().as_of(v.version))
                    .unwrap_or_else(|e| panic!("{uri} round {round} v{}: {e}", v.version));
                let expect = if v.version == 0 { &small } else { &big };
                assert_eq!(
                    whole(&got.table),
                    whole(expect),
                    "{uri} round {round} v{}",
                    v.version
                );
            }
            if versions.len() == versions_before {
                mid_write += 1;
            }
        }
        assert!(mid_write > 0, "{uri}: no kill landed mid-write");
        let report = ok(&["store", &uri, "check"]);
        assert!(
            // "320 orphans" contains "0 orphans": look at the count itself.
            report.contains("kept") && orphans(&report).is_some_and(|n| n > 0),
            "{uri}: {report}"
        );
        let repaired = ok(&["store", &uri, "check", "--repair", "--min-age", "0s"]);
        assert!(repaired.contains("clean"), "{uri}: {repaired}");
        let after = ok(&["store", &uri, "check"]);
        assert!(
            orphans(&after) == Some(0) && after.contains("clean"),
            "{uri}: {after}"
        );
        assert_eq!(
            whole(&lib.read("sym").unwrap_or_else(|e| panic!("{e}")).table).num_rows() % 500,
            0
        );
    }
}

#[test]
fn store_bench_runs_small_and_writes_csv_and_chart() {
    let dir = tmp();
    let csv = dir.path().join("store.csv");
    let svg = dir.path().join("store.svg");
    let out = ok(&[
        "bench",
        "store",
        "--sizes",
        "2MB,4MB",
        "--repeats",
        "2",
        "--symbols",
        "120",
        "--batch",
        "50",
        "--dir",
        &dir.path().display().to_string(),
        "--out",
        &csv.display().to_string(),
        "--chart",
        &svg.display().to_string(),
    ]);
    assert!(
        out.contains("raw write+fsync") && out.contains("small symbols on lmdb"),
        "{out}"
    );
    let text = std::fs::read_to_string(&csv).unwrap_or_else(|e| panic!("{e}"));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("suite,storage,op,bytes,repeat,seconds,mb_per_s")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for storage in ["lmdb", "lmdb-tmpfs", "file", "mem"] {
        for op in ["write", "read"] {
            let n = rows
                .iter()
                .filter(|r| r[0] == "store" && r[1] == storage && r[2] == op)
                .count();
            assert_eq!(n, 4, "{storage} {op}: 2 sizes × 2 repeats");
        }
        assert!(
            rows.iter()
                .any(|r| r[0] == "store-small" && r[1] == storage && r[2] == "small-write-batch")
        );
    }
    assert!(
        rows.iter()
            .any(|r| r[1] == "hw-disk" && r[2] == "write+fsync")
    );
    assert!(rows.iter().any(|r| r[1] == "hw-memcpy" && r[2] == "copy"));
    assert!(
        rows.iter()
            .all(|r| r.len() == 7 && r[5].parse::<f64>().is_ok_and(|s| s > 0.0))
    );
    let chart = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        chart.starts_with("<svg") && chart.contains("lmdb write") && chart.contains("hw-disk"),
        "{}",
        &chart[..200.min(chart.len())]
    );
}

/// The orphan count of a `store check` report ("N orphans (…)").
fn orphans(report: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|l| l.split_once(" orphans")?.0.trim().parse().ok())
}
