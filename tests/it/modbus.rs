//! Modbus acquisition against real peers: a pymodbus server (TCP and RTU
//! over a socat pseudo-terminal pair) and proxies that hang or answer late.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::peers::*;
use crate::support::*;

/// Points for the register map of `tests/peers/modbus_peer.py`, with the
/// value each must read (worked out from the bytes, see that file).
fn every_type() -> (String, Vec<(&'static str, Value)>) {
    let pi = f64::from(std::f32::consts::PI);
    let cases: Vec<(&str, &str, Value)> = vec![
        ("t.u16", "table: holding, address: 0, type: u16", 4660.into()),
        ("t.i16", "table: holding, address: 1, type: i16", (-2).into()),
        ("t.f32abcd", "table: holding, address: 2, type: f32", pi.into()),
        ("t.f32cdab", "table: holding, address: 4, type: f32, order: CDAB", pi.into()),
        ("t.f32badc", "table: holding, address: 6, type: f32, order: BADC", pi.into()),
        ("t.f32dcba", "table: holding, address: 8, type: f32, order: DCBA", pi.into()),
        ("t.u32", "table: holding, address: 10, type: u32", 123456789.into()),
        ("t.i32cdab", "table: holding, address: 12, type: i32, order: CDAB", (-2).into()),
        ("t.u64", "table: holding, address: 14, type: u64", (72623859790382856u64 as f64).into()),
        ("t.i64dcba", "table: holding, address: 18, type: i64, order: DCBA", (-2).into()),
        ("t.f64cdab", "table: holding, address: 22, type: f64, order: CDAB", 1.5.into()),
        ("t.f16", "table: holding, address: 26, type: f16", 1.0.into()),
        ("t.u16ba", "table: holding, address: 27, type: u16, order: BA", 4660.into()),
        ("t.bit0", "table: holding, address: 28, bit: 0", 1.into()),
        ("t.bit1", "table: holding, address: 28, bit: 1", 0.into()),
        ("t.bit15", "table: holding, address: 28, bit: 15", 1.into()),
        ("t.name", "table: holding, address: 29, type: string, length: 3", "EG-100".into()),
        ("t.scaled", "table: holding, address: 32, scale: 0.1, offset: -3", (235.0 * 0.1 - 3.0).into()),
        ("t.raw", "table: holding, address: 32", 235.into()),
        ("t.coil0", "table: coil, address: 0", 1.into()),
        ("t.coil1", "table: coil, address: 1", 0.into()),
        ("t.coil7", "table: coil, address: 7", 1.into()),
        ("t.di1", "table: discrete, address: 1", 1.into()),
        ("t.in0", "table: input, address: 0", 500.into()),
        ("t.in3", "table: input, address: 3", 503.into()),
        ("u2.u16", "table: holding, address: 0, unit_id: 2", 4660.into()),
    ];
    let points: String = cases.iter().map(|(c, p, _)| format!("      - {{channel: {c}, {p}}}\n")).collect();
    (points, cases.into_iter().map(|(c, _, v)| (c, v)).collect())
}

fn spec(port: u16, extra: &str, points: &str) -> String {
    format!(
        "version: 1\nname: t\nsources:\n  plc:\n    type: modbus\n    address: 127.0.0.1:{port}\n{extra}    points:\n{points}"
    )
}

/// Readings by channel, in order.
fn by_channel(out: &Out) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for l in out.lines() {
        m.entry(l["channel"].as_str().unwrap().to_string()).or_default().push(l);
    }
    m
}

fn micros(ts: &Value) -> i64 {
    // "2026-11-22T10:00:00.125Z": the tests compare times, so parse the parts.
    let s = ts.as_str().unwrap();
    let secs = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let day = secs(8, 10);
    let (h, m, sec) = (secs(11, 13), secs(14, 16), secs(17, 19));
    let frac = s[20..s.len() - 1].parse::<i64>().unwrap() * 10i64.pow(6 - (s.len() - 21) as u32);
    (((day * 24 + h) * 60 + m) * 60 + sec) * 1_000_000 + frac
}

