//! `acquire` on the simulator: determinism, faults, the store, the lock, pipes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn the_demo_is_deterministic() {
    let run = || eg(["acquire", "pipelines/demo.yaml", "--duration", "20m", "--no-store", "--format", "ndjson"]).run();
    let (a, b) = (run(), run());
    a.code(0);
    b.code(0);
    assert!(a.stdout.len() > 100_000);
    assert!(a.stdout == b.stdout, "two runs with the same seed differ");
    let other =
        eg(["acquire", "pipelines/demo.yaml", "--duration", "20m", "--no-store", "--set", "sources.plant.seed=8"])
            .run();
    assert!(other.stdout != a.stdout, "the seed changes nothing");
}

#[test]
fn the_demo_faults_are_flagged() {
    let out = eg(["acquire", "pipelines/demo.yaml", "--duration", "45m", "--no-store"]).run();
    out.code(0);
    let lines = out.lines();
    let flagged = |ch: &str, flag: &str| {
        lines
            .iter()
            .filter(|l| l["channel"] == ch && l["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == flag)))
            .count()
    };
    // The faults repeat every 5 minutes: nine times in 45.
    // temp.b drifts away and snaps back at 0:30 (too fast a step), all
    // three drift up with the burner and snap back at 1:50.
    assert_eq!(flagged("boiler.temp.b", "rate"), 18, "rate");
    assert_eq!((flagged("boiler.temp.a", "rate"), flagged("boiler.temp.c", "rate")), (9, 9));
    // The pressure spike at 0:45 is in range but too fast, up and down.
    assert_eq!(flagged("boiler.pressure", "out_of_range"), 0);
    assert_eq!(flagged("boiler.pressure", "rate"), 18);
    let spike = lines.iter().find(|l| l["channel"] == "boiler.pressure" && l["quality"] == "suspect").unwrap();
    assert_eq!(spike["ts"], "2026-01-01T00:00:45.000Z");
    // The flow drops out at 0:50 for 30 s: one stale gap reading, 10 s after the last.
    assert_eq!(flagged("boiler.flow", "stale"), 9);
    let stale = lines.iter().find(|l| l["channel"] == "boiler.flow" && l["quality"] == "bad").unwrap();
    assert_eq!((stale["ts"].as_str(), stale["value"].as_f64()), (Some("2026-01-01T00:00:59.000Z"), None));
    let first = &lines[0];
    assert_eq!(first["ts"], "2026-01-01T00:00:00.000Z");
    assert_eq!(first["source"], "plant");
}

#[test]
fn count_and_once_and_the_store() {
    let dir = tmp();
    let db = dir.path().join("demo.duckdb");
    let out = eg([
        "acquire".as_ref(),
        "pipelines/demo.yaml".as_ref(),
        "--count".as_ref(),
        // 40 s of the plant, before the flow's dropout adds a stale reading.
        "203".as_ref(),
        "--store".as_ref(),
        db.as_os_str(),
    ])
    .run();
    out.code(0);
    assert_eq!(out.lines().len(), 203);
    out.stderr_has("203 stored in");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 203);
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT channel) FROM readings"), 5);
    assert_eq!(query_i64(&db, "SELECT max(CAST(value AS BIGINT)) FROM meta WHERE key = 'schema_version'"), 7);

    let out =
        eg(["acquire".as_ref(), "pipelines/demo.yaml".as_ref(), "--once".as_ref(), "--store".as_ref(), db.as_os_str()])
            .run();
    out.code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 5, "one sample of every signal");
    // The demo keeps 30 days: opening the store dropped the virtual-clock
    // readings of January 2026 (retention on open).
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 5);
    // --once is stamped now, not on the virtual clock.
    assert!(lines[0]["ts"].as_str().unwrap() > "2026-11-01");
}

