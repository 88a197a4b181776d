//! Reloading `serve`'s spec without a restart: SIGHUP and `POST
//! /api/v1/reload` under MQTT load, counting every message at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::peers::{client, free_port, get, publish, send, Broker, Reaped};
use crate::support::*;

const TOKEN: &str = "reload-token-0123456789abcdef";
/// Messages published while the spec is reloaded.
const MESSAGES: usize = 20_000;

fn spec(broker: u16, threshold: &str, signals: &str) -> String {
    format!(
        r#"version: 1
name: reload
store: {{path: s.duckdb, flush: 100ms}}
sources:
  broker:
    type: mqtt
    url: mqtt://127.0.0.1:{broker}
    client_id: edgeguard-reload
    qos: 1
    topics:
      - {{filter: line/seq, channel: line.seq}}
  plant:
    type: simulate
    interval: 100ms
    signals:
{signals}
alerts:
  seq-high:
    when: "channel == 'line.seq' and value > {threshold}"
    repeat: 1h
    notify: [log]
    title: "seq {{{{ value }}}}"
notifiers:
  log: {{type: file, path: alerts.log}}
serve: {{token: {{env: EG_TOKEN}}}}
"#
    )
}

const SIGNAL_A: &str = "      plant.a: {shape: sine, mean: 50, amplitude: 1, period: 1m}\n";
const SIGNAL_B: &str = "      plant.b: {shape: sine, mean: 20, amplitude: 1, period: 1m}\n";

fn metric(base: &str, name: &str) -> i64 {
    let (_, body) = get(&format!("{base}/metrics"), Some(TOKEN));
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

fn start(dir: &Path, port: u16) -> Reaped {
    let log = std::fs::File::create(dir.join("err.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_edgeguard"))
        .args(["serve", "r.yaml", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("EG_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start serve");
    let child = Reaped(Some(child));
    wait_until("serve to get ready", 30, || get(&format!("http://127.0.0.1:{port}/readyz"), None).0 == 200);
    child
}

#[test]
fn a_reload_under_load_loses_nothing_and_a_typo_keeps_the_running_pipeline() {
    let dir = tmp();
    let d = dir.path();
    let broker = Broker::start(d);
    write(d, "r.yaml", &spec(broker.port, "1e12", SIGNAL_A));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = start(d, port);

    // 20,000 numbered messages at ~5,000/s, each chunk acknowledged by the broker.
    let bport = broker.port;
    let publisher = std::thread::spawn(move || {
        for chunk in 0..MESSAGES / 500 {
            let msgs = (0..500).map(|i| ("line/seq".to_string(), format!("{}", chunk * 500 + i + 1).into_bytes()));
            publish(bport, 1, false, msgs.collect());
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_secs(1));

    // A threshold that fires and a new channel: SIGHUP.
    write(d, "r.yaml", &spec(broker.port, "0", &format!("{SIGNAL_A}{SIGNAL_B}")));
    unsafe { libc::kill(serve.pid(), libc::SIGHUP) };
    wait_until("the reload", 20, || metric(&base, "edgeguard_reloads_total{result=\"ok\"}") == 1);

    // A typo: the running pipeline stays, the failure is counted and answered.
    std::thread::sleep(Duration::from_secs(1));
    let good = std::fs::read_to_string(d.join("r.yaml")).unwrap();
    write(d, "r.yaml", &good.replace("    repeat: 1h", "    repaet: 1h"));
    unsafe { libc::kill(serve.pid(), libc::SIGHUP) };
    wait_until("the failed reload", 20, || metric(&base, "edgeguard_reloads_total{result=\"failed\"}") == 1);
    let (status, body) = send(client().post(format!("{base}/api/v1/reload")), Some(TOKEN));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("repaet") && body.contains("repeat"), "the answer names the typo: {body}");
    let (status, _) = send(client().post(format!("{base}/api/v1/reload")), None);
    assert_eq!(status, 401, "a reload needs the token");
    assert_eq!(metric(&base, "edgeguard_reloads_total{result=\"failed\"}"), 2);
    assert_eq!(get(&format!("{base}/readyz"), None).0, 200, "the old pipeline runs on");

    publisher.join().unwrap();
    // Every message is in before the stop: the latest line.seq is the last one.
    wait_until("the last message", 30, || {
        let (_, body) = get(&format!("{base}/api/v1/channels"), Some(TOKEN));
        body.contains(&format!("{MESSAGES}"))
    });
    let (code, _) = serve.terminate();
    assert_eq!(code, Some(0));
    let err = std::fs::read_to_string(d.join("err.log")).unwrap();
    assert!(err.contains("repaet"), "the typo is logged: {err}");

    let db = d.join("s.duckdb");
    let seqs = query_i64(&db, "SELECT count(DISTINCT value) FROM readings WHERE channel = 'line.seq'");
    assert_eq!(seqs, MESSAGES as i64, "every published message is stored");
    // The new rule fired; the new channel was read; the simulator paused
    // for the switch alone.
    let fired = query_i64(&db, "SELECT count(*) FROM alerts WHERE rule = 'seq-high' AND state = 'firing'");
    assert!(fired >= 1, "the reloaded threshold fired");
    assert!(query_i64(&db, "SELECT count(*) FROM readings WHERE channel = 'plant.b'") > 0);
    let gap = query_i64(
        &db,
        "SELECT max(d) FROM (SELECT epoch_ms(ts) - epoch_ms(lag(ts) OVER (ORDER BY ts)) AS d \
         FROM readings WHERE channel = 'plant.a')",
    );
    assert!(gap < 2_000, "the reload paused the pipeline for {gap} ms");
}