#[test]
fn tcp_reads_every_type_and_order_exactly() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1,2");
    let dir = tmp();
    let (points, expected) = every_type();
    write(dir.path(), "s.yaml", &spec(port, "    timeout: 2s\n", &points));
    let out = eg(["acquire", "s.yaml", "--once", "--no-store"]).dir(dir.path()).run();
    out.code(0);
    let got = by_channel(&out);
    for (channel, want) in expected {
        let r = &got.get(channel).unwrap_or_else(|| panic!("no reading of {channel}\n{}", out.stdout))[0];
        assert_eq!(r["quality"], "good", "{channel}: {r}");
        let v = if want.is_string() { &r["text"] } else { &r["value"] };
        assert_eq!(
            v.as_f64().map(Value::from).unwrap_or(v.clone()),
            want.as_f64().map(Value::from).unwrap_or(want.clone()),
            "{channel}: {r}"
        );
        assert_eq!(r["source"], "plc");
    }
    // 26 points in 7 reads: holding 0–33 of unit 1, coils 0–1 and 7 (gap 0),
    // discrete 1, input 0 and 3, holding 0 of unit 2.
    out.stderr_has("plc: 7 requests, 7 answered");
}

#[test]
fn a_missing_register_spoils_only_its_own_points() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let dir = tmp();
    let points = "      - {channel: ok.a, table: holding, address: 0}\n      - {channel: bad.b, table: holding, address: 500}\n      - {channel: ok.c, table: input, address: 1}\n";
    write(dir.path(), "s.yaml", &spec(port, "", points));
    let out = eg(["acquire", "s.yaml", "--once", "--no-store"]).dir(dir.path()).run();
    // The device answered (with an exception): the run is fine.
    out.code(0);
    let got = by_channel(&out);
    assert_eq!(got["ok.a"][0]["value"], 4660.0);
    assert_eq!(got["ok.c"][0]["value"], 501.0);
    let bad = &got["bad.b"][0];
    assert_eq!((bad["quality"].as_str(), &bad["value"]), (Some("bad"), &Value::Null));
    assert_eq!(bad["flags"], serde_json::json!(["exception_2"]));
    out.stderr_has("exception 2 (illegal data address)");
}

#[test]
fn once_exits_69_when_no_device_answers_and_1_when_some_do_not() {
    let dead = free_port();
    let dir = tmp();
    write(
        dir.path(),
        "dead.yaml",
        &spec(dead, "    timeout: 300ms\n", "      - {channel: a.b, table: holding, address: 0}\n"),
    );
    let out = eg(["acquire", "dead.yaml", "--once", "--no-store"]).dir(dir.path()).run();
    out.code(69).stderr_has("no device answered");
    let r = &out.lines()[0];
    assert_eq!((r["quality"].as_str(), r["flags"][0].as_str()), (Some("bad"), Some("disconnected")));

    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let two = format!(
        "{}  dead:\n    type: modbus\n    address: 127.0.0.1:{dead}\n    timeout: 300ms\n    points:\n      - {{channel: c.d, table: holding, address: 0}}\n",
        spec(port, "", "      - {channel: a.b, table: holding, address: 0}\n")
    );
    write(dir.path(), "two.yaml", &two);
    let out = eg(["acquire", "two.yaml", "--once", "--no-store"]).dir(dir.path()).run();
    out.code(1).stderr_has("dead unit 1 did not answer");
    let got = by_channel(&out);
    assert_eq!(got["a.b"][0]["quality"], "good");
    assert_eq!(got["c.d"][0]["quality"], "bad");
}

