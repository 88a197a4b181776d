//! `validate`: reference specs, hostile specs, and `--input`.

use std::time::Duration;

use crate::support::*;

#[test]
fn every_reference_pipeline_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            n += 1;
            let out = eg(["validate".as_ref(), path.as_os_str(), "--deny-warnings".as_ref()]).run();
            assert_eq!(out.code, 0, "{}:\n{}", path.display(), out.stderr);
        }
    }
    assert!(n >= 2);
}

#[test]
fn a_missing_file_is_66() {
    eg(["validate", "no/such.yaml"]).run().code(66).stderr_has("cannot read no/such.yaml: no such file");
    // Not a missing file: a folder cannot be read (74), and it says so, not "missing".
    eg(["validate", "pipelines", "pipelines/demo.yaml"]).run().code(74).stderr_has("cannot read pipelines");
    eg(["acquire", "no/such.yaml", "--once"]).run().code(66);
    // A spec without sources needs --input.
    eg(["acquire", "pipelines/input-only.yaml", "--once"]).run().code(2).stderr_has("give records with `--input");
}

/// Each is refused with 78, fast and small: no input may cost without bound.
#[test]
fn hostile_specs_are_refused_quickly() {
    let dir = tmp();
    let mut bomb = String::from("version: 1\nname: t\na: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
        bomb += &format!(
            "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        );
    }
    let deep = format!("version: 1\nname: t\nx: {}", "[".repeat(10_000));
    let deep_block = format!("version: 1\nname: t\nx:\n  {}a\n", "- ".repeat(10_000));
    let dup = "version: 1\nname: t\nsources: {}\nsources: {}\n".to_string();
    // The 100 MB file is streamed to disk: a child's peak RSS counts what the
    // test process held when it spawned it.
    let big_path = dir.path().join("big.yaml");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big_path).unwrap());
        f.write_all(b"version: 1\nname: t\nsources:\n").unwrap();
        let pad = "  # padding padding padding padding padding padding padding padding padding\n";
        for _ in 0..(100 << 20) / pad.len() {
            f.write_all(pad.as_bytes()).unwrap();
        }
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("alias bomb", bomb.into_bytes()),
        ("10k-deep flow nesting", deep.into_bytes()),
        ("10k-deep block nesting", deep_block.into_bytes()),
        ("100 MB file", Vec::new()),
        ("invalid UTF-8", b"version: 1\nname: \xc3\x28\n".to_vec()),
        ("duplicate keys", dup.into_bytes()),
    ];
    for (what, bytes) in cases {
        let p = if bytes.is_empty() { big_path.clone() } else { dir.path().join("hostile.yaml") };
        if !bytes.is_empty() {
            std::fs::write(&p, bytes).unwrap();
        }
        let out = eg(["validate".as_ref(), p.as_os_str()]).measure_rss().run();
        assert_eq!(out.code, 78, "{what}: {}", out.stderr);
        assert!(out.elapsed < Duration::from_secs(2), "{what}: took {:?}", out.elapsed);
        assert!(out.max_rss_kib < 100 * 1024, "{what}: peak RSS {} KiB", out.max_rss_kib);
    }
}

#[test]
fn input_readings_are_annotated_and_strict_fails_on_bad() {
    let spec = "pipelines/input-only.yaml";
    let out = eg(["validate", spec, "--input", "examples/readings.ndjson"]).run();
    out.code(0);
    let lines = out.lines();
    assert!(lines.iter().any(|l| l["quality"] == "bad" && l["flags"][0] == "out_of_range"), "{}", out.stdout);
    assert_eq!(lines.iter().filter(|l| l["kind"] == "reading").count(), 9, "8 readings and one stale gap");
    assert_eq!(lines.iter().filter(|l| l["kind"] == "anomaly").count(), 1, "other kinds pass through");
    out.stderr_has("validate: ");
    eg(["validate", spec, "--input", "examples/readings.ndjson", "--strict"]).run().code(65);

    let good = "{\"ts\":\"2026-11-22T10:00:00Z\",\"channel\":\"plant.l1.temp\",\"value\":21.5}\n";
    let out = eg(["validate", spec, "--input", "-", "--strict"]).stdin(good).run();
    out.code(0);
    assert_eq!(out.lines()[0]["unit"], "degC");
}

