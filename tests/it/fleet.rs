//! Forwarding to a fleet's hub: the store as the outbox, against real
//! nats-server processes (one node, a 3-node R3 cluster; the current PyPI
//! server and Debian's older one). Counts every reading at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats_peer::{create_stream, create_stream_as, read_stream, stream_leader, Nats, Relay, Stored, Version};
use crate::peers::{free_port, get, Reaped};
use crate::support::*;

/// A simulated gateway with two channels, small commits, forwarding to `urls`.
fn spec(dir: &Path, gateway: &str, urls: &[String], extra: &str) -> PathBuf {
    let urls = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    write(
        dir,
        "gw.yaml",
        &format!(
            "version: 1
name: gw
identity: {{site: berlin, gateway: {gateway}}}
store: {{path: gw.duckdb, batch: 200, flush: 100ms}}
sources:
  plant:
    type: simulate
    interval: 1s
    signals:
      line.a: {{shape: sine, mean: 10, amplitude: 1, period: 1m}}
      line.b: {{shape: sine, mean: 20, amplitude: 1, period: 1m}}
forward:
  fleet:
    type: nats
    url: [{urls}]
    stream: FLEET
{extra}"
        ),
    )
}

const PARTS_OF_50: &str = "    message: {max_records: 50}\n";

/// The messages' records, by `(commit, offset)`: every reading once, or the test says which twice.
fn by_position(msgs: &[Stored]) -> BTreeMap<(i64, u64), serde_json::Value> {
    let mut out = BTreeMap::new();
    for m in msgs {
        let commit: i64 = m.header("Eg-Commit").parse().unwrap();
        let offset: u64 = m.header("Eg-Offset").parse().unwrap();
        for (i, r) in m.records().into_iter().enumerate() {
            let dup = out.insert((commit, offset + i as u64), r);
            assert!(dup.is_none(), "({commit}, {}) stored twice", offset + i as u64);
        }
    }
    out
}

fn readings(db: &Path) -> i64 {
    query_i64(db, "SELECT count(*) FROM readings")
}

