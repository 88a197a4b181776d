//! The center of a fleet: the `nats` source (a durable consumer, acked after
//! commit) and `collect` into a Parquet lake — a folder and a loopback S3
//! (moto) — against real nats-servers. Every reading is counted at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats_peer::{consumer_state, create_stream, delete_consumer, wait_consumed, Nats, Version};
use crate::peers::{free_port, python, send, Reaped};
use crate::support::*;

/// A simulated gateway (two channels every second) that forwards to `urls`.
/// Its `minutes` of readings start at `start` (RFC 3339) on the virtual clock.
fn gateway(dir: &Path, site: &str, gw: &str, urls: &[String], minutes: u32, start: &str) -> i64 {
    let home = dir.join(format!("{site}-{gw}"));
    std::fs::create_dir_all(&home).unwrap();
    let urls = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    let spec = write(
        &home,
        "gw.yaml",
        &format!(
            "version: 1
name: gw
identity: {{site: {site}, gateway: {gw}}}
store: {{path: gw.duckdb, batch: 500, flush: 100ms}}
sources:
  plant:
    type: simulate
    interval: 1s
    start: {start}
    signals:
      line.a: {{shape: sine, mean: 10, amplitude: 1, period: 1m}}
      line.b: {{shape: sine, mean: 20, amplitude: 1, period: 1m}}
forward:
  fleet:
    type: nats
    url: [{urls}]
    stream: FLEET
    message: {{max_records: 200, compression: zstd}}
"
        ),
    );
    eg(["acquire", spec.to_str().unwrap(), "--duration", &format!("{minutes}m")])
        .dir(&home)
        .run()
        .code(0)
        .stderr_has("backlog empty");
    query_i64(&home.join("gw.duckdb"), "SELECT count(*) FROM readings")
}

/// The center's spec: one `nats` source and `rest` (an export, a store).
fn center(dir: &Path, urls: &[String], consumer: &str, source_extra: &str, rest: &str) -> PathBuf {
    let urls = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    write(
        dir,
        "center.yaml",
        &format!(
            "version: 1
name: center
sources:
  fleet:
    type: nats
    url: [{urls}]
    stream: FLEET
    consumer: {consumer}
{source_extra}{rest}"
        ),
    )
}

fn lake_sql(root: &Path, table: &str) -> String {
    format!("read_parquet('{}/{table}/**/*.parquet', hive_partitioning = true)", root.display())
}

/// Rows of the lake's readings, raw and after the README's dedup view.
fn lake_counts(root: &Path) -> (i64, i64) {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let src = lake_sql(root, "readings");
    let raw: i64 = conn.query_row(&format!("SELECT count(*) FROM {src}"), [], |r| r.get(0)).unwrap();
    let dedup: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM (SELECT * FROM {src}
                 QUALIFY row_number() OVER (PARTITION BY site, gateway, epoch, commit_no, idx ORDER BY ts) = 1)"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    (raw, dedup)
}

