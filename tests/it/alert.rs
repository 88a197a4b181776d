//! `alert`: rules, templates and every notifier against real receivers — a
//! local HTTP server, mosquitto, a program that dumps its argv — and the cron
//! semantics of state kept in the store.

use std::path::Path;
use std::time::Duration;

use crate::peers::{free_port, python, Broker, Peer};
use crate::support::*;

/// Reading values and channel names that try to escape their place.
const CORPUS: &[(&str, &str)] = &[
    ("plant.$(touch_PWNED1)", "$(touch PWNED2)"),
    ("plant.a;touch_PWNED3", "; touch PWNED4 #"),
    ("plant.x/../../etc/passwd", "../../../etc/passwd"),
    ("plant.\"q'", "\"quotes' and \\ backslash"),
    ("plant.crlf", "line1\r\nline2\r\nX-Injected: yes"),
    ("plant.tpl", "{{7*7}} {% raw %} ${HOME} `id`"),
];

fn fixture(dir: &Path) -> std::path::PathBuf {
    let lines: String = CORPUS
        .iter()
        .enumerate()
        .map(|(i, (ch, text))| {
            let r = serde_json::json!({"ts": format!("2026-03-01T10:00:0{i}Z"), "channel": ch, "value": 97.5, "text": text});
            format!("{r}\n")
        })
        .collect();
    write(dir, "fixture.ndjson", &lines)
}

fn notify_spec(dir: &Path, http: u16, mqtt: u16) -> std::path::PathBuf {
    let argv_log = dir.join("argv.ndjson");
    let dump = repo().join("tests/peers/argv_dump.py");
    let spec = format!(
        r#"version: 1
name: notify
store: {{path: n.duckdb, retention: 3650d}}
alerts:
  hot:
    when: "value is not none and value > 95"
    severity: critical
    notify: [file, hook, run, bus]
    title: "{{{{ channel }}}} at {{{{ value }}}}: {{{{ text }}}}"
    labels: {{room: B1}}
notifiers:
  file: {{type: file, path: alerts.log}}
  hook:
    type: webhook
    url: "http://127.0.0.1:{http}/hook"
    body: '{{"title": {{{{ title }}}}, "channel": {{{{ channel }}}}, "text": {{{{ text }}}}, "labels": {{{{ labels }}}}}}'
    retries: 1
    timeout: 5s
  run: {{type: exec, command: ["{py}", "{dump}", "{argv_log}", "{{{{ channel }}}}", "{{{{ text }}}}", "--title={{{{ title }}}}"]}}
  bus: {{type: mqtt, url: "mqtt://127.0.0.1:{mqtt}", topic: "alerts/{{{{ rule }}}}/{{{{ fingerprint }}}}", qos: 1, retain: true}}
"#,
        py = python(),
        dump = dump.display(),
        argv_log = argv_log.display(),
    );
    write(dir, "n.yaml", &spec)
}

/// Retained messages under `filter`: (topic, payload).
fn retained(port: u16, filter: &str, want: usize) -> Vec<(String, String)> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let o = MqttOptions::new(format!("sub-{}", free_port()), "127.0.0.1", port);
        let (client, mut ev) = AsyncClient::new(o, 100);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while got.len() < want {
                if let Ok(Event::Incoming(Packet::Publish(p))) = ev.poll().await {
                    got.push((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned()));
                }
            }
        })
        .await;
        got
    })
}

fn of<'a>(render: &'a [serde_json::Value], notifier: &str) -> Vec<&'a serde_json::Value> {
    render.iter().filter(|r| r["notifier"] == notifier).collect()
}

