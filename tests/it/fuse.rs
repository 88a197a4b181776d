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
fn the_stuck_sensor_is_voted_out_then_marked_suspect() {
    let out = fuse_demo(&[]);
    out.code(0).stderr_has("1200 fused");
    let lines = out.lines();
    let fused: Vec<&Value> = lines.iter().filter(|r| r["source"] == "fuse").collect();
    assert_eq!(fused.len(), 1200, "one fused reading per sample round");
    assert!(fused.iter().all(|r| r["channel"] == "boiler.temp" && r["inputs"].is_array() && r["spread"].is_number()));
    // b is stuck from 5 m to 12 m into the run: while the sine moves away
    // from the held value, b is voted out...
    let out_of_vote: Vec<&&Value> =
        fused.iter().filter(|r| r["voted_out"] == serde_json::json!(["boiler.temp.b"])).collect();
    assert!(out_of_vote.len() > 100, "b voted out only {} times", out_of_vote.len());
    assert!(out_of_vote.iter().all(|r| r["ts"].as_str().unwrap() >= "2026-01-01T00:05:00"));
    // ...and after a minute out, its own readings carry suspect + voted_out.
    let b_flagged = lines
        .iter()
        .filter(|r| {
            r["channel"] == "boiler.temp.b" && r["flags"].as_array().is_some_and(|f| f.contains(&"voted_out".into()))
        })
        .count();
    assert!(b_flagged > 0);
    // Before the fault every fused reading is good and uses all three inputs.
    let early = fused.iter().filter(|r| r["ts"].as_str().unwrap() < "2026-01-01T00:05:00");
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
