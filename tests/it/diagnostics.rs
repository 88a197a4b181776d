//! Every diagnostic code, rendered: the text users see is pinned by snapshots.

use crate::support::*;

const HEAD: &str = "version: 1\nname: t\n";

/// (code, spec text, exit code). Each spec shows one problem.
fn cases() -> Vec<(&'static str, String, i32)> {
    let sim = "sources:\n  sim:\n    type: simulate\n    signals:\n      boiler.temp: {shape: sine, mean: 80}\n";
    let modbus = |points: &str| {
        format!("{HEAD}sources:\n  plc1:\n    type: modbus\n    address: 127.0.0.1:5020\n    points:\n{points}")
    };
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
        bomb += &format!(
            "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        );
    }
    vec![
        ("E001", format!("{HEAD}sources: [\n  a: b\n"), 78),
        ("E003", format!("{HEAD}{bomb}"), 78),
        ("E004", format!("{HEAD}{sim}name: again\n"), 78),
        ("E010", format!("{HEAD}sources:\n  sim:\n    type: simulate\n    intreval: 1s\n    signals:\n      a.b: {{mean: 1}}\n"), 78),
        ("E011", format!("{HEAD}store: {{path: x.duckdb, batch: lots}}\n"), 78),
        ("E012", format!("{HEAD}sources:\n  plc1:\n    type: modbus\n    address: 127.0.0.1:5020\n"), 78),
        ("E013", format!("{HEAD}sources:\n  plc1:\n    type: modbsu\n"), 78),
        ("E014", "version: 2\nname: t\n".to_string(), 78),
        ("E020", format!("{HEAD}sources:\n  \"plc 1\":\n    type: simulate\n    signals: {{a.b: {{mean: 1}}}}\n"), 78),
        ("E021", format!("{HEAD}{sim}  sim2:\n    type: simulate\n    signals:\n      boiler.temp: {{mean: 1}}\n"), 78),
        ("E030", format!("{HEAD}sources:\n  sim:\n    type: simulate\n    interval: 10 parsecs\n    signals: {{a.b: {{mean: 1}}}}\n"), 78),
        ("E031", format!("{HEAD}sources:\n  plc1:\n    type: modbus\n    address: \"plc1:99999\"\n    points: [{{channel: a.b, table: holding, address: 0}}]\n"), 78),
        ("E032", format!("{HEAD}sources:\n  sim:\n    type: simulate\n    signals:\n      pump.power: {{mean: 10, unit: kW}}\n      pump.loss: {{mean: 300, unit: W}}\ncompute:\n  pump.net: {{expr: \"pump.power - pump.loss\"}}\n"), 78),
        ("E033", format!("{HEAD}{sim}alerts:\n  hot:\n    when: \"value > 95\"\n    notify: [log]\n    mute: [{{start: \"02:00\", end: \"04:00\", tz: Europe/Berln}}]\nnotifiers:\n  log: {{type: stdout}}\n"), 78),
        ("E040", format!("{HEAD}{sim}fuse:\n  boiler.t: {{inputs: [boiler.temp, boiler.tmp], method: median}}\n"), 78),
        ("E041", format!("{HEAD}{sim}channels:\n  \"turbine.*\": {{range: [0, 1]}}\n"), 78),
        ("E042", format!("{HEAD}{sim}compute:\n  a.x: {{expr: \"a.y + boiler.temp\"}}\n  a.y: {{rolling: a.x, window: 1m, stat: max}}\n"), 78),
        ("E043", format!("{HEAD}{sim}alerts:\n  hot:\n    when: \"value > 95\"\n    notify: [log]\n    group: {{by: [sourc]}}\nnotifiers:\n  log: {{type: file, path: a.log}}\n"), 78),
        ("E050", modbus("      - {channel: a.b, table: coil, address: 0, type: f32}\n"), 78),
        ("E051", modbus("      - {channel: a.b, table: holding, address: 0, type: f32}\n      - {channel: a.c, table: holding, address: 1, type: u16}\n"), 78),
        ("E060", format!("{HEAD}{sim}alerts:\n  hot:\n    when: \"value >\"\n    notify: [log]\nnotifiers:\n  log: {{type: stdout}}\n"), 78),
        ("E061", format!("{HEAD}{sim}alerts:\n  hot:\n    when: \"value > 95\"\n    title: \"{{{{ vlaue }}}} too hot\"\n    notify: [log]\nnotifiers:\n  log: {{type: stdout}}\n"), 78),
        ("E070", format!("{HEAD}serve: {{token: hunter2}}\n"), 78),
        ("E080", format!("{HEAD}serve: {{listen: \"0.0.0.0:8080\"}}\n"), 78),
        ("W101", modbus("      - {channel: a.b, table: holding, address: 40001}\n"), 0),
        ("W102", format!("{HEAD}{sim}alerts:\n  hot: {{when: \"value > 95\"}}\n"), 0),
        ("W103", format!("{HEAD}sources:\n  bus:\n    type: modbus\n    transport: rtu\n    device: /dev/ttyUSB0\n    baud: 1200\n    interval: 500ms\n    points:\n      - {{channel: a.b, table: holding, address: 0, type: string, length: 100}}\n"), 0),
        ("W104", format!("{HEAD}sources:\n  plc1:\n    type: modbus\n    address: 127.0.0.1:5020\n    points:\n      - {{channel: a.b, table: holding, address: 0, deadband: 1, heartbeat: 1m}}\nchannels:\n  a.b: {{stale: 30s}}\n"), 0),
    ]
}

