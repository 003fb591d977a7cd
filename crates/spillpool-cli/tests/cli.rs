//! The real `spillpool` binary, in real processes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use spillpool::conformance::pattern;
use spillpool::{BackendExt, Key, ShmBackend, Value};

const BIN: &str = env!("CARGO_BIN_EXE_spillpool");

fn spillpool(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run spillpool: {e}"))
}

fn ok(args: &[&str]) -> Vec<u8> {
    let out = spillpool(args);
    assert!(
        out.status.success(),
        "spillpool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn fails(args: &[&str]) -> String {
    let out = spillpool(args);
    assert!(
        !out.status.success(),
        "spillpool {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

/// Destroys a shared-memory namespace when dropped.
struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = ShmBackend::destroy_namespace(&self.0);
    }
}
fn ns(tag: &str) -> Ns {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ns(format!("cli-{tag}-{}-{nanos}", std::process::id()))
}

/// The three backends that other processes can reach.
fn shared_uris(dir: &Path, shm: &Ns) -> Vec<String> {
    vec![
        format!("lmdb://{}", dir.join("lmdb").display()),
        format!("file://{}", dir.join("files").display()),
        format!("shm://{}", shm.0),
    ]
}

#[test]
fn put_get_ls_rm_stat_round_trip() {
    let dir = tmp();
    let uri = format!("file://{}", dir.path().join("kv").display());
    let input = dir.path().join("in.bin");
    let data = pattern(3 << 20, 1);
    std::fs::write(&input, &data).unwrap_or_else(|e| panic!("{e}"));
    ok(&[
        "kv",
        &uri,
        "put",
        "a/one",
        input.to_str().unwrap_or_default(),
    ]);
    // From standard input.
    let mut child = Command::new(BIN)
        .args(["kv", &uri, "put", "a/two"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    child
        .stdin
        .take()
        .map(|mut s| s.write_all(b"from stdin"))
        .transpose()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(child.wait().is_ok_and(|s| s.success()));
    ok(&["kv", &uri, "put", "b", input.to_str().unwrap_or_default()]);

    assert_eq!(ok(&["kv", &uri, "get", "a/one"]), data.to_vec());
    assert_eq!(ok(&["kv", &uri, "get", "a/two"]), b"from stdin");
    let out = dir.path().join("out.bin");
    ok(&[
        "kv",
        &uri,
        "get",
        "b",
        "-o",
        out.to_str().unwrap_or_default(),
    ]);
    assert_eq!(std::fs::read(&out).ok(), Some(data.to_vec()));
    assert_eq!(
        String::from_utf8_lossy(&ok(&["kv", &uri, "ls"])),
        "a/one\na/two\nb\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&ok(&["kv", &uri, "ls", "a/"])),
        "a/one\na/two\n"
    );
    let stat = String::from_utf8_lossy(&ok(&["kv", &uri, "stat"])).into_owned();
    assert!(stat.contains("keys: 3"), "{stat}");
    ok(&["kv", &uri, "rm", "a/one"]);
    assert_eq!(
        String::from_utf8_lossy(&ok(&["kv", &uri, "ls"])),
        "a/two\nb\n"
    );
}

#[test]
fn errors_name_the_key_and_uri_and_exit_non_zero() {
    let dir = tmp();
    let uri = format!("lmdb://{}", dir.path().display());
    let err = fails(&["kv", &uri, "get", "missing/key"]);
    assert!(err.contains("missing/key") && err.contains(&uri), "{err}");
    let err = fails(&["kv", &uri, "rm", "missing/key"]);
    assert!(
        err.contains("missing/key") && err.contains("not found"),
        "{err}"
    );
    let err = fails(&["kv", &uri, "put", "../escape", "/dev/null"]);
    assert!(err.contains("../escape") && err.contains("'..'"), "{err}");
    let err = fails(&["kv", "ftp://x", "ls"]);
    assert!(
        err.contains("ftp://x") && err.contains("unknown scheme"),
        "{err}"
    );
    let err = fails(&["kv", &uri, "put", "k", "/no/such/file"]);
    assert!(err.contains("/no/such/file"), "{err}");
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"this is not parquet").unwrap_or_else(|e| panic!("{e}"));
    let err = fails(&[
        "kv",
        &uri,
        "put",
        "--table",
        "k",
        junk.to_str().unwrap_or_default(),
    ]);
    assert!(err.contains("junk.parquet"), "{err}");
    ok(&["kv", &uri, "put", "blob", "/dev/null"]);
    let err = fails(&["kv", &uri, "get", "--table", "blob"]);
    assert!(err.contains("blob, not a table"), "{err}");
    let err = fails(&["kv", &format!("file://{}", dir.path().display()), "destroy"]);
    assert!(err.contains("shm://"), "{err}");
}

#[test]
fn a_closed_pipe_exits_quietly() {
    let dir = tmp();
    let uri = format!("file://{}", dir.path().display());
    let input = dir.path().join("big");
    std::fs::write(&input, pattern(32 << 20, 5)).unwrap_or_else(|e| panic!("{e}"));
    ok(&["kv", &uri, "put", "big", input.to_str().unwrap_or_default()]);
    let mut child = Command::new(BIN)
        .args(["kv", &uri, "get", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut first = [0u8; 10];
    child
        .stdout
        .take()
        .map(|mut s| s.read_exact(&mut first))
        .transpose()
        .unwrap_or_else(|e| panic!("{e}"));
    // stdout is closed here: the writer gets EPIPE.
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fifty_processes_write_at_once_and_all_land() {
    let dir = tmp();
    let shm = ns("fifty");
    let inputs: Vec<(PathBuf, bytes::Bytes)> = (0..50)
        .map(|i| {
            let p = dir.path().join(format!("in-{i}"));
            let d = pattern(1 << 20, 1000 + i);
            std::fs::write(&p, &d).unwrap_or_else(|e| panic!("{e}"));
            (p, d)
        })
        .collect();
    for uri in shared_uris(dir.path(), &shm) {
        let children: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, (p, _))| {
                Command::new(BIN)
                    .args(["kv", &uri, "put", &format!("writer/{i}")])
                    .arg(p)
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn writer {i}: {e}"))
            })
            .collect();
        for (i, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.status.success(),
                "{uri}: writer {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let backend = spillpool::open(&uri).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            backend.list("writer/").map(|k| k.len()).ok(),
            Some(50),
            "{uri}"
        );
        for (i, (_, d)) in inputs.iter().enumerate() {
            let v = backend
                .fetch_value(&key(&format!("writer/{i}")))
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert!(v.as_blob() == Some(d), "{uri}: writer/{i} differs");
        }
    }
}

#[test]
fn values_survive_reopen_in_another_process() {
    let dir = tmp();
    let shm = ns("reopen");
    for uri in shared_uris(dir.path(), &shm) {
        // Written here, read by a new process.
        {
            let backend = spillpool::open(&uri).unwrap_or_else(|e| panic!("{e}"));
            backend
                .put_value(&key("from/parent"), &Value::Blob(pattern(5 << 20, 8)))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            ok(&["kv", &uri, "get", "from/parent"]),
            pattern(5 << 20, 8).to_vec(),
            "{uri}"
        );
        // Written by a process that has exited, read here.
        let input = dir.path().join("child-input");
        std::fs::write(&input, pattern(2 << 20, 9)).unwrap_or_else(|e| panic!("{e}"));
        ok(&[
            "kv",
            &uri,
            "put",
            "from/child",
            input.to_str().unwrap_or_default(),
        ]);
        let backend = spillpool::open(&uri).unwrap_or_else(|e| panic!("{e}"));
        let v = backend
            .fetch_value(&key("from/child"))
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert!(v.as_blob() == Some(&pattern(2 << 20, 9)), "{uri}");
    }
}

#[test]
fn shm_destroy_from_the_cli() {
    let shm = ns("destroy");
    let uri = format!("shm://{}", shm.0);
    ok(&["kv", &uri, "put", "k", "/dev/null"]);
    ok(&["kv", &uri, "destroy"]);
    assert!(!Path::new(&format!("/dev/shm/spillpool-{}", shm.0)).exists());
    assert!(fails(&["kv", &uri, "destroy"]).contains("does not exist"));
}

fn sample_batch() -> RecordBatch {
    let n = 10_000;
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(0..n))),
        (
            "x",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (i % 7 != 0).then_some(i as f64 * 0.5)),
            )),
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| ["alpha", "beta", "delta", "eta"][i as usize % 4]),
            )),
        ),
    ];
    RecordBatch::try_from_iter(cols).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn tables_from_parquet_and_ipc_come_back_as_arrow_ipc() {
    let dir = tmp();
    let uri = format!("lmdb://{}", dir.path().join("db").display());
    let batch = sample_batch();
    let parquet_path = dir.path().join("in.parquet");
    {
        let file = std::fs::File::create(&parquet_path).unwrap_or_else(|e| panic!("{e}"));
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        w.close().unwrap_or_else(|e| panic!("{e}"));
    }
    ok(&[
        "kv",
        &uri,
        "put",
        "--table",
        "t",
        parquet_path.to_str().unwrap_or_default(),
    ]);
    let out = dir.path().join("out.arrow");
    ok(&[
        "kv",
        &uri,
        "get",
        "--table",
        "t",
        "-o",
        out.to_str().unwrap_or_default(),
    ]);
    let file = std::fs::File::open(&out).unwrap_or_else(|e| panic!("{e}"));
    let reader =
        arrow_ipc::reader::FileReader::try_new(file, None).unwrap_or_else(|e| panic!("{e}"));
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    let back = arrow_select::concat::concat_batches(&batch.schema(), &batches)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, batch);
    // And the IPC file goes back in as a table.
    ok(&[
        "kv",
        &uri,
        "put",
        "--table",
        "t2",
        out.to_str().unwrap_or_default(),
    ]);
    let backend = spillpool::open(&uri).unwrap_or_else(|e| panic!("{e}"));
    let t2 = backend
        .fetch_value(&key("t2"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t2.as_table().map(|t| t.num_rows()), Some(10_000));
}

