//! MQTT acquisition against a real mosquitto: at-least-once through crashes
//! of edgeguard and of the broker, oversized messages, and `--once`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::*;
use crate::support::*;

fn spec(port: u16, extra_source: &str, topics: &str) -> String {
    format!(
        "version: 1\nname: t\nstore: {{path: s.duckdb, flush: 200ms}}\nsources:\n  broker:\n    type: mqtt\n    url: mqtt://127.0.0.1:{port}\n    client_id: edgeguard-test\n    qos: 1\n{extra_source}    topics:\n{topics}"
    )
}

/// `edgeguard acquire s.yaml` in `dir`, stdout discarded, stderr appended to `dir/err.log`.
fn start(dir: &Path, args: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("err.log")).unwrap();
    Command::new(bin())
        .args(["acquire", "s.yaml", "--no-progress"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn signal(child: &mut Child, sig: i32) -> i32 {
    unsafe { libc::kill(child.id() as i32, sig) };
    wait4(child.id() as i32).0
}

/// Waits until the store holds `n` distinct sequence numbers (the consumer
/// must not be running: one writer at a time), restarting it between looks.
fn distinct(db: &Path) -> i64 {
    query_i64(db, "SELECT count(DISTINCT value) FROM readings WHERE channel = 'seq.n'")
}

fn numbered(from: usize, to: usize) -> Vec<(String, Vec<u8>)> {
    (from..to).map(|i| (format!("seq/{}", i % 4), format!("{{\"n\":{i}}}").into_bytes())).collect()
}

const SEQ_TOPIC: &str = "      - {filter: \"seq/#\", channel: seq.n, value: /n}\n";

#[test]
#[allow(clippy::print_stderr)] // the duplicate count is worth seeing in the test log
fn qos1_loses_nothing_when_edgeguard_is_killed_five_times() {
    let dir = tmp();
    let broker = Broker::start(dir.path());
    write(dir.path(), "s.yaml", &spec(broker.port, "", SEQ_TOPIC));
    // The first start creates the persistent session; from then on the
    // broker keeps every message for it.
    let mut consumer = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    const N: usize = 50_000;
    let port = broker.port;
    let publisher = std::thread::spawn(move || publish(port, 1, false, numbered(0, N)));
    // SIGKILL at five pseudo-random moments (fixed seed: reruns see the same).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 900));
        assert_eq!(signal(&mut consumer, libc::SIGKILL), 128 + libc::SIGKILL);
        consumer = start(dir.path(), &[]);
    }
    publisher.join().unwrap();
    // Let the last consumer drain the backlog, then stop it and look.
    let db = dir.path().join("s.duckdb");
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            signal(&mut consumer, libc::SIGTERM),
            0,
            "{}",
            std::fs::read_to_string(dir.path().join("err.log")).unwrap()
        );
        let got = distinct(&db);
        if got == N as i64 || started.elapsed() > Duration::from_secs(90) {
            let total = query_i64(&db, "SELECT count(*) FROM readings WHERE channel = 'seq.n'");
            eprintln!("{got} distinct of {N}, {} duplicates after 5 SIGKILLs", total - got);
            assert_eq!(got, N as i64, "messages lost");
            assert_eq!(query_i64(&db, "SELECT min(value)::BIGINT FROM readings WHERE channel = 'seq.n'"), 0);
            assert_eq!(query_i64(&db, "SELECT max(value)::BIGINT FROM readings WHERE channel = 'seq.n'"), N as i64 - 1);
            break;
        }
        consumer = start(dir.path(), &[]);
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    let dir = tmp();
    let mut broker = Broker::start(dir.path());
    write(dir.path(), "s.yaml", &spec(broker.port, "", SEQ_TOPIC));
    let mut consumer = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    publish(broker.port, 1, false, numbered(0, 5000));
    broker.restart();
    publish(broker.port, 1, false, numbered(5000, 10_000));
    // Reconnection backs off at most 10 s; then the queue drains.
    std::thread::sleep(Duration::from_secs(4));
    let db = dir.path().join("s.duckdb");
    let started = Instant::now();
    loop {
        assert_eq!(signal(&mut consumer, libc::SIGTERM), 0);
        let got = distinct(&db);
        if got == 10_000 || started.elapsed() > Duration::from_secs(40) {
            assert_eq!(got, 10_000, "{}", std::fs::read_to_string(dir.path().join("err.log")).unwrap());
            break;
        }
        consumer = start(dir.path(), &[]);
        std::thread::sleep(Duration::from_secs(3));
    }
    let log = std::fs::read_to_string(dir.path().join("err.log")).unwrap();
    assert!(log.contains("reconnecting") && log.contains("2 connects"), "{log}");
}

