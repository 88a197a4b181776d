//! `detect`: streaming detectors through the binary, into the store, and
//! through pipes.

use crate::support::*;

const WIDE: &str = "channels.\"boiler.pressure\".range=[0, 100]";

fn demo(cmd: &str, extra: &[&str]) -> Run {
    let mut args = vec![cmd, "pipelines/demo.yaml", "--no-store", "--format", "ndjson", "--set", WIDE];
    args.extend_from_slice(extra);
    eg(args)
}

#[test]
fn a_pipe_of_stages_gives_what_one_detect_gives() {
    let x = demo("acquire", &["--duration", "30m"]).run();
    x.code(0);
    let direct = demo("detect", &["--input", "-"]).stdin(x.stdout.clone()).run();
    let fused = demo("fuse", &["--input", "-"]).stdin(x.stdout.clone()).run();
    let piped = demo("detect", &["--input", "-"]).stdin(fused.stdout.clone()).run();
    direct.code(0);
    piped.code(0);
    assert!(direct.stdout.contains("\"kind\":\"anomaly\""), "no anomaly to compare");
    assert_eq!(direct.stdout, piped.stdout);
    // Running detect on its own output changes nothing.
    let again = demo("detect", &["--input", "-"]).stdin(direct.stdout.clone()).run();
    assert_eq!(again.stdout, direct.stdout);
}

#[test]
fn the_pressure_spike_is_an_anomaly_in_the_store_and_fail_on_sees_it() {
    let dir = tmp();
    let db = dir.path().join("d.duckdb");
    let out = eg([
        "detect".as_ref(),
        "pipelines/demo.yaml".as_ref(),
        "--duration".as_ref(),
        "30m".as_ref(),
        "--set".as_ref(),
        WIDE.as_ref(),
        "--store".as_ref(),
        db.as_os_str(),
        "--fail-on".as_ref(),
        "anomaly".as_ref(),
    ])
    .run();
    // The spike at 0:45 of every 5 minutes, up and down: 12 in 30 minutes.
    out.code(3).stderr_has("12 anomalies");
    let anomalies: Vec<serde_json::Value> = out.lines().into_iter().filter(|r| r["kind"] == "anomaly").collect();
    assert_eq!(anomalies.len(), 12);
    assert_eq!(anomalies[0]["detector"], "pressure-jump");
    assert_eq!(anomalies[0]["ts"], "2026-01-01T00:00:45.000Z");
    assert!(anomalies[0]["detail"].as_str().unwrap().contains("more than 0.5/s"));
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM anomalies WHERE detector = 'pressure-jump' AND method = 'rate'"),
        12
    );
    assert_eq!(query_i64(&db, "SELECT epoch_us(min(ts)) FROM anomalies"), 1_767_225_645_000_000);
}

