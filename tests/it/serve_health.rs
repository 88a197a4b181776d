//! `serve`'s health: `/readyz` and `/api/v1/sources` following a real
//! Modbus device (pymodbus) that goes away and comes back, and `/metrics`
//! checked by Prometheus's own `promtool`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::{client, free_port, get, send, Peer};
use crate::serve::{json, spec, Daemon, TOKEN};
use crate::support::*;

/// Polls `url` until `ok` holds for its status and JSON body.
fn wait_for(
    url: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = get(url, Some(TOKEN));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        if ok(status, &v) {
            return v;
        }
        assert!(started.elapsed() < within, "{what}: still {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn plc(sources: &serde_json::Value) -> serde_json::Value {
    sources["sources"].as_array().unwrap().iter().find(|s| s["id"] == "plc").cloned().expect("source plc")
}

#[test]
fn readyz_and_sources_follow_a_modbus_device_that_goes_down_and_comes_back() {
    let port = free_port();
    let mut device = Peer::modbus_tcp(port, "1");
    let dir = tmp();
    write(
        dir.path(),
        "h.yaml",
        &format!(
            "version: 1\nname: h\nsources:\n  plc:\n    type: modbus\n    address: 127.0.0.1:{port}\n    interval: 200ms\n    timeout: 300ms\n    points:\n      - {{channel: plc.a, table: holding, address: 0}}\n  sim: {{type: simulate, signals: {{sim.x: {{shape: constant, mean: 1}}}}}}\n\
             store: {{path: h.duckdb}}\nserve: {{token: {{env: EG_TOKEN}}, down_after: 5s}}\n"
        ),
    );
    let d = Daemon::start(dir.path(), "h.yaml", &[]);
    let (b, sources_url, ready_url) =
        (d.base.clone(), format!("{}/api/v1/sources", d.base), format!("{}/readyz", d.base));
    // /readyz and /healthz are open; /api/v1/sources needs the token.
    assert_eq!(get(&sources_url, None).0, 401);
    let up = wait_for(&sources_url, "plc up with a latency", Duration::from_secs(10), |s, v| {
        s == 200 && v["sources"].is_array() && plc(v)["latency"]["requests"].as_u64() > Some(2)
    });
    let p = plc(&up);
    assert_eq!((p["type"].as_str(), p["state"].as_str()), (Some("modbus"), Some("up")), "{up}");
    assert!(p["last_success"].is_string() && p["last_error"].is_null(), "{p}");
    assert!(p["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{p}");
    let sim = up["sources"].as_array().unwrap().iter().find(|s| s["id"] == "sim").unwrap();
    assert_eq!((sim["type"].as_str(), sim["state"].as_str()), (Some("simulate"), Some("up")), "{up}");
    let (status, body) = get(&ready_url, None);
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["store"], "ok", "{ready}");
    assert_eq!(ready["checks"]["sources"]["up"], 2, "{ready}");

    // The device goes away: degraded at once, down after serve.down_after.
    device.stop();
    let stopped = Instant::now();
    let degraded = wait_for(&sources_url, "plc degraded", Duration::from_secs(5), |_, v| plc(v)["state"] != "up");
    assert_eq!(degraded["sources"][0]["state"], "degraded", "down before down_after: {degraded}");
    assert_eq!(get(&ready_url, None).0, 200, "degraded is still ready");
    let down = wait_for(&ready_url, "readyz 503", Duration::from_secs(15), |s, _| s == 503);
    assert!(stopped.elapsed() >= Duration::from_secs(5), "down before down_after: {down}");
    let problems = down["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{down}");
    let problem = problems[0].as_str().unwrap();
    assert!(problem.starts_with("source plc: down") && problem.contains("disconnected"), "{problem}");
    assert_eq!(down["checks"]["sources"]["down"], 1, "{down}");
    let p = plc(&json(&sources_url));
    assert_eq!(p["state"], "down", "{p}");
    assert!(p["readings"]["failed"].as_u64() > Some(0) && p["failing_since"].is_string(), "{p}");
    // A posted reading cannot speak for a source of the spec.
    let posted =
        client().post(format!("{b}/api/v1/readings")).body("{\"channel\":\"plc.a\",\"value\":1,\"source\":\"plc\"}\n");
    let (status, body) = send(posted, Some(TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`source` \\\"plc\\\" is a source of the spec"), "{body}");
    assert_eq!(plc(&json(&sources_url))["state"], "down");
    // Liveness is not readiness.
    assert_eq!(get(&format!("{b}/healthz"), None).0, 200);
    let (_, m) = get(&format!("{b}/metrics"), Some(TOKEN));
    assert!(m.lines().any(|l| l == "edgeguard_source_state{source=\"plc\"} 2"), "{m}");
    assert!(m.lines().any(|l| l == "edgeguard_ready 0"), "{m}");
    assert!(m.lines().any(|l| l == "edgeguard_channel_quality{channel=\"plc.a\"} 2"), "{m}");
    assert!(m.lines().any(|l| l == "edgeguard_channel_value{channel=\"plc.a\"} NaN"), "{m}");
    let (ok, said) = promtool(&m);
    assert!(ok, "promtool check metrics with a source down: {said}\n{m}");

    // It comes back (within the reconnect backoff): ready again.
    let _device = Peer::modbus_tcp(port, "1");
    wait_for(&ready_url, "readyz 200 again", Duration::from_secs(20), |s, _| s == 200);
    assert_eq!(plc(&json(&sources_url))["failing_since"], serde_json::Value::Null);
}

/// `promtool check metrics` (Debian's `prometheus`, installed by scripts/test).
fn promtool(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool: `apt-get install prometheus` (scripts/test installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn metrics_pass_promtool_with_process_disk_and_channel_gauges_up_to_the_cap() {
    // promtool itself tells a bad exposition apart (so this test can fail).
    assert!(!promtool("# HELP x_count y\n# TYPE x_count counter\nx_count 1\n").0);
    let dir = tmp();
    spec(dir.path());
    let d = Daemon::start(dir.path(), "s.yaml", &["--set", "serve.metric_channels=4"]);
    std::thread::sleep(Duration::from_millis(2500));
    let (status, m) = get(&format!("{}/metrics", d.base), Some(TOKEN));
    assert_eq!(status, 200);
    let (ok, said) = promtool(&m);
    assert!(ok, "promtool check metrics: {said}\n{m}");
    let value = |name: &str| -> f64 {
        let line =
            m.lines().find(|l| l.split([' ', '{']).next() == Some(name)).unwrap_or_else(|| panic!("no {name}:\n{m}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "edgeguard_store_file_bytes",
        "edgeguard_store_disk_free_bytes",
    ] {
        assert!(value(name) > 0.0, "{name}");
    }
    // The demo has 6 channels: the first 4 by name are exported, 2 are counted.
    let exported: Vec<&str> = m.lines().filter(|l| l.starts_with("edgeguard_channel_value{")).collect();
    assert_eq!(exported.len(), 4, "{exported:?}");
    assert!(exported[0].starts_with("edgeguard_channel_value{channel=\"boiler.flow\"} "), "{exported:?}");
    assert_eq!(m.lines().filter(|l| l.starts_with("edgeguard_channel_quality{")).count(), 4);
    assert_eq!(value("edgeguard_channels_not_exported"), 2.0);
    assert_eq!(value("edgeguard_ready"), 1.0);
}

/// A listening source: a quiet topic is up; a broker that goes away is
/// down after `serve.down_after`; connected again, it is up and serve ready.
#[test]
fn an_mqtt_source_is_down_while_its_broker_is_gone_and_a_quiet_topic_is_not() {
    let dir = tmp();
    let mut broker = crate::peers::Broker::start(dir.path());
    write(
        dir.path(),
        "m.yaml",
        &format!(
            "version: 1\nname: m\nsources:\n  bus:\n    type: mqtt\n    url: mqtt://127.0.0.1:{}\n    client_id: eg-health\n    qos: 1\n    topics:\n      - {{filter: quiet/topic, channel: q.t}}\n\
             serve: {{token: {{env: EG_TOKEN}}, down_after: 4s}}\n",
            broker.port
        ),
    );
    let d = Daemon::start(dir.path(), "m.yaml", &["--no-store"]);
    let (sources_url, ready_url) = (format!("{}/api/v1/sources", d.base), format!("{}/readyz", d.base));
    let bus = |v: &serde_json::Value| v["sources"][0].clone();
    // Nothing arrives for longer than down_after: still up.
    std::thread::sleep(Duration::from_secs(5));
    let quiet = json(&sources_url);
    assert_eq!((bus(&quiet)["type"].as_str(), bus(&quiet)["state"].as_str()), (Some("mqtt"), Some("up")), "{quiet}");
    assert_eq!(get(&ready_url, None).0, 200);

    broker.stop();
    let stopped = Instant::now();
    let down = wait_for(&ready_url, "readyz 503 without the broker", Duration::from_secs(20), |s, _| s == 503);
    assert!(stopped.elapsed() >= Duration::from_secs(4), "down before down_after: {down}");
    assert!(down["problems"][0].as_str().unwrap().starts_with("source bus: down"), "{down}");
    let gone = bus(&json(&sources_url));
    assert!(gone["errors"].as_u64() > Some(0) && gone["last_error"].is_string(), "{gone}");

    broker.restart();
    wait_for(&ready_url, "readyz 200 with the broker back", Duration::from_secs(30), |s, _| s == 200);
    assert_eq!(bus(&json(&sources_url))["failing_since"], serde_json::Value::Null);
}
