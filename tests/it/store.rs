//! The store's schema (v6 and v7): readings keyed by channel id behind the `readings`
//! view, a v5 store migrated with its rows, rollups kept as readings commit
//! (across commits and runs), checked by `validate`, and carried by backups.

use std::fmt::Write as _;
use std::path::Path;

use crate::support::*;

/// A store as edgeguard 0.1 wrote it at schema version 5 (the SQL of that
/// schema), with a plain reading, a fused one, one without a source or unit
/// and one `bad` without a value.
fn v5_store(db: &Path) {
    let conn = duckdb::Connection::open(db).unwrap();
    conn.execute_batch(
        "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
         INSERT INTO meta VALUES ('schema_version', '5'), ('epoch', '00112233445566aa');
         CREATE TABLE readings (ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, value DOUBLE,
            quality VARCHAR NOT NULL, flags VARCHAR, source VARCHAR, unit VARCHAR, text VARCHAR,
            inputs VARCHAR, voted_out VARCHAR, spread DOUBLE, commit_no BIGINT);
         CREATE TABLE anomalies (ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, detector VARCHAR NOT NULL,
            method VARCHAR, value DOUBLE, score DOUBLE, expected DOUBLE, threshold DOUBLE, detail VARCHAR,
            commit_no BIGINT);
         CREATE TABLE alerts (ts TIMESTAMPTZ NOT NULL, rule VARCHAR NOT NULL, state VARCHAR NOT NULL,
            severity VARCHAR, channel VARCHAR, value DOUBLE, title VARCHAR, fingerprint VARCHAR,
            notifier VARCHAR, error VARCHAR, commit_no BIGINT, body VARCHAR, labels VARCHAR);
         CREATE TABLE state (component VARCHAR NOT NULL, key VARCHAR NOT NULL, value VARCHAR NOT NULL,
            updated TIMESTAMPTZ NOT NULL, PRIMARY KEY (component, key));
         CREATE TABLE commits (commit_no BIGINT PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, readings BIGINT NOT NULL,
            events BIGINT NOT NULL);
         INSERT INTO commits VALUES (1, '2026-01-01T00:00:10Z', 4, 0);
         INSERT INTO readings VALUES
            ('2026-01-01T00:00:00Z', 'old.a', 1.5, 'good', NULL, 'plc', 'degC', NULL, NULL, NULL, NULL, 1),
            ('2026-01-01T00:00:01Z', 'old.f', 2.5, 'suspect', 'stale', 'fuse', 'degC', NULL, 'old.a,old.b', 'old.b', 0.25, 1),
            ('2026-01-01T00:00:02Z', 'old.n', 3.5, 'good', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1),
            ('2026-01-01T00:00:03Z', 'old.a', NULL, 'bad', 'timeout', 'plc', 'degC', NULL, NULL, NULL, NULL, 1);",
    )
    .unwrap();
}

/// Every row of the `readings` view as text, in order.
fn readings_text(db: &Path) -> Vec<String> {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut st = conn.prepare("SELECT CAST(r AS VARCHAR) FROM readings r ORDER BY ts, channel").unwrap();
    let mut rows = st.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        out.push(r.get::<_, String>(0).unwrap());
    }
    out
}

#[test]
fn a_version_5_store_moves_to_channel_ids_and_reads_the_same() {
    let dir = tmp();
    let db = dir.path().join("v5.duckdb");
    v5_store(&db);
    let before = readings_text(&db);
    let new = "{\"ts\":\"2026-01-01T00:01:00Z\",\"channel\":\"plant.a.temp\",\"value\":20.5,\"source\":\"plc\"}\n";
    store_lines(&db, new);
    assert_eq!(query_i64(&db, "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'schema_version'"), 7);
    // The old rows read as they did, column for column, and the new one follows.
    let after = readings_text(&db);
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(after.len(), before.len() + 1);
    assert!(after[4].contains("'channel': plant.a.temp, 'value': 20.5, 'quality': good"), "{}", after[4]);
    // The rows are in reading_rows, keyed by channel; the view is a view.
    assert_eq!(query_i64(&db, "SELECT count(*) FROM reading_rows"), 5);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM channels"), 4);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM duckdb_views() WHERE view_name = 'readings'"), 1);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE quality = 'bad' AND channel = 'old.a'"), 1);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE source IS NULL AND unit IS NULL"), 1);
    // The epoch and the commit numbering carry on.
    assert_eq!(query_string(&db, "SELECT value FROM meta WHERE key = 'epoch'"), "00112233445566aa");
    assert_eq!(query_i64(&db, "SELECT commit_no FROM readings WHERE channel = 'plant.a.temp'"), 2);
}

