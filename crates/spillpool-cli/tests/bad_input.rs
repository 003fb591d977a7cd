//! Bad input at every door gets an error that names what and where, a
//! non-zero exit, and leaves stored values intact.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_spillpool");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap_or_else(|e| panic!("run spillpool: {e}"))
}

/// Runs a command that must fail; returns its standard error.
fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "spillpool {args:?} should fail");
    assert!(
        !err.contains("panicked"),
        "spillpool {args:?} panicked: {err}"
    );
    err
}

fn ok(args: &[&str]) -> String {
    let out = run(args, &[]);
    assert!(
        out.status.success(),
        "spillpool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keys_names_uris_and_sizes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let uri = format!("file://{}", dir.path().join("kv").display());
    for (key, rule) in [
        ("", "empty"),
        ("a//b", "empty segments"),
        ("/abs", "start with '/'"),
        ("x/../y", "'..'"),
    ] {
        let err = fails(&["kv", &uri, "put", key, "/dev/null"], &[]);
        assert!(
            err.contains("invalid key") && err.contains(rule),
            "{key:?}: {err}"
        );
    }
    let long = "k".repeat(2000);
    assert!(fails(&["kv", &uri, "put", &long, "/dev/null"], &[]).contains("at most 1024 bytes"));
    for (name, rule) in [
        ("a/b", "'/'"),
        ("..", "'.' or '..'"),
        ("tab\there", "control"),
    ] {
        let err = fails(&["store", &uri, "write", name, "s", "/dev/null.csv"], &[]);
        assert!(
            err.contains("invalid library name") && err.contains(rule),
            "{name:?}: {err}"
        );
    }
    for (bad, says) in [
        ("ftp://x", "unknown scheme"),
        ("file://", "needs a directory"),
        ("lmdb:///tmp/x?sync=maybe", "sync"),
        ("mem://?colour=blue", "colour"),
        ("file:///tmp/x?compression=snappy", "snappy"),
        ("lmdb:///tmp/x?map_size=huge", "map_size"),
    ] {
        let err = fails(&["kv", bad, "ls"], &[]);
        assert!(err.contains(bad) || err.contains(says), "{bad}: {err}");
        assert!(err.contains(says), "{bad}: {err}");
    }
    for (var, value) in [
        ("SPILLPOOL_MEMORY_LIMIT", "lots"),
        ("SPILLPOOL_DISK_LIMIT", "-5"),
        ("SPILLPOOL_POLICY", "fifo"),
        ("SPILLPOOL_COMPRESSION", "zip"),
    ] {
        let err = fails(
            &["demo", "--data", "1MiB", "--value-size", "1MiB"],
            &[(var, value)],
        );
        assert!(
            err.contains(var) && err.contains(value),
            "{var}={value}: {err}"
        );
    }
    let err = fails(&["demo", "--memory-limit", "12 parsecs"], &[]);
    assert!(err.contains("12 parsecs"), "{err}");
}

#[test]
fn bad_table_files_are_named_with_their_format() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let uri = format!("lmdb://{}", dir.path().join("db").display());
    let path = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(path("ragged.csv"), "a,b\n1,2\n3\n4,5,6\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path("junk.parquet"), b"PAR1 not really").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path("junk.arrow"), b"ARROW1\0\0 garbage").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path("empty.csv"), b"").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path("data.txt"), b"1,2").unwrap_or_else(|e| panic!("{e}"));
    ok(&["store", &uri, "mklib", "lib"]);
    for (file, format) in [
        ("ragged.csv", "CSV"),
        ("junk.parquet", "Parquet"),
        ("junk.arrow", "Arrow IPC"),
        ("empty.csv", "CSV"),
        ("missing.parquet", "Parquet"),
    ] {
        let err = fails(&["store", &uri, "write", "lib", "s", &path(file)], &[]);
        assert!(err.contains(file) && err.contains(format), "{file}: {err}");
    }
    let err = fails(
        &["store", &uri, "write", "lib", "s", &path("data.txt")],
        &[],
    );
    assert!(
        err.contains("data.txt") && err.contains(".parquet"),
        "{err}"
    );
    // Nothing was written by the failures.
    assert_eq!(ok(&["store", &uri, "libs"]), "lib\n");
    assert_eq!(ok(&["store", &uri, "ls", "lib"]), "");
}

/// Truncated and foreign files placed in a file backend's directory are
/// errors naming the key and the file; other values stay readable.
#[test]
fn truncated_and_foreign_files_in_a_store_directory() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path().join("kv");
    let uri = format!("file://{}", root.display());
    let data = dir.path().join("data.bin");
    std::fs::write(&data, vec![7u8; 100_000]).unwrap_or_else(|e| panic!("{e}"));
    let d = data.display().to_string();
    ok(&["kv", &uri, "put", "good", &d]);
    ok(&["kv", &uri, "put", "cut", &d]);
    let cut = root.join("cut");
    let bytes = std::fs::read(&cut).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("notes.txt"), b"someone else's file")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("empty"), b"").unwrap_or_else(|e| panic!("{e}"));
    for (key, file) in [
        ("cut", "cut"),
        ("notes.txt", "notes.txt"),
        ("empty", "empty"),
    ] {
        let err = fails(&["kv", &uri, "get", key], &[]);
        assert!(
            err.contains("corrupt") && err.contains(key) && err.contains(file),
            "{key}: {err}"
        );
    }
    assert_eq!(run(&["kv", &uri, "get", "good"], &[]).stdout.len(), 100_000);
}
