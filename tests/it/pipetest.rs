//! `edgeguard test`: the shipped pipeline tests pass through the binary, a
//! broken expectation fails readably (pinned), invalid test files are
//! diagnosed like specs, and every input and expectation kind is driven.

use crate::support::*;

#[test]
fn the_shipped_pipeline_tests_pass() {
    let out = eg(["test", "pipelines/demo.yaml", "pipelines/faults.yaml"]).run();
    out.code(0);
    for name in ["faults-are-found", "overheat-fires-and-resolves", "spike-and-stuck", "drift-and-dropout"] {
        assert!(out.stdout.contains("ok   pipelines/") && out.stdout.contains(name), "{name}:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("4 tests: 4 passed, 0 failed"), "{}", out.stdout);
    // A folder runs every test file in it.
    let all = eg(["test", "pipelines", "--filter", "overheat"]).run();
    all.code(0);
    assert!(all.stdout.contains("1 test: 1 passed"), "{}", all.stdout);
}

/// A copy of the demo's tests with the title expectation broken: exit 1,
/// and the failure says what was expected, what was sent instead, where.
#[test]
fn a_broken_expectation_fails_readably() {
    let dir = tmp();
    std::fs::copy(repo().join("pipelines/demo.yaml"), dir.path().join("demo.yaml")).unwrap();
    let tests = std::fs::read_to_string(repo().join("pipelines/demo.test.yaml")).unwrap();
    assert!(tests.contains("title: boiler.temp at 96.2 degC"));
    let broken = tests
        .replace("title: boiler.temp at 96.2 degC", "title: boiler.temp at 95.0 degC")
        .replace("state: resolved, at: 70s", "state: resolved, at: 80s");
    write(dir.path(), "demo.test.yaml", &broken);
    let out = eg(["test", "demo.yaml", "--filter", "overheat"]).dir(dir.path()).run();
    out.code(1);
    // Times of tests vary from run to run.
    insta::with_settings!({filters => vec![(r"\(\d+\.\d ms\)", "(… ms)")]}, {
        insta::assert_snapshot!("broken_expectation", out.stdout);
    });

    let json = eg(["test", "demo.yaml", "--filter", "overheat", "--format", "json"]).dir(dir.path()).run();
    json.code(1);
    let lines = json.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "fail");
    assert_eq!(lines[0]["failures"].as_array().unwrap().len(), 2);
    assert!(lines[0]["failures"][0]["line"].as_u64().unwrap() > 1);

    let junit = eg(["test", "demo.yaml", "--format", "junit"]).dir(dir.path()).run();
    junit.code(1);
    assert!(junit.stdout.starts_with("<?xml"), "{}", junit.stdout);
    assert!(
        junit.stdout.contains("<testsuites name=\"edgeguard test\" tests=\"2\" failures=\"1\""),
        "{}",
        junit.stdout
    );
    assert!(junit.stdout.contains("<failure message=\"expected a notification to log"), "{}", junit.stdout);
}

const SPEC: &str = r#"version: 1
name: t
sources:
  sim:
    type: simulate
    signals:
      tank.level: {shape: sine, mean: 50}
      tank.temp: {shape: sine, mean: 20}
channels:
  "tank.*": {range: [0, 100], stale: 5s}
detect:
  jump: {channel: tank.level, method: rate, max_rate: 5/s}
alerts:
  high:
    when: "channel == 'tank.level' and value > 90"
    for: 10s
    repeat: 20s
    notify: [hook]
    title: "{{ channel }} at {{ value }}"
notifiers:
  hook:
    type: webhook
    url: http://127.0.0.1:9/hook
    body: '{"text": {{ title }}, "state": {{ state }}}'
"#;

#[test]
fn series_drive_readings_anomalies_alerts_and_captured_notifications() {
    let dir = tmp();
    write(dir.path(), "tank.yaml", SPEC);
    let tests = r#"version: 1
tests:
  fills-up:
    series:
      tank.level: 50+10x4 95x59 50
      tank.temp: 20 _x3 bad timeout 20x2 stale
    duration: 2m
    expect:
      - {reading: tank.temp, at: 4s, quality: bad, flags: []}
      - {reading: tank.temp, at: 5s, quality: bad, flags: [timeout]}
      - {reading: tank.temp, at: 7s, value: 20, quality: good}
      - {reading: tank.temp, at: 13s, quality: bad, flags: [stale]}
      - {anomaly: tank.level, detector: jump, at: 1s, within: 1s}
      - {no_anomaly: tank.level, between: [5s, 1m]}
      - {alert: high, state: pending, at: 5s}
      - {alert: high, state: firing, at: 15s}
      - {alert: high, state: resolved, at: 1m5s}
      - {notification: hook, state: firing, at: 15s, title: tank.level at 95.0, message_json: {state: firing}}
      - {notification: hook, state: firing, at: 35s, message_contains: '"text": "tank.level at 95.0"'}
      - {notification: hook, state: resolved, at: 1m5s}
  held-by-a-silence:
    series:
      tank.level: 95x30 50
    silences: [{rule: high, until: 20s}]
    expect:
      - {alert: high, state: firing, at: 10s}
      - {notification: hook, state: firing, at: 20s}
  louder:
    set: {alerts.high.for: 2s}
    series:
      tank.level: 95x5
    expect:
      - {alert: high, state: firing, at: 2s}
"#;
    write(dir.path(), "tank.test.yaml", tests);
    let out = eg(["test", "tank.test.yaml"]).dir(dir.path()).run();
    out.code(0);
    assert!(out.stdout.contains("3 tests: 3 passed, 0 failed"), "{}", out.stdout);

    // The timeline: pending, firing, what was held by the silence and why, repeats.
    let ex = eg(["test", "tank.yaml", "--explain", "held-by-a-silence"]).dir(dir.path()).run();
    ex.code(0);
    insta::assert_snapshot!("explain_silence", ex.stdout);
    let ex = eg(["test", "tank.yaml", "--explain", "fills-up"]).dir(dir.path()).run();
    ex.code(0);
    assert!(ex.stdout.contains("35s  high  tank.level  repeat"), "{}", ex.stdout);
    assert!(ex.stdout.contains("held until `for` 10s has passed"), "{}", ex.stdout);
    eg(["test", "tank.yaml", "--filter", "no-such"])
        .dir(dir.path())
        .run()
        .code(2)
        .stderr_has("no test's name contains");
    // A spec named like a test file: `x.test.test.yaml` tests `x.test.yaml`.
    write(dir.path(), "x.test.yaml", SPEC);
    write(dir.path(), "x.test.test.yaml", "version: 1\ntests:\n  t:\n    series: {tank.level: 50}\n");
    eg(["test", "x.test.test.yaml"]).dir(dir.path()).run().code(0);
    let typo = eg(["test", "tank.yaml", "--explain", "fills-upp"]).dir(dir.path()).run();
    typo.code(2).stderr_has("did you mean `fills-up`?");
}

#[test]
fn a_fixture_file_is_an_input() {
    let dir = tmp();
    write(dir.path(), "tank.yaml", SPEC);
    let mut fixture = String::new();
    for s in 0..30 {
        let v = if s < 3 { 50 } else { 96 };
        fixture += &format!(
            "{{\"kind\":\"reading\",\"ts\":\"2026-03-01T00:00:{s:02}Z\",\"channel\":\"tank.level\",\"value\":{v}}}\n"
        );
    }
    write(dir.path(), "fill.ndjson", &fixture);
    write(
        dir.path(),
        "tank.test.yaml",
        "version: 1\ntests:\n  from-a-file:\n    file: fill.ndjson\n    expect:\n      - {alert: high, state: firing, at: 13s}\n      - {notification: hook, title_contains: '96'}\n",
    );
    eg(["test", "tank.yaml"]).dir(dir.path()).run().code(0);
    std::fs::remove_file(dir.path().join("fill.ndjson")).unwrap();
    let out = eg(["test", "tank.yaml"]).dir(dir.path()).run();
    out.code(66);
    assert!(out.stdout.contains("the test could not run: cannot read"), "{}", out.stdout);
}

/// (code, test file text): each shows one problem of a test file.
fn cases() -> Vec<(&'static str, &'static str)> {
    vec![
        ("test_E010", "version: 1\ntests:\n  t:\n    series: {tank.level: 50}\n    expect:\n      - {alert: high, at: 1s, whithin: 2s}\n"),
        ("test_E040", "version: 1\ntests:\n  t:\n    series: {tank.level: 50}\n    expect:\n      - {alert: hihg, at: 1s}\n"),
        ("test_E090", "version: 1\ntests:\n  t:\n    series: {tank.level: 50x10 hot}\n    expect: []\n"),
        ("test_E091", "version: 1\ntests:\n  t:\n    series: {tank.level: 50}\n    expect:\n      - {alert: high, anomaly: tank.level, at: 1s}\n"),
    ]
}

#[test]
fn invalid_test_files_are_diagnosed_like_specs() {
    let dir = tmp();
    write(dir.path(), "tank.yaml", SPEC);
    for (name, text) in cases() {
        write(dir.path(), "tank.test.yaml", text);
        let v = eg(["validate", "tank.test.yaml"]).dir(dir.path()).run();
        v.code(78);
        insta::assert_snapshot!(name, v.stderr);
        let t = eg(["test", "tank.yaml"]).dir(dir.path()).run();
        t.code(78).stderr_has("nothing was run");
        assert!(t.stdout.is_empty());
    }
    // A test's `set` that the spec does not take is found by `validate`
    // too, at the test's `set`, and nothing runs.
    write(
        dir.path(),
        "tank.test.yaml",
        "version: 1\ntests:\n  t:\n    set: {alerts.hihg.for: 2s}\n    series: {tank.level: 50}\n",
    );
    eg(["validate", "tank.test.yaml"]).dir(dir.path()).run().code(78).stderr_has("tank.test.yaml:4:5");
    eg(["test", "tank.yaml"]).dir(dir.path()).run().code(78).stderr_has("with this `set`");
    write(dir.path(), "tank.test.yaml", "version: 1\ntests:\n  t:\n    series: {tank.level: 50}\n");
    eg(["validate", "tank.test.yaml"]).dir(dir.path()).run().code(0).stderr_has("1 of 1 test file valid");
    eg(["validate", "tank.test.yaml", "tank.yaml"]).dir(dir.path()).run().code(0).stderr_has("2 of 2 files valid");
    // Missing files: the test file, the spec beside a test file, a spec's tests.
    eg(["test", "nope.test.yaml"]).dir(dir.path()).run().code(66);
    write(dir.path(), "orphan.test.yaml", "version: 1\ntests: {}\n");
    eg(["test", "orphan.test.yaml"]).dir(dir.path()).run().code(66).stderr_has("orphan.yaml");
    write(dir.path(), "other.yaml", SPEC);
    eg(["test", "other.yaml"]).dir(dir.path()).run().code(66).stderr_has("no other.test.yaml beside it");
}

/// `alert SPEC --explain FIXTURE`: the timeline a fixture's records make,
/// with why each notification waited (a mute window, an inhibition).
#[test]
fn alert_explain_tells_why_a_notification_waited() {
    let dir = tmp();
    let spec = r#"version: 1
name: t
sources:
  plc:
    type: simulate
    signals:
      tank.level: {shape: sine, mean: 50}
alerts:
  high:
    when: "channel == 'tank.level' and value > 90"
    for: 10s
    notify: [hook]
    title: "{{ channel }} at {{ value }}"
    mute: [{start: "00:00", end: "00:01", tz: UTC}]
  plc-down:
    over: sources
    when: "down"
    notify: [hook]
    inhibit: {rules: [high], equal: [source]}
notifiers:
  hook: {type: stdout}
"#;
    write(dir.path(), "tank.yaml", spec);
    let mut fixture = String::new();
    let line = |s: u32, body: &str| {
        format!(
            "{{\"ts\":\"2026-03-01T00:{:02}:{:02}Z\",\"channel\":\"tank.level\",\"source\":\"plc\",{body}}}\n",
            s / 60,
            s % 60
        )
    };
    // Above 90 from 0s: fires at 10s inside the mute window (until 1m);
    // the PLC is down from 1m to 1m30s, which inhibits it; back at 1m30s.
    for s in 0..120 {
        fixture += &match s {
            60..90 => line(s, "\"quality\":\"bad\",\"flags\":[\"timeout\"]"),
            _ => line(s, "\"value\":95"),
        };
    }
    write(dir.path(), "day.ndjson", &fixture);
    let out = eg(["alert", "tank.yaml", "--explain", "day.ndjson"]).dir(dir.path()).run();
    out.code(0);
    let t = &out.stdout;
    assert!(t.starts_with("day.ndjson: alert timeline"), "{t}");
    assert!(t.contains("10s  high  tank.level  firing     told once: no `repeat`"), "{t}");
    assert!(t.contains("10s  high  tank.level    held     in a mute window"), "{t}");
    assert!(t.contains("held     inhibited while `plc-down` fires"), "{t}");
    assert!(t.contains("1m30s  high  tank.level  firing     the hold is over: notifying"), "{t}");
    // Through stdin, one rule only; an unknown rule is a usage error.
    let only =
        eg(["alert", "tank.yaml", "--explain", "-", "--rule", "plc-down"]).dir(dir.path()).stdin(fixture.clone()).run();
    only.code(0);
    assert!(only.stdout.contains("plc-down") && !only.stdout.contains("high  tank.level"), "{}", only.stdout);
    eg(["alert", "tank.yaml", "--explain", "day.ndjson", "--rule", "hihg"]).dir(dir.path()).run().code(2);
    eg(["alert", "tank.yaml", "--explain", "none.ndjson"]).dir(dir.path()).run().code(66);
    // Unreadable (a folder): 74, as for --render.
    eg(["alert", "tank.yaml", "--explain", "."]).dir(dir.path()).run().code(74).stderr_has("cannot read");
    eg(["alert", "tank.yaml", "--render", "."]).dir(dir.path()).run().code(74).stderr_has("cannot read");
    write(dir.path(), "bad.ndjson", "{\"ts\": 1\n");
    eg(["alert", "tank.yaml", "--explain", "bad.ndjson"]).dir(dir.path()).run().code(65).stderr_has("bad.ndjson:1");
}