/// `n` readings of `a.x` and `a.y`, 7 s apart from `start` s after
/// 2026-01-01, values that go up and down.
fn ndjson(start: i64, n: i64) -> String {
    let mut out = String::new();
    for i in start..start + n {
        let ts = 1_767_225_600 + i * 7;
        let v = ((i * 37) % 101) as f64 / 4.0;
        for (ch, q) in [("a.x", "good"), ("a.y", if i % 5 == 0 { "bad" } else { "suspect" })] {
            let _ = writeln!(
                out,
                "{{\"ts\":\"{}\",\"channel\":\"{ch}\",\"value\":{v},\"quality\":\"{q}\",\"source\":\"s\"}}",
                chrono_like(ts)
            );
        }
    }
    out
}

/// RFC 3339 for a time on 2026-01-01 (UTC), `secs` after the epoch.
fn chrono_like(secs: i64) -> String {
    let s = secs - 1_767_225_600;
    assert!((0..86_400).contains(&s), "the test's readings stay on one day");
    format!("2026-01-01T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The rollups of every tier, and the same aggregates computed from the
/// readings: they must agree row for row.
fn rollups_and_truth(db: &Path) -> (Vec<String>, Vec<String>) {
    let conn = duckdb::Connection::open(db).unwrap();
    let q = |sql: &str| {
        let mut st = conn.prepare(sql).unwrap();
        let mut rows = st.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push(r.get::<_, String>(0).unwrap());
        }
        out
    };
    let rollups = q("SELECT concat_ws('|', channel, every, epoch_us(bucket) // 1000000, min, max, round(avg, 9), count, first, last)
                     FROM rollups ORDER BY every, channel, bucket");
    let truth = q("WITH t(e) AS (VALUES (60), (3600))
                   SELECT concat_ws('|', channel, to_seconds(e), (epoch_us(ts) // 1000000 // e) * e, min(value), max(value),
                          round(avg(value), 9), count(*), arg_min(value, ts), arg_max(value, ts))
                   FROM readings, t WHERE value IS NOT NULL AND quality <> 'bad'
                   GROUP BY channel, e, (epoch_us(ts) // 1000000 // e) * e ORDER BY e, channel, (epoch_us(ts) // 1000000 // e) * e");
    (rollups, truth)
}

#[test]
fn rollups_follow_the_readings_across_commits_and_runs() {
    let dir = tmp();
    let d = dir.path();
    write(
        d,
        "r.yaml",
        "version: 1\nname: r\nstore: {path: r.duckdb, batch: 50, rollups: [{every: 1h, keep: forever}, {every: 1m, keep: 1y}]}\n",
    );
    // Two runs; a minute and the hour span both, and the commits of 50.
    write(d, "one.ndjson", &ndjson(0, 300));
    write(d, "two.ndjson", &ndjson(300, 400));
    for f in ["one.ndjson", "two.ndjson"] {
        eg(["acquire", "r.yaml", "--input", f, "--store-input", "-o", "/dev/null", "--no-progress"])
            .dir(d)
            .run()
            .code(0);
    }
    let db = d.join("r.duckdb");
    assert!(query_i64(&db, "SELECT count(*) FROM commits") > 20);
    let (rollups, truth) = rollups_and_truth(&db);
    assert_eq!(rollups.len(), truth.len());
    assert_eq!(rollups, truth);
    // Bad readings are left out: a.y has fewer than a.x.
    assert!(
        query_i64(&db, "SELECT sum(count) FROM rollups WHERE channel = 'a.y'")
            < query_i64(&db, "SELECT sum(count) FROM rollups WHERE channel = 'a.x'")
    );

    // A backup carries the rollups; the restored store reads the same.
    write(d, "r.yaml", &(std::fs::read_to_string(d.join("r.yaml")).unwrap() + "backup: {dir: backups}\n"));
    let made = eg(["backup", "r.yaml"]).dir(d).run();
    made.code(0);
    let id = made.stdout.trim().to_string();
    let to = d.join("restored.duckdb");
    eg(["backup", "r.yaml", "--restore", &id, "--to", to.to_str().unwrap()]).dir(d).run().code(0);
    assert_eq!(rollups_and_truth(&to).0, rollups);
    assert_eq!(readings_text(&to), readings_text(&db));
}

#[test]
fn rollup_tiers_are_checked() {
    let dir = tmp();
    let cases = [
        ("[{every: 500ms}]", "E030", "a rollup bucket is whole seconds, at least 1s", "store.rollups[0].every"),
        (
            "[{every: 1m, keep: 30s}]",
            "E080",
            "`keep` (30s) is shorter than one bucket (`every: 1m`)",
            "store.rollups[0].keep",
        ),
        ("[{every: 1m}, {every: 60s}]", "E080", "two rollup tiers of `every: 60s`", "store.rollups[1].every"),
        ("[{every: 1m, keep: often}]", "E030", "`often` is not a duration", "store.rollups[0].keep"),
        ("[{every: 1m, kept: 1y}]", "E010", "unknown field `kept`", "store.rollups[0]"),
    ];
    for (rollups, code, message, at) in cases {
        write(dir.path(), "s.yaml", &format!("version: 1\nname: t\nstore:\n  path: s.duckdb\n  rollups: {rollups}\n"));
        let out = eg(["validate", "s.yaml"]).dir(dir.path()).run();
        out.code(78);
        out.stderr_has(&format!("error[{code}]: {message}"));
        out.stderr_has(" --> s.yaml:5:");
        out.stderr_has(&format!("= at: {at}"));
    }
}

/// `serve` answers `/api/v1/readings?every=` from the rollup tier that
/// divides the bucket, from the readings when none does, and past the raw
/// retention from the finest tier kept that long.
#[test]
fn serve_reads_buckets_from_the_tier_that_covers_the_range() {
    use crate::serve::{json, Daemon};
    let dir = tmp();
    write(
        dir.path(),
        "r.yaml",
        "version: 1\nname: r\nstore: {path: r.duckdb, flush: 200ms, retention: 1h, rollups: [{every: 1s}, {every: 1m, keep: 1d}]}\n\
         serve: {token: {env: EG_TOKEN}}\n\
         sources:\n  s: {type: simulate, interval: 100ms, signals: {a.b: {shape: sine, mean: 20, amplitude: 2, period: 10s}}}\n",
    );
    let d = Daemon::start(dir.path(), "r.yaml", &[]);
    let b = d.base.clone();
    let url = |q: &str| format!("{b}/api/v1/readings?channel=a.b&{q}");
    wait_until("two seconds of rollups", 20, || {
        json(&url("since=1h&every=1s"))["buckets"].as_array().is_some_and(|a| a.len() >= 3)
    });
    let r = json(&url("since=1h&every=2s"));
    assert_eq!(r["from"], "rollups 1s", "{r}");
    assert_eq!(r["every"], "2s", "{r}");
    let buckets = r["buckets"].as_array().unwrap();
    assert!(buckets.iter().all(|x| x["min"].as_f64() <= x["avg"].as_f64() && x["avg"].as_f64() <= x["max"].as_f64()));
    assert!(buckets.iter().all(|x| x["count"].as_i64().unwrap() <= 21), "{r}");
    // 1.5s is no multiple of a tier: the readings answer, while they cover the range
    // (`since=1h` with a retention of 1h is just past it).
    assert_eq!(json(&url("since=30m&every=1500ms"))["from"], "readings");
    // Older than the raw retention: the finest tier kept that long, its bucket rounded up.
    let old = json(&url("since=2h&every=1500ms"));
    assert_eq!((old["from"].as_str(), old["every"].as_str()), (Some("rollups 1s"), Some("2s")), "{old}");
    assert_eq!(json(&url("since=2d&every=1h"))["from"], "rollups 1s");
    assert_eq!(json(&url("since=2h&every=5m"))["from"], "rollups 1m");
}