#[test]
fn a_second_writer_gets_75_naming_the_holder() {
    let dir = tmp();
    let db = dir.path().join("held.duckdb");
    #[allow(clippy::zombie_processes)] // reaped with wait4 below
    let mut first = Command::new(bin())
        .args([
            "acquire".as_ref(),
            "pipelines/demo.yaml".as_ref(),
            "--store".as_ref(),
            db.as_os_str(),
            "--format".as_ref(),
            "ndjson".as_ref(),
        ])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first reading on stdout means the store is open.
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let out =
        eg(["acquire".as_ref(), "pipelines/demo.yaml".as_ref(), "--once".as_ref(), "--store".as_ref(), db.as_os_str()])
            .run();
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let (code, _) = wait4(first.id() as i32);
    out.code(75).stderr_has(&format!("(PID {})", first.id()));
    assert_eq!(code, 0, "the holder drains and exits 0 on SIGTERM");
    assert!(query_i64(&db, "SELECT count(*) FROM readings") >= 5);
}

#[test]
fn a_closed_pipe_is_a_quiet_success() {
    let started = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped with wait4 below, for its exit status and rusage
    let mut child = Command::new(bin())
        .args(["acquire", "pipelines/demo.yaml", "--duration", "30d", "--no-store"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // stdout is dropped here, like `| head -1`.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn unknown_flags_and_missing_store_folder() {
    eg(["acquire", "pipelines/demo.yaml", "--once", "--bogus"]).run().code(2);
    eg(["acquire", "pipelines/demo.yaml", "--once", "--store", "/no/such/dir/x.duckdb"])
        .run()
        .code(74)
        .stderr_has("does not exist");
}

/// Two `--once` runs continue one channel state through the store: the gap
/// between them is a stale gap, as it would be in one long run.
#[test]
fn once_runs_continue_the_channel_state() {
    let dir = tmp();
    let spec = write(
        dir.path(),
        "spec.yaml",
        "version: 1\nname: t\nstore: {path: s.duckdb}\nsources:\n  sim: {type: simulate, signals: {a.b: {mean: 1}}}\nchannels:\n  a.b: {stale: 300ms}\n",
    );
    let once = || eg(["acquire".as_ref(), spec.as_os_str(), "--once".as_ref()]).run();
    let (db, wal) = (dir.path().join("s.duckdb"), dir.path().join("s.duckdb.wal"));
    let first = once();
    first.code(0);
    assert_eq!(first.lines().len(), 1);
    // The process checkpoints its store before it exits (and does not
    // close DuckDB): the file holds everything, no WAL beside it.
    assert!(!wal.exists(), "a WAL after the first run");
    std::thread::sleep(Duration::from_millis(1000));
    let second = once();
    second.code(0);
    let lines = second.lines();
    assert_eq!(lines.len(), 2, "a stale gap, then the new reading: {}", second.stdout);
    assert_eq!(lines[0]["flags"][0], "stale");
    assert!(!wal.exists(), "a WAL after the second run");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 3);
    // The channel state was updated in place, not added again.
    assert_eq!(query_i64(&db, "SELECT count(*) FROM state WHERE component = 'validate'"), 1);
}

/// A store as an older edgeguard wrote it: schema `version`, with the
/// readings columns after `unit` that version had, and one reading of
/// channel `old.channel`.
fn old_store(db: &std::path::Path, version: u32, more_columns: &str, more_values: &str) {
    let conn = duckdb::Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
         INSERT INTO meta VALUES ('schema_version', '{version}');
         CREATE TABLE readings (ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, value DOUBLE,
            quality VARCHAR NOT NULL, flags VARCHAR, source VARCHAR, unit VARCHAR{more_columns});
         CREATE TABLE anomalies (ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, detector VARCHAR NOT NULL,
            method VARCHAR, value DOUBLE, score DOUBLE, expected DOUBLE, threshold DOUBLE, detail VARCHAR);
         CREATE TABLE alerts (ts TIMESTAMPTZ NOT NULL, rule VARCHAR NOT NULL, state VARCHAR NOT NULL,
            severity VARCHAR, channel VARCHAR, value DOUBLE, title VARCHAR, fingerprint VARCHAR,
            notifier VARCHAR, error VARCHAR);
         CREATE TABLE state (component VARCHAR NOT NULL, key VARCHAR NOT NULL, value VARCHAR NOT NULL,
            updated TIMESTAMPTZ NOT NULL, PRIMARY KEY (component, key));
         INSERT INTO readings VALUES (now(), 'old.channel', 1.5, 'good', NULL, 'x', NULL{more_values});"
    ))
    .unwrap();
}

