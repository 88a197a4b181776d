//! `compute`: computed channels through the binary, on the virtual clock.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A meter: a counter that counts 0 → 600 over 10 minutes and starts again
/// (a reset), 10 kW of power, a flow that drops out for a minute at 2m.
const PLANT: &str = "version: 1
name: meter
sources:
  sim:
    type: simulate
    signals:
      meter.count: {shape: ramp, mean: 300, amplitude: 300, period: 10m, decimals: 0}
      pump.power: {mean: 10, unit: kW}
      pump.flow:
        mean: 4
        unit: m3/h
        faults: [{at: 2m, kind: dropout, for: 1m}]
channels:
  pump.specific: {range: [0, 3]}
compute:
  pump.specific:
    expr: pump.power / pump.flow
    max_age: 5s
  meter.rate:
    rate: meter.count
    counter: u16
    per: 1min
  pump.energy:
    integrate: pump.power
    per: 1h
    unit: kWh
  pump.power_avg:
    rolling: pump.power
    window: 1m
    stat: avg
  meter.per_minute:
    delta: meter.count
    every: 1m
    counter: u16
  pump.energy_rate:
    rate: pump.energy
    per: 1h
";

fn of<'a>(lines: &'a [Value], channel: &str) -> Vec<&'a Value> {
    lines.iter().filter(|r| r["channel"] == channel).collect()
}