#[test]
fn every_code_renders_as_pinned() {
    let dir = tmp();
    for (code, text, exit) in cases() {
        write(dir.path(), "spec.yaml", &text);
        let out = eg(["validate", "spec.yaml"]).dir(dir.path()).run();
        assert_eq!(out.code, exit, "{code}: exit code\n{}", out.stderr);
        assert!(out.stderr.contains(&format!("[{code}]")), "{code} not reported:\n{}", out.stderr);
        insta::assert_snapshot!(code, out.stderr);
    }
}

#[test]
fn invalid_utf8_is_e002() {
    let dir = tmp();
    std::fs::write(dir.path().join("spec.yaml"), b"version: 1\nname: \xff\xfe\n").unwrap();
    let out = eg(["validate", "spec.yaml"]).dir(dir.path()).run();
    out.code(78);
    insta::assert_snapshot!("E002", out.stderr);
}

#[test]
fn all_problems_of_all_files_at_once() {
    let dir = tmp();
    let a = write(dir.path(), "a.yaml", &format!("{HEAD}sources:\n  x: {{type: modbsu}}\n  y: {{type: simulate, intreval: 1s, signals: {{a.b: {{mean: 1}}}}}}\n"));
    let b = write(dir.path(), "b.yaml", "version: 1\nname: ok\n");
    let c = write(dir.path(), "c.yaml", "version: 3\nnmae: t\n");
    let out = eg(["validate".as_ref(), a.as_os_str(), b.as_os_str(), c.as_os_str()]).run();
    out.code(78);
    for needle in ["[E013]", "[E010]", "[E014]", "unknown section `nmae`", "did you mean `name`?", "1 of 3 specs valid"]
    {
        out.stderr_has(needle);
    }
}

#[test]
fn json_and_github_formats_go_to_stdout() {
    let dir = tmp();
    write(dir.path(), "spec.yaml", &format!("{HEAD}sources:\n  plc1:\n    type: modbsu\n"));
    let out = eg(["validate", "spec.yaml", "--format", "json"]).dir(dir.path()).run();
    out.code(78);
    let v = &out.lines()[0];
    assert_eq!((v["code"].as_str(), v["line"].as_i64(), v["column"].as_i64()), (Some("E013"), Some(5), Some(11)));
    assert_eq!(v["hint"], "did you mean `modbus`?");
    let out = eg(["validate", "spec.yaml", "--format", "github"]).dir(dir.path()).run();
    out.code(78);
    assert!(
        out.stdout.starts_with("::error file=spec.yaml,line=5,col=11,title=E013::unknown source type `modbsu`"),
        "{}",
        out.stdout
    );
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = tmp();
    let (_, text, _) = cases().into_iter().find(|c| c.0 == "W101").unwrap();
    write(dir.path(), "spec.yaml", &text);
    eg(["validate", "spec.yaml"]).dir(dir.path()).run().code(0);
    eg(["validate", "spec.yaml", "--deny-warnings"]).dir(dir.path()).run().code(78);
}