#[test]
fn an_oversized_message_is_rejected_once_and_traffic_goes_on() {
    let dir = tmp();
    let broker = Broker::start(dir.path());
    write(dir.path(), "s.yaml", &spec(broker.port, "    max_payload: 1024\n", SEQ_TOPIC));
    let mut consumer = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut msgs = numbered(0, 100);
    msgs.push(("seq/big".into(), format!("{{\"n\":-1,\"pad\":\"{}\"}}", "x".repeat(200_000)).into_bytes()));
    msgs.extend(numbered(100, 200));
    publish(broker.port, 1, false, msgs);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(signal(&mut consumer, libc::SIGTERM), 0);
    // The next run must not see the big one again (it was acknowledged).
    let mut again = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(signal(&mut again, libc::SIGTERM), 0);
    let db = dir.path().join("s.duckdb");
    assert_eq!(distinct(&db), 200);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings WHERE value < 0"), 0);
    let log = std::fs::read_to_string(dir.path().join("err.log")).unwrap();
    assert_eq!(log.matches("over max_payload").count(), 1, "{log}");
    assert!(log.contains("1 rejected (1 oversized)"), "{log}");
}

#[test]
fn once_takes_retained_messages_and_reports_silent_topics() {
    let dir = tmp();
    let broker = Broker::start(dir.path());
    publish(
        broker.port,
        1,
        true,
        vec![
            ("plant/boiler/temp".into(), b"81.5".to_vec()),
            ("plant/pump/temp".into(), b"40".to_vec()),
            ("lab/json".into(), br#"{"t": 21.25, "h": 40, "ts": "2026-03-01T12:00:00Z"}"#.to_vec()),
        ],
    );
    let topics = "      - {filter: \"plant/+/temp\", channel: \"plant.{{ topic[1] }}.temp\", unit: degC}\n      - {filter: lab/json, values: {/t: lab.temp, /h: lab.humidity}, timestamp: /ts}\n";
    write(dir.path(), "s.yaml", &spec(broker.port, "", topics));
    let out = eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "5s"]).dir(dir.path()).run();
    out.code(0);
    let mut got: Vec<(String, f64)> = out
        .lines()
        .iter()
        .map(|r| (r["channel"].as_str().unwrap().to_string(), r["value"].as_f64().unwrap()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("lab.humidity".into(), 40.0),
            ("lab.temp".into(), 21.25),
            ("plant.boiler.temp".into(), 81.5),
            ("plant.pump.temp".into(), 40.0)
        ]
    );
    let lab = out.lines().into_iter().find(|r| r["channel"] == "lab.temp").unwrap();
    assert_eq!(lab["ts"], "2026-03-01T12:00:00.000Z");
    assert!(out.elapsed < Duration::from_secs(4), "--once waited for nothing: {:?}", out.elapsed);

    // A filter nobody publishes to: the run ends at --timeout with exit 1.
    let topics = "      - {filter: \"plant/+/temp\", channel: \"plant.{{ topic[1] }}.temp\"}\n      - {filter: silent/topic, channel: s.t}\n";
    write(dir.path(), "s.yaml", &spec(broker.port, "", topics));
    let out = eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "1s"]).dir(dir.path()).run();
    out.code(1).stderr_has("topic silent/topic did not answer");

    // No broker: 69.
    write(dir.path(), "s.yaml", &spec(free_port(), "", topics));
    eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "1s"]).dir(dir.path()).run().code(69);
    // A secret that is not set: the spec cannot run (78), before any connection.
    let with_user = "    username: {env: EDGEGUARD_TEST_NO_SUCH_VAR}\n";
    write(dir.path(), "s.yaml", &spec(broker.port, with_user, topics));
    eg(["acquire", "s.yaml", "--once", "--no-store"])
        .dir(dir.path())
        .run()
        .code(78)
        .stderr_has("EDGEGUARD_TEST_NO_SUCH_VAR");
}