fn flags(r: &Value) -> Vec<&str> {
    r["flags"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[test]
fn computed_channels_on_the_virtual_clock() {
    let dir = tmp();
    let spec = write(dir.path(), "meter.yaml", PLANT);
    let run =
        || eg(["fuse".as_ref(), spec.as_os_str(), "--duration".as_ref(), "15m".as_ref(), "--no-store".as_ref()]).run();
    let out = run();
    out.code(0);
    let lines = out.lines();

    // The expression: 10 kW / 4 m3/h, its unit unknown (kW over m3/h), good
    // until the flow goes silent; 5 s later it is bad and names the flow.
    let spec_ = of(&lines, "pump.specific");
    assert!(spec_.iter().all(|r| r["source"] == "compute"));
    assert_eq!(spec_[0]["value"], 2.5);
    assert_eq!(spec_[0]["quality"], "good");
    let bad: Vec<&&Value> = spec_.iter().filter(|r| r["quality"] == "bad").collect();
    assert!((50..=60).contains(&bad.len()), "{} bad", bad.len());
    for r in &bad {
        assert_eq!(flags(r), ["bad_input"], "{r}");
        assert_eq!(r["voted_out"], serde_json::json!(["pump.flow"]));
        assert!(r["value"].is_null());
        let ts = r["ts"].as_str().unwrap();
        assert!(("2026-01-01T00:02:05".."2026-01-01T00:03:00").contains(&ts), "{ts}");
    }

    // The counter's rate per minute: 60 a minute, and one reset per period,
    // flagged and without a value (never a huge negative rate).
    let rate = of(&lines, "meter.rate");
    let resets: Vec<&&Value> = rate.iter().filter(|r| flags(r) == ["reset"]).collect();
    assert_eq!(resets.len(), 1, "one reset in 15 minutes");
    assert_eq!(resets[0]["quality"], "bad");
    assert!(resets[0]["value"].is_null());
    let values: Vec<f64> = rate.iter().filter_map(|r| r["value"].as_f64()).collect();
    assert!(values.iter().all(|v| *v >= 0.0 && *v <= 120.0), "{values:?}");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!((mean - 60.0).abs() < 1.0, "mean rate {mean}");

    // 10 kW for 15 minutes (899 s between the first and last sample).
    let energy = of(&lines, "pump.energy");
    let last = energy.last().unwrap();
    assert_eq!(last["unit"], "kWh");
    assert!((last["value"].as_f64().unwrap() - 10.0 * 899.0 / 3600.0).abs() < 1e-9, "{last}");
    // A computed channel read by another: 10 kWh per hour.
    let energy_rate = of(&lines, "pump.energy_rate");
    assert!(energy_rate.iter().all(|r| (r["value"].as_f64().unwrap() - 10.0).abs() < 1e-6), "{energy_rate:?}");

    assert!(of(&lines, "pump.power_avg").iter().all(|r| r["value"] == 10.0 && r["unit"] == "kW"));

    // Per minute: 60 counts, stamped at each minute's end; the minute with
    // the reset is suspect.
    let delta = of(&lines, "meter.per_minute");
    assert_eq!(delta.len(), 14, "minutes 1..14 closed by a later reading");
    assert_eq!(delta[0]["ts"], "2026-01-01T00:01:00.000Z");
    let reset_minute: Vec<&&Value> = delta.iter().filter(|r| r["quality"] == "suspect").collect();
    assert_eq!(reset_minute.len(), 1);
    assert_eq!(flags(reset_minute[0]), ["reset"]);

    // The same spec gives the same records.
    assert_eq!(run().stdout, out.stdout);
}

/// Channel rules apply to computed channels: a range, and detectors see them.
#[test]
fn channel_rules_apply_to_computed_channels() {
    let dir = tmp();
    let spec = write(
        dir.path(),
        "s.yaml",
        "version: 1\nname: t\nsources:\n  sim: {type: simulate, signals: {a.x: {mean: 5}, a.y: {mean: 3}}}\n\
         channels:\n  a.sum: {range: [0, 7], unit: V}\ncompute:\n  a.sum: {expr: \"a.x + a.y\"}\n",
    );
    let out = eg(["fuse".as_ref(), spec.as_os_str(), "--count".as_ref(), "3".as_ref(), "--no-store".as_ref()]).run();
    out.code(0);
    let sums: Vec<Value> = out.lines().into_iter().filter(|r| r["channel"] == "a.sum").collect();
    assert!(!sums.is_empty());
    for r in &sums {
        assert_eq!(
            (r["value"].as_f64(), r["quality"].as_str(), r["unit"].as_str()),
            (Some(8.0), Some("bad"), Some("V"))
        );
        assert_eq!(flags(r), ["out_of_range"]);
    }
}

/// `acquire | fuse --input -` computes what `fuse` computes directly.
#[test]
fn computed_channels_compose_through_a_pipe() {
    let dir = tmp();
    let spec = write(dir.path(), "meter.yaml", PLANT);
    let args = |cmd: &str| -> Vec<String> {
        vec![cmd.into(), spec.display().to_string(), "--duration".into(), "5m".into(), "--no-store".into()]
    };
    let direct = eg(args("fuse")).run();
    direct.code(0);
    let acquired = eg(args("acquire")).run();
    acquired.code(0);
    let piped = eg(["fuse".as_ref(), spec.as_os_str(), "--input".as_ref(), "-".as_ref(), "--no-store".as_ref()])
        .stdin(acquired.stdout.clone())
        .run();
    piped.code(0);
    let computed = |o: &Out| -> Vec<String> {
        o.stdout.lines().filter(|l| l.contains("\"source\":\"compute\"")).map(String::from).collect()
    };
    assert!(computed(&direct).len() > 1000);
    assert_eq!(computed(&direct), computed(&piped));
}

/// An energy total continues across `--once` runs (the state is in the store).
#[test]
fn the_integral_continues_across_once_runs() {
    let dir = tmp();
    let spec = write(
        dir.path(),
        "s.yaml",
        "version: 1\nname: t\nstore: {path: s.duckdb}\nsources:\n  sim: {type: simulate, signals: {p: {mean: 3600, unit: W}}}\n\
         compute:\n  e: {integrate: p, per: 1h, max_gap: 1h, unit: Wh}\n",
    );
    let once = || eg(["fuse".as_ref(), spec.as_os_str(), "--once".as_ref()]).run();
    let energy = |o: &Out| o.lines().into_iter().find(|r| r["channel"] == "e").map(|r| r["value"].as_f64().unwrap());
    let first = once();
    first.code(0);
    assert_eq!(energy(&first), Some(0.0));
    std::thread::sleep(Duration::from_millis(1200));
    let second = once();
    second.code(0);
    // 3600 W for the time between the runs: about 1.2 Wh, never restarted at 0.
    let e = energy(&second).unwrap();
    assert!((1.0..5.0).contains(&e), "{e}: {}", second.stdout);
    assert_eq!(query_i64(&dir.path().join("s.duckdb"), "SELECT count(*) FROM state WHERE component = 'compute'"), 1);
}

/// validate points into the expression: the column of the bad token, the
/// unknown channel (with a suggestion), and keys that do not apply.
#[test]
fn validate_points_into_the_expression() {
    let dir = tmp();
    let head = "version: 1\nname: t\nsources:\n  sim: {type: simulate, signals: {pump.power: {mean: 1}, pump.flow: {mean: 1}}}\ncompute:\n";
    let cases = [
        ("  pump.x:\n    expr: pump.power / * pump.flow\n", "s.yaml:7:24", "expression: unexpected `*`"),
        ("  pump.x: {expr: \"pump.power / pump.flwo\"}\n", "s.yaml:6:32", "did you mean `pump.flow`?"),
        ("  pump.x: {expr: \"mx(pump.power, 1)\"}\n", "s.yaml:6:19", "did you mean `max`?"),
        ("  pump.x: {rate: pump.power, window: 1m}\n", "[E080]", "`window` does not apply to `rate`"),
        ("  pump.x: {rate: pump.power, expr: pump.flow}\n", "[E080]", "`expr` and `rate` both given"),
        ("  pump.x: {rolling: pump.power, window: 1m}\n", "[E012]", "`rolling` needs `stat`"),
        ("  pump.power: {expr: \"pump.flow * 2\"}\n", "[E021]", "channel `pump.power` is already produced"),
    ];
    for (entry, at, message) in cases {
        write(dir.path(), "s.yaml", &format!("{head}{entry}"));
        let out = eg(["validate", "s.yaml"]).dir(dir.path()).run();
        out.code(78);
        assert!(
            out.stderr.contains(at) && out.stderr.contains(message),
            "{entry}: want {at} {message}:\n{}",
            out.stderr
        );
    }
}

/// `pipelines/energy.yaml` on the simulator: the u16 counter wraps around
/// without a reset, 15-minute deltas and power agree with the counter's
/// slope, and the hall's energy is its mean power times the time.
#[test]
fn the_energy_pipeline_meters_through_a_wrap_around() {
    let out = eg(["fuse", "pipelines/energy.yaml", "--duration", "5h", "--no-store", "--format", "ndjson"]).run();
    out.code(0);
    let lines = out.lines();
    let wh_per_hour = 65536.0 / 4.0;
    let power = of(&lines, "main.power");
    assert_eq!(power.len(), 5 * 360 - 1);
    for r in &power {
        let v = r["value"].as_f64().unwrap_or(f64::NAN);
        assert!(r["quality"] == "good" && (v - wh_per_hour).abs() < 400.0, "{r}");
    }
    let quarters = of(&lines, "main.energy_15m");
    assert_eq!(quarters.len(), 19);
    for r in &quarters {
        let v = r["value"].as_f64().unwrap_or(f64::NAN);
        assert!(r["quality"] == "good" && (v - wh_per_hour / 4.0).abs() < 50.0, "{r}");
        assert_eq!(r["unit"], "Wh");
    }
    // Five whole periods of a sine around 12 kW, less the 3-minute dropout.
    let energy = of(&lines, "hall.energy");
    let last = energy.last().unwrap()["value"].as_f64().unwrap();
    assert!((last - 12.0 * (5.0 - 0.05)).abs() < 1.0, "{last} kWh");
    assert_eq!(energy.iter().filter(|r| flags(r) == ["gap"]).count(), 1);
    // The site's power: both meters, in kW; bad while the hall is silent.
    let site = of(&lines, "site.power");
    let bad = site.iter().filter(|r| r["quality"] == "bad").count();
    assert!((14..=18).contains(&bad), "{bad} bad");
    assert!(site.iter().filter(|r| r["quality"] == "good").all(|r| r["unit"] == "kW"));
}

/// `fuse` on a spec with computed channels but no fusion does not say that
/// readings pass through unchanged.
#[test]
fn fuse_with_only_computed_channels_says_nothing_of_passing_through() {
    let out = eg(["fuse", "pipelines/energy.yaml", "--count", "2", "--no-store"]).run();
    out.code(0);
    assert!(!out.stderr.contains("pass through unchanged"), "{}", out.stderr);
}