/// The server dies for 10 s and comes back on the same port.
#[test]
fn outage_is_covered_by_gap_readings_and_polling_resumes() {
    let port = free_port();
    let mut server = Peer::modbus_tcp(port, "1");
    let dir = tmp();
    write(
        dir.path(),
        "s.yaml",
        &spec(
            port,
            "    interval: 250ms\n    timeout: 300ms\n",
            "      - {channel: a.b, table: holding, address: 0}\n",
        ),
    );
    let child = std::process::Command::new(bin())
        // 3 s up, 10 s down, then up to the 10 s backoff cap to notice, and a margin.
        .args(["acquire", "s.yaml", "--duration", "28s", "--store", "s.duckdb"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    server.stop();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let _server = Peer::modbus_tcp(port, "1");
    let up_after = down.elapsed();
    let output = child.wait_with_output().unwrap();
    let out = Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into(),
        stderr: String::from_utf8_lossy(&output.stderr).into(),
        elapsed: Duration::ZERO,
        max_rss_kib: 0,
    };
    out.code(0);
    let rs = &by_channel(&out)["a.b"];
    let ts: Vec<i64> = rs.iter().map(|r| micros(&r["ts"])).collect();
    assert!(ts.windows(2).all(|w| w[1] > w[0]), "timestamps not strictly increasing");
    // Every cycle produced a reading: no hole in the series longer than a
    // few intervals (a timeout plus a reconnect attempt).
    let widest = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest < 1_500_000, "a {widest} µs hole in the readings");
    let bad: Vec<&Value> = rs.iter().filter(|r| r["quality"] == "bad").collect();
    assert!(bad.len() >= 20, "only {} bad readings over a 10 s outage", bad.len());
    assert!(bad.iter().all(|r| r["value"].is_null()));
    // Good again within the backoff cap (10 s) plus a cycle of the restart.
    let first_bad = rs.iter().position(|r| r["quality"] == "bad").unwrap();
    let back = rs[first_bad..].iter().position(|r| r["quality"] == "good").expect("polling resumed") + first_bad;
    let outage_us = ts[back] - ts[first_bad];
    assert!(
        outage_us < (up_after + Duration::from_secs(11)).as_micros() as i64,
        "good readings only {outage_us} µs after the outage began"
    );
    assert!(rs[back..].iter().all(|r| r["quality"] == "good"), "bad readings after recovery");
    // And the store holds exactly what was printed.
    assert_eq!(query_i64(&dir.path().join("s.duckdb"), "SELECT count(*) FROM readings"), rs.len() as i64);
    out.stderr_has("reconnect");
}

/// A device that accepts connections and never answers, then recovers.
#[test]
fn a_hanging_device_times_out_and_recovers() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let dir = tmp();
    let silent = dir.path().join("silent");
    std::fs::write(&silent, "").unwrap();
    let proxy_port = free_port();
    let _proxy = Peer::modbus_proxy(proxy_port, port, &["--silent-file", silent.to_str().unwrap()]);
    write(
        dir.path(),
        "s.yaml",
        &spec(
            proxy_port,
            "    interval: 200ms\n    timeout: 200ms\n",
            "      - {channel: a.b, table: holding, address: 0}\n",
        ),
    );
    let remover = {
        let silent = silent.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            std::fs::remove_file(silent).unwrap();
        })
    };
    let out = eg(["acquire", "s.yaml", "--duration", "9s", "--no-store"]).dir(dir.path()).measure_rss().run();
    remover.join().unwrap();
    out.code(0);
    assert!(out.elapsed < Duration::from_secs(15), "took {:?}", out.elapsed);
    let rs = &by_channel(&out)["a.b"];
    let flags: Vec<String> = rs.iter().filter_map(|r| r["flags"][0].as_str().map(String::from)).collect();
    assert!(flags.iter().any(|f| f == "timeout"), "no timeouts: {flags:?}");
    assert!(rs.iter().rev().take(5).all(|r| r["quality"] == "good"), "no recovery:\n{}", out.stdout);
    assert!(out.max_rss_kib < 60 * 1024, "peak RSS {} KiB", out.max_rss_kib);
    out.stderr_has("timeout");
}

/// Every 3rd answer arrives after the timeout; the next request must never
/// take it for its own.
#[test]
fn late_answers_are_never_attributed_to_another_request() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let proxy_port = free_port();
    let _proxy = Peer::modbus_proxy(proxy_port, port, &["--delay-every", "3", "--delay", "0.4"]);
    let dir = tmp();
    let points = "      - {channel: a.u16, table: holding, address: 0}\n      - {channel: a.u32, table: holding, address: 10, type: u32}\n      - {channel: a.in, table: input, address: 2}\n";
    write(dir.path(), "s.yaml", &spec(proxy_port, "    interval: 100ms\n    timeout: 250ms\n", points));
    let out = eg(["acquire", "s.yaml", "--duration", "6s", "--no-store"]).dir(dir.path()).run();
    out.code(0);
    let want: HashMap<&str, f64> = [("a.u16", 4660.0), ("a.u32", 123456789.0), ("a.in", 502.0)].into();
    let (mut good, mut late) = (0, 0);
    for r in out.lines() {
        let ch = r["channel"].as_str().unwrap();
        if r["quality"] == "good" {
            good += 1;
            assert_eq!(r["value"].as_f64(), Some(want[ch]), "{r}");
        } else {
            late += 1;
        }
    }
    assert!(good > 30 && late > 5, "{good} good, {late} bad: the proxy did not delay as planned");
}

