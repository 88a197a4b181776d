//! `serve`: the daemon's HTTP API, stream, metrics and auth, driven over
//! HTTP while it runs a simulated plant; the dashboard in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::{client, free_port, get, rt, send, Reaped};
use crate::support::*;

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A `serve` process on a free port, killed when dropped.
pub struct Daemon {
    child: Reaped,
    pub base: String,
}

impl Daemon {
    pub fn start(dir: &Path, spec: &str, extra: &[&str]) -> Daemon {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", spec, "--listen", &listen];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_edgeguard"))
            .args(&args)
            .current_dir(dir)
            .env("EG_TOKEN", TOKEN)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let d = Daemon { child: Reaped(Some(child)), base: format!("http://{listen}") };
        let started = Instant::now();
        while get(&format!("{}/readyz", d.base), None).0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(20), "serve did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// SIGTERM; the exit code and stderr.
    pub fn stop(&mut self) -> (i32, String) {
        let (code, stderr) = self.child.terminate();
        (code.unwrap_or(-1), stderr)
    }
}

pub fn json(url: &str) -> serde_json::Value {
    let (status, body) = get(url, Some(TOKEN));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// The demo plant with a token, a detector that fires and an alert rule.
pub fn spec(dir: &Path) -> PathBuf {
    let demo = std::fs::read_to_string(repo().join("pipelines/demo.yaml")).unwrap();
    let demo = demo.replace("store: {path: demo.duckdb", "store: {path: s.duckdb");
    let extra = "\nserve: {token: {env: EG_TOKEN}}\n";
    write(dir, "s.yaml", &format!("{demo}{extra}"))
}

#[test]
fn the_api_answers_every_endpoint_and_refuses_without_the_token() {
    let dir = tmp();
    spec(dir.path());
    let mut d = Daemon::start(dir.path(), "s.yaml", &["--set", "detect.pressure-jump.max_rate=0.000001/s"]);
    let b = d.base.clone();
    // Auth: health checks and the page are open; everything else needs the token.
    assert_eq!(get(&format!("{b}/healthz"), None).0, 200);
    assert_eq!(get(&format!("{b}/"), None).0, 200);
    for path in ["/api/v1/channels", "/api/v1/readings?channel=boiler.temp.a", "/metrics", "/api/v1/stream"] {
        assert_eq!(get(&format!("{b}{path}"), None).0, 401, "{path}");
        assert_eq!(get(&format!("{b}{path}"), Some("test-token-0123456789abcdeX")).0, 401, "{path}");
    }
    std::thread::sleep(Duration::from_millis(2500));
    let ch = json(&format!("{b}/api/v1/channels"));
    assert_eq!(ch["pipeline"], "boiler-room");
    let names: Vec<&str> = ch["channels"].as_array().unwrap().iter().map(|c| c["channel"].as_str().unwrap()).collect();
    assert!(names.contains(&"boiler.temp.a") && names.contains(&"boiler.temp"), "{names:?}");
    let a = ch["channels"].as_array().unwrap().iter().find(|c| c["channel"] == "boiler.temp.a").unwrap();
    assert_eq!((a["unit"].as_str(), a["quality"].as_str()), (Some("degC"), Some("good")));
    assert!(a["value"].as_f64().unwrap() > 50.0);

    // Posted readings go through validation into the store and the channel list.
    let (status, body) = send(
        client().post(format!("{b}/api/v1/readings")).body("{\"channel\":\"api.x\",\"value\":42}\nnot json\n"),
        Some(TOKEN),
    );
    assert_eq!(status, 202, "{body}");
    let posted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((posted["accepted"].as_u64(), posted["rejected"].as_u64()), (Some(1), Some(1)));
    std::thread::sleep(Duration::from_millis(2500));
    let ch = json(&format!("{b}/api/v1/channels"));
    assert!(ch["channels"].as_array().unwrap().iter().any(|c| c["channel"] == "api.x" && c["value"] == 42.0));
    let r = json(&format!("{b}/api/v1/readings?channel=api.x&since=1h"));
    assert_eq!(r["readings"][0]["value"], 42.0, "{r}");
    let r = json(&format!("{b}/api/v1/readings?channel=boiler.temp.a&since=1h&every=2s"));
    let buckets = r["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 2, "{r}");
    assert!(buckets.iter().all(|x| x["min"].as_f64() <= x["avg"].as_f64() && x["avg"].as_f64() <= x["max"].as_f64()));
    assert_eq!(get(&format!("{b}/api/v1/readings?channel=a&every=soon"), Some(TOKEN)).0, 400);
    assert_eq!(get(&format!("{b}/api/v1/readings"), Some(TOKEN)).0, 400);
    let an = json(&format!("{b}/api/v1/anomalies?since=1h"));
    assert!(!an["anomalies"].as_array().unwrap().is_empty(), "a tiny max_rate finds anomalies: {an}");
    json(&format!("{b}/api/v1/alerts?since=1h"))["alerts"].as_array().unwrap();
    json(&format!("{b}/api/v1/silences"))["silences"].as_array().unwrap();
    let doc = json(&format!("{b}/api/v1/openapi.json"));
    for p in ["/api/v1/channels", "/api/v1/readings", "/api/v1/stream", "/metrics"] {
        assert!(doc["paths"][p].is_object(), "{p} is not in the OpenAPI document");
    }

    // Metrics in Prometheus text format.
    let (status, m) = get(&format!("{b}/metrics"), Some(TOKEN));
    assert_eq!(status, 200);
    for name in
        ["edgeguard_readings_total{quality=\"good\"}", "edgeguard_store_commits_total", "edgeguard_anomalies_total"]
    {
        assert!(m.lines().any(|l| l.starts_with(name)), "{name} missing:\n{m}");
    }

    // A 100 MB body is refused from its Content-Length, before it is read.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(b.trim_start_matches("http://")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
            100 * 1024 * 1024
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(&[b'x'; 65536]);
        let mut answer = [0u8; 64];
        let n = s.read(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    // The stream delivers live records, filtered.
    let url = format!("{b}/api/v1/stream?channel=boiler.temp.*&kind=reading");
    let events = rt().block_on(async {
        let r = client().get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let mut r = r;
        let mut text = String::new();
        let until = Instant::now() + Duration::from_secs(10);
        while text.matches("event: reading").count() < 6 && Instant::now() < until {
            match tokio::time::timeout(Duration::from_secs(5), r.chunk()).await {
                Ok(Ok(Some(c))) => text += &String::from_utf8_lossy(&c),
                _ => break,
            }
        }
        text
    });
    let data: Vec<serde_json::Value> =
        events.lines().filter_map(|l| l.strip_prefix("data: ")).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(data.len() >= 6, "{events}");
    assert!(data.iter().all(|r| r["kind"] == "reading" && r["channel"].as_str().unwrap().starts_with("boiler.temp")));

    // SIGTERM drains and exits 0.
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stored in s.duckdb"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token leaked into the log");
}

#[test]
fn serve_refuses_to_start_unsafe_or_on_a_taken_port() {
    let dir = tmp();
    write(
        dir.path(),
        "o.yaml",
        "version: 1\nname: o\nsources:\n  s: {type: simulate, signals: {a.b: {shape: constant}}}\n",
    );
    let open = eg(["serve", "o.yaml", "--listen", "0.0.0.0:0", "--no-store"]).dir(dir.path()).run();
    open.code(78).stderr_has("without a token");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    eg(["serve", "o.yaml", "--listen", &addr, "--no-store"]).dir(dir.path()).run().code(1).stderr_has("cannot listen");
    // Without a store the range queries say so.
    let d = Daemon::start(dir.path(), "o.yaml", &["--no-store"]);
    assert_eq!(get(&format!("{}/api/v1/readings?channel=a.b", d.base), None).0, 503);
    // Without a token: only loopback host names (no DNS rebinding), and no
    // POST from another site's page.
    let port = d.base.rsplit(':').next().unwrap();
    let rebound =
        client().get(format!("{}/api/v1/channels", d.base)).header("Host", format!("attacker.example:{port}"));
    assert_eq!(send(rebound, None).0, 403);
    let forged = client()
        .post(format!("{}/api/v1/readings", d.base))
        .header("Origin", "https://attacker.example")
        .body("{\"channel\":\"a.b\",\"value\":1}");
    assert_eq!(send(forged, None).0, 403);
    let own = client()
        .post(format!("{}/api/v1/readings", d.base))
        .header("Origin", d.base.clone())
        .body("{\"channel\":\"a.b\",\"value\":1}");
    assert_eq!(send(own, None).0, 202);
}

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("sh").args(["-c", &format!("command -v {c}")]).output().is_ok_and(|o| o.status.success()) {
            return c.into();
        }
    }
    panic!("no chromium: `apt-get install chromium` (scripts/test installs it)");
}