#[test]
fn mqtts_with_a_client_certificate_and_passwords() {
    let dir = tmp();
    let d = dir.path();
    certificates(d);
    let tls = format!(
        "allow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
        d.display()
    );
    let broker = Broker::start_with(d, &tls);
    // The publisher cannot speak TLS here; a plain listener for it on the side.
    let topics = "      - {filter: lab/t, channel: lab.temp}\n";
    let spec = |tls_line: &str| {
        format!(
            "version: 1\nname: t\nsources:\n  broker:\n    type: mqtt\n    url: mqtts://127.0.0.1:{}\n    client_id: edgeguard-tls\n    qos: 1\n{tls_line}    topics:\n{topics}",
            broker.port
        )
    };
    write(d, "s.yaml", &spec("    tls: {ca: ca.pem, cert: client.pem, key: client.key}\n"));
    // Connected and subscribed over TLS: --once waits its timeout for a
    // message nobody sends, and says which topic stayed silent (exit 1).
    let out = eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "2s", "-v"]).dir(d).run();
    out.code(1).stderr_has("topic lab/t did not answer");
    assert!(out.stderr.contains("1 connects") || !out.stderr.contains("connection errors"), "{}", out.stderr);
    // Without the client certificate the broker refuses the handshake: unreachable, 69.
    write(d, "s.yaml", &spec("    tls: {ca: ca.pem}\n"));
    eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "2s"]).dir(d).run().code(69);
    // A CA that did not sign the server: 69 as well, never a silent success.
    write(d, "s.yaml", &spec("    tls: {ca: client.pem, cert: client.pem, key: client.key}\n"));
    eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "2s"]).dir(d).run().code(69);
    drop(broker);

    // Passwords from the environment; a wrong one is refused: 77.
    let pw = d.join("passwd");
    std::fs::write(&pw, "plant:s3cret\n").unwrap();
    let st = Command::new("mosquitto_passwd").arg("-U").arg(&pw).status().expect("mosquitto_passwd");
    assert!(st.success());
    let broker = Broker::start_with(d, &format!("allow_anonymous false\npassword_file {}\n", pw.display()));
    publish_as(broker.port, Some(("plant", "s3cret")), 1, true, vec![("lab/t".into(), b"19.5".to_vec())]);
    let spec = format!(
        "version: 1\nname: t\nsources:\n  broker:\n    type: mqtt\n    url: mqtt://127.0.0.1:{}\n    username: {{env: EG_TEST_USER}}\n    password: {{env: EG_TEST_PASS}}\n    topics:\n{topics}",
        broker.port
    );
    write(d, "s.yaml", &spec);
    let run = |pass: &str| {
        let mut r = eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "3s"]).dir(d);
        r.cmd.env("EG_TEST_USER", "plant").env("EG_TEST_PASS", pass);
        r.run()
    };
    let out = run("s3cret");
    out.code(0);
    assert_eq!(out.lines()[0]["value"], 19.5);
    let out = run("wrong");
    out.code(77).stderr_has("refused");
    assert!(!out.stderr.contains("wrong"), "the password was printed:\n{}", out.stderr);
}

/// The broker comes back without its memory (the session is gone): the
/// subscriptions are made again and new messages flow.
#[test]
fn subscriptions_come_back_when_the_broker_lost_the_session() {
    let dir = tmp();
    let mut broker = Broker::start(dir.path());
    write(dir.path(), "s.yaml", &spec(broker.port, "", SEQ_TOPIC));
    let mut consumer = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    publish(broker.port, 1, false, numbered(0, 100));
    broker.stop();
    std::fs::remove_file(dir.path().join("mosquitto.db")).unwrap();
    broker.restart();
    // Reconnected (backoff) and subscribed again before these are sent.
    std::thread::sleep(Duration::from_secs(3));
    publish(broker.port, 1, false, numbered(100, 200));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(signal(&mut consumer, libc::SIGTERM), 0);
    assert_eq!(
        distinct(&dir.path().join("s.duckdb")),
        200,
        "{}",
        std::fs::read_to_string(dir.path().join("err.log")).unwrap()
    );
}