#[test]
fn demo_runs_and_verifies() {
    let dir = tmp();
    let out = ok(&[
        "demo",
        "backends",
        "--data",
        "8MiB",
        "--value-size",
        "1MiB",
        "--dir",
        dir.path().to_str().unwrap_or_default(),
    ]);
    let text = String::from_utf8_lossy(&out);
    let last = text.lines().last().unwrap_or_default();
    assert!(last.starts_with("verified 32 values"), "{text}");
    for scheme in ["mem://", "file://", "lmdb://", "shm://"] {
        assert!(text.contains(scheme), "{scheme} missing from {text}");
    }
}

/// Parses `verified N values, X GiB, peak RSS Y MiB` (the demo's last line).
fn demo_summary(out: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(out);
    let last = text.lines().last().unwrap_or_default().to_string();
    let words: Vec<&str> = last.split_whitespace().collect();
    assert!(
        last.starts_with("verified ") && last.ends_with(" MiB"),
        "last line: {last:?}\n{text}"
    );
    let n = words
        .get(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    let rss = words
        .get(words.len() - 2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    (n, rss)
}

#[test]
fn pool_demo_verifies_everything_within_the_memory_bound() {
    let dir = tmp();
    let spill = dir.path().join("spill");
    let args = |data: &str| -> Vec<String> {
        [
            "demo",
            "--memory-limit",
            "16MiB",
            "--value-size",
            "1MiB",
            "--data",
            data,
            "--spill-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([spill.display().to_string()])
        .collect()
    };
    // The baseline: the same binary and code path with data that never spills.
    let base = Command::new(BIN)
        .args(args("4MiB"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );
    let (_, base_rss) = demo_summary(&base.stdout);
    let big = Command::new(BIN)
        .args(args("160MiB"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        big.status.success(),
        "{}",
        String::from_utf8_lossy(&big.stderr)
    );
    let (n, rss) = demo_summary(&big.stdout);
    assert_eq!(n, 160);
    let text = String::from_utf8_lossy(&big.stdout);
    assert!(
        text.contains("spilled") && !text.contains("spilled  0 values"),
        "{text}"
    );
    // Bound + 10 % + baseline (MiB, rounded up).
    assert!(
        rss <= base_rss + 18,
        "peak RSS {rss} MiB, baseline {base_rss} MiB, bound 16 MiB\n{text}"
    );
    assert!(
        !spill.join(spillpool::pool::LOCK_FILE).exists(),
        "spill lock left behind"
    );
}

#[test]
fn pool_demo_rejects_bad_flags_clearly() {
    let err = fails(&["demo", "--memory-limit", "lots"]);
    assert!(
        err.contains("--memory-limit") && err.contains("lots"),
        "{err}"
    );
    let err = fails(&["demo", "--policy", "fifo"]);
    assert!(err.contains("fifo"), "{err}");
}

#[test]
fn pool_bench_runs_and_writes_csv() {
    for (tables, kind) in [(false, "blobs"), (true, "tables")] {
        let dir = tmp();
        let csv = dir.path().join("pool.csv");
        let mut args = vec![
            "bench",
            "pool",
            "--memory-limit",
            "4MiB",
            "--data",
            "16MiB",
            "--value-size",
            "1MiB",
            "--repeats",
            "2",
            "--dir",
            dir.path().to_str().unwrap_or_default(),
            "--out",
            csv.to_str().unwrap_or_default(),
        ];
        if tables {
            args.push("--tables");
        }
        let out = ok(&args);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("ratios"), "{text}");
        assert!(text.contains(&format!("16 {kind} of 1.00 MiB")), "{text}");
        let rows = std::fs::read_to_string(&csv).unwrap_or_else(|e| panic!("{e}"));
        let mut lines = rows.lines();
        assert_eq!(
            lines.next(),
            Some("suite,storage,op,bytes,repeat,seconds,mb_per_s")
        );
        let body: Vec<&str> = lines.collect();
        assert_eq!(body.len(), 2 * 5, "{rows}");
        for line in body {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 7, "{line}");
            assert_eq!(cols[3], (16u64 << 20).to_string());
            assert!(cols[6].parse::<f64>().is_ok_and(|v| v > 0.0), "{line}");
        }
    }
    // A table's columns cover every byte: a size they cannot is refused
    // (it used to drop the tail and count it anyway).
    let err = fails(&[
        "bench",
        "pool",
        "--tables",
        "--value-size",
        "1000",
        "--data",
        "4KiB",
    ]);
    assert!(
        err.contains("--value-size 1000") && err.contains("64"),
        "{err}"
    );
}

#[test]
fn filters_bench_runs_and_reports_every_filter() {
    let dir = tmp();
    let csv = dir.path().join("filters.csv");
    let out = ok(&[
        "bench",
        "filters",
        "--size",
        "256KiB",
        "--repeats",
        "1",
        "--out",
        csv.to_str().unwrap_or_default(),
    ]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("copy on all cores:"), "{text}");
    // The ratio table: one row per data set and filter, seven numbers each.
    for set in ["random-f64", "categorical"] {
        for filter in [
            "zstd:1",
            "zstd:3",
            "lz4",
            "gzip:6",
            "aes-256-gcm",
            "zstd:3+aes-256-gcm",
        ] {
            let name = format!("{set}/{filter}");
            // Not the samples' rows, which say write or read after the name.
            let row = text
                .lines()
                .find(|l| {
                    let mut words = l.split_whitespace();
                    words.next() == Some(name.as_str())
                        && words.next().is_some_and(|w| w.parse::<f64>().is_ok())
                })
                .unwrap_or_else(|| panic!("no ratio row for {name}: {text}"));
            let numbers: Vec<f64> = row
                .split_whitespace()
                .skip(1)
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect();
            assert_eq!(numbers.len(), 7, "{row}");
            assert!(numbers.iter().all(|v| v.is_finite() && *v > 0.0), "{row}");
        }
    }
    // Per data set, filter and repeat: the filter path, the codec on one
    // core and on all, each written and read, and three machine limits.
    let rows = std::fs::read_to_string(&csv).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.lines().count(), 1 + 2 * 6 * 9, "{rows}");
    assert_eq!(rows.matches(",copy-all,").count(), 2 * 6, "{rows}");
}

fn with_env(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SPILLPOOL_ENCRYPTION_KEY")
        .env_remove("SPILLPOOL_ENCRYPTION_KEY_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn uri_filters_compress_and_encrypt_with_the_key_from_the_environment() {
    let dir = tmp();
    let plain = format!("file://{}", dir.path().display());
    let sealed = format!("{plain}?compression=zstd:3&encryption=aes-256-gcm");
    let secret = "c0ffee".repeat(10) + "abcd";
    let key = [("SPILLPOOL_ENCRYPTION_KEY", secret.as_str())];
    let data: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("SECRET-ROW-{i};").into_bytes())
        .collect();

    let put = with_env(&["kv", &sealed, "put", "k"], &key, Some(&data));
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let on_disk = std::fs::read(dir.path().join("k")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        on_disk.len() < data.len() / 4,
        "not compressed: {} bytes",
        on_disk.len()
    );
    assert!(
        !on_disk.windows(10).any(|w| w == b"SECRET-ROW"),
        "plaintext on disk"
    );

    let get = with_env(&["kv", &sealed, "get", "k"], &key, None);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(get.stdout, data);

    for (uri, env, expect) in [
        (plain.as_str(), &[][..], "is encrypted"),
        (sealed.as_str(), &[][..], "SPILLPOOL_ENCRYPTION_KEY"),
        (
            sealed.as_str(),
            &[("SPILLPOOL_ENCRYPTION_KEY", &*"11".repeat(32))][..],
            "another key",
        ),
        (
            sealed.as_str(),
            &[("SPILLPOOL_ENCRYPTION_KEY", "not-hex")][..],
            "64 hexadecimal",
        ),
    ] {
        let out = with_env(&["kv", uri, "get", "k"], env, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{uri} {env:?}: {err}"
        );
        assert!(
            !err.contains(&secret) && !err.contains("1111111111"),
            "a key leaked: {err}"
        );
        assert!(out.stdout.is_empty());
    }

    // Compression alone is self-describing: a plain URI reads it back.
    let zstd = format!("{plain}?compression=zstd");
    assert!(
        with_env(&["kv", &zstd, "put", "z"], &[], Some(&data))
            .status
            .success()
    );
    let out = with_env(&["kv", &plain, "get", "z"], &[], None);
    assert_eq!(out.stdout, data);
}

#[test]
fn lazy_demo_and_bench_register_read_and_report() {
    let dir = tmp();
    let files = dir.path().join("files");
    let out = ok(&[
        "bench",
        "lazy",
        "--files",
        "300",
        "--dir",
        files.to_str().unwrap_or_default(),
        "--sample",
        "5",
        "--repeats",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out);
    let last = text.lines().last().unwrap_or_default();
    let ns: f64 = last
        .strip_prefix("registration_ns_per_file=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?}"));
    assert!(ns > 0.0, "{text}");
    assert!(text.contains("first read:"), "{text}");
    let count = std::fs::read_dir(&files).map(|d| d.count()).unwrap_or(0);
    assert_eq!(count, 300, "the files are the user's and stay");

    let out = ok(&[
        "demo",
        "lazy",
        files.to_str().unwrap_or_default(),
        "--sample",
        "3",
    ]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("registered 300 files"), "{text}");
    assert_eq!(text.matches(" rows in ").count(), 3, "{text}");
    assert!(text.contains("parsed 3 of 300 files"), "{text}");
    assert_eq!(
        std::fs::read_dir(&files).map(|d| d.count()).unwrap_or(0),
        300
    );
}
