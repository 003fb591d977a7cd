//! Registered files: no I/O to register, parsed on first read, clean, never deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use spillpool::formats::{Format, Selection};
use spillpool::pool::{Pool, Tier};
use spillpool::{Error, Table};

fn ok<T>(r: spillpool::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn batch(rows: i64, offset: i64) -> RecordBatch {
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(offset..offset + rows)),
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 * 0.5),
            )),
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("n{}", i % 7)),
            )),
        ),
    ];
    RecordBatch::try_from_iter(cols).unwrap_or_else(|e| panic!("{e}"))
}

fn batches() -> Vec<RecordBatch> {
    (0..4).map(|i| batch(2500, i * 2500)).collect()
}

fn write_ipc(path: &Path) {
    let b = batches();
    let t = ok(Table::try_new(b[0].schema(), b));
    ok(spillpool::formats::write_ipc_file(&t, path));
}

fn write_parquet(path: &Path) {
    let b = batches();
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(2500))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, b[0].schema(), Some(props))
        .unwrap_or_else(|e| panic!("{e}"));
    for x in &b {
        w.write(x).unwrap_or_else(|e| panic!("{e}"));
    }
    w.close().unwrap_or_else(|e| panic!("{e}"));
}

fn write_csv(path: &Path) {
    let mut text = String::from("id,x,name\n");
    for i in 0..10_000i64 {
        text.push_str(&format!("{i},{},n{}\n", i as f64 * 0.5, i % 7));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

/// One file of each format, all holding the same 10,000 rows.
fn files(dir: &Path) -> Vec<PathBuf> {
    let (ipc, pq, csv) = (
        dir.join("t.arrow"),
        dir.join("t.parquet"),
        dir.join("t.csv"),
    );
    write_ipc(&ipc);
    write_parquet(&pq);
    write_csv(&csv);
    vec![ipc, pq, csv]
}

fn ids(t: &Table) -> Vec<i64> {
    t.batches()
        .iter()
        .flat_map(|b| {
            let col = b
                .column_by_name("id")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
            col.map(|c| c.values().to_vec()).unwrap_or_default()
        })
        .collect()
}

#[test]
fn registration_touches_nothing_and_errors_come_at_first_read() {
    let pool = ok(Pool::builder().build());
    let missing: Vec<PathBuf> = (0..10_000)
        .map(|i| PathBuf::from(format!("/no/such/dir/f{i}.csv")))
        .collect();
    let refs = ok(pool.register_files(missing, None));
    assert_eq!(refs.len(), 10_000);
    assert_eq!(pool.stats().file_reads, 0);
    match pool.get(&refs[17]) {
        Err(e @ Error::InputFile { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("/no/such/dir/f17.csv") && msg.contains("CSV"),
                "{msg}"
            );
        }
        other => panic!("expected InputFile, got {other:?}"),
    }
    // A malformed file: clear error, pool still usable.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bad = dir.path().join("bad.parquet");
    std::fs::write(&bad, b"PAR1 not really").unwrap_or_else(|e| panic!("{e}"));
    let r = ok(pool.register_file(&bad, None));
    assert!(matches!(
        pool.get(&r),
        Err(Error::InputFile {
            format: "Parquet",
            ..
        })
    ));
    let good = dir.path().join("ok.csv");
    write_csv(&good);
    assert_eq!(
        ok(pool.get(&ok(pool.register_file(&good, None))))
            .as_table()
            .map(Table::num_rows),
        Some(10_000)
    );
    // No format and no known extension: refused at registration, as nothing else can tell.
    assert!(matches!(
        pool.register_file("/x/data.bin", None),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(pool.register_file("/x/data.bin", Some(Format::Csv)).is_ok());
}

#[test]
fn every_format_reads_the_same_rows_and_is_clean() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pool = ok(Pool::builder().memory_limit(64 << 20).build());
    let want: Vec<i64> = (0..10_000).collect();
    for path in files(dir.path()) {
        let r = ok(pool.register_file(&path, None));
        assert_eq!(ok(pool.tier(&r)), Tier::Disk);
        let before = pool.stats();
        {
            let v = ok(pool.get(&r));
            assert_eq!(
                v.as_table().map(ids).as_deref(),
                Some(&want[..]),
                "{}",
                path.display()
            );
        }
        assert_eq!(ok(pool.tier(&r)), Tier::Memory);
        ok(pool.shrink_to(0));
        let s = pool.stats();
        assert_eq!(
            s.spills,
            before.spills,
            "{}: evicting a registered file wrote it",
            path.display()
        );
        assert_eq!(s.clean_evictions, before.clean_evictions + 1);
        // Parsed again on the next get.
        assert_eq!(
            ok(pool.get(&r)).as_table().map(ids).as_deref(),
            Some(&want[..])
        );
        assert_eq!(pool.stats().file_reads, before.file_reads + 2);
    }
}

#[test]
fn arrow_ipc_files_are_read_zero_copy() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("z.arrow");
    write_ipc(&path);
    let pool = ok(Pool::builder().build());
    let r = ok(pool.register_file(&path, None));
    let v = ok(pool.get(&r));
    let addr = v
        .as_table()
        .map(|t| t.batches()[0].column(0).to_data().buffers()[0].as_ptr() as usize)
        .unwrap_or(0);
    let mapped = spillpool::conformance::mapped_file_at(addr).unwrap_or_default();
    assert_eq!(mapped, path.display().to_string());
}

#[test]
fn concurrent_first_reads_parse_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("c.parquet");
    write_parquet(&path);
    let pool = ok(Pool::builder().build());
    let r = ok(pool.register_file(&path, None));
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                assert_eq!(
                    ok(pool.get(&r)).as_table().map(Table::num_rows),
                    Some(10_000)
                )
            });
        }
    });
    assert_eq!(pool.stats().file_reads, 1);
}