/// Runs headless Chromium on `url` with `what` (`--dump-dom`,
/// `--screenshot=…`) after 5 s of the page's virtual time; its stdout.
fn browser(url: &str, what: &str) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1100",
            "--virtual-time-budget=5000",
            what,
            url,
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The attributes of the chart of `channel` in a dumped page: what it drew.
fn chart(dom: &str, channel: &str) -> std::collections::HashMap<String, String> {
    let tag = format!("<svg class=\"chart\" data-channel=\"{channel}\"");
    let at = dom.find(&tag).unwrap_or_else(|| panic!("no chart of {channel}:\n{dom}"));
    let head = &dom[at..at + dom[at..].find('>').unwrap()];
    head.split(" data-")
        .skip(1)
        .filter_map(|a| a.split_once("=\"").map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string())))
        .collect()
}

/// The dashboard in a real browser, on the demo with its faults moved to
/// the first seconds: the channel table with units, a chart per channel
/// with what it drew (read from the chart's data attributes): the fused
/// channel with its three inputs and a voted-out stretch, the pressure spike
/// as an anomaly and a suspect reading, the flow dropout as a bad reading
/// under an alert, the range limits; the sources panel. A screenshot is
/// saved for people to look at (target/tmp/dashboard.png).
#[test]
fn the_dashboard_draws_the_demo_faults_in_chromium() {
    let dir = tmp();
    let path = spec(dir.path());
    let early = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{at: 5s, kind: drift, magnitude: 24", "{at: 1s, kind: drift, magnitude: 24")
        .replace("{at: 45s, kind: spike", "{at: 3s, kind: spike")
        .replace("{at: 50s, kind: dropout", "{at: 2s, kind: dropout");
    assert_eq!(early.matches("at: 1s").count() + early.matches("at: 3s").count() + early.matches("at: 2s").count(), 3);
    std::fs::write(&path, early).unwrap();
    let d = Daemon::start(dir.path(), "s.yaml", &[]);
    // The flow is stale 10 s after its last reading (at 1 s).
    std::thread::sleep(Duration::from_secs(15));
    let url = format!("{}/#token={TOKEN}", d.base);
    let dom = browser(&url, "--dump-dom");
    assert!(dom.contains("id=\"status\">live<"), "the stream did not connect:\n{dom}");
    assert!(dom.contains("data-channel=\"boiler.temp.a\"") && dom.contains("m3/h"), "no channel table:\n{dom}");
    let num = |c: &std::collections::HashMap<String, String>, k: &str| -> u64 {
        c.get(k).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no data-{k} in {c:?}"))
    };
    let temp = chart(&dom, "boiler.temp");
    assert_eq!(num(&temp, "series"), 4, "the fused channel and its three inputs: {temp:?}");
    assert!(num(&temp, "points") > 40, "{temp:?}");
    assert!(num(&temp, "voted-out") >= 1, "temp.b drifts away and is voted out: {temp:?}");
    assert_eq!(temp["unit"], "degC", "a fused channel has its inputs' unit");
    let pressure = chart(&dom, "boiler.pressure");
    assert!(num(&pressure, "anomalies") >= 1, "the spike is an anomaly: {pressure:?}");
    assert!(num(&pressure, "suspect") >= 1, "the spike is too fast for the channel: {pressure:?}");
    assert_eq!(num(&pressure, "series"), 1);
    let flow = chart(&dom, "boiler.flow");
    assert!(num(&flow, "bad") >= 1, "the dropout is reported stale: {flow:?}");
    assert!(num(&flow, "alerts") >= 1, "flow-lost fires: {flow:?}");
    assert!(!dom.contains("data-channel=\"boiler.temp.b\" data-series"), "inputs are drawn in their fused chart");
    // The range limits: a line where they are near the values, else named at the edge.
    assert_eq!((temp["range"].as_str(), pressure["range"].as_str()), ("-20,150", "0,10"));
    assert!(dom.contains("range high 150") && dom.contains("range low 0"), "no range marks:\n{dom}");
    assert!(dom.contains("data-source=\"plant\" data-state=\"up\""), "no sources panel:\n{dom}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browser(&url, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 30_000, "screenshot of {} bytes", png.len());
}

/// `serve.tls`: HTTPS with rustls; plain HTTP on the same port gets nothing.
#[test]
fn serve_speaks_tls_with_the_given_certificate() {
    let dir = tmp();
    let d = dir.path();
    crate::peers::certificates(d);
    let port = free_port();
    write(
        d,
        "t.yaml",
        &format!(
            "version: 1\nname: t\nsources:\n  s: {{type: simulate, signals: {{a.b: {{shape: constant, mean: 3}}}}}}\n\
             serve: {{listen: \"127.0.0.1:{port}\", tls: {{cert: server.pem, key: server.key}}}}\n"
        ),
    );
    let mut child = Reaped(Some(
        Command::new(env!("CARGO_BIN_EXE_edgeguard"))
            .args(["serve", "t.yaml", "--no-store"])
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(d.join("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(5)).build().unwrap();
    let started = Instant::now();
    let rt = rt();
    let body = loop {
        let r = rt.block_on(async { https.get(format!("https://127.0.0.1:{port}/api/v1/channels")).send().await });
        match r {
            Ok(r) if r.status() == 200 => break rt.block_on(r.text()).unwrap(),
            _ if started.elapsed() < Duration::from_secs(20) => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("no HTTPS answer: {other:?}"),
        }
    };
    assert!(body.contains("\"pipeline\":\"t\""), "{body}");
    assert_eq!(get(&format!("http://127.0.0.1:{port}/healthz"), None).0, 0, "plain HTTP must not be answered");
    let (code, stderr) = child.terminate();
    assert_eq!(code, Some(0));
    assert!(stderr.contains("https://127.0.0.1"), "{stderr}");
}
