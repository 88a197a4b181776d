//! SIGTERM drains and commits; SIGKILL loses only the uncommitted batch.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const SPEC: &str = "version: 1\nname: t\nstore: {path: s.duckdb, batch: 1000, flush: 10s}\nchannels:\n  \"plant.*\": {range: [-1e9, 1e9]}\n";

fn line(i: u64) -> String {
    format!("{{\"ts\":\"2026-11-22T00:00:00Z\",\"channel\":\"plant.seq\",\"value\":{i}}}\n")
}

/// Feeds lines through a pipe until the process has committed some, then signals it.
fn feed_and_signal(signal: i32) -> (i32, tempfile::TempDir, u64) {
    let dir = tmp();
    write(dir.path(), "spec.yaml", SPEC);
    #[allow(clippy::zombie_processes)] // reaped with wait4 below, for its exit status and rusage
    let mut child = Command::new(bin())
        .args(["acquire", "spec.yaml", "--input", "-", "--store-input", "--no-progress", "--format", "ndjson"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut sent = 0u64;
    // 25,500 lines: 25 full batches and a half one that only a drain commits.
    for _ in 0..255 {
        let chunk: String = (sent..sent + 100).map(line).collect();
        stdin.write_all(chunk.as_bytes()).unwrap();
        sent += 100;
    }
    stdin.flush().unwrap();
    // Let it read everything, then signal while stdin is still open.
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, signal) };
    let (code, _) = wait4(child.id() as i32);
    drop(stdin);
    (code, dir, sent)
}

fn assert_prefix(db: &std::path::Path) -> i64 {
    let n = query_i64(db, "SELECT count(*) FROM readings");
    let distinct = query_i64(db, "SELECT count(DISTINCT value) FROM readings");
    let max = query_i64(db, "SELECT coalesce(max(CAST(value AS BIGINT)), -1) FROM readings");
    assert_eq!((distinct, max), (n, n - 1), "stored rows are not the first {n} lines");
    n
}

#[test]
fn sigterm_stores_every_line_read() {
    let (code, dir, sent) = feed_and_signal(libc::SIGTERM);
    assert_eq!(code, 0);
    assert_eq!(assert_prefix(&dir.path().join("s.duckdb")), sent as i64);
}

#[test]
fn sigkill_keeps_committed_batches() {
    let (code, dir, sent) = feed_and_signal(libc::SIGKILL);
    assert_eq!(code, 128 + libc::SIGKILL);
    let n = assert_prefix(&dir.path().join("s.duckdb"));
    assert_eq!(n % 1000, 0, "only whole batches are committed");
    assert!(n >= 1000 && n < sent as i64, "{n} of {sent}");
}

/// SIGTERM while a fast producer is still writing: what was printed is what
/// was stored, and it is the first lines of the input, in order.
#[test]
fn sigterm_under_load_stores_a_prefix() {
    let dir = tmp();
    write(dir.path(), "spec.yaml", SPEC);
    let out_path = dir.path().join("out.ndjson");
    #[allow(clippy::zombie_processes)] // reaped with wait4 below, for its exit status and rusage
    let mut child = Command::new(bin())
        .args(["acquire", "spec.yaml", "--input", "-", "--store-input", "--no-progress", "--format", "ndjson", "-q"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut i = 0u64;
        loop {
            let chunk: String = (i..i + 1000).map(line).collect();
            if stdin.write_all(chunk.as_bytes()).is_err() {
                return;
            }
            i += 1000;
            if i >= 5_000_000 {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, _) = wait4(child.id() as i32);
    let _ = writer.join();
    assert_eq!(code, 0);
    let printed = std::fs::read_to_string(&out_path).unwrap().lines().count() as i64;
    let stored = assert_prefix(&dir.path().join("s.duckdb"));
    assert!(stored > 0);
    assert_eq!(printed, stored);
}
