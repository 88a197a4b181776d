//! Forwarding over MQTT (`forward: {type: mqtt}`), through mosquitto and
//! through nats-server's MQTT listener into a JetStream stream and the lake;
//! and the MQTT *source* on nats-server's listener. At-least-once: every
//! reading arrives, and a re-send carries the envelope id it had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::nats_peer::{create_stream, read_stream, Nats, Version};
use crate::peers::{free_port, publish, Broker, Reaped};
use crate::support::*;

/// A simulated gateway forwarding over MQTT to `url`, with `extra` target settings.
fn spec(dir: &Path, url: &str, extra: &str) -> PathBuf {
    write(
        dir,
        "gw.yaml",
        &format!(
            "version: 1
name: gw
identity: {{site: berlin, gateway: gw1}}
store: {{path: gw.duckdb, batch: 300, flush: 100ms}}
sources:
  plant:
    type: simulate
    interval: 1s
    signals:
      line.a: {{shape: sine, mean: 10, amplitude: 1, period: 1m}}
      line.b: {{shape: sine, mean: 20, amplitude: 1, period: 1m}}
forward:
  fleet:
    type: mqtt
    url: {url}
{extra}"
        ),
    )
}

const PARTS: &str = "    message: {max_records: 100}\n";

/// One MQTT message: its topic, envelope and record lines.
#[derive(Debug, Clone)]
struct Got {
    topic: String,
    envelope: serde_json::Value,
    lines: Vec<serde_json::Value>,
}

fn parse(topic: &str, payload: &[u8]) -> Got {
    let text = String::from_utf8(payload.to_vec()).expect("NDJSON payload");
    let mut lines = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let envelope = lines.next().expect("an envelope line");
    assert_eq!(envelope["kind"], "envelope", "{text}");
    Got { topic: topic.to_string(), envelope, lines: lines.collect() }
}