/// A typo in a key of every component kind is an E010 that names the right key.
#[test]
fn a_typo_in_every_component_kind() {
    let sim = "sources:\n  sim: {type: simulate, signals: {a.b: {mean: 1}}}\n";
    let table: Vec<(&str, String, &str)> = vec![
        ("modbus", format!("{HEAD}sources:\n  s: {{type: modbus, adress: \"h:502\", points: []}}\n"), "address"),
        ("point", format!("{HEAD}sources:\n  s: {{type: modbus, address: \"h:502\", points: [{{channel: a.b, table: holding, adress: 1}}]}}\n"), "address"),
        ("mqtt", format!("{HEAD}sources:\n  s: {{type: mqtt, url: \"mqtt://h\", client: x, topics: []}}\n"), "client_id"),
        ("topic", format!("{HEAD}sources:\n  s: {{type: mqtt, url: \"mqtt://h\", topics: [{{fliter: a/b, channel: a.b}}]}}\n"), "filter"),
        ("serial", format!("{HEAD}sources:\n  s: {{type: serial, device: /dev/null, format: csv, bauds: 9600, channels: {{\"0\": a.b}}}}\n"), "baud"),
        ("simulate", format!("{HEAD}sources:\n  s: {{type: simulate, seeed: 1, signals: {{a.b: {{mean: 1}}}}}}\n"), "seed"),
        ("signal", format!("{HEAD}sources:\n  s: {{type: simulate, signals: {{a.b: {{maen: 1}}}}}}\n"), "mean"),
        ("fault", format!("{HEAD}sources:\n  s: {{type: simulate, signals: {{a.b: {{faults: [{{at: 1m, kind: stuck, fro: 1m}}]}}}}}}\n"), "for"),
        ("store", format!("{HEAD}store: {{path: a.duckdb, retension: 1d}}\n"), "retention"),
        ("channel", format!("{HEAD}{sim}channels:\n  a.b: {{rnage: [0, 1]}}\n"), "range"),
        ("fuse", format!("{HEAD}{sim}fuse:\n  f: {{inputs: [a.b, a.b], method: mean, windw: 1s}}\n"), "window"),
        ("detect", format!("{HEAD}{sim}detect:\n  d: {{channel: a.b, method: zscore, treshold: 3}}\n"), "threshold"),
        ("alert", format!("{HEAD}{sim}alerts:\n  a: {{when: \"value > 1\", severty: critical}}\n"), "severity"),
        ("stdout", format!("{HEAD}notifiers:\n  n: {{type: stdout, formt: json}}\n"), ""),
        ("file", format!("{HEAD}notifiers:\n  n: {{type: file, pth: a.log}}\n"), "path"),
        ("exec", format!("{HEAD}notifiers:\n  n: {{type: exec, comand: [a]}}\n"), "command"),
        ("webhook", format!("{HEAD}notifiers:\n  n: {{type: webhook, url: \"https://h/x\", retires: 2}}\n"), "retries"),
        ("mqtt notifier", format!("{HEAD}notifiers:\n  n: {{type: mqtt, url: \"mqtt://h\", topic: t, retian: true}}\n"), "retain"),
        ("serve", format!("{HEAD}serve: {{lisen: \"127.0.0.1:1\"}}\n"), "listen"),
        ("backup", format!("{HEAD}store: {{path: a.duckdb}}\nbackup: {{dir: b, kepp: 3}}\n"), "keep"),
    ];
    let dir = tmp();
    for (kind, text, right) in table {
        write(dir.path(), "spec.yaml", &text);
        let out = eg(["validate", "spec.yaml"]).dir(dir.path()).run();
        assert_eq!(out.code, 78, "{kind}: {}", out.stderr);
        assert!(out.stderr.contains("[E010]"), "{kind}: no E010\n{}", out.stderr);
        if !right.is_empty() {
            assert!(
                out.stderr.contains(&format!("did you mean `{right}`?")),
                "{kind}: no hint for `{right}`\n{}",
                out.stderr
            );
        }
    }
}
