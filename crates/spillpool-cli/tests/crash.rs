//! Crash consistency: writers killed with SIGKILL at random points, many
//! times; every acknowledged write survives intact, nothing else appears.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use spillpool::{BackendExt, Key};

const BIN: &str = env!("CARGO_BIN_EXE_spillpool");

/// What `spillpool kv fill` writes for index `i` (same generator).
fn fill_value(seed: u64, i: u64, size: usize) -> Vec<u8> {
    let mut state = (seed << 32 ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn rounds() -> u64 {
    std::env::var("SPILLPOOL_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12)
}

#[test]
fn killed_writers_lose_no_acknowledged_value() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut state = 0xC0FF_EE00_1234_5678u64;
    let mut total_acked = 0;
    for uri in [
        format!("lmdb://{}", dir.path().join("db").display()),
        format!("file://{}", dir.path().join("files").display()),
    ] {
        let mut killed = 0;
        for round in 0..rounds() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let kill_after = 1 + state % 60;
            let prefix = format!("r{round}/");
            let mut child = Command::new(BIN)
                .args([
                    "kv", &uri, "fill", "--count", "100000", "--size", "20KiB", "--prefix", &prefix,
                ])
                .args(["--seed", &round.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn: {e}"));
            let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
            let mut acked: Option<u64> = None;
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                acked = line.trim().parse().ok();
                if acked.is_some_and(|a| a + 1 >= kill_after) {
                    break;
                }
            }
            // SIGKILL, possibly in the middle of the next put.
            let _ = child.kill();
            let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
            // The writer may have acknowledged more puts before the signal
            // landed: they are still in the pipe. Only the put after the
            // last acknowledgement may be there unacknowledged.
            for line in lines {
                let Ok(line) = line else { break };
                if let Ok(a) = line.trim().parse() {
                    acked = Some(a);
                }
            }
            killed += u64::from(!status.success());
            let acked =
                acked.unwrap_or_else(|| panic!("{uri}: round {round}: nothing acknowledged"));
            total_acked += acked + 1;

            let backend = spillpool::open(&uri).unwrap_or_else(|e| panic!("{uri}: reopen: {e}"));
            let keys = backend.list(&prefix).unwrap_or_else(|e| panic!("{e}"));
            for k in &keys {
                let i: u64 = k.as_str()[prefix.len()..].parse().unwrap_or(u64::MAX);
                assert!(
                    i <= acked + 1,
                    "{uri}: {k} was never written (acknowledged up to {acked})"
                );
                let got = backend
                    .fetch_value(k)
                    .unwrap_or_else(|e| panic!("{uri}: {k}: {e}"));
                assert_eq!(
                    got.as_blob().map(|b| b.as_ref()),
                    Some(&fill_value(round, i, 20 << 10)[..]),
                    "{uri}: {k} is not what was written"
                );
            }
            for i in 0..=acked {
                let k = Key::new(format!("{prefix}{i:08}")).unwrap_or_else(|e| panic!("{e}"));
                assert!(keys.contains(&k), "{uri}: acknowledged {k} is lost");
            }
        }
        assert!(killed > 0, "{uri}: no writer was killed");
        if uri.starts_with("file://") {
            // Reopening removed the temporary files of the killed writers.
            let left = std::fs::read_dir(dir.path().join("files/.tmp"))
                .map(|d| d.count())
                .unwrap_or(99);
            assert_eq!(left, 0, "{uri}: temporary files left behind");
        }
        eprintln!(
            "{uri}: {} rounds, {killed} writers killed, 0 values lost",
            rounds()
        );
    }
    eprintln!("{total_acked} acknowledged writes checked");
}
