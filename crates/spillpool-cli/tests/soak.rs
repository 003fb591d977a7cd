//! The soak in CI form: seconds instead of minutes (`docs/RELIABILITY.md`
//! has the long command).

use std::process::Command;

#[test]
fn soak_holds_the_memory_bound_and_loses_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_spillpool"))
        .args([
            "soak",
            "--memory-limit",
            "16MiB",
            "--value-size",
            "256KiB",
            "--threads",
            "4",
            "--duration",
            "4s",
        ])
        .output()
        .unwrap_or_else(|e| panic!("run spillpool: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("values lost: 0") && text.contains("files left: 0"),
        "{text}"
    );
    // The run did real work: spills, restores and verified reads.
    let ops = text
        .lines()
        .find(|l| l.starts_with("ops:"))
        .unwrap_or_default();
    let number = |word: &str| -> u64 {
        ops.split(", ")
            .find(|p| p.contains(word))
            .and_then(|p| {
                p.split_whitespace()
                    .rev()
                    .nth(1)
                    .or(p.split_whitespace().next())
            })
            .and_then(|n| n.trim_start_matches("ops:").trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(number("puts") > 100, "{ops}");
    assert!(
        text.contains("spilled") && !text.contains("spilled  0 values"),
        "{text}"
    );
}

#[test]
fn soak_rejects_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_spillpool"))
        .args(["soak", "--memory-limit", "lots"])
        .output()
        .unwrap_or_else(|e| panic!("run spillpool: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--memory-limit") && err.contains("lots"),
        "{err}"
    );
}