/// Every notifier delivers exactly what `--render` showed, and hostile
/// values stay data: printed literally, JSON bodies parse, nothing runs.
#[test]
fn every_notifier_delivers_what_render_showed() {
    let dir = tmp();
    let http = free_port();
    let http_log = dir.path().join("http.ndjson");
    let _receiver = Peer::start(&[
        &python(),
        "tests/peers/http_receiver.py",
        "--port",
        &http.to_string(),
        "--log",
        http_log.to_str().unwrap(),
    ]);
    let broker = Broker::start(dir.path());
    notify_spec(dir.path(), http, broker.port);
    let fx = fixture(dir.path());

    let preview = eg(["alert", "n.yaml", "--render", fx.to_str().unwrap()]).dir(dir.path()).run();
    preview.code(0);
    let render = preview.lines();
    assert_eq!(render.len(), CORPUS.len() * 4, "{}", preview.stdout);
    assert!(!dir.path().join("alerts.log").exists(), "--render sends nothing");

    let run = eg(["alert", "n.yaml", "--input", fx.to_str().unwrap(), "--no-progress"]).dir(dir.path()).run();
    run.code(0);
    run.stderr_has("6 notifications (24 delivered)");

    // file: the rendered lines, one per notification, CR/LF escaped.
    let log = std::fs::read_to_string(dir.path().join("alerts.log")).unwrap();
    let want: Vec<&str> = of(&render, "file").iter().map(|r| r["line"].as_str().unwrap()).collect();
    assert_eq!(log.lines().collect::<Vec<_>>(), want);
    assert!(log.contains("line1\\r\\nline2"), "{log}");

    // webhook: the rendered bodies, valid JSON holding the raw text.
    let posts: Vec<serde_json::Value> =
        std::fs::read_to_string(&http_log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let hooks = of(&render, "hook");
    assert_eq!(posts.len(), hooks.len());
    for (i, (post, r)) in posts.iter().zip(&hooks).enumerate() {
        assert_eq!(post["body"], r["body"]);
        assert_eq!(post["headers"]["idempotency-key"], r["idempotency_key"]);
        assert_eq!(post["headers"]["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(post["body"].as_str().unwrap()).expect("JSON body");
        assert_eq!(body["text"], CORPUS[i].1);
        assert_eq!(body["channel"], CORPUS[i].0);
        assert_eq!(body["labels"]["room"], "B1");
    }

    // exec: each template one argv entry, the environment clean.
    let dumps: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("argv.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut got: Vec<String> = dumps.iter().map(|d| d["argv"].to_string()).collect();
    let mut want: Vec<String> = of(&render, "run")
        .iter()
        .map(|r| serde_json::Value::from(r["argv"].as_array().unwrap()[3..].to_vec()).to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let env_keys: Vec<&String> = dumps[0]["env"].as_object().unwrap().keys().collect();
    assert!(env_keys.iter().all(|k| *k == "PATH" || k.starts_with("LC_")), "{env_keys:?}");
    assert!(dumps.iter().any(|d| d["argv"][1] == "$(touch PWNED2)"));

    // mqtt: the rendered topics and payloads, retained.
    let mut msgs = retained(broker.port, "alerts/hot/#", CORPUS.len());
    let mut want: Vec<(String, String)> = of(&render, "bus")
        .iter()
        .map(|r| (r["topic"].as_str().unwrap().to_string(), r["payload"].as_str().unwrap().to_string()))
        .collect();
    msgs.sort();
    want.sort();
    assert_eq!(msgs, want);

    // Nothing ran: no file from the corpus anywhere.
    for d in [dir.path(), &repo()] {
        let made: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("PWNED"))
            .collect();
        assert!(made.is_empty(), "{made:?}");
    }
    // The notification log: the alerts and one row per delivery, no error.
    let db = dir.path().join("n.duckdb");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alerts WHERE notifier IS NULL"), 6);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alerts WHERE notifier IS NOT NULL AND error IS NULL"), 24);
}

fn cron_spec(dir: &Path) {
    write(
        dir,
        "c.yaml",
        "version: 1\nname: c\nstore: {path: c.duckdb, retention: 3650d}\n\
         alerts:\n  hot: {when: \"value > 95\", for: 5m, repeat: 10m, notify: [log], title: \"{{ channel }} {{ value }}\"}\n\
         notifiers:\n  log: {type: file, path: alerts.log, format: json}\n",
    );
}

fn minute(dir: &Path, m: u32, value: f64) -> Out {
    let line = format!("{{\"ts\":\"2026-03-01T10:{m:02}:00Z\",\"channel\":\"boiler.temp\",\"value\":{value}}}\n");
    eg(["alert", "c.yaml", "--input", "-", "--no-progress"]).dir(dir).stdin(line).run()
}

fn notified(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("alerts.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|a| (a["ts"].as_str().unwrap()[11..16].to_string(), a["state"].as_str().unwrap().to_string()))
        .collect()
}

/// Cron: one run a minute with the store keeping the state. `for: 5m` fires
/// on the sixth run, `repeat: 10m` notifies again ten runs later, and the
/// clear resolves it.
#[test]
fn cron_runs_keep_for_and_repeat() {
    let dir = tmp();
    cron_spec(dir.path());
    for m in 0..5 {
        minute(dir.path(), m, 97.0).code(0);
        assert!(notified(dir.path()).is_empty(), "fired at run {}", m + 1);
    }
    minute(dir.path(), 5, 97.0).code(0);
    assert_eq!(notified(dir.path()), vec![("10:05".into(), "firing".into())]);
    for m in 6..=16 {
        minute(dir.path(), m, 97.0).code(0);
    }
    minute(dir.path(), 17, 90.0).code(0);
    assert_eq!(
        notified(dir.path()),
        vec![("10:05".into(), "firing".into()), ("10:15".into(), "firing".into()), ("10:17".into(), "resolved".into())]
    );
}

/// A receiver that is down: retried, then recorded as failed with its error
/// (exit 1); the file notifier still delivered. A receiver that fails once
/// gets the same idempotency key twice.
#[test]
fn a_receiver_down_is_retried_then_recorded() {
    let dir = tmp();
    let down = free_port();
    write(
        dir.path(),
        "d.yaml",
        &format!(
            "version: 1\nname: d\nstore: {{path: d.duckdb, retention: 3650d}}\n\
             alerts:\n  hot: {{when: \"value > 95\", notify: [hook, log], title: \"{{{{ channel }}}}\"}}\n\
             notifiers:\n  hook: {{type: webhook, url: \"http://127.0.0.1:{down}/x\", retries: 2, timeout: 2s}}\n  log: {{type: file, path: alerts.log}}\n"
        ),
    );
    let line = "{\"ts\":\"2026-03-01T10:00:00Z\",\"channel\":\"boiler.temp\",\"value\":99}\n";
    let out = eg(["alert", "d.yaml", "--input", "-", "--no-progress"]).dir(dir.path()).stdin(line).run();
    out.code(1).stderr_has("1 notification not delivered");
    assert!(out.elapsed >= Duration::from_millis(700), "two backoffs (250 + 500 ms): {:?}", out.elapsed);
    assert_eq!(std::fs::read_to_string(dir.path().join("alerts.log")).unwrap().lines().count(), 1);
    let db = dir.path().join("d.duckdb");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alerts WHERE notifier = 'log' AND error IS NULL"), 1);
    let err = query_string(&db, "SELECT error FROM alerts WHERE notifier = 'hook'");
    assert!(err.contains("127.0.0.1"), "{err}");

    // Up, but failing once: the second attempt carries the same key.
    let log = dir.path().join("http.ndjson");
    let _r = Peer::start(&[
        &python(),
        "tests/peers/http_receiver.py",
        "--port",
        &down.to_string(),
        "--log",
        log.to_str().unwrap(),
        "--fail",
        "1",
    ]);
    let line = "{\"ts\":\"2026-03-01T11:00:00Z\",\"channel\":\"boiler.temp2\",\"value\":99}\n";
    eg(["alert", "d.yaml", "--input", "-", "--no-progress"]).dir(dir.path()).stdin(line).run().code(0);
    let posts: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(posts.len(), 2);
    assert_eq!((posts[0]["status"].as_i64(), posts[1]["status"].as_i64()), (Some(500), Some(200)));
    assert_eq!(posts[0]["headers"]["idempotency-key"], posts[1]["headers"]["idempotency-key"]);
    let alert: serde_json::Value = serde_json::from_str(posts[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!((alert["kind"].as_str(), alert["channel"].as_str()), (Some("alert"), Some("boiler.temp2")));
}

/// Silences are kept in the store: listed, honoured, ended.
#[test]
fn silences_are_kept_listed_and_ended() {
    let dir = tmp();
    cron_spec(dir.path());
    let ok = |args: &[&str]| {
        let mut all = vec!["alert", "c.yaml"];
        all.extend_from_slice(args);
        eg(all).dir(dir.path()).run()
    };
    ok(&["--silence", "hot:boiler.*", "--for", "2h", "--comment", "maintenance"])
        .code(0)
        .stderr_has("silenced `hot` on boiler.*");
    let listed = ok(&["--silences"]);
    listed.code(0);
    let l = listed.lines();
    assert_eq!((l.len(), l[0]["rule"].as_str(), l[0]["comment"].as_str()), (1, Some("hot"), Some("maintenance")));
    // Now + 10 min of readings above the limit: firing, but nothing sent.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let lines: String =
        (0..11).map(|m| format!("{{\"ts\":{},\"channel\":\"boiler.temp\",\"value\":99}}\n", now + m * 60)).collect();
    let out = eg(["alert", "c.yaml", "--input", "-", "--no-progress"]).dir(dir.path()).stdin(lines).run();
    out.code(0).stderr_has("1 silenced");
    assert!(notified(dir.path()).is_empty());
    ok(&["--unsilence", "hot"]).code(0).stderr_has("ended 1 silence");
    assert!(ok(&["--silences"]).lines().is_empty());
    ok(&["--unsilence", "hot"]).code(1).stderr_has("no active silence");
    ok(&["--silence", "cold", "--for", "1h"]).code(2).stderr_has("no alert rule `cold` (rules: hot)");
    ok(&["--silence", "hot"]).code(2);
    eg(["alert", "c.yaml", "--silences", "--no-store"]).dir(dir.path()).run().code(2);
}

/// Templates are checked at validate time; a hostile one cannot hang; a
/// render error at run time sends the fallback with the error and record.
#[test]
fn templates_are_checked_bounded_and_never_drop_a_notification() {
    let dir = tmp();
    let spec = |title: &str| {
        format!(
            "version: 1\nname: t\nalerts:\n  hot: {{when: \"value > 95\", notify: [log], title: '{title}'}}\n\
             notifiers:\n  log: {{type: file, path: alerts.log}}\n"
        )
    };
    write(dir.path(), "typo.yaml", &spec("{{ chanel }}"));
    eg(["validate", "typo.yaml"]).dir(dir.path()).run().code(78).stderr_has("alerts.hot.title");
    let hostile = "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
    write(dir.path(), "hostile.yaml", &spec(hostile));
    let out = eg(["validate", "hostile.yaml"]).dir(dir.path()).run();
    out.code(78);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    // Renders on the sample (value 81.25) but divides by zero at 97.
    write(dir.path(), "zero.yaml", &spec("{{ 100 // (value | int - 97) }}"));
    eg(["validate", "zero.yaml"]).dir(dir.path()).run().code(0);
    let line = "{\"ts\":\"2026-03-01T10:00:00Z\",\"channel\":\"boiler.temp\",\"value\":97}\n";
    let out =
        eg(["alert", "zero.yaml", "--input", "-", "--no-store", "--no-progress"]).dir(dir.path()).stdin(line).run();
    out.code(0).stderr_has("1 template fallback");
    let log = std::fs::read_to_string(dir.path().join("alerts.log")).unwrap();
    assert!(log.contains("[edgeguard] alert `hot` (template error: title:") && log.contains("\"value\":97"), "{log}");
}

/// An exec notifier that outlives its timeout: its whole process group is
/// killed (the grandchild too), the failure is recorded, the run ends.
#[test]
fn an_exec_past_its_timeout_is_killed_with_its_group() {
    let dir = tmp();
    let marker = format!("{}.25", free_port());
    write(
        dir.path(),
        "e.yaml",
        &format!(
            "version: 1\nname: e\nalerts:\n  hot: {{when: \"value > 95\", notify: [run], title: x}}\n\
             notifiers:\n  run: {{type: exec, command: [sh, -c, \"sleep {marker} & sleep {marker}\"], timeout: 1s}}\n"
        ),
    );
    let line = "{\"ts\":\"2026-03-01T10:00:00Z\",\"channel\":\"boiler.temp\",\"value\":99}\n";
    let out = eg(["alert", "e.yaml", "--input", "-", "--no-store", "--no-progress"]).dir(dir.path()).stdin(line).run();
    out.code(1).stderr_has("did not finish within 1s; its process group was killed");
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    std::thread::sleep(Duration::from_millis(200));
    let left = std::process::Command::new("pgrep").args(["-f", &format!("sleep {marker}")]).output().unwrap();
    assert!(left.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&left.stdout));
}

/// An exec that floods stderr, or leaves a helper holding it, still counts
/// as delivered when it exits 0 in time.
#[test]
fn an_exec_is_judged_by_its_exit_not_by_its_stderr() {
    let dir = tmp();
    write(
        dir.path(),
        "x.yaml",
        "version: 1\nname: x\nalerts:\n  hot: {when: \"value > 95\", notify: [loud, helper], title: x}\n\
         notifiers:\n  loud: {type: exec, command: [sh, -c, \"head -c 300000 /dev/zero >&2; exit 0\"], timeout: 5s}\n\
         \x20 helper: {type: exec, command: [sh, -c, \"sleep 2 & exit 0\"], timeout: 5s}\n",
    );
    let line = "{\"ts\":\"2026-03-01T10:00:00Z\",\"channel\":\"boiler.temp\",\"value\":99}\n";
    let out = eg(["alert", "x.yaml", "--input", "-", "--no-store", "--no-progress"]).dir(dir.path()).stdin(line).run();
    out.code(0).stderr_has("1 notification (2 delivered)");
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
}

/// Alert records go to stdout, `--fail-on alert` exits 3, and `--render`
/// previews one rule or names the rules there are.
#[test]
fn alert_records_fail_on_and_render_one_rule() {
    let dir = tmp();
    write(
        dir.path(),
        "r.yaml",
        "version: 1\nname: r\nalerts:\n  hot: {when: \"value > 95\", title: \"{{ channel }} hot\"}\n\
         \x20 cold: {when: \"value < 0\", title: \"{{ channel }} cold\", notify: [log]}\n\
         notifiers:\n  log: {type: file, path: alerts.log}\n",
    );
    let lines = "{\"ts\":\"2026-03-01T10:00:00Z\",\"channel\":\"b.t\",\"value\":99}\n\
                 {\"ts\":\"2026-03-01T10:00:01Z\",\"channel\":\"b.t\",\"value\":-3}\n";
    let out = eg(["alert", "r.yaml", "--input", "-", "--no-store", "--only", "alert", "--fail-on", "alert"])
        .dir(dir.path())
        .stdin(lines)
        .run();
    out.code(3);
    let recs = out.lines();
    let got: Vec<(&str, &str)> =
        recs.iter().map(|r| (r["rule"].as_str().unwrap(), r["state"].as_str().unwrap())).collect();
    assert_eq!(got, vec![("hot", "firing"), ("hot", "resolved"), ("cold", "firing")]);
    assert_eq!(recs[0]["title"], "b.t hot");
    write(dir.path(), "f.ndjson", lines);
    let one = eg(["alert", "r.yaml", "--render", "f.ndjson", "--rule", "cold"]).dir(dir.path()).run();
    one.code(0);
    let r = one.lines();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0]["notifier"].as_str(), r[0]["line"].as_str().map(|l| l.ends_with("b.t cold"))),
        (Some("log"), Some(true))
    );
    let none = eg(["alert", "r.yaml", "--render", "f.ndjson", "--rule", "warm"]).dir(dir.path()).run();
    none.code(2).stderr_has("no alert rule `warm` (rules: hot, cold)");
    eg(["alert", "r.yaml", "--render", "missing.ndjson"]).dir(dir.path()).run().code(66);
}

/// The aiosmtpd peer of `tests/peers/smtp_peer.py` with a certificate for
/// 127.0.0.1 (`implicit`: TLS from the first byte, else STARTTLS required).
fn smtp_peer(dir: &Path, port: u16, implicit: bool) -> Peer {
    let log = dir.join("smtp.ndjson");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let port = port.to_string();
    let mut argv = vec![
        python(),
        "tests/peers/smtp_peer.py".into(),
        "--port".into(),
        port,
        "--log".into(),
        log.display().to_string(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ];
    if implicit {
        argv.push("--implicit".into());
    }
    Peer::start(&argv.iter().map(String::as_str).collect::<Vec<_>>())
}

fn email_spec(dir: &Path, scheme: &str, port: u16) -> std::path::PathBuf {
    write(
        dir,
        "m.yaml",
        &format!(
            r#"version: 1
name: m
store: {{path: m.duckdb, retention: 3650d}}
alerts:
  hot:
    when: "value is not none and value > 95"
    severity: critical
    notify: [mail]
    title: "{{{{ channel }}}}: {{{{ text }}}}"
notifiers:
  mail:
    type: email
    url: "{scheme}://127.0.0.1:{port}"
    from: edgeguard@plant.example
    to: ["ops@plant.example", "{{{{ 'oncall@plant.example' if severity == 'critical' else '' }}}}"]
    subject: "[{{{{ severity }}}}] {{{{ title }}}}"
    body: "{{{{ channel }}}} = {{{{ value }}}}\n{{{{ text }}}}"
    username: {{env: SMTP_USER}}
    password: {{file: smtp.pass}}
    tls: {{ca: ca.pem}}
    retries: 0
    timeout: 10s
"#
        ),
    )
}

/// The message's headers and its decoded text part.
fn headers_and_text(data: &str) -> (String, String) {
    let (head, rest) = data.split_once("\r\n\r\n").or_else(|| data.split_once("\n\n")).unwrap();
    let b64: String = rest.lines().take_while(|l| !l.is_empty()).collect();
    let out = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut out = out;
    out.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
    let text = String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap();
    (head.to_string(), text)
}

/// Email over STARTTLS and over TLS to a real SMTP server: what `--render`
/// shows is what arrives; CR/LF in a channel's text stays in the body; a
/// refused login fails the run (exit 1), is recorded in the delivery log,
/// and the password is printed nowhere.
#[test]
fn email_over_starttls_and_tls_with_a_refused_login() {
    let dir = tmp();
    crate::peers::certificates(dir.path());
    write(dir.path(), "smtp.pass", "s3cret\n");
    let line = "{\"ts\":\"2026-03-01T10:00:00Z\",\"channel\":\"plant.crlf\",\"value\":97.5,\"text\":\"line1\\r\\nBcc: everyone@example.com\\r\\nX-Injected: yes\"}\n";
    for (scheme, implicit) in [("smtp", false), ("smtps", true)] {
        let port = free_port();
        let _peer = smtp_peer(dir.path(), port, implicit);
        let _ = std::fs::remove_file(dir.path().join("smtp.ndjson"));
        email_spec(dir.path(), scheme, port);
        write(dir.path(), "fixture.ndjson", line);
        let render = eg(["alert", "m.yaml", "--render", "fixture.ndjson"]).dir(dir.path()).run();
        render.code(0);
        let shown: serde_json::Value = serde_json::from_str(render.stdout.lines().next().unwrap()).unwrap();
        assert_eq!(shown["type"], "email");
        assert_eq!(shown["to"], serde_json::json!(["ops@plant.example", "oncall@plant.example"]));
        assert_eq!(shown["subject"], "[critical] plant.crlf: line1  Bcc: everyone@example.com  X-Injected: yes");
        let out = eg(["alert", "m.yaml", "--input", "-", "--no-progress"])
            .dir(dir.path())
            .cmd_env("SMTP_USER", "edgeguard")
            .stdin(line)
            .run();
        out.code(0);
        let got: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("smtp.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), 1, "{scheme}");
        assert_eq!(got[0]["tls"], true);
        assert_eq!(got[0]["from"], "edgeguard@plant.example");
        assert_eq!(got[0]["to"], serde_json::json!(["ops@plant.example", "oncall@plant.example"]));
        let (head, text) = headers_and_text(got[0]["data"].as_str().unwrap());
        assert!(!head.lines().any(|l| l.starts_with("Bcc") || l.starts_with("X-Injected")), "{head}");
        assert!(
            head.contains("Subject: [critical] plant.crlf: line1  Bcc:") || head.contains("Subject: =?utf-8?b?"),
            "{head}"
        );
        assert_eq!(text, shown["body"].as_str().unwrap());
        assert!(text.contains("line1\r\nBcc: everyone@example.com\r\nX-Injected: yes"), "{text:?}");

        // A wrong password: refused, recorded, never printed.
        write(dir.path(), "smtp.pass", "wrong-horse-battery\n");
        let line2 = line.replace("10:00:00", "11:00:00").replace("plant.crlf", "plant.other");
        let out = eg(["alert", "m.yaml", "--input", "-", "--no-progress"])
            .dir(dir.path())
            .cmd_env("SMTP_USER", "edgeguard")
            .stdin(line2)
            .run();
        out.code(1).stderr_has("1 notification not delivered");
        assert!(!out.stderr.contains("wrong-horse-battery") && !out.stdout.contains("wrong-horse-battery"));
        let db = dir.path().join("m.duckdb");
        let err = query_string(&db, "SELECT error FROM alerts WHERE notifier = 'mail' AND error IS NOT NULL");
        assert!(err.contains("login refused: AUTH: 535"), "{err}");
        assert!(!err.contains("wrong-horse-battery"), "{err}");
        write(dir.path(), "smtp.pass", "s3cret\n");
        let _ = std::fs::remove_file(&db);
    }
}

/// Groups and inhibition through the binary: twenty channels bad at once are
/// one group notification listing them; `--render` shows it.
#[test]
fn render_shows_one_group_for_twenty_channels() {
    let dir = tmp();
    write(
        dir.path(),
        "g.yaml",
        "version: 1\nname: g\n\
         alerts:\n  bad:\n    when: \"quality == 'bad'\"\n    notify: [log]\n    title: \"{{ channel }} bad\"\n\
         notifiers:\n  log:\n    type: file\n    path: alerts.log\n    template: \"{{ count }}: {% for a in alerts %}{{ a.channel }} {% endfor %}\"\n    group: {by: [source], wait: 30s, interval: 5m}\n",
    );
    let lines: String = (0..20)
        .map(|i| {
            format!(
                "{{\"ts\":\"2026-03-01T10:00:00Z\",\"channel\":\"line.ch{i:02}\",\"value\":1,\"quality\":\"bad\"}}\n"
            )
        })
        .collect();
    write(dir.path(), "f.ndjson", &lines);
    let out = eg(["alert", "g.yaml", "--render", "f.ndjson"]).dir(dir.path()).run();
    out.code(0);
    let rows: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{}", out.stdout);
    assert_eq!(rows[0]["alert"]["group"]["count"], 20);
    assert!(rows[0]["line"].as_str().unwrap().starts_with("20: line.ch00 line.ch01"), "{}", rows[0]);
}
