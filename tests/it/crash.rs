//! State survives a crash: `serve` checkpoints its stage state with the
//! records it reflects, so a `kill -9` neither repeats a notification nor
//! restarts an alert's `for` timer nor empties a detector's window.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::{client, free_port, get, send, Reaped};
use crate::support::*;

const TOKEN: &str = "crash-token-0123456789abcdef";

/// Two rules on posted readings (one fires at once, one after 30 s), a
/// z-score detector on a simulated channel, checkpoints every second.
const SPEC: &str = r#"
version: 1
name: crash
store: {path: s.duckdb, flush: 200ms, checkpoint: 1s}
sources:
  plant:
    type: simulate
    interval: 200ms
    signals:
      det.x: {shape: sine, mean: 10, amplitude: 0.1, period: 10s, noise: 0.05}
detect:
  x-jump: {channel: det.x, method: zscore, window: 10m, threshold: 4}
alerts:
  a-hot:
    when: "channel == 'hot.a' and value > 95"
    repeat: 1h
    notify: [log]
    title: "a {{ value }}"
  b-hot:
    when: "channel == 'hot.b' and value > 95"
    for: 30s
    repeat: 1h
    notify: [log]
    title: "b {{ value }}"
notifiers:
  log: {type: file, path: alerts.log}
serve: {token: {env: EG_TOKEN}}
"#;

fn start(dir: &Path, port: u16) -> Reaped {
    let child = Command::new(env!("CARGO_BIN_EXE_edgeguard"))
        .args(["serve", "crash.yaml", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("EG_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let started = Instant::now();
    while get(&format!("http://127.0.0.1:{port}/readyz"), None).0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "serve did not get ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    Reaped(Some(child))
}

fn post(port: u16, lines: &[String]) {
    let url = format!("http://127.0.0.1:{port}/api/v1/readings");
    let (status, body) = send(client().post(url).body(lines.join("\n")), Some(TOKEN));
    assert_eq!(status, 202, "{body}");
}

fn reading(channel: &str, value: f64) -> String {
    format!(r#"{{"channel":"{channel}","value":{value}}}"#)
}

/// Firing notifications of `rule` in the file notifier's log.
fn firing(dir: &Path, rule: &str) -> usize {
    let log = std::fs::read_to_string(dir.join("alerts.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains(rule) && l.contains("firing")).count()
}

#[test]
fn a_sigkilled_serve_continues_its_alert_timers_and_detector_windows() {
    let dir = tmp();
    write(dir.path(), "crash.yaml", SPEC);
    let port = free_port();
    let mut serve = start(dir.path(), port);

    // hot.a fires at once, hot.b turns pending; det.x fills its window (5/s).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        post(port, &[reading("hot.a", 100.0), reading("hot.b", 100.0)]);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(firing(dir.path(), "a-hot"), 1, "a-hot fired once before the crash");
    assert_eq!(firing(dir.path(), "b-hot"), 0, "b-hot is still pending");
    // A checkpoint interval and then some, then the power cut.
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(serve.pid(), libc::SIGKILL) };
    drop(serve.0.take().map(|mut c| c.wait()));

    serve = start(dir.path(), port);
    // A jump on det.x right after the restart: only a restored window (ten
    // readings at least) judges it.
    post(port, &[reading("det.x", 50.0)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while firing(dir.path(), "b-hot") == 0 {
        assert!(Instant::now() < deadline, "b-hot never fired after the restart");
        post(port, &[reading("hot.a", 100.0), reading("hot.b", 100.0)]);
        std::thread::sleep(Duration::from_millis(250));
    }
    let (code, _) = serve.terminate();
    assert_eq!(code, Some(0));

    assert_eq!(firing(dir.path(), "a-hot"), 1, "a-hot notified again after the crash");
    let db = dir.path().join("s.duckdb");
    // b-hot fires 30 s after its first reading (± the checkpoint interval),
    // not 30 s after the restart.
    let first = query_i64(&db, "SELECT epoch_ms(min(ts)) FROM readings WHERE channel = 'hot.b'");
    let fired = query_i64(
        &db,
        "SELECT epoch_ms(min(ts)) FROM alerts WHERE rule = 'b-hot' AND state = 'firing' AND notifier IS NULL",
    );
    let after = fired - first;
    assert!((30_000..=32_000).contains(&after), "b-hot fired {after} ms after it turned pending");
    let jumps = query_i64(&db, "SELECT count(*) FROM anomalies WHERE channel = 'det.x' AND value = 50");
    assert_eq!(jumps, 1, "the detector's window did not survive the crash");
    // The state the checkpoints left is the state the clean stop saved over.
    let saved = query_i64(&db, "SELECT count(*) FROM state WHERE component IN ('alert', 'detect')");
    assert!(saved >= 2);
}