fn forwards_every_commit_once(version: Version) {
    let dir = tmp();
    let hub = Nats::single(dir.path(), version, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    let spec = spec(dir.path(), "gw1", &hub.urls(), PARTS_OF_50);
    let db = dir.path().join("gw.duckdb");

    let out = eg(["acquire", spec.to_str().unwrap(), "--duration", "10m"]).dir(dir.path()).run();
    let msgs = read_stream(&hub.urls(), "FLEET");
    out.code(0)
        .stderr_has(&format!("forward fleet: 1200 records in {} messages to nats", msgs.len()))
        .stderr_has("backlog empty");
    // Commits of at most 200 readings, parts of at most 50.
    assert!(msgs.len() >= 24, "{} messages", msgs.len());
    let epoch = query_string(&db, "SELECT value FROM meta WHERE key = 'epoch'");
    let ids: BTreeSet<&str> = msgs.iter().map(|m| m.header("Nats-Msg-Id")).collect();
    assert_eq!(ids.len(), msgs.len(), "message ids are unique");
    for m in &msgs {
        assert_eq!(m.subject, "eg.berlin.gw1.reading");
        let id = m.header("Nats-Msg-Id");
        assert_eq!(id, format!("gw1:{epoch}:{}.{}", m.header("Eg-Commit"), m.header("Eg-Part")));
        assert_eq!(m.header("Eg-Site"), "berlin");
        assert_eq!(m.header("Eg-Schema"), "5");
        assert_eq!(m.header("Eg-Count"), m.records().len().to_string());
        assert!(m.records().len() <= 50);
        // Nothing was waiting when the run started: all of it went out live.
        assert_eq!(m.header("Eg-Backlog"), "");
    }
    let recs = by_position(&msgs);
    assert_eq!(recs.len() as i64, readings(&db));
    // The records are the store's readings as printed.
    let first = recs.values().next().unwrap();
    assert_eq!(first["kind"], "reading");
    assert_eq!(first["source"], "plant");
    let stored = query_i64(&db, "SELECT count(DISTINCT (epoch_us(ts), channel)) FROM readings");
    let sent: BTreeSet<(String, String)> =
        recs.values().map(|r| (r["ts"].as_str().unwrap().into(), r["channel"].as_str().unwrap().into())).collect();
    assert_eq!(sent.len() as i64, stored);

    // The cursor is in the store: a second run sends only its own commits.
    let first_run = msgs.len();
    let out = eg(["acquire", spec.to_str().unwrap(), "--duration", "5m"]).dir(dir.path()).run();
    let msgs = read_stream(&hub.urls(), "FLEET");
    out.code(0).stderr_has(&format!("forward fleet: 600 records in {} messages", msgs.len() - first_run));
    assert_eq!(by_position(&msgs).len() as i64, readings(&db));

    // Forget the cursor: everything is sent again with the same ids, and
    // the stream keeps one copy (its duplicate window).
    let conn = duckdb::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM state WHERE component = 'forward'", []).unwrap();
    drop(conn);
    let n = msgs.len();
    eg(["acquire", spec.to_str().unwrap(), "--input", "/dev/null"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has(&format!("1800 records in {n} messages to nats ({n} duplicates already there)"));
    assert_eq!(read_stream(&hub.urls(), "FLEET").len(), n);
}

#[test]
fn forward_sends_every_commit_once_and_the_hub_drops_resends() {
    forwards_every_commit_once(Version::Current);
}

#[test]
fn forward_works_with_debians_older_nats_server() {
    forwards_every_commit_once(Version::Debian);
}

#[test]
fn once_with_the_hub_down_exits_69_and_the_next_run_sends_the_backlog() {
    let dir = tmp();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let spec = spec(dir.path(), "gw1", &[url], "    message: {compression: zstd}\n");
    let db = dir.path().join("gw.duckdb");
    let started = Instant::now();
    let out = eg(["acquire", spec.to_str().unwrap(), "--once", "--timeout", "2s"]).dir(dir.path()).run();
    let n = readings(&db);
    assert!(n > 0, "acquisition is not held back by the hub");
    out.code(69)
        .stderr_has(&format!("forward target fleet: {n} records not forwarded"))
        .stderr_has("stay in the store");
    assert!(started.elapsed() < Duration::from_secs(15), "--timeout bounds the wait");

    let hub = Nats::single_on(dir.path(), Version::Current, port, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    let out = eg(["acquire", spec.to_str().unwrap(), "--once", "--timeout", "10s"]).dir(dir.path()).run();
    out.code(0).stderr_has(&format!("forward fleet: {} records in 2 messages", 2 * n)).stderr_has("backlog empty");
    let msgs = read_stream(&hub.urls(), "FLEET");
    assert_eq!(msgs.len(), 2);
    // The first run's commit waited in the store: it is marked as backlog, and zstd-compressed.
    assert_eq!(msgs[0].header("Eg-Backlog"), "1");
    assert_eq!(msgs[1].header("Eg-Backlog"), "");
    assert_eq!(msgs[0].header("Content-Encoding"), "zstd");
    assert_eq!(by_position(&msgs).len() as i64, 2 * n);
}

#[test]
fn credentials_missing_are_78_and_refused_are_77() {
    let dir = tmp();
    let users = "authorization {
  users = [
    {user: gw1, password: pw1, permissions: {publish: {allow: [\"eg.berlin.gw1.>\", \"$JS.API.>\"]}, subscribe: {allow: [\"_INBOX.>\"]}}}
    {user: admin, password: adminpw}
  ]
}";
    let hub = Nats::single(dir.path(), Version::Current, users);
    create_stream_as(&hub.urls(), Some(("admin", "adminpw")), "FLEET", 1, Duration::from_secs(120));
    // A refused publish shows as an acknowledgement that never comes: wait 1 s for it.
    let login = "    username: {env: NATS_USER}\n    password: {env: NATS_PASSWORD}\n    ack_timeout: 1s\n";

    let missing = spec(dir.path(), "gw1", &hub.urls(), "    credentials: {file: missing.creds}\n");
    eg(["acquire", missing.to_str().unwrap(), "--once"]).dir(dir.path()).run().code(78).stderr_has("missing.creds");

    let own = spec(dir.path(), "gw1", &hub.urls(), login);
    let run = |user: &str, pw: &str| {
        eg(["acquire", own.to_str().unwrap(), "--once", "--timeout", "5s"])
            .cmd_env("NATS_USER", user)
            .cmd_env("NATS_PASSWORD", pw)
            .dir(dir.path())
            .run()
    };
    run("gw1", "wrong").code(77).stderr_has("forward target fleet: the hub refused");
    run("gw1", "pw1").code(0).stderr_has("backlog empty");

    // gw1's login may publish only gw1's subjects: posing as gw2 is refused.
    let other = spec(dir.path(), "gw2", &hub.urls(), login);
    let out = eg(["acquire", other.to_str().unwrap(), "--once", "--timeout", "5s"])
        .cmd_env("NATS_USER", "gw1")
        .cmd_env("NATS_PASSWORD", "pw1")
        .dir(dir.path())
        .run();
    out.code(77).stderr_has("Permissions Violation");
}

#[test]
fn backlog_older_than_max_age_is_dropped_counted_and_reported() {
    let dir = tmp();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let spec = spec(dir.path(), "gw1", &[url], "    backlog: {max_age: 1s}\n");
    // No hub for the first run.
    let db = dir.path().join("gw.duckdb");
    // The hub is down: a daemon-like run keeps its backlog and exits 0.
    eg(["acquire", spec.to_str().unwrap(), "--duration", "10m", "--timeout", "1s"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("1200 records waiting in the store");
    std::thread::sleep(Duration::from_millis(1500));
    let hub = Nats::single_on(dir.path(), Version::Current, port, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    eg(["acquire", spec.to_str().unwrap(), "--input", "/dev/null"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("1200 records dropped: older than backlog.max_age")
        .stderr_has("backlog empty");
    assert!(read_stream(&hub.urls(), "FLEET").is_empty());
    // Dropped from the forward backlog, not from the store; counted once.
    assert_eq!(readings(&db), 1200);
    let cursor = query_string(&db, "SELECT value FROM state WHERE component = 'forward' AND key = 'fleet'");
    assert!(cursor.contains("\"dropped\":1200"), "{cursor}");
    let out = eg(["acquire", spec.to_str().unwrap(), "--input", "/dev/null"]).dir(dir.path()).run();
    assert!(!out.stderr.contains("dropped"), "{}", out.stderr);
}

/// `serve` of a simulated plant at `rate` readings/s on the wall clock.
fn serve(dir: &Path, urls: &[String], channels: usize, interval: &str, extra: &str) -> (Reaped, String) {
    let urls = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    let signals: String = (0..channels)
        .map(|i| format!("      c.{i:03}: {{shape: sine, mean: {i}, amplitude: 1, period: 1m}}\n"))
        .collect();
    let spec = write(
        dir,
        "gw.yaml",
        &format!(
            "version: 1
name: gw
identity: {{site: berlin, gateway: gw1}}
store: {{path: gw.duckdb, batch: 5000, flush: 100ms}}
sources:
  plant:
    type: simulate
    interval: {interval}
    signals:
{signals}forward:
  fleet:
    type: nats
    url: [{urls}]
    stream: FLEET
    ack_timeout: 2s
{extra}"
        ),
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_edgeguard"))
        .args(["serve", spec.to_str().unwrap(), "--listen", &listen])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let base = format!("http://{listen}");
    let started = Instant::now();
    while get(&format!("{base}/readyz"), None).0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "serve did not get ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Reaped(Some(child)), base)
}

#[test]
fn killing_the_stream_leader_loses_nothing_and_keeps_commit_order() {
    let dir = tmp();
    let mut hub = Nats::cluster(dir.path(), Version::Current);
    create_stream(&hub.urls(), "FLEET", 3, Duration::from_secs(120));
    // 20 channels every 10 ms: 2,000 readings/s; one message in flight keeps strict order.
    let (mut gw, base) =
        serve(dir.path(), &hub.urls(), 20, "10ms", "    in_flight: 1\n    message: {max_records: 500}\n");
    std::thread::sleep(Duration::from_secs(3));
    let leader = stream_leader(&hub, "FLEET");
    hub.nodes[leader].kill();
    std::thread::sleep(Duration::from_secs(5));
    hub.nodes[leader].start();
    std::thread::sleep(Duration::from_secs(3));
    let (status, metrics) = get(&format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    assert!(metrics.contains("edgeguard_forward_connected{target=\"fleet\"} 1"), "{metrics}");
    assert!(metrics.contains("edgeguard_forward_published_total{target=\"fleet\",kind=\"reading\"}"));
    let (code, stderr) = gw.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("backlog empty"), "{stderr}");

    let db = dir.path().join("gw.duckdb");
    let stored = readings(&db);
    assert!(stored > 10_000, "{stored} readings");
    let msgs = read_stream(&hub.urls(), "FLEET");
    let recs = by_position(&msgs);
    assert_eq!(recs.len() as i64, stored, "every reading in the stream exactly once");
    let commits: Vec<(i64, u64)> =
        msgs.iter().map(|m| (m.header("Eg-Commit").parse().unwrap(), m.header("Eg-Part").parse().unwrap())).collect();
    let mut sorted = commits.clone();
    sorted.sort();
    assert_eq!(commits, sorted, "the stream holds the commits in commit order");
}

#[test]
fn sigkilling_the_gateway_five_times_loses_nothing() {
    let dir = tmp();
    let hub = Nats::single(dir.path(), Version::Current, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    let mut stderr = String::new();
    for round in 0..6 {
        let (mut gw, _) = serve(dir.path(), &hub.urls(), 10, "10ms", "");
        std::thread::sleep(Duration::from_millis(1500));
        if round < 5 {
            unsafe { libc::kill(gw.pid(), libc::SIGKILL) };
            drop(gw);
        } else {
            stderr = gw.terminate().1;
        }
    }
    assert!(stderr.contains("backlog empty"), "{stderr}");
    let db = dir.path().join("gw.duckdb");
    let recs = by_position(&read_stream(&hub.urls(), "FLEET"));
    assert_eq!(recs.len() as i64, readings(&db), "every committed reading reached the stream once");
}

#[test]
fn forward_specs_are_checked_with_positions() {
    let dir = tmp();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "version: 1
name: gw
store: {path: gw.duckdb}
sources:
  plant: {type: simulate, signals: {a: {shape: sine, mean: 1, amplitude: 1, period: 1m}}}
forward:
  fleet:
    type: nats
    url: [\"nats://u:secret@hub:4222\", \"http://hub\"]
    token: {env: T}
    nkey: {env: K}
    channels: [\"nope.*\"]
    message: {max_bytes: 10B}
    in_flight: 0
  other: {type: kafka}
",
    );
    let out = eg(["validate", bad.to_str().unwrap()]).run();
    out.code(78)
        .stderr_has("forwarding needs an `identity`")
        .stderr_has("E070")
        .stderr_has("`http://hub` is not `nats://host:port`")
        .stderr_has("two ways to log in")
        .stderr_has("`nope.*` matches no channel")
        .stderr_has("between 1KiB and 64MiB")
        .stderr_has("in_flight")
        .stderr_has("unknown forward target type `kafka`")
        .stderr_has("bad.yaml:9:");
}

/// A gauge of `serve`'s `/metrics` for the `fleet` target.
fn gauge(base: &str, name: &str) -> f64 {
    let (_, text) = get(&format!("{base}/metrics"), None);
    let key = format!("edgeguard_{name}{{target=\"fleet\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
}

#[test]
fn an_uplink_cut_holds_the_backlog_in_the_store_and_drains_it_after() {
    let dir = tmp();
    let hub = Nats::single(dir.path(), Version::Current, "");
    // A duplicate window longer than the outage (the README's 10m): what the
    // hub stored just as the uplink went, unacknowledged, comes again after.
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(600));
    let mut relay = Relay::start(hub.nodes[0].port);
    let via = [format!("nats://127.0.0.1:{}", relay.port)];
    // 10 channels every 10 ms: 1,000 readings/s; the replay is capped so
    // live commits go out between the backlog's.
    let (mut gw, base) = serve(dir.path(), &via, 10, "10ms", "    replay_rate: 20000/s\n");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(gauge(&base, "forward_connected"), 1.0);
    relay.cut();
    let cut_at = Instant::now();
    // The drill: two minutes without an uplink.
    std::thread::sleep(Duration::from_secs(120));
    // Acquisition and the store go on; the backlog grows by the live rate.
    let backlog = gauge(&base, "forward_backlog_records");
    assert!(backlog > 110_000.0, "backlog {backlog} after {:?}", cut_at.elapsed());
    assert_eq!(gauge(&base, "forward_connected"), 0.0);
    let held = read_stream(&hub.urls(), "FLEET").len();
    relay.restore();
    let restored = Instant::now();
    let restored_us = now_us();
    while gauge(&base, "forward_backlog_records") > 2_000.0 {
        assert!(restored.elapsed() < Duration::from_secs(40), "the backlog did not drain");
        std::thread::sleep(Duration::from_millis(200));
    }
    let drained = restored.elapsed();
    // The client's reconnect backoff (≤ 10 s) and 120,000 readings at 20,000/s.
    assert!(drained < Duration::from_secs(25), "drained in {drained:?}");
    assert!(read_stream(&hub.urls(), "FLEET").len() > held);
    let (code, stderr) = gw.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("backlog empty"), "{stderr}");
    let db = dir.path().join("gw.duckdb");
    let msgs = read_stream(&hub.urls(), "FLEET");
    assert_eq!(by_position(&msgs).len() as i64, readings(&db), "nothing missing, nothing twice");
    assert!(msgs.iter().any(|m| m.header("Eg-Backlog") == "1"), "what waited is marked as backlog");
    // Readings made during the drain: stored in the stream within 2 s of
    // their own time, the replay notwithstanding. (Messages the client had
    // buffered when the uplink went come first after it is back; they are
    // the outage's, not the drain's.)
    let drain_end_us = restored_us + drained.as_micros() as i64;
    let mut live = 0;
    for m in msgs.iter().filter(|m| m.header("Eg-Backlog").is_empty() && m.time_us < drain_end_us) {
        let newest = m.records().iter().map(|r| ts_us(r["ts"].as_str().unwrap())).max().unwrap();
        if newest < restored_us {
            continue;
        }
        let late = m.time_us - newest;
        assert!(late < 2_000_000, "a live message waited {late} µs during the drain");
        live += 1;
    }
    assert!(live > 0, "live commits went out during the drain");
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// An RFC 3339 time of a record, in µs.
fn ts_us(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).unwrap().timestamp_micros()
}

#[test]
fn tls_with_a_test_ca_and_an_untrusted_hub_is_refused() {
    let dir = tmp();
    crate::peers::certificates(dir.path());
    let tls =
        format!("tls {{ cert_file: \"{d}/server.pem\", key_file: \"{d}/server.key\" }}", d = dir.path().display());
    let hub = Nats::single(dir.path(), Version::Current, &tls);
    let port = hub.nodes[0].port;
    // The test's own client trusts the CA too, to make the stream.
    let ca = dir.path().join("ca.pem");
    crate::nats_peer::create_stream_tls(&hub.urls(), &ca, "FLEET");
    let url = [format!("tls://127.0.0.1:{port}")];
    let trusted = spec(dir.path(), "gw1", &url, "    tls: {ca: ca.pem}\n");
    eg(["acquire", trusted.to_str().unwrap(), "--once", "--timeout", "5s"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("backlog empty");
    assert_eq!(read_stream_tls(&hub.urls(), &ca).len(), 1);
    // Without the CA the hub's certificate is not trusted: refused, 77.
    let untrusted = spec(dir.path(), "gw1", &url, "");
    eg(["acquire", untrusted.to_str().unwrap(), "--once", "--timeout", "5s"])
        .dir(dir.path())
        .run()
        .code(77)
        .stderr_has("TLS");
}

fn read_stream_tls(urls: &[String], ca: &Path) -> Vec<Stored> {
    crate::nats_peer::read_stream_with(urls, Some(ca), "FLEET")
}

#[test]
fn channel_filters_and_the_replay_cap_shape_what_is_sent() {
    let dir = tmp();
    let port = free_port();
    let url = [format!("nats://127.0.0.1:{port}")];
    let spec = spec(dir.path(), "gw1", &url, "    channels: [\"line.a\"]\n    replay_rate: 200/s\n");
    // The hub is down: 1,200 readings (600 of line.a) wait in the store.
    eg(["acquire", spec.to_str().unwrap(), "--duration", "10m", "--timeout", "1s"]).dir(dir.path()).run().code(0);
    let hub = Nats::single_on(dir.path(), Version::Current, port, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    let started = Instant::now();
    eg(["acquire", spec.to_str().unwrap(), "--input", "/dev/null", "--timeout", "30s"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("forward fleet: 600 records in")
        .stderr_has("backlog empty");
    // 600 records at 200/s, the first 200 at once at most: not under 2 s.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "replayed 600 records in {took:?} at 200/s");
    let recs = by_position(&read_stream(&hub.urls(), "FLEET"));
    assert_eq!(recs.len(), 600);
    assert!(recs.values().all(|r| r["channel"] == "line.a"));
}