#[test]
fn rtu_bus_with_an_absent_unit_reads_the_others_every_cycle() {
    let dir = tmp();
    let pty = PtyPair::new(dir.path());
    let b = pty.b.to_str().unwrap().to_string();
    let _server = Peer::start(&[&python(), "tests/peers/modbus_peer.py", "server", "--serial", &b, "--units", "1,2"]);
    let points = "      - {channel: u1.a, table: holding, address: 0}\n      - {channel: u2.a, table: holding, address: 10, type: u32, unit_id: 2}\n      - {channel: u3.a, table: holding, address: 0, unit_id: 3}\n      - {channel: u1.b, table: input, address: 0}\n";
    let text = format!(
        "version: 1\nname: t\nsources:\n  bus:\n    type: modbus\n    transport: rtu\n    device: {}\n    baud: 9600\n    parity: none\n    interval: 1s\n    timeout: 200ms\n    points:\n{points}",
        pty.a.display()
    );
    write(dir.path(), "s.yaml", &text);
    let out = eg(["acquire", "s.yaml", "--duration", "6s", "--no-store"]).dir(dir.path()).run();
    out.code(0);
    let got = by_channel(&out);
    for (ch, v) in [("u1.a", 4660.0), ("u2.a", 123456789.0), ("u1.b", 500.0)] {
        let good: Vec<&Value> = got[ch].iter().filter(|r| r["quality"] == "good").collect();
        assert!(good.len() >= 5, "{ch}: {} good readings in 6 cycles\n{}", good.len(), out.stderr);
        assert!(good.iter().all(|r| r["value"].as_f64() == Some(v)));
    }
    assert!(got["u3.a"].iter().all(|r| r["quality"] == "bad"));
    assert!(got["u3.a"].len() >= 5);
}

#[test]
fn probe_ranks_decodings_against_the_expected_value() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let url = format!("tcp://127.0.0.1:{port}");
    // pi, word-swapped, at register 4.
    let out = eg(["acquire", "--probe", &url, "--address", "4", "--count", "2", "--expect", "3.1..3.2"]).run();
    out.code(0);
    let best = &out.lines()[0];
    assert_eq!(
        (best["address"].as_u64(), best["type"].as_str(), best["order"].as_str()),
        (Some(4), Some("f32"), Some("CDAB"))
    );
    assert_eq!(best["match"], true);
    out.stderr_has("type: f32, order: CDAB");
    // 235 at register 32 read as "33" in a 1-based manual: u16 × 0.1 = 23.5.
    let out =
        eg(["acquire", "--probe", &url, "--address", "33", "--count", "1", "--expect", "23.5", "--format", "table"])
            .run();
    out.code(0);
    assert!(out.stdout.contains("address_base: 1"), "{}", out.stdout);
    assert!(out.stdout.contains("scale: 0.1"), "{}", out.stdout);
    // Nobody there: 69.
    let out = eg(["acquire", "--probe", &format!("tcp://127.0.0.1:{}", free_port()), "--address", "0"]).run();
    out.code(69);
    // Neither a spec nor a probe: usage.
    eg(["acquire"]).run().code(2);
}

#[test]
fn the_example_pipeline_reads_the_test_peer() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let set = format!("sources.plc1.address=127.0.0.1:{port}");
    let out = eg(["acquire", "pipelines/modbus.yaml", "--once", "--no-store", "--set", &set]).run();
    out.code(0);
    let got = by_channel(&out);
    assert_eq!(got["pump.flow"][0]["value"].as_f64(), Some(f64::from(std::f32::consts::PI)));
    assert_eq!(got["pump.speed"][0]["value"].as_f64(), Some(f64::from(std::f32::consts::PI)));
    assert_eq!(got["pump.serial"][0]["text"], "EG-100");
    assert_eq!(got["pump.hours"][0]["value"], 123456789.0);
    assert_eq!(got["pump.running"][0]["value"], 1.0);
    assert_eq!(got["pump.fault"][0]["value"], 1.0);
    // --dump-plan shows the merged requests.
    let plan = eg(["acquire", "pipelines/modbus.yaml", "--dump-plan"]).run();
    plan.code(0);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let reqs = plan["sources"][0]["requests"].as_array().unwrap();
    // holding 2–5 and 28–32 (gap 4) at 1 s, the coil, and one each for the 1 m and 1 h points.
    assert_eq!(reqs.len(), 5, "{reqs:?}");
}