fn nats_source_stores_the_fleet(version: Version, subjects: &str) {
    let dir = tmp();
    let hub = Nats::single(dir.path(), version, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    let n1 = gateway(dir.path(), "berlin", "gw1", &hub.urls(), 5, "2026-12-01T10:00:00Z");
    let n2 = gateway(dir.path(), "berlin", "gw2", &hub.urls(), 3, "2026-12-01T10:00:00Z");
    assert_eq!((n1, n2), (600, 360));

    let spec = center(dir.path(), &hub.urls(), "center", subjects, "store: {path: center.duckdb, flush: 100ms}\n");
    let db = dir.path().join("center.duckdb");
    eg(["acquire", spec.to_str().unwrap(), "--once", "--timeout", "20s"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("960 records")
        .stderr_has("acknowledged after commit");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 960);
    // Channels keep their site and gateway; values and times are the gateways'.
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE channel = 'berlin.gw1.line.a'"), 300);
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT channel) FROM readings"), 4);
    // 2026-12-01T10:00:00Z
    assert_eq!(query_i64(&db, "SELECT epoch_us(min(ts)) // 1000000 FROM readings"), 1_796_119_200);
    // Acknowledged after the commit: the consumer has nothing left, a second run stores nothing.
    assert_eq!(consumer_state(&hub.urls(), "FLEET", "center"), Some((0, 0)));
    eg(["acquire", spec.to_str().unwrap(), "--once", "--timeout", "5s"]).dir(dir.path()).run().code(0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 960);
}

#[test]
fn the_nats_source_stores_a_fleet_and_acknowledges_after_commit() {
    nats_source_stores_the_fleet(Version::Current, "    subjects: [\"eg.*.*.reading\", \"eg.*.*.alert\"]\n");
}

#[test]
fn the_nats_source_works_with_debians_older_nats_server() {
    // nats-server 2.9 knows one filter subject per consumer.
    nats_source_stores_the_fleet(Version::Debian, "    subjects: [\"eg.*.*.reading\"]\n");
}

#[test]
fn the_nats_source_exits_69_without_a_hub_and_77_when_refused() {
    let dir = tmp();
    let spec = center(dir.path(), &[format!("nats://127.0.0.1:{}", free_port())], "c", "", "");
    eg(["acquire", spec.to_str().unwrap(), "--once", "--timeout", "3s", "--no-store"]).dir(dir.path()).run().code(69);
    let users = "authorization { users = [ {user: admin, password: adminpw} ] }";
    let hub = Nats::single(dir.path(), Version::Current, users);
    let spec = center(
        dir.path(),
        &hub.urls(),
        "c",
        "    username: {env: NATS_USER}\n    password: {env: NATS_PASSWORD}\n",
        "",
    );
    eg(["acquire", spec.to_str().unwrap(), "--once", "--timeout", "5s", "--no-store"])
        .cmd_env("NATS_USER", "admin")
        .cmd_env("NATS_PASSWORD", "wrong")
        .dir(dir.path())
        .run()
        .code(77);
}

const FOLDER_LAKE: &str = "export:
  lake:
    type: parquet
    path: lake
    roll: {max_rows: 100000, max_age: 1s}
";

#[test]
fn collect_writes_a_hive_lake_and_a_redelivery_finds_its_files_there() {
    let dir = tmp();
    let hub = Nats::single(dir.path(), Version::Current, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    // Two sites; one gateway's readings cross midnight (two date partitions).
    let mut total = 0;
    total += gateway(dir.path(), "berlin", "gw1", &hub.urls(), 5, "2026-12-01T10:00:00Z");
    total += gateway(dir.path(), "berlin", "gw2", &hub.urls(), 5, "2026-12-01T23:58:00Z");
    total += gateway(dir.path(), "lyon", "gw1", &hub.urls(), 4, "2026-12-01T10:00:00Z");
    let spec = center(dir.path(), &hub.urls(), "lake", "", FOLDER_LAKE);
    let out = eg(["collect", spec.to_str().unwrap(), "--once", "--timeout", "30s"]).dir(dir.path()).run();
    out.code(0).stderr_has(&format!("{total} rows in"));
    let lake = dir.path().join("lake");
    assert_eq!(lake_counts(&lake), (total, total));
    // Hive folders: site, then date; a query by site and date sees only its rows.
    for part in ["site=berlin/date=2026-12-01", "site=berlin/date=2026-12-02", "site=lyon/date=2026-12-01"] {
        let files: Vec<_> = std::fs::read_dir(lake.join("readings").join(part)).unwrap().collect();
        assert!(!files.is_empty(), "{part}");
    }
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let n: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM {} WHERE site = 'berlin' AND date = '2026-12-02'",
                lake_sql(&lake, "readings")
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2 * 180, "gw2's readings after midnight");
    // Every row carries its dedup key and the gateway's own channel name.
    let (gws, chans): (i64, i64) = conn
        .query_row(
            &format!("SELECT count(DISTINCT gateway), count(DISTINCT channel) FROM {}", lake_sql(&lake, "readings")),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((gws, chans), (2, 2));

    // Nothing pending: a second run writes nothing.
    eg(["collect", spec.to_str().unwrap(), "--once", "--timeout", "10s"])
        .dir(dir.path())
        .run()
        .code(0)
        .stderr_has("0 messages → 0 rows");
    // The consumer is gone: every message comes again, makes the same files,
    // and finds them there (names come from content), so nothing doubles.
    delete_consumer(&hub.urls(), "FLEET", "lake");
    let again = eg(["collect", spec.to_str().unwrap(), "--once", "--timeout", "30s"]).dir(dir.path()).run();
    again.code(0).stderr_has("there already");
    assert_eq!(lake_counts(&lake), (total, total));
}

#[test]
fn collect_needs_nats_sources_and_an_export() {
    let dir = tmp();
    let spec = center(dir.path(), &["nats://127.0.0.1:4222".to_string()], "c", "", "");
    eg(["collect", spec.to_str().unwrap(), "--once"]).dir(dir.path()).run().code(2).stderr_has("no `export`");
    let two = center(
        dir.path(),
        &["nats://127.0.0.1:4222".to_string()],
        "c",
        "",
        &format!("{FOLDER_LAKE}  other: {{type: parquet, path: other}}\n"),
    );
    eg(["collect", two.to_str().unwrap(), "--once"])
        .dir(dir.path())
        .run()
        .code(2)
        .stderr_has("choose one with --export");
    eg(["collect", two.to_str().unwrap(), "--once", "--export", "nope"])
        .dir(dir.path())
        .run()
        .code(2)
        .stderr_has("no export `nope`");
    eg(["collect", "pipelines/demo.yaml", "--once"]).run().code(2).stderr_has("not a `nats` source");
    // A missing secret of the lake is a setup error before anything runs.
    let spec = center(
        dir.path(),
        &["nats://127.0.0.1:4222".to_string()],
        "c",
        "",
        "export:\n  lake:\n    type: parquet\n    path: s3://lake\n    s3: {access_key: {env: EG_NO_SUCH_KEY}, secret_key: {env: EG_NO_SUCH_SECRET}}\n",
    );
    eg(["collect", spec.to_str().unwrap(), "--once"]).dir(dir.path()).run().code(78).stderr_has("EG_NO_SUCH_KEY");
}

/// moto's S3 server on loopback (PyPI `moto[server]`, in `.venv`).
struct Moto {
    _child: Reaped,
    endpoint: String,
}

impl Moto {
    fn start(bucket: &str) -> Moto {
        let bin = PathBuf::from(python()).parent().unwrap().join("moto_server");
        assert!(bin.exists(), "{} is missing (scripts/test installs moto)", bin.display());
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        // moto takes anonymous requests: make the bucket.
        loop {
            let (status, _) = send(crate::peers::client().put(format!("{endpoint}/{bucket}")), None);
            if status == 200 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not start ({status})");
            std::thread::sleep(Duration::from_millis(200));
        }
        Moto { _child: Reaped(Some(child)), endpoint }
    }

    /// Every object under `prefix`, downloaded into `to` (keys kept).
    fn download(&self, bucket: &str, prefix: &str, to: &Path) -> Vec<String> {
        use futures_util::StreamExt;
        use object_store::{ObjectStore, ObjectStoreExt};
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        crate::peers::rt().block_on(async {
            let mut keys = Vec::new();
            let list: Vec<_> = store.list(Some(&object_store::path::Path::from(prefix))).collect().await;
            for meta in list {
                let meta = meta.unwrap();
                let key = meta.location.to_string();
                let bytes = store.get(&meta.location).await.unwrap().bytes().await.unwrap();
                let local = to.join(&key);
                std::fs::create_dir_all(local.parent().unwrap()).unwrap();
                std::fs::write(local, bytes).unwrap();
                keys.push(key);
            }
            keys
        })
    }
}

/// `collect` as a daemon, stderr piped.
fn collector(dir: &Path, spec: &Path) -> Reaped {
    let child = Command::new(bin())
        .args(["collect", spec.to_str().unwrap()])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start collect");
    Reaped(Some(child))
}

/// The fleet drill: 22 gateways (four sites) into a 3-node R3 cluster, two
/// collectors on one durable consumer writing to S3, one of them SIGKILLed
/// half way. The lake holds every reading once after the dedup view, in
/// site/date folders, and a query by site and date reads only those files.
#[test]
fn twenty_two_gateways_two_collectors_one_killed_every_reading_once_in_s3() {
    let dir = tmp();
    let hub = Nats::cluster(dir.path(), Version::Current);
    create_stream(&hub.urls(), "FLEET", 3, Duration::from_secs(120));
    let moto = Moto::start("lake");
    let s3 = format!(
        "export:
  lake:
    type: parquet
    path: s3://lake/fleet
    s3: {{endpoint: \"{}\", access_key: {{env: AWS_ACCESS_KEY_ID}}, secret_key: {{env: AWS_SECRET_ACCESS_KEY}}}}
    roll: {{max_rows: 5000, max_age: 1s}}
",
        moto.endpoint
    );
    let spec = center(dir.path(), &hub.urls(), "lake", "    ack_wait: 3s\n    batch: 64\n", &s3);
    let a = collector(dir.path(), &spec);
    let mut b = collector(dir.path(), &spec);

    let sites = ["berlin", "lyon", "turin", "porto"];
    let gateways: Vec<(String, String)> =
        (0..22).map(|i| (sites[i % 4].to_string(), format!("gw{:02}", i / 4))).collect();
    let urls = hub.urls();
    let mut total = 0i64;
    std::thread::scope(|s| {
        let halves: Vec<_> = gateways
            .chunks(11)
            .map(|half| {
                let (urls, dir) = (&urls, dir.path());
                s.spawn(move || {
                    half.iter().map(|(site, gw)| gateway(dir, site, gw, urls, 3, "2026-12-01T10:00:00Z")).sum::<i64>()
                })
            })
            .collect();
        // Half way through the gateways, one collector dies without a word.
        std::thread::sleep(Duration::from_secs(4));
        unsafe { libc::kill(a.pid(), libc::SIGKILL) };
        for h in halves {
            total += h.join().unwrap();
        }
    });
    drop(a);
    assert_eq!(total, 22 * 360);
    // The survivor takes the dead one's unacknowledged messages after ack_wait.
    wait_consumed(&hub.urls(), "FLEET", "lake", Duration::from_secs(90));
    let (code, stderr) = b.terminate();
    assert_eq!(code, Some(0), "{stderr}");

    let local = dir.path().join("download");
    let keys = moto.download("lake", "fleet", &local);
    assert!(keys.iter().all(|k| k.starts_with("fleet/readings/site=") && k.contains("/date=2026-12-01/")), "{keys:?}");
    let root = local.join("fleet");
    let (raw, dedup) = lake_counts(&root);
    assert_eq!(dedup, total, "every reading once after the dedup view ({raw} rows raw)");
    for site in sites {
        assert!(root.join(format!("readings/site={site}/date=2026-12-01")).is_dir(), "{site}");
    }
    // A query by site and date reads only that partition's files.
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let files_there = std::fs::read_dir(root.join("readings/site=lyon/date=2026-12-01")).unwrap().count() as i64;
    let plan: String = conn
        .query_row(
            &format!(
                "EXPLAIN ANALYZE SELECT count(*) FROM {} WHERE site = 'lyon' AND date = '2026-12-01'",
                lake_sql(&root, "readings")
            ),
            [],
            |r| r.get(1),
        )
        .unwrap();
    let read = plan
        .lines()
        .find_map(|l| l.split("Total Files Read:").nth(1))
        .and_then(|n| n.trim().trim_end_matches('│').trim().parse::<i64>().ok());
    assert_eq!(read, Some(files_there), "{plan}");
}

/// Central alerting: the gateways' own rules fire at the edge; the center
/// reads their alert subjects and a `relay` rule sends them on, each once.
#[test]
fn a_relay_rule_at_the_center_sends_the_gateways_alerts_on() {
    let dir = tmp();
    let hub = Nats::single(dir.path(), Version::Current, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(120));
    let mut fired = 0;
    for gw in ["gw1", "gw2"] {
        let home = dir.path().join(gw);
        std::fs::create_dir_all(&home).unwrap();
        let spec = write(
            &home,
            "gw.yaml",
            &format!(
                "version: 1
name: gw
identity: {{site: berlin, gateway: {gw}}}
store: {{path: gw.duckdb, flush: 100ms}}
sources:
  plant:
    type: simulate
    interval: 1s
    signals:
      line.a: {{shape: sine, mean: 10, amplitude: 1, period: 1m}}
alerts:
  high:
    when: \"value > 10.9\"
    severity: critical
    notify: []
forward:
  fleet: {{type: nats, url: \"{}\", stream: FLEET}}
",
                hub.urls()[0]
            ),
        );
        eg(["alert", spec.to_str().unwrap(), "--duration", "5m"]).dir(&home).run().code(0);
        fired += query_i64(&home.join("gw.duckdb"), "SELECT count(*) FROM alerts WHERE notifier IS NULL");
    }
    assert!(fired >= 4, "the gateways' rule fired ({fired})");
    let spec = center(
        dir.path(),
        &hub.urls(),
        "alerts",
        "    subjects: [\"eg.*.*.alert\", \"eg.*.*.reading\"]\n",
        "store: {path: center.duckdb, flush: 100ms, records: [anomaly, alert]}
alerts:
  page:
    relay: true
    when: \"severity == 'critical' and state == 'firing'\"
    notify: [log]
notifiers:
  log: {type: file, path: paged.log, format: json}
",
    );
    eg(["alert", spec.to_str().unwrap(), "--once", "--timeout", "20s"]).dir(dir.path()).run().code(0);
    let paged: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("paged.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let firing = paged.len() as i64;
    assert!(firing > 0 && firing <= fired, "{firing} of {fired}");
    // Named at the center, fingerprinted per gateway.
    assert!(paged.iter().all(|p| p["channel"].as_str().unwrap().starts_with("berlin.gw")));
    let prints: std::collections::BTreeSet<&str> = paged.iter().map(|p| p["fingerprint"].as_str().unwrap()).collect();
    assert_eq!(prints.len(), 2, "one fingerprint per gateway's channel");
    // The center keeps what it needs: alerts and their deliveries, not the readings.
    let db = dir.path().join("center.duckdb");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alerts WHERE notifier = 'log'"), firing);
    // Acknowledged after the commit: a second run sends nothing again.
    eg(["alert", spec.to_str().unwrap(), "--once", "--timeout", "5s"]).dir(dir.path()).run().code(0);
    let again = std::fs::read_to_string(dir.path().join("paged.log")).unwrap().lines().count() as i64;
    assert_eq!(again, firing);
}

#[test]
fn center_specs_are_checked_with_positions() {
    let dir = tmp();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "version: 1
name: center
sources:
  fleet:
    type: nats
    url: nats://hub:4222
    stream: FLEET
    consumer: \"lake.1\"
    subjects: [\"eg.>.x\"]
    channel: \"{gateway}.{tag}.{channel}\"
alerts:
  page:
    relay: true
    when: \"severity == 'critical'\"
    for: 1m
    notify: []
export:
  lake:
    type: parquet
    path: s3://Bad_Bucket/x
    partition: [site, site]
    roll: {max_rows: 0}
  folder:
    type: parquet
    path: lake
    s3: {access_key: {env: A}, secret_key: {env: B}}
identity: {site: berlin, gateway: gw1}
store: {path: c.duckdb, records: [anomaly]}
forward:
  up: {type: mqtt, url: \"http://broker\", qos: 0, prefix: \"eg/#\"}
",
    );
    let out = eg(["validate", bad.to_str().unwrap()]).run();
    out.code(78)
        .stderr_has("bad.yaml:8:")
        .stderr_has("`lake.1` is not a stream or consumer name")
        .stderr_has("`eg.>.x` is not a subject filter")
        .stderr_has("`{tag}` is not a placeholder")
        .stderr_has("`for` does not apply to a relay rule")
        .stderr_has("`Bad_Bucket` is not an S3 bucket name")
        .stderr_has("an `s3://` path needs `s3:")
        .stderr_has("`site` twice")
        .stderr_has("between 1 and 100000000 rows")
        .stderr_has("`s3` is for an `s3://` path")
        .stderr_has("an MQTT URL is `mqtt://host:1883` or `mqtts://host:8883`")
        .stderr_has("QoS 1 or 2")
        .stderr_has("`eg/#` is not a topic prefix")
        .stderr_has("the store does not keep `reading` records");
    eg(["validate", "pipelines/fleet-center.yaml"]).run().code(0);
}

/// A gateway that re-sends past the hub's duplicate window (its cursor lost,
/// as after a restore from an old backup): the duplicates reach the stream,
/// and the lake's dedup view still counts every reading once.
#[test]
fn resends_past_the_duplicate_window_reach_the_stream_but_the_lake_view_counts_once() {
    let dir = tmp();
    let hub = Nats::single(dir.path(), Version::Current, "");
    create_stream(&hub.urls(), "FLEET", 1, Duration::from_secs(1));
    let n = gateway(dir.path(), "berlin", "gw1", &hub.urls(), 3, "2026-12-01T10:00:00Z");
    let before = crate::nats_peer::read_stream(&hub.urls(), "FLEET").len();
    std::thread::sleep(Duration::from_millis(1500));
    let home = dir.path().join("berlin-gw1");
    let conn = duckdb::Connection::open(home.join("gw.duckdb")).unwrap();
    conn.execute("DELETE FROM state WHERE component = 'forward'", []).unwrap();
    drop(conn);
    eg(["acquire", home.join("gw.yaml").to_str().unwrap(), "--input", "/dev/null"])
        .dir(&home)
        .run()
        .code(0)
        .stderr_has("backlog empty");
    let msgs = crate::nats_peer::read_stream(&hub.urls(), "FLEET");
    assert_eq!(msgs.len(), 2 * before, "outside the window every re-send is stored again");
    let spec = center(dir.path(), &hub.urls(), "lake", "", FOLDER_LAKE);
    eg(["collect", spec.to_str().unwrap(), "--once", "--timeout", "30s"]).dir(dir.path()).run().code(0);
    assert_eq!(lake_counts(&dir.path().join("lake")), (2 * n, n));
}

#[test]
fn collect_once_exits_69_without_a_hub_and_77_when_refused() {
    let dir = tmp();
    let spec = center(dir.path(), &[format!("nats://127.0.0.1:{}", free_port())], "lake", "", FOLDER_LAKE);
    eg(["collect", spec.to_str().unwrap(), "--once", "--timeout", "3s"])
        .dir(dir.path())
        .run()
        .code(69)
        .stderr_has("0 messages → 0 rows");
    let users = "authorization { users = [ {user: admin, password: adminpw} ] }";
    let hub = Nats::single(dir.path(), Version::Current, users);
    let spec = center(
        dir.path(),
        &hub.urls(),
        "lake",
        "    username: {env: NATS_USER}\n    password: {env: NATS_PASSWORD}\n",
        FOLDER_LAKE,
    );
    eg(["collect", spec.to_str().unwrap(), "--once", "--timeout", "5s"])
        .cmd_env("NATS_USER", "admin")
        .cmd_env("NATS_PASSWORD", "wrong")
        .dir(dir.path())
        .run()
        .code(77);
}