/// A persistent QoS 1 subscriber on `filter`, collecting in the background.
struct Subscriber {
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    fn start(port: u16, filter: &str) -> Subscriber {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let (got, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let subscribed = Arc::new(AtomicBool::new(false));
        let (g, s, sub, filter) = (got.clone(), stop.clone(), subscribed.clone(), filter.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut o = MqttOptions::new("fleet-sub", "127.0.0.1", port);
                o.set_clean_session(false);
                o.set_max_packet_size(64 << 20, 64 << 20);
                let (client, mut ev) = AsyncClient::new(o, 100);
                while !s.load(Ordering::SeqCst) {
                    match tokio::time::timeout(Duration::from_millis(200), ev.poll()).await {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                            let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => sub.store(true, Ordering::SeqCst),
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            g.lock().unwrap().push(parse(&p.topic, &p.payload));
                        }
                        Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                        _ => {}
                    }
                }
            })
        });
        let started = Instant::now();
        while !subscribed.load(Ordering::SeqCst) {
            assert!(started.elapsed() < Duration::from_secs(10), "the subscriber did not subscribe");
            std::thread::sleep(Duration::from_millis(50));
        }
        Subscriber { got, stop, thread: Some(thread) }
    }

    /// Waits until `n` distinct records arrived (or `within`), then stops.
    fn until(mut self, n: usize, within: Duration) -> Vec<Got> {
        let started = Instant::now();
        while distinct(&self.got.lock().unwrap()).len() < n && started.elapsed() < within {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let got = self.got.lock().unwrap().clone();
        got
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records by `(commit, offset + i)`. A record that came twice must have
/// come in a message with the same envelope id and be the same record.
fn distinct(got: &[Got]) -> BTreeMap<(i64, i64), (String, serde_json::Value)> {
    let mut out: BTreeMap<(i64, i64), (String, serde_json::Value)> = BTreeMap::new();
    for g in got {
        let e = &g.envelope;
        let (commit, offset) = (e["commit"].as_i64().unwrap(), e["offset"].as_i64().unwrap());
        let id = e["id"].as_str().unwrap().to_string();
        for (i, r) in g.lines.iter().enumerate() {
            if let Some((first_id, first)) = out.insert((commit, offset + i as i64), (id.clone(), r.clone())) {
                assert_eq!(first_id, id, "a duplicate carries the id it had");
                assert_eq!(&first, r, "a duplicate is the same record");
            }
        }
    }
    out
}

#[test]
fn the_mqtt_target_delivers_every_reading_with_its_envelope_through_mosquitto() {
    let dir = tmp();
    let broker = Broker::start(dir.path());
    let sub = Subscriber::start(broker.port, "eg/#");
    let spec = spec(dir.path(), &format!("mqtt://127.0.0.1:{}", broker.port), PARTS);
    eg(["acquire", spec.to_str().unwrap(), "--duration", "5m"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("forward fleet: 600 records in")
        .stderr_has("to mqtt")
        .stderr_has("backlog empty");
    let got = sub.until(600, Duration::from_secs(20));
    let recs = distinct(&got);
    assert_eq!(recs.len(), 600);
    let db = dir.path().join("gw.duckdb");
    let epoch = query_string(&db, "SELECT value FROM meta WHERE key = 'epoch'");
    for g in &got {
        assert_eq!(g.topic, "eg/berlin/gw1/reading");
        let e = &g.envelope;
        assert_eq!(e["site"], "berlin");
        assert_eq!(e["gateway"], "gw1");
        assert_eq!(e["epoch"], epoch.as_str());
        assert_eq!(e["count"].as_u64().unwrap() as usize, g.lines.len());
        assert_eq!(e["id"], format!("gw1:{epoch}:{}.{}", e["commit"], e["part"]).as_str());
        assert!(g.lines.len() <= 100);
        assert_eq!(g.lines[0]["kind"], "reading");
    }
}

#[test]
fn the_mqtt_target_sends_again_after_a_broker_outage_and_each_copy_keeps_its_id() {
    let dir = tmp();
    let mut broker = Broker::start(dir.path());
    let sub = Subscriber::start(broker.port, "eg/#");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let gw = spec(dir.path(), &url, &format!("{PARTS}    ack_timeout: 2s\n"));
    // Outage: the broker is gone, the gateway's run keeps its readings.
    broker.stop();
    eg(["acquire", gw.to_str().unwrap(), "--once", "--timeout", "2s"])
        .dir(dir.path())
        .run()
        .code(69)
        .stderr_has("stay in the store");
    broker.restart();
    eg(["acquire", gw.to_str().unwrap(), "--duration", "3m", "--timeout", "15s"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("backlog empty");
    let db = dir.path().join("gw.duckdb");
    let n = query_i64(&db, "SELECT count(*) FROM readings") as usize;
    let got = sub.until(n, Duration::from_secs(30));
    assert_eq!(distinct(&got).len(), n, "every stored reading arrived");
    // What waited was sent as backlog.
    assert!(got.iter().any(|g| g.envelope["backlog"] == true));

    // A refused login is 77.
    drop(broker);
    let locked = Broker::start_with(dir.path(), "allow_anonymous false\n");
    let refused = spec(dir.path(), &format!("mqtt://127.0.0.1:{}", locked.port), "");
    eg(["acquire", refused.to_str().unwrap(), "--once", "--timeout", "5s"])
        .dir(dir.path())
        .run()
        .code(77)
        .stderr_has("refused");
}

/// nats-server with JetStream and its MQTT listener on `mqtt`.
fn nats_with_mqtt(dir: &Path, version: Version, mqtt: u16) -> Nats {
    Nats::single(dir, version, &format!("mqtt {{ listen: 127.0.0.1:{mqtt} }}"))
}

#[test]
fn the_mqtt_target_reaches_a_stream_through_nats_servers_mqtt_listener_and_the_lake() {
    let dir = tmp();
    let mqtt = free_port();
    let hub = nats_with_mqtt(dir.path(), Version::Current, mqtt);
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    let spec =
        spec(dir.path(), &format!("mqtt://127.0.0.1:{mqtt}"), "    message: {max_records: 100, compression: zstd}\n");
    eg(["acquire", spec.to_str().unwrap(), "--duration", "5m"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("backlog empty");
    // MQTT topics become subjects; the envelope is the payload's first line.
    let msgs = read_stream(&hub.urls(), "FLEET");
    assert!(!msgs.is_empty());
    assert!(msgs.iter().all(|m| m.subject == "eg.berlin.gw1.reading"));
    assert!(msgs[0].body.starts_with(b"{\"kind\":\"envelope\""));
    // The center reads them as it reads NATS-published ones.
    let center = write(
        dir.path(),
        "center.yaml",
        &format!(
            "version: 1
name: center
sources:
  fleet: {{type: nats, url: \"{}\", stream: FLEET, consumer: lake}}
export:
  lake: {{type: parquet, path: lake, roll: {{max_age: 1s}}}}
",
            hub.urls()[0]
        ),
    );
    eg(["collect", center.to_str().unwrap(), "--once", "--timeout", "30s"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("600 rows");
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let n: i64 = conn
        .query_row(
            &format!(
                "SELECT count(DISTINCT (gateway, epoch, commit_no, idx)) FROM read_parquet('{}/readings/**/*.parquet', hive_partitioning = true)",
                dir.path().join("lake").display()
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 600);
}

#[test]
fn the_mqtt_source_reads_from_nats_servers_mqtt_listener() {
    let dir = tmp();
    let mqtt = free_port();
    let _hub = nats_with_mqtt(dir.path(), Version::Current, mqtt);
    let spec = write(
        dir.path(),
        "s.yaml",
        &format!(
            "version: 1
name: t
store: {{path: s.duckdb, flush: 200ms}}
sources:
  broker:
    type: mqtt
    url: mqtt://127.0.0.1:{mqtt}
    client_id: edgeguard-nats
    qos: 1
    topics:
      - {{filter: \"seq/#\", channel: seq.n, value: /n}}
"
        ),
    );
    // The first run makes the persistent session (kept in JetStream by nats-server).
    eg(["acquire", spec.to_str().unwrap(), "--once", "--timeout", "2s"]).dir(dir.path()).run();
    let messages: Vec<(String, Vec<u8>)> =
        (0..500).map(|i| (format!("seq/{}", i % 4), format!("{{\"n\":{i}}}").into_bytes())).collect();
    publish(mqtt, 1, false, messages);
    let child = std::process::Command::new(bin())
        .args(["acquire", spec.to_str().unwrap()])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut consumer = Reaped(Some(child));
    std::thread::sleep(Duration::from_secs(4));
    let (code, stderr) = consumer.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    let db = dir.path().join("s.duckdb");
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT value) FROM readings WHERE channel = 'seq.n'"), 500, "{stderr}");
}