/// RTU frames over TCP, as a serial gateway speaks them.
#[test]
fn rtu_over_tcp_reads_like_tcp() {
    let port = free_port();
    let p = port.to_string();
    let _server =
        Peer::start(&[&python(), "tests/peers/modbus_peer.py", "server", "--rtu-over-tcp", &p, "--units", "1,2"]);
    let dir = tmp();
    let points = "      - {channel: g.u32, table: holding, address: 10, type: u32}\n      - {channel: g.two, table: input, address: 1, unit_id: 2}\n";
    write(dir.path(), "s.yaml", &spec(port, "    transport: rtu-over-tcp\n", points));
    let out = eg(["acquire", "s.yaml", "--once", "--no-store"]).dir(dir.path()).run();
    out.code(0);
    let got = by_channel(&out);
    assert_eq!(got["g.u32"][0]["value"], 123456789.0);
    assert_eq!(got["g.two"][0]["value"], 501.0);
    // The probe speaks it too.
    let url = format!("rtu-over-tcp://127.0.0.1:{port}");
    let probe = eg(["acquire", "--probe", &url, "--address", "10", "--count", "2", "--expect", "123456789"]).run();
    probe.code(0);
    assert_eq!((probe.lines()[0]["type"].as_str(), probe.lines()[0]["order"].as_str()), (Some("u32"), Some("ABCD")));
}

/// A steady value behind a deadband is sent again every heartbeat (by
/// default half the channel's `stale`), so it is never reported stale.
#[test]
fn a_deadband_sends_a_steady_value_every_heartbeat() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let dir = tmp();
    let points = "      - {channel: a.u16, table: holding, address: 0, deadband: 5}\n      - {channel: a.in, table: input, address: 0, deadband: 5, heartbeat: 600ms}\n";
    let text = spec(port, "    interval: 100ms\n", points) + "channels:\n  a.u16: {stale: 2s}\n  a.in: {stale: 2s}\n";
    write(dir.path(), "s.yaml", &text);
    let out = eg(["acquire", "s.yaml", "--duration", "4s", "--no-store"]).dir(dir.path()).run();
    out.code(0);
    let m = by_channel(&out);
    let times = |ch: &str| -> Vec<i64> { m[ch].iter().map(|r| micros(&r["ts"])).collect() };
    for (ch, beat) in [("a.u16", 1_000_000), ("a.in", 600_000)] {
        let rs = &m[ch];
        assert!(rs.iter().all(|r| r["quality"] == "good"), "{ch}: {rs:?}");
        let t = times(ch);
        // Not every 100 ms poll, but never longer than the heartbeat apart.
        assert!(t.len() >= 3 && t.len() <= 4_000_000 / beat as usize + 1, "{ch}: {} readings", t.len());
        for w in t.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= beat && gap < beat + 300_000, "{ch}: {gap} µs apart");
        }
    }
}

/// Answers carrying another unit id (a second device with the same address
/// on the bus) are flagged `mismatch`, not `disconnected`, and counted.
#[test]
fn answers_from_the_wrong_device_are_flagged_mismatch() {
    let port = free_port();
    let _server = Peer::modbus_tcp(port, "1");
    let proxy_port = free_port();
    let _proxy = Peer::modbus_proxy(proxy_port, port, &["--wrong-unit-every", "4"]);
    let dir = tmp();
    let points = "      - {channel: a.u16, table: holding, address: 0}\n";
    write(dir.path(), "s.yaml", &spec(proxy_port, "    interval: 100ms\n", points));
    let out = eg(["acquire", "s.yaml", "--duration", "3s", "--no-store"]).dir(dir.path()).run();
    out.code(0);
    let lines = out.lines();
    let bad: Vec<&Value> = lines.iter().filter(|r| r["quality"] == "bad").collect();
    assert!(bad.len() >= 3, "{}", out.stdout);
    assert!(bad.iter().all(|r| r["flags"] == serde_json::json!(["mismatch"]) && r["value"].is_null()), "{bad:?}");
    assert!(lines.iter().filter(|r| r["quality"] == "good").all(|r| r["value"] == 4660));
    out.stderr_has(&format!("{} mismatched answers", bad.len()));
}
