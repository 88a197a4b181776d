//! Pipes compose exactly: `acquire X | fuse X --input - | detect X --input -
//! | alert X --input -` prints byte for byte what `alert X` prints
//! (docs/contract.md §1, "Composition"; the rule is in src/engine/chain.rs).

use crate::support::{eg, repo, tmp};

/// Runs `command spec --input -` (or without input for the first stage)
/// in `dir`, returning stdout.
fn stage(dir: &std::path::Path, command: &str, spec: &str, input: Option<&str>, extra: &[&str]) -> String {
    let mut args = vec![command, spec, "--no-store", "--format", "ndjson"];
    args.extend_from_slice(extra);
    let run = match input {
        Some(text) => {
            args.extend(["--input", "-"]);
            eg(&args).dir(dir).stdin(text.to_string())
        }
        None => eg(&args).dir(dir),
    };
    let out = run.run();
    // 3 would be --fail-on; none is given, so every stage exits 0.
    out.code(0);
    out.stdout
}

/// The whole chain at once, and the same chain one stage per process.
fn assert_pipe_is_exact(spec_name: &str, duration: &str, set: &[&str]) {
    let dir = tmp();
    let spec = dir.path().join(spec_name);
    std::fs::copy(repo().join("pipelines").join(spec_name), &spec).unwrap();
    let spec = spec.to_str().unwrap();
    let mut first = vec!["--duration", duration];
    for s in set {
        first.extend(["--set", s]);
    }
    let mut later = Vec::new();
    for s in set {
        later.extend(["--set", *s]);
    }
    let whole = stage(dir.path(), "alert", spec, None, &first);
    let acquired = stage(dir.path(), "acquire", spec, None, &first);
    let fused = stage(dir.path(), "fuse", spec, Some(&acquired), &later);
    let detected = stage(dir.path(), "detect", spec, Some(&fused), &later);
    let alerted = stage(dir.path(), "alert", spec, Some(&detected), &later);
    assert!(whole.lines().count() > 1000, "{spec_name}: the run made too little to compare");
    if alerted != whole {
        let (w, p): (Vec<&str>, Vec<&str>) = (whole.lines().collect(), alerted.lines().collect());
        let at = w.iter().zip(&p).position(|(a, b)| a != b).unwrap_or(w.len().min(p.len()));
        panic!(
            "{spec_name}: the pipe differs from the whole run at line {} ({} lines against {})\n  whole: {}\n  pipe:  {}",
            at + 1,
            w.len(),
            p.len(),
            w.get(at).unwrap_or(&"(end)"),
            p.get(at).unwrap_or(&"(end)")
        );
    }
}

#[test]
fn the_demo_pipeline_composes_exactly() {
    assert_pipe_is_exact("demo.yaml", "1h", &[]);
}

/// Every fault kind: a spike, a stuck sensor, a drift voted out by fusion,
/// a dropout (stale gaps), on three seeds.
#[test]
fn a_pipeline_with_every_fault_composes_exactly() {
    for seed in ["11", "12", "97"] {
        let set = format!("sources.line.seed={seed}");
        assert_pipe_is_exact("faults.yaml", "6h", &[&set]);
    }
}

/// The stale gap of a dropout is reported once, by the process that saw it.
#[test]
fn a_stale_gap_is_reported_once_through_a_pipe() {
    let dir = tmp();
    let spec = repo().join("pipelines/faults.yaml");
    let spec = spec.to_str().unwrap();
    let acquired = stage(dir.path(), "acquire", spec, None, &["--duration", "5h"]);
    let fused = stage(dir.path(), "fuse", spec, Some(&acquired), &[]);
    let gaps = |text: &str| {
        text.lines().filter(|l| l.contains("\"channel\":\"line.d.temp\"") && l.contains("\"stale\"")).count()
    };
    assert_eq!(gaps(&acquired), 1, "one dropout, one stale gap");
    assert_eq!(gaps(&fused), 1, "fuse --input passes the gap on and finds no second one");
}

/// The summary line of each pipeline command, pinned (times and rates filtered).
#[test]
fn summary_lines() {
    let dir = tmp();
    // A copy: the demo's alerts go to alerts.log next to the spec.
    let spec = dir.path().join("demo.yaml");
    std::fs::copy(repo().join("pipelines/demo.yaml"), &spec).unwrap();
    let spec = spec.to_str().unwrap();
    let mut lines = String::new();
    for command in ["acquire", "fuse", "detect", "alert"] {
        let out = eg([command, spec, "--duration", "30m", "--no-store", "-o", "/dev/null"]).dir(dir.path()).run();
        out.code(0);
        lines += &out.stderr;
    }
    insta::with_settings!({filters => vec![(r"\d+\.\d\d s \([^)]*\)", "[secs] s ([rate])")]}, {
        insta::assert_snapshot!("summary_lines", lines);
    });
}