/// A store written by schema version 1 (before `text`) is migrated on open
/// and keeps its rows.
#[test]
fn a_version_1_store_is_migrated() {
    let dir = tmp();
    let db = dir.path().join("old.duckdb");
    old_store(&db, 1, "", "");
    let text = "{\"ts\":\"2026-01-01T00:00:00Z\",\"channel\":\"dev.serial\",\"text\":\"EG-100\",\"source\":\"plc\"}\n";
    store_lines(&db, text);
    assert_eq!(query_i64(&db, "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'schema_version'"), 7);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE channel = 'old.channel' AND text IS NULL"), 1);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE text = 'EG-100' AND quality = 'good'"), 1);
}

/// A version 3 store (before commit numbers) is taken to version 4: its
/// rows are kept (with no commit), it gets an epoch, and every commit from
/// then on is numbered 1, 2, … in the same transaction as its records.
#[test]
fn a_version_3_store_gets_commit_numbers_and_an_epoch() {
    let dir = tmp();
    let db = dir.path().join("v3.duckdb");
    old_store(&db, 3, ", text VARCHAR, inputs VARCHAR, voted_out VARCHAR, spread DOUBLE", ", NULL, NULL, NULL, NULL");
    let store = ["--store".as_ref(), db.as_os_str()];
    let run = |args: &[&std::ffi::OsStr]| eg(args.iter().chain(store.iter())).run();
    let acquire = |n: &str| {
        run(&[
            "acquire".as_ref(),
            "pipelines/demo.yaml".as_ref(),
            "--count".as_ref(),
            n.as_ref(),
            "--no-progress".as_ref(),
        ])
    };
    acquire("10").code(0);
    assert_eq!(query_i64(&db, "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'schema_version'"), 7);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE channel = 'old.channel' AND commit_no IS NULL"), 1);
    let epoch = crate::support::query_string(&db, "SELECT value FROM meta WHERE key = 'epoch'");
    assert_eq!(epoch.len(), 16, "{epoch}");
    assert!(epoch.chars().all(|c| c.is_ascii_hexdigit()), "{epoch}");
    assert_eq!(query_i64(&db, "SELECT max(commit_no) FROM commits"), 1);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE commit_no = 1"), 10);
    assert_eq!(query_i64(&db, "SELECT readings FROM commits WHERE commit_no = 1"), 10);
    // The next run continues the numbering; the epoch stays.
    acquire("5").code(0);
    assert_eq!(query_i64(&db, "SELECT max(commit_no) FROM commits"), 2);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE commit_no = 2"), 5);
    assert_eq!(crate::support::query_string(&db, "SELECT value FROM meta WHERE key = 'epoch'"), epoch);
    // Commits and their rows agree, and numbers never repeat.
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM commits"),
        query_i64(&db, "SELECT count(DISTINCT commit_no) FROM commits")
    );
    assert_eq!(query_i64(&db, "SELECT sum(readings) FROM commits"), 15);
    // A store made afresh has an epoch of its own.
    let other = dir.path().join("new.duckdb");
    eg([
        "acquire".as_ref(),
        "pipelines/demo.yaml".as_ref(),
        "--count".as_ref(),
        "3".as_ref(),
        "--store".as_ref(),
        other.as_os_str(),
    ])
    .run()
    .code(0);
    assert_ne!(crate::support::query_string(&other, "SELECT value FROM meta WHERE key = 'epoch'"), epoch);
}