#[test]
fn registered_files_are_never_modified_or_deleted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let paths = files(dir.path());
    let before: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect();
    {
        let pool = ok(Pool::builder().memory_limit(1 << 20).build());
        let refs = ok(pool.register_files(paths.clone(), None));
        for r in &refs {
            drop(ok(pool.get(r)));
        }
        ok(pool.move_to_disk(&refs[0]));
        ok(pool.copy_to_disk(&refs[1]));
        ok(pool.delete(&refs[2]));
        assert!(matches!(
            pool.retain(&refs[0]),
            Err(Error::Unsupported { .. })
        ));
        drop(refs);
    }
    for (p, b) in paths.iter().zip(before) {
        assert_eq!(
            std::fs::read(p).ok(),
            Some(b),
            "{} changed or vanished",
            p.display()
        );
    }
}

#[test]
fn a_file_changed_after_its_first_read_is_reported() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("m.csv");
    write_csv(&path);
    let pool = ok(Pool::builder().build());
    let r = ok(pool.register_file(&path, None));
    drop(ok(pool.get(&r)));
    ok(pool.shrink_to(0));
    std::fs::write(&path, "id,x,name\n1,2.0,z\n").unwrap_or_else(|e| panic!("{e}"));
    match pool.get(&r) {
        Err(e @ Error::InputFile { .. }) => assert!(e.to_string().contains("changed since"), "{e}"),
        other => panic!("expected InputFile, got {other:?}"),
    }
    // Registered again, the new content is read.
    let again = ok(pool.register_file(&path, None));
    assert_eq!(
        ok(pool.get(&again)).as_table().map(Table::num_rows),
        Some(1)
    );
}

#[test]
fn partial_reads_equal_slicing_the_whole() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pool = ok(Pool::builder().build());
    for path in files(dir.path()) {
        let r = ok(pool.register_file(&path, None));
        let reads = pool.stats().file_reads;
        let cols = Selection {
            columns: Some(vec!["name".into(), "id".into()]),
            batches: None,
        };
        let part = ok(pool.read_selection(&r, &cols));
        assert_eq!(
            pool.stats().file_reads,
            reads,
            "a partial read is not a first read"
        );
        let names: Vec<&str> = part
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, vec!["name", "id"], "{}", path.display());
        assert_eq!(ids(&part), (0..10_000).collect::<Vec<_>>());
        if path.extension().is_some_and(|e| e != "csv") {
            let rows = Selection {
                columns: None,
                batches: Some(1..3),
            };
            let part = ok(pool.read_selection(&r, &rows));
            assert_eq!(
                ids(&part),
                (2500..7500).collect::<Vec<_>>(),
                "{}",
                path.display()
            );
        } else {
            let rows = Selection {
                columns: None,
                batches: Some(1..3),
            };
            assert!(
                pool.read_selection(&r, &rows).is_err(),
                "CSV has no batches to select"
            );
        }
        // Once in memory, the same selection comes from memory.
        let whole = ok(pool.get(&r));
        let from_memory = ok(pool.read_selection(&r, &cols));
        assert_eq!(
            ids(&from_memory),
            ids(whole.as_table().unwrap_or_else(|| panic!("table")))
        );
    }
}

#[test]
fn directories_and_globs_register_every_matching_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for i in 0..5 {
        write_csv(&dir.path().join(format!("part-{i}.csv")));
    }
    std::fs::write(dir.path().join("README.txt"), "not a table").unwrap_or_else(|e| panic!("{e}"));
    let pool = ok(Pool::builder().build());
    assert_eq!(
        ok(pool.register_glob(&dir.path().display().to_string(), None)).len(),
        5
    );
    let pattern = format!("{}/part-[0-2].csv", dir.path().display());
    let refs = ok(pool.register_glob(&pattern, None));
    assert_eq!(refs.len(), 3);
    assert_eq!(
        ok(pool.get(&refs[2])).as_table().map(Table::num_rows),
        Some(10_000)
    );
}