#[test]
fn set_overrides_values_and_check_and_dump_plan_do_not_run() {
    let out = eg([
        "acquire",
        "pipelines/demo.yaml",
        "--dump-plan",
        "--set",
        "store.batch=123",
        "--set",
        "sources.plant.seed=9",
    ])
    .run();
    out.code(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["store"]["batch"], 123);
    assert_eq!(plan["sources"][0]["seed"], 9);
    assert_eq!(plan["channels"][0]["stale"], "10s");
    eg(["acquire", "pipelines/demo.yaml", "--check"]).run().code(0);
    eg(["acquire", "pipelines/demo.yaml", "--check", "--set", "store.batch=lots"]).run().code(78).stderr_has("[E011]");
    eg(["acquire", "pipelines/demo.yaml", "--check", "--set", "novalue"]).run().code(2);
}

/// Every default is filled in by the compiler: `--dump-plan` shows what runs.
#[test]
fn dump_plan_shows_every_default() {
    let out = eg(["detect", "pipelines/faults.yaml", "--dump-plan"]).run();
    out.code(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let detector = |id: &str| plan["detect"].as_array().unwrap().iter().find(|d| d["id"] == id).unwrap().clone();
    let mad = detector("spikes");
    assert_eq!(mad["threshold"], 6.0, "given in the spec");
    assert_eq!(mad["window"], "30m");
    let forest = detector("forest");
    assert_eq!(forest["threshold"], 0.75);
    assert_eq!(forest["trees"], 100);
    assert_eq!(forest["seed"], 1);
    assert_eq!(forest["window"], "10m");
    let flat = detector("stuck");
    assert_eq!(flat["threshold"], 1.0);
    assert!(flat["window"].is_null() && flat["alpha"].is_null(), "parameters a method does not read stay empty");
    assert_eq!(plan["store"]["batch"], 122880);
    assert_eq!(plan["store"]["flush"], "1s");
}

/// `identity`: site and gateway are single subject tokens, pointed at when not.
#[test]
fn identity_is_checked_and_planned() {
    let dir = tmp();
    let spec = "version: 1\nname: edge\nidentity: {site: berlin.north, gateway: gw-017}\nsources:\n  s: {type: simulate, signals: {a.b: {shape: constant, mean: 1}}}\n";
    write(dir.path(), "e.yaml", spec);
    let out = eg(["validate", "e.yaml"]).dir(dir.path()).run();
    out.code(78).stderr_has("[E").stderr_has("`berlin.north` is not a valid site").stderr_has("e.yaml:3:18");
    out.stderr_has("no dots");
    write(dir.path(), "e.yaml", &spec.replace("berlin.north", "berlin"));
    eg(["validate", "e.yaml"]).dir(dir.path()).run().code(0);
    let plan = eg(["acquire", "e.yaml", "--dump-plan"]).dir(dir.path()).run();
    plan.code(0);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["identity"], serde_json::json!({"site": "berlin", "gateway": "gw-017"}));
    write(dir.path(), "e.yaml", &spec.replace("gateway: gw-017", "gatway: gw-017"));
    eg(["validate", "e.yaml"]).dir(dir.path()).run().code(78).stderr_has("gatway");
}

/// A simulated fault that repeats (`every`) needs each repetition to end
/// before the next begins.
#[test]
fn a_repeating_fault_must_end_before_it_repeats() {
    let dir = tmp();
    write(
        dir.path(),
        "t.yaml",
        "version: 1\nname: t\nsources:\n  sim:\n    type: simulate\n    signals:\n      a.b:\n        faults:\n\
         \x20         - {at: 5s, kind: dropout, for: 5m, every: 5m}\n\
         \x20         - {at: 5s, kind: stuck, every: 5m}\n\
         \x20         - {at: 5s, kind: spike, every: 1s}\n\
         \x20         - {at: 5s, kind: drift, for: 1s, every: 0s}\n\
         \x20         - {at: 5s, kind: spike, every: 2s}\n\
         \x20         - {at: 5s, kind: drift, for: 1m, every: 5m}\n",
    );
    let out = eg(["validate", "t.yaml"]).dir(dir.path()).run();
    out.code(78).stderr_has("(4 errors, 0 warnings)");
    out.stderr_has(
        "error[E011]: a repeating fault lasts less than `every`; `for` is 5m\n --> t.yaml:9:53\n  |\n\
         9 |           - {at: 5s, kind: dropout, for: 5m, every: 5m}\n  |                                                     ^^\n\
         \x20 = at: sources.sim.signals[\"a.b\"].faults[0].every\n",
    );
    out.stderr_has("error[E012]: a repeating fault needs `for`, shorter than `every`\n  --> t.yaml:10:13\n");
    out.stderr_has(
        "error[E011]: a repeating spike needs `every` longer than the source's interval\n  --> t.yaml:11:42\n",
    );
    out.stderr_has("error[E030]: must be longer than zero\n  --> t.yaml:12:51\n");
}
