//! `fuse`: redundant sensors into one channel, through the binary.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::*;

fn fuse_demo(extra: &[&str]) -> Out {
    let mut args = vec!["fuse", "pipelines/demo.yaml", "--duration", "20m", "--no-store", "--format", "ndjson"];
    args.extend_from_slice(extra);
    eg(args).run()
}

#[test]
fn the_drifting_sensor_is_voted_out_then_marked_suspect() {
    let out = fuse_demo(&[]);
    out.code(0).stderr_has("1200 fused");
    let lines = out.lines();
    let fused: Vec<&Value> = lines.iter().filter(|r| r["source"] == "fuse").collect();
    assert_eq!(fused.len(), 1200, "one fused reading per sample round");
    assert!(fused.iter().all(|r| r["channel"] == "boiler.temp" && r["inputs"].is_array() && r["spread"].is_number()));
    assert!(fused.iter().all(|r| r["unit"] == "degC"), "a fused channel has its inputs' unit");
    // b drifts away from 0:05 to 0:30 of every 5 minutes: more than 2 degC
    // from the median from 0:11, it is voted out until it snaps back...
    let out_of_vote: Vec<&str> = fused
        .iter()
        .filter(|r| r["voted_out"] == serde_json::json!(["boiler.temp.b"]))
        .map(|r| r["ts"].as_str().unwrap())
        .collect();
    assert_eq!((out_of_vote[0], out_of_vote[18]), ("2026-01-01T00:00:11.000Z", "2026-01-01T00:00:29.000Z"));
    assert_eq!(out_of_vote.len(), 74, "{out_of_vote:?}");
    // Every 5 minutes, and only within the drift (seconds 5 to 30 into each).
    let into_cycle = |ts: &str| {
        let (m, s): (u32, u32) = (ts[14..16].parse().unwrap(), ts[17..19].parse().unwrap());
        (m / 5, (m % 5) * 60 + s)
    };
    let cycles: std::collections::BTreeSet<u32> = out_of_vote.iter().map(|t| into_cycle(t).0).collect();
    assert_eq!(cycles.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(out_of_vote.iter().all(|t| (5..30).contains(&into_cycle(t).1)), "{out_of_vote:?}");
    // ...and after 10 s out (`suspect_after`), its own readings carry suspect + voted_out.
    let b_flagged: Vec<&str> = lines
        .iter()
        .filter(|r| {
            r["channel"] == "boiler.temp.b" && r["flags"].as_array().is_some_and(|f| f.contains(&"voted_out".into()))
        })
        .map(|r| r["ts"].as_str().unwrap())
        .collect();
    assert_eq!(b_flagged.first(), Some(&"2026-01-01T00:00:22.000Z"));
    // Before the fault every fused reading is good and uses all three inputs.
    let early = fused.iter().filter(|r| r["ts"].as_str().unwrap() < "2026-01-01T00:00:05");
    for r in early {
        assert_eq!((r["quality"].as_str(), r["inputs"].as_array().map(Vec::len)), (Some("good"), Some(3)), "{r}");
    }
}

#[test]
fn fusion_composes_through_a_pipe() {
    let direct = fuse_demo(&[]);
    let acquired =
        eg(["acquire", "pipelines/demo.yaml", "--duration", "20m", "--no-store", "--format", "ndjson"]).run();
    acquired.code(0);
    let piped = eg(["fuse", "pipelines/demo.yaml", "--input", "-", "--no-store", "--format", "ndjson"])
        .stdin(acquired.stdout.clone())
        .run();
    piped.code(0);
    let fused = |o: &Out| -> Vec<String> {
        o.stdout.lines().filter(|l| l.contains("\"source\":\"fuse\"")).map(String::from).collect()
    };
    assert_eq!(fused(&direct), fused(&piped));
}

#[test]
fn every_method_fuses_and_the_store_keeps_the_inputs() {
    let dir = tmp();
    let mut by_method = BTreeMap::new();
    for method in ["mean", "median", "weighted", "kalman"] {
        let db = dir.path().join(format!("{method}.duckdb"));
        let out = eg([
            "fuse".as_ref(),
            "pipelines/demo.yaml".as_ref(),
            "--duration".as_ref(),
            "5m".as_ref(),
            "--set".as_ref(),
            format!("fuse.\"boiler.temp\".method={method}").as_ref(),
            "--store".as_ref(),
            db.as_os_str(),
        ])
        .run();
        out.code(0);
        let n = query_i64(&db, "SELECT count(*) FROM readings WHERE source = 'fuse' AND inputs LIKE 'boiler.temp.a%'");
        assert_eq!(n, 300, "{method}");
        let avg = query_i64(&db, "SELECT round(avg(value))::BIGINT FROM readings WHERE source = 'fuse'");
        by_method.insert(method, avg);
    }
    // Four ways to fuse the same three sensors agree on the level (the first
    // five minutes of a 10-minute sine around 80 average above it).
    let (lo, hi) = (by_method.values().min().unwrap(), by_method.values().max().unwrap());
    assert!(hi - lo <= 1 && (78..=86).contains(lo), "{by_method:?}");
}