/// An isolation forest trains on the store's history: a backtest from 0 h 50
/// finds a spike at 1 h 05 that a forest still in training (its first 512
/// readings, 43 min at 5 s) would not, and a live `--once` run starts with a
/// trained forest.
#[test]
fn iforest_trains_on_the_stores_history() {
    let dir = tmp();
    write(
        dir.path(),
        "f.yaml",
        "version: 1\nname: f\nstore: {path: f.duckdb, retention: 3650d}\n\
         sources:\n  s: {type: simulate, interval: 5s, seed: 3, signals: {\n\
         \x20   t.a: {shape: sine, mean: 20, amplitude: 2, period: 20m, noise: 0.05, faults: [{at: 65m, kind: spike, magnitude: 30}]}}}\n\
         detect:\n  forest: {channel: \"t.*\", method: iforest, seed: 9}\n",
    );
    eg(["acquire", "f.yaml", "--duration", "90m", "--no-progress"]).dir(dir.path()).run().code(0);
    let backtest_with = |extra: &[&str]| {
        let mut args =
            vec!["detect", "f.yaml", "--from-store", "--since", "2026-01-01T00:50:00Z", "--format", "ndjson"];
        args.extend(extra);
        let out = eg(args).dir(dir.path()).run();
        out.code(0);
        out.lines().iter().map(|a| a["ts"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let backtest = || backtest_with(&[]);
    assert_eq!(backtest(), vec!["2026-01-01T01:05:00.000Z"]);
    // With a `warmup` the history is the stored readings of that period
    // before the backtest, read in the replay's time windows: the same
    // spike, and only it.
    assert_eq!(backtest_with(&["--set", "detect.forest.warmup=40m"]), vec!["2026-01-01T01:05:00.000Z"]);
    // Live: the forest is trained before the first reading and saved as such.
    eg(["detect", "f.yaml", "--once", "--no-progress"]).dir(dir.path()).run().code(0);
    let db = dir.path().join("f.duckdb");
    let state = query_string(&db, "SELECT value FROM state WHERE component = 'detect' AND key = 'detectors'");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let forest = &state["forest"]["channels"]["t.a"]["state"]["Forest"];
    assert_eq!(forest["trained"], true, "{forest}");
    assert_eq!(forest["training"].as_array().map(Vec::len), Some(512));
    // Without the history, 1 h 05 falls among the training readings.
    duckdb::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM reading_rows WHERE ts < '2026-01-01 00:50:00'", [])
        .unwrap();
    assert_eq!(backtest(), Vec::<String>::new());
    // Trees are validated like every other parameter.
    eg(["validate", "f.yaml", "--set", "detect.forest.trees=0"]).dir(dir.path()).run().code(78).stderr_has("trees");
}

/// Cron: each `detect --once` continues the detectors of the one before.
/// Windows are saved without their readings (the store holds them; the
/// next run puts them back from there: `crash.rs` checks that a restored
/// window judges).
#[test]
fn once_runs_continue_the_detectors() {
    let dir = tmp();
    let db = dir.path().join("s.duckdb");
    for _ in 0..3 {
        eg(["detect".as_ref(), "pipelines/demo.yaml".as_ref(), "--once".as_ref(), "--store".as_ref(), db.as_os_str()])
            .run()
            .code(0);
    }
    let state = query_string(&db, "SELECT value FROM state WHERE component = 'detect' AND key = 'detectors'");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let window = &state["temp-spike"]["channels"]["boiler.temp.a"]["state"]["Window"];
    assert_eq!(window["held"]["n"], 3, "the window holds one reading per run: {window}");
    assert!(window.get("items").is_none(), "a window is saved without its readings: {window}");
    assert_eq!(state["temp-spike"]["method"], "zscore");
}

/// Runs `args` on the demo with `--store db`, the wide pressure range, and
/// a retention long enough for the virtual clock's 2026-01-01.
fn on_store(args: &[&str], db: &std::path::Path) -> Out {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend(["--store".into(), db.as_os_str().to_owned()]);
    for s in ["--set", WIDE, "--set", "store.retention=3650d", "--no-progress"] {
        all.push(s.into());
    }
    eg(all).run()
}

/// `detect --from-store`: a backtest over what acquire stored, with a
/// summary per detector, channel and day; `--set` sweeps a parameter.
#[test]
fn a_backtest_replays_the_store() {
    let dir = tmp();
    let db = dir.path().join("b.duckdb");
    on_store(&["acquire", "pipelines/demo.yaml", "--duration", "60m", "--format", "ndjson"], &db).code(0);
    let before = query_i64(&db, "SELECT count(*) FROM readings");
    let out = on_store(&["detect", "pipelines/demo.yaml", "--from-store", "--format", "ndjson"], &db);
    out.code(0);
    assert!(out.lines().iter().all(|r| r["kind"] == "anomaly"), "only anomalies are printed");
    out.stderr_has("pressure-jump        boiler.pressure                  2026-01-01        24");
    out.stderr_has(&format!("{before} readings"));
    out.stderr_has("24 anomalies stored");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), before, "a backtest stores no readings");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM anomalies WHERE detector = 'pressure-jump'"), 24);
    // A sweep from 00:10 with a laxer limit: nothing on the pressure.
    let lax = on_store(
        &[
            "detect",
            "pipelines/demo.yaml",
            "--from-store",
            "--since",
            "2026-01-01T00:10:00Z",
            "--format",
            "ndjson",
            "--set",
            "detect.pressure-jump.max_rate=10/s",
        ],
        &db,
    );
    lax.code(0);
    assert!(!lax.stdout.contains("pressure-jump"), "{}", lax.stdout);
    // --check and --dump-plan run nothing, with --from-store too.
    let checked = eg(["detect", "pipelines/demo.yaml", "--from-store", "--check"]).run();
    checked.code(0).stderr_has("ok (detect --from-store)");
    let plan = eg(["detect", "pipelines/demo.yaml", "--from-store", "--dump-plan"]).run();
    plan.code(0);
    assert!(plan.stdout.contains("\"detect\""), "{}", plan.stdout);
    // Nothing to read from: usage; a store file that is not there: 66.
    eg(["detect", "pipelines/input-only.yaml", "--from-store", "--no-store"]).run().code(2);
    let dir = tmp();
    write(dir.path(), "s.yaml", "version: 1\nname: t\nstore: {path: gone.duckdb}\n");
    eg(["detect", "s.yaml", "--from-store"]).dir(dir.path()).run().code(66).stderr_has("gone.duckdb");
    // A DuckDB file that is not an edgeguard store: reading it fails, exit 74.
    let conn = duckdb::Connection::open(dir.path().join("gone.duckdb")).unwrap();
    conn.execute_batch("CREATE TABLE other (i INTEGER)").unwrap();
    drop(conn);
    eg(["detect", "s.yaml", "--from-store"]).dir(dir.path()).run().code(74).stderr_has("cannot read the store");
}

/// A pattern across two channels, from NDJSON on stdin.
#[test]
fn a_pattern_across_channels() {
    let dir = tmp();
    write(
        dir.path(),
        "p.yaml",
        "version: 1\nname: p\ndetect:\n  dry-run:\n    channel: \"pump.*\"\n    method: pattern\n    steps: [\"channel == 'pump.run' and value == 1\", \"channel == 'pump.pres' and value < 2\"]\n    within: 10s\n",
    );
    let lines = [
        ("pump.run", "00", 1.0),
        ("pump.pres", "02", 3.1),
        ("pump.pres", "06", 1.4),
        ("pump.run", "20", 1.0),
        ("pump.pres", "40", 1.2),
    ]
    .iter()
    .map(|(c, s, v)| format!("{{\"ts\":\"2026-05-01T10:00:{s}Z\",\"channel\":\"{c}\",\"value\":{v}}}\n"))
    .collect::<String>();
    let out = eg(["detect", "p.yaml", "--input", "-", "--only", "anomaly", "--fail-on", "anomaly"])
        .dir(dir.path())
        .stdin(lines)
        .run();
    out.code(3);
    let found = out.lines();
    assert_eq!(found.len(), 1, "{}", out.stdout);
    assert_eq!(
        (found[0]["ts"].as_str(), found[0]["detector"].as_str()),
        (Some("2026-05-01T10:00:06.000Z"), Some("dry-run"))
    );
    assert_eq!(found[0]["detail"], "all 2 steps in order within 6 s");
}

/// Six hours of a simulated line with four injected faults: each is found by
/// the component meant for it, and the clean sensors raise no false alarm.
#[test]
fn each_injected_fault_is_found_by_its_detector() {
    let out = eg(["detect", "pipelines/faults.yaml", "--duration", "6h", "--no-store", "--format", "ndjson"]).run();
    out.code(0);
    let lines = out.lines();
    let anomalies: Vec<&serde_json::Value> = lines.iter().filter(|r| r["kind"] == "anomaly").collect();
    let first = |detector: &str, channel: &str| {
        anomalies
            .iter()
            .find(|a| a["detector"] == detector && a["channel"] == channel)
            .map(|a| a["ts"].as_str().unwrap().to_string())
    };
    // a: the spike at 1 h, by the MAD detector and by the isolation forest.
    assert_eq!(first("spikes", "line.a.temp").as_deref(), Some("2026-01-01T01:00:00.000Z"));
    assert_eq!(first("forest", "line.a.temp").as_deref(), Some("2026-01-01T01:00:00.000Z"));
    // b: stuck from 2 h, found once the flatline lasted 5 min.
    assert_eq!(first("stuck", "line.b.temp").as_deref(), Some("2026-01-01T02:05:00.000Z"));
    // c: drifting from 3 h: voted out of the fused channel, then suspect itself.
    let fused_out: Vec<&str> = lines
        .iter()
        .filter(|r| r["channel"] == "line.temp" && r["voted_out"] == serde_json::json!(["line.c.temp"]))
        .map(|r| r["ts"].as_str().unwrap())
        .collect();
    assert!(fused_out.len() > 100, "c voted out only {} times", fused_out.len());
    assert!(
        fused_out.iter().all(|t| *t >= "2026-01-01T03:00:00" && *t < "2026-01-01T03:41:00"),
        "{:?}",
        fused_out.first()
    );
    assert!(lines.iter().any(|r| r["channel"] == "line.c.temp" && r["quality"] == "suspect"));
    // d: silent from 4 h: one bad `stale` reading 30 s after its last.
    let stale: Vec<&str> = lines
        .iter()
        .filter(|r| r["channel"] == "line.d.temp" && r["flags"] == serde_json::json!(["stale"]))
        .map(|r| r["ts"].as_str().unwrap())
        .collect();
    assert_eq!(stale, vec!["2026-01-01T04:00:25.000Z"]);
    // False alarms: none on the clean sensors in 6 hours (bound: 1 per hour).
    let clean = anomalies.iter().filter(|a| a["channel"] == "line.e.temp" || a["channel"] == "line.f.temp").count();
    assert!(clean <= 6, "{clean} false alarms on the clean sensors in 6 h");
    assert_eq!(clean, 0, "false alarms per hour on clean sensors: {:.2}", clean as f64 / 6.0);
}
